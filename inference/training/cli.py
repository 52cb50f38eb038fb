"""`msa-lsp train STEP ...`: corpus (build data), tokenizer (train BPE), fit (train + evaluate + export).

Parses its own arguments from the remainder lsp/cli.py passes through.  Not its job: the work itself.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

BUNDLED = Path(__file__).resolve().parent.parent / "bundled"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="msa-lsp train")
    sub = p.add_subparsers(dest="step", required=True)
    c = sub.add_parser("corpus", help="filter, deduplicate and split registry-installed sources")
    c.add_argument("--python", help="a site-packages folder")
    c.add_argument("--npm", help="a node_modules folder")
    c.add_argument("--go", help="Debian's /usr/share/gocode/src (from golang-*-dev packages)")
    c.add_argument("--rust", help="Debian's /usr/share/cargo/registry (from librust-*-dev packages)")
    c.add_argument("--out", required=True)
    t = sub.add_parser("tokenizer", help="train the byte-level BPE tokenizer on the training split")
    t.add_argument("--data", required=True)
    t.add_argument("--out", default=str(BUNDLED / "tokenizer.json"))
    t.add_argument("--mb", type=float, default=56.0, help="megabytes of text sampled across sources")
    f = sub.add_parser("fit", help="train the model, evaluate on held-out projects, write the checkpoint")
    f.add_argument("--data", required=True, help="folder written by `msa-lsp train corpus`")
    f.add_argument("--out", required=True)
    f.add_argument("--tokenizer", default=str(BUNDLED / "tokenizer.json"))
    f.add_argument("--python-site", default=None, help="site-packages to add as Python data ('none' to skip)")
    f.add_argument("--python-mb", type=float, default=200.0)
    f.add_argument("--project-mb", type=float, default=12.0)
    f.add_argument("--python-skip-mb", type=float, default=0.0, help="skip this much Python (sorted projects) first")
    f.add_argument("--init-from", default=None, help="checkpoint folder to continue training from")
    f.add_argument("--model-config", default="", help="JSON overriding ModelConfig fields")
    f.add_argument("--seq-len", type=int, default=4096)
    f.add_argument("--batch", type=int, default=16)
    f.add_argument("--lr", type=float, default=3e-3)
    f.add_argument("--minutes", type=float, default=8.0)
    f.add_argument("--deadline-minutes", type=float, default=None, help="whole-run budget; training gets the rest")
    f.add_argument("--reserve-minutes", type=float, default=1.0, help="kept for evaluation and saving")
    f.add_argument("--lr-warmup-steps", type=int, default=200)
    f.add_argument("--steps", type=int, default=None)
    f.add_argument("--warmup-frac", type=float, default=0.3)
    f.add_argument("--log-every", type=int, default=25)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--middle-weight", type=float, default=3.0,
                   help="loss weight of tokens predicting a FIM middle and its <|endoftext|> (others 1)")
    f.add_argument("--fim-rate", type=float, default=0.7, help="share of parallel groups with a FIM tail")
    f.add_argument("--fim-order", choices=("psm", "spm"), default="psm",
                   help="FIM piece order of the tails (inference/fim.py); written to config.json as fim_order")
    f.add_argument("--causal-rate", type=float, default=0.3, help="share of rows in the sequential layout")
    f.add_argument("--callsite-rate", type=float, default=0.4,
                   help="share of FIM tails whose middle starts at a name defined in an included context file")
    f.add_argument("--rename-rate", type=float, default=0.25,
                   help="share of FIM groups whose cross-file names are renamed to fresh compound names")
    f.add_argument("--rename-names", type=int, default=3,
                   help="most names renamed in a group (between half of it and it, at least 1)")
    f.add_argument("--rename-own", action="store_true", help="rename names the target file defines too")
    f.add_argument("--qualify-rate", type=float, default=0.0,
                   help="share of FIM groups whose module-qualified uses of included files (Python imports rewritten "
                        "so) become preferred, copy-weighted call sites")
    f.add_argument("--segment-names", action="store_true",
                   help="context segments' headers list their files' top-level names (inference/file_summary.py); "
                        "written to config.json, and kept when continuing from a checkpoint that has it")
    f.add_argument("--copy-weight", type=float, default=1.0,
                   help="loss weight of tokens of renamed cross-file names anywhere in the live tail")
    f.add_argument("--row-threads", type=int, default=3, help="threads building rows")
    f.add_argument("--row-processes", type=int, default=0, help="processes building rows (instead of threads)")
    f.add_argument("--device", default="auto")
    f.add_argument("--skip-eval", action="store_true")
    return p


def main(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    opts = parser().parse_args(getattr(args, "train_args", None) if not isinstance(args, list) else args)
    if opts.step == "corpus":
        from inference.training.build_corpus import build

        sources = {k: getattr(opts, k) for k in ("npm", "go", "rust", "python") if getattr(opts, k)}
        missing = [v for v in sources.values() if not Path(v).is_dir()]
        if not sources or missing:
            print(f"msa-lsp train corpus: give existing source folders (missing: {missing or 'all'})", file=sys.stderr)
            return 2
        build(sources, Path(opts.out), {})
        return 0
    if opts.step == "tokenizer":
        from inference.training.corpus import read_records
        from inference.training.tokenizer import sample_texts, train_tokenizer

        data = Path(opts.data)
        if not any(data.glob("train-*.jsonl.xz")):
            print(f"msa-lsp train tokenizer: no train-*.jsonl.xz in {data} (run `msa-lsp train corpus` first)",
                  file=sys.stderr)
            return 2
        shares = {"python": 0.43, "npm": 0.32, "go": 0.14, "rust": 0.11}

        def texts():
            for name, share in shares.items():
                path = data / f"train-{name}.jsonl.xz"
                if path.exists():
                    yield from sample_texts(read_records(path), opts.mb * 1e6 * share, seed=0, keep=0.35)

        train_tokenizer(texts()).save(opts.out)
        return 0
    if not any(Path(opts.data).glob("train-*.jsonl.xz")):
        print(f"msa-lsp train fit: no train-*.jsonl.xz in {opts.data} (run `msa-lsp train corpus` first)", file=sys.stderr)
        return 2
    from inference.training.train import run

    return run(opts)
