"""Source classes on a real dockerd (issue 13): Docker's documented DOCKER-USER restriction.

The external client gets a second address (192.0.2.3) next to its first (192.0.2.2); the rule
Docker's "Packet filtering and firewalls" page gives, `iptables -I DOCKER-USER -i ext_if ! -s
<allowed> -j DROP`, lets only the second in. `check --json` must call the port `ok` (it works
as configured), `restricted` to 192.0.2.3/32, with the other class dropped by DOCKER-USER
(owner docker-user); curl from each address must get what its class says. Rules are restored
afterwards; the second address is removed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.lab import CLIENT_ADDR, WEB_PATH, Lab
from support.labcheck import restored, run_check

pytestmark = pytest.mark.lab

WEB, PORT = "srcweb", 18160
ALLOWED = "192.0.2.3"


@pytest.fixture(scope="module")
def site(lab: Lab) -> Iterator[Lab]:
    lab.run_web(WEB, PORT)
    ns = lab.client_ns
    lab.nsexec(["ip", "addr", "add", f"{ALLOWED}/24", "dev", ns], ns=ns)
    try:
        yield lab
    finally:
        lab.nsexec(["ip", "addr", "del", f"{ALLOWED}/24", "dev", ns], ns=ns, check=False)


def get_from(lab: Lab, src: str) -> str:
    """What curl from the client's address `src` gets: the answering container and the address
    it saw, or why it failed."""
    url = f"http://{lab.host_addr}:{PORT}{WEB_PATH}"
    p = lab.nsexec(["curl", "-sS", "-m", "3", "--interface", src, url], ns=lab.client_ns,
                   check=False, timeout=20)  # fmt: skip
    if p.returncode != 0:
        return f"curl exit {p.returncode}"
    name, _, seen = p.stdout.strip().partition(" ")
    return f"{name} {seen.strip('[]').removeprefix('::ffff:')}"  # httpd: "[::ffff:a.b.c.d]"


def test_dockers_recipe_restricts_and_each_client_gets_what_its_class_says(site: Lab) -> None:
    lab = site
    with restored(lab):
        lab.nsexec(["iptables", "-I", "DOCKER-USER", "-i", lab.host_ns, "!", "-s", ALLOWED,
                    "-j", "DROP"])  # fmt: skip
        port = run_check(lab).port(WEB)
        assert (port["state"], port["exposure"], port["allowed_sources"]) == (
            "ok",
            "restricted",
            f"{ALLOWED}/32",
        ), port
        classes = {c["state"]: c for c in port["classes"]}
        assert set(classes) == {"ok", "dropped"}, port["classes"]
        assert classes["ok"]["prefixes"] == [f"{ALLOWED}/32"]
        assert classes["dropped"]["owner"] == "docker-user"
        assert "filter/DOCKER-USER #1" in classes["dropped"]["reason"]
        assert get_from(lab, ALLOWED) == f"{WEB} {ALLOWED}"
        assert get_from(lab, CLIENT_ADDR) == "curl exit 28"  # dropped: no answer in time
    port = run_check(lab).port(WEB)  # the rule gone: open to every address again
    assert (port["state"], port["exposure"]) == ("ok", "public")
    assert get_from(lab, CLIENT_ADDR) == f"{WEB} {CLIENT_ADDR}"
