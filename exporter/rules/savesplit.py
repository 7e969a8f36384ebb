"""`*-save` text split into its tables as it arrives, a chunk at a time.

The split is what `lazysave` needs before it can find a chain: each table's span and the line
number of its `*table` line, or None when the text needs the eager parser (a line of a kind the
lazy path does not handle, counters, CR or tab, an incompatible table, a duplicate or unknown
table, one without COMMIT, a rule of an undeclared chain, anything outside a table but comments
and empty lines). Fed while the command still runs (sources.iptables), it costs the refresh no
time of its own; `split_save` splits a whole text the same way.
"""

from __future__ import annotations

import re

from exporter.rules.iptsave import INCOMPATIBLE
from exporter.rules.model import IPTABLES_TABLES

# A line the fast path does not handle (not a rule `-A ...`, a declaration `:CHAIN POLICY`, a
# `*table`, a comment, COMMIT or empty): its presence sends the text to the eager parser.
ODD_LINE = re.compile(
    r"\n(?:(?![-:*#]|COMMIT(?:\n|\Z)|\n|\Z)|-(?!A )|:(?!\S+ \S)|\*(?![A-Za-z_]\w*\n))"
)
DECLARED = re.compile(r"\n:(\S+) ")
RULE_CHAIN = re.compile(r"\n-A (\S+)")
_MARK = re.compile(r"\n[*C]")  # `*table` or COMMIT, once no line is odd
_NOT_COMMENT = re.compile(r"\n[^#\n]")

# (table name, (lo, hi): its lines are text[lo:hi], line number of `*table`) per table
Tables = list[tuple[str, tuple[int, int], int]]


class SaveSplit:
    """Feed the text in chunks cut anywhere (`feed`), then `done()`: (the whole text, its
    Tables or None), the same as `split_save` of the whole text. Only the text is held (once,
    in pieces until `done`), never a second copy."""

    def __init__(self, batch: int = 1 << 18) -> None:
        self._pieces: list[str] = []  # scanned, whole lines (batches: few, large allocations)
        self._pending: list[str] = []  # not yet scanned
        self._waiting, self._batch = 0, batch  # characters pending; scanned in runs this long
        self._size = self._newlines = 0  # of the whole lines taken so far
        self.tables: Tables | None = []
        self._open: tuple[str, int, int] | None = None  # (name, eol of `*name`, line number)
        self._rules: set[str] = set()
        self._declared: set[str] = set()
        self._seen: set[str] = set()

    def feed(self, chunk: str) -> None:
        if chunk:
            self._pending.append(chunk)
            self._waiting += len(chunk)
            if self._waiting >= self._batch:
                self._flush(False)

    def _flush(self, last: bool) -> None:
        """Scan what is pending up to its last line end (`last`: all of it)."""
        text = "".join(self._pending)
        self._pending.clear()
        cut = text.rfind("\n") + 1
        if cut == len(text):
            self._take(text, False)
            self._waiting = 0
            return
        rest = text[cut:]  # the start of a line not yet ended
        if cut:
            self._take(text[:cut], False)
        if last:
            self._take(rest, True)
        else:
            self._pending.append(rest)
        self._waiting = len(rest)

    def done(self) -> tuple[str, Tables | None]:
        if self._pending:
            self._flush(True)
        if self._open is not None:
            self.tables = None  # a table without COMMIT
        text = "".join(self._pieces)
        self._pieces.clear()
        return text, self.tables

    def _take(self, run: str, last: bool) -> None:
        """`run`: whole lines, or (`last`) the text's unterminated last line."""
        self._pieces.append(run)
        if self.tables is not None:
            self._scan(run, last)
        self._size += len(run)
        self._newlines += run.count("\n")

    def _scan(self, run: str, last: bool) -> None:
        s = "\n" + run  # s[i] is the text's [base + i - 1]: every line starts after a "\n"
        odd = s + "\n" if last and self._size == 0 else s  # a lone line is checked as ended
        if ODD_LINE.search(odd) or "\r" in run or "\t" in run or INCOMPATIBLE in run:
            self.tables = None
            return
        at = 0
        for m in _MARK.finditer(s):
            if not self._lines(s, at, m.start()):
                return
            at = s.find("\n", m.start() + 1)
            at = len(s) if at < 0 else at
            if not self._mark(s, m.start(), at):
                self.tables = None
                return
        self._lines(s, at, len(s))

    def _lines(self, s: str, lo: int, hi: int) -> bool:
        """The lines of s[lo:hi], all in the open table or all outside one."""
        if self._open is not None:
            self._rules.update(RULE_CHAIN.findall(s, lo, hi))
            self._declared.update(DECLARED.findall(s, lo, hi))
        elif _NOT_COMMENT.search(s, lo, hi):
            self.tables = None  # a rule, declaration or COMMIT outside any table
        return self.tables is not None

    def _mark(self, s: str, nl: int, eol: int) -> bool:
        """The `*table` or COMMIT line s[nl + 1:eol]; False when the text needs the eager
        parser."""
        start = self._size + nl  # where the line starts in the whole text
        if s[nl + 1] == "*":
            name = s[nl + 2 : eol]
            if self._open or eol == len(s) or name in self._seen or name not in IPTABLES_TABLES:
                return False
            line = self._newlines + s.count("\n", 1, nl + 1) + 1
            self._open = (name, self._size + eol - 1, line)
            return True
        if self._open is None or self._rules - self._declared:
            return False  # COMMIT outside a table; a rule of an undeclared chain
        name, lo, line = self._open
        self.tables.append((name, (lo, start), line))
        self._seen.add(name)
        self._open, self._rules, self._declared = None, set(), set()
        return True


def split_save(text: str) -> Tables | None:
    """The Tables of a whole `*-save` text, or None when it needs the eager parser."""
    split = SaveSplit()
    split.feed(text)
    return split.done()[1]
