#!/usr/bin/env bash
# Serving benchmark: trains a GBT (100 trees, depth 5, 28 features) and an ALS model (rank 10,
# 40,000 items) on synthetic data, starts `submit serve` on them, and runs `submit loadtest`
# open-loop at fixed rate steps for single-row predict, 100-row batches, recommend and fold-in.
# Each scenario writes loadtest.json and loadtest.svg under OUT/<scenario>/.
#   scripts/serve-bench.sh [OUT]      (default bench-serve/)
# A benchmark, not a test: the machine is shared, so read the figures side by side.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${SUBMIT_BIN:-${CARGO_TARGET_DIR:-$here/target}/release/submit}"
out="$(mkdir -p "${1:-bench-serve}" && cd "${1:-bench-serve}" && pwd)"
work="$(mktemp -d)"
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
cat >"$work/gbt.toml" <<'TOML'
[job]
name = "gbt"
[input]
synthetic = { kind = "classification", rows = 200000, features = 28 }
[model]
algorithm = "gbt"
max_iter = 100
max_depth = 5
TOML
cat >"$work/als.toml" <<'TOML'
[job]
name = "als"
driver_memory = "4G"
[input]
synthetic = { kind = "ratings", users = 200000, items = 40000, ratings = 4000000, rank = 8 }
[model]
rank = 10
max_iter = 5
TOML
(cd "$work" && "$bin" -q gbt.toml && "$bin" -q als.toml)
port="${SERVE_PORT:-18090}"
"$bin" serve --models "$work/models" --addr "127.0.0.1:$port" --master "local[2]" 2>"$out/serve.log" &
server=$!
sleep 3
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
columns = [f"f{j}" for j in range(28)]
row = [[0.01 * j for j in range(28)]]
batch = [[0.001 * (i + j) for j in range(28)] for i in range(100)]
json.dump({"dataframe_split": {"columns": columns, "data": row}}, open(f"{work}/row.json", "w"))
json.dump({"dataframe_split": {"columns": columns, "data": batch}}, open(f"{work}/batch.json", "w"))
json.dump({"user": 17, "k": 10}, open(f"{work}/recommend.json", "w"))
json.dump({"user": "new", "k": 10, "ratings": [[i * 37, 4.0] for i in range(20)]}, open(f"{work}/fold-in.json", "w"))
PY
run() {
  echo "== $1"
  "$bin" loadtest --addr "127.0.0.1:$port" --path "$2" --body "$work/$3" --rates "$4" \
    --step-s "${STEP_S:-5}" --connections 16 --out "$out/$1"
}
run predict-row /v1/models/gbt/predict row.json 1000,2000,5000,8000
run predict-batch /v1/models/gbt/predict batch.json 500,1000,2000,3000
run recommend /v1/models/als/recommend recommend.json 1000,2000,4000
run fold-in /v1/models/als/recommend fold-in.json 500,1000,2000
