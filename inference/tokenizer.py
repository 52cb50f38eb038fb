"""Text <-> token ids through a Hugging Face `tokenizer.json` (the `tokenizers` library), plus special tokens.

Knows the special tokens the repository text shape and the FIM formats need, and decodes generated
ids incrementally without splitting UTF-8 characters. Does not build prompts (inference/fim.py does).
"""

from __future__ import annotations

import pathlib

from tokenizers import Tokenizer as _HFTokenizer


class Tokenizer:
    def __init__(self, path: str | pathlib.Path):
        path = pathlib.Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer.json at {path}")
        self._tok = _HFTokenizer.from_file(str(path))
        self.vocab = self._tok.get_vocab(with_added_tokens=True)

    def special(self, text: str) -> int | None:
        """Id of a special token spelled `text`, or None when the vocabulary lacks it."""
        return self.vocab.get(text)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids and (start, end) character offsets into `text` for each id."""
        enc = self._tok.encode(text, add_special_tokens=False)
        return enc.ids, enc.offsets

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=False)


class StreamDecoder:
    """Turns a growing id list into text pieces; holds back an incomplete UTF-8 character."""

    def __init__(self, tokenizer: Tokenizer):
        self.tok, self.ids, self.emitted = tokenizer, [], ""

    def push(self, tid: int) -> str:
        self.ids.append(tid)
        text = self.tok.decode(self.ids)
        if text.endswith("\ufffd"):
            return ""
        piece, self.emitted = text[len(self.emitted):], text
        return piece
