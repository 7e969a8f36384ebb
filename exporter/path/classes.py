"""One port's verdict from its per-source-class verdicts: policy told apart from breakage.

- Some remote sources reach the port while an admin's rule (DOCKER-USER and what it jumps to,
  or the host's own firewall) refuses the others: it works as configured (`ok`, or `proxied`).
- No remote source reaches it and admins' rules refuse them all: it is broken (`dropped`), and
  the reason names the deciding rule and its owner.
- Any class that fails otherwise (misrouted, unreachable, unknown, dropped by Docker's own
  rules) decides the port's state, the worst first, as a single failing client always did.

Exposure, the security view: `public` (every remote address reaches the port), `restricted`
(some do: `allowed` lists them), `local` (none does: local clients only), `unknown`.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.path.owner import POLICY
from exporter.path.sources import Sources, describe

REACH = ("ok", "proxied", "masqueraded")
SEVERITY = {"misrouted": 0, "dropped": 1, "unreachable": 2, "unknown": 3, "proxied": 4,
            "masqueraded": 5, "ok": 6}  # fmt: skip
EXPOSURES = ("public", "restricted", "local", "unknown")


@dataclass(frozen=True, slots=True)
class SourceClass:
    """Remote clients whose source address is in `sources`, and what they get."""

    sources: Sources
    state: str
    code: str  # path.codes
    reason: str
    rule: str = ""
    owner: str = ""
    shown: str = ""  # `sources` for a human (path.sources.describe)


@dataclass(frozen=True, slots=True)
class Summary:
    state: str
    code: str
    reason: str
    rule: str
    owner: str
    exposure: str
    allowed: str  # describe() of the sources that reach the port


def refused_by_policy(c: SourceClass) -> bool:
    return c.state == "dropped" and c.owner in POLICY


def summarise(classes: list[SourceClass], space: Sources) -> Summary:
    """The port's state from the classes (disjoint, covering `space`)."""
    reach = [c for c in classes if c.state in REACH]
    allowed = _union(space, reach)
    exposure = exposure_of(allowed, space, any(c.state == "unknown" for c in classes))
    shown = describe(allowed, space)
    failing = [c for c in classes if c.state not in REACH and not refused_by_policy(c)]
    if len(classes) == 1:
        c = classes[0]
        return Summary(c.state, c.code, c.reason, c.rule, c.owner, exposure, shown)
    if failing:
        c = _worst(failing)
        reason = f"from {describe(c.sources, space)}: {c.reason}"
        return Summary(c.state, c.code, reason, c.rule, c.owner, exposure, shown)
    refused = sorted((c for c in classes if refused_by_policy(c)), key=_biggest)
    if reach and not refused:  # every source reaches it, some in a worse way than others
        c = _worst(reach)
        reason = f"from {describe(c.sources, space)}: {c.reason}"
        return Summary(c.state, c.code, reason, c.rule, c.owner, exposure, shown)
    if reach:
        c = _worst(reach)
        why = refused[0]
        reason = f"{c.reason}; only from {shown}: other sources {_lower(why.reason)}"
        return Summary(c.state, c.code, reason, c.rule, c.owner, exposure, shown)
    c = refused[0]  # the rule that refuses the most addresses
    reason = f"no remote source reaches it: {_lower(c.reason)}"
    if len(refused) > 1:
        reason += f" (and {len(refused) - 1} more rule{'s' if len(refused) > 2 else ''})"
    return Summary(c.state, c.code, reason, c.rule, c.owner, exposure, shown)


def exposure_of(allowed: Sources, space: Sources, unknown: bool) -> str:
    if allowed == space:
        return "public"
    if unknown:
        return "unknown"
    return "restricted" if allowed else "local"


def _union(space: Sources, classes: list[SourceClass]) -> Sources:
    out = Sources(space.version)
    for c in classes:
        out = out | c.sources
    return out


def _worst(classes: list[SourceClass]) -> SourceClass:
    return min(classes, key=lambda c: (SEVERITY[c.state], -c.sources.size()))


def _biggest(c: SourceClass) -> int:
    return -c.sources.size()


def _lower(text: str) -> str:
    return text[:1].lower() + text[1:]
