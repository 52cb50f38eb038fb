"""`msa-lsp index` and `msa-lsp check`: run the workspace index from the command line and print a
summary or linter-style diagnostics (`path:line:col: severity code message`, 1-based, columns in
characters; JSON uses the same numbers, end positions exclusive). Check exits 1 when any error is
found, 2 when the path does not exist. No LSP here."""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter

from lsp.index import IndexOptions, WorkspaceIndex

_SKIPS_LISTED = 20


class _ProgressBar:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.enabled = stream.isatty()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if done < total and now - self.last < 0.05:
            return
        self.last = now
        width = 30
        filled = int(width * done / total) if total else width
        self.stream.write(f"\rindexing [{'#' * filled}{' ' * (width - filled)}] {done}/{total} files")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 60 + "\r")
            self.stream.flush()


def _build(path: str) -> tuple[WorkspaceIndex, str] | None:
    if not os.path.exists(path):
        print(f"msa-lsp: no such file or directory: {path}", file=sys.stderr)
        return None
    root = path if os.path.isdir(path) else _workspace_root(path)
    index = WorkspaceIndex()
    bar = _ProgressBar()
    try:
        index.build(root, IndexOptions(), progress=bar)
    finally:
        bar.close()
    return index, root


def _workspace_root(file_path: str) -> str:
    """For a single file: the nearest directory above it holding .git, else its own directory."""
    directory = os.path.dirname(os.path.abspath(file_path))
    probe = directory
    while True:
        if os.path.isdir(os.path.join(probe, ".git")):
            return probe
        parent = os.path.dirname(probe)
        if parent == probe:
            return directory
        probe = parent


def _shown(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def index_main(args) -> int:
    built = _build(args.path)
    if built is None:
        return 2
    index, root = built
    rel = lambda p: os.path.relpath(p, root)  # noqa: E731
    skipped = index.skipped
    summary = {
        "root": os.path.abspath(root),
        "files": len(index.files),
        "languages": dict(sorted(index.language_counts().items())),
        "symbols": index.symbol_count(),
        "import_edges": index.edge_count(),
        "cycles": [[rel(p) for p in cycle] for cycle in index.import_cycles()],
        "skipped": [{"path": rel(s.path), "reason": s.reason} for s in skipped],
        "seconds": round(index.build_seconds, 3),
    }
    if args.format == "json":
        print(json.dumps(summary, indent=2))
        return 0
    print(f"Indexed {summary['files']} files in {summary['seconds']:.2f} s ({_shown(root)})")
    for language, count in summary["languages"].items():
        print(f"  {language:<12}{count:>7}")
    print(f"Symbols: {summary['symbols']}   Import edges: {summary['import_edges']}   "
          f"Import cycles: {len(summary['cycles'])}")
    for cycle in summary["cycles"]:
        print("  cycle: " + " -> ".join(cycle + cycle[:1]))
    if skipped:
        reasons = Counter(s.reason.split(" (")[0] for s in skipped)
        print(f"Skipped {len(skipped)} files: " + ", ".join(f"{n} {r}" for r, n in reasons.most_common()))
        for entry in summary["skipped"][:_SKIPS_LISTED]:
            print(f"  {entry['path']}: {entry['reason']}")
        if len(skipped) > _SKIPS_LISTED:
            print(f"  ... and {len(skipped) - _SKIPS_LISTED} more (--format json lists all)")
    return 0


def check_main(args) -> int:
    built = _build(args.path)
    if built is None:
        return 2
    index, _ = built
    if os.path.isdir(args.path):
        per_file = index.all_diagnostics()
    else:
        target = os.path.abspath(args.path)
        per_file = {target: index.diagnostics(target)}
    rows = []
    for path, diagnostics in sorted(per_file.items()):
        for d in diagnostics:
            rows.append({
                "path": _shown(path), "line": d.range.start_line + 1, "column": d.range.start_col + 1,
                "end_line": d.range.end_line + 1, "end_column": d.range.end_col + 1,
                "severity": d.severity, "code": d.code, "message": d.message,
            })
    errors = sum(1 for r in rows if r["severity"] == "error")
    warnings = sum(1 for r in rows if r["severity"] == "warning")
    if args.format == "json":
        print(json.dumps({"diagnostics": rows, "errors": errors, "warnings": warnings, "files": len(index.files)}, indent=2))
    else:
        for r in rows:
            print(f"{r['path']}:{r['line']}:{r['column']}: {r['severity']} {r['code']} {r['message']}")
        print(f"{errors} error(s), {warnings} warning(s) in {len(index.files)} files", file=sys.stderr)
    return 1 if errors else 0
