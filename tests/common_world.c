/*
 * common_world.c - the in-process world and the constant-initialised
 * tables that several unit tests (locks, replica, rows) share, and the
 * assertions the app tests (kge, w2v) share (common.h).
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "psmem.h"
#include "common.h"

ps_world *test_world;

int test_world_setup(void **state)
{
	int err = 1;
	test_world = ps_init(&err);
	*state = test_world;
	return test_world && err == 0 ? 0 : -1;
}

int test_world_teardown(void **state)
{
	(void)state;
	int rc = test_world ? ps_finalize(test_world) : 0;
	test_world = NULL;
	return rc ? -1 : 0;
}

ps_table *test_table(uint64_t keys, uint32_t vlen, uint32_t repl_max, uint32_t flags)
{
	ps_table_opts o;
	ps_table_opts_init(&o, keys, vlen);
	o.init = PS_INIT_CONST;
	o.init_a = 1.0f;
	o.repl_max = repl_max;
	o.flags = flags;
	int err = 1;
	ps_table *t = ps_table_create(test_world, &o, &err);
	assert_non_null(t);
	assert_int_equal(err, 0);
	return t;
}

void assert_diverged(const struct run_result *r, const char *head, const char *tail, bool exact)
{
	const char *p = strstr(r->err, head);
	if (r->status != 1 || !p || !strstr(p, tail))
		fail_msg("expected exit 1 and '%s...%s', got %d and '%s'", head, tail, r->status, r->err);
	if (exact)
		assert_string_equal(p + strlen(head) + strcspn(p + strlen(head), " "), tail);
}

void assert_unwritable(const struct run_result *r, const char *app, const char *opt)
{
	char want[256];
	snprintf(want, sizeof want, "%s: %s: /nonexistent-psmem-dir/out: cannot write: No such file or directory\n", app,
		 opt);
	if (r->status != 1 || strcmp(r->err, want) != 0)
		fail_msg("expected exit 1 and '%s', got %d and '%s'", want, r->status, r->err);
	assert_string_equal(r->out, "");
}

int dir_visible_entries(const char *path)
{
	DIR *d = opendir(path);
	assert_non_null(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

const char *host_file(char *buf, size_t len, const char *path, int r)
{
	if (r)
		snprintf(buf, len, "%s.host%d", path, r);
	else
		snprintf(buf, len, "%s", path);
	if (access(buf, R_OK) != 0)
		fail_msg("host %d wrote no %s", r, buf);
	return buf;
}
