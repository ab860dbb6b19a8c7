/*
 * checkpoint.c - a job's tables to a file and back, and checkpoints asked
 * for from outside the job (psstat --checkpoint).
 *
 * File format, version 1 (little-endian, the byte order of the hosts psmem
 * runs on; floats as their raw bits):
 *
 *   offset     size
 *   0          8     magic "PSMEMCKP"
 *   8          4     format version (1)
 *   12         4     header length H = 40 + 32 T + M
 *   16         4     crc32 of bytes [20, H): the rest of the header
 *   20         4     T, tables in the file
 *   24         4     M, metadata bytes
 *   28         4     0
 *   32         8     file length: H + data + 4
 *   40         32 T  per table: num_keys u64, value_len u32, state_len u32,
 *                    rule u32, flags u32, table id u32, 0 u32
 *   40 + 32 T  M     the program's metadata
 *   H          ...   data: table after table, key 0 .. num_keys-1, each
 *                    value_len + state_len floats (values, then rule state)
 *   end - 4    4     crc32 of the data
 *
 * Invariants
 *   (C1) PATH is only ever replaced by rename(2) of a complete, fsync'ed
 *        PATH.tmp.PID, and the directory is fsync'ed after: a reader sees
 *        the old file or the new one, whatever happens to the writer.  A
 *        temp file of a writer that died is removed by the next checkpoint
 *        to the same PATH; a failed write removes its own.
 *   (C2) Collective calls: node barrier A brings every node in; node 0
 *        alone reads or writes the file; it leaves the outcome (rc, message)
 *        in hdr->ckpt before barrier B, which orders it for the others;
 *        every node returns it.  Each call makes exactly two node barriers,
 *        whatever happens, so a restarted node replays them (barrier.c B4)
 *        without knowing what its predecessor did; replayed calls do not
 *        touch the file again (a replayed restore only reads the metadata).
 *   (C3) A restore checks everything it can before changing anything:
 *        magic, version, header checksum, length, the tables' shapes, and
 *        the data checksum over the whole file (first pass); only then are
 *        values assigned (second pass).  A file that changes between the
 *        passes is the one case that can leave a partial restore.
 *   (C4) Every key is read or assigned under its slot lock (kv.c I2), so a
 *        key is never half of a push; MOVED slots are followed to loc[k].
 *   (C5) Outside requests: psstat moves hdr->ckpt.req_state to PENDING with
 *        a path; node 0 latches it (CAS -> LATCHED) in ps_checkpoint_poll
 *        before barrier A and records the barrier's index in latch_idx, so
 *        every node agrees on whether this poll writes; node 0 then
 *        answers DONE or FAILED with the outcome.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <urcu/urcu-memb.h>
#include <zlib.h>

#include "psmem_int.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoint.c writes the host's byte order and assumes little-endian"
#endif

#define CK_MAGIC   "PSMEMCKP"
#define CK_VERSION 1u
#define CK_FIXED   40u  /* fixed part of the header */
#define CK_TENTRY  32u  /* one table entry */
#define CK_IO      (1u << 20)
#define CK_KEYS    4096 /* keys per read-side section */

/* ------------------------------------------------------------ helpers */

static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static uint32_t crc_of(uint32_t crc, const void *p, size_t len)
{
	const unsigned char *b = p;
	while (len) { /* zlib takes uInt lengths */
		uInt n = len > (1u << 30) ? (1u << 30) : (uInt)len;
		crc = (uint32_t)crc32(crc, b, n);
		b += n;
		len -= n;
	}
	return crc;
}

__attribute__((format(printf, 2, 3)))
static void say(char *msg, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, PS__MSG_MAX, fmt, ap);
	va_end(ap);
}

/* Update rule of a table, as stored in the file (update rules: rules.c). */
static uint32_t table_rule(const struct ps__tdesc *d)
{
	return d->rule;
}

static uint32_t floats_per_key(const ps_table *t)
{
	return t->value_len + t->d->state_len;
}

/* The tables a checkpoint holds: all but the transient ones, in order. */
static int saved_tables(ps_world *w, ps_table **out)
{
	int n = 0;
	for (int i = 0; i < w->ntables && i < PS__MAX_TABLES; i++)
		if (w->tables[i] && !(w->tables[i]->flags & PS_TRANSIENT))
			out[n++] = w->tables[i];
	return n;
}

/*
 * Copies key k's nf floats out (in == NULL) or assigns them from in, under
 * the slot's lock (C4).  Runs inside a read-side section.
 */
static void key_access(ps_world *w, ps_table *t, ps_key k, uint32_t nf, uint32_t *out, const uint32_t *in)
{
	for (;;) {
		/* acquire: pairs with the release publish of loc[k] (kv.c I1) */
		uint64_t lw = atomic_load_explicit(&t->loc[k], memory_order_acquire);
		/* a PS__LOC_REPL word names a replica index: the key's primary
		 * is t->rprim[PS__LOC_RIDX(lw)] (replica.c) */
		if (lw & PS__LOC_REPL) {
			if (ps__replica_access(w, t, k, lw, nf, out, in))
				return;
			continue;
		}
		struct ps__slot *sl = ps__at(&w->seg, PS__LOC_OFF(lw));
		bool moved;
		uint64_t s = ps__slot_lock(w, t, sl, &moved);
		if (moved)
			continue;
		if (atomic_load_explicit(&sl->key, memory_order_relaxed) != k) {
			ps__slot_unlock(sl, s, false);
			continue;
		}
		/* relaxed: the lock orders them (kv.c I2) */
		for (uint32_t j = 0; j < nf; j++) {
			if (in)
				atomic_store_explicit(&sl->v[j], in[j], memory_order_relaxed);
			else
				out[j] = atomic_load_explicit(&sl->v[j], memory_order_relaxed);
		}
		ps__slot_unlock(sl, s, false);
		return;
	}
}

/* keys [k0, k0 + n) of t, key after key, to or from buf */
static void keys_access(ps_world *w, ps_table *t, ps_key k0, size_t n, uint32_t *buf, bool assign)
{
	uint32_t nf = floats_per_key(t);
	urcu_memb_read_lock();
	for (size_t i = 0; i < n; i++)
		key_access(w, t, k0 + i, nf, assign ? NULL : buf + i * nf, assign ? buf + i * nf : NULL);
	urcu_memb_read_unlock();
}

static size_t keys_per_chunk(const ps_table *t)
{
	size_t per = (size_t)floats_per_key(t) * 4;
	size_t n = CK_IO / per;
	return n ? n : 1;
}

/* ------------------------------------------------------------ writing */

struct out {
	int fd;
	size_t n;
	unsigned char *buf;
};

static int out_flush(struct out *o)
{
	size_t done = 0;
	while (done < o->n) {
		ssize_t r = write(o->fd, o->buf + done, o->n - done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		done += (size_t)r;
	}
	o->n = 0;
	return 0;
}

static int out_put(struct out *o, const void *p, size_t len)
{
	const unsigned char *b = p;
	while (len) {
		size_t room = CK_IO - o->n, m = len < room ? len : room;
		memcpy(o->buf + o->n, b, m);
		o->n += m;
		b += m;
		len -= m;
		if (o->n == CK_IO) {
			int rc = out_flush(o);
			if (rc)
				return rc;
		}
	}
	return 0;
}

/* The header of a checkpoint of tables t[0..n) with meta; returns H. */
static uint32_t build_header(unsigned char *h, ps_table **t, int n, const void *meta, size_t mlen, uint64_t *total)
{
	uint32_t H = CK_FIXED + CK_TENTRY * (uint32_t)n + (uint32_t)mlen;
	uint64_t data = 0;
	memset(h, 0, H);
	memcpy(h, CK_MAGIC, 8);
	put32(h + 8, CK_VERSION);
	put32(h + 12, H);
	put32(h + 20, (uint32_t)n);
	put32(h + 24, (uint32_t)mlen);
	for (int i = 0; i < n; i++) {
		unsigned char *e = h + CK_FIXED + CK_TENTRY * (uint32_t)i;
		put64(e, t[i]->num_keys);
		put32(e + 8, t[i]->value_len);
		put32(e + 12, t[i]->d->state_len);
		put32(e + 16, table_rule(t[i]->d));
		put32(e + 20, t[i]->flags);
		put32(e + 24, (uint32_t)t[i]->id);
		data += t[i]->num_keys * floats_per_key(t[i]) * 4;
	}
	if (mlen)
		memcpy(h + CK_FIXED + CK_TENTRY * (uint32_t)n, meta, mlen);
	*total = H + data + 4;
	put64(h + 32, *total);
	put32(h + 16, crc_of((uint32_t)crc32(0, NULL, 0), h + 20, H - 20));
	return H;
}

static int write_data(ps_world *w, struct out *o, ps_table **t, int n, uint32_t *crc)
{
	uint32_t *buf = malloc(CK_IO + 4 * 65536);
	if (!buf)
		return -ENOMEM;
	int rc = 0;
	for (int i = 0; i < n && rc == 0; i++) {
		size_t per = keys_per_chunk(t[i]);
		for (ps_key k = 0; k < t[i]->num_keys && rc == 0; k += per) {
			size_t m = t[i]->num_keys - k < per ? (size_t)(t[i]->num_keys - k) : per;
			keys_access(w, t[i], k, m, buf, false);
			size_t bytes = m * floats_per_key(t[i]) * 4;
			*crc = crc_of(*crc, buf, bytes);
			rc = out_put(o, buf, bytes);
		}
	}
	free(buf);
	return rc;
}

/* Splits path into its directory (for fsync and the temp-file sweep). */
static void dir_of(const char *path, char *dir, size_t len)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof tmp, "%s", path);
	snprintf(dir, len, "%s", dirname(tmp));
}

/* Removes PATH.tmp.PID files of writers that are gone (C1). */
static void sweep_temps(const char *path)
{
	char dir[PATH_MAX], tmp[PATH_MAX], full[PATH_MAX + 300];
	dir_of(path, dir, sizeof dir);
	snprintf(tmp, sizeof tmp, "%s", path);
	const char *base = basename(tmp);
	size_t bl = strlen(base);
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, base, bl) != 0 || strncmp(e->d_name + bl, ".tmp.", 5) != 0)
			continue;
		char *end;
		long pid = strtol(e->d_name + bl + 5, &end, 10);
		if (*end || pid <= 0 || pid == getpid() || ps__pid_alive((pid_t)pid, 0))
			continue;
		snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
		unlink(full);
	}
	closedir(d);
}

static int fsync_dir(const char *path)
{
	char dir[PATH_MAX];
	dir_of(path, dir, sizeof dir);
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) == 0 ? 0 : -errno;
	close(fd);
	return rc;
}

/* Node 0: writes the checkpoint (C1).  msg gets the reason of a failure. */
static int write_file(ps_world *w, const char *path, const void *meta, size_t mlen, char *msg)
{
	ps_table *t[PS__MAX_TABLES];
	int n = saved_tables(w, t);
	unsigned char *h = malloc(CK_FIXED + CK_TENTRY * PS__MAX_TABLES + PS_CKPT_META_MAX);
	char tmp[PATH_MAX];
	struct out o = {.fd = -1, .buf = malloc(CK_IO)};
	if (!h || !o.buf) {
		free(h);
		free(o.buf);
		say(msg, "out of memory");
		return -ENOMEM;
	}
	sweep_temps(path);
	snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
	uint64_t total;
	uint32_t H = build_header(h, t, n, meta, mlen, &total);
	const char *what = "cannot create";
	int rc = 0;
	o.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (o.fd < 0)
		rc = -errno;
	uint32_t crc = (uint32_t)crc32(0, NULL, 0);
	if (rc == 0) {
		what = "cannot write";
		rc = out_put(&o, h, H);
	}
	if (rc == 0)
		rc = write_data(w, &o, t, n, &crc);
	unsigned char tail[4];
	put32(tail, crc);
	if (rc == 0)
		rc = out_put(&o, tail, 4);
	if (rc == 0)
		rc = out_flush(&o);
	if (rc == 0 && fsync(o.fd) != 0)
		rc = -errno;
	if (o.fd >= 0 && close(o.fd) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) != 0) {
		what = "cannot rename the temp file to it";
		rc = -errno;
	}
	if (rc == 0 && (rc = fsync_dir(path)) != 0)
		what = "cannot sync its directory";
	if (rc) {
		if (o.fd >= 0)
			unlink(tmp);
		say(msg, "%s: %s", what, strerror(-rc));
	}
	free(h);
	free(o.buf);
	return rc;
}

/* ------------------------------------------------------------ reading */

struct in {
	int fd;
	uint64_t size;
	uint32_t H, ntables, mlen;
	uint64_t total;
	unsigned char *h;      /* the whole header */
};

static void in_close(struct in *f)
{
	if (f->fd >= 0)
		close(f->fd);
	free(f->h);
	f->fd = -1;
	f->h = NULL;
}

static int read_at(const struct in *f, uint64_t off, void *buf, size_t len, char *msg)
{
	size_t done = 0;
	while (done < len) {
		ssize_t r = pread(f->fd, (char *)buf + done, len - done, (off_t)(off + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			int e = r == 0 ? 0 : errno;
			if (r == 0)
				say(msg, "truncated at byte %" PRIu64 " while reading", off + done);
			else
				say(msg, "cannot read: %s", strerror(e));
			return r == 0 ? PS_ECKPT : -e;
		}
		done += (size_t)r;
	}
	return 0;
}

static int truncated(char *msg, uint64_t at, uint64_t want)
{
	say(msg, "truncated at byte %" PRIu64 " (expected %" PRIu64 " bytes)", at, want);
	return PS_ECKPT;
}

/* Opens a checkpoint and checks its header and length (C3). */
static int in_open(struct in *f, const char *path, char *msg)
{
	memset(f, 0, sizeof *f);
	f->fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (f->fd < 0 || fstat(f->fd, &st) != 0) {
		int e = errno;
		say(msg, "cannot open: %s", strerror(e));
		return -e;
	}
	f->size = (uint64_t)st.st_size;
	unsigned char fx[CK_FIXED];
	size_t have = f->size < CK_FIXED ? (size_t)f->size : CK_FIXED;
	int rc = read_at(f, 0, fx, have, msg);
	if (rc)
		return rc;
	if (have < 8)
		return truncated(msg, f->size, CK_FIXED);
	if (memcmp(fx, CK_MAGIC, 8) != 0) {
		say(msg, "not a psmem checkpoint (bad magic)");
		return PS_ECKPT;
	}
	if (have < 12)
		return truncated(msg, f->size, CK_FIXED);
	if (get32(fx + 8) != CK_VERSION) {
		say(msg, "checkpoint format version %u; this psmem reads version %u", get32(fx + 8), CK_VERSION);
		return PS_ECKPT;
	}
	if (have < CK_FIXED)
		return truncated(msg, f->size, CK_FIXED);
	f->H = get32(fx + 12);
	f->ntables = get32(fx + 20);
	f->mlen = get32(fx + 24);
	if (f->ntables > PS__MAX_TABLES || f->mlen > PS_CKPT_META_MAX ||
	    f->H != CK_FIXED + CK_TENTRY * f->ntables + f->mlen) {
		say(msg, "corrupt header (its lengths do not add up)");
		return PS_ECKPT;
	}
	if (f->size < f->H)
		return truncated(msg, f->size, f->H);
	f->h = malloc(f->H);
	if (!f->h) {
		say(msg, "out of memory");
		return -ENOMEM;
	}
	if ((rc = read_at(f, 0, f->h, f->H, msg)) != 0)
		return rc;
	if (crc_of((uint32_t)crc32(0, NULL, 0), f->h + 20, f->H - 20) != get32(f->h + 16)) {
		say(msg, "corrupt header (header checksum mismatch)");
		return PS_ECKPT;
	}
	uint64_t data = 0;
	for (uint32_t i = 0; i < f->ntables; i++) {
		const unsigned char *e = f->h + CK_FIXED + CK_TENTRY * i;
		data += get64(e) * ((uint64_t)get32(e + 8) + get32(e + 12)) * 4;
	}
	f->total = f->H + data + 4;
	if (get64(f->h + 32) != f->total) {
		say(msg, "corrupt header (file length %" PRIu64 ", its tables need %" PRIu64 ")", get64(f->h + 32),
		    f->total);
		return PS_ECKPT;
	}
	if (f->size < f->total)
		return truncated(msg, f->size, f->total);
	if (f->size > f->total) {
		say(msg, "%" PRIu64 " unexpected bytes after the end of the checkpoint", f->size - f->total);
		return PS_ECKPT;
	}
	return 0;
}

/* The file's tables against the job's (C3). */
static int check_shapes(const struct in *f, ps_table **t, int n, char *msg)
{
	if ((int)f->ntables != n) {
		say(msg, "holds %u table%s; this job has %d (transient tables not counted)", f->ntables,
		    f->ntables == 1 ? "" : "s", n);
		return PS_ESHAPE;
	}
	for (int i = 0; i < n; i++) {
		const unsigned char *e = f->h + CK_FIXED + CK_TENTRY * (uint32_t)i;
		const char *field = NULL;
		uint64_t a = 0, b = 0;
		if ((a = get64(e)) != (b = t[i]->num_keys))
			field = "num_keys";
		else if ((a = get32(e + 8)) != (b = t[i]->value_len))
			field = "value_len";
		else if ((a = get32(e + 12)) != (b = t[i]->d->state_len))
			field = "state_len";
		else if ((a = get32(e + 16)) != (b = table_rule(t[i]->d)))
			field = "rule";
		if (field) {
			say(msg, "table %d: %s is %" PRIu64 " in the file, %" PRIu64 " in this job", t[i]->id, field, a, b);
			return PS_ESHAPE;
		}
	}
	return 0;
}

/* First pass: the data checksum (C3). */
static int check_data(const struct in *f, char *msg)
{
	unsigned char *buf = malloc(CK_IO);
	if (!buf) {
		say(msg, "out of memory");
		return -ENOMEM;
	}
	uint32_t crc = (uint32_t)crc32(0, NULL, 0);
	int rc = 0;
	for (uint64_t off = f->H; off < f->total - 4 && rc == 0;) {
		size_t m = f->total - 4 - off < CK_IO ? (size_t)(f->total - 4 - off) : CK_IO;
		rc = read_at(f, off, buf, m, msg);
		crc = crc_of(crc, buf, m);
		off += m;
	}
	unsigned char tail[4];
	if (rc == 0)
		rc = read_at(f, f->total - 4, tail, 4, msg);
	if (rc == 0 && get32(tail) != crc) {
		say(msg, "checksum mismatch (stored %08x, computed %08x): the data is corrupted", get32(tail), crc);
		rc = PS_ECKPT;
	}
	free(buf);
	return rc;
}

/* Second pass: assigns every key of every table. */
static int assign_all(ps_world *w, const struct in *f, ps_table **t, int n, char *msg)
{
	uint32_t *buf = malloc(CK_IO + 4 * 65536);
	if (!buf) {
		say(msg, "out of memory");
		return -ENOMEM;
	}
	int rc = 0;
	uint64_t off = f->H;
	for (int i = 0; i < n && rc == 0; i++) {
		size_t per = keys_per_chunk(t[i]);
		for (ps_key k = 0; k < t[i]->num_keys && rc == 0; k += per) {
			size_t m = t[i]->num_keys - k < per ? (size_t)(t[i]->num_keys - k) : per;
			size_t bytes = m * floats_per_key(t[i]) * 4;
			rc = read_at(f, off, buf, bytes, msg);
			if (rc == 0)
				keys_access(w, t[i], k, m, buf, true);
			off += bytes;
		}
	}
	free(buf);
	return rc;
}

/* Node 0: the whole restore. */
static int restore_file(ps_world *w, const char *path, char *msg)
{
	ps_table *t[PS__MAX_TABLES];
	int n = saved_tables(w, t);
	struct in f;
	int rc = in_open(&f, path, msg);
	if (rc == 0)
		rc = check_shapes(&f, t, n, msg);
	if (rc == 0)
		rc = check_data(&f, msg);
	if (rc == 0)
		rc = assign_all(w, &f, t, n, msg);
	in_close(&f);
	return rc ? rc : n;
}

/* Every node: the metadata of a file node 0 has restored from. */
static int read_meta(const char *path, void *meta, size_t cap, size_t *len, char *msg)
{
	struct in f;
	int rc = in_open(&f, path, msg);
	if (rc == 0) {
		if (meta && cap)
			memcpy(meta, f.h + CK_FIXED + CK_TENTRY * f.ntables, f.mlen < cap ? f.mlen : cap);
		if (len)
			*len = f.mlen;
		rc = (int)f.ntables;
	}
	in_close(&f);
	return rc;
}

int ps__ckpt_check_file(const char *path, char *msg, size_t len)
{
	char m[PS__MSG_MAX] = "";
	struct in f;
	int rc = in_open(&f, path, m);
	in_close(&f);
	snprintf(msg, len, "%s", m);
	return rc;
}

/* ------------------------------------------------------------ collective */

enum op { OP_WRITE, OP_RESTORE, OP_POLL };

struct meta_out {
	void *buf;
	size_t cap;
	size_t *len;
};

/* Node 0, before barrier A of a poll: takes a pending outside request (C5). */
static void latch_request(ps_world *w)
{
	struct ps__ckpt *c = &w->seg.hdr->ckpt;
	uint32_t want = PS__REQ_PENDING;
	/* acquire: req_path written by the requester before PENDING */
	if (!atomic_compare_exchange_strong_explicit(&c->req_state, &want, PS__REQ_LATCHED, memory_order_acquire,
						     memory_order_relaxed))
		return;
	memcpy(c->path, c->req_path, sizeof c->path);
	c->path[sizeof c->path - 1] = 0;
	c->latch_idx = w->node_calls + 1; /* barrier A's index + 1 (0: none) */
}

/* Node 0, after the work of a latched poll: answers the requester (C5). */
static void answer_request(ps_world *w, int rc)
{
	struct ps__ckpt *c = &w->seg.hdr->ckpt;
	c->req_rc = rc;
	memcpy(c->req_msg, c->msg, sizeof c->req_msg);
	/* release: req_rc and req_msg before the answer */
	atomic_store_explicit(&c->req_state, rc < 0 ? PS__REQ_FAILED : PS__REQ_DONE, memory_order_release);
}

static int node0_work(ps_world *w, enum op op, const char *path, const void *meta, size_t mlen)
{
	struct ps__ckpt *c = &w->seg.hdr->ckpt;
	char *msg = c->msg;
	msg[0] = 0;
	ps__thread_enter(w);
	int rc = op == OP_RESTORE ? restore_file(w, path, msg) : write_file(w, path, meta, mlen, msg);
	if (op == OP_POLL)
		answer_request(w, rc);
	return op == OP_POLL && rc == 0 ? 1 : rc;
}

static int collective(ps_world *w, enum op op, const char *path, const void *meta, size_t mlen,
		      const struct meta_out *mo)
{
	struct ps__ckpt *c = &w->seg.hdr->ckpt;
	w->ckpt_err[0] = 0;
	if (w->nhosts > 1) {
		snprintf(w->ckpt_err, sizeof w->ckpt_err, "checkpoints of multi-host jobs are not implemented");
		return -ENOTSUP;
	}
	if (op == OP_POLL && w->node == 0 && !ps__node_replaying(w))
		latch_request(w);
	/* replication: every node merges every node's replica deltas into
	 * the primaries before it arrives at A (ps_sync is not collective),
	 * so the file holds each node's pushes made before its ps_checkpoint */
	if (op != OP_RESTORE)
		for (int i = 0; i < w->ntables && i < PS__MAX_TABLES; i++)
			if (w->tables[i] && !(w->tables[i]->flags & PS_TRANSIENT))
				ps_sync(w->tables[i]);
	uint32_t idx;
	int rc = ps__node_barrier(w, &idx); /* A */
	if (rc)
		return rc;
	/* a predecessor that passed B did the work; one that died between A
	 * and B may have left it half done: do it again (C2) */
	bool done = ps__node_replaying(w);
	if (op == OP_POLL) /* everyone agrees whether this poll writes (C5) */
		path = c->latch_idx == idx + 1 ? c->path : NULL;
	if (w->node == 0 && !done) {
		c->msg[0] = 0;
		c->rc = path ? node0_work(w, op, path, meta, mlen) : 0;
	}
	rc = ps__node_barrier(w, NULL); /* B: orders c->rc and c->msg (C2) */
	if (rc)
		return rc;
	rc = done ? 0 : c->rc;
	char where[PS__PATH_MAX];
	snprintf(where, sizeof where, "%s", path ? path : "");
	if (rc < 0) {
		snprintf(w->ckpt_err, sizeof w->ckpt_err, "%s: %s", where, c->msg);
		return rc;
	}
	if (op == OP_RESTORE) {
		char msg[PS__MSG_MAX];
		rc = read_meta(where, mo->buf, mo->cap, mo->len, msg);
		if (rc < 0)
			snprintf(w->ckpt_err, sizeof w->ckpt_err, "%s: %s", where, msg);
	}
	return rc;
}

static int check_path(ps_world *w, const char *path)
{
	if (!w || !path || !*path)
		return -EINVAL;
	if (strlen(path) + 32 >= PS__PATH_MAX)
		return -ENAMETOOLONG;
	return 0;
}

int ps_checkpoint_meta(ps_world *w, const char *path, const void *meta, size_t meta_len)
{
	int rc = check_path(w, path);
	if (rc == 0 && (meta_len > PS_CKPT_META_MAX || (meta_len && !meta)))
		rc = -EINVAL;
	return rc ? rc : collective(w, OP_WRITE, path, meta, meta_len, NULL);
}

int ps_checkpoint(ps_world *w, const char *path)
{
	return ps_checkpoint_meta(w, path, NULL, 0);
}

int ps_restore_meta(ps_world *w, const char *path, void *meta, size_t meta_cap, size_t *meta_len)
{
	if (meta_len)
		*meta_len = 0;
	if (!w || (meta_cap && !meta))
		return -EINVAL;
	if (!path) {
		path = getenv("PSMEM_RESTORE"); /* psrun --restore FILE */
		if (!path || !*path)
			return 0;
	}
	int rc = check_path(w, path);
	struct meta_out mo = {.buf = meta, .cap = meta_cap, .len = meta_len};
	return rc ? rc : collective(w, OP_RESTORE, path, NULL, 0, &mo);
}

int ps_restore(ps_world *w, const char *path)
{
	return ps_restore_meta(w, path, NULL, 0, NULL);
}

int ps_checkpoint_poll(ps_world *w, const void *meta, size_t meta_len)
{
	if (!w || meta_len > PS_CKPT_META_MAX || (meta_len && !meta))
		return -EINVAL;
	return collective(w, OP_POLL, NULL, meta, meta_len, NULL);
}

const char *ps_checkpoint_error(const ps_world *w)
{
	return w ? w->ckpt_err : "";
}
