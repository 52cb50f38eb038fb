"""On-disk segment KV cache: one safetensors file per segment, content-addressed, checksummed, size-capped LRU.

File name = hash of (model fingerprint, layout key, segment key). Metadata holds the fingerprint, layout,
key, token count and a blake2b checksum of every tensor's bytes; a file whose checksum, metadata or shapes
do not match is deleted and reported as a miss (the caller re-prefills), never trusted. Does not know
how KV is computed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pathlib
import tempfile

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from safetensors import safe_open

log = logging.getLogger(__name__)
FORMAT = "msa-lsp-segment-1"


def _checksum(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.view(torch.uint8).numpy())
    return h.hexdigest()


class DiskCache:
    def __init__(self, root: str | pathlib.Path, *, fingerprint: str, max_bytes: int):
        self.root = pathlib.Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.fingerprint, self.max_bytes = fingerprint, max_bytes
        self.hits = self.misses = self.rejected = self.writes = 0

    def _path(self, layout: str, key: str) -> pathlib.Path:
        name = hashlib.blake2b(f"{self.fingerprint}|{layout}|{key}".encode(), digest_size=20).hexdigest()
        return self.root / name[:2] / f"{name}.safetensors"

    def save(self, layout: str, key: str, tensors: dict[str, torch.Tensor], n_tokens: int) -> None:
        path = self._path(layout, key)
        path.parent.mkdir(exist_ok=True)
        tensors = {k: v.contiguous() for k, v in tensors.items()}
        meta = {"format": FORMAT, "fingerprint": self.fingerprint, "layout": layout, "key": key,
                "n_tokens": str(n_tokens), "checksum": _checksum(tensors)}
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata=meta)
            os.replace(tmp, path)  # atomic: readers never see a half-written file
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self.writes += 1
        self._trim()

    def load(self, layout: str, key: str, expected_shapes: dict[str, tuple[int, ...]] | None = None):
        """(tensors, n_tokens) of a valid stored segment, or None (missing, or invalid and then deleted)."""
        path = self._path(layout, key)
        if not path.is_file():
            self.misses += 1
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            tensors = load_file(str(path))
            problem = self._check(meta, tensors, layout, key, expected_shapes)
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            problem = f"unreadable ({exc})"
        if problem:
            log.warning("cache file %s rejected: %s; rebuilding", path, problem)
            self.rejected += 1
            path.unlink(missing_ok=True)
            return None
        os.utime(path)  # LRU by mtime
        self.hits += 1
        return tensors, int(meta["n_tokens"])

    def _check(self, meta, tensors, layout, key, expected_shapes) -> str | None:
        for field, want in (("format", FORMAT), ("fingerprint", self.fingerprint), ("layout", layout), ("key", key)):
            if meta.get(field) != want:
                return f"{field} mismatch"
        if meta.get("checksum") != _checksum(tensors):
            return "checksum mismatch"
        n_tokens = int(meta.get("n_tokens", -1))
        if "page_lens" not in tensors or int(tensors["page_lens"].sum()) != n_tokens:
            return "token count mismatch"
        if expected_shapes is not None:
            n_pages = tensors["page_lens"].shape[0]
            for name, shape in expected_shapes(n_pages).items():
                if name not in tensors or tuple(tensors[name].shape) != tuple(shape):
                    return f"shape mismatch for {name}"
        return None

    def _files(self) -> list[pathlib.Path]:
        return list(self.root.glob("*/*.safetensors"))

    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in self._files())

    def _trim(self) -> None:
        files = sorted(((p.stat().st_mtime, p.stat().st_size, p) for p in self._files()))
        total = sum(size for _, size, _ in files)
        for _, size, path in files:
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
