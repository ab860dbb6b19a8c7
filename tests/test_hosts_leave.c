/*
 * test_hosts_leave.c - a host that leaves the job hands everything over
 * (net/drain.c DR1-DR6, bridge.c BR-L2), and a side that lost its quorum
 * stops (bridge.c BR-Q).
 *
 * Leave: three hosts (NODES nodes each) on loopback storm with no
 * barriers: every host pushes +1 to every one of the KEYS keys (one
 * batch), then +1 to its own counter (table c, key = host id; keys 0-2 of
 * c live on host 0 and 1: host 1's count is at host 0).  Before the storm
 * host 1 takes keys 0-9 (homed at host 0), host 2 takes 150-159 and host 0
 * takes 160-169 (both homed at host 1): host 1 holds keys it is not the
 * home of, and its directory names both the host that takes over (host 2
 * = b(1)) and another.  After LEAVE_AT rounds host 1 drains (the test
 * hook ps__test_leave, then ps_finalize) while hosts 0 and 2 keep pushing;
 * they notice the leave (ps_hosts_alive), push AFTER more rounds, meet in
 * a barrier and check:
 *  - every key equals n0 + n1 + n2 exactly (the counters: each host's
 *    completed rounds): nothing lost or applied twice, including host 1's
 *    home range (0 + 100..199) and the keys it held after moves (0-9);
 *  - no word names host 1 any more (ps_owner_host), ps_hosts_alive is 2
 *    with host 1 absent;
 *  - host 2 serves as the home of host 1's range: after the leave host 0
 *    moves 120-124 (held at host 2 since the drain) to itself and host 2
 *    moves 165-169 (held at host 0; the directory entry came from host 1),
 *    before the pulls above (the sums stay exact);
 *  - every psrun exits 0, host 1's after "leaving the job", the others
 *    log "host 1 (...) left the job"; nothing (segment, process, port) is
 *    left.  Under the default --on-host-failure abort, and under continue
 *    (backups on: nothing is promoted from them), with 2 nodes per host,
 *    and with host 0 (the rendezvous' coordinator) as the one that leaves
 *    (b(0) = host 1).
 * Backups: see backup_main; keys taken over backed up at once: see
 * takekill_main.
 *
 * Quorum: three hosts under continue storm; the driver SIGSTOPs host 2's
 * psrun; hosts 0 and 1 drop it after the silence bound and finish (exit
 * 0); then the driver SIGCONTs it: it finds both peers gone at once, is
 * the minority (1 of 3) and must stop with "lost quorum" and a non-zero
 * exit instead of promoting the others' keys and finishing alone.
 *
 * The binary's second role (--node leave|quorum) is the program psrun runs.
 */
#include <arpa/inet.h>
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
#include <unistd.h>

#include <cmocka.h>

#include "frame.h"
#include "hosts.h"
#include "psmem.h"

#define KEYS     300
#define LEAVE_AT 150 /* host 1's rounds before it leaves */
#define AFTER    150 /* rounds the others push after they saw the leave */

/* test builds only (libpsmem_test.a, drain.c): this node's ps_finalize
 * drains its host instead of the final barrier */
int ps__test_leave(ps_world *w);

/* ------------------------------------------------------------ the node */

/* A node's start: its world, the KEYS-key table (*t), all = its keys and
 * one = +1 for each.  NULL world when something fails. */
static ps_world *node_start(ps_table **t, ps_key all[KEYS], float one[KEYS])
{
	int err;
	for (int i = 0; i < KEYS; i++)
		all[i] = (ps_key)i, one[i] = 1.0f;
	ps_world *w = ps_init(&err);
	if (!w)
		return NULL;
	ps_table_opts o;
	ps_table_opts_init(&o, KEYS, 1);
	*t = ps_table_create(w, &o, &err);
	return *t ? w : NULL;
}

static int leave_main(int leaver)
{
	int err, rc;
	ps_key all[KEYS];
	float one[KEYS];
	ps_table *t, *c = NULL;
	ps_world *w = node_start(&t, all, one);
	ps_table_opts o;
	ps_table_opts_init(&o, 4, 1);
	if (!w || !(c = ps_table_create(w, &o, &err)))
		return 1;
	const int me = ps_host_id(w), node = ps_node_id(w);
	ps_key mine = (ps_key)me, took[10];
	/* keys held away from their home (node 0 of each host takes them) */
	const ps_key first[3] = {160, 0, 150};
	for (int i = 0; i < 10; i++)
		took[i] = first[me] + (ps_key)i;
	if (node == 0 && (rc = ps_localize_sync(t, took, 10)) != 0) {
		printf("leave: host %d: localize: %s\n", me, ps_strerror(rc));
		return 1;
	}
	if ((rc = ps_barrier(w)) != 0)
		return 1;
	int held = 0;
	for (int i = 0; i < 10; i++)
		held += ps_owner_host(t, took[i]) == me;
	if (held != 10) {
		printf("leave: host %d: only %d of 10 keys moved here\n", me, held);
		return 1;
	}
	long n = 0, after = -1;
	for (;;) {
		if ((rc = ps_push_sync(t, all, KEYS, one)) != 0 || (rc = ps_push_sync(c, &mine, 1, one)) != 0) {
			printf("leave: host %d node %d round %ld: %s\n", me, node, n + 1, ps_strerror(rc));
			return 1;
		}
		n++;
		if (me == leaver && n == LEAVE_AT) {
			printf("leave: host %d node %d leaves after %ld rounds\n", me, node, n);
			fflush(stdout);
			if ((rc = ps__test_leave(w)) != 0 || (rc = ps_finalize(w)) != 0) {
				printf("leave: host %d node %d: drain: %s\n", me, node, ps_strerror(rc));
				return 1;
			}
			printf("leave: host %d node %d: drained\n", me, node);
			return 0;
		}
		if (after >= 0 && ++after == AFTER)
			break;
		if (after < 0 && ps_hosts_alive(w, NULL, 0) == 2)
			after = 0;
	}
	if ((rc = ps_barrier(w)) != 0) {
		printf("leave: host %d: barrier: %s\n", me, ps_strerror(rc));
		return 1;
	}
	/* b(leaver) is the home of the leaver's range now: keys of it move
	 * (leaver 1: host 0 takes 120-124 from host 2, host 2 takes 165-169
	 * from host 0, whose directory entries host 2 got from host 1) */
	int moved = 5;
	if (node == 0) {
		ps_key mk[5];
		const int first_survivor = leaver == 0 ? 1 : 0;
		for (int i = 0; i < 5; i++)
			mk[i] = (ps_key)(100 * leaver + (me == first_survivor ? 20 : 65) + i);
		if ((rc = ps_localize_sync(t, mk, 5)) != 0)
			printf("leave: host %d: localize of host %d's range after the leave: %s\n", me, leaver,
			       ps_strerror(rc));
		moved = 0;
		for (int i = 0; i < 5; i++)
			moved += ps_owner_host(t, mk[i]) == me;
	}
	if ((rc = ps_barrier(w)) != 0) {
		printf("leave: host %d: barrier: %s\n", me, ps_strerror(rc));
		return 1;
	}
	ps_key ck[3] = {0, 1, 2};
	float cnt[3], v[KEYS];
	if ((rc = ps_pull_sync(c, ck, 3, cnt)) != 0 || (rc = ps_pull_sync(t, all, KEYS, v)) != 0) {
		printf("leave: host %d: final pulls: %s\n", me, ps_strerror(rc));
		return 1;
	}
	/* every node of a host pushes: n_h counts them all */
	long want = (long)cnt[0] + (long)cnt[1] + (long)cnt[2];
	int wrong = 0, named = 0;
	for (int i = 0; i < KEYS; i++) {
		if ((long)v[i] != want && wrong++ < 5)
			printf("leave: host %d: key %d = %.0f, want %ld (n0 %.0f n1 %.0f n2 %.0f)\n", me, i, (double)v[i],
			       want, (double)cnt[0], (double)cnt[1], (double)cnt[2]);
		named += ps_owner_host(t, all[i]) == leaver;
	}
	uint8_t alive[4] = {9, 9, 9, 9};
	int na = ps_hosts_alive(w, alive, 4);
	printf("leave: host %d node %d: rounds n0 %.0f n1 %.0f n2 %.0f; alive %d [%d %d %d]; %d wrong of %d; %d words "
	       "name host %d; %d of 5 moved here after the leave\n",
	       me, node, (double)cnt[0], (double)cnt[1], (double)cnt[2], na, alive[0], alive[1], alive[2], wrong, KEYS,
	       named, leaver, moved);
	fflush(stdout);
	const long nodes = ps_num_nodes(w);
	if ((rc = ps_finalize(w)) != 0)
		return 1;
	return wrong || named || na != 2 || moved != 5 || (long)cnt[leaver] != LEAVE_AT * nodes ? 1 : 0;
}

#define BK_ROUNDS 10

/*
 * Backups follow a leave (BK2 after DR5): four hosts push +1 to every key
 * and barrier, BK_ROUNDS times; host 1 leaves; host 0, whose backup host
 * was host 1, now backs up to host 2: a full round at once
 * (ps__bk_round_now, on the ABORT that precedes the barrier's RELEASE).
 * After the barrier host 0 pulls a key of host 2's over the same data
 * connection, so the round reached host 2 before the pull's answer came;
 * then it stops and the driver kills it.  Hosts 2 and 3 must find every
 * key exact: host 0's promoted at host 2 from that round (its periodic
 * rounds, every 5 s, would come too late).
 */
static int backup_main(void)
{
	int rc;
	ps_key all[KEYS];
	float one[KEYS];
	ps_table *t;
	ps_world *w = node_start(&t, all, one);
	if (!w)
		return 1;
	const int me = ps_host_id(w);
	for (int r = 0; r < BK_ROUNDS; r++)
		if ((rc = ps_push_sync(t, all, KEYS, one)) != 0 || (rc = ps_barrier(w)) != 0) {
			printf("backup: host %d round %d: %s\n", me, r + 1, ps_strerror(rc));
			return 1;
		}
	if (me == 1)
		return ps__test_leave(w) || ps_finalize(w) ? 1 : 0;
	if ((rc = ps_barrier(w)) != 0) /* released once host 1 left */
		return 1;
	int after_leave = ps_hosts_alive(w, NULL, 0);
	if (me == 0) {
		float v;
		/* host 2's first key (home floor(4k / KEYS)): asked over the data
		 * connection the round went on, so answered after it arrived */
		ps_key k = KEYS / 2;
		rc = ps_pull_sync(t, &k, 1, &v);
		printf("backup: host 0 stops (%d hosts present, pull of key %llu: %s, %.0f)\n", after_leave,
		       (unsigned long long)k, ps_strerror(rc), (double)v);
		fflush(stdout);
		for (;;)
			pause(); /* killed by the driver */
	}
	if ((rc = ps_barrier(w)) != 0) { /* released once host 0 is lost */
		printf("backup: host %d: barrier: %s\n", me, ps_strerror(rc));
		return 1;
	}
	float v[KEYS];
	rc = ps_pull_sync(t, all, KEYS, v);
	int wrong = 0;
	for (int i = 0; rc == 0 && i < KEYS; i++)
		if (v[i] != 4.0f * BK_ROUNDS && wrong++ < 5)
			printf("backup: host %d: key %d = %.0f, want %d\n", me, i, (double)v[i], 4 * BK_ROUNDS);
	printf("backup: host %d: %d hosts after the leave, %d after the loss; pull: %s; %d wrong of %d\n", me,
	       after_leave, ps_hosts_alive(w, NULL, 0), ps_strerror(rc), wrong, KEYS);
	fflush(stdout);
	return ps_finalize(w) || rc || wrong ? 1 : 0;
}

/* Storm until a host is gone, AFTER more rounds, barrier. */
static int quorum_main(void)
{
	int rc;
	ps_key all[KEYS];
	float one[KEYS];
	ps_table *t;
	ps_world *w = node_start(&t, all, one);
	if (!w)
		return 1;
	const int me = ps_host_id(w);
	long n = 0, after = -1;
	while (after < AFTER) {
		if ((rc = ps_push_sync(t, all, KEYS, one)) != 0) {
			printf("quorum: host %d round %ld: %s\n", me, n + 1, ps_strerror(rc));
			return 1;
		}
		if (++n == 100) {
			printf("quorum: host %d running\n", me);
			fflush(stdout);
		}
		if (after >= 0)
			after++;
		else if (ps_hosts_alive(w, NULL, 0) < 3)
			after = 0;
	}
	if ((rc = ps_barrier(w)) != 0) {
		printf("quorum: host %d: barrier: %s\n", me, ps_strerror(rc));
		return 1;
	}
	printf("quorum: host %d: finished with %d hosts\n", me, ps_hosts_alive(w, NULL, 0));
	fflush(stdout);
	return ps_finalize(w) ? 1 : 0;
}

/*
 * Keys y takes over from a leaving host are backed up at once (BK5, as a
 * move's): three hosts under continue with no backup round (SLOW_RATE:
 * the first 20 s after start).  Host 1 takes keys 0-9 (homed at host 0),
 * every host pushes +1 to them once, then host 1 drains with the test
 * hook PSMEM_DEBUG_DRAIN_STOP=1: it stops after the TAKE step (keys 0-9
 * installed at y = b(1) = host 2, no LEFT yet, so no full round either).
 * The driver SIGKILLs host 2: only the backup that host 2 sent when it
 * took them can bring them back at b(2) = host 0, which must hold all 10
 * with the exact sum 3.  Then the driver kills host 1.
 */
#define SLOW_RATE "0.05"

static int takekill_main(void)
{
	int rc;
	ps_key all[KEYS];
	float one[KEYS];
	ps_table *t;
	ps_world *w = node_start(&t, all, one);
	if (!w)
		return 1;
	const int me = ps_host_id(w);
	if (me == 1 && (rc = ps_localize_sync(t, all, 10)) != 0) {
		printf("takekill: host 1: localize: %s\n", ps_strerror(rc));
		return 1;
	}
	if ((rc = ps_barrier(w)) != 0 || (rc = ps_push_sync(t, all, 10, one)) != 0 || (rc = ps_barrier(w)) != 0) {
		printf("takekill: host %d: before the drain: %s\n", me, ps_strerror(rc));
		return 1;
	}
	if (me == 1) {
		printf("takekill: host 1 leaves\n");
		fflush(stdout);
		rc = ps__test_leave(w);
		rc = rc ? rc : ps_finalize(w); /* the hook stops it after the TAKE */
		printf("takekill: host 1: drain returned: %s\n", ps_strerror(rc));
		return 1;
	}
	if (me == 2) {
		printf("takekill: host 2 ready\n");
		fflush(stdout);
		for (;;)
			pause(); /* killed by the driver */
	}
	uint8_t alive[3] = {1, 1, 1};
	for (int i = 0; i < 6000 && alive[2]; i++) { /* host 2's loss, polled */
		ps_hosts_alive(w, alive, 3);
		if (alive[2])
			usleep(10 * 1000);
	}
	float v[10];
	rc = ps_pull_sync(t, all, 10, v);
	int exact = 0, at0 = 0;
	for (int i = 0; i < 10; i++) {
		exact += rc == 0 && v[i] == 3.0f;
		at0 += ps_owner_host(t, all[i]) == 0;
	}
	printf("takekill: host 0: host 2 %s; pull: %s; %d exact of 10 (key 0 = %g); %d held at host 0\n",
	       alive[2] ? "still present" : "lost", ps_strerror(rc), exact, rc == 0 ? (double)v[0] : -1.0, at0);
	fflush(stdout);
	for (;;)
		pause(); /* killed by the driver: host 1 never says LEFT */
}

/* ------------------------------------------------------------ driver */


/* Starts 3 psruns of nodes nodes running role, psrun flags extra first. */
static unsigned start3(struct mh_proc h[3], int nodes, const char *tag, const char *role, const char *const extra[])
{
	unsigned port = mh_free_port();
	const char *prog[16];
	int k = 0;
	for (; extra && extra[k]; k++)
		prog[k] = extra[k];
	prog[k++] = mh_self;
	prog[k++] = "--node";
	prog[k++] = role;
	prog[k] = NULL;
	static char store[3][96];
	for (int r = 0; r < 3; r++) {
		const char *argv[64];
		mh_psrun_argv(argv, store[r], nodes, 3, r, port, prog);
		char name[32];
		snprintf(name, sizeof name, "%s%d", tag, r);
		mh_spawn(&h[r], name, (char *const *)argv, NULL);
	}
	return port;
}

/* The leave job: host leaver drains mid-storm, y = b(leaver) takes over. */
static void leave_job(int nodes, const char *tag, const char *const extra[], int leaver)
{
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct mh_proc h[3];
	const int y = (leaver + 1) % 3;
	char role[16], want[128];
	snprintf(role, sizeof role, "leave%d", leaver);
	unsigned port = start3(h, nodes, tag, role, extra);
	for (int r = 0; r < 3; r++)
		mh_finish(&h[r], 90);
	for (int r = 0; r < 3; r++)
		if (h[r].status != 0)
			mh_show(&h[r], r == 0 ? "host 0" : r == 1 ? "host 1" : "host 2");
	for (int r = 0; r < 3; r++)
		assert_int_equal(h[r].status, 0);
	snprintf(want, sizeof want, "leave: host %d node 0: drained", leaver);
	assert_contains(mh_slurp(h[leaver].out), want);
	snprintf(want, sizeof want, "psmem: host %d node 0: drained to host %d in ", leaver, y);
	assert_contains(mh_slurp(h[leaver].err), want);
	snprintf(want, sizeof want, "psrun: host %d: leaving the job: every node handed its keys over; LEFT sent to "
		 "the 2 hosts present", leaver);
	assert_contains(mh_slurp(h[leaver].err), want);
	for (int r = 0; r < 3; r++) {
		if (r == leaver)
			continue;
		const char *out = mh_slurp(h[r].out), *err = mh_slurp(h[r].err);
		snprintf(want, sizeof want, "; alive 2 [%d %d %d]; 0 wrong of %d; 0 words name host %d; 5 of 5 moved",
			 leaver != 0, leaver != 1, leaver != 2, KEYS, leaver);
		assert_contains(out, want);
		snprintf(want, sizeof want, "host %d (127.0.0.1:", leaver);
		assert_contains(err, want);
		assert_contains(err, ") left the job (its keys handed over); the job goes on with 2 of 3 hosts");
		snprintf(want, sizeof want, "psmem: host %d: host %d left: its keys are at host %d; ", r, leaver, y);
		assert_contains(err, want);
		assert_true(strstr(err, "promoted") == NULL); /* a leave promotes no backup (DR5) */
		/* the leaver's nodes close their data connections only after
		 * ours half-closed them on the LEFT (DR2): never seen as an end */
		snprintf(want, sizeof want, "data connection to host %d ended", leaver);
		assert_true(strstr(err, want) == NULL);
		const char *l = strstr(out, "leave: host ");
		printf("%.*s\n", (int)strcspn(l, "\n"), l);
	}
	snprintf(want, sizeof want, "drained to host %d in ", y);
	const char *d = strstr(mh_slurp(h[leaver].err), want);
	printf("host %d: %.*s\n", leaver, (int)strcspn(d, "\n"), d);
	assert_true(mh_port_free(port));
	mh_assert_clean(&segs);
}

static void test_a_leaving_host_hands_over_every_key_exactly(void **state)
{
	(void)state;
	leave_job(1, "leave", NULL, 1); /* --on-host-failure abort, the default */
}

static void test_host_0_can_leave_too(void **state)
{
	(void)state;
	leave_job(1, "leave0", NULL, 0); /* the coordinator of the rendezvous */
}

static void test_a_leaving_host_promotes_no_backup_under_continue(void **state)
{
	(void)state;
	const char *const extra[] = {"--on-host-failure", "continue", "--backup-rate", "50", NULL};
	leave_job(1, "leavec", extra, 1);
}

static void test_every_node_of_a_leaving_host_drains(void **state)
{
	(void)state;
	leave_job(2, "leave2", NULL, 1);
}

static void test_a_host_cut_off_from_the_majority_stops(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct mh_proc h[3];
	const char *const extra[] = {"--on-host-failure", "continue", "--backup-rate", "50", NULL};
	unsigned port = start3(h, 1, "quorum", "quorum", extra);
	/* waits for a condition (host 2 storming), not a time */
	for (int i = 0; i < 1200 && !strstr(mh_slurp(h[2].out), "quorum: host 2 running"); i++)
		usleep(50 * 1000);
	if (!strstr(mh_slurp(h[2].out), "quorum: host 2 running")) {
		for (int r = 0; r < 3; r++) {
			mh_finish(&h[r], 0);
			mh_show(&h[r], "host");
		}
		fail_msg("host 2 did not start storming within 60 s");
	}
	kill(h[2].pid, SIGSTOP); /* its psrun: silent, a 1-vs-2 cut */
	mh_finish(&h[0], 60);
	mh_finish(&h[1], 60);
	kill(h[2].pid, SIGCONT); /* it wakes alone: both peers gone */
	mh_finish(&h[2], 30);
	for (int r = 0; r < 2; r++) {
		const char *err = mh_slurp(h[r].err);
		if (h[r].status != 0)
			mh_show(&h[r], r ? "host 1" : "host 0");
		assert_int_equal(h[r].status, 0);
		assert_contains(mh_slurp(h[r].out), "finished with 2 hosts");
		assert_contains(err, "dropped, the job goes on with 2 of 3 hosts");
		assert_true(strstr(err, "lost quorum") == NULL);
	}
	const char *err2 = mh_slurp(h[2].err);
	if (h[2].status == 0 || !strstr(err2, "lost quorum"))
		mh_show(&h[2], "host 2");
	assert_int_not_equal(h[2].status, 0);
	assert_int_not_equal(h[2].status, -1); /* it stopped by itself */
	assert_contains(err2, "psrun: host 2: lost quorum: host ");
	assert_contains(err2, "this side reaches 1 of the 3 hosts present before");
	assert_true(strstr(mh_slurp(h[2].out), "finished with") == NULL);
	/* it stopped at the first loss: nothing of the majority's promoted */
	assert_true(strstr(err2, "dropped, the job goes on") == NULL);
	assert_true(strstr(err2, "promoted") == NULL);
	const char *l = strstr(err2, "lost quorum");
	printf("host 2: %.*s\n", (int)strcspn(l, "\n"), l);
	assert_true(mh_port_free(port));
	mh_assert_clean(&segs);
}

/* The hand-over's MOVE bodies (TAKE, TAKEDIR: keys then nf u32 each) are
 * checked to the byte, and TAKEDIR carries exactly one u32 per key. */
static void test_take_bodies_carry_values_and_are_checked(void **state)
{
	(void)state;
	uint8_t b[PS__MOVE_HDR + 2 * 8 + 2 * 3 * 4 + 4];
	struct ps__move_req q = {.table = 1, .op = PS__MV_TAKE, .nf = 3, .arg = 1, .num_keys = 100, .n = 2}, m;
	ps__move_enc_hdr(b, &q);
	uint32_t len = (uint32_t)ps__move_size(2) + 2 * 3 * 4;
	assert_int_equal(ps__move_dec(b, len, &m), 0);
	assert_ptr_equal(m.keys, b + PS__MOVE_HDR);
	assert_ptr_equal(m.vals, b + PS__MOVE_HDR + 16);
	assert_int_equal(ps__move_dec(b, len - 1, &m), PS_EFRAME_BODY);
	assert_int_equal(ps__move_dec(b, len + 4, &m), PS_EFRAME_BODY);
	assert_int_equal(ps__move_dec(b, (uint32_t)ps__move_size(2), &m), PS_EFRAME_BODY); /* no values */
	q.op = PS__MV_TAKEDIR; /* nf must be 1 */
	ps__move_enc_hdr(b, &q);
	assert_int_equal(ps__move_dec(b, len, &m), PS_EFRAME_BODY);
	q.nf = 1;
	ps__move_enc_hdr(b, &q);
	assert_int_equal(ps__move_dec(b, (uint32_t)ps__move_size(2) + 8, &m), 0);
	q.op = PS__MV_LOCK; /* the old ops carry no values */
	ps__move_enc_hdr(b, &q);
	assert_int_equal(ps__move_dec(b, (uint32_t)ps__move_size(2), &m), 0);
	assert_null(m.vals);
	q.op = PS__MV_PROMOTE + 1; /* one past the last op */
	ps__move_enc_hdr(b, &q);
	assert_int_equal(ps__move_dec(b, (uint32_t)ps__move_size(2), &m), PS_EFRAME_BODY);
	assert_true(ps__frame_type_known(PS__F_LEFT));
}

static void test_backups_re_form_at_once_after_a_leave(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	unsigned port = mh_free_port();
	const char *prog[] = {"--on-host-failure", "continue", "--backup-rate", "0.2", mh_self, "--node", "backup",
			      NULL};
	static char store[4][96];
	struct mh_proc h[4];
	for (int r = 0; r < 4; r++) {
		const char *argv[64];
		mh_psrun_argv(argv, store[r], 1, 4, r, port, prog);
		char name[32];
		snprintf(name, sizeof name, "bk%d", r);
		mh_spawn(&h[r], name, (char *const *)argv, NULL);
	}
	/* waits for a condition (host 0 done, its round at host 2), not a time */
	for (int i = 0; i < 1200 && !strstr(mh_slurp(h[0].out), "backup: host 0 stops"); i++)
		usleep(50 * 1000);
	const char *out0 = mh_slurp(h[0].out);
	if (!strstr(out0, "backup: host 0 stops (3 hosts present, pull of key 150: ")) {
		for (int r = 0; r < 4; r++) {
			mh_finish(&h[r], 0);
			mh_show(&h[r], "host");
		}
		fail_msg("host 0 did not stop after the leave: %s", out0);
	}
	kill(h[0].pid, SIGKILL);
	mh_finish(&h[0], 10);
	for (int r = 1; r < 4; r++)
		mh_finish(&h[r], 60);
	for (int r = 1; r < 4; r++)
		if (h[r].status != 0)
			mh_show(&h[r], r == 1 ? "host 1" : r == 2 ? "host 2" : "host 3");
	for (int r = 1; r < 4; r++)
		assert_int_equal(h[r].status, 0);
	for (int r = 2; r < 4; r++) {
		char want[128];
		snprintf(want, sizeof want, "backup: host %d: 3 hosts after the leave, 2 after the loss; pull: %s; 0 wrong of %d",
			 r, ps_strerror(0), KEYS);
		assert_contains(mh_slurp(h[r].out), want);
	}
	assert_contains(mh_slurp(h[2].err), "psmem: host 2 node 0: promoted 75 keys of lost host 0");
	printf("%s", strstr(mh_slurp(h[2].out), "backup: host 2"));
	assert_true(mh_port_free(port));
	mh_assert_clean(&segs);
}

static void wait_out(struct mh_proc *h, int n, int who, const char *text)
{
	for (int i = 0; i < 1200 && !strstr(mh_slurp(h[who].out), text); i++)
		usleep(50 * 1000); /* polls the node's output, not a timing */
	if (!strstr(mh_slurp(h[who].out), text)) {
		for (int r = 0; r < n; r++) {
			mh_finish(&h[r], 0);
			mh_show(&h[r], "host");
		}
		fail_msg("\"%s\" not printed within 60 s", text);
	}
}

static void test_keys_taken_over_are_backed_up_at_once(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct mh_proc h[3];
	const char *const extra[] = {"--on-host-failure", "continue", "--backup-rate", SLOW_RATE, NULL};
	setenv("PSMEM_DEBUG_DRAIN_STOP", "1", 1);
	unsigned port = start3(h, 1, "takekill", "takekill", extra);
	unsetenv("PSMEM_DEBUG_DRAIN_STOP");
	wait_out(h, 3, 1, "psmem: test hook: host 1 stops after its drain's take step");
	wait_out(h, 3, 2, "takekill: host 2 ready");
	kill(h[2].pid, SIGKILL);
	wait_out(h, 3, 0, "takekill: host 0: ");
	kill(h[1].pid, SIGKILL);
	kill(h[0].pid, SIGKILL);
	for (int r = 0; r < 3; r++)
		mh_finish(&h[r], 30);
	char *o0 = strdup(mh_slurp(h[0].out)); /* mh_show below reuses mh_slurp's buffer */
	assert_non_null(o0);
	char want[160];
	snprintf(want, sizeof want, "takekill: host 0: host 2 lost; pull: %s; 10 exact of 10 (key 0 = 3); 10 held at host 0",
		 ps_strerror(0));
	if (!strstr(o0, want))
		for (int r = 0; r < 3; r++)
			mh_show(&h[r], "host");
	assert_contains(o0, want);
	const char *l = strstr(o0, "takekill: host 0: ");
	printf("%.*s\n", (int)strcspn(l, "\n"), l);
	free(o0);
	assert_true(mh_port_free(port));
	mh_assert_clean(&segs);
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "--node") == 0 && strncmp(argv[2], "leave", 5) == 0)
		return leave_main(atoi(argv[2] + 5));
	if (argc >= 3 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "takekill") == 0)
		return takekill_main();
	if (argc >= 3 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "quorum") == 0)
		return quorum_main();
	if (argc >= 3 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "backup") == 0)
		return backup_main();
	if (!self_exe(mh_self, sizeof mh_self))
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_take_bodies_carry_values_and_are_checked),
		cmocka_unit_test(test_a_leaving_host_hands_over_every_key_exactly),
		cmocka_unit_test(test_host_0_can_leave_too),
		cmocka_unit_test(test_a_leaving_host_promotes_no_backup_under_continue),
		cmocka_unit_test(test_every_node_of_a_leaving_host_drains),
		cmocka_unit_test(test_backups_re_form_at_once_after_a_leave),
		cmocka_unit_test(test_a_host_cut_off_from_the_majority_stops),
		cmocka_unit_test(test_keys_taken_over_are_backed_up_at_once),
	};
	const char *filter = getenv("PSMEM_TEST_FILTER");
	if (filter)
		cmocka_set_test_filter(filter);
	return cmocka_run_group_tests(tests, mh_setup, mh_teardown);
}
