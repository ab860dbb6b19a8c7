/* PRIVATE to libpsmem and psstat: dump.h - statistics and the wait dump (dump.c) */
#ifndef PSMEM_PERSIST_DUMP_H
#define PSMEM_PERSIST_DUMP_H

#include <stdio.h>

#include "segment.h"

/* dump.c */
void ps__dump_seg(const struct ps__seg *s, FILE *f);

#endif /* PSMEM_PERSIST_DUMP_H */
