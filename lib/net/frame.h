/* PRIVATE to libpsmem, psrun and the tests: frame.h - the multi-host
 * bridge's frames (frame.c, pure codecs), spoken by the node's link
 * (net/bridge_link.c) and by psrun (launch/).  Not installed; applications
 * include only psmem.h.
 *
 * Wire format: little-endian; every frame is a 24-byte header and a body.
 *
 *   0  u32 magic    PS__FRAME_MAGIC ("PSBF")
 *   4  u8  version  PS__FRAME_VERSION
 *   5  u8  type     enum ps__ftype; bit 0x80 (PS__FRAME_NOCRC): no checksum,
 *                   crc is 0 - accepted only on a node-to-node data
 *                   connection, where TCP's own checksum is the only one
 *   6  u16 host     routing: on a node's link, the destination host (node to
 *                   bridge) or the source host (bridge to node); on a TCP
 *                   connection, the sender's host rank (checked against the
 *                   connection)
 *   8  u32 len      body bytes (<= the receiver's limit)
 *  12  u32 crc      zlib crc32 of header bytes [0,6) [8,12) [16,24) and the
 *                   body: everything but itself and the routing field, so a
 *                   bridge re-routes a frame without touching its body
 *  16  u64 req      request id, echoed by the reply
 */
#ifndef PSMEM_NET_FRAME_H
#define PSMEM_NET_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "psmem.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the bridge's wire format is little-endian; big-endian hosts are not supported"
#endif

/* ----------------------------------------------------------------- frames */

#define PS__FRAME_MAGIC    0x46425350u /* bytes 'P' 'S' 'B' 'F' */
#define PS__FRAME_VERSION  1u
#define PS__FRAME_HDR      24u
#define PS__FRAME_NOCRC    0x80u       /* in the type byte: see the header above */
#define PS__FRAME_MAX      (16u << 20) /* body limit of data frames */
#define PS__FRAME_MAX_AUTH 512u        /* body limit before authentication */
#define PS__NOTE_MAX        1024u       /* text of REFUSE / ABORT */
/* Code of an ABORT(host) from the bridge to a node: the host was dropped
 * under --on-host-failure continue, the job goes on (bridge.c) */
#define PS__GONE_LOST       1
#define PS__MAX_HOSTS      1024
#define PS__HASH_BYTES     32
#define PS__NONCE_BYTES    32
#define PS__MAC_BYTES      32

enum ps__ftype {
	PS__F_HELLO = 1,     /* rank, host count, nonce: opens a handshake */
	PS__F_AUTH = 2,      /* HMAC answering the peer's nonce */
	PS__F_REFUSE = 3,    /* code + text: the peer is refused, then closed */
	PS__F_LAYOUT = 4,    /* host -> coordinator: what runs there, bridge address */
	PS__F_PEERS = 5,     /* coordinator -> hosts: every host's bridge address */
	PS__F_HEARTBEAT = 6, /* empty: "still here" */
	PS__F_BYE = 7,       /* status: this host's nodes are done, orderly close */
	PS__F_ABORT = 8,     /* code + text: this host failed, stop the job */
	PS__F_WELCOME = 40,   /* coordinator -> joiner: its rank and the hosts to connect to */
	PS__F_PULL = 16,     /* keys -> REPLY with their values */
	PS__F_PUSH = 17,     /* keys + updates -> REPLY with a status */
	PS__F_REPLY = 18,    /* status (+ values for a pull) */
	PS__F_BARRIER = 19,  /* generation + tag: a node (or host) arrived */
	PS__F_RELEASE = 20,  /* generation + status: the barrier completed */
	PS__F_REDIRECT = 21, /* before a REPLY: keys of the request not held here */
	PS__F_MOVE = 22,     /* a step of moving keys across hosts (migrate.c) */
	PS__F_MOVE_REPLY = 23, /* per-key outcome of a MOVE (+ values given) */
	/* 24: reserved for key moves */
	PS__F_CLOCK = 25,    /* slowest clock + bound of the host in the routing field */
	/* 26: reserved for clocks */
	/* hot-spot replication across hosts (replica.c): as PULL/PUSH (same
	 * bodies, REPLY answers) but on the key's primary copy at its holder,
	 * also when the holder replicates the key itself */
	PS__F_RPULL = 27,    /* keys -> REPLY with the primaries' totals */
	PS__F_RPUSH = 28,    /* keys + merged deltas -> REPLY with a status */
	PS__F_CKPT = 29,     /* note (code 0, text = path): a checkpoint asked for on
			      * the sending host (node 0 -> bridge -> every peer's
			      * node 0), sent before the poll's barrier over hosts */
	PS__F_BACKUP = 30,   /* keys + values (a PUSH body): a backup round of the
			      * sending node's keys, no answer (backup.c BK1) */
	/* elastic jobs (bridge.c EL1-EL8): */
	PS__F_SYNC = 41,     /* a ps_sync_hosts arrival (node -> bridge, host ->
			      * host) or its result (bridge -> nodes, -> joiners) */
	PS__F_READY = 42,    /* joiner -> hosts: connected, in its first
			      * ps_sync_hosts: list me as pending; body: u64
			      * hash of its tables (EL2) */
	PS__F_LEAVE = 43,    /* empty: the host in the routing field is asked to
			      * leave (psstat --leave, forwarded by a bridge) */
	PS__F_DATAFD = 44,   /* bridge -> node, u16 host: the descriptor passed
			      * with it (SCM_RIGHTS) is node i's data connection
			      * to a joiner (EL1) */
};

struct ps__frame {
	uint8_t type;
	uint16_t host;
	uint32_t len;
	uint64_t req;
	const uint8_t *body; /* points into the parsed buffer */
};

/* True for the types above. */
bool ps__frame_type_known(unsigned type);

/* What the parser does with checksums (its crc argument; false and true
 * are the first two, as before):
 *   PS__CRC_SKIP   a node's link (a Unix socket inside one host; the bridge
 *                  checked what came from the network): not checked;
 *   PS__CRC_CHECK  a bridge's TCP connection: checked;
 *   PS__CRC_DATA   a node-to-node data connection: frames flagged
 *                  PS__FRAME_NOCRC are taken unchecked, others checked.
 * A frame flagged PS__FRAME_NOCRC is PS_EFRAME_CRC in the first two modes,
 * from the type byte on: only a data connection may drop the checksum. */
enum { PS__CRC_SKIP = 0, PS__CRC_CHECK = 1, PS__CRC_DATA = 2 };

/*
 * Parses the frame at the start of buf[0..n).  Returns its total size
 * (header + body) when it is complete and valid; 0 when more bytes are
 * needed; or a negative code: PS_EFRAME_MAGIC, _VERSION, _TYPE, _SIZE (body
 * over max_body), _CRC (checksum wrong, or missing outside PS__CRC_DATA),
 * or _TRUNC when at_eof and a partial frame is buffered.  Header errors are
 * reported as soon as the bytes that carry them arrive, before the body is
 * buffered.  f->type is the type without the NOCRC bit.  Pure.
 */
long ps__frame_parse(const void *buf, size_t n, uint32_t max_body, unsigned crc, bool at_eof,
		     struct ps__frame *f);

/* Writes the header of a frame whose body (len bytes) already sits at
 * frame + PS__FRAME_HDR, checksum included. */
void ps__frame_seal(uint8_t *frame, unsigned type, uint16_t host, uint64_t req, uint32_t len);

/* Writes the header of a frame without checksum (PS__FRAME_NOCRC, crc 0)
 * into hdr[0..PS__FRAME_HDR): the body need not follow it in memory (the
 * data connections send header and body with one sendmsg). */
void ps__frame_hdr_nocrc(uint8_t *hdr, unsigned type, uint16_t host, uint64_t req, uint32_t len);

/* Rewrites the routing field of a sealed frame (not covered by the crc). */
void ps__frame_set_host(uint8_t *frame, uint16_t host);

/* Bodies.  Encoders write into out (room for the size they return, see
 * ps__*_size); decoders check the body exactly and return 0 or
 * PS_EFRAME_BODY, never reading past len. */
struct ps__hello {
	uint16_t rank, hosts;
	uint8_t nonce[PS__NONCE_BYTES];
	/* what the connection is for (the connector's word; the acceptor
	 * echoes it): 0 the bridges' connection, 1 + i the data connection
	 * of node i of both hosts (rendezvous.c) */
	uint32_t chan;
};
#define PS__HELLO_SIZE (8 + PS__NONCE_BYTES)
#define PS__CHAN_BRIDGE 0u
#define PS__MAX_NODES_WIRE 64u /* PS__MAX_NODES (segment.h): chan <= this */
void ps__hello_enc(uint8_t *out, const struct ps__hello *m);
int ps__hello_dec(const uint8_t *b, uint32_t len, struct ps__hello *m);

/* REFUSE and ABORT: a code and a text (not NUL-terminated on the wire). */
struct ps__note {
	int32_t code;
	char text[PS__NOTE_MAX + 1]; /* NUL-terminated, unprintable bytes as '?' */
};
uint32_t ps__note_enc(uint8_t *out, int32_t code, const char *text); /* out: 6 + PS__NOTE_MAX */
int ps__note_dec(const uint8_t *b, uint32_t len, struct ps__note *m);

struct ps__layout {
	uint32_t abi;
	uint16_t rank, hosts;
	uint32_t nodes, threads;
	uint8_t prog_hash[PS__HASH_BYTES];  /* the program the nodes run */
	uint8_t psrun_hash[PS__HASH_BYTES]; /* psrun itself (bridge protocol) */
	uint16_t port;                      /* this host's bridge listener */
	char addr[64];                      /* numeric address of the listener */
	char name[64];                      /* host name, for messages */
};
#define PS__LAYOUT_MAX (16 + 2 * PS__HASH_BYTES + 2 + 1 + 63 + 1 + 63)
uint32_t ps__layout_enc(uint8_t *out, const struct ps__layout *m);
int ps__layout_dec(const uint8_t *b, uint32_t len, struct ps__layout *m);

struct ps__peer_addr {
	uint16_t port;
	char addr[64];
};
/* PEERS: one address per host rank, hosts of them. */
uint32_t ps__peers_size(int hosts);
uint32_t ps__peers_enc(uint8_t *out, const struct ps__peer_addr *p, int hosts);
int ps__peers_dec(const uint8_t *b, uint32_t len, struct ps__peer_addr *p, int hosts);

/* PULL and PUSH: the table's identity and shape travel with the keys, so a
 * host whose table differs answers PS_EMISMATCH instead of guessing. */
struct ps__kv_req {
	uint32_t table, value_len;
	uint64_t num_keys;
	uint32_t n;               /* keys in the frame, >= 1 */
	uint32_t flags;           /* PUSH: PS__KV_ASSIGN or 0; PULL: 0; + PS__KV_WIRE bits */
	const uint8_t *keys;      /* n x u64 (unaligned: use ps__get64); NULL for KEYREF */
	const uint8_t *values;    /* PUSH: n x value_len floats (ZVALS: a block); PULL: NULL */
	uint64_t kc_id;           /* KEYDEF/KEYREF: the list's id */
	uint32_t zlen;            /* ZVALS: bytes of the block at values */
};
#define PS__KV_HDR 24u
#define PS__KV_ASSIGN 1u          /* store the values (ps_assign_sync), not the rule */
/* Wire filters (filter.h): an id then the keys / only the id / compressed
 * values.  Only PULL and PUSH carry them (link_serve.c refuses them on
 * RPULL/RPUSH); DEF and REF exclude each other. */
#define PS__KV_KEYDEF 0x10u
#define PS__KV_KEYREF 0x20u
#define PS__KV_ZVALS  0x40u
#define PS__KV_WIRE   (PS__KV_KEYDEF | PS__KV_KEYREF | PS__KV_ZVALS)
/* Body size of a request of n keys (64-bit: no overflow for any n). */
uint64_t ps__kv_size(bool push, uint32_t n, uint32_t value_len);
/* Writes the fixed part; the caller appends the keys (and values). */
void ps__kv_enc_hdr(uint8_t *out, const struct ps__kv_req *m);
int ps__kv_dec(const uint8_t *b, uint32_t len, bool push, struct ps__kv_req *m);

struct ps__reply {
	int32_t status;
	uint32_t nvals;           /* floats that follow (a pull's values) */
	const uint8_t *vals;      /* z: a compressed block of zlen bytes (filter.h) */
	bool z;
	uint32_t zlen;
};
#define PS__REPLY_HDR 8u
#define PS__REPLY_Z 0x80000000u   /* in nvals on the wire: the values are a block */
#define PS__Z_HDR 4u              /* a block's header: u8 method, 3 bytes 0 (filter.h) */
void ps__reply_enc_hdr(uint8_t *out, int32_t status, uint32_t nvals);
int ps__reply_dec(const uint8_t *b, uint32_t len, struct ps__reply *m);

/*
 * REDIRECT: sent by the executing node just before the REPLY of a PULL or
 * PUSH (same request id) when some keys are not held here: they were not
 * pulled or pushed, and the requester sends them again.  Entry i: index of
 * the key in the request, the host to ask (-1: the key is moving, ask its
 * home again after a pause), the key itself.
 */
struct ps__redirect {
	uint32_t n;               /* >= 1 */
	const uint8_t *e;         /* n x {u32 idx, i32 host, u64 key} */
};
#define PS__REDIRECT_HDR 8u
#define PS__REDIRECT_ENTRY 16u
uint64_t ps__redirect_size(uint32_t n);
void ps__redirect_enc_hdr(uint8_t *out, uint32_t n);
void ps__redirect_put(uint8_t *out, uint32_t i, uint32_t idx, int32_t host, uint64_t key);
void ps__redirect_get(const struct ps__redirect *m, uint32_t i, uint32_t *idx, int32_t *host, uint64_t *key);
int ps__redirect_dec(const uint8_t *b, uint32_t len, uint32_t req_keys_max, struct ps__redirect *m);

/* MOVE: one step of the protocol of a moving key (migrate.c) for n keys
 * of one table; nf = floats that travel per key (values + rule state). */
enum ps__move_op {
	PS__MV_LOCK = 1,   /* at the home: lock the directory entry for host arg */
	PS__MV_GIVE = 2,   /* at the holder: give the value up to host arg */
	PS__MV_SET = 3,    /* at the home: the key is at host arg now */
	PS__MV_UNLOCK = 4, /* at the home: the move failed, back to the holder */
};
struct ps__move_req {
	uint32_t table, op, nf, arg;
	uint64_t num_keys;
	uint32_t n;               /* >= 1 */
	const uint8_t *keys;      /* n x u64 */
};
#define PS__MOVE_HDR 32u
uint64_t ps__move_size(uint32_t n);
void ps__move_enc_hdr(uint8_t *out, const struct ps__move_req *m);
int ps__move_dec(const uint8_t *b, uint32_t len, struct ps__move_req *m);

/* MOVE_REPLY: a status for the frame, then per key {code, host}, then nf
 * floats for each key whose code is PS__MV_GIVEN, in key order. */
enum ps__move_code {
	PS__MV_DONE = 0,   /* LOCK/SET/UNLOCK done (LOCK: host = the holder) */
	PS__MV_GIVEN = 1,  /* the value follows; the sender no longer holds it */
	PS__MV_BUSY = 2,   /* not moved now (moving already, replicated, ...) */
};
struct ps__move_reply {
	int32_t status;
	uint32_t n, nf, ngiven;
	const uint8_t *codes;     /* n x {i32 code, i32 host} */
	const uint8_t *vals;      /* ngiven x nf floats */
};
#define PS__MOVE_REPLY_HDR 16u
uint64_t ps__move_reply_size(uint32_t n, uint32_t nf, uint32_t ngiven);
void ps__move_reply_enc_hdr(uint8_t *out, int32_t status, uint32_t n, uint32_t nf, uint32_t ngiven);
int ps__move_reply_dec(const uint8_t *b, uint32_t len, struct ps__move_reply *m);

struct ps__barrier_msg {
	uint64_t gen;             /* barrier generation, from 1 */
	uint64_t tag;             /* what the participants agree on (a shape hash) */
	int32_t status;           /* RELEASE: 0 or the reason it failed */
	uint32_t flags;           /* PS__BAR_FINAL: the node leaves after it */
};
#define PS__BARRIER_SIZE 24u
#define PS__BAR_FINAL 0x1u
/* PS__BAR_MIN: the participants need not agree on the tag; the RELEASE
 * carries the minimum of every node's tag on every host (a broadcast or an
 * all-reduce of 64 bits; checkpoint.c).  Every participant of a generation
 * sets it, or PS_EMISMATCH. */
#define PS__BAR_MIN   0x2u
void ps__barrier_enc(uint8_t *out, const struct ps__barrier_msg *m);
int ps__barrier_dec(const uint8_t *b, uint32_t len, struct ps__barrier_msg *m);

/* CLOCK: a host's slowest worker clock and its bound word (clock.c).  On a
 * node's link to the bridge the routing field is the sender's own rank;
 * the bridge sends it to every peer, which gives it to every local node. */
struct ps__clock_msg {
	uint64_t min;             /* slowest clock over the host's workers */
	uint64_t cfg;             /* bound word, ps__clock_cfg(mode, s): nonzero */
};
#define PS__CLOCK_SIZE 16u
void ps__clock_enc(uint8_t *out, const struct ps__clock_msg *m);
int ps__clock_dec(const uint8_t *b, uint32_t len, struct ps__clock_msg *m);

/*
 * SYNC: the membership agreement of elastic jobs (bridge.c EL1-EL8).
 * Arrival (flags without PS__SYNC_RESULT): node -> its bridge (na = nb =
 * nm = 0), then host -> every member host: generation, the app's epoch
 * (compared like a barrier's tag), the host's slowest clock and bound,
 * PS__SYNC_LEAVE if the host asks to leave, a[0..na) the joiners it holds
 * pending.  Result (PS__SYNC_RESULT): bridge -> its nodes (before the
 * RELEASE) and -> each admitted joiner: a = admitted, b = leaving, m =
 * members after the agreement with their clocks and bounds.
 */
#define PS__ELASTIC_HOSTS 64u   /* host ranks of an elastic job (joiners included) */
#define PS__JOIN_RANK (PS__ELASTIC_HOSTS - 1u) /* a joiner's HELLO before it has a rank */
#define PS__SYNC_LEAVE  0x1u
#define PS__SYNC_RESULT 0x2u
struct ps__sync_member {
	uint16_t rank;
	uint64_t clock, cfg;
};
struct ps__sync_msg {
	uint64_t gen, epoch, clock, cfg;
	uint64_t tables;          /* arrival: a hash of the node's tables' tags (EL2) */
	uint32_t flags;
	int32_t status;
	uint16_t na, nb, nm;
	uint16_t a[PS__ELASTIC_HOSTS], b[PS__ELASTIC_HOSTS];
	struct ps__sync_member m[PS__ELASTIC_HOSTS];
};
#define PS__SYNC_HDR 56u
#define PS__SYNC_MAX (PS__SYNC_HDR + PS__ELASTIC_HOSTS * (2 + 2 + 18))
uint32_t ps__sync_enc(uint8_t *out, const struct ps__sync_msg *m); /* out: PS__SYNC_MAX */
int ps__sync_dec(const uint8_t *b, uint32_t len, struct ps__sync_msg *m);

/* WELCOME: coordinator -> joiner after its layout was checked. */
struct ps__welcome_host {
	uint16_t rank;
	uint8_t member;           /* 1 member, 0 a joiner still pending */
	struct ps__peer_addr a;
};
struct ps__welcome {
	uint16_t rank;            /* the joiner's rank (never reused) */
	uint16_t home;            /* the job's initial host count (key homes) */
	uint16_t n;
	struct ps__welcome_host h[PS__ELASTIC_HOSTS];
};
#define PS__WELCOME_MAX (6 + PS__ELASTIC_HOSTS * (2 + 1 + 2 + 64))
uint32_t ps__welcome_enc(uint8_t *out, const struct ps__welcome *m); /* out: PS__WELCOME_MAX */
int ps__welcome_dec(const uint8_t *b, uint32_t len, struct ps__welcome *m);

/* Little-endian access to unaligned bytes. */
static inline uint16_t ps__get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t ps__get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t ps__get64(const uint8_t *p) { return ps__get32(p) | (uint64_t)ps__get32(p + 4) << 32; }
static inline void ps__put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void ps__put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline void ps__put64(uint8_t *p, uint64_t v)
{
	ps__put32(p, (uint32_t)v);
	ps__put32(p + 4, (uint32_t)(v >> 32));
}

#endif /* PSMEM_NET_FRAME_H */
