/*
 * util.c - clocks, futexes and growing byte buffers.  Futexes on segment words are "shared"
 * (no FUTEX_PRIVATE_FLAG): the kernel keys them by the tmpfs page, so a wake
 * in one process reaches a waiter in another.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

uint64_t ps__now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

int ps__futex_wait(_Atomic uint32_t *addr, uint32_t val, int64_t timeout_ns, bool shared)
{
	struct timespec ts, *tp = NULL;
	if (timeout_ns >= 0) {
		ts.tv_sec = timeout_ns / 1000000000LL;
		ts.tv_nsec = timeout_ns % 1000000000LL;
		tp = &ts;
	}
	int op = FUTEX_WAIT | (shared ? 0 : FUTEX_PRIVATE_FLAG);
	if (syscall(SYS_futex, (uint32_t *)addr, op, val, tp, NULL, 0) == 0)
		return 0;
	return -errno;
}

int ps__futex_wake(_Atomic uint32_t *addr, int n, bool shared)
{
	int op = FUTEX_WAKE | (shared ? 0 : FUTEX_PRIVATE_FLAG);
	long r = syscall(SYS_futex, (uint32_t *)addr, op, n, NULL, NULL, 0);
	return r < 0 ? -errno : (int)r;
}

int ps__buf_reserve(uint8_t **p, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	size_t c = *cap ? *cap : 65536;
	while (c < need)
		c *= 2;
	void *q = realloc(*p, c);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = c;
	return 0;
}
