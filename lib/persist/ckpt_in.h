/* PRIVATE to persist/checkpoint.c and ckpt_*.c: ckpt_in.h - the file format's
 * constants and what the checkpoint files share (format and invariants:
 * checkpoint.c). */
#ifndef PSMEM_CKPT_IN_H
#define PSMEM_CKPT_IN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "segment.h"
#include "world.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoint.c writes the host's byte order and assumes little-endian"
#endif

#define CK_MAGIC   "PSMEMCKP"
#define CK_VERSION 1u
#define CK_VERSION_HOSTS 2u /* one host's part of a multi-host checkpoint */
#define CK_FIXED   40u  /* fixed part of the header */
#define CK_FIXED2  56u  /* fixed part of a version 2 header */
#define CK_TENTRY  32u  /* one table entry */
#define CK_IO      (1u << 20)
#define CK_KEYS    4096 /* keys per read-side section */
#define PS__MAX_HOSTS_CK 1024 /* bridge.h's PS__MAX_HOSTS */

static inline void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }
static inline uint32_t get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t get64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* Which part of a job a file is: part (home range) rank of hosts (the
 * job's initial host count), and the checkpoint's id (the same in every
 * part of one checkpoint).  hosts == 1: a
 * one-host job's file (format version 1, no id). */
struct hinfo {
	uint32_t hosts, rank;
	uint64_t id;
};

struct out {
	int fd;
	size_t n;
	unsigned char *buf;
};

struct in {
	int fd;
	uint64_t size;
	uint32_t H, ntables, mlen;
	uint32_t fixed;        /* CK_FIXED, or CK_FIXED2 for version 2 */
	struct hinfo hi;       /* version 1: ps__ck_one_host */
	uint64_t total;
	unsigned char *h;      /* the whole header */
};

enum op { OP_WRITE, OP_RESTORE, OP_POLL };

uint32_t ps__ck_crc_of(uint32_t crc, const void *p, size_t len);
uint32_t ps__ck_table_rule(const struct ps__tdesc *d);
uint32_t ps__ck_floats_per_key(const ps_table *t);
extern const struct hinfo ps__ck_one_host;
void ps__ck_range_of(uint64_t num_keys, uint32_t hosts, uint32_t rank, uint64_t *k0, uint64_t *k1);
uint32_t ps__ck_fixed_len(uint32_t hosts);
int ps__ck_saved_tables(ps_world *w, ps_table **out);
size_t ps__ck_keys_access(ps_world *w, ps_table *t, ps_key k0, size_t n, uint32_t *buf, bool assign,
			  uint32_t *rpos);
size_t ps__ck_keys_per_chunk(const ps_table *t);
int ps__ck_write_tmp(ps_world *w, const char *path, char *tmp, const void *meta, size_t mlen,
		     const struct hinfo *hi, char *msg);
void ps__ck_sweep_temps(const char *path);
int ps__ck_commit_tmp(const char *tmp, const char *file, char *msg);
int ps__ck_write_file(ps_world *w, const char *path, const void *meta, size_t mlen, char *msg);
void ps__ck_in_close(struct in *f);
int ps__ck_in_open(struct in *f, const char *path, char *msg);
int ps__ck_check_shapes(const struct in *f, ps_table **t, int n, char *msg);
int ps__ck_check_data(const struct in *f, char *msg);
int ps__ck_check_host(const struct in *f, int hosts, int rank, char *msg);
int ps__ck_check_home(const struct in *f, ps_table **t, int n, char *msg);
int ps__ck_assign_all(ps_world *w, const struct in *f, ps_table **t, int n, char *msg);
int ps__ck_restore_file(ps_world *w, const char *path, char *msg);
int ps__ck_read_meta(const char *path, void *meta, size_t cap, size_t *len, char *msg);
void ps__ck_host_file(const char *path, int rank, char *out, size_t len);
void ps__ck_agree(ps_world *w, int *lrc, uint64_t *v);
int ps__ck_hosts_write(ps_world *w, const char *path, const void *meta, size_t mlen, int prc, int *lrc,
		       char *where, size_t wlen);
int ps__ck_hosts_restore(ps_world *w, const char *path, int *lrc, char *where, size_t wlen);
__attribute__((format(printf, 2, 3))) void ps__ck_say(char *msg, const char *fmt, ...);
__attribute__((format(printf, 3, 4))) void ps__ck_pathf(char *out, size_t len, const char *fmt, ...);

#endif /* PSMEM_CKPT_IN_H */
