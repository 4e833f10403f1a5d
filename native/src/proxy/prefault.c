/* Pre-populating the proxy's file mappings so that children do not fault them in.
 *
 * fork() copies page-table entries only for mappings that have an anon_vma (kernel
 * mm/memory.c, vma_needs_copy): for a read-only file mapping such as library text it
 * copies nothing, and every child re-faults every page it touches. A mapping gets an
 * anon_vma on its first copy-on-write, so the proxy writes one byte of each private
 * file mapping back to itself (making it briefly writable), then populates the whole
 * mapping. From then on each fork copies the entries and children start warm. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "proxy/proxy.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

/* Best effort: a mapping that cannot be made writable (a W^X policy) stays cold. */
static void warm(const struct psp_mapping *m)
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
    struct psp_mapping *list;
    size_t n;
    if (psp_read_mappings(&list, &n) != 0)
        return;
    /* Private, readable, backed by a file: the mappings fork would not copy. */
    for (size_t i = 0; i < n; i++)
        if (list[i].inode != 0 && list[i].private_copy && (list[i].prot & PROT_READ))
            warm(&list[i]);
    free(list);
}
