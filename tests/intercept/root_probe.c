/* root_probe REPORT ROOT OUTDIR: a launcher that chroots after its zygote started (root
 * only). It launches REPORT a few times (served from the third on, when preloaded), then
 * chroots into ROOT, which holds a hard link of REPORT at the same path, and launches it
 * again: the same file by the same path, but a child must now start in the new root,
 * where the program's loader does not exist (ENOENT), as posix_spawn says; a zygote child
 * would start in the old root instead. Prints each result; exit 77 without the privilege. */
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "probe.h"

static void launch(const char *report, const char *when, const char *outdir, int k)
{
    char out[4200];
    snprintf(out, sizeof(out), "--report-out=%s/%s%d.json", outdir, when, k);
    char *argv[] = {(char *)report, out, "--report-exit=3", NULL};
    int status;
    int rc = spawn_and_wait(report, argv, &status);
    printf("%s %d: rc=%s exit=%d\n", when, k, rc == 0 ? "0" : strerror(rc), WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: root_probe REPORT ROOT OUTDIR\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int k = 0; k < 4; k++)
        launch(argv[1], "before", argv[3], k);
    if (chroot(argv[2]) != 0 || chdir("/") != 0) {
        printf("chroot: %s\n", strerror(errno));
        return errno == EPERM ? 77 : 2;
    }
    for (int k = 0; k < 2; k++)
        launch(argv[1], "after", argv[3], k);
    return 0;
}
