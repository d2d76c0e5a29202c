#!/usr/bin/env bash
# Prints the Debian packages that provide the shared libraries the given
# binaries link, one per line: the runtime stage installs exactly these, so a
# new dependency of the build needs no edit of the Containerfile.
set -euo pipefail
ldd "$@" | awk '/=> \// {print $3}' | sort -u | while read -r lib; do
    # dpkg knows a library by the path its package shipped (/lib or /usr/lib).
    for candidate in "$lib" "$(realpath "$lib")" "/usr$lib" "${lib#/usr}"; do
        if owner=$(dpkg -S "$candidate" 2>/dev/null); then
            echo "${owner%%:*}"
            continue 2
        fi
    done
    echo "runtime-packages.sh: no package owns $lib" >&2
    exit 1
done | sort -u
