/*
 * checkpoint.c - a job's tables to a file and back, and checkpoints asked
 * for from outside the job (psstat --checkpoint).
 *
 * File format, version 1 (little-endian, the byte order of the hosts psmem
 * runs on; floats as their raw bits):
 *
 *   offset     size
 *   0          8     magic "PSMEMCKP"
 *   8          4     format version (1)
 *   12         4     header length H = 40 + 32 T + M
 *   16         4     crc32 of bytes [20, H): the rest of the header
 *   20         4     T, tables in the file
 *   24         4     M, metadata bytes
 *   28         4     0
 *   32         8     file length: H + data + 4
 *   40         32 T  per table: num_keys u64, value_len u32, state_len u32,
 *                    rule u32, flags u32, table id u32, 0 u32
 *   40 + 32 T  M     the program's metadata
 *   H          ...   data: table after table, key 0 .. num_keys-1, each
 *                    value_len + state_len floats (values, then rule state)
 *   end - 4    4     crc32 of the data
 *
 * Version 2 is one part of a multi-host job's checkpoint: the same with a
 * 56-byte fixed part (bytes 40..56: hosts u32, part rank u32, checkpoint
 * id u64, the same in every part of one checkpoint) and data for home
 * range R [k0, k1) of each table only (the partition of ps__host_keys over
 * the job's initial hosts, w->home_hosts), key k0 .. k1-1.  Part 0 is
 * PATH, part R PATH.hostR.  A one-host job writes version 1 as before.
 *
 * Invariants
 *   (CK1) PATH is only ever replaced by rename(2) of a complete, fsync'ed
 *        PATH.tmp.PID, and the directory is fsync'ed after: a reader sees
 *        the old file or the new one, whatever happens to the writer.  A
 *        temp file of a writer that died is removed by the next checkpoint
 *        to the same PATH; a failed write removes its own.
 *   (CK2) Collective calls: node barrier A brings every node in; node 0
 *        alone reads or writes the file; it leaves the outcome (rc, message)
 *        in hdr->ckpt before barrier B, which orders it for the others;
 *        every node returns it.  Each call makes exactly two node barriers,
 *        whatever happens, so a restarted node replays them (barrier.c BR4)
 *        without knowing what its predecessor did; replayed calls do not
 *        touch the file again (a replayed restore only reads the metadata).
 *   (CK3) A restore checks everything it can before changing anything:
 *        magic, version, header checksum, length, the tables' shapes, and
 *        the data checksum over the whole file (first pass); only then are
 *        values assigned (second pass).  A file that changes between the
 *        passes is the one case that can leave a partial restore.
 *   (CK4) Every key is read or assigned under its slot lock (kv.c KV2), so a
 *        key is never half of a push; MOVED slots are followed to loc[k].
 *   (CK5) Outside requests: psstat moves hdr->ckpt.req_state to PENDING with
 *        a path; node 0 latches it (CAS -> LATCHED) in ps_checkpoint_poll
 *        before barrier A and records the barrier's index in latch_idx, so
 *        every node agrees on whether this poll writes; node 0 then
 *        answers DONE or FAILED with the outcome.
 *
 * Several hosts (collective_hosts; every node of every present host makes
 * the same fixed sequence of PS__BAR_MIN agreements between A and B, node 0
 * of each host works between them).  "Host R" below is part R's writer of
 * the agreed view (CKH5): host R itself while it is present.
 *   (CKH1) Part R, PATH.hostR (PATH for part 0), names H = the initial host
 *        count (home_hosts) and R: a file of another host count or rank is
 *        refused before anything changes (psrun --restore checks it too).
 *   (CKH2) A part holds the host's home range, whoever holds the keys: keys
 *        held by another host (a REMOTE word) are pulled through the
 *        routing; a table with rule state refuses then (a pull carries no
 *        state).  Keys of other ranges held here are written by their home
 *        host the same way.  A restore needs every home key at home.
 *   (CKH3) Commit: the id comes from host 0; every host writes and fsyncs its
 *        temp file; agreement 1 (all durable); hosts R >= 1 rename theirs
 *        over PATH.hostR, first keeping the committed part as
 *        PATH.hostR.prev (the committed id, host 0's PATH's, is agreed
 *        before); agreement 2; host 0 renames over PATH: the one commit
 *        point.  A host that dies anywhere before leaves host 0's PATH the
 *        previous checkpoint, and every host R has that checkpoint's part
 *        as PATH.hostR or PATH.hostR.prev: a restore takes host 0's id
 *        (agreed) and the part with that id on every host.
 *   (CKH4) Poll: node 0 of a host that latched a request sends its path to
 *        every other host's node 0 (CKPT) before the agreement on "the
 *        lowest host that latched"; that host's path is used everywhere, a
 *        request latched on another host goes back to PENDING.
 *   (CKH5) Parts by home now.  Part R is written and read by the present
 *        host that is R's home now: R, or once R left (its LEFT came) or
 *        was lost (and promoted), b(R), the next initial host in the ring
 *        not gone (net/backup.c ps__backup_host's rule: where routing and
 *        the promotion put R's range); a host may write several parts, a
 *        joiner none.  Every role (part 0's writer gives the id and the
 *        committed one and commits: what was host 0's) is a function of a
 *        view - every rank's state from the segment's hmember, hgone and
 *        hpromo - that all agree on first: the least digest and the least
 *        complement (greatest digest) must match, else the call fails
 *        everywhere before any file work.  A node takes its view once this
 *        host promoted every lost host and every leaver said LEFT
 *        (bounded wait).  Link threads store those marks before they hand
 *        on the RELEASE that follows them (bridge.c BR-L1, clock.c CLH7),
 *        so a writer lost before agreement 2 is in part 0's writer's view
 *        taken after it: it then does not commit, and its verdict (the
 *        last agreement) fails the call on every survivor; the previous
 *        checkpoint stays (CKH3), the dead writer's temp file is swept.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <urcu/urcu-memb.h>
#include <zlib.h>

#include "segment.h"
#include "util.h"
#include "world.h"
#include "kv.h"
#include "replica.h"
#include "barrier.h"
#include "checkpoint.h"
#include "ckpt_in.h"

/* ------------------------------------------------------------ helpers */

uint32_t ps__ck_crc_of(uint32_t crc, const void *p, size_t len)
{
	const unsigned char *b = p;
	while (len) { /* zlib takes uInt lengths */
		uInt n = len > (1u << 30) ? (1u << 30) : (uInt)len;
		crc = (uint32_t)crc32(crc, b, n);
		b += n;
		len -= n;
	}
	return crc;
}

__attribute__((format(printf, 2, 3)))
void ps__ck_say(char *msg, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, PS__MSG_MAX, fmt, ap);
	va_end(ap);
}

/* Update rule of a table, as stored in the file (update rules: rules.c). */
uint32_t ps__ck_table_rule(const struct ps__tdesc *d)
{
	return d->rule;
}

uint32_t ps__ck_floats_per_key(const ps_table *t)
{
	return t->value_len + t->d->state_len;
}

const struct hinfo ps__ck_one_host = {.hosts = 1};

/* Keys [*k0, *k1) of a num_keys table are host rank's home range (the
 * partition of ps__host_keys). */
void ps__ck_range_of(uint64_t num_keys, uint32_t hosts, uint32_t rank, uint64_t *k0, uint64_t *k1)
{
	const unsigned __int128 K = num_keys, H = hosts, h = rank;
	*k0 = (uint64_t)((h * K + H - 1) / H);
	*k1 = (uint64_t)(((h + 1) * K + H - 1) / H);
}

uint32_t ps__ck_fixed_len(uint32_t hosts)
{
	return hosts > 1 ? CK_FIXED2 : CK_FIXED;
}

/* The tables a checkpoint holds: all but the transient ones, in order. */
int ps__ck_saved_tables(ps_world *w, ps_table **out)
{
	int n = 0;
	for (int i = 0; i < w->ntables && i < PS__MAX_TABLES; i++)
		if (w->tables[i] && !(w->tables[i]->flags & PS_TRANSIENT))
			out[n++] = w->tables[i];
	return n;
}

/*
 * Copies key k's nf floats out (in == NULL) or assigns them from in, under
 * the slot's lock (CK4).  Runs inside a read-side section.  False, and
 * nothing done, when another host holds k (a REMOTE word: CKH2).
 */
static bool key_access(ps_world *w, ps_table *t, ps_key k, uint32_t nf, uint32_t *out, const uint32_t *in)
{
	for (;;) {
		/* acquire: pairs with the release publish of loc[k] (kv.c KV1) */
		uint64_t lw = atomic_load_explicit(&t->loc[k], memory_order_acquire);
		if (PS__LOC_IS_REMOTE(lw))
			return false;
		/* a PS__LOC_REPL word names a replica index: the key's primary
		 * is t->rprim[PS__LOC_RIDX(lw)] (replica.c) */
		if (lw & PS__LOC_REPL) {
			if (ps__replica_access(w, t, k, lw, nf, out, in))
				return true;
			continue;
		}
		struct ps__slot *sl = ps__at(&w->seg, PS__LOC_OFF(lw));
		bool moved;
		uint64_t s = ps__slot_lock(w, t, sl, &moved);
		if (moved)
			continue;
		if (atomic_load_explicit(&sl->key, memory_order_relaxed) != k) {
			ps__slot_unlock(sl, s, false);
			continue;
		}
		/* relaxed: the lock orders them (kv.c KV2) */
		for (uint32_t j = 0; j < nf; j++) {
			if (in)
				atomic_store_explicit(&sl->v[j], in[j], memory_order_relaxed);
			else
				out[j] = atomic_load_explicit(&sl->v[j], memory_order_relaxed);
		}
		ps__slot_unlock(sl, s, false);
		return true;
	}
}

/*
 * Keys [k0, k0 + n) of t, key after key, to or from buf.  Returns how many
 * are held by another host (skipped); their positions go to rpos (n
 * entries) when it is not NULL.
 */
size_t ps__ck_keys_access(ps_world *w, ps_table *t, ps_key k0, size_t n, uint32_t *buf, bool assign,
			  uint32_t *rpos)
{
	uint32_t nf = ps__ck_floats_per_key(t);
	size_t remote = 0;
	urcu_memb_read_lock();
	for (size_t i = 0; i < n; i++)
		if (!key_access(w, t, k0 + i, nf, assign ? NULL : buf + i * nf, assign ? buf + i * nf : NULL)) {
			if (rpos)
				rpos[remote] = (uint32_t)i;
			remote++;
		}
	urcu_memb_read_unlock();
	return remote;
}

size_t ps__ck_keys_per_chunk(const ps_table *t)
{
	size_t per = (size_t)ps__ck_floats_per_key(t) * 4;
	size_t n = CK_IO / per;
	return n ? n : 1;
}

/* ------------------------------------------------------------ collective */

struct meta_out {
	void *buf;
	size_t cap;
	size_t *len;
};

/* Node 0, before barrier A of a poll: takes a pending outside request (CK5). */
static bool latch_request(ps_world *w)
{
	struct ps__ckpt *c = &w->seg.hdr->ckpt;
	uint32_t want = PS__REQ_PENDING;
	/* acquire: req_path written by the requester before PENDING */
	if (!atomic_compare_exchange_strong_explicit(&c->req_state, &want, PS__REQ_LATCHED, memory_order_acquire,
						     memory_order_relaxed))
		return false;
	memcpy(c->path, c->req_path, sizeof c->path);
	c->path[sizeof c->path - 1] = 0;
	c->latch_idx = w->node_calls + 1; /* barrier A's index + 1 (0: none) */
	return true;
}

/* Node 0, after the work of a latched poll: answers the requester (CK5). */
static void answer_request(ps_world *w, int rc)
{
	struct ps__ckpt *c = &w->seg.hdr->ckpt;
	c->req_rc = rc;
	memcpy(c->req_msg, c->msg, sizeof c->req_msg);
	/* release: req_rc and req_msg before the answer */
	atomic_store_explicit(&c->req_state, rc < 0 ? PS__REQ_FAILED : PS__REQ_DONE, memory_order_release);
}

static int node0_work(ps_world *w, enum op op, const char *path, const void *meta, size_t mlen)
{
	struct ps__ckpt *c = &w->seg.hdr->ckpt;
	char *msg = c->msg;
	msg[0] = 0;
	ps__thread_enter(w);
	int rc = op == OP_RESTORE ? ps__ck_restore_file(w, path, msg) : ps__ck_write_file(w, path, meta, mlen, msg);
	if (op == OP_POLL)
		answer_request(w, rc);
	return op == OP_POLL && rc == 0 ? 1 : rc;
}

/* The end of a collective, past barrier B, on every node: rc is the
 * outcome node 0 left (CK2), path the file it names.  A failure goes to
 * ckpt_err as "path: c->msg"; a restore reads the metadata back into mo. */
static int after_b(ps_world *w, enum op op, const char *path, int rc, const struct meta_out *mo)
{
	struct ps__ckpt *c = &w->seg.hdr->ckpt;
	char where[PS__PATH_MAX];
	snprintf(where, sizeof where, "%s", path);
	if (rc < 0) {
		snprintf(w->ckpt_err, sizeof w->ckpt_err, "%s: %s", where, c->msg);
		return rc;
	}
	if (op == OP_RESTORE) {
		char msg[PS__MSG_MAX];
		rc = ps__ck_read_meta(where, mo->buf, mo->cap, mo->len, msg);
		if (rc < 0)
			snprintf(w->ckpt_err, sizeof w->ckpt_err, "%s: %s", where, msg);
	}
	return rc;
}

/*
 * A multi-host job (CKH1-CKH5): the same two node barriers A and B as on one
 * host, and between them a fixed sequence of agreements over hosts that
 * every node of every host makes (node 0 works between them).  No restart
 * replay here: psrun refuses --on-failure restart with several hosts.
 */
static int collective_hosts(ps_world *w, enum op op, const char *path, const void *meta, size_t mlen,
			    const struct meta_out *mo)
{
	struct ps__ckpt *c = &w->seg.hdr->ckpt;
	const bool n0 = w->node == 0;
	bool latched = false;
	int rc = 0, lrc = 0;
	if (op == OP_POLL && n0 && (latched = latch_request(w)))
		rc = w->net->ckpt_send(w, c->path); /* before the agreement below (CKH4) */
	if (op != OP_RESTORE)
		for (int i = 0; i < w->ntables && i < PS__MAX_TABLES; i++)
			if (w->tables[i] && !(w->tables[i]->flags & PS_TRANSIENT))
				ps_sync(w->tables[i]);
	int brc = ps__node_barrier(w, NULL); /* A */
	if (brc)
		return brc;
	if (n0) {
		c->msg[0] = 0;
		c->path[sizeof c->path - 1] = 0;
	}
	char base[PS__PATH_MAX];
	snprintf(base, sizeof base, "%s", path ? path : "");
	if (op == OP_POLL) {
		/* CKH4: the lowest host that latched a request, else none */
		uint64_t who = n0 && latched && rc == 0 ? (uint64_t)w->host : UINT64_MAX;
		ps__ck_agree(w, &lrc, &who);
		if (n0) {
			char p[PS__PATH_MAX] = "";
			bool got = w->net->ckpt_take(w, (int)who, p, sizeof p) == 0;
			if (who == (uint64_t)w->host)
				snprintf(base, sizeof base, "%s", c->path);
			else if (got)
				snprintf(base, sizeof base, "%s", p);
			if (latched && who != (uint64_t)w->host) {
				/* another host's request is served at this poll:
				 * ours waits for the next one */
				atomic_store_explicit(&c->req_state, PS__REQ_PENDING, memory_order_release);
				latched = false;
			}
		}
		if (lrc == 0 && who == UINT64_MAX) {
			rc = ps__node_barrier(w, NULL); /* B */
			return rc ? rc : 0;
		}
		if (n0 && lrc == 0 && !base[0]) {
			ps__ck_say(c->msg, "host %" PRIu64 "'s checkpoint request did not arrive", who);
			rc = PS_ECKPT;
		}
	}
	int wrc = 0;
	char where[PS__PATH_MAX];
	if (op == OP_RESTORE)
		wrc = ps__ck_hosts_restore(w, base, &lrc, where, sizeof where);
	else
		wrc = ps__ck_hosts_write(w, base, meta, mlen, rc, &lrc, where, sizeof where);
	if (n0) {
		rc = wrc;
		c->rc = rc;
		ps__ck_pathf(c->path, sizeof c->path, "%s", where); /* the part named in messages (CKH5) */
		if (latched)
			answer_request(w, rc);
	}
	brc = ps__node_barrier(w, NULL); /* B: orders c->rc, c->msg, c->path (CK2) */
	if (brc)
		return brc;
	rc = after_b(w, op, c->path, c->rc, mo);
	return rc >= 0 && op == OP_POLL ? 1 : rc;
}

static int collective(ps_world *w, enum op op, const char *path, const void *meta, size_t mlen,
		      const struct meta_out *mo)
{
	struct ps__ckpt *c = &w->seg.hdr->ckpt;
	w->ckpt_err[0] = 0;
	if (w->nhosts > 1)
		return collective_hosts(w, op, path, meta, mlen, mo);
	if (op == OP_POLL && w->node == 0 && !ps__node_replaying(w))
		(void)latch_request(w);
	/* replication: every node merges every node's replica deltas into
	 * the primaries before it arrives at A (ps_sync is not collective),
	 * so the file holds each node's pushes made before its ps_checkpoint */
	if (op != OP_RESTORE)
		for (int i = 0; i < w->ntables && i < PS__MAX_TABLES; i++)
			if (w->tables[i] && !(w->tables[i]->flags & PS_TRANSIENT))
				ps_sync(w->tables[i]);
	uint32_t idx;
	int rc = ps__node_barrier(w, &idx); /* A */
	if (rc)
		return rc;
	/* a predecessor that passed B did the work; one that died between A
	 * and B may have left it half done: do it again (CK2) */
	bool done = ps__node_replaying(w);
	if (op == OP_POLL) /* everyone agrees whether this poll writes (CK5) */
		path = c->latch_idx == idx + 1 ? c->path : NULL;
	if (w->node == 0 && !done) {
		c->msg[0] = 0;
		c->rc = path ? node0_work(w, op, path, meta, mlen) : 0;
	}
	rc = ps__node_barrier(w, NULL); /* B: orders c->rc and c->msg (CK2) */
	if (rc)
		return rc;
	return after_b(w, op, path ? path : "", done ? 0 : c->rc, mo);
}

static int check_path(ps_world *w, const char *path)
{
	if (!w || !path || !*path)
		return -EINVAL;
	if (strlen(path) + 32 >= PS__PATH_MAX)
		return -ENAMETOOLONG;
	return 0;
}

int ps_checkpoint_meta(ps_world *w, const char *path, const void *meta, size_t meta_len)
{
	int rc = check_path(w, path);
	if (rc == 0 && (meta_len > PS_CKPT_META_MAX || (meta_len && !meta)))
		rc = -EINVAL;
	return rc ? rc : collective(w, OP_WRITE, path, meta, meta_len, NULL);
}

int ps_checkpoint(ps_world *w, const char *path)
{
	return ps_checkpoint_meta(w, path, NULL, 0);
}

int ps_restore_meta(ps_world *w, const char *path, void *meta, size_t meta_cap, size_t *meta_len)
{
	if (meta_len)
		*meta_len = 0;
	if (!w || (meta_cap && !meta))
		return -EINVAL;
	if (!path) {
		path = getenv("PSMEM_RESTORE"); /* psrun --restore FILE */
		if (!path || !*path)
			return 0;
	}
	int rc = check_path(w, path);
	struct meta_out mo = {.buf = meta, .cap = meta_cap, .len = meta_len};
	return rc ? rc : collective(w, OP_RESTORE, path, NULL, 0, &mo);
}

int ps_restore(ps_world *w, const char *path)
{
	return ps_restore_meta(w, path, NULL, 0, NULL);
}

int ps_checkpoint_poll(ps_world *w, const void *meta, size_t meta_len)
{
	if (!w || meta_len > PS_CKPT_META_MAX || (meta_len && !meta))
		return -EINVAL;
	return collective(w, OP_POLL, NULL, meta, meta_len, NULL);
}

const char *ps_checkpoint_error(const ps_world *w)
{
	return w ? w->ckpt_err : "";
}
