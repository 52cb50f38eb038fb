"""fp8 (float8_e4m3fn) K/V pages: quantise on write, dequantise for reference checks.

Scale granularity: one fp32 scale per (page, KV head), value = stored * scale, chosen as amax / 448 over the
page's written tokens of that head (448 = largest finite e4m3 value). Whole pages are quantised by
`quantize_pages`; tokens appended to a partly filled page go through `write_tokens`, which raises the page's
scale when a new token needs it and then re-rounds the page's earlier tokens to the new scale (one extra
rounding of those tokens, instead of keeping a bf16 copy). Pure torch on any device (these run once per
written page or token, off the per-layer read path). Not here: reading fp8 pages (`kernels.fused_decode`,
`kernels.reference.sparse_decode` with k_scale/v_scale).
"""

from __future__ import annotations

import torch

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0
_TINY = 1e-12  # scale of an all-zero page head (anything positive; its values are 0)


def empty_pages(num_pages: int, Hkv: int, d: int, page: int = 128, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """An fp8 page pool [num_pages, Hkv, page, d] and its scales fp32 [num_pages, Hkv] (1.0)."""
    return (torch.zeros(num_pages, Hkv, page, d, dtype=torch.uint8, device=device).view(FP8),
            torch.ones(num_pages, Hkv, dtype=torch.float32, device=device))


def quantize_pages(src: torch.Tensor, dst: torch.Tensor, scales: torch.Tensor, page_ids: torch.Tensor, page_lens=None) -> None:
    """Quantise whole pages: src [P, Hkv, page, d] (any float dtype) into dst[page_ids] (fp8) and scales[page_ids].
    page_lens [P] (optional) = written tokens of each page; later token slots are stored as 0."""
    x = src.float()
    if page_lens is not None:
        tok = torch.arange(x.shape[2], device=x.device)
        x = x * (tok[None, :] < page_lens.to(x.device).long()[:, None])[:, None, :, None]
    amax = x.abs().amax(dim=(2, 3))  # [P, Hkv]
    scale = torch.where(amax > 0, amax / FP8_MAX, torch.full_like(amax, _TINY))
    ids = page_ids.long()
    dst.view(torch.uint8)[ids] = (x / scale[:, :, None, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8).view(torch.uint8)
    scales[ids] = scale


def dequantize_pages(pages: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """fp32 values of fp8 pages [P, Hkv, page, d] with their scales [P, Hkv]."""
    return pages.float() * scales.float()[:, :, None, None]


def write_tokens(dst: torch.Tensor, scales: torch.Tensor, page_ids: torch.Tensor, slots: torch.Tensor, values: torch.Tensor,
                 page_lens: torch.Tensor) -> None:
    """Append tokens to fp8 pages: token i goes to page page_ids[i], slot slots[i], values [T, Hkv, d].
    page_lens [num_pages] = tokens already written in each page (slots below it are kept; the caller updates it).
    A page whose scale must grow is re-rounded to the new scale; a page's first token sets its scale afresh."""
    ids = page_ids.long()
    slots = slots.long()
    for page in torch.unique(ids).tolist():
        mine = (ids == page).nonzero().flatten()
        old_n = int(page_lens[page])
        vals = values[mine].float()  # [t, Hkv, d]
        amax = vals.abs().amax(dim=(0, 2))  # [Hkv]
        old_scale = scales[page].float()
        old = dst[page].float() * old_scale[:, None, None]  # [Hkv, page, d], current values
        if old_n > 0:
            amax = torch.maximum(amax, old[:, :old_n].abs().amax(dim=(1, 2)))
        scale = torch.where(amax > 0, amax / FP8_MAX, torch.full_like(amax, _TINY))
        new = torch.zeros_like(old)
        new[:, :old_n] = old[:, :old_n]
        new[:, slots[mine]] = vals.transpose(0, 1)
        dst.view(torch.uint8)[page] = (new / scale[:, None, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8).view(torch.uint8)
        scales[page] = scale
