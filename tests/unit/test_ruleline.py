"""`ruleline.parse_line` (remembered per line, read by a table-driven parse_rule_tokens) against
the parser as it was (`old_rule_tokens` below, kept verbatim) on every rule line of the fixtures
and of bench.gen's hosts, and on garbled copies of them: the same answers, the same errors; and
`new_rule` against the dataclass's own constructor."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bench import gen
from exporter.expect import model as expected
from exporter.rules import ruleline
from exporter.rules.model import Cond, Rule, new_rule
from exporter.rules.ruleline import (
    CORE_OPTIONS,
    NO_VALUE_CORE,
    PORT_OPTIONS,
    parse_line,
    split_words,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


TARGETS = {"-j": False, "--jump": False, "-g": True, "--goto": True}


def old_rule_tokens(tokens: list[str]):  # parse_rule_tokens before the table of kinds
    conds: list[Cond] = []
    module, negate, i, n = "", False, 0, len(tokens)
    while i < n:
        tok = tokens[i]
        if tok == "!":
            if negate:
                raise ValueError("double negation")
            negate, i = True, i + 1
            continue
        if tok in TARGETS:
            if negate:
                raise ValueError("negated target")
            if i + 1 >= n:
                raise ValueError(f"{tok} without a target")
            return tuple(conds), tokens[i + 1], old_target_opts(tokens[i + 2 :]), TARGETS[tok]
        if tok == "-m" or tok == "--match":
            if i + 1 >= n or negate:
                raise ValueError("bad -m")
            module, i = tokens[i + 1], i + 2
            continue
        if tok[:1] != "-" or tok == "-":
            raise ValueError(f"unexpected value {tok!r}")
        values, i = old_values(tokens, i + 1)
        core = CORE_OPTIONS.get(tok)
        if core is not None:
            if len(values) != 1:
                raise ValueError(f"{tok} takes one value")
            conds.append(Cond(core, values, negate, ""))
        elif tok in NO_VALUE_CORE:
            conds.append(Cond("-f", (), negate, ""))
        else:
            if not module:
                raise ValueError(f"option {tok} outside a match module")
            if not values and tok in PORT_OPTIONS:
                raise ValueError(f"{tok} without a port")
            conds.append(Cond(tok, values, negate, module))
        negate = False
    if negate:
        raise ValueError("dangling '!'")
    return tuple(conds), "", (), False


def old_values(tokens: list[str], i: int) -> tuple[tuple[str, ...], int]:
    start = i
    while i < len(tokens) and not old_is_option(tokens[i]):
        i += 1
    return tuple(tokens[start:i]), i


def old_is_option(tok: str) -> bool:
    return tok == "!" or (len(tok) > 1 and tok[0] == "-" and not tok[1].isdigit())


def old_target_opts(tokens: list[str]) -> tuple:
    opts, i = [], 0
    while i < len(tokens):
        tok = tokens[i]
        if not old_is_option(tok) or tok == "!":
            raise ValueError(f"unexpected target argument {tok!r}")
        values, i = old_values(tokens, i + 1)
        opts.append((tok, values))
    return tuple(opts)


def reference(line: str):
    try:
        tokens = split_words(line)
        if len(tokens) < 2 or tokens[0] != "-A":
            raise ValueError("expected '-A CHAIN ...'")
        return "ok", (tokens[1], *old_rule_tokens(tokens[2:]))
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
        ln = rnd.choice(LINES)
        at, what = rnd.randrange(len(ln) + 1), rnd.random()
        if what < 0.5:
            ln = ln[:at] + rnd.choice(NOISE) + ln[at:]
        elif what < 0.8:
            ln = ln[:at] + ln[at + rnd.randint(1, 4) :]
        else:  # words swapped: values where options go, options among values
            w = ln.split(" ")
            a, b = rnd.randrange(2, len(w)), rnd.randrange(2, len(w))
            w[a], w[b] = w[b], w[a]
            ln = " ".join(w)
        out.append(ln)
    return out


def test_the_lines_cover_the_shapes_read() -> None:
    assert len(LINES) > 1000
    assert any('"' in ln for ln in LINES) and any("-j DNAT" in ln for ln in LINES)


@pytest.mark.parametrize("lines", [LINES, garbled(6000)], ids=["printed", "garbled"])
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
