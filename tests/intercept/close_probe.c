/* close_probe REPORT OUTDIR: a launcher that takes descriptor numbers back while zygotes
 * hold some of them (it does not know they exist): closefrom(3), close_range, close one by
 * one, dup2 over every number. After each, it opens files of its own on the freed numbers
 * (or dup2s one everywhere) and launches again. Its files must stay its own: every
 * descriptor still refers to its file (same inode) and no byte was written into one.
 * Prints one line per case to stdout (compared with a plain run). */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "probe.h"

#define FIRST 3
#define LAST 63 /* above what a launcher and its zygotes hold here */
#define LAUNCHES 4

static const char *report, *outdir;
static int launch_count;

/* Launches the report fixture (served by a zygote from the third launch on, when preloaded). */
static void launch(const char *name)
{
    char out[4200];
    snprintf(out, sizeof(out), "--report-out=%s/%s%d.json", outdir, name, launch_count++);
    char *argv[] = {(char *)report, out, "--report-exit=3", NULL};
    int status;
    int rc = spawn_and_wait(report, argv, &status);
    printf("%s launch: rc=%d exit=%d\n", name, rc, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

static void launches(const char *name)
{
    for (int i = 0; i < LAUNCHES; i++)
        launch(name);
}

/* A file of ours on every number FIRST..LAST that is free, recording each inode. */
static void fill(const char *name, ino_t *inodes)
{
    for (int fd = FIRST; fd <= LAST; fd++) {
        inodes[fd] = 0;
        if (fcntl(fd, F_GETFD) >= 0)
            continue;
        char path[4200];
        snprintf(path, sizeof(path), "%s/%s.victim%d", outdir, name, fd);
        int got = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
        struct stat st;
        if (got >= 0 && got != fd) {
            if (dup2(got, fd) < 0)
                fd = LAST + 1;
            close(got);
        }
        if (fd <= LAST && write(fd, "hello", 5) == 5 && fstat(fd, &st) == 0)
            inodes[fd] = st.st_ino;
    }
}

/* Every recorded descriptor still refers to its file, which holds exactly "hello". */
static void check(const char *name, const ino_t *inodes)
{
    int files = 0, wrong = 0;
    for (int fd = FIRST; fd <= LAST; fd++) {
        if (inodes[fd] == 0)
            continue;
        files++;
        struct stat st;
        char buf[16] = {0};
        if (fstat(fd, &st) != 0 || st.st_ino != inodes[fd] || pread(fd, buf, sizeof(buf) - 1, 0) != 5 ||
            strcmp(buf, "hello") != 0)
            wrong++;
    }
    printf("%s: %s (%d descriptors of ours checked)\n", name, wrong == 0 ? "our files intact" : "A FILE OF OURS CHANGED",
           files);
    if (wrong != 0)
        fprintf(stderr, "%s: %d of %d descriptors no longer ours\n", name, wrong, files);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: close_probe REPORT OUTDIR\n");
        return 2;
    }
    report = argv[1];
    outdir = argv[2];
    static ino_t inodes[LAST + 1];
    setvbuf(stdout, NULL, _IOLBF, 0);

    launches("closefrom");
    closefrom(FIRST);
    fill("closefrom", inodes);
    launches("closefrom");
    check("closefrom", inodes);
    for (int fd = FIRST; fd <= LAST; fd++)
        if (inodes[fd] != 0)
            close(fd);

    launches("close_range");
    close_range(FIRST, ~0u, 0);
    fill("close_range", inodes);
    launches("close_range");
    check("close_range", inodes);
    close_range(FIRST, ~0u, 0);

    launches("close");
    for (int fd = FIRST; fd <= LAST; fd++)
        close(fd);
    fill("close", inodes);
    launches("close");
    check("close", inodes);
    close_range(FIRST, ~0u, 0);

    /* dup2 of one file of ours onto every number: the zygote's numbers among them. */
    launches("dup2");
    char path[4200];
    snprintf(path, sizeof(path), "%s/dup2.victim", outdir);
    int mine = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    struct stat st;
    if (mine < 0 || write(mine, "hello", 5) != 5 || fstat(mine, &st) != 0)
        return 1;
    for (int fd = FIRST; fd <= LAST; fd++) {
        inodes[fd] = st.st_ino;
        if (fd != mine && dup2(mine, fd) < 0)
            inodes[fd] = 0;
    }
    launches("dup2");
    check("dup2", inodes);
    return 0;
}
