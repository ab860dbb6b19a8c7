/* PRIVATE to libpsmem: grace.h - grace periods, deferred reclamation, the
 * service thread (grace.c). */
#ifndef PSMEM_CORE_GRACE_H
#define PSMEM_CORE_GRACE_H

#include "world.h"

/* grace.c */
void ps__retire(ps_world *w, struct ps__retire_batch *b);
bool ps__grace_step(ps_world *w);       /* service: one grace period if due */
size_t ps__reclaim(ps_world *w, bool force);
/* 0, or the error of pthread_create (negative): then nothing runs */
int ps__service_start(ps_world *w);
/* True on w's service thread (grace.c GR5). */
bool ps__on_service_thread(const ps_world *w);
void ps__service_stop(ps_world *w);

#endif /* PSMEM_CORE_GRACE_H */
