/*
 * test_clock.c - consistency clocks: BSP, SSP(s), ASP.
 *
 *   - SSP(s): at every clock, every worker checks the shared counters (one
 *     per worker in a psmem table, bumped before each ps_clock) and never
 *     finds itself more than s ahead of the slowest; a slowed worker makes
 *     the others reach the bound, so the check is not vacuous.  With
 *     threads of one node, and under psrun -n 2 -t 2.  An ASP control with
 *     the same checker sees the gap.
 *   - BSP: a Jacobi-style toy problem (double buffer, assign rule) gives
 *     bitwise the result of a sequential run, with threads and under psrun;
 *     the same workers under ASP with a held-back worker do not.
 *   - A slow worker holds the others back exactly as far as the bound:
 *     they reach slowest + s, not further, not less.
 *   - A node that dies (PS_EDEAD) or finalizes (PS_EEXITED) while others wait on it: not a
 *     hang; ps_dump names the clock waiter and the worker it waits for;
 *     waiters are woken at once (a ping-pong of clocks between processes
 *     takes far less than the waiters' 100 ms liveness period).
 *   - Parsing of --sync values and the checks of ps_set_consistency.
 *
 * Nothing here depends on timing except upper bounds with wide margins.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"
#include "psmem_int.h"

static char self[1024];
static ps_world *g_world; /* the test's world; finalized by teardown_world if a test failed */

static ps_world *new_world(int threads)
{
	int err;
	g_world = threads ? ps_init_threads(threads, &err) : ps_init(&err);
	assert_non_null(g_world);
	return g_world;
}

static void end_world(void)
{
	assert_int_equal(ps_finalize(g_world), 0);
	g_world = NULL;
}

static int teardown_world(void **state)
{
	(void)state;
	if (g_world)
		ps_finalize(g_world);
	g_world = NULL;
	return 0;
}

static void sleep_ms(int ms)
{
	usleep((useconds_t)ms * 1000);
}

/* ---------------------------------------------------- the SSP gap check */

struct gap_job {
	ps_table *ctr;          /* one counter per worker of the job */
	int clocks, s;          /* s < 0: ASP */
	int slow;               /* global index of the slowed worker, -1: none */
	bool hold_slow;         /* ASP control: the slow one starts when the others are done */
	_Atomic int done;       /* workers of this process that finished */
	_Atomic int violations, max_gap, errors;
};

static int64_t now_ms(void)
{
	return (int64_t)(ps__now_ns() / 1000000);
}

/* The slowed worker clocks only once every other worker has reached the
 * bound (is blocked in its next ps_clock) or finished: the others then hit
 * the bound at every clock, whatever the machine's timing. */
static bool others_at_bound(ps_world *w, const struct gap_job *g, int me, int64_t mine)
{
	int T = ps_num_threads(w), G = ps_num_nodes(w) * T;
	int64_t want = mine + g->s + 1 < g->clocks ? mine + g->s + 1 : g->clocks;
	for (int x = 0; x < G; x++)
		if (x != me && ps_clock_read(w, x / T, x % T) < want)
			return false;
	return true;
}

static void gap_worker(ps_world *w, int t, void *arg)
{
	struct gap_job *g = arg;
	int T = ps_num_threads(w), G = ps_num_nodes(w) * T, me = ps_node_id(w) * T + t;
	ps_key keys[64];
	float v[64], one = 1.0f;
	ps_key mk = (ps_key)me;
	for (int x = 0; x < G; x++)
		keys[x] = (ps_key)x;
	if (me == g->slow && g->hold_slow)
		while (atomic_load(&g->done) < T - 1)
			sleep_ms(1);
	for (int c = 1; c <= g->clocks; c++) {
		if (me == g->slow && g->s >= 0) {
			int64_t t0 = now_ms();
			while (!others_at_bound(w, g, me, c - 1) && now_ms() - t0 < 20000)
				sleep_ms(1);
		}
		if (ps_push_sync(g->ctr, &mk, 1, &one) || ps_clock(w) || ps_pull_sync(g->ctr, keys, (size_t)G, v)) {
			atomic_fetch_add(&g->errors, 1);
			break;
		}
		float min = v[0];
		for (int x = 1; x < G; x++)
			min = v[x] < min ? v[x] : min;
		int gap = c - (int)min;
		if (v[me] != (float)c)
			atomic_fetch_add(&g->errors, 1);
		if (g->s >= 0 && gap > g->s)
			atomic_fetch_add(&g->violations, 1);
		int m = atomic_load(&g->max_gap);
		while (gap > m && !atomic_compare_exchange_weak(&g->max_gap, &m, gap))
			;
	}
	atomic_fetch_add(&g->done, 1);
}

/* Runs the checker on this process's world; returns the job's result. */
static void run_gap(ps_world *w, int mode, int s, int clocks, bool hold_slow, struct gap_job *g)
{
	ps_table_opts o;
	ps_table_opts_init(&o, (uint64_t)(ps_num_nodes(w) * ps_num_threads(w)), 1);
	int err;
	*g = (struct gap_job){.clocks = clocks, .s = mode == PS_ASP ? -1 : s, .slow = 0, .hold_slow = hold_slow};
	g->ctr = ps_table_create(w, &o, &err);
	assert_non_null(g->ctr);
	assert_int_equal(ps_set_consistency(w, mode, s), 0);
	assert_int_equal(ps_run_workers(w, gap_worker, g), 0);
}

static void gap_threads(int mode, int s)
{
	ps_world *w = new_world(4);
	struct gap_job g;
	run_gap(w, mode, s, 60, false, &g);
	printf("# %s:%d with 4 threads: max gap %d\n", mode == PS_BSP ? "bsp" : "ssp", s, atomic_load(&g.max_gap));
	assert_int_equal(atomic_load(&g.errors), 0);
	assert_int_equal(atomic_load(&g.violations), 0);
	assert_int_equal(atomic_load(&g.max_gap), s); /* the bound was reached */
	end_world();
}

static void test_ssp_gap_never_exceeds_s_threads(void **state)
{
	(void)state;
	gap_threads(PS_SSP, 2);
	gap_threads(PS_SSP, 5);
}

static void test_bsp_gap_is_0_threads(void **state)
{
	(void)state;
	gap_threads(PS_BSP, 0);
}

/* Control: the same checker sees the gap when nothing bounds it. */
static void test_asp_control_sees_an_unbounded_gap(void **state)
{
	(void)state;
	ps_world *w = new_world(3);
	struct gap_job g;
	run_gap(w, PS_ASP, 0, 30, true, &g);
	assert_int_equal(atomic_load(&g.errors), 0);
	assert_int_equal(atomic_load(&g.max_gap), 30); /* the others ran to the end first */
	end_world();
}

/* ------------------------------------------------------ BSP: a toy problem */

#define JK 64   /* unknowns */
#define JC 24   /* clocks */

/* One Jacobi-style sweep value: bounded, nonlinear, so any stale input
 * changes the bits of the result. */
static float sweep(const float *x, int i)
{
	return 0.5f * x[i] + 0.25f * sinf(x[(i + JK - 1) % JK]) + 0.25f * cosf(x[(i + 1) % JK] * x[(i + 7) % JK]) +
	       0.01f * (float)i;
}

static void sequential(float *x)
{
	float y[JK];
	for (int c = 0; c < JC; c++) {
		for (int i = 0; i < JK; i++)
			y[i] = sweep(x, i);
		memcpy(x, y, sizeof y);
	}
}

struct toy {
	ps_table *x;            /* 2 x JK keys: buffer b at keys b*JK .. b*JK+JK-1, rule assign */
	float x0[JK];           /* initial values */
	bool hold_slow;         /* ASP control: worker 0 waits for the others to finish */
	_Atomic int done, errors, mismatches;
};

static void pull_buffer(ps_table *t, int b, float *x)
{
	ps_key keys[JK];
	for (int i = 0; i < JK; i++)
		keys[i] = (ps_key)(b * JK + i);
	assert_int_equal(ps_pull_sync(t, keys, JK, x), 0);
}

static void toy_worker(ps_world *w, int t, void *arg)
{
	struct toy *y = arg;
	int T = ps_num_threads(w), G = ps_num_nodes(w) * T, g = ps_node_id(w) * T + t;
	int lo = JK * g / G, hi = JK * (g + 1) / G;
	if (g == 0 && y->hold_slow)
		while (atomic_load(&y->done) < T - 1)
			sleep_ms(1);
	float x[JK], nx[JK];
	ps_key keys[JK];
	for (int c = 0; c < JC; c++) {
		pull_buffer(y->x, c % 2, x);
		for (int i = lo; i < hi; i++) {
			nx[i - lo] = sweep(x, i);
			keys[i - lo] = (ps_key)(((c + 1) % 2) * JK + i);
		}
		if (ps_push_sync(y->x, keys, (size_t)(hi - lo), nx) || ps_clock(w))
			atomic_fetch_add(&y->errors, 1);
	}
	atomic_fetch_add(&y->done, 1);
	if (y->hold_slow && g != 0)
		return;
	/* BSP: after the last clock every worker's last sweep is in */
	float ref[JK];
	memcpy(ref, y->x0, sizeof ref);
	sequential(ref);
	pull_buffer(y->x, JC % 2, x);
	if (memcmp(x, ref, sizeof x) != 0)
		atomic_fetch_add(&y->mismatches, 1);
}

static void run_toy(ps_world *w, int mode, bool hold_slow, struct toy *y)
{
	ps_table_opts o;
	ps_table_opts_init(&o, 2 * JK, 1);
	o.init = PS_INIT_UNIFORM;
	o.init_a = 2.0f;
	o.seed = 11;
	o.rule = PS_RULE_ASSIGN;
	int err;
	memset(y, 0, sizeof *y);
	y->hold_slow = hold_slow;
	y->x = ps_table_create(w, &o, &err);
	assert_non_null(y->x);
	/* nobody writes buffer 0 before every worker finished clock 0 */
	pull_buffer(y->x, 0, y->x0);
	assert_int_equal(ps_set_consistency(w, mode, 0), 0);
	assert_int_equal(ps_run_workers(w, toy_worker, y), 0);
}

static void test_bsp_toy_problem_is_bitwise_the_sequential_run_threads(void **state)
{
	(void)state;
	ps_world *w = new_world(4);
	struct toy y;
	run_toy(w, PS_BSP, false, &y);
	assert_int_equal(atomic_load(&y.errors), 0);
	assert_int_equal(atomic_load(&y.mismatches), 0);
	end_world();
}

/* Control: without the bound, a held-back worker makes the others read
 * its old values, and the result is not the sequential one. */
static void test_asp_toy_problem_with_a_late_worker_differs(void **state)
{
	(void)state;
	ps_world *w = new_world(4);
	struct toy y;
	run_toy(w, PS_ASP, true, &y);
	assert_int_equal(atomic_load(&y.errors), 0);
	assert_int_equal(atomic_load(&y.mismatches), 1);
	end_world();
}

/* -------------------------------------------------------- under psrun */

static int node_main(int argc, char **argv)
{
	int err;
	ps_world *w = ps_init(&err);
	if (!w) {
		fprintf(stderr, "clock node: ps_init: %s\n", ps_strerror(err));
		return 1;
	}
	int rc = 0;
	if (argc >= 2 && strcmp(argv[0], "gap") == 0) {
		struct gap_job g;
		run_gap(w, PS_SSP, atoi(argv[1]), 40, false, &g);
		if (ps_node_id(w) == 0)
			printf("gap: max %d, violations %d, errors %d\n", atomic_load(&g.max_gap),
			       atomic_load(&g.violations), atomic_load(&g.errors));
		rc = atomic_load(&g.violations) || atomic_load(&g.errors);
	} else if (argc >= 1 && strcmp(argv[0], "toy") == 0) {
		struct toy y;
		run_toy(w, PS_BSP, false, &y);
		printf("toy: node %d, %d mismatches, %d errors\n", ps_node_id(w), atomic_load(&y.mismatches),
		       atomic_load(&y.errors));
		rc = atomic_load(&y.mismatches) || atomic_load(&y.errors);
	}
	ps_finalize(w); /* the others need nothing more from us: our clocks are final */
	return rc;
}

static void psrun_self(const char *const *args, struct run_result *r)
{
	const char *argv[16] = {build_path("bin/psrun"), "-n", "2", "-t", "2", self, "--node"};
	int n = 7;
	for (; *args; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	run_prog((char *const *)argv, NULL, 60, -1, 0, r);
	if (r->status != 0)
		fprintf(stderr, "%s%s", r->out, r->err);
}

static void test_ssp_gap_never_exceeds_s_two_processes(void **state)
{
	(void)state;
	struct run_result r;
	const char *args[] = {"gap", "3", NULL};
	psrun_self(args, &r);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "gap: max 3, violations 0, errors 0"));
}

static void test_bsp_toy_problem_is_bitwise_the_sequential_run_two_processes(void **state)
{
	(void)state;
	struct run_result r;
	const char *args[] = {"toy", NULL};
	psrun_self(args, &r);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "toy: node 0, 0 mismatches, 0 errors"));
	assert_non_null(strstr(r.out, "toy: node 1, 0 mismatches, 0 errors"));
}

/* ---------------------------------------- a slow worker and the bound */

#define HOLD_CLOCKS 12

struct hold {
	ps_world *w;
	_Atomic int gate;        /* the slow worker may make this many calls */
	_Atomic int returned[3]; /* ps_clock calls that returned, per worker */
	_Atomic int errors;
	pthread_t runner;
};

static void hold_worker(ps_world *w, int t, void *arg)
{
	struct hold *h = arg;
	for (int c = 1; c <= HOLD_CLOCKS; c++) {
		while (t == 0 && atomic_load(&h->gate) < c)
			sleep_ms(1);
		if (ps_clock(w)) {
			atomic_fetch_add(&h->errors, 1);
			return;
		}
		atomic_store(&h->returned[t], c);
	}
}

static void *hold_runner(void *p)
{
	struct hold *h = p;
	if (ps_run_workers(h->w, hold_worker, h))
		atomic_fetch_add(&h->errors, 1);
	return NULL;
}

static bool fast_ones_returned(struct hold *h, int want, int ms)
{
	for (int i = 0; i < ms; i++) {
		if (atomic_load(&h->returned[1]) == want && atomic_load(&h->returned[2]) == want)
			return true;
		sleep_ms(1);
	}
	return false;
}

static char *dump_text(ps_world *w)
{
	static char buf[16384];
	FILE *f = fmemopen(buf, sizeof buf, "w");
	assert_non_null(f);
	ps_dump(w, f);
	fclose(f);
	return buf;
}

/* True once workers 1 and 2 both wait in ps_clock for worker 0 at clock k
 * (the dump lists each waiter), within ms milliseconds. */
static bool both_wait_for_worker_0(ps_world *w, int k, int ms)
{
	char needle[96];
	snprintf(needle, sizeof needle, "the slowest is node 0 thread 0 at clock %d)", k);
	for (int i = 0; i < ms; i++) {
		int n = 0;
		for (const char *p = dump_text(w); (p = strstr(p, needle)) != NULL; p++)
			n++;
		if (n == 2)
			return true;
		sleep_ms(1);
	}
	return false;
}

/* Worker 0 is let through one clock at a time; after each step the other
 * two must have returned from exactly slowest + s calls and be blocked in
 * the next (their clocks count it), and stay there. */
static void hold_back(int mode, int s)
{
	struct hold *h = calloc(1, sizeof *h);
	assert_non_null(h);
	h->w = new_world(3);
	assert_int_equal(ps_set_consistency(h->w, mode, s), 0);
	assert_int_equal(pthread_create(&h->runner, NULL, hold_runner, h), 0);
	for (int k = 0; k + s + 1 <= HOLD_CLOCKS; k++) {
		if (!fast_ones_returned(h, k + s, 10000))
			fail_msg("slowest at %d, bound %d: the others returned %d and %d calls", k, s,
				 atomic_load(&h->returned[1]), atomic_load(&h->returned[2]));
		/* and not further: both are blocked in their next call by the
		 * bound, as the wait state they set once its check failed
		 * shows (a wrong bound lets them return instead) */
		if (!both_wait_for_worker_0(h->w, k, 10000))
			fail_msg("slowest at %d, bound %d: the others do not wait for it:\n%s", k, s, dump_text(h->w));
		assert_int_equal(atomic_load(&h->returned[1]), k + s);
		assert_int_equal(atomic_load(&h->returned[2]), k + s);
		assert_int_equal(ps_clock_read(h->w, 0, 0), k);
		for (int t = 1; t < 3; t++)
			assert_int_equal(ps_clock_read(h->w, 0, t), k + s + 1); /* the blocked call counts */
		if (k == 1) {
			const char *d = dump_text(h->w);
			if (!strstr(d, "waits for clock") || !strstr(d, "the slowest is node 0 thread 0 at clock 1"))
				fail_msg("dump does not show the clock waiters:\n%s", d);
			assert_non_null(strstr(d, "worker clocks: 1"));
		}
		atomic_store(&h->gate, k + 1);
	}
	atomic_store(&h->gate, HOLD_CLOCKS);
	pthread_join(h->runner, NULL);
	assert_int_equal(atomic_load(&h->errors), 0);
	for (int t = 0; t < 3; t++)
		assert_int_equal(ps_clock_read(h->w, 0, t), HOLD_CLOCKS);
	end_world();
	free(h);
}

static void test_slow_worker_holds_the_others_exactly_to_the_bound(void **state)
{
	(void)state;
	hold_back(PS_SSP, 2);
	hold_back(PS_BSP, 0);
}

/* ------------------------------------- a hand-built two-node job (procs) */

struct job {
	struct ps__seg seg;
	pid_t child;
	int cmd[2], ack[2];
	ps_world *w;
};

static void join_env(const struct job *j, int node)
{
	char buf[32];
	setenv("PSMEM_SEGMENT", j->seg.name + 1, 1);
	snprintf(buf, sizeof buf, "%d", node);
	setenv("PSMEM_NODE", buf, 1);
}

/* Node 1: one-byte commands, each answered with one byte:
 * C: ps_clock (answers with '0' + its result's sign), K: die, X: leave. */
static void child_main(struct job *j)
{
	join_env(j, 1);
	int err;
	ps_world *w = ps_init(&err);
	if (!w || ps_set_consistency(w, PS_BSP, 0))
		_exit(1);
	char c = 'r';
	(void)!write(j->ack[1], &c, 1);
	while (read(j->cmd[0], &c, 1) == 1) {
		if (c == 'C') {
			char a = ps_clock(w) == 0 ? '0' : '-';
			(void)!write(j->ack[1], &a, 1);
		} else if (c == 'K') {
			raise(SIGKILL);
		} else if (c == 'X') {
			ps_finalize(w);
			(void)!write(j->ack[1], &c, 1);
			_exit(0);
		}
	}
	_exit(0);
}

static int setup_job(void **state)
{
	struct job *j = calloc(1, sizeof *j);
	struct ps__seg_params p = {.num_nodes = 2, .threads_per_node = 1, .arena_size = 64ULL << 20,
				   .shared_size = 16ULL << 20, .mem_budget = 256ULL << 20};
	if (!j || ps__seg_create(&p, &j->seg) != 0 || pipe(j->cmd) || pipe(j->ack))
		return -1;
	j->child = fork();
	if (j->child == 0) {
		close(j->cmd[1]);
		close(j->ack[0]);
		child_main(j);
	}
	close(j->cmd[0]);
	close(j->ack[1]);
	join_env(j, 0);
	int err;
	j->w = ps_init(&err);
	char c;
	if (!j->w || ps_set_consistency(j->w, PS_BSP, 0) || read(j->ack[0], &c, 1) != 1)
		return -1;
	*state = j;
	return 0;
}

/* Waits for node 1's process (once); true if it had to be killed. */
static void reap(struct job *j)
{
	if (j->child <= 0)
		return;
	int st;
	for (int i = 0; i < 300; i++)
		if (waitpid(j->child, &st, WNOHANG) == j->child) {
			j->child = 0;
			return;
		}
		else
			sleep_ms(10);
	kill(j->child, SIGKILL); /* still ours: not reaped yet */
	waitpid(j->child, &st, 0);
	j->child = 0;
}

static int teardown_job(void **state)
{
	struct job *j = *state;
	signal(SIGPIPE, SIG_IGN); /* the child may be gone */
	close(j->cmd[1]); /* a child in its command loop leaves */
	reap(j);
	ps_finalize(j->w);
	ps__seg_unlink(j->seg.name);
	ps__seg_detach(&j->seg);
	unsetenv("PSMEM_SEGMENT");
	unsetenv("PSMEM_NODE");
	close(j->ack[0]);
	free(j);
	return 0;
}

static void send_cmd(struct job *j, char c)
{
	assert_int_equal(write(j->cmd[1], &c, 1), 1);
}

struct waiter {
	ps_world *w;
	int rc;
	uint64_t t_end;
	pthread_t tid;
};

static void *clock_thread(void *p)
{
	struct waiter *wt = p;
	wt->rc = ps_clock(wt->w);
	wt->t_end = ps__now_ns();
	return NULL;
}

/* Starts ps_clock in a thread of node 0 and waits until the dump shows it
 * waiting for node 1's worker. */
static void start_waiting(struct job *j, struct waiter *wt)
{
	wt->w = j->w;
	wt->rc = 1;
	assert_int_equal(pthread_create(&wt->tid, NULL, clock_thread, wt), 0);
	const char *d = "";
	for (int i = 0; i < 5000 && !strstr(d, "the slowest is node 1 thread 0 at clock 0"); i++) {
		sleep_ms(1);
		d = dump_text(j->w);
	}
	if (!strstr(d, "waits for clock (its clock 1, bound bsp; the slowest is node 1 thread 0 at clock 0)"))
		fail_msg("no clock waiter in the dump:\n%s", d);
}

static void test_clock_returns_EDEAD_when_the_awaited_node_dies(void **state)
{
	struct job *j = *state;
	struct waiter wt;
	start_waiting(j, &wt);
	uint64_t t_dead = ps__now_ns();
	send_cmd(j, 'K');
	reap(j);
	pthread_join(wt.tid, NULL);
	assert_int_equal(wt.rc, PS_EDEAD);
	printf("# ps_clock returned PS_EDEAD %.0f ms after the node died\n", (double)(wt.t_end - t_dead) / 1e6);
	assert_true(wt.t_end - t_dead < 2000000000ULL);
}

static void test_clock_returns_EEXITED_when_the_awaited_node_exits(void **state)
{
	struct job *j = *state;
	struct waiter wt;
	start_waiting(j, &wt);
	send_cmd(j, 'X');
	char c;
	assert_int_equal(read(j->ack[0], &c, 1), 1);
	pthread_join(wt.tid, NULL);
	assert_int_equal(wt.rc, PS_EEXITED); /* finalized normally: not "died" */
}

/* BSP ping-pong between two processes: each clock wakes the other at once.
 * If waiters only woke on their 100 ms liveness timeout, 40 clocks would
 * take 4 s or more. */
static void test_waiters_wake_promptly_across_processes(void **state)
{
	struct job *j = *state;
	const int n = 40;
	uint64_t t0 = ps__now_ns();
	for (int i = 0; i < n; i++) {
		send_cmd(j, 'C'); /* node 1 ends clock i and waits for us */
		assert_int_equal(ps_clock(j->w), 0);
		char a;
		assert_int_equal(read(j->ack[0], &a, 1), 1);
		assert_int_equal(a, '0');
	}
	double ms = (double)(ps__now_ns() - t0) / 1e6;
	printf("# %d BSP clocks between two processes in %.1f ms\n", n, ms);
	assert_true(ms < 1500);
	assert_int_equal(ps_clock_read(j->w, 1, 0), n);
	assert_int_equal(ps_clock_read(j->w, 0, 0), n);
}

/* ------------------------------------------------------ input checks */

static void parse_fails(const char *text, const char *msg)
{
	char why[128] = "";
	int mode = 7, s = 7;
	assert_int_equal(ps_clock_parse(text, &mode, &s, why, sizeof why), -EINVAL);
	assert_string_equal(why, msg);
	assert_int_equal(mode, 7); /* untouched */
	assert_int_equal(s, 7);
}

static void test_clock_parse_accepts_the_three_forms_only(void **state)
{
	(void)state;
	int mode, s;
	assert_int_equal(ps_clock_parse("bsp", &mode, &s, NULL, 0), 0);
	assert_true(mode == PS_BSP && s == 0);
	assert_int_equal(ps_clock_parse("asp", &mode, &s, NULL, 0), 0);
	assert_true(mode == PS_ASP && s == 0);
	assert_int_equal(ps_clock_parse("ssp:3", &mode, &s, NULL, 0), 0);
	assert_true(mode == PS_SSP && s == 3);
	assert_int_equal(ps_clock_parse("ssp:1000000", &mode, &s, NULL, 0), 0);
	assert_int_equal(s, PS_STALENESS_MAX);
	parse_fails("BSP", "'BSP' is not bsp, ssp:S or asp");
	parse_fails("", "'' is not bsp, ssp:S or asp");
	parse_fails(NULL, "'' is not bsp, ssp:S or asp");
	parse_fails("bsp ", "'bsp ' is not bsp, ssp:S or asp");
	const char *range = "the staleness S of ssp:S must be a whole number from 0 to 1000000";
	const char *bad[] = {"ssp", "ssp:", "ssp:x", "ssp:-1", "ssp:1000001", "ssp:2.5", "ssp:99999999999"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		char msg[160];
		snprintf(msg, sizeof msg, "'%s': %s", bad[i], range);
		parse_fails(bad[i], msg);
	}
	/* a short buffer gets a truncated, terminated message */
	char why[8];
	assert_int_equal(ps_clock_parse("nope", &mode, &s, why, sizeof why), -EINVAL);
	assert_string_equal(why, "'nope' ");
}

static void test_set_consistency_checks_its_arguments(void **state)
{
	(void)state;
	ps_world *w = new_world(2);
	assert_int_equal(ps_set_consistency(NULL, PS_BSP, 0), -EINVAL);
	assert_int_equal(ps_set_consistency(w, 3, 0), -EINVAL);
	assert_int_equal(ps_set_consistency(w, -1, 0), -EINVAL);
	assert_int_equal(ps_set_consistency(w, PS_BSP, 1), -EINVAL);
	assert_int_equal(ps_set_consistency(w, PS_ASP, 2), -EINVAL);
	assert_int_equal(ps_set_consistency(w, PS_SSP, -1), -EINVAL);
	assert_int_equal(ps_set_consistency(w, PS_SSP, PS_STALENESS_MAX + 1), -EINVAL);
	/* none of those fixed the bound */
	assert_int_equal(ps_set_consistency(w, PS_SSP, 0), 0); /* = bsp */
	assert_int_equal(ps_set_consistency(w, PS_BSP, 0), 0);
	assert_int_equal(ps_set_consistency(w, PS_SSP, 2), PS_EMISMATCH);
	assert_int_equal(ps_set_consistency(w, PS_ASP, 0), PS_EMISMATCH);
	/* two workers: the main thread is not one of them */
	assert_int_equal(ps_clock(w), -EINVAL);
	assert_int_equal(ps_clock(NULL), -EINVAL);
	assert_int_equal(ps_clock_read(w, 1, 0), PS_ENODE);
	assert_int_equal(ps_clock_read(w, 0, 2), -EINVAL);
	assert_int_equal(ps_clock_read(w, 0, -1), -EINVAL);
	assert_int_equal(ps_clock_read(w, 0, 0), 0);
	end_world();
	/* one worker per node: any thread of the node is worker 0 */
	w = new_world(0);
	assert_int_equal(ps_clock(w), 0); /* BSP by default, alone: no wait */
	assert_int_equal(ps_clock(w), 0);
	assert_int_equal(ps_clock_read(w, 0, 0), 2);
	end_world();
}

#define TJ(f) cmocka_unit_test_setup_teardown(f, setup_job, teardown_job)
#define TW(f) cmocka_unit_test_teardown(f, teardown_world)

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "--node") == 0)
		return node_main(argc - 2, argv + 2);
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0)
		return 1;
	self[n] = 0;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clock_parse_accepts_the_three_forms_only),
		TW(test_set_consistency_checks_its_arguments),
		TW(test_ssp_gap_never_exceeds_s_threads),
		TW(test_bsp_gap_is_0_threads),
		TW(test_asp_control_sees_an_unbounded_gap),
		TW(test_bsp_toy_problem_is_bitwise_the_sequential_run_threads),
		TW(test_asp_toy_problem_with_a_late_worker_differs),
		TW(test_slow_worker_holds_the_others_exactly_to_the_bound),
		cmocka_unit_test(test_ssp_gap_never_exceeds_s_two_processes),
		cmocka_unit_test(test_bsp_toy_problem_is_bitwise_the_sequential_run_two_processes),
		TJ(test_clock_returns_EDEAD_when_the_awaited_node_dies),
		TJ(test_clock_returns_EEXITED_when_the_awaited_node_exits),
		TJ(test_waiters_wake_promptly_across_processes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
