/*
 * common_io.c - messages, option values, and reading data files for the
 * apps.  Files go through zlib's gz* interface, which reads gzip and plain
 * files alike, in large buffered blocks; lines are cut from the buffer in
 * place, so a 100 MB corpus streams in well under a second of parsing.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "common.h"

const char *app_name = "app";

void app_init(const char *name)
{
	app_name = name;
}

/*
 * Under psrun every node reads the same input files, so a bad input line
 * would be reported once per node.  Input errors (open, read, malformed
 * line) are therefore printed by node 0 only; the other nodes exit 1
 * quietly and psrun names them.  Other errors are printed everywhere.
 */
static bool input_quiet(void)
{
	const char *node = getenv("PSMEM_NODE");
	return getenv("PSMEM_SEGMENT") && node && strcmp(node, "0") != 0;
}

/* Prints "<app>: <prefix><fmt...>" (unless quiet) and exits 1. */
__attribute__((noreturn)) static void vdie(bool quiet, const char *prefix, const char *fmt, va_list ap)
{
	if (!quiet) {
		fflush(stdout);
		fprintf(stderr, "%s: %s", app_name, prefix);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
	}
	exit(1);
}

__attribute__((noreturn, format(printf, 1, 2))) static void input_die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vdie(input_quiet(), "", fmt, ap);
}

void app_die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vdie(false, "", fmt, ap);
}

void app_usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fflush(stdout);
	fprintf(stderr, "%s: ", app_name);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help'.\n", app_name);
	exit(2);
}

/* The long option arg names ("--name" or "--name=value", "-name" with
 * getopt_long_only), or NULL. */
static const struct option *long_named(const char *arg, const struct option *longopts)
{
	const char *n = arg + (arg[1] == '-' ? 2 : 1);
	size_t len = strcspn(n, "=");
	for (const struct option *o = longopts; o->name; o++)
		if (strlen(o->name) == len && strncmp(o->name, n, len) == 0)
			return o;
	return NULL;
}

int app_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts, int *longindex, bool only)
{
	char so[64];
	snprintf(so, sizeof so, ":%s", shortopts); /* ':' tells a missing value from an unknown option */
	opterr = 0;
	int o = only ? getopt_long_only(argc, argv, so, longopts, longindex)
		     : getopt_long(argc, argv, so, longopts, longindex);
	if (o == APP_OPT_VERSION) {
		printf("%s (psmem) %s\n", app_name, PS_VERSION);
		exit(0);
	}
	if (o != '?' && o != ':')
		return o;
	/* getopt_long has stepped past the offending word, unless it was a
	 * short option inside a group ("-hx"): then optopt names it */
	const char *arg = optind > 0 && optind <= argc ? argv[optind - 1] : "";
	bool is_long = arg[0] == '-' && (arg[1] == '-' || (only && arg[1] && arg[2]));
	if (o == ':') {
		if (is_long)
			app_usage_error("option '%.*s' needs a value", (int)strcspn(arg, "="), app_clip(arg));
		app_usage_error("option '-%c' needs a value", optopt);
	}
	if (is_long) {
		const struct option *lo = long_named(arg, longopts);
		if (lo && !lo->has_arg && strchr(arg, '='))
			app_usage_error("option '--%s' takes no value", lo->name);
		app_usage_error("unknown option '%s'", app_clip(arg));
	}
	if (optopt > ' ' && optopt < 127)
		app_usage_error("unknown option '-%c'", optopt);
	app_usage_error("unknown option '%s'", app_clip(arg));
}

void app_diverged(int epoch, const char *what, double lr)
{
	fflush(stdout);
	fprintf(stderr, "%s: training diverged in epoch %d (the %s is not a finite number): lower --lr (now %g)\n",
		app_name, epoch, what, lr);
}

void app_check_writable(const char *opt, const char *path)
{
	if (!path || strcmp(path, "-") == 0)
		return;
	struct stat st;
	if (!*path)
		app_die("%s: the file name is empty", opt);
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		input_die("%s: %s: cannot write: Is a directory", opt, app_clip(path));
	size_t plen = strlen(path) + 16;
	char *tmp = malloc(plen);
	if (!tmp)
		app_die("out of memory");
	snprintf(tmp, plen, "%s.XXXXXX", path);
	int fd = mkstemp(tmp); /* what the writers do: a temp file beside path */
	if (fd < 0) {
		int e = errno;
		free(tmp);
		input_die("%s: %s: cannot write: %s", opt, app_clip(path), strerror(e));
	}
	close(fd);
	unlink(tmp);
	free(tmp);
}

#define CLIP_MAX 60

const char *app_clip(const char *s)
{
	static __thread char buf[4][CLIP_MAX + 4];
	static __thread unsigned next;
	if (!s || strlen(s) <= CLIP_MAX)
		return s;
	char *b = buf[next++ % 4];
	memcpy(b, s, CLIP_MAX);
	memcpy(b + CLIP_MAX, "...", 4);
	return b;
}

long app_opt_long(const char *opt, const char *val, long lo, long hi)
{
	int64_t x;
	if (!val || !app_parse_i64(val, &x))
		app_die("%s: '%s' is not a valid integer", opt, val ? app_clip(val) : "");
	if (x < lo || x > hi)
		app_die("%s: %lld must be between %ld and %ld", opt, (long long)x, lo, hi);
	return (long)x;
}

double app_opt_double(const char *opt, const char *val, double lo, double hi)
{
	double x;
	if (!val || !app_parse_double(val, &x))
		app_die("%s: '%s' is not a valid number", opt, val ? app_clip(val) : "");
	if (!(x >= lo && x <= hi))
		app_die("%s: %g must be between %g and %g", opt, x, lo, hi);
	return x;
}

bool app_parse_double(const char *s, double *out)
{
	if (!s || !*s)
		return false;
	char *end;
	errno = 0;
	double x = strtod(s, &end);
	if (*end || errno == ERANGE || isnan(x))
		return false;
	*out = x;
	return true;
}

bool app_parse_i64(const char *s, int64_t *out)
{
	if (!s || !*s)
		return false;
	char *end;
	errno = 0;
	long long x = strtoll(s, &end, 10);
	if (*end || errno == ERANGE)
		return false;
	*out = x;
	return true;
}

int app_split(char *line, const char *seps, bool collapse, char **fields, int max)
{
	char *p = line;
	int n = 0;
	if (collapse)
		while (*p && strchr(seps, *p))
			p++;
	if (!*p || max <= 0)
		return 0; /* blank line */
	for (;;) {
		fields[n++] = p;
		if (n == max)
			return n; /* the rest stays joined in the last field */
		while (*p && !strchr(seps, *p))
			p++;
		if (!*p)
			return n;
		*p++ = 0;
		if (collapse) {
			while (*p && strchr(seps, *p))
				p++;
			if (!*p)
				return n;
		}
	}
}

/* ---------------------------------------------------------------- reader */

struct app_reader {
	gzFile gz;
	char *path;
	char *buf;
	size_t cap, start, end; /* unread bytes are buf[start, end) */
	long lineno;
	bool eof;
};

#define READ_BLOCK (1u << 20)

app_reader *app_open(const char *path)
{
	gzFile gz = gzopen(path, "rb");
	if (!gz)
		input_die("%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
	gzbuffer(gz, 1u << 18);
	app_reader *r = calloc(1, sizeof *r);
	if (!r)
		app_die("out of memory");
	r->gz = gz;
	r->path = strdup(path);
	r->cap = 2 * READ_BLOCK;
	r->buf = malloc(r->cap + 1);
	if (!r->buf || !r->path)
		app_die("out of memory");
	return r;
}

/*
 * After gzread returned n <= 0: an error or the true end?  gzread returns
 * 0, not -1, at a gzip stream cut short (Z_BUF_ERROR, "unexpected end of
 * file"), and -1 on data that does not decompress (Z_DATA_ERROR) or a
 * checksum that does not match; both are the same fault to a user.
 */
static void check_gz(gzFile gz, const char *path, long line)
{
	int e;
	const char *msg = gzerror(gz, &e);
	if (e == Z_OK)
		return;
	if (e == Z_BUF_ERROR || e == Z_DATA_ERROR)
		input_die("%s: truncated or corrupt gzip", path);
	char where[32] = ""; /* app_slurp counts no lines */
	if (line > 0)
		snprintf(where, sizeof where, ":%ld", line);
	input_die("%s%s: read error: %s", path, where, e == Z_ERRNO ? strerror(errno) : msg);
}

/* Refills the buffer, keeping the unread tail; false at end of file. */
static bool fill(app_reader *r)
{
	if (r->eof)
		return false;
	size_t tail = r->end - r->start;
	memmove(r->buf, r->buf + r->start, tail);
	r->start = 0;
	r->end = tail;
	if (r->cap - r->end < READ_BLOCK) {
		r->cap = r->cap * 2;
		r->buf = realloc(r->buf, r->cap + 1);
		if (!r->buf)
			app_die("%s: a line is too long to hold in memory", r->path);
	}
	int n = gzread(r->gz, r->buf + r->end, READ_BLOCK);
	if (n <= 0)
		check_gz(r->gz, r->path, r->lineno + 1);
	if (n == 0) {
		r->eof = true;
		return false;
	}
	r->end += (size_t)n;
	return true;
}

char *app_getline(app_reader *r, size_t *len)
{
	size_t scan = r->start;
	for (;;) {
		char *nl = memchr(r->buf + scan, '\n', r->end - scan);
		if (nl) {
			char *line = r->buf + r->start;
			size_t l = (size_t)(nl - line);
			r->start += l + 1;
			if (l && line[l - 1] == '\r')
				l--;
			line[l] = 0;
			r->lineno++;
			if (len)
				*len = l;
			return line;
		}
		scan = r->end - r->start;
		if (!fill(r)) {
			if (r->end == r->start)
				return NULL;
			/* last line without a newline */
			char *line = r->buf + r->start;
			size_t l = r->end - r->start;
			r->start = r->end;
			if (l && line[l - 1] == '\r')
				l--;
			line[l] = 0;
			r->lineno++;
			if (len)
				*len = l;
			return line;
		}
		/* fill() moved the unread bytes to the start of the buffer */
	}
}

long app_lineno(const app_reader *r) { return r->lineno; }
const char *app_path(const app_reader *r) { return r->path; }

void app_close(app_reader *r)
{
	if (!r)
		return;
	gzclose(r->gz);
	free(r->buf);
	free(r->path);
	free(r);
}

/*
 * A gzip file's checksum is checked only at its end, so corrupt data can
 * decompress into garbage lines that fail to parse first.  Before a line
 * of a gzip file is blamed, the rest of the stream is read: a stream that
 * is corrupt or cut short is reported as such instead (only on this error
 * path; a good file costs nothing more).
 */
static void check_rest_of_gzip(const app_reader *r)
{
	if (r->eof || gzdirect(r->gz))
		return;
	static char scratch[1 << 16];
	int n;
	while ((n = gzread(r->gz, scratch, sizeof scratch)) > 0)
		;
	check_gz(r->gz, r->path, r->lineno);
}

void app_fail_line(const app_reader *r, const char *fmt, ...)
{
	check_rest_of_gzip(r);
	char prefix[PATH_MAX + 32];
	snprintf(prefix, sizeof prefix, "%s:%ld: ", r->path, r->lineno);
	va_list ap;
	va_start(ap, fmt);
	vdie(input_quiet(), prefix, fmt, ap);
}

char *app_slurp(const char *path, size_t *len)
{
	gzFile gz = gzopen(path, "rb");
	if (!gz)
		input_die("%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
	gzbuffer(gz, 1u << 18);
	size_t cap = 1u << 24, n = 0;
	char *buf = malloc(cap + 1);
	for (;;) {
		if (!buf)
			app_die("%s: out of memory", path);
		if (cap - n < (1u << 22)) {
			cap *= 2;
			buf = realloc(buf, cap + 1);
			continue;
		}
		int got = gzread(gz, buf + n, 1u << 22);
		if (got <= 0)
			check_gz(gz, path, 0);
		if (got == 0)
			break;
		n += (size_t)got;
	}
	gzclose(gz);
	buf[n] = 0;
	*len = n;
	return buf;
}

double app_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double app_cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
