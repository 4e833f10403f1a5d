/* The child's environment (without the interceptor unless asked) and the loader's part. */
#include <stdlib.h>
#include <string.h>

#include "intercept/intercept.h"

#define SELF_NAME "libpspawn_intercept.so"

static bool is_self(const char *entry, size_t len)
{
    size_t name = sizeof(SELF_NAME) - 1;
    if (len < name || strncmp(entry + len - name, SELF_NAME, name) != 0)
        return false;
    return len == name || entry[len - name - 1] == '/';
}

bool psi_strip_self_into(const char *entry, char *out, size_t size)
{
    const char *value = entry + sizeof("LD_PRELOAD=") - 1;
    if (strlen(entry) >= size)
        return false;
    strcpy(out, "LD_PRELOAD=");
    size_t at = strlen(out);
    bool changed = false;
    for (const char *c = value; *c != '\0';) {
        size_t len = strcspn(c, ": ");
        if (len > 0 && is_self(c, len)) {
            changed = true;
        } else if (len > 0) {
            if (at > sizeof("LD_PRELOAD=") - 1)
                out[at++] = ':';
            memcpy(out + at, c, len);
            at += len;
        }
        c += len;
        if (*c != '\0')
            c++;
    }
    out[at] = '\0';
    return changed;
}

/* "LD_PRELOAD=a:libpspawn_intercept.so b" without our entries; NULL: nothing to change. */
static char *strip_self(const char *entry)
{
    size_t size = strlen(entry) + 1;
    char *out = malloc(size);
    if (out != NULL && !psi_strip_self_into(entry, out, size)) {
        free(out);
        out = NULL;
    }
    return out;
}

char **psi_child_environment(char *const envp[], char **edited)
{
    *edited = NULL;
    if (envp == NULL || psi_config.inherit)
        return (char **)envp;
    size_t n = 0, preload = (size_t)-1;
    for (; envp[n] != NULL; n++)
        if (strncmp(envp[n], "LD_PRELOAD=", 11) == 0)
            preload = n;
    if (preload == (size_t)-1)
        return (char **)envp;
    char *value = strip_self(envp[preload]);
    if (value == NULL)
        return (char **)envp;
    char **copy = malloc((n + 1) * sizeof(char *));
    if (copy == NULL) {
        free(value);
        return (char **)envp;
    }
    size_t out = 0;
    for (size_t i = 0; i < n; i++) {
        if (i != preload)
            copy[out++] = envp[i];
        else if (value[sizeof("LD_PRELOAD=") - 1] != '\0')
            copy[out++] = value;
    }
    copy[out] = NULL;
    *edited = value;
    return copy;
}

static bool loader_variable(const char *entry)
{
    return strncmp(entry, "LD_", 3) == 0 || strncmp(entry, "GLIBC_TUNABLES=", 15) == 0 ||
           strncmp(entry, "MALLOC_", 7) == 0;
}

char *psi_loader_signature(char *const envp[])
{
    size_t len = 1;
    for (size_t i = 0; envp != NULL && envp[i] != NULL; i++)
        if (loader_variable(envp[i]))
            len += strlen(envp[i]) + 1;
    char *sig = malloc(len);
    if (sig == NULL)
        return NULL;
    size_t at = 0;
    for (size_t i = 0; envp != NULL && envp[i] != NULL; i++) {
        if (!loader_variable(envp[i]))
            continue;
        size_t l = strlen(envp[i]);
        memcpy(sig + at, envp[i], l);
        at += l;
        sig[at++] = '\n';
    }
    sig[at] = '\0';
    return sig;
}
