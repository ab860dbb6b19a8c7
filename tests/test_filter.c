/*
 * test_filter.c - the wire filters (lib/net/filter.c): key-list caching and
 * value compression, per table.
 *
 * Unit tests drive the pure codecs and the two sides of the key cache
 * directly (a sender's and a receiver's struct ps__filter, frame bodies in
 * between): round trips, a miss after eviction answered PS__EKCMISS and
 * resent with keys, corrupt blocks refused with PS_EFRAME_BODY.
 *
 * Under psrun the binary is a node ("--node filters"): two hosts of one
 * node; host 0 pulls and pushes keys of host 1 through a plain table and a
 * table with both filters, checks that every pulled value and every sum is
 * exactly what the plain table gives (and what it computed), that key-list
 * misses happened and were resent, and prints the bytes each phase put on
 * the wire (the library's counters); the driver checks them.  Then both
 * hosts push the same key lists from several threads while keys move
 * between them, and host 0 checks every sum.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"
#include "filter.h"
#include "frame.h"
#include "hosts.h"
#include "psmem.h"

/* ------------------------------------------------------------ codecs */

static void fill_sparse(float *v, size_t n, uint64_t seed, unsigned zero_pct)
{
	uint64_t s = seed;
	for (size_t i = 0; i < n; i++) {
		uint64_t r = test_rnd(&s);
		v[i] = (r % 100) < zero_pct ? 0.0f : (float)((int64_t)(r >> 40) % 2001 - 1000) / 64.0f;
	}
}

static void roundtrip(const float *v, size_t n, unsigned want_method)
{
	uint32_t len = (uint32_t)(4 * n);
	uint8_t *block = malloc(len), *back = malloc(len);
	uint32_t bl = ps__z_compress((const uint8_t *)v, len, block);
	if (want_method == 0) {
		assert_int_equal(bl, 0);
	} else {
		assert_true(bl > 0 && bl <= len - len / 8);
		assert_int_equal(block[0], want_method);
		memset(back, 0xa5, len);
		assert_int_equal(ps__z_decompress(block, bl, back, len), 0);
		assert_memory_equal(back, v, len); /* bit for bit: -0.0, NaN */
	}
	free(block);
	free(back);
}

static void test_sparse_values_round_trip_zero_suppressed(void **state)
{
	(void)state;
	/* 90% zeros, odd counts (the bitmap's last byte partly used) */
	const size_t sizes[] = {16, 17, 23, 4096, 409600 + 3};
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		float *v = malloc(4 * sizes[i]);
		fill_sparse(v, sizes[i], 7 + i, 90);
		v[0] = -0.0f; /* not a zero word */
		v[sizes[i] - 1] = NAN;
		roundtrip(v, sizes[i], PS__Z_ZEROS);
		free(v);
	}
}

static void test_repeated_values_round_trip_lz4_and_dense_ones_travel_raw(void **state)
{
	(void)state;
	size_t n = 4096;
	float *v = malloc(4 * n);
	for (size_t i = 0; i < n; i++)
		v[i] = 1.0f + (float)(i % 3); /* a constant init, quantized rows */
	roundtrip(v, n, PS__Z_LZ4);
	uint64_t s = 3;
	for (size_t i = 0; i < n; i++)
		v[i] = (float)((double)test_rnd(&s) / 1.8446744073709552e19 - 0.5);
	roundtrip(v, n, 0); /* embeddings: neither saves an eighth */
	uint8_t out[64];
	assert_int_equal(ps__z_compress((const uint8_t *)v, 60, out), 0); /* too small to bother */
	free(v);
}

/* Every corruption of a block is refused, never read or written past. */
static void test_corrupt_blocks_are_refused(void **state)
{
	(void)state;
	size_t n = 1000;
	float *v = malloc(4 * n);
	fill_sparse(v, n, 11, 90);
	v[n - 1] = 1.0f; /* a shorter row would end before this word */
	uint32_t len = (uint32_t)(4 * n);
	uint8_t *zb = malloc(len), *out = malloc(len);
	uint32_t zl = ps__z_compress((const uint8_t *)v, len, zb);
	assert_int_equal(zb[0], PS__Z_ZEROS);
	/* every truncation and every extension */
	for (uint32_t l = 0; l < zl; l++)
		assert_int_equal(ps__z_decompress(zb, l, out, len), PS_EFRAME_BODY);
	uint8_t *longer = calloc(1, zl + 4);
	memcpy(longer, zb, zl);
	assert_int_equal(ps__z_decompress(longer, zl + 4, out, len), PS_EFRAME_BODY);
	/* another raw length than the frame says */
	assert_int_equal(ps__z_decompress(zb, zl, out, len - 4), PS_EFRAME_BODY);
	assert_int_equal(ps__z_decompress(zb, zl, out, len - 32), PS_EFRAME_BODY);
	assert_int_equal(ps__z_decompress(zb, zl, out, len - 1), PS_EFRAME_BODY);
	/* a bit flipped in the bitmap: the word count no longer fits */
	zb[4 + 3] ^= 0x10;
	assert_int_equal(ps__z_decompress(zb, zl, out, len), PS_EFRAME_BODY);
	zb[4 + 3] ^= 0x10;
	assert_int_equal(ps__z_decompress(zb, zl, out, len), 0);
	/* method and reserved bytes */
	zb[0] = 9;
	assert_int_equal(ps__z_decompress(zb, zl, out, len), PS_EFRAME_BODY);
	zb[0] = PS__Z_ZEROS;
	zb[2] = 1;
	assert_int_equal(ps__z_decompress(zb, zl, out, len), PS_EFRAME_BODY);
	zb[2] = 0;
	/* 9 words: a 2-byte bitmap; bit 0 of byte 1 is word 8, the last; bit
	 * 1 of byte 1 would be a word 9 past the row */
	float w[9];
	memset(w, 0xff, sizeof w);
	uint8_t small[4 + 2 + 4] = {PS__Z_ZEROS, 0, 0, 0, 0x00, 0x01, 0x00, 0x00, 0x80, 0x3f};
	assert_int_equal(ps__z_decompress(small, sizeof small, (uint8_t *)w, 36), 0);
	for (int i = 0; i < 8; i++)
		assert_true(w[i] == 0.0f);
	assert_true(w[8] == 1.0f);
	small[5] = 0x02;
	assert_int_equal(ps__z_decompress(small, sizeof small, (uint8_t *)w, 36), PS_EFRAME_BODY);
	/* LZ4: garbage, a truncated stream, a stream of the wrong length */
	for (size_t i = 0; i < n; i++)
		v[i] = (float)(1 + i % 5); /* no zeros, repeated */
	uint32_t ll = ps__z_compress((const uint8_t *)v, len, zb);
	assert_int_equal(zb[0], PS__Z_LZ4);
	assert_int_equal(ps__z_decompress(zb, ll, out, len), 0);
	assert_memory_equal(out, v, len);
	for (uint32_t l = 0; l < ll; l++)
		assert_int_equal(ps__z_decompress(zb, l, out, len), PS_EFRAME_BODY);
	assert_int_equal(ps__z_decompress(zb, ll, out, len + 4), PS_EFRAME_BODY);
	assert_int_equal(ps__z_decompress(zb, ll, out, len - 4), PS_EFRAME_BODY);
	uint64_t s = 5;
	for (int trial = 0; trial < 2000; trial++) {
		uint32_t bl = 4 + (uint32_t)(test_rnd(&s) % 200);
		for (uint32_t i = 0; i < bl; i++)
			zb[i] = (uint8_t)test_rnd(&s);
		zb[0] = (uint8_t)(1 + trial % 2);
		zb[1] = zb[2] = zb[3] = 0;
		int rc = ps__z_decompress(zb, bl, out, 400);
		assert_true(rc == 0 || rc == PS_EFRAME_BODY);
	}
	free(longer);
	free(zb);
	free(out);
	free(v);
}

/* ------------------------------------------------------------ key cache */

#define TBL 3
#define VLEN 8

/* A plain body of n keys (keys[i]), pushed values (or a pull), with room
 * for the filter's 8 bytes. */
static uint32_t plain_body(uint8_t *b, const ps_key *keys, uint32_t n, const float *vals)
{
	struct ps__kv_req m = {.table = TBL, .value_len = VLEN, .num_keys = 1 << 20, .n = n};
	ps__kv_enc_hdr(b, &m);
	for (uint32_t i = 0; i < n; i++)
		ps__put64(b + PS__KV_HDR + 8 * (size_t)i, keys[i]);
	if (vals)
		memcpy(b + PS__KV_HDR + 8 * (size_t)n, vals, 4 * (size_t)n * VLEN);
	return (uint32_t)ps__kv_size(vals != NULL, n, VLEN);
}

/* Sends keys (+ vals) through sender S to receiver R as node 2 of host 1;
 * returns what the receiver's decoding gave, the keys and values it saw
 * checked against what was sent. */
static int send_one(struct ps__filter *S, struct ps__filter *R, uint32_t flags, const ps_key *keys, uint32_t n,
		    const float *vals, uint32_t *wire_flags, uint8_t *saved, uint32_t *saved_len)
{
	uint8_t *b = malloc(ps__kv_size(true, n, VLEN) + 8);
	uint32_t len = plain_body(b, keys, n, vals);
	len = ps__filter_req_out(S, TBL, flags, 0, b, len);
	if (saved) {
		memcpy(saved, b, len);
		*saved_len = len;
	}
	struct ps__kv_req m;
	assert_int_equal(ps__kv_dec(b, len, vals != NULL, &m), 0);
	*wire_flags = m.flags;
	int rc = ps__filter_req_in(R, 1, (uint64_t)2 << 56 | 77, &m);
	if (rc == 0) {
		assert_int_equal(m.n, n);
		for (uint32_t i = 0; i < n; i++)
			assert_int_equal(ps__get64(m.keys + 8 * (size_t)i), keys[i]);
		if (vals)
			assert_memory_equal(m.values, vals, 4 * (size_t)n * VLEN);
	}
	free(b);
	return rc;
}

static void test_a_key_list_is_sent_once_then_by_id(void **state)
{
	(void)state;
	struct ps__filter *S = ps__filter_new(), *R = ps__filter_new();
	ps_key a[100], b[100];
	for (int i = 0; i < 100; i++) {
		a[i] = 5000 + 3 * (ps_key)i;
		b[i] = a[i];
	}
	b[99]++; /* differs in the last key only */
	uint32_t fl;
	assert_int_equal(send_one(S, R, PS_WIRE_KEYCACHE, a, 100, NULL, &fl, NULL, NULL), 0);
	assert_int_equal(fl, PS__KV_KEYDEF);
	assert_int_equal(send_one(S, R, PS_WIRE_KEYCACHE, a, 100, NULL, &fl, NULL, NULL), 0);
	assert_int_equal(fl, PS__KV_KEYREF);
	/* another list, even one key apart, is never sent as a's id */
	assert_int_equal(send_one(S, R, PS_WIRE_KEYCACHE, b, 100, NULL, &fl, NULL, NULL), 0);
	assert_int_equal(fl, PS__KV_KEYDEF);
	assert_int_equal(send_one(S, R, PS_WIRE_KEYCACHE, b, 100, NULL, &fl, NULL, NULL), 0);
	assert_int_equal(fl, PS__KV_KEYREF);
	/* a table without the flag: plain, byte for byte */
	uint8_t p1[2048], p2[2048];
	uint32_t l1 = plain_body(p1, a, 100, NULL);
	memcpy(p2, p1, l1);
	assert_int_equal(ps__filter_req_out(S, TBL, 0, 0, p2, l1), l1);
	assert_memory_equal(p1, p2, l1);
	ps__filter_free(S);
	ps__filter_free(R);
}

static void test_evicted_id_misses_and_the_resend_carries_keys(void **state)
{
	(void)state;
	struct ps__filter *S = ps__filter_new(), *R = ps__filter_new(), *R2 = ps__filter_new();
	ps_key a[64];
	float va[64 * VLEN];
	for (int i = 0; i < 64; i++)
		a[i] = 900 + (ps_key)i;
	fill_sparse(va, 64 * VLEN, 1, 50);
	uint32_t fl, ref_len;
	static uint8_t ref[64 * 8 + 64 * VLEN * 4 + 64];
	assert_int_equal(send_one(S, R, PS_WIRE_KEYCACHE, a, 64, va, &fl, NULL, NULL), 0);
	assert_int_equal(send_one(S, R, PS_WIRE_KEYCACHE, a, 64, va, &fl, ref, &ref_len), 0);
	assert_int_equal(fl, PS__KV_KEYREF);
	/* another receiver (a node that never saw the DEF) misses */
	assert_int_equal(send_one(S, R2, PS_WIRE_KEYCACHE, a, 64, va, &fl, NULL, NULL), PS__EKCMISS);
	/* the requester forgets the list: the next send carries the keys */
	uint32_t pos[64];
	for (uint32_t i = 0; i < 64; i++)
		pos[i] = i;
	ps__filter_forget(S, TBL, 0, a, pos, 64);
	assert_int_equal(send_one(S, R2, PS_WIRE_KEYCACHE, a, 64, va, &fl, NULL, NULL), 0);
	assert_int_equal(fl, PS__KV_KEYDEF);
	assert_int_equal(send_one(S, R2, PS_WIRE_KEYCACHE, a, 64, va, &fl, NULL, NULL), 0);
	assert_int_equal(fl, PS__KV_KEYREF);
	/* eviction: 1000 other lists through R evict a's entry (at most
	 * PS__KC_SLOTS lists are kept); the saved REF of a then misses */
	for (int l = 0; l < 1000; l++) {
		ps_key k[4] = {(ps_key)l, (ps_key)l + 1, (ps_key)l + 2, 77777};
		assert_int_equal(send_one(S, R, PS_WIRE_KEYCACHE, k, 4, NULL, &fl, NULL, NULL), 0);
		assert_int_equal(fl, PS__KV_KEYDEF);
	}
	struct ps__kv_req m;
	assert_int_equal(ps__kv_dec(ref, ref_len, true, &m), 0);
	assert_int_equal(ps__filter_req_in(R, 1, (uint64_t)2 << 56, &m), PS__EKCMISS);
	/* the same id from another host or node is another list: a miss
	 * (sent twice: the second is a REF whatever S evicted) */
	assert_int_equal(send_one(S, R2, PS_WIRE_KEYCACHE, a, 64, va, &fl, NULL, NULL), 0);
	assert_int_equal(send_one(S, R2, PS_WIRE_KEYCACHE, a, 64, va, &fl, ref, &ref_len), 0);
	assert_int_equal(fl, PS__KV_KEYREF);
	assert_int_equal(ps__kv_dec(ref, ref_len, true, &m), 0);
	assert_int_equal(ps__filter_req_in(R2, 0, (uint64_t)2 << 56, &m), PS__EKCMISS);
	assert_int_equal(ps__kv_dec(ref, ref_len, true, &m), 0);
	assert_int_equal(ps__filter_req_in(R2, 1, (uint64_t)3 << 56, &m), PS__EKCMISS);
	/* an id of a list of another length or table: malformed, not guessed */
	assert_int_equal(ps__kv_dec(ref, ref_len, true, &m), 0);
	m.n = 63;
	assert_int_equal(ps__filter_req_in(R2, 1, (uint64_t)2 << 56, &m), PS_EFRAME_BODY);
	assert_int_equal(ps__kv_dec(ref, ref_len, true, &m), 0);
	m.table = TBL + 1;
	assert_int_equal(ps__filter_req_in(R2, 1, (uint64_t)2 << 56, &m), PS_EFRAME_BODY);
	ps__filter_free(S);
	ps__filter_free(R);
	ps__filter_free(R2);
}

static void test_both_filters_round_trip_a_push_and_a_reply(void **state)
{
	(void)state;
	struct ps__filter *S = ps__filter_new(), *R = ps__filter_new();
	const uint32_t both = PS_WIRE_KEYCACHE | PS_WIRE_COMPRESS;
	enum { N = 256 };
	ps_key k[N];
	static float v[N * VLEN];
	for (int i = 0; i < N; i++)
		k[i] = 40000 + 17 * (ps_key)i;
	fill_sparse(v, N * VLEN, 21, 90);
	uint32_t fl;
	assert_int_equal(send_one(S, R, both, k, N, v, &fl, NULL, NULL), 0);
	assert_int_equal(fl, PS__KV_KEYDEF | PS__KV_ZVALS);
	static uint8_t saved[N * 8 + N * VLEN * 4 + 64];
	uint32_t sl;
	assert_int_equal(send_one(S, R, both, k, N, v, &fl, saved, &sl), 0);
	assert_int_equal(fl, PS__KV_KEYREF | PS__KV_ZVALS);
	/* 8 bytes of keys and 32 of values per key plain; now an id and ~1/10 */
	assert_true(sl < PS__KV_HDR + 8 + N * VLEN * 4 / 5);
	/* a corrupt block in a request: refused, nothing decoded */
	struct ps__kv_req m;
	saved[PS__KV_HDR + 8 + 4 + 2] ^= 0x41;
	assert_int_equal(ps__kv_dec(saved, sl, true, &m), 0);
	assert_int_equal(ps__filter_req_in(R, 1, (uint64_t)2 << 56, &m), PS_EFRAME_BODY);
	/* the reply side */
	static uint8_t rb[PS__REPLY_HDR + N * VLEN * 4];
	memcpy(rb + PS__REPLY_HDR, v, sizeof v);
	uint32_t rl = ps__filter_reply_out(R, PS_WIRE_COMPRESS, rb, 0, N * VLEN);
	assert_true(rl < sizeof rb / 5);
	struct ps__reply r;
	assert_int_equal(ps__reply_dec(rb, rl, &r), 0);
	assert_true(r.z);
	assert_int_equal(r.nvals, N * VLEN);
	assert_int_equal(ps__filter_reply_in(S, &r), 0);
	assert_memory_equal(r.vals, v, sizeof v);
	/* not asked for: plain */
	memcpy(rb + PS__REPLY_HDR, v, sizeof v);
	assert_int_equal(ps__filter_reply_out(R, 0, rb, 0, N * VLEN), sizeof rb);
	/* corrupt reply block */
	memcpy(rb + PS__REPLY_HDR, v, sizeof v);
	rl = ps__filter_reply_out(R, PS_WIRE_COMPRESS, rb, 0, N * VLEN);
	assert_int_equal(ps__reply_dec(rb, rl - 4, &r), 0);
	assert_int_equal(ps__filter_reply_in(S, &r), PS_EFRAME_BODY);
	ps__filter_free(S);
	ps__filter_free(R);
}

/* Decoders that do not know a form refuse it (PS_EFRAME_BODY), and the
 * forms are checked exactly. */
static void test_malformed_filtered_bodies_are_refused(void **state)
{
	(void)state;
	uint8_t b[256];
	ps_key k[4] = {1, 2, 3, 4};
	struct ps__kv_req m;
	uint32_t len = plain_body(b, k, 4, NULL);
	ps__put32(b + 20, 0x80); /* a flag nobody knows */
	assert_int_equal(ps__kv_dec(b, len, false, &m), PS_EFRAME_BODY);
	ps__put32(b + 20, PS__KV_ZVALS); /* compressed values on a pull */
	assert_int_equal(ps__kv_dec(b, len, false, &m), PS_EFRAME_BODY);
	ps__put32(b + 20, PS__KV_KEYDEF | PS__KV_KEYREF);
	assert_int_equal(ps__kv_dec(b, len + 8, false, &m), PS_EFRAME_BODY);
	ps__put32(b + 20, PS__KV_KEYDEF); /* the id is missing */
	assert_int_equal(ps__kv_dec(b, len, false, &m), PS_EFRAME_BODY);
	assert_int_equal(ps__kv_dec(b, len + 8, false, &m), 0);
	ps__put32(b + 20, PS__KV_KEYREF); /* keys where only an id belongs */
	assert_int_equal(ps__kv_dec(b, len, false, &m), PS_EFRAME_BODY);
	assert_int_equal(ps__kv_dec(b, PS__KV_HDR + 8, false, &m), 0);
	assert_null(m.keys);
	/* a REPLY with the compressed bit: a decoder that masks nothing sees
	 * 8 + 4 x (2^31 + n) bytes, never len */
	uint8_t r[32] = {0};
	ps__put32(r + 4, 4 | PS__REPLY_Z);
	struct ps__reply rp;
	assert_int_equal(ps__reply_dec(r, 8 + 2, &rp), PS_EFRAME_BODY); /* block shorter than its header */
	assert_int_equal(ps__reply_dec(r, 8 + 4, &rp), 0);
	ps__put32(r + 4, (PS__FRAME_MAX / 4) | PS__REPLY_Z); /* more than a frame of floats */
	assert_int_equal(ps__reply_dec(r, 8 + 4, &rp), PS_EFRAME_BODY);
	/* a filtered request whose plain form passes the frame limit */
	struct ps__kv_req big = {.table = 0, .value_len = 65536, .num_keys = 1 << 20, .n = 1000};
	ps__kv_enc_hdr(b, &big);
	ps__put32(b + 20, PS__KV_KEYREF | PS__KV_ZVALS);
	assert_int_equal(ps__kv_dec(b, PS__KV_HDR + 8 + 8, true, &m), PS_EFRAME_BODY);
}

/* On one host the flags are accepted and change nothing; unknown flag
 * bits are still refused. */
static void test_one_host_takes_the_flags_and_ignores_them(void **state)
{
	ps_world *w = *state;
	ps_table_opts o;
	ps_table_opts_init(&o, 1000, 40);
	o.init = PS_INIT_CONST;
	o.init_a = 1.0f;
	o.flags = PS_WIRE_KEYCACHE | PS_WIRE_COMPRESS;
	int err = 1;
	ps_table *t = ps_table_create(w, &o, &err);
	assert_non_null(t);
	ps_key k[10];
	float g[10 * 40], v[10 * 40];
	for (int i = 0; i < 10; i++)
		k[i] = 100 * (ps_key)i;
	fill_sparse(g, 10 * 40, 4, 90);
	assert_int_equal(ps_push_sync(t, k, 10, g), 0);
	assert_int_equal(ps_pull_sync(t, k, 10, v), 0);
	for (int i = 0; i < 10 * 40; i++)
		assert_true(v[i] == 1.0f + g[i]);
	o.flags = 0x400; /* no such flag */
	assert_null(ps_table_create(w, &o, &err));
	assert_int_equal(err, -EINVAL);
}

/* ------------------------------------------------------------ node */

#define K (2 * 8192)
#define N 4096
#define VL 32
#define ROUNDS 20

static int node_fail(const char *what, int rc)
{
	printf("filters: FAIL %s: %s\n", what, ps_strerror(rc));
	return 1;
}

/*
 * Phase 4, on both hosts at once: THREADS workers per host push the same
 * few key lists (spread over both hosts) in turn, so that threads race to
 * define and refer to the same ids, while worker 0 of each host moves keys
 * of those lists between the hosts (new lists per host, redirects).  Then
 * host 0 checks every sum exactly.
 */
#define THREADS 3
#define P4_LISTS 8
#define P4_LEN 256
#define P4_ROUNDS 120

struct storm {
	ps_table *t;
	_Atomic int rc;
};

static ps_key p4_key(int l, int i)
{
	return ((uint64_t)l * 977 + (uint64_t)i * 61) % K;
}

static float p4_val(int host, int tid, int j)
{
	return (j % 3) ? 0.0f : (float)(1 + host * 8 + tid) / 64.0f;
}

static int p4_verify(ps_table *t)
{
	double *want = calloc((size_t)K * VL, sizeof(double));
	for (int h = 0; h < 2; h++)
		for (int tid = 0; tid < THREADS; tid++)
			for (int r = 0; r < P4_ROUNDS; r++)
				for (int i = 0; i < P4_LEN; i++)
					for (int j = 0; j < VL; j++)
						want[p4_key((r + tid) % P4_LISTS, i) * VL + j] += p4_val(h, tid, j);
	ps_key keys[512];
	float *v = malloc(4ULL * 512 * VL);
	int rc = 0;
	for (ps_key k0 = 0; k0 < K && !rc; k0 += 512) {
		for (int i = 0; i < 512; i++)
			keys[i] = k0 + (ps_key)i;
		rc = ps_pull_sync(t, keys, 512, v);
		for (size_t i = 0; !rc && i < 512ULL * VL; i++)
			if ((double)v[i] != want[k0 * VL + i]) {
				printf("filters: storm: key %llu [%zu]: %.9g, want %.9g\n",
				       (unsigned long long)(k0 + i / VL), i % VL, v[i], want[k0 * VL + i]);
				rc = PS_EMISMATCH;
			}
	}
	free(v);
	free(want);
	return rc;
}

static void p4_worker(ps_world *w, int tid, void *arg)
{
	struct storm *st = arg;
	const int h = ps_host_id(w);
	ps_key k[P4_LEN];
	float *v = malloc(4ULL * P4_LEN * VL);
	for (int i = 0; i < P4_LEN * VL; i++)
		v[i] = p4_val(h, tid, i % VL);
	int rc = 0;
	for (int r = 0; r < P4_ROUNDS && !rc; r++) {
		int l = (r + tid) % P4_LISTS;
		for (int i = 0; i < P4_LEN; i++)
			k[i] = p4_key(l, i);
		rc = ps_push_sync(st->t, k, P4_LEN, v);
		if (!rc && tid == 0 && r % 6 == h * 3) /* some keys of a list move here */
			rc = ps_localize_sync(st->t, k + (r % 16) * 16, 16);
	}
	free(v);
	if (rc) {
		printf("filters: storm: host %d thread %d: %s\n", h, tid, ps_strerror(rc));
		atomic_store(&st->rc, rc);
	}
	int brc = ps_barrier(w);
	if (brc)
		atomic_store(&st->rc, brc);
	if (h == 0 && tid == 0 && !atomic_load(&st->rc)) {
		rc = p4_verify(st->t);
		if (rc)
			atomic_store(&st->rc, rc);
		else
			printf("filters: storm: every sum exact\n");
	}
}

static uint64_t wire(void)
{
	struct ps__filter_stats s;
	ps__filter_stats(&s);
	return s.req_bytes + s.reply_bytes;
}

/*
 * Host 0: the same work on a plain table and on a table with both
 * filters; everything pulled must be identical, and equal to what this
 * host computed.  Host 1 only serves.
 */
static int filters_main(void)
{
	int err;
	ps_world *w = ps_init_threads(THREADS, &err);
	if (!w)
		return node_fail("ps_init", err);
	if (ps_num_hosts(w) != 2 || ps_num_nodes(w) != 1)
		return node_fail("shape", PS_EMISMATCH);
	ps_table *t[2], *u[2];
	struct storm st = {0};
	ps_table_opts so;
	ps_table_opts_init(&so, K, VL);
	so.flags = PS_WIRE_KEYCACHE | PS_WIRE_COMPRESS;
	if (!(st.t = ps_table_create(w, &so, &err)))
		return node_fail("table", err);
	for (int f = 0; f < 2; f++) {
		ps_table_opts o;
		ps_table_opts_init(&o, K, VL);
		o.init = PS_INIT_UNIFORM; /* embeddings: pulled as they are */
		o.init_a = 0.5f;
		o.seed = 99;
		o.flags = f ? PS_WIRE_KEYCACHE | PS_WIRE_COMPRESS : 0;
		if (!(t[f] = ps_table_create(w, &o, &err)))
			return node_fail("table", err);
		ps_table_opts_init(&o, K, VL);
		o.init = PS_INIT_CONST;
		o.init_a = 1.0f;
		o.flags = f ? PS_WIRE_KEYCACHE | PS_WIRE_COMPRESS : 0;
		if (!(u[f] = ps_table_create(w, &o, &err)))
			return node_fail("table", err);
	}
	int rc = 0;
	if (ps_host_id(w) == 0) {
		ps_key *keys = malloc(sizeof(ps_key) * N);
		float *a = malloc(4ULL * N * VL), *b = malloc(4ULL * N * VL), *g = malloc(4ULL * N * VL);
		double *sum = calloc((size_t)N * VL, sizeof(double));
		for (size_t i = 0; i < N; i++)
			keys[i] = K / 2 + (i * 7919) % (K / 2); /* held by host 1 */
		/* 1. the same 4096 keys pulled again and again */
		uint64_t bytes[2][3];
		for (int f = 0; f < 2 && !rc; f++) {
			uint64_t w0 = wire();
			for (int r = 0; r < ROUNDS && !rc; r++) {
				rc = ps_pull_sync(t[f], keys, N, f ? b : a);
				if (!rc && f && memcmp(a, b, 4ULL * N * VL))
					rc = node_fail("pulled values differ from the plain table's", PS_EMISMATCH);
			}
			bytes[f][0] = wire() - w0;
		}
		/* 2. sparse gradients, 90% zeros, multiples of 1/64: exact sums */
		for (int f = 0; f < 2 && !rc; f++) {
			uint64_t w0 = wire();
			for (int r = 0; r < ROUNDS && !rc; r++) {
				fill_sparse(g, (size_t)N * VL, 1000 + (uint64_t)r, 90);
				rc = ps_push_sync(u[f], keys, N, g);
				for (size_t i = 0; f == 0 && i < (size_t)N * VL; i++)
					sum[i] += g[i];
			}
			bytes[f][1] = wire() - w0;
		}
		for (int f = 0; f < 2 && !rc; f++) {
			rc = ps_pull_sync(u[f], keys, N, a);
			for (size_t i = 0; !rc && i < (size_t)N * VL; i++)
				if ((double)a[i] != 1.0 + sum[i]) {
					printf("filters: key %llu [%zu]: %.9g, want %.9g\n",
					       (unsigned long long)keys[i / VL], i % VL, a[i], 1.0 + sum[i]);
					rc = node_fail(f ? "sum with filters" : "sum without filters", PS_EMISMATCH);
				}
		}
		/* 3. key lists that evict each other: 100 lists of 64 keys, each
		 * pushed in 3 cycles, more than either side keeps; misses are
		 * resent and sums stay exact */
		struct ps__filter_stats s0, s1;
		ps__filter_stats(&s0);
		for (int f = 0; f < 2 && !rc; f++) {
			for (int cyc = 0; cyc < 3 && !rc; cyc++)
				for (int l = 0; l < 100 && !rc; l++) {
					ps_key k[64];
					float one[64 * VL];
					for (int i = 0; i < 64; i++)
						k[i] = K / 2 + ((ps_key)l * 64 + (ps_key)i * 13) % (K / 2);
					for (int i = 0; i < 64 * VL; i++)
						one[i] = (i % 4) ? 0.0f : 0.25f;
					rc = ps_push_sync(u[f], k, 64, one);
				}
		}
		ps__filter_stats(&s1);
		if (!rc) {
			rc = ps_pull_sync(u[0], keys, N, a) ? 1 : ps_pull_sync(u[1], keys, N, b);
			if (rc || memcmp(a, b, 4ULL * N * VL))
				rc = node_fail("sums after evicting pushes differ", rc ? rc : PS_EMISMATCH);
		}
		if (!rc)
			printf("filters: values exact; keycache misses resent %llu, ids sent %llu, lists sent %llu\n",
			       (unsigned long long)(s1.kc_miss - s0.kc_miss), (unsigned long long)(s1.kc_ref - s0.kc_ref),
			       (unsigned long long)(s1.kc_def - s0.kc_def));
		if (!rc)
			printf("filters: wire bytes: pull plain %llu filtered %llu; sparse push plain %llu filtered %llu\n",
			       (unsigned long long)bytes[0][0], (unsigned long long)bytes[1][0],
			       (unsigned long long)bytes[0][1], (unsigned long long)bytes[1][1]);
		fflush(stdout);
		free(keys);
		free(a);
		free(b);
		free(g);
		free(sum);
	}
	/* host 1 starts the storm at once; host 0 after the phases above */
	int wrc = ps_run_workers(w, p4_worker, &st);
	if (!rc && (wrc || atomic_load(&st.rc)))
		rc = node_fail("storm", wrc ? wrc : atomic_load(&st.rc));
	fflush(stdout);
	int frc = ps_finalize(w);
	return rc ? rc : (frc ? node_fail("finalize", frc) : 0);
}

static unsigned long long field(const char *out, const char *label)
{
	const char *p = strstr(out, label);
	assert_non_null(p);
	return strtoull(p + strlen(label), NULL, 10);
}

static void test_two_hosts_with_both_filters_exact_values_fewer_bytes(void **state)
{
	(void)state;
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	const char *prog[] = {mh_self, "--node", "filters", NULL};
	struct mh_proc p[2];
	mh_run_hosts(2, 1, prog, p, 120);
	mh_show_failed(2, p);
	assert_int_equal(p[0].status, 0);
	assert_int_equal(p[1].status, 0);
	const char *out = mh_slurp(p[0].out);
	printf("%s", out);
	assert_non_null(strstr(out, "filters: values exact;"));
	assert_non_null(strstr(out, "filters: storm: every sum exact"));
	/* the miss path ran: lists evicted at the receiver were resent */
	assert_true(field(out, "keycache misses resent ") > 0);
	assert_true(field(out, "ids sent ") > 0);
	/* the repeated pull sends an id instead of 32 KiB of keys; the sparse
	 * push a tenth of its values or less (+ the bitmap) */
	const char *q = strstr(out, "pull plain ");
	unsigned long long pull_plain = strtoull(q + 11, NULL, 10);
	unsigned long long pull_filt = field(q, "filtered ");
	const char *s = strstr(out, "sparse push plain ");
	unsigned long long push_plain = strtoull(s + 18, NULL, 10);
	unsigned long long push_filt = field(s, "filtered ");
	assert_true(pull_plain > 0 && push_plain > 0);
	/* every REPLY counts, the large plain ones received straight into the
	 * rows too (direct_start): at least ROUNDS replies of N x VL floats,
	 * each with its frame and reply headers (24 + 8 bytes) */
	assert_true(pull_plain >= (unsigned long long)ROUNDS * (N * VL * 4ULL + PS__FRAME_HDR + PS__REPLY_HDR));
	assert_true(pull_filt < pull_plain);
	assert_true(pull_filt > 0);
	assert_true(push_filt * 4 < push_plain);
	mh_assert_clean(&segs);
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "filters") == 0)
		return filters_main();
	if (!self_exe(mh_self, sizeof mh_self))
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sparse_values_round_trip_zero_suppressed),
		cmocka_unit_test(test_repeated_values_round_trip_lz4_and_dense_ones_travel_raw),
		cmocka_unit_test(test_corrupt_blocks_are_refused),
		cmocka_unit_test(test_a_key_list_is_sent_once_then_by_id),
		cmocka_unit_test(test_evicted_id_misses_and_the_resend_carries_keys),
		cmocka_unit_test(test_both_filters_round_trip_a_push_and_a_reply),
		cmocka_unit_test(test_malformed_filtered_bodies_are_refused),
		cmocka_unit_test_setup_teardown(test_one_host_takes_the_flags_and_ignores_them, test_world_setup,
						test_world_teardown),
		cmocka_unit_test(test_two_hosts_with_both_filters_exact_values_fewer_bytes),
	};
	return cmocka_run_group_tests(tests, mh_setup, mh_teardown);
}
