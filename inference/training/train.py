"""The training loop: next-token + FIM loss on parallel-layout and causal rows, plus the MSA index-branch KL.

Phases (msa.md §1.4): for the first `warmup_frac` of the run every layer attends densely and the index branch
learns by KL over the whole visible history; afterwards sparse layers attend only to the MSA top-k blocks their
index branch picks and the KL is taken over that support.  The stop is time-based (`minutes`) or step-based
(`steps`).  Not its job: corpus building (build_corpus.py) or checkpoint format (export.py).
"""

from __future__ import annotations

import json
import logging
import math
import queue
import random
import site
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from inference.training.batches import Encoder, RowBuilder, file_segment_text, visibility
from inference.training.corpus import Deduplicator, collect, group_by_project, read_records
from inference.training.evaluate import file_bpb, middle_scores, tail_bpb
from inference.training.export import save_checkpoint
from inference.training.model import ModelConfig, MSAForTraining
from inference.training.tokenizer import load as load_tokenizer

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    seq_len: int = 4096
    batch: int = 16
    lr: float = 3e-3
    min_lr_frac: float = 0.1
    warmup_steps: int = 200
    weight_decay: float = 0.1
    minutes: float = 8.0
    steps: int | None = None
    warmup_frac: float = 0.3
    kl_weight: float = 1.0
    kl_rows: int = 128
    middle_weight: float = 3.0  # loss weight of tokens that predict a FIM middle (and its <|endoftext|>)
    copy_weight: float = 1.0  # loss weight (at least) of tokens of renamed cross-file names in the live tail
    log_every: int = 25
    seed: int = 0


def load_projects(data_dir: Path, python_site: str | None, python_bytes: int, max_project_bytes: int,
                  python_skip_bytes: int = 0) -> dict:
    """Training projects from the carried train-*.jsonl.xz files plus (optionally) a site-packages folder, whose
    projects are taken in sorted order after skipping the first python_skip_bytes worth."""
    projects: dict = {}
    for path in sorted(data_dir.glob("train-*.jsonl.xz")):
        projects.update(group_by_project(read_records(path)))
    if python_site:
        hashes = data_dir / "heldout-hashes.txt"
        dedup = Deduplicator(hashes.read_text().split() if hashes.exists() else [])
        stats: dict = {}
        used = 0
        for project in collect(Path(python_site), "python", dedup, stats, want_heldout=False):
            key = f"python:{project.name}"
            if key in projects:
                continue
            files, size = [], 0
            for path, text in project.files:
                if size >= max_project_bytes:
                    break
                files.append((path, text))
                size += len(text)
            used += size
            if used <= python_skip_bytes:
                continue
            projects[key] = files
            if used >= python_bytes + python_skip_bytes:
                break
        log.info("python from %s: %d bytes, %s", python_site, used, stats)
        if python_bytes > 0 and used <= python_skip_bytes:
            raise SystemExit(f"--python-skip-mb {python_skip_bytes / 1e6:g} skips all {used / 1e6:.0f} MB of Python "
                             f"in {python_site}: no Python would be trained on")
    return projects


def _config(checkpoint: str | None) -> dict:
    return json.loads((Path(checkpoint) / "config.json").read_text()) if checkpoint else {}


def tokenize(enc: Encoder, projects: dict, segment_names: bool = False) -> dict:
    names = sorted(projects)
    flat = [file_segment_text(p, t, segment_names) for n in names for p, t in projects[n]]
    ids = enc.many(flat)
    out, at = {}, 0
    for n in names:
        out[n] = ids[at: at + len(projects[n])]
        at += len(projects[n])
    return out


class Prefetcher:
    """Background row builders feeding a bounded queue: threads (the tokenizer releases the GIL, the rest of row
    building does not), or forked processes when `processes` > 0 (the projects are shared copy-on-write)."""

    def __init__(self, enc, projects, file_ids, T: int, batch: int, seed: int, threads: int = 3, depth: int = 8,
                 processes: int = 0, **row_options):
        self.batch = batch
        builders = [RowBuilder(enc, projects, file_ids, T, seed * 1000 + k, **row_options)
                    for k in range(processes or threads)]
        if processes:
            import multiprocessing

            ctx = multiprocessing.get_context("fork")
            self.q, self.stopped = ctx.Queue(maxsize=depth), ctx.Event()
            self.workers = [ctx.Process(target=self._run, args=(b,), daemon=True) for b in builders]
        else:
            self.q, self.stopped = queue.Queue(maxsize=depth), threading.Event()
            self.workers = [threading.Thread(target=self._run, args=(b,), daemon=True) for b in builders]
        for worker in self.workers:
            worker.start()

    def _run(self, builder: RowBuilder):
        while not self.stopped.is_set():
            rows = [builder.row() for _ in range(self.batch)]
            batch = {k: np.stack([getattr(r, k) for r in rows]) for k in ROW_FIELDS}
            while not self.stopped.is_set():
                try:
                    self.q.put(batch, timeout=0.5)
                    break
                except queue.Full:
                    continue

    def stop(self) -> None:
        self.stopped.set()
        for worker in self.workers:
            if hasattr(worker, "terminate"):
                worker.terminate()

    def next(self) -> dict:
        return self.q.get()


ROW_FIELDS = ("ids", "pos", "grp", "doc", "tail", "pad", "labels", "middle", "copy")


def weighted_ce(logits: torch.Tensor, labels: torch.Tensor, middle: torch.Tensor, middle_weight: float,
                copy: torch.Tensor | None = None, copy_weight: float = 1.0
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, plain mean CE, mean CE of middle tokens (0 if none)): the loss is the mean CE over labelled tokens with
    middle tokens counted `middle_weight` times and tokens of renamed cross-file names (`copy`) at least
    `copy_weight` times."""
    flat = labels.reshape(-1)
    per = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), flat, ignore_index=-100, reduction="none")
    real = (flat >= 0).float()
    mid = middle.reshape(-1).float() * real
    weight = real + (middle_weight - 1.0) * mid
    if copy is not None and copy_weight != 1.0:
        weight = torch.maximum(weight, copy_weight * copy.reshape(-1).float() * real)
    loss = (per * weight).sum() / weight.sum().clamp(min=1.0)
    plain = (per * real).sum() / real.sum().clamp(min=1.0)
    mid_ce = (per * mid).sum() / mid.sum().clamp(min=1.0)
    return loss, plain, mid_ce


def sample_kl_rows(tail: torch.Tensor, pad: torch.Tensor, count: int, gen: torch.Generator) -> torch.Tensor:
    """[B, count] query rows for the KL: half from live-tail tokens where there are any, the rest anywhere real."""
    weights = (~pad).float() + 4.0 * tail.float()
    return torch.multinomial(weights, count, replacement=True, generator=gen)


def lr_at(tc: TrainConfig, step: int, progress: float) -> float:
    warm = min(1.0, (step + 1) / tc.warmup_steps)
    cosine = tc.min_lr_frac + (1 - tc.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return tc.lr * warm * cosine


def train(model: MSAForTraining, prefetch: Prefetcher, tc: TrainConfig, device: torch.device, checkpoint=None) -> list[dict]:
    """Runs the optimiser until the step or time budget is spent; calls `checkpoint` once at the sparse switch."""
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and "embed" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() == 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": tc.weight_decay}, {"params": rest, "weight_decay": 0.0}],
                            lr=tc.lr, betas=(0.9, 0.95), fused=device.type == "cuda")
    gen = torch.Generator(device=device).manual_seed(tc.seed)
    history, start, step, tokens = [], time.time(), 0, 0
    history_marks: dict = {}
    while True:
        elapsed = time.time() - start
        progress = step / tc.steps if tc.steps else elapsed / (tc.minutes * 60)
        if progress >= 1.0:
            break
        sparse = progress >= tc.warmup_frac
        if sparse and not history_marks.get("switched"):
            history_marks["switched"] = True
            if checkpoint is not None:
                checkpoint()
        b = {k: torch.as_tensor(v).to(device, non_blocking=True) for k, v in prefetch.next().items()}
        vis = visibility(b["grp"], b["doc"], b["tail"], b["pad"])
        rows = sample_kl_rows(b["tail"], b["pad"], tc.kl_rows, gen)
        for group in opt.param_groups:
            group["lr"] = lr_at(tc, step, progress)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits, kl = model(b["ids"].long(), b["pos"].long(), vis, sparse=sparse, kl_rows=rows)
        weighted, ce, mid_ce = weighted_ce(logits, b["labels"], b["middle"], tc.middle_weight,
                                          b["copy"], tc.copy_weight)
        loss = weighted + (tc.kl_weight * kl if kl is not None else 0.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += int((b["labels"] >= 0).sum())
        if step % tc.log_every == 0 or tc.steps:
            entry = {"step": step, "seconds": round(time.time() - start, 1), "tokens": tokens, "ce": round(ce.item(), 4),
                     "ce_middle": round(mid_ce.item(), 4),
                     "kl": round(kl.item(), 4) if kl is not None else None, "lr": opt.param_groups[0]["lr"], "sparse": sparse}
            history.append(entry)
            log.info("%s", entry)
    return history


def run(args) -> int:
    """`msa-lsp train fit`: builds data, trains, evaluates on held-out projects, writes the checkpoint."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    data_dir, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logging.getLogger().addHandler(handler)
    enc = Encoder(load_tokenizer(Path(args.tokenizer)))
    python_site = None if args.python_site == "none" else (args.python_site or site.getsitepackages()[0])
    t0 = time.time()
    projects = load_projects(data_dir, python_site, int(args.python_mb * 1e6), int(args.project_mb * 1e6),
                             int(args.python_skip_mb * 1e6))
    segment_names = args.segment_names or _config(args.init_from).get("segment_names", False)
    file_ids = tokenize(enc, projects, segment_names)
    n_tokens = sum(len(a) for v in file_ids.values() for a in v)
    log.info("data: %d projects, %d files, %d tokens, %.0f s", len(projects), sum(map(len, projects.values())), n_tokens, time.time() - t0)
    if args.init_from:
        from inference.training.export import load_checkpoint

        model = load_checkpoint(Path(args.init_from)).to(device)
        cfg = model.cfg
        log.info("continuing from %s", args.init_from)
    else:
        cfg = ModelConfig(**json.loads(args.model_config)) if args.model_config else ModelConfig()
        cfg.vocab_size = enc.tok.get_vocab_size()
        model = MSAForTraining(cfg).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model: %d parameters, %s", n_params, cfg.to_dict())
    minutes = args.minutes
    if args.deadline_minutes:
        minutes = min(minutes, args.deadline_minutes - (time.time() - t0) / 60 - args.reserve_minutes)
        if minutes <= 0:
            raise SystemExit(f"--deadline-minutes {args.deadline_minutes}: loading the data took "
                             f"{(time.time() - t0) / 60:.1f} minutes, leaving no time to train")
        log.info("training for %.2f minutes", minutes)
    tc = TrainConfig(seq_len=args.seq_len, batch=args.batch, lr=args.lr, minutes=minutes, steps=args.steps,
                     warmup_frac=args.warmup_frac, seed=args.seed, log_every=args.log_every,
                     warmup_steps=args.lr_warmup_steps, middle_weight=args.middle_weight, copy_weight=args.copy_weight)
    rows = dict(fim_rate=args.fim_rate, causal_rate=args.causal_rate, callsite_rate=args.callsite_rate,
                rename_rate=args.rename_rate, fim_order=args.fim_order, rename_names=args.rename_names,
                rename_own=args.rename_own, qualify_rate=args.qualify_rate, segment_names=segment_names)
    log.info("rows: %s, middle weight %.1f, copy weight %.1f", rows, tc.middle_weight, tc.copy_weight)
    prefetch = Prefetcher(enc, projects, file_ids, tc.seq_len, tc.batch, tc.seed, threads=args.row_threads,
                          processes=args.row_processes, **rows)
    history = train(model, prefetch, tc, device,
                    checkpoint=lambda: save_checkpoint(model, out, None, fim_order=args.fim_order, segment_names=segment_names))
    prefetch.stop()
    save_checkpoint(model, out, None, fim_order=args.fim_order, segment_names=segment_names)
    report = {"parameters": n_params, "train_data": {"projects": len(projects), "tokens": n_tokens},
              "tokens_seen": history[-1]["tokens"] if history else 0, "steps": history[-1]["step"] if history else 0,
              "history": history, "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu"}
    heldout_path = data_dir / "heldout.jsonl.xz"
    if heldout_path.exists() and not args.skip_eval:
        held = group_by_project(read_records(heldout_path))
        report["heldout_file_bpb"] = file_bpb(model, enc, held, device)
        held_ids = tokenize(enc, held, segment_names)
        report["heldout_tail_bpb"] = tail_bpb(model, enc, held, held_ids, device, tc.seq_len, segment_names=segment_names)
        report["heldout_middles"] = middle_scores(model, enc, held, held_ids, device, tc.seq_len, fim_order=args.fim_order,
                                                  segment_names=segment_names)
        log.info("held-out: %s %s %s", report["heldout_file_bpb"], report["heldout_tail_bpb"], report["heldout_middles"])
    (out / "training_report.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0
