/*
 * psrun_hosts.h - psrun's multi-host part (psrun_hosts.c): which host this
 * is, the job token, the rendezvous, the nodes' links and the bridge.
 * Every function takes NULL for a one-host job and then does nothing.
 */
#ifndef PSRUN_HOSTS_H
#define PSRUN_HOSTS_H

#include <stdbool.h>

#include "psmem_int.h"

struct host_opts {
	int hosts, host_rank;     /* -1: not given */
	const char *coordinator;  /* ADDR:PORT or NULL */
	const char *token_file;   /* or NULL: PSMEM_TOKEN */
	const char *bind;         /* ADDR or ADDR:PORT of this host's bridge, or NULL */
	int rdv_timeout_s;        /* for every host to show up */
	int on_host_failure;      /* 0 abort (stop the job), 1 continue (drop the host) */
	double backup_rate;       /* backup rounds per second with continue; 0: 20 */
	bool elastic;             /* --elastic: joiners may come (EL1) */
	const char *join;         /* --join COORD:PORT, or NULL */
	bool drain;               /* --drain: SIGTERM asks this host to leave */
};

struct hosts;

/* Writes a new job token to path (mode 0600, never over a file); exits. */
void hosts_make_token(const char *path) __attribute__((noreturn));

/* This host's place in the job (flags, else the launcher's environment).
 * For several hosts also loads the token (then removes PSMEM_TOKEN from the
 * environment the nodes inherit) and hashes psrun and prog.  Bad input
 * exits 2 with the reason; NULL for a one-host job. */
struct hosts *hosts_prepare(const struct host_opts *o, char *const prog[], int nodes, int threads, bool verbose);

/* This host's place: *hosts and *rank (left as they are for NULL). */
void hosts_place(const struct hosts *h, int *hosts, int *rank);

/* Records the host rank and count in the segment, before nodes start. */
void hosts_mark_segment(const struct hosts *h, struct ps__seg *seg);

/* Meets the other hosts: 0, -EINTR (a signal is pending on cancel_fd), or
 * another negative code after printing why. */
int hosts_rendezvous(struct hosts *h, int cancel_fd);

/* One link per node and the bridge over them and the peers, on a thread
 * of its own (start it before forking the nodes); 0 or -errno. */
int hosts_start_bridge(struct hosts *h, int nodes);

/* In node i's child before exec: keeps its link open, PSMEM_LINK_FD. */
void hosts_node_env(const struct hosts *h, int node);

/* After node i was forked: psrun's copy of the node's end is closed. */
void hosts_node_started(struct hosts *h, int node);

int hosts_poll_fd(const struct hosts *h);      /* readable: news; -1 for NULL */
int hosts_timeout_ms(const struct hosts *h);   /* -1: no timer needed */
/* Runs the bridge; once the job must stop because a peer failed, returns
 * why (NULL before). */
const char *hosts_step(struct hosts *h);
/* Elastic jobs: asks host (this one or another, -1: this one) to leave at
 * the next ps_sync_hosts.  0, or a negative code after printing why. */
int hosts_request_leave(struct hosts *h, int host);

/* This host is failing (code < 0, why) or its nodes are all done (0). */
void hosts_local_done(struct hosts *h, int code, const char *why);
/* Nothing left to wait for from the other hosts. */
bool hosts_finished(const struct hosts *h);
void hosts_free(struct hosts *h);

#endif
