#!/usr/bin/env bash
# test_cli_client.sh — claq-client (clients/) against a live claq-server serving
# tinystories-656k with an API key: chat and complete, streamed and not (greedy, so the streamed
# deltas must equal the whole response), usage and finish_reason consistent with max_tokens,
# the model list, a message from stdin, the interactive chat on a pty (history kept across
# turns), and the errors a user meets (unknown model -> 404 with the server's message, missing
# key -> 401, nothing listening -> connection refused), each with its documented exit status.
# Ends with SIGTERM and expects a clean drain (exit 0).
set -uo pipefail
src="${CLAQ_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
bin="${CLAQ_BIN:-$src/build}"
shared="${CLAQ_SHARED:-$src/../shared}"
model="$shared/models/tinystories-656k"
client="$bin/claq-client"
for f in "$bin/claq-server" "$client"; do
    if [ ! -x "$f" ]; then echo "SKIP: $f is not built"; exit 77; fi
done
if [ ! -d "$model" ]; then echo "FAIL: $model missing (CLAQ_SHARED)"; exit 1; fi
. "$src/clients/bench/server_ctl.sh"

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
tmp="$(mktemp -d)"
trap 'claq_server_stop >/dev/null 2>&1; rm -rf "$tmp" "$CLAQ_SERVER_LOG"' EXIT

key="test-key-$$"
claq_server_start "$bin/claq-server" "$model" --api-key "$key" ||
    { echo "FAIL: server start"; exit 1; }
url="$CLAQ_SERVER_URL"
echo "server at $url"
export CLAQ_API_KEY="$key"

# run NAME ARGS... : runs the client, keeps stdout/stderr/status in $tmp/NAME.{out,err,rc}
run() {
    local name="$1"; shift
    "$client" --url "$url" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
    echo $? >"$tmp/$name.rc"
}
rc_of() { cat "$tmp/$1.rc"; }
stat_of() { grep -o "$2=[^ ]*" "$tmp/$1.err" | head -n1 | cut -d= -f2; }

# check_answer NAME MAX: exit 0, some text, usage and finish_reason consistent with MAX tokens.
check_answer() {
    local name="$1" max="$2"
    if [ "$(rc_of "$name")" != 0 ]; then
        fail "$name: exit $(rc_of "$name"): $(cat "$tmp/$name.err")"
        return
    fi
    [ -s "$tmp/$name.out" ] || fail "$name: no text printed"
    local pt ct tt fr
    pt="$(stat_of "$name" prompt_tokens)"; ct="$(stat_of "$name" completion_tokens)"
    tt="$(stat_of "$name" total_tokens)"; fr="$(stat_of "$name" finish_reason)"
    echo "$name: prompt_tokens=$pt completion_tokens=$ct finish_reason=$fr" \
         "text=$(head -c 80 "$tmp/$name.out" | tr '\n' ' ')"
    [[ "$pt" =~ ^[0-9]+$ ]] && [ "$pt" -gt 0 ] || fail "$name: prompt_tokens '$pt'"
    [[ "$ct" =~ ^[0-9]+$ ]] && [ "$ct" -ge 1 ] && [ "$ct" -le "$max" ] ||
        fail "$name: completion_tokens '$ct' not in 1..$max"
    [ "$tt" = "$((pt + ct))" ] || fail "$name: total_tokens $tt != $pt + $ct"
    case "$fr" in
    length) [ "$ct" = "$max" ] || fail "$name: finish_reason length with $ct < $max tokens" ;;
    stop) [ "$ct" -le "$max" ] || fail "$name: finish_reason stop with $ct tokens" ;;
    *) fail "$name: finish_reason '$fr'" ;;
    esac
}

# 1. chat, streamed and not; greedy, so both must give the same text.
run chat_stream chat "Tell me a story about a cat." --max-tokens 24 --temperature 0 --stats
run chat_whole chat "Tell me a story about a cat." --max-tokens 24 --temperature 0 --stats --no-stream
check_answer chat_stream 24
check_answer chat_whole 24
cmp -s "$tmp/chat_stream.out" "$tmp/chat_whole.out" ||
    fail "chat: streamed text differs from the whole response"
grep -q "ttft_ms=" "$tmp/chat_stream.err" || fail "chat_stream: no TTFT measured (nothing streamed?)"

# 2. complete, streamed and not, with a system-free prompt; the same equality.
run comp_stream complete "Once upon a time" --max-tokens 20 --temperature 0 -v
run comp_whole complete "Once upon a time" --max-tokens 20 --temperature 0 -v --no-stream
check_answer comp_stream 20
check_answer comp_whole 20
cmp -s "$tmp/comp_stream.out" "$tmp/comp_whole.out" ||
    fail "complete: streamed text differs from the whole response"

# 3. the prompt from stdin, and a system message.
echo "Once upon a time" | "$client" --url "$url" complete --max-tokens 20 --temperature 0 \
    >"$tmp/stdin.out" 2>"$tmp/stdin.err" || fail "complete from stdin: $(cat "$tmp/stdin.err")"
cmp -s "$tmp/stdin.out" "$tmp/comp_stream.out" || fail "complete from stdin gave another text"
run chat_sys chat "Hello" --system "You tell short stories." --max-tokens 8 --temperature 0 --stats
check_answer chat_sys 8

# 4. the model list names the served model (the directory's base name by default).
run models models
[ "$(rc_of models)" = 0 ] && grep -qx "tinystories-656k" "$tmp/models.out" ||
    fail "models: $(cat "$tmp/models.out" "$tmp/models.err")"

# 4b. the interactive chat on a terminal (util-linux `script` provides the pty): the second
# turn must carry the whole conversation, so its prompt is longer than the first turn's prompt
# and answer together.
if command -v script >/dev/null 2>&1; then
    printf 'Hello\nWhat did you see?\n/exit\n' |
        timeout 60 script -qec "'$client' --url '$url' chat --max-tokens 8 --temperature 0 --stats" \
            /dev/null >"$tmp/repl.out" 2>&1
    mapfile -t pts < <(grep -o 'prompt_tokens=[0-9]*' "$tmp/repl.out" | cut -d= -f2)
    mapfile -t cts < <(grep -o 'completion_tokens=[0-9]*' "$tmp/repl.out" | cut -d= -f2)
    if [ "${#pts[@]}" != 2 ] || [ "${#cts[@]}" != 2 ]; then
        fail "REPL: want 2 answered turns: $(tr -d '\r' <"$tmp/repl.out" | head -c 600)"
    elif [ "${pts[1]}" -le $((pts[0] + cts[0])) ]; then
        fail "REPL: turn 2 prompt_tokens ${pts[1]} <= turn 1 prompt+answer ${pts[0]}+${cts[0]}"
    else
        echo "REPL: turn 1 prompt_tokens=${pts[0]}, turn 2 prompt_tokens=${pts[1]} (history kept)"
    fi
else
    echo "note: no 'script' command; interactive chat not exercised"
fi

# 5. errors: unknown model (404 with the server's message), no key (401), bad usage, no server.
run badmodel --model no-such-model chat "hi" --max-tokens 4
[ "$(rc_of badmodel)" = 1 ] || fail "unknown model: exit $(rc_of badmodel), want 1"
grep -q "HTTP 404" "$tmp/badmodel.err" && grep -q "model_not_found" "$tmp/badmodel.err" ||
    fail "unknown model: stderr lacks 'HTTP 404 ... model_not_found': $(cat "$tmp/badmodel.err")"
echo "unknown model -> $(cat "$tmp/badmodel.err")"
CLAQ_API_KEY= OPENAI_API_KEY= "$client" --url "$url" chat "hi" --max-tokens 4 \
    >"$tmp/nokey.out" 2>"$tmp/nokey.err"
rc=$?
[ "$rc" = 1 ] && grep -q "HTTP 401" "$tmp/nokey.err" ||
    fail "no API key: exit $rc, stderr $(cat "$tmp/nokey.err")"
echo "no key -> $(cat "$tmp/nokey.err")"
run badopt chat "hi" --max-tokens -5
[ "$(rc_of badopt)" = 2 ] || fail "negative --max-tokens: exit $(rc_of badopt), want 2"
# a prompt that starts with '-' is an unknown option before --, and the prompt after it
run dashopt complete "-1 is a number" --max-tokens 3 --temperature 0
[ "$(rc_of dashopt)" = 2 ] && grep -q -- "goes after --" "$tmp/dashopt.err" ||
    fail "'-1 ...' before --: exit $(rc_of dashopt), $(cat "$tmp/dashopt.err")"
run dash --max-tokens 3 --temperature 0 --no-stream -v complete -- "-1 is a number"
[ "$(rc_of dash)" = 0 ] && grep -q "prompt_tokens=[1-9]" "$tmp/dash.err" ||
    fail "'-1 ...' after --: exit $(rc_of dash), $(cat "$tmp/dash.err")"

# 6. graceful stop, then the same client against a closed port: connection refused, exit 3.
claq_server_stop; rc=$?
[ "$rc" = 0 ] || fail "claq-server exit status after SIGTERM: $rc"
run refused chat "hi"
[ "$(rc_of refused)" = 3 ] && grep -q "Connection refused" "$tmp/refused.err" ||
    fail "no server: exit $(rc_of refused), stderr $(cat "$tmp/refused.err")"
echo "no server -> $(cat "$tmp/refused.err")"

if [ "$fails" -ne 0 ]; then
    echo "$fails check(s) failed"
    exit 1
fi
echo "ok: claq-client chat/complete/models, streamed and whole, and its error paths"
