"""Token healing: a prompt that ends in whitespace is cut back to the last word, and the first generated
tokens are constrained to type those characters again.

Byte-level BPE merges a word's leading space into the word ("Ġreturn"), and a newline with the next line's
indentation into one token, so a prompt ending in whitespace (after "return ", on an indented blank line) ends
on a token the model has rarely seen there, and its continuation goes astray. Cutting the whitespace and letting
the model re-type it puts the token boundary where training put it.
Knows nothing of prompts or sampling beyond a logits vector.
"""

from __future__ import annotations

import torch

from inference.tokenizer import Tokenizer

HEALED = " \t\n"


class TokenHealer:
    def __init__(self, tokenizer: Tokenizer):
        self.tok = tokenizer
        self._texts: dict[int, str] | None = None  # tokens whose text starts with a healed character

    def split(self, prompt: str) -> tuple[str, str]:
        """(prompt without its trailing whitespace, the cut characters the output must start with)."""
        kept = prompt.rstrip(HEALED)
        return kept, prompt[len(kept):]

    def constrain(self, logits: torch.Tensor, pending: str) -> torch.Tensor:
        """logits with every token masked out that cannot start `pending` (or continue past all of it)."""
        allowed = [tid for tid, text in self._candidates().items()
                   if text.startswith(pending) or pending.startswith(text)]
        if not allowed:
            return logits
        index = torch.tensor(allowed, device=logits.device)
        out = torch.full_like(logits, float("-inf"))
        out[index] = logits[index]
        return out

    @staticmethod
    def advance(pending: str, token_text: str) -> str:
        """What is still to be re-typed after a token with this text."""
        return pending[len(token_text):] if pending.startswith(token_text) else ""

    def _candidates(self) -> dict[int, str]:
        if self._texts is None:
            texts = {}
            for tid in self.tok.vocab.values():
                text = self.tok.decode([tid])
                if text and text[0] in HEALED:
                    texts[tid] = text
            self._texts = texts
        return self._texts
