"""Where repository segments sit: token parts, positions, identity keys and context for each layout.

- "parallel" (default): shared positions behind the shared prefix. Each file part is encoded causally
  after the prefix at positions [p, p + len) that depend on nothing but its own length; a file longer
  than the segment cap is cut into parts, each later part encoded behind prefix + file header (whose KV
  is dropped). The live tail starts at P_T = p + cap.
- "offsets": the same independent encoding, but part i starts at the cumulative offset of the parts
  before it (the measured alternative); an edit that changes a length moves every later part.
- "sequential": one exact causal sequence prefix, file, file, ...; part i attends to everything before
  it, its key chains the keys before it, and an edit invalidates every later part.
Does not run the model and does not hold KV.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

LAYOUTS = ("parallel", "offsets", "sequential")


def text_key(*parts: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(p.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()


@dataclass(frozen=True)
class Part:
    """One segment to place: `tokens` are encoded at positions start_pos.., KV kept from index `keep_from` on."""

    key: str
    path: str
    tokens: tuple[int, ...]
    keep_from: int
    start_pos: int
    context: str  # "prefix" (prefix only) or "before" (every part placed before it: sequential)

    @property
    def n_kept(self) -> int:
        return len(self.tokens) - self.keep_from


def split_file(file_ids: list[int], header_ids: list[int], cap: int) -> list[tuple[list[int], int]]:
    """Cut a file's joint token ids (header + content) into parts of at most `cap` tokens.
    Returns (tokens, keep_from) per part; parts after the first repeat the header and drop its KV."""
    if len(file_ids) <= cap:
        return [(file_ids, 0)]
    body_cap = cap - len(header_ids)
    if body_cap < 16:
        raise ValueError(f"segment cap {cap} leaves no room after a {len(header_ids)}-token file header")
    parts = [(file_ids[:cap], 0)]
    for start in range(cap, len(file_ids), body_cap):
        parts.append((header_ids + file_ids[start : start + body_cap], len(header_ids)))
    return parts


def plan(layout: str, files: list[tuple[str, list[int], list[int], str]], *, prefix_len: int, cap: int,
         layout_key: str) -> list[Part]:
    """Parts for every file, in order. files: (path, joint ids, separately tokenized header ids, content key). Keys identify the KV bytes: same key -> same KV."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    out: list[Part] = []
    pos = prefix_len
    chain = layout_key
    for path, ids, header_ids, content_key in files:
        pieces = split_file(ids, header_ids, cap) if layout == "parallel" else [(ids, 0)]
        for i, (tokens, keep_from) in enumerate(pieces):
            if layout == "parallel":
                key = text_key(layout_key, content_key, str(i))
                out.append(Part(key, path, tuple(tokens), keep_from, prefix_len, "prefix"))
            elif layout == "offsets":
                key = text_key(layout_key, content_key, str(pos))
                out.append(Part(key, path, tuple(tokens), keep_from, pos, "prefix"))
                pos += len(tokens)
            else:
                chain = text_key(chain, content_key)
                out.append(Part(chain, path, tuple(tokens), keep_from, pos, "before"))
                pos += len(tokens)
    return out


def tail_position(layout: str, parts: list[Part], *, prefix_len: int, tail_offset: int) -> int:
    """First position of the live tail (parallel: P_T = prefix_len + tail_offset, the offset being the cap)."""
    if layout == "parallel":
        return prefix_len + tail_offset
    return max([prefix_len] + [p.start_pos + len(p.tokens) for p in parts])
