"""A small real network for differential tests: a Docker-like host between a client and two
"containers", where the kernel decides what a connection gets and the exporter must agree.

    client (203.0.113.2) ── eth0 ── host (203.0.113.1; docker0 172.17.0.1/16) ── c1 172.17.0.2
                                                                               └─ c2 172.17.0.3

Each container answers on port 80 with its name and the peer address it sees (`c1 from
203.0.113.2`), so a masquerade shows as a host address; on demand a stand-in for docker-proxy
answers `proxy` on the host's port 8080. The host's rules are whatever a test loads
(iptables-nft, iptables-legacy, nft) and the exporter reads them with its own readers inside
the host's namespace. Namespaces are <prefix><pid>x<n><role>, removed by close().
The containers' bridge is docker0 172.17.0.0/16 unless a test gives another (a Bridge).
"""

from __future__ import annotations

import base64
import contextlib
import os
import pickle
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from support.netns import NetnsError, create, delete, fresh_name, reap_dead
from support.util import require_or_skip

PREFIX = "dnw"
HOST, CLIENT, C1, C2, GATEWAY = (
    "203.0.113.1",
    "203.0.113.2",
    "172.17.0.2",
    "172.17.0.3",
    "172.17.0.1",
)
HOST6, CLIENT6, C1_6, C2_6, GATEWAY6 = (
    "2001:db8:ff::1",
    "2001:db8:ff::2",
    "2001:db8:b1::2",
    "2001:db8:b1::3",
    "2001:db8:b1::1",
)


@dataclass(frozen=True)
class Bridge:
    """The containers' bridge: its name, the host's IPv4 address on it with the prefix length,
    and c1's and c2's IPv4 addresses (IPv6 is always 2001:db8:b1::/64)."""

    name: str
    gateway: str
    prefix: int
    c1: str
    c2: str


DOCKER0 = Bridge("docker0", GATEWAY, 16, C1, C2)
HOST_ADDRS = (("lo", "127.0.0.1"), ("eth0", HOST), ("eth0", HOST6), ("docker0", GATEWAY),
              ("docker0", GATEWAY6))  # fmt: skip
RESTORE = {"nft": "iptables-nft-restore", "legacy": "iptables-legacy-restore"}
BLANK = """*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
"""

SERVER = r"""
import socket, sys, threading
token, port = sys.argv[1], int(sys.argv[2])
def serve(s):
    while True:
        c, peer = s.accept()
        c.sendall(f"{token} from {peer[0]}".encode())
        c.close()
for family, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((addr, port))
    s.listen(16)
    threading.Thread(target=serve, args=(s,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

PROBE = r"""
import socket, sys
addr, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
src = (sys.argv[4], 0) if len(sys.argv) > 4 else None
try:
    s = socket.create_connection((addr, port), timeout=timeout, source_address=src)
    print("data:" + s.recv(64).decode())
except ConnectionRefusedError:
    print("refused")
except (socket.timeout, TimeoutError):
    print("timeout")
except OSError as e:
    print(f"error:{e.strerror}")
"""

READER = """
import base64, pickle, sys
from dataclasses import replace
from exporter.sources.hostnet import read_netstate
from exporter.sources.ipset import read_ipsets
from exporter.sources.iptables import read_family
from exporter.sources.nft import read_native, with_native
reads = {f: read_family(f, 30.0) for f in ("ipv4", "ipv6")}
native = read_native(30.0, frozenset(f for f, r in reads.items() if "nf_tables" in r.texts))
sets = read_ipsets(30.0)
rules = {f: replace(with_native(r.rules, native), ipsets=sets.sets) for f, r in reads.items()}
net = read_netstate(30.0)
warnings = sum((r.warnings for r in reads.values()), ()) + net.errors + sets.warnings
warnings += (sets.error,) if sets.error else ()
sys.stdout.write(base64.b64encode(pickle.dumps((rules, native.error, warnings, net))).decode())
"""


def require_world() -> None:
    """Skip (fail in CI) unless this machine can build the world and load both backends."""
    require_or_skip(os.geteuid() == 0, "needs root (network namespaces, rules)")
    for tool in ("ip", "nft", "iptables-nft-restore", "iptables-legacy-restore"):
        require_or_skip(shutil.which(tool) is not None, f"{tool} not on PATH")


def agrees(state: str, seen: str, client: str = CLIENT) -> bool:
    """Whether what the client (connecting from `client`) got is what `state` means."""
    if state == "ok":
        return seen == f"data:c1 from {client}"
    if state == "masqueraded":
        return seen.startswith("data:c1 from ") and seen != f"data:c1 from {client}"
    if state == "proxied":
        return seen.startswith("data:proxy")
    if state == "misrouted":
        return not seen.startswith("data:c1")
    if state == "dropped":
        return seen == "timeout"
    return state == "unreachable" and (seen in ("refused", "timeout") or seen.startswith("error:"))


@contextlib.contextmanager
def running(kind: type[NatWorld] | None = None, bridge: Bridge = DOCKER0) -> Iterator[NatWorld]:
    """A world of `kind` (NatWorld or a subclass) set up, and closed afterwards even when its
    set-up fails; skips (fails in CI) where require_world does."""
    require_world()
    w = (kind or NatWorld)(bridge)
    try:
        yield w.setup()
    finally:
        w.close()


class NatWorld:
    def __init__(self, bridge: Bridge = DOCKER0) -> None:
        self.bridge = bridge
        reap_dead(PREFIX)
        self.ident = fresh_name(PREFIX)
        self.names: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.proxy: subprocess.Popen | None = None

    # --- set-up and tear-down ------------------------------------------------------------

    def setup(self) -> NatWorld:
        self.host, self.client, self.c1, self.c2 = (self._ns(r) for r in "hcab")
        h, br = self.host.name, self.bridge
        self._sh("ip", "-n", h, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
                 "netns", self.client.name)  # fmt: skip
        self._sh("ip", "-n", h, "link", "add", br.name, "type", "bridge")
        # a test sets the bridge down and up again: its IPv6 address must survive that
        self.host.run(["sysctl", "-qw", f"net.ipv6.conf.{br.name}.keep_addr_on_down=1"])
        self._addr(h, "eth0", f"{HOST}/24", f"{HOST6}/64")
        self._addr(h, br.name, f"{br.gateway}/{br.prefix}", f"{GATEWAY6}/64")
        self._addr(self.client.name, "eth0", f"{CLIENT}/24", f"{CLIENT6}/64")
        self._routes(self.client.name, HOST, HOST6)
        for ns, veth, ip, ip6 in ((self.c1, "v1", br.c1, C1_6), (self.c2, "v2", br.c2, C2_6)):
            self._sh("ip", "-n", h, "link", "add", veth, "type", "veth", "peer", "name", "eth0",
                     "netns", ns.name)  # fmt: skip
            self._sh("ip", "-n", h, "link", "set", veth, "master", br.name)
            self._sh("ip", "-n", h, "link", "set", veth, "up")
            self._addr(ns.name, "eth0", f"{ip}/{br.prefix}", f"{ip6}/64")
            self._routes(ns.name, br.gateway, GATEWAY6)
        self.host.run(["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
                       "net.ipv6.conf.all.keep_addr_on_down=1"])  # fmt: skip
        self.serve(self.c1, "c1", 80)
        self.serve(self.c2, "c2", 80)
        self._wait_forwarding()
        return self

    def _ns(self, role: str):
        name = f"{self.ident}{role}"
        self.names.append(name)
        return create(name)

    def _sh(self, *argv: str) -> str:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        if p.returncode != 0:
            raise NetnsError(f"{' '.join(argv)}: {p.stderr.strip()}")
        return p.stdout

    def _addr(self, ns: str, dev: str, cidr: str, cidr6: str) -> None:
        self._sh("ip", "-n", ns, "addr", "add", cidr, "dev", dev)
        self._sh("ip", "-n", ns, "addr", "add", cidr6, "dev", dev, "nodad")
        self._sh("ip", "-n", ns, "link", "set", dev, "up")

    def _routes(self, ns: str, gw: str, gw6: str) -> None:
        self._sh("ip", "-n", ns, "route", "add", "default", "via", gw)
        self._sh("ip", "-n", ns, "-6", "route", "add", "default", "via", gw6)

    def _wait_forwarding(self) -> None:
        """Plain forwarding to c1 works before any rules are judged."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if all(self.probe(a, 80).startswith("data:c1") for a in (self.bridge.c1, C1_6)):
                return
            time.sleep(0.2)
        raise AssertionError("the world never carried a connection to c1")

    def close(self) -> None:
        for p in self.procs:
            _stop(p)
        for name in reversed(self.names):
            delete(name)

    # --- processes -----------------------------------------------------------------------

    def serve(self, ns, token: str, port: int) -> subprocess.Popen:
        argv = ["ip", "netns", "exec", ns.name, sys.executable, "-c", SERVER, token, str(port)]
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        ready, _, _ = select.select([p.stdout], [], [], 10)
        assert ready and p.stdout.readline().strip() == "ready", f"{token} did not start"
        return p

    def set_proxy(self, on: bool) -> None:
        """A listener on the host's port 8080, as docker-proxy would be."""
        if on and self.proxy is None:
            self.proxy = self.serve(self.host, "proxy", 8080)
        elif not on and self.proxy is not None:
            _stop(self.proxy)
            self.procs.remove(self.proxy)
            self.proxy = None

    def probe(self, addr: str = HOST, port: int = 8080, timeout: float = 1.0, src: str = "") -> str:
        """What the client gets: `data:<answer>`, `refused`, `timeout` or `error:<why>`;
        from its address `src` when given."""
        argv = [sys.executable, "-c", PROBE, addr, str(port), str(timeout), *([src] if src else [])]
        return self.client.run(argv, timeout=timeout + 20).stdout.strip()

    # --- rules ---------------------------------------------------------------------------

    def load(self, backend: str, text: str, *nft: str, text6: str = "") -> None:
        """Only `text` (iptables-save format) in `backend` (and `text6`, ip6tables-save format),
        then `nft` commands (nft -f text)."""
        self.host.run(["nft", "flush", "ruleset"])  # iptables-nft's tables and native ones
        if backend == "legacy" or self._has_legacy():
            self.host.run([RESTORE["legacy"]], input=BLANK)
        self.host.run([RESTORE[backend]], input=text)
        if text6:
            self.host.run([RESTORE[backend].replace("iptables", "ip6tables")], input=text6)
        for script in nft:
            self.host.run(["nft", "-f", "-"], input=script)

    def _has_legacy(self) -> bool:
        names = self.host.run(["cat", "/proc/net/ip_tables_names"], check=False).stdout
        return bool(names.strip())

    def read(self):
        """({family: FamilyRules with native tables and ipsets}, nft error, warnings, NetState)
        read with the exporter's own sources in the host, composed as serve.refresh does."""
        out = self.host.run([sys.executable, "-c", READER], timeout=60).stdout
        return pickle.loads(base64.b64decode(out))


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGKILL)
    p.wait(timeout=10)
    for f in (p.stdout, p.stderr):
        if f and not f.closed:
            f.close()
