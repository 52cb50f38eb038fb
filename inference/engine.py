"""The inference engine: a model, its repository KV cache, and completion / scoring over it.

This is the API the worker calls; it knows nothing about LSP, sockets or editors.

    engine = Engine(model_dir, *, device="auto", dtype=None, layout="parallel", attention="sparse",
                    top_k_blocks=16, cache_dir=None, cache_max_bytes=20 << 30, repo_name="repo",
                    # extra knobs, all optional:
                    segment_cap=None, dense_layers=None, summary_mode="minmax",
                    device_max_bytes=None, host_max_bytes=8 << 30, decode="auto",
                    live_window=None,  # (prefix, suffix) tokens of the FIM prompt; None: LIVE_WINDOW_CPU on
                                       # CPU, the model's tail budget elsewhere
                    member_names=True)  # after `module.`, the name is one the repository's module defines
                                        # (inference/member_names.py)
    engine.info() -> dict(model, family, params, device, dtype, layout, attention, fim_format, fingerprint, window)
    engine.sync(add=[(path, content_hash, text), ...], drop=[path, ...])
        -> dict(prefilled_tokens, reused_segments, loaded_from_disk, segments, tokens)
        # segments are keyed by a hash of (path, text) computed here; content_hash is the caller's label only
    for piece in engine.complete(path, prefix, suffix, *, max_tokens=64, temperature=0.0, top_p=1.0, top_k=0,
                                 stop=(), seed=None, should_stop=lambda: False):
        ...  # text pieces (an unfinished UTF-8 character at the very end is dropped); afterwards engine.last_stats = dict(prompt_tokens, prefilled_tokens,
             # reused_tail_tokens, generated_tokens, ttft_ms, decode_ms, selected_blocks, repo_blocks, finish,
             # member_names: names a member site allowed (0: none), member_steps: tokens they constrained)
    for piece in engine.generate(path, prompt, **same knobs as complete):  # plain continuation of `prompt`
        ...  # (no file header, no FIM tokens), left-truncated to the tail budget; sets last_stats like complete
    engine.score(path, text, start, end) -> [(token_text, start_char, logprob), ...]  # span [start, end) of text
    engine.forget_tail()  # drop the live tail's KV (kept to reuse the common prefix of the next request)
    engine.stats() -> dict(segments, tokens, pages, bytes, host_bytes, evictions, disk={...}, devices={...})

model_dir None = the bundled model in inference/bundled/ (raises FileNotFoundError when none is installed).
layout: "parallel" (default), "offsets" (parallel encoding at cumulative offsets, for measurement) or
"sequential" (exact causal reference). decode: "plain" (each generated token through the general forward),
"static" (fixed-shape step, inference/decode_graph.py), "graph" (that step captured in a CUDA graph; CUDA only) or
"auto" (graph on CUDA, plain elsewhere). attention: "sparse" (MSA top-k per GQA group on sparse layers) or
"dense". Positions are Python str indices (Unicode code points). One request at a time (not thread-safe).
"""

from __future__ import annotations

import logging
import pathlib
import time
from typing import Callable, Iterator

import torch

from inference import checkpoint, fim, sampling
from inference.healing import TokenHealer
from inference.attention import RepoAttention, attend_dense, attend_own, attend_segment, merge
from inference.decode_graph import GraphDecoder
from inference.kv_cache import PagePool, SegmentStore
from inference.member_names import MemberConstraint, ModuleNames
from inference.persist import DiskCache
from inference.repo_cache import RepoCache
from inference.tokenizer import StreamDecoder, Tokenizer

log = logging.getLogger(__name__)
BUNDLED_DIR = pathlib.Path(__file__).resolve().parent / "bundled"
# Live window on CPU (prefix, suffix tokens of the FIM prompt): each live token costs a scan of the whole
# repository's index keys and dense-layer keys (~1.3 ms a token at 50k repository tokens on two cores), so a cold
# completion within 500 ms affords about 250; the open file's other parts stay reachable through its segments of
# the repository cache. Other devices use the model's tail budget.
LIVE_WINDOW_CPU = (256, 32)
SNAP_TOKENS = 128  # the prefix's left edge moves in steps this large, so typing keeps the tail's KV


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _resolve_dtype(dtype, device: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                 "float16": torch.float16, "fp16": torch.float16}
        if dtype not in table:
            raise ValueError(f"dtype must be one of {sorted(table)}, got {dtype!r}")
        return table[dtype]
    return dtype


class _Tail:
    """KV of the live tail (prompt + generated tokens), contiguous per layer, reused across requests by prefix."""

    def __init__(self, model, device, dtype, capacity: int):
        cfg = model.cfg
        shape = (cfg.num_layers, cfg.num_kv_heads, capacity, cfg.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.ids: list[int] = []
        self.view_key = None

    @property
    def capacity(self) -> int:
        return self.k.shape[2]

    def grow(self, capacity: int) -> None:
        if capacity > self.capacity:
            k, v = self.k, self.v
            self.k = torch.zeros(*k.shape[:2], capacity, k.shape[3], device=k.device, dtype=k.dtype)
            self.v = torch.zeros_like(self.k)
            self.k[:, :, : k.shape[2]] = k
            self.v[:, :, : v.shape[2]] = v


class Engine:
    def __init__(self, model_dir: str | None, *, device: str = "auto", dtype=None, layout: str = "parallel",
                 attention: str = "sparse", top_k_blocks: int = 16, cache_dir: str | None = None,
                 cache_max_bytes: int = 20 << 30, repo_name: str = "repo", segment_cap: int | None = None,
                 dense_layers: int | None = None, summary_mode: str = "minmax", device_max_bytes: int | None = None,
                 host_max_bytes: int = 8 << 30, decode: str = "auto", live_window: tuple[int, int] | None = None,
                 member_names: bool = True):
        if decode not in ("auto", "plain", "static", "graph"):
            raise ValueError(f"decode must be 'auto', 'plain', 'static' or 'graph', got {decode!r}")
        if attention not in ("sparse", "dense"):
            raise ValueError(f"attention must be 'sparse' or 'dense', got {attention!r}")
        if top_k_blocks < 2:
            raise ValueError(f"top_k_blocks must be >= 2 (history blocks + the local block), got {top_k_blocks}")
        if model_dir is None:
            if not (BUNDLED_DIR / "config.json").is_file():
                raise FileNotFoundError(f"no bundled model is installed ({BUNDLED_DIR} has no config.json); "
                                        "pass --model DIR with a Hugging Face checkpoint directory")
            model_dir = str(BUNDLED_DIR)
        self.model_dir = pathlib.Path(model_dir)
        self.device = _resolve_device(device)
        if decode == "graph" and self.device.type != "cuda":
            raise ValueError(f"decode='graph' needs a CUDA device, not {self.device}")
        self.decode = decode if decode != "auto" else ("graph" if self.device.type == "cuda" else "plain")
        self._decoder: GraphDecoder | None = None
        self.dtype = _resolve_dtype(dtype, self.device)
        self.model = checkpoint.load_model(self.model_dir, device=self.device, dtype=self.dtype, dense_layers=dense_layers)
        self.cfg = self.model.cfg
        self.tok = Tokenizer(self.model_dir)
        raw = _raw_config(self.model_dir)
        self.fim = fim.detect(self.tok.vocab, model_type=raw.get("model_type", ""),
                              has_index_branch=self.cfg.has_index_branch, order=raw.get("fim_order", "psm"),
                              segment_names=bool(raw.get("segment_names", False)))
        self.fingerprint = checkpoint.fingerprint(self.model_dir, self.dtype)
        self.layout, self.attention, self.top_k = layout, attention, top_k_blocks
        self.summary_mode = summary_mode
        window = self.cfg.window
        prefix_text = self.fim.repo_prefix(repo_name)
        prefix_len = len(self.tok.encode(prefix_text))
        cap = segment_cap or self.cfg.segment_cap or max(256, min(int(0.75 * window), window - prefix_len - 256))
        tail_offset = self.cfg.tail_offset if (self.cfg.tail_offset and not segment_cap) else cap
        self.tail_budget = max(256, window - prefix_len - tail_offset)
        if live_window is None:
            live_window = LIVE_WINDOW_CPU if self.device.type == "cpu" else (self.tail_budget, self.tail_budget)
        if len(live_window) != 2 or min(live_window) < 1:
            raise ValueError(f"live_window must be (prefix tokens, suffix tokens), both >= 1, got {live_window!r}")
        self.live_window = (int(live_window[0]), int(live_window[1]))
        needs_summaries = any(s for s in self.cfg.sparse_layers) and not self.cfg.has_index_branch
        self.pool = PagePool(self.cfg, self.device, self.dtype, summaries=needs_summaries)
        self.store = SegmentStore(self.pool, device_max_bytes=device_max_bytes, host_max_bytes=host_max_bytes)
        disk = DiskCache(cache_dir, fingerprint=self.fingerprint, max_bytes=cache_max_bytes) if cache_dir else None
        self.repo = RepoCache(self.model, self.tok, self.pool, self.store, layout=layout, prefix_text=prefix_text,
                              header=self.fim.file_header, cap=cap, tail_offset=tail_offset, fingerprint=self.fingerprint, disk=disk)
        self.disk = disk
        self.stop_ids = {i for i in (self.tok.special(s) for s in self.fim.stops) if i is not None}
        self._healer = TokenHealer(self.tok)
        self.member_names = member_names
        self.modules = ModuleNames()
        self._token_texts: list[str] | None = None  # every token's text, and back (member sites)
        self._token_ids: dict[str, int] = {}
        self._tail: _Tail | None = None
        self.last_stats: dict = {}
        self.last_ids: list[int] = []  # token ids generated by the last complete()
        self.repo.sync([], [])  # the shared prefix is cached from the start

    # ---- descriptions -----------------------------------------------------------------------------------
    def info(self) -> dict:
        return dict(model=str(self.model_dir), family=self.cfg.family,
                    params=sum(p.numel() for p in self.model.parameters()),  # tied weights counted once
                    device=str(self.device), dtype=str(self.dtype).removeprefix("torch."), layout=self.layout,
                    attention=self.attention, fim_format=self.fim.name, fingerprint=self.fingerprint,
                    window=self.cfg.window, top_k_blocks=self.top_k,
                    index_branch=self.cfg.has_index_branch, segment_cap=self.repo.cap,
                    live_window=list(self.live_window))

    def stats(self) -> dict:
        segs = self.store.segments.values()
        resident = sum(1 for s in segs if s.pages)
        device_bytes = self.store.device_bytes()
        out = dict(segments=len(self.repo.parts), tokens=sum(p.n_kept for p in self.repo.parts) + self.repo.prefix_len,
                   pages=self.pool.used_pages, bytes=device_bytes, host_bytes=self.store.host_bytes(),
                   evictions=self.store.evictions, host_drops=self.store.host_drops,
                   stored_segments=len(self.store.segments), resident_segments=resident,
                   bytes_per_page=self.pool.bytes_per_page,
                   devices={str(self.device): dict(pages=self.pool.used_pages, bytes=device_bytes,
                                                   capacity_pages=self.pool.capacity)})
        if self.disk is not None:
            out["disk"] = dict(hits=self.disk.hits, misses=self.disk.misses, rejected=self.disk.rejected,
                               writes=self.disk.writes, bytes=self.disk.total_bytes())
        return out

    # ---- repository -------------------------------------------------------------------------------------
    def sync(self, add, drop) -> dict:
        add, drop = list(add), list(drop)
        result = self._sync_cache(add, drop)
        self.modules.update([(path, text) for path, _, text in add], drop)  # member names follow the repository
        return result

    def _sync_cache(self, add: list, drop: list) -> dict:
        return self.repo.sync(add, drop)

    def _member_constraint(self, path: str, prompt: str) -> MemberConstraint | None:
        names, spelled = self.modules.site(prompt, path) if self.member_names else ([], [])
        if not names:
            return None
        if self._token_texts is None:
            self._token_texts = [self.tok.decode([tid]) for tid in range(max(self.tok.vocab.values()) + 1)]
            self._token_ids = {text: tid for tid, text in enumerate(self._token_texts) if text}
        return MemberConstraint(names, spelled, self._token_texts, self._token_ids)

    # ---- forward over the tail --------------------------------------------------------------------------
    def _run_tail(self, new_ids: list[int], start: int, repo_attn: RepoAttention, logits: str) -> torch.Tensor:
        """Runs tokens new_ids at tail offsets start.. (tail KV before `start` is reused)."""
        tail, dev = self._tail, self.device
        n = len(new_ids)
        tail.grow(start + n)
        base = self.repo.tail_position()
        positions = torch.arange(base + start, base + start + n, device=dev)

        def attend(layer, q, k, v, index_q, index_k):
            tail.k[layer, :, start : start + n] = k.transpose(0, 1)
            tail.v[layer, :, start : start + n] = v.transpose(0, 1)
            own_k, own_v = tail.k[layer, :, : start + n], tail.v[layer, :, : start + n]
            first = start + n - q.shape[0]  # tail offset of the first query (the last layer may ask for the last only)
            if repo_attn.dense_layer(layer) and dev.type != "cpu":  # one fused pass over repository + own tokens
                return attend_segment(q, own_k, own_v, *repo_attn.context(layer), offset=first)
            if dev.type == "cpu":
                own = attend_own(q, own_k, own_v, first)
            else:
                own = attend_dense(q, own_k, own_v, causal_start=first)
            return merge([repo_attn(layer, q, index_q), own])

        with torch.inference_mode():
            out = self.model(torch.tensor(new_ids, device=dev), positions, attend, logits=logits, last_query_only=True)
        tail.ids = tail.ids[:start] + list(new_ids)
        return out

    def _prepare_tail(self, ids: list[int], view_key) -> int:
        """Reuse the longest common prefix of the previous tail; returns how many tail tokens are reused."""
        if self._tail is None:
            self._tail = _Tail(self.model, self.device, self.dtype, max(256, len(ids) + 64))
        tail = self._tail
        reuse = 0
        if tail.view_key == view_key:
            limit = min(len(tail.ids), len(ids) - 1)
            while reuse < limit and tail.ids[reuse] == ids[reuse]:
                reuse += 1
        tail.view_key = view_key
        tail.ids = tail.ids[:reuse]
        return reuse

    def forget_tail(self) -> None:
        """Drops the live tail's KV: the next request prefills its whole prompt."""
        self._tail = None

    def _repo_attention(self, live_path: str):
        view = self.repo.view(live_path)
        attn = RepoAttention(self.pool, view, sparse=self.attention == "sparse", top_k=self.top_k,
                             summary_mode=self.summary_mode)
        # The tail's KV depends on the repository only through the KV bytes of the view's segments, which their
        # keys name (an edit of the live file, whose own segments the view leaves out, keeps the tail).
        return attn, (live_path, tuple(self.repo.segment_keys(live_path)), self.repo.tail_position(),
                      self.attention, self.top_k, self.summary_mode)

    def _begin_decoder(self, repo_attn: RepoAttention) -> GraphDecoder | None:
        """The fixed-shape decoder pointed at this request (None for decode="plain")."""
        if self.decode == "plain":
            return None
        if self._decoder is None:
            self._decoder = GraphDecoder(self.model, self.pool, capture=self.decode == "graph")
        self._decoder.capture = self.decode == "graph"
        self._decoder.begin(self._tail, repo_attn.view, sparse=repo_attn.sparse, top_k=self.top_k,
                            summary_mode=self.summary_mode)
        return self._decoder

    # ---- completion -------------------------------------------------------------------------------------
    def _fim_ids(self, path: str, prefix: str, suffix: str, budget: int) -> list[int]:
        """The FIM prompt's token ids within `budget` and the live window: the suffix's start and the prefix's
        end kept, the prefix's left edge dropped in steps of SNAP_TOKENS so that it stays put while typing (the
        previous request's tail KV is reused up to the first changed token)."""
        pieces = [(kind, self.tok.encode(text)) for kind, text in self.fim.tail(path, prefix, suffix)]
        fixed = sum(len(ids) for kind, ids in pieces if kind == "text")
        pre = next((ids for kind, ids in pieces if kind == "prefix"), [])
        suf = next((ids for kind, ids in pieces if kind == "suffix"), [])
        room = max(0, budget - fixed)
        keep_suf = min(len(suf), self.live_window[1], room // 4 if len(pre) + len(suf) > room else len(suf))
        keep_pre = min(len(pre), self.live_window[0], room - keep_suf)
        keep_suf = min(len(suf), self.live_window[1], room - keep_pre)
        drop = len(pre) - keep_pre
        keep_pre = len(pre) - min(len(pre), -(-drop // SNAP_TOKENS) * SNAP_TOKENS)
        out = []
        for kind, ids in pieces:
            if kind == "prefix":
                ids = ids[len(ids) - keep_pre:] if keep_pre else []
            elif kind == "suffix":
                ids = ids[:keep_suf]
            out.extend(ids)
        return out

    def complete(self, path: str, prefix: str, suffix: str, *, max_tokens: int = 64, temperature: float = 0.0,
                 top_p: float = 1.0, top_k: int = 0, stop=(), seed: int | None = None,
                 should_stop: Callable[[], bool] = lambda: False) -> Iterator[str]:
        if max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
        sampling._check(temperature, top_p, top_k)
        return self._complete(path, prefix, suffix, max_tokens, temperature, top_p, top_k, tuple(stop), seed, should_stop)

    def generate(self, path: str, prompt: str, **knobs) -> Iterator[str]:
        """Continues `prompt` as plain text after the repository (no file header, no FIM tokens)."""
        return self.complete(path, prompt, None, **knobs)

    def _complete(self, path, prefix, suffix, max_tokens, temperature, top_p, top_k, stop, seed, should_stop):
        t0 = time.perf_counter()
        budget = self.tail_budget - max_tokens
        prefix, pending = self._healer.split(prefix)
        member = self._member_constraint(path, prefix)
        if suffix is None:  # generate(): the prompt as is, its left end dropped when too long
            ids = self.tok.encode(prefix)
            ids = ids[len(ids) - max(1, budget):]
        else:
            ids = self._fim_ids(path, prefix, suffix, budget)
        repo_attn, view_key = self._repo_attention(path)
        reuse = self._prepare_tail(ids, view_key)
        stats = dict(prompt_tokens=len(ids), prefilled_tokens=len(ids) - reuse, reused_tail_tokens=reuse,
                     generated_tokens=0, ttft_ms=None, decode_ms=0.0, repo_blocks=repo_attn.view.n_blocks,
                     selected_blocks=None, finish="length", member_names=len(member.names) if member else 0,
                     member_steps=0)
        self.last_stats, self.last_ids = stats, []
        generator = sampling.make_generator(seed)
        matcher = sampling.StopMatcher(stop)
        decoder = StreamDecoder(self.tok)
        text, emitted = "", 0
        logits = self._run_tail(ids[reuse:], reuse, repo_attn, "last")[-1]
        fast = self._begin_decoder(repo_attn)
        t_first = None
        for step in range(max_tokens):
            if should_stop():
                stats["finish"] = "cancelled"
                break
            if pending:
                logits = self._healer.constrain(logits, pending)
            if member is not None:
                logits = member.mask(logits)
            tid = sampling.sample(logits, temperature=temperature, top_p=top_p, top_k=top_k, generator=generator)
            if t_first is None:
                t_first = time.perf_counter()
                stats["ttft_ms"] = (t_first - t0) * 1e3
            if tid in self.stop_ids:
                stats["finish"] = "stop_token"
                break
            stats["generated_tokens"] += 1
            self.last_ids.append(tid)
            piece = decoder.push(tid)
            if member is not None:
                member.advance(piece)
                stats["member_steps"] = member.applied
            healed, pending = pending, self._healer.advance(pending, piece)
            text += piece[len(healed) - len(pending):]  # the re-typed characters are the user's, not output
            cut = matcher.cut(text)
            if cut is not None:
                text = text[:cut]
                stats["finish"] = "stop_sequence"
                break
            safe = matcher.safe_len(text)
            if safe > emitted:
                yield text[emitted:safe]
                emitted = safe
            if step + 1 < max_tokens:
                if fast is None:
                    logits = self._run_tail([tid], len(self._tail.ids), repo_attn, "last")[-1]
                else:
                    slot = len(self._tail.ids)
                    logits = fast.step(tid, slot, self.repo.tail_position() + slot)
                    self._tail.ids.append(tid)
        if len(text) > emitted:
            yield text[emitted:]
        if t_first is not None:
            stats["decode_ms"] = (time.perf_counter() - t_first) * 1e3
        if fast is not None:
            blocks, groups = fast.selection_counts()
            repo_attn.stats.blocks, repo_attn.stats.groups = repo_attn.stats.blocks + blocks, repo_attn.stats.groups + groups
        sel = repo_attn.stats
        stats["selected_blocks"] = round(sel.mean_blocks, 2) if sel.groups else None
        self.last_stats = stats

    # ---- scoring ----------------------------------------------------------------------------------------
    def score(self, path: str, text: str, start: int, end: int) -> list[tuple[str, int, float]]:
        """Log-probabilities of the tokens covering text[start:end), the file read causally after the repository."""
        if not 0 <= start <= end <= len(text):
            raise ValueError(f"span [{start}, {end}) is outside the text (length {len(text)})")
        header = self.fim.file_header(path)
        ids, offsets = self.tok.encode_with_offsets(header + text)
        h = len(header)
        span = [i for i, (s, e) in enumerate(offsets) if e > h + start and s < h + end and s >= h and i > 0]
        if not span:
            return []
        last = span[-1]
        head = self.tok.encode(header)
        if last + 1 <= self.tail_budget:
            window, row = ids[: last + 1], {i: i for i in span}
        else:  # keep the header, drop text tokens far left of the span
            lo = last + 1 - (self.tail_budget - len(head))
            window = head + ids[lo : last + 1]
            row = {i: len(head) + i - lo for i in span if i > lo}
        repo_attn, _ = self._repo_attention(path)
        self._prepare_tail([], None)
        self._tail.view_key = None  # scoring neither reuses nor leaves a completion tail
        logits = self._run_tail(window, 0, repo_attn, "all")
        self._tail.ids = []
        logprobs = torch.log_softmax(logits, dim=-1)
        out = []
        for i, j in row.items():
            s, e = offsets[i]
            out.append((text[s - h : e - h], s - h, float(logprobs[j - 1, ids[i]])))
        return out


def _raw_config(model_dir: pathlib.Path) -> dict:
    import json

    try:
        return json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return {}
