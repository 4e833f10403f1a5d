#!/usr/bin/env bash
# The proxy's request decoder under libFuzzer, with ASan and UBSan (-fno-sanitize-recover):
# builds tests/fuzz/decode_fuzz.c against native/src/common/protocol.c with clang, seeds
# the corpus with make_corpus.c, and fuzzes for a bounded time. Installs clang and its
# libFuzzer runtime with apt-get when they are missing (Debian).
#
# Usage: tests/fuzz/libfuzzer.sh [--seconds N] [--out DIR] [-- LIBFUZZER_FLAGS...]
#   --seconds N  how long to fuzz (default 60)
#   --out DIR    build and corpus directory (default artifacts/libfuzzer); the corpus in
#                DIR/corpus is kept and grows from run to run
# Exit status: 0 after a clean run; 1 on a crash (the input is in DIR/crashes/, and the
# script prints its path and how to replay it); 2 on a usage or build error.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=60
out=artifacts/libfuzzer
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
    --seconds) seconds=${2:?--seconds needs a value}; shift 2 ;;
    --out) out=${2:?--out needs a value}; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "usage: $0 [--seconds N] [--out DIR] [-- LIBFUZZER_FLAGS...]" >&2; exit 2 ;;
    esac
done
case "$seconds" in '' | *[!0-9]*) echo "--seconds: a whole number of seconds" >&2; exit 2 ;; esac

apt_install() {
    echo "libfuzzer.sh: installing $* with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null ||
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; }
}

# True if clang can link a libFuzzer target (the runtime is a separate Debian package).
fuzzer_links() {
    local probe
    probe=$(mktemp -d)
    printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' >"$probe/p.c"
    clang -fsanitize=fuzzer "$probe/p.c" -o "$probe/p" >/dev/null 2>&1
    local status=$?
    rm -rf "$probe"
    return $status
}

command -v clang >/dev/null || apt_install clang
if ! fuzzer_links; then
    major=$(clang -dumpversion | cut -d. -f1)
    apt_install "libclang-rt-$major-dev"
    fuzzer_links || { echo "libfuzzer.sh: clang cannot link -fsanitize=fuzzer" >&2; exit 2; }
fi

mkdir -p "$out/corpus" "$out/crashes"
rm -rf "$out/seeds"
mkdir -p "$out/seeds"
flags=(-std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -Inative/src -g -O1 -fno-omit-frame-pointer)
clang "${flags[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    tests/fuzz/decode_fuzz.c native/src/common/protocol.c -o "$out/decode_libfuzzer" || exit 2
clang "${flags[@]}" tests/fuzz/make_corpus.c native/src/common/protocol.c -o "$out/make_corpus" || exit 2
"$out/make_corpus" "$out/seeds"

echo "libfuzzer.sh: fuzzing for $seconds s (corpus $out/corpus, seeds $out/seeds)" >&2
set +e
"$out/decode_libfuzzer" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$out/crashes/" \
    "${extra[@]}" "$out/corpus" "$out/seeds" 2>&1 | tee "$out/run.log"
status=${PIPESTATUS[0]}
set -e

grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::average_exec_per_sec)' "$out/run.log" >&2 || true
if [ "$status" -ne 0 ]; then
    echo "libfuzzer.sh: the fuzzer failed (exit $status). Crash inputs:" >&2
    ls -1 "$out"/crashes/* 2>/dev/null >&2 || echo "  (none written; see $out/run.log)" >&2
    echo "Replay one with: $out/decode_libfuzzer <input>" >&2
    exit 1
fi
echo "libfuzzer.sh: no crash in $seconds s" >&2
