#!/usr/bin/env bash
# Every GPU figure in README and docs, part by part, on the GPU(s) this process may see.
#   bash benchmarks/gpu_final.sh PART [PART ...]        # parts run one after another
#   CUDA_VISIBLE_DEVICES=1 bash benchmarks/gpu_final.sh validate &   # parts on another GPU at once
# Needs the bitsandbytes wheel in .whl/ (and zeus/codecarbon wheels in .whl-peers/ for `peers`).
# Each part writes under $OUT/<part>/ and packs it into $OUT/<part>.tgz when done (so a run cut
# short still returns what finished); the benchmark's results go to $OUT/dataset/, shared by
# every process (the bench locks its files), packed by `pack dataset`.
# Parts:
#   checks    ecomeasure.info and the NVML call costs (benchmarks/nvml_probe.py)
#   regimes   Mistral-7B, fp16 nf4 int8 int8_pure, eager and graph, batch 1 (and 8 for fp16, int8_pure)
#   compiled  Mistral-7B fp16, the compiled regime, batch 1 and 8
#   overhead  the meter's cost on graph-regime throughput (benchmarks/meter_overhead.py)
#   validate  python -m ecomeasure.validate (its saved run)
#   peers     benchmarks/peers.py (Zeus, CodeCarbon beside ecomeasure)
#   dataset   MODELS="tinyllama qwen2-1.5b": fp16 nf4 int8 int8_pure, eager and graph, batch 1
#   batches   MODELS="qwen2-1.5b": fp16 int8_pure at batch sizes 4 and 8, eager and graph
#   concurrency  eager alone vs beside a busy rank, pinned and not (benchmarks/concurrency.sh)
#   scaling   one small sweep on 1 GPU, then on 2 GPUs with torchrun; wall times
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
PROTO=(--new-tokens 64 --warmup 2 --warmup-tokens 32 --iterations 5 --idle-seconds 5
       --weights-dir /tmp/weights --out "$OUT/dataset")

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
  local sweep=(--model tinyllama qwen2-1.5b --quant fp16 bf16 --batch-size 1 4 --regime graph --new-tokens 64
               --warmup 1 --warmup-tokens 32 --iterations 3 --idle-seconds 2 --weights-dir /tmp/weights)
  CUDA_VISIBLE_DEVICES=0 bench --model tinyllama qwen2-1.5b --new-tokens 1 --warmup 0 --iterations 1 \
    --idle-seconds 0 --regime eager --weights-dir /tmp/weights --out "$OUT/scaling/prepare" > /dev/null 2>&1
  local t0 t1 t2
  t0=$(date +%s.%3N)
  CUDA_VISIBLE_DEVICES=0 bench "${sweep[@]}" --out "$OUT/scaling/one-gpu" > "$OUT/scaling/one-gpu.log" 2>&1
  t1=$(date +%s.%3N)
  python3 -m torch.distributed.run --standalone --nproc-per-node 2 -m ecomeasure.bench "${sweep[@]}" \
    --out "$OUT/scaling/two-gpus" > "$OUT/scaling/two-gpus.log" 2>&1
  t2=$(date +%s.%3N)
  python3 -c "import sys; t0, t1, t2 = map(float, sys.argv[1:]); one, two = t1 - t0, t2 - t1; \
print(f'1 GPU: {one:.1f} s; 2 GPUs (torchrun): {two:.1f} s; 2-GPU / 1-GPU wall time {two / one:.2f}')" \
    "$t0" "$t1" "$t2" | tee "$OUT/scaling/scaling.txt"
  rm -rf "$OUT/scaling/prepare"
  pack scaling
}
build() { :; }
packall() {  # every folder left under $OUT (the benchmark's rows once all writers are done;
            # a part cut short by a timeout)
  for d in "$OUT"/*/; do [ -d "$d" ] && pack "$(basename "$d")"; done
}

for part in "$@"; do
  echo "=== $part ($(date -u +%H:%M:%S))"
  "$part"
done
