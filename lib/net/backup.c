/*
 * backup.c - backups of every host's keys and their promotion when a host
 * is lost (psrun --on-host-failure continue; docs/DESIGN.md "Losing a
 * host").  Everything here runs on a node's link thread: no locks.
 *
 *   (BK1) Rounds.  Every 1/rate s (PSMEM_BACKUP_RATE, set by psrun) the
 *        link thread of node i of host h reads the values of every key
 *        node i holds in a slot (its word is PS__LOC_MAKE(i, off)) and sends
 *        them to node i of the backup host b(h) = the next host after h in
 *        the ring that is not lost, as BACKUP frames (a PUSH body; the
 *        request id carries the round number and, on the last frame of a
 *        round, BK_END).  The frames go over node i's data connection (or
 *        the bridges), fire and forget: a backup is a copy of values, so a
 *        round that is lost is only lag.  This is chain replication of
 *        length 2 with the whole state as the round's aggregate: simple and
 *        idempotent, at the price of sending every held key every round
 *        (no dirty tracking in kv.c yet).  Tables with replication or rule
 *        state are not backed up (a remote pull carries values only).
 *   (BK2) Store.  Node i of b keeps, per table, the last value of each key
 *        sent to it, the sending host and the round it came in; per sending
 *        host, the last round whose BK_END arrived (complete).  Relocated
 *        keys are covered because a round sends what the node holds now:
 *        the backup follows the holder.
 *   (BK3) Promotion.  When the bridge drops host x (ABORT PS__GONE_LOST),
 *        every node of every survivor marks x lost (hgone[x] = 2, clock.c);
 *        on the survivor b(x), node i installs every key node i of x backed
 *        up there in its last complete round or later whose word here is
 *        REMOTE (not MOVING): a fresh slot of node i, word := slot (CAS).
 *        Then each node adds 1 to hgone[x]: hgone[x] == 2 + nodes means the
 *        promotion is complete on this host.  Other hosts route a key whose
 *        word names a lost host to its backup host (link_remote.c), which
 *        serves it, or answers "pause" (REDIRECT -1) while its promotion is
 *        incomplete, or PS_EHOSTDOWN for a key it had no backup of.
 *   (BK4) What is lost: an update applied at x after the start of x's last
 *        round that reached b (at most 1/rate + one round's send time + the
 *        time to detect the loss).  A push in flight to x when it died is
 *        retried at b (link_remote.c): if x applied it and backed it up
 *        before dying it counts twice.  Both are inside the same window.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "kv.h"
#include "link_in.h"

#define BK_END (1ULL << 55)

struct bk_entry {
	ps_key k;                 /* UINT64_MAX: empty */
	int32_t src;
	uint32_t round;
	uint64_t at;              /* index of its values in vals (times vlen) */
};

struct bk_table {
	uint32_t vlen;
	uint64_t cap, n;          /* hash of keys, cap a power of 2 */
	struct bk_entry *e;
	float *vals;
	uint64_t vcap;            /* entries' worth of vals */
};

struct ps__backup {
	uint64_t period_ns, next_ns;
	uint32_t round;
	struct bk_table tab[PS__MAX_TABLES];
	uint32_t complete[PS__MAX_HOSTS]; /* last round with BK_END, per host */
	uint32_t newest[PS__MAX_HOSTS];
	uint64_t rounds_sent, keys_sent;
	/* scratch of a round */
	ps_key *keys;
	float *v;
	uint32_t *miss;
	uint64_t scap;
};

int ps__bk_init(struct ps__link *L)
{
	const char *e = getenv("PSMEM_BACKUP_RATE");
	if (!e || !*e || L->w->nhosts < 2)
		return 0;
	char *end;
	double rate = strtod(e, &end);
	if (*end || !(rate > 0) || rate > 10000) {
		fprintf(stderr, "psmem: PSMEM_BACKUP_RATE: '%s' is not a rate in rounds per second (0 < rate <= 10000)\n",
			e);
		return -EINVAL;
	}
	struct ps__backup *b = calloc(1, sizeof *b);
	if (!b)
		return -ENOMEM;
	b->period_ns = (uint64_t)(1e9 / rate);
	b->next_ns = ps__now_ns() + b->period_ns;
	L->bk = b;
	return 0;
}

void ps__bk_free(struct ps__link *L)
{
	struct ps__backup *b = L->bk;
	if (!b)
		return;
	for (int i = 0; i < PS__MAX_TABLES; i++)
		free(b->tab[i].e), free(b->tab[i].vals);
	free(b->keys);
	free(b->v);
	free(b->miss);
	free(b);
	L->bk = NULL;
}

/* hgone[h] >= 2: lost (clock.c CLH7); == 2 + nodes: promotion done here */
static uint32_t lost_state(ps_world *w, int h)
{
	if (h < 0 || h >= PS__MAX_CLOCK_HOSTS)
		return 0;
	/* acquire: after the link thread's marks (and a promotion's words) */
	return atomic_load_explicit(&w->seg.hdr->clocks.hgone[h], memory_order_acquire);
}

bool ps__host_lost(ps_world *w, int h)
{
	return lost_state(w, h) >= 2;
}

bool ps__host_promoted(ps_world *w, int h)
{
	return lost_state(w, h) >= 2 + (uint32_t)w->nnodes;
}

int ps__backup_host(ps_world *w, int h)
{
	/* the ring of the initial hosts: a joiner is never a backup host
	 * (elastic jobs, EL2: it homes no key and may come after a loss) */
	const int H = w->home_hosts;
	for (int d = 1; d <= H; d++) {
		int x = (h + d) % H;
		if (x != h && !ps__host_lost(w, x))
			return x;
	}
	return -1;
}

/* Milliseconds until the next round is due, for the link thread's poll
 * (-1: no backups). */
int ps__bk_timeout_ms(struct ps__link *L)
{
	struct ps__backup *b = L->bk;
	if (!b)
		return -1;
	uint64_t now = ps__now_ns();
	return now >= b->next_ns ? 0 : (int)((b->next_ns - now) / 1000000) + 1;
}

/* Keys scanned per step of a round: bounds the scratch (this many keys and
 * their values) whatever the table's size. */
#define BK_CHUNK 65536u

static int scratch(struct ps__backup *b, uint32_t vlen)
{
	uint64_t c = (uint64_t)BK_CHUNK * vlen;
	if (c <= b->scap)
		return 0;
	free(b->keys), free(b->v), free(b->miss);
	b->keys = malloc(BK_CHUNK * sizeof *b->keys);
	b->v = malloc(c * sizeof *b->v);
	b->miss = malloc(BK_CHUNK * sizeof *b->miss);
	b->scap = b->keys && b->v && b->miss ? c : 0;
	return b->scap ? 0 : -ENOMEM;
}

/* Sends the previous frame of the round (*last), keeping f as the new
 * last: the round's last frame goes with BK_END (ps__bk_tick). */
static void send_prev(struct ps__link *L, int to, uint8_t **last, uint32_t *last_len, uint8_t *f, uint32_t len,
		      bool end)
{
	struct ps__backup *b = L->bk;
	if (*last) {
		uint64_t req = ((uint64_t)L->w->node << 56) | (end ? BK_END : 0) | b->round;
		ps__lk_send(L, to, *last, PS__F_BACKUP, req, *last_len);
		free(*last);
	}
	*last = f;
	*last_len = len;
}

/* Reads the keys of t in [k0, k1) that node w->node holds and queues them
 * as frames (0 or -ENOMEM). */
static int round_chunk(struct ps__link *L, ps_table *t, int to, uint64_t k0, uint64_t k1, uint8_t **last,
		       uint32_t *last_len)
{
	struct ps__backup *b = L->bk;
	ps_world *w = L->w;
	const uint32_t vlen = t->value_len;
	uint64_t n = 0;
	for (uint64_t k = k0; k < k1; k++) {
		/* relaxed: ps__local_keys re-reads it (acquire) and misses a
		 * key that moved meanwhile */
		uint64_t lw = atomic_load_explicit(&t->loc[k], memory_order_relaxed);
		if ((lw & 0xff) == PS__LOC_LOCAL && PS__LOC_OWNER(lw) == w->node)
			b->keys[n++] = k;
	}
	if (!n)
		return 0;
	size_t nmiss = 0;
	uint64_t local = 0, repl = 0;
	ps__local_keys(t, b->keys, NULL, n, b->v, NULL, b->miss, &nmiss, &local, &repl);
	/* drop the misses (moved away meanwhile; in increasing order) */
	uint64_t m = 0;
	for (uint64_t i = 0, j = 0; i < n; i++) {
		if (j < nmiss && b->miss[j] == i) {
			j++;
			continue;
		}
		if (m != i) {
			b->keys[m] = b->keys[i];
			memcpy(b->v + m * vlen, b->v + i * vlen, 4 * (size_t)vlen);
		}
		m++;
	}
	uint64_t per = (PS__FRAME_MAX - PS__KV_HDR) / (8ULL + 4ULL * vlen);
	for (uint64_t at = 0; at < m; at += per) {
		uint32_t c = (uint32_t)(m - at < per ? m - at : per);
		uint32_t len = (uint32_t)ps__kv_size(true, c, vlen);
		uint8_t *f = malloc(PS__FRAME_HDR + len);
		if (!f)
			return -ENOMEM;
		struct ps__kv_req r = {.table = (uint32_t)t->id, .value_len = vlen, .num_keys = t->num_keys, .n = c};
		uint8_t *body = f + PS__FRAME_HDR;
		ps__kv_enc_hdr(body, &r);
		memcpy(body + PS__KV_HDR, b->keys + at, 8 * (size_t)c);
		memcpy(body + PS__KV_HDR + 8 * (size_t)c, b->v + at * vlen, 4 * (size_t)c * vlen);
		send_prev(L, to, last, last_len, f, len, false);
		b->keys_sent += c;
	}
	return 0;
}

/* (BK1) one round, if it is due */
void ps__bk_tick(struct ps__link *L)
{
	struct ps__backup *b = L->bk;
	ps_world *w = L->w;
	if (!b || ps__now_ns() < b->next_ns)
		return;
	b->next_ns = ps__now_ns() + b->period_ns;
	int to = ps__backup_host(w, w->host);
	/* relaxed: set by this node before its final barrier; a round then
	 * would only race the end of the job */
	if (to < 0 || atomic_load_explicit(&L->final, memory_order_relaxed))
		return;
	b->round++;
	uint8_t *last = NULL;
	uint32_t last_len = 0;
	int rc = 0;
	for (int id = 0; id < PS__MAX_TABLES && rc == 0; id++) {
		/* acquire: pairs with the release in ps__link_table_created */
		ps_table *t = atomic_load_explicit(&L->tables[id], memory_order_acquire);
		if (!t || t->rprim || t->state_len)
			continue;
		rc = scratch(b, t->value_len);
		for (uint64_t k0 = 0; rc == 0 && k0 < t->num_keys; k0 += BK_CHUNK)
			rc = round_chunk(L, t, to, k0, k0 + BK_CHUNK < t->num_keys ? k0 + BK_CHUNK : t->num_keys, &last,
					 &last_len);
	}
	/* a round cut short (out of memory) is not complete: no BK_END */
	if (last) {
		uint32_t len = last_len;
		uint8_t *f = last;
		last = NULL;
		send_prev(L, to, &f, &len, NULL, 0, rc == 0);
	}
	b->rounds_sent++;
}

static struct bk_entry *slot_of(struct bk_table *bt, ps_key k, bool add)
{
	if (add && (bt->n + 1) * 2 > bt->cap) {
		uint64_t cap = bt->cap ? bt->cap * 2 : 1024;
		struct bk_entry *e = malloc(cap * sizeof *e);
		if (!e)
			return NULL;
		for (uint64_t i = 0; i < cap; i++)
			e[i].k = UINT64_MAX;
		for (uint64_t i = 0; i < bt->cap; i++) {
			if (bt->e[i].k == UINT64_MAX)
				continue;
			uint64_t h = ps__mix64(bt->e[i].k) & (cap - 1);
			while (e[h].k != UINT64_MAX)
				h = (h + 1) & (cap - 1);
			e[h] = bt->e[i];
		}
		free(bt->e);
		bt->e = e;
		bt->cap = cap;
	}
	if (!bt->cap)
		return NULL;
	uint64_t h = ps__mix64(k) & (bt->cap - 1);
	while (bt->e[h].k != UINT64_MAX && bt->e[h].k != k)
		h = (h + 1) & (bt->cap - 1);
	if (bt->e[h].k == k)
		return &bt->e[h];
	if (!add)
		return NULL;
	if (bt->n >= bt->vcap) {
		uint64_t vcap = bt->vcap ? bt->vcap * 2 : 1024;
		float *v = realloc(bt->vals, vcap * bt->vlen * sizeof *v);
		if (!v)
			return NULL;
		bt->vals = v;
		bt->vcap = vcap;
	}
	bt->e[h] = (struct bk_entry){.k = k, .at = bt->n++};
	return &bt->e[h];
}

/* (BK2) a BACKUP frame of host f->host */
void ps__bk_on_frame(struct ps__link *L, const struct ps__frame *f)
{
	struct ps__backup *b = L->bk;
	struct ps__kv_req m;
	if (!b || f->host >= PS__MAX_HOSTS || ps__kv_dec(f->body, f->len, true, &m) != 0 || m.table >= PS__MAX_TABLES ||
	    (m.flags & PS__KV_WIRE))
		return;
	struct bk_table *bt = &b->tab[m.table];
	if (bt->vlen && bt->vlen != m.value_len)
		return;
	bt->vlen = m.value_len;
	uint32_t round = (uint32_t)f->req;
	for (uint32_t i = 0; i < m.n; i++) {
		ps_key k = ps__get64(m.keys + 8 * (size_t)i);
		struct bk_entry *e = slot_of(bt, k, true);
		if (!e)
			return;
		e->src = f->host;
		e->round = round;
		memcpy(bt->vals + e->at * bt->vlen, m.values + 4 * (size_t)i * m.value_len, 4 * (size_t)m.value_len);
	}
	if (round > b->newest[f->host])
		b->newest[f->host] = round;
	if ((f->req & BK_END) && round > b->complete[f->host])
		b->complete[f->host] = round;
}

/* (BK3) host x was dropped; hgone[x] is 2 already */
void ps__bk_promote(struct ps__link *L, int x)
{
	ps_world *w = L->w;
	struct ps__backup *b = L->bk;
	uint64_t promoted = 0, skipped = 0;
	if (b && x >= 0 && x < PS__MAX_HOSTS && ps__backup_host(w, x) == w->host) {
		uint32_t from = b->complete[x];
		for (int id = 0; id < PS__MAX_TABLES; id++) {
			struct bk_table *bt = &b->tab[id];
			/* acquire: as in ps__bk_tick */
			ps_table *t = atomic_load_explicit(&L->tables[id], memory_order_acquire);
			if (!t || !bt->n)
				continue;
			uint32_t *vals = malloc(4 * (size_t)(t->value_len + t->state_len));
			for (uint64_t i = 0; vals && i < bt->cap; i++) {
				struct bk_entry *e = &bt->e[i];
				if (e->k == UINT64_MAX || e->src != x || e->round < from || e->k >= t->num_keys)
					continue;
				/* acquire: as any reader of a word */
				uint64_t lw = atomic_load_explicit(&t->loc[e->k], memory_order_acquire);
				uint64_t off;
				if (!PS__LOC_IS_REMOTE(lw) || PS__LOC_IS_MOVING(lw) ||
				    ps__slot_alloc(w, t->id, w->node, t->slot_size, &off) != 0) {
					skipped++;
					continue;
				}
				memcpy(vals, bt->vals + e->at * bt->vlen, 4 * (size_t)t->value_len);
				memset(vals + t->value_len, 0, 4 * (size_t)t->state_len);
				ps__slot_fill(w, t, off, e->k, vals);
				/* release: the slot's content is visible to whoever
				 * acquires the word (KV1); a word that changed
				 * meanwhile keeps its new meaning (the slot is
				 * leaked: rare, a loss-time race) */
				if (atomic_compare_exchange_strong_explicit(&t->loc[e->k], &lw, PS__LOC_MAKE(w->node, off),
									    memory_order_release, memory_order_relaxed))
					promoted++;
				else
					skipped++;
			}
			free(vals);
		}
		fprintf(stderr,
			"psmem: host %d node %d: promoted %llu keys of lost host %d (its backup round %u, "
			"newest seen %u); %llu not promoted\n",
			w->host, w->node, (unsigned long long)promoted, x, from, b->newest[x],
			(unsigned long long)skipped);
	}
	int to = x >= 0 && x < w->nhosts ? ps__backup_host(w, x) : -1;
	if (to >= 0 && to != w->host && w->node == 0) {
		/* elsewhere (node 0 for its host): words naming x name its
		 * backup host now, hints and directories alike (routing maps
		 * the ones read before this anyway: link_remote.c) */
		uint64_t from = PS__LOC_MAKE_REMOTE(x), nw = PS__LOC_MAKE_REMOTE(to), n = 0;
		for (int id = 0; id < PS__MAX_TABLES; id++) {
			/* acquire: as in ps__bk_tick */
			ps_table *t = atomic_load_explicit(&L->tables[id], memory_order_acquire);
			for (uint64_t k = 0; t && k < t->num_keys; k++) {
				uint64_t lw = from;
				/* relaxed: a REMOTE word publishes nothing */
				n += atomic_compare_exchange_strong_explicit(&t->loc[k], &lw, nw, memory_order_relaxed,
									     memory_order_relaxed);
			}
		}
		fprintf(stderr, "psmem: host %d: %llu keys of lost host %d now routed to host %d\n", w->host,
			(unsigned long long)n, x, to);
	}
	if (x >= 0 && x < PS__MAX_CLOCK_HOSTS)
		/* release: the promoted words before the count that says
		 * "promotion done here" (BK3) */
		atomic_fetch_add_explicit(&w->seg.hdr->clocks.hgone[x], 1, memory_order_release);
}
