"""Turns tokenised projects into packed training rows in the server's repository shapes.

`parallel` rows: shared prefix "<|repo_name|>{name}\n" at positions [0, p); each context file
"<|file_sep|>{path}\n{code}" (with `segment_names`, a names line after the path: inference/file_summary.py)
encoded on its own at positions [p, p + len) and padded to whole 128-token blocks (pages); the target file last as the live tail (plain, or the "msa" FIM prompt followed by the middle and
<|endoftext|>) at P_T, seeing the prefix, every context file and itself.  `causal` rows: the project's files one
after another (the sequential layout).  Visibility is carried per token (group, doc, tail, pad) and expanded into a
[T, T] mask by `visibility`.  Not its job: the model or the optimiser.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import numpy as np

from inference.file_summary import names_line, qualifier, top_level_names
from inference.training import middles, qualify

BLOCK = 128
SEGMENT_CAP = 3072  # longest file segment in positions (L_cap); also where the tail starts (P_T = p + SEGMENT_CAP)
TAIL_MAX = 1024
IGNORE = -100


@dataclass
class Row:
    ids: np.ndarray
    pos: np.ndarray
    grp: np.ndarray
    doc: np.ndarray
    tail: np.ndarray
    pad: np.ndarray
    labels: np.ndarray
    middle: np.ndarray  # label positions that predict a FIM middle token (or its <|endoftext|>)
    copy: np.ndarray  # label positions that predict a token of a renamed cross-file name in the live tail


class Encoder:
    """Tokenizer wrapper with the special-token ids the layouts need."""

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self.special = {name: tokenizer.token_to_id(name) for name in
                        ["<|endoftext|>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|repo_name|>", "<|file_sep|>"]}
        self.eot = self.special["<|endoftext|>"]

    def ids(self, text: str) -> np.ndarray:
        return np.asarray(self.tok.encode(text).ids, dtype=np.int32)

    def ids_marking(self, text: str, names: set[str]) -> tuple[np.ndarray, np.ndarray]:
        """(token ids, bool per token: the token overlaps a whole-word occurrence of one of `names`)."""
        enc = self.tok.encode(text)
        ids = np.asarray(enc.ids, dtype=np.int32)
        marks = np.zeros(len(ids), bool)
        if names:
            spans = [m.span() for m in middles.occurrences(text, names)]
            starts = np.asarray([a for a, _ in enc.offsets])
            ends = np.asarray([b for _, b in enc.offsets])
            for a, b in spans:
                marks |= (starts < b) & (ends > a)
        return ids, marks

    def many(self, texts: list[str]) -> list[np.ndarray]:
        return [np.asarray(e.ids, dtype=np.int32) for e in self.tok.encode_batch(texts)]


def file_segment_text(path: str, text: str, names: bool = False) -> str:
    """A context file's segment text; with `names`, its header lists the file's top-level names
    (inference/file_summary.py), as the engine's cache does for a checkpoint with "segment_names"."""
    return f"<|file_sep|>{path}\n{names_line(path, text) if names else ''}{text}"


def fim_split(text: str, rng: random.Random, span: tuple[int, int] | None = None) -> tuple[str, str, str]:
    """(prefix, middle, suffix): `span` if given, else an editor-shaped split (middles.editor_split)."""
    start, end = span if span is not None else middles.editor_split(text, rng)
    return text[:start], text[start:end], text[end:]


def fim_tail(enc: Encoder, path: str, text: str, rng: random.Random, span: tuple[int, int] | None = None,
             cap: int = TAIL_MAX, order: str = "psm", copy_names: set[str] = frozenset()
             ) -> tuple[np.ndarray, int, np.ndarray]:
    """Tail tokens of the "msa" FIM format in `order` (inference/fim.py: "psm" or "spm"), how many leading
    tokens are prompt (the rest: middle + eot), and which tokens belong to an occurrence of `copy_names`.

    The prompt keeps its header and all three FIM tokens; when too long, the prefix is cut on the left and the
    suffix on the right (as the engine does), never the structure."""
    prefix, middle, suffix = fim_split(text, rng, span)
    middle_ids, middle_marks = enc.ids_marking(middle, copy_names)
    body = np.concatenate([middle_ids[: cap // 4], [enc.eot]]).astype(np.int32)
    body_marks = np.concatenate([middle_marks[: cap // 4], [False]])
    pre_chars, suf_chars = 2400, 1000
    while True:
        pre, suf = prefix[-pre_chars:] if pre_chars else "", suffix[:suf_chars]
        if order == "spm":
            prompt = f"<|file_sep|>{path}\n<|fim_prefix|><|fim_suffix|>{suf}<|fim_middle|>{pre}"
        else:
            prompt = f"<|file_sep|>{path}\n<|fim_prefix|>{pre}<|fim_suffix|>{suf}<|fim_middle|>"
        head, head_marks = enc.ids_marking(prompt, copy_names)
        if len(head) + len(body) <= cap or (pre_chars == 0 and suf_chars == 0):
            break
        pre_chars, suf_chars = pre_chars * 3 // 4, suf_chars * 3 // 4
    return (np.concatenate([head, body])[:cap].astype(np.int32), len(head),
            np.concatenate([head_marks, body_marks])[:cap])


class RowBuilder:
    """Builds rows of exactly T tokens from projects {name: [(path, text)]} with their file tokens precomputed.

    Of the parallel groups, `fim_rate` get a FIM tail; of those, `callsite_rate` take a call-site middle (a name
    defined in an included context file, to the end of its line) and `rename_rate` first rename such names (1 to
    `rename_names`; with `rename_own` also names the target defines) to fresh compound names in the target and the
    context files (re-encoding only those).  With `qualify_rate`, a Python or JS/TS target's imports of included
    files are qualified (qualify.qualify_imports, qualify_js_imports: `mod.name` call sites) and, in every
    language, the names the target already uses qualified by an included file's qualifier (qualify.qualified_uses:
    `helpers.trim`, `srv.ParseHeader`) are collected; these names are then preferred call sites, starting right
    after the qualifier, and marked for the copy weight like renamed ones."""

    def __init__(self, enc: Encoder, projects: dict[str, list[tuple[str, str]]], file_ids: dict[str, list[np.ndarray]],
                 T: int, seed: int, fim_rate: float = 0.7, causal_rate: float = 0.3, callsite_rate: float = 0.4,
                 rename_rate: float = 0.25, fim_order: str = "psm", rename_names: int = 3, rename_own: bool = False,
                 qualify_rate: float = 0.0, segment_names: bool = False):
        assert T % BLOCK == 0
        self.enc, self.projects, self.file_ids, self.T = enc, projects, file_ids, T
        self.rng = random.Random(seed)
        self.names = sorted(projects)
        sizes = [sum(len(a) for a in file_ids[n]) for n in self.names]
        self.weights = np.cumsum(np.sqrt(np.asarray(sizes, dtype=np.float64)))  # favours small projects a little
        self.fim_rate, self.causal_rate = fim_rate, causal_rate
        self.callsite_rate, self.rename_rate = callsite_rate, rename_rate
        self.fim_order = fim_order
        self.rename_names, self.rename_own = rename_names, rename_own
        self.qualify_rate = qualify_rate
        self.segment_names = segment_names  # file_ids must have been encoded the same way
        self._defs: dict[tuple[str, int], set[str]] = {}
        self._qualifiers: dict[tuple[str, int], str] = {}
        self._words: list[str] | None = None

    def pick_project(self) -> str:
        x = self.rng.random() * self.weights[-1]
        return self.names[int(np.searchsorted(self.weights, x, side="right").clip(0, len(self.names) - 1))]

    def row(self) -> Row:
        used, grp_id = 0, 0
        causal = self.rng.random() < self.causal_rate
        groups = []
        while self.T - used >= 4 * BLOCK or not groups:
            name = self.pick_project()
            segs = self.causal_group(name, self.T - used) if causal else self.parallel_group(name, self.T - used)
            size = sum(_padded(len(s[0])) for s in segs)
            groups.append((grp_id, segs))
            used += size
            grp_id += 1
        return self.pack(groups)

    def defs(self, name: str, i: int) -> set[str]:
        key = (name, i)
        if key not in self._defs:
            self._defs[key] = middles.defined_names(*self.projects[name][i])
        return self._defs[key]

    def words(self) -> list[str]:
        if self._words is None:
            sample = self.rng.sample(self.names, min(len(self.names), 200))
            self._words = middles.identifier_words(t for n in sample for _, t in self.projects[n][:5])
        return self._words

    def parallel_group(self, name: str, budget: int) -> list[tuple]:
        files, ids = self.projects[name], self.file_ids[name]
        rng, enc = self.rng, self.enc
        prefix = enc.ids(f"<|repo_name|>{name.split(':', 1)[-1]}\n")
        p = len(prefix)
        target = rng.randrange(len(files))
        path, text = files[target]
        fim = rng.random() < self.fim_rate
        target_words = middles.words_in(text) if fim else set()
        # a FIM tail gets up to TAIL_MAX tokens, less in a row's last small gap so that it is never cut
        tail_cap = max(2 * BLOCK, min(TAIL_MAX, (budget - _padded(p)) // 2 // BLOCK * BLOCK))
        room = budget - _padded(p) - (tail_cap if fim else _padded(min(len(ids[target]), TAIL_MAX)))
        context: list[tuple[int, np.ndarray]] = []
        for i in self.context_order(name, target, text, target_words):
            if room < BLOCK:
                break
            seg = ids[i][: min(SEGMENT_CAP, room)]
            if len(seg) < 16:
                continue
            context.append((i, seg))
            room -= _padded(len(seg))
        n_head, copy = None, None
        if fim:
            context, text, defs, renamed, qualifiers = self.fim_context(name, target, context, text, target_words)
            span = None
            if defs and rng.random() < self.callsite_rate:
                site = middles.call_site_split(text, defs - middles.defined_names(path, text), rng, prefer=renamed,
                                               after=qualifiers)
                span = site[:2] if site else None
            tail, n_head, copy = fim_tail(enc, path, text, rng, span, tail_cap, self.fim_order, renamed)
        else:
            whole = ids[target]
            start = 0 if len(whole) <= TAIL_MAX or rng.random() < 0.5 else rng.randrange(len(whole) - TAIL_MAX)
            tail = whole[start:start + TAIL_MAX]
        longest = max((len(c) for _, c in context), default=0)
        tail_start = rng.choice([p + SEGMENT_CAP, p + SEGMENT_CAP, p + longest, p])
        segs = [(prefix, np.arange(p), 0, False, None, None)]
        for n, (_, seg) in enumerate(context, start=1):
            segs.append((seg, p + np.arange(len(seg)), n, False, None, None))
        segs.append((tail, tail_start + np.arange(len(tail)), len(context) + 1, True, n_head, copy))
        return segs

    def fim_context(self, name: str, target: int, context: list, text: str, target_words: set[str]):
        """(context, target text, names defined in the included context, renamed or qualified cross-file names, the
        included modules' qualifiers): with rename_rate, 1 to rename_names names defined in included context files
        (or, with rename_own, the target) and used in the target get fresh names everywhere in the group; with
        qualify_rate, a Python or JS/TS target's imports of them are qualified, and names the target uses qualified
        (`helpers.trim`, `srv.ParseHeader`, `table::parse`) join the renamed ones."""
        files = self.projects[name]
        shown = {}  # file index -> the text actually included (a cut segment decodes its tokens)
        for i, seg in context:
            full = len(seg) == len(self.file_ids[name][i])
            shown[i] = files[i][1] if full else self.shown_text(*files[i], seg)
        defs_of = {i: (self.defs(name, i) if len(seg) == len(self.file_ids[name][i])
                       else middles.defined_names(files[i][0], shown[i])) for i, seg in context}
        defs = set().union(*defs_of.values()) if defs_of else set()
        renamed: set[str] = set()
        if defs and self.rng.random() < self.rename_rate:
            own = self.defs(name, target)
            candidates = sorted(n for n in (defs - own) & target_words if len(n) >= 6)
            if candidates:
                count = self.rng.randint(max(1, self.rename_names // 2), self.rename_names)
                old = self.rng.sample(candidates, min(len(candidates), count))
                if self.rename_own:
                    mine = sorted(n for n in own & target_words if len(n) >= 6)
                    old += self.rng.sample(mine, min(len(mine), count))
                taken = defs | target_words
                snake = middles.language(files[target][0]) in ("py", "rs")
                mapping = {o: middles.fresh_name(o, self.words(), self.rng, taken, snake) for o in old}
                touched = [i for i, _ in context if any(o in shown[i] for o in old)]
                new_texts = middles.rename([text] + [shown[i] for i in touched], mapping)
                text = new_texts[0]
                fresh = dict(zip(touched, self.enc.many(
                    [file_segment_text(files[i][0], t, self.segment_names) for i, t in zip(touched, new_texts[1:])])))
                context = [(i, fresh[i][: _padded(len(seg))] if i in fresh else seg) for i, seg in context]
                for (i, seg), t in zip([(i, seg) for i, seg in context if i in fresh], new_texts[1:]):
                    shown[i] = t if len(seg) == len(fresh[i]) else self.shown_text(files[i][0], t, seg)
                    defs_of[i] = middles.defined_names(files[i][0], shown[i])
                defs = set().union(*defs_of.values())
                renamed = set(mapping.values()) & (defs - middles.defined_names(files[target][0], text))
        qualifiers: set[str] = set()
        kind = middles.language(files[target][0])
        if kind is not None and self.rng.random() < self.qualify_rate:
            if kind == "py":
                stems = [files[i][0].rsplit("/", 1)[-1].rsplit(".", 1)[0] for i, _ in context]
                modules = {s: defs_of[i] for s, (i, _) in zip(stems, context) if stems.count(s) == 1}
                text, qualified = qualify.qualify_imports(text, modules)
                renamed |= qualified
                qualifiers |= {f"{s}." for s in modules}
            modules = qualify.qualified_modules([(files[i][0], shown[i]) for i, _ in context])
            if kind == "js":
                text, qualified = qualify.qualify_js_imports(text, {q[:-1]: n for q, n in modules.items()})
                renamed |= qualified
            own = middles.defined_names(files[target][0], text) | set(top_level_names(files[target][0], text))
            uses = qualify.qualified_uses(text, modules) - own
            renamed |= uses
            defs |= uses  # short or common-word names (`srv.New`) that defined_names skips become call sites too
            qualifiers |= set(modules)
        return context, text, defs, renamed, qualifiers

    def shown_text(self, path: str, text: str, seg: np.ndarray) -> str:
        """The code a cut segment of file (path, text) includes: its decoded tokens after the header."""
        decoded = self.enc.tok.decode(seg.tolist())
        head = f"{path}\n{names_line(path, text) if self.segment_names else ''}"
        at = decoded.find(head)
        return decoded[at + len(head):] if at >= 0 else ""

    def context_order(self, name: str, target: int, target_text: str, target_words: set[str] = frozenset()) -> list[int]:
        """Other files, likeliest-useful first: defining names the target uses, same folder, or named in the
        target (the file's stem, or the qualifier an importer writes, e.g. a Go package's `srv.`), then the rest
        at random."""
        files = self.projects[name]
        folder = files[target][0].rsplit("/", 1)[0] if "/" in files[target][0] else ""
        candidates = [i for i in range(len(files)) if i != target]
        if len(candidates) > 300:
            candidates = self.rng.sample(candidates, 300)

        def score(i: int) -> float:
            path = files[i][0]
            stem = path.rsplit("/", 1)[-1].split(".")[0]
            s = self.rng.random()
            if (stem and len(stem) > 2 and stem in target_text) or self.qualifier(name, i) in target_text:
                s += 2
            if (path.rsplit("/", 1)[0] if "/" in path else "") == folder:
                s += 1
            if target_words and not self.defs(name, i).isdisjoint(target_words):
                s += 1.5
            return -s

        return sorted(candidates, key=score)

    def qualifier(self, name: str, i: int) -> str:
        """The file's qualifier (file_summary.qualifier), or a string no text contains."""
        key = (name, i)
        if key not in self._qualifiers:
            self._qualifiers[key] = qualifier(*self.projects[name][i]) or "\0"
        return self._qualifiers[key]

    def causal_group(self, name: str, budget: int) -> list[tuple]:
        ids = self.file_ids[name]
        order = list(range(len(ids)))
        self.rng.shuffle(order)
        chunks = [self.enc.ids(f"<|repo_name|>{name.split(':', 1)[-1]}\n")]
        total = len(chunks[0])
        for i in order:
            if total >= budget:
                break
            chunks.append(ids[i])
            total += len(ids[i])
        seq = np.concatenate(chunks)[: min(budget, self.T)]
        return [(seq, np.arange(len(seq)), 1, False, None, None)]

    def pack(self, groups) -> Row:
        T = self.T
        ids = np.zeros(T, np.int32)
        pos = np.zeros(T, np.int32)
        grp = np.full(T, -1, np.int32)
        doc = np.zeros(T, np.int32)
        tail = np.zeros(T, bool)
        pad = np.ones(T, bool)
        labels = np.full(T, IGNORE, np.int64)
        middle = np.zeros(T, bool)
        copy = np.zeros(T, bool)
        at = 0
        for g, segs in groups:
            for seg_ids, seg_pos, d, is_tail, middle_from, copy_marks in segs:
                n = min(len(seg_ids), T - at)
                if n <= 0:
                    break
                sl = slice(at, at + n)
                ids[sl], pos[sl], grp[sl], doc[sl], tail[sl], pad[sl] = seg_ids[:n], seg_pos[:n], g, d, is_tail, False
                labels[at:at + n - 1] = seg_ids[1:n]
                if middle_from is not None and middle_from < n:
                    middle[at + middle_from - 1: at + n - 1] = True
                if copy_marks is not None:
                    copy[at: at + n - 1] = copy_marks[1:n]
                at += _padded(n)
                if at >= T:
                    break
        return Row(ids, pos, grp, doc, tail, pad, labels, middle, copy)


def _padded(n: int) -> int:
    return -(-n // BLOCK) * BLOCK


def visibility(grp, doc, tail, pad):
    """[B, T, T] bool: key j visible to query i (causal in row order, same group, not padding, and same file, the
    shared prefix, or any file when i is in the live tail).  Every token sees itself so no row is empty."""
    import torch

    T = grp.shape[-1]
    causal = torch.ones(T, T, dtype=torch.bool, device=grp.device).tril()
    same_grp = grp[:, :, None] == grp[:, None, :]
    reach = (doc[:, :, None] == doc[:, None, :]) | (doc[:, None, :] == 0) | tail[:, :, None]
    vis = causal[None] & same_grp & reach & ~pad[:, None, :]
    return vis | torch.eye(T, dtype=torch.bool, device=grp.device)[None]
