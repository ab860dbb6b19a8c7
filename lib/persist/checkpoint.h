/* PRIVATE to libpsmem and psrun: checkpoint.h - checkpoint files (checkpoint.c) */
#ifndef PSMEM_PERSIST_CHECKPOINT_H
#define PSMEM_PERSIST_CHECKPOINT_H

#include <stddef.h>

/* checkpoint.c: psrun --restore checks the file before starting nodes:
 * host rank's file of a checkpoint to path (path for host 0 and a one-host
 * job, path.hostR for the others) goes to file; 0 when its header, length,
 * host count and rank are right, else a code and why in msg. */
int ps__ckpt_check_file(const char *path, int hosts, int rank, char *file, size_t flen, char *msg, size_t len);

#endif /* PSMEM_PERSIST_CHECKPOINT_H */
