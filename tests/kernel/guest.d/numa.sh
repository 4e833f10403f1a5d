#!/usr/bin/env bash
# guest: --cpus 2 --numa 2
# Per-node proxies on two real (qemu) NUMA nodes, one CPU and half the memory each (issue
# 12): test_numa_guest's cases: a proxy per node pinned there, children of a node's
# instances on its CPUs, their anonymous memory and the proxy's on its node
# (/proc/<pid>/numa_maps), library replicas' page cache on their node. About 20 s per run.
set -u
. tests/kernel/guest_cases.sh
run_cases artifacts/native/bin/test_numa_guest numa two_nodes_topology children_run_on_their_nodes_cpus \
    child_memory_on_its_node proxy_pages_on_its_node replica_pages_on_their_node
exit "$failed"
