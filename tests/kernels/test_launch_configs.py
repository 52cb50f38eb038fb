"""Launch parameters by GPU generation: the table each kernel falls back to, and the Hopper values run end to end.

Which generation a CUDA device is needs a GPU; here `launch_configs.generation` is patched to answer "hopper", and
the kernels run under TRITON_INTERPRET=1 on CPU tensors with Hopper's tile sizes, against the references.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from kernels import fused_decode, index_scores, launch_configs, reference, sparse_decode, topk  # noqa: E402

PAGE = reference.PAGE
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
DEV = "cuda" if torch.cuda.is_available() else "cpu"


def test_cpu_tensors_take_the_portable_table_and_given_values_win():
    assert launch_configs.generation("cpu") == "portable"
    assert launch_configs.table(torch.device("cpu")) == launch_configs.PORTABLE
    cfg = launch_configs.launch_config("fused_decode", "cpu", block_n=32, num_warps=None)
    assert cfg == {**launch_configs.PORTABLE["fused_decode"], "block_n": 32}
    assert not any(v.get("pdl") or v.get("trigger") for v in launch_configs.PORTABLE.values())


def test_hopper_table_holds_the_h100_tuning():
    hopper = launch_configs.HOPPER
    assert hopper["index"] == {"pages_per_program": 8, "num_warps": 4, "num_stages": 4}
    assert hopper["decode"] == {"block_n": 128, "num_warps": 4, "num_stages": 2}
    assert hopper["fused_topk"] == {"block_pages": 128, "dim_chunk": 32, "num_warps": 8, "trigger": True}
    assert hopper["fused_decode"] == {"block_n": 128, "units_per_split": 1, "num_warps": 8, "num_stages": 1, "pdl": True}
    assert set(hopper) == set(launch_configs.PORTABLE)
    for kernel in hopper:
        assert set(hopper[kernel]) == set(launch_configs.PORTABLE[kernel]), kernel


def test_kernels_with_hopper_parameters_match_the_references(monkeypatch):
    monkeypatch.setattr(launch_configs, "generation", lambda device: "hopper")
    g = torch.Generator().manual_seed(70)
    G, Hkv, d = 3, 2, 64
    seqs = [97, 6 * PAGE + 1]
    nbs = [(s + PAGE - 1) // PAGE for s in seqs]
    P = sum(nbs) + 1
    table = torch.zeros(len(seqs), max(nbs) + 1, dtype=torch.int32)
    perm = torch.randperm(P, generator=g).to(torch.int32)
    table[0, : nbs[0]], table[1, : nbs[1]] = perm[: nbs[0]], perm[nbs[0] : nbs[0] + nbs[1]]
    table, seq = table.to(DEV), torch.tensor(seqs, dtype=torch.int32, device=DEV)
    kc, vc = (torch.randn(P, Hkv, PAGE, d, generator=g).half().to(DEV) for _ in range(2))
    q = torch.randn(len(seqs), G * Hkv, d, generator=g).half().to(DEV)
    kmin, kmax, _ = reference.page_summaries(kc, torch.arange(P, device=DEV), torch.full((P,), PAGE, device=DEV))
    idx = torch.randn(P, PAGE, 32, generator=g).half().to(DEV)
    qi = torch.randn(len(seqs), Hkv, 32, generator=g).half().to(DEV)

    got = index_scores.index_block_scores(qi, idx, table, seq)
    want = reference.index_block_scores(qi, idx, table, seq)
    torch.testing.assert_close(got[torch.isfinite(want)], want[torch.isfinite(want)], atol=1e-3, rtol=1e-3)
    scores = index_scores.summary_block_scores(q, kmin, kmax, table, seq)
    want = reference.summary_block_scores(q, kmin, kmax, table, seq)
    torch.testing.assert_close(scores[torch.isfinite(want)], want[torch.isfinite(want)], atol=1e-3, rtol=1e-4)
    sel = topk.topk_blocks(scores, seq, 4)
    assert torch.equal(sel.cpu(), reference.topk_blocks(scores.cpu(), seq.cpu(), 4))
    _, fsel, _, _ = fused_decode.summary_topk(q, kmin, kmax, table, seq, 4)
    assert torch.equal(fsel, sel)
    want = reference.sparse_decode(q, kc, vc, table, seq, sel)
    for got in (sparse_decode.sparse_decode(q, kc, vc, table, seq, sel), fused_decode.sparse_decode_merged(q, kc, vc, table, seq, sel)):
        assert ((got.float() - want.float()).norm() / want.float().norm()).item() < 2e-3
    dense = sparse_decode.dense_decode(q, kc, vc, table, seq)  # splits sized for Hopper's 128-token parts
    torch.testing.assert_close(dense, reference.dense_decode(q, kc, vc, table, seq), atol=2e-3, rtol=2e-3)
    positions = torch.tensor([0, 200, 6 * PAGE], dtype=torch.int32, device=DEV)
    rows, pseq = reference.prefill_rows(table[1], positions)
    psel = reference.topk_blocks(torch.randn(3, Hkv, table.shape[1], generator=g), pseq.cpu(), 3).to(DEV)
    qp = q[:1].expand(3, -1, -1).contiguous()
    got = sparse_decode.sparse_prefill(qp, kc, vc, table[1], positions, psel)
    torch.testing.assert_close(got, reference.sparse_prefill(qp, kc, vc, table[1], positions, psel), atol=2e-3, rtol=2e-3)
