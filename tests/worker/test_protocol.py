"""Frame helpers of inference.protocol on both sides of a real socket pair (blocking and asyncio)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from inference import protocol


def test_blocking_frames_round_trip_and_report_a_cut_frame():
    left, right = socket.socketpair()
    frame = protocol.complete(3, path="a.py", prefix="é\U0001f600", suffix="", stop=["\n"])
    protocol.write_frame(left, frame)
    assert protocol.read_frame(right) == frame
    left.sendall(protocol.HEADER.pack(10) + b"abc")
    left.close()
    with pytest.raises(protocol.ConnectionClosed, match="mid-frame"):
        protocol.read_frame(right)


def test_the_writer_refuses_an_oversized_frame():
    with pytest.raises(protocol.FrameTooLarge):
        protocol.encode_frame(protocol.sync(1, add=[{"path": "big", "hash": "0", "text": "x" * 100}]), max_bytes=50)


def test_validation_names_the_problem():
    with pytest.raises(protocol.ProtocolError, match="max_tokens"):
        protocol.validate_request(dict(protocol.complete(1, path="a", prefix="", suffix=""), max_tokens=0))
    with pytest.raises(protocol.ProtocolError, match="start"):
        protocol.validate_request(protocol.score(1, path="a", text="abc", start=2, end=9))
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.validate_request({"op": "stats"})
    assert caught.value.code == "bad_frame"
    assert protocol.validate_request(protocol.hello(1, token="t"))["token"] == "t"


async def test_asyncio_frames_round_trip_and_report_close():
    left, right = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=right)
    protocol.write_frame(left, protocol.chunk(5, "piece"))
    assert await protocol.read_frame_async(reader) == protocol.chunk(5, "piece")
    left.sendall(protocol.HEADER.pack(protocol.MAX_FRAME_BYTES + 1))
    with pytest.raises(protocol.FrameTooLarge):
        await protocol.read_frame_async(reader)
    left.close()
    with pytest.raises(protocol.ConnectionClosed):
        await protocol.read_frame_async(reader)
    writer.close()
