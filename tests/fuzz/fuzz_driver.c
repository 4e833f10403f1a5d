/* A self-contained driver for decode_fuzz.c where libFuzzer is not installed: replays
 * every file of the corpus directory, then mutates them at random (bit flips, byte
 * sets, interesting integers at aligned offsets, truncation) for a bounded time.
 * Usage: fuzz_decode CORPUS_DIR [SECONDS] [SEED]. Sanitizers catch what goes wrong. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
extern unsigned long long fuzz_accepted;

struct input {
    uint8_t *data;
    size_t size;
};

static uint64_t rng_state;

static uint64_t next_random(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static size_t load_corpus(const char *dir, struct input *inputs, size_t max)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        perror(dir);
        exit(2);
    }
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < max) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (f == NULL)
            continue;
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        fseek(f, 0, SEEK_SET);
        inputs[n].data = malloc(size > 0 ? (size_t)size : 1);
        inputs[n].size = fread(inputs[n].data, 1, (size_t)size, f);
        fclose(f);
        n++;
    }
    closedir(d);
    return n;
}

static void mutate(uint8_t *buf, size_t *size, size_t capacity)
{
    static const uint32_t interesting[] = {0, 1, 2, 3, 63, 64, 255, 4096, 65535, 0x7fffffff, 0x80000000u, 0xffffffffu};
    int rounds = 1 + (int)(next_random() % 8);
    for (int r = 0; r < rounds && *size > 0; r++) {
        size_t at = next_random() % *size;
        switch (next_random() % 5) {
        case 0:
            buf[at] ^= (uint8_t)(1u << (next_random() % 8));
            break;
        case 1:
            buf[at] = (uint8_t)next_random();
            break;
        case 2: {
            at &= ~(size_t)3;
            if (at + 4 <= *size) {
                uint32_t v = interesting[next_random() % (sizeof(interesting) / sizeof(interesting[0]))];
                memcpy(buf + at, &v, 4);
            }
            break;
        }
        case 3:
            *size = at + 1;
            break;
        default:
            if (*size < capacity) {
                memmove(buf + at + 1, buf + at, *size - at);
                buf[at] = (uint8_t)next_random();
                (*size)++;
            }
            break;
        }
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR [SECONDS] [SEED]\n", argv[0]);
        return 2;
    }
    double seconds = argc > 2 ? atof(argv[2]) : 10;
    rng_state = argc > 3 ? strtoull(argv[3], NULL, 10) : (uint64_t)time(NULL);
    if (rng_state == 0)
        rng_state = 1;
    static struct input inputs[1024];
    size_t n = load_corpus(argv[1], inputs, 1024);
    if (n == 0) {
        fprintf(stderr, "empty corpus\n");
        return 2;
    }
    for (size_t i = 0; i < n; i++)
        LLVMFuzzerTestOneInput(inputs[i].data, inputs[i].size);
    unsigned long long seeds_accepted = fuzz_accepted;
    size_t capacity = 1 << 16;
    uint8_t *buf = malloc(capacity);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    unsigned long long executions = 0;
    for (;;) {
        const struct input *seed = &inputs[next_random() % n];
        size_t size = seed->size < capacity ? seed->size : capacity;
        memcpy(buf, seed->data, size);
        mutate(buf, &size, capacity);
        LLVMFuzzerTestOneInput(buf, size);
        if (++executions % 1024 == 0) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            if ((double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) / 1e9 >= seconds)
                break;
        }
    }
    printf("fuzz_decode: %zu seeds (%llu decode), %llu executions, %llu decoded, no crash\n", n,
           seeds_accepted, executions, fuzz_accepted - seeds_accepted);
    free(buf);
    return 0;
}
