"""The REAL exporter under rule changes no published port's path looks at (fail2ban-style INPUT
rules), in a throwaway namespace with Docker 20.10's rules and a fake Engine API: the kernel's
nf_tables notifications reach it, an unrelated change costs no refresh, a DNAT deletion does
(and is seen, read as one chain); the tables are listed over netlink, so nft runs only where a
native table is. Nothing is timed here; figures are `python -m bench`'s."""

from __future__ import annotations

import json
import sys
import time

import pytest
import test_faults
from support.exporterproc import Scrape, select, states
from test_faults import DEADLINE, docker_v4_namespace, healthy, start

pytestmark = pytest.mark.slow
exporters, docker = test_faults.exporters, test_faults.docker
WEB = ("web", "ipv4", "0.0.0.0", "18080")
QUIET = 2.0  # seconds given to a refresh that should not come: 10 debounces


@pytest.fixture
def netns():
    with docker_v4_namespace("dnerlv") as ns:
        yield ns


def last_refresh(s: Scrape) -> float:
    (sample,) = select(s.body, "docker_nat_last_refresh_timestamp_seconds")
    return sample.value


def test_unrelated_changes_cost_no_refresh_a_dnat_deletion_does(netns, docker, exporters):
    exp = start(exporters, netns, docker.url, interval="600s")
    exp.wait_for(healthy, DEADLINE, what="healthy")
    # the first refreshes settle (the one after the feed started reads everything once)
    time.sleep(QUIET)
    before = last_refresh(exp.get())
    for n in range(10):
        rule = ["INPUT", "-s", f"198.51.100.{n + 1}", "-j", "DROP"]
        netns.run(["iptables-nft", "-I", *rule])
        netns.run(["iptables-nft", "-D", *rule])
    netns.run(["iptables-nft", "-N", "f2b-sshd"])
    netns.run(["iptables-nft", "-A", "f2b-sshd", "-j", "RETURN"])
    time.sleep(QUIET)
    quiet = exp.get()
    assert last_refresh(quiet) == before, "an unrelated change refreshed"
    assert states(quiet.body)[WEB] == "ok"

    listing = netns.run(["iptables-nft", "-t", "nat", "-S", "DOCKER"]).stdout.splitlines()
    dnat = next(line for line in listing if "--dport 18080" in line and "DNAT" in line)
    netns.run(["iptables-nft", "-t", "nat", "-D", *dnat.split()[1:]])
    _, gone = exp.wait_for(lambda s: states(s.body).get(WEB) not in (None, "ok"), DEADLINE,
                           what="the DNAT deletion seen")  # fmt: skip
    assert last_refresh(gone) > before
    log = exp.stderr()
    assert "refresh requested: nftables rule changed: ip nat DOCKER" in log
    assert "ip filter INPUT" not in log and "f2b-sshd" not in log

    netns.run(["iptables-nft", "-t", "nat", "-A", *dnat.split()[1:]])
    exp.wait_for(lambda s: states(s.body).get(WEB) == "ok", DEADLINE, what="the DNAT back")


LISTING = """
import json, os, sys
from exporter.sources.nft import read_native
from exporter.sources.nftnl import list_tables
os.environ["PATH"] = sys.argv[1]  # an `nft` that fails: was it run?
got = read_native(5.0, frozenset({"ipv4"}))
print(json.dumps({"tables": list_tables(), "error": got.error, "read": got.tables}))
"""


def test_the_tables_are_listed_over_netlink_and_nft_runs_only_for_native_ones(netns, tmp_path):
    fake = tmp_path / "nft"
    fake.write_text("#!/bin/sh\necho 'nft ran' >&2\nexit 1\n")
    fake.chmod(0o755)

    def listing() -> dict:
        out = netns.run([sys.executable, "-c", LISTING, str(tmp_path)], timeout=60).stdout
        return json.loads(out)

    only = listing()
    assert sorted(map(tuple, only["tables"])) == [("ip", "filter"), ("ip", "nat")]
    assert only["error"] == "" and only["read"] == []  # iptables-nft's own: nft not run
    netns.run(["nft", "add table inet dnefw; add chain inet dnefw gate "
               "{ type filter hook forward priority 0; policy drop; }"])  # fmt: skip
    native = listing()
    assert ["inet", "dnefw"] in native["tables"]
    assert "nft ran" in native["error"]  # a native table is there: nft is asked
