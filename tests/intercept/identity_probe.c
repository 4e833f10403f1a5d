/* identity_probe REPORT OUTDIR: a launcher that changes what its children inherit after its
 * zygote started: its oom_score_adj, then (as root) its UTS namespace. posix_spawn's children
 * get the new ones; a zygote child would get the proxy's, so the interceptor must make those
 * launches for real. Each child's report (OUTDIR/NAME.out, not compared as files) is read back
 * and what matters printed: whether it has the launcher's current value. */
#include <fcntl.h>
#include <sched.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
static const char *report, *outdir;

/* Launches the report fixture into OUTDIR/name.out; returns the value of `field` in it. */
static long long launch(const char *name, const char *field)
{
    char path[4200], option[4300];
    snprintf(path, sizeof(path), "%s/%s.out", outdir, name);
    snprintf(option, sizeof(option), "--report-out=%s", path);
    char *argv[] = {(char *)report, option, NULL};
    pid_t pid;
    if (posix_spawn(&pid, report, NULL, NULL, argv, environ) != 0)
        return -1;
    waitpid(pid, NULL, 0);
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

static long long own_ns(const char *name)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/ns/%s", name);
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_ino : -1;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: identity_probe REPORT OUTDIR\n");
        return 2;
    }
    report = argv[1];
    outdir = argv[2];
    setvbuf(stdout, NULL, _IOLBF, 0);
    char name[32];
    for (int k = 0; k < 4; k++) {
        snprintf(name, sizeof(name), "before%d", k);
        printf("%s: oom_score_adj %lld\n", name, launch(name, "oom_score_adj"));
    }
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "300", 3) != 3)
        return 2;
    close(fd);
    for (int k = 0; k < 2; k++) {
        snprintf(name, sizeof(name), "oom%d", k);
        printf("%s: oom_score_adj %lld (the launcher's is 300)\n", name, launch(name, "oom_score_adj"));
    }
    if (geteuid() != 0 || unshare(CLONE_NEWUTS) != 0) {
        printf("uts: skipped (needs root)\n");
        return 0;
    }
    for (int k = 0; k < 2; k++) {
        snprintf(name, sizeof(name), "uts%d", k);
        long long child = launch(name, "uts_ns");
        printf("%s: in the launcher's new UTS namespace: %s\n", name, child == own_ns("uts") ? "yes" : "no");
    }
    return 0;
}
