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
 *        (no dirty tracking in kv.c yet).  A key's values go with its
 *        rule state (BK11); a replicated key goes from the node holding
 *        its primary (BK12).
 *   (BK2) Store.  Node i of b keeps, per table, the last value of each key
 *        sent to it, the sending host and where the value stands among that
 *        host's rounds (ord: 2r for round r, 2r + 1 for values sent between
 *        rounds, BK5 and BK7); per sending host, the last round whose
 *        BK_END arrived (complete).  Relocated keys are covered because a
 *        round sends what the node holds now: the backup follows the holder.
 *   (BK3) Promotion.  When the bridge drops host x (ABORT PS__GONE_LOST),
 *        every node of every survivor marks x lost (hgone[x] = 2, clock.c);
 *        on the survivor b(x), node i installs every key node i of x backed
 *        up there with ord >= 2 x its last complete round (that round or
 *        later) whose word here is REMOTE (not MOVING): a fresh slot of node
 *        i, word := slot (CAS).  Then node i sets its bit in hpromo[x]: the
 *        promotion is complete on this host when every node that is still
 *        alive has (a node that exited never promotes: the keys it would
 *        have taken are lost, and requests for them must fail at once, not
 *        wait).  Before it promotes, each node unlocks the entries x had
 *        locked at this home (migrate.c MG7), so those become REMOTE and
 *        are promoted like the others.  Other hosts route a key whose
 *        word names a lost host to its backup host (link_remote.c), which
 *        serves it, or answers "pause" (REDIRECT -1) while its promotion is
 *        incomplete, or PS_EHOSTDOWN for a key it had no backup of.
 *   (BK4) What is lost: an update applied at x after the start of x's last
 *        round that reached b (at most 1/rate + one round's send time + the
 *        time to detect the loss).  A push in flight to x when it died is
 *        retried at b (link_remote.c): if x applied it and backed it up
 *        before dying it counts twice.  Both are inside the same window.
 *   (BK5) Keys moved here are backed up at once: the mover (migrate.c step
 *        3, on its own thread) sends their values to b(h) right after it
 *        installs them, tagged BK_MOVE with the number R of the last round
 *        begun, read after the install with a seq_cst fence that pairs with
 *        the one between a round's number and its reads of the words: if
 *        round R + 1 began before that read, its reads see the install.
 *        Stored as ord 2R + 1: newer than round R (promoted if R is the
 *        last complete round), older than round R + 1 (which, complete and
 *        without the key, says the key left since).  No BK_END: such a
 *        frame completes no round and makes no older round look complete.
 *   (BK6) A key of x whose word at b(x) is MOVING(x) when x is promoted
 *        (x held it, a live mover had locked it, and b(x) is its home or
 *        the mover) waits: the mover's GIVE to x fails and its unlock makes
 *        the word REMOTE(x), and the link thread, looking again at every
 *        wakeup (1 ms while any waits), promotes it then; a word that
 *        becomes anything else drops it; 30 s of MOVING is a hang and gives
 *        up.  A key whose slot cannot be had (the pool full: slots given
 *        away wait for their grace period) waits the same way (MG6's wait,
 *        without blocking the link thread).  Node i sets its bit in
 *        hpromo[x] when none of x's keys wait.
 *   (BK7) A giver backs up for the mover: the link thread that gives a
 *        key's value to mover host a (a LOCK answered GIVEN at the home, a
 *        GIVE at the holder) sends the values to b(a) as BACKUP frames
 *        tagged BK_GIVEN for a, before the MOVE_REPLY leaves (or stores them
 *        itself if it is b(a)).  b(a) stores them as a's, with ord 2N + 1
 *        (N: the newest round of a seen there), keeping an entry of a's own
 *        that is as new (its BK5 one) and not marked given away (BK8).
 *        Such an entry is marked given: until a's own frames cover the key
 *        (BK5, a round) it is promoted whatever rounds of a completed since
 *        (a round of a that began before its install lacks the key without
 *        its having left; one that completes after the give is stored
 *        made 2N + 1 too old, and the value was promoted nowhere).  So
 *        from the moment a value leaves its giver it is at b(a): a mover
 *        lost with the value in flight, or before its BK5 frame, loses
 *        nothing.  Costs one more copy of every value moved (only with
 *        backups on).
 *   (BK8) A mover that installed a key tells the giver's backup host (a
 *        BACKUP frame tagged BK_GONE for the giver, keys only): its entries
 *        of the key are marked gone, so b(g) does not promote, when g is
 *        lost, a key g gave away since its last complete round (a second
 *        copy that b(g)'s own workers would use).  Only a give that
 *        completed is marked: a giver lost with its reply in flight keeps
 *        its entry.  With several nodes per host the entries may sit at
 *        another node of b(g) and stay.
 *   (BK9) The lost host x was the home of a key range: its directory is
 *        lost with it.  Node 0 of every other survivor lists the keys of
 *        x's range it holds (HELD, migrate.c) to b(x), then HELD_END; node
 *        0 of b(x) applies each list after its own promotion of x (queued
 *        till then): its word for such a key becomes REMOTE(holder), and a
 *        slot it promoted for one is given up (the holder's is the live
 *        copy, MG1: keys homed at x cannot move after x is lost, their
 *        LOCK goes to x).  So b(x)'s words are x's directory from then on,
 *        and redirects naming a lost host name b(x) (link_serve.c,
 *        link_remote.c).  b(x)'s promotion counts as done when every
 *        survivor's list came (or after 30 s): until then requests for
 *        x's keys pause rather than fail for lack of a copy.  x's range is
 *        frozen from then on (a LOCK goes to x): a holder refuses to give
 *        such a key (its list stays right), and a mover that installs one
 *        whose home was lost during its move tells b(x) (HELD).
 *   (BK10) An entry marked given away (BK8) is still promoted where the
 *        give is known not to have completed: at b(x) when b(x) is the
 *        key's home and its directory names x (MG3: a completed move sets
 *        it to the mover; an unlock after a failed GIVE sets it back to x),
 *        and anywhere when the home, unlocking a key to lost holder x, asks
 *        b(x) to (MOVE op PROMOTE): the GIVE's reply never reached the
 *        mover, so x's backup is the value.
 *   (BK11) Rule state.  Every copy of a key here - a round's, a mover's
 *        (BK5), a giver's (BK7) - is value_len + state_len floats, values
 *        then the update rule's state, as a slot keeps them (kv.c, rules.c):
 *        a round reads them as one seqlock snapshot of the slot (a rule
 *        writes both under the slot lock), a move carries them in its
 *        MOVE_REPLY.  The frame's value_len field is that count; the
 *        receiver refuses a frame whose count or num_keys is not the
 *        table's (and the store keeps one length per table), and promotion
 *        installs the state with the values.  Before, tables with state
 *        were not backed up at all; a promotion with zeroed state would make
 *        adagrad take steps of lr and adam restart its bias correction.
 *   (BK12) Replicated tables (replica.c RP8-RP10).  Their ordinary keys are
 *        backed up as any table's.  A key replicated here whose primary
 *        node i of h holds (rprim[r] names a slot of node i) is sent by
 *        node i's round with what an RPULL answers - the primary plus every
 *        node's pending delta (sum rule) - and the primary's rule state,
 *        read under repl_lock (replica_remote.c ps__rp_backup_read).  A key
 *        replicated at b(x) with x's copy as its primary (rprim[r] =
 *        REMOTE(x)) is promoted by making x's backup the primary there: a
 *        fresh slot, MOVED-marked (RP6), rprim[r] := it, under repl_xlock
 *        and repl_lock, both only tried (a link thread never waits for
 *        repl_xlock, RP10: busy or a full pool wait as in BK6).  b(x)'s
 *        local rounds then merge its deltas into it and refresh its
 *        replicas, and other hosts' RPUSH/RPULL of keys whose primary
 *        word names lost x go to b(x) (bridge_link.c replica_start; before
 *        b(x) switched the key it refuses them and the deltas stay: a
 *        ps_sync meanwhile fails, PS_EHOSTDOWN at b(x), PS_EMISMATCH
 *        elsewhere).  Not covered: a key b(x) replicates with x's copy as
 *        primary of which it has no backup (never sent: a table younger
 *        than a round) keeps its REMOTE(x) primary - its remote rounds
 *        fail PS_EHOSTDOWN and its replicas stop being refreshed; with a
 *        rule other than sum, the deltas of x's own nodes not yet merged
 *        by its local round are in the BK4 window.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <urcu/urcu-memb.h>

#include "arena.h"
#include "grace.h"
#include "kv.h"
#include "link_in.h"
#include "replica.h"
#include "table.h"

#define BK_END (1ULL << 55)
#define BK_MOVE (1ULL << 54) /* a move's keys, sent after round (uint32_t)req began (BK5) */
/* values given to mover host (req >> 32) & BK_FOR_MASK, sent by the giver
 * for it (BK7) */
#define BK_GIVEN (1ULL << 53)
/* keys host (req >> 32) & BK_FOR_MASK gave away: its entries of them are
 * marked gone (BK8) */
#define BK_GONE (1ULL << 52)
#define BK_FOR_MASK 0x7ffu

struct bk_entry {
	ps_key k;                 /* UINT64_MAX: empty */
	int32_t src;
	/* its sender gave the key away since (BK8): promoted only where the
	 * give is known not to have completed (BK10) */
	bool gone;
	/* a giver's copy for x (BK7), not yet confirmed by x's own frames
	 * (its install's BK5 or a round): x's rounds that complete without
	 * the key do not make it too old - x had not installed it yet */
	bool given;
	/* where its value stands among its sender's rounds (BK5): 2r for
	 * round r, 2r + 1 for a move's keys sent after round r began */
	uint64_t ord;
	uint64_t at;              /* index of its values in vals (times vlen) */
};

struct bk_table {
	uint32_t vlen;
	uint64_t cap, n;          /* hash of keys, cap a power of 2 */
	struct bk_entry *e;
	float *vals;
	uint64_t vcap;            /* entries' worth of vals */
};

struct bk_defer {
	uint32_t table;
	int32_t x;
	ps_key k;
	uint64_t until;           /* ps__now_ns() bound: a hang, not a move */
};

struct bk_held {
	uint32_t table;
	int32_t x, s;
	ps_key k;
};

struct ps__backup {
	uint64_t period_ns, next_ns;
	/* the last round begun: W link thread (seq_cst RMW, then a fence
	 * before it reads the words); R the mover of ps__bk_moved_in (after
	 * its fence: BK5) */
	_Atomic uint32_t round;
	struct bk_table tab[PS__MAX_TABLES];
	uint32_t complete[PS__MAX_HOSTS]; /* last round with BK_END, per host */
	uint32_t newest[PS__MAX_HOSTS];
	uint64_t rounds_sent, keys_sent;
	uint64_t refused;         /* frames whose length is not the table's (BK11) */
	/* (BK6) keys of lost hosts waiting for their move to unlock, and the
	 * hosts whose promotion waits for them */
	struct bk_defer *df;
	size_t ndf, cdf;
	int32_t *dw;
	size_t ndw, cdw;
	uint64_t promoted_late, full_waits;
	/* (BK9) lost homes' directories, node 0 of their backup host: HELD
	 * lists queued until this node promoted their host; per lost host x,
	 * whether it did, the survivors heard from (bit s of heard[x]) and
	 * until when it waits for them (0: not waiting) */
	struct bk_held *hq;
	size_t nhq, chq;
	uint8_t *heard, *done;
	uint64_t *dir_until;
	/* scratch of a round */
	ps_key *keys;
	float *v;                 /* value_len + state_len floats per key */
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
	ps__migrate_locks_free(L);
	if (!b)
		return;
	for (int i = 0; i < PS__MAX_TABLES; i++)
		free(b->tab[i].e), free(b->tab[i].vals);
	free(b->keys);
	free(b->v);
	free(b->df);
	free(b->dw);
	free(b->hq);
	free(b->heard);
	free(b->done);
	free(b->dir_until);
	free(b);
	L->bk = NULL;
}

/* hgone[h] >= 2: lost (clock.c CLH7) */
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

/* Promotion of lost host h done on this host: every node set its bit in
 * hpromo[h], or is no longer alive (it exited, or died: it will never
 * promote, and the keys it would have promoted are lost with it) */
bool ps__host_promoted(ps_world *w, int h)
{
	if (lost_state(w, h) < 2)
		return false;
	/* acquire: pairs with the fetch_or release after each node's
	 * promotion: its words are visible */
	uint64_t done = atomic_load_explicit(&w->seg.hdr->clocks.hpromo[h], memory_order_acquire);
	for (int n = 0; n < w->nnodes; n++)
		if (!(done >> n & 1) && ps__node_alive(&w->seg, n))
			return false;
	return true;
}

int ps__backup_host(ps_world *w, int h)
{
	/* the ring of the initial hosts: a joiner is never a backup host
	 * (elastic jobs, EL2: it homes no key and may come after a loss).
	 * persist/ckpt_hosts.c view_backup repeats this rule on a
	 * checkpoint's agreed view (persist may not call net): change both */
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
	if (b->ndw)
		return 1; /* keys wait for their move (BK6) */
	uint64_t now = ps__now_ns();
	return now >= b->next_ns ? 0 : (int)((b->next_ns - now) / 1000000) + 1;
}


/* Keys scanned per step of a round: bounds the scratch (this many keys and
 * their values) whatever the table's size. */
#define BK_CHUNK 65536u

static int scratch(struct ps__backup *b, uint32_t nf)
{
	uint64_t c = (uint64_t)BK_CHUNK * nf;
	if (c <= b->scap)
		return 0;
	free(b->keys), free(b->v);
	b->keys = malloc(BK_CHUNK * sizeof *b->keys);
	b->v = malloc(c * sizeof *b->v);
	b->scap = b->keys && b->v ? c : 0;
	return b->scap ? 0 : -ENOMEM;
}

/* Sends the previous frame of the round (*last), keeping f as the new
 * last: the round's last frame goes with BK_END (ps__bk_tick). */
static void send_prev(struct ps__link *L, int to, uint8_t **last, uint32_t *last_len, uint8_t *f, uint32_t len,
		      bool end)
{
	struct ps__backup *b = L->bk;
	if (*last) {
		/* relaxed: only this thread writes it */
		uint64_t req = ((uint64_t)L->w->node << 56) | (end ? BK_END : 0) |
			       atomic_load_explicit(&b->round, memory_order_relaxed);
		ps__lk_send(L, to, *last, PS__F_BACKUP, req, *last_len);
		free(*last);
	}
	*last = f;
	*last_len = len;
}

/* Key k's values and rule state (nf = value_len + state_len floats, the
 * layout of a slot) from the slot node w->node holds it in, read as a
 * seqlock reader (kv.c pull_one): a rule writes values and state under the
 * slot lock, so the copy is one state of the key.  1, or 0 when node
 * w->node holds k no more (moved meanwhile: the next round follows it).  In
 * a read-side section. */
static int read_held(ps_world *w, ps_table *t, ps_key k, uint32_t nf, uint32_t *out)
{
	for (;;) {
		/* acquire: the slot's content published with the word (KV1) */
		uint64_t lw = atomic_load_explicit(&t->loc[k], memory_order_acquire);
		if ((lw & 0xff) != PS__LOC_LOCAL || PS__LOC_OWNER(lw) != w->node)
			return 0;
		struct ps__slot *sl = (struct ps__slot *)(w->seg.base + PS__LOC_OFF(lw));
		/* acquire: the data loads below stay after it */
		uint64_t s1 = atomic_load_explicit(&sl->seq, memory_order_acquire);
		if (s1 & PS__SEQ_LOCKED)
			s1 = ps__wait_unlocked(w, t, sl, s1);
		if (s1 & (PS__SEQ_MOVED | PS__SEQ_FREED))
			continue; /* relocated: re-read the word */
		ps__copy_out(out, sl, nf);
		/* relaxed: checked with the seq below */
		uint64_t key = atomic_load_explicit(&sl->key, memory_order_relaxed);
		/* acquire fence: the data loads above complete before the re-check */
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&sl->seq, memory_order_relaxed) != s1 || key != k)
			continue;
		return 1;
	}
}

/* Reads the keys of t in [k0, k1) that node w->node holds (BK1) or whose
 * primary it holds (BK12) and queues them as frames (0 or -ENOMEM). */
static int round_chunk(struct ps__link *L, ps_table *t, int to, uint64_t k0, uint64_t k1, uint8_t **last,
		       uint32_t *last_len)
{
	struct ps__backup *b = L->bk;
	ps_world *w = L->w;
	const uint32_t nf = t->value_len + t->state_len;
	uint64_t m = 0;
	urcu_memb_read_lock();
	for (uint64_t k = k0; k < k1; k++) {
		/* relaxed: read_held re-reads it (acquire) and skips a key
		 * that moved meanwhile */
		uint64_t lw = atomic_load_explicit(&t->loc[k], memory_order_relaxed);
		uint32_t *out = (uint32_t *)(void *)(b->v + m * nf);
		if ((lw & 0xff) == PS__LOC_LOCAL && PS__LOC_OWNER(lw) == w->node) {
			if (read_held(w, t, k, nf, out))
				b->keys[m++] = k;
		} else if ((lw & PS__LOC_REPL) && t->rprim) {
			/* (BK12) replicated here: its primary's value, state and
			 * every node's pending delta, if node w->node holds the
			 * primary; outside the read-side section (it takes
			 * repl_lock, and sections never wait for a lock) */
			urcu_memb_read_unlock();
			if (ps__rp_backup_read(t, k, w->node, out))
				b->keys[m++] = k;
			urcu_memb_read_lock();
		}
	}
	urcu_memb_read_unlock();
	uint64_t per = (PS__FRAME_MAX - PS__KV_HDR) / (8ULL + 4ULL * nf);
	for (uint64_t at = 0; at < m; at += per) {
		uint32_t c = (uint32_t)(m - at < per ? m - at : per);
		uint32_t len = (uint32_t)ps__kv_size(true, c, nf);
		uint8_t *f = malloc(PS__FRAME_HDR + len);
		if (!f)
			return -ENOMEM;
		/* value_len on the wire: floats per key, values then rule
		 * state (BK11); the receiver checks it against the table */
		struct ps__kv_req r = {.table = (uint32_t)t->id, .value_len = nf, .num_keys = t->num_keys, .n = c};
		uint8_t *body = f + PS__FRAME_HDR;
		ps__kv_enc_hdr(body, &r);
		memcpy(body + PS__KV_HDR, b->keys + at, 8 * (size_t)c);
		memcpy(body + PS__KV_HDR + 8 * (size_t)c, b->v + at * nf, 4 * (size_t)c * nf);
		send_prev(L, to, last, last_len, f, len, false);
		b->keys_sent += c;
	}
	return 0;
}

static void deferred(struct ps__link *L);

#ifdef PS_TEST_HOOKS
_Atomic int ps__bk_test_promotions;
#endif

/* (BK1) one round, if it is due */
void ps__bk_tick(struct ps__link *L)
{
	struct ps__backup *b = L->bk;
	ps_world *w = L->w;
	deferred(L);
	if (!b || ps__now_ns() < b->next_ns)
		return;
	b->next_ns = ps__now_ns() + b->period_ns;
	int to = ps__backup_host(w, w->host);
	/* relaxed: set by this node before its final barrier; a round then
	 * would only race the end of the job */
	if (to < 0 || atomic_load_explicit(&L->final, memory_order_relaxed))
		return;
	/* seq_cst, and the fence: the round's number before its reads of the
	 * words, against a mover's install before its read of the number
	 * (BK5: one of the two sees the other) */
	atomic_fetch_add_explicit(&b->round, 1, memory_order_seq_cst);
	atomic_thread_fence(memory_order_seq_cst);
	uint8_t *last = NULL;
	uint32_t last_len = 0;
	int rc = 0;
	for (int id = 0; id < PS__MAX_TABLES && rc == 0; id++) {
		/* acquire: pairs with the release in ps__link_table_created */
		ps_table *t = atomic_load_explicit(&L->tables[id], memory_order_acquire);
		if (!t)
			continue;
		rc = scratch(b, t->value_len + t->state_len);
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

/* A host left (drain.c; link thread): a round now, to this node's backup
 * host as it is now (the one after the host that left, if that was ours),
 * ahead of anything this node sends there later on the same connection. */
void ps__bk_round_now(struct ps__link *L)
{
	if (!L->bk)
		return;
	L->bk->next_ns = 0;
	ps__bk_tick(L);
}

/*
 * (BK5) Keys just installed here by a move (migrate.c step 3, on the
 * mover's thread): their values go to the backup host at once, so a host
 * lost before its next round does not lose what moved to it.  keys[i]'s
 * values and rule state are the first value_len + state_len words at
 * vals + i * stride (BK11).  They travel
 * as a BACKUP frame tagged BK_MOVE with the number R of the last round
 * begun, read after the install (the fence pairs with ps__bk_tick's): if
 * round R + 1 began before that read, its reads of the words see the
 * install; so a key that round R + 1 did not send had moved away, and its
 * entry (order 2R + 1) is older than that round (2R + 2) and not
 * promoted, while after round R it is newer than R's (2R) and is.  No
 * BK_END: the frame completes no round.  Fire and forget, as a round.
 */
void ps__bk_moved_in(ps_world *w, ps_table *t, const ps_key *keys, const uint32_t *vals, uint32_t stride,
		     size_t n)
{
	struct ps__link *L = w->link;
	struct ps__backup *b = L ? L->bk : NULL;
	const uint32_t nf = t->value_len + t->state_len;
	if (!b || n == 0 || stride < nf)
		return; /* no backups, or not values and state (BK11) */
	int to = ps__backup_host(w, w->host);
	if (to < 0)
		return;
	/* seq_cst fence: the words stored by the install before the read
	 * of the round's number (pairs with ps__bk_tick's fence) */
	atomic_thread_fence(memory_order_seq_cst);
	uint32_t r = atomic_load_explicit(&b->round, memory_order_relaxed);
	uint64_t per = (PS__FRAME_MAX - PS__KV_HDR) / (8ULL + 4ULL * nf);
	uint64_t req = ((uint64_t)w->node << 56) | BK_MOVE | r;
	for (size_t at = 0; at < n; at += per) {
		uint32_t c = (uint32_t)(n - at < per ? n - at : per);
		uint32_t len = (uint32_t)ps__kv_size(true, c, nf);
		uint8_t *f = malloc(PS__FRAME_HDR + len);
		if (!f)
			return; /* only lag: the next round sends them */
		struct ps__kv_req q = {.table = (uint32_t)t->id, .value_len = nf, .num_keys = t->num_keys, .n = c};
		uint8_t *body = f + PS__FRAME_HDR;
		ps__kv_enc_hdr(body, &q);
		memcpy(body + PS__KV_HDR, keys + at, 8 * (size_t)c);
		for (uint32_t i = 0; i < c; i++)
			memcpy(body + PS__KV_HDR + 8 * (size_t)c + 4 * (size_t)i * nf, vals + (at + i) * stride,
			       4 * (size_t)nf);
		ps__lk_send(L, to, f, PS__F_BACKUP, req, len);
		free(f);
	}
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

/* (BK7) values given to mover x (stride: floats per key in vals) as if x
 * had sent them after the last round of x seen here began: newer than
 * that round, older than x's next complete one (which, if it lacks the
 * key, says x gave it away again) and than an entry x sent itself after
 * that round began (its install's, BK5: kept) - unless that entry is
 * marked given away (BK8): x gave the key away since and is taking it
 * back now, so this give's value is the newest, and x's again.  (Before,
 * the marked entry was kept, no older by ord: a key that went x -> y ->
 * x within one round was promoted nowhere when x died before its
 * install's BK5 frame; mf --policy localize lost DSGD blocks so.) */
static void store_given(struct ps__backup *b, struct bk_table *bt, int x, const uint8_t *keys, const uint8_t *vals,
			uint32_t stride, uint32_t n)
{
	uint64_t ord = 2 * (uint64_t)b->newest[x] + 1;
	for (uint32_t i = 0; i < n; i++) {
		ps_key k = ps__get64(keys + 8 * (size_t)i);
		struct bk_entry *e = slot_of(bt, k, true);
		if (!e)
			return;
		if (e->src == x && !e->gone && e->ord >= ord && e->at < bt->n && e->ord != 0)
			continue; /* x's own, as new or newer, and x still has it */
		e->src = x;
		e->ord = ord;
		e->gone = false;
		e->given = true;
		memcpy(bt->vals + e->at * bt->vlen, vals + 4 * (size_t)i * stride, 4 * (size_t)bt->vlen);
	}
}

/*
 * (BK7) Link thread of a giver (migrate.c: a LOCK answered GIVEN at the
 * home, or a GIVE at the holder): the values of keys[0..n) given to mover
 * host `mover` (nf floats per key at vals, the MOVE_REPLY's) go to the
 * mover's backup host before the reply leaves, so a mover lost before it
 * installed them, or before its own backup of them (BK5) arrived, loses
 * nothing: they are promoted there as its keys.  The giver's own backup
 * host is x's: stored here directly.
 */
void ps__bk_given(struct ps__link *L, ps_table *t, int mover, const ps_key *keys, const uint8_t *vals, uint32_t nf,
		  uint32_t n)
{
	struct ps__backup *b = L->bk;
	ps_world *w = L->w;
	/* nf: values then rule state, as the MOVE_REPLY carries them (BK11) */
	const uint32_t vlen = t->value_len + t->state_len;
	if (!b || n == 0 || nf != vlen || mover < 0 || mover >= w->nhosts || (uint32_t)mover > BK_FOR_MASK)
		return;
	int to = ps__backup_host(w, mover);
	if (to < 0)
		return;
	if (to == w->host) {
		struct bk_table *bt = &b->tab[t->id];
		if (bt->vlen && bt->vlen != vlen)
			return;
		bt->vlen = vlen;
		uint8_t *kb = malloc(8 * (size_t)n);
		for (uint32_t i = 0; kb && i < n; i++)
			ps__put64(kb + 8 * (size_t)i, keys[i]);
		if (kb)
			store_given(b, bt, mover, kb, vals, nf, n);
		free(kb);
		return;
	}
	uint64_t per = (PS__FRAME_MAX - PS__KV_HDR) / (8ULL + 4ULL * vlen);
	uint64_t req = ((uint64_t)w->node << 56) | BK_GIVEN | ((uint64_t)mover << 32);
	for (uint32_t at = 0; at < n; at += (uint32_t)per) {
		uint32_t c = (uint32_t)(n - at < per ? n - at : per);
		uint32_t len = (uint32_t)ps__kv_size(true, c, vlen);
		uint8_t *f = malloc(PS__FRAME_HDR + len);
		if (!f)
			return;
		struct ps__kv_req q = {.table = (uint32_t)t->id, .value_len = vlen, .num_keys = t->num_keys, .n = c};
		uint8_t *body = f + PS__FRAME_HDR;
		ps__kv_enc_hdr(body, &q);
		memcpy(body + PS__KV_HDR, keys + at, 8 * (size_t)c);
		for (uint32_t i = 0; i < c; i++)
			memcpy(body + PS__KV_HDR + 8 * (size_t)c + 4 * (size_t)i * vlen,
			       vals + 4 * (size_t)(at + i) * nf, 4 * (size_t)vlen);
		ps__lk_send(L, to, f, PS__F_BACKUP, req, len);
		free(f);
	}
}

/*
 * (BK8) The mover, after it installed keys[0..n) (migrate.c step 3): for
 * each, the host that gave it (givers[i]) has it no more, so that host's
 * backup host drops its entries of it (a BACKUP frame tagged BK_GONE for
 * the giver, keys only).  Else b(g) would promote, when g is lost, a key g
 * gave away since its last complete round (the round, or a move's BK5
 * frame, listed it): a second copy that b(g)'s own workers would use.
 * Sent by the mover, not the giver: only a give that completed (the value
 * arrived) is forgotten, so a giver lost with its reply in flight keeps
 * its entry and b(g) promotes it.  The entries sit at the node of b(g)
 * with the mover's node number when g got the key by a move (BK5, BK7),
 * else at the node that held its slot: with several nodes per host they
 * may stay (DESIGN "Losing a host", Not done).
 */
void ps__bk_got(ps_world *w, ps_table *t, const ps_key *keys, const int32_t *givers, size_t n)
{
	struct ps__link *L = w->link;
	if (!L || !L->bk || n == 0)
		return;
	ps_key *k = malloc(n * sizeof *k);
	bool *done = calloc(n, sizeof *done);
	for (size_t i = 0; k && done && i < n; i++) {
		int g = givers[i];
		if (done[i] || g < 0 || g >= w->nhosts || (uint32_t)g > BK_FOR_MASK)
			continue;
		size_t c = 0; /* this giver's keys, in one frame per frame's worth */
		for (size_t j = i; j < n; j++)
			if (!done[j] && givers[j] == g)
				k[c++] = keys[j], done[j] = true;
		int to = ps__backup_host(w, g);
		if (to < 0 || to == w->host)
			continue; /* our own word is the slot: never promoted over */
		uint64_t per = (PS__FRAME_MAX - PS__KV_HDR) / 8ULL;
		uint64_t req = ((uint64_t)w->node << 56) | BK_GONE | ((uint64_t)g << 32);
		for (size_t at = 0; at < c; at += per) {
			uint32_t m = (uint32_t)(c - at < per ? c - at : per);
			uint32_t len = (uint32_t)ps__kv_size(false, m, t->value_len);
			uint8_t *f = malloc(PS__FRAME_HDR + len);
			if (!f)
				break;
			struct ps__kv_req q = {.table = (uint32_t)t->id, .value_len = t->value_len,
					       .num_keys = t->num_keys, .n = m};
			ps__kv_enc_hdr(f + PS__FRAME_HDR, &q);
			memcpy(f + PS__FRAME_HDR + PS__KV_HDR, k + at, 8 * (size_t)m);
			ps__lk_send(L, to, f, PS__F_BACKUP, req, len);
			free(f);
		}
	}
	free(k);
	free(done);
}

/* (BK2) a BACKUP frame of host f->host */
void ps__bk_on_frame(struct ps__link *L, const struct ps__frame *f)
{
	struct ps__backup *b = L->bk;
	struct ps__kv_req m;
	const bool gone = f->req & BK_GONE;
	if (!b || f->host >= PS__MAX_HOSTS || ps__kv_dec(f->body, f->len, !gone, &m) != 0 ||
	    m.table >= PS__MAX_TABLES || (m.flags & PS__KV_WIRE))
		return;
	if (gone) { /* BK8: for the giver named in the request id */
		struct bk_table *bt = &b->tab[m.table];
		int32_t g = (int32_t)((f->req >> 32) & BK_FOR_MASK);
		for (uint32_t i = 0; i < m.n; i++) {
			struct bk_entry *e = slot_of(bt, ps__get64(m.keys + 8 * (size_t)i), false);
			if (e && e->src == g)
				e->gone = true;
		}
		return;
	}
	struct bk_table *bt = &b->tab[m.table];
	/* (BK11) floats per key: the table's values then its rule state;
	 * anything else is refused, as a store of another length is.
	 * acquire: as in ps__bk_tick (a table not created here yet: its
	 * store's first frame sets the length, checked at promotion) */
	ps_table *t = atomic_load_explicit(&L->tables[m.table], memory_order_acquire);
	if ((t && (m.value_len != t->value_len + t->state_len || m.num_keys != t->num_keys)) ||
	    (bt->vlen && bt->vlen != m.value_len)) {
		if (b->refused++ == 0)
			fprintf(stderr,
				"psmem: host %d node %d: backup frame of host %d for table %u refused: %u floats per "
				"key, %llu keys (the table has %u, %llu)\n",
				L->w->host, L->w->node, f->host, m.table, m.value_len, (unsigned long long)m.num_keys,
				t ? t->value_len + t->state_len : bt->vlen, t ? (unsigned long long)t->num_keys : 0ULL);
		return;
	}
	bt->vlen = m.value_len;
	if (f->req & BK_GIVEN) {
		uint32_t x = (uint32_t)(f->req >> 32) & BK_FOR_MASK;
		if (x < (uint32_t)L->w->nhosts && x != (uint32_t)L->w->host)
			store_given(b, bt, (int)x, m.keys, m.values, m.value_len, m.n);
		return;
	}
	uint32_t round = (uint32_t)f->req;
	uint64_t ord = 2 * (uint64_t)round + ((f->req & BK_MOVE) ? 1 : 0);
	for (uint32_t i = 0; i < m.n; i++) {
		ps_key k = ps__get64(m.keys + 8 * (size_t)i);
		struct bk_entry *e = slot_of(bt, k, true);
		if (!e)
			return;
		e->src = f->host;
		e->ord = ord;
		e->gone = false;
		e->given = false;
		memcpy(bt->vals + e->at * bt->vlen, m.values + 4 * (size_t)i * m.value_len, 4 * (size_t)m.value_len);
	}
	if (round > b->newest[f->host])
		b->newest[f->host] = round;
	if ((f->req & BK_END) && !(f->req & BK_MOVE) && round > b->complete[f->host])
		b->complete[f->host] = round;
}

static int defer_key(struct ps__backup *b, uint32_t table, ps_key k, int x)
{
	if (b->ndf == b->cdf) {
		size_t c = b->cdf ? 2 * b->cdf : 64;
		struct bk_defer *d = realloc(b->df, c * sizeof *d);
		if (!d)
			return -ENOMEM;
		b->df = d;
		b->cdf = c;
	}
	b->df[b->ndf++] = (struct bk_defer){.table = table, .x = x, .k = k, .until = ps__now_ns() + 30000000000ULL};
	return 0;
}

static int wait_host(struct ps__backup *b, int x)
{
	if (b->ndw == b->cdw) {
		size_t c = b->cdw ? 2 * b->cdw : 8;
		int32_t *d = realloc(b->dw, c * sizeof *d);
		if (!d)
			return -ENOMEM;
		b->dw = d;
		b->cdw = c;
	}
	b->dw[b->ndw++] = x;
	return 0;
}

/* e's value into a fresh slot of this node if t's word for it is REMOTE
 * (CAS word := slot): 1; 0 if not (a word that changed meanwhile keeps
 * its new meaning; the slot is leaked: rare, a loss-time race); 2 if the
 * word is MOVING(x) (its mover, alive, will unlock it to REMOTE(x) or set
 * it elsewhere) or this node's pool is full (slots wait for their grace
 * period): BK6's deferral looks again. */
static int promote_one(struct ps__link *L, ps_table *t, const struct bk_table *bt, const struct bk_entry *e, int x,
		       bool force)
{
	ps_world *w = L->w;
	/* acquire: as any reader of a word */
	uint64_t lw = atomic_load_explicit(&t->loc[e->k], memory_order_acquire);
	if (PS__LOC_IS_MOVING(lw))
		return PS__LOC_OWNER(lw) == x ? 2 : 0;
	/* (BK10) a key x gave away: only if the give did not complete - the
	 * home's directory still names x (MG3: a move that completed set it
	 * to the mover), or the home asked (force) */
	if (e->gone && !force && !(lw == PS__LOC_MAKE_REMOTE(x) && ps__home_of(w, t->num_keys, e->k) == w->host))
		return 0;
	/* values then rule state, as the slot keeps them (BK11; the caller
	 * checked the store's length against the table) */
	const uint32_t *vals = (const uint32_t *)(const void *)(bt->vals + e->at * bt->vlen);
	if ((lw & PS__LOC_REPL) && t->rprim) {
		/* (BK12) replicated here with x's copy as its primary: ours
		 * becomes the primary (2: repl_xlock busy or the pool full) */
		int r = ps__rp_backup_promote(t, e->k, x, vals);
		if (r == PS_EFULL)
			L->bk->full_waits++;
		return r == PS_EFULL ? 2 : r;
	}
	uint64_t off;
	int full = 0;
	if (!PS__LOC_IS_REMOTE(lw) || (full = ps__slot_alloc(w, t->id, w->node, t->slot_size, &off)) != 0) {
		/* a full pool: slots retired by gives come back after a grace
		 * period; wait for them like a move does (MG6), on the link
		 * thread without blocking: BK6's deferral retries it */
		if (full == PS_EFULL)
			L->bk->full_waits++;
		return full == PS_EFULL ? 2 : 0;
	}
	ps__slot_fill(w, t, off, e->k, vals);
	/* release: the slot's content is visible to whoever acquires the
	 * word (KV1) */
	return atomic_compare_exchange_strong_explicit(&t->loc[e->k], &lw, PS__LOC_MAKE(w->node, off),
						       memory_order_release, memory_order_relaxed);
}

/* the backup entry of k sent by x that promotion takes, or NULL (BK3) */
static const struct bk_entry *usable(struct ps__backup *b, const ps_table *t, ps_key k, int x)
{
	struct bk_table *bt = &b->tab[t->id];
	if (!bt->n || bt->vlen != t->value_len + t->state_len || x < 0 || x >= PS__MAX_HOSTS)
		return NULL;
	const struct bk_entry *e = slot_of(bt, k, false);
	return e && e->src == x && (e->given || e->ord >= 2 * (uint64_t)b->complete[x]) ? e : NULL;
}

bool ps__bk_promote_key(struct ps__link *L, ps_table *t, ps_key k, int x, bool force)
{
	struct ps__backup *b = L->bk;
	const struct bk_entry *e = b ? usable(b, t, k, x) : NULL;
	return e && promote_one(L, t, &b->tab[t->id], e, x, force) == 1;
}

/* this node's promotion of x is done (BK3) */
static void promoted_here(ps_world *w, int x)
{
	if (x >= 0 && x < PS__MAX_CLOCK_HOSTS)
		/* release: the promoted words before the bit that says "this
		 * node's promotion is done" (BK3) */
		atomic_fetch_or_explicit(&w->seg.hdr->clocks.hpromo[x], 1ULL << w->node, memory_order_release);
}

/* (BK9) per-host state of lost homes' directories, on first use */
static int dir_state(struct ps__link *L)
{
	struct ps__backup *b = L->bk;
	size_t H = (size_t)L->w->nhosts;
	if (b->heard)
		return 0;
	b->heard = calloc(H * ((H + 7) / 8), 1);
	b->done = calloc(H, 1);
	b->dir_until = calloc(H, sizeof *b->dir_until);
	if (b->heard && b->done && b->dir_until)
		return 0;
	free(b->heard), free(b->done), free(b->dir_until);
	b->heard = b->done = NULL;
	b->dir_until = NULL;
	return -ENOMEM;
}

static bool heard_all(struct ps__link *L, int x)
{
	struct ps__backup *b = L->bk;
	ps_world *w = L->w;
	size_t row = ((size_t)w->nhosts + 7) / 8;
	for (int s = 0; s < w->nhosts; s++)
		/* relaxed: hmember of a rank only grows to MEMBER at a SYNC
		 * result this thread applied, and a rank never used never
		 * answers (EL4) */
		if (s != x && s != w->host && !ps__host_lost(w, s) &&
		    (s >= PS__MAX_CLOCK_HOSTS ||
		     atomic_load_explicit(&w->seg.hdr->clocks.hmember[s], memory_order_relaxed) == PS__HOST_MEMBER) &&
		    !(b->heard[(size_t)x * row + (size_t)s / 8] >> (s % 8) & 1))
			return false;
	return true;
}

/* (BK9) survivor s holds keys[0..n) of t, homed at lost host x: this
 * host's words for them become REMOTE(s) - the directory of x's keys now -
 * and a slot of ours for one of them (a backup promoted here, older than
 * s's live copy: MG1 says only one slot lives) is given up. */
static void held_apply(struct ps__link *L, ps_table *t, int x, int s, const ps_key *keys, size_t n)
{
	ps_world *w = L->w;
	struct ps__retire_batch *rb = ps__alloc(w, sizeof *rb + n * sizeof rb->e[0]);
	uint32_t small[64], *vals = t->value_len + t->state_len <= 64 ? small
		: malloc(4 * (size_t)(t->value_len + t->state_len));
	if (!rb || !vals) {
		ps__free(w, rb);
		if (vals != small)
			free(vals);
		return;
	}
	rb->n = 0;
	urcu_memb_read_lock();
	for (size_t i = 0; i < n; i++) {
		ps_key k = keys[i];
		if (k >= t->num_keys || ps__home_of(w, t->num_keys, k) != x)
			continue;
		/* acquire: as any reader of a word */
		uint64_t lw = atomic_load_explicit(&t->loc[k], memory_order_acquire);
		if (PS__LOC_IS_MOVING(lw) || (lw & PS__LOC_REPL))
			continue;
		if (PS__LOC_IS_REMOTE(lw))
			/* release: as any directory write */
			atomic_store_explicit(&t->loc[k], PS__LOC_MAKE_REMOTE(s), memory_order_release);
		else if (ps__slot_give(w, t, k, PS__LOC_MAKE_REMOTE(s), vals, &rb->e[rb->n]))
			rb->n++;
	}
	urcu_memb_read_unlock();
	if (rb->n)
		fprintf(stderr, "psmem: host %d node %d: %zu promoted keys of lost host %d are held by host %d: given up\n",
			w->host, w->node, rb->n, x, s);
	if (rb->n)
		ps__retire(w, rb);
	else
		ps__free(w, rb);
	if (vals != small)
		free(vals);
}

void ps__bk_held(struct ps__link *L, ps_table *t, int x, int s, const ps_key *keys, uint32_t n)
{
	struct ps__backup *b = L->bk;
	ps_world *w = L->w;
	if (!b || x < 0 || x >= w->nhosts || s < 0 || s >= w->nhosts || dir_state(L) != 0)
		return;
	if (n == 0) {
		size_t row = ((size_t)w->nhosts + 7) / 8;
		b->heard[(size_t)x * row + (size_t)s / 8] |= (uint8_t)(1u << (s % 8));
		return;
	}
	if (b->done[x]) {
		held_apply(L, t, x, s, keys, n);
		return;
	}
	for (uint32_t i = 0; i < n; i++) { /* until this node promoted x */
		if (b->nhq == b->chq) {
			size_t c = b->chq ? 2 * b->chq : 256;
			struct bk_held *q = realloc(b->hq, c * sizeof *q);
			if (!q)
				return;
			b->hq = q;
			b->chq = c;
		}
		b->hq[b->nhq++] = (struct bk_held){.table = (uint32_t)t->id, .x = x, .s = s, .k = keys[i]};
	}
}

/* (BK9) after this node promoted x: the HELD lists that came first */
static void held_queued(struct ps__link *L, int x)
{
	struct ps__backup *b = L->bk;
	size_t m = 0;
	for (size_t i = 0; i < b->nhq; i++) {
		struct bk_held q = b->hq[i];
		if (q.x != x) {
			b->hq[m++] = q;
			continue;
		}
		/* acquire: as in ps__bk_tick */
		ps_table *t = atomic_load_explicit(&L->tables[q.table], memory_order_acquire);
		if (t)
			held_apply(L, t, x, q.s, &q.k, 1);
	}
	b->nhq = m;
}

/* (BK6) keys of a lost host that were MOVING(x) when it was promoted: each
 * link wakeup looks again; REMOTE(x) now (the mover unlocked it): promote;
 * anything else but MOVING(x): dropped; still MOVING(x) after 30 s: given
 * up.  A host's promotion counts as done here when none of its keys wait. */
static void deferred(struct ps__link *L)
{
	struct ps__backup *b = L->bk;
	if (!b || !b->ndw)
		return;
	uint64_t now = ps__now_ns();
	size_t m = 0;
	for (size_t i = 0; i < b->ndf; i++) {
		struct bk_defer d = b->df[i];
		/* acquire: as in ps__bk_tick */
		ps_table *t = atomic_load_explicit(&L->tables[d.table], memory_order_acquire);
		const struct bk_entry *e = t ? usable(b, t, d.k, d.x) : NULL;
		int r = e ? promote_one(L, t, &b->tab[d.table], e, d.x, false) : 0;
		if (r == 2 && now < d.until)
			b->df[m++] = d;
		else if (r == 1)
			b->promoted_late++;
	}
	b->ndf = m;
	size_t k = 0;
	for (size_t i = 0; i < b->ndw; i++) {
		int x = b->dw[i];
		bool left = b->dir_until && b->dir_until[x] && now < b->dir_until[x] && !heard_all(L, x);
		for (size_t j = 0; j < b->ndf && !left; j++)
			left = b->df[j].x == x;
		if (left) {
			b->dw[k++] = b->dw[i];
			continue;
		}
		fprintf(stderr, "psmem: host %d node %d: promotion of lost host %d done (%llu keys after their move was unlocked)\n",
			L->w->host, L->w->node, b->dw[i], (unsigned long long)b->promoted_late);
		promoted_here(L->w, b->dw[i]);
	}
	b->ndw = k;
}

/* (BK3) host x was dropped; hgone[x] is 2 already */
void ps__bk_promote(struct ps__link *L, int x)
{
	ps_world *w = L->w;
	struct ps__backup *b = L->bk;
	uint64_t promoted = 0, skipped = 0, waiting = 0;
	/* entries x had locked at this home: unlocked first (MG7) */
	ps__migrate_lost(L, x);
#ifdef PS_TEST_HOOKS
	/* relaxed: a test hook's count (migrate.c move_stop polls it) */
	atomic_fetch_add_explicit(&ps__bk_test_promotions, 1, memory_order_relaxed);
#endif
	if (b && x >= 0 && x < PS__MAX_HOSTS && ps__backup_host(w, x) == w->host) {
		uint32_t from = b->complete[x];
		for (int id = 0; id < PS__MAX_TABLES; id++) {
			struct bk_table *bt = &b->tab[id];
			/* acquire: as in ps__bk_tick */
			ps_table *t = atomic_load_explicit(&L->tables[id], memory_order_acquire);
			if (!t || !bt->n || bt->vlen != t->value_len + t->state_len)
				continue;
			for (uint64_t i = 0; i < bt->cap; i++) {
				struct bk_entry *e = &bt->e[i];
				if (e->k == UINT64_MAX || e->src != x || (e->ord < 2 * (uint64_t)from && !e->given) ||
				    e->k >= t->num_keys)
					continue;
				int r = promote_one(L, t, bt, e, x, false);
				promoted += r == 1;
				skipped += r == 0;
				if (r == 2 && defer_key(b, (uint32_t)id, e->k, x) == 0)
					waiting++;
			}
		}
		fprintf(stderr,
			"psmem: host %d node %d: promoted %llu keys of lost host %d (its backup round %u, "
			"newest seen %u); %llu not promoted, %llu wait for their move or a free slot (%llu)\n",
			w->host, w->node, (unsigned long long)promoted, x, from, b->newest[x],
			(unsigned long long)skipped, (unsigned long long)waiting, (unsigned long long)b->full_waits);
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
	/* (BK9) x was the home of its keys: node 0 of its backup host keeps
	 * their directory now, from the lists of what each survivor holds
	 * (applied after this promotion; done when all came, or 30 s) */
	bool dir = false;
	if (b && w->node == 0 && x >= 0 && x < w->nhosts && ps__backup_host(w, x) == w->host && dir_state(L) == 0) {
		b->done[x] = 1;
		held_queued(L, x);
		for (int id = 0; id < PS__MAX_TABLES && !dir; id++) /* acquire: as in ps__bk_tick */
			dir = atomic_load_explicit(&L->tables[id], memory_order_acquire) != NULL;
		if (dir && !heard_all(L, x))
			b->dir_until[x] = ps__now_ns() + 30000000000ULL;
		else
			dir = false;
	}
	ps__migrate_held(L, x); /* elsewhere: tell b(x) what we hold of its range */
	if ((waiting || dir) && wait_host(b, x) == 0)
		return; /* done when they are (deferred) */
	promoted_here(w, x);
}
