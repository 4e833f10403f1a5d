#include "common/protocol.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int count_entries(char *const list[], size_t *bytes, int *count)
{
    size_t n = 0;
    for (; list[n] != NULL; n++) {
        size_t len = strlen(list[n]) + 1;
        if (*bytes > SIZE_MAX - len || n >= INT32_MAX - 1) {
            errno = E2BIG;
            return -1;
        }
        *bytes += len;
    }
    *count = (int)n;
    return 0;
}

int psp_measure(char *const argv[], char *const envp[], size_t *bytes, int *argc, int *envc)
{
    if (argv == NULL || envp == NULL) {
        errno = EINVAL;
        return -1;
    }
    *bytes = 0;
    if (count_entries(argv, bytes, argc) != 0 || count_entries(envp, bytes, envc) != 0)
        return -1;
    return 0;
}

static char *pack_list(char *dst, char *const list[])
{
    for (size_t i = 0; list[i] != NULL; i++) {
        size_t len = strlen(list[i]) + 1;
        memcpy(dst, list[i], len);
        dst += len;
    }
    return dst;
}

void psp_pack(char *dst, char *const argv[], char *const envp[])
{
    pack_list(pack_list(dst, argv), envp);
}

static int range_ok(uint64_t offset, uint64_t length, uint64_t data_offset, size_t mapped_size)
{
    return offset >= data_offset && offset <= mapped_size && length <= mapped_size - offset;
}

/* Point entries[0..n-1] at the consecutive NUL-terminated strings starting at *cursor. */
static int split_strings(char **entries, uint32_t n, char **cursor, const char *end)
{
    for (uint32_t i = 0; i < n; i++) {
        char *nul = memchr(*cursor, '\0', (size_t)(end - *cursor));
        if (nul == NULL)
            return EINVAL;
        entries[i] = *cursor;
        *cursor = nul + 1;
    }
    entries[n] = NULL;
    return 0;
}

static bool string_ok(const struct psp_wire_options *o, size_t length, uint32_t offset, uint32_t len)
{
    const char *base = (const char *)o;
    return offset >= sizeof(*o) && len < PSP_MAX_PATH && (uint64_t)offset + len < length &&
           base[offset + len] == '\0' && memchr(base + offset, '\0', len) == NULL;
}

/* A descriptor map: one distinct target per shared descriptor, nothing else to place. */
static bool fdmap_ok(const struct psp_wire_options *o, size_t length)
{
    if (o->fdmap_count != o->shared_fds || o->instance_fds != 0 || o->fdmap_offset < sizeof(*o) ||
        o->fdmap_offset % 4 != 0 || o->fdmap_offset > length ||
        (uint64_t)o->fdmap_count * sizeof(int32_t) > length - o->fdmap_offset)
        return false;
    for (int k = 0; k < 3; k++)
        if (o->stdio[k].kind != PSP_STDIO_INHERIT)
            return false;
    const int32_t *targets = (const int32_t *)((const char *)o + o->fdmap_offset);
    unsigned char seen[PSP_MAX_FD_TARGET / 8] = {0};
    for (uint32_t i = 0; i < o->fdmap_count; i++) {
        int32_t t = targets[i];
        if (t < 0 || t >= PSP_MAX_FD_TARGET || (seen[t / 8] & (1u << (t % 8))))
            return false;
        seen[t / 8] |= (unsigned char)(1u << (t % 8));
    }
    return true;
}

int psp_validate_options(const struct psp_wire_options *o, size_t length, uint32_t count, uint32_t fd_count)
{
    const uint32_t known = PSP_OPT_CWD | PSP_OPT_UMASK | PSP_OPT_PGROUP | PSP_OPT_SETSID |
                           PSP_OPT_PDEATHSIG | PSP_OPT_CPUS | PSP_OPT_NUMA_LOCAL | PSP_OPT_FDMAP |
                           PSP_OPT_SIGMASK | PSP_OPT_SIGIGN | PSP_OPT_REPLY_EARLY;
    if ((o->set & ~known) != 0 || o->rlimit_count > PSP_MAX_RLIMITS ||
        o->shared_fds > ((o->set & PSP_OPT_FDMAP) ? PSP_MAX_FDMAP : 3u) ||
        o->instance_fds > 3 || (uint64_t)o->shared_fds + (uint64_t)o->instance_fds * count != fd_count)
        return EINVAL;
    if ((o->set & PSP_OPT_CWD) && !string_ok(o, length, o->cwd_offset, o->cwd_length))
        return EINVAL;
    if ((o->set & PSP_OPT_FDMAP) && !fdmap_ok(o, length))
        return EINVAL;
    if ((o->set & PSP_OPT_PGROUP) && o->pgroup < 0)
        return EINVAL;
    if ((o->set & PSP_OPT_PDEATHSIG) && (o->pdeathsig <= 0 || o->pdeathsig >= 65))
        return EINVAL;
    if (o->set & PSP_OPT_CPUS) {
        uint64_t bytes = (uint64_t)o->cpuset_count * o->cpuset_size;
        if (o->cpuset_count == 0 || o->cpuset_size == 0 || o->cpuset_size > 1024 ||
            o->cpusets_offset < sizeof(*o) || o->cpusets_offset % 8 != 0 ||
            bytes > length - o->cpusets_offset || o->cpusets_offset > length)
            return EINVAL;
    }
    for (int k = 0; k < 3; k++) {
        const struct psp_wire_stdio *s = &o->stdio[k];
        switch (s->kind) {
        case PSP_STDIO_INHERIT:
        case PSP_STDIO_NULL:
            break;
        case PSP_STDIO_FILE:
            if (!string_ok(o, length, s->path_offset, s->path_length))
                return EINVAL;
            break;
        case PSP_STDIO_FD:
            if (s->slot < 0 || (uint32_t)s->slot >= o->shared_fds)
                return EINVAL;
            break;
        case PSP_STDIO_PIPE:
            if (s->slot < 0 || (uint32_t)s->slot >= o->instance_fds)
                return EINVAL;
            break;
        default:
            return EINVAL;
        }
    }
    return 0;
}

/* Limits of one request, beyond the mapping itself. */
#define PSP_MAX_LIST (1u << 24) /* argv or envp entries of one set */

int psp_decode_request(const struct psp_shared *shared, size_t mapped_size, uint32_t slot,
                       struct psp_decoded *out)
{
    memset(out, 0, sizeof(*out));
    /* Snapshot everything read from the segment: the launcher must not be able to change
     * it after the checks. */
    uint64_t data_offset = shared->data_offset;
    uint32_t slot_count = shared->slot_count;
    if (data_offset < sizeof(*shared) || data_offset > mapped_size || slot_count != PSP_RING_SLOTS ||
        slot >= PSP_RING_SLOTS)
        return EINVAL;
    struct psp_request req = shared->slots[slot].request;

    if (req.count == 0 || req.count > PSP_MAX_COUNT || req.set_count == 0 || req.set_count > req.count ||
        (req.flags & ~(PSP_REQ_OPTIONS | PSP_REQ_CGROUP)) != 0 || req.cpuset_count > req.count)
        return EINVAL;
    /* The region: inside the data area; every array and blob inside the region. */
    if (!range_ok(req.region_offset, req.region_length, data_offset, mapped_size))
        return EINVAL;
    uint64_t lo = req.region_offset;
    size_t hi = (size_t)(req.region_offset + req.region_length);
    if (req.results_offset % sizeof(int32_t) != 0 || req.errors_offset % sizeof(int32_t) != 0 ||
        req.sets_offset % sizeof(uint32_t) != 0 || req.instances_offset % sizeof(int32_t) != 0 ||
        !range_ok(req.results_offset, (uint64_t)req.count * sizeof(int32_t), lo, hi) ||
        !range_ok(req.errors_offset, (uint64_t)req.count * sizeof(int32_t), lo, hi) ||
        !range_ok(req.sets_offset, (uint64_t)req.set_count * sizeof(struct psp_wire_set), lo, hi) ||
        !range_ok(req.strings_offset, req.strings_length, lo, hi))
        return EINVAL;
    if (req.instances_offset == 0) {
        if (req.set_count != 1 || req.cpuset_count != 0)
            return EINVAL;
    } else if (!range_ok(req.instances_offset, (uint64_t)req.count * sizeof(struct psp_wire_instance), lo, hi)) {
        return EINVAL;
    }
    if (req.cpuset_count > 0 &&
        (req.cpuset_size < 8 || req.cpuset_size > 1024 || req.cpuset_size % 8 != 0 ||
         !range_ok(req.cpusets_offset, (uint64_t)req.cpuset_count * req.cpuset_size, lo, hi)))
        return EINVAL;

    bool cgroup = (req.flags & PSP_REQ_CGROUP) != 0;
    if (cgroup && req.fd_count == 0)
        return EINVAL;
    uint32_t option_fds = req.fd_count - (cgroup ? 1u : 0u);
    struct psp_wire_options *options = NULL;
    if (req.flags & PSP_REQ_OPTIONS) {
        if (req.options_length < sizeof(*options) || req.options_length > (1u << 20) ||
            !range_ok(req.options_offset, req.options_length, lo, hi))
            return EINVAL;
        if ((options = malloc(req.options_length)) == NULL)
            return ENOMEM;
        memcpy(options, (const char *)shared + req.options_offset, req.options_length);
        int err = psp_validate_options(options, req.options_length, req.count, option_fds);
        if (err != 0) {
            free(options);
            return err;
        }
    } else if (option_fds != 0) {
        return EINVAL;
    }
    out->options = options;
    out->cgroup = cgroup;

    /* Private copies of the sets, instances, CPU sets and strings. */
    struct psp_wire_set *wsets = malloc((size_t)req.set_count * sizeof(*wsets));
    out->sets = calloc(req.set_count, sizeof(*out->sets));
    out->strings = malloc(req.strings_length ? req.strings_length : 1);
    if (req.instances_offset != 0)
        out->instances = malloc((size_t)req.count * sizeof(*out->instances));
    if (req.cpuset_count > 0)
        out->cpusets = malloc((size_t)req.cpuset_count * req.cpuset_size);
    if (wsets == NULL || out->sets == NULL || out->strings == NULL ||
        (req.instances_offset != 0 && out->instances == NULL) || (req.cpuset_count > 0 && out->cpusets == NULL)) {
        free(wsets);
        psp_decoded_free(out);
        return ENOMEM;
    }
    memcpy(wsets, (const char *)shared + req.sets_offset, (size_t)req.set_count * sizeof(*wsets));
    memcpy(out->strings, (const char *)shared + req.strings_offset, req.strings_length);
    if (out->instances != NULL)
        memcpy(out->instances, (const char *)shared + req.instances_offset, (size_t)req.count * sizeof(*out->instances));
    if (out->cpusets != NULL)
        memcpy(out->cpusets, (const char *)shared + req.cpusets_offset, (size_t)req.cpuset_count * req.cpuset_size);

    /* Counts: each string needs at least its terminator, so the total is bounded by the
     * strings' length (no overflow: set_count <= 2^20, each count < 2^24). */
    uint64_t entries = 0;
    int err = 0;
    for (uint32_t k = 0; k < req.set_count && err == 0; k++) {
        if (wsets[k].argc == 0 || wsets[k].argc > PSP_MAX_LIST || wsets[k].envc > PSP_MAX_LIST)
            err = EINVAL;
        entries += (uint64_t)wsets[k].argc + wsets[k].envc;
    }
    if (err == 0 && entries > req.strings_length)
        err = EINVAL;
    for (uint32_t i = 0; err == 0 && out->instances != NULL && i < req.count; i++) {
        const struct psp_wire_instance *in = &out->instances[i];
        if (in->set >= req.set_count || in->cpuset < -1 || (in->cpuset >= 0 && (uint32_t)in->cpuset >= req.cpuset_count))
            err = EINVAL;
    }
    if (err == 0 && (out->pointers = calloc((size_t)entries + 2u * req.set_count, sizeof(char *))) == NULL)
        err = ENOMEM;
    char *cursor = out->strings;
    const char *end = out->strings + req.strings_length;
    char **slots = out->pointers;
    for (uint32_t k = 0; err == 0 && k < req.set_count; k++) {
        struct psp_decoded_set *set = &out->sets[k];
        set->argc = (int)wsets[k].argc;
        set->envc = (int)wsets[k].envc;
        set->argv = slots;
        slots += wsets[k].argc + 1;
        set->envp = slots;
        slots += wsets[k].envc + 1;
        err = split_strings(set->argv, wsets[k].argc, &cursor, end);
        if (err == 0)
            err = split_strings(set->envp, wsets[k].envc, &cursor, end);
    }
    free(wsets);
    if (err == 0 && cursor != end)
        err = EINVAL; /* trailing bytes: the counts and the length disagree */
    if (err != 0) {
        psp_decoded_free(out);
        return err;
    }
    out->count = req.count;
    out->results_offset = req.results_offset;
    out->errors_offset = req.errors_offset;
    out->fd_count = req.fd_count;
    out->set_count = req.set_count;
    out->cpuset_count = req.cpuset_count;
    out->cpuset_size = req.cpuset_size;
    out->strings_length = req.strings_length;
    out->argv = out->sets[0].argv;
    out->envp = out->sets[0].envp;
    out->argc = out->sets[0].argc;
    out->envc = out->sets[0].envc;
    return 0;
}

void psp_decoded_free(struct psp_decoded *decoded)
{
    free(decoded->strings);
    free(decoded->sets);
    free(decoded->pointers);
    free(decoded->instances);
    free(decoded->cpusets);
    free(decoded->options);
    memset(decoded, 0, sizeof(*decoded));
}

void psp_drain_eventfd(int fd)
{
    uint64_t value;
    while (read(fd, &value, sizeof(value)) < 0 && errno == EINTR) {
    }
}
