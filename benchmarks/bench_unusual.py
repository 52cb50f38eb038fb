"""Seeded-bug benchmark for the "unusual code" hints: does surprisal find misspelled and swapped identifiers?

A fixture project (benchmarks/fixtures/shop) gets >= 20 seeded bugs, chosen with a fixed seed: a use of a name is
misspelled (two inner letters swapped) or replaced by another name of the same file. Every file is scored by the
model given the repository cache (the others), lines are ranked exactly as lsp.unusual ranks them (most surprising
word per line, z-score against lines of the same kind), and the bug lines are looked for at the top.

Prints a table and ends with one JSON line: precision at 5/10/20 of the project-wide ranking (z-score and raw
surprisal), how often a bug line outranks every untouched line within 3 lines of it, and the hints the server
would show with and without the bugs. Needs the bundled model (inference/bundled/config.json) or --model DIR.
"""

from __future__ import annotations

import argparse
import json
import keyword
import pathlib
import random
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inference import protocol  # noqa: E402
from lsp.index.extract import identifiers  # noqa: E402
from lsp.unusual import hints, line_scores, rank  # noqa: E402

FIXTURE = ROOT / "benchmarks" / "fixtures" / "shop"
SKIP_LINE_STARTS = ("def ", "class ", "import ", "from ", "@")


def load_project() -> dict[str, str]:
    return {str(p.relative_to(FIXTURE)): p.read_text() for p in sorted(FIXTURE.rglob("*.py"))}


def seed_bugs(files: dict[str, str], count: int, seed: int) -> tuple[dict[str, str], list[dict]]:
    """(buggy files, bugs [{path, line, kind, was, now}]); one bug per line, bugs at least 3 lines apart."""
    rng = random.Random(seed)
    candidates = []
    for path, text in files.items():
        lines = text.split("\n")
        found = identifiers(path, text, "python")
        names = {name for name, _ in found}
        counts = {name: sum(1 for n, _ in found if n == name) for name in names}
        for name, span in found:
            line = lines[span.start_line].lstrip()
            if (len(name) < 4 or keyword.iskeyword(name) or counts[name] < 2 or line.startswith(SKIP_LINE_STARTS)
                    or '"""' in line):
                continue
            candidates.append((path, name, span, sorted(n for n in names if n != name and len(n) >= 3)))
    rng.shuffle(candidates)
    chosen, taken = [], {}
    for path, name, span, others in candidates:
        if any(abs(span.start_line - other) < 3 for other in taken.get(path, [])):
            continue
        kind = "misspell" if len(chosen) % 2 == 0 else "swap"
        if kind == "misspell":
            inner = [i for i in range(1, len(name) - 2) if name[i] != name[i + 1]]
            if not inner:
                continue
            i = rng.choice(inner)
            now = name[:i] + name[i + 1] + name[i] + name[i + 2:]
        else:
            now = rng.choice(others)
        chosen.append({"path": path, "line": span.start_line, "col": span.start_col, "end": span.end_col,
                       "kind": kind, "was": name, "now": now})
        taken.setdefault(path, []).append(span.start_line)
        if len(chosen) == count:
            break
    buggy = dict(files)
    for bug in sorted(chosen, key=lambda b: (b["path"], b["line"], b["col"]), reverse=True):
        lines = buggy[bug["path"]].split("\n")
        row = lines[bug["line"]]
        lines[bug["line"]] = row[: bug["col"]] + bug["now"] + row[bug["end"]:]
        buggy[bug["path"]] = "\n".join(lines)
    return buggy, chosen


def score_project(engine, files: dict[str, str]) -> dict[str, list]:
    engine.sync(add=[(path, protocol.content_hash(text), text) for path, text in files.items()], drop=[])
    return {path: line_scores(text, engine.score(path, text, 0, len(text))) for path, text in files.items()}


def ranked_lines(scores: dict[str, list]) -> list[tuple[str, object]]:
    out = []
    for path, own in scores.items():
        baseline = [s for other, found in scores.items() if other != path for s in found]
        out.extend((path, s) for s in rank(own, baseline))
    return out


def precision(ranked, bug_lines: set, k: int) -> float:
    return sum((path, s.line) in bug_lines for path, s in ranked[:k]) / k


def evaluate(engine, clean: dict[str, str], count: int, seed: int) -> dict:
    """One seeded project: scores, rankings and the table rows for it."""
    buggy, bugs = seed_bugs(clean, count, seed)
    if len(bugs) < 20:
        raise SystemExit(f"bench_unusual: only {len(bugs)} bugs could be seeded; the fixture is too small")
    bug_lines = {(b["path"], b["line"]) for b in bugs}
    scores = score_project(engine, buggy)
    engine.sync(add=[], drop=list(buggy))
    by_z = sorted(ranked_lines(scores), key=lambda item: -item[1].z)
    by_raw = sorted(ranked_lines(scores), key=lambda item: -item[1].surprisal)
    wins = 0
    for bug in bugs:
        own = {s.line: s for p, s in by_z if p == bug["path"]}
        mine = own.get(bug["line"])
        near = [s.z for line, s in own.items() if 0 < abs(line - bug["line"]) <= 3 and (bug["path"], line) not in bug_lines]
        wins += bool(mine and all(mine.z > z for z in near))
    shown = [(p, s) for p, own in scores.items()
             for s in hints(rank(own, [x for o, f in scores.items() if o != p for x in f]))]
    row = {"seed": seed, "bugs": len(bugs), "misspelled": sum(b["kind"] == "misspell" for b in bugs),
           "lines": sum(len(v) for v in scores.values()), "neighbour_wins": wins, "hints": len(shown),
           "hints_on_bugs": sum((p, s.line) in bug_lines for p, s in shown), "top": by_z[:5], "bug_lines": bug_lines}
    for key, ranked in (("z", by_z), ("raw", by_raw)):
        for k in (5, 10, 20):
            row[f"p_at_{k}_{key}"] = precision(ranked, bug_lines, k)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory (default: the bundled model)")
    parser.add_argument("--bugs", type=int, default=24)
    parser.add_argument("--seeds", type=int, default=3, help="seeded projects (seeds 0..N-1)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    bundled = ROOT / "inference" / "bundled" / "config.json"
    if not args.model and not bundled.is_file():
        print("bench_unusual: pending - the bundled model has not landed (inference/bundled/config.json missing)")
        print(json.dumps({"bench": "unusual", "status": "pending", "reason": "no bundled model"}))
        return 0
    from inference.engine import Engine

    started = time.perf_counter()
    engine = Engine(args.model or None, device=args.device, repo_name="shop")
    clean = load_project()
    clean_scores = score_project(engine, clean)
    engine.sync(add=[], drop=list(clean))
    clean_hints = sum(len(hints(rank(own, [s for o, f in clean_scores.items() if o != p for s in f])))
                      for p, own in clean_scores.items())
    rows = [evaluate(engine, clean, args.bugs, seed) for seed in range(args.seeds)]
    print(f"model {engine.info()['model']} on {args.device}; {len(clean)} files, {rows[0]['lines']} scored lines; "
          f"{args.bugs} seeded bugs per project (half misspelled, half swapped), {args.seeds} projects")
    print(f"{'seed':<6}{'P@5 z':>8}{'P@10 z':>8}{'P@20 z':>8}{'P@5 raw':>9}{'P@10 raw':>9}{'P@20 raw':>9}"
          f"{'near wins':>11}{'hints (bugs)':>14}")
    for row in rows:
        print(f"{row['seed']:<6}" + "".join(f"{row[f'p_at_{k}_z']:>8.2f}" for k in (5, 10, 20))
              + "".join(f"{row[f'p_at_{k}_raw']:>9.2f}" for k in (5, 10, 20))
              + f"{row['neighbour_wins']:>8}/{row['bugs']:<2}{row['hints']:>8} ({row['hints_on_bugs']})")
    print(f"hints on the clean project: {clean_hints}; top of seed 0:")
    for path, s in rows[0]["top"]:
        mark = "BUG" if (path, s.line) in rows[0]["bug_lines"] else "   "
        print(f"  {mark} {path}:{s.line + 1} z={s.z:.2f} {s.words[0][0]!r} {s.surprisal:.1f} nats")
    mean = lambda key: round(sum(r[key] for r in rows) / len(rows), 3)  # noqa: E731
    result = {"bench": "unusual", "model": pathlib.Path(engine.info()["model"]).name, "device": args.device,
              "files": len(clean), "lines": rows[0]["lines"], "bugs_per_project": args.bugs, "projects": args.seeds}
    result.update({key: mean(key) for key in rows[0] if key.startswith("p_at_")})
    result.update({"neighbour_win_rate": round(sum(r["neighbour_wins"] for r in rows) / sum(r["bugs"] for r in rows), 3),
                   "hints_per_project": mean("hints"), "hints_on_bugs_per_project": mean("hints_on_bugs"),
                   "hints_clean": clean_hints, "seconds": round(time.perf_counter() - started, 1)})
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
