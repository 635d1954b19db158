#!/usr/bin/env bash
# Wall time of one small sweep on 1 GPU and on 2 GPUs (torchrun), and their ratio.
#   OUT=/tmp/out bash benchmarks/scaling.sh           # REGIME=graph once the bench has it
# Random weights are built first so that neither timed run pays for them.
# Output: $OUT/one-gpu/, $OUT/two-gpus/ (results and run files), *.log, $OUT/scaling.txt.
source "$(dirname "$0")/_multi_gpu_common.sh"
sweep=(--model tinyllama qwen2-1.5b --quant fp16 bf16 --batch-size 1 4 --new-tokens 64 --warmup 1
       --warmup-tokens 32 --iterations 3 --idle-seconds 2 --weights-dir /tmp/weights "${regime_args[@]}")

CUDA_VISIBLE_DEVICES=0 python3 -m ecomeasure.bench --model tinyllama qwen2-1.5b --new-tokens 1 --warmup 0 \
  --iterations 1 --idle-seconds 0 --weights-dir /tmp/weights --out "$OUT/prepare" > "$OUT/prepare.log" 2>&1 \
  || { tail -30 "$OUT/prepare.log"; exit 1; }
t0=$(now)
CUDA_VISIBLE_DEVICES=0 python3 -m ecomeasure.bench "${sweep[@]}" --out "$OUT/one-gpu" > "$OUT/one-gpu.log" 2>&1 \
  || { tail -30 "$OUT/one-gpu.log"; exit 1; }
t1=$(now)
python3 -m torch.distributed.run --standalone --nproc-per-node 2 -m ecomeasure.bench "${sweep[@]}" --out "$OUT/two-gpus" \
  > "$OUT/two-gpus.log" 2>&1 || { tail -30 "$OUT/two-gpus.log"; exit 1; }
t2=$(now)
python3 - "$t0" "$t1" "$t2" <<'PY' | tee "$OUT/scaling.txt"
import sys
t0, t1, t2 = map(float, sys.argv[1:])
one, two = t1 - t0, t2 - t1
print(f"1 GPU: {one:.1f} s; 2 GPUs (torchrun): {two:.1f} s; speed-up {one / two:.2f}x")
PY
