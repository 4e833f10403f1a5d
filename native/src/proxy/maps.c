/* The proxy's own mappings, from /proc/self/maps (proxy.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "proxy/proxy.h"

int psp_read_mappings(struct psp_mapping **out, size_t *count)
{
    FILE *maps = fopen("/proc/self/maps", "re");
    if (maps == NULL)
        return errno;
    size_t cap = 512, n = 0;
    struct psp_mapping *list = malloc(cap * sizeof(*list));
    char line[4096];
    while (list != NULL && fgets(line, sizeof(line), maps) != NULL) {
        struct psp_mapping m;
        unsigned major, minor;
        char perms[5];
        if (sscanf(line, "%lx-%lx %4s %lx %x:%x %lu", &m.start, &m.end, perms, &m.offset, &major, &minor,
                   &m.inode) != 7)
            continue;
        m.dev = ((unsigned long)major << 20) | minor;
        m.prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
                 (perms[2] == 'x' ? PROT_EXEC : 0);
        m.private_copy = perms[3] == 'p';
        if (n == cap) {
            struct psp_mapping *grown = realloc(list, (cap *= 2) * sizeof(*list));
            if (grown == NULL) {
                free(list);
                list = NULL;
                break;
            }
            list = grown;
        }
        list[n++] = m;
    }
    fclose(maps);
    if (list == NULL)
        return ENOMEM;
    *out = list;
    *count = n;
    return 0;
}
