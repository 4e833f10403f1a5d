/* Pre-populating the proxy's file mappings so that children do not fault them in.
 *
 * fork() copies page-table entries only for mappings that have an anon_vma (kernel
 * mm/memory.c, vma_needs_copy): for a read-only file mapping such as library text it
 * copies nothing, and every child re-faults every page it touches. A mapping gets an
 * anon_vma on its first copy-on-write, so the proxy writes one byte of each private
 * file mapping back to itself (making it briefly writable), then populates the whole
 * mapping. From then on each fork copies the entries and children start warm. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "proxy/proxy.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

struct mapping {
    unsigned long start;
    unsigned long end;
    int prot;
};

static int read_mappings(struct mapping **out, size_t *count)
{
    FILE *maps = fopen("/proc/self/maps", "re");
    if (maps == NULL)
        return errno;
    size_t cap = 256, n = 0;
    struct mapping *list = malloc(cap * sizeof(*list));
    char line[4096];
    while (list != NULL && fgets(line, sizeof(line), maps) != NULL) {
        unsigned long start, end, inode;
        char perms[5];
        if (sscanf(line, "%lx-%lx %4s %*x %*x:%*x %lu", &start, &end, perms, &inode) != 4)
            continue;
        /* Private, readable, backed by a file: the mappings fork would not copy. */
        if (inode == 0 || perms[3] != 'p' || perms[0] != 'r')
            continue;
        if (n == cap) {
            struct mapping *grown = realloc(list, (cap *= 2) * sizeof(*list));
            if (grown == NULL)
                break;
            list = grown;
        }
        int prot = PROT_READ | (perms[1] == 'w' ? PROT_WRITE : 0) | (perms[2] == 'x' ? PROT_EXEC : 0);
        list[n++] = (struct mapping){start, end, prot};
    }
    fclose(maps);
    if (list == NULL)
        return ENOMEM;
    *out = list;
    *count = n;
    return 0;
}

/* Best effort: a mapping that cannot be made writable (a W^X policy) stays cold. */
static void warm(const struct mapping *m)
{
    void *addr = (void *)m->start;
    size_t len = m->end - m->start;
    if (!(m->prot & PROT_WRITE) && mprotect(addr, len, m->prot | PROT_WRITE) != 0)
        return;
    volatile char *first = (volatile char *)m->start;
    *first = *first;
    if (!(m->prot & PROT_WRITE))
        mprotect(addr, len, m->prot);
    madvise(addr, len, MADV_POPULATE_READ);
}

void psp_prefault_mappings(void)
{
    struct mapping *list;
    size_t n;
    if (read_mappings(&list, &n) != 0)
        return;
    for (size_t i = 0; i < n; i++)
        warm(&list[i]);
    free(list);
}
