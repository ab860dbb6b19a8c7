/*
 * ckpt.c - how fast checkpoints are written and restored, and how fast
 * barriers go (their arrival scans every participant's clock).
 *
 *   build/bench/ckpt [--keys N] [--vlen V] [--file PATH] [--barriers B]
 *   build/bin/psrun -n N -t T build/bench/ckpt ...
 *
 * One table of N keys x V floats (uniform values), then ps_checkpoint to
 * PATH (default /tmp/psmem-bench-ckpt-PID) and ps_restore from it, each
 * timed on node 0 between the collective's barriers (fsync included; the
 * restore reads the file twice: data checksum, then values); then every
 * worker thread of every node makes B barriers.  One CSV line on node 0:
 *
 *   nodes,threads,keys,value_len,file_bytes,checkpoint_s,checkpoint_mb_s,
 *   restore_s,restore_mb_s,barriers,barrier_us
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../apps/common.h"
#include "psmem.h"

static long barriers = 20000;
static double barrier_s;

static void worker(ps_world *w, int t, void *arg)
{
	(void)arg;
	if (ps_barrier(w) != 0)
		app_die("barrier failed");
	double t0 = app_now();
	for (long i = 0; i < barriers; i++)
		if (ps_barrier(w) != 0)
			app_die("barrier failed");
	if (t == 0)
		barrier_s = app_now() - t0;
}

int main(int argc, char **argv)
{
	app_init("ckpt");
	long keys = 1000000, vlen = 32;
	char file[512];
	snprintf(file, sizeof file, "/tmp/psmem-bench-ckpt-%d", (int)getpid());
	static const struct option opts[] = {{"keys", 1, 0, 'k'}, {"vlen", 1, 0, 'v'}, {"file", 1, 0, 'f'},
					     {"barriers", 1, 0, 'b'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
	int o;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'k': keys = app_opt_long("--keys", optarg, 1, 1L << 32); break;
		case 'v': vlen = app_opt_long("--vlen", optarg, 1, 65536); break;
		case 'f': snprintf(file, sizeof file, "%s", optarg); break;
		case 'b': barriers = app_opt_long("--barriers", optarg, 0, 1L << 30); break;
		case 'h':
			printf("usage: ckpt [--keys N] [--vlen V] [--file PATH] [--barriers B]\n");
			return 0;
		default: return 2;
		}
	}
	int err;
	ps_world *w = ps_init(&err);
	if (!w)
		app_die("cannot join the job: %s", ps_strerror(err));
	const char *env_file = getenv("PSMEM_PSRUN_PID"); /* the same name on every node */
	if (env_file)
		snprintf(file, sizeof file, "/tmp/psmem-bench-ckpt-%s", env_file);
	ps_table_opts to;
	ps_table_opts_init(&to, (uint64_t)keys, (uint32_t)vlen);
	to.init = PS_INIT_UNIFORM;
	to.init_a = 1;
	ps_table *t = ps_table_create(w, &to, &err);
	if (!t)
		app_die("cannot create the table: %s", ps_strerror(err));
	double t0 = app_now();
	if (ps_checkpoint(w, file) != 0)
		app_die("checkpoint: %s", ps_checkpoint_error(w));
	double tc = app_now() - t0;
	t0 = app_now();
	if (ps_restore(w, file) != 1)
		app_die("restore: %s", ps_checkpoint_error(w));
	double tr = app_now() - t0;
	struct stat st;
	double mb = stat(file, &st) == 0 ? (double)st.st_size / 1e6 : 0;
	if (ps_run_workers(w, worker, NULL) != 0)
		app_die("workers failed");
	if (ps_node_id(w) == 0) {
		unlink(file);
		printf("nodes,threads,keys,value_len,file_bytes,checkpoint_s,checkpoint_mb_s,restore_s,restore_mb_s,"
		       "barriers,barrier_us\n");
		printf("%d,%d,%ld,%ld,%.0f,%.3f,%.0f,%.3f,%.0f,%ld,%.2f\n", ps_num_nodes(w), ps_num_threads(w), keys,
		       vlen, mb * 1e6, tc, mb / tc, tr, mb / tr, barriers,
		       barriers ? barrier_s / (double)barriers * 1e6 : 0);
	}
	ps_finalize(w);
	return 0;
}
