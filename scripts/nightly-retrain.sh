#!/usr/bin/env bash
# Cron-ready retraining: quiet, appends to a log file, exits non-zero when the job fails.
#   0 3 * * *  /path/to/repo/scripts/nightly-retrain.sh jobs/movielens-sample.toml
# JOB is looked up from the working directory, then from the repository root, so the line above
# works from cron's $HOME. Where the version lands does not depend on the working directory
# (submit resolves it from the job file's project root).
# Environment: SUBMIT_BIN (binary), SUBMIT_LOG (log file, default logs/nightly-<job>.log).
# Exit codes are submit's: 0 published (or unchanged with output.skip_unchanged), 6 published
# but not promoted (with --fail-if-not-promoted), others failed.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
job="${1:?usage: nightly-retrain.sh JOB.toml [submit flags...]}"
shift
if [ ! -f "$job" ] && [ -f "$here/$job" ]; then
  job="$here/$job"
fi
if [ ! -f "$job" ]; then
  echo "nightly-retrain.sh: no job file $job (looked in $(pwd) and $here)" >&2
  exit 2
fi
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
case $status in
  0) ;;
  6) echo "nightly retrain of $job: published a new version, but the promotion gate kept latest where it was (exit code 6); see $log" >&2 ;;
  *) echo "nightly retrain of $job failed with exit code $status; see $log" >&2 ;;
esac
exit $status
