"""Rule positions in a verdict's reasons, moved with the rules (path.reuse).

A reason names rules by position (`nat/DOCKER #12`, Rule.ref); a rule deleted or inserted
before them moves them. A kept verdict's references to a changed chain are moved to where the
very rules its walks got now stand, or the verdict is not kept.
"""

from __future__ import annotations

import re
from dataclasses import fields

from exporter.path.classes import SourceClass
from exporter.path.steps import Verdict

# _verdict and _class build these positionally (dataclasses.replace costs ~3 times as much)
VERDICT_FIELDS = ("state", "code", "reason", "rule", "owner", "classes", "exposure", "allowed")
CLASS_FIELDS = ("sources", "state", "code", "reason", "rule", "owner", "shown")
assert tuple(f.name for f in fields(Verdict)) == VERDICT_FIELDS
assert tuple(f.name for f in fields(SourceClass)) == CLASS_FIELDS


class _Unnamed(Exception):
    """A reason names a position that cannot be moved with certainty."""


class Names:
    """The `table/chain #N` references to the changed chains in a verdict's reasons. One
    Names serves one analysis: it remembers each reason it moved, with the moves that made it
    (reasons repeat: a port's classes mostly say what the port says)."""

    def __init__(self, changed) -> None:
        self.chains = {f"{t}/{c} #": (t, c) for t, c in changed}
        alts = "|".join(re.escape(x) for x in sorted(self.chains))
        self.pattern = re.compile(f"({alts})([0-9]+)") if alts else None
        self.done: dict[str, tuple[str, tuple]] = {}  # reason → (moved, the moves it used)

    def moved(self, v: Verdict, moves: dict[tuple[str, str], dict[int, int]]) -> Verdict | None:
        """`v` with every reference as `moves` moves it (chain → old → new position); None
        when one is not in `moves`, or stands next to a rule's text (which may hold anything)."""
        if self.pattern is None or all(a == b for m in moves.values() for a, b in m.items()):
            return v
        try:
            reason = self._move(v.reason, moves)
            classes = tuple(
                c if (r := self._move(c.reason, moves)) is c.reason else _class(c, r)
                for c in v.classes
            )
        except _Unnamed:
            return None
        if reason is v.reason and all(x is y for x, y in zip(classes, v.classes, strict=True)):
            return v
        return _verdict(v, reason, classes)

    def _move(self, s: str, moves: dict) -> str:
        got = self.done.get(s)
        if got is not None and all(moves.get(k, {}).get(a) == b for k, a, b in got[1]):
            return got[0]
        if self.pattern.search(s) is None:
            return s
        if "`" in s:
            raise _Unnamed
        used = []

        def one(match) -> str:
            at = match.start()
            if at > 0 and not s[at - 1].isspace():  # part of something else's name
                raise _Unnamed
            chain, old = self.chains[match.group(1)], int(match.group(2))
            new = moves.get(chain, {}).get(old)
            if new is None:
                raise _Unnamed
            used.append((chain, old, new))
            return f"{match.group(1)}{new}"

        out = self.pattern.sub(one, s)
        out = s if out == s else out
        self.done[s] = (out, tuple(used))
        return out


def _verdict(v: Verdict, reason: str, classes: tuple) -> Verdict:
    return Verdict(v.state, v.code, reason, v.rule, v.owner, classes, v.exposure, v.allowed)


def _class(c: SourceClass, reason: str) -> SourceClass:
    return SourceClass(c.sources, c.state, c.code, reason, c.rule, c.owner, c.shown)
