"""One handshaken socket to the inference worker: frames routed to waiting requests by id, completion streams.

Non-job: spawning, restarting or choosing the worker, and the repository mirror (lsp.worker_client does those).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from dataclasses import dataclass
from typing import AsyncIterator

import inference.protocol as protocol

log = logging.getLogger(__name__)


class WorkerUnavailable(Exception):
    """No worker is connected, or it went away while a request was in flight."""


class WorkerStartFailed(WorkerUnavailable):
    """The spawned worker exited before it was ready (bad model, bad setup): retrying will not help."""


class WorkerError(Exception):
    """The worker answered with an error frame."""

    def __init__(self, code: str, message: str, data=None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.data = code, message, data


class WorkerConnection:
    """One handshaken socket to a worker; routes reply frames to waiting requests by id."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.ids = itertools.count(1)
        self.waiting: dict[int, asyncio.Queue] = {}
        self.closed = asyncio.Event()
        self.close_reason = ""
        self._pump_task: asyncio.Task | None = None

    async def handshake(self, token: str | None) -> dict:
        request_id = next(self.ids)
        await protocol.write_frame_async(self.writer, protocol.hello(request_id, token=token, client="msa-lsp"))
        reply = await protocol.read_frame_async(self.reader)
        if reply.get("op") == "error":
            raise WorkerError(reply.get("code", "internal"), reply.get("message", ""), reply.get("data"))
        if reply.get("op") != "hello" or reply.get("version") != protocol.PROTOCOL_VERSION:
            raise WorkerError("bad_version", f"unexpected handshake reply {reply!r:.200}")
        self._pump_task = asyncio.create_task(self._pump())
        return reply

    async def _pump(self) -> None:
        try:
            while True:
                frame = await protocol.read_frame_async(self.reader)
                queue = self.waiting.get(frame.get("id"))
                if queue is not None:
                    queue.put_nowait(frame)
                elif frame.get("op") == "error":  # e.g. a cancel that raced the request's end
                    log.debug("worker error without a waiting request: %s", frame.get("message"))
        except (protocol.ConnectionClosed, protocol.ProtocolError, OSError) as exc:
            self.close_reason = str(exc) or type(exc).__name__
        finally:
            self.closed.set()
            for queue in self.waiting.values():
                queue.put_nowait(None)

    def open_request(self, frame: dict) -> asyncio.Queue:
        if self.closed.is_set():
            raise WorkerUnavailable(f"worker connection closed: {self.close_reason}")
        queue: asyncio.Queue = asyncio.Queue()
        self.waiting[frame["id"]] = queue
        return queue

    async def send(self, frame: dict) -> None:
        try:
            await protocol.write_frame_async(self.writer, frame)
        except (protocol.ConnectionClosed, OSError) as exc:
            raise WorkerUnavailable(f"worker connection lost: {exc}") from None

    async def next_reply(self, queue: asyncio.Queue) -> dict:
        frame = await queue.get()
        if frame is None:
            raise WorkerUnavailable(f"worker connection lost: {self.close_reason or 'closed'}")
        if frame.get("op") == "error":
            raise WorkerError(frame.get("code", "internal"), frame.get("message", ""), frame.get("data"))
        return frame

    async def request(self, frame: dict) -> dict:
        queue = self.open_request(frame)
        try:
            await self.send(frame)
            return await self.next_reply(queue)
        finally:
            self.waiting.pop(frame["id"], None)

    async def close(self) -> None:
        if self._pump_task:
            self._pump_task.cancel()
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
        self.closed.set()


@dataclass
class CompletionStream:
    """Pieces of one completion as they arrive; `done` holds the final frame (timings, cache) afterwards.

    Leaving the iteration early (break, task cancelled) cancels the request in the worker. `cancel()` from
    elsewhere asks the worker to stop; the iteration then ends with WorkerError("cancelled").
    """

    connection: WorkerConnection
    request_id: int
    queue: asyncio.Queue
    done: dict | None = None
    _cancel_sent: bool = False

    async def __aiter__(self) -> AsyncIterator[str]:
        try:
            while True:
                frame = await self.connection.next_reply(self.queue)
                if frame["op"] == "chunk":
                    yield frame["text"]
                elif frame["op"] == "done":
                    self.done = frame
                    return
        finally:
            self.connection.waiting.pop(self.request_id, None)
            if self.done is None:
                await self.cancel()

    async def text(self) -> str:
        return "".join([piece async for piece in self])

    async def cancel(self) -> None:
        """Ask the worker to stop this request (it stops within one decode step); never raises."""
        if self._cancel_sent or self.done is not None:
            return
        self._cancel_sent = True
        with contextlib.suppress(Exception):
            frame = protocol.cancel(next(self.connection.ids), self.request_id)
            await asyncio.shield(self.connection.send(frame))
