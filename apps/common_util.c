/*
 * common_util.c - string-to-id maps, the progress line and the JSON
 * summary of the apps.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

/* ------------------------------------------------------------- id maps */

/* Open addressing on FNV-1a hashes; names kept in one growing arena. */
struct app_idmap {
	int64_t *slots;  /* id + 1, 0 = empty */
	uint64_t *hashes;
	size_t cap, n;
	char *names;     /* NUL-separated names */
	size_t names_len, names_cap;
	size_t *name_off;/* id -> offset in names */
	size_t off_cap;
};

static uint64_t fnv1a(const char *s, size_t len)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ULL;
	}
	return h;
}

app_idmap *app_idmap_new(void)
{
	app_idmap *m = calloc(1, sizeof *m);
	if (!m)
		app_die("out of memory");
	m->cap = 1024;
	m->slots = calloc(m->cap, sizeof *m->slots);
	m->hashes = calloc(m->cap, sizeof *m->hashes);
	if (!m->slots || !m->hashes)
		app_die("out of memory");
	return m;
}

void app_idmap_free(app_idmap *m)
{
	if (!m)
		return;
	free(m->slots);
	free(m->hashes);
	free(m->names);
	free(m->name_off);
	free(m);
}

static void grow(app_idmap *m)
{
	size_t cap = m->cap * 2;
	int64_t *slots = calloc(cap, sizeof *slots);
	uint64_t *hashes = calloc(cap, sizeof *hashes);
	if (!slots || !hashes)
		app_die("out of memory");
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->slots[i])
			continue;
		size_t j = m->hashes[i] & (cap - 1);
		while (slots[j])
			j = (j + 1) & (cap - 1);
		slots[j] = m->slots[i];
		hashes[j] = m->hashes[i];
	}
	free(m->slots);
	free(m->hashes);
	m->slots = slots;
	m->hashes = hashes;
	m->cap = cap;
}

const char *app_idmap_name(const app_idmap *m, int64_t id)
{
	if (id < 0 || (size_t)id >= m->n)
		return NULL;
	return m->names + m->name_off[id];
}

int64_t app_idmap_get(app_idmap *m, const char *s, size_t len, bool insert)
{
	uint64_t h = fnv1a(s, len);
	size_t j = h & (m->cap - 1);
	while (m->slots[j]) {
		if (m->hashes[j] == h) {
			const char *name = m->names + m->name_off[m->slots[j] - 1];
			if (strncmp(name, s, len) == 0 && name[len] == 0)
				return m->slots[j] - 1;
		}
		j = (j + 1) & (m->cap - 1);
	}
	if (!insert)
		return -1;
	if (m->names_len + len + 1 > m->names_cap) {
		m->names_cap = (m->names_cap + len + 1) * 2;
		m->names = realloc(m->names, m->names_cap);
	}
	if (m->n == m->off_cap) {
		m->off_cap = m->off_cap ? m->off_cap * 2 : 1024;
		m->name_off = realloc(m->name_off, m->off_cap * sizeof *m->name_off);
	}
	if (!m->names || !m->name_off)
		app_die("out of memory");
	memcpy(m->names + m->names_len, s, len);
	m->names[m->names_len + len] = 0;
	m->name_off[m->n] = m->names_len;
	m->names_len += len + 1;
	int64_t id = (int64_t)m->n++;
	m->slots[j] = id + 1;
	m->hashes[j] = h;
	if (m->n * 2 > m->cap)
		grow(m);
	return id;
}

size_t app_idmap_size(const app_idmap *m) { return m->n; }

/* ------------------------------------------------------------ progress */

static void fmt_secs(char *buf, size_t len, double s)
{
	if (!isfinite(s) || s < 0)
		snprintf(buf, len, "--:--");
	else if (s < 3600)
		snprintf(buf, len, "%d:%02d", (int)s / 60, (int)s % 60);
	else
		snprintf(buf, len, "%d:%02d:%02d", (int)s / 3600, (int)s / 60 % 60, (int)s % 60);
}

static void fmt_rate(char *buf, size_t len, double r)
{
	if (r >= 1e6)
		snprintf(buf, len, "%.2fM", r / 1e6);
	else if (r >= 1e3)
		snprintf(buf, len, "%.1fk", r / 1e3);
	else
		snprintf(buf, len, "%.0f", r);
}

void app_progress_start(app_progress *p, const char *what, uint64_t total)
{
	snprintf(p->what, sizeof p->what, "%s", what);
	p->total = total;
	p->t0 = p->last = app_now();
	p->tty = isatty(STDOUT_FILENO);
}

static void progress_line(app_progress *p, uint64_t done, double loss, const char *extra, bool final)
{
	double el = app_now() - p->t0;
	double rate = el > 0 ? (double)done / el : 0;
	char r[32], e[32], eta[32];
	fmt_rate(r, sizeof r, rate);
	fmt_secs(e, sizeof e, el);
	fmt_secs(eta, sizeof eta, p->total && rate > 0 ? (double)(p->total - (done < p->total ? done : p->total)) / rate : -1);
	if (p->tty)
		fputs("\r\033[K", stdout);
	printf("%s:", p->what);
	if (p->total)
		printf(" %5.1f%%", 100.0 * (double)done / (double)p->total);
	printf("  %s items/s  elapsed %s", r, e);
	if (!final)
		printf("  ETA %s", eta);
	if (isfinite(loss))
		printf("  loss %.4f", loss);
	if (extra && *extra)
		printf("  %s", extra);
	if (final || !p->tty)
		putchar('\n');
	fflush(stdout);
}

void app_progress_update(app_progress *p, uint64_t done, double loss)
{
	if (!p->tty)
		return;
	double now = app_now();
	if (now - p->last < 0.2)
		return;
	p->last = now;
	progress_line(p, done, loss, NULL, false);
}

void app_progress_end(app_progress *p, uint64_t done, double loss, const char *extra)
{
	progress_line(p, done, loss, extra, true);
}

/* ---------------------------------------------------------------- JSON */

struct app_json {
	char *buf;
	size_t len, cap;
};

static void jput(app_json *j, const char *s)
{
	size_t l = strlen(s);
	if (j->len + l + 1 > j->cap) {
		j->cap = (j->cap + l + 1) * 2;
		j->buf = realloc(j->buf, j->cap);
		if (!j->buf)
			app_die("out of memory");
	}
	memcpy(j->buf + j->len, s, l + 1);
	j->len += l;
}

static void jstring(app_json *j, const char *s)
{
	char tmp[8];
	jput(j, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			tmp[0] = '\\';
			tmp[1] = (char)c;
			tmp[2] = 0;
		} else if (c < 0x20) {
			snprintf(tmp, sizeof tmp, "\\u%04x", c);
		} else {
			tmp[0] = (char)c;
			tmp[1] = 0;
		}
		jput(j, tmp);
	}
	jput(j, "\"");
}

static void jkey(app_json *j, const char *key)
{
	jput(j, j->len > 1 ? ", " : "");
	jstring(j, key);
	jput(j, ": ");
}

app_json *app_json_new(const char *app)
{
	app_json *j = calloc(1, sizeof *j);
	if (!j)
		app_die("out of memory");
	jput(j, "{");
	app_json_str(j, "app", app);
	return j;
}

void app_json_str(app_json *j, const char *key, const char *val)
{
	jkey(j, key);
	jstring(j, val);
}

void app_json_num(app_json *j, const char *key, double val)
{
	char tmp[64];
	jkey(j, key);
	if (isfinite(val))
		snprintf(tmp, sizeof tmp, "%.17g", val);
	else
		snprintf(tmp, sizeof tmp, "null");
	jput(j, tmp);
}

void app_json_int(app_json *j, const char *key, int64_t val)
{
	char tmp[32];
	jkey(j, key);
	snprintf(tmp, sizeof tmp, "%lld", (long long)val);
	jput(j, tmp);
}

void app_json_int_rows(app_json *j, const char *key, const int64_t *v, size_t rows, size_t cols)
{
	char tmp[32];
	jkey(j, key);
	jput(j, "[");
	for (size_t r = 0; r < rows; r++) {
		jput(j, r ? ", [" : "[");
		for (size_t c = 0; c < cols; c++) {
			snprintf(tmp, sizeof tmp, "%s%lld", c ? ", " : "", (long long)v[r * cols + c]);
			jput(j, tmp);
		}
		jput(j, "]");
	}
	jput(j, "]");
}

void app_json_host_events(app_json *j, const char *what, const int64_t *epoch, size_t hosts)
{
	char key[64];
	int64_t n = 0;
	for (size_t h = 0; h < hosts; h++)
		n += epoch[h] > 0;
	snprintf(key, sizeof key, "hosts_%s", what);
	app_json_int(j, key, n);
	snprintf(key, sizeof key, "host_%s_epoch", what);
	app_json_int_rows(j, key, epoch, 1, hosts);
}

void app_json_write(app_json *j, const char *path)
{
	jput(j, "}\n");
	if (strcmp(path, "-") == 0) {
		fputs(j->buf, stdout);
		fflush(stdout);
	} else {
		size_t plen = strlen(path) + 16;
		char *tmp = malloc(plen);
		if (!tmp)
			app_die("out of memory");
		snprintf(tmp, plen, "%s.tmp%d", path, (int)getpid());
		FILE *f = fopen(tmp, "w");
		if (!f)
			app_die("%s: cannot write: %s", path, strerror(errno));
		bool ok = fputs(j->buf, f) >= 0;
		ok &= fflush(f) == 0 && fsync(fileno(f)) == 0;
		ok &= fclose(f) == 0;
		if (!ok || rename(tmp, path) != 0) {
			int e = errno;
			unlink(tmp);
			app_die("%s: cannot write: %s", path, strerror(e));
		}
		free(tmp);
	}
	free(j->buf);
	free(j);
}

void app_json_write_host(app_json *j, const char *path, int host)
{
	if (host == 0 || strcmp(path, "-") == 0) {
		app_json_write(j, path);
		return;
	}
	size_t plen = strlen(path) + 32;
	char *p = malloc(plen);
	if (!p)
		app_die("out of memory");
	snprintf(p, plen, "%s.host%d", path, host);
	app_json_write(j, p);
	free(p);
}

void app_json_split(app_json *j, const char *what, int host, int hosts, int nodes, const uint64_t *last,
		    const uint64_t *all)
{
	app_json_int(j, "host", host);
	app_json_int(j, "hosts", hosts);
	uint64_t mine = 0, every = 0, job = 0;
	char key[64];
	for (int n = 0; n < hosts * nodes; n++) {
		job += last[n];
		if (n / nodes != host)
			continue;
		mine += last[n];
		every += all[n];
		snprintf(key, sizeof key, "%s_per_epoch_node%d", what, n % nodes);
		app_json_int(j, key, (int64_t)last[n]);
	}
	snprintf(key, sizeof key, "%s_per_epoch", what);
	app_json_int(j, key, (int64_t)mine);
	snprintf(key, sizeof key, "%s_trained", what);
	app_json_int(j, key, (int64_t)every);
	snprintf(key, sizeof key, "job_%s_per_epoch", what);
	app_json_int(j, key, (int64_t)job);
}
