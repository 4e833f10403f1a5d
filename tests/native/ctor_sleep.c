/* Test target: a constructor that takes 30 s, longer than any start-up timeout used. */
#include <unistd.h>

__attribute__((constructor)) static void linger(void)
{
    sleep(30);
}

int main(void)
{
    return 0;
}
