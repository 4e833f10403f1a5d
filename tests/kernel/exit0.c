/* exit0: the smallest program that exits 0 (no libc, no dynamic loader, one system
 * call), so that ktest's leak test spends its 10,000 spawns in the kernel's clone, exec
 * and exit paths, not in user-space start-up (a dynamic no-op costs ~30 ms under TCG). */
__attribute__((noreturn)) void _start(void);

void _start(void)
{
    __asm__ volatile("mov $60, %eax\n\txor %edi, %edi\n\tsyscall");
    __builtin_unreachable();
}
