"""The server's worker client against a real worker: hash-based cache sync, restart after a kill mid-stream."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from lsp.worker_client import WorkerClient, WorkerSettings
from lsp.worker_connection import WorkerUnavailable

FILES = {"util.py": "def helper(x):\n    return x * 2\n", "app.py": "from util import helper\nvalue = helper(3)\n"}


async def _text(client: WorkerClient) -> str:
    stream = await client.complete(path="app.py", prefix="value = ", suffix="\n", max_tokens=6)
    return await stream.text()


async def stream_rest(pieces) -> None:
    async for _ in pieces:
        pass


async def test_only_changed_files_cross_and_a_killed_worker_is_replaced(tiny_model):
    states = []
    client = WorkerClient(WorkerSettings(model=str(tiny_model)), on_change=lambda c: states.append(c.state))
    client.start()
    try:
        assert await client.wait_ready(60)
        client.set_files(FILES)
        assert await client.wait_synced(30)
        assert client.texts_sent == 2 and client.cache["filled"] == 2 and client.cache["segments"] == 2
        client.update_file("app.py", FILES["app.py"])  # unchanged text: nothing to send
        client.update_file("util.py", FILES["util.py"] + "\n\ndef other():\n    pass\n")
        assert await client.wait_synced(30)
        assert client.texts_sent == 3
        client.remove_file("app.py")
        assert await client.wait_synced(30)
        assert client.cache["segments"] == 1
        assert (await _text(client)).strip()

        first_pid = client.pid
        stream = await client.complete(path="app.py", prefix="value = ", suffix="\n", max_tokens=1500)
        pieces = aiter(stream)
        assert await anext(pieces)
        os.kill(first_pid, signal.SIGKILL)
        with pytest.raises(WorkerUnavailable):  # the stream ends with a clear error, it does not hang
            await asyncio.wait_for(stream_rest(pieces), 10)
        for _ in range(200):
            if "restarting" in states and client.state == "ready":
                break
            await asyncio.sleep(0.05)
        assert client.state == "ready" and client.pid != first_pid
        assert await client.wait_synced(30)  # the new worker got the repository again
        assert client.texts_sent == 4 and client.cache["segments"] == 1
        assert (await _text(client)).strip()
    finally:
        await client.stop()
    assert client.state == "off"



def test_the_member_names_setting_reaches_the_spawned_worker():
    on = WorkerClient(WorkerSettings())._worker_command("/tmp/w.sock")
    off = WorkerClient(WorkerSettings(member_names=False))._worker_command("/tmp/w.sock")
    assert "--member-names" not in on and off[off.index("--member-names") + 1] == "off"
