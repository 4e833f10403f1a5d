/* What the intercept probes share: their children, and a launch through posix_spawn. */
#ifndef PSPAWN_TESTS_INTERCEPT_PROBE_H
#define PSPAWN_TESTS_INTERCEPT_PROBE_H

#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* The children of the calling thread's process, from /proc/self/task/<pid>/children (the
 * main thread's: the probes fork from it). */
/* Up to `capacity` child pids into list; returns how many. */
static inline int list_children(pid_t *list, int capacity)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/self/task/%d/children", (int)getpid());
    FILE *f = fopen(path, "r");
    size_t n = f != NULL ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f != NULL)
        fclose(f);
    buf[n] = '\0';
    int count = 0;
    for (char *save = NULL, *tok = strtok_r(buf, " \n", &save); tok != NULL && count < capacity;
         tok = strtok_r(NULL, " \n", &save)) {
        pid_t pid = (pid_t)atoi(tok);
        if (pid > 0)
            list[count++] = pid;
    }
    return count;
}

/* Launches exe with argv (the caller's environment) through posix_spawn, as a launcher
 * would, and waits for it: posix_spawn's result; *status the wait status (0 if none). */
static inline int spawn_and_wait(const char *exe, char *const argv[], int *status)
{
    pid_t pid;
    int rc = posix_spawn(&pid, exe, NULL, NULL, argv, environ);
    *status = 0;
    if (rc == 0)
        waitpid(pid, status, 0);
    return rc;
}

#endif
