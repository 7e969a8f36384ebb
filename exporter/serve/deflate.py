"""One gzip member built of blocks compressed apart, so a block kept across snapshots is
compressed once.

Each Block is raw deflate from a fresh compressor ended by a sync flush: byte-aligned, not
final, referring to nothing before it, so compressed blocks can follow each other in any order
and the stream is valid deflate (RFC 1951); an empty final block closes it. The member's CRC-32
and size are of the whole text, as one gzip.compress would give (RFC 1952): any gzip reader
(Go's, zlib's, curl's) reads it. Level 1, as the body was compressed before.
"""

from __future__ import annotations

import zlib

# magic, deflate, no flags, mtime 0, "fastest" (level 1), unknown OS
HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"
END = b"\x03\x00"  # an empty final block (fixed Huffman: BFINAL=1, BTYPE=01, end-of-block)


class Block:
    """Text of the body and, once asked for, its deflate."""

    __slots__ = ("_deflated", "data")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._deflated: bytes | None = None

    def deflated(self) -> bytes:
        if self._deflated is None:
            c = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
            self._deflated = c.compress(self.data) + c.flush(zlib.Z_SYNC_FLUSH)
        return self._deflated


def gzipped(blocks: list[Block]) -> bytes:
    """A gzip member of the blocks' text, in order."""
    crc, size, parts = 0, 0, [HEADER]
    for b in blocks:
        if b.data:
            parts.append(b.deflated())
            crc = zlib.crc32(b.data, crc)
            size += len(b.data)
    parts += [END, crc.to_bytes(4, "little"), (size & 0xFFFFFFFF).to_bytes(4, "little")]
    return b"".join(parts)


def plain(blocks: list[Block]) -> bytes:
    return b"".join([b.data for b in blocks])
