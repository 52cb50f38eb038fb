#!/usr/bin/env bash
# One run on a 2-GPU machine (nvidia-h100-x2) for context parallel: the 1.5B-shaped random checkpoint, then
# bench_multigpu on 1 GPU and on 2 GPUs (torchrun), each with a ~1M-token base phase (decode plain / CUDA graph /
# graph without collectives) and a fit phase (each GPU's pool filled, then decoded through the graph), the merged
# table, then the 2-GPU graph tests (tests/multigpu/test_cp_graph_gpu.py). Everything lands under $OUT:
#   env.txt  one.log  one.json  two.log  two.json  multigpu.json  report.txt  gpu-tests.log
# Run from the repository root: bash benchmarks/gpu/multigpu.sh   (needs python3 with torch, triton, pytest,
# safetensors, tokenizers, msgpack; nothing is installed or downloaded). Each part has its own time limit inside
# a total of about 7.5 minutes; a failing part does not stop the next one, and each bench run rewrites its JSON
# after every phase, so what was measured before a failure is kept.
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/msa-multigpu-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # never NVLink multicast
unset TRITON_INTERPRET MSA_KERNELS MSA_FUSED CUDA_VISIBLE_DEVICES
CK=${MSA_BENCH_CHECKPOINT:-/tmp/msa-bench-1.5b}
TOTAL=450  # seconds for everything
BENCH=(--model "$CK" --tokens 1000000 --runs 2 --max-tokens 32 --tail-tokens 512 --fit)
[ -n "${MSA_MULTIGPU_ARGS:-}" ] && read -r -a BENCH <<<"--model $CK $MSA_MULTIGPU_ARGS"  # smaller runs (CPU check)

limit() {  # the smaller of a part's own limit and what is left of the total
  local left=$((TOTAL - SECONDS))
  [ "$left" -lt "$1" ] && echo $((left > 10 ? left : 10)) || echo "$1"
}

{
  date -u +%FT%TZ
  git rev-parse HEAD 2>/dev/null || true
  nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv 2>&1
  nvidia-smi topo -m 2>&1
  "$PY" -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__, "cuda", torch.version.cuda,
"gpus", torch.cuda.device_count()); print("nccl", torch.cuda.nccl.version())' 2>&1
} >"$OUT/env.txt"
cat "$OUT/env.txt"

if [ ! -f "$CK/model.safetensors" ]; then
  timeout -k 5 "$(limit 90)" "$PY" benchmarks/bench_multigpu.py --write-checkpoint "$CK" --preset "${MSA_PRESET:-1.5b}"
fi

CUDA_VISIBLE_DEVICES=0 timeout -k 10 "$(limit 130)" "$PY" benchmarks/bench_multigpu.py "${BENCH[@]}" \
  --out "$OUT/one.json" >"$OUT/one.log" 2>&1
one_rc=$?
tail -n 1 "$OUT/one.log" | cut -c1-600

timeout -k 10 "$(limit 220)" "$PY" -m torch.distributed.run --nproc-per-node 2 benchmarks/bench_multigpu.py \
  "${BENCH[@]}" --out "$OUT/two.json" >"$OUT/two.log" 2>&1
two_rc=$?
tail -n 1 "$OUT/two.log" | cut -c1-600

reports=()
for f in "$OUT/one.json" "$OUT/two.json"; do [ -s "$f" ] && reports+=("$f"); done
if [ "${#reports[@]}" -gt 0 ]; then
  "$PY" benchmarks/bench_multigpu.py --report "${reports[@]}" --out "$OUT/multigpu.json" >"$OUT/report.txt" 2>&1
fi

timeout -k 10 "$(limit 150)" "$PY" -m pytest -q tests/multigpu/test_cp_graph_gpu.py -p no:cacheprovider -o faulthandler_timeout=60 \
  >"$OUT/gpu-tests.log" 2>&1
tests_rc=$?
tail -n 15 "$OUT/gpu-tests.log"

grep -v '^{' "$OUT/report.txt" 2>/dev/null
echo "multigpu.sh: 1-GPU bench exit $one_rc, 2-GPU bench exit $two_rc, GPU tests exit $tests_rc (124 = time limit);" \
  "${SECONDS}s; results in $OUT"
[ "$one_rc" -eq 0 ] && [ "$two_rc" -eq 0 ] && [ "$tests_rc" -eq 0 ]
