/*
 * test_restart.c - surviving a node crash (psrun --on-failure restart), and
 * the abort mode beside it.
 *
 * The counting job (this binary with --node) makes every update countable:
 * worker w of the job owns K keys of a table; a step is B batches, each a
 * push of +1 to all of its keys, with ps_progress_set(batches done + 1)
 * before each push; workers meet at ps_barrier between steps.  So after
 * step s every key must hold exactly (s + 1) * B, except that a worker
 * killed mid-push loses at most that one batch: such keys may be one
 * short.  Node 0 checks this after every barrier (a barrier that let it
 * through before the replacement caught up shows as a key too low) and at
 * the end; the restarted node skips the steps ps_replaying() names and
 * resumes the one in progress from ps_progress_get().
 *
 * The driver SIGKILLs node 1 while the job runs and checks that psrun
 * restarts it and the job ends well; with mf it checks the final RMSE
 * against an undisturbed run.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"
#include "psmem_int.h"
#include "lock.h"

/* ------------------------------------------------------------ node side */

struct cjob {
	ps_world *w;
	ps_table *t;
	int steps, batches, keys, sleep_us;
	int hang_node;       /* this node sleeps before the first barrier; -1 none */
	int die_step;        /* node 1's first process dies in the middle of a
	                      * batch of this step (thread 0); -1 never */
	int late_node;       /* sleeps 0.5 s before creating the table; -1 none */
	_Atomic int bad;
};

static void fail_node(struct cjob *j, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	j->bad = 1;
}

/* Node 0, thread 0, after step s: every key within one batch of (s+1) B. */
static void check_keys(struct cjob *j, int s, bool final)
{
	int W = ps_num_nodes(j->w) * ps_num_threads(j->w);
	size_t n = (size_t)W * (size_t)j->keys;
	float *v = malloc(n * sizeof *v);
	ps_key *k = malloc(n * sizeof *k);
	for (size_t i = 0; i < n; i++)
		k[i] = i;
	if (ps_pull_sync(j->t, k, n, v) != 0)
		fail_node(j, "pull failed\n");
	float want = (float)((s + 1) * j->batches);
	size_t exact = 0, short1 = 0, other = 0;
	for (size_t i = 0; i < n; i++) {
		if (v[i] == want)
			exact++;
		else if (v[i] == want - 1)
			short1++;
		else
			other++;
	}
	if (other)
		fail_node(j, "after step %d: %zu keys neither %g nor one batch short\n", s, other, (double)want);
	if (final) {
		printf("keys: %zu exact, %zu one batch short, %zu wrong\n", exact, short1, other);
		for (int w = 0; w < W; w++) {
			int e = 0;
			for (int i = 0; i < j->keys; i++)
				e += v[(size_t)w * (size_t)j->keys + (size_t)i] == want;
			printf("worker %d: %d exact\n", w, e);
		}
	} else
		printf("step %d done\n", s);
	fflush(stdout);
	free(v);
	free(k);
}

static void cworker(ps_world *w, int t, void *arg)
{
	struct cjob *j = arg;
	int wg = ps_node_id(w) * ps_num_threads(w) + t;
	float *ones = malloc((size_t)j->keys * sizeof *ones);
	ps_key *keys = malloc((size_t)j->keys * sizeof *keys);
	for (int i = 0; i < j->keys; i++) {
		ones[i] = 1.0f;
		keys[i] = (ps_key)wg * (ps_key)j->keys + (ps_key)i;
	}
	if (j->hang_node == ps_node_id(w))
		sleep(30);
	for (int s = 0; s < j->steps; s++) {
		if (!ps_replaying(w)) {
			int64_t b = ps_progress_get(w);
			for (; b < j->batches; b++) {
				ps_progress_set(w, (uint64_t)b + 1); /* at most this batch is lost */
				size_t half = (size_t)j->keys / 2;
				if (ps_push_sync(j->t, keys, half, ones) != 0)
					fail_node(j, "push failed\n");
				if (s == j->die_step && b == 5 && t == 0 && ps_node_id(w) == 1 && !ps_restarted(w))
					raise(SIGKILL); /* half of the batch is in */
				if (ps_push_sync(j->t, keys + half, (size_t)j->keys - half, ones + half) != 0)
					fail_node(j, "push failed\n");
				if (j->sleep_us)
					usleep((useconds_t)j->sleep_us);
			}
		}
		int rc = ps_barrier(w);
		if (rc)
			fail_node(j, "barrier: %s\n", ps_strerror(rc));
		if (ps_node_id(w) == 0 && t == 0)
			check_keys(j, s, false);
		if (ps_barrier(w) != 0) /* nobody pushes while node 0 checks */
			fail_node(j, "barrier failed\n");
	}
	if (ps_node_id(w) == 0 && t == 0)
		check_keys(j, j->steps - 1, true);
	free(ones);
	free(keys);
}

static int node_main(int argc, char **argv)
{
	struct cjob j = {.steps = 20, .batches = 50, .keys = 64, .sleep_us = 200, .hang_node = -1, .die_step = -1,
			 .late_node = -1};
	for (int i = 0; i + 1 < argc; i += 2) {
		int v = atoi(argv[i + 1]);
		if (!strcmp(argv[i], "steps"))
			j.steps = v;
		else if (!strcmp(argv[i], "batches"))
			j.batches = v;
		else if (!strcmp(argv[i], "sleep"))
			j.sleep_us = v;
		else if (!strcmp(argv[i], "hang"))
			j.hang_node = v;
		else if (!strcmp(argv[i], "die"))
			j.die_step = v;
		else if (!strcmp(argv[i], "late"))
			j.late_node = v;
	}
	int err;
	j.w = ps_init(&err);
	if (!j.w) {
		fprintf(stderr, "ps_init: %s\n", ps_strerror(err));
		return 1;
	}
	if (ps_restarted(j.w))
		fprintf(stderr, "node %d restarted\n", ps_node_id(j.w));
	int W = ps_num_nodes(j.w) * ps_num_threads(j.w);
	if (j.late_node == ps_node_id(j.w))
		usleep(500000);
	ps_table_opts o;
	ps_table_opts_init(&o, (uint64_t)W * (uint64_t)j.keys, 1);
	o.placement = PS_PLACE_HASH; /* every worker's keys on every node */
	j.t = ps_table_create(j.w, &o, &err);
	if (!j.t) {
		fprintf(stderr, "table: %s\n", ps_strerror(err));
		return 1;
	}
	int rc = ps_run_workers(j.w, cworker, &j);
	ps_finalize(j.w);
	return rc || j.bad ? 3 : 0;
}

/* ------------------------------------------------------------ driver side */

static char self[1024];
static char dir[] = "/tmp/psmem-test-restart-XXXXXX";

static const char *path_of(const char *name)
{
	static char p[8][512];
	static int i;
	char *s = p[i++ % 8];
	snprintf(s, 512, "%s/%s", dir, name);
	return s;
}

static void assert_clean(const struct seg_snapshot *before)
{
	assert_true(left_clean(before, self));
}

/*
 * Starts argv (a psrun --on-failure restart job) in the background,
 * SIGKILLs its node 1 once its stdout shows `when`, and waits for it: the
 * job must end well, psrun having restarted node 1.  Returns its stdout.
 */
static const char *run_killing_node1(char *const argv[], const char *tag, const char *when)
{
	struct bg_proc b;
	bg_start(&b, argv, path_of(tag));
	assert_true(bg_wait_output(&b, when, 60));
	pid_t victim = psrun_node_pid(b.pid, 1);
	assert_true(victim > 0);
	kill(victim, SIGKILL);
	assert_true(bg_wait(&b, 120));
	const char *out = file_text(b.out), *err = file_text(b.err);
	if (b.status != 0)
		fprintf(stderr, "status %d\nstdout:\n%s\nstderr:\n%s\n", b.status, out, err);
	assert_int_equal(b.status, 0);
	assert_non_null(strstr(err, "node 1 (pid"));
	assert_non_null(strstr(err, "killed by signal 9"));
	assert_non_null(strstr(err, "restarting node 1"));
	return out;
}

static void test_killed_node_is_restarted_and_loses_at_most_its_batch(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	char *argv[] = {(char *)build_path("bin/psrun"), "-n", "2", "-t", "2", "--on-failure", "restart", self,
			"--node", "steps", "16", "batches", "40", "sleep", "300", NULL};
	const char *out = run_killing_node1(argv, "count.out", "step 3 done");
	assert_non_null(strstr(file_text(path_of("count.out.err")), "node 1 restarted"));
	assert_non_null(strstr(out, "step 15 done"));
	assert_non_null(strstr(out, ", 0 wrong"));
	fprintf(stderr, "# %s", strstr(out, "keys:"));
	assert_clean(&segs);
}

/* Node 1 dies between the two halves of a batch of its thread 0: the
 * second half of that batch (32 keys) stays one batch short.  Its thread 1
 * dies wherever it was: at most its batch in flight is short.  Node 0's
 * keys are exact. */
static void test_node_dying_mid_batch_loses_exactly_that_batch(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct run_result r;
	char *argv[] = {(char *)build_path("bin/psrun"), "-n", "2", "-t", "2", "--on-failure", "restart", self,
			"--node", "steps", "8", "batches", "20", "sleep", "0", "die", "3", NULL};
	run_prog(argv, NULL, 90, -1, 0, &r);
	if (r.status != 0)
		fprintf(stderr, "status %d\nstdout:\n%s\nstderr:\n%s\n", r.status, r.out, r.err);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.err, "node 1 restarted"));
	assert_non_null(strstr(r.out, ", 0 wrong"));
	assert_non_null(strstr(r.out, "worker 0: 64 exact\n"));
	assert_non_null(strstr(r.out, "worker 1: 64 exact\n"));
	assert_non_null(strstr(r.out, "worker 2: 32 exact\n"));
	fprintf(stderr, "# %s", strstr(r.out, "keys:"));
	assert_clean(&segs);
}

/* Node 1 dies while laying out the table (node 0 is late, so node 1 lays
 * it out): its replacement takes the layout over; node 0 does not hang. */
static void test_node_dying_in_table_layout_is_taken_over(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct run_result r;
	char *env[] = {"PSMEM_DEBUG_DIE_IN_LAYOUT=1", NULL};
	char *argv[] = {(char *)build_path("bin/psrun"), "-n", "2", "--on-failure", "restart", self, "--node", "steps",
			"3", "batches", "5", "sleep", "0", "late", "0", NULL};
	run_prog(argv, env, 60, -1, 0, &r);
	if (r.status != 0)
		fprintf(stderr, "status %d\nstdout:\n%s\nstderr:\n%s\n", r.status, r.out, r.err);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.err, "node 1 (pid"));
	assert_non_null(strstr(r.err, "restarting node 1"));
	assert_non_null(strstr(r.out, "keys: 128 exact, 0 one batch short, 0 wrong"));
	assert_clean(&segs);
}

static void test_abort_mode_stops_the_job_within_2s_naming_node_and_signal(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct bg_proc b;
	char *argv[] = {(char *)build_path("bin/psrun"), "-n", "2", "-t", "2", "--on-failure", "abort", self,
			"--node", "steps", "200", "batches", "40", "sleep", "300", NULL};
	bg_start(&b, argv, path_of("abort.out"));
	assert_true(bg_wait_output(&b, "step 1 done", 60));
	pid_t victim = psrun_node_pid(b.pid, 1);
	assert_true(victim > 0);
	double t0 = mono_now();
	kill(victim, SIGKILL);
	assert_true(bg_wait(&b, 30));
	printf("job ended %.3f s after the kill\n", b.t_end - t0);
	assert_true(b.t_end - t0 < 2.0);
	assert_int_equal(b.status, 128 + SIGKILL);
	const char *err = file_text(b.err);
	assert_non_null(strstr(err, "node 1"));
	assert_non_null(strstr(err, "killed by signal 9"));
	assert_null(strstr(err, "restarting"));
	assert_clean(&segs);
}

static void test_restarts_are_limited_then_the_job_stops(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct run_result r;
	char *argv[] = {(char *)build_path("bin/psrun"), "-n", "2", "--on-failure", "restart", "--max-restarts", "2",
			"sh", "-c", "if [ $PSMEM_NODE = 1 ]; then kill -9 $$; fi; sleep 30", NULL};
	run_prog(argv, NULL, 30, -1, 0, &r);
	assert_int_equal(r.status, 128 + SIGKILL);
	assert_true(r.seconds < 5);
	assert_non_null(strstr(r.err, "restarting node 1 (restart 2 of at most 2)"));
	assert_non_null(strstr(r.err, "node 1: no restart left (--max-restarts 2); stopping the job"));
	assert_clean(&segs);
}

static void test_psrun_rejects_bad_on_failure_values(void **state)
{
	(void)state;
	struct run_result r;
	char *a1[] = {(char *)build_path("bin/psrun"), "-n", "2", "--on-failure", "retry", "true", NULL};
	run_prog(a1, NULL, 10, -1, 0, &r);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "--on-failure wants abort or restart, not 'retry'"));
	char *a2[] = {(char *)build_path("bin/psrun"), "-n", "2", "--max-restarts", "-1", "true", NULL};
	run_prog(a2, NULL, 10, -1, 0, &r);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "--max-restarts wants a count from 0 to 1000, not '-1'"));
}

/* ------------------------------------------------------ lock takeover */

/*
 * A hand-built two-node job (restart mode, no psrun): node 1's first
 * process dies holding the slot lock of key 9 and its own pool's lock.  The
 * lock words name node 1 - the id its replacement will have, so nobody
 * else would ever recover them once the replacement is ALIVE.  The
 * replacement must free them when it attaches: it pushes to key 9 and moves
 * key 3 into its pool, under alarm(20) (a lock left behind hangs).
 */
static ps_table *lk_table(ps_world *w)
{
	ps_table_opts o;
	ps_table_opts_init(&o, 16, 4);
	o.init = PS_INIT_CONST;
	o.init_a = 1.0f;
	int err;
	return ps_table_create(w, &o, &err);
}

static void lk_join(const struct ps__seg *seg, int node)
{
	char b[16];
	setenv("PSMEM_SEGMENT", seg->name + 1, 1);
	snprintf(b, sizeof b, "%d", node);
	setenv("PSMEM_NODE", b, 1);
}

static struct ps__slot *slot_of(ps_world *w, ps_table *t, ps_key k)
{
	return ps__at(&w->seg, PS__LOC_OFF(atomic_load(&t->loc[k])));
}

static void lk_first(const struct ps__seg *seg)
{
	lk_join(seg, 1);
	int err;
	ps_world *w = ps_init(&err);
	ps_table *t = w ? lk_table(w) : NULL;
	if (!t)
		_exit(2);
	ps__thread_enter(w);
	bool moved;
	ps__slot_lock(w, t, slot_of(w, t, 9), &moved);
	ps__lock(&ps__pool_at(&w->seg, 0, 1)->lock); /* a robust mutex (lock.c) */
	raise(SIGKILL);
}

static void lk_second(const struct ps__seg *seg, int go)
{
	char c;
	if (read(go, &c, 1) != 1)
		_exit(2);
	alarm(20);
	lk_join(seg, 1);
	int err;
	ps_world *w = ps_init(&err);
	if (!w || !ps_restarted(w))
		_exit(3);
	ps_table *t = lk_table(w); /* bound: its predecessor passed the creation */
	if (!t)
		_exit(4);
	float add[4] = {2, 2, 2, 2}, v[4];
	ps_key k9 = 9, k3 = 3;
	if (ps_push_sync(t, &k9, 1, add) != 0 || ps_localize_sync(t, &k3, 1) != 0 || ps_owner(t, k3) != 1)
		_exit(5);
	if (ps_pull_sync(t, &k9, 1, v) != 0 || v[0] != 3.0f)
		_exit(6);
	ps_finalize(w);
	_exit(0);
}

static void test_replacement_frees_the_locks_of_its_dead_predecessor(void **state)
{
	(void)state;
	struct ps__seg seg;
	struct ps__seg_params p = {.num_nodes = 2, .threads_per_node = 1, .arena_size = 64ULL << 20,
				   .shared_size = 16ULL << 20, .mem_budget = 256ULL << 20, .on_failure = 1};
	assert_int_equal(ps__seg_create(&p, &seg), 0);
	int go[2];
	assert_int_equal(pipe(go), 0);
	/* both children forked while this process has no thread yet */
	pid_t a = fork();
	if (a == 0)
		lk_first(&seg);
	pid_t b = fork();
	if (b == 0) {
		close(go[1]);
		lk_second(&seg, go[0]);
	}
	close(go[0]);
	lk_join(&seg, 0);
	int err, st;
	ps_world *w = ps_init(&err);
	assert_non_null(w);
	ps_table *t = lk_table(w);
	assert_non_null(t);
	waitpid(a, &st, 0);
	assert_true(WIFSIGNALED(st));
	uint64_t s9 = atomic_load(&slot_of(w, t, 9)->seq);
	assert_true(s9 & PS__SEQ_LOCKED);
	assert_int_equal(PS__SEQ_HOLDER(s9), 1);
	assert_true(ps__lock_held(&ps__pool_at(&w->seg, 0, 1)->lock));

	assert_int_equal(write(go[1], "g", 1), 1);
	waitpid(b, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fprintf(stderr, "replacement: %s %d\n", WIFEXITED(st) ? "exit" : "signal",
			WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	float v[4];
	ps_key k9 = 9;
	assert_int_equal(ps_pull_sync(t, &k9, 1, v), 0);
	assert_true(v[0] == 3.0f);
	assert_int_equal(ps_owner(t, 3), 1);
	uint32_t word = atomic_load(&ps__node_at(&w->seg, 1)->state);
	assert_int_equal(PS__NODE_INC(word), 2);
	assert_int_equal(PS__NODE_KIND(word), PS__NODE_EXITED);
	ps_finalize(w);
	ps__seg_unlink(seg.name);
	ps__seg_detach(&seg);
	close(go[1]);
	unsetenv("PSMEM_SEGMENT");
	unsetenv("PSMEM_NODE");
}

/* ------------------------------------------------------------ mf */

static double json_num(const char *json, const char *key)
{
	double x = json_number(json, key);
	if (isnan(x))
		fail_msg("key %s missing from %s", key, json);
	return x;
}

static void mf_argv(char **argv, const char *mode, const char *policy, const char *threads, const char *json,
		    const char *const *extra)
{
	int n = 0;
	argv[n++] = (char *)build_path("bin/psrun");
	argv[n++] = "-n";
	argv[n++] = "2";
	argv[n++] = "-t";
	argv[n++] = (char *)threads;
	argv[n++] = "--on-failure";
	argv[n++] = (char *)mode;
	argv[n++] = (char *)build_path("apps/mf");
	/* mf's default rates: --lr is the base of its adaptive per-row rate, and
	 * 0.02 left the model mid-descent after 12 epochs, where classic's
	 * asynchronous runs differ by about 0.01 from one another */
	const char *rest[] = {"--train", path_of("train.txt"), "--test", path_of("test.txt"), "--rank", "24",
			      "--epochs", "12", "--policy", policy, "--json", json, NULL};
	for (int i = 0; rest[i]; i++)
		argv[n++] = (char *)rest[i];
	for (int i = 0; extra && extra[i]; i++)
		argv[n++] = (char *)extra[i];
	argv[n] = NULL;
}

/* mf under psrun -n 2 --on-failure restart, node 1 SIGKILLed during epoch
 * 4: the job ends well, within 0.01 RMSE of an undisturbed run. */
static void mf_survives(const char *policy, const char *threads, const char *const *extra)
{
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	char *argv[32];
	char ju[512], jr[512];
	snprintf(ju, sizeof ju, "%s", path_of("undisturbed.json"));
	snprintf(jr, sizeof jr, "%s", path_of("restarted.json"));
	struct run_result r;
	mf_argv(argv, "restart", policy, threads, ju, extra);
	run_prog(argv, NULL, 120, -1, 0, &r);
	if (r.status != 0)
		fprintf(stderr, "undisturbed mf failed (%d): %s\n", r.status, r.err);
	assert_int_equal(r.status, 0);
	double undisturbed = json_num(file_text(ju), "rmse");

	mf_argv(argv, "restart", policy, threads, jr, extra);
	const char *out = run_killing_node1(argv, "mf.out", "epoch 4/12");
	assert_non_null(strstr(out, "epoch 12/12"));
	double restarted = json_num(file_text(jr), "rmse");
	fprintf(stderr, "# mf %s -t %s%s%s: test RMSE %.5f undisturbed, %.5f with node 1 killed in epoch 5\n", policy,
		threads, extra ? " " : "", extra ? extra[1] : "", undisturbed, restarted);
	assert_true(fabs(restarted - undisturbed) < 0.01);
	assert_clean(&segs);
}

static void test_mf_classic_survives_a_killed_node(void **state)
{
	(void)state;
	mf_survives("classic", "1", NULL);
}

static void test_mf_localize_survives_a_killed_node(void **state)
{
	(void)state;
	mf_survives("localize", "2", NULL);
}

/* Clocks and a server-side rule: the replacement's replayed steps make
 * their clocks without advancing them twice (clock.c CL5), so nobody waits
 * for a clock that never comes or runs past the bound. */
static void test_mf_with_clocks_and_a_rule_survives_a_killed_node(void **state)
{
	(void)state;
	static const char *const bsp[] = {"--sync", "bsp", "--rule", "adagrad", NULL};
	mf_survives("localize", "2", bsp);
	static const char *const ssp[] = {"--sync", "ssp:1", NULL};
	mf_survives("classic", "2", ssp);
}

/* A hang: node 1 sleeps before its first barrier; the dump says who is
 * awaited. */
static void test_dump_names_the_node_a_barrier_waits_for(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct bg_proc b;
	char *argv[] = {(char *)build_path("bin/psrun"), "-n", "2", "-t", "2", self, "--node", "steps", "1",
			"batches", "1", "hang", "1", NULL};
	bg_start(&b, argv, path_of("hang.out"));
	pid_t n0 = 0;
	for (int i = 0; i < 500 && !n0; i++, usleep(10000))
		n0 = psrun_node_pid(b.pid, 0);
	assert_true(n0 > 0);
	char seg[256];
	snprintf(seg, sizeof seg, "%s", proc_env(n0, "PSMEM_SEGMENT"));
	struct run_result r;
	bool seen = false;
	for (int i = 0; i < 100 && !seen; i++) {
		char *dargv[] = {(char *)build_path("bin/psstat"), "--dump", seg, NULL};
		run_prog(dargv, NULL, 10, -1, 0, &r);
		seen = strstr(r.out, "waits for barrier (worker barrier 0, 2 of 4 participants missing; waiting "
				     "for node 1)") != NULL;
		if (!seen)
			usleep(50000);
	}
	if (!seen)
		fprintf(stderr, "dump:\n%s\n", r.out);
	assert_true(seen);
	kill(b.pid, SIGTERM);
	assert_true(bg_wait(&b, 10));
	assert_clean(&segs);
}

/* ------------------------------------------------------------------ main */

static int setup(void **state)
{
	(void)state;
	if (!mkdtemp(dir))
		return -1;
	return make_ratings(path_of("train.txt"), path_of("test.txt"), 1500, 800, 120000, 11, "0.1") == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlink(path_of(e->d_name));
	if (d)
		closedir(d);
	rmdir(dir);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "--node") == 0)
		return node_main(argc - 2, argv + 2);
	if (!self_exe(self, sizeof self))
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_killed_node_is_restarted_and_loses_at_most_its_batch),
		cmocka_unit_test(test_node_dying_mid_batch_loses_exactly_that_batch),
		cmocka_unit_test(test_node_dying_in_table_layout_is_taken_over),
		cmocka_unit_test(test_abort_mode_stops_the_job_within_2s_naming_node_and_signal),
		cmocka_unit_test(test_restarts_are_limited_then_the_job_stops),
		cmocka_unit_test(test_psrun_rejects_bad_on_failure_values),
		cmocka_unit_test(test_dump_names_the_node_a_barrier_waits_for),
		cmocka_unit_test(test_replacement_frees_the_locks_of_its_dead_predecessor),
		cmocka_unit_test(test_mf_classic_survives_a_killed_node),
		cmocka_unit_test(test_mf_localize_survives_a_killed_node),
		cmocka_unit_test(test_mf_with_clocks_and_a_rule_survives_a_killed_node),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
