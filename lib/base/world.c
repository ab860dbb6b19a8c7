/*
 * world.c - joining and leaving a job; per-thread registration.
 *
 * Under psrun the environment names the segment and this node:
 *   PSMEM_SEGMENT, PSMEM_NODE, PSMEM_NODES, PSMEM_THREADS, PSMEM_NUMA.
 * Without psrun, ps_init creates a private one-node segment, unlinks its
 * name at once (so no exit path can leak it) and attaches exactly as a node
 * under psrun does.  Its placement follows where the process was put
 * (segment.c, numa_mode "here"): confined to one socket's CPUs, the arena is
 * bound and the workers are pinned there; free to run on several sockets,
 * nothing is bound or pinned.
 *
 * Invariants
 *   - One world per process (a second ps_init fails with -EBUSY).
 *   - A node slot is taken only if it is EMPTY, EXITED or DEAD: a second live
 *     process for the same node id is refused (-EBUSY).  Taking the slot of
 *     a dead process (DEAD, or ALIVE with its process gone) is a restart:
 *     restart.c first frees what the dead incarnation held.
 *   - Attach order (grace.c GR2): epoch := global_epoch, pid/start_time, then
 *     state := ALIVE of the next incarnation, one CAS from the word seen,
 *     then a seq_cst fence before any location word is loaded: with the
 *     reclaimer's fence (grace.c min_epoch) it forbids the store-buffering
 *     outcome "we read an old word, it reads us not ALIVE and frees it".
 *   - Barrier slots: a thread started by ps_run_workers is the participant
 *     of its index; any other thread takes the lowest free slot at its
 *     first barrier and gives it back when it exits.
 *   - Every thread that touches the segment's tables is registered with
 *     liburcu (memb flavor) on its first call and unregistered when it exits
 *     (pthread key destructor) or at ps_finalize for the finalizing thread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <jemalloc/jemalloc.h>
#include <numa.h>
#include <urcu/urcu-memb.h>

#include "segment.h"
#include "util.h"
#include "world.h"
#include "tctx.h"

static _Atomic(ps_world *) the_world;
static pthread_key_t thread_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

struct thread_state {
	ps_world *w;
	int waiter;               /* index in me->waiters, -1 if none */
	int slot;                 /* barrier slot, -1 until needed */
	bool own_slot;            /* taken from slot_used: give it back at exit */
};
static __thread struct thread_state *tstate;

static void release_slot(struct thread_state *ts)
{
	if (!ts->own_slot)
		return;
	pthread_mutex_lock(&ts->w->slots_lock);
	ts->w->slot_used[ts->slot / 64] &= ~(1ULL << (ts->slot % 64));
	pthread_mutex_unlock(&ts->w->slots_lock);
	ts->own_slot = false;
}

static void thread_exit(void *p)
{
	struct thread_state *ts = p;
	if (ts->w)
		release_slot(ts);
	if (ts->w && ts->waiter >= 0)
		atomic_store_explicit(&ts->w->me->waiters[ts->waiter].what, PS__WAIT_NONE, memory_order_relaxed);
	ps__tctx_exit(); /* tctx.c: its counters slot */
	urcu_memb_unregister_thread();
	free(ts);
	tstate = NULL;
}

static void make_key(void)
{
	pthread_key_create(&thread_key, thread_exit);
}

void ps__thread_enter(ps_world *w)
{
	if (__builtin_expect(tstate != NULL, 1))
		return;
	struct thread_state *ts = calloc(1, sizeof *ts);
	if (!ts)
		abort(); /* cannot register: no safe way to continue */
	ts->w = w;
	ts->slot = -1;
	/* relaxed: a slot index, nothing else is published by it */
	uint32_t i = atomic_fetch_add_explicit(&w->me->nwaiters, 1, memory_order_relaxed);
	ts->waiter = i < PS__MAX_WAITERS ? (int)i : -1;
	if (ts->waiter >= 0)
		atomic_store_explicit(&w->me->waiters[i].tid, (int32_t)syscall(SYS_gettid), memory_order_relaxed);
	urcu_memb_register_thread();
	ps__tctx_enter(w); /* tctx.c: counters slot, inline context */
	pthread_once(&key_once, make_key);
	pthread_setspecific(thread_key, ts);
	tstate = ts;
}

void ps__thread_set_slot(ps_world *w, int slot)
{
	ps__thread_enter(w);
	release_slot(tstate);
	tstate->slot = slot;
}

int ps__worker_slot(ps_world *w)
{
	ps__thread_enter(w);
	struct thread_state *ts = tstate;
	if (ts->slot >= 0)
		return ts->slot;
	int n = w->nthreads < PS__MAX_WORKERS ? w->nthreads : PS__MAX_WORKERS;
	pthread_mutex_lock(&w->slots_lock);
	for (int i = 0; i < n && ts->slot < 0; i++) {
		if (!(w->slot_used[i / 64] & (1ULL << (i % 64)))) {
			w->slot_used[i / 64] |= 1ULL << (i % 64);
			ts->slot = i;
			ts->own_slot = true;
		}
	}
	pthread_mutex_unlock(&w->slots_lock);
	return ts->slot >= 0 ? ts->slot : -EBUSY; /* more threads than ps_num_threads */
}

void ps__wait_set(ps_world *w, enum ps__wait_what what, uint64_t arg, uint64_t arg2)
{
	if (!tstate || tstate->waiter < 0)
		return;
	struct ps__waiter *wt = &w->me->waiters[tstate->waiter];
	/* relaxed: diagnostic snapshot for ps_dump */
	atomic_store_explicit(&wt->arg, arg, memory_order_relaxed);
	atomic_store_explicit(&wt->arg2, arg2, memory_order_relaxed);
	atomic_store_explicit(&wt->what, what, memory_order_relaxed);
}

void ps__wait_clear(ps_world *w)
{
	if (tstate && tstate->waiter >= 0)
		atomic_store_explicit(&w->me->waiters[tstate->waiter].what, PS__WAIT_NONE, memory_order_relaxed);
}

void ps__doorbell(ps_world *w)
{
	/* release: the request or batch enqueued before is visible to the
	 * service thread that acquires the doorbell */
	atomic_fetch_add_explicit(&w->doorbell, 1, memory_order_release);
	ps__futex_wake(&w->doorbell, 1, false);
}

/* Process-private allocations come from this node's jemalloc arena.  Under
 * a sanitizer they go through malloc, which the sanitizer intercepts; so do
 * they in the Python module's copy of the library (PS_NO_JEMALLOC: python
 * dlopen()s it, and jemalloc's initial-exec TLS does not fit). */
void *ps__alloc(ps_world *w, size_t size)
{
#if defined(PS_SANITIZE) || defined(PS_NO_JEMALLOC)
	(void)w;
	return malloc(size);
#else
	return mallocx(size, MALLOCX_ARENA(w->je_arena));
#endif
}

void ps__free(ps_world *w, void *p)
{
	(void)w;
#if defined(PS_SANITIZE) || defined(PS_NO_JEMALLOC)
	free(p);
#else
	if (p)
		dallocx(p, 0);
#endif
}

static int env_int(const char *name, int def)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return def;
	char *end;
	long x = strtol(v, &end, 10);
	if (*end || x < 0 || x > 1 << 20)
		return -1;
	return (int)x;
}

static int attach_env(ps_world *w)
{
	const char *name = getenv("PSMEM_SEGMENT");
	int rc = ps__seg_attach(name, false, &w->seg);
	if (rc)
		return rc;
	w->node = env_int("PSMEM_NODE", 0);
	if (w->node < 0 || w->node >= (int)w->seg.hdr->num_nodes)
		return PS_ENODE;
	return 0;
}

static int create_private(ps_world *w, int threads)
{
	struct ps__seg_params p = {.num_nodes = 1, .threads_per_node = 1};
	int t = threads > 0 ? threads : env_int("PSMEM_THREADS", 1);
	p.threads_per_node = t > 0 ? (uint32_t)t : 1;
	/* placed where the process was put (segment.c, numa_mode "here") */
	const char *numa = getenv("PSMEM_NUMA");
	p.numa_mode = numa && strcmp(numa, "none") == 0 ? PS__NUMA_NONE : PS__NUMA_HERE;
	int rc = ps__seg_create(&p, &w->seg);
	if (rc)
		return rc;
	ps__seg_unlink(w->seg.name); /* nobody else attaches: no exit path leaks it */
	w->embedded = true;
	w->node = 0;
	return 0;
}

/* Under psrun: every node asks for the same worker count, which replaces
 * psrun's -t for this job (before any barrier is used). */
static int set_threads(ps_world *w, int threads)
{
	struct ps__hdr *h = w->seg.hdr;
	uint32_t t = (uint32_t)threads, cur = 0;
	/* relaxed: the node barrier of the first table creation orders it */
	if (!atomic_compare_exchange_strong_explicit(&h->threads_set, &cur, t, memory_order_relaxed,
						     memory_order_relaxed) && cur != t)
		return PS_EMISMATCH;
	atomic_store_explicit(&h->threads_per_node, t, memory_order_relaxed);
	atomic_store_explicit(&h->workers.total, t * h->num_nodes, memory_order_relaxed);
	return 0;
}

int ps__env_int(const char *name, int def)
{
	return env_int(name, def);
}

/*
 * The one world of this process, or false: NULL, a pointer that never was
 * a world, or one that ps_finalize freed (it clears the_world before the
 * caller gets its result back).  Not read through w, so a finalized world
 * is never touched.
 */
bool ps__world_current(const ps_world *w)
{
	return w && w == atomic_load(&the_world);
}

bool ps__world_any(void)
{
	return atomic_load(&the_world) != NULL;
}

ps_world *ps__world_open(int threads, int *err)
{
	int rc = 0;
	ps_world *expected = NULL;
	ps_world *w = calloc(1, sizeof *w);
	if (!w) {
		rc = -ENOMEM;
		goto out;
	}
	if (!atomic_compare_exchange_strong(&the_world, &expected, w)) {
		free(w);
		w = NULL;
		rc = -EBUSY;
		goto out;
	}
	pthread_mutex_init(&w->tables_lock, NULL);
	pthread_mutex_init(&w->slots_lock, NULL);
	pthread_mutex_init(&w->req_lock, NULL);
	if (threads < 0 || threads > PS__MAX_WORKERS) {
		rc = -EINVAL;
		goto fail;
	}
	rc = getenv("PSMEM_SEGMENT") ? attach_env(w) : create_private(w, threads);
	if (rc == 0 && threads > 0 && !w->embedded)
		rc = set_threads(w, threads);
	if (rc)
		goto fail;
	struct ps__hdr *h = w->seg.hdr;
	w->nnodes = (int)h->num_nodes;
	w->nthreads = (int)atomic_load_explicit(&h->threads_per_node, memory_order_relaxed);
#ifdef PS_TEST_HOOKS /* test builds only (libpsmem_test.a): release builds ignore these */
	w->no_grace = getenv("PSMEM_DEBUG_NO_GRACE") && *getenv("PSMEM_DEBUG_NO_GRACE") == '1';
	w->slow_switch = getenv("PSMEM_DEBUG_SLOW_SWITCH") && *getenv("PSMEM_DEBUG_SLOW_SWITCH") == '1';
	/* relaxed: set before the service thread starts (pthread_create orders it) */
	atomic_store_explicit(&w->hold_reclaim,
			      getenv("PSMEM_DEBUG_HOLD_RECLAIM") && *getenv("PSMEM_DEBUG_HOLD_RECLAIM") == '1',
			      memory_order_relaxed);
#endif
	goto out;
fail:
	ps__world_abort(w);
	w = NULL;
out:
	*err = rc;
	return w;
}

void ps__world_abort(ps_world *w)
{
	ps__seg_detach(&w->seg);
	free(w);
	atomic_store(&the_world, NULL);
}

void ps__world_close(ps_world *w)
{
	for (int i = 0; i < PS__MAX_TABLES; i++) {
		if (w->tables[i]) {
			w->tables[i]->magic = 0;
			ps__free(w, w->tables[i]);
		}
	}
	/* relaxed: our own word (incarnation); release below: our last
	 * writes to the segment happen before EXITED */
	uint32_t st = atomic_load_explicit(&w->me->state, memory_order_relaxed);
	atomic_store_explicit(&w->me->state, PS__NODE_WORD(PS__NODE_EXITED, PS__NODE_INC(st)), memory_order_release);
	if (tstate && tstate->w == w) {
		pthread_setspecific(thread_key, NULL);
		thread_exit(tstate);
	}
	for (struct ps_req *r = w->req_all, *nx; r; r = nx) {
		nx = r->next_all;
		ps__free(w, r);
	}
	ps__seg_detach(&w->seg);
	pthread_mutex_destroy(&w->tables_lock);
	pthread_mutex_destroy(&w->slots_lock);
	pthread_mutex_destroy(&w->req_lock);
	free(w);
	atomic_store(&the_world, NULL);
}

int ps_node_id(const ps_world *w) { return ps__world_current(w) ? w->node : -EINVAL; }
int ps_num_nodes(const ps_world *w) { return ps__world_current(w) ? w->nnodes : -EINVAL; }
int ps_num_threads(const ps_world *w) { return ps__world_current(w) ? w->nthreads : -EINVAL; }
int ps_host_id(const ps_world *w) { return ps__world_current(w) ? w->host : -EINVAL; }
int ps_num_hosts(const ps_world *w) { return ps__world_current(w) ? w->nhosts : -EINVAL; }
const char *ps_segment_name(const ps_world *w)
{
	if (!ps__world_current(w))
		return NULL;
	return ps__seg_label(w->seg.name);
}

int ps_restarted(const ps_world *w) { return w && w->restarted; }

int ps_replaying(ps_world *w)
{
	if (!w)
		return -EINVAL;
	int slot = ps__worker_slot(w);
	if (slot < 0)
		return slot;
	return w->calls[slot] < w->replay[slot];
}

/*
 * Progress words are tagged with the calling slot's step (the index of its
 * next barrier, 24 bits), so a value set before barrier i reads as 0 after
 * it: progress never leaks into the next step, even across a restart.
 */
#define PROGRESS_BITS 40

int ps_progress_set(ps_world *w, uint64_t value)
{
	if (!w || value >> PROGRESS_BITS)
		return -EINVAL;
	int slot = ps__worker_slot(w);
	if (slot < 0)
		return slot;
	uint64_t tag = (uint64_t)(w->calls[slot] & 0xffffffu) << PROGRESS_BITS;
	/* relaxed: read back only by this slot's thread, or by a replacement
	 * after psrun reaped this process */
	atomic_store_explicit(&w->me->ws[slot].progress, tag | value, memory_order_relaxed);
	return 0;
}

int64_t ps_progress_get(ps_world *w)
{
	if (!w)
		return -EINVAL;
	int slot = ps__worker_slot(w);
	if (slot < 0)
		return slot;
	/* relaxed: see ps_progress_set */
	uint64_t p = atomic_load_explicit(&w->me->ws[slot].progress, memory_order_relaxed);
	if ((p >> PROGRESS_BITS) != (w->calls[slot] & 0xffffffu))
		return 0;
	return (int64_t)(p & ((1ULL << PROGRESS_BITS) - 1));
}
