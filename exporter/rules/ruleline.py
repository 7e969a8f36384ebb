"""One rule line of `iptables-save` (`-A CHAIN conditions -j TARGET options`) into its parts.

`split_words` gives the words as iptables-save quotes them, `parse_rule_tokens` the conditions
and target they say. `parse_line` does both for a whole line and remembers the answer: the
kernel's rules and the expected rules built from the same text (exporter.expect) are read once,
and a chain read afresh after a change finds its unchanged lines already read.
"""

from __future__ import annotations

import re
import shlex
from functools import lru_cache

from exporter.rules.model import Cond

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


# What a token at an option's place is: a core option (its short name), or a kind of its own.
_NEGATION, _TARGET, _MODULE, _FRAGMENT = "!", "j", "m", "f"
_KINDS = {**CORE_OPTIONS, **dict.fromkeys(_TARGETS, _TARGET), **dict.fromkeys(NO_VALUE_CORE,
          _FRAGMENT), "!": _NEGATION, "-m": _MODULE, "--match": _MODULE}  # fmt: skip


def parse_rule_tokens(tokens: list[str], i: int = 0):
    """Split a rule's tokens (from `i`, after `-A CHAIN`) into conditions and target.

    Returns (conds, target, target_opts, goto). Raises ValueError on malformed input.
    """
    conds: list[Cond] = []
    module, negate, n = "", False, len(tokens)
    while i < n:
        tok = tokens[i]
        kind = _KINDS.get(tok, "")
        if kind == _NEGATION:
            if negate:
                raise ValueError("double negation")
            negate, i = True, i + 1
            continue
        if kind == _MODULE:
            if i + 1 >= n or negate:
                raise ValueError("bad -m")
            module, i = tokens[i + 1], i + 2
            continue
        if kind == _TARGET:
            if negate:
                raise ValueError("negated target")
            if i + 1 >= n:
                raise ValueError(f"{tok} without a target")
            opts = _target_opts(tokens[i + 2 :]) if i + 2 < n else ()
            return tuple(conds), tokens[i + 1], opts, _TARGETS[tok]
        if not kind and (len(tok) < 2 or tok[0] != "-"):
            raise ValueError(f"unexpected value {tok!r}")
        j = i + 1
        while j < n:  # the option's values run up to the next option (inlined _is_option)
            t = tokens[j]
            if t == "!" or (len(t) > 1 and t[0] == "-" and not t[1].isdigit()):
                break
            j += 1
        values, i = tuple(tokens[i + 1 : j]), j
        if len(kind) == 2:  # a core option: -p -s -d -i -o
            if len(values) != 1:
                raise ValueError(f"{tok} takes one value")
            conds.append(_cond(kind, values, negate, ""))
        elif kind:
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


_MEMO_SIZE = 1 << 16  # lines remembered; forgotten all at once when full
_lines: dict[str, tuple] = {}  # line → (chain, conds, target, target_opts, goto)


def parse_line(line: str) -> tuple[str, tuple[Cond, ...], str, tuple, bool]:
    """(chain, conds, target, target_opts, goto) of a rule line `-A CHAIN ...`, as
    `split_words` then `parse_rule_tokens` read it. Raises ValueError as they do.

    Remembered per line: the kernel's rules and the expected rules built from the same text
    are read once, and so is a rule again in a changed chain read afresh."""
    got = _lines.get(line)
    if got is None:
        tokens = split_words(line)
        if len(tokens) < 2 or tokens[0] != "-A":
            raise ValueError("expected '-A CHAIN ...'")
        if len(_lines) >= _MEMO_SIZE:
            _lines.clear()
        got = _lines[line] = (tokens[1], *parse_rule_tokens(tokens, 2))
    return got


def forget() -> None:
    """Drop what `parse_line` remembers (a cold start, as the bench measures one)."""
    _lines.clear()
