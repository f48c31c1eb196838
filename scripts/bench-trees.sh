#!/usr/bin/env bash
# Tree benchmark: a 1M x 28 binary table (and a 5-class one for multiclass boosting) (../shared/peers/gen_tabular.py when $PYTHON has numpy
# and pandas, else our gen-table), local[2], 80/20 split. Runs submit's GBT (100 trees, depth 5)
# and random forest (100 trees, depth 10), each followed at once by its peers from
# scripts/trees_peers.py (LightGBM / XGBoost, scikit-learn / LightGBM rf) when $PYTHON imports
# them on the same train/test rows (SAME_SPLIT=1), and prints fit times, test AUC and the ratios: the machine is noisy, so only side-by-side
# figures compare. With BENCH_SPARK=1 it also runs ../shared/peers/spark_trees.py.
#   PYTHON=~/.cache/peers-venv/bin/python scripts/bench-trees.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$here/target}"
(cd "$here" && cargo build --release --quiet --bins)
bin="$target/release/submit"
work="${BENCH_DIR:-$(mktemp -d)}"
mkdir -p "$work"
python="${PYTHON:-python3}"
peers="$here/../shared/peers"
rows="${ROWS:-1000000}"
csv="$work/table-$rows.csv"
if [ ! -f "$csv" ]; then
  if [ -f "$peers/gen_tabular.py" ] && "$python" -c 'import numpy, pandas' 2>/dev/null; then
    "$python" "$peers/gen_tabular.py" "$rows" 28 "$csv" >/dev/null
  else
    "$target/release/gen-table" "$rows" 28 "$csv" >/dev/null
  fi
fi
have_peers=0
"$python" -c 'import sklearn, pandas' 2>/dev/null && have_peers=1
run() {  # run NAME CSV EXTRA PEERS...
  local name="$1" csv="$2" extra="$3"; shift 3
  local algorithm="${name%-*}"
  cat >"$work/$name.toml" <<TOML
[job]
name = "bench-$name"
master = "local[2]"
driver_memory = "8G"
[input]
path = "$csv"
[model]
algorithm = "$algorithm"
$extra
[output]
dir = "$work/models"
TOML
  local summary; summary=$("$bin" --quiet --json "$work/$name.toml")
  local ours; ours=$(python3 -c 'import json,sys; m=json.loads(sys.argv[1])["metrics"]; print(m["timings_s"]["fit"], m["auc_roc"] if m.get("auc_roc") is not None else "log_loss=%s" % m["log_loss"], m["peak_rss_bytes"])' "$summary")
  local peer_lines=""
  if [ "$have_peers" = 1 ]; then
    peer_lines=$(SAME_SPLIT=1 "$python" "$here/scripts/trees_peers.py" "$csv" label "$@" 2>/dev/null || true)
  fi
  python3 - "$name" "$ours" "$peer_lines" <<'PY'
import re, sys
name, ours, peers = sys.argv[1], sys.argv[2].split(), sys.argv[3]
fit, rss = float(ours[0]), int(ours[2])
# Binary tables compare test AUC (higher is better), multiclass ones test log-loss (lower).
kind, value = ("log_loss", float(ours[1].split("=")[1])) if ours[1].startswith("log_loss=") else ("auc", float(ours[1]))
print(f"submit {name:<20} fit {fit:7.2f} s  {kind} {value:.4f}  peak RSS {rss / 2**20:.0f} MiB")
for line in peers.splitlines():
    match = re.match(r"(\S+) fit=([0-9.]+) (auc|log_loss)=([0-9.]+)", line)
    if match:
        peer, peer_fit, peer_value = match.group(1), float(match.group(2)), float(match.group(4))
        print(f"  {peer:<20} fit {peer_fit:7.2f} s  {kind} {peer_value:.4f}  submit/peer time {fit / peer_fit:5.2f}x  {kind} diff {value - peer_value:+.4f}")
PY
}
predict_job() {  # predict_job TOML MODEL_NAME ROWS OUTPUT EXTRA
  cat >"$1" <<TOML
[job]
kind = "predict"
master = "local[2]"
[model]
from = "$work/models/$2/latest"
[input]
path = "$3"
$5
[output]
path = "$4"
TOML
}
run gbt "$csv" $'max_iter = 100\nmax_depth = 5' lightgbm xgboost
# TreeSHAP: contributions for 100k rows from the GBT model just trained (100 trees, depth 5),
# against LightGBM's pred_contrib on its export of the same model, 2 threads each.
shap_rows="$work/shap-rows.csv"
head -n 100001 "$csv" >"$shap_rows"
predict_job "$work/shap.toml" bench-gbt "$shap_rows" "$work/shap-out.csv" $'[predict]\ncontributions = true'
shap_ours=$("$bin" --quiet --json "$work/shap.toml" | python3 -c 'import json,sys; print(json.load(sys.stdin)["metrics"]["timings_s"]["contributions"])')
shap_peer=""
if "$python" -c 'import lightgbm, pandas' 2>/dev/null; then
  shap_peer=$("$python" - "$work/models/bench-gbt/latest/model.lgb.txt" "$shap_rows" <<'PY'
import sys, time, lightgbm, pandas as pd
booster = lightgbm.Booster(model_file=sys.argv[1])
matrix = pd.read_csv(sys.argv[2])[booster.feature_name()].to_numpy(dtype="float64")
start = time.time()
booster.predict(matrix, pred_contrib=True, num_threads=2)
print(f"{time.time() - start:.3f}")
PY
)
fi
python3 - "$shap_ours" "$shap_peer" <<'PY'
import sys
ours, peer = float(sys.argv[1]), sys.argv[2]
print(f"submit TreeSHAP 100k rows   {ours:7.2f} s")
if peer:
    print(f"  lightgbm pred_contrib    {float(peer):7.2f} s  submit/peer time {ours / float(peer):5.2f}x")
else:
    print("  lightgbm pred_contrib    skipped (no lightgbm)")
PY
run random_forest "$csv" $'num_trees = 100\nmax_depth = 10' sklearn_rf lightgbm_rf
# Forest scoring: a predict job on 200k rows of the table with the forest just trained; the
# `scoring` phase of --verbose (no peer: LightGBM's rf export is timed by check_lightgbm.py).
score_rows="$work/score-rows.csv"
head -n 200001 "$csv" >"$score_rows"
predict_job "$work/score.toml" bench-random_forest "$score_rows" "$work/score-out.parquet" ""
scoring=$("$bin" --verbose "$work/score.toml" 2>&1 | sed -n 's/.*scoring done in \([0-9.]*\)s.*/\1/p')
echo "submit forest scoring 200k rows ${scoring:-?} s (100 trees x depth 10)"
# Multiclass boosting (5 classes, our gen-table) against LightGBM's multiclass at its 255 bins.
multiclass_csv="$work/table-$rows-5-classes.csv"
[ -f "$multiclass_csv" ] || "$target/release/gen-table" "$rows" 28 "$multiclass_csv" 11 5 >/dev/null
run gbt-multiclass "$multiclass_csv" $'max_iter = 100\nmax_depth = 5\nmax_bins = 255' lightgbm
if [ "${BENCH_SPARK:-0}" = 1 ] && "$python" -c 'import pyspark' 2>/dev/null; then
  for kind in gbt rf; do
    "$python" "$peers/spark_trees.py" "$csv" label "$kind" 2>/dev/null | grep '^spark_' || echo "spark $kind failed"
  done
fi
