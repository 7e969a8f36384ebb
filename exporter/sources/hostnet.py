"""The host's own addresses, to model where a remote client's connection arrives."""

from __future__ import annotations

import json

from exporter.sources.run import run


def host_addresses(timeout: float = 5.0) -> tuple[tuple[str, str], ...] | None:
    """(interface, address) pairs from `ip -j addr`; None when they cannot be read."""
    r = run(["ip", "-j", "addr", "show"], timeout)
    if not r.ok:
        return None
    return parse_ip_addr_json(r.stdout)


def parse_ip_addr_json(text: str) -> tuple[tuple[str, str], ...] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    out = []
    for link in data if isinstance(data, list) else ():
        if not isinstance(link, dict):
            continue
        name = str(link.get("ifname", ""))
        for a in link.get("addr_info") or ():
            if isinstance(a, dict) and a.get("local"):
                out.append((name, str(a["local"])))
    return tuple(out)
