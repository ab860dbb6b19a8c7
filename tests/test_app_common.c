/*
 * test_app_common.c - the apps' shared module: reading plain and gzip files
 * line by line (a gzip file cut short or corrupt is an error, not a shorter
 * file), splitting fields, parsing numbers, string ids, JSON, outputs
 * checked writable before any work, long fields clipped in messages; and
 * the command-line convention every app (mf, kge, w2v, mfgen) keeps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "../apps/common.h"
#include "common.h"

static char dir[] = "/tmp/psmem-test-common-XXXXXX";

static const char *path_of(const char *name)
{
	static char p[256];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	return p;
}

static void write_file(const char *name, const char *data, size_t len, bool gzip)
{
	if (gzip) {
		gzFile g = gzopen(path_of(name), "wb");
		assert_non_null(g);
		assert_int_equal(gzwrite(g, data, (unsigned)len), (int)len);
		gzclose(g);
	} else {
		FILE *f = fopen(path_of(name), "wb");
		assert_non_null(f);
		assert_int_equal(fwrite(data, 1, len, f), len);
		fclose(f);
	}
}

static void check_lines(const char *name)
{
	app_reader *r = app_open(path_of(name));
	size_t len;
	char *l = app_getline(r, &len);
	assert_string_equal(l, "1\t2\t3.5");
	assert_int_equal(app_lineno(r), 1);
	l = app_getline(r, &len);
	assert_string_equal(l, "crlf line");
	assert_int_equal(len, 9);
	l = app_getline(r, &len);
	assert_string_equal(l, "");
	l = app_getline(r, &len);
	assert_string_equal(l, "last without newline");
	assert_int_equal(app_lineno(r), 4);
	assert_null(app_getline(r, &len));
	app_close(r);
}

static void test_reader_plain_and_gzip_give_the_same_lines(void **state)
{
	(void)state;
	const char data[] = "1\t2\t3.5\ncrlf line\r\n\nlast without newline";
	write_file("plain.txt", data, sizeof data - 1, false);
	write_file("data.gz", data, sizeof data - 1, true);
	check_lines("plain.txt");
	check_lines("data.gz");
}

static void test_reader_handles_lines_longer_than_its_buffer(void **state)
{
	(void)state;
	size_t n = 5u << 20; /* 5 MiB line: several refills */
	char *big = malloc(n + 8);
	memset(big, 'x', n);
	memcpy(big + n, "\nend\n", 5);
	write_file("big.txt", big, n + 5, false);
	app_reader *r = app_open(path_of("big.txt"));
	size_t len;
	char *l = app_getline(r, &len);
	assert_int_equal(len, n);
	assert_int_equal(l[n - 1], 'x');
	assert_string_equal(app_getline(r, &len), "end");
	assert_null(app_getline(r, &len));
	app_close(r);
	free(big);
}

static void test_split_collapses_runs_or_keeps_empty_fields(void **state)
{
	(void)state;
	char a[] = "  u1 \t i2   4.5  ";
	char *f[8];
	assert_int_equal(app_split(a, " \t", true, f, 8), 3);
	assert_string_equal(f[0], "u1");
	assert_string_equal(f[1], "i2");
	assert_string_equal(f[2], "4.5");
	char b[] = "1,,3";
	assert_int_equal(app_split(b, ",", false, f, 8), 3);
	assert_string_equal(f[1], "");
	char c[] = "a b c d";
	assert_int_equal(app_split(c, " ", true, f, 2), 2);
	assert_string_equal(f[1], "b c d");
	char d[] = "   ";
	assert_int_equal(app_split(d, " ", true, f, 8), 0);
}

static void test_parse_accepts_whole_numbers_only(void **state)
{
	(void)state;
	double x;
	int64_t i;
	assert_true(app_parse_double("3.5", &x));
	assert_true(x == 3.5);
	assert_false(app_parse_double("3.5x", &x));
	assert_false(app_parse_double("", &x));
	assert_false(app_parse_double("nan", &x));
	assert_true(app_parse_i64("-42", &i));
	assert_int_equal(i, -42);
	assert_false(app_parse_i64("4.2", &i));
	assert_false(app_parse_i64("99999999999999999999", &i));
}

static void test_idmap_gives_dense_ids_in_first_seen_order(void **state)
{
	(void)state;
	app_idmap *m = app_idmap_new();
	char name[32];
	for (int i = 0; i < 100000; i++) {
		int n = snprintf(name, sizeof name, "/m/%d", i * 7);
		assert_int_equal(app_idmap_get(m, name, (size_t)n, true), i);
	}
	assert_int_equal(app_idmap_size(m), 100000);
	assert_int_equal(app_idmap_get(m, "/m/70", 5, false), 10);
	assert_int_equal(app_idmap_get(m, "/m/7", 4, false), 1);
	assert_int_equal(app_idmap_get(m, "nope", 4, false), -1);
	assert_string_equal(app_idmap_name(m, 99999), "/m/699993");
	assert_null(app_idmap_name(m, 100000));
	app_idmap_free(m);
}

static void test_json_escapes_and_writes_atomically(void **state)
{
	(void)state;
	app_json *j = app_json_new("mf");
	app_json_str(j, "policy", "a\"b\\c\n");
	app_json_int(j, "nodes", 2);
	app_json_num(j, "rmse", 0.5);
	const int64_t m[6] = {1, 2, 3, -4, 5, 6000000000};
	app_json_int_rows(j, "m", m, 2, 3);
	app_json_int_rows(j, "empty", m, 0, 3);
	app_json_write(j, path_of("out.json"));
	size_t len;
	char *s = app_slurp(path_of("out.json"), &len);
	assert_string_equal(s, "{\"app\": \"mf\", \"policy\": \"a\\\"b\\\\c\\u000a\", \"nodes\": 2, \"rmse\": 0.5, "
			       "\"m\": [[1, 2, 3], [-4, 5, 6000000000]], \"empty\": []}\n");
	free(s);
}

/* Runs fn in a child and returns its exit status and stderr. */
static int in_child(void (*fn)(void), char *err, size_t len)
{
	int p[2];
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(p[1], 2);
		fn();
		_exit(0);
	}
	close(p[1]);
	size_t got = 0;
	ssize_t n;
	while (got < len - 1 && (n = read(p[0], err + got, len - 1 - got)) > 0)
		got += (size_t)n;
	err[got] = 0;
	close(p[0]);
	int st;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void fail_on_line_2(void)
{
	app_init("mf");
	app_reader *r = app_open(path_of("plain.txt"));
	app_getline(r, NULL);
	app_getline(r, NULL);
	app_fail_line(r, "expected %d fields, found %d", 3, 1);
}

static void open_missing(void)
{
	app_init("kge");
	app_open("/nonexistent/train.txt");
}

static void bad_option(void)
{
	app_init("w2v");
	app_opt_long("--epochs", "five", 1, 1000);
}

static void fail_as_node_1(void)
{
	setenv("PSMEM_SEGMENT", "psmem-x", 1);
	setenv("PSMEM_NODE", "1", 1);
	fail_on_line_2();
}

static void fail_as_node_0(void)
{
	setenv("PSMEM_SEGMENT", "psmem-x", 1);
	setenv("PSMEM_NODE", "0", 1);
	fail_on_line_2();
}

/* Every node of a psrun job reads the same input: only node 0 reports an
 * input error, so a user sees it once; the others still exit 1. */
static void test_input_errors_are_reported_by_node_0_only(void **state)
{
	(void)state;
	char err[512];
	assert_int_equal(in_child(fail_as_node_1, err, sizeof err), 1);
	assert_string_equal(err, "");
	assert_int_equal(in_child(fail_as_node_0, err, sizeof err), 1);
	assert_non_null(strstr(err, "plain.txt:2: expected 3 fields, found 1"));
}

static void test_errors_name_file_line_and_reason(void **state)
{
	(void)state;
	char err[512];
	assert_int_equal(in_child(fail_on_line_2, err, sizeof err), 1);
	char want[512];
	snprintf(want, sizeof want, "mf: %s:2: expected 3 fields, found 1\n", path_of("plain.txt"));
	assert_string_equal(err, want);
	assert_int_equal(in_child(open_missing, err, sizeof err), 1);
	assert_string_equal(err, "kge: /nonexistent/train.txt: cannot open: No such file or directory\n");
	assert_int_equal(in_child(bad_option, err, sizeof err), 1);
	assert_string_equal(err, "w2v: --epochs: 'five' is not a valid integer\n");
}

/* ------------------------------------------------ gzip cut short or corrupt */

static char gz_name[64]; /* the file the children below read */

/* Reads every line of gz_name as the apps do; exits 0 at its end. */
static void read_all_lines(void)
{
	app_init("mf");
	app_reader *r = app_open(path_of(gz_name));
	while (app_getline(r, NULL))
		;
	app_close(r);
}

static void slurp_all(void)
{
	app_init("w2v");
	size_t len;
	free(app_slurp(path_of(gz_name), &len));
}

/* A malformed first line in a gzip file whose later data is corrupt: the
 * gzip is what gets blamed (its garbage lines are not the user's data). */
static void fail_first_line(void)
{
	app_init("kge");
	app_reader *r = app_open(path_of(gz_name));
	app_getline(r, NULL);
	app_fail_line(r, "expected 3 tab-separated fields");
}

/* ~1 MB of lines that do not compress away (so the gzip is ~400 kB). */
static char *gz_payload(size_t *len)
{
	size_t cap = 1u << 20, n = 0;
	char *d = malloc(cap + 64);
	assert_non_null(d);
	uint64_t s = 7;
	while (n < cap)
		n += (size_t)sprintf(d + n, "%llu\t%llu\t%llu\n", (unsigned long long)(test_rnd(&s) % 1000),
				     (unsigned long long)(test_rnd(&s) % 2000), (unsigned long long)(test_rnd(&s) % 5 + 1));
	*len = n;
	return d;
}

/* The gzip of the payload with its bytes changed by how: 't' cut to half,
 * 'c' 64 bytes in the middle overwritten, 'e' its last 4 bytes (the size
 * in the trailer) dropped. */
static void write_damaged(const char *name, char how)
{
	size_t len;
	char *d = gz_payload(&len);
	write_file(name, d, len, true);
	free(d);
	struct stat st;
	assert_int_equal(stat(path_of(name), &st), 0);
	if (how == 't' || how == 'e')
		assert_int_equal(truncate(path_of(name), how == 't' ? st.st_size / 2 : st.st_size - 4), 0);
	else {
		FILE *f = fopen(path_of(name), "r+b");
		assert_non_null(f);
		assert_int_equal(fseek(f, st.st_size / 2, SEEK_SET), 0);
		for (int i = 0; i < 64; i++)
			fputc(0x55 ^ i, f);
		assert_int_equal(fclose(f), 0);
	}
}

static void expect_gzip_error(void (*fn)(void), const char *app, const char *name)
{
	char err[1024], want[512];
	snprintf(gz_name, sizeof gz_name, "%s", name);
	int st = in_child(fn, err, sizeof err);
	snprintf(want, sizeof want, "%s: %s: truncated or corrupt gzip\n", app, path_of(name));
	if (st != 1 || strcmp(err, want) != 0)
		fail_msg("%s: expected exit 1 and '%s', got %d and '%s'", name, want, st, err);
}

static void test_gzip_cut_short_or_corrupt_is_an_error(void **state)
{
	(void)state;
	write_damaged("cut.gz", 't');
	write_damaged("bad.gz", 'c');
	write_damaged("notrailer.gz", 'e');
	const char *names[] = {"cut.gz", "bad.gz", "notrailer.gz"};
	for (int i = 0; i < 3; i++) {
		expect_gzip_error(read_all_lines, "mf", names[i]);
		expect_gzip_error(slurp_all, "w2v", names[i]);
	}
	expect_gzip_error(fail_first_line, "kge", "bad.gz");
	/* the whole file still reads to its end */
	size_t len;
	char *d = gz_payload(&len);
	write_file("whole.gz", d, len, true);
	free(d);
	char err[256];
	snprintf(gz_name, sizeof gz_name, "whole.gz");
	assert_int_equal(in_child(read_all_lines, err, sizeof err), 0);
	assert_int_equal(in_child(slurp_all, err, sizeof err), 0);
	assert_string_equal(err, "");
}

/* ------------------------------------------- outputs checked before work */

static int entries(void)
{
	return dir_visible_entries(dir);
}

static void check_missing_dir(void)
{
	app_init("mf");
	app_check_writable("--json", "/nonexistent-psmem-dir/out.json");
}

static void check_a_directory(void)
{
	app_init("kge");
	app_check_writable("--save", dir);
}

static void check_fine(void)
{
	app_init("w2v");
	app_check_writable("--save", path_of("vectors.txt"));
	app_check_writable("--json", "-");
	app_check_writable("--checkpoint", NULL);
	exit(7);
}

static void test_outputs_are_checked_writable_and_nothing_is_left(void **state)
{
	(void)state;
	char err[512], want[512];
	int before = entries();
	assert_int_equal(in_child(check_missing_dir, err, sizeof err), 1);
	assert_string_equal(err, "mf: --json: /nonexistent-psmem-dir/out.json: cannot write: No such file or directory\n");
	assert_int_equal(in_child(check_a_directory, err, sizeof err), 1);
	snprintf(want, sizeof want, "kge: --save: %s: cannot write: Is a directory\n", dir);
	assert_string_equal(err, want);
	assert_int_equal(in_child(check_fine, err, sizeof err), 7);
	assert_string_equal(err, "");
	assert_int_equal(entries(), before); /* the probe file is gone, vectors.txt not made */
}

/* ------------------------------------------------ long fields clipped */

static char *huge_value(void)
{
	static char *v;
	if (!v) {
		v = malloc(100001);
		assert_non_null(v);
		memset(v, '7', 100000);
		v[50000] = 'x'; /* not a number */
		v[100000] = 0;
	}
	return v;
}

static void bad_huge_option(void)
{
	app_init("w2v");
	app_opt_long("--epochs", huge_value(), 1, 1000);
}

static void test_long_fields_are_clipped_in_messages(void **state)
{
	(void)state;
	assert_string_equal(app_clip("short"), "short");
	char s61[62];
	memset(s61, 'a', 61);
	s61[61] = 0;
	const char *c = app_clip(s61);
	assert_int_equal(strlen(c), 63);
	assert_int_equal(strcmp(c + 60, "..."), 0);
	s61[60] = 0;
	assert_ptr_equal(app_clip(s61), s61); /* 60 characters: as they are */
	char err[512], want[512], sixty[61];
	memset(sixty, '7', 60);
	sixty[60] = 0;
	assert_int_equal(in_child(bad_huge_option, err, sizeof err), 1);
	snprintf(want, sizeof want, "w2v: --epochs: '%s...' is not a valid integer\n", sixty);
	assert_string_equal(err, want);
}

/* ------------------------------------- one command line for every app */

static void run_app(const char *app, const char *a1, const char *a2, const char *a3, struct run_result *r)
{
	char rel[64];
	snprintf(rel, sizeof rel, "apps/%s", app);
	char *argv[] = {(char *)build_path(rel), (char *)a1, (char *)a2, (char *)a3, NULL};
	run_prog(argv, NULL, 30, -1, 0, r);
}

static void expect_run(const struct run_result *r, int status, const char *err, const char *what)
{
	if (r->status != status || strcmp(r->err, err) != 0)
		fail_msg("%s: expected exit %d and '%s', got %d and '%s'", what, status, err, r->status, r->err);
}

static void test_every_app_keeps_one_command_line_convention(void **state)
{
	(void)state;
	static struct run_result r;
	const char *apps[] = {"mf", "kge", "w2v", "mfgen"};
	const char *input[] = {"--train", "--dataset", "--train", "--out"}; /* takes a value */
	for (int k = 0; k < 4; k++) {
		const char *a = apps[k];
		char want[512], what[64];
		snprintf(what, sizeof what, "%s --bogus", a);
		run_app(a, "--bogus", NULL, NULL, &r);
		snprintf(want, sizeof want, "%s: unknown option '--bogus'\nTry '%s --help'.\n", a, a);
		expect_run(&r, 2, want, what);
		snprintf(what, sizeof what, "%s %s", a, input[k]);
		run_app(a, input[k], NULL, NULL, &r); /* its value missing */
		snprintf(want, sizeof want, "%s: option '%s' needs a value\nTry '%s --help'.\n", a, input[k], a);
		expect_run(&r, 2, want, what);
		snprintf(what, sizeof what, "%s --help=1", a);
		run_app(a, "--help=1", NULL, NULL, &r);
		snprintf(want, sizeof want, "%s: option '--help' takes no value\nTry '%s --help'.\n", a, a);
		expect_run(&r, 2, want, what);
		snprintf(what, sizeof what, "%s ... extra", a);
		run_app(a, input[k], "x", "extra", &r);
		snprintf(want, sizeof want, "%s: unexpected argument 'extra'\nTry '%s --help'.\n", a, a);
		expect_run(&r, 2, want, what);
		snprintf(what, sizeof what, "%s --version", a);
		run_app(a, "--version", NULL, NULL, &r);
		expect_run(&r, 0, "", what);
		snprintf(want, sizeof want, "%s (psmem) %s\n", a, PS_VERSION);
		assert_string_equal(r.out, want);
		if (k < 3) { /* the trainers: no run of zero epochs */
			snprintf(what, sizeof what, "%s --epochs 0", a);
			run_app(a, "--epochs", "0", NULL, &r);
			snprintf(want, sizeof want, "%s: --epochs: 0 must be between 1 and ", a);
			if (r.status != 1 || strncmp(r.err, want, strlen(want)) != 0)
				fail_msg("%s: expected exit 1 and '%s...', got %d and '%s'", what, want, r.status, r.err);
		}
	}
	char v[32]; /* one version: psmem.h's */
	snprintf(v, sizeof v, "%d.%d", PSMEM_VERSION_MAJOR, PSMEM_VERSION_MINOR);
	assert_string_equal(PS_VERSION, v);
}

static int setup(void **state)
{
	(void)state;
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	const char *names[] = {"plain.txt", "data.gz", "big.txt", "out.json", "cut.gz", "bad.gz", "notrailer.gz",
			       "whole.gz"};
	for (size_t i = 0; i < sizeof names / sizeof *names; i++)
		unlink(path_of(names[i]));
	return rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reader_plain_and_gzip_give_the_same_lines),
		cmocka_unit_test(test_reader_handles_lines_longer_than_its_buffer),
		cmocka_unit_test(test_split_collapses_runs_or_keeps_empty_fields),
		cmocka_unit_test(test_parse_accepts_whole_numbers_only),
		cmocka_unit_test(test_idmap_gives_dense_ids_in_first_seen_order),
		cmocka_unit_test(test_json_escapes_and_writes_atomically),
		cmocka_unit_test(test_errors_name_file_line_and_reason),
		cmocka_unit_test(test_input_errors_are_reported_by_node_0_only),
		cmocka_unit_test(test_gzip_cut_short_or_corrupt_is_an_error),
		cmocka_unit_test(test_outputs_are_checked_writable_and_nothing_is_left),
		cmocka_unit_test(test_long_fields_are_clipped_in_messages),
		cmocka_unit_test(test_every_app_keeps_one_command_line_convention),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
