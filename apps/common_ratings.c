/*
 * common_ratings.c - ratings files ("user item rating [timestamp]") and
 * dealing ids to workers: shared by mf and its raw baseline
 * (bench/hogwild_mf.c), so both read and split the data identically.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"


static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t l = strlen(s);
	while (l && (s[l - 1] == ' ' || s[l - 1] == '\t'))
		s[--l] = 0;
	return s;
}

/*
 * Reads "user item rating [timestamp]" lines, separated by commas (if the
 * line has one) or by runs of tabs and spaces.  Blank lines and lines
 * starting with '#' are skipped; the first other line is a header if its
 * rating field is not a number.  Training ids are inserted into the maps;
 * test ids are only looked up (APP_NONE if unseen).
 */
void app_load_ratings(const char *path, bool train, app_idmap *users, app_idmap *items, struct app_ratings *out,
		 double *sum, double *rmin, double *rmax)
{
	app_reader *rd = app_open(path);
	char *line;
	size_t len;
	bool first = true;
	while ((line = app_getline(rd, &len))) {
		char *p = trim(line);
		if (!*p || *p == '#')
			continue;
		bool comma = strchr(p, ',') != NULL;
		char *f[64];
		int n = app_split(p, comma ? "," : " \t", !comma, f, 64);
		bool was_first = first;
		first = false;
		if (n < 3 || n > 4)
			app_fail_line(rd, "expected 3 or 4 fields, found %d%s", n,
				      n == 64 ? " or more" : "");
		for (int k = 0; k < n; k++)
			f[k] = trim(f[k]);
		double r;
		if (!app_parse_double(f[2], &r)) {
			if (was_first)
				continue; /* header line */
			app_fail_line(rd, "rating '%s' is not a number", app_clip(f[2]));
		}
		if (!isfinite(r))
			app_fail_line(rd, "rating '%s' is not a finite number", app_clip(f[2]));
		if (fabs(r) > APP_RATING_MAX)
			app_fail_line(rd, "rating '%s' is out of range (at most %g in magnitude)", app_clip(f[2]),
				      APP_RATING_MAX);
		if (!*f[0])
			app_fail_line(rd, "empty user id");
		if (!*f[1])
			app_fail_line(rd, "empty item id");
		int64_t u = app_idmap_get(users, f[0], strlen(f[0]), train);
		int64_t i = app_idmap_get(items, f[1], strlen(f[1]), train);
		if (train && (u >= (int64_t)APP_NONE || i >= (int64_t)APP_NONE))
			app_fail_line(rd, "more than %u distinct users or items", APP_NONE - 1);
		if (out->n == out->cap) {
			out->cap = out->cap ? out->cap * 2 : 1u << 16;
			out->v = realloc(out->v, out->cap * sizeof *out->v);
			if (!out->v)
				app_die("%s: out of memory", path);
		}
		out->v[out->n++] = (struct app_rating){.u = u < 0 ? APP_NONE : (uint32_t)u, .i = i < 0 ? APP_NONE : (uint32_t)i,
						   .r = (float)r};
		if (sum) {
			*sum += r;
			if (r < *rmin)
				*rmin = r;
			if (r > *rmax)
				*rmax = r;
		}
	}
	if (out->n == 0)
		app_die("%s: empty file: no ratings in it", path);
	app_close(rd);
}


struct byc {
	uint64_t count;
	uint32_t id;
};

static int byc_cmp(const void *a, const void *b)
{
	const struct byc *x = a, *y = b;
	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* Deals ids 0..n-1 to k bins, largest count first, in snake order (0..k-1,
 * k-1..0, ...): bin sizes differ by at most one, loads are near-balanced. */
uint32_t *app_deal(const uint64_t *count, size_t n, int k)
{
	struct byc *o = malloc((n ? n : 1) * sizeof *o);
	uint32_t *bin = malloc((n ? n : 1) * sizeof *bin);
	if (!o || !bin)
		app_die("out of memory");
	for (size_t i = 0; i < n; i++)
		o[i] = (struct byc){count[i], (uint32_t)i};
	qsort(o, n, sizeof *o, byc_cmp);
	for (size_t p = 0; p < n; p++) {
		size_t round = p / (size_t)k, idx = p % (size_t)k;
		bin[o[p].id] = (uint32_t)(round % 2 == 0 ? idx : (size_t)k - 1 - idx);
	}
	free(o);
	return bin;
}
