/*
 * ckpt_read.c - reading a checkpoint file back: open and check header,
 * shapes, checksums and host part before changing anything (CK3), then
 * assign every key under its slot lock (CK4).  Format: checkpoint.c.
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
#include "ckpt_in.h"

/* ------------------------------------------------------------ reading */

/* Table entry i of an open file's header. */
static const unsigned char *entry(const struct in *f, uint32_t i)
{
	return f->h + f->fixed + CK_TENTRY * i;
}

void ps__ck_in_close(struct in *f)
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
				ps__ck_say(msg, "truncated at byte %" PRIu64 " while reading", off + done);
			else
				ps__ck_say(msg, "cannot read: %s", strerror(e));
			return r == 0 ? PS_ECKPT : -e;
		}
		done += (size_t)r;
	}
	return 0;
}

static int truncated(char *msg, uint64_t at, uint64_t want)
{
	ps__ck_say(msg, "truncated at byte %" PRIu64 " (expected %" PRIu64 " bytes)", at, want);
	return PS_ECKPT;
}

/* Opens a checkpoint and checks its header and length (CK3). */
int ps__ck_in_open(struct in *f, const char *path, char *msg)
{
	memset(f, 0, sizeof *f);
	f->fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (f->fd < 0 || fstat(f->fd, &st) != 0) {
		int e = errno;
		ps__ck_say(msg, "cannot open: %s", strerror(e));
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
		ps__ck_say(msg, "not a psmem checkpoint (bad magic)");
		return PS_ECKPT;
	}
	if (have < 12)
		return truncated(msg, f->size, CK_FIXED);
	uint32_t version = get32(fx + 8);
	if (version != CK_VERSION && version != CK_VERSION_HOSTS) {
		ps__ck_say(msg, "checkpoint format version %u; this psmem reads versions %u and %u", version, CK_VERSION,
		    CK_VERSION_HOSTS);
		return PS_ECKPT;
	}
	f->fixed = version == CK_VERSION ? CK_FIXED : CK_FIXED2;
	if (have < f->fixed)
		return truncated(msg, f->size, f->fixed);
	f->H = get32(fx + 12);
	f->ntables = get32(fx + 20);
	f->mlen = get32(fx + 24);
	f->hi = ps__ck_one_host;
	if (version == CK_VERSION_HOSTS)
		f->hi = (struct hinfo){.hosts = get32(fx + 40), .rank = get32(fx + 44), .id = get64(fx + 48)};
	if (f->ntables > PS__MAX_TABLES || f->mlen > PS_CKPT_META_MAX ||
	    f->H != f->fixed + CK_TENTRY * f->ntables + f->mlen || f->hi.hosts < 1 ||
	    f->hi.hosts > PS__MAX_HOSTS_CK || f->hi.rank >= f->hi.hosts || (version == CK_VERSION_HOSTS && f->hi.hosts < 2)) {
		ps__ck_say(msg, "corrupt header (its lengths do not add up)");
		return PS_ECKPT;
	}
	if (f->size < f->H)
		return truncated(msg, f->size, f->H);
	f->h = malloc(f->H);
	if (!f->h) {
		ps__ck_say(msg, "out of memory");
		return -ENOMEM;
	}
	if ((rc = read_at(f, 0, f->h, f->H, msg)) != 0)
		return rc;
	if (ps__ck_crc_of((uint32_t)crc32(0, NULL, 0), f->h + 20, f->H - 20) != get32(f->h + 16)) {
		ps__ck_say(msg, "corrupt header (header checksum mismatch)");
		return PS_ECKPT;
	}
	uint64_t data = 0;
	for (uint32_t i = 0; i < f->ntables; i++) {
		const unsigned char *e = entry(f, i);
		uint64_t k0, k1;
		ps__ck_range_of(get64(e), f->hi.hosts, f->hi.rank, &k0, &k1);
		data += (k1 - k0) * ((uint64_t)get32(e + 8) + get32(e + 12)) * 4;
	}
	f->total = f->H + data + 4;
	if (get64(f->h + 32) != f->total) {
		ps__ck_say(msg, "corrupt header (file length %" PRIu64 ", its tables need %" PRIu64 ")", get64(f->h + 32),
		    f->total);
		return PS_ECKPT;
	}
	if (f->size < f->total)
		return truncated(msg, f->size, f->total);
	if (f->size > f->total) {
		ps__ck_say(msg, "%" PRIu64 " unexpected bytes after the end of the checkpoint", f->size - f->total);
		return PS_ECKPT;
	}
	return 0;
}

/* The file's tables against the job's (CK3). */
int ps__ck_check_shapes(const struct in *f, ps_table **t, int n, char *msg)
{
	if ((int)f->ntables != n) {
		ps__ck_say(msg, "holds %u table%s; this job has %d (transient tables not counted)", f->ntables,
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
		else if ((a = get32(e + 16)) != (b = ps__ck_table_rule(t[i]->d)))
			field = "rule";
		if (field) {
			ps__ck_say(msg, "table %d: %s is %" PRIu64 " in the file, %" PRIu64 " in this job", t[i]->id, field, a, b);
			return PS_ESHAPE;
		}
	}
	return 0;
}

/* First pass: the data checksum (CK3). */
int ps__ck_check_data(const struct in *f, char *msg)
{
	unsigned char *buf = malloc(CK_IO);
	if (!buf) {
		ps__ck_say(msg, "out of memory");
		return -ENOMEM;
	}
	uint32_t crc = (uint32_t)crc32(0, NULL, 0);
	int rc = 0;
	for (uint64_t off = f->H; off < f->total - 4 && rc == 0;) {
		size_t m = f->total - 4 - off < CK_IO ? (size_t)(f->total - 4 - off) : CK_IO;
		rc = read_at(f, off, buf, m, msg);
		crc = ps__ck_crc_of(crc, buf, m);
		off += m;
	}
	unsigned char tail[4];
	if (rc == 0)
		rc = read_at(f, f->total - 4, tail, 4, msg);
	if (rc == 0 && get32(tail) != crc) {
		ps__ck_say(msg, "checksum mismatch (stored %08x, computed %08x): the data is corrupted", get32(tail), crc);
		rc = PS_ECKPT;
	}
	free(buf);
	return rc;
}

/* A file of hosts > 1 needs the job's host count and its rank (CKH1). */
int ps__ck_check_host(const struct in *f, int hosts, int rank, char *msg)
{
	if (f->hi.hosts == 1 && hosts == 1)
		return 0;
	if (f->hi.hosts == 1) {
		ps__ck_say(msg, "a checkpoint of a one-host job; this job has %d hosts", hosts);
		return PS_ESHAPE;
	}
	if ((int)f->hi.hosts != hosts) {
		ps__ck_say(msg, "a checkpoint of host %u of a %u-host job; this job has %d host%s", f->hi.rank, f->hi.hosts,
		    hosts, hosts == 1 ? "" : "s");
		return PS_ESHAPE;
	}
	if ((int)f->hi.rank != rank) {
		ps__ck_say(msg, "a checkpoint of host %u of a %u-host job; this is host %d", f->hi.rank, f->hi.hosts, rank);
		return PS_ECKPT;
	}
	return 0;
}

/* Every key of this host's range is at home before a restore assigns (CKH2). */
int ps__ck_check_home(const struct in *f, ps_table **t, int n, char *msg)
{
	for (int i = 0; i < n; i++) {
		uint64_t k0, k1;
		ps__ck_range_of(t[i]->num_keys, f->hi.hosts, f->hi.rank, &k0, &k1);
		for (ps_key k = k0; k < k1; k++) {
			/* acquire: pairs with the release publish of loc[k] */
			uint64_t lw = atomic_load_explicit(&t[i]->loc[k], memory_order_acquire);
			if (PS__LOC_IS_REMOTE(lw)) {
				ps__ck_say(msg,
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
int ps__ck_assign_all(ps_world *w, const struct in *f, ps_table **t, int n, char *msg)
{
	uint32_t *buf = malloc(CK_IO + 4 * 65536);
	if (!buf) {
		ps__ck_say(msg, "out of memory");
		return -ENOMEM;
	}
	int rc = 0;
	uint64_t off = f->H;
	for (int i = 0; i < n && rc == 0; i++) {
		size_t per = ps__ck_keys_per_chunk(t[i]);
		uint64_t k0, k1;
		ps__ck_range_of(t[i]->num_keys, f->hi.hosts, f->hi.rank, &k0, &k1);
		for (ps_key k = k0; k < k1 && rc == 0; k += per) {
			size_t m = k1 - k < per ? (size_t)(k1 - k) : per;
			size_t bytes = m * ps__ck_floats_per_key(t[i]) * 4;
			rc = read_at(f, off, buf, bytes, msg);
			if (rc == 0 && ps__ck_keys_access(w, t[i], k, m, buf, true, NULL) != 0) {
				ps__ck_say(msg, "table %d: a key moved to another host during the restore", t[i]->id);
				rc = -ENOTSUP;
			}
			off += bytes;
		}
	}
	free(buf);
	return rc;
}

/* Node 0: the whole restore. */
int ps__ck_restore_file(ps_world *w, const char *path, char *msg)
{
	ps_table *t[PS__MAX_TABLES];
	int n = ps__ck_saved_tables(w, t);
	struct in f;
	int rc = ps__ck_in_open(&f, path, msg);
	if (rc == 0)
		rc = ps__ck_check_host(&f, 1, 0, msg);
	if (rc == 0)
		rc = ps__ck_check_shapes(&f, t, n, msg);
	if (rc == 0)
		rc = ps__ck_check_data(&f, msg);
	if (rc == 0)
		rc = ps__ck_assign_all(w, &f, t, n, msg);
	ps__ck_in_close(&f);
	return rc ? rc : n;
}

/* Every node: the metadata of a file node 0 has restored from. */
int ps__ck_read_meta(const char *path, void *meta, size_t cap, size_t *len, char *msg)
{
	struct in f;
	int rc = ps__ck_in_open(&f, path, msg);
	if (rc == 0) {
		if (meta && cap)
			memcpy(meta, f.h + f.fixed + CK_TENTRY * f.ntables, f.mlen < cap ? f.mlen : cap);
		if (len)
			*len = f.mlen;
		rc = (int)f.ntables;
	}
	ps__ck_in_close(&f);
	return rc;
}

/* The file of host rank of a checkpoint to path: path itself for host 0
 * (and a one-host job), path.hostR for the others (CKH1). */
__attribute__((format(printf, 3, 4)))
void ps__ck_pathf(char *out, size_t len, const char *fmt, ...)
{
	/* paths are at most PS__PATH_MAX - 32 long (check_path): the
	 * suffixes fit */
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(out, len, fmt, ap);
	va_end(ap);
}

void ps__ck_host_file(const char *path, int rank, char *out, size_t len)
{
	if (rank == 0)
		ps__ck_pathf(out, len, "%s", path);
	else
		ps__ck_pathf(out, len, "%s.host%d", path, rank);
}

int ps__ckpt_check_file(const char *path, int hosts, int rank, char *file, size_t flen, char *msg, size_t len)
{
	char m[PS__MSG_MAX] = "";
	ps__ck_host_file(path, hosts > 1 ? rank : 0, file, flen);
	struct in f;
	int rc = ps__ck_in_open(&f, file, m);
	if (rc == 0)
		rc = ps__ck_check_host(&f, hosts, hosts > 1 ? rank : 0, m);
	ps__ck_in_close(&f);
	snprintf(msg, len, "%s", m);
	return rc;
}
