# openai_sdk_install.sh — sourced by test_openai_sdk.sh and test_openai_structured.sh:
# openai_sdk_ensure DIR makes sure DIR/node_modules holds the pinned openai SDK, running npm ci
# (the lock file pins the version) when deploy/install-deps.sh has not. The two tests share DIR
# and ctest -j may start them together: npm ci empties node_modules before it fills it, so one
# install at a time under a lock on the lock file, and none once the other test has installed.
# Returns non-zero when npm could not install it (no network).
openai_sdk_ensure() {
    local dir="$1"
    [ -f "$dir/node_modules/openai/package.json" ] && return 0
    echo "node_modules/openai missing: trying npm ci (the lock file pins the version)"
    (cd "$dir" && flock package-lock.json sh -c \
        'test -f node_modules/openai/package.json ||
         timeout 300 npm ci --no-audit --no-fund --silent') &&
        [ -f "$dir/node_modules/openai/package.json" ]
}
