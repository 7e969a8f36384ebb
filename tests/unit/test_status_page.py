"""The status page (issue 15 item 5): a headline that says when Docker cannot be read, a colour
per state, rules in monospace, each state linked to docs/verdicts.md and docs/runbook.md, and
a page that reloads itself."""

from __future__ import annotations

import pathlib
import re
from dataclasses import replace

from support.servicefix import FIX, fixture_snapshot, incident_rules

from exporter.path.codes import CODES
from exporter.path.verdict import STATES
from exporter.project import doc_url
from exporter.web.page import STYLE, status_page

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs"


def one_port_per_state():
    snap = fixture_snapshot(incident_rules())
    codes = {c.state: code for code, c in CODES.items()}
    ports = [replace(p, verdict=replace(p.verdict, state=st, code=codes[st]))
             for p, st in zip(snap.ports, STATES, strict=False)]  # fmt: skip
    return replace(snap, ports=tuple(ports))


def test_docker_unreadable_is_the_headline():
    page = status_page(fixture_snapshot(docker_up=False), "/metrics")
    [headline] = re.findall(r"<h2[^>]*>(.*?)</h2>", page)[:1]
    assert headline == "Docker could not be read: no published port was checked"
    assert "0 of 0" not in page
    assert "ERROR: cannot read docker: Docker socket /var/run/docker.sock does not exist" in page


def test_headline_counts_what_is_broken():
    page = status_page(fixture_snapshot(incident_rules()), "/metrics")
    assert "<h2 class='h-misrouted'>1 of 9 published ports not ok (1 misrouted)" in page


def test_each_state_has_its_own_colour():
    colours = dict(re.findall(r"\.st-([a-z]+)\{background:(#[0-9a-f]{6})\}", STYLE))
    assert set(colours) == set(STATES) and len(set(colours.values())) == len(STATES)
    page = status_page(one_port_per_state(), "/metrics")
    for st in STATES:
        assert f"class='st st-{st}'" in page, st


def test_rules_are_monospace():
    page = status_page(fixture_snapshot(incident_rules()), "/metrics")
    stale = (
        "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 18080 -j DNAT --to-destination 172.17.0.9:80"
    )
    row = next(r for r in re.findall(r"<tr class='port-misrouted'>.*?</tr>", page))
    assert f"nat/DOCKER #1 <code>{stale}</code> sends it to" in row
    assert "<code>shadowed_by_dnat</code>" in row
    assert f"nat/DOCKER #1: <code>{stale}</code></li>" in page  # the stale rules list


def _slugs(markdown: str) -> set[str]:
    """GitHub's heading anchors, plus explicit <a name=…> anchors."""
    heads = re.findall(r"^#+ (.*)$", markdown, re.M)
    slugs = {re.sub(r"[^a-z0-9 _-]", "", h.lower()).replace(" ", "-") for h in heads}
    return slugs | set(re.findall(r'<a name="([^"]+)"></a>', markdown))


def test_each_state_links_to_its_sections_in_the_docs():
    page = status_page(one_port_per_state(), "/metrics")
    verdicts = _slugs((DOCS / "verdicts.md").read_text())
    runbook = _slugs((DOCS / "runbook.md").read_text())
    links = re.findall(r"href='([^']+)'", page)
    for st in STATES:
        href = doc_url("verdicts.md", f"state-{st}")
        assert href in links and f"state-{st}" in verdicts, st
    to_runbook = [h.split("#", 1)[1] for h in links if "/runbook.md#" in h]
    assert len(to_runbook) == len(STATES) - 1  # every state but ok
    assert set(to_runbook) <= runbook, set(to_runbook) - runbook


def test_page_reloads_itself():
    page = status_page(fixture_snapshot(), "/metrics", refresh=15)
    assert "<meta http-equiv='refresh' content='15'>" in page
    assert "<meta http-equiv='refresh' content='30'>" in status_page(None, "/metrics", 30)


def allow_list_rules() -> str:
    """Docker's documented allow-list (one remote prefix) and a rule that closes one port."""
    return (
        (FIX / "d2010_iptables.txt")
        .read_text()
        .replace(
            "-A DOCKER-USER -j RETURN",
            "-A DOCKER-USER -p tcp -m tcp --dport 8001 -j DROP\n"
            "-A DOCKER-USER -i dne-h ! -s 198.51.100.0/24 -j DROP\n"
            "-A DOCKER-USER -j RETURN",
        )
    )


def port_rows(page: str) -> dict[str, list[str]]:
    """Each port's cells as text, by `published → target`."""
    head = re.findall(r"<th>([^<]*)</th>", page)
    rows = {}
    for row in re.findall(r"<tr class='port-[a-z]+'>(.*?)</tr>", page):
        cells = dict(zip(head, re.findall(r"<td>(.*?)</td>", row), strict=False))
        rows[f"{cells['published']} → {cells['target']}"] = cells
    return rows


def test_each_port_shows_its_exposure_allowed_sources_and_owner():
    snap = fixture_snapshot(allow_list_rules())
    rows = port_rows(status_page(snap, "/metrics"))
    assert len(rows) == len(snap.ports)
    for p in snap.ports:
        b, v = p.binding, p.verdict
        cip = f"[{b.container_ip}]" if ":" in b.container_ip else b.container_ip or "-"
        cells = rows[f"{b.host_ip_display}:{b.host_port}/{b.protocol} → {cip}:{b.container_port}"]
        want = f"restricted: {v.allowed}" if v.exposure == "restricted" else v.exposure
        assert (cells["sources"], cells["owner"]) == (want, v.owner or "-")
    got = {(c["sources"], c["owner"]) for c in rows.values()}
    assert ("restricted: 198.51.100.0/24", "-") in got  # the allow-list: policy, not breakage
    assert ("public", "-") in got  # IPv6: the allow-list is IPv4 only
    assert ("local", "docker-user") in got  # the port DOCKER-USER closes


def test_sources_and_owner_are_escaped():
    snap = fixture_snapshot()
    hostile = "<script>x</script> & 'q'"
    p = replace(snap.ports[0], verdict=replace(
        snap.ports[0].verdict, exposure="restricted", allowed=hostile, owner=hostile))  # fmt: skip
    page = status_page(replace(snap, ports=(p,)), "/metrics")
    assert "<script>" not in page
    escaped = "&lt;script&gt;x&lt;/script&gt; &amp; &#x27;q&#x27;"
    assert f"<td>restricted: {escaped}</td>" in page and f"<td>{escaped}</td>" in page
