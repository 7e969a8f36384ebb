"""Parse `nft -j list table …` / `nft -j list ruleset` output into the rule model.

Each native base chain becomes one Ruleset (a `NativeRuleset`) that the walker treats like an
iptables backend: its hook maps to the iptables table and built-in chain the evaluator walks
(type nat + hook prerouting → nat/PREROUTING, type filter + hook forward → filter/FORWARD...),
that chain holds the base chain's rules and policy, and every regular chain of the same nft
table is there too, keyed `nft:<name>`, so jumps resolve. `order_rulesets` sorts all backends
of a family by hook priority, the iptables ones counting as iptables' own priorities.

Pure and total on well-formed JSON: what a rule says that cannot be translated becomes a `?nft`
condition (see nftexpr); JSON that is not an nft document raises NftJsonError.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from exporter.rules.model import IPTABLES_TABLES, Chain, Cond, Rule, Ruleset, Table
from exporter.rules.nftexpr import CHAIN_PREFIX, UNKNOWN, translate
from exporter.rules.nftmatch import TableSets, address_elements, set_name
from exporter.rules.nftprint import rule_text

TABLE_FAMILIES = {"ip": ("ipv4",), "ip6": ("ipv6",), "inet": ("ipv4", "ipv6")}
WALKED_HOOKS = ("ingress", "prerouting", "input", "forward", "postrouting")
# Priorities of the iptables tables at their hooks (NF_IP_PRI_*), which `order` is relative to.
RAW, MANGLE, DSTNAT, FILTER = -300, -150, -100, 0
FIRST = -1_000_000  # ingress: before anything at prerouting
POST_DNAT = -100_000  # filter chains at prerouting after DNAT: before any forward/input chain


class NftJsonError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class NftReadError:
    """A Ruleset error (like iptsave.ParseError): chain "" makes the whole table unreadable."""

    table: str
    chain: str
    why: str

    def __str__(self) -> str:
        return self.why


@dataclass(frozen=True, slots=True)
class NativeRuleset(Ruleset):
    """One native base chain, as a backend of its own (backend "nft:<family> <table>/<chain>")."""

    nft_table: str = ""  # "ip docker-bridges"
    base_chain: str = ""
    hook: str = ""
    priority: int = 0
    order: int = 0  # where it runs among the backends walked at its hook (iptables ones: 0)
    # the table's named sets of addresses: (matcher name "nft:ip filter/allowed", prefixes)
    sets: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class BaseChain:
    family: str  # nft family: ip, ip6, inet
    table: str
    name: str
    type: str
    hook: str
    priority: int
    policy: str  # ACCEPT or DROP
    devices: tuple[str, ...] = ()  # an ingress hook's devices

    @property
    def label(self) -> str:
        return f"{self.family} {self.table}"


def objects(text: str) -> list[dict]:
    """The objects of one `nft -j` document (metainfo left out)."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise NftJsonError(f"not JSON ({exc})") from None
    items = doc.get("nftables") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise NftJsonError('not an nft JSON document (no "nftables" array)')
    return [o for o in items if isinstance(o, dict) and "metainfo" not in o]


def base_chain(obj: dict) -> BaseChain | None:
    """A `{"chain": …}` object's hook, None for a regular chain."""
    c = obj.get("chain")
    if not isinstance(c, dict) or "hook" not in c:
        return None
    prio, dev = c.get("prio", 0), c.get("dev")
    return BaseChain(
        family=str(c.get("family", "")),
        table=str(c.get("table", "")),
        name=str(c.get("name", "")),
        type=str(c.get("type", "filter")),
        hook=str(c.get("hook", "")),
        priority=prio if isinstance(prio, int) and not isinstance(prio, bool) else 0,
        policy="DROP" if c.get("policy") == "drop" else "ACCEPT",
        devices=tuple(str(d) for d in (dev if isinstance(dev, list) else [dev] if dev else [])),
    )


def placement(b: BaseChain) -> tuple[tuple[tuple[str, str], ...], int] | None:
    """The (iptables table, built-in chain) pairs a base chain is walked as, and its order."""
    t, h, p = b.type, b.hook, b.priority
    if h == "ingress":
        return (("raw", "PREROUTING"),), FIRST + p
    if t == "nat" and h in ("prerouting", "input", "output", "postrouting"):
        std = DSTNAT if h in ("prerouting", "output") else -DSTNAT  # dstnat -100, srcnat 100
        return (("nat", h.upper()),), p - std
    if t == "nat":
        return None
    if h == "prerouting" and p < MANGLE:
        return (("raw", "PREROUTING"),), p - RAW
    if h == "prerouting" and p <= DSTNAT:  # sees the packet before DNAT
        return (("mangle", "PREROUTING"),), p - MANGLE
    if h == "prerouting":  # after DNAT: sees what forward/input see, before them
        return (("mangle", "FORWARD"), ("mangle", "INPUT")), POST_DNAT + p
    if h in ("input", "forward", "output", "postrouting") and p <= MANGLE:
        return (("mangle", h.upper()),), p - MANGLE
    if h in ("input", "forward", "output"):
        return (("filter", h.upper()),), p - FILTER
    if h == "postrouting":
        return (("mangle", "POSTROUTING"),), p - MANGLE
    return None


def table_families(family: str) -> tuple[str, ...]:
    return TABLE_FAMILIES.get(family, ())


def parse(
    text: str, families: tuple[str, ...] = ("ipv4", "ipv6")
) -> dict[str, list[NativeRuleset]]:
    """Every base chain of every ip/ip6/inet table in one `nft -j` document, per family."""
    tables: dict[tuple[str, str], dict] = {}
    for o in objects(text):
        if len(o) != 1:
            continue
        ((kind, body),) = o.items()
        if not isinstance(body, dict) or kind not in ("table", "chain", "rule", "set", "map"):
            continue
        fam = str(body.get("family", ""))
        name = str(body.get("name") if kind == "table" else body.get("table", ""))
        if not table_families(fam):
            continue
        t = tables.setdefault((fam, name), {"chains": {}, "bases": [], "rules": {}, "sets": {}})
        _collect(t, kind, body, o)
    out: dict[str, list[NativeRuleset]] = {f: [] for f in families}
    for (fam, name), t in tables.items():
        for f in table_families(fam):
            if f in out:
                out[f] += table_rulesets(fam, name, t, f)
    return out


def _collect(t: dict, kind: str, body: dict, obj: dict) -> None:
    if kind == "chain":
        t["chains"].setdefault(str(body.get("name", "")), [])
        b = base_chain(obj)
        if b is not None:
            t["bases"].append(b)
    elif kind == "rule":
        t["rules"].setdefault(str(body.get("chain", "")), []).append(body)
    elif kind in ("set", "map"):
        elems = body.get("elem")
        t["sets"][str(body.get("name", ""))] = elems if isinstance(elems, list) else []


def table_rulesets(fam: str, name: str, t: dict, family: str) -> list[NativeRuleset]:
    label = f"{fam} {name}"
    sets = TableSets(label, t["sets"])
    rules = {c: chain_rules(label, c, t["rules"].get(c, []), family, sets) for c in t["chains"]}
    addr_sets = tuple(
        (set_name(label, n), tuple(members))
        for n, elems in t["sets"].items()
        if (members := address_elements(elems)) is not None
    ) + tuple(sets.anonymous.items())  # the large anonymous ones the rules hold
    bases = {b.name for b in t["bases"]}
    regular = {
        CHAIN_PREFIX + c: Chain(CHAIN_PREFIX + c, None, rs)
        for c, rs in rules.items()
        if c not in bases
    }
    out = []
    for b in t["bases"]:
        place = placement(b)
        if place is None:
            continue
        pairs, order = place
        own = rules.get(b.name, ())
        if b.hook == "ingress":  # a device-bound hook sees that device's packets only
            own = (_elsewhere(b, family), *own)
        out.append(_ruleset(b, family, pairs, order, own, regular, addr_sets))
    return out


def _ruleset(b: BaseChain, family, pairs, order, own, regular, sets=()) -> NativeRuleset:
    tables: dict[str, dict[str, Chain]] = {}
    for table, builtin in pairs:
        tables.setdefault(table, dict(regular))[builtin] = Chain(builtin, b.policy, own)
    return NativeRuleset(
        family=family,
        backend=f"nft:{b.label}/{b.name}",
        tables={n: Table(n, chains) for n, chains in tables.items()},
        nft_table=b.label,
        base_chain=b.name,
        hook=b.hook,
        priority=b.priority,
        order=order,
        sets=sets,
    )


def _elsewhere(b: BaseChain, family: str) -> Rule:
    """A first rule letting other devices' packets pass: the hook never sees them. nft 1.0.6
    does not print an inet ingress chain's device: then whether it applies is unknown."""
    devices = ", ".join(b.devices) or "a device nft does not name"
    conds = tuple(Cond("-i", (d,), True) for d in b.devices) or (Cond(UNKNOWN, (devices,)),)
    text = f"(hook {b.hook} on {devices} only)"
    return Rule(family, b.label, b.name, 0, conds, "ACCEPT", text=text, backend="nft:" + b.label)


def chain_rules(label: str, chain: str, bodies: list[dict], family: str, sets) -> tuple[Rule, ...]:
    out = []
    for pos, body in enumerate(bodies, 1):
        exprs = body.get("expr")
        comment = body.get("comment") if isinstance(body.get("comment"), str) else ""
        text = rule_text(exprs, comment) if isinstance(exprs, list) else json.dumps(body)[:200]
        for a in translate(exprs, family, sets):
            r = Rule(family, label, chain, pos, a.conds, a.target, a.target_opts, a.goto)
            out.append(replace(r, text=text, backend="nft:" + label))
    return tuple(out)


def unreadable(b: BaseChain, family: str, why: str) -> NativeRuleset | None:
    """A stand-in for a base chain whose table could not be read: its hook is `unknown`."""
    place = placement(b)
    if place is None:
        return None
    pairs, order = place
    errors = tuple(NftReadError(t, "", why) for t, _ in pairs)
    rs = _ruleset(b, family, pairs, order, (), {})
    return NativeRuleset(
        family, rs.backend, rs.tables, errors, b.label, b.name, b.hook, b.priority, order
    )


def order_rulesets(rulesets) -> tuple[Ruleset, ...]:
    """Backends in the order the kernel runs them at each hook (stable for equal priorities)."""
    return tuple(sorted(rulesets, key=lambda rs: getattr(rs, "order", 0)))


def is_native(rs: Ruleset) -> bool:
    return isinstance(rs, NativeRuleset)


def native_rule_count(rulesets) -> int | None:
    """Rules in the native tables among `rulesets` (each counted once although every base
    chain's ruleset repeats its table's regular chains); None when there are none."""
    seen = {
        (r.table, r.chain, r.position)
        for rs in rulesets
        if is_native(rs)
        for t in rs.tables.values()
        for c in t.chains.values()
        for r in c.rules
        if r.position > 0
    }
    native = any(is_native(rs) for rs in rulesets)
    return len(seen) if native else None


__all__ = [
    "IPTABLES_TABLES",
    "UNKNOWN",
    "WALKED_HOOKS",
    "BaseChain",
    "NativeRuleset",
    "NftJsonError",
    "NftReadError",
    "base_chain",
    "is_native",
    "native_rule_count",
    "objects",
    "order_rulesets",
    "parse",
    "placement",
    "unreadable",
]
