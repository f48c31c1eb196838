#!/usr/bin/env bash
# Like the course's example-spark-submit.sh: fixed resources, everything else passed through.
#   scripts/submit.sh jobs/quickstart.toml --conf model.rank=20
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${SUBMIT_BIN:-${CARGO_TARGET_DIR:-$here/target}/release/submit}"
exec "$bin" --master 'local[4]' --executor-memory 1G --driver-memory 1G "$@"
