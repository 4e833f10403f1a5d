/* A part of a plan as one request in a slot's region of the segment: how much it
 * needs, how many instances fit, and its encoding (part.c). */
#ifndef PSPAWN_LAUNCHER_PART_H
#define PSPAWN_LAUNCHER_PART_H

#include "launcher/internal.h"

/* Instances per part when pipes travel (pspawn.h says why). */
#define PSP_MAX_PIPED_BATCH PSPAWN_MAX_PIPED_BATCH

/* What a part's request needs, instance by instance. */
struct part_size {
    int count;
    uint32_t sets;
    uint32_t cpusets;
    uint64_t string_bytes;
    uint64_t bytes; /* total, with alignment slack */
};

static inline uint64_t psp_align64(uint64_t v)
{
    return (v + 63) & ~(uint64_t)63;
}

/* Bytes of the region a part of that size needs, alignment slack included. */
uint64_t psp_part_bytes(const struct part_size *ps, size_t option_bytes);
/* How many of todo[0..n) fit in `limit` bytes (into *ps). Uses the plan's stamps:
 * afterwards set_stamp[s] == plan->stamp for the sets the part uses. */
void psp_part_fit(struct psp_plan *plan, const int *todo, int n, uint64_t limit, size_t option_bytes, int max_count,
                  struct part_size *ps);
/* Writes the part's request into [lo, lo + len) of the segment (the slot is ours: no
 * lock needed); the caller's descriptors for the options go to shared_fds. */
void psp_part_encode(struct psp_channel *ch, struct psp_plan *plan, const int *todo, const struct part_size *ps,
                     uint64_t lo, uint64_t len, size_t option_bytes, struct psp_request *req, int *shared_fds,
                     int *nshared);

#endif
