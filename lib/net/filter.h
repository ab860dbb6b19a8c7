/* PRIVATE to net/ (link_remote.c, link_serve.c, bridge_link.c), the tests
 * and the benches: filter.h - the wire filters of PULL/PUSH/REPLY bodies
 * (filter.c): key-list caching (PS_WIRE_KEYCACHE) and value compression
 * (PS_WIRE_COMPRESS), per table.  Not installed.
 *
 * Wire forms (frame.h has the plain ones; the flags below are rejected by
 * a decoder that does not know them, PS_EFRAME_BODY):
 *
 *   PULL/PUSH  kv header, flags |= PS__KV_KEYDEF: u64 id, the keys, values
 *                                  PS__KV_KEYREF: u64 id, (no keys), values
 *                                  PS__KV_ZVALS (PUSH): the values are a
 *                                  compressed block
 *   REPLY      nvals |= PS__REPLY_Z: the values are a compressed block of
 *              nvals & ~PS__REPLY_Z floats
 *
 *   compressed block: u8 method, 3 bytes 0, then
 *     PS__Z_ZEROS  bitmap of the non-zero 32-bit words (ceil(w/8) bytes,
 *                  bit i of byte i/8; bits past w are 0), then those words
 *     PS__Z_LZ4    one LZ4 block (LZ4_compress_default) of the raw bytes
 */
#ifndef PSMEM_NET_FILTER_H
#define PSMEM_NET_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"

struct ps__filter;

/* Methods of a compressed block. */
#define PS__Z_ZEROS 1u
#define PS__Z_LZ4   2u

/*
 * Key cache bounds (per node, i.e. per link): each side holds at most
 * PS__KC_SLOTS lists of at most PS__KC_MAX_KEYS keys, so at most
 * PS__KC_SLOTS x 8 x PS__KC_MAX_KEYS bytes (8 MiB) of keys on the sending
 * side and as much on the receiving side.  Longer lists travel plain.
 */
#define PS__KC_SLOTS    64u
#define PS__KC_MAX_KEYS 16384u

/*
 * The REPLY status of a PULL/PUSH whose KEYREF id the executor does not
 * hold (never cached there, or evicted): nothing of the request was done;
 * the requester forgets the list and sends its keys again (DEF).  Private:
 * never returned to an application (link_remote.c turns it into another
 * routing round).  Outside psmem.h's public band, below PS_ELAST.
 */
#define PS__EKCMISS (-33900)

struct ps__filter *ps__filter_new(void);
void ps__filter_free(struct ps__filter *F);

/*
 * Sender side (any thread): body (blen bytes, a plain PULL/PUSH body as
 * ps__kv_enc_hdr + keys + values wrote it) is filtered in place after the
 * table's flags (table: its id); the buffer has room for blen + 8 bytes.  Returns the new
 * body length.  host: where the frame goes.  Off (flags clear): blen.
 */
uint32_t ps__filter_req_out(struct ps__filter *F, uint32_t table, uint32_t flags, int host, uint8_t *body,
			    uint32_t blen);

/*
 * Receiver side (the link thread only): m as ps__kv_dec decoded it from a
 * frame of host src_host, request id req.  Resolves a KEYREF (m->keys :=
 * the cached list) or caches a KEYDEF, and decompresses ZVALS (m->values :=
 * the raw floats).  The pointers stay valid until the next call.  Returns 0,
 * PS__EKCMISS, PS_EFRAME_BODY (corrupt block, list of another shape) or
 * -ENOMEM.
 */
int ps__filter_req_in(struct ps__filter *F, int src_host, uint64_t req, struct ps__kv_req *m);

/*
 * Executor (the link thread): writes a REPLY body at out (status, nvals
 * raw floats already at out + PS__REPLY_HDR), compressed if the table's
 * flags ask for it and it shrinks.  Returns the body length.
 */
uint32_t ps__filter_reply_out(struct ps__filter *F, uint32_t flags, uint8_t *out, int32_t status, uint32_t nvals);

/* Requester (the link thread): a decoded REPLY whose values are a block
 * (PS__REPLY_Z) gets m->vals := the raw floats.  0 or PS_EFRAME_BODY. */
int ps__filter_reply_in(struct ps__filter *F, struct ps__reply *m);

/* Requester (the link thread): a plain REPLY of nvals values that does not
 * go through ps__filter_reply_in (received straight into the rows:
 * bridge_link.c's direct_start), for the counters. */
void ps__filter_count_plain_reply(uint32_t nvals);

/* Requester: a PS__EKCMISS answer; forgets the cached list keys[pos[i]],
 * i < n, sent to host for table `table`, so that the next send carries
 * keys. */
void ps__filter_forget(struct ps__filter *F, uint32_t table, int host, const ps_key *keys, const uint32_t *pos,
		       uint32_t n);

/* Pure codecs (tests, fuzzing). */
/* Writes a block for the raw bytes (len a multiple of 4) at out (room for
 * len bytes); returns its size, or 0 when no method makes it smaller than
 * len - len / 8 (send raw). */
uint32_t ps__z_compress(const uint8_t *raw, uint32_t len, uint8_t *out);
/* Decodes block (blen bytes) into exactly raw_len bytes at out: 0 or
 * PS_EFRAME_BODY (unknown method, corrupt data, any other length). */
int ps__z_decompress(const uint8_t *block, uint32_t blen, uint8_t *out, uint32_t raw_len);
uint64_t ps__kc_hash(const uint8_t *keys, uint32_t n);

/* What this process's filters did (one world per process), for the tests
 * and benches: bytes of PULL/PUSH bodies sent and of REPLY bodies received
 * by the requester, filtered and as they would have been plain; key-cache
 * events. */
struct ps__filter_stats {
	uint64_t req_bytes, req_plain, reply_bytes, reply_plain;
	uint64_t kc_def, kc_ref, kc_miss; /* sent DEF, sent REF, misses answered to us */
	uint64_t z_req, z_reply;          /* compressed blocks sent, by requests and by replies */
};
void ps__filter_stats(struct ps__filter_stats *out);

#endif /* PSMEM_NET_FILTER_H */
