#!/usr/bin/env bash
# One GPU run for the kernels: the bf16 full-shape kernel tests (pytest -m gpu tests/kernels), then the MSA decode
# benchmark (five-launch, fused two-launch and fp8 paths with their floors, then the whole 1.5B-shaped decode step,
# dense vs MSA at 128k and 1M through CUDA graphs). Everything lands under $OUT:
#   env.txt  kernels-tests.log  kernels-tests.xml  msa-decode.log  msa-decode.json
# Run from the repository root on a CUDA machine: bash benchmarks/gpu/kernels.sh
# Needs python3 with torch + triton + pytest (the device image has them); nothing is installed or downloaded.
# A failing test does not stop the benchmark. The benchmark runs with the library's launch parameters for the GPU
# (no tuning sweep: add --tune by hand for that), rewrites msa-decode.json after every measured row ("complete":
# false until the end) and starts no new row after BENCH_BUDGET seconds (what is left is listed as "skipped").
# Time limits: 200 s (tests) + 320 s (benchmark, budget 260 s) + 10 s of kill grace: under 9 minutes in all.
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/msa-kernels-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
unset TRITON_INTERPRET MSA_KERNELS MSA_FUSED

{
  date -u +%FT%TZ
  git rev-parse HEAD 2>/dev/null || true
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv 2>&1
  "$PY" -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__, torch.cuda.get_device_name())' 2>&1
} >"$OUT/env.txt"
cat "$OUT/env.txt"

timeout -k 5 200 "$PY" -m pytest -q -m gpu tests/kernels -p no:cacheprovider \
  --junitxml="$OUT/kernels-tests.xml" 2>&1 | tee "$OUT/kernels-tests.log"
tests_rc=${PIPESTATUS[0]}

timeout -k 5 320 "$PY" benchmarks/bench_msa_decode.py --time-budget "${BENCH_BUDGET:-260}" --out "$OUT/msa-decode.json" \
  2>&1 | tee "$OUT/msa-decode.log"
bench_rc=${PIPESTATUS[0]}

echo "kernels.sh: gpu tests exit $tests_rc, benchmark exit $bench_rc (124 = time limit); results in $OUT"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
