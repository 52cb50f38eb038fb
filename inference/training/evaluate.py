"""Held-out measurements for the training model: bits per byte of files alone and as the tail of their project.

`file_bpb`: each held-out file "<|file_sep|>{path}\n{code}" (first SEGMENT_CAP tokens) behind its repo prefix,
plain causal.  `tail_bpb`: the same files as the live tail of a `parallel` row, scored once seeing the project's
other files (MSA-sparse or dense) and once seeing only the prefix and itself; same tokens, two masks.
`middle_scores`: FIM middles (editor-shaped, call site, renamed call site) as tails of parallel rows.
Not its job: the benchmark against the serving engine (benchmarks/bench_quality.py).
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
import torch.nn.functional as F

from inference.training.batches import SEGMENT_CAP, Encoder, RowBuilder, visibility


def _bytes_of(enc: Encoder, ids) -> int:
    return len(enc.tok.decode([int(i) for i in ids], skip_special_tokens=False).encode("utf-8"))


@torch.no_grad()
def file_bpb(model, enc: Encoder, projects: dict, device, max_files: int = 400) -> dict:
    model.eval()
    total_bits, total_bytes, files = 0.0, 0, 0
    for name in sorted(projects):
        prefix = enc.ids(f"<|repo_name|>{name.split(':', 1)[-1]}\n")
        for path, text in projects[name]:
            if files >= max_files:
                break
            seg = enc.ids(f"<|file_sep|>{path}\n{text}")[: SEGMENT_CAP]
            ids = torch.as_tensor(np.concatenate([prefix, seg]), device=device, dtype=torch.long)[None]
            T = ids.shape[1]
            pos = torch.arange(T, device=device)[None]
            vis = torch.ones(T, T, dtype=torch.bool, device=device).tril()[None]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits, _ = model(ids, pos, vis, sparse=True)
            start = len(prefix)  # predict seg[1:] from everything before it
            nll = F.cross_entropy(logits[0, start:-1].float(), ids[0, start + 1:], reduction="sum").item()
            total_bits += nll / math.log(2)
            total_bytes += _bytes_of(enc, seg[1:])
            files += 1
    model.train()
    return {"files": files, "bytes": total_bytes, "bits_per_byte": total_bits / max(total_bytes, 1)}


@torch.no_grad()
def tail_bpb(model, enc: Encoder, projects: dict, file_ids: dict, device, T: int, rows: int = 64, seed: int = 1,
             sparse: bool = True, segment_names: bool = False) -> dict:
    """Bits per byte of plain tails with the project's files visible vs hidden (multi-file projects only)."""
    multi = {k: v for k, v in projects.items() if len(v) > 1}
    builder = RowBuilder(enc, multi, {k: file_ids[k] for k in multi}, T, seed, fim_rate=0.0, causal_rate=0.0,
                         segment_names=segment_names)
    builder.rng = random.Random(seed)
    model.eval()
    bits = {"with_repo": 0.0, "file_only": 0.0}
    nbytes = 0
    for _ in range(rows):
        row = builder.row()
        t = {k: torch.as_tensor(getattr(row, k), device=device)[None] for k in ("ids", "pos", "grp", "doc", "tail", "pad", "labels")}
        keep = t["tail"][0] & (t["labels"][0] >= 0)
        if not keep.any():
            continue
        nbytes += _bytes_of(enc, t["labels"][0][keep].tolist())
        for key, tail_flag in (("with_repo", t["tail"]), ("file_only", torch.zeros_like(t["tail"]))):
            vis = visibility(t["grp"], t["doc"], tail_flag, t["pad"])
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits, _ = model(t["ids"].long(), t["pos"].long(), vis, sparse=sparse)
            nll = F.cross_entropy(logits[0][keep].float(), t["labels"][0][keep], reduction="sum").item()
            bits[key] += nll / math.log(2)
    model.train()
    return {"bytes": nbytes, **{f"{k}_bits_per_byte": v / max(nbytes, 1) for k, v in bits.items()}}


MIDDLE_KINDS = {"editor": dict(callsite_rate=0.0, rename_rate=0.0), "call_site": dict(callsite_rate=1.0, rename_rate=0.0),
                "renamed_call_site": dict(callsite_rate=1.0, rename_rate=1.0)}


@torch.no_grad()
def middle_scores(model, enc: Encoder, projects: dict, file_ids: dict, device, T: int, rows: int = 32, seed: int = 2,
                  sparse: bool = True, fim_order: str = "psm", segment_names: bool = False) -> dict:
    """Per kind of FIM middle (editor-shaped, call site of a name defined in an included context file, the same
    after renaming): mean cross-entropy of the middle tokens (nats) and the share of middles whose every token,
    <|endoftext|> included, is the model's argmax (= greedy completion reproduces the middle exactly)."""
    multi = {k: v for k, v in projects.items() if len(v) > 1}
    out = {}
    model.eval()
    for kind, options in MIDDLE_KINDS.items():
        builder = RowBuilder(enc, multi, {k: file_ids[k] for k in multi}, T, seed, fim_rate=1.0, causal_rate=0.0,
                             fim_order=fim_order, segment_names=segment_names, **options)
        nll, tokens, exact, middles = 0.0, 0, 0, 0
        for _ in range(rows):
            row = builder.row()
            t = {k: torch.as_tensor(getattr(row, k), device=device)[None] for k in ("ids", "pos", "grp", "doc", "tail", "pad")}
            vis = visibility(t["grp"], t["doc"], t["tail"], t["pad"])
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits, _ = model(t["ids"].long(), t["pos"].long(), vis, sparse=sparse)
            where = np.flatnonzero(row.middle)
            if not len(where):
                continue
            labels = torch.as_tensor(row.labels[where], device=device)
            picked = logits[0, torch.as_tensor(where, device=device)].float()
            nll += F.cross_entropy(picked, labels, reduction="sum").item()
            tokens += len(where)
            hit = (picked.argmax(-1) == labels).cpu().numpy()
            for run in np.split(np.arange(len(where)), np.flatnonzero(np.diff(where) > 1) + 1):
                middles += 1
                exact += bool(hit[run].all())
        out[kind] = {"middles": middles, "tokens": tokens, "ce": round(nll / max(tokens, 1), 4),
                     "exact": round(exact / max(middles, 1), 4)}
    model.train()
    return out
