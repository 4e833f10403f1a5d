#include "common/protocol.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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

int psp_validate_options(const struct psp_wire_options *o, size_t length, uint32_t count, uint32_t fd_count)
{
    const uint32_t known = PSP_OPT_CWD | PSP_OPT_UMASK | PSP_OPT_PGROUP | PSP_OPT_SETSID |
                           PSP_OPT_PDEATHSIG | PSP_OPT_CPUS;
    if ((o->set & ~known) != 0 || o->rlimit_count > PSP_MAX_RLIMITS || o->shared_fds > 3 ||
        o->instance_fds > 3 || (uint64_t)o->shared_fds + (uint64_t)o->instance_fds * count != fd_count)
        return EINVAL;
    if ((o->set & PSP_OPT_CWD) && !string_ok(o, length, o->cwd_offset, o->cwd_length))
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

int psp_decode_request(const struct psp_shared *shared, size_t mapped_size, struct psp_decoded *out)
{
    memset(out, 0, sizeof(*out));
    /* Snapshot the request: the launcher must not be able to change it after checks. */
    struct psp_request req = shared->request;
    uint64_t data_offset = shared->data_offset;

    if (data_offset < sizeof(*shared) || data_offset > mapped_size)
        return EINVAL;
    if (req.count == 0 || req.count > PSP_MAX_COUNT || req.argc == 0 || req.argc > (1u << 24) ||
        req.envc > (1u << 24) || (req.flags & ~PSP_REQ_OPTIONS) != 0)
        return EINVAL;
    if (req.results_offset % sizeof(int32_t) != 0 || req.errors_offset % sizeof(int32_t) != 0 ||
        !range_ok(req.results_offset, (uint64_t)req.count * sizeof(int32_t), data_offset, mapped_size) ||
        !range_ok(req.errors_offset, (uint64_t)req.count * sizeof(int32_t), data_offset, mapped_size))
        return EINVAL;
    if (!range_ok(req.strings_offset, req.strings_length, data_offset, mapped_size))
        return EINVAL;
    /* Each string needs at least its terminator. */
    if ((uint64_t)req.argc + req.envc > req.strings_length)
        return EINVAL;

    struct psp_wire_options *options = NULL;
    if (req.flags & PSP_REQ_OPTIONS) {
        if (req.options_length < sizeof(*options) || req.options_length > (1u << 20) ||
            !range_ok(req.options_offset, req.options_length, data_offset, mapped_size))
            return EINVAL;
        if ((options = malloc(req.options_length)) == NULL)
            return ENOMEM;
        memcpy(options, (const char *)shared + req.options_offset, req.options_length);
        int err = psp_validate_options(options, req.options_length, req.count, req.fd_count);
        if (err != 0) {
            free(options);
            return err;
        }
    } else if (req.fd_count != 0) {
        return EINVAL;
    }
    out->options = options;
    out->strings = malloc(req.strings_length ? req.strings_length : 1);
    out->argv = calloc((size_t)req.argc + 1, sizeof(char *));
    out->envp = calloc((size_t)req.envc + 1, sizeof(char *));
    if (out->strings == NULL || out->argv == NULL || out->envp == NULL) {
        psp_decoded_free(out);
        return ENOMEM;
    }
    memcpy(out->strings, (const char *)shared + req.strings_offset, req.strings_length);

    char *cursor = out->strings;
    const char *end = out->strings + req.strings_length;
    int err = split_strings(out->argv, req.argc, &cursor, end);
    if (err == 0)
        err = split_strings(out->envp, req.envc, &cursor, end);
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
    out->argc = (int)req.argc;
    out->envc = (int)req.envc;
    out->strings_length = req.strings_length;
    return 0;
}

void psp_decoded_free(struct psp_decoded *decoded)
{
    free(decoded->strings);
    free(decoded->argv);
    free(decoded->envp);
    free(decoded->options);
    memset(decoded, 0, sizeof(*decoded));
}
