#!/usr/bin/env bash
# The container end to end, for real, with podman: installs podman, buildah and runc from Debian
# when missing, builds the image, trains two models with one-shot containers on a named volume,
# starts the server container on a free loopback port, predicts and recommends with curl, runs a
# training job through the endpoint and sees its version served, stops the container (SIGTERM)
# and checks the exit status, the time it took and the volume's versions. Cleans up its
# container, volume and image by name, also on failure.
#   scripts/test-image.sh
# Prints `SKIPPED: ...` and exits 0 where podman cannot be installed or cannot run a container.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/target}"
skip() { echo "SKIPPED: container test: $*"; exit 0; }
fail() { echo "FAIL: $*" >&2; exit 1; }
if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman buildah runc >/dev/null 2>&1 \
      || skip "apt-get could not install podman, buildah and runc"
  else
    skip "podman and runc are not installed (and this is not a root shell with apt-get)"
  fi
fi
# crun fails on this kind of machine's cgroups and the default ulimits exceed the sandbox's.
conf="$(mktemp -d)"
cat >"$conf/containers.conf" <<'CONF'
[engine]
runtime = "runc"
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
CONF
export CONTAINERS_CONF="$conf/containers.conf"
id="submit-test-$$"
image="localhost/$id:latest"
volume="$id-models"
work="$(mktemp -d)"
cleanup() {
  podman rm -f -t 0 "$id" >/dev/null 2>&1 || true
  podman volume rm -f "$volume" >/dev/null 2>&1 || true
  podman rmi -f "$image" >/dev/null 2>&1 || true
  rm -rf "$conf" "$work"
}
trap cleanup EXIT
[ -x "$CARGO_TARGET_DIR/release/submit" ] || (cd "$here" && cargo build --release --quiet)
"$here/scripts/build-image.sh" "$image"
podman run --rm "$image" --version >/dev/null 2>"$work/probe.log" \
  || skip "podman cannot run a container here: $(tail -1 "$work/probe.log")"

echo "== one-shot training containers on volume $volume"
podman volume create "$volume" >/dev/null
podman run --rm -v "$volume:/models" "$image" -q /jobs/quickstart.toml
podman run --rm -v "$volume:/models" "$image" -q /jobs/gbt-quickstart.toml

echo "== the server container"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
token="image-test-token-$RANDOM$RANDOM-abcdef"
echo "$token" >"$work/token"
chmod 644 "$work/token"
podman run -d --name "$id" -p "127.0.0.1:$port:8080" -v "$volume:/models" \
  -v "$work/token:/run/secrets/token:ro" "$image" \
  serve --models /models --jobs /jobs --addr 0.0.0.0:8080 --token-file /run/secrets/token --poll-ms 200 >/dev/null
base="http://127.0.0.1:$port"
for _ in $(seq 100); do curl -sf "$base/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "$base/readyz" >/dev/null || { podman logs "$id" >&2; fail "/readyz never answered"; }
podman exec "$id" submit healthcheck --addr 127.0.0.1:8080 --path /readyz -q \
  || fail "the healthcheck command failed inside the container"
models="$(curl -sf "$base/v1/models")"
echo "   served: $models"

columns="$(python3 -c 'import json; print(json.dumps([f"f{j}" for j in range(12)]))')"
answer="$(curl -sf -H 'Content-Type: application/json' \
  -d "{\"dataframe_split\": {\"columns\": $columns, \"data\": [[0,1,2,3,4,5,6,7,8,9,10,11]]}}" \
  "$base/v1/models/gbt-quickstart/predict")" || fail "predict failed"
echo "   predict: $answer"
python3 -c 'import json, sys; a = json.loads(sys.argv[1]); assert len(a["predictions"]) == 1 and len(a["probabilities"]) == 1, a' "$answer"
answer="$(curl -sf -d '{"user": 7, "k": 5}' "$base/v1/models/quickstart/recommend")" || fail "recommend failed"
echo "   recommend: $answer"
python3 -c 'import json, sys; a = json.loads(sys.argv[1]); assert len(a["items"]) == 5, a' "$answer"

echo "== a training run through the endpoint"
run="$(curl -sf -X POST -H "Authorization: Bearer $token" -d '{"conf": {"model.max_iter": 5}}' \
  "$base/v1/jobs/quickstart/runs")" || fail "the training endpoint refused the run"
run_id="$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["id"])' "$run")"
state=""
for _ in $(seq 600); do
  state="$(curl -sf -H "Authorization: Bearer $token" "$base/v1/runs/$run_id" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["state"])')"
  case "$state" in queued|running) sleep 0.1 ;; *) break ;; esac
done
[ "$state" = succeeded ] || { curl -s -H "Authorization: Bearer $token" "$base/v1/runs/$run_id/log" >&2; fail "run $run_id ended $state"; }
served=""
for _ in $(seq 100); do
  served="$(curl -sf "$base/v1/models" | python3 -c 'import json, sys; print([m["version"] for m in json.load(sys.stdin)["models"] if m["model"] == "quickstart"][0])')"
  [ "$served" = 2 ] && break
  sleep 0.1
done
[ "$served" = 2 ] || fail "the server still serves quickstart v$served after the run"
echo "   run $run_id succeeded; quickstart v2 is served"

echo "== podman stop (SIGTERM)"
started=$(date +%s.%N)
podman stop -t 10 "$id" >/dev/null
stopped=$(date +%s.%N)
code="$(podman inspect "$id" --format '{{.State.ExitCode}}')"
seconds="$(awk -v a="$started" -v b="$stopped" 'BEGIN { printf "%.2f", b - a }')"
echo "   exit code $code after $seconds s"
[ "$code" = 0 ] || { podman logs "$id" >&2; fail "the server exited $code"; }
awk -v s="$seconds" 'BEGIN { exit !(s < 2) }' || fail "stopping took $seconds s (more than 2 s)"
logs="$(podman logs "$id" 2>&1)"
grep -q "shutting down" <<<"$logs" || fail "no graceful shutdown in the log"
listing="$(podman run --rm -v "$volume:/models" "$image" models list /models)"
echo "$listing" | sed 's/^/   /'
grep -q "v2 .*\*" <<<"$listing" || fail "the volume lacks quickstart v2 as latest"
echo "container test passed"
