/*
 * filters.c - the wire filters (PS_WIRE_KEYCACHE, PS_WIRE_COMPRESS) on the
 * direct data connection between the two hosts' nodes: bytes on the wire
 * per key and keys/s, per filter setting and workload (figures:
 * docs/DESIGN.md "Wire filters", measured with
 * `bash bench/filters.sh -n 3 --seconds 1` on an AMD EPYC).
 *
 *   bench/filters.sh [-n RUNS] [--seconds S]   two psruns (one node each) on
 *                                              127.0.0.1, RUNS runs, medians
 *
 * Under psrun (two hosts, -n 1) host 0 measures while host 1 serves.  Four
 * tables of 2 x 8192 keys x 100 floats, one per setting (none, keycache,
 * compress, both); for each, on the same 4096 keys of host 1:
 *
 *   pull          the same 4096 keys pulled again and again (values:
 *                 uniform init, like embeddings)
 *   push_sparse   gradients with 90% zeros (8 different buffers in turn)
 *   push_dense    random floats (8 buffers in turn)
 *
 * Columns: filter,workload,calls,mkeys_per_s,wire_bytes_per_key (PULL/PUSH
 * and REPLY frames, headers included, both directions, from the library's
 * counters: filter.h),plain_bytes_per_key (the same frames unfiltered),
 * ratio (plain / wire).  Each row runs --seconds (default 1) in all, in
 * 10 slices taking turns with the other settings of its workload (so that
 * a machine whose load changes slows every setting alike), after a
 * warm-up.  Rows are grouped by workload.  At the end host 0 assigns the plain table's
 * values through each filtered table and pulls them back: bit for bit.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "filter.h"
#include "psmem.h"

#include "bench_util.h"

#define K (2 * 8192)
#define N 4096
#define VL 100
#define BUFS 8
#define SLICES 10

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static uint64_t wire(bool plain)
{
	struct ps__filter_stats s;
	ps__filter_stats(&s);
	return plain ? s.req_plain + s.reply_plain : s.req_bytes + s.reply_bytes;
}

static int fail(const char *what, int rc)
{
	fprintf(stderr, "filters bench: %s: %s\n", what, ps_strerror(rc));
	return 1;
}

/* One (setting, workload) cell: what its slices added up to. */
struct cell {
	long calls;
	double secs;
	uint64_t wire, plain;
};

/* Runs op on t for seconds, adding to c; returns 0 or the first failure. */
static int slice(ps_table *t, const char *wl, const ps_key *keys, float *const bufs[], bool push, double seconds,
		 struct cell *c)
{
	uint64_t w0 = wire(false), p0 = wire(true);
	double t0 = bench_now(), tn = t0;
	long calls = 0;
	while (tn - t0 < seconds) {
		float *v = bufs[(c->calls + calls) % BUFS];
		int rc = push ? ps_push_sync(t, keys, N, v) : ps_pull_sync(t, keys, N, v);
		if (rc)
			return fail(wl, rc);
		calls++;
		tn = bench_now();
	}
	c->calls += calls;
	c->secs += tn - t0;
	c->wire += wire(false) - w0;
	c->plain += wire(true) - p0;
	return 0;
}

int main(int argc, char **argv)
{
	double seconds = 1.0;
	int err;
	ps_world *w = bench_init_2x1("filters", "bench/filters.sh", argc, argv, &seconds, &err);
	if (!w)
		return err;
	const char *names[] = {"none", "keycache", "compress", "both"};
	const uint32_t flags[] = {0, PS_WIRE_KEYCACHE, PS_WIRE_COMPRESS, PS_WIRE_KEYCACHE | PS_WIRE_COMPRESS};
	ps_table *t[4];
	for (int f = 0; f < 4; f++) {
		ps_table_opts o;
		ps_table_opts_init(&o, K, VL);
		o.init = PS_INIT_UNIFORM;
		o.init_a = 0.1f;
		o.seed = 5;
		o.flags = flags[f];
		if (!(t[f] = ps_table_create(w, &o, &err)))
			return fail("table", err);
	}
	int rc = 0;
	if (ps_host_id(w) == 0) {
		printf("filter,workload,calls,mkeys_per_s,wire_bytes_per_key,plain_bytes_per_key,ratio\n");
		ps_key *keys = malloc(sizeof(ps_key) * N);
		for (size_t i = 0; i < N; i++)
			keys[i] = K / 2 + (i * 7919) % (K / 2); /* held by host 1 */
		float *pullb[BUFS], *sparse[BUFS], *dense[BUFS];
		uint64_t s = 12345;
		for (int b = 0; b < BUFS; b++) {
			pullb[b] = malloc(4ULL * N * VL);
			sparse[b] = malloc(4ULL * N * VL);
			dense[b] = malloc(4ULL * N * VL);
			for (size_t i = 0; i < (size_t)N * VL; i++) {
				/* full-precision floats in (-1, 1): every mantissa bit random */
				uint64_t r = rnd(&s);
				float x = (float)((double)(r >> 11) / 4503599627370496.0 - 1.0);
				sparse[b][i] = rnd(&s) % 10 ? 0.0f : x;
				dense[b][i] = x;
			}
		}
		/* the four settings of a workload take turns in SLICES slices, so
		 * that a machine whose load changes (other jobs) slows them alike */
		const char *wl[] = {"pull", "push_sparse", "push_dense"};
		float *const *bufs[] = {pullb, sparse, dense};
		for (int k = 0; k < 3 && !rc; k++) {
			struct cell c[4] = {{0}}, warm = {0};
			for (int f = 0; f < 4 && !rc; f++)
				rc = slice(t[f], wl[k], keys, bufs[k], k > 0, seconds / 4 / 4, &warm);
			for (int sl = 0; sl < SLICES && !rc; sl++)
				for (int f = 0; f < 4 && !rc; f++)
					rc = slice(t[f], wl[k], keys, bufs[k], k > 0, seconds / SLICES, &c[f]);
			for (int f = 0; f < 4 && !rc; f++) {
				double keys_n = (double)c[f].calls * N;
				double wb = (double)c[f].wire / keys_n, pb = (double)c[f].plain / keys_n;
				printf("%s,%s,%ld,%.3f,%.1f,%.1f,%.2f\n", names[f], wl[k], c[f].calls,
				       keys_n / c[f].secs / 1e6, wb, pb, pb / wb);
			}
			fflush(stdout);
		}
		/* the filters change bytes, never values: the plain table's
		 * values, assigned through each filtered table (a PUSH frame) and
		 * pulled back (a REPLY), come back bit for bit */
		if (!rc) {
			float *a = pullb[0], *b = pullb[1];
			rc = ps_pull_sync(t[0], keys, N, a);
			for (int f = 1; f < 4 && !rc; f++) {
				rc = ps_assign_sync(t[f], keys, N, a);
				if (!rc)
					rc = ps_pull_sync(t[f], keys, N, b);
				if (!rc && memcmp(a, b, 4ULL * N * VL))
					rc = fail("values differ after a filtered assign and pull", PS_EMISMATCH);
			}
		}
		for (int b = 0; b < BUFS; b++) {
			free(pullb[b]);
			free(sparse[b]);
			free(dense[b]);
		}
		free(keys);
	}
	int brc = ps_barrier(w);
	if (brc && !rc)
		rc = fail("barrier", brc);
	int frc = ps_finalize(w);
	return rc ? rc : (frc ? fail("finalize", frc) : 0);
}
