/* PRIVATE to libpsmem: world.h - the per-process context (world.c): the
 * world, table handles, requests; the net layer's operations. */
#ifndef PSMEM_BASE_WORLD_H
#define PSMEM_BASE_WORLD_H

#include <pthread.h>
#include <urcu/wfcqueue.h>

#include "segment.h"

/* ------------------------------------------------- process-private state */
/* Never placed in the segment: these hold pointers. */

#define PS__TABLE_MAGIC 0x50535442u /* "PSTB" */
#define PS__REQ_MAGIC   0x50535251u /* "PSRQ" */

struct ps_table {
	struct ps_table_pub pub;  /* first: the inline path's view (tctx.c, psmem_static.h) */
	uint32_t magic;
	int id;
	ps_world *w;
	struct ps__tdesc *d;
	_Atomic uint64_t *loc;    /* location table in the segment */
	uint64_t num_keys;
	uint32_t value_len;
	uint32_t slot_size;
	uint32_t flags;
	/* replication (replica.c): pointers into the segment, NULL if off */
	_Atomic uint64_t *rprim;  /* primary location word of replica index r */
	_Atomic uint64_t *rkey;   /* key + 1 of replica index r, 0 = free */
	uint32_t *rfree;          /* free-index stack (under repl_lock) */
	_Atomic uint32_t *counts; /* PS_COUNT_ACCESS counters, else NULL */
	uint32_t state_len;       /* floats of rule state after the values */
	uint32_t rule;            /* PS_RULE_*, custom id */
	ps_rule_fn rule_fn;       /* custom rules: this process's function */
	float rule_params[4];
};

enum ps__op { PS__OP_PULL, PS__OP_PUSH, PS__OP_LOCALIZE };

struct ps_req {
	struct cds_wfcq_node qn;  /* link in the service thread's request queue */
	uint32_t magic;
	enum ps__op op;
	ps_table *t;
	const ps_key *keys;
	size_t n;
	int result;
	/* 0 until complete.  Release store by the executor after result is
	 * written; acquire load in ps_wait.  Also a private futex word. */
	_Atomic uint32_t done;
	struct ps__rgroup *remote; /* keys of other hosts in flight, or NULL */
	/* Handle generation (kv.c "handles"): the handle given out carries it
	 * in its top 16 bits; bumped when the request is waited.  Relaxed:
	 * a stale handle racing a reuse is the caller's bug, detected or not. */
	_Atomic uint32_t gen;
	struct ps_req *next_free; /* in w->req_free (under req_lock) */
	struct ps_req *next_all;  /* every request of the world, freed at close */
};

/* Slots retired by one localize call, freed after a grace period. */
struct ps__retired {
	uint64_t off;
	int32_t table;
	int32_t node;             /* owner of the old slot (its pool) */
};

struct ps__retire_batch {
	struct cds_wfcq_node qn;
	uint64_t tag;             /* global epoch value that must be reached */
	size_t n;
	struct ps__retired e[];
};

struct ps_world {
	struct ps__seg seg;
	int node, nnodes, nthreads;
	bool embedded;
	/* Test hooks: set from PSMEM_DEBUG_* only in test builds (PS_TEST_HOOKS,
	 * libpsmem_test.a); false in libpsmem.a/.so. */
	bool no_grace;            /* PSMEM_DEBUG_NO_GRACE: tests prove detection */
	bool slow_switch;         /* PSMEM_DEBUG_SLOW_SWITCH: replicate holds the
	                           * primary's lock 200 us longer (widens races
	                           * for the tests) */
	bool die_in_layout;       /* PSMEM_DEBUG_DIE_IN_LAYOUT=<this node>, first
	                           * process only: SIGKILL while laying out a
	                           * table (test_restart) */
	bool die_after_publish;   /* PSMEM_DEBUG_DIE_AFTER_PUBLISH=<node>, first
	                           * process only: SIGKILL in relocate() between
	                           * publishing loc[k] and unlocking the old slot */
	bool die_mid_add;         /* PSMEM_DEBUG_DIE_MID_ADD=<node>, first process
	                           * only: SIGKILL halfway through a push's add */
	bool move_fail;           /* PSMEM_DEBUG_MOVE_FAIL=<host>: that host's first
	                           * move across hosts fails its LOCK step after
	                           * the replies came (test_hosts_move) */
	atomic_bool hold_reclaim; /* PSMEM_DEBUG_HOLD_RECLAIM=1: the service
	                           * thread reclaims nothing until a thread waits
	                           * for a free slot (kv.c ps__wait_free_slot
	                           * clears it; test_hosts_move) */
	struct ps__node *me;
	unsigned je_arena;        /* jemalloc arena for this node's private data */
	int numa_node;            /* -1: not bound */

	pthread_t service;
	_Atomic bool stop;        /* W: finalize (release); R: service (acquire) */
	/* Wakes the service thread: bumped (release) by enqueuers, private futex. */
	_Atomic uint32_t doorbell;
	struct cds_wfcq_head req_head; /* ps_req: localize requests */
	struct cds_wfcq_tail req_tail;
	struct cds_wfcq_head ret_head; /* ps__retire_batch from any thread */
	struct cds_wfcq_tail ret_tail;

	/* service thread only */
	uint64_t next_grace_ns;   /* earliest start of the next grace period */
	struct ps__retire_batch **pending;
	size_t npending, cap_pending;

	uint64_t repl_next[PS__MAX_TABLES]; /* service only: next round due (ns) */

	pthread_mutex_t tables_lock;
	ps_table *tables[PS__MAX_TABLES];
	int ntables;              /* collective creation counter */

	/* sample.c: each table's sampling scheme in this process, scheme |
	 * reuse << 8 (0 = naive, the calloc'd default).  W: ps_table_set_sampling,
	 * R: ps_sample_prepare; relaxed: one self-contained word, it orders
	 * nothing else. */
	_Atomic uint32_t sample_conf[PS__MAX_TABLES];

	/* Barrier participation and restart replay (barrier.c, restart.c).
	 * calls: barriers this process has called per worker slot (node_calls:
	 * node barriers); replay: how many of the first calls its dead
	 * predecessor had already arrived at (0 unless restarted).  A call with
	 * index < replay does not arrive again.  Each entry is used by the one
	 * thread holding the slot. */
	bool restarted;           /* took the slot of a dead incarnation */
	uint32_t node_calls, node_replay;
	uint32_t calls[PS__MAX_WORKERS];
	uint32_t replay[PS__MAX_WORKERS];
	/* slots of threads not started by ps_run_workers (first come) */
	pthread_mutex_t slots_lock;
	/* Requests are never returned to the allocator while the world lives
	 * (a waited handle stays readable: PS_EHANDLE is a defined check). */
	pthread_mutex_t req_lock;
	struct ps_req *req_free, *req_all;
	uint64_t slot_used[PS__MAX_WORKERS / 64];

	/* clock.c (CL5): ps_clock calls of each worker in this process, and
	 * how many of the first ones its dead predecessor had made (set at
	 * takeover, 0 unless restarted).  Each entry: its worker's thread. */
	uint64_t clock_calls[PS__MAX_CLOCK_THREADS];
	uint64_t clock_replay[PS__MAX_CLOCK_THREADS];

	char ckpt_err[PS__PATH_MAX + PS__MSG_MAX + 8]; /* ps_checkpoint_error */

	int host, nhosts;         /* multi-host: this host's rank, host ranks (1);
				   * elastic jobs: PS__ELASTIC_HOSTS ranks */
	int home_hosts;           /* hosts that home keys: the initial count (EL2) */
	bool joined;              /* started by psrun --join (ps_joined) */
	/* elastic: this host's first ps_sync_hosts has not returned yet (a
	 * joiner's nodes create tables without the barrier over hosts);
	 * written by the thread making the node's collective calls */
	bool join_pending;
	bool left;                /* this host's ps_sync_hosts returned 0 (leaving) */
	const struct ps__net_ops *net; /* the net layer's operations; NULL on one host */
	struct ps__link *link;    /* net/: to the host's bridge; NULL on one host */
	/* replica.c: finalize merged this node's deltas; no remote round
	 * (through this process's link) starts any more.  W: finalize, R: the
	 * service thread, both under the table's repl_xlock (relaxed). */
	_Atomic bool repl_closed;
};

/* world.c: the per-process context.  ps_init (net/start.c) opens it, takes
 * the node and starts the layers above; ps_finalize closes it. */
ps_world *ps__world_open(int threads, int *err);
void ps__world_close(ps_world *w);       /* tables, EXITED, detach, free */
void ps__world_abort(ps_world *w);       /* a failed ps_init: detach, free */
bool ps__world_any(void); /* a world is open in this process */
bool ps__world_current(const ps_world *w); /* w is this process's open world */
int ps__env_int(const char *name, int def); /* -1: not a number 0..2^20 */
void ps__thread_enter(ps_world *w);      /* registers the calling thread once */
void ps__wait_set(ps_world *w, enum ps__wait_what what, uint64_t arg, uint64_t arg2);
void ps__wait_clear(ps_world *w);
void ps__doorbell(ps_world *w);
int ps__worker_slot(ps_world *w);        /* barrier slot of the calling thread */
void ps__thread_set_slot(ps_world *w, int slot); /* ps_run_workers: slot = index */
void *ps__alloc(ps_world *w, size_t size);
void ps__free(ps_world *w, void *p);


/*
 * The network layer's operations (lib/net/), the only way the layers below
 * it (core, persist) reach it: they never include a net header.  w->net is
 * NULL on one host; on several, ps_init's link start (net/bridge_link.c)
 * sets it to the link's table once the link is up, before ps_init returns
 * (so before any table exists and any call through it), and ps_finalize
 * clears it after the last call through it.  Core and persist test w->net
 * (one predictable branch) or call through it on paths that only a
 * multi-host job takes.
 */
struct ps__rgroup;                /* keys of other hosts in flight (net/) */
struct ps__net_ops {
	/* kv.c: a validated pull (out) or push (in) batch: keys held here
	 * are done here, the others are sent to the hosts their words name
	 * and redirected until they land.  With async, what is still in
	 * flight is returned in *async (NULL if nothing), else waited for. */
	int (*route_batch)(ps_table *t, const ps_key *keys, size_t n, float *out, const float *in,
			   struct ps__rgroup **async);
	/* Completes and frees a group of route_batch or replica_start. */
	int (*remote_wait)(ps_world *w, struct ps__rgroup *g);
	/* kv.c ps_localize: moves keys[0..n) held by other hosts to this
	 * node; keys that cannot move now stay (localize is a hint). */
	int (*migrate_in)(ps_table *t, const ps_key *keys, size_t n);
	/* replica.c: keys[i] to the primary copy at hosts[i], whatever their
	 * location words say: push false reads the primaries' totals into out
	 * (RPULL), push true merges the deltas in (RPUSH); *g as remote_wait's. */
	int (*replica_start)(ps_table *t, const ps_key *keys, const uint16_t *hosts, size_t n, float *out,
			     const float *in, bool push, struct ps__rgroup **g);
	/* table.c: barrier over every node of every host on the table's
	 * shape (local_rc: this node's result so far; a failure anywhere
	 * fails it everywhere). */
	int (*table_created)(ps_world *w, ps_table *t, int id, const struct ps__tdesc *d, int local_rc);
	/* barrier.c: ps_barrier's part across hosts */
	int (*barrier_workers)(ps_world *w);
	/* barrier.c: ps_sync_hosts's part across hosts (bridge_link.c EL5):
	 * 1 a member after it, 0 this host leaves here, or a code; *epoch the
	 * members' epoch (a joiner's first call learns it) */
	int (*sync_workers)(ps_world *w, uint64_t *epoch);
	/* clock.c: CLOCK frame to every other host (0 or PS_EHOSTDOWN); and
	 * whether the link to the bridge is broken */
	int (*send_clock)(ps_world *w, uint64_t min, uint64_t cfg);
	bool (*link_down)(ps_world *w);
	/* checkpoint.c: a barrier over every node of every host that agrees
	 * on nothing: *tag in is this node's value, out the minimum of all */
	int (*barrier_min)(ps_world *w, uint64_t *tag);
	/* checkpoint.c, node 0: tells node 0 of every other host that a
	 * checkpoint to path was asked for here (before the poll's barrier
	 * over hosts); and takes the path host sent, if it is the lowest host
	 * that sent one since the last take (0), else -ENOENT, forgetting
	 * what was kept either way. */
	int (*ckpt_send)(ps_world *w, const char *path);
	int (*ckpt_take)(ps_world *w, int host, char *path, size_t len);
};

#endif /* PSMEM_BASE_WORLD_H */
