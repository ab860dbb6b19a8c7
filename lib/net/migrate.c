/*
 * migrate.c - localize across hosts: moving keys between hosts.
 *
 * Every key has a home host (the range partition of ps__host_keys; once
 * that host is gone, the host that took its keys over: ps__home_now,
 * drain.c).  The
 * home's location word of a key is its directory entry: a slot (held at
 * the home), REMOTE(h) (held by host h), or MOVING(h) (a move that began
 * at holder h is in progress).  Away from the home a word is a slot (held
 * here) or REMOTE(h), a hint that may be stale: a host asked for a key it
 * does not hold answers with a REDIRECT naming where to ask (bridge_link.c,
 * LK5), its home answers with the directory, and while the key is MOVING
 * with "ask again after a pause".
 *
 * A move of key k to node n of host A (the mover: A's worker, or its
 * service thread for ps_localize), holder B, home H:
 *
 *   1 lock      A == H: CAS REMOTE(B) -> MOVING(B) in A's own word.
 *               A != H: MOVE/LOCK to H.  H answers GIVEN with the value if
 *               it holds k (its word becomes MOVING(H)), DONE + B after
 *               CAS REMOTE(B) -> MOVING(B), or BUSY (moving already, or
 *               replicated): k stays where it is.
 *   2 give      MOVE/GIVE to B (unless step 1 gave it): B locks the slot,
 *               copies values and rule state, writes REMOTE(H), unlocks it
 *               MOVED and retires it (the protocol of a relocation, KV3).
 *   3 install   A fills a slot of node n it reserved before step 1 and
 *               publishes its word with release (A == H: over MOVING).
 *   4 set       A != H: MOVE/SET to H, whose word becomes REMOTE(A).  A
 *               give that failed (BUSY) is undone instead: UNLOCK, back
 *               to REMOTE(B).
 *
 * Invariants (MG1-MG6), with the kv.c ones within each host:
 *   (MG1) At every moment at most one slot of all hosts holds k unlocked and
 *        not MOVED: between 2 and 3 none does, and k's value travels in the
 *        MOVE_REPLY.  A push is applied only to such a slot (kv.c KV2, KV3),
 *        so each push is applied exactly once: before the give it is in
 *        the value that moves, after it the pusher is redirected and the
 *        push lands at A after 3.
 *   (MG2) The home's word changes only by a CAS from REMOTE (step 1, the
 *        lock), by the lock's owner (steps 3 at H, 4), or by a give at H
 *        under the slot lock.  So two moves of k never overlap: the second
 *        finds MOVING and gives up (localize is a hint).
 *   (MG3) Directory REMOTE(X) => X holds k: X installed k before the SET
 *        that wrote it (3 before 4), and X gives k up only while the home
 *        says MOVING.  Hence a redirect chain has at most two hops (hint,
 *        home) plus pauses while MOVING: no request loops.
 *   (MG5) A move that fails (allocation, a bad reply, a peer's status)
 *        leaves every key where it was: the entries it had locked are
 *        unlocked (unwind(), then steps 3 and 4), except keys whose value
 *        was given already, which are installed as in a move that works.
 *        A key whose LOCK reply was lost is not unlocked (we cannot know
 *        we own it); a host that loses replies ends the job (Limits).
 *   (MG4) No step blocks a link thread on the network: the executor of a
 *        MOVE only takes slot locks of its own host, whose holders never
 *        wait for the network while holding them.  Only the mover waits.
 *   (MG6) A full pool waits before anything is locked: the mover reserves
 *        its slots before step 1, and when this node's pool is full it
 *        waits for slots freed by reclamation (kv.c ps__wait_free_slot: the
 *        wait of a move within the host, bounded by 10 s, 1 s with nothing
 *        retired; on the service thread it runs the grace steps itself,
 *        GR5).  So no key of any host is MOVING while the mover waits for
 *        memory, and a wait that gives up leaves every key where it was:
 *        the move goes on with the slots it got (the keys that fit) and
 *        returns PS_EFULL.  Slots retired by a give at this host (step 2
 *        served here, or a move within the host) are what it waits for.
 *   (MG7) A host lost in the middle of a move leaves nothing MOVING
 *        (--on-host-failure continue; backups on).  The home's link thread
 *        that served a LOCK remembers the mover (struct ps__mvlocks: the
 *        word has no room for it, its owner field names the holder; the
 *        mover's SET or UNLOCK come to the same node and forget it).  When
 *        host x is dropped, before promotion (backup.c BK3), each home node
 *        unlocks every entry x had locked there:
 *          MOVING(home): the home gave x the value at LOCK -> REMOTE(x),
 *            promoted at b(x) from the copy the home sent there (BK7) or
 *            x's own (BK5);
 *          MOVING(B): -> REMOTE(B), and B is asked (CHECK, arg x) whether
 *            it still holds k; if not, it gave k to x (the lock kept every
 *            other mover out) and answers LOST: the home, if its entry is
 *            still REMOTE(B) and no live mover locked it since, makes it
 *            REMOTE(x) and promotes it if it is b(x) (else routing sends
 *            it to b(x), which has B's copy, BK7).
 *        Mover alive, holder x lost: the mover's GIVE fails (LK4), it
 *        unlocks the entry to REMOTE(x) (MG5), and b(x) promotes it then
 *        (backup.c BK6).  The home lost: its entries are gone with it; the
 *        mover's SET fails, the key stays installed at the mover.  CHECK
 *        and LOST are fire and forget (their replies name no request).
 *
 * Limits: a table with hot-spot replication (repl_max > 0) moves keys only
 * within a host (its hot keys are replicated on every host instead).
 * Without backups (--on-host-failure abort, the default) a host that dies
 * during a move ends the job.  A lock record whose SET or UNLOCK never came
 * while its mover lived (a reply lost, MG5) stays, and is acted on if that
 * mover is lost later: only an entry still MOVING is touched.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <urcu/urcu-memb.h>

#include "arena.h"
#include "grace.h"
#include "kv.h"
#include "link.h"
#include "link_in.h"
#include "table.h"

enum st { ST_SKIP, ST_LOCK, ST_GIVE, ST_GIVEN, ST_UNLOCK };

/* ------------------------------------------------------------ locks of lost movers (MG7) */

/*
 * The home's record of who locked which entry: the directory word says
 * MOVING(holder) but not who the mover is, and there is no room in it (the
 * owner field is the holder, needed to unlock).  Kept by the link thread
 * of the home node that served the LOCK - the mover's later SET or UNLOCK
 * come over the same connection to the same node - and only with backups
 * on (--on-host-failure continue): in the default mode a lost host ends
 * the job.  A hash on (table, key); an entry lives from the LOCK to the
 * SET or UNLOCK, i.e. about one round trip.
 */
struct mvlock {
	ps_key k;
	uint32_t table;
	int32_t mover;            /* -1: empty */
};

struct ps__mvlocks {
	uint64_t cap, n;          /* cap a power of 2 */
	struct mvlock *e;
};

static uint64_t lk_at(uint32_t table, ps_key k, uint64_t cap)
{
	return ps__mix64(k ^ ((uint64_t)table << 48)) & (cap - 1);
}

static struct mvlock *lk_find(struct ps__mvlocks *m, uint32_t table, ps_key k)
{
	if (!m || !m->cap)
		return NULL;
	for (uint64_t h = lk_at(table, k, m->cap);; h = (h + 1) & (m->cap - 1)) {
		struct mvlock *e = &m->e[h];
		if (e->mover < 0)
			return NULL;
		if (e->k == k && e->table == table)
			return e;
	}
}

/* Link thread: mover locked (table, k) here.  Without memory the record
 * is missing: a loss of that mover then leaves the entry MOVING (the
 * state before MG7). */
static void lk_note(struct ps__link *L, uint32_t table, ps_key k, int mover)
{
	struct ps__mvlocks *m = L->mvl;
	if (!m && !(m = L->mvl = calloc(1, sizeof *m)))
		return;
	if ((m->n + 1) * 2 > m->cap) {
		uint64_t cap = m->cap ? 2 * m->cap : 256;
		struct mvlock *e = malloc(cap * sizeof *e);
		if (!e)
			return;
		for (uint64_t i = 0; i < cap; i++)
			e[i].mover = -1;
		for (uint64_t i = 0; i < m->cap; i++) {
			if (m->e[i].mover < 0)
				continue;
			uint64_t h = lk_at(m->e[i].table, m->e[i].k, cap);
			while (e[h].mover >= 0)
				h = (h + 1) & (cap - 1);
			e[h] = m->e[i];
		}
		free(m->e);
		m->e = e;
		m->cap = cap;
	}
	struct mvlock *e = lk_find(m, table, k);
	if (!e) {
		uint64_t h = lk_at(table, k, m->cap);
		while (m->e[h].mover >= 0)
			h = (h + 1) & (m->cap - 1);
		e = &m->e[h];
		m->n++;
	}
	*e = (struct mvlock){.k = k, .table = table, .mover = mover};
}

/* Removes e (linear probing: the entries after it move back to fill it). */
static void lk_del(struct ps__mvlocks *m, struct mvlock *e)
{
	uint64_t i = (uint64_t)(e - m->e), j = i;
	m->e[i].mover = -1;
	m->n--;
	for (;;) {
		j = (j + 1) & (m->cap - 1);
		if (m->e[j].mover < 0)
			return;
		uint64_t h = lk_at(m->e[j].table, m->e[j].k, m->cap);
		/* e[j] may fill the hole at i if its home slot h is not in (i, j] */
		if ((i <= j) ? (h <= i || h > j) : (h <= i && h > j)) {
			m->e[i] = m->e[j];
			m->e[j].mover = -1;
			i = j;
		}
	}
}

void ps__migrate_locks_free(struct ps__link *L)
{
	if (L->mvl)
		free(L->mvl->e);
	free(L->mvl);
	L->mvl = NULL;
}

/* Fire and forget: MOVE op for keys[0..n) of t to host, with arg; its
 * MOVE_REPLY names no request slot (stale on arrival, LK1: ignored). */
static void send_op(struct ps__link *L, ps_table *t, int host, uint32_t op, int arg, const ps_key *keys, size_t n)
{
	const uint32_t per = (PS__FRAME_MAX - PS__MOVE_REPLY_HDR) / (8 + 4 * (t->value_len + t->state_len));
	for (size_t at = 0; at < n; at += per) {
		uint32_t c = (uint32_t)(n - at < per ? n - at : per);
		uint32_t body = (uint32_t)ps__move_size(c);
		uint8_t *f = malloc(PS__FRAME_HDR + body);
		if (!f)
			return;
		struct ps__move_req q = {.table = (uint32_t)t->id, .op = op, .nf = t->value_len + t->state_len,
					 .arg = (uint32_t)arg, .num_keys = t->num_keys, .n = c};
		ps__move_enc_hdr(f + PS__FRAME_HDR, &q);
		for (uint32_t j = 0; j < c; j++)
			ps__put64(f + PS__FRAME_HDR + PS__MOVE_HDR + 8 * (size_t)j, keys[at + j]);
		ps__lk_send(L, host, f, PS__F_MOVE, ((uint64_t)L->w->node << 56) | 0xffffffffULL, body);
		free(f);
	}
}

/*
 * (BK10) Entries just unlocked back to their holder (an UNLOCK served here,
 * or this home's own move that failed): a holder that is lost had its GIVE
 * fail, so the value did not reach the mover and its backup host must
 * promote it even if the holder had marked it given away (BK8).  That host
 * is told (PROMOTE); if it is this one, BK6's deferral or the directory
 * rule of promote_one does it.
 */
static void promote_unlocked(struct ps__link *L, ps_table *t, const ps_key *keys, size_t n)
{
	ps_world *w = L->w;
	for (size_t i = 0; i < n; i++) {
		/* acquire: as any reader of a word */
		uint64_t lw = atomic_load_explicit(&t->loc[keys[i]], memory_order_acquire);
		int x = PS__LOC_OWNER(lw);
		if (!PS__LOC_IS_REMOTE(lw) || PS__LOC_IS_MOVING(lw) || x >= w->nhosts || !ps__host_lost(w, x))
			continue;
		int b = ps__backup_host(w, x);
		if (b >= 0 && b != w->host)
			send_op(L, t, b, PS__MV_PROMOTE, x, &keys[i], 1);
	}
}

struct lost_key {
	uint32_t table;
	int32_t holder;
	ps_key k;
};

static int lost_key_cmp(const void *a, const void *b)
{
	const struct lost_key *x = a, *y = b;
	if (x->table != y->table)
		return x->table < y->table ? -1 : 1;
	if (x->holder != y->holder)
		return x->holder < y->holder ? -1 : 1;
	return (x->k > y->k) - (x->k < y->k);
}

/* (BK9) Keys homed at h are frozen where they are: h was lost (its
 * directory is rebuilt at b(h) from the survivors' lists), not left by
 * agreement (a leaver hands its directory over whole, TAKEDIR, and its
 * keys move on as any others).  relaxed: hmember is set at the leave's
 * agreement, long before the LEFT that sets hgone (drain.c). */
static bool home_frozen(ps_world *w, int h)
{
	return h != w->host && ps__host_lost(w, h) &&
	       (h >= PS__MAX_CLOCK_HOSTS ||
		atomic_load_explicit(&w->seg.hdr->clocks.hmember[h], memory_order_relaxed) != PS__HOST_LEFT);
}

/*
 * (BK9) Node 0 of a survivor that is not lost host x's backup host: the
 * keys homed at x that this host holds go to b(x), whose words become the
 * directory of x's keys (x's own is lost), then HELD_END (one key, ignored).
 */
void ps__migrate_held(struct ps__link *L, int x)
{
	ps_world *w = L->w;
	int b = ps__backup_host(w, x);
	if (w->node != 0 || b < 0 || b == w->host)
		return;
	ps_table *last = NULL;
	uint64_t sent = 0;
	/* seq_cst fence: the loss mark (hgone, stored before) before the scan
	 * of our words; pairs with the mover's fence after its installs */
	atomic_thread_fence(memory_order_seq_cst);
	for (int id = 0; id < PS__MAX_TABLES; id++) {
		/* acquire: as in ps__bk_tick */
		ps_table *t = atomic_load_explicit(&L->tables[id], memory_order_acquire);
		if (!t)
			continue;
		last = t;
		/* homes are over the initial hosts (EL2), not the ranks */
		const unsigned __int128 K = t->num_keys, H = (unsigned)w->home_hosts;
		uint64_t k0 = (uint64_t)(((unsigned)x * K + H - 1) / H);
		uint64_t k1 = (uint64_t)((((unsigned)x + 1) * K + H - 1) / H);
		ps_key *keys = k1 > k0 ? malloc((k1 - k0) * sizeof *keys) : NULL;
		size_t n = 0;
		for (uint64_t k = k0; keys && k < k1; k++) {
			/* relaxed: a slot word of this host is ours until we
			 * give it, which only this host's link threads do */
			uint64_t lw = atomic_load_explicit(&t->loc[k], memory_order_relaxed);
			if (!PS__LOC_IS_REMOTE(lw) && !(lw & PS__LOC_REPL))
				keys[n++] = k;
		}
		if (n)
			send_op(L, t, b, PS__MV_HELD, x, keys, n);
		sent += n;
		free(keys);
	}
	if (last) {
		ps_key zero = 0;
		send_op(L, last, b, PS__MV_HELD_END, x, &zero, 1);
	}
	fprintf(stderr, "psmem: host %d: %llu keys of lost host %d's home range held here, told host %d\n", w->host,
		(unsigned long long)sent, x, b);
}

/*
 * (MG7) Link thread of a home node, host x dropped (before BK3's
 * promotion here): every entry x had locked here is unlocked.  MOVING(me)
 * (this home gave x its value at LOCK): the value went to x, so the entry
 * names x, and the promotion that follows takes it from x's backup if this
 * host is x's backup host (x sends a move's keys there at install, BK5);
 * elsewhere routing sends it to that host.  MOVING(B), B another host:
 * back to REMOTE(B), and B is asked (CHECK) whether it gave k to x already
 * (it then answers LOST, and the entry is pointed at x as above).
 */
void ps__migrate_lost(struct ps__link *L, int x)
{
	struct ps__mvlocks *m = L->mvl;
	ps_world *w = L->w;
	if (!m || !m->n)
		return;
	struct lost_key *lk = malloc(m->n * sizeof *lk);
	size_t nk = 0, nundo = 0;
	for (uint64_t i = 0; lk && i < m->cap; i++) {
		struct mvlock *e = &m->e[i];
		if (e->mover == x)
			lk[nk++] = (struct lost_key){.table = e->table, .holder = -1, .k = e->k};
	}
	for (size_t i = 0; i < nk; i++) {
		struct mvlock *e = lk_find(m, lk[i].table, lk[i].k);
		if (e)
			lk_del(m, e);
		/* acquire: as in ps__bk_tick */
		ps_table *t = atomic_load_explicit(&L->tables[lk[i].table], memory_order_acquire);
		if (!t)
			continue;
		/* acquire: the word's last writer */
		uint64_t lw = atomic_load_explicit(&t->loc[lk[i].k], memory_order_acquire);
		if (!PS__LOC_IS_MOVING(lw))
			continue; /* not ours any more (MG2) */
		int holder = PS__LOC_OWNER(lw);
		/* release: as any directory write (MG3) */
		atomic_store_explicit(&t->loc[lk[i].k], PS__LOC_MAKE_REMOTE(holder == w->host ? x : holder),
				      memory_order_release);
		nundo++;
		if (holder != w->host)
			lk[i].holder = holder;
	}
	/* CHECK to each holder, one frame per (table, holder) */
	size_t nc = 0;
	for (size_t i = 0; i < nk; i++)
		if (lk[i].holder >= 0)
			lk[nc++] = lk[i];
	if (nc)
		qsort(lk, nc, sizeof *lk, lost_key_cmp);
	ps_key *keys = nc ? malloc(nc * sizeof *keys) : NULL;
	for (size_t i = 0; keys && i < nc;) {
		size_t j = i;
		while (j < nc && lk[j].table == lk[i].table && lk[j].holder == lk[i].holder) {
			keys[j - i] = lk[j].k;
			j++;
		}
		/* acquire: as above */
		ps_table *t = atomic_load_explicit(&L->tables[lk[i].table], memory_order_acquire);
		send_op(L, t, lk[i].holder, PS__MV_CHECK, x, keys, j - i);
		i = j;
	}
	if (nundo)
		fprintf(stderr, "psmem: host %d node %d: unlocked %zu keys lost host %d was moving (%zu asked of their holders)\n",
			w->host, w->node, nundo, x, nc);
	free(keys);
	free(lk);
}

struct mover {
	ps_table *t;
	ps_world *w;
	size_t n;
	uint32_t nf;              /* floats per key: values + rule state */
	const ps_key *keys;
	uint8_t *st;              /* enum st per key */
	int32_t *host;            /* per key: whom the next step asks */
	int32_t *giver;           /* per given key: the host that gave it */
	uint64_t *off;            /* reserved slot per key (0: none) */
	uint32_t *vals;           /* nf per key, for given keys */
};

/*
 * Sends one MOVE op for every key i with st[i] == want, grouped by host[i]
 * (one frame per host, split at the frame limit), waits, and hands each
 * key's {code, host} (and value when given) to on(): the caller's state
 * machine.  Returns 0 or the first failure.
 */
static int step(struct mover *mv, enum st want, uint32_t op,
		void (*on)(struct mover *mv, size_t i, int32_t code, int32_t host, const uint8_t *val))
{
	ps_world *w = mv->w;
	const int H = w->nhosts;
	const uint32_t per = (PS__FRAME_MAX - PS__MOVE_REPLY_HDR) / (8 + 4 * mv->nf);
	/* the frames: per host, chunks of at most per keys */
	int nfr = 0, cap = 0, rc = 0;
	uint8_t **frames = NULL;
	uint32_t *lens = NULL, **idx = NULL;
	int *hosts = NULL;
	for (int h = 0; h < H && rc == 0; h++) {
		size_t i = 0;
		for (;;) {
			uint32_t m = 0;
			size_t first = i;
			for (; i < mv->n && m < per; i++)
				m += mv->st[i] == want && mv->host[i] == h;
			if (m == 0)
				break;
			if (nfr == cap) {
				cap = cap ? 2 * cap : 8;
				void *a = realloc(frames, (size_t)cap * sizeof *frames);
				void *b = a ? realloc(lens, (size_t)cap * sizeof *lens) : NULL;
				void *c = b ? realloc(idx, (size_t)cap * sizeof *idx) : NULL;
				void *d = c ? realloc(hosts, (size_t)cap * sizeof *hosts) : NULL;
				frames = a ? a : frames;
				lens = b ? b : lens;
				idx = c ? c : idx;
				hosts = d ? d : hosts;
				if (!d) {
					rc = -ENOMEM;
					break;
				}
			}
			uint32_t body = (uint32_t)ps__move_size(m);
			uint8_t *f = malloc(PS__FRAME_HDR + body);
			uint32_t *ix = malloc(m * sizeof *ix);
			if (!f || !ix) {
				free(f);
				free(ix);
				rc = -ENOMEM;
				break;
			}
			struct ps__move_req q = {.table = (uint32_t)mv->t->id, .op = op, .nf = mv->nf,
						 .arg = (uint32_t)w->host, .num_keys = mv->t->num_keys, .n = m};
			ps__move_enc_hdr(f + PS__FRAME_HDR, &q);
			uint32_t j = 0;
			for (size_t k = first; k < i; k++) {
				if (mv->st[k] != want || mv->host[k] != h)
					continue;
				ps__put64(f + PS__FRAME_HDR + PS__MOVE_HDR + 8 * (size_t)j, mv->keys[k]);
				ix[j++] = (uint32_t)k;
			}
			frames[nfr] = f;
			lens[nfr] = body;
			idx[nfr] = ix;
			hosts[nfr] = h;
			nfr++;
		}
	}
	uint8_t **rep = calloc((size_t)(nfr ? nfr : 1), sizeof *rep);
	uint32_t *rlen = calloc((size_t)(nfr ? nfr : 1), sizeof *rlen);
	if (rc == 0 && (!rep || !rlen))
		rc = -ENOMEM;
	if (rc == 0 && nfr)
		rc = ps__link_calls(w, nfr, frames, lens, hosts, rep, rlen);
	for (int fr = 0; fr < nfr; fr++) {
		struct ps__move_reply r;
		int drc = rep && rep[fr] ? ps__move_reply_dec(rep[fr], rlen[fr], &r) : PS_EHOSTDOWN;
		uint32_t m = ps__get32(frames[fr] + PS__FRAME_HDR + 24);
		if (drc == 0 && r.status == 0 && (r.n != m || r.nf != mv->nf))
			drc = PS_EFRAME_BODY;
		if (drc == 0)
			drc = r.status;
		if (drc && !rc)
			rc = drc;
		if (drc == 0) {
			const uint8_t *v = r.vals;
			for (uint32_t j = 0; j < m; j++) {
				int32_t code = (int32_t)ps__get32(r.codes + 8 * (size_t)j);
				int32_t host = (int32_t)ps__get32(r.codes + 8 * (size_t)j + 4);
				on(mv, idx[fr][j], code, host, code == PS__MV_GIVEN ? v : NULL);
				if (code == PS__MV_GIVEN)
					v += 4 * (size_t)mv->nf;
			}
		}
		if (rep)
			free(rep[fr]);
		free(frames[fr]);
		free(idx[fr]);
	}
	free(rep);
	free(rlen);
	free(frames);
	free(lens);
	free(idx);
	free(hosts);
	return rc;
}

static void take_value(struct mover *mv, size_t i, const uint8_t *val)
{
	mv->giver[i] = mv->host[i]; /* the host this step asked */
	memcpy(mv->vals + (size_t)i * mv->nf, val, 4 * (size_t)mv->nf);
	mv->st[i] = ST_GIVEN;
}

/* Answers to LOCK (step 1 at another home). */
static void on_lock(struct mover *mv, size_t i, int32_t code, int32_t host, const uint8_t *val)
{
	if (code == PS__MV_GIVEN) {
		take_value(mv, i, val);
		mv->host[i] = ps__home_now(mv->w, mv->t->num_keys, mv->keys[i]);
	} else if (code == PS__MV_DONE && host >= 0 && host != mv->w->host) {
		mv->st[i] = ST_GIVE;
		mv->host[i] = host;
	} else {
		mv->st[i] = ST_SKIP;
	}
}

/* Answers to GIVE (step 2 at the holder). */
static void on_give(struct mover *mv, size_t i, int32_t code, int32_t host, const uint8_t *val)
{
	(void)host;
	if (code == PS__MV_GIVEN) {
		take_value(mv, i, val);
		mv->host[i] = ps__home_now(mv->w, mv->t->num_keys, mv->keys[i]);
	} else {
		mv->st[i] = ST_UNLOCK; /* host[i] stays the holder */
	}
}

static void on_done(struct mover *mv, size_t i, int32_t code, int32_t host, const uint8_t *val)
{
	(void)mv, (void)i, (void)code, (void)host, (void)val;
}

/*
 * After a failed step: a key still ST_GIVE is locked by this move (our own
 * directory entry MOVING, or the home answered DONE) and was not given:
 * ST_UNLOCK, so that step 3 restores our own entry and step 4 sends UNLOCK
 * to its home (host[] still names the holder, which step 3 keeps for our
 * entry and replaces by the home for the others).  A key still ST_LOCK
 * got no answer: its frame was not sent or its home refused it, so this
 * move does not own its entry and must not unlock it (MG2): ST_SKIP.
 * ST_GIVEN keys were given: step 3 installs them, step 4 sets the home.
 */
static void unwind(struct mover *mv)
{
	for (size_t i = 0; i < mv->n; i++) {
		if (mv->st[i] == ST_GIVE)
			mv->st[i] = ST_UNLOCK;
		else if (mv->st[i] == ST_LOCK)
			mv->st[i] = ST_SKIP;
	}
}

#ifdef PS_TEST_HOOKS
/*
 * Test builds only: PSMEM_DEBUG_MOVE_STOP=HOST:WHERE:N makes host HOST's
 * N-th move (from 1) stop at WHERE, for test_hosts_fail's losses in the middle of
 * a move: "lock" (after step 1) and "install" (after step 3 and its
 * backup, before step 4) print a line and never return (the test kills
 * the host), and so does "give" (after step 2); "lock-wait" waits after step 1 until this node's link thread
 * has run the promotion of a lost host (BK3), then goes on.
 */
static void move_stop(ps_world *w, const char *where)
{
	static _Atomic int seen[2];
	const char *e = getenv("PSMEM_DEBUG_MOVE_STOP");
	char *end, at[16];
	long h = e ? strtol(e, &end, 10) : -1;
	int nth = 0;
	if (h != w->host || sscanf(end, ":%15[a-z-]:%d", at, &nth) != 2)
		return;
	bool wait = !strcmp(at, "lock-wait");
	if (strcmp(at, where) && !(wait && !strcmp(where, "lock")))
		return;
	/* relaxed: counts the moves that get here, in one process */
	if (atomic_fetch_add_explicit(&seen[where[0] == 'l'], 1, memory_order_relaxed) + 1 != nth)
		return;
	printf("psmem: test hook: host %d %s after its move's %s step\n", w->host, wait ? "waits for a loss" : "stops",
	       where);
	fflush(stdout);
	/* relaxed: a count; the words it covers are read under their own
	 * protocol */
	for (int i = 0; wait && i < 60000 && !atomic_load_explicit(&ps__bk_test_promotions, memory_order_relaxed);
	     i++)
		usleep(1000);
	while (!wait)
		pause();
}
#else
#define move_stop(w, where) ((void)0)
#endif

int ps__migrate_in(ps_table *t, const ps_key *keys, size_t n)
{
	ps_world *w = t->w;
	if (!w->link || t->d->repl_max > 0 || n == 0)
		return 0; /* see Limits above */
	const int me = w->host;
	struct mover mv = {.t = t, .w = w, .n = n, .nf = t->value_len + t->state_len, .keys = keys};
	mv.st = calloc(n, 1);
	mv.host = calloc(n, sizeof *mv.host);
	mv.giver = calloc(n, sizeof *mv.giver);
	mv.off = calloc(n, sizeof *mv.off);
	mv.vals = malloc(n * mv.nf * sizeof *mv.vals);
	int rc = (mv.st && mv.host && mv.giver && mv.off && mv.vals) ? 0 : -ENOMEM;
	/* reserve the slots first: a value that was given up must land.  A
	 * full pool whose slots wait for a grace period is waited for here,
	 * before step 1, as a move within the host does (MG6). */
	size_t nres = 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		rc = ps__slot_alloc(w, t->id, w->node, t->slot_size, &mv.off[i]);
		/* another allocator may take the freed slot first: wait again,
		 * as ps__localize_keys retries from the key that failed */
		while (rc == PS_EFULL && ps__wait_free_slot(w, t))
			rc = ps__slot_alloc(w, t->id, w->node, t->slot_size, &mv.off[i]);
		if (rc == 0)
			nres++;
	}
	if (rc == PS_EFULL && nres > 0)
		rc = 0; /* move what fits; the rest stays (and is reported) */
	int full = nres < n ? PS_EFULL : 0;
	/* step 1 */
	for (size_t i = 0; rc == 0 && i < nres; i++) {
		ps_key k = keys[i];
		int home = ps__home_now(w, t->num_keys, k);
		if (home != me) {
			mv.st[i] = ST_LOCK;
			mv.host[i] = home;
			continue;
		}
		/* acquire: pairs with the release of the word's last writer */
		uint64_t lw = atomic_load_explicit(&t->loc[k], memory_order_acquire);
		/* relaxed CAS: we own the entry after it (MG2); what we read
		 * next comes in a MOVE_REPLY, not from memory */
		if (PS__LOC_IS_REMOTE(lw) && !PS__LOC_IS_MOVING(lw) && PS__LOC_OWNER(lw) != me &&
		    atomic_compare_exchange_strong_explicit(&t->loc[k], &lw, PS__LOC_MAKE_MOVING(PS__LOC_OWNER(lw)),
							    memory_order_relaxed, memory_order_relaxed)) {
			mv.st[i] = ST_GIVE;
			mv.host[i] = PS__LOC_OWNER(lw);
		}
	}
	if (rc == 0)
		rc = step(&mv, ST_LOCK, PS__MV_LOCK, on_lock);
	move_stop(w, "lock");
#ifdef PS_TEST_HOOKS
	if (rc == 0 && w->move_fail) { /* as if one host's reply were bad */
		w->move_fail = false;
		rc = -EIO;
	}
#endif
	/* step 2 */
	if (rc == 0)
		rc = step(&mv, ST_GIVE, PS__MV_GIVE, on_give);
	move_stop(w, "give");
	/* A failed LOCK or GIVE step unwinds (MG5): every key this move locked
	 * and did not get is unlocked, so it stays where it was. */
	if (rc)
		unwind(&mv);
	/* step 3 (also after a failure: a given value must land) */
	size_t moved = 0;
	ps_key *inst = malloc(nres * sizeof *inst + 1); /* keys installed, for BK5 */
	uint32_t *ival = malloc(nres * sizeof *ival * mv.nf + 1); /* values and rule state */
	int32_t *igiver = malloc(nres * sizeof *igiver + 1);
	for (size_t i = 0; i < nres; i++) {
		int home = ps__home_now(w, t->num_keys, keys[i]);
		if (mv.st[i] == ST_UNLOCK && home == me) {
			/* our own directory entry: back to the holder */
			uint64_t lw = PS__LOC_MAKE_REMOTE(mv.host[i]);
			/* release: as any directory write; orders nothing else */
			atomic_store_explicit(&t->loc[keys[i]], lw, memory_order_release);
			if (w->link->bk) /* a lost holder: its backup host promotes it (BK10) */
				promote_unlocked(w->link, t, &keys[i], 1);
			mv.st[i] = ST_SKIP;
		} else if (mv.st[i] == ST_UNLOCK) {
			mv.host[i] = home; /* the home's entry remembers the holder */
		}
		if (mv.st[i] != ST_GIVEN)
			continue;
		ps__slot_fill(w, t, mv.off[i], keys[i], mv.vals + i * mv.nf);
		/* release: the slot's seq, key and values are visible to whoever
		 * acquires the word (KV1) */
		atomic_store_explicit(&t->loc[keys[i]], PS__LOC_MAKE(w->node, mv.off[i]), memory_order_release);
		mv.off[i] = 0;
		if (inst && ival && igiver) {
			inst[moved] = keys[i];
			igiver[moved] = mv.giver[i];
			memcpy(ival + moved * mv.nf, mv.vals + i * mv.nf, 4 * (size_t)mv.nf);
		}
		moved++;
		if (mv.host[i] == me)
			mv.st[i] = ST_SKIP; /* home: step 3 was the directory write */
	}
	/* their values to this host's backup host now, before the SET that
	 * makes the home route to us (BK5): a loss before our next backup
	 * round keeps them; without memory, only the round covers them */
	if (inst && ival && igiver) {
		ps__bk_moved_in(w, t, inst, ival, mv.nf, moved);
		ps__bk_got(w, t, inst, igiver, moved);
	}
	free(inst);
	free(ival);
	free(igiver);
	move_stop(w, "install");
	/* step 4 */
	int rc4 = step(&mv, ST_GIVEN, PS__MV_SET, on_done);
	int rc5 = step(&mv, ST_UNLOCK, PS__MV_UNLOCK, on_done);
	if (!rc)
		rc = rc4 ? rc4 : rc5;
	/* keys installed here whose home was lost meanwhile (their SET went
	 * nowhere): the lost home's directory is at its backup host now
	 * (backup.c BK9), which must learn they are here.  seq_cst fence: our
	 * installs before the loss marks we read, against the link thread's
	 * mark before its scan of what we hold (ps__migrate_held): a key one
	 * side misses the other sees */
	atomic_thread_fence(memory_order_seq_cst);
	for (size_t i = 0; w->link->bk && i < nres; i++) {
		int home = ps__home_of(w, t->num_keys, keys[i]);
		int bh = mv.st[i] == ST_GIVEN && ps__host_lost(w, home) ? ps__backup_host(w, home) : -1;
		if (bh >= 0 && bh != me)
			send_op(w->link, t, bh, PS__MV_HELD, home, &keys[i], 1);
	}

	/* reserved slots not used: freed after a grace period like any other */
	size_t unused = 0;
	for (size_t i = 0; i < nres; i++)
		unused += mv.off[i] != 0;
	if (unused) {
		struct ps__retire_batch *b = ps__alloc(w, sizeof *b + unused * sizeof b->e[0]);
		if (b) {
			b->n = 0;
			for (size_t i = 0; i < nres; i++)
				if (mv.off[i])
					b->e[b->n++] = (struct ps__retired){.off = mv.off[i], .table = t->id, .node = w->node};
			ps__retire(w, b);
		}
	}
	if (moved) /* relaxed: a statistics counter */
		atomic_fetch_add_explicit(&w->me->stats.relocations, moved, memory_order_relaxed);
	free(mv.st);
	free(mv.host);
	free(mv.giver);
	free(mv.off);
	free(mv.vals);
	return rc ? rc : full;
}

/* ------------------------------------------------------------ the other side */

uint32_t ps__migrate_serve(ps_world *w, ps_table *t, int from_host, const struct ps__move_req *m, uint8_t *out)
{
	const uint32_t nf = m->nf;
	uint8_t *codes = out + PS__MOVE_REPLY_HDR;
	uint8_t *vals = codes + 8ULL * m->n;
	uint32_t ngiven = 0;
	struct ps__retire_batch *b = NULL;
	if (m->op == PS__MV_LOCK || m->op == PS__MV_GIVE) {
		b = ps__alloc(w, sizeof *b + m->n * sizeof b->e[0]);
		if (b)
			b->n = 0;
	}
	const int me = w->host;
	const int to = (int)m->arg;
	struct ps__link *L = w->link;
	/* CHECK / LOST (MG7): arg is the lost mover, not the sender */
	const bool after_loss = m->op == PS__MV_CHECK || m->op == PS__MV_LOST;
	if (m->op == PS__MV_PROMOTE) {
		/* (BK10) sent by the home, whose directory says `to` (lost)
		 * after an unlock: our copy is the value */
		for (uint32_t i = 0; L && to != me && to != from_host && i < m->n; i++) {
			ps_key k = ps__get64(m->keys + 8 * (size_t)i);
			if (k < t->num_keys)
				ps__bk_promote_key(L, t, k, to, true);
		}
		memset(out + PS__MOVE_REPLY_HDR, 0, 8ULL * m->n);
		ps__move_reply_enc_hdr(out, 0, m->n, nf, 0);
		return (uint32_t)ps__move_reply_size(m->n, nf, 0);
	}
	if (m->op == PS__MV_HELD || m->op == PS__MV_HELD_END) {
		/* (BK9) applied by backup.c after this node's promotion of
		 * host arg (queued until then); arg need not be lost here yet */
		ps_key *keys = malloc(m->n * sizeof *keys);
		for (uint32_t i = 0; keys && i < m->n; i++)
			keys[i] = ps__get64(m->keys + 8 * (size_t)i);
		if (keys && to != me && to != from_host && L)
			ps__bk_held(L, t, to, from_host, keys, m->op == PS__MV_HELD_END ? 0 : m->n);
		free(keys);
		memset(out + PS__MOVE_REPLY_HDR, 0, 8ULL * m->n);
		ps__move_reply_enc_hdr(out, 0, m->n, nf, 0);
		return (uint32_t)ps__move_reply_size(m->n, nf, 0);
	}
	ps_key *later = after_loss ? malloc(m->n * sizeof *later) : NULL;
	uint32_t nlater = 0, nunl = 0;
	/* keys an UNLOCK gave back to their holder, for BK10 */
	ps_key *later_unlock = m->op == PS__MV_UNLOCK && L && L->bk ? malloc(m->n * sizeof *later_unlock) : NULL;
	/* keys given, for the mover's backup host (BK7) */
	ps_key *given = L && L->bk && b ? malloc(m->n * sizeof *given) : NULL;
	urcu_memb_read_lock();
	for (uint32_t i = 0; i < m->n; i++) {
		ps_key k = ps__get64(m->keys + 8 * (size_t)i);
		int32_t code = PS__MV_BUSY, host = -1;
		if (k >= t->num_keys || to == me || (after_loss ? !later || !ps__host_lost(w, to) : to != from_host)) {
			ps__put32(codes + 8 * (size_t)i, (uint32_t)code);
			ps__put32(codes + 8 * (size_t)i + 4, (uint32_t)host);
			continue;
		}
		int home = ps__home_now(w, t->num_keys, k);
		for (;;) {
			/* acquire: pairs with the release of the word's writer */
			uint64_t lw = atomic_load_explicit(&t->loc[k], memory_order_acquire);
			if (m->op == PS__MV_CHECK) {
				/* held here: not given; else given to the lost
				 * mover (the home's lock kept anyone else out) */
				if (PS__LOC_IS_REMOTE(lw) && !(lw & PS__LOC_REPL))
					later[nlater++] = k;
				code = PS__MV_DONE;
				break;
			}
			if (m->op == PS__MV_LOST) {
				/* the sender gave k to lost host `to` while it
				 * held the lock; we unlocked it back to the
				 * sender since (MG7).  Not if someone locked or
				 * moved it meanwhile. */
				struct mvlock *e = lk_find(L ? L->mvl : NULL, (uint32_t)t->id, k);
				if (home != me || lw != PS__LOC_MAKE_REMOTE(from_host) || (e && !ps__host_lost(w, e->mover)))
					break;
				/* release: as any directory write */
				atomic_store_explicit(&t->loc[k], PS__LOC_MAKE_REMOTE(to), memory_order_release);
				later[nlater++] = k;
				code = PS__MV_DONE;
				break;
			}
			if (m->op == PS__MV_SET || m->op == PS__MV_UNLOCK) {
				/* only the owner of the lock asks (MG2) */
				if (home != me || !PS__LOC_IS_MOVING(lw))
					break;
				uint64_t nw = PS__LOC_MAKE_REMOTE(m->op == PS__MV_SET ? to : PS__LOC_OWNER(lw));
				/* release: as any directory write (MG3: SET after install) */
				atomic_store_explicit(&t->loc[k], nw, memory_order_release);
				if (m->op == PS__MV_UNLOCK && later_unlock)
					later_unlock[nunl++] = k;
				struct mvlock *e = lk_find(L ? L->mvl : NULL, (uint32_t)t->id, k);
				if (e && e->mover == to)
					lk_del(L->mvl, e);
				code = PS__MV_DONE;
				break;
			}
			if (m->op == PS__MV_LOCK && home != me)
				break;
			/* a lost home's keys stay where they are: this host told
			 * the home's backup host it holds them (BK9), a give now
			 * would make that list wrong (b(x) applies a list that
			 * arrives after the give: it drops the live copy it
			 * installed and routes to us).  The key's own home, not
			 * ps__home_now's: that names b(x), alive */
			if (m->op == PS__MV_GIVE && home_frozen(w, ps__home_of(w, t->num_keys, k)))
				break;
			if (PS__LOC_IS_MOVING(lw) || (lw & PS__LOC_REPL))
				break; /* moving already, or replicated here: stays */
			if (PS__LOC_IS_REMOTE(lw)) {
				if (m->op == PS__MV_GIVE || PS__LOC_OWNER(lw) == to)
					break; /* not here (GIVE), or held by the asker */
				/* relaxed CAS: the lock of the entry (MG2) */
				if (!atomic_compare_exchange_strong_explicit(&t->loc[k], &lw,
									     PS__LOC_MAKE_MOVING(PS__LOC_OWNER(lw)),
									     memory_order_relaxed, memory_order_relaxed))
					continue;
				code = PS__MV_DONE;
				host = PS__LOC_OWNER(lw);
				if (L && L->bk) /* continue mode: remember the mover (MG7) */
					lk_note(L, (uint32_t)t->id, k, to);
				break;
			}
			/* held here: give it (at the home the entry stays locked) */
			uint64_t nw = home == me ? PS__LOC_MAKE_MOVING(me) : PS__LOC_MAKE_REMOTE(home);
			struct ps__retired ret;
			if (!b || !ps__slot_give(w, t, k, nw, (uint32_t *)(void *)(vals + 4ULL * nf * ngiven), &ret))
				break;
			b->e[b->n++] = ret;
			if (home == me && L && L->bk) /* our entry, locked for the mover (MG7) */
				lk_note(L, (uint32_t)t->id, k, to);
			if (given)
				given[ngiven] = k;
			code = PS__MV_GIVEN;
			host = me;
			ngiven++;
			break;
		}
		ps__put32(codes + 8 * (size_t)i, (uint32_t)code);
		ps__put32(codes + 8 * (size_t)i + 4, (uint32_t)host);
	}
	urcu_memb_read_unlock();
	if (nlater && m->op == PS__MV_CHECK) /* what we gave the lost mover */
		send_op(L, t, from_host, PS__MV_LOST, to, later, nlater);
	if (nlater && m->op == PS__MV_LOST && ps__backup_host(w, to) == me) /* its backups are here */
		for (uint32_t i = 0; i < nlater; i++)
			ps__bk_promote_key(L, t, later[i], to, false);
	free(later);
	if (nunl)
		promote_unlocked(L, t, later_unlock, nunl);
	free(later_unlock);
	if (given && ngiven) /* before the reply that carries them leaves */
		ps__bk_given(L, t, to, given, vals, nf, ngiven);
	free(given);
	if (b && b->n)
		ps__retire(w, b); /* the given slots, after a grace period */
	else if (b)
		ps__free(w, b);
	ps__move_reply_enc_hdr(out, 0, m->n, nf, ngiven);
	return (uint32_t)ps__move_reply_size(m->n, nf, ngiven);
}
