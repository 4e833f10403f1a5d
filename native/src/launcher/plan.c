/* The plan: every instance of one spawn call described separately (string set, CPU
 * set), plus the options shared by all. Today's entry points and the vector API build
 * one; the dispatcher runs it over the context's backends. */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "launcher/internal.h"

extern char **environ;

/* execve's argument-size rule (arg_limits.c) applies per set, in every backend. */
static int measure_set(struct psp_plan_set *set, const char *path)
{
    if (psp_measure(set->argv, set->envp, &set->bytes, &set->argc, &set->envc) != 0)
        return errno;
    if (set->argc == 0)
        return EINVAL;
    if (psp_exceeds_arg_limits(set->argv, set->envp, strlen(path) + 1))
        return E2BIG;
    return 0;
}

/* The index of `set` among the plan's distinct CPU sets, added if new. The last few
 * added are searched: "instance i on CPU i % ncpu" interns ncpu sets. */
static int intern_cpuset(struct psp_plan *plan, const cpu_set_t *set, int *capacity)
{
    int from = plan->cpuset_count > 64 ? plan->cpuset_count - 64 : 0;
    for (int k = plan->cpuset_count - 1; k >= from; k--)
        if (CPU_EQUAL(&plan->cpusets[k], set))
            return k;
    if (plan->cpuset_count == *capacity) {
        int grown = *capacity ? 2 * *capacity : 16;
        cpu_set_t *more = realloc(plan->cpusets, (size_t)grown * sizeof(cpu_set_t));
        if (more == NULL)
            return -1;
        plan->cpusets = more;
        *capacity = grown;
    }
    plan->cpusets[plan->cpuset_count] = *set;
    return plan->cpuset_count++;
}

/* A caller's CPU set of `size` bytes as a cpu_set_t: EINVAL if it is empty or names
 * CPUs beyond CPU_SETSIZE. */
static int normalize_cpus(const cpu_set_t *in, size_t size, cpu_set_t *out)
{
    CPU_ZERO(out);
    if (size == 0)
        return EINVAL;
    size_t keep = size < sizeof(*out) ? size : sizeof(*out);
    memcpy(out, in, keep);
    for (size_t b = keep; b < size; b++)
        if (((const unsigned char *)in)[b] != 0)
            return EINVAL;
    return CPU_COUNT(out) == 0 ? EINVAL : 0;
}

int psp_plan_build(struct psp_plan *plan, const pspawn_instance_t *instances, int n, char *const argv[],
                   char *const envp[], const char *default_argv0, const pspawn_attr_t *attr)
{
    memset(plan, 0, sizeof(*plan));
    plan->cgroup_fd = -1;
    plan->count = n;
    plan->attr = attr;
    plan->instances = malloc((size_t)(n > 0 ? n : 1) * sizeof(*plan->instances));
    plan->sets = malloc((size_t)(instances != NULL && n > 0 ? n : 1) * sizeof(*plan->sets));
    if (plan->instances == NULL || plan->sets == NULL) {
        psp_plan_free(plan);
        return ENOMEM;
    }
    char **env_now = environ; /* "the caller's environ at the time of the call" */
    int cpu_capacity = 0;
    bool attr_cpus = attr != NULL && (attr->set & PSP_OPT_CPUS) && attr->cpuset_count > 0;
    if (instances == NULL) {
        plan->sets[0] = (struct psp_plan_set){.argv = argv, .envp = envp != NULL ? envp : env_now};
        plan->sets[0].error = measure_set(&plan->sets[0], default_argv0);
        plan->set_count = 1;
    }
    /* A set of one argv[0] for NULL argv: the context path. */
    static char *const none[] = {NULL};
    for (int i = 0; i < n; i++) {
        struct psp_plan_instance *in = &plan->instances[i];
        in->cpuset = -1;
        in->error = 0;
        const cpu_set_t *cpus = NULL;
        size_t cpusetsize = 0;
        if (instances == NULL) {
            in->set = 0;
        } else {
            const pspawn_instance_t *src = &instances[i];
            char *const *a = src->argv;
            char *const *e = src->envp != NULL ? src->envp : env_now;
            cpus = src->cpus;
            cpusetsize = src->cpusetsize;
            struct psp_plan_set *prev = plan->set_count > 0 ? &plan->sets[plan->set_count - 1] : NULL;
            if (a != NULL && prev != NULL && prev->argv == a && prev->envp == e) {
                in->set = plan->set_count - 1; /* same arrays as the previous: same set */
            } else {
                struct psp_plan_set *set = &plan->sets[plan->set_count];
                *set = (struct psp_plan_set){.argv = a, .envp = e};
                if (a == NULL) {
                    /* Filled in below: the strings live in the plan's argv0 vector. */
                    set->argv = NULL;
                }
                in->set = plan->set_count++;
            }
        }
        if (cpus != NULL) {
            cpu_set_t set;
            int err = normalize_cpus(cpus, cpusetsize, &set);
            if (err != 0)
                in->error = err;
            else if ((in->cpuset = intern_cpuset(plan, &set, &cpu_capacity)) < 0)
                goto nomem;
        } else if (attr_cpus) {
            if ((in->cpuset = intern_cpuset(plan, &attr->cpusets[i % attr->cpuset_count], &cpu_capacity)) < 0)
                goto nomem;
        }
    }
    /* NULL argv: the context path as argv[0], nothing else. */
    plan->argv0[0] = (char *)default_argv0;
    plan->argv0[1] = NULL;
    for (int k = 0; instances != NULL && k < plan->set_count; k++) {
        struct psp_plan_set *set = &plan->sets[k];
        if (set->argv == NULL)
            set->argv = default_argv0 != NULL ? plan->argv0 : none;
        set->error = measure_set(set, default_argv0);
    }
    for (int i = 0; i < n; i++)
        if (plan->instances[i].error == 0)
            plan->instances[i].error = plan->sets[plan->instances[i].set].error;
    plan->set_stamp = calloc((size_t)plan->set_count, sizeof(uint32_t));
    plan->set_local = calloc((size_t)plan->set_count, sizeof(uint32_t));
    plan->cpu_stamp = calloc((size_t)(plan->cpuset_count ? plan->cpuset_count : 1), sizeof(uint32_t));
    plan->cpu_local = calloc((size_t)(plan->cpuset_count ? plan->cpuset_count : 1), sizeof(uint32_t));
    if (plan->set_stamp == NULL || plan->set_local == NULL || plan->cpu_stamp == NULL || plan->cpu_local == NULL)
        goto nomem;
    return 0;
nomem:
    psp_plan_free(plan);
    return ENOMEM;
}

void psp_plan_free(struct psp_plan *plan)
{
    free(plan->instances);
    free(plan->sets);
    free(plan->cpusets);
    free(plan->set_stamp);
    free(plan->set_local);
    free(plan->cpu_stamp);
    free(plan->cpu_local);
    memset(plan, 0, sizeof(*plan));
}
