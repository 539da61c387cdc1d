#!/bin/bash
# healthcheck.sh — the image's HEALTHCHECK: GET /health on the server's own port with bash's
# /dev/tcp (no curl in the image). Exit 0 when the answer is 200 (model loaded, not draining).
# "Host: localhost" passes the server's loopback-only check when it runs without an API key.
host="${CLAQ_HOST:-127.0.0.1}"
case "$host" in 0.0.0.0 | "" | :: | localhost) host=127.0.0.1 ;; esac
exec 3<>"/dev/tcp/$host/${CLAQ_PORT:-8080}" || exit 1
printf 'GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
IFS=' ' read -r -t 3 _ status _ <&3 || exit 1
[ "$status" = 200 ]
