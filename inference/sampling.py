"""Next-token choice from logits: greedy, temperature, top-k, top-p, seeded by a torch.Generator.

Works on one fp32 logits row at a time. Stop sequences and token budgets are the engine's job.
"""

from __future__ import annotations

import torch


def _check(temperature: float, top_p: float, top_k: int) -> None:
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 = off), got {top_k}")


def sample(logits: torch.Tensor, *, temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0,
           generator: torch.Generator | None = None) -> int:
    """logits [V] -> token id. temperature 0 is greedy (argmax, lowest id on ties)."""
    _check(temperature, top_p, top_k)
    logits = logits.float()
    if temperature == 0:
        return int(torch.argmax(logits))
    logits = logits / temperature
    if top_k and top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # mass strictly above each candidate
        sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))


def make_generator(seed: int | None) -> torch.Generator:
    g = torch.Generator(device="cpu")
    if seed is None:
        g.seed()
    else:
        g.manual_seed(int(seed))
    return g


class StopMatcher:
    """Finds the earliest stop sequence in streamed text; says how much text is safe to emit."""

    def __init__(self, stops):
        self.stops = [s for s in stops if s]

    def cut(self, text: str) -> int | None:
        """Index where the earliest stop sequence begins in `text`, or None."""
        hits = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        return min(hits) if hits else None

    def safe_len(self, text: str) -> int:
        """Length of the prefix of `text` that cannot become part of a stop sequence later."""
        hold = 0
        for s in self.stops:
            for n in range(min(len(s) - 1, len(text)), 0, -1):
                if text.endswith(s[:n]):
                    hold = max(hold, n)
                    break
        return len(text) - hold
