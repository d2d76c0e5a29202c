#!/usr/bin/env bash
# Builds the Debian 12 base image the Containerfile starts from, without a
# registry: debootstrap (minbase, bookworm) from the apt mirror this machine
# is configured with, then `podman import`. Kept between runs: an existing
# image is reused unless --rebuild is given.
#
# Usage: container/base-image.sh [--rebuild] [IMAGE]   (default IMAGE:
# localhost/pinfold-base:bookworm). Prints the image name.
set -euo pipefail
rebuild=0
[[ ${1:-} == --rebuild ]] && { rebuild=1; shift; }
image=${1:-localhost/pinfold-base:bookworm}

[[ $(id -u) -eq 0 ]] || { echo "base-image.sh: run as root (debootstrap)" >&2; exit 1; }
if ((!rebuild)) && podman image exists "$image"; then
    echo "$image"
    exit 0
fi

# The first Debian (not security) URI of the configured sources.
mirror=$( { cat /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } |
          sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' | grep -v security | head -n1)
[[ -n $mirror ]] || mirror=$( { grep -h '^deb ' /etc/apt/sources.list 2>/dev/null || true; } |
          awk '$2 !~ /security/ {print $2; exit}')
[[ -n $mirror ]] || { echo "base-image.sh: no apt mirror configured" >&2; exit 1; }

root=$(mktemp -d /var/tmp/pinfold-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "base-image.sh: debootstrap bookworm from $mirror" >&2
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 || {
    tail -n 20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"
# The image uses the same sources as this machine (updates, security).
if ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1; then
    rm -f "$root/etc/apt/sources.list"
    cp /etc/apt/sources.list.d/*.sources "$root/etc/apt/sources.list.d/"
fi
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" --numeric-owner -c . | podman import \
    --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' - "$image" >/dev/null
echo "$image"
