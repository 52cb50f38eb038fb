"""Prompt text shapes: the repository prefix, file segments and the fill-in-the-middle tail per model family.

Formats: "qwen" (Qwen2.5-Coder tokens), "msa" (the bundled model; same tokens as qwen, generation ends at
<|endoftext|>, <|file_sep|> or any FIM token), "starcoder" (<fim_prefix> ... and <file_sep>), and "none" (no FIM tokens:
the tail is the prefix only). Chosen from the tokenizer's special tokens and the config.

Two orders of the pieces: "psm" (prefix, suffix, then the middle: <P>prefix<S>suffix<M>) and "spm"
(<P><S>suffix<M>prefix, the middle continuing the prefix directly, so a model's left-to-right skill carries
over to fill-in-the-middle). A checkpoint trained on "spm" says so with "fim_order": "spm" in its config.json.
A checkpoint trained with names lines in its segment headers says so with "segment_names": true
(inference/file_summary.py); the repository's segments then carry them, the live tail never does.
Does not tokenize.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from inference.file_summary import names_line


@dataclass(frozen=True)
class FimFormat:
    name: str
    repo_name: str
    file_sep: str
    prefix: str
    suffix: str
    middle: str
    stops: tuple[str, ...]
    order: str = "psm"
    segment_names: bool = False

    def repo_prefix(self, repo: str) -> str:
        return f"{self.repo_name}{repo}\n"

    def file_header(self, path: str, text: str | None = None) -> str:
        """The header before a file's code; given the file's `text`, a repository segment's (with its names line
        when the checkpoint reads one), else the live tail's."""
        names = names_line(path, text) if self.segment_names and text is not None else ""
        return f"{self.file_sep}{path}\n{names}"

    def tail(self, path: str, prefix: str, suffix: str) -> list[tuple[str, str]]:
        """Pieces of the live tail as (kind, text); kind "text" is tokenized as is, "prefix"/"suffix" may be cut."""
        if self.name == "none":
            return [("text", self.file_header(path)), ("prefix", prefix)]
        if self.order == "spm":
            return [("text", self.file_header(path) + self.prefix + self.suffix), ("suffix", suffix),
                    ("text", self.middle), ("prefix", prefix)]
        return [("text", self.file_header(path) + self.prefix), ("prefix", prefix), ("text", self.suffix),
                ("suffix", suffix), ("text", self.middle)]


QWEN_TOKENS = dict(repo_name="<|repo_name|>", file_sep="<|file_sep|>", prefix="<|fim_prefix|>",
                   suffix="<|fim_suffix|>", middle="<|fim_middle|>")
FORMATS = {
    "msa": FimFormat("msa", **QWEN_TOKENS, stops=("<|endoftext|>", "<|file_sep|>", "<|fim_prefix|>", "<|fim_suffix|>",
                                                  "<|fim_middle|>", "<|fim_pad|>", "<|repo_name|>")),
    "qwen": FimFormat("qwen", **QWEN_TOKENS, stops=("<|endoftext|>", "<|file_sep|>", "<|fim_pad|>",
                                                    "<|repo_name|>", "<|im_end|>", "<|fim_prefix|>")),
    "starcoder": FimFormat("starcoder", repo_name="<repo_name>", file_sep="<file_sep>", prefix="<fim_prefix>",
                           suffix="<fim_suffix>", middle="<fim_middle>",
                           stops=("<|endoftext|>", "<file_sep>", "<fim_prefix>", "<fim_pad>")),
    "none": FimFormat("none", **QWEN_TOKENS, stops=("<|endoftext|>", "</s>", "<|end_of_text|>", "<|eot_id|>")),
}


ORDERS = ("psm", "spm")


def detect(vocab: dict[str, int], *, model_type: str = "", has_index_branch: bool = False,
           order: str = "psm", segment_names: bool = False) -> FimFormat:
    """The FIM format the tokenizer supports (bundled MSA models: "msa"), in the checkpoint's piece order, with
    names lines in segment headers when the checkpoint was trained with them."""
    if order not in ORDERS:
        raise ValueError(f"fim_order must be one of {ORDERS}, got {order!r}")
    if all(t in vocab for t in QWEN_TOKENS.values()):
        found = FORMATS["msa" if model_type == "msa" or has_index_branch else "qwen"]
    elif all(t in vocab for t in ("<fim_prefix>", "<fim_suffix>", "<fim_middle>")):
        found = FORMATS["starcoder"]
    else:
        return FORMATS["none"]
    return dataclasses.replace(found, order=order, segment_names=segment_names)
