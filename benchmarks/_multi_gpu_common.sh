# Shared by concurrency.sh and scaling.sh: build and install ecomeasure, then helpers.
set -uo pipefail
OUT=${OUT:-/tmp/ecomeasure-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1  # torchrun sets 1 per rank: the same everywhere
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python3 -m pip install -q --no-build-isolation --no-deps "$repo" > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
cd /tmp   # import the installed package, not the source tree
nvidia-smi --query-gpu=index,name,driver_version,power.limit --format=csv | tee "$OUT/nvidia-smi.txt"
[ "$(nvidia-smi -L | wc -l)" -ge 2 ] || { echo "needs 2 GPUs"; exit 1; }
nproc | tee "$OUT/nproc.txt"
# --regime once the bench has it (REGIME=eager or graph); empty: the bench's only regime today.
regime_args=(${REGIME:+--regime "$REGIME"})

# Seconds since the epoch, to the millisecond.
now() { date +%s.%3N; }

# "<tok/s mean> <CV %> <J/1k>" of each row of results.csv under $1 matching quant $2.
throughput() {
  python3 - "$1" "$2" <<'PY'
import csv, sys
for r in csv.DictReader(open(f"{sys.argv[1]}/results.csv")):
    if r["quant"] == sys.argv[2] and r["status"] == "ok":
        print(r["model"], r["quant"], "bs" + r["batch_size"], r["throughput_tok_s_mean"], r["throughput_cv_pct"], r["energy_j_per_1k_mean"])
PY
}
