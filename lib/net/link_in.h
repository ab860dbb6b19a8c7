/* PRIVATE to net/bridge_link.c, link_remote.c, link_serve.c: link_in.h - the
 * link's state and what its files share (invariants LK1-LK7: bridge_link.c). */
#ifndef PSMEM_LINK_IN_H
#define PSMEM_LINK_IN_H

#include <pthread.h>
#include <stdatomic.h>

#include "filter.h"
#include "link.h"

struct rpc {
	uint32_t seq;             /* (LK1) */
	bool busy;
	uint32_t next_free;
	struct ps__rgroup *g;
	float *out;               /* pull: the caller's values; push: NULL */
	const uint32_t *pos;      /* n positions in the caller's key array */
	uint32_t n, value_len;
	int host;                 /* where the request went */
	bool keyed;               /* a PULL/PUSH: may be answered PS__EKCMISS (FL2) */
	uint8_t **raw;            /* a call (ps__link_calls): where its reply goes */
	uint32_t *raw_len;
};

/*
 * One pull or push batch of a multi-host job, routed in rounds (LK5): a
 * round sends the keys held elsewhere (by the hosts their words name) and
 * does the keys held here; keys redirected by the host that got them, or
 * that moved away while this host did them, are routed again in the next
 * round, when every frame of this one is answered.
 */
struct ps__rgroup {
	_Atomic uint32_t left;    /* frames not answered yet; futex word (LK2) */
	_Atomic int32_t err;      /* first failure, relaxed: read after left */
	ps_table *t;
	const ps_key *keys;
	float *out;
	const float *in;
	uint32_t n;               /* keys in the batch */
	uint32_t *pos;            /* this round's positions in flight, by host */
	/* positions to route again and, beside each, the host a redirect
	 * named (-1: the key is moving, pause first; -2: re-read its word).
	 * Appended by the link thread (redirects) and by the caller (its
	 * own misses), indexes from nnext (relaxed: the entries are read
	 * after left's acquire, or by the thread that wrote them) */
	uint32_t *next;
	int32_t *hint;
	_Atomic uint32_t nnext;
	uint32_t *cur, *scratch1, *scratch2; /* the round's own lists */
	int32_t *curhint, *owner;
	uint64_t local, repl;     /* keys done by this node's arena, by replicas */
};

/*
 * One of a node's connections: its link to the bridge (a Unix socket,
 * blocking writes: the bridge always reads) or a data connection to node
 * w->node of another host (TCP, made by psrun: PSMEM_DATA_FDS).  Writes to
 * a data connection never block (LK6): what the socket does not take is
 * queued in out and sent by the link thread when the socket is writable.
 */
struct ps__conn {
	int fd;
	int host;                 /* data: the peer host; the link: -1 */
	bool data;
	bool closed;              /* link thread only: no longer polled */
	/* acquire/release: a sender that sees false registered its request
	 * before the link thread's failure sweep, which then fails it (LK4);
	 * set when the connection ends, or when the bridge says the host is
	 * gone */
	_Atomic bool dead;
	/* acquire/release: its host left the job (drain.c): nothing more is
	 * sent there, what it still sends is read until its EOF (DR2) */
	_Atomic bool left;
	/* data: fd is set (EL1: a joiner's connection arrives while workers
	 * run).  Set before the link thread starts for PSMEM_DATA_FDS, else by
	 * the link thread with release after fd; senders load it with acquire
	 * before they read fd */
	_Atomic bool has_fd;
	pthread_mutex_t wlock;    /* one frame written at a time; out */
	uint8_t *out;             /* data: bytes queued, [out_at, out_len) */
	size_t out_at, out_len, out_cap;
	/* link thread only: bytes received, not parsed yet */
	uint8_t *in;
	size_t in_len, in_cap;
	/* link thread only: a large REPLY whose values are received straight
	 * into its caller's rows (contiguous), direct_left bytes to go; dst
	 * NULL: its request was failed meanwhile, the rest is discarded */
	uint8_t *dst;
	size_t direct_left;
	uint64_t direct_req;
};

struct ps__link {
	ps_world *w;
	struct ps__conn link;     /* to the bridge */
	struct ps__conn *data;    /* [nhosts]: fd -1 where there is none */
	int wake_fd;              /* eventfd: out was queued on a data connection */
	pthread_t thread;
	/* acquire/release: a reader that sees true sees the failures the link
	 * thread recorded before (LK4) */
	_Atomic bool dead;
	/* relaxed: set before this node's final barrier; a data connection
	 * that ends after it is the normal end, not a failure to report */
	_Atomic bool final;
	/* relaxed: this host leaves the job: ps_finalize drains (drain.c)
	 * instead of the final barrier; set before anything of the drain */
	_Atomic bool leaving;
	/* data connections that ended while leaving; futex word (release by
	 * the link thread, acquire by ps__drain_wait_ends) */
	_Atomic uint32_t ends;
	struct ps__conn *cur;     /* link thread: where the frame being
				   * dispatched came from; answers go there */
	pthread_mutex_t lock;     /* the rpc table */
	struct rpc *rpc;
	uint32_t cap, free_head;
	/* barriers across hosts (one arrival per node at a time: bar_lock) */
	pthread_mutex_t bar_lock;
	uint64_t bar_gen;         /* last generation this node arrived at */
	/* release by the link thread after status[] is written; acquire by
	 * the waiter.  bar_seq is the futex word that wakes it. */
	_Atomic uint64_t released;
	_Atomic uint32_t bar_seq;
	/* relaxed: written before the release of released, read after its
	 * acquire (at [gen & 1]: the next generation cannot be released
	 * before this node arrives at it) */
	_Atomic int32_t bar_status[2];
	_Atomic uint64_t bar_tag[2];    /* same as bar_status: the released tag */
	/* CKPT from other hosts (node 0): the lowest sending host since the
	 * last take and its path; written by the link thread before it
	 * dispatches the RELEASE that follows (the stream is ordered), read by
	 * the poll after that release; the mutex orders them */
	pthread_mutex_t ckpt_lock;
	int ckpt_host;                  /* -1: none */
	char ckpt_path[PS__NOTE_MAX + 1];
	/* Tables other hosts may use, published by their creator just before
	 * the creation barrier over hosts (release), read by the link thread
	 * (acquire): the handle's fields written before are visible.  The
	 * socket that carries the barrier orders nothing for TSan. */
	_Atomic(ps_table *) tables[PS__MAX_TABLES];
	/* ps_barrier across hosts: arrivals of this process's threads */
	pthread_mutex_t wb_lock;
	uint64_t wb_arrivals;
	int wb_rc[2];
	uint64_t wb_epoch[2];     /* ps_sync_hosts: the members' epoch (EL5) */
	/* The last SYNC result from the bridge (EL3): written by the link
	 * thread before it dispatches the RELEASE that follows it on the link
	 * (one stream), read by the waiter after the acquire of released;
	 * sync_lock orders them for TSan too. */
	pthread_mutex_t sync_lock;
	uint64_t sync_gen, sync_epoch;
	/* hash of the tags of the tables created so far, in id order (EL2):
	 * written by the node's collective thread (table creation), read by
	 * the first thread of ps_sync_hosts, after the local barrier */
	uint64_t tables_hash;
	/* descriptors received on the link (SCM_RIGHTS), oldest first, each
	 * waiting for its DATAFD frame (link thread only) */
	int fdq[16];
	int nfdq;
	bool sync_leaving;        /* this host is in the result's leaving list */
	struct ps__filter *filt;  /* wire filters (filter.c: its own locking) */
	struct ps__backup *bk;    /* backups (backup.c), link thread only; NULL: off */
	struct ps__mvlocks *mvl;  /* entries this home node's link locked for movers
				   * (migrate.c MG7), link thread only; NULL: none */
	/* link thread only */
	uint8_t *scratch;
	size_t scratch_cap;
};

/* A request (body at frame + PS__FRAME_HDR) to host: over the data
 * connection to host if there is one (no checksum), else sealed for the
 * bridge.  0 or PS_EHOSTDOWN (no reply will come). */
int ps__lk_send(struct ps__link *L, int host, uint8_t *frame, unsigned type, uint64_t req, uint32_t len);
/* The link thread's answer to the frame f being dispatched, on the
 * connection f came from (L->cur).  Failures are the connection's end,
 * seen by the link thread. */
void ps__lk_answer(struct ps__link *L, const struct ps__frame *f, uint8_t *frame, unsigned type, uint32_t len);
void ps__lk_group_done(struct ps__rgroup *g, int err);
bool ps__lk_rpc_claim(struct ps__link *L, uint64_t req, struct rpc *out);
void ps__lk_on_reply(struct ps__link *L, const struct ps__frame *f);
void ps__lk_on_redirect(struct ps__link *L, const struct ps__frame *f);
void ps__lk_on_move_reply(struct ps__link *L, const struct ps__frame *f);
void *ps__lk_scratch(struct ps__link *L, size_t n);
void ps__lk_on_request(struct ps__link *L, const struct ps__frame *f);
void ps__lk_on_move(struct ps__link *L, const struct ps__frame *f);
void ps__lk_on_primary_request(struct ps__link *L, const struct ps__frame *f);
/* Another routing round for position p of g (LK5; hint as in ps__rgroup). */
void ps__lk_again(struct ps__rgroup *g, uint32_t p, int32_t hint);

/* backup.c: backups of this node's keys and their promotion (BK1-BK4) */
struct ps__backup;
int ps__bk_init(struct ps__link *L);      /* PSMEM_BACKUP_RATE; 0 or a code */
void ps__bk_free(struct ps__link *L);
int ps__bk_timeout_ms(struct ps__link *L); /* -1: no backups */
void ps__bk_tick(struct ps__link *L);      /* a round if one is due */
void ps__bk_on_frame(struct ps__link *L, const struct ps__frame *f);
void ps__bk_promote(struct ps__link *L, int host);
#ifdef PS_TEST_HOOKS
extern _Atomic int ps__bk_test_promotions; /* ps__bk_promote calls in this process */
#endif
/* (BK7) values given to mover (nf floats per key at vals) to its backup host */
void ps__bk_given(struct ps__link *L, ps_table *t, int mover, const ps_key *keys, const uint8_t *vals, uint32_t nf,
		  uint32_t n);
/* (BK8) the mover installed keys[0..n), given by givers[i]: their backup
 * hosts mark their entries gone */
void ps__bk_got(ps_world *w, ps_table *t, const ps_key *keys, const int32_t *givers, size_t n);
/* (BK9) survivor s holds keys (n 0: has listed all) homed at lost host x;
 * and node 0 of every other survivor sends b(x) that list */
void ps__bk_held(struct ps__link *L, ps_table *t, int x, int s, const ps_key *keys, uint32_t n);
void ps__migrate_held(struct ps__link *L, int x);
/* One key of lost host x from this node's backups, if they have it and
 * t's word is REMOTE here (migrate.c MG7). */
bool ps__bk_promote_key(struct ps__link *L, ps_table *t, ps_key k, int x, bool force);
/* migrate.c (MG7): entries lost host x had locked at this home node are
 * unlocked (before BK3's promotion); the lock records freed at the end */
void ps__migrate_lost(struct ps__link *L, int x);
void ps__migrate_locks_free(struct ps__link *L);
/* (BK5) keys a move installed on this node: their values and rule state
 * (the first value_len + state_len words at vals + i * stride, BK11) to
 * the backup host now */
void ps__bk_moved_in(ps_world *w, ps_table *t, const ps_key *keys, const uint32_t *vals, uint32_t stride,
		     size_t n);
/* host was dropped (--on-host-failure continue) / and every local node
 * finished promoting its keys / the host that takes over host's keys
 * (the next one in the ring not lost; -1: none) */
void ps__bk_round_now(struct ps__link *L); /* a round now (a host left) */
bool ps__host_lost(ps_world *w, int host);
bool ps__host_promoted(ps_world *w, int host);
int ps__backup_host(ps_world *w, int host);

/* drain.c: a host that leaves the job hands its keys over (DR1-DR6) */
/* Every node of a leaving host, from ps_finalize: keys and directory to
 * b(this host).  0 or a code (then what could not move stays here). */
int ps__drain_host(ps_world *w);
/* After the node's LEFT: until every data connection has ended. */
void ps__drain_wait_ends(struct ps__link *L);
/* Link thread, a data connection ended: true if this node is leaving
 * (answers flushed, the connection closed and counted; nothing failed). */
bool ps__drain_conn_end(struct ps__link *L, struct ps__conn *c);
/* A TAKE or TAKEDIR of a leaving host, executed at b(x) (link thread):
 * the MOVE_REPLY body into out, its length returned. */
uint32_t ps__drain_serve(ps_world *w, ps_table *t, int from_host, const struct ps__move_req *m, uint8_t *out);
/* Link thread, ABORT(x, PS__GONE_LEFT) from the bridge: x left. */
void ps__drain_left(struct ps__link *L, int x);
/* Node 0: the words naming gone host x (REMOTE(x)) name y = b(x) now (at
 * y itself: the key's home); the count rewritten.  ps__drain_left, and a
 * joiner for an initial host gone before it came (EL6). */
uint64_t ps__drain_rewrite(ps_world *w, int x);

#endif /* PSMEM_LINK_IN_H */
