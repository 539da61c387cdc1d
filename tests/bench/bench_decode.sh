#!/usr/bin/env bash
# bench_decode.sh — FP32 decode speed and peak memory of the real models, 1 and 2 threads (a
# benchmark that prints figures, not a test), and the same decode from packed 4- and 3-bit
# (RTN: no calibration needed for a speed figure) copies of small-lm-5m.
# Usage: tests/bench/bench_decode.sh [build-dir]
set -euo pipefail
B="${1:-build}"
M="${CLAQ_SHARED:-$(dirname "$0")/../../../shared}/models"
printf "%-22s %-8s %7s %12s %12s %10s\n" model threads tokens "prompt tok/s" "decode tok/s" "peak MiB"
run() { # label model-args...
    local label=$1; shift
    for th in 1 2; do
        line=$("$B/claq" generate "$@" --prompt "Once upon a time" --max-tokens 200 --temperature 0 \
               --threads $th 2>&1 >/dev/null | tail -1)
        p=$(echo "$line" | sed -n 's/.*prompt: [0-9]* tokens in [0-9.]* s (\([0-9.]*\) tok\/s).*/\1/p')
        g=$(echo "$line" | sed -n 's/.*generated: \([0-9]*\) tokens in [0-9.]* s (\([0-9.]*\) tok\/s).*/\1 \2/p')
        mem=$(echo "$line" | sed -n 's/.*peak RSS \([0-9.]*\) MiB.*/\1/p')
        printf "%-22s %-8s %7s %12s %12s %10s\n" "$label" "$th" "${g% *}" "$p" "${g#* }" "$mem"
    done
}
run stories260K --model "$M/stories260K.bin" --tokenizer "$M/tok512.bin"
run tinystories-656k --model "$M/tinystories-656k"
run small-lm-5m --model "$M/small-lm-5m"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for b in 4 3; do
    "$B/claq" quantize --model "$M/small-lm-5m" --method rtn --bits $b --out "$tmp/slm-$b.claq" \
        >/dev/null 2>&1
    run "small-lm-5m packed ${b}b" --model "$tmp/slm-$b.claq"
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
