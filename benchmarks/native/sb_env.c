/* spawnbench: the environment every instance (and proxy) gets (-e empty, realistic, inherit). */
#include "spawnbench.h"

/* The paper's "realistic" environment: LD_LIBRARY_PATH with 10 entries (existing, empty
 * directories, as left by module systems) before the real one, and 50 variables in all. */
static char **make_realistic_env(const char *target)
{
    static const char *const fixed[] = {
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/tools/bin",
        "HOME=/home/user",
        "USER=user",
        "LOGNAME=user",
        "SHELL=/bin/bash",
        "LANG=C.UTF-8",
        "TERM=xterm-256color",
        "PWD=/home/user/run",
        "OLDPWD=/home/user",
        "HOSTNAME=node0001",
        "TMPDIR=/tmp",
        "TZ=UTC",
        "EDITOR=vi",
        "PAGER=less",
        "LESS=-R",
        "MAIL=/var/mail/user",
        "SHLVL=2",
        "MANPATH=/usr/share/man:/opt/tools/share/man",
        "INFOPATH=/usr/share/info",
        "PKG_CONFIG_PATH=/opt/tools/lib/pkgconfig:/usr/lib/pkgconfig",
        "CPATH=/opt/tools/include",
        "LIBRARY_PATH=/opt/tools/lib",
        "MODULEPATH=/etc/modulefiles:/usr/share/modulefiles:/opt/modulefiles",
        "MODULESHOME=/usr/share/modules",
        "LOADEDMODULES=gcc/12.2:openmpi/4.1.4:hdf5/1.14:fftw/3.3.10:python/3.11",
        "_LMFILES_=/opt/modulefiles/gcc/12.2:/opt/modulefiles/openmpi/4.1.4",
        "OMP_NUM_THREADS=1",
        "OMPI_MCA_btl=self,vader,tcp",
        "OMPI_MCA_pml=ob1",
        "SLURM_JOB_ID=123456",
        "SLURM_JOB_NAME=spawnbench",
        "SLURM_JOB_NODELIST=node[0001-0064]",
        "SLURM_NNODES=64",
        "SLURM_NTASKS=4096",
        "SLURM_TASKS_PER_NODE=64(x64)",
        "SLURM_CPUS_ON_NODE=64",
        "SLURM_SUBMIT_DIR=/home/user/run",
        "SLURM_CLUSTER_NAME=cluster",
        "SLURM_PARTITION=batch",
        "HDF5_DIR=/opt/tools/hdf5/1.14",
        "FFTW_DIR=/opt/tools/fftw/3.3.10",
        "MPI_HOME=/opt/tools/openmpi/4.1.4",
        "PYTHONPATH=/opt/tools/python/lib/python3.11/site-packages",
        "XDG_RUNTIME_DIR=/run/user/1000",
        "XDG_SESSION_TYPE=tty",
        "SSH_CONNECTION=10.0.0.1 50000 10.0.0.2 22",
        "HISTSIZE=10000",
        "LC_NUMERIC=C",
        "DISPLAY=",
    };
    size_t nfixed = sizeof(fixed) / sizeof(fixed[0]);
    char **env = xcalloc(nfixed + 2, sizeof(char *));
    for (size_t i = 0; i < nfixed; i++)
        env[i] = xstrdup(fixed[i]);

    /* Ten empty directories, stable across runs so that every launcher (this one and the
     * .NET harness) uses the same paths; the real library directory comes last. */
    const char *tmp = getenv("TMPDIR");
    char base[PATH_MAX];
    snprintf(base, sizeof(base), "%s/pspawn-bench-ldpath", tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (mkdir(base, 0755) != 0 && errno != EEXIST)
        die(base);
    char value[16 * PATH_MAX] = "LD_LIBRARY_PATH=";
    for (int i = 0; i < 10; i++) {
        char dir[PATH_MAX + 16];
        snprintf(dir, sizeof(dir), "%s/module%d/lib", base, i);
        char parent[PATH_MAX + 16];
        snprintf(parent, sizeof(parent), "%s/module%d", base, i);
        if ((mkdir(parent, 0755) != 0 && errno != EEXIST) || (mkdir(dir, 0755) != 0 && errno != EEXIST))
            die(dir);
        strncat(value, dir, sizeof(value) - strlen(value) - 2);
        strcat(value, ":");
    }
    /* The real one: the fixtures keep their libraries in ../lib of the executable. */
    char real_dir[PATH_MAX];
    snprintf(real_dir, sizeof(real_dir), "%s", target);
    char *slash = strrchr(real_dir, '/');
    if (slash != NULL)
        *slash = '\0';
    strncat(value, real_dir, sizeof(value) - strlen(value) - 8);
    strcat(value, "/../lib");
    env[nfixed] = xstrdup(value);
    env[nfixed + 1] = NULL;
    return env;
}

char **make_env(const char *kind, const char *target)
{
    if (strcmp(kind, "empty") == 0)
        return xcalloc(1, sizeof(char *));
    if (strcmp(kind, "realistic") == 0)
        return make_realistic_env(target);
    if (strcmp(kind, "inherit") == 0) {
        extern char **environ;
        return environ;
    }
    fprintf(stderr, "spawnbench: unknown environment '%s' (empty, realistic, inherit)\n", kind);
    exit(2);
}
