#!/usr/bin/env bash
# test_openai_sdk.sh — the OpenAI JavaScript SDK (npm openai@4, pinned in package.json and
# package-lock.json; Node 20) against a live claq-server serving tinystories-656k with an API
# key: openai_sdk_check.mjs runs models, chat and completions, whole and streamed, and asserts
# well-formed objects. Skips (77) only when the SDK is not installed AND npm cannot install it
# (no network); a missing node is a failure, since deploy/install-deps.sh installs it.
set -uo pipefail
src="${CLAQ_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
bin="${CLAQ_BIN:-$src/build}"
shared="${CLAQ_SHARED:-$src/../shared}"
model="$shared/models/tinystories-656k"
here="$src/tests/server"
if [ ! -x "$bin/claq-server" ]; then echo "SKIP: $bin/claq-server is not built"; exit 77; fi
if ! command -v node >/dev/null 2>&1; then
    echo "FAIL: node is not installed (deploy/install-deps.sh installs it)"; exit 1
fi
if [ ! -d "$model" ]; then echo "FAIL: $model missing (CLAQ_SHARED)"; exit 1; fi
if ! bash "$src/tests/npm_ensure.sh" "$here" openai; then
    echo "SKIP: the openai SDK is not installed and npm could not install it (no network?)"
    exit 77
fi
sdk_version="$(node -p "require('$here/node_modules/openai/package.json').version")"
echo "openai SDK $sdk_version, node $(node --version)"
. "$src/clients/bench/server_ctl.sh"
trap 'claq_server_stop >/dev/null 2>&1; rm -f "$CLAQ_SERVER_LOG"' EXIT

key="sdk-test-key-$$"
claq_server_start "$bin/claq-server" "$model" --api-key "$key" || { echo "FAIL: server start"; exit 1; }
echo "server at $CLAQ_SERVER_URL"
CLAQ_SERVER_URL="$CLAQ_SERVER_URL" CLAQ_API_KEY="$key" timeout 120 node "$here/openai_sdk_check.mjs"
rc=$?
claq_server_stop; stop_rc=$?
if [ "$stop_rc" != 0 ]; then echo "FAIL: claq-server exit status after SIGTERM: $stop_rc"; rc=1; fi
if [ "$rc" != 0 ]; then claq_server_log_tail 30; exit 1; fi
echo "ok: the OpenAI JS SDK gets well-formed chat/completion objects, whole and streamed"
