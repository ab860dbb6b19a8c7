/*
 * micro.c - micro-benchmark of pull / push / localize against a raw shared
 * array, CSV on stdout (`make bench`).
 *
 *   build/bench/micro [--quick] [--max-bytes SIZE] [--max-keys N] [--reps R]
 *                     [--nodes N] [--value-lens L,..] [--ops OP,..] [--help] ...
 *
 * Columns: op,value_len,nodes,threads,placement,ns_per_key,
 * baseline_ns_per_key,ratio (= ns_per_key / baseline_ns_per_key), then keys
 * (per node per repetition), batch, reps, agg_mkeys_per_s and
 * baseline_agg_mkeys_per_s, cpu_ns_per_key and baseline_cpu_ns_per_key (the
 * calling thread's CPU time: robust to other load on a shared machine),
 * table_keys, note.  Lines starting with '#' are comments (setup times, the
 * 2-process scaling of pull value_len=100, where localize time goes).
 *
 * Without psrun, micro is the orchestrator: it prints the header, runs the
 * 1-process part in this process (a private one-node job), leaves the job,
 * then runs `<dir of /proc/self/exe>/../bin/psrun -n 2 <itself> --child`
 * for the 2-process part, whose node 0 prints the rows.  Under psrun (or with
 * --child) it is one node of that job.  Every node joins with
 * ps_init_threads(1): only the main thread measures, and ps_barrier() counts
 * one participant per node.
 *
 * Per value length: one psmem table (range placement, constant init) and one
 * raw shared array of the same keys x value_len floats (memfd, or a /dev/shm
 * file shared by the nodes), no PS in the way.  Tables hold max_bytes of
 * values (default 1 GiB, far beyond the last-level cache), capped at
 * max_keys keys (default 32M) so that value_len 1 stays feasible.
 *
 * Keys are drawn at random (splitmix64), precomputed before timing, fresh
 * keys for every repetition; batches of 1000 keys per call.  Each row is the
 * median of R timed repetitions after one untimed warm-up; the psmem
 * repetition and the baseline repetition of the same keys alternate, so
 * drift of a noisy machine hits both.  With several nodes, every
 * repetition starts at a ps_barrier(), so all nodes measure at once;
 * ns_per_key is the mean over nodes of time/keys, and agg_mkeys_per_s is
 * nodes x keys / the slowest node's time (wall-clock aggregate).
 *
 * Baselines (same keys, same process, same run):
 *   pull      copy the rows of the keys into the batch buffer (memcpy)
 *   push      add the update rows into the array rows (a float loop the
 *             compiler vectorizes: -O3 for it, and an AVX2 clone chosen at
 *             load time where the CPU has AVX2, as psmem's own add has)
 *   localize  plain memcpy of each key's row to a new location (a
 *             destination array written in order, as a relocation writes a
 *             fresh slot); no locking, no location table
 *
 * Placement: `own` keys are owned by the calling node, `other` keys by the
 * next node (range placement: node i owns keys [ceil(i*K/N), ceil((i+1)*K/N))).
 * localize moves keys owned by another node here.  Key sets S_j (distinct
 * keys of node j+1's range) are split into C chunks; in pass p node i
 * localizes chunk c of S_{(i+p) mod N}, which node i+1 moved in pass p-1, so
 * every repetition moves keys that live elsewhere and, from pass 1 on, slots
 * are recycled through the pools' free lists (steady state).  Pass 0 is the
 * warm-up.  With one node localize is a no-op (keys are local); the row is
 * printed as `own` with a note.
 *
 * One key per call (1-process part only; rows pull1 / push1 through the
 * inline fast path, PS_INLINE, and pull1_lib / push1_lib through the
 * library's function): a second table whose psmem footprint (location
 * words and slots) is about 512 KiB (at least 64 keys), in cache after the
 * warm-up, the raw array with the same keys, random keys, one ps_pull_sync /
 * ps_push_sync of one key per call.  Baselines: copy / add one row of the
 * raw array with a vectorized loop (no libc call: at one float a memcpy
 * call would cost more than the copy).  Every call's first float is summed
 * into a sink in both pull loops, so neither copy is dead.
 *
 * Validation (exit 1 on mismatch): pulled batches equal the initial value;
 * signature pushes to 64 keys read back right from every node; after every
 * push phase the pushed keys' values equal before + count x update (the same
 * float additions replayed); localize leaves values unchanged and the keys
 * owned here; the node's stale_reads counter stays 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PS_INLINE /* ps_pull_sync / ps_push_sync of few keys: inline (psmem_static.h) */
#include "psmem.h"

#define MAX_NODES  64
#define MAX_REPS   64
#define MAX_VLENS  8
#define INIT_VALUE 0.25f
#define NSIGKEYS       64     /* signature keys per table */
#define NPROBE     32     /* probe keys per push phase */
#define LOC_CHECK  256    /* keys per localize set whose values are checked */

static const char *prog = "micro";

struct cfg {
	uint64_t max_bytes;   /* bytes of values per table */
	uint64_t max_keys;    /* key cap per table */
	int reps;             /* timed repetitions */
	uint32_t batch;       /* keys per call */
	uint64_t keys_per_rep;/* 0: by value_len */
	uint64_t loc_keys;    /* keys per localize repetition; 0: by value_len */
	int loc_chunks;       /* C */
	int nodes;            /* nodes of the multi-process part; 0 = skip */
	bool quick, child, header, pin;
	double ref_pull100;   /* 1-process Mkeys/s of pull value_len=100 (child) */
	int nvlens;
	uint32_t vlens[MAX_VLENS];
	unsigned ops;         /* OP_* bits */
};

#define OP_PULL 1u
#define OP_PUSH 2u
#define OP_LOC  4u
#define OP_ONE  8u  /* one key per call, table in cache */

/* One timed repetition: seconds of wall clock and of this thread's CPU. */
struct rep {
	double wall[2]; /* [psmem, baseline] */
	double cpu[2];
};

/* Timings shared by the nodes of a job (control mapping). */
struct ctl {
	struct rep t[MAX_NODES][MAX_REPS];
};

struct job {
	ps_world *w;
	int me, n;
	const struct cfg *c;
	struct ctl *ctl;
	double pull100_agg[2];   /* own, other: Mkeys/s (node 0) */
	bool have_pull100[2];
};

/* ------------------------------------------------------------ helpers */

static void die(const char *what, int err)
{
	fprintf(stderr, "%s: %s: %s\n", prog, what, err ? ps_strerror(err) : "failed");
	exit(1);
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: validation failed: ", prog);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		die("malloc", -ENOMEM);
	return p;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_s(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long minor_faults(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

static double thread_cpu(void) { return cpu_s(CLOCK_THREAD_CPUTIME_ID); }

/* wall = call (seconds); cpu = this thread's CPU seconds spent in it */
#define MEASURE(wall, cpu, call)                      \
	do {                                          \
		double c0_ = thread_cpu();            \
		(wall) = (call);                      \
		(cpu) = thread_cpu() - c0_;           \
	} while (0)

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Uniform in [lo, hi) (multiply-high, no division). */
static uint64_t draw(uint64_t *s, uint64_t lo, uint64_t hi)
{
	return lo + (uint64_t)(((unsigned __int128)splitmix(s) * (hi - lo)) >> 64);
}

static uint64_t seed_of(uint32_t vlen, int what, int node, int placement)
{
	return 0x5eed0000ULL ^ ((uint64_t)vlen << 32) ^ ((uint64_t)what << 24) ^ ((uint64_t)node << 8) ^
	       (uint64_t)placement;
}

/* Range placement (psmem.h): key k on node k * N / K. */
static uint64_t range_lo(uint64_t nkeys, int node, int n)
{
	return (uint64_t)(((unsigned __int128)nkeys * (unsigned)node + (unsigned)n - 1) / (unsigned)n);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void barrier(struct job *j)
{
	int rc = ps_barrier(j->w);
	if (rc)
		die("ps_barrier", rc);
}

/*
 * A mapping shared by all nodes of the job (MAP_SHARED, tmpfs).  One node:
 * a memfd.  Several: node 0 creates a /dev/shm file named after the job's
 * segment, the others open it after a barrier, node 0 unlinks it after a
 * second one (so it outlives nobody).  Collective.
 */
static void *shared_map(struct job *j, const char *tag, size_t bytes)
{
	int fd = -1;
	char name[160];
	snprintf(name, sizeof name, "/psmicro.%s.%s", ps_segment_name(j->w), tag);
	if (j->n == 1) {
		fd = memfd_create(tag, MFD_CLOEXEC);
		if (fd < 0 || ftruncate(fd, (off_t)bytes) != 0)
			die("memfd", -errno);
	} else {
		if (j->me == 0) {
			shm_unlink(name); /* a leftover of a crashed run of this job name */
			fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
			if (fd < 0 || ftruncate(fd, (off_t)bytes) != 0)
				die("shm_open (create)", -errno);
		}
		barrier(j);
		if (j->me != 0) {
			fd = shm_open(name, O_RDWR | O_CLOEXEC, 0600);
			if (fd < 0)
				die("shm_open", -errno);
		}
		barrier(j);
		if (j->me == 0)
			shm_unlink(name);
	}
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		die("mmap", -errno);
	close(fd);
	madvise(p, bytes, MADV_HUGEPAGE); /* as the segment does; tmpfs may refuse */
	return p;
}

/* Fills keys [lo, hi) of arr (this node's share) with INIT_VALUE. */
static void fill_rows(float *arr, uint32_t vlen, uint64_t lo, uint64_t hi)
{
	for (uint64_t i = lo * vlen; i < hi * vlen; i++)
		arr[i] = INIT_VALUE;
}

/* ----------------------------------------------------- timed kernels */

static double ps_pull_rep(ps_table *t, const uint64_t *keys, size_t n, uint32_t batch, float *buf)
{
	double t0 = now_s();
	for (size_t i = 0; i < n; i += batch) {
		size_t m = n - i < batch ? n - i : batch;
		int rc = ps_pull_sync(t, keys + i, m, buf);
		if (rc)
			die("ps_pull_sync", rc);
	}
	return now_s() - t0;
}

static double ps_push_rep(ps_table *t, const uint64_t *keys, size_t n, uint32_t batch, const float *upd)
{
	double t0 = now_s();
	for (size_t i = 0; i < n; i += batch) {
		size_t m = n - i < batch ? n - i : batch;
		int rc = ps_push_sync(t, keys + i, m, upd);
		if (rc)
			die("ps_push_sync", rc);
	}
	return now_s() - t0;
}

static double ps_localize_rep(ps_table *t, const uint64_t *keys, size_t n, uint32_t batch)
{
	double t0 = now_s();
	for (size_t i = 0; i < n; i += batch) {
		size_t m = n - i < batch ? n - i : batch;
		int rc = ps_localize_sync(t, keys + i, m);
		if (rc)
			die("ps_localize_sync", rc);
	}
	return now_s() - t0;
}

/* Baseline pull: gather the rows of the keys into the batch buffer. */
static double base_pull_rep(const float *arr, uint32_t vlen, const uint64_t *keys, size_t n, uint32_t batch,
			    float *buf)
{
	const size_t row = (size_t)vlen * sizeof(float);
	double t0 = now_s();
	for (size_t i = 0; i < n; i += batch) {
		size_t m = n - i < batch ? n - i : batch;
		for (size_t b = 0; b < m; b++)
			memcpy(buf + b * vlen, arr + keys[i + b] * vlen, row);
	}
	return now_s() - t0;
}

/* The raw loops, vectorized by the compiler (checked with objdump: addps /
 * vaddps), with an AVX2 clone where the CPU has it. */
#if defined(__x86_64__) && !defined(__clang__) && !defined(PS_SANITIZE) /* no ifunc under sanitizers */
#define RAW_VEC __attribute__((optimize("O3", "no-tree-loop-distribute-patterns"), target_clones("avx2", "default")))
#else
#define RAW_VEC
#endif

RAW_VEC static void raw_add(float *restrict r, const float *restrict u, uint32_t vlen)
{
	for (uint32_t x = 0; x < vlen; x++)
		r[x] += u[x];
}

RAW_VEC static void raw_copy(float *restrict d, const float *restrict s, uint32_t vlen)
{
	for (uint32_t x = 0; x < vlen; x++)
		d[x] = s[x];
}

/* Baseline push: add the update rows into the array rows. */
static double base_push_rep(float *arr, uint32_t vlen, const uint64_t *keys, size_t n, uint32_t batch,
			    const float *upd)
{
	double t0 = now_s();
	for (size_t i = 0; i < n; i += batch) {
		size_t m = n - i < batch ? n - i : batch;
		for (size_t b = 0; b < m; b++)
			raw_add(arr + keys[i + b] * vlen, upd + b * vlen, vlen);
	}
	return now_s() - t0;
}

/* Baseline localize: plain memcpy of each row to a new location. */
static double base_move_rep(const float *arr, uint32_t vlen, const uint64_t *keys, size_t n, float *dst)
{
	const size_t row = (size_t)vlen * sizeof(float);
	double t0 = now_s();
	for (size_t i = 0; i < n; i++)
		memcpy(dst + i * vlen, arr + keys[i] * vlen, row);
	return now_s() - t0;
}

/* One key per call: psmem (inline or the library's function) and raw. */
static volatile float sink;

static double one_pull_rep(ps_table *t, const uint64_t *keys, size_t n, float *buf, bool lib)
{
	float acc = 0;
	double t0 = now_s();
	for (size_t i = 0; i < n; i++) {
		int rc = lib ? (ps_pull_sync)(t, &keys[i], 1, buf) : ps_pull_sync(t, &keys[i], 1, buf);
		if (rc)
			die("ps_pull_sync", rc);
		acc += buf[0];
	}
	double d = now_s() - t0;
	sink += acc;
	return d;
}

static double one_push_rep(ps_table *t, const uint64_t *keys, size_t n, const float *upd, bool lib)
{
	double t0 = now_s();
	for (size_t i = 0; i < n; i++) {
		int rc = lib ? (ps_push_sync)(t, &keys[i], 1, upd) : ps_push_sync(t, &keys[i], 1, upd);
		if (rc)
			die("ps_push_sync", rc);
	}
	return now_s() - t0;
}

static double one_base_pull_rep(const float *arr, uint32_t vlen, const uint64_t *keys, size_t n, float *buf)
{
	float acc = 0;
	double t0 = now_s();
	for (size_t i = 0; i < n; i++) {
		raw_copy(buf, arr + keys[i] * vlen, vlen);
		acc += buf[0];
	}
	double d = now_s() - t0;
	sink += acc;
	return d;
}

static double one_base_push_rep(float *arr, uint32_t vlen, const uint64_t *keys, size_t n, const float *upd)
{
	double t0 = now_s();
	for (size_t i = 0; i < n; i++)
		raw_add(arr + keys[i] * vlen, upd, vlen);
	return now_s() - t0;
}

/* ------------------------------------------------------------- output */

struct row {
	const char *op;
	uint32_t vlen;
	const char *placement;
	uint64_t keys;     /* per node per repetition */
	uint64_t table_keys;
	int reps;
	const char *note;
};

/*
 * Collects every node's timings of one row (ctl), prints it on node 0.
 * Returns the aggregate Mkeys/s of psmem (node 0; 0 elsewhere).
 */
static double report(struct job *j, const struct row *r, const struct rep *t)
{
	for (int i = 0; i < r->reps; i++) {
		j->ctl->t[j->me][i] = t[i];
	}
	barrier(j);
	if (j->me != 0)
		return 0;
	double ns[MAX_REPS], bns[MAX_REPS], agg[MAX_REPS], bagg[MAX_REPS], cns[MAX_REPS], cbns[MAX_REPS];
	for (int i = 0; i < r->reps; i++) {
		double sum = 0, bsum = 0, mx = 0, bmx = 0, csum = 0, cbsum = 0;
		for (int nd = 0; nd < j->n; nd++) {
			const struct rep *x = &j->ctl->t[nd][i];
			sum += x->wall[0];
			bsum += x->wall[1];
			csum += x->cpu[0];
			cbsum += x->cpu[1];
			mx = x->wall[0] > mx ? x->wall[0] : mx;
			bmx = x->wall[1] > bmx ? x->wall[1] : bmx;
		}
		double per = (double)j->n * (double)r->keys;
		ns[i] = sum / per * 1e9;
		bns[i] = bsum / per * 1e9;
		cns[i] = csum / per * 1e9;
		cbns[i] = cbsum / per * 1e9;
		agg[i] = per / mx / 1e6;
		bagg[i] = per / bmx / 1e6;
	}
	double m = median(ns, r->reps), bm = median(bns, r->reps);
	double ma = median(agg, r->reps), bma = median(bagg, r->reps);
	printf("%s,%" PRIu32 ",%d,%d,%s,%.1f,%.1f,%.2f,%" PRIu64 ",%" PRIu32 ",%d,%.2f,%.2f,%.1f,%.1f,%" PRIu64
	       ",%s\n",
	       r->op, r->vlen, j->n, ps_num_threads(j->w), r->placement, m, bm, m / bm, r->keys, j->c->batch,
	       r->reps, ma, bma, median(cns, r->reps), median(cbns, r->reps), r->table_keys,
	       r->note ? r->note : "");
	fflush(stdout);
	return ma;
}

/* ------------------------------------------------------ one value_len */

struct tbl {
	struct job *j;
	ps_table *t;
	uint32_t vlen;
	uint64_t nkeys;
	float *arr;          /* baseline, nkeys x vlen, shared by the nodes */
	float *buf;          /* batch x vlen */
	float *upd;          /* batch x vlen update rows */
};

/* One key per call on a table in cache (1-process part). */
static void bench_one(struct job *j, uint32_t v)
{
	const struct cfg *c = j->c;
	/* in cache: psmem's footprint (an 8-byte location word and a slot per
	 * key: 16-byte header + values, to 16 bytes, or 64 from a line on) in
	 * 512 KiB; the raw array has the same keys (smaller: values only) */
	uint64_t slot = (16 + 4ULL * v + 15) / 16 * 16;
	slot = slot > 64 ? (slot + 63) / 64 * 64 : slot;
	uint64_t nk = (512u << 10) / (8 + slot);
	nk = nk < 64 ? 64 : nk;
	ps_table_opts o;
	ps_table_opts_init(&o, nk, v);
	o.init = PS_INIT_CONST;
	o.init_a = INIT_VALUE;
	int err = 0;
	ps_table *t = ps_table_create(j->w, &o, &err);
	if (!t)
		die("ps_table_create", err);
	float *arr = xmalloc(nk * v * sizeof(float));
	fill_rows(arr, v, 0, nk);
	float *buf = xmalloc(v * sizeof(float)), *upd = xmalloc(v * sizeof(float));
	for (uint32_t x = 0; x < v; x++)
		upd[x] = 0.5f * (float)(1 + x % 3);
	uint64_t k = c->quick ? 20000 : v >= 1000 ? 100000 : 400000;
	int total = c->reps + 1;
	uint64_t *keys = xmalloc((size_t)total * k * sizeof *keys);
	uint64_t s = seed_of(v, 9, 0, 0);
	for (uint64_t i = 0; i < (uint64_t)total * k; i++)
		keys[i] = draw(&s, 0, nk);
	uint64_t pushes0 = 0; /* pushes of keys[0]'s key (psmem and raw alike) */
	for (int op = 0; op < 4; op++) {
		bool push = op >= 2, lib = op & 1;
		struct rep tt[MAX_REPS];
		for (int r = 0; r < total; r++) {
			const uint64_t *kr = keys + (size_t)r * k;
			double a, ac, b, bc;
			if (push) {
				MEASURE(a, ac, one_push_rep(t, kr, k, upd, lib));
				MEASURE(b, bc, one_base_push_rep(arr, v, kr, k, upd));
				for (uint64_t i = 0; i < k; i++)
					pushes0 += kr[i] == keys[0];
			} else {
				MEASURE(a, ac, one_pull_rep(t, kr, k, buf, lib));
				MEASURE(b, bc, one_base_pull_rep(arr, v, kr, k, buf));
			}
			if (r > 0)
				tt[r - 1] = (struct rep){{a, b}, {ac, bc}};
		}
		static const char *names[] = {"pull1", "pull1_lib", "push1", "push1_lib"};
		struct row row = {names[op], v, "own", k, nk, c->reps,
				  lib ? "one key per call, table in cache, library call"
				      : "one key per call, table in cache, inline (PS_INLINE)"};
		report(j, &row, tt);
	}
	/* the pushes landed exactly: psmem and raw replay the same additions */
	float want = INIT_VALUE;
	for (uint64_t q = 0; q < pushes0; q++)
		want += upd[v - 1];
	ps_key k0 = keys[0];
	int rc = (ps_pull_sync)(t, &k0, 1, buf);
	if (rc)
		die("ps_pull_sync", rc);
	if (memcmp(&buf[v - 1], &want, sizeof want) != 0 || memcmp(&arr[k0 * v + v - 1], &want, sizeof want) != 0)
		fail("push1 value_len=%u: key %" PRIu64 " = %g (raw %g), want %g", v, k0, (double)buf[v - 1],
		     (double)arr[k0 * v + v - 1], (double)want);
	free(keys);
	free(arr);
	free(buf);
	free(upd);
}

static uint64_t keys_per_rep(const struct cfg *c, uint32_t vlen)
{
	if (c->keys_per_rep)
		return c->keys_per_rep;
	uint64_t k = (128ULL << 20) / (4ULL * vlen);
	k = k < 10000 ? 10000 : k > 100000 ? 100000 : k;
	return (k + c->batch - 1) / c->batch * c->batch;
}

static void placement_range(struct tbl *T, int placement, uint64_t *lo, uint64_t *hi)
{
	struct job *j = T->j;
	int owner = placement == 0 ? j->me : (j->me + 1) % j->n;
	*lo = range_lo(T->nkeys, owner, j->n);
	*hi = range_lo(T->nkeys, owner + 1, j->n);
}

static const char *pl_name(int p) { return p == 0 ? "own" : "other"; }

/* Pull phase: returns node 0's aggregate Mkeys/s. */
static double bench_pull(struct tbl *T, int placement)
{
	struct job *j = T->j;
	const struct cfg *c = j->c;
	uint64_t lo, hi, k = keys_per_rep(c, T->vlen);
	placement_range(T, placement, &lo, &hi);
	int total = c->reps + 1;
	uint64_t *keys = xmalloc((size_t)total * k * sizeof *keys);
	uint64_t s = seed_of(T->vlen, 1, j->me, placement);
	for (uint64_t i = 0; i < (uint64_t)total * k; i++)
		keys[i] = draw(&s, lo, hi);
	struct rep t[MAX_REPS];
	for (int r = 0; r < total; r++) {
		const uint64_t *kr = keys + (size_t)r * k;
		barrier(j);
		double a, ac, b, bc;
		MEASURE(a, ac, ps_pull_rep(T->t, kr, k, c->batch, T->buf));
		/* the last batch must hold the initial values (no push yet) */
		size_t last = (k - 1) % c->batch + 1;
		for (size_t i = 0; i < last * T->vlen; i++)
			if (T->buf[i] != INIT_VALUE)
				fail("pull value_len=%u: key %" PRIu64 " value %zu is %g, want %g", T->vlen,
				     kr[k - last + i / T->vlen], i % T->vlen, (double)T->buf[i], (double)INIT_VALUE);
		barrier(j);
		MEASURE(b, bc, base_pull_rep(T->arr, T->vlen, kr, k, c->batch, T->buf));
		if (T->buf[0] != INIT_VALUE)
			fail("baseline pull value_len=%u reads %g", T->vlen, (double)T->buf[0]);
		if (r > 0) {
			t[r - 1] = (struct rep){{a, b}, {ac, bc}};
		}
	}
	free(keys);
	struct row row = {"pull", T->vlen, pl_name(placement), k, T->nkeys, c->reps, NULL};
	return report(j, &row, t);
}

/* Pulls keys[0..n) one call; values to out (n x vlen). */
static void pull_keys(struct tbl *T, const uint64_t *keys, size_t n, float *out)
{
	int rc = ps_pull_sync(T->t, keys, n, out);
	if (rc)
		die("ps_pull_sync", rc);
}

/*
 * Signature check: the owner of each of NSIGKEYS keys (spread over the table)
 * pushes a key-dependent row; every node reads all of them back.  Catches
 * a pull or push that reaches the wrong key, from own and other arenas.
 */
static void check_signature(struct tbl *T)
{
	struct job *j = T->j;
	uint32_t v = T->vlen;
	uint64_t keys[NSIGKEYS];
	uint64_t s = seed_of(v, 7, 0, 0);
	for (int i = 0; i < NSIGKEYS; i++)
		keys[i] = draw(&s, 0, T->nkeys);
	float *before = xmalloc((size_t)NSIGKEYS * v * sizeof(float));
	float *after = xmalloc((size_t)NSIGKEYS * v * sizeof(float));
	float *sig = xmalloc((size_t)v * sizeof(float));
	barrier(j);
	pull_keys(T, keys, NSIGKEYS, before);
	barrier(j);
	for (int i = 0; i < NSIGKEYS; i++) {
		bool dup = false;
		for (int q = 0; q < i; q++)
			dup |= keys[q] == keys[i];
		if (dup || ps_owner(T->t, keys[i]) != j->me)
			continue;
		for (uint32_t x = 0; x < v; x++)
			sig[x] = (float)((keys[i] * 131 + x * 7) % 1000);
		int rc = ps_push_sync(T->t, &keys[i], 1, sig);
		if (rc)
			die("ps_push_sync", rc);
	}
	barrier(j);
	pull_keys(T, keys, NSIGKEYS, after);
	for (int i = 0; i < NSIGKEYS; i++) {
		bool dup = false;
		for (int q = 0; q < i; q++)
			dup |= keys[q] == keys[i];
		if (dup)
			continue;
		for (uint32_t x = 0; x < v; x++) {
			float want = before[(size_t)i * v + x] + (float)((keys[i] * 131 + x * 7) % 1000);
			float got = after[(size_t)i * v + x];
			if (memcmp(&want, &got, sizeof got) != 0)
				fail("signature value_len=%u: key %" PRIu64 "[%u] = %g, want %g", v, keys[i], x,
				     (double)got, (double)want);
		}
	}
	barrier(j);
	free(before);
	free(after);
	free(sig);
}

static double bench_push(struct tbl *T, int placement)
{
	struct job *j = T->j;
	const struct cfg *c = j->c;
	uint32_t v = T->vlen;
	uint64_t lo, hi, k = keys_per_rep(c, v);
	placement_range(T, placement, &lo, &hi);
	int total = c->reps + 1;
	size_t nall = (size_t)total * k;
	uint64_t *keys = xmalloc(nall * sizeof *keys);
	uint64_t s = seed_of(v, 2, j->me, placement);
	for (size_t i = 0; i < nall; i++)
		keys[i] = draw(&s, lo, hi);

	/* probes: keys of the first timed repetition; only this node pushes
	 * into [lo, hi) during this phase (the nodes' ranges differ) */
	int np = k < NPROBE ? (int)k : NPROBE;
	uint64_t probe[NPROBE];
	memcpy(probe, keys + k, (size_t)np * sizeof *probe);
	float *before = xmalloc((size_t)np * v * sizeof(float));
	float *after = xmalloc((size_t)np * v * sizeof(float));
	pull_keys(T, probe, (size_t)np, before);

	struct rep t[MAX_REPS];
	for (int r = 0; r < total; r++) {
		const uint64_t *kr = keys + (size_t)r * k;
		barrier(j);
		double a, ac, b, bc;
		MEASURE(a, ac, ps_push_rep(T->t, kr, k, c->batch, T->upd));
		barrier(j);
		MEASURE(b, bc, base_push_rep(T->arr, v, kr, k, c->batch, T->upd));
		if (r > 0) {
			t[r - 1] = (struct rep){{a, b}, {ac, bc}};
		}
	}
	barrier(j);
	pull_keys(T, probe, (size_t)np, after);
	for (int p = 0; p < np; p++) {
		uint64_t cnt = 0;
		for (size_t i = 0; i < nall; i++)
			cnt += keys[i] == probe[p];
		for (uint32_t x = 0; x < v; x++) {
			float want = before[(size_t)p * v + x];
			for (uint64_t q = 0; q < cnt; q++)
				want += T->upd[x]; /* row 0 of upd: every row is the same */
			float got = after[(size_t)p * v + x];
			if (memcmp(&want, &got, sizeof got) != 0)
				fail("push value_len=%u %s: key %" PRIu64 "[%u] = %g after %" PRIu64
				     " pushes, want %g",
				     v, pl_name(placement), probe[p], x, (double)got, cnt, (double)want);
		}
	}
	free(before);
	free(after);
	free(keys);
	struct row row = {"push", v, pl_name(placement), k, T->nkeys, c->reps, NULL};
	return report(j, &row, t);
}

/* Distinct random keys of [lo, hi), n <= (hi - lo) / 2. */
static void distinct_keys(uint64_t *out, uint64_t n, uint64_t lo, uint64_t hi, uint64_t seed)
{
	uint64_t span = hi - lo;
	uint64_t *bits = calloc((span + 63) / 64, sizeof *bits);
	if (!bits)
		die("calloc", -ENOMEM);
	for (uint64_t i = 0; i < n;) {
		uint64_t k = draw(&seed, 0, span);
		if (bits[k / 64] >> (k % 64) & 1)
			continue;
		bits[k / 64] |= 1ULL << (k % 64);
		out[i++] = lo + k;
	}
	free(bits);
}

static void bench_localize(struct tbl *T)
{
	struct job *j = T->j;
	const struct cfg *c = j->c;
	uint32_t v = T->vlen;
	int n = j->n;
	uint64_t L = c->loc_keys;
	if (!L) {
		L = (32ULL << 20) / (4ULL * v);
		L = L < 4000 ? 4000 : L > 20000 ? 20000 : L;
	}
	float *dst = NULL;

	if (n == 1) {
		/* no other node: localize finds every key local (a no-op) */
		int total = c->reps + 1;
		uint64_t *keys = xmalloc((size_t)total * L * sizeof *keys);
		uint64_t s = seed_of(v, 3, 0, 0);
		for (uint64_t i = 0; i < (uint64_t)total * L; i++)
			keys[i] = draw(&s, 0, T->nkeys);
		dst = xmalloc((size_t)L * v * sizeof(float));
		struct rep t[MAX_REPS];
		for (int r = 0; r < total; r++) {
			const uint64_t *kr = keys + (size_t)r * L;
			double a, ac, b, bc;
			MEASURE(a, ac, ps_localize_rep(T->t, kr, L, c->batch));
			MEASURE(b, bc, base_move_rep(T->arr, v, kr, L, dst));
			if (r > 0) {
				t[r - 1] = (struct rep){{a, b}, {ac, bc}};
			}
		}
		for (int i = 0; i < 16 && (uint64_t)i < L; i++)
			if (ps_owner(T->t, keys[i]) != 0)
				fail("localize value_len=%u: one node, key %" PRIu64 " not on node 0", v, keys[i]);
		free(keys);
		free(dst);
		struct row row = {"localize", v, "own", L, T->nkeys, c->reps,
				  "one node: keys already local so localize is a no-op"};
		report(j, &row, t);
		return;
	}

	/* S_jj: distinct keys of node jj+1's range, C chunks of L */
	int C = c->loc_chunks;
	uint64_t range = range_lo(T->nkeys, 1, n); /* smallest range is >= this - 1 */
	for (int jj = 0; jj < n; jj++) {
		uint64_t r = range_lo(T->nkeys, jj + 1, n) - range_lo(T->nkeys, jj, n);
		range = r < range ? r : range;
	}
	if ((uint64_t)C * L > range / 2)
		L = range / 2 / (uint64_t)C;
	if (L == 0) {
		if (j->me == 0)
			printf("# localize value_len=%u skipped: table too small\n", v);
		return;
	}
	uint64_t per = (uint64_t)C * L;
	uint64_t *sets = xmalloc((size_t)n * per * sizeof *sets);
	for (int jj = 0; jj < n; jj++) {
		int owner = (jj + 1) % n;
		distinct_keys(sets + (size_t)jj * per, per, range_lo(T->nkeys, owner, n),
			      range_lo(T->nkeys, owner + 1, n), seed_of(v, 4, jj, 0));
	}
	size_t chk = L < LOC_CHECK ? (size_t)L : LOC_CHECK;
	float *before = xmalloc((size_t)n * chk * v * sizeof(float));
	float *after = xmalloc((size_t)n * chk * v * sizeof(float));
	barrier(j);
	for (int jj = 0; jj < n; jj++)
		pull_keys(T, sets + (size_t)jj * per, chk, before + (size_t)jj * chk * v);
	dst = xmalloc((size_t)L * v * sizeof(float));

	int warm = C, total = C + c->reps;
	struct rep t[MAX_REPS];
	double main_cpu[MAX_REPS], other_cpu[MAX_REPS], faults[MAX_REPS];
	const uint64_t *kr = NULL;
	for (int r = 0; r < total; r++) {
		int p = r / C, ch = r % C;
		int set = (j->me + p) % n;
		kr = sets + (size_t)set * per + (size_t)ch * L;
		barrier(j);
		/* where the time goes: this thread's CPU, the other threads' (the
		 * service thread frees the slots of earlier batches), page faults */
		double c0 = cpu_s(CLOCK_THREAD_CPUTIME_ID), p0 = cpu_s(CLOCK_PROCESS_CPUTIME_ID);
		long f0 = minor_faults();
		double a = ps_localize_rep(T->t, kr, L, c->batch);
		double c1 = cpu_s(CLOCK_THREAD_CPUTIME_ID), p1 = cpu_s(CLOCK_PROCESS_CPUTIME_ID);
		double ac = c1 - c0, b, bc;
		long f1 = minor_faults();
		if (r >= warm) {
			main_cpu[r - warm] = (c1 - c0) / (double)L * 1e9;
			other_cpu[r - warm] = ((p1 - p0) - (c1 - c0)) / (double)L * 1e9;
			faults[r - warm] = (double)(f1 - f0) / (double)L;
		}
		barrier(j);
		MEASURE(b, bc, base_move_rep(T->arr, v, kr, L, dst));
		if (r >= warm)
			t[r - warm] = (struct rep){{a, b}, {ac, bc}};
	}
	for (uint64_t i = 0; i < L; i += L / 16 + 1)
		if (ps_owner(T->t, kr[i]) != j->me)
			fail("localize value_len=%u: key %" PRIu64 " on node %d after localize by node %d", v, kr[i],
			     ps_owner(T->t, kr[i]), j->me);
	barrier(j);
	for (int jj = 0; jj < n; jj++)
		pull_keys(T, sets + (size_t)jj * per, chk, after + (size_t)jj * chk * v);
	if (memcmp(before, after, (size_t)n * chk * v * sizeof(float)) != 0)
		fail("localize value_len=%u: values changed by relocation", v);
	free(before);
	free(after);
	free(sets);
	free(dst);
	struct row row = {"localize", v, "other", L, T->nkeys, c->reps, NULL};
	report(j, &row, t);
	if (j->me == 0) {
		printf("# localize value_len=%u node 0 per key: %.0f ns CPU of the calling thread, %.0f ns CPU of its "
		       "other threads (service: grace periods, frees), %.3f page faults\n",
		       v, median(main_cpu, c->reps), median(other_cpu, c->reps), median(faults, c->reps));
		fflush(stdout);
	}
}

static void bench_vlen(struct job *j, uint32_t v)
{
	const struct cfg *c = j->c;
	struct tbl T = {.j = j, .vlen = v};
	uint64_t nk = c->max_bytes / (4ULL * v);
	T.nkeys = nk > c->max_keys ? c->max_keys : nk < 2 ? 2 : nk;

	double t0 = now_s();
	ps_table_opts o;
	ps_table_opts_init(&o, T.nkeys, v);
	o.init = PS_INIT_CONST;
	o.init_a = INIT_VALUE;
	o.placement = PS_PLACE_RANGE;
	int err = 0;
	T.t = ps_table_create(j->w, &o, &err);
	if (!T.t)
		die("ps_table_create", err);
	double t1 = now_s();
	T.arr = shared_map(j, "base", T.nkeys * v * sizeof(float));
	fill_rows(T.arr, v, range_lo(T.nkeys, j->me, j->n), range_lo(T.nkeys, j->me + 1, j->n));
	barrier(j);
	double t2 = now_s();
	for (int i = 0; i < j->n; i++) {
		uint64_t lo = range_lo(T.nkeys, i, j->n);
		if (ps_owner(T.t, lo) != i || (i > 0 && ps_owner(T.t, lo - 1) != i - 1))
			fail("range placement: key %" PRIu64 " on node %d, want %d", lo, ps_owner(T.t, lo), i);
	}
	if (j->me == 0) {
		printf("# value_len=%u: %" PRIu64 " keys, %.0f MiB of values; setup %.1f s (psmem table), %.1f s "
		       "(baseline array)\n",
		       v, T.nkeys, (double)T.nkeys * v * 4 / (1 << 20), t1 - t0, t2 - t1);
		fflush(stdout);
	}
	T.buf = xmalloc((size_t)c->batch * v * sizeof(float));
	T.upd = xmalloc((size_t)c->batch * v * sizeof(float));
	for (uint32_t b = 0; b < c->batch; b++)
		for (uint32_t x = 0; x < v; x++)
			T.upd[(size_t)b * v + x] = 0.5f * (float)(1 + x % 3);

	int nplace = j->n > 1 ? 2 : 1;
	for (int p = 0; p < nplace && (c->ops & OP_PULL); p++) {
		double agg = bench_pull(&T, p);
		if (v == 100 && j->me == 0) {
			j->pull100_agg[p] = agg;
			j->have_pull100[p] = true;
		}
	}
	check_signature(&T);
	for (int p = 0; p < nplace && (c->ops & OP_PUSH); p++)
		bench_push(&T, p);
	if (c->ops & OP_LOC)
		bench_localize(&T);
	if ((c->ops & OP_ONE) && j->n == 1)
		bench_one(j, v);

	barrier(j);
	munmap(T.arr, T.nkeys * v * sizeof(float));
	free(T.buf);
	free(T.upd);
}

static cpu_set_t orig_cpus;
static bool pinned;

/* Pins the calling thread (only) to the node-th CPU the launcher allowed. */
static void pin_self(int node)
{
	cpu_set_t cur;
	if (sched_getaffinity(0, sizeof cur, &cur) != 0)
		return;
	orig_cpus = cur;
	/* the node-th CPU the launcher left us, if any */
	int want = node % CPU_COUNT(&cur), seen = 0;
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (!CPU_ISSET(cpu, &cur))
			continue;
		if (seen++ == want) {
			cpu_set_t one;
			CPU_ZERO(&one);
			CPU_SET(cpu, &one);
			pinned = sched_setaffinity(0, sizeof one, &one) == 0; /* this thread only */
			return;
		}
	}
}

/* Runs the benchmark as one node of w's job.  Returns node 0's pull
 * value_len=100 own aggregate (Mkeys/s), or 0. */
static double run_job(ps_world *w, const struct cfg *c)
{
	struct job j = {.w = w, .me = ps_node_id(w), .n = ps_num_nodes(w), .c = c};
	if (j.n > MAX_NODES)
		die("too many nodes for micro", PS_ENODE);
	if (ps_num_threads(w) != 1) {
		/* ps_barrier() counts nodes x threads: our lone main thread
		 * would wait for workers that never come */
		fprintf(stderr, "%s: needs 1 thread per node, the job has %d\n", prog,
			ps_num_threads(w));
		exit(2);
	}
	if (c->pin)
		pin_self(j.me);
	j.ctl = shared_map(&j, "ctl", sizeof *j.ctl);
	for (int i = 0; i < c->nvlens; i++)
		bench_vlen(&j, c->vlens[i]);

	ps_node_stats st;
	int rc = ps_stats(w, j.me, &st);
	if (rc)
		die("ps_stats", rc);
	if (st.stale_reads)
		fail("node %d saw %" PRIu64 " stale reads", j.me, st.stale_reads);
	barrier(&j);
	if (j.me == 0 && j.n > 1 && c->ref_pull100 > 0 && j.have_pull100[0]) {
		printf("# scaling pull value_len=100: %d processes = %.2fx of 1 process (own; other: %.2fx; "
		       "%.2f vs %.2f Mkeys/s)%s\n",
		       j.n, j.pull100_agg[0] / c->ref_pull100, j.pull100_agg[1] / c->ref_pull100, j.pull100_agg[0],
		       c->ref_pull100, c->quick ? " [--quick: too few keys to mean much]" : "");
	}
	if (j.me == 0) {
		printf("# node 0: %" PRIu64 " relocations, %" PRIu64 " retries, %" PRIu64 " stale reads\n",
		       st.relocations, st.retries, st.stale_reads);
		fflush(stdout);
	}
	munmap(j.ctl, sizeof *j.ctl);
	if (pinned) /* psrun, forked later, must not inherit one CPU */
		sched_setaffinity(0, sizeof orig_cpus, &orig_cpus);
	return j.have_pull100[0] ? j.pull100_agg[0] : 0;
}

/* ------------------------------------------------------------ driver */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s [--quick] [--max-bytes SIZE] [--max-keys N] [--reps R] [--nodes N]\n"
		"             [--value-lens L,L,...] [--ops OP,...] [--keys N] [--loc-keys N]\n"
		"             [--batch B] [--no-pin]\n"
		"\n"
		"Micro-benchmark of ps_pull_sync / ps_push_sync / ps_localize_sync against a raw\n"
		"shared array doing the same gather / add / copy.  CSV on stdout; '#' lines are\n"
		"comments.  Runs a 1-process job here, then `psrun -n N` on itself (psrun is\n"
		"looked up at <dir of this program>/../bin/psrun).\n"
		"\n"
		"  --quick          small tables and few repetitions (a smoke test: seconds)\n"
		"  --max-bytes SIZE bytes of values per table (K/M/G suffix; default 1G)\n"
		"  --max-keys N     key cap per table (default 32M: value_len 1 holds 128 MiB)\n"
		"  --reps R         timed repetitions per row, median reported (default 7, max %d)\n"
		"  --nodes N        processes of the multi-process part (default 2; 0 skips it)\n"
		"  --value-lens L,..floats per key (default 1,16,100,1000)\n"
		"  --ops OP,...     pull, push, localize, one (one key per call, table in cache;\n"
		"                   1-process part only) (default: all four)\n"
		"  --keys N         keys per repetition (default: by value_len, 10k..100k)\n"
		"  --loc-keys N     keys per localize repetition (default: by value_len, 4k..20k)\n"
		"  --batch B        keys per call (default 1000)\n"
		"  --no-pin         do not pin node i's main thread to the i-th allowed CPU\n"
		"  --child          run as one node of the current psrun job (set by micro itself)\n"
		"  -h, --help       this text\n",
		prog, MAX_REPS);
}

static uint64_t parse_size(const char *opt, const char *s)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	uint64_t mul = 1;
	switch (*end) {
	case 'k': case 'K': mul = 1ULL << 10; end++; break;
	case 'm': case 'M': mul = 1ULL << 20; end++; break;
	case 'g': case 'G': mul = 1ULL << 30; end++; break;
	case 't': case 'T': mul = 1ULL << 40; end++; break;
	default: break;
	}
	if (errno || end == s || *end || v == 0 || v > UINT64_MAX / mul) {
		fprintf(stderr, "%s: %s: bad value '%s'\n", prog, opt, s);
		exit(2);
	}
	return v * mul;
}

static void parse(int argc, char **argv, struct cfg *c)
{
	*c = (struct cfg){.max_bytes = 1ULL << 30, .max_keys = 32ULL << 20, .reps = 7, .batch = 1000,
			  .loc_chunks = 8, .nodes = 2, .header = true, .pin = true, .nvlens = 4,
			  .vlens = {1, 16, 100, 1000}, .ops = OP_PULL | OP_PUSH | OP_LOC | OP_ONE};
	bool reps_set = false, bytes_set = false, keys_set = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED() do { if (!val) { fprintf(stderr, "%s: %s needs a value\n", prog, a); exit(2); } i++; } while (0)
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			exit(0);
		} else if (!strcmp(a, "--quick")) {
			c->quick = true;
		} else if (!strcmp(a, "--child")) {
			c->child = true;
		} else if (!strcmp(a, "--no-header")) {
			c->header = false;
		} else if (!strcmp(a, "--no-pin")) {
			c->pin = false;
		} else if (!strcmp(a, "--max-bytes")) {
			NEED();
			c->max_bytes = parse_size(a, val);
			bytes_set = true;
		} else if (!strcmp(a, "--max-keys")) {
			NEED();
			c->max_keys = parse_size(a, val);
			keys_set = true;
		} else if (!strcmp(a, "--reps")) {
			NEED();
			uint64_t r = parse_size(a, val);
			if (r > MAX_REPS) {
				fprintf(stderr, "%s: --reps: at most %d\n", prog, MAX_REPS);
				exit(2);
			}
			c->reps = (int)r;
			reps_set = true;
		} else if (!strcmp(a, "--nodes")) {
			NEED();
			c->nodes = atoi(val);
			if (c->nodes < 0 || c->nodes > MAX_NODES) {
				fprintf(stderr, "%s: --nodes: 0..%d\n", prog, MAX_NODES);
				exit(2);
			}
		} else if (!strcmp(a, "--keys")) {
			NEED();
			c->keys_per_rep = parse_size(a, val);
		} else if (!strcmp(a, "--loc-keys")) {
			NEED();
			c->loc_keys = parse_size(a, val);
		} else if (!strcmp(a, "--batch")) {
			NEED();
			uint64_t b = parse_size(a, val);
			c->batch = b > 1000000 ? 1000000 : (uint32_t)b;
		} else if (!strcmp(a, "--value-lens")) {
			NEED();
			c->nvlens = 0;
			char *dup = strdup(val), *save = NULL;
			for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
				uint64_t v = parse_size(a, tok);
				if (c->nvlens == MAX_VLENS || v > 65536) {
					fprintf(stderr, "%s: --value-lens: at most %d lengths of 1..65536\n", prog,
						MAX_VLENS);
					exit(2);
				}
				c->vlens[c->nvlens++] = (uint32_t)v;
			}
			free(dup);
		} else if (!strcmp(a, "--ops")) {
			NEED();
			c->ops = 0;
			char *dup = strdup(val), *save = NULL;
			for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
				if (!strcmp(tok, "pull"))
					c->ops |= OP_PULL;
				else if (!strcmp(tok, "push"))
					c->ops |= OP_PUSH;
				else if (!strcmp(tok, "localize"))
					c->ops |= OP_LOC;
				else if (!strcmp(tok, "one"))
					c->ops |= OP_ONE;
				else {
					fprintf(stderr, "%s: --ops: pull, push, localize or one, not '%s'\n", prog, tok);
					exit(2);
				}
			}
			free(dup);
		} else if (!strcmp(a, "--ref-pull100")) {
			NEED();
			c->ref_pull100 = strtod(val, NULL);
		} else {
			fprintf(stderr, "%s: unknown option '%s' (try --help)\n", prog, a);
			exit(2);
		}
#undef NEED
	}
	if (c->quick) {
		if (!bytes_set)
			c->max_bytes = 4ULL << 20;
		if (!keys_set)
			c->max_keys = 1ULL << 20;
		if (!reps_set)
			c->reps = 3;
		if (!c->keys_per_rep)
			c->keys_per_rep = 2000;
		if (!c->loc_keys)
			c->loc_keys = 500;
		c->loc_chunks = 2;
	}
	if (c->reps < 1)
		c->reps = 1;
	if (c->loc_chunks + c->reps > MAX_REPS)
		c->reps = MAX_REPS - c->loc_chunks;
}

/* Runs psrun -n N <self> --child --no-header <args> --ref-pull100 X; returns its status. */
static int run_psrun(int argc, char **argv, const struct cfg *c, double ref)
{
	char self[PATH_MAX], psrun[PATH_MAX + 32];
	ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
	if (len <= 0)
		die("readlink /proc/self/exe", -errno);
	self[len] = 0;
	char *slash = strrchr(self, '/');
	snprintf(psrun, sizeof psrun, "%.*s/../bin/psrun", (int)(slash - self), self);
	if (access(psrun, X_OK) != 0) {
		fprintf(stderr, "%s: %s: %s; skipping the %d-process part\n", prog, psrun, strerror(errno),
			c->nodes);
		printf("# %d-process part skipped: no psrun at %s\n", c->nodes, psrun);
		return 0;
	}
	char nbuf[16], rbuf[64];
	snprintf(nbuf, sizeof nbuf, "%d", c->nodes);
	snprintf(rbuf, sizeof rbuf, "%.6f", ref);
	char **av = xmalloc(((size_t)argc + 12) * sizeof *av);
	int k = 0;
	av[k++] = psrun;
	av[k++] = "-n";
	av[k++] = nbuf;
	av[k++] = self;
	av[k++] = "--child";
	av[k++] = "--no-header";
	for (int i = 1; i < argc; i++)
		av[k++] = argv[i];
	av[k++] = "--ref-pull100";
	av[k++] = rbuf;
	av[k] = NULL;
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0)
		die("fork", -errno);
	if (pid == 0) {
		execv(psrun, av);
		fprintf(stderr, "%s: exec %s: %s\n", prog, psrun, strerror(errno));
		_exit(127);
	}
	free(av);
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			die("waitpid", -errno);
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	fprintf(stderr, "%s: psrun killed by signal %d\n", prog, WTERMSIG(st));
	return 1;
}

static void print_header(const struct cfg *c)
{
	printf("op,value_len,nodes,threads,placement,ns_per_key,baseline_ns_per_key,ratio,keys,batch,reps,"
	       "agg_mkeys_per_s,baseline_agg_mkeys_per_s,cpu_ns_per_key,baseline_cpu_ns_per_key,table_keys,note\n");
	char thp[128] = "?";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "r");
	if (f) {
		if (!fgets(thp, sizeof thp, f))
			strcpy(thp, "?");
		thp[strcspn(thp, "\n")] = 0;
		fclose(f);
	}
	printf("# micro: max_bytes=%" PRIu64 " max_keys=%" PRIu64 " reps=%d batch=%u%s; shmem THP: %s\n",
	       c->max_bytes, c->max_keys, c->reps, c->batch, c->quick ? " (quick)" : "", thp);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct cfg c;
	parse(argc, argv, &c);
	bool in_job = c.child || getenv("PSMEM_SEGMENT") != NULL;
	double t0 = now_s();

	if (in_job) {
		int err = 0;
		ps_world *w = ps_init_threads(1, &err);
		if (!w)
			die("ps_init_threads", err);
		if (c.header && ps_node_id(w) == 0)
			print_header(&c);
		run_job(w, &c);
		ps_finalize(w);
		return 0;
	}

	if (c.header)
		print_header(&c);
	int err = 0;
	ps_world *w = ps_init_threads(1, &err);
	if (!w)
		die("ps_init_threads", err);
	double ref = run_job(w, &c);
	int rc = ps_finalize(w);
	if (rc)
		die("ps_finalize", rc);
	rc = 0;
	if (c.nodes >= 2)
		rc = run_psrun(argc, argv, &c, ref);
	printf("# total %.1f s\n", now_s() - t0);
	return rc;
}
