#!/usr/bin/env bash
# prefix_bench.sh — time to first token with and without automatic prefix caching, side by side
# in one run: for each model, two claq-servers (--no-prefix-cache and the default) get the same
# streamed chat requests alternately (prefix_bench.py): a shared system prompt with a different
# question each, and multi-turn chats. Models: small-lm-5m (its 256-token context holds a
# 220-token shared system prompt, or a 120-token one and four chat turns) and `claq synth
# --shape small` (random weights, 4 layers of 512, Llama-2 vocabulary, 2048-token context) with
# a 1,000-token system prompt. Prints the tables
# docs/benchmarks.md records. A benchmark: nothing here asserts speed.
#
# usage: clients/bench/prefix_bench.sh [--bin DIR] [--work DIR]
# environment: CLAQ_BIN [build], CLAQ_SHARED [../shared beside the repo], BENCH_THREADS [2]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$(cd "$here/../.." && pwd)"
bin="${CLAQ_BIN:-$src/build}"
shared="${CLAQ_SHARED:-$src/../shared}"
work=""
while [ $# -gt 0 ]; do
    case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "prefix_bench: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
threads="${BENCH_THREADS:-2}"
py=/usr/bin/python3
own_work=0
if [ -z "$work" ]; then
    work="$(mktemp -d "${TMPDIR:-/tmp}/claq-prefix-bench.XXXXXX")"
    own_work=1
fi
for f in "$bin/claq-server" "$bin/claq"; do
    [ -x "$f" ] || { echo "prefix_bench: $f not found; build first" >&2; exit 2; }
done

# shellcheck source=server_ctl.sh
. "$here/server_ctl.sh"
pid_a=""
pid_b=""
stop_both() {
    local rc=0
    CLAQ_SERVER_PID="$pid_a"; claq_server_stop || rc=$?
    CLAQ_SERVER_PID="$pid_b"; claq_server_stop || rc=$?
    pid_a=""; pid_b=""
    return "$rc"
}
trap 'stop_both >/dev/null 2>&1 || true; if [ "$own_work" = 1 ]; then rm -rf "$work"; fi' EXIT

echo "## Prefix caching: time to first token"
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "- commit: $(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
echo "- load average (1/5/15 min) at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- servers: --threads $threads --max-batch 8, one request at a time, alternating"
echo

"$bin/claq" synth --shape small --out "$work/synth-small" \
    --tokenizer "$shared/models/tokenizer.model" --seed 3 >/dev/null

run_model() {   # label model system_tokens chat_system_tokens text
    local label="$1" model="$2" sys="$3" chat_sys="$4" text="$5" a b
    local flags=(--threads "$threads" --max-batch 8 --access-log 0)
    claq_server_start "$bin/claq-server" "$model" "${flags[@]}" --no-prefix-cache
    pid_a="$CLAQ_SERVER_PID"; a="$CLAQ_SERVER_URL"
    claq_server_start "$bin/claq-server" "$model" "${flags[@]}"
    pid_b="$CLAQ_SERVER_PID"; b="$CLAQ_SERVER_URL"
    "$py" "$here/prefix_bench.py" --url-nocache "$a" --url-cache "$b" --text "$text" \
        --system-tokens "$sys" --chat-system-tokens "$chat_sys" --label "$label"
    stop_both
}

echo '```'
echo "clients/bench/prefix_bench.sh   # prefix_bench.py per model, see the script"
echo '```'
echo
run_model "small-lm-5m" "$shared/models/small-lm-5m" 220 120 "$shared/data/small-lm/valid.txt"
echo
run_model "synth small (2048 ctx)" "$work/synth-small" 1000 1000 \
    "$shared/data/wikitext-2-raw/wiki.test.raw"
echo
echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
