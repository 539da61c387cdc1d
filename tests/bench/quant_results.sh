#!/usr/bin/env bash
# quant_results.sh — regenerates docs/results.md: perplexity, nominal and true bits per weight and
# quantization time of RTN / GPTQ / CLAQ (AP, OR, AP+OR) on the real models in $CLAQ_SHARED/models,
# plus per-layer quantization time and peak RSS on a synthetic LLaMA-7B-shaped layer. A benchmark
# that writes a document, not a test. The work is done by quant_results.py beside this file.
#
# Usage: nice -n 5 tests/bench/quant_results.sh [build-dir] [options]
#   build-dir         default build/ (relative to the repository root)
#   --work DIR        keep per-row results (JSON) and packed files here; a rerun with the same DIR
#                     reuses finished rows (default: a fresh temporary directory, removed at the end)
#   --only NAMES      comma-separated subset: stories260K,tinystories-656k,small-lm-5m,llama7b
#   --render-only     rebuild docs/results.md from the JSON in --work without running anything
#   --out FILE        default docs/results.md
# Environment: CLAQ_SHARED (default ../shared next to the repository root).
# Takes ~30-45 minutes on 2 cores; the 7B-layer part needs ~2 GB of disk under /tmp, deleted after.
set -euo pipefail
exec /usr/bin/python3 "$(dirname "$0")/quant_results.py" "$@"
