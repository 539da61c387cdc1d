# server_ctl.sh — sourced (not run) by clients/bench/run_server_bench.sh and the server
# integration tests: start claq-server on an ephemeral loopback port, wait until it is ready,
# stop it with SIGTERM (drain) and report its exit status. Bash only; one server per shell.
# Does not build anything and never touches a server it did not start.
#
#   claq_server_start BIN MODEL [extra claq-server flags...]   -> 0 when ready, else 1
#       sets CLAQ_SERVER_PID, CLAQ_SERVER_URL (http://127.0.0.1:PORT), CLAQ_SERVER_LOG
#   claq_server_stop                                           -> the server's exit status
#   claq_server_log_tail [N]                                   -> last N log lines to stderr

CLAQ_SERVER_PID=""
CLAQ_SERVER_URL=""
CLAQ_SERVER_LOG=""

claq_server_log_tail() {
    local n="${1:-40}"
    if [ -n "$CLAQ_SERVER_LOG" ] && [ -f "$CLAQ_SERVER_LOG" ]; then
        echo "---- last $n lines of the claq-server log ($CLAQ_SERVER_LOG) ----" >&2
        tail -n "$n" "$CLAQ_SERVER_LOG" >&2
        echo "----" >&2
    fi
}

# Waits (bounded) until the log names the listening address and GET /health answers 200.
claq_server_start() {
    local bin="$1" model="$2"
    shift 2
    CLAQ_SERVER_LOG="$(mktemp "${TMPDIR:-/tmp}/claq-server.XXXXXX.log")"
    "$bin" --model "$model" --host 127.0.0.1 --port 0 "$@" >"$CLAQ_SERVER_LOG" 2>&1 &
    CLAQ_SERVER_PID=$!
    local i addr=""
    for i in $(seq 1 300); do                     # up to 60 s for the model to load
        if ! kill -0 "$CLAQ_SERVER_PID" 2>/dev/null; then
            echo "claq-server exited during start-up" >&2
            claq_server_log_tail
            CLAQ_SERVER_PID=""
            return 1
        fi
        addr="$(grep -oE 'listening on http://(\[[0-9a-fA-F:]+\]|[0-9A-Za-z.-]+):[0-9]+' \
                "$CLAQ_SERVER_LOG" | head -n1 | sed 's/^listening on //' || true)"
        if [ -n "$addr" ]; then
            break
        fi
        sleep 0.2
    done
    if [ -z "$addr" ]; then
        echo "claq-server did not log 'listening on http://HOST:PORT' within 60 s" >&2
        claq_server_log_tail
        claq_server_stop >/dev/null 2>&1
        return 1
    fi
    CLAQ_SERVER_URL="$addr"
    local code=""
    for i in $(seq 1 300); do                     # /health is 503 while the model loads
        code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$CLAQ_SERVER_URL/health" || true)"
        if [ "$code" = "200" ]; then
            return 0
        fi
        if ! kill -0 "$CLAQ_SERVER_PID" 2>/dev/null; then
            break
        fi
        sleep 0.2
    done
    echo "claq-server at $CLAQ_SERVER_URL never answered /health with 200 (last: $code)" >&2
    claq_server_log_tail
    claq_server_stop >/dev/null 2>&1
    return 1
}

# SIGTERM, then up to 30 s for the drain; SIGKILL after that (reported as failure).
claq_server_stop() {
    local pid="$CLAQ_SERVER_PID" rc=0 i
    if [ -z "$pid" ]; then
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 150); do
        if ! kill -0 "$pid" 2>/dev/null; then
            break
        fi
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "claq-server (pid $pid) did not exit within 30 s of SIGTERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null
        CLAQ_SERVER_PID=""
        return 124
    fi
    wait "$pid" 2>/dev/null
    rc=$?
    CLAQ_SERVER_PID=""
    return "$rc"
}
