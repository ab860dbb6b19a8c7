/* PRIVATE to libpsmem: table.h - table handles and the key partition over
 * hosts (table.c). */
#ifndef PSMEM_CORE_TABLE_H
#define PSMEM_CORE_TABLE_H

#include "world.h"

/* table.c */
void ps__table_bind(ps_world *w, int id, ps_table *t); /* handle from descriptor */

/* table.c: the key partition over hosts.  Keys [*k0, *k1) have this host
 * as their home (all of them on one host); node 0 marks the others
 * REMOTE(home) at table creation. */
void ps__host_keys(const ps_world *w, uint64_t num_keys, uint64_t *k0, uint64_t *k1);
int ps__home_of(const ps_world *w, uint64_t num_keys, ps_key k);

#endif /* PSMEM_CORE_TABLE_H */
