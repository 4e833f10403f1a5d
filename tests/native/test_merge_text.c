/* PSPAWN_CTX_MERGE_TEXT: the read-only areas right before and after each object's text get
 * its protection, so the kernel merges the three; children have fewer areas and run the
 * same. RELRO stays read-only, nothing becomes writable and executable. The areas are
 * read from /proc/<child>/maps of a child that sleeps. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

struct area {
    unsigned long start, end, offset, inode;
    char perms[5];
    char dev[16];
};

#define MAX_AREAS 2048

/* pid's areas; their number. */
static int read_areas(pid_t pid, struct area *list)
{
    char path[64], line[4096];
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    FILE *maps = fopen(path, "re");
    CHECK(maps != NULL);
    int n = 0;
    while (n < MAX_AREAS && fgets(line, sizeof(line), maps) != NULL) {
        struct area *a = &list[n];
        if (sscanf(line, "%lx-%lx %4s %lx %15s %lu", &a->start, &a->end, a->perms, &a->offset, a->dev, &a->inode) == 6)
            n++;
    }
    fclose(maps);
    return n;
}

/* b continues a in the same file (what the kernel would merge if they had one protection). */
static bool continues(const struct area *a, const struct area *b)
{
    return a->inode != 0 && a->inode == b->inode && strcmp(a->dev, b->dev) == 0 && a->end == b->start &&
           a->offset + (a->end - a->start) == b->offset;
}

struct layout {
    int areas;         /* file areas */
    int read_only;     /* r--p file areas */
    int writable_exec; /* areas both writable and executable */
    int split;         /* read-only areas right before or after text of the same file */
    struct area list[MAX_AREAS];
};

static bool is_text(const struct area *a)
{
    return strcmp(a->perms, "r-xp") == 0;
}

static void take_layout(pid_t pid, struct layout *l)
{
    memset(l, 0, sizeof(*l));
    int n = read_areas(pid, l->list);
    for (int i = 0; i < n; i++) {
        const struct area *a = &l->list[i];
        if (a->perms[1] == 'w' && a->perms[2] == 'x')
            l->writable_exec++;
        if (a->inode != 0) /* anonymous areas vary from run to run (a sanitizer's) */
            l->areas++;
        if (strcmp(a->perms, "r--p") != 0 || a->inode == 0)
            continue;
        l->read_only++;
        if ((i + 1 < n && is_text(&l->list[i + 1]) && continues(a, &l->list[i + 1])) ||
            (i > 0 && is_text(&l->list[i - 1]) && continues(&l->list[i - 1], a))) {
            l->split++;
        }
    }
}

/* The layout of a child of a zygote of `name` made with `flags`, asleep while it is read. */
static void child_layout(const char *name, unsigned flags, struct layout *l)
{
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.flags = flags;
    attr.proxies = 1;
    pspawn_context_t ctx;
    CHECK(pspawn_context_create_ex(&ctx, fixture(name), &attr) == 0);
    CHECK_EQ_INT(pspawn_context_mode(&ctx), PSPAWN_MODE_ZYGOTE);
    char *argv[] = {"report", "--report-sleep-ms=20000", "--report-out=/dev/null", NULL};
    pid_t pid = pspawn(&ctx, argv);
    CHECK(pid > 0);
    usleep(100 * 1000); /* past its start-up (main reached: the layout is the one it runs with) */
    take_layout(pid, l);
    CHECK(kill(pid, SIGKILL) == 0);
    int st = wait_child(pid, 30000);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    pspawn_context_destroy(&ctx);
}

/* Each read-only area beside text in a plain child's layout is part of that text in the
 * merged one; the other read-only areas (RELRO) are still there. */
static void fewer_areas_nothing_writable_and_executable(void)
{
    static struct layout plain, merged;
    child_layout("report", 0, &plain);
    child_layout("report", PSPAWN_CTX_MERGE_TEXT, &merged);
    fprintf(stderr, "areas %d -> %d, read-only beside text %d, read-only %d -> %d\n", plain.areas, merged.areas,
            plain.split, plain.read_only, merged.read_only);
    CHECK(plain.split > 0); /* Debian's objects are linked with -z separate-code */
    /* One fewer each at least (a read-only area between two text areas joins all three). */
    CHECK(merged.areas <= plain.areas - plain.split);
    CHECK_EQ_INT(merged.read_only, plain.read_only - plain.split);
    CHECK(merged.read_only > 0);
    CHECK_EQ_INT(merged.writable_exec, 0);
    CHECK_EQ_INT(plain.writable_exec, 0);
}

/* With PSPAWN_CTX_PREFAULT too (which writes to every file area first, giving it an
 * anon_vma): merged as well, against a plain layout (prefaulting alone joins some read-only
 * areas to their RELRO neighbours). */
static void with_prefault_too(void)
{
    static struct layout plain, merged;
    child_layout("report", 0, &plain);
    child_layout("report", PSPAWN_CTX_PREFAULT | PSPAWN_CTX_MERGE_TEXT, &merged);
    fprintf(stderr, "prefaulted: areas %d -> %d, read-only beside text %d\n", plain.areas, merged.areas, plain.split);
    CHECK(plain.split > 0);
    CHECK(merged.areas <= plain.areas - plain.split);
    CHECK_EQ_INT(merged.writable_exec, 0);
}

/* pynamic10 calls into each of its 10 libraries and checks what they return. */
static void children_run_the_same(void)
{
    if (access(fixture("pynamic10"), X_OK) != 0) { /* the sanitizer build has no pynamic fixtures */
        fprintf(stderr, "skipped: no pynamic10 fixture in this build tree (%s)\n", fixture("pynamic10"));
        return;
    }
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.flags = PSPAWN_CTX_MERGE_TEXT;
    pspawn_context_t ctx;
    CHECK(pspawn_context_create_ex(&ctx, fixture("pynamic10"), &attr) == 0);
    CHECK_EQ_INT(pspawn_context_mode(&ctx), PSPAWN_MODE_ZYGOTE);
    for (int i = 0; i < 20; i++) {
        char *argv[] = {"pynamic10", NULL};
        pid_t pid = pspawn(&ctx, argv);
        CHECK(pid > 0);
        int st = wait_child(pid, 30000);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    pspawn_context_destroy(&ctx);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        {"fewer_areas_nothing_writable_and_executable", fewer_areas_nothing_writable_and_executable},
        {"with_prefault_too", with_prefault_too},
        {"children_run_the_same", children_run_the_same},
    };
    return run_tests(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
