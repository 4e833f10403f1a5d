#!/usr/bin/env bash
# launchers.sh BUILD_DIR CASE: one real launcher running a workload of the report and
# pynamic100 fixtures twice, plainly and with libpspawn_intercept.so preloaded; the
# results (every child's report JSON, the launcher's sorted stdout and stderr, its exit
# status) must be identical (compare.py), and the debug log must show the launches the
# interceptor is expected to serve as "served by zygote" (so that a silent fallback
# cannot pass). CASE: probe, fork, fork_pool, wait, jobcontrol, make, make_k, chaos, closefds, chroot, identity, exec, mergetext, fdlimit, libchange, ninja, rust, python, python_vfork, xargs, bash, others, dotnet, dotnet_threads, options.
set -uo pipefail
build=$(cd "$1" && pwd)
case=$2
here=$(cd "$(dirname "$0")" && pwd)
"$here/setup.sh" "$case" || exit 1
lib=$build/lib/libpspawn_intercept.so
report=$build/bin/report
pynamic=$build/bin/pynamic100
tmp=$(mktemp -d /tmp/pspawn-intercept-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
log=$tmp/debug.log

# run_twice COMMAND: runs `bash -c COMMAND` in $tmp/plain, then in $tmp/intercepted; $OUT is
# the run's directory, $PRELOAD="LD_PRELOAD=<the library>" in the intercepted run (empty in
# the plain one) for COMMAND to give the launcher, as a user would (`env $PRELOAD make`);
# with PRELOAD_SHELL=1 the shell itself is the launcher and runs preloaded. Same
# environment in both runs otherwise.
run_twice() {
    local mode dir
    for mode in plain intercepted; do
        dir=$tmp/$mode
        mkdir -p "$dir"
        local preload=() variable=PRELOAD=plain
        [ "$mode" = intercepted ] && variable="LD_PRELOAD=$lib"
        [ "$mode" = intercepted ] && [ -n "${PRELOAD_SHELL:-}" ] && preload=(LD_PRELOAD="$lib")
        (cd "$dir" && env OUT="$dir" REPORT="$report" PYNAMIC="$pynamic" PSPAWN_DEBUG=1 \
            PSPAWN_DEBUG_FILE="$log" PSPAWN_INTERCEPT_AFTER=2 "${preload[@]}" PRELOAD="$variable" bash -c "$1" \
            >"$dir/stdout.raw" 2>"$dir/stderr.raw"
         echo $? >"$dir/status.txt")
        sort "$dir/stdout.raw" >"$dir/stdout.txt"
        sort "$dir/stderr.raw" >"$dir/stderr.txt"
        rm -f "$dir/stdout.raw" "$dir/stderr.raw"
        if [ -f "$log" ]; then mv "$log" "$tmp/$mode.log"; else : >"$tmp/$mode.log"; fi
    done
    python3 "$here/compare.py" "$tmp/plain" "$tmp/intercepted" ${COMPARE_OPTIONS:-}
}

fail() {
    echo "FAIL: $*"
    [ -f "$tmp/intercepted.log" ] && { echo "--- last lines of the debug log:"; tail -n 15 "$tmp/intercepted.log"; }
    exit 1
}

# served_at_least N: the intercepted run's log has N "served by zygote" lines or more.
served_at_least() {
    local n
    n=$(grep -c 'served by zygote' "$tmp/intercepted.log")
    echo "served by zygote: $n (expected at least $1)"
    [ "$n" -ge "$1" ] || fail "only $n launches served by the zygote, expected $1"
}

# makefile N [failures]: targets t1..tN, every other one runs pynamic100 too; with
# "failures", every 10th exits 2, every 25th dies of SIGTERM, t13 runs a missing program.
makefile() {
    local n=$1 failures=${2:-}
    {
        echo "all: $(seq -f 't%g' 1 "$n" | tr '\n' ' ')"
        for i in $(seq 1 "$n"); do
            echo "t$i:"
            local args="--report-out=\$(OUT)/t$i.json x$i"
            if [ -n "$failures" ] && [ "$i" -eq 13 ]; then
                printf '\t/nonexistent/pspawn-missing-program\n'
                continue
            fi
            if [ -n "$failures" ] && [ $((i % 10)) -eq 0 ]; then args="$args --report-exit=2"; fi
            if [ -n "$failures" ] && [ $((i % 25)) -eq 0 ]; then args="$args --report-signal=15"; fi
            [ $((i % 2)) -eq 0 ] && printf '\t%s %s\n' "$pynamic" "p$i"
            printf '\t%s %s\n' "$report" "$args"
        done
    } >"$tmp/Makefile"
}

case $case in
probe)
    run_twice "env \$PRELOAD '$build/bin/intercept_spawn_probe' '$report' \"\$OUT\" > \"\$OUT/probe.txt\"" || fail "results differ"
    # Every successful case after the warm-up must have been served.
    python3 - "$tmp/intercepted.log" <<'PY' || fail "cases not served by the zygote"
import sys
served, current, cases = {}, None, []
for line in open(sys.argv[1]):
    if line.startswith("case "):
        current = line.split()[1]; cases.append(current); served.setdefault(current, False)
    elif current and "served by zygote" in line:
        served[current] = True
expected = [c for c in cases if c not in ("warmup", "open_missing", "dup2_closed", "chdir_missing",
            "spawnp_missing", "missing_file", "directory")]
missing = [c for c in expected if not served[c]]
print(f"{len(expected) - len(missing)} of {len(expected)} cases served by the zygote")
if missing: print("not served:", missing); sys.exit(1)
PY
    grep -q 'bad=0' "$tmp/intercepted/probe.txt" && ! grep -q 'bad=[1-9]' "$tmp/intercepted/probe.txt" ||
        fail "loops had failures"
    served_at_least 400
    ;;
fork | fork_pool)
    # A generous wait: under load a child may take more than the default 50 ms to reach exec,
    # which would make a case that must be served exec by itself (and this test flaky).
    # fork_pool: with a warm pool, every served case is handed to a parked child.
    export PSPAWN_INTERCEPT_FORK_WAIT_MS=10000
    [ "$case" = fork_pool ] && export PSPAWN_INTERCEPT_POOL=2
    run_twice "env \$PRELOAD '$build/bin/intercept_fork_probe' '$report' \"\$OUT\" > \"\$OUT/probe.txt\"" || fail "results differ"
    grep -q '^bad=0$' "$tmp/intercepted/probe.txt" || fail "fork's promises broken (pid, reaping): $(grep -v 'reaped_is_forked=1 reported_is_forked=1 none_left=1' "$tmp/intercepted/probe.txt" | head -3)"
    # Served: what a zygote child can be given; real exec: the rest (docs/design.md).
    python3 - "$tmp/intercepted.log" <<'PY' || fail "wrong cases served by the zygote"
import sys
served, current, cases = {}, None, []
for line in open(sys.argv[1]):
    if line.startswith("case "):
        current = line.split()[1]; cases.append(current); served.setdefault(current, False)
    elif current and "fork+exec" in line and "served by zygote" in line:
        served[current] = True
expected = {"plain", "exit7", "signal15", "dup2", "devnull_stdin", "chdir", "umask", "rlimit", "ignore", "mask", "pgroup", "close_range", "close_loop", "opath", "high_fd", "higher_fd", "slice_file"}
never = {"setsid", "pdeathsig", "unshare_uts", "unshare_user", "unshare_libc", "oom_adj", "dup2_64", "wait_parent", "no_exec", "killed", "missing", "sigchld_ignored", "threaded", "missing_then_exec", "raw_exec", "fork_inner", "vfork_inner", "spawn_inner", "nice"}
wrong = sorted(c for c in expected if not served.get(c)) + sorted(c for c in never if served.get(c))
print(f"served: {sorted(c for c in served if served[c])}")
if wrong: print("wrong:", wrong); sys.exit(1)
PY
    grep -q 'did not exec within' "$tmp/intercepted.log" && fail "fork waited out its time"
    # The forked child runs with the short slice until exec (slice.c), where the kernel
    # reports slices (6.12+); the programs exec'd keep the launcher's (compared above).
    grep -q '^launcher_slice_kept=1$' "$tmp/intercepted/probe.txt" || fail "the launcher's own slice changed"
    plain_slice=$(cat "$tmp/plain/slice_file.slice") forked_slice=$(cat "$tmp/intercepted/slice_file.slice")
    if [ "$plain_slice" -gt 100000 ]; then
        [ "$forked_slice" = 100000 ] || fail "the forked child's slice is $forked_slice ns, not 100000 (plain: $plain_slice)"
        for c in missing_then_exec vfork_inner; do # after a failed exec; in a vfork child
            [ "$(cat "$tmp/intercepted/$c.slice")" = "$plain_slice" ] || fail "$c: the short slice outlived the forked child"
        done
        rm -rf "$tmp/off" && mkdir "$tmp/off"
        PSPAWN_INTERCEPT_SLICE_US=0 LD_PRELOAD="$lib" "$build/bin/intercept_fork_probe" "$report" "$tmp/off" > "$tmp/off/probe.txt"
        [ "$(cat "$tmp/off/slice_file.slice")" = "$plain_slice" ] || fail "PSPAWN_INTERCEPT_SLICE_US=0 still changed the slice"
    else
        echo "the kernel reports no slice for fair tasks (before 6.12): the slice is not changed"
        [ "$forked_slice" = "$plain_slice" ] || fail "the slice changed on a kernel without slices"
    fi
    ;;
jobcontrol)
    export PSPAWN_INTERCEPT_FORK_WAIT_MS=10000 # only the sleep check may release these children
    python3 "$here/jobcontrol.py" "$lib" "$tmp/intercepted.log" || fail "a job did not get the terminal"
    grep -q 'leads the terminal' "$tmp/intercepted.log" || fail "the log does not say why the jobs exec'd by themselves"
    grep -q 'served by zygote' "$tmp/intercepted.log" && fail "a job-control child was served"
    grep -q 'did not exec within' "$tmp/intercepted.log" && fail "fork waited out its time for children that wait for it"
    ;;
make)
    makefile 300
    run_twice "env \$PRELOAD make -s -j2 -f '$tmp/Makefile'" || fail "results differ"
    served_at_least 400
    ;;
make_k)
    makefile 300 failures
    run_twice "env \$PRELOAD make -k -s -j2 -f '$tmp/Makefile'" || fail "results differ"
    grep -q '^2$' "$tmp/intercepted/status.txt" || fail "make -k should exit 2"
    served_at_least 400
    ;;
python | python_vfork)
    # python_vfork: PSPAWN_INTERCEPT_VFORK=1, so close_fds=True launches (vfork) are served too.
    [ "$case" = python_vfork ] && export PSPAWN_INTERCEPT_VFORK=1
    cat >"$tmp/workload.py" <<'PY'
import os, subprocess, sys
out, report, pynamic = os.environ["OUT"], os.environ["REPORT"], os.environ["PYNAMIC"]
with open(os.path.join(out, "results.txt"), "w") as f:
    for i in range(300):
        close = i % 3 == 0          # close_fds=True: Python forks (vfork) itself
        args = [report, f"--report-out={out}/p{i}.json", f"--report-exit={i % 4}"]
        if i % 50 == 7:
            args.append("--report-signal=9")
        r = subprocess.run(args, close_fds=close)
        subprocess.run([pynamic, str(i)], close_fds=close, check=True)
        f.write(f"{i} {r.returncode}\n")
    try:
        subprocess.run(["/nonexistent/pspawn-missing"], close_fds=False)
    except FileNotFoundError as e:
        f.write(f"missing {e.errno}\n")
    r = subprocess.run([report, "--report-exit=0"], close_fds=False, capture_output=True)
    f.write(f"captured {r.returncode} {len(r.stdout) > 0}\n")
PY
    # The interpreter itself, not a wrapper script (pyenv's shim would exec it without us).
    python=$(python3 -c 'import sys; print(sys.executable)')
    run_twice "env \$PRELOAD '$python' '$tmp/workload.py'" || fail "results differ"
    if [ "$case" = python_vfork ]; then
        served_at_least 550
        grep -q 'fork+exec.*served by zygote' "$tmp/intercepted.log" || fail "no vfork launch served"
    else
        served_at_least 350
        grep -q 'fork+exec.*served by zygote' "$tmp/intercepted.log" && fail "a vfork launch served without PSPAWN_INTERCEPT_VFORK=1"
    fi
    ;;
wait)
    # Launchers that wait for *any* child until ECHILD: the zygote's proxy is their child
    # too and must stay out of sight (wait.c): every wait style of libc, then real programs
    # with the idiom (Perl's `1 while wait() != -1`, Python's os.wait() loop). A wait that
    # blocked for ever would show as timeout's 124.
    run_twice "env \$PRELOAD '$build/bin/intercept_wait_probe' '$report' \"\$OUT\" > \"\$OUT/probe.txt\"; echo probe=\$?" ||
        fail "results differ"
    served_at_least 40
    command -v perl >/dev/null || { echo "SKIP: perl missing"; exit 77; }
    python=$(python3 -c 'import sys; print(sys.executable)') # not a wrapper script (pyenv)
    run_twice "timeout 60 env \$PRELOAD perl -e 'for my \$i (1..30) { my \$p = fork() // die; if (!\$p) { exec(\$ENV{REPORT}, \"--report-out=\$ENV{OUT}/p\$i.json\", \"--report-exit=\" . (\$i % 4)) or exit(127) } } my (\$n, \$sum) = (0, 0); while ((my \$w = wait()) != -1) { \$n++; \$sum += \$? >> 8 } print \"perl reaped \$n, exit codes \$sum\\n\"'; echo perl=\$?
        timeout 60 env \$PRELOAD '$python' -c '
import os
for i in range(30):
    if os.fork() == 0:
        os.execv(os.environ[\"REPORT\"], [\"report\", \"--report-out=%s/y%d.json\" % (os.environ[\"OUT\"], i)])
n = 0
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
    n += 1
print(\"python reaped\", n)'; echo python=\$?" || fail "results differ"
    served_at_least 50
    # With a warm pool (PSPAWN_INTERCEPT_POOL=2) the parked children are the launcher's
    # children too, and hidden the same way; the spawns are handed to them.
    export PSPAWN_INTERCEPT_POOL=2
    run_twice "env \$PRELOAD '$build/bin/intercept_wait_probe' '$report' \"\$OUT\" > \"\$OUT/probe.txt\"; echo probe=\$?" ||
        fail "results differ with a pool"
    served_at_least 40
    ;;
exec)
    # A launcher that execs itself into another program: its zygotes' proxies (and parked
    # children) must not outlive it as children of the next program, which would see them
    # exit; the children it launched stay, as they do without us. The next program here is
    # not preloaded (the interceptor removes itself from LD_PRELOAD) and waits for every
    # child until ECHILD, counting them and their exit codes; some are still running.
    command -v perl >/dev/null || { echo "SKIP: perl missing"; exit 77; }
    body='for my $i (1..12) { my $p = fork() // die; if (!$p) { exec($ENV{REPORT}, "--report-out=$ENV{OUT}/e$i.json", "--report-exit=" . ($i % 3), "--report-sleep-ms=" . ($i % 2 ? 300 : 0)) or exit(127) } } if ($ENV{FAIL_FIRST}) { exec("/nonexistent/pspawn-missing") and die; print "exec failed\n"; for my $i (13..24) { my $p = fork() // die; if (!$p) { exec($ENV{REPORT}, "--report-out=$ENV{OUT}/e$i.json", "--report-exit=" . ($i % 3)) or exit(127) } } } exec("perl", "-e", q{my ($n, $sum) = (0, 0); while ((my $w = wait()) != -1) { $n++; $sum += $? >> 8 } print "after exec: reaped $n, exit codes $sum\n"}) or die "exec: $!"'
    for pool in 0 2; do
        export PSPAWN_INTERCEPT_POOL=$pool
        run_twice "timeout 60 env \$PRELOAD perl -e '$body'; echo perl=\$?" || fail "results differ (pool $pool)"
        served_at_least 10
        grep -q 'ended before exec' "$tmp/intercepted.log" || fail "no zygote ended before the exec (pool $pool)"
    done
    # An exec that fails first: the launcher goes on with its zygotes ended, starts them
    # again on demand, and its next program still sees only the children it launched.
    export PSPAWN_INTERCEPT_POOL=0 FAIL_FIRST=1
    run_twice "timeout 60 env \$PRELOAD perl -e '$body'; echo perl=\$?" || fail "results differ (failed exec)"
    served_at_least 18
    grep -q 'ended for an exec that failed' "$tmp/intercepted.log" || fail "no zygote retired after the failed exec"
    [ "$(grep -c 'ended before exec' "$tmp/intercepted.log")" -ge 2 ] || fail "the restarted zygote was not ended before the last exec"
    ;;
fdlimit)
    # A launcher near its descriptor limit (soft 64, the hard one higher) opens files until
    # EMFILE after its zygote started: it gets as many as without the interceptor (the
    # zygote's descriptors live above the soft limit), and launches on afterwards.
    command -v perl >/dev/null || { echo "SKIP: perl missing"; exit 77; }
    [ "$(ulimit -H -n)" = unlimited ] || [ "$(ulimit -H -n)" -gt 64 ] || { echo "SKIP: hard RLIMIT_NOFILE <= 64"; exit 77; }
    body='for my $i (1..8) { system($ENV{REPORT}, "--report-out=$ENV{OUT}/f$i.json") } my @f; while (open(my $h, "<", "/dev/null")) { push @f, $h } print "opened ", scalar(@f), " files\n"; @f = (); for my $i (9..16) { system($ENV{REPORT}, "--report-out=$ENV{OUT}/f$i.json", "--report-exit=" . ($i % 3)); print "exit ", $? >> 8, "\n" }'
    # Descriptors inherited from whoever runs the test (above 64 they could not be placed
    # by any zygote child) are closed first.
    run_twice "for fd in \$(ls /proc/\$\$/fd); do [ \$fd -gt 2 ] && eval \"exec \$fd>&-\"; done; ulimit -S -n 64; env \$PRELOAD perl -e '$body'; echo perl=\$?" || fail "results differ"
    served_at_least 12
    ;;
libchange)
    # A build that rebuilds a library between runs of the program that links it: renamed
    # over (as linkers write), then overwritten in place (cp). Each run must print the
    # library's version of the moment, as an exec would: the zygote's proxy watches its
    # image's files (PSPAWN_CTX_WATCH_IMAGE), refuses with ESTALE once one changed, and
    # a new zygote starts. Through make (posix_spawn) and a bash loop (fork handoff).
    command -v gcc >/dev/null || { echo "SKIP: gcc missing"; exit 77; }
    cat >"$tmp/v.c" <<'EOF2'
const char *version(void) { return VERSION; }
EOF2
    cat >"$tmp/main.c" <<'EOF2'
#include <stdio.h>
const char *version(void);
int main(void) { printf("%s\n", version()); return 0; }
EOF2
    # lib VERSION: libv.so of that version, written as $LIBV.new.
    prepare='cd "$OUT" && gcc -shared -fPIC -DVERSION="\"v1\"" -o libv.so '"$tmp"'/v.c && gcc -o main '"$tmp"'/main.c -L. -lv -Wl,-rpath,"\$ORIGIN"'
    {
        echo "all: $(for i in $(seq 1 18); do printf 'r%d ' "$i"; done)"
        for i in $(seq 1 18); do
            printf 'r%d:%s\n' "$i" "$([ "$i" -gt 1 ] && printf ' r%d' $((i - 1)))"
            [ "$i" -eq 7 ] && printf '\tgcc -shared -fPIC -DVERSION=\\"v2\\" -o libv.so.new %s/v.c && mv libv.so.new libv.so\n' "$tmp"
            [ "$i" -eq 13 ] && printf '\tgcc -shared -fPIC -DVERSION=\\"v3\\" -o libv3.so %s/v.c && cp libv3.so libv.so\n' "$tmp"
            printf '\t./main\n'
        done
    } >"$tmp/Makefile.lib"
    run_twice "$prepare && env \$PRELOAD make -s -f '$tmp/Makefile.lib'; echo make=\$?" || fail "results differ (make)"
    served_at_least 6
    [ "$(grep -c 'errno 116' "$tmp/intercepted.log")" -ge 2 ] || fail "no zygote refused with ESTALE after both changes (make)"
    PRELOAD_SHELL=1 run_twice "$prepare && for v in 2 3 4; do for i in 1 2 3 4 5 6; do ./main; done; gcc -shared -fPIC -DVERSION=\"\\\"v\$v\\\"\" -o libv.so.new '$tmp/v.c' && if [ \$v = 3 ]; then cp libv.so.new libv.so; else mv libv.so.new libv.so; fi; done; ./main; ./main; echo bash=\$?" || fail "results differ (bash)"
    served_at_least 6
    [ "$(grep -c 'errno 116' "$tmp/intercepted.log")" -ge 2 ] || fail "no zygote refused with ESTALE after the changes (bash)"
    ;;
mergetext)
    # PSPAWN_CTX_MERGE_TEXT, on by default: a zygote child of a bash loop has fewer areas in
    # /proc/<pid>/maps than the same program exec'd (launches 1-2 are real calls, 3-6
    # served); with PSPAWN_INTERCEPT_MERGE_TEXT=0 it has at least as many (the proxy's
    # library is mapped in it too).
    areas() {
        env PSPAWN_DEBUG=1 PSPAWN_DEBUG_FILE="$log" PSPAWN_INTERCEPT_AFTER=2 "$@" LD_PRELOAD="$lib" bash -c '
            for i in 1 2 3 4 5 6; do
                "$0" --report-out=/dev/null --report-sleep-ms=2000 & p=$!
                sleep 0.3 # past its start-up
                echo "$(wc -l </proc/$p/maps)"
                kill $p; wait $p || :
            done' "$report"
    }
    merged=$(areas) || fail "the loop failed"
    grep -q "merge text 1" "$log" || fail "the interceptor did not say it merges"
    grep -q "served by zygote" "$log" || fail "nothing served"
    rm -f "$log"
    unmerged=$(areas PSPAWN_INTERCEPT_MERGE_TEXT=0) || fail "the loop failed"
    echo "areas, merged: $(echo $merged); PSPAWN_INTERCEPT_MERGE_TEXT=0: $(echo $unmerged)"
    set -- $merged
    [ "$#" -eq 6 ] && [ "$6" -lt "$1" ] && [ "$3" -lt "$1" ] || fail "served children do not have fewer areas: $merged"
    set -- $unmerged
    [ "$#" -eq 6 ] && [ "$6" -ge "$1" ] || fail "unmerged served children have fewer areas: $unmerged"
    ;;
xargs)
    run_twice "seq 1 150 | env \$PRELOAD xargs -P2 -I{} \"\$REPORT\" --report-out=\"\$OUT\"/x{}.json x{}; seq 1 100 | env \$PRELOAD xargs -P2 -n1 '$pynamic'; seq 1 50 | env \$PRELOAD xargs -P2 -I{} sh -c '\"\$REPORT\" --report-out=\"\$OUT\"/s{}.json --report-exit=\$(( {} % 3 ))'; echo xargs=\$?; seq 1 20 | env \$PRELOAD xargs -n1 '$build/bin/report' --report-exit=3 >/dev/null; echo exit3=\$?; seq 1 5 | env \$PRELOAD xargs -n1 /nonexistent/pspawn-missing; echo missing=\$?; seq 1 5 | env \$PRELOAD xargs -n1 '$build/bin/report' --report-signal=15 >/dev/null; echo signal=\$?" ||
        fail "results differ"
    # xargs forks and execs: served through the fork handoff (docs/design.md).
    served_at_least 240
    ;;
bash)
    # A non-interactive bash: plain commands, redirections, subshells that change the
    # working directory, umask, limits and ignored signals before exec, background jobs
    # (SIGINT/SIGQUIT ignored), pipelines, exits, signals, a missing program, a script.
    printf '#!/bin/sh\n"$REPORT" --report-out="$OUT/script.json" script\n' >"$tmp/script.sh"
    chmod +x "$tmp/script.sh"
    PRELOAD_SHELL=1 run_twice "echo \$\$ > \"\$OUT/LAUNCHER_PID\"; for i in \$(seq 1 150); do \"\$REPORT\" --report-out=\"\$OUT/b\$i.json\" --report-exit=\$((i % 3)); echo \"\$i \$?\"; \"\$PYNAMIC\"; done
        for i in 1 2 3 4 5 6; do
            \"\$REPORT\" --report-out=\"\$OUT/redirect\$i.json\" </dev/null 3>\"\$OUT/three\$i.out\" 2>&1
            (cd /tmp && \"\$REPORT\" --report-out=\"\$OUT/cd\$i.json\")
            (umask 077; \"\$REPORT\" --report-out=\"\$OUT/umask\$i.json\")
            (ulimit -n 512; \"\$REPORT\" --report-out=\"\$OUT/ulimit\$i.json\")
            (trap '' HUP USR1; \"\$REPORT\" --report-out=\"\$OUT/trap\$i.json\")
            \"\$REPORT\" --report-out=\"\$OUT/bg\$i.json\" & wait \$!; echo \"bg \$?\"
            \"\$REPORT\" --report-out=\"\$OUT/pipe\$i.json\" | cat >/dev/null; echo \"pipe \${PIPESTATUS[*]}\"
            \"\$REPORT\" --report-out=\"\$OUT/sig\$i.json\" --report-signal=15; echo \"signal \$?\"
            \"$tmp/script.sh\"; echo \"script \$?\"
        done
        /nonexistent/pspawn-missing; echo missing=\$?" ||
        fail "results differ"
    served_at_least 300
    ;;
others)
    # Real programs nobody here wrote, launching through fork + exec: find -exec, tar -z
    # (gzip), perl's system() and qx//, pipelines of sed and tr, xargs -0 and sh -c.
    command -v perl >/dev/null && command -v tar >/dev/null && command -v gzip >/dev/null ||
        { echo "SKIP: perl, tar or gzip missing"; exit 77; }
    PRELOAD_SHELL=1 run_twice "find /usr/share/doc -maxdepth 1 -name 'lib*' -exec /bin/echo {} \\; | sort > \"\$OUT/find.txt\"
        for i in 1 2 3 4 5; do tar -czf \"\$OUT/a.tgz\" -C /usr/share/doc bash 2>/dev/null; tar -tzf \"\$OUT/a.tgz\" | wc -l; done; rm -f \"\$OUT/a.tgz\"
        perl -e 'for (1..10) { system(\"/bin/echo\", \$_) == 0 or die } print qx(/bin/echo qx); exit(system(\"/bin/false\") >> 8)'; echo perl=\$?
        for i in \$(seq 1 30); do echo \$i | sed s/1/X/ | tr X Y; done
        printf '%s\\0' a b c d e f g | xargs -0 -n1 /bin/echo
        seq 1 40 | xargs -n 4 -P 3 sh -c 'echo \$((\$1+\$2))' _" || fail "results differ"
    served_at_least 60
    ;;
chaos)
    # Someone SIGKILLs the interceptor's proxies (the launcher's children that carry the
    # proxy's configuration variable) every 10 ms while make -j2 and xargs -P2 run: every
    # launch must still happen exactly once (--report-once exits 98 on a second start) and
    # the results must be the plain run's. The killer runs in both runs (it finds nothing
    # in the plain one).
    {
        echo "all: $(seq -f 't%g' 1 300 | tr '\n' ' ')"
        for i in $(seq 1 300); do
            printf 't%d:\n\t%s --report-once=$(OUT)/once.t%d --report-out=$(OUT)/t%d.json x%d\n' "$i" "$report" "$i" "$i" "$i"
            [ $((i % 2)) -eq 0 ] && printf '\t%s p%d\n' "$pynamic" "$i"
        done
    } >"$tmp/Makefile"
    # hunt PID: kills PID's proxies until PID exits, then waits for it and prints its status.
    hunt='hunt() {
        while kill -0 $1 2>/dev/null; do
            for p in $(cat /proc/$1/task/$1/children 2>/dev/null); do
                if { tr "\\0" "\\n" </proc/$p/environ; } 2>/dev/null | grep -q "^PSPAWN_PROXY_CONFIG="; then
                    kill -9 $p 2>/dev/null && echo $p >>"$OUT/killed"
                fi
            done
            sleep 0.01
        done
        wait $1; echo "$2=$?"
    }'
    # make (posix_spawn), then xargs (the fork handoff).
    run_twice "$hunt
        env \$PRELOAD make -s -j2 -f '$tmp/Makefile' & hunt \$! make
        seq 1 200 | env \$PRELOAD xargs -P2 -I{} \"\$REPORT\" --report-once=\"\$OUT\"/once.x{} --report-out=\"\$OUT\"/x{}.json x{} & hunt \$! xargs" ||
        fail "results differ"
    kills=$(wc -l <"$tmp/intercepted/killed" 2>/dev/null || echo 0)
    echo "proxies killed: $kills"
    [ "$kills" -ge 3 ] || fail "the killer found only $kills proxies to kill"
    [ ! -e "$tmp/plain/killed" ] || fail "the plain run had proxies"
    grep -q '^make=0$' "$tmp/intercepted/stdout.txt" || fail "make failed"
    grep -q '^xargs=0$' "$tmp/intercepted/stdout.txt" || fail "xargs failed"
    served_at_least 200
    grep -q 'fork+exec.*served by zygote' "$tmp/intercepted.log" || fail "no xargs launch served (fork handoff)"
    ;;
closefds)
    # A launcher taking back descriptor numbers the zygotes hold (closefrom, close_range,
    # close, dup2 over them), then putting files of its own there: its files must stay its
    # own (close_probe checks inodes and contents), each zygote is abandoned without
    # touching those numbers, and later launches are served by a new one.
    run_twice "env \$PRELOAD '$build/bin/intercept_close_probe' '$report' \"\$OUT\" > \"\$OUT/probe.txt\"; echo probe=\$?" ||
        fail "results differ"
    grep -q 'A FILE OF OURS CHANGED' "$tmp/intercepted/probe.txt" && fail "the zygote touched the launcher's descriptors"
    grep -c 'our files intact' "$tmp/intercepted/probe.txt" | grep -qx 4 || fail "not every case ran"
    n=$(grep -c 'it is abandoned' "$tmp/intercepted.log")
    echo "zygotes abandoned: $n"
    [ "$n" -ge 4 ] || fail "only $n zygotes abandoned, expected 4 (one per case)"
    served_at_least 8
    ;;
chroot)
    # A launcher that chroots after its zygote started: the zygote's children would start in
    # the old root, so nothing may be served after the chroot (the real call then fails as
    # in the plain run: no loader in the new root). The new root holds a hard link of the
    # report fixture at its own path (same file, same path) and the debug log's directory
    # (the log is opened by path for every line). Needs root.
    [ "$(id -u)" -eq 0 ] || { echo "SKIP: chroot needs root"; exit 77; }
    root=$tmp/root
    mkdir -p "$root$(dirname "$report")" "$root$tmp"
    ln "$report" "$root$report" 2>/dev/null || { echo "SKIP: the build tree and $tmp are on different file systems"; exit 77; }
    run_twice "env \$PRELOAD '$build/bin/intercept_root_probe' '$report' '$root' \"\$OUT\" > \"\$OUT/probe.txt\"; echo probe=\$?" ||
        fail "results differ"
    grep -q 'after 0: rc=No such file or directory' "$tmp/intercepted/probe.txt" || fail "a launch after the chroot did not fail as posix_spawn's"
    grep -q 'root directory changed (chroot)' "$root$log" || fail "the log (in the new root) does not say why"
    served_at_least 1
    ;;
identity)
    # A launcher that changes what children inherit after a zygote started (oom_score_adj;
    # as root a seccomp filter on top, then its UTS namespace, then a second thread's, which
    # spawns and starts a zygote the main thread spawns from, then a third thread's
    # seccomp filter), each while a fresh zygote
    # (of another copy of the fixture) serves: those launches must be real (identity_probe
    # prints whether each child has the launcher's current value).
    cp -p "$report" "$tmp/report2" && cp -p "$report" "$tmp/report3" && cp -p "$report" "$tmp/report4" && cp -p "$report" "$tmp/report5" && cp -p "$report" "$tmp/report6" || fail "cannot copy the fixture"
    run_twice "env \$PRELOAD '$build/bin/intercept_identity_probe' '$report' '$tmp/report2' '$tmp/report3' '$tmp/report4' '$tmp/report5' '$tmp/report6' \"\$OUT\" > \"\$OUT/probe.txt\"; echo probe=\$?" ||
        fail "results differ"
    grep -q 'oom0: oom_score_adj 300' "$tmp/intercepted/probe.txt" || fail "a child did not get the launcher's new oom_score_adj"
    grep -q 'oom_score_adj changed' "$tmp/intercepted.log" || fail "the log does not say why (oom_score_adj)"
    if [ "$(id -u)" -eq 0 ]; then
        grep -q 'seccomp0: has the launcher.s seccomp filters: yes' "$tmp/intercepted/probe.txt" || fail "a child escaped the launcher's seccomp filter"
        grep -q 'a seccomp filter was installed' "$tmp/intercepted.log" || fail "the log does not say why (seccomp)"
        grep -q 'uts0: in the launcher.s new UTS namespace: yes' "$tmp/intercepted/probe.txt" || fail "a child is not in the launcher's namespace"
        grep -q 'namespaces changed' "$tmp/intercepted.log" || fail "the log does not say why (namespaces)"
        grep -q 'thread0: in the spawning thread.s new UTS namespace: yes' "$tmp/intercepted/probe.txt" || fail "a child is not in its spawning thread's namespace"
        grep -q 'main0: in the main thread.s UTS namespace: yes' "$tmp/intercepted/probe.txt" || fail "a child got the namespace of the thread that started the zygote"
        grep -q 'tseccomp0: has the spawning thread.s seccomp filters: yes' "$tmp/intercepted/probe.txt" || fail "a child escaped its spawning thread's seccomp filter"
    fi
    served_at_least 2
    ;;
ninja)
    # ninja (posix_spawn of /bin/sh -c: a pipe onto 1 and 2, /dev/null opened onto 0, the
    # old signal mask, SIGDEF and a group of its own per job; the console pool keeps the
    # terminal's descriptors and group), with failing, killed and missing commands under -k 0.
    {
        echo 'rule rep'
        echo '  command = "$$REPORT" --report-out=$out $args && echo done $out'
        echo 'rule pyn'
        echo '  command = "$$PYNAMIC" $args'
        echo 'rule missing'
        echo '  command = /nonexistent/pspawn-missing'
        echo 'rule console'
        echo '  command = "$$REPORT" --report-out=$out console'
        echo '  pool = console'
        for i in $(seq 1 150); do
            args="n$i"
            [ $((i % 10)) -eq 0 ] && args="$args --report-exit=2"
            [ $((i % 25)) -eq 0 ] && args="$args --report-signal=15"
            printf 'build n%d.json: rep\n  args = %s\n' "$i" "$args"
            [ $((i % 3)) -eq 0 ] && printf 'build p%d: pyn\n  args = %d\n' "$i" "$i"
        done
        echo 'build missing: missing'
        for i in 1 2 3; do echo "build console$i.json: console"; done
    } >"$tmp/build.ninja"
    # NINJA_STATUS: no "[finished/total]" prefix, whose numbers follow the order jobs end in.
    # A console job inherits ninja's end of its output pipe, numbered after ninja's own
    # descriptors, which the interceptor's shift (docs/design.md): compared by count.
    COMPARE_OPTIONS=--renumbered-fds run_twice "env NINJA_STATUS= \$PRELOAD ninja -k 0 -j2 -f '$tmp/build.ninja'; echo ninja=\$?" || fail "results differ"
    grep -q '^ninja=1$' "$tmp/intercepted/stdout.txt" || fail "ninja -k 0 should exit 1 with failed commands"
    served_at_least 150
    ;;
rust)
    # An unmodified Rust program (std::process::Command: posix_spawnp with file actions and
    # attributes, fork + exec with a pre_exec hook), built here with rustc.
    rustc --edition 2018 -O -o "$tmp/command_probe" "$here/command_probe.rs" || fail "rustc could not build command_probe.rs"
    run_twice "env \$PRELOAD '$tmp/command_probe' \"\$REPORT\" \"\$PYNAMIC\" \"\$OUT\"" || fail "results differ"
    served_at_least 250
    grep -q 'fork+exec.*served by zygote' "$tmp/intercepted.log" || fail "no pre_exec (fork + exec) launch served"
    ;;
options)
    # PSPAWN_INTERCEPT_DENY: nothing of report is served, results unchanged.
    export PSPAWN_INTERCEPT_DENY=report
    run_twice "env \$PRELOAD '$build/bin/intercept_spawn_probe' '$report' \"\$OUT\" > \"\$OUT/probe.txt\"" || fail "results differ"
    unset PSPAWN_INTERCEPT_DENY
    if grep -q 'served by zygote' "$tmp/intercepted.log"; then fail "a denied executable was served"; fi
    grep -q 'not allowed' "$tmp/intercepted.log" || fail "the log does not say why"
    # PSPAWN_INTERCEPT_INHERIT=1: served children keep the interceptor in LD_PRELOAD.
    mkdir -p "$tmp/inherit"
    PSPAWN_INTERCEPT_INHERIT=1 PSPAWN_DEBUG=1 PSPAWN_DEBUG_FILE="$tmp/inherit.log" LD_PRELOAD="$lib" \
        "$build/bin/intercept_spawn_probe" "$report" "$tmp/inherit" >/dev/null || fail "probe failed"
    grep -q "\"LD_PRELOAD=$lib\"" "$tmp/inherit/plain.json" || fail "the child lost the interceptor"
    grep -q 'served by zygote' "$tmp/inherit.log" || fail "nothing served with INHERIT"
    ;;
dotnet | dotnet_threads)
    # An unmodified .NET program: Process.Start vforks and execs from a multi-threaded
    # process, so by default nothing is served; the interceptor must not change any result,
    # and its children must not load it. dotnet_threads: PSPAWN_INTERCEPT_VFORK=1 and
    # PSPAWN_INTERCEPT_THREADS=1 serve them through the fork handoff, with the same results.
    [ "$case" = dotnet_threads ] && export PSPAWN_INTERCEPT_VFORK=1 PSPAWN_INTERCEPT_THREADS=1
    app=
    for config in Release Debug; do
        candidate=$here/ProcessStartLauncher/bin/$config/net10.0/ProcessStartLauncher
        [ -x "$candidate" ] && app=$candidate && break
    done
    [ -n "$app" ] || { echo "SKIP: ProcessStartLauncher is not built (dotnet build PSpawn.sln builds it)"; exit 77; }
    COMPARE_OPTIONS="--unordered-env --transient-fds" run_twice "env \$PRELOAD '$app' '$report' '$pynamic' \"\$OUT\"" || fail "results differ"
    grep -q 'loaded' "$tmp/intercepted.log" || fail "the interceptor was not loaded"
    if [ "$case" = dotnet_threads ]; then
        served_at_least 250
    elif grep -q 'served by zygote' "$tmp/intercepted.log"; then
        fail "a vfork launch of a multi-threaded launcher was served without the opt-ins"
    fi
    ;;
*)
    echo "unknown case $case"
    exit 2
    ;;
esac
echo "PASS intercept.$case"
