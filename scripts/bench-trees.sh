#!/usr/bin/env bash
# Tree benchmark: a 1M x 28 binary table (../shared/peers/gen_tabular.py when $PYTHON has numpy
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
run() {  # run ALGORITHM EXTRA PEERS...
  local algorithm="$1" extra="$2"; shift 2
  cat >"$work/$algorithm.toml" <<TOML
[job]
name = "bench-$algorithm"
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
  local summary; summary=$("$bin" --quiet --json "$work/$algorithm.toml")
  local ours; ours=$(python3 -c 'import json,sys; m=json.loads(sys.argv[1])["metrics"]; print(m["timings_s"]["fit"], m["auc_roc"], m["peak_rss_bytes"])' "$summary")
  local peer_lines=""
  if [ "$have_peers" = 1 ]; then
    peer_lines=$(SAME_SPLIT=1 "$python" "$here/scripts/trees_peers.py" "$csv" label "$@" 2>/dev/null || true)
  fi
  python3 - "$algorithm" "$ours" "$peer_lines" <<'PY'
import re, sys
algorithm, ours, peers = sys.argv[1], sys.argv[2].split(), sys.argv[3]
fit, auc, rss = float(ours[0]), float(ours[1]), int(ours[2])
print(f"submit {algorithm:<14} fit {fit:7.2f} s  auc {auc:.4f}  peak RSS {rss / 2**20:.0f} MiB")
for line in peers.splitlines():
    match = re.match(r"(\S+) fit=([0-9.]+) auc=([0-9.]+)", line)
    if match:
        name, peer_fit, peer_auc = match.group(1), float(match.group(2)), float(match.group(3))
        print(f"  {name:<20} fit {peer_fit:7.2f} s  auc {peer_auc:.4f}  submit/peer time {fit / peer_fit:5.2f}x  auc diff {auc - peer_auc:+.4f}")
PY
}
run gbt $'max_iter = 100\nmax_depth = 5' lightgbm xgboost
run random_forest $'num_trees = 100\nmax_depth = 10' sklearn_rf lightgbm_rf
if [ "${BENCH_SPARK:-0}" = 1 ] && "$python" -c 'import pyspark' 2>/dev/null; then
  for kind in gbt rf; do
    "$python" "$peers/spark_trees.py" "$csv" label "$kind" 2>/dev/null | grep '^spark_' || echo "spark $kind failed"
  done
fi
