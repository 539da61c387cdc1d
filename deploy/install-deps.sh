#!/usr/bin/env bash
# install-deps.sh — installs every build and test dependency of claq from Debian packages.
# Idempotent: safe to run again; it only adds what is missing. Needs root (or sudo).
# llhttp is not in bookworm: it comes from trixie behind an apt pin of priority 100, so that
# only the packages named here are taken from trixie and nothing else is upgraded.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

# 1. trixie source, pinned low (only explicitly requested packages come from it).
if ! grep -rqs "trixie" /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null; then
    echo "deb http://deb.debian.org/debian trixie main" | $SUDO tee /etc/apt/sources.list.d/claq-trixie.list >/dev/null
fi
$SUDO tee /etc/apt/preferences.d/claq-trixie-pin >/dev/null <<'PIN'
Package: *
Pin: release n=trixie
Pin-Priority: 100
PIN

$SUDO apt-get update -qq

# 2. bookworm packages: toolchain, libraries, reference-test tools, load generator.
$SUDO apt-get install -y -qq --no-install-recommends \
    build-essential cmake pkg-config git ca-certificates curl clang libclang-rt-14-dev \
    libuv1-dev libcjson-dev libopenblas-dev liblapacke-dev \
    python3 python3-numpy python3-sentencepiece python3-sklearn python3-jinja2 \
    wrk nginx debootstrap >/dev/null

# Docker for tests/deploy (Debian's engine; a machine that already has a Docker engine, e.g. a
# vendor docker-ce whose packages conflict with docker.io, keeps it). Installing does not start it.
if ! command -v dockerd >/dev/null 2>&1; then
    $SUDO apt-get install -y -qq --no-install-recommends docker.io >/dev/null
fi
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
    $SUDO apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
fi

# Node.js + npm for the OpenAI SDK test: a machine may already carry a vendor build of nodejs that
# bundles npm (and conflicts with Debian's npm package), so only install what is missing.
if ! command -v node >/dev/null 2>&1; then
    $SUDO apt-get install -y -qq --no-install-recommends nodejs >/dev/null
fi
if ! command -v npm >/dev/null 2>&1; then
    $SUDO apt-get install -y -qq --no-install-recommends npm >/dev/null
fi

# 3. llhttp from trixie (its runtime library comes with it).
if ! dpkg -s libllhttp-dev >/dev/null 2>&1; then
    $SUDO apt-get install -y -qq --no-install-recommends -t trixie libllhttp-dev >/dev/null
fi

# 4. The OpenAI JavaScript SDK for the client-compatibility test (openai@4 runs on Node 20).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ ! -d "$here/tests/server/node_modules/openai" ] && [ -f "$here/tests/server/package.json" ]; then
    (cd "$here/tests/server" && npm install --no-audit --no-fund --silent)
fi
# 5. Reference implementations for the engine's tests (HF tokenizers.js, LLaMA-3's vocabulary,
#    @huggingface/jinja), pinned by tests/engine/package-lock.json; fixtures are built from them at
#    test time, nothing is committed.
if [ -f "$here/tests/engine/package.json" ]; then
    (cd "$here/tests/engine" && npm ci --no-audit --no-fund --silent)
fi

# 6. Offline Kubernetes manifest validation (kubernetes-models + @kubernetes-models/validate),
#    pinned by tests/deploy/package-lock.json.
if [ -f "$here/tests/deploy/package.json" ]; then
    (cd "$here/tests/deploy" && npm ci --no-audit --no-fund --silent)
fi

echo "claq dependencies installed"
