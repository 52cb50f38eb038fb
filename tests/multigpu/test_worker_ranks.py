"""`msa-lsp worker --devices cpu,cpu` (and under torchrun) over its real socket: one worker to the client, per-rank
cache figures in stats, and a rank that dies or freezes gives an error (never a hang) and ends the worker for a clean
restart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from inference import protocol
from tests.worker.conftest import REPO, WorkerProcess, greeted, worker_env

FILES = {f"pkg/mod{i}.py": f"import os\n\ndef f{i}(x):\n    return x * {i}\n" * 30 for i in range(4)}


def _start(model, tmp_path, rank_timeout: float) -> WorkerProcess:
    sock_dir = tmp_path / "sock"
    sock_dir.mkdir(mode=0o700)
    worker = WorkerProcess(["--model", str(model), "--devices", "cpu,cpu", "--rank-timeout", str(rank_timeout),
                            "--socket", str(sock_dir / "w.sock")], timeout=120)
    threading.Thread(target=lambda: [worker.lines.append(l.decode(errors="replace").rstrip())
                                     for l in worker.proc.stderr], daemon=True).start()  # keep the pipe drained
    return worker


def _sync_and_stats(sock) -> dict:
    add = [{"path": p, "hash": protocol.content_hash(t), "text": t} for p, t in FILES.items()]
    protocol.write_frame(sock, protocol.sync(2, add=add))
    synced = protocol.read_frame(sock)
    assert synced["op"] == "synced" and synced["applied"] == len(FILES), synced
    assert [r["rank"] for r in synced["ranks"]] == [0, 1] and all(r["segments"] for r in synced["ranks"])
    protocol.write_frame(sock, protocol.simple("stats", 3))
    stats = protocol.read_frame(sock)["stats"]
    assert [r["rank"] for r in stats["ranks"]] == [0, 1]
    assert sum(r["segments"] for r in stats["ranks"]) == stats["segments"] == synced["segments"]
    return stats


def _complete(sock, request_id: int) -> dict:
    protocol.write_frame(sock, protocol.complete(request_id, path="pkg/mod0.py", prefix="def g(x):\n    ",
                                                 suffix="\n", max_tokens=6))
    frame = protocol.read_frame(sock)
    while frame["op"] == "chunk":
        frame = protocol.read_frame(sock)
    return frame


def _exit_code(worker: WorkerProcess, within: float):
    try:
        return worker.proc.wait(timeout=within)
    except Exception:
        return None


def test_frozen_rank_gives_an_error_frame_then_the_worker_exits(tiny_models, tmp_path):
    worker = _start(tiny_models["qwen2"], tmp_path, rank_timeout=4)
    follower = None
    try:
        sock = greeted(worker)
        assert _complete(sock, 1)["op"] == "done"
        stats = _sync_and_stats(sock)
        follower = stats["ranks"][1]["pid"]
        assert follower != worker.proc.pid
        os.kill(follower, signal.SIGSTOP)
        started = time.monotonic()
        frame = _complete(sock, 4)
        assert frame["op"] == "error" and frame["code"] == "internal", frame
        assert "rank" in frame["message"]
        assert time.monotonic() - started < 30
        assert _exit_code(worker, 20) == 1  # ends so that the server's client starts a fresh one
    finally:
        if follower:
            try:
                os.kill(follower, signal.SIGKILL)
            except ProcessLookupError:
                pass
        worker.stop()


def test_killed_rank_ends_the_worker_without_a_hang(tiny_models, tmp_path):
    worker = _start(tiny_models["qwen2"], tmp_path, rank_timeout=4)
    try:
        sock = greeted(worker)
        follower = _sync_and_stats(sock)["ranks"][1]["pid"]
        os.kill(follower, signal.SIGKILL)
        try:  # the worker may already be gone: then the connection closes
            frame = _complete(sock, 5)
            assert frame["op"] == "error", frame
        except (protocol.ConnectionClosed, OSError):
            pass
        assert _exit_code(worker, 20) == 1
        assert any("rank 1" in line for line in worker.lines)
    finally:
        worker.stop()


def test_torchrun_launch_is_one_worker(tiny_models, tmp_path):
    """The same worker under torchrun: rank 0 serves the socket, rank 1 follows; shutdown ends both cleanly."""
    sock_dir = tmp_path / "sock"
    sock_dir.mkdir(mode=0o700)
    env = dict(worker_env(), OMP_NUM_THREADS="1", MSA_WORKER_LOG="WARNING")
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "lsp",
                             "worker", "--model", str(tiny_models["qwen2"]), "--device", "cpu",
                             "--socket", str(sock_dir / "w.sock")],
                            env=env, cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        for raw in proc.stderr:
            if b"ready on " in raw or time.monotonic() > deadline:
                break
        threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(sock_dir / "w.sock"))
        sock.settimeout(60)
        protocol.write_frame(sock, protocol.hello(1))
        assert protocol.read_frame(sock)["op"] == "hello"
        stats = _sync_and_stats(sock)
        assert stats["ranks"][1]["pid"] != stats["ranks"][0]["pid"]
        assert _complete(sock, 4)["op"] == "done"
        protocol.write_frame(sock, protocol.simple("shutdown", 5))
        assert protocol.read_frame(sock)["op"] == "ok"
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
