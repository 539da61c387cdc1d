#!/usr/bin/env bash
# test_fuzz.sh — the suite's fuzz pass: tests/fuzz/run.sh for 60 s in all (15 s per target, after
# a clang build in build-fuzz/), failing on any crash, sanitizer report, leak or timeout.
# Longer campaigns: bash tests/fuzz/run.sh SECONDS. Skips (77) without clang.
# ctest-label: slow
# ctest-cost: 130 (about 130 s in its longer pass; ctest -j starts the costliest first)
exec bash "$(dirname "${BASH_SOURCE[0]}")/run.sh" 60
