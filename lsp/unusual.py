"""'Unusual code' hints: lines the model finds far more surprising than lines of the same kind elsewhere.

The worker's `score` op gives each token's log-probability given the repository cache. Tokens are grouped into
words (identifier runs); a line's score is its most surprising word (surprisal in nats). Lines are grouped by
kind (their leading keyword, or assignment / call / other) and a line is compared with lines of its kind in the
file and in a sample of the repository's other files of the same language: a z-score far above the rest makes a
Hint diagnostic naming the surprising words. Runs after edits settle, is cancelled by a newer edit, runs at most
once per RATE_S per file, and is off unless msa.diagnostics.unusualCode is on.

Non-job: other diagnostics (lsp.workspace_state publishes them, with these added), the model (the worker).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import re
import time
from dataclasses import dataclass

from lsprotocol import types

from lsp import convert

log = logging.getLogger(__name__)
SETTLE_S, RATE_S = 1.0, 5.0
BASELINE_FILES, BASELINE_CHARS = 6, 60_000
Z_MIN, SURPRISAL_MIN, MAX_HINTS, STD_FLOOR = 2.5, 5.0, 5, 1.0
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\S")
BINDER_BEFORE = re.compile(r"\b(def|class|func|fn|function|let|const|var|type|struct|interface|for|as)\s+$")
ASSIGNED_AFTER = re.compile(r"\s*(:[^=\n]*)?=(?!=)")
KEYWORDS = {"def", "class", "return", "if", "elif", "else", "for", "while", "import", "from", "with", "try",
            "except", "raise", "yield", "async", "await", "const", "let", "var", "function", "func", "fn", "pub",
            "use", "type", "interface", "export", "package", "struct", "impl", "match", "switch", "case"}


@dataclass(frozen=True)
class LineScore:
    line: int
    kind: str
    surprisal: float  # the line's most surprising word, nats
    words: tuple[tuple[str, int, int, float], ...]  # (word, start col, end col, surprisal), most surprising first
    z: float = 0.0


def line_kind(text: str) -> str:
    stripped = text.strip()
    first = WORD.match(stripped)
    word = first.group(0) if first else ""
    if word in KEYWORDS:
        return word
    if re.search(r"[^=!<>]=[^=]", stripped):
        return "assign"
    if "(" in stripped:
        return "call"
    return "other"


def binds_new_name(line: str, start: int, end: int) -> bool:
    """Whether the word at line[start:end] is bound here (a def/class name, an assignment target, a parameter,
    a loop or `as` variable): the first such binding of a name is naturally surprising and is not counted."""
    before, after = line[:start], line[end:]
    if BINDER_BEFORE.search(before) or ASSIGNED_AFTER.match(after):
        return True
    head = line.lstrip()
    return head.startswith(("def ", "async def ", "func ", "fn ", "function ")) and "(" in before


def line_scores(text: str, tokens: list[tuple[str, int, float]]) -> list[LineScore]:
    """Per non-blank line: the most surprising words (a word's surprisal = sum over the tokens it overlaps);
    the first occurrence of a name where it is bound does not count."""
    starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
    token_starts = [start for _, start, _ in tokens]
    lines = text.split("\n")
    seen: set[str] = set()
    out = []
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        base = starts[number]
        words = []
        for match in WORD.finditer(line):
            lo, hi = base + match.start(), base + match.end()
            first = max(0, bisect.bisect_right(token_starts, lo) - 1)
            total = 0.0
            for token_text, start, logprob in tokens[first:]:
                if start >= hi:
                    break
                if start + max(1, len(token_text)) > lo:
                    total += -logprob
            word = match.group(0)
            first = word not in seen
            seen.add(word)
            if first and (word[0].isalpha() or word[0] == "_") and binds_new_name(line, match.start(), match.end()):
                continue
            words.append((word, match.start(), match.end(), total))
        if not words:
            continue
        words.sort(key=lambda w: -w[3])
        out.append(LineScore(number, line_kind(line), words[0][3], tuple(words[:3])))
    return out


def kind_stats(scores: list[LineScore]) -> dict[str, tuple[float, float, int]]:
    """kind -> (mean, std, count) of line surprisal; "*" holds all lines."""
    groups: dict[str, list[float]] = {"*": []}
    for score in scores:
        groups.setdefault(score.kind, []).append(score.surprisal)
        groups["*"].append(score.surprisal)
    out = {}
    for kind, values in groups.items():
        mean = sum(values) / len(values) if values else 0.0
        var = sum((v - mean) ** 2 for v in values) / len(values) if values else 0.0
        out[kind] = (mean, max(STD_FLOOR, math.sqrt(var)), len(values))
    return out


def rank(scores: list[LineScore], baseline: list[LineScore]) -> list[LineScore]:
    """Lines of `scores` with their z-score, most unusual first: distance from the mean of same-kind lines (of
    scores + baseline) in units of the spread of all lines (a kind's own spread is too noisy for few lines)."""
    stats = kind_stats(scores + baseline)
    overall_mean, spread, _ = stats["*"]
    ranked = []
    for score in scores:
        mean, _, count = stats.get(score.kind, stats["*"])
        if count < 5:  # too few lines of this kind to compare with: all lines
            mean = overall_mean
        ranked.append(LineScore(score.line, score.kind, score.surprisal, score.words, (score.surprisal - mean) / spread))
    ranked.sort(key=lambda s: -s.z)
    return ranked


def hints(ranked: list[LineScore]) -> list[LineScore]:
    return [s for s in ranked if s.z >= Z_MIN and s.surprisal >= SURPRISAL_MIN][:MAX_HINTS]


class UnusualCode:
    def __init__(self, server):
        self.server = server
        self._found: dict[str, tuple[int, list[types.Diagnostic]]] = {}  # path -> (version, diagnostics)
        self._tasks: dict[str, asyncio.Task] = {}
        self._last_run: dict[str, float] = {}
        self._baseline: dict[tuple[str, str], list[LineScore]] = {}  # (path, hash) -> scores
        self._lock = asyncio.Lock()
        self.runs = 0

    def enabled(self) -> bool:
        return bool(self.server.options.diagnostics.unusual_code)

    def diagnostics_for(self, path: str) -> list[types.Diagnostic]:
        doc = self.server.documents.by_path(path)
        found = self._found.get(path)
        if not self.enabled() or doc is None or found is None or found[0] != doc.version:
            return []
        return list(found[1])

    def file_changed(self, path: str | None) -> None:
        if path is None or self.server.documents.by_path(path) is None:
            return
        task = self._tasks.pop(path, None)
        if task is not None and not task.done():
            task.cancel()  # a newer edit: the old result would be stale
        if not self.enabled():
            if self._found.pop(path, None) is not None:
                self.server.state.republish(path)
            return
        self._tasks[path] = asyncio.get_running_loop().create_task(self._run_later(path))

    async def _run_later(self, path: str) -> None:
        settle = max(SETTLE_S, self.server.options.diagnostics.debounce_ms / 1000)
        wait = max(settle, self._last_run.get(path, -RATE_S) + RATE_S - time.monotonic())
        await asyncio.sleep(wait)
        try:
            async with self._lock:
                self._last_run[path] = time.monotonic()
                await self._run(path)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the model is optional: a failure is logged, the other diagnostics stay
            log.warning("unusual-code hints for %s failed: %s", path, exc)

    async def _score(self, client, relative: str, text: str) -> list[LineScore]:
        tokens = await client.score(path=relative, text=text, start=0, end=len(text))
        return line_scores(text, tokens)

    async def _run(self, path: str) -> None:
        service = getattr(self.server, "worker", None)
        client = service.ensure_worker() if service is not None else None
        doc = self.server.documents.by_path(path)
        if client is None or doc is None or not await client.wait_ready(30):
            return
        version, text, state = doc.version, doc.text, self.server.state
        scores = await self._score(client, state.relative(path), text)
        baseline = await self._baseline_scores(client, path)
        found = hints(rank(scores, baseline))
        current = self.server.documents.by_path(path)
        if current is None or current.version != version:
            return
        self.runs += 1
        self._found[path] = (version, [self._diagnostic(current.lines, s) for s in found])
        state.republish(path)

    async def _baseline_scores(self, client, path: str) -> list[LineScore]:
        state = self.server.state
        index = state.index
        language = index.language(path)
        others = sorted((p for p in index.files if p != path and index.language(p) == language),
                        key=lambda p: (not p.startswith(path.rsplit("/", 1)[0]), p))
        out, used = [], 0
        for other in others[:BASELINE_FILES]:
            text = index.text(other)
            if not text or used + len(text) > BASELINE_CHARS:
                continue
            used += len(text)
            key = (other, str(hash(text)))
            if key not in self._baseline:
                self._baseline[key] = await self._score(client, state.relative(other), text)
            out.extend(self._baseline[key])
        return out

    def _diagnostic(self, lines, score: LineScore) -> types.Diagnostic:
        word, start, end, _ = score.words[0]
        named = ", ".join(f"`{w}` ({s:.1f})" for w, _, _, s in score.words if s >= SURPRISAL_MIN / 2)
        return types.Diagnostic(
            range=convert.to_client_range(lines, (score.line, start), (score.line, end), self.server.encoding),
            severity=types.DiagnosticSeverity.Hint, source="msa-lsp model", code="unusual-code",
            message=f"unusual code: the model finds {named or f'`{word}`'} surprising here "
                    f"({score.z:.1f} standard deviations above similar lines)")


def register(server) -> UnusualCode:
    unusual = UnusualCode(server)
    server.unusual = unusual
    state = server.state
    if hasattr(state, "diagnostic_sources") and hasattr(state, "republish"):
        state.diagnostic_sources.append(unusual.diagnostics_for)
        state.file_listeners.append(unusual.file_changed)
    else:
        log.warning("the workspace state takes no diagnostic sources: unusual-code hints are off")
    return unusual
