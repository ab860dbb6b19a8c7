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
#include "hosts.h"
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

static void stream_item(uint64_t *s, uint64_t keys, ps_key *k, float *add)
{
	uint64_t r = test_rnd(s);
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
			keys[i] = test_rnd(&s) % st->keys;
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
			keys[i] = test_rnd(&s) % st->keys;
		int rc = ps_pull_sync(st->t, keys, 8, v);
		if (rc != 0) {
			fprintf(stderr, "storm: pull: %s\n", ps_strerror(rc));
			atomic_store(&st->result, 1);
			break;
		}
		for (int i = 0; i < 8; i++) {
			int r = row_check(v + (size_t)i * st->vlen, st->vlen, &last[keys[i]]);
			if (r & ROW_TORN)
				atomic_fetch_add(&st->torn, 1);
			if (r & ROW_DOWN)
				atomic_fetch_add(&st->decreasing, 1);
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
	long bad = 0, remote = 0, guests = 0;
	const uint64_t H = (uint64_t)ps_num_hosts(w);
	for (ps_key k = 0; k < st->keys && rc == 0; k++) {
		int holder = ps_owner_host(st->t, k);
		remote += holder != ps_host_id(w);
		/* held here, homed elsewhere: it moved across hosts */
		guests += holder == ps_host_id(w) && (int)(k * H / st->keys) != ps_host_id(w);
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
	printf("storm: host %d: %lu keys x %u checked (%ld held by other hosts, %ld moved in from other "
	       "homes), %ld wrong; %lu relocations\n",
	       ps_host_id(w), (unsigned long)st->keys, st->vlen, remote, guests, bad, (unsigned long)reloc);
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
	if (ps_node_id(st.w) == 0) {
		/* every host has joined and made the table: the storm begins */
		printf("storm: host %d started\n", ps_host_id(st.w));
		fflush(stdout);
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

/* ------------------------------------------------------------ node: asker */

/* Pulls a key of host 1 and prints what the pull returned. */
static int asker_main(void)
{
	int err;
	ps_world *w = ps_init(&err);
	if (!w)
		return 1;
	ps_table_opts o;
	ps_table_opts_init(&o, WATCH_KEYS, 2);
	ps_table *t = ps_table_create(w, &o, &err);
	if (!t)
		return 1;
	ps_key k = WATCH_KEYS - 1;
	float v[2];
	int rc = ps_pull_sync(t, &k, 1, v);
	printf("asker: pull of a key of host %d: %s\n", ps_owner_host(t, k), ps_strerror(rc));
	fflush(stdout);
	_exit(0);
}

/* ------------------------------------------------------------ node: puller */

/* Host 0 pulls a key of host 1 over and over (its data connection) until
 * a pull fails, and prints how; host 1 serves until SIGTERM.  SIGTERM is
 * blocked so that psrun's stopping of the nodes does not hide the pull's
 * own result. */
static int puller_main(void)
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
	ps_table_opts_init(&o, WATCH_KEYS, 100);
	ps_table *t = ps_table_create(w, &o, &err);
	if (!t)
		return 1;
	if (ps_host_id(w) == 1) {
		printf("puller: serving\n");
		fflush(stdout);
		int sig;
		sigwait(&term, &sig);
		_exit(0);
	}
	ps_key k = WATCH_KEYS - 1;
	float v[100];
	long ok = 0;
	int rc;
	while ((rc = ps_pull_sync(t, &k, 1, v)) == 0)
		if (++ok == 100) {
			printf("puller: pulling\n");
			fflush(stdout);
		}
	printf("puller: pull failed after %ld pulls: %s\n", ok, ps_strerror(rc));
	fflush(stdout);
	_exit(0);
}

/* ------------------------------------------------------------ node: fds */

/* Prints the sockets this node holds and checks PSMEM_DATA_FDS: node i
 * must hold its link and its own data connection to every other host,
 * nothing of another node's. */
static int fds_main(void)
{
	/* ps_init adopts the list and unsets it (a child must not adopt it) */
	int listed = 0;
	for (const char *p = getenv("PSMEM_DATA_FDS"); p && *p; p++)
		listed += *p == ':';
	int err;
	ps_world *w = ps_init(&err);
	if (!w)
		return 1;
	if (getenv("PSMEM_DATA_FDS") || getenv("PSMEM_LINK_FD")) {
		printf("fds: PSMEM_DATA_FDS or PSMEM_LINK_FD still set after ps_init\n");
		return 1;
	}
	int sockets = 0;
	char path[64], target[128];
	for (int fd = 0; fd < 1024; fd++) {
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
		ssize_t n = readlink(path, target, sizeof target - 1);
		if (n > 0) {
			target[n] = 0;
			sockets += strncmp(target, "socket:", 7) == 0;
		}
	}
	printf("fds: host %d node %d: %d sockets, %d data connections listed\n", ps_host_id(w), ps_node_id(w), sockets,
	       listed);
	fflush(stdout);
	return ps_finalize(w) ? 1 : 0;
}

/* ------------------------------------------------------------ tests: storm */

static void storm_hosts(int hosts, const char *const args[])
{
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	const char *prog[16] = {mh_self, "--node", "storm"};
	for (int i = 0; args[i]; i++)
		prog[3 + i] = args[i];
	struct mh_proc p[3];
	long guests = 0;
	mh_run_hosts(hosts, 2, prog, p, 90);
	mh_show_failed(hosts, p);
	for (int r = 0; r < hosts; r++) {
		assert_int_equal(p[r].status, 0);
		char want[64];
		snprintf(want, sizeof want, "storm: host %d: ", r);
		const char *out = mh_slurp(p[r].out);
		assert_non_null(strstr(out, want));
		assert_non_null(strstr(out, " 0 wrong"));
		printf("%s", out);
		/* keys moved across hosts during the storm */
		const char *g = strstr(out, " moved in from other homes");
		assert_non_null(g);
		while (g > out && g[-1] >= '0' && g[-1] <= '9')
			g--;
		guests += atol(g);
	}
	assert_true(guests > 0);
	mh_assert_clean(&segs);
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

/* ------------------------------------------------------------ tests: launch */


static const char *const sh_true[] = {"/bin/sh", "-c", "true", NULL};

static void start_host(struct mh_proc *p, const char *name, int nodes, int hosts, int rank, unsigned port,
		       const char *const prog[], const char *timeout, const char *token, char *const env[])
{
	static char store[8][96];
	static int k;
	const char *argv[64];
	mh_psrun_argv(argv, store[k++ % 8], nodes, hosts, rank, port, prog);
	for (int i = 0; argv[i]; i++) {
		if (!strcmp(argv[i], "--rendezvous-timeout") && timeout)
			argv[i + 1] = timeout;
		if (!strcmp(argv[i], "--token-file") && token)
			argv[i + 1] = token;
	}
	if (token && !*token) { /* no --token-file at all: PSMEM_TOKEN */
		int i = 0;
		while (strcmp(argv[i], "--token-file"))
			i++;
		for (; argv[i + 2]; i++)
			argv[i] = argv[i + 2];
		argv[i] = NULL;
	}
	mh_spawn(p, name, (char *const *)argv, env);
}

static void test_wrong_token_is_refused_and_a_missing_host_is_named(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	char other[160];
	snprintf(other, sizeof other, "%s/other-token", mh_tmpdir);
	struct ps__token t;
	assert_int_equal(ps__token_generate(&t), 0);
	assert_int_equal(ps__token_write(other, &t), 0);
	unsigned port = mh_free_port();
	struct mh_proc h0, h1;
	start_host(&h0, "wt0", 1, 2, 0, port, sh_true, "2", NULL, NULL);
	start_host(&h1, "wt1", 1, 2, 1, port, sh_true, "2", other, NULL);
	double t0 = mh_now();
	mh_finish(&h1, 20);
	mh_finish(&h0, 20);
	const char *e0 = mh_slurp(h0.err), *e1 = mh_slurp(h1.err);
	assert_int_equal(h1.status, 1);
	assert_contains(e1, "wrong job token");
	assert_int_equal(h0.status, 1);
	assert_contains(e0, "refused a connection from 127.0.0.1:");
	assert_contains(e0, "wrong job token");
	assert_contains(e0, "host 1 did not join within 2 s");
	assert_true(h0.t_end - t0 < 6.0);
	assert_true(mh_port_free(port));
	mh_assert_clean(&segs);
}

static void test_token_from_environment_and_private_file_rule(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	char hex[80], env[100];
	FILE *f = fopen(mh_token_path, "r");
	assert_non_null(f);
	assert_non_null(fgets(hex, sizeof hex, f));
	fclose(f);
	hex[strcspn(hex, "\n")] = 0;
	snprintf(env, sizeof env, "PSMEM_TOKEN=%s", hex);
	char *envs[] = {env, NULL};
	unsigned port = mh_free_port();
	struct mh_proc h[2];
	for (int r = 0; r < 2; r++)
		start_host(&h[r], r ? "env1" : "env0", 1, 2, r, port, sh_true, NULL, "", envs);
	mh_finish(&h[0], 20);
	mh_finish(&h[1], 20);
	if (h[0].status || h[1].status) {
		mh_show(&h[0], "host 0");
		mh_show(&h[1], "host 1");
	}
	assert_int_equal(h[0].status, 0);
	assert_int_equal(h[1].status, 0);
	/* a token file others may read is refused before anything starts */
	chmod(mh_token_path, 0644);
	struct mh_proc p;
	start_host(&p, "loose", 1, 2, 0, port, sh_true, NULL, NULL, NULL);
	mh_finish(&p, 10);
	chmod(mh_token_path, 0600);
	assert_int_equal(p.status, 2);
	assert_contains(mh_slurp(p.err), "chmod 600");
	/* no token at all */
	start_host(&p, "none", 1, 2, 0, port, sh_true, NULL, "", NULL);
	mh_finish(&p, 10);
	assert_int_equal(p.status, 2);
	assert_contains(mh_slurp(p.err), "--token-file FILE");
	mh_assert_clean(&segs);
}

static void test_mismatched_program_or_shape_is_refused(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	unsigned port = mh_free_port();
	const char *other[] = {"/bin/sh", "-c", "true", NULL};
	const char *mine[] = {mh_self, "--node", "watch", NULL};
	struct mh_proc h0, h1;
	start_host(&h0, "mm0", 1, 2, 0, port, mine, NULL, NULL, NULL);
	start_host(&h1, "mm1", 1, 2, 1, port, other, NULL, NULL, NULL);
	mh_finish(&h0, 20);
	mh_finish(&h1, 20);
	assert_int_equal(h0.status, 1);
	assert_int_equal(h1.status, 1);
	assert_contains(mh_slurp(h0.err), "host 1 (");
	assert_contains(mh_slurp(h0.err), "runs a different program binary");
	assert_contains(mh_slurp(h1.err), "runs a different program binary");
	/* same program, another node count */
	port = mh_free_port();
	start_host(&h0, "mn0", 2, 2, 0, port, sh_true, NULL, NULL, NULL);
	start_host(&h1, "mn1", 1, 2, 1, port, sh_true, NULL, NULL, NULL);
	mh_finish(&h0, 20);
	mh_finish(&h1, 20);
	assert_int_equal(h0.status, 1);
	assert_int_equal(h1.status, 1);
	assert_contains(mh_slurp(h1.err), "starts 1 nodes x 1 threads, host 0 2 x 1");
	mh_assert_clean(&segs);
}

static void test_port_in_use_is_named_and_nothing_is_left(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof a;
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(fd, 1), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
	unsigned port = ntohs(a.sin_port);
	struct mh_proc h0;
	start_host(&h0, "busy", 1, 2, 0, port, sh_true, NULL, NULL, NULL);
	mh_finish(&h0, 10);
	close(fd);
	char want[64];
	snprintf(want, sizeof want, "port %u is in use", port);
	assert_int_equal(h0.status, 1);
	assert_contains(mh_slurp(h0.err), want);
	/* an address that is not this host's is refused, not replaced */
	struct mh_proc h1;
	const char *argv[] = {build_path("bin/psrun"), "-n", "1", "--hosts", "2", "--host-rank", "0",
			      "--coordinator", "192.0.2.1:4000", "--token-file", mh_token_path, "true", NULL};
	mh_spawn(&h1, "notmine", (char *const *)argv, NULL);
	mh_finish(&h1, 10);
	assert_int_equal(h1.status, 1);
	assert_contains(mh_slurp(h1.err), "192.0.2.1 is not an address of this host");
	mh_assert_clean(&segs);
}

static void test_host_that_does_not_join_fails_the_job_named(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	unsigned port = mh_free_port();
	struct mh_proc h0, h2;
	/* of 3 hosts only 0 and 2 come */
	start_host(&h0, "lone0", 1, 3, 0, port, sh_true, "1", NULL, NULL);
	start_host(&h2, "lone2", 1, 3, 2, port, sh_true, "1", NULL, NULL);
	double t0 = mh_now();
	mh_finish(&h0, 20);
	mh_finish(&h2, 20);
	assert_int_equal(h0.status, 1);
	assert_contains(mh_slurp(h0.err), "host 1 did not join within 1 s");
	assert_int_equal(h2.status, 1);
	assert_contains(mh_slurp(h2.err), "host 1 did not join within 1 s");
	assert_true(h0.t_end - t0 < 5.0);
	assert_true(mh_port_free(port));
	mh_assert_clean(&segs);
}

/* ------------------------------------------------- tests: this process as host 1 */

/* Joins a 2-host job as host 1 (the rendezvous as a real host does it);
 * returns the authenticated connection to host 0, or -1 with the reason. */
/* Joins host 0 as host 1 of 2 (one node): returns the bridge connection
 * and, if data_fd, node 0's data connection (else it is closed). */
static int fake_join_data(unsigned port, const char *token_file, char *err, size_t errlen, int *data_fd)
{
	struct ps__rdv *r = calloc(1, sizeof *r);
	assert_non_null(r);
	r->rank = 1;
	r->hosts = 2;
	snprintf(r->coord_host, sizeof r->coord_host, "127.0.0.1");
	r->coord_port = (uint16_t)port;
	char why[256];
	assert_int_equal(ps__token_load(token_file, &r->token, why, sizeof why), 0);
	r->me.abi = PS__ABI;
	r->me.nodes = 1;
	r->me.threads = 1;
	assert_int_equal(ps__hash_file(mh_self, r->me.prog_hash), 0);
	assert_int_equal(ps__hash_file(build_path("bin/psrun"), r->me.psrun_hash), 0);
	snprintf(r->me.name, sizeof r->me.name, "fake");
	r->timeout_ns = 10ULL * 1000000000ULL;
	r->cancel_fd = -1;
	int rc = ps__rendezvous(r);
	int fd = rc == 0 ? r->fd[0] : -1;
	if (rc == 0) {
		r->fd[0] = -1;
		if (data_fd) {
			*data_fd = r->data_fd[0];
			r->data_fd[0] = -1;
		}
	}
	snprintf(err, errlen, "%s", r->err);
	ps__rdv_close(r);
	free(r);
	return fd;
}

static int fake_join(unsigned port, const char *token_file, char *err, size_t errlen)
{
	return fake_join_data(port, token_file, err, errlen, NULL);
}

static uint8_t fbuf[1 << 16];

/* Receives frames from host 0, answering barriers, until one of type
 * want (a barrier is answered too). */
static long fake_recv(int fd, unsigned want, struct ps__frame *f)
{
	for (;;) {
		long n = ps__net_recv_frame(fd, fbuf, sizeof fbuf, PS__FRAME_MAX, ps__now_ns() + 10000000000ULL, -1, f);
		if (n < 0 || (f->type == want && want != PS__F_BARRIER))
			return n;
		if (f->type == PS__F_BARRIER) {
			uint8_t echo[PS__FRAME_HDR + PS__BARRIER_SIZE];
			memcpy(echo + PS__FRAME_HDR, f->body, PS__BARRIER_SIZE);
			assert_int_equal(ps__net_send_frame(fd, echo, PS__F_BARRIER, 1, 0, PS__BARRIER_SIZE,
							    ps__now_ns() + 1000000000ULL), 0);
			if (want == PS__F_BARRIER)
				return n;
		}
	}
}

/* A PUSH of `add` to WATCH_KEY from host 1, sealed; returns its size. */
static size_t make_push(uint8_t *f, float add)
{
	struct ps__kv_req m = {.table = 0, .value_len = 2, .num_keys = WATCH_KEYS, .n = 1};
	uint8_t *b = f + PS__FRAME_HDR;
	ps__kv_enc_hdr(b, &m);
	ps__put64(b + PS__KV_HDR, WATCH_KEY);
	float v[2] = {add, add};
	memcpy(b + PS__KV_HDR + 8, v, sizeof v);
	uint32_t len = (uint32_t)ps__kv_size(true, 1, 2);
	ps__frame_seal(f, PS__F_PUSH, 1, 7, len);
	return PS__FRAME_HDR + len;
}

enum bad_kind {
	BAD_MAGIC, BAD_VERSION, BAD_TYPE, BAD_SIZE, BAD_CRC, BAD_NOCRC, BAD_TRUNC, BAD_BODY, BAD_ROUTE,
	BAD_LEAVE, /* a LEAVE with a body (it has none) */
	BAD_LEFT,  /* a LEFT of 8 bytes (it has 4) */
	BAD_N
};

static const struct {
	const char *name, *reason;
} bad[BAD_N] = {
	[BAD_MAGIC] = {"magic", "not a psmem frame (bad magic)"},
	[BAD_VERSION] = {"version", "unsupported protocol version"},
	[BAD_TYPE] = {"type", "unknown frame type"},
	[BAD_SIZE] = {"size", "frame over the size limit"},
	[BAD_CRC] = {"crc", "frame checksum mismatch"},
	/* a data connection's frame without checksum, on a bridge connection */
	[BAD_NOCRC] = {"nocrc", "frame checksum mismatch"},
	[BAD_TRUNC] = {"trunc", "frame truncated"},
	[BAD_BODY] = {"body", "frame payload malformed for its type"},
	[BAD_ROUTE] = {"route", "claims to come from host 0"},
	[BAD_LEAVE] = {"leave", "frame payload malformed for its type"},
	[BAD_LEFT] = {"left", "frame payload malformed for its type"},
};

/* Sends a malformed PUSH of +100 to WATCH_KEY. */
static void send_bad(int fd, enum bad_kind k)
{
	uint8_t f[256];
	size_t n = make_push(f, 100);
	switch (k) {
	case BAD_MAGIC: f[0] = 'X'; break;
	case BAD_VERSION: f[4] = PS__FRAME_VERSION + 1; break;
	case BAD_TYPE: f[5] = 99; break;
	case BAD_SIZE: ps__put32(f + 8, PS__FRAME_MAX + 1); n = PS__FRAME_HDR; break;
	case BAD_CRC: f[n - 1] ^= 0x40; break; /* the update's last byte */
	case BAD_NOCRC: ps__frame_hdr_nocrc(f, PS__F_PUSH, 1, 7, (uint32_t)(n - PS__FRAME_HDR)); break;
	case BAD_TRUNC: n = PS__FRAME_HDR + 10; break;
	case BAD_BODY:
		/* a count of 2 keys in a body of 1, correctly sealed */
		ps__put32(f + PS__FRAME_HDR + 16, 2);
		ps__frame_seal(f, PS__F_PUSH, 1, 7, (uint32_t)(n - PS__FRAME_HDR));
		break;
	case BAD_ROUTE: ps__frame_set_host(f, 0); break;
	case BAD_LEAVE:
	case BAD_LEFT:
		memset(f + PS__FRAME_HDR, 0, 8);
		n = PS__FRAME_HDR + (k == BAD_LEAVE ? 4 : 8);
		ps__frame_seal(f, k == BAD_LEAVE ? PS__F_LEAVE : PS__F_LEFT, 1, 0, (uint32_t)(n - PS__FRAME_HDR));
		break;
	default: break;
	}
	assert_int_equal(ps__net_send(fd, f, n, ps__now_ns() + 1000000000ULL), 0);
	if (k == BAD_TRUNC)
		shutdown(fd, SHUT_WR); /* the connection ends inside the frame */
}

/*
 * Host 0 is a real psrun whose node holds WATCH_KEY; this process is host 1.
 * A good PUSH of +1 is answered; then a malformed PUSH of +100 must close
 * the connection with the reason logged, stop the job naming host 1, and
 * leave the value at 1.
 */
/* Joins host 0 (already started, its node in "watch") as host 1, waits for
 * its table, pushes +1 to WATCH_KEY and checks the answer.  Returns the
 * connection. */
static int join_and_push_one(unsigned port)
{
	char err[1024];
	int fd = fake_join(port, mh_token_path, err, sizeof err);
	if (fd < 0)
		fail_msg("cannot join host 0: %s", err);
	struct ps__frame rf;
	assert_true(fake_recv(fd, PS__F_BARRIER, &rf) > 0); /* host 0's table is made */
	uint8_t f[256];
	size_t n = make_push(f, 1);
	assert_int_equal(ps__net_send(fd, f, n, ps__now_ns() + 1000000000ULL), 0);
	assert_true(fake_recv(fd, PS__F_REPLY, &rf) > 0);
	struct ps__reply rep;
	assert_int_equal(ps__reply_dec(rf.body, rf.len, &rep), 0);
	assert_int_equal(rep.status, 0);
	assert_int_equal(rf.req, 7);
	return fd;
}

static void start_watch_host(struct mh_proc *h0, const char *name, unsigned port)
{
	const char *prog[] = {mh_self, "--node", "watch", NULL};
	start_host(h0, name, 1, 2, 0, port, prog, "10", NULL, NULL);
}

/*
 * Host 0 is a real psrun whose node holds WATCH_KEY; this process is host 1.
 * A good PUSH of +1 is answered; then a malformed PUSH of +100 must close
 * the connection with the reason logged, stop the job naming host 1, and
 * leave the value at 1.
 */
static void malformed_case(enum bad_kind k)
{
	unsigned port = mh_free_port();
	struct mh_proc h0;
	start_watch_host(&h0, bad[k].name, port);
	int fd = join_and_push_one(port);
	send_bad(fd, k);
	double sent = mh_now();
	/* host 0 closes: nothing but heartbeats may come before the EOF */
	struct ps__frame rf;
	long r;
	while ((r = ps__net_recv_frame(fd, fbuf, sizeof fbuf, PS__FRAME_MAX, ps__now_ns() + 5000000000ULL, -1,
				       &rf)) > 0)
		assert_true(rf.type == PS__F_HEARTBEAT || rf.type == PS__F_ABORT);
	assert_int_equal(r, -ECONNRESET);
	close(fd);
	mh_finish(&h0, 10);
	const char *e = mh_slurp(h0.err);
	if (!strstr(e, bad[k].reason) || !strstr(e, "host 1 (") || h0.status != 1)
		mh_show(&h0, bad[k].name);
	assert_int_equal(h0.status, 1);
	assert_contains(e, "host 1 (");
	assert_contains(e, bad[k].reason);
	assert_contains(mh_slurp(h0.out), "watch: key 3 = 1 1 (success)");
	assert_true(h0.t_end - sent < 2.0);
	assert_true(mh_port_free(port));
}

static void test_each_malformed_frame_closes_the_connection_and_changes_nothing(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	for (int k = 0; k < BAD_N; k++)
		malformed_case((enum bad_kind)k);
	mh_assert_clean(&segs);
}

/* A host that leaves (BYE) with a request of ours unanswered: the request
 * fails with PS_EHOSTDOWN instead of hanging, and the job ends cleanly. */
static void test_request_to_a_host_that_leaves_fails_instead_of_hanging(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	unsigned port = mh_free_port();
	const char *prog[] = {mh_self, "--node", "asker", NULL};
	struct mh_proc h0;
	start_host(&h0, "asker", 1, 2, 0, port, prog, "10", NULL, NULL);
	char err[1024];
	int dfd = -1;
	int fd = fake_join_data(port, mh_token_path, err, sizeof err, &dfd);
	if (fd < 0)
		fail_msg("cannot join host 0: %s", err);
	struct ps__frame rf;
	/* the table's barrier on the bridge, then the PULL on node 0's data
	 * connection (no checksum: it is flagged so) */
	assert_true(fake_recv(fd, PS__F_BARRIER, &rf) > 0);
	long n = ps__net_recv_frame_mode(dfd, fbuf, sizeof fbuf, PS__FRAME_MAX, PS__CRC_DATA,
					 ps__now_ns() + 10000000000ULL, -1, &rf);
	assert_true(n > 0);
	assert_int_equal(rf.type, PS__F_PULL);
	assert_true(fbuf[5] & PS__FRAME_NOCRC);
	assert_int_equal(rf.host, 0);
	uint8_t bye[PS__FRAME_HDR + 4] = {0};
	assert_int_equal(ps__net_send_frame(fd, bye, PS__F_BYE, 1, 0, 4, ps__now_ns() + 1000000000ULL), 0);
	shutdown(fd, SHUT_WR);
	/* host 0 answers with its own goodbye once its node is done, then
	 * closes (heartbeats may come before) */
	uint64_t until = ps__now_ns() + 10000000000ULL;
	long r;
	while ((r = ps__net_recv_frame(fd, fbuf, sizeof fbuf, PS__FRAME_MAX, until, -1, &rf)) > 0 &&
	       rf.type != PS__F_BYE)
		;
	assert_true(r > 0);
	close(fd);
	close(dfd);
	mh_finish(&h0, 10);
	if (h0.status != 0)
		mh_show(&h0, "host 0");
	assert_int_equal(h0.status, 0);
	assert_contains(mh_slurp(h0.out), "asker: pull of a key of host 1: a peer host failed or left the job");
	mh_assert_clean(&segs);
}

/* 3 hosts x 3 nodes: every node holds exactly its link and one data
 * connection per other host (2): psrun passes node i only its own, and
 * closes its copies (a node that inherited another's would hold more). */
static void test_each_node_holds_only_its_own_data_connections(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	const char *prog[] = {mh_self, "--node", "fds", NULL};
	struct mh_proc p[3];
	mh_run_hosts(3, 3, prog, p, 60);
	for (int r = 0; r < 3; r++) {
		if (p[r].status != 0)
			mh_show(&p[r], "fds");
		assert_int_equal(p[r].status, 0);
		const char *out = mh_slurp(p[r].out);
		for (int i = 0; i < 3; i++) {
			char want[96];
			snprintf(want, sizeof want, "fds: host %d node %d: 3 sockets, 2 data connections listed", r, i);
			if (!strstr(out, want))
				mh_show(&p[r], "fds");
			assert_contains(out, want);
		}
	}
	mh_assert_clean(&segs);
}

/*
 * Host 1's psrun is killed while host 0's node pulls from it without
 * pause over its data connection: the pull in flight (or the next one)
 * returns PS_EHOSTDOWN - from the bridge's ABORT (which also marks the
 * data connection to host 1 dead) or from the data connection's own end
 * when host 1's node goes, whichever comes first - and host 0 stops
 * within 2 s.  A pull that nobody failed would hang until psrun killed
 * the node, and the line would be missing.
 */
static void test_host_killed_mid_pull_fails_the_pull_within_2s(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	unsigned port = mh_free_port();
	const char *prog[] = {mh_self, "--node", "puller", NULL};
	struct mh_proc h[2];
	start_host(&h[0], "puller0", 1, 2, 0, port, prog, NULL, NULL, NULL);
	start_host(&h[1], "puller1", 1, 2, 1, port, prog, NULL, NULL, NULL);
	bool pulling = false;
	for (int i = 0; i < 600 && !pulling; i++) {
		pulling = strstr(mh_slurp(h[0].out), "puller: pulling") != NULL;
		if (!pulling)
			usleep(100 * 1000);
	}
	if (!pulling) {
		for (int r = 0; r < 2; r++) {
			mh_finish(&h[r], 0);
			mh_show(&h[r], r ? "host 1" : "host 0");
		}
		fail_msg("host 0 did not start pulling within 60 s");
	}
	double t_sig = mh_now();
	kill(h[1].pid, SIGKILL);
	mh_finish(&h[0], 30);
	mh_finish(&h[1], 10);
	const char *out = mh_slurp(h[0].out);
	printf("host 0 stopped %.3f s after host 1 was killed\n", h[0].t_end - t_sig);
	if (!strstr(out, "puller: pull failed after") || !strstr(out, ps_strerror(PS_EHOSTDOWN)))
		mh_show(&h[0], "host 0");
	assert_contains(out, "puller: pull failed after");
	assert_contains(out, ps_strerror(PS_EHOSTDOWN));
	assert_int_not_equal(h[0].status, 0); /* a peer died */
	assert_true(h[0].t_end - t_sig < 2.0);
	assert_true(mh_port_free(port));
	mh_assert_clean(&segs);
}

/* ------------------------------------------------------------ rendezvous by hand */

struct rdv_thread {
	struct ps__rdv *r;
	int rc;
};

static void *rdv_run(void *arg)
{
	struct rdv_thread *t = arg;
	t->rc = ps__rendezvous(t->r);
	return NULL;
}

/* Connects to 127.0.0.1:port and runs the connector's side of the
 * handshake as host 1 of 2 with token tok for chan; returns the fd and
 * the type of the last frame (AUTH: accepted; REFUSE: refused, its code
 * in *code), or -1. */
static int hand_connect(unsigned port, const struct ps__token *tok, uint32_t chan, unsigned *type, int *code)
{
	char msg[128];
	uint64_t dl = ps__now_ns() + 5000000000ULL;
	int fd = ps__net_connect("127.0.0.1", (uint16_t)port, dl, -1, msg, sizeof msg);
	if (fd < 0)
		return -1;
	uint8_t f[PS__FRAME_HDR + 512];
	struct ps__hello h = {.rank = 1, .hosts = 2, .chan = chan}, peer;
	ps__auth_nonce(h.nonce);
	ps__hello_enc(f + PS__FRAME_HDR, &h);
	struct ps__frame rf;
	if (ps__net_send_frame(fd, f, PS__F_HELLO, 1, 0, PS__HELLO_SIZE, dl) != 0 ||
	    ps__net_recv_frame(fd, fbuf, sizeof fbuf, PS__FRAME_MAX_AUTH, dl, -1, &rf) <= 0 || rf.type != PS__F_HELLO ||
	    ps__hello_dec(rf.body, rf.len, &peer) != 0 || peer.chan != chan)
		return close(fd), -1;
	ps__auth_mac(tok, 'C', peer.nonce, h.nonce, 1, 0, f + PS__FRAME_HDR);
	if (ps__net_send_frame(fd, f, PS__F_AUTH, 1, 0, PS__MAC_BYTES, dl) != 0 ||
	    ps__net_recv_frame(fd, fbuf, sizeof fbuf, PS__FRAME_MAX_AUTH, dl, -1, &rf) <= 0)
		return close(fd), -1;
	*type = rf.type;
	struct ps__note n;
	*code = rf.type == PS__F_REFUSE && ps__note_dec(rf.body, rf.len, &n) == 0 ? n.code : 0;
	return fd;
}

/*
 * Host 0's rendezvous (this process, one node) with this test as host 1,
 * by hand: after the join, a data connection made with another token is
 * refused (REFUSE PS_EAUTH, logged "wrong job token"), one for a node that
 * does not exist (chan 2 with -n 1) is refused as not expected, and the
 * rendezvous still completes with the real one: host 0 holds node 0's
 * data connection to host 1 and nothing else.
 */
static void test_data_connection_with_wrong_token_or_chan_is_refused(void **state)
{
	(void)state;
	unsigned port = mh_free_port();
	struct ps__token tok, other;
	assert_int_equal(ps__token_generate(&tok), 0);
	assert_int_equal(ps__token_generate(&other), 0);
	struct ps__rdv *r = calloc(1, sizeof *r);
	assert_non_null(r);
	r->rank = 0;
	r->hosts = 2;
	snprintf(r->coord_host, sizeof r->coord_host, "127.0.0.1");
	r->coord_port = (uint16_t)port;
	r->token = tok;
	r->me = (struct ps__layout){.abi = PS__ABI, .nodes = 1, .threads = 1};
	snprintf(r->me.name, sizeof r->me.name, "hand");
	r->timeout_ns = 10ULL * 1000000000ULL;
	r->cancel_fd = -1;
	char *logbuf = NULL;
	size_t loglen = 0;
	r->log = open_memstream(&logbuf, &loglen);
	struct rdv_thread t = {.r = r};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, rdv_run, &t), 0);
	/* join: handshake, the same layout (abi, hashes, shape), host list */
	unsigned type;
	int code;
	int fd = hand_connect(port, &tok, PS__CHAN_BRIDGE, &type, &code);
	assert_true(fd >= 0);
	assert_int_equal(type, PS__F_AUTH);
	uint8_t f[PS__FRAME_HDR + PS__LAYOUT_MAX];
	struct ps__layout me = {.abi = PS__ABI, .rank = 1, .hosts = 2, .nodes = 1, .threads = 1, .port = 1};
	snprintf(me.addr, sizeof me.addr, "127.0.0.1");
	snprintf(me.name, sizeof me.name, "host1");
	uint32_t len = ps__layout_enc(f + PS__FRAME_HDR, &me);
	uint64_t dl = ps__now_ns() + 5000000000ULL;
	assert_int_equal(ps__net_send_frame(fd, f, PS__F_LAYOUT, 1, 0, len, dl), 0);
	struct ps__frame rf;
	assert_true(ps__net_recv_frame(fd, fbuf, sizeof fbuf, PS__FRAME_MAX, dl, -1, &rf) > 0);
	assert_int_equal(rf.type, PS__F_PEERS);
	/* a data connection with another job's token */
	int bad = hand_connect(port, &other, 1, &type, &code);
	assert_true(bad >= 0);
	assert_int_equal(type, PS__F_REFUSE);
	assert_int_equal(code, PS_EAUTH);
	close(bad);
	/* the right token, a node that does not exist */
	bad = hand_connect(port, &tok, 2, &type, &code);
	if (bad >= 0) { /* refused after the handshake: closed without a word */
		assert_int_equal(type, PS__F_AUTH);
		assert_true(ps__net_recv_frame(bad, fbuf, sizeof fbuf, PS__FRAME_MAX, dl, -1, &rf) < 0);
		close(bad);
	}
	/* the real one */
	int data = hand_connect(port, &tok, 1, &type, &code);
	assert_true(data >= 0);
	assert_int_equal(type, PS__F_AUTH);
	pthread_join(th, NULL);
	fclose(r->log);
	if (t.rc)
		fail_msg("rendezvous: %s", r->err);
	assert_true(r->fd[1] >= 0);
	assert_int_equal(r->nodes, 1);
	assert_true(r->data_fd[1] >= 0);
	assert_int_equal(r->data_fd[0], -1);
	assert_non_null(strstr(logbuf, "wrong job token"));
	assert_non_null(strstr(logbuf, "connection 2: not a missing one"));
	/* what host 0 sends on it comes to our data socket */
	uint8_t pf[PS__FRAME_HDR + PS__REPLY_HDR];
	ps__reply_enc_hdr(pf + PS__FRAME_HDR, 0, 0);
	ps__frame_hdr_nocrc(pf, PS__F_REPLY, 0, 99, PS__REPLY_HDR);
	assert_int_equal(ps__net_send(r->data_fd[1], pf, sizeof pf, dl), 0);
	assert_true(ps__net_recv_frame_mode(data, fbuf, sizeof fbuf, PS__FRAME_MAX, PS__CRC_DATA, dl, -1, &rf) > 0);
	assert_int_equal(rf.req, 99);
	ps__rdv_close(r);
	free(r);
	free(logbuf);
	close(fd);
	close(data);
}

static void test_stranger_with_wrong_token_is_refused_and_the_job_goes_on(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	char other[160];
	snprintf(other, sizeof other, "%s/stranger-token", mh_tmpdir);
	struct ps__token t;
	assert_int_equal(ps__token_generate(&t), 0);
	assert_int_equal(ps__token_write(other, &t), 0);
	unsigned port = mh_free_port();
	struct mh_proc h0;
	start_watch_host(&h0, "stranger", port);
	char err[1024];
	assert_int_equal(fake_join(port, other, err, sizeof err), -1);
	assert_contains(err, "wrong job token");
	/* the real host 1 still gets in, and its push lands */
	int fd = join_and_push_one(port);
	/* leaving without goodbye is a death */
	close(fd);
	mh_finish(&h0, 10);
	const char *e = mh_slurp(h0.err);
	assert_contains(e, "refused a connection from 127.0.0.1:");
	assert_contains(e, "wrong job token");
	assert_contains(e, "host 1 (127.0.0.1:");
	assert_contains(e, "died: connection closed without goodbye");
	assert_int_equal(h0.status, 1);
	assert_contains(mh_slurp(h0.out), "watch: key 3 = 1 1 (success)");
	mh_assert_clean(&segs);
}

/* ------------------------------------------------------------ tests: faults */

/* True once every host's node 0 has printed "storm: host R started". */
static bool all_started(const struct mh_proc *h, int hosts)
{
	for (int r = 0; r < hosts; r++) {
		char want[32];
		snprintf(want, sizeof want, "storm: host %d started", r);
		if (!strstr(mh_slurp(h[r].out), want))
			return false;
	}
	return true;
}

/*
 * 3 hosts storm; host 2's psrun gets sig mid-storm.  Hosts 0 and 1 must
 * stop within limit seconds, naming host 2 and saying what they saw.
 *
 * The signal must come after the rendezvous on every host: a psrun stopped
 * in the middle of it is a rendezvous failure ("did not connect ... within
 * 20 s" on the host waiting for it), not what this tests.  A host's node 0
 * prints its "started" line after ps_table_create, so after its psrun
 * finished the rendezvous (it holds a connection to every other host) and
 * started the bridge; all three lines mean the mesh is complete
 * everywhere.  The output files are this run's (mh_spawn empties them
 * before it returns; the names also differ per signal, so that a failure
 * shows only this run's output).
 */
static void peer_fault(int sig, const char *what, double limit)
{
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	unsigned port = mh_free_port();
	const char *prog[] = {mh_self, "--node", "storm", "keys", "1024", "vlen", "4", "batches", "100000000", NULL};
	struct mh_proc h[3];
	for (int r = 0; r < 3; r++) {
		char name[32];
		snprintf(name, sizeof name, "fault-sig%d-%d", sig, r);
		start_host(&h[r], name, 2, 3, r, port, prog, NULL, NULL, NULL);
	}
	/* wait until the storm runs everywhere (slow under sanitizers) */
	for (int i = 0; i < 600 && !all_started(h, 3); i++)
		usleep(100 * 1000);
	if (!all_started(h, 3)) {
		for (int r = 0; r < 3; r++) {
			mh_finish(&h[r], 0); /* kills it: no psrun is left behind */
			mh_show(&h[r], r == 0 ? "host 0" : r == 1 ? "host 1" : "host 2");
		}
		fail_msg("the storm did not start on every host within 60 s");
	}
	/* not a synchronisation (the condition above is the one that
	 * matters): lets the pushes get under way, so that the signal lands
	 * mid-storm with traffic in flight */
	usleep(300 * 1000);
	double t_sig = mh_now();
	kill(h[2].pid, sig);
	mh_finish(&h[0], 60);
	mh_finish(&h[1], 60);
	/* a stopped one is still there; psrun alone, so that its guardian
	 * (same process group) removes the segment as it would in real life */
	kill(h[2].pid, SIGKILL);
	mh_finish(&h[2], 10);
	for (int r = 0; r < 2; r++) {
		const char *e = mh_slurp(h[r].err);
		printf("host %d stopped %.3f s after host 2 got signal %d\n", r, h[r].t_end - t_sig, sig);
		if (!strstr(e, "host 2 (127.0.0.1:") || !strstr(e, what))
			mh_show(&h[r], r ? "host 1" : "host 0");
		assert_int_not_equal(h[r].status, 0);
		assert_int_not_equal(h[r].status, -1);
		assert_contains(e, "host 2 (127.0.0.1:");
		assert_contains(e, what);
		assert_true(h[r].t_end - t_sig < limit);
	}
	assert_true(mh_port_free(port));
	mh_assert_clean(&segs);
}

static void test_killed_peer_host_stops_the_others_within_2s(void **state)
{
	(void)state;
	/* "connection closed without goodbye", or a reset if it died with
	 * bytes unread */
	peer_fault(SIGKILL, ") died: ", 2.0);
}

static void test_silent_peer_host_is_presumed_dead(void **state)
{
	(void)state;
	/* a stopped psrun keeps its sockets open: only heartbeats tell */
	/* 3 s of silence; the rest is slack for a loaded machine (the point
	 * here is that it is seen and named at all) */
	peer_fault(SIGSTOP, "presumed dead", 3.0 + 12.0);
}

/* mpirun starts the psruns; rank and size come from Open MPI's env. */
static void test_mpirun_starts_a_two_host_job(void **state)
{
	(void)state;
	if (system("command -v mpirun >/dev/null 2>&1") != 0) {
		printf("mpirun: SKIP: mpirun not found (Debian: openmpi-bin, installed by make deps)\n");
		skip();
	}
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	char coord[32];
	snprintf(coord, sizeof coord, "127.0.0.1:%u", mh_free_port());
	const char *argv[] = {"mpirun", "--oversubscribe", "--allow-run-as-root", "-np", "2", build_path("bin/psrun"),
			      "-n", "2", "--coordinator", coord, "--token-file", mh_token_path, mh_self, "--node", "storm",
			      "keys", "512", "vlen", "4", "batches", "1000", NULL};
	char *env[] = {"OMPI_MCA_btl=self", "OMPI_MCA_plm_rsh_agent=false", NULL};
	struct mh_proc p;
	mh_spawn(&p, "mpirun", (char *const *)argv, env);
	mh_finish(&p, 60);
	const char *out = mh_slurp(p.out);
	if (p.status != 0)
		mh_show(&p, "mpirun");
	assert_int_equal(p.status, 0);
	/* each host's verdict: its line, then exactly 0 wrong */
	for (int r = 0; r < 2; r++) {
		char want[64];
		snprintf(want, sizeof want, "storm: host %d: 512 keys x 4 checked (", r);
		assert_contains(out, want);
		const char *line = strstr(out, want), *eol = strchr(line, '\n');
		const char *ok = strstr(line, " moved in from other homes), 0 wrong;");
		assert_true(ok && (!eol || ok < eol));
	}
	mh_assert_clean(&segs);
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "storm") == 0)
		return storm_main(argc - 3, argv + 3);
	if (argc >= 3 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "watch") == 0)
		return watch_main();
	if (argc >= 3 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "asker") == 0)
		return asker_main();
	if (argc >= 3 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "fds") == 0)
		return fds_main();
	if (argc >= 3 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "puller") == 0)
		return puller_main();
	if (!self_exe(mh_self, sizeof mh_self))
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_two_hosts_conserve_every_push),
		cmocka_unit_test(test_three_hosts_no_torn_100_float_vectors),
		cmocka_unit_test(test_wrong_token_is_refused_and_a_missing_host_is_named),
		cmocka_unit_test(test_token_from_environment_and_private_file_rule),
		cmocka_unit_test(test_mismatched_program_or_shape_is_refused),
		cmocka_unit_test(test_port_in_use_is_named_and_nothing_is_left),
		cmocka_unit_test(test_host_that_does_not_join_fails_the_job_named),
		cmocka_unit_test(test_each_malformed_frame_closes_the_connection_and_changes_nothing),
		cmocka_unit_test(test_stranger_with_wrong_token_is_refused_and_the_job_goes_on),
		cmocka_unit_test(test_request_to_a_host_that_leaves_fails_instead_of_hanging),
		cmocka_unit_test(test_each_node_holds_only_its_own_data_connections),
		cmocka_unit_test(test_host_killed_mid_pull_fails_the_pull_within_2s),
		cmocka_unit_test(test_data_connection_with_wrong_token_or_chan_is_refused),
		cmocka_unit_test(test_killed_peer_host_stops_the_others_within_2s),
		cmocka_unit_test(test_silent_peer_host_is_presumed_dead),
		cmocka_unit_test(test_mpirun_starts_a_two_host_job),
	};
	return cmocka_run_group_tests(tests, mh_setup, mh_teardown);
}
