#!/usr/bin/env bash
# Installs what the kernel guest harness needs (Debian bookworm). Idempotent and quiet:
# packages already installed are not asked for again, so a second run makes no network call.
set -euo pipefail

packages=(linux-source-6.1 qemu-system-x86 flex bison bc libelf-dev libssl-dev cpio ccache
          busybox-static make gcc libc6-dev xz-utils cmake)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { "${sudo[@]}" apt-get update -qq &&
       "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup.sh: installing ${missing[*]} failed" >&2
    exit 1
fi
