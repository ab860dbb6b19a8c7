/*
 * rendezvous.c - how the psruns of a multi-host job find each other,
 * before any node starts.
 *
 *   host 0 (coordinator)                 host r >= 1
 *   listen on --coordinator exactly
 *                                        connect (retrying until it listens)
 *   <---------- handshake: HELLO / HELLO / AUTH / AUTH ------------->
 *                                        listen on its bridge address
 *   <---------- LAYOUT (ABI, hashes of psrun and of the program,
 *               nodes, threads, bridge address) ----------------------
 *   check it against its own: REFUSE + ABORT the job on a mismatch
 *   ... every host joined (else: ABORT naming the missing ranks) ...
 *   ----------- PEERS (every host's bridge address) --------------->
 *                                        connect to hosts 1 .. r-1,
 *                                        then node i's data connection
 *                                        to hosts 0 .. r-1 for every i;
 *                                        accept hosts r+1 .. H-1
 *                                        (each with the handshake)
 *   accept every other host's data connections
 *
 * Data connections: one TCP connection per pair of hosts and node index i
 * (every host runs the same -n), between node i of both hosts; psrun hands
 * each to its node (PSMEM_DATA_FDS) and the nodes send PULL/PUSH/MOVE and
 * their answers over it without the bridges (bridge_link.c).  Each is made
 * with the same handshake; its HELLO says what it is for (chan: 0 bridge,
 * 1 + i data of node i), so a listener tells them apart in any order.
 *
 * Handshake (auth.c): the side that connected sends HELLO (rank, hosts,
 * nonce); the other answers HELLO with its own nonce; the connector proves
 * the token (AUTH over the acceptor's nonce); the acceptor checks it -
 * REFUSE "wrong job token" and close otherwise - and proves it in turn.
 * Until then frames are limited to PS__FRAME_MAX_AUTH bytes and only these
 * types are accepted.
 *
 * Invariants
 *   - Every wait has a deadline: the whole rendezvous is bounded by
 *     timeout_ns (a host that does not show up fails the job, named), one
 *     stranger's handshake by 5 s; cancel_fd (psrun's signalfd) stops it.
 *   - A connection that fails the handshake is closed and logged; the
 *     rendezvous goes on waiting for the real host.
 *   - At the end every host holds exactly one authenticated bridge
 *     connection to every other host, one authenticated data connection
 *     per other host and node, and no listener: no stranger can connect
 *     later.
 *   - Bytes after the last rendezvous frame stay in the sockets for the
 *     bridge (netio reads frames exactly).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge.h"
#include "util.h"

#define HANDSHAKE_NS (5ULL * 1000 * 1000 * 1000)

struct conn_ctx {
	struct ps__rdv *r;
	int fd;
	uint64_t deadline;
	char peer[128];           /* "ADDR:PORT" for messages */
};

static uint8_t *frame_buf(struct ps__rdv *r)
{
	return r->buf;
}

static void logf_(struct ps__rdv *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(struct ps__rdv *r, const char *fmt, ...)
{
	if (!r->log)
		return;
	va_list ap;
	va_start(ap, fmt);
	fprintf(r->log, "psrun: host %d: ", r->rank);
	vfprintf(r->log, fmt, ap);
	fputc('\n', r->log);
	va_end(ap);
	fflush(r->log);
}

static int fail(struct ps__rdv *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct ps__rdv *r, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->err, sizeof r->err, fmt, ap);
	va_end(ap);
	return code;
}

static void peer_name(int fd, char *out, size_t len)
{
	char a[64];
	uint16_t p;
	if (ps__net_peer(fd, a, sizeof a, &p) == 0)
		snprintf(out, len, "%s%s%s:%u", strchr(a, ':') ? "[" : "", a, strchr(a, ':') ? "]" : "", (unsigned)p);
	else
		snprintf(out, len, "?");
}

static int send_note(struct conn_ctx *c, unsigned type, int code, const char *text)
{
	uint8_t *f = frame_buf(c->r);
	uint32_t len = ps__note_enc(f + PS__FRAME_HDR, code, text);
	return ps__net_send_frame(c->fd, f, type, (uint16_t)c->r->rank, 0, len, c->deadline);
}

/* Receives one frame of the wanted type.  A REFUSE or ABORT from the peer
 * becomes an error whose text is in note. */
static long recv_want(struct conn_ctx *c, unsigned want, uint32_t max_body, struct ps__frame *f,
		      struct ps__note *note)
{
	note->text[0] = 0;
	long rc = ps__net_recv_frame(c->fd, frame_buf(c->r), c->r->buf_size, max_body, c->deadline,
				     c->r->cancel_fd, f);
	if (rc < 0)
		return rc;
	if (f->type == want)
		return rc;
	if ((f->type == PS__F_REFUSE || f->type == PS__F_ABORT) && ps__note_dec(f->body, f->len, note) == 0)
		return note->code < 0 ? note->code : PS_EMISMATCH;
	snprintf(note->text, sizeof note->text, "unexpected frame of type %u", f->type);
	return PS_EFRAME_TYPE;
}

static const char *reason(long rc, const struct ps__note *note)
{
	if (note->text[0])
		return note->text;
	if (rc == -ETIMEDOUT)
		return "no answer in time";
	if (rc == -ECONNRESET)
		return "connection closed";
	return ps_strerror((int)rc);
}

/* --------------------------------------------------------------- handshake */

/* The host count HELLOs carry: the ranks of an elastic job (EL1) */
static int hello_hosts(const struct ps__rdv *r)
{
	return r->hello_hosts > 0 ? r->hello_hosts : r->hosts;
}

static int send_hello(struct conn_ctx *c, const uint8_t nonce[PS__NONCE_BYTES], uint32_t chan)
{
	struct ps__hello h = {.rank = (uint16_t)c->r->rank, .hosts = (uint16_t)hello_hosts(c->r), .chan = chan};
	memcpy(h.nonce, nonce, PS__NONCE_BYTES);
	uint8_t *f = frame_buf(c->r);
	ps__hello_enc(f + PS__FRAME_HDR, &h);
	return ps__net_send_frame(c->fd, f, PS__F_HELLO, h.rank, 0, PS__HELLO_SIZE, c->deadline);
}

static int send_auth(struct conn_ctx *c, char role, const uint8_t vn[PS__NONCE_BYTES],
		     const uint8_t pn[PS__NONCE_BYTES], int peer_rank)
{
	uint8_t *f = frame_buf(c->r);
	ps__auth_mac(&c->r->token, role, vn, pn, (uint16_t)c->r->rank, (uint16_t)peer_rank, f + PS__FRAME_HDR);
	return ps__net_send_frame(c->fd, f, PS__F_AUTH, (uint16_t)c->r->rank, 0, PS__MAC_BYTES, c->deadline);
}

/* We connected to the host that should be expect_rank, for chan
 * (PS__CHAN_BRIDGE, or 1 + node: a data connection). */
static int handshake_client(struct conn_ctx *c, int expect_rank, uint32_t chan, char *why, size_t whylen)
{
	struct ps__rdv *r = c->r;
	uint8_t mine[PS__NONCE_BYTES];
	struct ps__frame f;
	struct ps__note note;
	struct ps__hello h;
	ps__auth_nonce(mine);
	long rc = send_hello(c, mine, chan);
	if (rc == 0)
		rc = recv_want(c, PS__F_HELLO, PS__FRAME_MAX_AUTH, &f, &note);
	if (rc >= 0 && (rc = ps__hello_dec(f.body, f.len, &h)) == 0 &&
	    (h.hosts != hello_hosts(r) || h.rank != expect_rank || h.chan != chan)) {
		snprintf(why, whylen, "it says it is host %u of %u (connection %u), expected host %d of %d (%u)",
			 h.rank, h.hosts, h.chan, expect_rank, hello_hosts(r), chan);
		return PS_EMISMATCH;
	}
	if (rc >= 0)
		rc = send_auth(c, 'C', h.nonce, mine, expect_rank);
	if (rc >= 0)
		rc = recv_want(c, PS__F_AUTH, PS__FRAME_MAX_AUTH, &f, &note);
	if (rc >= 0 && f.len != PS__MAC_BYTES)
		rc = PS_EFRAME_BODY;
	if (rc >= 0 && (rc = ps__auth_verify(&r->token, 'S', mine, h.nonce, (uint16_t)expect_rank,
					      (uint16_t)r->rank, f.body)) != 0) {
		snprintf(why, whylen, "it failed authentication: it does not hold this job's token");
		return (int)rc;
	}
	if (rc < 0)
		snprintf(why, whylen, "%.900s", reason(rc, &note));
	return rc < 0 ? (int)rc : 0;
}

/* A host connected to us; on success *peer_rank is its authenticated rank
 * and *chan what it says the connection is for. */
static int handshake_server(struct conn_ctx *c, int *peer_rank, uint32_t *chan, char *why, size_t whylen)
{
	struct ps__rdv *r = c->r;
	uint8_t mine[PS__NONCE_BYTES];
	struct ps__frame f;
	struct ps__note note;
	struct ps__hello h;
	long rc = recv_want(c, PS__F_HELLO, PS__FRAME_MAX_AUTH, &f, &note);
	if (rc >= 0)
		rc = ps__hello_dec(f.body, f.len, &h);
	if (rc == 0 && (h.hosts != hello_hosts(r) || h.rank == r->rank)) {
		bool el = h.hosts == PS__ELASTIC_HOSTS || hello_hosts(r) == (int)PS__ELASTIC_HOSTS;
		snprintf(why, whylen, "it says it is host %u of %u; this is host %d of %d%s", h.rank, h.hosts, r->rank,
			 hello_hosts(r), el ? " (an elastic job counts 64 host ranks: give --elastic to every host "
					      "or to none)" : "");
		send_note(c, PS__F_REFUSE, PS_EMISMATCH, why);
		return PS_EMISMATCH;
	}
	ps__auth_nonce(mine);
	if (rc == 0)
		rc = send_hello(c, mine, h.chan);
	if (rc == 0)
		rc = recv_want(c, PS__F_AUTH, PS__FRAME_MAX_AUTH, &f, &note);
	if (rc >= 0 && f.len != PS__MAC_BYTES)
		rc = PS_EFRAME_BODY;
	if (rc >= 0 && ps__auth_verify(&r->token, 'C', mine, h.nonce, h.rank, (uint16_t)r->rank, f.body) != 0) {
		snprintf(why, whylen, "wrong job token");
		send_note(c, PS__F_REFUSE, PS_EAUTH, "wrong job token");
		return PS_EAUTH;
	}
	if (rc >= 0)
		rc = send_auth(c, 'S', h.nonce, mine, h.rank);
	if (rc < 0) {
		snprintf(why, whylen, "%.900s", reason(rc, &note));
		return (int)rc;
	}
	*peer_rank = h.rank;
	*chan = h.chan;
	return 0;
}

static int accept_higher(struct ps__rdv *r, int lfd, bool mesh, uint64_t deadline);

/* ------------------------------------------------------------ coordinator */

static void hash_hex(const uint8_t *h, char out[17])
{
	for (int i = 0; i < 8; i++)
		snprintf(out + 2 * i, 3, "%02x", h[i]);
}

/* Compares a host's layout with ours; false with the reason in why. */
static bool layout_matches_me(const struct ps__layout *me, const struct ps__layout *l, char *why, size_t n);

static bool layout_matches(const struct ps__rdv *r, const struct ps__layout *l, char *why, size_t n)
{
	if (l->rank == PS__JOIN_RANK && r->hello_hosts) {
		/* a joiner (EL1): the same checks, the same words, no rank yet:
		 * "host 63 (name) ..." becomes "joining host (name) ..." */
		char w[PS__NOTE_MAX];
		if (layout_matches_me(&r->me, l, w, sizeof w))
			return true;
		const char *rest = strchr(w, '(');
		snprintf(why, n, "joining host %.900s", rest ? rest : w);
		return false;
	}
	return layout_matches_me(&r->me, l, why, n);
}

static bool layout_matches_me(const struct ps__layout *me, const struct ps__layout *l, char *why, size_t n)
{
	char a[17], b[17];
	if (l->abi != me->abi) {
		snprintf(why, n, "host %u (%s) has psmem ABI %u, host 0 has %u", l->rank, l->name, l->abi, me->abi);
		return false;
	}
	if (memcmp(l->psrun_hash, me->psrun_hash, PS__HASH_BYTES) != 0) {
		hash_hex(l->psrun_hash, a);
		hash_hex(me->psrun_hash, b);
		snprintf(why, n, "host %u (%s) runs a different psrun (sha256 %s..., host 0: %s...)", l->rank,
			 l->name, a, b);
		return false;
	}
	if (memcmp(l->prog_hash, me->prog_hash, PS__HASH_BYTES) != 0) {
		hash_hex(l->prog_hash, a);
		hash_hex(me->prog_hash, b);
		snprintf(why, n, "host %u (%s) runs a different program binary (sha256 %s..., host 0: %s...)",
			 l->rank, l->name, a, b);
		return false;
	}
	if (l->nodes != me->nodes || l->threads != me->threads) {
		snprintf(why, n, "host %u (%s) starts %u nodes x %u threads, host 0 %u x %u: every host must "
			 "use the same -n and -t", l->rank, l->name, l->nodes, l->threads, me->nodes, me->threads);
		return false;
	}
	return true;
}

static void abort_joined(struct ps__rdv *r, const char *text)
{
	for (int i = 0; i < r->hosts; i++) {
		if (r->fd[i] < 0)
			continue;
		struct conn_ctx c = {.r = r, .fd = r->fd[i], .deadline = ps__now_ns() + 1000000000ULL};
		send_note(&c, PS__F_ABORT, PS_EHOSTDOWN, text);
	}
}

static void missing_list(struct ps__rdv *r, char *out, size_t n)
{
	size_t at = 0;
	out[0] = 0;
	for (int i = 1; i < r->hosts && at < n; i++)
		if (r->fd[i] < 0)
			at += (size_t)snprintf(out + at, n - at, "%s%d", at ? ", " : "", i);
}

/* Takes one connection on the coordinator's listener: handshake, layout,
 * checks.  Returns 0 (joined or refused and logged) or a fatal code. */
static int admit(struct ps__rdv *r, int fd, uint64_t deadline)
{
	struct conn_ctx c = {.r = r, .fd = fd};
	peer_name(fd, c.peer, sizeof c.peer);
	uint64_t hs = ps__now_ns() + HANDSHAKE_NS;
	c.deadline = hs < deadline ? hs : deadline;
	char why[PS__NOTE_MAX];
	int rank = -1;
	uint32_t chan = 0;
	int rc = handshake_server(&c, &rank, &chan, why, sizeof why);
	if (rc == 0 && chan != PS__CHAN_BRIDGE)
		rc = PS_EMISMATCH, snprintf(why, sizeof why, "a data connection before the host list was sent");
	struct ps__frame f;
	struct ps__note note;
	struct ps__layout l;
	if (rc == 0) {
		long got = recv_want(&c, PS__F_LAYOUT, PS__LAYOUT_MAX, &f, &note);
		rc = got < 0 ? (int)got : ps__layout_dec(f.body, f.len, &l);
		if (rc)
			snprintf(why, sizeof why, "no layout from it: %.900s", reason(rc, &note));
		else if (l.rank != rank || l.hosts != hello_hosts(r))
			rc = PS_EFRAME_BODY, snprintf(why, sizeof why, "its layout says host %u of %u", l.rank, l.hosts);
	}
	if (rc == -EINTR) {
		close(fd);
		return rc;
	}
	if (rc) {
		logf_(r, "refused a connection from %s: %s", c.peer, why);
		close(fd);
		return 0;
	}
	if (r->fd[rank] >= 0) {
		snprintf(why, sizeof why, "host %d joined twice (from %s and again from %s)", rank,
			 r->addr[rank].addr, c.peer);
		send_note(&c, PS__F_REFUSE, PS_EMISMATCH, why);
		close(fd);
		abort_joined(r, why);
		return fail(r, PS_EMISMATCH, "%s", why);
	}
	if (!layout_matches(r, &l, why, sizeof why)) {
		send_note(&c, PS__F_REFUSE, PS_EMISMATCH, why);
		close(fd);
		abort_joined(r, why);
		return fail(r, PS_EMISMATCH, "%s", why);
	}
	r->fd[rank] = fd;
	r->addr[rank].port = l.port;
	snprintf(r->addr[rank].addr, sizeof r->addr[rank].addr, "%s", l.addr);
	snprintf(r->names[rank], sizeof r->names[rank], "%s", l.name);
	return 0;
}

static int coordinate(struct ps__rdv *r, uint64_t deadline)
{
	char msg[256];
	int lfd = ps__net_listen(r->coord_host, r->coord_port, msg, sizeof msg);
	if (lfd < 0)
		return fail(r, lfd, "%s", msg);
	snprintf(r->addr[0].addr, sizeof r->addr[0].addr, "%.63s", r->coord_host);
	r->addr[0].port = r->coord_port;
	snprintf(r->names[0], sizeof r->names[0], "%s", r->me.name);
	int joined = 0, rc = 0;
	while (joined < r->hosts - 1) {
		int fd = ps__net_accept(lfd, deadline, r->cancel_fd);
		if (fd == -ETIMEDOUT) {
			char miss[512];
			missing_list(r, miss, sizeof miss);
			rc = fail(r, -ETIMEDOUT, "host%s %s did not join within %u s (coordinator %s:%u)",
				  strchr(miss, ',') ? "s" : "", miss, (unsigned)(r->timeout_ns / 1000000000ULL), r->coord_host,
				  (unsigned)r->coord_port);
			abort_joined(r, r->err);
			break;
		}
		if (fd < 0) {
			rc = fd == -EINTR ? fd : fail(r, fd, "cannot accept hosts: %s", strerror(-fd));
			break;
		}
		rc = admit(r, fd, deadline);
		if (rc)
			break;
		joined = 0;
		for (int i = 1; i < r->hosts; i++)
			joined += r->fd[i] >= 0;
	}
	if (rc) {
		close(lfd);
		return rc;
	}
	uint8_t *f = frame_buf(r);
	uint32_t len = ps__peers_enc(f + PS__FRAME_HDR, r->addr, r->hosts);
	for (int i = 1; i < r->hosts; i++) {
		int s = ps__net_send_frame(r->fd[i], f, PS__F_PEERS, 0, 0, len, ps__now_ns() + HANDSHAKE_NS);
		if (s) {
			close(lfd);
			return fail(r, s, "cannot send the host list to host %d (%s:%u): %s", i, r->addr[i].addr,
				    (unsigned)r->addr[i].port, ps_strerror(s));
		}
	}
	/* the data connections of every other host's nodes, with a full
	 * timeout of their own as the mesh's */
	rc = accept_higher(r, lfd, false, ps__now_ns() + r->timeout_ns);
	if (rc == 0 && r->keep_listener)
		r->listen_fd = lfd; /* EL1: joiners connect here */
	else
		close(lfd);
	return rc;
}

/* ------------------------------------------------------------ other hosts */

static int join(struct ps__rdv *r, uint64_t deadline, int *lfd)
{
	char msg[256], why[PS__NOTE_MAX];
	/* the coordinator decides about missing hosts within timeout: give its
	 * verdict time to arrive before concluding it is not there */
	uint64_t late = deadline + HANDSHAKE_NS;
	int fd = ps__net_connect(r->coord_host, r->coord_port, deadline, r->cancel_fd, msg, sizeof msg);
	if (fd == -EINTR)
		return fd;
	if (fd < 0)
		return fail(r, fd, "coordinator (host 0) at %s:%u: %s", r->coord_host, (unsigned)r->coord_port, msg);
	r->fd[0] = fd;
	snprintf(r->addr[0].addr, sizeof r->addr[0].addr, "%.63s", r->coord_host);
	r->addr[0].port = r->coord_port;
	snprintf(r->names[0], sizeof r->names[0], "coordinator");
	struct conn_ctx c = {.r = r, .fd = fd, .deadline = late};
	int rc = handshake_client(&c, 0, PS__CHAN_BRIDGE, why, sizeof why);
	if (rc)
		return rc == -EINTR ? rc
				    : fail(r, rc, "coordinator (host 0) at %s:%u refused this host or failed: %s",
					   r->coord_host, (unsigned)r->coord_port, why);
	/* our bridge listens on the address given, else on the address that
	 * reaches the coordinator: the right interface by construction */
	char host[256];
	uint16_t unused;
	if (r->bind_host[0])
		snprintf(host, sizeof host, "%s", r->bind_host);
	else if (ps__net_local(fd, host, sizeof host, &unused) != 0)
		return fail(r, -EIO, "cannot tell the local address of the connection to the coordinator");
	*lfd = ps__net_listen(host, r->bind_port, msg, sizeof msg);
	if (*lfd < 0)
		return fail(r, *lfd, "bridge listener: %s", msg);
	r->me.rank = (uint16_t)r->rank;
	r->me.hosts = (uint16_t)hello_hosts(r);
	if (ps__net_local(*lfd, r->me.addr, sizeof r->me.addr, &r->me.port) != 0)
		return fail(r, -EIO, "cannot tell the bridge listener's address");
	uint8_t *f = frame_buf(r);
	uint32_t len = ps__layout_enc(f + PS__FRAME_HDR, &r->me);
	rc = ps__net_send_frame(fd, f, PS__F_LAYOUT, (uint16_t)r->rank, 0, len, late);
	struct ps__frame fr;
	struct ps__note note;
	long got = rc ? rc : recv_want(&c, PS__F_PEERS, r->buf_size - PS__FRAME_HDR, &fr, &note);
	if (got == -EINTR)
		return -EINTR;
	if (got < 0)
		return fail(r, (int)got, "the coordinator (host 0) at %s:%u stopped the job: %s", r->coord_host,
			    (unsigned)r->coord_port, got == -ETIMEDOUT ? "no host list in time" : reason(got, &note));
	rc = ps__peers_dec(fr.body, fr.len, r->addr, r->hosts);
	if (rc)
		return fail(r, rc, "malformed host list from the coordinator");
	/* host 0's entry is the coordinator address we already use */
	snprintf(r->addr[0].addr, sizeof r->addr[0].addr, "%.63s", r->coord_host);
	r->addr[0].port = r->coord_port;
	return 0;
}

/* A bridge connection (chan PS__CHAN_BRIDGE) or node i's data connection
 * (chan 1 + i) to the lower host j. */
static int connect_lower(struct ps__rdv *r, int j, uint32_t chan, uint64_t deadline)
{
	char msg[256], why[PS__NOTE_MAX];
	int fd = ps__net_connect(r->addr[j].addr, r->addr[j].port, deadline, r->cancel_fd, msg, sizeof msg);
	if (fd == -EINTR)
		return fd;
	if (fd < 0)
		return fail(r, fd, "host %d at %s:%u: %s", j, r->addr[j].addr, (unsigned)r->addr[j].port, msg);
	struct conn_ctx c = {.r = r, .fd = fd, .deadline = deadline};
	int rc = handshake_client(&c, j, chan, why, sizeof why);
	if (rc) {
		close(fd);
		if (rc == -EINTR)
			return rc;
		if (chan == PS__CHAN_BRIDGE)
			return fail(r, rc, "host %d at %s:%u: %s", j, r->addr[j].addr, (unsigned)r->addr[j].port, why);
		return fail(r, rc, "host %d at %s:%u: data connection of node %u: %s", j, r->addr[j].addr,
			    (unsigned)r->addr[j].port, chan - 1, why);
	}
	if (chan == PS__CHAN_BRIDGE)
		r->fd[j] = fd;
	else
		r->data_fd[j * r->nodes + (int)chan - 1] = fd;
	return 0;
}

/* The connections still expected from higher ranks: bridge connections
 * (when mesh) and data connections; -1 when none. */
static int first_missing(const struct ps__rdv *r, bool mesh)
{
	for (int i = r->rank + 1; i < r->hosts; i++) {
		if (mesh && r->fd[i] < 0)
			return i;
		for (int k = 0; k < r->nodes; k++)
			if (r->data_fd[i * r->nodes + k] < 0)
				return i;
	}
	return -1;
}

/* Accepts what the higher ranks connect: their bridge connections (when
 * mesh: the coordinator has them from the join) and every data
 * connection, in whatever order they come. */
static int accept_higher(struct ps__rdv *r, int lfd, bool mesh, uint64_t deadline)
{
	char why[PS__NOTE_MAX];
	for (;;) {
		int missing = first_missing(r, mesh);
		if (missing < 0)
			return 0;
		int fd = ps__net_accept(lfd, deadline, r->cancel_fd);
		if (fd == -ETIMEDOUT)
			return fail(r, fd, "host %d (%s:%u) did not connect to this host within %u s", missing,
				    r->addr[missing].addr, (unsigned)r->addr[missing].port,
				    (unsigned)(r->timeout_ns / 1000000000ULL));
		if (fd == -EINTR)
			return fd; /* cancelled: the caller says why */
		if (fd < 0) /* EMFILE, ENOBUFS, ...: named, not an empty error */
			return fail(r, fd, "accepting the connection of host %d (%s:%u): %s", missing,
				    r->addr[missing].addr, (unsigned)r->addr[missing].port, strerror(-fd));
		struct conn_ctx c = {.r = r, .fd = fd};
		peer_name(fd, c.peer, sizeof c.peer);
		uint64_t hs = ps__now_ns() + HANDSHAKE_NS;
		c.deadline = hs < deadline ? hs : deadline;
		int rank = -1;
		uint32_t chan = 0;
		int rc = handshake_server(&c, &rank, &chan, why, sizeof why);
		if (rc == -EINTR) {
			close(fd);
			return rc;
		}
		int *slot = NULL;
		if (rc == 0 && rank > r->rank)
			slot = chan == PS__CHAN_BRIDGE ? (mesh ? &r->fd[rank] : NULL)
			       : chan <= (uint32_t)r->nodes ? &r->data_fd[rank * r->nodes + (int)chan - 1]
							    : NULL;
		if (rc == 0 && (!slot || *slot >= 0)) {
			snprintf(why, sizeof why, "host %d may not connect here (connection %u: not a missing one of a "
				 "higher rank)", rank, chan);
			rc = PS_EMISMATCH;
		}
		if (rc) {
			logf_(r, "refused a connection from %s: %s", c.peer, why);
			close(fd);
			continue;
		}
		*slot = fd;
	}
}

int ps__rendezvous(struct ps__rdv *r)
{
	r->err[0] = 0;
	r->buf_size = sizeof r->buf;
	r->listen_fd = -1;
	r->nodes = (int)r->me.nodes;
	free(r->data_fd);
	r->data_fd = malloc((size_t)r->hosts * (size_t)(r->nodes > 0 ? r->nodes : 1) * sizeof *r->data_fd);
	if (!r->data_fd)
		return fail(r, -ENOMEM, "out of memory");
	for (int i = 0; i < r->hosts * r->nodes; i++)
		r->data_fd[i] = -1;
	for (int i = 0; i < PS__MAX_HOSTS; i++) {
		r->fd[i] = -1;
		r->names[i][0] = 0;
	}
	r->me.rank = (uint16_t)r->rank;
	r->me.hosts = (uint16_t)hello_hosts(r);
	uint64_t deadline = ps__now_ns() + r->timeout_ns;
	if (r->rank == 0)
		return coordinate(r, deadline);
	int lfd = -1;
	int rc = join(r, deadline, &lfd);
	/* the mesh gets a full timeout of its own once the host list is in */
	uint64_t mesh = ps__now_ns() + r->timeout_ns;
	for (int j = 1; rc == 0 && j < r->rank; j++)
		rc = connect_lower(r, j, PS__CHAN_BRIDGE, mesh);
	/* then the data connections to every lower host (host 0 accepts them
	 * on the coordinator's listener once the host list is out); connects
	 * wait only for lower ranks, so no cycle */
	for (int j = 0; rc == 0 && j < r->rank; j++)
		for (int i = 0; rc == 0 && i < r->nodes; i++)
			rc = connect_lower(r, j, 1u + (uint32_t)i, mesh);
	if (rc == 0)
		rc = accept_higher(r, lfd, true, mesh);
	if (rc == 0 && r->keep_listener && lfd >= 0)
		r->listen_fd = lfd; /* EL1: later joiners connect here */
	else if (lfd >= 0)
		close(lfd);
	return rc;
}

/* ------------------------------------------------------------ elastic (EL1) */

int ps__door_take(struct ps__rdv *r, int fd, int *rank, uint32_t *chan, struct ps__layout *layout)
{
	struct conn_ctx c = {.r = r, .fd = fd, .deadline = ps__now_ns() + HANDSHAKE_NS};
	peer_name(fd, c.peer, sizeof c.peer);
	char why[PS__NOTE_MAX];
	int rc = handshake_server(&c, rank, chan, why, sizeof why);
	if (rc == 0 && *rank == (int)PS__JOIN_RANK) {
		struct ps__frame f;
		struct ps__note note;
		if (r->rank != 0 || *chan != PS__CHAN_BRIDGE) {
			snprintf(why, sizeof why, "a joining host must ask the coordinator (host 0) first");
			send_note(&c, PS__F_REFUSE, PS_EMISMATCH, why);
			rc = PS_EMISMATCH;
		} else {
			long got = recv_want(&c, PS__F_LAYOUT, PS__LAYOUT_MAX, &f, &note);
			rc = got < 0 ? (int)got : ps__layout_dec(f.body, f.len, layout);
			if (rc)
				snprintf(why, sizeof why, "no layout from it: %.900s", reason(rc, &note));
			else if (layout->rank != PS__JOIN_RANK || layout->hosts != hello_hosts(r))
				rc = PS_EFRAME_BODY,
				snprintf(why, sizeof why, "its layout says host %u of %u", layout->rank, layout->hosts);
			else if (!layout_matches(r, layout, why, sizeof why)) {
				send_note(&c, PS__F_REFUSE, PS_EMISMATCH, why);
				rc = PS_EMISMATCH;
			}
		}
	} else if (rc == 0 && (*chan > (uint32_t)r->me.nodes || *rank < 0 || *rank >= hello_hosts(r))) {
		snprintf(why, sizeof why, "host %d may not connect here (connection %u: a bridge or one of %u "
			 "nodes' data connections)", *rank, *chan, r->me.nodes);
		send_note(&c, PS__F_REFUSE, PS_EMISMATCH, why);
		rc = PS_EMISMATCH;
	}
	if (rc) {
		logf_(r, "refused a connection from %s: %s; the job goes on", c.peer, why);
		close(fd);
	}
	return rc;
}

int ps__door_welcome(struct ps__rdv *r, int fd, const struct ps__welcome *wl, const char *why)
{
	struct conn_ctx c = {.r = r, .fd = fd, .deadline = ps__now_ns() + HANDSHAKE_NS};
	if (why)
		return send_note(&c, PS__F_REFUSE, PS_EMISMATCH, why);
	uint8_t *f = frame_buf(r);
	uint32_t len = ps__welcome_enc(f + PS__FRAME_HDR, wl);
	return ps__net_send_frame(fd, f, PS__F_WELCOME, (uint16_t)r->rank, 0, len, c.deadline);
}

int ps__join(struct ps__rdv *r, struct ps__welcome *wl)
{
	char msg[256], why[PS__NOTE_MAX];
	r->err[0] = 0;
	r->buf_size = sizeof r->buf;
	r->listen_fd = -1;
	r->nodes = (int)r->me.nodes;
	r->rank = (int)PS__JOIN_RANK;
	r->hosts = hello_hosts(r);
	for (int i = 0; i < PS__MAX_HOSTS; i++)
		r->fd[i] = -1;
	free(r->data_fd);
	r->data_fd = malloc((size_t)r->hosts * (size_t)(r->nodes > 0 ? r->nodes : 1) * sizeof *r->data_fd);
	if (!r->data_fd)
		return fail(r, -ENOMEM, "out of memory");
	for (int i = 0; i < r->hosts * r->nodes; i++)
		r->data_fd[i] = -1;
	uint64_t deadline = ps__now_ns() + r->timeout_ns;
	int fd = ps__net_connect(r->coord_host, r->coord_port, deadline, r->cancel_fd, msg, sizeof msg);
	if (fd == -EINTR)
		return fd;
	if (fd < 0)
		return fail(r, fd, "coordinator (host 0) at %s:%u: %s", r->coord_host, (unsigned)r->coord_port, msg);
	r->fd[0] = fd;
	struct conn_ctx c = {.r = r, .fd = fd, .deadline = deadline};
	int rc = handshake_client(&c, 0, PS__CHAN_BRIDGE, why, sizeof why);
	if (rc)
		return rc == -EINTR ? rc
				    : fail(r, rc, "coordinator (host 0) at %s:%u refused this host or failed: %s",
					   r->coord_host, (unsigned)r->coord_port, why);
	char host[256];
	uint16_t unused;
	if (r->bind_host[0])
		snprintf(host, sizeof host, "%s", r->bind_host);
	else if (ps__net_local(fd, host, sizeof host, &unused) != 0)
		return fail(r, -EIO, "cannot tell the local address of the connection to the coordinator");
	int lfd = ps__net_listen(host, r->bind_port, msg, sizeof msg);
	if (lfd < 0)
		return fail(r, lfd, "bridge listener: %s", msg);
	r->listen_fd = lfd;
	r->me.rank = (uint16_t)PS__JOIN_RANK;
	r->me.hosts = (uint16_t)hello_hosts(r);
	if (ps__net_local(lfd, r->me.addr, sizeof r->me.addr, &r->me.port) != 0)
		return fail(r, -EIO, "cannot tell the bridge listener's address");
	uint8_t *f = frame_buf(r);
	uint32_t len = ps__layout_enc(f + PS__FRAME_HDR, &r->me);
	rc = ps__net_send_frame(fd, f, PS__F_LAYOUT, (uint16_t)r->rank, 0, len, deadline);
	struct ps__frame fr;
	struct ps__note note;
	long got = rc ? rc : recv_want(&c, PS__F_WELCOME, PS__WELCOME_MAX, &fr, &note);
	if (got == -EINTR)
		return -EINTR;
	if (got < 0)
		return fail(r, (int)got, "the coordinator (host 0) at %s:%u refused this host: %s", r->coord_host,
			    (unsigned)r->coord_port, got == -ETIMEDOUT ? "no answer in time" : reason(got, &note));
	if (ps__welcome_dec(fr.body, fr.len, wl) != 0)
		return fail(r, PS_EFRAME_BODY, "malformed welcome from the coordinator");
	r->rank = wl->rank;
	/* the coordinator's entry is the address we already use */
	for (unsigned i = 0; i < wl->n; i++) {
		struct ps__welcome_host *h = &wl->h[i];
		if (h->rank == 0) {
			snprintf(h->a.addr, sizeof h->a.addr, "%.63s", r->coord_host);
			h->a.port = r->coord_port;
		}
		r->addr[h->rank] = h->a;
	}
	/* our bridge connection to every other host present (members and
	 * joiners still pending: every pair of hosts is connected) */
	for (unsigned i = 0; i < wl->n; i++) {
		int j = wl->h[i].rank;
		if (j == 0 || j == r->rank)
			continue;
		rc = connect_lower(r, j, PS__CHAN_BRIDGE, ps__now_ns() + r->timeout_ns);
		if (rc)
			return rc;
	}
	/* then node i's data connection to every host listed (LK6): their
	 * doors pass each to their node i (DATAFD), ours go to our nodes at
	 * their fork (PSMEM_DATA_FDS) */
	for (unsigned k = 0; k < wl->n; k++)
		for (int i = 0; i < r->nodes && wl->h[k].rank != r->rank; i++) {
			rc = connect_lower(r, wl->h[k].rank, 1u + (uint32_t)i, ps__now_ns() + r->timeout_ns);
			if (rc)
				return rc;
		}
	return 0;
}

void ps__rdv_close(struct ps__rdv *r)
{
	for (int i = 0; i < r->hosts; i++) {
		if (r->fd[i] >= 0)
			close(r->fd[i]);
		r->fd[i] = -1;
	}
	for (int i = 0; r->data_fd && i < r->hosts * r->nodes; i++)
		if (r->data_fd[i] >= 0)
			close(r->data_fd[i]);
	free(r->data_fd);
	r->data_fd = NULL;
	if (r->listen_fd >= 0)
		close(r->listen_fd);
	r->listen_fd = -1;
}
