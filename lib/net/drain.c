/*
 * drain.c - a host that leaves the job (psrun --drain, psstat --leave,
 * ps_sync_hosts returning 0; issue 16) hands everything it holds to the
 * hosts that stay, while they keep pushing and pulling, and then says a
 * LEFT goodbye that drops it without error under either
 * --on-host-failure mode.  docs/DESIGN.md "Leaving: the drain".
 *
 * Host x leaves; y = b(x), the next present host in the ring (the host
 * that takes a lost x's keys, backup.c), takes over what x held and x's
 * role as the home of x's key range.  Every node i of x runs, from
 * ps_finalize (bridge_link.c ps__link_stop), in place of the final barrier:
 *
 *   1 held      every key node i holds in a slot is given up (ps__slot_give,
 *               the give of a move: slot lock, values + rule state copied,
 *               word := MOVING(x), slot unlocked MOVED and retired) and sent
 *               to node i of y in TAKE frames (MOVE op 5: keys + values).
 *               y installs each in a fresh slot of node i and publishes it
 *               over its word (a REMOTE hint or directory entry: CAS :=
 *               slot).  Once y answers DONE, x's word becomes REMOTE(y).
 *   2 barrier   over x's nodes (ps__node_barrier): every node's keys are
 *               at y before node 0 reads the directory.
 *   3 directory node 0 locks every entry of x's home range: REMOTE(z) ->
 *               MOVING(z) (CAS, the lock of a move: MG2), waiting while an
 *               entry is MOVING (a move in flight: its SET or UNLOCK comes)
 *               and giving up any slot found (a key that came back since
 *               1, as in 1); then TAKEDIR frames (MOVE op 6: keys + holder)
 *               install REMOTE(z) at y (y's slot where z == y).  The
 *               entries stay MOVING at x: requests that still reach x for
 *               them pause (REDIRECT -1) and are routed again after the
 *               LEFT, to y.
 *   4 goodbye   node i sends LEFT on its link; when every node of x has,
 *               x's bridge sends LEFT to every peer; each peer's bridge
 *               drops x (no error, either mode) and gives its nodes
 *               ABORT(x, PS__GONE_LEFT).  Node i then waits until every
 *               data connection has ended (below) and the node exits.
 *
 * At every survivor h, ABORT(x, PS__GONE_LEFT) on node j's link
 * (ps__drain_left): x is marked gone (hgone[x] = 2: clocks skip it, CLH7;
 * routing maps a word naming x to y, as for a lost host), node j's data
 * connection to x is half-closed (nothing more is sent there: a send fails
 * PS_EHOSTDOWN and its keys are routed again), node 0 rewrites the words
 * naming x (to y; at y itself a stale hint to the key's home), nothing is
 * promoted from backups, and each node sets its bit in hpromo[x] (all
 * live nodes: done here, ps__host_promoted; until then y answers "pause"
 * for a key whose word names x).  Node
 * j keeps reading its data connection from x until x's EOF; then it routes
 * again whatever is still in flight to x.
 *
 * Invariants (DR1-DR6), with migrate.c's MG1-MG6 and kv.c's:
 *   (DR1) Exactly once (MG1).  A key x held is given with the slot lock of
 *        its one live slot; a push applied before is in the value that
 *        travels, a later one finds the word MOVING or REMOTE(y) and is
 *        paused or redirected until it lands at y.  Between the give and
 *        y's install no slot holds it: the value is in the TAKE frame, and
 *        if the call fails x installs it again itself (never lost).
 *   (DR2) No answer is lost or counted twice.  x's node i answers every
 *        request a peer's node i sent before the peer's half-close (one
 *        stream, executed in order), and its answers precede its own EOF;
 *        the peer re-routes only what is still unanswered at that EOF,
 *        which x never applied (every key x had was given before the
 *        LEFT, and x applies nothing after giving).  So unlike a loss (BK4)
 *        a leave applies no push twice and loses none.
 *   (DR3) The directory moves whole.  Node 0 locks every entry of x's
 *        home range before sending it; a locked entry does not change
 *        (MOVE LOCK answers BUSY, a holder's GIVE needs the home's lock),
 *        so y installs what is true: REMOTE(z) with z holding k (MG3), or
 *        its own slot.  Holders keep their keys; only the entry travels.
 *   (DR4) One b(x) everywhere.  x and every survivor compute y as the next
 *        host after x in the ring that is not gone, before and after the
 *        drop, so the keys and the directory go where routing will send
 *        the requests (a host lost meanwhile changes y: Limits).
 *   (DR5) The LEFT comes after the hand-over: a node sends its LEFT only
 *        after its step 1 (node 0: also 3) completed, and the bridge sends
 *        the host's LEFT only once every node has.  The survivors drop x
 *        (ABORT with PS__GONE_LEFT) only then, so nothing of x's is
 *        promoted from an older backup (backup.c's promotion is not run).
 *   (DR6) Nothing waits for ever: y answers BUSY for a key whose word is
 *        MOVING there (a move in flight that will be unlocked) and x tries
 *        again after a pause, as the router does; every wait is bounded by
 *        PATIENCE_NS, after which the drain fails (keys it holds stay at x,
 *        and x's node exits non-zero: the job then treats x as failed).
 *
 * Limits: tables with hot-spot replication (repl_max > 0) do not move
 * across hosts (migrate.c) and make the drain fail; y must have room for
 * x's keys in its pools (a TAKE that finds none answers BUSY until the
 * patience runs out); a move in flight to x when it leaves fails
 * (PS_EHOSTDOWN; the key stays where it was); a node without a data
 * connection to a host (requests through the bridges) is not covered by
 * DR2; hosts leave one at a time (two that drain at once into each other
 * are not handled).  After the leave y is the home of x's range for moves
 * too (ps__home_now, used by migrate.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <urcu/urcu-memb.h>

#include "arena.h"
#include "barrier.h"
#include "clock.h"
#include "grace.h"
#include "kv.h"
#include "table.h"
#include "link_in.h"

#define PATIENCE_NS (30ULL * 1000 * 1000 * 1000)

static ps_table *table_at(struct ps__link *L, int id)
{
	/* acquire: pairs with the release in ps__link_table_created */
	return atomic_load_explicit(&L->tables[id], memory_order_acquire);
}

static bool is_slot(uint64_t lw)
{
	return (lw & 0xff) == PS__LOC_LOCAL;
}

/* Keys per TAKE frame: the frame limit, and at most 64 Ki keys. */
static uint32_t per_frame(uint32_t nf)
{
	uint64_t per = (PS__FRAME_MAX - PS__MOVE_HDR) / (8ULL + 4ULL * nf);
	return per > 65536 ? 65536 : (uint32_t)per;
}

/* A pause that doubles from 20 us to 1 ms, as the router's (LK5). */
static void pause_step(unsigned *us)
{
	usleep(*us);
	*us = *us < 1000 ? *us * 2 : 1000;
}

/*
 * One TAKE or TAKEDIR frame of keys[0..n) (nf u32 each in vals) to node
 * w->node of host y.  Per key, done[i] = 1 when y answered DONE.  0, or
 * the call's failure (no key is done then).
 */
static int call(struct ps__link *L, ps_table *t, int y, uint32_t op, uint32_t nf, const ps_key *keys,
		const uint32_t *vals, uint32_t n, uint8_t *done)
{
	ps_world *w = L->w;
	memset(done, 0, n);
	uint64_t body = ps__move_size(n) + 4ULL * nf * n;
	uint8_t *f = malloc(PS__FRAME_HDR + body);
	if (!f)
		return -ENOMEM;
	struct ps__move_req q = {.table = (uint32_t)t->id, .op = op, .nf = nf, .arg = (uint32_t)w->host,
				 .num_keys = t->num_keys, .n = n};
	uint8_t *b = f + PS__FRAME_HDR;
	ps__move_enc_hdr(b, &q);
	for (uint32_t i = 0; i < n; i++)
		ps__put64(b + PS__MOVE_HDR + 8 * (size_t)i, keys[i]);
	uint8_t *v = b + PS__MOVE_HDR + 8 * (size_t)n;
	for (uint64_t i = 0; i < (uint64_t)n * nf; i++)
		ps__put32(v + 4 * i, vals[i]);
	uint8_t *frames[1] = {f}, *rep[1] = {NULL};
	uint32_t lens[1] = {(uint32_t)body}, rlen[1] = {0};
	int hosts[1] = {y};
	int rc = ps__link_calls(w, 1, frames, lens, hosts, rep, rlen);
	struct ps__move_reply r;
	if (rc == 0)
		rc = rep[0] ? ps__move_reply_dec(rep[0], rlen[0], &r) : PS_EHOSTDOWN;
	if (rc == 0)
		rc = r.status;
	if (rc == 0 && r.n != n)
		rc = PS_EFRAME_BODY;
	for (uint32_t i = 0; rc == 0 && i < n; i++)
		done[i] = (int32_t)ps__get32(r.codes + 8 * (size_t)i) == PS__MV_DONE;
	free(rep[0]);
	free(f);
	return rc;
}

/* Puts a value that could not be handed over back into a slot of this
 * node (DR1): our word is MOVING(us), written by our give. */
static void take_back(ps_world *w, ps_table *t, ps_key k, const uint32_t *vals)
{
	uint64_t off;
	int rc = ps__slot_alloc(w, t->id, w->node, t->slot_size, &off);
	while (rc == PS_EFULL && ps__wait_free_slot(w, t))
		rc = ps__slot_alloc(w, t->id, w->node, t->slot_size, &off);
	if (rc) {
		fprintf(stderr, "psmem: host %d node %d: drain: key %llu of table %d could not be put back: %s\n",
			w->host, w->node, (unsigned long long)k, t->id, ps_strerror(rc));
		return;
	}
	ps__slot_fill(w, t, off, k, vals);
	/* release: the slot's content before the word that names it (KV1) */
	atomic_store_explicit(&t->loc[k], PS__LOC_MAKE(w->node, off), memory_order_release);
}

/*
 * (DR1) Gives up the keys of cand[0..m) held here in a slot and hands
 * them to y: TAKE until every one is done (BUSY: again after a pause).
 * Then this host's word of each is REMOTE(y).  0 or a code (the keys not
 * handed over are back in slots here).
 */
static int hand_over(struct ps__link *L, ps_table *t, int y, const ps_key *cand, uint32_t m, ps_key *keys,
		     uint32_t *vals, uint8_t *done)
{
	ps_world *w = L->w;
	const uint32_t nf = t->value_len + t->state_len;
	struct ps__retire_batch *rb = ps__alloc(w, sizeof *rb + m * sizeof rb->e[0]);
	if (!rb)
		return -ENOMEM;
	rb->n = 0;
	uint32_t n = 0;
	urcu_memb_read_lock();
	for (uint32_t i = 0; i < m; i++) {
		struct ps__retired ret;
		/* MOVING(us): pushes that reach this host pause until the key is at
		 * y (then REMOTE(y) redirects them there) */
		if (ps__slot_give(w, t, cand[i], PS__LOC_MAKE_MOVING(w->host), vals + (size_t)n * nf, &ret)) {
			rb->e[rb->n++] = ret;
			keys[n++] = cand[i];
		}
	}
	urcu_memb_read_unlock();
	if (rb->n)
		ps__retire(w, rb); /* the given slots, after a grace period */
	else
		ps__free(w, rb);
	int rc = 0;
	unsigned us = 20;
	uint64_t t0 = ps__now_ns();
	while (n > 0) {
		rc = call(L, t, y, PS__MV_TAKE, nf, keys, vals, n, done);
		if (rc)
			break;
		uint32_t left = 0;
		for (uint32_t i = 0; i < n; i++) {
			if (done[i]) {
				/* release: as any word's writer; the key is at y (MG3) */
				atomic_store_explicit(&t->loc[keys[i]], PS__LOC_MAKE_REMOTE(y), memory_order_release);
				continue;
			}
			keys[left] = keys[i];
			memmove(vals + (size_t)left * nf, vals + (size_t)i * nf, 4 * (size_t)nf);
			left++;
		}
		n = left;
		if (n && ps__now_ns() - t0 > PATIENCE_NS) {
			rc = -ETIMEDOUT;
			break;
		}
		if (n)
			pause_step(&us);
	}
	for (uint32_t i = 0; rc && i < n; i++)
		take_back(w, t, keys[i], vals + (size_t)i * nf);
	return rc;
}

/* Scratch of a table's hand-over: candidates, keys given, their values. */
struct scratch {
	ps_key *cand, *keys;
	uint32_t *vals, *z;
	uint8_t *done;
};

static int scratch_get(struct scratch *s, uint32_t per, uint32_t nf)
{
	s->cand = malloc(per * sizeof *s->cand);
	s->keys = malloc(per * sizeof *s->keys);
	s->vals = malloc((size_t)per * nf * sizeof *s->vals);
	s->z = malloc(per * sizeof *s->z);
	s->done = malloc(per);
	return s->cand && s->keys && s->vals && s->z && s->done ? 0 : -ENOMEM;
}

static void scratch_put(struct scratch *s)
{
	free(s->cand), free(s->keys), free(s->vals), free(s->z), free(s->done);
}

/* Step 1: every key node w->node holds in t goes to y. */
static int drain_held(struct ps__link *L, ps_table *t, int y)
{
	ps_world *w = L->w;
	const uint32_t nf = t->value_len + t->state_len, per = per_frame(nf);
	struct scratch s;
	int rc = scratch_get(&s, per, nf);
	for (uint64_t k = 0; rc == 0 && k < t->num_keys;) {
		uint32_t m = 0;
		for (; k < t->num_keys && m < per; k++) {
			/* relaxed: ps__slot_give re-reads it under the slot lock */
			uint64_t lw = atomic_load_explicit(&t->loc[k], memory_order_relaxed);
			if (is_slot(lw) && PS__LOC_OWNER(lw) == w->node)
				s.cand[m++] = k;
		}
		if (m)
			rc = hand_over(L, t, y, s.cand, m, s.keys, s.vals, s.done);
	}
	scratch_put(&s);
	return rc;
}

/* TAKEDIR of the m locked entries keys[i] -> REMOTE(z[i]) until y has them
 * all; on failure the entries not sent are unlocked again. */
static int send_dir(struct ps__link *L, ps_table *t, int y, ps_key *keys, uint32_t *z, uint32_t m, uint8_t *done)
{
	unsigned us = 20;
	uint64_t t0 = ps__now_ns();
	int rc = 0;
	while (m > 0) {
		rc = call(L, t, y, PS__MV_TAKEDIR, 1, keys, z, m, done);
		if (rc)
			break;
		uint32_t left = 0;
		for (uint32_t i = 0; i < m; i++)
			if (!done[i])
				keys[left] = keys[i], z[left] = z[i], left++;
		m = left;
		if (m && ps__now_ns() - t0 > PATIENCE_NS) {
			rc = -ETIMEDOUT;
			break;
		}
		if (m)
			pause_step(&us);
	}
	for (uint32_t i = 0; rc && i < m; i++) /* release: as any directory write */
		atomic_store_explicit(&t->loc[keys[i]], PS__LOC_MAKE_REMOTE(z[i]), memory_order_release);
	return rc;
}

/* Step 3 (node 0): x's home range of t: lock every entry, send it to y. */
static int drain_dir(struct ps__link *L, ps_table *t, int y)
{
	ps_world *w = L->w;
	const uint32_t nf = t->value_len + t->state_len, per = per_frame(nf);
	uint64_t k0, k1;
	ps__host_keys(w, t->num_keys, &k0, &k1);
	if (k1 <= k0)
		return 0;
	uint8_t *locked = calloc(k1 - k0, 1);
	struct scratch s;
	int rc = scratch_get(&s, per, nf);
	if (!locked && !rc)
		rc = -ENOMEM;
	unsigned us = 20;
	uint64_t t0 = ps__now_ns();
	for (uint64_t busy = 1; rc == 0 && busy;) {
		busy = 0;
		uint32_t nd = 0;
		for (uint64_t k = k0; rc == 0 && k < k1; k++) {
			if (locked[k - k0])
				continue;
			/* acquire: as any reader of the directory */
			uint64_t lw = atomic_load_explicit(&t->loc[k], memory_order_acquire);
			if (is_slot(lw)) { /* came back since step 1: hand it over too */
				ps_key one = k, given;
				rc = hand_over(L, t, y, &one, 1, &given, s.vals, s.done);
				busy++; /* locked in the next pass (REMOTE(y) now) */
			} else if (!PS__LOC_IS_REMOTE(lw) || PS__LOC_IS_MOVING(lw)) {
				busy++; /* a move in flight (SET/UNLOCK will come), or replicated */
			} else if (atomic_compare_exchange_strong_explicit(&t->loc[k], &lw,
									   PS__LOC_MAKE_MOVING(PS__LOC_OWNER(lw)),
									   memory_order_relaxed, memory_order_relaxed)) {
				/* relaxed CAS: the lock of the entry (MG2, DR3) */
				locked[k - k0] = 1;
				s.keys[nd] = k;
				s.z[nd++] = (uint32_t)PS__LOC_OWNER(lw);
			} else {
				busy++;
			}
			if (rc == 0 && nd == per) {
				rc = send_dir(L, t, y, s.keys, s.z, nd, s.done);
				nd = 0;
			}
		}
		if (rc == 0 && nd)
			rc = send_dir(L, t, y, s.keys, s.z, nd, s.done);
		if (rc == 0 && busy && ps__now_ns() - t0 > PATIENCE_NS)
			rc = -ETIMEDOUT;
		if (rc == 0 && busy)
			pause_step(&us);
	}
	/* a failed drain: this host stays the home, every entry it locked is
	 * unlocked again (y's copies are only hints then) */
	for (uint64_t k = k0; rc && locked && k < k1; k++) {
		/* relaxed: our own lock's word */
		uint64_t lw = atomic_load_explicit(&t->loc[k], memory_order_relaxed);
		if (locked[k - k0] && PS__LOC_IS_MOVING(lw)) /* release: as any directory write */
			atomic_store_explicit(&t->loc[k], PS__LOC_MAKE_REMOTE(PS__LOC_OWNER(lw)), memory_order_release);
	}
	free(locked);
	scratch_put(&s);
	return rc;
}

#ifdef PS_TEST_HOOKS
/*
 * Test builds only: PSMEM_DEBUG_DRAIN_STOP=HOST makes node 0 of a leaving
 * host HOST stop after step 1 (every key it held is at y, nothing of the
 * directory moved, no LEFT): it prints a line and never returns (the test
 * kills y there, then this host: test_hosts_leave's BK5 case).  With
 * HOST:FILE it waits there until FILE exists (at most 60 s), then goes on
 * (test_hosts_elastic: no other host leaves meanwhile, EL7).
 */
static void drain_stop(ps_world *w)
{
	const char *e = getenv("PSMEM_DEBUG_DRAIN_STOP");
	char *end;
	if (!e || strtol(e, &end, 10) != w->host || w->node != 0)
		return;
	const char *gate = *end == ':' ? end + 1 : NULL;
	printf("psmem: test hook: host %d %s after its drain's take step\n", w->host, gate ? "waits" : "stops");
	fflush(stdout);
	struct stat st;
	for (int i = 0; gate && i < 6000 && stat(gate, &st) != 0; i++)
		usleep(10 * 1000); /* the driver's go, not a timing */
	while (!gate)
		pause();
}
#else
#define drain_stop(w) ((void)0)
#endif

int ps__drain_host(ps_world *w)
{
	struct ps__link *L = w->link;
	if (!L)
		return 0;
	ps__thread_enter(w); /* slot gives: a reader of this node */
	int y = ps__backup_host(w, w->host);
	if (y < 0) {
		fprintf(stderr, "psmem: host %d node %d: drain: no other host present to take this host's keys\n",
			w->host, w->node);
		return PS_EHOSTDOWN;
	}
	uint64_t t0 = ps__now_ns();
	int rc = 0;
	for (int id = 0; id < PS__MAX_TABLES && rc == 0; id++) {
		ps_table *t = table_at(L, id);
		if (t && t->d->repl_max > 0) {
			fprintf(stderr, "psmem: host %d node %d: drain: table %d replicates hot keys: its keys cannot "
				"move across hosts (not drained)\n", w->host, w->node, id);
			rc = -EBUSY;
		} else if (t) {
			rc = drain_held(L, t, y);
		}
	}
	drain_stop(w);
	/* step 2: every node's keys are at y before the directory is read */
	int brc = ps__node_barrier(w, NULL);
	rc = rc ? rc : brc;
	for (int id = 0; id < PS__MAX_TABLES && rc == 0 && w->node == 0; id++) {
		ps_table *t = table_at(L, id);
		if (t)
			rc = drain_dir(L, t, y);
	}
	if (rc)
		fprintf(stderr, "psmem: host %d node %d: drain to host %d failed: %s\n", w->host, w->node, y,
			ps_strerror(rc));
	else
		fprintf(stderr, "psmem: host %d node %d: drained to host %d in %.1f ms\n", w->host, w->node, y,
			(double)(ps__now_ns() - t0) / 1e6);
	return rc;
}

void ps__drain_wait_ends(struct ps__link *L)
{
	ps_world *w = L->w;
	uint64_t t0 = ps__now_ns();
	for (;;) {
		/* acquire: the ends counted before; each connection's dead flag
		 * is re-read below */
		uint32_t seen = atomic_load_explicit(&L->ends, memory_order_acquire);
		int open = -1;
		for (int h = 0; h < w->nhosts && open < 0; h++)
			/* acquire: as in ps__lk_send */
			if (h != w->host && atomic_load_explicit(&L->data[h].has_fd, memory_order_acquire) &&
			    !atomic_load_explicit(&L->data[h].dead, memory_order_acquire))
				open = h;
		if (open < 0 || ps__link_down(w))
			return;
		if (ps__now_ns() - t0 > PATIENCE_NS) {
			fprintf(stderr, "psmem: host %d node %d: drain: host %d did not close its data connection "
				"within 30 s of the leave\n", w->host, w->node, open);
			return;
		}
		ps__futex_wait(&L->ends, seen, 100 * 1000 * 1000, false);
	}
}

bool ps__drain_conn_end(struct ps__link *L, struct ps__conn *c)
{
	/* relaxed: set by this process's finalizing thread before it sent
	 * anything of the drain; the link thread reads it here only */
	if (!atomic_load_explicit(&L->leaving, memory_order_relaxed))
		return false;
	/* (DR2) the peer half-closed: every answer to what it sent goes out
	 * before our EOF (the peer reads until it) */
	pthread_mutex_lock(&c->wlock);
	uint64_t t0 = ps__now_ns();
	while (c->out_at < c->out_len && ps__now_ns() - t0 < PATIENCE_NS) {
		/* the socket is non-blocking (LK6): wait until it takes more;
		 * the peer reads until our EOF, so this ends */
		ssize_t r = send(c->fd, c->out + c->out_at, c->out_len - c->out_at, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (r > 0) {
			c->out_at += (size_t)r;
		} else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
			struct pollfd pf = {.fd = c->fd, .events = POLLOUT};
			(void)poll(&pf, 1, 100);
		} else {
			fprintf(stderr, "psmem: host %d node %d: drain: answers to host %d not sent: %s\n", L->w->host,
				L->w->node, c->host, strerror(errno));
			break;
		}
	}
	c->out_at = c->out_len = 0;
	/* release: as in data_lost */
	atomic_store_explicit(&c->dead, true, memory_order_release);
	pthread_mutex_unlock(&c->wlock);
	shutdown(c->fd, SHUT_RDWR);
	c->closed = true;
	/* release: the dead flag above before the count the waiter reads */
	atomic_fetch_add_explicit(&L->ends, 1, memory_order_release);
	ps__futex_wake(&L->ends, 1, false);
	return true;
}

/* ------------------------------------------------------------ at y */

uint32_t ps__drain_serve(ps_world *w, ps_table *t, int from_host, const struct ps__move_req *m, uint8_t *out)
{
	uint8_t *codes = out + PS__MOVE_REPLY_HDR;
	const uint32_t nf = t->value_len + t->state_len;
	/* (DR4) only the host whose keys this host takes over: another would
	 * put its keys where routing will not look for them after it left */
	int st = from_host == w->host || from_host >= w->nhosts ? PS_EFRAME_BODY
		 : m->op == PS__MV_TAKE && m->nf != nf          ? PS_EMISMATCH
		 : ps__backup_host(w, from_host) != w->host     ? PS_EMISMATCH
								: 0;
	if (st) {
		ps__move_reply_enc_hdr(out, st, 0, 0, 0);
		return PS__MOVE_REPLY_HDR;
	}
	uint32_t *vals = malloc(4 * (size_t)nf);
	/* keys a TAKE installed, with their values, for BK5 */
	const bool bk = m->op == PS__MV_TAKE && w->link && w->link->bk;
	ps_key *inst = bk ? malloc(8 * (size_t)m->n + 1) : NULL;
	uint32_t *ival = bk ? malloc(4 * (size_t)m->n * nf + 1) : NULL; /* values and rule state */
	size_t ninst = 0;
	for (uint32_t i = 0; i < m->n; i++) {
		ps_key k = ps__get64(m->keys + 8 * (size_t)i);
		const uint8_t *v = m->vals + 4ULL * m->nf * i;
		int32_t code = PS__MV_BUSY;
		uint64_t off = 0;
		for (; k < t->num_keys;) {
			/* acquire: pairs with the release of the word's writer */
			uint64_t lw = atomic_load_explicit(&t->loc[k], memory_order_acquire);
			if (m->op == PS__MV_TAKEDIR) {
				uint32_t z = ps__get32(v);
				if (is_slot(lw)) {
					code = z == (uint32_t)w->host ? PS__MV_DONE : PS__MV_BUSY;
					break;
				}
				if (!PS__LOC_IS_REMOTE(lw) || PS__LOC_IS_MOVING(lw) || z >= (uint32_t)w->nhosts)
					break;
				/* relaxed CAS: a REMOTE word publishes nothing */
				if (atomic_compare_exchange_strong_explicit(&t->loc[k], &lw, PS__LOC_MAKE_REMOTE(z),
									    memory_order_relaxed, memory_order_relaxed)) {
					code = PS__MV_DONE;
					break;
				}
				continue;
			}
			/* TAKE: only over a REMOTE word; MOVING (a move in flight
			 * here, which x's give made fail) is BUSY: x asks again */
			if (!vals || !PS__LOC_IS_REMOTE(lw) || PS__LOC_IS_MOVING(lw))
				break;
			if (!off) {
				if (ps__slot_alloc(w, t->id, w->node, t->slot_size, &off) != 0) {
					off = 0;
					break;
				}
				for (uint32_t j = 0; j < nf; j++)
					vals[j] = ps__get32(v + 4 * (size_t)j);
				ps__slot_fill(w, t, off, k, vals);
			}
			/* release: the slot's content before the word that names
			 * it (KV1) */
			if (atomic_compare_exchange_strong_explicit(&t->loc[k], &lw, PS__LOC_MAKE(w->node, off),
								    memory_order_release, memory_order_relaxed)) {
				off = 0;
				code = PS__MV_DONE;
				if (inst && ival) {
					inst[ninst] = k;
					memcpy(ival + ninst * nf, vals, 4 * (size_t)nf);
					ninst++;
				}
				break;
			}
		}
		if (off) { /* filled, never published: freed after a grace period */
			struct ps__retire_batch *b = ps__alloc(w, sizeof *b + sizeof b->e[0]);
			if (b) {
				b->n = 1;
				b->e[0] = (struct ps__retired){.off = off, .table = t->id, .node = w->node};
				ps__retire(w, b);
			}
		}
		ps__put32(codes + 8 * (size_t)i, (uint32_t)code);
		ps__put32(codes + 8 * (size_t)i + 4, (uint32_t)w->host);
	}
	free(vals);
	/* (BK5) as a move's install (migrate.c step 3): the keys taken over
	 * go to this host's backup host now, before the DONE that lets x
	 * forget them; a loss of this host before its next round keeps them.
	 * Nothing for BK8: x leaves by agreement and its backups are never
	 * promoted (DR5).  Without memory only the next round covers them */
	if (inst && ival)
		ps__bk_moved_in(w, t, inst, ival, nf, ninst);
	free(inst);
	free(ival);
	ps__move_reply_enc_hdr(out, 0, m->n, m->nf, 0);
	return (uint32_t)ps__move_reply_size(m->n, m->nf, 0);
}

/* ------------------------------------------------------------ at every survivor */

uint64_t ps__drain_rewrite(ps_world *w, int x)
{
	int y = ps__backup_host(w, x);
	if (y < 0 || !w->link)
		return 0;
	uint64_t from = PS__LOC_MAKE_REMOTE(x), moving = PS__LOC_MAKE_MOVING(x), n = 0;
	for (int id = 0; id < PS__MAX_TABLES; id++) {
		ps_table *t = table_at(w->link, id);
		for (uint64_t k = 0; t && k < t->num_keys; k++) {
			int to = y;
			if (y == w->host) /* a stale hint here: ask the key's home */
				to = ps__home_now(w, t->num_keys, k);
			if (to == x || to == w->host)
				continue;
			uint64_t lw = from;
			/* relaxed: a REMOTE word publishes nothing */
			if (atomic_compare_exchange_strong_explicit(&t->loc[k], &lw, PS__LOC_MAKE_REMOTE(to),
								    memory_order_relaxed, memory_order_relaxed)) {
				n++;
				continue;
			}
			/* a home entry locked by a move in flight (MG2) that had
			 * x as the holder: its lock stays the move's, but the
			 * holder it names becomes y, so the move's UNLOCK (its
			 * GIVE to x fails) restores REMOTE(y), not a word
			 * naming x for ever (the join-and-leave storm found it:
			 * the joiner's share could never be moved).  Relaxed:
			 * as above; the move's own writes are stores */
			lw = moving;
			n += atomic_compare_exchange_strong_explicit(&t->loc[k], &lw, PS__LOC_MAKE_MOVING(to),
								     memory_order_relaxed, memory_order_relaxed);
		}
	}
	return n;
}

void ps__drain_left(struct ps__link *L, int x)
{
	ps_world *w = L->w;
	/* left, not lost (where no agreement said so before: a test's leave,
	 * ps__test_leave): keys homed at x move on, BK9's freeze is for lost
	 * homes only (migrate.c home_frozen) */
	ps__clock_member(w, x, PS__HOST_LEFT, 0, 0);
	ps__clock_host_lost(w, x); /* gone: clocks skip it, routing maps it to y */
	struct ps__conn *c = &L->data[x];
	if (c->fd >= 0 && !c->closed) {
		pthread_mutex_lock(&c->wlock);
		/* release: a sender that sees it fails its send (its keys are
		 * routed again, to y); one that does not registered before
		 * and is answered by x or swept at x's EOF (DR2) */
		atomic_store_explicit(&c->left, true, memory_order_release);
		c->out_at = c->out_len = 0; /* requests not sent: swept at EOF */
		shutdown(c->fd, SHUT_WR);
		pthread_mutex_unlock(&c->wlock);
	}
	int y = ps__backup_host(w, x);
	if (w->node == 0 && y >= 0) {
		uint64_t n = ps__drain_rewrite(w, x);
		fprintf(stderr, "psmem: host %d: host %d left: its keys are at host %d; %llu words naming it rewritten\n",
			w->host, x, y, (unsigned long long)n);
	}
	/* (BK2) a host that backed up to x backs up to its next host now: a
	 * full round at once, before the RELEASE that follows this ABORT
	 * lets a worker send anything there (one data connection, in order) */
	ps__bk_round_now(L);
	if (x >= 0 && x < PS__MAX_CLOCK_HOSTS)
		/* release: the rewritten words before the bit that says "done
		 * on this node" (as a promotion's, BK3: ps__host_promoted) */
		atomic_fetch_or_explicit(&w->seg.hdr->clocks.hpromo[x], 1ULL << w->node, memory_order_release);
}

#ifdef PS_TEST_HOOKS
/* Test builds only: this node's ps_finalize drains instead of waiting in
 * the final barrier (the join helper's ps_sync_hosts sets the same). */
int ps__test_leave(ps_world *w)
{
	if (!w || !w->link)
		return -EINVAL;
	ps__link_leave(w);
	return 0;
}
#endif

int ps__home_now(ps_world *w, uint64_t num_keys, ps_key k)
{
	int h = ps__home_of(w, num_keys, k);
	if (h == w->host || !ps__host_lost(w, h))
		return h;
	int b = ps__backup_host(w, h);
	return b < 0 ? h : b;
}

void ps__link_leave(ps_world *w)
{
	if (w && w->link) /* relaxed: read by this thread in ps__link_stop,
			   * and by the link thread after the LEFT it causes */
		atomic_store_explicit(&w->link->leaving, true, memory_order_relaxed);
}
