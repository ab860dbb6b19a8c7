/*
 * demo - a small real training job: matrix factorisation of a synthetic
 * low-rank matrix with SGD, its factors kept in psmem tables.
 *
 *   psrun -n 2 -t 1 build/apps/demo [--epochs N] [--users U] [--items I]
 *
 * Each node trains on the ratings of its own users (range partition, so its
 * user rows are local); item rows start hash-partitioned and each worker
 * localizes the items of its next batch before using them (asynchronously,
 * overlapped with the current batch).  Training RMSE is summed through a
 * psmem table and printed by node 0 after each epoch's barrier.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "psmem.h"

#define RANK 8

struct cfg {
	int epochs;
	uint64_t users, items, per_user;
	float lr, reg;
};

struct job {
	struct cfg c;
	ps_table *U, *V, *M; /* user factors, item factors, metrics */
};

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static float rng_unit(uint64_t *s) { return (float)((rng_next(s) >> 40) / (double)(1 << 24)); }

/* The hidden true factors: a function of the id, identical on every node. */
static void true_row(uint64_t id, uint64_t salt, float *out)
{
	uint64_t s = id * 1315423911ULL + salt;
	for (int j = 0; j < RANK; j++)
		out[j] = rng_unit(&s) * 0.8f;
}

/* Rating i of user u: (item, value). */
static void rating(const struct cfg *c, uint64_t u, uint64_t i, uint64_t *item, float *r)
{
	uint64_t s = u * 2654435761ULL + i * 40503ULL + 7;
	*item = rng_next(&s) % c->items;
	float a[RANK], b[RANK];
	true_row(u, 1, a);
	true_row(*item, 2, b);
	float dot = 0;
	for (int j = 0; j < RANK; j++)
		dot += a[j] * b[j];
	*r = dot + (rng_unit(&s) - 0.5f) * 0.1f;
}

static void worker(ps_world *w, int tid, void *arg)
{
	struct job *jb = arg;
	const struct cfg *c = &jb->c;
	int nodes = ps_num_nodes(w), me = ps_node_id(w), T = ps_num_threads(w);
	uint64_t u0 = c->users * (uint64_t)me / (uint64_t)nodes, u1 = c->users * (uint64_t)(me + 1) / (uint64_t)nodes;
	float uf[RANK], vf[RANK], du[RANK], dv[RANK];
	ps_key items[64];
	for (int e = 0; e < c->epochs; e++) {
		double sse = 0;
		uint64_t cnt = 0;
		for (uint64_t u = u0 + (uint64_t)tid; u < u1; u += (uint64_t)T) {
			size_t n = c->per_user < 64 ? c->per_user : 64;
			float rs[64];
			for (size_t i = 0; i < n; i++)
				rating(c, u, i, &items[i], &rs[i]);
			ps_handle h = ps_localize(jb->V, items, n); /* overlaps with the pull below */
			ps_key uk = u;
			ps_pull_sync(jb->U, &uk, 1, uf);
			int rc = ps_wait(h);
			if (rc) {
				fprintf(stderr, "demo: localize failed: %s\n", ps_strerror(rc));
				exit(1);
			}
			for (size_t i = 0; i < n; i++) {
				ps_pull_sync(jb->V, &items[i], 1, vf);
				float dot = 0;
				for (int j = 0; j < RANK; j++)
					dot += uf[j] * vf[j];
				float err = rs[i] - dot;
				sse += (double)err * err;
				cnt++;
				for (int j = 0; j < RANK; j++) {
					du[j] = c->lr * (err * vf[j] - c->reg * uf[j]);
					dv[j] = c->lr * (err * uf[j] - c->reg * vf[j]);
					uf[j] += du[j];
				}
				ps_push_sync(jb->V, &items[i], 1, dv);
				ps_push_sync(jb->U, &uk, 1, du);
			}
		}
		ps_key mk = (ps_key)e;
		float m[2] = {(float)sse, (float)cnt};
		ps_push_sync(jb->M, &mk, 1, m);
		ps_barrier(w);
		if (me == 0 && tid == 0) {
			ps_pull_sync(jb->M, &mk, 1, m);
			printf("epoch %d: train RMSE %.4f over %.0f ratings\n", e + 1, sqrt(m[0] / m[1]), m[1]);
			fflush(stdout);
		}
	}
}

static void usage(FILE *f)
{
	fprintf(f, "usage: demo [--epochs N (10)] [--users U (4000)] [--items I (2000)] [--per-user R (40)]\n"
		   "            [--lr X (0.05)] [--reg X (0.01)]\n"
		   "Run alone (one node) or under psrun -n N -t T.\n");
}

int main(int argc, char **argv)
{
	struct job jb = {.c = {.epochs = 10, .users = 4000, .items = 2000, .per_user = 40, .lr = 0.05f, .reg = 0.01f}};
	static const struct option opts[] = {
		{"epochs", 1, 0, 'e'}, {"users", 1, 0, 'u'}, {"items", 1, 0, 'i'}, {"per-user", 1, 0, 'r'},
		{"lr", 1, 0, 'l'},     {"reg", 1, 0, 'g'},   {"help", 0, 0, 'h'},  {0, 0, 0, 0}};
	int o;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'e': jb.c.epochs = atoi(optarg); break;
		case 'u': jb.c.users = strtoull(optarg, NULL, 10); break;
		case 'i': jb.c.items = strtoull(optarg, NULL, 10); break;
		case 'r': jb.c.per_user = strtoull(optarg, NULL, 10); break;
		case 'l': jb.c.lr = strtof(optarg, NULL); break;
		case 'g': jb.c.reg = strtof(optarg, NULL); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (jb.c.epochs < 1 || jb.c.users < 1 || jb.c.items < 1 || jb.c.per_user < 1) {
		usage(stderr);
		return 2;
	}
	int err;
	ps_world *w = ps_init(&err);
	if (!w) {
		fprintf(stderr, "demo: cannot join the job: %s\n", ps_strerror(err));
		return 1;
	}
	ps_table_opts to;
	ps_table_opts_init(&to, jb.c.users, RANK);
	to.init = PS_INIT_UNIFORM;
	to.init_a = 0.1f;
	to.seed = 42;
	jb.U = ps_table_create(w, &to, &err);
	if (jb.U) {
		ps_table_opts_init(&to, jb.c.items, RANK);
		to.init = PS_INIT_UNIFORM;
		to.init_a = 0.1f;
		to.seed = 43;
		to.placement = PS_PLACE_HASH;
		jb.V = ps_table_create(w, &to, &err);
	}
	if (jb.V) {
		ps_table_opts_init(&to, (uint64_t)jb.c.epochs, 2);
		jb.M = ps_table_create(w, &to, &err);
	}
	if (!jb.M) {
		fprintf(stderr, "demo: cannot create tables: %s\n", ps_strerror(err));
		return 1;
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (ps_node_id(w) == 0)
		printf("demo: %d nodes x %d threads, %llu users x %llu items, rank %d\n", ps_num_nodes(w),
		       ps_num_threads(w), (unsigned long long)jb.c.users, (unsigned long long)jb.c.items, RANK);
	int rc = ps_run_workers(w, worker, &jb);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (rc == 0 && ps_node_id(w) == 0) {
		ps_node_stats st;
		ps_stats(w, 0, &st);
		double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
		printf("demo: done in %.2f s; node 0 relocated %llu keys, %.0f%% of its key accesses were local\n",
		       secs, (unsigned long long)st.relocations,
		       100.0 * (double)st.local_keys / (double)(st.local_keys + st.remote_keys + 1));
	}
	ps_finalize(w);
	return rc ? 1 : 0;
}
