/*
 * test_hosts_elastic.c - elastic jobs: hosts joining (psrun --join) and
 * leaving (psrun --drain + SIGTERM, psstat --leave) at ps_sync_hosts
 * (docs/DESIGN.md "Joining and leaving", bridge.c EL1-EL8).
 *
 *  (a) a conservation storm, 2 nodes a host (so data connections reach
 *      several running nodes): hosts 0 and 1 (psrun --elastic) push +1 to
 *      every key in epochs, each ended by ps_sync_hosts; once host 0 has
 *      printed epoch 3 the driver starts a third psrun with --join.  The
 *      members go on until ps_sync_hosts says 3 hosts (the joiner is
 *      admitted whenever it is ready: no timing), then K_AFTER epochs more;
 *      the joiner starts at the epoch its first ps_sync_hosts returns and
 *      ends with them.  Every key must equal the exact sum of every host's
 *      pushes (each host's count goes to a counter table at the end); the
 *      joiner must hold its share (every 3rd key: 100 of 300, taken by
 *      relocation while the others push) and have pushed; ps_joined is 1
 *      there only; every psrun exits 0;
 *  (b) a joiner with another -n, another program, or a wrong token is
 *      refused with the rendezvous' words; the job finishes normally;
 *  (c) a host leaving: SIGTERM to host 2's psrun started with --drain, or
 *      psstat --leave 2 on host 0: host 2's ps_sync_hosts returns 0, the
 *      others' returns 2 at the same epoch, every psrun exits 0 (the
 *      leaver's drain returned 0), and after 3 epochs more every key
 *      (host 2's range too) equals the sum of every host's pushes exactly;
 *  (e) the storm while host 3 joins and host 1 (a home host) leaves, at
 *      one ps_sync_hosts (gated: both requests are in before it), the
 *      leave first or the join first; every key (host 1's range, keys it
 *      held after moves, the joiner's share) equals the sum of every push,
 *      no word names host 1, the leaver's psrun exits 0 (its drain
 *      returned 0), the others finish;
 *  (f) hosts 1 and 2 both asked to leave before one (gated) ps_sync_hosts:
 *      host 1 leaves there, host 2 at a later one (one leaver a SYNC, and
 *      only once the one before said LEFT: EL7), both drains return 0,
 *      every key exact afterwards; and with host 1 held in its drain (a
 *      test-build hook), host 2 stays 20 syncs, then leaves;
 *  (d) each: no segment, process or port left; a joiner lost after its
 *      admission (continue: its keys promoted), two joiners at once, a
 *      joiner still pending when the job ends (it stops, the job is fine);
 *  and without --elastic ps_sync_hosts is a barrier over hosts (2 nodes a
 *  host) returning 2, PS_EMISMATCH when the epochs differ.
 *
 * The binary's second role (--node ROLE) is the program psrun runs.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "hosts.h"
#include "psmem.h"

#define KEYS      300
#define ROUNDS    10      /* pushes of every key per epoch */
#define K_AFTER   6       /* epochs after the join */
#define MAX_EPOCH 100000  /* a joiner never admitted: fail, not hang */

/* ------------------------------------------------------------ nodes */

static int fail_node(const char *what, int me, int rc)
{
	printf("elastic: host %d: %s: %s\n", me, what, ps_strerror(rc));
	fflush(stdout);
	return 1;
}

/* Tables every host creates the same way (a joiner alone: every key REMOTE
 * to its home). */
static int tables(ps_world *w, ps_table **t, ps_table **cnt)
{
	int err;
	ps_table_opts o;
	ps_table_opts_init(&o, KEYS, 1);
	*t = ps_table_create(w, &o, &err);
	if (!*t)
		return err;
	ps_table_opts_init(&o, 64, 1);
	*cnt = ps_table_create(w, &o, &err);
	return *cnt ? 0 : err;
}

/* (a): the storm, until want hosts are present (then K_AFTER epochs). */
static int storm_main(int want_hosts)
{
	int err, rc;
	ps_world *w = ps_init(&err);
	if (!w)
		return 1;
	int me = ps_host_id(w), joined = ps_joined(w);
	ps_table *t, *cnt;
	if ((rc = tables(w, &t, &cnt)) != 0)
		return fail_node("tables", me, rc);
	ps_key keys[KEYS];
	float one[KEYS];
	for (int i = 0; i < KEYS; i++)
		keys[i] = (ps_key)i, one[i] = 1.0f;
	uint64_t epoch = 0, end = MAX_EPOCH;
	double pushes = 0;
	if (joined) {
		/* the members' epoch: this host starts there */
		int n = ps_sync_hosts(w, &epoch);
		if (n < 3 || n > want_hosts) {
			printf("elastic: host %d: first ps_sync_hosts returned %d\n", me, n);
			return fail_node("first ps_sync_hosts", me, n < 0 ? n : PS_EMISMATCH);
		}
		if (n == want_hosts)
			end = epoch + K_AFTER;
		int held = 0;
		for (int i = 0; i < KEYS; i++)
			held += ps_owner_host(t, keys[i]) == me;
		printf("elastic: host %d joined at epoch %llu holding %d keys\n", me, (unsigned long long)epoch, held);
		fflush(stdout);
	}
	for (; epoch < end; ) {
		for (int r = 0; r < ROUNDS; r++) {
			if ((rc = ps_push_sync(t, keys, KEYS, one)) != 0)
				return fail_node("push", me, rc);
			pushes++;
			/* a barrier mid-epoch: it admits nobody (EL3) */
			if (r == ROUNDS / 2 && (rc = ps_barrier(w)) != 0)
				return fail_node("barrier mid-epoch", me, rc);
		}
		/* BSP over the hosts present: a joiner's clock starts at the
		 * members' (EL4), or this would wait for ever */
		if ((rc = ps_clock(w)) != 0)
			return fail_node("ps_clock", me, rc);
		epoch++;
		if (me == 0 && epoch <= 4) {
			printf("elastic: host 0 epoch %llu\n", (unsigned long long)epoch);
			fflush(stdout);
		}
		uint64_t e = epoch;
		int n = ps_sync_hosts(w, &e);
		if (n < 0)
			return fail_node("ps_sync_hosts", me, n);
		if (e != epoch)
			return fail_node("epoch agreement", me, PS_EMISMATCH);
		if (n == want_hosts && end == MAX_EPOCH)
			end = epoch + K_AFTER; /* the same epoch on every member */
	}
	if (end == MAX_EPOCH)
		return fail_node("no joiner in time", me, -ETIMEDOUT);
	/* every host's count of pushes, then the sums */
	ps_key mine = (ps_key)me;
	float p = (float)pushes;
	if ((rc = ps_push_sync(cnt, &mine, 1, &p)) != 0)
		return fail_node("count push", me, rc);
	if ((rc = ps_barrier(w)) != 0)
		return fail_node("final barrier", me, rc);
	ps_key ck[4] = {0, 1, 2, 3};
	float c[4], v[KEYS];
	if ((rc = ps_pull_sync(cnt, ck, 4, c)) != 0 || (rc = ps_pull_sync(t, keys, KEYS, v)) != 0)
		return fail_node("final pull", me, rc);
	float want = c[0] + c[1] + c[2] + c[3];
	int wrong = 0, held = 0;
	for (int i = 0; i < KEYS; i++) {
		if (v[i] != want && wrong++ < 5)
			printf("elastic: host %d: key %d = %g, want %g\n", me, i, (double)v[i], (double)want);
		held += ps_owner_host(t, keys[i]) == me;
	}
	uint8_t alive[4] = {9, 9, 9, 9};
	int n = ps_hosts_alive(w, alive, 4);
	char counts[64];
	int at = 0;
	for (int h = 0; h < want_hosts; h++)
		at += snprintf(counts + at, sizeof counts - (size_t)at, "%s%.0f", h ? " " : "", (double)c[h]);
	printf("elastic: host %d: joined %d; alive %d [%d %d %d %d]; pushes %s; holds %d; %d wrong of %d; "
	       "clock %lld of %llu epochs\n", me, joined, n, alive[0], alive[1], alive[2], alive[3], counts, held,
	       wrong, KEYS, (long long)ps_clock_read(w, 0, 0), (unsigned long long)epoch);
	fflush(stdout);
	if ((rc = ps_finalize(w)) != 0)
		return fail_node("ps_finalize", me, rc);
	return wrong ? 1 : 0;
}

/* A joiner lost after its admission (--on-host-failure continue): it
 * pushes J_EPOCHS epochs, its count, syncs once more and stops; the
 * driver kills it 25 backup periods later.  The members' next
 * ps_sync_hosts completes over 2 hosts; the 100 keys it held are promoted
 * at its backup host (host 1: the initial hosts' ring) and every key
 * equals the sum of every push exactly (nothing pushed inside the window). */
#define J_EPOCHS 4
static int jlost_main(void)
{
	int err, rc;
	ps_world *w = ps_init(&err);
	if (!w)
		return 1;
	int me = ps_host_id(w), joined = ps_joined(w);
	ps_table *t, *cnt;
	if ((rc = tables(w, &t, &cnt)) != 0)
		return fail_node("tables", me, rc);
	ps_key keys[KEYS];
	float one[KEYS];
	for (int i = 0; i < KEYS; i++)
		keys[i] = (ps_key)i, one[i] = 1.0f;
	uint64_t epoch = 0, joined_at = 0;
	float pushes = 0;
	if (joined) {
		if (ps_sync_hosts(w, &epoch) != 3)
			return fail_node("first ps_sync_hosts", me, PS_EMISMATCH);
		joined_at = epoch;
	}
	for (;;) {
		if (joined && epoch == joined_at + J_EPOCHS) {
			ps_key mine = (ps_key)me;
			if ((rc = ps_push_sync(cnt, &mine, 1, &pushes)) != 0)
				return fail_node("count push", me, rc);
			uint64_t e = epoch + 1;
			if ((rc = ps_sync_hosts(w, &e)) != 3)
				return fail_node("last ps_sync_hosts", me, rc < 0 ? rc : PS_EMISMATCH);
			printf("elastic: joiner stops\n");
			fflush(stdout);
			for (;;)
				pause(); /* killed by the driver */
		}
		for (int r = 0; r < ROUNDS; r++) {
			if ((rc = ps_push_sync(t, keys, KEYS, one)) != 0)
				return fail_node("push", me, rc);
			pushes++;
		}
		epoch++;
		if (me == 0 && epoch <= 4) {
			printf("elastic: host 0 epoch %llu\n", (unsigned long long)epoch);
			fflush(stdout);
		}
		uint64_t e = epoch;
		int n = ps_sync_hosts(w, &e);
		if (n < 0)
			return fail_node("ps_sync_hosts", me, n);
		if (n == 3 && !joined_at)
			joined_at = epoch;
		if (!joined && joined_at && epoch == joined_at + J_EPOCHS) {
			/* the joiner's count and last sync (epoch + 1), then the
			 * sync that completes without it */
			e = epoch + 1;
			if ((rc = ps_sync_hosts(w, &e)) != 3)
				return fail_node("sync with the joiner's count", me, rc < 0 ? rc : PS_EMISMATCH);
			e = epoch + 2;
			if ((n = ps_sync_hosts(w, &e)) != 2)
				return fail_node("sync after the loss", me, n < 0 ? n : PS_EMISMATCH);
			break;
		}
		if (epoch > MAX_EPOCH)
			return fail_node("no joiner in time", me, -ETIMEDOUT);
	}
	ps_key mine = (ps_key)me;
	if ((rc = ps_push_sync(cnt, &mine, 1, &pushes)) != 0)
		return fail_node("count push", me, rc);
	if ((rc = ps_barrier(w)) != 0)
		return fail_node("final barrier", me, rc);
	ps_key ck[3] = {0, 1, 2};
	float c[3], v[KEYS];
	if ((rc = ps_pull_sync(cnt, ck, 3, c)) != 0 || (rc = ps_pull_sync(t, keys, KEYS, v)) != 0)
		return fail_node("final pull", me, rc);
	float want = c[0] + c[1] + c[2];
	int wrong = 0, at1 = 0;
	for (int i = 0; i < KEYS; i++) {
		if (v[i] != want && wrong++ < 5)
			printf("elastic: host %d: key %d = %g, want %g\n", me, i, (double)v[i], (double)want);
		at1 += i % 3 == 2 && ps_owner_host(t, keys[i]) == 1;
	}
	printf("elastic: host %d: after the joiner's loss: pushes %.0f %.0f %.0f; %d wrong of %d; %d of its 100 keys "
	       "at host 1\n", me, (double)c[0], (double)c[1], (double)c[2], wrong, KEYS, at1);
	fflush(stdout);
	if ((rc = ps_finalize(w)) != 0)
		return fail_node("ps_finalize", me, rc);
	return wrong ? 1 : 0;
}

/* Not elastic: ps_sync_hosts is a barrier over hosts that returns the
 * hosts present; epochs that differ are PS_EMISMATCH on every host. */
static int nonelastic_main(void)
{
	int err, rc;
	ps_world *w = ps_init(&err);
	if (!w)
		return 1;
	int me = ps_host_id(w), n = 0;
	ps_table *t, *cnt;
	if ((rc = tables(w, &t, &cnt)) != 0)
		return fail_node("tables", me, rc);
	for (uint64_t epoch = 1; epoch <= 5; epoch++) {
		uint64_t e = epoch;
		if ((n = ps_sync_hosts(w, &e)) != 2 || e != epoch)
			return fail_node("ps_sync_hosts", me, n < 0 ? n : PS_EMISMATCH);
	}
	uint64_t e = me == 1 ? 99 : 6;
	n = ps_sync_hosts(w, &e);
	printf("elastic: host %d: joined %d, 5 syncs over 2 hosts; different epochs: %s\n", me, ps_joined(w),
	       ps_strerror(n < 0 ? n : 0));
	fflush(stdout);
	return ps_finalize(w) ? 1 : 0;
}

/* An elastic job checkpoints (parts of its initial homes: checkpoint.c
 * CKH5; more in test_hosts_ckpt_elastic.c). */
static int ckpt_main(const char *path)
{
	int err, rc;
	ps_world *w = ps_init(&err);
	if (!w)
		return 1;
	int me = ps_host_id(w);
	ps_table *t, *cnt;
	if ((rc = tables(w, &t, &cnt)) != 0)
		return fail_node("tables", me, rc);
	uint64_t e = 1;
	if ((rc = ps_sync_hosts(w, &e)) < 0)
		return fail_node("ps_sync_hosts", me, rc);
	rc = ps_checkpoint(w, path);
	printf("elastic: host %d: checkpoint: %s: %s\n", me, ps_strerror(rc), ps_checkpoint_error(w));
	fflush(stdout);
	e = 2;
	if ((rc = ps_sync_hosts(w, &e)) < 0)
		return fail_node("ps_sync_hosts after the checkpoint", me, rc);
	return ps_finalize(w) ? 1 : 0;
}

/* A joiner that never reaches ps_sync_hosts (it waits for ever): the
 * job ends without it. */
static int pending_main(void)
{
	int err, rc;
	ps_world *w = ps_init(&err);
	if (!w)
		return 1;
	ps_table *t, *cnt;
	if ((rc = tables(w, &t, &cnt)) != 0)
		return fail_node("tables", ps_host_id(w), rc);
	printf("elastic: joiner waiting\n");
	fflush(stdout);
	for (;;)
		pause(); /* stopped by its psrun when the job ends */
}

/* (b): members sync in epochs until the driver's file says stop (host 0
 * reads it and tells everyone through a key, so all stop at one epoch). */
static int plain_main(const char *stop_file, bool extra)
{
	int err, rc;
	ps_world *w = ps_init(&err);
	if (!w)
		return 1;
	int me = ps_host_id(w);
	ps_table *t, *cnt;
	if ((rc = tables(w, &t, &cnt)) != 0)
		return fail_node("tables", me, rc);
	if (extra) { /* a joiner whose tables are not the job's */
		ps_table_opts o;
		ps_table_opts_init(&o, 10, 1);
		if (!ps_table_create(w, &o, &err))
			return fail_node("extra table", me, err);
		uint64_t e = 0;
		int n = ps_sync_hosts(w, &e);
		printf("elastic: host %d: ps_sync_hosts with other tables: %s\n", me, ps_strerror(n < 0 ? n : 0));
		fflush(stdout);
		return 1;
	}
	ps_key stop = 0;
	float one = 1, v = 0;
	for (uint64_t epoch = 1; epoch < MAX_EPOCH; epoch++) {
		struct stat st;
		if (me == 0 && stat(stop_file, &st) == 0 && (rc = ps_push_sync(cnt, &stop, 1, &one)) != 0)
			return fail_node("push", me, rc);
		if (me == 0 && epoch == 2) {
			printf("elastic: host 0 epoch 2\n");
			fflush(stdout);
		}
		uint64_t e = epoch;
		int n = ps_sync_hosts(w, &e);
		if (n != 2)
			return fail_node("ps_sync_hosts", me, n < 0 ? n : PS_EMISMATCH);
		if ((rc = ps_pull_sync(cnt, &stop, 1, &v)) != 0)
			return fail_node("pull", me, rc);
		if (v > 0) {
			printf("elastic: host %d: stopped at epoch %llu with 2 hosts\n", me, (unsigned long long)epoch);
			fflush(stdout);
			return ps_finalize(w) ? 1 : 0;
		}
		if ((rc = ps_barrier(w)) != 0) /* nobody pushes stop before all pulled */
			return fail_node("barrier", me, rc);
	}
	return fail_node("never told to stop", me, -ETIMEDOUT);
}

/* Words of t and cnt naming host x, once x's LEFT came here: the
 * agreement (ps_sync_hosts) comes before the drain, and the drain's LEFT
 * reaches this host whenever it is done (the sums are exact before it:
 * requests are routed through the drain, DR1-DR2), so the count is polled
 * until it is 0, bounded (60 s: then the count is the failure). */
static int words_naming(ps_table *t, ps_table *cnt, int x)
{
	int named = 0;
	for (int tries = 0; tries < 6000; tries++) {
		named = 0;
		for (int i = 0; i < KEYS; i++)
			named += ps_owner_host(t, (ps_key)i) == x;
		for (int i = 0; i < 64; i++)
			named += ps_owner_host(cnt, (ps_key)i) == x;
		if (!named)
			break;
		usleep(10 * 1000);
	}
	return named;
}

/* (c): hosts 0-2 push +1 to every key (and +1 to their own counter, homed
 * at the host: host 2's at host 2) and sync in epochs until host 2 is
 * asked to leave: its ps_sync_hosts returns 0 (it finalizes: the drain
 * hands its keys and directory to b(2) = host 0), the others' 2; they
 * push 3 epochs more and check that every key equals the sum of the
 * counters exactly and that no word names host 2. */
static const ps_key leave_ckey[3] = {1, 30, 50}; /* homes 0, 1, 2 */

static int leave_main(void)
{
	int err, rc;
	ps_world *w = ps_init(&err);
	if (!w)
		return 1;
	int me = ps_host_id(w);
	ps_table *t, *cnt;
	if ((rc = tables(w, &t, &cnt)) != 0)
		return fail_node("tables", me, rc);
	ps_key keys[KEYS];
	float one[KEYS];
	for (int i = 0; i < KEYS; i++)
		keys[i] = (ps_key)i, one[i] = 1.0f;
	if (me == 0) {
		printf("elastic: host 0 segment %s\n", ps_segment_name(w));
		fflush(stdout);
	}
	ps_key mine = leave_ckey[me];
	uint64_t end = MAX_EPOCH;
	for (uint64_t epoch = 1; epoch < end; epoch++) {
		if ((rc = ps_push_sync(t, keys, KEYS, one)) != 0 || (rc = ps_push_sync(cnt, &mine, 1, one)) != 0)
			return fail_node("push", me, rc);
		if (me == 2 && epoch <= 3) {
			printf("elastic: host 2 epoch %llu\n", (unsigned long long)epoch);
			fflush(stdout);
		}
		uint64_t e = epoch;
		int n = ps_sync_hosts(w, &e);
		if (n == 0) {
			printf("elastic: host %d: left at epoch %llu\n", me, (unsigned long long)epoch);
			fflush(stdout);
			rc = ps_finalize(w); /* the drain: keys and directory to b(2) */
			printf("elastic: host %d: drained: %s\n", me, ps_strerror(rc));
			fflush(stdout);
			return rc ? 1 : 0;
		}
		if (n < 0)
			return fail_node("ps_sync_hosts", me, n);
		if (n == 2 && end == MAX_EPOCH) {
			uint8_t alive[4] = {9, 9, 9, 9};
			ps_hosts_alive(w, alive, 4);
			printf("elastic: host %d: 2 hosts from epoch %llu [%d %d %d %d]\n", me, (unsigned long long)epoch,
			       alive[0], alive[1], alive[2], alive[3]);
			fflush(stdout);
			end = epoch + 3;
		}
	}
	if (end == MAX_EPOCH)
		return fail_node("nobody left", me, -ETIMEDOUT);
	if ((rc = ps_barrier(w)) != 0)
		return fail_node("barrier after the leave", me, rc);
	float c[3], v[KEYS];
	if ((rc = ps_pull_sync(cnt, leave_ckey, 3, c)) != 0 || (rc = ps_pull_sync(t, keys, KEYS, v)) != 0)
		return fail_node("pull after the leave", me, rc);
	float want = c[0] + c[1] + c[2];
	int wrong = 0;
	for (int i = 0; i < KEYS; i++)
		if (v[i] != want && wrong++ < 5)
			printf("elastic: host %d: key %d = %g, want %g\n", me, i, (double)v[i], (double)want);
	int named = words_naming(t, cnt, 2);
	printf("elastic: host %d: after the leave: pushes %.0f %.0f %.0f; %d wrong of %d; %d words name host 2\n", me,
	       (double)c[0], (double)c[1], (double)c[2], wrong, KEYS, named);
	fflush(stdout);
	if ((rc = ps_barrier(w)) != 0) /* both checked before either finalizes */
		return fail_node("barrier after the check", me, rc);
	return ps_finalize(w) || wrong || named ? 1 : 0;
}

/* (e): the storm while a host joins and another leaves.  Hosts 0-2
 * (psrun --elastic --drain) push +1 to every key ROUNDS times an epoch and
 * +1 to their own counter each round (a counter homed at the host: host
 * 1's at host 1, so the drain hands it over too), then ps_clock and
 * ps_sync_hosts.  Before the storm host 1 takes keys 0-9 (homed at host 0)
 * and 250-259 (homed at host 2), host 0 takes 150-159 (homed at host 1):
 * the leaver holds keys it does not home, and its directory names
 * another holder.  With a gate file, every member waits before the
 * ps_sync_hosts of epoch GATE_EPOCH until the file exists (the driver
 * makes it once host 1 was asked to leave and every member has the
 * joiner ready: both take effect at that one ps_sync_hosts).  Host 1's
 * ps_sync_hosts returns 0 (it finalizes: the drain); the others go on
 * until host 1 is gone and host 3 present, then K_AFTER epochs; every key
 * must equal the sum of every host's counter exactly, and no word may
 * name host 1. */
#define GATE_EPOCH 3
static const ps_key jl_ckey[4] = {1, 30, 50, 10}; /* homes 0, 1, 2, 0 */

static int jl_main(const char *gate)
{
	int err, rc;
	ps_world *w = ps_init(&err);
	if (!w)
		return 1;
	int me = ps_host_id(w), joined = ps_joined(w);
	ps_table *t, *cnt;
	if ((rc = tables(w, &t, &cnt)) != 0)
		return fail_node("tables", me, rc);
	if (me == 0) {
		printf("elastic: host 0 segment %s\n", ps_segment_name(w));
		fflush(stdout);
	}
	ps_key keys[KEYS];
	float one[KEYS];
	for (int i = 0; i < KEYS; i++)
		keys[i] = (ps_key)i, one[i] = 1.0f;
	if (!joined) {
		ps_key mv[20];
		size_t n = 0;
		for (int i = 0; i < 10 && me != 2; i++) {
			if (me == 1)
				mv[n++] = (ps_key)i, mv[n++] = (ps_key)(250 + i);
			else
				mv[n++] = (ps_key)(150 + i);
		}
		if (n && (rc = ps_localize_sync(t, mv, n)) != 0)
			return fail_node("localize before the storm", me, rc);
		if ((rc = ps_barrier(w)) != 0)
			return fail_node("barrier before the storm", me, rc);
	}
	uint64_t epoch = 0, end = MAX_EPOCH;
	uint8_t alive[4];
	if (joined) {
		int n = ps_sync_hosts(w, &epoch);
		memset(alive, 9, sizeof alive);
		ps_hosts_alive(w, alive, 4);
		int held = 0;
		for (int i = 0; i < KEYS; i++)
			held += ps_owner_host(t, keys[i]) == me;
		printf("elastic: host %d joined at epoch %llu: %d hosts [%d %d %d %d], holding %d keys\n", me,
		       (unsigned long long)epoch, n, alive[0], alive[1], alive[2], alive[3], held);
		fflush(stdout);
		if (n != 3 && n != 4)
			return fail_node("first ps_sync_hosts", me, n < 0 ? n : PS_EMISMATCH);
		if (alive[1] == 0)
			end = epoch + K_AFTER;
	}
	ps_key mine = jl_ckey[me];
	float f1 = 1.0f;
	for (; epoch < end;) {
		for (int r = 0; r < ROUNDS; r++) {
			if ((rc = ps_push_sync(t, keys, KEYS, one)) != 0)
				return fail_node("push", me, rc);
			if ((rc = ps_push_sync(cnt, &mine, 1, &f1)) != 0)
				return fail_node("count push", me, rc);
		}
		if ((rc = ps_clock(w)) != 0)
			return fail_node("ps_clock", me, rc);
		epoch++;
		if (me == 0 && epoch <= 4) {
			printf("elastic: host 0 epoch %llu\n", (unsigned long long)epoch);
			fflush(stdout);
		}
		if (gate && !joined && epoch == GATE_EPOCH) {
			printf("elastic: host %d at the gate\n", me);
			fflush(stdout);
			struct stat st;
			for (int i = 0; stat(gate, &st) != 0; i++) { /* the driver's go, not a timing */
				if (i > 6000)
					return fail_node("gate", me, -ETIMEDOUT);
				usleep(10 * 1000);
			}
		}
		uint64_t e = epoch;
		int n = ps_sync_hosts(w, &e);
		if (n < 0)
			return fail_node("ps_sync_hosts", me, n);
		if (e != epoch)
			return fail_node("epoch agreement", me, PS_EMISMATCH);
		if (n == 0) {
			printf("elastic: host %d: left at epoch %llu\n", me, (unsigned long long)epoch);
			fflush(stdout);
			rc = ps_finalize(w); /* the drain: keys and directory to b(1) */
			printf("elastic: host %d: drained: %s\n", me, ps_strerror(rc));
			fflush(stdout);
			return rc ? 1 : 0;
		}
		memset(alive, 9, sizeof alive);
		ps_hosts_alive(w, alive, 4);
		if (end == MAX_EPOCH && alive[1] == 0 && alive[3] == 1) {
			printf("elastic: host %d: host 1 gone, host 3 present from epoch %llu\n", me,
			       (unsigned long long)epoch);
			fflush(stdout);
			end = epoch + K_AFTER; /* the same epoch on every host present */
		}
		if (alive[1] == 0 && !joined && me != 1) {
			static bool said;
			if (!said) {
				printf("elastic: host %d: host 1 left at epoch %llu\n", me, (unsigned long long)epoch);
				fflush(stdout);
				said = true;
			}
		}
	}
	if (end == MAX_EPOCH)
		return fail_node("no join and leave in time", me, -ETIMEDOUT);
	if ((rc = ps_barrier(w)) != 0)
		return fail_node("final barrier", me, rc);
	float c[4], v[KEYS], cv[64];
	ps_key ck[64];
	for (int i = 0; i < 64; i++)
		ck[i] = (ps_key)i;
	if ((rc = ps_pull_sync(cnt, jl_ckey, 4, c)) != 0 || (rc = ps_pull_sync(t, keys, KEYS, v)) != 0 ||
	    (rc = ps_pull_sync(cnt, ck, 64, cv)) != 0)
		return fail_node("final pull", me, rc);
	float want = c[0] + c[1] + c[2] + c[3];
	int wrong = 0, held = 0;
	for (int i = 0; i < KEYS; i++) {
		if (v[i] != want && wrong++ < 5)
			printf("elastic: host %d: key %d = %g, want %g\n", me, i, (double)v[i], (double)want);
		held += ps_owner_host(t, keys[i]) == me;
	}
	int named1 = words_naming(t, cnt, 1);
	int n = ps_hosts_alive(w, alive, 4);
	printf("elastic: host %d: joined %d; alive %d [%d %d %d %d]; pushes %.0f %.0f %.0f %.0f; holds %d; "
	       "%d wrong of %d; %d words name host 1\n",
	       me, joined, n, alive[0], alive[1], alive[2], alive[3], (double)c[0], (double)c[1], (double)c[2],
	       (double)c[3], held, wrong, KEYS, named1);
	fflush(stdout);
	if ((rc = ps_finalize(w)) != 0)
		return fail_node("ps_finalize", me, rc);
	return wrong || named1 ? 1 : 0;
}

/* (f): two hosts leave at one ps_sync_hosts (EL7: one leaver a SYNC
 * generation).  Hosts 0-3 push +1 to every key and +1 to their own
 * counter (homed at the host) each epoch; before the ps_sync_hosts of
 * GATE_EPOCH every host waits for the gate file, which the driver makes
 * once hosts 1 and 2 were both asked to leave: both requests are in that
 * one SYNC.  Host 1 must leave there, host 2 at a later one (its request
 * goes out again once host 1's LEFT came), each drain returning 0; the
 * others go on until 2 hosts are present, then 3 epochs, and check that
 * every key equals the sum of the counters exactly and no word names host
 * 1 or 2. */
static const ps_key two_ckey[4] = {1, 20, 40, 60}; /* homes 0, 1, 2, 3 */

static int two_main(const char *gate, bool trace)
{
	int err, rc;
	ps_world *w = ps_init(&err);
	if (!w)
		return 1;
	int me = ps_host_id(w);
	ps_table *t, *cnt;
	if ((rc = tables(w, &t, &cnt)) != 0)
		return fail_node("tables", me, rc);
	ps_key keys[KEYS];
	float one[KEYS];
	for (int i = 0; i < KEYS; i++)
		keys[i] = (ps_key)i, one[i] = 1.0f;
	ps_key mine = two_ckey[me];
	uint64_t end = MAX_EPOCH;
	for (uint64_t epoch = 1; epoch < end; epoch++) {
		if ((rc = ps_push_sync(t, keys, KEYS, one)) != 0 || (rc = ps_push_sync(cnt, &mine, 1, one)) != 0)
			return fail_node("push", me, rc);
		if (gate && epoch == GATE_EPOCH) {
			printf("elastic: host %d at the gate\n", me);
			fflush(stdout);
			struct stat st;
			for (int i = 0; stat(gate, &st) != 0; i++) { /* the driver's go, not a timing */
				if (i > 6000)
					return fail_node("gate", me, -ETIMEDOUT);
				usleep(10 * 1000);
			}
		}
		uint64_t e = epoch;
		int n = ps_sync_hosts(w, &e);
		if (n == 0) {
			printf("elastic: host %d: left at epoch %llu\n", me, (unsigned long long)epoch);
			fflush(stdout);
			rc = ps_finalize(w); /* the drain */
			printf("elastic: host %d: drained: %s\n", me, ps_strerror(rc));
			fflush(stdout);
			return rc ? 1 : 0;
		}
		if (n < 0)
			return fail_node("ps_sync_hosts", me, n);
		if (trace && me == 0) {
			uint8_t a[4] = {9, 9, 9, 9};
			ps_hosts_alive(w, a, 4);
			printf("elastic: host 0 epoch %llu [%d %d %d %d]\n", (unsigned long long)epoch, a[0], a[1], a[2],
			       a[3]);
			fflush(stdout);
		}
		if (n == 2 && end == MAX_EPOCH) {
			uint8_t alive[4] = {9, 9, 9, 9};
			ps_hosts_alive(w, alive, 4);
			printf("elastic: host %d: 2 hosts from epoch %llu [%d %d %d %d]\n", me, (unsigned long long)epoch,
			       alive[0], alive[1], alive[2], alive[3]);
			fflush(stdout);
			end = epoch + 3;
		}
	}
	if (end == MAX_EPOCH)
		return fail_node("nobody left", me, -ETIMEDOUT);
	if ((rc = ps_barrier(w)) != 0)
		return fail_node("barrier after the leaves", me, rc);
	float c[4], v[KEYS];
	if ((rc = ps_pull_sync(cnt, two_ckey, 4, c)) != 0 || (rc = ps_pull_sync(t, keys, KEYS, v)) != 0)
		return fail_node("pull after the leaves", me, rc);
	float want = c[0] + c[1] + c[2] + c[3];
	int wrong = 0;
	for (int i = 0; i < KEYS; i++)
		if (v[i] != want && wrong++ < 5)
			printf("elastic: host %d: key %d = %g, want %g\n", me, i, (double)v[i], (double)want);
	int named = words_naming(t, cnt, 1) + words_naming(t, cnt, 2);
	printf("elastic: host %d: after the leaves: pushes %.0f %.0f %.0f %.0f; %d wrong of %d; %d words name host 1 "
	       "or 2\n",
	       me, (double)c[0], (double)c[1], (double)c[2], (double)c[3], wrong, KEYS, named);
	fflush(stdout);
	if ((rc = ps_barrier(w)) != 0) /* both checked before either finalizes */
		return fail_node("barrier after the check", me, rc);
	return ps_finalize(w) || wrong || named ? 1 : 0;
}

/* ------------------------------------------------------------ driver */


/* psrun argv for member r of H (flags inserted before the program). */
static void member_argv(const char **argv, char *store, int hosts, int r, unsigned port, const char *const prog[],
			const char *extra1, const char *extra2)
{
	mh_psrun_argv(argv, store, 1, hosts, r, port, prog);
	int i = 0;
	while (argv[i] != prog[0])
		i++;
	int end = i;
	while (argv[end])
		end++;
	int add = 1 + (extra1 ? 1 : 0) + (extra2 ? 1 : 0);
	for (int j = end; j >= i; j--)
		argv[j + add] = argv[j];
	argv[i++] = "--elastic";
	if (extra1)
		argv[i++] = extra1;
	if (extra2)
		argv[i++] = extra2;
}

/* psrun --join argv. */
static void join_argv(const char **argv, char *coord, unsigned port, const char *nodes, const char *token,
		      const char *const prog[])
{
	snprintf(coord, 32, "127.0.0.1:%u", port);
	int i = 0;
	argv[i++] = build_path("bin/psrun");
	argv[i++] = "-v"; /* the bridge's figures at the end */
	argv[i++] = "-n";
	argv[i++] = nodes;
	argv[i++] = "--join";
	argv[i++] = coord;
	argv[i++] = "--token-file";
	argv[i++] = token;
	for (int k = 0; prog[k]; k++)
		argv[i++] = prog[k];
	argv[i] = NULL;
}

/* Waits (the nodes' own output, polled) until p's stdout has text. */
static void wait_for_output(struct mh_proc *all, int n, int who, const char *text)
{
	for (int i = 0; i < 1200 && !strstr(mh_slurp(all[who].out), text); i++)
		usleep(50 * 1000);
	if (!strstr(mh_slurp(all[who].out), text)) {
		for (int r = 0; r < n; r++) {
			mh_finish(&all[r], 0);
			mh_show(&all[r], "host");
		}
		fail_msg("\"%s\" not printed within 60 s", text);
	}
}

static void test_a_joiner_takes_a_share_and_every_push_counts(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct mh_proc h[3];
	unsigned port = mh_free_port();
	const char *prog[] = {mh_self, "--node", "storm", "3", NULL};
	static char store[3][96], coord[32];
	for (int r = 0; r < 2; r++) {
		const char *argv[64];
		member_argv(argv, store[r], 2, r, port, prog, "-v", NULL);
		argv[2] = "2"; /* -n 2: two nodes a host, the joiner's too */
		char name[32];
		snprintf(name, sizeof name, "storm%d", r);
		mh_spawn(&h[r], name, (char *const *)argv, NULL);
	}
	wait_for_output(h, 2, 0, "elastic: host 0 epoch 3");
	const char *argv[64];
	join_argv(argv, coord, port, "2", mh_token_path, prog);
	mh_spawn(&h[2], "storm2", (char *const *)argv, NULL);
	for (int r = 0; r < 3; r++)
		mh_finish(&h[r], 120);
	mh_show_failed(3, h);
	for (int r = 0; r < 3; r++) {
		const char *out = mh_slurp(h[r].out), *err = mh_slurp(h[r].err);
		assert_int_equal(h[r].status, 0);
		char want[128];
		snprintf(want, sizeof want, "elastic: host %d: joined %d; alive 3 [1 1 1 0]; pushes ", r, r == 2);
		assert_contains(out, want);
		assert_contains(out, "; 0 wrong of 300; ");
		/* one ps_clock per epoch, the joiner's from the members' */
		const char *ck = strstr(out, "; clock ");
		assert_non_null(ck);
		long long clk = 0;
		unsigned long long ep = 0;
		assert_int_equal(sscanf(ck, "; clock %lld of %llu epochs", &clk, &ep), 2);
		assert_int_equal(clk, (long long)ep);
		const char *l = strstr(out, want);
		printf("%.*s\n", (int)strcspn(l, "\n"), l);
		/* every request went over the nodes' data connections, the
		 * joiner's included (passed to running nodes: DATAFD) */
		assert_contains(err, ": bridge: 0 data frames out, 0 in; ");
		if (r == 2) {
			/* every 3rd key (k mod 3 = 2: its place among 3 hosts) */
			assert_contains(out, "elastic: host 2 joined at epoch ");
			assert_contains(out, " holding 100 keys");
			assert_contains(err, "psrun: joined the job as host 2 (2 hosts there)");
			assert_contains(err, "admitted at barrier ");
			/* it pushed: its count is not 0 */
			assert_true(strstr(out, "pushes ") && !strstr(l, " 0; holds"));
		} else {
			assert_contains(err, "host 2 (");
			assert_contains(err, ") joined the job at barrier ");
		}
	}
	assert_true(mh_port_free(port));
	mh_assert_clean(&segs);
}

/* Two joiners started together: each is admitted whenever it is ready
 * (at the same ps_sync_hosts or at two), the later one connected to the
 * earlier; keys relocate from the first joiner to the second when they
 * come one after the other; every sum stays exact. */
static void test_two_joiners_at_once(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct mh_proc h[4];
	unsigned port = mh_free_port();
	const char *prog[] = {mh_self, "--node", "storm", "4", NULL};
	static char store[2][96], coord[2][32];
	for (int r = 0; r < 2; r++) {
		const char *argv[64];
		member_argv(argv, store[r], 2, r, port, prog, "-v", NULL);
		char name[32];
		snprintf(name, sizeof name, "two%d", r);
		mh_spawn(&h[r], name, (char *const *)argv, NULL);
	}
	wait_for_output(h, 2, 0, "elastic: host 0 epoch 3");
	for (int k = 0; k < 2; k++) {
		const char *argv[64];
		join_argv(argv, coord[k], port, "1", mh_token_path, prog);
		char name[32];
		snprintf(name, sizeof name, "two%d", 2 + k);
		mh_spawn(&h[2 + k], name, (char *const *)argv, NULL);
	}
	for (int r = 0; r < 4; r++)
		mh_finish(&h[r], 120);
	mh_show_failed(4, h);
	for (int r = 0; r < 4; r++) {
		const char *out = mh_slurp(h[r].out), *err = mh_slurp(h[r].err);
		assert_int_equal(h[r].status, 0);
		assert_contains(out, "; alive 4 [1 1 1 1]; pushes ");
		assert_contains(out, "; 0 wrong of 300; ");
		assert_contains(err, ": bridge: 0 data frames out, 0 in; ");
		const char *l = strstr(out, "; alive 4");
		printf("host %d%.*s\n", r, (int)strcspn(l, "\n"), l);
		if (r >= 2) /* each joiner holds keys at the end */
			assert_true(strstr(l, "; holds 0;") == NULL);
	}
	assert_true(mh_port_free(port));
	mh_assert_clean(&segs);
}

/* The job ends while a joiner is still pending: the members finish
 * normally, the joiner stops with the reason. */
static void test_a_pending_joiner_stops_when_the_job_ends(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct mh_proc h[3];
	unsigned port = mh_free_port();
	char stop[256];
	snprintf(stop, sizeof stop, "%s/stop-pending", mh_tmpdir);
	unlink(stop);
	const char *prog[] = {mh_self, "--node", "plain", stop, NULL};
	static char store[2][96], coord[32];
	for (int r = 0; r < 2; r++) {
		const char *argv[64];
		member_argv(argv, store[r], 2, r, port, prog, NULL, NULL);
		char name[32];
		snprintf(name, sizeof name, "pend%d", r);
		mh_spawn(&h[r], name, (char *const *)argv, NULL);
	}
	wait_for_output(h, 2, 0, "elastic: host 0 epoch 2");
	const char *jprog[] = {mh_self, "--node", "pending", NULL};
	const char *argv[64];
	join_argv(argv, coord, port, "1", mh_token_path, jprog);
	mh_spawn(&h[2], "pend2", (char *const *)argv, NULL);
	wait_for_output(h, 3, 2, "elastic: joiner waiting");
	FILE *f = fopen(stop, "w");
	assert_non_null(f);
	fclose(f);
	for (int r = 0; r < 3; r++)
		mh_finish(&h[r], 60);
	mh_show_failed(2, h);
	for (int r = 0; r < 2; r++) {
		assert_int_equal(h[r].status, 0);
		assert_contains(mh_slurp(h[r].out), "stopped at epoch ");
	}
	if (h[2].status == 0 || h[2].status == -1)
		mh_show(&h[2], "joiner");
	assert_int_not_equal(h[2].status, 0);
	assert_int_not_equal(h[2].status, -1);
	assert_contains(mh_slurp(h[2].err), "the job ended before this host was admitted");
	assert_true(mh_port_free(port));
	mh_assert_clean(&segs);
}

/* A joiner is a peer like any other once admitted: lost under
 * --on-host-failure continue, its keys are promoted from its backups. */
static void test_a_joiner_lost_after_admission_is_dropped_and_its_keys_promoted(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct mh_proc h[3];
	unsigned port = mh_free_port();
	const char *prog[] = {mh_self, "--node", "jlost", NULL};
	static char store[3][96], coord[32];
	for (int r = 0; r < 2; r++) {
		const char *argv[64];
		member_argv(argv, store[r], 2, r, port, prog, "--on-host-failure=continue", "--backup-rate=50");
		char name[32];
		snprintf(name, sizeof name, "jlost%d", r);
		mh_spawn(&h[r], name, (char *const *)argv, NULL);
	}
	wait_for_output(h, 2, 0, "elastic: host 0 epoch 3");
	const char *argv[64];
	join_argv(argv, coord, port, "1", mh_token_path, prog);
	/* its own flags, before the program */
	int i = 0;
	while (argv[i] != prog[0])
		i++;
	for (int j = i + 3; j >= i; j--) /* the program's 3 words and NULL */
		argv[j + 2] = argv[j];
	argv[i] = "--on-host-failure=continue";
	argv[i + 1] = "--backup-rate=50";
	mh_spawn(&h[2], "jlost2", (char *const *)argv, NULL);
	wait_for_output(h, 3, 2, "elastic: joiner stops");
	/* outside the backup window (BK4): not a synchronisation, the window
	 * is what psmem.h documents (as test_hosts_fail) */
	usleep(500 * 1000);
	kill(h[2].pid, SIGKILL);
	mh_finish(&h[2], 10);
	mh_finish(&h[0], 60);
	mh_finish(&h[1], 60);
	mh_show_failed(2, h);
	for (int r = 0; r < 2; r++) {
		const char *out = mh_slurp(h[r].out), *err = mh_slurp(h[r].err);
		assert_int_equal(h[r].status, 0);
		assert_contains(out, "; 0 wrong of 300; 100 of its 100 keys at host 1");
		assert_contains(err, "host 2 (");
		assert_contains(err, "dropped, the job goes on with 2 hosts");
		const char *l = strstr(out, "after the joiner's loss");
		printf("host %d %.*s\n", r, (int)strcspn(l, "\n"), l);
	}
	assert_true(mh_port_free(port));
	mh_assert_clean(&segs);
}

static void test_sync_hosts_without_elastic_is_a_barrier_over_hosts(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct mh_proc h[2];
	const char *prog[] = {mh_self, "--node", "nonelastic", NULL};
	mh_run_hosts(2, 2, prog, h, 60);
	mh_show_failed(2, h);
	for (int r = 0; r < 2; r++) {
		assert_int_equal(h[r].status, 0);
		char want[160];
		snprintf(want, sizeof want, "elastic: host %d: joined 0, 5 syncs over 2 hosts; different epochs: %s", r,
			 ps_strerror(PS_EMISMATCH));
		assert_contains(mh_slurp(h[r].out), want);
	}
	mh_assert_clean(&segs);
}

/* ps_checkpoint in an elastic job: written on every host (the parts of
 * the initial homes, CKH5), the job goes on. */
static void test_an_elastic_job_checkpoints(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct mh_proc h[2];
	unsigned port = mh_free_port();
	char path[96];
	snprintf(path, sizeof path, "/tmp/psmem-elastic-ckpt-%d", (int)getpid());
	unlink(path);
	const char *prog[] = {mh_self, "--node", "ckpt", path, NULL};
	static char store[2][96];
	for (int r = 0; r < 2; r++) {
		const char *argv[64];
		member_argv(argv, store[r], 2, r, port, prog, NULL, NULL);
		char name[32];
		snprintf(name, sizeof name, "ckpt%d", r);
		mh_spawn(&h[r], name, (char *const *)argv, NULL);
	}
	for (int r = 0; r < 2; r++)
		mh_finish(&h[r], 60);
	mh_show_failed(2, h);
	for (int r = 0; r < 2; r++) {
		assert_int_equal(h[r].status, 0);
		char want[256];
		snprintf(want, sizeof want, "elastic: host %d: checkpoint: %s: \n", r, ps_strerror(0));
		assert_contains(mh_slurp(h[r].out), want);
	}
	char part1[128];
	snprintf(part1, sizeof part1, "%s.host1", path);
	assert_int_equal(access(path, F_OK), 0);
	assert_int_equal(access(part1, F_OK), 0);
	unlink(path);
	unlink(part1);
	mh_assert_clean(&segs);
}

/* Flags that cannot work are refused with the reason (exit 2), before
 * anything starts. */
static void test_bad_elastic_flags_are_refused(void **state)
{
	(void)state;
	static struct run_result r;
	const char *one[] = {build_path("bin/psrun"), "-n", "1", "--elastic", "/bin/true", NULL};
	run_prog((char *const *)one, NULL, 20, -1, 0, &r);
	assert_int_equal(r.status, 2);
	assert_contains(r.err, "--elastic is for jobs of several hosts (--hosts H, H >= 2)");
	const char *bad[] = {build_path("bin/psrun"), "-n", "1", "--join", "nowhere", "--token-file", mh_token_path,
			     "/bin/true", NULL};
	run_prog((char *const *)bad, NULL, 20, -1, 0, &r);
	assert_int_equal(r.status, 2);
	assert_contains(r.err, "--join 'nowhere': want ADDR:PORT of host 0's psrun");
	const char *both[] = {build_path("bin/psrun"), "-n", "1", "--join", "127.0.0.1:1", "--hosts", "2",
			      "--token-file", mh_token_path, "/bin/true", NULL};
	run_prog((char *const *)both, NULL, 20, -1, 0, &r);
	assert_int_equal(r.status, 2);
	assert_contains(r.err, "--join COORD:PORT takes no --hosts, --host-rank or --coordinator");
	const char *drain[] = {build_path("bin/psrun"), "-n", "1", "--hosts", "2", "--host-rank", "1",
			       "--coordinator", "127.0.0.1:1", "--token-file", mh_token_path, "--drain", "/bin/true", NULL};
	run_prog((char *const *)drain, NULL, 20, -1, 0, &r);
	assert_int_equal(r.status, 2);
	assert_contains(r.err, "--drain is for elastic jobs: give --elastic (every host) or --join too");
	const char *leave[] = {build_path("bin/psstat"), "--leave", "x", NULL};
	run_prog((char *const *)leave, NULL, 20, -1, 0, &r);
	assert_int_equal(r.status, 2);
	assert_contains(r.err, "--leave wants a host rank from 0 to 1023, not 'x'");
}

/* (b): one refused joiner per case; then the job is told to stop. */
static void test_a_joiner_that_differs_is_refused_and_the_job_goes_on(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct mh_proc h[6];
	unsigned port = mh_free_port();
	char stop[256];
	snprintf(stop, sizeof stop, "%s/stop-plain", mh_tmpdir);
	unlink(stop);
	const char *prog[] = {mh_self, "--node", "plain", stop, NULL};
	static char store[2][96], coord[4][32];
	for (int r = 0; r < 2; r++) {
		const char *argv[64];
		member_argv(argv, store[r], 2, r, port, prog, NULL, NULL);
		char name[32];
		snprintf(name, sizeof name, "plain%d", r);
		mh_spawn(&h[r], name, (char *const *)argv, NULL);
	}
	wait_for_output(h, 2, 0, "elastic: host 0 epoch 2");
	/* another -n */
	const char *argv[64];
	join_argv(argv, coord[0], port, "2", mh_token_path, prog);
	mh_spawn(&h[2], "bad_n", (char *const *)argv, NULL);
	mh_finish(&h[2], 30);
	/* another program */
	const char *other[] = {"/bin/true", NULL};
	join_argv(argv, coord[1], port, "1", mh_token_path, other);
	mh_spawn(&h[3], "bad_prog", (char *const *)argv, NULL);
	mh_finish(&h[3], 30);
	/* a wrong token */
	char bad_token[256];
	snprintf(bad_token, sizeof bad_token, "%s/other.token", mh_tmpdir);
	unlink(bad_token);
	const char *mk[] = {build_path("bin/psrun"), "--make-token", bad_token, NULL};
	struct mh_proc t;
	mh_spawn(&t, "mktoken", (char *const *)mk, NULL);
	assert_int_equal(mh_finish(&t, 10), 0);
	join_argv(argv, coord[2], port, "1", bad_token, prog);
	mh_spawn(&h[4], "bad_token", (char *const *)argv, NULL);
	mh_finish(&h[4], 30);
	/* other tables */
	const char *prog_x[] = {mh_self, "--node", "plain", stop, "extra", NULL};
	join_argv(argv, coord[3], port, "1", mh_token_path, prog_x);
	mh_spawn(&h[5], "bad_tables", (char *const *)argv, NULL);
	mh_finish(&h[5], 30);
	FILE *f = fopen(stop, "w");
	assert_non_null(f);
	fclose(f);
	mh_finish(&h[0], 60);
	mh_finish(&h[1], 60);
	mh_show_failed(2, h);
	for (int r = 0; r < 2; r++) {
		assert_int_equal(h[r].status, 0);
		assert_contains(mh_slurp(h[r].out), "stopped at epoch ");
	}
	char *e0 = strdup(mh_slurp(h[0].err));
	for (int k = 2; k < 6; k++)
		if (h[k].status == 0)
			mh_show(&h[k], "joiner");
	assert_int_not_equal(h[2].status, 0);
	assert_int_not_equal(h[3].status, 0);
	assert_int_not_equal(h[4].status, 0);
	assert_contains(mh_slurp(h[2].err), "refused this host: joining host (");
	assert_contains(mh_slurp(h[2].err), ") starts 2 nodes x 1 threads, host 0 1 x 1: every host must use the same -n and -t");
	assert_contains(mh_slurp(h[3].err), ") runs a different program binary (sha256 ");
	assert_contains(mh_slurp(h[4].err), "refused this host or failed: wrong job token");
	assert_int_not_equal(h[5].status, 0);
	assert_contains(mh_slurp(h[5].err), "refused this host: its tables differ from the job's");
	assert_contains(e0, "its tables differ from the job's");
	assert_contains(e0, "starts 2 nodes x 1 threads, host 0 1 x 1: every host must use the same -n and -t; the job goes on");
	assert_contains(e0, "runs a different program binary (sha256 ");
	assert_contains(e0, ": wrong job token; the job goes on");
	free(e0);
	assert_true(mh_port_free(port));
	mh_assert_clean(&segs);
}

/* (c): host 2 leaves; by SIGTERM under --drain, or psstat --leave 2. */
static void leave(bool by_psstat)
{
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct mh_proc h[3];
	unsigned port = mh_free_port();
	const char *prog[] = {mh_self, "--node", "leave", NULL};
	static char store[3][96];
	for (int r = 0; r < 3; r++) {
		const char *argv[64];
		member_argv(argv, store[r], 3, r, port, prog, "--drain", NULL);
		char name[32];
		snprintf(name, sizeof name, "leave%d", r);
		mh_spawn(&h[r], name, (char *const *)argv, NULL);
	}
	wait_for_output(h, 3, 2, "elastic: host 2 epoch 3");
	if (by_psstat) {
		/* on host 0: psstat reaches its psrun, whose bridge forwards the
		 * request to host 2 */
		char seg[128];
		const char *l = strstr(mh_slurp(h[0].out), "elastic: host 0 segment ");
		assert_non_null(l);
		snprintf(seg, sizeof seg, "%.*s", (int)strcspn(l + 24, "\n"), l + 24);
		const char *argv[] = {build_path("bin/psstat"), "--leave", "2", seg, NULL};
		struct mh_proc s;
		mh_spawn(&s, "psstat", (char *const *)argv, NULL);
		if (mh_finish(&s, 20) != 0)
			mh_show(&s, "psstat");
		assert_int_equal(s.status, 0);
	} else {
		kill(h[2].pid, SIGTERM);
	}
	for (int r = 0; r < 3; r++)
		mh_finish(&h[r], 60);
	mh_show_failed(3, h);
	for (int r = 0; r < 3; r++)
		assert_int_equal(h[r].status, 0);
	const char *o2 = mh_slurp(h[2].out);
	assert_contains(o2, "elastic: host 2: left at epoch ");
	unsigned long long at = strtoull(strstr(o2, "left at epoch ") + 14, NULL, 10);
	char want[128];
	for (int r = 0; r < 2; r++) {
		snprintf(want, sizeof want, "elastic: host %d: 2 hosts from epoch %llu [1 1 0 0]", r, at);
		assert_contains(mh_slurp(h[r].out), want);
		assert_contains(mh_slurp(h[r].err), "leaves the job at barrier ");
	}
	assert_contains(mh_slurp(h[2].err), "this host leaves the job at barrier ");
	snprintf(want, sizeof want, "elastic: host 2: drained: %s", ps_strerror(0));
	assert_contains(mh_slurp(h[2].out), want);
	for (int r = 0; r < 2; r++) {
		/* the leaver's keys and counter were handed over: exact */
		const char *l = strstr(mh_slurp(h[r].out), "after the leave: pushes ");
		assert_non_null(l);
		printf("host %d %.*s\n", r, (int)strcspn(l, "\n"), l);
		assert_non_null(strstr(l, "; 0 wrong of 300; 0 words name host 2"));
		double c2 = 0;
		assert_int_equal(sscanf(l, "after the leave: pushes %*f %*f %lf", &c2), 1);
		assert_true(c2 > 0);
	}
	if (!by_psstat)
		assert_contains(mh_slurp(h[2].err), "SIGTERM with --drain");
	printf("host 2 left at epoch %llu (%s)\n", at, by_psstat ? "psstat --leave" : "SIGTERM --drain");
	assert_true(mh_port_free(port));
	mh_assert_clean(&segs);
}

static void test_a_host_leaves_on_sigterm_with_drain(void **state)
{
	(void)state;
	leave(false);
}

static void test_a_host_leaves_on_psstat_leave(void **state)
{
	(void)state;
	leave(true);
}

/* Waits (polled) until p's stderr has text. */
static void wait_for_err(struct mh_proc *all, int n, int who, const char *text)
{
	for (int i = 0; i < 1200 && !strstr(mh_slurp(all[who].err), text); i++)
		usleep(50 * 1000);
	if (!strstr(mh_slurp(all[who].err), text)) {
		for (int r = 0; r < n; r++) {
			mh_finish(&all[r], 0);
			mh_show(&all[r], "host");
		}
		fail_msg("\"%s\" not in host %d's stderr within 60 s", text, who);
	}
}

/* How the join and the leave meet in (e). */
enum jl_order {
	JL_SAME_SYNC,  /* both at the gated ps_sync_hosts of GATE_EPOCH */
	JL_LEAVE_FIRST, /* host 1 left before the joiner connects */
	JL_JOIN_FIRST,  /* host 1 asked to leave once the joiner is in */
};

/* Asks host 1 to leave: SIGTERM to its psrun (--drain), or psstat --leave
 * 1 on host 0 (its psrun's bridge forwards the request). */
static void ask_host1_to_leave(struct mh_proc *h, bool by_psstat)
{
	if (!by_psstat) {
		kill(h[1].pid, SIGTERM);
		return;
	}
	char seg[128];
	const char *l = strstr(mh_slurp(h[0].out), "elastic: host 0 segment ");
	assert_non_null(l);
	snprintf(seg, sizeof seg, "%.*s", (int)strcspn(l + 24, "\n"), l + 24);
	const char *argv[] = {build_path("bin/psstat"), "--leave", "1", seg, NULL};
	struct mh_proc s;
	mh_spawn(&s, "psstat", (char *const *)argv, NULL);
	if (mh_finish(&s, 20) != 0)
		mh_show(&s, "psstat");
	assert_int_equal(s.status, 0);
}

static void join_and_leave(enum jl_order order, bool by_psstat, const char *nodes, bool cont)
{
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct mh_proc h[4];
	unsigned port = mh_free_port();
	char gate[256];
	snprintf(gate, sizeof gate, "%s/gate-jl", mh_tmpdir);
	unlink(gate);
	const char *prog[] = {mh_self, "--node", "jl", order == JL_SAME_SYNC ? gate : NULL, NULL};
	static char store[3][96], coord[32];
	for (int r = 0; r < 3; r++) {
		const char *argv[64];
		member_argv(argv, store[r], 3, r, port, prog, "--drain", cont ? "--on-host-failure=continue" : NULL);
		argv[2] = nodes;
		char name[32];
		snprintf(name, sizeof name, "jl%d", r);
		mh_spawn(&h[r], name, (char *const *)argv, NULL);
	}
	const char *jargv[64];
	join_argv(jargv, coord, port, nodes, mh_token_path, prog);
	if (cont) { /* the joiner's own flag, before the program */
		int i = 0;
		while (jargv[i] != prog[0])
			i++;
		for (int j = i + 4; j >= i; j--) /* the program's 4 words and NULL */
			jargv[j + 1] = jargv[j];
		jargv[i] = "--on-host-failure=continue";
	}
	switch (order) {
	case JL_SAME_SYNC:
		for (int r = 0; r < 3; r++) {
			char at[64];
			snprintf(at, sizeof at, "elastic: host %d at the gate", r);
			wait_for_output(h, 3, r, at);
		}
		ask_host1_to_leave(h, by_psstat);
		wait_for_err(h, 3, 1, "asked to leave");
		mh_spawn(&h[3], "jl3", (char *const *)jargv, NULL);
		for (int r = 0; r < 3; r++) /* READY: every member lists it at the gated sync */
			wait_for_err(h, 4, r, "is ready to join");
		FILE *f = fopen(gate, "w");
		assert_non_null(f);
		fclose(f);
		break;
	case JL_LEAVE_FIRST:
		wait_for_output(h, 3, 0, "elastic: host 0 epoch 3");
		ask_host1_to_leave(h, by_psstat);
		wait_for_output(h, 3, 0, "elastic: host 0: host 1 left at epoch ");
		mh_spawn(&h[3], "jl3", (char *const *)jargv, NULL);
		break;
	case JL_JOIN_FIRST:
		wait_for_output(h, 3, 0, "elastic: host 0 epoch 3");
		mh_spawn(&h[3], "jl3", (char *const *)jargv, NULL);
		wait_for_output(h, 4, 3, "elastic: host 3 joined at epoch ");
		ask_host1_to_leave(h, by_psstat);
		break;
	}
	for (int r = 0; r < 4; r++)
		mh_finish(&h[r], 120);
	mh_show_failed(4, h);
	for (int r = 0; r < 4; r++)
		assert_int_equal(h[r].status, 0);
	const char *o1 = mh_slurp(h[1].out);
	assert_contains(o1, "elastic: host 1: left at epoch ");
	unsigned long long left = strtoull(strstr(o1, "left at epoch ") + 14, NULL, 10);
	char want[160];
	snprintf(want, sizeof want, "elastic: host 1: drained: %s", ps_strerror(0));
	assert_contains(o1, want);
	const char *o3 = mh_slurp(h[3].out);
	assert_contains(o3, "elastic: host 3 joined at epoch ");
	unsigned long long joined = strtoull(strstr(o3, "joined at epoch ") + 16, NULL, 10);
	if (order == JL_SAME_SYNC) {
		assert_int_equal(left, GATE_EPOCH);
		assert_int_equal(joined, GATE_EPOCH);
		/* admitted where host 1 left: its place among 0, 2, 3 is 2 */
		assert_contains(o3, ": 3 hosts [1 0 1 1], holding 100 keys");
	} else if (order == JL_LEAVE_FIRST) {
		assert_true(joined > left);
		assert_contains(o3, ": 3 hosts [1 0 1 1], holding 100 keys");
	} else {
		assert_true(left > joined);
		assert_contains(o3, ": 4 hosts [1 1 1 1], holding ");
	}
	for (int r = 0; r < 4; r++) {
		if (r == 1)
			continue;
		const char *out = mh_slurp(h[r].out);
		snprintf(want, sizeof want, "elastic: host %d: joined %d; alive 3 [1 0 1 1]; pushes ", r, r == 3);
		assert_contains(out, want);
		assert_contains(out, "; 0 wrong of 300; 0 words name host 1");
		const char *l = strstr(out, want);
		printf("%.*s\n", (int)strcspn(l, "\n"), l);
		/* the leaver's pushes count, and so do the joiner's */
		double c[4];
		assert_int_equal(sscanf(strstr(l, "pushes "), "pushes %lf %lf %lf %lf", &c[0], &c[1], &c[2], &c[3]), 4);
		assert_true(c[1] > 0 && c[3] > 0);
	}
	printf("host 1 left at epoch %llu, host 3 joined at epoch %llu (%s, %s, -n %s%s)\n", left, joined,
	       order == JL_SAME_SYNC ? "same ps_sync_hosts" : order == JL_LEAVE_FIRST ? "leave first" : "join first",
	       by_psstat ? "psstat --leave" : "SIGTERM --drain", nodes, cont ? ", continue: backups on" : "");
	assert_true(mh_port_free(port));
	mh_assert_clean(&segs);
	unlink(gate);
}

static void test_a_join_and_a_leave_at_one_sync_keep_every_push(void **state)
{
	(void)state;
	join_and_leave(JL_SAME_SYNC, false, "1", false);
}

static void test_a_join_and_a_psstat_leave_at_one_sync_two_nodes_keep_every_push(void **state)
{
	(void)state;
	join_and_leave(JL_SAME_SYNC, true, "2", false);
}

static void test_a_leave_then_a_join_keep_every_push(void **state)
{
	(void)state;
	join_and_leave(JL_LEAVE_FIRST, false, "1", false);
}

static void test_a_join_then_a_psstat_leave_keep_every_push(void **state)
{
	(void)state;
	join_and_leave(JL_JOIN_FIRST, true, "1", false);
}

/* Backups on: host 1 is b(0) and the backup host of the joiner's keys
 * (the initial hosts' ring: b(3) = 1); both re-form at its leave (BK2). */
static void test_a_join_and_a_leave_at_one_sync_under_continue_keep_every_push(void **state)
{
	(void)state;
	join_and_leave(JL_SAME_SYNC, false, "1", true);
}

static void test_a_join_then_a_leave_of_the_joiners_backup_host_under_continue(void **state)
{
	(void)state;
	join_and_leave(JL_JOIN_FIRST, false, "1", true);
}

/* (f): hosts 1 and 2 both asked to leave (SIGTERM, --drain) before one
 * gated ps_sync_hosts. */
static void test_two_hosts_asked_to_leave_at_one_sync_leave_one_by_one(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct mh_proc h[4];
	unsigned port = mh_free_port();
	char gate[256];
	snprintf(gate, sizeof gate, "%s/gate-two", mh_tmpdir);
	unlink(gate);
	const char *prog[] = {mh_self, "--node", "two", gate, NULL};
	static char store[4][96];
	for (int r = 0; r < 4; r++) {
		const char *argv[64];
		member_argv(argv, store[r], 4, r, port, prog, "--drain", NULL);
		char name[32];
		snprintf(name, sizeof name, "two%d", r);
		mh_spawn(&h[r], name, (char *const *)argv, NULL);
	}
	for (int r = 0; r < 4; r++) {
		char at[64];
		snprintf(at, sizeof at, "elastic: host %d at the gate", r);
		wait_for_output(h, 4, r, at);
	}
	kill(h[1].pid, SIGTERM);
	kill(h[2].pid, SIGTERM);
	wait_for_err(h, 4, 1, "asked to leave");
	wait_for_err(h, 4, 2, "asked to leave");
	FILE *f = fopen(gate, "w");
	assert_non_null(f);
	fclose(f);
	for (int r = 0; r < 4; r++)
		mh_finish(&h[r], 120);
	mh_show_failed(4, h);
	for (int r = 0; r < 4; r++)
		assert_int_equal(h[r].status, 0);
	unsigned long long at[4] = {0};
	char want[128];
	for (int r = 1; r <= 2; r++) {
		const char *o = mh_slurp(h[r].out);
		snprintf(want, sizeof want, "elastic: host %d: left at epoch ", r);
		assert_contains(o, want);
		at[r] = strtoull(strstr(o, want) + strlen(want), NULL, 10);
		snprintf(want, sizeof want, "elastic: host %d: drained: %s", r, ps_strerror(0));
		assert_contains(o, want);
	}
	/* one leaver a SYNC: the lower rank at the gated one, the other at a
	 * later one (once host 1's LEFT came: its drain is over) */
	assert_int_equal(at[1], GATE_EPOCH);
	assert_true(at[2] > at[1]);
	for (int r = 0; r <= 3; r += 3) {
		const char *out = mh_slurp(h[r].out);
		snprintf(want, sizeof want, "elastic: host %d: 2 hosts from epoch %llu [1 0 0 1]", r, at[2]);
		assert_contains(out, want);
		const char *l = strstr(out, "after the leaves: pushes ");
		assert_non_null(l);
		printf("host %d %.*s\n", r, (int)strcspn(l, "\n"), l);
		assert_non_null(strstr(l, "; 0 wrong of 300; 0 words name host 1 or 2"));
		double c[4];
		assert_int_equal(sscanf(l, "after the leaves: pushes %lf %lf %lf %lf", &c[0], &c[1], &c[2], &c[3]), 4);
		assert_true(c[1] > 0 && c[2] > 0);
	}
	assert_true(mh_port_free(port));
	mh_assert_clean(&segs);
	unlink(gate);
}

/* psstat --leave (a SIGUSR2 from sigqueue) while psrun waits at the
 * rendezvous for a host not started yet: the rendezvous goes on (the
 * signal is read once the bridge runs: a rank of -1 is refused with the
 * reason), then the missing host comes and the job finishes. */
static void test_a_leave_signal_during_the_rendezvous_does_not_cancel_it(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct mh_proc h[2];
	unsigned port = mh_free_port();
	const char *prog[] = {mh_self, "--node", "nonelastic", NULL};
	static char store[2][96];
	const char *argv[2][64];
	for (int r = 0; r < 2; r++)
		member_argv(argv[r], store[r], 2, r, port, prog, NULL, NULL);
	mh_spawn(&h[0], "rdv0", (char *const *)argv[0], NULL);
	/* a connection that says nothing: host 0 logs its refusal from
	 * inside the rendezvous (its signals are set up by then) */
	int fd = -1;
	for (int i = 0; i < 1200; i++) {
		fd = socket(AF_INET, SOCK_STREAM, 0);
		assert_true(fd >= 0);
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0)
			break;
		close(fd);
		fd = -1;
		usleep(50 * 1000); /* polled: host 0 not listening yet */
	}
	assert_true(fd >= 0);
	close(fd);
	wait_for_err(h, 1, 0, "refused a connection from");
	union sigval v = {.sival_int = -1};
	assert_int_equal(sigqueue(h[0].pid, SIGUSR2, v), 0);
	mh_spawn(&h[1], "rdv1", (char *const *)argv[1], NULL);
	for (int r = 0; r < 2; r++)
		mh_finish(&h[r], 30);
	mh_show_failed(2, h);
	for (int r = 0; r < 2; r++) {
		assert_int_equal(h[r].status, 0);
		char want[96];
		snprintf(want, sizeof want, "elastic: host %d: joined 0, 5 syncs over 2 hosts", r);
		assert_contains(mh_slurp(h[r].out), want);
	}
	assert_contains(mh_slurp(h[0].err), "leave request for host -1 ignored: not a host rank");
	assert_true(mh_port_free(port));
	mh_assert_clean(&segs);
}

/* (f) again: host 1, asked to leave first, is held in its drain (the
 * test-build hook PSMEM_DEBUG_DRAIN_STOP=1:GATE, after its TAKE step: its
 * keys are at b(1) = host 2, no LEFT yet) while host 2 is asked to leave:
 * host 2 must not be let go before host 1's LEFT (its drain would carry
 * host 1's keys away while host 1 still sends its directory there):
 * 20 syncs on it is still present; then the gate opens and both leave,
 * every key exact. */
static void test_a_leave_waits_while_another_host_drains(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct mh_proc h[4];
	unsigned port = mh_free_port();
	char gate[256], hook[300];
	snprintf(gate, sizeof gate, "%s/gate-drain", mh_tmpdir);
	unlink(gate);
	snprintf(hook, sizeof hook, "1:%s", gate);
	const char *prog[] = {mh_self, "--node", "two", "-", "trace", NULL};
	static char store[4][96];
	setenv("PSMEM_DEBUG_DRAIN_STOP", hook, 1);
	for (int r = 0; r < 4; r++) {
		const char *argv[64];
		member_argv(argv, store[r], 4, r, port, prog, "--drain", NULL);
		char name[32];
		snprintf(name, sizeof name, "dw%d", r);
		mh_spawn(&h[r], name, (char *const *)argv, NULL);
	}
	unsetenv("PSMEM_DEBUG_DRAIN_STOP");
	wait_for_output(h, 4, 0, "elastic: host 0 epoch 2 ");
	kill(h[1].pid, SIGTERM);
	wait_for_output(h, 4, 1, "psmem: test hook: host 1 waits after its drain's take step");
	kill(h[2].pid, SIGTERM);
	wait_for_err(h, 4, 2, "asked to leave");
	/* host 0's latest epoch now, then 20 more */
	const char *o = mh_slurp(h[0].out), *l = NULL;
	for (const char *q = o; (q = strstr(q, "elastic: host 0 epoch ")); q++)
		l = q;
	assert_non_null(l);
	unsigned long long now = strtoull(l + 22, NULL, 10);
	char want[128];
	snprintf(want, sizeof want, "elastic: host 0 epoch %llu [", now + 20);
	wait_for_output(h, 4, 0, want);
	snprintf(want, sizeof want, "elastic: host 0 epoch %llu [1 0 1 1]", now + 20);
	char *o0 = strdup(mh_slurp(h[0].out));
	assert_non_null(o0);
	FILE *f = fopen(gate, "w");
	assert_non_null(f);
	fclose(f);
	for (int r = 0; r < 4; r++)
		mh_finish(&h[r], 120);
	mh_show_failed(4, h);
	assert_contains(o0, want); /* host 2 still present 20 syncs on */
	free(o0);
	for (int r = 0; r < 4; r++)
		assert_int_equal(h[r].status, 0);
	unsigned long long at[3] = {0};
	for (int r = 1; r <= 2; r++) {
		const char *out = mh_slurp(h[r].out);
		snprintf(want, sizeof want, "elastic: host %d: left at epoch ", r);
		assert_contains(out, want);
		at[r] = strtoull(strstr(out, want) + strlen(want), NULL, 10);
		snprintf(want, sizeof want, "elastic: host %d: drained: %s", r, ps_strerror(0));
		assert_contains(out, want);
	}
	assert_true(at[2] > now + 20);
	for (int r = 0; r <= 3; r += 3) {
		const char *out = mh_slurp(h[r].out);
		const char *a = strstr(out, "after the leaves: pushes ");
		assert_non_null(a);
		printf("host %d %.*s\n", r, (int)strcspn(a, "\n"), a);
		assert_non_null(strstr(a, "; 0 wrong of 300; 0 words name host 1 or 2"));
	}
	printf("host 1 left at epoch %llu, held in its drain; host 2 asked at %llu, left at %llu\n", at[1], now,
	       at[2]);
	assert_true(mh_port_free(port));
	mh_assert_clean(&segs);
	unlink(gate);
}

int main(int argc, char **argv)
{
	if (argc >= 4 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "storm") == 0)
		return storm_main(atoi(argv[3]));
	if (argc >= 4 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "plain") == 0)
		return plain_main(argv[3], argc >= 5);
	if (argc >= 3 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "leave") == 0)
		return leave_main();
	if (argc >= 3 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "jl") == 0)
		return jl_main(argc >= 4 ? argv[3] : NULL);
	if (argc >= 4 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "two") == 0)
		return two_main(strcmp(argv[3], "-") ? argv[3] : NULL, argc >= 5);
	if (argc >= 3 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "jlost") == 0)
		return jlost_main();
	if (argc >= 3 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "nonelastic") == 0)
		return nonelastic_main();
	if (argc >= 4 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "ckpt") == 0)
		return ckpt_main(argv[3]);
	if (argc >= 3 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "pending") == 0)
		return pending_main();
	if (!self_exe(mh_self, sizeof mh_self))
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_elastic_flags_are_refused),
		cmocka_unit_test(test_sync_hosts_without_elastic_is_a_barrier_over_hosts),
		cmocka_unit_test(test_an_elastic_job_checkpoints),
		cmocka_unit_test(test_a_joiner_takes_a_share_and_every_push_counts),
		cmocka_unit_test(test_two_joiners_at_once),
		cmocka_unit_test(test_a_joiner_that_differs_is_refused_and_the_job_goes_on),
		cmocka_unit_test(test_a_joiner_lost_after_admission_is_dropped_and_its_keys_promoted),
		cmocka_unit_test(test_a_pending_joiner_stops_when_the_job_ends),
		cmocka_unit_test(test_a_host_leaves_on_sigterm_with_drain),
		cmocka_unit_test(test_a_host_leaves_on_psstat_leave),
		cmocka_unit_test(test_a_join_and_a_leave_at_one_sync_keep_every_push),
		cmocka_unit_test(test_a_join_and_a_psstat_leave_at_one_sync_two_nodes_keep_every_push),
		cmocka_unit_test(test_a_leave_then_a_join_keep_every_push),
		cmocka_unit_test(test_a_join_then_a_psstat_leave_keep_every_push),
		cmocka_unit_test(test_a_join_and_a_leave_at_one_sync_under_continue_keep_every_push),
		cmocka_unit_test(test_a_join_then_a_leave_of_the_joiners_backup_host_under_continue),
		cmocka_unit_test(test_two_hosts_asked_to_leave_at_one_sync_leave_one_by_one),
		cmocka_unit_test(test_a_leave_signal_during_the_rendezvous_does_not_cancel_it),
		cmocka_unit_test(test_a_leave_waits_while_another_host_drains),
	};
	const char *filter = getenv("PSMEM_TEST_FILTER");
	if (filter)
		cmocka_set_test_filter(filter);
	return cmocka_run_group_tests(tests, mh_setup, mh_teardown);
}
