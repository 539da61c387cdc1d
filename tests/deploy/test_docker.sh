#!/usr/bin/env bash
# test_docker.sh — builds deploy/Dockerfile and runs the image as the README says: host
# networking on a loopback port, a model from $CLAQ_SHARED/models mounted read-only, read-only
# root file system, non-root user. Checks /health (and the image's HEALTHCHECK command), the
# model id taken from the mounted model's name, a completion, a streamed chat, and that
# `docker stop` drains: a stream in flight when it is sent still ends with [DONE], and the server
# exits 0 after logging "drained". Starts dockerd (no bridge, no iptables) when none runs and
# stops what it started. The base image comes from deploy/docker/base-offline.sh (debootstrap from
# the Debian mirror, no registry) and is kept, as are the build layers, so a rerun costs seconds
# (a cold run: about 3 min for the base and 2 min for the build on 2 cores). Skips (77) without
# docker or the permission to use it.
# ctest-label: slow
# ctest-cost: 60 (about 60 s in its longer pass; ctest -j starts the costliest first)
set -euo pipefail

SRC="${CLAQ_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
SHARED="${CLAQ_SHARED:-$SRC/../shared}"
MODEL_NAME=tinystories-656k
MODEL="$SHARED/models/$MODEL_NAME"
BASE_TAG="claq/debian:bookworm-slim"
IMAGE="claq-server:cpu"
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }

[ -d "$MODEL" ] || skip "model missing: $MODEL"
command -v docker >/dev/null || skip "docker is not installed (deploy/install-deps.sh installs docker.io)"
command -v curl >/dev/null || skip "curl is missing"

work="$(mktemp -d "${TMPDIR:-/tmp}/claq-docker.XXXXXX")"
started_dockerd=""
container=""
cleanup() {
    if [ -n "$container" ]; then docker rm -f "$container" >/dev/null 2>&1 || true; fi
    if [ -n "$started_dockerd" ]; then
        kill -TERM "$started_dockerd" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$started_dockerd" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# ---- a Docker engine: the running one, else one we start (and stop) ----
if ! docker info >/dev/null 2>&1; then
    if [ -S /var/run/docker.sock ] && [ "$(id -u)" -ne 0 ]; then
        skip "a Docker engine runs but this user may not use it (add it to the docker group)"
    fi
    [ "$(id -u)" -eq 0 ] || skip "no Docker engine runs and only root may start one"
    command -v dockerd >/dev/null || skip "dockerd is not installed (deploy/install-deps.sh installs docker.io)"
    # No bridge and no iptables rules: every container here uses --network host on loopback.
    dockerd --bridge=none --iptables=false --ip-masq=false >"$work/dockerd.log" 2>&1 &
    started_dockerd=$!
    for _ in $(seq 1 150); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
    docker info >/dev/null 2>&1 || { tail -n 20 "$work/dockerd.log" >&2; fail "dockerd did not start"; }
    echo "started dockerd (pid $started_dockerd); it is stopped at the end"
fi

# ---- base image (air-gapped path) and the build, timed ----
t0=$(date +%s)
bash "$SRC/deploy/docker/base-offline.sh" "$BASE_TAG"
t1=$(date +%s)
docker build --network host --build-arg BASE="$BASE_TAG" -f "$SRC/deploy/Dockerfile" \
    -t "$IMAGE" "$SRC" >"$work/build.log" 2>&1 || { tail -n 40 "$work/build.log" >&2; fail "docker build"; }
t2=$(date +%s)
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
echo "base image: $((t1 - t0)) s; build: $((t2 - t1)) s ($(grep -c 'Using cache' "$work/build.log" || true) cached steps); image size: $((size / 1000000)) MB"
[ "$size" -lt 200000000 ] || fail "image is $size bytes; the CPU image should stay under 200 MB"
user=$(docker image inspect -f '{{.Config.User}}' "$IMAGE")
[ -n "$user" ] && [ "${user%%:*}" != 0 ] && [ "${user%%:*}" != root ] || fail "image runs as '$user'"
docker image inspect -f '{{json .Config.Healthcheck}}' "$IMAGE" | grep -q claq-healthcheck ||
    fail "image has no HEALTHCHECK"
if docker run --rm --network host --entrypoint /bin/sh "$IMAGE" -c 'ls /usr/local/cuda* /usr/lib/x86_64-linux-gnu/libcudart* 2>/dev/null' | grep -q .; then
    fail "the CPU image carries CUDA files"
fi

# ---- run: host network, loopback port, model read-only, root file system read-only ----
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
container="claq-test-$$"
tstart=$(date +%s.%N)
# CLAQ_STEP_DELAY_MS (a testing aid) slows generation to about 50 tokens/s so that a stream is
# still running when `docker stop` comes.
docker run -d --name "$container" --network host --read-only \
    -e CLAQ_HOST=127.0.0.1 -e CLAQ_PORT="$port" -e CLAQ_STEP_DELAY_MS=20 \
    -v "$MODEL:/models/$MODEL_NAME:ro" "$IMAGE" >/dev/null
code=""
for _ in $(seq 1 300); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url/health" || true)
    [ "$code" = 200 ] && break
    [ "$(docker inspect -f '{{.State.Running}}' "$container")" = true ] || break
    sleep 0.1
done
tready=$(date +%s.%N)
[ "$code" = 200 ] || { docker logs "$container" 2>&1 | tail -n 20 >&2; fail "/health never answered 200 (last: $code)"; }
echo "time from docker run to /health 200: $(python3 -c "print(round($tready - $tstart, 2))") s"
docker exec "$container" claq-healthcheck || fail "the image's HEALTHCHECK command fails on a ready server"

models=$(curl -s "$url/v1/models")
echo "$models" | python3 -c 'import json,sys; d=json.load(sys.stdin); ids=[m["id"] for m in d["data"]]; sys.exit(0 if ids==[sys.argv[1]] else "model ids %s" % ids)' "$MODEL_NAME" ||
    fail "/v1/models does not name the model '$MODEL_NAME': $models"

out=$(curl -s -w '\n%{http_code}' "$url/v1/completions" -H 'Content-Type: application/json' \
      -d '{"prompt":"Once upon a time","max_tokens":16,"temperature":0}')
[ "$(tail -n1 <<<"$out")" = 200 ] || fail "completion: $out"
head -n -1 <<<"$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["usage"]["completion_tokens"] > 0 and d["choices"][0]["text"], d' ||
    fail "completion body: $out"

chat=$(curl -sN "$url/v1/chat/completions" -H 'Content-Type: application/json' \
       -d '{"messages":[{"role":"user","content":"Tell me a story."}],"max_tokens":16,"stream":true}')
grep -q '^data: {' <<<"$chat" && grep -q '^data: \[DONE\]' <<<"$chat" || fail "streamed chat: $chat"
echo "health, model id, completion and streamed chat: ok"

# ---- docker stop drains: a stream in flight finishes, the server exits 0 ----
curl -sN "$url/v1/completions" -H 'Content-Type: application/json' \
     -d '{"prompt":"Once upon a time","max_tokens":100,"temperature":0,"stream":true}' \
     >"$work/inflight.txt" &
curl_pid=$!
sleep 0.6
ts=$(date +%s.%N)
docker stop -t 40 "$container" >/dev/null
te=$(date +%s.%N)
wait "$curl_pid" || true
exit_code=$(docker inspect -f '{{.State.ExitCode}}' "$container")
logs=$(docker logs "$container" 2>&1)
events=$(grep -c '^data: {' "$work/inflight.txt" || true)
echo "docker stop took $(python3 -c "print(round($te - $ts, 2))") s; the in-flight stream got $events events; exit code $exit_code"
grep -q '^data: \[DONE\]' "$work/inflight.txt" || fail "the stream in flight at docker stop did not end with [DONE]"
grep -q 'draining' <<<"$logs" && grep -q 'drained: every request answered' <<<"$logs" ||
    { tail -n 10 <<<"$logs" >&2; fail "the server did not log its drain"; }
[ "$exit_code" = 0 ] || fail "the container exited $exit_code after docker stop"
echo "docker stop drained: ok"

# ---- compose: the file parses and its lb profile mounts deploy/nginx.conf (not run here) ----
compose=""
if docker compose version >/dev/null 2>&1; then compose="docker compose"
elif command -v docker-compose >/dev/null; then compose="docker-compose"; fi
if [ -n "$compose" ]; then
    cfg=$($compose -f "$SRC/deploy/docker-compose.yml" --profile lb config) || fail "compose config"
    grep -q "$SRC/deploy/nginx.conf:/etc/claq/nginx.conf:ro" <<<"$cfg" ||
        fail "the compose lb profile does not mount deploy/nginx.conf"
    [ "$(grep -c 'network_mode: host' <<<"$cfg")" -eq 5 ] || fail "compose: not every service uses host networking"
    echo "compose file ($compose): ok"
else
    echo "note: no docker compose / docker-compose here: the compose file was not checked"
fi
