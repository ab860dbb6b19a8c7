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
/* Elastic jobs (EL4): host's membership (PS__HOST_*), with its slowest
 * clock and bound when it becomes a member; this node's workers start at
 * clock (a joiner); this host's slowest clock and bound word now. */
void ps__clock_member(ps_world *w, int host, uint32_t state, uint64_t min, uint64_t cfg);
void ps__clock_start_at(ps_world *w, uint64_t clock);
uint64_t ps__clock_local_min(ps_world *w);
uint64_t ps__clock_cfg_now(ps_world *w);
/* Link thread: host was dropped (--on-host-failure continue): no longer
 * waited for (CLH7). */
void ps__clock_host_lost(ps_world *w, int host);
/* A bound word as text into buf: "bsp", "ssp:S" or "asp"; returns buf. */
const char *ps__clock_bound_text(uint64_t cfg, char *buf, size_t len);
/* A clock waiter waiting for a remote host: arg2 of PS__WAIT_CLOCK */
#define PS__CLOCK_WAIT_HOST (1ULL << 63)

#endif /* PSMEM_CORE_CLOCK_H */
