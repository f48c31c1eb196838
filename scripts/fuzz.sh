#!/usr/bin/env bash
# Runs each cargo-fuzz target (job_file, libsvm, csv_rows, and the model loaders model_trees,
# model_als, manifest) for SECONDS (default 100, so the six together take 10 minutes) from the seed corpus in fuzz/corpus/, with libFuzzer's
# coverage instrumentation and no sanitizer (this toolchain is stable Rust; the targets hold
# no unsafe code of ours to sanitize). Crashes are written to fuzz/artifacts/<target>/.
#   scripts/fuzz.sh 100         # needs `cargo install cargo-fuzz` once
#   TARGETS=libsvm scripts/fuzz.sh 60
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-100}"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/submit-fuzz-target}"
cd "$here"
for target in ${TARGETS:-job_file libsvm csv_rows model_trees model_als manifest}; do
  # Runs grow the corpus in a scratch copy; only the seeds are kept in the repository.
  work="$(mktemp -d)"
  cp fuzz/corpus/"$target"/* "$work"/
  echo "== $target: $seconds s"
  cargo fuzz run --release --sanitizer none "$target" "$work" -- \
    -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=4096 2>&1 \
    | grep -E '^(#[0-9]+.*(DONE|pulse)|Done|==|INFO: Running|.*(panicked|ERROR|crash))' || true
  rm -rf "$work"
done
