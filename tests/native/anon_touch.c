/* Test target: maps argv[1] MiB of anonymous memory, writes every page, then stops
 * itself (SIGSTOP), so that the test sees its pages in /proc/<pid>/numa_maps at a known
 * point (waitpid WUNTRACED); killed by the test. Without arguments (the proxy): returns. */
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2)
        return 0;
    size_t bytes = (size_t)atoi(argv[1]) << 20;
    char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return 2;
    long page = sysconf(_SC_PAGESIZE);
    for (size_t off = 0; off < bytes; off += (size_t)page)
        p[off] = 1;
    raise(SIGSTOP);
    return 0;
}
