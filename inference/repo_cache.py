"""The repository KV cache: which files are in it, their segments' KV (device, host, disk), and prefilling them.

`sync` turns the file set into layout parts (inference/layouts.py), reuses resident or host segments,
loads valid ones from the disk cache, and prefills the rest through the model. `view(live_path)` gives
the pages a request reads, with the live file's own (stale) segments masked out. Does not sample and
does not know about FIM.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import torch

from inference import layouts
from inference.attention import RepoView, attend_segment
from inference.kv_cache import PAGE, PagePool, Segment, SegmentStore
from inference.model import Transformer
from inference.persist import DiskCache
from inference.tokenizer import Tokenizer

log = logging.getLogger(__name__)
VIEWS_KEPT = 2  # recent views kept (each may hold contiguous copies of its pages on CPU)


class RepoCache:
    def __init__(self, model: Transformer, tokenizer: Tokenizer, pool: PagePool, store: SegmentStore, *,
                 layout: str, prefix_text: str, header, cap: int, tail_offset: int, fingerprint: str, disk: DiskCache | None):
        if layout not in layouts.LAYOUTS:
            raise ValueError(f"layout must be one of {layouts.LAYOUTS}, got {layout!r}")
        self.model, self.tok, self.pool, self.store, self.disk = model, tokenizer, pool, store, disk
        self.layout, self.header, self.cap, self.tail_offset = layout, header, cap, tail_offset
        self.prefix_ids = tokenizer.encode(prefix_text)
        self.layout_key = layouts.text_key(layout, fingerprint, prefix_text, str(cap) if layout == "parallel" else "")
        self.files: OrderedDict[str, str] = OrderedDict()  # path -> text, sync order (edited files move last)
        self.parts: list[layouts.Part] = []
        self.prefix_key = layouts.text_key(self.layout_key, "<prefix>")
        self._views: OrderedDict[tuple, RepoView] = OrderedDict()  # a few recent views, with their CPU copies
        self.version = 0  # bumped by every sync

    @property
    def prefix_len(self) -> int:
        return len(self.prefix_ids)

    # ---- sync -------------------------------------------------------------------------------------------
    def sync(self, add, drop) -> dict:
        for entry in add:  # validate everything before changing anything
            if len(entry) != 3 or not isinstance(entry[0], str) or not isinstance(entry[2], str):
                raise ValueError("sync add entries must be (path: str, content_hash, text: str)")
        if not all(isinstance(p, str) for p in drop):
            raise ValueError("sync drop entries must be paths (str)")
        for path in drop:
            self.files.pop(path, None)
        for path, _content_hash, text in add:
            if self.files.get(path) != text:
                self.files.pop(path, None)
                self.files[path] = text
        counts = dict(prefilled_tokens=0, reused_segments=0, loaded_from_disk=0)
        self._ensure(self.prefix_key, "", tuple(self.prefix_ids), 0, 0, [], counts)
        files = []
        for path, text in self.files.items():
            header = self.header(path, text)
            ids = self.tok.encode(header + text)
            files.append((path, ids, self.tok.encode(header), layouts.text_key(path, text)))
        self.parts = layouts.plan(self.layout, files, prefix_len=self.prefix_len, cap=self.cap, layout_key=self.layout_key)
        before = [self.prefix_key]
        for part in self.parts:
            ctx = before if part.context == "before" else [self.prefix_key]
            self._ensure(part.key, part.path, part.tokens, part.keep_from, part.start_pos, ctx, counts)
            before.append(part.key)
        active = set(before)
        for seg in list(self.store.segments.values()):  # inactive segments leave the device
            if seg.key not in active and seg.pages:
                seg.host = self.pool.export(seg.pages)
                self.pool.release(seg.pages)
                seg.pages = []
                self.store.evictions += 1
                self.store.generation += 1
        self.store._trim_host()
        self.version += 1
        counts.update(segments=len(self.parts), tokens=sum(p.n_kept for p in self.parts) + self.prefix_len)
        end = self.tail_position()
        if self.layout != "parallel" and end > self.model.cfg.window:
            log.warning("%s layout: the live tail starts at position %d, beyond the model's trained window of %d",
                        self.layout, end, self.model.cfg.window)
        return counts

    def _ensure(self, key, path, tokens, keep_from, start_pos, ctx_keys, counts) -> None:
        seg = self.store.segments.get(key)
        if seg is not None:
            self.store.ensure_resident([key])
            self.store.touch(seg)
            counts["reused_segments"] += 1
            return
        n_kept = len(tokens) - keep_from
        if self.disk is not None:
            hit = self.disk.load(self.layout_key, key, self.pool.expected_shapes)
            if hit is not None and hit[1] == n_kept:
                tensors, _ = hit
                self.store.make_room(tensors["k"].shape[1], set(ctx_keys))
                seg = Segment(key, path, n_kept, start_pos + keep_from, pages=self.pool.load(tensors))
                self.store.add(seg)
                counts["loaded_from_disk"] += 1
                return
        self.store.ensure_resident(ctx_keys)
        n_pages = (n_kept + PAGE - 1) // PAGE
        self.store.make_room(n_pages, set(ctx_keys))
        pages = self.pool.alloc(n_pages)
        ctx = RepoView.build(self.pool, [p for k in ctx_keys for p in self.store.segments[k].pages])
        self._prefill(tokens, start_pos, keep_from, pages, ctx)
        self.pool.seal(pages, n_kept)
        seg = Segment(key, path, n_kept, start_pos + keep_from, pages=pages)
        self.store.add(seg)
        counts["prefilled_tokens"] += len(tokens)
        if self.disk is not None:
            self.disk.save(self.layout_key, key, self.pool.export(pages), n_kept)

    @torch.inference_mode()
    def _prefill(self, tokens, start_pos, keep_from, pages, ctx: RepoView) -> None:
        dev = self.pool.device
        ids = torch.tensor(tokens, dtype=torch.long, device=dev)
        positions = torch.arange(start_pos, start_pos + len(tokens), device=dev)
        pool = self.pool

        def attend(layer, q, k, v, index_q, index_k):
            kt, vt = k.transpose(0, 1), v.transpose(0, 1)  # (Hkv, T, d)
            pool.write(layer, pages, k[keep_from:], v[keep_from:], None if index_k is None else index_k[keep_from:])
            if not ctx.n_blocks:
                return attend_segment(q, kt, vt)
            return attend_segment(q, kt, vt, ctx.gather(pool.k[layer]), ctx.gather(pool.v[layer]))

        self.model(ids, positions, attend, logits="none")

    # ---- reading ----------------------------------------------------------------------------------------
    def segment_keys(self, live_path: str | None = None) -> list[str]:
        return [self.prefix_key] + [p.key for p in self.parts if p.path != live_path]

    def view(self, live_path: str | None) -> RepoView:
        """Pages a request for `live_path` reads: the prefix and every segment except the live file's own."""
        keys = self.segment_keys(live_path)
        self.store.ensure_resident(keys)
        for k in keys:
            self.store.touch(self.store.segments[k])
        # Segment keys name the KV bytes and the generation changes whenever pages move, so a view (and the
        # contiguous copies kept with it) stays valid across syncs that leave its segments alone, e.g. edits of
        # the live file, whose own segments the view leaves out.
        cache_key = (tuple(keys), self.store.generation)
        if cache_key not in self._views:
            pages = [p for k in keys for p in self.store.segments[k].pages]
            self._views[cache_key] = RepoView.build(self.pool, pages)
            while len(self._views) > VIEWS_KEPT:
                self._views.popitem(last=False)
        self._views.move_to_end(cache_key)
        return self._views[cache_key]

    def tail_position(self) -> int:
        return layouts.tail_position(self.layout, self.parts, prefix_len=self.prefix_len, tail_offset=self.tail_offset)
