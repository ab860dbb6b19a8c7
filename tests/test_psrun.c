/*
 * test_psrun.c - the launcher and the monitor, run as real processes.
 *
 * The tools are found under $PSMEM_BUILD (default "build"): bin/psrun and
 * bin/psstat.  Every child runs under a deadline and is SIGKILLed if it
 * overstays, so no test can hang.
 *
 * This process makes itself a child subreaper: whatever psrun leaves behind
 * (a node, a node's own child, the guardian) is reparented to us when psrun
 * ends, so "nothing left" is checked by looking at our own children.
 *
 * Segments are matched to a run by the creator pid in their header, so a
 * test is not confused by jobs of other tests running at the same time.
 */
#include <dirent.h>
#include <sched.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "psmem_int.h"
#include "hosts.h"

#define DEADLINE_MS  10000 /* no child may run longer than this */
#define MAX_PROCS    8
#define MAX_SEGS     256
#define OUT_MAX      65536

struct proc {
	pid_t pid;
	int out_fd, err_fd;
	char out[OUT_MAX], err[OUT_MAX];
	size_t out_len, err_len;
	int status;
	bool reaped;
	uint64_t start_ns, end_ns;
};

/* Started processes, so that teardown can kill what a failed test left. */
static struct proc *procs[MAX_PROCS];

#define assert_contains(hay, needle)                                                     \
	do {                                                                             \
		if (!strstr((hay), (needle)))                                            \
			fail_msg("expected \"%s\" in:\n%s", (needle), (hay));            \
	} while (0)

/* ------------------------------------------------------------ processes */

static const char *tool(const char *name)
{
	static char buf[2][512];
	static int k;
	const char *dir = getenv("PSMEM_BUILD");
	char *b = buf[k ^= 1];
	snprintf(b, sizeof buf[0], "%s/bin/%s", dir && *dir ? dir : "build", name);
	return b;
}

static void track(struct proc *p)
{
	for (int i = 0; i < MAX_PROCS; i++) {
		if (!procs[i]) {
			procs[i] = p;
			return;
		}
	}
	fail_msg("too many processes tracked");
}

/* Records the exit of a tracked process reaped by a wait for any child. */
static void note_exit(pid_t pid, int st)
{
	for (int i = 0; i < MAX_PROCS; i++) {
		struct proc *p = procs[i];
		if (p && p->pid == pid && !p->reaped) {
			p->status = st;
			p->reaped = true;
			p->end_ns = ps__now_ns();
		}
	}
}

static void child_exec(char *const argv[], int out, int err)
{
	dup2(out, STDOUT_FILENO);
	dup2(err, STDERR_FILENO);
	int null = open("/dev/null", O_RDONLY);
	if (null >= 0)
		dup2(null, STDIN_FILENO);
	/* A caller that ignores or blocks these must not change what the
	 * tools do with them. */
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	int sigs[] = { SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGPIPE, SIGCHLD };
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		signal(sigs[i], SIG_DFL);
	execv(argv[0], argv);
	fprintf(stderr, "test_psrun: cannot execute %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

static void proc_start(struct proc *p, char *const argv[])
{
	int out[2], err[2];
	memset(p, 0, sizeof *p);
	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	assert_int_equal(pipe2(err, O_CLOEXEC), 0);
	p->start_ns = ps__now_ns();
	p->pid = fork();
	assert_true(p->pid >= 0);
	if (p->pid == 0)
		child_exec(argv, out[1], err[1]);
	close(out[1]);
	close(err[1]);
	p->out_fd = out[0];
	p->err_fd = err[0];
	fcntl(p->out_fd, F_SETFL, O_NONBLOCK);
	fcntl(p->err_fd, F_SETFL, O_NONBLOCK);
	track(p);
}

static void drain(int *fd, char *buf, size_t *len)
{
	if (*fd < 0)
		return;
	for (;;) {
		ssize_t n = read(*fd, buf + *len, OUT_MAX - 1 - *len);
		if (n > 0) {
			*len += (size_t)n;
			buf[*len] = '\0';
			if (*len < OUT_MAX - 1)
				continue;
		}
		if (n == 0 || *len >= OUT_MAX - 1) {
			close(*fd); /* EOF, or full: the rest is not needed */
			*fd = -1;
		}
		return;
	}
}

static void pump(struct proc *p, int timeout_ms)
{
	struct pollfd fds[2] = { { .fd = p->out_fd, .events = POLLIN },
				 { .fd = p->err_fd, .events = POLLIN } };
	if (p->out_fd >= 0 || p->err_fd >= 0)
		poll(fds, 2, timeout_ms);
	else
		usleep((useconds_t)timeout_ms * 1000);
	drain(&p->out_fd, p->out, &p->out_len);
	drain(&p->err_fd, p->err, &p->err_len);
}

static void close_pipes(struct proc *p)
{
	if (p->out_fd >= 0)
		close(p->out_fd);
	if (p->err_fd >= 0)
		close(p->err_fd);
	p->out_fd = p->err_fd = -1;
}

/*
 * Waits up to timeout_ms for p to exit, collecting its output.  It does not
 * wait for EOF: something p leaked may hold the pipes open, and that is for
 * the leftover checks to catch, not a reason to hang.
 */
static bool proc_reap(struct proc *p, int timeout_ms)
{
	uint64_t end = ps__now_ns() + (uint64_t)timeout_ms * 1000000;
	while (!p->reaped) {
		int st;
		pid_t r = waitpid(p->pid, &st, WNOHANG);
		if (r == p->pid)
			note_exit(r, st);
		else if (ps__now_ns() >= end)
			return false;
		else
			pump(p, 5);
	}
	pump(p, 20); /* what it wrote just before exiting */
	return true;
}

static bool proc_wait(struct proc *p, int timeout_ms)
{
	bool done = proc_reap(p, timeout_ms);
	if (done)
		close_pipes(p);
	return done;
}

/* Reads p's pipes until every writer (p's descendants too) has closed them
 * or the deadline passes. */
static void read_to_eof(struct proc *p, uint64_t deadline_ns)
{
	while ((p->out_fd >= 0 || p->err_fd >= 0) && ps__now_ns() < deadline_ns)
		pump(p, 10);
	close_pipes(p);
}

static void proc_kill(struct proc *p)
{
	if (!p->reaped) {
		kill(p->pid, SIGKILL);
		int st;
		if (waitpid(p->pid, &st, 0) == p->pid)
			note_exit(p->pid, st);
	}
	close_pipes(p);
}

/* Runs argv to completion; a run past the deadline is killed and fails. */
static void run(struct proc *p, char *const argv[])
{
	proc_start(p, argv);
	if (!proc_wait(p, DEADLINE_MS)) {
		proc_kill(p);
		fail_msg("%s did not finish within %d ms; stderr:\n%s", argv[0], DEADLINE_MS, p->err);
	}
}

static double elapsed_s(const struct proc *p)
{
	return (double)(p->end_ns - p->start_ns) / 1e9;
}

static int exit_status(const struct proc *p)
{
	if (WIFEXITED(p->status))
		return WEXITSTATUS(p->status);
	fail_msg("process ended by signal %d, not by exit", WTERMSIG(p->status));
	return -1;
}

static int count_lines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* ------------------------------------------------------------ /proc */

/* Parent pid and state of pid from /proc/PID/stat; false if it is gone. */
static bool proc_stat(pid_t pid, pid_t *ppid, char *state)
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')'); /* comm may hold blanks and ')' */
	int pp;
	if (!p || sscanf(p + 1, " %c %d", state, &pp) != 2)
		return false;
	*ppid = pp;
	return true;
}

static bool proc_gone(pid_t pid)
{
	pid_t pp;
	char st;
	return !proc_stat(pid, &pp, &st) || st == 'Z' || st == 'X';
}

/* Live (non-zombie) processes whose parent is parent; returns the count. */
static int children_of(pid_t parent, pid_t *out, int max)
{
	DIR *d = opendir("/proc");
	assert_non_null(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		pid_t pid = (pid_t)atoi(e->d_name);
		pid_t pp;
		char st;
		if (pid <= 0 || !proc_stat(pid, &pp, &st) || pp != parent || st == 'Z')
			continue;
		if (n < max)
			out[n] = pid;
		n++;
	}
	closedir(d);
	return n;
}

static bool comm_is(pid_t pid, const char *name)
{
	char path[64], buf[64] = "";
	snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	if (!fgets(buf, sizeof buf, f))
		buf[0] = '\0';
	fclose(f);
	buf[strcspn(buf, "\n")] = '\0';
	return strcmp(buf, name) == 0;
}

/* Reaps zombies reparented to us; tracked processes get their status. */
static void reap_orphans(void)
{
	int st;
	pid_t pid;
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
		note_exit(pid, st);
}

static bool tracked_live(pid_t pid)
{
	for (int i = 0; i < MAX_PROCS; i++)
		if (procs[i] && procs[i]->pid == pid && !procs[i]->reaped)
			return true;
	return false;
}

/*
 * Processes left behind by the runs of this test: anything that is our
 * child (directly, or reparented to us as subreaper) but was not started
 * by a test.  Waits up to timeout_ms for them to go (a killed process
 * takes a moment), then kills the rest so later tests start clean.
 */
static int strays(int timeout_ms)
{
	uint64_t end = ps__now_ns() + (uint64_t)timeout_ms * 1000000;
	pid_t kids[64];
	int left;
	for (;;) {
		reap_orphans();
		int n = children_of(getpid(), kids, 64);
		left = 0;
		for (int i = 0; i < n && i < 64; i++)
			if (!tracked_live(kids[i]))
				kids[left++] = kids[i];
		if (left == 0 || ps__now_ns() >= end)
			break;
		usleep(10000);
	}
	for (int i = 0; i < left; i++)
		kill(kids[i], SIGKILL);
	reap_orphans();
	return left;
}

/* Children of psrun that are nodes (not the guardian): they exec'd `comm`. */
static int nodes_running(pid_t psrun, const char *comm, pid_t *out, int max)
{
	pid_t kids[PS__MAX_NODES + 1];
	int n = children_of(psrun, kids, PS__MAX_NODES + 1), k = 0;
	for (int i = 0; i < n && i < PS__MAX_NODES + 1; i++)
		if (comm_is(kids[i], comm) && k < max)
			out[k++] = kids[i];
	return k;
}

static void wait_nodes(struct proc *p, const char *comm, pid_t *out, int want)
{
	uint64_t end = ps__now_ns() + (uint64_t)DEADLINE_MS * 1000000;
	while (nodes_running(p->pid, comm, out, want) < want) {
		if (p->reaped || ps__now_ns() >= end)
			fail_msg("psrun did not start %d '%s' nodes; stderr:\n%s", want, comm, p->err);
		pump(p, 10);
		int st;
		if (waitpid(p->pid, &st, WNOHANG) == p->pid)
			note_exit(p->pid, st);
	}
}

/* ------------------------------------------------------------ segments */

struct seglist {
	int n;
	char name[MAX_SEGS][PS__NAME_MAX];
};

/* The /dev/shm/psmem-* entries now. */
static void list_segments(struct seglist *l)
{
	l->n = 0;
	DIR *d = opendir("/dev/shm");
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL && l->n < MAX_SEGS) {
		size_t len = strlen(e->d_name);
		/* longer names cannot be segments psrun made */
		if (strncmp(e->d_name, "psmem-", 6) == 0 && len < PS__NAME_MAX)
			memcpy(l->name[l->n++], e->d_name, len + 1);
	}
	closedir(d);
}

static bool in_list(const struct seglist *l, const char *name)
{
	for (int i = 0; i < l->n; i++)
		if (strcmp(l->name[i], name) == 0)
			return true;
	return false;
}

static pid_t segment_creator(const char *name)
{
	char path[PS__NAME_MAX + 16];
	snprintf(path, sizeof path, "/dev/shm/%s", name);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	struct ps__hdr h;
	ssize_t n = pread(fd, &h, sizeof h, 0);
	close(fd);
	return n == (ssize_t)sizeof h && h.magic == PS__MAGIC ? h.creator_pid : -1;
}

/* Name of a segment created by pid that was not in before; false if none. */
static bool new_segment_of(const struct seglist *before, pid_t creator, char *name)
{
	struct seglist now;
	list_segments(&now);
	for (int i = 0; i < now.n; i++) {
		if (in_list(before, now.name[i]) || segment_creator(now.name[i]) != creator)
			continue;
		snprintf(name, PS__NAME_MAX, "%s", now.name[i]);
		return true;
	}
	return false;
}

static void wait_segment(const struct seglist *before, struct proc *p, char *name)
{
	uint64_t end = ps__now_ns() + (uint64_t)DEADLINE_MS * 1000000;
	while (!new_segment_of(before, p->pid, name)) {
		if (p->reaped || ps__now_ns() >= end)
			fail_msg("psrun created no segment; stderr:\n%s", p->err);
		pump(p, 10);
	}
}

static void assert_no_segment_left(const struct seglist *before, pid_t psrun)
{
	char name[PS__NAME_MAX];
	if (new_segment_of(before, psrun, name)) {
		char path[PS__NAME_MAX + 16];
		snprintf(path, sizeof path, "/dev/shm/%s", name);
		unlink(path); /* do not leak it into later tests */
		fail_msg("segment %s of psrun %d was left behind", name, (int)psrun);
	}
}

static void assert_no_strays(void)
{
	int n = strays(1000);
	if (n)
		fail_msg("%d process(es) left behind by psrun", n);
}

/* ------------------------------------------------------------ fixtures */

static int teardown(void **state)
{
	(void)state;
	for (int i = 0; i < MAX_PROCS; i++) {
		if (procs[i])
			proc_kill(procs[i]);
		procs[i] = NULL;
	}
	strays(0);
	return 0;
}

static int group_setup(void **state)
{
	(void)state;
	/* orphans of psrun's children come to us, see the file comment */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
		fprintf(stderr, "test_psrun: cannot become a subreaper: %s\n", strerror(errno));
		return -1;
	}
	const char *need[] = { tool("psrun"), tool("psstat") };
	for (int i = 0; i < 2; i++) {
		if (access(need[i], X_OK) != 0) {
			fprintf(stderr, "test_psrun: %s: %s (set PSMEM_BUILD)\n", need[i],
				strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* ------------------------------------------------------------ tests */

static void test_psrun_runs_any_program_once_per_node(void **state)
{
	(void)state;
	struct seglist before;
	list_segments(&before);
	struct proc p;
	char *argv[] = { (char *)tool("psrun"), "-n", "2", "hostname", NULL };
	run(&p, argv);
	assert_int_equal(exit_status(&p), 0);
	assert_int_equal(count_lines(p.out), 2);
	assert_no_segment_left(&before, p.pid);
	assert_no_strays();
}

static void test_psrun_gives_each_node_its_environment(void **state)
{
	(void)state;
	struct proc p;
	char *argv[] = { (char *)tool("psrun"), "-n", "3", "sh", "-c",
			 "echo $PSMEM_NODE/$PSMEM_NODES", NULL };
	run(&p, argv);
	assert_int_equal(exit_status(&p), 0);
	assert_int_equal(count_lines(p.out), 3);
	assert_contains(p.out, "0/3\n");
	assert_contains(p.out, "1/3\n");
	assert_contains(p.out, "2/3\n");
	assert_no_strays();
}

/* Bad arguments: exit 2, one line saying why, one pointing to --help. */
static void expect_usage_error(char *const argv[])
{
	struct proc p;
	run(&p, argv);
	assert_int_equal(exit_status(&p), 2);
	assert_contains(p.err, "psrun: bad arguments: ");
	assert_contains(p.err, "\nTry 'psrun --help' for more information.\n");
	assert_int_equal(count_lines(p.err), 2);
	assert_int_equal(p.out_len, 0);
	assert_no_strays();
}

static void test_psrun_rejects_missing_program(void **state)
{
	(void)state;
	char *argv[] = { (char *)tool("psrun"), "-n", "2", NULL };
	expect_usage_error(argv);
}

static void test_psrun_rejects_zero_nodes(void **state)
{
	(void)state;
	char *argv[] = { (char *)tool("psrun"), "-n", "0", "true", NULL };
	expect_usage_error(argv);
}

static void test_psrun_rejects_too_many_nodes(void **state)
{
	(void)state;
	char *argv[] = { (char *)tool("psrun"), "-n", "65", "true", NULL };
	expect_usage_error(argv);
}

static void test_psrun_rejects_non_numeric_nodes(void **state)
{
	(void)state;
	char *argv[] = { (char *)tool("psrun"), "-n", "abc", "true", NULL };
	expect_usage_error(argv);
}

static void test_psrun_rejects_unknown_flag(void **state)
{
	(void)state;
	char *argv[] = { (char *)tool("psrun"), "--no-such-flag", "-n", "1", "true", NULL };
	expect_usage_error(argv);
	struct proc p;
	run(&p, argv);
	assert_string_equal(p.err, "psrun: bad arguments: unknown option '--no-such-flag'\n"
				   "Try 'psrun --help' for more information.\n");
}

static void test_psrun_version_prints_one_line(void **state)
{
	(void)state;
	struct proc p;
	char *argv[] = { (char *)tool("psrun"), "--version", NULL };
	run(&p, argv);
	assert_int_equal(exit_status(&p), 0);
	char want[64];
	snprintf(want, sizeof want, "psrun (psmem) %d.%d\n", PSMEM_VERSION_MAJOR, PSMEM_VERSION_MINOR);
	assert_string_equal(p.out, want);
	assert_int_equal(p.err_len, 0);
}

static void test_psrun_accepts_np_as_n(void **state)
{
	(void)state;
	struct proc p;
	char *argv[] = { (char *)tool("psrun"), "-np", "2", "sh", "-c", "echo $PSMEM_NODES", NULL };
	run(&p, argv);
	assert_int_equal(exit_status(&p), 0);
	assert_string_equal(p.out, "2\n2\n");
	assert_no_strays();
}

static void test_psrun_exports_torchrun_variables(void **state)
{
	(void)state;
	struct proc p;
	char *argv[] = { (char *)tool("psrun"), "-n", "3", "sh", "-c",
			 "echo r$RANK/$WORLD_SIZE/$LOCAL_RANK/$LOCAL_WORLD_SIZE", NULL };
	run(&p, argv);
	assert_int_equal(exit_status(&p), 0);
	assert_int_equal(count_lines(p.out), 3);
	assert_contains(p.out, "r0/3/0/3\n");
	assert_contains(p.out, "r1/3/1/3\n");
	assert_contains(p.out, "r2/3/2/3\n");
	assert_no_strays();
}

/* Two hosts of 2 nodes: RANK and WORLD_SIZE count every host's nodes
 * (host r's node i is r * 2 + i), LOCAL_* this host's. */
static void test_psrun_exports_global_ranks_across_hosts(void **state)
{
	(void)state;
	assert_int_equal(mh_setup(NULL), 0);
	const char *prog[] = { "sh", "-c", "echo r$RANK/$WORLD_SIZE/$LOCAL_RANK/$LOCAL_WORLD_SIZE", NULL };
	struct mh_proc p[2];
	mh_run_hosts(2, 2, prog, p, 20);
	const char *want[2][2] = { { "r0/4/0/2\n", "r1/4/1/2\n" }, { "r2/4/0/2\n", "r3/4/1/2\n" } };
	for (int r = 0; r < 2; r++) {
		if (p[r].status != 0)
			mh_show(&p[r], r ? "host1" : "host0");
		assert_int_equal(p[r].status, 0);
		const char *out = mh_slurp(p[r].out);
		assert_int_equal(count_lines(out), 2);
		assert_contains(out, want[r][0]);
		assert_contains(out, want[r][1]);
	}
	assert_int_equal(mh_teardown(NULL), 0);
	assert_no_strays();
}

/* `echo hi | psrun -n 2 ...`: node 0 reads "hi", node 1 reads EOF at once
 * (before: whichever node read first got it). */
static void test_psrun_gives_stdin_to_node_0_only(void **state)
{
	(void)state;
	char cmd[1024];
	snprintf(cmd, sizeof cmd,
		 "printf 'hi\\n' | %s -n 2 sh -c 'if read l; then echo \"$PSMEM_NODE:$l\"; "
		 "else echo \"$PSMEM_NODE:eof\"; fi'",
		 tool("psrun"));
	for (int round = 0; round < 3; round++) {
		struct proc p;
		char *argv[] = { "/bin/sh", "-c", cmd, NULL };
		run(&p, argv);
		assert_int_equal(exit_status(&p), 0);
		assert_int_equal(count_lines(p.out), 2);
		assert_contains(p.out, "0:hi\n");
		assert_contains(p.out, "1:eof\n");
	}
	assert_no_strays();
}

/* Every line of out/err is "[N] " + one whole line a node wrote. */
static void check_tagged(const char *text, int nodes, const char *word, int want_lines)
{
	int lines = 0;
	for (const char *l = text; *l; lines++) {
		const char *nl = strchr(l, '\n');
		assert_non_null(nl);
		int node, k, n = 0;
		char w[16];
		if (sscanf(l, "[%d] %15[a-z] %d %n", &node, w, &k, &n) != 3 || n == 0)
			fail_msg("untagged or broken line: %.*s", (int)(nl - l), l);
		assert_true(node >= 0 && node < nodes);
		assert_string_equal(w, word);
		/* the rest: 60 copies of the node's digit, then the newline */
		const char *r = l + n;
		for (int c = 0; c < 60; c++)
			if (r[c] != '0' + node)
				fail_msg("line of node %d mixed with another: %.*s", node, (int)(nl - l), l);
		assert_ptr_equal(r + 60, nl);
		l = nl + 1;
	}
	assert_int_equal(lines, want_lines);
}

static void test_psrun_tag_output_prefixes_every_whole_line(void **state)
{
	(void)state;
	struct proc p;
	char *argv[] = { (char *)tool("psrun"), "-n", "2", "--tag-output", "sh", "-c",
			 "d=$(printf \"%060d\" 0 | tr 0 $PSMEM_NODE); i=0; while [ $i -lt 150 ]; do "
			 "echo \"out $i $d\"; echo \"err $i $d\" >&2; i=$((i+1)); done; printf \"out 150 $d\"",
			 NULL };
	run(&p, argv);
	assert_int_equal(exit_status(&p), 0);
	/* the last line had no newline: it is ended */
	check_tagged(p.out, 2, "out", 2 * 151);
	check_tagged(p.err, 2, "err", 2 * 150);
	assert_no_strays();
}

static void test_psrun_output_dir_writes_one_log_per_node(void **state)
{
	(void)state;
	char dir[] = "/tmp/test_psrun_XXXXXX", sub[64], f[2][96];
	assert_non_null(mkdtemp(dir));
	snprintf(sub, sizeof sub, "%s/a/b", dir); /* made by psrun, parents too */
	struct proc p;
	char *argv[] = { (char *)tool("psrun"), "-n", "2", "--output-dir", sub, "sh", "-c",
			 "echo out $RANK; echo err $RANK >&2", NULL };
	run(&p, argv);
	assert_int_equal(exit_status(&p), 0);
	assert_int_equal(p.out_len, 0);
	for (int i = 0; i < 2; i++) {
		snprintf(f[i], sizeof f[i], "%s/node-%d.log", sub, i);
		char buf[256] = {0}, want[64];
		FILE *fp = fopen(f[i], "r");
		assert_non_null(fp);
		size_t n = fread(buf, 1, sizeof buf - 1, fp);
		fclose(fp);
		buf[n] = 0;
		snprintf(want, sizeof want, "out %d\nerr %d\n", i, i);
		assert_string_equal(buf, want);
		unlink(f[i]);
	}
	char a[80];
	snprintf(a, sizeof a, "%s/a", dir);
	rmdir(sub);
	rmdir(a);
	rmdir(dir);
	assert_no_strays();
}

/* Checked before anything starts: no segment, no node. */
static void test_psrun_output_dir_that_is_a_file_fails_before_launch(void **state)
{
	(void)state;
	struct seglist before;
	list_segments(&before);
	char file[] = "/tmp/test_psrun_XXXXXX", marker[64];
	int fd = mkstemp(file);
	assert_true(fd >= 0);
	close(fd);
	snprintf(marker, sizeof marker, "%s.ran", file);
	struct proc p;
	char *argv[] = { (char *)tool("psrun"), "-n", "2", "--output-dir", file, "touch", marker, NULL };
	run(&p, argv);
	unlink(file);
	assert_int_equal(exit_status(&p), 2);
	char want[160];
	snprintf(want, sizeof want, "psrun: bad arguments: --output-dir %s: not a directory\n", file);
	assert_contains(p.err, want);
	assert_int_not_equal(access(marker, F_OK), 0);
	unlink(marker);
	assert_no_segment_left(&before, p.pid);
	assert_no_strays();
}

static void test_psrun_tag_output_and_output_dir_exclude_each_other(void **state)
{
	(void)state;
	char *argv[] = { (char *)tool("psrun"), "-n", "1", "--tag-output", "--output-dir", "/tmp", "true", NULL };
	expect_usage_error(argv);
}

static void test_psrun_timeout_stops_the_job_and_says_so(void **state)
{
	(void)state;
	struct seglist before;
	list_segments(&before);
	struct proc p;
	char *argv[] = { (char *)tool("psrun"), "-n", "2", "--timeout", "0.5", "sleep", "30", NULL };
	run(&p, argv);
	assert_int_equal(exit_status(&p), 124);
	if (elapsed_s(&p) < 0.5 || elapsed_s(&p) >= 3.0)
		fail_msg("psrun --timeout 0.5 took %.2f s", elapsed_s(&p));
	assert_contains(p.err, "psrun: timeout: the job ran for 0.5 s (--timeout), stopping 2 nodes\n");
	assert_null(strstr(p.err, "killed by signal")); /* psrun's own doing */
	assert_no_segment_left(&before, p.pid);
	assert_no_strays(); /* the sleeps included */
}

static void test_psrun_rejects_a_bad_timeout(void **state)
{
	(void)state;
	const char *bad[] = { "0", "-1", "abc", "1e9", "nan" };
	for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
		char *argv[] = { (char *)tool("psrun"), "-n", "1", "--timeout", (char *)bad[k], "true", NULL };
		expect_usage_error(argv);
	}
}

static void test_psrun_warns_when_threads_exceed_cpus(void **state)
{
	(void)state;
	struct proc p;
	char *argv[] = { (char *)tool("psrun"), "-n", "2", "-t", "1024", "true", NULL };
	run(&p, argv);
	assert_int_equal(exit_status(&p), 0);
	char want[128];
	cpu_set_t set; /* psrun counts the CPUs it may run on, as we do */
	assert_int_equal(sched_getaffinity(0, sizeof set, &set), 0);
	snprintf(want, sizeof want, "psrun: warning: 2 nodes x 1024 threads = 2048 threads on %d CPUs;",
		 CPU_COUNT(&set));
	assert_contains(p.err, want);
	/* and not when they fit */
	char *fit[] = { (char *)tool("psrun"), "-n", "1", "-t", "1", "true", NULL };
	run(&p, fit);
	assert_int_equal(exit_status(&p), 0);
	assert_int_equal(p.err_len, 0);
	assert_no_strays();
}

static void test_psrun_reports_unexecutable_program_once(void **state)
{
	(void)state;
	struct seglist before;
	list_segments(&before);
	struct proc p;
	char *argv[] = { (char *)tool("psrun"), "-n", "3", "/nonexistent/prog", NULL };
	run(&p, argv);
	assert_int_equal(exit_status(&p), 127);
	const char *msg = "cannot execute '/nonexistent/prog'";
	const char *first = strstr(p.err, msg);
	if (!first)
		fail_msg("expected \"%s\" in:\n%s", msg, p.err);
	/* one report for the job, not one per node */
	assert_null(strstr(first + 1, msg));
	assert_no_segment_left(&before, p.pid);
	assert_no_strays();
}

static void test_psrun_stops_job_when_a_node_is_killed(void **state)
{
	(void)state;
	struct seglist before;
	list_segments(&before);
	struct proc p;
	char *argv[] = { (char *)tool("psrun"), "-n", "3", "sh", "-c",
			 "if [ $PSMEM_NODE = 1 ]; then kill -9 $$; fi; sleep 30", NULL };
	run(&p, argv);
	assert_int_equal(exit_status(&p), 137);
	if (elapsed_s(&p) >= 2.0)
		fail_msg("psrun took %.2f s to stop after a node died", elapsed_s(&p));
	assert_contains(p.err, "node 1");
	assert_contains(p.err, "signal 9");
	assert_no_segment_left(&before, p.pid);
	assert_no_strays(); /* the other nodes' sleeps included */
}

static void test_psrun_forwards_sigint_and_cleans_up(void **state)
{
	(void)state;
	struct seglist before;
	list_segments(&before);
	struct proc p;
	pid_t nodes[2];
	char *argv[] = { (char *)tool("psrun"), "-n", "2", "sleep", "30", NULL };
	proc_start(&p, argv);
	wait_nodes(&p, "sleep", nodes, 2);
	uint64_t t0 = ps__now_ns();
	kill(p.pid, SIGINT);
	assert_true(proc_wait(&p, DEADLINE_MS));
	double took = (double)(p.end_ns - t0) / 1e9;
	if (took >= 3.0)
		fail_msg("psrun took %.2f s to end after SIGINT", took);
	assert_int_equal(exit_status(&p), 128 + SIGINT);
	/* the user is told what happens to the job */
	assert_contains(p.err, "psrun: interrupted (SIGINT), stopping 2 nodes\n");
	assert_no_segment_left(&before, p.pid);
	assert_no_strays();
}

static void test_guardian_cleans_up_when_psrun_is_killed(void **state)
{
	(void)state;
	struct seglist before;
	list_segments(&before);
	struct proc p;
	pid_t nodes[2];
	char seg[PS__NAME_MAX], path[PS__NAME_MAX + 16];
	char *argv[] = { (char *)tool("psrun"), "-n", "2", "sleep", "30", NULL };
	proc_start(&p, argv);
	wait_nodes(&p, "sleep", nodes, 2);
	wait_segment(&before, &p, seg);
	snprintf(path, sizeof path, "/dev/shm/%s", seg);

	kill(p.pid, SIGKILL);
	assert_true(proc_reap(&p, DEADLINE_MS));
	uint64_t end = p.end_ns + 2000000000ULL;
	bool clean;
	do {
		reap_orphans(); /* the nodes are ours now: zombies until reaped */
		clean = access(path, F_OK) != 0 && proc_gone(nodes[0]) && proc_gone(nodes[1]);
		if (!clean)
			usleep(10000);
	} while (!clean && ps__now_ns() < end);
	if (access(path, F_OK) == 0) {
		unlink(path);
		fail_msg("segment %s still there 2 s after psrun was killed", seg);
	}
	if (!clean)
		fail_msg("nodes %d, %d still running 2 s after psrun was killed", (int)nodes[0],
			 (int)nodes[1]);
	/* The guardian, not the stale-segment sweep of some other psrun
	 * starting meanwhile, must be the one that removed it. */
	read_to_eof(&p, end);
	assert_contains(p.err, "removed segment");
	assert_no_strays(); /* the guardian included */
}

static void test_psrun_returns_first_failing_status(void **state)
{
	(void)state;
	struct proc p;
	char *argv[] = { (char *)tool("psrun"), "-n", "2", "sh", "-c",
			 "exit $((3 + PSMEM_NODE))", NULL };
	run(&p, argv);
	int st = exit_status(&p);
	if (st != 3 && st != 4)
		fail_msg("psrun exited %d, want 3 or 4 (a node's status)", st);
	assert_contains(p.err, st == 3 ? "node 0" : "node 1");
	assert_contains(p.err, "exited with status");
	assert_no_strays();
}

static void test_psstat_once_json_shows_running_job(void **state)
{
	(void)state;
	struct seglist before;
	list_segments(&before);
	struct proc job, st;
	char seg[PS__NAME_MAX];
	char *job_argv[] = { (char *)tool("psrun"), "-n", "2", "sleep", "3", NULL };
	proc_start(&job, job_argv);
	wait_segment(&before, &job, seg);
	char *argv[] = { (char *)tool("psstat"), "--once", "--json", seg, NULL };
	run(&st, argv);
	assert_int_equal(exit_status(&st), 0);
	assert_contains(st.out, "\"nodes\": 2");
	assert_contains(st.out, seg);
	assert_true(proc_wait(&job, DEADLINE_MS));
	assert_int_equal(exit_status(&job), 0);
	assert_no_segment_left(&before, job.pid);
	assert_no_strays();
}

static void test_psstat_rejects_unknown_job(void **state)
{
	(void)state;
	struct proc p;
	char *argv[] = { (char *)tool("psstat"), "psmem-doesnotexist", NULL };
	run(&p, argv);
	assert_int_equal(exit_status(&p), 1);
	assert_contains(p.err, "psmem-doesnotexist");
	assert_contains(p.err, "does not exist");
}

static void test_psrun_help_documents_every_flag(void **state)
{
	(void)state;
	struct proc p;
	char *argv[] = { (char *)tool("psrun"), "--help", NULL };
	run(&p, argv);
	assert_int_equal(exit_status(&p), 0);
	const char *flags[] = { "-n,", "-np,", "-t,", "--numa", "-v,", "--arena-size", "--mem", "--help",
				"--tag-output", "--output-dir", "--timeout", "--version", "RANK", "LOCAL_WORLD_SIZE",
				"default" };
	for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
		assert_contains(p.out, flags[i]);
}

static char my_exe[1024]; /* as mh_self */

/* ------------------------------------------------------------ README */

/* A file of the source tree (PSMEM_SRC, default: the current directory,
 * where make and tests/run.sh run the tests), NUL-terminated; NULL with
 * the reason printed if it cannot be read. */
static char *read_src(const char *rel)
{
	const char *root = getenv("PSMEM_SRC");
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", root && *root ? root : ".", rel);
	FILE *f = fopen(path, "r");
	if (!f) {
		printf("# SKIP: %s: %s (run from the source tree or set PSMEM_SRC)\n", path, strerror(errno));
		return NULL;
	}
	size_t cap = 1 << 16, len = 0, n;
	char *buf = malloc(cap);
	assert_non_null(buf);
	while ((n = fread(buf + len, 1, cap - 1 - len, f)) > 0) {
		len += n;
		if (len == cap - 1) {
			cap *= 2;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
	}
	fclose(f);
	buf[len] = 0;
	return buf;
}

/* The README shows docs/example.c verbatim: its first C block is the file,
 * so the README cannot drift from the program the next test runs. */
static void test_readme_example_is_docs_example_c(void **state)
{
	(void)state;
	char *readme = read_src("README.md"), *example = read_src("docs/example.c");
	if (!readme || !example) {
		printf("readme: SKIP: README.md or docs/example.c not found from the working directory\n");
		free(readme);
		free(example);
		skip();
	}
	char *start = strstr(readme, "\n```c\n");
	assert_non_null(start);
	start += 6;
	char *end = strstr(start, "\n```\n");
	assert_non_null(end);
	end[1] = 0;
	assert_string_equal(start, example);
	free(readme);
	free(example);
}

static void test_readme_example_prints_the_same_under_psrun_every_run(void **state)
{
	(void)state;
	char exe[PATH_MAX];
	const char *dir = getenv("PSMEM_BUILD");
	snprintf(exe, sizeof exe, "%s/docs/example", dir && *dir ? dir : "build");
	struct proc p;
	for (int round = 0; round < 3; round++) {
		char *argv[] = { (char *)tool("psrun"), "-n", "2", exe, NULL };
		run(&p, argv);
		if (exit_status(&p) != 0)
			fail_msg("psrun -n 2 %s: exit %d:\n%s", exe, exit_status(&p), p.err);
		assert_string_equal(p.out, "2 node(s): key 7 = 3, key 42 = 3\n");
		assert_int_equal(p.err_len, 0);
	}
	/* alone: a private one-node job; linked against build/lib's
	 * libpsmem.so.0, which must be there */
	char *alone[] = { exe, NULL };
	run(&p, alone);
	if (exit_status(&p) != 0)
		fail_msg("%s: exit %d:\n%s", exe, exit_status(&p), p.err);
	assert_string_equal(p.out, "1 node(s): key 7 = 1, key 42 = 1\n");
	assert_no_strays();
}

/* Every package of the Makefile's DEB_PKGS is named in the README. */
static void test_readme_names_every_package_make_deps_installs(void **state)
{
	(void)state;
	char *mk = read_src("Makefile"), *readme = read_src("README.md");
	if (!mk || !readme) {
		printf("readme: SKIP: Makefile or README.md not found from the working directory\n");
		free(mk);
		free(readme);
		skip();
	}
	/* the list (DEB_PKGS := ...) and every addition (DEB_PKGS += ...) */
	int n = 0, lists = 0;
	for (char *d = strstr(mk, "\nDEB_PKGS "); d; d = strstr(d + 1, "\nDEB_PKGS ")) {
		d += strlen("\nDEB_PKGS ");
		if (strncmp(d, ":= ", 3) != 0 && strncmp(d, "+= ", 3) != 0)
			continue;
		lists++;
		for (char *tok = d + 3; *tok && *tok != '\n';) {
			while (*tok == ' ' || *tok == '\t' || (*tok == '\\' && tok[1] == '\n'))
				tok += *tok == '\\' ? 2 : 1;
			if (*tok == '\n' || !*tok)
				break;
			char name[64];
			size_t len = strcspn(tok, " \t\\\n");
			assert_true(len < sizeof name);
			memcpy(name, tok, len);
			name[len] = 0;
			if (!strstr(readme, name))
				fail_msg("make deps installs %s; the README does not name it", name);
			n++;
			tok += len;
		}
	}
	assert_true(lists >= 1);
	assert_true(n >= 10);
	free(mk);
	free(readme);
}

/* A node for the psstat tests (this binary under psrun): sets its
 * progress to 1000 + node, then waits for the file argv[2] to exist. */
static int progress_node(const char *marker)
{
	int err = 0;
	ps_world *w = ps_init(&err);
	if (!w) {
		fprintf(stderr, "progress node: ps_init: %s\n", ps_strerror(err));
		return 1;
	}
	int rc = ps_progress_set(w, 1000 + (uint64_t)ps_node_id(w));
	for (int i = 0; rc == 0 && i < 2000 && access(marker, F_OK) != 0; i++)
		usleep(5000); /* a poll for the test's go, not a synchronisation */
	ps_finalize(w);
	return rc ? 1 : 0;
}

static void test_psstat_version_and_unknown_option(void **state)
{
	(void)state;
	struct proc p;
	char *v[] = { (char *)tool("psstat"), "--version", NULL };
	run(&p, v);
	assert_int_equal(exit_status(&p), 0);
	char want[64];
	snprintf(want, sizeof want, "psstat (psmem) %d.%d\n", PSMEM_VERSION_MAJOR, PSMEM_VERSION_MINOR);
	assert_string_equal(p.out, want);
	char *bad[] = { (char *)tool("psstat"), "--bogus", NULL };
	run(&p, bad);
	assert_int_equal(exit_status(&p), 2);
	assert_string_equal(p.err, "psstat: bad arguments: unknown option '--bogus'\n"
				   "Try 'psstat --help' for more information.\n");
	assert_int_equal(p.out_len, 0);
}

static int longest_line(const char *s)
{
	int best = 0, cur = 0;
	for (; *s; s++) {
		cur = *s == '\n' ? 0 : cur + 1;
		best = cur > best ? cur : best;
	}
	return best;
}

/* The row of `first` (e.g. "   1 " or " all ") in a table. */
static const char *row_of(const char *table, const char *first)
{
	for (const char *l = table; l && *l;) {
		if (strncmp(l, first, strlen(first)) == 0)
			return l;
		l = strchr(l, '\n');
		l = l ? l + 1 : NULL;
	}
	fail_msg("no row \"%s\" in:\n%s", first, table);
	return NULL;
}

/* Last whitespace-separated field of a table row. */
static long last_field(const char *row)
{
	const char *nl = strchr(row, '\n'), *sp = nl;
	while (sp > row && sp[-1] != ' ')
		sp--;
	return strtol(sp, NULL, 10);
}

static void test_psstat_fits_80_columns_with_totals_progress_and_age(void **state)
{
	(void)state;
	struct seglist before;
	list_segments(&before);
	char marker[] = "/tmp/test_psrun_go_XXXXXX";
	int fd = mkstemp(marker);
	assert_true(fd >= 0);
	close(fd);
	unlink(marker); /* the nodes wait until it exists again */
	struct proc job, st;
	char seg[PS__NAME_MAX];
	char *job_argv[] = { (char *)tool("psrun"), "-n", "2", my_exe, "--progress-node", marker, NULL };
	proc_start(&job, job_argv);
	wait_segment(&before, &job, seg);
	/* until both nodes have attached and set their progress */
	char *argv[] = { (char *)tool("psstat"), "--once", "--interval", "0.05", seg, NULL };
	uint64_t end = ps__now_ns() + (uint64_t)DEADLINE_MS * 1000000;
	for (;;) {
		run(&st, argv);
		assert_int_equal(exit_status(&st), 0);
		if (strstr(st.out, " 2001\n") || ps__now_ns() > end)
			break;
	}
	assert_true(longest_line(st.out) <= 80);
	assert_contains(st.out, "  up ");
	assert_contains(st.out, "2 nodes x 1 thread");
	assert_int_equal(last_field(row_of(st.out, "   0 ")), 1000);
	assert_int_equal(last_field(row_of(st.out, "   1 ")), 1001);
	assert_int_equal(last_field(row_of(st.out, " all ")), 2001);
	assert_contains(row_of(st.out, " all "), " 2/2 ");
	/* --wide: the same rows and every column */
	char *wide[] = { (char *)tool("psstat"), "--once", "--wide", "--interval", "0.05", seg, NULL };
	run(&st, wide);
	assert_int_equal(exit_status(&st), 0);
	assert_true(longest_line(st.out) > 80);
	assert_contains(st.out, "sock%");
	assert_contains(st.out, "repl%");
	assert_int_equal(last_field(row_of(st.out, " all ")), 2001);
	/* --list names it while it runs */
	char *list[] = { (char *)tool("psstat"), "--list", NULL };
	run(&st, list);
	assert_int_equal(exit_status(&st), 0);
	const char *r = strstr(st.out, seg);
	if (!r)
		fail_msg("--list does not show %s:\n%s", seg, st.out);
	int pid, nodes, threads;
	assert_int_equal(sscanf(r + strlen(seg), "%d %d %d", &pid, &nodes, &threads), 3);
	assert_int_equal(pid, job.pid);
	assert_int_equal(nodes, 2);
	assert_int_equal(threads, 1);

	fd = open(marker, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_true(proc_wait(&job, DEADLINE_MS));
	unlink(marker);
	assert_int_equal(exit_status(&job), 0);
	/* and not once it has ended */
	run(&st, list);
	assert_int_equal(exit_status(&st), 0);
	assert_null(strstr(st.out, seg));
	assert_no_segment_left(&before, job.pid);
	assert_no_strays();
}

#define T(f) cmocka_unit_test_teardown(f, teardown)

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--progress-node") == 0)
		return progress_node(argv[2]);
	ssize_t n = readlink("/proc/self/exe", my_exe, sizeof my_exe - 1);
	if (n <= 0) {
		fprintf(stderr, "test_psrun: cannot find its own executable: %s\n", strerror(errno));
		return 1;
	}
	my_exe[n] = 0;
	snprintf(mh_self, sizeof mh_self, "%s", my_exe);
	const struct CMUnitTest tests[] = {
		T(test_psrun_runs_any_program_once_per_node),
		T(test_psrun_gives_each_node_its_environment),
		T(test_psrun_rejects_missing_program),
		T(test_psrun_rejects_zero_nodes),
		T(test_psrun_rejects_too_many_nodes),
		T(test_psrun_rejects_non_numeric_nodes),
		T(test_psrun_rejects_unknown_flag),
		T(test_psrun_version_prints_one_line),
		T(test_psrun_accepts_np_as_n),
		T(test_psrun_exports_torchrun_variables),
		T(test_psrun_exports_global_ranks_across_hosts),
		T(test_psrun_gives_stdin_to_node_0_only),
		T(test_psrun_tag_output_prefixes_every_whole_line),
		T(test_psrun_output_dir_writes_one_log_per_node),
		T(test_psrun_output_dir_that_is_a_file_fails_before_launch),
		T(test_psrun_tag_output_and_output_dir_exclude_each_other),
		T(test_psrun_timeout_stops_the_job_and_says_so),
		T(test_psrun_rejects_a_bad_timeout),
		T(test_psrun_warns_when_threads_exceed_cpus),
		T(test_psrun_reports_unexecutable_program_once),
		T(test_psrun_stops_job_when_a_node_is_killed),
		T(test_psrun_forwards_sigint_and_cleans_up),
		T(test_guardian_cleans_up_when_psrun_is_killed),
		T(test_psrun_returns_first_failing_status),
		T(test_psstat_once_json_shows_running_job),
		T(test_psstat_rejects_unknown_job),
		T(test_psstat_version_and_unknown_option),
		T(test_readme_example_is_docs_example_c),
		T(test_readme_example_prints_the_same_under_psrun_every_run),
		T(test_readme_names_every_package_make_deps_installs),
		T(test_psstat_fits_80_columns_with_totals_progress_and_age),
		T(test_psrun_help_documents_every_flag),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
