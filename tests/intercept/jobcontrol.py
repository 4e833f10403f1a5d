#!/usr/bin/env python3
"""jobcontrol.py LIBRARY LOG: a job-control bash (set -m) on a pseudo-terminal, preloaded with
the interceptor, runs /bin/cat /proc/self/stat six times. Each job's child leads its own group
and is the terminal's foreground group before it execs, which a zygote child could not be:
every line must show pid == pgrp == tpgid (the program got the terminal), and the interceptor
must have let each child exec by itself. Exits 1 on a bad line."""
import os
import pty
import sys

lib, log = sys.argv[1], sys.argv[2]
script = "set -m; for i in 1 2 3 4 5 6; do /bin/cat /proc/self/stat; done"
env = dict(os.environ, LD_PRELOAD=lib, PSPAWN_DEBUG="1", PSPAWN_DEBUG_FILE=log)
pid, fd = pty.fork()
if pid == 0:
    os.execve("/bin/bash", ["bash", "-c", script], env)
out = b""
while True:
    try:
        data = os.read(fd, 4096)
    except OSError:
        break
    if not data:
        break
    out += data
os.waitpid(pid, 0)
lines = [l for l in out.decode(errors="replace").splitlines() if ")" in l]
bad = 0
for line in lines:
    fields = line[line.rindex(")") + 2:].split()
    me, pgrp, tpgid = int(line.split()[0]), int(fields[2]), int(fields[5])
    if not (pgrp == me and tpgid == pgrp):
        bad += 1
        print(f"BAD: pid {me} pgrp {pgrp} tpgid {tpgid}")
print(f"{len(lines)} jobs, {bad} bad")
sys.exit(1 if bad or len(lines) != 6 else 0)
