/*
 * test_launch.c - host rank, host count and coordinator of a psrun, from
 * flags or from fake launcher environments (Open MPI, PMI, Slurm with and
 * without scontrol).
 */
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

static struct ps__launch l;
static char err[512];

#define RESOLVE(h, r, c, ...) ps__launch_resolve(h, r, c, (char *const[]){__VA_ARGS__, NULL}, &l, err, sizeof err)

static void test_no_launcher_is_a_single_host(void **state)
{
	(void)state;
	assert_int_equal(RESOLVE(-1, -1, NULL, "PATH=/usr/bin", "HOME=/root"), 0);
	assert_int_equal(l.hosts, 1);
	assert_int_equal(l.rank, 0);
	assert_string_equal(l.source, "none");
}

static void test_flags_win_over_the_environment(void **state)
{
	(void)state;
	assert_int_equal(RESOLVE(3, 2, "10.0.0.1:4000", "OMPI_COMM_WORLD_RANK=0", "OMPI_COMM_WORLD_SIZE=2"), 0);
	assert_int_equal(l.hosts, 3);
	assert_int_equal(l.rank, 2);
	assert_string_equal(l.source, "flags");
	assert_string_equal(l.coord_host, "10.0.0.1");
	assert_int_equal(l.coord_port, 4000);
}

static void test_bad_flags_are_refused_with_a_reason(void **state)
{
	(void)state;
	assert_int_equal(RESOLVE(2, -1, "a:1", "X=1"), -EINVAL);
	assert_non_null(strstr(err, "--hosts and --host-rank go together"));
	assert_int_equal(RESOLVE(2, 2, "a:1", "X=1"), -EINVAL);
	assert_non_null(strstr(err, "--host-rank 2 is outside the job"));
	assert_int_equal(RESOLVE(2, 0, "a", "X=1"), -EINVAL);
	assert_non_null(strstr(err, "want ADDR:PORT"));
	assert_int_equal(RESOLVE(2, 0, "a:0", "X=1"), -EINVAL);
	assert_int_equal(RESOLVE(2, 0, "a:70000", "X=1"), -EINVAL);
	assert_int_equal(RESOLVE(2, 0, ":4000", "X=1"), -EINVAL);
	assert_int_equal(RESOLVE(2, 0, NULL, "X=1"), -EINVAL);
	assert_non_null(strstr(err, "pass --coordinator ADDR:PORT"));
}

static void test_ipv6_coordinator(void **state)
{
	(void)state;
	assert_int_equal(RESOLVE(2, 1, "[::1]:4100", "X=1"), 0);
	assert_string_equal(l.coord_host, "::1");
	assert_int_equal(l.coord_port, 4100);
}

static void test_open_mpi_gives_rank_and_size(void **state)
{
	(void)state;
	assert_int_equal(RESOLVE(-1, -1, NULL, "OMPI_COMM_WORLD_RANK=1", "OMPI_COMM_WORLD_SIZE=4",
				 "PSMEM_COORDINATOR=127.0.0.1:5000"), 0);
	assert_int_equal(l.hosts, 4);
	assert_int_equal(l.rank, 1);
	assert_string_equal(l.source, "Open MPI");
	assert_string_equal(l.coord_host, "127.0.0.1");
	assert_int_equal(l.coord_port, 5000);
	/* no address to derive under mpirun */
	assert_int_equal(RESOLVE(-1, -1, NULL, "OMPI_COMM_WORLD_RANK=1", "OMPI_COMM_WORLD_SIZE=4"), -EINVAL);
	assert_non_null(strstr(err, "--coordinator"));
}

static void test_pmi_gives_rank_and_size(void **state)
{
	(void)state;
	assert_int_equal(RESOLVE(-1, -1, "h:1", "PMI_RANK=0", "PMI_SIZE=2"), 0);
	assert_int_equal(l.hosts, 2);
	assert_int_equal(l.rank, 0);
	assert_string_equal(l.source, "PMI");
}

static void test_malformed_launcher_variables_are_named(void **state)
{
	(void)state;
	assert_int_equal(RESOLVE(-1, -1, "h:1", "OMPI_COMM_WORLD_RANK=2", "OMPI_COMM_WORLD_SIZE=2"), -EINVAL);
	assert_non_null(strstr(err, "OMPI_COMM_WORLD_RANK=2"));
	assert_int_equal(RESOLVE(-1, -1, "h:1", "PMI_RANK=x", "PMI_SIZE=2"), -EINVAL);
	assert_non_null(strstr(err, "PMI_RANK=x"));
	assert_int_equal(RESOLVE(-1, -1, "h:1", "PMI_RANK=0", "PMI_SIZE=0"), -EINVAL);
	assert_non_null(strstr(err, "PMI_SIZE=0"));
	assert_int_equal(RESOLVE(-1, -1, "h:1", "SLURM_PROCID=0"), -EINVAL);
	assert_non_null(strstr(err, "SLURM_NTASKS"));
}

static void test_mpirun_inside_slurm_takes_open_mpi(void **state)
{
	(void)state;
	assert_int_equal(RESOLVE(-1, -1, "h:1", "SLURM_PROCID=0", "SLURM_NTASKS=8", "OMPI_COMM_WORLD_RANK=1",
				 "OMPI_COMM_WORLD_SIZE=2"), 0);
	assert_string_equal(l.source, "Open MPI");
	assert_int_equal(l.hosts, 2);
	assert_int_equal(l.rank, 1);
}

static void test_slurm_plain_nodelist_derives_the_coordinator(void **state)
{
	(void)state;
	assert_int_equal(RESOLVE(-1, -1, NULL, "SLURM_PROCID=2", "SLURM_NTASKS=3", "SLURM_JOB_ID=123456",
				 "SLURM_JOB_NODELIST=alpha,beta,gamma", "PATH=/nonexistent"), 0);
	assert_string_equal(l.source, "Slurm");
	assert_int_equal(l.rank, 2);
	assert_string_equal(l.coord_host, "alpha");
	assert_int_equal(l.coord_port, 20000 + 123456 % 10000);
	assert_int_equal(RESOLVE(-1, -1, NULL, "SLURM_PROCID=0", "SLURM_NPROCS=2", "SLURM_NODELIST=solo",
				 "PSMEM_COORD_PORT=31000"), 0);
	assert_string_equal(l.coord_host, "solo");
	assert_int_equal(l.coord_port, 31000);
	assert_int_equal(RESOLVE(-1, -1, NULL, "SLURM_PROCID=0", "SLURM_NTASKS=2", "SLURM_NODELIST=solo",
				 "PSMEM_COORD_PORT=99999"), -EINVAL);
	assert_non_null(strstr(err, "PSMEM_COORD_PORT"));
	/* one Slurm task: a single host, nothing to derive */
	assert_int_equal(RESOLVE(-1, -1, NULL, "SLURM_PROCID=0", "SLURM_NTASKS=1"), 0);
	assert_int_equal(l.hosts, 1);
}

static char bindir[64];

static int make_fake_scontrol(void **state)
{
	(void)state;
	snprintf(bindir, sizeof bindir, "/tmp/psmem-test-launch-XXXXXX");
	if (!mkdtemp(bindir))
		return -1;
	char path[128];
	snprintf(path, sizeof path, "%s/scontrol", bindir);
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	/* expands only what it is asked for, the way scontrol words it */
	fprintf(f, "#!/bin/sh\n[ \"$1 $2\" = 'show hostnames' ] || exit 3\n"
		   "[ \"$3\" = 'node[07-09],gpu1' ] || exit 4\nprintf 'node07\\nnode08\\nnode09\\ngpu1\\n'\n");
	fclose(f);
	return chmod(path, 0755);
}

static int remove_fake_scontrol(void **state)
{
	(void)state;
	char path[128];
	snprintf(path, sizeof path, "%s/scontrol", bindir);
	unlink(path);
	return rmdir(bindir);
}

static void test_slurm_bracketed_nodelist_is_expanded_by_scontrol(void **state)
{
	(void)state;
	char path[128];
	snprintf(path, sizeof path, "PATH=/nonexistent:%s", bindir);
	assert_int_equal(RESOLVE(-1, -1, NULL, "SLURM_PROCID=1", "SLURM_NTASKS=4", "SLURM_JOB_ID=7",
				 "SLURM_JOB_NODELIST=node[07-09],gpu1", path), 0);
	assert_string_equal(l.coord_host, "node07");
	assert_int_equal(l.coord_port, 20007);
	/* scontrol failing is said, not guessed around */
	assert_int_equal(RESOLVE(-1, -1, NULL, "SLURM_PROCID=1", "SLURM_NTASKS=4",
				 "SLURM_JOB_NODELIST=other[1-2]", path), -EIO);
	assert_non_null(strstr(err, "show hostnames other[1-2]"));
}

static void test_slurm_bracketed_nodelist_without_scontrol_says_so(void **state)
{
	(void)state;
	assert_int_equal(RESOLVE(-1, -1, NULL, "SLURM_PROCID=1", "SLURM_NTASKS=4",
				 "SLURM_JOB_NODELIST=node[07-09]", "PATH=/nonexistent"), -ENOENT);
	assert_non_null(strstr(err, "scontrol is not on PATH"));
	assert_non_null(strstr(err, "--coordinator"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_launcher_is_a_single_host),
		cmocka_unit_test(test_flags_win_over_the_environment),
		cmocka_unit_test(test_bad_flags_are_refused_with_a_reason),
		cmocka_unit_test(test_ipv6_coordinator),
		cmocka_unit_test(test_open_mpi_gives_rank_and_size),
		cmocka_unit_test(test_pmi_gives_rank_and_size),
		cmocka_unit_test(test_malformed_launcher_variables_are_named),
		cmocka_unit_test(test_mpirun_inside_slurm_takes_open_mpi),
		cmocka_unit_test(test_slurm_plain_nodelist_derives_the_coordinator),
		cmocka_unit_test_setup_teardown(test_slurm_bracketed_nodelist_is_expanded_by_scontrol,
						make_fake_scontrol, remove_fake_scontrol),
		cmocka_unit_test(test_slurm_bracketed_nodelist_without_scontrol_says_so),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
