/*
 * test_checkpoint.c - checkpoints: ps_checkpoint / ps_restore round trips
 * bit for bit (several tables, several nodes, keys localized before the
 * save and before the restore, a different node count on the way back),
 * every kind of damaged or foreign file is refused with its own message
 * and changes nothing, PATH is never a partial file (a writer SIGKILLed
 * mid-write leaves the old file; its temp file is swept by the next
 * writer), psrun --restore, psstat --checkpoint, and the apps' --checkpoint
 * / --resume (mf: a resumed run is bit-identical to an uninterrupted one).
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"
#include "psmem.h"

static char dir[] = "/tmp/psmem-test-ckpt-XXXXXX";
static char self[1024];

static const char *path_of(const char *name)
{
	static char p[16][512];
	static int i;
	char *s = p[i++ % 16];
	snprintf(s, 512, "%s/%s", dir, name);
	return s;
}

/* A path that outlives path_of's rotating buffers. */
#define KEEP(var, name) \
	char var[512];  \
	snprintf(var, sizeof var, "%s", path_of(name))

/* ------------------------------------------------------------ the job */

/*
 * The multi-table job: tables 0, 1, 3 are saved, table 2 is transient.
 * Values: f(table, key, j), distinct bit patterns, pushed onto zeros.
 */
struct shape {
	uint64_t keys;
	uint32_t vlen;
	enum ps_placement place;
	uint32_t flags;
};
static const struct shape shapes[] = {
	{1000, 7, PS_PLACE_RANGE, 0},
	{333, 100, PS_PLACE_HASH, 0},
	{10, 2, PS_PLACE_RANGE, PS_TRANSIENT},
	{5, 1, PS_PLACE_RANGE, PS_HOGWILD},
};
#define NT 4

static float value_of(int t, uint64_t k, uint32_t j)
{
	uint64_t x = ((uint64_t)t << 40) ^ (k << 12) ^ j;
	x = (x ^ (x >> 31)) * 0x9e3779b97f4a7c15ULL;
	return (float)((double)(x >> 40) / (double)(1ULL << 24) * 200.0 - 100.0);
}

/* Creates the tables; init_const != 0 gives them other values to start. */
static void make_tables(ps_world *w, ps_table **t, float init_const)
{
	for (int i = 0; i < NT; i++) {
		ps_table_opts o;
		ps_table_opts_init(&o, shapes[i].keys, shapes[i].vlen);
		o.placement = shapes[i].place;
		o.flags = shapes[i].flags;
		if (init_const != 0) {
			o.init = PS_INIT_CONST;
			o.init_a = init_const;
		}
		int err;
		t[i] = ps_table_create(w, &o, &err);
		if (!t[i]) {
			fprintf(stderr, "table %d: %s\n", i, ps_strerror(err));
			exit(2);
		}
	}
}

static float *all_values(ps_table *t)
{
	uint64_t n = ps_table_num_keys(t);
	uint32_t vl = ps_table_value_len(t);
	float *v = malloc(n * vl * sizeof *v);
	ps_key *k = malloc(n * sizeof *k);
	for (uint64_t i = 0; i < n; i++)
		k[i] = i;
	if (ps_pull_sync(t, k, n, v) != 0)
		exit(2);
	free(k);
	return v;
}

/* This node's keys of every table moved: key k goes to node (k + 1) mod N. */
static void shuffle_owners(ps_world *w, ps_table **t)
{
	int n = ps_num_nodes(w), me = ps_node_id(w);
	for (int i = 0; i < NT; i++) {
		for (uint64_t k = 0; k < shapes[i].keys; k++)
			if ((int)((k + 1) % (uint64_t)n) == me && ps_localize_sync(t[i], &k, 1) != 0)
				exit(2);
	}
}

/* "save PATH": every node pushes its share, keys move, checkpoint. */
static int node_save(ps_world *w, ps_table **t, const char *path)
{
	int n = ps_num_nodes(w), me = ps_node_id(w);
	for (int i = 0; i < NT; i++) {
		float *row = malloc(shapes[i].vlen * sizeof *row);
		for (uint64_t k = (uint64_t)me; k < shapes[i].keys; k += (uint64_t)n) {
			for (uint32_t j = 0; j < shapes[i].vlen; j++)
				row[j] = value_of(i, k, j);
			if (ps_push_sync(t[i], &k, 1, row) != 0)
				return 2;
		}
		free(row);
	}
	if (ps_barrier(w) != 0)
		return 2;
	shuffle_owners(w, t);
	if (ps_barrier(w) != 0)
		return 2;
	const char meta[] = "epoch 42";
	int rc = ps_checkpoint_meta(w, path, meta, sizeof meta);
	if (rc != 0) {
		fprintf(stderr, "checkpoint: %s (%s)\n", ps_strerror(rc), ps_checkpoint_error(w));
		return 3;
	}
	return 0;
}

/* "load PATH|-": other initial values, keys moved first, then restore
 * (from psrun --restore's file for "-") and compare bit for bit. */
static int node_load(ps_world *w, ps_table **t, const char *path)
{
	shuffle_owners(w, t);
	char meta[64] = "";
	size_t mlen = 0;
	int rc = ps_restore_meta(w, strcmp(path, "-") ? path : NULL, meta, sizeof meta, &mlen);
	if (rc != 3) {
		fprintf(stderr, "restore returned %d: %s\n", rc, ps_checkpoint_error(w));
		return 3;
	}
	if (mlen != 9 || strcmp(meta, "epoch 42") != 0) {
		fprintf(stderr, "meta '%s' (%zu bytes)\n", meta, mlen);
		return 3;
	}
	size_t wrong = 0;
	for (int i = 0; i < NT; i++) {
		if (shapes[i].flags & PS_TRANSIENT)
			continue;
		float *v = all_values(t[i]);
		for (uint64_t k = 0; k < shapes[i].keys; k++)
			for (uint32_t j = 0; j < shapes[i].vlen; j++) {
				float want = value_of(i, k, j);
				wrong += memcmp(&v[k * shapes[i].vlen + j], &want, sizeof want) != 0;
			}
		free(v);
	}
	/* the transient table kept its own values */
	float *v = all_values(t[2]);
	wrong += v[0] != 9.0f;
	free(v);
	printf("node %d: %zu values differ\n", ps_node_id(w), wrong);
	return wrong ? 3 : 0;
}

/* "poll": epochs of pushes, ps_checkpoint_poll at each end, until one
 * poll wrote a checkpoint (or 3000 epochs). */
static int node_poll(ps_world *w, ps_table **t)
{
	for (int e = 1; e <= 3000; e++) {
		float row[7] = {1, 1, 1, 1, 1, 1, 1};
		ps_key k = (ps_key)ps_node_id(w);
		if (ps_push_sync(t[0], &k, 1, row) != 0 || ps_barrier(w) != 0)
			return 2;
		int rc = ps_checkpoint_poll(w, &e, sizeof e);
		if (rc < 0) {
			printf("poll failed at epoch %d: %s\n", e, ps_checkpoint_error(w));
			fflush(stdout);
			continue;
		}
		if (rc == 1) {
			printf("poll wrote a checkpoint at epoch %d\n", e);
			return 0;
		}
		if (ps_node_id(w) == 0 && e == 1) {
			printf("polling\n");
			fflush(stdout);
		}
		usleep(10000);
	}
	return 4;
}

static int node_main(int argc, char **argv)
{
	int err;
	ps_world *w = ps_init(&err);
	if (!w)
		return 2;
	ps_table *t[NT];
	bool load = argc >= 1 && !strcmp(argv[0], "load");
	make_tables(w, t, load ? 9.0f : 0);
	int rc = 2;
	if (argc >= 2 && !strcmp(argv[0], "save"))
		rc = node_save(w, t, argv[1]);
	else if (argc >= 2 && load)
		rc = node_load(w, t, argv[1]);
	else if (argc >= 1 && !strcmp(argv[0], "poll"))
		rc = node_poll(w, t);
	ps_finalize(w);
	return rc;
}

/* ------------------------------------------------------ in-process jobs */

/* One-node private job with tables of the given (keys, vlen) shapes. */
static ps_world *job(int n, const uint64_t *keys, const uint32_t *vlen, ps_table **t)
{
	int err;
	ps_world *w = ps_init(&err);
	assert_non_null(w);
	for (int i = 0; i < n; i++) {
		ps_table_opts o;
		ps_table_opts_init(&o, keys[i], vlen[i]);
		o.init = PS_INIT_UNIFORM;
		o.init_a = 1;
		o.seed = (uint64_t)i + 1;
		t[i] = ps_table_create(w, &o, &err);
		assert_non_null(t[i]);
	}
	return w;
}

static const uint64_t ref_keys[2] = {100, 50};
static const uint32_t ref_vlen[2] = {4, 3};

/* The reference checkpoint: tables 100 x 4 and 50 x 3 of a one-node job. */
static void write_reference(const char *path)
{
	ps_table *t[2];
	ps_world *w = job(2, ref_keys, ref_vlen, t);
	assert_int_equal(ps_checkpoint(w, path), 0);
	ps_finalize(w);
}

static long file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void copy_prefix(const char *from, const char *to, long n)
{
	FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
	assert_non_null(a);
	assert_non_null(b);
	for (long i = 0; i < n; i++) {
		int c = fgetc(a);
		assert_true(c != EOF);
		fputc(c, b);
	}
	fclose(a);
	assert_int_equal(fclose(b), 0);
}

static void patch(const char *path, long off, const void *bytes, size_t n)
{
	int fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, bytes, n, off), (ssize_t)n);
	close(fd);
}

static void flip(const char *path, long off)
{
	int fd = open(path, O_RDWR);
	unsigned char c;
	assert_int_equal(pread(fd, &c, 1, off), 1);
	c ^= 0x10;
	assert_int_equal(pwrite(fd, &c, 1, off), 1);
	close(fd);
}

/*
 * Restores path into the reference shapes (values of another seed first):
 * the return code and the message must be exactly these, and no value may
 * have changed.
 */
static void expect_refusal(const char *path, int code, const char *detail)
{
	ps_table *t[2];
	ps_world *w = job(2, ref_keys, ref_vlen, t);
	float *before0 = NULL, *before1 = NULL;
	uint64_t k[100];
	for (int i = 0; i < 100; i++)
		k[i] = (uint64_t)i;
	before0 = calloc(400, sizeof(float));
	before1 = calloc(150, sizeof(float));
	assert_int_equal(ps_pull_sync(t[0], k, 100, before0), 0);
	assert_int_equal(ps_pull_sync(t[1], k, 50, before1), 0);
	int rc = ps_restore(w, path);
	char want[1024];
	snprintf(want, sizeof want, "%s: %s", path, detail);
	if (rc != code || strcmp(ps_checkpoint_error(w), want) != 0)
		fprintf(stderr, "want %d '%s'\n got %d '%s'\n", code, want, rc, ps_checkpoint_error(w));
	assert_int_equal(rc, code);
	assert_string_equal(ps_checkpoint_error(w), want);
	float after0[400], after1[150];
	assert_int_equal(ps_pull_sync(t[0], k, 100, after0), 0);
	assert_int_equal(ps_pull_sync(t[1], k, 50, after1), 0);
	assert_memory_equal(before0, after0, sizeof after0);
	assert_memory_equal(before1, after1, sizeof after1);
	free(before0);
	free(before1);
	ps_finalize(w);
}

/* ------------------------------------------------------------ tests */

static void test_round_trip_is_bit_identical_across_nodes_and_moves(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	KEEP(f, "multi.ckpt");
	struct run_result r;
	char *save[] = {(char *)build_path("bin/psrun"), "-n", "2", self, "--node", "save", (char *)f, NULL};
	run_prog(save, NULL, 60, -1, 0, &r);
	if (r.status != 0)
		fprintf(stderr, "%s%s", r.out, r.err);
	assert_int_equal(r.status, 0);
	/* header + 3 saved tables' data + crc: transient table 2 not in it */
	long data = (1000 * 7 + 333 * 100 + 5 * 1) * 4;
	assert_int_equal(file_size(f), 40 + 3 * 32 + 9 + data + 4);
	/* back into 3 nodes, keys moved again before the restore */
	char *load[] = {(char *)build_path("bin/psrun"), "-n", "3", self, "--node", "load", (char *)f, NULL};
	run_prog(load, NULL, 60, -1, 0, &r);
	if (r.status != 0)
		fprintf(stderr, "%s%s", r.out, r.err);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "node 0: 0 values differ"));
	assert_non_null(strstr(r.out, "node 2: 0 values differ"));
	/* the same through psrun --restore and ps_restore(w, NULL) */
	char *env[] = {"PSMEM_RESTORE=", NULL}; /* ours must not leak into psrun's */
	char *load2[] = {(char *)build_path("bin/psrun"), "-n", "2", "--restore", (char *)f, self, "--node", "load", "-",
			 NULL};
	run_prog(load2, env, 60, -1, 0, &r);
	if (r.status != 0)
		fprintf(stderr, "%s%s", r.out, r.err);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "node 1: 0 values differ"));
	assert_int_equal(seg_leaked_since(&segs), 0);
}

static void test_restore_without_a_file_changes_nothing(void **state)
{
	(void)state;
	unsetenv("PSMEM_RESTORE");
	ps_table *t[2];
	ps_world *w = job(2, ref_keys, ref_vlen, t);
	float a[4], b[4];
	ps_key k = 7;
	assert_int_equal(ps_pull_sync(t[0], &k, 1, a), 0);
	size_t len = 99;
	assert_int_equal(ps_restore_meta(w, NULL, NULL, 0, &len), 0);
	assert_int_equal(len, 0);
	assert_int_equal(ps_pull_sync(t[0], &k, 1, b), 0);
	assert_memory_equal(a, b, sizeof a);
	assert_int_equal(ps_checkpoint(w, NULL), -EINVAL);
	char big[PS_CKPT_META_MAX + 1];
	assert_int_equal(ps_checkpoint_meta(w, path_of("x"), big, sizeof big), -EINVAL);
	ps_finalize(w);
}

static void test_truncated_files_are_refused_at_every_offset(void **state)
{
	(void)state;
	KEEP(ref, "ref.ckpt");
	KEEP(cut, "cut.ckpt");
	write_reference(ref);
	long total = file_size(ref), H = 40 + 2 * 32;
	assert_int_equal(total, H + (100 * 4 + 50 * 3) * 4 + 4);
	const long offs[] = {0, 5, 11, 39, 41, H - 1, H, H + 777, total - 1};
	for (size_t i = 0; i < sizeof offs / sizeof *offs; i++) {
		copy_prefix(ref, cut, offs[i]);
		long want = offs[i] < 40 ? 40 : offs[i] < H ? H : total;
		char msg[128];
		snprintf(msg, sizeof msg, "truncated at byte %ld (expected %ld bytes)", offs[i], want);
		expect_refusal(cut, PS_ECKPT, msg);
	}
}

static void test_corrupted_files_are_refused_with_their_reason(void **state)
{
	(void)state;
	KEEP(ref, "ref2.ckpt");
	KEEP(bad, "bad.ckpt");
	write_reference(ref);
	long total = file_size(ref);
	/* a flipped byte in the data */
	copy_prefix(ref, bad, total);
	flip(bad, 40 + 64 + 1000);
	ps_table *t[2];
	ps_world *w = job(2, ref_keys, ref_vlen, t);
	assert_int_equal(ps_restore(w, bad), PS_ECKPT);
	char want[600];
	snprintf(want, sizeof want, "%s: checksum mismatch (stored ", bad);
	assert_memory_equal(ps_checkpoint_error(w), want, strlen(want));
	assert_non_null(strstr(ps_checkpoint_error(w), "): the data is corrupted"));
	ps_finalize(w);
	/* ... in the stored checksum itself */
	copy_prefix(ref, bad, total);
	flip(bad, total - 2);
	w = job(2, ref_keys, ref_vlen, t);
	assert_int_equal(ps_restore(w, bad), PS_ECKPT);
	assert_memory_equal(ps_checkpoint_error(w), want, strlen(want));
	ps_finalize(w);
	/* ... in a table's shape: the header checksum */
	copy_prefix(ref, bad, total);
	flip(bad, 40 + 8);
	expect_refusal(bad, PS_ECKPT, "corrupt header (header checksum mismatch)");
	/* magic, version, lengths, trailing bytes */
	copy_prefix(ref, bad, total);
	patch(bad, 0, "PSMEMCKX", 8);
	expect_refusal(bad, PS_ECKPT, "not a psmem checkpoint (bad magic)");
	copy_prefix(ref, bad, total);
	uint32_t v3 = 3;
	patch(bad, 8, &v3, 4);
	expect_refusal(bad, PS_ECKPT, "checkpoint format version 3; this psmem reads versions 1 and 2");
	copy_prefix(ref, bad, total);
	uint32_t hl = 41;
	patch(bad, 12, &hl, 4);
	expect_refusal(bad, PS_ECKPT, "corrupt header (its lengths do not add up)");
	copy_prefix(ref, bad, total);
	patch(bad, total, "xyz", 3);
	expect_refusal(bad, PS_ECKPT, "3 unexpected bytes after the end of the checkpoint");
	expect_refusal(path_of("no-such.ckpt"), -ENOENT, "cannot open: No such file or directory");
}

static void test_other_shapes_are_refused_naming_table_and_field(void **state)
{
	(void)state;
	KEEP(ref, "ref3.ckpt");
	write_reference(ref);
	struct {
		int n;
		uint64_t keys[3];
		uint32_t vlen[3];
		const char *msg;
	} cases[] = {
		{2, {100, 50}, {5, 3}, "table 0: value_len is 4 in the file, 5 in this job"},
		{2, {100, 51}, {4, 3}, "table 1: num_keys is 50 in the file, 51 in this job"},
		{1, {100}, {4}, "holds 2 tables; this job has 1 (transient tables not counted)"},
		{3, {100, 50, 1}, {4, 3, 1}, "holds 2 tables; this job has 3 (transient tables not counted)"},
	};
	for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
		ps_table *t[3];
		ps_world *w = job(cases[c].n, cases[c].keys, cases[c].vlen, t);
		float before[5], after[5];
		ps_key k = 3;
		assert_int_equal(ps_pull_sync(t[0], &k, 1, before), 0);
		assert_int_equal(ps_restore(w, ref), PS_ESHAPE);
		char want[600];
		snprintf(want, sizeof want, "%s: %s", ref, cases[c].msg);
		assert_string_equal(ps_checkpoint_error(w), want);
		assert_int_equal(ps_pull_sync(t[0], &k, 1, after), 0);
		assert_memory_equal(before, after, sizeof(float) * cases[c].vlen[0]);
		ps_finalize(w);
	}
	/* a transient table of any shape does not count */
	ps_table *t[3];
	ps_world *w = job(2, ref_keys, ref_vlen, t);
	ps_table_opts o;
	ps_table_opts_init(&o, 7, 9);
	o.flags = PS_TRANSIENT;
	int err;
	assert_non_null(ps_table_create(w, &o, &err));
	assert_int_equal(ps_restore(w, ref), 2);
	ps_finalize(w);
}

/* The writer: a 32 MB table checkpointed to path again and again. */
enum { BIG_KEYS = 500000, BIG_VLEN = 16 };

static void big_opts(ps_table_opts *o)
{
	ps_table_opts_init(o, BIG_KEYS, BIG_VLEN);
	o->init = PS_INIT_UNIFORM;
	o->init_a = 1;
	o->seed = 77;
}

/* Every value of table t, key by key. */
static float *pull_every_key(ps_table *t, uint64_t keys, uint32_t vlen)
{
	float *v = malloc(sizeof(float) * keys * vlen);
	ps_key *k = malloc(sizeof(ps_key) * keys);
	assert_non_null(v);
	assert_non_null(k);
	for (uint64_t i = 0; i < keys; i++)
		k[i] = i;
	assert_int_equal(ps_pull_sync(t, k, keys, v), 0);
	free(k);
	return v;
}

static void writer_child(const char *path)
{
	int err;
	ps_world *w = ps_init(&err);
	ps_table_opts o;
	big_opts(&o);
	ps_table *t = w ? ps_table_create(w, &o, &err) : NULL;
	if (!t)
		_exit(2);
	for (;;)
		if (ps_checkpoint(w, path) != 0)
			_exit(3);
}

static bool temp_of(pid_t pid, const char *path)
{
	char tmp[600];
	snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)pid);
	return access(tmp, F_OK) == 0;
}

static void test_a_writer_killed_mid_write_leaves_the_old_file_whole(void **state)
{
	(void)state;
	KEEP(f, "big.ckpt");
	pid_t pid = fork();
	if (pid == 0)
		writer_child(f);
	/* a first complete file, then the writer busy with the next one */
	double end = mono_now() + 60;
	while (access(f, F_OK) != 0 && mono_now() < end)
		usleep(1000);
	while (!temp_of(pid, f) && mono_now() < end)
		usleep(200);
	assert_true(temp_of(pid, f));
	kill(pid, SIGKILL);
	int st;
	waitpid(pid, &st, 0);
	assert_true(WIFSIGNALED(st));
	assert_true(temp_of(pid, f)); /* nobody could remove it */
	/* the writer's values: its table's initial ones (it never pushed),
	 * made again here by a table with the same options */
	int err;
	ps_world *w = ps_init(&err);
	assert_non_null(w);
	ps_table_opts o;
	big_opts(&o);
	ps_table *t = ps_table_create(w, &o, &err);
	assert_non_null(t);
	float *want = pull_every_key(t, BIG_KEYS, BIG_VLEN);
	assert_int_equal(ps_finalize(w), 0);
	/* PATH is the whole previous checkpoint: it restores every key,
	 * bitwise, into a table that starts at 0 */
	w = ps_init(&err);
	assert_non_null(w);
	ps_table_opts_init(&o, BIG_KEYS, BIG_VLEN);
	o.seed = 77;
	t = ps_table_create(w, &o, &err);
	assert_non_null(t);
	assert_int_equal(ps_restore(w, f), 1);
	float *got = pull_every_key(t, BIG_KEYS, BIG_VLEN);
	for (uint64_t i = 0; i < (uint64_t)BIG_KEYS * BIG_VLEN; i++)
		if (memcmp(&got[i], &want[i], sizeof(float)) != 0)
			fail_msg("key %lu [%lu] restored as %a, written as %a", (unsigned long)(i / BIG_VLEN),
				 (unsigned long)(i % BIG_VLEN), (double)got[i], (double)want[i]);
	free(got);
	free(want);
	/* the next checkpoint to PATH sweeps the dead writer's temp file and
	 * leaves none of its own */
	assert_int_equal(ps_checkpoint(w, f), 0);
	assert_false(temp_of(pid, f));
	assert_false(temp_of(getpid(), f));
	ps_finalize(w);
}

static void test_a_failed_write_leaves_no_file_and_says_why(void **state)
{
	(void)state;
	ps_table *t[2];
	ps_world *w = job(2, ref_keys, ref_vlen, t);
	char f[600];
	snprintf(f, sizeof f, "%s/no-such-dir/x.ckpt", dir);
	assert_int_equal(ps_checkpoint(w, f), -ENOENT);
	char want[700];
	snprintf(want, sizeof want, "%s: cannot create: No such file or directory", f);
	assert_string_equal(ps_checkpoint_error(w), want);
	/* a successful one: no temp file beside it */
	KEEP(ok, "ok.ckpt");
	assert_int_equal(ps_checkpoint(w, ok), 0);
	assert_string_equal(ps_checkpoint_error(w), "");
	DIR *d = opendir(dir);
	struct dirent *e;
	while ((e = readdir(d)))
		assert_null(strstr(e->d_name, "ok.ckpt.tmp"));
	closedir(d);
	ps_finalize(w);
}

static void test_psrun_restore_refuses_a_bad_file_before_starting(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	KEEP(ref, "ref4.ckpt");
	KEEP(cut, "cut4.ckpt");
	write_reference(ref);
	copy_prefix(ref, cut, 60);
	struct run_result r;
	char *argv[] = {(char *)build_path("bin/psrun"), "-n", "2", "--restore", (char *)cut, "true", NULL};
	run_prog(argv, NULL, 20, -1, 0, &r);
	assert_int_equal(r.status, 2);
	char want[700];
	snprintf(want, sizeof want, "psrun: bad arguments: --restore %s: truncated at byte 60 (expected 104 bytes)", cut);
	assert_non_null(strstr(r.err, want));
	assert_int_equal(seg_leaked_since(&segs), 0);
}

/* psstat --checkpoint against a job that polls, one that fails, one that
 * never polls. */
static void test_psstat_checkpoint_asks_a_running_job(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	KEEP(f, "asked.ckpt");
	for (int pass = 0; pass < 2; pass++) {
		struct bg_proc b;
		char *argv[] = {(char *)build_path("bin/psrun"), "-n", "2", self, "--node", "poll", NULL};
		bg_start(&b, argv, path_of(pass == 0 ? "poll0.out" : "poll1.out"));
		assert_true(bg_wait_output(&b, "polling", 120));
		pid_t n0 = psrun_node_pid_wait(b.pid, 0, 60);
		assert_true(n0 > 0);
		char seg[256], target[600];
		snprintf(seg, sizeof seg, "%s", proc_env(n0, "PSMEM_SEGMENT"));
		snprintf(target, sizeof target, "%s", pass == 0 ? f : path_of("no-such-dir/x"));
		struct run_result r;
		char *ps[] = {(char *)build_path("bin/psstat"), "--checkpoint", target, "--timeout", "20", seg, NULL};
		run_prog(ps, NULL, 30, -1, 0, &r);
		char want[1600];
		if (pass == 0) {
			if (r.status != 0)
				fprintf(stderr, "%s%s", r.out, r.err);
			assert_int_equal(r.status, 0);
			snprintf(want, sizeof want, "psstat: job %s: checkpoint written to %s\n", seg, f);
			assert_string_equal(r.out, want);
			assert_true(bg_wait(&b, 30));
			assert_int_equal(b.status, 0);
			assert_non_null(strstr(file_text(b.out), "poll wrote a checkpoint at epoch"));
		} else {
			assert_int_equal(r.status, 1);
			snprintf(want, sizeof want,
				 "psstat: job %s: checkpoint to %s failed: cannot create: No such file or directory\n", seg,
				 target);
			assert_string_equal(r.err, want);
			assert_true(bg_wait_output(&b, "poll failed at epoch", 30));
			kill(b.pid, SIGTERM);
			assert_true(bg_wait(&b, 30));
		}
	}
	/* the checkpoint holds the epoch the job was at */
	const char *said = strstr(file_text(path_of("poll0.out")), "poll wrote a checkpoint at epoch ");
	assert_non_null(said);
	int epoch = atoi(said + strlen("poll wrote a checkpoint at epoch "));
	int err;
	ps_world *w = ps_init(&err);
	ps_table *t[NT];
	make_tables(w, t, 0);
	int meta = -1;
	size_t len;
	assert_int_equal(ps_restore_meta(w, f, &meta, sizeof meta, &len), 3);
	assert_int_equal(len, sizeof meta);
	assert_int_equal(meta, epoch);
	ps_finalize(w);

	/* a program that never polls: the request is withdrawn */
	struct bg_proc b;
	char *argv[] = {(char *)build_path("bin/psrun"), "-n", "1", "sleep", "30", NULL};
	bg_start(&b, argv, path_of("sleep.out"));
	pid_t n0 = psrun_node_pid_wait(b.pid, 0, 60);
	assert_true(n0 > 0);
	char seg[256];
	snprintf(seg, sizeof seg, "%s", proc_env(n0, "PSMEM_SEGMENT"));
	struct run_result r;
	char *ps[] = {(char *)build_path("bin/psstat"), "--checkpoint", (char *)f, "--timeout", "0.5", seg, NULL};
	run_prog(ps, NULL, 30, -1, 0, &r);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "no node took the checkpoint request (the program must call "
				      "ps_checkpoint_poll) within 0.5 s"));
	kill(b.pid, SIGTERM);
	assert_true(bg_wait(&b, 30));
	assert_int_equal(seg_leaked_since(&segs), 0);
}

/* ------------------------------------------------------------ apps */

/* ------------------------------------------- replication, update rules */

/* Table A (100 x 4) may replicate 8 keys (no sync rounds but ps_sync);
 * table B (50 x 3) applies pushes with adagrad (3 floats of state). */
static ps_world *repl_job(ps_table **t, uint32_t brule)
{
	int err;
	ps_world *w = ps_init(&err);
	assert_non_null(w);
	ps_table_opts o;
	ps_table_opts_init(&o, 100, 4);
	o.repl_max = 8;
	o.repl_rate = 0;
	t[0] = ps_table_create(w, &o, &err);
	assert_non_null(t[0]);
	ps_table_opts_init(&o, 50, 3);
	o.init = PS_INIT_CONST;
	o.init_a = 1;
	o.rule = brule;
	if (brule == PS_RULE_ADAGRAD) {
		o.rule_params[0] = 0.1f;
		o.rule_params[1] = 1e-8f;
	}
	t[1] = ps_table_create(w, &o, &err);
	assert_non_null(t[1]);
	return w;
}

static void push_round(ps_table **t, float scale)
{
	for (ps_key k = 0; k < 16; k++) {
		float u[4] = {scale * (float)(k + 1), -scale, 0.5f * scale, scale * (float)k * 0.25f};
		assert_int_equal(ps_push_sync(t[0], &k, 1, u), 0);
	}
	for (ps_key k = 0; k < 50; k += 7) {
		float g[3] = {scale, -2 * scale, 0.5f * scale};
		assert_int_equal(ps_push_sync(t[1], &k, 1, g), 0);
	}
}

/* Replicated keys are saved with every pending delta (ps_sync before the
 * save) and restored into primary and replicas alike (pending deltas
 * dropped); the update-rule state travels with the values, and a job
 * whose table has another rule is refused. */
static void test_replicated_keys_and_rule_state_round_trip(void **state)
{
	(void)state;
	unsetenv("PSMEM_RESTORE");
	KEEP(f, "repl.ckpt");
	ps_table *t[2];
	ps_world *w = repl_job(t, PS_RULE_ADAGRAD);
	ps_key hot[8] = {0, 1, 2, 3, 4, 5, 6, 7};
	assert_int_equal(ps_replicate(t[0], hot, 8), 8);
	push_round(t, 1.0f); /* deltas of keys 0..7 pending: no rounds */
	float a0[400], b0[150], a[400], b[150], b1[150];
	ps_key ka[100], kb[50];
	for (ps_key k = 0; k < 100; k++)
		ka[k] = k;
	for (ps_key k = 0; k < 50; k++)
		kb[k] = k;
	assert_int_equal(ps_pull_sync(t[0], ka, 100, a0), 0);
	assert_int_equal(ps_pull_sync(t[1], kb, 50, b0), 0);
	assert_int_equal(ps_checkpoint(w, f), 0);
	/* the file: 2 tables, B with its 3 floats of adagrad state per key */
	assert_int_equal(file_size(f), 40 + 2 * 32 + (100 * 4 + 50 * 6) * 4 + 4);

	push_round(t, 3.0f); /* B's accumulators move on */
	assert_int_equal(ps_pull_sync(t[1], kb, 50, b1), 0);
	assert_int_equal(ps_restore(w, f), 2);
	assert_int_equal(ps_pull_sync(t[0], ka, 100, a), 0);
	assert_memory_equal(a, a0, sizeof a);
	assert_int_equal(ps_sync(t[0]), 0); /* no delta left to add again */
	assert_int_equal(ps_pull_sync(t[0], ka, 100, a), 0);
	assert_memory_equal(a, a0, sizeof a);
	assert_int_equal(ps_is_replicated(t[0], 3), 1);
	assert_int_equal(ps_unreplicate(t[0], hot, 8), 8);
	assert_int_equal(ps_pull_sync(t[0], ka, 100, a), 0);
	assert_memory_equal(a, a0, sizeof a);
	assert_int_equal(ps_pull_sync(t[1], kb, 50, b), 0);
	assert_memory_equal(b, b0, sizeof b);
	/* state restored: the same pushes give the same values again */
	push_round(t, 3.0f);
	assert_int_equal(ps_pull_sync(t[1], kb, 50, b), 0);
	assert_memory_equal(b, b1, sizeof b);
	ps_finalize(w);

	/* B with the sum rule (no state): another shape */
	w = repl_job(t, PS_RULE_SUM);
	assert_int_equal(ps_restore(w, f), PS_ESHAPE);
	assert_non_null(strstr(ps_checkpoint_error(w), "table 1"));
	ps_finalize(w);
}

static double json_num(const char *json, const char *key)
{
	double x = json_number(json, key);
	if (isnan(x))
		fail_msg("key %s missing from %s", key, json);
	return x;
}

/* mf on the planted data; extra args after the common ones. */
static void mf(int nodes, const char *epochs, const char *json, const char *const *extra, struct run_result *r)
{
	char *argv[48];
	int n = 0;
	if (nodes) {
		argv[n++] = (char *)build_path("bin/psrun");
		argv[n++] = "-n";
		argv[n++] = nodes == 2 ? "2" : "1";
	}
	argv[n++] = (char *)build_path("apps/mf");
	const char *common[] = {"--train", path_of("train.txt"), "--test", path_of("test.txt"), "--rank", "6",
				"--lr", "0.02", "--reg", "0.02", "--epochs", epochs, "--json", json, NULL};
	for (int i = 0; common[i]; i++)
		argv[n++] = (char *)common[i];
	for (int i = 0; extra && extra[i]; i++)
		argv[n++] = (char *)extra[i];
	argv[n] = NULL;
	run_prog(argv, NULL, 60, -1, 0, r);
	if (r->status != 0)
		fprintf(stderr, "mf exited %d:\n%s%s", r->status, r->out, r->err);
}

static void test_mf_resumed_run_matches_an_uninterrupted_one(void **state)
{
	(void)state;
	struct run_result r;
	KEEP(ck, "mf.ckpt");
	/* one worker: bit-identical */
	mf(0, "8", path_of("full.json"), NULL, &r);
	assert_int_equal(r.status, 0);
	const char *every[] = {"--checkpoint", ck, "--checkpoint-every", "2", NULL};
	mf(0, "4", path_of("half.json"), every, &r);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "mf: checkpoint after epoch 2 written to"));
	assert_non_null(strstr(r.out, "mf: checkpoint after epoch 4 written to"));
	const char *resume[] = {"--resume", ck, NULL};
	mf(0, "8", path_of("resumed.json"), resume, &r);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "mf: resumed after epoch 4"));
	assert_null(strstr(r.out, "epoch 4/8"));
	assert_non_null(strstr(r.out, "epoch 5/8"));
	double full = json_num(file_text(path_of("full.json")), "rmse");
	double resumed = json_num(file_text(path_of("resumed.json")), "rmse");
	fprintf(stderr, "# mf one worker: test RMSE %.8f uninterrupted, %.8f resumed after epoch 4\n", full, resumed);
	assert_true(full == resumed);
	/* two nodes (update order varies), through psrun --restore: the same
	 * quality */
	mf(2, "16", path_of("full2.json"), NULL, &r);
	assert_int_equal(r.status, 0);
	mf(2, "8", path_of("half2.json"), (const char *[]){"--checkpoint", ck, NULL}, &r);
	assert_int_equal(r.status, 0);
	char *argv[40];
	int n = 0;
	const char *a[] = {build_path("bin/psrun"), "-n", "2", "--restore", ck, build_path("apps/mf"), "--train",
			   path_of("train.txt"), "--test", path_of("test.txt"), "--rank", "6", "--lr", "0.02", "--reg",
			   "0.02", "--epochs", "16", "--json", path_of("resumed2.json"), NULL};
	for (; a[n]; n++)
		argv[n] = (char *)a[n];
	argv[n] = NULL;
	run_prog(argv, NULL, 60, -1, 0, &r);
	if (r.status != 0)
		fprintf(stderr, "mf exited %d:\n%s%s", r.status, r.out, r.err);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "mf: resumed after epoch 8"));
	full = json_num(file_text(path_of("full2.json")), "rmse");
	resumed = json_num(file_text(path_of("resumed2.json")), "rmse");
	fprintf(stderr, "# mf two nodes: test RMSE %.5f uninterrupted, %.5f resumed (psrun --restore)\n", full, resumed);
	assert_true(fabs(full - resumed) < 0.01);
}

static void test_mf_refuses_to_resume_from_a_bad_checkpoint(void **state)
{
	(void)state;
	struct run_result r;
	KEEP(ck, "mfbad.ckpt");
	KEEP(cut, "mfcut.ckpt");
	mf(0, "2", path_of("b.json"), (const char *[]){"--checkpoint", ck, NULL}, &r);
	assert_int_equal(r.status, 0);
	copy_prefix(ck, cut, 100);
	char want[800];
	mf(0, "4", path_of("b.json"), (const char *[]){"--resume", cut, NULL}, &r);
	assert_int_equal(r.status, 1);
	snprintf(want, sizeof want, "mf: cannot resume: %s: truncated at byte 100", cut);
	assert_non_null(strstr(r.err, want));
	mf(0, "4", path_of("b.json"), (const char *[]){"--resume", ck, "--rank", "5", NULL}, &r);
	assert_int_equal(r.status, 1);
	snprintf(want, sizeof want, "mf: cannot resume: %s: table 0: value_len is 9 in the file, 8 in this job\n", ck);
	assert_string_equal(r.err, want);
	mf(0, "2", path_of("b.json"), (const char *[]){"--resume", ck, NULL}, &r);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "the checkpoint has 2 epochs done; --epochs 2 leaves none to train"));
	mf(0, "2", path_of("b.json"), (const char *[]){"--checkpoint-every", "1", NULL}, &r);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "--checkpoint-every needs --checkpoint FILE"));
}

/* Final loss of the output: the last "loss X" of an epoch line. */
static double last_loss(const char *out)
{
	double x = NAN;
	for (const char *p = strstr(out, " loss "); p; p = strstr(p + 1, " loss "))
		x = strtod(p + 6, NULL);
	return x;
}

static void test_kge_and_w2v_resume_where_they_stopped(void **state)
{
	(void)state;
	struct run_result r;
	/* kge: a ring of 40 entities with next/prev relations */
	mkdir(path_of("kg"), 0700);
	const char *names[] = {"train.txt", "valid.txt", "test.txt"};
	for (int f = 0; f < 3; f++) {
		char p[600];
		snprintf(p, sizeof p, "%s/%s", path_of("kg"), names[f]);
		FILE *o = fopen(p, "w");
		for (int i = f; i < 40; i += f ? 10 : 1)
			fprintf(o, "e%d\tnext\te%d\ne%d\tprev\te%d\n", i, (i + 1) % 40, (i + 1) % 40, i);
		fclose(o);
	}
	KEEP(ck, "kge.ckpt");
	char *k1[] = {(char *)build_path("apps/kge"), "--dataset", (char *)path_of("kg"), "--dim", "16", "--neg", "16",
		      "--batch", "16", "--threads", "1", "--epochs", "8", NULL};
	run_prog(k1, NULL, 60, -1, 0, &r);
	assert_int_equal(r.status, 0);
	double full = last_loss(r.out);
	char *k2[] = {(char *)build_path("apps/kge"), "--dataset", (char *)path_of("kg"), "--dim", "16", "--neg", "16",
		      "--batch", "16", "--threads", "1", "--epochs", "4", "--checkpoint", (char *)ck, NULL};
	run_prog(k2, NULL, 60, -1, 0, &r);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "kge: checkpoint after epoch 4 written to"));
	char *k3[] = {(char *)build_path("apps/kge"), "--dataset", (char *)path_of("kg"), "--dim", "16", "--neg", "16",
		      "--batch", "16", "--threads", "1", "--epochs", "8", "--resume", (char *)ck, NULL};
	run_prog(k3, NULL, 60, -1, 0, &r);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "kge: resumed after epoch 4"));
	assert_null(strstr(r.out, "epoch 4/8"));
	double resumed = last_loss(r.out);
	fprintf(stderr, "# kge: final loss %.4f uninterrupted, %.4f resumed after epoch 4\n", full, resumed);
	assert_true(fabs(resumed - full) < 0.15 * full);

	/* w2v: a small corpus */
	FILE *o = fopen(path_of("corpus.txt"), "w");
	for (int n = 0; n < 2000; n++) {
		int t = (n * 7 + n / 3) % 10;
		for (int k = 0; k < 8; k++)
			fprintf(o, "c%d_%d ", t, (n * 13 + k * 5 + n / 7) % 6);
		fprintf(o, "\n");
	}
	fclose(o);
	KEEP(wck, "w2v.ckpt");
	char *w1[] = {(char *)build_path("apps/w2v"), "--train", (char *)path_of("corpus.txt"), "--dim", "16",
		      "--min-count", "1", "--sample", "0", "--batch", "500", "--threads", "1", "--epochs", "6", NULL};
	run_prog(w1, NULL, 60, -1, 0, &r);
	assert_int_equal(r.status, 0);
	full = last_loss(r.out);
	char *w2[] = {(char *)build_path("apps/w2v"), "--train", (char *)path_of("corpus.txt"), "--dim", "16",
		      "--min-count", "1", "--sample", "0", "--batch", "500", "--threads", "1", "--epochs", "3",
		      "--checkpoint", (char *)wck, NULL};
	run_prog(w2, NULL, 60, -1, 0, &r);
	assert_int_equal(r.status, 0);
	char *w3[] = {(char *)build_path("apps/w2v"), "--train", (char *)path_of("corpus.txt"), "--dim", "16",
		      "--min-count", "1", "--sample", "0", "--batch", "500", "--threads", "1", "--epochs", "6",
		      "--resume", (char *)wck, NULL};
	run_prog(w3, NULL, 60, -1, 0, &r);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "w2v: resumed after epoch 3"));
	assert_null(strstr(r.out, "epoch 3/6"));
	resumed = last_loss(r.out);
	fprintf(stderr, "# w2v: final loss %.4f uninterrupted, %.4f resumed after epoch 3\n", full, resumed);
	assert_true(fabs(resumed - full) < 0.05 * full);
	/* another app's checkpoint */
	char *w4[] = {(char *)build_path("apps/kge"), "--dataset", (char *)path_of("kg"), "--epochs", "8", "--resume",
		      (char *)wck, NULL};
	run_prog(w4, NULL, 60, -1, 0, &r);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "kge: cannot resume: "));
}

/* ------------------------------------------------------------ main */

static int setup(void **state)
{
	(void)state;
	if (!mkdtemp(dir))
		return -1;
	return make_ratings(path_of("train.txt"), path_of("test.txt"), 200, 150, 12000, 7, "0.15") == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "--node") == 0)
		return node_main(argc - 2, argv + 2);
	if (!self_exe(self, sizeof self))
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_is_bit_identical_across_nodes_and_moves),
		cmocka_unit_test(test_restore_without_a_file_changes_nothing),
		cmocka_unit_test(test_truncated_files_are_refused_at_every_offset),
		cmocka_unit_test(test_corrupted_files_are_refused_with_their_reason),
		cmocka_unit_test(test_other_shapes_are_refused_naming_table_and_field),
		cmocka_unit_test(test_a_writer_killed_mid_write_leaves_the_old_file_whole),
		cmocka_unit_test(test_a_failed_write_leaves_no_file_and_says_why),
		cmocka_unit_test(test_psrun_restore_refuses_a_bad_file_before_starting),
		cmocka_unit_test(test_psstat_checkpoint_asks_a_running_job),
		cmocka_unit_test(test_replicated_keys_and_rule_state_round_trip),
		cmocka_unit_test(test_mf_resumed_run_matches_an_uninterrupted_one),
		cmocka_unit_test(test_mf_refuses_to_resume_from_a_bad_checkpoint),
		cmocka_unit_test(test_kge_and_w2v_resume_where_they_stopped),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
