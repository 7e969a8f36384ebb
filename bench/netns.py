"""Throwaway network namespaces for the benchmark: named after this process (`dnb<pid>...`),
removed on close even when a measurement fails; leftovers of the same name are removed first."""

from __future__ import annotations

import os
import subprocess
import sys

from bench.gen import HOST_ADDR
from bench.gen import bridges as gen_bridges

NETNS_DIR = "/run/netns"


def sh(argv: list[str], stdin: str | None = None, timeout: float = 300, check: bool = True,
       env: dict | None = None) -> subprocess.CompletedProcess:  # fmt: skip
    r = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout,
                       check=False, env=env)  # fmt: skip
    if check and r.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:6])} failed ({r.returncode}): {r.stderr.strip()[-500:]}"
        )
    return r


class Netns:
    """A namespace with lo and one interface (a veth whose peer stays inside) holding the host's external address
    (192.0.2.1/24, 2001:db8:9::1/64) and IPv4 forwarding on, as on a Docker host."""

    def __init__(self, tag: str) -> None:
        self.name = f"dnb{os.getpid()}{tag}"
        if os.path.exists(f"{NETNS_DIR}/{self.name}"):
            sh(["ip", "netns", "del", self.name], check=False)
        sh(["ip", "netns", "add", self.name])
        try:
            for cmd in (["ip", "link", "set", "lo", "up"],
                        ["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"],
                        ["ip", "link", "set", "eth0p", "up"],
                        ["ip", "addr", "add", f"{HOST_ADDR}/24", "dev", "eth0"],
                        ["ip", "addr", "add", "2001:db8:9::1/64", "dev", "eth0", "nodad"],
                        ["ip", "link", "set", "eth0", "up"],
                        ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]):  # fmt: skip
                self.run(cmd)
        except BaseException:
            self.close()
            raise

    @property
    def prefix(self) -> list[str]:
        return ["nsenter", f"--net={NETNS_DIR}/{self.name}"]

    def run(self, argv: list[str], stdin: str | None = None, timeout: float = 600,
            env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:  # fmt: skip
        return sh([*self.prefix, *argv], stdin, timeout, check, env)

    def python(self, module: str, *args: str, env: dict | None = None, timeout: float = 900):
        return self.run([sys.executable, "-m", module, *args], env=env, timeout=timeout)

    def load(self, text: str, backend: str = "nft") -> None:
        self.run([f"iptables-{backend}-restore"], stdin=text)

    def bridges(self, doc: dict) -> None:
        """The bridges of `doc`'s networks, up, with their gateway addresses (and so routes)."""
        for bridge, addr in gen_bridges(doc):
            self.run(["ip", "link", "add", bridge, "type", "bridge"])
            self.run(["ip", "addr", "add", addr, "dev", bridge])
            self.run(["ip", "link", "set", bridge, "up"])

    def close(self) -> None:
        sh(["ip", "netns", "del", self.name], check=False, timeout=60)

    def __enter__(self) -> Netns:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
