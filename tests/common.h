/*
 * common.h - helpers shared by the tests: run a program with a time limit
 * and capture its output; list psmem segments; find leftover processes.
 */
#ifndef PSMEM_TESTS_COMMON_H
#define PSMEM_TESTS_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct run_result {
	int status;       /* exit code, or 128 + signal, or -1 on timeout */
	double seconds;   /* wall time until exit */
	double t_end;     /* CLOCK_MONOTONIC seconds at exit (comparable across processes) */
	char out[65536];  /* stdout (truncated) */
	char err[65536];  /* stderr (truncated) */
};

/* Path of a built program: $PSMEM_BUILD/<rel> (PSMEM_BUILD defaults to build). */
const char *build_path(const char *rel);

/* Runs argv with env additions ("K=V", NULL-terminated, may be NULL), waits
 * up to timeout_s (then SIGKILL of its process group, status -1).  If
 * signal_after_s >= 0, sends sig to the child after that many seconds. */
void run_prog(char *const argv[], char *const env[], double timeout_s, double signal_after_s, int sig,
	      struct run_result *r);

/* One in-process world per test (common_world.c), for cmocka's setup and
 * teardown: test_world_setup opens test_world (also *state) and fails
 * unless ps_init succeeded with err 0; test_world_teardown finalizes it. */
typedef struct ps_world ps_world; /* as psmem.h, which a test includes itself */
typedef struct ps_table ps_table;
extern ps_world *test_world;
int test_world_setup(void **state);
int test_world_teardown(void **state);

/* A table of test_world: keys x vlen, every value 1.0 (PS_INIT_CONST),
 * repl_max and flags as given; asserts it was made with err 0. */
ps_table *test_table(uint64_t keys, uint32_t vlen, uint32_t repl_max, uint32_t flags);

/* cmocka assertions on an app's run (common_world.c).  A diverged run:
 * exit 1 and stderr holding head, then the epoch, then tail; with exact
 * (one process) nothing but the epoch number between them and nothing
 * after tail. */
void assert_diverged(const struct run_result *r, const char *head, const char *tail, bool exact);
/* app refused output option opt naming /nonexistent-psmem-dir/out before any
 * work: exit 1, exactly "app: opt: ...: cannot write: No such file or
 * directory" on stderr, nothing on stdout. */
void assert_unwritable(const struct run_result *r, const char *app, const char *opt);
/* Into buf (len bytes): the name of the file host r of a multi-host job
 * wrote for output path (host 0: path, host R: path.hostR); fails the test
 * when that file is not there to read. */
const char *host_file(char *buf, size_t len, const char *path, int r);
/* Entries of directory path whose names do not start with a dot (asserts it opens). */
int dir_visible_entries(const char *path);

/* Number of /dev/shm/psmem-* entries. */
int count_segments(void);

/* Segments present now, to compare with later: a test's leak is a segment
 * that was not there before and whose creator (pid in its header) is gone.
 * Another job's live segment on the same machine does not count. */
struct seg_snapshot {
	int n;
	char names[128][64];
};
void seg_snapshot(struct seg_snapshot *s);
int seg_leaked_since(const struct seg_snapshot *before);

/* Number of live processes whose command line contains needle. */
int count_procs(const char *needle);

/* A program started in the background (its own process group), stdout to
 * out_path and stderr to out_path + ".err", both emptied before it starts. */
struct bg_proc {
	pid_t pid;
	int status;       /* as run_result.status, once ended; -1: killed at timeout */
	double t_end;     /* CLOCK_MONOTONIC seconds at exit */
	char out[512], err[520];
};
void bg_start(struct bg_proc *b, char *const argv[], const char *out_path);
/* Waits up to timeout_s for it to end; false (and its group killed) if not. */
bool bg_wait(struct bg_proc *b, double timeout_s);
/* Waits until its stdout holds needle; false on timeout or if it ended. */
bool bg_wait_output(struct bg_proc *b, const char *needle, double timeout_s);

/* Whole text of a file ("" if unreadable); one of 8 rotating buffers. */
const char *file_text(const char *path);
/* Value of variable name in process pid's environment, "" if none. */
const char *proc_env(pid_t pid, const char *name);
/* Pid of node `node` of the job psrun pid `psrun` runs now, 0 if none. */
pid_t psrun_node_pid(pid_t psrun, int node);
/* The same once it is there: waits up to timeout_s until psrun runs node
 * `node` and its environment names its segment (PSMEM_SEGMENT); 0 if not. */
pid_t psrun_node_pid_wait(pid_t psrun, int node, double timeout_s);
double mono_now(void);  /* CLOCK_MONOTONIC seconds */
/* Path of this test binary (to run itself as a node under psrun). */
bool self_exe(char *out, size_t len);

/* The number after "key": in a JSON text; NAN when the key is missing. */
double json_number(const char *json, const char *key);
/* Planted ratings from build/apps/mfgen (rank 3, noise 0.1); its status. */
int make_ratings(const char *train, const char *test, int rows, int cols, int nnz, int seed, const char *test_frac);
/* Waits up to 1 s until no segment is leaked since `before` and no process
 * matches needle; true when so. */
bool left_clean(const struct seg_snapshot *before, const char *needle);

/* splitmix64: the tests' reproducible random streams (one per seed). */
static inline uint64_t test_rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* A pulled row of a storm, where every push adds the same amount to each
 * float of a key: ROW_TORN if its floats differ, ROW_DOWN if it is below
 * *last, the key's previous read (then *last is updated). */
enum { ROW_TORN = 1, ROW_DOWN = 2 };
static inline int row_check(const float *x, uint32_t vlen, float *last)
{
	int r = 0;
	for (uint32_t j = 1; j < vlen; j++)
		if (x[j] != x[0]) {
			r |= ROW_TORN;
			break;
		}
	if (x[0] < *last)
		r |= ROW_DOWN;
	*last = x[0];
	return r;
}

#endif
