#!/usr/bin/env bash
# Opt-in check against real Go programs (not in CI: Debian's golang-go is about 450 MB
# installed). Builds two dynamically linked Go programs in a temporary directory and runs
# check.c on each:
#   internal_link.go  cgo only through the standard library (net): Go's internal linker,
#                     entry _rt0_amd64_linux, no __libc_start_main: must be refused (ENOSYS)
#                     before it runs, and with fallback run exactly once per spawn;
#   external_link.go  `import "C"`: linked by gcc with glibc's _start, so it does start
#                     through __libc_start_main and passes the check; its instances must exit 0.
# Usage: tests/go/go_check.sh [--install] [BUILD_DIR]   (BUILD_DIR: artifacts/native)
# --install runs `apt-get install -y golang-go` when `go` is missing. Exit 77: no go.
set -euo pipefail
cd "$(dirname "$0")/../.."

install=false
if [ "${1:-}" = "--install" ]; then install=true; shift; fi
build=$(realpath "${1:-artifacts/native}")
if ! command -v go >/dev/null; then
    if ! $install; then
        echo "go_check: no go on PATH (apt-get install golang-go, or pass --install)" >&2
        exit 77
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q golang-go >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GOPATH="$work/gopath" GOFLAGS=-mod=mod
cp tests/go/internal_link.go tests/go/external_link.go "$work/"
(cd "$work" && CGO_ENABLED=1 go build -o internal_link internal_link.go &&
    CGO_ENABLED=1 go build -o external_link external_link.go)
cc -Wall -Wextra -Werror -Inative/include tests/go/check.c -L"$build/lib" -Wl,-rpath,"$build/lib" \
    -lpspawn -o "$work/check"

failed=0
# run NAME EXPECTED_FIRST_LINE: runs check.c on $work/NAME 3 times over, with a marker file.
run() {
    local name=$1 expected=$2 marker="$work/$1.marker" out
    out=$(PSPAWN_NOSTART_MARKER="$marker" "$work/check" "$work/$name" 3 2>&1) || true
    local runs
    runs=$(stat -c %s "$marker" 2>/dev/null || echo 0)
    echo "== $name (ran $runs times for 3 spawns)"
    echo "$out" | grep -E '^(create|zygote|fallback)' || true
    if ! echo "$out" | grep -q "^$expected" || ! echo "$out" | grep -qE 'spawns: 3 of 3 exited 0' || [ "$runs" != 3 ]; then
        echo "FAILED: $name"
        echo "$out" | grep -vE '^(create|zygote|fallback)' | head -5
        failed=1
    fi
}
run internal_link "create: ENOSYS"
run external_link "create: ok"
exit $failed
