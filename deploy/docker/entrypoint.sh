#!/bin/sh
# entrypoint.sh — the claq-server image's entrypoint: picks the model, then execs claq-server (so
# SIGTERM from `docker stop` / Kubernetes reaches the server itself, which drains). Configuration
# is claq-server's own environment (CLAQ_PORT, CLAQ_API_KEY, ...: `claq-server --help`).
# CLAQ_MODEL set: used as is. Unset: the single entry under /models (a directory or file mounted
# there), so `-v /data/tinystories-656k:/models/tinystories-656k:ro` serves it under the id
# "tinystories-656k" (the server's default id is the model's base name).
set -eu
if [ -z "${CLAQ_MODEL:-}" ]; then
    n=0
    for m in /models/*; do
        [ -e "$m" ] || continue
        n=$((n + 1))
        CLAQ_MODEL="$m"
    done
    if [ "$n" -ne 1 ]; then
        echo "claq-entrypoint: mount exactly one model under /models (found $n) or set CLAQ_MODEL" >&2
        exit 64
    fi
    export CLAQ_MODEL
fi
exec /usr/local/bin/claq-server "$@"
