"""The dense prefill kernel (one shared block table, query heads stacked into row tiles) against its reference, on
odd shapes: GQA groups that do not divide the row tile, head dims that are not powers of two, partial pages, causal
and all-visible positions, one split and many (merged), fp32 and fp16. Interpreted on CPU tensors without a GPU."""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from kernels import dense_prefill, ops, reference  # noqa: E402

PAGE = reference.PAGE
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _case(seed, n_blocks, Hkv, G, d, dtype):
    g = torch.Generator().manual_seed(seed)
    num_pages = n_blocks + 3
    k = torch.randn(num_pages, Hkv, PAGE, d, generator=g).to(dtype)
    v = torch.randn(num_pages, Hkv, PAGE, d, generator=g).to(dtype)
    table = torch.randperm(num_pages, generator=g)[:n_blocks].to(torch.int32)
    page_lens = torch.randint(0, PAGE + 1, (num_pages,), generator=g).to(torch.int32)
    page_lens[table[0]] = PAGE  # a full first page: every query sees something
    return [x.to(DEV) for x in (k, v, table, page_lens)], g


@pytest.mark.parametrize("T,Hkv,G,d,n_blocks,splits,dtype", [
    (37, 2, 3, 24, 5, None, torch.float32),   # 3 heads per group: tiles cut through a query's heads
    (5, 1, 7, 80, 3, 1, torch.float32),       # one split writes the result itself
    (70, 3, 2, 16, 9, 4, torch.float16),
    (1, 2, 16, 32, 2, None, torch.float32),   # a group as large as the tile
])
def test_dense_prefill_matches_reference(T, Hkv, G, d, n_blocks, splits, dtype):
    (k, v, table, page_lens), g = _case(T + d, n_blocks, Hkv, G, d, dtype)
    q = torch.randn(T, Hkv * G, d, generator=g).to(dtype).to(DEV)
    everything = torch.full((T,), n_blocks * PAGE - 1, dtype=torch.int32, device=DEV)
    causal = torch.sort(torch.randint(0, n_blocks * PAGE, (T,), generator=g)).values.to(torch.int32).to(DEV)
    tol = 1e-4 if dtype == torch.float32 else 2e-3
    for positions in (everything, causal):
        for lens in (page_lens, None):
            got, got_lse = dense_prefill.dense_prefill(q, k, v, table, positions, page_lens=lens, return_lse=True,
                                                       block_m=16, splits=splits)
            want, want_lse = reference.dense_prefill(q, k, v, table, positions, page_lens=lens, return_lse=True)
            assert got.dtype == q.dtype
            torch.testing.assert_close(got.float(), want.float(), atol=tol, rtol=tol)
            assert torch.equal(torch.isinf(got_lse), torch.isinf(want_lse))
            fin = torch.isfinite(want_lse)
            torch.testing.assert_close(got_lse[fin], want_lse[fin], atol=tol, rtol=tol)


def test_queries_that_see_nothing_get_zero_and_minus_infinity():
    (k, v, table, page_lens), g = _case(3, 2, 1, 2, 16, torch.float32)
    page_lens[table[0]] = 0  # the first page is empty: a query at position < 128 sees no token
    q = torch.randn(3, 2, 16, generator=g).to(DEV)
    positions = torch.tensor([4, 100, 200], dtype=torch.int32, device=DEV)
    out, lse = dense_prefill.dense_prefill(q, k, v, table, positions, page_lens=page_lens, return_lse=True, splits=3)
    assert torch.all(out[:2] == 0) and torch.all(torch.isneginf(lse[:2]))
    want, want_lse = reference.dense_prefill(q, k, v, table, positions, page_lens=page_lens, return_lse=True)
    torch.testing.assert_close(out, want, atol=1e-4, rtol=1e-4)
    assert torch.isfinite(lse[2]).all() == torch.isfinite(want_lse[2]).all()


def test_ops_switch_runs_the_kernel_or_the_reference():
    (k, v, table, page_lens), g = _case(5, 3, 2, 2, 16, torch.float32)
    q = torch.randn(9, 4, 16, generator=g).to(DEV)
    positions = torch.arange(9, dtype=torch.int32, device=DEV) * 40
    with ops.use_backend("triton"):
        a = ops.dense_prefill(q, k, v, table, positions, page_lens=page_lens)
    with ops.use_backend("reference"):
        b = ops.dense_prefill(q, k, v, table, positions, page_lens=page_lens)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.gpu
def test_gpu_dense_prefill_bf16_at_a_prompt_shape():
    """bf16 at the 1.5B model's shape (Hq/Hkv/d = 12/2/128), a 666-token prompt over 60 pages, partial pages."""
    (k, v, table, page_lens), g = _case(23, 60, 2, 6, 128, torch.bfloat16)
    q = torch.randn(666, 12, 128, generator=g).bfloat16().cuda()
    for positions in (torch.full((666,), 60 * PAGE - 1, dtype=torch.int32, device="cuda"),
                      torch.arange(666, dtype=torch.int32, device="cuda") * 11):
        got, got_lse = dense_prefill.dense_prefill(q, k, v, table, positions, page_lens=page_lens, return_lse=True)
        want, want_lse = reference.dense_prefill(q, k, v, table, positions, page_lens=page_lens, return_lse=True)
        rel = ((got.float() - want.float()).norm() / want.float().norm()).item()
        assert rel < 1e-2, rel
        fin = torch.isfinite(want_lse)
        torch.testing.assert_close(got_lse[fin], want_lse[fin], atol=2e-2, rtol=1e-3)
