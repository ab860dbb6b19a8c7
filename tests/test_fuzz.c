/*
 * test_fuzz.c - the frame parser's fuzz target (tests/fuzz/fuzz_frame.c),
 * run for a bounded time over the committed corpus, and the corpus itself.
 *
 * The fuzz target is built by clang with libFuzzer, ASan and UBSan when
 * clang can; otherwise the run is skipped with a message saying what to
 * install.  Run from the source tree (make test does).
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "bridge.h"
#include "common.h"

#define CORPUS "tests/fuzz/corpus/frame"
#define FUZZ_RUNS "200000"
#define FUZZ_SECONDS "10"

static size_t slurp(const char *path, uint8_t *buf, size_t cap)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, cap, f);
	fclose(f);
	return n;
}

/* The seeds are what they claim: every one parses as a stream of valid
 * frames (checksums included, or flagged without one as on a data
 * connection) except the one cut short on purpose. */
static void test_corpus_seeds_are_valid_frames(void **state)
{
	(void)state;
	DIR *d = opendir(CORPUS);
	assert_non_null(d);
	static uint8_t buf[1 << 16];
	int seeds = 0, types_seen[256] = {0}, nocrc = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		char path[512];
		snprintf(path, sizeof path, "%s/%s", CORPUS, e->d_name);
		size_t n = slurp(path, buf, sizeof buf), at = 0;
		assert_true(n > 0);
		long r = 0;
		while (at < n) {
			struct ps__frame f;
			/* as a data connection would: flagged frames unchecked,
			 * the others' checksums checked */
			r = ps__frame_parse(buf + at, n - at, PS__FRAME_MAX, PS__CRC_DATA, true, &f);
			if (r <= 0)
				break;
			types_seen[f.type]++;
			nocrc += (buf[at + 5] & PS__FRAME_NOCRC) != 0;
			at += (size_t)r;
		}
		if (strcmp(e->d_name, "truncated") == 0)
			assert_int_equal(r, PS_EFRAME_TRUNC);
		else if (at != n)
			fail_msg("seed %s: %s at byte %zu", e->d_name, ps_strerror((int)r), at);
		seeds++;
	}
	closedir(d);
	assert_true(seeds >= 14);
	for (unsigned t = 0; t < 256; t++)
		if (ps__frame_type_known(t) && !types_seen[t])
			fail_msg("no seed has a frame of type %u", t);
	/* the data connections' frames without checksum are seeded too */
	assert_true(nocrc >= 8);
}

static void test_fuzz_frame_parser_bounded_run(void **state)
{
	(void)state;
	const char *bin = build_path("fuzz/fuzz_frame");
	if (access(bin, X_OK) != 0) {
		printf("fuzz: SKIP: %s was not built: clang with libFuzzer is needed "
		       "(Debian: clang libclang-rt-14-dev)\n", bin);
		skip();
	}
	char work[] = "/tmp/psmem-fuzz-XXXXXX";
	assert_non_null(mkdtemp(work));
	char prefix[64];
	snprintf(prefix, sizeof prefix, "-artifact_prefix=%s/", work);
	/* -verbosity=0: one line per new input would overflow the 64 KiB of
	 * captured stderr; the final stats say how many runs were made */
	char *argv[] = {(char *)bin, "-runs=" FUZZ_RUNS, "-max_total_time=" FUZZ_SECONDS, "-rss_limit_mb=1024",
			"-verbosity=0", "-print_final_stats=1", prefix, work, CORPUS, NULL};
	static struct run_result r;
	run_prog(argv, NULL, 120, -1, 0, &r);
	if (r.status != 0)
		fprintf(stderr, "%s", r.err);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", work);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", work);
	assert_int_equal(r.status, 0);
	const char *done = strstr(r.err, "stat::number_of_executed_units:");
	assert_non_null(done);
	long runs = strtol(done + strlen("stat::number_of_executed_units:"), NULL, 10);
	printf("fuzz: %ld runs in %.1f s, no crash, leak or undefined behaviour\n", runs, r.seconds);
	assert_true(runs > 1000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_corpus_seeds_are_valid_frames),
		cmocka_unit_test(test_fuzz_frame_parser_bounded_run),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
