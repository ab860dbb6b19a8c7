/* PRIVATE to libpsmem and its tools: util.h - clocks, futexes, growing
 * buffers, hashing, TSan hand-off marks, alignment (util.c). */
#ifndef PSMEM_BASE_UTIL_H
#define PSMEM_BASE_UTIL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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


#define PS__CL           64    /* cache line */
#define PS__ALIGN(x, a)  (((x) + (a) - 1) & ~((uint64_t)(a) - 1))
#define PS__CACHE_ALIGNED _Alignas(PS__CL)

/* util.c */
uint64_t ps__now_ns(void);
int ps__futex_wait(_Atomic uint32_t *addr, uint32_t val, int64_t timeout_ns, bool shared);
int ps__futex_wake(_Atomic uint32_t *addr, int n, bool shared);
/* Grows a malloc'd byte buffer to at least need bytes (doubling): 0 or
 * -ENOMEM (the buffer is then unchanged). */
int ps__buf_reserve(uint8_t **p, size_t *cap, size_t need);
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

#endif /* PSMEM_BASE_UTIL_H */
