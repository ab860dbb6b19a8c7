/*
 * zipf.c - a skewed (zipf) pull/push workload: relocation only, replication
 * only, both, and neither (classic), on one psmem job.  Run under psrun
 * (bench/zipf.sh does): every node runs one worker that, step after step,
 * draws a batch of keys from zipf(s) over the table, pulls them, and pushes
 * +1 to every value of every key (a training step's access pattern).
 *
 *   psrun -n 2 build/bench/zipf --mode classic|relocate|replicate|both
 *         [--keys K] [--vlen L] [--batch B] [--steps S] [--zipf S]
 *         [--hot R] [--rate HZ] [--header]
 *
 *   relocate   the apps' localize policy: the next batch is localized
 *              (asynchronously) while this one is processed
 *   replicate  the R hottest keys (zipf rank = key order, known up front as
 *              an app knows its word frequencies) replicated, no localize
 *   both       R hottest replicated, the rest localized as in relocate
 *
 * Keys are spread by hash placement, so hot keys start on every node.
 * After the timed loop: ps_sync, then node 0 replays every node's stream
 * and checks each key's value against the exact sum of pushes (exit 1 if
 * not: "at equal final values").  Node 0 prints one CSV row: mode, nodes,
 * keys, vlen, batch, steps, zipf, hot, rate, seconds (slowest node),
 * mkeys_per_s (all nodes' pulled+pushed keys / seconds), local_share,
 * relocations, repl_share (keys served by a replica), verified.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "psmem.h"

enum mode { CLASSIC, RELOCATE, REPLICATE, BOTH };
static const char *mode_names[] = {"classic", "relocate", "replicate", "both"};

struct cfg {
	enum mode mode;
	uint64_t keys;
	uint32_t vlen, batch, hot;
	long steps;
	double zipf, rate;
	int header;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Zipf sampler by inversion of the cumulative table (binary search). */
struct zipf {
	double *cdf;
	uint64_t n;
};

static void zipf_init(struct zipf *z, uint64_t n, double s)
{
	z->n = n;
	z->cdf = malloc(n * sizeof *z->cdf);
	if (!z->cdf) {
		perror("zipf");
		exit(1);
	}
	double acc = 0;
	for (uint64_t k = 0; k < n; k++)
		z->cdf[k] = acc += 1.0 / pow((double)(k + 1), s);
	for (uint64_t k = 0; k < n; k++)
		z->cdf[k] /= acc;
}

static uint64_t zipf_draw(const struct zipf *z, uint64_t *s)
{
	double u = (double)(splitmix(s) >> 11) / (double)(1ULL << 53);
	uint64_t lo = 0, hi = z->n - 1;
	while (lo < hi) {
		uint64_t mid = (lo + hi) / 2;
		if (z->cdf[mid] < u)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void check(int rc, const char *what)
{
	if (rc < 0) {
		fprintf(stderr, "zipf: %s: %s\n", what, ps_strerror(rc));
		exit(1);
	}
}

static void usage(FILE *f)
{
	fprintf(f, "usage: psrun -n N zipf --mode classic|relocate|replicate|both [--keys K] [--vlen L]\n"
		   "       [--batch B] [--steps S] [--zipf S] [--hot R] [--rate HZ] [--header]\n");
}

static void parse(int argc, char **argv, struct cfg *c)
{
	static const struct option opts[] = {
		{"mode", 1, 0, 'm'}, {"keys", 1, 0, 'k'}, {"vlen", 1, 0, 'v'}, {"batch", 1, 0, 'b'},
		{"steps", 1, 0, 's'}, {"zipf", 1, 0, 'z'}, {"hot", 1, 0, 'H'}, {"rate", 1, 0, 'r'},
		{"header", 0, 0, 'h'}, {"help", 0, 0, '?'}, {0, 0, 0, 0}};
	*c = (struct cfg){.mode = CLASSIC, .keys = 1000000, .vlen = 32, .batch = 64, .hot = 1000,
			  .steps = 100000, .zipf = 1.1, .rate = 100};
	int o;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'm': {
			int i = 0;
			while (i < 4 && strcmp(optarg, mode_names[i]))
				i++;
			if (i == 4) {
				fprintf(stderr, "zipf: --mode: '%s' is not classic, relocate, replicate or both\n", optarg);
				exit(2);
			}
			c->mode = (enum mode)i;
			break;
		}
		case 'k': c->keys = strtoull(optarg, NULL, 10); break;
		case 'v': c->vlen = (uint32_t)atoi(optarg); break;
		case 'b': c->batch = (uint32_t)atoi(optarg); break;
		case 's': c->steps = atol(optarg); break;
		case 'z': c->zipf = atof(optarg); break;
		case 'H': c->hot = (uint32_t)atoi(optarg); break;
		case 'r': c->rate = atof(optarg); break;
		case 'h': c->header = 1; break;
		case '?':
		default: usage(stderr); exit(2);
		}
	}
	if (c->keys < 2 || c->vlen < 1 || c->batch < 1 || c->steps < 1 || c->zipf <= 0 || c->hot > c->keys) {
		fprintf(stderr, "zipf: bad sizes (keys >= 2, vlen, batch, steps >= 1, zipf > 0, hot <= keys)\n");
		exit(2);
	}
}

static void draw_batch(const struct zipf *z, uint64_t *s, ps_key *keys, uint32_t b)
{
	for (uint32_t i = 0; i < b; i++)
		keys[i] = zipf_draw(z, s);
}

int main(int argc, char **argv)
{
	struct cfg c;
	parse(argc, argv, &c);
	int err;
	ps_world *w = ps_init_threads(1, &err);
	if (!w)
		check(err, "ps_init");
	/* across hosts (psrun --hosts): global node numbers, host-major */
	const int me = ps_host_id(w) * ps_num_nodes(w) + ps_node_id(w), nn = ps_num_hosts(w) * ps_num_nodes(w);
	ps_table_opts o;
	ps_table_opts_init(&o, c.keys, c.vlen);
	o.placement = PS_PLACE_HASH;
	bool repl = c.mode == REPLICATE || c.mode == BOTH;
	bool loc = c.mode == RELOCATE || c.mode == BOTH;
	if (repl) {
		o.repl_max = c.hot;
		o.repl_rate = c.rate;
	}
	ps_table *t = ps_table_create(w, &o, &err);
	if (!t)
		check(err, "table");
	if (repl && ps_node_id(w) == 0) { /* every host replicates the hot keys */
		ps_key *hot = malloc(sizeof *hot * c.hot);
		for (uint32_t i = 0; i < c.hot; i++)
			hot[i] = i;
		check(ps_replicate(t, hot, c.hot), "ps_replicate");
		free(hot);
	}
	struct zipf z;
	zipf_init(&z, c.keys, c.zipf);
	/* the whole key stream is drawn before timing: the sampler is not
	 * what is measured */
	ps_key *stream = malloc(sizeof(ps_key) * c.batch * (size_t)c.steps);
	if (!stream) {
		perror("zipf: stream");
		return 1;
	}
	uint64_t seed = 1000 + (uint64_t)me;
	draw_batch(&z, &seed, stream, c.batch * (uint32_t)c.steps);
	ps_key *cur = malloc(sizeof(ps_key) * c.batch);
	float *vals = malloc(sizeof(float) * c.batch * c.vlen), *upd = malloc(sizeof(float) * c.batch * c.vlen);
	for (size_t i = 0; i < (size_t)c.batch * c.vlen; i++)
		upd[i] = 1.0f;
	check(ps_barrier(w), "barrier");
	ps_node_stats s0;
	ps_stats(w, ps_node_id(w), &s0);
	double t0 = now_s();
	ps_handle h = loc ? ps_localize(t, stream, c.batch) : NULL;
	for (long step = 0; step < c.steps; step++) {
		const ps_key *keys = stream + (size_t)step * c.batch;
		if (h)
			check(ps_wait(h), "localize");
		h = NULL;
		if (loc && step + 1 < c.steps)
			h = ps_localize(t, keys + c.batch, c.batch);
		check(ps_pull_sync(t, keys, c.batch, vals), "pull");
		check(ps_push_sync(t, keys, c.batch, upd), "push");
	}
	double mine = now_s() - t0;
	ps_node_stats s1;
	ps_stats(w, ps_node_id(w), &s1);
	check(ps_barrier(w), "barrier");
	check(ps_sync(t), "ps_sync");
	if (ps_num_hosts(w) > 1) { /* the global protocol (psmem.h, ps_sync) */
		check(ps_barrier(w), "barrier");
		check(ps_sync(t), "ps_sync");
	}

	/* node 0 verifies and reports; the slowest node's time comes through
	 * a one-key table written by each node */
	ps_table_opts to;
	ps_table_opts_init(&to, (uint64_t)nn, 1);
	ps_table *times = ps_table_create(w, &to, &err);
	if (!times)
		check(err, "times table");
	ps_key mk = (ps_key)me;
	float fm = (float)mine;
	check(ps_push_sync(times, &mk, 1, &fm), "push time");
	check(ps_barrier(w), "barrier");
	int rc = 0;
	if (me == 0) {
		double slowest = 0;
		for (int n = 0; n < nn; n++) {
			ps_key k = (ps_key)n;
			float f;
			ps_pull_sync(times, &k, 1, &f);
			slowest = f > slowest ? f : slowest;
		}
		uint32_t *cnt = calloc(c.keys, sizeof *cnt);
		for (int n = 0; n < nn; n++) {
			uint64_t sd = 1000 + (uint64_t)n;
			for (long st = 0; st < c.steps; st++) {
				draw_batch(&z, &sd, cur, c.batch);
				for (uint32_t i = 0; i < c.batch; i++)
					cnt[cur[i]]++;
			}
		}
		float *v = malloc(sizeof(float) * c.vlen);
		long bad = 0;
		for (ps_key k = 0; k < c.keys; k++) {
			ps_pull_sync(t, &k, 1, v);
			for (uint32_t j = 0; j < c.vlen; j++)
				if (v[j] != (float)cnt[k] && bad++ < 3)
					fprintf(stderr, "zipf: key %lu = %g, expected %u\n", (unsigned long)k, (double)v[j],
						cnt[k]);
		}
		uint64_t keys_all = (uint64_t)nn * (uint64_t)c.steps * c.batch * 2;
		uint64_t acc = (s1.keys_pulled - s0.keys_pulled) + (s1.keys_pushed - s0.keys_pushed);
		uint64_t local = s1.local_keys - s0.local_keys;
		if (c.header)
			printf("mode,nodes,keys,vlen,batch,steps,zipf,hot,rate,seconds,mkeys_per_s,local_share,"
			       "relocations,repl_share,verified\n");
		printf("%s,%d,%lu,%u,%u,%ld,%.2f,%u,%g,%.3f,%.3f,%.3f,%lu,%.3f,%s\n", mode_names[c.mode], nn,
		       (unsigned long)c.keys, c.vlen, c.batch, c.steps, c.zipf, repl ? c.hot : 0, repl ? c.rate : 0,
		       slowest, (double)keys_all / slowest / 1e6, acc ? (double)local / (double)acc : 0,
		       (unsigned long)(s1.relocations - s0.relocations),
		       acc ? (double)(s1.repl_keys - s0.repl_keys) / (double)acc : 0, bad ? "no" : "yes");
		rc = bad != 0;
		free(cnt);
		free(v);
	}
	free(z.cdf);
	free(cur);
	free(stream);
	free(vals);
	free(upd);
	ps_finalize(w);
	return rc;
}
