#!/usr/bin/env bash
# run_server_bench.sh — the server benchmark end to end: starts claq-server on an ephemeral
# loopback port with a real model from the shared folder, runs serve_bench.py's concurrency
# sweep (streamed requests, 1..64 clients) and a bounded wrk run against /v1/completions, then
# stops the server with SIGTERM. Prints everything docs/benchmarks.md records (command, date,
# machine, tables). Benchmarks, not tests: nothing here asserts speed.
#
# usage: clients/bench/run_server_bench.sh [--model PATH] [--bin DIR] [-- extra claq-server flags]
# environment (defaults in brackets):
#   CLAQ_BIN       build directory holding claq-server              [build]
#   CLAQ_SHARED    shared models/data folder                        [../shared beside the repo]
#   BENCH_MODEL    model path                       [$CLAQ_SHARED/models/tinystories-656k]
#   BENCH_LEVELS   concurrency list                                 [1,2,4,8,16,32,64]
#   BENCH_DURATION seconds per level                                [10]
#   BENCH_MAX_TOKENS max_tokens per request                         [64]
#   BENCH_ROUTE    completions | chat                               [completions]
#   WRK_ARGS       wrk load shape                                   [-t2 -c16 -d20s]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$(cd "$here/../.." && pwd)"
bin="${CLAQ_BIN:-$src/build}"
shared="${CLAQ_SHARED:-$src/../shared}"
model="${BENCH_MODEL:-$shared/models/tinystories-656k}"
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
    --model) model="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "run_server_bench: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
levels="${BENCH_LEVELS:-1,2,4,8,16,32,64}"
duration="${BENCH_DURATION:-10}"
max_tokens="${BENCH_MAX_TOKENS:-64}"
route="${BENCH_ROUTE:-completions}"
read -r -a wrk_args <<<"${WRK_ARGS:--t2 -c16 -d20s}"
py=/usr/bin/python3

if [ ! -x "$bin/claq-server" ]; then
    echo "run_server_bench: $bin/claq-server not found; build it first (cmake --build $bin)" >&2
    exit 2
fi
if [ ! -e "$model" ]; then
    echo "run_server_bench: model $model not found (set BENCH_MODEL or CLAQ_SHARED)" >&2
    exit 2
fi

# shellcheck source=server_ctl.sh
. "$here/server_ctl.sh"
trap 'claq_server_stop >/dev/null 2>&1 || true' EXIT

echo "## claq-server benchmark"
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "- commit: $(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), \
$(free -g | awk '/Mem:/ {print $2}') GiB RAM"
echo "- load average (1/5/15 min) at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every figure)"
echo "- model: $model"
echo "- server flags: ${extra[*]:-(defaults)}"
echo

claq_server_start "$bin/claq-server" "$model" "${extra[@]}"
echo "- server: $CLAQ_SERVER_URL (pid $CLAQ_SERVER_PID)"
echo

echo "### Concurrency sweep (streamed, $route, max_tokens=$max_tokens, temperature 0, ${duration}s per level)"
echo
echo '```'
echo "$py clients/bench/serve_bench.py --url $CLAQ_SERVER_URL --route $route \\"
echo "    --concurrency $levels --duration $duration --max-tokens $max_tokens"
echo '```'
echo
sweep_rc=0
"$py" "$here/serve_bench.py" --url "$CLAQ_SERVER_URL" --route "$route" \
    --concurrency "$levels" --duration "$duration" --max-tokens "$max_tokens" || sweep_rc=$?
echo

echo "### wrk, /v1/completions (not streamed, max_tokens 16, temperature 0)"
echo
echo '```'
echo "wrk ${wrk_args[*]} -s clients/wrk/completions.lua $CLAQ_SERVER_URL"
echo '```'
echo
echo '```'
wrk_rc=0
wrk "${wrk_args[@]}" --latency -s "$here/../wrk/completions.lua" "$CLAQ_SERVER_URL" || wrk_rc=$?
echo '```'

stop_rc=0
claq_server_stop || stop_rc=$?
trap - EXIT
echo
echo "- server exit status after SIGTERM: $stop_rc"
echo "- load average (1/5/15 min) at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$sweep_rc" -ne 0 ] || [ "$wrk_rc" -ne 0 ] || [ "$stop_rc" -ne 0 ]; then
    echo "run_server_bench: sweep rc=$sweep_rc wrk rc=$wrk_rc server rc=$stop_rc" >&2
    exit 1
fi
