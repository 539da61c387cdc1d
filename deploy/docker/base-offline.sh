#!/usr/bin/env bash
# base-offline.sh — makes the Debian bookworm base image that deploy/Dockerfile builds on, when no
# container registry is reachable (air-gapped and corporate networks): debootstrap (minbase) from
# the Debian package mirror, trimmed like debian:bookworm-slim, then `docker import`. Needs root,
# debootstrap and a running Docker engine; touches nothing but a temporary folder and the image tag.
#
#   bash deploy/docker/base-offline.sh [TAG]       default TAG: claq/debian:bookworm-slim
#   docker build --network host --build-arg BASE=claq/debian:bookworm-slim -f deploy/Dockerfile -t claq-server .
#
# The mirror is $CLAQ_DEBIAN_MIRROR, else the first bookworm source of this machine's apt
# configuration, else http://deb.debian.org/debian. The image's own apt sources point at the same
# mirror (bookworm, bookworm-updates, and bookworm-security from $CLAQ_DEBIAN_SECURITY_MIRROR or the
# machine's security source). Reruns reuse the tag unless CLAQ_BASE_REBUILD=1.
set -euo pipefail

tag="${1:-claq/debian:bookworm-slim}"
if [ "${CLAQ_BASE_REBUILD:-0}" != 1 ] && docker image inspect "$tag" >/dev/null 2>&1; then
    echo "base-offline.sh: $tag already exists (CLAQ_BASE_REBUILD=1 remakes it)"
    exit 0
fi
for tool in debootstrap docker; do
    command -v "$tool" >/dev/null || { echo "base-offline.sh: $tool is missing (deploy/install-deps.sh installs it)" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "base-offline.sh: debootstrap needs root" >&2; exit 1; }

# The first URI that serves the given suite in this machine's one-line or deb822 apt sources.
apt_uri_for() {
    local suite="$1"
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        awk -v s="$suite" '$1 == "deb" { for (i = 2; i < NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($(i+1) == s) { print $i; exit } } }'
    cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
        awk -v s="$suite" 'BEGIN { RS = ""; FS = "\n" }
            { uri = ""; ok = 0
              for (i = 1; i <= NF; i++) {
                  if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); uri = a[2] }
                  if ($i ~ /^Suites:/) { n = split($i, b, /[ \t]+/); for (j = 2; j <= n; j++) if (b[j] == s) ok = 1 }
              }
              if (ok && uri != "") { print uri; exit } }'
}
mirror="${CLAQ_DEBIAN_MIRROR:-$(apt_uri_for bookworm | head -n1)}"
mirror="${mirror:-http://deb.debian.org/debian}"
security="${CLAQ_DEBIAN_SECURITY_MIRROR:-$(apt_uri_for bookworm-security | head -n1)}"
security="${security:-http://deb.debian.org/debian-security}"

root="$(mktemp -d "${TMPDIR:-/tmp}/claq-base.XXXXXX")"
trap 'rm -rf "$root"' EXIT
echo "base-offline.sh: debootstrap bookworm (minbase) from $mirror"
debootstrap --variant=minbase --arch=amd64 bookworm "$root" "$mirror" >"$root.log" 2>&1 || {
    tail -n 30 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"

cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
SOURCES
# What debian:bookworm-slim leaves out: documentation, man pages and translations (dpkg filters,
# so packages installed later stay lean too), and apt's caches and lists.
cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'SLIM'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
SLIM
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'CLEAN'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Binary::apt::APT::Keep-Downloaded-Packages "false";
Acquire::GzipIndexes "true";
CLEAN
find "$root/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
       "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
       "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/tmp/* "$root"/root/.bash_history

tar --numeric-owner -C "$root" -c . |
    docker import --change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --message "debootstrap bookworm minbase from $mirror (deploy/docker/base-offline.sh)" - "$tag" >/dev/null
echo "base-offline.sh: made $tag ($(docker image inspect -f '{{.Size}}' "$tag") bytes)"
