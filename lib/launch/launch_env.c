/*
 * launch_env.c - which host of a multi-host job this psrun is, and where
 * the coordinator listens: from psrun's flags, or from the launcher that
 * started psrun.
 *
 *   flags     --hosts H --host-rank R [--coordinator ADDR:PORT]
 *   Open MPI  OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE   (mpirun)
 *   PMI       PMI_RANK, PMI_SIZE                           (MPICH hydra, ...)
 *   Slurm     SLURM_PROCID, SLURM_NTASKS (or SLURM_NPROCS) (srun)
 *
 * Flags win; then the innermost launcher (mpirun inside a Slurm
 * allocation sets both OMPI_* and SLURM_*; it is mpirun that started us).
 * The coordinator is --coordinator, else PSMEM_COORDINATOR, else under
 * Slurm the first host of SLURM_JOB_NODELIST (expanded by `scontrol show
 * hostnames` when it is a bracketed list) on port PSMEM_COORD_PORT or
 * 20000 + SLURM_JOB_ID % 10000.  Under Open MPI and PMI nothing names a
 * reachable address, so it must be given.
 *
 * Pure but for running scontrol: the environment is an argument, so the
 * tests feed fake ones.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bridge.h"

static const char *env_get(char *const *envp, const char *name)
{
	size_t n = strlen(name);
	for (; envp && *envp; envp++)
		if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
			return *envp + n + 1;
	return NULL;
}

/* A decimal in [min, max], nothing else. */
static bool parse_int(const char *s, long min, long max, int *out)
{
	if (!s || !*s)
		return false;
	long v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9' || v > max)
			return false;
		v = v * 10 + (*p - '0');
	}
	if (v < min || v > max)
		return false;
	*out = (int)v;
	return true;
}

struct launcher {
	const char *name, *rank_var, *size_var, *size_var2;
};

static const struct launcher launchers[] = {
	{"Open MPI", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", NULL},
	{"PMI", "PMI_RANK", "PMI_SIZE", NULL},
	{"Slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_NPROCS"},
};

static int from_env(char *const *envp, struct ps__launch *l, char *err, size_t errlen)
{
	for (size_t i = 0; i < sizeof launchers / sizeof launchers[0]; i++) {
		const struct launcher *c = &launchers[i];
		const char *rank = env_get(envp, c->rank_var);
		if (!rank)
			continue;
		const char *size_var = c->size_var;
		const char *size = env_get(envp, size_var);
		if (!size && c->size_var2)
			size = env_get(envp, size_var = c->size_var2);
		if (!size) {
			snprintf(err, errlen, "%s sets %s but not %s", c->name, c->rank_var, c->size_var);
			return -EINVAL;
		}
		if (!parse_int(size, 1, PS__MAX_HOSTS, &l->hosts)) {
			snprintf(err, errlen, "%s=%s: want a host count from 1 to %d", size_var, size, PS__MAX_HOSTS);
			return -EINVAL;
		}
		if (!parse_int(rank, 0, l->hosts - 1, &l->rank)) {
			snprintf(err, errlen, "%s=%s: want a rank from 0 to %d (%s=%d)", c->rank_var, rank,
				 l->hosts - 1, size_var, l->hosts);
			return -EINVAL;
		}
		snprintf(l->source, sizeof l->source, "%s", c->name);
		return 0;
	}
	l->hosts = 1;
	l->rank = 0;
	snprintf(l->source, sizeof l->source, "none");
	return 0;
}

/* Finds an executable named prog in the PATH of envp. */
static bool find_in_path(char *const *envp, const char *prog, char *out, size_t outlen)
{
	const char *path = env_get(envp, "PATH");
	while (path && *path) {
		const char *end = strchr(path, ':');
		size_t n = end ? (size_t)(end - path) : strlen(path);
		if (n > 0 && (size_t)snprintf(out, outlen, "%.*s/%s", (int)n, path, prog) < outlen &&
		    access(out, X_OK) == 0)
			return true;
		path += n + (end ? 1 : 0);
	}
	return false;
}

/* First line of `scontrol show hostnames LIST`: 0, or -errno / -EIO. */
static int scontrol_first(const char *scontrol, const char *list, char *out, size_t outlen)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0)
		return -errno;
	pid_t pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -errno;
	}
	if (pid == 0) {
		dup2(p[1], STDOUT_FILENO);
		execl(scontrol, "scontrol", "show", "hostnames", list, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	char buf[512];
	size_t n = 0;
	ssize_t r;
	while (n < sizeof buf - 1 && (r = read(p[0], buf + n, sizeof buf - 1 - n)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			break;
		n += (size_t)r;
	}
	close(p[0]);
	buf[n] = 0;
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	char *nl = strchr(buf, '\n');
	if (nl)
		*nl = 0;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || !buf[0] || strlen(buf) >= outlen)
		return -EIO;
	memcpy(out, buf, strlen(buf) + 1); /* fits: checked above */
	return 0;
}

static int slurm_coordinator(char *const *envp, struct ps__launch *l, char *err, size_t errlen)
{
	const char *var = "SLURM_JOB_NODELIST";
	const char *list = env_get(envp, var);
	if (!list)
		list = env_get(envp, var = "SLURM_NODELIST");
	if (!list || !*list) {
		snprintf(err, errlen, "Slurm sets no SLURM_JOB_NODELIST to find the coordinator in: "
			 "pass --coordinator ADDR:PORT");
		return -EINVAL;
	}
	size_t first = strcspn(list, ",[");
	if (list[first] != '[') {
		/* "a" or "a,b[1-2]": the first name needs no expansion */
		if (first == 0 || first >= sizeof l->coord_host) {
			snprintf(err, errlen, "%s=%s: no host name in it", var, list);
			return -EINVAL;
		}
		snprintf(l->coord_host, sizeof l->coord_host, "%.*s", (int)first, list);
	} else {
		char scontrol[4096];
		if (!find_in_path(envp, "scontrol", scontrol, sizeof scontrol)) {
			snprintf(err, errlen, "%s=%s needs 'scontrol show hostnames' to expand, and scontrol is "
				 "not on PATH: pass --coordinator ADDR:PORT", var, list);
			return -ENOENT;
		}
		if (scontrol_first(scontrol, list, l->coord_host, sizeof l->coord_host) != 0) {
			snprintf(err, errlen, "'%s show hostnames %s' failed or printed no host: pass "
				 "--coordinator ADDR:PORT", scontrol, list);
			return -EIO;
		}
	}
	const char *port = env_get(envp, "PSMEM_COORD_PORT");
	int v;
	if (port) {
		if (!parse_int(port, 1, 65535, &v)) {
			snprintf(err, errlen, "PSMEM_COORD_PORT=%s: want a port from 1 to 65535", port);
			return -EINVAL;
		}
	} else {
		const char *job = env_get(envp, "SLURM_JOB_ID");
		if (!job)
			job = env_get(envp, "SLURM_JOBID");
		unsigned long id = job ? strtoul(job, NULL, 10) : 0;
		v = 20000 + (int)(id % 10000);
	}
	l->coord_port = (uint16_t)v;
	return 0;
}

int ps__launch_resolve(int flag_hosts, int flag_rank, const char *flag_coord, char *const *envp,
		       struct ps__launch *l, char *err, size_t errlen)
{
	memset(l, 0, sizeof *l);
	err[0] = 0;
	if ((flag_hosts >= 0) != (flag_rank >= 0)) {
		snprintf(err, errlen, "--hosts and --host-rank go together");
		return -EINVAL;
	}
	int rc = 0;
	if (flag_hosts >= 0) {
		if (flag_hosts < 1 || flag_hosts > PS__MAX_HOSTS) {
			snprintf(err, errlen, "--hosts wants a host count from 1 to %d", PS__MAX_HOSTS);
			return -EINVAL;
		}
		if (flag_rank >= flag_hosts) {
			snprintf(err, errlen, "--host-rank %d is outside the job (--hosts %d: ranks 0 to %d)",
				 flag_rank, flag_hosts, flag_hosts - 1);
			return -EINVAL;
		}
		l->hosts = flag_hosts;
		l->rank = flag_rank;
		snprintf(l->source, sizeof l->source, "flags");
	} else {
		rc = from_env(envp, l, err, errlen);
		if (rc)
			return rc;
	}
	const char *coord = flag_coord;
	const char *what = "--coordinator";
	if (!coord && (coord = env_get(envp, "PSMEM_COORDINATOR")) != NULL)
		what = "PSMEM_COORDINATOR";
	if (coord) {
		if (ps__addr_split(coord, l->coord_host, sizeof l->coord_host, &l->coord_port) != 0 ||
		    l->coord_port == 0) {
			snprintf(err, errlen, "%s '%s': want ADDR:PORT (or [IPV6]:PORT) with a port from 1 to 65535",
				 what, coord);
			return -EINVAL;
		}
		return 0;
	}
	if (l->hosts == 1)
		return 0;
	if (strcmp(l->source, "Slurm") == 0)
		return slurm_coordinator(envp, l, err, errlen);
	snprintf(err, errlen, "a %d-host job needs the coordinator's address: pass --coordinator ADDR:PORT "
		 "(or set PSMEM_COORDINATOR); it is derived only under Slurm", l->hosts);
	return -EINVAL;
}
