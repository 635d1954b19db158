#!/usr/bin/env bash
# Builds ecomeasure on the GPU machine and checks the meter there: capabilities, sampler
# cost, stream marks. Full output and JSON under $OUT; a short summary is printed last.
#   bash benchmarks/gpu_check.sh [seconds-per-phase]
set -euo pipefail
OUT=${OUT:-/tmp/ecomeasure-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
repo=$(cd "$(dirname "$0")/.." && pwd)
python3 -m pip install -q --no-build-isolation --no-deps "$repo" > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
cd /tmp   # import the installed package, not the source tree
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu --format=csv | tee "$OUT/nvidia-smi.txt"
python3 -m ecomeasure.info | tee "$OUT/info.txt"
python3 "$repo/benchmarks/stream_marks.py" --json "$OUT/stream_marks.json" | tee "$OUT/stream_marks.txt"
python3 "$repo/benchmarks/sampler_overhead.py" --seconds "${1:-60}" --json "$OUT/sampler_overhead.json" | tee "$OUT/sampler_overhead.txt"
