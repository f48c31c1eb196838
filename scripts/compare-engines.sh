#!/usr/bin/env bash
# Runs one train job on both engines, native first and then `--engine spark` (spark-submit from
# SPARK_HOME or PATH), into a scratch output folder, and prints their metrics and times side by
# side with the ratio of wall times. Extra arguments go to both runs (e.g. --master local[2]).
#   scripts/compare-engines.sh jobs/movielens-sample.toml
#   PATH=~/.cache/peers-venv/bin:$PATH scripts/compare-engines.sh jobs/forest-libsvm.toml --master local[2]
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 JOB.toml [submit flags]" >&2; exit 2; }
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$here/target}"
(cd "$here" && cargo build --release --quiet --bins)
bin="$target/release/submit"
job="$1"; shift
work="${COMPARE_DIR:-$(mktemp -d)}"
mkdir -p "$work"
runs=()
for engine in native spark; do
  start=$(date +%s.%N)
  if ! "$bin" --quiet --json --engine "$engine" --conf "output.dir=$work/models" "$@" "$job" >"$work/$engine.json"; then
    echo "the $engine run failed:" >&2
    cat "$work/$engine.json" >&2
    exit 1
  fi
  end=$(date +%s.%N)
  echo "$end - $start" | bc >"$work/$engine.seconds"
done
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
runs = {}
for engine in ("native", "spark"):
    summary = json.loads(open(f"{work}/{engine}.json").read().strip().splitlines()[-1])
    metrics = json.load(open(f"{summary['version_dir']}/metrics.json"))
    seconds = float(open(f"{work}/{engine}.seconds").read())
    runs[engine] = (summary, metrics, seconds)
names = sorted(
    name for name, value in runs["native"][1].items()
    if isinstance(value, (int, float)) and not isinstance(value, bool)
    and not name.startswith("peak_") and name != "threads"
)
print(f"{'':24}{'native':>14}{'spark':>14}")
for name in names:
    row = [runs[e][1].get(name) for e in ("native", "spark")]
    cells = "".join(f"{v:>14.4f}" if isinstance(v, (int, float)) else f"{'-':>14}" for v in row)
    print(f"{name:24}{cells}")
for label, key in (("fit (s)", "fit"),):
    row = [runs[e][1].get("timings_s", {}).get(key) for e in ("native", "spark")]
    print(f"{label:24}" + "".join(f"{v:>14.2f}" if v is not None else f"{'-':>14}" for v in row))
native, spark = runs["native"][2], runs["spark"][2]
print(f"{'wall (s)':24}{native:>14.2f}{spark:>14.2f}")
print(f"spark / native wall time: {spark / native:.1f}x; versions: "
      f"{runs['native'][0]['version_dir']} and {runs['spark'][0]['version_dir']}")
PY
