#!/usr/bin/env bash
# test_eng_generate_llama2c — `claq generate` on llama2.c's stories260K + tok512, greedy, prompt
# "Zoo", 57 new tokens (llama2.c's 60 steps = BOS + 3 prompt pieces + 56 generated... its loop
# counts positions), must print exactly llama2.c's documented text (leading whitespace aside), and
# the same text with 1 and 2 threads, with every kernel ISA the machine has, and with --profile
# (whose per-kind call counts must fit the model); a missing tokenizer or another model's
# tokenizer.bin is a clear error, and so is a standard output that cannot be written.
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
# --profile: same text; a decode line whose counts fit the model (each step runs one attention
# per layer and 7 matmuls per layer plus the head; no CLAQ matrix in this FP model) and whose
# kernel time does not exceed the wall time
got=$("$CLAQ" generate --model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --prompt "Zoo" \
      --max-tokens 57 --temperature 0 --profile 2>/tmp/claq-prof.$$ |
      sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//')
[ "$got" = "$want" ] || { echo "FAIL: --profile changed the text: [$got]"; fail=1; }
line=$(grep "^profile, decode" /tmp/claq-prof.$$)
steps=$(echo "$line" | sed -n 's/^profile, decode (\([0-9]*\) steps.*/\1/p')
calls() { echo "$line" | sed -n "s/.* $1 [0-9.]* ([0-9.]* %, \([0-9]*\) calls).*/\1/p"; }
claq=$(calls "CLAQ matmul"); dense=$(calls "dense matmul"); attn=$(calls "attention")
outside=$(echo "$line" | sed -n 's/.*outside kernel ops \(-\{0,1\}[0-9.]*\) .*/\1/p')
if [ -z "$steps" ] || [ "$steps" -lt 1 ] || [ "$claq" != 0 ] || [ -z "$attn" ] ||
   [ $((attn % steps)) -ne 0 ] || [ "$dense" != $((steps * (7 * (attn / steps) + 1))) ] ||
   awk -v o="$outside" 'BEGIN { exit !(o < 0) }'; then
  echo "FAIL: --profile decode line: [$line] (steps=$steps claq=$claq dense=$dense attn=$attn)"
  fail=1
else
  echo "ok   --profile: $line"
fi
grep -q "^profile, prompt (4 tokens" /tmp/claq-prof.$$ ||
  { echo "FAIL: no prompt profile line: $(cat /tmp/claq-prof.$$)"; fail=1; }
rm -f /tmp/claq-prof.$$
# refused WHAT WORD OUT ARGS...: `claq generate ARGS` with stdout to OUT must exit 1 with WORD in
# its message (a clear error, not a crash)
refused() {
  local what="$1" word="$2" out="$3"; shift 3
  "$CLAQ" generate "$@" --prompt "Zoo" --max-tokens 5 >"$out" 2>/tmp/claq-e.$$
  local rc=$?
  if [ $rc -ne 1 ] || ! grep -q -- "$word" /tmp/claq-e.$$; then
    echo "FAIL: $what: rc=$rc $(cat /tmp/claq-e.$$)"; fail=1
  else
    echo "ok   $what: exit 1"
  fi
  rm -f /tmp/claq-e.$$
}
refused "a llama2.c checkpoint without a tokenizer" "--tokenizer" /dev/null \
  --model "$M/stories260K.bin"
# llama2.c's tokenizer.bin does not count its pieces: reading Llama-2's first 512 of 32000 for
# this 512-token model would run garbage
refused "another model's tokenizer.bin" "another model" /dev/null \
  --model "$M/stories260K.bin" --tokenizer "$M/tokenizer.bin"
# an empty --stop is a usage error (exit 2): it would end before the first token
"$CLAQ" generate --model "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --prompt "Zoo" \
  --stop '' >/dev/null 2>/tmp/claq-e.$$
rc=$?
if [ $rc -ne 2 ] || ! grep -q -- "--stop" /tmp/claq-e.$$; then
  echo "FAIL: empty --stop: rc=$rc $(cat /tmp/claq-e.$$)"; fail=1
else
  echo "ok   empty --stop: exit 2"
fi
rm -f /tmp/claq-e.$$
# output that cannot be written (a full disk) is a failure, not exit 0
if [ -w /dev/full ]; then
  refused "stdout on a full device" "writing standard output" /dev/full \
    --model "$M/stories260K.bin" --tokenizer "$M/tok512.bin"
fi
exit $fail
