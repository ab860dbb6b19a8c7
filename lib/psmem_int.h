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

#define PS__MAGIC        0x4745536d656d7370ULL /* "psmemSEG" little-endian */
#define PS__ABI          1u
#define PS__MAX_NODES    64
#define PS__MAX_TABLES   64
#define PS__MAX_WAITERS  64    /* per node: threads visible to ps_dump */
#define PS__CL           64    /* cache line */
#define PS__PAGE         4096
#define PS__HUGE         (2u << 20)
#define PS__CHUNK        (1u << 20) /* memory-budget accounting granule */
#define PS__NAME_MAX     64
#define PS__DEFAULT_ARENA  (64ULL << 30) /* virtual, per node */
#define PS__DEFAULT_SHARED (16ULL << 30) /* virtual, location tables */

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

enum ps__wait_what {
	PS__WAIT_NONE = 0,
	PS__WAIT_BARRIER,    /* arg: barrier generation */
	PS__WAIT_SLOTLOCK,   /* arg: slot offset; arg2: holder node */
	PS__WAIT_REQUEST,    /* arg: request kind; waiting in ps_wait */
	PS__WAIT_CREATE,     /* arg: table id; waiting for peers in ps_table_create */
	PS__WAIT_GRACE,      /* arg: epoch tag; waiting for a grace period */
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
	/* state: W: creator CAS EMPTY->CREATING, release store READY after all
	 * fields and the location table region are set; R: other nodes,
	 * acquire before reading any field. */
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
};

/* -------------------------------------------------------------- barrier */

struct ps__barrier {
	/* count: arrivals in this generation (acq_rel fetch_add).  gen: bumped
	 * by the last arriver with release after resetting count; waiters
	 * acquire it (and futex-wait on it), so everything done before the
	 * barrier by any participant is visible after it. */
	PS__CACHE_ALIGNED _Atomic uint32_t count;
	_Atomic uint32_t gen;
	_Atomic uint32_t total; /* W: creator, or ps_init_threads before first use */
};

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
	uint32_t numa_mode;       /* 0 auto, 1 none */
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
#define PS__LOC_OWNER(w)   ((int)((w) >> 48))
#define PS__LOC_OFF(w)     ((((w) >> 8) & 0xffffffffffULL) << 4)

/*
 * Slot: [ seq (8) | key (8) | values (4 x value_len) ], padded to 16 bytes,
 * or to 64 when it reaches a cache line.
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

struct ps__seg_params {
	uint32_t num_nodes;
	uint32_t threads_per_node;
	uint32_t numa_mode;        /* 0 auto, 1 none */
	uint64_t arena_size;       /* 0: default */
	uint64_t shared_size;      /* 0: default */
	uint64_t mem_budget;       /* 0: 90% of free /dev/shm */
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
	uint32_t magic;
	int id;
	ps_world *w;
	struct ps__tdesc *d;
	_Atomic uint64_t *loc;    /* location table in the segment */
	uint64_t num_keys;
	uint32_t value_len;
	uint32_t slot_size;
	uint32_t flags;
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
	struct ps__retire_batch **pending;
	size_t npending, cap_pending;

	pthread_mutex_t tables_lock;
	ps_table *tables[PS__MAX_TABLES];
	int ntables;              /* collective creation counter */

	int host, nhosts;         /* multi-host: this host's rank, host count (1) */
	struct ps__link *link;    /* to the host's bridge; NULL on one host */
};

/* world.c */
void ps__thread_enter(ps_world *w);      /* registers the calling thread once */
void ps__wait_set(ps_world *w, enum ps__wait_what what, uint64_t arg, uint64_t arg2);
void ps__wait_clear(ps_world *w);
void ps__doorbell(ps_world *w);
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
int ps__localize_keys(ps_table *t, const ps_key *keys, size_t n);

/* bridge_link.c: a node's link to its host's bridge (multi-host jobs) */
struct ps__link;
struct ps__rgroup;
int ps__link_start(ps_world *w);
void ps__link_stop(ps_world *w);          /* final barrier over every host, close */
/* Keys [*k0, *k1) are held by this host (all of them on one host). */
void ps__host_keys(const ps_world *w, uint64_t num_keys, uint64_t *k0, uint64_t *k1);
void ps__link_mark_remote(ps_world *w, ps_table *t, uint64_t k0, uint64_t k1);
/* Barrier over every node of every host on the table's shape (local_rc:
 * this node's result so far; a failure anywhere fails it everywhere). */
int ps__link_table_created(ps_world *w, int id, const struct ps__tdesc *d, int local_rc);
int ps__link_barrier_workers(ps_world *w); /* ps_barrier's part across hosts */
/* Sends the batch's keys held by other hosts; returns how many (0: *g
 * NULL) or a negative code.  ps__remote_wait completes and frees *g. */
int ps__remote_start(ps_table *t, const ps_key *keys, size_t n, float *out, const float *in,
		     struct ps__rgroup **g);
int ps__remote_wait(ps_world *w, struct ps__rgroup *g);

/* grace.c */
void ps__retire(ps_world *w, struct ps__retire_batch *b);
bool ps__grace_step(ps_world *w);       /* service: one grace period if due */
size_t ps__reclaim(ps_world *w, bool force);
void ps__service_start(ps_world *w);
void ps__service_stop(ps_world *w);

/* barrier.c */
int ps__barrier_wait(ps_world *w, struct ps__barrier *b);

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
void ps__mark_dead(struct ps__seg *s, int node);

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
