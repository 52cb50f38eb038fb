"""`msa-lsp worker`: serves one Engine to language-server clients over the frames of inference.protocol.

A Unix socket in a private (0700) directory by default; TCP (`--listen HOST:PORT --token-file F`, loopback unless a
host is given) only with a shared token checked in hello. One reader thread per connection turns frames into jobs;
a single scheduler thread runs one engine job at a time (completions and scores before cache syncs) and a cancel
stops a decode within one step through the engine's ``should_stop``. Broken frames get error frames and the
connection keeps going.

Non-job: no model code lives here (inference.engine), nothing about LSP or editors.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import os
import queue
import signal
import socket
import stat
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from inference import chat, protocol

log = logging.getLogger("msa.worker")
PRIORITY = {"complete": 0, "score": 0, "generate": 0, "stats": 0, "sync": 1}
GENERATE_LOG = 64  # recent generate requests kept for stats


def default_socket_path() -> str:
    """A fresh socket path in a private directory under $XDG_RUNTIME_DIR (else the system temp dir)."""
    base = os.environ.get("XDG_RUNTIME_DIR") or None
    if base and not os.access(base, os.W_OK):
        base = None
    return os.path.join(tempfile.mkdtemp(prefix="msa-lsp-", dir=base), "worker.sock")


def _prepare_socket_dir(path: str) -> None:
    """Create the socket's directory 0700, or refuse one that other users can enter."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    info = os.stat(directory)
    if info.st_uid != os.getuid() or info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SystemExit(f"msa-lsp worker: {directory} must be a private (0700) directory owned by you")
    if os.path.exists(path):
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            raise SystemExit(f"msa-lsp worker: {path} exists and is not a socket")
        os.unlink(path)


@dataclass
class Job:
    connection: "Connection"
    request: dict
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def key(self):
        return (id(self.connection), self.request["id"])


class Connection:
    """One client: frames in on a reader thread, frames out under a lock from any thread."""

    _ids = itertools.count(1)

    def __init__(self, sock: socket.socket, worker: "Worker", token: str | None):
        self.sock, self.worker, self.token = sock, worker, token
        self.number = next(self._ids)
        self.greeted = False
        self.alive = True
        self._write_lock = threading.Lock()

    def send(self, message: dict) -> bool:
        with self._write_lock:
            if not self.alive:
                return False
            try:
                protocol.write_frame(self.sock, message, self.worker.max_frame_bytes)
                return True
            except OSError:
                self.alive = False
                return False

    def serve(self) -> None:
        try:
            while self.alive:
                try:
                    message = protocol.read_frame(self.sock, self.worker.max_frame_bytes)
                except protocol.FrameTooLarge as exc:
                    self.send(protocol.error_from(exc))
                    protocol.skip_body(self.sock, exc.length)
                    continue
                except protocol.ProtocolError as exc:
                    self.send(protocol.error_from(exc))
                    continue
                self._dispatch(message)
        except (protocol.ConnectionClosed, OSError):
            pass
        finally:
            self.alive = False
            self.worker.forget_connection(self)
            try:
                self.sock.close()
            except OSError:
                pass

    def _dispatch(self, message: dict) -> None:
        try:
            protocol.validate_request(message)
        except protocol.ProtocolError as exc:
            self.send(protocol.error_from(exc))
            return
        op, request_id = message["op"], message["id"]
        if op == "hello":
            self._hello(message)
        elif not self.greeted:
            self.send(protocol.error(request_id, "auth", "send hello (with the right version and token) first"))
        elif op == "cancel":
            self.worker.cancel(self, message)
        elif op == "shutdown":
            self.send({"op": "ok", "id": request_id})
            self.worker.shutdown(f"shutdown requested by connection {self.number}")
        else:
            self.worker.submit(Job(self, message))

    def _hello(self, message: dict) -> None:
        request_id = message["id"]
        if self.token is not None:
            given = message.get("token")
            if not isinstance(given, str) or not hmac.compare_digest(given.encode(), self.token.encode()):
                self.send(protocol.error(request_id, "auth", "missing or wrong token"))
                self.alive = False
                return
        if message["version"] != protocol.PROTOCOL_VERSION:
            self.send(protocol.error(
                request_id, "bad_version",
                f"worker speaks protocol {protocol.PROTOCOL_VERSION}, client sent {message['version']}",
                {"version": protocol.PROTOCOL_VERSION},
            ))
            return
        self.greeted = True
        extra = ["reasoning"] if self.worker.reasoning_template is not None else []
        self.send(protocol.hello_reply(request_id, model=self.worker.model_info, pid=os.getpid(), extra=extra))


class Worker:
    """Holds the engine, the segment table (path -> hash, hash -> text) and the job queue."""

    def __init__(self, engine, *, max_frame_bytes: int = protocol.MAX_FRAME_BYTES):
        self.engine = engine
        self.model_info = _plain(engine.info())
        self.max_frame_bytes = max_frame_bytes
        self.held: dict[str, str] = {}  # path -> content hash now in the engine
        self.texts: dict[str, str] = {}  # content hash -> text, for every held hash
        self.jobs: queue.PriorityQueue = queue.PriorityQueue()
        self.active: dict[tuple, Job] = {}
        self._lock = threading.Lock()
        self._order = itertools.count()
        self.stopping = threading.Event()
        self.served = 0
        self.cancelled = 0
        self.failed: str | None = None  # set when the engine broke for good (the process then exits 1)
        model_dir = getattr(engine, "model_dir", None)
        self.reasoning_template, self.no_reasoning_reason = (
            chat.find_reasoning_template(model_dir) if model_dir else (None, "the engine names no model directory"))
        self.model_info["reasoning"] = self.reasoning_template is not None
        self.generate_log: deque = deque(maxlen=GENERATE_LOG)  # what generate requests asked and got

    # -------------------------------------------------------------------------------- called by readers

    def submit(self, job: Job) -> None:
        with self._lock:
            if job.key in self.active:
                job.connection.send(protocol.error(job.request["id"], "bad_frame", "request id already in flight"))
                return
            self.active[job.key] = job
        self.jobs.put((PRIORITY[job.request["op"]], next(self._order), job))

    def cancel(self, connection: Connection, message: dict) -> None:
        target = message["request"]
        with self._lock:
            job = self.active.get((id(connection), target))
        if job is None:
            connection.send(protocol.error(message["id"], "unknown_request", f"no request {target} is running or "
                                           "queued on this connection", {"request": target}))
            return
        job.stop.set()
        connection.send({"op": "ok", "id": message["id"]})

    def forget_connection(self, connection: Connection) -> None:
        with self._lock:
            for job in self.active.values():
                if job.connection is connection:
                    job.stop.set()

    def shutdown(self, reason: str) -> None:
        log.info("stopping: %s", reason)
        self.stopping.set()
        self.jobs.put((-1, -1, None))

    # -------------------------------------------------------------------------------- scheduler thread

    def run_jobs(self) -> None:
        while not self.stopping.is_set():
            _, _, job = self.jobs.get()
            if job is None:
                break
            try:
                if job.stop.is_set():
                    raise protocol.ProtocolError("cancelled", "cancelled before it started")
                getattr(self, "_run_" + job.request["op"])(job)
            except protocol.ProtocolError as exc:
                job.connection.send(protocol.error(job.request["id"], exc.code, exc.message, exc.data))
            except Exception as exc:  # the engine failed on this request; the worker keeps serving
                log.exception("%s request failed", job.request["op"])
                job.connection.send(protocol.error(job.request["id"], "internal", f"{type(exc).__name__}: {exc}"))
                if getattr(exc, "fatal", False):  # e.g. a context-parallel rank died: restart the whole worker
                    self.failed = str(exc)
                    self.shutdown(f"fatal: {exc}")
            finally:
                with self._lock:
                    self.active.pop(job.key, None)
                self.served += 1

    def _run_sync(self, job: Job) -> None:
        request = job.request
        unknown = [path for path in request["drop"] if path not in self.held]
        if unknown:
            raise protocol.ProtocolError("unknown_segment", f"cannot drop {len(unknown)} path(s) the worker does "
                                         f"not hold: {', '.join(unknown[:5])}", data={"paths": unknown})
        missing, add = [], []
        for entry in request["add"]:
            path, digest, text = entry["path"], entry["hash"], entry.get("text")
            if text is None:
                if self.held.get(path) == digest:
                    continue
                text = self.texts.get(digest)
                if text is None:
                    missing.append(digest)
                    continue
            add.append((path, digest, text))
        result = dict(self.engine.sync(add=add, drop=list(request["drop"])))
        for path in request["drop"]:
            self.held.pop(path, None)
        for path, digest, text in add:
            self.held[path] = digest
            self.texts[digest] = text
        live = set(self.held.values())
        self.texts = {digest: text for digest, text in self.texts.items() if digest in live}
        reply = {"op": "synced", "id": request["id"], "missing": missing, "applied": len(add)}
        reply.update(_plain(result))
        job.connection.send(reply)

    def _run_complete(self, job: Job) -> None:
        request = job.request
        lacking = sorted(set(request["require"]) - set(self.held.values()))
        if lacking:
            raise protocol.ProtocolError("unknown_segment", f"{len(lacking)} required segment(s) are not in the "
                                         "cache; sync them first", data={"hashes": lacking})
        connection = job.connection
        started = time.perf_counter()
        pieces = self.engine.complete(
            request["path"], request["prefix"], request["suffix"], max_tokens=request["max_tokens"],
            temperature=float(request["temperature"]), top_p=float(request["top_p"]), top_k=request["top_k"],
            stop=list(request["stop"]), seed=request.get("seed"),
            should_stop=lambda: job.stop.is_set() or not connection.alive,
        )
        first_piece_at = self._stream_pieces(job, pieces)
        stats = _plain(getattr(self.engine, "last_stats", None) or {})
        total_ms = (time.perf_counter() - started) * 1e3
        timings = {"total_ms": total_ms, "first_piece_ms": ((first_piece_at or time.perf_counter()) - started) * 1e3}
        timings.update({k: v for k, v in stats.items() if k.endswith("_ms") and isinstance(v, (int, float))})
        cache = {k: v for k, v in stats.items() if not k.endswith("_ms") and k != "finish"}
        finish = stats.get("finish") or "length"
        connection.send(protocol.done(request["id"], finish_reason=finish, timings=timings, cache=cache))

    def _stream_pieces(self, job: Job, pieces) -> float | None:
        """Sends each text piece as a chunk frame; returns when the first piece came. Raises on cancel."""
        first_piece_at = None
        for piece in pieces:
            if job.stop.is_set():
                break
            if first_piece_at is None:
                first_piece_at = time.perf_counter()
            if piece and not job.connection.send(protocol.chunk(job.request["id"], piece)):
                job.stop.set()
                break
        if job.stop.is_set():
            self.cancelled += 1
            raise protocol.ProtocolError("cancelled", f"request {job.request['id']} was cancelled")
        return first_piece_at

    def _run_generate(self, job: Job) -> None:
        """A model-made edit: FIM, or (reasoning asked and possible) the chat template with a thinking phase."""
        request, connection = job.request, job.connection
        lacking = sorted(set(request["require"]) - set(self.held.values()))
        if lacking:
            raise protocol.ProtocolError("unknown_segment", f"{len(lacking)} required segment(s) are not in the "
                                         "cache; sync them first", data={"hashes": lacking})
        template = self.reasoning_template if request["reasoning"] else None
        reasoning = {"requested": request["reasoning"], "used": template is not None, "thought_chars": 0,
                     "reason": "" if template is not None or not request["reasoning"] else self.no_reasoning_reason}
        entry = {"id": request["id"], "connection": connection.number, "path": request["path"],
                 "reasoning_requested": request["reasoning"], "reasoning_used": template is not None,
                 "max_tokens": request["max_tokens"], "stop": list(request["stop"]),
                 "instruction": request["instruction"][:200], "thought_chars": 0}
        self.generate_log.append(entry)
        started = time.perf_counter()
        knobs = dict(temperature=float(request["temperature"]), seed=request.get("seed"),
                     should_stop=lambda: job.stop.is_set() or not connection.alive)
        if template is None:
            pieces = self.engine.complete(request["path"], request["prefix"], request["suffix"],
                                          max_tokens=request["max_tokens"], stop=list(request["stop"]), **knobs)
        else:
            pieces = self._reason_then_answer(request, template, reasoning, knobs)
        self._stream_pieces(job, pieces)
        entry["thought_chars"] = reasoning["thought_chars"]
        stats = _plain(getattr(self.engine, "last_stats", None) or {})
        timings = {"total_ms": (time.perf_counter() - started) * 1e3}
        cache = {k: v for k, v in stats.items() if not k.endswith("_ms") and k != "finish"}
        connection.send(protocol.done(request["id"], finish_reason=stats.get("finish") or "length", timings=timings,
                                      cache=cache, reasoning=reasoning))

    def _reason_then_answer(self, request: dict, template, reasoning: dict, knobs: dict):
        """Thinks for at most reasoning_budget tokens, closes the thought, then yields the answer's code."""
        prompt = template.render(chat.user_message(request["instruction"], request["path"], request["prefix"],
                                                   request["suffix"]))
        thought = ""
        if request["reasoning_budget"]:
            thought = "".join(self.engine.generate(request["path"], prompt, max_tokens=request["reasoning_budget"],
                                                   stop=[chat.THINK_CLOSE] + template.stops(), **knobs))
        reasoning["thought_chars"] = len(thought)
        answer_prompt = f"{prompt}{thought.rstrip()}\n{chat.THINK_CLOSE}\n\n"
        answer = "".join(self.engine.generate(request["path"], answer_prompt, max_tokens=request["max_tokens"],
                                              stop=template.stops(), **knobs))
        yield chat.answer_code(answer, list(request["stop"]))

    def _run_score(self, job: Job) -> None:
        r = job.request
        tokens = self.engine.score(r["path"], r["text"], r["start"], r["end"])
        rows = [[str(t), int(s), float(lp)] for t, s, lp in tokens]
        job.connection.send({"op": "scored", "id": r["id"], "tokens": rows})

    def _run_stats(self, job: Job) -> None:
        stats = _plain(self.engine.stats())
        stats["worker"] = {"segments": len(self.held), "queued": self.jobs.qsize(), "served": self.served,
                           "cancelled": self.cancelled,
                           "pid": os.getpid(), "generate_log": list(self.generate_log)}
        job.connection.send({"op": "stats", "id": job.request["id"], "stats": stats})


def _plain(value):
    """Engine results as msgpack-safe plain data (tuples to lists, numpy/torch scalars to Python numbers)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, bool, int, float, bytes)):
        return value
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _listen(args) -> tuple[socket.socket, str, str | None]:
    if args.listen:
        host, _, port = args.listen.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        if not args.token_file:
            raise SystemExit("msa-lsp worker: --listen needs --token-file (TCP clients must present a token)")
        try:
            with open(args.token_file, encoding="utf-8") as handle:
                token = handle.read().strip()
        except OSError as exc:
            raise SystemExit(f"msa-lsp worker: cannot read token file: {exc}")
        if not token:
            raise SystemExit(f"msa-lsp worker: token file {args.token_file} is empty")
        if host not in ("127.0.0.1", "::1", "localhost"):
            log.warning("listening on %s: reachable from other machines (token required)", host)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server = socket.socket(family, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((host, int(port)))
        server.listen(16)
        bound_host, bound_port = server.getsockname()[:2]
        return server, f"tcp:{bound_host}:{bound_port}", token
    path = os.path.abspath(args.socket or default_socket_path())
    _prepare_socket_dir(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_mask = os.umask(0o177)
    try:
        server.bind(path)
    finally:
        os.umask(old_mask)
    server.listen(16)
    return server, f"unix:{path}", None


def _check_model_dir(model: str | None) -> None:
    """Fail fast, before torch is imported, on a model directory that cannot be a checkpoint."""
    directory = model or os.path.join(os.path.dirname(os.path.abspath(__file__)), "bundled")
    if not os.path.isfile(os.path.join(directory, "config.json")):
        what = f"model directory {model}" if model else f"the bundled model ({directory})"
        raise SystemExit(f"msa-lsp worker: {what} has no config.json; pass --model DIR with a Hugging Face "
                         "checkpoint directory (config.json, *.safetensors, tokenizer.json)")


def engine_options(args) -> dict:
    options = {"device": args.device, "layout": args.layout, "attention": args.attention,
               "top_k_blocks": args.top_k, "cache_dir": args.cache_dir, "repo_name": args.repo_name,
               "member_names": args.member_names == "on"}
    if args.cache_max_gib is not None:
        options["cache_max_bytes"] = int(args.cache_max_gib * 2**30)
    return options


def distributed_wanted(args) -> bool:
    """Context parallel: two or more --devices, or a torchrun launch (checked without importing torch)."""
    devices = [d for d in (getattr(args, "devices", None) or "").split(",") if d.strip()]
    return len(devices) > 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1


def _load_engine(args):
    _check_model_dir(args.model)
    try:
        from inference.engine import Engine
    except ImportError as exc:
        raise SystemExit(f"msa-lsp worker: the inference engine is not available: {exc}")
    options = engine_options(args)
    try:
        if distributed_wanted(args):  # context parallel over several devices / torchrun ranks
            from inference import cp_engine

            return cp_engine.start(args.model or None, options, devices=args.devices, timeout_s=args.rank_timeout)
        return Engine(args.model or None, **options)
    except (OSError, ValueError, RuntimeError) as exc:
        raise SystemExit(f"msa-lsp worker: cannot load model {args.model or '(bundled)'}: {exc}")


def _watch_stdin(worker: Worker) -> None:
    """With --exit-with-stdin: the parent holds our stdin; when it closes (the parent died), stop."""
    while sys.stdin.buffer.read(4096):
        pass
    worker.shutdown("stdin closed (parent gone)")


def main(args) -> int:
    logging.basicConfig(level=os.environ.get("MSA_WORKER_LOG", "INFO"), stream=sys.stderr,
                        format="%(asctime)s worker %(levelname)s %(message)s")
    if distributed_wanted(args) and int(os.environ.get("RANK", "0")) > 0:  # a torchrun rank > 0 follows rank 0
        from inference import cp_engine

        return cp_engine.follow_main(args)
    server, address, token = _listen(args)
    started = time.perf_counter()
    engine = _load_engine(args)
    worker = Worker(engine, max_frame_bytes=getattr(args, "max_frame_bytes", None) or protocol.MAX_FRAME_BYTES)
    if hasattr(engine, "on_failure"):  # a context-parallel rank that dies ends this worker (the client restarts it)
        engine.on_failure = lambda reason: (setattr(worker, "failed", reason), worker.shutdown(reason))
    signal.signal(signal.SIGTERM, lambda *_: worker.shutdown("SIGTERM"))
    threading.Thread(target=_accept, args=(server, worker, token), daemon=True, name="accept").start()
    if getattr(args, "exit_with_stdin", False):
        threading.Thread(target=_watch_stdin, args=(worker,), daemon=True, name="stdin").start()
    model = worker.model_info.get("model") or args.model or "bundled"
    print(f"msa-lsp worker ready on {address} (model {model}, loaded in {time.perf_counter() - started:.1f}s, "
          f"pid {os.getpid()})", file=sys.stderr, flush=True)
    scheduler = threading.Thread(target=worker.run_jobs, daemon=True, name="scheduler")
    scheduler.start()
    try:
        while not worker.stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        worker.shutdown("interrupted")
    server.close()
    if address.startswith("unix:"):
        try:
            os.unlink(address[5:])
        except OSError:
            pass
    scheduler.join(timeout=5)
    if hasattr(engine, "close"):  # context parallel: stop the other ranks
        engine.close()
    return 1 if worker.failed else 0


def _accept(server: socket.socket, worker: Worker, token: str | None) -> None:
    while not worker.stopping.is_set():
        try:
            sock, _ = server.accept()
        except OSError:
            return
        connection = Connection(sock, worker, token)
        threading.Thread(target=connection.serve, daemon=True, name=f"conn-{connection.number}").start()
