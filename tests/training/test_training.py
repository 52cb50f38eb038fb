"""A few optimiser steps on parallel-layout rows lower the loss; the index branch learns only through its KL."""

import torch

from inference.training.batches import Encoder
from inference.training.model import MSAForTraining, causal_visible
from inference.training.train import Prefetcher, TrainConfig, train
from tests.training.conftest import synthetic_projects


def test_a_few_steps_reduce_the_loss(tokenizer, tiny_config):
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest and immune to a busy machine
    enc = Encoder(tokenizer)
    projects = synthetic_projects()
    file_ids = {k: enc.many([f"<|file_sep|>{p}\n{t}" for p, t in v]) for k, v in projects.items()}
    model = MSAForTraining(tiny_config)
    prefetch = Prefetcher(enc, projects, file_ids, T=512, batch=2, seed=0, threads=1, depth=2)
    tc = TrainConfig(seq_len=512, batch=2, lr=1e-2, warmup_steps=1, steps=16, warmup_frac=0.5, kl_rows=16, log_every=1)
    try:
        history = train(model, prefetch, tc, torch.device("cpu"))
    finally:
        prefetch.stop()
        torch.set_num_threads(threads)
    first = sum(h["ce"] for h in history[:3]) / 3
    last = sum(h["ce"] for h in history[-3:]) / 3
    assert last < first - 0.5, (first, last)
    assert any(h["sparse"] for h in history) and not history[0]["sparse"]
    assert all(h["kl"] is not None and h["kl"] >= 0 for h in history)


def test_kl_trains_only_the_index_branch(tiny_config):
    torch.manual_seed(0)
    model = MSAForTraining(tiny_config)
    T = 256
    ids = torch.randint(0, 2000, (2, T))
    pos = torch.arange(T)[None].expand(2, T)
    rows = torch.randint(0, T, (2, 32))
    for sparse in (False, True):
        model.zero_grad()
        _, kl = model(ids, pos, causal_visible(T, 2), sparse=sparse, kl_rows=rows)
        kl.backward()
        for name, p in model.named_parameters():
            has = p.grad is not None and p.grad.abs().sum() > 0
            assert has == (".index_" in name), name
