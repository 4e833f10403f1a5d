#!/usr/bin/env bash
# tests/kernel/bench.sh [-n N] [-r ROUNDS] [TARGET...]: spawn throughput of pspawn, ipspawn,
# afork, posix_spawn and libpspawn's pspawn_vector (kernel backend, zygote) in the guest,
# with 1 and then 2 vCPUs (one boot each), unpinned and pinned. TARGETs are fixture names in
# artifacts/native/bin (default: noop; pynamic100 too if it has been built). Results: stdout
# and artifacts/kernel-tests/bench-<cpus>cpu.txt.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$repo/artifacts/kernel-tests
bin=$repo/artifacts/native/bin
n=100 rounds=5

while getopts n:r: opt; do
    case $opt in
        n) n=$OPTARG ;;
        r) rounds=$OPTARG ;;
        *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(noop)
    [ -x "$bin/pynamic100" ] && targets+=(pynamic100)
fi

"$repo/native/kernel/setup.sh"
if [ ! -x "$bin/noop" ] || [ ! -f "$repo/artifacts/native/lib/libpspawn_proxy.so" ]; then
    [ -f "$repo/artifacts/native/CMakeCache.txt" ] ||
        nice -n 19 cmake -S "$repo/native" -B "$repo/artifacts/native" -DPSPAWN_PYNAMIC_MAX=0 >/dev/null
    nice -n 19 cmake --build "$repo/artifacts/native" -j2 --target noop pspawn pspawn_proxy >/dev/null
fi
make -s -C "$here" OUT="$out"

script=$(mktemp "$out/bench.XXXXXX")
trap 'rm -f "$script"' EXIT
{
    echo '#!/bin/bash'
    echo 'set -e'
    for t in "${targets[@]}"; do
        echo "$(printf '%q' "$out/kbench") -n $n -r $rounds $(printf '%q' "$bin/$t")"
        echo "$(printf '%q' "$out/kbench") -n $n -r $rounds -p $(printf '%q' "$bin/$t")"
    done
} >"$script"
chmod 755 "$script"

for cpus in 1 2; do
    echo "== guest with $cpus vCPU(s)"
    "$repo/native/kernel/guest.sh" --cpus "$cpus" --timeout 3000 -- "$script" | tee "$out/bench-${cpus}cpu.txt"
done
