/* The children of the calling thread's process, from /proc/self/task/<pid>/children (the
 * main thread's: the probes fork from it). Shared by the intercept probes. */
#ifndef PSPAWN_TESTS_INTERCEPT_CHILDREN_H
#define PSPAWN_TESTS_INTERCEPT_CHILDREN_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

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

#endif
