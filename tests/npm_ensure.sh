#!/usr/bin/env bash
# npm_ensure.sh DIR PACKAGE... — makes sure DIR/node_modules holds each PACKAGE (its
# package.json), running `npm ci` in DIR (package-lock.json pins the versions) when
# deploy/install-deps.sh has not. Tests that share DIR may start together under ctest -j, and
# npm ci empties node_modules before it fills it: so one install at a time, under a lock on
# DIR/package-lock.json, and none once another test has installed them. Exit 0 when every
# package is there afterwards, 1 when npm could not install them (no network).
set -uo pipefail
dir="$1"; shift
have() {
    for p in "$@"; do [ -f "$dir/node_modules/$p/package.json" ] || return 1; done
}
have "$@" && exit 0
echo "$dir/node_modules: $* missing: trying npm ci (package-lock.json pins the versions)"
exec 9<"$dir/package-lock.json" && flock 9 || exit 1
have "$@" || (cd "$dir" && timeout 300 npm ci --no-audit --no-fund --silent)
have "$@"
