#!/usr/bin/env bash
# tests/kernel/run.sh [--cpus N] [--kernel BZIMAGE] [TEST...]: builds the patched kernel (cached),
# the fixtures and the kernel-path tests, runs the host checks, boots the guest once and runs
# ktest in it (all tests, or the ones named). Prints "N passed, N failed"; exit status 0 only
# if nothing failed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$repo/artifacts/kernel-tests
bin=$repo/artifacts/native/bin
cpus=2 kernel_args=()

while [ $# -gt 0 ]; do
    case $1 in
        --cpus) cpus=${2:?}; shift 2 ;;
        --kernel) kernel_args=(--kernel "${2:?}"); shift 2 ;;
        *) break ;;
    esac
done

passed=0 failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
log=$(mktemp)
trap 'rm -f "$log"' EXIT

"$repo/native/kernel/setup.sh"
if [ ! -x "$bin/report" ] || [ ! -x "$bin/noop" ]; then
    nice -n 19 cmake -S "$repo/native" -B "$repo/artifacts/native" -DPSPAWN_PYNAMIC_MAX=0 >/dev/null
    nice -n 19 cmake --build "$repo/artifacts/native" -j2 --target report noop >/dev/null
fi
make -s -C "$here" OUT="$out"

# Host: the patch carries the shared header verbatim.
patch_file=$repo/native/kernel/patches/0001-pspawn-ipspawn.patch
if awk '/^diff --git a\/include\/uapi\/linux\/pspawn.h/{f=1;next} f&&/^diff --git/{f=0} f&&/^\+/&&!/^\+\+\+/{print substr($0,2)}' \
        "$patch_file" | cmp -s - "$repo/native/kernel/uapi/pspawn_syscall.h"; then
    pass host_uapi_header_matches_patch
else
    fail host_uapi_header_matches_patch "include/uapi/linux/pspawn.h in the patch differs from native/kernel/uapi/pspawn_syscall.h"
fi

# Host: this kernel has no pspawn calls; detection must say so.
if [ -e /sys/kernel/pspawn ]; then
    fail host_detect_absent "/sys/kernel/pspawn exists on the host"
else
    detect_status=0
    detect_out=$("$out/pspawn_detect") || detect_status=$?
    if [ "$detect_out" = absent ] && [ "$detect_status" -eq 1 ]; then
        pass host_detect_absent
    else
        fail host_detect_absent "pspawn_detect said '$detect_out' (status $detect_status)"
    fi
fi

# Guest: the whole suite in one boot.
start=$(date +%s)
guest_status=0
"$repo/native/kernel/guest.sh" --cpus "$cpus" "${kernel_args[@]}" --timeout 1200 -- \
    "$out/ktest" "$bin" "$@" 2>&1 | tee "$log" || guest_status=${PIPESTATUS[0]}
echo "guest run: $(( $(date +%s) - start )) s (boot included), status $guest_status"
guest_passed=$(grep -c '^PASS ' "$log" || true)
guest_failed=$(grep -c '^FAIL ' "$log" || true)
passed=$((passed + guest_passed))
failed=$((failed + guest_failed))
if ! grep -q '^ktest: [0-9]* passed, [0-9]* failed$' "$log"; then
    fail guest "the guest run ended early (status $guest_status)"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
