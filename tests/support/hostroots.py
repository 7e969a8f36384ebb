"""Simulated host roots for the host-facts tests: a Debian root (dpkg status, alternatives),
an rpmdb.sqlite with rpm's own schema, and rpm header blobs as rpm writes them."""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

RPM_STRING, RPM_INT32, RPM_BIN, RPM_STRING_ARRAY = 6, 4, 7, 8


def encode_rpm_header(entries: list[tuple[int, int, object]]) -> bytes:
    """An rpmdb-style header blob: il, dl, index entries, data; with an immutable region
    (tag 63) whose trailer sits at the end of the data, as rpm writes it."""
    index, data = [], b""
    for tag, kind, value in entries:
        if kind == RPM_INT32:
            data += b"\0" * (-len(data) % 4)
            index.append((tag, kind, len(data), 1))
            data += struct.pack(">i", value)
        elif kind == RPM_STRING_ARRAY:
            index.append((tag, kind, len(data), len(value)))
            data += b"".join(v.encode() + b"\0" for v in value)
        else:
            index.append((tag, kind, len(data), 1))
            data += value.encode() + b"\0"
    count = len(index) + 1
    index.insert(0, (63, RPM_BIN, len(data), 16))
    data += struct.pack(">iiii", 63, RPM_BIN, -16 * count, 16)
    blob = struct.pack(">II", count, len(data))
    blob += b"".join(struct.pack(">iiii", *entry) for entry in index)
    return blob + data


RHEL9_HEADER = [
    (1000, RPM_STRING, "iptables-nft"),
    (1001, RPM_STRING, "1.8.10"),
    (1002, RPM_STRING, "11.el9"),
    (1003, RPM_INT32, 0),
    (1004, 9, "Legacy tools for managing Linux kernel packet filtering capabilities"),
    (1022, RPM_STRING, "x86_64"),
    (1047, RPM_STRING_ARRAY, ["iptables-nft", "iptables-nft(x86-64)"]),
]


DPKG_BAD = """Package: iptables
Status: install ok installed
Architecture: amd64
Version: 1.8.11-1
Description: administration tools for packet filtering and NAT
 continuation line
"""


def debian_root(root: Path, version: str = "1.8.11-1") -> Path:
    (root / "etc" / "alternatives").mkdir(parents=True)
    (root / "etc" / "alternatives" / "iptables").symlink_to("/usr/sbin/iptables-nft")
    (root / "usr" / "sbin").mkdir(parents=True)
    (root / "usr" / "sbin" / "iptables").symlink_to("/etc/alternatives/iptables")
    (root / "var" / "lib" / "dpkg").mkdir(parents=True)
    (root / "var" / "lib" / "dpkg" / "status").write_text(DPKG_BAD.replace("1.8.11-1", version))
    return root


def write_rpmdb(path: Path, headers: list[bytes]) -> None:
    """An rpmdb.sqlite with rpm's own Packages and Name tables (schema as rpm 4.18 creates it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")  # as rpm does; read-only opens then need immutable=1
    db.execute(
        "CREATE TABLE 'Packages' (hnum INTEGER PRIMARY KEY AUTOINCREMENT,blob BLOB NOT NULL)"
    )
    db.execute(
        "CREATE TABLE 'Name' (key 'TEXT' NOT NULL, hnum INTEGER NOT NULL, idx INTEGER NOT NULL)"
    )
    for hnum, blob in enumerate(headers, 1):
        name = blob[8 + 16 * struct.unpack(">I", blob[:4])[0] :].split(b"\0")[0].decode()
        db.execute("INSERT INTO Packages VALUES (?, ?)", (hnum, blob))
        db.execute("INSERT INTO Name VALUES (?, ?, 0)", (name, hnum))
    db.commit()
    db.close()


def rhel_header(name: str, version: str, release: str) -> bytes:
    replacements = {1000: name, 1001: version, 1002: release}
    return encode_rpm_header([(t, k, replacements.get(t, v)) for t, k, v in RHEL9_HEADER])
