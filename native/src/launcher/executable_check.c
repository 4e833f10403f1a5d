/* Refuse, with a precise errno, executables a zygote cannot serve.
 *
 * Everything here reads a file that anyone may have written: every offset, size and count
 * comes from the file, so each is checked against the file's size (and the work it can
 * cause is capped) before it is used. Reads are pread()s, never a mapping: a file
 * truncated under us makes a read come up short, not a SIGBUS in the caller. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "launcher/internal.h"

/* The kernel refuses program header tables over 64 KiB (fs/binfmt_elf.c). */
#define MAX_PHDR_BYTES 65536u
/* Caps on what a file can make the scan read; real executables stay far below them
 * (python3: 2,211 dynamic symbols, a 66 KiB string table). Above them: ENOSYS. */
#define MAX_SECTIONS 65536u
#define MAX_DYNAMIC_ENTRIES 8192u
#define MAX_SYMBOLS (1u << 21)
#define MAX_STRTAB_BYTES (64u << 20)
#define SCAN_CHUNK (64u << 10)

/* The name the proxy interposes on (entry.c); the terminator is part of the match. */
static const char entry_name[] = "__libc_start_main";
#define ENTRY_NAME_BYTES sizeof(entry_name)

struct elf_file {
    int fd;
    uint64_t size;
    Elf64_Ehdr eh;
    Elf64_Phdr *ph;
    unsigned phnum;
};

/* Where the dynamic symbols and their names are in the file. */
struct dynsyms {
    uint64_t sym_offset;
    uint64_t count;
    uint64_t str_offset;
    uint64_t str_size;
};

/* Offsets in the string table where entry_name (with its terminator) starts. */
#define MAX_CANDIDATES 16
struct candidates {
    uint64_t at[MAX_CANDIDATES];
    unsigned n;
    bool overflow; /* more than MAX_CANDIDATES: compare each undefined symbol's name */
};

static int read_fully_at(int fd, void *buf, size_t len, uint64_t offset)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(offset + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        done += (size_t)n;
    }
    return 0;
}

static bool in_file(const struct elf_file *f, uint64_t offset, uint64_t length)
{
    return offset <= f->size && length <= f->size - offset;
}

/* ENOEXEC unless the header is an x86-64 ELF executable's. */
static int read_header(struct elf_file *f)
{
    Elf64_Ehdr *eh = &f->eh;
    if (read_fully_at(f->fd, eh, sizeof(*eh), 0) != 0)
        return ENOEXEC;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
        eh->e_ident[EI_DATA] != ELFDATA2LSB || eh->e_machine != EM_X86_64 ||
        (eh->e_type != ET_EXEC && eh->e_type != ET_DYN) || eh->e_phentsize != sizeof(Elf64_Phdr))
        return ENOEXEC;
    return 0;
}

static int read_program_headers(struct elf_file *f)
{
    uint64_t bytes = (uint64_t)f->eh.e_phnum * sizeof(Elf64_Phdr);
    if (bytes == 0 || bytes > MAX_PHDR_BYTES || !in_file(f, f->eh.e_phoff, bytes))
        return ENOEXEC;
    if ((f->ph = malloc(bytes)) == NULL)
        return ENOMEM;
    if (read_fully_at(f->fd, f->ph, bytes, f->eh.e_phoff) != 0)
        return ENOEXEC;
    f->phnum = f->eh.e_phnum;
    return 0;
}

static const Elf64_Phdr *find_segment(const struct elf_file *f, uint32_t type)
{
    for (unsigned i = 0; i < f->phnum; i++)
        if (f->ph[i].p_type == type)
            return &f->ph[i];
    return NULL;
}

/* The file offset of virtual address `vaddr` through the PT_LOAD that maps it from the
 * file, and how many bytes of that segment's file image follow it. */
static bool map_vaddr(const struct elf_file *f, uint64_t vaddr, uint64_t *offset, uint64_t *avail)
{
    for (unsigned i = 0; i < f->phnum; i++) {
        const Elf64_Phdr *p = &f->ph[i];
        if (p->p_type != PT_LOAD || vaddr < p->p_vaddr || vaddr - p->p_vaddr >= p->p_filesz ||
            !in_file(f, p->p_offset, p->p_filesz))
            continue;
        *offset = p->p_offset + (vaddr - p->p_vaddr);
        *avail = p->p_filesz - (vaddr - p->p_vaddr);
        return true;
    }
    return false;
}

static bool map_range(const struct elf_file *f, uint64_t vaddr, uint64_t length, uint64_t *offset)
{
    uint64_t avail;
    return map_vaddr(f, vaddr, offset, &avail) && length <= avail;
}

static bool read_section_header(const struct elf_file *f, uint64_t index, Elf64_Shdr *sh)
{
    return read_fully_at(f->fd, sh, sizeof(*sh), f->eh.e_shoff + index * sizeof(*sh)) == 0;
}

static bool dynsyms_valid(const struct elf_file *f, const struct dynsyms *d)
{
    return d->count <= MAX_SYMBOLS && d->str_size <= MAX_STRTAB_BYTES &&
           in_file(f, d->sym_offset, d->count * sizeof(Elf64_Sym)) && in_file(f, d->str_offset, d->str_size);
}

/* .dynsym and the string table its sh_link names. */
static bool dynsyms_from_sections(const struct elf_file *f, struct dynsyms *out)
{
    const Elf64_Ehdr *eh = &f->eh;
    if (eh->e_shoff == 0 || eh->e_shentsize != sizeof(Elf64_Shdr))
        return false;
    uint64_t count = eh->e_shnum;
    Elf64_Shdr sh;
    if (count == 0) { /* extended numbering: the count is in section 0 */
        if (!in_file(f, eh->e_shoff, sizeof(sh)) || !read_section_header(f, 0, &sh))
            return false;
        count = sh.sh_size;
    }
    if (count == 0 || count > MAX_SECTIONS || !in_file(f, eh->e_shoff, count * sizeof(sh)))
        return false;
    for (uint64_t i = 0; i < count; i++) {
        if (!read_section_header(f, i, &sh))
            return false;
        if (sh.sh_type != SHT_DYNSYM)
            continue;
        Elf64_Shdr strtab;
        if (sh.sh_entsize != sizeof(Elf64_Sym) || sh.sh_link >= count ||
            !read_section_header(f, sh.sh_link, &strtab) || strtab.sh_type != SHT_STRTAB)
            return false;
        *out = (struct dynsyms){.sym_offset = sh.sh_offset, .count = sh.sh_size / sizeof(Elf64_Sym),
                                .str_offset = strtab.sh_offset, .str_size = strtab.sh_size};
        return dynsyms_valid(f, out);
    }
    return false;
}

/* DT_HASH: nbucket, nchain, ...; nchain is the number of symbols. */
static bool count_from_hash(const struct elf_file *f, uint64_t vaddr, uint64_t *count)
{
    uint32_t words[2];
    uint64_t offset;
    if (!map_range(f, vaddr, sizeof(words), &offset) || read_fully_at(f->fd, words, sizeof(words), offset) != 0)
        return false;
    *count = words[1];
    return true;
}

/* The largest value of `n` 32-bit words at `offset` (read in chunks). */
static bool max_word(const struct elf_file *f, uint64_t offset, uint64_t n, uint32_t *max)
{
    uint32_t chunk[256];
    *max = 0;
    for (uint64_t done = 0; done < n;) {
        size_t k = n - done < 256 ? (size_t)(n - done) : 256;
        if (read_fully_at(f->fd, chunk, k * sizeof(uint32_t), offset + done * sizeof(uint32_t)) != 0)
            return false;
        for (size_t i = 0; i < k; i++)
            if (chunk[i] > *max)
                *max = chunk[i];
        done += k;
    }
    return true;
}

/* DT_GNU_HASH has no symbol count: it is one past the end of the chain that starts at
 * the highest bucket (a chain ends at the entry whose low bit is set). Symbols below
 * symoffset (the undefined ones among them) are not hashed. */
static bool count_from_gnu_hash(const struct elf_file *f, uint64_t vaddr, uint64_t *count)
{
    uint32_t header[4]; /* nbuckets, symoffset, bloom words, bloom shift */
    uint64_t offset, avail;
    if (!map_vaddr(f, vaddr, &offset, &avail) || avail < sizeof(header) ||
        read_fully_at(f->fd, header, sizeof(header), offset) != 0)
        return false;
    uint64_t nbuckets = header[0], symoffset = header[1];
    uint64_t buckets_at = sizeof(header) + (uint64_t)header[2] * sizeof(uint64_t);
    uint64_t chains_at = buckets_at + nbuckets * sizeof(uint32_t);
    uint32_t last;
    if (nbuckets > MAX_SYMBOLS || chains_at > avail || !max_word(f, offset + buckets_at, nbuckets, &last))
        return false;
    if (last == 0) {
        *count = symoffset;
        return true;
    }
    if (last < symoffset)
        return false;
    for (uint64_t index = last; index < MAX_SYMBOLS; index++) {
        uint64_t at = chains_at + (index - symoffset) * sizeof(uint32_t);
        uint32_t hash;
        if (at > avail || avail - at < sizeof(hash) || read_fully_at(f->fd, &hash, sizeof(hash), offset + at) != 0)
            return false;
        if (hash & 1) {
            *count = index + 1;
            return true;
        }
    }
    return false;
}

struct dynamic_tags {
    uint64_t symtab, strtab, strsz, syment, hash, gnu_hash;
};

static bool read_dynamic_tags(const struct elf_file *f, const Elf64_Phdr *dyn, struct dynamic_tags *t)
{
    uint64_t n = dyn->p_filesz / sizeof(Elf64_Dyn);
    if (n > MAX_DYNAMIC_ENTRIES || !in_file(f, dyn->p_offset, n * sizeof(Elf64_Dyn)))
        return false;
    memset(t, 0, sizeof(*t));
    Elf64_Dyn chunk[64];
    for (uint64_t done = 0; done < n;) {
        size_t k = n - done < 64 ? (size_t)(n - done) : 64;
        if (read_fully_at(f->fd, chunk, k * sizeof(Elf64_Dyn), dyn->p_offset + done * sizeof(Elf64_Dyn)) != 0)
            return false;
        for (size_t i = 0; i < k; i++) {
            const Elf64_Dyn *d = &chunk[i];
            switch (d->d_tag) {
            case DT_NULL:
                return true;
            case DT_SYMTAB: t->symtab = d->d_un.d_ptr; break;
            case DT_STRTAB: t->strtab = d->d_un.d_ptr; break;
            case DT_STRSZ: t->strsz = d->d_un.d_val; break;
            case DT_SYMENT: t->syment = d->d_un.d_val; break;
            case DT_HASH: t->hash = d->d_un.d_ptr; break;
            case DT_GNU_HASH: t->gnu_hash = d->d_un.d_ptr; break;
            default: break;
            }
        }
        done += k;
    }
    return true;
}

/* What the loader itself uses: PT_DYNAMIC's DT_SYMTAB and DT_STRTAB, with the count
 * from DT_HASH or DT_GNU_HASH, for executables whose section headers are stripped. */
static bool dynsyms_from_dynamic(const struct elf_file *f, struct dynsyms *out)
{
    const Elf64_Phdr *dyn = find_segment(f, PT_DYNAMIC);
    struct dynamic_tags t;
    if (dyn == NULL || !read_dynamic_tags(f, dyn, &t) || t.symtab == 0 || t.strtab == 0 ||
        (t.syment != 0 && t.syment != sizeof(Elf64_Sym)))
        return false;
    uint64_t count;
    if (!(t.hash != 0 ? count_from_hash(f, t.hash, &count) : t.gnu_hash != 0 && count_from_gnu_hash(f, t.gnu_hash, &count)))
        return false;
    if (count > MAX_SYMBOLS || t.strsz > MAX_STRTAB_BYTES || !map_range(f, t.symtab, count * sizeof(Elf64_Sym), &out->sym_offset) ||
        !map_range(f, t.strtab, t.strsz, &out->str_offset))
        return false;
    out->count = count;
    out->str_size = t.strsz;
    return dynsyms_valid(f, out);
}

/* Every offset of the string table at which entry_name starts (a longer name may end
 * with it: linkers share suffixes). Chunks overlap by the name's length less one. */
static bool find_candidates(const struct elf_file *f, const struct dynsyms *d, char *buf, struct candidates *c)
{
    memset(c, 0, sizeof(*c));
    uint64_t next_new = 0; /* matches in an overlap are seen twice: count them once */
    for (uint64_t pos = 0; d->str_size - pos >= ENTRY_NAME_BYTES; pos += SCAN_CHUNK - (ENTRY_NAME_BYTES - 1)) {
        size_t n = d->str_size - pos < SCAN_CHUNK ? (size_t)(d->str_size - pos) : SCAN_CHUNK;
        if (read_fully_at(f->fd, buf, n, d->str_offset + pos) != 0)
            return false;
        for (const char *p = buf; (p = memmem(p, n - (size_t)(p - buf), entry_name, ENTRY_NAME_BYTES)) != NULL; p++) {
            uint64_t at = pos + (uint64_t)(p - buf);
            if (at < next_new)
                continue;
            next_new = at + 1;
            if (c->n == MAX_CANDIDATES)
                c->overflow = true;
            else
                c->at[c->n++] = at;
        }
        if (n < SCAN_CHUNK)
            break;
    }
    return true;
}

static bool names_entry(const struct elf_file *f, const struct dynsyms *d, const struct candidates *c, uint32_t name)
{
    for (unsigned i = 0; i < c->n; i++)
        if (c->at[i] == name)
            return true;
    if (!c->overflow || name > d->str_size || d->str_size - name < ENTRY_NAME_BYTES)
        return false;
    char bytes[ENTRY_NAME_BYTES];
    return read_fully_at(f->fd, bytes, sizeof(bytes), d->str_offset + name) == 0 &&
           memcmp(bytes, entry_name, sizeof(bytes)) == 0;
}

/* True if an undefined dynamic symbol is named __libc_start_main (of any version:
 * versions live in .gnu.version, not in the name). */
static bool imports_entry(const struct elf_file *f, const struct dynsyms *d)
{
    char *buf = malloc(SCAN_CHUNK);
    struct candidates c;
    bool found = false;
    if (buf == NULL || !find_candidates(f, d, buf, &c) || (c.n == 0 && !c.overflow)) {
        free(buf);
        return false;
    }
    const size_t per_chunk = SCAN_CHUNK / sizeof(Elf64_Sym);
    Elf64_Sym *syms = (Elf64_Sym *)(void *)buf;
    for (uint64_t done = 0; done < d->count && !found;) {
        size_t k = d->count - done < per_chunk ? (size_t)(d->count - done) : per_chunk;
        if (read_fully_at(f->fd, syms, k * sizeof(Elf64_Sym), d->sym_offset + done * sizeof(Elf64_Sym)) != 0)
            break;
        for (size_t i = 0; i < k && !found; i++)
            found = syms[i].st_shndx == SHN_UNDEF && syms[i].st_name != 0 && names_entry(f, d, &c, syms[i].st_name);
        done += k;
    }
    free(buf);
    return found;
}

/* ENOEXEC unless this is an ELF executable for our machine; ENOTSUP if it has no
 * PT_INTERP (static: the loader never runs, so LD_PRELOAD is ignored); ENOSYS if it
 * does not import __libc_start_main (its own _start, Go): the proxy's wrapper would
 * never be called and the target's code would run unfrozen. */
static int check_elf(struct elf_file *f)
{
    int err = read_header(f);
    if (err == 0)
        err = read_program_headers(f);
    if (err != 0)
        return err;
    if (find_segment(f, PT_INTERP) == NULL)
        return ENOTSUP;
    struct dynsyms d;
    if (!dynsyms_from_sections(f, &d) && !dynsyms_from_dynamic(f, &d))
        return ENOSYS;
    return imports_entry(f, &d) ? 0 : ENOSYS;
}

int psp_check_executable(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return errno == ENOTDIR ? ENOENT : errno;
    if (!S_ISREG(st.st_mode) || access(path, X_OK) != 0)
        return EACCES;
    if (st.st_mode & (S_ISUID | S_ISGID))
        return EPERM;
    struct elf_file f = {.fd = open(path, O_RDONLY | O_CLOEXEC)};
    if (f.fd < 0)
        return errno;
    struct stat opened;
    int err = fstat(f.fd, &opened) != 0 ? errno : 0;
    if (err == 0) {
        f.size = (uint64_t)opened.st_size;
        err = check_elf(&f);
    }
    free(f.ph);
    close(f.fd);
    return err;
}
