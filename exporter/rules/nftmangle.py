"""nft `... set ...` statements as the iptables targets the walker follows: `meta mark set`
→ MARK, `ct mark set` → CONNMARK (values and masks as iptables-save prints them), `tcp option
maxseg size set` → TCPMSS; a rewrite of addresses or ports is a target the walker cannot follow.
"""

from __future__ import annotations

from exporter.rules.nftconds import UNKNOWN

MARK_OPS = {"|": "or", "&": "and", "^": "xor"}


def mangle(val: dict) -> tuple | None:
    """A `... set ...` statement as an iptables target: (target, options), (UNKNOWN, ...) for
    one that rewrites what the walker cannot follow, None for one the packet does not carry."""
    key, value = val.get("key"), val.get("value")
    which = _mark_key(key)
    if which is not None:
        return _mark_set(which, value)
    if isinstance(key, dict) and isinstance(key.get("tcp option"), dict):
        opt = key["tcp option"]
        if (opt.get("name"), opt.get("field")) != ("maxseg", "size"):
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return ("TCPMSS", (("--set-mss", (str(value),)),))
        return ("TCPMSS", (("--clamp-mss-to-pmtu", ()),))
    if isinstance(key, dict) and "payload" in key:
        return (UNKNOWN, (), False)  # stateless rewriting of addresses or ports
    return None  # priority, dscp...: nothing the modelled packet carries


def _mark_key(x) -> str | None:
    """ "meta" for `meta mark`, "ct" for `ct mark`, None for anything else."""
    if isinstance(x, dict) and len(x) == 1:
        ((k, v),) = x.items()
        if k in ("meta", "ct") and isinstance(v, dict) and v.get("key") == "mark":
            return k
    return None


def _mark_set(which: str, value) -> tuple:
    """`meta mark set ...` → MARK, `ct mark set ...` → CONNMARK, as iptables-save prints them:
    a constant or an or/and/xor of the same mark is --set-xmark value/mask; the other mark
    copied is CONNMARK --save-mark (ct ← meta) or --restore-mark (meta ← ct)."""
    target = "MARK" if which == "meta" else "CONNMARK"
    spec = "?"  # anything else: the walker makes the mark unknown
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        spec = f"0x{value:x}/0xffffffff"
    elif isinstance(value, dict) and len(value) == 1:
        ((op, args),) = value.items()
        if op in MARK_OPS and isinstance(args, list) and len(args) == 2:
            inner, n = args
            if _mark_key(inner) == which and isinstance(n, int) and not isinstance(n, bool):
                v, m = {"|": (n, n), "&": (0, ~n & 0xFFFFFFFF), "^": (n, 0)}[op]
                spec = f"0x{v:x}/0x{m:x}"
        elif _mark_key(value) not in (None, which):
            copy = "--restore-mark" if which == "meta" else "--save-mark"
            masks = (("--nfmask", ("0xffffffff",)), ("--ctmask", ("0xffffffff",)))
            return ("CONNMARK", ((copy, ()), *masks))
    return (target, (("--set-xmark", (spec,)),))
