"""The server's settings: frozen dataclasses parsed from initializationOptions and didChangeConfiguration.

Every key lives under the "msa" section, nested as JSON ({"worker": {"address": ""}}); `SETTING_KEYS`
lists them as dotted names with type and default so editor packages can be checked against it. A bad
value never stops the server: parsing keeps the default for that key and returns a warning naming it.
Not the place for acting on settings (server.py and the worker client do that).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

SECTION = "msa"


def _setting(default: Any, key: str, kind: str, doc: str, *, choices: tuple[str, ...] = (), minimum: float | None = None):
    """A dataclass field carrying its JSON key, JSON type, allowed values and one-line meaning."""
    meta = {"key": key, "kind": kind, "doc": doc, "choices": choices, "minimum": minimum}
    if isinstance(default, (list, tuple)):
        return field(default=tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class WorkerOptions:
    address: str = _setting("", "address", "string", '"" spawns a local worker; "unix:/path" or "tcp:host:port"')
    token_file: str = _setting("", "tokenFile", "string", "file holding the shared secret for a TCP worker")
    command: tuple[str, ...] = _setting((), "command", "array", "command line that starts the worker; empty = default")
    devices: str = _setting("", "devices", "string", 'GPUs for a spawned worker, e.g. "0,1"; empty = auto')


@dataclass(frozen=True)
class CacheOptions:
    dir: str = _setting("", "dir", "string", "directory for the persistent repository KV cache; empty = default")
    max_gib: float = _setting(20.0, "maxGiB", "number", "size limit of the persistent cache in GiB", minimum=0)


@dataclass(frozen=True)
class InlineCompletionOptions:
    enable: bool = _setting(True, "enable", "boolean", "offer ghost-text completions")


@dataclass(frozen=True)
class CompletionOptions:
    max_tokens: int = _setting(64, "maxTokens", "integer", "most tokens one completion may generate", minimum=1)
    debounce_ms: int = _setting(150, "debounceMs", "integer", "wait this long after typing before asking the model", minimum=0)
    member_names: bool = _setting(True, "memberNames", "boolean",
                                  "after `module.` of an imported repository module, complete a name it defines")


@dataclass(frozen=True)
class IndexOptions:
    exclude: tuple[str, ...] = _setting((), "exclude", "array", "glob patterns of files the index skips")
    max_file_size: int = _setting(1_000_000, "maxFileSize", "integer", "files larger than this many bytes are skipped", minimum=0)
    include_secrets: bool = _setting(False, "includeSecrets", "boolean", "index .env, key and credential files too")


@dataclass(frozen=True)
class DiagnosticsOptions:
    debounce_ms: int = _setting(200, "debounceMs", "integer", "wait this long after an edit before publishing", minimum=0)
    unusual_code: bool = _setting(False, "unusualCode", "boolean", "model-based hints on surprising code")


@dataclass(frozen=True)
class Options:
    model: str = _setting("", "model", "string", 'model directory; "" = the bundled model')
    worker: WorkerOptions = field(default_factory=WorkerOptions, metadata={"key": "worker"})
    cache: CacheOptions = field(default_factory=CacheOptions, metadata={"key": "cache"})
    layout: str = _setting("parallel", "layout", "string", "how file segments share positions in the KV cache",
                           choices=("parallel", "sequential"))
    attention: str = _setting("sparse", "attention", "string", "MSA block-sparse or dense decode", choices=("sparse", "dense"))
    inline_completion: InlineCompletionOptions = field(default_factory=InlineCompletionOptions,
                                                       metadata={"key": "inlineCompletion"})
    completion: CompletionOptions = field(default_factory=CompletionOptions, metadata={"key": "completion"})
    reasoning: str = _setting("adaptive", "reasoning", "string", "reasoning for model-made edits",
                              choices=("enabled", "adaptive", "disabled"))
    index: IndexOptions = field(default_factory=IndexOptions, metadata={"key": "index"})
    diagnostics: DiagnosticsOptions = field(default_factory=DiagnosticsOptions, metadata={"key": "diagnostics"})


@dataclass(frozen=True)
class SettingKey:
    """One setting as editors declare it: dotted name, JSON type, default, allowed values."""

    name: str
    kind: str
    default: Any
    doc: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None


def _walk(cls: type, prefix: str):
    for f in dataclasses.fields(cls):
        name = f"{prefix}.{f.metadata['key']}"
        if "kind" not in f.metadata:  # a nested section
            yield from _walk(f.default_factory, name)
        else:
            default = list(f.default) if isinstance(f.default, tuple) else f.default
            yield f, name, SettingKey(name, f.metadata["kind"], default, f.metadata["doc"], f.metadata["choices"],
                                      f.metadata["minimum"])


SETTING_KEYS: tuple[SettingKey, ...] = tuple(key for _, _, key in _walk(Options, SECTION))


def _check(value: Any, key: SettingKey) -> Any:
    """The value converted to the field's Python type; raises ValueError saying what was expected."""
    if key.kind == "string":
        if not isinstance(value, str):
            raise ValueError("expected a string")
        if key.choices and value not in key.choices:
            raise ValueError(f"expected one of {', '.join(key.choices)}")
        return value
    if key.kind == "boolean":
        if not isinstance(value, bool):
            raise ValueError("expected true or false")
        return value
    if key.kind in ("integer", "number"):
        ok = isinstance(value, int) or (key.kind == "number" and isinstance(value, float))
        if isinstance(value, bool) or not ok:
            raise ValueError(f"expected {'an integer' if key.kind == 'integer' else 'a number'}")
        if key.minimum is not None and value < key.minimum:
            raise ValueError(f"expected at least {key.minimum:g}")
        return float(value) if key.kind == "number" else value
    if key.kind == "array":
        if value == "":  # an editor's "unset" for a string-list setting
            return ()
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValueError("expected a list of strings")
        return tuple(value)
    raise AssertionError(key.kind)


def _build(cls: type, raw: Any, prefix: str, warnings: list[str]):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        warnings.append(f"{prefix}: expected an object, got {type(raw).__name__}; using defaults")
        raw = {}
    known = {f.metadata["key"] for f in dataclasses.fields(cls)}
    for unknown in sorted(set(raw) - known):
        warnings.append(f"{prefix}.{unknown}: unknown setting, ignored")
    values = {}
    for f in dataclasses.fields(cls):
        name = f"{prefix}.{f.metadata['key']}"
        if f.metadata["key"] not in raw:
            continue
        value = raw[f.metadata["key"]]
        if "kind" not in f.metadata:
            values[f.name] = _build(f.default_factory, value, name, warnings)
            continue
        key = next(k for k in SETTING_KEYS if k.name == name)
        try:
            values[f.name] = _check(value, key)
        except ValueError as exc:
            warnings.append(f"{name}: {exc}, got {value!r}; using the default {key.default!r}")
    return cls(**values)


def parse_options(raw: Any) -> tuple[Options, list[str]]:
    """Options from a client's settings object plus one warning per bad or unknown key.

    Accepts either the "msa" section itself or an object holding it ({"msa": {...}}).
    """
    warnings: list[str] = []
    if isinstance(raw, dict) and set(raw) == {SECTION}:
        raw = raw[SECTION]
    return _build(Options, raw, SECTION, warnings), warnings


def settings_table() -> str:
    """docs/settings.md's table: one row per key with type, default and meaning."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key in SETTING_KEYS:
        kind = " \\| ".join(f'"{c}"' for c in key.choices) if key.choices else key.kind
        default = json.dumps(int(key.default) if isinstance(key.default, float) and key.default.is_integer() else key.default)
        rows.append(f"| `{key.name}` | {kind} | `{default}` | {key.doc} |")
    return "\n".join(rows) + "\n"
