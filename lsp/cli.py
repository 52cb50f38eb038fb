"""The `msa-lsp` command line: one sub-command per job, each implemented in its own module.

Sub-command modules are imported only when their command runs, so `msa-lsp check` never loads torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# sub-command -> "module:function" taking the parsed arguments and returning an exit status
COMMANDS = {
    "serve": "lsp.server:main",
    "index": "lsp.report:index_main",
    "check": "lsp.report:check_main",
    "doctor": "lsp.doctor:main",
    "worker": "inference.worker:main",
    "complete": "lsp.complete_cli:main",
    "train": "inference.training.cli:main",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="msa-lsp", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version="msa-lsp 0.1.0")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the language server (stdio by default)")
    serve.add_argument("--tcp", metavar="HOST:PORT", help="listen on TCP instead of stdio")
    serve.add_argument("--log-file", help="write the server log here (stdout is the protocol)")
    serve.add_argument("--log-level", default="INFO")

    index = sub.add_parser("index", help="index a tree and print a summary")
    index.add_argument("path")
    index.add_argument("--format", choices=["text", "json"], default="text")

    check = sub.add_parser("check", help="print diagnostics like a linter; exit 1 on errors")
    check.add_argument("path")
    check.add_argument("--format", choices=["text", "json"], default="text")

    doctor = sub.add_parser("doctor", help="report what is installed and usable")
    doctor.add_argument("--model", help="model directory to check (default: the bundled model)")
    doctor.add_argument("--worker-address", help='check this worker ("unix:/path" or "tcp:host:port")')

    worker = sub.add_parser("worker", help="run the inference worker")
    worker.add_argument("--model", help="model directory (default: the bundled model)")
    worker.add_argument("--socket", help="Unix socket path to listen on")
    worker.add_argument("--listen", metavar="HOST:PORT", help="listen on TCP (needs --token-file)")
    worker.add_argument("--token-file", help="file holding the shared secret for TCP clients")
    worker.add_argument("--cache-dir", help="directory for persistent segment KV")
    worker.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    worker.add_argument("--devices", help="spread the repository cache over these devices, e.g. 0,1 (context "
                        "parallel; cpu,cpu for CPU ranks); torchrun launches need no --devices")
    worker.add_argument("--rank-timeout", type=float, default=60.0, help="seconds a rank may take per collective")
    worker.add_argument("--layout", choices=["parallel", "sequential"], default="parallel")
    worker.add_argument("--attention", choices=["sparse", "dense"], default="sparse")
    worker.add_argument("--top-k", type=int, default=16, help="MSA blocks read per query (incl. the local one)")
    worker.add_argument("--repo-name", default="repo", help="repository name in the shared prefix")
    worker.add_argument("--member-names", choices=["on", "off"], default="on",
                        help="after `module.` of an imported repository module, complete one of its names")
    worker.add_argument("--cache-max-gib", type=float, help="size cap of --cache-dir")
    worker.add_argument("--max-frame-bytes", type=int, help=argparse.SUPPRESS)
    worker.add_argument("--exit-with-stdin", action="store_true", help="exit when stdin closes (spawned workers)")

    complete = sub.add_parser("complete", help="print the completion at FILE:LINE:COL (1-based)")
    complete.add_argument("location", metavar="FILE:LINE:COL")
    complete.add_argument("--model", help="model directory (default: the bundled model)")
    complete.add_argument("--max-tokens", type=int, default=64)

    train = sub.add_parser("train", help="build data, train the tokenizer or train the bundled model")
    train.add_argument("train_args", nargs=argparse.REMAINDER, metavar="{corpus,tokenizer,fit} ...",
                       help="a step and its options; see `msa-lsp train STEP --help`")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module_name, func_name = COMMANDS[args.command].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        print(f"msa-lsp {args.command}: not available ({exc})", file=sys.stderr)
        return 2
    return int(getattr(module, func_name)(args) or 0)
