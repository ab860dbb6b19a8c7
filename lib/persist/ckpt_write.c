/*
 * ckpt_write.c - writing a checkpoint file: header, tables' data in key
 * chunks (pulling keys that moved to other hosts), a temp file made durable
 * and renamed over PATH (CK1).  Format: checkpoint.c.
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

/* ------------------------------------------------------------ writing */

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
	const uint32_t fx = ps__ck_fixed_len(hi->hosts);
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
		ps__ck_range_of(t[i]->num_keys, hi->hosts, hi->rank, &k0, &k1);
		put64(e, t[i]->num_keys);
		put32(e + 8, t[i]->value_len);
		put32(e + 12, t[i]->d->state_len);
		put32(e + 16, ps__ck_table_rule(t[i]->d));
		put32(e + 20, t[i]->flags);
		put32(e + 24, (uint32_t)t[i]->id);
		data += (k1 - k0) * ps__ck_floats_per_key(t[i]) * 4;
	}
	if (mlen)
		memcpy(h + fx + CK_TENTRY * (uint32_t)n, meta, mlen);
	*total = H + data + 4;
	put64(h + 32, *total);
	put32(h + 16, ps__ck_crc_of((uint32_t)crc32(0, NULL, 0), h + 20, H - 20));
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
		ps__ck_say(msg,
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
		ps__ck_say(msg, "table %d: pulling the keys held by other hosts: %s", t->id, ps_strerror(rc));
	free(keys);
	free(vals);
	return rc;
}

static int write_data(ps_world *w, struct out *o, ps_table **t, int n, uint32_t *crc, const struct hinfo *hi,
		      char *msg)
{
	uint32_t *buf = malloc(CK_IO + 4 * 65536);
	uint32_t *rpos = hi->hosts > 1 ? malloc(CK_IO) : NULL; /* ps__ck_keys_per_chunk <= CK_IO / 4 */
	if (!buf || (hi->hosts > 1 && !rpos)) {
		free(buf);
		free(rpos);
		ps__ck_say(msg, "out of memory");
		return -ENOMEM;
	}
	int rc = 0;
	for (int i = 0; i < n && rc == 0; i++) {
		size_t per = ps__ck_keys_per_chunk(t[i]);
		uint64_t k0, k1;
		ps__ck_range_of(t[i]->num_keys, hi->hosts, hi->rank, &k0, &k1);
		for (ps_key k = k0; k < k1 && rc == 0; k += per) {
			size_t m = k1 - k < per ? (size_t)(k1 - k) : per;
			size_t nr = ps__ck_keys_access(w, t[i], k, m, buf, false, rpos);
			if (nr && (rc = pull_moved(t[i], k, buf, rpos, nr, msg)) != 0)
				break;
			size_t bytes = m * ps__ck_floats_per_key(t[i]) * 4;
			*crc = ps__ck_crc_of(*crc, buf, bytes);
			if ((rc = out_put(o, buf, bytes)) != 0)
				ps__ck_say(msg, "cannot write: %s", strerror(-rc));
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
void ps__ck_sweep_temps(const char *path)
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
int ps__ck_write_tmp(ps_world *w, const char *path, char *tmp, const void *meta, size_t mlen,
		     const struct hinfo *hi, char *msg)
{
	ps_table *t[PS__MAX_TABLES];
	int n = ps__ck_saved_tables(w, t);
	unsigned char *h = malloc(CK_FIXED2 + CK_TENTRY * PS__MAX_TABLES + PS_CKPT_META_MAX);
	struct out o = {.fd = -1, .buf = malloc(CK_IO)};
	if (!h || !o.buf) {
		free(h);
		free(o.buf);
		ps__ck_say(msg, "out of memory");
		return -ENOMEM;
	}
	ps__ck_sweep_temps(path);
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
			ps__ck_say(msg, "%s: %s", what, strerror(-rc));
	}
	free(h);
	free(o.buf);
	return rc;
}

/* Renames tmp over file and syncs the directory (CK1). */
int ps__ck_commit_tmp(const char *tmp, const char *file, char *msg)
{
	if (rename(tmp, file) != 0) {
		int e = errno;
		unlink(tmp);
		ps__ck_say(msg, "cannot rename the temp file to it: %s", strerror(e));
		return -e;
	}
	int rc = fsync_dir(file);
	if (rc)
		ps__ck_say(msg, "cannot sync its directory: %s", strerror(-rc));
	return rc;
}

/* Node 0 of a one-host job: the whole checkpoint (CK1). */
int ps__ck_write_file(ps_world *w, const char *path, const void *meta, size_t mlen, char *msg)
{
	char tmp[PATH_MAX];
	int rc = ps__ck_write_tmp(w, path, tmp, meta, mlen, &ps__ck_one_host, msg);
	return rc ? rc : ps__ck_commit_tmp(tmp, path, msg);
}
