/* Which file posix_spawn/posix_spawnp would execute. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "intercept/intercept.h"

/* A regular file we may execute: execve would not fail with EACCES on it. */
static bool executable(const char *path, int *err)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        *err = errno;
        return false;
    }
    if (!S_ISREG(st.st_mode) || faccessat(AT_FDCWD, path, X_OK, AT_EACCESS) != 0) {
        *err = EACCES;
        return false;
    }
    return true;
}

static char *absolute(const char *path, bool *relative)
{
    *relative = path[0] != '/';
    if (!*relative)
        return strdup(path);
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof(cwd)) == NULL)
        return NULL;
    char *out = malloc(strlen(cwd) + strlen(path) + 2);
    if (out != NULL)
        sprintf(out, "%s/%s", cwd, path);
    return out;
}

/* glibc's search: PATH from the caller's environment (not envp), "/bin:/usr/bin" when
 * unset, an empty element is the working directory; EACCES and not-found go on to the
 * next element, any other error ends the search (and we leave it to the real call). */
char *psi_resolve(const char *file, bool search, bool *relative)
{
    int err = 0;
    if (file == NULL || file[0] == '\0')
        return NULL;
    if (!search || strchr(file, '/') != NULL)
        return executable(file, &err) ? absolute(file, relative) : NULL;
    const char *path = getenv("PATH");
    if (path == NULL)
        path = "/bin:/usr/bin";
    size_t flen = strlen(file);
    for (const char *dir = path;; dir++) {
        const char *end = strchrnul(dir, ':');
        size_t dlen = (size_t)(end - dir);
        char candidate[PATH_MAX];
        if (dlen + flen + 2 <= sizeof(candidate)) {
            if (dlen == 0)
                snprintf(candidate, sizeof(candidate), "%s", file);
            else
                snprintf(candidate, sizeof(candidate), "%.*s/%s", (int)dlen, dir, file);
            if (executable(candidate, &err))
                return absolute(candidate, relative);
            if (err != ENOENT && err != ENOTDIR && err != EACCES && err != ELOOP && err != ENAMETOOLONG)
                return NULL;
        }
        if (*end == '\0')
            return NULL;
        dir = end;
    }
}
