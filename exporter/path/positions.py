"""Rule positions in a verdict's reasons, moved with the rules (path.reuse).

A reason names rules by position (`nat/DOCKER #12`, Rule.ref); a rule deleted or inserted
before them moves them. A kept verdict's references to a changed chain are moved to where the
very rules its walks got now stand, or the verdict is not kept.
"""

from __future__ import annotations

import re
from dataclasses import replace

from exporter.path.steps import Verdict


class _Unnamed(Exception):
    """A reason names a position that cannot be moved with certainty."""


class Names:
    """The `table/chain #N` references to the changed chains in a verdict's reasons."""

    def __init__(self, changed) -> None:
        self.chains = {f"{t}/{c} #": (t, c) for t, c in changed}
        alts = "|".join(re.escape(x) for x in sorted(self.chains))
        self.pattern = re.compile(f"({alts})([0-9]+)") if alts else None

    def moved(self, v: Verdict, moves: dict[tuple[str, str], dict[int, int]]) -> Verdict | None:
        """`v` with every reference as `moves` moves it (chain → old → new position); None
        when one is not in `moves`, or stands next to a rule's text (which may hold anything)."""
        if self.pattern is None or all(a == b for m in moves.values() for a, b in m.items()):
            return v

        def move(s: str) -> str:
            if self.pattern.search(s) is None:
                return s
            if "`" in s:
                raise _Unnamed

            def one(match) -> str:
                at = match.start()
                if at > 0 and not s[at - 1].isspace():  # part of something else's name
                    raise _Unnamed
                got = moves.get(self.chains[match.group(1)], {}).get(int(match.group(2)))
                if got is None:
                    raise _Unnamed
                return f"{match.group(1)}{got}"

            return self.pattern.sub(one, s)

        try:
            reason = move(v.reason)
            classes = tuple(
                c if (r := move(c.reason)) is c.reason else replace(c, reason=r) for c in v.classes
            )
        except _Unnamed:
            return None
        if reason is v.reason and all(x is y for x, y in zip(classes, v.classes, strict=True)):
            return v
        return replace(v, reason=reason, classes=classes)
