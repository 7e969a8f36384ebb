"""Run `check` inside a test lab and compare its verdicts with what a real client gets.

The agreement rule (issue 2, "Real Docker end to end"): a verdict is right when the external
client's experience is one the verdict allows:

| verdict | what the external client must experience |
|---|---|
| ok (DNAT or routed design) | reaches the binding's container, which sees the client's own address |
| ok (proxy design: no rules by design) | reaches the container through docker-proxy |
| ok (loopback binding) | cannot connect; a local client on the host reaches the container |
| proxied | reaches the container, which sees a gateway/host address (docker-proxy) |
| misrouted | cannot connect, or reaches another container |
| dropped, unreachable | cannot connect |

`unknown` allows nothing: in these scenarios the exporter must commit to an answer.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from support.lab import IMAGE, ClientResult, Lab

DIRECT, PROXY, OTHER, NONE = "direct", "through a proxy", "another container", "no connection"

# The experiences each verdict allows, by (state, design); design None: any design.
_ALLOWED = {
    ("ok", "proxy"): {PROXY},
    ("ok", "none"): {NONE},
    ("ok", None): {DIRECT},
    ("proxied", None): {PROXY},
    ("misrouted", None): {NONE, OTHER},
    ("dropped", None): {NONE},
    ("unreachable", None): {NONE},
}


@dataclass(frozen=True)
class CheckRun:
    """One `check` run inside the lab: exit status, output, and the parsed JSON (if --json)."""

    returncode: int
    stdout: str
    stderr: str
    doc: dict | None

    def ports(self, container: str, family: str = "ipv4") -> list[dict]:
        assert self.doc is not None, "not a --json run"
        return [
            p for p in self.doc["ports"] if p["container"] == container and p["family"] == family
        ]

    def port(self, container: str, family: str = "ipv4", host_port: int | None = None) -> dict:
        """The single binding of `container` in `family` (on `host_port` if given)."""
        found = [p for p in self.ports(container, family) if host_port in (None, p["host_port"])]
        assert len(found) == 1, (
            f"expected one {family} binding of {container} (port {host_port}), got "
            f"{json.dumps(found, indent=1)}\nall ports: {self.summary()}"
        )
        return found[0]

    @property
    def missing_jumps(self) -> list[str]:
        assert self.doc is not None
        return [j["rule"] for j in self.doc["jumps"] if not j["present"]]

    @property
    def stale(self) -> list[dict]:
        assert self.doc is not None
        return self.doc["stale_rules"]

    def summary(self) -> str:
        if self.doc is None:
            return self.stdout
        rows = [
            f"  {p['container']} {p['family']} {p['host_ip']}:{p['host_port']} "
            f"{p['state']}: {p['reason']}"
            for p in self.doc["ports"]
        ]
        return "\n".join(rows) or "  (no ports)"


def run_check(lab: Lab, *extra: str, as_json: bool = True) -> CheckRun:
    """`python -m exporter check` in the lab's Docker host namespace, against its daemon.

    Asserts the run produced output and, for --json, that the document parses and its
    `exit_code` is the process's exit status.
    """
    args = [sys.executable, "-m", "exporter", "check", "--docker.host", lab.docker_host]
    args += [*(["--json"] if as_json else []), *extra]
    p = lab.nsexec(args, check=False, timeout=60)
    assert p.returncode in (0, 1, 2), f"check exited {p.returncode}:\n{p.stderr}\n{p.stdout}"
    assert "Traceback" not in p.stderr, p.stderr
    doc = None
    if as_json:
        try:
            doc = json.loads(p.stdout)
        except ValueError as e:
            raise AssertionError(
                f"check --json printed no JSON ({e}):\n{p.stdout}\n{p.stderr}"
            ) from None
        assert doc["exit_code"] == p.returncode, (doc["exit_code"], p.returncode)
    return CheckRun(p.returncode, p.stdout, p.stderr, doc)


def experience(got: ClientResult, container: str, client_addr: str) -> str:
    """What the client's request amounted to, for the binding of `container`."""
    if not got.ok:
        return NONE
    if got.answered_by != container:
        return OTHER
    return DIRECT if got.seen_client == client_addr else PROXY


def allowed(state: str, design: str) -> set[str]:
    return _ALLOWED.get((state, design)) or _ALLOWED.get((state, None)) or set()


def assert_agrees(
    lab: Lab,
    run: CheckRun,
    container: str,
    expect: str,
    *,
    family: str = "ipv4",
    host_port: int | None = None,
    reason: Sequence[str] = (),
) -> ClientResult:
    """The verdict for `container`'s binding is `expect`, its reason contains every string of
    `reason`, and a real request from the external client agrees with it (see module doc).
    Prints both sides on failure. Returns what the client got."""
    entry = run.port(container, family, host_port)
    port = entry["host_port"]
    got = lab.client_get(port, family=6 if family == "ipv6" else 4)
    client = lab.client_addr6 if family == "ipv6" else lab.client_addr
    seen = experience(got, container, client)
    local = None
    if entry["design"] == "none" and entry["host_ip"].startswith("127."):
        local = lab.local_get(port)
    ok_set = allowed(entry["state"], entry["design"])
    problems = []
    if entry["state"] != expect:
        problems.append(f"verdict is {entry['state']!r}, the scenario expects {expect!r}")
    if seen not in ok_set:
        problems.append(f"the client's experience {seen!r} contradicts {entry['state']!r}")
    if local is not None and not (local.ok and local.answered_by == container):
        problems.append(f"loopback binding but a local client did not reach {container}")
    problems += [f"reason lacks {r!r}" for r in reason if r not in entry["reason"]]
    if problems:
        raise AssertionError(
            f"{container} {family} port {port}: " + "; ".join(problems) + "\n"
            f"exporter: state={entry['state']} design={entry['design']}\n"
            f"  reason: {entry['reason']}\n"
            f"  allows the client experiences: {sorted(ok_set)}\n"
            f"kernel: client {client} -> {lab.host_addr}:{port}: {seen}: {got}\n"
            + (f"  local client: {local}\n" if local is not None else "")
            + f"all verdicts (exit {run.returncode}):\n{run.summary()}\n"
            f"rules:\n{rules_dump(lab, 6 if family == 'ipv6' else 4)}"
        )
    return got


def rules_dump(lab: Lab, family: int = 4) -> str:
    """The Docker host's rules (raw, mangle, nat, filter), for failure messages."""
    try:
        return lab.iptables_save(family)
    except Exception as e:  # a failure message must not hide the real failure
        return f"(iptables-save failed: {e})"


def assert_table_row(lab: Lab, container: str, published: str, state: str) -> str:
    """The human `check` table has a row `state container ... published ...`, and the table
    run exits like the JSON run. Returns the table."""
    table = run_check(lab, as_json=False)
    lines = table.stdout.splitlines()
    assert any(ln.startswith("Docker ") for ln in lines[:3]), table.stdout  # after the summary
    assert any(ln.split()[:2] == ["STATE", "CONTAINER"] for ln in lines), table.stdout
    rows = [ln.split() for ln in table.stdout.splitlines()]
    match = [r for r in rows if r[:2] == [state, container] and published in r]
    assert match, f"no row '{state} {container} ... {published}' in:\n{table.stdout}"
    assert table.returncode == run_check(lab).returncode, table.stdout
    return table.stdout


def save_lines(lab: Lab, table: str, *needles: str, family: int = 4) -> list[str]:
    """iptables-save (ip6tables-save) rule lines of `table` that contain every needle."""
    lines = lab.iptables_save(family, table=table).splitlines()
    return [ln for ln in lines if ln.startswith("-A ") and all(n in f"{ln} " for n in needles)]


def delete_rule(lab: Lab, table: str, *needles: str, family: int = 4) -> str:
    """Delete the one rule of `table` containing every needle; return its save line."""
    found = save_lines(lab, table, *needles, family=family)
    assert len(found) == 1, f"want one IPv{family} {table} rule with {needles}, got {found}"
    lab.iptables("-t", table, "-D", *shlex.split(found[0])[1:], family=family)
    assert save_lines(lab, table, *needles, family=family) == []
    return found[0]


@contextmanager
def restored(lab: Lab) -> Iterator[Lab]:
    """Rules changed inside the block are put back (and checked) afterwards."""
    snapshot = lab.snapshot_rules()
    try:
        yield lab
    finally:
        lab.restore_rules(snapshot)


# Two web servers in one container, for a port-range mapping `-p A-B:80-81`.
_CGI = 'printf "Content-Type: text/plain\\r\\n\\r\\n%s %s\\n" "$DNE_NAME" "$REMOTE_ADDR"'
_TWO_SERVERS = """mkdir -p /www/cgi-bin
printf '#!/bin/sh\\n%s\\n' "$DNE_CGI" > /www/cgi-bin/who
chmod 755 /www/cgi-bin/who
trap 'exit 0' TERM INT
httpd -f -p 80 -h /www &
httpd -f -p 81 -h /www &
wait
"""


def run_two_port_web(lab: Lab, name: str, publish: str) -> None:
    """A web container answering on ports 80 and 81, published with `-p publish`."""
    lab.docker("run", "-d", "--name", name, "-p", publish, "-e", f"DNE_NAME={name}",
               "-e", f"DNE_CGI={_CGI}", IMAGE, "sh", "-c", _TWO_SERVERS)  # fmt: skip
    lab.wait_web(name, 80)
    lab.wait_web(name, 81)
