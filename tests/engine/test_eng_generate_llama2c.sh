#!/usr/bin/env bash
# test_eng_generate_llama2c — `claq generate` on llama2.c's stories260K + tok512, greedy, prompt
# "Zoo", 57 new tokens (llama2.c's 60 steps = BOS + 3 prompt pieces + 56 generated... its loop
# counts positions), must print exactly llama2.c's documented text (leading whitespace aside), and
# the same text with 1 and 2 threads and with every kernel ISA the machine has.
set -u
CLAQ="${CLAQ_BIN:-build}/claq"
M="${CLAQ_SHARED:-../shared}/models"
want="Zoo was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but she didn't want to play with"
fail=0
for isa in scalar avx2 avx512; do
  for th in 1 2; do
    got=$(CLAQ_ISA=$isa "$CLAQ" generate --model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" \
          --prompt "Zoo" --max-tokens 57 --temperature 0 --threads $th 2>/tmp/claq-gen-err.$$)
    rc=$?
    got="$(echo "$got" | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//')"
    if [ $rc -ne 0 ] || [ "$got" != "$want" ]; then
      echo "FAIL isa=$isa threads=$th rc=$rc"; echo "  got:  [$got]"; echo "  want: [$want]"
      cat /tmp/claq-gen-err.$$; fail=1
    else
      echo "ok   isa=$isa threads=$th: $(tail -1 /tmp/claq-gen-err.$$)"
    fi
  done
done
rm -f /tmp/claq-gen-err.$$
# the timings line goes to stderr, never stdout
out=$("$CLAQ" generate --model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --prompt "Zoo" \
      --max-tokens 5 --temperature 0 2>/dev/null)
case "$out" in *tok/s*) echo "FAIL: timings on stdout"; fail=1;; esac
# a llama2.c checkpoint without a tokenizer is a clear error, not a crash
"$CLAQ" generate --model "$M/stories260K.bin" --prompt "Zoo" --max-tokens 5 >/dev/null 2>/tmp/claq-e.$$
rc=$?
if [ $rc -eq 0 ] || [ $rc -gt 128 ] || ! grep -q -- "--tokenizer" /tmp/claq-e.$$; then
  echo "FAIL: missing tokenizer: rc=$rc $(cat /tmp/claq-e.$$)"; fail=1
fi
rm -f /tmp/claq-e.$$
exit $fail
