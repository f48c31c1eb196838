#!/usr/bin/env bash
# ALS benchmark: synthetic ratings at 100k, 1M and 4M (users = n/20, items = n/100; 4M is
# 200k users x 40k items), rank 10, 10 iterations, reg_param 0.1, local[2], read from a CSV
# file. Prints fit time, whole-job time, RMSE and peak memory. With BENCH_SPARK=1 (and pyspark
# importable by $PYTHON) it runs ../shared/peers/spark_als.py on the same file right after us and
# prints the ratios, since the machine is noisy and only side-by-side timings compare.
#   scripts/bench.sh            # all sizes
#   SIZES="4000000" BENCH_SPARK=1 PYTHON=~/.cache/peers-venv/bin/python scripts/bench.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$here/target}"
(cd "$here" && cargo build --release --quiet --bins)
bin="$target/release/submit"
gen="$target/release/gen-ratings"
work="${BENCH_DIR:-$(mktemp -d)}"
mkdir -p "$work"
python="${PYTHON:-python3}"
peers="$here/../shared/peers"
printf '%-9s %-8s %-8s %-9s %-9s %-8s %-10s %s\n' ratings users items fit_s job_s rmse peak_mib spark
for n in ${SIZES:-100000 1000000 4000000}; do
  users=$((n / 20)); items=$((n / 100))
  csv="$work/ratings-$n.csv"
  [ -f "$csv" ] || "$gen" "$n" "$users" "$items" "$csv" >/dev/null
  cat >"$work/bench-$n.toml" <<TOML
[job]
name = "bench-$n"
master = "local[2]"
driver_memory = "8G"
[input]
path = "$csv"
[model]
rank = 10
max_iter = 10
reg_param = 0.1
cold_start_strategy = "drop"
[output]
dir = "$work/models"
TOML
  start=$(date +%s.%N)
  summary=$("$bin" --quiet --json "$work/bench-$n.toml")
  end=$(date +%s.%N)
  spark="-"
  if [ "${BENCH_SPARK:-0}" = 1 ] && "$python" -c 'import pyspark' 2>/dev/null; then
    spark=$("$python" "$peers/spark_als.py" "$csv" 2>/dev/null | grep '^spark_als' || echo "spark failed")
  fi
  python3 - "$summary" "$start" "$end" "$n" "$users" "$items" "$spark" <<'PY'
import json, re, sys
summary, start, end, n, users, items, spark = sys.argv[1:]
metrics = json.loads(summary)["metrics"]
fit = metrics["timings_s"]["fit"]
job = float(end) - float(start)
line = f"{n:<9} {users:<8} {items:<8} {fit:<9.3f} {job:<9.3f} {metrics['rmse']:<8.4f} {metrics['peak_rss_bytes'] / 2**20:<10.1f}"
if spark.startswith("spark_als"):
    values = dict(re.findall(r"(\w+)=([0-9.]+)s?", spark))
    spark_fit = float(values["fit"])
    spark_job = sum(float(values[key]) for key in ("startup", "ingest", "fit", "eval"))
    line += f" fit {spark_fit:.2f}s ({spark_fit / fit:.0f}x ours), job {spark_job:.1f}s ({spark_job / job:.0f}x), rmse {values['rmse']}"
else:
    line += f" {spark}"
print(line)
PY
done
