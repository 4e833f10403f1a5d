/* identity_probe REPORT REPORT2 ... REPORT6 OUTDIR: a launcher that changes what its children
 * inherit after a zygote started: its oom_score_adj, then (as root) a second seccomp filter
 * on top of a first, its UTS namespace, the UTS namespace of a second thread that then
 * spawns and starts a zygote the main thread spawns from, and a seccomp filter of a third
 * thread that then spawns (namespaces and filters are per thread: posix_spawn's child gets
 * the calling thread's). posix_spawn's children get the new ones; a zygote
 * child would get the proxy's, so the interceptor must make those launches for real. Each
 * change is made while a fresh zygote (of another copy of the fixture, REPORT2-6) serves, so each is seen on its own. Each child's report (OUTDIR/NAME.out, not compared as
 * files) is read back and what matters printed: whether it has the launcher's value. */
#include <fcntl.h>
#include <pthread.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "probe.h"

static const char *outdir;

/* Launches `exe` (a report fixture) into OUTDIR/name.out; the value of `field` in it. */
static long long launch(const char *exe, const char *name, const char *field)
{
    char path[4200], option[4300];
    snprintf(path, sizeof(path), "%s/%s.out", outdir, name);
    snprintf(option, sizeof(option), "--report-out=%s", path);
    char *argv[] = {(char *)exe, option, NULL};
    int status;
    if (spawn_and_wait(exe, argv, &status) != 0)
        return -1;
    char buf[65536] = {0};
    FILE *f = fopen(path, "r");
    size_t n = f != NULL ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f != NULL)
        fclose(f);
    buf[n] = '\0';
    char key[64];
    snprintf(key, sizeof(key), "\"%s\":", field);
    const char *at = strstr(buf, key);
    return at != NULL ? atoll(at + strlen(key)) : -1;
}

/* A zygote for `exe` (launches 1-2 are real, 3-4 served), each child's `field` printed. */
static void warm(const char *exe, const char *name, const char *field)
{
    for (int k = 0; k < 4; k++) {
        char label[64];
        snprintf(label, sizeof(label), "%s%d", name, k);
        printf("%s: %s %lld\n", label, field, launch(exe, label, field));
    }
}

static long long own_status(const char *field)
{
    char buf[8192] = {0}, key[64];
    FILE *f = fopen("/proc/thread-self/status", "r");
    size_t n = f != NULL ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f != NULL)
        fclose(f);
    buf[n] = '\0';
    snprintf(key, sizeof(key), "\n%s:", field);
    const char *at = strstr(buf, key);
    return at != NULL ? atoll(at + strlen(key)) : -1;
}

static long long own_uts(void)
{
    struct stat st;
    return stat("/proc/thread-self/ns/uts", &st) == 0 ? (long long)st.st_ino : -1;
}

/* A third thread stacks a seccomp filter on its own (no TSYNC), then launches REPORT6. */
static void *filtering_thread(void *exe)
{
    struct sock_filter allow[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
    struct sock_fprog prog = {.len = 1, .filter = allow};
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
        printf("tseccomp: prctl failed\n");
        return NULL;
    }
    for (int k = 0; k < 2; k++) {
        long long child = launch(exe, "tseccomp", "seccomp_filters");
        printf("tseccomp%d: has the spawning thread's seccomp filters: %s\n", k,
               child == own_status("Seccomp_filters") ? "yes" : "no");
    }
    return NULL;
}

/* A second thread moves to a UTS namespace of its own, then launches REPORT4 twice (a
 * zygote the main thread started serves it), then starts a zygote of REPORT5 there. */
static void *spawning_thread(void *exes)
{
    char **exe = exes;
    if (unshare(CLONE_NEWUTS) != 0) {
        printf("thread: unshare failed\n");
        return NULL;
    }
    for (int k = 0; k < 2; k++) {
        long long child = launch(exe[0], "thread_uts", "uts_ns");
        printf("thread%d: in the spawning thread's new UTS namespace: %s\n", k, child == own_uts() ? "yes" : "no");
    }
    warm(exe[1], "tzygote", "oom_score_adj");
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr, "usage: identity_probe REPORT REPORT2 ... REPORT6 OUTDIR\n");
        return 2;
    }
    outdir = argv[7];
    setvbuf(stdout, NULL, _IOLBF, 0);

    warm(argv[1], "before", "oom_score_adj");
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "300", 3) != 3)
        return 2;
    close(fd);
    for (int k = 0; k < 2; k++)
        printf("oom%d: oom_score_adj %lld (the launcher's is 300)\n", k, launch(argv[1], "oom", "oom_score_adj"));

    if (geteuid() != 0) {
        printf("seccomp, uts: skipped (need root)\n");
        return 0;
    }
    /* A filter before the zygote starts, another one on top after: the seccomp mode stays
     * "filter", only the count tells. */
    struct sock_filter allow[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
    struct sock_fprog prog = {.len = 1, .filter = allow};
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
        return 2;
    warm(argv[2], "filters", "seccomp_filters");
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
        return 2;
    for (int k = 0; k < 2; k++) {
        long long child = launch(argv[2], "seccomp", "seccomp_filters");
        printf("seccomp%d: has the launcher's seccomp filters: %s\n", k, child == own_status("Seccomp_filters") ? "yes" : "no");
    }

    warm(argv[3], "ns", "oom_score_adj");
    if (unshare(CLONE_NEWUTS) != 0)
        return 2;
    for (int k = 0; k < 2; k++) {
        long long child = launch(argv[3], "uts", "uts_ns");
        printf("uts%d: in the launcher's new UTS namespace: %s\n", k, child == own_uts() ? "yes" : "no");
    }

    warm(argv[4], "tns", "oom_score_adj");
    pthread_t thread;
    char *exes[] = {argv[4], argv[5]};
    if (pthread_create(&thread, NULL, spawning_thread, exes) != 0 || pthread_join(thread, NULL) != 0)
        return 2;
    /* The main thread's namespace is not the one the REPORT5 zygote started in. */
    for (int k = 0; k < 2; k++) {
        long long child = launch(argv[5], "main_uts", "uts_ns");
        printf("main%d: in the main thread's UTS namespace: %s\n", k, child == own_uts() ? "yes" : "no");
    }

    warm(argv[6], "tfilters", "seccomp_filters");
    if (pthread_create(&thread, NULL, filtering_thread, argv[6]) != 0 || pthread_join(thread, NULL) != 0)
        return 2;
    return 0;
}
