/* PRIVATE to libpsmem and its tools (psrun, psstat, tests), not installed:
 * segment.h - the layout of the shared segment. */
#ifndef PSMEM_BASE_SEGMENT_H
#define PSMEM_BASE_SEGMENT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "psmem.h"
#include "psmem_static.h" /* struct ps_tstat: per-thread counters in ps__node (tctx.c) */
#include "util.h"

/*
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

#define PS__MAGIC        0x4745536d656d7370ULL /* "psmemSEG" little-endian */
#define PS__ABI          3u    /* 2: per-thread counters ps__node.tstats; 3: robust mutexes for the pool, create and replica locks (lock.c) */
#define PS__MAX_NODES    64
#define PS__MAX_TABLES   64
#define PS__MAX_WAITERS  64    /* per node: threads visible to ps_dump */
#define PS__MAX_CLOCK_THREADS 256 /* per node: worker clocks (clock.c) */
#define PS__MAX_CLOCK_HOSTS 1024  /* = PS__MAX_HOSTS (bridge.h): other hosts' clocks */
#define PS__PAGE         4096
#define PS__HUGE         (2u << 20)
#define PS__CHUNK        (1u << 20) /* memory-budget accounting granule */
#define PS__NAME_MAX     256   /* "/psmem-<id>" or a hugetlbfs path (segment.c) */
#define PS__DEFAULT_ARENA  (64ULL << 30) /* virtual, per node */
#define PS__DEFAULT_SHARED (16ULL << 30) /* virtual, location tables */
#define PS__GRACE_MIN_GAP_NS (250 * 1000ULL) /* between grace periods of a node (GR4) */
#define PS__MAX_WORKERS  1024  /* worker threads per node (barrier slots) */
#define PS__MAX_TSTATS   256   /* threads per node with their own counters (tctx.c) */
#define PS__PATH_MAX     1024  /* checkpoint paths kept in the segment */
#define PS__MSG_MAX      512   /* checkpoint result messages in the segment */

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

	/* Per-thread counters of pulls and pushes (tctx.c): slot i is written
	 * by the one thread of the node's process that holds it; ps_stats and
	 * psstat add them to stats (ps__node_stats). */
	struct ps_tstat tstats[PS__MAX_TSTATS];
};

/* --------------------------------------------------------------- tables */

enum ps__table_state { PS__T_EMPTY = 0, PS__T_CREATING = 1, PS__T_READY = 2 };

/* Pool of slots of one table in one node's arena (a slab). */
struct ps__pool {
	/* lock: a robust process-shared mutex (lock.c; initialised by the
	 * table's creator, ps__pool_reserve).  Orders every field below.
	 * Held only for a few stores. */
	PS__CACHE_ALIGNED pthread_mutex_t lock;
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
	/* Serialises replicate / unreplicate / sync rounds of the table: a
	 * robust process-shared mutex (lock.c; initialised by the creator
	 * before READY; a taker after a dead holder repairs, replica.c RP11).
	 * Orders rprim, rkey, rfree, repl_nfree and the REPL location words. */
	PS__CACHE_ALIGNED pthread_mutex_t repl_lock;
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

	/* Replication across hosts (replica.c RP8-RP10).  repl_xlock serialises
	 * this host's set switches, remote rounds and ps_sync of the table
	 * (a robust process-shared mutex, lock.c, as repl_lock); it is
	 * held across bridge round trips, never by a link thread.  repl_remote:
	 * replicated keys whose primary is on another host (W: under
	 * repl_lock; R: service threads, relaxed: a hint).  repl_xnext: when
	 * the next remote round is due (ns; W: the xlock holder; R: service
	 * threads, relaxed: a hint re-checked under the xlock). */
	PS__CACHE_ALIGNED pthread_mutex_t repl_xlock;
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
	 * protocol, clock.c CL3).  R: clock waiters (seq_cst), ps_clock_read
	 * (acquire), ps_dump (relaxed). */
	PS__CACHE_ALIGNED _Atomic uint64_t c[PS__MAX_NODES][PS__MAX_CLOCK_THREADS];
	/*
	 * Multi-host jobs (clock.c CLH1-CLH6).  sent: the highest slowest-local-
	 * clock this host has sent to the others (CAS max by the worker that
	 * raised it; that worker alone sends it).  announced: 1 once this
	 * host's bound went out (CAS 0 -> 1, the winner sends).  For every
	 * other host h, as last heard through this host's links:
	 *   hmin[h]  its slowest worker's clock (CAS max, link threads);
	 *   hcfg[h]  its bound word (0: nothing heard yet);
	 *   hgone[h] 1 once the bridge said it left or died (after every
	 *            CLOCK it sent: one TCP stream, then one link, in order).
	 * Written seq_cst by the link threads, which then bump seq and wake
	 * the waiters (the protocol of CL3); read seq_cst by clock waiters,
	 * relaxed by ps_dump.
	 */
	PS__CACHE_ALIGNED _Atomic uint64_t sent;
	_Atomic uint32_t announced;
	PS__CACHE_ALIGNED _Atomic uint64_t hmin[PS__MAX_CLOCK_HOSTS];
	_Atomic uint64_t hcfg[PS__MAX_CLOCK_HOSTS];
	_Atomic uint32_t hgone[PS__MAX_CLOCK_HOSTS];
	/* Elastic jobs (bridge.c EL1-EL8): hmember[h] is PS__HOST_MEMBER (0:
	 * every host of a job that is not elastic), PS__HOST_ABSENT (a rank
	 * not admitted yet, or never used) or PS__HOST_LEFT (it left by
	 * agreement).  W: psrun before the nodes start; then link threads at
	 * a SYNC result (seq_cst, then seq bumped and waiters woken as for
	 * hgone).  R: clock waiters (seq_cst), ps_hosts_alive (acquire).  Only
	 * members are waited for (EL4). */
	_Atomic uint32_t hmember[PS__MAX_CLOCK_HOSTS];
};
#define PS__HOST_MEMBER 0u
#define PS__HOST_ABSENT 1u
#define PS__HOST_LEFT   2u
/* hgone of a host lost before a joiner came, as the joiner's psrun marks
 * it: lost with its promotion done (backup.c), routed to its backup host */
#define PS__HGONE_BEFORE 0x40000000u

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
	/* serialises table layout: a robust process-shared mutex (lock.c),
	 * initialised by the segment's creator (segment.c) */
	pthread_mutex_t create_lock;

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
	/* Elastic jobs: num_hosts is the number of host ranks (PS__ELASTIC_HOSTS,
	 * joiners included) and home_hosts the job's initial host count, which
	 * alone decides key homes (table.c: a joiner homes no key, EL2);
	 * home_hosts 0: num_hosts.  joined: 1 on a host started by psrun
	 * --join.  W: psrun before the nodes start. */
	uint32_t home_hosts;
	uint32_t joined;

	/* Pages backing the segment (segment.c, "Huge pages").  W: creator,
	 * before the magic.  On hugetlbfs page_kb is also the budget's charge
	 * granule when above PS__CHUNK (ps__charge_unit). */
	uint32_t page_mode;       /* enum ps__pages */
	uint32_t page_kb;
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
	const char *hugetlb_dir;   /* psrun --hugepages: a hugetlbfs mount; NULL: /dev/shm */
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
bool ps__restart_mode(const struct ps__seg *s);  /* psrun --on-failure restart */
uint32_t ps__node_kind(const struct ps__seg *s, int node); /* acquire load, state bits */
/* Marks node DEAD if its incarnation is ALIVE and its process is gone. */
void ps__mark_dead(struct ps__seg *s, int node);

/* segment.c: huge pages (psrun --hugepages) */
enum ps__pages {
	PS__PAGES_SMALL = 0,      /* base pages */
	PS__PAGES_THP_ADVISE = 1, /* shmem THP, asked for by MADV_HUGEPAGE */
	PS__PAGES_THP_ALWAYS = 2, /* shmem THP whatever we ask */
	PS__PAGES_HUGETLB = 3,    /* a file on hugetlbfs */
};
struct ps__huge {
	char dir[PS__NAME_MAX - 24]; /* the mount; room for "/psmem-<16 hex>" */
	uint64_t page_size;          /* bytes */
	uint64_t avail;              /* bytes: free unreserved pages, within the mount's size= */
};
/* Finds the hugetlbfs mount dir (NULL or "": the first in /proc/mounts)
 * and what it offers; 0, or -1 with a one-line why ("no free huge pages
 * (...): ...") for psrun to print. */
int ps__huge_probe(const char *dir, struct ps__huge *out, char *why, size_t len);
/* Opens a segment by name: "/psmem-x" or "psmem-x" in /dev/shm, an
 * absolute path with a directory on hugetlbfs; -errno on failure. */
int ps__seg_open(const char *name, int flags);
/* "psmem-x" for a /dev/shm segment, the path for a hugetlbfs one. */
static inline const char *ps__seg_label(const char *name)
{
	return name[0] == '/' && !__builtin_strchr(name + 1, '/') ? name + 1 : name;
}
/* "hugetlbfs 2048 kB", "thp advise", "4 kB", ... */
const char *ps__seg_pages(const struct ps__seg *s, char *buf, size_t len);
static inline uint64_t ps__charge_unit(const struct ps__hdr *h)
{
	uint64_t page = (uint64_t)h->page_kb << 10;
	return h->page_mode == PS__PAGES_HUGETLB && page > PS__CHUNK ? page : PS__CHUNK;
}

#endif /* PSMEM_BASE_SEGMENT_H */
