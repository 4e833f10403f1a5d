#!/usr/bin/env bash
# tests/kernel/run.sh [--cpus N] [--kernel BZIMAGE] [TEST...]: the guest stage. Builds the
# patched kernel (cached), the fixtures, the kernel-path tests and the guest programs of
# the suites, runs the host checks, then boots the guest once per distinct set of guest.sh
# options and runs there ktest (all its tests, or the TESTs named: then nothing else) and
# every tests/kernel/guest.d/*.sh suite (its second line, "# guest: OPTIONS", says which
# boot it joins; ktest's is "--cpus N", default 2). Prints each "PASS name" / "FAIL name:
# reason" line and ends with "N passed, N failed"; exit status 0 only if nothing failed.
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
ktest_tests=("$@")

passed=0 failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
mkdir -p "$out"
work=$(mktemp -d "$out/run.XXXXXX")
trap 'rm -rf "$work"' EXIT

"$repo/native/kernel/setup.sh"
# The fixtures and the suites' programs (built by test.sh's dotnet build; by hand here).
needed=(report noop noop_static kernel_guest)
missing=0
for t in "${needed[@]}"; do [ -x "$bin/$t" ] || missing=1; done
if [ "$missing" -eq 1 ]; then
    [ -f "$repo/artifacts/native/CMakeCache.txt" ] ||
        nice -n 19 cmake -S "$repo/native" -B "$repo/artifacts/native" -DPSPAWN_PYNAMIC_MAX=0 >/dev/null
    nice -n 19 cmake --build "$repo/artifacts/native" -j2 --target "${needed[@]}" >/dev/null
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

# The boots: group -> the commands of its script. ktest's group first.
declare -A group_script=()
groups=()
add_to_group() { # OPTIONS NAME COMMAND...
    local options=$1 name=$2 script
    shift 2
    if [ -z "${group_script[$options]+x}" ]; then
        script="$work/group${#groups[@]}.sh"
        printf '#!/bin/bash\n' >"$script"
        chmod 755 "$script"
        group_script[$options]=$script
        groups+=("$options")
    fi
    script=${group_script[$options]}
    # Each command's output and status are marked, so a suite that dies silently still
    # counts as failed.
    printf 'echo "@@suite %s start@@"; %s; echo "@@suite %s status $?@@"\n' "$name" "$(printf '%q ' "$@")" \
        "$name" >>"$script"
}
add_to_group "--cpus $cpus" ktest "$out/ktest" "$bin" "${ktest_tests[@]}"
if [ ${#ktest_tests[@]} -eq 0 ]; then
    for suite in "$here"/guest.d/*.sh; do
        [ -e "$suite" ] || continue
        options=$(sed -n '2s/^# guest:[[:space:]]*//p' "$suite")
        name=$(basename "$suite" .sh)
        if [ -z "$options" ] && ! sed -n '2p' "$suite" | grep -q '^# guest:'; then
            fail "$name" "its second line is not '# guest: OPTIONS'"
            continue
        fi
        add_to_group "$(echo "$options" | xargs)" "$name" "$suite"
    done
fi

for options in "${groups[@]}"; do
    script=${group_script[$options]}
    echo 'echo "@@guest done@@"' >>"$script"
    log="$work/$(basename "$script" .sh).log"
    read -ra opts <<<"$options"
    start=$(date +%s)
    guest_status=0
    (cd "$repo" && "$repo/native/kernel/guest.sh" "${opts[@]}" "${kernel_args[@]}" --timeout 1500 -- "$script") 2>&1 |
        tee "$log" | grep --line-buffered -v '^@@' || guest_status=${PIPESTATUS[0]}
    echo "guest [$options]: $(( $(date +%s) - start )) s (boot included), status $guest_status"
    passed=$((passed + $(grep -c '^PASS ' "$log" || true)))
    failed=$((failed + $(grep -c '^FAIL ' "$log" || true)))
    # A command that failed without a FAIL line of its own (it crashed, or never started).
    while read -r name status; do
        fail "$name" "exited with status $status without a FAIL line"
    done < <(awk '/^@@suite .* start@@$/ {n = 0} /^FAIL / {n++}
        /^@@suite .* status [0-9]+@@$/ {s = $4; sub(/@@$/, "", s); if (s != 0 && n == 0) print $2, s}' "$log")
    while read -r name; do
        fail "$name" "did not finish (the guest stopped in it)"
    done < <(awk '/^@@suite .* start@@$/ {open = $2} /^@@suite .* status [0-9]+@@$/ {open = ""}
        END {if (open != "") print open}' "$log")
    if ! grep -q '^@@guest done@@' "$log"; then
        fail "guest[$options]" "the guest run ended early (status $guest_status)"
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
