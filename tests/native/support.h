/* Support for the C tests: checks, fixtures, reading the report fixture's JSON. */
#ifndef PSPAWN_TEST_SUPPORT_H
#define PSPAWN_TEST_SUPPORT_H

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "pspawn.h"

#define CHECK(cond)                                                                              \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, "%s:%d: check failed: %s (errno %d: %s)\n", __FILE__, __LINE__, #cond, \
                    errno, strerror(errno));                                                     \
            exit(1);                                                                             \
        }                                                                                        \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                      \
    do {                                                                                        \
        long long a_ = (long long)(a), b_ = (long long)(b);                                     \
        if (a_ != b_) {                                                                         \
            fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, #a, \
                    a_, #b, b_);                                                                \
            exit(1);                                                                            \
        }                                                                                       \
    } while (0)

typedef void (*test_fn)(void);
struct test_case {
    const char *name;
    test_fn fn;
};
/* Runs the case named by argv[1] (or all, in-process, when none is named). */
int run_tests(int argc, char **argv, const struct test_case *cases, size_t count);

/* Absolute path of a fixture executable (artifacts/.../bin/<name>). */
const char *fixture(const char *name);

/* A fresh temporary directory for this test process. */
const char *temp_dir(void);
/* Writes root/rel with `content`, creating root and the directories on the way (for
 * fake sysfs and cgroup trees). */
void write_tree_file(const char *root, const char *rel, const char *content);
/* Creates a file in temp_dir() with the content and mode; returns its path. */
const char *make_file(const char *name, const char *content, unsigned mode);
/* Copies a file byte for byte; the copy gets `mode`. */
void copy_file(const char *from, const char *to, mode_t mode);
/* A byte-exact copy of a fixture in temp_dir() under `name`, with `mode`; returns its
 * path (the same rotating buffers as make_file). */
const char *copy_fixture(const char *fixture_name, const char *name, unsigned mode);

/* A launcher in a child process: it creates a context for `target` (exit 1 on failure),
 * reports the proxy's pid to us (*proxy), then runs body(ctx) and exits with what it
 * returns. The child is killed if we die first. Returns the child's pid. */
pid_t fork_launcher(const char *target, int (*body)(pspawn_context_t *ctx), pid_t *proxy);

/* Wait for pid (a child of ours) with a bound; returns the wait status. */
int wait_child(pid_t pid, int timeout_ms);

/* Reads a whole file; NULL if absent. */
char *read_file(const char *path);
/* Waits until the file exists and is complete (report writes by rename). */
char *await_file(const char *path, int timeout_ms);

/* The report fixture's JSON: a string array, an int array, an int, a string. */
char **json_strings(const char *json, const char *key, size_t *count);
long long *json_ints(const char *json, const char *key, size_t *count);
long long json_int(const char *json, const char *key);
char *json_string_value(const char *json, const char *key);
void free_strings(char **list, size_t count);

/* Open descriptors of this process; zombie children of this process. */
int count_open_fds(void);
int count_zombie_children(void);
/* A decimal field of /proc/<pid>/status ("VmRSS:", "Threads:"), or -1. */
long proc_status_field(pid_t pid, const char *field);
/* True if /proc/<pid> exists and is not a zombie. */
bool process_alive(pid_t pid);

#endif
