/*
 * common.h - what the example apps (mf, kge, w2v) share: reading data
 * (plain or gzip, streaming, errors as file:line: reason), string-to-id
 * maps, option values with checked parsing, terminal progress, the JSON
 * summary, a fast deterministic RNG, and the psmem-facing options the
 * apps share (--sampling, --replicate).  Apps use only lib/psmem.h besides
 * this.
 *
 * Every app_* function that can fail on bad input prints
 * "<app>: <what>: <why>" to stderr and exits 1 (app_die): an app cannot do
 * anything useful after a bad input, and one message is what a user needs.
 */
#ifndef PSMEM_APPS_COMMON_H
#define PSMEM_APPS_COMMON_H

#include <getopt.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "psmem.h"

/* ------------------------------------------------------------- messages */

/* Name used in messages; set by app_init. */
extern const char *app_name;
void app_init(const char *name);

/* Prints "<app>: <fmt...>" and exits 1. */
__attribute__((noreturn, format(printf, 1, 2))) void app_die(const char *fmt, ...);

/* ------------------------------------------------------------- workers */

/*
 * The apps split their data over every node of every host: node n of host
 * h is app node h * nodes + n of hosts * nodes (one host: the node id), so
 * each rating, triple and sentence is trained once per epoch wherever the
 * job runs.  Threads split a node's share further as before.
 */
static inline int app_gnode(const ps_world *w) { return ps_host_id(w) * ps_num_nodes(w) + ps_node_id(w); }
static inline int app_gnodes(const ps_world *w) { return ps_num_hosts(w) * ps_num_nodes(w); }

/* ------------------------------------------------------------- options */

/*
 * The version every tool prints for --version ("mf (psmem) 0.1").  psmem.h
 * has only PSMEM_VERSION_MAJOR and _MINOR; the string is made from them
 * here, unless psmem.h comes to define PS_VERSION itself.
 */
#ifndef PS_VERSION
#define APP_STR_(x) #x
#define APP_STR(x) APP_STR_(x)
#define PS_VERSION APP_STR(PSMEM_VERSION_MAJOR) "." APP_STR(PSMEM_VERSION_MINOR)
#endif

/* The value of the "version" entry of an app's long options: app_getopt
 * answers it ("<app> (psmem) PS_VERSION", exit 0). */
#define APP_OPT_VERSION 0x7ffe

/*
 * The command-line convention of every app: getopt_long (getopt_long_only
 * when only is true) with its own messages off.  An unknown option prints
 * "<app>: unknown option '--x'", an option without its value
 * "<app>: option '--x' needs a value", each followed by
 * "Try '<app> --help'." and exit 2 (app_usage_error); APP_OPT_VERSION
 * prints the version and exits 0.  Returns what getopt_long returns
 * otherwise (longindex as getopt_long's, may be NULL).
 */
int app_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts, int *longindex, bool only);

/* Prints "<app>: <fmt...>" and "Try '<app> --help'." and exits 2: the
 * command line itself is wrong (unknown option, missing value, stray
 * argument). */
__attribute__((noreturn, format(printf, 1, 2))) void app_usage_error(const char *fmt, ...);

/*
 * Fails before any work when path (the value of option opt) cannot be
 * written the way the apps write files (a temporary file in its directory,
 * renamed over it): "<app>: --opt: PATH: cannot write: why", exit 1.
 * Creates and removes one temporary file; leaves nothing behind.  NULL and
 * "-" (stdout) pass.
 */
void app_check_writable(const char *opt, const char *path);

/* A field of the input echoed in a message: s itself when short, else its
 * first 60 characters and "..." (in one of 4 rotating static buffers). */
const char *app_clip(const char *s);

/* Checked number parsing for option values: dies with
 * "<app>: --opt: 'val' is not a valid <kind>" (and for ranges "must be
 * between lo and hi"). */
long app_opt_long(const char *opt, const char *val, long lo, long hi);
double app_opt_double(const char *opt, const char *val, double lo, double hi);

/*
 * Prints "<app>: training diverged in epoch E (the WHAT is not a finite
 * number): lower --lr (now LR)" to stderr.  Said by node 0's first worker
 * before a barrier that every worker passes on its way out, so that no node
 * has exited (and psrun has not ended the job) before it is printed; every
 * node then exits 1.
 */
void app_diverged(int epoch, const char *what, double lr);

/* ---------------------------------------------------------------- input */

typedef struct app_reader app_reader;

/* Opens a text file, plain or gzip (detected by its magic bytes, any name).
 * Dies on a missing or unreadable file: "<app>: PATH: cannot open: why".
 * A gzip file that ends early or does not decompress stops the read (in
 * app_getline, app_slurp) with "<app>: PATH: truncated or corrupt gzip". */
app_reader *app_open(const char *path);

/* Next line without its newline (and without a trailing '\r'); NULL at end.
 * The line is valid until the next call; callers may modify it. */
char *app_getline(app_reader *r, size_t *len);

long app_lineno(const app_reader *r);      /* of the line last returned */
const char *app_path(const app_reader *r);
void app_close(app_reader *r);

/* Prints "<app>: PATH:LINE: reason" and exits 1. */
__attribute__((noreturn, format(printf, 2, 3))) void app_fail_line(const app_reader *r, const char *fmt, ...);

/* Splits line in place at any character of seps, skipping empty fields when
 * collapse is true (runs of spaces); returns the number of fields (at most
 * max; fields beyond max are left joined in the last one). */
int app_split(char *line, const char *seps, bool collapse, char **fields, int max);

/* Parses a whole field as a number; false if it is not exactly one. */
bool app_parse_double(const char *s, double *out);
bool app_parse_i64(const char *s, int64_t *out);

/* Reads a whole file into memory (plain or gzip); *len set. Dies on error. */
char *app_slurp(const char *path, size_t *len);

/* ---------------------------------------------------------- string ids */

typedef struct app_idmap app_idmap;

app_idmap *app_idmap_new(void);
void app_idmap_free(app_idmap *m);
/* Dense id of s (ids 0.. in first-seen order); inserts it when insert is
 * true, else returns -1 if absent. */
int64_t app_idmap_get(app_idmap *m, const char *s, size_t len, bool insert);
size_t app_idmap_size(const app_idmap *m);
const char *app_idmap_name(const app_idmap *m, int64_t id);

/* ------------------------------------------------------------- progress */

typedef struct app_progress {
	char what[64];     /* e.g. "epoch 3/20" */
	uint64_t total;    /* items expected in this phase (0: unknown) */
	double t0, last;
	bool tty;
} app_progress;

/* On a terminal the line is redrawn in place (at most 5 times a second);
 * otherwise nothing is printed until app_progress_end, which prints one line
 * per phase.  The line shows percent, items/s, elapsed, ETA and the loss. */
void app_progress_start(app_progress *p, const char *what, uint64_t total);
void app_progress_update(app_progress *p, uint64_t done, double loss);
/* extra: appended to the final line (e.g. "test RMSE 0.9312"), may be NULL */
void app_progress_end(app_progress *p, uint64_t done, double loss, const char *extra);

/* Tests only: with APP_TEST_STALL set to `what` (e.g. "epoch 7/20"), the
 * caller stops for good once it reported that phase (app_progress_end
 * calls it), so a test that kills this host after that line kills it
 * there, not some epochs later: a small job's epochs take milliseconds,
 * and a loaded machine let the others finish before the kill. */
void app_test_stall(const char *what);

/* ---------------------------------------------------------------- JSON */

typedef struct app_json app_json;

app_json *app_json_new(const char *app);          /* {"app": "<app>", ... */
void app_json_str(app_json *j, const char *key, const char *val);
void app_json_num(app_json *j, const char *key, double val);
void app_json_int(app_json *j, const char *key, int64_t val);
/* A rows x cols matrix of integers v[r * cols + c], as an array of rows:
 * [[v00, v01, ...], [v10, ...], ...]. */
void app_json_int_rows(app_json *j, const char *key, const int64_t *v, size_t rows, size_t cols);
/* Hosts joining, leaving or lost (issue 16): "hosts_<what>": how many of
 * hosts[0 .. hosts) had the event (epoch[h] > 0), and
 * "host_<what>_epoch": [[epoch[0], ...]] (1-based: the first epoch after
 * it, 0 for none). */
void app_json_host_events(app_json *j, const char *what, const int64_t *epoch, size_t hosts);
/* Writes the object to path (atomically: temp file + rename); dies on error.
 * path "-" writes to stdout.  Frees j. */
void app_json_write(app_json *j, const char *path);
/* --json FILE on several hosts: host 0 writes FILE, host R > 0 FILE.hostR
 * (as checkpoints do: hosts may share a file system); "-" is stdout on
 * every host.  Frees j. */
void app_json_write_host(app_json *j, const char *path, int host);
/*
 * The work split in a summary: this host's place in the job and the items
 * ("triples", "words") its nodes trained: "<what>_per_epoch" (in the last
 * epoch of this run), "<what>_trained" (in all its epochs), per node of
 * this host "<what>_per_epoch_nodeN" (N its node id), and the whole job's
 * "job_<what>_per_epoch" (every node of every host).  last[] and all[] are
 * indexed by app node (app_gnode), hosts * nodes of them.
 */
void app_json_split(app_json *j, const char *what, int host, int hosts, int nodes, const uint64_t *last,
		    const uint64_t *all);

/* -------------------------------------------------------------- ratings */

#define APP_NONE UINT32_MAX /* id unseen in training (test files only) */

struct app_rating {
	uint32_t u, i; /* dense ids */
	float r;
};

struct app_ratings {
	struct app_rating *v;
	size_t n, cap;
};

/* Ratings beyond this magnitude are refused as input errors: squared and
 * summed in float, they would overflow the model long before they taught
 * it anything. */
#define APP_RATING_MAX 1e6

/*
 * Appends the ratings of path to out: "user item rating [timestamp]" lines,
 * separated by commas (if the line has one) or by runs of tabs and spaces;
 * blank and '#' lines skipped; the first other line is a header if its
 * rating is not a number.  Training ids are inserted into the maps, test
 * ids only looked up (APP_NONE if unseen).  sum/rmin/rmax (may be NULL)
 * collect the ratings' sum and range.  Bad lines stop with file:line,
 * among them a rating that is not finite or beyond +-APP_RATING_MAX.
 */
void app_load_ratings(const char *path, bool train, app_idmap *users, app_idmap *items, struct app_ratings *out,
		      double *sum, double *rmin, double *rmax);

/* Deals ids 0..n-1 with weights count[] to k bins, largest first, in snake
 * order: bin sizes differ by at most one, loads near-balanced.  Returns a
 * malloc'ed id -> bin array. */
uint32_t *app_deal(const uint64_t *count, size_t n, int k);

/* ---------------------------------------------------------- checkpoints */

typedef struct ps_world ps_world;

/*
 * Restores the tables from path (NULL: the file of psrun --restore, if
 * any) and returns the epochs done when it was written, 0 when there is
 * nothing to resume from.  Dies with "<app>: cannot resume: FILE: why" on a
 * bad file or another app's checkpoint.  Collective: one thread per node,
 * after the tables are created.
 */
int app_resume(ps_world *w, const char *path);

/*
 * At the end of an epoch (epochs_done of epochs): writes the checkpoint to
 * path when every > 0 divides epochs_done or the last epoch is done (path
 * NULL: never), then serves a checkpoint asked for by psstat --checkpoint.
 * Collective: one thread per node, while the workers are quiescent.  Dies
 * if the checkpoint cannot be written.
 */
void app_epoch_checkpoints(ps_world *w, const char *path, int every, int epochs_done, int epochs);

/* ----------------------------------------------------------------- misc */

double app_now(void); /* monotonic seconds */
/* CPU seconds of this process, all its threads (user + system): the cost of
 * a phase on a shared machine, where wall time depends on the load */
double app_cpu_now(void);

/* splitmix64: fast, deterministic, one state word per thread */
static inline uint64_t app_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}
static inline double app_rand_unit(uint64_t *s) { return (double)(app_rand(s) >> 11) * 0x1.0p-53; }

/* ------------------------------------------ replication and sampling */

/* --sampling: how negatives are drawn.  on = false: the app's own sampler
 * (no --sampling given); else the psmem scheme, and name is what the
 * summary and the JSON say ("naive", "local", "pool:8"); "app" when off. */
struct app_sampling {
	bool on;
	enum ps_sample_scheme scheme;
	unsigned reuse;        /* U of pool, 1 otherwise */
	char name[24];
};

void app_sampling_off(struct app_sampling *s);
/* Parses val with ps_sample_scheme_parse; dies with "<app>: --sampling:
 * 'val' is not naive, local, pool or pool:U (U from 1 to 65536)". */
void app_opt_sampling(const char *opt, const char *val, struct app_sampling *out);
/* Sets t's scheme to s's (when s->on); dies on error. */
void app_sampling_apply(ps_table *t, const struct app_sampling *s);

/* Makes the k keys with the largest counts[] the replicated set of t
 * (ps_replicate_top); dies with "<app>: cannot replicate the <what>: why". */
void app_replicate_top(ps_table *t, const uint64_t *counts, long k, const char *what);

/* Share of node's key accesses (keys pulled + pushed, all tables) served
 * by a replica (ps_node_stats.repl_keys); 0 without accesses, NAN when the
 * statistics cannot be read. */
double app_repl_share(ps_world *w, int node);

/* ------------------------------------------ hosts lost, joined, leaving */

/*
 * The hosts present as kge and w2v split their data over them (issue 16).
 * The split: the hosts present, in id order, take app nodes as app_gnode
 * does, so host h is split place r (r = present hosts below h), its node
 * n is app node r x nodes + n of present x nodes.  With every host present
 * that is app_gnode's split: the undisturbed path is unchanged.
 *
 * At each epoch boundary every worker calls app_members_vote, then
 * ps_sync_hosts (the membership point), then app_members_at for the next
 * epoch.  Every host must use the same set, and ps_hosts_alive read after
 * the sync does not give that: a host that dies while the others wait in
 * the sync is seen lost as soon as each survivor's bridge learns it, which
 * may be before one survivor reads ps_hosts_alive and after another did
 * (the first tests here saw it: one survivor split over 2 hosts, the
 * other over 3).  So losses go through votes: before the sync the node's
 * first worker in app_members_vote reads ps_hosts_alive (one view for the
 * node's workers) and adds 1 to the vote key of every host of the set that
 * is gone in it; after the sync the node's first worker in app_members_at
 * pulls the votes, and a host with one is gone for every host.  The votes
 * are pushed before the sync's barrier and pulled after it, so every node
 * reads the same sums.  A host that no node saw gone before the sync stays
 * in the set one epoch more (its share of that epoch is not trained; the
 * next sync removes it).  Joins are taken from the view after the sync
 * (ps_sync_hosts adds a joiner at the same sync on every host).  So are
 * leaves (ps_sync_hosts removes a leaver there), but only through the
 * votes of the next sync: the others train one epoch without the leaver's
 * share (no extra barrier per epoch; an earlier version voted after the
 * sync and needed one).  On one host: no votes, the view after the sync.
 *
 * Events: a host present in the set of e but not in that of e - 1 joined
 * at e; one gone from it was lost or left at e (app_members_left tells
 * which: ps_hosts_alive does not).  Epochs recorded are 1 + e: the first
 * epoch (1-based) trained with (joined) or without (lost, left) the host.
 */
#define APP_HOSTS_MAX 1024 /* host ids the apps follow (psrun's bound) */

struct app_split {
	int present;   /* hosts present */
	int place;     /* this host's split place: present hosts below it */
	int gnode;     /* this node's app node in the split: place x nodes + node */
	int gnodes;    /* present x nodes */
	bool changed;  /* the set differs from the previous epoch's */
};

/* The vote keys: host h's at key base + h of table t, values of vlen
 * floats (the first counts); t NULL: no votes (one host). */
struct app_votes {
	ps_table *t;
	ps_key base;
	int vlen;
};

struct app_members {
	pthread_mutex_t lock;   /* orders the node's workers' reads and writes of what follows */
	int host, node, nodes;
	int seen;               /* 1 + the largest host id ever present */
	long epoch;             /* of the set in force; -1 before the first (a joiner) */
	long viewed;            /* of the last vote (app_members_vote); -1 none */
	uint8_t alive[APP_HOSTS_MAX]; /* the set in force */
	long gone[APP_HOSTS_MAX];     /* 1 + the epoch a host was lost or left at; 0 none */
	long joined[APP_HOSTS_MAX];   /* 1 + the epoch it joined at; 0 none */
	uint8_t left[APP_HOSTS_MAX];  /* gone on request (app_members_left), not lost */
};

/* The set at the start (epoch start): the hosts present (ps_hosts_alive:
 * in an elastic job ps_num_hosts counts every host rank that may join, so
 * the apps split over these, not over ps_num_hosts); a joiner (ps_joined)
 * has none until its first app_members_at. */
void app_members_init(struct app_members *m, ps_world *w, long start);
void app_members_destroy(struct app_members *m);
/* Before the ps_sync_hosts that precedes epoch e, every worker: this
 * node's votes for the hosts of the set gone in its view (v NULL: none).
 * Dies if ps_hosts_alive or the push fails. */
void app_members_vote(struct app_members *m, ps_world *w, long e, const struct app_votes *v);
/* After it, every worker: the split of epoch e into *s, and alive (may be
 * NULL; APP_HOSTS_MAX entries) the set; v as given to app_members_vote. */
void app_members_at(struct app_members *m, ps_world *w, long e, const struct app_votes *v, struct app_split *s,
		    uint8_t *alive);
/* The split of the current set without asking psmem (the first epoch). */
void app_members_split(struct app_members *m, struct app_split *s, uint8_t *alive);
/* The membership point before epoch *e (every worker): app_members_vote,
 * ps_sync_hosts(w, e) (*e: the epoch it returns, a joiner's from the
 * others), app_members_at.  Returns what ps_sync_hosts returned (0: this
 * host leaves here; *s is then unchanged); dies on an error. */
int app_membership(struct app_members *m, ps_world *w, const struct app_votes *v, long *e, struct app_split *s,
		   uint8_t *alive);
/* Host h, gone, left on request (its marker said so) rather than lost. */
void app_members_left(struct app_members *m, int h);
/* After training, a host's lead: the hosts gone whose left mark (key
 * left0 + h of t, values of vlen floats, first one non-zero) is set left
 * (a leaver marks it before it finalizes); host ids below hosts. */
void app_members_read_left(struct app_members *m, ps_table *t, ps_key left0, int vlen, int hosts);
/* 1 + the epoch host h was lost or left at, 0 if it is not gone. */
long app_members_gone(struct app_members *m, int h);
/* Prints "<app>: epoch E: host 2 lost, host 3 joined; the data split over
 * N hosts present" (the events of epoch e). */
void app_members_print(struct app_members *m, long e);
/* hosts_present (in the last set), hosts_lost, hosts_joined, hosts_left
 * (counts) and host_lost_epoch,
 * host_joined_epoch, host_left_epoch (one row, an entry per host id seen:
 * 1 + the epoch of the event, 0 none). */
void app_members_json(app_json *j, struct app_members *m);
/* Count slots the apps reserve per host in their metrics tables, so that
 * a joiner (a host id beyond ps_num_hosts at start) has keys: the same
 * number on every host, whatever ps_num_hosts a joiner sees. */
static inline int app_count_hosts(const ps_world *w) { return ps_num_hosts(w) > 64 ? ps_num_hosts(w) : 64; }

/* What a host's lead records of the items (triples, words) each host
 * trained in each epoch: v[e * cols + h]; 0 for a host absent from that
 * epoch's split, -1 for one that was in it but lost before it said (its
 * share of that epoch was trained in part: not known how much).  Grows
 * its columns as hosts join.  Single-threaded (the lead's). */
struct app_epoch_counts {
	long epochs;
	int cols;
	int64_t *v;
};
void app_epoch_counts_init(struct app_epoch_counts *c, long epochs, int hosts);
void app_epoch_counts_set(struct app_epoch_counts *c, long e, int h, int64_t n);
/*
 * A host's lead, after the barrier that ends epoch e (every worker
 * assigned its count before it; none assigns the next before the
 * ps_sync_hosts that follows): the items each host of the epoch's split
 * (alive) trained in it.  Worker g's count is at key count0 + g of t
 * (values of vlen floats; the epoch's count c as c mod 2^20 and c / 2^20
 * in the first two), per workers per host.  A host of the split that is
 * gone now gets -1: lost during the epoch, before or after its workers
 * assigned, its count says nothing certain.  Host ids below hosts.
 */
void app_epoch_counts_read(struct app_epoch_counts *c, ps_world *w, long e, const uint8_t *alive, ps_table *t,
			   ps_key count0, int per, int vlen, int hosts);
/* key: rows = epochs, one column per host id below cols (at least the
 * columns set) */
void app_epoch_counts_json(app_json *j, const char *key, const struct app_epoch_counts *c, int cols);
void app_epoch_counts_free(struct app_epoch_counts *c);

#endif
