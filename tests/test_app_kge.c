/*
 * test_app_kge.c - the kge app end to end on a tiny generated knowledge
 * graph: it learns (filtered MRR far above random ranking, loss falls) on
 * one node and under psrun -n 2 with both policies, writes its JSON and
 * model, is deterministic for one thread, and stops on bad input with the
 * exact message.  --sync learns under psrun; --rule adagrad (the server-side
 * rule) computes, with one thread, exactly what the client-side Adagrad does.
 * With --replicate (relation rows) and --sampling (each
 * scheme) under psrun -n 2 it still learns, replicas serve the relations,
 * and every batch's negatives come from psmem's sampler.  On 2 hosts x 1
 * node (two psruns on loopback, tests/hosts.h) the hosts split the
 * training triples exactly (their per-epoch counts in --json add up to the
 * training set), learn as 1 host x 2 nodes does, localize moves the next
 * batch's entities across hosts (classic moves none), and on 2 hosts x 2
 * nodes with replicated relations both hosts evaluate the saved model.
 */
#include <math.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "common.h"
#include "hosts.h"
#include "lose_host.h"

#define NENT 50 /* chain entities e0..e49, plus 5 group entities */
#define NALL (NENT + 5)

static char dir[] = "/tmp/psmem-test-kge-XXXXXX";
static struct run_result res;

static const char *path_of(const char *name)
{
	static char p[4][1024];
	static int i;
	char *s = p[i++ % 4];
	snprintf(s, 1024, "%s/%s", dir, name);
	return s;
}

static void write_text(const char *name, const char *text)
{
	FILE *f = fopen(path_of(name), "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* Planted structure: next(i) = i+1, prev(i) = i-1 (mod nent), a symmetric
 * relation pairing i with 7i+3 mod nent both ways, and grp(i) = g(i mod
 * groups).  Shuffled; 10% valid, 10% test, the rest train. */
static void make_kg_of(const char *sub, int nent, int groups)
{
	char (*t)[64] = calloc(6 * (size_t)nent, 64);
	assert_non_null(t);
	int n = 0;
	for (int i = 0; i < nent; i++) {
		int j = (7 * i + 3) % nent;
		snprintf(t[n++], 64, "e%d\tnext\te%d\n", i, (i + 1) % nent);
		snprintf(t[n++], 64, "e%d\tprev\te%d\n", i, (i + nent - 1) % nent);
		snprintf(t[n++], 64, "e%d\tsym\te%d\n", i, j);
		snprintf(t[n++], 64, "e%d\tsym\te%d\n", j, i);
		snprintf(t[n++], 64, "e%d\tgrp\tg%d\n", i, i % groups);
	}
	uint64_t s = 42;
	for (int i = n; i > 1; i--) {
		int j = (int)(test_rnd(&s) % (uint64_t)i);
		char tmp[64];
		memcpy(tmp, t[i - 1], 64);
		memcpy(t[i - 1], t[j], 64);
		memcpy(t[j], tmp, 64);
	}
	char p[512];
	snprintf(p, sizeof p, "%s/%s", dir, sub);
	mkdir(p, 0700);
	const char *names[3] = {"valid.txt", "test.txt", "train.txt"};
	int k = n / 10, bounds[4] = {0, k, 2 * k, n};
	for (int f = 0; f < 3; f++) {
		char fp[600];
		snprintf(fp, sizeof fp, "%s/%s", p, names[f]);
		FILE *fo = fopen(fp, "w");
		assert_non_null(fo);
		for (int i = bounds[f]; i < bounds[f + 1]; i++)
			fputs(t[i], fo);
		fclose(fo);
	}
	free(t);
}

static void make_kg(const char *sub)
{
	make_kg_of(sub, NENT, 5);
}

/* The larger graph of the multi-host tests: 400 entities, 2000 triples,
 * 1600 of them training triples, 200 test triples (400 ranking queries:
 * an MRR less noisy than the small graph's 50). */
#define BIG_NENT 400
#define BIG_TRAIN (5 * BIG_NENT - 2 * (5 * BIG_NENT / 10))

static int setup(void **state)
{
	(void)state;
	if (!mkdtemp(dir))
		return -1;
	make_kg("kg");
	make_kg_of("kgbig", BIG_NENT, 20);
	return mh_setup(NULL); /* the multi-host runs' token and output files */
}

static int teardown(void **state)
{
	(void)state;
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	int rc = system(cmd) == 0 ? 0 : -1;
	return mh_teardown(NULL) || rc ? -1 : 0;
}

/* Runs kge (under psrun -n nodes when nodes > 0) with the extra args. */
static void run_kge(int nodes, const char *const *extra)
{
	char *argv[64];
	int a = 0;
	char nbuf[16];
	if (nodes > 0) {
		snprintf(nbuf, sizeof nbuf, "%d", nodes);
		argv[a++] = (char *)build_path("bin/psrun");
		argv[a++] = "-n";
		argv[a++] = nbuf;
	}
	argv[a++] = (char *)build_path("apps/kge");
	for (int i = 0; extra[i]; i++)
		argv[a++] = (char *)extra[i];
	argv[a] = NULL;
	run_prog(argv, NULL, 60, -1, 0, &res);
}

/* Value of "key": in a JSON object (numbers only). */
static double json_num(const char *json, const char *key)
{
	char pat[64];
	snprintf(pat, sizeof pat, "\"%s\": ", key);
	const char *p = strstr(json, pat);
	if (!p)
		fail_msg("key %s missing from %s", key, json);
	return strtod(p + strlen(pat), NULL);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	static char buf[1 << 20];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = 0;
	fclose(f);
	return buf;
}

static double random_mrr(void)
{
	double h = 0;
	for (int i = 1; i <= NALL; i++)
		h += 1.0 / i;
	return h / NALL;
}

/* Trains (with more options, NULL-terminated) and checks the model
 * learned: MRR > 3x random, loss fell. */
static void train_and_check_with(int nodes, const char *policy, const char *threads, const char *json,
				 const char *const *more)
{
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	const char *args[32] = {"--dataset", path_of("kg"), "--epochs", "25", "--dim", "32", "--batch", "32", "--neg",
				"16", "--policy", policy, "--threads", threads, "--json", json, NULL};
	int n = 16;
	for (; more && *more; more++)
		args[n++] = *more;
	args[n] = NULL;
	run_kge(nodes, args);
	if (res.status != 0)
		fail_msg("kge exited %d: %s", res.status, res.err);
	const char *j = slurp(json);
	double mrr = json_num(j, "mrr");
	if (!(mrr > 3 * random_mrr()))
		fail_msg("MRR %.4f not above 3 x random %.4f\n%s", mrr, random_mrr(), res.out);
	assert_int_equal((int)json_num(j, "nodes"), nodes > 0 ? nodes : 1);
	/* loss of epoch 1 vs epoch 25, from the per-epoch lines */
	const char *e1 = strstr(res.out, "epoch 1/25:"), *e25 = strstr(res.out, "epoch 25/25:");
	assert_non_null(e1);
	assert_non_null(e25);
	double l1 = strtod(strstr(e1, "loss ") + 5, NULL), l25 = strtod(strstr(e25, "loss ") + 5, NULL);
	if (!(l25 < 0.7 * l1))
		fail_msg("loss did not fall: %.4f -> %.4f", l1, l25);
	assert_int_equal(seg_leaked_since(&segs), 0); /* other jobs' segments do not count */
}

static void train_and_check(int nodes, const char *policy, const char *threads, const char *json)
{
	train_and_check_with(nodes, policy, threads, json, NULL);
}

static void test_one_node_learns_the_planted_structure(void **state)
{
	(void)state;
	train_and_check(0, "classic", "1", path_of("one.json"));
}

static void test_one_node_two_threads_localize_learns(void **state)
{
	(void)state;
	train_and_check(0, "localize", "2", path_of("one2.json"));
}

static void test_two_nodes_classic_learns(void **state)
{
	(void)state;
	train_and_check(2, "classic", "1", path_of("two-classic.json"));
}

static void test_two_nodes_localize_learns(void **state)
{
	(void)state;
	train_and_check(2, "localize", "2", path_of("two-localize.json"));
}

static void test_two_nodes_ssp_learns(void **state)
{
	(void)state;
	const char *more[] = {"--sync", "ssp:2", NULL};
	train_and_check_with(2, "localize", "2", path_of("two-ssp.json"), more);
	assert_non_null(strstr(slurp(path_of("two-ssp.json")), "\"sync\": \"ssp:2\""));
	assert_non_null(strstr(res.out, ", sync ssp:2"));
}

/* One thread: the server-side adagrad rule does the same float operations
 * as the client-side Adagrad (accumulator += g^2, value += -lr g /
 * (sqrt(acc) + 1e-10)), so MRR and loss agree to the last bit. */
static void test_rule_adagrad_computes_what_client_adagrad_does(void **state)
{
	(void)state;
	const char *more[] = {"--rule", "adagrad", NULL};
	train_and_check(0, "classic", "1", path_of("client.json"));
	char client[4096];
	snprintf(client, sizeof client, "%s", slurp(path_of("client.json")));
	train_and_check_with(0, "classic", "1", path_of("server.json"), more);
	const char *server = slurp(path_of("server.json"));
	assert_non_null(strstr(server, "\"rule\": \"adagrad\""));
	assert_true(json_num(server, "mrr") == json_num(client, "mrr"));
	assert_true(json_num(server, "loss") == json_num(client, "loss"));
	assert_non_null(strstr(res.out, "server-side rule adagrad"));
}

/* 2 nodes x 1 thread, 25 epochs, batch 32, 16 negatives: node 0 trains
 * 100 of the 200 training triples, 4 batches an epoch, so psmem drew
 * exactly 25 x 4 x 16 negatives on node 0. */
static void replicate_sampling(const char *policy, const char *sampling, const char *name)
{
	char json[600];
	snprintf(json, sizeof json, "%s/repl-%s-%s.json", dir, policy, sampling);
	const char *args[] = {"--dataset", path_of("kg"), "--epochs", "25", "--dim", "32", "--batch", "32", "--neg",
			      "16", "--policy", policy, "--replicate", "4", "--sampling", sampling, "--json", json, NULL};
	run_kge(2, args);
	if (res.status != 0)
		fail_msg("kge exited %d: %s", res.status, res.err);
	const char *j = slurp(json);
	double mrr = json_num(j, "mrr"), share = json_num(j, "repl_share");
	print_message("%s %s: MRR %.3f, %.1f%% of node 0's key accesses by replicas\n", policy, sampling, mrr,
		      100 * share);
	if (!(mrr > 3 * random_mrr()))
		fail_msg("MRR %.4f not above 3 x random %.4f\n%s", mrr, random_mrr(), res.out);
	assert_int_equal((int)json_num(j, "replicate"), 4);
	char want[64];
	snprintf(want, sizeof want, "\"sampling\": \"%s\"", name);
	if (!strstr(j, want))
		fail_msg("JSON lacks %s: %s", want, j);
	assert_true(share > 0.03); /* 4 of the 8 relation rows, in every batch of ~60 keys */
	assert_int_equal((int)json_num(j, "samples"), 25 * 4 * 16);
	if (!strncmp(sampling, "pool", 4))
		assert_true(json_num(j, "relocations") > 0);
	assert_non_null(strstr(res.out, "% served by replicas"));
}

static void test_two_nodes_replicate_sampling_naive(void **state)
{
	(void)state;
	replicate_sampling("classic", "naive", "naive");
}

static void test_two_nodes_replicate_sampling_local(void **state)
{
	(void)state;
	replicate_sampling("classic", "local", "local");
}

static void test_two_nodes_replicate_sampling_pool(void **state)
{
	(void)state;
	replicate_sampling("localize", "pool:2", "pool:2");
	replicate_sampling("classic", "pool", "pool:8");
}

/* ------------------------------------------ MRR of a saved DistMult model */

#define MAXNAMES 64
#define MAXDIM 32
struct names {
	char n[MAXNAMES][16];
	int k;
};

static int name_id(struct names *m, const char *s)
{
	for (int i = 0; i < m->k; i++)
		if (!strcmp(m->n[i], s))
			return i;
	assert_true(m->k < MAXNAMES && strlen(s) < 16);
	strcpy(m->n[m->k], s);
	return m->k++;
}

static struct names ents, rels;
static double E[MAXNAMES][MAXDIM], R[2][MAXNAMES][MAXDIM]; /* R[1]: reciprocals */
static int trip[1024][3], ntrip, ntest0;                     /* test triples first */

static void read_triples_file(const char *sub, const char *file)
{
	char p[700], h[16], r[16], t[16];
	snprintf(p, sizeof p, "%s/%s/%s", dir, sub, file);
	FILE *f = fopen(p, "r");
	assert_non_null(f);
	while (fscanf(f, "%15s %15s %15s", h, r, t) == 3) {
		assert_true(ntrip < 1024);
		trip[ntrip][0] = name_id(&ents, h);
		trip[ntrip][1] = name_id(&rels, r);
		trip[ntrip][2] = name_id(&ents, t);
		ntrip++;
	}
	fclose(f);
}

/* Known answers b of (a, r, ?) (dir 0) or (?, r, a) (dir 1). */
static bool known(int a, int r, int b, int dir)
{
	for (int i = 0; i < ntrip; i++)
		if (trip[i][1] == r && trip[i][dir ? 2 : 0] == a && trip[i][dir ? 0 : 2] == b)
			return true;
	return false;
}

/* Filtered test MRR of a --save'd DistMult model, ranked as kge ranks:
 * tails with q = h * r, heads with q = t * r' (the reciprocal), other
 * known answers removed, ties counted as half. */
static double mrr_of_saved_distmult(const char *model, int D)
{
	memset(&ents, 0, sizeof ents);
	memset(&rels, 0, sizeof rels);
	ntrip = 0;
	read_triples_file("kg", "test.txt");
	ntest0 = ntrip;
	read_triples_file("kg", "train.txt");
	read_triples_file("kg", "valid.txt");
	FILE *f = fopen(model, "r");
	assert_non_null(f);
	char line[4096];
	int rows = 0;
	while (fgets(line, sizeof line, f)) {
		if (line[0] == '#')
			continue;
		char *kind = strtok(line, "\t"), *name = strtok(NULL, "\t"), *vals = strtok(NULL, "\n");
		assert_non_null(vals);
		double *row = !strcmp(kind, "entity")	  ? E[name_id(&ents, name)]
			      : !strcmp(kind, "relation") ? R[0][name_id(&rels, name)]
							  : R[1][name_id(&rels, name)];
		char *end = vals;
		for (int d = 0; d < D; d++)
			row[d] = strtod(end, &end);
		rows++;
	}
	fclose(f);
	assert_int_equal(rows, ents.k + 2 * rels.k);
	double rr = 0;
	for (int i = 0; i < ntest0; i++)
		for (int dir = 0; dir < 2; dir++) {
			int a = trip[i][dir ? 2 : 0], r = trip[i][1], ans = trip[i][dir ? 0 : 2];
			double s[MAXNAMES];
			for (int e = 0; e < ents.k; e++) {
				s[e] = 0;
				for (int d = 0; d < D; d++)
					s[e] += E[a][d] * R[dir][r][d] * E[e][d];
			}
			double greater = 0, equal = 0;
			for (int e = 0; e < ents.k; e++) {
				if (e == ans || known(a, r, e, dir))
					continue;
				greater += s[e] > s[ans];
				equal += s[e] == s[ans];
			}
			rr += 1.0 / (1.0 + greater + equal / 2);
		}
	return rr / (2.0 * ntest0);
}

/* With no background sync rounds (--repl-rate 0) the nodes' replicas of
 * the relations meet only in ps_sync: the MRR that the workers of both
 * nodes compute on their own copies is the MRR of the model node 0 saves
 * only if the evaluation syncs first. */
static void test_two_nodes_evaluate_the_synced_model(void **state)
{
	(void)state;
	char json[600], model[600];
	snprintf(json, sizeof json, "%s/sync.json", dir);
	snprintf(model, sizeof model, "%s/sync-model.txt", dir);
	const char *args[] = {"--dataset", path_of("kg"), "--model", "distmult", "--epochs", "20", "--dim", "16",
			      "--batch", "32", "--neg", "16", "--replicate", "8", "--repl-rate", "0", "--json", json,
			      "--save", model, NULL};
	run_kge(2, args);
	if (res.status != 0)
		fail_msg("kge exited %d: %s", res.status, res.err);
	double mrr = json_num(slurp(json), "mrr"), saved = mrr_of_saved_distmult(model, 16);
	print_message("reported MRR %.5f, saved model %.5f\n", mrr, saved);
	if (!(fabs(mrr - saved) < 2e-3))
		fail_msg("the workers evaluated MRR %.5f, the saved model has %.5f", mrr, saved);
}

static void test_bad_replication_and_sampling_values(void **state)
{
	(void)state;
	const char *a1[] = {"--dataset", path_of("kg"), "--replicate", "9", NULL};
	run_kge(0, a1);
	assert_int_equal(res.status, 1);
	assert_string_equal(res.err, "kge: --replicate: 9 relation rows, but the data has only 8 (4 relations and "
				     "their reciprocals)\n");
	const char *a2[] = {"--dataset", path_of("kg"), "--sampling", "uniform", NULL};
	run_kge(0, a2);
	assert_int_equal(res.status, 1);
	assert_string_equal(res.err, "kge: --sampling: 'uniform' is not naive, local, pool or pool:U (U from 1 to "
				     "65536)\n");
	const char *a3[] = {"--dataset", path_of("kg"), "--sampling", "pool:x", NULL};
	run_kge(0, a3);
	assert_int_equal(res.status, 1);
	assert_non_null(strstr(res.err, "--sampling: 'pool:x' is not"));
	const char *a4[] = {"--dataset", path_of("kg"), "--replicate", "2", "--repl-rate", "-1", NULL};
	run_kge(0, a4);
	assert_int_equal(res.status, 1);
	assert_string_equal(res.err, "kge: --repl-rate: -1 must be between 0 and 10000\n");
}

static void test_json_has_the_required_keys(void **state)
{
	(void)state;
	const char *args[] = {"--dataset", path_of("kg"), "--epochs", "2", "--dim", "16", "--json", path_of("k.json"),
			      NULL};
	run_kge(0, args);
	assert_int_equal(res.status, 0);
	const char *j = slurp(path_of("k.json"));
	assert_non_null(strstr(j, "\"app\": \"kge\""));
	assert_non_null(strstr(j, "\"policy\": \"classic\""));
	const char *keys[] = {"nodes", "threads", "epochs", "seconds", "throughput", "mrr", "hits1", "hits3", "hits10"};
	for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
		(void)json_num(j, keys[i]);
	assert_int_equal((int)json_num(j, "epochs"), 2);
	double h1 = json_num(j, "hits1"), h3 = json_num(j, "hits3"), h10 = json_num(j, "hits10");
	assert_true(h1 <= h3 && h3 <= h10 && h10 <= 1.0);
	/* the summary line carries the same figures */
	assert_non_null(strstr(res.out, "test filtered MRR"));
	assert_non_null(strstr(res.out, "triples/s"));
	/* one host: present, none lost, joined or left; it trained every
	 * triple in each epoch */
	assert_int_equal((int)json_num(j, "hosts_present"), 1);
	assert_int_equal((int)json_num(j, "hosts_lost"), 0);
	assert_int_equal((int)json_num(j, "hosts_joined"), 0);
	assert_int_equal((int)json_num(j, "hosts_left"), 0);
	assert_int_equal((int)json_num(j, "first_epoch"), 1);
	assert_int_equal((int)json_num(j, "left_epoch"), 0);
	long long c[2], n = (long long)json_num(j, "train_triples");
	int cols;
	assert_int_equal(json_rows(j, "epoch_host_triples", c, 2, &cols), 2);
	assert_int_equal(cols, 1);
	assert_true(c[0] == n && c[1] == n);
}

static void test_one_thread_is_deterministic_and_saves_the_model(void **state)
{
	(void)state;
	char first[256];
	for (int k = 0; k < 2; k++) {
		const char *args[] = {"--dataset", path_of("kg"), "--epochs", "5", "--dim", "16", "--seed", "7",
				      "--json", path_of("d.json"), "--save", path_of("model.txt"), NULL};
		run_kge(0, args);
		assert_int_equal(res.status, 0);
		const char *j = slurp(path_of("d.json"));
		const char *m = strstr(j, "\"mrr\"");
		assert_non_null(m);
		if (k == 0)
			snprintf(first, sizeof first, "%.40s", m);
		else
			assert_memory_equal(first, m, strlen(first));
	}
	const char *model = slurp(path_of("model.txt"));
	assert_non_null(strstr(model, "\nentity\te0\t"));
	assert_non_null(strstr(model, "\nentity\tg4\t"));
	assert_non_null(strstr(model, "\nrelation\tsym\t"));
	assert_non_null(strstr(model, "\nreciprocal\tnext\t"));
}

static void expect_failure(const char *dataset, const char *msg)
{
	const char *args[] = {"--dataset", dataset, "--epochs", "1", "--dim", "8", NULL};
	run_kge(0, args);
	assert_int_equal(res.status, 1);
	if (!strstr(res.err, msg))
		fail_msg("expected '%s' in stderr, got: %s", msg, res.err);
}

static void make_bad(const char *sub, const char *train, const char *valid, const char *test)
{
	char p[512];
	snprintf(p, sizeof p, "%s/%s", dir, sub);
	mkdir(p, 0700);
	char n[600];
	if (train) {
		snprintf(n, sizeof n, "%s/train.txt", sub);
		write_text(n, train);
	}
	if (valid) {
		snprintf(n, sizeof n, "%s/valid.txt", sub);
		write_text(n, valid);
	}
	if (test) {
		snprintf(n, sizeof n, "%s/test.txt", sub);
		write_text(n, test);
	}
}

static void test_malformed_input_stops_with_its_message(void **state)
{
	(void)state;
	const char *ok = "a\tr\tb\nb\tr\tc\n";
	char msg[700];

	make_bad("fields", "a\tr\tb\nb\tr\tc\nc\tr\n", ok, ok);
	snprintf(msg, sizeof msg, "kge: %s/fields/train.txt:3: expected 3 tab-separated fields (head, relation, tail), found 2",
		 dir);
	expect_failure(path_of("fields"), msg);

	make_bad("fields4", ok, ok, "a\tr\tb\textra\n");
	snprintf(msg, sizeof msg, "kge: %s/fields4/test.txt:1: expected 3 tab-separated fields", dir);
	expect_failure(path_of("fields4"), msg);

	make_bad("emptyfield", ok, "a\t\tb\n", ok);
	snprintf(msg, sizeof msg, "kge: %s/emptyfield/valid.txt:1: empty relation field", dir);
	expect_failure(path_of("emptyfield"), msg);

	make_bad("empty", "", ok, ok);
	snprintf(msg, sizeof msg, "kge: %s/empty/train.txt: empty file: no triples", dir);
	expect_failure(path_of("empty"), msg);

	make_bad("notest", ok, ok, NULL);
	snprintf(msg, sizeof msg, "kge: %s/notest/test.txt: cannot open: No such file or directory", dir);
	expect_failure(path_of("notest"), msg);

	snprintf(msg, sizeof msg, "kge: %s/nowhere: cannot open dataset directory: No such file or directory", dir);
	expect_failure(path_of("nowhere"), msg);

	make_bad("unknown", ok, ok, "x\tr\tb\ny\tr\tz\n");
	snprintf(msg, sizeof msg, "kge: %s/unknown/test.txt: none of its 2 triples has its entities and relation in train.txt",
		 dir);
	expect_failure(path_of("unknown"), msg);

	const char *bad_opt[] = {"--dataset", path_of("kg"), "--model", "transe", NULL};
	run_kge(0, bad_opt);
	assert_int_equal(res.status, 1);
	assert_non_null(strstr(res.err, "--model: 'transe' is not one of complex, distmult, rescal"));
	const char *bad_num[] = {"--dataset", path_of("kg"), "--dim", "abc", NULL};
	run_kge(0, bad_num);
	assert_int_equal(res.status, 1);
	assert_non_null(strstr(res.err, "--dim: 'abc' is not a valid integer"));
	const char *bad_sync[] = {"--dataset", path_of("kg"), "--sync", "ssp:x", NULL};
	run_kge(0, bad_sync);
	assert_int_equal(res.status, 1);
	assert_string_equal(res.err,
			    "kge: --sync: 'ssp:x': the staleness S of ssp:S must be a whole number from 0 to 1000000\n");
	const char *bad_rule[] = {"--dataset", path_of("kg"), "--rule", "adam", NULL};
	run_kge(0, bad_rule);
	assert_int_equal(res.status, 1);
	assert_string_equal(res.err, "kge: --rule: 'adam' is not one of sum, sgd, adagrad\n");
	const char *clash[] = {"--dataset", path_of("kg"), "--optimizer", "adagrad", "--rule", "sgd", NULL};
	run_kge(0, clash);
	assert_int_equal(res.status, 1);
	assert_string_equal(res.err, "kge: --rule sgd conflicts with --optimizer adagrad\n");
}

/* A first line naming the columns is skipped with a note (in train.txt and
 * in test.txt), not trained as a triple: "head", "relation" and "tail"
 * would otherwise become two entities and a relation of their own. */
static void test_a_header_line_is_skipped_with_a_note(void **state)
{
	(void)state;
	make_bad("header", "head\trelation\ttail\na\tr\tb\nb\tr\tc\nc\tr\ta\n", "a\tr\tb\n",
		 "Subject\tPredicate\tObject\na\tr\tc\n");
	const char *args[] = {"--dataset", path_of("header"), "--epochs", "1", "--dim", "8", NULL};
	run_kge(0, args);
	if (res.status != 0)
		fail_msg("kge exited %d: %s", res.status, res.err);
	char want[1600];
	snprintf(want, sizeof want,
		 "kge: %s/header/train.txt:1: skipped a header line (head, relation, tail), not a triple\n"
		 "kge: %s/header/test.txt:1: skipped a header line (Subject, Predicate, Object), not a triple\n",
		 dir, dir);
	assert_string_equal(res.err, want);
	assert_non_null(strstr(res.out, "kge: 3 entities, 1 relations; 3 train, 1 valid, 1 test triples"));
	/* only the first line is a header: the same words later are a triple */
	make_bad("header2", "a\tr\tb\nhead\trelation\ttail\n", "a\tr\tb\n", "a\tr\tb\n");
	const char *a2[] = {"--dataset", path_of("header2"), "--epochs", "1", "--dim", "8", NULL};
	run_kge(0, a2);
	assert_int_equal(res.status, 0);
	assert_string_equal(res.err, "");
	assert_non_null(strstr(res.out, "kge: 4 entities, 2 relations; 2 train"));
}

/* train.txt.gz (and valid/test .gz) are found when the plain names are
 * absent, and read as gzip. */
static void test_gz_dataset_files_are_found(void **state)
{
	(void)state;
	make_bad("gz", NULL, "a\tr\tb\n", NULL);
	const char *files[2][2] = {{"gz/train.txt.gz", "a\tr\tb\nb\tr\tc\nc\tr\ta\n"}, {"gz/test.txt.gz", "a\tr\tc\n"}};
	for (int k = 0; k < 2; k++) {
		gzFile g = gzopen(path_of(files[k][0]), "wb");
		assert_non_null(g);
		assert_int_equal(gzputs(g, files[k][1]), (int)strlen(files[k][1]));
		assert_int_equal(gzclose(g), Z_OK);
	}
	const char *args[] = {"--dataset", path_of("gz"), "--epochs", "1", "--dim", "8", NULL};
	run_kge(0, args);
	if (res.status != 0)
		fail_msg("kge exited %d: %s", res.status, res.err);
	assert_non_null(strstr(res.out, "kge: 3 entities, 1 relations; 3 train, 1 valid, 1 test triples"));
}

/* --lr 1e6 with plain SGD blows the embeddings up: the run stops with
 * exit 1 and the hint, writes no JSON, and under psrun -n 2 node 0 says
 * it before any node exits. */
static void test_a_diverged_run_stops_with_a_hint(void **state)
{
	(void)state;
	const char *json = path_of("div.json");
	const char *args[] = {"--dataset", path_of("kg"), "--epochs", "20", "--dim", "8", "--optimizer", "sgd",
			      "--lr", "1e6", "--json", json, NULL};
	const char *head = "kge: training diverged in epoch ",
		   *tail = " (the loss is not a finite number): lower --lr (now 1e+06)\n";
	for (int nodes = 0; nodes <= 2; nodes += 2) {
		run_kge(nodes, args);
		assert_diverged(&res, head, tail, nodes == 0);
		assert_int_equal(access(json, F_OK), -1);
	}
}

/* An unwritable output fails before the data is read. */
static void test_unwritable_outputs_fail_before_training(void **state)
{
	(void)state;
	const char *opts[] = {"--json", "--save", "--checkpoint"};
	for (int k = 0; k < 3; k++) {
		const char *args[] = {"--dataset", path_of("kg"), opts[k], "/nonexistent-psmem-dir/out", NULL};
		run_kge(0, args);
		assert_unwritable(&res, "kge", opts[k]);
	}
}

static void test_unknown_entities_in_test_are_skipped_and_counted(void **state)
{
	(void)state;
	make_bad("skip", "a\tr\tb\nb\tr\tc\nc\tr\ta\n", "a\tr\tb\n", "a\tr\tc\nq\tr\ta\n");
	const char *args[] = {"--dataset", path_of("skip"), "--epochs", "1", "--dim", "8", NULL};
	run_kge(0, args);
	assert_int_equal(res.status, 0);
	char msg[700];
	snprintf(msg, sizeof msg,
		 "kge: %s/skip/test.txt: skipped 1 of 2 triples whose entity or relation is not in train.txt", dir);
	if (!strstr(res.err, msg))
		fail_msg("expected '%s', got: %s", msg, res.err);
}

static void test_help_documents_every_option(void **state)
{
	(void)state;
	const char *args[] = {"--help", NULL};
	run_kge(0, args);
	assert_int_equal(res.status, 0);
	const char *opts[] = {"--dataset", "--model", "--dim",	  "--optimizer", "--lr",	 "--reg",
			      "--regularizer", "--init", "--neg", "--batch",	 "--epochs",	 "--threads",
			      "--policy",  "--seed",	"--eval-every", "--json", "--save", "--help", "--version",
			      "complex",   "distmult", "rescal",  "adagrad",	 "classic",	 "localize",
			      "--rule",	   "--sync",	"ssp:S", "--replicate", "--repl-rate", "--sampling", "naive", "local", "pool[:U]"};
	for (size_t i = 0; i < sizeof opts / sizeof *opts; i++)
		if (!strstr(res.out, opts[i]))
			fail_msg("--help does not mention %s", opts[i]);
	/* every option line states its default */
	int lines = 0, defaults = 0;
	for (const char *p = res.out; (p = strstr(p, "\n  --")); p++)
		lines++;
	for (const char *p = res.out; (p = strstr(p, "(default")); p++)
		defaults++;
	assert_int_equal(defaults, lines - 3); /* --dataset is required, --help and --version have none */
}

static void test_distmult_and_rescal_with_sgd_run(void **state)
{
	(void)state;
	const char *a1[] = {"--dataset", path_of("kg"), "--model", "distmult", "--epochs", "3", "--dim", "16", NULL};
	run_kge(0, a1);
	assert_int_equal(res.status, 0);
	const char *a2[] = {"--dataset", path_of("kg"), "--model", "rescal", "--optimizer", "sgd", "--epochs", "3",
			    "--dim", "8", "--eval-every", "1", NULL};
	run_kge(0, a2);
	if (res.status != 0)
		fail_msg("rescal failed: %s", res.err);
	assert_non_null(strstr(res.out, "valid MRR"));
}

/* ------------------------------------------------ two hosts on loopback */

/* Runs kge with args as 2 hosts x nodes nodes (two psruns on 127.0.0.1,
 * one job token); both must exit 0. */
static void run_hosts(int nodes, const char *const *args)
{
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	const char *prog[48];
	int n = 0;
	prog[n++] = build_path("apps/kge");
	while (*args)
		prog[n++] = *args++;
	prog[n] = NULL;
	struct mh_proc p[2];
	mh_run_hosts(2, nodes, prog, p, 240);
	if (p[0].status != 0 || p[1].status != 0) {
		mh_show(&p[0], "host0");
		mh_show(&p[1], "host1");
		fail_msg("kge on 2 hosts: host 0 exited %d, host 1 %d", p[0].status, p[1].status);
	}
	assert_int_equal(seg_leaked_since(&segs), 0);
}

static void run_two_hosts(const char *const *args)
{
	run_hosts(1, args);
}

/* The JSON summary host r wrote for --json path (host 0: path, host R:
 * path.hostR), copied into buf. */
static const char *host_json(char *buf, size_t len, const char *path, int r)
{
	char p[700];
	snprintf(buf, len, "%s", slurp(host_file(p, sizeof p, path, r)));
	return buf;
}

/*
 * The counts of a 2-host run of `epochs` epochs over BIG_TRAIN triples:
 * each host's node trained its half of the training set every epoch, so
 * the hosts' counts add up to the training set exactly (each host trained
 * all of it before the work was split over hosts: twice the set), and both
 * hosts saw the job's total.
 */
static void assert_two_host_counts(const char *j0, const char *j1, int epochs)
{
	const char *j[2] = {j0, j1};
	long sum = 0;
	for (int r = 0; r < 2; r++) {
		long per = (long)json_num(j[r], "triples_per_epoch");
		print_message("host %d trained %ld triples per epoch (local share %.3f, %ld relocations)\n", r, per,
			      json_num(j[r], "local_share"), (long)json_num(j[r], "relocations"));
		assert_int_equal((int)json_num(j[r], "host"), r);
		assert_int_equal((int)json_num(j[r], "hosts"), 2);
		assert_int_equal((int)json_num(j[r], "nodes"), 1);
		assert_int_equal(per, BIG_TRAIN / 2); /* shares ntrain * g / 2: exact halves of 1600 */
		assert_int_equal((long)json_num(j[r], "triples_per_epoch_node0"), per);
		assert_int_equal((long)json_num(j[r], "triples_trained"), (long)epochs * per);
		assert_int_equal((long)json_num(j[r], "job_triples_per_epoch"), BIG_TRAIN);
		assert_int_equal((long)json_num(j[r], "train_triples"), BIG_TRAIN);
		sum += per;
		/* every epoch: both hosts present, each its half */
		assert_int_equal((int)json_num(j[r], "hosts_present"), 2);
		long long c[2 * 32];
		int cols;
		assert_int_equal(json_rows(j[r], "epoch_host_triples", c, 2 * 32, &cols), epochs);
		assert_int_equal(cols, 2);
		for (int e = 0; e < 2 * epochs; e++)
			assert_int_equal(c[e], BIG_TRAIN / 2);
	}
	assert_int_equal(sum, BIG_TRAIN);
}

/*
 * 2 hosts x 1 node against 1 host x 2 nodes, --policy localize: the hosts
 * split the training triples (each trained once per epoch), learn as well
 * as one host with two nodes, and the entities of the next batch move to
 * the host that trains it, so most accesses are local on both hosts where
 * --policy classic (no moves: the range placement over the hosts) serves
 * about half of them from the other host.
 *
 * The MRR bound: identical runs of this graph differ from one another by
 * up to about 0.03 in MRR (the order in which the nodes' concurrent
 * updates land changes every run, and Adagrad's first steps amplify it),
 * so the 2-host MRR must not be more than 0.05 below the 1-host one's; a
 * wrong split (a host training the other's share, or nothing) shows in the
 * counts exactly.
 */
static void test_two_hosts_split_the_triples_and_localize_across_hosts(void **state)
{
	(void)state;
	char data[600], one[600], two[600], cls[600];
	snprintf(data, sizeof data, "%s", path_of("kgbig"));
	snprintf(one, sizeof one, "%s", path_of("big-1host.json"));
	snprintf(two, sizeof two, "%s", path_of("big-2hosts.json"));
	snprintf(cls, sizeof cls, "%s", path_of("big-2hosts-classic.json"));
	const char *base[] = {"--dataset", data, "--epochs", "20", "--dim", "32", "--batch", "64", "--neg", "32",
			      "--threads", "1", "--policy", "localize", "--json", NULL, NULL};
	base[15] = one;
	run_kge(2, base);
	if (res.status != 0)
		fail_msg("kge exited %d: %s", res.status, res.err);
	char a[8192], b0[8192], b1[8192], c0[8192], c1[8192];
	snprintf(a, sizeof a, "%s", slurp(one));
	/* one host: its two nodes split the set and the JSON counts both */
	assert_int_equal((long)json_num(a, "triples_per_epoch"), BIG_TRAIN);
	assert_int_equal((long)json_num(a, "triples_per_epoch_node0") + (long)json_num(a, "triples_per_epoch_node1"),
			 BIG_TRAIN);
	assert_int_equal((long)json_num(a, "triples_trained"), 20L * BIG_TRAIN);

	base[15] = two;
	run_two_hosts(base);
	host_json(b0, sizeof b0, two, 0);
	host_json(b1, sizeof b1, two, 1);
	assert_two_host_counts(b0, b1, 20);
	double m1 = json_num(a, "mrr"), m2 = json_num(b0, "mrr");
	print_message("MRR: 1 host x 2 nodes %.4f, 2 hosts x 1 node %.4f (host 1 says %.4f)\n", m1, m2,
		      json_num(b1, "mrr"));
	assert_true(json_num(b1, "mrr") == m2); /* one evaluation, split over both hosts */
	if (!(m2 > 3 * random_mrr() && m2 >= m1 - 0.05))
		fail_msg("2 hosts reached MRR %.4f, 1 host x 2 nodes %.4f", m2, m1);

	/* Where the rows are: smaller batches (about 40 of the 400 entities,
	 * so the two hosts' current batches seldom want the same ones), 4
	 * epochs.  classic: the same exact split, no moves, the range
	 * placement over the hosts; localize moves each next batch's entities
	 * to the host that trains it, so far more accesses are local. */
	base[3] = "4";
	base[7] = "16";
	base[9] = "8";
	for (int k = 0; k < 2; k++) {
		base[13] = k ? "classic" : "localize";
		base[15] = k ? cls : two;
		run_two_hosts(base);
		host_json(k ? c0 : b0, sizeof b0, base[15], 0);
		host_json(k ? c1 : b1, sizeof b1, base[15], 1);
		assert_two_host_counts(k ? c0 : b0, k ? c1 : b1, 4);
	}
	const char *loc[2] = {b0, b1}, *clc[2] = {c0, c1};
	for (int r = 0; r < 2; r++) {
		double ls = json_num(loc[r], "local_share"), cs = json_num(clc[r], "local_share");
		assert_true(json_num(loc[r], "relocations") > 0);
		assert_int_equal((long)json_num(clc[r], "relocations"), 0);
		if (!(ls > 0.75 && ls > cs + 0.1))
			fail_msg("host %d: %.3f of accesses local with localize, %.3f with classic", r, ls, cs);
	}
}

/* As test_two_nodes_evaluate_the_synced_model, on 2 hosts x 2 nodes, with
 * replicated relations: the workers of both hosts evaluate, each on its
 * own copy of the rows, the model host 0 saves (kge syncs the replicas on
 * every host, then on every host again, as psmem.h asks for a guarantee
 * over all hosts; this run also passed with one round or none, so it does
 * not tell those apart).  Both hosts report the one evaluation's MRR, and
 * the four nodes (app nodes 0-3) trained a quarter of the 200 triples
 * each. */
static void test_two_hosts_evaluate_the_synced_model(void **state)
{
	(void)state;
	char data[600], json[600], model[600], j0[8192], j1[8192];
	snprintf(data, sizeof data, "%s", path_of("kg"));
	snprintf(json, sizeof json, "%s/sync2.json", dir);
	snprintf(model, sizeof model, "%s/sync2-model.txt", dir);
	const char *args[] = {"--dataset", data, "--model", "distmult", "--epochs", "20", "--dim", "16", "--batch",
			      "32", "--neg", "16", "--replicate", "8", "--repl-rate", "0", "--json", json, "--save",
			      model, NULL};
	run_hosts(2, args);
	host_json(j0, sizeof j0, json, 0);
	host_json(j1, sizeof j1, json, 1);
	const char *j[2] = {j0, j1};
	for (int r = 0; r < 2; r++) {
		assert_int_equal((long)json_num(j[r], "triples_per_epoch_node0"), 50);
		assert_int_equal((long)json_num(j[r], "triples_per_epoch_node1"), 50);
		assert_int_equal((long)json_num(j[r], "triples_per_epoch"), 100);
		assert_int_equal((long)json_num(j[r], "job_triples_per_epoch"), 200);
	}
	double mrr = json_num(j0, "mrr"), saved = mrr_of_saved_distmult(model, 16);
	print_message("reported MRR %.5f (host 1: %.5f), saved model %.5f\n", mrr, json_num(j1, "mrr"), saved);
	assert_true(json_num(j1, "mrr") == mrr);
	if (!(fabs(mrr - saved) < 2e-3))
		fail_msg("the hosts evaluated MRR %.5f, the saved model has %.5f", mrr, saved);
}

/* ------------------------------------------- three hosts, one of them lost */

/*
 * kge on 3 hosts x 1 node (the larger graph), host 2 SIGKILLed when it
 * shows epoch 5 done, under psrun --on-host-failure continue: the
 * survivors finish, both record host 2 lost at epoch L (the first epoch
 * trained without it; >= 6: it finished epoch 5) and, in
 * epoch_host_triples, every epoch before L-1 trained by all three hosts
 * (the whole set), epoch L-1 (the one it died in) by the survivors' shares
 * with host 2's unknown (-1; its unfinished part is not trained again) or,
 * if it was seen only after that epoch's barrier, its share, and every
 * epoch from L on by the survivors alone, the whole training set exactly.
 * Their one evaluation (split over the two) is within 0.1 MRR of an
 * undisturbed 3-host run's (20 epochs on 3 hosts: undisturbed runs gave
 * 0.72-0.76, runs losing host 2 0.70-0.75; a 0.05 bound failed once in
 * 15 runs).
 */
/* An epoch of this graph takes about 7 ms here.  The kill comes after
 * epoch 5, not 1: keys are promoted from backup rounds (every 5 ms at
 * --backup-rate 200), and a host killed before its first round completes
 * loses its keys (DESIGN, BK4: the survivors' pulls of them fail; seen
 * here when killed after epoch 1 at 50 rounds/s).  20 epochs: the kill
 * (the test polls the victim's output every millisecond) lands with many
 * epochs left even on a loaded machine. */
#define LOST_EPOCHS "20"
#define LOST_AFTER "5"

/* Host h's share of the triples on 3 hosts x 1 node. */
static long long share_of_3(int h)
{
	return (long long)BIG_TRAIN * (h + 1) / 3 - (long long)BIG_TRAIN * h / 3;
}

static void lose_host(int victim)
{
	const int E = atoi(LOST_EPOCHS);
	char data[600], full[600], lost[600], model[600];
	snprintf(data, sizeof data, "%s", path_of("kgbig"));
	snprintf(full, sizeof full, "%s", path_of("big-3hosts.json"));
	snprintf(lost, sizeof lost, "%s", path_of("big-3hosts-lost.json"));
	snprintf(model, sizeof model, "%s", path_of("big-3hosts-lost-model.txt"));
	unlink(model);
	const char *args[] = {"--dataset", data, "--epochs", LOST_EPOCHS, "--dim", "32", "--batch", "64", "--neg",
			      "32", "--threads", "1", "--json", full, NULL, NULL, NULL};
	struct mh_proc p[3];
	const char *prog[32] = {build_path("apps/kge")};
	for (int i = 0; args[i]; i++)
		prog[i + 1] = args[i];
	mh_run_hosts(3, 1, prog, p, 120);
	mh_show_failed(3, p);
	for (int r = 0; r < 3; r++)
		assert_int_equal(p[r].status, 0);
	char j3[8192], j[2][8192];
	host_json(j3, sizeof j3, full, 0);
	double m3 = json_num(j3, "mrr");

	args[13] = lost;
	args[14] = "--save";
	args[15] = model;
	char out[2][8192];
	run_three_hosts_losing("apps/kge", dir, victim, LOST_AFTER, LOST_EPOCHS, args, out);
	int surv[2] = {victim == 0 ? 1 : 0, victim == 2 ? 1 : 2};
	for (int k = 0; k < 2; k++) {
		int r = surv[k];
		host_json(j[k], sizeof j[k], lost, r);
		long long c[128 * 3];
		int L = host_event(j[k], "lost", victim);
		print_message("host %d: host %d lost at epoch %d of %d\n", r, victim, L, E);
		assert_true(L >= atoi(LOST_AFTER) + 1 && L <= E); /* epochs are left to train without it */
		char said[96];
		snprintf(said, sizeof said, "kge: epoch %d: host %d lost or left; the data split over the 2 hosts present",
			 L, victim);
		assert_non_null(strstr(out[k], said));
		epoch_rows(j[k], "epoch_host_triples", c, E);
		for (int e = 0; e < E; e++) {
			long long *v = c + 3 * e, sum = v[0] + v[1] + v[2], vv = v[victim];
			if (e < 4)
				print_message("  epoch %d: %lld %lld %lld\n", e + 1, v[0], v[1], v[2]);
			if (e < L - 2) { /* all three */
				for (int h = 0; h < 3; h++)
					assert_int_equal(v[h], share_of_3(h));
				assert_int_equal(sum, BIG_TRAIN);
			} else if (e == L - 2) { /* the victim died in it */
				assert_true(vv == -1 || vv == share_of_3(victim));
				assert_int_equal(v[surv[0]] + v[surv[1]], BIG_TRAIN - share_of_3(victim));
			} else { /* re-split: the survivors, all of it, once */
				assert_int_equal(vv, 0);
				assert_int_equal(v[surv[0]], BIG_TRAIN / 2);
				assert_int_equal(sum, BIG_TRAIN);
			}
		}
	}
	double ml = json_num(j[0], "mrr");
	print_message("MRR: 3 hosts %.4f, host %d lost %.4f (host %d says %.4f)\n", m3, victim, ml, surv[1],
		      json_num(j[1], "mrr"));
	assert_true(json_num(j[1], "mrr") == ml); /* one evaluation, split over the survivors */
	if (!(ml > 3 * random_mrr() && ml >= m3 - 0.1))
		fail_msg("MRR %.4f after losing host %d, %.4f undisturbed", ml, victim, m3);
	/* one copy of the model, by the first survivor (host 1 when host 0 is lost) */
	struct stat st;
	assert_int_equal(stat(model, &st), 0);
	assert_true(st.st_size > 0);
}

static void test_three_hosts_resplit_when_host_2_is_killed(void **state)
{
	(void)state;
	lose_host(2);
}

/* Host 0 lost: host 1 reports the same and writes --save. */
static void test_three_hosts_resplit_when_host_0_is_killed(void **state)
{
	(void)state;
	lose_host(0);
}

/*
 * A host joining: kge on 2 hosts x 1 node (psrun --elastic), a third
 * started with psrun --join once host 0 shows epoch 3 done (of 80: a
 * joiner took up to 22 epochs of about 30 ms to start).  All three
 * finish; the members record host 2 joined at epoch J (the first epoch
 * trained with it: after epoch 3, before the end) and, in
 * epoch_host_triples, every epoch before J trained by the two (800 each:
 * the whole set) and every epoch from J on by all three (533, 533, 534:
 * the whole set, once); the joiner's summary starts at J (first_epoch)
 * and says the same from there; the three report the one evaluation,
 * which learned (MRR > 3 x random).  Skipped where psrun has no --join.
 */
#define JOIN_EPOCHS "80"
#define JOIN_AFTER "3"

static void test_a_joiner_trains_a_third_from_its_first_epoch(void **state)
{
	(void)state;
	if (!psrun_has_join()) {
		print_message("SKIP %s: this psrun has no --join (elastic jobs, issue 16: the join branch not "
			      "merged)\n", __func__);
		skip();
	}
	const int E = atoi(JOIN_EPOCHS);
	char data[600], json[600];
	snprintf(data, sizeof data, "%s", path_of("kgbig"));
	snprintf(json, sizeof json, "%s", path_of("big-join.json"));
	const char *args[] = {"--dataset", data, "--epochs", JOIN_EPOCHS, "--dim", "64", "--batch", "32", "--neg",
			      "32", "--threads", "1", "--json", json, NULL};
	char out[3][8192], j[3][8192];
	run_two_hosts_and_a_joiner("apps/kge", dir, JOIN_AFTER, JOIN_EPOCHS, args, out);
	int J = 0;
	for (int r = 0; r < 3; r++) {
		host_json(j[r], sizeof j[r], json, r);
		long long c[128 * 3];
		int Jr = host_event(j[r], "joined", 2);
		J = r ? J : Jr;
		assert_int_equal(Jr, J); /* every host saw the same */
		print_message("host %d: host 2 joined at epoch %d of %d\n", r, J, E);
		assert_true(J >= atoi(JOIN_AFTER) + 1 && J <= E);
		char said[96];
		snprintf(said, sizeof said, "kge: epoch %d: host 2 joined; the data split over the 3 hosts present", J);
		assert_non_null(strstr(out[r], said));
		epoch_rows(j[r], "epoch_host_triples", c, E);
		for (int e = r == 2 ? J - 1 : 0; e < E; e++) {
			long long *v = c + 3 * e;
			if (e < J - 1) {
				assert_true(v[0] == BIG_TRAIN / 2 && v[1] == BIG_TRAIN / 2 && v[2] == 0);
			} else {
				assert_true(v[0] == BIG_TRAIN / 3 && v[1] == BIG_TRAIN / 3);
				assert_int_equal(v[2], BIG_TRAIN - 2 * (BIG_TRAIN / 3));
			}
		}
	}
	assert_int_equal((int)json_num(j[2], "first_epoch"), J);
	double m = json_num(j[0], "mrr");
	print_message("MRR with a joiner %.4f (hosts 1, 2 say %.4f, %.4f)\n", m, json_num(j[1], "mrr"),
		      json_num(j[2], "mrr"));
	assert_true(json_num(j[1], "mrr") == m && json_num(j[2], "mrr") == m);
	assert_true(m > 3 * random_mrr());
}

/*
 * A host leaving: kge on 3 hosts x 1 node (psrun --elastic --drain), host
 * 2's psrun sent SIGTERM once it shows epoch 5 done: it leaves at the next
 * ps_sync_hosts (its ps_sync_hosts returns 0: it says so, writes its
 * summary with left_epoch X, the first epoch it did not train, and
 * finalizes, handing its keys over).  The others record it left (its
 * mark), not lost, at X + 1: the leave shows in ps_hosts_alive only after
 * the sync, where their set takes no removal without a vote (common.h),
 * so they train epoch X without its share (-1 in epoch_host_triples) and
 * split every epoch from X + 1 on over the two: the whole set, once.  All
 * three exit 0; the two evaluate the same model.  Skipped where psrun
 * has no --drain.
 */
#define LEAVE_EPOCHS "40"
#define LEAVE_AFTER "5"

static void test_a_host_that_leaves_hands_its_share_to_the_others(void **state)
{
	(void)state;
	if (!psrun_has_drain()) {
		print_message("SKIP %s: this psrun has no --drain (elastic jobs, issue 16: the drain branch not "
			      "merged)\n", __func__);
		skip();
	}
	const int E = atoi(LEAVE_EPOCHS);
	char data[600], json[600];
	snprintf(data, sizeof data, "%s", path_of("kgbig"));
	snprintf(json, sizeof json, "%s", path_of("big-leave.json"));
	const char *args[] = {"--dataset", data, "--epochs", LEAVE_EPOCHS, "--dim", "64", "--batch", "32", "--neg",
			      "32", "--threads", "1", "--json", json, NULL};
	char out[3][8192], j[3][8192];
	run_three_hosts_one_leaving("apps/kge", dir, LEAVE_AFTER, LEAVE_EPOCHS, args, out);
	for (int r = 0; r < 3; r++)
		host_json(j[r], sizeof j[r], json, r);
	int X = (int)json_num(j[2], "left_epoch");
	print_message("host 2 left before epoch %d of %d\n", X, E);
	assert_true(X >= atoi(LEAVE_AFTER) + 1 && X <= E);
	char said[80];
	snprintf(said, sizeof said, "kge: host 2 left the job before epoch %d", X);
	assert_non_null(strstr(out[2], said));
	for (int r = 0; r < 2; r++) {
		long long c[128 * 3];
		assert_int_equal(host_event(j[r], "left", 2), X + 1);
		epoch_rows(j[r], "epoch_host_triples", c, E);
		for (int e = 0; e < E; e++) {
			long long *v = c + 3 * e;
			if (e < X - 1) { /* all three */
				for (int h = 0; h < 3; h++)
					assert_int_equal(v[h], share_of_3(h));
			} else if (e == X - 1) { /* the leaver's share not trained */
				assert_true(v[0] == share_of_3(0) && v[1] == share_of_3(1) && v[2] == -1);
			} else { /* the two: all of it, once */
				assert_true(v[0] == BIG_TRAIN / 2 && v[1] == BIG_TRAIN / 2 && v[2] == 0);
			}
		}
	}
	double m = json_num(j[0], "mrr");
	print_message("MRR after host 2 left %.4f (host 1 says %.4f)\n", m, json_num(j[1], "mrr"));
	assert_true(json_num(j[1], "mrr") == m);
	assert_true(m > 3 * random_mrr());
}

int main(void)
{
	/* one test at a time while working (cmocka's * and ? patterns) */
	const char *filter = getenv("PSMEM_TEST_FILTER");
	if (filter && *filter)
		cmocka_set_test_filter(filter);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_node_learns_the_planted_structure),
		cmocka_unit_test(test_one_node_two_threads_localize_learns),
		cmocka_unit_test(test_two_nodes_classic_learns),
		cmocka_unit_test(test_two_nodes_localize_learns),
		cmocka_unit_test(test_two_nodes_ssp_learns),
		cmocka_unit_test(test_rule_adagrad_computes_what_client_adagrad_does),
		cmocka_unit_test(test_json_has_the_required_keys),
		cmocka_unit_test(test_one_thread_is_deterministic_and_saves_the_model),
		cmocka_unit_test(test_malformed_input_stops_with_its_message),
		cmocka_unit_test(test_unknown_entities_in_test_are_skipped_and_counted),
		cmocka_unit_test(test_a_header_line_is_skipped_with_a_note),
		cmocka_unit_test(test_gz_dataset_files_are_found),
		cmocka_unit_test(test_a_diverged_run_stops_with_a_hint),
		cmocka_unit_test(test_unwritable_outputs_fail_before_training),
		cmocka_unit_test(test_help_documents_every_option),
		cmocka_unit_test(test_distmult_and_rescal_with_sgd_run),
		cmocka_unit_test(test_two_nodes_replicate_sampling_naive),
		cmocka_unit_test(test_two_nodes_replicate_sampling_local),
		cmocka_unit_test(test_two_nodes_replicate_sampling_pool),
		cmocka_unit_test(test_bad_replication_and_sampling_values),
		cmocka_unit_test(test_two_nodes_evaluate_the_synced_model),
		cmocka_unit_test(test_two_hosts_split_the_triples_and_localize_across_hosts),
		cmocka_unit_test(test_two_hosts_evaluate_the_synced_model),
		cmocka_unit_test(test_three_hosts_resplit_when_host_2_is_killed),
		cmocka_unit_test(test_three_hosts_resplit_when_host_0_is_killed),
		cmocka_unit_test(test_a_joiner_trains_a_third_from_its_first_epoch),
		cmocka_unit_test(test_a_host_that_leaves_hands_its_share_to_the_others),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
