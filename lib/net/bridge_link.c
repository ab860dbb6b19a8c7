/*
 * bridge_link.c - a node's side of the multi-host bridge: its link (a Unix
 * stream socket inherited from psrun, PSMEM_LINK_FD), its data connections
 * to node w->node of every other host (TCP, made and authenticated by
 * psrun's rendezvous, PSMEM_DATA_FDS), and the link thread that serves
 * them all (poll).  Requests between nodes and their answers go on the
 * data connections; barriers, clocks, checkpoints, ABORT on the link.
 *
 * Keys are range-partitioned over hosts: host h is the home of keys
 * [ceil(h K / H), ceil((h+1) K / H)), placed over its nodes as in a
 * one-host job; the location word of every other key is REMOTE with a
 * host in its owner field (at creation the home; keys move later:
 * migrate.c, and docs/DESIGN.md "Keys and routing").
 *
 * Callers (kv.c's routing hook):
 *   ps__route_batch   groups the batch's REMOTE keys per host and sends one
 *                     PULL/PUSH frame per host (split only at the frame
 *                     size limit), then returns: the local keys are done
 *                     while the frames travel;
 *   ps__remote_wait   waits for the replies (ps_wait, or at the end of a
 *                     synchronous call).
 * The link thread:
 *   REPLY             scatters a pull's values into the caller's buffer,
 *                     counts the group down, wakes the waiter;
 *   PULL/PUSH         executes a request of another host on this host's
 *                     keys (a registered reader thread of this node, so
 *                     grace periods cover it) and answers;
 *   CLOCK             another host's slowest clock, into the segment
 *                     (clock.c);
 *   ABORT             host f->host is gone: its requests in flight fail,
 *                     clock waiters waiting for it return PS_EHOSTDOWN.
 *   RELEASE           completes a barrier across hosts (with its tag: the
 *                     minimum of a PS__BAR_MIN barrier);
 *   CKPT              (node 0) a checkpoint asked for on another host: the
 *                     path is kept for checkpoint.c's poll (lowest host
 *                     first);
 *   SYNC              (elastic jobs, bridge.c EL3) the result of a
 *                     membership agreement at ps_sync_hosts, before its
 *                     RELEASE: members admitted and leaving, into the
 *                     segment (clocks, ps_hosts_alive); a joiner's clocks
 *                     and barrier generations start at the members';
 *   DATAFD            a joiner's data connection for this node, passed
 *                     with the frame (SCM_RIGHTS), adopted here (EL1).
 *
 * Invariants
 *   (LK1) A request id is (node << 56) | (seq << 32) | slot: the bridges
 *        route replies by the node byte, and a reply whose seq does not
 *        match its slot's is stale and ignored, so a slot can be reused.
 *   (LK2) A group's counter is set to its number of frames before the first
 *        is sent; each reply (or failure) decrements it with release after
 *        writing the values, and the waiter reads them after an acquire
 *        load of 0.
 *   (LK3) One node's requests to a host are executed by one node there, in
 *        order (one data connection to node w->node there, or without one
 *        the bridge's n mod N), so a worker's synchronous operations on a
 *        key keep their order across hosts.
 *   (LK4) When the link breaks (psrun gone), every request in flight and
 *        every barrier waiter completes with PS_EHOSTDOWN; when the bridge
 *        loses a peer host, the requests that went there do: nothing hangs.
 *   (LK6) No thread ever blocks writing to a data connection: what the
 *        socket does not take is queued (under the connection's wlock, in
 *        order) and sent by the link thread when it is writable.  Two link
 *        threads blocked writing to each other would read nothing.  Frames
 *        there carry no CRC (PS__FRAME_NOCRC; TCP checksums them); a data
 *        connection carries only data types and only its peer's frames,
 *        else it is closed as malformed.  Nothing relies on order between
 *        a data frame and a link frame (docs/DESIGN.md, "Data
 *        connections").
 *   (LK7) A large REPLY to a pull whose rows are contiguous is received
 *        straight into them by the link thread (direct_start): its slot
 *        cannot be claimed meanwhile except by this thread's failure
 *        sweep, which turns the direct receive into a discard (found by
 *        slot and seq: same_rpc) before it completes the group, so no
 *        byte lands in rows after their caller was released.
 *   (LK5) Each key of a batch is served exactly once: a round reads its
 *        word once and either sends it or does it here; a host that does
 *        not hold it (REDIRECT) or a word that changed under the local
 *        pass (a miss) sends it to the next round, never both.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <urcu/urcu-memb.h>

#include "barrier.h"
#include "clock.h"
#include "kv.h"
#include "link.h"
#include "replica.h"
#include "table.h"
#include "link_in.h"

#define TAG_WORKERS 0x5745524b45525321ULL /* "!SREKREW" */
#define TAG_FINAL   0x4c414e49462d5350ULL /* "PS-FINAL" */

/* ------------------------------------------------------------ helpers */

/* A frame to the bridge: blocking (the bridge always reads its links). */
static int link_write(struct ps__link *L, const uint8_t *p, size_t n)
{
	int rc = 0;
	pthread_mutex_lock(&L->link.wlock);
	while (n > 0) {
		ssize_t r = send(L->link.fd, p, n, MSG_NOSIGNAL);
		if (r > 0) {
			p += r;
			n -= (size_t)r;
		} else if (r < 0 && errno == EINTR) {
			continue;
		} else {
			rc = PS_EHOSTDOWN;
			break;
		}
	}
	pthread_mutex_unlock(&L->link.wlock);
	return rc;
}

/* Sends what the socket takes now of the parts p[k][0..n[k]) (k < np),
 * from byte skip of their concatenation; returns the bytes sent (skip
 * included), or -1 when the connection failed.  c->wlock held.  Header and
 * body go out in one sendmsg: with TCP_NODELAY, a header sent alone would
 * be a segment (and a wakeup of the reader) of its own. */
static ssize_t data_push(struct ps__conn *c, const uint8_t *const p[], const size_t n[], int np, size_t skip)
{
	size_t total = 0;
	for (int k = 0; k < np; k++)
		total += n[k];
	size_t done = skip;
	while (done < total) {
		struct iovec iov[2];
		int ni = 0;
		size_t at = 0;
		for (int k = 0; k < np; k++) {
			if (done < at + n[k])
				iov[ni++] = (struct iovec){.iov_base = (void *)(p[k] + (done > at ? done - at : 0)),
							   .iov_len = n[k] - (done > at ? done - at : 0)};
			at += n[k];
		}
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)ni};
		ssize_t r = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (r > 0)
			done += (size_t)r;
		else if (r < 0 && errno == EINTR)
			continue;
		else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		else
			return -1;
	}
	return (ssize_t)done;
}

/* The connection is unusable (a send failed, or no memory to queue): the
 * link thread sees its end (shutdown) and fails what went there (LK4).
 * c->wlock held. */
static void data_break(struct ps__conn *c)
{
	/* release: as in data_lost */
	atomic_store_explicit(&c->dead, true, memory_order_release);
	c->out_at = c->out_len = 0;
	shutdown(c->fd, SHUT_RDWR);
}

/*
 * A frame (header hdr, body at body[0..len)) on a data connection, never
 * blocking (LK6): sent as far as the socket takes it, the rest queued for
 * the link thread, which is woken if it is not the caller.  0, PS_EHOSTDOWN,
 * or -ENOMEM: no room to queue a request of which nothing was sent (the
 * connection stays; request false, an answer: it breaks).
 */
static int data_write(struct ps__link *L, struct ps__conn *c, const uint8_t *hdr, const uint8_t *body, size_t len,
		      bool request)
{
	int rc = 0;
	bool wake = false;
	const uint8_t *part[2] = {hdr, body};
	const size_t plen[2] = {PS__FRAME_HDR, len};
	pthread_mutex_lock(&c->wlock);
	/* acquire: as in ps__lk_send; left: its host left the job (drain.c) */
	if (atomic_load_explicit(&c->dead, memory_order_acquire) ||
	    atomic_load_explicit(&c->left, memory_order_acquire)) {
		rc = PS_EHOSTDOWN;
	} else {
		size_t done = 0;
		if (c->out_len == c->out_at) { /* nothing queued: straight out */
			ssize_t r = data_push(c, part, plen, 2, 0);
			if (r < 0) {
				data_break(c);
				rc = PS_EHOSTDOWN;
			}
			done = r < 0 ? 0 : (size_t)r;
		}
		if (rc == 0 && done < PS__FRAME_HDR + len) {
			if (c->out_at == c->out_len)
				c->out_at = c->out_len = 0;
			if (ps__buf_reserve(&c->out, &c->out_cap, c->out_len + PS__FRAME_HDR + len - done) != 0) {
				/* nothing of the frame sent: the connection stays,
				 * the caller fails this one alone; an answer, or part
				 * of a frame on the wire, breaks it (the requester
				 * must not wait for an answer that will not come) */
				if (done == 0 && request) {
					rc = -ENOMEM;
				} else {
					data_break(c);
					rc = PS_EHOSTDOWN;
				}
			} else {
				for (int k = 0, at = 0; k < 2; at += (int)plen[k], k++) {
					size_t from = done > (size_t)at ? done - (size_t)at : 0;
					if (from < plen[k]) {
						memcpy(c->out + c->out_len, part[k] + from, plen[k] - from);
						c->out_len += plen[k] - from;
					}
				}
				wake = true;
			}
		}
	}
	pthread_mutex_unlock(&c->wlock);
	if (wake && !pthread_equal(pthread_self(), L->thread))
		(void)!write(L->wake_fd, &(uint64_t){1}, sizeof(uint64_t));
	return rc;
}

/* A connection's in or out buffer larger than this is freed when it
 * drains: a burst of large frames does not pin its memory for the rest of
 * the job.  Frames up to about this size (1.6 MB: 4096 keys x 100 floats)
 * reuse their buffer; larger ones pay an allocation each. */
#define SHRINK_OVER (4u << 20)

/* Link thread: the data connection is writable; sends what is queued. */
static void data_flush(struct ps__conn *c)
{
	pthread_mutex_lock(&c->wlock);
	if (c->out_at < c->out_len) {
		const uint8_t *part[1] = {c->out + c->out_at};
		const size_t plen[1] = {c->out_len - c->out_at};
		ssize_t r = data_push(c, part, plen, 1, 0);
		if (r < 0)
			data_break(c);
		else
			c->out_at += (size_t)r;
		if (c->out_at == c->out_len) {
			c->out_at = c->out_len = 0;
			if (c->out_cap > SHRINK_OVER) { /* drained after a burst */
				free(c->out);
				c->out = NULL;
				c->out_cap = 0;
			}
		}
	}
	pthread_mutex_unlock(&c->wlock);
}

static bool data_pending(struct ps__conn *c)
{
	pthread_mutex_lock(&c->wlock);
	bool p = c->out_at < c->out_len;
	pthread_mutex_unlock(&c->wlock);
	return p;
}

int ps__lk_send(struct ps__link *L, int host, uint8_t *frame, unsigned type, uint64_t req, uint32_t len)
{
	/* acquire: a link thread that died (or lost this host) before our
	 * registration swept without seeing it; then we see dead here (LK4) */
	if (atomic_load_explicit(&L->dead, memory_order_acquire))
		return PS_EHOSTDOWN;
	struct ps__conn *c = L->data && host >= 0 && host < L->w->nhosts ? &L->data[host] : NULL;
	/* acquire: pairs with the link thread's release after it set fd */
	if (c && atomic_load_explicit(&c->has_fd, memory_order_acquire)) {
		uint8_t hdr[PS__FRAME_HDR];
		ps__frame_hdr_nocrc(hdr, type, (uint16_t)L->w->host, req, len);
		return data_write(L, c, hdr, frame + PS__FRAME_HDR, len, true);
	}
	ps__frame_seal(frame, type, (uint16_t)host, req, len);
	return link_write(L, frame, PS__FRAME_HDR + len);
}

void ps__lk_answer(struct ps__link *L, const struct ps__frame *f, uint8_t *frame, unsigned type, uint32_t len)
{
	struct ps__conn *c = L->cur;
	if (c->data) {
		uint8_t hdr[PS__FRAME_HDR];
		ps__frame_hdr_nocrc(hdr, type, (uint16_t)L->w->host, f->req, len);
		data_write(L, c, hdr, frame + PS__FRAME_HDR, len, false);
	} else {
		ps__frame_seal(frame, type, f->host, f->req, len);
		link_write(L, frame, PS__FRAME_HDR + len);
	}
}

void ps__lk_group_done(struct ps__rgroup *g, int err)
{
	int32_t zero = 0;
	if (err)
		atomic_compare_exchange_strong_explicit(&g->err, &zero, err, memory_order_relaxed,
							memory_order_relaxed);
	/* release: the values scattered before are visible to the waiter (LK2) */
	if (atomic_fetch_sub_explicit(&g->left, 1, memory_order_release) == 1)
		ps__futex_wake(&g->left, 1, false);
}

/* ------------------------------------------------------------ clocks */

bool ps__link_down(ps_world *w)
{
	/* acquire: pairs with link_broken's release */
	return !w->link || atomic_load_explicit(&w->link->dead, memory_order_acquire);
}

int ps__link_send_clock(ps_world *w, uint64_t min, uint64_t cfg)
{
	struct ps__link *L = w->link;
	uint8_t f[PS__FRAME_HDR + PS__CLOCK_SIZE];
	struct ps__clock_msg m = {.min = min, .cfg = cfg};
	ps__clock_enc(f + PS__FRAME_HDR, &m);
	ps__frame_seal(f, PS__F_CLOCK, (uint16_t)w->host, 0, PS__CLOCK_SIZE);
	/* acquire: see send_chunk */
	if (!L || atomic_load_explicit(&L->dead, memory_order_acquire))
		return PS_EHOSTDOWN;
	return link_write(L, f, sizeof f);
}

/* ------------------------------------------------------------ barriers */

static int link_barrier_tag(ps_world *w, uint64_t tag, uint32_t flags, uint64_t *out)
{
	struct ps__link *L = w->link;
	pthread_mutex_lock(&L->bar_lock);
	uint64_t gen = ++L->bar_gen;
	pthread_mutex_unlock(&L->bar_lock);
	uint8_t f[PS__FRAME_HDR + PS__BARRIER_SIZE];
	struct ps__barrier_msg m = {.gen = gen, .tag = tag, .flags = flags};
	ps__barrier_enc(f + PS__FRAME_HDR, &m);
	ps__frame_seal(f, PS__F_BARRIER, (uint16_t)w->host, 0, PS__BARRIER_SIZE);
	if (link_write(L, f, sizeof f) != 0)
		return PS_EHOSTDOWN;
	ps__wait_set(w, PS__WAIT_BARRIER, gen, 2);
	for (;;) {
		uint32_t seq = atomic_load_explicit(&L->bar_seq, memory_order_acquire);
		/* acquire: pairs with the release in on_release */
		if (atomic_load_explicit(&L->released, memory_order_acquire) >= gen)
			break;
		if (atomic_load_explicit(&L->dead, memory_order_acquire)) {
			ps__wait_clear(w);
			return PS_EHOSTDOWN;
		}
		ps__futex_wait(&L->bar_seq, seq, 100 * 1000 * 1000, false);
	}
	ps__wait_clear(w);
	if (out)
		*out = atomic_load_explicit(&L->bar_tag[gen & 1], memory_order_relaxed);
	return atomic_load_explicit(&L->bar_status[gen & 1], memory_order_relaxed);
}

static int link_barrier(ps_world *w, uint64_t tag, uint32_t flags)
{
	return link_barrier_tag(w, tag, flags, NULL);
}

int ps__link_barrier_min(ps_world *w, uint64_t *tag)
{
	return link_barrier_tag(w, *tag, PS__BAR_MIN, tag);
}

int ps__link_ckpt_send(ps_world *w, const char *path)
{
	uint8_t f[PS__FRAME_HDR + 6 + PS__NOTE_MAX];
	if (strlen(path) > PS__NOTE_MAX)
		return -ENAMETOOLONG;
	uint32_t len = ps__note_enc(f + PS__FRAME_HDR, 0, path);
	ps__frame_seal(f, PS__F_CKPT, (uint16_t)w->host, 0, len);
	return link_write(w->link, f, PS__FRAME_HDR + len) ? PS_EHOSTDOWN : 0;
}

int ps__link_ckpt_take(ps_world *w, int host, char *path, size_t len)
{
	struct ps__link *L = w->link;
	pthread_mutex_lock(&L->ckpt_lock);
	int h = L->ckpt_host;
	if (h == host)
		snprintf(path, len, "%s", L->ckpt_path);
	L->ckpt_host = -1;
	pthread_mutex_unlock(&L->ckpt_lock);
	return h == host ? 0 : -ENOENT;
}

static void on_ckpt(struct ps__link *L, const struct ps__frame *f)
{
	struct ps__note n;
	if (ps__note_dec(f->body, f->len, &n) != 0)
		return;
	pthread_mutex_lock(&L->ckpt_lock);
	if (L->ckpt_host < 0 || f->host < L->ckpt_host) {
		L->ckpt_host = f->host;
		snprintf(L->ckpt_path, sizeof L->ckpt_path, "%s", n.text);
	}
	pthread_mutex_unlock(&L->ckpt_lock);
}

static void on_release(struct ps__link *L, const struct ps__barrier_msg *m)
{
	atomic_store_explicit(&L->bar_status[m->gen & 1], m->status, memory_order_relaxed);
	/* relaxed: published by the release of released below */
	atomic_store_explicit(&L->bar_tag[m->gen & 1], m->tag, memory_order_relaxed);
	/* release: the status is visible to whoever sees the generation */
	atomic_store_explicit(&L->released, m->gen, memory_order_release);
	atomic_fetch_add_explicit(&L->bar_seq, 1, memory_order_release);
	ps__futex_wake(&L->bar_seq, INT_MAX, false);
}

int ps__link_table_created(ps_world *w, ps_table *t, int id, const struct ps__tdesc *d, int local_rc)
{
	uint64_t tag = ps__mix64((uint64_t)id ^ ps__mix64(d->num_keys ^ ps__mix64(d->value_len)));
	tag = ps__mix64(tag ^ ((uint64_t)d->flags << 32 | d->placement << 8 | d->init));
	tag = ps__mix64(tag ^ d->seed);
	uint32_t a;
	memcpy(&a, &d->init_a, sizeof a);
	tag = ps__mix64(tag ^ a);
	/* update rule (with its fingerprint and parameters) and replication */
	tag = ps__mix64(tag ^ d->rule ^ ((uint64_t)d->repl_max << 32));
	tag = ps__mix64(tag ^ d->rule_fp);
	uint64_t rp[2];
	memcpy(rp, d->rule_params, sizeof rp);
	tag = ps__mix64(tag ^ rp[0] ^ ps__mix64(rp[1]));
	uint64_t rr;
	memcpy(&rr, &d->repl_rate, sizeof rr);
	tag = ps__mix64(tag ^ rr);
	/* a node that failed disagrees with everyone: all fail together */
	if (local_rc)
		tag = ps__mix64(tag ^ (uint64_t)(uint32_t)local_rc ^ ((uint64_t)w->host << 32) ^ (uint64_t)w->node);
	/* requests of other hosts may come as soon as the barrier completes,
	 * before this thread wakes up: publish first (w->tables[id] is set
	 * only after this barrier). */
	atomic_store_explicit(&w->link->tables[id], local_rc ? NULL : t, memory_order_release);
	/* a joiner before its first ps_sync_hosts creates its tables alone:
	 * the job's tables exist, every key REMOTE to its home; its tables'
	 * hash is checked at admission (EL2) */
	if (w->join_pending) {
		if (!local_rc)
			w->link->tables_hash = ps__mix64(w->link->tables_hash ^ tag);
		return local_rc;
	}
	int rc = link_barrier(w, tag, 0);
	if (rc) /* failed everywhere: nobody will ask; the handle is freed */
		atomic_store_explicit(&w->link->tables[id], NULL, memory_order_release);
	else
		w->link->tables_hash = ps__mix64(w->link->tables_hash ^ tag);
	return rc;
}

int ps__link_barrier_workers(ps_world *w)
{
	struct ps__link *L = w->link;
	const uint64_t T = (uint64_t)(w->nthreads > 0 ? w->nthreads : 1);
	pthread_mutex_lock(&L->wb_lock);
	uint64_t k = L->wb_arrivals++;
	pthread_mutex_unlock(&L->wb_lock);
	uint64_t gen = k / T;
	if (k % T == 0) {
		/* the first thread of this process to get here speaks for it:
		 * every thread of every local node has arrived (the local
		 * barrier before), so this node has */
		int rc = link_barrier(w, TAG_WORKERS, 0);
		pthread_mutex_lock(&L->wb_lock);
		L->wb_rc[gen & 1] = rc;
		pthread_mutex_unlock(&L->wb_lock);
	}
	int rc = ps__barrier_wait(w, &w->seg.hdr->workers);
	pthread_mutex_lock(&L->wb_lock);
	if (rc == 0)
		rc = L->wb_rc[gen & 1];
	pthread_mutex_unlock(&L->wb_lock);
	return rc;
}

/* ------------------------------------------------------------ elastic (EL3-EL6) */

/* A SYNC arrival of this node: the bridge makes it this host's arrival at
 * the membership agreement once every local node is there (bridge.c EL3);
 * the result comes before the RELEASE.  0 or a code; *o_epoch the
 * members' epoch, *leaving whether this host leaves here. */
static int link_sync(ps_world *w, uint64_t epoch, uint64_t *o_epoch, bool *leaving)
{
	struct ps__link *L = w->link;
	pthread_mutex_lock(&L->bar_lock);
	uint64_t gen = ++L->bar_gen;
	pthread_mutex_unlock(&L->bar_lock);
	uint8_t f[PS__FRAME_HDR + PS__SYNC_HDR];
	/* every worker of this host is in ps_sync_hosts (the local barrier
	 * before): the slowest clock cannot move while it travels */
	struct ps__sync_msg m = {.gen = gen, .epoch = epoch, .clock = ps__clock_local_min(w),
				 .cfg = ps__clock_cfg_now(w), .tables = L->tables_hash};
	uint32_t len = ps__sync_enc(f + PS__FRAME_HDR, &m);
	ps__frame_seal(f, PS__F_SYNC, (uint16_t)w->host, 0, len);
	if (link_write(L, f, PS__FRAME_HDR + len) != 0)
		return PS_EHOSTDOWN;
	ps__wait_set(w, PS__WAIT_BARRIER, gen, 2);
	uint64_t r;
	for (;;) {
		uint32_t seq = atomic_load_explicit(&L->bar_seq, memory_order_acquire);
		/* acquire: pairs with the release in on_release; a joiner's
		 * first RELEASE carries the members' generation, above ours */
		if ((r = atomic_load_explicit(&L->released, memory_order_acquire)) >= gen)
			break;
		if (atomic_load_explicit(&L->dead, memory_order_acquire)) {
			ps__wait_clear(w);
			return PS_EHOSTDOWN;
		}
		ps__futex_wait(&L->bar_seq, seq, 100 * 1000 * 1000, false);
	}
	ps__wait_clear(w);
	int rc = atomic_load_explicit(&L->bar_status[r & 1], memory_order_relaxed);
	pthread_mutex_lock(&L->sync_lock);
	bool ours = L->sync_gen == r;
	*o_epoch = ours ? L->sync_epoch : epoch;
	*leaving = ours && L->sync_leaving;
	pthread_mutex_unlock(&L->sync_lock);
	if (rc == 0 && !ours)
		rc = PS_EMISMATCH; /* a RELEASE of an ordinary barrier: the hosts disagree */
	return rc;
}

/* EL6: a joiner takes a share of every table by relocation before its
 * first ps_sync_hosts returns: keys k with k mod Hp = its place among the
 * Hp hosts present (by rank), spread over its nodes by (k / Hp) mod N.
 * Replicated tables are skipped (their keys are local everywhere). */
static int take_share(ps_world *w)
{
	uint8_t alive[PS__MAX_CLOCK_HOSTS];
	int cap = w->nhosts < PS__MAX_CLOCK_HOSTS ? w->nhosts : PS__MAX_CLOCK_HOSTS;
	int hp = ps_hosts_alive(w, alive, cap), place = 0;
	for (int h = 0; h < w->host && h < cap; h++)
		place += alive[h];
	if (hp < 2)
		return 0;
	/* an initial host gone before we came (its hgone set from the
	 * WELCOME): our tables' words name it as home; they name b(x) now,
	 * as at the members (drain.c, or a promotion under continue) */
	for (int x = 0; w->node == 0 && x < w->home_hosts && x < cap; x++)
		if (x != w->host && ps__host_lost(w, x))
			ps__drain_rewrite(w, x);
	const uint64_t N = (uint64_t)w->nnodes;
	int rc = 0;
	for (int id = 0; id < PS__MAX_TABLES && rc == 0; id++) {
		pthread_mutex_lock(&w->tables_lock);
		ps_table *t = w->tables[id];
		pthread_mutex_unlock(&w->tables_lock);
		if (!t || t->d->repl_max)
			continue;
		size_t n = 0;
		uint64_t per = (t->num_keys + (uint64_t)hp - 1) / (uint64_t)hp / N + 1;
		ps_key *keys = malloc(per * sizeof *keys);
		if (!keys)
			return -ENOMEM;
		for (uint64_t k = (uint64_t)place; k < t->num_keys && n < per; k += (uint64_t)hp)
			if ((k / (uint64_t)hp) % N == (uint64_t)w->node)
				keys[n++] = k;
		/* a key whose holder leaves at the barrier that admitted us is
		 * in that host's drain: the move does not take it (the holder
		 * gave it to b(x) meanwhile) and is asked again, the home
		 * being b(x)'s once the LEFT came (bounded like the drain) */
		/* (PS_EHOSTDOWN: a GIVE that reached the leaver after its
		 * drain, from a home that had not seen its LEFT yet: asked
		 * again after a pause, as the router does) */
		uint64_t until = ps__now_ns() + 30ULL * 1000 * 1000 * 1000;
		while (n && rc == 0) {
			rc = ps_localize_sync(t, keys, n);
			size_t left = 0;
			for (size_t i = 0; i < n; i++)
				if (ps_owner_host(t, keys[i]) != w->host)
					keys[left++] = keys[i];
			n = left;
			/* acquire: the link thread's store when the job ends */
			bool dead = atomic_load_explicit(&w->link->dead, memory_order_acquire);
			if (rc == PS_EHOSTDOWN && n && !dead && ps__now_ns() < until) {
				nanosleep(&(struct timespec){.tv_nsec = 1000 * 1000}, NULL);
				rc = 0;
			}
			if (rc == 0 && n && ps__now_ns() > until)
				rc = -ETIMEDOUT;
		}
		free(keys);
		if (rc)
			fprintf(stderr, "psmem: host %d node %d: taking a share of table %d after joining: %s\n", w->host,
				w->node, id, ps_strerror(rc));
	}
	return rc;
}

int ps__link_sync_workers(ps_world *w, uint64_t *epoch)
{
	struct ps__link *L = w->link;
	const uint64_t T = (uint64_t)(w->nthreads > 0 ? w->nthreads : 1);
	pthread_mutex_lock(&L->wb_lock);
	uint64_t k = L->wb_arrivals++;
	pthread_mutex_unlock(&L->wb_lock);
	uint64_t gen = k / T;
	if (k % T == 0) {
		/* the first thread of this process speaks for it, as in
		 * ps_barrier (every local worker has arrived) */
		uint64_t ep = *epoch;
		bool leaving = false;
		int rc = link_sync(w, ep, &ep, &leaving);
		if (rc == 0 && w->join_pending) {
			w->join_pending = false;
			rc = take_share(w);
		}
		if (rc == 0 && leaving)
			w->left = true;
		pthread_mutex_lock(&L->wb_lock);
		L->wb_rc[gen & 1] = rc ? rc : leaving ? 0 : 1;
		L->wb_epoch[gen & 1] = ep;
		pthread_mutex_unlock(&L->wb_lock);
	}
	/* the second local barrier: every thread sees its node's outcome */
	int rc = ps__barrier_wait(w, &w->seg.hdr->workers);
	pthread_mutex_lock(&L->wb_lock);
	if (rc == 0) {
		rc = L->wb_rc[gen & 1];
		*epoch = L->wb_epoch[gen & 1];
	}
	pthread_mutex_unlock(&L->wb_lock);
	return rc;
}

/* Link thread: the result of a membership agreement (EL3), before its
 * RELEASE.  Membership goes into the segment (clock waiters, ps_hosts_alive)
 * before any worker is released. */
static void on_sync_result(struct ps__link *L, const struct ps__sync_msg *m)
{
	ps_world *w = L->w;
	bool me_admitted = false, me_leaving = false;
	for (unsigned i = 0; i < m->na; i++)
		me_admitted |= m->a[i] == w->host;
	for (unsigned i = 0; i < m->nb; i++)
		me_leaving |= m->b[i] == w->host;
	if (me_admitted) {
		/* a joiner: every member with its clock; its own workers start
		 * at the slowest of them; its barriers continue the members'
		 * generations */
		uint64_t slow = UINT64_MAX;
		for (unsigned i = 0; i < m->nm; i++) {
			ps__clock_member(w, m->m[i].rank, PS__HOST_MEMBER, m->m[i].clock, m->m[i].cfg);
			slow = m->m[i].clock < slow ? m->m[i].clock : slow;
		}
		if (slow != UINT64_MAX)
			ps__clock_start_at(w, slow);
		pthread_mutex_lock(&L->bar_lock);
		L->bar_gen = m->gen;
		pthread_mutex_unlock(&L->bar_lock);
	} else {
		for (unsigned i = 0; i < m->na; i++)
			ps__clock_member(w, m->a[i], PS__HOST_MEMBER, 0, 0);
	}
	for (unsigned i = 0; i < m->nb; i++)
		if (m->b[i] != w->host)
			ps__clock_member(w, m->b[i], PS__HOST_LEFT, 0, 0);
	pthread_mutex_lock(&L->sync_lock);
	L->sync_gen = m->gen;
	L->sync_epoch = m->epoch;
	L->sync_leaving = me_leaving;
	pthread_mutex_unlock(&L->sync_lock);
}

static void sweep_inflight(struct ps__link *L, int host, bool reroute);
static void on_datafd(struct ps__link *L, const struct ps__frame *f);

static void dispatch(struct ps__link *L, const struct ps__frame *f)
{
	switch (f->type) {
	case PS__F_REPLY:
		ps__lk_on_reply(L, f);
		break;
	case PS__F_REDIRECT:
		ps__lk_on_redirect(L, f);
		break;
	case PS__F_MOVE_REPLY:
		ps__lk_on_move_reply(L, f);
		break;
	case PS__F_PULL:
	case PS__F_PUSH:
		ps__lk_on_request(L, f);
		break;
	case PS__F_MOVE:
		ps__lk_on_move(L, f);
		break;
	case PS__F_RPULL:
	case PS__F_RPUSH:
		ps__lk_on_primary_request(L, f);
		break;
	case PS__F_RELEASE: {
		struct ps__barrier_msg m;
		if (ps__barrier_dec(f->body, f->len, &m) == 0)
			on_release(L, &m);
		break;
	}
	case PS__F_CLOCK: {
		struct ps__clock_msg m;
		if (f->host < L->w->nhosts && f->host != L->w->host && ps__clock_dec(f->body, f->len, &m) == 0)
			ps__clock_heard(L->w, f->host, m.min, m.cfg);
		break;
	}
	case PS__F_CKPT:
		on_ckpt(L, f);
		break;
	case PS__F_SYNC: {
		struct ps__sync_msg m;
		if (ps__sync_dec(f->body, f->len, &m) == 0 && (m.flags & PS__SYNC_RESULT))
			on_sync_result(L, &m);
		break;
	}
	case PS__F_DATAFD:
		on_datafd(L, f);
		break;
	case PS__F_BACKUP:
		ps__bk_on_frame(L, f);
		break;
	case PS__F_ABORT: {
		struct ps__note n;
		bool note = ps__note_dec(f->body, f->len, &n) == 0;
		if (note && n.code == PS__GONE_LEFT && f->host < L->w->nhosts && f->host != L->w->host) {
			/* host f->host left after handing its keys over (drain.c):
			 * its data connection is half-closed and read until its
			 * EOF, which sweeps what it left unanswered (DR2) */
			ps__drain_left(L, f->host);
			if (L->data[f->host].fd < 0 || L->data[f->host].closed)
				sweep_inflight(L, f->host, true);
			break;
		}
		/* the bridge lost host f->host: what went there is lost too,
		 * nothing more goes there, and nothing more of it is served:
		 * its data connection is shut down, so the next poll ends it
		 * (data_lost: closed, swept, a direct REPLY discarded) */
		if (f->host < L->w->nhosts && L->data[f->host].fd >= 0) {
			pthread_mutex_lock(&L->data[f->host].wlock);
			data_break(&L->data[f->host]);
			pthread_mutex_unlock(&L->data[f->host].wlock);
		}
		/* after its last CLOCK on this link (clock.c CLH3); a host
		 * dropped under --on-host-failure continue is no longer waited
		 * for at all (CLH7), its keys are promoted at its backup host
		 * (backup.c BK3) and what was in flight there is routed again
		 * (to the backup host) instead of failing */
		if (f->host < L->w->nhosts) {
			if (note && n.code == PS__GONE_LOST) {
				ps__clock_host_lost(L->w, f->host);
				ps__bk_promote(L, f->host);
				sweep_inflight(L, f->host, true);
			} else {
				sweep_inflight(L, f->host, false);
				ps__clock_host_gone(L->w, f->host);
			}
		} else {
			sweep_inflight(L, f->host, false);
		}
		break;
	}
	default:
		break; /* nothing else is sent to a node */
	}
}

/* Do request ids a and b name the same request?  Its slot and seq (LK1):
 * the node byte is this node's in an id from the wire and absent from one
 * made here from the slot. */
static bool same_rpc(uint64_t a, uint64_t b)
{
	return (uint32_t)a == (uint32_t)b && ((a >> 32) & 0xffffff) == ((b >> 32) & 0xffffff);
}

/* Every request in flight to host (all hosts: -1) completes now, as no
 * reply will come for it: it fails with PS_EHOSTDOWN (LK4) or, when host
 * was dropped and reroute is set, each pull or push goes back to its group
 * for another round, which sends it to the host's backup host (BK3); calls
 * (MOVE) fail.  A push that the lost host applied and backed up before it
 * died is applied twice (BK4).  A direct REPLY to a swept request goes on,
 * discarded: its rows may be freed once it is done (LK7). */
static void sweep_inflight(struct ps__link *L, int host, bool reroute)
{
	for (uint32_t from = 0;;) {
		struct rpc r;
		pthread_mutex_lock(&L->lock);
		uint32_t slot = from;
		while (slot < L->cap && !(L->rpc[slot].busy && (host < 0 || L->rpc[slot].host == host)))
			slot++;
		bool end = slot >= L->cap; /* cap under the lock: rpc_take grows it */
		uint64_t req = end ? 0 : ((uint64_t)L->rpc[slot].seq << 32) | slot;
		pthread_mutex_unlock(&L->lock);
		if (end)
			return;
		if (ps__lk_rpc_claim(L, req, &r)) {
			for (int h = 0; h < L->w->nhosts; h++)
				if (L->data[h].direct_left && same_rpc(L->data[h].direct_req, req))
					L->data[h].dst = NULL;
			if (!reroute || r.raw || !r.pos) {
				ps__lk_group_done(r.g, PS_EHOSTDOWN);
			} else {
				for (uint32_t i = 0; i < r.n; i++)
					ps__lk_again(r.g, r.pos[i], -2);
				ps__lk_group_done(r.g, 0);
			}
		}
		from = slot + 1;
	}
}

/* The bridge is gone: fail everything in flight (LK4). */
static void link_broken(struct ps__link *L)
{
	/* release: pairs with the acquire loads of waiters */
	atomic_store_explicit(&L->dead, true, memory_order_release);
	sweep_inflight(L, -1, false);
	atomic_fetch_add_explicit(&L->bar_seq, 1, memory_order_release);
	ps__futex_wake(&L->bar_seq, INT_MAX, false);
	ps__clock_host_gone(L->w, -1); /* no other host's clock can reach us now */
}

/* Types a data connection carries (LK6): requests between nodes and their
 * answers; everything else stays on the bridge. */
static bool data_type(unsigned type)
{
	switch (type) {
	case PS__F_PULL:
	case PS__F_PUSH:
	case PS__F_RPULL:
	case PS__F_RPUSH:
	case PS__F_MOVE:
	case PS__F_BACKUP:
	case PS__F_REPLY:
	case PS__F_REDIRECT:
	case PS__F_MOVE_REPLY:
		return true;
	default:
		return false;
	}
}

/* Replies at least this large are received straight into the caller's
 * rows when those are contiguous (one copy less, LK7). */
#define DIRECT_MIN (64u << 10)

/*
 * Link thread: the frame buffered at p[0..n) is the start of a large
 * REPLY on a data connection, without checksum, status 0, answering a
 * pull of ours whose rows are contiguous: its buffered values are copied
 * to the rows and the rest will be received there (c->dst).  Returns the
 * bytes consumed, or 0 to leave the frame to the ordinary path.
 */
static size_t direct_start(struct ps__link *L, struct ps__conn *c, const uint8_t *p, size_t n)
{
	if (n < PS__FRAME_HDR + PS__REPLY_HDR || p[5] != (PS__F_REPLY | PS__FRAME_NOCRC) ||
	    ps__frame_parse(p, PS__FRAME_HDR, PS__FRAME_MAX, PS__CRC_DATA, false, &(struct ps__frame){0}) < 0)
		return 0;
	uint32_t len = ps__get32(p + 8), nvals = ps__get32(p + PS__FRAME_HDR + 4);
	uint64_t req = ps__get64(p + 16);
	if (len < DIRECT_MIN || ps__get32(p + PS__FRAME_HDR) != 0 || (uint64_t)len != PS__REPLY_HDR + 4ULL * nvals ||
	    ps__get16(p + 6) != c->host || n >= PS__FRAME_HDR + (size_t)len)
		return 0;
	uint32_t slot = (uint32_t)req, seq = (uint32_t)(req >> 32) & 0xffffff;
	uint8_t *dst = NULL;
	pthread_mutex_lock(&L->lock);
	const struct rpc *r = slot < L->cap ? &L->rpc[slot] : NULL;
	if (r && r->busy && r->seq == seq && r->out && !r->raw && r->host == c->host &&
	    (uint64_t)nvals == (uint64_t)r->n * r->value_len) {
		bool run = true;
		for (uint32_t i = 1; i < r->n && run; i++)
			run = r->pos[i] == r->pos[0] + i;
		if (run)
			dst = (uint8_t *)(r->out + (size_t)r->pos[0] * r->value_len);
	}
	pthread_mutex_unlock(&L->lock);
	if (!dst)
		return 0;
	/* the slot stays ours until this link thread claims it: only the link
	 * thread claims a request that was sent (the failure sweeps included,
	 * which turn c->dst off: sweep_inflight) */
	size_t have = n - PS__FRAME_HDR - PS__REPLY_HDR;
	memcpy(dst, p + PS__FRAME_HDR + PS__REPLY_HDR, have);
	c->dst = dst + have;
	c->direct_left = 4 * (size_t)nvals - have;
	c->direct_req = req;
	ps__filter_count_plain_reply(nvals); /* as ps__filter_reply_in would */
	return n;
}

/* One nonblocking recv on a connection: the bytes read (> 0), 0 when none
 * is there now, or why the connection is over (-ECONNRESET: closed by the
 * peer). */
static ssize_t recv_now(int fd, void *to, size_t n)
{
	ssize_t r = recv(fd, to, n, MSG_DONTWAIT);
	if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	if (r < 0)
		return -errno;
	return r == 0 ? -ECONNRESET : r;
}

/* recv_now on the link: descriptors passed with the bytes (SCM_RIGHTS,
 * DATAFD frames) are queued for their frames, oldest first. */
static ssize_t recv_link(struct ps__link *L, int fd, void *to, size_t n)
{
	struct iovec iov = {.iov_base = to, .iov_len = n};
	union {
		char buf[CMSG_SPACE(8 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
	ssize_t r = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	if (r < 0)
		return -errno;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (int i = 0; i < k; i++) {
			int got;
			memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof got);
			if (L->nfdq < (int)(sizeof L->fdq / sizeof L->fdq[0]))
				L->fdq[L->nfdq++] = got;
			else
				close(got);
		}
	}
	return r == 0 ? -ECONNRESET : r;
}

/* Link thread: DATAFD - node w->node's data connection to a joiner, made
 * by psrun's door after this node started (EL1). */
static void on_datafd(struct ps__link *L, const struct ps__frame *f)
{
	ps_world *w = L->w;
	int fd = -1;
	if (L->nfdq > 0) {
		fd = L->fdq[0];
		memmove(L->fdq, L->fdq + 1, (size_t)--L->nfdq * sizeof L->fdq[0]);
	}
	int h = f->len == 2 ? ps__get16(f->body) : -1;
	struct stat st;
	if (fd < 0 || h < 0 || h >= w->nhosts || h == w->host || L->data[h].fd >= 0 || L->data[h].closed ||
	    fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) {
		fprintf(stderr, "psmem: host %d node %d: a data connection from the bridge that is not one (host %d); "
			"ignored\n", w->host, w->node, h);
		if (fd >= 0)
			close(fd);
		return;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	struct ps__conn *c = &L->data[h];
	pthread_mutex_lock(&c->wlock);
	c->fd = fd;
	pthread_mutex_unlock(&c->wlock);
	/* release: senders that see it see fd (ps__lk_send) */
	atomic_store_explicit(&c->has_fd, true, memory_order_release);
}

/* Link thread: more of a direct REPLY (direct_start).  0 or why the
 * connection is over. */
static int direct_read(struct ps__link *L, struct ps__conn *c)
{
	if (!c->dst && ps__buf_reserve(&c->in, &c->in_cap, 64u << 10) != 0)
		return -ENOMEM;
	uint8_t *to = c->dst ? c->dst : c->in; /* discarding: into in */
	size_t want = c->dst ? c->direct_left : (c->direct_left < c->in_cap ? c->direct_left : c->in_cap);
	ssize_t r = recv_now(c->fd, to, want);
	if (r <= 0)
		return (int)r;
	c->direct_left -= (size_t)r;
	if (c->dst)
		c->dst += r;
	if (c->direct_left == 0) {
		struct rpc mine;
		if (c->dst && ps__lk_rpc_claim(L, c->direct_req, &mine))
			ps__lk_group_done(mine.g, 0); /* release: the rows (LK2) */
		c->dst = NULL;
	}
	return 0;
}

/* Link thread: reads what c has and dispatches every whole frame.  0, or
 * why the connection is over (-ECONNRESET: closed by the peer). */
static int conn_read(struct ps__link *L, struct ps__conn *c)
{
	/* acquire: as in ps__lk_send.  A data connection broken (data_break:
	 * a send failed, or ABORT for its host) serves nothing more, not even
	 * what its socket still holds: it ends here (data_lost) */
	if (c->data && atomic_load_explicit(&c->dead, memory_order_acquire))
		return PS_EHOSTDOWN;
	if (c->direct_left)
		return direct_read(L, c);
	/* room for the frame being received (its header says how big), at
	 * least 256 KiB: one allocation for a large frame */
	size_t want = c->in_len + (256u << 10);
	if (c->in_len >= PS__FRAME_HDR && want < PS__FRAME_HDR + (size_t)ps__get32(c->in + 8))
		want = PS__FRAME_HDR + (size_t)ps__get32(c->in + 8);
	if (ps__buf_reserve(&c->in, &c->in_cap, want) != 0 && c->in_cap == c->in_len)
		return -ENOMEM; /* no room at all: nothing can be read */
	ssize_t r = c == &L->link ? recv_link(L, c->fd, c->in + c->in_len, c->in_cap - c->in_len)
				  : recv_now(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
	if (r <= 0)
		return (int)r;
	c->in_len += (size_t)r;
	size_t at = 0;
	long n;
	struct ps__frame f;
	int rc = 0;
	L->cur = c;
	while ((n = ps__frame_parse(c->in + at, c->in_len - at, PS__FRAME_MAX,
				    c->data ? PS__CRC_DATA : PS__CRC_SKIP, false, &f)) > 0) {
		/* a data connection speaks for its peer only, and only data */
		if (c->data && (f.host != c->host || !data_type(f.type))) {
			n = PS_EFRAME_TYPE;
			break;
		}
		dispatch(L, &f);
		at += (size_t)n;
	}
	if (n == 0 && c->data && at < c->in_len)
		at += direct_start(L, c, c->in + at, c->in_len - at);
	if (n < 0) {
		if (c->data)
			fprintf(stderr, "psmem: host %d node %d: malformed frame on the data connection to host %d: %s\n",
				L->w->host, L->w->node, c->host, ps_strerror((int)n));
		else
			fprintf(stderr, "psmem: node %d: malformed frame on the bridge link: %s\n", L->w->node,
				ps_strerror((int)n));
		rc = (int)n;
	}
	memmove(c->in, c->in + at, c->in_len - at);
	c->in_len -= at;
	if (c->in_len == 0 && !c->direct_left && c->in_cap > SHRINK_OVER) { /* drained after a burst */
		free(c->in);
		c->in = NULL;
		c->in_cap = 0;
	}
	return rc;
}

/* Link thread: node w->node of host c->host is no longer reachable here:
 * what went there fails (LK4); after this node's final barrier that is
 * the normal end of the job and nothing is in flight. */
static void data_lost(struct ps__link *L, struct ps__conn *c, int why)
{
	if (ps__drain_conn_end(L, c))
		return; /* this host is leaving: the normal end (drain.c DR2) */
	c->closed = true;
	pthread_mutex_lock(&c->wlock);
	/* release: a sender that sees dead registered nothing the sweep below
	 * misses; one that does not see it was swept */
	atomic_store_explicit(&c->dead, true, memory_order_release);
	c->out_at = c->out_len = 0;
	pthread_mutex_unlock(&c->wlock);
	shutdown(c->fd, SHUT_RDWR);
	/* relaxed: our own store, or the caller's before its final barrier */
	bool framing = why <= PS_EFRAME_TRUNC && why >= PS_EFRAME_BODY; /* conn_read said why */
	/* acquire: ps__drain_left's store, on this thread */
	bool left = atomic_load_explicit(&c->left, memory_order_acquire);
	/* a host that left by agreement (EL7) closes its connections after
	 * its drain: not news, even if its LEFT has not come yet (relaxed:
	 * only the message depends on it) */
	bool quiet = left || (c->host < PS__MAX_CLOCK_HOSTS &&
			      atomic_load_explicit(&L->w->seg.hdr->clocks.hmember[c->host], memory_order_relaxed) ==
				      PS__HOST_LEFT);
	if (!atomic_load_explicit(&L->final, memory_order_relaxed) && !framing && !quiet)
		fprintf(stderr, "psmem: host %d node %d: data connection to host %d ended: %s\n", L->w->host,
			L->w->node, c->host, why == -ECONNRESET ? "closed by the peer" : ps_strerror(why));
	/* --on-host-failure continue (backups on): the bridge's verdict
	 * decides - ABORT(PS__GONE_LOST) routes them again to the backup
	 * host, any other ABORT fails them - so they are not failed here */
	if (left) /* it left: what it did not answer was not done there (DR2) */
		sweep_inflight(L, c->host, true);
	else if (!L->bk)
		sweep_inflight(L, c->host, false);
}

static void *link_main(void *arg)
{
	struct ps__link *L = arg;
	const int H = L->w->nhosts;
	ps__thread_enter(L->w); /* executes requests: a reader of this node */
	struct pollfd *p = calloc((size_t)H + 2, sizeof *p);
	int *who = calloc((size_t)H + 2, sizeof *who);
	for (bool up = p && who; up;) {
		int n = 0;
		p[n++] = (struct pollfd){.fd = L->link.fd, .events = POLLIN};
		p[n++] = (struct pollfd){.fd = L->wake_fd, .events = POLLIN};
		for (int h = 0; h < H; h++) {
			struct ps__conn *c = &L->data[h];
			if (c->fd < 0 || c->closed)
				continue;
			who[n] = h;
			p[n++] = (struct pollfd){.fd = c->fd, .events = (short)(POLLIN | (data_pending(c) ? POLLOUT : 0))};
		}
		if (poll(p, (nfds_t)n, ps__bk_timeout_ms(L)) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents & POLLIN)
			(void)!read(L->wake_fd, &(uint64_t){0}, sizeof(uint64_t));
		for (int k = 2; k < n; k++) {
			struct ps__conn *c = &L->data[who[k]];
			if (p[k].revents & POLLOUT)
				data_flush(c);
			if (p[k].revents & (POLLIN | POLLHUP | POLLERR)) {
				int rc = conn_read(L, c);
				if (rc)
					data_lost(L, c, rc);
			}
		}
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR))
			up = conn_read(L, &L->link) == 0;
		if (up)
			ps__bk_tick(L);
	}
	free(p);
	free(who);
	link_broken(L);
	return NULL;
}

/* PSMEM_DATA_FDS ("HOST:FD,..."): this node's data connections, made by
 * psrun.  0, or PS_EHOSTDOWN for a list that is not one (named). */
static int data_fds(struct ps__link *L, const char *e)
{
	ps_world *w = L->w;
	/* first every listed socket close-on-exec, even those after a bad
	 * entry: none may leak into a child (a number that is no socket, as
	 * 0 in a garbled list, is left alone) */
	for (const char *q = e ? strchr(e, ':') : NULL; q; q = strchr(q + 1, ':')) {
		char *end;
		long fd = strtol(q + 1, &end, 10);
		struct stat st;
		if (end != q + 1 && fd >= 0 && fd <= INT_MAX && fstat((int)fd, &st) == 0 && S_ISSOCK(st.st_mode))
			fcntl((int)fd, F_SETFD, FD_CLOEXEC);
	}
	while (e && *e) {
		char *end;
		long h = strtol(e, &end, 10), fd = -1;
		if (end != e && *end == ':')
			fd = strtol(end + 1, &end, 10);
		struct stat st;
		if (fd < 0 || fd > INT_MAX || h < 0 || h >= w->nhosts || h == w->host || (*end && *end != ',') ||
		    L->data[h].fd >= 0 || fstat((int)fd, &st) != 0 || !S_ISSOCK(st.st_mode)) {
			fprintf(stderr, "psmem: node %d: PSMEM_DATA_FDS: bad entry at '%s' (want HOST:FD,... of "
				"sockets, one per other host)\n", w->node, e);
			return PS_EHOSTDOWN;
		}
		fcntl((int)fd, F_SETFL, fcntl((int)fd, F_GETFL) | O_NONBLOCK);
		L->data[h].fd = (int)fd;
		/* relaxed: before the link thread and any sender exist */
		atomic_store_explicit(&L->data[h].has_fd, true, memory_order_relaxed);
		e = *end ? end + 1 : end;
	}
	return 0;
}

static void conn_init(struct ps__conn *c, int fd, int host, bool data)
{
	c->fd = fd;
	c->host = host;
	c->data = data;
	atomic_init(&c->dead, false);
	atomic_init(&c->has_fd, fd >= 0);
	pthread_mutex_init(&c->wlock, NULL);
}

static void conn_free(struct ps__conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c->in);
	free(c->out);
	pthread_mutex_destroy(&c->wlock);
}

int ps__link_start(ps_world *w)
{
	const char *e = getenv("PSMEM_LINK_FD");
	char *end;
	long fd = e ? strtol(e, &end, 10) : -1;
	bool bad_end = e && *end;
	/* adopted (or refused) once: a later ps_init, or a child, must not
	 * take whatever has that number then */
	unsetenv("PSMEM_LINK_FD");
	struct stat st;
	if (!e || bad_end || fd < 0 || fd > INT_MAX || fstat((int)fd, &st) != 0 || !S_ISSOCK(st.st_mode))
		return PS_EHOSTDOWN; /* a multi-host segment without its link */
	fcntl((int)fd, F_SETFD, FD_CLOEXEC);
	struct ps__link *L = calloc(1, sizeof *L);
	struct ps__conn *data = calloc((size_t)w->nhosts, sizeof *data);
	int wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (L)
		L->filt = ps__filter_new();
	if (!L || !L->filt || !data || wake < 0) {
		if (L)
			ps__filter_free(L->filt);
		free(L);
		free(data);
		if (wake >= 0)
			close(wake);
		unsetenv("PSMEM_DATA_FDS");
		return -ENOMEM;
	}
	L->w = w;
	conn_init(&L->link, (int)fd, -1, false);
	L->data = data;
	for (int h = 0; h < w->nhosts; h++)
		conn_init(&data[h], -1, h, true);
	L->wake_fd = wake;
	int rc = data_fds(L, getenv("PSMEM_DATA_FDS"));
	unsetenv("PSMEM_DATA_FDS"); /* as PSMEM_LINK_FD */
	if (rc == 0)
		rc = ps__bk_init(L);
	if (rc) {
		for (int h = 0; h < w->nhosts; h++)
			conn_free(&data[h]);
		pthread_mutex_destroy(&L->link.wlock);
		ps__filter_free(L->filt);
		close(wake);
		free(data);
		free(L);
		return rc;
	}
	L->free_head = UINT32_MAX;
	pthread_mutex_init(&L->lock, NULL);
	pthread_mutex_init(&L->bar_lock, NULL);
	pthread_mutex_init(&L->wb_lock, NULL);
	pthread_mutex_init(&L->ckpt_lock, NULL);
	pthread_mutex_init(&L->sync_lock, NULL);
	L->ckpt_host = -1;
	w->link = L;
	/* plain stores, as w->link: ps_init has not returned, so no table
	 * exists and no thread of this process calls through w->net yet */
	w->net = &ps__link_ops;
	if (pthread_create(&L->thread, NULL, link_main, L) != 0) {
		w->link = NULL;
		w->net = NULL;
		for (int h = 0; h < w->nhosts; h++)
			conn_free(&data[h]);
		close(wake);
		free(data);
		ps__filter_free(L->filt);
		free(L);
		return -EAGAIN;
	}
	return 0;
}

int ps__link_stop(ps_world *w)
{
	struct ps__link *L = w->link;
	if (!L)
		return 0;
	int rc = 0;
	if (w->left) /* this host left by agreement at ps_sync_hosts (EL7) */
		ps__link_leave(w);
	/* relaxed: set by this thread (ps__link_leave) */
	if (atomic_load_explicit(&L->leaving, memory_order_relaxed)) {
		/* this host leaves: its keys go to the others (drain.c), then
		 * LEFT; the others drop it once every node of it said so */
		rc = ps__drain_host(w);
		atomic_store_explicit(&L->final, true, memory_order_relaxed);
		if (rc == 0) {
			uint8_t f[PS__FRAME_HDR];
			ps__frame_seal(f, PS__F_LEFT, (uint16_t)w->host, 0, 0);
			if (link_write(L, f, sizeof f) == 0)
				ps__drain_wait_ends(L);
		}
	} else {
		/* every node of every host passes this before any leaves, so
		 * no request can reach a node that is gone */
		atomic_store_explicit(&L->final, true, memory_order_relaxed);
		link_barrier(w, TAG_FINAL, PS__BAR_FINAL);
	}
	shutdown(L->link.fd, SHUT_RDWR);
	pthread_join(L->thread, NULL);
	w->link = NULL;
	w->net = NULL;
	conn_free(&L->link);
	for (int h = 0; h < w->nhosts; h++)
		conn_free(&L->data[h]);
	free(L->data);
	for (int i = 0; i < L->nfdq; i++)
		close(L->fdq[i]);
	close(L->wake_fd);
	free(L->rpc);
	free(L->scratch);
	ps__bk_free(L);
	ps__filter_free(L->filt);
	pthread_mutex_destroy(&L->lock);
	pthread_mutex_destroy(&L->bar_lock);
	pthread_mutex_destroy(&L->wb_lock);
	pthread_mutex_destroy(&L->ckpt_lock);
	pthread_mutex_destroy(&L->sync_lock);
	free(L);
	return rc;
}

/* ------------------------------------------------------------ the net layer's table */

static int replica_start(ps_table *t, const ps_key *keys, const uint16_t *hosts, size_t n, float *out,
			 const float *in, bool push, struct ps__rgroup **g)
{
	/* a lost holder's primaries are at its backup host now (backup.c
	 * BK12); this host's own promotion not done yet: try again later */
	ps_world *w = t->w;
	uint16_t *to = NULL;
	for (size_t i = 0; i < n; i++) {
		if (!ps__host_lost(w, hosts[i]))
			continue;
		int b = ps__backup_host(w, hosts[i]);
		if (b < 0 || b == w->host) {
			ps__free(w, to);
			*g = NULL;
			return PS_EHOSTDOWN;
		}
		if (!to && (to = ps__alloc(w, n * sizeof *to)) != NULL)
			memcpy(to, hosts, n * sizeof *to);
		if (!to) {
			*g = NULL;
			return -ENOMEM;
		}
		to[i] = (uint16_t)b;
	}
	int rc = ps__remote_start_to(t, keys, to ? to : hosts, n, out, in, push ? PS__F_RPUSH : PS__F_RPULL, g);
	ps__free(w, to);
	return rc;
}

const struct ps__net_ops ps__link_ops = {
	.route_batch = ps__route_batch,
	.remote_wait = ps__remote_wait,
	.migrate_in = ps__migrate_in,
	.replica_start = replica_start,
	.table_created = ps__link_table_created,
	.barrier_workers = ps__link_barrier_workers,
	.sync_workers = ps__link_sync_workers,
	.send_clock = ps__link_send_clock,
	.link_down = ps__link_down,
	.barrier_min = ps__link_barrier_min,
	.ckpt_send = ps__link_ckpt_send,
	.ckpt_take = ps__link_ckpt_take,
};
