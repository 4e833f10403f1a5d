# Sourced by guest suites (tests/kernel/guest.d/*.sh): run_cases BINARY PREFIX CASE... runs
# each case of a C test program built on the host (artifacts/native/bin) and prints
# "PASS PREFIX.CASE" or "FAIL PREFIX.CASE: reason". In the guest a skip is a failure: the
# guest exists to have what the host lacks. Sets `failed` to 1 on any failure.
failed=${failed:-0}
run_cases() {
    local binary=$1 prefix=$2 out rc
    shift 2
    for case in "$@"; do
        out=$("$binary" "$case" 2>&1) && rc=0 || rc=$?
        if [ "$rc" -eq 0 ] && ! grep -q '^skipped:' <<<"$out"; then
            echo "PASS $prefix.$case"
        else
            echo "FAIL $prefix.$case: exit $rc: $(grep -v '^$' <<<"$out" | tail -n 3 | tr '\n' ' ')"
            failed=1
        fi
    done
}
