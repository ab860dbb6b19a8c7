/*
 * w2v - word vectors: skip-gram with negative sampling as in word2vec,
 * the input and output vectors kept in psmem tables.
 *
 *   w2v --train FILE [--eval-analogy questions-words.txt] [options]
 *   psrun -n N -t T build/apps/w2v --train FILE ...
 *
 * The corpus (plain or gzip) is whitespace-separated tokens, one sentence
 * per line or one huge line (text8); sentences longer than 1000 kept words
 * are cut, as word2vec does.  Every node reads the whole corpus and builds
 * the same vocabulary (min-count, sorted by frequency); app node n trains
 * on the n-th share of the tokens, its worker threads split that further
 * (app_gnode: node n of host h is h x nodes + n, so in a multi-host job the
 * shares tile the corpus over every node of every host and each word is
 * trained once per epoch; the random draws have a seed per worker of the
 * job; localize moves rows from another host as from another node).  Each
 * host's node 0 prints and writes its --json (host R > 0: FILE.hostR) with
 * the words its nodes trained per epoch; host 0's node 0 reads the vectors
 * for --eval-analogy and --save.  A
 * corpus with no line of two kept words (one word per line) is refused: it
 * has no pair to train.  A loss that turns inf or NaN (--lr too large)
 * stops the run after that epoch with exit status 1.
 *
 * A worker trains one batch (--batch tokens, default 40000) per step: it
 * subsamples the batch, draws every window shrink and every negative sample
 * up front, collects the distinct words it needs, pulls their input and
 * output rows with one ps_pull_sync each into a local cache, trains on the
 * cache exactly as word2vec's inner loop does, and pushes the deltas
 * (cache - pulled) with one ps_push_sync each.  Under --policy classic the
 * tables are PS_HOGWILD: like word2vec's threads, concurrent updates of a
 * row may race; under localize pushes take the slot lock (a lock-free add
 * racing a relocation could be lost).
 *
 * --policy classic: rows stay where they were created (hash placement).
 * --policy localize: a worker localizes the rows of its next batch (words
 * and negatives) asynchronously while it trains on the current one, and
 * waits for that before pulling them.
 *
 * --sync bsp|ssp:S|asp: every worker calls ps_clock after each batch and,
 * at the end of an epoch, as often as it takes to make as many clocks as
 * the worker with the most batches (no worker then waits on the bound for
 * one that sits in the epoch's barrier).  Default: no clocks.
 * --replicate K: the rows of the K most frequent words (input and output)
 * are replicated on every node (the hot spots: the frequent words are in
 * most windows and most negatives); the rest follows the policy.
 * --hot-table K: the rows of the K most frequent words (word ids 0..K-1:
 * the vocabulary is sorted by frequency) live in tables of their own,
 * every row replicated on every node of every host; the other words' rows
 * in tables without replicas, which --policy localize moves across hosts
 * (a table with replicas relocates only within a host).  Each batch's keys
 * are reordered hot first, so one pull and one push per table remain.
 * --stay-remote K: on several hosts, localize skips the rows of the K most
 * frequent words that another host holds (ps_owner): those words are in
 * every host's batches, and moving them to each host in turn costs more
 * than the remote pull and push of the batch's keys, which go out at once.
 * --sampling naive|local|pool[:U]: the negatives are drawn by psmem's
 * sampling over the output table's unigram^0.75 distribution (one sampler
 * per batch) instead of the app's own alias table.
 *
 * Hosts lost, joining, leaving (issue 16): each epoch ends with
 * ps_sync_hosts; the nodes agree on the hosts present (common.h,
 * app_members) and, when the set changed, take their token shares of the
 * split over the hosts present from the next epoch on.  A host lost during
 * an epoch: the rest of its share of that epoch is not trained again.  The
 * learning rate decays over the whole run: after a re-split it goes on
 * from where it was (take_share).  A joiner (ps_joined) meets the others'
 * next ps_sync_hosts and trains from the epoch it returns; a host whose
 * ps_sync_hosts returns 0 marks that it left and stops.  Each host's node
 * 0 records the words every host trained in every epoch (epoch_host_words
 * in --json).
 *
 * Nondeterminism: with one node and one thread, a run is a function of
 * --seed.  With more threads or nodes the interleaving of pushes varies.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <immintrin.h>

#include "common.h"
#include "psmem.h"

#define MAX_SENTENCE 1000 /* kept words per sentence, as word2vec */
#define EXP_TABLE 1000
#define MAX_EXP 6
#define ANALOGY_VOCAB 30000

enum policy { POL_CLASSIC, POL_LOCALIZE };

struct cfg {
	const char *train, *eval, *json, *save, *ckpt, *resume;
	bool save_binary;
	int dim, window, neg, min_count, epochs, threads, batch, ckpt_every;
	double sample, lr;
	enum policy policy;
	uint64_t seed;
	long replicate;     /* replicate the K most frequent words' rows; 0 = none */
	long hot;           /* --hot-table K: words 0..K-1 in their own replicated tables */
	long stay;          /* --stay-remote K: words < K another host holds are not localized */
	double repl_rate;   /* replica sync rounds per second */
	const char *sync;       /* NULL: no clocks */
	int sync_mode, staleness;
	struct app_sampling smp; /* negatives through psmem's sampling (smp.on) */
};

/* ------------------------------------------------------------ vocabulary */

struct corpus {
	int32_t *tok;       /* vocab ids; -1 marks the end of a line */
	size_t ntok;        /* entries of tok (words and markers) */
	uint64_t words;     /* in-vocabulary words (entries that are not -1) */
	int64_t V;
	char **word;        /* V names, by rank (most frequent first) */
	uint64_t *count;    /* V counts */
	app_idmap *names;   /* every token seen -> raw id */
	int32_t *rank_of;   /* raw id -> vocab rank, -1 if below min-count */
};

struct kv {
	uint64_t count;
	int64_t id;
};

static int cmp_count(const void *a, const void *b)
{
	const struct kv *x = a, *y = b;
	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* Line number of byte offset off (for error messages). */
static long line_of(const char *buf, size_t off)
{
	long n = 1;
	for (size_t i = 0; i < off; i++)
		n += buf[i] == '\n';
	return n;
}

static void load_corpus(const struct cfg *c, struct corpus *cp)
{
	size_t len;
	char *buf = app_slurp(c->train, &len);
	if (len == 0)
		app_die("%s: empty file", c->train);
	static bool space[256];
	space[' '] = space['\t'] = space['\n'] = space['\r'] = space['\v'] = space['\f'] = true;
	/* pass 1: raw ids, counts */
	size_t cap = len / 4 + 16, n = 0, ccap = 1 << 16;
	int32_t *tok = malloc(cap * sizeof *tok);
	uint64_t *cnt = calloc(ccap, sizeof *cnt);
	if (!tok || !cnt)
		app_die("out of memory");
	cp->names = app_idmap_new();
	bool line_has_words = false;
	size_t i = 0;
	while (i < len) {
		unsigned char ch = (unsigned char)buf[i];
		if (space[ch]) {
			if (ch == '\n' && line_has_words) {
				if (n == cap) {
					cap *= 2;
					if (!(tok = realloc(tok, cap * sizeof *tok)))
						app_die("out of memory");
				}
				tok[n++] = -1;
				line_has_words = false;
			}
			i++;
			continue;
		}
		size_t s = i;
		while (i < len && !space[(unsigned char)buf[i]]) {
			if (buf[i] == 0)
				app_die("%s:%ld: NUL byte: not a text corpus", c->train, line_of(buf, i));
			i++;
		}
		int64_t id = app_idmap_get(cp->names, buf + s, i - s, true);
		if (id > INT32_MAX - 1)
			app_die("%s: more than 2^31 distinct words", c->train);
		if ((size_t)id >= ccap) {
			cnt = realloc(cnt, 2 * ccap * sizeof *cnt);
			if (!cnt)
				app_die("out of memory");
			memset(cnt + ccap, 0, ccap * sizeof *cnt);
			ccap *= 2;
		}
		cnt[id]++;
		if (n == cap) {
			cap *= 2;
			if (!(tok = realloc(tok, cap * sizeof *tok)))
				app_die("out of memory");
		}
		tok[n++] = (int32_t)id;
		line_has_words = true;
	}
	free(buf);
	size_t nraw = app_idmap_size(cp->names);
	if (nraw == 0)
		app_die("%s: no words in the corpus (only whitespace)", c->train);
	/* vocabulary: count >= min-count, most frequent first */
	struct kv *kv = malloc(nraw * sizeof *kv);
	if (!kv)
		app_die("out of memory");
	size_t V = 0;
	for (size_t r = 0; r < nraw; r++)
		if (cnt[r] >= (uint64_t)c->min_count)
			kv[V++] = (struct kv){cnt[r], (int64_t)r};
	if (V == 0)
		app_die("%s: no word occurs at least %d times (--min-count); the corpus has %zu distinct words",
			c->train, c->min_count, nraw);
	qsort(kv, V, sizeof *kv, cmp_count);
	cp->V = (int64_t)V;
	cp->word = malloc(V * sizeof *cp->word);
	cp->count = malloc(V * sizeof *cp->count);
	cp->rank_of = malloc(nraw * sizeof *cp->rank_of);
	if (!cp->word || !cp->count || !cp->rank_of)
		app_die("out of memory");
	for (size_t r = 0; r < nraw; r++)
		cp->rank_of[r] = -1;
	for (size_t v = 0; v < V; v++) {
		cp->word[v] = (char *)app_idmap_name(cp->names, kv[v].id);
		cp->count[v] = kv[v].count;
		cp->rank_of[kv[v].id] = (int32_t)v;
	}
	free(kv);
	free(cnt);
	/* pass 2: map to ranks in place, dropping rare words (as word2vec) */
	size_t m = 0, run = 0, longest = 0; /* kept words in the current and the longest sentence */
	uint64_t words = 0;
	for (size_t k = 0; k < n; k++) {
		int32_t t = tok[k];
		if (t < 0) {
			if (m > 0 && tok[m - 1] >= 0)
				tok[m++] = -1;
			run = 0;
			continue;
		}
		int32_t r = cp->rank_of[t];
		if (r >= 0) {
			tok[m++] = r;
			words++;
			if (++run > longest)
				longest = run;
		}
	}
	/* Skip-gram learns a word from its neighbours on the same line: a
	 * corpus of one word per line (a word list, a vocabulary file) has no
	 * pair to train, and would "train" silently into random vectors. */
	if (longest < 2)
		app_die("%s: no line has two words or more%s: skip-gram learns from the words around a word on its "
			"line, so one word per line trains nothing (put each sentence, or the whole text, on one line)",
			c->train, c->min_count > 1 ? " (of those kept by --min-count)" : "");
	cp->tok = realloc(tok, (m ? m : 1) * sizeof *tok);
	cp->ntok = m;
	cp->words = words;
}

/* ---------------------------------------------------- negative sampling */

/* Walker's alias table over unigram^0.75: exact draws in O(1). */
struct alias {
	int64_t n;
	float *prob;
	int32_t *alias;
};

static void alias_build(struct alias *a, const uint64_t *count, int64_t V)
{
	a->n = V;
	a->prob = malloc((size_t)V * sizeof *a->prob);
	a->alias = malloc((size_t)V * sizeof *a->alias);
	double *p = malloc((size_t)V * sizeof *p);
	int32_t *small = malloc((size_t)V * sizeof *small), *large = malloc((size_t)V * sizeof *large);
	if (!a->prob || !a->alias || !p || !small || !large)
		app_die("out of memory");
	double z = 0;
	for (int64_t v = 0; v < V; v++)
		z += pow((double)count[v], 0.75);
	int64_t ns = 0, nl = 0;
	for (int64_t v = 0; v < V; v++) {
		p[v] = pow((double)count[v], 0.75) / z * (double)V;
		if (p[v] < 1.0)
			small[ns++] = (int32_t)v;
		else
			large[nl++] = (int32_t)v;
	}
	while (ns && nl) {
		int32_t s = small[--ns], l = large[nl - 1];
		a->prob[s] = (float)p[s];
		a->alias[s] = l;
		p[l] -= 1.0 - p[s];
		if (p[l] < 1.0) {
			nl--;
			small[ns++] = l;
		}
	}
	while (nl) {
		int32_t l = large[--nl];
		a->prob[l] = 1.0f;
		a->alias[l] = l;
	}
	while (ns) {
		int32_t s = small[--ns];
		a->prob[s] = 1.0f;
		a->alias[s] = s;
	}
	free(p);
	free(small);
	free(large);
}

static inline int32_t alias_draw(const struct alias *a, uint64_t *rng)
{
	uint64_t r = app_rand(rng);
	int32_t i = (int32_t)(((r & 0xffffffffULL) * (uint64_t)a->n) >> 32);
	float u = (float)(r >> 40) * 0x1.0p-24f;
	return u < a->prob[i] ? i : a->alias[i];
}

/* -------------------------------------------------------------- kernels */

struct tables {
	float sig[EXP_TABLE + 1];  /* sigmoid over [-MAX_EXP, MAX_EXP] */
	float lsig[EXP_TABLE + 1]; /* -log sigmoid, the same grid */
};

static void tables_init(struct tables *t)
{
	for (int i = 0; i <= EXP_TABLE; i++) {
		double x = (i / (double)EXP_TABLE * 2 - 1) * MAX_EXP;
		t->sig[i] = (float)(1.0 / (1.0 + exp(-x)));
		t->lsig[i] = (float)log1p(exp(-x));
	}
}

/*
 * One context word against its targets (tg[0] the centre word, label 1;
 * the rest negatives, label 0, skipped when equal to the centre), as in
 * word2vec: g = (label - sigmoid(l1.l2)) * alpha; neu1e += g l2;
 * l2 += g l1; finally l1 += neu1e.  Rows are dp floats, dp % 8 == 0.
 * Returns the loss of the pairs (-log sigmoid(+-f)).
 */
#define SGNS_BODY(DOT, AXPY2, ADD)                                                                   \
	float loss = 0;                                                                              \
	for (int k = 0; k < nt; k++) {                                                               \
		int32_t t = tg[k];                                                           \
		if (k > 0 && t == tg[0])                                                             \
			continue;                                                                    \
		float label = k == 0 ? 1.0f : 0.0f;                                                  \
		float *l2 = out + (size_t)t * (size_t)dp;                                            \
		float f = DOT(l1, l2, dp), g;                                                        \
		float sf = label > 0 ? f : -f; /* loss = -log sigmoid(sf) */                         \
		/* a NaN (a diverged model) fails both tests into the last branch: \
		 * never a table index, and the loss turns NaN for the epoch check */ \
		if (sf > MAX_EXP)                                                                    \
			;                                                                            \
		else if (sf >= -MAX_EXP)                                                             \
			loss += T->lsig[(int)((sf + MAX_EXP) * (EXP_TABLE / MAX_EXP / 2))];          \
		else                                                                                 \
			loss -= sf;                                                                  \
		if (f > MAX_EXP)                                                                     \
			g = (label - 1) * alpha;                                                     \
		else if (f >= -MAX_EXP)                                                              \
			g = (label - T->sig[(int)((f + MAX_EXP) * (EXP_TABLE / MAX_EXP / 2))]) * alpha; \
		else                                                                                 \
			g = label * alpha;                                                           \
		AXPY2(neu1e, l2, l1, g, dp);                                                         \
	}                                                                                            \
	ADD(l1, neu1e, dp);                                                                          \
	return loss;

static inline float dot_c(const float *a, const float *b, int n)
{
	float s[8] = {0};
	for (int i = 0; i < n; i += 8)
		for (int j = 0; j < 8; j++)
			s[j] += a[i + j] * b[i + j];
	return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* neu1e += g l2; l2 += g l1 */
static inline void axpy2_c(float *restrict e, float *restrict l2, const float *restrict l1, float g, int n)
{
	for (int i = 0; i < n; i++) {
		e[i] += g * l2[i];
		l2[i] += g * l1[i];
	}
}

static inline void add_c(float *restrict a, float *restrict b, int n)
{
	for (int i = 0; i < n; i++) {
		a[i] += b[i];
		b[i] = 0;
	}
}

static float sgns_c(const struct tables *T, float *l1, float *out, const int32_t *tg, int nt, int dp, float alpha,
		    float *neu1e)
{
	SGNS_BODY(dot_c, axpy2_c, add_c)
}

__attribute__((target("avx2,fma"))) static inline float dot_avx2(const float *a, const float *b, int n)
{
	__m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
	int i = 0;
	for (; i + 16 <= n; i += 16) {
		s0 = _mm256_fmadd_ps(_mm256_load_ps(a + i), _mm256_load_ps(b + i), s0);
		s1 = _mm256_fmadd_ps(_mm256_load_ps(a + i + 8), _mm256_load_ps(b + i + 8), s1);
	}
	if (i < n)
		s0 = _mm256_fmadd_ps(_mm256_load_ps(a + i), _mm256_load_ps(b + i), s0);
	s0 = _mm256_add_ps(s0, s1);
	__m128 h = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
	h = _mm_add_ps(h, _mm_movehl_ps(h, h));
	h = _mm_add_ss(h, _mm_movehdup_ps(h));
	return _mm_cvtss_f32(h);
}

__attribute__((target("avx2,fma"))) static inline void axpy2_avx2(float *restrict e, float *restrict l2,
								 const float *restrict l1, float g, int n)
{
	__m256 vg = _mm256_set1_ps(g);
	for (int i = 0; i < n; i += 8) {
		__m256 v2 = _mm256_load_ps(l2 + i);
		_mm256_store_ps(e + i, _mm256_fmadd_ps(vg, v2, _mm256_load_ps(e + i)));
		_mm256_store_ps(l2 + i, _mm256_fmadd_ps(vg, _mm256_load_ps(l1 + i), v2));
	}
}

__attribute__((target("avx2,fma"))) static inline void add_avx2(float *restrict a, float *restrict b, int n)
{
	for (int i = 0; i < n; i += 8) {
		_mm256_store_ps(a + i, _mm256_add_ps(_mm256_load_ps(a + i), _mm256_load_ps(b + i)));
		_mm256_store_ps(b + i, _mm256_setzero_ps());
	}
}

__attribute__((target("avx2,fma"))) static float sgns_avx2(const struct tables *T, float *l1, float *out,
							  const int32_t *tg, int nt, int dp, float alpha,
							  float *neu1e)
{
	SGNS_BODY(dot_avx2, axpy2_avx2, add_avx2)
}

typedef float (*sgns_fn)(const struct tables *, float *, float *, const int32_t *, int, int, float, float *);

/* ------------------------------------------------------------- training */

/* One batch, prepared ahead of training: kept words as cache indices,
 * window shrinks, negatives, the distinct keys of both tables. */
struct batch {
	size_t lo, hi;          /* token range */
	uint64_t words;         /* in-vocabulary tokens in the range */
	int nkept, nsent;
	int32_t *kin, *kout;    /* kept word -> row in the input / output cache */
	uint8_t *shrink;
	int32_t *sent;          /* sentence starts (nsent + 1 entries) */
	int32_t *tg;            /* per (word, context): centre + negatives */
	size_t ntg;
	ps_key *keys_in, *keys_out;
	int nin, nout;
	int hin, hout;          /* --hot-table: keys_in[0..hin) (keys_out[0..hout)) are hot */
	size_t cap_kin, cap_kout, cap_shrink, cap_sent, cap_keys_in, cap_tg, cap_out;
	ps_handle h_in, h_out;  /* localize requests in flight */
	ps_key *loc_in, *loc_out; /* --stay-remote: the keys localized */
	size_t cap_loc_in, cap_loc_out;
	ps_sampler *smp;        /* --sampling pool: serves the negatives at train */
};

struct job {
	struct cfg c;
	int start_epoch;        /* epochs done before this run (--resume) */
	struct corpus cp;
	struct alias al;        /* the app's own negative sampler */
	ps_dist *negd;          /* --sampling: unigram^0.75 over the output table */
	struct tables T;
	float *keep;            /* subsampling: keep probability per word */
	ps_table *in, *out, *M;
	ps_table *hin, *hout;   /* --hot-table: the hot words' rows (NULL without) */
	sgns_fn sgns;
	int dp;                 /* row stride in the cache (dim rounded to 8) */
	_Atomic uint64_t done;  /* words trained by this node, all epochs */
	uint64_t node_words;    /* words of this node's share, one epoch */
	int host, hosts;        /* this host, hosts of the job (1 on one host) */
	int nodes, gnode, gnodes; /* this host's nodes; this node among every node of every host */
	/* words trained per app node (app_gnode): in the last epoch of this run
	 * and in all its epochs; read by each host's node 0 after training */
	uint64_t *trained_last, *trained_all;
	double t_start, *epoch_end;
	int diverged_epoch;     /* set by each node's thread 0: the epoch whose loss was inf or NaN */
	double cpu_start, cpu_end; /* node 0's CPU seconds: training starts, ends */
	float *vectors;         /* host 0's node 0: all input vectors after training */
	int fail;
	/* hosts lost, joined, leaving (issue 16): the set each epoch is split
	 * over (the node's workers share it, common.h) */
	struct app_members mem;
	struct app_votes votes; /* several hosts: the keys that merge the nodes' views */
	int ch;                 /* count slots per host in M: app_count_hosts */
	struct app_epoch_counts ecounts; /* each host's node 0: words per epoch and host */
	bool joined;            /* ps_joined: started by psrun --join */
	int first_epoch;        /* node 0: the first epoch this host trained */
	int left_epoch;         /* node 0: 1 + the epoch this host left before, 0 none */
};

static void *xgrow(void *p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return p;
	size_t c = *cap ? *cap : 1024;
	while (c < need)
		c *= 2;
	p = realloc(p, c * elem);
	if (!p)
		app_die("out of memory");
	*cap = c;
	return p;
}

static void die_ps(const char *what, int rc)
{
	app_die("%s: %s", what, ps_strerror(rc));
}

struct wstate {
	struct job *jb;
	uint64_t rng;
	int32_t *map_in, *map_out;    /* word -> cache row, -1 when absent */
	float *cin, *cout;            /* caches, dp floats per row, 32-byte aligned */
	float *pin, *pout;            /* pulled values, dim floats per row */
	size_t cap_cin, cap_cout, cap_pin, cap_pout;
	float *neu1e;
	double loss;
	uint64_t pairs;
	int32_t *kept_words;
	size_t cap_kw;
	int32_t *perm;                /* --hot-table: old cache row -> new */
	ps_key *kscratch;             /* --hot-table: the keys before reordering */
	size_t cap_perm, cap_ks;
	int tid, nthreads;
	uint64_t nprep;               /* samplers prepared (their seeds) */
};

static float *grow_aligned(float *p, size_t *cap, size_t need)
{
	if (need <= *cap)
		return p;
	size_t c = *cap ? *cap : 4096;
	while (c < need)
		c *= 2;
	free(p);
	p = aligned_alloc(64, (c * sizeof(float) + 63) & ~(size_t)63);
	if (!p)
		app_die("out of memory");
	*cap = c;
	return p;
}

static inline int32_t map_key(int32_t *map, ps_key **keys, int *n, size_t *cap, int32_t w)
{
	int32_t r = map[w];
	if (r < 0) {
		*keys = xgrow(*keys, cap, (size_t)*n + 1, sizeof **keys);
		r = map[w] = (int32_t)(*n)++;
		(*keys)[r] = (ps_key)w;
	}
	return r;
}

/* Negative k (1..K) of every pair of b, in order, from b->smp: mapped to
 * cache rows through map (the rows exist: pool keys) or added to the
 * output keys (naive, local). */
static void fill_negatives(struct wstate *ws, struct batch *b, bool mapped, size_t *cap_out)
{
	enum { CH = 4096 };
	ps_key keys[CH];
	const int K = ws->jb->c.neg;
	const size_t np = b->ntg / (size_t)(K + 1), n = np * (size_t)K;
	size_t got = 0, used = 0, done = 0;
	for (size_t p = 0; p < np; p++)
		for (int k = 1; k <= K; k++) {
			if (used == got) {
				got = n - done < CH ? n - done : CH;
				int64_t rc = ps_sample_pull(b->smp, got, keys, NULL);
				if (rc < 0)
					die_ps("ps_sample_pull", (int)rc);
				done += got;
				used = 0;
			}
			int32_t w = (int32_t)keys[used++];
			b->tg[p * (size_t)(K + 1) + (size_t)k] =
				mapped ? ws->map_out[w] : map_key(ws->map_out, &b->keys_out, &b->nout, cap_out, w);
		}
}

/* Ends b's sampler: a pool that could not all move here (PS_EFULL) still
 * served current values, so only other errors stop the run. */
static void finish_sampler(struct batch *b)
{
	int rc = ps_sample_finish(b->smp);
	b->smp = NULL;
	if (rc && rc != PS_EFULL)
		die_ps("sampling", rc);
}

/*
 * --sampling: b's negatives from one sampler over the output table
 * (jb->negd), seeded per worker of the job and per batch (nprep * workers +
 * worker).  Keys only (values NULL): the batch pulls the
 * output rows once anyway.  naive and local: drawn now.  pool: the pool's
 * keys join the batch's output keys now (pulled, pushed and, under
 * localize, localized with it) while psmem localizes them; the order in
 * which they serve as negatives is drawn when the batch trains
 * (pool_negatives), a whole batch later, so that wait costs nothing.
 */
static void sample_negatives(struct wstate *ws, struct batch *b, size_t *cap_out)
{
	struct job *jb = ws->jb;
	const int K = jb->c.neg;
	size_t n = b->ntg / (size_t)(K + 1) * (size_t)K;
	/* every worker of every host its own seeds: psmem adds only the node
	 * id, which repeats on every host */
	uint64_t G = (uint64_t)jb->gnodes * (uint64_t)ws->nthreads,
		 g = (uint64_t)jb->gnode * (uint64_t)ws->nthreads + (uint64_t)ws->tid;
	uint64_t seed = ws->nprep++ * G + g;
	int err;
	b->smp = ps_sample_prepare(jb->out, n, jb->negd, seed, &err);
	if (!b->smp)
		die_ps("ps_sample_prepare", err);
	if (jb->c.smp.scheme == PS_SAMPLE_POOL) {
		ps_sample_info in;
		if ((err = ps_sample_info_get(b->smp, &in)) != 0)
			die_ps("ps_sample_info_get", err);
		for (size_t i = 0; i < in.pool_size; i++)
			map_key(ws->map_out, &b->keys_out, &b->nout, cap_out, (int32_t)in.pool[i]);
		return;
	}
	fill_negatives(ws, b, false, cap_out);
	finish_sampler(b);
}

/* --sampling pool: the negatives of b, now that its rows are cached. */
static void pool_negatives(struct wstate *ws, struct batch *b)
{
	for (int i = 0; i < b->nout; i++)
		ws->map_out[b->keys_out[i]] = i;
	fill_negatives(ws, b, true, NULL);
	for (int i = 0; i < b->nout; i++)
		ws->map_out[b->keys_out[i]] = -1;
	finish_sampler(b);
}

/* --hot-table: reorders the n keys (cache rows) so that the hot ones (word
 * < K) come first, keeping the order within each part, and renumbers the
 * rows in r1[0..n1) and r2[0..n2) to match.  Returns the hot keys' count. */
static int hot_first(struct wstate *ws, ps_key *keys, int n, int32_t *r1, size_t n1, int32_t *r2, size_t n2)
{
	const ps_key K = (ps_key)ws->jb->c.hot;
	int nh = 0;
	for (int i = 0; i < n; i++)
		nh += keys[i] < K;
	if (nh == 0 || nh == n)
		return nh;
	ws->perm = xgrow(ws->perm, &ws->cap_perm, (size_t)n, sizeof *ws->perm);
	ws->kscratch = xgrow(ws->kscratch, &ws->cap_ks, (size_t)n, sizeof *ws->kscratch);
	int32_t *perm = ws->perm;
	int h = 0, c = nh;
	for (int i = 0; i < n; i++)
		perm[i] = keys[i] < K ? h++ : c++;
	memcpy(ws->kscratch, keys, (size_t)n * sizeof *keys);
	for (int i = 0; i < n; i++)
		keys[perm[i]] = ws->kscratch[i];
	for (size_t i = 0; i < n1; i++)
		r1[i] = perm[r1[i]];
	for (size_t i = 0; i < n2; i++)
		r2[i] = perm[r2[i]];
	return nh;
}

/* Subsamples tokens [lo, hi), draws shrinks and negatives, maps words to
 * cache rows. */
static void prepare(struct wstate *ws, struct batch *b, size_t lo, size_t hi)
{
	struct job *jb = ws->jb;
	const struct cfg *c = &jb->c;
	const int32_t *tok = jb->cp.tok;
	b->lo = lo;
	b->hi = hi;
	b->words = 0;
	b->nkept = b->nsent = b->nin = b->nout = 0;
	b->ntg = 0;
	size_t n = hi - lo + 2;
	b->kin = xgrow(b->kin, &b->cap_kin, n, sizeof *b->kin);
	b->kout = xgrow(b->kout, &b->cap_kout, n, sizeof *b->kout);
	b->shrink = xgrow(b->shrink, &b->cap_shrink, n, sizeof *b->shrink);
	b->sent = xgrow(b->sent, &b->cap_sent, n, sizeof *b->sent);
	b->keys_in = xgrow(b->keys_in, &b->cap_keys_in, n, sizeof *b->keys_in);
	ws->kept_words = xgrow(ws->kept_words, &ws->cap_kw, n, sizeof *ws->kept_words);
	int32_t *kw = ws->kept_words;
	/* subsampling and sentences */
	int slen = 0;
	b->sent[0] = 0;
	for (size_t i = lo; i < hi; i++) {
		int32_t w = tok[i];
		if (w < 0) {
			if (slen) {
				b->sent[++b->nsent] = b->nkept;
				slen = 0;
			}
			continue;
		}
		b->words++;
		if (jb->keep[w] < 1.0f && (float)(app_rand(&ws->rng) >> 40) * 0x1.0p-24f >= jb->keep[w])
			continue;
		kw[b->nkept++] = w;
		if (++slen == MAX_SENTENCE) {
			b->sent[++b->nsent] = b->nkept;
			slen = 0;
		}
	}
	if (slen)
		b->sent[++b->nsent] = b->nkept;
	/* cache rows of the kept words */
	size_t cap_out = b->cap_out;
	for (int i = 0; i < b->nkept; i++) {
		int32_t w = kw[i];
		b->kin[i] = map_key(ws->map_in, &b->keys_in, &b->nin, &b->cap_keys_in, w);
		b->kout[i] = map_key(ws->map_out, &b->keys_out, &b->nout, &cap_out, w);
	}
	/* windows and negatives */
	const int W = c->window, K = c->neg;
	for (int s = 0; s < b->nsent; s++) {
		int s0 = b->sent[s], s1 = b->sent[s + 1];
		for (int i = s0; i < s1; i++) {
			int sh = (int)(app_rand(&ws->rng) % (uint64_t)W);
			b->shrink[i] = (uint8_t)sh;
			int a = i - (W - sh), e = i + (W - sh);
			if (a < s0)
				a = s0;
			if (e > s1 - 1)
				e = s1 - 1;
			size_t need = b->ntg + (size_t)(e - a) * (size_t)(K + 1);
			b->tg = xgrow(b->tg, &b->cap_tg, need, sizeof *b->tg);
			for (int j = a; j <= e; j++) {
				if (j == i)
					continue;
				int32_t *t = b->tg + b->ntg;
				t[0] = b->kout[i];
				for (int k = 1; k <= K && !c->smp.on; k++)
					t[k] = map_key(ws->map_out, &b->keys_out, &b->nout, &cap_out,
						       alias_draw(&jb->al, &ws->rng));
				b->ntg += (size_t)K + 1;
			}
		}
	}
	if (c->smp.on && K > 0 && b->ntg > 0)
		sample_negatives(ws, b, &cap_out);
	b->cap_out = cap_out;
	b->hin = b->hout = 0;
	if (jb->hin) {
		b->hin = hot_first(ws, b->keys_in, b->nin, b->kin, (size_t)b->nkept, NULL, 0);
		b->hout = hot_first(ws, b->keys_out, b->nout, b->kout, (size_t)b->nkept, b->tg, b->ntg);
	}
	for (int i = 0; i < b->nin; i++)
		ws->map_in[b->keys_in[i]] = -1;
	for (int i = 0; i < b->nout; i++)
		ws->map_out[b->keys_out[i]] = -1;
}

/* --stay-remote K: keys[0..n) less the words < K that another host holds
 * now, into *out; their count. */
static size_t stay_filter(ps_table *t, long K, const ps_key *keys, int n, ps_key **out, size_t *cap)
{
	*out = xgrow(*out, cap, (size_t)n + 1, sizeof **out);
	size_t m = 0;
	for (int i = 0; i < n; i++)
		if (keys[i] >= (ps_key)K || ps_owner(t, keys[i]) != -EREMOTE)
			(*out)[m++] = keys[i];
	return m;
}

static void localize_start(struct job *jb, struct batch *b)
{
	/* --hot-table: the hot rows are replicated; only the others move */
	const ps_key *ki = b->keys_in + b->hin, *ko = b->keys_out + b->hout;
	size_t ni = (size_t)(b->nin - b->hin), no = (size_t)(b->nout - b->hout);
	if (jb->c.stay && jb->hosts > 1) {
		ni = stay_filter(jb->in, jb->c.stay, ki, (int)ni, &b->loc_in, &b->cap_loc_in);
		no = stay_filter(jb->out, jb->c.stay, ko, (int)no, &b->loc_out, &b->cap_loc_out);
		ki = b->loc_in;
		ko = b->loc_out;
	}
	b->h_in = ps_localize(jb->in, ki, ni);
	b->h_out = ps_localize(jb->out, ko, no);
	if (!b->h_in || !b->h_out)
		app_die("localize: out of memory");
}

static void localize_wait(struct batch *b)
{
	int r1 = ps_wait(b->h_in), r2 = ps_wait(b->h_out);
	if (r1 || r2)
		die_ps("localize", r1 ? r1 : r2);
}

/* keys[0..nh) from the hot table (--hot-table), keys[nh..n) from t. */
static int pull_split(ps_table *hot, ps_table *t, const ps_key *keys, int nh, int n, float *v, int dim)
{
	int rc = 0;
	if (nh > 0)
		rc = ps_pull_sync(hot, keys, (size_t)nh, v);
	if (!rc && n > nh)
		rc = ps_pull_sync(t, keys + nh, (size_t)(n - nh), v + (size_t)nh * (size_t)dim);
	return rc;
}

static int push_split(ps_table *hot, ps_table *t, const ps_key *keys, int nh, int n, const float *v, int dim)
{
	int rc = 0;
	if (nh > 0)
		rc = ps_push_sync(hot, keys, (size_t)nh, v);
	if (!rc && n > nh)
		rc = ps_push_sync(t, keys + nh, (size_t)(n - nh), v + (size_t)nh * (size_t)dim);
	return rc;
}

/* Pulls, trains, pushes one prepared batch. */
static void train(struct wstate *ws, struct batch *b, float alpha)
{
	struct job *jb = ws->jb;
	const int dim = jb->c.dim, dp = jb->dp, W = jb->c.window, K = jb->c.neg;
	ws->pin = grow_aligned(ws->pin, &ws->cap_pin, (size_t)b->nin * (size_t)dim);
	ws->pout = grow_aligned(ws->pout, &ws->cap_pout, (size_t)b->nout * (size_t)dim);
	ws->cin = grow_aligned(ws->cin, &ws->cap_cin, (size_t)b->nin * (size_t)dp);
	ws->cout = grow_aligned(ws->cout, &ws->cap_cout, (size_t)b->nout * (size_t)dp);
	if (b->smp)
		pool_negatives(ws, b);
	int rc = pull_split(jb->hin, jb->in, b->keys_in, b->hin, b->nin, ws->pin, dim);
	if (!rc)
		rc = pull_split(jb->hout, jb->out, b->keys_out, b->hout, b->nout, ws->pout, dim);
	if (rc)
		die_ps("pull", rc);
	for (int r = 0; r < b->nin; r++) {
		float *d = ws->cin + (size_t)r * (size_t)dp;
		memcpy(d, ws->pin + (size_t)r * (size_t)dim, (size_t)dim * sizeof *d);
		memset(d + dim, 0, (size_t)(dp - dim) * sizeof *d);
	}
	for (int r = 0; r < b->nout; r++) {
		float *d = ws->cout + (size_t)r * (size_t)dp;
		memcpy(d, ws->pout + (size_t)r * (size_t)dim, (size_t)dim * sizeof *d);
		memset(d + dim, 0, (size_t)(dp - dim) * sizeof *d);
	}
	double loss = 0;
	const int32_t *tg = b->tg, *tg_end = b->tg + b->ntg;
	for (int s = 0; s < b->nsent; s++) {
		int s0 = b->sent[s], s1 = b->sent[s + 1];
		for (int i = s0; i < s1; i++) {
			int sh = b->shrink[i];
			int a = i - (W - sh), e = i + (W - sh);
			if (a < s0)
				a = s0;
			if (e > s1 - 1)
				e = s1 - 1;
			for (int j = a; j <= e; j++) {
				if (j == i)
					continue;
				float *l1 = ws->cin + (size_t)b->kin[j] * (size_t)dp;
				if (tg + K + 1 < tg_end) /* the next context's output rows */
					for (int k = 0; k <= K; k++) {
						const char *r = (const char *)(ws->cout + (size_t)tg[K + 1 + k] * (size_t)dp);
						for (int off = 0; off < dp * 4; off += 64)
							__builtin_prefetch(r + off, 1, 3);
					}
				loss += jb->sgns(&jb->T, l1, ws->cout, tg, K + 1, dp, alpha, ws->neu1e);
				tg += K + 1;
				ws->pairs++;
			}
		}
	}
	ws->loss += loss;
	/* deltas: cache - pulled */
	for (int r = 0; r < b->nin; r++) {
		float *p = ws->pin + (size_t)r * (size_t)dim;
		const float *d = ws->cin + (size_t)r * (size_t)dp;
		for (int j = 0; j < dim; j++)
			p[j] = d[j] - p[j];
	}
	for (int r = 0; r < b->nout; r++) {
		float *p = ws->pout + (size_t)r * (size_t)dim;
		const float *d = ws->cout + (size_t)r * (size_t)dp;
		for (int j = 0; j < dim; j++)
			p[j] = d[j] - p[j];
	}
	rc = push_split(jb->hin, jb->in, b->keys_in, b->hin, b->nin, ws->pin, dim);
	if (!rc)
		rc = push_split(jb->hout, jb->out, b->keys_out, b->hout, b->nout, ws->pout, dim);
	if (rc)
		die_ps("push", rc);
}

/* Token range of worker g of G (g = app node x threads + thread, over every
 * node of every host): equal shares of the token array, which tile it, so
 * each word is trained once per epoch. */
static void share(const struct job *jb, int g, int G, size_t *lo, size_t *hi)
{
	*lo = jb->cp.ntok * (size_t)g / (size_t)G;
	*hi = jb->cp.ntok * (size_t)(g + 1) / (size_t)G;
}

static size_t batch_end(const struct job *jb, size_t pos, size_t hi)
{
	size_t e = pos + (size_t)jb->c.batch;
	return e < hi ? e : hi;
}

enum { M_LOSS, M_PAIRS, M_WORDS, M_LEN = 4 };

/*
 * Words trained, per worker, in the metric table: worker g of the job
 * assigns key count_key(g) at the end of each epoch: the words of that
 * epoch and of every epoch of this run.  A count c travels as two floats,
 * c mod 2^20 and c / 2^20, each exact in a float while c < 2^44 (the
 * epoch's float sum M_WORDS is not exact beyond 2^24 words).
 */
static ps_key count_key(const struct job *jb, int g)
{
	return (ps_key)jb->c.epochs + (ps_key)g;
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
static ps_key left_key(const struct job *jb, int T, int h)
{
	return count_key(jb, jb->ch * jb->nodes * T + h);
}

/* Host h's vote key (common.h, app_members_vote), after the left marks. */
static ps_key vote_key(const struct job *jb, int T, int h)
{
	return left_key(jb, T, jb->ch + h);
}

/* The membership point before epoch *e, every worker (common.h; votes on
 * several hosts).  Returns ps_sync_hosts's answer (0: this host leaves). */
static int membership(ps_world *w, struct job *jb, int *e, struct app_split *sp, uint8_t *alive)
{
	long le = *e;
	int np = app_membership(&jb->mem, w, jb->hosts > 1 || jb->joined ? &jb->votes : NULL, &le, sp, alive);
	*e = (int)le;
	return np;
}

/* In-vocabulary words of the share of app node n of N (its T workers'
 * token ranges): one epoch of that node. */
static uint64_t node_words_of(const struct job *jb, int n, int N, int T)
{
	uint64_t words = 0;
	for (int g = n * T; g < (n + 1) * T; g++) {
		size_t lo, hi;
		share(jb, g, N * T, &lo, &hi);
		for (size_t i = lo; i < hi; i++)
			words += jb->cp.tok[i] >= 0;
	}
	return words;
}

/* Each host's node 0: the counts of every app node (threads summed). */
static void read_counts(struct job *jb, int T)
{
	float m[M_LEN];
	for (int n = 0; n < jb->gnodes; n++) {
		jb->trained_last[n] = jb->trained_all[n] = 0;
		for (int t = 0; t < T; t++) {
			ps_key k = count_key(jb, n * T + t);
			int rc = ps_pull_sync(jb->M, &k, 1, m);
			if (rc)
				die_ps("pull counts", rc);
			jb->trained_last[n] += count_get(m);
			jb->trained_all[n] += count_get(m + 2);
		}
	}
}

/* --sync: clocks per epoch, the batches of the worker with the most. */
static size_t clocks_per_epoch(const struct job *jb, int G)
{
	size_t most = 0, B = (size_t)jb->c.batch;
	for (int g = 0; g < G; g++) {
		size_t lo, hi;
		share(jb, g, G, &lo, &hi);
		size_t nb = (hi - lo + B - 1) / B;
		most = nb > most ? nb : most;
	}
	return most;
}

static void clock_tick(ps_world *w, const struct job *jb)
{
	if (!jb->c.sync)
		return;
	int rc = ps_clock(w);
	if (rc)
		die_ps("clock", rc);
}

/*
 * A worker's share of the tokens under a split, and the learning rate's
 * schedule.  The rate decays linearly over the whole run: with the node's
 * count of words trained d (jb->done) it is lr (1 - d / total), total =
 * the node's words per epoch (nw) x epochs.  A re-split changes nw; so
 * that the schedule goes on where it was rather than restart, d is read
 * with an offset from then on: d + off = e x nw at the start of epoch e,
 * as if the node had always had the new share (off = 0 until a re-split:
 * the same float operations as before).  expect: d at the start of the
 * next epoch (the node's shares do not change within an epoch).
 */
struct wshare {
	size_t lo, hi, nclocks;
	uint64_t nw, total, off, expect;
};

/* The share of worker tid under split sp from epoch e on; with rebase the
 * schedule's nw, total and off for the new split. */
static void take_share(const struct job *jb, const struct app_split *sp, int T, int tid, int e, struct wshare *sh,
		       bool rebase)
{
	share(jb, sp->gnode * T + tid, sp->gnodes * T, &sh->lo, &sh->hi);
	sh->nclocks = clocks_per_epoch(jb, sp->gnodes * T);
	if (!rebase)
		return;
	sh->nw = node_words_of(jb, sp->gnode, sp->gnodes, T);
	sh->total = sh->nw * (uint64_t)jb->c.epochs;
	sh->off = (uint64_t)e * sh->nw - sh->expect; /* modulo 2^64: d + off is right */
}

static void worker(ps_world *w, int tid, void *arg)
{
	struct job *jb = arg;
	const struct cfg *c = &jb->c;
	/* worker g of the G of the job (every node of every host) */
	const int T = ps_num_threads(w), g = jb->gnode * T + tid;
	struct wstate ws = {.jb = jb, .tid = tid, .nthreads = T};
	ws.rng = c->seed * 0x9e3779b97f4a7c15ULL + (uint64_t)g * 0xd1b54a32d192ed03ULL + 1;
	ws.map_in = malloc((size_t)jb->cp.V * sizeof *ws.map_in);
	ws.map_out = malloc((size_t)jb->cp.V * sizeof *ws.map_out);
	ws.neu1e = aligned_alloc(64, ((size_t)jb->dp * sizeof(float) + 63) & ~(size_t)63);
	if (!ws.map_in || !ws.map_out || !ws.neu1e)
		app_die("out of memory");
	memset(ws.map_in, 0xff, (size_t)jb->cp.V * sizeof *ws.map_in);
	memset(ws.map_out, 0xff, (size_t)jb->cp.V * sizeof *ws.map_out);
	memset(ws.neu1e, 0, (size_t)jb->dp * sizeof(float));
	struct batch bt[2] = {0};
	const bool loc = c->policy == POL_LOCALIZE;
	const bool show = ps_node_id(w) == 0 && tid == 0; /* each host's node 0 prints */
	/* the hosts the words are split over: every host of the job at the
	 * start; a joiner's first ps_sync_hosts meets the others' at the end of
	 * an epoch and says which epoch they train next */
	struct app_split sp;
	int e0 = jb->start_epoch;
	uint8_t *alive = show ? calloc(APP_HOSTS_MAX, 1) : NULL; /* node 0's copy of the set */
	if (show && !alive)
		app_die("out of memory");
	if (!jb->joined) {
		app_members_split(&jb->mem, &sp, alive);
	} else {
		/* the joiner's first: the others' epoch comes back (no votes:
		 * this host has no set yet) */
		membership(w, jb, &e0, &sp, alive);
		if (show)
			app_members_print(&jb->mem, e0);
	}
	if (show)
		jb->first_epoch = e0;
	struct wshare sh = {.nw = jb->node_words, .expect = (uint64_t)jb->start_epoch * jb->node_words};
	sh.total = sh.nw * (uint64_t)c->epochs;
	take_share(jb, &sp, T, tid, e0, &sh, sp.changed); /* changed: a joiner */
	uint64_t trained_all = 0; /* words this worker trained, every epoch of this run */
	app_progress prog;
	bool diverged = false, left = false;
	for (int ep = e0; ep < c->epochs; ep++) {
		if (show) {
			char what[64];
			snprintf(what, sizeof what, "epoch %d/%d", ep + 1, c->epochs);
			app_progress_start(&prog, what, jb->cp.words);
		}
		ws.loss = 0;
		ws.pairs = 0;
		uint64_t words = 0;
		int cur = 0;
		size_t pos = sh.lo, hi = sh.hi, batches = 0;
		if (pos < hi) {
			prepare(&ws, &bt[cur], pos, batch_end(jb, pos, hi));
			if (loc)
				localize_start(jb, &bt[cur]);
		}
		while (pos < hi) {
			struct batch *b = &bt[cur], *nb = &bt[cur ^ 1];
			pos = b->hi;
			bool more = pos < hi;
			if (more) /* the next batch, prepared (and localized) ahead */
				prepare(&ws, nb, pos, batch_end(jb, pos, hi));
			if (loc)
				localize_wait(b);
			if (loc && more)
				localize_start(jb, nb);
			/* relaxed: a progress counter for the learning rate */
			uint64_t d = atomic_load_explicit(&jb->done, memory_order_relaxed) + sh.off;
			float alpha = (float)(c->lr * (1.0 - (double)d / (double)(sh.total + 1)));
			if (alpha < (float)(c->lr * 1e-4))
				alpha = (float)(c->lr * 1e-4);
			train(&ws, b, alpha);
			clock_tick(w, jb);
			batches++;
			words += b->words;
			/* relaxed: as above */
			atomic_fetch_add_explicit(&jb->done, b->words, memory_order_relaxed);
			if (show)
				app_progress_update(&prog, words * (uint64_t)(sp.gnodes * T),
						    ws.pairs ? ws.loss / (double)ws.pairs : NAN);
			cur ^= 1;
		}
		for (; batches < sh.nclocks; batches++)
			clock_tick(w, jb); /* as many clocks as the busiest worker */
		ps_key mk = (ps_key)ep;
		float m[M_LEN] = {(float)ws.loss, (float)ws.pairs, (float)words};
		int rc = ps_push_sync(jb->M, &mk, 1, m);
		if (rc)
			die_ps("push metrics", rc);
		trained_all += words;
		ps_key ck = count_key(jb, g);
		float cm[M_LEN];
		count_put(cm, words);
		count_put(cm + 2, trained_all);
		if ((rc = ps_assign_sync(jb->M, &ck, 1, cm)) != 0)
			die_ps("push counts", rc);
		rc = ps_barrier(w);
		if (rc)
			die_ps("barrier", rc);
		/* A diverged model (loss inf or NaN: --lr too large) cannot come
		 * back: every worker reads the same total and all stop here,
		 * after the same barriers; main reports it. */
		rc = ps_pull_sync(jb->M, &mk, 1, m);
		if (rc)
			die_ps("pull metrics", rc);
		if (!isfinite(m[M_LOSS])) {
			diverged = true;
			if (tid == 0)
				jb->diverged_epoch = ep + 1;
			if (show) /* before the barrier below: see app_diverged */
				app_diverged(ep + 1, "loss", c->lr);
			break;
		}
		if (show) {
			jb->epoch_end[ep] = app_now();
			jb->cpu_end = app_cpu_now();
			rc = ps_pull_sync(jb->M, &mk, 1, m);
			if (rc)
				die_ps("pull metrics", rc);
			app_progress_end(&prog, (uint64_t)m[M_WORDS], m[M_PAIRS] > 0 ? m[M_LOSS] / m[M_PAIRS] : NAN,
					 NULL);
			app_epoch_counts_read(&jb->ecounts, w, ep, alive, jb->M, count_key(jb, 0), jb->nodes * T, M_LEN,
					      jb->ch);
		}
		if (tid == 0) /* every push of the epoch is in; the others wait below */
			app_epoch_checkpoints(w, c->ckpt, c->ckpt_every, ep + 1, c->epochs);
		sh.expect += sh.nw; /* the node trained its share of the epoch */
		/* the membership point: a barrier (on one host only that); hosts
		 * lost since the last one are gone from the set, joiners added,
		 * and a host asked to leave gets 0 here.  A host lost during the
		 * epoch: the part of its share it had not trained is not trained
		 * again; the survivors split every later epoch */
		int next = ep + 1;
		if (membership(w, jb, &next, &sp, alive) == 0) {
			left = true;
			if (show)
				jb->left_epoch = ep + 2;
			break;
		}
		if (sp.changed) { /* from the next epoch on: the new split */
			take_share(jb, &sp, T, tid, ep + 1, &sh, true);
			if (show)
				app_members_print(&jb->mem, ep + 1);
		}
	}
	/* every node's replica deltas merged: one ps_sync round on one host;
	 * across hosts a ps_sync covers only its host, so two rounds, each on
	 * every host (psmem.h, ps_sync) */
	for (int round = 0; (c->replicate || c->hot) && !diverged && !left && round < (jb->hosts > 1 ? 2 : 1);
	     round++) {
		int rc;
		ps_table *ti = jb->hin ? jb->hin : jb->in, *to = jb->hout ? jb->hout : jb->out;
		if (show && ((rc = ps_sync(ti)) != 0 || (rc = ps_sync(to)) != 0))
			die_ps("ps_sync", rc);
		if ((rc = ps_barrier(w)) != 0)
			die_ps("barrier", rc);
	}
	if (show && !diverged && !left) { /* every worker assigned its last count before the barriers */
		read_counts(jb, T);
		app_members_read_left(&jb->mem, jb->M, left_key(jb, T, 0), M_LEN, jb->ch);
	}
	/* the first node of the split has the vectors: host 0's node 0, or
	 * the first host left's when host 0 was lost */
	if (show && !diverged && !left && sp.gnode == 0) { /* every push is in: it reads the input vectors */
		jb->vectors = malloc((size_t)jb->cp.V * (size_t)c->dim * sizeof *jb->vectors);
		if (!jb->vectors)
			app_die("out of memory");
		enum { CH = 4096 };
		ps_key keys[CH];
		for (int64_t v0 = 0; v0 < jb->cp.V; v0 += CH) {
			int64_t n = jb->cp.V - v0 < CH ? jb->cp.V - v0 : CH;
			for (int64_t i = 0; i < n; i++)
				keys[i] = (ps_key)(v0 + i);
			int64_t nh = 0; /* --hot-table: words < K from the hot table */
			while (nh < n && v0 + nh < c->hot)
				nh++;
			int rc = pull_split(jb->hin, jb->in, keys, (int)nh, (int)n,
					    jb->vectors + (size_t)v0 * (size_t)c->dim, c->dim);
			if (rc)
				die_ps("pull vectors", rc);
		}
	}
	int rc = 0;
	if (!left) /* nodes stay until node 0 has the vectors */
		rc = ps_barrier(w);
	else if (ps_node_id(w) == 0 && tid == 0) { /* the others learn it left (not lost) */
		float m[M_LEN] = {1};
		ps_key k = left_key(jb, T, jb->host);
		rc = ps_assign_sync(jb->M, &k, 1, m);
	}
	if (rc)
		die_ps(left ? "push of the left mark" : "barrier", rc);
	free(alive);
	for (int i = 0; i < 2; i++) {
		free(bt[i].kin);
		free(bt[i].kout);
		free(bt[i].shrink);
		free(bt[i].sent);
		free(bt[i].tg);
		free(bt[i].keys_in);
		free(bt[i].keys_out);
		free(bt[i].loc_in);
		free(bt[i].loc_out);
	}
	free(ws.map_in);
	free(ws.map_out);
	free(ws.perm);
	free(ws.kscratch);
	free(ws.cin);
	free(ws.cout);
	free(ws.pin);
	free(ws.pout);
	free(ws.neu1e);
	free(ws.kept_words);
}

/* ------------------------------------------------------------- analogy */

struct analogy {
	const float *wn; /* K x dim, rows of unit length */
	int K, dim;
	int32_t (*q)[4];
	int nq;
	int nthreads;
	_Atomic int next;  /* next block of questions */
	_Atomic int correct;
	int fail;
};

#define QB 8 /* questions per block */

/* Best row for each of nq (<= QB) queries, excluding each query's words. */
#define ANALOGY_BODY                                                                                 \
	for (int r = 0; r < K; r++) {                                                                \
		const float *row = wn + (size_t)r * (size_t)dim;                                     \
		float s[QB] = {0};                                                                   \
		for (int d = 0; d < dim; d++) {                                                      \
			float x = row[d];                                                            \
			for (int k = 0; k < QB; k++)                                                 \
				s[k] += x * qv[d * QB + k];                                          \
		}                                                                                    \
		for (int k = 0; k < nq; k++)                                                         \
			if (s[k] > best[k] && r != ex[k][0] && r != ex[k][1] && r != ex[k][2]) {     \
				best[k] = s[k];                                                      \
				arg[k] = r;                                                          \
			}                                                                            \
	}

static void analogy_block_c(const float *wn, int K, int dim, const float *qv, int nq, int32_t (*ex)[4], float *best,
			    int *arg)
{
	ANALOGY_BODY
}

__attribute__((target("avx2,fma"))) static void analogy_block_avx2(const float *wn, int K, int dim, const float *qv,
								   int nq, int32_t (*ex)[4], float *best, int *arg)
{
	ANALOGY_BODY
}

static bool have_avx2(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static void *analogy_thread(void *p)
{
	struct analogy *an = p;
	const int dim = an->dim;
	float *qv = calloc((size_t)dim * QB, sizeof *qv);
	if (!qv)
		app_die("out of memory");
	bool avx = have_avx2();
	for (;;) {
		int q0 = atomic_fetch_add(&an->next, QB);
		if (q0 >= an->nq)
			break;
		int nq = an->nq - q0 < QB ? an->nq - q0 : QB;
		float best[QB];
		int arg[QB];
		memset(qv, 0, (size_t)dim * QB * sizeof *qv);
		for (int k = 0; k < nq; k++) {
			const int32_t *q = an->q[q0 + k];
			const float *a = an->wn + (size_t)q[0] * (size_t)dim, *b = an->wn + (size_t)q[1] * (size_t)dim,
				    *c = an->wn + (size_t)q[2] * (size_t)dim;
			for (int d = 0; d < dim; d++)
				qv[d * QB + k] = b[d] - a[d] + c[d];
			best[k] = -INFINITY;
			arg[k] = -1;
		}
		if (avx)
			analogy_block_avx2(an->wn, an->K, dim, qv, nq, an->q + q0, best, arg);
		else
			analogy_block_c(an->wn, an->K, dim, qv, nq, an->q + q0, best, arg);
		int ok = 0;
		for (int k = 0; k < nq; k++)
			ok += arg[k] == an->q[q0 + k][3];
		atomic_fetch_add(&an->correct, ok);
	}
	free(qv);
	return NULL;
}

/* Accuracy (percent) on the questions of path; *seen set. */
static double eval_analogy(const struct job *jb, const char *path, int threads, int *seen)
{
	const int dim = jb->c.dim;
	int K = jb->cp.V < ANALOGY_VOCAB ? (int)jb->cp.V : ANALOGY_VOCAB;
	app_reader *r = app_open(path);
	int cap = 0, nq = 0, lines = 0;
	int32_t(*q)[4] = NULL;
	size_t len;
	char *line;
	while ((line = app_getline(r, &len))) {
		char *f[5];
		int nf = app_split(line, " \t", true, f, 5);
		if (nf == 0 || f[0][0] == ':')
			continue;
		if (nf != 4)
			app_fail_line(r, "expected 4 words (a b c d: a is to b as c is to d), found %d", nf);
		lines++;
		int32_t ids[4];
		bool ok = true;
		for (int k = 0; k < 4; k++) {
			for (char *s = f[k]; *s; s++)
				if (*s >= 'A' && *s <= 'Z')
					*s = (char)(*s - 'A' + 'a');
			int64_t raw = app_idmap_get(jb->cp.names, f[k], strlen(f[k]), false);
			int32_t rk = raw < 0 ? -1 : jb->cp.rank_of[raw];
			if (rk < 0 || rk >= K)
				ok = false;
			ids[k] = rk;
		}
		if (!ok)
			continue;
		if (nq == cap) {
			cap = cap ? 2 * cap : 1024;
			q = realloc(q, (size_t)cap * sizeof *q);
			if (!q)
				app_die("out of memory");
		}
		memcpy(q[nq++], ids, sizeof ids);
	}
	app_close(r);
	if (lines == 0)
		app_die("%s: no analogy questions in the file", path);
	*seen = nq;
	if (nq == 0)
		return 0;
	float *wn = malloc((size_t)K * (size_t)dim * sizeof *wn);
	if (!wn)
		app_die("out of memory");
	for (int v = 0; v < K; v++) {
		const float *x = jb->vectors + (size_t)v * (size_t)dim;
		double s = 0;
		for (int d = 0; d < dim; d++)
			s += (double)x[d] * x[d];
		float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0;
		for (int d = 0; d < dim; d++)
			wn[(size_t)v * (size_t)dim + d] = x[d] * inv;
	}
	struct analogy an = {.wn = wn, .K = K, .dim = dim, .q = q, .nq = nq};
	if (threads < 1)
		threads = 1;
	pthread_t *th = calloc((size_t)threads, sizeof *th);
	int started = 0;
	for (int t = 0; t < threads; t++)
		if (pthread_create(&th[t], NULL, analogy_thread, &an) == 0)
			started++;
	if (!started)
		analogy_thread(&an);
	for (int t = 0; t < started; t++)
		pthread_join(th[t], NULL);
	free(th);
	free(wn);
	free(q);
	return 100.0 * atomic_load(&an.correct) / nq;
}

/* Node 0 evaluates alone: every CPU it may run on, at least T. */
static int eval_threads(int T)
{
	cpu_set_t set;
	int n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
	return n > T ? n : T;
}

/* ---------------------------------------------------------------- save */

static void save_vectors(const struct job *jb, const char *path, bool binary)
{
	const int dim = jb->c.dim;
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
	FILE *f = fopen(tmp, "wb");
	if (!f)
		app_die("%s: cannot create: %s", path, strerror(errno));
	fprintf(f, "%lld %d\n", (long long)jb->cp.V, dim);
	for (int64_t v = 0; v < jb->cp.V; v++) {
		const float *x = jb->vectors + (size_t)v * (size_t)dim;
		fputs(jb->cp.word[v], f);
		if (binary) {
			fputc(' ', f);
			fwrite(x, sizeof *x, (size_t)dim, f); /* x86-64 and aarch64 are little-endian */
		} else {
			for (int d = 0; d < dim; d++)
				fprintf(f, " %.6g", x[d]);
		}
		fputc('\n', f);
	}
	if (fflush(f) || ferror(f) || fclose(f)) {
		unlink(tmp);
		app_die("%s: write error: %s", path, strerror(errno));
	}
	if (rename(tmp, path)) {
		unlink(tmp);
		app_die("%s: cannot rename into place: %s", path, strerror(errno));
	}
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: w2v --train FILE [options]\n"
		"Word vectors: skip-gram with negative sampling (word2vec), parameters in psmem.\n"
		"Run alone (one node) or under psrun -n N -t T.  Options (long options may also be\n"
		"written with one dash, and word2vec's names are accepted: -size -negative -iter -alpha\n"
		"-min-count -sample -window -threads -output):\n"
		"  --train FILE          corpus, plain or gzip, whitespace-separated words (required)\n"
		"  --eval-analogy FILE   analogy questions (questions-words.txt); top 30000 words (none)\n"
		"  --dim N, -size N      vector dimension (100)\n"
		"  --window N            maximum context window; each word draws a shrink (5)\n"
		"  --neg N, -negative N  negative samples per pair, unigram^0.75 (5)\n"
		"  --sample X            frequent-word subsampling threshold, 0 = off (1e-4)\n"
		"  --min-count N         drop words rarer than N (5)\n"
		"  --epochs N, -iter N   passes over the corpus (5)\n"
		"  --lr X, -alpha X      initial learning rate, decays linearly to lr*1e-4 (0.025)\n"
		"  --threads T           worker threads per node (psrun -t, else 1)\n"
		"  --policy P            classic: rows stay where created (hash placement);\n"
		"                        localize: localize the next batch's rows ahead of use (classic)\n"
		"  --batch N             tokens per training step: one pull and one push per table;\n"
		"                        larger: less PS traffic, staler rows across threads (40000)\n"
		"  --sync M              bound the workers' progress: bsp, ssp:S (at most S batches\n"
		"                        ahead of the slowest worker) or asp; one clock per batch\n"
		"                        (no clocks)\n"
		"  --seed S              random seed; one thread is deterministic (1)\n"
		"  --replicate K         replicate the rows of the K most frequent words on every\n"
		"                        node (hot-spot replication; 0 = none) (0)\n"
		"  --repl-rate HZ        replica sync rounds per second per node (20)\n"
		"  --hot-table K         keep the rows of the K most frequent words in tables of\n"
		"                        their own, replicated on every node of every host (as\n"
		"                        --replicate K), and all other rows in tables without\n"
		"                        replicas, which --policy localize moves across hosts;\n"
		"                        not with --replicate or --sampling (0 = none) (0)\n"
		"  --stay-remote K       --policy localize on several hosts: a row of one of the K\n"
		"                        most frequent words that another host holds is not\n"
		"                        localized, but pulled and pushed where it is (0)\n"
		"  --sampling S          draw the negatives through psmem's sampling (unigram^0.75):\n"
		"                        naive (exact draws), local (only rows on this node),\n"
		"                        pool[:U] (pools of n/U rows moved here, each served U\n"
		"                        times; U 8); absent: the app's own alias table (absent)\n"
		"  --json FILE           write a JSON summary (\"-\" = stdout), with the words\n"
		"                        trained per epoch by this host's nodes and the job; on\n"
		"                        several hosts host R > 0 writes FILE.hostR (none)\n"
		"  --save FILE, -output FILE  write the input vectors in word2vec format (none)\n"
		"  --save-format F       text or binary (text)\n"
		"  --checkpoint FILE     write a checkpoint of the tables (psmem format) after the\n"
		"                        last epoch, and every K epochs with --checkpoint-every (none)\n"
		"  --checkpoint-every K  checkpoint every K epochs (only after the last)\n"
		"  --resume FILE         start from a checkpoint: its tables, the epoch after the\n"
		"                        last one it holds, the learning rate where it was; same\n"
		"                        corpus and options (psrun --restore's file, else none)\n"
		"  --help                this text\n"
		"  --version             print the version and exit\n"
		"Hosts lost (psrun --on-host-failure continue), joining (psrun --join) or\n"
		"leaving: at each epoch's end the corpus is split again over the hosts present,\n"
		"from the next epoch on (a lost host's unfinished part of the epoch it died in\n"
		"is not trained again; the learning rate decays on, not restarted); --json\n"
		"records hosts_lost, hosts_joined, hosts_left with their epochs and\n"
		"epoch_host_words (per epoch and host; -1: lost during that epoch).\n"
		"psstat --checkpoint FILE asks a running w2v for a checkpoint at the end of the\n"
		"current epoch.  w2v does not resume a restarted node (psrun --on-failure\n"
		"restart): use --checkpoint-every and --resume.\n");
}

int main(int argc, char **argv)
{
	app_init("w2v");
	static struct job jb;
	struct cfg *c = &jb.c;
	*c = (struct cfg){.dim = 100, .window = 5, .neg = 5, .min_count = 5, .epochs = 5, .batch = 40000,
			  .sample = 1e-4, .lr = 0.025, .policy = POL_CLASSIC, .seed = 1,
			  .repl_rate = 20};
	enum { O_TRAIN = 256, O_EVAL, O_DIM, O_WINDOW, O_NEG, O_SAMPLE, O_MINC, O_EPOCHS, O_LR, O_THREADS,
	       O_POLICY, O_BATCH, O_SEED, O_JSON, O_SAVE, O_SAVEFMT, O_REPL, O_REPL_RATE, O_HOT, O_STAY, O_SYNC, O_SAMPLING, O_CKPT, O_CKPT_EVERY, O_RESUME, O_HELP };
	static const struct option opts[] = {
		{"train", 1, 0, O_TRAIN},     {"eval-analogy", 1, 0, O_EVAL}, {"dim", 1, 0, O_DIM},
		{"size", 1, 0, O_DIM},        {"window", 1, 0, O_WINDOW},     {"neg", 1, 0, O_NEG},
		{"negative", 1, 0, O_NEG},    {"sample", 1, 0, O_SAMPLE},     {"min-count", 1, 0, O_MINC},
		{"epochs", 1, 0, O_EPOCHS},   {"iter", 1, 0, O_EPOCHS},       {"lr", 1, 0, O_LR},
		{"alpha", 1, 0, O_LR},        {"threads", 1, 0, O_THREADS},   {"policy", 1, 0, O_POLICY},
		{"batch", 1, 0, O_BATCH},     {"seed", 1, 0, O_SEED},         {"json", 1, 0, O_JSON},
		{"save", 1, 0, O_SAVE},       {"output", 1, 0, O_SAVE},       {"save-format", 1, 0, O_SAVEFMT},
		{"replicate", 1, 0, O_REPL},  {"repl-rate", 1, 0, O_REPL_RATE},
		{"hot-table", 1, 0, O_HOT},   {"stay-remote", 1, 0, O_STAY},
		{"sync", 1, 0, O_SYNC}, {"sampling", 1, 0, O_SAMPLING}, {"checkpoint", 1, 0, O_CKPT},
		{"checkpoint-every", 1, 0, O_CKPT_EVERY}, {"resume", 1, 0, O_RESUME}, {"help", 0, 0, O_HELP},
		{"version", 0, 0, APP_OPT_VERSION}, {0, 0, 0, 0}};
	app_sampling_off(&c->smp);
	int o, li = 0;
	while ((o = app_getopt(argc, argv, "h", opts, &li, true)) != -1) {
		char name[64];
		snprintf(name, sizeof name, "--%s", o >= 256 && o != O_HELP ? opts[li].name : "");
		switch (o) {
		case O_TRAIN: c->train = optarg; break;
		case O_EVAL: c->eval = optarg; break;
		case O_DIM: c->dim = (int)app_opt_long(name, optarg, 1, 4096); break;
		case O_WINDOW: c->window = (int)app_opt_long(name, optarg, 1, 100); break;
		case O_NEG: c->neg = (int)app_opt_long(name, optarg, 0, 100); break;
		case O_SAMPLE: c->sample = app_opt_double(name, optarg, 0, 1); break;
		case O_MINC: c->min_count = (int)app_opt_long(name, optarg, 1, 1000000000); break;
		case O_EPOCHS: c->epochs = (int)app_opt_long(name, optarg, 1, 100000); break;
		case O_LR: c->lr = app_opt_double(name, optarg, 1e-9, 10); break;
		case O_THREADS: c->threads = (int)app_opt_long(name, optarg, 1, 4096); break;
		case O_BATCH: c->batch = (int)app_opt_long(name, optarg, 1, 100000000); break;
		case O_SEED: c->seed = (uint64_t)app_opt_long(name, optarg, 0, INT64_MAX); break;
		case O_JSON: c->json = optarg; break;
		case O_REPL: c->replicate = app_opt_long(name, optarg, 0, INT32_MAX); break;
		case O_REPL_RATE: c->repl_rate = app_opt_double(name, optarg, 0, 10000); break;
		case O_HOT: c->hot = app_opt_long(name, optarg, 0, INT32_MAX); break;
		case O_STAY: c->stay = app_opt_long(name, optarg, 0, INT32_MAX); break;
		case O_SAMPLING: app_opt_sampling(name, optarg, &c->smp); break;
		case O_SAVE: c->save = optarg; break;
		case O_SYNC: {
			char why[160];
			if (ps_clock_parse(optarg, &c->sync_mode, &c->staleness, why, sizeof why))
				app_die("--sync: %s", why);
			c->sync = optarg;
			break;
		}
		case O_CKPT: c->ckpt = optarg; break;
		case O_CKPT_EVERY: c->ckpt_every = (int)app_opt_long(name, optarg, 1, 100000); break;
		case O_RESUME: c->resume = optarg; break;
		case O_POLICY:
			if (!strcmp(optarg, "classic"))
				c->policy = POL_CLASSIC;
			else if (!strcmp(optarg, "localize"))
				c->policy = POL_LOCALIZE;
			else
				app_die("--policy: '%s' is not classic or localize", app_clip(optarg));
			break;
		case O_SAVEFMT:
			if (!strcmp(optarg, "text"))
				c->save_binary = false;
			else if (!strcmp(optarg, "binary"))
				c->save_binary = true;
			else
				app_die("--save-format: '%s' is not text or binary", app_clip(optarg));
			break;
		case 'h':
		case O_HELP: usage(stdout); return 0;
		default: app_usage_error("unknown option '%s'", app_clip(argv[optind - 1]));
		}
	}
	if (optind < argc)
		app_usage_error("unexpected argument '%s'", app_clip(argv[optind]));
	if (!c->train)
		app_die("--train FILE is required (see --help)");
	if (c->ckpt_every && !c->ckpt)
		app_die("--checkpoint-every needs --checkpoint FILE");
	if (c->hot && c->replicate)
		app_die("--hot-table replicates its tables already; not with --replicate");
	if (c->stay && c->policy != POL_LOCALIZE)
		app_die("--stay-remote: only with --policy localize (classic moves no row)");
	if (c->hot && c->smp.on)
		app_die("--hot-table: not with --sampling (psmem samples the output table only)");
	/* an output that cannot be written fails now, not after the training */
	app_check_writable("--json", c->json);
	app_check_writable("--save", c->save);
	app_check_writable("--checkpoint", c->ckpt);
	if (c->eval) { /* fail early on a missing question file */
		app_reader *r = app_open(c->eval);
		app_close(r);
	}

	int err;
	ps_world *w = ps_init_threads(c->threads, &err);
	if (!w)
		app_die("cannot join the job: %s", ps_strerror(err));
	if (c->sync && (err = ps_set_consistency(w, c->sync_mode, c->staleness)) != 0)
		die_ps("--sync", err);
	const int me = ps_node_id(w), N = ps_num_nodes(w), T = ps_num_threads(w);
	jb.host = ps_host_id(w);
	jb.hosts = ps_num_hosts(w);
	jb.nodes = N;
	jb.gnode = app_gnode(w);
	jb.gnodes = app_gnodes(w);
	jb.joined = ps_joined(w) == 1;
	jb.ch = app_count_hosts(w);
	char hosts_note[64] = "";
	if (jb.hosts > 1)
		snprintf(hosts_note, sizeof hosts_note, " on each of %d hosts (this one host %d)", jb.hosts, jb.host);
	if (ps_restarted(w))
		app_die("node %d was restarted, which w2v does not support (psrun --on-failure abort; "
			"--checkpoint-every and --resume instead)", me);
	double t0 = app_now();
	load_corpus(c, &jb.cp);
	double t_load = app_now() - t0;
	char hot_note[48] = "";
	if (c->hot)
		snprintf(hot_note, sizeof hot_note, ", hot table %ld", c->hot);
	if (me == 0)
		printf("w2v: %s: %llu words, vocabulary %lld (min-count %d), loaded in %.1f s; %d node%s x %d thread%s%s, "
		       "policy %s, replicate %ld%s, sampling %s%s%s\n",
		       c->train, (unsigned long long)jb.cp.words, (long long)jb.cp.V, c->min_count, t_load, N,
		       N > 1 ? "s" : "", T, T > 1 ? "s" : "", hosts_note, c->policy == POL_CLASSIC ? "classic" : "localize",
		       c->replicate, hot_note, c->smp.name, c->sync ? ", sync " : "", c->sync ? c->sync : "");
	fflush(stdout);
	if (!c->smp.on)
		alias_build(&jb.al, jb.cp.count, jb.cp.V);
	tables_init(&jb.T);
	jb.keep = malloc((size_t)jb.cp.V * sizeof *jb.keep);
	if (!jb.keep)
		app_die("out of memory");
	for (int64_t v = 0; v < jb.cp.V; v++) {
		double cn = (double)jb.cp.count[v], th = c->sample * (double)jb.cp.words;
		jb.keep[v] = c->sample > 0 ? (float)((sqrt(cn / th) + 1) * th / cn) : 1.0f;
	}
	jb.dp = (c->dim + 7) & ~7;
	jb.sgns = have_avx2() ? sgns_avx2 : sgns_c;
	jb.epoch_end = calloc((size_t)c->epochs, sizeof *jb.epoch_end);
	jb.trained_last = calloc((size_t)jb.gnodes, sizeof *jb.trained_last);
	jb.trained_all = calloc((size_t)jb.gnodes, sizeof *jb.trained_all);
	if (!jb.epoch_end || !jb.trained_last || !jb.trained_all)
		app_die("out of memory");

	ps_table_opts to;
	ps_table_opts_init(&to, (uint64_t)jb.cp.V, (uint32_t)c->dim);
	to.init = PS_INIT_UNIFORM;
	to.init_a = 0.5f / (float)c->dim;
	to.seed = c->seed;
	to.placement = PS_PLACE_HASH;
	/* classic: HOGWILD pushes, as word2vec's threads.  localize (and the
	 * pool sampling scheme, which localizes its pools): rows move all the
	 * time, and a lock-free add racing a relocation may be lost, so pushes
	 * take the slot lock */
	bool moves = c->policy == POL_LOCALIZE || (c->smp.on && c->smp.scheme == PS_SAMPLE_POOL);
	to.flags = moves ? 0 : PS_HOGWILD;
	/* room for rows that move in while old slots await reclamation: both
	 * nodes move the frequent negatives every batch, and with pools as well
	 * 2V filled both nodes' pools within a grace period (the localize then
	 * waits for a free slot on the service thread that should advance the
	 * node's epoch, and fails with PS_EFULL after 10 s) */
	if (moves)
		to.slots_per_node = 4 * (uint64_t)jb.cp.V + 4096;
	if (c->replicate > jb.cp.V)
		app_die("--replicate: %ld words, but the vocabulary has only %lld", c->replicate,
			(long long)jb.cp.V);
	to.repl_max = (uint32_t)c->replicate;
	to.repl_rate = c->repl_rate;
	jb.in = ps_table_create(w, &to, &err);
	if (!jb.in)
		app_die("cannot create the input vectors: %s", ps_strerror(err));
	to.init = PS_INIT_ZERO;
	to.init_a = 0;
	jb.out = ps_table_create(w, &to, &err);
	if (!jb.out)
		app_die("cannot create the output vectors: %s", ps_strerror(err));
	if (c->hot) { /* --hot-table: words 0..K-1 (the vocabulary is sorted by
		       * frequency), keys of their own tables, replicated */
		if (c->hot > jb.cp.V)
			app_die("--hot-table: %ld words, but the vocabulary has only %lld", c->hot,
				(long long)jb.cp.V);
		ps_table_opts th;
		ps_table_opts_init(&th, (uint64_t)c->hot, (uint32_t)c->dim);
		th.init = PS_INIT_UNIFORM;
		th.init_a = 0.5f / (float)c->dim;
		th.seed = c->seed + 1;
		th.placement = PS_PLACE_HASH;
		th.flags = to.flags;
		th.repl_max = (uint32_t)c->hot;
		th.repl_rate = c->repl_rate;
		jb.hin = ps_table_create(w, &th, &err);
		if (!jb.hin)
			app_die("cannot create the hot input vectors: %s", ps_strerror(err));
		th.init = PS_INIT_ZERO;
		th.init_a = 0;
		jb.hout = ps_table_create(w, &th, &err);
		if (!jb.hout)
			app_die("cannot create the hot output vectors: %s", ps_strerror(err));
	}
	if (c->smp.on) { /* the negatives' distribution: unigram^0.75, as word2vec */
		double *wt = malloc((size_t)jb.cp.V * sizeof *wt);
		if (!wt)
			app_die("out of memory");
		for (int64_t v = 0; v < jb.cp.V; v++)
			wt[v] = pow((double)jb.cp.count[v], 0.75);
		jb.negd = ps_dist_create(jb.out, wt, &err);
		free(wt);
		if (!jb.negd)
			app_die("cannot build the negative-sampling distribution: %s", ps_strerror(err));
		app_sampling_apply(jb.out, &c->smp);
	}
	/* metrics: epoch e at key e; worker g's word counts at count_key(g),
	 * for app_count_hosts hosts (joiners included); host h's left mark at
	 * left_key(h), its vote at vote_key(h) */
	ps_table_opts_init(&to, (uint64_t)c->epochs + (uint64_t)jb.ch * (uint64_t)N * (uint64_t)T + 2 * (uint64_t)jb.ch,
			   M_LEN);
	to.flags = PS_TRANSIENT; /* not in checkpoints: --epochs may change on --resume */
	jb.M = ps_table_create(w, &to, &err);
	if (!jb.M)
		app_die("cannot create the metrics table: %s", ps_strerror(err));
	jb.start_epoch = jb.joined ? 0 : app_resume(w, c->resume); /* a joiner: the others' epoch, later */
	if (jb.start_epoch >= c->epochs)
		app_die("cannot resume: the checkpoint has %d epochs done; --epochs %d leaves none to train",
			jb.start_epoch, c->epochs);
	app_members_init(&jb.mem, w, jb.start_epoch);
	if (!jb.joined) { /* this node's words per epoch (a joiner's: at its first sync) */
		struct app_split s0;
		app_members_split(&jb.mem, &s0, NULL);
		jb.node_words = node_words_of(&jb, s0.gnode, s0.gnodes, T);
	}
	/* relaxed: the workers start later; the learning rate goes on decaying */
	atomic_store_explicit(&jb.done, (uint64_t)jb.start_epoch * jb.node_words, memory_order_relaxed);
	if (me == 0 && jb.start_epoch)
		printf("w2v: resumed after epoch %d\n", jb.start_epoch);
	jb.votes = (struct app_votes){.t = jb.M, .base = vote_key(&jb, T, 0), .vlen = M_LEN};
	app_epoch_counts_init(&jb.ecounts, c->epochs, jb.mem.seen); /* columns: hosts present (grows as they join) */
	if (c->replicate && me == 0) { /* the hot spots: the most frequent words */
		app_replicate_top(jb.in, jb.cp.count, c->replicate, "frequent words");
		app_replicate_top(jb.out, jb.cp.count, c->replicate, "frequent words");
	}
	if (c->hot && me == 0) { /* every hot row replicated on every node */
		app_replicate_top(jb.hin, jb.cp.count, c->hot, "hot words");
		app_replicate_top(jb.hout, jb.cp.count, c->hot, "hot words");
	}

	jb.t_start = app_now();
	jb.cpu_start = app_cpu_now();
	int rc = ps_run_workers(w, worker, &jb);
	if (rc)
		app_die("workers: %s", ps_strerror(rc));
	if (jb.diverged_epoch) { /* node 0 said it; nothing is written */
		ps_finalize(w);
		return 1;
	}
	/* the last epoch this host trained: the last, or the one before it left */
	int last = jb.left_epoch ? jb.left_epoch - 2 : c->epochs - 1;
	double secs = last >= 0 ? jb.epoch_end[last] - jb.t_start : 0;
	int code = 0;
	if (me == 0) {
		double tput = secs > 0 ? (double)jb.cp.words * (last + 1 - jb.first_epoch) / secs : 0;
		ps_key mk = (ps_key)(last >= 0 ? last : 0);
		float m[M_LEN];
		ps_pull_sync(jb.M, &mk, 1, m);
		double loss = m[M_PAIRS] > 0 ? m[M_LOSS] / m[M_PAIRS] : NAN;
		double acc = NAN;
		int seen = 0;
		double te = app_now();
		bool vec = jb.vectors != NULL; /* the split's first node has the vectors */
		if (c->eval && vec)
			acc = eval_analogy(&jb, c->eval, eval_threads(T), &seen);
		te = app_now() - te;
		if (c->save && vec)
			save_vectors(&jb, c->save, c->save_binary);
		char accs[96] = "";
		if (c->eval && vec)
			snprintf(accs, sizeof accs, "analogy accuracy %.2f%% (%d questions seen, %.1f s), ", acc, seen,
				 te);
		if (jb.left_epoch)
			printf("w2v: host %d left the job before epoch %d (asked to leave)\n", jb.host, jb.left_epoch);
		printf("w2v: %strained %llu words x %d epochs in %.1f s: %.0f words/s (%d node%s x %d thread%s, "
		       "policy %s), final loss %.4f\n",
		       accs, (unsigned long long)jb.cp.words, c->epochs, secs, tput, N, N > 1 ? "s" : "", T,
		       T > 1 ? "s" : "", c->policy == POL_CLASSIC ? "classic" : "localize", loss);
		ps_node_stats st = {0};
		double local = NAN;
		uint64_t reloc = 0;
		double repl = 100.0 * app_repl_share(w, 0);
		if (ps_stats(w, 0, &st) == 0) {
			local = 100.0 * (double)st.local_keys / (double)(st.local_keys + st.remote_keys + 1);
			reloc = st.relocations;
			printf("w2v: node 0: %.1f%% of row accesses local, %llu rows relocated in, %.1f%% served by "
			       "replicas, %llu negatives sampled by psmem (%llu local fallbacks)\n",
			       local, (unsigned long long)reloc, repl, (unsigned long long)st.samples,
			       (unsigned long long)st.sample_fallbacks);
		}
		fflush(stdout);
		if (c->json) {
			app_json *j = app_json_new("w2v");
			app_json_str(j, "policy", c->policy == POL_CLASSIC ? "classic" : "localize");
			app_json_str(j, "sync", c->sync ? c->sync : "none");
			app_json_int(j, "nodes", N);
			app_json_int(j, "threads", T);
			app_json_int(j, "epochs", c->epochs);
			app_json_num(j, "seconds", secs);
			app_json_num(j, "throughput", tput);
			app_json_num(j, "analogy_accuracy", acc);
			app_json_int(j, "questions_seen", seen);
			app_json_num(j, "loss", loss);
			app_json_int(j, "words", (int64_t)jb.cp.words);
			app_json_int(j, "vocab", jb.cp.V);
			app_json_int(j, "dim", c->dim);
			app_json_num(j, "load_seconds", t_load);
			app_json_num(j, "local_percent", local);
			app_json_int(j, "relocations", (int64_t)reloc);
			app_json_int(j, "replicate", c->replicate);
			app_json_int(j, "hot_table", c->hot);
			app_json_int(j, "stay_remote", c->stay);
			app_json_num(j, "repl_rate", c->repl_rate);
			app_json_num(j, "repl_share", repl / 100.0);
			app_json_str(j, "sampling", c->smp.name);
			app_json_num(j, "train_cpu_seconds", jb.cpu_end - jb.cpu_start);
			app_json_int(j, "samples", (int64_t)st.samples);
			app_json_int(j, "sample_fallbacks", (int64_t)st.sample_fallbacks);
			app_json_split(j, "words", jb.host, jb.hosts, jb.nodes, jb.trained_last, jb.trained_all);
			app_members_json(j, &jb.mem);
			app_epoch_counts_json(j, "epoch_host_words", &jb.ecounts, jb.mem.seen);
			app_json_int(j, "first_epoch", jb.first_epoch + 1);
			app_json_int(j, "left_epoch", jb.left_epoch);
			app_json_write_host(j, c->json, jb.host);
		}
	}
	ps_dist_free(jb.negd); /* its workers are done */
	ps_finalize(w);
	app_epoch_counts_free(&jb.ecounts);
	app_members_destroy(&jb.mem);
	return code;
}
