/*
 * common_hosts.c - driving multi-host jobs from a test (hosts.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "bridge.h"
#include "hosts.h"

char mh_self[1024];
char mh_tmpdir[64];

double mh_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * The output files are created (truncated) here, before the fork, not in
 * the child: a test polls them for a line as soon as this returns, and a
 * file of the same name left by an earlier process (the tests reuse names,
 * e.g. test_bridge's two peer_fault runs) must not be read as this one's
 * output while the child has not run yet.  With truncation in the child,
 * a loaded machine let test_silent_peer_host_is_presumed_dead see the
 * previous run's "storm: host 2 started" and stop host 2 mid-rendezvous.
 */
void mh_spawn(struct mh_proc *p, const char *name, char *const argv[], char *const env[])
{
	snprintf(p->out, sizeof p->out, "%s/%s.out", mh_tmpdir, name);
	snprintf(p->err, sizeof p->err, "%s/%s.err", mh_tmpdir, name);
	p->status = -2;
	int o = open(p->out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int e = open(p->err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (o < 0 || e < 0)
		fail_msg("cannot create %s or %s: %s", p->out, p->err, strerror(errno));
	p->pid = fork();
	if (p->pid < 0)
		fail_msg("fork for %s: %s", name, strerror(errno));
	if (p->pid == 0) {
		setpgid(0, 0);
		/* dup2 clears close-on-exec on 1 and 2 only */
		dup2(o, 1);
		dup2(e, 2);
		for (int i = 0; env && env[i]; i++)
			putenv(env[i]);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(o);
	close(e);
	setpgid(p->pid, p->pid);
}

/* Waits up to timeout_s; then kills the process group (status -1). */
int mh_finish(struct mh_proc *p, double timeout_s)
{
	double end = mh_now() + timeout_s;
	int st;
	for (;;) {
		pid_t r = waitpid(p->pid, &st, WNOHANG);
		if (r == p->pid)
			break;
		if (mh_now() > end) {
			kill(-p->pid, SIGKILL);
			waitpid(p->pid, &st, 0);
			p->status = -1;
			return -1;
		}
		usleep(5000);
	}
	p->t_end = mh_now();
	p->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	return p->status;
}

char *mh_slurp(const char *path)
{
	static char bufs[4][65536];
	static int k;
	char *b = bufs[k++ % 4];
	b[0] = 0;
	FILE *f = fopen(path, "r");
	if (!f)
		return b;
	size_t n = fread(b, 1, sizeof bufs[0] - 1, f);
	b[n] = 0;
	fclose(f);
	return b;
}

void mh_show(const struct mh_proc *p, const char *name)
{
	fprintf(stderr, "--- %s (status %d)\n%s%s", name, p->status, mh_slurp(p->out), mh_slurp(p->err));
}

void mh_show_failed(int hosts, const struct mh_proc *p)
{
	for (int r = 0; r < hosts; r++) {
		char name[16];
		snprintf(name, sizeof name, "host %d", r);
		if (p[r].status != 0)
			mh_show(&p[r], name);
	}
}

/* A port that was free a moment ago (the kernel's choice). */
unsigned mh_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof a;
	if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(fd, (struct sockaddr *)&a, &l) != 0)
		abort();
	close(fd);
	return ntohs(a.sin_port);
}

bool mh_port_free(unsigned port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
	close(fd);
	return ok;
}

char mh_token_path[128];

int mh_setup(void **state)
{
	(void)state;
	snprintf(mh_tmpdir, sizeof mh_tmpdir, "/tmp/psmem-test-bridge-XXXXXX");
	if (!mkdtemp(mh_tmpdir))
		return -1;
	snprintf(mh_token_path, sizeof mh_token_path, "%s/token", mh_tmpdir);
	struct ps__token t;
	return ps__token_generate(&t) || ps__token_write(mh_token_path, &t) ? -1 : 0;
}

int mh_teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", mh_tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

void mh_assert_clean(const struct seg_snapshot *before)
{
	for (int i = 0; i < 100 && (seg_leaked_since(before) > 0 || count_procs(mh_self) > 0); i++)
		usleep(20000);
	assert_int_equal(seg_leaked_since(before), 0);
	assert_int_equal(count_procs(mh_self), 0);
}

/* argv of `psrun -n nodes --hosts H --host-rank r --coordinator ... prog...` */
void mh_argv_on_failure(const char **argv, const char *mode, const char *rate)
{
	int i = 0, end;
	while (argv[i] != mh_self)
		i++;
	for (end = i; argv[end]; end++)
		;
	for (int j = end; j >= i; j--) /* the NULL too */
		argv[j + 4] = argv[j];
	argv[i] = "--on-host-failure";
	argv[i + 1] = mode;
	argv[i + 2] = "--backup-rate";
	argv[i + 3] = rate;
}

static bool line_in_any(struct mh_proc *h, int n, const char *line)
{
	for (int r = 0; r < n; r++)
		if (strstr(mh_slurp(h[r].out), line))
			return true;
	return false;
}

void mh_wait_line(struct mh_proc *h, int n, const char *line)
{
	for (int i = 0; i < 1200 && !line_in_any(h, n, line); i++)
		usleep(50 * 1000); /* polls the hosts' output */
	if (line_in_any(h, n, line))
		return;
	for (int r = 0; r < n; r++) {
		mh_finish(&h[r], 0);
		mh_show(&h[r], "host");
	}
	fail_msg("\"%s\" did not come within 60 s", line);
}

void mh_psrun_argv(const char **argv, char *store, int nodes, int hosts, int rank, unsigned port,
		   const char *const prog[])
{
	char *n = store, *h = store + 16, *r = store + 32, *c = store + 48;
	snprintf(n, 16, "%d", nodes);
	snprintf(h, 16, "%d", hosts);
	snprintf(r, 16, "%d", rank);
	snprintf(c, 32, "127.0.0.1:%u", port);
	int i = 0;
	argv[i++] = build_path("bin/psrun");
	argv[i++] = "-n";
	argv[i++] = n;
	argv[i++] = "--hosts";
	argv[i++] = h;
	argv[i++] = "--host-rank";
	argv[i++] = r;
	argv[i++] = "--coordinator";
	argv[i++] = c;
	argv[i++] = "--token-file";
	argv[i++] = mh_token_path;
	argv[i++] = "--rendezvous-timeout";
	argv[i++] = "20";
	for (int k = 0; prog[k]; k++)
		argv[i++] = prog[k];
	argv[i] = NULL;
}

/* Runs H psruns of nodes nodes each on loopback and waits for them. */
void mh_run_hosts(int hosts, int nodes, const char *const prog[], struct mh_proc *p, double timeout)
{
	unsigned port = mh_free_port();
	static char store[8][96];
	for (int r = 0; r < hosts; r++) {
		const char *argv[64];
		mh_psrun_argv(argv, store[r], nodes, hosts, r, port, prog);
		char name[16];
		snprintf(name, sizeof name, "host%d", r);
		mh_spawn(&p[r], name, (char *const *)argv, NULL);
	}
	for (int r = 0; r < hosts; r++)
		mh_finish(&p[r], timeout);
}

