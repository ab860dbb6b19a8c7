/* PRIVATE to psrun (libpslaunch.a) and the tests: bridge.h - the launch layer
 * of a multi-host job.  Not installed; applications include only psmem.h.
 *
 * Groups: job token and authentication (auth.c) / sockets and blocking
 * frame I/O (netio.c) / launch environment (launch_env.c) / rendezvous
 * (rendezvous.c) / the bridge loop in psrun (bridge.c).  The frames they
 * speak are net/frame.h's.
 */
#ifndef PSMEM_BRIDGE_H
#define PSMEM_BRIDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "frame.h"

/* ------------------------------------------------ job token, authentication */

#define PS__TOKEN_BYTES 32
#define PS__TOKEN_ENV   "PSMEM_TOKEN"

struct ps__token {
	uint8_t k[PS__TOKEN_BYTES];
};

/* 256 random bits (libsodium's randombytes). */
int ps__token_generate(struct ps__token *t);
/* Creates path (O_EXCL, mode 0600) holding the token as 64 hex digits. */
int ps__token_write(const char *path, const struct ps__token *t);
/* 64 hex digits, optionally followed by white space: 0 or PS_ETOKEN. */
int ps__token_parse(const char *text, struct ps__token *t);
/*
 * Loads a token file.  Refused (and nothing read) unless it is a regular
 * file owned by this user with no group/other permission bits:
 * PS_ETOKENPERM, with the reason in why.  -errno when it cannot be opened,
 * PS_ETOKEN when its content is not a token.
 */
int ps__token_load(const char *path, struct ps__token *t, char *why, size_t whylen);

/*
 * Challenge-response (HMAC-SHA256 keyed by the token).  Each side sends a
 * fresh nonce (HELLO); the prover answers its verifier's nonce with
 *   HMAC(token, "psmem-auth-1" | role | verifier nonce | prover nonce |
 *        prover rank | verifier rank)
 * role 'C' for the side that connected, 'S' for the side that accepted, so
 * an answer cannot be reflected back, and both nonces bind the session.
 */
void ps__auth_nonce(uint8_t nonce[PS__NONCE_BYTES]);
void ps__auth_mac(const struct ps__token *t, char role, const uint8_t verifier_nonce[PS__NONCE_BYTES],
		  const uint8_t prover_nonce[PS__NONCE_BYTES], uint16_t prover_rank, uint16_t verifier_rank,
		  uint8_t mac[PS__MAC_BYTES]);
/* Constant-time check of an answer: 0 or PS_EAUTH. */
int ps__auth_verify(const struct ps__token *t, char role, const uint8_t verifier_nonce[PS__NONCE_BYTES],
		    const uint8_t prover_nonce[PS__NONCE_BYTES], uint16_t prover_rank, uint16_t verifier_rank,
		    const uint8_t mac[PS__MAC_BYTES]);
/* SHA-256 of a file's content: 0 or -errno. */
int ps__hash_file(const char *path, uint8_t out[PS__HASH_BYTES]);

/* ----------------------------------------------------------- sockets */

/* "HOST:PORT" or "[V6ADDR]:PORT" -> host, port: 0 or -EINVAL. */
int ps__addr_split(const char *s, char *host, size_t hostlen, uint16_t *port);
/* Listens on exactly host:port (0: an ephemeral port).  Returns the
 * descriptor or a negative code with the reason in msg (a port in use is
 * named). */
int ps__net_listen(const char *host, uint16_t port, char *msg, size_t msglen);
/* Numeric address and port of a socket's own / its peer's end. */
int ps__net_local(int fd, char *addr, size_t addrlen, uint16_t *port);
int ps__net_peer(int fd, char *addr, size_t addrlen, uint16_t *port);
/* TCP_NODELAY and 4 MiB socket buffers. */
void ps__net_tune(int fd);
/* Connects, retrying while the peer is not listening yet, until the
 * deadline (CLOCK_MONOTONIC ns).  Returns the descriptor, -ETIMEDOUT,
 * -EINTR (cancel_fd became readable) or another negative code, with the
 * reason in msg. */
int ps__net_connect(const char *host, uint16_t port, uint64_t deadline_ns, int cancel_fd, char *msg, size_t msglen);
int ps__net_accept(int lfd, uint64_t deadline_ns, int cancel_fd);
int ps__net_send(int fd, const void *buf, size_t n, uint64_t deadline_ns);
/* Seals the frame whose body is at frame + PS__FRAME_HDR and sends it. */
int ps__net_send_frame(int fd, uint8_t *frame, unsigned type, uint16_t host, uint64_t req, uint32_t len,
		       uint64_t deadline_ns);
/* Receives exactly one frame into buf (cap bytes).  Returns its size, or
 * -ECONNRESET (closed before a frame began), PS_EFRAME_* (PS_EFRAME_TRUNC:
 * closed inside one), -ETIMEDOUT, -EINTR or -errno. */
long ps__net_recv_frame(int fd, uint8_t *buf, size_t cap, uint32_t max_body, uint64_t deadline_ns, int cancel_fd,
			struct ps__frame *f);
/* The same with a checksum mode of ps__frame_parse (PS__CRC_*): tests
 * speaking on a data connection. */
long ps__net_recv_frame_mode(int fd, uint8_t *buf, size_t cap, uint32_t max_body, unsigned crc, uint64_t deadline_ns,
			     int cancel_fd, struct ps__frame *f);

/* ------------------------------------------------- launch environment */

struct ps__launch {
	int hosts;                /* 1: a single-host job */
	int rank;
	char source[16];          /* "flags", "Open MPI", "PMI", "Slurm", "none" */
	char coord_host[256];     /* "" when not needed (one host) */
	uint16_t coord_port;
};

/*
 * Host rank, host count and coordinator of this psrun, from its flags
 * (flag_hosts / flag_rank < 0 and flag_coord NULL when not given) or the
 * launcher's environment envp (NULL-terminated "NAME=VALUE").  Returns 0,
 * or a negative code with the reason in err.  See launch_env.c.
 */
int ps__launch_resolve(int flag_hosts, int flag_rank, const char *flag_coord, char *const *envp,
		       struct ps__launch *l, char *err, size_t errlen);

/* --------------------------------------------------------- rendezvous */

/* Large (fixed arrays for PS__MAX_HOSTS): allocate it, do not put it on a
 * stack.  See rendezvous.c. */
struct ps__rdv {
	/* in */
	int rank, hosts;
	char coord_host[256];
	uint16_t coord_port;
	char bind_host[256];      /* this host's bridge address; "" = derived */
	uint16_t bind_port;       /* 0 = ephemeral */
	struct ps__token token;
	struct ps__layout me;     /* abi, nodes, threads, hashes, name */
	uint64_t timeout_ns;      /* for every host to show up */
	int cancel_fd;            /* readable = give up with -EINTR; -1 none */
	FILE *log;                /* refused strangers are logged here */
	/* psrun --elastic / --join (EL1): the host count in HELLOs (the ranks,
	 * PS__ELASTIC_HOSTS; 0: hosts), and the listener is kept open
	 * (listen_fd) for joiners instead of being closed */
	int hello_hosts;
	bool keep_listener;
	int listen_fd;            /* out: -1 unless keep_listener */
	/* out */
	int fd[PS__MAX_HOSTS];    /* authenticated connection to each peer; -1 self */
	int nodes;                /* me.nodes */
	int *data_fd;             /* [hosts * nodes]: node i's data connection to
				   * host h at [h * nodes + i]; -1 for self.
				   * Whoever takes one sets its entry to -1 */
	struct ps__peer_addr addr[PS__MAX_HOSTS];
	char names[PS__MAX_HOSTS][64]; /* host names (coordinator only) */
	char err[1024];           /* why it failed */
	/* scratch */
	uint8_t buf[PS__FRAME_HDR + 2 + PS__MAX_HOSTS * 66 + 64];
	size_t buf_size;
};

/* 0 with every peer connected; -EINTR when cancelled; else a negative
 * code and the reason in r->err (a missing host is named). */
int ps__rendezvous(struct ps__rdv *r);
/* Closes the connections still held in r->fd and r->data_fd. */
void ps__rdv_close(struct ps__rdv *r);

/*
 * Elastic jobs (EL1).  ps__join: psrun --join: connects to the coordinator
 * (r->coord_*), handshake as PS__JOIN_RANK, opens its own listener (kept:
 * r->listen_fd), sends its LAYOUT, gets WELCOME (its rank, the initial
 * host count, the hosts present) or REFUSE with the reason (r->err), then
 * makes its bridge connection to every other host listed (r->fd[h]).
 * r->rank is the new rank after it.  0 or a negative code with r->err.
 *
 * ps__door_take: one connection accepted on a kept listener: handshake,
 * and for a joiner asking the coordinator (rank PS__JOIN_RANK) its LAYOUT,
 * checked as at rendezvous (a mismatch is REFUSEd with the same message).
 * 0 with *rank (PS__JOIN_RANK: a joiner wanting a rank; *layout filled)
 * and *chan; else refused, logged and closed (the caller goes on).
 * ps__door_welcome sends the WELCOME (or, with why, a REFUSE).
 */
int ps__join(struct ps__rdv *r, struct ps__welcome *wl);
int ps__door_take(struct ps__rdv *r, int fd, int *rank, uint32_t *chan, struct ps__layout *layout);
int ps__door_welcome(struct ps__rdv *r, int fd, const struct ps__welcome *wl, const char *why);

/* ------------------------------------------------ the bridge (psrun) */

#define PS__HEARTBEAT_MS    200  /* a frame to every peer at least this often */
#define PS__PEER_TIMEOUT_MS 3000 /* silence that means death (env PSMEM_PEER_TIMEOUT_MS) */

struct ps__bridge;

struct ps__bridge_conf {
	int rank, hosts, nodes;
	const int *peer_fd;       /* [hosts], from the rendezvous; -1 for rank */
	const struct ps__peer_addr *addr; /* [hosts], for messages */
	const int *link_fd;       /* [nodes]: psrun's end of each node's link */
	FILE *log;
	/* psrun --on-host-failure continue: a peer that dies (or ABORTs) is
	 * dropped instead of stopping the job (see bridge.c, "Losing a
	 * host") */
	bool drop_failed;
	/* psrun --elastic (EL1-EL8): hosts is the number of ranks
	 * (PS__ELASTIC_HOSTS), home the initial host count; peers join with
	 * ps__bridge_add_peer and are members once admitted at a SYNC */
	bool elastic;
	int home;
	bool joiner;              /* psrun --join: a member once admitted */
	const uint8_t *member;    /* [hosts] or NULL (all): members at start */
};

struct ps__bridge_stats {
	uint64_t frames_out, frames_in;      /* data frames to / from peers */
	uint64_t wire_bytes_out, wire_bytes_in; /* TCP payload bytes, all frames */
	uint64_t barriers;
	int hosts_lost;                      /* peers dropped (drop_failed) */
	double last_recovery_ms;             /* loss seen -> first barrier over the rest released; -1 none yet */
};

/* Takes ownership of every descriptor in conf. */
struct ps__bridge *ps__bridge_new(const struct ps__bridge_conf *conf, int *err);
/* An epoll descriptor: readable when ps__bridge_step has work. */
int ps__bridge_fd(const struct ps__bridge *b);
/* Longest wait before ps__bridge_step must run again (heartbeats). */
int ps__bridge_timeout_ms(const struct ps__bridge *b);
/* Moves frames, runs timers.  0, or PS_EHOSTDOWN once the job must stop
 * because a peer failed (the reason is logged). */
int ps__bridge_step(struct ps__bridge *b);
/* Our nodes have all ended: BYE to every peer (code 0), else ABORT with
 * the reason. */
void ps__bridge_local_done(struct ps__bridge *b, int code, const char *why);
/* After local_done: every peer has said goodbye or is gone. */
bool ps__bridge_finished(const struct ps__bridge *b);
/* Why the job must stop (the first peer failure), or NULL. */
const char *ps__bridge_failure(const struct ps__bridge *b);
void ps__bridge_stats(const struct ps__bridge *b, struct ps__bridge_stats *out);
void ps__bridge_free(struct ps__bridge *b);
/* Elastic jobs.  Under the same lock as ps__bridge_step (psrun's door
 * thread calls them): an authenticated connection of host rank (a joiner)
 * becomes a peer, pending until admitted at a SYNC (0, -EEXIST if that
 * rank is or was in use, -EINVAL); the hosts a new joiner must connect to
 * (w->h, w->n); a leave request for host (this one, or sent to it). */
int ps__bridge_add_peer(struct ps__bridge *b, int rank, int fd, const struct ps__peer_addr *addr);
int ps__bridge_live(const struct ps__bridge *b, struct ps__welcome *w); /* -ENOENT: not a member now */
int ps__bridge_request_leave(struct ps__bridge *b, int host);
/* A joiner's data connection for node (authenticated, chan 1 + node):
 * passed to that node over its link (SCM_RIGHTS with a DATAFD frame, after
 * what is queued there) and closed here.  0 or a negative code (fd is the
 * caller's then).  A joiner is listed as pending only once all of its
 * nodes' connections were passed (EL1). */
int ps__bridge_add_data(struct ps__bridge *b, int rank, int node, int fd);

#endif /* PSMEM_BRIDGE_H */
