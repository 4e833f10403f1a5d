/* The generator's emitters, shared by its two translation units (pspawn.h and the kernel
 * ABI header both define PSPAWN_MAX_SPAWNS, with different meanings: one call's limit in
 * the library, one system call's in the kernel). */
#ifndef PSPAWN_GEN_SHARED_CONSTANTS_H
#define PSPAWN_GEN_SHARED_CONSTANTS_H

#include <stddef.h>
#include <stdio.h>

extern FILE *out;

void open_class(const char *name, const char *summary);
void close_class(void);
void emit_int(const char *name, long long value);
void emit_uint(const char *name, unsigned long long value);
void emit_ulong(const char *name, unsigned long long value);
void emit_short(const char *name, long long value);
void emit_string(const char *name, const char *value);
void emit_kernel_abi(void);

#define INT(csharp, c) emit_int(#csharp, (long long)(c))
#define UINT(csharp, c) emit_uint(#csharp, (unsigned long long)(c))
#define ULONG(csharp, c) emit_ulong(#csharp, (unsigned long long)(c))
/* The size of a struct, and the offset of each field under its managed mirror's name:
 * OFFSET(Mirror, Field, c_type, c_field) emits Mirror_Field. */
#define SIZE(csharp, type) emit_int(#csharp "Size", (long long)sizeof(type))
#define OFFSET(csharp, csfield, type, field) emit_int(#csharp "_" #csfield, (long long)offsetof(type, field))

#endif
