#!/usr/bin/env bash
# test_wrk_completions.sh — a bounded wrk load (2 threads, 16 connections, 10 s) on
# POST /v1/completions of a live claq-server (tinystories-656k), through clients/wrk/
# completions.lua, must finish with zero non-2xx responses and zero socket errors (connect,
# read, write, timeout), with requests actually served; afterwards the server still answers
# and drains on SIGTERM with exit 0.
set -uo pipefail
src="${CLAQ_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
bin="${CLAQ_BIN:-$src/build}"
shared="${CLAQ_SHARED:-$src/../shared}"
model="$shared/models/tinystories-656k"
if [ ! -x "$bin/claq-server" ]; then echo "SKIP: $bin/claq-server is not built"; exit 77; fi
if ! command -v wrk >/dev/null 2>&1; then
    echo "FAIL: wrk is not installed (deploy/install-deps.sh installs it)"; exit 1
fi
if [ ! -d "$model" ]; then echo "FAIL: $model missing (CLAQ_SHARED)"; exit 1; fi
. "$src/clients/bench/server_ctl.sh"
tmp="$(mktemp -d)"
trap 'claq_server_stop >/dev/null 2>&1; rm -rf "$tmp" "$CLAQ_SERVER_LOG"' EXIT

claq_server_start "$bin/claq-server" "$model" || { echo "FAIL: server start"; exit 1; }
echo "server at $CLAQ_SERVER_URL"

# --timeout 30s: wrk's default of 2 s would count a slow response on a loaded 2-core CI
# machine (or under ASan) as a socket error, which is not what this test is about.
CLAQ_MAX_TOKENS=16 wrk -t2 -c16 -d10s --timeout 30s --latency \
    -s "$src/clients/wrk/completions.lua" "$CLAQ_SERVER_URL" >"$tmp/wrk.out" 2>"$tmp/wrk.err"
wrk_rc=$?
cat "$tmp/wrk.out"
[ -s "$tmp/wrk.err" ] && { echo "-- wrk stderr:"; head -n 20 "$tmp/wrk.err"; }

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
[ "$wrk_rc" = 0 ] || fail "wrk exited $wrk_rc"
line="$(grep '^claq-wrk:' "$tmp/wrk.out" | tail -n1)"
[ -n "$line" ] || fail "no claq-wrk summary line (did completions.lua's done() run?)"
field() { echo "$line" | grep -o " $1=[0-9.]*" | cut -d= -f2; }
requests="$(field requests)"
[[ "$requests" =~ ^[0-9]+$ ]] && [ "$requests" -ge 16 ] || fail "only '$requests' requests completed in 10 s"
for k in non2xx connect_errors read_errors write_errors timeouts status_errors; do
    v="$(field "$k")"
    [ "$v" = 0 ] || fail "$k=$v (want 0)"
done
grep -q "Non-2xx or 3xx responses" "$tmp/wrk.out" && fail "wrk reports non-2xx responses"
grep -q "Socket errors" "$tmp/wrk.out" && fail "wrk reports socket errors"

# The server's own counters must agree: every wrk response was a 2xx, and once wrk has gone
# (it closes connections with requests still in flight) no sequence stays running or waiting and
# the KV cache is empty again, i.e. abandoned requests were freed.
metric() {  # metric NAME [LABEL-FILTER] -> value of the first matching sample, "" if none
    grep -E "^$1(\{[^}]*\})? " "$tmp/metrics.txt" | grep -F -- "${2:-}" | head -n1 |
        awk '{print $NF}'
}
settled=0
for i in $(seq 1 50); do
    curl -s --max-time 5 -o "$tmp/metrics.txt" "$CLAQ_SERVER_URL/metrics" || true
    run="$(metric claq_num_requests_running)"; wait_="$(metric claq_num_requests_waiting)"
    kv="$(metric claq_kv_cache_usage_ratio)"
    if [ "$run" = 0 ] && [ "$wait_" = 0 ] && awk "BEGIN {exit !(${kv:-1} == 0)}"; then
        settled=1
        break
    fi
    sleep 0.1
done
if [ -z "$(metric claq_num_requests_running)" ]; then
    echo "note: /metrics has no claq_num_requests_running; capacity checks skipped"
else
    [ "$settled" = 1 ] || fail "after wrk: running=$run waiting=$wait_ kv_usage=$kv (want 0 0 0)"
    ok2xx="$(metric claq_http_responses_total 'code="2xx"')"
    for c in 4xx 5xx; do
        v="$(metric claq_http_responses_total "code=\"$c\"")"
        [ -z "$v" ] || [ "$v" = 0 ] || fail "server counted $v $c responses during the wrk run"
    done
    [ -z "$ok2xx" ] || [ "${ok2xx%.*}" -ge "$requests" ] ||
        fail "server counted $ok2xx 2xx responses, wrk saw $requests"
    echo "server metrics after wrk: 2xx=$ok2xx running=$run waiting=$wait_ kv_usage=$kv"
fi

# still serving after the load, then a clean drain
code="$(curl -s -o "$tmp/after.json" -w '%{http_code}' --max-time 30 \
    -H 'Content-Type: application/json' \
    -d '{"prompt":"Once upon a time","max_tokens":4,"temperature":0}' \
    "$CLAQ_SERVER_URL/v1/completions")"
[ "$code" = 200 ] || fail "completion after the load: HTTP $code $(head -c 300 "$tmp/after.json")"
claq_server_stop; rc=$?
[ "$rc" = 0 ] || fail "claq-server exit status after SIGTERM: $rc"
[ "$fails" -eq 0 ] || { claq_server_log_tail 20; echo "$fails check(s) failed"; exit 1; }
echo "ok: wrk -t2 -c16 -d10s: $requests requests, 0 non-2xx, 0 socket errors"
