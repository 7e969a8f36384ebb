"""nf_tables over netlink, read-only: the change notifications, and the list of tables.

`subscribe()` opens a socket on the NFNLGRP_NFTABLES group: every committed change to a ruleset
of this namespace arrives on it (rules.nftevents reads the messages). `list_tables()` asks the
kernel for the tables only (a dump of NFT_MSG_GETTABLE, a few hundred bytes), which tells
whether `nft -j list chains` (nft loads its whole cache first: 0.1 s and ~10 MB at 50,000 rules)
is needed at all: on a host where iptables-nft owns every table it is not.
"""

from __future__ import annotations

import contextlib
import socket
import struct

from exporter.rules.nftevents import NLMSG_ERROR, parse_messages

NETLINK_NETFILTER, NFNLGRP_NFTABLES = 12, 7
SOL_NETLINK, NETLINK_ADD_MEMBERSHIP = 270, 1
SO_RCVBUFFORCE, RCVBUF = 33, 4 << 20  # a burst (iptables-restore of 50,000 rules) fits
NFT_MSG_GETTABLE, NLMSG_DONE = (10 << 8) | 1, 3
NLM_F_REQUEST, NLM_F_DUMP, NLM_F_DUMP_INTR = 0x1, 0x300, 0x10


def subscribe() -> socket.socket:
    """A non-blocking socket receiving every nf_tables change notification; raises OSError."""
    return listen(NETLINK_NETFILTER, (NFNLGRP_NFTABLES,), RCVBUF)


def listen(protocol: int, groups: tuple[int, ...], rcvbuf: int) -> socket.socket:
    """A non-blocking netlink socket of `protocol` joined to multicast `groups`, its receive
    buffer `rcvbuf` where allowed; raises OSError."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
    try:
        for opt in (SO_RCVBUFFORCE, socket.SO_RCVBUF):  # FORCE needs CAP_NET_ADMIN
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, opt, rcvbuf)
                break
        sock.bind((0, 0))
        for group in groups:
            sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def list_tables(timeout: float = 5.0) -> list[tuple[str, str]] | None:
    """(family, name) of every nf_tables table (family as nft spells it: ip, ip6, inet, ...);
    None when the kernel cannot be asked or answers something unexpected."""
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sock:
            sock.settimeout(timeout)
            sock.bind((0, 0))
            request = struct.pack("=IHHII", 20, NFT_MSG_GETTABLE, NLM_F_REQUEST | NLM_F_DUMP, 1,
                                  0) + struct.pack("=BBH", socket.AF_UNSPEC, 0, 0)  # fmt: skip
            sock.send(request)
            return _answer(sock)
    except OSError:
        return None


def _answer(sock: socket.socket) -> list[tuple[str, str]] | None:
    tables: list[tuple[str, str]] = []
    while True:
        data = sock.recv(1 << 16)
        at = 0
        while at + 16 <= len(data):
            length, mtype, flags = struct.unpack_from("=IHH", data, at)
            if length < 16 or mtype == NLMSG_ERROR or flags & NLM_F_DUMP_INTR:
                return None  # refused, or the tables changed during the dump
            if mtype == NLMSG_DONE:
                return tables
            for c in parse_messages(data[at : at + length]):
                if c.kind != "table" or not c.family:
                    return None
                tables.append((c.family, c.table))
            at += (length + 3) & ~3
        if not data:
            return None
