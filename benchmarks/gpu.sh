#!/usr/bin/env bash
# Every GPU figure in README and docs, part by part, on the GPU(s) this process may see.
#   bash benchmarks/gpu_final.sh PART [PART ...]        # parts run one after another
#   CUDA_VISIBLE_DEVICES=1 bash benchmarks/gpu_final.sh validate &   # parts on another GPU at once
# Needs the bitsandbytes wheel in .whl/ (and zeus/codecarbon wheels in .whl-peers/ for `peers`).
# Each part writes under $OUT/<part>/ and packs it into $OUT/<part>.tgz when done (so a run cut
# short still returns what finished); the benchmark's results go to $DATASET (default
# /tmp/dataset, outside $OUT so that a later call on the same machine resumes it), shared by
# every process (the bench locks its files), packed into $OUT/dataset.tgz by `packall`.
# DEVICE=cuda:N runs the bench parts on that GPU without CUDA_VISIBLE_DEVICES.
# Parts:
#   checks    ecomeasure.info and the NVML call costs (benchmarks/nvml_probe.py)
#   regimes   Mistral-7B, fp16 nf4 int8 int8_pure, eager and graph, batch 1 (and 8 for fp16, int8_pure)
#   regraph   the same, graph regime only
#   compiled  Mistral-7B fp16, the compiled regime, batch 1 and 8
#   speed     Mistral-7B fp16 decode step, graph vs compiled: time and kernels (benchmarks/decode_speed.py)
#   overhead  the meter's cost on graph-regime throughput (benchmarks/meter_overhead.py)
#   validate  python -m ecomeasure.validate (its saved run)
#   peers     benchmarks/peers.py (Zeus, CodeCarbon beside ecomeasure)
#   dataset   MODELS="tinyllama qwen2-1.5b": fp16 nf4 int8 int8_pure, eager and graph, batch 1
#   batches   MODELS="qwen2-1.5b": fp16 int8_pure at batch sizes 4 and 8, eager and graph
#   concurrency  eager alone vs beside a busy rank, pinned and not (benchmarks/concurrency.sh)
#   scaling   the small models' graph rows (batch 1; 4 and 8 for qwen2-1.5b) on 1 GPU, then the
#             same sweep on 2 GPUs with torchrun; wall times, and a check that both measured alike
#             (SCALING_SWEEP=one: one command over their fp16 nf4 int8_pure at batch 1 and 4;
#             SCALING_MODELS and SCALING_BATCHES widen it, e.g. SCALING_MODELS="tinyllama
#             qwen2-1.5b qwen2.5-3b phi3-mini": a longer sweep to share its start-up)
#   build     only installs (also done before any other part)
#   packall   packs every folder left under $OUT (dataset/ once all writers are done)
set -uo pipefail
OUT=${OUT:-/tmp/ecomeasure-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
repo=$(cd "$(dirname "$0")/.." && pwd)
site=/tmp/site
if [ ! -f /tmp/ecomeasure-built ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target $site "$repo"/.whl/*.whl
  python3 -m pip install -q --no-build-isolation --no-deps "$repo" > "$OUT/build.log" 2>&1 \
    || { tail -30 "$OUT/build.log"; exit 1; }
  touch /tmp/ecomeasure-built
fi
export PYTHONPATH=$site
cd /tmp   # import the installed package, not the source tree
# The protocol of every benchmark row (the seed's 256 x 10 shortened to fit the GPU time).
DATASET=${DATASET:-/tmp/dataset}
PROTO=(--new-tokens 64 --warmup 2 --warmup-tokens 32 --iterations 5 --idle-seconds 5
       --weights-dir /tmp/weights --out "$DATASET" ${DEVICE:+--device "$DEVICE"})

pack() {  # pack DIR: $OUT/DIR -> $OUT/DIR.tgz
  [ -d "$OUT/$1" ] && tar -czf "$OUT/$1.tgz" -C "$OUT" "$1" && rm -rf "${OUT:?}/$1"
}
bench() { python3 -m ecomeasure.bench "$@"; }

checks() {
  mkdir -p "$OUT/checks"
  nvidia-smi --query-gpu=index,name,driver_version,power.limit,clocks.max.memory --format=csv \
    | tee "$OUT/checks/nvidia-smi.txt"
  python3 -m ecomeasure.info | tee "$OUT/checks/info.txt"
  OUT="$OUT/checks" timeout 120 python3 "$repo/benchmarks/nvml_probe.py" | tee "$OUT/checks/nvml_probe.txt"
  pack checks
}
regimes() {
  bench --model mistral --quant fp16 int8_pure --batch-size 1 8 --regime eager graph "${PROTO[@]}"
  bench --model mistral --quant nf4 int8 --batch-size 1 --regime eager graph "${PROTO[@]}"
}
regraph() {
  bench --model mistral --quant fp16 int8_pure --batch-size 1 8 --regime graph "${PROTO[@]}"
  bench --model mistral --quant nf4 int8 --batch-size 1 --regime graph "${PROTO[@]}"
}
speed() {
  python3 "$repo/benchmarks/decode_speed.py" --model mistral --variants graph compiled --weights-dir /tmp/weights \
    ${DEVICE:+--device "$DEVICE"} --out "$OUT/speed" | tee "$OUT/speed.log"
  mv "$OUT/speed.log" "$OUT/speed/" && pack speed
}
compiled() {
  bench --model mistral --quant fp16 --batch-size 1 8 --regime compiled "${PROTO[@]}"
}
overhead() {
  python3 "$repo/benchmarks/meter_overhead.py" --model mistral --pairs 12 --weights-dir /tmp/weights \
    --out "$OUT/overhead"
  pack overhead
}
validate() {
  python3 -m ecomeasure.validate --out "$OUT/validate"
  pack validate
}
peers() {
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/peers "$repo"/.whl-peers/*.whl
  PYTHONPATH=/tmp/peers:$site python3 "$repo/benchmarks/peers.py" --out "$OUT/peers"
  pack peers
}
dataset() {
  # shellcheck disable=SC2086
  bench --model ${MODELS:-tinyllama qwen2-1.5b} --quant fp16 nf4 int8 int8_pure --batch-size 1 \
    --regime eager graph "${PROTO[@]}"
}
batches() {
  # shellcheck disable=SC2086
  bench --model ${MODELS:-qwen2-1.5b} --quant fp16 int8_pure --batch-size 4 8 --regime eager graph "${PROTO[@]}"
}
concurrency() {
  OUT="$OUT/concurrency" REGIME=eager MODEL=${MODEL:-tinyllama} bash "$repo/benchmarks/concurrency.sh"
  pack concurrency
}
scaling() {
  mkdir -p "$OUT/scaling"
  # Graph rows: the GPU-bound regime, whose figures do not depend on a neighbour's host load.
  # shellcheck disable=SC2206
  local models=(--model ${SCALING_MODELS:-tinyllama qwen2-1.5b qwen2.5-3b}) quants=(--quant fp16 nf4 int8 int8_pure)
  local proto=("${PROTO[@]:0:10}" --weights-dir /tmp/weights --regime graph)
  CUDA_VISIBLE_DEVICES=0 bench "${models[@]}" --new-tokens 1 --warmup 0 --iterations 1 --idle-seconds 0 \
    --regime eager --weights-dir /tmp/weights --out "$OUT/scaling/prepare" > /dev/null 2>&1
  run_sweep() {  # run_sweep LAUNCHER... : the sweep into $dir
    if [ "${SCALING_SWEEP:-}" = one ]; then  # one command (18 configurations by default): a start paid once
      # shellcheck disable=SC2086
      "$@" "${models[@]}" --quant fp16 nf4 int8_pure --batch-size ${SCALING_BATCHES:-1 4} "${proto[@]}" --out "$dir"
    else
      "$@" "${models[@]}" "${quants[@]}" --batch-size 1 "${proto[@]}" --out "$dir" && \
      "$@" --model qwen2-1.5b --quant fp16 int8_pure --batch-size 4 8 "${proto[@]}" --out "$dir"
    fi
  }
  local t0 t1 t2 dir mono1 mono2
  monotonic() { python3 -c 'import time; print(time.monotonic())'; }
  gpu_state() { nvidia-smi --query-gpu=index,persistence_mode,pstate,clocks.sm,power.draw --format=csv,noheader; }
  { echo "before both runs (persistence mode: whether an idle GPU stays initialized):"; gpu_state; } > "$OUT/scaling/gpu-state.txt" 2>&1
  mono1=$(monotonic); t0=$(date +%s.%3N)
  dir="$OUT/scaling/one-gpu"; CUDA_VISIBLE_DEVICES=0 run_sweep python3 -m ecomeasure.bench \
    > "$OUT/scaling/one-gpu.log" 2>&1
  t1=$(date +%s.%3N); mono2=$(monotonic)  # its ~30 ms count against the 2-GPU run
  dir="$OUT/scaling/two-gpus"; run_sweep python3 -m torch.distributed.run --standalone --nproc-per-node 2 \
    -m ecomeasure.bench > "$OUT/scaling/two-gpus.log" 2>&1
  t2=$(date +%s.%3N)
  { echo "after both runs:"; gpu_state; } >> "$OUT/scaling/gpu-state.txt" 2>&1
  python3 - "$t0" "$t1" "$t2" "$OUT/scaling" <<'PY' | tee "$OUT/scaling/scaling.txt"
import csv, sys
t0, t1, t2 = map(float, sys.argv[1:4])
one, two = t1 - t0, t2 - t1
def statuses(name):
    with open(f"{sys.argv[4]}/{name}/results.csv") as f:
        return sorted((r["model"], r["quant"], r["batch_size"], r["status"]) for r in csv.DictReader(f))
same = statuses("one-gpu") == statuses("two-gpus")
ok = sum(s[-1] == "ok" for s in statuses("one-gpu"))
print(f"1 GPU: {one:.1f} s; 2 GPUs (torchrun): {two:.1f} s; 2-GPU / 1-GPU wall time {two / one:.2f}; "
      f"{ok} ok rows; both runs measured the same configurations with the same status: {same}")
import glob, json
from datetime import datetime
def at(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
for path in sorted(glob.glob(f"{sys.argv[4]}/*-gpu*/run-*.json")):  # where each process's time went
    run = json.load(open(path))
    print(f"{'/'.join(path.split('/')[-2:])}: {len(run['configurations'])} configurations, "
          f"{at(run['finished_utc']) - at(run['started_utc']):.0f} s from its start to its end, "
          f"started {at(run['started_utc']) - (t0 if '/one-gpu/' in path else t1):.0f} s after the launch")
PY
  # Where each process's time went (benchmarks/sweep_timeline.py), from its run file's marks.
  { python3 "$repo/benchmarks/sweep_timeline.py" --launched-at "$mono1" "$OUT"/scaling/one-gpu/run-*.json
    python3 "$repo/benchmarks/sweep_timeline.py" --launched-at "$mono2" "$OUT"/scaling/two-gpus/run-*.json
  } | tee -a "$OUT/scaling/scaling.txt"
  rm -rf "$OUT/scaling/prepare"
  pack scaling
}
build() { :; }
packall() {  # every folder left under $OUT (a part cut short by a timeout), and the
            # benchmark's rows once all writers are done
  for d in "$OUT"/*/; do [ -d "$d" ] && pack "$(basename "$d")"; done
  [ -d "$DATASET" ] && tar -czf "$OUT/dataset.tgz" -C "$(dirname "$DATASET")" "$(basename "$DATASET")"
}

for part in "$@"; do
  echo "=== $part ($(date -u +%H:%M:%S))"
  "$part"
done
