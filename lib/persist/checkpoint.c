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
 * Version 2 is one host's part of a multi-host job's checkpoint: the same
 * with a 56-byte fixed part (bytes 40..56: hosts u32, host rank u32,
 * checkpoint id u64, the same in every host's part of one checkpoint) and
 * data for the host's home range [k0, k1) of each table only (the
 * partition of ps__host_keys), key k0 .. k1-1.  Host 0's part is PATH,
 * host R's PATH.hostR.  A one-host job writes version 1 as before.
 *
 * Invariants
 *   (CK1) PATH is only ever replaced by rename(2) of a complete, fsync'ed
 *        PATH.tmp.PID, and the directory is fsync'ed after: a reader sees
 *        the old file or the new one, whatever happens to the writer.  A
 *        temp file of a writer that died is removed by the next checkpoint
 *        to the same PATH; a failed write removes its own.
 *   (CK2) Collective calls: node barrier A brings every node in; node 0
 *        alone reads or writes the file; it leaves the outcome (rc, message)
 *        in hdr->ckpt before barrier B, which orders it for the others;
 *        every node returns it.  Each call makes exactly two node barriers,
 *        whatever happens, so a restarted node replays them (barrier.c BR4)
 *        without knowing what its predecessor did; replayed calls do not
 *        touch the file again (a replayed restore only reads the metadata).
 *   (CK3) A restore checks everything it can before changing anything:
 *        magic, version, header checksum, length, the tables' shapes, and
 *        the data checksum over the whole file (first pass); only then are
 *        values assigned (second pass).  A file that changes between the
 *        passes is the one case that can leave a partial restore.
 *   (CK4) Every key is read or assigned under its slot lock (kv.c KV2), so a
 *        key is never half of a push; MOVED slots are followed to loc[k].
 *   (CK5) Outside requests: psstat moves hdr->ckpt.req_state to PENDING with
 *        a path; node 0 latches it (CAS -> LATCHED) in ps_checkpoint_poll
 *        before barrier A and records the barrier's index in latch_idx, so
 *        every node agrees on whether this poll writes; node 0 then
 *        answers DONE or FAILED with the outcome.
 *
 * Several hosts (collective_hosts; every node of every host makes the same
 * fixed sequence of PS__BAR_MIN agreements between A and B, node 0 of each
 * host works between them):
 *   (CKH1) Host R writes and reads only its part, PATH.hostR (PATH for host
 *        0), which names H and R: a file of another host count or rank is
 *        refused before anything changes (psrun --restore checks it too).
 *   (CKH2) A part holds the host's home range, whoever holds the keys: keys
 *        held by another host (a REMOTE word) are pulled through the
 *        routing; a table with rule state refuses then (a pull carries no
 *        state).  Keys of other ranges held here are written by their home
 *        host the same way.  A restore needs every home key at home.
 *   (CKH3) Commit: the id comes from host 0; every host writes and fsyncs its
 *        temp file; agreement 1 (all durable); hosts R >= 1 rename theirs
 *        over PATH.hostR, first keeping the committed part as
 *        PATH.hostR.prev (the committed id, host 0's PATH's, is agreed
 *        before); agreement 2; host 0 renames over PATH: the one commit
 *        point.  A host that dies anywhere before leaves host 0's PATH the
 *        previous checkpoint, and every host R has that checkpoint's part
 *        as PATH.hostR or PATH.hostR.prev: a restore takes host 0's id
 *        (agreed) and the part with that id on every host.
 *   (CKH4) Poll: node 0 of a host that latched a request sends its path to
 *        every other host's node 0 (CKPT) before the agreement on "the
 *        lowest host that latched"; that host's path is used everywhere, a
 *        request latched on another host goes back to PENDING.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <urcu/urcu-memb.h>
#include <zlib.h>

#include "segment.h"
#include "util.h"
#include "world.h"
#include "kv.h"
#include "replica.h"
#include "barrier.h"
#include "checkpoint.h"

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

/* Which part of a job a file is: host rank of hosts, and the checkpoint's
 * id (the same in every host's file of one checkpoint).  hosts == 1: a
 * one-host job's file (format version 1, no id). */
struct hinfo {
	uint32_t hosts, rank;
	uint64_t id;
};

static const struct hinfo one_host = {.hosts = 1};

/* Keys [*k0, *k1) of a num_keys table are host rank's home range (the
 * partition of ps__host_keys). */
static void range_of(uint64_t num_keys, uint32_t hosts, uint32_t rank, uint64_t *k0, uint64_t *k1)
{
	const unsigned __int128 K = num_keys, H = hosts, h = rank;
	*k0 = (uint64_t)((h * K + H - 1) / H);
	*k1 = (uint64_t)(((h + 1) * K + H - 1) / H);
}

static uint32_t fixed_len(uint32_t hosts)
{
	return hosts > 1 ? CK_FIXED2 : CK_FIXED;
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
 * the slot's lock (CK4).  Runs inside a read-side section.  False, and
 * nothing done, when another host holds k (a REMOTE word: CKH2).
 */
static bool key_access(ps_world *w, ps_table *t, ps_key k, uint32_t nf, uint32_t *out, const uint32_t *in)
{
	for (;;) {
		/* acquire: pairs with the release publish of loc[k] (kv.c KV1) */
		uint64_t lw = atomic_load_explicit(&t->loc[k], memory_order_acquire);
		if (PS__LOC_IS_REMOTE(lw))
			return false;
		/* a PS__LOC_REPL word names a replica index: the key's primary
		 * is t->rprim[PS__LOC_RIDX(lw)] (replica.c) */
		if (lw & PS__LOC_REPL) {
			if (ps__replica_access(w, t, k, lw, nf, out, in))
				return true;
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
		/* relaxed: the lock orders them (kv.c KV2) */
		for (uint32_t j = 0; j < nf; j++) {
			if (in)
				atomic_store_explicit(&sl->v[j], in[j], memory_order_relaxed);
			else
				out[j] = atomic_load_explicit(&sl->v[j], memory_order_relaxed);
		}
		ps__slot_unlock(sl, s, false);
		return true;
	}
}

/*
 * Keys [k0, k0 + n) of t, key after key, to or from buf.  Returns how many
 * are held by another host (skipped); their positions go to rpos (n
 * entries) when it is not NULL.
 */
static size_t keys_access(ps_world *w, ps_table *t, ps_key k0, size_t n, uint32_t *buf, bool assign,
			  uint32_t *rpos)
{
	uint32_t nf = floats_per_key(t);
	size_t remote = 0;
	urcu_memb_read_lock();
	for (size_t i = 0; i < n; i++)
		if (!key_access(w, t, k0 + i, nf, assign ? NULL : buf + i * nf, assign ? buf + i * nf : NULL)) {
			if (rpos)
				rpos[remote] = (uint32_t)i;
			remote++;
		}
	urcu_memb_read_unlock();
	return remote;
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

/* The header of a checkpoint of tables t[0..n) with meta, for host hi;
 * returns H. */
static uint32_t build_header(unsigned char *h, ps_table **t, int n, const void *meta, size_t mlen, uint64_t *total,
			     const struct hinfo *hi)
{
	const uint32_t fx = fixed_len(hi->hosts);
	uint32_t H = fx + CK_TENTRY * (uint32_t)n + (uint32_t)mlen;
	uint64_t data = 0;
	memset(h, 0, H);
	memcpy(h, CK_MAGIC, 8);
	put32(h + 8, hi->hosts > 1 ? CK_VERSION_HOSTS : CK_VERSION);
	put32(h + 12, H);
	put32(h + 20, (uint32_t)n);
	put32(h + 24, (uint32_t)mlen);
	if (hi->hosts > 1) {
		put32(h + 40, hi->hosts);
		put32(h + 44, hi->rank);
		put64(h + 48, hi->id);
	}
	for (int i = 0; i < n; i++) {
		unsigned char *e = h + fx + CK_TENTRY * (uint32_t)i;
		uint64_t k0, k1;
		range_of(t[i]->num_keys, hi->hosts, hi->rank, &k0, &k1);
		put64(e, t[i]->num_keys);
		put32(e + 8, t[i]->value_len);
		put32(e + 12, t[i]->d->state_len);
		put32(e + 16, table_rule(t[i]->d));
		put32(e + 20, t[i]->flags);
		put32(e + 24, (uint32_t)t[i]->id);
		data += (k1 - k0) * floats_per_key(t[i]) * 4;
	}
	if (mlen)
		memcpy(h + fx + CK_TENTRY * (uint32_t)n, meta, mlen);
	*total = H + data + 4;
	put64(h + 32, *total);
	put32(h + 16, crc_of((uint32_t)crc32(0, NULL, 0), h + 20, H - 20));
	return H;
}

/*
 * Keys of a chunk held by another host (CKH2): pulled through the routing,
 * which works whoever holds them.  A pull carries values, not rule state:
 * a table with state refuses (-ENOTSUP, naming the key and its holder).
 */
static int pull_moved(ps_table *t, ps_key k0, uint32_t *buf, const uint32_t *rpos, size_t nr, char *msg)
{
	if (t->d->state_len) {
		ps_key k = k0 + rpos[0];
		/* relaxed: only for the message */
		uint64_t lw = atomic_load_explicit(&t->loc[k], memory_order_relaxed);
		say(msg,
		    "table %d: key %" PRIu64 " is held by host %d; its update-rule state cannot be read across hosts "
		    "(checkpoint before keys of tables with rule state move)",
		    t->id, k, PS__LOC_OWNER(lw));
		return -ENOTSUP;
	}
	ps_key *keys = malloc(nr * sizeof *keys);
	float *vals = malloc(nr * t->value_len * sizeof *vals);
	int rc = keys && vals ? 0 : -ENOMEM;
	for (size_t i = 0; rc == 0 && i < nr; i++)
		keys[i] = k0 + rpos[i];
	if (rc == 0)
		rc = ps_pull_sync(t, keys, nr, vals);
	for (size_t i = 0; rc == 0 && i < nr; i++)
		memcpy(buf + (size_t)rpos[i] * t->value_len, vals + i * t->value_len, 4 * (size_t)t->value_len);
	if (rc)
		say(msg, "table %d: pulling the keys held by other hosts: %s", t->id, ps_strerror(rc));
	free(keys);
	free(vals);
	return rc;
}

static int write_data(ps_world *w, struct out *o, ps_table **t, int n, uint32_t *crc, const struct hinfo *hi,
		      char *msg)
{
	uint32_t *buf = malloc(CK_IO + 4 * 65536);
	uint32_t *rpos = hi->hosts > 1 ? malloc(CK_IO) : NULL; /* keys_per_chunk <= CK_IO / 4 */
	if (!buf || (hi->hosts > 1 && !rpos)) {
		free(buf);
		free(rpos);
		say(msg, "out of memory");
		return -ENOMEM;
	}
	int rc = 0;
	for (int i = 0; i < n && rc == 0; i++) {
		size_t per = keys_per_chunk(t[i]);
		uint64_t k0, k1;
		range_of(t[i]->num_keys, hi->hosts, hi->rank, &k0, &k1);
		for (ps_key k = k0; k < k1 && rc == 0; k += per) {
			size_t m = k1 - k < per ? (size_t)(k1 - k) : per;
			size_t nr = keys_access(w, t[i], k, m, buf, false, rpos);
			if (nr && (rc = pull_moved(t[i], k, buf, rpos, nr, msg)) != 0)
				break;
			size_t bytes = m * floats_per_key(t[i]) * 4;
			*crc = crc_of(*crc, buf, bytes);
			if ((rc = out_put(o, buf, bytes)) != 0)
				say(msg, "cannot write: %s", strerror(-rc));
		}
	}
	free(buf);
	free(rpos);
	return rc;
}

/* Splits path into its directory (for fsync and the temp-file sweep). */
static void dir_of(const char *path, char *dir, size_t len)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof tmp, "%s", path);
	snprintf(dir, len, "%s", dirname(tmp));
}

/* Removes PATH.tmp.PID files of writers that are gone (CK1). */
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

/*
 * Node 0: writes the checkpoint of host hi to tmp (PATH.tmp.PID), complete
 * and fsync'ed, not yet renamed (CK1).  msg gets the reason of a failure;
 * the temp file is then removed.
 */
static int write_tmp(ps_world *w, const char *path, char *tmp, const void *meta, size_t mlen,
		     const struct hinfo *hi, char *msg)
{
	ps_table *t[PS__MAX_TABLES];
	int n = saved_tables(w, t);
	unsigned char *h = malloc(CK_FIXED2 + CK_TENTRY * PS__MAX_TABLES + PS_CKPT_META_MAX);
	struct out o = {.fd = -1, .buf = malloc(CK_IO)};
	if (!h || !o.buf) {
		free(h);
		free(o.buf);
		say(msg, "out of memory");
		return -ENOMEM;
	}
	sweep_temps(path);
	snprintf(tmp, PATH_MAX, "%s.tmp.%d", path, (int)getpid());
	uint64_t total;
	uint32_t H = build_header(h, t, n, meta, mlen, &total, hi);
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
	bool said = false;
	if (rc == 0 && (rc = write_data(w, &o, t, n, &crc, hi, msg)) != 0)
		said = true;
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
	if (rc) {
		if (o.fd >= 0)
			unlink(tmp);
		if (!said)
			say(msg, "%s: %s", what, strerror(-rc));
	}
	free(h);
	free(o.buf);
	return rc;
}

/* Renames tmp over file and syncs the directory (CK1). */
static int commit_tmp(const char *tmp, const char *file, char *msg)
{
	if (rename(tmp, file) != 0) {
		int e = errno;
		unlink(tmp);
		say(msg, "cannot rename the temp file to it: %s", strerror(e));
		return -e;
	}
	int rc = fsync_dir(file);
	if (rc)
		say(msg, "cannot sync its directory: %s", strerror(-rc));
	return rc;
}

/* Node 0 of a one-host job: the whole checkpoint (CK1). */
static int write_file(ps_world *w, const char *path, const void *meta, size_t mlen, char *msg)
{
	char tmp[PATH_MAX];
	int rc = write_tmp(w, path, tmp, meta, mlen, &one_host, msg);
	return rc ? rc : commit_tmp(tmp, path, msg);
}

/* ------------------------------------------------------------ reading */

struct in {
	int fd;
	uint64_t size;
	uint32_t H, ntables, mlen;
	uint32_t fixed;        /* CK_FIXED, or CK_FIXED2 for version 2 */
	struct hinfo hi;       /* version 1: one_host */
	uint64_t total;
	unsigned char *h;      /* the whole header */
};

/* Table entry i of an open file's header. */
static const unsigned char *entry(const struct in *f, uint32_t i)
{
	return f->h + f->fixed + CK_TENTRY * i;
}

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

/* Opens a checkpoint and checks its header and length (CK3). */
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
	unsigned char fx[CK_FIXED2];
	size_t have = f->size < CK_FIXED2 ? (size_t)f->size : CK_FIXED2;
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
	uint32_t version = get32(fx + 8);
	if (version != CK_VERSION && version != CK_VERSION_HOSTS) {
		say(msg, "checkpoint format version %u; this psmem reads versions %u and %u", version, CK_VERSION,
		    CK_VERSION_HOSTS);
		return PS_ECKPT;
	}
	f->fixed = version == CK_VERSION ? CK_FIXED : CK_FIXED2;
	if (have < f->fixed)
		return truncated(msg, f->size, f->fixed);
	f->H = get32(fx + 12);
	f->ntables = get32(fx + 20);
	f->mlen = get32(fx + 24);
	f->hi = one_host;
	if (version == CK_VERSION_HOSTS)
		f->hi = (struct hinfo){.hosts = get32(fx + 40), .rank = get32(fx + 44), .id = get64(fx + 48)};
	if (f->ntables > PS__MAX_TABLES || f->mlen > PS_CKPT_META_MAX ||
	    f->H != f->fixed + CK_TENTRY * f->ntables + f->mlen || f->hi.hosts < 1 ||
	    f->hi.hosts > PS__MAX_HOSTS_CK || f->hi.rank >= f->hi.hosts || (version == CK_VERSION_HOSTS && f->hi.hosts < 2)) {
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
		const unsigned char *e = entry(f, i);
		uint64_t k0, k1;
		range_of(get64(e), f->hi.hosts, f->hi.rank, &k0, &k1);
		data += (k1 - k0) * ((uint64_t)get32(e + 8) + get32(e + 12)) * 4;
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

/* The file's tables against the job's (CK3). */
static int check_shapes(const struct in *f, ps_table **t, int n, char *msg)
{
	if ((int)f->ntables != n) {
		say(msg, "holds %u table%s; this job has %d (transient tables not counted)", f->ntables,
		    f->ntables == 1 ? "" : "s", n);
		return PS_ESHAPE;
	}
	for (int i = 0; i < n; i++) {
		const unsigned char *e = entry(f, (uint32_t)i);
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

/* First pass: the data checksum (CK3). */
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

/* A file of hosts > 1 needs the job's host count and its rank (CKH1). */
static int check_host(const struct in *f, int hosts, int rank, char *msg)
{
	if (f->hi.hosts == 1 && hosts == 1)
		return 0;
	if (f->hi.hosts == 1) {
		say(msg, "a checkpoint of a one-host job; this job has %d hosts", hosts);
		return PS_ESHAPE;
	}
	if ((int)f->hi.hosts != hosts) {
		say(msg, "a checkpoint of host %u of a %u-host job; this job has %d host%s", f->hi.rank, f->hi.hosts,
		    hosts, hosts == 1 ? "" : "s");
		return PS_ESHAPE;
	}
	if ((int)f->hi.rank != rank) {
		say(msg, "a checkpoint of host %u of a %u-host job; this is host %d", f->hi.rank, f->hi.hosts, rank);
		return PS_ECKPT;
	}
	return 0;
}

/* Every key of this host's range is at home before a restore assigns (CKH2). */
static int check_home(const struct in *f, ps_table **t, int n, char *msg)
{
	for (int i = 0; i < n; i++) {
		uint64_t k0, k1;
		range_of(t[i]->num_keys, f->hi.hosts, f->hi.rank, &k0, &k1);
		for (ps_key k = k0; k < k1; k++) {
			/* acquire: pairs with the release publish of loc[k] */
			uint64_t lw = atomic_load_explicit(&t[i]->loc[k], memory_order_acquire);
			if (PS__LOC_IS_REMOTE(lw)) {
				say(msg,
				    "table %d: key %" PRIu64 " is held by host %d; a restore needs every key at its "
				    "home host (restore before keys move)",
				    t[i]->id, k, PS__LOC_OWNER(lw));
				return -ENOTSUP;
			}
		}
	}
	return 0;
}

/* Second pass: assigns every key of this host's range of every table. */
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
		uint64_t k0, k1;
		range_of(t[i]->num_keys, f->hi.hosts, f->hi.rank, &k0, &k1);
		for (ps_key k = k0; k < k1 && rc == 0; k += per) {
			size_t m = k1 - k < per ? (size_t)(k1 - k) : per;
			size_t bytes = m * floats_per_key(t[i]) * 4;
			rc = read_at(f, off, buf, bytes, msg);
			if (rc == 0 && keys_access(w, t[i], k, m, buf, true, NULL) != 0) {
				say(msg, "table %d: a key moved to another host during the restore", t[i]->id);
				rc = -ENOTSUP;
			}
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
		rc = check_host(&f, 1, 0, msg);
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
			memcpy(meta, f.h + f.fixed + CK_TENTRY * f.ntables, f.mlen < cap ? f.mlen : cap);
		if (len)
			*len = f.mlen;
		rc = (int)f.ntables;
	}
	in_close(&f);
	return rc;
}

/* The file of host rank of a checkpoint to path: path itself for host 0
 * (and a one-host job), path.hostR for the others (CKH1). */
__attribute__((format(printf, 3, 4)))
static void pathf(char *out, size_t len, const char *fmt, ...)
{
	/* paths are at most PS__PATH_MAX - 32 long (check_path): the
	 * suffixes fit */
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(out, len, fmt, ap);
	va_end(ap);
}

static void host_file(const char *path, int rank, char *out, size_t len)
{
	if (rank == 0)
		pathf(out, len, "%s", path);
	else
		pathf(out, len, "%s.host%d", path, rank);
}

int ps__ckpt_check_file(const char *path, int hosts, int rank, char *file, size_t flen, char *msg, size_t len)
{
	char m[PS__MSG_MAX] = "";
	host_file(path, hosts > 1 ? rank : 0, file, flen);
	struct in f;
	int rc = in_open(&f, file, m);
	if (rc == 0)
		rc = check_host(&f, hosts, hosts > 1 ? rank : 0, m);
	in_close(&f);
	snprintf(msg, len, "%s", m);
	return rc;
}

/* ------------------------------------------------------------ several hosts */

enum op { OP_WRITE, OP_RESTORE, OP_POLL };

/* The id in the header of a version 2 file, 0 when there is none. */
static uint64_t file_id(const char *file)
{
	char msg[PS__MSG_MAX];
	struct in f;
	uint64_t id = in_open(&f, file, msg) == 0 ? f.hi.id : 0;
	in_close(&f);
	return id;
}

/* A fresh checkpoint id: random, never 0 (none) nor UINT64_MAX (CKH3). */
static uint64_t new_id(void)
{
	uint64_t id = 0;
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (read(fd, &id, sizeof id) != (ssize_t)sizeof id)
			id = 0;
		close(fd);
	}
	if (id == 0)
		id = ps__mix64(ps__now_ns() ^ (uint64_t)getpid() << 32);
	return id == 0 || id == UINT64_MAX ? 1 : id;
}

/*
 * One agreement over hosts (a PS__BAR_MIN barrier): *v in is this node's
 * value, out the minimum of all.  Once one failed (*lrc set: the link or a
 * peer host is gone, the same for every node of this host), the rest are
 * skipped and *v is left as it is, so every node makes the same calls.
 */
static void agree(ps_world *w, int *lrc, uint64_t *v)
{
	if (*lrc == 0)
		*lrc = w->net->barrier_min(w, v); /* several hosts */
}

/* Test hook (test builds only, libpsmem_test.a): PSMEM_DEBUG_CKPT_DIE=
 * R:STAGE:N kills node 0 of host R at STAGE of the process's N-th
 * checkpoint ("written": its temp file is durable; "commit": host 0, just
 * before it commits).  A release build ignores the variable. */
static void debug_die(const ps_world *w, const char *stage, int nth)
{
#ifdef PS_TEST_HOOKS
	const char *e = getenv("PSMEM_DEBUG_CKPT_DIE");
	char want[64];
	snprintf(want, sizeof want, "%d:%s:%d", w->host, stage, nth);
	if (e && strcmp(e, want) == 0)
		raise(SIGKILL);
#else
	(void)w, (void)stage, (void)nth;
#endif
}

/*
 * Node 0 of host R >= 1, once every host's temp file is durable: tmp
 * becomes PATH.hostR; the file of the committed checkpoint (id committed,
 * host 0's PATH) is kept as PATH.hostR.prev until host 0 commits (CKH3).
 */
static int commit_secondary(const char *file, const char *tmp, uint64_t committed, char *msg)
{
	char prev[PATH_MAX];
	pathf(prev, sizeof prev, "%s.prev", file);
	if (committed && file_id(file) == committed) {
		/* cur is the committed one: it moves to prev (a link first, so
		 * that file never disappears) */
		unlink(prev);
		if (link(file, prev) != 0) {
			int e = errno;
			unlink(tmp);
			say(msg, "cannot keep the previous checkpoint as %s: %s", prev, strerror(e));
			return -e;
		}
	} else if (!committed || file_id(prev) != committed) {
		unlink(prev); /* neither is committed: nothing to keep */
	}
	return commit_tmp(tmp, file, msg);
}

/*
 * Node 0 of every host, checkpoint: the steps between the agreements of
 * collective_hosts (which orders them, CKH3).  id and committed are agreed
 * before; step 1 writes, 2 commits the others, 3 commits host 0.
 */
struct hwrite {
	char file[PATH_MAX], tmp[PATH_MAX];
	bool have_tmp;
};

static int hosts_write(ps_world *w, const char *path, const void *meta, size_t mlen, int prc, int *lrc)
{
	const bool n0 = w->node == 0, h0 = w->host == 0;
	char *msg = w->seg.hdr->ckpt.msg;
	struct hwrite hw = {.have_tmp = false};
	bool done = false; /* host 0: committed */
	static _Atomic int calls; /* relaxed: the test hook's count only */
	int nth = atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed) + 1;
	host_file(path, w->host, hw.file, sizeof hw.file);
	/* the checkpoint's id and the committed one, from host 0 */
	uint64_t id = n0 && h0 ? new_id() : UINT64_MAX;
	agree(w, lrc, &id);
	uint64_t committed = n0 && h0 ? file_id(hw.file) : UINT64_MAX;
	agree(w, lrc, &committed);
	int rc = n0 ? prc : 0; /* prc: node 0 failed before (its message is set) */
	if (n0 && rc == 0 && *lrc == 0) {
		struct hinfo hi = {.hosts = (uint32_t)w->nhosts, .rank = (uint32_t)w->host, .id = id};
		rc = write_tmp(w, hw.file, hw.tmp, meta, mlen, &hi, msg);
		hw.have_tmp = rc == 0;
		if (rc == 0)
			debug_die(w, "written", nth);
	}
	/* 1: every host's temp file is durable */
	uint64_t bad = n0 && rc ? (uint64_t)w->host : UINT64_MAX;
	agree(w, lrc, &bad);
	if (n0 && !h0 && hw.have_tmp) {
		if (*lrc == 0 && bad == UINT64_MAX)
			rc = commit_secondary(hw.file, hw.tmp, committed, msg);
		else
			unlink(hw.tmp);
		hw.have_tmp = false;
	}
	/* 2: every other host's file is in place */
	uint64_t bad2 = n0 && rc ? (uint64_t)w->host : UINT64_MAX;
	agree(w, lrc, &bad2);
	if (n0 && h0 && hw.have_tmp) {
		if (*lrc == 0 && bad == UINT64_MAX && bad2 == UINT64_MAX) {
			debug_die(w, "commit", nth);
			rc = commit_tmp(hw.tmp, hw.file, msg); /* the commit point */
			done = rc == 0;
		} else {
			unlink(hw.tmp);
		}
	}
	/* 3: host 0's verdict */
	uint64_t bad3 = n0 && h0 && rc ? 0 : UINT64_MAX;
	agree(w, lrc, &bad3);
	if (!n0 || rc)
		return rc;
	if (*lrc) {
		say(msg, "the hosts could not agree (%s); %s", ps_strerror(*lrc),
		    done ? "the checkpoint was committed before" : "nothing committed");
		return *lrc;
	}
	uint64_t who = bad != UINT64_MAX ? bad : bad2;
	if (who != UINT64_MAX) {
		say(msg, "host %" PRIu64 " could not write its part (its message says why); nothing committed", who);
		return PS_ECKPT;
	}
	if (bad3 != UINT64_MAX) {
		say(msg, "host 0 could not commit (its message says why); the previous checkpoint stays");
		return PS_ECKPT;
	}
	return 0;
}

/*
 * Node 0 of every host, restore: host 0's PATH names the checkpoint (its
 * id); host R restores from PATH.hostR, or PATH.hostR.prev, whichever is
 * that checkpoint's (CKH3).  Everything is checked on every host before any
 * host assigns (CK3 over hosts).
 */
static int hosts_restore(ps_world *w, const char *path, int *lrc)
{
	const bool n0 = w->node == 0, h0 = w->host == 0;
	struct ps__ckpt *c = &w->seg.hdr->ckpt;
	char *msg = c->msg;
	char file[PATH_MAX], prev[PATH_MAX];
	host_file(path, w->host, file, sizeof file);
	pathf(prev, sizeof prev, "%s.prev", file);
	ps_table *t[PS__MAX_TABLES];
	int n = saved_tables(w, t);
	struct in f = {.fd = -1};
	int rc = 0;
	if (n0) {
		rc = in_open(&f, file, msg);
		if (rc == 0)
			rc = check_host(&f, w->nhosts, w->host, msg);
	}
	uint64_t id = !(n0 && h0) ? UINT64_MAX : rc ? 0 : f.hi.id;
	agree(w, lrc, &id);
	if (n0 && rc == 0 && *lrc == 0 && !h0 && id == 0) {
		say(msg, "host 0's file was refused (its message says why)");
		rc = PS_ECKPT;
	}
	if (n0 && rc == 0 && *lrc == 0 && !h0 && f.hi.id != id) {
		uint64_t mine = f.hi.id;
		struct in p;
		char m2[PS__MSG_MAX];
		if (in_open(&p, prev, m2) == 0 && check_host(&p, w->nhosts, w->host, m2) == 0 && p.hi.id == id) {
			in_close(&f);
			f = p;
			snprintf(file, sizeof file, "%s", prev);
		} else {
			in_close(&p);
			say(msg,
			    "checkpoint %016" PRIx64 "; host 0's %s is checkpoint %016" PRIx64
			    " and %s.prev is not it either: not the same checkpoint",
			    mine, path, id, file);
			rc = PS_ECKPT;
		}
	}
	if (n0 && rc == 0 && *lrc == 0)
		rc = check_shapes(&f, t, n, msg);
	if (n0 && rc == 0 && *lrc == 0)
		rc = check_data(&f, msg);
	if (n0 && rc == 0 && *lrc == 0)
		rc = check_home(&f, t, n, msg);
	uint64_t bad = n0 && rc ? (uint64_t)w->host : UINT64_MAX;
	agree(w, lrc, &bad);
	if (n0 && rc == 0 && *lrc == 0 && bad == UINT64_MAX)
		rc = assign_all(w, &f, t, n, msg);
	uint64_t bad2 = n0 && rc ? (uint64_t)w->host : UINT64_MAX;
	agree(w, lrc, &bad2);
	in_close(&f);
	if (!n0)
		return 0;
	pathf(c->path, sizeof c->path, "%s", file); /* the file the metadata comes from */
	if (rc)
		return rc;
	if (*lrc) {
		say(msg, "the hosts could not agree (%s)", ps_strerror(*lrc));
		return *lrc;
	}
	if (bad != UINT64_MAX) {
		say(msg, "host %" PRIu64 "'s file was refused (its message says why); nothing changed", bad);
		return PS_ECKPT;
	}
	if (bad2 != UINT64_MAX) {
		say(msg, "host %" PRIu64 " failed while assigning (its message says why); this host's keys are restored",
		    bad2);
		return PS_ECKPT;
	}
	return n;
}

/* ------------------------------------------------------------ collective */

struct meta_out {
	void *buf;
	size_t cap;
	size_t *len;
};

/* Node 0, before barrier A of a poll: takes a pending outside request (CK5). */
static bool latch_request(ps_world *w)
{
	struct ps__ckpt *c = &w->seg.hdr->ckpt;
	uint32_t want = PS__REQ_PENDING;
	/* acquire: req_path written by the requester before PENDING */
	if (!atomic_compare_exchange_strong_explicit(&c->req_state, &want, PS__REQ_LATCHED, memory_order_acquire,
						     memory_order_relaxed))
		return false;
	memcpy(c->path, c->req_path, sizeof c->path);
	c->path[sizeof c->path - 1] = 0;
	c->latch_idx = w->node_calls + 1; /* barrier A's index + 1 (0: none) */
	return true;
}

/* Node 0, after the work of a latched poll: answers the requester (CK5). */
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

/*
 * A multi-host job (CKH1-CKH4): the same two node barriers A and B as on one
 * host, and between them a fixed sequence of agreements over hosts that
 * every node of every host makes (node 0 works between them).  No restart
 * replay here: psrun refuses --on-failure restart with several hosts.
 */
static int collective_hosts(ps_world *w, enum op op, const char *path, const void *meta, size_t mlen,
			    const struct meta_out *mo)
{
	struct ps__ckpt *c = &w->seg.hdr->ckpt;
	const bool n0 = w->node == 0;
	bool latched = false;
	int rc = 0, lrc = 0;
	if (op == OP_POLL && n0 && (latched = latch_request(w)))
		rc = w->net->ckpt_send(w, c->path); /* before the agreement below (CKH4) */
	if (op != OP_RESTORE)
		for (int i = 0; i < w->ntables && i < PS__MAX_TABLES; i++)
			if (w->tables[i] && !(w->tables[i]->flags & PS_TRANSIENT))
				ps_sync(w->tables[i]);
	int brc = ps__node_barrier(w, NULL); /* A */
	if (brc)
		return brc;
	if (n0) {
		c->msg[0] = 0;
		c->path[sizeof c->path - 1] = 0;
	}
	char base[PS__PATH_MAX];
	snprintf(base, sizeof base, "%s", path ? path : "");
	if (op == OP_POLL) {
		/* CKH4: the lowest host that latched a request, else none */
		uint64_t who = n0 && latched && rc == 0 ? (uint64_t)w->host : UINT64_MAX;
		agree(w, &lrc, &who);
		if (n0) {
			char p[PS__PATH_MAX] = "";
			bool got = w->net->ckpt_take(w, (int)who, p, sizeof p) == 0;
			if (who == (uint64_t)w->host)
				snprintf(base, sizeof base, "%s", c->path);
			else if (got)
				snprintf(base, sizeof base, "%s", p);
			if (latched && who != (uint64_t)w->host) {
				/* another host's request is served at this poll:
				 * ours waits for the next one */
				atomic_store_explicit(&c->req_state, PS__REQ_PENDING, memory_order_release);
				latched = false;
			}
		}
		if (lrc == 0 && who == UINT64_MAX) {
			rc = ps__node_barrier(w, NULL); /* B */
			return rc ? rc : 0;
		}
		if (n0 && lrc == 0 && !base[0]) {
			say(c->msg, "host %" PRIu64 "'s checkpoint request did not arrive", who);
			rc = PS_ECKPT;
		}
	}
	int wrc = 0;
	if (op == OP_RESTORE)
		wrc = hosts_restore(w, base, &lrc);
	else
		wrc = hosts_write(w, base, meta, mlen, rc, &lrc);
	if (n0) {
		rc = wrc;
		c->rc = rc;
		if (op != OP_RESTORE)
			host_file(base, w->host, c->path, sizeof c->path);
		if (latched)
			answer_request(w, rc);
	}
	brc = ps__node_barrier(w, NULL); /* B: orders c->rc, c->msg, c->path (CK2) */
	if (brc)
		return brc;
	rc = c->rc;
	char where[PS__PATH_MAX];
	snprintf(where, sizeof where, "%s", c->path);
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
	return op == OP_POLL ? 1 : rc;
}

static int collective(ps_world *w, enum op op, const char *path, const void *meta, size_t mlen,
		      const struct meta_out *mo)
{
	struct ps__ckpt *c = &w->seg.hdr->ckpt;
	w->ckpt_err[0] = 0;
	if (w->nhosts > 1)
		return collective_hosts(w, op, path, meta, mlen, mo);
	if (op == OP_POLL && w->node == 0 && !ps__node_replaying(w))
		(void)latch_request(w);
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
	 * and B may have left it half done: do it again (CK2) */
	bool done = ps__node_replaying(w);
	if (op == OP_POLL) /* everyone agrees whether this poll writes (CK5) */
		path = c->latch_idx == idx + 1 ? c->path : NULL;
	if (w->node == 0 && !done) {
		c->msg[0] = 0;
		c->rc = path ? node0_work(w, op, path, meta, mlen) : 0;
	}
	rc = ps__node_barrier(w, NULL); /* B: orders c->rc and c->msg (CK2) */
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
