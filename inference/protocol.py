"""Every message between the language server and the inference worker: framing, frame builders, validation.

Wire format: each frame is a 4-byte big-endian length followed by that many bytes of msgpack holding one map.
Every map has an ``op``. Requests from the client carry an integer ``id``; every reply carries the ``id`` of the
request it answers (``None`` when the request was too broken to have one).

Requests (client -> worker) and their replies:
  hello     {version, token?, client}            -> hello {version, model, capabilities, pid}
  sync      {add: [{path, hash, text?}], drop}   -> synced {missing: [hash], applied, prefilled_tokens,
                                                     reused_segments, loaded_from_disk, segments, tokens}
            An ``add`` entry without ``text`` names content by hash only; the worker applies it when it holds that
            text already and lists the hash in ``missing`` otherwise, and the client sends the text once.
  complete  {path, prefix, suffix, max_tokens, temperature, top_p, top_k, stop, seed, require}
                                                 -> chunk {text} ... then done {finish_reason, timings (ms), cache}
  score     {path, text, start, end}             -> scored {tokens: [[token_text, start_char, logprob], ...]}
  generate  {path, prefix, suffix, instruction, max_tokens, stop, reasoning, reasoning_budget, temperature, seed,
             require}                            -> chunk {text} ... then done {finish_reason, timings, cache,
                                                     reasoning: {requested, used, reason, thought_chars}}
            A model-made edit: without reasoning it is the FIM request prefix/suffix (like complete); with
            ``reasoning`` true and a model whose chat template has a thinking format (hello's capabilities then
            list "reasoning"), the worker asks through that template with ``instruction``, lets the model think
            for at most ``reasoning_budget`` tokens, and sends the code of its answer. ``reasoning`` true on a
            model without such a template is answered without reasoning, and ``done.reasoning`` says why.
  cancel    {request}                            -> ok; the cancelled request ends with error code "cancelled"
  stats     {}                                   -> stats {stats}
  shutdown  {}                                   -> ok, then the worker exits
Any request may instead be answered by error {code, message, data}. Codes are listed in ERROR_CODES.

Non-job: no sockets are opened here and nothing about models or LSP is known; only the standard library and
msgpack are imported, so both ends share this module.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import struct
from typing import Any

import msgpack

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 16 * 1024 * 1024
HEADER = struct.Struct(">I")

REQUEST_OPS = ("hello", "sync", "complete", "score", "generate", "cancel", "stats", "shutdown")
REPLY_OPS = ("hello", "synced", "chunk", "done", "scored", "ok", "stats", "error")
CAPABILITIES = ("sync", "complete", "score", "generate", "cancel", "stats", "shutdown")
OPTIONAL_CAPABILITIES = ("reasoning",)  # listed in hello only when the model has them
FINISH_REASONS = ("length", "stop_token", "stop_sequence")

ERROR_CODES = {
    "bad_frame": "the frame is not a valid msgpack map of the expected shape",
    "bad_version": "the client speaks another protocol version",
    "unknown_op": "no such operation",
    "too_large": "the frame is larger than the limit",
    "unknown_segment": "a named segment (path or hash) is not held by the worker",
    "unknown_request": "no running or queued request has that id",
    "cancelled": "the request was cancelled before it finished",
    "internal": "the worker failed while serving the request",
    "auth": "handshake missing or token wrong",
}


class ProtocolError(Exception):
    """A frame that breaks the protocol; ``code`` is one of ERROR_CODES."""

    def __init__(self, code: str, message: str, request_id: int | None = None, data: Any = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.request_id = request_id
        self.data = data


class FrameTooLarge(ProtocolError):
    """The length prefix announced more than the limit; ``length`` bytes of body follow on the wire."""

    def __init__(self, length: int, limit: int):
        super().__init__("too_large", f"frame of {length} bytes exceeds the limit of {limit} bytes")
        self.length = length


class ConnectionClosed(Exception):
    """The peer closed the connection (cleanly between frames or in the middle of one)."""


def content_hash(text: str) -> str:
    """The hash that names a segment's content: sha256 of its UTF-8 bytes, hex."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# ----------------------------------------------------------------------------------------------- encoding


def encode_frame(message: dict, max_bytes: int = MAX_FRAME_BYTES) -> bytes:
    body = msgpack.packb(message, use_bin_type=True)
    if len(body) > max_bytes:
        raise FrameTooLarge(len(body), max_bytes)
    return HEADER.pack(len(body)) + body


def decode_body(body: bytes) -> dict:
    """Unpack one frame body and check the envelope (a map with a string op and an int-or-nil id)."""
    try:
        message = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise ProtocolError("bad_frame", f"malformed msgpack ({type(exc).__name__}: {exc})") from None
    if not isinstance(message, dict):
        raise ProtocolError("bad_frame", f"a frame must be a map, got {type(message).__name__}")
    request_id = message.get("id")
    if request_id is not None and (not isinstance(request_id, int) or isinstance(request_id, bool)):
        raise ProtocolError("bad_frame", "id must be an integer")
    if not isinstance(message.get("op"), str):
        raise ProtocolError("bad_frame", "a frame needs a string 'op'", request_id)
    return message


# ----------------------------------------------------------------------------------------------- builders


def hello(request_id: int, *, token: str | None = None, client: str = "msa-lsp") -> dict:
    frame = {"op": "hello", "id": request_id, "version": PROTOCOL_VERSION, "client": client}
    if token is not None:
        frame["token"] = token
    return frame


def hello_reply(request_id: int, *, model: dict, pid: int, extra: list[str] = ()) -> dict:
    """extra: OPTIONAL_CAPABILITIES this worker's model has (e.g. "reasoning")."""
    assert all(name in OPTIONAL_CAPABILITIES for name in extra), extra
    return {
        "op": "hello", "id": request_id, "version": PROTOCOL_VERSION,
        "model": model, "capabilities": list(CAPABILITIES) + list(extra), "pid": pid,
    }


def sync(request_id: int, *, add: list[dict] = (), drop: list[str] = ()) -> dict:
    """add: [{"path", "hash", "text"?}]; drop: paths."""
    return {"op": "sync", "id": request_id, "add": list(add), "drop": list(drop)}


def complete(
    request_id: int, *, path: str, prefix: str, suffix: str, max_tokens: int = 64, temperature: float = 0.0,
    top_p: float = 1.0, top_k: int = 0, stop: list[str] = (), seed: int | None = None, require: list[str] = (),
) -> dict:
    return {
        "op": "complete", "id": request_id, "path": path, "prefix": prefix, "suffix": suffix,
        "max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "top_k": top_k,
        "stop": list(stop), "seed": seed, "require": list(require),
    }


def score(request_id: int, *, path: str, text: str, start: int, end: int) -> dict:
    return {"op": "score", "id": request_id, "path": path, "text": text, "start": start, "end": end}


def generate(
    request_id: int, *, path: str, prefix: str, suffix: str, instruction: str = "", max_tokens: int = 256,
    stop: list[str] = (), reasoning: bool = False, reasoning_budget: int = 256, temperature: float = 0.0,
    seed: int | None = None, require: list[str] = (),
) -> dict:
    return {
        "op": "generate", "id": request_id, "path": path, "prefix": prefix, "suffix": suffix,
        "instruction": instruction, "max_tokens": max_tokens, "stop": list(stop), "reasoning": bool(reasoning),
        "reasoning_budget": reasoning_budget, "temperature": temperature, "seed": seed, "require": list(require),
    }


def cancel(request_id: int, target: int) -> dict:
    return {"op": "cancel", "id": request_id, "request": target}


def simple(op: str, request_id: int) -> dict:
    """stats and shutdown requests carry nothing but their id."""
    return {"op": op, "id": request_id}


def chunk(request_id: int, text: str) -> dict:
    return {"op": "chunk", "id": request_id, "text": text}


def done(request_id: int, *, finish_reason: str, timings: dict, cache: dict, reasoning: dict | None = None) -> dict:
    """reasoning (generate only): {requested, used, reason, thought_chars}."""
    frame = {"op": "done", "id": request_id, "finish_reason": finish_reason, "timings": timings, "cache": cache}
    if reasoning is not None:
        frame["reasoning"] = reasoning
    return frame


def error(request_id: int | None, code: str, message: str, data: Any = None) -> dict:
    assert code in ERROR_CODES, code
    return {"op": "error", "id": request_id, "code": code, "message": message, "data": data}


def error_from(exc: ProtocolError) -> dict:
    return error(exc.request_id, exc.code, exc.message, exc.data)


# ----------------------------------------------------------------------------------------------- validation

_FIELD_TYPES = {
    "hello": {"version": int},
    "sync": {"add": list, "drop": list},
    "complete": {
        "path": str, "prefix": str, "suffix": str, "max_tokens": int, "temperature": (int, float),
        "top_p": (int, float), "top_k": int, "stop": list, "require": list,
    },
    "score": {"path": str, "text": str, "start": int, "end": int},
    "generate": {
        "path": str, "prefix": str, "suffix": str, "instruction": str, "max_tokens": int, "stop": list,
        "reasoning_budget": int, "temperature": (int, float), "require": list,
    },
    "cancel": {"request": int},
    "stats": {},
    "shutdown": {},
}


def validate_request(message: dict) -> dict:
    """Check a decoded client frame; raise ProtocolError (unknown_op / bad_frame) naming what is wrong."""
    op, request_id = message["op"], message.get("id")
    if op not in _FIELD_TYPES:
        raise ProtocolError("unknown_op", f"unknown op {op!r}; known: {', '.join(REQUEST_OPS)}", request_id)
    if request_id is None:
        raise ProtocolError("bad_frame", f"{op} needs an integer 'id'")
    for field, kind in _FIELD_TYPES[op].items():
        value = message.get(field)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ProtocolError("bad_frame", f"{op}.{field} must be {_kind_name(kind)}", request_id)
    if op == "sync":
        _check_sync(message, request_id)
    elif op == "complete":
        if message["max_tokens"] < 1 or not all(isinstance(s, str) for s in message["stop"]):
            raise ProtocolError("bad_frame", "complete needs max_tokens >= 1 and string stops", request_id)
        if message.get("seed") is not None and not isinstance(message["seed"], int):
            raise ProtocolError("bad_frame", "complete.seed must be an integer or nil", request_id)
    elif op == "generate":
        if message["max_tokens"] < 1 or message["reasoning_budget"] < 0 or not all(
                isinstance(s, str) for s in message["stop"]):
            raise ProtocolError("bad_frame", "generate needs max_tokens >= 1, reasoning_budget >= 0 and string "
                                "stops", request_id)
        if not isinstance(message.get("reasoning"), bool):
            raise ProtocolError("bad_frame", "generate.reasoning must be true or false", request_id)
        if message.get("seed") is not None and not isinstance(message["seed"], int):
            raise ProtocolError("bad_frame", "generate.seed must be an integer or nil", request_id)
    elif op == "score":
        if not 0 <= message["start"] <= message["end"] <= len(message["text"]):
            raise ProtocolError("bad_frame", "score needs 0 <= start <= end <= len(text)", request_id)
    return message


def _check_sync(message: dict, request_id: int) -> None:
    for entry in message["add"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or not isinstance(
            entry.get("hash"), str
        ):
            raise ProtocolError("bad_frame", "sync.add entries need string 'path' and 'hash'", request_id)
        text = entry.get("text")
        if text is not None:
            if not isinstance(text, str):
                raise ProtocolError("bad_frame", f"sync.add text for {entry['path']} must be a string", request_id)
            if content_hash(text) != entry["hash"]:
                raise ProtocolError("bad_frame", f"sync.add hash does not match the text of {entry['path']}",
                                    request_id)
    if not all(isinstance(path, str) for path in message["drop"]):
        raise ProtocolError("bad_frame", "sync.drop must list paths", request_id)


def _kind_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({"int": "an integer", "float": "a number", "str": "a string", "list": "a list"}[k.__name__]
                       for k in kinds)


# ----------------------------------------------------------------------------------------------- blocking I/O


def _recv_exactly(sock: socket.socket, count: int) -> bytes:
    buf = bytearray()
    while len(buf) < count:
        part = sock.recv(min(count - len(buf), 1 << 20))
        if not part:
            raise ConnectionClosed("peer closed the connection" + (" mid-frame" if buf else ""))
        buf += part
    return bytes(buf)


def read_frame(sock: socket.socket, max_bytes: int = MAX_FRAME_BYTES) -> dict:
    """Read one frame. Raises FrameTooLarge before reading an oversized body (call skip_body to drop it),
    ProtocolError for a body that is not a valid frame, ConnectionClosed at end of stream."""
    (length,) = HEADER.unpack(_recv_exactly(sock, HEADER.size))
    if length > max_bytes:
        raise FrameTooLarge(length, max_bytes)
    return decode_body(_recv_exactly(sock, length))


def skip_body(sock: socket.socket, length: int) -> None:
    while length:
        part = sock.recv(min(length, 1 << 20))
        if not part:
            raise ConnectionClosed("peer closed the connection mid-frame")
        length -= len(part)


def write_frame(sock: socket.socket, message: dict, max_bytes: int = MAX_FRAME_BYTES) -> None:
    sock.sendall(encode_frame(message, max_bytes))


# ----------------------------------------------------------------------------------------------- asyncio I/O


async def read_frame_async(reader: asyncio.StreamReader, max_bytes: int = MAX_FRAME_BYTES) -> dict:
    try:
        (length,) = HEADER.unpack(await reader.readexactly(HEADER.size))
        if length > max_bytes:
            raise FrameTooLarge(length, max_bytes)
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise ConnectionClosed("peer closed the connection" + (" mid-frame" if exc.partial else "")) from None
    except (ConnectionResetError, BrokenPipeError) as exc:
        raise ConnectionClosed(str(exc)) from None
    return decode_body(body)


async def write_frame_async(writer: asyncio.StreamWriter, message: dict, max_bytes: int = MAX_FRAME_BYTES) -> None:
    writer.write(encode_frame(message, max_bytes))
    try:
        await writer.drain()
    except (ConnectionResetError, BrokenPipeError) as exc:
        raise ConnectionClosed(str(exc)) from None
