/*
 * test_hosts_repl.c - hot-spot replication across hosts (replica.c RP8-RP10):
 * 2 and 3 psruns of 2 nodes on 127.0.0.1.
 *
 * The binary is the cmocka driver and, under psrun, the node program:
 *
 * "--node storm ...": every worker of every node of every host pushes a
 * zipf stream (integer-valued updates, equal in every float of a vector)
 * into hot keys spread over all hosts' ranges, replicated on every host
 * the whole time, into "switching" keys that node 0 of every host keeps
 * replicating and unreplicating during the storm, and into ordinary keys.
 * A reader per node pulls and counts torn vectors (floats differ) and
 * reads that go down (hot and ordinary keys: asserted 0; switching keys:
 * printed, see DESIGN.md).  Then the final protocol: barrier, ps_sync on
 * every host, barrier, ps_sync, barrier; node 0 of every host checks that
 * every key reads the exact sum of every push of every host, and that
 * every node's replica of every key replicated on its host holds that sum
 * with a zero delta, its local primaries too (so every replica equals its
 * primary).  Exit 0 ok, 1 wrong, 2 torn or decreasing, 3 stale reads.
 *
 * "--node stale RATE": a key held by host 0 and one held by host 1, both
 * replicated on both hosts; node 1 of host 0 pushes +1 to both every few
 * ms, node 0 of host 1 polls its replicas and records when each push shows
 * up; the push times travel in an ordinary key per push (48 bits in three
 * floats).  Prints the worst delay of each key in microseconds.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"
#include "hosts.h"
#include "psmem_int.h"

#define BATCH 16
#define NHOT  12
#define NSW   12

/* ------------------------------------------------------------ node: storm */

struct storm {
	ps_world *w;
	ps_table *t;
	uint64_t keys;
	uint32_t vlen;
	long batches;
	int gnodes;
	ps_key hot[NHOT], sw[NSW];
	uint8_t *kind;         /* per key: 0 ordinary, 1 hot, 2 switching */
	_Atomic bool stop;
	_Atomic uint64_t torn, decreasing, sw_decreasing, pulls_checked, switches;
	_Atomic int result;
	pthread_t rt, xt;
};

/* A zipf-like stream: half the pushes go to the hot keys (rank i with
 * weight 1/(i+1)), a quarter to the switching keys, the rest anywhere. */
static void stream_item(const struct storm *st, uint64_t *s, ps_key *k, float *add)
{
	uint64_t r = test_rnd(s);
	*add = (float)(1 + (r >> 60) % 3);
	uint32_t sel = (uint32_t)(r >> 32) & 3;
	if (sel < 2) {
		/* inverse of the harmonic cdf, by rejection: cheap and exact */
		for (;;) {
			uint64_t x = test_rnd(s);
			uint32_t i = (uint32_t)(x % NHOT);
			if ((x >> 40) % (i + 1) == 0) {
				*k = st->hot[i];
				return;
			}
		}
	}
	if (sel == 2)
		*k = st->sw[(r >> 8) % NSW];
	else
		*k = (r >> 8) % st->keys;
}

static int gnode(ps_world *w)
{
	return ps_host_id(w) * ps_num_nodes(w) + ps_node_id(w);
}

static void node_fail(struct storm *st, const char *what, int rc)
{
	fprintf(stderr, "storm: host %d node %d: %s: %s\n", ps_host_id(st->w), ps_node_id(st->w), what,
		ps_strerror(rc));
	atomic_store(&st->result, 1);
}

static void *reader(void *arg)
{
	struct storm *st = arg;
	uint64_t s = 999 + (uint64_t)gnode(st->w);
	float *last = calloc(st->keys, sizeof(float));
	float *v = malloc(sizeof(float) * 8 * st->vlen);
	ps_key keys[8];
	while (!atomic_load(&st->stop)) {
		for (int i = 0; i < 8; i++) {
			float a;
			stream_item(st, &s, &keys[i], &a);
		}
		int rc = ps_pull_sync(st->t, keys, 8, v);
		if (rc != 0) {
			node_fail(st, "pull", rc);
			break;
		}
		for (int i = 0; i < 8; i++) {
			int r = row_check(v + (size_t)i * st->vlen, st->vlen, &last[keys[i]]);
			if (r & ROW_TORN)
				atomic_fetch_add(&st->torn, 1);
			if (r & ROW_DOWN)
				atomic_fetch_add(st->kind[keys[i]] == 2 ? &st->sw_decreasing : &st->decreasing, 1);
		}
		atomic_fetch_add(&st->pulls_checked, 8);
	}
	free(last);
	free(v);
	return NULL;
}

/* Node 0 of every host: switches the switching keys all the time, by
 * ps_replicate and ps_unreplicate of random subsets, and by
 * ps_replicate_top with counts that rank the hot keys first (they stay)
 * and a random subset of the switching keys next (the others drop). */
static void *switcher(void *arg)
{
	struct storm *st = arg;
	uint64_t s = 4242 + (uint64_t)gnode(st->w);
	uint64_t *counts = calloc(st->keys, sizeof *counts);
	while (!atomic_load(&st->stop)) {
		ps_key ks[NSW];
		size_t n = 0;
		for (int i = 0; i < NSW; i++)
			if (test_rnd(&s) & 1)
				ks[n++] = st->sw[i];
		int rc, how = (int)(test_rnd(&s) % 3);
		if (how == 2) {
			memset(counts, 0, st->keys * sizeof *counts);
			for (int i = 0; i < NHOT; i++)
				counts[st->hot[i]] = 1000;
			for (size_t i = 0; i < n; i++)
				counts[ks[i]] = 500;
			rc = ps_replicate_top(st->t, counts, NHOT + n);
			if (rc >= 0 && rc != (int)(NHOT + n)) {
				fprintf(stderr, "storm: replicate_top: %d, expected %zu\n", rc, NHOT + n);
				rc = -EPROTO;
			}
			if (rc >= 0)
				rc = 0;
		} else {
			rc = how ? ps_replicate(st->t, ks, n) : ps_unreplicate(st->t, ks, n);
		}
		if (rc < 0) {
			node_fail(st, "switch", rc);
			break;
		}
		atomic_fetch_add(&st->switches, (uint64_t)rc);
		usleep(500);
	}
	free(counts);
	return NULL;
}

static int verify(struct storm *st)
{
	ps_world *w = st->w;
	ps_table *t = st->t;
	const uint32_t vl = st->vlen;
	float *expect = calloc(st->keys, sizeof(float));
	for (int n = 0; n < st->gnodes; n++)
		for (int th = 0; th < ps_num_threads(w); th++) {
			uint64_t s = (uint64_t)n * 1000 + (uint64_t)th + 1;
			for (long b = 0; b < st->batches * BATCH; b++) {
				ps_key k;
				float a;
				stream_item(st, &s, &k, &a);
				expect[k] += a;
			}
		}
	ps_key *all = malloc(sizeof(ps_key) * st->keys);
	float *v = malloc(sizeof(float) * vl * st->keys);
	for (ps_key k = 0; k < st->keys; k++)
		all[k] = k;
	int rc = ps_pull_sync(t, all, st->keys, v);
	if (rc)
		node_fail(st, "pulling every key", rc);
	long bad = 0, repl = 0, rprim = 0, rbad = 0;
	for (ps_key k = 0; k < st->keys && rc == 0; k++)
		for (uint32_t j = 0; j < vl; j++)
			if (v[k * vl + j] != expect[k] && bad++ < 5)
				fprintf(stderr, "storm: host %d: key %lu[%u] = %g, expected %g\n", ps_host_id(w),
					(unsigned long)k, j, (double)v[k * vl + j], (double)expect[k]);
	/* every replica of every node of this host, and local primaries */
	for (ps_key k = 0; k < st->keys; k++) {
		uint64_t lw = atomic_load(&t->loc[k]);
		if (!(lw & PS__LOC_REPL))
			continue;
		repl++;
		uint32_t r = PS__LOC_RIDX(lw);
		uint64_t plw = atomic_load(&t->rprim[r]);
		rprim += PS__LOC_IS_REMOTE(plw);
		for (int n = 0; n < ps_num_nodes(w); n++) {
			struct ps__slot *sl = ps__replica_at(t, n, r);
			struct ps__slot *d = (struct ps__slot *)((char *)sl + t->slot_size);
			for (uint32_t j = 0; j < vl; j++) {
				float x, dx;
				uint32_t b = atomic_load(&sl->v[j]), db = atomic_load(&d->v[j]);
				memcpy(&x, &b, 4);
				memcpy(&dx, &db, 4);
				if ((x != expect[k] || dx != 0) && rbad++ < 5)
					fprintf(stderr, "storm: host %d node %d: replica of key %lu[%u] = %g delta %g, expected %g\n",
						ps_host_id(w), n, (unsigned long)k, j, (double)x, (double)dx, (double)expect[k]);
			}
		}
		if (!PS__LOC_IS_REMOTE(plw)) {
			struct ps__slot *p = (struct ps__slot *)(w->seg.base + PS__LOC_OFF(plw));
			for (uint32_t j = 0; j < vl; j++) {
				float x;
				uint32_t b = atomic_load(&p->v[j]);
				memcpy(&x, &b, 4);
				if (x != expect[k] && rbad++ < 5)
					fprintf(stderr, "storm: host %d: primary of key %lu = %g, expected %g\n", ps_host_id(w),
						(unsigned long)k, (double)x, (double)expect[k]);
			}
		}
	}
	printf("storm: host %d: %lu keys x %u checked, %ld wrong; %ld replicated here (%ld with the primary on another host), %ld replicas wrong\n",
	       ps_host_id(w), (unsigned long)st->keys, vl, bad, repl, rprim, rbad);
	free(expect);
	free(v);
	free(all);
	return rc || bad || rbad || rprim == 0 ? 1 : 0;
}

static void sync_or_fail(struct storm *st)
{
	int rc = ps_sync(st->t);
	if (rc)
		node_fail(st, "sync", rc);
}

static void worker(ps_world *w, int tid, void *arg)
{
	struct storm *st = arg;
	uint64_t s = (uint64_t)gnode(w) * 1000 + (uint64_t)tid + 1;
	ps_key keys[BATCH];
	float *upd = malloc(sizeof(float) * BATCH * st->vlen);
	for (long b = 0; b < st->batches; b++) {
		for (int i = 0; i < BATCH; i++) {
			float a;
			stream_item(st, &s, &keys[i], &a);
			for (uint32_t j = 0; j < st->vlen; j++)
				upd[(size_t)i * st->vlen + j] = a;
		}
		int rc = (b & 1) ? ps_wait(ps_push(st->t, keys, BATCH, upd)) : ps_push_sync(st->t, keys, BATCH, upd);
		if (rc != 0) {
			node_fail(st, "push", rc);
			break;
		}
	}
	free(upd);
	const bool lead = tid == 0;
	int rc = ps_barrier(w); /* every push of every host is done */
	if (lead) {
		atomic_store(&st->stop, true);
		pthread_join(st->rt, NULL);
		if (ps_node_id(w) == 0)
			pthread_join(st->xt, NULL);
	}
	/* the final protocol: no switch runs anywhere any more */
	rc = rc ? rc : ps_barrier(w);
	if (lead && ps_node_id(w) == 0)
		sync_or_fail(st);
	rc = rc ? rc : ps_barrier(w);
	if (lead && ps_node_id(w) == 0)
		sync_or_fail(st);
	rc = rc ? rc : ps_barrier(w);
	if (rc)
		node_fail(st, "barrier", rc);
}

static int storm_main(int argc, char **argv)
{
	struct storm st = {.keys = 512, .vlen = 4, .batches = 400};
	double rate = 200;
	for (int i = 0; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "keys")) st.keys = strtoull(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "vlen")) st.vlen = (uint32_t)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "batches")) st.batches = atol(argv[i + 1]);
		else if (!strcmp(argv[i], "rate")) rate = atof(argv[i + 1]);
	}
	int err;
	st.w = ps_init(&err);
	if (!st.w) {
		fprintf(stderr, "storm: ps_init: %s\n", ps_strerror(err));
		return 1;
	}
	st.gnodes = ps_num_hosts(st.w) * ps_num_nodes(st.w);
	st.kind = calloc(st.keys, 1);
	for (int i = 0; i < NHOT; i++) {
		st.hot[i] = (ps_key)((uint64_t)i * st.keys / NHOT); /* every host's range */
		st.kind[st.hot[i]] = 1;
	}
	for (int i = 0; i < NSW; i++) {
		st.sw[i] = (ps_key)((uint64_t)i * st.keys / NSW + 3);
		st.kind[st.sw[i]] = 2;
	}
	ps_table_opts o;
	ps_table_opts_init(&o, st.keys, st.vlen);
	o.repl_max = 32;
	o.repl_rate = rate;
	st.t = ps_table_create(st.w, &o, &err);
	if (!st.t) {
		fprintf(stderr, "storm: table: %s\n", ps_strerror(err));
		ps_finalize(st.w);
		return 1;
	}
	if (ps_node_id(st.w) == 0) {
		int rc = ps_replicate(st.t, st.hot, NHOT);
		if (rc != NHOT) {
			fprintf(stderr, "storm: host %d: replicate hot keys: %d (%s)\n", ps_host_id(st.w), rc,
				ps_strerror(rc));
			return 1;
		}
		printf("storm: host %d: %d hot keys replicated\n", ps_host_id(st.w), NHOT);
		fflush(stdout);
	}
	/* every host's hot keys are replicated before anyone pushes */
	int rc = ps_barrier(st.w);
	if (rc) {
		fprintf(stderr, "storm: barrier: %s\n", ps_strerror(rc));
		return 1;
	}
	pthread_create(&st.rt, NULL, reader, &st);
	if (ps_node_id(st.w) == 0)
		pthread_create(&st.xt, NULL, switcher, &st);
	rc = ps_run_workers(st.w, worker, &st);
	if (rc == 0)
		rc = atomic_load(&st.result);
	if (rc == 0 && ps_node_id(st.w) == 0)
		rc = verify(&st);
	ps_node_stats ns;
	ps_stats(st.w, ps_node_id(st.w), &ns);
	printf("storm: host %d node %d: %lu reads checked, %lu torn, %lu decreasing, %lu decreasing on switching keys, %lu switches, %lu rounds\n",
	       ps_host_id(st.w), ps_node_id(st.w), (unsigned long)atomic_load(&st.pulls_checked),
	       (unsigned long)atomic_load(&st.torn), (unsigned long)atomic_load(&st.decreasing),
	       (unsigned long)atomic_load(&st.sw_decreasing), (unsigned long)atomic_load(&st.switches),
	       (unsigned long)ns.repl_rounds);
	fflush(stdout);
	if (atomic_load(&st.torn) || atomic_load(&st.decreasing))
		rc = rc ? rc : 2;
	if (ns.stale_reads) {
		fprintf(stderr, "storm: %lu stale reads\n", (unsigned long)ns.stale_reads);
		rc = rc ? rc : 3;
	}
	int frc = ps_finalize(st.w);
	if (frc != 0) {
		fprintf(stderr, "storm: finalize: %s\n", ps_strerror(frc));
		rc = rc ? rc : 1;
	}
	free(st.kind);
	return rc;
}

/* ------------------------------------------------------------ node: stale */

#define STALE_PUSHES 60
#define STALE_KEYS   (4 + STALE_PUSHES)

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* Keys 0 and STALE_KEYS-1 are held by host 0 and host 1; the push times
 * go to keys 1 + i (host 0's range: ordinary, pulled at the end). */
static int stale_main(int argc, char **argv)
{
	double rate = argc > 0 ? atof(argv[0]) : 50;
	int err;
	ps_world *w = ps_init(&err);
	if (!w)
		return 1;
	ps_table_opts o;
	ps_table_opts_init(&o, STALE_KEYS * 2, 3);
	o.repl_max = 4;
	o.repl_rate = rate;
	ps_table *t = ps_table_create(w, &o, &err);
	if (!t)
		return 1;
	const ps_key hk[2] = {0, STALE_KEYS * 2 - 1};
	if (ps_owner_host(t, hk[0]) != 0 || ps_owner_host(t, hk[1]) != 1) {
		fprintf(stderr, "stale: unexpected key placement\n");
		return 1;
	}
	if (ps_node_id(w) == 0 && ps_replicate(t, hk, 2) != 2)
		return 1;
	int rc = ps_barrier(w);
	const bool pusher = ps_host_id(w) == 0 && ps_node_id(w) == 1;
	const bool watcher = ps_host_id(w) == 1 && ps_node_id(w) == 0;
	uint64_t seen[2][STALE_PUSHES];
	if (pusher) {
		for (int i = 0; i < STALE_PUSHES && rc == 0; i++) {
			uint64_t at = now_us();
			float one[6] = {1, 1, 1, 1, 1, 1};
			float stamp[3] = {(float)(at & 0xffff), (float)((at >> 16) & 0xffff), (float)((at >> 32) & 0xffff)};
			ps_key sk = 1 + (ps_key)i;
			rc = ps_push_sync(t, &sk, 1, stamp);
			rc = rc ? rc : ps_push_sync(t, hk, 2, one);
			usleep(7000 + (useconds_t)(i % 5) * 3000); /* not in step with the rounds */
		}
	} else if (watcher) {
		int got[2] = {0, 0};
		uint64_t t0 = now_us();
		while ((got[0] < STALE_PUSHES || got[1] < STALE_PUSHES) && now_us() - t0 < 20000000 && rc == 0) {
			float v[6];
			rc = ps_pull_sync(t, hk, 2, v);
			uint64_t at = now_us();
			for (int k = 0; k < 2; k++)
				while (got[k] < (int)v[3 * k] && got[k] < STALE_PUSHES)
					seen[k][got[k]++] = at;
			usleep(200);
		}
		if (got[0] < STALE_PUSHES || got[1] < STALE_PUSHES)
			rc = rc ? rc : -ETIMEDOUT;
	}
	rc = rc ? rc : ps_barrier(w);
	if (watcher && rc == 0) {
		uint64_t worst[2] = {0, 0}, sum[2] = {0, 0}, d[2][STALE_PUSHES];
		for (int i = 0; i < STALE_PUSHES && rc == 0; i++) {
			ps_key sk = 1 + (ps_key)i;
			float st[3];
			rc = ps_pull_sync(t, &sk, 1, st);
			uint64_t at = (uint64_t)st[0] | (uint64_t)st[1] << 16 | (uint64_t)st[2] << 32;
			for (int k = 0; k < 2; k++) {
				d[k][i] = seen[k][i] > at ? seen[k][i] - at : 0;
				worst[k] = d[k][i] > worst[k] ? d[k][i] : worst[k];
				sum[k] += d[k][i];
			}
		}
		for (int k = 0; k < 2; k++)
			qsort(d[k], STALE_PUSHES, sizeof d[k][0], cmp_u64);
		const int p90 = STALE_PUSHES * 9 / 10;
		printf("stale: rate %g: key of host 0 (pushed on its holder): p90 %lu us, worst %lu us, mean %lu us; "
		       "key of host 1 (pushed on host 0): p90 %lu us, worst %lu us, mean %lu us\n",
		       rate, (unsigned long)d[0][p90], (unsigned long)worst[0], (unsigned long)(sum[0] / STALE_PUSHES),
		       (unsigned long)d[1][p90], (unsigned long)worst[1], (unsigned long)(sum[1] / STALE_PUSHES));
		fflush(stdout);
	}
	if (rc)
		fprintf(stderr, "stale: host %d node %d: %s\n", ps_host_id(w), ps_node_id(w), ps_strerror(rc));
	int frc = ps_finalize(w);
	return rc || frc ? 1 : 0;
}

/* ------------------------------------------------------- node: droppull */

/* "--node droppull": 2 hosts x 2 nodes, 8 keys; key 7 is held by host 1
 * and replicated on host 0.  Node 0 of host 0 pushes +1 to it and drops
 * it with a slow RPUSH round trip (PSMEM_DEBUG_SLOW_DROP=600 ms, test
 * builds), retrying until it switches; meanwhile node 1 of host 0 pulls
 * it and pushes +1 to it and to key 6 (ordinary, host 1's) for 1.5 s,
 * timing every pull.  Then the final protocol; node 0 of host 1 checks
 * key 7 = key 6 + 1: no push lost or counted twice. */
static int droppull_main(void)
{
	int err;
	ps_world *w = ps_init(&err);
	if (!w)
		return 1;
	ps_table_opts o;
	ps_table_opts_init(&o, 8, 4);
	o.repl_max = 2;
	ps_table *t = ps_table_create(w, &o, &err);
	if (!t)
		return 1;
	const int host = ps_host_id(w), node = ps_node_id(w);
	ps_key k = 7, k6 = 6;
	if (ps_owner_host(t, k) != 1 || ps_owner_host(t, k6) != 1)
		return 1;
	if (host == 0 && node == 0 && ps_replicate(t, &k, 1) != 1)
		return 1;
	int rc = ps_barrier(w);
	float one[4] = {1, 1, 1, 1}, v[4];
	if (rc == 0 && host == 0 && node == 0) {
		setenv("PSMEM_DEBUG_SLOW_DROP", "600", 1);
		rc = ps_push_sync(t, &k, 1, one);
		int tries = 0, sw = 0;
		while (rc == 0 && sw == 0 && tries < 20) {
			sw = ps_unreplicate(t, &k, 1);
			tries++;
		}
		unsetenv("PSMEM_DEBUG_SLOW_DROP");
		printf("droppull: dropped after %d tries: %d\n", tries, sw);
		rc = rc ? rc : sw == 1 ? 0 : -1;
	} else if (rc == 0 && host == 0 && node == 1) {
		uint64_t t0 = now_us(), worst = 0;
		long pushes = 0;
		while (rc == 0 && now_us() - t0 < 1500000) {
			uint64_t a = now_us();
			rc = ps_pull_sync(t, &k, 1, v);
			uint64_t d = now_us() - a;
			worst = d > worst ? d : worst;
			if (rc == 0)
				rc = ps_push_sync(t, &k, 1, one);
			if (rc == 0)
				rc = ps_push_sync(t, &k6, 1, one);
			pushes++;
			usleep(1000);
		}
		printf("droppull: longest pull %lu ms, %ld pushes\n", (unsigned long)(worst / 1000), pushes);
	}
	for (int i = 0; i < 2 && rc == 0; i++) {
		rc = ps_barrier(w);
		if (rc == 0 && node == 0)
			rc = ps_sync(t);
	}
	rc = rc ? rc : ps_barrier(w);
	if (rc == 0 && host == 1 && node == 0) {
		float v6[4];
		rc = ps_pull_sync(t, &k, 1, v);
		rc = rc ? rc : ps_pull_sync(t, &k6, 1, v6);
		printf("droppull: key 7 %g, key 6 %g\n", v[0], v6[0]);
		if (rc == 0 && (v[0] != v6[0] + 1 || v6[0] < 1))
			rc = -1;
	}
	fflush(stdout);
	if (rc)
		fprintf(stderr, "droppull: host %d node %d: %s\n", host, node, ps_strerror(rc));
	int frc = ps_finalize(w);
	return rc || frc ? 1 : 0;
}

/* ------------------------------------------------------------ tests */

static void storm_hosts(int hosts, const char *const args[])
{
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	const char *prog[16] = {mh_self, "--node", "storm"};
	for (int i = 0; args[i]; i++)
		prog[3 + i] = args[i];
	struct mh_proc p[3];
	mh_run_hosts(hosts, 2, prog, p, 120);
	mh_show_failed(hosts, p);
	for (int r = 0; r < hosts; r++) {
		assert_int_equal(p[r].status, 0);
		const char *out = mh_slurp(p[r].out);
		printf("%s", out);
		char want[128];
		snprintf(want, sizeof want, "storm: host %d: %d hot keys replicated", r, NHOT);
		assert_non_null(strstr(out, want));
		snprintf(want, sizeof want, "storm: host %d: 512 keys x 4 checked, 0 wrong; ", r);
		assert_non_null(strstr(out, want));
		assert_non_null(strstr(out, "with the primary on another host), 0 replicas wrong"));
		for (int n = 0; n < 2; n++) {
			snprintf(want, sizeof want, "storm: host %d node %d: ", r, n);
			const char *line = strstr(out, want);
			assert_non_null(line);
			assert_non_null(strstr(line, " 0 torn, 0 decreasing, "));
		}
	}
	mh_assert_clean(&segs);
}

static void test_two_hosts_storm_with_switches_every_push_counted_once(void **state)
{
	(void)state;
	const char *args[] = {"keys", "512", "vlen", "4", "batches", "1500", "rate", "200", NULL};
	storm_hosts(2, args);
}

static void test_three_hosts_storm_with_switches_every_push_counted_once(void **state)
{
	(void)state;
	const char *args[] = {"keys", "512", "vlen", "4", "batches", "600", "rate", "100", NULL};
	storm_hosts(3, args);
}

/* Bound (DESIGN.md): 1 / rate + a round trip for a push on the holder,
 * 2 / rate + 2 round trips for one on another host.  Asserted: the 90th
 * percentile of both below 2 / rate + 50 ms (slack for a loaded 2-core
 * machine), the worst below 1 s (50 / rate): a replica that stops being
 * refreshed exceeds it, while one late round does not (a single delay of
 * 122 ms was seen under ASan at load average 18, which is scheduling, not
 * the protocol: the p90 bound is the one that tests the rounds). */
static void test_staleness_across_hosts_at_50_rounds_per_second(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	const char *prog[] = {mh_self, "--node", "stale", "50", NULL};
	struct mh_proc p[2];
	mh_run_hosts(2, 2, prog, p, 60);
	mh_show_failed(2, p);
	assert_int_equal(p[0].status, 0);
	assert_int_equal(p[1].status, 0);
	const char *out = mh_slurp(p[1].out);
	printf("%s", out);
	const char *line = strstr(out, "stale: rate 50: key of host 0 (pushed on its holder): p90 ");
	assert_non_null(line);
	unsigned long p0, w0, m0, p1, w1, m1;
	assert_int_equal(sscanf(line,
				"stale: rate 50: key of host 0 (pushed on its holder): p90 %lu us, worst %lu us, mean %lu us; "
				"key of host 1 (pushed on host 0): p90 %lu us, worst %lu us, mean %lu us",
				&p0, &w0, &m0, &p1, &w1, &m1),
			 6);
#ifdef PS_SANITIZE
	/* ASan/TSan builds: every thread 2-10x slower and the suites run
	 * beside others (p90 223 ms seen under ASan at load 10+) */
	const unsigned long bound = 2 * 1000000 / 50 + 250000;
#else
	/* 50 ms of slack: p90 69.9 ms was seen with three suites sharing the
	 * two cores (load 8.7); rounds at half the rate would still exceed
	 * it (p90 about 4 / rate = 80 ms + the round trips) */
	const unsigned long bound = 2 * 1000000 / 50 + 50000;
#endif
	assert_true(p0 < bound);
	assert_true(p1 < bound);
	assert_true(w0 < 1000000);
	assert_true(w1 < 1000000);
	assert_true(m0 > 0 && m1 > 0); /* measured something, not 0 by accident */
	mh_assert_clean(&segs);
}

/* Dropping a key whose primary is on another host holds no replica lock
 * across the round trip (RP8, RP10): local pulls of it do not wait for
 * the RPUSH (600 ms here), and pushes made meanwhile are neither lost nor
 * counted twice. */
static void test_dropping_a_remote_key_does_not_block_its_local_pulls(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	const char *prog[] = {mh_self, "--node", "droppull", NULL};
	struct mh_proc p[2];
	mh_run_hosts(2, 2, prog, p, 60);
	mh_show_failed(2, p);
	const char *out0 = mh_slurp(p[0].out);
	printf("%s", out0);
	assert_int_equal(p[0].status, 0);
	assert_int_equal(p[1].status, 0);
	const char *line = strstr(out0, "droppull: longest pull ");
	assert_non_null(line);
	unsigned long ms;
	long pushes;
	assert_int_equal(sscanf(line, "droppull: longest pull %lu ms, %ld pushes", &ms, &pushes), 2);
	assert_true(pushes > 10); /* it pulled while the drop was on */
	assert_true(ms < 300);     /* not the 600 ms round trip */
	assert_non_null(strstr(out0, "droppull: dropped after "));
	assert_non_null(strstr(mh_slurp(p[1].out), "droppull: key 7 "));
	mh_assert_clean(&segs);
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "storm") == 0)
		return storm_main(argc - 3, argv + 3);
	if (argc >= 3 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "stale") == 0)
		return stale_main(argc - 3, argv + 3);
	if (argc >= 3 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "droppull") == 0)
		return droppull_main();
	if (!self_exe(mh_self, sizeof mh_self))
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_two_hosts_storm_with_switches_every_push_counted_once),
		cmocka_unit_test(test_three_hosts_storm_with_switches_every_push_counted_once),
		cmocka_unit_test(test_staleness_across_hosts_at_50_rounds_per_second),
		cmocka_unit_test(test_dropping_a_remote_key_does_not_block_its_local_pulls),
	};
	return cmocka_run_group_tests(tests, mh_setup, mh_teardown);
}
