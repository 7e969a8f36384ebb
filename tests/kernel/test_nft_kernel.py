"""Native nftables rules in a real kernel (issue 9): Docker 29's nftables backend and foreign tables.

No Docker 29 can run here, so Docker's rules come from its documented listings
(tests/fixtures/nft/*.nft). Each test loads them with `nft -f` into a throwaway network
namespace, reads them back with the exporter's own source (sources.nft.read_native, running the
real `nft` inside that namespace through a wrapper first on PATH), and judges the Docker state
next to them (*.state.json). The differential test loads them into the host of
support.natworld (its bridge named and addressed as the fixtures' bridge1), reads them there as
serve.refresh does, sends real connections from the client through them to c1 and checks the
exporter said what the client got.

Needs root, `ip` and `nft`, and for the differential test both iptables backends (CI=true:
fails instead of skipping). Every namespace is named dnn<pid>x<n><role> or dnw<pid>x<n><role>
(tests/support/netns.py), removed even on failure, and leftovers of dead runs are reaped first.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.corefix import raw
from support.natworld import CLIENT, CLIENT6, HOST, HOST6, Bridge, NatWorld, agrees, running
from support.netns import Netns, fresh_name, namespace, reap_dead
from support.util import require_or_skip

from exporter.readings import Readings
from exporter.rules.family import FamilyRules
from exporter.serve.snapshot import Snapshot, assess
from exporter.sources.nft import NativeRead, read_native, with_native

pytestmark = pytest.mark.kernel

NFT_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "nft"
FIXTURES = ("proxy", "noproxy", "loopback", "two_bridges", "foreign")
FAMILIES = ("ipv4", "ipv6")
NFT = shutil.which("nft") or "nft"  # the real one, resolved before any wrapper is on PATH


def _require() -> None:
    require_or_skip(os.geteuid() == 0, "needs root (network namespaces, nft)")
    for tool in ("ip", "nft"):
        require_or_skip(shutil.which(tool) is not None, f"{tool} not on PATH")


def nft(ns: Netns, *args: str) -> None:
    ns.run(["nft", *args], timeout=20)


def load(ns: Netns, fixture: str) -> None:
    nft(ns, "-f", str(NFT_DIR / f"{fixture}.nft"))


def quick_addresses(ns: Netns) -> Netns:
    """Addresses usable at once: no duplicate address detection."""
    dad = ("net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
    ns.run(["sysctl", "-qw", *dad])
    return ns


@pytest.fixture
def ident() -> str:
    _require()
    reap_dead("dnn")
    return fresh_name("dnn")


@pytest.fixture
def host(ident) -> Iterator[Netns]:
    with namespace(f"{ident}h") as ns:
        yield quick_addresses(ns)


@pytest.fixture
def nft_in(tmp_path, monkeypatch):
    """Make the exporter's `nft` run inside a namespace: a wrapper first on PATH."""

    def use(ns: Netns, script: str | None = None) -> None:
        folder = tmp_path / "bin"
        folder.mkdir(exist_ok=True)
        wrapper = folder / "nft"
        body = script or f'exec ip netns exec {ns.name} {NFT} "$@"\n'
        wrapper.write_text("#!/bin/sh\n" + body)
        wrapper.chmod(0o755)
        monkeypatch.setenv("PATH", f"{folder}:{os.environ.get('PATH', '')}")

    return use


def unlisted(timeout: float):
    """The tables are not listed over netlink: that would ask this process's namespace, not
    the one the `nft` wrapper runs in."""
    return None


def read(ns: Netns, nft_in, owned: frozenset[str] = frozenset()) -> NativeRead:
    nft_in(ns)
    return read_native(10.0, owned, unlisted)


def judge(fixture: str, native: NativeRead) -> Snapshot:
    return judge_rules(fixture, {f: with_native(FamilyRules(f, ()), native) for f in FAMILIES})


def judge_rules(fixture: str, rules: dict[str, FamilyRules]) -> Snapshot:
    doc = json.loads((NFT_DIR / f"{fixture}.state.json").read_text())
    return assess(
        Readings(0.0, raw(doc), "", rules, tuple(tuple(a) for a in doc["host_addresses"]))
    )


def ports(snap: Snapshot) -> dict[str, object]:
    return {
        f"{p.binding.container} {p.binding.family} {p.binding.host_port}": p for p in snap.ports
    }


def handle_of(ns: Netns, family: str, chain: str, needle: str) -> int:
    """The handle of the one rule of `family docker-bridges` `chain` whose JSON has `needle`."""
    out = ns.run(["nft", "-j", "list", "chain", family, "docker-bridges", chain]).stdout
    rules = [o["rule"] for o in json.loads(out)["nftables"] if "rule" in o]
    hits = [r["handle"] for r in rules if needle in json.dumps(r)]
    assert len(hits) == 1, f"{chain}: {len(hits)} rules contain {needle!r}"
    return hits[0]


def delete_rule(ns: Netns, family: str, chain: str, needle: str) -> None:
    h = handle_of(ns, family, chain, needle)
    nft(ns, "delete", "rule", family, "docker-bridges", chain, "handle", str(h))


# --- the fixtures are what nft writes --------------------------------------------------------


@pytest.mark.parametrize("fixture", FIXTURES)
def test_fixture_json_is_what_nft_writes_for_the_nft_file(fixture, host):
    load(host, fixture)
    live = json.loads(host.run(["nft", "-j", "list", "ruleset"]).stdout)["nftables"]
    stored = json.loads((NFT_DIR / f"{fixture}.ruleset.json").read_text())["nftables"]
    strip = [o for o in live if "metainfo" not in o], [o for o in stored if "metainfo" not in o]
    assert strip[0] == strip[1], f"regenerate {fixture}.ruleset.json with this nft"


# --- reading ---------------------------------------------------------------------------------


def test_read_native_reads_the_walked_tables_and_leaves_the_rest(host, nft_in):
    load(host, "proxy")
    load(host, "foreign")
    got = read(host, nft_in, frozenset({"ipv4", "ipv6"}))
    assert got.error == "" and got.warnings == ()
    # ip nat belongs to iptables-nft-save; netdev and output-only tables are never walked
    assert sorted(got.tables) == ["inet filter", "ip docker-bridges", "ip6 docker-bridges"]
    assert {rs.nft_table for rs in got.rulesets["ipv6"]} == {"ip6 docker-bridges", "inet filter"}
    mine = read(host, nft_in, frozenset())
    assert "ip nat" in mine.tables, "read natively when iptables-nft-save did not read it"


def test_an_empty_namespace_has_nothing_and_no_error(host, nft_in):
    got = read(host, nft_in)
    assert got == NativeRead({"ipv4": (), "ipv6": ()}, "", (), ())


def test_a_table_that_cannot_be_listed_makes_its_hooks_unknown(host, nft_in):
    load(host, "proxy")
    load(host, "foreign")
    slow = (
        f'case "$*" in *"list table inet filter"*) sleep 5;; esac\n'
        f'exec ip netns exec {host.name} {NFT} "$@"\n'
    )
    nft_in(host, slow)
    got = read_native(1.0, frozenset(), unlisted)
    assert got.error == ""
    assert got.warnings == ("nft table inet filter: nft did not finish within 1s",)
    snap = judge("proxy", got)
    for p in snap.ports:
        assert p.verdict.state == "unknown", p.verdict
        assert "nft table inet filter: nft did not finish within 1s" in p.verdict.reason


def test_nft_failing_is_reported_not_raised(host, nft_in):
    nft_in(host, 'echo "Error: Could not process rule: Operation not permitted" >&2; exit 1\n')
    got = read_native(5.0, frozenset(), unlisted)
    assert got.rulesets == {} and "Operation not permitted" in got.error
    snap = judge("proxy", got)
    assert {p.verdict.state for p in snap.ports} == {"unknown"}
    assert all("Operation not permitted" in p.verdict.reason for p in snap.ports)


def test_nft_printing_garbage_is_reported_not_raised(host, nft_in):
    nft_in(host, "echo 'table ip x {'\n")
    got = read_native(5.0, frozenset(), unlisted)
    assert got.error.startswith("nft -j list chains: not JSON")


# --- verdicts on rules loaded in the kernel --------------------------------------------------


def v4(snap: Snapshot, container: str = "c1", port: int = 8080):
    return ports(snap)[f"{container} ipv4 {port}"].verdict


@pytest.mark.parametrize("fixture", ("proxy", "noproxy", "loopback", "two_bridges"))
def test_healthy_layouts_are_ok(fixture, host, nft_in):
    load(host, fixture)
    snap = judge(fixture, read(host, nft_in))
    assert {p.verdict.state for p in snap.ports} == {"ok"}
    evidence = [e for p in snap.ports for e in p.rules] + list(snap.jumps + snap.bridge_rules)
    assert all(e.present for e in evidence)
    assert snap.stale == ()


def test_dnat_deleted_is_proxied_with_the_proxy_and_unreachable_without(host, nft_in):
    for fixture, want in (("proxy", "proxied"), ("noproxy", "unreachable")):
        nft(host, "flush", "ruleset")
        load(host, fixture)
        delete_rule(host, "ip", "nat-prerouting-and-output", '"DNAT"')
        snap = judge(fixture, read(host, nft_in))
        assert v4(snap).state == want
        assert (
            "expected rule missing: nft add rule ip docker-bridges nat-prerouting-and-output"
            in v4(snap).reason
        )
        assert ports(snap)["c1 ipv6 8080"].verdict.state == "ok"


def test_stale_dnat_first_is_misrouted_and_listed(host, nft_in):
    load(host, "proxy")
    stale = 'iifname != "bridge1" tcp dport 8080 dnat to 192.0.2.3:80'
    nft(host, "insert", "rule", "ip", "docker-bridges", "nat-prerouting-and-output", *stale.split())
    snap = judge("proxy", read(host, nft_in))
    v = v4(snap)
    assert v.state == "misrouted"
    assert "ip docker-bridges/nat-prerouting-and-output #1" in v.reason
    assert "192.0.2.3:80 (no container has it) instead of 192.0.2.2:80" in v.reason
    assert [(s.table, s.chain, s.ref) for s in snap.stale] == [
        (
            "ip docker-bridges",
            "nat-prerouting-and-output",
            "ip docker-bridges/nat-prerouting-and-output #1",
        )
    ]


def test_per_port_accept_removed_is_dropped_by_the_unpublished_port_drop(host, nft_in):
    load(host, "proxy")
    delete_rule(host, "ip", "filter-forward-in__bridge1", '"dport"')
    v = v4(judge("proxy", read(host, nft_in)))
    assert v.state == "dropped"
    assert "ip docker-bridges/filter-forward-in__bridge1 #3" in v.reason
    assert 'drop comment "UNPUBLISHED PORT DROP"' in v.reason
    assert (
        "expected rule missing: nft add rule ip docker-bridges filter-forward-in__bridge1"
        in v.reason
    )


NO_JUMP = ("delete", "element", "ip", "docker-bridges", "filter-forward-in-jumps", '{ "bridge1" }')


def test_vmap_element_removed_bypasses_the_bridge_chain_and_is_reported_missing(host, nft_in):
    # Without the element, the packet skips filter-forward-in__bridge1 (and its UNPUBLISHED
    # PORT DROP) and meets filter-FORWARD's policy accept: it gets through; the differential
    # test confirms the kernel agrees. The missing element shows as a missing jump.
    load(host, "proxy")
    nft(host, *NO_JUMP)
    snap = judge("proxy", read(host, nft_in))
    assert v4(snap).state == "ok"
    assert "filter/FORWARD policy ACCEPT (nft:ip docker-bridges/filter-FORWARD)" in v4(snap).reason
    missing = [e.expected.line for e in snap.jumps if not e.present]
    assert missing == [
        'nft add element ip docker-bridges filter-forward-in-jumps { "bridge1" : jump filter-forward-in__bridge1 }'
    ]


def test_flush_ruleset_leaves_every_port_to_the_proxy_or_to_nobody(host, nft_in):
    for fixture, want in (("two_bridges", "proxied"), ("noproxy", "unreachable")):
        load(host, fixture)
        nft(host, "flush", "ruleset")
        snap = judge(fixture, read(host, nft_in))
        assert {p.verdict.state for p in snap.ports} == {want}, fixture
        assert snap.jumps and not any(e.present for e in snap.jumps)


FOREIGN_DROP = ("add", "table", "inet", "filter")
FWD = ("add", "rule", "inet", "filter", "forward")
FOREIGN_CHAIN = (
    "add",
    "chain",
    "inet",
    "filter",
    "forward",
    "{ type filter hook forward priority 0; policy drop; }",
)


def test_foreign_forward_policy_drop_drops_naming_its_table(host, nft_in):
    load(host, "proxy")
    nft(host, *FOREIGN_DROP)
    nft(host, *FOREIGN_CHAIN)
    snap = judge("proxy", read(host, nft_in))
    for p in snap.ports:
        assert p.verdict.state == "dropped"
        assert "filter/FORWARD policy DROP (nft:inet filter/forward)" in p.verdict.reason


def test_foreign_forward_chain_accepting_the_port_and_replies_is_ok(host, nft_in):
    load(host, "proxy")
    nft(host, *FOREIGN_DROP)
    nft(host, *FOREIGN_CHAIN)
    nft(host, *FWD, "ip", "daddr", "192.0.2.2", "tcp", "dport", "80", "accept")
    snap = judge("proxy", read(host, nft_in))
    assert v4(snap).state == "dropped"  # the container's replies meet the drop policy
    assert v4(snap).reason.startswith(
        "the replies are dropped by filter/FORWARD policy DROP (nft:inet filter/forward)"
    )
    nft(host, "insert", *FWD[1:], "ct", "state", "established,related", "accept")
    snap = judge("proxy", read(host, nft_in))
    assert v4(snap).state == "ok"
    assert ports(snap)["c1 ipv6 8080"].verdict.state == "dropped", "the accept is IPv4 only"


# --- differential: what a real client gets through the same rules ----------------------------

# c1 on bridge1 as in the fixtures; c2 where no rule sends anything
BRIDGE1 = Bridge("bridge1", "192.0.2.1", 24, "192.0.2.2", "192.0.2.4")


@pytest.fixture(scope="module")
def world() -> Iterator[NatWorld]:
    with running(bridge=BRIDGE1) as w:
        yield w


def reload(world: NatWorld, fixture: str, *commands: tuple[str, ...]) -> None:
    nft(world.host, "flush", "ruleset")
    load(world.host, fixture)
    for cmd in commands:
        nft(world.host, *cmd)


def gets(state: str, seen: str, client: str) -> bool:
    """natworld.agrees, and stricter for unreachable: these rules leave nothing to drop it."""
    return agrees(state, seen, client) and (state != "unreachable" or seen == "refused")


PRE = ("add", "table", "inet", "pre")


def pre_chain(priority: int, *rule: str) -> list[tuple[str, ...]]:
    """A foreign `type filter hook prerouting` chain holding one rule."""
    hook = f"{{ type filter hook prerouting priority {priority}; }}"
    return [
        PRE,
        ("add", "chain", "inet", "pre", "c", hook),
        ("add", "rule", "inet", "pre", "c", *rule),
    ]


SCENARIOS = [
    # (fixture, with fake docker-proxy, nft commands, exporter state per family)
    ("proxy", True, [], {"ipv4": "ok", "ipv6": "ok"}),
    ("noproxy", False, [], {"ipv4": "ok", "ipv6": "ok"}),
    ("proxy", True, [("flush", "chain", "ip", "docker-bridges", "nat-PREROUTING"), ("delete", "chain", "ip", "docker-bridges", "nat-PREROUTING")],
     {"ipv4": "proxied", "ipv6": "ok"}),
    ("noproxy", False, [("flush", "chain", "ip6", "docker-bridges", "nat-prerouting-and-output")], {"ipv4": "ok", "ipv6": "unreachable"}),
    ("proxy", True, [("flush", "ruleset")], {"ipv4": "proxied", "ipv6": "proxied"}),
    ("proxy", False, [("insert", "rule", "ip", "docker-bridges", "nat-prerouting-and-output", "tcp", "dport", "8080", "dnat", "to", "192.0.2.3:80")],
     {"ipv4": "misrouted", "ipv6": "ok"}),
    ("proxy", False, [NO_JUMP], {"ipv4": "ok", "ipv6": "ok"}),
    ("proxy", False, [("flush", "chain", "ip6", "docker-bridges", "filter-forward-in__bridge1"),
                      ("add", "rule", "ip6", "docker-bridges", "filter-forward-in__bridge1", "counter", "drop")],
     {"ipv4": "ok", "ipv6": "dropped"}),
    ("proxy", False, [FOREIGN_DROP, FOREIGN_CHAIN], {"ipv4": "dropped", "ipv6": "dropped"}),
    # prerouting chains before DNAT see the host's address, after DNAT the container's
    ("proxy", False, pre_chain(-150, "ip", "daddr", "203.0.113.1", "tcp", "dport", "8080", "drop"), {"ipv4": "dropped", "ipv6": "ok"}),
    ("proxy", False, pre_chain(10, "ip", "daddr", "203.0.113.1", "tcp", "dport", "8080", "drop"), {"ipv4": "ok", "ipv6": "ok"}),
    ("proxy", False, pre_chain(10, "ip", "daddr", "192.0.2.2", "tcp", "dport", "80", "drop"), {"ipv4": "dropped", "ipv6": "ok"}),
    ("proxy", False, [FOREIGN_DROP, FOREIGN_CHAIN, (*FWD, "ip", "daddr", "192.0.2.2", "tcp", "dport", "80", "accept")],
     {"ipv4": "dropped", "ipv6": "dropped"}),
    ("proxy", False, [FOREIGN_DROP, FOREIGN_CHAIN, (*FWD, "ct", "state", "established,related", "accept"),
                      (*FWD, "ip", "daddr", "192.0.2.2", "tcp", "dport", "80", "accept")],
     {"ipv4": "ok", "ipv6": "dropped"}),
]  # fmt: skip


@pytest.mark.slow
def test_the_exporter_says_what_a_real_client_gets(world):
    """One topology, every scenario: load the rules, read them as serve.refresh does, judge
    them, connect for real, compare."""
    failures = []
    for n, (fixture, proxy, commands, want) in enumerate(SCENARIOS):
        world.set_proxy(proxy)
        reload(world, fixture, *commands)
        rules, nft_error, warnings, _ = world.read()
        assert nft_error == "" and warnings == (), (n, nft_error, warnings)
        snap = judge_rules(fixture, rules)
        for family, addr, client in (("ipv4", HOST, CLIENT), ("ipv6", HOST6, CLIENT6)):
            state = ports(snap)[f"c1 {family} 8080"].verdict.state
            seen = world.probe(addr)
            if state != want[family] or not gets(state, seen, client):
                failures.append(
                    f"#{n} {fixture} {commands} {family}: exporter {state} (want {want[family]}), client {seen}"
                )
    assert not failures, "\n".join(failures)
