/* Sizing a part and encoding it: the wire format of common/protocol.h, written by the
 * launcher into the region of the slot it holds. */
#include <string.h>

#include "launcher/part.h"

uint64_t psp_part_bytes(const struct part_size *ps, size_t option_bytes)
{
    return 8 * 64 + (uint64_t)ps->sets * sizeof(struct psp_wire_set) +
           (uint64_t)ps->count * (sizeof(struct psp_wire_instance) + 2 * sizeof(int32_t)) +
           (uint64_t)ps->cpusets * sizeof(cpu_set_t) + option_bytes + ps->string_bytes;
}

void psp_part_fit(struct psp_plan *plan, const int *todo, int n, uint64_t limit, size_t option_bytes, int max_count,
                struct part_size *ps)
{
    memset(ps, 0, sizeof(*ps));
    plan->stamp++;
    int cgroup = n > 0 ? psp_plan_instance_cgroup(plan, todo[0]) : -1;
    for (int j = 0; j < n && ps->count < max_count; j++) {
        const struct psp_plan_instance *in = &plan->instances[todo[j]];
        if (psp_plan_instance_cgroup(plan, todo[j]) != cgroup)
            break; /* one cgroup per request: the next part starts with this one */
        struct part_size next = *ps;
        next.count++;
        bool new_set = plan->set_stamp[in->set] != plan->stamp;
        bool new_cpus = in->cpuset >= 0 && plan->cpu_stamp[in->cpuset] != plan->stamp;
        if (new_set) {
            next.sets++;
            next.string_bytes += plan->sets[in->set].bytes;
        }
        next.cpusets += new_cpus;
        if (psp_part_bytes(&next, option_bytes) > limit)
            break;
        if (new_set)
            plan->set_stamp[in->set] = plan->stamp;
        if (new_cpus)
            plan->cpu_stamp[in->cpuset] = plan->stamp;
        *ps = next;
    }
}

void psp_part_encode(struct psp_channel *ch, struct psp_plan *plan, const int *todo, const struct part_size *ps,
                   uint64_t lo, uint64_t len, size_t option_bytes, struct psp_request *req, int *shared_fds,
                   int *nshared)
{
    char *base = (char *)ch->shared;
    bool table = ps->sets > 1 || ps->cpusets > 0;
    uint64_t cursor = lo;
    *req = (struct psp_request){.count = (uint32_t)ps->count, .set_count = ps->sets, .cpuset_count = ps->cpusets,
                                .cpuset_size = ps->cpusets ? sizeof(cpu_set_t) : 0,
                                .region_offset = lo, .region_length = len};
    req->results_offset = cursor;
    cursor = psp_align64(cursor + (uint64_t)ps->count * sizeof(int32_t));
    req->errors_offset = cursor;
    cursor = psp_align64(cursor + (uint64_t)ps->count * sizeof(int32_t));
    req->sets_offset = cursor;
    cursor = psp_align64(cursor + (uint64_t)ps->sets * sizeof(struct psp_wire_set));
    if (table) {
        req->instances_offset = cursor;
        cursor = psp_align64(cursor + (uint64_t)ps->count * sizeof(struct psp_wire_instance));
    }
    if (ps->cpusets) {
        req->cpusets_offset = cursor;
        cursor = psp_align64(cursor + (uint64_t)ps->cpusets * sizeof(cpu_set_t));
    }
    *nshared = 0;
    if (plan->attr != NULL) {
        req->flags = PSP_REQ_OPTIONS;
        req->options_offset = cursor;
        req->options_length = option_bytes;
        psp_attr_encode(plan->attr, base + cursor, shared_fds);
        *nshared = (int)((struct psp_wire_options *)(base + cursor))->shared_fds;
        cursor = psp_align64(cursor + option_bytes);
    }
    req->strings_offset = cursor;
    struct psp_wire_set *sets = (struct psp_wire_set *)(base + req->sets_offset);
    struct psp_wire_instance *instances = table ? (struct psp_wire_instance *)(base + req->instances_offset) : NULL;
    cpu_set_t *cpusets = ps->cpusets ? (cpu_set_t *)(base + req->cpusets_offset) : NULL;
    uint32_t nsets = 0, ncpus = 0;
    char *strings = base + cursor;
    plan->stamp++;
    for (int j = 0; j < ps->count; j++) {
        const struct psp_plan_instance *in = &plan->instances[todo[j]];
        if (plan->set_stamp[in->set] != plan->stamp) {
            const struct psp_plan_set *set = &plan->sets[in->set];
            plan->set_stamp[in->set] = plan->stamp;
            plan->set_local[in->set] = nsets;
            sets[nsets++] = (struct psp_wire_set){.argc = (uint32_t)set->argc, .envc = (uint32_t)set->envc};
            psp_pack(strings, set->argv, set->envp);
            strings += set->bytes;
        }
        int32_t cpu = -1;
        if (in->cpuset >= 0) {
            if (plan->cpu_stamp[in->cpuset] != plan->stamp) {
                plan->cpu_stamp[in->cpuset] = plan->stamp;
                plan->cpu_local[in->cpuset] = ncpus;
                cpusets[ncpus++] = plan->cpusets[in->cpuset];
            }
            cpu = (int32_t)plan->cpu_local[in->cpuset];
        }
        if (instances != NULL)
            instances[j] = (struct psp_wire_instance){.set = plan->set_local[in->set], .cpuset = cpu};
    }
    req->strings_length = (uint64_t)(strings - (base + req->strings_offset));
    /* Zero: no child. The kernel itself writes each pid here as the proxy forks. */
    _Atomic int32_t *results = psp_results(ch->shared, req->results_offset);
    for (int j = 0; j < ps->count; j++)
        atomic_store_explicit(&results[j], 0, memory_order_relaxed);
}
