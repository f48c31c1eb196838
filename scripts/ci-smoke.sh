#!/usr/bin/env bash
# CI smoke run: every job in JOBS_DIR (default: the repository's jobs/) on at most SMOKE_LIMIT
# rows, published to a scratch folder.
#   scripts/ci-smoke.sh [JOBS_DIR]
# Jobs that read shared/data are skipped (with a message) where that folder is absent, and
# jobs that read the server's feedback log where it has no events yet.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${SUBMIT_BIN:-${CARGO_TARGET_DIR:-$here/target}/release/submit}"
limit="${SMOKE_LIMIT:-20000}"
out="${SMOKE_OUTPUT_DIR:-$(mktemp -d)}"
jobs_dir="${1:-$here/jobs}"
if [ ! -d "$jobs_dir" ]; then
  echo "ci-smoke.sh: $jobs_dir is not a directory of job files" >&2
  exit 2
fi
shopt -s nullglob
failed=0
is_batch() { grep -qE '^kind = "(recommend|predict)"' "$1"; }
# Train jobs first: recommend and predict jobs read the versions they publish.
jobs=()
for job in "$jobs_dir"/*.toml; do is_batch "$job" || jobs+=("$job"); done
for job in "$jobs_dir"/*.toml; do is_batch "$job" && jobs+=("$job"); done
if [ ${#jobs[@]} -eq 0 ]; then
  echo "ci-smoke.sh: no *.toml job files in $jobs_dir" >&2
  exit 2
fi
for job in "${jobs[@]}"; do
  name="$(basename "$job" .toml)"
  shared="$(sed -n 's|^[a-z_]* *= *"\(.*shared/data\)/.*|\1|p' "$job" | head -1)"
  if [ -n "$shared" ] && [ ! -d "$(dirname "$job")/$shared" ]; then
    echo "skip $name: $shared is not here"
    continue
  fi
  events="$(sed -n 's|^path = "\(.*/events/\*\.csv\)"|\1|p' "$job" | head -1)"
  if [ -n "$events" ] && ! compgen -G "$(dirname "$job")/$events" >/dev/null; then
    echo "skip $name: no feedback events yet ($events; submit serve writes them)"
    continue
  fi
  if is_batch "$job"; then
    # from = "../models/<job>/latest" -> the scratch copy of that job's versions.
    model_job="$(sed -n 's|^from = ".*/\([^/]*\)/latest"|\1|p' "$job")"
    args=(--conf "model.from=$out/$model_job/latest" --conf "output.path=$out/$name.csv")
  else
    args=(--conf "input.limit=$limit" --conf "output.dir=$out")
  fi
  if "$bin" --quiet "${args[@]}" "$job"; then
    echo "ok   $name"
  else
    echo "FAIL $name (exit code $?)"
    failed=1
  fi
done
exit $failed
