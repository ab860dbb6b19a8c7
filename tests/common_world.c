/*
 * common_world.c - the in-process world and the constant-initialised
 * tables that several unit tests (locks, replica, rows) share (common.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

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
