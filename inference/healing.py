"""Token healing: a prompt that ends in whitespace or inside a word is cut back to the last word boundary, and
the first generated tokens are constrained to type those characters again.

Byte-level BPE merges a word's leading space into the word ("Ġreturn"), and a newline with the next line's
indentation into one token, so a prompt ending in whitespace (after "return ", on an indented blank line) ends
on a token the model has rarely seen there, and its continuation goes astray. A prompt ending in the first
letters of a name ("types.co" while the user types "convert_type") ends on a piece of a word the tokenizer would
have merged otherwise. Cutting those characters and letting the model re-type them puts the token boundary where
training put it.
Knows nothing of prompts or sampling beyond a logits vector.
"""

from __future__ import annotations

import torch

from inference.tokenizer import Tokenizer

HEALED = " \t\n"
MAX_WORD = 40  # characters of a partly typed word that are re-typed by the model


def is_word(ch: str) -> bool:
    """A character of an identifier (letters, digits, _ and $)."""
    return ch.isalnum() or ch in "_$"


class TokenHealer:
    def __init__(self, tokenizer: Tokenizer):
        self.tok = tokenizer
        self._by_first: dict[str, list[tuple[int, str]]] | None = None  # token texts by their first character

    def split(self, prompt: str) -> tuple[str, str]:
        """(prompt without its trailing whitespace, or else without the word it ends in, the cut characters the
        output must start with)."""
        kept = prompt.rstrip(HEALED)
        if len(kept) == len(prompt):
            start = len(prompt)
            while start > 0 and len(prompt) - start < MAX_WORD and is_word(prompt[start - 1]):
                start -= 1
            if 0 < start and len(prompt) - start < MAX_WORD:
                kept = prompt[:start]
        return kept, prompt[len(kept):]

    def constrain(self, logits: torch.Tensor, pending: str) -> torch.Tensor:
        """logits with every token masked out that cannot start `pending` (or continue past all of it)."""
        allowed = [tid for tid, text in self._texts_by_first().get(pending[0], ())
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

    def _texts_by_first(self) -> dict[str, list[tuple[int, str]]]:
        if self._by_first is None:
            by_first: dict[str, list[tuple[int, str]]] = {}
            for tid in self.tok.vocab.values():
                text = self.tok.decode([tid])
                if text:
                    by_first.setdefault(text[0], []).append((tid, text))
            self._by_first = by_first
        return self._by_first
