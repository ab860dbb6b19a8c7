/*
 * test_app_common.c - the apps' shared module: reading plain and gzip files
 * line by line, splitting fields, parsing numbers, string ids, JSON.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "../apps/common.h"

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
	app_json_write(j, path_of("out.json"));
	size_t len;
	char *s = app_slurp(path_of("out.json"), &len);
	assert_string_equal(s, "{\"app\": \"mf\", \"policy\": \"a\\\"b\\\\c\\u000a\", \"nodes\": 2, \"rmse\": 0.5}\n");
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

static int setup(void **state)
{
	(void)state;
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	const char *names[] = {"plain.txt", "data.gz", "big.txt", "out.json"};
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
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
