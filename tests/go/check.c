/* What the core does with one executable: create a context (errno on failure), then
 * with PSPAWN_CTX_FALLBACK; spawn it `n` times and wait. Prints one line per step.
 * Usage: check PATH N. Exit 0 if every spawned instance exited 0. */
#define _GNU_SOURCE /* strerrorname_np */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "pspawn.h"

static int spawn_and_wait(pspawn_context_t *ctx, const char *path, int n)
{
    char *argv[] = {(char *)path, NULL};
    int failed = 0;
    for (int i = 0; i < n; i++) {
        pid_t pid = pspawn(ctx, argv);
        int status = 0;
        if (pid < 0 || pspawn_waitpid(ctx, pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed++;
    }
    return failed;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    int n = atoi(argv[2]);
    pspawn_context_t ctx;
    if (pspawn_context_create(&ctx, argv[1], -1) == 0) {
        printf("create: ok, mode %d\n", pspawn_context_mode(&ctx));
        int failed = spawn_and_wait(&ctx, argv[1], n);
        printf("zygote spawns: %d of %d exited 0\n", n - failed, n);
        pspawn_context_destroy(&ctx);
        return failed != 0;
    }
    printf("create: %s (%d)\n", strerrorname_np(errno), errno);
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.flags = PSPAWN_CTX_FALLBACK;
    if (pspawn_context_create_ex(&ctx, argv[1], &attr) != 0) {
        printf("create with fallback: %s\n", strerrorname_np(errno));
        return 1;
    }
    printf("create with fallback: mode %d, reason %s\n", pspawn_context_mode(&ctx),
           strerrorname_np(pspawn_context_fallback_reason(&ctx)));
    int failed = spawn_and_wait(&ctx, argv[1], n);
    printf("fallback spawns: %d of %d exited 0\n", n - failed, n);
    pspawn_context_destroy(&ctx);
    return failed != 0;
}
