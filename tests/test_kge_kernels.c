/*
 * test_kge_kernels.c - kge's compute kernels, without psmem: the vector exp
 * of the softmax against libm, one query's softmax cross-entropy against a
 * double-precision reference, and a whole batch (queries, the three BLAS
 * products, the backward pass through the queries, the N3 or L2 penalty)
 * against a reference loss computed here and its finite differences, for
 * ComplEx, DistMult and RESCAL.  A wrong transpose or leading dimension in
 * a product, a gradient landing on the wrong row, or a softmax off by a
 * scale shows as a gradient far from the finite difference.
 *
 * The kernels are static in apps/kge.c, which is included here (its main
 * renamed); the Makefile links this test with OpenBLAS as kge.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#define main kge_main
#include "../apps/kge.c"
#undef main

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static double unit(void) /* uniform in [0, 1) */
{
	return app_rand_unit(&rng_state);
}

/* exp8: within 2 ulp of glibc's expf on [-87, 0] (at 1e-3 steps, plus the
 * ends), and clamped below -87 (a tiny normal float, never garbage). */
static void test_exp8_matches_expf(void **state)
{
	(void)state;
	for (int i = 0; i <= 87000; i++) {
		float x = i < 87000 ? -(float)i * 1e-3f : -87.0f;
		float got = exp8(bc8(x))[3], want = expf(x);
		if (!(fabsf(got - want) <= 2.5e-7f * want))
			fail_msg("exp8(%.9g) = %.9g, expf: %.9g", (double)x, (double)got, (double)want);
	}
	for (float x = -87.5f; x > -200; x -= 3.7f) {
		float got = exp8(bc8(x))[0];
		assert_true(got > 0 && got < 2e-38f);
	}
}

/* One query: the returned loss is -log softmax(s)[tgt] and s becomes
 * scale * (softmax(s) - onehot(tgt)); n = 8k + 5 exercises the tail, a
 * score 200 below the others exercises the clamp. */
static void test_softmax_xent_matches_reference(void **state)
{
	(void)state;
	enum { N = 37 };
	float s[N];
	double ref[N];
	for (int rep = 0; rep < 50; rep++) {
		size_t tgt = (size_t)(unit() * N);
		for (int j = 0; j < N; j++)
			s[j] = (float)(20 * unit() - 10);
		if (rep % 5 == 0)
			s[(rep / 5) % N] -= 200;
		double mx = s[0], z = 0;
		for (int j = 1; j < N; j++)
			mx = s[j] > mx ? s[j] : mx;
		for (int j = 0; j < N; j++)
			z += exp((double)s[j] - mx);
		double want_loss = log(z) - ((double)s[tgt] - mx);
		for (int j = 0; j < N; j++)
			ref[j] = 0.25 * (exp((double)s[j] - mx) / z - (j == (int)tgt));
		double loss = softmax_xent(s, N, tgt, 0.25f);
		assert_true(fabs(loss - want_loss) <= 1e-5 * (1 + fabs(want_loss)));
		for (int j = 0; j < N; j++)
			assert_true(fabs(s[j] - ref[j]) <= 1e-6);
	}
}

/* ------------------------------------------------- a batch, no psmem */

enum { NB = 5, NC = 13, NRL = 4 }; /* triples, candidates, relation rows */

struct fixture {
	struct job jb;
	struct wstate ws;
	struct batch b;
	int32_t hi[NB], ti[NB], ri[NB], rv[NB];
};

static void setup_batch(struct fixture *f, int model, int regularizer, size_t D)
{
	memset(f, 0, sizeof *f);
	struct job *jb = &f->jb;
	jb->o.model = model;
	jb->o.regularizer = regularizer;
	jb->o.reg = 0.3;
	jb->o.optimizer = O_ADAGRAD;
	jb->D = D;
	jb->RD = model == M_RESCAL ? D * D : D;
	jb->se = 2 * jb->D; /* values, then Adagrad's accumulator (never read here) */
	jb->sr = 2 * jb->RD;
	struct wstate *ws = &f->ws;
	ws->jb = jb;
	ws->rowsE = xcalloc(NC * jb->se, sizeof(float));
	ws->rowsR = xcalloc(NRL * jb->sr, sizeof(float));
	ws->Q = xcalloc(2 * NB * D, sizeof(float));
	ws->S = xcalloc(2 * NB * NC, sizeof(float));
	ws->dQ = xcalloc(2 * NB * D, sizeof(float));
	ws->gE = xcalloc(NC * D, sizeof(float));
	ws->gR = xcalloc(NRL * jb->RD, sizeof(float));
	float scaleR = model == M_RESCAL ? 1.0f / sqrtf((float)D) : 1.0f;
	for (size_t i = 0; i < NC * jb->se; i++)
		ws->rowsE[i] = (float)(unit() - 0.5);
	for (size_t i = 0; i < NRL * jb->sr; i++)
		ws->rowsR[i] = (float)(unit() - 0.5) * scaleR;
	for (int i = 0; i < NB; i++) { /* a head may repeat or be a tail: rows are shared */
		f->hi[i] = (int32_t)(unit() * NC);
		f->ti[i] = (int32_t)(unit() * NC);
		f->ri[i] = (int32_t)(unit() * NRL);
		f->rv[i] = (int32_t)(unit() * NRL);
	}
	f->b = (struct batch){.n = NB, .nents = NC, .nrels = NRL, .hi = f->hi, .ti = f->ti, .ri = f->ri, .rv = f->rv};
}

static void free_batch(struct fixture *f)
{
	free(f->ws.rowsE);
	free(f->ws.rowsR);
	free(f->ws.Q);
	free(f->ws.S);
	free(f->ws.dQ);
	free(f->ws.gE);
	free(f->ws.gR);
}

/* The penalty of row x, in double: N3 = sum |x|^3 (ComplEx: cubed complex
 * moduli), L2 = sum x^2. */
static double penalty(const struct job *jb, const float *x, size_t len)
{
	double p = 0;
	if (jb->o.regularizer == R_L2) {
		for (size_t k = 0; k < len; k++)
			p += (double)x[k] * x[k];
	} else if (jb->o.model == M_COMPLEX) {
		for (size_t k = 0; k < len / 2; k++)
			p += pow(hypot(x[k], x[len / 2 + k]), 3);
	} else {
		for (size_t k = 0; k < len; k++)
			p += pow(fabs(x[k]), 3);
	}
	return p;
}

/* The objective batch_grad differentiates, in double from the rows:
 * (sum of the queries' cross-entropies + reg x the penalties of each
 * query's entity, relation and answer) / (2 x batch). */
static double objective(const struct fixture *f, double *ce_sum)
{
	const struct job *jb = &f->jb;
	size_t D = jb->D, nq = 2 * NB;
	double tot = 0, ce = 0;
	for (size_t q = 0; q < nq; q++) {
		size_t i = q / 2;
		int32_t a = (q & 1) ? f->ti[i] : f->hi[i], ans = (q & 1) ? f->hi[i] : f->ti[i];
		int32_t r = (q & 1) ? f->rv[i] : f->ri[i];
		const float *av = f->ws.rowsE + (size_t)a * jb->se, *rv = f->ws.rowsR + (size_t)r * jb->sr;
		double qv[64];
		assert_true(D <= 64);
		for (size_t k = 0; k < D; k++) {
			if (jb->o.model == M_COMPLEX) {
				size_t h = D / 2, c = k % h;
				double re = (double)av[c] * rv[c] - (double)av[h + c] * rv[h + c];
				double im = (double)av[c] * rv[h + c] + (double)av[h + c] * rv[c];
				qv[k] = k < h ? re : im;
			} else if (jb->o.model == M_DISTMULT) {
				qv[k] = (double)av[k] * rv[k];
			} else {
				qv[k] = 0;
				for (size_t j = 0; j < D; j++)
					qv[k] += (double)av[j] * rv[j * D + k];
			}
		}
		double sc[NC], mx = -INFINITY, z = 0;
		for (size_t e = 0; e < NC; e++) {
			sc[e] = 0;
			for (size_t k = 0; k < D; k++)
				sc[e] += qv[k] * f->ws.rowsE[e * jb->se + k];
			mx = sc[e] > mx ? sc[e] : mx;
		}
		for (size_t e = 0; e < NC; e++)
			z += exp(sc[e] - mx);
		double l = log(z) - (sc[ans] - mx);
		ce += l;
		tot += l + jb->o.reg * (penalty(jb, av, D) + penalty(jb, f->ws.rowsE + (size_t)ans * jb->se, D) +
					penalty(jb, rv, jb->RD));
	}
	if (ce_sum)
		*ce_sum = ce;
	return tot / (double)nq;
}

/* Every gradient component against the central difference of the
 * objective; the returned loss against the reference sum. */
static void check_batch(int model, int regularizer, size_t D)
{
	static struct fixture f;
	setup_batch(&f, model, regularizer, D);
	struct job *jb = &f.jb;
	double ce;
	objective(&f, &ce);
	double loss = batch_grad(&f.ws, &f.b);
	assert_true(fabs(loss - ce) <= 1e-4 * (1 + fabs(ce)));
	float *gE = xcalloc(NC * D, sizeof(float)), *gR = xcalloc(NRL * jb->RD, sizeof(float));
	memcpy(gE, f.ws.gE, NC * D * sizeof(float));
	memcpy(gR, f.ws.gR, NRL * jb->RD * sizeof(float));
	const float h = 1e-2f;
	for (int tab = 0; tab < 2; tab++) {
		size_t rows = tab ? NRL : NC, len = tab ? jb->RD : D, stride = tab ? jb->sr : jb->se;
		float *base = tab ? f.ws.rowsR : f.ws.rowsE;
		const float *g = tab ? gR : gE;
		for (size_t i = 0; i < rows; i++)
			for (size_t k = 0; k < len; k++) {
				float *x = base + i * stride + k, x0 = *x;
				*x = x0 + h;
				double up = objective(&f, NULL);
				*x = x0 - h;
				double down = objective(&f, NULL);
				*x = x0;
				double num = (up - down) / (2.0 * (double)h), ana = g[i * len + k];
				if (fabs(num - ana) > 2e-2 * (1e-3 + fabs(num)))
					fail_msg("model %s, table %s, row %zu, component %zu: gradient %.6g, finite "
						 "difference %.6g", model_names[model], tab ? "R" : "E", i, k, ana, num);
			}
	}
	free(gE);
	free(gR);
	free_batch(&f);
}

static void test_batch_grad_complex_n3(void **state)
{
	(void)state;
	check_batch(M_COMPLEX, R_N3, 12); /* 12: the vector loops' tails too */
	check_batch(M_COMPLEX, R_N3, 32);
}

static void test_batch_grad_complex_l2(void **state)
{
	(void)state;
	check_batch(M_COMPLEX, R_L2, 12);
}

static void test_batch_grad_distmult(void **state)
{
	(void)state;
	check_batch(M_DISTMULT, R_N3, 11);
}

static void test_batch_grad_rescal(void **state)
{
	(void)state;
	check_batch(M_RESCAL, R_N3, 6);
}

int main(void)
{
	blas_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exp8_matches_expf),
		cmocka_unit_test(test_softmax_xent_matches_reference),
		cmocka_unit_test(test_batch_grad_complex_n3),
		cmocka_unit_test(test_batch_grad_complex_l2),
		cmocka_unit_test(test_batch_grad_distmult),
		cmocka_unit_test(test_batch_grad_rescal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
