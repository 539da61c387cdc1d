#!/usr/bin/env bash
# bench_cpu_floor.sh — CPU decode and prefill against the memory floor, in one run (a benchmark
# that prints figures, not a test; issue 18): the streaming read ceiling with 4 KiB and 2 MiB
# pages (bench_cpu_gemv --bw-only), then a synthetic TinyLlama-1.1B (`claq synth --shape
# tinyllama-1.1b`, random weights: speed only) in FP16 and packed at 2.1, 3 and 4 bits: decode
# tok/s (greedy, 64 tokens after a short prompt) and prefill tok/s (a ~512-token prompt) at 1
# and 2 threads, the weight bytes each decoded token reads (every linear, the untied FP16 head;
# the embedding is gathered, one row), GB/s achieved, its percent of the huge-page ceiling at
# the same thread count, and peak RSS. With --baseline BIN (another build's claq, e.g. of an
# older commit) its decode and prefill of the same prompt on the same model run right after
# ours, and a second table prints both rates and their ratios (old and new binary in one run,
# alternating).
# Where the CPU has AVX512_BF16, packed models' prefill also runs with --prefill-precision bf16
# (the opt-in relaxed prompt numerics, docs/cpu-backend.md): a "prefill bf16" column, and in the
# baseline table the bf16 rate and its ratio to the baseline.
# Measure on a quiet machine: the load average is printed.
#
# --reps N takes the best of N runs of each figure; --only B measures one model (FP16, 2.1, 3, 4).
#
# usage: tests/bench/bench_cpu_floor.sh [build-dir] [--work DIR] [--baseline BIN] [--reps N]
#        [--only B]   (DIR keeps the models, ~4 GB)
set -euo pipefail
B=build
work=""
base=""
reps=1
only=""
while [ $# -gt 0 ]; do
    case "$1" in
    --work) work="$2"; shift 2 ;;
    --baseline) base="$2"; shift 2 ;;
    --reps) reps="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;   # one model row: FP16, 2.1, 3 or 4
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) B="$1"; shift ;;
    esac
done
S="${CLAQ_SHARED:-$(dirname "$0")/../../../shared}"
own=0
if [ -z "$work" ]; then work="$(mktemp -d "${TMPDIR:-/tmp}/claq-floor.XXXXXX")"; own=1; fi
trap 'if [ "$own" = 1 ]; then rm -rf "$work"; fi' EXIT
mkdir -p "$work"

echo "## CPU decode and prefill against the memory floor"
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'); THP $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo n/a)"
echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

bw="$("$B/bench_cpu_gemv" --bw-only --bw-mib 1024)"
echo "$bw" | grep "read bandwidth"
hp1=$(echo "$bw" | sed -n 's/read bandwidth, 1 thread: .* \([0-9.]*\) GB\/s with 2 MiB pages/\1/p')
hp2=$(echo "$bw" | sed -n 's/read bandwidth, 2 threads: .* \([0-9.]*\) GB\/s with 2 MiB pages/\1/p')
echo

tl="$work/tinyllama"
[ -f "$tl/model.safetensors" ] ||
    "$B/claq" synth --shape tinyllama-1.1b --out "$tl" --tokenizer "$S/models/tokenizer.model" \
        >/dev/null
for b in 2.1 3 4; do
    if [ -n "$only" ] && [ "$only" != "$b" ]; then continue; fi
    [ -f "$work/tl-$b.claq" ] ||
        "$B/claq" synth --pack --model "$tl" --bits "$b" --out "$work/tl-$b.claq" >/dev/null 2>&1
done
# vocab 32000 x dim 2048, FP16: the embedding table, gathered (one row a token), not streamed
emb=$((32000 * 2048 * 2))
# ~512 tokens of real text (the Llama-2 tokenizer reads this wikitext at ~3.6 bytes a token)
prompt="$(head -c 1850 "$S/data/wikitext-2-raw/wiki.test.raw" | tr -s ' \n' ' ')"

bf16=0
grep -q avx512_bf16 /proc/cpuinfo && bf16=1
printf "| model | threads | weight MB/token | decode tok/s | GB/s | %% of 2 MiB ceiling | prefill tokens | prefill tok/s | prefill bf16 tok/s | peak RSS MiB |\n"
printf "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
cmp_rows=""
max_of() { awk -v a="$1" -v b="$2" 'BEGIN { print (a + 0 > b + 0 ? a : b) }'; }
decode_of() {   # binary model threads -> "tok/s rss_mib"
    "$1" generate --model "$2" --prompt "Once upon a time" --max-tokens 64 --temperature 0 \
        --threads "$3" 2>&1 >/dev/null | grep "generated:" |
        sed -n 's/.*generated: [0-9]* tokens in [0-9.]* s (\([0-9.]*\) tok\/s).*peak RSS \([0-9.]*\) MiB.*/\1 \2/p'
}
prefill_of() {   # binary model threads [extra flags] -> "tokens tok/s"
    "$1" generate --model "$2" --prompt "$prompt" --max-tokens 1 --temperature 0 --threads "$3" \
        "${@:4}" 2>&1 >/dev/null | grep "prompt:" |
        sed -n 's/.*prompt: \([0-9]*\) tokens in [0-9.]* s (\([0-9.]*\) tok\/s).*/\1 \2/p'
}
row() {   # label model bytes_per_token; best of $reps runs each (ours and the baseline alternate)
    local label=$1 model=$2 bytes=$3 t r d s n p bp bd dec pre npre rss bpre bdec gbs ceil pct hp hpre
    for t in 1 2; do
        dec=0 pre=0 bpre=0 bdec=0 rss=0 npre=0 hpre=""
        for r in $(seq "$reps"); do
            read -r d s <<<"$(decode_of "$B/claq" "$model" "$t")"
            dec=$(max_of "$dec" "$d") rss=$(max_of "$rss" "$s")
            read -r n p <<<"$(prefill_of "$B/claq" "$model" "$t")"
            pre=$(max_of "$pre" "$p") npre=$n
            if [ "$bf16" = 1 ] && [ "$label" != FP16 ]; then
                read -r _ hp <<<"$(prefill_of "$B/claq" "$model" "$t" --prefill-precision bf16)"
                hpre=$(max_of "${hpre:-0}" "$hp")
            fi
            if [ -n "$base" ]; then
                read -r bd _ <<<"$(decode_of "$base" "$model" "$t")"
                bdec=$(max_of "$bdec" "$bd")
                read -r _ bp <<<"$(prefill_of "$base" "$model" "$t")"
                bpre=$(max_of "$bpre" "$bp")
            fi
        done
        if [ -n "$base" ]; then
            cmp_rows="$cmp_rows| $label | $t | $bdec | $dec | $(awk -v a="$dec" -v b="$bdec" \
                'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }') | $npre | $bpre | $pre | $(awk -v a="$pre" \
                -v b="$bpre" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }') | ${hpre} | $(awk \
                -v a="${hpre:-0}" -v b="$bpre" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b }') |
"
        fi
        ceil=$([ "$t" = 1 ] && echo "$hp1" || echo "$hp2")
        gbs=$(awk -v b="$bytes" -v r="$dec" 'BEGIN { printf "%.1f", b * r / 1e9 }')
        pct=$(awk -v g="$gbs" -v c="$ceil" 'BEGIN { printf "%.0f", (c > 0 ? 100 * g / c : 0) }')
        printf "| %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %s |\n" "$label" "$t" \
            "$(awk -v b="$bytes" 'BEGIN { print b / 1e6 }')" "$dec" "$gbs" "$pct" "$npre" "$pre" \
            "$hpre" "$rss"
    done
}
fp=$(stat -c %s "$tl/model.safetensors")
if [ -z "$only" ] || [ "$only" = FP16 ]; then row "FP16" "$tl" $((fp - emb)); fi
for b in 2.1 3 4; do
    if [ -n "$only" ] && [ "$only" != "$b" ]; then continue; fi
    f="$work/tl-$b.claq"
    tokb=$("$B/claq" inspect "$f" | sed -n 's/^file: [0-9]* bytes (\([0-9]*\) of them tokenizer).*/\1/p')
    row "CLAQ $b-bit" "$f" $(($(stat -c %s "$f") - ${tokb:-0} - emb))
done
echo
if [ -n "$base" ]; then
    echo "Decode and prefill against the baseline binary $base, same prompts and model, run right after ours:"
    echo
    printf "| model | threads | baseline decode tok/s | this build decode tok/s | decode ratio | prompt tokens | baseline prefill tok/s | this build prefill tok/s | prefill ratio | this build bf16 tok/s | bf16 ratio |\n"
    printf "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    printf "%s" "$cmp_rows"
    echo
fi
echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
