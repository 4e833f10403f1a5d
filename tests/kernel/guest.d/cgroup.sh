#!/usr/bin/env bash
# guest: --cpus 2
# cgroup v2 placement (issue 12) where cgroup2 is writable and has the memory and pids
# controllers: the guest mounts its own at /sys/fs/cgroup. test_cgroup's cases: children
# born in the batch's/context's/instance's cgroup, the default following the launcher at
# spawn time (also into a pids-limited cgroup), pids.max and memory.max applied, typed
# errors, the fallback without clone3 (seccomp). About 30 s (90 s under load) per run.
set -u
. tests/kernel/guest_cases.sh
if ! mountpoint -q /sys/fs/cgroup && ! mount -t cgroup2 cgroup2 /sys/fs/cgroup; then
    echo "FAIL cgroup.mount: cannot mount cgroup2 on /sys/fs/cgroup (kernel without CONFIG_CGROUPS?)"
    exit 1
fi
if ! echo "+pids +memory" >/sys/fs/cgroup/cgroup.subtree_control; then
    echo "FAIL cgroup.controllers: $(cat /sys/fs/cgroup/cgroup.controllers) (want pids and memory)"
    exit 1
fi
run_cases artifacts/native/bin/test_cgroup cgroup children_born_in_cgroup default_follows_caller typed_errors \
    pids_limit launcher_joins_limited_cgroup memory_limit per_instance_cgroups fallback_without_clone3
exit "$failed"
