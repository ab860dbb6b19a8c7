/*
 * kge - knowledge-graph embeddings (ComplEx, DistMult, RESCAL) trained on a
 * psmem job, evaluated by filtered link prediction.
 *
 *   kge --dataset DIR [options]          one node
 *   psrun -n N build/apps/kge --dataset DIR [options]
 *
 * DIR holds train.txt, valid.txt and test.txt, one triple per line:
 * head<TAB>relation<TAB>tail, string ids mapped to dense keys.
 *
 * Model.  Every relation r has a reciprocal r' (key r + R): the tail of
 * (h, r, ?) is predicted with the query q = f(h, r), the head of (?, r, t)
 * with q = f(t, r') (Lacroix et al. 2018), and the score of a candidate e
 * is <q, e>.  ComplEx: the first dim/2 floats of a vector are the real
 * parts, the rest the imaginary parts, f = complex product; DistMult: f =
 * elementwise product; RESCAL: relations are dim x dim matrices, f = h^T M.
 *
 * Training.  Mini-batches of --batch triples; the candidates of a batch are
 * the batch's own heads and tails plus --neg entities drawn uniformly,
 * shared by every query of the batch (so each positive is scored against
 * about 2 * batch + neg corrupted heads and as many tails); loss = softmax
 * cross-entropy of the true answer among the candidates, plus an N3 (or
 * L2) penalty on the embeddings used.  A batch pulls every row it needs in
 * one ps_pull_sync per table, computes the gradients locally (the scores
 * and their gradients as three matrix products, through the BLAS:
 * OpenBLAS, one BLAS thread per worker), and pushes the SGD or Adagrad
 * steps in one ps_push_sync per table.  Adagrad keeps its accumulator beside the values
 * in the same row (value_len = 2 x row size).
 *
 * --rule sgd|adagrad puts the optimizer on the server instead: the tables
 * are created with psmem's sgd or adagrad update rule (lr --lr, adagrad
 * eps 1e-10 as above), rows are just the values (the adagrad accumulator is
 * the rule's state, beside them in the slot), and a batch pushes its
 * gradients; the rule applies each push under the slot lock, so an
 * accumulator never misses a concurrent update.  With one thread this
 * computes exactly what the default does (same float operations).
 *
 * --sync bsp|ssp:S|asp: every worker calls ps_clock after each batch and,
 * at the end of an epoch, as often as it takes to make as many clocks as
 * the worker with the most batches (so no worker waits on the bound for
 * one that sits in the epoch's barrier).
 *
 * Policies.  classic: rows stay where created (range placement).
 * localize: while a worker computes batch i it localizes the entities of
 * batch i+1 (heads, tails and the pre-drawn negatives) asynchronously and
 * waits for that before pulling batch i+1.  Relations are not localized:
 * they are few and every batch of every node uses them, so moving them
 * would only make them bounce between nodes; they stay on their home node.
 *
 * Replication and sampling.  --replicate K replicates the K relation rows
 * (of the 2R, reciprocals included) used by the most training triples on
 * every node: each batch of each node reads and updates them locally, and
 * psmem's sync rounds merge the nodes' updates (ps_sync before every
 * evaluation).  --sampling draws the --neg entities of a batch through
 * psmem's sampling, uniformly over the entities: naive as the app's own
 * draw, local among the entities this node holds, pool:U a pool of --neg
 * entities moved here and reused by U consecutive batches.  Seeds differ per
 * worker of the job and per sampler (psmem adds only the node id, which
 * repeats on every host).
 *
 * Work split.  Every node loads the whole data set; the training triples
 * are shuffled once with --seed (the same order on every node), app node n
 * (app_gnode: node n of host h is h x nodes + n, so every node of every
 * host of a multi-host job) takes the n-th contiguous share and each of
 * its worker threads a share of that, reshuffled every epoch: each triple
 * is trained once per epoch wherever the job runs.  The initial rows, the
 * random draws (a seed per worker of the job) and the evaluation are split
 * the same way.  Evaluation pulls every row once into a node-local array
 * and splits the ranking queries over all workers of all nodes of all
 * hosts; partial sums (and the epoch losses, and every worker's count of
 * triples trained) meet in a small psmem table.  Across hosts localize
 * moves the next batch's entities from another host as from another node
 * (a host's node 0 reports its local share: with one node per host, the
 * accesses it served itself rather than another host).
 *
 * Hosts lost, joining, leaving (issue 16).  Each epoch ends with
 * ps_sync_hosts, the membership point; the nodes then agree on the hosts
 * present (common.h, app_members: on several hosts the losses each node
 * saw before the sync, as votes in the metrics table, pulled after it;
 * joiners as the sync adds them) and, when the set
 * changed, every worker takes its share of the split over the hosts
 * present (the same app-node tiling, over fewer or more app nodes) from
 * the next epoch on, evaluation included.  A host lost during an epoch:
 * the part of its share it had not trained in that epoch is not trained
 * again (its updates already applied stay, minus the backup window).  A
 * joiner (ps_joined) reads the data, creates the tables without writing
 * initial values, meets the others' next ps_sync_hosts, which gives it the
 * epoch they train next, and trains its share from there.  A host whose
 * ps_sync_hosts returns 0 leaves: it marks that in the metrics table (so
 * that the others record it left, not lost), takes no part in the final
 * evaluation and finalizes.  Each host's lead records the triples every
 * host trained in every epoch (epoch_host_triples in --json).
 * Ranks are filtered (other known triples of train, valid and test are
 * removed) with ties counted as half.
 *
 * Determinism.  One node with one thread gives the same result for the
 * same seed.  With more threads or nodes the order in which updates land
 * differs from run to run, and so do the last digits.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <cblas.h> /* OpenBLAS's includes <complex.h>: no identifier may be named complex or I */

#include "common.h"
#include "psmem.h"

/* Hot kernels: a clone for AVX2/FMA machines beside the baseline one
 * (ifunc dispatch; not under sanitizers: TSan crashes in ifunc resolvers). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(PS_SANITIZE)
#define KGE_HOT __attribute__((target_clones("arch=x86-64-v3", "default"), optimize("O3", "fp-contract=fast")))
#else
#define KGE_HOT
#endif

/* 8-float vectors (GCC vector extension).  The helpers below are always
 * inlined, so the AVX argument-passing ABI note does not concern them: a
 * v8f passed between an AVX clone and a helper compiled without AVX would
 * not agree on where it goes. */
#define V8_INLINE static inline __attribute__((always_inline))
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

enum { M_COMPLEX, M_DISTMULT, M_RESCAL };
enum { O_SGD, O_ADAGRAD };
enum { P_CLASSIC, P_LOCALIZE };
enum { R_N3, R_L2 };

static const char *model_names[] = {"complex", "distmult", "rescal"};

enum { RULE_SUM, RULE_SGD, RULE_ADAGRAD };
static const char *const rule_names[] = {"sum", "sgd", "adagrad"};
#define ADAGRAD_EPS 1e-10f

struct opts {
	const char *dataset, *json, *save, *sync, *ckpt, *resume;
	int model, optimizer, policy, regularizer, rule, sync_mode, staleness;
	long dim, neg, batch, epochs, threads, eval_every, ckpt_every;
	double lr, reg, init;
	uint64_t seed;
	long replicate;          /* relation rows replicated on every node; 0 = none */
	double repl_rate;        /* replica sync rounds per second per node */
	struct app_sampling smp; /* negatives through psmem's sampling (smp.on) */
};

struct job {
	struct opts o;
	long start_epoch; /* epochs done before this run (--resume) */
	size_t D;        /* floats per entity vector */
	size_t RD;       /* floats per relation (D, or D*D for RESCAL) */
	size_t se, sr;   /* row strides in the tables: D or 2D (Adagrad) */
	size_t nE, nR;   /* entities, relations (without reciprocals) */
	app_idmap *ents, *rels;
	int32_t *train, *valid, *test; /* 3 ints per triple: h, r, t */
	size_t ntrain, nvalid, ntest;
	uint32_t *perm;  /* shuffled order of the training triples */
	/* filter index: (a, rr) -> answers b, for every known triple in both
	 * directions, sorted by key = a * 2R + rr, then b */
	uint64_t *fkey;
	int32_t *fval;
	size_t nf;
	ps_table *E, *R, *M;
	uint64_t *rcount;   /* --replicate: training triples per relation row (2R) */
	int nodes, node, T; /* this host's nodes, this node's id among them, threads per node */
	int host, hosts;    /* this host, hosts of the job (1 on one host) */
	int gnode, gnodes;  /* this node among every node of every host (app_gnode) */
	float *allE, *allR; /* node-local copies for evaluation */
	/* triples trained per epoch: the last epoch of this run and all its
	 * epochs, per node of the job (app node), read by each host's node 0
	 * from the metric table after training */
	uint64_t *trained_last, *trained_all;
	pthread_barrier_t local; /* this node's workers: orders allE/allR writes and reads */
	/* hosts lost, joined, leaving (issue 16): the set each epoch is split
	 * over (the node's workers share it, common.h) */
	struct app_members mem;
	struct app_votes votes;  /* several hosts: the keys that merge the nodes' views */
	int ch;                  /* count slots per host in M: app_count_hosts */
	struct app_epoch_counts ecounts; /* lead: triples per epoch and host */
	bool joined;             /* ps_joined: started by psrun --join */
	long first_epoch;        /* lead: the first epoch this host trained (a joiner's from the sync) */
	long left_epoch;         /* lead: 1 + the epoch this host left before (ps_sync_hosts said 0), 0 none */
	bool save_here;          /* lead: this node is the split's first (--save) */
	/* results, written by thread 0 of each host's node 0 */
	double train_secs, mrr, h1, h3, h10;
	double train_cpu; /* node 0's CPU seconds in the training phases */
	double last_loss;
	long diverged_epoch; /* set by each node's thread 0: the epoch whose loss was inf or NaN */
};

/* ------------------------------------------------------------- kernels */

V8_INLINE v8f ld8(const float *p)
{
	v8f v;
	memcpy(&v, p, sizeof v);
	return v;
}

V8_INLINE v8f bc8(float x)
{
	return (v8f){x, x, x, x, x, x, x, x};
}

#define hsum8v(x) ({ v8f hs_ = (x); hsum8p(&hs_); })
V8_INLINE float hsum8p(const v8f *p)
{
	v8f v = *p;
	return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

V8_INLINE float dotv(const float *a, const float *b, size_t D)
{
	v8f s0 = {0}, s1 = {0};
	size_t k = 0;
	for (; k + 16 <= D; k += 16) {
		s0 += ld8(a + k) * ld8(b + k);
		s1 += ld8(a + k + 8) * ld8(b + k + 8);
	}
	for (; k + 8 <= D; k += 8)
		s0 += ld8(a + k) * ld8(b + k);
	float r = hsum8v(s0 + s1);
	for (; k < D; k++)
		r += a[k] * b[k];
	return r;
}

/*
 * The dense products go to the BLAS (OpenBLAS on Debian), row-major.  One
 * BLAS thread per call: psmem's workers are the parallelism, and a
 * threaded BLAS inside each of them would oversubscribe the cores (see
 * blas_init).  Leading dimensions let the operands stay where they are: the
 * candidates are read in place in the pulled rows (stride se, values first,
 * Adagrad's accumulator after them), which the BLAS packs anyway.
 */

/* openblas_set_num_threads is OpenBLAS's, not the CBLAS standard's: declared
 * here in case <cblas.h> comes from another BLAS (then kge does not link). */
void openblas_set_num_threads(int num_threads);

/* Once per process, before the workers start. */
static void blas_init(void)
{
	openblas_set_num_threads(1);
}

/* C[i*ldc + j] = <A_i, B_j> for i < m, j < n (rows of length D): C = A B^T. */
static void gemm_nt(const float *A, size_t lda, size_t m, const float *B, size_t ldb, size_t n, size_t D,
		    float *C, size_t ldc)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)D, 1.0f, A,
		    (int)lda, B, (int)ldb, 0.0f, C, (int)ldc);
}

/* Out = G B (G: m x n at stride ldg, B: n x D at ldb, Out: m x D at ldo). */
static void gemm_nn(const float *G, size_t ldg, size_t m, size_t n, const float *B, size_t ldb, size_t D,
		    float *Out, size_t ldo)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)D, (int)n, 1.0f, G,
		    (int)ldg, B, (int)ldb, 0.0f, Out, (int)ldo);
}

/* Out = G^T A (G: n x m at stride ldg, A: n x D at lda, Out: m x D at ldo). */
static void gemm_tn(const float *G, size_t ldg, size_t m, size_t n, const float *A, size_t lda, size_t D,
		    float *Out, size_t ldo)
{
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)m, (int)D, (int)n, 1.0f, G,
		    (int)ldg, A, (int)lda, 0.0f, Out, (int)ldo);
}

/* (v8f arguments go through macros and pointers, as hsum8v: GCC notes an
 * ABI change for any function taking one, inlined or not) */
#define st8(p, v) do { v8f st_ = (v); memcpy((p), &st_, sizeof st_); } while (0)

/* Lanes of a where x < y, of b elsewhere. */
#define sel8lt(x, y, a, b) ({ v8i m_ = (x) < (y); (v8f)(((v8i)(a) & m_) | ((v8i)(b) & ~m_)); })

/*
 * exp(x) of 8 floats, x <= 0 (a softmax's s - max): Cephes' expf.  x is
 * clamped at -87 (exp(-87) ~ 1.6e-38, still normal) so that 2^n below is
 * a normal float; n = round(x / ln 2) by the 1.5 * 2^23 trick (t rounds
 * to an integer, and t's low mantissa bits are n); r = x - n ln 2 in two
 * parts (Cody-Waite), |r| <= ln 2 / 2; exp(r) by Cephes' polynomial; times
 * 2^n built in the exponent bits.  At most 1 ulp from glibc's expf over
 * [-87, 0] (checked at 1e-4 steps).
 */
#define exp8(x) ({ v8f ex_ = (x); exp8p(&ex_); })
V8_INLINE v8f exp8p(const v8f *xp)
{
	v8f x = *xp;
	const v8f lo = bc8(-87.0f), magic = bc8(12582912.0f);
	x = sel8lt(x, lo, lo, x);
	v8f t = x * bc8(1.44269504088896341f) + magic;
	v8f n = t - magic;
	v8f r = x - n * bc8(0.693359375f) - n * bc8(-2.12194440e-4f);
	v8f p = bc8(1.9875691500e-4f);
	p = p * r + bc8(1.3981999507e-3f);
	p = p * r + bc8(8.3334519073e-3f);
	p = p * r + bc8(4.1665795894e-2f);
	p = p * r + bc8(1.6666665459e-1f);
	p = p * r + bc8(5.0000001201e-1f);
	p = p * (r * r) + r + bc8(1.0f);
	v8i e = ((v8i)t - (v8i)magic + 127) << 23; /* t's low mantissa bits hold n */
	return p * (v8f)e;
}

/*
 * One query's softmax cross-entropy over its n candidate scores s, the true
 * answer at tgt: returns -log softmax(s)[tgt] and leaves in s the gradient
 * of scale times that loss (scale * (softmax(s) - onehot(tgt))).
 */
KGE_HOT static double softmax_xent(float *s, size_t n, size_t tgt, float scale)
{
	size_t j = 0;
	v8f vm = bc8(s[0]);
	for (; j + 8 <= n; j += 8) {
		v8f x = ld8(s + j);
		vm = sel8lt(vm, x, x, vm);
	}
	float mx = s[0];
	for (size_t k = 0; k < 8; k++)
		mx = vm[k] > mx ? vm[k] : mx;
	for (; j < n; j++)
		mx = s[j] > mx ? s[j] : mx;
	float st = s[tgt] - mx;
	v8f vmx = bc8(mx), vz = {0};
	for (j = 0; j + 8 <= n; j += 8) {
		v8f e = exp8(ld8(s + j) - vmx);
		st8(s + j, e);
		vz += e;
	}
	float z = hsum8v(vz);
	for (; j < n; j++) { /* the tail through the same approximation */
		s[j] = exp8(bc8(s[j] - mx))[0];
		z += s[j];
	}
	float inv = scale / z;
	for (j = 0; j < n; j++)
		s[j] *= inv;
	s[tgt] -= scale;
	return log((double)z) - (double)st;
}

/* Query q = f(a, r) and its backward pass (accumulating into ga, gr). */
KGE_HOT static void query(int model, size_t D, const float *restrict a, const float *restrict r, float *restrict q)
{
	if (model == M_COMPLEX) {
		size_t h = D / 2;
		for (size_t k = 0; k < h; k++) {
			q[k] = a[k] * r[k] - a[h + k] * r[h + k];
			q[h + k] = a[k] * r[h + k] + a[h + k] * r[k];
		}
	} else if (model == M_DISTMULT) {
		for (size_t k = 0; k < D; k++)
			q[k] = a[k] * r[k];
	} else {
		memset(q, 0, D * sizeof *q);
		for (size_t i = 0; i < D; i++) {
			const float *mi = r + i * D;
			float ai = a[i];
			for (size_t k = 0; k < D; k++)
				q[k] += ai * mi[k];
		}
	}
}

/* (restrict: the gradients ga and gr are rows of gE and gR, never the
 * pulled rows a and r or the query gradient g, so the loops vectorize) */
KGE_HOT static void query_back(int model, size_t D, const float *restrict a, const float *restrict r,
			       const float *restrict g, float *restrict ga, float *restrict gr)
{
	if (model == M_COMPLEX) {
		size_t h = D / 2;
		for (size_t k = 0; k < h; k++) {
			float gre = g[k], gim = g[h + k];
			ga[k] += gre * r[k] + gim * r[h + k];
			ga[h + k] += -gre * r[h + k] + gim * r[k];
			gr[k] += gre * a[k] + gim * a[h + k];
			gr[h + k] += -gre * a[h + k] + gim * a[k];
		}
	} else if (model == M_DISTMULT) {
		for (size_t k = 0; k < D; k++) {
			ga[k] += g[k] * r[k];
			gr[k] += g[k] * a[k];
		}
	} else {
		for (size_t i = 0; i < D; i++) {
			const float *mi = r + i * D;
			float *gmi = gr + i * D;
			float ai = a[i];
			ga[i] += dotv(mi, g, D);
			for (size_t k = 0; k < D; k++)
				gmi[k] += ai * g[k];
		}
	}
}

/* Gradient of w * penalty(x) added to g.  N3: sum |x|^3 over components
 * (ComplEx: over complex moduli); L2: sum x^2. */
KGE_HOT static void reg_grad(const struct job *jb, const float *x, size_t len, bool cpx, float w, float *g)
{
	if (w == 0)
		return;
	if (jb->o.regularizer == R_L2) {
		for (size_t k = 0; k < len; k++)
			g[k] += 2 * w * x[k];
	} else if (cpx) {
		size_t h = len / 2;
		for (size_t k = 0; k < h; k++) {
			float m = sqrtf(x[k] * x[k] + x[h + k] * x[h + k]);
			g[k] += 3 * w * m * x[k];
			g[h + k] += 3 * w * m * x[h + k];
		}
	} else {
		for (size_t k = 0; k < len; k++)
			g[k] += 3 * w * fabsf(x[k]) * x[k];
	}
}

/* ---------------------------------------------------------------- data */

/* Is s (case aside) one of the NULL-terminated words? */
static bool one_of(const char *s, const char *const *words)
{
	for (; *words; words++)
		if (strcasecmp(s, *words) == 0)
			return true;
	return false;
}

/*
 * A first line that names the columns ("head<TAB>relation<TAB>tail",
 * "subject predicate object", "h r t", "source edge target", ...): data
 * exported from a table or a data frame often starts with one.  It is
 * skipped, with a note, rather than trained as a triple of three new
 * entities and a relation; a real triple of exactly these words is not
 * plausible.
 */
static bool header_line(char *const *f)
{
	static const char *const heads[] = {"head", "h", "subject", "subj", "s", "source", "src", "from",
					    "e1", "entity1", "head_entity", NULL};
	static const char *const rels[] = {"relation", "rel", "r", "predicate", "pred", "p", "edge", "label",
					   "relation_type", NULL};
	static const char *const tails[] = {"tail", "t", "object", "obj", "o", "target", "dst", "to",
					    "e2", "entity2", "tail_entity", NULL};
	return one_of(f[0], heads) && one_of(f[1], rels) && one_of(f[2], tails);
}

static int32_t *read_triples(struct job *jb, const char *dir, const char *name, bool train, size_t *n_out)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	struct stat st;
	if (stat(path, &st) != 0 && errno == ENOENT) { /* name.gz serves as well (gzip is read either way) */
		snprintf(path, sizeof path, "%s/%s.gz", dir, name);
		if (stat(path, &st) != 0 && errno == ENOENT) /* neither: app_open names the plain one */
			snprintf(path, sizeof path, "%s/%s", dir, name);
	}
	app_reader *r = app_open(path);
	size_t cap = 1024, n = 0, skipped = 0, len;
	bool first = true;
	int32_t *t = malloc(cap * 3 * sizeof *t);
	if (!t)
		app_die("out of memory");
	char *line;
	while ((line = app_getline(r, &len))) {
		if (len == 0)
			continue; /* blank lines are ignored */
		char *f[16];
		int nf = app_split(line, "\t", false, f, 16);
		if (nf != 3)
			app_fail_line(r, "expected 3 tab-separated fields (head, relation, tail), found %d", nf);
		for (int k = 0; k < 3; k++)
			if (!*f[k])
				app_fail_line(r, "empty %s field", k == 0 ? "head" : k == 1 ? "relation" : "tail");
		bool was_first = first;
		first = false;
		if (was_first && header_line(f)) {
			if (jb->node == 0)
				fprintf(stderr, "kge: %s:%ld: skipped a header line (%s, %s, %s), not a triple\n", path,
					app_lineno(r), app_clip(f[0]), app_clip(f[1]), app_clip(f[2]));
			continue;
		}
		int64_t h = app_idmap_get(jb->ents, f[0], strlen(f[0]), train);
		int64_t rel = app_idmap_get(jb->rels, f[1], strlen(f[1]), train);
		int64_t tl = app_idmap_get(jb->ents, f[2], strlen(f[2]), train);
		if (h < 0 || rel < 0 || tl < 0) {
			skipped++;
			continue;
		}
		if (h > INT32_MAX || tl > INT32_MAX || rel > INT32_MAX)
			app_fail_line(r, "more than 2^31 entities or relations");
		if (n == cap) {
			cap *= 2;
			t = realloc(t, cap * 3 * sizeof *t);
			if (!t)
				app_die("out of memory");
		}
		t[3 * n] = (int32_t)h;
		t[3 * n + 1] = (int32_t)rel;
		t[3 * n + 2] = (int32_t)tl;
		n++;
	}
	if (n == 0 && skipped == 0)
		app_die("%s: empty file: no triples", path);
	if (n == 0)
		app_die("%s: none of its %zu triples has its entities and relation in train.txt", path, skipped);
	if (skipped && jb->node == 0)
		fprintf(stderr, "kge: %s: skipped %zu of %zu triples whose entity or relation is not in train.txt\n",
			path, skipped, skipped + n);
	app_close(r);
	*n_out = n;
	return t;
}

struct fent {
	uint64_t key;
	int32_t val;
};

static int fent_cmp(const void *a, const void *b)
{
	const struct fent *x = a, *y = b;
	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return (x->val > y->val) - (x->val < y->val);
}

static void build_filter(struct job *jb)
{
	size_t tot = jb->ntrain + jb->nvalid + jb->ntest, n = 0;
	struct fent *f = malloc(2 * tot * sizeof *f);
	if (!f)
		app_die("out of memory");
	const int32_t *sets[3] = {jb->train, jb->valid, jb->test};
	size_t cnt[3] = {jb->ntrain, jb->nvalid, jb->ntest};
	uint64_t R2 = 2 * jb->nR;
	for (int s = 0; s < 3; s++)
		for (size_t i = 0; i < cnt[s]; i++) {
			const int32_t *x = sets[s] + 3 * i;
			f[n++] = (struct fent){(uint64_t)x[0] * R2 + (uint64_t)x[1], x[2]};
			f[n++] = (struct fent){(uint64_t)x[2] * R2 + (uint64_t)x[1] + jb->nR, x[0]};
		}
	qsort(f, n, sizeof *f, fent_cmp);
	jb->fkey = malloc(n * sizeof *jb->fkey);
	jb->fval = malloc(n * sizeof *jb->fval);
	if (!jb->fkey || !jb->fval)
		app_die("out of memory");
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		if (m && jb->fkey[m - 1] == f[i].key && jb->fval[m - 1] == f[i].val)
			continue;
		jb->fkey[m] = f[i].key;
		jb->fval[m] = f[i].val;
		m++;
	}
	jb->nf = m;
	free(f);
}

/* Range [*lo, *hi) of the filter entries of key. */
static void filter_range(const struct job *jb, uint64_t key, size_t *lo, size_t *hi)
{
	size_t a = 0, b = jb->nf;
	while (a < b) {
		size_t mid = a + (b - a) / 2;
		if (jb->fkey[mid] < key)
			a = mid + 1;
		else
			b = mid;
	}
	*lo = a;
	b = jb->nf;
	while (a < b) {
		size_t mid = a + (b - a) / 2;
		if (jb->fkey[mid] <= key)
			a = mid + 1;
		else
			b = mid;
	}
	*hi = a;
}

/* ------------------------------------------------------------ workers */

static void check(int rc, const char *what)
{
	if (rc < 0)
		app_die("%s: %s", what, ps_strerror(rc));
}

/* Deterministic initial value j of row key of table tab: normal(0, init). */
static float init_value(uint64_t seed, int tab, uint64_t key, size_t j)
{
	uint64_t s = seed * 0x9e3779b97f4a7c15ULL ^ ((uint64_t)tab << 56) ^ (key * 0xd1b54a32d192ed03ULL) ^ (j * 0x8cb92ba72f3d8dd7ULL);
	double u1 = app_rand_unit(&s), u2 = app_rand_unit(&s);
	if (u1 < 1e-300)
		u1 = 1e-300;
	return (float)(sqrt(-2 * log(u1)) * cos(2 * M_PI * u2));
}

/* Every worker of the job writes the initial rows of its share of keys. */
static void init_table(struct job *jb, ps_table *t, int tab, size_t nkeys, size_t vlen, size_t stride, int g, int G)
{
	enum { CH = 256 };
	ps_key keys[CH];
	float *buf = calloc(CH * stride, sizeof *buf);
	if (!buf)
		app_die("out of memory");
	size_t lo = nkeys * (size_t)g / (size_t)G, hi = nkeys * (size_t)(g + 1) / (size_t)G;
	for (size_t k0 = lo; k0 < hi; k0 += CH) {
		size_t n = hi - k0 < CH ? hi - k0 : CH;
		memset(buf, 0, CH * stride * sizeof *buf);
		for (size_t i = 0; i < n; i++) {
			keys[i] = k0 + i;
			for (size_t j = 0; j < vlen; j++)
				buf[i * stride + j] = (float)jb->o.init * init_value(jb->o.seed, tab, k0 + i, j);
		}
		/* with a server-side rule a push is a gradient: assign */
		check(jb->o.rule == RULE_SUM ? ps_push_sync(t, keys, n, buf) : ps_assign_sync(t, keys, n, buf),
		      "initialising the embeddings");
	}
	free(buf);
}

/* A prepared mini-batch: unique entity and relation keys and, per triple,
 * the positions of its head, tail, relation and reciprocal in them. */
struct batch {
	size_t n, nents, nrels;
	int32_t *hi, *ti, *ri, *rv;
	ps_key *ents, *rels;
};

struct wstate {
	struct job *jb;
	uint64_t rng;
	int tid;
	ps_sampler *smp;   /* --sampling: serves the negatives of smp_left more batches */
	long smp_left;
	uint64_t nprep;    /* samplers prepared (their seeds) */
	uint32_t stamp;
	uint32_t *estamp, *rstamp;
	int32_t *epos, *rpos;
	struct batch b[2];
	float *rowsE, *rowsR, *Q, *S, *dQ, *gE, *gR, *push;
	struct app_split sp; /* the split in force: this node's app node among those present */
};

static void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz);
	if (!p)
		app_die("out of memory");
	return p;
}

static int32_t add_key(uint32_t *stamp, int32_t *pos, uint32_t cur, ps_key *list, size_t *n, uint32_t k)
{
	if (stamp[k] != cur) {
		stamp[k] = cur;
		pos[k] = (int32_t)*n;
		list[(*n)++] = k;
	}
	return pos[k];
}

/* Ends the worker's sampler: a pool that could not all move here
 * (PS_EFULL) still served current values, so only other errors stop. */
static void end_sampler(struct wstate *ws)
{
	int rc = ws->smp ? ps_sample_finish(ws->smp) : 0;
	ws->smp = NULL;
	if (rc && rc != PS_EFULL)
		check(rc, "sampling");
}

/*
 * --sampling: the --neg negatives of a batch, uniform over the entities.
 * One sampler serves U consecutive batches (U = the pool's reuse, 1 for
 * naive and local) with U x neg samples: with pool:U its pool is --neg
 * entities, localized when it is prepared, and each batch gets one pass
 * over it (the whole pool in a new order).  Seeded per thread and per
 * sampler (psmem adds the node).  Keys only: the batch pulls the rows.
 */
static void sample_negatives(struct wstate *ws, struct batch *b, uint32_t cur)
{
	struct job *jb = ws->jb;
	const struct opts *o = &jb->o;
	if (o->neg == 0)
		return;
	if (!ws->smp || ws->smp_left == 0) {
		end_sampler(ws);
		long U = (long)o->smp.reuse;
		/* every worker of every host its own seeds: psmem adds only the node id */
		uint64_t G = (uint64_t)jb->gnodes * (uint64_t)jb->T,
			 g = (uint64_t)jb->gnode * (uint64_t)jb->T + (uint64_t)ws->tid;
		uint64_t seed = o->seed * 0x9e3779b97f4a7c15ULL + ws->nprep++ * G + g;
		int err;
		ws->smp = ps_sample_prepare(jb->E, (size_t)(o->neg * U), NULL, seed, &err);
		if (!ws->smp)
			check(err, "ps_sample_prepare");
		ws->smp_left = U;
	}
	ws->smp_left--;
	enum { CH = 512 };
	ps_key keys[CH];
	for (long k0 = 0; k0 < o->neg; k0 += CH) {
		size_t m = (size_t)(o->neg - k0 < CH ? o->neg - k0 : CH);
		int64_t rc = ps_sample_pull(ws->smp, m, keys, NULL);
		if (rc < 0)
			check((int)rc, "ps_sample_pull");
		for (size_t i = 0; i < m; i++)
			add_key(ws->estamp, ws->epos, cur, b->ents, &b->nents, (uint32_t)keys[i]);
	}
}

static void prep_batch(struct wstate *ws, struct batch *b, const uint32_t *idx, size_t n)
{
	struct job *jb = ws->jb;
	uint32_t cur = ++ws->stamp;
	if (cur == 0) { /* wrapped: clear */
		memset(ws->estamp, 0, jb->nE * sizeof *ws->estamp);
		memset(ws->rstamp, 0, 2 * jb->nR * sizeof *ws->rstamp);
		cur = ws->stamp = 1;
	}
	b->n = n;
	b->nents = b->nrels = 0;
	for (size_t i = 0; i < n; i++) {
		const int32_t *x = jb->train + 3 * (size_t)idx[i];
		b->hi[i] = add_key(ws->estamp, ws->epos, cur, b->ents, &b->nents, (uint32_t)x[0]);
		b->ti[i] = add_key(ws->estamp, ws->epos, cur, b->ents, &b->nents, (uint32_t)x[2]);
		b->ri[i] = add_key(ws->rstamp, ws->rpos, cur, b->rels, &b->nrels, (uint32_t)x[1]);
		b->rv[i] = add_key(ws->rstamp, ws->rpos, cur, b->rels, &b->nrels, (uint32_t)(x[1] + (int32_t)jb->nR));
	}
	if (jb->o.smp.on) {
		sample_negatives(ws, b, cur);
		return;
	}
	for (long k = 0; k < jb->o.neg; k++)
		add_key(ws->estamp, ws->epos, cur, b->ents, &b->nents, (uint32_t)(app_rand(&ws->rng) % jb->nE));
}

/* One optimizer step for rows of length len at stride, gradient g:
 * writes the push buffer (value step, and accumulator increase). */
KGE_HOT static void make_step(const struct job *jb, const float *rows, size_t nrows, size_t len, size_t stride,
		      const float *g, float *push)
{
	float lr = (float)jb->o.lr;
	if (jb->o.rule != RULE_SUM) { /* the tables' rule takes the gradient */
		memcpy(push, g, nrows * len * sizeof *push);
		return;
	}
	for (size_t i = 0; i < nrows; i++) {
		const float *gi = g + i * len;
		float *p = push + i * stride;
		if (jb->o.optimizer == O_SGD) {
			for (size_t k = 0; k < len; k++)
				p[k] = -lr * gi[k];
		} else {
			const float *acc = rows + i * stride + len;
			for (size_t k = 0; k < len; k++) {
				float g2 = gi[k] * gi[k];
				p[k] = -lr * gi[k] / (sqrtf(acc[k] + g2) + 1e-10f);
				p[len + k] = g2;
			}
		}
	}
}

/*
 * The loss of a batch whose rows are in ws->rowsE and ws->rowsR (as pulled:
 * strides se and sr) and its gradients: into ws->gE (nents x D) and ws->gR
 * (nrels x RD), the gradient of (sum of the queries' losses + reg x their
 * penalties) / (2 x batch).  Returns the sum of the queries' losses.  No
 * psmem call: tests/test_kge_kernels.c checks it by finite differences.
 */
static double batch_grad(struct wstate *ws, const struct batch *b)
{
	struct job *jb = ws->jb;
	size_t D = jb->D, RD = jb->RD, se = jb->se, sr = jb->sr, n = b->n, nc = b->nents, nq = 2 * n;
	int model = jb->o.model;
	/* queries: 2i = tail of (h, r, ?), 2i+1 = head of (?, r, t) via r' */
	for (size_t i = 0; i < n; i++) {
		query(model, D, ws->rowsE + (size_t)b->hi[i] * se, ws->rowsR + (size_t)b->ri[i] * sr, ws->Q + 2 * i * D);
		query(model, D, ws->rowsE + (size_t)b->ti[i] * se, ws->rowsR + (size_t)b->rv[i] * sr,
		      ws->Q + (2 * i + 1) * D);
	}
	/* S = Q C^T: every query against every candidate, read in the rows */
	gemm_nt(ws->Q, D, nq, ws->rowsE, se, nc, D, ws->S, nc);
	/* softmax cross-entropy; S becomes dLoss/dS */
	double loss = 0;
	float scale = 1.0f / (float)nq;
	for (size_t q = 0; q < nq; q++)
		loss += softmax_xent(ws->S + q * nc, nc, (size_t)((q & 1) ? b->hi[q / 2] : b->ti[q / 2]), scale);
	/* dQ = G C; dC = G^T Q (G = dLoss/dS, in S) */
	gemm_nn(ws->S, nc, nq, nc, ws->rowsE, se, D, ws->dQ, D);
	gemm_tn(ws->S, nc, nc, nq, ws->Q, D, D, ws->gE, D);
	memset(ws->gR, 0, b->nrels * RD * sizeof *ws->gR);
	/* back through the queries, plus the penalty on a, rel and answer */
	float w = (float)jb->o.reg * scale;
	bool cpx = model == M_COMPLEX;
	for (size_t q = 0; q < nq; q++) {
		size_t i = q / 2;
		int32_t a = (q & 1) ? b->ti[i] : b->hi[i], ans = (q & 1) ? b->hi[i] : b->ti[i];
		int32_t r = (q & 1) ? b->rv[i] : b->ri[i];
		const float *av = ws->rowsE + (size_t)a * se, *rv = ws->rowsR + (size_t)r * sr;
		query_back(model, D, av, rv, ws->dQ + q * D, ws->gE + (size_t)a * D, ws->gR + (size_t)r * RD);
		reg_grad(jb, av, D, cpx, w, ws->gE + (size_t)a * D);
		reg_grad(jb, ws->rowsE + (size_t)ans * se, D, cpx, w, ws->gE + (size_t)ans * D);
		reg_grad(jb, rv, RD, cpx, w, ws->gR + (size_t)r * RD);
	}
	return loss;
}

/* Trains on one prepared batch; returns the sum of the queries' losses. */
static double train_batch(struct wstate *ws, const struct batch *b)
{
	struct job *jb = ws->jb;
	size_t D = jb->D, RD = jb->RD, se = jb->se, sr = jb->sr, nc = b->nents;
	check(ps_pull_sync(jb->E, b->ents, nc, ws->rowsE), "pull of entity rows");
	check(ps_pull_sync(jb->R, b->rels, b->nrels, ws->rowsR), "pull of relation rows");
	double loss = batch_grad(ws, b);
	make_step(jb, ws->rowsE, nc, D, se, ws->gE, ws->push);
	check(ps_push_sync(jb->E, b->ents, nc, ws->push), "push of entity updates");
	make_step(jb, ws->rowsR, b->nrels, RD, sr, ws->gR, ws->push);
	check(ps_push_sync(jb->R, b->rels, b->nrels, ws->push), "push of relation updates");
	return loss;
}

/* Pulls a table's values (without accumulators) into dst, keys [lo, hi). */
static void pull_values(ps_table *t, size_t lo, size_t hi, size_t len, size_t stride, float *dst)
{
	enum { CH = 512 };
	ps_key keys[CH];
	float *buf = xcalloc(CH * stride, sizeof *buf);
	for (size_t k0 = lo; k0 < hi; k0 += CH) {
		size_t n = hi - k0 < CH ? hi - k0 : CH;
		for (size_t i = 0; i < n; i++)
			keys[i] = k0 + i;
		check(ps_pull_sync(t, keys, n, buf), "pull for evaluation");
		for (size_t i = 0; i < n; i++)
			memcpy(dst + (k0 + i) * len, buf + i * stride, len * sizeof *dst);
	}
	free(buf);
}

/* Filtered ranking of the heads and tails of a triple set.  Every worker of
 * every node of every host takes a share of the queries; the sums meet in
 * metric key mkey.
 * The caller has pulled every row into allE/allR (after a barrier). */
static void evaluate(struct wstate *ws, int tid, const int32_t *trip, size_t ntrip, ps_key mkey)
{
	struct job *jb = ws->jb;
	size_t D = jb->D, RD = jb->RD, nE = jb->nE, nq = 2 * ntrip;
	int G = ws->sp.gnodes * jb->T, g = ws->sp.gnode * jb->T + tid; /* over the hosts present */
	size_t lo = nq * (size_t)g / (size_t)G, hi = nq * (size_t)(g + 1) / (size_t)G;
	/* queries per product: up to 64 (the BLAS is efficient from there), S
	 * (QB x nE) at most 4M floats per worker on large graphs */
	size_t QB = ((size_t)1 << 22) / (nE ? nE : 1);
	QB = QB < 1 ? 1 : QB > 64 ? 64 : QB;
	float *Q = xcalloc(QB * D, sizeof *Q), *S = xcalloc(QB * nE, sizeof *S);
	double rr = 0, h1 = 0, h3 = 0, h10 = 0;
	for (size_t q0 = lo; q0 < hi; q0 += QB) {
		size_t m = hi - q0 < QB ? hi - q0 : QB;
		for (size_t i = 0; i < m; i++) {
			const int32_t *x = trip + 3 * ((q0 + i) / 2);
			bool head = (q0 + i) & 1;
			size_t a = (size_t)(head ? x[2] : x[0]), r = (size_t)x[1] + (head ? jb->nR : 0);
			query(jb->o.model, D, jb->allE + a * D, jb->allR + r * RD, Q + i * D);
		}
		gemm_nt(Q, D, m, jb->allE, D, nE, D, S, nE);
		for (size_t i = 0; i < m; i++) {
			const int32_t *x = trip + 3 * ((q0 + i) / 2);
			bool head = (q0 + i) & 1;
			uint64_t a = (uint64_t)(head ? x[2] : x[0]), r = (uint64_t)x[1] + (head ? jb->nR : 0);
			int32_t ans = head ? x[0] : x[2];
			const float *s = S + i * nE;
			float st = s[ans];
			long greater = 0, equal = 0;
			for (size_t e = 0; e < nE; e++) {
				greater += s[e] > st;
				equal += s[e] == st;
			}
			equal--; /* the answer itself */
			size_t flo, fhi;
			filter_range(jb, a * 2 * jb->nR + r, &flo, &fhi);
			for (size_t f = flo; f < fhi; f++) {
				int32_t b = jb->fval[f];
				if (b == ans)
					continue;
				if (s[b] > st)
					greater--;
				else if (s[b] == st)
					equal--;
			}
			double rank = 1.0 + (double)greater + (double)equal / 2.0;
			rr += 1.0 / rank;
			h1 += rank <= 1;
			h3 += rank <= 3;
			h10 += rank <= 10;
		}
	}
	float m[8] = {(float)rr, (float)h1, (float)h3, (float)h10, (float)(hi - lo), 0, 0, 0};
	check(ps_push_sync(jb->M, &mkey, 1, m), "push of metrics");
	free(Q);
	free(S);
}

/* All workers: refresh the local copies of the embeddings, then rank. */
static void eval_round(struct wstate *ws, ps_world *w, int tid, const int32_t *trip, size_t ntrip, ps_key mkey)
{
	struct job *jb = ws->jb;
	size_t T = (size_t)jb->T;
	/* The copies are node-local, so a pthread barrier orders their writes
	 * and reads (and ThreadSanitizer sees it, which it cannot for
	 * ps_barrier when the last arrival is another process). */
	check(ps_barrier(w), "barrier"); /* training done on every node */
	/* every node's replica deltas merged, every replica refreshed: one
	 * ps_sync round on one host; across hosts a ps_sync covers only its
	 * host, so two rounds, each on every host (psmem.h, ps_sync) */
	for (int round = 0; jb->o.replicate && round < (jb->hosts > 1 ? 2 : 1); round++) {
		if (jb->node == 0 && tid == 0)
			check(ps_sync(jb->R), "ps_sync");
		check(ps_barrier(w), "barrier");
	}
	pthread_barrier_wait(&jb->local);  /* no worker still reads the copies */
	pull_values(jb->E, jb->nE * (size_t)tid / T, jb->nE * (size_t)(tid + 1) / T, jb->D, jb->se, jb->allE);
	pull_values(jb->R, 2 * jb->nR * (size_t)tid / T, 2 * jb->nR * (size_t)(tid + 1) / T, jb->RD, jb->sr, jb->allR);
	pthread_barrier_wait(&jb->local);  /* the copies are complete */
	evaluate(ws, tid, trip, ntrip, mkey);
	check(ps_barrier(w), "barrier");
}

static void read_metrics(struct job *jb, ps_key mkey, double *mrr, double *h1, double *h3, double *h10)
{
	float m[8];
	check(ps_pull_sync(jb->M, &mkey, 1, m), "pull of metrics");
	double c = m[4] > 0 ? m[4] : 1;
	*mrr = m[0] / c;
	*h1 = m[1] / c;
	*h3 = m[2] / c;
	*h10 = m[3] / c;
}

/* Training triples of worker tid of app node n of N (app_gnode, or the
 * split over the hosts present: every node of every host): [*lo, *hi).
 * The shares of all workers of the job tile [0, ntrain), so each triple
 * is trained once per epoch. */
static void share_of(const struct job *jb, int n, int N, int tid, size_t *lo, size_t *hi)
{
	size_t nlo = jb->ntrain * (size_t)n / (size_t)N;
	size_t nhi = jb->ntrain * (size_t)(n + 1) / (size_t)N;
	*lo = nlo + (nhi - nlo) * (size_t)tid / (size_t)jb->T;
	*hi = nlo + (nhi - nlo) * (size_t)(tid + 1) / (size_t)jb->T;
}

/* --sync: clocks per epoch, the batches of the worker with the most. */
static size_t clocks_per_epoch(const struct job *jb, int N)
{
	size_t most = 0, B = (size_t)jb->o.batch;
	for (int n = 0; n < N; n++)
		for (int t = 0; t < jb->T; t++) {
			size_t lo, hi;
			share_of(jb, n, N, t, &lo, &hi);
			size_t nb = (hi - lo + B - 1) / B;
			most = nb > most ? nb : most;
		}
	return most;
}

static void clock_tick(ps_world *w, const struct job *jb)
{
	if (jb->o.sync)
		check(ps_clock(w), "clock");
}

/*
 * Triples trained, per worker, in the metric table: worker g of the job
 * (app node x threads + thread) assigns its key count_key(g) at the end of
 * each epoch: the count of that epoch and of every epoch of this run.  A
 * count c travels as two floats, c mod 2^20 and c / 2^20, each exact in a
 * float while c < 2^44.
 */
static ps_key count_key(const struct job *jb, int g)
{
	return (ps_key)(2 * jb->o.epochs + 2 + g);
}

static void count_put(float *m, uint64_t c)
{
	m[0] = (float)(c & 0xfffff);
	m[1] = (float)(c >> 20);
}

static uint64_t count_get(const float *m)
{
	return (uint64_t)m[0] + ((uint64_t)m[1] << 20);
}

/* Host h's mark that it left on request (ps_sync_hosts returned 0
 * there), after the count keys of every host slot. */
static ps_key left_key(const struct job *jb, int h)
{
	return count_key(jb, jb->ch * jb->nodes * jb->T + h);
}

/* Host h's vote key (common.h, app_members_vote), after the left marks. */
static ps_key vote_key(const struct job *jb, int h)
{
	return left_key(jb, jb->ch + h);
}

/* Each host's node 0: the counts of every app node (threads summed). */
static void read_counts(struct job *jb)
{
	float m[8];
	for (int n = 0; n < jb->gnodes; n++) {
		jb->trained_last[n] = jb->trained_all[n] = 0;
		for (int t = 0; t < jb->T; t++) {
			ps_key k = count_key(jb, n * jb->T + t);
			check(ps_pull_sync(jb->M, &k, 1, m), "pull of the counts");
			jb->trained_last[n] += count_get(m);
			jb->trained_all[n] += count_get(m + 2);
		}
	}
}

/* The membership point before epoch *e, every worker (common.h; votes on
 * several hosts).  Returns ps_sync_hosts's answer (0: this host leaves). */
static int membership(ps_world *w, struct job *jb, long *e, struct app_split *sp, uint8_t *alive)
{
	return app_membership(&jb->mem, w, jb->hosts > 1 || jb->joined ? &jb->votes : NULL, e, sp, alive);
}

/* This worker's share of the (globally shuffled) training triples under
 * split sp into *idx (reallocated), *mine of them; *nclocks: the batches
 * of the busiest worker of the split (--sync). */
static void take_share(const struct job *jb, const struct app_split *sp, int tid, uint32_t **idx, size_t *mine,
		       size_t *nclocks)
{
	size_t lo, hi;
	share_of(jb, sp->gnode, sp->gnodes, tid, &lo, &hi);
	free(*idx);
	*mine = hi - lo;
	*idx = xcalloc(*mine, sizeof **idx);
	memcpy(*idx, jb->perm + lo, *mine * sizeof **idx);
	*nclocks = clocks_per_epoch(jb, sp->gnodes);
}

static void worker(ps_world *w, int tid, void *arg)
{
	struct job *jb = arg;
	const struct opts *o = &jb->o;
	/* worker g of the job (app_gnode): its random draws; its shares of
	 * the initial rows and triples come from the split (jb->mem) */
	int g = jb->gnode * jb->T + tid;
	bool lead = jb->node == 0 && tid == 0; /* each host's node 0 prints */
	if (!jb->start_epoch && !jb->joined) { /* resumed: the rows come from the checkpoint; joined: from the job */
		/* split over the workers of the hosts present (all of them, but in
		 * an elastic job, where ps_num_hosts counts the ranks that may join) */
		struct app_split s0;
		app_members_split(&jb->mem, &s0, NULL);
		int g0 = s0.gnode * jb->T + tid, G0 = s0.gnodes * jb->T;
		init_table(jb, jb->E, 0, jb->nE, jb->D, jb->se, g0, G0);
		init_table(jb, jb->R, 1, 2 * jb->nR, jb->RD, jb->sr, g0, G0);
	}

	struct wstate ws = {.jb = jb, .tid = tid};
	ws.rng = o->seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(g + 1));
	ws.estamp = xcalloc(jb->nE, sizeof *ws.estamp);
	ws.epos = xcalloc(jb->nE, sizeof *ws.epos);
	ws.rstamp = xcalloc(2 * jb->nR, sizeof *ws.rstamp);
	ws.rpos = xcalloc(2 * jb->nR, sizeof *ws.rpos);
	size_t B = (size_t)o->batch, maxc = 2 * B + (size_t)o->neg, maxr = 2 * B;
	if (maxc > jb->nE)
		maxc = jb->nE;
	if (maxr > 2 * jb->nR)
		maxr = 2 * jb->nR;
	for (int k = 0; k < 2; k++) {
		ws.b[k].hi = xcalloc(B, sizeof(int32_t));
		ws.b[k].ti = xcalloc(B, sizeof(int32_t));
		ws.b[k].ri = xcalloc(B, sizeof(int32_t));
		ws.b[k].rv = xcalloc(B, sizeof(int32_t));
		ws.b[k].ents = xcalloc(maxc, sizeof(ps_key));
		ws.b[k].rels = xcalloc(maxr, sizeof(ps_key));
	}
	size_t D = jb->D, RD = jb->RD;
	ws.rowsE = xcalloc(maxc * jb->se, sizeof(float));
	ws.rowsR = xcalloc(maxr * jb->sr, sizeof(float));
	ws.Q = xcalloc(2 * B * D, sizeof(float));
	ws.dQ = xcalloc(2 * B * D, sizeof(float));
	ws.S = xcalloc(2 * B * maxc, sizeof(float));
	ws.gE = xcalloc(maxc * D, sizeof(float));
	ws.gR = xcalloc(maxr * RD, sizeof(float));
	size_t pmax = maxc * jb->se > maxr * jb->sr ? maxc * jb->se : maxr * jb->sr;
	ws.push = xcalloc(pmax, sizeof(float));

	/* the hosts the triples are split over: every host of the job at the
	 * start; a joiner's first ps_sync_hosts meets the others' at the end of
	 * an epoch and says which epoch they train next */
	long e0 = jb->start_epoch;
	uint8_t *alive = lead ? xcalloc(APP_HOSTS_MAX, 1) : NULL; /* the lead's copy of the set */
	if (!jb->joined) {
		check(ps_barrier(w), "barrier"); /* initial values in place */
		if (o->replicate) { /* the replicas start from the initial values */
			if (lead)
				app_replicate_top(jb->R, jb->rcount, o->replicate, "most used relation rows");
			check(ps_barrier(w), "barrier");
		}
		app_members_split(&jb->mem, &ws.sp, alive);
	} else {
		/* the joiner's first: the others' epoch comes back (no votes:
		 * this host has no set yet) */
		membership(w, jb, &e0, &ws.sp, alive);
		if (lead)
			app_members_print(&jb->mem, e0);
	}
	if (lead)
		jb->first_epoch = e0;
	/* this worker's share of the (globally shuffled) training triples */
	uint32_t *idx = NULL;
	size_t mine, nclocks;
	take_share(jb, &ws.sp, tid, &idx, &mine, &nclocks);
	double t_train = 0, cpu_train = 0;
	uint64_t trained_all = 0; /* triples this worker trained, every epoch of this run */
	app_progress pr;
	bool diverged = false, left = false;
	for (long e = e0; e < o->epochs; e++) {
		double t0 = app_now(), c0 = app_cpu_now();
		if (lead) {
			char what[64];
			snprintf(what, sizeof what, "epoch %ld/%ld", e + 1, o->epochs);
			app_progress_start(&pr, what, jb->ntrain);
		}
		for (size_t i = mine; i > 1; i--) { /* Fisher-Yates */
			size_t j = app_rand(&ws.rng) % i;
			uint32_t t = idx[i - 1];
			idx[i - 1] = idx[j];
			idx[j] = t;
		}
		double loss = 0;
		size_t done = 0, nb = (mine + B - 1) / B;
		ps_handle hloc = NULL;
		if (nb > 0)
			prep_batch(&ws, &ws.b[0], idx, mine < B ? mine : B);
		if (nb > 0 && o->policy == P_LOCALIZE)
			check(ps_localize_sync(jb->E, ws.b[0].ents, ws.b[0].nents), "localize");
		for (size_t k = 0; k < nb; k++) {
			struct batch *cur = &ws.b[k & 1], *nxt = &ws.b[(k + 1) & 1];
			if (o->policy == P_LOCALIZE && k + 1 < nb) {
				/* batch k+1 (with its negatives) is drawn now, so that its
				 * entities can move here while batch k computes */
				size_t s = (k + 1) * B, n = mine - s < B ? mine - s : B;
				prep_batch(&ws, nxt, idx + s, n);
				hloc = ps_localize(jb->E, nxt->ents, nxt->nents);
			}
			loss += train_batch(&ws, cur);
			done += cur->n;
			clock_tick(w, jb);
			if (hloc) {
				check(ps_wait(hloc), "localize");
				hloc = NULL;
			}
			if (o->policy == P_CLASSIC && k + 1 < nb) {
				size_t s = (k + 1) * B, n = mine - s < B ? mine - s : B;
				prep_batch(&ws, nxt, idx + s, n);
			}
			if (lead)
				app_progress_update(&pr, done * (size_t)(ws.sp.gnodes * jb->T), loss / (2.0 * (double)done));
		}
		for (size_t k = nb; k < nclocks; k++)
			clock_tick(w, jb); /* as many clocks as the busiest worker */
		ps_key mk = (ps_key)e, ck = count_key(jb, g);
		float m[8] = {(float)loss, (float)(2 * done), 0, 0, 0, 0, 0, 0};
		check(ps_push_sync(jb->M, &mk, 1, m), "push of the loss");
		trained_all += done;
		float cm[8] = {0};
		count_put(cm, done);
		count_put(cm + 2, trained_all);
		check(ps_assign_sync(jb->M, &ck, 1, cm), "push of the counts");
		check(ps_barrier(w), "barrier");
		/* A diverged model (loss inf or NaN: --lr too large) cannot come
		 * back: every worker reads the same total and all stop here,
		 * after the same barriers; main reports it. */
		check(ps_pull_sync(jb->M, &mk, 1, m), "pull of the loss");
		if (!isfinite(m[0])) {
			diverged = true;
			if (tid == 0)
				jb->diverged_epoch = e + 1;
			if (lead)
				app_diverged((int)e + 1, "loss", o->lr);
			break;
		}
		t_train += app_now() - t0;
		cpu_train += app_cpu_now() - c0;
		if (lead)
			app_epoch_counts_read(&jb->ecounts, w, e, alive, jb->M, count_key(jb, 0), jb->nodes * jb->T, 8,
					      jb->ch);
		char extra[128] = "";
		bool ev = o->eval_every > 0 && (e + 1) % o->eval_every == 0 && e + 1 < o->epochs;
		if (ev) {
			ps_key vk = (ps_key)(o->epochs + e);
			eval_round(&ws, w, tid, jb->valid, jb->nvalid, vk);
			double mrr, h1, h3, h10;
			read_metrics(jb, vk, &mrr, &h1, &h3, &h10);
			snprintf(extra, sizeof extra, "valid MRR %.4f Hits@10 %.4f", mrr, h10);
		}
		if (lead) {
			check(ps_pull_sync(jb->M, &mk, 1, m), "pull of the loss");
			jb->last_loss = m[0] / (m[1] > 0 ? m[1] : 1);
			app_progress_end(&pr, jb->ntrain, jb->last_loss, ev ? extra : NULL);
		}
		if (tid == 0) /* every push of the epoch is in; the others wait below */
			app_epoch_checkpoints(w, o->ckpt, (int)o->ckpt_every, (int)e + 1, (int)o->epochs);
		/* the membership point: a barrier (on one host only that); hosts
		 * lost since the last one are gone from the set, joiners added,
		 * and a host asked to leave gets 0 here */
		long next = e + 1;
		if (membership(w, jb, &next, &ws.sp, alive) == 0) {
			left = true;
			if (lead)
				jb->left_epoch = e + 2;
			break;
		}
		if (ws.sp.changed) { /* from the next epoch on: the new split */
			take_share(jb, &ws.sp, tid, &idx, &mine, &nclocks);
			if (lead)
				app_members_print(&jb->mem, e + 1);
		}
	}
	if (lead) {
		jb->train_secs = t_train;
		jb->train_cpu = cpu_train;
	}
	ps_key tk = (ps_key)(o->epochs + o->epochs + 1);
	if (left) { /* this host leaves: no collective any more; the others
		     * learn it left (not lost) from its mark */
		if (jb->node == 0 && tid == 0) {
			float m[8] = {1};
			ps_key k = left_key(jb, jb->host);
			check(ps_assign_sync(jb->M, &k, 1, m), "push of the left mark");
		}
		if (lead)
			jb->mrr = jb->h1 = jb->h3 = jb->h10 = NAN;
	} else if (!diverged) { /* every worker of every node decided alike */
		eval_round(&ws, w, tid, jb->test, jb->ntest, tk);
		if (lead) {
			read_metrics(jb, tk, &jb->mrr, &jb->h1, &jb->h3, &jb->h10);
			read_counts(jb); /* every worker assigned its last count before the barriers */
			app_members_read_left(&jb->mem, jb->M, left_key(jb, 0), 8, jb->ch);
			jb->save_here = ws.sp.gnode == 0;
		}
	} else {
		check(ps_barrier(w), "barrier"); /* nobody exits before node 0 said why */
	}

	end_sampler(&ws);
	free(idx);
	free(alive);
	for (int k = 0; k < 2; k++) {
		free(ws.b[k].hi);
		free(ws.b[k].ti);
		free(ws.b[k].ri);
		free(ws.b[k].rv);
		free(ws.b[k].ents);
		free(ws.b[k].rels);
	}
	free(ws.estamp);
	free(ws.epos);
	free(ws.rstamp);
	free(ws.rpos);
	free(ws.rowsE);
	free(ws.rowsR);
	free(ws.Q);
	free(ws.dQ);
	free(ws.S);
	free(ws.gE);
	free(ws.gR);
	free(ws.push);
}

/* ---------------------------------------------------------------- save */

static void save_model(const struct job *jb, const char *path)
{
	size_t plen = strlen(path) + 16;
	char *tmp = xcalloc(plen, 1);
	snprintf(tmp, plen, "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		app_die("%s: cannot create: %s", tmp, strerror(errno));
	fprintf(f, "# kge model %s dim %zu entities %zu relations %zu\n", model_names[jb->o.model], jb->D, jb->nE,
		jb->nR);
	fprintf(f, "# lines: kind<TAB>name<TAB>values; kinds: entity, relation, reciprocal (the inverse relation)\n");
	for (size_t e = 0; e < jb->nE; e++) {
		fprintf(f, "entity\t%s\t", app_idmap_name(jb->ents, (int64_t)e));
		for (size_t k = 0; k < jb->D; k++)
			fprintf(f, k ? " %.9g" : "%.9g", jb->allE[e * jb->D + k]);
		fputc('\n', f);
	}
	for (size_t r = 0; r < 2 * jb->nR; r++) {
		fprintf(f, "%s\t%s\t", r < jb->nR ? "relation" : "reciprocal",
			app_idmap_name(jb->rels, (int64_t)(r % jb->nR)));
		for (size_t k = 0; k < jb->RD; k++)
			fprintf(f, k ? " %.9g" : "%.9g", jb->allR[r * jb->RD + k]);
		fputc('\n', f);
	}
	if (fflush(f) != 0 || ferror(f) || fclose(f) != 0)
		app_die("%s: write failed: %s", tmp, strerror(errno));
	if (rename(tmp, path) != 0)
		app_die("%s: cannot rename to %s: %s", tmp, path, strerror(errno));
	free(tmp);
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kge --dataset DIR [options]            (one node)\n"
		"       psrun -n N kge --dataset DIR [options] (N nodes)\n"
		"\n"
		"Knowledge-graph embeddings trained on psmem, evaluated by filtered link\n"
		"prediction (MRR, Hits@1/3/10 over the heads and tails of test.txt).\n"
		"\n"
		"  --dataset DIR      folder with train.txt, valid.txt, test.txt, one triple per\n"
		"                     line: head<TAB>relation<TAB>tail (plain or gzip; NAME.gz\n"
		"                     is read when NAME is absent); blank lines are ignored; a\n"
		"                     first line naming the columns (head/subject/h, relation/\n"
		"                     predicate/r, tail/object/t, ...) is skipped with a note;\n"
		"                     valid/test triples whose entity or relation is not in\n"
		"                     train.txt are skipped and counted (required)\n"
		"  --model M          complex, distmult or rescal (default: complex)\n"
		"  --dim D            floats per entity; complex: D/2 real + D/2 imaginary parts,\n"
		"                     D even; rescal relations are D x D (default: 256)\n"
		"  --optimizer O      sgd or adagrad (default: adagrad)\n"
		"  --lr X             learning rate (default: 0.1)\n"
		"  --reg X            weight of the embedding penalty (default: 0.05)\n"
		"  --regularizer R    n3 (sum of |x|^3, complex moduli for complex) or l2\n"
		"                     (default: n3)\n"
		"  --init X           std. deviation of the normal initial values (default: 0.001)\n"
		"  --neg N            entities drawn uniformly per batch as extra candidates: with\n"
		"                     the batch's own heads and tails they are the corrupted heads\n"
		"                     and tails of every positive of the batch, scored with a\n"
		"                     softmax cross-entropy (default: 256)\n"
		"  --batch B          triples per mini-batch (default: 256)\n"
		"  --epochs N         passes over train.txt (default: 10)\n"
		"  --threads T        worker threads per node; 0: psrun's -t, or 1 alone\n"
		"                     (default: 0)\n"
		"  --policy P         classic: rows stay on the node that created them;\n"
		"                     localize: each worker localizes the entities of its next\n"
		"                     batch while it computes the current one; relations (few,\n"
		"                     used by every batch) are never moved (default: classic)\n"
		"  --rule R           sum: the worker runs --optimizer and pushes the steps, which\n"
		"                     are added; sgd or adagrad: the tables' server-side update\n"
		"                     rule is the optimizer (lr --lr; adagrad accumulators are\n"
		"                     the rule's state) and workers push gradients (default: sum)\n"
		"  --sync M           bound the workers' progress: bsp, ssp:S (at most S clocks\n"
		"                     ahead of the slowest) or asp; one clock per batch\n"
		"                     (default: no clocks)\n"
		"  --seed S           seed of initialisation, shuffling and negatives; one thread\n"
		"                     on one node is deterministic, more threads or nodes are not\n"
		"                     (update order) (default: 1)\n"
		"  --eval-every K     filtered valid MRR every K epochs, 0 = never (default: 0)\n"
		"  --json FILE        write a JSON summary (app, policy, nodes, threads, epochs,\n"
		"                     seconds, throughput, mrr, hits1, hits3, hits10, and the\n"
		"                     triples trained per epoch: by this host's nodes\n"
		"                     (triples_per_epoch, triples_per_epoch_nodeN) and by the\n"
		"                     whole job, ...); - = stdout; on several hosts host 0\n"
		"                     writes FILE, host R FILE.hostR (default: none)\n"
		"  --save FILE        write the embeddings as text, with their string ids\n"
		"                     (default: none)\n"
		"  --replicate K      replicate the K relation rows (relations and reciprocals)\n"
		"                     used by the most training triples on every node (hot-spot\n"
		"                     replication; 0 = none) (default: 0)\n"
		"  --repl-rate HZ     replica sync rounds per second per node (default: 20)\n"
		"  --sampling S       draw the --neg entities through psmem's sampling, uniform:\n"
		"                     naive (exact draws), local (only entities on this node),\n"
		"                     pool[:U] (--neg entities moved here, reused by U batches;\n"
		"                     U 8); absent: the app's own draws (default: absent)\n"
		"  --checkpoint FILE  write a checkpoint of the tables (psmem format) after the\n"
		"                     last epoch, and every K epochs with --checkpoint-every\n"
		"                     (default: none)\n"
		"  --checkpoint-every K\n"
		"                     checkpoint every K epochs (default: only after the last)\n"
		"  --resume FILE      start from a checkpoint: its tables, and the epoch after\n"
		"                     the last one it holds (--epochs counts them all); same\n"
		"                     dataset, model, dim and optimizer (default: psrun\n"
		"                     --restore's file, else none)\n"
		"  --help             print this help and exit\n"
		"  --version          print the version and exit\n"
		"\n"
		"Relations are trained with reciprocals (r' predicts heads). Only node 0\n"
		"prints and writes files (on several hosts: each host's node 0 prints and\n"
		"writes its --json, host 0's writes --save); the hosts split the training\n"
		"triples. seconds/throughput count training, not evaluation.\n"
		"Hosts lost (psrun --on-host-failure continue), joining (psrun --join) or\n"
		"leaving: at each epoch's end the triples are split again over the hosts\n"
		"present, from the next epoch on (a lost host's unfinished part of the epoch\n"
		"it died in is not trained again); --json records hosts_lost, hosts_joined,\n"
		"hosts_left with their epochs and epoch_host_triples (per epoch and host;\n"
		"-1: lost during that epoch).\n"
		"psstat --checkpoint FILE asks a running kge for a checkpoint at the end of\n"
		"the current epoch.  kge does not resume a restarted node (psrun\n"
		"--on-failure restart): use --checkpoint-every and --resume.\n");
}

/* The server-side rule of the embedding tables (--rule). */
static void set_rule(const struct opts *o, ps_table_opts *to)
{
	if (o->rule == RULE_SUM)
		return;
	to->rule = o->rule == RULE_SGD ? PS_RULE_SGD : PS_RULE_ADAGRAD;
	to->rule_params[0] = (float)o->lr;
	if (o->rule == RULE_ADAGRAD)
		to->rule_params[1] = ADAGRAD_EPS;
}

static int pick(const char *opt, const char *val, const char *const *names, int n)
{
	for (int i = 0; i < n; i++)
		if (strcmp(val, names[i]) == 0)
			return i;
	char list[256] = "";
	for (int i = 0; i < n; i++)
		snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", names[i]);
	app_die("%s: '%s' is not one of %s", opt, app_clip(val), list);
}

int main(int argc, char **argv)
{
	app_init("kge");
	static struct job job;
	struct job *jb = &job;
	struct opts *o = &jb->o;
	*o = (struct opts){.model = M_COMPLEX, .optimizer = O_ADAGRAD, .policy = P_CLASSIC, .regularizer = R_N3,
			   .dim = 256, .neg = 256, .batch = 256, .epochs = 10, .threads = 0, .eval_every = 0,
			   .lr = 0.1, .reg = 0.05, .init = 0.001, .seed = 1, .repl_rate = 20};
	app_sampling_off(&o->smp);
	static const char *const opt_names[] = {"sgd", "adagrad"}, *const pol_names[] = {"classic", "localize"},
				 *const reg_names[] = {"n3", "l2"};
	enum { O_DATASET = 256, O_MODEL, O_DIM, O_OPT, O_LR, O_REG, O_REGZ, O_INIT, O_NEG, O_BATCH, O_EPOCHS,
	       O_THREADS, O_POLICY, O_SEED, O_EVAL, O_JSON, O_SAVE, O_RULE, O_SYNC, O_REPL, O_REPL_RATE, O_SAMPLING, O_CKPT, O_CKPT_EVERY, O_RESUME };
	static const struct option lopts[] = {
		{"dataset", 1, 0, O_DATASET}, {"model", 1, 0, O_MODEL},	  {"dim", 1, 0, O_DIM},
		{"optimizer", 1, 0, O_OPT},   {"lr", 1, 0, O_LR},	  {"reg", 1, 0, O_REG},
		{"regularizer", 1, 0, O_REGZ}, {"init", 1, 0, O_INIT},	  {"neg", 1, 0, O_NEG},
		{"batch", 1, 0, O_BATCH},     {"epochs", 1, 0, O_EPOCHS}, {"threads", 1, 0, O_THREADS},
		{"policy", 1, 0, O_POLICY},   {"seed", 1, 0, O_SEED},	  {"eval-every", 1, 0, O_EVAL},
		{"json", 1, 0, O_JSON},	      {"save", 1, 0, O_SAVE},	  {"help", 0, 0, 'h'},
		{"rule", 1, 0, O_RULE}, {"sync", 1, 0, O_SYNC}, {"replicate", 1, 0, O_REPL},
		{"repl-rate", 1, 0, O_REPL_RATE}, {"sampling", 1, 0, O_SAMPLING},
		{"rule", 1, 0, O_RULE},	      {"sync", 1, 0, O_SYNC},
		{"checkpoint", 1, 0, O_CKPT}, {"checkpoint-every", 1, 0, O_CKPT_EVERY}, {"resume", 1, 0, O_RESUME},
		{"version", 0, 0, APP_OPT_VERSION}, {0, 0, 0, 0}};
	bool optimizer_given = false;
	int c;
	while ((c = app_getopt(argc, argv, "h", lopts, NULL, false)) != -1) {
		switch (c) {
		case O_DATASET: o->dataset = optarg; break;
		case O_MODEL: o->model = pick("--model", optarg, model_names, 3); break;
		case O_DIM: o->dim = app_opt_long("--dim", optarg, 1, 4096); break;
		case O_OPT:
			o->optimizer = pick("--optimizer", optarg, opt_names, 2);
			optimizer_given = true;
			break;
		case O_RULE: o->rule = pick("--rule", optarg, rule_names, 3); break;
		case O_SYNC: {
			char why[160];
			if (ps_clock_parse(optarg, &o->sync_mode, &o->staleness, why, sizeof why))
				app_die("--sync: %s", why);
			o->sync = optarg;
			break;
		}
		case O_LR: o->lr = app_opt_double("--lr", optarg, 0, 1e6); break;
		case O_REG: o->reg = app_opt_double("--reg", optarg, 0, 1e6); break;
		case O_REGZ: o->regularizer = pick("--regularizer", optarg, reg_names, 2); break;
		case O_INIT: o->init = app_opt_double("--init", optarg, 0, 1e3); break;
		case O_NEG: o->neg = app_opt_long("--neg", optarg, 0, 1 << 20); break;
		case O_BATCH: o->batch = app_opt_long("--batch", optarg, 1, 1 << 16); break;
		case O_EPOCHS: o->epochs = app_opt_long("--epochs", optarg, 1, 1 << 20); break;
		case O_THREADS: o->threads = app_opt_long("--threads", optarg, 0, 1024); break;
		case O_POLICY: o->policy = pick("--policy", optarg, pol_names, 2); break;
		case O_SEED: o->seed = (uint64_t)app_opt_long("--seed", optarg, 0, INT64_MAX); break;
		case O_EVAL: o->eval_every = app_opt_long("--eval-every", optarg, 0, 1 << 20); break;
		case O_JSON: o->json = optarg; break;
		case O_SAVE: o->save = optarg; break;
		case O_REPL: o->replicate = app_opt_long("--replicate", optarg, 0, INT32_MAX); break;
		case O_REPL_RATE: o->repl_rate = app_opt_double("--repl-rate", optarg, 0, 10000); break;
		case O_SAMPLING: app_opt_sampling("--sampling", optarg, &o->smp); break;
		case O_CKPT: o->ckpt = optarg; break;
		case O_CKPT_EVERY: o->ckpt_every = app_opt_long("--checkpoint-every", optarg, 1, 1 << 20); break;
		case O_RESUME: o->resume = optarg; break;
		case 'h': usage(stdout); return 0;
		default: app_usage_error("unknown option '%s'", app_clip(argv[optind - 1]));
		}
	}
	if (optind < argc)
		app_usage_error("unexpected argument '%s'", app_clip(argv[optind]));
	if (!o->dataset)
		app_die("--dataset DIR is required (see --help)");
	if (o->rule != RULE_SUM) { /* the rule is the optimizer */
		int opt = o->rule == RULE_SGD ? O_SGD : O_ADAGRAD;
		if (optimizer_given && o->optimizer != opt)
			app_die("--rule %s conflicts with --optimizer %s", rule_names[o->rule], opt_names[o->optimizer]);
		o->optimizer = opt;
	}
	if (o->ckpt_every && !o->ckpt)
		app_die("--checkpoint-every needs --checkpoint FILE");
	/* an output that cannot be written fails now, not after the training */
	app_check_writable("--json", o->json);
	app_check_writable("--save", o->save);
	app_check_writable("--checkpoint", o->ckpt);
	if (o->model == M_COMPLEX && o->dim % 2)
		app_die("--dim: %ld must be even for complex (real and imaginary halves)", o->dim);
	if (o->model == M_RESCAL && o->dim > 512)
		app_die("--dim: %ld is too large for rescal (relations are dim x dim; at most 512)", o->dim);
	struct stat st;
	if (stat(o->dataset, &st) != 0)
		app_die("%s: cannot open dataset directory: %s", o->dataset, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		app_die("%s: not a directory (--dataset wants a folder with train.txt, valid.txt, test.txt)",
			o->dataset);

	int err;
	ps_world *w = ps_init_threads((int)o->threads, &err);
	if (!w)
		app_die("cannot join the job: %s", ps_strerror(err));
	if (o->sync)
		check(ps_set_consistency(w, o->sync_mode, o->staleness), "--sync");
	jb->nodes = ps_num_nodes(w);
	jb->node = ps_node_id(w);
	jb->T = ps_num_threads(w);
	jb->host = ps_host_id(w);
	jb->hosts = ps_num_hosts(w);
	jb->gnode = app_gnode(w);
	jb->gnodes = app_gnodes(w);
	jb->joined = ps_joined(w) == 1;
	jb->ch = app_count_hosts(w);
	bool lead = jb->node == 0;
	if (ps_restarted(w))
		app_die("node %d was restarted, which kge does not support (psrun --on-failure abort; "
			"--checkpoint-every and --resume instead)", jb->node);

	double t_load = app_now();
	jb->ents = app_idmap_new();
	jb->rels = app_idmap_new();
	jb->train = read_triples(jb, o->dataset, "train.txt", true, &jb->ntrain);
	jb->valid = read_triples(jb, o->dataset, "valid.txt", false, &jb->nvalid);
	jb->test = read_triples(jb, o->dataset, "test.txt", false, &jb->ntest);
	jb->nE = app_idmap_size(jb->ents);
	jb->nR = app_idmap_size(jb->rels);
	if (jb->ntrain > UINT32_MAX)
		app_die("%s/train.txt: more than 2^32 triples", o->dataset);
	build_filter(jb);
	if (o->replicate > 0 && (size_t)o->replicate > 2 * jb->nR)
		app_die("--replicate: %ld relation rows, but the data has only %zu (%zu relations and their "
			"reciprocals)", o->replicate, 2 * jb->nR, jb->nR);
	jb->rcount = xcalloc(2 * jb->nR, sizeof *jb->rcount);
	for (size_t i = 0; i < jb->ntrain; i++) { /* a triple uses its relation and the reciprocal */
		jb->rcount[jb->train[3 * i + 1]]++;
		jb->rcount[(size_t)jb->train[3 * i + 1] + jb->nR]++;
	}
	jb->perm = xcalloc(jb->ntrain, sizeof *jb->perm);
	for (size_t i = 0; i < jb->ntrain; i++)
		jb->perm[i] = (uint32_t)i;
	uint64_t rs = o->seed ^ 0x5bd1e995ULL;
	for (size_t i = jb->ntrain; i > 1; i--) {
		size_t j = app_rand(&rs) % i;
		uint32_t t = jb->perm[i - 1];
		jb->perm[i - 1] = jb->perm[j];
		jb->perm[j] = t;
	}
	jb->D = (size_t)o->dim;
	jb->RD = o->model == M_RESCAL ? jb->D * jb->D : jb->D;
	/* client-side Adagrad keeps its accumulator in the row; a server-side
	 * rule keeps it as the slot's state */
	size_t rows = o->optimizer == O_ADAGRAD && o->rule == RULE_SUM ? 2 : 1;
	jb->se = rows * jb->D;
	jb->sr = rows * jb->RD;
	char hosts_note[64] = "";
	if (jb->hosts > 1)
		snprintf(hosts_note, sizeof hosts_note, " on each of %d hosts (this one host %d)", jb->hosts, jb->host);
	if (lead)
		printf("kge: %zu entities, %zu relations; %zu train, %zu valid, %zu test triples (loaded in %.1f s)\n"
		       "kge: %s dim %zu, %s lr %g, %s reg %g, batch %ld, neg %ld, policy %s, %d node(s) x %d "
		       "thread(s)%s, replicate %ld, sampling %s%s%s%s%s\n",
		       jb->nE, jb->nR, jb->ntrain, jb->nvalid, jb->ntest, app_now() - t_load, model_names[o->model],
		       jb->D, opt_names[o->optimizer], o->lr, reg_names[o->regularizer], o->reg, o->batch, o->neg,
		       pol_names[o->policy], jb->nodes, jb->T, hosts_note, o->replicate, o->smp.name,
		       o->rule ? ", server-side rule " : "", o->rule ? rule_names[o->rule] : "", o->sync ? ", sync " : "",
		       o->sync ? o->sync : "");
	fflush(stdout);

	ps_table_opts to;
	ps_table_opts_init(&to, jb->nE, (uint32_t)jb->se);
	to.init = PS_INIT_ZERO; /* the workers write the initial values */
	set_rule(o, &to);
	jb->E = ps_table_create(w, &to, &err);
	if (!jb->E)
		app_die("cannot create the entity table: %s", ps_strerror(err));
	if (jb->sr > 65536)
		app_die("--dim: relation rows of %zu floats exceed psmem's 65536", jb->sr);
	app_sampling_apply(jb->E, &o->smp);
	ps_table_opts_init(&to, 2 * jb->nR, (uint32_t)jb->sr);
	to.init = PS_INIT_ZERO;
	set_rule(o, &to);
	to.repl_max = (uint32_t)o->replicate;
	to.repl_rate = o->repl_rate;
	jb->R = ps_table_create(w, &to, &err);
	if (!jb->R)
		app_die("cannot create the relation table: %s", ps_strerror(err));
	/* metrics: loss of epoch e at key e; evaluation k at key epochs + k;
	 * worker g's triple counts at count_key(g), for app_count_hosts hosts
	 * (joiners included); host h's left mark at left_key(h), its vote at
	 * vote_key(h) */
	ps_table_opts_init(&to, 2 * (uint64_t)o->epochs + 2 + (uint64_t)jb->ch * (uint64_t)jb->nodes * (uint64_t)jb->T +
					2 * (uint64_t)jb->ch, 8);
	to.flags = PS_TRANSIENT; /* not in checkpoints: --epochs may change on --resume */
	jb->M = ps_table_create(w, &to, &err);
	if (!jb->M)
		app_die("cannot create the metrics table: %s", ps_strerror(err));
	jb->start_epoch = jb->joined ? 0 : app_resume(w, o->resume); /* a joiner: the others' epoch, later */
	if (jb->start_epoch >= o->epochs && o->epochs > 0)
		app_die("cannot resume: the checkpoint has %ld epochs done; --epochs %ld leaves none to train",
			jb->start_epoch, o->epochs);
	if (lead && jb->start_epoch)
		printf("kge: resumed after epoch %ld\n", jb->start_epoch);
	app_members_init(&jb->mem, w, jb->start_epoch);
	jb->votes = (struct app_votes){.t = jb->M, .base = vote_key(jb, 0), .vlen = 8};
	app_epoch_counts_init(&jb->ecounts, o->epochs, jb->mem.seen); /* columns: hosts present (grows as they join) */
	jb->trained_last = xcalloc((size_t)jb->gnodes, sizeof *jb->trained_last);
	jb->trained_all = xcalloc((size_t)jb->gnodes, sizeof *jb->trained_all);
	jb->allE = xcalloc(jb->nE * jb->D, sizeof(float));
	jb->allR = xcalloc(2 * jb->nR * jb->RD, sizeof(float));

	if (pthread_barrier_init(&jb->local, NULL, (unsigned)jb->T) != 0)
		app_die("pthread_barrier_init: %s", strerror(errno));
	blas_init();
	int rc = ps_run_workers(w, worker, jb);
	pthread_barrier_destroy(&jb->local);
	if (rc)
		app_die("workers failed: %s", ps_strerror(rc));
	if (jb->diverged_epoch) { /* node 0 said it; nothing is written */
		ps_finalize(w);
		return 1;
	}
	if (lead) {
		double secs = jb->train_secs,
		       thr = secs > 0 ? (double)jb->ntrain * (double)(o->epochs - jb->first_epoch) / secs : 0;
		ps_node_stats nst = {0};
		double local = 0;
		if (ps_stats(w, 0, &nst) == 0 && nst.local_keys + nst.remote_keys > 0)
			local = (double)nst.local_keys / (double)(nst.local_keys + nst.remote_keys);
		double repl = app_repl_share(w, 0);
		if (jb->left_epoch)
			printf("kge: host %d left the job before epoch %ld (asked to leave)\n", jb->host, jb->left_epoch);
		printf("kge: test filtered MRR %.4f  Hits@1 %.4f  Hits@3 %.4f  Hits@10 %.4f  |  %.1f s training, "
		       "%.0f triples/s, loss %.4f, node 0: %.0f%% local key accesses, %llu relocations, %.1f%% served "
		       "by replicas\n",
		       jb->mrr, jb->h1, jb->h3, jb->h10, secs, thr, jb->last_loss, 100 * local,
		       (unsigned long long)nst.relocations, 100 * repl);
		fflush(stdout);
		if (o->json) {
			app_json *j = app_json_new("kge");
			app_json_str(j, "policy", pol_names[o->policy]);
			app_json_int(j, "nodes", jb->nodes);
			app_json_int(j, "threads", jb->T);
			app_json_int(j, "epochs", o->epochs);
			app_json_num(j, "seconds", secs);
			app_json_num(j, "throughput", thr);
			app_json_num(j, "mrr", jb->mrr);
			app_json_num(j, "hits1", jb->h1);
			app_json_num(j, "hits3", jb->h3);
			app_json_num(j, "hits10", jb->h10);
			app_json_str(j, "model", model_names[o->model]);
			app_json_int(j, "dim", o->dim);
			app_json_str(j, "optimizer", opt_names[o->optimizer]);
			app_json_str(j, "rule", rule_names[o->rule]);
			app_json_str(j, "sync", o->sync ? o->sync : "none");
			app_json_num(j, "lr", o->lr);
			app_json_num(j, "reg", o->reg);
			app_json_int(j, "neg", o->neg);
			app_json_int(j, "batch", o->batch);
			app_json_num(j, "loss", jb->last_loss);
			app_json_int(j, "test_triples", (int64_t)jb->ntest);
			app_json_num(j, "local_share", local);
			app_json_int(j, "relocations", (int64_t)nst.relocations);
			app_json_int(j, "replicate", o->replicate);
			app_json_num(j, "repl_rate", o->repl_rate);
			app_json_num(j, "repl_share", repl);
			app_json_str(j, "sampling", o->smp.name);
			app_json_num(j, "train_cpu_seconds", jb->train_cpu);
			app_json_int(j, "samples", (int64_t)nst.samples);
			app_json_int(j, "sample_fallbacks", (int64_t)nst.sample_fallbacks);
			app_json_int(j, "train_triples", (int64_t)jb->ntrain);
			app_json_split(j, "triples", jb->host, jb->hosts, jb->nodes, jb->trained_last, jb->trained_all);
			app_members_json(j, &jb->mem);
			app_epoch_counts_json(j, "epoch_host_triples", &jb->ecounts, jb->mem.seen);
			app_json_int(j, "first_epoch", jb->first_epoch + 1);
			app_json_int(j, "left_epoch", jb->left_epoch);
			app_json_write_host(j, o->json, jb->host);
		}
		if (o->save && jb->save_here) /* one copy of the model: host 0's, or the first host left's */
			save_model(jb, o->save);
	}
	ps_finalize(w);
	free(jb->allE);
	free(jb->allR);
	free(jb->trained_last);
	free(jb->trained_all);
	app_epoch_counts_free(&jb->ecounts);
	app_members_destroy(&jb->mem);
	free(jb->perm);
	free(jb->rcount);
	free(jb->fkey);
	free(jb->fval);
	free(jb->train);
	free(jb->valid);
	free(jb->test);
	app_idmap_free(jb->ents);
	app_idmap_free(jb->rels);
	return 0;
}
