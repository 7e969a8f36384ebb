"""`ruleline.parse_line` (remembered per line) against the reference it stands for: split_words
then parse_rule_tokens, on every rule line of the fixtures and of bench.gen's hosts, and on
garbled copies of them; and `new_rule` against the dataclass's own constructor."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bench import gen
from exporter.expect import model as expected
from exporter.rules import ruleline
from exporter.rules.model import Cond, Rule, new_rule
from exporter.rules.ruleline import parse_line, parse_rule_tokens, split_words

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def reference(line: str):
    try:
        tokens = split_words(line)
        if len(tokens) < 2 or tokens[0] != "-A":
            raise ValueError("expected '-A CHAIN ...'")
        return "ok", (tokens[1], *parse_rule_tokens(tokens[2:]))
    except ValueError as exc:
        return "error", str(exc)


def remembered(line: str):
    try:
        return "ok", parse_line(line)
    except ValueError as exc:
        return "error", str(exc)


def rule_lines() -> list[str]:
    lines = set()
    for path in FIXTURES.rglob("*"):
        if path.is_file() and path.suffix in (".txt", ""):
            for ln in path.read_text(errors="replace").splitlines():
                if ln.startswith("-A "):
                    lines.add(ln)
    doc = gen.docker_json(300)
    lines.update(ln for ln in gen.ruleset_text(doc, 3000).splitlines() if ln.startswith("-A "))
    return sorted(lines)


LINES = rule_lines()
NOISE = ["!", "-", "-5", '"', "'", "\\", "  ", "\t", " -", "-m", "-j", "--dport", '"a -b"', '""',
         "-p", "--comment", "\xa0", " ! !", "-f", "-A"]  # fmt: skip


def garbled(n: int) -> list[str]:
    rnd, out = random.Random(14), []
    for _ in range(n):
        ln, at = rnd.choice(LINES), 0
        at = rnd.randrange(len(ln) + 1)
        if rnd.random() < 0.6:
            ln = ln[:at] + rnd.choice(NOISE) + ln[at:]
        else:
            ln = ln[:at] + ln[at + rnd.randint(1, 4) :]
        out.append(ln)
    return out


def test_the_lines_cover_the_shapes_read() -> None:
    assert len(LINES) > 1000
    assert any('"' in ln for ln in LINES) and any("-j DNAT" in ln for ln in LINES)


@pytest.mark.parametrize("lines", [LINES, garbled(4000)], ids=["printed", "garbled"])
def test_parse_line_answers_as_the_reference_first_and_again(lines) -> None:
    ruleline.forget()
    errors = 0
    for ln in lines:
        want = reference(ln)
        assert remembered(ln) == want, ln
        assert remembered(ln) == want, ln  # remembered, or (an error) raised again
        errors += want[0] == "error"
    assert lines is LINES or errors > 100  # the garbled ones do reach the errors


def test_forget_and_the_size_bound(monkeypatch) -> None:
    ruleline.forget()
    monkeypatch.setattr(ruleline, "_MEMO_SIZE", 10)
    for ln in LINES[:25]:
        parse_line(ln)
    assert 0 < len(ruleline._lines) <= 10
    ruleline.forget()
    assert not ruleline._lines


def test_an_expected_rule_reads_as_the_kernel_line_it_matches() -> None:
    line = "-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT"
    ruleline.forget()
    expected.make.cache_clear()
    e = expected.make("forward_accept", "ipv4", "filter", line)
    chain, conds, target, _, goto = parse_line(line)
    assert (e.chain, e.target) == (chain, target) == ("DOCKER", "ACCEPT") and not goto
    assert Cond("--dport", ("80",), False, "tcp") in conds
    assert parse_line(line) is parse_line(line)


def test_new_rule_is_the_dataclass_rule() -> None:
    fields = ("ipv4", "nat", "DOCKER", 3, (Cond("-p", ("tcp",)),), "DNAT",
              (("--to-destination", ("172.17.0.2:80",)),), True, "-A DOCKER ...", "legacy")  # fmt: skip
    made, built = new_rule(*fields), Rule(*fields)
    assert made == built and repr(made) == repr(built) and hash(made) == hash(built)
    assert (made.text, made.backend) == (built.text, built.backend)  # compare=False fields
    with pytest.raises(AttributeError):
        made.target = "ACCEPT"  # still frozen
