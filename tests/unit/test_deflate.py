"""serve.deflate: blocks compressed apart make one gzip member of their text, in order."""

from __future__ import annotations

import gzip
import itertools
import zlib

import pytest

from exporter.serve.deflate import Block, gzipped, plain

TEXT = b"".join(b'docker_nat_port_state{container="c%d",state="ok"} 1.0\n' % i for i in range(3000))


def blocks_of(text: bytes, cuts) -> list[Block]:
    at = [0, *cuts, len(text)]
    return [Block(text[a:b]) for a, b in itertools.pairwise(at)]


@pytest.mark.parametrize("cuts", [[], [1], [10, 10, 11], [70_000], list(range(0, 150_000, 997))])
def test_one_member_of_the_whole_text(cuts):
    blocks = blocks_of(TEXT, cuts)
    body = gzipped(blocks)
    assert plain(blocks) == TEXT
    assert gzip.decompress(body) == TEXT
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)  # one member: nothing after its trailer
    assert d.decompress(body) == TEXT
    assert d.eof and d.unused_data == b""
    assert body[:3] == b"\x1f\x8b\x08"


def test_blocks_in_another_order_and_kept_ones():
    blocks = blocks_of(TEXT, [5000, 60_000, 100_000])
    gzipped(blocks)  # each block compressed once here, kept
    again = [blocks[2], blocks[0], Block(b"new\n"), blocks[3], blocks[1]]
    assert gzip.decompress(gzipped(again)) == b"".join(b.data for b in again)


def test_nothing():
    assert gzip.decompress(gzipped([])) == b""
    assert gzip.decompress(gzipped([Block(b"")])) == b""
