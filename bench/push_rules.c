/*
 * push_rules.c - cost of a push per key under each update rule, on a
 * cache-resident table, so that the per-key work (lock, rule, unlock) is
 * what is measured rather than memory latency.  CSV on stdout.
 *
 *   build/bench/push_rules [--value-lens L,L,...] [--reps R (default 30)]
 *
 * One private one-node job; per value length and rule one table of 4096
 * keys (range placement), batches of 1000 random keys, each repetition
 * 20 batches; the row is the fastest repetition (the minimum is the figure
 * least disturbed by other load on a shared machine).  Columns:
 * rule,value_len,ns_per_key,ratio_to_sum.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "psmem.h"

#define KEYS 4096
#define BATCH 1000
#define BATCHES 20

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static const struct {
	const char *name;
	uint32_t rule;
	float p[4];
} rules[] = {
	{"sum", PS_RULE_SUM, {0, 0, 0, 0}},
	{"assign", PS_RULE_ASSIGN, {0, 0, 0, 0}},
	{"sgd", PS_RULE_SGD, {0.01f, 0, 0, 0}},
	{"adagrad", PS_RULE_ADAGRAD, {0.01f, 1e-8f, 0, 0}},
	{"adam", PS_RULE_ADAM, {0.001f, 0.9f, 0.999f, 1e-8f}},
};

/* ns per key of the fastest of reps repetitions. */
static double measure(ps_world *w, uint32_t len, int r, int reps)
{
	ps_table_opts o;
	ps_table_opts_init(&o, KEYS, len);
	o.rule = rules[r].rule;
	memcpy(o.rule_params, rules[r].p, sizeof o.rule_params);
	int err;
	ps_table *t = ps_table_create(w, &o, &err);
	if (!t) {
		fprintf(stderr, "push_rules: table: %s\n", ps_strerror(err));
		exit(1);
	}
	ps_key keys[BATCH];
	float *u = calloc((size_t)BATCH * len, sizeof *u);
	if (!u)
		exit(1);
	uint64_t s = 1;
	for (int i = 0; i < BATCH; i++) {
		s = s * 6364136223846793005ULL + 1442695040888963407ULL;
		keys[i] = (s >> 33) % KEYS;
	}
	for (size_t i = 0; i < (size_t)BATCH * len; i++)
		u[i] = 1e-3f * (float)(i % 7);
	double best = 1e30;
	for (int rep = 0; rep < reps; rep++) {
		double t0 = now();
		for (int b = 0; b < BATCHES; b++)
			if (ps_push_sync(t, keys, BATCH, u)) {
				fprintf(stderr, "push_rules: push failed\n");
				exit(1);
			}
		double ns = (now() - t0) * 1e9 / (BATCHES * BATCH);
		best = ns < best ? ns : best;
	}
	free(u);
	return best;
}

int main(int argc, char **argv)
{
	const char *lens = "1,16,100,1000";
	int reps = 30;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--value-lens") && i + 1 < argc)
			lens = argv[++i];
		else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
			reps = atoi(argv[++i]);
		else {
			fprintf(stderr, "usage: push_rules [--value-lens L,L,...] [--reps R]\n");
			return strcmp(argv[i], "--help") ? 2 : 0;
		}
	}
	if (reps < 1) {
		fprintf(stderr, "push_rules: --reps must be at least 1\n");
		return 2;
	}
	int err;
	ps_world *w = ps_init_threads(1, &err);
	if (!w) {
		fprintf(stderr, "push_rules: ps_init: %s\n", ps_strerror(err));
		return 1;
	}
	printf("rule,value_len,ns_per_key,ratio_to_sum\n");
	char *copy = strdup(lens);
	for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ",")) {
		long len = strtol(tok, NULL, 10);
		if (len < 1 || len > 65536) {
			fprintf(stderr, "push_rules: value length '%s' is not 1..65536\n", tok);
			return 2;
		}
		double sum = 0;
		for (size_t r = 0; r < sizeof rules / sizeof *rules; r++) {
			double ns = measure(w, (uint32_t)len, (int)r, reps);
			if (r == 0)
				sum = ns;
			printf("%s,%ld,%.2f,%.2f\n", rules[r].name, len, ns, ns / sum);
			fflush(stdout);
		}
	}
	free(copy);
	ps_finalize(w);
	return 0;
}
