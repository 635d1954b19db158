#!/usr/bin/env bash
# Every GPU figure in README and docs, part by part, on the GPU(s) this process may see.
#   bash benchmarks/gpu.sh [--out DIR] PART [PART ...]       # parts run one after another
#   CUDA_VISIBLE_DEVICES=1 bash benchmarks/gpu.sh validate &  # parts on another GPU at once
# Everything it writes goes under DIR (--out, else $OUT, else ./gpu-out): one folder per part,
# the benchmark's rows in $DATASET (default DIR/dataset, shared by every process: the bench
# locks its files, and a rerun skips what is done), random weights in $WEIGHTS (default
# DIR/weights), logs beside them.
#
# Install, before or through the `build` part (any machine with an NVIDIA GPU, its driver, a
# CUDA build of torch and transformers):
#   python3 -m pip install --no-build-isolation --no-deps .   # the package (or: pip install ".[bench,quant,report]")
#   bitsandbytes and torchao (quantized rows), zeus and codecarbon (`peers`): installed as usual
#   (pip install ".[quant,peers]"), or, without a network, WHEELS=FOLDER names a folder of their
#   wheels: they are installed from it into DIR/site, which goes on PYTHONPATH. PEERS_WHEELS=FOLDER
#   keeps the peers' wheels apart (DIR/site-peers, on PYTHONPATH for `peers` only).
#   `bash benchmarks/maintainer/offline_wheels.sh` fetches both folders (.whl, .whl-peers).
# Before any part, the package is built as above if `import _ecomeasure` fails (name the `build`
# part first to rebuild a checkout whose csrc/ changed). The parts run from the repository root
# (python -m benchmarks.<group>.<script>), so they import this checkout's ecomeasure/.
# DEVICE=cuda:N runs the bench parts on that GPU without CUDA_VISIBLE_DEVICES.
# Parts:
#   build     only installs (also done before any other part where needed)
#   checks    ecomeasure.info and the NVML call costs (benchmarks/meter/nvml_probe.py)
#   meter     the sampler's cost and the stream marks (benchmarks/meter/sampler_overhead.py,
#             stream_marks.py)
#   regimes   Mistral-7B, fp16 nf4 int8 int8_pure, eager and graph, batch 1 (and 8 for fp16, int8_pure)
#   regraph   the same, graph regime only
#   compiled  Mistral-7B fp16, the compiled regime, batch 1 and 8
#   speed     Mistral-7B fp16 decode step, graph vs compiled: time and kernels (benchmarks/decode/decode_speed.py)
#   overhead  the meter's cost on graph-regime throughput (benchmarks/meter/meter_overhead.py)
#   validate  python -m ecomeasure.validate (its saved run)
#   peers     benchmarks/peers/peers.py (Zeus, CodeCarbon beside ecomeasure)
#   windows   the meter as others use it: a window's cost and time to result, the monitor command
#             against the energy counter, request attribution (benchmarks/meter/window_cost.py,
#             monitor_check.py, attribution.py)
#   schemes   torchao's and bitsandbytes' schemes beside bf16 and fp16, most important rows first
#             (benchmarks/decode/schemes.sh; SCHEME_STEPS="a b c d" picks its steps, default all)
#   dataset   MODELS="tinyllama qwen2-1.5b": fp16 nf4 int8 int8_pure, eager and graph, batch 1
#   batches   MODELS="qwen2-1.5b": fp16 int8_pure at batch sizes 4 and 8, eager and graph
#   concurrency  eager alone vs beside a busy rank, pinned and not (benchmarks/scaling/concurrency.sh)
#   scaling   the small models' graph rows (batch 1; 4 and 8 for qwen2-1.5b) on 1 GPU, then the
#             same sweep on 2 GPUs with torchrun; wall times, and a check that both measured alike
#             (SCALING_SWEEP=one: one command over their fp16 nf4 int8_pure at batch 1 and 4;
#             SCALING_MODELS and SCALING_BATCHES widen it, e.g. SCALING_MODELS="tinyllama
#             qwen2-1.5b qwen2.5-3b phi3-mini": a longer sweep to share its start-up)
set -uo pipefail
if [ "${1:-}" = --out ]; then OUT=$2; shift 2; fi
[ $# -gt 0 ] || { echo "usage: bash benchmarks/gpu.sh [--out DIR] PART [PART ...] (parts: see its header)" >&2; exit 2; }
OUT=${OUT:-gpu-out}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
export OUT PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo" || exit 1
DATASET=${DATASET:-$OUT/dataset}
WEIGHTS=${WEIGHTS:-$OUT/weights}
export WEIGHTS

# target FOLDER WHEEL_FOLDER: installs the folder's wheels into FOLDER once.
install_wheels() {
  [ -f "$1/.installed" ] && return 0
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$1" "$2"/*.whl \
    && touch "$1/.installed"
}
build() {
  python3 -m pip install -q --no-build-isolation --no-deps . > "$OUT/build.log" 2>&1 \
    || { tail -30 "$OUT/build.log"; exit 1; }
}

# The protocol of every benchmark row (the seed's 256 x 10 shortened to fit the GPU time).
PROTO=(--new-tokens 64 --warmup 2 --warmup-tokens 32 --iterations 5 --idle-seconds 5
       --weights-dir "$WEIGHTS" --out "$DATASET" ${DEVICE:+--device "$DEVICE"})

bench() { python3 -m ecomeasure.bench "$@"; }

checks() {
  mkdir -p "$OUT/checks"
  nvidia-smi --query-gpu=index,name,driver_version,power.limit,clocks.max.memory --format=csv \
    | tee "$OUT/checks/nvidia-smi.txt"
  python3 -m ecomeasure.info | tee "$OUT/checks/info.txt"
  OUT="$OUT/checks" timeout 120 python3 -m benchmarks.meter.nvml_probe | tee "$OUT/checks/nvml_probe.txt"
}
meter() {
  mkdir -p "$OUT/meter"
  nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu --format=csv | tee "$OUT/meter/nvidia-smi.txt"
  python3 -m benchmarks.meter.stream_marks --json "$OUT/meter/stream_marks.json" | tee "$OUT/meter/stream_marks.txt"
  python3 -m benchmarks.meter.sampler_overhead --seconds "${METER_SECONDS:-30}" --json "$OUT/meter/sampler_overhead.json" \
    | tee "$OUT/meter/sampler_overhead.txt"
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
  mkdir -p "$OUT/speed"
  python3 -m benchmarks.decode.decode_speed --model mistral --variants graph compiled --weights-dir "$WEIGHTS" \
    ${DEVICE:+--device "$DEVICE"} --out "$OUT/speed" | tee "$OUT/speed/speed.log"
}
compiled() {
  bench --model mistral --quant fp16 --batch-size 1 8 --regime compiled "${PROTO[@]}"
}
overhead() {
  python3 -m benchmarks.meter.meter_overhead --model mistral --pairs 12 --weights-dir "$WEIGHTS" \
    --out "$OUT/overhead"
}
validate() {
  python3 -m ecomeasure.validate --out "$OUT/validate"
}
peers() {
  local path=${PYTHONPATH:-}
  if [ -n "${PEERS_WHEELS:-}" ]; then
    install_wheels "$OUT/site-peers" "$PEERS_WHEELS" || return 1
    path="$OUT/site-peers${path:+:$path}"
  fi
  PYTHONPATH=$path python3 -m benchmarks.peers.peers --out "$OUT/peers"
}
windows() {
  python3 -m benchmarks.meter.window_cost --out "$OUT/window-cost" | tee "$OUT/window-cost.log"
  python3 -m benchmarks.meter.monitor_check --out "$OUT/monitor-check" --seconds 40 | tee "$OUT/monitor-check.log"
  python3 -m benchmarks.meter.attribution --out "$OUT/attribution" | tee "$OUT/attribution.log"
}
schemes() {
  # Its rows go into $DATASET with the same protocol; its weights into $WEIGHTS.
  DATASET=$DATASET WEIGHTS=$WEIGHTS STEPS=${SCHEME_STEPS:-} KEEP_WEIGHTS=1 \
    bash benchmarks/decode/schemes.sh --out "$OUT/schemes"
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
  OUT="$OUT/concurrency" REGIME=eager MODEL=${MODEL:-tinyllama} bash benchmarks/scaling/concurrency.sh
}
scaling() {
  mkdir -p "$OUT/scaling"
  # Graph rows: the GPU-bound regime, whose figures do not depend on a neighbour's host load.
  # shellcheck disable=SC2206
  local models=(--model ${SCALING_MODELS:-tinyllama qwen2-1.5b qwen2.5-3b}) quants=(--quant fp16 nf4 int8 int8_pure)
  local proto=("${PROTO[@]:0:10}" --weights-dir "$WEIGHTS" --regime graph)
  # The weights are made first, outside the timed runs.
  CUDA_VISIBLE_DEVICES=0 bench "${models[@]}" --new-tokens 1 --warmup 0 --iterations 1 --idle-seconds 0 \
    --regime eager --weights-dir "$WEIGHTS" --out "$OUT/scaling/prepare" > /dev/null 2>&1
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
  # Where each process's time went (python -m ecomeasure.bench.timeline), from its run file's marks.
  { python3 -m ecomeasure.bench.timeline --launched-at "$mono1" "$OUT"/scaling/one-gpu/run-*.json
    python3 -m ecomeasure.bench.timeline --launched-at "$mono2" "$OUT"/scaling/two-gpus/run-*.json
  } | tee -a "$OUT/scaling/scaling.txt"
  rm -rf "$OUT/scaling/prepare"
}

parts=" build checks meter windows regimes regraph compiled speed overhead validate peers schemes dataset batches concurrency scaling "
for part in "$@"; do
  [[ $parts == *" $part "* ]] || { echo "gpu.sh: unknown part '$part' (parts:$parts)" >&2; exit 2; }
done
if [ -n "${WHEELS:-}" ]; then
  install_wheels "$OUT/site" "$WHEELS" || exit 1
  export PYTHONPATH="$OUT/site${PYTHONPATH:+:$PYTHONPATH}"
fi
[[ " $* " == *" build "* ]] || python3 -c 'import _ecomeasure' 2> /dev/null || build
for part in "$@"; do
  echo "=== $part ($(date -u +%H:%M:%S))"
  "$part"
done
