"""`docker-nat-exporter check --docker-state F --iptables-save F`, run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.corefix import (
    BASE_G27,
    DNAT_LINE,
    LAYOUT_NAMES,
    LAYOUTS,
    USER_RETURN,
    d2010_doc,
    insert_before,
    layout,
    web_doc,
)

from exporter.path.codes import CODES

REPO = Path(__file__).resolve().parents[2]
FIX = Path(__file__).resolve().parents[1] / "fixtures"
STALE = "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 18080 -j DNAT --to-destination 172.17.0.9:80"


def check(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DOCKER_NAT_EXPORTER_") and k not in ("DOCKER_HOST", "COLUMNS")
    }
    return subprocess.run(
        [sys.executable, "-m", "exporter", "check", *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write(tmp_path: Path, name: str, content: str | dict | bytes) -> Path:
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content if isinstance(content, str) else json.dumps(content))
    return p


def no_traceback(r: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr


@pytest.fixture
def d2010_state(tmp_path):
    return write(tmp_path, "state.json", d2010_doc())


def test_real_capture_is_healthy(d2010_state):
    r = check(
        "--docker-state",
        d2010_state,
        "--iptables-save",
        FIX / "d2010_iptables.txt",
        "--ip6tables-save",
        FIX / "d2010_ip6tables.txt",
    )
    no_traceback(r)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "layout g27, userland proxy on (default)" in r.stdout
    assert "Jumps: 6/6 present" in r.stdout and "Stale rules: 0" in r.stdout
    assert r.stdout.count("\nok ") == 9


@pytest.mark.parametrize("name", LAYOUT_NAMES)
def test_layouts_are_healthy(name):
    d = LAYOUTS / name
    r = check(
        "--docker-state",
        d / "state.json",
        "--iptables-save",
        d / "iptables.txt",
        "--ip6tables-save",
        d / "ip6tables.txt",
    )
    no_traceback(r)
    assert r.returncode == 0, r.stdout
    assert "Stale rules: 0" in r.stdout


def test_misrouted_port_is_exit_1_and_names_the_stale_rule(tmp_path, d2010_state):
    rules = (FIX / "d2010_iptables.txt").read_text()
    docker_dnat = "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 18080"
    rules = insert_before(rules, docker_dnat, STALE)
    r = check(
        "--docker-state",
        d2010_state,
        "--iptables-save",
        write(tmp_path, "v4.txt", rules),
        "--ip6tables-save",
        FIX / "d2010_ip6tables.txt",
    )
    no_traceback(r)
    assert r.returncode == 1
    line = next(x for x in r.stdout.splitlines() if x.startswith("misrouted"))
    assert "web" in line and "0.0.0.0:18080/tcp" in line
    assert f"nat/DOCKER #3 `{STALE}`" in line
    assert "172.17.0.9:80 (no container has it) instead of 172.17.0.2:80" in line
    assert "Stale rules: 1" in r.stdout
    assert f"ipv4 nf_tables nat/DOCKER #3: {STALE}" in r.stdout


def test_json_schema(tmp_path, d2010_state):
    rules = insert_before(
        (FIX / "d2010_iptables.txt").read_text(), "-A DOCKER ! -i docker0 -p tcp", STALE
    )
    r = check(
        "--json",
        "--docker-state",
        d2010_state,
        "--iptables-save",
        write(tmp_path, "v4.txt", rules),
        "--ip6tables-save",
        FIX / "d2010_ip6tables.txt",
    )
    no_traceback(r)
    doc = json.loads(r.stdout)
    assert set(doc) >= {
        "taken_at",
        "exit_code",
        "sources",
        "daemon",
        "ports",
        "jumps",
        "bridge_rules",
        "stale_rules",
        "backend_rules",
        "backends_mixed",
        "warnings",
    }
    assert doc["exit_code"] == r.returncode == 1
    assert doc["taken_at"] == pytest.approx(d2010_state.stat().st_mtime)
    assert doc["sources"] == {
        "docker": {"up": True, "error": ""},
        "iptables": {"up": True, "error": ""},
        "ip6tables": {"up": True, "error": ""},
    }
    assert set(doc["daemon"]) >= {
        "version",
        "api_version",
        "firewall_backend",
        "layout",
        "userland_proxy",
        "userland_proxy_source",
        "rootless",
    }
    assert doc["daemon"]["layout"] == "g27" and doc["daemon"]["userland_proxy"] is True
    assert len(doc["ports"]) == 9
    port_keys = {
        "container",
        "container_id",
        "network",
        "bridge",
        "family",
        "protocol",
        "host_ip",
        "host_port",
        "container_ip",
        "container_port",
        "design",
        "state",
        "code",
        "reason",
        "rule",
        "rules",
    }
    for p in doc["ports"]:
        assert set(p) >= port_keys
        assert isinstance(p["host_port"], int) and isinstance(p["container_port"], int)
        assert p["state"] in ("ok", "proxied", "misrouted", "dropped", "unreachable", "unknown")
        assert CODES[p["code"]].state == p["state"]
        for e in p["rules"]:
            assert set(e) >= {"kind", "family", "rule", "present"}
            assert isinstance(e["present"], bool)
    web = next(p for p in doc["ports"] if p["container"] == "web" and p["family"] == "ipv4")
    assert web["state"] == "misrouted" and web["rule"] == STALE
    assert web["code"] == "shadowed_by_dnat"
    assert all(e["present"] for e in web["rules"])  # Docker's own rules are all there
    assert [e["kind"] for e in web["rules"]] == ["dnat", "forward_accept", "hairpin_masquerade"]
    assert all(
        set(j) >= {"kind", "family", "rule", "present"} for j in doc["jumps"] + doc["bridge_rules"]
    )
    assert doc["stale_rules"] == [
        {"family": "ipv4", "backend": "nf_tables", "rule": "nat/DOCKER #3", "text": STALE}
    ]
    assert doc["backend_rules"] == [
        {"backend": "nf_tables", "family": "ipv4", "rules": 39},
        {"backend": "nf_tables", "family": "ipv6", "rules": 0},
    ]
    assert doc["backends_mixed"] is False and doc["warnings"] == []


def test_missing_rule_is_exit_1_and_listed(tmp_path):
    doc, v4, v6 = layout("g28")
    v4 = v4.replace("-A DOCKER-BRIDGE -o br-311a970dfdd4 -j DOCKER\n", "")
    r = check(
        "--docker-state",
        write(tmp_path, "s.json", doc),
        "--iptables-save",
        write(tmp_path, "4", v4),
        "--ip6tables-save",
        write(tmp_path, "6", v6),
    )
    assert r.returncode == 1
    assert "MISSING ipv4: -t filter -A DOCKER-BRIDGE -o br-311a970dfdd4 -j DOCKER" in r.stdout
    dropped = [x for x in r.stdout.splitlines() if x.startswith("dropped")]
    # appnet's IPv4 ports: web 8080, dns 5353 and 8053, and multi's 8090 (its dual-stack
    # network takes the ports over bridge's higher GwPriority, as on a real 28.5.2)
    assert len(dropped) == 4


def test_incompatible_table_is_exit_1_unknown(tmp_path):
    doc = web_doc()
    v4 = BASE_G27.split("*nat")[0] + "# Table `nat' is incompatible, use 'nft' tool.\n"
    r = check(
        "--json",
        "--docker-state",
        write(tmp_path, "s.json", doc),
        "--iptables-save",
        write(tmp_path, "4", v4),
    )
    no_traceback(r)
    out = json.loads(r.stdout)
    assert r.returncode == 1
    assert (
        out["ports"][0]["state"] == "unknown"
        and "nat table unreadable" in out["ports"][0]["reason"]
    )
    assert any("incompatible" in w for w in out["warnings"])


def test_a_lone_incompatible_line_is_a_save_output(tmp_path):
    r = check(
        "--docker-state",
        write(tmp_path, "s.json", web_doc()),
        "--iptables-save",
        write(tmp_path, "4", "# Table `nat' is incompatible, use 'nft' tool.\n"),
    )
    assert r.returncode == 1 and "unknown" in r.stdout and "configuration error" not in r.stderr


def test_garbled_line_is_a_warning_naming_it(tmp_path):
    v4 = insert_before(BASE_G27, USER_RETURN, "-A DOCKER-USER ! ! -s 10.0.0.0/8 -j DROP")
    r = check(
        "--docker-state",
        write(tmp_path, "s.json", web_doc()),
        "--iptables-save",
        write(tmp_path, "4", v4),
    )
    no_traceback(r)
    assert r.returncode == 1
    lineno = v4.splitlines().index("-A DOCKER-USER ! ! -s 10.0.0.0/8 -j DROP") + 1
    assert (
        f"warning: --iptables-save {tmp_path / '4'}: line {lineno} (filter/DOCKER-USER): double negation"
        in r.stderr
    )
    assert "warning:" not in r.stdout
    assert any(x.startswith("unknown  web") for x in r.stdout.splitlines())


def test_legacy_save_file_is_labelled_legacy(tmp_path):
    v4 = BASE_G27.replace("iptables-save v1.8.9 (nf_tables)", "iptables-save v1.8.9")
    r = check(
        "--json",
        "--docker-state",
        write(tmp_path, "s.json", web_doc()),
        "--iptables-save",
        write(tmp_path, "4", v4),
    )
    out = json.loads(r.stdout)
    assert out["backend_rules"][0]["backend"] == "legacy"
    assert out["ports"][0]["state"] == "ok"


def test_empty_ip6tables_save_means_no_ipv6_tables(tmp_path, d2010_state):
    r = check(
        "--json",
        "--docker-state",
        d2010_state,
        "--iptables-save",
        FIX / "d2010_iptables.txt",
        "--ip6tables-save",
        write(tmp_path, "6", ""),
    )
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["sources"]["ip6tables"]["up"] is True


def test_without_ip6tables_file_ipv6_ports_are_unknown(d2010_state):
    r = check("--docker-state", d2010_state, "--iptables-save", FIX / "d2010_iptables.txt")
    assert r.returncode == 1
    assert "ERROR: cannot read ip6tables: no ip6tables-save file given" in r.stderr
    assert "ERROR" not in r.stdout
    assert r.stdout.count("ipv6 rules could not be read") == 4


@pytest.mark.parametrize(
    ("client", "code"),
    [(None, 0), ("203.0.113.9", 1), ("198.51.100.9", 0)],
)
def test_probe_client_address(tmp_path, client, code):
    v4 = insert_before(BASE_G27, USER_RETURN, "-A DOCKER-USER -s 203.0.113.0/24 -j DROP")
    args = [
        "--docker-state",
        write(tmp_path, "s.json", web_doc()),
        "--iptables-save",
        write(tmp_path, "4", v4),
    ]
    if client:
        args += ["--probe.client-ipv4", client]
    r = check(*args)
    assert r.returncode == code, r.stdout + r.stderr


def test_stale_dnat_after_dockers_is_ok_but_listed(tmp_path):
    v4 = BASE_G27.replace(
        DNAT_LINE, DNAT_LINE + "\n" + DNAT_LINE.replace("172.17.0.2:80", "172.17.0.9:80")
    )
    r = check(
        "--docker-state",
        write(tmp_path, "s.json", web_doc()),
        "--iptables-save",
        write(tmp_path, "4", v4),
    )
    assert r.returncode == 0
    assert "Stale rules: 1" in r.stdout and "nat/DOCKER #3" in r.stdout


# --- unreadable input: exit 2, one clear line, no traceback ---------------------------------

GOOD_STATE = "GOOD_STATE"
GOOD_RULES = FIX / "d2010_iptables.txt"


@pytest.mark.parametrize(
    ("state", "rules", "message"),
    [
        (b"\x00\x01garbage\xff", GOOD_RULES, "not a saved Docker state"),
        ("not json at all", GOOD_RULES, "not a saved Docker state"),
        ("[]", GOOD_RULES, "not a saved Docker state"),
        ('{"containers": []}', GOOD_RULES, "no 'networks' field"),
        (
            '{"containers": [], "networks": [], "info": {}, "version": {}, "hints": {"cmdline": 5}}',
            GOOD_RULES,
            "not a saved Docker state",
        ),
        (None, GOOD_RULES, "--docker-state"),  # a file that does not exist
        ("DIR", GOOD_RULES, "Is a directory"),
        (GOOD_STATE, b"\x00\x01garbage\xff\n", "does not look like iptables-save output"),
        (GOOD_STATE, "hello\nworld\n", "does not look like iptables-save output"),
        (GOOD_STATE, None, "No such file or directory"),
    ],
    ids=[
        "binary-state",
        "text-state",
        "list-state",
        "missing-key",
        "bad-hints",
        "no-state-file",
        "dir-state",
        "binary-rules",
        "text-rules",
        "no-rules-file",
    ],
)
def test_unreadable_inputs(tmp_path, state, rules, message):
    if state == GOOD_STATE:
        s = write(tmp_path, "s.json", web_doc())
    elif state == "DIR":
        s = tmp_path
    elif state is None:
        s = tmp_path / "absent.json"
    else:
        s = write(tmp_path, "s.json", state)
    if rules is None:
        r4 = tmp_path / "absent.txt"
    elif isinstance(rules, Path):
        r4 = rules
    else:
        r4 = write(tmp_path, "r.txt", rules)
    r = check("--docker-state", s, "--iptables-save", r4)
    no_traceback(r)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.startswith("docker-nat-exporter: configuration error: ")
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("flag", ["--docker-state", "--iptables-save"])
def test_a_missing_file_is_named_as_missing(tmp_path, flag):
    state = write(tmp_path, "s.json", web_doc())
    files = {"--docker-state": state, "--iptables-save": GOOD_RULES}
    files[flag] = tmp_path / "missing.json"
    r = check(*(x for kv in files.items() for x in kv))
    no_traceback(r)
    assert r.returncode == 2
    assert r.stderr.strip().endswith(f"{flag} {files[flag]}: No such file or directory")
    assert "not a saved Docker state" not in r.stderr


def test_rules_without_docker_state_is_a_usage_error():
    r = check("--iptables-save", GOOD_RULES)
    assert r.returncode == 2 and "--docker-state is required" in r.stderr
    no_traceback(r)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(containers=5),
        lambda d: d.update(info=[]),
        lambda d: d["containers"][0].update(Ports={"80/tcp": []}),
        lambda d: d["containers"][0]["Ports"][0].update(PublicPort="eighty"),
        lambda d: d["networks"][2].update(IPAM={"Config": "172.17.0.0/16"}),
        lambda d: d["info"].update(FirewallBackend="iptables"),
    ],
    ids=[
        "containers-not-list",
        "info-not-object",
        "ports-not-list",
        "port-not-number",
        "ipam",
        "firewall",
    ],
)
def test_docker_answers_of_the_wrong_shape_are_exit_2(tmp_path, mutate):
    doc = web_doc()
    mutate(doc)
    r = check(
        "--docker-state",
        write(tmp_path, "s.json", doc),
        "--iptables-save",
        write(tmp_path, "4", BASE_G27),
    )
    no_traceback(r)
    assert r.returncode == 2
    assert "ERROR: cannot read docker: Docker answered something unexpected:" in r.stderr
    assert r.stdout.startswith("Docker could not be read: no published port was checked\n")
