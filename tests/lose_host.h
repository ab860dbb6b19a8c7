/*
 * lose_host.h - the apps' tests of a lost host (test_app_kge, test_app_w2v):
 * three psruns on loopback under --on-host-failure continue, one of them
 * SIGKILLed when it shows an epoch done, and the JSON rows their summaries
 * record.  Static: included by each of those tests after hosts.h.
 */
#ifndef PSMEM_TESTS_LOSE_HOST_H
#define PSMEM_TESTS_LOSE_HOST_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "hosts.h"

/* The rows of "key": [[a, b, ...], ...] (integers) into v (rows x cols at
 * most max entries); returns the rows, *cols the entries of a row. */
static int json_rows(const char *json, const char *key, long long *v, int max, int *cols)
{
	char pat[80];
	snprintf(pat, sizeof pat, "\"%s\": [", key);
	const char *p = strstr(json, pat);
	if (!p)
		fail_msg("key %s missing from %s", key, json);
	p += strlen(pat);
	int rows = 0, n = 0;
	*cols = 0;
	while (*p == '[' || *p == ',' || *p == ' ') {
		if (*p++ != '[')
			continue;
		int c = 0;
		for (char *end; *p != ']'; p = end + (end[0] == ',')) {
			assert_true(n < max);
			v[n++] = strtoll(p, &end, 10);
			assert_true(end != p);
			while (*end == ' ')
				end++;
			c++;
		}
		p++;
		*cols = c;
		rows++;
	}
	return rows;
}

/* Of a summary j of 3 hosts: the one event ev ("lost", "joined") it
 * records, of host h: hosts_<ev> 1 and no other event, host_<ev>_epoch
 * one row of 3 entries, only h's set.  Returns h's (1 + the epoch). */
static int host_event(const char *j, const char *ev, int h)
{
	static const char *const evs[] = {"lost", "joined", "left"};
	char key[32];
	for (int i = 0; i < 3; i++) {
		snprintf(key, sizeof key, "\"hosts_%s\": ", evs[i]);
		const char *p = strstr(j, key);
		assert_non_null(p);
		assert_int_equal(atoi(p + strlen(key)), strcmp(evs[i], ev) == 0);
	}
	long long v[3];
	int cols;
	snprintf(key, sizeof key, "host_%s_epoch", ev);
	assert_int_equal(json_rows(j, key, v, 3, &cols), 1);
	assert_int_equal(cols, 3);
	for (int i = 0; i < 3; i++)
		if (i != h)
			assert_int_equal(v[i], 0);
	return (int)v[h];
}

/* The rows of key (epoch_host_...) of a summary of 3 hosts: E rows of 3
 * into c (E <= 128). */
static void epoch_rows(const char *j, const char *key, long long *c, int E)
{
	int cols;
	assert_true(E <= 128);
	assert_int_equal(json_rows(j, key, c, 128 * 3, &cols), E);
	assert_int_equal(cols, 3);
}

/*
 * Starts app (build_path's name; args after it) as 3 hosts x 1 node on
 * loopback under psrun --on-host-failure continue (--backup-rate 200),
 * waits for host `victim` to print "epoch K/E:" (its epoch K done, K =
 * after, E = epochs) and SIGKILLs its psrun on that line;
 * waits for the others.  Both survivors must exit 0, say the host was
 * dropped, and leave no segment or process behind (count_procs(dir)):
 * their output into out[0], out[1] (the survivors in host order).
 */
static void run_three_hosts_losing(const char *app, const char *dir, int victim, const char *after, const char *epochs,
				   const char *const *args, char out[2][8192])
{
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	const char *prog[48] = {"--on-host-failure", "continue", "--backup-rate", "200", build_path(app)};
	int n = 5;
	while (*args)
		prog[n++] = *args++;
	prog[n] = NULL;
	unsigned port = mh_free_port();
	static char store[3][96];
	struct mh_proc p[3];
	/* the victim stops after its progress line of epoch `after` until it
	 * is killed (app_test_stall): the kill lands there, not epochs later */
	static char stall[64];
	snprintf(stall, sizeof stall, "APP_TEST_STALL=epoch %s/%s", after, epochs);
	char *const stall_env[] = {stall, NULL};
	for (int r = 0; r < 3; r++) {
		const char *argv[64];
		mh_psrun_argv(argv, store[r], 1, 3, r, port, prog);
		char name[16];
		snprintf(name, sizeof name, "lost%d", r);
		mh_spawn(&p[r], name, (char *const *)argv, r == victim ? stall_env : NULL);
	}
	char mark[32];
	snprintf(mark, sizeof mark, "epoch %s/%s: ", after, epochs);
	for (int i = 0; i < 60000 && !strstr(mh_slurp(p[victim].out), mark); i++)
		usleep(1000); /* polls the victim's output */
	if (!strstr(mh_slurp(p[victim].out), mark)) {
		for (int r = 0; r < 3; r++) {
			mh_finish(&p[r], 0);
			mh_show(&p[r], "host");
		}
		fail_msg("host %d did not print \"%s\" within 60 s", victim, mark);
	}
	kill(p[victim].pid, SIGKILL); /* psrun alone: its guardian removes its node */
	mh_finish(&p[victim], 10);
	for (int r = 0; r < 3; r++)
		if (r != victim)
			mh_finish(&p[r], 120);
	for (int r = 0; r < 3; r++) {
		if (r == victim)
			continue;
		if (p[r].status != 0)
			mh_show_failed(3, p);
		assert_int_equal(p[r].status, 0);
		assert_non_null(strstr(mh_slurp(p[r].err), "dropped, the job goes on with 2 of 3 hosts"));
		snprintf(out[r - (r > victim)], 8192, "%s", mh_slurp(p[r].out));
	}
	for (int i = 0; i < 500 && (seg_leaked_since(&segs) || count_procs(dir)); i++)
		usleep(10000); /* the victim's guardian ends at once */
	assert_int_equal(seg_leaked_since(&segs), 0);
	assert_int_equal(count_procs(dir), 0);
}

/* Whether this build's psrun runs elastic jobs (--join): the join tests
 * skip, saying so, where it does not. */
static bool psrun_has_join(void)
{
	static struct run_result r;
	char *argv[] = {(char *)build_path("bin/psrun"), "--help", NULL};
	run_prog(argv, NULL, 30, -1, 0, &r);
	return strstr(r.out, "--join") != NULL || strstr(r.err, "--join") != NULL;
}

/*
 * Starts app (args after it) as 2 hosts x 1 node on loopback under psrun
 * --elastic, waits for host 0 to print "epoch K/E:" (K = after) and then
 * starts a third host with psrun --join; waits for all three, which must
 * exit 0 and leave no segment or process behind (count_procs(dir)); their
 * output into out[0..2] (host 2: the joiner).
 */
static void run_two_hosts_and_a_joiner(const char *app, const char *dir, const char *after, const char *epochs,
				       const char *const *args, char out[3][8192])
{
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	const char *prog[48] = {"--elastic", build_path(app)};
	int n = 2;
	for (int i = 0; args[i]; i++)
		prog[n++] = args[i];
	prog[n] = NULL;
	unsigned port = mh_free_port();
	static char store[2][96], coord[32];
	struct mh_proc p[3];
	for (int r = 0; r < 2; r++) {
		const char *argv[64];
		mh_psrun_argv(argv, store[r], 1, 2, r, port, prog);
		char name[16];
		snprintf(name, sizeof name, "elastic%d", r);
		mh_spawn(&p[r], name, (char *const *)argv, NULL);
	}
	char mark[32];
	snprintf(mark, sizeof mark, "epoch %s/%s: ", after, epochs);
	for (int i = 0; i < 60000 && !strstr(mh_slurp(p[0].out), mark); i++)
		usleep(1000); /* polls host 0's output */
	if (!strstr(mh_slurp(p[0].out), mark)) {
		for (int r = 0; r < 2; r++) {
			mh_finish(&p[r], 0);
			mh_show(&p[r], "host");
		}
		fail_msg("host 0 did not print \"%s\" within 60 s", mark);
	}
	snprintf(coord, sizeof coord, "127.0.0.1:%u", port);
	const char *jargv[64] = {build_path("bin/psrun"), "-n", "1", "--join", coord, "--token-file", mh_token_path};
	int k = 7;
	for (int i = 1; prog[i]; i++)
		jargv[k++] = prog[i];
	jargv[k] = NULL;
	mh_spawn(&p[2], "joiner", (char *const *)jargv, NULL);
	for (int r = 0; r < 3; r++) {
		mh_finish(&p[r], 120);
		if (p[r].status != 0)
			mh_show(&p[r], r == 2 ? "joiner" : "member");
	}
	for (int r = 0; r < 3; r++) {
		assert_int_equal(p[r].status, 0);
		snprintf(out[r], 8192, "%s", mh_slurp(p[r].out));
	}
	for (int i = 0; i < 500 && (seg_leaked_since(&segs) || count_procs(dir)); i++)
		usleep(10000);
	assert_int_equal(seg_leaked_since(&segs), 0);
	assert_int_equal(count_procs(dir), 0);
}

/* Whether this build's psrun drains a leaving host (--drain): else the
 * leave tests skip, saying so. */
static bool psrun_has_drain(void)
{
	static struct run_result r;
	char *argv[] = {(char *)build_path("bin/psrun"), "--help", NULL};
	run_prog(argv, NULL, 30, -1, 0, &r);
	return strstr(r.out, "--drain") != NULL || strstr(r.err, "--drain") != NULL;
}

/*
 * Starts app (args after it) as 3 hosts x 1 node on loopback under psrun
 * --elastic --drain, waits for host 2 to print "epoch K/E:" (K = after)
 * and sends its psrun SIGTERM (with --drain: leave at the next
 * ps_sync_hosts); waits for all three, which must exit 0 and leave no
 * segment or process behind (count_procs(dir)); their output into
 * out[0..2].
 */
static void run_three_hosts_one_leaving(const char *app, const char *dir, const char *after, const char *epochs,
					const char *const *args, char out[3][8192])
{
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	const char *prog[48] = {"--elastic", "--drain", build_path(app)};
	int n = 3;
	for (int i = 0; args[i]; i++)
		prog[n++] = args[i];
	prog[n] = NULL;
	unsigned port = mh_free_port();
	static char store[3][96];
	struct mh_proc p[3];
	for (int r = 0; r < 3; r++) {
		const char *argv[64];
		mh_psrun_argv(argv, store[r], 1, 3, r, port, prog);
		char name[16];
		snprintf(name, sizeof name, "leave%d", r);
		mh_spawn(&p[r], name, (char *const *)argv, NULL);
	}
	char mark[32];
	snprintf(mark, sizeof mark, "epoch %s/%s: ", after, epochs);
	for (int i = 0; i < 60000 && !strstr(mh_slurp(p[2].out), mark); i++)
		usleep(1000); /* polls host 2's output */
	if (!strstr(mh_slurp(p[2].out), mark)) {
		for (int r = 0; r < 3; r++) {
			mh_finish(&p[r], 0);
			mh_show(&p[r], "host");
		}
		fail_msg("host 2 did not print \"%s\" within 60 s", mark);
	}
	kill(p[2].pid, SIGTERM);
	for (int r = 0; r < 3; r++)
		mh_finish(&p[r], 120);
	mh_show_failed(3, p);
	for (int r = 0; r < 3; r++) {
		assert_int_equal(p[r].status, 0);
		snprintf(out[r], 8192, "%s", mh_slurp(p[r].out));
	}
	for (int i = 0; i < 500 && (seg_leaked_since(&segs) || count_procs(dir)); i++)
		usleep(10000);
	assert_int_equal(seg_leaked_since(&segs), 0);
	assert_int_equal(count_procs(dir), 0);
}

#endif
