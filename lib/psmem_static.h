/*
 * psmem_static.h - the local fast path of pull and push, inline.  Public
 * (installed beside psmem.h), but its contents are not the API: a program
 * gets them by defining PS_INLINE before it includes psmem.h, which then
 * maps ps_pull_sync and ps_push_sync to the inline versions below (one API,
 * two speeds, as liburcu's urcu/static/ headers do under _LGPL_SOURCE).
 * Without PS_INLINE the same names are the library's functions.  The inline
 * versions may also be called by name (ps_pull_sync_inline, ...).
 *
 * What is inline: a one-host job's pull or push of at most
 * PS_INLINE_MAX_BATCH keys whose location words name a slot in this host's
 * memory (not replicated, not held by another host), on a table without
 * PS_COUNT_ACCESS, and for push with the sum rule (locked, or lock-free on a
 * PS_HOGWILD table), by a thread that has made one psmem call before (its
 * first call registers it).  Everything else, and every key the inline code
 * finds locked, moved or odd, goes to the library's function, which does the
 * full protocol; so a call behaves exactly as the library's function.
 *
 * The per-key protocol is kv.c's (KV1-KV4 there), the seqlock included; the
 * statistics go to the calling thread's own counters in the segment (a
 * single writer: relaxed load and store, no atomic read-modify-write, a
 * cache line of its own), which ps_stats and psstat sum.
 *
 * Requires GCC or Clang (vector extensions, __atomic builtins) and
 * liburcu's headers (its inline memb read-side section; liburcu allows
 * that for LGPL-compatible code).  Not for C++.
 *
 * Nothing here may change without bumping PS__ABI (psmem_int.h): the
 * offsets and bits below are the segment's, checked against psmem_int.h by
 * static assertions in lib/base/tctx.c.
 */
#ifndef PSMEM_STATIC_H
#define PSMEM_STATIC_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <urcu/static/urcu-memb.h>
#include <urcu/urcu-memb.h>

#include "psmem.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Batches larger than this go to the library (its prefetch pipeline). */
#ifndef PS_INLINE_MAX_BATCH
#define PS_INLINE_MAX_BATCH 16
#endif

/* ------------------------------------------------ what the library exposes */

#define PS__PUB_MAGIC   0x50535055u /* "UPSP": the prefix below is filled */
#define PS__INL_PULL    0x1u        /* pulls may go inline */
#define PS__INL_PUSH    0x2u        /* pushes may go inline (sum rule) */
#define PS__INL_HOGWILD 0x4u        /* ... and add without the slot lock */

/*
 * The first bytes of every ps_table (lib/psmem_int.h, static assert): what
 * the inline path reads.  W: ps__table_bind, before the handle is returned
 * (the handle is published to other threads by the program, which orders
 * it); then read-only.
 */
struct ps_table_pub {
	uint32_t magic;         /* PS__PUB_MAGIC */
	uint32_t inl;           /* PS__INL_*: 0 on a multi-host job */
	uint64_t num_keys;
	uint64_t *loc;          /* location words (atomic, in the segment) */
	char *base;             /* this process's mapping of the segment */
	uint32_t value_len;
	uint32_t _pad;
};

/*
 * One thread's statistics counters (in the segment: ps__node.tstats[]).
 * W: the one thread holding the slot (relaxed load + store: one writer);
 * the slot passes to a later thread of the process through a mutex (tctx.c).
 * R: ps_stats and psstat (relaxed: counters order nothing).
 */
struct ps_tstat {
	uint64_t pulls, pushes, keys_pulled, keys_pushed;
	uint64_t remote_keys;   /* the rest of its keys are local_keys */
	uint64_t repl_keys;
	uint64_t _pad[2];
} __attribute__((aligned(64)));

/* The calling thread's context; all zero until its first psmem call (or
 * when the process has no free statistics slot: then nothing is inline). */
struct ps_tctx {
	struct ps_tstat *st;    /* its counters */
	char *base;             /* the segment mapping it registered with */
	uint64_t holder;        /* (node + 1) << 8: lock holder bits of the seq word */
	int node;
};
extern __thread struct ps_tctx ps__tctx __attribute__((tls_model("initial-exec")));

/* Out of line (lib/base/tctx.c): counts a seqlock retry seen inline with seq s,
 * and a stale read when s is FREED or stale is set (KV4). */
void ps__inl_miss(const struct ps_table_pub *p, uint64_t s, int stale);
/* Out of line (lib/kv.c): the library's full pull / push of a batch. */
int ps__pull_batch(ps_table *t, const ps_key *keys, size_t n, float *values);
int ps__push_batch(ps_table *t, const ps_key *keys, size_t n, const float *updates);

/* Segment words (psmem_int.h; checked in lib/base/tctx.c). */
#define PS__SI_LOC_SLOW   0x06u   /* REPL | REMOTE (MOVING is REMOTE too) */
#define PS__SI_LOC_OFF(w) ((((w) >> 8) & 0xffffffffffULL) << 4)
#define PS__SI_LOC_OWNER(w) ((int)((w) >> 48))
#define PS__SI_SEQ_LOCKED 0x1ULL
#define PS__SI_SEQ_MOVED  0x2ULL
#define PS__SI_SEQ_FREED  0x4ULL
#define PS__SI_SEQ_VER1   (1ULL << 24)
#define PS__SI_SLOT_HDR   16      /* seq, key; then the values */

/*
 * The read-side section: liburcu's inline memb version; under a sanitizer
 * its functions (liburcu is not instrumented, and its inline wake-up check
 * reads a word that other threads write with plain stores).
 */
#if defined(PS_SANITIZE) || defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define ps__rcu_lock() urcu_memb_read_lock()
#define ps__rcu_unlock() urcu_memb_read_unlock()
#else
#define ps__rcu_lock() _urcu_memb_read_lock()
#define ps__rcu_unlock() _urcu_memb_read_unlock()
#endif

static inline void ps__tstat_add(uint64_t *c, uint64_t v)
{
	/* relaxed load + store: this thread is the counter's only writer */
	__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}

/* --------------------------------------------------------- value copies */

/*
 * Seqlock data, copied wide (as Linux's seqcount readers and DPDK's
 * rte_seqlock do: plain copies between the barriers).  Why that is right:
 *
 *   reader: s1 = load(seq, acquire); copy; fence(acquire);
 *           s2 = load(seq, relaxed); keep the copy only if s1 == s2 and
 *           s1 is unlocked.
 *   writer: CAS(seq, s -> s|LOCKED, acquire); fence(release); stores;
 *           store(seq, s + VER1, release).
 *
 * The fences are compiler barriers too, so no copy load moves outside
 * [s1, s2].  If a copy load returned a value a writer stored, that store is
 * after the writer's release fence, which follows its locking CAS; by the
 * fence-to-fence rule the reader's s2 (after its acquire fence) sees the
 * locked word or a later one, so s2 != s1 and the copy is discarded.  If
 * s1 == s2 no writer stored in between, so the copy is one version, whole.
 * A torn copy is only ever discarded, never used: that is why plain wide
 * loads (which may tear) are fine where the C11 model would want atomics
 * (Boehm 2012 gives the atomic formulation; the hardware ordering that the
 * fences give is the same on x86, where they are free, and on Arm).
 *
 * Under a sanitizer (PS_SANITIZE), the copies are relaxed 64-bit atomics
 * instead, within the C11 model, so ThreadSanitizer sees no race.
 */
#if defined(PS_SANITIZE)
static inline void ps__vload(void *dst, const void *slotv, uint32_t nf)
{
	const uint64_t *p = (const uint64_t *)slotv;
	char *d = (char *)dst;
	for (uint32_t j = 0; j < nf / 2; j++) {
		uint64_t x = __atomic_load_n(&p[j], __ATOMIC_RELAXED);
		memcpy(d + 8 * j, &x, 8);
	}
	if (nf & 1) {
		uint32_t x = __atomic_load_n((const uint32_t *)slotv + nf - 1, __ATOMIC_RELAXED);
		memcpy(d + 4 * (nf - 1), &x, 4);
	}
}

/* Sum under the slot lock (or HOGWILD): relaxed atomics, one writer. */
static inline void ps__vadd(void *slotv, const float *upd, uint32_t nf)
{
	uint32_t *p = (uint32_t *)slotv;
	for (uint32_t j = 0; j < nf; j++) {
		uint32_t b = __atomic_load_n(&p[j], __ATOMIC_RELAXED);
		float f;
		memcpy(&f, &b, 4);
		f += upd[j];
		memcpy(&b, &f, 4);
		__atomic_store_n(&p[j], b, __ATOMIC_RELAXED);
	}
}
#else
/* The row length is known only at run time: a caller's fixed-size buffer
 * makes GCC warn about the branches for longer rows. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpragmas"
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#pragma GCC diagnostic ignored "-Warray-bounds"
#pragma GCC diagnostic ignored "-Wstringop-overread"
#endif
/* unaligned vectors (the caller's buffers need not be aligned) */
typedef float ps__v8f __attribute__((vector_size(32), aligned(1), may_alias));
typedef float ps__v4f __attribute__((vector_size(16), aligned(1), may_alias));

/* nf floats: up to 64 bytes with overlapping fixed-size moves (no call),
 * longer with memcpy (the C library picks the widest moves the CPU has). */
static inline void ps__vload(void *dst, const void *slotv, uint32_t nf)
{
	const char *s = (const char *)slotv;
	char *d = (char *)dst;
	size_t n = (size_t)nf * 4;
	if (n > 64) {
		memcpy(d, s, n);
	} else if (n > 32) {
		ps__v4f a = *(const ps__v4f *)s, b = *(const ps__v4f *)(s + 16);
		ps__v4f c = *(const ps__v4f *)(s + n - 32), e = *(const ps__v4f *)(s + n - 16);
		*(ps__v4f *)d = a;
		*(ps__v4f *)(d + 16) = b;
		*(ps__v4f *)(d + n - 32) = c;
		*(ps__v4f *)(d + n - 16) = e;
	} else if (n > 16) {
		ps__v4f a = *(const ps__v4f *)s, b = *(const ps__v4f *)(s + n - 16);
		*(ps__v4f *)d = a;
		*(ps__v4f *)(d + n - 16) = b;
	} else if (n >= 8) {
		uint64_t a, b;
		memcpy(&a, s, 8);
		memcpy(&b, s + n - 8, 8);
		memcpy(d, &a, 8);
		memcpy(d + n - 8, &b, 8);
	} else if (n == 4) {
		uint32_t a;
		memcpy(&a, s, 4);
		memcpy(d, &a, 4);
	}
}

/* v[j] += upd[j], 8 and 4 lanes at a time (the same IEEE additions as a
 * scalar loop, so sums are bit-identical). */
static inline void ps__vadd(void *slotv, const float *upd, uint32_t nf)
{
	float *v = (float *)slotv;
	uint32_t j = 0;
	for (; j + 8 <= nf; j += 8)
		*(ps__v8f *)(v + j) = *(ps__v8f *)(v + j) + *(const ps__v8f *)(upd + j);
	if (j + 4 <= nf) {
		*(ps__v4f *)(v + j) = *(ps__v4f *)(v + j) + *(const ps__v4f *)(upd + j);
		j += 4;
	}
	for (; j < nf; j++)
		v[j] += upd[j];
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

/* ----------------------------------------------------------- one key */

/* May this call go inline?  t is the public prefix of a ps_table. */
static inline int ps__inl_ok(const struct ps_table_pub *p, uint32_t need)
{
	return p && p->magic == PS__PUB_MAGIC && (p->inl & need) && ps__tctx.base == p->base;
}

/*
 * Pulls key k into out inside a read-side section (kv.c KV4): 1, or 0 when
 * the key needs the library (replicated, another host's, locked, moved,
 * changed under the copy).  *nlocal counts keys of this node's arena.
 */
static inline int ps__inl_pull_key(const struct ps_table_pub *p, uint64_t k, float *out, uint64_t *nlocal)
{
	/* acquire: pairs with the release publish of the slot (kv.c KV1) */
	uint64_t lw = __atomic_load_n(&p->loc[k], __ATOMIC_ACQUIRE);
	if (lw & PS__SI_LOC_SLOW)
		return 0;
	char *sl = p->base + PS__SI_LOC_OFF(lw);
	uint64_t *seq = (uint64_t *)(void *)sl;
	/* acquire: the copy's loads stay after it (see above) */
	uint64_t s1 = __atomic_load_n(seq, __ATOMIC_ACQUIRE);
	if (s1 & (PS__SI_SEQ_LOCKED | PS__SI_SEQ_MOVED | PS__SI_SEQ_FREED)) {
		if (s1 & PS__SI_SEQ_FREED)
			ps__inl_miss(p, s1, 1);
		return 0;
	}
	ps__vload(out, sl + PS__SI_SLOT_HDR, p->value_len);
	uint64_t key = __atomic_load_n(seq + 1, __ATOMIC_RELAXED);
	/* acquire fence: the copy's loads complete before the re-check */
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	uint64_t s2 = __atomic_load_n(seq, __ATOMIC_RELAXED);
	if (s1 != s2 || key != k) {
		ps__inl_miss(p, s2, s1 == s2);
		return 0;
	}
	*nlocal += PS__SI_LOC_OWNER(lw) == ps__tctx.node;
	return 1;
}

/* Adds upd to key k's values (sum rule) inside a read-side section: 1, or
 * 0 when the key needs the library (nothing applied then). */
static inline int ps__inl_push_key(const struct ps_table_pub *p, uint64_t k, const float *upd, uint64_t *nlocal)
{
	/* acquire: pairs with the release publish of the slot (kv.c KV1) */
	uint64_t lw = __atomic_load_n(&p->loc[k], __ATOMIC_ACQUIRE);
	if (lw & PS__SI_LOC_SLOW)
		return 0;
	char *sl = p->base + PS__SI_LOC_OFF(lw);
	uint64_t *seq = (uint64_t *)(void *)sl;
	if (p->inl & PS__INL_HOGWILD) {
		/* opt-in race (PS_HOGWILD): no lock; acquire as kv.c's push */
		uint64_t s = __atomic_load_n(seq, __ATOMIC_ACQUIRE);
		if (s & (PS__SI_SEQ_MOVED | PS__SI_SEQ_FREED)) {
			if (s & PS__SI_SEQ_FREED)
				ps__inl_miss(p, s, 1);
			return 0;
		}
		ps__vadd(sl + PS__SI_SLOT_HDR, upd, p->value_len);
		*nlocal += PS__SI_LOC_OWNER(lw) == ps__tctx.node;
		return 1;
	}
	uint64_t s = __atomic_load_n(seq, __ATOMIC_RELAXED);
	if (s & (PS__SI_SEQ_LOCKED | PS__SI_SEQ_MOVED | PS__SI_SEQ_FREED)) {
		if (s & PS__SI_SEQ_FREED)
			ps__inl_miss(p, s, 1);
		return 0; /* the library waits, or re-reads loc[k] */
	}
	/* acquire: the previous holder's value stores happen before ours */
	if (!__atomic_compare_exchange_n(seq, &s, s | PS__SI_SEQ_LOCKED | ps__tctx.holder, 1, __ATOMIC_ACQUIRE,
					 __ATOMIC_RELAXED))
		return 0;
	/* release fence: our value stores cannot become visible before the
	 * lock bit (the reader's side of this is above ps__vload) */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	if (__atomic_load_n(seq + 1, __ATOMIC_RELAXED) != k) {
		__atomic_store_n(seq, s + PS__SI_SEQ_VER1, __ATOMIC_RELEASE);
		ps__inl_miss(p, s, 1);
		return 0;
	}
	ps__vadd(sl + PS__SI_SLOT_HDR, upd, p->value_len);
	/* release: the value stores happen before the new version is seen */
	__atomic_store_n(seq, s + PS__SI_SEQ_VER1, __ATOMIC_RELEASE);
	*nlocal += PS__SI_LOC_OWNER(lw) == ps__tctx.node;
	return 1;
}

static inline void ps__inl_count(uint64_t *calls, uint64_t *keys, uint64_t n, uint64_t nlocal, int call)
{
	struct ps_tstat *st = ps__tctx.st;
	if (call)
		ps__tstat_add(calls, 1);
	ps__tstat_add(keys, n);
	if (n != nlocal) /* local: the rest, when summed */
		ps__tstat_add(&st->remote_keys, n - nlocal);
}

/* The inline part of one batch, shared by pull and push: upd NULL pulls
 * into out, otherwise pushes upd.  Checks every key first (a rejected call
 * changes nothing: PS_EKEY, *done 0), then serves keys in order under one
 * read-side section until the first miss, counts what it served (the call
 * too when it served all n; otherwise the library, which does the rest,
 * counts the call) and returns 0 with *done the keys served.  Always
 * inlined so that the constant upd folds the pull/push choice away. */
static inline __attribute__((always_inline)) int ps__inl_batch(const struct ps_table_pub *p, const ps_key *keys,
							       size_t n, float *out, const float *upd,
							       size_t *done)
{
	*done = 0;
	for (size_t i = 0; i < n; i++)
		if (keys[i] >= p->num_keys)
			return PS_EKEY;
	const uint32_t len = p->value_len;
	uint64_t nlocal = 0;
	size_t i = 0;
	ps__rcu_lock();
	for (; i < n; i++)
		if (upd ? !ps__inl_push_key(p, keys[i], upd + i * len, &nlocal)
			: !ps__inl_pull_key(p, keys[i], out + i * len, &nlocal))
			break;
	ps__rcu_unlock();
	struct ps_tstat *st = ps__tctx.st;
	if (i || i == n) {
		if (upd)
			ps__inl_count(&st->pushes, &st->keys_pushed, i, nlocal, i == n);
		else
			ps__inl_count(&st->pulls, &st->keys_pulled, i, nlocal, i == n);
	}
	*done = i;
	return 0;
}

/* ------------------------------------------------------------- the API */

static inline int ps_pull_sync_inline(ps_table *t, const ps_key *keys, size_t n, float *values)
{
	const struct ps_table_pub *p = (const struct ps_table_pub *)(void *)t;
	if (!ps__inl_ok(p, PS__INL_PULL) || n > PS_INLINE_MAX_BATCH || !keys || !values)
		return ps__pull_batch(t, keys, n, values);
	size_t i;
	int rc = ps__inl_batch(p, keys, n, values, NULL, &i);
	if (rc == 0 && i < n) /* the rest by the library, which counts the call */
		rc = ps__pull_batch(t, keys + i, n - i, values + i * p->value_len);
	return rc;
}

static inline int ps_push_sync_inline(ps_table *t, const ps_key *keys, size_t n, const float *updates)
{
	const struct ps_table_pub *p = (const struct ps_table_pub *)(void *)t;
	if (!ps__inl_ok(p, PS__INL_PUSH) || n > PS_INLINE_MAX_BATCH || !keys || !updates)
		return ps__push_batch(t, keys, n, updates);
	size_t i;
	int rc = ps__inl_batch(p, keys, n, NULL, updates, &i);
	if (rc == 0 && i < n) /* the rest by the library, which counts the call */
		rc = ps__push_batch(t, keys + i, n - i, updates + i * p->value_len);
	return rc;
}

#ifdef __cplusplus
}
#endif

#endif /* PSMEM_STATIC_H */
