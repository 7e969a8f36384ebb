"""Print native nftables rules (`nft -j` expression lists) back as `nft` text.

The text is what reasons and reports show, so it follows `nft list` closely for the statements
Docker and common firewalls use (counters are left out); anything else falls back to its JSON.
"""

from __future__ import annotations

import json

UNQUALIFIED_META = {"iif", "oif", "iifname", "oifname", "iiftype", "oiftype"}
QUOTED = {"iifname", "oifname", "iif", "oif"}
VERDICTS = ("accept", "drop", "continue", "return")


def rule_text(exprs, comment: str = "") -> str:
    """The whole rule: `iifname != "bridge1" tcp dport 8080 dnat to 192.0.2.2:80 comment "DNAT"`."""
    parts = [stmt_text(e) for e in exprs if not (isinstance(e, dict) and "counter" in e)]
    if comment:
        parts.append(f'comment "{comment}"')
    return " ".join(p for p in parts if p)


def stmt_text(e) -> str:
    if not isinstance(e, dict) or len(e) != 1:
        return _json(e)
    ((key, val),) = e.items()
    if key == "match" and isinstance(val, dict):
        return match_text(val)
    if key in VERDICTS:
        return key
    if key in ("jump", "goto") and isinstance(val, dict):
        return f"{key} {val.get('target', '?')}"
    if key == "reject":
        return "reject" if not val else f"reject with {_reject(val)}"
    if key in ("dnat", "snat") and isinstance(val, dict):
        return f"{key} to {_nat_target(val)}"
    if key in ("masquerade", "redirect"):
        port = val.get("port") if isinstance(val, dict) else None
        return key if port is None else f"{key} to :{value_text(port)}"
    if key == "vmap" and isinstance(val, dict):
        return f"{expr_text(val.get('key'))} vmap {_map_data(val.get('data'))}"
    if key == "mangle" and isinstance(val, dict):
        return f"{expr_text(val.get('key'))} set {value_text(val.get('value'))}"
    if key == "log":
        prefix = val.get("prefix") if isinstance(val, dict) else None
        return "log" if prefix is None else f'log prefix "{prefix}"'
    if key == "limit" and isinstance(val, dict):
        return f"limit rate {val.get('rate', '?')}/{val.get('per', '?')}"
    if key == "notrack":
        return "notrack"
    return _json(e)


def match_text(m: dict) -> str:
    left, op, right = m.get("left"), m.get("op", "=="), m.get("right")
    quote = _meta_key(left) in QUOTED
    shown = "" if op in ("==", "in") else f"{op} "
    return f"{expr_text(left)} {shown}{value_text(right, quote)}"


def expr_text(x) -> str:
    if isinstance(x, dict) and len(x) == 1:
        ((key, val),) = x.items()
        if key == "meta" and isinstance(val, dict):
            k = val.get("key", "?")
            return k if k in UNQUALIFIED_META else f"meta {k}"
        if key == "payload" and isinstance(val, dict):
            if "protocol" in val:
                return f"{val['protocol']} {val.get('field', '?')}"
            return f"@{val.get('base', '?')},{val.get('offset', '?')},{val.get('len', '?')}"
        if key == "ct" and isinstance(val, dict):
            return f"ct {val.get('key', '?')}"
        if key == "fib" and isinstance(val, dict):
            return f"fib {' . '.join(val.get('flags') or [])} {val.get('result', '?')}"
        if key == "&" and isinstance(val, list) and len(val) == 2:
            return f"{expr_text(val[0])} & {value_text(val[1])}"
        if key == "concat" and isinstance(val, list):
            return " . ".join(expr_text(v) for v in val)
        if key == "numgen" and isinstance(val, dict):
            offset = f" offset {val['offset']}" if val.get("offset") else ""
            return f"numgen {val.get('mode', '?')} mod {val.get('mod', '?')}{offset}"
        if key == "tcp option" and isinstance(val, dict):
            return f"tcp option {val.get('name', '?')} {val.get('field', '?')}".rstrip()
    return _json(x)


def value_text(v, quote: bool = False) -> str:
    if isinstance(v, bool):
        return "exists" if v else "missing"
    if isinstance(v, str):
        return f'"{v}"' if quote and not v.startswith("@") else v
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list):
        return ",".join(value_text(x, quote) for x in v)
    if isinstance(v, dict) and len(v) == 1:
        ((key, val),) = v.items()
        if key == "set":
            items = val if isinstance(val, list) else [val]
            return "{ " + ", ".join(value_text(x, quote) for x in items) + " }"
        if key == "range" and isinstance(val, list) and len(val) == 2:
            return f"{value_text(val[0], quote)}-{value_text(val[1], quote)}"
        if key == "prefix" and isinstance(val, dict):
            return f"{val.get('addr', '?')}/{val.get('len', '?')}"
        if key == "elem" and isinstance(val, dict):
            return value_text(val.get("val"), quote)
    return expr_text(v)


def _map_data(data) -> str:
    if isinstance(data, str):
        return data
    if isinstance(data, dict) and isinstance(data.get("set"), list):
        items = [
            f"{value_text(k, True)} : {stmt_text(vd)}"
            for k, vd in (p for p in data["set"] if isinstance(p, list) and len(p) == 2)
        ]
        return "{ " + ", ".join(items) + " }"
    return _json(data)


def _nat_target(val: dict) -> str:
    addr, port = val.get("addr"), val.get("port")
    a = value_text(addr) if addr is not None else ""
    if port is None:
        return a
    if isinstance(addr, str) and ":" in addr:
        a = f"[{a}]"
    return f"{a}:{value_text(port)}"


def _reject(val) -> str:
    if isinstance(val, dict):
        return f"{val.get('type', '')} {val.get('expr', '')}".strip()
    return _json(val)


def _meta_key(x) -> str:
    if isinstance(x, dict) and isinstance(x.get("meta"), dict):
        return str(x["meta"].get("key", ""))
    return ""


def _json(x) -> str:
    return json.dumps(x, separators=(",", ":"), sort_keys=True)
