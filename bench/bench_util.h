/*
 * bench/bench_util.h - pieces the bench programs share: the clock, the
 * ordering of latencies, and the start of a 2-host job of one node each.
 *
 * Header only (every function static inline): bench/<name>.c includes it
 * by a relative path, so the Makefile's bench rules need nothing more.
 * A program that does not include psmem.h first gets only the first two.
 */
#ifndef PS_BENCH_UTIL_H
#define PS_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Seconds on CLOCK_MONOTONIC (an arbitrary origin: use differences). */
static inline double bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* qsort comparator: doubles in ascending order. */
static inline int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

#ifdef PSMEM_H
/*
 * bench_init_2x1(NAME, SCRIPT, ARGC, ARGV, SECONDS, RC): reads "--seconds S"
 * from the arguments into *SECONDS (left as it is when absent), then joins
 * the job with one thread.  Returns the world, or NULL with *RC the exit
 * status: 1 when ps_init fails, 2 when the job is not 2 hosts of 1 node
 * (then SCRIPT, the script that starts it so, is named).
 */
static inline ps_world *bench_init_2x1(const char *name, const char *script, int argc, char **argv,
				       double *seconds, int *rc)
{
	for (int i = 1; i + 1 < argc; i += 2)
		if (!strcmp(argv[i], "--seconds"))
			*seconds = atof(argv[i + 1]);
	int err;
	ps_world *w = ps_init_threads(1, &err);
	if (!w) {
		fprintf(stderr, "%s bench: ps_init: %s\n", name, ps_strerror(err));
		*rc = 1;
		return NULL;
	}
	if (ps_num_hosts(w) != 2 || ps_num_nodes(w) != 1) {
		fprintf(stderr, "%s bench: run me as 2 hosts of 1 node (%s)\n", name, script);
		ps_finalize(w);
		*rc = 2;
		return NULL;
	}
	return w;
}
#endif /* PSMEM_H */

#endif /* PS_BENCH_UTIL_H */
