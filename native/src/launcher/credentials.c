/* The caller's credentials at context creation. A proxy keeps the credentials it was
 * started with and so do its children: after the caller changes its own (setuid,
 * setgroups, ...), spawning through that proxy would hand children the old ones. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "launcher/internal.h"

int psp_credentials_read(struct psp_credentials *out)
{
    memset(out, 0, sizeof(*out));
    if (getresuid(&out->uid[0], &out->uid[1], &out->uid[2]) != 0 ||
        getresgid(&out->gid[0], &out->gid[1], &out->gid[2]) != 0)
        return errno;
    int n = getgroups((int)(sizeof(out->groups) / sizeof(out->groups[0])), out->groups);
    if (n < 0 && errno != EINVAL)
        return errno;
    /* More groups than we keep: compare the count and the first ones only. */
    out->groups_truncated = n < 0;
    out->ngroups = n < 0 ? getgroups(0, NULL) : n;
    return 0;
}

bool psp_credentials_unchanged(const struct psp_credentials *then)
{
    struct psp_credentials now;
    if (psp_credentials_read(&now) != 0)
        return false;
    if (memcmp(now.uid, then->uid, sizeof(now.uid)) != 0 || memcmp(now.gid, then->gid, sizeof(now.gid)) != 0 ||
        now.ngroups != then->ngroups)
        return false;
    int compared = now.groups_truncated ? (int)(sizeof(now.groups) / sizeof(now.groups[0])) : now.ngroups;
    return memcmp(now.groups, then->groups, (size_t)compared * sizeof(gid_t)) == 0;
}
