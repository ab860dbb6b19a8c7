/*
 * workers.c - starting a node's worker threads, pinned to the CPUs of the
 * node's NUMA node (libnuma), each registered with the library and told
 * its worker index (its clock, clock.c) before its function runs.  Worker i
 * is barrier participant i of its node (barrier.c), in every ps_run_workers
 * call, so a restarted node's workers replay the barriers of their
 * predecessors' slots.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>

#include <numa.h>

#include "world.h"
#include "clock.h"

struct worker {
	pthread_t tid;
	ps_world *w;
	int index;
	ps_worker_fn fn;
	void *arg;
	const cpu_set_t *cpus;    /* NULL: no pinning */
};

/* CPUs of a NUMA node.  Called once, before the workers start: libnuma's
 * numa_node_to_cpus fills an internal cache without a lock. */
static bool node_cpus(int numa_node, cpu_set_t *set)
{
	if (numa_node < 0 || numa_available() < 0)
		return false;
	struct bitmask *cpus = numa_allocate_cpumask();
	CPU_ZERO(set);
	if (numa_node_to_cpus(numa_node, cpus) == 0)
		for (unsigned i = 0; i < cpus->size && i < CPU_SETSIZE; i++)
			if (numa_bitmask_isbitset(cpus, i))
				CPU_SET(i, set);
	numa_free_cpumask(cpus);
	return CPU_COUNT(set) > 0;
}

static void *worker_main(void *p)
{
	struct worker *wk = p;
	if (wk->cpus)
		pthread_setaffinity_np(pthread_self(), sizeof *wk->cpus, wk->cpus);
	ps__thread_set_slot(wk->w, wk->index); /* barrier participant = index */
	ps__worker_set(wk->index); /* its clock (clock.c) */
	wk->fn(wk->w, wk->index, wk->arg);
	return NULL;
}

int ps_run_workers(ps_world *w, ps_worker_fn fn, void *arg)
{
	if (!w || !fn)
		return -EINVAL;
	int n = w->nthreads;
	struct worker *wk = calloc((size_t)n, sizeof *wk);
	if (!wk)
		return -ENOMEM;
	cpu_set_t set;
	const cpu_set_t *cpus = node_cpus(w->numa_node, &set) ? &set : NULL;
	int rc = 0, started = 0;
	for (int i = 0; i < n; i++) {
		wk[i] = (struct worker){.w = w, .index = i, .fn = fn, .arg = arg, .cpus = cpus};
		int e = pthread_create(&wk[i].tid, NULL, worker_main, &wk[i]);
		if (e) {
			rc = -e;
			break;
		}
		started++;
	}
	for (int i = 0; i < started; i++)
		pthread_join(wk[i].tid, NULL);
	free(wk);
	return rc;
}
