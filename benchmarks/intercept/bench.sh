#!/usr/bin/env bash
# bench.sh [BUILD_DIR] [ROUNDS]: `make -j2` and `xargs -P2` running pynamic100 200 times,
# plainly and with libpspawn_intercept.so preloaded, alternating, ROUNDS times each (default
# 7), each round also timing the zygote floor (libzygote_floor.so: the frozen pynamic100
# forking itself, 2 children at once, no launcher, its areas merged as the interceptor's
# zygotes merge theirs: what any such zygote pays at the least); prints the median wall
# times and the ratios plain / intercepted and plain / floor (the most any zygote could
# give here) (docs/benchmarks.md).
set -euo pipefail
build=$(cd "${1:-$(dirname "$0")/../../artifacts/native}" && pwd)
rounds=${2:-7}
lib=$build/lib/libpspawn_intercept.so
floor_lib=$build/lib/libzygote_floor.so
target=$build/bin/pynamic100
n=200
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
{
    echo "all: $(seq -f 't%g' 1 $n | tr '\n' ' ')"
    for i in $(seq 1 $n); do printf 't%d:\n\t%s %d\n' "$i" "$target" "$i"; done
} >"$tmp/Makefile"

now() { date +%s%N; }
# time_ms COMMAND...: wall time of one run in ms.
time_ms() {
    local t0 t1
    t0=$(now)
    "$@" >/dev/null
    t1=$(now)
    echo $(((t1 - t0) / 1000000))
}
median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

run_make() { make -s -j2 -f "$tmp/Makefile"; }
run_xargs() { seq 1 $n | xargs -P2 -n1 "$target"; }

# One floor batch of n launches: its wall time in ms.
floor_ms() {
    # Areas merged as the interceptor's zygotes merge them, unless it is told not to.
    LD_BIND_NOW=1 ZYGOTE_FLOOR_N=$n ZYGOTE_FLOOR_P=2 ZYGOTE_FLOOR_ROUNDS=1 ZYGOTE_FLOOR_MODES=fork_main \
        ZYGOTE_FLOOR_MERGE_TEXT=$([ "${PSPAWN_INTERCEPT_MERGE_TEXT:-1}" = 0 ] && echo 0 || echo 1) \
        LD_PRELOAD="$floor_lib" "$target" | sed -E 's/.*"fork_main_ms":([0-9.]+).*/\1/' | cut -d. -f1
}

for workload in make xargs; do
    : >"$tmp/floor"
    : >"$tmp/$workload.plain"
    : >"$tmp/$workload.preload"
    for _ in $(seq 1 "$rounds"); do
        floor_ms >>"$tmp/floor"
        body="$(declare -f "run_$workload"); tmp=$tmp n=$n target=$target run_$workload"
        # The launcher (make, xargs) gets the library as a user gives it; the shell does not
        # load it (a preloaded shell would strip it from the launcher's environment).
        time_ms bash -c "$body" >>"$tmp/$workload.plain"
        time_ms bash -c "export LD_PRELOAD='$lib'; $body" >>"$tmp/$workload.preload"
    done
    plain=$(median <"$tmp/$workload.plain")
    preload=$(median <"$tmp/$workload.preload")
    floor=$(median <"$tmp/floor")
    ratio=$(awk -v a="$plain" -v b="$preload" 'BEGIN {printf "%.2f", a / b}')
    best=$(awk -v a="$plain" -v b="$floor" 'BEGIN {printf "%.2f", a / b}')
    echo "$workload: plain ${plain} ms, intercepted ${preload} ms, zygote floor ${floor} ms (medians of $rounds); plain / intercepted ${ratio}x, plain / floor ${best}x"
done
