/*
 * test_bench.c - the micro-benchmark's smoke run (`micro --quick`): it must
 * print the CSV header the scripts rely on and one row per (op, value_len,
 * nodes, placement), each with a positive time and ratio.  micro validates
 * the store as it measures (sums after pushes, values after localize, no
 * stale reads) and exits 1 on any mismatch, so a broken store fails here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"

static void test_micro_quick_prints_header_and_valid_rows(void **state)
{
	(void)state;
	static struct run_result r;
	char *argv[] = {(char *)build_path("bench/micro"), "--quick", NULL};
	run_prog(argv, NULL, 120, -1, 0, &r);
	if (r.status != 0)
		fprintf(stderr, "%s%s", r.out, r.err);
	assert_int_equal(r.status, 0);
	const char *hdr = "op,value_len,nodes,threads,placement,ns_per_key,baseline_ns_per_key,ratio";
	assert_non_null(strstr(r.out, hdr));
	int rows = 0, two_node_other = 0, one_rows = 0;
	char *save, *line = strtok_r(r.out, "\n", &save);
	for (; line; line = strtok_r(NULL, "\n", &save)) {
		if (line[0] == '#' || strncmp(line, "op,", 3) == 0)
			continue;
		char op[16], place[16];
		int vlen, nodes, threads;
		double ns, base, ratio;
		int got = sscanf(line, "%15[^,],%d,%d,%d,%15[^,],%lf,%lf,%lf", op, &vlen, &nodes, &threads, place, &ns,
				 &base, &ratio);
		assert_int_equal(got, 8);
		assert_true(ns > 0 && base > 0 && ratio > 0);
		bool one = !strcmp(op, "pull1") || !strcmp(op, "pull1_lib") || !strcmp(op, "push1") ||
			   !strcmp(op, "push1_lib");
		assert_true(!strcmp(op, "pull") || !strcmp(op, "push") || !strcmp(op, "localize") || one);
		assert_true(!one || nodes == 1); /* one key per call: the 1-process part only */
		two_node_other += nodes == 2 && !strcmp(place, "other");
		one_rows += one;
		rows++;
	}
	/* 3 ops x 4 value lengths on 1 node, 5 rows each on 2 nodes; and the
	 * 4 one-key-per-call rows per value length on 1 node */
	assert_int_equal(rows, 12 + 20 + 16);
	assert_int_equal(one_rows, 16);
	assert_int_equal(two_node_other, 12);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_micro_quick_prints_header_and_valid_rows),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
