"""Repository layouts measured against each other (reference/kv-layouts.md §6): held-out-file NLL (all tokens and
cross-file identifier tokens) and cross-file identifier exact match, for the arms none / sequential / parallel
(dense and MSA-sparse) / offsets, on repositories that fit the model's window; "gap closed" is
(NLL_none - NLL_arm) / (NLL_none - NLL_sequential).

Repositories default to the Python projects the bundled model never trained on (inference/training/corpus.py
HELDOUT) as installed in this environment; pass --repo DIR (repeatable) for others. For each held-out file F the
context is the other files of its project, the ones defining names F uses first, up to what fits the window
beside F. Prints a table and ends with one JSON line.

    python benchmarks/bench_layouts.py                      # the bundled model
    python benchmarks/bench_layouts.py --model DIR --files-per-repo 4
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import re
import sys
import sysconfig

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference.engine import Engine  # noqa: E402

ARMS = {  # name -> Engine keyword arguments
    "sequential": dict(layout="sequential", attention="dense"),
    "parallel": dict(layout="parallel", attention="dense"),
    "parallel_msa": dict(layout="parallel", attention="sparse"),
    "offsets": dict(layout="offsets", attention="dense"),
}
HELDOUT_PYTHON = ["click", "jinja2", "pygls", "markdown_it", "msgpack"]
DEFINES = re.compile(r"^\s*(?:async\s+def|def|class)\s+([A-Za-z_]\w*)|^([A-Za-z_]\w*)\s*=", re.M)
WORD = re.compile(r"[A-Za-z_]\w*")


def default_repos() -> list[pathlib.Path]:
    site = pathlib.Path(sysconfig.get_paths()["purelib"])
    return [site / name for name in HELDOUT_PYTHON if (site / name).is_dir()]


def read_repo(root: pathlib.Path, max_chars: int = 40_000) -> dict[str, str]:
    files = {}
    for p in sorted(root.rglob("*.py")):
        if "__pycache__" in p.parts:
            continue
        text = p.read_text(errors="replace")
        if 200 <= len(text) <= max_chars:
            files[f"{root.name}/{p.relative_to(root)}"] = text
    return files


def defined_names(text: str) -> set[str]:
    return {a or b for a, b in DEFINES.findall(text)}


def pick_context(target: str, files: dict[str, str], engine: Engine, budget: int) -> tuple[list[str], set[str]]:
    """Other files, those defining names the target uses first, while their tokens fit `budget`."""
    used = set(WORD.findall(files[target]))
    own = defined_names(files[target])
    ranked = sorted((p for p in files if p != target),
                    key=lambda p: -len((defined_names(files[p]) - own) & used))
    chosen, total, cross = [], 0, set()
    for p in ranked:
        n = len(engine.tok.encode(engine.fim.file_header(p, files[p]) + files[p]))
        if total + n > budget:
            continue
        chosen.append(p)
        total += n
        cross |= (defined_names(files[p]) - own) & used
    return chosen, cross


def cross_spans(text: str, names: set[str]) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), m.group()) for m in WORD.finditer(text) if m.group() in names]


def measure(engine: Engine, target: str, text: str, context: list[str], files: dict[str, str], names: set[str],
            cuts: int) -> dict:
    engine.sync([(p, p, files[p]) for p in context], [p for p in engine.repo.files if p not in context])
    scored = engine.score(target, text, 0, len(text))
    spans = cross_spans(text, names)
    lp_all = [lp for _, _, lp in scored]
    lp_cross = [lp for tok, s, lp in scored if any(a < s + len(tok) and s < b for a, b, _ in spans)]
    hits = tried = 0
    for a, b, name in spans[:cuts]:
        eol = text.find("\n", b)
        completion = "".join(engine.complete(target, text[:a], text[eol if eol >= 0 else len(text):], max_tokens=12))
        tried += 1
        hits += completion.startswith(name)
    return dict(nll=-sum(lp_all) / max(1, len(lp_all)), nll_cross=-sum(lp_cross) / max(1, len(lp_cross)) if lp_cross else None,
                tokens=len(lp_all), cross_tokens=len(lp_cross), em_hits=hits, em_tried=tried)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="checkpoint directory (default: the bundled model)")
    ap.add_argument("--repo", action="append", default=[], help="repository directory (repeatable)")
    ap.add_argument("--files-per-repo", type=int, default=3)
    ap.add_argument("--cuts", type=int, default=5, help="identifier completions per held-out file")
    ap.add_argument("--target-chars", type=int, default=3000, help="held-out file prefix scored")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    engines = {name: Engine(args.model, device=args.device, **kw) for name, kw in ARMS.items()}
    base = engines["parallel"]
    budget = base.repo.cap  # context tokens: sequential must hold context + tail inside the window
    repos = [pathlib.Path(r) for r in args.repo] or default_repos()
    totals = {arm: dict(nll=0.0, nll_cross=0.0, n=0, n_cross=0, hits=0, tried=0) for arm in ["none", *ARMS]}
    for root in repos:
        files = read_repo(root)
        targets = sorted(files, key=lambda p: -len(cross_spans(files[p], set().union(
            *(defined_names(files[q]) for q in files if q != p)) - defined_names(files[p]))))[: args.files_per_repo]
        for target in targets:
            text = files[target][: args.target_chars]
            context, names = pick_context(target, files, base, budget)
            for arm in ["none", *ARMS]:
                engine = base if arm == "none" else engines[arm]
                r = measure(engine, target, text, [] if arm == "none" else context, files, names, args.cuts)
                t = totals[arm]
                t["nll"] += r["nll"] * r["tokens"]
                t["n"] += r["tokens"]
                if r["nll_cross"] is not None:
                    t["nll_cross"] += r["nll_cross"] * r["cross_tokens"]
                    t["n_cross"] += r["cross_tokens"]
                t["hits"] += r["em_hits"]
                t["tried"] += r["em_tried"]
            print(f"{target}: {len(context)} context files, {len(names)} cross-file names", file=sys.stderr)

    summary = {}
    for arm, t in totals.items():
        summary[arm] = dict(nll=t["nll"] / max(1, t["n"]), nll_cross=t["nll_cross"] / max(1, t["n_cross"]),
                            cross_em=t["hits"] / max(1, t["tried"]), tokens=t["n"], cross_tokens=t["n_cross"],
                            completions=t["tried"])
    none, seq = summary["none"], summary["sequential"]
    for arm, s in summary.items():
        for key in ("nll", "nll_cross"):
            gap = none[key] - seq[key]
            s[f"gap_closed_{key}"] = (none[key] - s[key]) / gap if abs(gap) > 1e-9 else math.nan
    print(f"{'arm':<14}{'NLL':>8}{'NLL x-file':>12}{'x-file EM':>11}{'gap closed':>12}{'(x-file)':>10}")
    for arm, s in summary.items():
        print(f"{arm:<14}{s['nll']:>8.3f}{s['nll_cross']:>12.3f}{s['cross_em']:>11.2%}"
              f"{s['gap_closed_nll']:>12.2f}{s['gap_closed_nll_cross']:>10.2f}")
    print(json.dumps(dict(bench="layouts", model=base.info()["model"], repos=[str(r) for r in repos], arms=summary,
                          context_budget_tokens=budget)))


if __name__ == "__main__":
    main()
