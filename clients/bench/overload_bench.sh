#!/usr/bin/env bash
# overload_bench.sh — the overload benchmark of issue 14: claq-server (tinystories-656k) with a
# small admission window (--max-batch 4, --max-queue Q for Q in OVERLOAD_QUEUES [0 2 8]), driven
# by overload_bench.py first with 2 clients (admitted whole) and then with 64 (far past
# capacity); for Q = 8 also a bounded wrk run at 64 connections through
# clients/wrk/completions.lua for the 429 count at wrk's rate. The admitted requests' p99 stays
# within 2x of the unloaded one only when the wait queue is short: queued requests wait for a
# batch slot. Prints the figures with the date and load average; asserts nothing.
# usage: clients/bench/overload_bench.sh [build-dir]   (env CLAQ_SHARED, OVERLOAD_SECONDS [15])
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$(cd "$here/../.." && pwd)"
bin="${1:-${CLAQ_BIN:-$src/build}}"
shared="${CLAQ_SHARED:-$src/../shared}"
secs="${OVERLOAD_SECONDS:-15}"
. "$here/server_ctl.sh"
trap 'claq_server_stop >/dev/null 2>&1 || true' EXIT
echo "overload_bench: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for q in ${OVERLOAD_QUEUES:-0 2 8}; do
    claq_server_start "$bin/claq-server" "$shared/models/tinystories-656k" --max-batch 4 \
        --max-queue "$q" --threads 2 || { echo "server did not start"; exit 1; }
    echo "== server: --max-batch 4 --max-queue $q at $CLAQ_SERVER_URL"
    /usr/bin/python3 "$here/overload_bench.py" --url "$CLAQ_SERVER_URL" --low 2 --high 64 \
        --seconds "$secs" --max-tokens 32
    if [ "$q" = "${OVERLOAD_WRK_QUEUE:-8}" ] && command -v wrk >/dev/null 2>&1; then
        CLAQ_MAX_TOKENS=32 wrk -t2 -c64 -d"${secs}s" --timeout 30s --latency \
            -s "$src/clients/wrk/completions.lua" "$CLAQ_SERVER_URL" 2>/dev/null |
            grep -E "Requests/sec|claq-wrk: route|99%"
    fi
    claq_server_stop >/dev/null 2>&1 || true
done
