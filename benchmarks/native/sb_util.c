/* spawnbench: small helpers (clocks, allocation, statistics). */
#include "spawnbench.h"

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double tv_us(struct timeval tv)
{
    return (double)tv.tv_sec * 1e6 + (double)tv.tv_usec;
}

double ru_cpu_us(const struct rusage *ru)
{
    return tv_us(ru->ru_utime) + tv_us(ru->ru_stime);
}

void die(const char *what)
{
    fprintf(stderr, "spawnbench: %s: %s\n", what, strerror(errno));
    exit(2);
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p == NULL)
        die("calloc");
    return p;
}

char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        die("strdup");
    return p;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n-1] (sorts a copy). */
double median(const double *v, int n)
{
    if (n <= 0)
        return 0;
    double *c = xcalloc((size_t)n, sizeof(double));
    memcpy(c, v, (size_t)n * sizeof(double));
    qsort(c, (size_t)n, sizeof(double), cmp_double);
    double m = n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
    free(c);
    return m;
}

void min_max(const double *v, int n, double *mn, double *mx)
{
    *mn = *mx = n > 0 ? v[0] : 0;
    for (int i = 1; i < n; i++) {
        if (v[i] < *mn)
            *mn = v[i];
        if (v[i] > *mx)
            *mx = v[i];
    }
}
