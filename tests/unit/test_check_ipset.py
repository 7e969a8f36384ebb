"""`check --ipset-save FILE`: a post-mortem's `-m set` matches decided by the saved ipsets."""

from __future__ import annotations

import json

import pytest
from support.corefix import BASE_G27, USER_RETURN, insert_before, web_doc
from test_check_offline import check, no_traceback, write

ALLOW_LIST = "-A DOCKER-USER -i eth0 -m set ! --match-set allow src -j DROP"
# `ipset save` as ipset v7 prints it
SAVE = """\
create allow hash:net family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x6e1ba04a
add allow 192.0.2.0/24
add allow 198.51.100.0/25
"""


def run(tmp_path, *extra, rules=ALLOW_LIST):
    return check(
        "--json",
        "--docker-state",
        write(tmp_path, "s.json", web_doc()),
        "--iptables-save",
        write(tmp_path, "4", insert_before(BASE_G27, USER_RETURN, rules)),
        *extra,
    )


def port(r):
    no_traceback(r)
    return json.loads(r.stdout)["ports"][0]


def test_the_saved_sets_decide_the_allow_list(tmp_path):
    r = run(tmp_path, "--ipset-save", write(tmp_path, "sets", SAVE))
    p = port(r)
    assert r.returncode == 0, r.stdout
    assert (p["state"], p["exposure"]) == ("ok", "restricted")
    assert p["allowed_sources"] == "192.0.2.0/24, 198.51.100.0/25"
    assert json.loads(r.stdout)["warnings"] == []


def test_without_the_file_the_match_is_unknown_and_the_flag_named(tmp_path):
    r = run(tmp_path)
    p = port(r)
    assert r.returncode == 1 and p["state"] == "unknown"
    assert "--match-set allow src" in p["reason"]
    warnings = json.loads(r.stdout)["warnings"]
    assert any("ipsets (allow)" in w and "--ipset-save" in w for w in warnings), warnings


def test_dockers_own_sets_need_no_file(tmp_path):
    own = "-A DOCKER-USER -m set --match-set docker-ext-bridges-v4 dst -j RETURN"
    r = run(tmp_path, rules=own)
    assert not any("--ipset-save" in w for w in json.loads(r.stdout)["warnings"])


def test_an_empty_file_means_no_sets_so_the_match_stays_unknown(tmp_path):
    r = run(tmp_path, "--ipset-save", write(tmp_path, "sets", ""))
    assert port(r)["state"] == "unknown" and r.returncode == 1


def test_a_garbled_line_is_a_warning_naming_file_and_line(tmp_path):
    sets = write(tmp_path, "sets", SAVE + "add allow\n")
    r = run(tmp_path, "--ipset-save", sets)
    assert port(r)["state"] == "ok"
    warnings = json.loads(r.stdout)["warnings"]
    assert warnings == [f"--ipset-save {sets}: line 4: not understood: add allow"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No such file or directory"),
        ("DIR", "Is a directory"),
        (b"\x00\x01garbage\xff\n", "does not look like `ipset save` output"),
        (BASE_G27, "does not look like `ipset save` output: line 1"),
        ("create allow hash:net netmask \u00b2\nadd other 10.0.0.0/8\n", None),
    ],
    ids=["missing", "directory", "binary", "iptables-save", "odd-netmask"],
)
def test_unreadable_files_are_one_clear_line(tmp_path, content, message):
    if content is None:
        sets = tmp_path / "absent"
    elif content == "DIR":
        sets = tmp_path
    else:
        sets = write(tmp_path, "sets", content)
    r = run(tmp_path, "--ipset-save", sets)
    no_traceback(r)
    if message is None:  # read, with the unknown line as a warning: never a traceback
        assert r.returncode == 1 and "line 2: not understood" in r.stdout
        return
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith(f"docker-nat-exporter: configuration error: --ipset-save {sets}: ")
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1
