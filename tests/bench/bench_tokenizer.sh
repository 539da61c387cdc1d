#!/usr/bin/env bash
# bench_tokenizer.sh — tokenizer speed (issue 12 asks >= 5 MB/s of English on one core for the
# 128k LLaMA-3 vocabulary): builds LLaMA-3's tokenizer.json from llama3-tokenizer-js (as the
# reference test does; tests/engine/node_modules from deploy/install-deps.sh) and runs
# build/bench_tokenizer on real English (wikitext-2 test, ~1.3 MB) with it and with the
# SentencePiece-style tokenizers in ../shared. Prints figures; not a test.
# Usage: tests/bench/bench_tokenizer.sh [build-dir]
set -euo pipefail
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
B="${1:-$src/build}"
S="${CLAQ_SHARED:-$src/../shared}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$src/tests/engine" && node tok_bytelevel_ref.mjs fixture "$tmp/llama3" llama3)
"$B/bench_tokenizer" "$S/data/wikitext-2-raw/wiki.test.raw" "$tmp/llama3/tokenizer.json" \
    "$S/models/tokenizer.model" "$S/models/tinystories-656k/tokenizer.json" --reps 3
