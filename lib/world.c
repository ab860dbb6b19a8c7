/*
 * world.c - joining and leaving a job; per-thread registration.
 *
 * Under psrun the environment names the segment and this node:
 *   PSMEM_SEGMENT, PSMEM_NODE, PSMEM_NODES, PSMEM_THREADS, PSMEM_NUMA.
 * Without psrun, ps_init creates a private one-node segment, unlinks its
 * name at once (so no exit path can leak it) and attaches exactly as a node
 * under psrun does.
 *
 * Invariants
 *   - One world per process (a second ps_init fails with -EBUSY).
 *   - A node slot is taken only if it is EMPTY, EXITED or DEAD: a second live
 *     process for the same node id is refused (-EBUSY).
 *   - Attach order (grace.c G2): epoch := global_epoch, pid/start_time, then
 *     state := ALIVE with release.
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

#include "psmem_int.h"

static _Atomic(ps_world *) the_world;
static pthread_key_t thread_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

struct thread_state {
	ps_world *w;
	int waiter;               /* index in me->waiters, -1 if none */
};
static __thread struct thread_state *tstate;

static void thread_exit(void *p)
{
	struct thread_state *ts = p;
	if (ts->w && ts->waiter >= 0)
		atomic_store_explicit(&ts->w->me->waiters[ts->waiter].what, PS__WAIT_NONE, memory_order_relaxed);
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
	/* relaxed: a slot index, nothing else is published by it */
	uint32_t i = atomic_fetch_add_explicit(&w->me->nwaiters, 1, memory_order_relaxed);
	ts->waiter = i < PS__MAX_WAITERS ? (int)i : -1;
	if (ts->waiter >= 0)
		atomic_store_explicit(&w->me->waiters[i].tid, (int32_t)syscall(SYS_gettid), memory_order_relaxed);
	urcu_memb_register_thread();
	pthread_once(&key_once, make_key);
	pthread_setspecific(thread_key, ts);
	tstate = ts;
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
 * a sanitizer they go through malloc, which the sanitizer intercepts. */
void *ps__alloc(ps_world *w, size_t size)
{
#ifdef PS_SANITIZE
	(void)w;
	return malloc(size);
#else
	return mallocx(size, MALLOCX_ARENA(w->je_arena));
#endif
}

void ps__free(ps_world *w, void *p)
{
	(void)w;
#ifdef PS_SANITIZE
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
	const char *numa = getenv("PSMEM_NUMA");
	p.numa_mode = numa && strcmp(numa, "none") == 0;
	int rc = ps__seg_create(&p, &w->seg);
	if (rc)
		return rc;
	ps__seg_unlink(w->seg.name); /* nobody else attaches: no exit path leaks it */
	w->embedded = true;
	w->node = 0;
	return 0;
}

static int take_node(ps_world *w)
{
	struct ps__node *n = ps__node_at(&w->seg, w->node);
	uint32_t st = atomic_load_explicit(&n->state, memory_order_acquire);
	if (st == PS__NODE_ALIVE && ps__pid_alive(n->pid, n->start_time))
		return -EBUSY;
	/* G2: start at the current epoch: we hold no old location word */
	atomic_store_explicit(&n->epoch, atomic_load_explicit(&w->seg.hdr->global_epoch, memory_order_acquire),
			      memory_order_relaxed);
	n->pid = getpid();
	n->start_time = ps__proc_start_time(getpid());
	/* seq_cst: pid/epoch before ALIVE (release), and ALIVE before our first
	 * load of any location word (grace.c G2) */
	atomic_store_explicit(&n->state, PS__NODE_ALIVE, memory_order_seq_cst);
	w->me = n;
	return 0;
}

static unsigned make_je_arena(void)
{
#ifdef PS_SANITIZE
	return 0;
#else
	unsigned a = 0;
	size_t sz = sizeof a;
	if (mallctl("arenas.create", &a, &sz, NULL, 0) != 0)
		return 0;
	return a;
#endif
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

ps_world *ps_init(int *err)
{
	return ps_init_threads(0, err);
}

ps_world *ps_init_threads(int threads, int *err)
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
	if (threads < 0 || threads > 4096) {
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
	w->no_grace = getenv("PSMEM_DEBUG_NO_GRACE") && *getenv("PSMEM_DEBUG_NO_GRACE") == '1';
	rc = take_node(w);
	if (rc)
		goto fail;
	w->numa_node = ps__node_at(&w->seg, w->node)->numa_node;
	w->je_arena = make_je_arena();
	w->nhosts = h->num_hosts > 1 ? (int)h->num_hosts : 1;
	w->host = w->nhosts > 1 ? (int)h->host_rank : 0;
	ps__service_start(w);
	/* multi-host hook: the node's link to its host's bridge */
	if (w->nhosts > 1 && (rc = ps__link_start(w)) != 0) {
		ps__service_stop(w);
		atomic_store_explicit(&w->me->state, PS__NODE_EXITED, memory_order_release);
		goto fail;
	}
	goto out;
fail:
	ps__seg_detach(&w->seg);
	free(w);
	w = NULL;
	atomic_store(&the_world, NULL);
out:
	if (err)
		*err = rc;
	return w;
}

int ps_finalize(ps_world *w)
{
	if (!w || w != atomic_load(&the_world))
		return -EINVAL;
	ps__link_stop(w); /* multi-host hook: waits for every host's nodes */
	ps__service_stop(w);
	for (int i = 0; i < PS__MAX_TABLES; i++) {
		if (w->tables[i]) {
			w->tables[i]->magic = 0;
			ps__free(w, w->tables[i]);
		}
	}
	/* release: our last writes to the segment happen before EXITED */
	atomic_store_explicit(&w->me->state, PS__NODE_EXITED, memory_order_release);
	if (tstate && tstate->w == w) {
		pthread_setspecific(thread_key, NULL);
		thread_exit(tstate);
	}
	ps__seg_detach(&w->seg);
	pthread_mutex_destroy(&w->tables_lock);
	free(w);
	atomic_store(&the_world, NULL);
	return 0;
}

int ps_node_id(const ps_world *w) { return w->node; }
int ps_num_nodes(const ps_world *w) { return w->nnodes; }
int ps_num_threads(const ps_world *w) { return w->nthreads; }
int ps_host_id(const ps_world *w) { return w->host; }
int ps_num_hosts(const ps_world *w) { return w->nhosts; }
const char *ps_segment_name(const ps_world *w) { return w->seg.name[0] == '/' ? w->seg.name + 1 : w->seg.name; }
