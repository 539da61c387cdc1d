#!/usr/bin/env bash
# run_all.sh — the whole test suite, as CI and the README run it: a Release build (CUDA compiled
# when nvcc is found; its tests skip without a GPU) and an ASan+UBSan build, each running every
# ctest test against the real models in ../shared. Exits non-zero if anything fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
JOBS="${CLAQ_JOBS:-2}"
SHARED="${CLAQ_SHARED:-$(pwd)/../shared}"
if [ ! -d "$SHARED/models" ]; then
    echo "run_all.sh: the shared models folder is missing at $SHARED (set CLAQ_SHARED)" >&2
    exit 1
fi
start=$(date +%s)

echo "== Release build =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCLAQ_SHARED="$SHARED" >/dev/null
cmake --build build -j"$JOBS"
(cd build && ctest --output-on-failure -j"$JOBS" -LE asan)   # label asan: the ASan pass only

echo "== ASan + UBSan build =="
# The CUDA emulator's tests ran in the Release pass; under ASan they would take minutes more.
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCLAQ_SANITIZE=ON -DCLAQ_CUDA=OFF -DCLAQ_CUDA_EMU=OFF \
      -DCLAQ_SHARED="$SHARED" >/dev/null
cmake --build build-asan -j"$JOBS"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
(cd build-asan && ctest --output-on-failure -j"$JOBS" -LE slow)

echo "whole suite: $(( $(date +%s) - start )) s"
