/* common_proc.c - see common.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

const char *build_path(const char *rel)
{
	static char buf[8][1024];
	static int i;
	const char *b = getenv("PSMEM_BUILD");
	char *p = buf[i++ % 8];
	snprintf(p, 1024, "%s/%s", b && *b ? b : "build", rel);
	return p;
}

static void drain(int fd, char *buf, size_t *len, size_t cap)
{
	char tmp[4096];
	ssize_t n = read(fd, tmp, sizeof tmp);
	if (n <= 0)
		return;
	size_t room = cap - 1 - *len;
	size_t take = (size_t)n < room ? (size_t)n : room;
	memcpy(buf + *len, tmp, take);
	*len += take;
	buf[*len] = 0;
}

void run_prog(char *const argv[], char *const env[], double timeout_s, double signal_after_s, int sig,
	      struct run_result *r)
{
	int po[2], pe[2];
	memset(r, 0, sizeof *r);
	if (pipe(po) || pipe(pe))
		abort();
	double t0 = now();
	pid_t pid = fork();
	if (pid == 0) {
		setpgid(0, 0);
		dup2(po[1], 1);
		dup2(pe[1], 2);
		close(po[0]);
		close(pe[0]);
		for (int i = 0; env && env[i]; i++)
			putenv(env[i]);
		execvp(argv[0], argv);
		fprintf(stderr, "test: cannot execute %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	size_t lo = 0, le = 0;
	bool sent = false;
	int status = 0;
	bool done = false;
	for (;;) {
		struct pollfd fds[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
		poll(fds, 2, 20);
		if (fds[0].revents)
			drain(po[0], r->out, &lo, sizeof r->out);
		if (fds[1].revents)
			drain(pe[0], r->err, &le, sizeof r->err);
		/* Ends after a poll that began once the child was reaped found
		 * nothing more to read: what the child (and the nodes it waited
		 * for) wrote between this poll and the reaping is read by the
		 * next round, not lost. */
		if (done && !(fds[0].revents & POLLIN) && !(fds[1].revents & POLLIN))
			break;
		if (!done && waitpid(pid, &status, WNOHANG) == pid) {
			done = true;
			r->t_end = now();
			r->seconds = r->t_end - t0;
		}
		double el = now() - t0;
		if (!sent && signal_after_s >= 0 && el >= signal_after_s) {
			kill(pid, sig);
			sent = true;
		}
		if (!done && el > timeout_s) {
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			r->status = -1;
			r->seconds = now() - t0;
			close(po[0]);
			close(pe[0]);
			return;
		}
	}
	close(po[0]);
	close(pe[0]);
	r->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int count_segments(void)
{
	DIR *d = opendir("/dev/shm");
	int n = 0;
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL)
		n += strncmp(e->d_name, "psmem-", 6) == 0;
	if (d)
		closedir(d);
	return n;
}

void seg_snapshot(struct seg_snapshot *s)
{
	DIR *d = opendir("/dev/shm");
	struct dirent *e;
	s->n = 0;
	while (d && (e = readdir(d)) != NULL && s->n < 128)
		if (strncmp(e->d_name, "psmem-", 6) == 0)
			snprintf(s->names[s->n++], sizeof s->names[0], "%.63s", e->d_name);
	if (d)
		closedir(d);
}

static bool creator_alive(const char *name)
{
	char path[128];
	int32_t pid = 0;
	snprintf(path, sizeof path, "/dev/shm/%s", name);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return false;
	/* creator_pid sits at byte 36 of the header (asserted in psmem_int.h) */
	bool ok = pread(fd, &pid, sizeof pid, 36) == (ssize_t)sizeof pid;
	close(fd);
	return ok && pid > 0 && kill(pid, 0) == 0;
}

int seg_leaked_since(const struct seg_snapshot *before)
{
	struct seg_snapshot now;
	seg_snapshot(&now);
	int leaked = 0;
	for (int i = 0; i < now.n; i++) {
		bool old = false;
		for (int j = 0; j < before->n && !old; j++)
			old = strcmp(now.names[i], before->names[j]) == 0;
		if (!old && !creator_alive(now.names[i])) {
			fprintf(stderr, "leaked segment /dev/shm/%s\n", now.names[i]);
			leaked++;
		}
	}
	return leaked;
}

int count_procs(const char *needle)
{
	DIR *d = opendir("/proc");
	int n = 0;
	struct dirent *e;
	pid_t me = getpid();
	while (d && (e = readdir(d)) != NULL) {
		pid_t pid = atoi(e->d_name);
		if (pid <= 0 || pid == me)
			continue;
		char path[64], cmd[4096];
		snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
		int fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;
		ssize_t len = read(fd, cmd, sizeof cmd - 1);
		close(fd);
		if (len <= 0)
			continue;
		for (ssize_t i = 0; i < len; i++)
			if (cmd[i] == 0)
				cmd[i] = ' ';
		cmd[len] = 0;
		/* a zombie has an empty cmdline and is skipped above */
		n += strstr(cmd, needle) != NULL;
	}
	if (d)
		closedir(d);
	return n;
}

double mono_now(void)
{
	return now();
}

void bg_start(struct bg_proc *b, char *const argv[], const char *out_path)
{
	memset(b, 0, sizeof *b);
	snprintf(b->out, sizeof b->out, "%s", out_path);
	snprintf(b->err, sizeof b->err, "%s.err", b->out);
	/* emptied here, before the caller looks at them */
	int o = open(b->out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	int e = open(b->err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (o < 0 || e < 0)
		abort();
	b->pid = fork();
	if (b->pid == 0) {
		setpgid(0, 0);
		dup2(o, 1);
		dup2(e, 2);
		execv(argv[0], argv);
		_exit(127);
	}
	close(o);
	close(e);
}

static void bg_ended(struct bg_proc *b, int st)
{
	b->t_end = now();
	b->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

bool bg_wait(struct bg_proc *b, double timeout_s)
{
	if (b->pid < 0)
		return true; /* reaped by bg_wait_output */
	double end = now() + timeout_s;
	int st;
	while (now() < end) {
		if (waitpid(b->pid, &st, WNOHANG) == b->pid) {
			bg_ended(b, st);
			return true;
		}
		usleep(10000);
	}
	kill(-b->pid, SIGKILL);
	waitpid(b->pid, &st, 0);
	b->status = -1;
	return false;
}

bool bg_wait_output(struct bg_proc *b, const char *needle, double timeout_s)
{
	double end = now() + timeout_s;
	int st;
	while (now() < end) {
		if (strstr(file_text(b->out), needle))
			return true;
		if (b->pid > 0 && waitpid(b->pid, &st, WNOHANG) == b->pid) {
			bg_ended(b, st);
			b->pid = -b->pid; /* reaped */
			return strstr(file_text(b->out), needle) != NULL;
		}
		usleep(5000);
	}
	return false;
}

const char *file_text(const char *path)
{
	static char buf[8][1 << 16];
	static int i;
	char *s = buf[i++ % 8];
	s[0] = 0;
	FILE *f = fopen(path, "r");
	if (!f)
		return s;
	size_t n = fread(s, 1, (1 << 16) - 1, f);
	s[n] = 0;
	fclose(f);
	return s;
}

const char *proc_env(pid_t pid, const char *name)
{
	static char val[256];
	char path[64], buf[16384];
	val[0] = 0;
	snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return val;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return val;
	buf[n] = 0;
	size_t nl = strlen(name);
	for (ssize_t i = 0; i < n; i += (ssize_t)strlen(buf + i) + 1) {
		if (strncmp(buf + i, name, nl) == 0 && buf[i + nl] == '=') {
			snprintf(val, sizeof val, "%s", buf + i + nl + 1);
			break;
		}
	}
	return val;
}

/* psrun's children (the guardian and the nodes), by PSMEM_NODE. */
pid_t psrun_node_pid(pid_t psrun, int node)
{
	char path[64], buf[4096], want[16];
	snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)psrun, (int)psrun);
	snprintf(want, sizeof want, "%d", node);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	for (char *save = NULL, *tok = strtok_r(buf, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
		pid_t p = atoi(tok);
		if (p > 0 && !strcmp(proc_env(p, "PSMEM_NODE"), want))
			return p;
	}
	return 0;
}

pid_t psrun_node_pid_wait(pid_t psrun, int node, double timeout_s)
{
	double end = now() + timeout_s;
	for (;;) {
		pid_t p = psrun_node_pid(psrun, node);
		if (p > 0 && *proc_env(p, "PSMEM_SEGMENT"))
			return p;
		if (now() > end)
			return 0;
		usleep(10000);
	}
}

double json_number(const char *json, const char *key)
{
	char pat[128];
	snprintf(pat, sizeof pat, "\"%s\": ", key);
	const char *p = strstr(json, pat);
	return p ? strtod(p + strlen(pat), NULL) : NAN;
}

int make_ratings(const char *train, const char *test, int rows, int cols, int nnz, int seed, const char *test_frac)
{
	char r[16], c[16], n[16], s[16];
	snprintf(r, sizeof r, "%d", rows);
	snprintf(c, sizeof c, "%d", cols);
	snprintf(n, sizeof n, "%d", nnz);
	snprintf(s, sizeof s, "%d", seed);
	char *argv[] = {(char *)build_path("apps/mfgen"), "--rows", r, "--cols", c, "--nnz", n, "--rank", "3",
			"--noise", "0.1", "--seed", s, "--out", (char *)train, "--test-out", (char *)test,
			"--test-frac", (char *)test_frac, NULL};
	static struct run_result res;
	run_prog(argv, NULL, 60, -1, 0, &res);
	return res.status;
}

bool left_clean(const struct seg_snapshot *before, const char *needle)
{
	for (int i = 0; i < 50 && (seg_leaked_since(before) > 0 || count_procs(needle) > 0); i++)
		usleep(20000);
	return seg_leaked_since(before) == 0 && count_procs(needle) == 0;
}

bool self_exe(char *out, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", out, len - 1);
	if (n <= 0)
		return false;
	out[n] = 0;
	return true;
}
