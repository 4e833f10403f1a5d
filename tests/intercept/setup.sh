#!/usr/bin/env bash
# setup.sh [CASE]: installs what the real-launcher tests need from Debian (make, xargs,
# python3; ninja for the ninja case, rustc for the rust case), quietly, only when missing.
# Idempotent; called by the tests themselves.
set -euo pipefail
missing=()
command -v make >/dev/null || missing+=(make)
command -v xargs >/dev/null || missing+=(findutils)
command -v python3 >/dev/null || missing+=(python3)
case ${1:-} in
ninja) command -v ninja >/dev/null || missing+=(ninja-build) ;;
rust) command -v rustc >/dev/null || missing+=(rustc) ;;
esac
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "setup.sh: missing ${missing[*]} and cannot install them (not root, or no apt-get)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
