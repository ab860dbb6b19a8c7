/*
 * filter.c - the wire filters of PULL/PUSH/REPLY bodies, per table (the
 * OSDI'14 parameter server's filters): key-list caching
 * (PS_WIRE_KEYCACHE) and value compression (PS_WIRE_COMPRESS).  Wire forms:
 * filter.h; why these codecs: docs/DESIGN.md "Wire filters".
 *
 * Key cache.  The sender (any thread of the node; send[] under F->lock)
 * keeps up to PS__KC_SLOTS key lists it sent, each bound to an id it made
 * up; the receiver (the link thread that executes the sender node's
 * requests; recv[], no lock) keeps the lists it was given.
 *
 * Invariants
 *   (FL1) An id names one list forever: ids are this node's serial
 *         numbers (64 bits, never reused), and the receiver keys its
 *         entries by (sending host, sending node, id).  The hash of a list
 *         only finds a slot; the sender compares the whole list (table,
 *         host, count, every key) before it sends an id alone.  So a hash
 *         collision costs a resend of the keys and never names a wrong list.
 *   (FL2) A KEYREF whose id the receiver does not hold is answered
 *         PS__EKCMISS before anything of the request is done; the requester
 *         forgets that list and routes the keys again (link_remote.c), and
 *         the next send carries the keys (KEYDEF), which is always served.
 *         Holds whatever the routing and the path (the data connection to
 *         node i of the other host, or the bridge where there is none): a
 *         REF that reaches another node than its DEF (or overtakes it on
 *         another thread) is a miss, not an error.
 *   (FL3) Bounded: each side holds at most PS__KC_SLOTS lists of at most
 *         PS__KC_MAX_KEYS keys (8 MiB of keys per side per node); a new
 *         list evicts the one in its slot (direct-mapped).
 *   (FL4) A compressed block decodes to exactly the raw length its frame
 *         states (at most a frame: frame.c), or PS_EFRAME_BODY; the
 *         decoders read only blen bytes and write only raw_len bytes.
 *   (FL5) Off by default and per table: a table without PS_WIRE_* sends
 *         plain frames byte for byte; a receiver accepts the filtered forms
 *         from any table (the sender's table flags decide).
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <lz4.h>

#include "filter.h"
#include "util.h"

struct kc_send {
	uint8_t *keys;            /* n x u64 as on the wire; NULL: empty slot */
	uint64_t hash, id;
	uint32_t table, n;
	int host;
};

struct kc_recv {
	uint8_t *keys;            /* NULL: empty slot */
	uint64_t id;
	uint32_t table, n;
	int host, node;           /* the sender */
};

struct ps__filter {
	pthread_mutex_t lock;     /* send[] and next_id: the node's threads */
	struct kc_send send[PS__KC_SLOTS];
	uint64_t next_id;
	/* link thread only */
	struct kc_recv recv[PS__KC_SLOTS];
	uint8_t *dec, *rdec, *zbuf; /* request values, reply values, reply block */
	size_t dec_cap, rdec_cap, zbuf_cap;
};

/* Counters of this process (one world per process).  relaxed: statistics;
 * a reader that waited for the calls it counts (ps_wait's acquire) sees
 * them. */
static _Atomic uint64_t st_req_bytes, st_req_plain, st_reply_bytes, st_reply_plain, st_kc_def, st_kc_ref,
	st_kc_miss, st_z_req, st_z_reply;

static void count(_Atomic uint64_t *c, uint64_t v)
{
	atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

void ps__filter_stats(struct ps__filter_stats *o)
{
	*o = (struct ps__filter_stats){
		.req_bytes = atomic_load_explicit(&st_req_bytes, memory_order_relaxed),
		.req_plain = atomic_load_explicit(&st_req_plain, memory_order_relaxed),
		.reply_bytes = atomic_load_explicit(&st_reply_bytes, memory_order_relaxed),
		.reply_plain = atomic_load_explicit(&st_reply_plain, memory_order_relaxed),
		.kc_def = atomic_load_explicit(&st_kc_def, memory_order_relaxed),
		.kc_ref = atomic_load_explicit(&st_kc_ref, memory_order_relaxed),
		.kc_miss = atomic_load_explicit(&st_kc_miss, memory_order_relaxed),
		.z_req = atomic_load_explicit(&st_z_req, memory_order_relaxed),
		.z_reply = atomic_load_explicit(&st_z_reply, memory_order_relaxed),
	};
}

struct ps__filter *ps__filter_new(void)
{
	struct ps__filter *F = calloc(1, sizeof *F);
	if (F)
		pthread_mutex_init(&F->lock, NULL);
	return F;
}

void ps__filter_free(struct ps__filter *F)
{
	if (!F)
		return;
	for (unsigned i = 0; i < PS__KC_SLOTS; i++) {
		free(F->send[i].keys);
		free(F->recv[i].keys);
	}
	free(F->dec);
	free(F->rdec);
	free(F->zbuf);
	pthread_mutex_destroy(&F->lock);
	free(F);
}

/* ------------------------------------------------------------ codecs */

uint64_t ps__kc_hash(const uint8_t *keys, uint32_t n)
{
	uint64_t h = 0x9e3779b97f4a7c15ULL ^ n;
	for (uint32_t i = 0; i < n; i++) {
		h ^= ps__get64(keys + 8 * (size_t)i) * 0x87c37b91114253d5ULL;
		h = (h << 31 | h >> 33) * 0x4cf5ad432745937fULL;
	}
	return ps__mix64(h);
}

/* Non-zero 32-bit words of raw (bit patterns: -0.0 is not zero). */
static uint32_t count_nonzero(const uint8_t *raw, uint32_t nw)
{
	uint32_t nz = 0;
	for (uint32_t i = 0; i < nw; i++) {
		uint32_t wv;
		memcpy(&wv, raw + 4 * (size_t)i, 4);
		nz += wv != 0;
	}
	return nz;
}

/* Zero suppression: a bitmap of the non-zero words, then those words
 * (out: room for the block's size, computed by the caller).  Branch-free
 * in the words: a sparse gradient's zeros fall at random. */
static uint32_t zeros_enc(const uint8_t *raw, uint32_t nw, uint8_t *out)
{
	uint32_t nb = (nw + 7) / 8;
	uint8_t *bm = out + PS__Z_HDR, *o = bm + nb;
	memset(out, 0, PS__Z_HDR);
	out[0] = PS__Z_ZEROS;
	for (uint32_t byte = 0; byte < nb; byte++) {
		uint32_t bits = 0, lim = nw - 8 * byte < 8 ? nw - 8 * byte : 8;
		for (uint32_t j = 0; j < lim; j++) {
			uint32_t wv;
			memcpy(&wv, raw + 4 * (8 * (size_t)byte + j), 4);
			uint32_t nzb = wv != 0;
			memcpy(o, &wv, 4); /* kept only if non-zero: o moves on */
			o += 4 * nzb;
			bits |= nzb << j;
		}
		bm[byte] = (uint8_t)bits;
	}
	return (uint32_t)(o - out);
}

uint32_t ps__z_compress(const uint8_t *raw, uint32_t len, uint8_t *out)
{
	/* worth a frame flag and a decode only if it saves an eighth */
	uint32_t limit = len - len / 8;
	if (len % 4 || len < 64 || len > (uint32_t)LZ4_MAX_INPUT_SIZE)
		return 0;
	uint32_t nw = len / 4, nz = count_nonzero(raw, nw);
	/* the last word written may spill 4 bytes past the block: only when
	 * the block ends 4 bytes before limit */
	if (PS__Z_HDR + (nw + 7) / 8 + 4ULL * nz + 4 <= limit)
		return zeros_enc(raw, nw, out);
	/* repeated values (constants, quantized rows): LZ4 gives up when the
	 * output cannot fit limit */
	int c = LZ4_compress_default((const char *)raw, (char *)out + PS__Z_HDR, (int)len, (int)(limit - PS__Z_HDR));
	if (c <= 0)
		return 0;
	memset(out, 0, PS__Z_HDR);
	out[0] = PS__Z_LZ4;
	return PS__Z_HDR + (uint32_t)c;
}

int ps__z_decompress(const uint8_t *block, uint32_t blen, uint8_t *out, uint32_t raw_len)
{
	if (blen < PS__Z_HDR || block[1] || block[2] || block[3] || raw_len % 4)
		return PS_EFRAME_BODY;
	const uint8_t *p = block + PS__Z_HDR;
	uint32_t plen = blen - PS__Z_HDR;
	if (block[0] == PS__Z_LZ4) {
		if (raw_len > (uint32_t)INT_MAX || plen > (uint32_t)INT_MAX)
			return PS_EFRAME_BODY;
		int r = LZ4_decompress_safe((const char *)p, (char *)out, (int)plen, (int)raw_len);
		return r >= 0 && (uint32_t)r == raw_len ? 0 : PS_EFRAME_BODY;
	}
	if (block[0] != PS__Z_ZEROS)
		return PS_EFRAME_BODY;
	uint32_t nw = raw_len / 4, nb = (nw + 7) / 8;
	if (plen < nb)
		return PS_EFRAME_BODY;
	/* every word the bitmap names is there, and nothing else: bits past
	 * nw are 0, and the words fill the rest exactly */
	if (nw % 8 && (p[nb - 1] >> (nw % 8)))
		return PS_EFRAME_BODY;
	uint64_t ones = 0;
	for (uint32_t i = 0; i < nb; i++)
		ones += (uint64_t)__builtin_popcount(p[i]);
	if ((uint64_t)plen - nb != 4 * ones)
		return PS_EFRAME_BODY;
	/* branch-free: a zero bit reads a zero word from zero4, not src */
	static const uint8_t zero4[4];
	const uint8_t *wsrc = p + nb;
	for (uint32_t byte = 0; byte < nb; byte++) {
		uint32_t bits = p[byte], lim = nw - 8 * byte < 8 ? nw - 8 * byte : 8;
		uint8_t *dst = out + 32 * (size_t)byte;
		for (uint32_t j = 0; j < lim; j++) {
			uint32_t bit = bits >> j & 1;
			memcpy(dst + 4 * j, bit ? wsrc : zero4, 4);
			wsrc += 4 * bit;
		}
	}
	return 0;
}

/* ------------------------------------------------------------ key cache */

static unsigned send_slot(uint64_t hash, uint32_t table, int host)
{
	return (unsigned)(ps__mix64(hash ^ ((uint64_t)table << 40) ^ ((uint64_t)(uint32_t)host << 16)) % PS__KC_SLOTS);
}

static unsigned recv_slot(uint64_t id, int host, int node)
{
	return (unsigned)(ps__mix64(id ^ ((uint64_t)(uint32_t)host << 40) ^ ((uint64_t)(uint32_t)node << 32)) %
			  PS__KC_SLOTS);
}

static bool send_match(const struct kc_send *e, uint64_t hash, uint32_t table, int host, const uint8_t *kp,
		       uint32_t n)
{
	return e->keys && e->hash == hash && e->table == table && e->host == host && e->n == n &&
	       memcmp(e->keys, kp, 8 * (size_t)n) == 0;
}

enum { KC_NONE, KC_DEF, KC_REF };

/* The sender's decision for list kp[0..n) to host (FL1). */
static int kc_lookup(struct ps__filter *F, uint32_t table, int host, const uint8_t *kp, uint32_t n, uint64_t *id)
{
	uint64_t hash = ps__kc_hash(kp, n);
	unsigned s = send_slot(hash, table, host);
	uint8_t *copy = NULL;
	int what = KC_REF;
	pthread_mutex_lock(&F->lock);
	struct kc_send *e = &F->send[s];
	if (!send_match(e, hash, table, host, kp, n)) {
		copy = malloc(8 * (size_t)n);
		if (!copy) {
			pthread_mutex_unlock(&F->lock);
			return KC_NONE;
		}
		memcpy(copy, kp, 8 * (size_t)n);
		free(e->keys);
		*e = (struct kc_send){.keys = copy, .hash = hash, .id = ++F->next_id, .table = table, .n = n,
				      .host = host};
		what = KC_DEF;
	}
	*id = e->id;
	pthread_mutex_unlock(&F->lock);
	return what;
}

void ps__filter_forget(struct ps__filter *F, uint32_t table, int host, const ps_key *keys, const uint32_t *pos,
		       uint32_t n)
{
	if (!F || n > PS__KC_MAX_KEYS)
		return;
	uint8_t *kp = malloc(8 * (size_t)n + 1);
	if (!kp)
		return; /* the slot stays: the next REF misses again, FL2 */
	for (uint32_t i = 0; i < n; i++)
		ps__put64(kp + 8 * (size_t)i, keys[pos[i]]);
	uint64_t hash = ps__kc_hash(kp, n);
	unsigned s = send_slot(hash, table, host);
	pthread_mutex_lock(&F->lock);
	struct kc_send *e = &F->send[s];
	if (send_match(e, hash, table, host, kp, n)) {
		free(e->keys);
		*e = (struct kc_send){0};
	}
	pthread_mutex_unlock(&F->lock);
	free(kp);
	count(&st_kc_miss, 1);
}

/* ------------------------------------------------------------ requests */

uint32_t ps__filter_req_out(struct ps__filter *F, uint32_t table, uint32_t flags, int host, uint8_t *body,
			    uint32_t blen)
{
	const uint32_t n = ps__get32(body + 16);
	const bool push = blen != PS__KV_HDR + 8ULL * n;
	count(&st_req_plain, PS__FRAME_HDR + (uint64_t)blen);
	const uint32_t want = flags & (PS_WIRE_KEYCACHE | PS_WIRE_COMPRESS);
	if (!F || !want) {
		count(&st_req_bytes, PS__FRAME_HDR + (uint64_t)blen);
		return blen;
	}
	uint8_t *kp = body + PS__KV_HDR, *vp = kp + 8 * (size_t)n;
	const uint32_t vbytes = push ? blen - PS__KV_HDR - 8 * n : 0;
	uint8_t *z = NULL;
	uint32_t zl = 0;
	if (push && (want & PS_WIRE_COMPRESS) && vbytes >= 64 && (z = malloc(vbytes)))
		zl = ps__z_compress(vp, vbytes, z);
	uint64_t id = 0;
	int kc = KC_NONE;
	if ((want & PS_WIRE_KEYCACHE) && n <= PS__KC_MAX_KEYS && (uint64_t)blen + 8 <= PS__FRAME_MAX)
		kc = kc_lookup(F, table, host, kp, n, &id);
	uint32_t fl = ps__get32(body + 20), at;
	if (kc == KC_REF) {
		ps__put64(kp, id);
		at = PS__KV_HDR + 8;
		if (!zl) /* the values move down over the keys (vp >= kp + 8) */
			memmove(body + at, vp, vbytes);
		fl |= PS__KV_KEYREF;
		count(&st_kc_ref, 1);
	} else if (kc == KC_DEF) {
		memmove(kp + 8, kp, 8 * (size_t)n + (zl ? 0 : vbytes)); /* room: blen + 8 */
		ps__put64(kp, id);
		at = PS__KV_HDR + 8 + 8 * n;
		fl |= PS__KV_KEYDEF;
		count(&st_kc_def, 1);
	} else {
		at = PS__KV_HDR + 8 * n;
	}
	if (zl) {
		memcpy(body + at, z, zl);
		fl |= PS__KV_ZVALS;
		count(&st_z_req, 1);
	}
	free(z);
	ps__put32(body + 20, fl);
	uint32_t out = at + (zl ? zl : vbytes);
	count(&st_req_bytes, PS__FRAME_HDR + (uint64_t)out);
	return out;
}

int ps__filter_req_in(struct ps__filter *F, int src_host, uint64_t req, struct ps__kv_req *m)
{
	if (!(m->flags & PS__KV_WIRE))
		return 0;
	if (!F)
		return PS_EFRAME_BODY;
	const int node = (int)(req >> 56);
	if (m->flags & PS__KV_KEYREF) { /* (FL1, FL2) */
		const struct kc_recv *e = &F->recv[recv_slot(m->kc_id, src_host, node)];
		if (!e->keys || e->id != m->kc_id || e->host != src_host || e->node != node)
			return PS__EKCMISS;
		if (e->table != m->table || e->n != m->n)
			return PS_EFRAME_BODY; /* an id names one list of one table */
		m->keys = e->keys;
	}
	if (m->flags & PS__KV_ZVALS) { /* (FL4): frame.c bounded the raw size */
		size_t raw = 4 * (size_t)m->n * m->value_len;
		if (raw > UINT32_MAX || ps__buf_reserve(&F->dec, &F->dec_cap, raw ? raw : 1))
			return -ENOMEM;
		int rc = ps__z_decompress(m->values, m->zlen, F->dec, (uint32_t)raw);
		if (rc)
			return rc;
		m->values = F->dec;
	}
	if ((m->flags & PS__KV_KEYDEF) && m->n <= PS__KC_MAX_KEYS) {
		struct kc_recv *e = &F->recv[recv_slot(m->kc_id, src_host, node)];
		uint8_t *copy = realloc(e->keys, 8 * (size_t)m->n);
		if (!copy)
			return 0; /* not cached: a later REF misses (FL2) */
		memcpy(copy, m->keys, 8 * (size_t)m->n);
		*e = (struct kc_recv){.keys = copy, .id = m->kc_id, .table = m->table, .n = m->n, .host = src_host,
				      .node = node};
	}
	return 0;
}

/* ------------------------------------------------------------ replies */

uint32_t ps__filter_reply_out(struct ps__filter *F, uint32_t flags, uint8_t *out, int32_t status, uint32_t nvals)
{
	const uint32_t raw = 4 * nvals;
	if (F && status == 0 && (flags & PS_WIRE_COMPRESS) && raw >= 64 &&
	    ps__buf_reserve(&F->zbuf, &F->zbuf_cap, raw) == 0) {
		uint32_t zl = ps__z_compress(out + PS__REPLY_HDR, raw, F->zbuf);
		if (zl) {
			memcpy(out + PS__REPLY_HDR, F->zbuf, zl);
			ps__reply_enc_hdr(out, status, nvals | PS__REPLY_Z);
			count(&st_z_reply, 1);
			return PS__REPLY_HDR + zl;
		}
	}
	ps__reply_enc_hdr(out, status, nvals);
	return PS__REPLY_HDR + raw;
}

void ps__filter_count_plain_reply(uint32_t nvals)
{
	uint64_t plain = PS__FRAME_HDR + PS__REPLY_HDR + 4ULL * nvals;
	count(&st_reply_plain, plain);
	count(&st_reply_bytes, plain);
}

int ps__filter_reply_in(struct ps__filter *F, struct ps__reply *m)
{
	uint64_t plain = PS__FRAME_HDR + PS__REPLY_HDR + 4ULL * m->nvals;
	count(&st_reply_plain, plain);
	if (!m->z) {
		count(&st_reply_bytes, plain);
		return 0;
	}
	count(&st_reply_bytes, PS__FRAME_HDR + PS__REPLY_HDR + (uint64_t)m->zlen);
	size_t raw = 4 * (size_t)m->nvals; /* frame.c: at most a frame (FL4) */
	if (!F || ps__buf_reserve(&F->rdec, &F->rdec_cap, raw))
		return F ? -ENOMEM : PS_EFRAME_BODY;
	int rc = ps__z_decompress(m->vals, m->zlen, F->rdec, (uint32_t)raw);
	if (rc == 0)
		m->vals = F->rdec;
	return rc;
}
