/*
 * psstat - live per-node figures of a running psmem job.
 *
 *   psstat [--once | --final] [--json | --wide] [--interval SEC] [--dump] [JOB]
 *   psstat --checkpoint FILE [--timeout SEC] [JOB]
 *   psstat --list | --help | --version
 *
 * The default table fits an 80-column terminal (node, pid, state, rates,
 * local share, arena, step and progress, and a totals row); --wide adds
 * the NUMA placement, socket share, relocations, retries and replica
 * columns (about 150 columns).
 *
 * Invariants
 *   - Read-only: the segment is mapped PROT_READ and nothing in it is ever
 *     written, so watching a job cannot disturb it (counters are read with
 *     relaxed loads; they order nothing).  The one exception is
 *     --checkpoint, which maps it writable to post a request in
 *     hdr->ckpt (protocol: lib/checkpoint.c CK5) and touches nothing else.
 *   - Rates are deltas of the per-node counters between two samples divided
 *     by the time between them (CLOCK_MONOTONIC), never since-start averages.
 *   - The job has ended when its segment is gone or its creator (psrun, or
 *     the embedded app) is dead; psstat then says so and exits 0.  Our own
 *     mapping keeps the memory readable after the unlink, so a sample taken
 *     across the end is still sound (--final prints exactly that sample:
 *     the job's last counters, shares and rates over the job's life).
 *   - NUMA truth: the node an arena is bound to is asked of the kernel
 *     (get_mempolicy on psstat's own mapping of the arena), not read from
 *     the segment's record of what psrun intended.
 *   - Own-socket share: keys served from an arena on the accessing node's
 *     NUMA node.  The counters tell own arena (local) from other arenas
 *     (remote) only, so the share is exact when no peer shares the node's
 *     socket (= local share) or every peer does (100 %); otherwise remote
 *     keys are split by where the keys live now (slots held per node's
 *     pools) and the share is marked as an estimate.  One NUMA node: 100 %.
 *     --numa none: no socket is known, no share.
 *
 * Exit status: 0 success or job ended; 1 no job / cannot attach, or the
 * checkpoint was not written; 2 bad arguments.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <numaif.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "psmem_int.h"

#define MAX_INTERVAL 86400.0

struct opts {
	bool once, final, json, dump, wide, list;
	double interval;        /* seconds */
	const char *ckpt;       /* --checkpoint FILE */
	double timeout;         /* seconds to wait for it */
	const char *job;        /* as the user wrote it; NULL: newest job */
	int leave;              /* --leave HOST; -1: not asked */
};

/* The counters of struct ps__stats, in display and JSON order. */
enum { C_PULLS, C_PUSHES, C_KPULLED, C_KPUSHED, C_LOCAL, C_REMOTE, C_RELOC,
       C_RETRIES, C_STALE, C_LOCALIZE, C_GRACE, C_FREED, C_REPL_KEYS, C_REPL_ROUNDS, NCOUNTERS };

static const struct {
	const char *name;
	size_t off;
} counters[NCOUNTERS] = {
	[C_PULLS] = { "pulls", offsetof(struct ps__stats, pulls) },
	[C_PUSHES] = { "pushes", offsetof(struct ps__stats, pushes) },
	[C_KPULLED] = { "keys_pulled", offsetof(struct ps__stats, keys_pulled) },
	[C_KPUSHED] = { "keys_pushed", offsetof(struct ps__stats, keys_pushed) },
	[C_LOCAL] = { "local_keys", offsetof(struct ps__stats, local_keys) },
	[C_REMOTE] = { "remote_keys", offsetof(struct ps__stats, remote_keys) },
	[C_RELOC] = { "relocations", offsetof(struct ps__stats, relocations) },
	[C_RETRIES] = { "retries", offsetof(struct ps__stats, retries) },
	[C_STALE] = { "stale_reads", offsetof(struct ps__stats, stale_reads) },
	[C_LOCALIZE] = { "localize_reqs", offsetof(struct ps__stats, localize_reqs) },
	[C_GRACE] = { "grace_periods", offsetof(struct ps__stats, grace_periods) },
	[C_FREED] = { "slots_freed", offsetof(struct ps__stats, slots_freed) },
	[C_REPL_KEYS] = { "repl_keys", offsetof(struct ps__stats, repl_keys) },
	[C_REPL_ROUNDS] = { "repl_rounds", offsetof(struct ps__stats, repl_rounds) },
};

struct node_sample {
	const char *state;
	int32_t pid;
	int32_t numa_node;      /* recorded: where psrun pinned the node */
	int arena_numa;         /* kernel: node the arena is bound to, -1 none */
	const char *arena_policy;
	uint64_t c[NCOUNTERS];
	uint64_t arena_used, arena_size;
	uint64_t repl_age_ns;   /* since the node's replicas were last refreshed; 0: never */
	uint64_t keys_held;     /* slots in use in its pools, all tables */
	uint32_t step;          /* barriers its slowest worker has passed */
	int64_t progress;       /* ps_progress_set values of the step, summed; -1: none */
};

struct sample {
	uint64_t t_ns;
	uint64_t mem_committed;
	int nodes;
	struct node_sample n[PS__MAX_NODES];
};

/* ------------------------------------------------------------ arguments */

static const char usage_line[] =
	"usage: psstat [--once | --final] [--json | --wide] [--interval SEC] [JOB]\n"
	"       psstat --dump [JOB]\n"
	"       psstat --checkpoint FILE [--timeout SEC] [JOB]\n"
	"       psstat --leave HOST [JOB]\n"
	"       psstat --list | --help | --version\n";

static void print_help(void)
{
	printf("psstat - live per-node figures of a running psmem job\n\n%s\n", usage_line);
	printf("  JOB             segment name (psmem-..., with or without a leading / or\n"
	       "                  /dev/shm/), or its path on hugetlbfs (psrun --hugepages);\n"
	       "                  default: the newest running job of this user\n"
	       "      --once      print one block (rates over one interval) and exit\n"
	       "      --final     wait for the job to end, then print one block: its final\n"
	       "                  counters; rates and shares over the whole job\n"
	       "      --json      print JSON objects instead of a table, one per line\n"
	       "                  (default: table)\n"
	       "      --wide      the table with every column (about 150 columns; the\n"
	       "                  default table fits 80)\n"
	       "      --list      list the running jobs of this user and exit\n"
	       "      --interval SEC\n"
	       "                  seconds between samples, fractions allowed (default: 1)\n"
	       "      --dump      print who waits for what (barriers, slot locks,\n"
	       "                  requests) and exit\n"
	       "      --checkpoint FILE\n"
	       "                  ask the job for a checkpoint of its tables to FILE (the\n"
	       "                  program writes it at its next ps_checkpoint_poll, e.g. at\n"
	       "                  the end of an epoch); waits for it and reports the result\n"
	       "      --timeout SEC\n"
	       "                  how long --checkpoint waits (default: 60)\n"
	       "      --leave HOST\n"
	       "                  elastic jobs (psrun --elastic): ask host HOST to leave at\n"
	       "                  the job's next ps_sync_hosts (its keys go to the others);\n"
	       "                  JOB is this host's, whose psrun forwards the request\n"
	       "  -h, --help      print this help and exit\n"
	       "      --version   print psstat's version and exit\n\n"
	       "Header: the job, its age (up), nodes x threads, memory committed of the\n"
	       "budget.  Columns: pulls/s, pushes/s; keys/s, keys pulled and pushed per\n"
	       "second; local%%, the share of accessed keys served from the node's own\n"
	       "arena; arena, bytes used in it; step, barriers passed by the node's\n"
	       "slowest worker; progress, what its workers set with ps_progress_set in\n"
	       "that step, summed ('-' = none).  The last row sums the nodes.\n"
	       "--wide also: numa, the NUMA node psrun pinned the node to; bound, the NUMA node\n"
	       "the kernel binds its arena to (- none); pulls/s, pushes/s and keys\n"
	       "pulled/pushed per second; local%%, the share of accessed keys served from\n"
	       "the node's own arena; sock%%, served from an arena on its own NUMA node\n"
	       "(~: estimated from where keys live, when only some peers share the\n"
	       "node's socket); relocations/s; retries/s (seqlock or moved-key retries);\n"
	       "arena used / reserved; repl%%, the share served by a replica (hot-spot\n"
	       "replication); sync/s, replica sync rounds per second; age, time since the\n"
	       "node's replicas were refreshed (the staleness bound of what its readers\n"
	       "see from other nodes, '-' = never).\n"
	       "psstat only reads the job's segment.  It exits 0 when the job ends.\n");
}

__attribute__((format(printf, 1, 2), noreturn))
static void usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("psstat: bad arguments: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'psstat --help' for more information.\n", stderr);
	exit(2);
}

static bool parse_interval(const char *s, double *out)
{
	errno = 0;
	char *end;
	double v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v <= 0 || v > MAX_INTERVAL)
		return false;
	*out = v;
	return true;
}

static void parse_args(int argc, char **argv, struct opts *o)
{
	enum { O_ONCE = 256, O_FINAL, O_JSON, O_INTERVAL, O_DUMP, O_CKPT, O_TIMEOUT, O_WIDE, O_LIST, O_VERSION, O_LEAVE };
	static const struct option longopts[] = {
		{ "once", no_argument, NULL, O_ONCE },
		{ "final", no_argument, NULL, O_FINAL },
		{ "json", no_argument, NULL, O_JSON },
		{ "interval", required_argument, NULL, O_INTERVAL },
		{ "dump", no_argument, NULL, O_DUMP },
		{ "checkpoint", required_argument, NULL, O_CKPT },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "help", no_argument, NULL, 'h' },
		{ "wide", no_argument, NULL, O_WIDE },
		{ "list", no_argument, NULL, O_LIST },
		{ "version", no_argument, NULL, O_VERSION },
		{ "leave", required_argument, NULL, O_LEAVE },
		{ NULL, 0, NULL, 0 },
	};
	*o = (struct opts){ .interval = 1.0, .timeout = 60.0, .leave = -1 };
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (c) {
		case O_ONCE:
			o->once = true;
			break;
		case O_FINAL:
			o->final = true;
			break;
		case O_JSON:
			o->json = true;
			break;
		case O_INTERVAL:
			if (!parse_interval(optarg, &o->interval))
				usage_error("--interval wants seconds, more than 0 and at most %.0f, not '%s'",
					    MAX_INTERVAL, optarg);
			break;
		case O_DUMP:
			o->dump = true;
			break;
		case O_CKPT:
			if (!*optarg || strlen(optarg) + 64 >= PS__PATH_MAX)
				usage_error("--checkpoint wants a file name shorter than %d bytes", PS__PATH_MAX - 64);
			o->ckpt = optarg;
			break;
		case O_TIMEOUT:
			if (!parse_interval(optarg, &o->timeout))
				usage_error("--timeout wants seconds, more than 0 and at most %.0f, not '%s'",
					    MAX_INTERVAL, optarg);
			break;
		case O_WIDE:
			o->wide = true;
			break;
		case O_LEAVE: {
			char *end;
			long h = strtol(optarg, &end, 10);
			if (end == optarg || *end || h < 0 || h > 1023)
				usage_error("--leave wants a host rank from 0 to 1023, not '%s'", optarg);
			o->leave = (int)h;
			break;
		}
		case O_LIST:
			o->list = true;
			break;
		case O_VERSION:
			printf("psstat (psmem) %d.%d\n", PSMEM_VERSION_MAJOR, PSMEM_VERSION_MINOR);
			exit(0);
		case 'h':
			print_help();
			exit(0);
		case ':':
			usage_error("option '%s' needs an argument", argv[optind - 1]);
		default:
			if (optopt > 0 && optopt < 256)
				usage_error("unknown option '-%c'", optopt);
			usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (o->once && o->final)
		usage_error("--once and --final exclude each other");
	if (o->json && o->wide)
		usage_error("--json and --wide exclude each other");
	if (o->leave >= 0 && (o->once || o->final || o->json || o->wide || o->dump || o->ckpt || o->list))
		usage_error("--leave takes no other option but JOB");
	if (o->list && (o->once || o->final || o->json || o->wide || o->dump || o->ckpt || optind < argc))
		usage_error("--list takes no other option and no JOB");
	if (argc - optind > 1)
		usage_error("more than one JOB ('%s', '%s')", argv[optind], argv[optind + 1]);
	o->job = optind < argc ? argv[optind] : NULL;
}

/* ------------------------------------------------------------ attaching */

/* "psmem-x", "/psmem-x" and "/dev/shm/psmem-x" all name segment psmem-x;
 * any other name with a directory is a file on hugetlbfs, taken as is. */
static const char *bare_name(const char *job)
{
	if (strncmp(job, "/dev/shm/", 9) == 0)
		job += 9;
	while (*job == '/')
		job++;
	return job;
}

static int attach(const struct opts *o, struct ps__seg *seg, bool rw)
{
	char found[PS__NAME_MAX];
	const char *name;
	if (o->job) {
		name = bare_name(o->job);
		if (strchr(name, '/'))
			name = o->job; /* psrun --hugepages */
		/* a name the segment table could not hold cannot be a job */
		if (!*name || strlen(name) + 2 > PS__NAME_MAX) {
			fprintf(stderr, "psstat: %s: %s\n", o->job, ps_strerror(PS_ENOSEG));
			return -1;
		}
	} else {
		if (ps__seg_find(found, sizeof found) != 0) {
			fprintf(stderr, "psstat: no running psmem job found\n");
			return -1;
		}
		name = found;
	}
	int rc = ps__seg_attach(name, !rw, seg);
	if (rc != 0) {
		fprintf(stderr, "psstat: %s: %s\n", o->job ? o->job : name, ps_strerror(rc));
		return -1;
	}
	return 0;
}

static bool job_ended(const struct ps__seg *seg)
{
	int fd = ps__seg_open(seg->name, O_RDONLY);
	if (fd < 0)
		return fd == -ENOENT;
	close(fd);
	return !ps__pid_alive(seg->hdr->creator_pid, seg->hdr->creator_start);
}

/* ------------------------------------------------------------ sampling */

static int num_nodes(const struct ps__seg *seg)
{
	uint32_t n = seg->hdr->num_nodes;
	return n > PS__MAX_NODES ? PS__MAX_NODES : (int)n;
}

static const char *state_name(const struct ps__seg *seg, int i)
{
	static const char *const names[] = {
		[PS__NODE_EMPTY] = "empty",
		[PS__NODE_ALIVE] = "alive",
		[PS__NODE_EXITED] = "exited",
		[PS__NODE_DEAD] = "dead",
	};
	struct ps__node *n = ps__node_at(seg, i);
	/* acquire: pairs with the node's release store of its state, so the
	 * pid read after it belongs to this incarnation */
	uint32_t st = PS__NODE_KIND(atomic_load_explicit(&n->state, memory_order_acquire));
	if (st >= sizeof names / sizeof names[0])
		return "?";
	/* a node killed before anyone marked it shows as dead already */
	if (st == PS__NODE_ALIVE && !ps__node_alive(seg, i))
		return "dead";
	return names[st];
}

/* The kernel's memory policy for the arena (on our own read-only mapping
 * of it: a shared mapping's policy lives with the tmpfs object). */
static void arena_policy(const struct ps__seg *seg, const struct ps__node *n, struct node_sample *ns)
{
	unsigned long mask[16] = {0};
	int mode;
	ns->arena_numa = -1;
	ns->arena_policy = "?";
	if (n->arena_size == 0 ||
	    get_mempolicy(&mode, mask, sizeof mask * 8, seg->base + n->arena_off, MPOL_F_ADDR) != 0)
		return;
	int nodes = 0;
	for (int b = 0; b < (int)(sizeof mask * 8); b++)
		if (mask[b / 64] >> (b % 64) & 1) {
			nodes++;
			ns->arena_numa = b;
		}
	if (nodes != 1)
		ns->arena_numa = -1;
	switch (mode) {
	case MPOL_DEFAULT: ns->arena_policy = "default"; break;
	case MPOL_BIND: ns->arena_policy = "bind"; break;
	case MPOL_PREFERRED: ns->arena_policy = "preferred"; break;
	case MPOL_INTERLEAVE: ns->arena_policy = "interleave"; break;
	default: ns->arena_policy = "other"; break;
	}
}

/* Slots in use in node i's pools: the keys it holds now, plus slots that
 * wait for a grace period (a snapshot, relaxed). */
static uint64_t keys_held(const struct ps__seg *seg, int i)
{
	uint64_t held = 0;
	for (int t = 0; t < PS__MAX_TABLES; t++) {
		struct ps__tdesc *d = ps__tdesc_at(seg, t);
		/* acquire: pairs with the creator's release of READY; the pool
		 * fields are laid out before it */
		if (atomic_load_explicit(&d->state, memory_order_acquire) != PS__T_READY)
			continue;
		struct ps__pool *p = ps__pool_at(seg, t, i);
		/* relaxed: figures for an estimate */
		uint64_t used = atomic_load_explicit(&p->used, memory_order_relaxed);
		uint64_t ret = atomic_load_explicit(&p->retired, memory_order_relaxed);
		held += used > ret ? used - ret : 0;
	}
	return held;
}

/* Step of the node's slowest worker, and the ps_progress_set values of
 * its workers for the step each is in (lib/world.c: the word is tagged
 * with the step it was set in; a stale tag is an earlier step's). */
static void take_progress(const struct ps__seg *seg, struct ps__node *n, struct node_sample *ns)
{
	uint32_t threads = atomic_load_explicit(&seg->hdr->threads_per_node, memory_order_relaxed);
	if (threads == 0)
		threads = 1;
	if (threads > PS__MAX_WORKERS)
		threads = PS__MAX_WORKERS;
	ns->step = UINT32_MAX;
	ns->progress = -1;
	for (uint32_t s = 0; s < threads; s++) {
		/* relaxed: figures for display, each word read once */
		uint32_t clock = atomic_load_explicit(&n->ws[s].clock, memory_order_relaxed);
		uint64_t p = atomic_load_explicit(&n->ws[s].progress, memory_order_relaxed);
		if (clock < ns->step)
			ns->step = clock;
		if (p && (p >> 40) == (clock & 0xffffffu))
			ns->progress = (ns->progress < 0 ? 0 : ns->progress) + (int64_t)(p & ((1ULL << 40) - 1));
	}
}

static void take_node(const struct ps__seg *seg, int i, struct node_sample *ns)
{
	struct ps__node *n = ps__node_at(seg, i);
	ns->state = state_name(seg, i);
	ns->pid = n->pid;
	ns->numa_node = n->numa_node;
	for (int c = 0; c < NCOUNTERS; c++) {
		_Atomic uint64_t *p = (_Atomic uint64_t *)((char *)ps__node_stats(n) + counters[c].off); /* with its threads' */
		/* relaxed: a counter, orders nothing */
		ns->c[c] = atomic_load_explicit(p, memory_order_relaxed);
	}
	/* relaxed: a figure for display */
	ns->arena_used = atomic_load_explicit(&n->arena_used, memory_order_relaxed);
	ns->arena_size = n->arena_size;
	/* relaxed: a diagnostic timestamp */
	uint64_t last = atomic_load_explicit(&n->stats.repl_last_ns, memory_order_relaxed), now = ps__now_ns();
	ns->repl_age_ns = last && now > last ? now - last : 0;
	arena_policy(seg, n, ns);
	ns->keys_held = keys_held(seg, i);
	take_progress(seg, n, ns);
}

static void take(const struct ps__seg *seg, struct sample *s)
{
	s->t_ns = ps__now_ns();
	s->nodes = num_nodes(seg);
	/* relaxed: a figure for display */
	s->mem_committed = atomic_load_explicit(&seg->hdr->mem_committed, memory_order_relaxed);
	for (int i = 0; i < s->nodes; i++)
		take_node(seg, i, &s->n[i]);
}

static double rate(const struct sample *a, const struct sample *b, int i, int c)
{
	double dt = (double)(b->t_ns - a->t_ns) / 1e9;
	/* counters only grow; a smaller value means a new incarnation */
	uint64_t d = b->n[i].c[c] >= a->n[i].c[c] ? b->n[i].c[c] - a->n[i].c[c] : 0;
	return dt > 0 ? (double)d / dt : 0;
}

/* Share of keys served locally over the interval, or -1 without access. */
static double local_share(const struct sample *a, const struct sample *b, int i)
{
	double l = rate(a, b, i, C_LOCAL), r = rate(a, b, i, C_REMOTE);
	return l + r > 0 ? l / (l + r) : -1;
}

/*
 * Share of node i's keys served from an arena on its own NUMA node over the
 * interval, or -1 (no access, or no NUMA placement).  *exact: false when it
 * is an estimate (see the invariants at the top).
 */
static double socket_share(const struct ps__seg *seg, const struct sample *a, const struct sample *b, int i,
			   bool *exact)
{
	*exact = true;
	const struct node_sample *me = &b->n[i];
	double l = rate(a, b, i, C_LOCAL), r = rate(a, b, i, C_REMOTE);
	if (seg->hdr->numa_mode == 1 || me->numa_node < 0 || l + r <= 0)
		return -1;
	int peers = 0, same = 0;
	double held_same = 0, held_other = 0;
	for (int j = 0; j < b->nodes; j++) {
		if (j == i)
			continue;
		peers++;
		if (b->n[j].numa_node == me->numa_node) {
			same++;
			held_same += (double)b->n[j].keys_held;
		} else {
			held_other += (double)b->n[j].keys_held;
		}
	}
	double p_same;
	if (same == 0 || same == peers) {
		p_same = same == 0 ? 0 : 1;
	} else {
		*exact = false;
		p_same = held_same + held_other > 0 ? held_same / (held_same + held_other) : 0;
	}
	return (l + r * p_same) / (l + r);
}

/* ------------------------------------------------------------ table */

static const char *fmt_bytes(uint64_t v, char *buf, size_t len)
{
	static const char units[] = "KMGTPE";
	if (v < 1024) {
		snprintf(buf, len, "%" PRIu64 "B", v);
		return buf;
	}
	double d = (double)v / 1024;
	int u = 0;
	while (d >= 1024 && units[u + 1]) {
		d /= 1024;
		u++;
	}
	snprintf(buf, len, "%.1f%c", d, units[u]);
	return buf;
}

static const char *fmt_rate(double r, char *buf, size_t len)
{
	if (r < 1000)
		snprintf(buf, len, "%.0f", r);
	else if (r < 1e6)
		snprintf(buf, len, "%.1fk", r / 1e3);
	else if (r < 1e9)
		snprintf(buf, len, "%.1fM", r / 1e6);
	else
		snprintf(buf, len, "%.1fG", r / 1e9);
	return buf;
}

static double job_age(const struct ps__seg *seg);

/* "45s", "12m03s", "1h02m03s", "3d04h" */
static const char *fmt_age(double sec, char *buf, size_t len)
{
	uint64_t t = sec > 0 ? (uint64_t)sec : 0;
	if (t < 60)
		snprintf(buf, len, "%" PRIu64 "s", t);
	else if (t < 3600)
		snprintf(buf, len, "%" PRIu64 "m%02" PRIu64 "s", t / 60, t % 60);
	else if (t < 86400)
		snprintf(buf, len, "%" PRIu64 "h%02" PRIu64 "m%02" PRIu64 "s", t / 3600, t / 60 % 60, t % 60);
	else
		snprintf(buf, len, "%" PRIu64 "d%02" PRIu64 "h", t / 86400, t / 3600 % 24);
	return buf;
}

static const char *fmt_step(const struct node_sample *n, char *buf, size_t len)
{
	snprintf(buf, len, "%" PRIu32, n->step == UINT32_MAX ? 0 : n->step);
	return buf;
}

static const char *fmt_progress(int64_t p, char *buf, size_t len)
{
	if (p < 0)
		snprintf(buf, len, "-");
	else if (p < 1000000)
		snprintf(buf, len, "%" PRId64, p);
	else
		fmt_rate((double)p, buf, len);
	return buf;
}

/* Two header lines, at most 80 columns each. */
static void print_header(const struct ps__seg *seg, const struct sample *b)
{
	const struct ps__hdr *h = seg->hdr;
	char m1[16], m2[16], up[24];
	uint32_t threads = atomic_load_explicit(&h->threads_per_node, memory_order_relaxed);
	printf("job %s  up %s  %u node%s x %u thread%s  numa %s\n", ps__seg_label(seg->name),
	       fmt_age(job_age(seg), up, sizeof up), h->num_nodes, h->num_nodes == 1 ? "" : "s", threads,
	       threads == 1 ? "" : "s", h->numa_mode == 1 ? "none" : "auto");
	printf("memory %s of %s", fmt_bytes(b->mem_committed, m1, sizeof m1), fmt_bytes(h->mem_budget, m2, sizeof m2));
	if (h->num_hosts > 1)
		printf("  host %u of %u", h->host_rank, h->num_hosts);
	putchar('\n');
}

/* Sums over the nodes, for the totals row. */
struct totals {
	double rate[NCOUNTERS];
	uint64_t arena_used, arena_size;
	uint32_t step;          /* slowest node's */
	int64_t progress;       /* -1: no node set any */
	int alive;
};

static void sum_nodes(const struct sample *a, const struct sample *b, struct totals *t)
{
	memset(t, 0, sizeof *t);
	t->step = UINT32_MAX;
	t->progress = -1;
	for (int i = 0; i < b->nodes; i++) {
		const struct node_sample *n = &b->n[i];
		for (int c = 0; c < NCOUNTERS; c++)
			t->rate[c] += rate(a, b, i, c);
		t->arena_used += n->arena_used;
		t->arena_size += n->arena_size;
		if (n->step < t->step)
			t->step = n->step;
		if (n->progress >= 0)
			t->progress = (t->progress < 0 ? 0 : t->progress) + n->progress;
		t->alive += strcmp(n->state, "alive") == 0;
	}
}

/* The default view: 79 columns. */
static void print_table(const struct ps__seg *seg, const struct sample *a, const struct sample *b)
{
	print_header(seg, b);
	printf("%4s %7s %-6s %8s %8s %8s %6s %8s %6s %9s\n", "node", "pid", "state", "pulls/s", "pushes/s",
	       "keys/s", "local%", "arena", "step", "progress");
	for (int i = 0; i < b->nodes; i++) {
		const struct node_sample *n = &b->n[i];
		char r[3][16], pid[12], share[12], au[16], st[12], pr[16];
		if (n->pid <= 0)
			snprintf(pid, sizeof pid, "-");
		else
			snprintf(pid, sizeof pid, "%d", (int)n->pid);
		double ls = local_share(a, b, i);
		if (ls < 0)
			snprintf(share, sizeof share, "-");
		else
			snprintf(share, sizeof share, "%.1f", 100 * ls);
		printf("%4d %7s %-6s %8s %8s %8s %6s %8s %6s %9s\n", i, pid, n->state,
		       fmt_rate(rate(a, b, i, C_PULLS), r[0], 16), fmt_rate(rate(a, b, i, C_PUSHES), r[1], 16),
		       fmt_rate(rate(a, b, i, C_KPULLED) + rate(a, b, i, C_KPUSHED), r[2], 16), share,
		       fmt_bytes(n->arena_used, au, sizeof au), fmt_step(n, st, sizeof st),
		       fmt_progress(n->progress, pr, sizeof pr));
	}
	struct totals t;
	sum_nodes(a, b, &t);
	char r[3][16], share[12], au[16], st[12], pr[16], alive[16];
	double acc = t.rate[C_LOCAL] + t.rate[C_REMOTE];
	if (acc > 0)
		snprintf(share, sizeof share, "%.1f", 100 * t.rate[C_LOCAL] / acc);
	else
		snprintf(share, sizeof share, "-");
	snprintf(alive, sizeof alive, "%d/%d", t.alive, b->nodes);
	snprintf(st, sizeof st, "%" PRIu32, t.step == UINT32_MAX ? 0 : t.step);
	printf("%4s %7s %-6s %8s %8s %8s %6s %8s %6s %9s\n", "all", "", alive,
	       fmt_rate(t.rate[C_PULLS], r[0], 16), fmt_rate(t.rate[C_PUSHES], r[1], 16),
	       fmt_rate(t.rate[C_KPULLED] + t.rate[C_KPUSHED], r[2], 16), share,
	       fmt_bytes(t.arena_used, au, sizeof au), st, fmt_progress(t.progress, pr, sizeof pr));
}

/* --wide: every column. */
static void print_wide(const struct ps__seg *seg, const struct sample *a, const struct sample *b)
{
	print_header(seg, b);
	printf("%4s %8s %-6s %4s %5s %8s %8s %8s %8s %6s %6s %8s %8s %17s %6s %6s %8s %6s %9s\n", "node", "pid",
	       "state", "numa", "bound", "pulls/s", "pushes/s", "kpull/s", "kpush/s", "local%", "sock%",
	       "reloc/s", "retry/s", "arena used/size", "repl%", "sync/s", "age", "step", "progress");
	for (int i = 0; i < b->nodes; i++) {
		const struct node_sample *n = &b->n[i];
		char r[7][16], pid[12], numa[12], bound[12], share[12], sshare[16], au[16], as[16], arena[34];
		char rs[12], age[16];
		if (n->pid <= 0)
			snprintf(pid, sizeof pid, "-"); /* never attached */
		else
			snprintf(pid, sizeof pid, "%d", (int)n->pid);
		if (n->numa_node < 0)
			snprintf(numa, sizeof numa, "-");
		else
			snprintf(numa, sizeof numa, "%d", n->numa_node);
		if (n->arena_numa < 0)
			snprintf(bound, sizeof bound, "-");
		else
			snprintf(bound, sizeof bound, "%d", n->arena_numa);
		double ls = local_share(a, b, i);
		if (ls < 0)
			snprintf(share, sizeof share, "-");
		else
			snprintf(share, sizeof share, "%.1f", 100 * ls);
		bool exact;
		double ss = socket_share(seg, a, b, i, &exact);
		if (ss < 0)
			snprintf(sshare, sizeof sshare, "-");
		else
			snprintf(sshare, sizeof sshare, "%s%.1f", exact ? "" : "~", 100 * ss);
		snprintf(arena, sizeof arena, "%s/%s", fmt_bytes(n->arena_used, au, sizeof au),
			 fmt_bytes(n->arena_size, as, sizeof as));
		double acc = rate(a, b, i, C_LOCAL) + rate(a, b, i, C_REMOTE);
		if (acc > 0)
			snprintf(rs, sizeof rs, "%.1f", 100 * rate(a, b, i, C_REPL_KEYS) / acc);
		else
			snprintf(rs, sizeof rs, "-");
		if (n->repl_age_ns)
			snprintf(age, sizeof age, "%.0fms", (double)n->repl_age_ns / 1e6);
		else
			snprintf(age, sizeof age, "-");
		char st[12], pr[16];
		printf("%4d %8s %-6s %4s %5s %8s %8s %8s %8s %6s %6s %8s %8s %17s %6s %6s %8s %6s %9s\n", i, pid,
		       n->state, numa, bound, fmt_rate(rate(a, b, i, C_PULLS), r[0], 16),
		       fmt_rate(rate(a, b, i, C_PUSHES), r[1], 16),
		       fmt_rate(rate(a, b, i, C_KPULLED), r[2], 16),
		       fmt_rate(rate(a, b, i, C_KPUSHED), r[3], 16), share, sshare,
		       fmt_rate(rate(a, b, i, C_RELOC), r[4], 16),
		       fmt_rate(rate(a, b, i, C_RETRIES), r[5], 16), arena, rs,
		       fmt_rate(rate(a, b, i, C_REPL_ROUNDS), r[6], 16), age, fmt_step(n, st, sizeof st),
		       fmt_progress(n->progress, pr, sizeof pr));
	}
	struct totals t;
	sum_nodes(a, b, &t);
	char r[7][16], share[12], au[16], as[16], arena[34], st[12], pr[16], alive[16], rs[12];
	double acc = t.rate[C_LOCAL] + t.rate[C_REMOTE];
	snprintf(share, sizeof share, acc > 0 ? "%.1f" : "-", acc > 0 ? 100 * t.rate[C_LOCAL] / acc : 0);
	snprintf(rs, sizeof rs, acc > 0 ? "%.1f" : "-", acc > 0 ? 100 * t.rate[C_REPL_KEYS] / acc : 0);
	snprintf(alive, sizeof alive, "%d/%d", t.alive, b->nodes);
	snprintf(st, sizeof st, "%" PRIu32, t.step == UINT32_MAX ? 0 : t.step);
	snprintf(arena, sizeof arena, "%s/%s", fmt_bytes(t.arena_used, au, sizeof au),
		 fmt_bytes(t.arena_size, as, sizeof as));
	printf("%4s %8s %-6s %4s %5s %8s %8s %8s %8s %6s %6s %8s %8s %17s %6s %6s %8s %6s %9s\n", "all", "", alive,
	       "", "", fmt_rate(t.rate[C_PULLS], r[0], 16), fmt_rate(t.rate[C_PUSHES], r[1], 16),
	       fmt_rate(t.rate[C_KPULLED], r[2], 16), fmt_rate(t.rate[C_KPUSHED], r[3], 16), share, "",
	       fmt_rate(t.rate[C_RELOC], r[4], 16), fmt_rate(t.rate[C_RETRIES], r[5], 16), arena, rs,
	       fmt_rate(t.rate[C_REPL_ROUNDS], r[6], 16), "", st, fmt_progress(t.progress, pr, sizeof pr));
}

/* ------------------------------------------------------------ json */

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

static void print_json_node(const struct ps__seg *seg, const struct sample *a, const struct sample *b, int i)
{
	const struct node_sample *n = &b->n[i];
	printf("{\"node\": %d, \"pid\": %d, \"state\": \"%s\", \"numa_node\": %d, \"arena_numa\": %d, "
	       "\"arena_policy\": \"%s\"",
	       i, (int)n->pid, n->state, n->numa_node, n->arena_numa, n->arena_policy);
	for (int c = 0; c < NCOUNTERS; c++)
		printf(", \"%s\": %" PRIu64 ", \"%s_per_s\": %.3f", counters[c].name, n->c[c],
		       counters[c].name, rate(a, b, i, c));
	double ls = local_share(a, b, i);
	if (ls < 0)
		printf(", \"local_share\": null");
	else
		printf(", \"local_share\": %.4f", ls);
	bool exact;
	double ss = socket_share(seg, a, b, i, &exact);
	if (ss < 0)
		printf(", \"socket_share\": null");
	else
		printf(", \"socket_share\": %.4f, \"socket_share_exact\": %s", ss, exact ? "true" : "false");
	printf(", \"keys_held\": %" PRIu64 ", \"step\": %" PRIu32 ", \"progress\": ", n->keys_held,
	       n->step == UINT32_MAX ? 0 : n->step);
	if (n->progress < 0)
		printf("null");
	else
		printf("%" PRId64, n->progress);
	printf(", \"arena_used\": %" PRIu64 ", \"arena_size\": %" PRIu64 ", \"repl_age_ms\": ", n->arena_used,
	       n->arena_size);
	if (n->repl_age_ns)
		printf("%.3f}", (double)n->repl_age_ns / 1e6);
	else
		printf("null}");
}

static void print_json(const struct ps__seg *seg, const struct sample *a, const struct sample *b)
{
	const struct ps__hdr *h = seg->hdr;
	printf("{\"job\": ");
	json_str(ps__seg_label(seg->name));
	printf(", \"nodes\": %u, \"threads\": %u, \"numa\": \"%s\", \"mem_committed\": %" PRIu64
	       ", \"mem_budget\": %" PRIu64 ", \"interval_s\": %.3f, \"elapsed_s\": %.3f, \"per_node\": [",
	       h->num_nodes, atomic_load_explicit(&h->threads_per_node, memory_order_relaxed), h->numa_mode == 1 ? "none" : "auto",
	       b->mem_committed, h->mem_budget, (double)(b->t_ns - a->t_ns) / 1e9, job_age(seg));
	for (int i = 0; i < b->nodes; i++) {
		if (i)
			printf(", ");
		print_json_node(seg, a, b, i);
	}
	printf("]}\n");
}

/* ------------------------------------------------------------ checkpoint */

static void sleep_for(double sec)
{
	struct timespec ts = { .tv_sec = (time_t)sec,
			       .tv_nsec = (long)((sec - floor(sec)) * 1e9) };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}


/* The program may run in another directory: it gets an absolute path. */
static bool absolute(const char *file, char *out, size_t len)
{
	char cwd[PS__PATH_MAX];
	int n;
	if (file[0] == '/')
		n = snprintf(out, len, "%s", file);
	else if (getcwd(cwd, sizeof cwd))
		n = snprintf(out, len, "%s/%s", cwd, file);
	else
		return false;
	return n > 0 && (size_t)n + 32 < len;
}

static bool requester_gone(const struct ps__ckpt *c)
{
	return !ps__pid_alive(c->req_pid, c->req_start);
}

/* Takes the request slot (CK5 of lib/persist/checkpoint.c); false on timeout. */
static bool claim(struct ps__ckpt *c, const struct ps__seg *seg, uint64_t deadline)
{
	for (;;) {
		/* acquire: a requester's fields are visible with its state */
		uint32_t st = atomic_load_explicit(&c->req_state, memory_order_acquire);
		bool free = st == PS__REQ_IDLE || st == PS__REQ_DONE || st == PS__REQ_FAILED ||
			    ((st == PS__REQ_POSTING || st == PS__REQ_PENDING) && requester_gone(c));
		/* relaxed: POSTING publishes nothing; PENDING will */
		if (free && atomic_compare_exchange_strong_explicit(&c->req_state, &st, PS__REQ_POSTING,
								    memory_order_relaxed, memory_order_relaxed))
			return true;
		if (job_ended(seg) || ps__now_ns() > deadline)
			return false;
		sleep_for(0.01);
	}
}

static int request_checkpoint(const struct opts *o, const struct ps__seg *seg)
{
	struct ps__ckpt *c = &seg->hdr->ckpt;
	char path[PS__PATH_MAX];
	if (!absolute(o->ckpt, path, sizeof path)) {
		fprintf(stderr, "psstat: --checkpoint %s: cannot make the path absolute\n", o->ckpt);
		return 1;
	}
	uint64_t deadline = ps__now_ns() + (uint64_t)(o->timeout * 1e9);
	if (!claim(c, seg, deadline)) {
		fprintf(stderr, "psstat: job %s: %s\n", ps__seg_label(seg->name),
			job_ended(seg) ? "the job ended" : "another checkpoint request is in progress");
		return 1;
	}
	c->req_pid = getpid();
	c->req_start = ps__proc_start_time(getpid());
	c->req_rc = 0;
	c->req_msg[0] = 0;
	snprintf(c->req_path, sizeof c->req_path, "%s", path);
	/* release: the path and our pid before PENDING */
	atomic_store_explicit(&c->req_state, PS__REQ_PENDING, memory_order_release);
	for (;;) {
		/* acquire: pairs with node 0's answer (req_rc, req_msg) */
		uint32_t st = atomic_load_explicit(&c->req_state, memory_order_acquire);
		if (st == PS__REQ_DONE || st == PS__REQ_FAILED) {
			int rc = c->req_rc;
			char msg[PS__MSG_MAX];
			snprintf(msg, sizeof msg, "%s", c->req_msg);
			/* relaxed: the slot is free again, nothing to publish */
			atomic_compare_exchange_strong_explicit(&c->req_state, &st, PS__REQ_IDLE, memory_order_relaxed,
								memory_order_relaxed);
			if (st == PS__REQ_FAILED || rc < 0) {
				fprintf(stderr, "psstat: job %s: checkpoint to %s failed: %s\n", ps__seg_label(seg->name), path,
					msg[0] ? msg : ps_strerror(rc));
				return 1;
			}
			printf("psstat: job %s: checkpoint written to %s\n", ps__seg_label(seg->name), path);
			return 0;
		}
		if (job_ended(seg)) {
			fprintf(stderr, "psstat: job %s ended before writing the checkpoint\n", ps__seg_label(seg->name));
			return 1;
		}
		if (ps__now_ns() > deadline) {
			uint32_t want = PS__REQ_PENDING;
			/* relaxed: withdrawing publishes nothing */
			bool withdrawn = atomic_compare_exchange_strong_explicit(
				&c->req_state, &want, PS__REQ_IDLE, memory_order_relaxed, memory_order_relaxed);
			fprintf(stderr, "psstat: job %s: %s within %g s\n", ps__seg_label(seg->name),
				withdrawn ? "no node took the checkpoint request (the program must call "
					    "ps_checkpoint_poll)"
					  : "the checkpoint was not finished",
				o->timeout);
			return 1;
		}
		sleep_for(0.01);
	}
}

/* ------------------------------------------------------------ main */


static void print_block(const struct opts *o, const struct ps__seg *seg, const struct sample *a,
			const struct sample *b, bool redraw)
{
	if (redraw)
		fputs("\033[H\033[2J", stdout); /* home, clear screen */
	if (o->json)
		print_json(seg, a, b);
	else if (o->wide)
		print_wide(seg, a, b);
	else
		print_table(seg, a, b);
	fflush(stdout);
}

/* Seconds since the job's creator started (its /proc start time, clock
 * ticks since boot, against CLOCK_BOOTTIME). */
static double job_age(const struct ps__seg *seg)
{
	struct timespec ts;
	long hz = sysconf(_SC_CLK_TCK);
	if (clock_gettime(CLOCK_BOOTTIME, &ts) != 0 || hz <= 0)
		return 0;
	double age = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 - (double)seg->hdr->creator_start / (double)hz;
	return age > 0 ? age : 0;
}

/* --final: one block once the job has ended, its counters final (the
 * nodes have left; our mapping outlives the unlink).  Shares and rates
 * are over the whole job: against a zero sample at the job's start. */
static int watch_final(const struct opts *o, const struct ps__seg *seg)
{
	static struct sample start, last;
	while (!job_ended(seg))
		sleep_for(o->interval);
	take(seg, &last);
	start = last;
	memset(start.n, 0, sizeof start.n);
	uint64_t age = (uint64_t)(job_age(seg) * 1e9);
	start.t_ns = last.t_ns > age ? last.t_ns - age : 0;
	print_block(o, seg, &start, &last, false);
	return 0;
}

static int watch(const struct opts *o, const struct ps__seg *seg)
{
	if (o->final)
		return watch_final(o, seg);
	static struct sample s[2];
	/* redraw in place on a terminal; pipes and files get every block */
	bool redraw = !o->json && !o->once && isatty(STDOUT_FILENO);
	int cur = 0;
	take(seg, &s[cur]);
	for (;;) {
		sleep_for(o->interval);
		bool ended = job_ended(seg);
		take(seg, &s[cur ^ 1]);
		/* --once still reports the last interval: the mapping is valid */
		if (ended && !o->once) {
			fprintf(stderr, "psstat: job %s ended\n", ps__seg_label(seg->name));
			return 0;
		}
		print_block(o, seg, &s[cur], &s[cur ^ 1], redraw);
		if (o->once)
			return 0;
		cur ^= 1;
	}
}

/* --list: the running jobs this user can read, newest last: segments in
 * /dev/shm and, for psrun --hugepages jobs, on every hugetlbfs mount. */
struct job_row {
	char name[PS__NAME_MAX];
	double age;
	int pid;
	uint32_t nodes, threads, hosts, host;
};

/* Adds the running jobs of directory dir to *rows; prefix: "" for /dev/shm
 * (segments are named "psmem-x"), "DIR/" for a hugetlbfs mount (named by
 * their path). */
static void list_dir(const char *dir, const char *prefix, struct job_row **rows, int *n, int *cap)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		char name[PS__NAME_MAX];
		if (strncmp(e->d_name, "psmem-", 6) != 0 ||
		    (size_t)snprintf(name, sizeof name, "%s%s", prefix, e->d_name) + 2 > sizeof name)
			continue;
		struct ps__seg seg;
		if (ps__seg_attach(name, true, &seg) != 0)
			continue; /* another user's, or not a job */
		if (!job_ended(&seg)) {
			if (*n == *cap) {
				int c = *cap ? 2 * *cap : 16;
				struct job_row *r = realloc(*rows, (size_t)c * sizeof **rows);
				if (!r) {
					ps__seg_detach(&seg);
					break;
				}
				*rows = r;
				*cap = c;
			}
			struct ps__hdr *h = seg.hdr;
			struct job_row *r = &(*rows)[(*n)++];
			memcpy(r->name, name, strlen(name) + 1); /* length checked above */
			r->age = job_age(&seg);
			r->pid = h->creator_pid;
			r->nodes = h->num_nodes;
			r->threads = atomic_load_explicit(&h->threads_per_node, memory_order_relaxed);
			r->hosts = h->num_hosts > 1 ? h->num_hosts : 1;
			r->host = h->num_hosts > 1 ? h->host_rank : 0;
		}
		ps__seg_detach(&seg);
	}
	closedir(d);
}

static int list_jobs(void)
{
	DIR *shm = opendir("/dev/shm");
	if (!shm) {
		fprintf(stderr, "psstat: /dev/shm: %s\n", strerror(errno));
		return 1;
	}
	closedir(shm);
	struct job_row *rows = NULL;
	int n = 0, cap = 0;
	list_dir("/dev/shm", "", &rows, &n, &cap);
	FILE *m = fopen("/proc/mounts", "r");
	if (m) {
		char line[4096], dir[PS__NAME_MAX], type[64];
		while (fgets(line, sizeof line, m))
			if (sscanf(line, "%*s %255s %63s", dir, type) == 2 && strcmp(type, "hugetlbfs") == 0) {
				char prefix[PS__NAME_MAX];
				if ((size_t)snprintf(prefix, sizeof prefix, "%s/", dir) < sizeof prefix)
					list_dir(dir, prefix, &rows, &n, &cap);
			}
		fclose(m);
	}
	/* oldest first, so the newest (psstat's default JOB) is last */
	for (int i = 1; i < n; i++)
		for (int k = i; k > 0 && rows[k].age > rows[k - 1].age; k--) {
			struct job_row t = rows[k];
			rows[k] = rows[k - 1];
			rows[k - 1] = t;
		}
	if (n == 0) {
		printf("no running psmem job\n");
	} else {
		printf("%-24s %8s %5s %7s %6s %10s\n", "job", "psrun", "nodes", "threads", "host", "up");
		for (int i = 0; i < n; i++) {
			char up[24], host[24];
			snprintf(host, sizeof host, "%u/%u", rows[i].host, rows[i].hosts);
			printf("%-24s %8d %5u %7u %6s %10s\n", rows[i].name, rows[i].pid, rows[i].nodes, rows[i].threads,
			       host, fmt_age(rows[i].age, up, sizeof up));
		}
	}
	free(rows);
	return 0;
}

/*
 * --leave HOST (elastic jobs, docs/DESIGN.md "Joining and leaving"): the
 * request goes to this host's psrun as a queued signal (SIGUSR2 carrying
 * HOST), so psstat writes nothing in the segment and psrun's bridge, which
 * never touches the segment, forwards it to host HOST (a LEAVE frame) when
 * it is another.  The kernel checks that psstat may signal psrun (same
 * user); psrun checks the sender's uid again.
 */
static int request_leave(const struct opts *o, const struct ps__seg *seg)
{
	const struct ps__hdr *h = seg->hdr;
	if (h->num_hosts < 2 || (uint32_t)o->leave >= h->num_hosts) {
		fprintf(stderr, "psstat: --leave %d: job %s has %s\n", o->leave, seg->name,
			h->num_hosts < 2 ? "one host: nobody can leave" : "no such host rank");
		return 1;
	}
	if (!ps__pid_alive(h->creator_pid, h->creator_start)) {
		fprintf(stderr, "psstat: --leave: the psrun of job %s is gone\n", seg->name);
		return 1;
	}
	union sigval v = {.sival_int = o->leave};
	if (sigqueue((pid_t)h->creator_pid, SIGUSR2, v) != 0) {
		fprintf(stderr, "psstat: --leave: cannot reach psrun (pid %d): %s\n", (int)h->creator_pid,
			strerror(errno));
		return 1;
	}
	printf("psstat: asked host %d to leave, through host %u's psrun (pid %d); it leaves at the next "
	       "ps_sync_hosts\n", o->leave, h->host_rank, (int)h->creator_pid);
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	parse_args(argc, argv, &o);
	if (o.list)
		return list_jobs();
	struct ps__seg seg;
	if (attach(&o, &seg, o.ckpt != NULL) != 0)
		return 1;
	int rc = 0;
	if (o.leave >= 0) {
		rc = request_leave(&o, &seg);
	} else if (o.ckpt) {
		rc = request_checkpoint(&o, &seg);
	} else if (o.dump) {
		ps__dump_seg(&seg, stdout);
		fflush(stdout);
	} else {
		rc = watch(&o, &seg);
	}
	ps__seg_detach(&seg);
	return rc;
}
