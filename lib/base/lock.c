/*
 * lock.c - the locks of the segment's shared structures (pool locks,
 * the create lock, a table's repl_lock and repl_xlock): glibc's robust
 * process-shared mutexes.
 *
 * Why not a hand-made lock word: a word naming its holder by node id
 * cannot tell a dead holder from its live replacement (restart.c gives the
 * replacement the same id), and the "holder is dead" check and the CAS
 * that takes the lock over are two steps another process can slip between
 * (free and re-take the lock: both then hold it); and deciding "dead"
 * means reading /proc while spinning.  The kernel already tracks this:
 * each thread registers its robust list, and when a thread dies holding
 * a robust futex the kernel sets FUTEX_OWNER_DIED in it and wakes one
 * waiter, which gets EOWNERDEAD.  Exactly one taker sees it; waiting is a
 * futex sleep, no polling.
 *
 * Invariants
 *   (LO1) Each lock is initialised once, by the process laying out the
 *        memory it is in, before any other process can reach it
 *        (segment.c: the create lock; table.c: a table's pool and
 *        replication locks, under the create lock, before READY).
 *   (LO2) A taker that gets EOWNERDEAD (ps__lock returns 1) repairs the
 *        protected state from what is in shared memory, then marks the
 *        lock consistent; the repair of each lock is beside its users
 *        (arena.c, table.c, replica.c).
 *   (LO3) A lock is released by the thread that took it (a mutex rule):
 *        none of these is handed between threads.
 *   Memory order: lock is an acquire and unlock a release (POSIX
 *   memory synchronisation), so the fields written under the lock are seen
 *   by the next holder, a recovering one included.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lock.h"

static void die(const char *what, int rc)
{
	/* an unrecoverable internal error: the lock's memory is corrupt */
	fprintf(stderr, "psmem: %s:%d: %s: %s\n", __FILE__, __LINE__, what, strerror(rc));
	abort();
}

void ps__lock_init(pthread_mutex_t *m)
{
	pthread_mutexattr_t a;
	int rc = pthread_mutexattr_init(&a);
	if (!rc)
		rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	if (!rc)
		rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	if (!rc)
		rc = pthread_mutex_init(m, &a);
	pthread_mutexattr_destroy(&a);
	if (rc)
		die("pthread_mutex_init", rc);
}

static int taken(int rc)
{
	if (rc == 0)
		return 0;
	if (rc == EOWNERDEAD)
		return 1; /* LO2: the caller repairs, then ps__lock_consistent */
	if (rc == EBUSY)
		return -EBUSY;
	die("pthread_mutex_lock", rc); /* ENOTRECOVERABLE, EINVAL: a bug */
	return -rc;
}

int ps__lock(pthread_mutex_t *m) { return taken(pthread_mutex_lock(m)); }
int ps__trylock(pthread_mutex_t *m) { return taken(pthread_mutex_trylock(m)); }

void ps__lock_consistent(pthread_mutex_t *m)
{
	int rc = pthread_mutex_consistent(m);
	if (rc)
		die("pthread_mutex_consistent", rc);
}

void ps__unlock(pthread_mutex_t *m)
{
	int rc = pthread_mutex_unlock(m);
	if (rc)
		die("pthread_mutex_unlock", rc);
}

bool ps__lock_held(const pthread_mutex_t *m)
{
	/* glibc: the futex word holds the owner's tid (0: free).  Relaxed
	 * load: a diagnostic snapshot (ps_dump), it orders nothing. */
	return __atomic_load_n(&m->__data.__lock, __ATOMIC_RELAXED) != 0;
}

#ifdef PS_TEST_HOOKS
int ps__test_kill_at;

void ps__test_point(int where)
{
	if (where == __atomic_load_n(&ps__test_kill_at, __ATOMIC_RELAXED))
		raise(SIGKILL);
}
#endif
