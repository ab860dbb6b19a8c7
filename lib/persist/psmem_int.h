/* PRIVATE to psmem's own tools and tests: psmem_int.h - every private
 * header of base/, core/ and persist/ at once, for bin/ and tests/.  Files
 * of lib/ include only the module headers they use (lib/check-layers.sh). */
#ifndef PSMEM_INT_H
#define PSMEM_INT_H

#include "segment.h"
#include "util.h"
#include "world.h"
#include "tctx.h"
#include "arena.h"
#include "kv.h"
#include "replica.h"
#include "table.h"
#include "grace.h"
#include "barrier.h"
#include "clock.h"
#include "rules.h"
#include "restart.h"
#include "checkpoint.h"
#include "dump.h"

#endif /* PSMEM_INT_H */
