/* Test target: dies in a constructor, before the proxy can report ready. */
#include <signal.h>

__attribute__((constructor)) static void crash(void)
{
    raise(SIGKILL);
}

int main(void)
{
    return 0;
}
