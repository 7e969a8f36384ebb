"""Reading rules without the capabilities it needs is an error, never an empty ruleset."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest
from support.corefix import BASE_G27
from support.netns import fresh_name, namespace
from support.util import require_or_skip

LEGACY_DOCKER = BASE_G27  # Docker 20.10's rules, loaded into the legacy backend
READ = (
    "import json; from exporter.sources.iptables import read_family; r = read_family('ipv4', 10)"
    "; print(json.dumps({'error': r.rules.error, 'rulesets': len(r.rules.rulesets)}))"
)


@pytest.fixture
def legacy_ns() -> Iterator[list[str]]:
    tools = ("ip", "setpriv", "nsenter", "iptables-legacy-restore")
    ok = os.geteuid() == 0 and all(shutil.which(t) for t in tools)
    require_or_skip(ok, "needs root, ip, setpriv, nsenter and iptables-legacy")
    with namespace(fresh_name("dnecap")) as ns:
        ns.run(["iptables-legacy-restore"], input=LEGACY_DOCKER)
        yield ns.enter


def read_with_caps(nsenter: list[str], caps: str) -> dict:
    setpriv = ["setpriv", "--inh-caps=-all", f"--bounding-set=-all{caps}"]
    p = subprocess.run([*nsenter, *setpriv, sys.executable, "-c", READ],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_legacy_rules_without_net_raw_make_the_family_unreadable(legacy_ns):
    full = read_with_caps(legacy_ns, ",+net_admin,+net_raw")
    assert full == {"error": "", "rulesets": 2}  # the empty nft side and the legacy side
    no_raw = read_with_caps(legacy_ns, ",+net_admin")
    assert no_raw["rulesets"] == 0
    assert "Permission denied" in no_raw["error"] and "CAP_NET_RAW" in no_raw["error"]


def test_no_capabilities_at_all_is_an_error_naming_cap_net_admin(legacy_ns):
    none = read_with_caps(legacy_ns, "")
    assert none["rulesets"] == 0 and "CAP_NET_ADMIN" in none["error"]
