/*
 * test_hosts_ckpt_elastic.c - checkpoints of elastic jobs and after a lost
 * or departed host: parts by home now (checkpoint.c CKH5, docs/DESIGN.md
 * "Checkpoints across hosts").  One node a host on 127.0.0.1.
 *
 * The binary is the cmocka driver and, under psrun, the node program
 * "--node ck ROLE PATH": one table of KEYS keys x VLEN floats, every host
 * pushing +1 to every float of every key, and
 *   join     hosts 0 and 1 (--elastic) push in epochs ended by
 *            ps_sync_hosts until a third host (psrun --join) is admitted;
 *            it takes its share of keys (EL6); one more epoch of pushes
 *            by all three, then ps_checkpoint(PATH) on every node, the
 *            values pulled (host 0 writes them to PATH.want), and
 *            ps_restore(PATH) in the running job, which must be refused
 *            (keys held at the joiner are not at home, CKH2);
 *   lose     3 hosts under --on-host-failure continue push ROUNDS rounds
 *            with a barrier each; host 2 stops and the driver SIGKILLs it
 *            (25 backup periods later, as test_hosts_fail); the survivors'
 *            barrier completes over 2 hosts, then ps_checkpoint(PATH):
 *            host 0 = b(2) writes PATH and PATH.host2; the values (host
 *            2's promoted) are checked exact and go to PATH.want; then
 *            ps_restore(PATH) in the running job (host 0 reads two parts)
 *            leaves every value as it was;
 *   leave    3 hosts (--elastic --drain) push in epochs; host 2 gets
 *            SIGTERM, leaves at a ps_sync_hosts and drains into b(2) =
 *            host 0; the survivors checkpoint (waiting for its LEFT), the
 *            values must be exact, PATH.want, running restore as in lose;
 *   midkill  3 hosts under continue: a first checkpoint (values to
 *            PATH.want), more pushes, a second checkpoint to the same
 *            PATH in which host 2's node dies once its temp file is
 *            durable (PSMEM_DEBUG_CKPT_DIE=2:written:2, test builds): the
 *            survivors' second ps_checkpoint fails with the reason;
 *   poll     as join up to the admission, then epochs of a push and a
 *            ps_checkpoint_poll until one wrote (psstat --checkpoint on
 *            the joiner's segment);
 *   restore  ps_restore(NULL) of psrun --restore, then the values must
 *            equal PATH.want exactly.
 * A fresh job of the initial host count restores every checkpoint above
 * (the joiner's also as a fresh elastic job).
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "hosts.h"
#include "psmem.h"

#define KEYS      300
#define VLEN      2
#define ROUNDS    5
#define MAX_EPOCH 100000 /* a joiner never admitted: fail, not hang */

/* ------------------------------------------------------------ node */

static int say(int me, const char *what, int rc)
{
	printf("ck: host %d: %s: %s\n", me, what, ps_strerror(rc));
	fflush(stdout);
	return 1;
}

static ps_key keys[KEYS];
static float ones[KEYS * VLEN];

static int push_all(ps_table *t)
{
	return ps_push_sync(t, keys, KEYS, ones);
}

static int pull_all(ps_table *t, float *v)
{
	return ps_pull_sync(t, keys, KEYS, v);
}

static int write_want(const char *path, const float *v)
{
	char f[1100];
	snprintf(f, sizeof f, "%s.want", path);
	FILE *fp = fopen(f, "wb");
	if (!fp)
		return -errno;
	size_t n = fwrite(v, sizeof *v, KEYS * VLEN, fp);
	return fclose(fp) == 0 && n == KEYS * VLEN ? 0 : -EIO;
}

/* Floats of v that differ from PATH.want (-1: no such file). */
static int wrong_vs_want(const char *path, const float *v)
{
	char f[1100];
	float want[KEYS * VLEN];
	snprintf(f, sizeof f, "%s.want", path);
	FILE *fp = fopen(f, "rb");
	if (!fp)
		return -1;
	size_t n = fread(want, sizeof *want, KEYS * VLEN, fp);
	fclose(fp);
	if (n != KEYS * VLEN)
		return -1;
	int wrong = 0;
	for (int i = 0; i < KEYS * VLEN; i++)
		wrong += v[i] != want[i];
	return wrong;
}

/* Floats of v not equal to x. */
static int wrong_vs(const float *v, float x)
{
	int wrong = 0;
	for (int i = 0; i < KEYS * VLEN; i++)
		wrong += v[i] != x;
	return wrong;
}

/* ps_checkpoint on every node; host me's node 0 prints the outcome. */
static int checkpoint(ps_world *w, const char *path, const char *tag)
{
	int rc = ps_checkpoint(w, path);
	if (ps_node_id(w) == 0) {
		printf("ck: host %d %s: %d: %s\n", ps_host_id(w), tag, rc, rc ? ps_checkpoint_error(w) : "ok");
		fflush(stdout);
	}
	return rc;
}

/* After a checkpoint: the values to PATH.want (host 0), then a restore in
 * the running job; prints its outcome and whether any value changed. */
static int want_and_running_restore(ps_world *w, ps_table *t, const char *path, float *v)
{
	const int me = ps_host_id(w);
	int rc;
	if (me == 0 && (rc = write_want(path, v)) != 0)
		return say(me, "writing PATH.want", rc);
	int r = ps_restore(w, path);
	printf("ck: host %d running restore: %d: %s\n", me, r, r < 0 ? ps_checkpoint_error(w) : "ok");
	float after[KEYS * VLEN];
	if ((rc = pull_all(t, after)) != 0)
		return say(me, "pull after the running restore", rc);
	printf("ck: host %d unchanged %d\n", me, memcmp(v, after, sizeof after) == 0);
	fflush(stdout);
	return 0;
}

/* Hosts 0 and 1 push in epochs until the joiner is admitted; *epoch: the
 * last epoch synced (the joiner's first ps_sync_hosts returns it). */
static int admit(ps_world *w, ps_table *t, uint64_t *ep)
{
	const int me = ps_host_id(w);
	int rc, n = 0;
	uint64_t epoch = 0;
	if (ps_joined(w)) {
		/* the members' epoch: this host starts there, holding its share */
		if ((n = ps_sync_hosts(w, &epoch)) != 3)
			return say(me, "first ps_sync_hosts", n < 0 ? n : PS_EMISMATCH);
	} else {
		for (epoch = 1; n != 3 && epoch < MAX_EPOCH; epoch++) {
			if ((rc = push_all(t)) != 0)
				return say(me, "push", rc);
			if (me == 0 && epoch == 3) {
				printf("ck: host 0 epoch 3\n");
				fflush(stdout);
			}
			uint64_t e = epoch;
			if ((n = ps_sync_hosts(w, &e)) < 0)
				return say(me, "ps_sync_hosts", n);
			epoch = e;
		}
		if (n != 3)
			return say(me, "no joiner", -ETIMEDOUT);
		epoch--;
	}
	*ep = epoch;
	return 0;
}

static int join_main(ps_world *w, ps_table *t, const char *path)
{
	const int me = ps_host_id(w);
	int rc, n;
	uint64_t epoch;
	if ((rc = admit(w, t, &epoch)) != 0)
		return rc;
	int held = 0;
	for (int i = 0; i < KEYS; i++)
		held += ps_owner_host(t, keys[i]) == me;
	printf("ck: host %d joined %d holds %d keys\n", me, ps_joined(w), held);
	if ((rc = push_all(t)) != 0)
		return say(me, "push after the join", rc);
	uint64_t e = epoch + 1;
	if ((n = ps_sync_hosts(w, &e)) != 3)
		return say(me, "ps_sync_hosts after the join", n < 0 ? n : PS_EMISMATCH);
	if (checkpoint(w, path, "checkpoint") != 0)
		return 1;
	float v[KEYS * VLEN];
	if ((rc = pull_all(t, v)) != 0)
		return say(me, "pull", rc);
	/* every key got the same pushes: host 0's and 1's epochs, the last
	 * one by all three */
	printf("ck: host %d equal %d\n", me, wrong_vs(v, v[0]) == 0 && v[0] > 3);
	if ((rc = want_and_running_restore(w, t, path, v)) != 0)
		return rc;
	e = epoch + 2;
	if ((n = ps_sync_hosts(w, &e)) != 3)
		return say(me, "ps_sync_hosts at the end", n < 0 ? n : PS_EMISMATCH);
	return 0;
}

/* After the join: epochs of a push and a ps_checkpoint_poll (meta: the
 * epoch) until a poll wrote the checkpoint psstat --checkpoint asked the
 * joiner for, or 300 s passed. */
static int poll_main(ps_world *w, ps_table *t)
{
	const int me = ps_host_id(w);
	int rc;
	uint64_t epoch;
	if ((rc = admit(w, t, &epoch)) != 0)
		return rc;
	double give_up = mh_now() + 300;
	for (int e = 0;; e++) {
		if (mh_now() > give_up)
			return say(me, "no checkpoint asked", -ETIMEDOUT);
		if ((rc = push_all(t)) != 0)
			return say(me, "push", rc);
		int r = ps_checkpoint_poll(w, &e, sizeof e);
		if (r < 0) {
			printf("ck: host %d poll failed at %d: %s\n", me, e, ps_checkpoint_error(w));
			return 1;
		}
		if (r == 1) {
			printf("ck: host %d poll wrote a checkpoint at %d\n", me, e);
			break;
		}
		if (e == 0 && me == 2) {
			printf("ck: host 2 polling\n");
			fflush(stdout);
		}
		usleep(2000);
	}
	uint64_t e = epoch + 1;
	int n = ps_sync_hosts(w, &e);
	return n == 3 ? 0 : say(me, "ps_sync_hosts at the end", n < 0 ? n : PS_EMISMATCH);
}

static int lose_main(ps_world *w, ps_table *t, const char *path)
{
	const int me = ps_host_id(w);
	int rc;
	for (int r = 1; r <= ROUNDS; r++)
		if ((rc = push_all(t)) != 0 || (rc = ps_barrier(w)) != 0)
			return say(me, "round", rc);
	if (me == 2) {
		printf("ck: host 2 stops\n");
		fflush(stdout);
		for (;;)
			pause(); /* killed by the driver */
	}
	/* completes over the 2 hosts left once host 2 is dropped (BR-L1) */
	if ((rc = ps_barrier(w)) != 0)
		return say(me, "barrier for the loss", rc);
	uint8_t alive[4] = {9, 9, 9, 9};
	int n = ps_hosts_alive(w, alive, 4);
	printf("ck: host %d alive %d [%d %d %d]\n", me, n, alive[0], alive[1], alive[2]);
	if (checkpoint(w, path, "checkpoint") != 0)
		return 1;
	float v[KEYS * VLEN];
	if ((rc = pull_all(t, v)) != 0)
		return say(me, "pull", rc);
	/* host 2's keys promoted at host 0 with every push (the kill came
	 * long after the last one: outside the backup window) */
	printf("ck: host %d wrong %d\n", me, wrong_vs(v, 3.0f * ROUNDS));
	if ((rc = want_and_running_restore(w, t, path, v)) != 0)
		return rc;
	return ps_barrier(w) ? 1 : 0;
}

static int leave_main(ps_world *w, ps_table *t, const char *path)
{
	const int me = ps_host_id(w);
	int rc, n = 3;
	uint64_t epoch;
	for (epoch = 1; n == 3 && epoch < MAX_EPOCH; epoch++) {
		if ((rc = push_all(t)) != 0)
			return say(me, "push", rc);
		if (me == 2 && epoch == 3) {
			printf("ck: host 2 epoch 3\n");
			fflush(stdout);
		}
		uint64_t e = epoch;
		if ((n = ps_sync_hosts(w, &e)) < 0)
			return say(me, "ps_sync_hosts", n);
	}
	if (n == 0) { /* this host leaves: ps_finalize drains it into b(2) */
		printf("ck: host %d left\n", me);
		fflush(stdout);
		return 0;
	}
	if (n != 2)
		return say(me, "nobody left", -ETIMEDOUT);
	/* waits for host 2's LEFT (its keys handed over) */
	if (checkpoint(w, path, "checkpoint") != 0)
		return 1;
	float v[KEYS * VLEN];
	if ((rc = pull_all(t, v)) != 0)
		return say(me, "pull", rc);
	/* every host pushed once an epoch, host 2 until the one it left at */
	printf("ck: host %d equal %d\n", me, wrong_vs(v, v[0]) == 0 && v[0] >= 9);
	if ((rc = want_and_running_restore(w, t, path, v)) != 0)
		return rc;
	return ps_barrier(w) ? 1 : 0;
}

static int midkill_main(ps_world *w, ps_table *t, const char *path)
{
	const int me = ps_host_id(w);
	int rc;
	if ((rc = push_all(t)) != 0 || (rc = ps_barrier(w)) != 0)
		return say(me, "round", rc);
	if (checkpoint(w, path, "first") != 0)
		return 1;
	float v[KEYS * VLEN];
	if ((rc = pull_all(t, v)) != 0)
		return say(me, "pull", rc);
	if (me == 0 && (rc = write_want(path, v)) != 0)
		return say(me, "writing PATH.want", rc);
	/* every host pulled before any pushes again */
	if ((rc = ps_barrier(w)) != 0 || (rc = push_all(t)) != 0 || (rc = ps_barrier(w)) != 0)
		return say(me, "round", rc);
	/* host 2 dies in here (the test hook) */
	rc = checkpoint(w, path, "second");
	if (rc == 0)
		return 1;
	return ps_barrier(w) ? 1 : 0;
}

static int restore_main(ps_world *w, ps_table *t, const char *path)
{
	const int me = ps_host_id(w);
	int rc = ps_restore(w, NULL); /* psrun --restore */
	if (rc < 0) {
		printf("ck: host %d restore: %s\n", me, ps_checkpoint_error(w));
		return 1;
	}
	float v[KEYS * VLEN];
	if ((rc = pull_all(t, v)) != 0)
		return say(me, "pull", rc);
	printf("ck: host %d restored: %d wrong\n", me, wrong_vs_want(path, v));
	fflush(stdout);
	return ps_barrier(w) ? 1 : 0;
}

static int ck_main(const char *role, const char *path)
{
	for (int i = 0; i < KEYS; i++)
		keys[i] = (ps_key)i;
	for (int i = 0; i < KEYS * VLEN; i++)
		ones[i] = 1.0f;
	int err;
	ps_world *w = ps_init(&err);
	if (!w)
		return 1;
	ps_table_opts o;
	ps_table_opts_init(&o, KEYS, VLEN);
	ps_table *t = ps_table_create(w, &o, &err);
	if (!t)
		return say(ps_host_id(w), "table", err);
	int rc = !strcmp(role, "join")      ? join_main(w, t, path)
		 : !strcmp(role, "poll")    ? poll_main(w, t)
		 : !strcmp(role, "lose")    ? lose_main(w, t, path)
		 : !strcmp(role, "leave")   ? leave_main(w, t, path)
		 : !strcmp(role, "midkill") ? midkill_main(w, t, path)
		 : !strcmp(role, "restore") ? restore_main(w, t, path)
					    : 2;
	fflush(stdout);
	int frc = ps_finalize(w);
	if (frc)
		say(ps_host_id(w), "ps_finalize", frc);
	return rc ? rc : frc ? 1 : 0;
}

/* ------------------------------------------------------------ driver */

static char P[256];

static void pathf(char *out, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void pathf(char *out, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(out, len, fmt, ap);
	va_end(ap);
}

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* Part R of PATH: names its host count and rank (file format v2). */
static void assert_part(const char *path, int r, uint32_t hosts)
{
	char f[300];
	if (r)
		pathf(f, sizeof f, "%s.host%d", path, r);
	else
		pathf(f, sizeof f, "%s", path);
	FILE *fp = fopen(f, "rb");
	if (!fp)
		fail_msg("part %d: %s is missing", r, f);
	unsigned char h[56];
	size_t n = fread(h, 1, sizeof h, fp);
	fclose(fp);
	assert_int_equal(n, sizeof h);
	uint32_t ver, hh, rank;
	memcpy(&ver, h + 8, 4);
	memcpy(&hh, h + 40, 4);
	memcpy(&rank, h + 44, 4);
	assert_int_equal(ver, 2);
	assert_int_equal(hh, hosts);
	assert_int_equal(rank, (uint32_t)r);
}

static int temps_left(void)
{
	DIR *d = opendir(mh_tmpdir);
	int n = 0;
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL)
		n += strstr(e->d_name, ".tmp.") != NULL;
	if (d)
		closedir(d);
	return n;
}

/* Starts host r of hosts (pre: psrun flags before the program). */
static void start(struct mh_proc *p, const char *tag, int hosts, int r, unsigned port, const char *const pre[],
		  const char *role, const char *path, char *const env[])
{
	static char store[4][96];
	const char *prog[24];
	int n = 0;
	for (int i = 0; pre && pre[i]; i++)
		prog[n++] = pre[i];
	prog[n++] = mh_self;
	prog[n++] = "--node";
	prog[n++] = "ck";
	prog[n++] = role;
	prog[n++] = path;
	prog[n] = NULL;
	const char *argv[64];
	mh_psrun_argv(argv, store[r], 1, hosts, r, port, prog);
	char name[32];
	snprintf(name, sizeof name, "%s%d", tag, r);
	mh_spawn(p, name, (char *const *)argv, env);
}

/* Waits (the nodes' own output, polled) until host who printed text. */
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

/* A fresh job of hosts (elastic: psrun --elastic) restores PATH (psrun
 * --restore): every value equals PATH.want. */
static void restore_fresh_as(const char *path, int hosts, bool elastic)
{
	unsigned port = mh_free_port();
	struct mh_proc p[3];
	const char *pre[] = {"--restore", path, elastic ? "--elastic" : NULL, NULL};
	for (int r = 0; r < hosts; r++)
		start(&p[r], "restore", hosts, r, port, pre, "restore", path, NULL);
	for (int r = 0; r < hosts; r++)
		mh_finish(&p[r], 60);
	mh_show_failed(hosts, p);
	for (int r = 0; r < hosts; r++) {
		char want[64];
		assert_int_equal(p[r].status, 0);
		snprintf(want, sizeof want, "ck: host %d restored: 0 wrong\n", r);
		assert_contains(mh_slurp(p[r].out), want);
	}
	assert_true(mh_port_free(port));
}

static void restore_fresh(const char *path, int hosts)
{
	restore_fresh_as(path, hosts, false);
}

static void expect(const struct mh_proc *p, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void expect(const struct mh_proc *p, int r, const char *fmt, ...)
{
	char want[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(want, sizeof want, fmt, ap);
	va_end(ap);
	assert_contains(mh_slurp(p[r].out), want);
}

static void test_an_elastic_job_with_a_joiner_checkpoints_its_initial_homes(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	pathf(P, sizeof P, "%s/join.ckpt", mh_tmpdir);
	struct mh_proc h[3];
	unsigned port = mh_free_port();
	const char *pre[] = {"--elastic", NULL};
	for (int r = 0; r < 2; r++)
		start(&h[r], "join", 2, r, port, pre, "join", P, NULL);
	wait_for_output(h, 2, 0, "ck: host 0 epoch 3");
	char coord[32];
	snprintf(coord, sizeof coord, "127.0.0.1:%u", port);
	const char *argv[] = {build_path("bin/psrun"), "-n", "1", "--join", coord, "--token-file", mh_token_path,
			      mh_self, "--node", "ck", "join", P, NULL};
	mh_spawn(&h[2], "join2", (char *const *)argv, NULL);
	for (int r = 0; r < 3; r++)
		mh_finish(&h[r], 120);
	mh_show_failed(3, h);
	for (int r = 0; r < 3; r++) {
		assert_int_equal(h[r].status, 0);
		expect(h, r, "ck: host %d checkpoint: 0: ok\n", r);
		expect(h, r, "ck: host %d equal 1\n", r);
		/* keys held at the joiner are not at home: refused, unchanged */
		expect(h, r, "ck: host %d running restore: %d: ", r, r < 2 ? -ENOTSUP : PS_ECKPT);
		expect(h, r, "ck: host %d unchanged 1\n", r);
	}
	/* EL6: the joiner holds its share (every 3rd key) */
	expect(h, 2, "ck: host 2 joined 1 holds 100 keys\n");
	expect(h, 0, "is held by host 2; a restore needs every key at its home host");
	/* parts of the initial homes only, of a 2-host job */
	assert_part(P, 0, 2);
	assert_part(P, 1, 2);
	char h2[300];
	pathf(h2, sizeof h2, "%s.host2", P);
	assert_false(exists(h2));
	assert_int_equal(temps_left(), 0);
	assert_true(mh_port_free(port));
	restore_fresh(P, 2);
	restore_fresh_as(P, 2, true); /* an elastic job of 2 (64 rank slots) too */
	mh_assert_clean(&segs);
}

/* psstat --checkpoint pointed at the joiner: every host serves it at the
 * same ps_checkpoint_poll (CKH4), the parts are the homes' (CKH5). */
static void test_psstat_on_a_joiner_checkpoints_the_elastic_job(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	char q[300], qh1[300], qh2[300];
	pathf(q, sizeof q, "%s/asked.ckpt", mh_tmpdir);
	pathf(qh1, sizeof qh1, "%s.host1", q);
	pathf(qh2, sizeof qh2, "%s.host2", q);
	struct mh_proc h[3];
	unsigned port = mh_free_port();
	const char *pre[] = {"--elastic", NULL};
	for (int r = 0; r < 2; r++)
		start(&h[r], "poll", 2, r, port, pre, "poll", "-", NULL);
	wait_for_output(h, 2, 0, "ck: host 0 epoch 3");
	char coord[32];
	snprintf(coord, sizeof coord, "127.0.0.1:%u", port);
	const char *argv[] = {build_path("bin/psrun"), "-n", "1", "--join", coord, "--token-file", mh_token_path,
			      mh_self, "--node", "ck", "poll", "-", NULL};
	mh_spawn(&h[2], "poll2", (char *const *)argv, NULL);
	wait_for_output(h, 3, 2, "ck: host 2 polling");
	pid_t n0 = psrun_node_pid_wait(h[2].pid, 0, 60);
	if (n0 <= 0) {
		for (int r = 0; r < 3; r++) {
			mh_finish(&h[r], 0);
			mh_show(&h[r], "host");
		}
		fail_msg("node 0 of the joiner (psrun pid %d) not found", (int)h[2].pid);
	}
	char seg[256];
	snprintf(seg, sizeof seg, "%s", proc_env(n0, "PSMEM_SEGMENT"));
	struct run_result rr;
	char *ps[] = {(char *)build_path("bin/psstat"), "--checkpoint", q, "--timeout", "20", seg, NULL};
	run_prog(ps, NULL, 30, -1, 0, &rr);
	if (rr.status != 0) {
		/* the nodes poll on for 300 s: stop them before failing */
		for (int r = 0; r < 3; r++) {
			mh_finish(&h[r], 0);
			mh_show(&h[r], "host");
		}
		fail_msg("psstat --checkpoint on the joiner: %s%s", rr.out, rr.err);
	}
	for (int r = 0; r < 3; r++)
		mh_finish(&h[r], 60);
	mh_show_failed(3, h);
	int e[3];
	for (int r = 0; r < 3; r++) {
		assert_int_equal(h[r].status, 0);
		char want[64];
		snprintf(want, sizeof want, "ck: host %d poll wrote a checkpoint at ", r);
		const char *l = strstr(mh_slurp(h[r].out), want);
		assert_non_null(l);
		e[r] = atoi(l + strlen(want));
	}
	/* one poll on every host */
	assert_int_equal(e[0], e[1]);
	assert_int_equal(e[0], e[2]);
	assert_part(q, 0, 2);
	assert_part(q, 1, 2);
	assert_false(exists(qh2));
	assert_int_equal(temps_left(), 0);
	assert_true(mh_port_free(port));
	mh_assert_clean(&segs);
}

/* 3 hosts under continue (backups at 50 rounds/s); host 2 SIGKILLed once
 * it stopped pushing. */
static void run_lose(const char *role, const char *path, char *const env[], struct mh_proc h[3])
{
	unsigned port = mh_free_port();
	const char *pre[] = {"--on-host-failure", "continue", "--backup-rate", "50", NULL};
	for (int r = 0; r < 3; r++)
		start(&h[r], role, 3, r, port, pre, role, path, env);
	if (!strcmp(role, "lose")) {
		wait_for_output(h, 3, 2, "ck: host 2 stops");
		/* outside the backup window (BK4): 25 backup periods after the
		 * last push to host 2's keys (the survivors wait in a barrier
		 * for the loss).  Not a synchronisation: the window is what
		 * psmem.h documents (as test_hosts_fail). */
		usleep(500 * 1000);
		kill(h[2].pid, SIGKILL);
	}
	for (int r = 0; r < 3; r++)
		mh_finish(&h[r], 60);
	assert_true(mh_port_free(port));
}

static void test_a_checkpoint_after_a_lost_host_writes_its_part_at_its_backup_host(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	pathf(P, sizeof P, "%s/lose.ckpt", mh_tmpdir);
	struct mh_proc h[3];
	run_lose("lose", P, NULL, h);
	mh_show_failed(2, h);
	for (int r = 0; r < 2; r++) {
		assert_int_equal(h[r].status, 0);
		expect(h, r, "ck: host %d alive 2 [1 1 0]\n", r);
		expect(h, r, "ck: host %d checkpoint: 0: ok\n", r);
		expect(h, r, "ck: host %d wrong 0\n", r);
		/* host 0 reads parts 0 and 2, host 1 part 1: keys at home */
		expect(h, r, "ck: host %d running restore: 1: ok\n", r);
		expect(h, r, "ck: host %d unchanged 1\n", r);
	}
	/* the three parts of a 3-host job, host 2's by b(2) = host 0 */
	for (int r = 0; r < 3; r++)
		assert_part(P, r, 3);
	assert_int_equal(temps_left(), 0);
	restore_fresh(P, 3);
	mh_assert_clean(&segs);
}

static void test_a_checkpoint_after_a_host_left_writes_its_part_at_its_backup_host(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	pathf(P, sizeof P, "%s/leave.ckpt", mh_tmpdir);
	struct mh_proc h[3];
	unsigned port = mh_free_port();
	const char *pre[] = {"--elastic", "--drain", NULL};
	for (int r = 0; r < 3; r++)
		start(&h[r], "leave", 3, r, port, pre, "leave", P, NULL);
	wait_for_output(h, 3, 2, "ck: host 2 epoch 3");
	kill(h[2].pid, SIGTERM); /* --drain: it leaves at its next ps_sync_hosts */
	for (int r = 0; r < 3; r++)
		mh_finish(&h[r], 60);
	mh_show_failed(3, h);
	for (int r = 0; r < 3; r++)
		assert_int_equal(h[r].status, 0);
	expect(h, 2, "ck: host 2 left\n");
	for (int r = 0; r < 2; r++) {
		expect(h, r, "ck: host %d checkpoint: 0: ok\n", r);
		expect(h, r, "ck: host %d equal 1\n", r);
		expect(h, r, "ck: host %d running restore: 1: ok\n", r);
		expect(h, r, "ck: host %d unchanged 1\n", r);
	}
	for (int r = 0; r < 3; r++)
		assert_part(P, r, 3);
	assert_int_equal(temps_left(), 0);
	assert_true(mh_port_free(port));
	restore_fresh(P, 3);
	mh_assert_clean(&segs);
}

static void test_a_host_lost_during_a_checkpoint_fails_it_everywhere_and_keeps_the_previous(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	pathf(P, sizeof P, "%s/midkill.ckpt", mh_tmpdir);
	char *env[] = {"PSMEM_DEBUG_CKPT_DIE=2:written:2", NULL};
	struct mh_proc h[3];
	run_lose("midkill", P, env, h);
	mh_show_failed(2, h);
	assert_true(h[2].status != 0);
	for (int r = 0; r < 3; r++)
		expect(h, r, "ck: host %d first: 0: ok\n", r);
	expect(h, 0, "ck: host 0 second: %d: %s: host 2 was lost or left during the checkpoint: nothing committed; "
		     "the previous checkpoint stays\n", PS_ECKPT, P);
	expect(h, 1, "ck: host 1 second: %d: %s.host1: host 2 was lost or left during the checkpoint: nothing "
		     "committed; the previous checkpoint stays\n", PS_ECKPT, P);
	for (int r = 0; r < 2; r++)
		assert_int_equal(h[r].status, 0);
	/* host 1 had committed its part of the second: the first is kept as
	 * .prev; host 2's temp file (its writer is dead) is swept */
	char prev[310];
	pathf(prev, sizeof prev, "%s.host1.prev", P);
	assert_true(exists(prev));
	assert_int_equal(temps_left(), 0);
	restore_fresh(P, 3);
	mh_assert_clean(&segs);
}

int main(int argc, char **argv)
{
	if (argc >= 5 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "ck") == 0)
		return ck_main(argv[3], argv[4]);
	if (!self_exe(mh_self, sizeof mh_self))
		return 1;
	/* one test at a time while working (cmocka's * and ? patterns) */
	const char *filter = getenv("PSMEM_TEST_FILTER");
	if (filter && *filter)
		cmocka_set_test_filter(filter);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_an_elastic_job_with_a_joiner_checkpoints_its_initial_homes),
		cmocka_unit_test(test_psstat_on_a_joiner_checkpoints_the_elastic_job),
		cmocka_unit_test(test_a_checkpoint_after_a_lost_host_writes_its_part_at_its_backup_host),
		cmocka_unit_test(test_a_checkpoint_after_a_host_left_writes_its_part_at_its_backup_host),
		cmocka_unit_test(test_a_host_lost_during_a_checkpoint_fails_it_everywhere_and_keeps_the_previous),
	};
	return cmocka_run_group_tests(tests, mh_setup, mh_teardown);
}
