"""The language server's link to the inference worker: spawn or connect, handshake, restart, cache sync, requests.

`WorkerClient` keeps one worker alive (spawning `python -m lsp worker` or connecting to msa.worker.address),
restarts it with exponential backoff when it dies, mirrors the repository into the worker's cache by content hash
(only files whose text the worker lacks cross the socket), and offers request / stream / cancel calls. Its state
("off", "starting", "ready", "restarting", "error") is reported through a callback so the server can show it.

Non-job: no LSP types (the server maps state and fill progress to LSP), no prompt building (lsp.completion), no
frame routing (lsp.worker_connection), no model code (it talks to the worker only through inference.protocol).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from typing import Callable

import inference.protocol as protocol
from lsp.worker_connection import (CompletionStream, WorkerConnection, WorkerError, WorkerStartFailed,
                                   WorkerUnavailable)

log = logging.getLogger(__name__)
READY_LINE = re.compile(r"ready on (\S+)")
BATCH_FILES, BATCH_BYTES = 16, 64 << 10  # small rounds: a completion waits for at most one of them
MAX_TEXT_BYTES = protocol.MAX_FRAME_BYTES // 2
STABLE_S = 30.0  # a worker that dies sooner than this after start keeps the backoff growing
FILL_REPORT_MIN = 10  # after the first fill, rounds this small (edits) show no progress


@dataclass
class WorkerSettings:
    model: str = ""
    address: str = ""  # "" spawns a local worker; "unix:/path" or "tcp:host:port"
    token_file: str = ""
    command: tuple[str, ...] = ()
    devices: str = ""
    cache_dir: str = ""
    cache_max_gib: float = 20.0
    layout: str = "parallel"
    attention: str = "sparse"
    member_names: bool = True  # after `module.`, a name the repository's module defines
    repo_name: str = "repo"
    ready_timeout_s: float = 300.0
    max_backoff_s: float = 30.0


class WorkerClient:
    """Supervises the worker and mirrors the repository into its cache."""

    def __init__(self, settings: WorkerSettings, *, on_change: Callable[["WorkerClient"], None] | None = None,
                 on_fill: Callable[[int, int], None] | None = None):
        self.settings = settings
        self.on_change = on_change or (lambda client: None)
        self.on_fill = on_fill or (lambda done, total: None)
        self.state, self.message, self.model = "off", "", ""
        self.pid: int | None = None
        self.capabilities: tuple[str, ...] = ()  # from the worker's hello (e.g. "generate", "reasoning")
        self.cache = {"segments": 0, "tokens": 0, "filled": 0}
        self.texts_sent = 0  # file texts that crossed the socket (hash-only entries the worker knew do not count)
        self._connection: WorkerConnection | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._files: dict[str, tuple[str, str]] = {}  # desired: path -> (hash, text)
        self._synced: dict[str, str] = {}  # what the connected worker holds: path -> hash
        self._dirty, self._ready = asyncio.Event(), asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task] = []
        self._socket_dir: str | None = None


    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._supervise()), asyncio.create_task(self._sync_loop())]

    async def stop(self) -> None:
        self._stopping = True
        connection = self._connection
        if self._process is not None and connection is not None and not connection.closed.is_set():
            # only a worker this client spawned is shut down; a configured (shared) one keeps running
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.request(protocol.simple("shutdown", next(connection.ids))), 2)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._end_process()
        if self._socket_dir:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None
        self._set_state("off", "stopped")

    async def restart(self) -> None:
        """Stop the worker and bring up a fresh one (the "restart worker" command); the files are synced again."""
        await self.stop()
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
        self._ready.clear()
        self._synced.clear()
        self._stopping = False
        self.start()

    async def wait_ready(self, timeout: float) -> bool:
        """True once ready; False after `timeout` or as soon as the worker failed for good (state "error")."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self._ready.is_set() and self._tasks and not self._tasks[0].done():
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.05)
        return self._ready.is_set()

    def _set_state(self, state: str, message: str = "") -> None:
        self.state, self.message = state, message
        log.info("worker %s%s", state, f": {message}" if message else "")
        self.on_change(self)

    async def _supervise(self) -> None:
        failures = 0
        while not self._stopping:
            self._set_state("starting" if failures == 0 else "restarting", self.message if failures else "")
            try:
                await self._bring_up()
                up_since = asyncio.get_running_loop().time()
                await self._connection.closed.wait()
                if asyncio.get_running_loop().time() - up_since > STABLE_S:
                    failures = 0  # it ran a good while: a fresh crash restarts fast again
                reason = f"worker connection closed: {self._connection.close_reason or 'worker exited'}"
            except asyncio.CancelledError:
                raise
            except WorkerStartFailed as exc:
                await self._end_process()
                self._set_state("error", str(exc))
                return  # a new client (new settings) tries again
            except Exception as exc:
                reason = str(exc) or type(exc).__name__
            self._ready.clear()
            self._synced.clear()
            if self._connection is not None:
                await self._connection.close()
                self._connection = None
            await self._end_process()
            if self._stopping:
                return
            failures += 1
            delay = min(0.5 * 2 ** (failures - 1), self.settings.max_backoff_s)
            self._set_state("error" if failures >= 3 else "restarting", f"{reason}; retrying in {delay:.1f}s")
            await asyncio.sleep(delay)

    async def _bring_up(self) -> None:
        address, token = self.settings.address, None
        if self.settings.token_file:
            with open(os.path.expanduser(self.settings.token_file), encoding="utf-8") as handle:
                token = handle.read().strip()
        if not address:
            address = await self._spawn()
        if address.startswith("unix:"):
            reader, writer = await asyncio.open_unix_connection(address[5:], limit=protocol.MAX_FRAME_BYTES + 8)
        elif address.startswith("tcp:"):
            host, _, port = address[4:].rpartition(":")
            reader, writer = await asyncio.open_connection(host.strip("[]"), int(port),
                                                           limit=protocol.MAX_FRAME_BYTES + 8)
        else:
            raise ValueError(f"msa.worker.address must start with unix: or tcp:, got {address!r}")
        connection = WorkerConnection(reader, writer)
        try:
            hello = await asyncio.wait_for(connection.handshake(token), 30)
        except BaseException:
            await connection.close()
            raise
        self._connection = connection
        model = hello.get("model") or {}
        self.model = os.path.basename(str(model.get("model") or self.settings.model or "bundled").rstrip("/"))
        self.pid = hello.get("pid")
        self.capabilities = tuple(hello.get("capabilities") or ())
        self._ready.set()
        self._set_state("ready", f"worker pid {self.pid}")
        self._dirty.set()

    def _worker_command(self, socket_path: str) -> list[str]:
        base = list(self.settings.command) or [sys.executable, "-m", "lsp", "worker"]
        args = ["--socket", socket_path, "--exit-with-stdin", "--layout", self.settings.layout,
                "--attention", self.settings.attention, "--repo-name", self.settings.repo_name]
        if not self.settings.member_names:
            args += ["--member-names", "off"]
        if self.settings.model:
            args += ["--model", os.path.expanduser(self.settings.model)]
        devices = [d.strip() for d in self.settings.devices.split(",") if d.strip()]
        if len(devices) > 1:  # context parallel; CUDA_VISIBLE_DEVICES renumbers the GPUs from 0
            args += ["--devices", ",".join(d if d == "cpu" else str(i) for i, d in enumerate(devices))]
        if self.settings.cache_dir:
            args += ["--cache-dir", os.path.expanduser(self.settings.cache_dir),
                     "--cache-max-gib", str(self.settings.cache_max_gib)]
        return base + args

    async def _spawn(self) -> str:
        if self._socket_dir is None:
            self._socket_dir = tempfile.mkdtemp(prefix="msa-lsp-client-")  # mkdtemp makes it 0700
        socket_path = os.path.join(self._socket_dir, "worker.sock")
        env = dict(os.environ)
        if self.settings.devices:
            env["CUDA_VISIBLE_DEVICES"] = self.settings.devices
        command = self._worker_command(socket_path)
        log.info("starting worker: %s", " ".join(command))
        self._process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, env=env, limit=1 << 20)
        self.pid = self._process.pid
        try:
            return await asyncio.wait_for(self._read_until_ready(), self.settings.ready_timeout_s)
        except asyncio.TimeoutError:
            raise WorkerUnavailable(f"worker not ready after {self.settings.ready_timeout_s:.0f}s") from None

    async def _read_until_ready(self) -> str:
        stream, tail = self._process.stderr, []
        while True:
            raw = await stream.readline()
            if not raw:
                code = await self._process.wait()
                last = " | ".join(tail[-3:]) or "no output"
                raise WorkerStartFailed(f"worker exited with status {code} before it was ready: {last}")
            line = raw.decode("utf-8", "replace").rstrip()
            log.info("worker: %s", line)
            tail.append(line)
            found = READY_LINE.search(line)
            if found:
                self._tasks.append(asyncio.create_task(self._forward_log(stream)))
                return found.group(1)

    async def _forward_log(self, stream: asyncio.StreamReader) -> None:
        while raw := await stream.readline():
            log.info("worker: %s", raw.decode("utf-8", "replace").rstrip())

    async def _end_process(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.stdin.close()
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 5)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


    def set_files(self, files: dict[str, str]) -> None:
        """The whole repository as the worker should hold it (relative path -> text)."""
        self._files = {path: (protocol.content_hash(text), text) for path, text in files.items() if _fits(path, text)}
        self._dirty.set()

    def update_file(self, path: str, text: str) -> None:
        if not _fits(path, text):
            self.remove_file(path)
            return
        digest = protocol.content_hash(text)
        if self._files.get(path, ("",))[0] != digest:
            self._files[path] = (digest, text)
            self._dirty.set()

    def remove_file(self, path: str) -> None:
        if self._files.pop(path, None) is not None:
            self._dirty.set()

    def hashes(self) -> list[str]:
        return [digest for digest, _ in self._files.values()]

    def is_synced(self) -> bool:
        return self._ready.is_set() and not self._dirty.is_set() and self._synced == {
            path: digest for path, (digest, _) in self._files.items()}

    async def wait_synced(self, timeout: float) -> bool:
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.is_synced():
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def _sync_loop(self) -> None:
        while True:
            await self._dirty.wait()
            await self._ready.wait()
            await asyncio.sleep(0.05)  # coalesce bursts of edits
            self._dirty.clear()
            try:
                await self._sync_once()
            except asyncio.CancelledError:
                raise
            except (WorkerUnavailable, WorkerError, protocol.ProtocolError, OSError) as exc:
                log.warning("cache sync stopped: %s", exc)
                if isinstance(exc, (WorkerError, protocol.ProtocolError)):
                    self._synced.clear()  # resend everything next time rather than guess
                    await asyncio.sleep(1)
                self._dirty.set()
                await asyncio.sleep(0.2)

    async def _sync_once(self) -> None:
        connection = self._connection
        if connection is None:
            raise WorkerUnavailable("no worker")
        files = dict(self._files)  # edits arriving meanwhile mark the mirror dirty for the next round
        wanted = {path: digest for path, (digest, _) in files.items()}
        drop = [path for path in self._synced if path not in wanted]
        changed = [path for path, digest in wanted.items() if self._synced.get(path) != digest]
        if not drop and not changed:
            return
        total, done = len(changed), 0
        report = self.on_fill if not self._synced or total >= FILL_REPORT_MIN else (lambda done, total: None)
        report(0, total)
        if drop:
            reply = await connection.request(protocol.sync(next(connection.ids), drop=drop))
            for path in drop:
                self._synced.pop(path, None)
            self._note_cache(reply)
        for batch in _batches(changed, files):
            entries = [{"path": path, "hash": files[path][0]} for path in batch]
            reply = await connection.request(protocol.sync(next(connection.ids), add=entries))
            missing = set(reply["missing"])
            if missing:
                with_text = [dict(entry, text=files[entry["path"]][1]) for entry in entries
                             if entry["hash"] in missing]
                reply = await connection.request(protocol.sync(next(connection.ids), add=with_text))
                self.texts_sent += len(with_text)
            for entry in entries:
                self._synced[entry["path"]] = entry["hash"]
            done += len(batch)
            self._note_cache(reply)
            report(done, total)

    def _note_cache(self, reply: dict) -> None:
        self.cache = {"segments": int(reply.get("segments", 0)), "tokens": int(reply.get("tokens", 0)),
                      "filled": len(self._synced)}
        if reply.get("ranks"):  # a context-parallel worker: each rank's share
            self.cache["ranks"] = [{"rank": int(r["rank"]), "segments": int(r["segments"]), "tokens": int(r["tokens"])}
                                   for r in reply["ranks"]]
        self.on_change(self)


    def _live(self) -> WorkerConnection:
        if self._connection is None or self._connection.closed.is_set():
            raise WorkerUnavailable(f"worker is {self.state}" + (f" ({self.message})" if self.message else ""))
        return self._connection

    async def complete(self, *, path: str, prefix: str, suffix: str, max_tokens: int = 64,
                       temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0, stop: list[str] = (),
                       seed: int | None = None) -> CompletionStream:
        connection = self._live()
        frame = protocol.complete(next(connection.ids), path=path, prefix=prefix, suffix=suffix,
                                  max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                                  stop=list(stop), seed=seed)
        return await _open_stream(connection, frame)

    async def generate(self, **fields) -> CompletionStream:
        """A model-made edit (protocol.generate's fields); its done frame says whether the model reasoned."""
        connection = self._live()
        return await _open_stream(connection, protocol.generate(next(connection.ids), **fields))

    async def score(self, *, path: str, text: str, start: int, end: int) -> list[tuple[str, int, float]]:
        connection = self._live()
        reply = await connection.request(protocol.score(next(connection.ids), path=path, text=text, start=start,
                                                        end=end))
        return [(t, int(s), float(lp)) for t, s, lp in reply["tokens"]]

    async def stats(self) -> dict:
        connection = self._live()
        return (await connection.request(protocol.simple("stats", next(connection.ids))))["stats"]


async def _open_stream(connection: WorkerConnection, frame: dict) -> CompletionStream:
    queue = connection.open_request(frame)
    try:
        await connection.send(frame)
    except BaseException:
        connection.waiting.pop(frame["id"], None)
        raise
    return CompletionStream(connection, frame["id"], queue)


def _fits(path: str, text: str) -> bool:
    """Whether one file's text fits in a sync frame; larger files stay out of the cache (logged)."""
    if len(text) * 4 < MAX_TEXT_BYTES or len(text.encode("utf-8", "surrogatepass")) < MAX_TEXT_BYTES:
        return True
    log.warning("%s is too large for the model's cache (over %d bytes); left out", path, MAX_TEXT_BYTES)
    return False


def _batches(paths: list[str], files: dict[str, tuple[str, str]]):
    batch, size = [], 0
    for path in paths:
        length = len(files[path][1])
        if batch and (len(batch) >= BATCH_FILES or size + length > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(path)
        size += length
    if batch:
        yield batch
