/*
 * test_hosts_backup_state.c - backups (lib/net/backup.c BK11, BK12) of
 * keys with update-rule state and of keys of replicated tables, under
 * psrun --on-host-failure continue, 3 hosts x 1 node on loopback.
 *
 * "--node state": two tables of 300 keys, 2 floats, one adagrad and one
 * adam (rule state: 2 and 5 floats per key).  Host 2 takes keys 0-9 from
 * host 0 and host 1 takes 290-299 from host 2 first (moves carry the
 * state).  Then rounds: in round r every host pushes the same gradient
 * g(r) to every key of both tables, then ps_barrier; the three identical
 * pushes of a round give the same result in any order, so after the job
 * every key equals a sequential reference (the rules' float arithmetic in
 * the order psmem.h gives).  Host 2 stops after round STOP_AT and is
 * SIGKILLed 0.5 s (25 backup periods) later, outside the backup window:
 * the survivors push rounds STOP_AT + 1 .. ROUNDS (two pushes a round) to
 * every key, host 2's included.  Every key must equal the reference of
 * STOP_AT rounds of 3 pushes then ROUNDS - STOP_AT rounds of 2: a key
 * promoted with its values but with zeroed state (the old promotion) takes
 * other steps (adagrad: lr per step at once; adam: an unbiased restart)
 * and fails, and a key not backed up at all fails its push PS_EHOSTDOWN.
 *
 * "--node statemove": the same tables, no backup round (0.05 rounds/s):
 * every host pushes NPRE rounds to keys 0-9 (home host 0) and 100-109
 * (home host 1), host 2 localizes the 20 keys and stops, the driver
 * SIGKILLs it at once.  Only the giver's copy (BK7) and the move's own
 * backup (BK5) can bring them back with their state: the survivors push
 * two more rounds and every key must equal its reference, held at host 0.
 *
 * "--node repl": a replicated table (sum rule) with keys of every host
 * replicated on every host, 1 and 2 nodes per host; host 2 is killed 0.5 s
 * after its last push and every key must read the exact sum on both
 * survivors (repl_main says how).
 */
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"
#include "hosts.h"
#include "psmem.h"

#define KEYS    300
#define VLEN    2
#define ROUNDS  30
#define STOP_AT 12
#define NPRE    3
#define BACKUP_RATE "50"  /* rounds/s */
#define SLOW_RATE "0.05"  /* the first round 20 s after start: none runs */

static const float ADAGRAD_P[4] = {0.1f, 1e-3f, 0, 0};
static const float ADAM_P[4] = {0.05f, 0.9f, 0.99f, 1e-3f};

/* ------------------------------------------------------------ reference */

/* the gradient of round r (r >= 1) */
static void grad(int r, float g[VLEN])
{
	g[0] = 0.5f + 0.25f * (float)(r % 3);
	g[1] = -0.3f * (float)(1 + r % 2);
}

/* rules.c's adagrad and adam, in the same float order */
static void adagrad_ref(float *v, float *a, const float *u)
{
	const float lr = ADAGRAD_P[0], eps = ADAGRAD_P[1];
	for (int j = 0; j < VLEN; j++) {
		a[j] = a[j] + u[j] * u[j];
		v[j] = v[j] + -lr * u[j] / (sqrtf(a[j]) + eps);
	}
}

static void adam_ref(float *v, float *m, float *s, uint32_t *t, const float *u)
{
	const float lr = ADAM_P[0], b1 = ADAM_P[1], b2 = ADAM_P[2], eps = ADAM_P[3];
	*t += 1;
	const float c1 = 1.0f - powf(b1, (float)*t), c2 = 1.0f - powf(b2, (float)*t);
	for (int j = 0; j < VLEN; j++) {
		m[j] = b1 * m[j] + (1.0f - b1) * u[j];
		s[j] = b2 * s[j] + (1.0f - b2) * u[j] * u[j];
		v[j] = v[j] + -lr * (m[j] / c1) / (sqrtf(s[j] / c2) + eps);
	}
}

/* values of a key after rounds 1..n3 of 3 pushes, then n3+1..n3+n2 of 2 */
static void reference(int n3, int n2, float ada[VLEN], float adam[VLEN])
{
	float a[VLEN] = {0}, m[VLEN] = {0}, s[VLEN] = {0};
	uint32_t t = 0;
	memset(ada, 0, sizeof(float) * VLEN);
	memset(adam, 0, sizeof(float) * VLEN);
	for (int r = 1; r <= n3 + n2; r++) {
		float g[VLEN];
		grad(r, g);
		for (int p = 0; p < (r <= n3 ? 3 : 2); p++) {
			adagrad_ref(ada, a, g);
			adam_ref(adam, m, s, &t, g);
		}
	}
}

static bool near(float got, float want)
{
	return fabsf(got - want) <= 1e-6f * fmaxf(1.0f, fabsf(want));
}

/* ------------------------------------------------------------ node: state */

static ps_table *rule_table(ps_world *w, uint32_t rule, const float p[4])
{
	int err;
	ps_table_opts o;
	ps_table_opts_init(&o, KEYS, VLEN);
	o.rule = rule;
	memcpy(o.rule_params, p, sizeof o.rule_params);
	ps_table *t = ps_table_create(w, &o, &err);
	if (!t)
		printf("state: ps_table_create(rule %u): %s\n", rule, ps_strerror(err));
	return t;
}

/* pushes g(r) to keys[0..n) of both tables */
static int push_round(ps_table *ta, ps_table *tm, const ps_key *keys, int n, int r)
{
	static float g[KEYS * VLEN];
	for (int i = 0; i < n; i++)
		grad(r, g + i * VLEN);
	int rc = ps_push_sync(ta, keys, (size_t)n, g);
	return rc ? rc : ps_push_sync(tm, keys, (size_t)n, g);
}

/* pulls keys[0..n) of both tables and compares them with the reference;
 * returns how many are wrong (printing the first few) */
static int check(ps_table *ta, ps_table *tm, const ps_key *keys, int n, int n3, int n2, int me, int *pull_rc)
{
	static float va[KEYS * VLEN], vm[KEYS * VLEN];
	float ra[VLEN], rm[VLEN];
	reference(n3, n2, ra, rm);
	*pull_rc = ps_pull_sync(ta, keys, (size_t)n, va);
	if (*pull_rc == 0)
		*pull_rc = ps_pull_sync(tm, keys, (size_t)n, vm);
	if (*pull_rc)
		return n;
	int wrong = 0;
	for (int i = 0; i < n; i++) {
		bool ok = true;
		for (int j = 0; j < VLEN; j++)
			ok = ok && near(va[i * VLEN + j], ra[j]) && near(vm[i * VLEN + j], rm[j]);
		if (!ok && wrong++ < 5)
			printf("state: host %d: key %d: adagrad %.9g %.9g (want %.9g %.9g), adam %.9g %.9g (want %.9g "
			       "%.9g)\n",
			       me, (int)keys[i], (double)va[i * VLEN], (double)va[i * VLEN + 1], (double)ra[0],
			       (double)ra[1], (double)vm[i * VLEN], (double)vm[i * VLEN + 1], (double)rm[0],
			       (double)rm[1]);
	}
	return wrong;
}

static int state_main(void)
{
	int err, rc;
	ps_world *w = ps_init(&err);
	if (!w)
		return 1;
	ps_table *ta = rule_table(w, PS_RULE_ADAGRAD, ADAGRAD_P), *tm = ta ? rule_table(w, PS_RULE_ADAM, ADAM_P) : NULL;
	if (!tm)
		return 1;
	int me = ps_host_id(w);
	ps_key all[KEYS], in2[10], in1[10];
	for (int i = 0; i < KEYS; i++)
		all[i] = (ps_key)i;
	for (int i = 0; i < 10; i++)
		in2[i] = (ps_key)i, in1[i] = (ps_key)(290 + i);
	/* relocations before the rounds (the state moves with the key) */
	if ((me == 2 && ((rc = ps_localize_sync(ta, in2, 10)) || (rc = ps_localize_sync(tm, in2, 10)))) ||
	    (me == 1 && ((rc = ps_localize_sync(ta, in1, 10)) || (rc = ps_localize_sync(tm, in1, 10))))) {
		printf("state: host %d: localize: %s\n", me, ps_strerror(rc));
		return 1;
	}
	if ((rc = ps_barrier(w)) != 0)
		return 1;
	for (int r = 1; r <= ROUNDS; r++) {
		if (me == 2 && r > STOP_AT) {
			int held = 0;
			for (int i = 0; i < KEYS; i++)
				held += (ps_owner_host(ta, (ps_key)i) == 2) + (ps_owner_host(tm, (ps_key)i) == 2);
			printf("state: host 2 stops after round %d holding %d keys\n", STOP_AT, held);
			fflush(stdout);
			for (;;)
				pause(); /* killed by the driver */
		}
		/* the survivors wait for the loss before they push again */
		if (me != 2 && r == STOP_AT + 1 && (rc = ps_barrier(w)) != 0) {
			printf("state: host %d: barrier for the loss: %s\n", me, ps_strerror(rc));
			return 1;
		}
		if ((rc = push_round(ta, tm, all, KEYS, r)) != 0) {
			printf("state: host %d round %d: push: %s\n", me, r, ps_strerror(rc));
			return 1;
		}
		if ((rc = ps_barrier(w)) != 0) {
			printf("state: host %d round %d: barrier: %s\n", me, r, ps_strerror(rc));
			return 1;
		}
	}
	int pull_rc;
	int wrong = check(ta, tm, all, KEYS, STOP_AT, ROUNDS - STOP_AT, me, &pull_rc);
	int at0 = 0;
	for (int i = 200; i < 290; i++)
		at0 += (ps_owner_host(ta, (ps_key)i) == 0) + (ps_owner_host(tm, (ps_key)i) == 0);
	for (int i = 0; i < 10; i++)
		at0 += (ps_owner_host(ta, in2[i]) == 0) + (ps_owner_host(tm, in2[i]) == 0);
	printf("state: host %d: pull %s; %d wrong of %d; %d of host 2's 200 held at host 0\n", me,
	       ps_strerror(pull_rc), wrong, KEYS, at0);
	fflush(stdout);
	if ((rc = ps_finalize(w)) != 0)
		return 1;
	return pull_rc || wrong ? 1 : 0;
}

/* ------------------------------------------------------------ node: statemove */

static int statemove_main(void)
{
	int err, rc;
	ps_world *w = ps_init(&err);
	if (!w)
		return 1;
	ps_table *ta = rule_table(w, PS_RULE_ADAGRAD, ADAGRAD_P), *tm = ta ? rule_table(w, PS_RULE_ADAM, ADAM_P) : NULL;
	if (!tm)
		return 1;
	int me = ps_host_id(w);
	ps_key mk[20];
	for (int i = 0; i < 10; i++)
		mk[i] = (ps_key)i, mk[10 + i] = (ps_key)(100 + i);
	for (int r = 1; r <= NPRE; r++)
		if ((rc = push_round(ta, tm, mk, 20, r)) != 0 || (rc = ps_barrier(w)) != 0) {
			printf("statemove: host %d: before the move: %s\n", me, ps_strerror(rc));
			return 1;
		}
	if (me == 2) {
		if ((rc = ps_localize_sync(ta, mk, 20)) != 0 || (rc = ps_localize_sync(tm, mk, 20)) != 0) {
			printf("statemove: host 2: localize: %s\n", ps_strerror(rc));
			return 1;
		}
		int here = 0;
		for (int i = 0; i < 20; i++)
			here += (ps_owner_host(ta, mk[i]) == 2) + (ps_owner_host(tm, mk[i]) == 2);
		printf("statemove: host 2 moved %d keys\n", here);
		fflush(stdout);
		for (;;)
			pause(); /* killed by the driver */
	}
	/* completes when host 2 is dropped (it never arrives) */
	if ((rc = ps_barrier(w)) != 0) {
		printf("statemove: host %d: barrier for the loss: %s\n", me, ps_strerror(rc));
		return 1;
	}
	for (int r = NPRE + 1; r <= NPRE + 2; r++)
		if ((rc = push_round(ta, tm, mk, 20, r)) != 0 || (rc = ps_barrier(w)) != 0) {
			printf("statemove: host %d round %d: %s\n", me, r, ps_strerror(rc));
			return 1;
		}
	int pull_rc;
	int wrong = check(ta, tm, mk, 20, NPRE, 2, me, &pull_rc);
	int at0 = 0;
	for (int i = 0; i < 20; i++)
		at0 += (ps_owner_host(ta, mk[i]) == 0) + (ps_owner_host(tm, mk[i]) == 0);
	printf("statemove: host %d: pull %s; %d wrong of 20; %d of 40 held at host 0\n", me, ps_strerror(pull_rc),
	       wrong, at0);
	fflush(stdout);
	if ((rc = ps_finalize(w)) != 0)
		return 1;
	return pull_rc || wrong ? 1 : 0;
}

/* ------------------------------------------------------------ node: repl */

#define PER 4 /* pushes of +1 to every key per round */

/*
 * A replicated table (sum rule, repl_max 32, 100 rounds/s) of KEYS keys,
 * 1 float: every host replicates keys 205-214 (held by host 2: a local
 * primary there, a remote one at hosts 0 and 1), 5-9 (host 0's) and
 * 105-109 (host 1's).  Rounds: every host pushes +1 PER times to every
 * key, then ps_barrier; host 2 stops after STOP_AT and is killed 0.5 s
 * later (50 backup rounds of host 2 and 25 of its backup host, 50 remote
 * replica rounds: every delta pushed before its last barrier reached the
 * primaries and their backups).  The survivors go on to ROUNDS, then
 * ps_sync, barrier, ps_sync, barrier (psmem.h's guarantee over all hosts),
 * and every key must read exactly PER x (3 STOP_AT + 2 (ROUNDS - STOP_AT)):
 * host 2's ordinary keys promoted at host 0 as in any table, and 205-214
 * with host 0's promoted copy as their primary (its replicas and host 1's,
 * through RPUSH/RPULL routed to host 0, keep working).
 */
static int repl_main(void)
{
	int err, rc;
	ps_world *w = ps_init(&err);
	if (!w)
		return 1;
	ps_table_opts o;
	ps_table_opts_init(&o, KEYS, 1);
	o.repl_max = 32;
	o.repl_rate = 100;
	ps_table *t = ps_table_create(w, &o, &err);
	if (!t) {
		printf("repl: ps_table_create: %s\n", ps_strerror(err));
		return 1;
	}
	int me = ps_host_id(w), node = ps_node_id(w), nodes = ps_num_nodes(w);
	ps_key all[KEYS], rk[20];
	static float one[KEYS];
	for (int i = 0; i < KEYS; i++)
		all[i] = (ps_key)i, one[i] = 1.0f;
	for (int i = 0; i < 10; i++)
		rk[i] = (ps_key)(205 + i);
	for (int i = 0; i < 5; i++)
		rk[10 + i] = (ps_key)(5 + i), rk[15 + i] = (ps_key)(105 + i);
	if (node == 0 && (rc = ps_replicate(t, rk, 20)) != 20) { /* for the host */
		printf("repl: host %d: ps_replicate: %d\n", me, rc);
		return 1;
	}
	if ((rc = ps_barrier(w)) != 0)
		return 1;
	for (int r = 1; r <= ROUNDS; r++) {
		if (me == 2 && r > STOP_AT) {
			int n = 0;
			for (int i = 0; i < 20; i++)
				n += ps_is_replicated(t, rk[i]) == 1;
			if (node == 0)
				printf("repl: host 2 stops after round %d with %d keys replicated\n", STOP_AT, n);
			fflush(stdout);
			for (;;)
				pause(); /* killed by the driver */
		}
		if (me != 2 && r == STOP_AT + 1 && (rc = ps_barrier(w)) != 0) {
			printf("repl: host %d: barrier for the loss: %s\n", me, ps_strerror(rc));
			return 1;
		}
		for (int p = 0; p < PER; p++)
			if ((rc = ps_push_sync(t, all, KEYS, one)) != 0) {
				printf("repl: host %d round %d: push: %s\n", me, r, ps_strerror(rc));
				return 1;
			}
		if ((rc = ps_barrier(w)) != 0) {
			printf("repl: host %d round %d: barrier: %s\n", me, r, ps_strerror(rc));
			return 1;
		}
	}
	int s1 = ps_sync(t), b1 = ps_barrier(w), s2 = ps_sync(t), b2 = ps_barrier(w);
	static float v[KEYS];
	int pull_rc = ps_pull_sync(t, all, KEYS, v);
	const float want = (float)(PER * nodes * (3 * STOP_AT + 2 * (ROUNDS - STOP_AT)));
	int wrong = 0, still = 0;
	for (int i = 0; pull_rc == 0 && i < KEYS; i++)
		if (v[i] != want && wrong++ < 5)
			printf("repl: host %d: key %d = %g, want %g\n", me, i, (double)v[i], (double)want);
	for (int i = 0; i < 20; i++)
		still += ps_is_replicated(t, rk[i]) == 1;
	printf("repl: host %d node %d: syncs %s %s, barriers %s %s; pull %s; %d wrong of %d; %d of 20 still "
	       "replicated\n",
	       me, node, ps_strerror(s1), ps_strerror(s2), ps_strerror(b1), ps_strerror(b2), ps_strerror(pull_rc), wrong,
	       KEYS, still);
	fflush(stdout);
	if ((rc = ps_finalize(w)) != 0)
		return 1;
	return s1 || s2 || b1 || b2 || pull_rc || wrong ? 1 : 0;
}

/* ------------------------------------------------------------ driver */

/* Starts 3 hosts x nodes of `role` under continue at `rate`, waits for
 * `ready` in any host's output, waits `pause_s` (outside the backup window,
 * BK4: not a synchronisation), SIGKILLs host 2's psrun, waits for the
 * others.  Returns the kill's time. */
static double run_job(struct mh_proc h[3], const char *rate, int nodes, const char *tag, const char *role,
		      const char *ready, double pause_s)
{
	unsigned port = mh_free_port();
	const char *prog[] = {mh_self, "--node", role, NULL};
	static char store[3][96];
	for (int r = 0; r < 3; r++) {
		const char *argv[64];
		mh_psrun_argv(argv, store[r], nodes, 3, r, port, prog);
		mh_argv_on_failure(argv, "continue", rate);
		char name[32];
		snprintf(name, sizeof name, "%s%d", tag, r);
		mh_spawn(&h[r], name, (char *const *)argv, NULL);
	}
	mh_wait_line(h, 3, ready);
	if (pause_s > 0)
		usleep((useconds_t)(pause_s * 1e6));
	double t_kill = mh_now();
	kill(h[2].pid, SIGKILL); /* psrun alone: its guardian removes the rest */
	mh_finish(&h[2], 10);
	mh_finish(&h[0], 60);
	mh_finish(&h[1], 60);
	assert_true(mh_port_free(port));
	return t_kill;
}

static void test_rule_state_survives_the_loss_of_its_host(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct mh_proc h[3];
	run_job(h, BACKUP_RATE, 1, "st", "state", "host 2 stops", 0.5);
	assert_contains(mh_slurp(h[2].out), "state: host 2 stops after round 12 holding 200 keys");
	for (int r = 0; r < 2; r++) {
		const char *out = mh_slurp(h[r].out);
		char want[128];
		snprintf(want, sizeof want, "state: host %d: pull %s; 0 wrong of %d; 200 of host 2's 200 held at host 0",
			 r, ps_strerror(0), KEYS);
		if (h[r].status != 0 || !strstr(out, want))
			mh_show(&h[r], r ? "host 1" : "host 0");
		assert_int_equal(h[r].status, 0);
		assert_contains(out, want);
	}
	/* both tables' 100 keys of host 2 (90 of its range and 0-9) */
	assert_contains(mh_slurp(h[0].err), "psmem: host 0 node 0: promoted 200 keys of lost host 2");
	mh_assert_clean(&segs);
}

static void test_rule_state_of_moved_keys_survives_without_a_round(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct mh_proc h[3];
	run_job(h, SLOW_RATE, 1, "stm", "statemove", "host 2 moved 40 keys", 0);
	for (int r = 0; r < 2; r++) {
		const char *out = mh_slurp(h[r].out);
		char want[128];
		snprintf(want, sizeof want, "statemove: host %d: pull %s; 0 wrong of 20; 40 of 40 held at host 0", r,
			 ps_strerror(0));
		if (h[r].status != 0 || !strstr(out, want))
			mh_show(&h[r], r ? "host 1" : "host 0");
		assert_int_equal(h[r].status, 0);
		assert_contains(out, want);
	}
	/* no round had run: only the give's and the move's own backups */
	assert_contains(mh_slurp(h[0].err), "psmem: host 0 node 0: promoted 40 keys of lost host 2 (its backup round 0");
	mh_assert_clean(&segs);
}

static void repl_job(int nodes, const char *tag)
{
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct mh_proc h[3];
	run_job(h, BACKUP_RATE, nodes, tag, "repl", "host 2 stops", 0.5);
	assert_contains(mh_slurp(h[2].out), "repl: host 2 stops after round 12 with 20 keys replicated");
	char want[2][2][160];
	bool bad = h[0].status || h[1].status;
	for (int r = 0; r < 2; r++)
		for (int n = 0; n < nodes; n++) {
			snprintf(want[r][n], sizeof want[r][n],
				 "repl: host %d node %d: syncs %s %s, barriers %s %s; pull %s; 0 wrong of %d; 20 of 20", r, n,
				 ps_strerror(0), ps_strerror(0), ps_strerror(0), ps_strerror(0), ps_strerror(0), KEYS);
			bad = bad || !strstr(mh_slurp(h[r].out), want[r][n]);
		}
	if (bad)
		for (int r = 0; r < 3; r++)
			mh_show(&h[r], r == 2 ? "host 2" : r ? "host 1" : "host 0");
	for (int r = 0; r < 2; r++) {
		assert_int_equal(h[r].status, 0);
		for (int n = 0; n < nodes; n++)
			assert_contains(mh_slurp(h[r].out), want[r][n]);
	}
	mh_assert_clean(&segs);
}

static void test_a_replicated_table_keeps_every_update_of_a_lost_host(void **state)
{
	(void)state;
	repl_job(1, "rp");
}

/* per-node deltas, and the primary at either node of host 2 */
static void test_a_replicated_table_with_two_nodes_per_host_keeps_every_update(void **state)
{
	(void)state;
	repl_job(2, "rp2");
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "state") == 0)
		return state_main();
	if (argc >= 3 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "statemove") == 0)
		return statemove_main();
	if (argc >= 3 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "repl") == 0)
		return repl_main();
	if (!self_exe(mh_self, sizeof mh_self))
		return 1;
	/* one test at a time while working (cmocka's * and ? patterns) */
	const char *filter = getenv("PSMEM_TEST_FILTER");
	if (filter && *filter)
		cmocka_set_test_filter(filter);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rule_state_survives_the_loss_of_its_host),
		cmocka_unit_test(test_rule_state_of_moved_keys_survives_without_a_round),
		cmocka_unit_test(test_a_replicated_table_keeps_every_update_of_a_lost_host),
		cmocka_unit_test(test_a_replicated_table_with_two_nodes_per_host_keeps_every_update),
	};
	return cmocka_run_group_tests(tests, mh_setup, mh_teardown);
}
