/* Fuzz target for the proxy's request decoder: the bytes of a shared segment come from
 * the launcher and are untrusted input. The input is laid out as the segment itself
 * (header first); the target decodes it exactly as serve.c does and, on success, walks
 * everything the proxy would read. Built for libFuzzer when clang's runtime is there,
 * and always with fuzz_driver.c (corpus replay + random mutations). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Inputs the decoder accepted: the driver reports it, to show mutations reach deep. */
unsigned long long fuzz_accepted;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < sizeof(struct psp_shared))
        return 0;
    /* A private, aligned copy, as a mapping would be. */
    void *segment = aligned_alloc(64, (size + 63) & ~(size_t)63);
    if (segment == NULL)
        return 0;
    memcpy(segment, data, size);
    struct psp_decoded decoded;
    /* Slot 0, where the seeds put their request (the decoder checks the others alike). */
    uint32_t slot = 0;
    if (psp_decode_request(segment, size, slot, &decoded) == 0) {
        fuzz_accepted++;
        size_t total = 0;
        for (uint32_t k = 0; k < decoded.set_count; k++) {
            const struct psp_decoded_set *set = &decoded.sets[k];
            for (int i = 0; i < set->argc; i++)
                total += strlen(set->argv[i]);
            for (int i = 0; i < set->envc; i++)
                total += strlen(set->envp[i]);
            if (set->argc < 1 || set->argv[set->argc] != NULL || set->envp[set->envc] != NULL)
                abort();
        }
        /* Every instance's set and CPU set, as a child reads them. */
        for (uint32_t i = 0; decoded.instances != NULL && i < decoded.count; i++) {
            const struct psp_wire_instance *in = &decoded.instances[i];
            if (in->set >= decoded.set_count)
                abort();
            total += strlen(decoded.sets[in->set].argv[0]);
            if (in->cpuset >= 0) {
                if ((uint32_t)in->cpuset >= decoded.cpuset_count)
                    abort();
                total += decoded.cpusets[(size_t)in->cpuset * decoded.cpuset_size + decoded.cpuset_size - 1];
            }
        }
        if (decoded.options != NULL) {
            const struct psp_wire_options *o = decoded.options;
            if (o->set & PSP_OPT_CWD)
                total += strlen(psp_option_string(o, o->cwd_offset));
            for (int k = 0; k < 3; k++)
                if (o->stdio[k].kind == PSP_STDIO_FILE)
                    total += strlen(psp_option_string(o, o->stdio[k].path_offset));
        }
        /* Results and errors arrays must lie inside the segment. */
        _Atomic int32_t *results = psp_results(segment, decoded.results_offset);
        _Atomic int32_t *errors = psp_errors(segment, decoded.errors_offset);
        atomic_store(&results[decoded.count - 1], (int32_t)total);
        atomic_store(&errors[decoded.count - 1], 0);
        psp_decoded_free(&decoded);
    }
    free(segment);
    return 0;
}
