"""Hostile input: the rule parser, Docker state decoding and the exposition never crash or lie.

Hypothesis runs with a fixed budget in CI (`database=None`: nothing written); set
DNE_FUZZ_EXAMPLES (e.g. 20000) for a longer bounded fuzzing run of the same properties.
`python -m bench.fuzz` runs the properties as a report: the examples each ran (COUNTS) and
the time it took.
"""

from __future__ import annotations

import contextlib
import copy
import html
import os
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from support.faultkit import record
from support.servicefix import FIX, HOST_ADDRS, docker_raw, rules

from exporter.docker.decode import DecodeError, decode_state
from exporter.docker.raw import DockerRaw
from exporter.readings import Readings
from exporter.rules.iptsave import parse_save
from exporter.serve.collector import SnapshotCollector
from exporter.serve.labels import MAX_LABEL
from exporter.serve.snapshot import assess
from exporter.web.page import status_page

BUDGET = int(os.environ.get("DNE_FUZZ_EXAMPLES", "0"))
TEXT = (FIX / "d2010_iptables.txt").read_text()
LINES = TEXT.splitlines()
RAW = docker_raw()
COUNTS: dict[str, int] = {}  # examples run, by kind: read by bench.fuzz


def budget(default: int):
    n = max(default, BUDGET)
    return settings(max_examples=n, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))  # fmt: skip


def counted(name: str) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1


def verdicts(v4_text: str, raw: DockerRaw = RAW) -> dict[tuple, str]:
    s = assess(Readings(0.0, raw, "", rules(v4_text), HOST_ADDRS))
    return {(p.binding.container, p.binding.family, p.binding.host_ip, p.binding.host_port):
            p.verdict.state for p in s.ports}  # fmt: skip


ORIGINAL = verdicts(TEXT)


def test_fixture_is_all_ok_to_start_with() -> None:
    # the properties below compare against this: a garbled line may only turn ok into unknown
    assert set(ORIGINAL.values()) == {"ok"} and len(ORIGINAL) == 9


# ---------------------------------------------------------------- iptables-save text


@budget(400)
@given(st.text(alphabet=st.sampled_from(list("-A!\"'\\ *:[]#\n\t\x00\r\x0b\x0c\x1c\x85\u2028COMIT"
                                             "natjgpmd0123 \ufffd")), max_size=400))  # fmt: skip
def test_parser_is_total_on_arbitrary_text(text: str) -> None:
    counted("parser: arbitrary text")
    rs = parse_save(text, "ipv4", "nf_tables")
    for e in rs.errors:
        assert str(e).startswith(f"line {e.line_no} (")


@budget(200)
@given(st.binary(max_size=2000))
def test_parser_is_total_on_binary_garbage(data: bytes) -> None:
    counted("parser: binary / invalid UTF-8")
    # the source decodes with errors="replace", exactly as run.py does
    parse_save(data.decode("utf-8", "replace"), "ipv4", "nf_tables")


def test_every_truncation_of_a_real_output_is_reported_and_never_ok() -> None:
    cuts = 0
    for k in range(len(LINES) + 1):
        text = "\n".join(LINES[:k]) + "\n"
        rs = parse_save(text, "ipv4", "nf_tables")
        inside = sum(ln.startswith("*") for ln in LINES[:k]) > LINES[:k].count("COMMIT")
        assert bool(rs.errors) == inside, (k, [str(e) for e in rs.errors])
        got = verdicts(text)
        if inside:  # cut inside a table: what depends on the table cannot be judged
            changed = {key: v for key, v in got.items() if key[1] == "ipv4"
                       and v != ORIGINAL[key] and v != "unknown"}  # fmt: skip
            assert changed == {}, (k, changed)
        cuts += 1
        # and cut in the middle of the line as well
        if k < len(LINES) and len(LINES[k]) > 4 and not LINES[k].startswith("#"):
            half = text + LINES[k][: len(LINES[k]) // 2]
            assert parse_save(half, "ipv4", "nf_tables").errors
            cuts += 1
    record("input", f"{TEXT.count(chr(10))}-line real iptables-save cut at every line and "
           "mid-line", "every cut inside a table reported (no COMMIT); no IPv4 verdict other "
           "than unknown changes", truncations=cuts)  # fmt: skip


GARBAGE = st.sampled_from(['"', "'", "\\", "! !", "\x00", "\ufffd", " -m", " --dport", " -j",
                           " ! ", "x", "?", "-o a b", "\n", "\nbogus"])  # fmt: skip


@budget(600)
@given(st.integers(0, len(LINES) - 1), st.integers(0, 120), GARBAGE, st.integers(0, 4))
def test_a_garbled_line_never_yields_a_different_definite_verdict(i, at, garbage, cut) -> None:
    lines = list(LINES)
    line = lines[i]
    at = min(at, len(line))
    lines[i] = line[:at] + garbage + line[at + cut :]
    text = "\n".join(lines) + "\n"
    rs = parse_save(text, "ipv4", "nf_tables")
    if not any(e.line_no in (i + 1, i + 2) for e in rs.errors):
        return  # the change still parses (e.g. a different port): not a garbled line
    counted("garbled real line")
    got = verdicts(text)
    for key, state in got.items():
        if key[1] == "ipv4":
            assert state in (ORIGINAL[key], "unknown"), (key, state, lines[i])
    m = re.search(r"--dport (\d+) .*-j DNAT", line)
    if line.startswith("-A DOCKER ") and m:  # that port's own DNAT: its path runs through it
        port = int(m.group(1))
        hit = {k: v for k, v in got.items()  # (a loopback binding is ok by design, rules or not)
               if k[1] == "ipv4" and k[3] == port and not k[2].startswith("127.")}  # fmt: skip
        assert set(hit.values()) <= {"unknown"}, (hit, lines[i])


@pytest.mark.parametrize("chain", ["DOCKxER", '"DOCKER', "DOCKER\x00", "DOCK"])
def test_incident_rule_under_a_garbled_chain_name_is_not_ok(chain: str) -> None:
    # the incident: a stale DNAT ahead of Docker's sends web's port elsewhere. If its chain name
    # is garbled, the rule lands in no known chain; saying "ok" would hide the incident.
    stale = (
        "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 18080 -j DNAT --to-destination 172.17.0.9:80"
    )
    text = TEXT.replace("-A DOCKER -i br-", stale + "\n-A DOCKER -i br-", 1)
    assert verdicts(text)[("web", "ipv4", "0.0.0.0", 18080)] == "misrouted"
    garbled = text.replace(stale, stale.replace("-A DOCKER", f"-A {chain}", 1))
    assert verdicts(garbled)[("web", "ipv4", "0.0.0.0", 18080)] == "unknown"


def test_huge_ruleset_parses(record_property) -> None:
    body = "".join(
        f"-A INPUT -s 10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}/32 -p tcp -m tcp "
        f'--dport {i % 65535 + 1} -m comment --comment "rule {i}" -j ACCEPT\n'
        for i in range(50_000)
    )
    text = f"*filter\n:INPUT ACCEPT [0:0]\n{body}COMMIT\n"
    t = time.perf_counter()
    rs = parse_save(text, "ipv4", "nf_tables")
    took = time.perf_counter() - t
    assert rs.rule_count() == 50_000 and rs.errors == ()
    record_property("parse 50k rules s", f"{took:.2f}")
    record("input", "50,000-line ruleset (quoted comments)", "parsed, no errors",
           parse_s=round(took, 2), mib=round(len(text) / 2**20, 1))  # fmt: skip


@pytest.mark.parametrize(
    "text",
    [
        "-A x " + '"' * 200_000,
        "*filter\n:x - [0:0]\n-A x " + "! " * 100_000,
        "*filter\n:x - [0:0]\n-A x " + '"a" ' * 50_000 + "'",
        "\x00" * 1_000_000,
        "*filter\n" + ":x - [0:0]\n" * 100_000,
    ],
    ids=["quotes", "negations", "unbalanced-after-quotes", "nul-bytes", "100k-chains"],
)
def test_pathological_lines_finish(text: str) -> None:
    t = time.perf_counter()
    parse_save(text, "ipv4", "nf_tables")
    record("input", f"pathological input: {len(text):,} chars ({text[:24]!r}...)",
           "parsed without raising", parse_s=round(time.perf_counter() - t, 3))  # fmt: skip


# ---------------------------------------------------------------- Docker's JSON

SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
           | st.text(max_size=12))  # fmt: skip
JSONISH = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
# values Docker's fields plausibly get wrong: numbers as strings, bad addresses, huge, empty
NEAR_MISS = st.sampled_from([
    "", "nope", "300.1.1.1", "zz::1", "fe80::/zz", "10.0.0.0/33", "a b\n\"c", "eth0;rm",
    "x" * 10_000, "\udc80", float("inf"), float("nan"), -1, 0, 65536, 2**64, 1.5, True, [], {},
    [[1, 2]], {"a": None}, None,
])  # fmt: skip


def _mutate(obj, data, depth=0):
    if isinstance(obj, dict) and obj and (depth == 0 or data.draw(st.booleans())):
        key = data.draw(st.sampled_from(sorted(obj)))
        return {**obj, key: _mutate(obj[key], data, depth + 1)}
    if isinstance(obj, list) and obj and (depth == 0 or data.draw(st.booleans())):
        i = data.draw(st.integers(0, len(obj) - 1))
        return [*obj[:i], _mutate(obj[i], data, depth + 1), *obj[i + 1 :]]
    return data.draw(NEAR_MISS | JSONISH)


def _raw(data) -> DockerRaw:
    parts = [RAW.containers, RAW.networks, RAW.info, RAW.version]
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, 3))
        parts[i] = _mutate(parts[i], data)
    return DockerRaw(*copy.deepcopy(parts), RAW.hints)


@budget(600)
@given(st.data())
def test_wrong_types_anywhere_give_a_decode_error_or_a_state(data) -> None:
    counted("Docker JSON mutated")
    raw = _raw(data)
    try:
        decode_state(raw.containers, raw.networks, raw.info, raw.version, raw.hints)
    except DecodeError:
        counted("Docker JSON -> DecodeError")
    s = assess(
        Readings(0.0, raw, "", rules(), HOST_ADDRS)
    )  # never raises, whatever the analysis meets
    if not s.source_up("docker"):
        assert s.ports == () and "Docker answered something unexpected" in s.sources[0].error
    for p in s.ports:
        assert 0 < p.binding.host_port < 65536
    _exposition(s)  # and it renders


@budget(200)
@given(JSONISH, JSONISH, JSONISH, JSONISH)
def test_arbitrary_json_gives_a_decode_error_or_a_state(c, n, i, v) -> None:
    counted("Docker JSON arbitrary")
    with contextlib.suppress(DecodeError):
        decode_state(c, n, i, v, RAW.hints)
    assess(Readings(0.0, DockerRaw(c, n, i, v, RAW.hints), "", rules(), HOST_ADDRS))


@pytest.mark.parametrize(
    ("where", "value", "says"),
    [
        ("port", float("inf"), "non-numeric ports"),
        ("port", 70000, "out of range"),
        ("subnet", "nope", "not an IP network"),
        ("bridge", 'a b\n"c', "not an interface name"),
        ("host_ip", 'a b\n"c', "not an IP address"),
        ("container_ip", "10.0.0.1 -j DROP", "not an IP address"),
    ],
)
def test_values_the_analysis_cannot_use_are_decode_errors(where, value, says) -> None:
    raw = copy.deepcopy(RAW)
    web = next(c for c in raw.containers if c["Names"] == ["/web"])
    if where == "port":
        web["Ports"][0]["PublicPort"] = value
    elif where == "subnet":
        raw.networks[0]["IPAM"]["Config"] = [{"Subnet": value}]
    elif where == "host_ip":
        web["Ports"][0]["IP"] = value
    elif where == "container_ip":
        web["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] = value
    else:
        net = next(n for n in raw.networks if n["Name"] == "bridge")
        net.setdefault("Options", {})["com.docker.network.bridge.name"] = value
    with pytest.raises(DecodeError, match=says):
        decode_state(raw.containers, raw.networks, raw.info, raw.version, raw.hints)
    s = assess(Readings(0.0, raw, "", rules(), HOST_ADDRS))
    assert not s.source_up("docker") and s.ports == ()
    record("input", f"Docker JSON: {where} = {value!r}",
           f"DecodeError '{says}' -> source_up docker 0, no ports")  # fmt: skip


# ---------------------------------------------------------------- escaping in the outputs

NASTY = ['we"b\\x\nnl é 日本', "<script>alert(1)</script>", 'a"} 1\nfake_metric{x="', "\udc80bad",
         "tab\tcr\r", "x" * 10_000]  # fmt: skip


def _exposition(s) -> str:
    from support.servicefix import StaticHolder

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(StaticHolder(s), max_bindings=50))
    return generate_latest(registry).decode("utf-8")


def _snapshot_named(name: str, comment: str = "c"):
    raw = copy.deepcopy(RAW)
    web = next(c for c in raw.containers if c["Names"] == ["/web"])
    web["Names"], web["Image"] = ["/" + name], name
    web.setdefault("Labels", {})["com.docker.compose.project"] = name
    stale = (f"-A DOCKER ! -i docker0 -p tcp -m tcp --dport 18080 -m comment --comment "
             f'"{comment}" -j DNAT --to-destination 172.17.0.9:80')  # fmt: skip
    text = TEXT.replace("-A DOCKER -i br-", stale + "\n-A DOCKER -i br-", 1)
    return assess(Readings(0.0, raw, "", rules(text), HOST_ADDRS))


def _clean(value: str) -> str:
    return value.encode("utf-8", "replace").decode("utf-8")


@pytest.mark.parametrize("name", NASTY, ids=range(len(NASTY)))
def test_names_and_comments_are_escaped_in_the_exposition(name: str) -> None:
    comment = re.sub(r'["\\\s]', "_", name)[:200]  # what iptables-save could print
    s = _snapshot_named(name, f'{comment} \\"q\\" <b>')
    body = _exposition(s)
    families = {f.name: f for f in text_string_to_metric_families(body)}
    containers = {x.labels["container"] for x in families["docker_nat_port_state"].samples}
    want = _clean(name)
    want = want if len(want) <= MAX_LABEL else want[: MAX_LABEL - 1] + "…"
    assert want in containers, (want, containers)
    assert "fake_metric" not in families
    for f in families.values():
        for sample in f.samples:
            assert all(len(v) <= MAX_LABEL for v in sample.labels.values()), sample
    # every label value reads back as the snapshot's own value (bounded)
    [port] = [p for p in s.ports if p.binding.family == "ipv4" and p.binding.host_port == 18080]
    assert port.verdict.state == "misrouted" and comment in port.verdict.reason
    [info] = [x for x in families["docker_nat_port_info"].samples
              if x.labels["container"] == want and x.labels["family"] == "ipv4"]  # fmt: skip
    assert info.labels["reason"] == port.verdict.code == "shadowed_by_dnat"  # never the comment
    [cinfo] = [x for x in families["docker_nat_container_info"].samples
               if x.labels["container"] == want]  # fmt: skip
    assert cinfo.labels["image"] == cinfo.labels["compose_project"] == want
    record("input", f"container name/image/compose label {name[:30]!r}"
           f"{'…' if len(name) > 30 else ''} and a rule comment with quotes and markup",
           "label values read back equal (bounded to 200 chars, invalid UTF-8 replaced), "
           "the reason label is the code, never the comment; "
           "no injected series", length=len(name))  # fmt: skip


@pytest.mark.parametrize("name", NASTY, ids=range(len(NASTY)))
def test_names_are_escaped_on_the_status_page(name: str) -> None:
    s = _snapshot_named(name, "<b>x&y</b>")
    page = status_page(s, "/metrics")
    page.encode("utf-8")  # what aiohttp will do
    assert "<script>" not in page and "<b>x" not in page
    assert html.escape(_clean(name)) in page
    assert "&lt;b&gt;x&amp;y&lt;/b&gt;" in page


def test_docker_version_with_unicode_digits_decodes() -> None:
    # found by the fuzzer: "¹".isdigit() is True but int("¹") raises
    raw = copy.deepcopy(RAW)
    raw.version["Version"] = "¹.2"
    state = decode_state(raw.containers, raw.networks, raw.info, raw.version, raw.hints)
    assert state.daemon.version == "¹.2"


# ---------------------------------------------------------------- cardinality


def test_max_bindings_keeps_broken_ports_first() -> None:
    from support.servicefix import fixture_snapshot, incident_rules

    s = fixture_snapshot(incident_rules())
    broken = [p for p in s.ports if p.verdict.state != "ok"]
    assert broken and len(s.ports) > 3
    from support.servicefix import StaticHolder

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(StaticHolder(s), max_bindings=3))
    body = generate_latest(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(body)}
    shown = {(x.labels["container"], x.labels["host_port"], x.labels["family"])
             for x in families["docker_nat_port_state"].samples}  # fmt: skip
    assert len(shown) == 3
    for p in broken:
        assert (p.binding.container, str(p.binding.host_port), p.binding.family) in shown
    [omitted] = families["docker_nat_bindings_omitted"].samples
    assert omitted.value == len(s.ports) - 3
    record(
        "cardinality",
        f"--max-bindings 3 with {len(s.ports)} bindings, {len(broken)} broken",
        f"3 exported, the broken ones first; docker_nat_bindings_omitted {omitted.value:g}",
    )
