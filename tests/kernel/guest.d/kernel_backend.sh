#!/usr/bin/env bash
# guest: --cpus 2
# The dispatcher's kernel backend (libpspawn on the patched kernel): one process per case
# of artifacts/native/bin/kernel_guest (tests/native/kernel_guest.c). About 10 s of guest time.
set -uo pipefail
bin=${PSPAWN_BIN_DIR:-artifacts/native/bin}
cases=(detected vector_require_sync vector_require_async vector_auto_sync vector_auto_async pspawn_n_200
    sigchld_handled_sync sigchld_handled_async
    errors_sync errors_async file_errors unexpressible_options)
failed=0
for c in "${cases[@]}"; do
    start=$(date +%s%N)
    if out=$("$bin/kernel_guest" "$c" 2>&1); then
        echo "PASS kernel_backend.$c ($(( ($(date +%s%N) - start) / 1000000 )) ms)"
    else
        echo "FAIL kernel_backend.$c: $(echo "$out" | tail -n 3 | tr '\n' ' ')"
        failed=$((failed + 1))
    fi
done
[ "$failed" -eq 0 ]
