/*
 * test_bridge.c - multi-host jobs on one machine: 2 and 3 psruns on
 * 127.0.0.1 (distinct ports), each with its own segment, joined by the
 * bridge.
 *
 * The binary has three roles.  Run by cmocka it is the driver: it starts
 * the psruns (and, for the protocol tests, plays a host itself).  Under
 * psrun it is a node: "--node storm ..." runs the foundation's storm across
 * hosts; "--node watch" holds a small table and, when stopped, prints a
 * key's value so a test can see what reached the segment.
 *
 * The storm across hosts: every node of every host pushes to random keys
 * of the whole table (most of them held by other hosts) with a stream that
 * depends on its global node number; a localizer per node moves random
 * keys (keys of other hosts stay where they are); a reader per node pulls
 * random keys and checks that no vector is torn and no value goes down.
 * After a barrier across hosts, node 0 of every host pulls every key and
 * compares it with the exact sum of every stream.  Exit 0 ok, 1 wrong
 * sums, 2 torn or decreasing reads, 3 stale reads.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "bridge.h"
#include "common.h"
#include "psmem_int.h"

#define BATCH 16

/* ------------------------------------------------------------ node: storm */

struct storm {
	ps_world *w;
	ps_table *t;
	uint64_t keys;
	uint32_t vlen;
	long batches;
	int gnodes;            /* nodes of all hosts */
	_Atomic bool stop;
	_Atomic uint64_t torn, decreasing, pulls_checked;
	_Atomic int result;
};

static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void stream_item(uint64_t *s, uint64_t keys, ps_key *k, float *add)
{
	uint64_t r = rnd(s);
	*k = r % keys;
	*add = (float)(1 + (r >> 60) % 3);
}

static int gnode(ps_world *w)
{
	return ps_host_id(w) * ps_num_nodes(w) + ps_node_id(w);
}

static void pusher(ps_world *w, int tid, void *arg)
{
	struct storm *st = arg;
	uint64_t s = (uint64_t)gnode(w) * 1000 + (uint64_t)tid + 1;
	ps_key keys[BATCH];
	float *upd = malloc(sizeof(float) * BATCH * st->vlen);
	for (long b = 0; b < st->batches; b++) {
		for (int i = 0; i < BATCH; i++) {
			float a;
			stream_item(&s, st->keys, &keys[i], &a);
			for (uint32_t j = 0; j < st->vlen; j++)
				upd[(size_t)i * st->vlen + j] = a;
		}
		/* every other batch asynchronously: the handle carries the
		 * keys of other hosts until ps_wait */
		int rc = (b & 1) ? ps_wait(ps_push(st->t, keys, BATCH, upd)) : ps_push_sync(st->t, keys, BATCH, upd);
		if (rc != 0) {
			fprintf(stderr, "storm: push: %s\n", ps_strerror(rc));
			atomic_store(&st->result, 1);
			break;
		}
	}
	free(upd);
	int rc = ps_barrier(w);
	if (rc != 0) {
		fprintf(stderr, "storm: barrier: %s\n", ps_strerror(rc));
		atomic_store(&st->result, 1);
	}
}

static void *localizer(void *arg)
{
	struct storm *st = arg;
	uint64_t s = 777 + (uint64_t)gnode(st->w);
	ps_key keys[8];
	for (long it = 0; !atomic_load(&st->stop); it++) {
		for (int i = 0; i < 8; i++)
			keys[i] = rnd(&s) % st->keys;
		int rc = (it & 3) == 0 ? ps_wait(ps_localize(st->t, keys, 8)) : ps_localize_sync(st->t, keys, 8);
		if (rc != 0) {
			fprintf(stderr, "storm: localize: %s\n", ps_strerror(rc));
			atomic_store(&st->result, 1);
		}
		usleep(200);
	}
	return NULL;
}

static void *reader(void *arg)
{
	struct storm *st = arg;
	uint64_t s = 999 + (uint64_t)gnode(st->w);
	float *last = calloc(st->keys, sizeof(float));
	float *v = malloc(sizeof(float) * 8 * st->vlen);
	ps_key keys[8];
	while (!atomic_load(&st->stop)) {
		for (int i = 0; i < 8; i++)
			keys[i] = rnd(&s) % st->keys;
		int rc = ps_pull_sync(st->t, keys, 8, v);
		if (rc != 0) {
			fprintf(stderr, "storm: pull: %s\n", ps_strerror(rc));
			atomic_store(&st->result, 1);
			break;
		}
		for (int i = 0; i < 8; i++) {
			const float *x = v + (size_t)i * st->vlen;
			for (uint32_t j = 1; j < st->vlen; j++)
				if (x[j] != x[0]) {
					atomic_fetch_add(&st->torn, 1);
					break;
				}
			if (x[0] < last[keys[i]])
				atomic_fetch_add(&st->decreasing, 1);
			last[keys[i]] = x[0];
		}
		atomic_fetch_add(&st->pulls_checked, 8);
	}
	free(last);
	free(v);
	return NULL;
}

static int verify(struct storm *st)
{
	ps_world *w = st->w;
	float *expect = calloc(st->keys, sizeof(float));
	for (int n = 0; n < st->gnodes; n++)
		for (int t = 0; t < ps_num_threads(w); t++) {
			uint64_t s = (uint64_t)n * 1000 + (uint64_t)t + 1;
			for (long b = 0; b < st->batches * BATCH; b++) {
				ps_key k;
				float a;
				stream_item(&s, st->keys, &k, &a);
				expect[k] += a;
			}
		}
	/* all keys in one batch: most of them come from other hosts */
	ps_key *all = malloc(sizeof(ps_key) * st->keys);
	float *v = malloc(sizeof(float) * st->vlen * st->keys);
	for (ps_key k = 0; k < st->keys; k++)
		all[k] = k;
	int rc = ps_pull_sync(st->t, all, st->keys, v);
	if (rc)
		fprintf(stderr, "storm: host %d: pulling every key: %s\n", ps_host_id(w), ps_strerror(rc));
	long bad = 0, remote = 0;
	for (ps_key k = 0; k < st->keys && rc == 0; k++) {
		remote += ps_owner_host(st->t, k) != ps_host_id(w);
		for (uint32_t j = 0; j < st->vlen; j++)
			if (v[k * st->vlen + j] != expect[k] && bad++ < 5)
				fprintf(stderr, "storm: key %lu[%u] = %g, expected %g\n", (unsigned long)k, j,
					(double)v[k * st->vlen + j], (double)expect[k]);
	}
	uint64_t reloc = 0;
	for (int n = 0; n < ps_num_nodes(w); n++) {
		ps_node_stats ns;
		ps_stats(w, n, &ns);
		reloc += ns.relocations;
	}
	printf("storm: host %d: %lu keys x %u checked (%ld held by other hosts), %ld wrong; %lu relocations\n",
	       ps_host_id(w), (unsigned long)st->keys, st->vlen, remote, bad, (unsigned long)reloc);
	free(expect);
	free(v);
	free(all);
	return rc || bad || remote == 0 ? 1 : 0;
}

static int storm_main(int argc, char **argv)
{
	struct storm st = {.keys = 1024, .vlen = 4, .batches = 300};
	for (int i = 0; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "keys")) st.keys = strtoull(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "vlen")) st.vlen = (uint32_t)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "batches")) st.batches = atol(argv[i + 1]);
	}
	int err;
	st.w = ps_init(&err);
	if (!st.w) {
		fprintf(stderr, "storm: ps_init: %s\n", ps_strerror(err));
		return 1;
	}
	st.gnodes = ps_num_hosts(st.w) * ps_num_nodes(st.w);
	ps_table_opts o;
	ps_table_opts_init(&o, st.keys, st.vlen);
	o.placement = PS_PLACE_HASH;
	st.t = ps_table_create(st.w, &o, &err);
	if (!st.t) {
		fprintf(stderr, "storm: table: %s\n", ps_strerror(err));
		ps_finalize(st.w);
		return 1;
	}
	pthread_t lt, rt;
	pthread_create(&lt, NULL, localizer, &st);
	pthread_create(&rt, NULL, reader, &st);
	int rc = ps_run_workers(st.w, pusher, &st);
	atomic_store(&st.stop, true);
	pthread_join(lt, NULL);
	pthread_join(rt, NULL);
	if (rc == 0)
		rc = atomic_load(&st.result);
	if (rc == 0 && ps_node_id(st.w) == 0)
		rc = verify(&st);
	ps_node_stats ns;
	ps_stats(st.w, ps_node_id(st.w), &ns);
	if (atomic_load(&st.torn) || atomic_load(&st.decreasing)) {
		fprintf(stderr, "storm: host %d node %d saw %lu torn and %lu decreasing reads in %lu\n",
			ps_host_id(st.w), ps_node_id(st.w), (unsigned long)atomic_load(&st.torn),
			(unsigned long)atomic_load(&st.decreasing), (unsigned long)atomic_load(&st.pulls_checked));
		rc = rc ? rc : 2;
	}
	if (ns.stale_reads)
		rc = rc ? rc : 3;
	int frc = ps_finalize(st.w);
	if (frc != 0) {
		fprintf(stderr, "storm: finalize: %s\n", ps_strerror(frc));
		rc = rc ? rc : 1;
	}
	return rc;
}

/* ------------------------------------------------------------ node: watch */

#define WATCH_KEYS 16
#define WATCH_KEY  3 /* held by host 0 of 2 */

/* Holds a table until SIGTERM, then prints WATCH_KEY's value (a local
 * pull: host 0 holds it) so the driver can see what reached the segment. */
static int watch_main(void)
{
	sigset_t term;
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &term, NULL); /* the library's threads inherit it */
	int err;
	ps_world *w = ps_init(&err);
	if (!w)
		return 1;
	ps_table_opts o;
	ps_table_opts_init(&o, WATCH_KEYS, 2);
	ps_table *t = ps_table_create(w, &o, &err);
	if (!t) {
		fprintf(stderr, "watch: table: %s\n", ps_strerror(err));
		return 1;
	}
	printf("watch: ready\n");
	fflush(stdout);
	int sig;
	sigwait(&term, &sig);
	ps_key k = WATCH_KEY;
	float v[2] = {-1, -1};
	int rc = ps_pull_sync(t, &k, 1, v);
	printf("watch: key %d = %g %g (%s)\n", WATCH_KEY, (double)v[0], (double)v[1], ps_strerror(rc));
	fflush(stdout);
	_exit(0); /* the other host is gone: no final barrier to wait for */
}

/* ------------------------------------------------------------ driver: processes */

static char self[1024];
static char tmpdir[64];

struct proc {
	pid_t pid;
	char out[128], err[128]; /* file names */
	int status;
	double t_end;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void spawn(struct proc *p, const char *name, char *const argv[], char *const env[])
{
	snprintf(p->out, sizeof p->out, "%s/%s.out", tmpdir, name);
	snprintf(p->err, sizeof p->err, "%s/%s.err", tmpdir, name);
	p->status = -2;
	p->pid = fork();
	if (p->pid == 0) {
		setpgid(0, 0);
		int o = open(p->out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int e = open(p->err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(o, 1);
		dup2(e, 2);
		for (int i = 0; env && env[i]; i++)
			putenv(env[i]);
		execvp(argv[0], argv);
		_exit(127);
	}
	setpgid(p->pid, p->pid);
}

/* Waits up to timeout_s; then kills the process group (status -1). */
static int finish(struct proc *p, double timeout_s)
{
	double end = now_s() + timeout_s;
	int st;
	for (;;) {
		pid_t r = waitpid(p->pid, &st, WNOHANG);
		if (r == p->pid)
			break;
		if (now_s() > end) {
			kill(-p->pid, SIGKILL);
			waitpid(p->pid, &st, 0);
			p->status = -1;
			return -1;
		}
		usleep(5000);
	}
	p->t_end = now_s();
	p->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	return p->status;
}

static char *slurp(const char *path)
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

static void show(const struct proc *p, const char *name)
{
	fprintf(stderr, "--- %s (status %d)\n%s%s", name, p->status, slurp(p->out), slurp(p->err));
}

/* A port that was free a moment ago (the kernel's choice). */
static unsigned free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof a;
	if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(fd, (struct sockaddr *)&a, &l) != 0)
		abort();
	close(fd);
	return ntohs(a.sin_port);
}

static char token_path[128];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/psmem-test-bridge-XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(token_path, sizeof token_path, "%s/token", tmpdir);
	struct ps__token t;
	return ps__token_generate(&t) || ps__token_write(token_path, &t) ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void assert_clean(const struct seg_snapshot *before)
{
	for (int i = 0; i < 100 && (seg_leaked_since(before) > 0 || count_procs(self) > 0); i++)
		usleep(20000);
	assert_int_equal(seg_leaked_since(before), 0);
	assert_int_equal(count_procs(self), 0);
}

/* argv of `psrun -n nodes --hosts H --host-rank r --coordinator ... prog...` */
static void psrun_argv(const char **argv, char *store, int nodes, int hosts, int rank, unsigned port,
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
	argv[i++] = token_path;
	argv[i++] = "--rendezvous-timeout";
	argv[i++] = "20";
	for (int k = 0; prog[k]; k++)
		argv[i++] = prog[k];
	argv[i] = NULL;
}

/* Runs H psruns of nodes nodes each on loopback and waits for them. */
static void run_hosts(int hosts, int nodes, const char *const prog[], struct proc *p, double timeout)
{
	unsigned port = free_port();
	static char store[8][96];
	for (int r = 0; r < hosts; r++) {
		const char *argv[64];
		psrun_argv(argv, store[r], nodes, hosts, r, port, prog);
		char name[16];
		snprintf(name, sizeof name, "host%d", r);
		spawn(&p[r], name, (char *const *)argv, NULL);
	}
	for (int r = 0; r < hosts; r++)
		finish(&p[r], timeout);
}

/* ------------------------------------------------------------ tests: storm */

static void storm_hosts(int hosts, const char *const args[])
{
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	const char *prog[16] = {self, "--node", "storm"};
	for (int i = 0; args[i]; i++)
		prog[3 + i] = args[i];
	struct proc p[3];
	run_hosts(hosts, 2, prog, p, 90);
	for (int r = 0; r < hosts; r++) {
		char name[16];
		snprintf(name, sizeof name, "host %d", r);
		if (p[r].status != 0)
			show(&p[r], name);
	}
	for (int r = 0; r < hosts; r++) {
		assert_int_equal(p[r].status, 0);
		char want[64];
		snprintf(want, sizeof want, "storm: host %d: ", r);
		const char *out = slurp(p[r].out);
		assert_non_null(strstr(out, want));
		assert_non_null(strstr(out, " 0 wrong"));
		printf("%s", out);
	}
	assert_clean(&segs);
}

static void test_two_hosts_conserve_every_push(void **state)
{
	(void)state;
	const char *args[] = {"keys", "1024", "vlen", "4", "batches", "3000", NULL};
	storm_hosts(2, args);
}

static void test_three_hosts_no_torn_100_float_vectors(void **state)
{
	(void)state;
	const char *args[] = {"keys", "256", "vlen", "100", "batches", "1000", NULL};
	storm_hosts(3, args);
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "storm") == 0)
		return storm_main(argc - 3, argv + 3);
	if (argc >= 3 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "watch") == 0)
		return watch_main();
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0)
		return 1;
	self[n] = 0;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_two_hosts_conserve_every_push),
		cmocka_unit_test(test_three_hosts_no_torn_100_float_vectors),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
