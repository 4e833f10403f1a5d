/* Writes the seed corpus: valid requests as the launcher encodes them (plain, with env,
 * with options and descriptors, a ping) so mutations start from deep inside the decoder.
 * Usage: make_corpus DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/protocol.h"

#define SEGMENT 8192

static void write_seed(const char *dir, const char *name, const void *data, size_t size)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, size, f) != size) {
        perror(path);
        exit(1);
    }
    fclose(f);
}

static size_t build(uint8_t *seg, char *const argv[], char *const envp[], uint32_t count, bool options)
{
    memset(seg, 0, SEGMENT);
    struct psp_shared *sh = (struct psp_shared *)seg;
    sh->magic = PSP_MAGIC;
    sh->version = PSP_PROTOCOL_VERSION;
    sh->size = SEGMENT;
    sh->relay_offset = (sizeof(*sh) + 63) & ~(uint64_t)63;
    sh->data_offset = sh->relay_offset;
    size_t bytes;
    int argc, envc;
    psp_measure(argv, envp, &bytes, &argc, &envc);
    uint64_t cursor = sh->data_offset;
    psp_pack((char *)seg + cursor, argv, envp);
    sh->request = (struct psp_request){.count = count, .argc = (uint32_t)argc, .envc = (uint32_t)envc,
                                       .strings_offset = cursor, .strings_length = bytes};
    cursor = (cursor + bytes + 63) & ~(uint64_t)63;
    if (options) {
        struct psp_wire_options *o = (struct psp_wire_options *)(seg + cursor);
        size_t at = sizeof(*o);
        const char *cwd = "/tmp", *out = "out.txt";
        memcpy((char *)o + at, cwd, strlen(cwd) + 1);
        o->set = PSP_OPT_CWD | PSP_OPT_UMASK | PSP_OPT_PGROUP;
        o->cwd_offset = (uint32_t)at;
        o->cwd_length = (uint32_t)strlen(cwd);
        at += strlen(cwd) + 1;
        memcpy((char *)o + at, out, strlen(out) + 1);
        o->stdio[1] = (struct psp_wire_stdio){.kind = PSP_STDIO_FILE, .oflags = 0101, .mode = 0600,
                                              .path_offset = (uint32_t)at, .path_length = (uint32_t)strlen(out)};
        at += strlen(out) + 1;
        o->stdio[2] = (struct psp_wire_stdio){.kind = PSP_STDIO_PIPE, .slot = 0};
        o->stdio[0] = (struct psp_wire_stdio){.kind = PSP_STDIO_FD, .slot = 0};
        o->shared_fds = 1;
        o->instance_fds = 1;
        o->rlimit_count = 1;
        o->rlimits[0] = (struct psp_wire_rlimit){.resource = 7, .soft = 100, .hard = 200};
        at = (at + 7) & ~(size_t)7;
        o->set |= PSP_OPT_CPUS;
        o->cpuset_count = 1;
        o->cpuset_size = 128;
        o->cpusets_offset = (uint32_t)at;
        ((uint8_t *)o)[at] = 1;
        at += 128;
        sh->request.flags = PSP_REQ_OPTIONS;
        sh->request.options_offset = cursor;
        sh->request.options_length = at;
        sh->request.fd_count = 1 + count;
        cursor = (cursor + at + 63) & ~(uint64_t)63;
    }
    sh->request.results_offset = cursor;
    sh->request.errors_offset = cursor + count * 4;
    return (size_t)(cursor + count * 8);
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    static uint8_t seg[SEGMENT];
    char *plain[] = {"prog", "a", "", "long argument with spaces", NULL};
    char *env[] = {"A=1", "B=", "LD_PRELOAD=/x.so", NULL};
    char *none[] = {NULL};
    write_seed(argv[1], "plain", seg, build(seg, plain, none, 1, false));
    write_seed(argv[1], "env_batch", seg, build(seg, plain, env, 200, false));
    write_seed(argv[1], "options", seg, build(seg, plain, env, 3, true));
    size_t ping = build(seg, plain, none, 1, false);
    ((struct psp_shared *)seg)->request.count = 0;
    write_seed(argv[1], "ping", seg, ping);
    return 0;
}
