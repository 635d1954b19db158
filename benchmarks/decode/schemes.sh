#!/usr/bin/env bash
# Which quantization makes a token cheapest on this GPU: bitsandbytes' and torchao's schemes
# beside fp16 and bf16, on one card, most important rows first so that a run cut short by a
# time limit still holds them.
#   bash benchmarks/decode/schemes.sh [--out DIR]
#   CUDA_VISIBLE_DEVICES=1 bash benchmarks/decode/schemes.sh --out DIR   # another GPU
# Steps, in order (STEPS="a b" runs only those; a rerun skips the rows already in DIR):
#   a  mistral, every scheme, batch 1, graph regime
#   b  qwen2-1.5b, the same
#   c  mistral and qwen2-1.5b, every scheme, batch 4 and 8, graph regime
#   d  mistral and qwen2-1.5b, bf16 and torchao's schemes, batch 1, eager regime
#   e  the other six models, every scheme, batch 1, graph regime
#   f  (only when named in STEPS) mistral, bf16 fp16 int4wo int8wo fp8dq, batch 1, compiled
#      regime (each configuration compiles for a minute or two first)
# Schemes: bf16 int4wo fp16 nf4 int8_pure int8wo fp8wo fp8dq int8dq (SCHEMES= overrides). A
# scheme a configuration cannot run (int8dq at batch <= 16 when captured or compiled, fp8dq
# below compute capability 8.9) gets an `unavailable` row saying why, at no GPU time.
# Everything goes under DIR (--out, else $OUT, else ./gpu-out/schemes): the rows in DIR/dataset,
# random weights in DIR/weights (WEIGHTS= elsewhere), the log in DIR/schemes.log. A model's
# random checkpoint is deleted after the last step that uses it (KEEP_WEIGHTS=1 keeps them):
# the eight checkpoints together would not fit a 64 GiB disk.
# The protocol, shortened as benchmarks/gpu.sh shortens it, by environment variables:
#   NEW_TOKENS (64), ITERATIONS (5), WARMUP (2), WARMUP_TOKENS (32), IDLE_SECONDS (5), DEVICE.
# Install as benchmarks/gpu.sh says (torchao==0.18.0 and bitsandbytes: pip install ".[quant]",
# or WHEELS=FOLDER of their wheels, installed into DIR/site); the package is built if
# `import _ecomeasure` fails.
set -uo pipefail
if [ "${1:-}" = --out ]; then OUT=$2; shift 2; fi
[ $# -eq 0 ] || { echo "usage: bash benchmarks/decode/schemes.sh [--out DIR] (options by environment: see its header)" >&2; exit 2; }
OUT=${OUT:-gpu-out/schemes}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo" || exit 1
DATASET=${DATASET:-$OUT/dataset}
WEIGHTS=${WEIGHTS:-$OUT/weights}
STEPS=${STEPS:-a b c d e}
# shellcheck disable=SC2206
SCHEMES=(${SCHEMES:-bf16 int4wo fp16 nf4 int8_pure int8wo fp8wo fp8dq int8dq})
NEW_SCHEMES=(bf16 int4wo int8wo fp8wo fp8dq int8dq)
OTHERS=(tinyllama qwen2.5-3b qwen2-7b yi-1.5-6b phi3-mini qwen2.5-7b)
LOG=$OUT/schemes.log

for step in $STEPS; do
  [[ " a b c d e f " == *" $step "* ]] || { echo "schemes.sh: unknown step '$step' (steps: a b c d e f)" >&2; exit 2; }
done
if [ -n "${WHEELS:-}" ]; then
  if [ ! -f "$OUT/site/.installed" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$OUT/site" "$WHEELS"/*.whl \
      && touch "$OUT/site/.installed" || exit 1
  fi
  export PYTHONPATH="$OUT/site${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! python3 -c 'import _ecomeasure' 2> /dev/null; then
  python3 -m pip install -q --no-build-isolation --no-deps . > "$OUT/build.log" 2>&1 \
    || { tail -30 "$OUT/build.log"; exit 1; }
fi
python3 -c 'import torchao, bitsandbytes' 2> /dev/null \
  || echo "schemes.sh: torchao or bitsandbytes is missing: the bench will refuse their schemes" | tee -a "$LOG" >&2

PROTO=(--new-tokens "${NEW_TOKENS:-64}" --warmup "${WARMUP:-2}" --warmup-tokens "${WARMUP_TOKENS:-32}"
       --iterations "${ITERATIONS:-5}" --idle-seconds "${IDLE_SECONDS:-5}"
       --weights-dir "$WEIGHTS" --out "$DATASET" ${DEVICE:+--device "$DEVICE"})

bench() {
  echo "=== $(date -u +%H:%M:%S) python3 -m ecomeasure.bench $*" | tee -a "$LOG"
  python3 -m ecomeasure.bench "$@" "${PROTO[@]}" 2>&1 | tee -a "$LOG"
}

# The models each step uses, to delete a checkpoint once no later step needs it.
models_of() {
  case $1 in
    a|f) echo mistral ;;
    b) echo qwen2-1.5b ;;
    c|d) echo mistral qwen2-1.5b ;;
    e) echo "${OTHERS[@]}" ;;
  esac
}
needed_later() {  # needed_later MODEL STEP: whether a step after STEP in $STEPS uses MODEL
  local after=0 s
  for s in $STEPS; do
    if [ $after = 1 ] && [[ " $(models_of "$s") " == *" $1 "* ]]; then return 0; fi
    [ "$s" = "$2" ] && after=1
  done
  return 1
}
done_with() {  # done_with MODEL STEP: deletes MODEL's random checkpoint unless a later step needs it
  [ "${KEEP_WEIGHTS:-0}" = 1 ] && return 0
  needed_later "$1" "$2" && return 0
  if [ -d "$WEIGHTS/$1" ]; then
    rm -rf "${WEIGHTS:?}/$1" && echo "=== deleted $WEIGHTS/$1 (no later step uses it)" | tee -a "$LOG"
  fi
}

echo "=== schemes.sh $(date -u +%Y-%m-%dT%H:%M:%SZ): steps $STEPS into $DATASET" | tee -a "$LOG"
nvidia-smi --query-gpu=index,name,driver_version,power.limit,clocks.max.memory --format=csv 2>&1 | tee -a "$LOG"
for step in $STEPS; do
  case $step in
    a) bench --model mistral --quant "${SCHEMES[@]}" --batch-size 1 --regime graph ;;
    b) bench --model qwen2-1.5b --quant "${SCHEMES[@]}" --batch-size 1 --regime graph ;;
    c) for model in mistral qwen2-1.5b; do
         bench --model "$model" --quant "${SCHEMES[@]}" --batch-size 4 8 --regime graph
       done ;;
    d) for model in mistral qwen2-1.5b; do
         bench --model "$model" --quant "${NEW_SCHEMES[@]}" --batch-size 1 --regime eager
       done ;;
    e) for model in "${OTHERS[@]}"; do
         bench --model "$model" --quant "${SCHEMES[@]}" --batch-size 1 --regime graph
         done_with "$model" e
       done ;;
    f) bench --model mistral --quant bf16 fp16 int4wo int8wo fp8dq --batch-size 1 --regime compiled ;;
  esac
  for model in $(models_of "$step"); do done_with "$model" "$step"; done
done
echo "=== $(date -u +%H:%M:%S) done: rows in $DATASET/results.csv" | tee -a "$LOG"
