/*
 * sample.c - drawing keys from a distribution over a table's keys, with
 * their current values: NuPS sampling management (naive, local, pool).
 *
 * Distribution (ps_dist): Vose's alias method.  Key weights are scaled to
 * mean 1; keys below 1 ("small") are paired with keys above ("large"): the
 * small key's column keeps its own mass as prob[k] and gives the rest of
 * the column to the large key (alias[k]), whose excess shrinks by as much.
 * A draw picks a column uniformly and flips a biased coin: O(1).
 *
 * Invariants
 *   (SA1) A ps_dist is never written after ps_dist_create returns, so any
 *        number of threads may draw from it without synchronisation.
 *   (SA2) Alias table: P(k) = (prob[k] + sum over j with alias[j] == k of
 *        (1 - prob[j])) / n = w[k] / sum(w), up to double rounding.  A key
 *        of weight 0 is never drawn: its prob is 0 and it is nobody's alias
 *        (aliases are large keys).
 *   (SA3) A ps_sampler belongs to the thread that prepared it: its RNG,
 *        counters and pool are plain fields, never shared.  Its draws are a
 *        function of (table seed, table id, node, user seed), the scheme
 *        and, for local, of the placement at the time of each draw.
 *   (SA4) local never returns a non-local key silently: a draw that found
 *        no local key within LOCAL_TRIES x nodes attempts is a naive draw,
 *        counted in the sampler's fallbacks and the node's
 *        sample_fallbacks.  "Local" is as of the draw: a key may move away
 *        before its values are pulled (the pull stays correct: location
 *        transparency).
 *   (SA5) pool: the pool array is read by the service thread until the
 *        localization handle is waited, so it is reordered (shuffled for
 *        the next pass) only after that wait.  Pass p serves every pool
 *        entry once, so after n = P x U samples each entry was served
 *        exactly U times.
 *
 * Values are pulled with ps_pull_sync: always current, wherever the key is.
 */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "segment.h"
#include "util.h"
#include "world.h"

#define DIST_MAGIC    0x50534453u /* "PSDS" */
#define SAMPLER_MAGIC 0x50535350u /* "PSSP" */
#define LOCAL_TRIES   64          /* rejected draws per node before a fallback */

_Static_assert(PS_SAMPLE_MAX_REUSE == 65536u, "ps_strerror(PS_ESCHEME) names the bound");

struct alias_cell {
	double prob;     /* chance that column k draws k itself */
	uint64_t alias;  /* the key drawn otherwise */
};

struct ps_dist {
	uint32_t magic;
	ps_table *t;               /* built for this table */
	uint64_t n;                /* num_keys */
	struct alias_cell *cell;   /* n cells; NULL: uniform */
};

struct ps_sampler {
	uint32_t magic;
	enum ps_sample_scheme scheme;
	unsigned reuse;
	ps_table *t;
	const ps_dist *d;          /* NULL: uniform over t's keys */
	size_t n, served;
	uint64_t rng[4];           /* xoshiro256** */
	uint64_t fallbacks;
	ps_key *pool;              /* pool: npool drawn keys */
	size_t npool;
	ps_handle loc;             /* pool's localization until waited */
	int loc_rc;
};

/* ---------------------------------------------------------------- rng */

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256** (Blackman & Vigna): 256 bits of state, passes BigCrush. */
static inline uint64_t rng_next(uint64_t s[4])
{
	uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return r;
}

/* Uniform in [0, n), unbiased (Lemire's multiply-and-reject). */
static inline uint64_t rng_below(uint64_t s[4], uint64_t n)
{
	unsigned __int128 m = (unsigned __int128)rng_next(s) * n;
	if ((uint64_t)m < n) {
		uint64_t floor = -n % n;
		while ((uint64_t)m < floor)
			m = (unsigned __int128)rng_next(s) * n;
	}
	return (uint64_t)(m >> 64);
}

static inline double rng_unit(uint64_t s[4])
{
	return (double)(rng_next(s) >> 11) * 0x1p-53; /* [0, 1) */
}

static void rng_seed(uint64_t s[4], const ps_table *t, int node, uint64_t seed)
{
	uint64_t x = ps__mix64(t->d->seed ^ 0x73616d706c65ULL); /* "sample" */
	x = ps__mix64(x ^ (uint64_t)t->id);
	x = ps__mix64(x ^ (uint64_t)node);
	x = ps__mix64(x ^ seed);
	for (int i = 0; i < 4; i++)
		s[i] = ps__mix64(x + (uint64_t)i * 0x9e3779b97f4a7c15ULL); /* splitmix64 stream */
	if (!(s[0] | s[1] | s[2] | s[3]))
		s[0] = 1; /* the one state xoshiro cannot leave */
}

/* ------------------------------------------------------- distributions */

static bool table_ok(const ps_table *t)
{
	return t && t->magic == PS__TABLE_MAGIC;
}

static int check_weights(const double *wt, uint64_t n, double *max)
{
	*max = 0;
	for (uint64_t k = 0; k < n; k++) {
		if (!(wt[k] >= 0) || isinf(wt[k])) /* negative, NaN or infinite */
			return PS_EWEIGHT;
		if (wt[k] > *max)
			*max = wt[k];
	}
	return *max > 0 ? 0 : PS_EZEROWEIGHTS;
}

/*
 * Vose's construction.  scaled[] (in cell[].prob) has mean 1.  work[] holds
 * the small keys growing from the front and the large ones from the back:
 * a key is in at most one of them, so n entries suffice.  Weights are
 * divided by their maximum first, so the sum cannot overflow.
 */
static void build_alias(struct alias_cell *c, uint64_t *work, const double *wt, uint64_t n, double max)
{
	double sum = 0;
	for (uint64_t k = 0; k < n; k++)
		sum += wt[k] / max;
	const double scale = (double)n / sum;
	uint64_t ns = 0, nl = 0, some_large = 0;
	for (uint64_t k = 0; k < n; k++) {
		c[k].prob = wt[k] / max * scale;
		c[k].alias = k;
		if (c[k].prob < 1.0)
			work[ns++] = k;
		else
			work[n - 1 - nl++] = k;
	}
	while (ns && nl) {
		uint64_t s = work[--ns], l = work[n - nl];
		c[s].alias = l;
		some_large = l;
		c[l].prob = (c[l].prob + c[s].prob) - 1.0; /* Schwarz's stable form */
		if (c[l].prob < 1.0) {
			nl--;
			work[ns++] = l;
		}
	}
	/* what is left sits at 1 up to rounding; a weight-0 key left over
	 * (only through extreme rounding) must still never be drawn (SA2) */
	while (nl)
		c[work[n - nl--]].prob = 1.0;
	while (ns) {
		uint64_t s = work[--ns];
		if (c[s].prob > 0.0) {
			c[s].prob = 1.0;
		} else {
			c[s].prob = 0.0;
			c[s].alias = some_large;
		}
	}
}

ps_dist *ps_dist_create(ps_table *t, const double *weights, int *err)
{
	ps_dist *d = NULL;
	uint64_t *work = NULL;
	double max = 0;
	int rc = table_ok(t) ? 0 : PS_ETABLE;
	if (rc == 0 && weights)
		rc = check_weights(weights, t->num_keys, &max);
	if (rc)
		goto out;
	ps_world *w = t->w;
	d = ps__alloc(w, sizeof *d);
	if (!d)
		goto nomem;
	*d = (ps_dist){.magic = DIST_MAGIC, .t = t, .n = t->num_keys};
	if (weights) {
		d->cell = ps__alloc(w, d->n * sizeof *d->cell);
		work = ps__alloc(w, d->n * sizeof *work);
		if (!d->cell || !work)
			goto nomem;
		build_alias(d->cell, work, weights, d->n, max);
		ps__free(w, work);
	}
	goto out;
nomem:
	ps__free(w, work);
	if (d)
		ps__free(w, d->cell);
	ps__free(w, d);
	d = NULL;
	rc = -ENOMEM;
out:
	if (err)
		*err = rc;
	return d;
}

void ps_dist_free(ps_dist *d)
{
	if (!d || d->magic != DIST_MAGIC)
		return;
	d->magic = 0;
	ps_world *w = d->t->w;
	ps__free(w, d->cell);
	ps__free(w, d);
}

/* One exact draw from d (NULL: uniform over n keys). */
static inline ps_key dist_draw(const ps_dist *d, uint64_t n, uint64_t s[4])
{
	uint64_t k = rng_below(s, n);
	if (!d || !d->cell)
		return k;
	return rng_unit(s) < d->cell[k].prob ? k : d->cell[k].alias;
}

/* ------------------------------------------------------------- schemes */

int ps_table_set_sampling(ps_table *t, enum ps_sample_scheme scheme, unsigned reuse)
{
	if (!table_ok(t))
		return PS_ETABLE;
	bool ok;
	switch (scheme) {
	case PS_SAMPLE_NAIVE:
	case PS_SAMPLE_LOCAL:
		ok = reuse <= 1;
		break;
	case PS_SAMPLE_POOL:
		ok = reuse >= 1 && reuse <= PS_SAMPLE_MAX_REUSE;
		break;
	default:
		ok = false;
	}
	if (!ok)
		return PS_ESCHEME;
	/* relaxed: see sample_conf in psmem_int.h */
	atomic_store_explicit(&t->w->sample_conf[t->id], (uint32_t)scheme | (reuse << 8), memory_order_relaxed);
	return 0;
}

static const char *const scheme_names[] = {
	[PS_SAMPLE_NAIVE] = "naive",
	[PS_SAMPLE_LOCAL] = "local",
	[PS_SAMPLE_POOL] = "pool",
};

const char *ps_sample_scheme_name(enum ps_sample_scheme scheme)
{
	return (unsigned)scheme <= PS_SAMPLE_POOL ? scheme_names[scheme] : "?";
}

/* Decimal 1 .. PS_SAMPLE_MAX_REUSE, digits only (no sign, space or 0x). */
static bool parse_reuse(const char *s, unsigned *out)
{
	unsigned v = 0;
	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (unsigned)(*s - '0');
		if (v > PS_SAMPLE_MAX_REUSE)
			return false;
	}
	if (v < 1)
		return false;
	*out = v;
	return true;
}

int ps_sample_scheme_parse(const char *s, enum ps_sample_scheme *scheme, unsigned *reuse)
{
	if (!s || !scheme || !reuse)
		return -EINVAL;
	enum ps_sample_scheme sc;
	unsigned u = 1;
	if (strcmp(s, "naive") == 0) {
		sc = PS_SAMPLE_NAIVE;
	} else if (strcmp(s, "local") == 0) {
		sc = PS_SAMPLE_LOCAL;
	} else if (strcmp(s, "pool") == 0) {
		sc = PS_SAMPLE_POOL;
		u = PS_SAMPLE_DEFAULT_REUSE;
	} else if (strncmp(s, "pool:", 5) == 0 && parse_reuse(s + 5, &u)) {
		sc = PS_SAMPLE_POOL;
	} else {
		return PS_ESCHEME;
	}
	*scheme = sc;
	*reuse = u;
	return 0;
}

/* ------------------------------------------------------------ samplers */

/* local: a draw among the keys this node holds now, else a counted naive
 * draw (SA4). */
static ps_key draw_local(ps_sampler *s)
{
	ps_table *t = s->t;
	const int me = t->w->node, tries = LOCAL_TRIES * t->w->nnodes;
	for (int i = 0; i < tries; i++) {
		ps_key k = dist_draw(s->d, t->num_keys, s->rng);
		/* relaxed: only the owner field is used, as a snapshot of the
		 * placement; the values are read later through the protocol */
		uint64_t lw = atomic_load_explicit(&t->loc[k], memory_order_relaxed);
		if ((lw & PS__LOC_REPL) || (!PS__LOC_IS_REMOTE(lw) && PS__LOC_OWNER(lw) == me))
			return k; /* replicated keys are local everywhere */
	}
	s->fallbacks++;
	return dist_draw(s->d, t->num_keys, s->rng);
}

/* pool: entry `served mod P` of pass `served / P`; a new pass starts with
 * a fresh order (SA5: the localization has been waited by then). */
static ps_key draw_pool(ps_sampler *s)
{
	size_t pos = s->served % s->npool;
	if (pos == 0 && s->served > 0) {
		for (size_t i = s->npool - 1; i > 0; i--) { /* Fisher-Yates */
			size_t j = (size_t)rng_below(s->rng, (uint64_t)i + 1);
			ps_key x = s->pool[i];
			s->pool[i] = s->pool[j];
			s->pool[j] = x;
		}
	}
	return s->pool[pos];
}

static void sampler_free(ps_sampler *s)
{
	ps_world *w = s->t->w;
	s->magic = 0;
	ps__free(w, s->pool);
	ps__free(w, s);
}

/* pool: draws ceil(n / U) keys and starts moving them here. */
static int prepare_pool(ps_sampler *s)
{
	s->npool = s->n / s->reuse + (s->n % s->reuse != 0);
	if (s->npool == 0)
		return 0;
	s->pool = ps__alloc(s->t->w, s->npool * sizeof *s->pool);
	if (!s->pool)
		return -ENOMEM;
	for (size_t i = 0; i < s->npool; i++)
		s->pool[i] = dist_draw(s->d, s->t->num_keys, s->rng);
	s->loc = ps_localize(s->t, s->pool, s->npool);
	return s->loc ? 0 : -ENOMEM;
}

ps_sampler *ps_sample_prepare(ps_table *t, size_t n, const ps_dist *d, uint64_t seed, int *err)
{
	ps_sampler *s = NULL;
	int rc = 0;
	if (!table_ok(t))
		rc = PS_ETABLE;
	else if (d && (d->magic != DIST_MAGIC || d->t != t))
		rc = PS_EDIST;
	else if (n > (size_t)INT64_MAX)
		rc = -EOVERFLOW;
	if (rc)
		goto out;
	s = ps__alloc(t->w, sizeof *s);
	if (!s) {
		rc = -ENOMEM;
		goto out;
	}
	/* relaxed: see sample_conf in psmem_int.h */
	uint32_t conf = atomic_load_explicit(&t->w->sample_conf[t->id], memory_order_relaxed);
	*s = (ps_sampler){.magic = SAMPLER_MAGIC, .scheme = (enum ps_sample_scheme)(conf & 0xff),
			  .reuse = conf >> 8 ? conf >> 8 : 1, .t = t, .d = d, .n = n};
	rng_seed(s->rng, t, t->w->node, seed);
	if (s->scheme == PS_SAMPLE_POOL)
		rc = prepare_pool(s);
	if (rc) {
		sampler_free(s);
		s = NULL;
	}
out:
	if (err)
		*err = rc;
	return s;
}

static bool sampler_ok(const ps_sampler *s)
{
	return s && s->magic == SAMPLER_MAGIC;
}

int ps_sample_wait(ps_sampler *s)
{
	if (!sampler_ok(s))
		return PS_EHANDLE;
	if (s->loc) {
		s->loc_rc = ps_wait(s->loc);
		s->loc = NULL;
	}
	return s->loc_rc;
}

int64_t ps_sample_pull(ps_sampler *s, size_t k, ps_key *keys, float *values)
{
	if (!sampler_ok(s))
		return PS_EHANDLE;
	if (k && !keys)
		return -EINVAL;
	if (k > s->n - s->served)
		return PS_EDRAINED;
	ps_sample_wait(s); /* its error is kept for ps_sample_wait/finish */
	uint64_t fb = s->fallbacks;
	for (size_t i = 0; i < k; i++, s->served++) {
		switch (s->scheme) {
		case PS_SAMPLE_LOCAL:
			keys[i] = draw_local(s);
			break;
		case PS_SAMPLE_POOL:
			keys[i] = draw_pool(s);
			break;
		default:
			keys[i] = dist_draw(s->d, s->t->num_keys, s->rng);
		}
	}
	struct ps__stats *st = &s->t->w->me->stats;
	/* relaxed: statistics counters, they order nothing */
	atomic_fetch_add_explicit(&st->samples, k, memory_order_relaxed);
	if (s->fallbacks != fb)
		atomic_fetch_add_explicit(&st->sample_fallbacks, s->fallbacks - fb, memory_order_relaxed);
	/* keys were drawn in range, so the pull cannot reject them */
	int rc = values && k ? ps_pull_sync(s->t, keys, k, values) : 0;
	return rc ? rc : (int64_t)k;
}

int ps_sample_finish(ps_sampler *s)
{
	if (!sampler_ok(s))
		return PS_EHANDLE;
	int rc = ps_sample_wait(s);
	sampler_free(s);
	return rc;
}

int ps_sample_info_get(const ps_sampler *s, ps_sample_info *o)
{
	if (!sampler_ok(s))
		return PS_EHANDLE;
	if (!o)
		return -EINVAL;
	*o = (ps_sample_info){.scheme = s->scheme, .reuse = s->reuse, .prepared = s->n, .served = s->served,
			      .pool_size = s->npool, .pool = s->pool, .fallbacks = s->fallbacks};
	return 0;
}
