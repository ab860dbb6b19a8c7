/*
 * hosts.h - driving multi-host jobs from a test: several psruns on
 * 127.0.0.1 (distinct ports, one job token), their output in files under a
 * temporary directory.  Used by test_bridge and the other multi-host tests;
 * call mh_setup/mh_teardown as the group's fixtures and fill mh_self with
 * the test binary's own path in main (self_exe(mh_self, sizeof mh_self)).
 */
#ifndef PSMEM_TESTS_HOSTS_H
#define PSMEM_TESTS_HOSTS_H

#include <sys/types.h>

#include "common.h"

extern char mh_self[1024];
extern char mh_tmpdir[64];
extern char mh_token_path[128];

struct mh_proc {
	pid_t pid;
	char out[128], err[128]; /* file names */
	int status;
	double t_end;
};

double mh_now(void);
/* Starts argv (env: "K=V" additions or NULL) in its own process group,
 * stdout/stderr to <tmpdir>/<name>.out/.err; both files exist and are empty
 * when it returns (nothing an earlier process of that name wrote is left). */
void mh_spawn(struct mh_proc *p, const char *name, char *const argv[], char *const env[]);
/* Waits up to timeout_s; then kills the process group (status -1). */
int mh_finish(struct mh_proc *p, double timeout_s);
/* A file's text (one of 4 rotating static buffers, 64 KiB). */
char *mh_slurp(const char *path);
void mh_show(const struct mh_proc *p, const char *name);
/* mh_show of each of the H hosts p[0..H) that exited non-zero, as "host r". */
void mh_show_failed(int hosts, const struct mh_proc *p);
/* A port that was free a moment ago (the kernel's choice). */
unsigned mh_free_port(void);
/* Nobody listens on 127.0.0.1:port (a job's listener is gone). */
bool mh_port_free(unsigned port);
/* Fails the test unless needle is in hay, showing hay. */
#define assert_contains(hay, needle)                                                   \
	do {                                                                           \
		if (!strstr((hay), (needle)))                                          \
			fail_msg("expected \"%s\" in:\n%s", (needle), (hay));          \
	} while (0)
int mh_setup(void **state);    /* temp dir and a job token */
int mh_teardown(void **state);
/* No segment created since before is left, no process running mh_self. */
void mh_assert_clean(const struct seg_snapshot *before);
/* argv of `psrun -n nodes --hosts H --host-rank r --coordinator 127.0.0.1:port
 * --token-file ... prog...` (store: 96 bytes per host) */
void mh_psrun_argv(const char **argv, char *store, int nodes, int hosts, int rank, unsigned port,
		   const char *const prog[]);
/* Inserts `--on-host-failure mode --backup-rate rate` into an argv of
 * mh_psrun_argv whose program is mh_self, before the program (psrun's
 * options). */
void mh_argv_on_failure(const char **argv, const char *mode, const char *rate);
/* Waits up to 60 s for line in the output of any of h[0..n); fails the
 * test (showing every host, all stopped) if it does not come. */
void mh_wait_line(struct mh_proc *h, int n, const char *line);
/* Runs H psruns of nodes nodes each on loopback and waits for them. */
void mh_run_hosts(int hosts, int nodes, const char *const prog[], struct mh_proc *p, double timeout);

#endif
