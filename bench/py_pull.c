/*
 * py_pull.c - the C side of bench/py_pull.sh: time of one ps_pull_sync of
 * K keys x V floats in a one-node job, to compare with the same call from
 * Python (bench/py_pull.py).  Same table, same key sequence (keys i*7919 mod
 * N, i = 0..K-1, rotated by the repetition), same repetitions.
 *
 *   build/bench/py_pull [K V REPS]      (default 1000 100 20000)
 * Prints one line: py_pull_c keys=K value_len=V reps=R cpu_ns_per_call=Y
 * ns_per_call=X: the best of 5 rounds of REPS calls, in thread CPU time
 * (less disturbed by other processes) and wall time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "psmem.h"

#define NKEYS 100000u

static double clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	size_t K = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000;
	unsigned V = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 100;
	long reps = argc > 3 ? strtol(argv[3], NULL, 10) : 20000;
	if (K < 1 || K > NKEYS || V < 1 || V > 65536 || reps < 1) {
		fprintf(stderr, "py_pull: usage: py_pull [KEYS 1..%u] [VALUE_LEN 1..65536] [REPS >= 1]\n", NKEYS);
		return 2;
	}
	int err;
	ps_world *w = ps_init(&err);
	if (!w) {
		fprintf(stderr, "py_pull: ps_init: %s\n", ps_strerror(err));
		return 1;
	}
	ps_table_opts o;
	ps_table_opts_init(&o, NKEYS, V);
	o.init = PS_INIT_CONST;
	o.init_a = 1.0f;
	ps_table *t = ps_table_create(w, &o, &err);
	if (!t) {
		fprintf(stderr, "py_pull: ps_table_create: %s\n", ps_strerror(err));
		return 1;
	}
	ps_key *keys = malloc(K * sizeof *keys);
	float *out = malloc(K * V * sizeof *out);
	if (!keys || !out)
		return 1;
	for (size_t i = 0; i < K; i++)
		keys[i] = (ps_key)((i * 7919u) % NKEYS);
	double best = 1e300, best_cpu = 1e300;
	for (int round = 0; round < 5; round++) {
		double t0 = clock_ns(CLOCK_MONOTONIC), c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
		for (long r = 0; r < reps; r++) {
			int rc = ps_pull_sync(t, keys, K, out);
			if (rc < 0) {
				fprintf(stderr, "py_pull: ps_pull_sync: %s\n", ps_strerror(rc));
				return 1;
			}
		}
		double ns = (clock_ns(CLOCK_MONOTONIC) - t0) / (double)reps;
		double cpu = (clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0) / (double)reps;
		best = ns < best ? ns : best;
		best_cpu = cpu < best_cpu ? cpu : best_cpu;
	}
	if (out[K * V - 1] != 1.0f) {
		fprintf(stderr, "py_pull: pulled %g, want 1\n", (double)out[K * V - 1]);
		return 1;
	}
	printf("py_pull_c keys=%zu value_len=%u reps=%ld cpu_ns_per_call=%.0f ns_per_call=%.0f\n", K, V, reps,
	       best_cpu, best);
	free(keys);
	free(out);
	return ps_finalize(w) < 0;
}
