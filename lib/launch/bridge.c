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
 *
 * Leaving (BR-L2, net/drain.c): each node of a host that leaves sends LEFT
 * on its link once its keys are handed over; when all have, the bridge
 * sends LEFT to every peer and owes no other goodbye.  A peer's bridge
 * drops the host on its LEFT in either mode (dropped, as BR-L1: barriers
 * no longer wait for it) and gives its nodes ABORT(host, PS__GONE_LEFT),
 * which promotes nothing.  The leaving bridge then takes its peers' EOFs
 * as the normal end and tells its own nodes nothing (their data
 * connections end when the peers' nodes close them, DR2).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
	uint8_t *in;
	size_t in_len, in_cap;
	uint8_t *out;
	size_t out_off, out_len, out_cap;
	uint64_t last_recv, last_send;
	uint64_t pgen;            /* peer: last barrier generation it arrived at */
	uint64_t ptag[2];         /* peer: its tag for generation g, at [g & 1] */
	bool pmin[2];             /* peer: PS__BAR_MIN for generation g, at [g & 1] */
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
	uint64_t tag;
	bool tag_differs;
	bool min;                 /* PS__BAR_MIN: tag is the minimum so far */
	bool sent;                /* our BARRIER(gen) went to the peers */
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
	if (c->kind == K_PEER)
		peer_left(b, c);
}

static void peer_failed(struct ps__bridge *b, struct conn *c, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* A write to c failed with err: the peer died, or the node's link broke. */
static void flush_failed(struct ps__bridge *b, struct conn *c, int err)
{
	if (c->kind == K_PEER)
		peer_failed(b, c, "died: %s", strerror(err));
	else
		conn_close(b, c);
}

/* Writes what is buffered; false if the connection broke (and is closed). */
static bool flush(struct ps__bridge *b, struct conn *c)
{
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
		flush_failed(b, c, errno);
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
	if (c->fd < 0)
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
			flush_failed(b, c, errno);
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

/* Hosts present: this one and every peer not dropped. */
static int alive(const struct ps__bridge *b)
{
	int n = 1;
	for (int p = 0; p < b->hosts; p++)
		n += p != b->rank && !b->peer[p].dropped;
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
	b->st.barriers++;
	if (b->lost_at && status == 0) {
		b->st.last_recovery_ms = (double)(ps__now_ns() - b->lost_at) / 1e6;
		blog(b, "recovered: barrier over the %d hosts left released %.1f ms after the loss", alive(b),
		     b->st.last_recovery_ms);
		b->lost_at = 0;
	}
}

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
	if (!b->sent) {
		struct ps__barrier_msg m = {.gen = b->gen, .tag = b->tag, .flags = b->min ? PS__BAR_MIN : 0};
		uint8_t body[PS__BARRIER_SIZE];
		ps__barrier_enc(body, &m);
		for (int p = 0; p < b->hosts; p++)
			if (p != b->rank && !peer_gone(&b->peer[p]))
				send_small(b, &b->peer[p], PS__F_BARRIER, (uint16_t)b->rank, 0, body, sizeof body);
		b->sent = true;
	}
	int status = b->tag_differs ? PS_EMISMATCH : 0;
	uint64_t tag = b->tag;
	for (int p = 0; p < b->hosts; p++) {
		if (p == b->rank)
			continue;
		const struct conn *c = &b->peer[p];
		if (c->dropped)
			continue; /* BR-L1: neither waited for nor a failure */
		if (c->pgen >= b->gen) {
			uint64_t pt = c->ptag[b->gen & 1];
			if (c->pmin[b->gen & 1] != b->min || (!b->min && pt != b->tag))
				status = PS_EMISMATCH;
			else if (b->min && pt < tag)
				tag = pt;
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
	release(b, status);
}

static void local_arrive(struct ps__bridge *b, struct conn *c, const struct ps__barrier_msg *m)
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
	blog(b, "%s %s; dropped, the job goes on with %d of %d hosts (last heard %.0f ms before)", b->name[c->idx],
	     why, alive(b), b->hosts, (double)(now - c->last_recv) / 1e6);
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
		local_arrive(b, c, &m);
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
		    m.gen <= c->pgen) {
			protocol_error(b, c, "barrier out of sequence");
			return;
		}
		c->pgen = m.gen;
		c->ptag[m.gen & 1] = m.tag;
		c->pmin[m.gen & 1] = m.flags & PS__BAR_MIN;
		barrier_progress(b);
		return;
	}
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
		 * error in either mode; our nodes get ABORT(PS__GONE_LEFT) */
		c->dropped = true;
		c->gone_left = true;
		c->said_bye = true;
		blog(b, "%s left the job (its keys handed over); the job goes on with %d of %d hosts", b->name[c->idx],
		     alive(b), b->hosts);
		conn_close(b, c);
		barrier_progress(b);
		return;
	case PS__F_BYE:
		c->said_bye = true;
		peer_left(b, c);
		barrier_progress(b);
		return;
	case PS__F_ABORT: {
		struct ps__note n;
		if (ps__note_dec(f->body, f->len, &n) != 0)
			snprintf(n.text, sizeof n.text, "(no reason given)");
		char why[PS__NOTE_MAX + 16];
		snprintf(why, sizeof why, "failed: %.900s", n.text);
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
		} else if ((c->said_bye && b->done) || b->left_sent) {
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
	b->st.last_recovery_ms = -1;
	const char *e = getenv("PSMEM_PEER_TIMEOUT_MS");
	long ms = e ? strtol(e, NULL, 10) : 0;
	b->timeout_ns = (uint64_t)(ms > 0 ? ms : PS__PEER_TIMEOUT_MS) * 1000000ULL;
	b->peer = calloc((size_t)conf->hosts, sizeof *b->peer);
	b->link = calloc((size_t)conf->nodes, sizeof *b->link);
	b->name = calloc((size_t)conf->hosts, sizeof *b->name);
	b->ep = epoll_create1(EPOLL_CLOEXEC);
	if (!b->peer || !b->link || !b->name || b->ep < 0)
		goto fail;
	for (int p = 0; p < conf->hosts; p++) {
		const struct ps__peer_addr *a = &conf->addr[p];
		snprintf(b->name[p], sizeof b->name[p], "host %d (%s%s%s:%u)", p, strchr(a->addr, ':') ? "[" : "",
			 a->addr, strchr(a->addr, ':') ? "]" : "", (unsigned)a->port);
		rc = add_conn(b, &b->peer[p], p == conf->rank ? -1 : conf->peer_fd[p], K_PEER, p);
		if (rc)
			goto fail;
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
	timers(b);
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
		if (c->fd >= 0 && (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
			on_readable(b, c);
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
	free(b);
}
