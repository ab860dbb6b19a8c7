/* PRIVATE to libpsmem: replica.h - hot-spot replication (replica.c) */
#ifndef PSMEM_CORE_REPLICA_H
#define PSMEM_CORE_REPLICA_H

#include "world.h"

/* replica.c */
static inline struct ps__slot *ps__replica_at(ps_table *t, int node, uint32_t r)
{
	return (struct ps__slot *)(t->w->seg.base + t->d->rbase[node] + (uint64_t)2 * r * t->slot_size);
}
int ps__replica_pull(ps_world *w, ps_table *t, ps_key k, uint64_t lw, float *out);
int ps__replica_push(ps_world *w, ps_table *t, ps_key k, uint64_t lw, const float *upd);
/* Sets the handle's replication pointers (counts, rprim, rkey, rfree) from
 * the descriptor (ps__table_bind). */
void ps__replica_bind(ps_world *w, ps_table *t);
/* At table creation (not when a restarted node replays it): binds, then
 * lays out this node's replica slots. */
int ps__replica_init_node(ps_world *w, ps_table *t);
/* checkpoint.c: copy out / assign a replicated key (1, or 0: re-read loc[k]) */
int ps__replica_access(ps_world *w, ps_table *t, ps_key k, uint64_t lw, uint32_t nf, uint32_t *out,
		       const uint32_t *in);
bool ps__replica_step(ps_world *w);    /* service: periodic rounds if due */
/* Link thread: RPULL (out) / RPUSH (in) of another host on the primaries
 * of keys this host holds (RP9). */
int ps__replica_serve(ps_table *t, const ps_key *keys, size_t n, float *out, const float *in);
void ps__replica_flush(ps_world *w);   /* finalize: merge this node's deltas */

/* Backups (lib/net/backup.c BK12), link thread: the full value and rule
 * state of a replicated key whose primary node `node` holds (1, or 0: not
 * such a key), and the promotion of lost host x's backup of a key
 * replicated here with x's copy as its primary (1, 0, 2: busy, PS_EFULL). */
int ps__rp_backup_read(ps_table *t, ps_key k, int node, uint32_t *out);
int ps__rp_backup_promote(ps_table *t, ps_key k, int x, const uint32_t *vals);

#endif /* PSMEM_CORE_REPLICA_H */
