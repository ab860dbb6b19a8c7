/*
 * hogwild_mf - the raw baseline for mf: the same biased-MF SGD as apps/mf.c,
 * but in one process over plain float arrays, T threads updating the item
 * rows without any synchronisation (HOGWILD!), no psmem at all.
 *
 *   hogwild_mf --train FILE [--test FILE] [--rank K] [--lr X] [--reg X]
 *              [--init-std X] [--epochs N] [--threads T] [--seed S]
 *              [--json FILE]
 *
 * What is the same as mf (so that throughput ratios compare parameter
 * management only): the input format and id mapping (first-seen dense ids,
 * test ids looked up, unseen ones predicted from the biases), the model
 * r = mean + b_u + b_i + p_u.q_i, the defaults (rank 100, lr 0.015, reg
 * 0.08, init-std 0.1, 20 epochs, seed 1), the initial values (a function of
 * seed, kind and dense id), the dealing of users to threads (by rating
 * count, snake order), the order (per epoch and thread, the user groups are
 * shuffled with the same RNG stream; a user's ratings in file order), the
 * update (float arithmetic; the item step computed from the old user row),
 * the clipped test RMSE, and what is timed (throughput = training ratings x
 * epochs / training seconds, evaluation excluded).  With --threads 1 the
 * model follows exactly the trajectory of `mf --policy classic` with one node
 * and one thread (the RMSEs agree to about 1e-8: mf sums them in float).
 *
 * The item rows are read and written by several threads at once with plain
 * loads and stores: that is HOGWILD! as it is written by hand in C (the
 * races are benign on x86 and ARM for aligned floats, but they are data
 * races in the C11 sense, so this program is not meant for ThreadSanitizer).
 */
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../apps/common.h"

#define NONE APP_NONE

struct group {
	uint32_t u;
	size_t start, len;
};

struct cfg {
	const char *train, *test, *json;
	int rank, epochs, threads;
	double lr, reg, init_std;
	uint64_t seed;
};

struct tdata {
	struct app_rating *r; /* this thread's ratings, by user, file order within */
	struct group *g;
	size_t nr, ng;
	size_t t0, t1; /* its share of the test ratings */
};

struct job {
	struct cfg c;
	size_t nusers, nitems, ntrain, ntest, test_unseen;
	double mean, rmin, rmax;
	float *P, *Q; /* users x (K+1), items x (K+1): [factors, bias] */
	struct app_rating *test;
	struct tdata *td;
	pthread_barrier_t bar;
	double *sse, *tsse; /* per thread */
	double train_seconds, total_seconds, rmse, train_rmse;
};

/* Each thread's ratings sorted by dense user id (file order within a user)
 * and cut into one group per user. */
static void partition(struct job *jb, const struct app_ratings *tr)
{
	int T = jb->c.threads;
	size_t U = jb->nusers;
	uint64_t *cnt = calloc(U ? U : 1, sizeof *cnt);
	size_t *ustart = calloc(U + 1, sizeof *ustart);
	if (!cnt || !ustart)
		app_die("out of memory");
	for (size_t k = 0; k < tr->n; k++)
		cnt[tr->v[k].u]++;
	uint32_t *uw = app_deal(cnt, U, T);
	jb->td = calloc((size_t)T, sizeof *jb->td);
	if (!jb->td)
		app_die("out of memory");
	for (size_t u = 0; u < U; u++) {
		jb->td[uw[u]].nr += cnt[u];
		jb->td[uw[u]].ng += cnt[u] > 0;
	}
	for (int t = 0; t < T; t++) {
		struct tdata *d = &jb->td[t];
		d->r = malloc((d->nr ? d->nr : 1) * sizeof *d->r);
		d->g = malloc((d->ng ? d->ng : 1) * sizeof *d->g);
		if (!d->r || !d->g)
			app_die("out of memory");
		d->nr = d->ng = 0;
	}
	/* start of user u inside its thread's array: prefix sums per thread */
	for (size_t u = 0; u < U; u++) {
		struct tdata *d = &jb->td[uw[u]];
		ustart[u] = d->nr;
		if (cnt[u])
			d->g[d->ng++] = (struct group){.u = (uint32_t)u, .start = d->nr, .len = cnt[u]};
		d->nr += cnt[u];
	}
	for (size_t k = 0; k < tr->n; k++) {
		uint32_t u = tr->v[k].u;
		jb->td[uw[u]].r[ustart[u]++] = tr->v[k];
	}
	/* test ratings: contiguous shares (any split gives the same sum) */
	for (int t = 0; t < T; t++) {
		jb->td[t].t0 = jb->ntest * (size_t)t / (size_t)T;
		jb->td[t].t1 = jb->ntest * (size_t)(t + 1) / (size_t)T;
	}
	free(uw);
	free(cnt);
	free(ustart);
}

/* ------------------------------------------------------------- training */

static double gauss(uint64_t *s)
{
	double a = app_rand_unit(s), b = app_rand_unit(s);
	return sqrt(-2.0 * log(a + 1e-300)) * cos(6.283185307179586 * b);
}

/* As mf's init_row: N(0, init_std) factors, bias 0, a function of
 * (seed, kind, dense id). */
static void init_row(const struct job *jb, int kind, uint64_t id, float *row)
{
	uint64_t s = jb->c.seed * 0x9e3779b97f4a7c15ULL + (uint64_t)kind * 0x632be59bd9b4e019ULL + id;
	app_rand(&s);
	for (int f = 0; f < jb->c.rank; f++)
		row[f] = (float)(gauss(&s) * jb->c.init_std);
	row[jb->c.rank] = 0;
}

static void shuffle_groups(struct group *g, size_t n, uint64_t *s)
{
	for (size_t k = n; k > 1; k--) {
		size_t j = (size_t)(app_rand(s) % k);
		struct group t = g[k - 1];
		g[k - 1] = g[j];
		g[j] = t;
	}
}

/* One user's ratings: the user row is this thread's alone; the item rows
 * are shared and updated in place (HOGWILD!).  Same arithmetic as mf's
 * train_group: the item step uses the user row before its own step. */
static double train_group(const struct job *jb, const struct group *g, const struct app_rating *r)
{
	int K = jb->c.rank;
	float lr = (float)jb->c.lr, reg = (float)jb->c.reg, mean = (float)jb->mean;
	float *pu = jb->P + (size_t)g->u * (size_t)(K + 1);
	double sse = 0;
	for (size_t k = 0; k < g->len; k++) {
		float *qi = jb->Q + (size_t)r[k].i * (size_t)(K + 1);
		float dot = 0;
		for (int f = 0; f < K; f++)
			dot += pu[f] * qi[f];
		float err = r[k].r - (mean + pu[K] + qi[K] + dot);
		sse += (double)err * err;
		pu[K] += lr * (err - reg * pu[K]);
		qi[K] += lr * (err - reg * qi[K]);
		for (int f = 0; f < K; f++) {
			float p = pu[f], q = qi[f];
			pu[f] = p + lr * (err * q - reg * p);
			qi[f] = q + lr * (err * p - reg * q);
		}
	}
	return sse;
}

static double eval_test(const struct job *jb, size_t t0, size_t t1)
{
	int K = jb->c.rank;
	double sse = 0;
	for (size_t k = t0; k < t1; k++) {
		const struct app_rating *r = &jb->test[k];
		const float *pu = r->u != NONE ? jb->P + (size_t)r->u * (size_t)(K + 1) : NULL;
		const float *qi = r->i != NONE ? jb->Q + (size_t)r->i * (size_t)(K + 1) : NULL;
		double x = jb->mean;
		if (pu)
			x += pu[K];
		if (qi)
			x += qi[K];
		if (pu && qi) {
			float dot = 0;
			for (int f = 0; f < K; f++)
				dot += pu[f] * qi[f];
			x += dot;
		}
		double p = (float)x;
		p = p < jb->rmin ? jb->rmin : p > jb->rmax ? jb->rmax : p;
		double e = r->r - p;
		sse += e * e;
	}
	return sse;
}

struct targ {
	struct job *jb;
	int t;
};

static void *worker(void *arg)
{
	struct targ *a = arg;
	struct job *jb = a->jb;
	const struct cfg *c = &jb->c;
	int t = a->t, T = c->threads;
	struct tdata *d = &jb->td[t];
	bool lead = t == 0;
	app_progress prog;
	double t_start = app_now(), t_train = 0;
	for (int e = 0; e < c->epochs; e++) {
		uint64_t rng = c->seed * 0xd1b54a32d192ed03ULL + (uint64_t)e * 0x9e3779b97f4a7c15ULL + (uint64_t)t;
		if (lead) {
			char what[64];
			snprintf(what, sizeof what, "epoch %d/%d", e + 1, c->epochs);
			app_progress_start(&prog, what, jb->ntrain);
		}
		double t0 = app_now(), sse = 0;
		uint64_t done = 0;
		shuffle_groups(d->g, d->ng, &rng);
		for (size_t k = 0; k < d->ng; k++) {
			sse += train_group(jb, &d->g[k], d->r + d->g[k].start);
			done += d->g[k].len;
			if (lead) {
				uint64_t est = done * (uint64_t)T;
				app_progress_update(&prog, est < jb->ntrain ? est : jb->ntrain, NAN);
			}
		}
		pthread_barrier_wait(&jb->bar);
		t_train += app_now() - t0;
		jb->sse[t] = sse;
		jb->tsse[t] = eval_test(jb, d->t0, d->t1);
		pthread_barrier_wait(&jb->bar);
		if (lead) {
			double s = 0, ts = 0;
			for (int k = 0; k < T; k++) {
				s += jb->sse[k];
				ts += jb->tsse[k];
			}
			jb->train_rmse = sqrt(s / (double)jb->ntrain);
			jb->rmse = jb->ntest ? sqrt(ts / (double)jb->ntest) : NAN;
			char extra[64] = "";
			if (jb->ntest)
				snprintf(extra, sizeof extra, "test RMSE %.4f", jb->rmse);
			app_progress_end(&prog, jb->ntrain, jb->train_rmse, extra);
		}
	}
	if (lead) {
		jb->train_seconds = t_train;
		jb->total_seconds = app_now() - t_start;
	}
	return NULL;
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: hogwild_mf --train FILE [--test FILE] [options]\n"
		"\n"
		"Raw baseline for mf: the same biased matrix factorization SGD, in one process\n"
		"over plain float arrays, T threads updating shared item rows without locks\n"
		"(HOGWILD!); no psmem.  Prints train and test RMSE per epoch.\n"
		"\n"
		"  --train FILE      training ratings, same formats as mf (required)\n"
		"  --test FILE       test ratings: test RMSE per epoch (default: none)\n"
		"  --rank K          factors per user and item (default: 100)\n"
		"  --lr X            SGD learning rate (default: 0.015)\n"
		"  --reg X           L2 regularization of factors and biases (default: 0.08)\n"
		"  --init-std X      std. deviation of the initial factors (default: 0.1)\n"
		"  --epochs N        passes over the training data (default: 20)\n"
		"  --threads T       threads (default: 1)\n"
		"  --seed S          seed of the initial factors and the order (default: 1)\n"
		"  --json FILE       JSON summary (app, policy, nodes, threads, epochs, seconds,\n"
		"                    throughput, rmse, ...); '-' for stdout (default: none)\n"
		"  -h, --help        print this help and exit\n"
		"\n"
		"With one thread the model equals that of mf --policy classic, one node, one thread.\n"
		"Throughput is training ratings per second (evaluation excluded).\n");
}

int main(int argc, char **argv)
{
	app_init("hogwild_mf");
	struct job jb = {
		.c = {.rank = 100, .epochs = 20, .threads = 1, .lr = 0.015, .reg = 0.08, .init_std = 0.1, .seed = 1}};
	struct cfg *c = &jb.c;
	enum { O_TRAIN = 256, O_TEST, O_RANK, O_LR, O_REG, O_INIT, O_EPOCHS, O_THREADS, O_SEED, O_JSON };
	static const struct option opts[] = {
		{"train", 1, 0, O_TRAIN},   {"test", 1, 0, O_TEST},       {"rank", 1, 0, O_RANK},
		{"lr", 1, 0, O_LR},         {"reg", 1, 0, O_REG},         {"init-std", 1, 0, O_INIT},
		{"epochs", 1, 0, O_EPOCHS}, {"threads", 1, 0, O_THREADS}, {"seed", 1, 0, O_SEED},
		{"json", 1, 0, O_JSON},     {"help", 0, 0, 'h'},          {0, 0, 0, 0}};
	int o;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case O_TRAIN: c->train = optarg; break;
		case O_TEST: c->test = optarg; break;
		case O_RANK: c->rank = (int)app_opt_long("--rank", optarg, 1, 4096); break;
		case O_LR: c->lr = app_opt_double("--lr", optarg, 0, 10); break;
		case O_REG: c->reg = app_opt_double("--reg", optarg, 0, 100); break;
		case O_INIT: c->init_std = app_opt_double("--init-std", optarg, 0, 10); break;
		case O_EPOCHS: c->epochs = (int)app_opt_long("--epochs", optarg, 1, 1000000); break;
		case O_THREADS: c->threads = (int)app_opt_long("--threads", optarg, 1, 1024); break;
		case O_SEED: c->seed = (uint64_t)app_opt_long("--seed", optarg, 0, INT64_MAX); break;
		case O_JSON: c->json = optarg; break;
		case 'h': usage(stdout); return 0;
		default: fprintf(stderr, "Try 'hogwild_mf --help'.\n"); return 2;
		}
	}
	if (optind < argc)
		app_die("unexpected argument '%s' (try --help)", argv[optind]);
	if (!c->train)
		app_die("--train FILE is required (try --help)");

	double t_load = app_now();
	struct app_ratings tr = {0}, te = {0};
	app_idmap *users = app_idmap_new(), *items = app_idmap_new();
	double sum = 0;
	jb.rmin = INFINITY;
	jb.rmax = -INFINITY;
	app_load_ratings(c->train, true, users, items, &tr, &sum, &jb.rmin, &jb.rmax);
	if (c->test)
		app_load_ratings(c->test, false, users, items, &te, NULL, NULL, NULL);
	jb.nusers = app_idmap_size(users);
	jb.nitems = app_idmap_size(items);
	jb.ntrain = tr.n;
	jb.ntest = te.n;
	jb.test = te.v;
	jb.mean = sum / (double)tr.n;
	for (size_t k = 0; k < te.n; k++)
		jb.test_unseen += te.v[k].u == NONE || te.v[k].i == NONE;
	t_load = app_now() - t_load;

	partition(&jb, &tr);
	free(tr.v);
	size_t row = (size_t)c->rank + 1;
	jb.P = malloc(jb.nusers * row * sizeof(float));
	jb.Q = malloc(jb.nitems * row * sizeof(float));
	jb.sse = calloc((size_t)c->threads, sizeof(double));
	jb.tsse = calloc((size_t)c->threads, sizeof(double));
	if (!jb.P || !jb.Q || !jb.sse || !jb.tsse)
		app_die("out of memory");
	for (size_t u = 0; u < jb.nusers; u++)
		init_row(&jb, 1, u, jb.P + u * row);
	for (size_t i = 0; i < jb.nitems; i++)
		init_row(&jb, 2, i, jb.Q + i * row);

	printf("hogwild_mf: %zu users, %zu items, %zu training ratings (mean %.4f)", jb.nusers, jb.nitems, jb.ntrain,
	       jb.mean);
	if (c->test)
		printf(", %zu test ratings (%zu with an unseen user or item)", jb.ntest, jb.test_unseen);
	printf("; loaded in %.2f s\n", t_load);
	printf("hogwild_mf: %d thread%s, no psmem, rank %d, lr %g, reg %g, %d epochs\n", c->threads,
	       c->threads > 1 ? "s" : "", c->rank, c->lr, c->reg, c->epochs);
	fflush(stdout);

	pthread_barrier_init(&jb.bar, NULL, (unsigned)c->threads);
	pthread_t *th = malloc((size_t)c->threads * sizeof *th);
	struct targ *ta = malloc((size_t)c->threads * sizeof *ta);
	if (!th || !ta)
		app_die("out of memory");
	for (int t = 0; t < c->threads; t++) {
		ta[t] = (struct targ){&jb, t};
		if (t > 0 && pthread_create(&th[t], NULL, worker, &ta[t]) != 0)
			app_die("cannot start thread %d", t);
	}
	worker(&ta[0]);
	for (int t = 1; t < c->threads; t++)
		pthread_join(th[t], NULL);
	pthread_barrier_destroy(&jb.bar);

	double thr = (double)jb.ntrain * c->epochs / jb.train_seconds;
	if (jb.ntest)
		printf("hogwild_mf: test RMSE %.4f, train RMSE %.4f after %d epochs; %.0f ratings/s (%.2f s training, "
		       "%.2f s in all)\n",
		       jb.rmse, jb.train_rmse, c->epochs, thr, jb.train_seconds, jb.total_seconds);
	else
		printf("hogwild_mf: train RMSE %.4f after %d epochs; %.0f ratings/s (%.2f s training)\n", jb.train_rmse,
		       c->epochs, thr, jb.train_seconds);
	if (c->json) {
		app_json *j = app_json_new("hogwild_mf");
		app_json_str(j, "policy", "none");
		app_json_int(j, "nodes", 1);
		app_json_int(j, "threads", c->threads);
		app_json_int(j, "epochs", c->epochs);
		app_json_num(j, "seconds", jb.total_seconds);
		app_json_num(j, "train_seconds", jb.train_seconds);
		app_json_num(j, "load_seconds", t_load);
		app_json_num(j, "throughput", thr);
		app_json_num(j, "rmse", jb.rmse);
		app_json_num(j, "train_rmse", jb.train_rmse);
		app_json_int(j, "rank", c->rank);
		app_json_num(j, "lr", c->lr);
		app_json_num(j, "reg", c->reg);
		app_json_int(j, "seed", (int64_t)c->seed);
		app_json_int(j, "users", (int64_t)jb.nusers);
		app_json_int(j, "items", (int64_t)jb.nitems);
		app_json_int(j, "train_ratings", (int64_t)jb.ntrain);
		app_json_int(j, "test_ratings", (int64_t)jb.ntest);
		app_json_int(j, "test_unseen", (int64_t)jb.test_unseen);
		app_json_num(j, "global_mean", jb.mean);
		app_json_write(j, c->json);
	}
	for (int t = 0; t < c->threads; t++) {
		free(jb.td[t].r);
		free(jb.td[t].g);
	}
	free(jb.td);
	free(th);
	free(ta);
	free(jb.P);
	free(jb.Q);
	free(jb.sse);
	free(jb.tsse);
	free(te.v);
	app_idmap_free(users);
	app_idmap_free(items);
	return 0;
}
