"""Read the kernel's rules with the `*-save` tools of each backend that is present.

nf_tables: `iptables-nft-save` with no `-t` (it prints only tables that exist, no side effects).
legacy: only when `/proc/net/ip_tables_names` lists a table, `iptables-legacy-save` with no `-t`
(with `-t` it would create the table). Never `iptables -C`: that is the primitive that lied.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.rules.family import FamilyRules
from exporter.rules.iptsave import save_backend
from exporter.rules.lazysave import parse_split
from exporter.rules.model import Ruleset
from exporter.rules.savesplit import SaveSplit, Tables, split_save
from exporter.sources.chains import reread
from exporter.sources.iptc_reader import read_legacy_iptc
from exporter.sources.proc import PROC_NAMES, forwarding, legacy_tables
from exporter.sources.run import Result, run, which

TOOLS = {
    ("ipv4", "nf_tables"): ("iptables-nft-save", "iptables-save"),
    ("ipv4", "legacy"): ("iptables-legacy-save",),
    ("ipv6", "nf_tables"): ("ip6tables-nft-save", "ip6tables-save"),
    ("ipv6", "legacy"): ("ip6tables-legacy-save",),
}


@dataclass(frozen=True, slots=True)
class RuleRead:
    rules: FamilyRules
    texts: dict[str, str]  # backend → raw save output (for `check --save`)
    warnings: tuple[str, ...]


def save_tool(family: str, backend: str) -> str | None:
    """The first `*-save` tool of this family and backend on PATH, or None."""
    for name in TOOLS[(family, backend)]:
        if which(name):
            return name
    return None


def read_family(
    family: str,
    timeout: float = 10.0,
    iptc: bool = False,
    last: dict | None = None,
    stale: dict[str, set[str]] | None = None,
) -> RuleRead:
    """`last`: backend → (save text, Ruleset) of the previous read, updated in place; a text
    byte-identical to the last one gives the same Ruleset back, a changed one reuses the
    unchanged chains (lazysave). `stale`: the nf_tables chains changed since that read (table
    → names; None: not known), updated in place: those the last analysis looked at are read
    again on their own when they can be (sources.chains), else the whole ruleset is."""
    rulesets: list[Ruleset] = []
    texts, warnings, errors = {}, [], []
    tool = save_tool(family, "nf_tables")
    before = (last or {}).get("nf_tables")
    again = reread(before[1], stale, timeout) if stale is not None and before else None
    if again is not None:
        last["nf_tables"] = (before[0], again)
        texts["nf_tables"] = before[0]
        rulesets.append(again)
    elif tool is None:
        errors.append(f"no {TOOLS[(family, 'nf_tables')][0]} on PATH")
    else:
        r, text, split = save(tool, timeout)
        refused = _refusal(r.stderr) if r.ok else ""
        if not r.ok or refused:
            errors.append(r.error or f"{tool}: {refused} (needs CAP_NET_ADMIN)")
        elif save_backend(text) == "legacy":
            texts["legacy"] = text  # a distro whose iptables-save is the legacy one
            rulesets.append(parse_reusing(text, family, "legacy", last, split))
        else:
            texts["nf_tables"] = text
            rulesets.append(parse_reusing(text, family, "nf_tables", last, split))
            if stale is not None:
                stale.clear()  # what changed before this read is in it
            warnings += [w for w in r.stderr.splitlines() if w.strip() and "legacy" not in w]
    legacy = legacy_tables(family)
    if legacy is None:
        warnings.append(f"{PROC_NAMES[family]} unreadable: legacy rules not checked")
    elif legacy and "legacy" not in texts:
        rs, text, err = read_legacy(family, timeout, iptc, last)
        if err:  # legacy tables exist but cannot be read: judging without them would guess
            errors.append(err)
            rulesets = []
        else:
            texts["legacy"] = text
            rulesets.append(rs)
    error = "; ".join(errors) if errors and not rulesets else ""
    warnings += errors if rulesets else []
    warnings += [f"{family} {rs.backend}: {e}" for rs in rulesets for e in rs.errors[:5]]
    rules = FamilyRules(family, tuple(rulesets), error, forwarding=forwarding(family))
    return RuleRead(rules, texts, tuple(warnings))


def save(tool: str, timeout: float) -> tuple[Result, str, Tables | None]:
    """Run a `*-save` tool: (how it ended, its output without the dates, that output split
    into tables as it arrived: rules.savesplit). The output is held once, by the split."""
    split = SaveSplit()

    def keep(lines: str) -> str:
        split.feed(undated(lines))
        return ""

    r = run([tool], timeout, lines=keep)
    text, tables = split.done()
    return r, text, tables


def parse_reusing(
    text: str, family: str, backend: str, last: dict | None, split: Tables | None = ()
) -> Ruleset:
    """`text` parsed lazily; the same Ruleset when `last[backend]` holds the same text.
    `split`: `savesplit.split_save(text)` when already known (the default: not known)."""
    key = undated(text)  # also what is parsed: the Ruleset then holds no second copy
    before = last.get(backend) if last is not None else None
    if before is not None and before[0] == key:
        return before[1]
    split = split_save(key) if split == () or key is not text else split
    rs = parse_split(key, split, family, backend, before[1] if before else None)
    if last is not None:
        last[backend] = (key, rs)
    return rs


def undated(text: str) -> str:
    """`text` less the dates of its `# Generated by ... on DATE` and `# Completed on DATE` lines:
    they change every second, and two listings of the same rules must compare equal."""
    out, at = [], 0
    line = 0 if text.startswith("# ") else _next_comment(text, 0)
    while line >= 0:
        end = text.find("\n", line)
        end = len(text) if end < 0 else end
        if text.startswith(("# Generated by ", "# Completed on "), line):
            cut = text.rfind(" on ", line, end)
            if cut + 4 < end:  # not undated already
                out.append(text[at : cut + 4])
                at = end
        line = _next_comment(text, end)
    return "".join(out) + text[at:] if out else text


def _next_comment(text: str, at: int) -> int:
    found = text.find("\n# ", at)
    return -1 if found < 0 else found + 1


def read_legacy(family: str, timeout: float, iptc: bool, last: dict | None = None):
    """(Ruleset, save text, error) of the legacy tables, by `*-legacy-save` or python-iptables."""
    if iptc:
        return read_legacy_iptc(family)
    tool = save_tool(family, "legacy")
    if tool is None:
        return (
            None,
            "",
            f"legacy {family} tables exist but no {TOOLS[(family, 'legacy')][0]}",
        )
    r, text, split = save(tool, timeout)
    if not r.ok:
        return None, "", r.error
    refused = _refusal(r.stderr)
    if refused:  # iptables-legacy-save 1.8.9 exits 0 with no output when it is refused
        return None, "", f"{tool}: {refused} (needs CAP_NET_ADMIN and CAP_NET_RAW)"
    return parse_reusing(text, family, "legacy", last, split), text, ""


def _refusal(stderr: str) -> str:
    for line in stderr.splitlines():
        low = line.lower()
        if "permission denied" in low or "cannot initialize" in low or "can't initialize" in low:
            return line.strip()
    return ""
