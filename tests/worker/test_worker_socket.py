"""The worker through its real socket: every broken frame gets a clear error frame and the connection goes on."""

from __future__ import annotations

import asyncio
import os
import time

import msgpack
import pytest

from inference import protocol
from lsp.worker_client import WorkerClient, WorkerSettings
from tests.worker.conftest import WorkerProcess, greeted

H_A = protocol.content_hash("def add(a, b):\n    return a + b\n")


def ask(sock, frame):
    protocol.write_frame(sock, frame)
    return protocol.read_frame(sock)


def assert_still_serving(sock, request_id=999):
    reply = ask(sock, protocol.simple("stats", request_id))
    assert reply["op"] == "stats" and reply["id"] == request_id, reply


def test_socket_lives_in_a_private_directory(worker):
    path = worker.address[5:]
    assert os.stat(os.path.dirname(path)).st_mode & 0o077 == 0
    assert os.stat(path).st_mode & 0o077 == 0


def test_hello_reports_version_model_and_capabilities(worker):
    sock = worker.connect()
    reply = ask(sock, protocol.hello(1))
    assert reply["version"] == protocol.PROTOCOL_VERSION
    assert "complete" in reply["capabilities"] and "cancel" in reply["capabilities"]
    assert isinstance(reply["model"], dict) and reply["pid"] == worker.proc.pid


def test_requests_before_hello_are_refused(worker):
    sock = worker.connect()
    reply = ask(sock, protocol.simple("stats", 5))
    assert (reply["op"], reply["code"], reply["id"]) == ("error", "auth", 5)
    assert ask(sock, protocol.hello(6))["op"] == "hello"


def test_wrong_protocol_version_is_refused_and_the_connection_stays(worker):
    sock = worker.connect()
    reply = ask(sock, {"op": "hello", "id": 1, "version": protocol.PROTOCOL_VERSION + 41})
    assert reply["code"] == "bad_version" and reply["data"]["version"] == protocol.PROTOCOL_VERSION
    assert ask(sock, protocol.hello(2))["op"] == "hello"
    assert_still_serving(sock)


def test_malformed_msgpack_and_bad_shapes_get_bad_frame(worker):
    sock = greeted(worker)
    body = b"\xc1\xc1\xc1"  # 0xc1 is never valid msgpack
    sock.sendall(protocol.HEADER.pack(len(body)) + body)
    reply = protocol.read_frame(sock)
    assert reply["code"] == "bad_frame" and "msgpack" in reply["message"]
    for frame in ([1, 2, 3], {"id": 4}, {"op": "complete", "id": 5, "path": 3}):
        body = msgpack.packb(frame)
        sock.sendall(protocol.HEADER.pack(len(body)) + body)
        assert protocol.read_frame(sock)["code"] == "bad_frame"
    assert_still_serving(sock)


def test_unknown_op(worker):
    sock = greeted(worker)
    reply = ask(sock, {"op": "teleport", "id": 7})
    assert (reply["code"], reply["id"]) == ("unknown_op", 7) and "teleport" in reply["message"]
    assert_still_serving(sock)


def test_oversized_frame_is_refused_and_skipped(worker):
    sock = greeted(worker)
    size = 65536 + 10  # the fixture's worker caps frames at 64 KiB
    sock.sendall(protocol.HEADER.pack(size) + b"x" * size)
    reply = protocol.read_frame(sock)
    assert reply["code"] == "too_large" and str(size) in reply["message"]
    assert_still_serving(sock)


def test_sync_sends_text_only_for_hashes_the_worker_lacks(worker):
    sock = greeted(worker)
    text = "def add(a, b):\n    return a + b\n"
    reply = ask(sock, protocol.sync(2, add=[{"path": "util.py", "hash": H_A}]))
    assert reply["op"] == "synced" and reply["missing"] == [H_A] and reply["applied"] == 0
    reply = ask(sock, protocol.sync(3, add=[{"path": "util.py", "hash": H_A, "text": text}]))
    assert reply["missing"] == [] and reply["applied"] == 1 and reply["prefilled_tokens"] > 0
    # the same content under a second path needs no text: the worker already holds it
    reply = ask(sock, protocol.sync(4, add=[{"path": "copy.py", "hash": H_A}]))
    assert reply["missing"] == [] and reply["applied"] == 1
    reply = ask(sock, protocol.sync(5, add=[{"path": "x.py", "hash": H_A, "text": "not the hashed text"}]))
    assert reply["code"] == "bad_frame" and "hash" in reply["message"]
    assert ask(sock, protocol.sync(6, drop=["copy.py"]))["op"] == "synced"


def test_unknown_segment(worker):
    sock = greeted(worker)
    reply = ask(sock, protocol.sync(2, drop=["never/synced.py"]))
    assert reply["code"] == "unknown_segment" and reply["data"]["paths"] == ["never/synced.py"]
    reply = ask(sock, protocol.complete(3, path="a.py", prefix="x", suffix="", require=["0" * 64]))
    assert reply["code"] == "unknown_segment" and reply["data"]["hashes"] == ["0" * 64]
    assert_still_serving(sock)


def test_cancel_of_an_unknown_request(worker):
    sock = greeted(worker)
    reply = ask(sock, protocol.cancel(2, 12345))
    assert (reply["code"], reply["id"], reply["data"]["request"]) == ("unknown_request", 2, 12345)
    assert_still_serving(sock)


def test_complete_streams_chunks_then_done(worker):
    sock = greeted(worker)
    protocol.write_frame(sock, protocol.complete(2, path="main.py", prefix="def main():\n    ", suffix="\n",
                                                 max_tokens=8))
    pieces, frame = [], protocol.read_frame(sock)
    while frame["op"] == "chunk":
        pieces.append(frame["text"])
        frame = protocol.read_frame(sock)
    assert frame["op"] == "done" and frame["id"] == 2, frame
    assert pieces and "".join(pieces).strip()
    assert frame["finish_reason"] == "length" and frame["timings"]["total_ms"] > 0


def test_cancel_stops_a_running_completion(worker):
    sock = greeted(worker)
    protocol.write_frame(sock, protocol.complete(2, path="main.py", prefix="x = ", suffix="", max_tokens=4000))
    first = protocol.read_frame(sock)
    assert first["op"] == "chunk"
    protocol.write_frame(sock, protocol.cancel(3, 2))
    started, frames = time.monotonic(), []
    while True:
        frame = protocol.read_frame(sock)
        frames.append(frame)
        if frame["op"] in ("error", "done") and frame["id"] == 2:
            break
    assert frame["code"] == "cancelled", frame
    assert time.monotonic() - started < 5
    assert any(f["op"] == "ok" and f["id"] == 3 for f in frames)
    assert_still_serving(sock)


def test_score_gives_a_logprob_per_token_of_the_span(worker):
    sock = greeted(worker)
    text = "value = helper(3)\n"
    reply = ask(sock, protocol.score(2, path="s.py", text=text, start=0, end=len(text)))
    assert reply["op"] == "scored" and reply["tokens"]
    assert all(lp <= 0 and 0 <= start < len(text) for _, start, lp in reply["tokens"])


def test_killed_worker_ends_the_stream_with_a_closed_connection(tiny_model, tmp_path):
    os.chmod(tmp_path, 0o700)
    process = WorkerProcess(["--model", str(tiny_model), "--device", "cpu", "--socket", str(tmp_path / "k.sock")])
    try:
        sock = greeted(process)
        sock.settimeout(10)
        protocol.write_frame(sock, protocol.complete(2, path="m.py", prefix="x = ", suffix="", max_tokens=4000))
        assert protocol.read_frame(sock)["op"] == "chunk"
        process.proc.kill()
        with pytest.raises(protocol.ConnectionClosed):
            while True:
                protocol.read_frame(sock)
    finally:
        process.stop()


async def _complete_through_client(address: str, token_file) -> str:
    client = WorkerClient(WorkerSettings(address=address, token_file=str(token_file)))
    client.start()
    try:
        assert await client.wait_ready(30)
        stream = await client.complete(path="app.py", prefix="value = ", suffix="\n", max_tokens=6)
        return await stream.text()
    finally:
        await client.stop()  # a configured worker is left running


def test_tcp_needs_the_token_and_shutdown_ends_the_worker(tiny_model, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    process = WorkerProcess(["--model", str(tiny_model), "--device", "cpu", "--listen", "127.0.0.1:0",
                             "--token-file", str(token_file)])
    try:
        assert process.address.startswith("tcp:127.0.0.1:")
        for token in (None, "wrong"):
            sock = process.connect()
            reply = ask(sock, protocol.hello(1, token=token))
            assert reply["code"] == "auth"
            assert sock.recv(1) == b""  # and the worker hangs up
        sock = greeted(process, token="s3cret-token")
        assert_still_serving(sock)
        # the server's client, configured with msa.worker.address and tokenFile, completes through it
        assert asyncio.run(_complete_through_client(process.address, token_file)).strip()
        assert ask(sock, protocol.simple("shutdown", 2)) == {"op": "ok", "id": 2}
        assert process.proc.wait(timeout=15) == 0
    finally:
        process.stop()


def test_tcp_without_a_token_file_does_not_start():
    from tests.worker.conftest import worker_env
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "lsp", "worker", "--listen", "127.0.0.1:0"], capture_output=True,
                            text=True, timeout=60, env=worker_env())
    assert result.returncode != 0 and "--token-file" in result.stderr

