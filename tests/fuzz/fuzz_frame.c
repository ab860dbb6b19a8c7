/*
 * fuzz_frame.c - libFuzzer target for the bridge's frame parser and body
 * decoders (lib/frame.c).  The input is a byte stream as a connection
 * would deliver it: frames are parsed one after the other, with both size
 * limits, with and without the checksum (without, mutated bodies reach the
 * body decoders), as a data connection (frames flagged PS__FRAME_NOCRC
 * unchecked, others checked), and every frame's body goes to the decoder
 * of its type.
 * Built with clang -fsanitize=fuzzer,address,undefined (see the Makefile);
 * run briefly by tests/test_fuzz.c over the committed corpus in corpus/frame.
 * The wire filters' forms (filter.h: key-list ids, compressed values) go
 * through lib/net/filter.c's block decoder.
 */
#include <stdint.h>
#include <stddef.h>
#include <string.h>

#include "bridge.h"
#include "filter.h"

static volatile uint64_t sink;

static void touch(const uint8_t *p, size_t n)
{
	uint64_t s = 0;
	for (size_t i = 0; i < n; i++)
		s += p[i];
	sink += s;
}

/* A compressed block decodes into exactly raw bytes or fails cleanly;
 * raw is at most a frame (frame.c checked it). */
static void unblock(const uint8_t *b, uint32_t blen, uint64_t raw)
{
	static uint8_t out[PS__FRAME_MAX];
	if (raw <= sizeof out && ps__z_decompress(b, blen, out, (uint32_t)raw) == 0)
		touch(out, raw);
}

static void decode_body(const struct ps__frame *f)
{
	static struct ps__peer_addr peers[PS__MAX_HOSTS];
	union {
		struct ps__hello h;
		struct ps__note n;
		struct ps__layout l;
		struct ps__kv_req kv;
		struct ps__reply r;
		struct ps__barrier_msg b;
		struct ps__redirect rd;
		struct ps__move_req mv;
		struct ps__move_reply mr;
		struct ps__clock_msg c;
	} m;
	switch (f->type) {
	case PS__F_HELLO:
		ps__hello_dec(f->body, f->len, &m.h);
		break;
	case PS__F_REFUSE:
	case PS__F_ABORT:
		if (ps__note_dec(f->body, f->len, &m.n) == 0)
			touch((const uint8_t *)m.n.text, strlen(m.n.text));
		break;
	case PS__F_LAYOUT:
		ps__layout_dec(f->body, f->len, &m.l);
		break;
	case PS__F_PEERS:
		if (f->len >= 2 && ps__get16(f->body) <= PS__MAX_HOSTS)
			ps__peers_dec(f->body, f->len, peers, ps__get16(f->body));
		break;
	case PS__F_PULL:
	case PS__F_PUSH:
		if (ps__kv_dec(f->body, f->len, f->type == PS__F_PUSH, &m.kv) == 0) {
			if (m.kv.keys) /* KEYREF: an id instead */
				touch(m.kv.keys, 8ULL * m.kv.n);
			if (m.kv.values && (m.kv.flags & PS__KV_ZVALS))
				unblock(m.kv.values, m.kv.zlen, 4ULL * m.kv.n * m.kv.value_len);
			else if (m.kv.values)
				touch(m.kv.values, 4ULL * m.kv.n * m.kv.value_len);
		}
		break;
	case PS__F_REPLY:
		if (ps__reply_dec(f->body, f->len, &m.r) == 0) {
			if (m.r.z)
				unblock(m.r.vals, m.r.zlen, 4ULL * m.r.nvals);
			else
				touch(m.r.vals, 4ULL * m.r.nvals);
		}
		break;
	case PS__F_BARRIER:
	case PS__F_RELEASE:
		ps__barrier_dec(f->body, f->len, &m.b);
		break;
	case PS__F_REDIRECT:
		if (ps__redirect_dec(f->body, f->len, UINT32_MAX, &m.rd) == 0)
			for (uint32_t i = 0; i < m.rd.n; i++) {
				uint32_t idx;
				int32_t host;
				uint64_t key;
				ps__redirect_get(&m.rd, i, &idx, &host, &key);
				sink += idx + (uint64_t)host + key;
			}
		break;
	case PS__F_MOVE:
		if (ps__move_dec(f->body, f->len, &m.mv) == 0)
			touch(m.mv.keys, 8ULL * m.mv.n);
		break;
	case PS__F_MOVE_REPLY:
		if (ps__move_reply_dec(f->body, f->len, &m.mr) == 0)
			touch(m.mr.vals, 4ULL * m.mr.nf * m.mr.ngiven);
	case PS__F_CLOCK:
		ps__clock_dec(f->body, f->len, &m.c);
		break;
	default:
		touch(f->body, f->len);
		break;
	}
}

static void parse_stream(const uint8_t *data, size_t size, uint32_t limit, unsigned crc)
{
	size_t at = 0;
	while (at < size) {
		struct ps__frame f;
		long r = ps__frame_parse(data + at, size - at, limit, crc, true, &f);
		if (r <= 0)
			return;
		decode_body(&f);
		at += (size_t)r;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	parse_stream(data, size, PS__FRAME_MAX_AUTH, PS__CRC_CHECK);
	parse_stream(data, size, PS__FRAME_MAX, PS__CRC_CHECK);
	parse_stream(data, size, PS__FRAME_MAX, PS__CRC_SKIP);
	parse_stream(data, size, PS__FRAME_MAX, PS__CRC_DATA);
	return 0;
}
