/*
 * row.c - rows in place (psmem.h, "rows in place"): a key's values read
 * and written where they live, under its slot lock (sequential tables) or
 * inside a read-side section (PS_HOGWILD tables).
 *
 * Invariants (with kv.c's KV1-KV6)
 *   (RW1) ps_row_lock returns a slot only once it holds the slot's lock, has
 *        re-read loc[k] naming that very slot (so the key did not move or
 *        become replicated under it, KV6), and found key k in it.  From then
 *        until ps_row_unlock no relocation can copy it (the relocator needs
 *        the lock, KV1) and so nothing can retire or free it: the read-side
 *        section that covered the load of loc[k] (KV4) can end before the
 *        caller touches the values, and does, so a locked row never delays
 *        a grace period.
 *   (RW2) The caller's value writes happen under the lock (KV2); unlock adds
 *        one version with a release store, so a seqlock reader that copied
 *        during the writes sees the version change and retries.
 *   (RW3) ps_row_get returns a slot of a PS_HOGWILD table only inside a
 *        read-side section opened by ps_rows_enter; the slot cannot be freed
 *        before ps_rows_exit (KV4).  It may be relocated meanwhile: writes to
 *        the old slot after the copy are lost, the documented PS_HOGWILD
 *        race (the old slot is never written by the library again, KV3).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <urcu/urcu-memb.h>

#include "segment.h"
#include "util.h"
#include "world.h"
#include "kv.h"

/* Checks t and key; 0 or the code for r->err. */
static int check(ps_table *t, ps_key key)
{
	return ps__check_keys(t, &key, 1);
}

static struct ps__slot *slot_of(ps_table *t, uint64_t lw)
{
	return (struct ps__slot *)(t->w->seg.base + PS__LOC_OFF(lw));
}

/* The key's slot word, or a negative code when the key has no slot here. */
static int64_t where(ps_table *t, ps_key key, uint64_t *lw)
{
	/* acquire: pairs with the release publish of the slot (KV1) */
	*lw = atomic_load_explicit(&t->loc[key], memory_order_acquire);
	if (PS__LOC_IS_REMOTE(*lw))
		return -EREMOTE;
	if (*lw & PS__LOC_REPL)
		return -EOPNOTSUPP;
	return 0;
}

/*
 * Sanitizer builds: the caller writes a private copy that unlock stores
 * back with relaxed atomics, under the lock, as every library write to a
 * slot is (kv.c): the seqlock's readers load relaxed atomics, and a plain
 * store beside them is a data race to ThreadSanitizer.  Same protocol,
 * same results.
 */
static float *row_view(ps_row *r, struct ps__slot *sl, uint32_t len)
{
#ifdef PS_SANITIZE
	float *b = malloc((size_t)len * sizeof *b);
	if (!b)
		abort(); /* the lock is held: no way to report and back out cleanly */
	for (uint32_t j = 0; j < len; j++) { /* relaxed: under the lock */
		uint32_t x = atomic_load_explicit(&sl->v[j], memory_order_relaxed);
		memcpy(&b[j], &x, sizeof x);
	}
	r->_buf = b;
	r->_len = len;
	return b;
#else
	(void)r;
	(void)len;
	return (float *)(void *)sl->v;
#endif
}

static void row_store(ps_row *r)
{
	if (!r->_buf)
		return;
	struct ps__slot *sl = r->_slot;
	for (uint32_t j = 0; j < r->_len; j++) { /* relaxed: under the lock */
		uint32_t x;
		memcpy(&x, &r->_buf[j], sizeof x);
		atomic_store_explicit(&sl->v[j], x, memory_order_relaxed);
	}
	free(r->_buf);
	r->_buf = NULL;
}

float *ps_row_lock(ps_table *t, ps_key key, ps_row *r)
{
	if (!r)
		return NULL;
	r->_slot = NULL;
	r->_seq = 0;
	r->_buf = NULL;
	r->_len = 0;
	int rc = check(t, key);
	if (rc) {
		r->err = rc;
		return NULL;
	}
	ps_world *w = t->w;
	ps__thread_enter(w);
	urcu_memb_read_lock();
	for (;;) {
		uint64_t lw;
		int64_t why = where(t, key, &lw);
		if (why) {
			urcu_memb_read_unlock();
			r->err = (int)why;
			return NULL;
		}
		struct ps__slot *sl = slot_of(t, lw);
		bool moved;
		uint64_t s = ps__slot_lock(w, t, sl, &moved);
		if (moved) {
			/* relaxed: counters */
			if (s & PS__SEQ_FREED)
				atomic_fetch_add_explicit(&w->me->stats.stale_reads, 1, memory_order_relaxed);
			atomic_fetch_add_explicit(&w->me->stats.retries, 1, memory_order_relaxed);
			continue;
		}
		/* RW1: still the key's slot, under the lock (acquire: as above) */
		if (atomic_load_explicit(&t->loc[key], memory_order_acquire) != lw) {
			ps__slot_unlock(sl, s, false);
			continue;
		}
		if (atomic_load_explicit(&sl->key, memory_order_relaxed) != key) {
			ps__slot_unlock(sl, s, false);
			atomic_fetch_add_explicit(&w->me->stats.stale_reads, 1, memory_order_relaxed);
			continue;
		}
		urcu_memb_read_unlock(); /* RW1: the lock keeps the slot now */
		r->err = 0;
		r->_slot = sl;
		r->_seq = s;
		return row_view(r, sl, t->value_len);
	}
}

void ps_row_unlock(ps_row *r)
{
	if (!r || !r->_slot)
		return;
	row_store(r); /* sanitizer builds: the copy goes back, under the lock */
	ps__slot_unlock(r->_slot, r->_seq, false); /* RW2: release, version + 1 */
	r->_slot = NULL;
}

int ps_rows_enter(ps_table *t)
{
	if (!t || t->magic != PS__TABLE_MAGIC)
		return PS_ETABLE;
	ps__thread_enter(t->w);
	urcu_memb_read_lock();
	return 0;
}

void ps_rows_exit(ps_table *t)
{
	(void)t;
	urcu_memb_read_unlock();
}

float *ps_row_get(ps_table *t, ps_key key, int *err)
{
	int rc = check(t, key);
	if (rc == 0 && (!(t->flags & PS_HOGWILD) || !urcu_memb_read_ongoing()))
		rc = -EINVAL;
	for (; rc == 0;) {
		uint64_t lw;
		int64_t why = where(t, key, &lw);
		if (why) {
			rc = (int)why;
			break;
		}
		struct ps__slot *sl = slot_of(t, lw);
		/* acquire: as a PS_HOGWILD push (kv.c) */
		uint64_t s = atomic_load_explicit(&sl->seq, memory_order_acquire);
		if (s & (PS__SEQ_MOVED | PS__SEQ_FREED)) {
			if (s & PS__SEQ_FREED) /* KV4 broken */
				atomic_fetch_add_explicit(&t->w->me->stats.stale_reads, 1, memory_order_relaxed);
			continue; /* re-read loc[k] */
		}
		if (atomic_load_explicit(&sl->key, memory_order_relaxed) != key) {
			atomic_fetch_add_explicit(&t->w->me->stats.stale_reads, 1, memory_order_relaxed);
			continue;
		}
		if (err)
			*err = 0;
		return (float *)(void *)sl->v;
	}
	if (err)
		*err = rc;
	return NULL;
}
