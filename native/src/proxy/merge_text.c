/* PSP_CONFIG_MERGE_TEXT: fewer mappings for every fork and every child's exit.
 *
 * A library linked with -z separate-code (binutils' default since 2.31) is mapped as five
 * or six areas: its headers and symbol tables (r--), its text (r-x), its read-only data
 * (r--), its RELRO (r--) and its data (rw-, and a bss). The first three are consecutive
 * pages of the file at consecutive addresses, apart only in protection; giving the two
 * read-only ones the text's protection lets the kernel merge all three into one area, the
 * layout linkers produced before separate-code. fork() copies, and exit() tears down,
 * every area one by one (~0.7 µs each in fork, ~1 µs in exit and reap here), so a zygote
 * of pynamic100 (100 libraries) goes from 547 areas to 339 for each of its children.
 *
 * The price: those read-only pages become executable in the proxy and its children (not
 * writable: no page is both). The RELRO area is never touched. Best effort: an area the
 * kernel refuses to change (a sealed mapping, a security module) keeps its protection. */
#include <stdlib.h>
#include <sys/mman.h>

#include "proxy/proxy.h"

#define TEXT (PROT_READ | PROT_EXEC)

/* b follows a in the same file: adjacent addresses and file offsets. */
static bool continues(const struct psp_mapping *a, const struct psp_mapping *b)
{
    return a->inode != 0 && a->inode == b->inode && a->dev == b->dev && a->private_copy && b->private_copy &&
           a->end == b->start && a->offset + (a->end - a->start) == b->offset;
}

int psp_merge_text(void)
{
    struct psp_mapping *list;
    size_t n;
    int err = psp_read_mappings(&list, &n);
    if (err != 0)
        return err;
    int merged = 0;
    for (size_t i = 0; i < n; i++) {
        struct psp_mapping *m = &list[i];
        if (m->prot != PROT_READ)
            continue;
        bool after_text = i > 0 && list[i - 1].prot == TEXT && continues(&list[i - 1], m);
        bool before_text = i + 1 < n && list[i + 1].prot == TEXT && continues(m, &list[i + 1]);
        /* Neighbours by their protection as loaded: only the areas right before and after
         * a text area change, never a second one behind them (a RELRO area). */
        if ((after_text || before_text) && mprotect((void *)m->start, m->end - m->start, TEXT) == 0)
            merged++;
    }
    free(list);
    return merged;
}
