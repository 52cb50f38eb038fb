"""Paged KV storage for the repository cache: a page pool on the device and the segments that own pages.

Page = 128 tokens = one MSA block. Per layer the pool holds k/v [pages, Hkv, 128, d], index keys
[pages, 128, d_idx] for layers with an MSA index branch, page summaries kmin/kmax/kmean [pages, Hkv, d]
for training-free selection, and page_lens (valid tokens per page). Page 0 is a permanent empty page.
Segments move whole between the device pool and host memory (LRU). Knows nothing about text or layouts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from inference.config import ModelConfig
from kernels import ops
from kernels import reference as ref

PAGE = ref.PAGE


class CacheBudgetError(RuntimeError):
    """The segments a request needs do not fit the device budget together."""


@dataclass
class Segment:
    key: str
    path: str
    n_tokens: int
    start_pos: int  # position of the first kept token
    pages: list[int] = field(default_factory=list)  # physical page ids while on the device
    host: dict | None = None  # CPU tensors while evicted (see PagePool.export)
    last_used: float = field(default_factory=time.monotonic)

    @property
    def n_pages(self) -> int:
        return (self.n_tokens + PAGE - 1) // PAGE


class PagePool:
    def __init__(self, cfg: ModelConfig, device: torch.device, dtype: torch.dtype, *, summaries: bool,
                 initial_pages: int = 64):
        self.cfg, self.device, self.dtype = cfg, device, dtype
        self.index_layers = [i for i in range(cfg.num_layers) if cfg.has_index_branch and cfg.sparse_layers[i]]
        self.index_slot = {layer: n for n, layer in enumerate(self.index_layers)}
        self.summaries = summaries
        self.capacity = 0
        self.free: list[int] = []
        self._alloc_tensors(max(2, initial_pages))
        self.free.remove(0)  # page 0: the empty page, page_len 0 forever

    @property
    def bytes_per_page(self) -> int:
        c, size = self.cfg, torch.finfo(self.dtype).bits // 8
        n = 2 * c.num_layers * c.num_kv_heads * PAGE * c.head_dim
        n += len(self.index_layers) * PAGE * c.index_dim
        if self.summaries:
            n += 3 * c.num_layers * c.num_kv_heads * c.head_dim
        return n * size + 4

    @property
    def used_pages(self) -> int:
        return self.capacity - 1 - len(self.free)

    def _alloc_tensors(self, capacity: int) -> None:
        c, dev, dt = self.cfg, self.device, self.dtype
        shapes = {"k": (c.num_layers, capacity, c.num_kv_heads, PAGE, c.head_dim)}
        shapes["v"] = shapes["k"]
        if self.index_layers:
            shapes["index_k"] = (len(self.index_layers), capacity, PAGE, c.index_dim)
        if self.summaries:
            for name in ("kmin", "kmax", "kmean"):
                shapes[name] = (c.num_layers, capacity, c.num_kv_heads, c.head_dim)
        old = self.capacity
        for name, shape in shapes.items():
            t = torch.zeros(shape, device=dev, dtype=dt)
            if old:
                t[:, :old] = getattr(self, name)
            setattr(self, name, t)
        lens = torch.zeros(capacity, device=dev, dtype=torch.int32)
        if old:
            lens[:old] = self.page_lens
        self.page_lens = lens
        if not self.index_layers:
            self.index_k = None
        if not self.summaries:
            self.kmin = self.kmax = self.kmean = None
        self.free.extend(range(old, capacity))
        self.capacity = capacity

    def alloc(self, n: int) -> list[int]:
        if n > len(self.free):
            self._alloc_tensors(max(self.capacity * 2, self.capacity + n - len(self.free) + 1))
        pages, self.free = self.free[:n], self.free[n:]
        return pages

    def release(self, pages: list[int]) -> None:
        if pages:
            self.page_lens[torch.tensor(pages, device=self.device)] = 0
            self.free.extend(pages)

    def write(self, layer: int, pages: list[int], k: torch.Tensor, v: torch.Tensor, index_k: torch.Tensor | None):
        """Store n tokens (k, v [n, Hkv, d]; index_k [n, d_idx]) into `pages` from their first slot on."""
        n = k.shape[0]
        ids = torch.tensor(pages, device=self.device)
        padded = len(pages) * PAGE
        for name, x in (("k", k), ("v", v)):
            buf = torch.zeros(padded, *x.shape[1:], device=self.device, dtype=self.dtype)
            buf[:n] = x
            getattr(self, name)[layer, ids] = buf.view(len(pages), PAGE, *x.shape[1:]).transpose(1, 2)
        if index_k is not None and layer in self.index_slot:
            buf = torch.zeros(padded, index_k.shape[-1], device=self.device, dtype=self.dtype)
            buf[:n] = index_k
            self.index_k[self.index_slot[layer], ids] = buf.view(len(pages), PAGE, -1)

    def seal(self, pages: list[int], n_tokens: int) -> None:
        """Record the valid length of each page and compute the page summaries once the pages are filled."""
        lens = [min(PAGE, n_tokens - i * PAGE) for i in range(len(pages))]
        ids = torch.tensor(pages, device=self.device)
        self.page_lens[ids] = torch.tensor(lens, device=self.device, dtype=torch.int32)
        if self.summaries:
            for layer in range(self.cfg.num_layers):
                ops.write_page_summaries(self.k[layer], self.kmin[layer], self.kmax[layer], self.kmean[layer],
                                         ids, self.page_lens[ids])

    def export(self, pages: list[int]) -> dict[str, torch.Tensor]:
        """The pages' contents as CPU tensors (for host eviction and the disk cache); summaries are recomputed."""
        ids = torch.tensor(pages, device=self.device)
        out = {"k": self.k[:, ids].cpu(), "v": self.v[:, ids].cpu(), "page_lens": self.page_lens[ids].cpu()}
        if self.index_k is not None:
            out["index_k"] = self.index_k[:, ids].cpu()
        return out

    def load(self, tensors: dict[str, torch.Tensor]) -> list[int]:
        """Copy exported pages back into fresh pages; returns their ids."""
        n = tensors["k"].shape[1]
        pages = self.alloc(n)
        ids = torch.tensor(pages, device=self.device)
        self.k[:, ids] = tensors["k"].to(self.device, self.dtype)
        self.v[:, ids] = tensors["v"].to(self.device, self.dtype)
        if self.index_k is not None:
            self.index_k[:, ids] = tensors["index_k"].to(self.device, self.dtype)
        self.seal(pages, int(tensors["page_lens"].sum()))
        return pages

    def expected_shapes(self, n_pages: int) -> dict[str, tuple[int, ...]]:
        c = self.cfg
        shapes = {"k": (c.num_layers, n_pages, c.num_kv_heads, PAGE, c.head_dim), "page_lens": (n_pages,)}
        shapes["v"] = shapes["k"]
        if self.index_k is not None:
            shapes["index_k"] = (len(self.index_layers), n_pages, PAGE, c.index_dim)
        return shapes


class SegmentStore:
    """Segments by key: resident on the device or evicted to host memory, with per-page accounting and LRU."""

    def __init__(self, pool: PagePool, *, device_max_bytes: int | None, host_max_bytes: int):
        self.pool = pool
        self.device_max_bytes, self.host_max_bytes = device_max_bytes, host_max_bytes
        self.segments: dict[str, Segment] = {}
        self.evictions = 0
        self.host_drops = 0
        self.generation = 0  # bumped whenever any segment's pages move

    def device_bytes(self) -> int:
        return self.pool.used_pages * self.pool.bytes_per_page

    def host_bytes(self) -> int:
        return sum(s.n_pages for s in self.segments.values() if s.host is not None) * self.pool.bytes_per_page

    def add(self, seg: Segment) -> None:
        self.segments[seg.key] = seg

    def touch(self, seg: Segment) -> None:
        seg.last_used = time.monotonic()

    def make_room(self, n_pages: int, keep: set[str]) -> None:
        """Evict LRU resident segments not in `keep` to host until n_pages more fit the device budget."""
        if self.device_max_bytes is None:
            return
        need = (self.pool.used_pages + n_pages) * self.pool.bytes_per_page
        victims = sorted((s for s in self.segments.values() if s.pages and s.key not in keep), key=lambda s: s.last_used)
        for seg in victims:
            if need <= self.device_max_bytes:
                break
            seg.host = self.pool.export(seg.pages)
            self.pool.release(seg.pages)
            need -= len(seg.pages) * self.pool.bytes_per_page
            seg.pages = []
            self.evictions += 1
            self.generation += 1
        if need > self.device_max_bytes:
            raise CacheBudgetError(f"the repository cache needs {need} bytes on the device, over the budget of "
                              f"{self.device_max_bytes} bytes (raise the budget or exclude files)")
        self._trim_host()

    def _trim_host(self) -> None:
        evicted = sorted((s for s in self.segments.values() if s.host is not None), key=lambda s: s.last_used)
        while evicted and self.host_bytes() > self.host_max_bytes:
            seg = evicted.pop(0)
            del self.segments[seg.key]
            self.host_drops += 1

    def ensure_resident(self, keys: list[str]) -> None:
        """Bring the named segments back onto the device (evicting others not named)."""
        missing = [self.segments[k] for k in keys if not self.segments[k].pages]
        if not missing:
            return
        self.make_room(sum(s.n_pages for s in missing), set(keys))
        for seg in missing:
            seg.pages = self.pool.load(seg.host)
            seg.host = None
        self.generation += 1
