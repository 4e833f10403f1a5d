#!/usr/bin/env python3
"""compare.py PLAIN_DIR INTERCEPTED_DIR [--unordered-env] [--transient-fds] [--renumbered-fds]: the same workload's results with and without the
interceptor must be identical. Each directory holds the report fixture's JSON files
(*.json) and any text files (*.txt: launcher output, exit statuses). Process ids differ
between runs, so pid, ppid, pgid and sid are replaced by their relations (pgid == pid:
leads its group, sid == pid: leads its session, ppid == the launcher's pid when the file
LAUNCHER_PID holds it); each directory's own path is replaced by DIR; the harness's PRELOAD variable is dropped.
--transient-fds: a child's descriptors above 2 count only if every child of its run has them
(.NET's runtime threads open files without O_CLOEXEC now and then, outside Process.Start, so
a child of either run may inherit one at random; a descriptor the interceptor gave or took
from every child still shows).
--renumbered-fds: a child's descriptors above 2 are compared by count, not by number (a
launcher that leaks a descriptor of its own into its children gets another number for it
when the interceptor's descriptors take lower ones: docs/design.md). Prints the first differences and exits 1 if there are any."""
import json
import os
import sys


UNORDERED_ENV = "--unordered-env" in sys.argv  # .NET orders a child's environment by hash
TRANSIENT_FDS = "--transient-fds" in sys.argv
RENUMBERED_FDS = "--renumbered-fds" in sys.argv  # ninja's console jobs inherit its pipe


def normalise(path, root, launcher, stable_fds):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read().replace(root, "DIR")
    if not path.endswith(".json"):
        return text
    d = json.loads(text)
    # The harness's own variable (the launcher's LD_PRELOAD, or a placeholder)
    d["env"] = [e for e in d["env"] if not e.startswith("PRELOAD=")]
    if UNORDERED_ENV:
        d["env"].sort()
    if stable_fds is not None:
        d["fds"] = [fd for fd in d["fds"] if fd <= 2 or fd in stable_fds]
    if RENUMBERED_FDS:
        d["fds"] = [fd for fd in d["fds"] if fd <= 2] + [len([fd for fd in d["fds"] if fd > 2])]
    d["leads_group"] = d["pgid"] == d["pid"]
    d["leads_session"] = d["sid"] == d["pid"]
    if launcher is not None:
        d["child_of_launcher"] = d["ppid"] == launcher
    for k in ("pid", "ppid", "pgid", "sid", "argv_hex", "env_hex", "grandchild"):
        d.pop(k, None)
    return json.dumps(d, sort_keys=True, indent=0)


def load(root):
    launcher = None
    pid_file = os.path.join(root, "LAUNCHER_PID")
    if os.path.exists(pid_file):
        launcher = int(open(pid_file).read().strip())
    paths = [os.path.join(d, n) for d, _, files in os.walk(root) for n in files if n.endswith((".json", ".txt"))]
    stable = None
    if TRANSIENT_FDS:
        for full in (p for p in paths if p.endswith(".json")):
            with open(full, encoding="utf-8", errors="replace") as f:
                fds = set(json.load(f)["fds"])
            stable = fds if stable is None else stable & fds
    return {os.path.relpath(full, root): normalise(full, root, launcher, stable) for full in paths}


def main():
    dirs = [a for a in sys.argv[1:] if not a.startswith("--")]
    plain, intercepted = load(dirs[0]), load(dirs[1])
    problems = []
    for name in sorted(set(plain) | set(intercepted)):
        if name not in plain or name not in intercepted:
            problems.append(f"{name}: only in {'plain' if name in plain else 'intercepted'} run")
        elif plain[name] != intercepted[name]:
            a, b = plain[name].splitlines(), intercepted[name].splitlines()
            diff = [f"  - {x}\n  + {y}" for x, y in zip(a, b) if x != y][:3]
            if len(a) != len(b):
                diff.append(f"  lines: {len(a)} vs {len(b)}")
            problems.append(f"{name} differs:\n" + "\n".join(diff))
    for p in problems[:10]:
        print(p)
    if not plain:
        print("no results in the plain run")
        return 1
    print(f"{len(plain)} results compared, {len(problems)} differ")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
