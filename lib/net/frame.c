/*
 * frame.c - the bridge's frames: header and body codecs.  Pure functions
 * (no I/O, no allocation, no global state), so the fuzz target
 * (tests/fuzz/) can drive them directly.  The format is in bridge.h.
 *
 * Invariants
 *   - A parser never reads past the n (or len) bytes it was given, and
 *     never trusts a length before checking it against what it holds and
 *     against the limit.
 *   - Every malformed kind has its own code (PS_EFRAME_*); a caller closes
 *     the connection on any of them, having changed nothing.
 *   - Header errors are reported from the first bytes that show them, so a
 *     peer announcing a 4 GiB body is refused before anything is buffered.
 *   - Bodies are checked exactly: a body longer or shorter than its type
 *     and counts say is PS_EFRAME_BODY, as are counts that overflow.
 */
#include <string.h>

#include <zlib.h>

#include "frame.h"

bool ps__frame_type_known(unsigned type)
{
	return (type >= PS__F_HELLO && type <= PS__F_ABORT) || (type >= PS__F_PULL && type <= PS__F_MOVE_REPLY) ||
	       type == PS__F_CLOCK || type == PS__F_RPULL || type == PS__F_RPUSH || type == PS__F_CKPT ||
	       type == PS__F_BACKUP || type == PS__F_WELCOME || type == PS__F_SYNC || type == PS__F_READY ||
	       type == PS__F_LEAVE || type == PS__F_DATAFD;
}

static uint32_t frame_crc(const uint8_t *hdr, const uint8_t *body, uint32_t len)
{
	uLong c = crc32(0L, Z_NULL, 0);
	c = crc32(c, hdr, 6);       /* magic, version, type */
	c = crc32(c, hdr + 8, 4);   /* len */
	c = crc32(c, hdr + 16, 8);  /* req */
	/* zlib takes uInt lengths: the body limit keeps len far below 4 GiB */
	if (len)
		c = crc32(c, body, len);
	return (uint32_t)c;
}

long ps__frame_parse(const void *buf, size_t n, uint32_t max_body, unsigned crc, bool at_eof,
		     struct ps__frame *f)
{
	const uint8_t *p = buf;
	uint8_t magic[4];
	ps__put32(magic, PS__FRAME_MAGIC);
	size_t m = n < 4 ? n : 4;
	if (memcmp(p, magic, m) != 0)
		return PS_EFRAME_MAGIC;
	if (n > 4 && p[4] != PS__FRAME_VERSION)
		return PS_EFRAME_VERSION;
	if (n > 5 && (p[5] & PS__FRAME_NOCRC) && crc != PS__CRC_DATA)
		return PS_EFRAME_CRC; /* only a data connection may drop it */
	if (n > 5 && !ps__frame_type_known(p[5] & ~PS__FRAME_NOCRC))
		return PS_EFRAME_TYPE;
	uint32_t len = 0;
	if (n >= 12) {
		len = ps__get32(p + 8);
		if (len > max_body)
			return PS_EFRAME_SIZE;
	}
	if (n < PS__FRAME_HDR || n - PS__FRAME_HDR < len)
		return (at_eof && n > 0) ? PS_EFRAME_TRUNC : 0;
	bool check = crc == PS__CRC_CHECK || (crc == PS__CRC_DATA && !(p[5] & PS__FRAME_NOCRC));
	if (check && frame_crc(p, p + PS__FRAME_HDR, len) != ps__get32(p + 12))
		return PS_EFRAME_CRC;
	f->type = p[5] & ~PS__FRAME_NOCRC;
	f->host = ps__get16(p + 6);
	f->len = len;
	f->req = ps__get64(p + 16);
	f->body = p + PS__FRAME_HDR;
	return (long)(PS__FRAME_HDR + len);
}

void ps__frame_seal(uint8_t *frame, unsigned type, uint16_t host, uint64_t req, uint32_t len)
{
	ps__put32(frame, PS__FRAME_MAGIC);
	frame[4] = PS__FRAME_VERSION;
	frame[5] = (uint8_t)type;
	ps__put16(frame + 6, host);
	ps__put32(frame + 8, len);
	ps__put64(frame + 16, req);
	ps__put32(frame + 12, frame_crc(frame, frame + PS__FRAME_HDR, len));
}

void ps__frame_hdr_nocrc(uint8_t *hdr, unsigned type, uint16_t host, uint64_t req, uint32_t len)
{
	ps__put32(hdr, PS__FRAME_MAGIC);
	hdr[4] = PS__FRAME_VERSION;
	hdr[5] = (uint8_t)(type | PS__FRAME_NOCRC);
	ps__put16(hdr + 6, host);
	ps__put32(hdr + 8, len);
	ps__put32(hdr + 12, 0);
	ps__put64(hdr + 16, req);
}

void ps__frame_set_host(uint8_t *frame, uint16_t host)
{
	ps__put16(frame + 6, host);
}

/* ------------------------------------------------------------ bodies */

void ps__hello_enc(uint8_t *out, const struct ps__hello *m)
{
	ps__put16(out, m->rank);
	ps__put16(out + 2, m->hosts);
	memcpy(out + 4, m->nonce, PS__NONCE_BYTES);
	ps__put32(out + 4 + PS__NONCE_BYTES, m->chan);
}

int ps__hello_dec(const uint8_t *b, uint32_t len, struct ps__hello *m)
{
	if (len != PS__HELLO_SIZE)
		return PS_EFRAME_BODY;
	m->rank = ps__get16(b);
	m->hosts = ps__get16(b + 2);
	memcpy(m->nonce, b + 4, PS__NONCE_BYTES);
	m->chan = ps__get32(b + 4 + PS__NONCE_BYTES);
	if (m->chan > PS__MAX_NODES_WIRE)
		return PS_EFRAME_BODY;
	if (m->hosts < 2 || m->hosts > PS__MAX_HOSTS || m->rank >= m->hosts)
		return PS_EFRAME_BODY;
	return 0;
}

/* Copies a wire string of len bytes into out (cap bytes with the NUL),
 * unprintable bytes as '?': peers' text goes to our log as is. */
static void copy_text(char *out, size_t cap, const uint8_t *s, size_t len)
{
	size_t n = len < cap - 1 ? len : cap - 1;
	for (size_t i = 0; i < n; i++)
		out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? (char)s[i] : '?';
	out[n] = 0;
}

uint32_t ps__note_enc(uint8_t *out, int32_t code, const char *text)
{
	size_t n = strlen(text);
	if (n > PS__NOTE_MAX)
		n = PS__NOTE_MAX;
	ps__put32(out, (uint32_t)code);
	ps__put16(out + 4, (uint16_t)n);
	memcpy(out + 6, text, n);
	return (uint32_t)(6 + n);
}

int ps__note_dec(const uint8_t *b, uint32_t len, struct ps__note *m)
{
	if (len < 6)
		return PS_EFRAME_BODY;
	uint16_t n = ps__get16(b + 4);
	if (n > PS__NOTE_MAX || len != 6u + n)
		return PS_EFRAME_BODY;
	m->code = (int32_t)ps__get32(b);
	copy_text(m->text, sizeof m->text, b + 6, n);
	return 0;
}

/* A short string: u8 length, bytes (no NUL), at most cap - 1. */
static uint32_t put_str(uint8_t *out, const char *s, size_t cap)
{
	size_t n = strnlen(s, cap - 1);
	out[0] = (uint8_t)n;
	memcpy(out + 1, s, n);
	return (uint32_t)(1 + n);
}

/* Reads a short string at b[*at], within len; false if it does not fit. */
static bool get_str(const uint8_t *b, uint32_t len, uint32_t *at, char *out, size_t cap)
{
	if (*at >= len)
		return false;
	uint32_t n = b[*at];
	if (n > cap - 1 || len - *at - 1 < n)
		return false;
	copy_text(out, cap, b + *at + 1, n);
	*at += 1 + n;
	return true;
}

uint32_t ps__layout_enc(uint8_t *out, const struct ps__layout *m)
{
	ps__put32(out, m->abi);
	ps__put16(out + 4, m->rank);
	ps__put16(out + 6, m->hosts);
	ps__put32(out + 8, m->nodes);
	ps__put32(out + 12, m->threads);
	memcpy(out + 16, m->prog_hash, PS__HASH_BYTES);
	memcpy(out + 16 + PS__HASH_BYTES, m->psrun_hash, PS__HASH_BYTES);
	uint32_t at = 16 + 2 * PS__HASH_BYTES;
	ps__put16(out + at, m->port);
	at += 2;
	at += put_str(out + at, m->addr, sizeof m->addr);
	at += put_str(out + at, m->name, sizeof m->name);
	return at;
}

int ps__layout_dec(const uint8_t *b, uint32_t len, struct ps__layout *m)
{
	uint32_t at = 16 + 2 * PS__HASH_BYTES + 2;
	if (len < at)
		return PS_EFRAME_BODY;
	m->abi = ps__get32(b);
	m->rank = ps__get16(b + 4);
	m->hosts = ps__get16(b + 6);
	m->nodes = ps__get32(b + 8);
	m->threads = ps__get32(b + 12);
	memcpy(m->prog_hash, b + 16, PS__HASH_BYTES);
	memcpy(m->psrun_hash, b + 16 + PS__HASH_BYTES, PS__HASH_BYTES);
	m->port = ps__get16(b + at - 2);
	if (!get_str(b, len, &at, m->addr, sizeof m->addr) || !get_str(b, len, &at, m->name, sizeof m->name) ||
	    at != len)
		return PS_EFRAME_BODY;
	if (m->hosts < 2 || m->hosts > PS__MAX_HOSTS || m->rank >= m->hosts)
		return PS_EFRAME_BODY;
	return 0;
}

uint32_t ps__peers_size(int hosts)
{
	return 2 + (uint32_t)hosts * (2 + 1 + 63);
}

uint32_t ps__peers_enc(uint8_t *out, const struct ps__peer_addr *p, int hosts)
{
	ps__put16(out, (uint16_t)hosts);
	uint32_t at = 2;
	for (int i = 0; i < hosts; i++) {
		ps__put16(out + at, p[i].port);
		at += 2;
		at += put_str(out + at, p[i].addr, sizeof p[i].addr);
	}
	return at;
}

int ps__peers_dec(const uint8_t *b, uint32_t len, struct ps__peer_addr *p, int hosts)
{
	if (len < 2 || ps__get16(b) != hosts)
		return PS_EFRAME_BODY;
	uint32_t at = 2;
	for (int i = 0; i < hosts; i++) {
		if (len - at < 2)
			return PS_EFRAME_BODY;
		p[i].port = ps__get16(b + at);
		at += 2;
		if (!get_str(b, len, &at, p[i].addr, sizeof p[i].addr))
			return PS_EFRAME_BODY;
	}
	return at == len ? 0 : PS_EFRAME_BODY;
}

uint64_t ps__kv_size(bool push, uint32_t n, uint32_t value_len)
{
	uint64_t per = 8 + (push ? 4ULL * value_len : 0);
	return PS__KV_HDR + per * n;
}

void ps__kv_enc_hdr(uint8_t *out, const struct ps__kv_req *m)
{
	ps__put32(out, m->table);
	ps__put32(out + 4, m->value_len);
	ps__put64(out + 8, m->num_keys);
	ps__put32(out + 16, m->n);
	ps__put32(out + 20, m->flags);
}

int ps__kv_dec(const uint8_t *b, uint32_t len, bool push, struct ps__kv_req *m)
{
	if (len < PS__KV_HDR)
		return PS_EFRAME_BODY;
	m->table = ps__get32(b);
	m->value_len = ps__get32(b + 4);
	m->num_keys = ps__get64(b + 8);
	m->n = ps__get32(b + 16);
	m->flags = ps__get32(b + 20);
	m->kc_id = 0;
	m->zlen = 0;
	uint32_t known = PS__KV_KEYDEF | PS__KV_KEYREF | (push ? PS__KV_ASSIGN | PS__KV_ZVALS : 0u);
	if ((m->flags & ~known) != 0 || m->n == 0 || m->value_len == 0 || m->value_len > 65536 || m->num_keys == 0)
		return PS_EFRAME_BODY;
	/* 64-bit arithmetic: n < 2^32, 8 + 4 * 65536 < 2^19, no overflow */
	uint64_t plain = ps__kv_size(push, m->n, m->value_len);
	if (!(m->flags & PS__KV_WIRE)) {
		if (plain != len)
			return PS_EFRAME_BODY;
		m->keys = b + PS__KV_HDR;
		m->values = push ? m->keys + 8ULL * m->n : NULL;
		return 0;
	}
	/* a filtered body (filter.h): its plain form must fit a frame, which
	 * bounds what a decompression may write */
	bool def = m->flags & PS__KV_KEYDEF, ref = m->flags & PS__KV_KEYREF;
	uint64_t head = PS__KV_HDR + ((def || ref) ? 8 : 0), keys = ref ? 0 : 8ULL * m->n;
	if ((def && ref) || plain > PS__FRAME_MAX || len < head + keys)
		return PS_EFRAME_BODY;
	if (def || ref)
		m->kc_id = ps__get64(b + PS__KV_HDR);
	m->keys = ref ? NULL : b + head;
	m->values = push ? b + head + keys : NULL;
	uint64_t vlen = len - head - keys;
	if (m->flags & PS__KV_ZVALS) {
		if (vlen < PS__Z_HDR)
			return PS_EFRAME_BODY;
		m->zlen = (uint32_t)vlen;
	} else if (vlen != (push ? 4ULL * m->n * m->value_len : 0)) {
		return PS_EFRAME_BODY;
	}
	return 0;
}

void ps__reply_enc_hdr(uint8_t *out, int32_t status, uint32_t nvals)
{
	ps__put32(out, (uint32_t)status);
	ps__put32(out + 4, nvals);
}

int ps__reply_dec(const uint8_t *b, uint32_t len, struct ps__reply *m)
{
	if (len < PS__REPLY_HDR)
		return PS_EFRAME_BODY;
	m->status = (int32_t)ps__get32(b);
	m->nvals = ps__get32(b + 4);
	m->z = m->nvals & PS__REPLY_Z;
	m->nvals &= ~PS__REPLY_Z;
	m->zlen = m->z ? len - PS__REPLY_HDR : 0;
	m->vals = b + PS__REPLY_HDR;
	if (m->status > 0)
		return PS_EFRAME_BODY;
	/* a block (filter.h) stands for at most a frame of floats */
	if (m->z)
		return m->zlen >= PS__Z_HDR && m->nvals > 0 &&
				       PS__REPLY_HDR + 4ULL * m->nvals <= PS__FRAME_MAX
			       ? 0
			       : PS_EFRAME_BODY;
	return (uint64_t)PS__REPLY_HDR + 4ULL * m->nvals == len ? 0 : PS_EFRAME_BODY;
}

uint64_t ps__redirect_size(uint32_t n)
{
	return PS__REDIRECT_HDR + (uint64_t)PS__REDIRECT_ENTRY * n;
}

void ps__redirect_enc_hdr(uint8_t *out, uint32_t n)
{
	ps__put32(out, n);
	ps__put32(out + 4, 0); /* reserved, must be 0 */
}

void ps__redirect_put(uint8_t *out, uint32_t i, uint32_t idx, int32_t host, uint64_t key)
{
	uint8_t *e = out + PS__REDIRECT_HDR + (size_t)PS__REDIRECT_ENTRY * i;
	ps__put32(e, idx);
	ps__put32(e + 4, (uint32_t)host);
	ps__put64(e + 8, key);
}

void ps__redirect_get(const struct ps__redirect *m, uint32_t i, uint32_t *idx, int32_t *host, uint64_t *key)
{
	const uint8_t *e = m->e + (size_t)PS__REDIRECT_ENTRY * i;
	*idx = ps__get32(e);
	*host = (int32_t)ps__get32(e + 4);
	*key = ps__get64(e + 8);
}

/* req_keys_max: every index must be below it (the request's key count,
 * known to the requester; UINT32_MAX where unknown, e.g. in a bridge). */
int ps__redirect_dec(const uint8_t *b, uint32_t len, uint32_t req_keys_max, struct ps__redirect *m)
{
	if (len < PS__REDIRECT_HDR)
		return PS_EFRAME_BODY;
	m->n = ps__get32(b);
	if (m->n == 0 || ps__get32(b + 4) != 0 || ps__redirect_size(m->n) != len)
		return PS_EFRAME_BODY;
	m->e = b + PS__REDIRECT_HDR;
	for (uint32_t i = 0; i < m->n; i++) {
		uint32_t idx;
		int32_t host;
		uint64_t key;
		ps__redirect_get(m, i, &idx, &host, &key);
		if (idx >= req_keys_max || host < -1 || host >= PS__MAX_HOSTS)
			return PS_EFRAME_BODY;
	}
	return 0;
}

uint64_t ps__move_size(uint32_t n)
{
	return PS__MOVE_HDR + 8ULL * n;
}

void ps__move_enc_hdr(uint8_t *out, const struct ps__move_req *m)
{
	ps__put32(out, m->table);
	ps__put32(out + 4, m->op);
	ps__put32(out + 8, m->nf);
	ps__put32(out + 12, m->arg);
	ps__put64(out + 16, m->num_keys);
	ps__put32(out + 24, m->n);
	ps__put32(out + 28, 0); /* reserved, must be 0 */
}

int ps__move_dec(const uint8_t *b, uint32_t len, struct ps__move_req *m)
{
	if (len < PS__MOVE_HDR)
		return PS_EFRAME_BODY;
	m->table = ps__get32(b);
	m->op = ps__get32(b + 4);
	m->nf = ps__get32(b + 8);
	m->arg = ps__get32(b + 12);
	m->num_keys = ps__get64(b + 16);
	m->n = ps__get32(b + 24);
	if (m->op < PS__MV_LOCK || m->op > PS__MV_UNLOCK || m->nf == 0 || m->nf > 4 * 65536 ||
	    m->arg >= PS__MAX_HOSTS || m->num_keys == 0 || m->n == 0 || ps__get32(b + 28) != 0 ||
	    ps__move_size(m->n) != len)
		return PS_EFRAME_BODY;
	m->keys = b + PS__MOVE_HDR;
	return 0;
}

uint64_t ps__move_reply_size(uint32_t n, uint32_t nf, uint32_t ngiven)
{
	return PS__MOVE_REPLY_HDR + 8ULL * n + 4ULL * nf * ngiven;
}

void ps__move_reply_enc_hdr(uint8_t *out, int32_t status, uint32_t n, uint32_t nf, uint32_t ngiven)
{
	ps__put32(out, (uint32_t)status);
	ps__put32(out + 4, n);
	ps__put32(out + 8, nf);
	ps__put32(out + 12, ngiven);
}

int ps__move_reply_dec(const uint8_t *b, uint32_t len, struct ps__move_reply *m)
{
	if (len < PS__MOVE_REPLY_HDR)
		return PS_EFRAME_BODY;
	m->status = (int32_t)ps__get32(b);
	m->n = ps__get32(b + 4);
	m->nf = ps__get32(b + 8);
	m->ngiven = ps__get32(b + 12);
	/* a failed frame carries no entries; 64-bit sizes cannot overflow */
	if (m->status > 0 || m->ngiven > m->n || m->nf > 4 * 65536 || (m->status < 0 && m->n != 0) ||
	    ps__move_reply_size(m->n, m->nf, m->ngiven) != len)
		return PS_EFRAME_BODY;
	m->codes = b + PS__MOVE_REPLY_HDR;
	m->vals = m->codes + 8ULL * m->n;
	uint32_t given = 0;
	for (uint32_t i = 0; i < m->n; i++) {
		int32_t code = (int32_t)ps__get32(m->codes + 8ULL * i);
		int32_t host = (int32_t)ps__get32(m->codes + 8ULL * i + 4);
		if (code < PS__MV_DONE || code > PS__MV_BUSY || host < -1 || host >= PS__MAX_HOSTS)
			return PS_EFRAME_BODY;
		given += code == PS__MV_GIVEN;
	}
	return given == m->ngiven ? 0 : PS_EFRAME_BODY;
}

void ps__barrier_enc(uint8_t *out, const struct ps__barrier_msg *m)
{
	ps__put64(out, m->gen);
	ps__put64(out + 8, m->tag);
	ps__put32(out + 16, (uint32_t)m->status);
	ps__put32(out + 20, m->flags);
}

int ps__barrier_dec(const uint8_t *b, uint32_t len, struct ps__barrier_msg *m)
{
	if (len != PS__BARRIER_SIZE)
		return PS_EFRAME_BODY;
	m->gen = ps__get64(b);
	m->tag = ps__get64(b + 8);
	m->status = (int32_t)ps__get32(b + 16);
	m->flags = ps__get32(b + 20);
	if (m->gen == 0 || m->status > 0 || (m->flags & ~(PS__BAR_FINAL | PS__BAR_MIN)))
		return PS_EFRAME_BODY;
	return 0;
}

void ps__clock_enc(uint8_t *out, const struct ps__clock_msg *m)
{
	ps__put64(out, m->min);
	ps__put64(out + 8, m->cfg);
}

int ps__clock_dec(const uint8_t *b, uint32_t len, struct ps__clock_msg *m)
{
	if (len != PS__CLOCK_SIZE)
		return PS_EFRAME_BODY;
	m->min = ps__get64(b);
	m->cfg = ps__get64(b + 8);
	/* the bound word of psmem_int.h: (mode + 1) << 32 | s, s only for SSP */
	uint64_t mode = m->cfg >> 32, s = (uint32_t)m->cfg;
	if (mode < 1 || mode > 3 || s > PS_STALENESS_MAX || (mode != 2 && s != 0))
		return PS_EFRAME_BODY;
	return 0;
}

uint32_t ps__sync_enc(uint8_t *out, const struct ps__sync_msg *m)
{
	ps__put64(out, m->gen);
	ps__put64(out + 8, m->epoch);
	ps__put64(out + 16, m->clock);
	ps__put64(out + 24, m->cfg);
	ps__put32(out + 32, m->flags);
	ps__put32(out + 36, (uint32_t)m->status);
	ps__put16(out + 40, m->na);
	ps__put16(out + 42, m->nb);
	ps__put16(out + 44, m->nm);
	ps__put16(out + 46, 0);
	ps__put64(out + 48, m->tables);
	uint8_t *p = out + PS__SYNC_HDR;
	for (unsigned i = 0; i < m->na; i++, p += 2)
		ps__put16(p, m->a[i]);
	for (unsigned i = 0; i < m->nb; i++, p += 2)
		ps__put16(p, m->b[i]);
	for (unsigned i = 0; i < m->nm; i++, p += 18) {
		ps__put16(p, m->m[i].rank);
		ps__put64(p + 2, m->m[i].clock);
		ps__put64(p + 10, m->m[i].cfg);
	}
	return (uint32_t)(p - out);
}

int ps__sync_dec(const uint8_t *b, uint32_t len, struct ps__sync_msg *m)
{
	if (len < PS__SYNC_HDR)
		return PS_EFRAME_BODY;
	m->gen = ps__get64(b);
	m->epoch = ps__get64(b + 8);
	m->clock = ps__get64(b + 16);
	m->cfg = ps__get64(b + 24);
	m->flags = ps__get32(b + 32);
	m->status = (int32_t)ps__get32(b + 36);
	m->na = ps__get16(b + 40);
	m->nb = ps__get16(b + 42);
	m->nm = ps__get16(b + 44);
	m->tables = ps__get64(b + 48);
	if (m->gen == 0 || m->status > 0 || (m->flags & ~(PS__SYNC_LEAVE | PS__SYNC_RESULT)) || ps__get16(b + 46) ||
	    m->na > PS__ELASTIC_HOSTS || m->nb > PS__ELASTIC_HOSTS || m->nm > PS__ELASTIC_HOSTS ||
	    len != PS__SYNC_HDR + 2u * m->na + 2u * m->nb + 18u * m->nm)
		return PS_EFRAME_BODY;
	const uint8_t *p = b + PS__SYNC_HDR;
	for (unsigned i = 0; i < m->na; i++, p += 2)
		if ((m->a[i] = ps__get16(p)) >= PS__ELASTIC_HOSTS)
			return PS_EFRAME_BODY;
	for (unsigned i = 0; i < m->nb; i++, p += 2)
		if ((m->b[i] = ps__get16(p)) >= PS__ELASTIC_HOSTS)
			return PS_EFRAME_BODY;
	for (unsigned i = 0; i < m->nm; i++, p += 18) {
		m->m[i].rank = ps__get16(p);
		m->m[i].clock = ps__get64(p + 2);
		m->m[i].cfg = ps__get64(p + 10);
		if (m->m[i].rank >= PS__ELASTIC_HOSTS)
			return PS_EFRAME_BODY;
	}
	return 0;
}

uint32_t ps__welcome_enc(uint8_t *out, const struct ps__welcome *m)
{
	ps__put16(out, m->rank);
	ps__put16(out + 2, m->home);
	ps__put16(out + 4, m->n);
	uint8_t *p = out + 6;
	for (unsigned i = 0; i < m->n; i++, p += 69) {
		ps__put16(p, m->h[i].rank);
		p[2] = m->h[i].member;
		ps__put16(p + 3, m->h[i].a.port);
		memset(p + 5, 0, 64);
		memcpy(p + 5, m->h[i].a.addr, strnlen(m->h[i].a.addr, 63));
	}
	return (uint32_t)(p - out);
}

int ps__welcome_dec(const uint8_t *b, uint32_t len, struct ps__welcome *m)
{
	if (len < 6)
		return PS_EFRAME_BODY;
	m->rank = ps__get16(b);
	m->home = ps__get16(b + 2);
	m->n = ps__get16(b + 4);
	if (m->n > PS__ELASTIC_HOSTS || len != 6u + 69u * m->n || m->rank >= PS__JOIN_RANK || m->home < 2 ||
	    m->home > m->rank)
		return PS_EFRAME_BODY;
	const uint8_t *p = b + 6;
	for (unsigned i = 0; i < m->n; i++, p += 69) {
		m->h[i].rank = ps__get16(p);
		m->h[i].member = p[2];
		m->h[i].a.port = ps__get16(p + 3);
		memcpy(m->h[i].a.addr, p + 5, 64);
		if (m->h[i].rank >= PS__JOIN_RANK || m->h[i].member > 1 || memchr(p + 5, 0, 64) == NULL ||
		    m->h[i].a.port == 0)
			return PS_EFRAME_BODY;
	}
	return 0;
}
