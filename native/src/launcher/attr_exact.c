/* Exact child state for the interceptor: a descriptor map and the signal state (the
 * wire side is PSP_OPT_FDMAP, PSP_OPT_SIGMASK, PSP_OPT_SIGIGN, PSP_OPT_REPLY_EARLY in
 * common/protocol.h). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "launcher/internal.h"

static int fail(int err)
{
    errno = err;
    return -1;
}

int psp_attr_set_fd_map(pspawn_attr_t *attr, const int *targets, const int *sources, int count)
{
    if (attr == NULL || count < 0 || count > PSP_MAX_FDMAP || (count > 0 && (targets == NULL || sources == NULL)))
        return fail(EINVAL);
    for (int k = 0; k < 3; k++)
        if (attr->stdio[k].kind != PSP_STDIO_INHERIT)
            return fail(EINVAL);
    unsigned char seen[PSP_MAX_FD_TARGET / 8] = {0};
    for (int i = 0; i < count; i++) {
        int t = targets[i];
        if (t < 0 || t >= PSP_MAX_FD_TARGET || (seen[t / 8] & (1u << (t % 8))) || sources[i] < 0)
            return fail(EINVAL);
        seen[t / 8] |= (unsigned char)(1u << (t % 8));
    }
    int *t_copy = malloc(((size_t)count + 1) * sizeof(int));
    int *s_copy = malloc(((size_t)count + 1) * sizeof(int));
    if (t_copy == NULL || s_copy == NULL) {
        free(t_copy);
        free(s_copy);
        return fail(ENOMEM);
    }
    memcpy(t_copy, targets, (size_t)count * sizeof(int));
    memcpy(s_copy, sources, (size_t)count * sizeof(int));
    psp_attr_exact_release(attr);
    attr->fdmap_targets = t_copy;
    attr->fdmap_sources = s_copy;
    attr->fdmap_count = count;
    attr->set |= PSP_OPT_FDMAP;
    return 0;
}

static uint64_t bits_of(const sigset_t *set)
{
    uint64_t bits = 0;
    for (int s = 1; s <= 64; s++)
        if (sigismember(set, s) == 1)
            bits |= 1ull << (s - 1);
    return bits;
}

int psp_attr_set_signals(pspawn_attr_t *attr, const sigset_t *mask, const sigset_t *ignored)
{
    if (attr == NULL || mask == NULL || ignored == NULL)
        return fail(EINVAL);
    attr->sigmask = bits_of(mask);
    attr->sigignore = bits_of(ignored);
    attr->set |= PSP_OPT_SIGMASK | PSP_OPT_SIGIGN;
    return 0;
}

int psp_attr_reply_early(pspawn_attr_t *attr)
{
    if (attr == NULL)
        return fail(EINVAL);
    attr->set |= PSP_OPT_REPLY_EARLY;
    return 0;
}

size_t psp_attr_exact_wire_size(const pspawn_attr_t *attr)
{
    return (size_t)attr->fdmap_count * sizeof(int32_t);
}

void psp_attr_exact_encode(const pspawn_attr_t *attr, struct psp_wire_options *o, size_t *cursor,
                           int *shared_fds)
{
    o->sigmask = attr->sigmask;
    o->sigignore = attr->sigignore;
    if (!(attr->set & PSP_OPT_FDMAP))
        return;
    int32_t *targets = (int32_t *)((char *)o + *cursor);
    o->fdmap_offset = (uint32_t)*cursor;
    o->fdmap_count = (uint32_t)attr->fdmap_count;
    for (int i = 0; i < attr->fdmap_count; i++) {
        targets[i] = attr->fdmap_targets[i];
        shared_fds[o->shared_fds++] = attr->fdmap_sources[i];
    }
    *cursor += (size_t)attr->fdmap_count * sizeof(int32_t);
}

int psp_attr_exact_clone(const pspawn_attr_t *attr, pspawn_attr_t *copy)
{
    if (!(attr->set & PSP_OPT_FDMAP))
        return 0;
    int n = attr->fdmap_count;
    copy->fdmap_targets = malloc(((size_t)n + 1) * sizeof(int));
    copy->fdmap_sources = malloc(((size_t)n + 1) * sizeof(int));
    if (copy->fdmap_targets == NULL || copy->fdmap_sources == NULL)
        return ENOMEM;
    memcpy(copy->fdmap_targets, attr->fdmap_targets, (size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) {
        if ((copy->fdmap_sources[i] = fcntl(attr->fdmap_sources[i], F_DUPFD_CLOEXEC, 3)) < 0) {
            int err = errno;
            copy->fdmap_count = i; /* the duplicates so far are closed by destroy */
            return err;
        }
    }
    copy->fdmap_count = n;
    return 0;
}

void psp_attr_exact_release(pspawn_attr_t *attr)
{
    for (int i = 0; attr->owns_fds && i < attr->fdmap_count; i++)
        close(attr->fdmap_sources[i]);
    free(attr->fdmap_targets);
    free(attr->fdmap_sources);
    attr->fdmap_targets = NULL;
    attr->fdmap_sources = NULL;
    attr->fdmap_count = 0;
    attr->set &= ~(uint32_t)PSP_OPT_FDMAP;
}
