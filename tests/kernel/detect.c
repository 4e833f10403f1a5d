/* pspawn_detect: prints "present pspawn=N ipspawn=N abi=N", "absent", or
 * "unusable: REASON"; exit status 0, 1 and 2 respectively. */
#include <stdio.h>
#include <string.h>

#include "pspawn_sys.h"

int main(void)
{
    struct pspawn_sys sys;
    int r = pspawn_sys_detect(&sys);

    if (r > 0) {
        printf("present pspawn=%ld ipspawn=%ld abi=%d\n", sys.pspawn_nr, sys.ipspawn_nr,
               sys.abi_version);
        return 0;
    }
    if (r == 0) {
        printf("absent\n");
        return 1;
    }
    printf("unusable: %s\n", strerror(-r));
    return 2;
}
