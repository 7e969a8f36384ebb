"""Small reads from /proc: which legacy iptables tables exist, whether a family forwards."""

from __future__ import annotations

PROC_NAMES = {"ipv4": "/proc/net/ip_tables_names", "ipv6": "/proc/net/ip6_tables_names"}
FORWARDING = {
    "ipv4": "/proc/sys/net/ipv4/ip_forward",
    "ipv6": "/proc/sys/net/ipv6/conf/all/forwarding",
}


def legacy_tables(family: str, proc_names: str | None = None) -> tuple[str, ...] | None:
    """Legacy tables that exist in this namespace; None when the file cannot be read."""
    try:
        with open(proc_names or PROC_NAMES[family]) as f:
            return tuple(line.strip() for line in f if line.strip())
    except FileNotFoundError:
        return ()  # no legacy support in this kernel: nothing to read
    except OSError:
        return None


def forwarding(family: str, path: str | None = None) -> bool | None:
    """Whether this namespace forwards packets of the family (None: cannot be read)."""
    try:
        with open(path or FORWARDING[family]) as f:
            return f.read().strip() != "0"
    except OSError:
        return None
