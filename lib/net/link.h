/* PRIVATE to lib/net/: link.h - a node's side of the multi-host bridge
 * (bridge_link.c) and moving keys between hosts (migrate.c).  The layers
 * below reach these only through struct ps__net_ops (psmem_int.h).
 */
#ifndef PSMEM_NET_LINK_H
#define PSMEM_NET_LINK_H

#include "frame.h"
#include "world.h"

/* bridge_link.c: a node's link to its host's bridge (multi-host jobs) */
/* ps_init of a multi-host job: connects the link, starts its thread and
 * sets w->net = &ps__link_ops.  ps_finalize: final barrier over every
 * host, close, w->net = NULL. */
int ps__link_start(ps_world *w);
void ps__link_stop(ps_world *w);
extern const struct ps__net_ops ps__link_ops;
/* Barrier over every node of every host on the table's shape (local_rc:
 * this node's result so far; a failure anywhere fails it everywhere). */
int ps__link_table_created(ps_world *w, ps_table *t, int id, const struct ps__tdesc *d, int local_rc);
int ps__link_barrier_workers(ps_world *w); /* ps_barrier's part across hosts */
int ps__link_sync_workers(ps_world *w, uint64_t *epoch); /* ps_sync_hosts's (EL5) */
/*
 * Elastic jobs: what a leaving host does after its ps_sync_hosts returned
 * 0.  Every node of that host calls it from ps_finalize (ps__link_stop)
 * instead of the final barrier over hosts: it hands the node's keys and
 * directory entries to the hosts that stay (net/drain.c, the drain
 * helper's), then says the LEFT goodbye.  0 or a negative code.  Until
 * drain.c is linked in, a weak stub in bridge_link.c returns -ENOSYS (the
 * leaver's keys are then lost to the others).
 */
int ps__drain_host(ps_world *w);
/* Pulls or pushes a validated batch of a multi-host job (kv.c's run_batch
 * with a link): keys held here are done here, the others are sent to the
 * hosts their words name, and redirected until they land.  With async,
 * what is still in flight is returned in *async (NULL if nothing), else
 * waited for.  ps__remote_wait completes and frees a group. */
int ps__route_batch(ps_table *t, const ps_key *keys, size_t n, float *out, const float *in,
		    struct ps__rgroup **async);
/* The link to the bridge is broken (or there is none). */
bool ps__link_down(ps_world *w);
/* CLOCK frame to every other host: 0 or PS_EHOSTDOWN (link broken). */
int ps__link_send_clock(ps_world *w, uint64_t min, uint64_t cfg);
/* Barrier over every node of every host that agrees on nothing: *tag in
 * is this node's value, out the minimum of every node's (checkpoint.c). */
int ps__link_barrier_min(ps_world *w, uint64_t *tag);
/* Node 0: tells node 0 of every other host that a checkpoint to path was
 * asked for here (before the poll's barrier over hosts). */
int ps__link_ckpt_send(ps_world *w, const char *path);
/* Node 0: the path host sent, if it is the lowest host that sent one since
 * the last take (0), else -ENOENT; forgets what was kept either way. */
int ps__link_ckpt_take(ps_world *w, int host, char *path, size_t len);
int ps__remote_wait(ps_world *w, struct ps__rgroup *g);
/* Sends keys[i] to hosts[i] as frames of type (PS__F_PULL/PUSH/RPULL/
 * RPUSH), whatever their location words say; complete with ps__remote_wait. */
int ps__remote_start_to(ps_table *t, const ps_key *keys, const uint16_t *hosts, size_t n, float *out,
			const float *in, unsigned type, struct ps__rgroup **g);

/* migrate.c: moving keys between hosts (localize across hosts) */
struct ps__move_req;
/* Moves the keys[0..n) held by other hosts to this node; keys that cannot
 * move now are left where they are (localize is a hint).  0 or a code. */
int ps__migrate_in(ps_table *t, const ps_key *keys, size_t n);
/* A MOVE request of another host, executed by this node's link thread:
 * writes the MOVE_REPLY body into out (room: ps__move_reply_size(n, nf, n))
 * and returns its length. */
uint32_t ps__migrate_serve(ps_world *w, ps_table *t, int from_host, const struct ps__move_req *m, uint8_t *out);
/* Synchronous calls through the link: for each i, sends frames[i] (a
 * sealed MOVE with body room) to hosts[i] and stores the reply body (a
 * malloc'd copy, NULL on failure) in replies[i]; all in flight at once.
 * Returns 0 or the first failure (then some replies may be NULL). */
int ps__link_calls(ps_world *w, int n, uint8_t *const frames[], const uint32_t lens[], const int hosts[],
		   uint8_t *replies[], uint32_t rlens[]);

#endif /* PSMEM_NET_LINK_H */
