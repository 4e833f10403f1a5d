/* Facts about the calling process that launcher, proxy and interceptor all read. */
#ifndef PSPAWN_COMMON_SELF_H
#define PSPAWN_COMMON_SELF_H

/* The number of threads of this process (/proc/self/stat, field 20), or -1. */
int psp_thread_count(void);

#endif
