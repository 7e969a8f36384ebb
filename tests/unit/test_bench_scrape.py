"""bench.scrape's raw client: responses split anywhere still end where their body ends."""

import asyncio

import pytest

from bench.scrape import Response

BODY = b"0123456789" * 30
LENGTH = b"HTTP/1.1 200 OK\r\nContent-Length: 300\r\n\r\n" + BODY
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"".join(b"%x\r\n" % 100 + BODY[i : i + 100] + b"\r\n" for i in range(0, 300, 100))
    + b"0\r\n\r\n"
)
CLOSING = b"HTTP/1.0 503 Service Unavailable\r\n\r\n" + BODY


def feed(protocol: Response, data: bytes, step: int) -> None:
    for at in range(0, len(data), step):
        piece = data[at : at + step]
        protocol.get_buffer(len(piece))[: len(piece)] = piece
        protocol.buffer_updated(len(piece))


@pytest.mark.parametrize("step", [1, 2, 7, 64, 10_000])
@pytest.mark.parametrize("wire", [LENGTH, CHUNKED])
def test_two_responses_in_a_row(wire, step):
    async def run():
        p = Response()
        first = p.expect()
        feed(p, wire[: len(wire) // 2], step)
        assert not first.done()
        feed(p, wire[len(wire) // 2 :], step)
        assert first.result() == (200, 300, True)
        second = p.expect()  # nothing of the first response is left over
        feed(p, wire, step)
        assert second.result() == (200, 300, True)

    asyncio.run(run())


def test_a_body_that_ends_with_the_connection():
    async def run():
        p = Response()
        done = p.expect()
        feed(p, CLOSING, 5)
        assert not done.done()
        p.connection_lost(None)
        assert done.result() == (503, 300, False)

    asyncio.run(run())


def test_a_connection_lost_mid_body_is_an_error():
    async def run():
        p = Response()
        done = p.expect()
        feed(p, LENGTH[:60], 5)
        p.connection_lost(None)
        with pytest.raises(ConnectionError):
            done.result()

    asyncio.run(run())
