"""The rule model: what `iptables-save` says, as frozen data.

A `Rule` keeps its matches as `Cond`itions (option, values, negated) in the order written, and its
target with the target's options. The same model serves parsed kernel rules and the expected rules
generated from Docker's layouts, so comparing the two is comparing normalised keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FAMILIES = ("ipv4", "ipv6")


IPTABLES_TABLES = ("filter", "nat", "raw", "mangle", "security")  # all iptables has


@dataclass(frozen=True, slots=True)
class Cond:
    """One match condition, e.g. `! -i docker0` → Cond("-i", ("docker0",), True, "")."""

    option: str
    values: tuple[str, ...]
    negated: bool = False
    module: str = ""  # the `-m` module that owns the option ("" for the core options)


@dataclass(frozen=True, slots=True)
class Rule:
    family: str
    table: str
    chain: str
    position: int  # 1-based, as `iptables -L --line-numbers` and `-D CHAIN N` count
    conds: tuple[Cond, ...]
    target: str  # "" for a rule without -j/-g
    target_opts: tuple[tuple[str, tuple[str, ...]], ...] = ()
    goto: bool = False
    text: str = field(default="", compare=False)  # the rule as the kernel listed it
    backend: str = field(default="", compare=False)

    def opt(self, name: str) -> Cond | None:
        for c in self.conds:
            if c.option == name:
                return c
        return None

    def target_opt(self, name: str) -> str | None:
        for key, values in self.target_opts:
            if key == name:
                return " ".join(values)
        return None

    @property
    def ref(self) -> str:
        """A human handle: `nat/DOCKER #3` (what `iptables -t nat -D DOCKER 3` would delete)."""
        return f"{self.table}/{self.chain} #{self.position}"


@dataclass(frozen=True, slots=True)
class Chain:
    name: str
    policy: str | None  # ACCEPT/DROP for built-in chains, None for user chains
    rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    chains: dict[str, Chain]

    def chain(self, name: str) -> Chain | None:
        return self.chains.get(name)


@dataclass(frozen=True, slots=True)
class Ruleset:
    """Everything one backend holds for one family, as parsed from one `*-save` run."""

    family: str
    backend: str  # "nf_tables" or "legacy"
    tables: dict[str, Table]
    errors: tuple[str, ...] = ()  # lines the parser could not read, and why

    def table(self, name: str) -> Table | None:
        return self.tables.get(name)

    def rule_count(self) -> int:
        return sum(_count(t.chains) for t in self.tables.values())

    def has_chain(self, table: str, chain: str) -> bool:
        t = self.tables.get(table)
        return t is not None and chain in t.chains


def _count(chains) -> int:
    """Rules in a table's chains; a lazily parsed table (lazysave) counts them unparsed."""
    counter = getattr(chains, "rule_count", None)
    return counter() if counter else sum(len(c.rules) for c in chains.values())


def _rule_maker():
    """`Rule(...)` (all ten fields, positionally) without the dataclass's generated `__init__`:
    its ten `object.__setattr__` calls were half the cost of a parsed rule. The same object."""
    fields = ("family", "table", "chain", "position", "conds", "target", "target_opts", "goto",
              "text", "backend")  # fmt: skip
    assert fields == tuple(Rule.__dataclass_fields__), "new_rule: Rule's fields changed"
    s0, s1, s2, s3, s4, s5, s6, s7, s8, s9 = (getattr(Rule, f).__set__ for f in fields)
    new = object.__new__

    def new_rule(family, table, chain, position, conds, target, target_opts, goto, text,
                 backend) -> Rule:  # fmt: skip
        r = new(Rule)
        s0(r, family), s1(r, table), s2(r, chain), s3(r, position), s4(r, conds)
        s5(r, target), s6(r, target_opts), s7(r, goto), s8(r, text), s9(r, backend)
        return r

    return new_rule


new_rule = _rule_maker()
