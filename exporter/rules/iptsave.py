"""Parse `iptables-save` / `ip6tables-save` output (nf_tables and legacy variants) into a Ruleset.

The parser is pure and total: any input gives a Ruleset; what it cannot read lands in
`Ruleset.errors` as a `ParseError` naming the table, chain and line, so the evaluator can answer
`unknown` for paths through it instead of guessing.
"""

from __future__ import annotations

import gc
import re
import shlex
from dataclasses import dataclass
from functools import lru_cache

from exporter.rules.model import Chain, Cond, Rule, Ruleset, Table

CORE_OPTIONS = {
    "-p": "-p", "--protocol": "-p",
    "-s": "-s", "--source": "-s", "--src": "-s",
    "-d": "-d", "--destination": "-d", "--dst": "-d",
    "-i": "-i", "--in-interface": "-i",
    "-o": "-o", "--out-interface": "-o",
}  # fmt: skip
NO_VALUE_CORE = {"-f", "--fragment"}
PORT_OPTIONS = {"--dport", "--sport", "--destination-port", "--source-port", "--dports",
                "--sports", "--destination-ports", "--source-ports", "--ports"}  # fmt: skip
INCOMPATIBLE = "is incompatible"


@dataclass(frozen=True, slots=True)
class ParseError:
    table: str  # "" when the line is outside any table
    chain: str  # "" when the whole table is affected
    line_no: int
    line: str
    why: str

    def __str__(self) -> str:
        where = f"{self.table}/{self.chain}" if self.chain else (self.table or "input")
        return f"line {self.line_no} ({where}): {self.why}: {self.line[:120]!r}"


class _Builder:
    def __init__(self, family: str, backend: str) -> None:
        self.family, self.backend = family, backend
        self.tables: dict[str, dict[str, list]] = {}
        self.policies: dict[str, dict[str, str | None]] = {}
        self.errors: list[ParseError] = []
        self.table = ""

    def error(self, no: int, line: str, why: str, chain: str = "") -> None:
        self.errors.append(ParseError(self.table, chain, no, line, why))

    def build(self) -> Ruleset:
        tables = {}
        for tname, chains in self.tables.items():
            pol = self.policies[tname]
            tables[tname] = Table(
                tname, {c: Chain(c, pol.get(c), tuple(rules)) for c, rules in chains.items()}
            )
        return Ruleset(self.family, self.backend, tables, tuple(self.errors))


def parse_save(text: str, family: str, backend: str) -> Ruleset:
    """Parse the text of one `*-save` run. `family` is ipv4/ipv6, `backend` nf_tables/legacy."""
    # Tens of thousands of new objects, none in a cycle: the cyclic GC would only rescan them.
    paused = gc.isenabled()
    gc.disable()
    try:
        return _parse(text, family, backend)
    finally:
        if paused:
            gc.enable()


def _parse(text: str, family: str, backend: str) -> Ruleset:
    b = _Builder(family, backend)
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line[0] == "#":
            if INCOMPATIBLE in line:
                # The comment stands in for the whole table: no `*table`, no COMMIT follows.
                outer, b.table = b.table, _incompatible_table(line)
                b.error(no, line, "table is incompatible with this iptables (use nft)")
                b.table = outer
            continue
        try:
            _line(b, no, line)
        except ValueError as exc:
            b.error(no, line, str(exc))
    if b.table:
        b.error(0, "", "input ended inside a table (no COMMIT): output truncated?")
    return b.build()


def _incompatible_table(line: str) -> str:
    # "# Table `nat' is incompatible, use 'nft' tool."
    start, end = line.find("`"), line.find("'")
    return line[start + 1 : end] if 0 <= start < end else ""


def _line(b: _Builder, no: int, line: str) -> None:
    head = line[0]
    if head == "*":
        name = line[1:].strip()
        if not name.isidentifier():
            raise ValueError("bad table name")
        b.table = name
        b.tables.setdefault(name, {})
        b.policies.setdefault(name, {})
    elif head == ":":
        _chain_decl(b, line)
    elif line == "COMMIT":
        if not b.table:
            raise ValueError("COMMIT outside a table")
        b.table = ""
    elif head == "-" or head == "[":
        _append(b, no, line)
    else:
        raise ValueError("unrecognised line")


def _chain_decl(b: _Builder, line: str) -> None:
    if not b.table:
        raise ValueError("chain declared outside a table")
    parts = line[1:].split()
    if len(parts) < 2:
        raise ValueError("malformed chain declaration")
    name, policy = parts[0], parts[1]
    b.tables[b.table].setdefault(name, [])
    b.policies[b.table][name] = None if policy == "-" else policy


def _append(b: _Builder, no: int, line: str) -> None:
    if not b.table:
        raise ValueError("rule outside a table")
    if line[0] == "[":  # counters from `-c`: "[12:720] -A ..."
        end = line.find("]")
        if end < 0:
            raise ValueError("unterminated counters")
        line = line[end + 1 :].lstrip()
    unsplit = ""
    try:
        tokens = split_words(line)
    except ValueError as exc:  # still a rule of its chain: keep the numbering true
        tokens, unsplit = line.split(), str(exc)
    if len(tokens) < 2 or tokens[0] != "-A":
        raise ValueError("expected '-A CHAIN ...'")
    chain = tokens[1]
    rules = b.tables[b.table].get(chain)
    if rules is None:
        # *-save declares every chain first: this line, or its chain name, is garbled, and the
        # rule may belong to any chain of the table (a stale DNAT of DOCKER, say): table-level.
        b.error(no, line, f"rule for an undeclared chain {chain[:40]!r}: the table is corrupt")
        rules = b.tables[b.table].setdefault(chain, [])
        b.policies[b.table].setdefault(chain, None)
    try:
        if unsplit:
            raise ValueError(unsplit)
        conds, target, topts, goto = parse_rule_tokens(tokens[2:])
    except ValueError as exc:
        b.error(no, line, str(exc), chain)
        # Keep the chain's numbering true: a placeholder the evaluator refuses to judge.
        conds, target, topts, goto = (Cond("?unparsed", (str(exc),)),), "", (), False
    rules.append(
        Rule(b.family, b.table, chain, len(rules) + 1, conds, target, topts, goto, line, b.backend)
    )


# What iptables-save prints: bare words, and "double-quoted" values escaping only \" and \\.
_SIMPLE_QUOTING = re.compile(r'\s*(?:(?:"(?:[^"\\]|\\.)*"|[^\s"\'\\]+)(?:\s+|$))*')
_WORD = re.compile(r'"((?:[^"\\]|\\.)*)"|(\S+)')
_ESCAPE = re.compile(r'\\([\\"])')


def split_words(line: str) -> list[str]:
    """A rule line as iptables-save quotes it, split into words (quotes removed)."""
    if '"' in line or "'" in line or "\\" in line:
        simple = _quoted_words(line)
        if simple is not None:
            return simple
        if _SIMPLE_QUOTING.fullmatch(line):  # shlex is slow: kube-proxy quotes every comment
            return [_ESCAPE.sub(r"\1", q) if w == "" else w for q, w in _WORD.findall(line)]
        try:
            return shlex.split(line)
        except ValueError as exc:
            raise ValueError(f"unbalanced quoting ({exc})") from None
    return line.split()


def _quoted_words(line: str) -> list[str] | None:
    """Words of a line whose only quoting is whole "double-quoted" words without escapes (how
    iptables-save prints comments); None for anything else."""
    if "'" in line or "\\" in line:
        return None
    parts = line.split('"')
    last = len(parts) - 1
    if last % 2:
        return None  # an unbalanced quote
    words = parts[0].split()
    for i in range(1, last, 2):
        before, after = parts[i - 1], parts[i + 1]
        if not (before[-1:].isspace() or (i == 1 and not before)):
            return None  # glued to the word before it: let shlex decide
        if not (after[:1].isspace() or (i + 1 == last and not after)):
            return None
        words.append(parts[i])
        words += after.split()
    return words


_TARGETS = {"-j": False, "--jump": False, "-g": True, "--goto": True}  # → goto?
_cond = lru_cache(maxsize=1 << 16)(Cond)  # rules repeat their conditions: share the objects


def parse_rule_tokens(tokens: list[str]):
    """Split a rule's tokens (after `-A CHAIN`) into conditions and target.

    Returns (conds, target, target_opts, goto). Raises ValueError on malformed input.
    """
    conds: list[Cond] = []
    module, negate, i, n = "", False, 0, len(tokens)
    while i < n:
        tok = tokens[i]
        if tok == "!":
            if negate:
                raise ValueError("double negation")
            negate, i = True, i + 1
            continue
        if tok in _TARGETS:
            if negate:
                raise ValueError("negated target")
            if i + 1 >= n:
                raise ValueError(f"{tok} without a target")
            return tuple(conds), tokens[i + 1], _target_opts(tokens[i + 2 :]), _TARGETS[tok]
        if tok == "-m" or tok == "--match":
            if i + 1 >= n or negate:
                raise ValueError("bad -m")
            module, i = tokens[i + 1], i + 2
            continue
        if tok[:1] != "-" or tok == "-":
            raise ValueError(f"unexpected value {tok!r}")
        j = i + 1
        while j < n:  # the option's values run up to the next option (inlined _is_option)
            t = tokens[j]
            if t == "!" or (len(t) > 1 and t[0] == "-" and not t[1].isdigit()):
                break
            j += 1
        values, i = tuple(tokens[i + 1 : j]), j
        core = CORE_OPTIONS.get(tok)
        if core is not None:
            if len(values) != 1:
                raise ValueError(f"{tok} takes one value")
            conds.append(_cond(core, values, negate, ""))
        elif tok in NO_VALUE_CORE:
            conds.append(_cond("-f", (), negate, ""))
        else:
            if not module:
                raise ValueError(f"option {tok} outside a match module")
            if not values and tok in PORT_OPTIONS:  # never printed so: a garbled line
                raise ValueError(f"{tok} without a port")
            conds.append(_cond(tok, values, negate, module))
        negate = False
    if negate:
        raise ValueError("dangling '!'")
    return tuple(conds), "", (), False


def _values(tokens: list[str], i: int) -> tuple[tuple[str, ...], int]:
    start = i
    while i < len(tokens) and not _is_option(tokens[i]):
        i += 1
    return tuple(tokens[start:i]), i


def _is_option(tok: str) -> bool:
    return tok == "!" or (len(tok) > 1 and tok[0] == "-" and not tok[1].isdigit())


def _target_opts(tokens: list[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    opts, i = [], 0
    while i < len(tokens):
        tok = tokens[i]
        if not _is_option(tok) or tok == "!":
            raise ValueError(f"unexpected target argument {tok!r}")
        values, i = _values(tokens, i + 1)
        opts.append((tok, values))
    return tuple(opts)
