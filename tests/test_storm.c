/*
 * test_storm.c - multi-process tests under psrun: conservation of pushed
 * sums and no torn or stale reads while keys are relocated concurrently,
 * and clean failure when a node dies mid-storm or psrun is interrupted.
 *
 * The binary has two roles.  Run by cmocka (no PSMEM_SEGMENT) it is the
 * driver: it starts `psrun -n N -t T <itself> --node SCENARIO ARGS` and
 * checks the outcome.  Under psrun it is a node of the storm.
 *
 * The storm: T worker threads per node push to random keys (a
 * deterministic stream per (node, thread)); each push adds the same scalar
 * to every element of the key's vector.  Beside them, per node, a localizer
 * thread moves random keys to its node (sync and async), and a reader thread
 * pulls random keys and checks that every vector has all elements equal
 * (no torn read) and that no key's value ever decreases (adds are
 * positive: a smaller value seen later is a lost or reordered update).
 * After the workers' barrier node 0 replays every stream and compares each
 * key's value with the exact expected sum.  Exit: 0 ok, 1 wrong sums,
 * 2 torn/decreasing reads, 3 stale reads detected (reclamation violation).
 *
 * Variants (node arguments): "api rows" makes every push a ps_row_lock /
 * add in place / ps_row_unlock of one key (zero-copy rows, exact sums
 * still asserted); "api inline" pushes and pulls through the inline fast
 * path (psmem_static.h); "api hogrows" uses a PS_HOGWILD table whose float
 * 0 holds the key's id, and pushers add in place inside ps_rows_enter /
 * ps_rows_exit: the id must read right at every access inside the section
 * and at the end (a slot freed or reused under a section breaks it), the
 * sums may fall short (lost HOGWILD updates) but never exceed the pushes.
 */
#include <setjmp.h>
#include <sched.h>
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
#include "psmem_int.h"
#include "psmem_static.h"

/* ------------------------------------------------------------ node side */

struct storm {
	ps_world *w;
	ps_table *t;
	uint64_t keys;
	uint32_t vlen;
	long batches;          /* push batches per worker thread */
	int die_node;          /* node that SIGKILLs itself, -1 none */
	enum { API_SYNC, API_ROWS, API_INLINE, API_HOGROWS } api;
	_Atomic uint64_t bad_ids; /* hogrows: float 0 was not the key's id */
	_Atomic bool ids_set;     /* hogrows: this node's workers passed the id barrier */
	_Atomic bool stop;
	_Atomic uint64_t torn, decreasing, pulls_checked;
	_Atomic int result;
};

#define BATCH 16

/* The push stream of (node, thread): batch b, item i -> key, scalar. */
static void stream_item(uint64_t *s, uint64_t keys, ps_key *k, float *add)
{
	uint64_t r = test_rnd(s);
	*k = r % keys;
	*add = (float)(1 + (r >> 60) % 3);
}

/* HOGWILD rows are racy by contract: under ThreadSanitizer the test reads
 * and writes them with relaxed atomics, as the library does (psmem.h). */
static float hog_get(float *p)
{
#ifdef PS_SANITIZE
	uint32_t x = __atomic_load_n((uint32_t *)(void *)p, __ATOMIC_RELAXED);
	float f;
	memcpy(&f, &x, sizeof f);
	return f;
#else
	return *p;
#endif
}

static void hog_add(float *p, float a)
{
#ifdef PS_SANITIZE
	float f = hog_get(p) + a;
	uint32_t x;
	memcpy(&x, &f, sizeof x);
	__atomic_store_n((uint32_t *)(void *)p, x, __ATOMIC_RELAXED);
#else
	*p += a;
#endif
}

/* One batch of pushes the way the storm's api says. */
static int push_batch(struct storm *st, const ps_key *keys, const float *upd)
{
	if (st->api == API_SYNC)
		return ps_push_sync(st->t, keys, BATCH, upd);
	if (st->api == API_INLINE)
		return ps_push_sync_inline(st->t, keys, BATCH, upd);
	for (int i = 0; i < BATCH; i++) {
		const float *u = upd + (size_t)i * st->vlen;
		if (st->api == API_ROWS) {
			ps_row r;
			float *v = ps_row_lock(st->t, keys[i], &r);
			if (!v)
				return r.err;
			for (uint32_t j = 0; j < st->vlen; j++)
				v[j] += u[j];
			ps_row_unlock(&r);
			continue;
		}
		int rc = ps_rows_enter(st->t); /* API_HOGROWS */
		if (rc)
			return rc;
		float *v = ps_row_get(st->t, keys[i], &rc);
		if (!v) {
			ps_rows_exit(st->t);
			return rc;
		}
		if (hog_get(&v[0]) != (float)keys[i])
			atomic_fetch_add(&st->bad_ids, 1);
		for (uint32_t j = 1; j < st->vlen; j++)
			hog_add(&v[j], u[j]);
		if (hog_get(&v[0]) != (float)keys[i]) /* still the key's slot */
			atomic_fetch_add(&st->bad_ids, 1);
		ps_rows_exit(st->t);
	}
	return 0;
}

static void pusher(ps_world *w, int tid, void *arg)
{
	struct storm *st = arg;
	uint64_t s = (uint64_t)ps_node_id(w) * 1000 + (uint64_t)tid + 1;
	ps_key keys[BATCH];
	float *upd = malloc(sizeof(float) * BATCH * st->vlen);
	if (st->api == API_HOGROWS) { /* float 0 of each key: its id */
		for (ps_key k = 0; k < st->keys && ps_node_id(w) == 0 && tid == 0; k++) {
			memset(upd, 0, sizeof(float) * st->vlen);
			upd[0] = (float)k;
			ps_push_sync(st->t, &k, 1, upd);
		}
		if (ps_barrier(w) != 0)
			atomic_store(&st->result, 1);
		atomic_store(&st->ids_set, true);
	}
	for (long b = 0; b < st->batches; b++) {
		for (int i = 0; i < BATCH; i++) {
			float a;
			stream_item(&s, st->keys, &keys[i], &a);
			for (uint32_t j = 0; j < st->vlen; j++)
				upd[(size_t)i * st->vlen + j] = a;
		}
		if (push_batch(st, keys, upd) != 0)
			atomic_store(&st->result, 1);
		if (st->die_node == ps_node_id(w) && tid == 0 && b == 2000) {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			fprintf(stderr, "storm: dying at %.6f\n", (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
			raise(SIGKILL);
		}
	}
	free(upd);
	if (ps_barrier(w) != 0)
		atomic_store(&st->result, 1);
}

static void *localizer(void *arg)
{
	struct storm *st = arg;
	uint64_t s = 777 + (uint64_t)ps_node_id(st->w);
	ps_key keys[8];
	/* hogrows: the ids are HOGWILD pushes, which a relocation may lose */
	while (st->api == API_HOGROWS && !atomic_load(&st->ids_set) && !atomic_load(&st->stop))
		sched_yield();
	for (long it = 0; !atomic_load(&st->stop); it++) {
		for (int i = 0; i < 8; i++)
			keys[i] = test_rnd(&s) % st->keys;
		int rc = (it & 3) == 0 ? ps_wait(ps_localize(st->t, keys, 8)) : ps_localize_sync(st->t, keys, 8);
		if (rc != 0) {
			fprintf(stderr, "storm: localize: %s\n", ps_strerror(rc));
			atomic_store(&st->result, 1);
		}
	}
	return NULL;
}

static void *reader(void *arg)
{
	struct storm *st = arg;
	uint64_t s = 999 + (uint64_t)ps_node_id(st->w);
	float *last = calloc(st->keys, sizeof(float));
	float *v = malloc(sizeof(float) * 8 * st->vlen);
	ps_key keys[8];
	while (!atomic_load(&st->stop)) {
		for (int i = 0; i < 8; i++)
			keys[i] = test_rnd(&s) % st->keys;
		bool ids = atomic_load(&st->ids_set); /* before the pull */
		int rc = st->api == API_INLINE ? ps_pull_sync_inline(st->t, keys, 8, v) : ps_pull_sync(st->t, keys, 8, v);
		if (rc != 0)
			atomic_store(&st->result, 1);
		for (int i = 0; i < 8 && st->api == API_HOGROWS && ids; i++)
			if (v[(size_t)i * st->vlen] != (float)keys[i])
				atomic_fetch_add(&st->bad_ids, 1);
		for (int i = 0; i < 8 && st->api != API_HOGROWS; i++) {
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
	for (int n = 0; n < ps_num_nodes(w); n++)
		for (int t = 0; t < ps_num_threads(w); t++) {
			uint64_t s = (uint64_t)n * 1000 + (uint64_t)t + 1;
			for (long b = 0; b < st->batches * BATCH; b++) {
				ps_key k;
				float a;
				stream_item(&s, st->keys, &k, &a);
				expect[k] += a;
			}
		}
	float *v = malloc(sizeof(float) * st->vlen);
	long bad = 0;
	double got_sum = 0, want_sum = 0;
	for (ps_key k = 0; k < st->keys; k++) {
		ps_pull_sync(st->t, &k, 1, v);
		if (st->api == API_HOGROWS) { /* id intact; lost adds only */
			for (uint32_t j = 1; j < st->vlen; j++) {
				got_sum += v[j];
				want_sum += expect[k];
			}
			if (v[0] != (float)k || v[st->vlen - 1] > expect[k]) {
				if (bad++ < 5)
					fprintf(stderr, "storm: hogrows key %lu: id %g, value %g > %g pushed\n",
						(unsigned long)k, (double)v[0], (double)v[st->vlen - 1], (double)expect[k]);
			}
			continue;
		}
		for (uint32_t j = 0; j < st->vlen; j++)
			if (v[j] != expect[k]) {
				if (bad++ < 5)
					fprintf(stderr, "storm: key %lu[%u] = %g, expected %g\n", (unsigned long)k, j,
						(double)v[j], (double)expect[k]);
			}
	}
	uint64_t reloc = 0, stale = 0;
	for (int n = 0; n < ps_num_nodes(w); n++) {
		ps_node_stats ns;
		ps_stats(w, n, &ns);
		reloc += ns.relocations;
		stale += ns.stale_reads;
	}
	printf("storm: %lu keys x %u checked, %ld wrong; %lu relocations, %lu stale reads\n",
	       (unsigned long)st->keys, st->vlen, bad, (unsigned long)reloc, (unsigned long)stale);
	if (st->api == API_HOGROWS) {
		printf("storm: hogrows applied %.0f of %.0f added\n", got_sum, want_sum);
		if (got_sum < 0.5 * want_sum) { /* most adds must land */
			fprintf(stderr, "storm: hogrows lost more than half of the adds\n");
			bad++;
		}
	}
	free(expect);
	free(v);
	if (bad)
		return 1;
	if (reloc == 0) {
		fprintf(stderr, "storm: no relocation happened: the storm tested nothing\n");
		return 1;
	}
	return 0;
}

static int node_main(int argc, char **argv)
{
	struct storm st = {.keys = 2048, .vlen = 4, .batches = 4000, .die_node = -1};
	int threads = 0;
	for (int i = 0; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "keys")) st.keys = strtoull(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "vlen")) st.vlen = (uint32_t)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "batches")) st.batches = atol(argv[i + 1]);
		else if (!strcmp(argv[i], "die")) st.die_node = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "threads")) threads = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "api"))
			st.api = !strcmp(argv[i + 1], "rows") ? API_ROWS : !strcmp(argv[i + 1], "inline") ? API_INLINE
			       : !strcmp(argv[i + 1], "hogrows") ? API_HOGROWS : API_SYNC;
	}
	int err;
	st.w = ps_init_threads(threads, &err);
	if (!st.w) {
		fprintf(stderr, "storm: ps_init: %s\n", ps_strerror(err));
		return 1;
	}
	ps_table_opts o;
	ps_table_opts_init(&o, st.keys, st.vlen);
	o.placement = PS_PLACE_HASH;
	if (st.api == API_HOGROWS)
		o.flags = PS_HOGWILD;
	st.t = ps_table_create(st.w, &o, &err);
	if (!st.t) {
		fprintf(stderr, "storm: table: %s\n", ps_strerror(err));
		return 1;
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
	if (atomic_load(&st.bad_ids)) {
		fprintf(stderr, "storm: node %d saw %lu rows with another key's id\n", ps_node_id(st.w),
			(unsigned long)atomic_load(&st.bad_ids));
		rc = rc ? rc : 2;
	}
	if (atomic_load(&st.torn) || atomic_load(&st.decreasing)) {
		fprintf(stderr, "storm: node %d saw %lu torn and %lu decreasing reads in %lu\n", ps_node_id(st.w),
			(unsigned long)atomic_load(&st.torn), (unsigned long)atomic_load(&st.decreasing),
			(unsigned long)atomic_load(&st.pulls_checked));
		rc = rc ? rc : 2;
	}
	if (ns.stale_reads) {
		fprintf(stderr, "storm: node %d saw %lu stale reads (slot reused while readable)\n", ps_node_id(st.w),
			(unsigned long)ns.stale_reads);
		rc = rc ? rc : 3;
	}
	ps_finalize(st.w);
	return rc;
}

/* ---------------------------------------------------------- driver side */

static char self[1024];

static void storm(int nodes, int threads, const char *extra[], double signal_after, int sig, double timeout,
		  char *const env[], struct run_result *r)
{
	char n[16], t[16];
	snprintf(n, sizeof n, "%d", nodes);
	snprintf(t, sizeof t, "%d", threads);
	const char *argv[32] = {build_path("bin/psrun"), "-n", n, "-t", t, self, "--node"};
	int i = 7;
	for (int j = 0; extra && extra[j]; j++)
		argv[i++] = extra[j];
	argv[i] = NULL;
	run_prog((char *const *)argv, env, timeout, signal_after, sig, r);
}

static void assert_clean(const struct seg_snapshot *before)
{
	/* psrun has returned: give the kernel a moment to reap */
	for (int i = 0; i < 50 && (seg_leaked_since(before) > 0 || count_procs(self) > 0); i++)
		usleep(20000);
	assert_int_equal(seg_leaked_since(before), 0);
	assert_int_equal(count_procs(self), 0);
}

/* Runs the storm with no signal and a 120 s limit and asserts it exits 0,
 * printing the job's output first when it does not. */
static void storm_ok(int nodes, int threads, const char *args[], struct run_result *r)
{
	storm(nodes, threads, args, -1, 0, 120, NULL, r);
	if (r->status != 0)
		fprintf(stderr, "%s%s", r->out, r->err);
	assert_int_equal(r->status, 0);
}

static void test_conservation_4_nodes_2_threads_under_relocation(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct run_result r;
	/* psrun says 1 thread; the program asks for 2 (ps_init_threads) */
	const char *args[] = {"keys", "2048", "vlen", "4", "batches", "150000", "threads", "2", NULL};
	storm_ok(4, 1, args, &r);
	assert_non_null(strstr(r.out, "0 wrong"));
	assert_clean(&segs);
}

static void test_no_torn_reads_of_100_float_vectors(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct run_result r;
	const char *args[] = {"keys", "512", "vlen", "100", "batches", "40000", NULL};
	storm_ok(4, 2, args, &r);
	assert_clean(&segs);
}

/* The storm of one zero-copy api on 3 nodes x 2 threads, 256 keys, 6000
 * batches: exit 0 (verify and node_main assert sums, torn, decreasing and
 * stale reads), "0 wrong", at least one relocation, and must_say (NULL:
 * nothing more) in the report. */
static void relocation_storm(const char *api, const char *vlen, const char *must_say)
{
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct run_result r;
	const char *args[] = {"keys", "256", "vlen", vlen, "batches", "6000", "api", api, NULL};
	storm_ok(3, 2, args, &r);
	assert_non_null(strstr(r.out, "0 wrong"));
	if (must_say)
		assert_non_null(strstr(r.out, must_say));
	assert_null(strstr(r.out, " 0 relocations"));
	assert_clean(&segs);
}

/* Zero-copy rows: every push is ps_row_lock + add in place + unlock, on 3
 * nodes x 2 threads while every node localizes the same keys and readers
 * pull: exact sums, no torn or decreasing vector, relocations > 0, 0 stale
 * reads (verify and node_main assert each). */
static void test_rows_in_place_exact_sums_no_torn_reads_under_relocation(void **state)
{
	(void)state;
	relocation_storm("rows", "16", NULL);
}

/* The same storm through the inline fast path (psmem_static.h). */
static void test_inline_path_exact_sums_no_torn_reads_under_relocation(void **state)
{
	(void)state;
	relocation_storm("inline", "16", NULL);
}

/* PS_HOGWILD rows in place under relocation: inside each section the row
 * stays the key's (its id float), 0 stale reads, no add lost beyond half. */
static void test_hogwild_rows_stay_valid_inside_section_under_relocation(void **state)
{
	(void)state;
	relocation_storm("hogrows", "8", "hogrows applied");
}

/* Negative control: with grace periods disabled the same storm must be
 * caught by the stale-read detector, so the zero above means something. */
static void test_detector_catches_reuse_without_grace_periods(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	char *env[] = {"PSMEM_DEBUG_NO_GRACE=1", NULL};
	const char *args[] = {"keys", "64", "vlen", "16", "batches", "3000", NULL};
	int caught = 0;
	for (int attempt = 0; attempt < 4 && !caught; attempt++) {
		struct run_result r;
		storm(4, 2, args, -1, 0, 120, env, &r);
		caught = r.status == 3 || strstr(r.err, "stale reads") != NULL;
	}
	assert_true(caught);
	assert_clean(&segs);
}

static void test_node_killed_mid_storm_stops_job_within_2s(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct run_result r;
	const char *args[] = {"keys", "2048", "vlen", "4", "batches", "400000", "die", "2", NULL};
	storm(4, 2, args, -1, 0, 30, NULL, &r);
	assert_int_equal(r.status, 128 + SIGKILL);
	assert_non_null(strstr(r.err, "node 2"));
	assert_non_null(strstr(r.err, "signal 9"));
	/* the victim printed when it died (CLOCK_MONOTONIC is system-wide) */
	const char *d = strstr(r.err, "dying at ");
	assert_non_null(d);
	double died = strtod(d + 9, NULL);
	printf("job ended %.3f s after the node died\n", r.t_end - died);
	assert_true(r.t_end - died < 2.0);
	assert_clean(&segs);
}

static void test_sigint_to_psrun_mid_storm_cleans_up(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct run_result r;
	/* far more batches than 1 s can run (the inline path finished 400000
	 * before the SIGINT came): the signal, not the work, ends the job */
	const char *args[] = {"keys", "2048", "vlen", "4", "batches", "100000000", NULL};
	storm(4, 2, args, 1.0, SIGINT, 30, NULL, &r);
	assert_int_not_equal(r.status, 0);
	assert_int_not_equal(r.status, -1);
	assert_true(r.seconds < 1.0 + 2.5);
	assert_clean(&segs);
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "--node") == 0)
		return node_main(argc - 2, argv + 2);
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0)
		return 1;
	self[n] = 0;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_conservation_4_nodes_2_threads_under_relocation),
		cmocka_unit_test(test_no_torn_reads_of_100_float_vectors),
		cmocka_unit_test(test_detector_catches_reuse_without_grace_periods),
		cmocka_unit_test(test_rows_in_place_exact_sums_no_torn_reads_under_relocation),
		cmocka_unit_test(test_inline_path_exact_sums_no_torn_reads_under_relocation),
		cmocka_unit_test(test_hogwild_rows_stay_valid_inside_section_under_relocation),
		cmocka_unit_test(test_node_killed_mid_storm_stops_job_within_2s),
		cmocka_unit_test(test_sigint_to_psrun_mid_storm_cleans_up),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
