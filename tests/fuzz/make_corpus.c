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

static uint64_t align64(uint64_t v)
{
    return (v + 63) & ~(uint64_t)63;
}

/* A request in slot 0 as the launcher encodes it: `nsets` string sets (set k is argv
 * with envp), instance i on set i % nsets, CPU set i % ncpus when ncpus > 0. */
static size_t build(uint8_t *seg, char *const argv[], char *const envp[], uint32_t count, bool options,
                    uint32_t nsets, uint32_t ncpus)
{
    memset(seg, 0, SEGMENT);
    struct psp_shared *sh = (struct psp_shared *)seg;
    sh->magic = PSP_MAGIC;
    sh->version = PSP_PROTOCOL_VERSION;
    sh->size = SEGMENT;
    sh->slot_count = PSP_RING_SLOTS;
    sh->relay_offset = align64(sizeof(*sh));
    sh->data_offset = sh->relay_offset;
    size_t bytes;
    int argc, envc;
    psp_measure(argv, envp, &bytes, &argc, &envc);
    struct psp_request *r = &sh->slots[0].request;
    uint64_t cursor = sh->data_offset;
    *r = (struct psp_request){.count = count, .set_count = nsets, .region_offset = cursor};
    r->results_offset = cursor;
    cursor = align64(cursor + count * 4);
    r->errors_offset = cursor;
    cursor = align64(cursor + count * 4);
    r->sets_offset = cursor;
    struct psp_wire_set *sets = (struct psp_wire_set *)(seg + cursor);
    for (uint32_t k = 0; k < nsets; k++)
        sets[k] = (struct psp_wire_set){.argc = (uint32_t)argc, .envc = (uint32_t)envc};
    cursor = align64(cursor + nsets * sizeof(*sets));
    if (nsets > 1 || ncpus > 0) {
        r->instances_offset = cursor;
        struct psp_wire_instance *in = (struct psp_wire_instance *)(seg + cursor);
        for (uint32_t i = 0; i < count; i++)
            in[i] = (struct psp_wire_instance){.set = i % nsets, .cpuset = ncpus ? (int32_t)(i % ncpus) : -1};
        cursor = align64(cursor + count * sizeof(*in));
    }
    if (ncpus > 0) {
        r->cpuset_count = ncpus;
        r->cpuset_size = 128;
        r->cpusets_offset = cursor;
        for (uint32_t k = 0; k < ncpus; k++)
            seg[cursor + k * 128] = (uint8_t)(1u << (k % 8));
        cursor = align64(cursor + ncpus * 128);
    }
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
        r->flags = PSP_REQ_OPTIONS;
        r->options_offset = cursor;
        r->options_length = at;
        r->fd_count = 1 + count;
        cursor = align64(cursor + at);
    }
    r->strings_offset = cursor;
    for (uint32_t k = 0; k < nsets; k++) {
        psp_pack((char *)seg + cursor, argv, envp);
        cursor += bytes;
    }
    r->strings_length = cursor - r->strings_offset;
    r->region_length = cursor - r->region_offset;
    if (cursor > SEGMENT) {
        fprintf(stderr, "seed too large\n");
        exit(1);
    }
    return (size_t)cursor;
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    static uint8_t seg[SEGMENT];
    char *plain[] = {"prog", "a", "", "long argument with spaces", NULL};
    char *env[] = {"A=1", "B=", "LD_PRELOAD=/x.so", NULL};
    char *none[] = {NULL};
    write_seed(argv[1], "plain", seg, build(seg, plain, none, 1, false, 1, 0));
    write_seed(argv[1], "env_batch", seg, build(seg, plain, env, 200, false, 1, 0));
    write_seed(argv[1], "options", seg, build(seg, plain, env, 3, true, 1, 0));
    write_seed(argv[1], "vector", seg, build(seg, plain, env, 12, false, 4, 3));
    write_seed(argv[1], "vector_options", seg, build(seg, plain, env, 6, true, 6, 2));
    size_t ping = build(seg, plain, none, 1, false, 1, 0);
    ((struct psp_shared *)seg)->slots[0].request.count = 0;
    write_seed(argv[1], "ping", seg, ping);
    return 0;
}
