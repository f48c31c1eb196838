#!/usr/bin/env bash
# Serving benchmark: trains a GBT (100 trees, depth 5, 28 features; two versions) and an ALS
# model (rank 10, 40,000 items, 4M ratings) on synthetic data, starts `submit serve` on them,
# and runs `submit loadtest` open-loop at fixed rate steps for single-row predict, 100-row
# batches, recommend and fold-in; then single-row predict while the ALS job retrains through
# the training endpoint, while versions are promoted back and forth, and up a ladder of rates
# beside a Flask + lightgbm app and `mlflow models serve` on the same model (PEER_PYTHON: a
# Python with flask, lightgbm, pandas and, for MLflow, mlflow; a missing peer is skipped).
# Each scenario writes loadtest.json and loadtest.svg under OUT/<scenario>/.
#   scripts/serve-bench.sh [OUT]      (default bench-serve/)
# A benchmark, not a test: the machine is shared, so read the figures side by side.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${SUBMIT_BIN:-${CARGO_TARGET_DIR:-$here/target}/release/submit}"
out="$(mkdir -p "${1:-bench-serve}" && cd "${1:-bench-serve}" && pwd)"
work="$(mktemp -d)"
trap 'kill "${server:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
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
# Two GBT versions (the promotion scenario swaps between them) and one ALS version.
(cd "$work" && "$bin" -q gbt.toml && "$bin" -q --conf job.seed=7 gbt.toml && "$bin" -q als.toml \
  && "$bin" -q models promote models/gbt/v1)
port="${SERVE_PORT:-18090}"
token="bench-token-$(date +%s)-0123456789"
echo "$token" >"$work/token"
"$bin" serve --models "$work/models" --jobs "$work" --token-file "$work/token" \
  --addr "127.0.0.1:$port" --master "local[2]" --train-master "local[1]" 2>"$out/serve.log" &
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
# run NAME ROUTE BODY RATES [PORT [STEP_S]]
run() {
  echo "== $1"
  "$bin" loadtest --addr "127.0.0.1:${5:-$port}" --path "$2" --body "$work/$3" --rates "$4" \
    --step-s "${6:-${STEP_S:-5}}" --connections 16 --out "$out/$1"
}
# ladder NAME PORT ROUTE: single-row predict at rising rates, one loadtest per rate after a
# warm-up, until the server saturates (p99 over 100 ms or under 90% of the offered rate
# achieved: a saturated step would take minutes to drain).
ladder() {
  "$bin" loadtest --addr "127.0.0.1:$2" --path "$3" --body "$work/row.json" --rates 20 \
    --step-s 1 --connections 4 --out "$work/warm-up-$1" >/dev/null
  for rate in ${LADDER:-25 50 100 200 500 1000 2000 5000}; do
    run "$1-$rate" "$3" row.json "$rate" "$2" >/dev/null
    python3 - "$out/$1-$rate/loadtest.json" <<'PY' || break
import json, sys
step = json.load(open(sys.argv[1]))["steps"][0]
p99 = step["p99_ms"] if step["p99_ms"] is not None else float("inf")
p50 = step["p50_ms"] if step["p50_ms"] is not None else float("inf")
print(f"   {step['offered_rps']:>6.0f}/s offered  {step['achieved_rps']:>7.0f}/s achieved  p50 {p50:8.2f} ms  p99 {p99:8.2f} ms  errors {step['errors']}")
saturated = p99 > 100 or step["achieved_rps"] < 0.9 * step["offered_rps"]
sys.exit(1 if saturated else 0)
PY
  done
}
# SCENARIOS: any of rows, training, promotion, peers (default all).
want() { [[ " ${SCENARIOS:-rows training promotion peers} " == *" $1 "* ]]; }
if want rows; then
run predict-row /v1/models/gbt/predict row.json 1000,2000,5000,8000
run predict-batch /v1/models/gbt/predict batch.json 500,1000,2000,3000
run recommend /v1/models/als/recommend recommend.json 1000,2000,4000
run fold-in /v1/models/als/recommend fold-in.json 500,1000,2000
fi

# While a training run of the 4M-rating ALS job (started through the training endpoint) is
# in progress: single-row predict at 1,000/s, against the idle figure above.
if want training; then
# 20 iterations instead of the job's 5, so that the run outlasts the load.
curl -s -X POST -H "Authorization: Bearer $token" -d '{"conf": {"model.max_iter": 20}}' \
  "http://127.0.0.1:$port/v1/jobs/als/runs" >"$out/run.json"
run_id="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$out/run.json")"
run under-training /v1/models/gbt/predict row.json 1000 "$port" "${TRAIN_S:-8}"
curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$port/v1/runs/$run_id" >"$out/run.json"
python3 - "$out/run.json" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
print(f"   training run {run['id']} when the load ended: {run['state']} (phase {run['phase']}, progress {run['progress']}, started {run['started_at']})")
PY
fi

# A new version promoted every 0.3 s while predictions run at 1,000/s: every request must succeed.
if want promotion; then
(
  end=$((SECONDS + ${PROMOTE_S:-6}))
  while [ $SECONDS -lt $end ]; do
    "$bin" -q models promote "$work/models/gbt/v2" && sleep 0.3
    "$bin" -q models promote "$work/models/gbt/v1" && sleep 0.3
  done
) &
promoter=$!
run promotion /v1/models/gbt/predict row.json 1000 "$port" "${PROMOTE_S:-6}"
wait "$promoter" || true
grep -c "now serving" "$out/serve.log" | sed 's/^/   versions swapped in by the server so far: /'
fi

# The course's architecture side by side: Flask + lightgbm on the version's model.lgb.txt, and
# MLflow's scoring server on the same booster, each up the same ladder of rates.
if want peers; then
peer_python="${PEER_PYTHON:-python3}"
echo "== ladder: submit serve"
ladder submit "$port" /v1/models/gbt/predict
if "$peer_python" -c "import flask, lightgbm, pandas" 2>/dev/null; then
  "$peer_python" "$here/scripts/serve_peers.py" flask "$work/models/gbt/v1/model.lgb.txt" $((port + 1)) 2>"$out/flask.log" &
  flask=$!
  sleep 3
  echo "== ladder: Flask + lightgbm"
  ladder flask $((port + 1)) /invocations
  kill "$flask" 2>/dev/null || true
else
  echo "== ladder: Flask + lightgbm skipped ($peer_python lacks flask, lightgbm or pandas; set PEER_PYTHON)"
fi
if "$peer_python" -c "import mlflow, lightgbm" 2>/dev/null; then
  "$peer_python" "$here/scripts/serve_peers.py" mlflow-save "$work/models/gbt/v1/model.lgb.txt" "$work/mlflow-model"
  mlflow_bin="$(dirname "$peer_python")/mlflow"
  PATH="$(dirname "$peer_python"):$PATH" "$mlflow_bin" models serve -m "$work/mlflow-model" --env-manager local -h 127.0.0.1 -p $((port + 2)) 2>"$out/mlflow.log" &
  mlflow=$!
  for _ in $(seq 60); do curl -sf "http://127.0.0.1:$((port + 2))/ping" >/dev/null && break; sleep 1; done
  echo "== ladder: mlflow models serve"
  ladder mlflow $((port + 2)) /invocations
  kill "$mlflow" 2>/dev/null || true
  pkill -f "mlflow-model" 2>/dev/null || true
else
  echo "== ladder: mlflow models serve skipped ($peer_python lacks mlflow; set PEER_PYTHON)"
fi
fi
python3 - "$out" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
print("\nsingle-row GBT predict: highest rate held with p99 <= 10 ms; p99 at 25/s, 50/s and 100/s:")
for name in ["submit", "flask", "mlflow"]:
    held, p99_at = None, {}
    for path in glob.glob(f"{out}/{name}-*/loadtest.json"):
        step = json.load(open(path))["steps"][0]
        p99 = step["p99_ms"] if step["p99_ms"] is not None else float("inf")
        ok = p99 <= 10 and step["errors"] == 0 and step["achieved_rps"] >= 0.95 * step["offered_rps"]
        if ok and (held is None or step["offered_rps"] > held):
            held = step["offered_rps"]
        p99_at[round(step["offered_rps"])] = p99
    if p99_at:
        at = lambda rate: f"{p99_at[rate]:9.2f} ms" if rate in p99_at else "  (not run)"
        print(f"  {name:8} {('%.0f/s' % held) if held else 'none':>8}   {at(25)}   {at(50)}   {at(100)}")
PY
