#!/usr/bin/env bash
# bench_quality on a CUDA machine, twice: as the CPU server completes (live window 256,32: the same cases and
# prompts as the CPU run) and as the GPU server completes (its default window), the second with every call site and
# four needle trials per depth. Everything lands under $OUT: env.txt quality-window256.txt quality-default.txt (+ .err)
# Run from the repository root: bash benchmarks/gpu/quality.sh DATA_DIR, where DATA_DIR holds heldout.jsonl.xz with
# every held-out project, the Python ones too, so that the GPU machine's own site-packages change nothing; make it
# where the held-out Python packages are installed: python benchmarks/bench_quality.py --data .training-data \
#   --export-heldout DATA_DIR
# Time limits: 270 s per run, under 9.5 minutes in all.
set -u
cd "$(dirname "$0")/../.."
DATA=${1:?usage: bash benchmarks/gpu/quality.sh DATA_DIR}
OUT=${OUT:-/tmp/msa-quality-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
{
  date -u +%FT%TZ
  git rev-parse HEAD 2>/dev/null || true
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
} >"$OUT/env.txt"
timeout -k 5 270 "$PY" benchmarks/bench_quality.py --device cuda --data "$DATA" --needle-trials 1 \
  --live-window 256,32 >"$OUT/quality-window256.txt" 2>"$OUT/quality-window256.err"
echo "window 256,32: rc=$?"
timeout -k 5 270 "$PY" benchmarks/bench_quality.py --device cuda --data "$DATA" --cases 1000 --needle-trials 4 \
  >"$OUT/quality-default.txt" 2>"$OUT/quality-default.err"
echo "default window: rc=$?"
tail -n 30 "$OUT"/quality-*.err
