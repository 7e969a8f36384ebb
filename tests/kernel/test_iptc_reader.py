"""The optional python-iptables reader agrees with the save reader and creates no tables."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest
from support.corefix import BASE_G27, append_rules
from support.netns import Netns, fresh_name, namespace
from support.util import require_or_skip

# Docker 20.10's rules, plus what the python-iptables translation must get right
RULES = append_rules(
    BASE_G27,
    "nat",
    "-A DOCKER -d 127.0.0.1/32 ! -i docker0 -p udp -m udp ! --dport 15353 -j DNAT "
    "--to-destination 172.17.0.3:53",
    '-A DOCKER -m comment --comment "a \\"quoted\\" comment" -j RETURN',
)

READ = """
import json
from exporter.rules.normalize import rule_key
from exporter.sources.iptables import read_legacy
from exporter.sources.proc import legacy_tables
def keys(rs):
    return sorted(repr(rule_key(r)) for t in rs.tables.values() for c in t.chains.values() for r in c.rules)
save, _, e1 = read_legacy("ipv4", 10, False)
iptc, _, e2 = read_legacy("ipv4", 10, True)
print(json.dumps({"errors": [e1, e2], "save": keys(save) if save else None,
                  "iptc": keys(iptc) if iptc else None, "tables": legacy_tables("ipv4")}))
"""


@pytest.fixture
def netns() -> Iterator[Netns]:
    require_or_skip(os.geteuid() == 0 and shutil.which("ip") is not None, "needs root and ip")
    with namespace(fresh_name("dneiptc")) as ns:
        yield ns


def in_ns(ns: Netns, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return ns.run(argv, input=stdin, check=False, timeout=60)


def test_iptc_reader_equals_save_reader_on_legacy_rules(netns):
    pytest.importorskip("iptc") if os.environ.get("CI") != "true" else __import__("iptc")
    require_or_skip(shutil.which("iptables-legacy-restore") is not None, "iptables-legacy")
    assert in_ns(netns, "iptables-legacy-restore", stdin=RULES).returncode == 0
    p = in_ns(netns, sys.executable, "-c", READ)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["errors"] == ["", ""]
    assert out["save"] and out["iptc"] == out["save"]


def test_iptc_reader_opens_no_table_on_nft_only_host(netns):
    require_or_skip(shutil.which("iptables-nft-restore") is not None, "iptables-nft")
    assert in_ns(netns, "iptables-nft-restore", stdin=RULES).returncode == 0
    p = in_ns(netns, sys.executable, "-c", READ)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["tables"] == []
    assert in_ns(netns, "cat", "/proc/net/ip_tables_names").stdout.strip() == ""
