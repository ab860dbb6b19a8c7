/*
 * common_util.c - string-to-id maps, the progress line and the JSON
 * summary of the apps.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
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
	app_test_stall(p->what);
}

void app_test_stall(const char *what)
{
	const char *e = getenv("APP_TEST_STALL");
	if (!e || strcmp(e, what) != 0)
		return;
	fflush(stdout);
	for (;;) /* until the test kills this host */
		pause();
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

/* -------------------------------------------- hosts lost, joined, leaving */

void app_members_init(struct app_members *m, ps_world *w, long start)
{
	memset(m, 0, sizeof *m);
	if (pthread_mutex_init(&m->lock, NULL) != 0)
		app_die("pthread_mutex_init failed");
	m->host = ps_host_id(w);
	m->node = ps_node_id(w);
	m->nodes = ps_num_nodes(w);
	m->viewed = -1;
	if (ps_joined(w) == 1) { /* the set comes with the first sync */
		m->epoch = -1;
		return;
	}
	/* the hosts present, not 0 .. ps_num_hosts - 1: in an elastic job
	 * ps_num_hosts counts the host ranks that may join */
	int n = ps_hosts_alive(w, m->alive, APP_HOSTS_MAX);
	if (n < 0)
		app_die("ps_hosts_alive: %s", ps_strerror(n));
	for (int h = 0; h < APP_HOSTS_MAX; h++)
		if (m->alive[h])
			m->seen = h + 1;
	m->epoch = start;
}

void app_members_destroy(struct app_members *m)
{
	pthread_mutex_destroy(&m->lock);
}

/* The split of m's set (under the lock, or before the workers start). */
static void members_split(const struct app_members *m, struct app_split *s, uint8_t *alive)
{
	s->present = s->place = 0;
	for (int h = 0; h < m->seen; h++) {
		s->present += m->alive[h];
		s->place += m->alive[h] && h < m->host;
	}
	s->gnode = s->place * m->nodes + m->node;
	s->gnodes = s->present * m->nodes;
	s->changed = false;
	if (alive) {
		memset(alive, 0, APP_HOSTS_MAX);
		memcpy(alive, m->alive, (size_t)m->seen);
	}
}

void app_members_split(struct app_members *m, struct app_split *s, uint8_t *alive)
{
	pthread_mutex_lock(&m->lock);
	members_split(m, s, alive);
	pthread_mutex_unlock(&m->lock);
}

void app_members_vote(struct app_members *m, ps_world *w, long e, const struct app_votes *v)
{
	pthread_mutex_lock(&m->lock);
	if (v && m->viewed != e) { /* the node's first worker here: one view for all */
		uint8_t view[APP_HOSTS_MAX] = {0};
		int n = ps_hosts_alive(w, view, APP_HOSTS_MAX);
		if (n < 0)
			app_die("ps_hosts_alive: %s", ps_strerror(n));
		m->viewed = e;
		float *one = calloc((size_t)v->vlen, sizeof *one);
		if (!one)
			app_die("out of memory");
		one[0] = 1;
		for (int h = 0; h < m->seen; h++) {
			if (!m->alive[h] || view[h])
				continue;
			ps_key k = v->base + (ps_key)h;
			int rc = ps_push_sync(v->t, &k, 1, one);
			if (rc)
				app_die("push of a vote: %s", ps_strerror(rc));
		}
		free(one);
	}
	pthread_mutex_unlock(&m->lock);
}

/* The votes of the hosts with now[h] set: a host with one is cleared. */
static void members_votes(uint8_t *now, const struct app_votes *v)
{
	ps_key *keys = malloc(APP_HOSTS_MAX * sizeof *keys);
	float *val = malloc(APP_HOSTS_MAX * (size_t)v->vlen * sizeof *val);
	int *of = malloc(APP_HOSTS_MAX * sizeof *of);
	if (!keys || !val || !of)
		app_die("out of memory");
	int n = 0;
	for (int h = 0; h < APP_HOSTS_MAX; h++)
		if (now[h]) {
			of[n] = h;
			keys[n++] = v->base + (ps_key)h;
		}
	int rc = ps_pull_sync(v->t, keys, (size_t)n, val);
	if (rc)
		app_die("pull of the votes: %s", ps_strerror(rc));
	for (int i = 0; i < n; i++)
		if (val[(size_t)i * (size_t)v->vlen] != 0)
			now[of[i]] = 0;
	free(keys);
	free(val);
	free(of);
}

void app_members_at(struct app_members *m, ps_world *w, long e, const struct app_votes *v, struct app_split *s,
		    uint8_t *alive)
{
	pthread_mutex_lock(&m->lock);
	if (m->epoch != e) { /* the node's first worker here: one set for all */
		bool first = m->epoch < 0; /* a joiner: the others were there before it */
		uint8_t view[APP_HOSTS_MAX] = {0}, now[APP_HOSTS_MAX];
		int n = ps_hosts_alive(w, view, APP_HOSTS_MAX);
		if (n < 0)
			app_die("ps_hosts_alive: %s", ps_strerror(n));
		if (!v) { /* one host: its own view */
			memcpy(now, view, sizeof now);
		} else {
			/* the set, less the hosts voted gone before the sync, plus
			 * the joiners the sync added (hosts never in the set nor
			 * gone); a joiner: every host present, less the voted */
			for (int h = 0; h < APP_HOSTS_MAX; h++)
				now[h] = first ? view[h] : m->alive[h] || (view[h] && !m->gone[h]);
			members_votes(now, v);
		}
		for (int h = 0; h < APP_HOSTS_MAX; h++) {
			if (now[h] == m->alive[h])
				continue;
			if (now[h] && (!first || h == m->host))
				m->joined[h] = e + 1;
			else if (!now[h])
				m->gone[h] = e + 1;
			m->alive[h] = now[h];
			if (now[h] && h >= m->seen)
				m->seen = h + 1;
		}
		m->epoch = e;
	}
	members_split(m, s, alive);
	/* every worker of the node learns that epoch e's set changed, not only
	 * the one that read it */
	for (int h = 0; h < m->seen && !s->changed; h++)
		s->changed = m->joined[h] == e + 1 || m->gone[h] == e + 1;
	pthread_mutex_unlock(&m->lock);
}

void app_members_left(struct app_members *m, int h)
{
	pthread_mutex_lock(&m->lock);
	if (h >= 0 && h < APP_HOSTS_MAX && m->gone[h])
		m->left[h] = 1;
	pthread_mutex_unlock(&m->lock);
}

void app_members_json(app_json *j, struct app_members *m)
{
	pthread_mutex_lock(&m->lock);
	int n = m->seen ? m->seen : 1;
	int64_t *row = calloc(3 * (size_t)n, sizeof *row);
	if (!row)
		app_die("out of memory");
	int64_t nl = 0, nj = 0, nv = 0;
	for (int h = 0; h < m->seen; h++) {
		if (m->gone[h] && !m->left[h])
			row[h] = m->gone[h], nl++;
		if (m->joined[h])
			row[n + h] = m->joined[h], nj++;
		if (m->gone[h] && m->left[h])
			row[2 * n + h] = m->gone[h], nv++;
	}
	int present = 0;
	for (int h = 0; h < m->seen; h++)
		present += m->alive[h];
	pthread_mutex_unlock(&m->lock);
	app_json_int(j, "hosts_present", present);
	app_json_int(j, "hosts_lost", nl);
	app_json_int_rows(j, "host_lost_epoch", row, 1, (size_t)n);
	app_json_int(j, "hosts_joined", nj);
	app_json_int_rows(j, "host_joined_epoch", row + n, 1, (size_t)n);
	app_json_int(j, "hosts_left", nv);
	app_json_int_rows(j, "host_left_epoch", row + 2 * n, 1, (size_t)n);
	free(row);
}

void app_epoch_counts_init(struct app_epoch_counts *c, long epochs, int hosts)
{
	c->epochs = epochs;
	c->cols = hosts > 0 ? hosts : 1;
	c->v = calloc((size_t)epochs * (size_t)c->cols + 1, sizeof *c->v);
	if (!c->v)
		app_die("out of memory");
}

void app_epoch_counts_set(struct app_epoch_counts *c, long e, int h, int64_t n)
{
	if (e < 0 || e >= c->epochs || h < 0 || h >= APP_HOSTS_MAX)
		return;
	if (h >= c->cols) { /* a host joined: widen every row */
		int cols = h + 1;
		int64_t *v = calloc((size_t)c->epochs * (size_t)cols + 1, sizeof *v);
		if (!v)
			app_die("out of memory");
		for (long r = 0; r < c->epochs; r++)
			memcpy(v + r * cols, c->v + r * c->cols, (size_t)c->cols * sizeof *v);
		free(c->v);
		c->v = v;
		c->cols = cols;
	}
	c->v[e * c->cols + h] = n;
}

void app_epoch_counts_json(app_json *j, const char *key, const struct app_epoch_counts *c, int cols)
{
	cols = cols > c->cols ? cols : c->cols;
	int64_t *v = calloc((size_t)c->epochs * (size_t)cols + 1, sizeof *v);
	if (!v)
		app_die("out of memory");
	for (long r = 0; r < c->epochs; r++)
		memcpy(v + r * cols, c->v + r * c->cols, (size_t)c->cols * sizeof *v);
	app_json_int_rows(j, key, v, (size_t)c->epochs, (size_t)cols);
	free(v);
}

void app_epoch_counts_free(struct app_epoch_counts *c)
{
	free(c->v);
	c->v = NULL;
}

long app_members_gone(struct app_members *m, int h)
{
	if (h < 0 || h >= APP_HOSTS_MAX)
		return 0;
	pthread_mutex_lock(&m->lock);
	long g = m->gone[h];
	pthread_mutex_unlock(&m->lock);
	return g;
}

void app_members_print(struct app_members *m, long e)
{
	char buf[256] = "";
	size_t len = 0;
	int present = 0;
	pthread_mutex_lock(&m->lock);
	for (int h = 0; h < m->seen; h++) {
		present += m->alive[h];
		const char *what = m->gone[h] == e + 1 ? "lost or left" : m->joined[h] == e + 1 ? "joined" : NULL;
		if (what && len < sizeof buf - 64)
			len += (size_t)snprintf(buf + len, sizeof buf - len, "%shost %d %s", len ? ", " : "", h, what);
	}
	pthread_mutex_unlock(&m->lock);
	printf("%s: epoch %ld: %s; the data split over the %d host%s present\n", app_name, e + 1, buf, present,
	       present > 1 ? "s" : "");
	fflush(stdout);
}

int app_membership(struct app_members *m, ps_world *w, const struct app_votes *v, long *e, struct app_split *s,
		   uint8_t *alive)
{
	app_members_vote(m, w, *e, v);
	uint64_t next = (uint64_t)*e;
	int np = ps_sync_hosts(w, &next);
	if (np < 0)
		app_die("ps_sync_hosts: %s", ps_strerror(np));
	*e = (long)next;
	if (np > 0)
		app_members_at(m, w, *e, v, s, alive);
	return np;
}

void app_members_read_left(struct app_members *m, ps_table *t, ps_key left0, int vlen, int hosts)
{
	float *val = calloc((size_t)vlen, sizeof *val);
	if (!val)
		app_die("out of memory");
	for (int h = 0; h < APP_HOSTS_MAX && h < hosts; h++) {
		ps_key k = left0 + (ps_key)h;
		if (app_members_gone(m, h) && ps_pull_sync(t, &k, 1, val) == 0 && val[0] != 0)
			app_members_left(m, h);
	}
	free(val);
}

void app_epoch_counts_read(struct app_epoch_counts *c, ps_world *w, long e, const uint8_t *alive, ps_table *t,
			   ps_key count0, int per, int vlen, int hosts)
{
	uint8_t now[APP_HOSTS_MAX] = {0};
	int rc = ps_hosts_alive(w, now, APP_HOSTS_MAX);
	if (rc < 0)
		app_die("ps_hosts_alive: %s", ps_strerror(rc));
	ps_key *keys = malloc((size_t)per * sizeof *keys);
	float *m = malloc((size_t)per * (size_t)vlen * sizeof *m);
	if (!keys || !m)
		app_die("out of memory");
	for (int h = 0; h < APP_HOSTS_MAX && h < hosts; h++) {
		if (!alive[h])
			continue;
		int64_t n = -1;
		for (int i = 0; i < per; i++)
			keys[i] = count0 + (ps_key)(h * per + i);
		if (now[h] && ps_pull_sync(t, keys, (size_t)per, m) == 0) {
			n = 0;
			for (int i = 0; i < per; i++) {
				const float *v = m + (size_t)i * (size_t)vlen;
				n += (int64_t)v[0] + ((int64_t)v[1] << 20);
			}
		}
		app_epoch_counts_set(c, e, h, n);
	}
	free(keys);
	free(m);
}
