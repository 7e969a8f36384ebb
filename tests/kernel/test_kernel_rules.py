"""Real rules in throwaway network namespaces, read back with the exporter's own reader.

Every layout fixture is loaded with iptables-restore / ip6tables-restore (nf_tables, and legacy)
into a fresh namespace, then `exporter.sources.iptables.read_family` runs inside it. The rules it
returns must be the loaded ones (semantic keys, in order, with policies), and the verdicts the same
as from the literal text. Namespaces are named dnk<pid>x<n> (tests/support/netns.py), removed even on failure.
"""

from __future__ import annotations

import base64
import contextlib
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest
from support.corefix import (
    BASE_G27,
    LAYOUT_NAMES,
    REAL_NAMES,
    analyse_doc,
    layout,
    port_report,
    web_doc,
)
from support.netns import fresh_name, namespace
from support.util import require_or_skip

from exporter.rules.iptsave import parse_save
from exporter.rules.model import Cond, Ruleset
from exporter.rules.normalize import rule_key
from exporter.summary import backends_mixed

pytestmark = pytest.mark.kernel

TIMEOUT = 60
TOOLS = {
    ("ipv4", "nft"): "iptables-nft-restore",
    ("ipv6", "nft"): "ip6tables-nft-restore",
    ("ipv4", "legacy"): "iptables-legacy-restore",
    ("ipv6", "legacy"): "ip6tables-legacy-restore",
}
READER = """
import base64, pickle, sys
from exporter.sources.iptables import read_family
reads = {f: read_family(f, 30.0) for f in sys.argv[1:]}
sys.stdout.write(base64.b64encode(pickle.dumps(reads)).decode())
"""


def require_kernel(*extra: str) -> None:
    require_or_skip(os.geteuid() == 0, "needs root to create network namespaces")
    for tool in (
        "ip",
        "nsenter",
        *TOOLS.values(),
        "iptables-nft-save",
        "iptables-legacy-save",
        *extra,
    ):
        require_or_skip(shutil.which(tool) is not None, f"{tool} not installed")


def run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def must(argv: list[str], stdin: str | None = None) -> str:
    r = run(argv, stdin)
    assert r.returncode == 0, f"{' '.join(argv)}: rc {r.returncode}: {r.stderr.strip()}"
    return r.stdout


@contextlib.contextmanager
def netns() -> Iterator[str]:
    """A fresh network namespace, deleted afterwards even when the test fails."""
    with namespace(fresh_name("dnk")) as ns:
        # a Docker host forwards (Docker turns it on); a new namespace starts with it off
        in_ns(ns.name, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        yield ns.name


def in_ns(ns: str, *argv: str, stdin: str | None = None) -> str:
    return must(["nsenter", f"--net=/run/netns/{ns}", *argv], stdin)


def load(ns: str, family: str, backend: str, text: str) -> None:
    if text.strip():
        in_ns(ns, TOOLS[(family, backend)], stdin=text)


def make_ipsets(ns: str) -> None:
    # 28.0.0's FORWARD rules match these sets; restore refuses rules naming a missing set
    in_ns(ns, "ipset", "create", "docker-ext-bridges-v4", "hash:net", "family", "inet")
    in_ns(ns, "ipset", "create", "docker-ext-bridges-v6", "hash:net", "family", "inet6")


def read_in_ns(ns: str, *families: str):
    """exporter.sources.iptables.read_family(family) run inside `ns`: {family: RuleRead}."""
    out = in_ns(ns, sys.executable, "-c", READER, *families)
    return pickle.loads(base64.b64decode(out))


def legacy_tables(ns: str) -> str:
    return in_ns(ns, "cat", "/proc/net/ip_tables_names", "/proc/net/ip6_tables_names")


def shape(rs: Ruleset) -> dict:
    """Everything about a ruleset that matters: per chain, its policy and its rules' keys."""
    return {
        (t.name, c.name): (c.policy, [(r.position, rule_key(r)) for r in c.rules])
        for t in rs.tables.values()
        for c in t.chains.values()
    }


def verdicts(snap) -> dict:
    return {p.binding.label: (p.verdict.state, p.verdict.reason) for p in snap.ports}


BACKEND_NAME = {"nft": "nf_tables", "legacy": "legacy"}


@pytest.mark.parametrize("backend", ["nft", "legacy"])
@pytest.mark.parametrize("name", ["d2010", *REAL_NAMES, *LAYOUT_NAMES])
def test_layout_round_trip(name, backend):
    doc, text4, text6 = layout(name)
    require_kernel(*(["ipset"] if "--match-set" in text4 + text6 else []))
    with netns() as ns:
        if "--match-set" in text4 + text6:
            make_ipsets(ns)
        load(ns, "ipv4", backend, text4)
        load(ns, "ipv6", backend, text6)
        reads = read_in_ns(ns, "ipv4", "ipv6")
        if backend == "nft":
            assert legacy_tables(ns) == "", "reading created legacy tables"
    read_rules = {}
    for family, text in (("ipv4", text4), ("ipv6", text6)):
        rr = reads[family]
        assert rr.rules.error == "" and rr.rules.family == family
        assert all(not rs.errors for rs in rr.rules.rulesets)
        holding = [rs for rs in rr.rules.rulesets if rs.tables]
        if not text.strip():
            assert holding == []
        else:
            assert [rs.backend for rs in holding] == [BACKEND_NAME[backend]]
            assert shape(holding[0]) == shape(parse_save(text, family, BACKEND_NAME[backend]))
        read_rules[family] = rr.rules
    from_kernel = analyse_doc(doc, read_rules["ipv4"], read_rules["ipv6"])
    from_text = analyse_doc(doc, text4, text6)
    assert verdicts(from_kernel) == verdicts(from_text)
    assert {s for s, _ in verdicts(from_kernel).values()} == {"ok"}
    assert from_kernel.stale == () and all(j.present for j in from_kernel.jumps)
    assert backends_mixed(from_kernel) is False


@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_quoted_comments_survive_the_real_tools(backend):
    require_kernel()
    comment = 'a "q" b\\c é'
    printed = '"a \\"q\\" b\\\\c é"'  # as iptables-save prints it (restore wants the same)
    rule = f"-A DOCKER-USER -s 10.0.0.0/8 -m comment --comment {printed} -j DROP"
    text = f"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:DOCKER-USER - [0:0]\n{rule}\nCOMMIT\n"
    with netns() as ns:
        load(ns, "ipv4", backend, text)
        rr = read_in_ns(ns, "ipv4")["ipv4"]
    rs = next(rs for rs in rr.rules.rulesets if rs.tables)
    assert rs.errors == ()
    r = rs.tables["filter"].chains["DOCKER-USER"].rules[0]
    assert Cond("--comment", (comment,), False, "comment") in r.conds
    assert r.target == "DROP" and r.opt("-s").values == ("10.0.0.0/8",)


def test_both_backends_are_detected_and_both_judge():
    require_kernel()
    legacy = (
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        "-A FORWARD -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j DROP\nCOMMIT\n"
    )
    with netns() as ns:
        load(ns, "ipv4", "nft", BASE_G27)
        load(ns, "ipv4", "legacy", legacy)
        rr = read_in_ns(ns, "ipv4")["ipv4"]
    assert [rs.backend for rs in rr.rules.rulesets] == ["nf_tables", "legacy"]
    assert not any("legacy tables present" in w for w in rr.warnings)  # nft's stderr notice
    snap = analyse_doc(web_doc(), rr.rules)
    assert backends_mixed(snap)
    assert ("nf_tables", "ipv4", 18) in snap.backend_rules
    assert ("legacy", "ipv4", 1) in snap.backend_rules
    v = port_report(snap, "web", 8080).verdict
    assert v.state == "dropped" and "filter/FORWARD #1" in v.reason


def test_legacy_only_namespace_reads_legacy():
    require_kernel()
    with netns() as ns:
        load(ns, "ipv4", "legacy", BASE_G27)
        rr = read_in_ns(ns, "ipv4")["ipv4"]
        assert "nat" in legacy_tables(ns)
    holding = [rs.backend for rs in rr.rules.rulesets if rs.tables]
    assert holding == ["legacy"]
    snap = analyse_doc(web_doc(), rr.rules)
    assert port_report(snap, "web", 8080).verdict.state == "ok"
    assert snap.docker_backends == (("ipv4", "legacy"),)


@pytest.mark.parametrize(
    ("family", "text", "nft_rule"),
    [
        ("ipv4", BASE_G27, "add rule ip nat DOCKER tcp dport 19090 dnat to 172.17.0.9:90"),
        (
            "ipv6",
            "*nat\n:PREROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\nCOMMIT\n",
            "add rule ip6 nat DOCKER tcp dport 19090 dnat to [fd00::9]:90",
        ),
    ],
)
def test_native_nft_rule_makes_the_table_unreadable(family, text, nft_rule):
    require_kernel("nft")
    with netns() as ns:
        load(ns, family, "nft", text)
        in_ns(ns, "nft", *nft_rule.split())
        rr = read_in_ns(ns, family)[family]
    assert rr.rules.error == ""
    (rs,) = rr.rules.rulesets
    assert "# Table `nat' is incompatible, use 'nft' tool." in rr.texts["nf_tables"]
    assert [(e.table, e.chain) for e in rs.errors] == [("nat", "")]
    assert "nat" not in rs.tables
    if family == "ipv4":
        assert "filter" in rs.tables  # the rest is still read
        snap = analyse_doc(web_doc(), rr.rules)
        v = port_report(snap, "web", 8080).verdict
        assert v.state == "unknown"
        assert "nf_tables nat table unreadable" in v.reason and "incompatible" in v.reason
