#!/usr/bin/env bash
# Cron-ready retraining: quiet, appends to a log file, exits non-zero when the job fails.
#   0 3 * * *  /path/to/repo/scripts/nightly-retrain.sh jobs/movielens-sample.toml
# Environment: SUBMIT_BIN (binary), SUBMIT_LOG (log file, default logs/nightly-<job>.log).
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
job="${1:?usage: nightly-retrain.sh JOB.toml [submit flags...]}"
shift
bin="${SUBMIT_BIN:-${CARGO_TARGET_DIR:-$here/target}/release/submit}"
name="$(basename "$job" .toml)"
log="${SUBMIT_LOG:-$here/logs/nightly-$name.log}"
mkdir -p "$(dirname "$log")"
(
  echo "=== $(date -u +%Y-%m-%dT%H:%M:%SZ) nightly retrain of $job"
  # stderr is a file here, so submit writes plain timestamped lines (no progress bars).
  "$bin" --json "$job" "$@" 2>&1
  status=$?
  echo "=== exit code $status"
  exit $status
) >>"$log"
status=$?
if [ $status -ne 0 ]; then
  echo "nightly retrain of $job failed with exit code $status; see $log" >&2
fi
exit $status
