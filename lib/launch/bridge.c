/*
 * bridge.c - the bridge of one host: psrun's event loop between its nodes
 * and the other hosts.  It runs in psrun (the process that owns the job's
 * sockets and outlives the nodes), on one thread of its own
 * (bin/psrun_hosts.c) waiting on one epoll set.  It never touches the
 * segment: requests are executed by the nodes (bridge_link.c), so every
 * access to shared memory stays inside a node's read-side sections and
 * grace periods.
 *
 *   node i --link (Unix stream socket, inherited fd)--> bridge
 *   bridge --one TCP connection per peer host (authenticated)--> bridge
 *
 * Routing (the frame's host field, bridge.h):
 *   link -> bridge  PULL/PUSH/REPLY carry the destination host; forwarded
 *                   to that peer with the field rewritten to our rank.
 *   peer -> bridge  the field must be the peer's rank.  A request goes to
 *                   node (source node mod nodes) - the source node is the
 *                   top byte of the request id - so one node's requests are
 *                   executed in order by one executor; a reply goes to the
 *                   node in its request id.
 * Frames are forwarded whole (bodies are not re-encoded); requests to many
 * keys are already batched per destination host by the node, and the
 * output buffer of a connection coalesces frames into few writes.
 *
 * Clocks across hosts (CLOCK): a node's CLOCK goes to every peer; a peer's
 * to every local node (clock.c does the rest in the segment).
 *
 * Barriers across hosts (BARRIER / RELEASE): generation g completes when
 * every local node and every peer host has arrived at g; the tags must
 * agree (PS_EMISMATCH otherwise).  A peer host is at most one generation
 * ahead (it cannot pass g+1 without our arrival at g+1).  A generation whose
 * arrivals carry PS__BAR_MIN does not compare tags: it releases the minimum
 * of all of them (checkpoint.c's agreements across hosts); a participant
 * that sets the flag when another does not makes it PS_EMISMATCH.
 *
 * CKPT (a checkpoint asked for on a host, checkpoint.c): from a node, sent
 * to every peer; from a peer, given to local node 0.  Both ride the same
 * ordered streams as the BARRIER frames that follow them, so node 0 of
 * every host has the path before the poll's barrier releases it.
 *
 * Liveness: a peer that closes without BYE, resets, sends anything
 * malformed or out of protocol, or is silent for PS__PEER_TIMEOUT_MS
 * (heartbeats every PS__HEARTBEAT_MS) is dead: its connection is closed
 * with a logged reason and the job stops (ps__bridge_step returns
 * PS_EHOSTDOWN).  At the end psrun says BYE (or ABORT with a reason) to
 * every peer and waits for theirs.
 *
 * Losing a host (psrun --on-host-failure continue, conf.drop_failed): a
 * peer that dies as above, or that sends ABORT (it is failing), is
 * *dropped* instead: its connection is closed, every local node gets
 * ABORT(host) with code PS__GONE_LOST (its requests in flight there fail,
 * its clock no longer counts: clock.c CLH7), and the job goes on.  Barriers
 * then count the hosts present (BR-L1: a dropped peer is neither waited
 * for nor a failure; one that said BYE still is PS_EHOSTDOWN, as before).
 * A peer that had already sent its BARRIER(g) for the open generation is
 * forgotten with it: the generation completes on the survivors' arrivals.
 * Recovery time = from the drop to the first barrier released after it.
 * (BR-Q) Only a side that keeps a quorum drops: see quorum() below.
 * (BR-W) A failed write is handled by the step, never inside the send:
 * see write_failed() below.
 *
 * Leaving (BR-L2, net/drain.c): each node of a host that leaves sends LEFT
 * on its link once its keys are handed over; when all have, the bridge
 * sends LEFT to every peer and owes no other goodbye.  A peer's bridge
 * drops the host on its LEFT in either mode (dropped, as BR-L1: barriers
 * no longer wait for it) and gives its nodes ABORT(host, PS__GONE_LEFT),
 * which promotes nothing.  The leaving bridge then takes its peers' EOFs
 * as the normal end and tells its own nodes nothing (their data
 * connections end when the peers' nodes close them, DR2).
 *
 * Elastic jobs (psrun --elastic / --join; docs/DESIGN.md "Joining and
 * leaving", EL1-EL8 there): peers are *members* (counted in barriers) or
 * joiners still *pending* (connected by psrun's door, ps__bridge_add_peer;
 * READY once all their nodes are in their first ps_sync_hosts).  A SYNC
 * generation is a barrier whose arrivals carry membership: each member's
 * arrival lists the joiners it holds pending and whether it leaves; when
 * it completes, every member computes the same result from the same
 * arrivals (admitted = pending on every member, leaving = those that
 * asked), gives it to its nodes before the RELEASE and to each admitted
 * joiner, whose bridge continues the members' generations from there.
 * Ordinary barriers never change membership.  A joiner not admitted yet,
 * or a host that left by agreement, is never a failure of the job.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bridge.h"
#include "util.h"

#define READ_CHUNK (1u << 20)

enum conn_kind { K_PEER = 0, K_LINK = 1 };

struct conn {
	int fd;                   /* -1 once closed */
	enum conn_kind kind;
	int idx;                  /* peer rank or node index */
	bool said_bye;            /* peer: BYE or ABORT received, EOF expected */
	bool eof;                 /* peer: its EOF came; kept open to say ours */
	bool left;                /* peer: our nodes were told it is gone */
	bool dropped;             /* peer: lost under drop_failed (BR-L1), or left */
	bool gone_left;           /* peer: said LEFT: it left the job (BR-L2) */
	bool drained;             /* link: the node said LEFT (its keys are handed over) */
	bool final;               /* link: the node passed its final barrier */
	bool want_out;            /* EPOLLOUT registered */
	int werr;                 /* a write failed with this errno: handled by
				   * ps__bridge_step (BR-W), frames to c dropped */
	uint8_t *in;
	size_t in_len, in_cap;
	uint8_t *out;
	size_t out_off, out_len, out_cap;
	uint64_t last_recv, last_send;
	uint64_t pgen;            /* peer: last barrier generation it arrived at */
	uint64_t ptag[2];         /* peer: its tag for generation g, at [g & 1] */
	bool pmin[2];             /* peer: PS__BAR_MIN for generation g, at [g & 1] */
	/* elastic (EL1-EL8) */
	bool member;              /* peer: counted in barriers (EL1) */
	bool was_member;          /* peer: has been a member (its loss is news to the nodes) */
	bool left_job;            /* peer: left by agreement (EL7) */
	bool ready;               /* peer, not a member: in its first ps_sync_hosts (READY) */
	uint64_t ptables;         /* ... the hash of its tables it sent with READY */
	bool refused;             /* ... its tables differ: told so, never admitted */
	bool told_member;         /* a joiner's peer that the WELCOME listed as a member */
	int data_in;              /* our nodes' data connections to it: passed to them
				   * (DATAFD), or all of them for a peer known at start */
	bool psync[2];            /* peer: its arrival at g was a SYNC, at [g & 1] */
	bool pleave[2];           /* ... asking to leave */
	uint64_t ppend[2];        /* ... the joiners it held pending (bit per rank) */
	uint64_t pclock[2], pcfg[2]; /* ... its slowest clock and bound */
};

struct ps__bridge {
	int rank, hosts, nodes;
	int ep;
	FILE *log;
	struct conn *peer;        /* [hosts]; peer[rank].fd = -1 */
	struct conn *link;        /* [nodes] */
	char (*name)[96];         /* [hosts]: "host 1 (10.0.0.2:4000)" */
	/* barrier being collected */
	uint64_t gen;
	int arrived;              /* local nodes arrived at gen */
	bool werr;                /* some connection's write failed (BR-W): write_failures has work */
	uint64_t tag;
	bool tag_differs;
	bool min;                 /* PS__BAR_MIN: tag is the minimum so far */
	bool sent;                /* our BARRIER(gen) went to the peers */
	/* elastic (EL1-EL8) */
	bool elastic;
	int home;                 /* initial host count (the ranks that home keys) */
	bool member;              /* this host is a member (a joiner: once admitted) */
	bool left;                /* this host left by agreement: no more barriers */
	bool ready_sent;          /* joiner: READY sent for its first SYNC */
	bool leave_req;           /* this host asks to leave at its next SYNC */
	bool sync;                /* the arrivals at gen are SYNCs (ps_sync_hosts) */
	uint64_t sync_clock, sync_cfg; /* min / max over the local nodes' arrivals */
	uint64_t sync_tables;     /* the local nodes' tables hash (EL2; all equal) */
	bool sent_leave;          /* our SYNC(gen) asked to leave */
	uint64_t sent_pending;    /* the joiners our SYNC(gen) listed */
	struct ps__peer_addr *addr; /* [hosts]: bridge addresses (joiners' as told) */
	/* end of the job */
	bool stop;                /* the job must stop (a peer failed) */
	bool done;                /* BYE / ABORT sent: our nodes are gone */
	bool aborted;             /* ABORT sent: peers' echoes are not news */
	bool left_sent;           /* LEFT sent: this host left the job (BR-L2) */
	char why[PS__NOTE_MAX];    /* the first peer failure, for our own ABORT */
	uint64_t timeout_ns;      /* silence that means death */
	bool drop_failed;         /* --on-host-failure continue */
	uint64_t lost_at;         /* ns of the last drop not yet recovered; 0 none */
	struct ps__bridge_stats st;
};

static void blog(struct ps__bridge *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One write(2) per line, no stdio lock: psrun may fork while the bridge
 * thread logs, and the child must not inherit a held FILE lock. */
static void blog(struct ps__bridge *b, const char *fmt, ...)
{
	if (!b->log)
		return;
	char line[PS__NOTE_MAX + 256];
	int n = snprintf(line, sizeof line, "psrun: host %d: ", b->rank);
	va_list ap;
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof line - 2)
		n = (int)sizeof line - 2;
	line[n++] = '\n';
	(void)!write(fileno(b->log), line, (size_t)n);
}

static void set_out_interest(struct ps__bridge *b, struct conn *c, bool want)
{
	if (c->want_out == want || c->fd < 0)
		return;
	struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0),
				 .data.u64 = ((uint64_t)c->kind << 32) | (uint32_t)c->idx};
	epoll_ctl(b->ep, EPOLL_CTL_MOD, c->fd, &ev);
	c->want_out = want;
}

static void send_small(struct ps__bridge *b, struct conn *c, unsigned type, uint16_t host, uint64_t req,
		       const uint8_t *body, uint32_t len);

/* The peer will answer nothing more (goodbye, abort or death): the
 * requests our nodes sent there fail now rather than wait for ever.
 * Replies it sent before its goodbye came before it (one TCP stream). */
static void peer_left(struct ps__bridge *b, struct conn *c)
{
	if (c->left)
		return;
	c->left = true;
	/* (BR-L2) we left: peers close on our LEFT, and our nodes wait until
	 * each peer's node has closed its data connection (net/drain.c DR2);
	 * an ABORT would close them first, before the peer read our answers */
	if (b->left_sent)
		return;
	/* a joiner never admitted: our nodes never knew it (EL1); but a
	 * member our WELCOME listed that leaves while we are pending is in
	 * our nodes' words: its LEFT reaches them (EL7) */
	if (!c->was_member && !(c->gone_left && c->told_member))
		return;
	uint8_t body[6 + 32];
	uint32_t len = c->gone_left ? ps__note_enc(body, PS__GONE_LEFT, "host left, job goes on")
		       : c->dropped ? ps__note_enc(body, PS__GONE_LOST, "host lost, job goes on")
				    : ps__note_enc(body, PS_EHOSTDOWN, "host gone");
	for (int i = 0; i < b->nodes; i++)
		send_small(b, &b->link[i], PS__F_ABORT, (uint16_t)c->idx, 0, body, len);
}

static void conn_close(struct ps__bridge *b, struct conn *c)
{
	if (c->fd < 0)
		return;
	epoll_ctl(b->ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	c->in_len = c->out_len = c->out_off = 0;
	c->want_out = false;
	c->werr = 0;
	if (c->kind == K_PEER)
		peer_left(b, c);
}

static void peer_failed(struct ps__bridge *b, struct conn *c, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void barrier_progress(struct ps__bridge *b);

/*
 * (BR-W) A write to c failed with err: the peer died, or the node's link
 * broke.  Only noted here: the failure is handled by write_failures(),
 * which ps__bridge_step calls between events, never inside a send.  The
 * sender may be in the middle of a loop over connections (barrier_progress
 * sending this host's arrival to every peer, release() to every node), and
 * handling a peer's failure there drops it and makes the barrier progress
 * again inside that loop: the arrival went twice to the peers after the
 * dead one, which closed on "barrier out of sequence" (tests/
 * test_bridge_step.c).  What was queued for c is dropped with it.
 */
static void write_failed(struct ps__bridge *b, struct conn *c, int err)
{
	if (!c->werr)
		c->werr = err ? err : EPIPE;
	b->werr = true;
	c->out_off = c->out_len = 0;
	set_out_interest(b, c, false);
}

/* BR-W: each connection whose write failed, handled now (dropped, or the
 * job stops; a node's link closed). */
static void write_failures(struct ps__bridge *b)
{
	if (!b->werr) /* the common case: one test per event, not one per connection */
		return;
	b->werr = false; /* a failure noted while these are handled sets it again */
	for (int p = 0; p < b->hosts; p++) {
		struct conn *c = &b->peer[p];
		if (c->fd >= 0 && c->werr)
			peer_failed(b, c, "died: %s", strerror(c->werr));
	}
	for (int i = 0; i < b->nodes; i++) {
		struct conn *c = &b->link[i];
		if (c->fd >= 0 && c->werr) {
			conn_close(b, c);
			barrier_progress(b); /* a node gone without its final barrier fails it */
		}
	}
}

/* Writes what is buffered; false if the connection broke (BR-W: noted,
 * closed by the next step). */
static bool flush(struct ps__bridge *b, struct conn *c)
{
	if (c->werr)
		return false;
	while (c->fd >= 0 && c->out_off < c->out_len) {
		ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0) {
			c->out_off += (size_t)w;
			if (c->kind == K_PEER)
				b->st.wire_bytes_out += (uint64_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			set_out_interest(b, c, true);
			return true;
		}
		write_failed(b, c, errno);
		return false;
	}
	c->out_off = c->out_len = 0;
	set_out_interest(b, c, false);
	if (b->done && c->kind == K_PEER && c->fd >= 0)
		shutdown(c->fd, SHUT_WR); /* all said: the peer may see our EOF */
	return true;
}

/*
 * Sends a frame to c, its routing field rewritten to host (>= 0).  frame
 * lies in a buffer of the bridge (an input buffer, or a small frame on the
 * stack), so the field is rewritten in place.  With nothing queued before
 * it, the frame goes straight to the socket and only what the socket does
 * not take is copied to the output buffer: a large frame crosses the
 * bridge with one copy fewer.
 */
static void enqueue(struct ps__bridge *b, struct conn *c, uint8_t *frame, size_t size, int host)
{
	if (c->fd < 0 || c->werr)
		return;
	if (host >= 0)
		ps__frame_set_host(frame, (uint16_t)host);
	c->last_send = ps__now_ns();
	if (c->out_off == c->out_len) {
		c->out_off = c->out_len = 0;
		ssize_t w;
		while ((w = send(c->fd, frame, size, MSG_NOSIGNAL | MSG_DONTWAIT)) < 0 && errno == EINTR)
			;
		if (w > 0) {
			if (c->kind == K_PEER)
				b->st.wire_bytes_out += (uint64_t)w;
			frame += w;
			size -= (size_t)w;
		}
		if (size == 0)
			return;
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			write_failed(b, c, errno);
			return;
		}
	}
	if (ps__buf_reserve(&c->out, &c->out_cap, c->out_len + size) != 0) {
		blog(b, "out of memory buffering a frame for %s %d", c->kind == K_PEER ? "host" : "node", c->idx);
		b->stop = true;
		return;
	}
	memcpy(c->out + c->out_len, frame, size);
	c->out_len += size;
	set_out_interest(b, c, true);
}

/* Builds and queues a small frame of our own. */
static void send_small(struct ps__bridge *b, struct conn *c, unsigned type, uint16_t host, uint64_t req,
		       const uint8_t *body, uint32_t len)
{
	uint8_t f[PS__FRAME_HDR + 8 + PS__NOTE_MAX];
	if (len)
		memcpy(f + PS__FRAME_HDR, body, len);
	ps__frame_seal(f, type, host, req, len);
	enqueue(b, c, f, PS__FRAME_HDR + len, -1);
}

static void reply_error(struct ps__bridge *b, struct conn *c, uint16_t host, uint64_t req, int code)
{
	uint8_t body[PS__REPLY_HDR];
	ps__reply_enc_hdr(body, code, 0);
	send_small(b, c, PS__F_REPLY, host, req, body, sizeof body);
}

/* ------------------------------------------------------------ barriers */

static bool peer_gone(const struct conn *c)
{
	return c->fd < 0 || c->said_bye;
}

/* Hosts present: this one and every member peer not dropped. */
static int alive(const struct ps__bridge *b)
{
	int n = 1;
	for (int p = 0; p < b->hosts; p++)
		n += p != b->rank && b->peer[p].member && !b->peer[p].dropped;
	return n;
}

/* Releases generation gen with status to every local node that is there. */
static void release(struct ps__bridge *b, int status)
{
	struct ps__barrier_msg m = {.gen = b->gen, .tag = b->tag, .status = status};
	uint8_t body[PS__BARRIER_SIZE];
	ps__barrier_enc(body, &m);
	for (int i = 0; i < b->nodes; i++)
		send_small(b, &b->link[i], PS__F_RELEASE, (uint16_t)b->rank, 0, body, sizeof body);
	b->gen++;
	b->arrived = 0;
	b->tag_differs = false;
	b->min = false;
	b->sent = false;
	b->sync = false;
	b->ready_sent = false;
	b->sent_pending = 0;
	b->sent_leave = false;
	b->st.barriers++;
	if (b->lost_at && status == 0) {
		b->st.last_recovery_ms = (double)(ps__now_ns() - b->lost_at) / 1e6;
		blog(b, "recovered: barrier over the %d hosts left released %.1f ms after the loss", alive(b),
		     b->st.last_recovery_ms);
		b->lost_at = 0;
	}
}

static void send_sync_result(struct ps__bridge *b, uint64_t adm, uint64_t leaving);

/* Completes the current generation if it can. */
static void barrier_progress(struct ps__bridge *b)
{
	if (b->arrived == 0)
		return;
	/* a node that left without its final barrier can never arrive */
	for (int i = 0; i < b->nodes; i++)
		if (b->link[i].fd < 0 && !b->link[i].final) {
			release(b, PS_EDEAD);
			return;
		}
	if (b->arrived < b->nodes)
		return;
	if (b->left) { /* EL7: a host that left takes part in nothing more */
		release(b, PS_EHOSTDOWN);
		return;
	}
	if (!b->member) {
		/* a joiner (EL3): its first collective over hosts must be
		 * ps_sync_hosts; it says READY and waits to be admitted */
		if (!b->sync || b->tag_differs) {
			blog(b, "a joining host's first collective over hosts must be ps_sync_hosts (every node, "
			     "same epoch)");
			release(b, PS_EMISMATCH);
			return;
		}
		if (!b->ready_sent) {
			uint8_t body[8];
			ps__put64(body, b->sync_tables);
			for (int p = 0; p < b->hosts; p++)
				if (p != b->rank && b->peer[p].fd >= 0 && !peer_gone(&b->peer[p]))
					send_small(b, &b->peer[p], PS__F_READY, (uint16_t)b->rank, 0, body, 8);
			b->ready_sent = true;
		}
		return;
	}
	if (!b->sent) {
		if (b->sync) {
			/* EL3: our arrival carries the joiners we hold pending
			 * and whether we leave */
			/* EL7: not while a host that left still drains (agreed,
			 * its LEFT not here yet): its keys may be coming here,
			 * or go where ours would; the request waits, every
			 * member sees the same flag (ours) */
			bool draining = false;
			for (int p = 0; p < b->hosts; p++)
				draining |= p != b->rank && b->peer[p].left_job && !peer_gone(&b->peer[p]);
			const bool ask = b->leave_req && !draining;
			struct ps__sync_msg m = {.gen = b->gen, .epoch = b->tag, .clock = b->sync_clock,
						 .cfg = b->sync_cfg, .flags = ask ? PS__SYNC_LEAVE : 0};
			b->sent_pending = 0;
			for (int p = 0; p < b->hosts && p < 64; p++) {
				struct conn *c = &b->peer[p];
				if (p == b->rank || c->fd < 0 || c->member || !c->ready || c->refused || peer_gone(c))
					continue;
				/* EL1: every node has its data connection first, so
				 * nothing it sends there after the admission goes
				 * through the bridge before it (LK3) */
				if (c->data_in < b->nodes)
					continue;
				if (c->ptables != b->sync_tables) {
					/* EL2: it created other tables than ours */
					char why[200];
					snprintf(why, sizeof why, "its tables differ from the job's (ps_table_create "
						 "calls before its first ps_sync_hosts must be the job's): not admitted");
					blog(b, "%s: %s", b->name[p], why);
					uint8_t note[6 + PS__NOTE_MAX];
					uint32_t nl = ps__note_enc(note, PS_EMISMATCH, why);
					send_small(b, c, PS__F_ABORT, (uint16_t)b->rank, 0, note, nl);
					c->refused = true;
					continue;
				}
				b->sent_pending |= 1ULL << p;
				m.a[m.na++] = (uint16_t)p;
			}
			b->sent_leave = ask;
			uint8_t body[PS__SYNC_MAX];
			uint32_t len = ps__sync_enc(body, &m);
			uint8_t f[PS__FRAME_HDR + PS__SYNC_MAX];
			memcpy(f + PS__FRAME_HDR, body, len);
			ps__frame_seal(f, PS__F_SYNC, (uint16_t)b->rank, 0, len);
			for (int p = 0; p < b->hosts; p++)
				if (p != b->rank && b->peer[p].member && !peer_gone(&b->peer[p]))
					enqueue(b, &b->peer[p], f, PS__FRAME_HDR + len, -1);
		} else {
			struct ps__barrier_msg m = {.gen = b->gen, .tag = b->tag, .flags = b->min ? PS__BAR_MIN : 0};
			uint8_t body[PS__BARRIER_SIZE];
			ps__barrier_enc(body, &m);
			for (int p = 0; p < b->hosts; p++)
				if (p != b->rank && b->peer[p].member && !peer_gone(&b->peer[p]))
					send_small(b, &b->peer[p], PS__F_BARRIER, (uint16_t)b->rank, 0, body,
						   sizeof body);
		}
		b->sent = true;
	}
	int status = b->tag_differs ? PS_EMISMATCH : 0;
	uint64_t tag = b->tag;
	uint64_t adm = b->sent_pending, leaving = 0;
	if (b->sync && b->sent_leave && b->rank < 64)
		leaving |= 1ULL << b->rank;
	for (int p = 0; p < b->hosts; p++) {
		if (p == b->rank)
			continue;
		const struct conn *c = &b->peer[p];
		if (c->dropped || !c->member)
			continue; /* BR-L1, EL1: neither waited for nor a failure */
		if (c->pgen >= b->gen) {
			uint64_t pt = c->ptag[b->gen & 1];
			if (c->pmin[b->gen & 1] != b->min || c->psync[b->gen & 1] != b->sync ||
			    (!b->min && pt != b->tag))
				status = PS_EMISMATCH;
			else if (b->min && pt < tag)
				tag = pt;
			if (b->sync) {
				adm &= c->ppend[b->gen & 1];
				if (c->pleave[b->gen & 1] && p < 64)
					leaving |= 1ULL << p;
			}
			continue;
		}
		if (!peer_gone(c))
			return; /* still waiting for it */
		status = PS_EHOSTDOWN;
	}
	if (status == PS_EMISMATCH)
		blog(b, "barrier %" PRIu64 ": hosts or nodes disagree on what they wait for (different tables?)",
		     b->gen);
	b->tag = tag;
	if (b->sync && status == 0)
		send_sync_result(b, adm, leaving);
	release(b, status);
}

/*
 * EL3: the generation of a SYNC completed on every member.  Every member's
 * bridge computes the same result from the same arrivals: admitted = the
 * joiners every member listed (and still connected here), leaving = the
 * lowest-ranked member that asked: one leaver a generation (EL7), since
 * two at once could drain into each other (x1's TAKE frames install keys
 * at b(x1) = x2 while x2 hands its own over and exits with them).  The
 * others keep their request (leave_req), which goes out again with their
 * next arrival once every host that left before has said LEFT (its drain
 * done: see the arrival above); every member picks the same one from the
 * same arrivals.
 * The result goes to our nodes before the RELEASE
 * (one stream: membership is in the segment when a worker returns) and to
 * each admitted joiner, whose bridge takes the first one.
 */
static void send_sync_result(struct ps__bridge *b, uint64_t adm, uint64_t leaving)
{
	struct ps__sync_msg m = {.gen = b->gen, .epoch = b->tag, .flags = PS__SYNC_RESULT};
	leaving &= ~leaving + 1; /* EL7: the lowest rank asking, alone */
	uint64_t slow = b->sync_clock;
	for (int p = 0; p < b->hosts && p < 64; p++) {
		struct conn *c = &b->peer[p];
		if (p == b->rank)
			continue;
		if ((adm >> p) & 1) {
			if (c->fd < 0 || c->member || peer_gone(c)) {
				adm &= ~(1ULL << p);
				continue;
			}
			m.a[m.na++] = (uint16_t)p;
		}
		if ((leaving >> p) & 1)
			m.b[m.nb++] = (uint16_t)p;
		if (c->member && !c->dropped && c->pclock[b->gen & 1] < slow)
			slow = c->pclock[b->gen & 1];
	}
	if (b->rank < 64 && ((leaving >> b->rank) & 1))
		m.b[m.nb++] = (uint16_t)b->rank;
	/* members after the agreement, with their clocks (EL4) */
	if (!((leaving >> b->rank) & 1))
		m.m[m.nm++] = (struct ps__sync_member){(uint16_t)b->rank, b->sync_clock, b->sync_cfg};
	for (int p = 0; p < b->hosts && p < 64; p++) {
		struct conn *c = &b->peer[p];
		if (p == b->rank || ((leaving >> p) & 1))
			continue;
		if (c->member && !c->dropped)
			m.m[m.nm++] = (struct ps__sync_member){(uint16_t)p, c->pclock[b->gen & 1], c->pcfg[b->gen & 1]};
		else if ((adm >> p) & 1)
			m.m[m.nm++] = (struct ps__sync_member){(uint16_t)p, slow, 0};
	}
	uint8_t f[PS__FRAME_HDR + PS__SYNC_MAX];
	uint32_t len = ps__sync_enc(f + PS__FRAME_HDR, &m);
	ps__frame_seal(f, PS__F_SYNC, (uint16_t)b->rank, 0, len);
	for (int i = 0; i < b->nodes; i++)
		enqueue(b, &b->link[i], f, PS__FRAME_HDR + len, -1);
	for (unsigned i = 0; i < m.na; i++) {
		struct conn *c = &b->peer[m.a[i]];
		enqueue(b, c, f, PS__FRAME_HDR + len, -1);
		c->member = c->was_member = true;
		c->ready = false;
		c->pgen = b->gen; /* its next arrival is gen + 1 */
		blog(b, "%s joined the job at barrier %" PRIu64 " (epoch %" PRIu64 "): %d hosts present", b->name[c->idx],
		     b->gen, b->tag, alive(b));
	}
	for (unsigned i = 0; i < m.nb; i++) {
		if (m.b[i] == b->rank) {
			b->left = true;
			b->member = false;
			blog(b, "this host leaves the job at barrier %" PRIu64 " (epoch %" PRIu64 ")", b->gen, b->tag);
			continue;
		}
		struct conn *c = &b->peer[m.b[i]];
		c->member = false;
		c->left_job = true;
		blog(b, "%s leaves the job at barrier %" PRIu64 ": %d hosts present", b->name[c->idx], b->gen, alive(b));
	}
	b->leave_req = b->leave_req && !b->left;
}

/* A joiner's bridge: the first SYNC result that admits it (EL3). */
static void admitted(struct ps__bridge *b, const struct ps__sync_msg *m, uint8_t *raw, size_t size)
{
	bool me = false;
	for (unsigned i = 0; i < m->na; i++)
		me |= m->a[i] == b->rank;
	if (!me || b->member || !b->ready_sent || b->left)
		return; /* not about us, or a copy from another member */
	for (unsigned i = 0; i < m->nm; i++) {
		int r = m->m[i].rank;
		if (r == b->rank || r >= b->hosts)
			continue;
		struct conn *c = &b->peer[r];
		if (c->fd < 0) {
			blog(b, "admitted, but host %d is a member this host has no connection to", r);
			continue;
		}
		c->member = c->was_member = true;
		c->ready = false;
		c->pgen = m->gen;
	}
	for (unsigned i = 0; i < m->nb; i++) {
		/* EL7: a member that leaves at the barrier that admits us was
		 * one when our nodes' tables were made (words name it); its
		 * LEFT, after its drain, must reach our nodes as it reaches the
		 * members' (ABORT(PS__GONE_LEFT), peer_left), or their words
		 * keep naming it */
		int r = m->b[i];
		if (r == b->rank || r >= b->hosts)
			continue;
		struct conn *c = &b->peer[r];
		c->member = false;
		c->was_member = c->left_job = true;
		blog(b, "%s leaves the job at barrier %" PRIu64 " (where this host was admitted)", b->name[r], m->gen);
	}
	b->member = true;
	b->gen = m->gen;
	b->tag = m->epoch;
	b->tag_differs = false;
	blog(b, "admitted at barrier %" PRIu64 " (epoch %" PRIu64 "): %d hosts present", m->gen, m->epoch, alive(b));
	for (int i = 0; i < b->nodes; i++)
		enqueue(b, &b->link[i], raw, size, b->rank);
	release(b, 0);
}

static void local_arrive(struct ps__bridge *b, struct conn *c, const struct ps__barrier_msg *m, bool sync,
			 uint64_t clock, uint64_t cfg, uint64_t tables)
{
	if (m->gen != b->gen) {
		blog(b, "node %d arrived at barrier %" PRIu64 " while %" PRIu64 " is open: ignored", c->idx, m->gen,
		     b->gen);
		return;
	}
	bool min = m->flags & PS__BAR_MIN;
	if (b->arrived == 0) {
		b->tag = m->tag;
		b->min = min;
		b->sync = sync;
		b->sync_clock = clock;
		b->sync_cfg = cfg;
		b->sync_tables = tables;
	} else if (sync != b->sync) {
		b->tag_differs = true;
	} else if (sync) {
		b->tag_differs |= m->tag != b->tag || tables != b->sync_tables;
		b->sync_clock = clock < b->sync_clock ? clock : b->sync_clock;
		b->sync_cfg = cfg > b->sync_cfg ? cfg : b->sync_cfg;
	} else if (min != b->min) {
		b->tag_differs = true;
	} else if (min) {
		b->tag = m->tag < b->tag ? m->tag : b->tag;
	} else if (m->tag != b->tag) {
		b->tag_differs = true;
	}
	if (m->flags & PS__BAR_FINAL)
		c->final = true;
	b->arrived++;
	barrier_progress(b);
}

/* ------------------------------------------------------------ failures */

/*
 * (BR-Q) Quorum: may this side go on without peer c?  The hosts present
 * before the loss (c included) are counted against the ones this side
 * still reaches: not dropped, and either done (said BYE) or connected and
 * heard from within the silence bound (a peer as silent as c is on c's
 * side of a partition, or dead too).  Going on needs more than half of
 * them, or exactly half with the lowest rank present before.  A minority
 * side stops ("lost quorum") instead of promoting the majority's keys and
 * going on alone (split brain); the majority drops the others as before.
 * A psrun that was stopped past the silence bound (SIGSTOP, a stall)
 * finds every peer silent when it wakes (ps__bridge_step checks silence
 * before reading what was buffered meanwhile): it is the minority, as the
 * peers, which heard nothing from it either, have dropped it.
 */
static bool quorum(struct ps__bridge *b, const struct conn *c)
{
	uint64_t now = ps__now_ns();
	int before = alive(b), reach = 1, low_before = b->rank, low_reach = b->rank;
	for (int p = 0; p < b->hosts; p++) {
		const struct conn *q = &b->peer[p];
		if (p == b->rank || q->dropped)
			continue;
		low_before = p < low_before ? p : low_before;
		/* a peer that said BYE finished with the job: on our side */
		if (q == c || (!q->said_bye && (q->fd < 0 || now - q->last_recv > b->timeout_ns)))
			continue;
		reach++;
		low_reach = p < low_reach ? p : low_reach;
	}
	if (2 * reach > before || (2 * reach == before && low_reach == low_before))
		return true;
	blog(b, "lost quorum: %s is gone and this side reaches %d of the %d hosts present before (%s); stopping "
	     "this side instead of going on alone", b->name[c->idx], reach, before,
	     2 * reach == before ? "half, without the lowest rank" : "not a majority");
	snprintf(b->why, sizeof b->why, "lost quorum: this side reaches %d of the %d hosts present before %s was lost",
		 reach, before, b->name[c->idx]);
	return false;
}

/* --on-host-failure continue: drops peer c (dead, or failing) and says so;
 * false when the job must stop instead (abort mode, or our own nodes are
 * done already: then nobody is left to go on). */
static bool drop(struct ps__bridge *b, struct conn *c, const char *why)
{
	if (!b->drop_failed || b->done || b->stop)
		return false;
	if (c->dropped)
		return true;
	if (!quorum(b, c)) {
		b->stop = true;
		return false;
	}
	c->dropped = true;
	c->said_bye = true;
	b->st.hosts_lost++;
	uint64_t now = ps__now_ns();
	b->lost_at = now;
	char of[32] = "";
	if (!b->elastic) /* an elastic job's ranks are not its hosts */
		snprintf(of, sizeof of, " of %d", b->hosts);
	blog(b, "%s %s; dropped, the job goes on with %d%s hosts (last heard %.0f ms before)", b->name[c->idx], why,
	     alive(b), of, (double)(now - c->last_recv) / 1e6);
	if (c->fd >= 0)
		conn_close(b, c); /* peer_left: ABORT(PS__GONE_LOST) to every node */
	else
		peer_left(b, c);
	barrier_progress(b);
	return true;
}

static void peer_failed(struct ps__bridge *b, struct conn *c, const char *fmt, ...)
{
	char why[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	if (b->left_sent) { /* we left: the peers close on our LEFT (BR-L2) */
		conn_close(b, c);
		return;
	}
	if (!c->member && (c->left_job || !c->was_member)) {
		/* EL1/EL7: a joiner not admitted, or a host that left by
		 * agreement: not a failure of the job */
		blog(b, "%s %s; %s", b->name[c->idx], why,
		     c->left_job ? "it had left the job" : "it was not admitted, the job goes on");
		conn_close(b, c);
		barrier_progress(b);
		return;
	}
	if (drop(b, c, why))
		return;
	if (!b->aborted)
		blog(b, "%s %s", b->name[c->idx], why);
	if (!b->stop)
		snprintf(b->why, sizeof b->why, "%s %s", b->name[c->idx], why);
	conn_close(b, c);
	b->stop = true;
	barrier_progress(b);
}

static void protocol_error(struct ps__bridge *b, struct conn *c, const char *what)
{
	if (c->kind == K_PEER) {
		peer_failed(b, c, "broke the protocol: %s; connection closed", what);
		return;
	}
	blog(b, "node %d broke the link protocol: %s; link closed", c->idx, what);
	conn_close(b, c);
	barrier_progress(b);
}

/*
 * EL8: the job ends before this joiner was admitted: every member it was
 * told of said goodbye, BYE or LEFT (one that leaves by agreement says
 * LEFT, or BYE without the drain, and the others go on).  Called on each
 * goodbye of c (said_bye set).
 */
static void job_ended_unadmitted(struct ps__bridge *b, const struct conn *c)
{
	if (b->member || b->left || !b->elastic || !c->told_member || b->stop)
		return;
	for (int p = 0; p < b->hosts; p++)
		if (b->peer[p].told_member && b->peer[p].fd >= 0 && !b->peer[p].said_bye)
			return;
	snprintf(b->why, sizeof b->why, "the job ended before this host was admitted (last: %s)", b->name[c->idx]);
	blog(b, "%s", b->why);
	b->stop = true;
}

/* ------------------------------------------------------------ dispatch */

static struct conn *executor(struct ps__bridge *b, uint64_t req)
{
	int n = (int)((req >> 56) % (uint64_t)b->nodes);
	for (int k = 0; k < b->nodes; k++) {
		struct conn *c = &b->link[(n + k) % b->nodes];
		/* a node waiting in its final barrier still serves: no host
		 * has passed that barrier, so requests may still come */
		if (c->fd >= 0)
			return c;
	}
	return NULL;
}

static void from_link(struct ps__bridge *b, struct conn *c, const struct ps__frame *f, uint8_t *raw,
		      size_t size)
{
	switch (f->type) {
	case PS__F_PULL:
	case PS__F_PUSH:
	case PS__F_MOVE:
	case PS__F_RPULL:
	case PS__F_RPUSH:
	case PS__F_BACKUP:
	case PS__F_REPLY:
	case PS__F_REDIRECT:
	case PS__F_MOVE_REPLY: {
		bool req = f->type == PS__F_PULL || f->type == PS__F_PUSH || f->type == PS__F_MOVE ||
			   f->type == PS__F_RPULL || f->type == PS__F_RPUSH || f->type == PS__F_BACKUP;
		if (f->host >= b->hosts || f->host == b->rank || (req && (int)(f->req >> 56) != c->idx)) {
			protocol_error(b, c, "bad destination host or request id");
			return;
		}
		struct conn *p = &b->peer[f->host];
		if (peer_gone(p)) {
			if (req && f->type != PS__F_BACKUP) /* a backup wants no answer */
				reply_error(b, c, f->host, f->req, PS_EHOSTDOWN);
			return;
		}
		b->st.frames_out++;
		enqueue(b, p, raw, size, b->rank);
		return;
	}
	case PS__F_BARRIER: {
		struct ps__barrier_msg m;
		if (ps__barrier_dec(f->body, f->len, &m) != 0) {
			protocol_error(b, c, "malformed barrier");
			return;
		}
		local_arrive(b, c, &m, false, 0, 0, 0);
		return;
	}
	case PS__F_SYNC: {
		struct ps__sync_msg s;
		if (ps__sync_dec(f->body, f->len, &s) != 0 || (s.flags & PS__SYNC_RESULT) || s.na || s.nb || s.nm) {
			protocol_error(b, c, "malformed sync");
			return;
		}
		struct ps__barrier_msg m = {.gen = s.gen, .tag = s.epoch};
		local_arrive(b, c, &m, true, s.clock, s.cfg, s.tables);
		return;
	}
	case PS__F_CLOCK: {
		struct ps__clock_msg m;
		if (f->host != b->rank || ps__clock_dec(f->body, f->len, &m) != 0) {
			protocol_error(b, c, "malformed clock");
			return;
		}
		/* to every peer, in the order our nodes sent them: each peer's
		 * stream keeps it, so a host's CLOCKs reach a peer before its
		 * BYE/ABORT (clock.c CLH3) */
		for (int p = 0; p < b->hosts; p++)
			if (p != b->rank && !peer_gone(&b->peer[p]))
				enqueue(b, &b->peer[p], raw, size, b->rank);
		return;
	}
	case PS__F_LEFT: {
		/* (BR-L2) node c drained (net/drain.c); once every node has,
		 * this host leaves: LEFT to every peer, after everything our
		 * nodes sent before on the same streams */
		c->drained = true;
		int n = 0;
		for (int i = 0; i < b->nodes; i++)
			n += b->link[i].drained;
		if (n < b->nodes || b->left_sent)
			return;
		uint8_t body[4];
		ps__put32(body, 0);
		int told = 0;
		for (int p = 0; p < b->hosts; p++)
			if (p != b->rank && !peer_gone(&b->peer[p])) {
				send_small(b, &b->peer[p], PS__F_LEFT, (uint16_t)b->rank, 0, body, sizeof body);
				told++;
			}
		b->left_sent = true;
		blog(b, "leaving the job: every node handed its keys over; LEFT sent to the %d hosts present", told);
		return;
	}
	case PS__F_CKPT: {
		struct ps__note n;
		if (ps__note_dec(f->body, f->len, &n) != 0 || c->idx != 0) {
			protocol_error(b, c, "malformed checkpoint request or not from node 0");
			return;
		}
		for (int p = 0; p < b->hosts; p++)
			if (p != b->rank && !peer_gone(&b->peer[p]))
				enqueue(b, &b->peer[p], raw, size, b->rank);
		return;
	}
	default:
		protocol_error(b, c, "unexpected frame type");
	}
}

static void from_peer(struct ps__bridge *b, struct conn *c, const struct ps__frame *f, uint8_t *raw,
		      size_t size)
{
	char what[128];
	if (f->host != c->idx) {
		snprintf(what, sizeof what, "a frame claims to come from host %u", f->host);
		protocol_error(b, c, what);
		return;
	}
	switch (f->type) {
	case PS__F_PULL:
	case PS__F_PUSH:
	case PS__F_MOVE:
	case PS__F_RPULL:
	case PS__F_RPUSH:
	case PS__F_BACKUP: {
		b->st.frames_in++;
		/* body checked here so that a malformed request is the peer's
		 * fault, closed at once, and never reaches a node */
		struct ps__kv_req m;
		struct ps__move_req mv;
		if (f->type == PS__F_MOVE ? ps__move_dec(f->body, f->len, &mv) != 0
					  : ps__kv_dec(f->body, f->len,
						       f->type == PS__F_PUSH || f->type == PS__F_RPUSH ||
							       f->type == PS__F_BACKUP,
						       &m) != 0) {
			protocol_error(b, c, ps_strerror(PS_EFRAME_BODY));
			return;
		}
		struct conn *n = executor(b, f->req);
		if (!n && f->type != PS__F_BACKUP)
			reply_error(b, c, (uint16_t)b->rank, f->req, PS_EHOSTDOWN);
		else
			enqueue(b, n, raw, size, c->idx);
		return;
	}
	case PS__F_REPLY:
	case PS__F_REDIRECT:
	case PS__F_MOVE_REPLY: {
		b->st.frames_in++;
		struct ps__reply m;
		struct ps__redirect rd;
		struct ps__move_reply mr;
		int bad = f->type == PS__F_REPLY      ? ps__reply_dec(f->body, f->len, &m)
			  : f->type == PS__F_REDIRECT ? ps__redirect_dec(f->body, f->len, UINT32_MAX, &rd)
						      : ps__move_reply_dec(f->body, f->len, &mr);
		if (bad != 0) {
			protocol_error(b, c, ps_strerror(PS_EFRAME_BODY));
			return;
		}
		int node = (int)(f->req >> 56);
		if (node < b->nodes)
			enqueue(b, &b->link[node], raw, size, c->idx);
		return;
	}
	case PS__F_BARRIER: {
		struct ps__barrier_msg m;
		if (ps__barrier_dec(f->body, f->len, &m) != 0 || m.gen < b->gen || m.gen > b->gen + 1 ||
		    m.gen <= c->pgen || !c->member || !b->member) {
			char what[160];
			snprintf(what, sizeof what, "barrier out of sequence (its generation %" PRIu64 ", ours %" PRIu64
				 ", its last %" PRIu64 "%s%s)", m.gen, b->gen, c->pgen, c->member ? "" : ", not a member",
				 b->member ? "" : ", we are not a member");
			protocol_error(b, c, what);
			return;
		}
		c->pgen = m.gen;
		c->ptag[m.gen & 1] = m.tag;
		c->pmin[m.gen & 1] = m.flags & PS__BAR_MIN;
		c->psync[m.gen & 1] = false;
		barrier_progress(b);
		return;
	}
	case PS__F_SYNC: {
		struct ps__sync_msg m;
		if (ps__sync_dec(f->body, f->len, &m) != 0) {
			protocol_error(b, c, ps_strerror(PS_EFRAME_BODY));
			return;
		}
		if (m.flags & PS__SYNC_RESULT) { /* to a joiner (EL3) */
			if (c->member || !b->member)
				admitted(b, &m, raw, size);
			return;
		}
		if (m.gen < b->gen || m.gen > b->gen + 1 || m.gen <= c->pgen || !c->member || !b->member ||
		    m.nb || m.nm) {
			char what[160];
			snprintf(what, sizeof what, "sync out of sequence (its generation %" PRIu64 ", ours %" PRIu64
				 ", its last %" PRIu64 "%s%s%s)", m.gen, b->gen, c->pgen, c->member ? "" : ", not a member",
				 b->member ? "" : ", we are not a member", m.nb || m.nm ? ", a result's lists" : "");
			protocol_error(b, c, what);
			return;
		}
		c->pgen = m.gen;
		c->ptag[m.gen & 1] = m.epoch;
		c->pmin[m.gen & 1] = false;
		c->psync[m.gen & 1] = true;
		c->pleave[m.gen & 1] = m.flags & PS__SYNC_LEAVE;
		c->pclock[m.gen & 1] = m.clock;
		c->pcfg[m.gen & 1] = m.cfg;
		uint64_t pend = 0;
		for (unsigned i = 0; i < m.na; i++)
			pend |= 1ULL << m.a[i];
		c->ppend[m.gen & 1] = pend;
		barrier_progress(b);
		return;
	}
	case PS__F_READY:
		if (f->len != 8) {
			protocol_error(b, c, ps_strerror(PS_EFRAME_BODY));
			return;
		}
		if (!c->member && !c->was_member) {
			c->ready = true;
			c->ptables = ps__get64(f->body);
			blog(b, "%s is ready to join: admitted at the next ps_sync_hosts", b->name[c->idx]);
		}
		return;
	case PS__F_LEAVE:
		/* EL7: only a member asks (a pending joiner is no one to the
		 * job yet), with an empty body */
		if (f->len != 0) {
			protocol_error(b, c, ps_strerror(PS_EFRAME_BODY));
			return;
		}
		if (!c->member) {
			protocol_error(b, c, "a leave request from a host that is not a member");
			return;
		}
		if (b->member && !b->left && !b->leave_req) {
			b->leave_req = true;
			blog(b, "asked to leave by %s: at the next ps_sync_hosts", b->name[c->idx]);
		}
		return;
	case PS__F_CLOCK: {
		struct ps__clock_msg m;
		if (ps__clock_dec(f->body, f->len, &m) != 0) {
			protocol_error(b, c, ps_strerror(PS_EFRAME_BODY));
			return;
		}
		/* to every local node, before anything the peer sends later
		 * (its BYE/ABORT becomes our ABORT to the links: clock.c CLH3) */
		for (int i = 0; i < b->nodes; i++)
			enqueue(b, &b->link[i], raw, size, c->idx);
		return;
	}
	case PS__F_CKPT: {
		struct ps__note n;
		if (ps__note_dec(f->body, f->len, &n) != 0) {
			protocol_error(b, c, ps_strerror(PS_EFRAME_BODY));
			return;
		}
		enqueue(b, &b->link[0], raw, size, c->idx);
		return;
	}
	case PS__F_HEARTBEAT:
		return;
	case PS__F_LEFT:
		/* (BR-L2) it left after handing its keys over: dropped without
		 * error in either mode; our nodes get ABORT(PS__GONE_LEFT).
		 * Its body is 4 zero bytes (the leaving bridge's, above) */
		if (f->len != 4) {
			protocol_error(b, c, ps_strerror(PS_EFRAME_BODY));
			return;
		}
		c->dropped = true;
		c->gone_left = true;
		c->said_bye = true;
		job_ended_unadmitted(b, c);
		blog(b, "%s left the job (its keys handed over); the job goes on with %d of %d hosts", b->name[c->idx],
		     alive(b), b->hosts);
		conn_close(b, c);
		barrier_progress(b);
		return;
	case PS__F_BYE:
		c->said_bye = true;
		peer_left(b, c);
		job_ended_unadmitted(b, c);
		if (c->left_job || !c->was_member) {
			/* EL7: it left by agreement (or never joined): our
			 * goodbye now, so it need not wait for the job's end */
			uint8_t body[4] = {0};
			send_small(b, c, PS__F_BYE, (uint16_t)b->rank, 0, body, 4);
			flush(b, c);
			if (c->fd >= 0)
				shutdown(c->fd, SHUT_WR);
		}
		barrier_progress(b);
		return;
	case PS__F_ABORT: {
		struct ps__note n;
		if (ps__note_dec(f->body, f->len, &n) != 0)
			snprintf(n.text, sizeof n.text, "(no reason given)");
		char why[PS__NOTE_MAX + 16];
		snprintf(why, sizeof why, "failed: %.900s", n.text);
		if (!b->member && !b->left && b->elastic && c->told_member) {
			/* a joiner refused by a member (EL2): it stops, the job
			 * goes on */
			c->said_bye = true;
			if (!b->stop)
				snprintf(b->why, sizeof b->why, "%s refused this host: %.900s", b->name[c->idx], n.text);
			blog(b, "%s", b->why);
			b->stop = true;
			return;
		}
		if (!c->member && (c->left_job || !c->was_member)) {
			c->said_bye = true;
			peer_failed(b, c, "%s", why);
			return;
		}
		if (drop(b, c, why))
			return;
		c->said_bye = true;
		peer_left(b, c);
		if (!b->aborted)
			blog(b, "%s failed: %s", b->name[c->idx], n.text);
		if (!b->stop)
			snprintf(b->why, sizeof b->why, "%s failed: %.900s", b->name[c->idx], n.text);
		b->stop = true;
		barrier_progress(b);
		return;
	}
	default:
		snprintf(what, sizeof what, "frame of type %u after the handshake", f->type);
		protocol_error(b, c, what);
	}
}

/* Parses and dispatches every complete frame in c->in. */
static void consume(struct ps__bridge *b, struct conn *c, bool eof)
{
	size_t at = 0;
	while (c->fd >= 0) {
		struct ps__frame f;
		/* frames from peers are checked; our own nodes' are trusted */
		long r = ps__frame_parse(c->in + at, c->in_len - at, PS__FRAME_MAX, c->kind == K_PEER, eof, &f);
		if (r == 0)
			break;
		if (r < 0) {
			protocol_error(b, c, ps_strerror((int)r));
			return;
		}
		if (c->kind == K_PEER)
			from_peer(b, c, &f, c->in + at, (size_t)r);
		else
			from_link(b, c, &f, c->in + at, (size_t)r);
		at += (size_t)r;
	}
	if (c->fd >= 0 && at) {
		memmove(c->in, c->in + at, c->in_len - at);
		c->in_len -= at;
	}
}

/* Reads what c has, up to a budget; true if the budget ran out first. */
static bool on_readable(struct ps__bridge *b, struct conn *c)
{
	size_t budget = 4 * READ_CHUNK; /* then let the others have a turn */
	while (c->fd >= 0) {
		if (budget == 0)
			return true;
		if (ps__buf_reserve(&c->in, &c->in_cap, c->in_len + READ_CHUNK) != 0) {
			protocol_error(b, c, "out of memory");
			return false;
		}
		ssize_t r = recv(c->fd, c->in + c->in_len, READ_CHUNK, MSG_DONTWAIT);
		if (r > 0) {
			c->in_len += (size_t)r;
			c->last_recv = ps__now_ns();
			if (c->kind == K_PEER)
				b->st.wire_bytes_in += (uint64_t)r;
			budget -= (size_t)r < budget ? (size_t)r : budget;
			consume(b, c, false);
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return false;
		if (r < 0) {
			if (c->kind == K_PEER)
				peer_failed(b, c, "died: %s", strerror(errno));
			else
				conn_close(b, c), barrier_progress(b);
			return false;
		}
		/* end of stream */
		consume(b, c, true);
		if (c->fd < 0)
			return false;
		if (c->kind == K_LINK) {
			conn_close(b, c);
			barrier_progress(b);
		} else if ((c->said_bye && (b->done || c->left_job || !c->was_member)) || b->left_sent) {
			conn_close(b, c);
		} else if (c->said_bye) {
			/* it is done; keep the socket to say our own goodbye */
			epoll_ctl(b->ep, EPOLL_CTL_DEL, c->fd, NULL);
			c->eof = true;
			c->want_out = false;
		} else {
			peer_failed(b, c, "died: connection closed without goodbye");
		}
		return false;
	}
	return false;
}

/* ------------------------------------------------------------ public */

static int add_conn(struct ps__bridge *b, struct conn *c, int fd, enum conn_kind kind, int idx)
{
	c->fd = fd;
	c->kind = kind;
	c->idx = idx;
	c->werr = 0;
	c->last_recv = c->last_send = ps__now_ns();
	if (fd < 0)
		return 0;
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = ((uint64_t)kind << 32) | (uint32_t)idx};
	return epoll_ctl(b->ep, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -errno;
}

struct ps__bridge *ps__bridge_new(const struct ps__bridge_conf *conf, int *err)
{
	struct ps__bridge *b = calloc(1, sizeof *b);
	int rc = -ENOMEM;
	if (!b)
		goto out;
	b->rank = conf->rank;
	b->hosts = conf->hosts;
	b->nodes = conf->nodes;
	b->log = conf->log;
	b->gen = 1;
	b->drop_failed = conf->drop_failed;
	b->elastic = conf->elastic;
	b->home = conf->home > 0 ? conf->home : conf->hosts;
	b->member = !conf->joiner;
	b->st.last_recovery_ms = -1;
	const char *e = getenv("PSMEM_PEER_TIMEOUT_MS");
	long ms = e ? strtol(e, NULL, 10) : 0;
	b->timeout_ns = (uint64_t)(ms > 0 ? ms : PS__PEER_TIMEOUT_MS) * 1000000ULL;
	b->peer = calloc((size_t)conf->hosts, sizeof *b->peer);
	b->link = calloc((size_t)conf->nodes, sizeof *b->link);
	b->name = calloc((size_t)conf->hosts, sizeof *b->name);
	b->addr = calloc((size_t)conf->hosts, sizeof *b->addr);
	b->ep = epoll_create1(EPOLL_CLOEXEC);
	if (!b->peer || !b->link || !b->name || !b->addr || b->ep < 0)
		goto fail;
	for (int p = 0; p < conf->hosts; p++) {
		const struct ps__peer_addr *a = &conf->addr[p];
		b->addr[p] = *a;
		snprintf(b->name[p], sizeof b->name[p], "host %d (%s%s%s:%u)", p, strchr(a->addr, ':') ? "[" : "",
			 a->addr, strchr(a->addr, ':') ? "]" : "", (unsigned)a->port);
		rc = add_conn(b, &b->peer[p], p == conf->rank ? -1 : conf->peer_fd[p], K_PEER, p);
		if (rc)
			goto fail;
		/* members: every host of the rendezvous; a joiner's are told
		 * by its first SYNC result (EL3) */
		bool m = conf->member ? conf->member[p] != 0 : true;
		b->peer[p].told_member = m && conf->joiner;
		m = m && !conf->joiner;
		b->peer[p].member = b->peer[p].was_member = m && p != conf->rank && b->peer[p].fd >= 0;
		/* a peer known at start: our nodes' data connections to it were
		 * made with ours (rendezvous, or this joiner's own connects),
		 * not passed later (EL1) */
		if (b->peer[p].fd >= 0)
			b->peer[p].data_in = conf->nodes;
	}
	for (int i = 0; i < conf->nodes; i++) {
		rc = add_conn(b, &b->link[i], conf->link_fd[i], K_LINK, i);
		if (rc)
			goto fail;
	}
	/* the descriptors belong to the bridge now */
	goto out;
fail:
	ps__bridge_free(b);
	b = NULL;
out:
	if (err)
		*err = b ? 0 : rc;
	return b;
}

int ps__bridge_fd(const struct ps__bridge *b)
{
	return b->ep;
}

static void timers(struct ps__bridge *b)
{
	uint64_t now = ps__now_ns();
	for (int p = 0; p < b->hosts; p++) {
		struct conn *c = &b->peer[p];
		if (c->fd < 0)
			continue;
		if (now - c->last_recv > b->timeout_ns && !c->said_bye) {
			peer_failed(b, c, "silent for %.1f s: presumed dead", (double)(now - c->last_recv) / 1e9);
			continue;
		}
		if (now - c->last_send >= PS__HEARTBEAT_MS * 1000000ULL && !b->done)
			send_small(b, c, PS__F_HEARTBEAT, (uint16_t)b->rank, 0, NULL, 0);
	}
}

int ps__bridge_timeout_ms(const struct ps__bridge *b)
{
	(void)b;
	return PS__HEARTBEAT_MS / 2;
}

int ps__bridge_step(struct ps__bridge *b)
{
	/* silence first (BR-Q): after a stall of this process (SIGSTOP), the
	 * heartbeats buffered meanwhile must not make a peer that went away
	 * look alive to the quorum of the first loss */
	write_failures(b); /* BR-W: those noted outside a step (ps__bridge_local_done, ...) */
	timers(b);
	write_failures(b);
	struct epoll_event ev[64];
	int n = epoll_wait(b->ep, ev, 64, 0);
	for (int i = 0; i < n; i++) {
		enum conn_kind kind = (enum conn_kind)(ev[i].data.u64 >> 32);
		int idx = (int)(uint32_t)ev[i].data.u64;
		struct conn *c = kind == K_PEER ? &b->peer[idx] : &b->link[idx];
		if (c->fd < 0)
			continue;
		if (ev[i].events & EPOLLOUT)
			flush(b, c);
		if (c->fd >= 0 && !c->werr && (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
			on_readable(b, c);
		write_failures(b);
	}
	return b->stop ? PS_EHOSTDOWN : 0;
}

void ps__bridge_local_done(struct ps__bridge *b, int code, const char *why)
{
	if (b->done)
		return;
	/* our nodes are gone: what they wrote last (replies to the peers) is
	 * in their links before the EOF, and must leave before our goodbye */
	for (int i = 0; i < b->nodes; i++)
		while (b->link[i].fd >= 0 && on_readable(b, &b->link[i]))
			;
	uint8_t body[6 + PS__NOTE_MAX];
	uint32_t len;
	unsigned type;
	if (code == 0) {
		ps__put32(body, 0);
		len = 4;
		type = PS__F_BYE;
	} else {
		len = ps__note_enc(body, code, why);
		type = PS__F_ABORT;
	}
	b->aborted = code != 0;
	if (b->left_sent) {
		/* (BR-L2) the peers dropped us on our LEFT: no goodbye is owed */
		b->done = true;
		for (int p = 0; p < b->hosts; p++)
			if (b->peer[p].eof)
				conn_close(b, &b->peer[p]);
			else
				flush(b, &b->peer[p]);
		return;
	}
	for (int p = 0; p < b->hosts; p++) {
		struct conn *c = &b->peer[p];
		if (c->fd < 0)
			continue;
		send_small(b, c, type, (uint16_t)b->rank, 0, body, len);
		if (c->eof) {
			/* it left already: a last non-blocking attempt, then close */
			flush(b, c);
			conn_close(b, c);
		}
	}
	b->done = true;
	for (int p = 0; p < b->hosts; p++)
		flush(b, &b->peer[p]); /* shuts the write side once all is out */
}

bool ps__bridge_finished(const struct ps__bridge *b)
{
	if (!b->done)
		return false;
	for (int p = 0; p < b->hosts; p++)
		if (b->peer[p].fd >= 0)
			return false;
	return true;
}

const char *ps__bridge_failure(const struct ps__bridge *b)
{
	return b->stop ? b->why : NULL;
}

void ps__bridge_stats(const struct ps__bridge *b, struct ps__bridge_stats *out)
{
	*out = b->st;
}

void ps__bridge_free(struct ps__bridge *b)
{
	if (!b)
		return;
	for (int p = 0; b->peer && p < b->hosts; p++) {
		conn_close(b, &b->peer[p]);
		free(b->peer[p].in);
		free(b->peer[p].out);
	}
	for (int i = 0; b->link && i < b->nodes; i++) {
		conn_close(b, &b->link[i]);
		free(b->link[i].in);
		free(b->link[i].out);
	}
	if (b->ep >= 0)
		close(b->ep);
	free(b->peer);
	free(b->link);
	free(b->name);
	free(b->addr);
	free(b);
}

/* ------------------------------------------------------------ elastic */

int ps__bridge_add_peer(struct ps__bridge *b, int rank, int fd, const struct ps__peer_addr *addr)
{
	if (!b->elastic || rank < 0 || rank >= b->hosts || rank == b->rank)
		return -EINVAL;
	struct conn *c = &b->peer[rank];
	if (c->fd >= 0 || c->was_member || c->left || b->done)
		return -EEXIST; /* ranks are never reused (EL2) */
	free(c->in);
	free(c->out);
	*c = (struct conn){.fd = -1};
	if (addr && addr->port) {
		b->addr[rank] = *addr;
		snprintf(b->name[rank], sizeof b->name[rank], "host %d (%s%s%s:%u)", rank,
			 strchr(addr->addr, ':') ? "[" : "", addr->addr, strchr(addr->addr, ':') ? "]" : "",
			 (unsigned)addr->port);
	} else {
		char a[64];
		uint16_t port;
		if (ps__net_peer(fd, a, sizeof a, &port) == 0)
			snprintf(b->name[rank], sizeof b->name[rank], "host %d (joined from %s)", rank, a);
		else
			snprintf(b->name[rank], sizeof b->name[rank], "host %d (joined)", rank);
	}
	int rc = add_conn(b, c, fd, K_PEER, rank);
	if (rc) {
		c->fd = -1;
		return rc;
	}
	blog(b, "%s connected: it joins at the next ps_sync_hosts it is ready for", b->name[rank]);
	return 0;
}

int ps__bridge_live(const struct ps__bridge *b, struct ps__welcome *w)
{
	w->n = 0;
	if (!b->member || b->left || b->done || b->stop)
		return -ENOENT; /* this host is not (or no longer) in the job */
	for (int p = 0; p < b->hosts && w->n < PS__ELASTIC_HOSTS; p++) {
		const struct conn *c = &b->peer[p];
		bool me = p == b->rank;
		if (!me && (c->fd < 0 || c->dropped || c->left_job || peer_gone(c)))
			continue;
		w->h[w->n].rank = (uint16_t)p;
		w->h[w->n].member = me ? b->member : c->member;
		w->h[w->n].a = b->addr[p];
		w->n++;
	}
	return 0;
}

int ps__bridge_add_data(struct ps__bridge *b, int rank, int node, int fd)
{
	if (!b->elastic || rank < 0 || rank >= b->hosts || rank == b->rank || node < 0 || node >= b->nodes)
		return -EINVAL;
	struct conn *p = &b->peer[rank], *c = &b->link[node];
	if (p->fd < 0 || p->was_member || p->data_in >= b->nodes)
		return -EEXIST;
	/* what is queued for the node goes first (one stream); the node
	 * always reads its link, so this wait is short: bounded at 1 s */
	uint64_t deadline = ps__now_ns() + 1000000000ULL;
	while (c->fd >= 0 && c->out_off < c->out_len && ps__now_ns() < deadline) {
		flush(b, c);
		struct pollfd q = {.fd = c->fd, .events = POLLOUT};
		if (c->fd >= 0 && c->out_off < c->out_len)
			poll(&q, 1, 10);
	}
	if (c->fd < 0 || c->werr || c->out_off < c->out_len)
		return c->fd < 0 || c->werr ? -EPIPE : -ETIMEDOUT;
	uint8_t f[PS__FRAME_HDR + 2];
	ps__put16(f + PS__FRAME_HDR, (uint16_t)rank);
	ps__frame_seal(f, PS__F_DATAFD, (uint16_t)rank, 0, 2);
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof u);
	size_t done = 0;
	while (done < sizeof f) {
		struct iovec iov = {.iov_base = f + done, .iov_len = sizeof f - done};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
		if (done == 0) { /* the descriptor rides with the first byte */
			mh.msg_control = u.buf;
			mh.msg_controllen = sizeof u.buf;
			struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &fd, sizeof fd);
		}
		ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0) {
			done += (size_t)w;
			continue;
		}
		if (w < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) && ps__now_ns() < deadline) {
			struct pollfd q = {.fd = c->fd, .events = POLLOUT};
			poll(&q, 1, 10);
			continue;
		}
		if (done == 0)
			return w < 0 ? -errno : -EPIPE;
		conn_close(b, c); /* half a frame on the link: it is broken */
		barrier_progress(b);
		return -EPIPE;
	}
	c->last_send = ps__now_ns();
	close(fd); /* the node has its own copy now */
	p->data_in++;
	return 0;
}

int ps__bridge_request_leave(struct ps__bridge *b, int host)
{
	if (host < 0 || host >= b->hosts)
		return -EINVAL;
	if (host == b->rank) {
		if (!b->member || b->left)
			return -EINVAL;
		if (!b->leave_req)
			blog(b, "asked to leave: at the next ps_sync_hosts");
		b->leave_req = true;
		return 0;
	}
	struct conn *c = &b->peer[host];
	if (!c->member || peer_gone(c))
		return -ENOENT;
	if (!b->member || b->left)
		return -EINVAL; /* only a member asks another (EL7) */
	send_small(b, c, PS__F_LEAVE, (uint16_t)b->rank, 0, NULL, 0);
	blog(b, "asked %s to leave", b->name[host]);
	return 0;
}
