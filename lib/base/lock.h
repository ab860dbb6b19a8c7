/* PRIVATE to libpsmem: lock.h - process-shared locks that survive a dead
 * holder (lock.c), and the test-only kill points. */
#ifndef PSMEM_BASE_LOCK_H
#define PSMEM_BASE_LOCK_H

#include <pthread.h>
#include <stdbool.h>

/* Makes *m a robust, process-shared mutex.  Once, by whoever lays out the
 * memory it lives in, before any other process can reach it. */
void ps__lock_init(pthread_mutex_t *m);
/* Takes *m.  0: taken; 1: taken, but its previous holder died inside: the
 * caller repairs what the lock protects, then calls ps__lock_consistent
 * before ps__unlock (otherwise the lock becomes unusable for good). */
int ps__lock(pthread_mutex_t *m);
/* As ps__lock without waiting: 0, 1, or -EBUSY (held by a live thread). */
int ps__trylock(pthread_mutex_t *m);
void ps__lock_consistent(pthread_mutex_t *m);
void ps__unlock(pthread_mutex_t *m);
/* Is *m held now?  A snapshot for ps_dump (works on a read-only mapping). */
bool ps__lock_held(const pthread_mutex_t *m);

/*
 * Kill points (PS_TEST_HOOKS builds only, libpsmem_test.a): a test sets
 * ps__test_kill_at to one of these in a forked child; the child SIGKILLs
 * itself on reaching it, holding whatever it holds there.
 */
enum ps__kill_point {
	PS__KP_NONE = 0,
	PS__KP_POOL_LOCKED,     /* arena.c: holding a pool lock, before the pop */
	PS__KP_CREATE_LOCKED,   /* table.c: holding the create lock */
	PS__KP_REPL_POPPED,     /* replica_switch.c: install, index popped */
	PS__KP_REPL_HALF,       /* install: rprim and rkey written, not loc[k] */
	PS__KP_UNREPL_HALF,     /* unreplicate: loc[k] back, rkey not cleared */
	PS__KP_XLOCKED,         /* replica: holding repl_xlock */
};
#ifdef PS_TEST_HOOKS
extern int ps__test_kill_at;
void ps__test_point(int where);
#define PS__KILL_POINT(p) ps__test_point(p)
#else
#define PS__KILL_POINT(p) ((void)0)
#endif

#endif /* PSMEM_BASE_LOCK_H */
