/* PRIVATE to libpsmem: clock.h - consistency clocks (clock.c) */
#ifndef PSMEM_CORE_CLOCK_H
#define PSMEM_CORE_CLOCK_H

#include "world.h"

/* clock.c */
void ps__worker_set(int index);          /* ps_run_workers: this thread is worker index */
/* Link thread: host's CLOCK frame (its slowest clock, its bound word). */
void ps__clock_heard(ps_world *w, int host, uint64_t min, uint64_t cfg);
/* Link thread: host left or died (-1: every host, the link broke). */
void ps__clock_host_gone(ps_world *w, int host);
/* Link thread: host was dropped (--on-host-failure continue): no longer
 * waited for (CLH7). */
void ps__clock_host_lost(ps_world *w, int host);
/* A bound word as text into buf: "bsp", "ssp:S" or "asp"; returns buf. */
const char *ps__clock_bound_text(uint64_t cfg, char *buf, size_t len);
/* A clock waiter waiting for a remote host: arg2 of PS__WAIT_CLOCK */
#define PS__CLOCK_WAIT_HOST (1ULL << 63)

#endif /* PSMEM_CORE_CLOCK_H */
