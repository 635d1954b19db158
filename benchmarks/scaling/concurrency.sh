#!/usr/bin/env bash
# How much a rank's eager generation slows down beside another busy rank on the same host,
# with and without --pin-cpus. Needs 2 GPUs and ecomeasure installed (see benchmarks/gpu.sh).
# Eager HF decode is host-bound, so two ranks compete for the CPU even though each has its own GPU.
#   OUT=DIR MODEL=tinyllama REGIME=eager bash benchmarks/scaling/concurrency.sh
# (or `bash benchmarks/gpu.sh concurrency`, which writes to gpu-out/concurrency).
# Runs: alone (one process, GPU 0, fp16), then torchrun with 2 ranks where rank 0 and rank 1
# measure fp16 and bf16 of the same model at the same time (the planner splits the two
# equal-cost configurations), pinned and not. Output: $OUT/{alone,pinned,unpinned}/ (results,
# run files with each rank's cpu_affinity), *.log and $OUT/concurrency.txt (tok/s, CV %, J/1k).
# Random weights go to $WEIGHTS (default $OUT/weights).
set -uo pipefail
OUT=${OUT:-concurrency-out}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
WEIGHTS=${WEIGHTS:-$OUT/weights}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1  # torchrun sets 1 per rank: the same everywhere
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
nvidia-smi --query-gpu=index,name,driver_version,power.limit --format=csv | tee "$OUT/nvidia-smi.txt"
[ "$(nvidia-smi -L | wc -l)" -ge 2 ] || { echo "needs 2 GPUs"; exit 1; }
nproc | tee "$OUT/nproc.txt"
# REGIME=eager or graph; unset: the bench's default regime.
regime_args=(${REGIME:+--regime "$REGIME"})

# "<tok/s mean> <CV %> <J/1k>" of each row of results.csv under $1 matching quant $2.
throughput() {
  python3 - "$1" "$2" <<'PY'
import csv, sys
for r in csv.DictReader(open(f"{sys.argv[1]}/results.csv")):
    if r["quant"] == sys.argv[2] and r["status"] == "ok":
        print(r["model"], r["quant"], "bs" + r["batch_size"], r["throughput_tok_s_mean"], r["throughput_cv_pct"], r["energy_j_per_1k_mean"])
PY
}
MODEL=${MODEL:-tinyllama}
proto=(--model "$MODEL" --batch-size 1 --new-tokens 64 --warmup 1 --warmup-tokens 32 --iterations 5
       --idle-seconds 3 --weights-dir "$WEIGHTS" "${regime_args[@]}")

CUDA_VISIBLE_DEVICES=0 python3 -m ecomeasure.bench "${proto[@]}" --quant fp16 --out "$OUT/alone" \
  > "$OUT/alone.log" 2>&1 || { tail -30 "$OUT/alone.log"; exit 1; }
for run in pinned unpinned; do
  flag=--pin-cpus; [ "$run" = unpinned ] && flag=--no-pin-cpus
  python3 -m torch.distributed.run --standalone --nproc-per-node 2 -m ecomeasure.bench "${proto[@]}" \
    --quant fp16 bf16 "$flag" --out "$OUT/$run" > "$OUT/$run.log" 2>&1 || { tail -30 "$OUT/$run.log"; exit 1; }
done
{
  echo "model quant bs tok_s cv_pct j_per_1k  (alone, then beside a busy rank)"
  echo "alone:";    throughput "$OUT/alone" fp16
  echo "pinned:";   throughput "$OUT/pinned" fp16; throughput "$OUT/pinned" bf16
  echo "unpinned:"; throughput "$OUT/unpinned" fp16; throughput "$OUT/unpinned" bf16
  for run in pinned unpinned; do
    python3 -c 'import json, sys; [print(p, "cores", json.load(open(p))["cpu_affinity"]) for p in sys.argv[1:]]' "$OUT/$run"/run-*.json
  done
} | tee "$OUT/concurrency.txt"
