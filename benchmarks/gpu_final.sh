#!/usr/bin/env bash
# Every GPU figure in README and docs, in one call. Builds ecomeasure, then on one GPU the
# meter checks (stream marks, sampler cost) and the validation, and on a second GPU, when
# there is one, the benchmark at the same time (otherwise after them).
#   bash benchmarks/gpu_final.sh            # needs the bitsandbytes wheel in .whl/
#   bash benchmarks/gpu_final.sh marks bench   # only these parts, one after another
# Parts: marks (stream marks, meter slowdown), sampler (60 s idle + 60 s load), validate, bench.
# Output: $OUT/*.log, *.json, results.tgz (benchmark) and validation.tgz.
set -uo pipefail
OUT=${OUT:-/tmp/ecomeasure-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
repo=$(cd "$(dirname "$0")/.." && pwd)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$repo"/.whl/*.whl && export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-build-isolation --no-deps "$repo" > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
cd /tmp   # import the installed package, not the source tree
nvidia-smi --query-gpu=index,name,driver_version,power.limit,temperature.gpu --format=csv | tee "$OUT/nvidia-smi.txt"
gpus=$(nvidia-smi -L | wc -l)

bench() {
  local common=(--model mistral --new-tokens 64 --warmup 1 --warmup-tokens 64 --iterations 5
                --idle-seconds 5 --out "$OUT/results" --weights-dir /tmp/weights)
  python3 -m ecomeasure.bench "${common[@]}" --quant fp16 nf4 int8 int8_pure --batch-size 1
  python3 -m ecomeasure.bench "${common[@]}" --quant fp16 int8_pure --batch-size 8
  tar -czf "$OUT/results.tgz" -C "$OUT" results && rm -rf "$OUT/results"
}
marks() {
  python3 "$repo/benchmarks/stream_marks.py" --json "$OUT/stream_marks.json"
  python3 "$repo/benchmarks/sampler_overhead.py" --seconds 0 --json "$OUT/slowdown.json"
}
sampler() {
  python3 "$repo/benchmarks/sampler_overhead.py" --seconds 60 --json "$OUT/sampler_overhead.json"
}
validate() {
  python3 -m ecomeasure.validate --out "$OUT/validation"
  tar -czf "$OUT/validation.tgz" -C "$OUT" validation && rm -rf "$OUT/validation"
}
checks() {
  python3 -m ecomeasure.info
  marks
  sampler
  validate
}
if [ $# -gt 0 ]; then
  python3 -m ecomeasure.info
  for part in "$@"; do "$part" 2>&1 | tee -a "$OUT/$part.log"; done
elif [ "$gpus" -gt 1 ]; then
  (export CUDA_VISIBLE_DEVICES=1; bench) > "$OUT/bench.log" 2>&1 &
  (export CUDA_VISIBLE_DEVICES=0; checks) 2>&1 | tee "$OUT/checks.log"
  wait
else
  checks 2>&1 | tee "$OUT/checks.log"
  bench > "$OUT/bench.log" 2>&1
fi
tail -25 "$OUT/bench.log"
ls -la "$OUT"
