/*
 * test_hosts_ckpt.c - checkpoints and restores of multi-host jobs (2 hosts
 * x 2 nodes on 127.0.0.1), see docs/DESIGN.md "Checkpoints across hosts".
 *
 * The binary is the cmocka driver and, under psrun, the node program
 * "--node ck MODE PATH": three tables (adam with rule state, sum with
 * uniform initial values, a transient one) and
 *   save P     a storm of pushes from every node to keys of both hosts,
 *              ps_barrier, checkpoint to P (meta "round 1") and to P.ref
 *              (the same state: the reference a restore is compared with);
 *              with "twice", a second storm and a checkpoint to P again
 *              (meta "round 2": where the kill tests kill a host);
 *   restore P2 ps_restore_meta(NULL) of psrun --restore, then a checkpoint
 *              of what was restored to P2: the driver compares its data,
 *              byte for byte, with the reference (values and rule state);
 *   refuse M   ps_restore(M) that must be refused; node 0 pulls its home
 *              range before and after and says whether anything changed;
 *   moved P R  host 0 marks key 5 of the adam table held by host 1 (its
 *              location word, as a move across hosts will), then
 *              ps_checkpoint(P) and ps_restore(R) must both be refused;
 *   poll -     epochs of a few pushes, ps_checkpoint_poll (meta: the epoch)
 *              after each, until a poll wrote a checkpoint (psstat
 *              --checkpoint asked one host for it) or 300 s passed.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include <cmocka.h>

#include "common.h"
#include "hosts.h"
#include "psmem.h"
#include "psmem_int.h"

/* ------------------------------------------------------------ node */

#define NT 3
static const uint64_t nkeys[NT] = {1000, 777, 50};
static const uint32_t nvlen[NT] = {3, 2, 1};

struct job {
	ps_table *t[NT];
	uint64_t seed;
};

static void storm(ps_world *w, int thread, void *arg)
{
	struct job *j = arg;
	uint64_t s = j->seed ^ ((uint64_t)ps_host_id(w) << 40 | (uint64_t)ps_node_id(w) << 20 | (uint64_t)thread);
	ps_key k[16];
	float u[16 * 3];
	for (int b = 0; b < 150; b++) {
		for (int i = 0; i < NT; i++) {
			for (int x = 0; x < 16; x++) {
				k[x] = test_rnd(&s) % nkeys[i];
				for (uint32_t v = 0; v < nvlen[i]; v++)
					u[x * nvlen[i] + v] = (float)(test_rnd(&s) % 1000) / 250.0f - 2.0f;
			}
			/* duplicate keys in a batch are fine: each is a push */
			if (ps_push_sync(j->t[i], k, 16, u) != 0)
				abort();
		}
	}
}

static int make_tables(ps_world *w, struct job *j)
{
	for (int i = 0; i < NT; i++) {
		ps_table_opts o;
		ps_table_opts_init(&o, nkeys[i], nvlen[i]);
		if (i == 0) {
			o.rule = PS_RULE_ADAM;
			o.rule_params[0] = 0.01f;
			o.rule_params[1] = 0.9f;
			o.rule_params[2] = 0.999f;
			o.rule_params[3] = 1e-8f;
		} else if (i == 1) {
			o.init = PS_INIT_UNIFORM;
			o.init_a = 0.5f;
			o.seed = 42;
		} else {
			o.flags = PS_TRANSIENT;
		}
		int err;
		j->t[i] = ps_table_create(w, &o, &err);
		if (!j->t[i]) {
			fprintf(stderr, "ck: table %d: %s\n", i, ps_strerror(err));
			return err;
		}
	}
	return 0;
}

/* Node 0: every value of this host's home range of tables 0 and 1. */
static float *pull_home(ps_world *w, struct job *j, size_t *n)
{
	size_t total = 0;
	for (int i = 0; i < 2; i++)
		total += nkeys[i] * nvlen[i];
	float *v = calloc(total, sizeof *v);
	*n = 0;
	for (int i = 0; i < 2; i++)
		for (ps_key k = 0; k < nkeys[i]; k++) {
			if (ps_owner_host(j->t[i], k) != ps_host_id(w))
				continue;
			if (ps_pull_sync(j->t[i], &k, 1, v + *n) != 0)
				abort();
			*n += nvlen[i];
		}
	return v;
}

static int ck_main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	const char *mode = argv[0], *path = argv[1];
	bool twice = argc > 2 && !strcmp(argv[2], "twice");
	int err;
	ps_world *w = ps_init(&err);
	if (!w)
		return 1;
	struct job j = {.seed = 1};
	int rc = make_tables(w, &j);
	const int h = ps_host_id(w), n0 = ps_node_id(w) == 0;
	char ref[1024];
	snprintf(ref, sizeof ref, "%s.ref", path);
	if (rc == 0 && !strcmp(mode, "save")) {
		rc = ps_run_workers(w, storm, &j);
		if (rc == 0)
			rc = ps_barrier(w);
		if (rc == 0 && (rc = ps_checkpoint_meta(w, path, "round 1", 7)) != 0)
			fprintf(stderr, "ck: checkpoint: %s\n", ps_checkpoint_error(w));
		if (rc == 0 && (rc = ps_checkpoint_meta(w, ref, "round 1", 7)) != 0)
			fprintf(stderr, "ck: checkpoint: %s\n", ps_checkpoint_error(w));
		if (rc == 0 && n0) {
			printf("ck: host %d saved\n", h);
			fflush(stdout);
		}
		if (rc == 0 && twice) {
			j.seed = 2;
			rc = ps_run_workers(w, storm, &j);
			if (rc == 0)
				rc = ps_barrier(w);
			if (rc == 0 && (rc = ps_checkpoint_meta(w, path, "round 2", 7)) != 0)
				fprintf(stderr, "ck: checkpoint: %s\n", ps_checkpoint_error(w));
			if (rc == 0 && n0)
				printf("ck: host %d saved twice\n", h);
		}
	} else if (rc == 0 && !strcmp(mode, "restore")) {
		char meta[64] = "";
		size_t mlen = 0;
		rc = ps_restore_meta(w, NULL, meta, sizeof meta - 1, &mlen);
		if (rc < 0) {
			fprintf(stderr, "ck: restore: %s\n", ps_checkpoint_error(w));
		} else {
			if (n0)
				printf("ck: host %d restored %d tables, meta '%.*s'\n", h, rc, (int)mlen, meta);
			rc = ps_checkpoint(w, path);
			if (rc)
				fprintf(stderr, "ck: checkpoint: %s\n", ps_checkpoint_error(w));
		}
	} else if (rc == 0 && !strcmp(mode, "moved") && argc > 2) {
		uint64_t saved = 0;
		if (h == 0 && n0) {
			/* relaxed: nothing else of this host touches key 5 now */
			saved = atomic_load_explicit(&j.t[0]->loc[5], memory_order_relaxed);
			atomic_store_explicit(&j.t[0]->loc[5], PS__LOC_MAKE_REMOTE(1), memory_order_relaxed);
		}
		int r = ps_checkpoint(w, path);
		if (n0)
			printf("ck: host %d checkpoint %d: %s\n", h, r, ps_checkpoint_error(w));
		r = ps_restore(w, argv[2]);
		if (n0)
			printf("ck: host %d restore %d: %s\n", h, r, ps_checkpoint_error(w));
		if (h == 0 && n0)
			atomic_store_explicit(&j.t[0]->loc[5], saved, memory_order_relaxed);
	} else if (rc == 0 && !strcmp(mode, "poll")) {
		ps_key k = (ps_key)(ps_host_id(w) * 2 + ps_node_id(w));
		/* a push reads value_len floats (nvlen[1] == 2): a lone float
		 * here was a stack overflow that ASan stopped the nodes at */
		float u[3] = {1, 1, 1};
		/* until the asked checkpoint is written: 300 s at most (not
		 * a count of epochs: a slow build must not stop polling before
		 * the test found the job and asked) */
		double give_up = mono_now() + 300;
		for (int e = 0; rc == 0; e++) {
			if (mono_now() > give_up) {
				printf("ck: host %d gave up polling at epoch %d\n", h, e);
				rc = 1;
				break;
			}
			rc = ps_push_sync(j.t[1], &k, 1, u);
			int r = rc ? rc : ps_checkpoint_poll(w, &e, sizeof e);
			if (r < 0) {
				printf("ck: host %d poll failed at epoch %d: %s\n", h, e, ps_checkpoint_error(w));
				rc = r;
			} else if (r == 1) {
				if (n0)
					printf("ck: host %d poll wrote a checkpoint at epoch %d\n", h, e);
				break;
			}
			if (e == 0 && n0)
				printf("ck: host %d polling\n", h);
			fflush(stdout);
			usleep(2000);
		}
	} else if (rc == 0 && !strcmp(mode, "refuse")) {
		size_t n1 = 0, n2 = 0;
		float *before = n0 ? pull_home(w, &j, &n1) : NULL;
		int r = ps_restore(w, path);
		float *after = n0 ? pull_home(w, &j, &n2) : NULL;
		if (n0) {
			printf("ck: host %d restore %d: %s\n", h, r, ps_checkpoint_error(w));
			printf("ck: host %d unchanged %d\n", h, n1 == n2 && memcmp(before, after, n1 * 4) == 0);
		}
		free(before);
		free(after);
	}
	fflush(stdout);
	int frc = ps_finalize(w);
	return rc < 0 ? 1 : frc ? 1 : 0;
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

/* Runs 2 hosts x 2 nodes: psrun flags pre (NULL-terminated, may be NULL),
 * the ck program with args, env for every psrun; waits. */
static void run2(const char *const pre[], const char *const args[], char *const env[], struct mh_proc p[2])
{
	unsigned port = mh_free_port();
	static char store[2][96];
	const char *prog[24];
	int n = 0;
	for (int i = 0; pre && pre[i]; i++)
		prog[n++] = pre[i];
	prog[n++] = mh_self;
	prog[n++] = "--node";
	prog[n++] = "ck";
	for (int i = 0; args[i]; i++)
		prog[n++] = args[i];
	prog[n] = NULL;
	for (int r = 0; r < 2; r++) {
		const char *argv[64];
		mh_psrun_argv(argv, store[r], 2, 2, r, port, prog);
		char name[16];
		snprintf(name, sizeof name, "host%d", r);
		mh_spawn(&p[r], name, (char *const *)argv, env);
	}
	for (int r = 0; r < 2; r++)
		mh_finish(&p[r], 60);
}

static void expect_ok(struct mh_proc p[2])
{
	mh_show_failed(2, p);
	assert_int_equal(p[0].status, 0);
	assert_int_equal(p[1].status, 0);
}

static void save(const char *path, bool twice, char *const env[], struct mh_proc p[2])
{
	const char *args[] = {"save", path, twice ? "twice" : NULL, NULL};
	run2(NULL, args, env, p);
}

struct file {
	unsigned char *b;
	size_t n;
};

static struct file slurp_bin(const char *path)
{
	struct file f = {NULL, 0};
	FILE *fp = fopen(path, "rb");
	if (!fp)
		fail_msg("cannot open %s", path);
	fseek(fp, 0, SEEK_END);
	f.n = (size_t)ftell(fp);
	fseek(fp, 0, SEEK_SET);
	f.b = malloc(f.n);
	assert_int_equal(fread(f.b, 1, f.n, fp), f.n);
	fclose(fp);
	return f;
}

static uint32_t u32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t u64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static uint64_t id_of(const char *path)
{
	struct file f = slurp_bin(path);
	assert_true(f.n >= 56);
	uint64_t id = u64(f.b + 48);
	free(f.b);
	return id;
}

/*
 * a and b hold the same host's part of the same state: version 2, the same
 * host count and rank, the same tables, and byte for byte the same data
 * (every value and every float of rule state) and data checksum.
 */
static void assert_same_part(const char *a, const char *b, uint32_t rank)
{
	struct file x = slurp_bin(a), y = slurp_bin(b);
	assert_int_equal(u32(x.b + 8), 2);
	assert_int_equal(u32(x.b + 40), 2);  /* hosts */
	assert_int_equal(u32(x.b + 44), rank);
	assert_int_equal(u32(y.b + 44), rank);
	uint32_t H = u32(x.b + 12), T = u32(x.b + 20), Hy = u32(y.b + 12);
	assert_int_equal(T, 2); /* the transient table is not saved */
	assert_int_equal(u32(y.b + 20), 2);
	/* table entries equal (the metadata that follows may differ) */
	assert_memory_equal(x.b + 56, y.b + 56, 32 * T);
	/* data: keys of this host's range, values then adam state */
	uint64_t want = 0;
	for (int i = 0; i < 2; i++) {
		uint64_t K = nkeys[i], k0 = (rank * K + 1) / 2, k1 = ((rank + 1) * K + 1) / 2;
		want += (k1 - k0) * (nvlen[i] + (i == 0 ? 2 * nvlen[i] + 1 : 0)) * 4;
	}
	assert_int_equal(x.n, H + want + 4);
	assert_int_equal(y.n, Hy + want + 4);
	assert_memory_equal(x.b + H, y.b + Hy, want + 4);
	free(x.b);
	free(y.b);
}

static void copy_file(const char *from, const char *to)
{
	struct file f = slurp_bin(from);
	FILE *fp = fopen(to, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(f.b, 1, f.n, fp), f.n);
	fclose(fp);
	free(f.b);
}

/* No PATH*.tmp.* file is left in the test directory. */
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

static void restore_and_compare(const char *from, const char *tag, const char *meta)
{
	char p2[300], ref[300], a[320], b[320];
	pathf(p2, sizeof p2, "%s.%s", from, tag);
	pathf(ref, sizeof ref, "%s.ref", from);
	const char *pre[] = {"--restore", from, NULL};
	const char *args[] = {"restore", p2, NULL};
	struct mh_proc p[2];
	run2(pre, args, NULL, p);
	expect_ok(p);
	for (int r = 0; r < 2; r++) {
		char want[128];
		pathf(want, sizeof want, "ck: host %d restored 2 tables, meta '%s'\n", r, meta);
		assert_non_null(strstr(mh_slurp(p[r].out), want));
		pathf(a, sizeof a, r ? "%s.host1" : "%s", p2);
		pathf(b, sizeof b, r ? "%s.host1" : "%s", ref);
		assert_same_part(a, b, (uint32_t)r);
	}
}

static void test_round_trip_is_bit_identical(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	pathf(P, sizeof P, "%s/rt.ckpt", mh_tmpdir);
	struct mh_proc p[2];
	save(P, false, NULL, p);
	expect_ok(p);
	assert_non_null(strstr(mh_slurp(p[0].out), "ck: host 0 saved"));
	/* one file per host; one id per checkpoint, the same in both */
	char h1[300], r0[300], r1[300];
	pathf(h1, sizeof h1, "%s.host1", P);
	pathf(r0, sizeof r0, "%s.ref", P);
	pathf(r1, sizeof r1, "%s.ref.host1", P);
	assert_int_equal(id_of(P), id_of(h1));
	assert_int_equal(id_of(r0), id_of(r1));
	assert_true(id_of(P) != id_of(r0));
	/* the same state twice: the same data */
	assert_same_part(P, r0, 0);
	assert_same_part(h1, r1, 1);
	/* a new job restores it: every value and rule state as saved */
	restore_and_compare(P, "again", "round 1");
	assert_int_equal(temps_left(), 0);
	mh_assert_clean(&segs);
}

static void test_wrong_hosts_or_files_are_refused_with_their_message(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	char want[1024], h1[300];
	pathf(h1, sizeof h1, "%s.host1", P);
	/* 3 hosts restoring a 2-host checkpoint: each psrun refuses, naming
	 * its file, before any node starts */
	unsigned port = mh_free_port();
	struct mh_proc p[3];
	static char store[3][96];
	const char *prog[] = {"--restore", P, mh_self, "--node", "ck", "restore", "/nonexistent", NULL};
	for (int r = 0; r < 3; r++) {
		const char *argv[64];
		mh_psrun_argv(argv, store[r], 2, 3, r, port, prog);
		char name[16];
		snprintf(name, sizeof name, "three%d", r);
		mh_spawn(&p[r], name, (char *const *)argv, NULL);
	}
	for (int r = 0; r < 3; r++)
		assert_int_equal(mh_finish(&p[r], 20), 2);
	pathf(want, sizeof want, "psrun: bad arguments: --restore %s: a checkpoint of host 0 of a 2-host job; this job has 3 hosts\n",
	      P);
	assert_non_null(strstr(mh_slurp(p[0].err), want));
	pathf(want, sizeof want,
	      "psrun: bad arguments: --restore %s: %s.host1: a checkpoint of host 1 of a 2-host job; this job has 3 hosts\n", P, P);
	assert_non_null(strstr(mh_slurp(p[1].err), want));
	pathf(want, sizeof want, "psrun: bad arguments: --restore %s: %s.host2: cannot open: No such file or directory\n", P, P);
	assert_non_null(strstr(mh_slurp(p[2].err), want));

	/* one host restoring it */
	struct mh_proc one;
	const char *argv1[] = {build_path("bin/psrun"), "-n", "2", "--restore", P, mh_self, "--node", "ck", "restore",
			       "/nonexistent", NULL};
	mh_spawn(&one, "one", (char *const *)argv1, NULL);
	assert_int_equal(mh_finish(&one, 20), 2);
	pathf(want, sizeof want, "psrun: bad arguments: --restore %s: a checkpoint of host 0 of a 2-host job; this job has 1 host\n",
	      P);
	assert_non_null(strstr(mh_slurp(one.err), want));

	/* host 0's file where host 1's should be */
	char sw[300], swh1[300];
	pathf(sw, sizeof sw, "%s/swapped.ckpt", mh_tmpdir);
	pathf(swh1, sizeof swh1, "%s.host1", sw);
	copy_file(P, sw);
	copy_file(P, swh1);
	struct mh_proc h;
	const char *progs[] = {"--restore", sw, mh_self, "--node", "ck", "restore", "/nonexistent", NULL};
	const char *argv2[64];
	mh_psrun_argv(argv2, store[0], 2, 2, 1, mh_free_port(), progs);
	mh_spawn(&h, "swapped", (char *const *)argv2, NULL);
	assert_int_equal(mh_finish(&h, 20), 2);
	pathf(want, sizeof want, "psrun: bad arguments: --restore %s: %s: a checkpoint of host 0 of a 2-host job; this is host 1\n",
	      sw, swh1);
	assert_non_null(strstr(mh_slurp(h.err), want));

	/* parts of two different checkpoints: every file passes psrun's
	 * check, the job refuses on every host and changes nothing */
	char mx[300], mxh1[300], refh1[300];
	pathf(mx, sizeof mx, "%s/mixed.ckpt", mh_tmpdir);
	pathf(mxh1, sizeof mxh1, "%s.host1", mx);
	pathf(refh1, sizeof refh1, "%s.ref.host1", P);
	copy_file(P, mx);
	copy_file(refh1, mxh1);
	const char *args[] = {"refuse", mx, NULL};
	struct mh_proc q[2];
	run2(NULL, args, NULL, q);
	expect_ok(q);
	pathf(want, sizeof want,
	      "ck: host 1 restore %d: %s: checkpoint %016" PRIx64 "; host 0's %s is checkpoint %016" PRIx64
	      " and %s.prev is not it either: not the same checkpoint\n",
	      PS_ECKPT, mxh1, id_of(mxh1), mx, id_of(mx), mxh1);
	assert_non_null(strstr(mh_slurp(q[1].out), want));
	pathf(want, sizeof want,
	      "ck: host 0 restore %d: %s: host 1's file was refused (its message says why); nothing changed\n",
	      PS_ECKPT, mx);
	assert_non_null(strstr(mh_slurp(q[0].out), want));
	assert_non_null(strstr(mh_slurp(q[0].out), "ck: host 0 unchanged 1\n"));
	assert_non_null(strstr(mh_slurp(q[1].out), "ck: host 1 unchanged 1\n"));
	mh_assert_clean(&segs);
}

/* A home key held by another host: a table with rule state can be neither
 * checkpointed (its state does not travel by pull) nor restored; nothing
 * is committed, nothing changed. */
static void test_rule_state_table_with_a_key_away_is_refused(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	char mv[300], mvh1[300], want[1024];
	pathf(mv, sizeof mv, "%s/moved.ckpt", mh_tmpdir);
	pathf(mvh1, sizeof mvh1, "%s.host1", mv);
	const char *args[] = {"moved", mv, P, NULL};
	struct mh_proc p[2];
	run2(NULL, args, NULL, p);
	expect_ok(p);
	const char *o0 = mh_slurp(p[0].out), *o1 = mh_slurp(p[1].out);
	pathf(want, sizeof want,
	      "ck: host 0 checkpoint %d: %s: table 0: key 5 is held by host 1; its update-rule state cannot be read "
	      "across hosts (checkpoint before keys of tables with rule state move)\n",
	      -ENOTSUP, mv);
	assert_non_null(strstr(o0, want));
	pathf(want, sizeof want,
	      "ck: host 1 checkpoint %d: %s: host 0 could not write its part (its message says why); nothing "
	      "committed\n",
	      PS_ECKPT, mvh1);
	assert_non_null(strstr(o1, want));
	struct stat st;
	assert_int_equal(stat(mv, &st), -1);
	assert_int_equal(stat(mvh1, &st), -1);
	assert_int_equal(temps_left(), 0);
	pathf(want, sizeof want,
	      "ck: host 0 restore %d: %s: table 0: key 5 is held by host 1; a restore needs every key at its home "
	      "host (restore before keys move)\n",
	      -ENOTSUP, P);
	assert_non_null(strstr(o0, want));
	pathf(want, sizeof want,
	      "ck: host 1 restore %d: %s.host1: host 0's file was refused (its message says why); nothing changed\n",
	      PS_ECKPT, P);
	assert_non_null(strstr(o1, want));
	mh_assert_clean(&segs);
}

/* A host killed during the second checkpoint to P at stage: P still
 * restores the first one, bit for bit. */
static void killed_during_checkpoint(const char *name, const char *stage, bool prev_expected)
{
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	char path[300], h1[300], prev[310], envs[64];
	pathf(path, sizeof path, "%s/%s.ckpt", mh_tmpdir, name);
	pathf(h1, sizeof h1, "%s.host1", path);
	pathf(prev, sizeof prev, "%s.prev", h1);
	pathf(envs, sizeof envs, "PSMEM_DEBUG_CKPT_DIE=%s", stage);
	char *env[] = {envs, NULL};
	struct mh_proc p[2];
	save(path, true, env, p);
	for (int r = 0; r < 2; r++)
		assert_true(p[r].status != 0);
	for (int r = 0; r < 2; r++) {
		assert_non_null(strstr(mh_slurp(p[r].out), "saved\n"));
		assert_null(strstr(mh_slurp(p[r].out), "saved twice"));
	}
	/* host 0's file is still the first checkpoint (the ref has the same data) */
	char r0[310];
	pathf(r0, sizeof r0, "%s.ref", path);
	assert_same_part(path, r0, 0);
	struct stat st;
	if (prev_expected) {
		/* host 1 had committed its part of the second: the first
		 * stays as .prev, and its current file is not host 0's id */
		assert_int_equal(stat(prev, &st), 0);
		assert_int_equal(id_of(prev), id_of(path));
		assert_true(id_of(h1) != id_of(path));
	} else {
		assert_int_equal(id_of(h1), id_of(path));
	}
	restore_and_compare(path, "after", "round 1");
	mh_assert_clean(&segs);
}

static void test_host_killed_while_writing_leaves_the_previous_checkpoint(void **state)
{
	(void)state;
	killed_during_checkpoint("killw", "1:written:3", false);
}

static void test_host_0_killed_before_its_commit_leaves_the_previous_checkpoint(void **state)
{
	(void)state;
	killed_during_checkpoint("killc", "0:commit:3", true);
}

/* psstat --checkpoint Q pointed at host 1's segment: both hosts write
 * their part at the same poll (the request travels to host 0), with the
 * same id and epoch. */
static void test_psstat_on_any_host_checkpoints_every_host(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	char q[300], qh1[300], want[800];
	pathf(q, sizeof q, "%s/asked.ckpt", mh_tmpdir);
	pathf(qh1, sizeof qh1, "%s.host1", q);
	unsigned port = mh_free_port();
	static char store[2][96];
	const char *prog[] = {mh_self, "--node", "ck", "poll", "-", NULL};
	struct mh_proc p[2];
	for (int r = 0; r < 2; r++) {
		const char *argv[64];
		mh_psrun_argv(argv, store[r], 2, 2, r, port, prog);
		mh_spawn(&p[r], r ? "poll1" : "poll0", (char *const *)argv, NULL);
	}
	/* Host 1's node 0 polls (a sanitizer build on a loaded machine may
	 * take tens of seconds to get there; its nodes keep polling for 300
	 * s), then its pid and segment are looked up until found. */
	double end = mh_now() + 240;
	while (!strstr(mh_slurp(p[1].out), "ck: host 1 polling") && mh_now() < end)
		usleep(10000);
	if (!strstr(mh_slurp(p[1].out), "ck: host 1 polling")) {
		mh_show(&p[0], "host 0");
		mh_show(&p[1], "host 1");
		fail_msg("host 1's node 0 did not poll within 240 s");
	}
	pid_t n0 = psrun_node_pid_wait(p[1].pid, 0, 60);
	if (n0 <= 0) {
		mh_show(&p[1], "host 1");
		fail_msg("node 0 of host 1 (psrun pid %d) not found, or no PSMEM_SEGMENT in its environment",
			 (int)p[1].pid);
	}
	char seg[256];
	snprintf(seg, sizeof seg, "%s", proc_env(n0, "PSMEM_SEGMENT"));
	struct run_result r;
	char *ps[] = {(char *)build_path("bin/psstat"), "--checkpoint", q, "--timeout", "20", seg, NULL};
	run_prog(ps, NULL, 30, -1, 0, &r);
	if (r.status != 0)
		fprintf(stderr, "%s%s", r.out, r.err);
	assert_int_equal(r.status, 0);
	pathf(want, sizeof want, "psstat: job %s: checkpoint written to %s\n", seg, q);
	assert_string_equal(r.out, want);
	for (int h = 0; h < 2; h++)
		mh_finish(&p[h], 30);
	expect_ok(p);
	const char *s0 = strstr(mh_slurp(p[0].out), "ck: host 0 poll wrote a checkpoint at epoch ");
	const char *s1 = strstr(mh_slurp(p[1].out), "ck: host 1 poll wrote a checkpoint at epoch ");
	assert_non_null(s0);
	assert_non_null(s1);
	int e0 = atoi(s0 + strlen("ck: host 0 poll wrote a checkpoint at epoch "));
	int e1 = atoi(s1 + strlen("ck: host 1 poll wrote a checkpoint at epoch "));
	assert_int_equal(e0, e1);
	/* one checkpoint: the same id in both parts, the epoch as metadata */
	assert_int_equal(id_of(q), id_of(qh1));
	struct file f0 = slurp_bin(q), f1 = slurp_bin(qh1);
	int m0, m1;
	memcpy(&m0, f0.b + 56 + 64, 4);
	memcpy(&m1, f1.b + 56 + 64, 4);
	assert_int_equal(m0, e0);
	assert_int_equal(m1, e0);
	free(f0.b);
	free(f1.b);
	mh_assert_clean(&segs);
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "ck") == 0)
		return ck_main(argc - 3, argv + 3);
	if (!self_exe(mh_self, sizeof mh_self))
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_is_bit_identical),
		cmocka_unit_test(test_wrong_hosts_or_files_are_refused_with_their_message),
		cmocka_unit_test(test_rule_state_table_with_a_key_away_is_refused),
		cmocka_unit_test(test_host_killed_while_writing_leaves_the_previous_checkpoint),
		cmocka_unit_test(test_host_0_killed_before_its_commit_leaves_the_previous_checkpoint),
		cmocka_unit_test(test_psstat_on_any_host_checkpoints_every_host),
	};
	return cmocka_run_group_tests(tests, mh_setup, mh_teardown);
}
