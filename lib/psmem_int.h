/*
 * psmem_int.h - PRIVATE to libpsmem and its own tools (psrun, psstat, tests).
 * Not installed; applications include only psmem.h.
 *
 * This file fixes the layout of the shared segment.  Everything in the
 * segment is addressed by byte offsets from its start (each process maps it
 * at its own address); nothing in it is a pointer.
 *
 *   segment: [ header | node table | table descriptors + pools |
 *              shared region (location tables) | arena 0 | arena 1 | ... ]
 *
 * Ownership of fields is written beside each field: "W:" who writes,
 * "R:" who reads.
 */
#ifndef PSMEM_INT_H
#define PSMEM_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

#include "psmem.h"
#include "psmem_static.h" /* fast path: struct ps_table_pub, ps_tstat (fast.c) */

#define PS__MAGIC        0x4745536d656d7370ULL /* "psmemSEG" little-endian */
#define PS__ABI          2u    /* 2: per-thread counters ps__node.tstats */
#define PS__MAX_NODES    64
#define PS__MAX_TABLES   64
#define PS__MAX_WAITERS  64    /* per node: threads visible to ps_dump */
#define PS__MAX_CLOCK_THREADS 256 /* per node: worker clocks (clock.c) */
#define PS__MAX_CLOCK_HOSTS 1024  /* = PS__MAX_HOSTS (bridge.h): other hosts' clocks */
#define PS__CL           64    /* cache line */
#define PS__PAGE         4096
#define PS__HUGE         (2u << 20)
#define PS__CHUNK        (1u << 20) /* memory-budget accounting granule */
#define PS__NAME_MAX     64
#define PS__DEFAULT_ARENA  (64ULL << 30) /* virtual, per node */
#define PS__DEFAULT_SHARED (16ULL << 30) /* virtual, location tables */
#define PS__GRACE_MIN_GAP_NS (250 * 1000ULL) /* between grace periods of a node (G4) */
#define PS__MAX_WORKERS  1024  /* worker threads per node (barrier slots) */
#define PS__MAX_TSTATS   256   /* threads per node with their own counters (fast.c) */
#define PS__PATH_MAX     1024  /* checkpoint paths kept in the segment */
#define PS__MSG_MAX      512   /* checkpoint result messages in the segment */

/*
 * Hand-offs through liburcu's wait-free queues (compiled without TSan) are
 * invisible to ThreadSanitizer: tell it that the enqueue releases the
 * object and the dequeue acquires it.
 */
#if defined(__SANITIZE_THREAD__)
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define PS__TSAN_RELEASE(p) __tsan_release(p)
#define PS__TSAN_ACQUIRE(p) __tsan_acquire(p)
#else
#define PS__TSAN_RELEASE(p) ((void)(p))
#define PS__TSAN_ACQUIRE(p) ((void)(p))
#endif

#define PS__ALIGN(x, a)  (((x) + (a) - 1) & ~((uint64_t)(a) - 1))
#define PS__CACHE_ALIGNED _Alignas(PS__CL)

/* ---------------------------------------------------------------- nodes */

enum ps__node_state {
	PS__NODE_EMPTY = 0,  /* no process has attached as this node yet */
	PS__NODE_ALIVE = 1,  /* attached and running */
	PS__NODE_EXITED = 2, /* detached cleanly (ps_finalize) */
	PS__NODE_DEAD = 3,   /* died without detaching (set by psrun or a peer) */
};

/*
 * A node's state word: the state (enum ps__node_state) in bits 0..7, the
 * incarnation in bits 8..31.  Every process that takes the node slot bumps
 * the incarnation, so a peer that saw incarnation i ALIVE with its process
 * gone can mark exactly incarnation i DEAD (CAS on the whole word), never
 * the replacement that took the slot meanwhile (psrun --on-failure
 * restart; restart.c).
 */
#define PS__NODE_KIND(w)        ((w) & 0xffu)
#define PS__NODE_INC(w)         ((w) >> 8)
#define PS__NODE_WORD(kind, inc) ((((uint32_t)(inc)) << 8) | (uint32_t)(kind))

enum ps__wait_what {
	PS__WAIT_NONE = 0,
	PS__WAIT_BARRIER,    /* arg: barrier generation */
	PS__WAIT_SLOTLOCK,   /* arg: slot offset; arg2: holder node */
	PS__WAIT_REQUEST,    /* arg: request kind; waiting in ps_wait */
	PS__WAIT_CREATE,     /* arg: table id; waiting for peers in ps_table_create */
	PS__WAIT_GRACE,      /* arg: epoch tag; waiting for a grace period */
	PS__WAIT_CLOCK,      /* arg: own clock; arg2: awaited worker, node << 32 | thread */
};

struct ps__waiter {
	/* W: the thread owning the entry; R: ps_dump (any process).  Relaxed:
	 * the dump is a diagnostic snapshot, a torn view is harmless. */
	_Atomic uint32_t what;
	_Atomic int32_t tid;
	_Atomic uint64_t arg;
	_Atomic uint64_t arg2;
};

struct ps__stats {
	/* W: threads of the owning node, relaxed fetch_add; R: psstat, relaxed.
	 * Counters only: they order nothing. */
	_Atomic uint64_t pulls, pushes, keys_pulled, keys_pushed;
	_Atomic uint64_t local_keys, remote_keys, relocations, retries;
	_Atomic uint64_t stale_reads, localize_reqs, grace_periods, slots_freed;
	_Atomic uint64_t repl_keys;     /* keys served by a replica of this node */
	_Atomic uint64_t repl_rounds;   /* sync rounds that covered this node */
	/* ps__now_ns() at the end of the last round that refreshed this
	 * node's replicas; W: its service thread or any ps_sync (relaxed
	 * store: a diagnostic, orders nothing) */
	_Atomic uint64_t repl_last_ns;
	_Atomic uint64_t samples, sample_fallbacks; /* sample.c */
};

struct ps__node {
	/* state: W: the node (ALIVE on attach, EXITED on finalize), psrun or a
	 * peer (DEAD); release store after pid/start_time are written, so a
	 * reader that loads ALIVE (acquire) sees the pid of this incarnation. */
	PS__CACHE_ALIGNED _Atomic uint32_t state;
	int32_t pid;              /* W: node at attach; R: anyone after acquire of state */
	uint64_t start_time;      /* /proc/PID/stat starttime, against pid reuse */
	int32_t numa_node;        /* NUMA node its arena is bound to */
	uint32_t _pad;
	uint64_t arena_off;       /* W: creator; R: all. Start of this node's arena */
	uint64_t arena_size;
	/* bump for pools carved from this arena. W: table creator under
	 * hdr->create_lock; R: stats. */
	_Atomic uint64_t arena_used;

	/* Grace periods (see grace.c). W: this node's service thread only,
	 * release: every read-side section of this node that began before the
	 * global epoch value stored here was loaded has ended.  R: reclaimers
	 * of any node, acquire. */
	PS__CACHE_ALIGNED _Atomic uint64_t epoch;

	PS__CACHE_ALIGNED struct ps__stats stats;
	_Atomic uint32_t nwaiters;       /* W: registering threads (fetch_add) */
	struct ps__waiter waiters[PS__MAX_WAITERS];

	/* Barrier arrivals (barrier.c).  nb_clock: node barriers this node has
	 * arrived at; ws[s].clock: worker barriers its worker slot s has arrived
	 * at.  W: the thread owning the slot (seq_cst store: its arrival); R:
	 * arrivers and waiters of every node scanning for completion (seq_cst),
	 * the node's replacement at attach (restart.c).  They survive the
	 * process, so a replacement knows which barriers its predecessor
	 * passed. */
	PS__CACHE_ALIGNED _Atomic uint32_t nb_clock;
	struct ps__wslot {
		_Atomic uint32_t clock;
		uint32_t _pad;
		/* ps_progress_set: (step & 0xffffff) << 40 | value.  W: the slot's
		 * thread, relaxed (read back only by a later incarnation, after
		 * psrun reaped the writer); R: ps_progress_get. */
		_Atomic uint64_t progress;
	} ws[PS__MAX_WORKERS];

	/* Per-thread counters of pulls and pushes (fast.c): slot i is written
	 * by the one thread of the node's process that holds it; ps_stats and
	 * psstat add them to stats (ps__node_stats). */
	struct ps_tstat tstats[PS__MAX_TSTATS];
};

/* --------------------------------------------------------------- tables */

enum ps__table_state { PS__T_EMPTY = 0, PS__T_CREATING = 1, PS__T_READY = 2 };

/* Pool of slots of one table in one node's arena (a slab). */
struct ps__pool {
	/* lock: 0 free, else holder node + 1.  Acquire on take, release on
	 * drop: orders every field below.  Held only for a few stores. */
	PS__CACHE_ALIGNED _Atomic uint64_t lock;
	uint64_t base_off;   /* W: creator; first slot of the pool */
	uint64_t cap;        /* slots reserved for the pool */
	uint64_t bump;       /* slots ever handed out from base (under lock) */
	uint64_t free_head;  /* offset of first free slot, 0 = none (under lock) */
	/* slots in use: W: under lock (relaxed); R: stats and dump without
	 * the lock (relaxed: a snapshot) */
	_Atomic uint64_t used;
	uint64_t committed;  /* bytes of the memory budget charged (under lock) */
	/* slots of this pool retired and not yet freed.  W: retirers
	 * (fetch_add) and reclaimers (fetch_sub), relaxed: a hint that tells a
	 * full pool's allocator that waiting can help. */
	_Atomic uint64_t retired;
};

struct ps__tdesc {
	/* state: W: creator CAS EMPTY->CREATING (| creator node + 1 << 8),
	 * release store READY after all fields and the location table region
	 * are set; R: other nodes, acquire before reading any field. */
	PS__CACHE_ALIGNED _Atomic uint32_t state;
	uint32_t value_len;
	uint32_t slot_size;
	uint32_t flags;
	uint32_t init;
	uint32_t placement;
	float init_a;
	uint32_t _pad;
	uint64_t seed;
	uint64_t num_keys;
	uint64_t slots_per_node;
	uint64_t loc_off;    /* location table: num_keys x _Atomic uint64_t */
	/* W: each node once its keys are initialised (release fetch_add);
	 * R: creators waiting for all nodes (acquire). */
	_Atomic uint32_t nodes_ready;
	_Atomic int32_t error; /* first error of a node's initialisation */

	/* Hot-spot replication (replica.c); W: creator, then read-only. */
	uint32_t repl_max;
	uint32_t _pad2;
	double repl_rate;
	uint64_t repl_off;   /* shared region: rprim[repl_max] u64, rkey[repl_max]
	                      * u64, rfree[repl_max] u32 */
	uint64_t count_off;  /* PS_COUNT_ACCESS: num_keys x _Atomic uint32_t, else 0 */
	/* Serialises replicate / unreplicate / sync rounds of the table:
	 * 0 free, else holder node + 1; CAS acquire, store release: orders
	 * rprim, rkey, rfree, repl_nfree and the REPL location words. */
	PS__CACHE_ALIGNED _Atomic uint64_t repl_lock;
	uint32_t repl_nfree; /* free replica indexes in rfree (under repl_lock) */
	/* replicated keys; W: under repl_lock; R: anyone, relaxed (a count) */
	_Atomic uint32_t repl_used;
	/* First replica slot of each node's run of 2 x repl_max slots (replica,
	 * delta) in its own pool.  W: that node before the creation barrier. */
	uint64_t rbase[PS__MAX_NODES];
	uint32_t state_len; /* floats of update-rule state stored after the values in each slot (rules.c) */
	/* Update rule (rules.c), W: creator before READY; R: all after it. */
	uint32_t rule;        /* PS_RULE_* or a custom id */
	uint64_t rule_fp;     /* fingerprint of the rule: name and state sizes */
	float rule_params[4];

	/* Replication across hosts (replica.c R8-R10).  repl_xlock serialises
	 * this host's set switches, remote rounds and ps_sync of the table
	 * (0 free, else holder node + 1; CAS acquire, store release); it is
	 * held across bridge round trips, never by a link thread.  repl_remote:
	 * replicated keys whose primary is on another host (W: under
	 * repl_lock; R: service threads, relaxed: a hint).  repl_xnext: when
	 * the next remote round is due (ns; W: the xlock holder; R: service
	 * threads, relaxed: a hint re-checked under the xlock). */
	PS__CACHE_ALIGNED _Atomic uint64_t repl_xlock;
	_Atomic uint64_t repl_xnext;
	_Atomic uint32_t repl_remote;
};

/* -------------------------------------------------------------- barrier */

struct ps__barrier {
	/* gen: barriers completed.  A participant arrives at barrier g by
	 * storing its clock g + 1 (ps__node.nb_clock / ws[].clock); whoever
	 * then finds every participant's clock past g moves gen from g to g + 1
	 * (CAS acq_rel, after seq_cst loads of the clocks) and wakes the
	 * waiters, which acquire gen (futex on it): everything done before the
	 * barrier by any participant is visible after it.  See barrier.c. */
	PS__CACHE_ALIGNED _Atomic uint32_t gen;
	_Atomic uint32_t total; /* participants, all nodes. W: creator, or ps_init_threads before first use */
};

/* ------------------------------------------------------------ checkpoint */

enum ps__req_state {
	PS__REQ_IDLE = 0,
	PS__REQ_POSTING = 1,   /* psstat writes the path */
	PS__REQ_PENDING = 2,   /* posted; node 0 latches it in ps_checkpoint_poll */
	PS__REQ_LATCHED = 3,   /* being written */
	PS__REQ_DONE = 4,      /* written; result holds the outcome */
	PS__REQ_FAILED = 5,
};

struct ps__ckpt {
	/* Outside requests (psstat --checkpoint FILE).  req_state moves
	 * IDLE/DONE/FAILED -> POSTING (requester CAS) -> PENDING (requester,
	 * release: req_path and req_pid written before) -> LATCHED (node 0 CAS
	 * acquire) -> DONE/FAILED (node 0, release: req_rc and req_msg written
	 * before) -> IDLE (requester, once read).  A requester that gives up
	 * moves PENDING back to IDLE (CAS). */
	_Atomic uint32_t req_state;
	int32_t req_pid;             /* W: requester under POSTING */
	uint64_t req_start;          /* its /proc start time */
	int32_t req_rc;              /* W: node 0 before DONE/FAILED */
	uint32_t _pad;
	char req_path[PS__PATH_MAX];
	char req_msg[PS__MSG_MAX];
	/* Collective calls (ps_checkpoint / ps_restore / poll): node 0 writes
	 * these before it arrives at the call's closing node barrier, the
	 * others read them after it (the barrier orders them).  latch_idx: the
	 * index of the node barrier at which node 0 latched an outside
	 * request, whose path it copied to path. */
	uint32_t latch_idx;
	int32_t rc;
	char path[PS__PATH_MAX];
	char msg[PS__MSG_MAX];
};

/* --------------------------------------------------------------- clocks */

struct ps__clocks {
	/* The job's bound: 0 = not set (BSP), else (mode + 1) << 32 | s.
	 * CAS 0 -> value by the first ps_set_consistency (relaxed: it is read
	 * again at every ps_clock; nodes set it before their workers clock). */
	PS__CACHE_ALIGNED _Atomic uint64_t cfg;
	/* Futex word: bumped (seq_cst) after every clock advance, so a waiter
	 * that read it before the advance sleeps on a stale value and returns
	 * at once. */
	_Atomic uint32_t seq;
	/* Threads inside a clock wait: W: waiters (seq_cst inc/dec); R: a
	 * worker that advanced, to skip the wake syscall when it is 0. */
	_Atomic uint32_t waiting;
	/* c[node][thread]: ps_clock calls made by that worker.  W: the worker
	 * only, seq_cst store (a release: its pushes before ps_clock happen
	 * before any thread that loads the new value; seq_cst for the wake-up
	 * protocol, clock.c C3).  R: clock waiters (seq_cst), ps_clock_read
	 * (acquire), ps_dump (relaxed). */
	PS__CACHE_ALIGNED _Atomic uint64_t c[PS__MAX_NODES][PS__MAX_CLOCK_THREADS];
	/*
	 * Multi-host jobs (clock.c H1-H6).  sent: the highest slowest-local-
	 * clock this host has sent to the others (CAS max by the worker that
	 * raised it; that worker alone sends it).  announced: 1 once this
	 * host's bound went out (CAS 0 -> 1, the winner sends).  For every
	 * other host h, as last heard through this host's links:
	 *   hmin[h]  its slowest worker's clock (CAS max, link threads);
	 *   hcfg[h]  its bound word (0: nothing heard yet);
	 *   hgone[h] 1 once the bridge said it left or died (after every
	 *            CLOCK it sent: one TCP stream, then one link, in order).
	 * Written seq_cst by the link threads, which then bump seq and wake
	 * the waiters (the protocol of C3); read seq_cst by clock waiters,
	 * relaxed by ps_dump.
	 */
	PS__CACHE_ALIGNED _Atomic uint64_t sent;
	_Atomic uint32_t announced;
	PS__CACHE_ALIGNED _Atomic uint64_t hmin[PS__MAX_CLOCK_HOSTS];
	_Atomic uint64_t hcfg[PS__MAX_CLOCK_HOSTS];
	_Atomic uint32_t hgone[PS__MAX_CLOCK_HOSTS];
};

/* The bound word: 0 (unset) reads as BSP. */
static inline uint64_t ps__clock_cfg(int mode, uint32_t s) { return ((uint64_t)(mode + 1) << 32) | s; }
static inline int ps__clock_mode(uint64_t cfg) { return cfg ? (int)(cfg >> 32) - 1 : PS_BSP; }
static inline uint32_t ps__clock_staleness(uint64_t cfg) { return (uint32_t)cfg; }

/* --------------------------------------------------------------- header */

struct ps__hdr {
	uint64_t magic;           /* PS__MAGIC, written last by the creator */
	uint32_t abi;             /* PS__ABI */
	uint32_t hdr_size;        /* sizeof(struct ps__hdr), layout check */
	uint32_t node_size;       /* sizeof(struct ps__node) */
	uint32_t tdesc_size;      /* sizeof(struct ps__tdesc) */
	uint64_t job_id;
	uint32_t uid;             /* creator's uid */
	int32_t creator_pid;      /* psrun (or the embedded app) */
	uint64_t creator_start;
	uint32_t num_nodes;
	_Atomic uint32_t threads_per_node; /* see threads_set */
	uint32_t numa_mode;       /* PS__NUMA_AUTO: bound (auto or here); PS__NUMA_NONE */
	/* 0: threads_per_node is psrun's -t; else the count every node asked
	 * for in ps_init_threads.  CAS 0 -> T by the first node (relaxed: the
	 * node barrier of the first table creation orders its use). */
	_Atomic uint32_t threads_set;
	uint64_t seg_size;
	uint64_t nodes_off, tdesc_off, pools_off;
	uint64_t shared_off, shared_size;
	uint64_t arenas_off, arena_size;
	uint64_t mem_budget;      /* bytes of tmpfs the job may touch */

	/* W: pool allocators, fetch_add relaxed (a counter; the pool lock
	 * orders the pool itself).  R: allocators and stats. */
	PS__CACHE_ALIGNED _Atomic uint64_t mem_committed;
	/* bump of the shared region; W: table creator under create_lock */
	_Atomic uint64_t shared_used;
	/* serialises table layout (CAS 0 -> node+1 acquire; release 0) */
	_Atomic uint64_t create_lock;

	/* Grace periods: retirers fetch_add (seq_cst: orders the unpublish
	 * before it ahead of the tag) to obtain a tag; service threads load it
	 * with acquire. See grace.c. */
	PS__CACHE_ALIGNED _Atomic uint64_t global_epoch;

	struct ps__barrier workers; /* all worker threads of all nodes */
	struct ps__barrier nodes;   /* one participant per node (collectives) */
	struct ps__clocks clocks;   /* consistency clocks (clock.c) */

	/* psrun --on-failure: 0 abort (a dead node fails barriers with
	 * PS_EDEAD), 1 restart (they wait for its replacement).  W: creator. */
	uint32_t on_failure;
	uint32_t _pad_of;
	PS__CACHE_ALIGNED struct ps__ckpt ckpt;

	/* Multi-host jobs (bridge_link.c).  W: psrun, before the nodes start;
	 * R: nodes at attach.  num_hosts 0 or 1: a one-host job. */
	uint32_t host_rank;
	uint32_t num_hosts;
};

/* tests/run.sh reads the creator pid of a segment at this byte offset */
_Static_assert(offsetof(struct ps__hdr, creator_pid) == 36, "creator_pid moved: update tests/run.sh");

/* ----------------------------------------------------------- slot words */

/*
 * Location word, one per key (loc table):
 *   63..48 owner node | 47..8 slot offset >> 4 | 7..0 state
 * Offset 0 is the header, so a word of 0 means "no slot".
 */
#define PS__LOC_LOCAL      0x01u
/* Held by another host (multi-host jobs): the owner field is that host,
 * the offset 0.  Written at table creation, never by relocation. */
#define PS__LOC_REMOTE     0x04u
#define PS__LOC_MAKE(owner, off) \
	(((uint64_t)(owner) << 48) | (((uint64_t)(off) >> 4) << 8) | PS__LOC_LOCAL)
#define PS__LOC_MAKE_REMOTE(host) (((uint64_t)(host) << 48) | PS__LOC_REMOTE)
#define PS__LOC_IS_REMOTE(w) (((w) & PS__LOC_REMOTE) != 0)
/* Only at a key's home host: the key is moving between hosts (migrate.c);
 * the owner field is the host that held it when the move began.  A MOVING
 * word is also REMOTE, so code that only tells "here" from "elsewhere"
 * needs no change. */
#define PS__LOC_MOVING     0x08u
#define PS__LOC_MAKE_MOVING(host) (PS__LOC_MAKE_REMOTE(host) | PS__LOC_MOVING)
#define PS__LOC_IS_MOVING(w) (((w) & PS__LOC_MOVING) != 0)
#define PS__LOC_OWNER(w)   ((int)((w) >> 48))
/* A replicated key: bits 47..8 hold its replica index r, not an offset.
 * Node n's replica of it is slot 2r of n's replica run, its delta slot
 * 2r+1; the primary copy's location word is rprim[r] (replica.c). */
#define PS__LOC_REPL       0x02u
#define PS__LOC_MAKE_REPL(r) ((((uint64_t)(r)) << 8) | PS__LOC_REPL)
#define PS__LOC_RIDX(w)    ((uint32_t)(((w) >> 8) & 0xffffffffffULL))
#define PS__LOC_OFF(w)     ((((w) >> 8) & 0xffffffffffULL) << 4)

/*
 * Slot: [ seq (8) | key (8) | values (4 x value_len) | update-rule state
 * (4 x state_len, rules.c) ], padded to 16 bytes, or to 64 when it reaches
 * a cache line.
 * seq word:
 *   bit 0 LOCKED (a writer is inside) | bit 1 MOVED (value lives elsewhere)
 *   bit 2 FREED (on a free list)      | bits 8..23 holder node + 1
 *   bits 24..63 version, +1 at each unlock
 */
#define PS__SEQ_LOCKED   0x1ULL
#define PS__SEQ_MOVED    0x2ULL
#define PS__SEQ_FREED    0x4ULL
#define PS__SEQ_HOLDER_SHIFT 8
#define PS__SEQ_HOLDER(s) ((int)(((s) >> 8) & 0xffff) - 1)
#define PS__SEQ_VER1     (1ULL << 24)
#define PS__POISON       0x7fa5a5a5u /* a NaN: freed slots are filled with it */

struct ps__slot {
	_Atomic uint64_t seq;
	_Atomic uint64_t key;   /* key held; next free slot offset when FREED */
	_Atomic uint32_t v[];   /* float bits; relaxed atomics (seqlock data) */
};

/* ------------------------------------------------------ segment access */

enum ps__numa_mode {
	PS__NUMA_AUTO = 0, /* node i's arena on socket i mod S (psrun pins node i there) */
	PS__NUMA_NONE = 1, /* nothing bound */
	PS__NUMA_HERE = 2, /* the socket the creating process is confined to, or
	                    * none if its CPUs span sockets (ps_init without psrun) */
};

struct ps__seg_params {
	uint32_t num_nodes;
	uint32_t threads_per_node;
	uint32_t numa_mode;        /* enum ps__numa_mode */
	uint64_t arena_size;       /* 0: default */
	uint64_t shared_size;      /* 0: default */
	uint64_t mem_budget;       /* 0: 90% of free /dev/shm */
	uint32_t on_failure;       /* 0 abort, 1 restart (psrun --on-failure) */
};

struct ps__seg {
	char *base;
	size_t size;
	struct ps__hdr *hdr;
	char name[PS__NAME_MAX];
	bool readonly;
};

static inline void *ps__at(const struct ps__seg *s, uint64_t off) { return s->base + off; }
static inline struct ps__node *ps__node_at(const struct ps__seg *s, int i)
{
	return (struct ps__node *)(s->base + s->hdr->nodes_off) + i;
}
static inline struct ps__tdesc *ps__tdesc_at(const struct ps__seg *s, int t)
{
	return (struct ps__tdesc *)(s->base + s->hdr->tdesc_off) + t;
}
static inline struct ps__pool *ps__pool_at(const struct ps__seg *s, int t, int node)
{
	return (struct ps__pool *)(s->base + s->hdr->pools_off) + (size_t)t * PS__MAX_NODES + node;
}

/* ------------------------------------------------- process-private state */
/* Never placed in the segment: these hold pointers. */

#include <pthread.h>
#include <urcu/wfcqueue.h>

#define PS__TABLE_MAGIC 0x50535442u /* "PSTB" */
#define PS__REQ_MAGIC   0x50535251u /* "PSRQ" */

struct ps_table {
	struct ps_table_pub pub;  /* first: the inline path's view (fast.c) */
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
	bool no_grace;            /* PSMEM_DEBUG_NO_GRACE: tests prove detection */
	bool slow_switch;         /* PSMEM_DEBUG_SLOW_SWITCH: replicate holds the
	                           * primary's lock 200 us longer (widens races
	                           * for the tests) */
	bool die_in_layout;       /* PSMEM_DEBUG_DIE_IN_LAYOUT=<this node>, first
	                           * process only: SIGKILL while laying out a
	                           * table (test_restart) */
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
	uint64_t slot_used[PS__MAX_WORKERS / 64];

	/* clock.c (C5): ps_clock calls of each worker in this process, and
	 * how many of the first ones its dead predecessor had made (set at
	 * takeover, 0 unless restarted).  Each entry: its worker's thread. */
	uint64_t clock_calls[PS__MAX_CLOCK_THREADS];
	uint64_t clock_replay[PS__MAX_CLOCK_THREADS];

	char ckpt_err[PS__PATH_MAX + PS__MSG_MAX + 8]; /* ps_checkpoint_error */

	int host, nhosts;         /* multi-host: this host's rank, host count (1) */
	struct ps__link *link;    /* to the host's bridge; NULL on one host */
	/* replica.c: finalize merged this node's deltas; no remote round
	 * (through this process's link) starts any more.  W: finalize, R: the
	 * service thread, both under the table's repl_xlock (relaxed). */
	_Atomic bool repl_closed;
};

/* world.c */
void ps__thread_enter(ps_world *w);      /* registers the calling thread once */
void ps__wait_set(ps_world *w, enum ps__wait_what what, uint64_t arg, uint64_t arg2);
void ps__wait_clear(ps_world *w);
void ps__doorbell(ps_world *w);
int ps__worker_slot(ps_world *w);        /* barrier slot of the calling thread */
void ps__thread_set_slot(ps_world *w, int slot); /* ps_run_workers: slot = index */
void *ps__alloc(ps_world *w, size_t size);
void ps__free(ps_world *w, void *p);

/* arena.c: slot pools */
int ps__pool_reserve(ps_world *w, int table, uint64_t cap, uint32_t slot_size);
int ps__slot_alloc(ps_world *w, int table, int node, uint32_t slot_size, uint64_t *off);
int ps__slot_alloc_run(ps_world *w, int table, int node, uint32_t slot_size, uint64_t n, uint64_t *first);
/* Frees n slots of one pool (after a grace period) under one lock. */
void ps__slots_free(ps_world *w, int table, int node, const uint64_t *offs, size_t n, uint32_t value_len);
int ps__shared_alloc(struct ps__seg *s, uint64_t size, uint64_t *off);
int ps__budget_charge(struct ps__seg *s, uint64_t bytes);

/* kv.c: slot access */
uint64_t ps__slot_lock(ps_world *w, ps_table *t, struct ps__slot *sl, bool *moved);
void ps__req_execute(struct ps_req *r);
void ps__slot_unlock(struct ps__slot *sl, uint64_t s, bool moved);
uint64_t ps__wait_unlocked(ps_world *w, ps_table *t, struct ps__slot *sl, uint64_t s);
void ps__copy_out(uint32_t *dst, struct ps__slot *sl, uint32_t len);
/* Frees a lock whose holder is dead (I5): version + 1, MOVED when loc[k]
 * names another slot now.  Returns true if it changed the word. */
bool ps__slot_recover(ps_world *w, ps_table *t, struct ps__slot *sl, uint64_t s);
int ps__localize_keys(ps_table *t, const ps_key *keys, size_t n);
/* 0, or PS_ETABLE (not a table), -EINVAL (no keys), PS_EKEY (out of range) */
int ps__check_keys(ps_table *t, const ps_key *keys, size_t n);
void ps__add_values(struct ps__slot *sl, const float *upd, uint32_t len);
int ps__push_key(ps_world *w, ps_table *t, ps_key k, const float *upd); /* in a read section */
bool ps__slot_current(ps_table *t, uint64_t k, uint64_t off);

/* replica.c */
static inline struct ps__slot *ps__replica_at(ps_table *t, int node, uint32_t r)
{
	return (struct ps__slot *)(t->w->seg.base + t->d->rbase[node] + (uint64_t)2 * r * t->slot_size);
}
int ps__replica_pull(ps_world *w, ps_table *t, ps_key k, uint64_t lw, float *out);
int ps__replica_push(ps_world *w, ps_table *t, ps_key k, uint64_t lw, const float *upd);
/* Sets the handle's replication pointers (counts, rprim, rkey, rfree) from
 * the descriptor (ps__table_bind). */
void ps__replica_bind(ps_world *w, ps_table *t);
/* At table creation (not when a restarted node replays it): binds, then
 * lays out this node's replica slots. */
int ps__replica_init_node(ps_world *w, ps_table *t);
/* checkpoint.c: copy out / assign a replicated key (1, or 0: re-read loc[k]) */
int ps__replica_access(ps_world *w, ps_table *t, ps_key k, uint64_t lw, uint32_t nf, uint32_t *out,
		       const uint32_t *in);
bool ps__replica_step(ps_world *w);    /* service: periodic rounds if due */
/* Link thread: RPULL (out) / RPUSH (in) of another host on the primaries
 * of keys this host holds (R9). */
int ps__replica_serve(ps_table *t, const ps_key *keys, size_t n, float *out, const float *in);
void ps__replica_flush(ps_world *w);   /* finalize: merge this node's deltas */

/* bridge_link.c: a node's link to its host's bridge (multi-host jobs) */
struct ps__link;
struct ps__rgroup;
int ps__link_start(ps_world *w);
void ps__link_stop(ps_world *w);          /* final barrier over every host, close */
/* Keys [*k0, *k1) have this host as their home (all of them on one host). */
void ps__host_keys(const ps_world *w, uint64_t num_keys, uint64_t *k0, uint64_t *k1);
int ps__home_of(const ps_world *w, uint64_t num_keys, ps_key k);
void ps__link_mark_remote(ps_world *w, ps_table *t, uint64_t k0, uint64_t k1);
/* Barrier over every node of every host on the table's shape (local_rc:
 * this node's result so far; a failure anywhere fails it everywhere). */
int ps__link_table_created(ps_world *w, ps_table *t, int id, const struct ps__tdesc *d, int local_rc);
int ps__link_barrier_workers(ps_world *w); /* ps_barrier's part across hosts */
/* Pulls or pushes a validated batch of a multi-host job (kv.c's run_batch
 * with a link): keys held here are done here, the others are sent to the
 * hosts their words name, and redirected until they land.  With async,
 * what is still in flight is returned in *async (NULL if nothing), else
 * waited for.  ps__remote_wait completes and frees a group. */
int ps__route_batch(ps_table *t, const ps_key *keys, size_t n, float *out, const float *in,
		    struct ps__rgroup **async);
/* The link to the bridge is broken (or there is none). */
bool ps__link_down(ps_world *w);
/* CLOCK frame to every other host: 0 or PS_EHOSTDOWN (link broken). */
int ps__link_send_clock(ps_world *w, uint64_t min, uint64_t cfg);
/* Barrier over every node of every host that agrees on nothing: *tag in
 * is this node's value, out the minimum of every node's (checkpoint.c). */
int ps__link_barrier_min(ps_world *w, uint64_t *tag);
/* Node 0: tells node 0 of every other host that a checkpoint to path was
 * asked for here (before the poll's barrier over hosts). */
int ps__link_ckpt_send(ps_world *w, const char *path);
/* Node 0: the path host sent, if it is the lowest host that sent one since
 * the last take (0), else -ENOENT; forgets what was kept either way. */
int ps__link_ckpt_take(ps_world *w, int host, char *path, size_t len);
int ps__remote_wait(ps_world *w, struct ps__rgroup *g);
/* Sends keys[i] to hosts[i] as frames of type (PS__F_PULL/PUSH/RPULL/
 * RPUSH), whatever their location words say; complete with ps__remote_wait. */
int ps__remote_start_to(ps_table *t, const ps_key *keys, const uint16_t *hosts, size_t n, float *out,
			const float *in, unsigned type, struct ps__rgroup **g);

/* kv.c, for the bridge: the keys pos[0..m) of keys[] (pos NULL: 0..m)
 * that this host holds are pulled into out / pushed from in (at their
 * position's row) in one read-side section; the positions of the others
 * (REMOTE or MOVING words, also ones that moved away meanwhile) are
 * stored in miss[*nmiss++].  *local, *repl count keys served by this
 * node's own arena and by replicas. */
void ps__local_keys(ps_table *t, const ps_key *keys, const uint32_t *pos, size_t m, float *out,
		    const float *in, uint32_t *miss, size_t *nmiss, uint64_t *local, uint64_t *repl);
/* Statistics of a pull or push batch (and PS_COUNT_ACCESS counters). */
void ps__count_batch(ps_world *w, ps_table *t, const ps_key *keys, size_t n, bool pull, uint64_t local,
		     uint64_t repl);
/* Fills a fresh slot at off with key k and nf floats (values + rule
 * state), unlocked, not yet published. */
void ps__slot_fill(ps_world *w, ps_table *t, uint64_t off, ps_key k, const uint32_t *vals);
/* If this host holds k in a slot (not replicated, not REMOTE): copies its
 * values and rule state to vals, publishes loc[k] = newword, retires the
 * slot into *ret and returns 1; else 0.  Inside a read-side section. */
int ps__slot_give(ps_world *w, ps_table *t, ps_key k, uint64_t newword, uint32_t *vals, struct ps__retired *ret);

/* migrate.c: moving keys between hosts (localize across hosts) */
struct ps__move_req;
/* Moves the keys[0..n) held by other hosts to this node; keys that cannot
 * move now are left where they are (localize is a hint).  0 or a code. */
int ps__migrate_in(ps_table *t, const ps_key *keys, size_t n);
/* A MOVE request of another host, executed by this node's link thread:
 * writes the MOVE_REPLY body into out (room: ps__move_reply_size(n, nf, n))
 * and returns its length. */
uint32_t ps__migrate_serve(ps_world *w, ps_table *t, int from_host, const struct ps__move_req *m, uint8_t *out);
/* Synchronous calls through the link: for each i, sends frames[i] (a
 * sealed MOVE with body room) to hosts[i] and stores the reply body (a
 * malloc'd copy, NULL on failure) in replies[i]; all in flight at once.
 * Returns 0 or the first failure (then some replies may be NULL). */
int ps__link_calls(ps_world *w, int n, uint8_t *const frames[], const uint32_t lens[], const int hosts[],
		   uint8_t *replies[], uint32_t rlens[]);

/* grace.c */
void ps__retire(ps_world *w, struct ps__retire_batch *b);
bool ps__grace_step(ps_world *w);       /* service: one grace period if due */
size_t ps__reclaim(ps_world *w, bool force);
void ps__service_start(ps_world *w);
void ps__service_stop(ps_world *w);

/* barrier.c */
int ps__barrier_wait(ps_world *w, struct ps__barrier *b);
/* The node barrier; *idx (may be NULL) gets the barrier's index. */
int ps__node_barrier(ps_world *w, uint32_t *idx);
/* True if this process's next node barrier was passed by its dead
 * predecessor already (restart replay): the work before it is done. */
bool ps__node_replaying(const ps_world *w);
/* Participants of barrier b that have not arrived at barrier idx; when
 * nodes is not NULL (PS__MAX_NODES entries), their nodes go there and
 * their number to *nnodes (dump, liveness checks). */
int ps__barrier_missing(const struct ps__seg *s, const struct ps__barrier *b, uint32_t idx, int *nodes, int *nnodes);

/* table.c */
void ps__table_bind(ps_world *w, int id, ps_table *t); /* handle from descriptor */

/* restart.c */
bool ps__restart_mode(const struct ps__seg *s);  /* psrun --on-failure restart */
int ps__restart_takeover(ps_world *w, uint32_t old_word);

/* checkpoint.c: psrun --restore checks the file before starting nodes:
 * host rank's file of a checkpoint to path (path for host 0 and a one-host
 * job, path.hostR for the others) goes to file; 0 when its header, length,
 * host count and rank are right, else a code and why in msg. */
int ps__ckpt_check_file(const char *path, int hosts, int rank, char *file, size_t flen, char *msg, size_t len);

/* clock.c */
void ps__worker_set(int index);          /* ps_run_workers: this thread is worker index */
/* Link thread: host's CLOCK frame (its slowest clock, its bound word). */
void ps__clock_heard(ps_world *w, int host, uint64_t min, uint64_t cfg);
/* Link thread: host left or died (-1: every host, the link broke). */
void ps__clock_host_gone(ps_world *w, int host);
/* A clock waiter waiting for a remote host: arg2 of PS__WAIT_CLOCK */
#define PS__CLOCK_WAIT_HOST (1ULL << 63)

/* rules.c */
struct ps__rule_info {
	uint32_t state_len;       /* floats of state per slot for this value_len */
	uint64_t fp;              /* fingerprint: name and state sizes */
	ps_rule_fn fn;            /* custom rules */
};
/* Checks the rule options (-EINVAL, PS_EHOGWILD): bad input, local. */
int ps__rule_check(const ps_table_opts *o);
/* Resolves a checked rule in this process: PS_ERULE if not registered. */
int ps__rule_resolve(const ps_table_opts *o, struct ps__rule_info *out);
/* Applies one pushed update to a locked slot (not for PS_RULE_SUM). */
void ps__rule_apply(const ps_table *t, struct ps__slot *sl, const float *upd);
/* The custom rule function registered in this process for rule id, else NULL. */
ps_rule_fn ps__rule_fn(uint32_t rule);

/* segment.c */
int ps__seg_create(const struct ps__seg_params *p, struct ps__seg *out);
int ps__seg_attach(const char *name, bool readonly, struct ps__seg *out);
void ps__seg_detach(struct ps__seg *s);
int ps__seg_unlink(const char *name);
int ps__seg_sweep_stale(FILE *log);   /* removes segments of dead jobs; returns count */
int ps__seg_find(char *name, size_t len); /* newest psmem segment of this uid */
uint64_t ps__proc_start_time(pid_t pid);
bool ps__pid_alive(pid_t pid, uint64_t start_time);
bool ps__node_alive(const struct ps__seg *s, int node);
uint32_t ps__node_kind(const struct ps__seg *s, int node); /* acquire load, state bits */
/* Marks node DEAD if its incarnation is ALIVE and its process is gone. */
void ps__mark_dead(struct ps__seg *s, int node);

/* fast.c: the inline path's side in the library, per-thread counters */
void ps__table_pub_bind(ps_world *w, ps_table *t); /* end of ps__table_bind */
void ps__tctx_enter(ps_world *w);  /* thread registration: a counters slot */
void ps__tctx_exit(void);          /* thread exit / finalize: gives it back */
/* The node's counters: shared ones plus its threads'; a buffer of the
 * calling thread, valid until its next call (relaxed loads: a snapshot). */
const struct ps__stats *ps__node_stats(const struct ps__node *n);
/* Counts a pull or push batch's keys (kv.c count_batch): the calling
 * thread's counters, or the node's shared ones for an unregistered thread. */
void ps__count_keys(ps_world *w, bool pull, uint64_t n, uint64_t local, uint64_t repl);

/* dump.c */
void ps__dump_seg(const struct ps__seg *s, FILE *f);

/* util */
uint64_t ps__now_ns(void);
int ps__futex_wait(_Atomic uint32_t *addr, uint32_t val, int64_t timeout_ns, bool shared);
int ps__futex_wake(_Atomic uint32_t *addr, int n, bool shared);
static inline uint64_t ps__mix64(uint64_t x)
{
	/* splitmix64 finaliser: placement hash and initial values */
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}
static inline void ps__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

#endif /* PSMEM_INT_H */
