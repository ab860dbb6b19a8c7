/*
 * test_hosts_clock.c - consistency clocks across hosts: BSP and SSP(s)
 * over every worker of every host (psruns on 127.0.0.1, tests/hosts.h).
 *
 * The binary is the cmocka driver and, under psrun ("--node ROLE ..."),
 * the node program:
 *   gap S CLOCKS    every worker bumps its counter (one key per worker of
 *                   the job, in a psmem table spread over the hosts), calls
 *                   ps_clock, pulls every counter and checks that it is at
 *                   most S ahead of the slowest.  One worker of host 1 is
 *                   slowed until every other worker is blocked at the bound,
 *                   so the others reach exactly S at every clock: the check
 *                   is not vacuous.
 *   toy MODE        a Jacobi-style toy problem (test_clock.c's) over the
 *                   hosts: BSP gives bitwise the sequential result; an ASP
 *                   control with a held-back worker does not.
 *   victim K        BSP; host 1's workers make K clocks and stop; host 0's
 *                   wait at clock K + 1; host 1 is killed by the driver:
 *                   host 0's waiters return PS_EHOSTDOWN.  Before that, ps_dump
 *                   on host 0 says what its workers wait for.
 *   rate N          N BSP clocks and nothing else (the cost of a clock across
 *                   hosts), then ps_clock_read_host of every host: N each.
 *   mismatch        host 0 sets ssp:2, host 1 bsp: PS_EMISMATCH everywhere,
 *                   with the exact message.
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
#include "hosts.h"
#include "psmem_int.h"

static void sleep_ms(int ms)
{
	usleep((useconds_t)ms * 1000);
}

static int64_t now_ms(void)
{
	return (int64_t)(ps__now_ns() / 1000000);
}

/* Global worker index over hosts, nodes, threads. */
static int gworker(ps_world *w, int t)
{
	return (ps_host_id(w) * ps_num_nodes(w) + ps_node_id(w)) * ps_num_threads(w) + t;
}

static int gworkers(ps_world *w)
{
	return ps_num_hosts(w) * ps_num_nodes(w) * ps_num_threads(w);
}

/* ---------------------------------------------------- node: the SSP gap */

#define MAXW 64

struct gap_job {
	ps_table *ctr;          /* one counter per worker of the job */
	int clocks, s;
	int slow;               /* global index of the slowed worker */
	_Atomic int violations, max_gap, errors;
};

/* Every other worker has pushed its counter to want (is in, or past, its
 * ps_clock number want): pulled, so it sees the other hosts too. */
static bool others_at(struct gap_job *g, int me, int G, int64_t want)
{
	ps_key keys[MAXW];
	float v[MAXW];
	for (int x = 0; x < G; x++)
		keys[x] = (ps_key)x;
	if (ps_pull_sync(g->ctr, keys, (size_t)G, v) != 0)
		return true; /* the error shows later */
	for (int x = 0; x < G; x++)
		if (x != me && v[x] < (float)want)
			return false;
	return true;
}

static void gap_worker(ps_world *w, int t, void *arg)
{
	struct gap_job *g = arg;
	int G = gworkers(w), me = gworker(w, t);
	ps_key keys[MAXW];
	float v[MAXW], one = 1.0f;
	ps_key mk = (ps_key)me;
	for (int x = 0; x < G; x++)
		keys[x] = (ps_key)x;
	for (int c = 1; c <= g->clocks; c++) {
		if (me == g->slow) {
			/* the others block at clock c - 1 + s + 1: their bound */
			int64_t want = c + g->s < g->clocks ? c + g->s : g->clocks;
			int64_t t0 = now_ms();
			while (!others_at(g, me, G, want) && now_ms() - t0 < 20000)
				sleep_ms(1);
		}
		int rc = ps_push_sync(g->ctr, &mk, 1, &one);
		if (!rc)
			rc = ps_clock(w);
		if (!rc)
			rc = ps_pull_sync(g->ctr, keys, (size_t)G, v);
		if (rc) {
			fprintf(stderr, "gap: worker %d clock %d: %s\n", me, c, ps_strerror(rc));
			atomic_fetch_add(&g->errors, 1);
			break;
		}
		float min = v[0];
		for (int x = 1; x < G; x++)
			min = v[x] < min ? v[x] : min;
		int gap = c - (int)min;
		if (v[me] != (float)c)
			atomic_fetch_add(&g->errors, 1);
		if (gap > g->s) {
			fprintf(stderr, "gap: worker %d at clock %d sees the slowest at %d\n", me, c, (int)min);
			atomic_fetch_add(&g->violations, 1);
		}
		int m = atomic_load(&g->max_gap);
		while (gap > m && !atomic_compare_exchange_weak(&g->max_gap, &m, gap))
			;
	}
}

static int gap_main(ps_world *w, int s, int clocks)
{
	int G = gworkers(w);
	if (G > MAXW)
		return 1;
	ps_table_opts o;
	ps_table_opts_init(&o, (uint64_t)G, 1);
	int err;
	/* the slowed worker: the first of host 1 */
	struct gap_job g = {.clocks = clocks, .s = s, .slow = ps_num_nodes(w) * ps_num_threads(w)};
	g.ctr = ps_table_create(w, &o, &err);
	if (!g.ctr || ps_set_consistency(w, s ? PS_SSP : PS_BSP, s) != 0 || ps_run_workers(w, gap_worker, &g) != 0)
		return 1;
	/* after the last clock of every worker, every counter is final */
	ps_key keys[MAXW];
	float v[MAXW];
	for (int x = 0; x < G; x++)
		keys[x] = (ps_key)x;
	int wrong = G;
	for (int64_t t0 = now_ms(); wrong && now_ms() - t0 < 20000; sleep_ms(2)) {
		if (ps_pull_sync(g.ctr, keys, (size_t)G, v) != 0) {
			wrong = -1;
			break;
		}
		wrong = 0;
		for (int x = 0; x < G; x++)
			wrong += v[x] != (float)clocks;
	}
	printf("gap: host %d node %d: max %d, violations %d, errors %d, final counters wrong %d\n", ps_host_id(w),
	       ps_node_id(w), atomic_load(&g.max_gap), atomic_load(&g.violations), atomic_load(&g.errors), wrong);
	return 0;
}

/* ------------------------------------------------------ node: toy problem */

#define JK 64   /* unknowns */
#define JC 16   /* clocks */

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
	ps_table *x;            /* 2 x JK keys, rule assign: buffer b at b*JK.. */
	ps_table *done;         /* 1 key: workers finished (ASP control) */
	float x0[JK];
	bool hold_slow;         /* ASP: worker 0 starts when every other is done */
	_Atomic int errors, mismatches, checked;
};

static int pull_buffer(ps_table *t, int b, float *x)
{
	ps_key keys[JK];
	for (int i = 0; i < JK; i++)
		keys[i] = (ps_key)(b * JK + i);
	return ps_pull_sync(t, keys, JK, x);
}

static void toy_worker(ps_world *w, int t, void *arg)
{
	struct toy *y = arg;
	int G = gworkers(w), g = gworker(w, t);
	int lo = JK * g / G, hi = JK * (g + 1) / G;
	ps_key dk = 0;
	float one = 1.0f, d = 0;
	if (g == 0 && y->hold_slow) {
		int64_t t0 = now_ms();
		while (now_ms() - t0 < 20000 && ps_pull_sync(y->done, &dk, 1, &d) == 0 && d < (float)(G - 1))
			sleep_ms(2);
	}
	float x[JK], nx[JK];
	ps_key keys[JK];
	for (int c = 0; c < JC; c++) {
		if (pull_buffer(y->x, c % 2, x))
			atomic_fetch_add(&y->errors, 1);
		for (int i = lo; i < hi; i++) {
			nx[i - lo] = sweep(x, i);
			keys[i - lo] = (ps_key)(((c + 1) % 2) * JK + i);
		}
		if (ps_push_sync(y->x, keys, (size_t)(hi - lo), nx) || ps_clock(w))
			atomic_fetch_add(&y->errors, 1);
	}
	if (ps_push_sync(y->done, &dk, 1, &one))
		atomic_fetch_add(&y->errors, 1);
	if (y->hold_slow && g != 0)
		return;
	/* BSP: after the last clock every worker's last sweep is in */
	float ref[JK];
	memcpy(ref, y->x0, sizeof ref);
	sequential(ref);
	if (pull_buffer(y->x, JC % 2, x))
		atomic_fetch_add(&y->errors, 1);
	atomic_fetch_add(&y->checked, 1);
	if (memcmp(x, ref, sizeof x) != 0)
		atomic_fetch_add(&y->mismatches, 1);
}

static int toy_main(ps_world *w, int mode)
{
	ps_table_opts o;
	ps_table_opts_init(&o, 2 * JK, 1);
	o.init = PS_INIT_UNIFORM;
	o.init_a = 2.0f;
	o.seed = 11;
	o.rule = PS_RULE_ASSIGN;
	int err;
	struct toy y = {.hold_slow = mode == PS_ASP};
	y.x = ps_table_create(w, &o, &err);
	ps_table_opts_init(&o, 1, 1);
	y.done = ps_table_create(w, &o, &err);
	if (!y.x || !y.done)
		return 1;
	/* nobody writes buffer 0 before every host made its first ps_clock
	 * (under BSP: finished clock 1; under ASP: clock.c CLH4) */
	if (pull_buffer(y.x, 0, y.x0) || ps_set_consistency(w, mode, 0) || ps_run_workers(w, toy_worker, &y))
		return 1;
	printf("toy: host %d node %d: %d checked, %d mismatches, %d errors\n", ps_host_id(w), ps_node_id(w),
	       atomic_load(&y.checked), atomic_load(&y.mismatches), atomic_load(&y.errors));
	return 0;
}

/* ------------------------------------------------------ node: victim */

struct victim {
	ps_world *w;
	int k;
	pthread_t dumper;
};

/* Host 0, node 0: once its worker waits for host 1, ps_dump says so. */
static void *dump_when_waiting(void *arg)
{
	struct victim *v = arg;
	ps_world *w = v->w;
	int64_t t0 = now_ms();
	char want[160];
	snprintf(want, sizeof want, "clock (its clock %d, bound bsp; waits for host 1, its slowest at clock %d as last heard)",
		 v->k + 1, v->k);
	/* polls the dump itself until the worker's wait state says so (it
	 * sets it after its check of host 1's clock failed), 20 s at most */
	char *text = NULL;
	bool named = false;
	while (!named) {
		size_t len = 0;
		free(text);
		text = NULL;
		FILE *f = open_memstream(&text, &len);
		ps_dump(w, f);
		fclose(f);
		named = strstr(text, want) != NULL;
		if (named || now_ms() - t0 >= 20000)
			break;
		sleep_ms(5);
	}
	printf("dump: %s\n", named ? "names host 1" : text);
	fflush(stdout);
	free(text);
	return NULL;
}

static int victim_main(ps_world *w, int k)
{
	if (ps_set_consistency(w, PS_BSP, 0) != 0)
		return 1;
	struct victim v = {.w = w, .k = k};
	if (ps_host_id(w) == 0 && ps_node_id(w) == 0)
		pthread_create(&v.dumper, NULL, dump_when_waiting, &v);
	for (int c = 1; c <= k; c++)
		if (ps_clock(w) != 0)
			return 1;
	if (ps_host_id(w) == 1) {
		printf("victim: host 1 node %d parked at clock %d\n", ps_node_id(w), k);
		fflush(stdout);
		for (;;)
			pause(); /* until psrun is killed (PDEATHSIG) */
	}
	/* host 0 waits here for host 1, which never comes */
	int rc = ps_clock(w);
	printf("victim: host 0 node %d: clock %d: %d (%s)\n", ps_node_id(w), k + 1, rc, ps_strerror(rc));
	fflush(stdout);
	if (v.dumper)
		pthread_join(v.dumper, NULL);
	_exit(rc == PS_EHOSTDOWN ? 3 : 4); /* the job is over: no final barrier */
}

/* ------------------------------------------------------ node: rate */

/* n BSP clocks of one worker per node and nothing else: the cost of a
 * clock across hosts; then what ps_clock_read_host says of every host. */
static int rate_main(ps_world *w, int n)
{
	if (ps_set_consistency(w, PS_BSP, 0) != 0)
		return 1;
	uint64_t t0 = ps__now_ns();
	for (int c = 1; c <= n; c++)
		if (ps_clock(w) != 0)
			return 1;
	double us = (double)(ps__now_ns() - t0) / 1e3 / n;
	char line[256];
	int at = snprintf(line, sizeof line, "rate: host %d node %d: hosts' slowest clocks", ps_host_id(w),
			  ps_node_id(w));
	for (int h = 0; h < ps_num_hosts(w); h++)
		at += snprintf(line + at, sizeof line - (size_t)at, " %lld", (long long)ps_clock_read_host(w, h));
	printf("%s; %.1f us per clock\n", line, us);
	return 0;
}

/* ------------------------------------------------------ node: mismatch */

static int mismatch_main(ps_world *w)
{
	int rc = ps_host_id(w) == 0 ? ps_set_consistency(w, PS_SSP, 2) : ps_set_consistency(w, PS_BSP, 0);
	if (rc)
		return 1;
	int r1 = ps_clock(w), r2 = ps_clock(w);
	printf("mismatch: host %d node %d: ps_clock %d, again %d\n", ps_host_id(w), ps_node_id(w), r1, r2);
	return 0;
}

static int node_main(int argc, char **argv)
{
	int err;
	/* psrun stops the nodes (SIGTERM) when a peer host fails: the
	 * victims must live to tell what their ps_clock returned */
	signal(SIGTERM, SIG_IGN);
	ps_world *w = ps_init(&err);
	if (!w) {
		fprintf(stderr, "clock node: ps_init: %s\n", ps_strerror(err));
		return 1;
	}
	int rc = 1;
	if (argc >= 3 && !strcmp(argv[0], "gap"))
		rc = gap_main(w, atoi(argv[1]), atoi(argv[2]));
	else if (argc >= 2 && !strcmp(argv[0], "toy"))
		rc = toy_main(w, !strcmp(argv[1], "asp") ? PS_ASP : PS_BSP);
	else if (argc >= 2 && !strcmp(argv[0], "victim"))
		rc = victim_main(w, atoi(argv[1]));
	else if (argc >= 2 && !strcmp(argv[0], "rate"))
		rc = rate_main(w, atoi(argv[1]));
	else if (argc >= 1 && !strcmp(argv[0], "mismatch"))
		rc = mismatch_main(w);
	fflush(stdout);
	ps_finalize(w);
	return rc;
}

/* ------------------------------------------------------------ driver */

static void show_failed(int hosts, const struct mh_proc *p)
{
	mh_show_failed(hosts, p);
}

/* H hosts x 2 nodes x threads: every node reports max gap s exactly. */
static void gap_hosts(int hosts, int threads, int s, int clocks)
{
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	char ts[8], ss[8], cs[8];
	snprintf(ts, sizeof ts, "%d", threads);
	snprintf(ss, sizeof ss, "%d", s);
	snprintf(cs, sizeof cs, "%d", clocks);
	const char *prog[] = {"-t", ts, mh_self, "--node", "gap", ss, cs, NULL};
	struct mh_proc p[3];
	double t0 = mh_now();
	mh_run_hosts(hosts, 2, prog, p, 60);
	show_failed(hosts, p);
	printf("# %d hosts x 2 nodes x %d threads, ssp:%d, %d clocks: %.2f s\n", hosts, threads, s, clocks,
	       mh_now() - t0);
	for (int r = 0; r < hosts; r++) {
		assert_int_equal(p[r].status, 0);
		const char *out = mh_slurp(p[r].out);
		for (int n = 0; n < 2; n++) {
			/* the slowed worker itself (host 1 node 0 thread 0) is
			 * never ahead: its node's max is 0 if it has no other */
			int max = (r == 1 && n == 0 && threads == 1) ? 0 : s;
			char want[160];
			snprintf(want, sizeof want,
				 "gap: host %d node %d: max %d, violations 0, errors 0, final counters wrong 0\n", r, n,
				 max);
			if (!strstr(out, want))
				mh_show(&p[r], "host");
			assert_non_null(strstr(out, want));
		}
	}
	mh_assert_clean(&segs);
}

static void test_ssp_gap_over_two_hosts_never_exceeds_s_and_reaches_it(void **state)
{
	(void)state;
	gap_hosts(2, 2, 2, 16);
}

static void test_bsp_gap_over_two_hosts_is_0(void **state)
{
	(void)state;
	gap_hosts(2, 1, 0, 16);
}

static void test_ssp_gap_over_three_hosts_never_exceeds_s_and_reaches_it(void **state)
{
	(void)state;
	gap_hosts(3, 1, 1, 12);
}

static void toy_hosts(const char *mode, const char *want[4])
{
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	const char *prog[] = {mh_self, "--node", "toy", mode, NULL};
	struct mh_proc p[2];
	mh_run_hosts(2, 2, prog, p, 60);
	show_failed(2, p);
	for (int r = 0; r < 2; r++)
		assert_int_equal(p[r].status, 0);
	for (int i = 0; i < 4; i++) {
		const char *out = mh_slurp(p[i / 2].out);
		if (!strstr(out, want[i]))
			mh_show(&p[i / 2], "host");
		assert_non_null(strstr(out, want[i]));
	}
	mh_assert_clean(&segs);
}

static void test_bsp_toy_problem_over_two_hosts_is_bitwise_the_sequential_run(void **state)
{
	(void)state;
	const char *want[4] = {"toy: host 0 node 0: 1 checked, 0 mismatches, 0 errors",
			       "toy: host 0 node 1: 1 checked, 0 mismatches, 0 errors",
			       "toy: host 1 node 0: 1 checked, 0 mismatches, 0 errors",
			       "toy: host 1 node 1: 1 checked, 0 mismatches, 0 errors"};
	toy_hosts("bsp", want);
}

/* Control: the same workers under ASP, worker 0 (host 0) held back until
 * every other one is done: it reads their finished buffers, the result is
 * not the sequential one. */
static void test_asp_toy_problem_with_a_late_worker_differs(void **state)
{
	(void)state;
	const char *want[4] = {"toy: host 0 node 0: 1 checked, 1 mismatches, 0 errors",
			       "toy: host 0 node 1: 0 checked, 0 mismatches, 0 errors",
			       "toy: host 1 node 0: 0 checked, 0 mismatches, 0 errors",
			       "toy: host 1 node 1: 0 checked, 0 mismatches, 0 errors"};
	toy_hosts("asp", want);
}

static void test_killed_peer_host_fails_the_waiting_workers_with_hostdown(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	unsigned port = mh_free_port();
	const char *prog[] = {mh_self, "--node", "victim", "5", NULL};
	static char store[2][96];
	struct mh_proc h[2];
	for (int r = 0; r < 2; r++) {
		const char *argv[64];
		mh_psrun_argv(argv, store[r], 2, 2, r, port, prog);
		mh_spawn(&h[r], r ? "victim1" : "victim0", (char *const *)argv, NULL);
	}
	/* host 1 parked, host 0's ps_dump done: its workers wait for host 1 */
	for (int i = 0; i < 400; i++) {
		const char *o1 = mh_slurp(h[1].out), *o0 = mh_slurp(h[0].out);
		if (strstr(o1, "node 0 parked") && strstr(o1, "node 1 parked") && strstr(o0, "dump: "))
			break;
		usleep(50 * 1000);
	}
	assert_non_null(strstr(mh_slurp(h[0].out), "dump: names host 1\n"));
	double t_kill = mh_now();
	kill(h[1].pid, SIGKILL);
	mh_finish(&h[0], 30);
	mh_finish(&h[1], 10);
	const char *o = mh_slurp(h[0].out), *e = mh_slurp(h[0].err);
	printf("# host 0 ended %.3f s after host 1 was killed\n", h[0].t_end - t_kill);
	if (!strstr(o, "node 0: clock 6: -33033") || !strstr(o, "node 1: clock 6: -33033"))
		mh_show(&h[0], "host 0");
	assert_non_null(strstr(o, "victim: host 0 node 0: clock 6: -33033 ("));
	assert_non_null(strstr(o, "victim: host 0 node 1: clock 6: -33033 ("));
	assert_non_null(strstr(e, "psmem: host 0: ps_clock: host 1 left the job at clock 5: "));
	assert_non_null(strstr(e, "host 1 (127.0.0.1:"));
	assert_int_not_equal(h[0].status, 0);
	assert_int_not_equal(h[0].status, -1); /* it ended by itself */
	assert_true(h[0].t_end - t_kill < 5.0);
	mh_assert_clean(&segs);
}

/* After n BSP clocks every host knows every host's slowest clock is n
 * exactly (no worker goes further); prints the cost of one clock. */
static void test_bsp_clock_rate_and_read_host_over_three_hosts(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	const char *prog[] = {mh_self, "--node", "rate", "300", NULL};
	struct mh_proc p[3];
	mh_run_hosts(3, 2, prog, p, 60);
	show_failed(3, p);
	for (int r = 0; r < 3; r++) {
		assert_int_equal(p[r].status, 0);
		const char *out = mh_slurp(p[r].out);
		printf("%s", out);
		for (int n = 0; n < 2; n++) {
			char want[96];
			snprintf(want, sizeof want, "rate: host %d node %d: hosts' slowest clocks 300 300 300; ", r, n);
			assert_non_null(strstr(out, want));
		}
	}
	mh_assert_clean(&segs);
}

static void test_mismatched_bounds_are_refused_on_every_host(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	const char *prog[] = {mh_self, "--node", "mismatch", NULL};
	struct mh_proc p[2];
	mh_run_hosts(2, 2, prog, p, 60);
	show_failed(2, p);
	for (int r = 0; r < 2; r++) {
		assert_int_equal(p[r].status, 0);
		const char *out = mh_slurp(p[r].out);
		for (int n = 0; n < 2; n++) {
			char want[96];
			snprintf(want, sizeof want, "mismatch: host %d node %d: ps_clock -33007, again -33007\n", r, n);
			assert_non_null(strstr(out, want));
		}
	}
	assert_non_null(strstr(mh_slurp(p[0].err),
			       "psmem: host 0: consistency bound mismatch: host 1 uses bsp, this host ssp:2 "
			       "(every host must call ps_set_consistency with the same bound)\n"));
	assert_non_null(strstr(mh_slurp(p[1].err),
			       "psmem: host 1: consistency bound mismatch: host 0 uses ssp:2, this host bsp "
			       "(every host must call ps_set_consistency with the same bound)\n"));
	mh_assert_clean(&segs);
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "--node") == 0)
		return node_main(argc - 2, argv + 2);
	if (!self_exe(mh_self, sizeof mh_self))
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ssp_gap_over_two_hosts_never_exceeds_s_and_reaches_it),
		cmocka_unit_test(test_bsp_gap_over_two_hosts_is_0),
		cmocka_unit_test(test_ssp_gap_over_three_hosts_never_exceeds_s_and_reaches_it),
		cmocka_unit_test(test_bsp_toy_problem_over_two_hosts_is_bitwise_the_sequential_run),
		cmocka_unit_test(test_asp_toy_problem_with_a_late_worker_differs),
		cmocka_unit_test(test_killed_peer_host_fails_the_waiting_workers_with_hostdown),
		cmocka_unit_test(test_bsp_clock_rate_and_read_host_over_three_hosts),
		cmocka_unit_test(test_mismatched_bounds_are_refused_on_every_host),
	};
	return cmocka_run_group_tests(tests, mh_setup, mh_teardown);
}
