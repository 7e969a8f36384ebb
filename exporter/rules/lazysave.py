"""`*-save` output parsed a chain at a time, when something first looks at the chain.

A host with kube-proxy holds tens of thousands of nat rules in chains no Docker port ever
reaches; parsing them all cost more than running `iptables-save`. `parse_save_lazy` checks the
text's structure with a few C-speed scans (every line of a known kind, every chain declared:
`savesplit`, which a live read feeds as the text arrives, so `parse_split` finds it done),
then finds and parses a chain's rules the first time
the chain is asked for (`str.find` on "\\n-A NAME"). Anything unusual in the structure (counters,
stray lines, a table without COMMIT, an incompatible table) falls back to the eager parser, so
its errors stay exactly as `iptsave.parse_save` reports them.

Given the previous refresh's Ruleset, a chain whose lines are unchanged is taken from it as is.
A rule that cannot be parsed still becomes `iptsave`'s `?unparsed` placeholder when its chain is
read; its error is listed by `rule_errors` (chains never read are never checked).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

from exporter.rules import iptsave
from exporter.rules.iptsave import ParseError
from exporter.rules.model import Chain, Cond, Rule, Ruleset, Table, new_rule
from exporter.rules.ruleline import parse_line
from exporter.rules.savesplit import DECLARED, Tables, split_save

T = TypeVar("T")


class LazyChains(Mapping):
    """A table's chains by name, each parsed on first access from the table's text."""

    def __init__(self, table: str, text: str, span: tuple[int, int], first_line: int,
                 family: str, backend: str, previous: LazyChains | None) -> None:  # fmt: skip
        # The table's lines are text[lo:hi]: from the newline ending `*table` to the one before
        # COMMIT, so every line is found as "\n<line>" and ends with "\n".
        self.table, self.text, (self.lo, self.hi) = table, text, span
        self.first_line = first_line  # the line number of `*table`
        self.family, self.backend = family, backend
        # Only the last refresh's parsed chains, never its own `previous`: no chain of history.
        self._old = (previous.parsed, previous.lines, {e.chain for e in previous.errors},
                     previous.memo) if previous is not None else ({}, {}, set(), {})  # fmt: skip
        self.memo: dict[str, dict[str, object]] = {}  # chain → what `derived` computed from it
        self.parsed: dict[str, Chain] = {}
        self.lines: dict[str, list[str]] = {}  # chain → its rule lines, for reuse next time
        self.errors: list[ParseError] = []  # rule-level errors of the chains parsed so far
        self._absent: set[str] = set()
        # Chains read again on their own since `text` was taken (`patched`): name → (policy,
        # rule lines), None when the chain is gone; `count_delta`: what they add to the count.
        self.patch: dict[str, tuple[str | None, tuple[str, ...]] | None] = {}
        self.carried: dict[str, tuple] = {}  # name → (Chain, lines, memo) kept by `patched`
        self.count_delta = 0
        # What was looked up (found or not): a change to any other chain cannot change what
        # was worked out from this table (serve.relevance). `listed`: every name was.
        self.seen: set[str] = set()
        self.listed = False

    def __getitem__(self, name: str) -> Chain:
        self.seen.add(name)
        chain = self.parsed.get(name)
        if chain is None:
            if name in self._absent:
                raise KeyError(name)
            chain = self._load(name)
            if chain is None:
                self._absent.add(name)
                raise KeyError(name)
        return chain

    def __contains__(self, name: object) -> bool:
        if name in self.parsed:
            return True
        if not isinstance(name, str):
            return False
        self.seen.add(name)  # a lookup, found or not (`_absent` may come from `patched`)
        if name in self._absent:
            return False
        if name in self.patch:
            found = self.patch[name] is not None
        else:
            found = self._find(f"\n:{name} ") >= 0  # every chain with rules is declared
        if not found:
            self._absent.add(name)
        return found

    def __iter__(self) -> Iterator[str]:
        self.listed = True
        names = dict.fromkeys(DECLARED.findall(self.text, self.lo, self.hi))
        names.update(dict.fromkeys(self.patch))
        return iter([n for n in names if self.patch.get(n, True) is not None])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"<LazyChains {self.table}: {len(self.parsed)} parsed>"

    def rule_count(self) -> int:
        return self.text.count("\n-A ", self.lo, self.hi) + self.count_delta

    def patched(self, chains: Mapping[str, tuple[str | None, tuple[str, ...]] | None]):
        """The same table with `chains` (name → (policy, rule lines), None: gone) read again
        on their own since the text was taken."""
        new = LazyChains(self.table, self.text, (self.lo, self.hi), self.first_line,
                         self.family, self.backend, self)  # fmt: skip
        new.patch = {**self.patch, **chains}
        # the same text: a name found nowhere in it is still not there, unless read again now
        new._absent = {n for n in self._absent if n not in chains}
        # the chains parsed here and not read again: as they were (the same text)
        bad = {e.chain for e in self.errors}
        new.carried = {n: c for n, c in self.carried.items() if n not in chains}
        for n, c in self.parsed.items():
            if n not in chains and n not in bad:
                new.carried[n] = (c, self.lines[n], self.memo.get(n, {}))
        new.count_delta = sum(len(p[1]) for p in new.patch.values() if p is not None) - sum(
            len(self._text_lines(n)) for n in new.patch
        )
        return new

    def _find(self, what: str, at: int | None = None) -> int:
        return self.text.find(what, self.lo if at is None else at, self.hi)

    def _load(self, name: str) -> Chain | None:
        carried = self.carried.get(name)
        if carried is not None:
            chain, self.lines[name], self.memo[name] = carried
            self.parsed[name] = chain
            return chain
        policy, declared = self._policy(name)
        if not declared:
            return None
        lines = self._rule_lines(name)
        old_parsed, old_lines, old_bad, old_memo = self._old
        chain = old_parsed.get(name)
        unchanged = chain is not None and chain.policy == policy and old_lines.get(name) == lines
        if unchanged and name not in old_bad:
            self.parsed[name], self.lines[name] = chain, lines
            self.memo[name] = old_memo.get(name, {})
            return chain
        chain = Chain(name, policy, self._parse(name, lines))
        self.parsed[name], self.lines[name] = chain, lines
        return chain

    def _policy(self, name: str) -> tuple[str | None, bool]:
        if name in self.patch:
            got = self.patch[name]
            return (None, False) if got is None else (got[0], True)
        at = self._find(f"\n:{name} ")
        if at < 0:
            return None, False
        start = at + len(name) + 3
        eol = self.text.find("\n", start)
        space = self.text.find(" ", start, eol)  # before the counters, when there are any
        policy = self.text[start : space if space >= 0 else eol]
        return (None if policy == "-" else policy), True

    def _rule_lines(self, name: str) -> list[str]:
        got = self.patch.get(name)
        return list(got[1]) if got is not None else self._text_lines(name)

    def _text_lines(self, name: str) -> list[str]:
        lines, at = [], self._next_rule(name, self.lo)
        while at >= 0:
            end = self.text.find("\n", at + 1)
            lines.append(self.text[at + 1 : end])
            at = self._next_rule(name, end)
        return lines

    def _next_rule(self, name: str, at: int) -> int:
        """Where the next line `-A name ...` starts (its preceding newline), or -1."""
        text, prefix = self.text, f"\n-A {name}"
        after = len(prefix)
        at = self._find(prefix, at)
        while at >= 0 and text[at + after] not in " \n":  # `-A DOCKER-USER` when asked DOCKER
            at = self._find(prefix, at + after)
        return at

    def _parse(self, name: str, lines: list[str]) -> tuple[Rule, ...]:
        paused = gc.isenabled()
        gc.disable()  # thousands of new objects, none in a cycle (as in iptsave.parse_save)
        fam, table, backend, out = self.family, self.table, self.backend, []
        try:
            for position, line in enumerate(lines, 1):
                try:
                    _, conds, target, topts, goto = parse_line(line)
                except ValueError as exc:
                    self._error(name, line, str(exc))
                    conds, target, topts, goto = (Cond("?unparsed", (str(exc),)),), "", (), False
                out.append(new_rule(fam, table, name, position, conds, target, topts, goto, line,
                                backend))  # fmt: skip
            return tuple(out)
        finally:
            if paused:
                gc.enable()

    def _error(self, name: str, line: str, why: str) -> None:
        at = self.text.find("\n" + line + "\n", self.lo, self.hi + 1)
        no = self.first_line + self.text.count("\n", self.lo, at + 1) if at >= 0 else 0
        self.errors.append(ParseError(self.table, name, no, line, why))


def parse_save_lazy(
    text: str, family: str, backend: str, previous: Ruleset | None = None
) -> Ruleset:
    """`iptsave.parse_save`, with each chain parsed when first looked at. `previous`: the last
    refresh's Ruleset of the same family and backend, whose unchanged chains are reused."""
    return parse_split(text, split_save(text), family, backend, previous)


def parse_split(
    text: str, tables: Tables | None, family: str, backend: str, previous: Ruleset | None = None
) -> Ruleset:
    """`parse_save_lazy` of a text already split (`savesplit`: as it arrived): `tables` are
    `split_save(text)`'s."""
    if tables is None:
        return iptsave.parse_save(text, family, backend)
    same = previous is not None and (previous.family, previous.backend) == (family, backend)
    old = previous.tables if same else {}
    out = {}
    for name, span, first_line in tables:
        before = old.get(name)
        prev = before.chains if before is not None else None
        prev = prev if isinstance(prev, LazyChains) else None
        chains = LazyChains(name, text, span, first_line, family, backend, prev)
        out[name] = Table(name, chains)
    return Ruleset(family, backend, out, ())


def derived(chains: Mapping, name: str, kind: str, make: Callable[[Chain], T]) -> T | None:
    """`make(chain)` for the chain called `name` (None when there is none), computed once per
    chain of a lazily parsed table and kept across refreshes while the chain is unchanged."""
    chain = chains.get(name)
    if chain is None or not isinstance(chains, LazyChains):
        return None if chain is None else make(chain)
    memo = chains.memo.setdefault(name, {})
    if kind not in memo:
        memo[kind] = make(chain)
    return memo[kind]  # type: ignore[return-value]


def rule_errors(rs: Ruleset) -> tuple[ParseError, ...]:
    """Errors of rules parsed lazily so far, after the Ruleset's own (structural) errors."""
    lazy = (t.chains.errors for t in rs.tables.values() if isinstance(t.chains, LazyChains))
    return tuple(e for errors in lazy for e in errors)


def patch_ruleset(
    rs: Ruleset, chains: Mapping[str, Mapping[str, tuple[str | None, tuple[str, ...]] | None]]
) -> Ruleset | None:
    """`rs` with the chains of `chains` (table → name → (policy, rule lines), None: gone) read
    again on their own; None when a table named is not a lazily parsed one of `rs`."""
    out = dict(rs.tables)
    for table, fresh in chains.items():
        t = rs.tables.get(table)
        if t is None or not isinstance(t.chains, LazyChains):
            return None
        out[table] = Table(table, t.chains.patched(fresh))
    return Ruleset(rs.family, rs.backend, out, rs.errors)


def looked_at(rs: Ruleset, table: str, chain: str) -> bool:
    """Whether anything looked `table`/`chain` up in `rs` (True when that is not recorded)."""
    t = rs.tables.get(table)
    if t is None or not isinstance(t.chains, LazyChains):
        return True
    return t.chains.listed or chain in t.chains.seen
