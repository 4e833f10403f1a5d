/* Test target: pins itself to CPU 0 through pthread_setaffinity_np, which uses glibc's
 * cached thread id, and checks through the kernel that it was this process that moved.
 * Exit 0: right process; 1: glibc's cached tid pointed elsewhere; 2: setup failed. */
#include <pthread.h>
#include <sched.h>

int main(void)
{
    cpu_set_t want, got;
    CPU_ZERO(&want);
    CPU_SET(0, &want);
    if (pthread_setaffinity_np(pthread_self(), sizeof(want), &want) != 0)
        return 1;
    if (sched_getaffinity(0, sizeof(got), &got) != 0)
        return 2;
    return CPU_EQUAL(&want, &got) ? 0 : 1;
}
