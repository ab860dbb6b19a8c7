/*
 * mfgen - synthetic ratings from a planted low-rank model, in the text
 * format mf reads, so scaling runs need no downloaded data.
 *
 *   mfgen --rows R --cols C --nnz N [--zipf S] [--rank K] [--noise X]
 *         [--seed S] --out FILE [--test-out FILE --test-frac F]
 *
 * Model: r(u,i) = 3 + b_u + b_i + p_u . q_i + noise * N(0,1), with
 * b ~ N(0, 0.3^2) and factor entries ~ N(0, 1/sqrt(K)) (so the dot product
 * has variance about 1).  Each of the N ratings draws its row and column
 * independently, uniformly or, with --zipf S > 0, with P(k) ~ 1/(k+1)^S
 * over ids 1..R (1..C), id 1 the most frequent; a (row, col) pair may repeat
 * (each draw with its own noise).  Lines are "row<TAB>col<TAB>rating"; a
 * FILE ending in .gz is written gzip-compressed.  Deterministic in --seed.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "common.h"

struct out {
	const char *path;
	char *tmp;
	FILE *f;
	gzFile gz;
	uint64_t n;
};

static void out_open(struct out *o, const char *path)
{
	o->path = path;
	size_t l = strlen(path) + 32;
	o->tmp = malloc(l);
	if (!o->tmp)
		app_die("out of memory");
	snprintf(o->tmp, l, "%s.tmp%d", path, (int)getpid());
	size_t pl = strlen(path);
	if (pl > 3 && strcmp(path + pl - 3, ".gz") == 0) {
		o->gz = gzopen(o->tmp, "wb6");
		if (!o->gz)
			app_die("%s: cannot write: %s", path, strerror(errno));
		gzbuffer(o->gz, 1u << 20);
	} else {
		o->f = fopen(o->tmp, "w");
		if (!o->f)
			app_die("%s: cannot write: %s", path, strerror(errno));
		setvbuf(o->f, NULL, _IOFBF, 1u << 20);
	}
}

static void out_line(struct out *o, const char *s, int len)
{
	bool ok = o->gz ? gzwrite(o->gz, s, (unsigned)len) == len : fwrite(s, 1, (size_t)len, o->f) == (size_t)len;
	if (!ok)
		app_die("%s: write failed: %s", o->path, strerror(errno));
	o->n++;
}

static void out_close(struct out *o)
{
	bool ok;
	if (o->gz)
		ok = gzclose(o->gz) == Z_OK;
	else
		ok = fflush(o->f) == 0 && fsync(fileno(o->f)) == 0 && fclose(o->f) == 0;
	if (!ok || rename(o->tmp, o->path) != 0) {
		int e = errno;
		unlink(o->tmp);
		app_die("%s: cannot write: %s", o->path, strerror(e));
	}
	free(o->tmp);
}

static double gauss(uint64_t *s)
{
	double a = app_rand_unit(s), b = app_rand_unit(s);
	return sqrt(-2.0 * log(a + 1e-300)) * cos(6.283185307179586 * b);
}

/* Cumulative zipf(s) weights over n ids (NULL for uniform). */
static double *zipf_cdf(uint64_t n, double s)
{
	if (s <= 0)
		return NULL;
	double *c = malloc(n * sizeof *c);
	if (!c)
		app_die("out of memory (zipf table of %llu ids)", (unsigned long long)n);
	double acc = 0;
	for (uint64_t k = 0; k < n; k++) {
		acc += pow((double)(k + 1), -s);
		c[k] = acc;
	}
	return c;
}

static uint64_t draw(const double *cdf, uint64_t n, uint64_t *rng)
{
	if (!cdf)
		return app_rand(rng) % n;
	double x = app_rand_unit(rng) * cdf[n - 1];
	uint64_t lo = 0, hi = n - 1;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (cdf[mid] > x)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/* Factors and bias of n rows: K + 1 floats each. */
static float *planted(uint64_t n, int K, uint64_t seed)
{
	float *m = malloc(n * (size_t)(K + 1) * sizeof *m);
	if (!m)
		app_die("out of memory (planted model of %llu rows)", (unsigned long long)n);
	double sd = 1.0 / sqrt(sqrt((double)K));
	uint64_t s = seed;
	for (uint64_t i = 0; i < n; i++) {
		float *r = m + i * (size_t)(K + 1);
		for (int k = 0; k < K; k++)
			r[k] = (float)(gauss(&s) * sd);
		r[K] = (float)(gauss(&s) * 0.3);
	}
	return m;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: mfgen --rows R --cols C --nnz N [options] --out FILE\n"
		   "\n"
		   "Writes N synthetic ratings 'row<TAB>col<TAB>rating' (ids 1..R, 1..C) drawn\n"
		   "from a planted low-rank model: r = 3 + b_row + b_col + p_row.q_col + noise,\n"
		   "biases ~ N(0, 0.3^2), factor entries ~ N(0, 1/sqrt(K)).  The format is the\n"
		   "one mf reads; a FILE ending in .gz is gzip-compressed.  Rows and columns\n"
		   "are drawn independently (a pair may repeat).\n"
		   "\n"
		   "  --rows R         number of rows (users), required\n"
		   "  --cols C         number of columns (items), required\n"
		   "  --nnz N          number of ratings, required\n"
		   "  --zipf S         skew: P(id k) ~ 1/k^S, id 1 the most frequent; 0 = uniform\n"
		   "                   (default: 0)\n"
		   "  --rank K         rank of the planted model (default: 10)\n"
		   "  --noise X        std. deviation of the Gaussian noise (default: 0.1)\n"
		   "  --seed S         seed; output is a function of the options (default: 1)\n"
		   "  --out FILE       training ratings, required\n"
		   "  --test-out FILE  also write a test split here (default: none)\n"
		   "  --test-frac F    fraction of ratings that go to --test-out (default: 0.1\n"
		   "                   when --test-out is given)\n"
		   "  -h, --help       print this help and exit\n"
		   "  --version        print the version and exit\n");
}

int main(int argc, char **argv)
{
	app_init("mfgen");
	uint64_t rows = 0, cols = 0, nnz = 0, seed = 1;
	double zipf = 0, noise = 0.1, test_frac = -1;
	int rank = 10;
	const char *out = NULL, *test_out = NULL;
	enum { O_ROWS = 256, O_COLS, O_NNZ, O_ZIPF, O_RANK, O_NOISE, O_SEED, O_OUT, O_TOUT, O_TFRAC };
	static const struct option opts[] = {
		{"rows", 1, 0, O_ROWS},   {"cols", 1, 0, O_COLS},         {"nnz", 1, 0, O_NNZ},
		{"zipf", 1, 0, O_ZIPF},   {"rank", 1, 0, O_RANK},         {"noise", 1, 0, O_NOISE},
		{"seed", 1, 0, O_SEED},   {"out", 1, 0, O_OUT},           {"test-out", 1, 0, O_TOUT},
		{"test-frac", 1, 0, O_TFRAC}, {"help", 0, 0, 'h'},        {"version", 0, 0, APP_OPT_VERSION},
		{0, 0, 0, 0}};
	int o;
	while ((o = app_getopt(argc, argv, "h", opts, NULL, false)) != -1) {
		switch (o) {
		case O_ROWS: rows = (uint64_t)app_opt_long("--rows", optarg, 1, 1L << 32); break;
		case O_COLS: cols = (uint64_t)app_opt_long("--cols", optarg, 1, 1L << 32); break;
		case O_NNZ: nnz = (uint64_t)app_opt_long("--nnz", optarg, 1, 1L << 40); break;
		case O_ZIPF: zipf = app_opt_double("--zipf", optarg, 0, 10); break;
		case O_RANK: rank = (int)app_opt_long("--rank", optarg, 1, 1024); break;
		case O_NOISE: noise = app_opt_double("--noise", optarg, 0, 100); break;
		case O_SEED: seed = (uint64_t)app_opt_long("--seed", optarg, 0, INT64_MAX); break;
		case O_OUT: out = optarg; break;
		case O_TOUT: test_out = optarg; break;
		case O_TFRAC: test_frac = app_opt_double("--test-frac", optarg, 0, 1); break;
		case 'h': usage(stdout); return 0;
		default: app_usage_error("unknown option '%s'", app_clip(argv[optind - 1]));
		}
	}
	if (optind < argc)
		app_usage_error("unexpected argument '%s'", app_clip(argv[optind]));
	if (!rows || !cols || !nnz || !out)
		app_die("--rows, --cols, --nnz and --out are required (try --help)");
	if (test_frac >= 0 && !test_out)
		app_die("--test-frac needs --test-out");
	app_check_writable("--out", out);
	app_check_writable("--test-out", test_out);
	if (test_out && test_frac < 0)
		test_frac = 0.1;
	if (!test_out)
		test_frac = 0;

	double t0 = app_now();
	float *P = planted(rows, rank, seed * 0x9e3779b97f4a7c15ULL + 1);
	float *Q = planted(cols, rank, seed * 0x9e3779b97f4a7c15ULL + 2);
	double *rc = zipf_cdf(rows, zipf), *cc = zipf_cdf(cols, zipf);
	struct out tr = {0}, te = {0};
	out_open(&tr, out);
	if (test_out)
		out_open(&te, test_out);
	uint64_t rng = seed * 0xd1b54a32d192ed03ULL + 3;
	char line[96];
	for (uint64_t k = 0; k < nnz; k++) {
		uint64_t u = draw(rc, rows, &rng), i = draw(cc, cols, &rng);
		const float *p = P + u * (size_t)(rank + 1), *q = Q + i * (size_t)(rank + 1);
		double r = 3.0 + p[rank] + q[rank];
		for (int f = 0; f < rank; f++)
			r += (double)p[f] * q[f];
		r += noise * gauss(&rng);
		bool test = test_frac > 0 && app_rand_unit(&rng) < test_frac;
		int len = snprintf(line, sizeof line, "%llu\t%llu\t%.3f\n", (unsigned long long)u + 1,
				   (unsigned long long)i + 1, r);
		out_line(test ? &te : &tr, line, len);
	}
	out_close(&tr);
	if (test_out)
		out_close(&te);
	fprintf(stderr, "mfgen: %llu training ratings to %s", (unsigned long long)tr.n, out);
	if (test_out)
		fprintf(stderr, ", %llu test ratings to %s", (unsigned long long)te.n, test_out);
	fprintf(stderr, " (%llu x %llu, rank %d, zipf %g, noise %g) in %.2f s\n", (unsigned long long)rows,
		(unsigned long long)cols, rank, zipf, noise, app_now() - t0);
	free(P);
	free(Q);
	free(rc);
	free(cc);
	return 0;
}
