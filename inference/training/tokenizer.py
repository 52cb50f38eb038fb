"""Trains the bundled byte-level BPE tokenizer (the `tokenizers` library) with the project's special tokens.

Special tokens take ids 0..6 in the order of SPECIAL_TOKENS.  Not its job: encoding batches (batches.py).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Iterable, Iterator

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|fim_prefix|>",
    "<|fim_suffix|>",
    "<|fim_middle|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
]
VOCAB_SIZE = 16384


def train_tokenizer(texts: Iterable[str], vocab_size: int = VOCAB_SIZE):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE(byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def sample_texts(records: Iterable[dict], budget_bytes: int, seed: int = 0, keep: float = 0.5) -> Iterator[str]:
    """A reproducible sample of file texts (each kept with probability `keep`) until budget_bytes are yielded."""
    rng = random.Random(seed)
    used = 0
    for rec in records:
        if rng.random() > keep:
            continue
        yield rec["text"]
        used += len(rec["text"])
        if used >= budget_bytes:
            return


def load(path: Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))
