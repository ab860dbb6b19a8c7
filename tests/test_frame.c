/*
 * test_frame.c - the bridge's frame codecs, job token and challenge-
 * response, as pure functions (no sockets, no processes).
 *
 * Every malformed kind must come back as its own code, and a parser must
 * ask for more bytes (0) rather than guess while a frame is incomplete.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "bridge.h"

static uint8_t buf[1 << 16];

/* A PULL frame of n keys 1000, 1001, ... of table 3 (shape 5000 x 4). */
static size_t make_pull(uint8_t *f, uint32_t n)
{
	struct ps__kv_req m = {.table = 3, .value_len = 4, .num_keys = 5000, .n = n};
	ps__kv_enc_hdr(f + PS__FRAME_HDR, &m);
	for (uint32_t i = 0; i < n; i++)
		ps__put64(f + PS__FRAME_HDR + PS__KV_HDR + 8 * i, 1000 + i);
	uint32_t len = (uint32_t)ps__kv_size(false, n, 4);
	ps__frame_seal(f, PS__F_PULL, 7, 0x0102030405060708ULL, len);
	return PS__FRAME_HDR + len;
}

/* ------------------------------------------------------------ headers */

static void test_frame_round_trip_keeps_every_field(void **state)
{
	(void)state;
	size_t sz = make_pull(buf, 3);
	struct ps__frame f;
	assert_int_equal(ps__frame_parse(buf, sz, PS__FRAME_MAX, true, false, &f), (long)sz);
	assert_int_equal(f.type, PS__F_PULL);
	assert_int_equal(f.host, 7);
	assert_int_equal(f.req, 0x0102030405060708ULL);
	assert_int_equal(f.len, sz - PS__FRAME_HDR);
	struct ps__kv_req m;
	assert_int_equal(ps__kv_dec(f.body, f.len, false, &m), 0);
	assert_int_equal(m.table, 3);
	assert_int_equal(m.value_len, 4);
	assert_int_equal(m.num_keys, 5000);
	assert_int_equal(m.n, 3);
	assert_int_equal(ps__get64(m.keys + 16), 1002);
	assert_null(m.values);
}

static void test_every_prefix_asks_for_more_and_is_truncated_at_eof(void **state)
{
	(void)state;
	size_t sz = make_pull(buf, 5);
	struct ps__frame f;
	for (size_t n = 0; n < sz; n++) {
		assert_int_equal(ps__frame_parse(buf, n, PS__FRAME_MAX, true, false, &f), 0);
		assert_int_equal(ps__frame_parse(buf, n, PS__FRAME_MAX, true, true, &f), n ? PS_EFRAME_TRUNC : 0);
	}
}

static void test_two_frames_back_to_back_parse_one_at_a_time(void **state)
{
	(void)state;
	size_t a = make_pull(buf, 2);
	size_t b = make_pull(buf + a, 9);
	struct ps__frame f;
	assert_int_equal(ps__frame_parse(buf, a + b, PS__FRAME_MAX, true, false, &f), (long)a);
	assert_int_equal(ps__frame_parse(buf + a, b, PS__FRAME_MAX, true, false, &f), (long)b);
	struct ps__kv_req m;
	assert_int_equal(ps__kv_dec(f.body, f.len, false, &m), 0);
	assert_int_equal(m.n, 9);
}

static void test_bad_magic_is_refused_from_its_first_byte(void **state)
{
	(void)state;
	size_t sz = make_pull(buf, 1);
	struct ps__frame f;
	buf[0] = 'G'; /* "GET / HTTP/1.1" reaching the port */
	assert_int_equal(ps__frame_parse(buf, 1, PS__FRAME_MAX, true, false, &f), PS_EFRAME_MAGIC);
	assert_int_equal(ps__frame_parse(buf, sz, PS__FRAME_MAX, true, false, &f), PS_EFRAME_MAGIC);
	make_pull(buf, 1);
	buf[3] ^= 1;
	assert_int_equal(ps__frame_parse(buf, 4, PS__FRAME_MAX, true, false, &f), PS_EFRAME_MAGIC);
}

static void test_other_version_is_refused(void **state)
{
	(void)state;
	make_pull(buf, 1);
	buf[4] = PS__FRAME_VERSION + 1;
	struct ps__frame f;
	assert_int_equal(ps__frame_parse(buf, 5, PS__FRAME_MAX, true, false, &f), PS_EFRAME_VERSION);
}

static void test_unknown_types_are_refused(void **state)
{
	(void)state;
	const unsigned bad[] = {0, 9, 15, 24, 26, 31, 99, 127};
	struct ps__frame f;
	assert_true(ps__frame_type_known(PS__F_CKPT));
	assert_true(ps__frame_type_known(PS__F_BACKUP));
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		make_pull(buf, 1);
		buf[5] = (uint8_t)bad[i];
		assert_int_equal(ps__frame_parse(buf, 6, PS__FRAME_MAX, true, false, &f), PS_EFRAME_TYPE);
		/* with the no-checksum bit, on a data connection: still unknown */
		buf[5] = (uint8_t)(bad[i] | PS__FRAME_NOCRC);
		assert_int_equal(ps__frame_parse(buf, 6, PS__FRAME_MAX, PS__CRC_DATA, false, &f), PS_EFRAME_TYPE);
	}
}

/* The replication frames (27, 28) parse, and carry PULL/PUSH bodies. */
static void test_replication_frames_are_known_and_carry_kv_bodies(void **state)
{
	(void)state;
	const unsigned types[] = {PS__F_RPULL, PS__F_RPUSH};
	assert_int_equal(PS__F_RPULL, 27);
	assert_int_equal(PS__F_RPUSH, 28);
	for (size_t i = 0; i < 2; i++) {
		make_pull(buf, 1);
		uint32_t len = ps__get32(buf + 8);
		ps__frame_seal(buf, types[i], 7, 0x0102030405060708ULL, len);
		struct ps__frame f;
		assert_int_equal(ps__frame_parse(buf, PS__FRAME_HDR + len, PS__FRAME_MAX, true, false, &f),
				 (long)(PS__FRAME_HDR + len));
		assert_int_equal(f.type, types[i]);
		assert_true(ps__frame_type_known(types[i]));
		struct ps__kv_req m;
		/* a pull's body: an RPULL's, but short of an RPUSH's updates */
		assert_int_equal(ps__kv_dec(f.body, f.len, types[i] == PS__F_RPUSH, &m),
				 types[i] == PS__F_RPULL ? 0 : PS_EFRAME_BODY);
	}
}

static void test_oversized_frame_is_refused_before_its_body_arrives(void **state)
{
	(void)state;
	make_pull(buf, 1);
	ps__put32(buf + 8, PS__FRAME_MAX + 1);
	struct ps__frame f;
	/* 12 bytes are enough to know: nothing of the 16 MiB is buffered */
	assert_int_equal(ps__frame_parse(buf, 12, PS__FRAME_MAX, true, false, &f), PS_EFRAME_SIZE);
	ps__put32(buf + 8, 0xffffffffu);
	assert_int_equal(ps__frame_parse(buf, 12, PS__FRAME_MAX, true, false, &f), PS_EFRAME_SIZE);
	/* the small pre-authentication limit applies to the same frame */
	size_t sz = make_pull(buf, 100);
	assert_int_equal(ps__frame_parse(buf, sz, PS__FRAME_MAX_AUTH, true, false, &f), PS_EFRAME_SIZE);
}

static void test_checksum_covers_body_and_header_but_not_routing(void **state)
{
	(void)state;
	struct ps__frame f;
	size_t sz = make_pull(buf, 4);
	buf[sz - 1] ^= 0x40; /* a key's bit */
	assert_int_equal(ps__frame_parse(buf, sz, PS__FRAME_MAX, true, false, &f), PS_EFRAME_CRC);
	/* unchecked on a trusted link: the same bytes parse */
	assert_int_equal(ps__frame_parse(buf, sz, PS__FRAME_MAX, false, false, &f), (long)sz);
	make_pull(buf, 4);
	buf[16] ^= 1; /* request id */
	assert_int_equal(ps__frame_parse(buf, sz, PS__FRAME_MAX, true, false, &f), PS_EFRAME_CRC);
	make_pull(buf, 4);
	buf[12] ^= 1; /* the checksum itself */
	assert_int_equal(ps__frame_parse(buf, sz, PS__FRAME_MAX, true, false, &f), PS_EFRAME_CRC);
	make_pull(buf, 4);
	ps__frame_set_host(buf, 42); /* a bridge re-routes without resealing */
	assert_int_equal(ps__frame_parse(buf, sz, PS__FRAME_MAX, true, false, &f), (long)sz);
	assert_int_equal(f.host, 42);
}

/* ------------------------------------------------------------ bodies */

/* A frame without checksum (PS__FRAME_NOCRC, built by ps__frame_hdr_nocrc
 * in front of a separate body) parses only on a data connection, from its
 * type byte on; elsewhere it is PS_EFRAME_CRC.  On a data connection a
 * frame with a checksum is still checked. */
static void test_frame_without_checksum_is_taken_only_on_data_connections(void **state)
{
	(void)state;
	struct ps__frame f;
	size_t sz = make_pull(buf, 4);
	ps__frame_hdr_nocrc(buf, PS__F_PULL, 7, 0x0102030405060708ULL, (uint32_t)(sz - PS__FRAME_HDR));
	assert_int_equal(buf[5], PS__F_PULL | PS__FRAME_NOCRC);
	assert_int_equal(ps__get32(buf + 12), 0);
	assert_int_equal(ps__frame_parse(buf, sz, PS__FRAME_MAX, PS__CRC_DATA, false, &f), (long)sz);
	assert_int_equal(f.type, PS__F_PULL); /* the flag is not part of the type */
	assert_int_equal(f.host, 7);
	assert_int_equal(f.req, 0x0102030405060708ULL);
	buf[sz - 1] ^= 0x40; /* unchecked: TCP's checksum is the one */
	assert_int_equal(ps__frame_parse(buf, sz, PS__FRAME_MAX, PS__CRC_DATA, false, &f), (long)sz);
	/* a bridge connection (checked) and a node's link (unchecked) refuse
	 * it as soon as the type byte is in */
	for (size_t n = 6; n <= sz; n += sz - 6) {
		assert_int_equal(ps__frame_parse(buf, n, PS__FRAME_MAX, PS__CRC_CHECK, false, &f), PS_EFRAME_CRC);
		assert_int_equal(ps__frame_parse(buf, n, PS__FRAME_MAX, PS__CRC_SKIP, false, &f), PS_EFRAME_CRC);
	}
	/* a sealed frame on a data connection: checked */
	sz = make_pull(buf, 4);
	assert_int_equal(ps__frame_parse(buf, sz, PS__FRAME_MAX, PS__CRC_DATA, false, &f), (long)sz);
	buf[sz - 1] ^= 0x40;
	assert_int_equal(ps__frame_parse(buf, sz, PS__FRAME_MAX, PS__CRC_DATA, false, &f), PS_EFRAME_CRC);
}

static void test_kv_bodies_must_match_their_counts_exactly(void **state)
{
	(void)state;
	uint8_t *b = buf + PS__FRAME_HDR;
	struct ps__kv_req m = {.table = 0, .value_len = 3, .num_keys = 10, .n = 2};
	ps__kv_enc_hdr(b, &m);
	uint32_t pull = (uint32_t)ps__kv_size(false, 2, 3), push = (uint32_t)ps__kv_size(true, 2, 3);
	assert_int_equal(pull, PS__KV_HDR + 16);
	assert_int_equal(push, PS__KV_HDR + 16 + 24);
	struct ps__kv_req d;
	assert_int_equal(ps__kv_dec(b, pull, false, &d), 0);
	assert_int_equal(ps__kv_dec(b, push, true, &d), 0);
	assert_ptr_equal(d.values, b + PS__KV_HDR + 16);
	assert_int_equal(ps__kv_dec(b, pull - 1, false, &d), PS_EFRAME_BODY);
	assert_int_equal(ps__kv_dec(b, pull + 8, false, &d), PS_EFRAME_BODY);
	assert_int_equal(ps__kv_dec(b, pull, true, &d), PS_EFRAME_BODY);
	assert_int_equal(ps__kv_dec(b, PS__KV_HDR - 1, false, &d), PS_EFRAME_BODY);
	/* a count that would overflow a 32-bit size: still exact, still refused */
	ps__put32(b + 16, 0x20000000u);
	assert_int_equal(ps__kv_dec(b, pull, false, &d), PS_EFRAME_BODY);
	ps__kv_enc_hdr(b, &m);
	ps__put32(b + 20, 1); /* reserved */
	assert_int_equal(ps__kv_dec(b, pull, false, &d), PS_EFRAME_BODY);
	m.value_len = 0;
	ps__kv_enc_hdr(b, &m);
	assert_int_equal(ps__kv_dec(b, PS__KV_HDR + 16, false, &d), PS_EFRAME_BODY);
	m.value_len = 3;
	m.n = 0;
	ps__kv_enc_hdr(b, &m);
	assert_int_equal(ps__kv_dec(b, PS__KV_HDR, false, &d), PS_EFRAME_BODY);
}

static void test_reply_barrier_hello_note_bodies(void **state)
{
	(void)state;
	uint8_t *b = buf;
	struct ps__reply r;
	ps__reply_enc_hdr(b, -5, 2);
	assert_int_equal(ps__reply_dec(b, PS__REPLY_HDR + 8, &r), 0);
	assert_int_equal(r.status, -5);
	assert_int_equal(r.nvals, 2);
	assert_int_equal(ps__reply_dec(b, PS__REPLY_HDR + 4, &r), PS_EFRAME_BODY);
	ps__reply_enc_hdr(b, 1, 0); /* statuses are 0 or negative */
	assert_int_equal(ps__reply_dec(b, PS__REPLY_HDR, &r), PS_EFRAME_BODY);

	struct ps__barrier_msg bm = {.gen = 9, .tag = 77, .status = PS_EMISMATCH, .flags = PS__BAR_FINAL}, bd;
	ps__barrier_enc(b, &bm);
	assert_int_equal(ps__barrier_dec(b, PS__BARRIER_SIZE, &bd), 0);
	assert_memory_equal(&bm, &bd, sizeof bm);
	assert_int_equal(ps__barrier_dec(b, PS__BARRIER_SIZE - 1, &bd), PS_EFRAME_BODY);
	bm.flags = PS__BAR_MIN;
	ps__barrier_enc(b, &bm);
	assert_int_equal(ps__barrier_dec(b, PS__BARRIER_SIZE, &bd), 0);
	assert_int_equal(bd.flags, PS__BAR_MIN);
	bm.flags = 4;
	ps__barrier_enc(b, &bm);
	assert_int_equal(ps__barrier_dec(b, PS__BARRIER_SIZE, &bd), PS_EFRAME_BODY);
	bm.flags = 0;
	bm.gen = 0;
	ps__barrier_enc(b, &bm);
	assert_int_equal(ps__barrier_dec(b, PS__BARRIER_SIZE, &bd), PS_EFRAME_BODY);

	struct ps__hello h = {.rank = 1, .hosts = 3, .chan = 5}, hd;
	memset(h.nonce, 0xab, sizeof h.nonce);
	ps__hello_enc(b, &h);
	assert_int_equal(ps__hello_dec(b, PS__HELLO_SIZE, &hd), 0);
	assert_memory_equal(&h, &hd, sizeof h);
	assert_int_equal(hd.chan, 5); /* node 4's data connection */
	assert_int_equal(ps__hello_dec(b, PS__HELLO_SIZE + 1, &hd), PS_EFRAME_BODY);
	h.chan = PS__MAX_NODES_WIRE + 1; /* no such node */
	ps__hello_enc(b, &h);
	assert_int_equal(ps__hello_dec(b, PS__HELLO_SIZE, &hd), PS_EFRAME_BODY);
	h.chan = 0;
	h.rank = 3; /* rank outside the job */
	ps__hello_enc(b, &h);
	assert_int_equal(ps__hello_dec(b, PS__HELLO_SIZE, &hd), PS_EFRAME_BODY);

	struct ps__note n;
	uint32_t len = ps__note_enc(b, PS_EAUTH, "wrong\ntoken\x01");
	assert_int_equal(ps__note_dec(b, len, &n), 0);
	assert_int_equal(n.code, PS_EAUTH);
	assert_string_equal(n.text, "wrong?token?"); /* a peer's text is made printable */
	assert_int_equal(ps__note_dec(b, len - 1, &n), PS_EFRAME_BODY);
	ps__put16(b + 4, PS__NOTE_MAX + 1);
	assert_int_equal(ps__note_dec(b, 6 + PS__NOTE_MAX + 1, &n), PS_EFRAME_BODY);
}

static void test_redirect_and_move_bodies_round_trip_and_refuse_bad_counts(void **state)
{
	(void)state;
	uint8_t b[256];
	/* REDIRECT */
	ps__redirect_enc_hdr(b, 2);
	ps__redirect_put(b, 0, 3, 1, 77);
	ps__redirect_put(b, 1, 0, -1, 78);
	uint32_t len = (uint32_t)ps__redirect_size(2);
	assert_int_equal(len, 40);
	struct ps__redirect rd;
	assert_int_equal(ps__redirect_dec(b, len, 4, &rd), 0);
	uint32_t idx;
	int32_t host;
	uint64_t key;
	ps__redirect_get(&rd, 1, &idx, &host, &key);
	assert_true(idx == 0 && host == -1 && key == 78);
	assert_int_equal(ps__redirect_dec(b, len, 3, &rd), PS_EFRAME_BODY);     /* index 3 of 3 keys */
	assert_int_equal(ps__redirect_dec(b, len - 1, 4, &rd), PS_EFRAME_BODY); /* short */
	ps__redirect_put(b, 0, 3, -2, 77);
	assert_int_equal(ps__redirect_dec(b, len, 4, &rd), PS_EFRAME_BODY);     /* host -2 */
	/* MOVE */
	struct ps__move_req q = {.table = 1, .op = PS__MV_GIVE, .nf = 5, .arg = 2, .num_keys = 100, .n = 2}, mq;
	ps__move_enc_hdr(b, &q);
	ps__put64(b + PS__MOVE_HDR, 9);
	ps__put64(b + PS__MOVE_HDR + 8, 10);
	len = (uint32_t)ps__move_size(2);
	assert_int_equal(ps__move_dec(b, len, &mq), 0);
	assert_true(mq.table == 1 && mq.op == PS__MV_GIVE && mq.nf == 5 && mq.arg == 2 && mq.num_keys == 100 &&
		    mq.n == 2 && ps__get64(mq.keys + 8) == 10);
	assert_int_equal(ps__move_dec(b, len + 8, &mq), PS_EFRAME_BODY);
	q.op = 5;
	ps__move_enc_hdr(b, &q);
	assert_int_equal(ps__move_dec(b, len, &mq), PS_EFRAME_BODY); /* unknown op */
	q.op = PS__MV_SET;
	q.arg = PS__MAX_HOSTS;
	ps__move_enc_hdr(b, &q);
	assert_int_equal(ps__move_dec(b, len, &mq), PS_EFRAME_BODY); /* no such host */
	/* MOVE_REPLY: 2 keys, one given with 2 floats */
	ps__move_reply_enc_hdr(b, 0, 2, 2, 1);
	ps__put32(b + 16, PS__MV_GIVEN);
	ps__put32(b + 20, 0);
	ps__put32(b + 24, PS__MV_BUSY);
	ps__put32(b + 28, (uint32_t)-1);
	len = (uint32_t)ps__move_reply_size(2, 2, 1);
	assert_int_equal(len, 40);
	struct ps__move_reply mr;
	assert_int_equal(ps__move_reply_dec(b, len, &mr), 0);
	assert_true(mr.n == 2 && mr.nf == 2 && mr.ngiven == 1 && mr.vals == b + 32);
	ps__put32(b + 24, PS__MV_GIVEN); /* two given, one value */
	assert_int_equal(ps__move_reply_dec(b, len, &mr), PS_EFRAME_BODY);
	ps__put32(b + 24, 7); /* unknown code */
	assert_int_equal(ps__move_reply_dec(b, len, &mr), PS_EFRAME_BODY);
	ps__move_reply_enc_hdr(b, PS_EMISMATCH, 0, 0, 0); /* a failed frame, no entries */
	assert_int_equal(ps__move_reply_dec(b, PS__MOVE_REPLY_HDR, &mr), 0);
	assert_int_equal(mr.status, PS_EMISMATCH);
	/* PUSH may say ASSIGN, PULL may not */
	struct ps__kv_req kv = {.table = 0, .value_len = 1, .num_keys = 10, .n = 1, .flags = PS__KV_ASSIGN}, kd;
	ps__kv_enc_hdr(b, &kv);
	memset(b + PS__KV_HDR, 0, 12);
	assert_int_equal(ps__kv_dec(b, (uint32_t)ps__kv_size(true, 1, 1), true, &kd), 0);
	assert_int_equal(kd.flags, PS__KV_ASSIGN);
	assert_int_equal(ps__kv_dec(b, (uint32_t)ps__kv_size(false, 1, 1), false, &kd), PS_EFRAME_BODY);
}

static void test_clock_body_round_trip_and_bound_word_checked(void **state)
{
	(void)state;
	uint8_t *b = buf;
	struct ps__clock_msg m = {.min = 123456789012ULL, .cfg = (2ULL << 32) | 7}, d; /* ssp:7 */
	ps__clock_enc(b, &m);
	assert_int_equal(ps__clock_dec(b, PS__CLOCK_SIZE, &d), 0);
	assert_true(d.min == m.min && d.cfg == m.cfg);
	assert_int_equal(ps__clock_dec(b, PS__CLOCK_SIZE - 1, &d), PS_EFRAME_BODY);
	assert_int_equal(ps__clock_dec(b, PS__CLOCK_SIZE + 1, &d), PS_EFRAME_BODY);
	const uint64_t bad[] = {0, 4ULL << 32, (1ULL << 32) | 1 /* bsp with s */, (3ULL << 32) | 2 /* asp with s */,
				(2ULL << 32) | (PS_STALENESS_MAX + 1)};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		m.cfg = bad[i];
		ps__clock_enc(b, &m);
		assert_int_equal(ps__clock_dec(b, PS__CLOCK_SIZE, &d), PS_EFRAME_BODY);
	}
	/* a whole CLOCK frame parses with its type */
	m.cfg = 1ULL << 32; /* bsp */
	ps__clock_enc(buf + PS__FRAME_HDR, &m);
	ps__frame_seal(buf, PS__F_CLOCK, 2, 0, PS__CLOCK_SIZE);
	struct ps__frame f;
	assert_int_equal(ps__frame_parse(buf, PS__FRAME_HDR + PS__CLOCK_SIZE, PS__FRAME_MAX, true, false, &f),
			 PS__FRAME_HDR + PS__CLOCK_SIZE);
	assert_int_equal(f.type, PS__F_CLOCK);
	assert_int_equal(f.host, 2);
	assert_int_equal(ps__clock_dec(f.body, f.len, &d), 0);
	assert_true(d.min == 123456789012ULL && d.cfg == 1ULL << 32);
}

/* Elastic jobs' bodies (bridge.c EL1-EL8): SYNC and WELCOME round-trip,
 * and every count, rank and flag out of range is PS_EFRAME_BODY. */
static void test_sync_and_welcome_bodies_round_trip_and_refuse_bad_fields(void **state)
{
	(void)state;
	static uint8_t b[PS__SYNC_MAX > PS__WELCOME_MAX ? PS__SYNC_MAX : PS__WELCOME_MAX];
	struct ps__sync_msg m = {.gen = 9, .epoch = 4, .clock = 7, .cfg = 1ULL << 32, .tables = 0xabc,
				 .flags = PS__SYNC_RESULT, .na = 1, .nb = 1, .nm = 2};
	m.a[0] = 2;
	m.b[0] = 1;
	m.m[0] = (struct ps__sync_member){0, 7, 1ULL << 32};
	m.m[1] = (struct ps__sync_member){2, 7, 0};
	uint32_t len = ps__sync_enc(b, &m);
	assert_int_equal(len, PS__SYNC_HDR + 2 + 2 + 2 * 18);
	struct ps__sync_msg d;
	assert_int_equal(ps__sync_dec(b, len, &d), 0);
	assert_int_equal(d.gen, 9);
	assert_int_equal(d.epoch, 4);
	assert_int_equal(d.tables, 0xabc);
	assert_int_equal(d.a[0], 2);
	assert_int_equal(d.b[0], 1);
	assert_int_equal(d.m[1].rank, 2);
	assert_int_equal(d.m[0].cfg, 1ULL << 32);
	assert_int_equal(ps__sync_dec(b, len - 1, &d), PS_EFRAME_BODY); /* short */
	assert_int_equal(ps__sync_dec(b, PS__SYNC_HDR - 1, &d), PS_EFRAME_BODY);
	b[32] = 0x80; /* an unknown flag */
	assert_int_equal(ps__sync_dec(b, len, &d), PS_EFRAME_BODY);
	len = ps__sync_enc(b, &m);
	b[PS__SYNC_HDR] = (uint8_t)PS__ELASTIC_HOSTS; /* a rank past the ranks */
	assert_int_equal(ps__sync_dec(b, len, &d), PS_EFRAME_BODY);
	len = ps__sync_enc(b, &m);
	b[0] = 0, b[1] = 0, b[2] = 0, b[3] = 0, b[4] = 0, b[5] = 0, b[6] = 0, b[7] = 0; /* generation 0 */
	assert_int_equal(ps__sync_dec(b, len, &d), PS_EFRAME_BODY);

	struct ps__welcome w = {.rank = 3, .home = 2, .n = 2};
	w.h[0] = (struct ps__welcome_host){.rank = 0, .member = 1, .a = {.port = 4000, .addr = "127.0.0.1"}};
	w.h[1] = (struct ps__welcome_host){.rank = 2, .member = 0, .a = {.port = 4001, .addr = "::1"}};
	len = ps__welcome_enc(b, &w);
	struct ps__welcome x;
	assert_int_equal(ps__welcome_dec(b, len, &x), 0);
	assert_int_equal(x.rank, 3);
	assert_int_equal(x.home, 2);
	assert_int_equal(x.n, 2);
	assert_string_equal(x.h[1].a.addr, "::1");
	assert_int_equal(x.h[1].member, 0);
	assert_int_equal(ps__welcome_dec(b, len - 1, &x), PS_EFRAME_BODY);
	w.rank = 1; /* a joiner's rank is never an initial host's */
	len = ps__welcome_enc(b, &w);
	assert_int_equal(ps__welcome_dec(b, len, &x), PS_EFRAME_BODY);
	w.rank = (uint16_t)PS__JOIN_RANK; /* nor the joiners' placeholder */
	len = ps__welcome_enc(b, &w);
	assert_int_equal(ps__welcome_dec(b, len, &x), PS_EFRAME_BODY);
	w.rank = 3;
	len = ps__welcome_enc(b, &w);
	b[6 + 69 + 2] = 2; /* member is 0 or 1 */
	assert_int_equal(ps__welcome_dec(b, len, &x), PS_EFRAME_BODY);
	/* the new types are known, numbered apart from the others */
	assert_true(ps__frame_type_known(PS__F_WELCOME) && ps__frame_type_known(PS__F_SYNC) &&
		    ps__frame_type_known(PS__F_READY) && ps__frame_type_known(PS__F_LEAVE) &&
		    ps__frame_type_known(PS__F_DATAFD));
}

static void test_layout_and_peers_round_trip_and_refuse_truncation(void **state)
{
	(void)state;
	struct ps__layout l = {.abi = 1, .rank = 2, .hosts = 3, .nodes = 2, .threads = 4, .port = 4567};
	memset(l.prog_hash, 1, sizeof l.prog_hash);
	memset(l.psrun_hash, 2, sizeof l.psrun_hash);
	strcpy(l.addr, "10.1.2.3");
	strcpy(l.name, "node17");
	uint32_t len = ps__layout_enc(buf, &l);
	assert_true(len <= PS__LAYOUT_MAX);
	struct ps__layout d;
	assert_int_equal(ps__layout_dec(buf, len, &d), 0);
	assert_int_equal(d.abi, 1);
	assert_int_equal(d.rank, 2);
	assert_int_equal(d.hosts, 3);
	assert_int_equal(d.nodes, 2);
	assert_int_equal(d.threads, 4);
	assert_int_equal(d.port, 4567);
	assert_memory_equal(d.prog_hash, l.prog_hash, PS__HASH_BYTES);
	assert_memory_equal(d.psrun_hash, l.psrun_hash, PS__HASH_BYTES);
	assert_string_equal(d.addr, "10.1.2.3");
	assert_string_equal(d.name, "node17");
	for (uint32_t cut = 0; cut < len; cut++)
		assert_int_equal(ps__layout_dec(buf, cut, &d), PS_EFRAME_BODY);
	assert_int_equal(ps__layout_dec(buf, len + 1, &d), PS_EFRAME_BODY);

	struct ps__peer_addr p[3] = {{1000, "10.0.0.1"}, {2000, "::1"}, {3000, "host-c"}}, q[3];
	len = ps__peers_enc(buf, p, 3);
	assert_true(len <= ps__peers_size(3));
	assert_int_equal(ps__peers_dec(buf, len, q, 3), 0);
	assert_int_equal(q[1].port, 2000);
	assert_string_equal(q[2].addr, "host-c");
	assert_int_equal(ps__peers_dec(buf, len, q, 2), PS_EFRAME_BODY);
	assert_int_equal(ps__peers_dec(buf, len - 1, q, 3), PS_EFRAME_BODY);
}

/* ---------------------------------------------------- token and auth */

static const char hex64[] = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";

static void test_token_text_must_be_64_hex_digits(void **state)
{
	(void)state;
	struct ps__token t;
	assert_int_equal(ps__token_parse(hex64, &t), 0);
	assert_int_equal(t.k[1], 0x11);
	assert_int_equal(t.k[31], 0xff);
	char s[80];
	snprintf(s, sizeof s, "%s\n", hex64);
	assert_int_equal(ps__token_parse(s, &t), 0);
	assert_int_equal(ps__token_parse("abcd", &t), PS_ETOKEN);
	snprintf(s, sizeof s, "%sx", hex64);
	assert_int_equal(ps__token_parse(s, &t), PS_ETOKEN);
	snprintf(s, sizeof s, "%s", hex64);
	s[10] = 'g';
	assert_int_equal(ps__token_parse(s, &t), PS_ETOKEN);
	assert_int_equal(ps__token_parse("", &t), PS_ETOKEN);
}

static char tmpdir[64];

static const char *tmp_path(const char *name)
{
	static char p[128];
	snprintf(p, sizeof p, "%s/%s", tmpdir, name);
	return p;
}

static int make_tmpdir(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/psmem-test-frame-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmpdir(void **state)
{
	(void)state;
	const char *names[] = {"tok", "loose", "link", "garbage"};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		unlink(tmp_path(names[i]));
	return rmdir(tmpdir);
}

static void test_token_file_is_written_private_and_read_back(void **state)
{
	(void)state;
	struct ps__token a, b, c;
	assert_int_equal(ps__token_generate(&a), 0);
	assert_int_equal(ps__token_generate(&c), 0);
	assert_memory_not_equal(a.k, c.k, sizeof a.k);
	assert_int_equal(ps__token_write(tmp_path("tok"), &a), 0);
	struct stat st;
	assert_int_equal(stat(tmp_path("tok"), &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	char why[256];
	assert_int_equal(ps__token_load(tmp_path("tok"), &b, why, sizeof why), 0);
	assert_memory_equal(a.k, b.k, sizeof a.k);
	/* never overwrites an existing file */
	assert_int_equal(ps__token_write(tmp_path("tok"), &c), -EEXIST);
}

static void test_token_file_readable_by_others_is_refused_with_reason(void **state)
{
	(void)state;
	struct ps__token t;
	char why[256];
	int fd = open(tmp_path("loose"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, hex64, 64), 64);
	close(fd);
	chmod(tmp_path("loose"), 0644);
	memset(&t, 0x5a, sizeof t);
	assert_int_equal(ps__token_load(tmp_path("loose"), &t, why, sizeof why), PS_ETOKENPERM);
	assert_non_null(strstr(why, "0644"));
	assert_non_null(strstr(why, "chmod 600"));
	assert_int_equal(t.k[0], 0x5a); /* nothing was read */
	chmod(tmp_path("loose"), 0640);
	assert_int_equal(ps__token_load(tmp_path("loose"), &t, why, sizeof why), PS_ETOKENPERM);
	chmod(tmp_path("loose"), 0600);
	assert_int_equal(ps__token_load(tmp_path("loose"), &t, why, sizeof why), 0);
	/* a symbolic link to a good file is not followed */
	char target[128];
	snprintf(target, sizeof target, "%s", tmp_path("loose"));
	assert_int_equal(symlink(target, tmp_path("link")), 0);
	assert_int_equal(ps__token_load(tmp_path("link"), &t, why, sizeof why), -ELOOP);
	assert_int_equal(ps__token_load(tmpdir, &t, why, sizeof why), PS_ETOKENPERM);
	assert_int_equal(ps__token_load(tmp_path("missing"), &t, why, sizeof why), -ENOENT);
	fd = open(tmp_path("garbage"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_int_equal(write(fd, "not a token\n", 12), 12);
	close(fd);
	assert_int_equal(ps__token_load(tmp_path("garbage"), &t, why, sizeof why), PS_ETOKEN);
}

static void test_challenge_response_accepts_the_token_and_rejects_others(void **state)
{
	(void)state;
	struct ps__token good, wrong;
	ps__token_parse(hex64, &good);
	wrong = good;
	wrong.k[31] ^= 1; /* one bit off */
	uint8_t nc[PS__NONCE_BYTES], ns[PS__NONCE_BYTES], mac[PS__MAC_BYTES];
	ps__auth_nonce(nc);
	ps__auth_nonce(ns);
	assert_memory_not_equal(nc, ns, sizeof nc);
	/* host 1 connected to host 0 and answers host 0's nonce */
	ps__auth_mac(&good, 'C', ns, nc, 1, 0, mac);
	assert_int_equal(ps__auth_verify(&good, 'C', ns, nc, 1, 0, mac), 0);
	assert_int_equal(ps__auth_verify(&wrong, 'C', ns, nc, 1, 0, mac), PS_EAUTH);
	ps__auth_mac(&wrong, 'C', ns, nc, 1, 0, mac);
	assert_int_equal(ps__auth_verify(&good, 'C', ns, nc, 1, 0, mac), PS_EAUTH);
	/* the answer binds role, both nonces and both ranks */
	ps__auth_mac(&good, 'C', ns, nc, 1, 0, mac);
	assert_int_equal(ps__auth_verify(&good, 'S', ns, nc, 1, 0, mac), PS_EAUTH);
	assert_int_equal(ps__auth_verify(&good, 'C', nc, ns, 1, 0, mac), PS_EAUTH);
	assert_int_equal(ps__auth_verify(&good, 'C', ns, nc, 2, 0, mac), PS_EAUTH);
	assert_int_equal(ps__auth_verify(&good, 'C', ns, nc, 1, 3, mac), PS_EAUTH);
	/* a fresh challenge voids an old answer (no replay) */
	uint8_t ns2[PS__NONCE_BYTES];
	ps__auth_nonce(ns2);
	assert_int_equal(ps__auth_verify(&good, 'C', ns2, nc, 1, 0, mac), PS_EAUTH);
}

static void test_bridge_codes_have_names(void **state)
{
	(void)state;
	assert_string_equal(ps_strerror(PS_EFRAME_CRC), "frame checksum mismatch");
	assert_string_equal(ps_strerror(PS_EAUTH), "peer failed authentication (wrong job token)");
	assert_int_equal(PS_ELAST, PS_EEXITED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frame_round_trip_keeps_every_field),
		cmocka_unit_test(test_every_prefix_asks_for_more_and_is_truncated_at_eof),
		cmocka_unit_test(test_two_frames_back_to_back_parse_one_at_a_time),
		cmocka_unit_test(test_bad_magic_is_refused_from_its_first_byte),
		cmocka_unit_test(test_other_version_is_refused),
		cmocka_unit_test(test_unknown_types_are_refused),
		cmocka_unit_test(test_replication_frames_are_known_and_carry_kv_bodies),
		cmocka_unit_test(test_oversized_frame_is_refused_before_its_body_arrives),
		cmocka_unit_test(test_checksum_covers_body_and_header_but_not_routing),
		cmocka_unit_test(test_frame_without_checksum_is_taken_only_on_data_connections),
		cmocka_unit_test(test_kv_bodies_must_match_their_counts_exactly),
		cmocka_unit_test(test_reply_barrier_hello_note_bodies),
		cmocka_unit_test(test_redirect_and_move_bodies_round_trip_and_refuse_bad_counts),
		cmocka_unit_test(test_clock_body_round_trip_and_bound_word_checked),
		cmocka_unit_test(test_layout_and_peers_round_trip_and_refuse_truncation),
		cmocka_unit_test(test_sync_and_welcome_bodies_round_trip_and_refuse_bad_fields),
		cmocka_unit_test(test_token_text_must_be_64_hex_digits),
		cmocka_unit_test_setup_teardown(test_token_file_is_written_private_and_read_back, make_tmpdir,
						remove_tmpdir),
		cmocka_unit_test_setup_teardown(test_token_file_readable_by_others_is_refused_with_reason,
						make_tmpdir, remove_tmpdir),
		cmocka_unit_test(test_challenge_response_accepts_the_token_and_rejects_others),
		cmocka_unit_test(test_bridge_codes_have_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
