#!/usr/bin/env bash
# run.sh [SECONDS] — the fuzz pass: builds the libFuzzer targets (Debian's clang, ASan + UBSan,
# CMake option CLAQ_FUZZ) in build-fuzz/ and runs each for SECONDS / 4 (default 60 s in all),
# starting from the committed seeds in tests/fuzz/corpus/<target>/ plus seeds made here from
# ../shared; new inputs go to build-fuzz/corpus/<target>/, never into the repository. Any crash,
# leak, sanitizer report or timeout fails the run and leaves the input in build-fuzz/ (commit it
# under corpus/<target>/ as a regression input once fixed). Prints executions and coverage.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
SECS="${1:-60}"
SHARED="${CLAQ_SHARED:-$(pwd)/../shared}"
export CLAQ_SHARED="$SHARED"
B=build-fuzz
targets=(fuzz_tokenize fuzz_tokenizer_load fuzz_safetensors fuzz_model_file fuzz_http fuzz_jinja)
command -v clang >/dev/null || { echo "run.sh: clang not found (deploy/install-deps.sh installs it)"; exit 77; }
CC=clang cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Debug -DCLAQ_FUZZ=ON -DCLAQ_CUDA=OFF \
    -DCLAQ_CUDA_EMU=OFF -DCLAQ_BUILD_SERVER=ON -DCLAQ_SHARED="$SHARED" >/dev/null
cmake --build "$B" -j"${CLAQ_JOBS:-2}" --target "${targets[@]}" >/dev/null

# seeds made from ../shared: a slice of real text for the tokenizers, the real small tokenizer
# files for the loaders (inputs are capped at -max_len, so only their heads are mutated)
work="$B/corpus"
mkdir -p "$work"
for t in "${targets[@]}"; do mkdir -p "$work/$t"; done
head -c 2000 "$SHARED/data/tinystories/tinystories-train-head.txt" | split -b 200 - "$work/fuzz_tokenize/ts-" || true
{ printf '\x00'; head -c 4000 "$SHARED/models/tinystories-656k/tokenizer.json"; } > "$work/fuzz_tokenizer_load/json-head"
{ printf '\x01'; head -c 4000 "$SHARED/models/tokenizer.model"; } > "$work/fuzz_tokenizer_load/model-head"
{ printf '\x02'; head -c 4000 "$SHARED/models/tok512.bin"; } > "$work/fuzz_tokenizer_load/bin-head"
head -c 4000 "$SHARED/models/stories260K.bin" > "$work/fuzz_model_file/llama2c-head"

per=$(( SECS / ${#targets[@]} )); [ "$per" -ge 1 ] || per=1
rc=0
for t in "${targets[@]}"; do
    seeds="tests/fuzz/corpus/${t#fuzz_}"
    [ -d "$seeds" ] || seeds=""
    log="$B/$t.log"
    extra=()   # the in-process server logs every request to stderr: keep it out of the log
    [ "$t" = fuzz_http ] && extra=(-close_fd_mask=2)
    set +e
    ASAN_OPTIONS="detect_leaks=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
        "$B/$t" "${extra[@]}" -max_total_time="$per" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$B/$t-" "$work/$t" $seeds >"$log" 2>&1
    r=$?
    set -e
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 || true)
    printf '%-22s %3d s  %9s executions  %s  exit %d\n' "$t" "$per" "$execs" "$cov" "$r"
    if [ "$r" -ne 0 ]; then
        rc=1
        grep -E 'ERROR|SUMMARY|runtime error|Test unit written|fuzz_' "$log" | head -8 || true
    fi
done
exit $rc
