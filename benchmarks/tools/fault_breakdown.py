#!/usr/bin/env python3
"""Where do spawned instances page-fault? Classifies the user page faults that `perf record` saw.

    perf record -q -d -e exceptions:page_fault_user -o pf.data -- \
        artifacts/native/bin/spawnbench -n 20 -r 1 -l 0 -w 0 -m pspawn_n artifacts/native/bin/pynamic100
    benchmarks/tools/fault_breakdown.py pf.data pynamic100

For every process named TARGET (the instances; the proxy is one of them) it maps each fault address to
the mapping that holds it and counts faults per kind of mapping: file text (r-x), file read-only
(r--: rodata, RELRO after mprotect), file data (rw-: .data/.got, copy-on-write), anonymous (bss, heap),
stack, other; split into reads and writes (error_code bit 1) and into faults on absent pages and
protection faults on present ones (bit 0: typically copy-on-write of a page the parent had). Zygote
children never exec: they inherit the proxy's mappings, which is how they are recognised here.
"""
import collections
import re
import subprocess
import sys

MMAP = re.compile(r'PERF_RECORD_MMAP2 (\d+)/\d+: \[(0x[0-9a-f]+)\((0x[0-9a-f]+)\) @ \S+ \S+ \d+ \d+\]: (\S+) (.*)$')
FAULT = re.compile(r'^\s*(\S+)\s+(\d+)\s.*exceptions:page_fault_user: address=(0x[0-9a-f]+) ip=(0x[0-9a-f]+) error_code=(0x[0-9a-f]+)')
EXEC = re.compile(r'PERF_RECORD_COMM exec: (\S+):(\d+)/')


def kind(prot, name):
    if name.startswith('[stack'):
        return 'stack'
    if name.startswith('['):
        return 'other ' + name
    if name.startswith('/') and not name.startswith('/dev/') and not name.startswith('/memfd'):
        if 'x' in prot:
            return 'file text r-x'
        if 'w' in prot:
            return 'file data rw- (CoW)'
        return 'file read-only r--'
    return 'anonymous (bss/heap/tls)'


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    data, target = sys.argv[1], sys.argv[2]
    out = subprocess.run(['perf', 'script', '-i', data, '--show-mmap-events', '--show-task-events'],
                         capture_output=True, text=True, check=True).stdout
    maps = collections.defaultdict(list)  # pid -> [(start, end, prot, name)]
    execd = set()
    faults = []
    for line in out.splitlines():
        m = EXEC.search(line)
        if m:
            execd.add(int(m.group(2)))
            maps[int(m.group(2))] = []
            continue
        m = MMAP.search(line)
        if m:
            pid, start, length, prot, name = int(m.group(1)), int(m.group(2), 16), int(m.group(3), 16), m.group(4), m.group(5).strip()
            maps[pid].append((start, start + length, prot, name))
            continue
        m = FAULT.match(line)
        if m and m.group(1) == target:
            faults.append((int(m.group(2)), int(m.group(3), 16), int(m.group(5), 16), int(m.group(4), 16)))

    # The proxy: the first process named TARGET that exec'd; zygote children have no exec of their own.
    target_execd = [p for p in sorted(execd) if maps.get(p) and any(target in n for _, _, _, n in maps[p])]
    groups = collections.defaultdict(lambda: collections.Counter())
    members = collections.defaultdict(set)
    by_code = collections.defaultdict(lambda: collections.Counter())
    for pid, addr, err, ip in faults:
        if pid in execd:
            own = maps[pid]
            group = 'exec\'d instances (and the proxy)'
        else:
            own = maps[target_execd[0]] if target_execd else []
            group = 'zygote children (no exec)'
        k = 'unmapped/unknown'
        for start, end, prot, name in reversed(own):
            if start <= addr < end:
                k = kind(prot, name)
                break
        code = '?'
        for start, end, prot, name in reversed(own):
            if start <= ip < end:
                code = name.rsplit('/', 1)[-1]
                code = 'a target library' if code.startswith('lib' + target + '_') else code
                break
        rw = 'write' if err & 2 else 'read'
        present = 'present(prot)' if err & 1 else 'absent'
        groups[group][(k, rw, present)] += 1
        by_code[group][(k, rw, present, code)] += 1
        members[group].add(pid)
    for group, counter in groups.items():
        n = len(members[group])
        total = sum(counter.values())
        print(f'{group}: {n} processes, {total} user faults, {total / n:.1f} per process')
        for (k, rw, present), c in sorted(counter.items(), key=lambda x: -x[1]):
            print(f'  {c / n:8.1f}  {k:28s} {rw:5s} {present}')
            for (k2, rw2, p2, code), c2 in by_code[group].most_common():
                if (k2, rw2, p2) == (k, rw, present) and c2 / n >= 1:
                    print(f'  {"":8s}    {c2 / n:8.1f} by code in {code}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
