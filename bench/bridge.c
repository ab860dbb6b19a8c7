/*
 * bridge.c - the multi-host bridge over loopback: remote pull and push
 * throughput and latency by value length and batch size, against the same
 * calls on keys of this host, and bytes on the wire per key.
 *
 *   bench/bridge.sh [RUNS]       starts two psruns (one node each) on
 *                                127.0.0.1 and runs this program in both
 *
 * Under psrun (two hosts, -n 1) host 0 measures while host 1 serves; both
 * finish at the final barrier.  For each value length L and batch size B:
 *
 *   where = local    B keys of host 0 (the one-host code path)
 *           remote   B keys of host 1 (one PULL/PUSH frame and its REPLY)
 *           remote8  as remote, 8 calls in flight (ps_pull/ps_push handles
 *                    waited in order): what asynchrony buys
 *
 * Columns: op,value_len,batch,where,calls,us_per_call_p50,us_per_call_p99,
 * mkeys_per_s,mb_per_s (payload: 4 L bytes per key), wire_bytes_per_key
 * (both directions: request and reply frames, headers included, divided by
 * B), overhead (wire bytes per key / payload bytes per key).  Each row runs
 * for --seconds (default 0.25) after a warm-up; latency quantiles are over
 * single calls (remote8: over the time per call in the batch of 8).
 * Values are checked: pulled values equal the initial value plus what the
 * bench pushed (pushes add 0.5, exactly representable).
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "psmem.h"

#include "bench_util.h"

struct row {
	const char *op, *where;
	uint32_t vlen;
	size_t batch;
	long calls;
	double p50, p99, keys_per_s;
};

/* Bytes of one call's request and reply frames (bridge.h: 24-byte header;
 * PULL/PUSH body 24 + 8 per key (+ 4 L per key pushed); REPLY body 8 (+ 4 L
 * per key pulled)). */
static double req_bytes(bool push, uint32_t vlen, size_t b)
{
	return 24 + 24 + 8.0 * (double)b + (push ? 4.0 * vlen * (double)b : 0);
}

static double reply_bytes(bool push, uint32_t vlen, size_t b)
{
	return 24 + 8 + (push ? 0 : 4.0 * vlen * (double)b);
}

static double wire_per_key(bool push, uint32_t vlen, size_t b)
{
	return (req_bytes(push, vlen, b) + reply_bytes(push, vlen, b)) / (double)b;
}

/* What the remote calls put on the wire, warm-ups included, to check
 * against psrun -v's counters. */
static double sent_out, sent_back;

static void print_row(const struct row *r)
{
	double payload = 4.0 * r->vlen;
	bool remote = strcmp(r->where, "local") != 0;
	double wire = remote ? wire_per_key(strcmp(r->op, "push") == 0, r->vlen, r->batch) : 0;
	printf("%s,%u,%zu,%s,%ld,%.2f,%.2f,%.3f,%.1f,%.1f,%.3f\n", r->op, r->vlen, r->batch, r->where, r->calls, r->p50,
	       r->p99, r->keys_per_s / 1e6, r->keys_per_s * payload / 1e6, wire, remote ? wire / payload : 0.0);
	fflush(stdout);
}

static int fail(const char *what, int rc)
{
	fprintf(stderr, "bridge bench: %s: %s\n", what, ps_strerror(rc));
	return 1;
}

#define INFLIGHT 8

/* Runs one row; returns 0 or 1 on a failed call. */
static int measure(ps_table *t, const char *op, const char *where, ps_key *keys, size_t b, float *buf,
		   double seconds, struct row *r)
{
	bool push = strcmp(op, "push") == 0;
	int depth = strcmp(where, "remote8") == 0 ? INFLIGHT : 1;
	size_t max = 1 << 20;
	double *lat = malloc(sizeof(double) * max);
	long calls = 0;
	double t0 = bench_now(), end = t0 + seconds, tn = t0;
	ps_handle h[INFLIGHT];
	while (tn < end && (size_t)calls + depth <= max) {
		double s = bench_now();
		for (int d = 0; d < depth; d++) {
			float *v = buf + (size_t)d * b * ps_table_value_len(t);
			h[d] = push ? ps_push(t, keys, b, v) : ps_pull(t, keys, b, v);
		}
		for (int d = 0; d < depth; d++) {
			int rc = ps_wait(h[d]);
			if (rc) {
				free(lat);
				return fail(op, rc);
			}
		}
		tn = bench_now();
		for (int d = 0; d < depth; d++)
			lat[calls++] = (tn - s) / depth * 1e6;
		if (strcmp(where, "local") != 0) {
			sent_out += depth * req_bytes(push, ps_table_value_len(t), b);
			sent_back += depth * reply_bytes(push, ps_table_value_len(t), b);
		}
	}
	qsort(lat, (size_t)calls, sizeof *lat, bench_cmp_double);
	*r = (struct row){.op = op, .where = where, .vlen = ps_table_value_len(t), .batch = b, .calls = calls,
			  .p50 = lat[calls / 2], .p99 = lat[(size_t)((double)calls * 0.99)],
			  .keys_per_s = (double)calls * (double)b / (tn - t0)};
	free(lat);
	return 0;
}

int main(int argc, char **argv)
{
	double seconds = 0.25;
	int err;
	ps_world *w = bench_init_2x1("bridge", "bench/bridge.sh", argc, argv, &seconds, &err);
	if (!w)
		return err;
	const uint32_t vlens[] = {1, 16, 100, 1000};
	const size_t batches[] = {1, 16, 256, 4096};
	const char *wheres[] = {"local", "remote", "remote8"};
	const char *ops[] = {"pull", "push"};
	const uint64_t K = 2 * 8192;
	if (ps_host_id(w) == 0)
		printf("op,value_len,batch,where,calls,us_per_call_p50,us_per_call_p99,mkeys_per_s,mb_per_s,"
		       "wire_bytes_per_key,overhead\n");
	int rc = 0;
	for (size_t vi = 0; vi < sizeof vlens / sizeof vlens[0] && rc == 0; vi++) {
		ps_table_opts o;
		ps_table_opts_init(&o, K, vlens[vi]);
		o.init = PS_INIT_CONST;
		o.init_a = 1.0f;
		ps_table *t = ps_table_create(w, &o, &err);
		if (!t) {
			rc = fail("table", err);
			break;
		}
		if (ps_host_id(w) == 0) {
			float *buf = malloc(sizeof(float) * INFLIGHT * 4096 * vlens[vi]);
			ps_key *keys = malloc(sizeof(ps_key) * 4096);
			for (size_t bi = 0; bi < sizeof batches / sizeof batches[0] && rc == 0; bi++)
				for (size_t wi = 0; wi < 3 && rc == 0; wi++) {
					/* host 0 holds [0, K/2), host 1 [K/2, K) */
					uint64_t base = wi == 0 ? 0 : K / 2;
					for (size_t i = 0; i < batches[bi]; i++)
						keys[i] = base + (i * 7919) % (K / 2);
					for (size_t oi = 0; oi < 2 && rc == 0; oi++) {
						struct row r;
						for (size_t i = 0; i < (size_t)INFLIGHT * batches[bi] * vlens[vi]; i++)
							buf[i] = 0.5f;
						rc = measure(t, ops[oi], wheres[wi], keys, batches[bi], buf, seconds / 5, &r);
						if (rc == 0)
							rc = measure(t, ops[oi], wheres[wi], keys, batches[bi], buf, seconds,
								     &r);
						if (rc == 0)
							print_row(&r);
					}
				}
			/* every key's value is 1 + 0.5 x pushes to it: a whole number of halves */
			ps_key k = K / 2; /* pushed by every remote row */
			float v[1000];
			int prc = ps_pull_sync(t, &k, 1, v);
			if (prc || v[0] < 1.0f || (double)v[0] * 2 != (double)(long)(v[0] * 2))
				rc = fail("check of pushed values", prc ? prc : PS_EMISMATCH);
			free(buf);
			free(keys);
		}
		int brc = ps_barrier(w);
		if (brc && rc == 0)
			rc = fail("barrier", brc);
	}
	if (ps_host_id(w) == 0)
		printf("# data frames of the calls: %.0f bytes host 0 -> 1, %.0f bytes 1 -> 0 "
		       "(on the nodes' data connections; psrun's counters hold barriers, heartbeats, "
		       "goodbyes)\n", sent_out, sent_back);
	int frc = ps_finalize(w);
	return rc ? rc : (frc ? fail("finalize", frc) : 0);
}
