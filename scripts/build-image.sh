#!/usr/bin/env bash
# Builds the `submit` service image offline: FROM scratch with the release binary (symbols
# stripped), the shared libraries `ldd` lists for it, jobs/ and conf/.
#   scripts/build-image.sh [TAG]        (default submit:latest; podman, else docker)
# Prints the image size and the build time. Needs `cargo build --release` first (or SUBMIT_BIN).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tag="${1:-submit:latest}"
bin="${SUBMIT_BIN:-${CARGO_TARGET_DIR:-$here/target}/release/submit}"
engine="${CONTAINER_ENGINE:-$(command -v podman || command -v docker || true)}"
if [ -z "$engine" ]; then
  echo "build-image.sh: neither podman nor docker is installed" >&2
  exit 2
fi
if [ ! -x "$bin" ]; then
  echo "build-image.sh: no binary at $bin (run cargo build --release, or set SUBMIT_BIN)" >&2
  exit 2
fi
started=$(date +%s.%N)
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
root="$context/rootfs"
mkdir -p "$root/usr/local/bin" "$root/tmp" "$context/models"
chmod 1777 "$root/tmp"
cp "$bin" "$root/usr/local/bin/submit"
strip "$root/usr/local/bin/submit" 2>/dev/null || true
# The dynamic loader and every library the binary links, at the paths ldd resolved.
ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | while read -r library; do
  mkdir -p "$root$(dirname "$library")"
  cp -L "$library" "$root$library"
done
cp -r "$here/jobs" "$root/jobs"
mkdir -p "$root/conf"
cp "$here/conf/defaults.toml" "$root/conf/defaults.toml"
cp "$here/Containerfile" "$context/Containerfile"
version="$("$bin" --version | awk '{ print $2 }')"
commit="$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! git -C "$here" diff --quiet HEAD 2>/dev/null; then commit="$commit-dirty"; fi
"$engine" build --quiet -f "$context/Containerfile" -t "$tag" \
  --build-arg "VERSION=$version" --build-arg "COMMIT=$commit" "$context" >/dev/null
size=$("$engine" image inspect "$tag" --format '{{.Size}}')
awk -v tag="$tag" -v version="$version" -v commit="$commit" -v size="$size" \
  -v started="$started" -v now="$(date +%s.%N)" \
  'BEGIN { printf "built %s (submit %s, commit %s): %.1f MB in %.1f s\n", tag, version, commit, size / 1e6, now - started }' 
