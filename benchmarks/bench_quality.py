"""Model quality on held-out projects through the serving Engine (CPU-runnable).

The repository cache holds each held-out project whole, as the server holds a workspace (--repo-tokens caps it for
a quicker run; a capped cache can leave out the files a call site resembles).

1. bits per byte of held-out files, scored with the project's other files in the repository cache vs alone;
2. cross-file identifier completion: at call sites of functions defined only in another file of the project (and
   named nowhere earlier in the current file; Python, and apart Go: a function of the same package), exact match
   of the completed name and of name + arguments (FIM completion through Engine.complete), and "forced": every
   token of the name has probability > 0.5 when the file is read left to right (Engine.score; such a name is what
   greedy decoding produces), and "typed": exact match of the rest of the name once its first TYPED characters are
   typed (an editor asks again at every keystroke), with the repository cache vs the current file alone (Wilson
   95% intervals; the paired difference of the two arms on the same cases with its 95% interval and McNemar's
   exact p; mean bits for the name);
3. needle in a repository: a uniquely named function in one file placed at depths 0-100% of a ~32k and ~128k-token
   repository of held-out files; exact match of its name at a call site in the live file (and of the rest of it
   once its first TYPED characters are typed);
4. module binding: six module files each defining one fresh name, a live file that imports one of them and asks at
   `module.`: how often that module's name is the likeliest of the six (chance 1 in 6), and exact match.

Completions are the server's: after `module.` of an imported repository module the engine holds the name to that
module's names (inference/member_names.py); `--member-names off` measures the model alone (the likelihoods,
"forced" and the binding's ranking are the model's either way).  "member sites" counts the cases where that applied.

Held-out projects are the ones inference/training/corpus.py lists (never trained on): by default the Python ones
installed in this interpreter's site-packages; --data adds `msa-lsp train corpus` output (heldout.jsonl.xz).
Prints a table and ends with one JSON line.  Usage: python benchmarks/bench_quality.py [--model DIR] [--data DIR]
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import random
import re
import site
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference.training.corpus import (Deduplicator, Project, collect, group_by_project, read_records,  # noqa: E402
                                       write_projects)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def paired_difference(repo_only: int, alone_only: int, n: int, z: float = 1.96) -> dict:
    """Paired comparison of two arms on the same n cases: the difference of their success rates with a 95%
    interval (Wald, on the discordant pairs) and the exact two-sided McNemar p-value (a sign test on the cases
    only one arm gets right)."""
    b, c = repo_only, alone_only
    diff = (b - c) / max(n, 1)
    half = z * math.sqrt(max(b + c - (b - c) ** 2 / max(n, 1), 0.0)) / max(n, 1)
    k, m = min(b, c), b + c
    p = min(1.0, 2 * sum(math.comb(m, i) for i in range(k + 1)) / 2 ** m) if m else 1.0
    return {"difference": round(diff, 4), "ci95": [round(diff - half, 4), round(diff + half, 4)], "p": round(p, 5)}


def heldout_projects(data: str | None) -> dict[str, list[tuple[str, str]]]:
    projects: dict = {}
    if data:
        projects.update(group_by_project(read_records(Path(data) / "heldout.jsonl.xz")))
    for sp in site.getsitepackages():
        if not Path(sp).is_dir():
            continue
        for project in collect(Path(sp), "python", Deduplicator(), {}, want_heldout=True):
            projects.setdefault(f"python:{project.name}", project.files)
    return projects


TOKEN_CAP = 0  # repository tokens synced per held-out project; 0: the whole project, as the server holds it


def sync_project(engine, files, first: set[str] = frozenset(), token_cap: int | None = None):
    """Makes the cache hold this project's files (those in `first` before the rest), up to token_cap tokens when
    one is given (a quicker, weaker cache: the files a call site resembles may be left out)."""
    token_cap = token_cap or TOKEN_CAP or math.inf
    engine.sync(add=[], drop=list(engine.repo.files))
    add, used = [], 0
    for path, text in sorted(files, key=lambda f: f[0] not in first):
        n = len(text) // 3
        if used + n > token_cap:
            continue
        add.append((path, str(hash(text)), text))
        used += n
    engine.sync(add=add, drop=[])


def bits_per_byte(engine_repo, engine_alone, projects, n_files: int, rng) -> dict:
    cases = [(name, path, text) for name, files in projects.items() if len(files) > 1 for path, text in files]
    rng.shuffle(cases)
    cases = sorted(cases[:n_files])
    bits = {"repo": 0.0, "alone": 0.0}
    nbytes, current = 0, None
    for name, path, text in cases:
        if name != current:
            sync_project(engine_repo, projects[name])
            current = name
        text = text[:1500]
        scored = {}
        for arm, eng in (("repo", engine_repo), ("alone", engine_alone)):
            scored[arm] = eng.score(path, text, 0, len(text))
        covered = {s for _, s, _ in scored["repo"]} & {s for _, s, _ in scored["alone"]}
        for arm in bits:
            bits[arm] += -sum(lp for _, s, lp in scored[arm] if s in covered) / math.log(2)
        nbytes += sum(len(t.encode("utf-8")) for t, s, _ in scored["repo"] if s in covered)
    return {"files": len(cases), "bytes": nbytes, **{f"{k}_bits_per_byte": v / max(nbytes, 1) for k, v in bits.items()}}


def call_sites(files: list[tuple[str, str]]) -> list[dict]:
    """Python call sites of top-level functions/classes defined in exactly one other file, first mention only."""
    defined: dict[str, set[str]] = {}
    trees = {}
    for path, text in files:
        if not path.endswith(".py"):
            continue
        try:
            trees[path] = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        for node in trees[path].body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and len(node.name) > 3:
                defined.setdefault(node.name, set()).add(path)
    texts = dict(files)
    sites = []
    for path, tree in trees.items():
        lines = texts[path].split("\n")
        seen = set()
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if not name or name in seen or len(defined.get(name, ())) != 1 or path in defined[name]:
                continue
            line = lines[node.lineno - 1]
            end_col = func.end_col_offset
            col = len(line.encode("utf-8")[:end_col].decode("utf-8", "ignore")) - len(name)
            if line[col:col + len(name)] != name:
                continue
            start = sum(len(l) + 1 for l in lines[: node.lineno - 1]) + col
            text = texts[path]
            if name in text[:start]:
                continue
            seen.add(name)
            rest = line[col:].rstrip()
            sites.append({"path": path, "name": name, "start": start, "line_rest": rest, "defined_in": next(iter(defined[name])),
                          "prefix": text[:start], "suffix": text[start + len(line) - col:]})
    return sites


def name_logprobs(engine, path: str, text: str, start: int, end: int) -> list[float]:
    """Log-probabilities of the tokens spelling text[start:end), reading the file left to right (no FIM)."""
    return [lp for _, _, lp in engine.score(path, text, start, end)]


TYPED = 2  # characters of the name typed before the "typed" completion


def _completes(out: str, name: str) -> bool:
    """`out` spells `name` and then leaves the identifier (an exact name, not a longer one)."""
    after = out[len(name):][:1]
    return out.startswith(name) and not (after.isalnum() or after == "_")


def completion(engine, path, prefix, suffix, max_tokens=16) -> str:
    return "".join(engine.complete(path, prefix, suffix, max_tokens=max_tokens))


_GO_FUNC = re.compile(r"^func[ \t]+([A-Za-z_]\w*)[ \t]*[\[(]", re.M)
_GO_CALL = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\(")


def go_call_sites(files: list[tuple[str, str]]) -> list[dict]:
    """Go call sites of functions (no receiver) defined in exactly one other file of the same package (folder),
    called there without a qualifier, first mention only; test files call, they do not define."""
    folder = lambda path: path.rsplit("/", 1)[0] if "/" in path else ""
    defined: dict[str, set[str]] = {}
    for path, text in files:
        if path.endswith(".go") and not path.endswith("_test.go"):
            for m in _GO_FUNC.finditer(text):
                if len(m.group(1)) > 3:
                    defined.setdefault(m.group(1), set()).add(path)
    sites = []
    for path, text in files:
        if not path.endswith(".go"):
            continue
        seen = set()
        for m in _GO_CALL.finditer(text):
            name, start = m.group(1), m.start()
            where = defined.get(name, ())
            if name in seen or len(where) != 1 or path in where or folder(next(iter(where))) != folder(path) \
                    or name in text[:start]:
                continue
            seen.add(name)
            end = text.find("\n", start)
            end = len(text) if end < 0 else end
            sites.append({"path": path, "name": name, "start": start, "line_rest": text[start:end].rstrip(),
                          "defined_in": next(iter(where)), "prefix": text[:start], "suffix": text[end:]})
    return sites


def cross_file(engine_repo, engine_alone, projects, n_cases: int, rng, sites=call_sites) -> dict:
    cases = []
    for name, files in projects.items():
        for s in sites(files):
            cases.append((name, s))
    rng.shuffle(cases)
    cases = sorted(cases[:n_cases], key=lambda c: c[0])
    hits = {arm: {"name": 0, "args": 0, "forced": 0, "typed": 0} for arm in ("repo", "alone")}
    name_bits = {"repo": 0.0, "alone": 0.0}
    paired = {"repo_only": 0, "alone_only": 0}
    typed_pairs = {"repo_only": 0, "alone_only": 0}
    member_sites = {"repo": 0, "alone": 0}
    current, examples = None, []
    for i, (name, s) in enumerate(cases):
        if i % 10 == 0:
            print(f"  cross-file case {i}/{len(cases)}", file=sys.stderr, flush=True)
        if name != current:
            sync_project(engine_repo, projects[name], {c["defined_in"] for n, c in cases if n == name})
            current = name
        got, got_typed = {}, {}
        for arm, eng in (("repo", engine_repo), ("alone", engine_alone)):
            out = completion(eng, s["path"], s["prefix"], s["suffix"]).split("\n")[0]
            ok_name = _completes(out, s["name"])
            member_sites[arm] += eng.last_stats["member_names"] > 0
            hits[arm]["name"] += ok_name
            typed = completion(eng, s["path"], s["prefix"] + s["name"][:TYPED], s["suffix"]).split("\n")[0]
            got_typed[arm] = _completes(typed, s["name"][TYPED:])
            hits[arm]["typed"] += got_typed[arm]
            hits[arm]["args"] += out.rstrip() == s["line_rest"]
            got[arm] = ok_name
            forced = name_logprobs(eng, s["path"], s["prefix"] + s["line_rest"], s["start"], s["start"] + len(s["name"]))
            name_bits[arm] += -sum(forced) / math.log(2)
            hits[arm]["forced"] += all(lp > math.log(0.5) for lp in forced)
            if len(examples) < 6 and arm == "repo":
                examples.append({"expected": s["line_rest"][:60], "repo": out[:60]})
        paired["repo_only"] += got["repo"] and not got["alone"]
        paired["alone_only"] += got["alone"] and not got["repo"]
        typed_pairs["repo_only"] += got_typed["repo"] and not got_typed["alone"]
        typed_pairs["alone_only"] += got_typed["alone"] and not got_typed["repo"]
    n = len(cases)
    result = {"cases": n, "paired": paired, "examples": examples, "member_sites": member_sites,
              "name_difference": paired_difference(paired["repo_only"], paired["alone_only"], n),
              "typed_difference": paired_difference(typed_pairs["repo_only"], typed_pairs["alone_only"], n),
              **{f"{arm}_name_bits": round(v / max(n, 1), 3) for arm, v in name_bits.items()}}
    for arm in hits:
        for kind in ("name", "args", "forced", "typed"):
            k = hits[arm][kind]
            lo, hi = wilson(k, n)
            result[f"{arm}_{kind}_em"] = round(k / max(n, 1), 4)
            result[f"{arm}_{kind}_ci95"] = [round(lo, 4), round(hi, 4)]
    return result


WORDS = "amber basalt cobalt dapple ember fjord garnet harbor indigo juniper kestrel lantern meadow nectar obsidian " \
        "pebble quartz russet saffron tundra umber velvet willow xylem yonder zephyr".split()


def one_function_module(module: str, name: str) -> str:
    """A small module billing/<module>.py that defines one function `name`."""
    return (f'"""{module.capitalize()} for the billing pipeline."""\n\n\ndef {name}(record, limit=10):\n'
            f'    """Return the record trimmed to limit entries."""\n    return record[:limit]\n')


def replace_repository(engine, files: list[tuple[str, str]]) -> None:
    """The engine's repository becomes exactly `files` [(path, text)]."""
    engine.sync(add=[], drop=list(engine.repo.files))
    engine.sync(add=[(p, str(hash(x)), x) for p, x in files], drop=[])


def needle(engine, engine_alone, projects, sizes: list[int], depths: list[float], rng, trials: int) -> dict:
    filler = [(f"{name.split(':')[-1]}/{p}", t) for name, files in sorted(projects.items()) for p, t in files]
    rng.shuffle(filler)
    results = {}
    for size in sizes:
        chosen, used = [], 0
        for path, text in filler:
            n = len(engine.tok.encode(text))
            if used + n > size:
                continue
            chosen.append((path, text))
            used += n
        rows = []
        for depth in depths:
            ok = forced = typed = 0
            bits = bits_alone = 0.0
            for t in range(trials):
                fname = "_".join(rng.sample(WORDS, 3)) + f"_{rng.randrange(100, 999)}"
                files = list(chosen)
                files.insert(round(depth * len(files)), ("billing/helpers.py", one_function_module("helpers", fname)))
                replace_repository(engine, files)
                prefix = "from billing import helpers\n\n\ndef trim(record):\n    return helpers."
                out = completion(engine, "billing/main.py", prefix, "\n", max_tokens=16)
                ok += out.startswith(fname + "(") or out.strip() == fname
                rest = completion(engine, "billing/main.py", prefix + fname[:TYPED], "\n", max_tokens=16)
                typed += _completes(rest, fname[TYPED:])
                lps = name_logprobs(engine, "billing/main.py", prefix + fname + "(record)\n", len(prefix), len(prefix) + len(fname))
                forced += all(lp > math.log(0.5) for lp in lps)
                bits += -sum(lps) / math.log(2)
                alone = name_logprobs(engine_alone, "billing/main.py", prefix + fname + "(record)\n", len(prefix), len(prefix) + len(fname))
                bits_alone += -sum(alone) / math.log(2)
            rows.append({"depth": depth, "exact": ok, "typed": typed, "forced": forced, "name_bits": round(bits / trials, 2),
                         "name_bits_without_repo": round(bits_alone / trials, 2), "trials": trials})
            print(f"  needle {used} tokens depth {depth}: {ok}/{trials} completed, {typed}/{trials} after {TYPED} "
                  f"typed characters, {forced}/{trials} forced, "
                  f"{bits / trials:.1f} bits for the name ({bits_alone / trials:.1f} without the repo)", file=sys.stderr, flush=True)
        results[f"{used}_tokens"] = rows
    return results


MODULES = ["helpers", "storage", "invoices", "parsing", "network", "reports"]


def module_binding(engine, rng, trials: int) -> dict:
    """The skill a `module.` call site needs: six files billing/<module>.py each define one fresh name; the live
    file imports one module and reads `return <module>.`.  How often the imported module's name is the likeliest
    of the six (chance: 1 in 6), the mean bits it is behind (-) or ahead of (+) the likeliest other, and exact
    match of the greedy completion."""
    likeliest = exact = 0
    margin = 0.0
    for _ in range(trials):
        names = {m: "_".join(rng.sample(WORDS, 2)) + f"_{rng.randrange(10, 99)}" for m in MODULES}
        files = [(f"billing/{m}.py", one_function_module(m, n)) for m, n in names.items()]
        rng.shuffle(files)
        replace_repository(engine, files)
        target = rng.choice(MODULES)
        prefix = f"from billing import {target}\n\n\ndef trim(record):\n    return {target}."
        bits = {m: sum(name_logprobs(engine, "billing/main.py", prefix + n + "(record)\n", len(prefix), len(prefix) + len(n)))
                / math.log(2) for m, n in names.items()}
        best_other = max(v for m, v in bits.items() if m != target)
        likeliest += bits[target] > best_other
        margin += bits[target] - best_other
        out = completion(engine, "billing/main.py", prefix, "\n", max_tokens=12)
        exact += out.startswith(names[target] + "(") or out.strip() == names[target]
    return {"trials": trials, "modules": len(MODULES), "likeliest": likeliest, "margin_bits": round(margin / trials, 2),
            "exact": exact}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model directory (default: the bundled model)")
    ap.add_argument("--data", default=None, help="folder with heldout.jsonl.xz from `msa-lsp train corpus`")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--files", type=int, default=16)
    ap.add_argument("--cases", type=int, default=60)
    ap.add_argument("--repo-tokens", type=int, default=TOKEN_CAP,
                    help="cap on the repository tokens synced per project (default 0: the whole project)")
    ap.add_argument("--needle-sizes", default="32000,128000")
    ap.add_argument("--needle-trials", type=int, default=2)
    ap.add_argument("--binding-trials", type=int, default=24)
    ap.add_argument("--skip", default="", help="comma list of parts to skip: bpb,crossfile,needle,binding")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--live-window", default="", metavar="PREFIX,SUFFIX",
                    help="the completion prompt's window in tokens (default: the engine's for the device)")
    ap.add_argument("--member-names", choices=("on", "off"), default="on",
                    help="hold a name after `module.` to the module's names, as the server does (default on)")
    ap.add_argument("--export-heldout", default="", metavar="DIR",
                    help="write every held-out project (--data's and this interpreter's Python ones) to "
                         "DIR/heldout.jsonl.xz, for a run elsewhere with --data DIR, and stop")
    args = ap.parse_args(argv)
    if args.export_heldout:
        out = Path(args.export_heldout)
        out.mkdir(parents=True, exist_ok=True)
        projects = heldout_projects(args.data)
        size = write_projects([Project(name.split(":", 1)[1], name.split(":", 1)[0], files)
                               for name, files in projects.items()], out / "heldout.jsonl.xz")
        print(f"{len(projects)} held-out projects, {size / 1e6:.1f} MB of source, in {out / 'heldout.jsonl.xz'}")
        return 0
    from inference.engine import Engine

    globals()["TOKEN_CAP"] = args.repo_tokens
    rng = random.Random(args.seed)
    skip = set(filter(None, args.skip.split(",")))
    projects = heldout_projects(args.data)
    knobs = {"member_names": args.member_names == "on"}
    if args.live_window:
        knobs["live_window"] = tuple(int(x) for x in args.live_window.split(","))
    engine_repo = Engine(args.model, device=args.device, cache_max_bytes=0, **knobs)
    engine_alone = Engine(args.model, device=args.device, **knobs)
    out = {"model": engine_repo.info()["model"], "params": engine_repo.info()["params"], "device": args.device,
           "member_names": args.member_names, "live_window": list(engine_repo.live_window),
           "heldout_projects": sorted(projects)}
    t0 = time.time()
    if "bpb" not in skip:
        out["bits_per_byte"] = bits_per_byte(engine_repo, engine_alone, projects, args.files, rng)
        print(f"bits/byte  repo {out['bits_per_byte']['repo_bits_per_byte']:.3f}  alone "
              f"{out['bits_per_byte']['alone_bits_per_byte']:.3f}  ({out['bits_per_byte']['files']} files)", file=sys.stderr)
    if "crossfile" not in skip:
        py = {k: v for k, v in projects.items() if k.startswith("python:")}
        out["cross_file"] = cf = cross_file(engine_repo, engine_alone, py, args.cases, rng)
        go = {k: v for k, v in projects.items() if k.startswith("go:")}
        out["cross_file_go"] = cross_file(engine_repo, engine_alone, go, args.cases, random.Random(args.seed + 1),
                                          sites=go_call_sites)  # its own draws: the later parts stay as they were
        for key in ("cross_file", "cross_file_go"):
            cf = out[key]
            print(f"{key} name EM  repo {cf['repo_name_em']:.3f} {cf['repo_name_ci95']}  alone {cf['alone_name_em']:.3f} "
                  f"{cf['alone_name_ci95']}  (n={cf['cases']})", file=sys.stderr)
    if "needle" not in skip:
        sizes = [int(s) for s in args.needle_sizes.split(",") if s]
        out["needle"] = needle(engine_repo, engine_alone, projects, sizes, [0.0, 0.25, 0.5, 0.75, 1.0], rng, args.needle_trials)
    if "binding" not in skip:
        out["binding"] = module_binding(engine_repo, rng, args.binding_trials)
    out["seconds"] = round(time.time() - t0, 1)
    print_table(out)
    print(json.dumps(out))
    return 0


def print_table(out: dict) -> None:
    print(f"{'measure':44s} {'repo cache':>18s} {'file alone':>18s}")
    if "bits_per_byte" in out:
        b = out["bits_per_byte"]
        print(f"{'bits per byte (held-out files)':44s} {b['repo_bits_per_byte']:18.3f} {b['alone_bits_per_byte']:18.3f}")
    for key, label in (("cross_file", "cross-file"), ("cross_file_go", "Go cross-file")):
        if key not in out:
            continue
        c = out[key]
        print(f"{label + ' name, bits (teacher-forced)':44s} {c['repo_name_bits']:18.2f} {c['alone_name_bits']:18.2f}")
        for kind in ("name", "args", "forced", "typed"):
            r, a = c[f"repo_{kind}_em"], c[f"alone_{kind}_em"]
            print(f"{label + ' EM, ' + kind + ' (n=' + str(c['cases']) + ')':44s} "
                  f"{r:6.3f} {str(c[f'repo_{kind}_ci95']):>11s} {a:6.3f} {str(c[f'alone_{kind}_ci95']):>11s}")
        print(f"{label + ' paired: right only with the cache / alone':44s} {c['paired']['repo_only']:>18d} "
              f"{c['paired']['alone_only']:>18d}")
        for kind in ("name", "typed"):
            d = c[f"{kind}_difference"]
            print(f"{label + ' EM ' + kind + ': cache minus alone, paired':44s} {d['difference']:+6.3f} "
                  f"{str(d['ci95']):>18s}  McNemar p={d['p']:.4f}")
        print(f"{label + ' member sites (names held, --member-names)':44s} {c['member_sites']['repo']:>18d} "
              f"{c['member_sites']['alone']:>18d}")
    for size, rows in out.get("needle", {}).items():
        cells = "  ".join(f"{int(r['depth'] * 100)}%:{r['exact']}/{r['typed']}/{r['forced']}/{r['trials']}" for r in rows)
        print(f"{'needle, ' + size + ' (completed/typed/forced/trials)':44s} {cells}")
    if "binding" in out:
        b = out["binding"]
        print(f"{'module binding, imported module likeliest':44s} {b['likeliest']:>12d}/{b['trials']} (chance 1/{b['modules']}), "
              f"margin {b['margin_bits']:+.1f} bits, completed {b['exact']}/{b['trials']}")


if __name__ == "__main__":
    sys.exit(main())
