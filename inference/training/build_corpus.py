"""`msa-lsp train corpus`: turns registry-installed source trees into compressed training and held-out files.

Writes into --out: train-<source>.jsonl.xz per source, heldout.jsonl.xz (all held-out projects), heldout-hashes.txt
(exact and normalised hashes of held-out files, so data gathered elsewhere can be deduplicated against them) and
stats.json (counts of kept and dropped files by reason).  Not its job: downloading anything (see README.md).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from inference.training.corpus import Deduplicator, collect, exact_hash, normalized_hash, write_projects

log = logging.getLogger(__name__)


def build(sources: dict[str, str], out: Path, max_bytes: dict[str, int], known_hashes: Path | None = None) -> dict:
    """sources: kind -> folder.  Held-out projects are collected first so their copies never reach training."""
    out.mkdir(parents=True, exist_ok=True)
    known = known_hashes.read_text().split() if known_hashes and known_hashes.exists() else []
    dedup = Deduplicator(known)
    stats: dict = {}
    heldout = []
    for kind, folder in sources.items():
        heldout.extend(collect(Path(folder), kind, dedup, stats.setdefault(f"heldout-{kind}", {}), want_heldout=True))
    if heldout:
        write_projects(heldout, out / "heldout.jsonl.xz")
        hashes = sorted({h for p in heldout for _, t in p.files for h in (exact_hash(t), "n" + normalized_hash(t))})
        (out / "heldout-hashes.txt").write_text("\n".join(hashes) + "\n")
    for kind, folder in sources.items():
        projects = collect(Path(folder), kind, dedup, stats.setdefault(kind, {}), want_heldout=False)
        written = write_projects(projects, out / f"train-{kind}.jsonl.xz", max_bytes.get(kind))
        stats[kind]["bytes_written"] = written
        log.info("%s: %s", kind, stats[kind])
    (out / "stats.json").write_text(json.dumps(stats, indent=1, sort_keys=True) + "\n")
    return stats
