/* vfork(): libc's, unless PSPAWN_INTERCEPT_VFORK=1 and the fork handoff applies; then a
 * real fork whose parent waits, as a vfork parent does, until the child exec'd or
 * exited (fork.c). Opt-in because the child then has its own memory: what it writes
 * before exec (or after a failed exec) is not seen by the parent, which POSIX leaves
 * undefined for vfork but some programs rely on. A stub in assembly, because a vfork
 * child returns into its caller's frames on the parent's stack: this function must not
 * have a frame of its own when it jumps to libc's vfork. */
#include "intercept/intercept.h"

#if defined(__x86_64__)
__asm__(".text\n"
        ".globl vfork\n"
        ".type vfork, @function\n"
        "vfork:\n"
        "    endbr64\n"
        "    sub $8, %rsp\n" /* align the stack for the call */
        "    call psi_vfork_takes_handoff\n"
        "    add $8, %rsp\n"
        "    test %al, %al\n"
        "    jnz psi_vfork_handoff\n" /* a tail call: its return goes to our caller */
        "    jmp *psi_real_vfork(%rip)\n"
        ".size vfork, .-vfork\n");
#endif
