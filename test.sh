#!/usr/bin/env bash
# Runs every test of the repository on a fresh clone: `dotnet build` (which also builds the
# C core, fixtures and C tests through CMake), the C tests (ctest), the .NET tests, then the
# guest stage (tests/kernel/run.sh: the patched kernel in qemu; PSPAWN_SKIP_GUEST=1 skips
# it locally, never in CI). Ends with one line "N passed, N failed[, N skipped]" totalling
# every runner.
set -uo pipefail
cd "$(dirname "$0")"

config="${PSPAWN_CONFIGURATION:-Release}"
logs=artifacts/test-logs
mkdir -p "$logs"

# The guest kernel builds in the background (nice 19, cached) while the host tests run;
# the guest stage waits for it.
kernel_build_pid=""
if [ "${PSPAWN_SKIP_GUEST:-0}" != 1 ]; then
    # Its own session, so that an interrupted run stops the whole build.
    setsid bash -c 'native/kernel/setup.sh && nice -n 19 native/kernel/build.sh' >"$logs/kernel-build.log" 2>&1 &
    kernel_build_pid=$!
    trap 'kill -- -"$kernel_build_pid" 2>/dev/null' EXIT
fi

if ! dotnet build PSpawn.sln -c "$config" 2>&1 | tee "$logs/build.log"; then
    echo "build failed: see $logs/build.log"
    echo "0 passed, 1 failed"
    exit 1
fi

c_passed=0 c_failed=0
# run_ctest NAME DIR [ctest args]: runs one ctest tree and adds its counts.
run_ctest() {
    local name=$1 dir=$2
    shift 2
    ctest --test-dir "$dir" --output-on-failure -j2 --timeout 300 "$@" 2>&1 | tee "$logs/$name.log"
    local status=${PIPESTATUS[0]} failed total
    # "97% tests passed, 1 tests failed out of 33"
    read -r failed total < <(sed -nE 's/.*tests passed, ([0-9]+) tests? failed out of ([0-9]+).*/\1 \2/p' "$logs/$name.log" | tail -1)
    failed=${failed:-1}
    total=${total:-$failed}
    if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
    c_passed=$((c_passed + total - failed))
    c_failed=$((c_failed + failed))
}

run_ctest ctest artifacts/native

# The C core again under AddressSanitizer (with LeakSanitizer) and UBSan; the proxy library
# under UBSan only (see native/CMakeLists.txt). The fuzz target is sanitized in both trees.
if cmake -S native -B artifacts/native-asan -DPSPAWN_SANITIZE=ON -DPSPAWN_PYNAMIC_MAX=0 >"$logs/asan-build.log" 2>&1 &&
    cmake --build artifacts/native-asan -j2 >>"$logs/asan-build.log" 2>&1; then
    run_ctest ctest-asan artifacts/native-asan -E '^fuzz\.'
else
    echo "sanitizer build failed: see $logs/asan-build.log"
    c_failed=$((c_failed + 1))
fi

dotnet test PSpawn.sln -c "$config" --no-build --blame-hang-timeout 10m --logger "console;verbosity=normal" 2>&1 | tee "$logs/dotnet-test.log"
dotnet_status=${PIPESTATUS[0]}

# dotnet test's summary, per test assembly ("Total tests: 58", "     Passed: 58",
# "     Failed: 1", "    Skipped: 2").
count_of() {
    sed -nE "s/^ +$1: +([0-9]+) *\$/\1/p" "$logs/dotnet-test.log" | awk '{s += $1} END {print s + 0}'
}
n_passed=$(count_of Passed)
n_failed=$(count_of Failed)
n_skipped=$(count_of Skipped)
if { [ "$dotnet_status" -ne 0 ] || [ $((n_passed + n_failed)) -eq 0 ]; } && [ "$n_failed" -eq 0 ]; then
    n_failed=1 # the runner failed, or ran nothing, without reporting a failed test
fi

g_passed=0 g_failed=0
if [ -n "$kernel_build_pid" ]; then
    kernel_build_start=$(date +%s)
    trap - EXIT
    wait "$kernel_build_pid" || echo "the background kernel build failed (see $logs/kernel-build.log); the guest stage retries it"
    echo "guest stage: waited $(( $(date +%s) - kernel_build_start )) s for the kernel build"
    guest_start=$(date +%s)
    tests/kernel/run.sh 2>&1 | tee "$logs/guest.log"
    guest_status=${PIPESTATUS[0]}
    read -r g_passed g_failed < <(sed -nE 's/^([0-9]+) passed, ([0-9]+) failed$/\1 \2/p' "$logs/guest.log" | tail -1)
    g_passed=${g_passed:-0}
    g_failed=${g_failed:-1} # no summary: the stage failed before counting
    if [ "$guest_status" -ne 0 ] && [ "$g_failed" -eq 0 ]; then g_failed=1; fi
    guest_summary="guest tests: $g_passed passed, $g_failed failed ($(( $(date +%s) - guest_start )) s)"
else
    guest_summary="guest tests: skipped (PSPAWN_SKIP_GUEST=1)"
fi

echo "C tests: $c_passed passed, $c_failed failed; .NET tests: $n_passed passed, $n_failed failed, $n_skipped skipped; $guest_summary"
passed=$((c_passed + n_passed + g_passed))
failed=$((c_failed + n_failed + g_failed))
if [ "$n_skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $n_skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
