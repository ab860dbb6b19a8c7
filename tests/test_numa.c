/*
 * test_numa.c - NUMA placement, checked where the kernel really put things:
 * the NUMA node of every page (move_pages), the memory policy of every arena
 * (get_mempolicy), and the CPU affinity of every thread of every node
 * (sched_getaffinity).  Return codes of the placement calls are never
 * trusted.
 *
 * A placement test means something only on a host with several NUMA nodes.
 * `make test-numa` boots QEMU guests with 2 and 4 emulated nodes and runs
 * this binary there (tests/numa/run-guest.sh).  On a one-node host the
 * multi-node tests skip and say why; the tests that are meaningful on one
 * node (--numa none binds nothing, the checker flags an unbound job, the
 * psrun -v mapping) run everywhere.
 *
 * The expected placement is computed here from sysfs, independently of the
 * library: the "sockets" are the NUMA nodes with CPUs and memory, in
 * increasing order, and psmem node i belongs to socket i mod S (DESIGN.md,
 * "NUMA placement").
 *
 * Hostile parent: the driver confines itself to the CPUs and the memory of
 * the last socket before it starts psrun, so a node that psrun forgot to
 * pin or an arena it forgot to bind lands visibly on the wrong node (also
 * for node S-1's peers), instead of on whatever the scheduler picked.
 *
 * Roles.  Run by cmocka it is the driver.  `test_numa --node place ARGS`
 * under psrun is one node of a placement job (without psrun: a private
 * one-node job); it checks everything it can see and prints one "place:
 * node ..." line of counts, which the driver parses.  Exit: 0 all as
 * expected, 1 a mismatch (printed), 2 setup failed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <numaif.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"
#include "psmem_int.h"

#define MAXSOCK 64
#define PAGE 4096UL
#define LOC_KEYS 32          /* keys each node localizes from its neighbour */
#define KEYS_PER_NODE 512    /* x 1088-byte slots: ~136 pages per node */
#define VLEN 256

/* ------------------------------------------------------------ topology */

static int read_text(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, len - 1, f);
	fclose(f);
	buf[n] = 0;
	return 0;
}

/* "0-3,8,10-11" -> those bits of set (ids below CPU_SETSIZE) */
static void parse_list(const char *s, cpu_set_t *set)
{
	CPU_ZERO(set);
	while (*s >= '0' && *s <= '9') {
		char *end;
		long a = strtol(s, &end, 10), b = a;
		if (*end == '-')
			b = strtol(end + 1, &end, 10);
		for (long i = a; i <= b && i < CPU_SETSIZE; i++)
			CPU_SET((int)i, set);
		s = *end == ',' ? end + 1 : end;
	}
}

static bool sysfs_list(const char *path, cpu_set_t *set)
{
	char buf[4096];
	if (read_text(path, buf, sizeof buf) != 0)
		return false;
	parse_list(buf, set);
	return true;
}

/* CPUs of NUMA node n, from sysfs. */
static void node_cpus(int n, cpu_set_t *set)
{
	char path[96];
	snprintf(path, sizeof path, "/sys/devices/system/node/node%d/cpulist", n);
	if (!sysfs_list(path, set))
		CPU_ZERO(set);
}

static void node_cpulist(int n, char *buf, size_t len)
{
	char path[96];
	snprintf(path, sizeof path, "/sys/devices/system/node/node%d/cpulist", n);
	if (read_text(path, buf, len) != 0)
		buf[0] = 0;
	buf[strcspn(buf, "\n")] = 0;
}

/* The sockets: NUMA nodes with CPUs and memory, ascending.  Returns S. */
static int sockets(int sock[MAXSOCK])
{
	cpu_set_t cpu, mem;
	if (!sysfs_list("/sys/devices/system/node/has_cpu", &cpu) ||
	    !sysfs_list("/sys/devices/system/node/has_memory", &mem)) {
		sock[0] = 0; /* no NUMA in sysfs: one node */
		return 1;
	}
	int S = 0;
	for (int n = 0; n < CPU_SETSIZE && S < MAXSOCK; n++)
		if (CPU_ISSET(n, &cpu) && CPU_ISSET(n, &mem))
			sock[S++] = n;
	if (S == 0)
		sock[S++] = 0;
	return S;
}

static void fmt_set(const cpu_set_t *s, char *buf, size_t len)
{
	size_t o = 0;
	buf[0] = 0;
	for (int c = 0; c < CPU_SETSIZE && o + 8 < len; c++)
		if (CPU_ISSET(c, s))
			o += (size_t)snprintf(buf + o, len - o, "%s%d", o ? "," : "", c);
}

/* ------------------------------------------------------------ node side */

struct place {
	ps_world *w;
	ps_table *t;
	int me, N, S;
	int sock[MAXSOCK];
	bool bound;              /* expect auto (bound, pinned) or none */
	int socket;              /* bound: every node's socket; -1: i mod S */
	int inherit;             /* none: the node the driver confined us to */
	cpu_set_t want;          /* expected affinity of every thread */
	/* counts: bad ones are printed as they are found */
	_Atomic long cpu_ok, cpu_bad;
	long pages_ok, pages_bad, policy_ok, policy_bad, peer_ok, peer_bad;
	long loc_ok, loc_bad, psstat_ok, psstat_bad;
	int shown;
};

__attribute__((format(printf, 2, 3)))
static void mismatch(struct place *p, const char *fmt, ...)
{
	if (p->shown++ >= 12)
		return;
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "place: node %d: MISMATCH: ", p->me);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* NUMA node psmem node j's memory must be on (auto: its socket); in none
 * mode pages follow the first toucher's inherited policy. */
static int want_node(const struct place *p, int j)
{
	if (!p->bound)
		return p->inherit;
	return p->socket >= 0 ? p->socket : p->sock[j % p->S];
}

static void check_affinity(struct place *p, pid_t tid, const char *who)
{
	cpu_set_t s;
	char a[256], b[256];
	if (sched_getaffinity(tid, sizeof s, &s) != 0) {
		mismatch(p, "%s: sched_getaffinity: %s", who, strerror(errno));
		atomic_fetch_add(&p->cpu_bad, 1);
		return;
	}
	if (CPU_EQUAL(&s, &p->want)) {
		atomic_fetch_add(&p->cpu_ok, 1);
		return;
	}
	fmt_set(&s, a, sizeof a);
	fmt_set(&p->want, b, sizeof b);
	mismatch(p, "%s (tid %d) may run on CPUs {%s}, expected {%s}", who, (int)tid, a, b);
	atomic_fetch_add(&p->cpu_bad, 1);
}

/* Every thread of this process: main, service thread, workers. */
static void check_all_threads(struct place *p)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			check_affinity(p, (pid_t)atoi(e->d_name), "thread");
	if (d)
		closedir(d);
}

/* Where the pages of [a, a + len) are, by move_pages in query mode; pages
 * are read first (move_pages reports pages this process has not touched
 * as absent).  Adds to *ok or *bad per page. */
static void check_pages(struct place *p, const char *what, const char *a, size_t len, int want, long *ok,
			long *bad)
{
	if (len == 0)
		return;
	uintptr_t first = (uintptr_t)a & ~(PAGE - 1), last = ((uintptr_t)a + len - 1) & ~(PAGE - 1);
	size_t n = (last - first) / PAGE + 1;
	void **pages = malloc(n * sizeof *pages);
	int *status = malloc(n * sizeof *status);
	for (size_t i = 0; i < n; i++) {
		pages[i] = (void *)(first + i * PAGE);
		/* relaxed: only to fault the page in; the service thread may be
		 * writing freed slots on it (atomics, so no race for TSan) */
		(void)atomic_load_explicit((_Atomic char *)pages[i], memory_order_relaxed);
	}
	if (move_pages(0, n, pages, NULL, status, 0) != 0) {
		mismatch(p, "%s: move_pages: %s", what, strerror(errno));
		*bad += (long)n;
	} else {
		for (size_t i = 0; i < n; i++) {
			if (status[i] == want) {
				(*ok)++;
				continue;
			}
			(*bad)++;
			mismatch(p, "%s: page %zu of %zu on NUMA node %d, expected %d", what, i, n, status[i], want);
		}
	}
	free(pages);
	free(status);
}

/* Policy of the page at addr: its mode (-1 on error) and node set (node
 * ids kept in a cpu_set_t, a plain bit set here). */
static int policy_at(const void *addr, cpu_set_t *nodes)
{
	unsigned long mask[16] = {0};
	int mode = -1;
	CPU_ZERO(nodes);
	if (get_mempolicy(&mode, mask, sizeof mask * 8, (void *)addr, MPOL_F_ADDR) != 0)
		return -1;
	for (int i = 0; i < (int)(sizeof mask * 8) && i < CPU_SETSIZE; i++)
		if (mask[i / 64] >> (i % 64) & 1)
			CPU_SET(i, nodes);
	return mode;
}

/* The policy at addr is want_mode over exactly the nodes want[0..n-1]. */
static void expect_policy(struct place *p, const char *what, const void *addr, int want_mode, const int *want,
			  int n)
{
	cpu_set_t got, exp;
	CPU_ZERO(&exp);
	for (int i = 0; i < n; i++)
		CPU_SET(want[i], &exp);
	int mode = policy_at(addr, &got);
	if (mode == want_mode && CPU_EQUAL(&got, &exp)) {
		p->policy_ok++;
		return;
	}
	char a[256], b[256];
	fmt_set(&got, a, sizeof a);
	fmt_set(&exp, b, sizeof b);
	p->policy_bad++;
	mismatch(p, "%s: memory policy mode %d over nodes {%s}, expected mode %d over {%s}", what, mode, a, want_mode,
		 b);
}

/* Arena policies and the shared region's, and the node recorded in the
 * segment for every psmem node. */
static void check_policies(struct place *p)
{
	const struct ps__seg *s = &p->w->seg;
	char what[64];
	for (int j = 0; j < p->N; j++) {
		const struct ps__node *n = ps__node_at(s, j);
		const char *a = s->base + n->arena_off;
		const size_t mid = (n->arena_size / 2) & ~(PAGE - 1);
		snprintf(what, sizeof what, "arena of node %d", j);
		int mode = p->bound ? MPOL_BIND : MPOL_DEFAULT, node = want_node(p, j), nn = p->bound ? 1 : 0;
		expect_policy(p, what, a, mode, &node, nn);
		expect_policy(p, what, a + mid, mode, &node, nn);
		expect_policy(p, what, a + n->arena_size - PAGE, mode, &node, nn);
		int rec = p->bound ? want_node(p, j) : -1;
		if (n->numa_node == rec) {
			p->policy_ok++;
		} else {
			p->policy_bad++;
			mismatch(p, "segment records NUMA node %d for node %d, expected %d", n->numa_node, j, rec);
		}
	}
	/* location tables: interleaved over the sockets */
	expect_policy(p, "location tables", s->base + s->hdr->shared_off, p->bound ? MPOL_INTERLEAVE : MPOL_DEFAULT,
		      p->sock, p->bound ? p->S : 0);
}

/* Pages of every node's pool of our table (initial slots and slots moved
 * in by localize) are on that node's NUMA node. */
static void check_pools(struct place *p)
{
	const struct ps__seg *s = &p->w->seg;
	char what[64];
	for (int j = 0; j < p->N; j++) {
		const struct ps__pool *pl = ps__pool_at(s, ps_table_id(p->t), j);
		snprintf(what, sizeof what, "pool of node %d", j);
		check_pages(p, what, s->base + pl->base_off, pl->bump * p->t->slot_size, want_node(p, j), &p->pages_ok,
			    &p->pages_bad);
	}
}

/* A page of each peer's arena that nobody has touched yet, touched first
 * by this process (pinned to another socket): the arena's binding, not the
 * toucher's, must decide where it lands. */
static void check_peer_pages(struct place *p)
{
	const struct ps__seg *s = &p->w->seg;
	char what[64];
	for (int j = 0; j < p->N; j++) {
		if (j == p->me)
			continue;
		const struct ps__node *n = ps__node_at(s, j);
		const char *pg = s->base + n->arena_off + n->arena_size - (size_t)(p->me + 1) * PAGE;
		snprintf(what, sizeof what, "untouched page of node %d's arena", j);
		/* none: the page follows this process's own (inherited) policy */
		check_pages(p, what, pg, 1, p->bound ? want_node(p, j) : p->inherit, &p->peer_ok, &p->peer_bad);
	}
}

/* Localizes keys of the next node's range here; their values must not
 * change, ps_owner must name us, and their new slots must lie in our arena
 * on our NUMA node. */
static void do_localize(struct place *p, ps_key keys[LOC_KEYS])
{
	int j = (p->me + 1) % p->N;
	uint64_t K = ps_table_num_keys(p->t);
	uint64_t k0 = ((uint64_t)j * K + (uint64_t)p->N - 1) / (uint64_t)p->N;
	float *before = malloc(sizeof(float) * LOC_KEYS * VLEN), *after = malloc(sizeof(float) * LOC_KEYS * VLEN);
	for (int i = 0; i < LOC_KEYS; i++)
		keys[i] = k0 + (uint64_t)i;
	int rc = ps_pull_sync(p->t, keys, LOC_KEYS, before);
	if (rc == 0)
		rc = ps_localize_sync(p->t, keys, LOC_KEYS);
	if (rc == 0)
		rc = ps_pull_sync(p->t, keys, LOC_KEYS, after);
	if (rc != 0) {
		mismatch(p, "localize: %s", ps_strerror(rc));
		p->loc_bad++;
	} else if (memcmp(before, after, sizeof(float) * LOC_KEYS * VLEN) != 0) {
		mismatch(p, "localize changed values");
		p->loc_bad++;
	}
	free(before);
	free(after);
}

static void check_localized(struct place *p, const ps_key keys[LOC_KEYS])
{
	const struct ps__seg *s = &p->w->seg;
	const struct ps__node *mine = ps__node_at(s, p->me);
	for (int i = 0; i < LOC_KEYS; i++) {
		uint64_t off = PS__LOC_OFF(atomic_load(&p->t->loc[keys[i]]));
		int owner = ps_owner(p->t, keys[i]);
		if (owner != p->me || off < mine->arena_off || off >= mine->arena_off + mine->arena_size) {
			mismatch(p, "key %" PRIu64 " owned by %d at offset %" PRIu64 " after localize", keys[i], owner, off);
			p->loc_bad++;
			continue;
		}
		long ok = 0, bad = 0;
		check_pages(p, "localized slot", s->base + off, p->t->slot_size, want_node(p, p->me), &ok, &bad);
		if (bad)
			p->loc_bad++;
		else
			p->loc_ok++;
	}
}

/* psstat, run against this job, shows the arena node the kernel reports. */
static void check_psstat(struct place *p)
{
	char cmd[1200], out[65536];
	snprintf(cmd, sizeof cmd, "%s --once --json --interval 0.05 %s", build_path("bin/psstat"),
		 ps_segment_name(p->w));
	FILE *f = popen(cmd, "r");
	size_t n = f ? fread(out, 1, sizeof out - 1, f) : 0;
	int st = f ? pclose(f) : -1;
	out[n] = 0;
	if (st != 0) {
		mismatch(p, "psstat failed (%d): %s", st, out);
		p->psstat_bad++;
		return;
	}
	for (int j = 0; j < p->N; j++) {
		char key[32];
		snprintf(key, sizeof key, "{\"node\": %d,", j);
		const char *o = strstr(out, key), *a = o ? strstr(o, "\"arena_numa\": ") : NULL;
		int got = a ? atoi(a + 14) : -2;
		if (got == (p->bound ? want_node(p, j) : -1)) {
			p->psstat_ok++;
		} else {
			p->psstat_bad++;
			mismatch(p, "psstat shows arena_numa %d for node %d", got, j);
		}
	}
}

static void print_counts(struct place *p)
{
	printf("place: node %d numa %d: cpu_ok %ld cpu_bad %ld pages_ok %ld pages_bad %ld policy_ok %ld "
	       "policy_bad %ld peer_ok %ld peer_bad %ld loc_ok %ld loc_bad %ld psstat_ok %ld psstat_bad %ld\n",
	       p->me, want_node(p, p->me), atomic_load(&p->cpu_ok), atomic_load(&p->cpu_bad), p->pages_ok,
	       p->pages_bad, p->policy_ok, p->policy_bad, p->peer_ok, p->peer_bad, p->loc_ok, p->loc_bad,
	       p->psstat_ok, p->psstat_bad);
	fflush(stdout);
}

static void place_worker(ps_world *w, int tid, void *arg)
{
	struct place *p = arg;
	ps_key keys[LOC_KEYS];
	check_affinity(p, 0, "worker");
	int cpu = sched_getcpu();
	if (cpu < 0 || !CPU_ISSET(cpu, &p->want)) {
		mismatch(p, "worker %d runs on CPU %d", tid, cpu);
		atomic_fetch_add(&p->cpu_bad, 1);
	}
	ps_barrier(w); /* every worker of every node exists now */
	if (tid == 0) {
		check_all_threads(p);
		if (p->N > 1)
			do_localize(p, keys);
	}
	ps_barrier(w); /* every node's moves are done */
	if (tid == 0) {
		check_policies(p);
		check_pools(p);
		check_peer_pages(p);
		if (p->N > 1)
			check_localized(p, keys);
		if (p->me == 0 && getenv("PSMEM_SEGMENT"))
			check_psstat(p); /* a private job's segment has no name */
		print_counts(p);
	}
	/* no node leaves (and, failing, gets its peers stopped by psrun)
	 * before every node has checked and printed */
	ps_barrier(w);
}

static int place_main(int argc, char **argv)
{
	static struct place p;
	p.inherit = p.socket = -1;
	bool allcpus = false;
	for (int i = 0; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "expect"))
			p.bound = strcmp(argv[i + 1], "auto") == 0;
		else if (!strcmp(argv[i], "inherit"))
			p.inherit = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "socket"))
			p.socket = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "allcpus"))
			allcpus = true;
	}
	p.S = sockets(p.sock);
	int err;
	p.w = ps_init(&err);
	if (!p.w) {
		fprintf(stderr, "place: ps_init: %s\n", ps_strerror(err));
		return 2;
	}
	p.me = ps_node_id(p.w);
	p.N = ps_num_nodes(p.w);
	if (allcpus)
		sysfs_list("/sys/devices/system/cpu/online", &p.want);
	else
		node_cpus(p.bound ? want_node(&p, p.me) : p.inherit, &p.want);
	ps_table_opts o;
	ps_table_opts_init(&o, (uint64_t)KEYS_PER_NODE * (uint64_t)p.N, VLEN);
	o.init = PS_INIT_UNIFORM;
	o.init_a = 1;
	o.seed = 7;
	p.t = ps_table_create(p.w, &o, &err);
	if (!p.t) {
		fprintf(stderr, "place: table: %s\n", ps_strerror(err));
		return 2;
	}
	int rc = ps_run_workers(p.w, place_worker, &p);
	if (rc != 0) {
		fprintf(stderr, "place: workers: %s\n", ps_strerror(rc));
		return 2;
	}
	long bad = atomic_load(&p.cpu_bad) + p.pages_bad + p.policy_bad + p.peer_bad + p.loc_bad + p.psstat_bad;
	ps_finalize(p.w);
	return bad ? 1 : 0;
}

/* A job whose counters are known: node i pulls the COUNT_KEYS keys of its
 * own range, then those of node i+1, then waits for the file named by
 * "done" (the driver's signal that psstat watches) and leaves. */
#define COUNT_KEYS 64

static int count_main(int argc, char **argv)
{
	const char *done = argc >= 2 && !strcmp(argv[0], "done") ? argv[1] : NULL;
	int err;
	ps_world *w = ps_init(&err);
	if (!w || !done) {
		fprintf(stderr, "count: %s\n", w ? "no done file" : ps_strerror(err));
		return 2;
	}
	int me = ps_node_id(w), N = ps_num_nodes(w);
	ps_table_opts o;
	ps_table_opts_init(&o, (uint64_t)COUNT_KEYS * (uint64_t)N, 4);
	ps_table *t = ps_table_create(w, &o, &err);
	ps_key keys[COUNT_KEYS];
	float v[COUNT_KEYS * 4];
	int rc = t ? 0 : err;
	for (int pass = 0; pass < (N > 1 ? 2 : 1) && rc == 0; pass++) {
		uint64_t base = (uint64_t)((me + pass) % N) * COUNT_KEYS;
		for (int i = 0; i < COUNT_KEYS; i++)
			keys[i] = base + (uint64_t)i;
		rc = ps_pull_sync(t, keys, COUNT_KEYS, v);
	}
	for (int i = 0; i < 3000 && access(done, F_OK) != 0; i++)
		usleep(10000);
	ps_finalize(w);
	if (rc)
		fprintf(stderr, "count: %s\n", ps_strerror(rc));
	return rc ? 1 : 0;
}

/* ---------------------------------------------------------- driver side */

static char self[1024];
static int S;
static int sock[MAXSOCK];

/* Skips a test that needs several NUMA nodes, saying why. */
#define NEED_SOCKETS()                                                                                     \
	do {                                                                                               \
		if (S < 2) {                                                                               \
			print_message("SKIP %s: this host has %d NUMA node with CPUs and memory; the test "   \
				      "runs in QEMU guests with 2 and 4 emulated nodes (make test-numa)\n", \
				      __func__, S);                                                        \
			skip();                                                                            \
		}                                                                                          \
	} while (0)

struct counts {
	int node, numa;
	long cpu_ok, cpu_bad, pages_ok, pages_bad, policy_ok, policy_bad, peer_ok, peer_bad;
	long loc_ok, loc_bad, psstat_ok, psstat_bad;
};

/* Parses the "place: node" lines; returns how many were found (by node id). */
static int parse_counts(const char *out, struct counts *c, int n)
{
	int found = 0;
	for (const char *l = strstr(out, "place: node "); l; l = strstr(l + 1, "place: node ")) {
		struct counts x;
		if (sscanf(l, "place: node %d numa %d: cpu_ok %ld cpu_bad %ld pages_ok %ld pages_bad %ld policy_ok %ld "
			      "policy_bad %ld peer_ok %ld peer_bad %ld loc_ok %ld loc_bad %ld psstat_ok %ld psstat_bad %ld",
			   &x.node, &x.numa, &x.cpu_ok, &x.cpu_bad, &x.pages_ok, &x.pages_bad, &x.policy_ok, &x.policy_bad,
			   &x.peer_ok, &x.peer_bad, &x.loc_ok, &x.loc_bad, &x.psstat_ok, &x.psstat_bad) == 14 &&
		    x.node >= 0 && x.node < n) {
			c[x.node] = x;
			found++;
		}
	}
	return found;
}

/* Confines this process (and so psrun and its nodes) to the last socket's
 * CPUs and memory; see "Hostile parent" above. */
static void confine_to_last_socket(cpu_set_t *saved)
{
	cpu_set_t s;
	node_cpus(sock[S - 1], &s);
	assert_int_equal(sched_getaffinity(0, sizeof *saved, saved), 0);
	assert_int_equal(sched_setaffinity(0, sizeof s, &s), 0);
	unsigned long mask[16] = {0};
	mask[sock[S - 1] / 64] |= 1UL << (sock[S - 1] % 64);
	assert_int_equal(set_mempolicy(MPOL_BIND, mask, sizeof mask * 8), 0);
}

static void unconfine(const cpu_set_t *saved)
{
	sched_setaffinity(0, sizeof *saved, saved);
	set_mempolicy(MPOL_DEFAULT, NULL, 0);
}

/* Runs a placement job: psrun -n N -t T --numa NUMA test_numa --node place
 * expect EXPECT inherit <last socket>, from a parent confined to the last
 * socket.  Fills c[0..N-1]; returns the job's status. */
static int place_job(int N, int T, const char *numa, const char *expect, struct counts *c, struct run_result *r)
{
	char n[16], t[16], inh[16];
	snprintf(n, sizeof n, "%d", N);
	snprintf(t, sizeof t, "%d", T);
	snprintf(inh, sizeof inh, "%d", sock[S - 1]);
	const char *argv[] = {build_path("bin/psrun"), "-n", n, "-t", t, "--numa", numa, self, "--node", "place",
			      "expect", expect, "inherit", inh, NULL};
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	cpu_set_t saved;
	confine_to_last_socket(&saved);
	run_prog((char *const *)argv, NULL, 100, -1, 0, r);
	unconfine(&saved);
	memset(c, 0, sizeof *c * (size_t)N);
	int found = parse_counts(r->out, c, N);
	printf("psrun -n %d -t %d --numa %s (expect %s), %d socket(s): status %d in %.1f s\n%s", N, T, numa, expect, S,
	       r->status, r->seconds, r->out);
	if (found != N || (r->status != 0 && strcmp(expect, numa) == 0))
		fprintf(stderr, "%s", r->err);
	assert_int_equal(found, N);
	for (int i = 0; i < 50 && seg_leaked_since(&segs) > 0; i++)
		usleep(20000);
	assert_int_equal(seg_leaked_since(&segs), 0);
	assert_int_equal(count_procs(self), 0);
	return r->status;
}

/* Everything as placed: each node's socket is i mod S, and every count of
 * a check is positive with no mismatch. */
static void assert_placed(const struct counts *c, int N, int T)
{
	for (int i = 0; i < N; i++) {
		assert_int_equal(c[i].numa, sock[i % S]);
		/* T workers + every thread listed in /proc (main, service, workers) */
		assert_true(c[i].cpu_ok >= 2L * T + 2);
		assert_true(c[i].pages_ok >= KEYS_PER_NODE * 1088L / (long)PAGE);
		assert_int_equal(c[i].policy_ok, 4L * N + 1);
		assert_int_equal(c[i].peer_ok, N - 1);
		assert_int_equal(c[i].loc_ok, N > 1 ? LOC_KEYS : 0);
		assert_int_equal(c[i].psstat_ok, i == 0 ? N : 0);
		assert_int_equal(c[i].cpu_bad + c[i].pages_bad + c[i].policy_bad + c[i].peer_bad + c[i].loc_bad +
					 c[i].psstat_bad,
				 0);
	}
}

static void test_place_one_node_per_socket_pages_policies_threads(void **state)
{
	(void)state;
	NEED_SOCKETS();
	struct counts c[MAXSOCK];
	struct run_result r;
	assert_int_equal(place_job(S, 2, "auto", "auto", c, &r), 0);
	assert_placed(c, S, 2);
}

/* More psmem nodes than sockets: node i on socket i mod S, so sockets are
 * shared round-robin (DESIGN.md). */
static void test_place_more_nodes_than_sockets_share_round_robin(void **state)
{
	(void)state;
	NEED_SOCKETS();
	struct counts c[MAXSOCK + 2];
	struct run_result r;
	assert_int_equal(place_job(S + 2, 1, "auto", "auto", c, &r), 0);
	assert_placed(c, S + 2, 1);
	assert_int_equal(c[S].numa, c[0].numa);
	assert_int_equal(c[S + 1].numa, c[1].numa);
}

/* --numa none: no arena policy, no pinning: every thread keeps the
 * parent's CPUs and every page follows the parent's memory policy. */
static void test_place_numa_none_binds_and_pins_nothing(void **state)
{
	(void)state;
	struct counts c[2];
	struct run_result r;
	assert_int_equal(place_job(2, 2, "none", "none", c, &r), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(c[i].numa, sock[S - 1]);
		assert_true(c[i].cpu_ok >= 6);
		assert_true(c[i].pages_ok > 0);
		assert_int_equal(c[i].policy_ok, 9);
		assert_int_equal(c[i].cpu_bad + c[i].pages_bad + c[i].policy_bad + c[i].peer_bad + c[i].loc_bad +
					 c[i].psstat_bad,
				 0);
	}
}

/* Negative control: an unbound, unpinned job (--numa none) checked as if it
 * were placed must fail, with the mismatches named, so the zeros above
 * mean something.  On one node only the missing arena policy shows. */
static void test_place_checker_catches_an_unbound_job(void **state)
{
	(void)state;
	int N = S > 1 ? S : 2;
	struct counts c[MAXSOCK];
	struct run_result r;
	assert_int_equal(place_job(N, 1, "none", "auto", c, &r), 1);
	assert_non_null(strstr(r.err, "MISMATCH"));
	for (int i = 0; i < N; i++)
		assert_true(c[i].policy_bad >= 3);
	if (S > 1) {
		/* node 0 belongs on the first socket, its job ran on the last */
		assert_true(c[0].cpu_bad > 0);
		assert_true(c[0].pages_bad > 0);
		long peer_bad = 0;
		for (int i = 0; i < N; i++)
			peer_bad += c[i].peer_bad;
		assert_true(peer_bad > 0);
		assert_non_null(strstr(r.err, "place: node 0: MISMATCH"));
	}
}

/* A job without psrun (ps_init's private job) with T workers: test_numa
 * --node place ARGS run directly, from a parent confined to the last
 * socket's memory, and to its CPUs too if confine_cpus. */
static void embedded_job(bool confine_cpus, const char *const args[], struct counts *c)
{
	const char *argv[16] = {self, "--node", "place"};
	int a = 3;
	for (int i = 0; args[i]; i++)
		argv[a++] = args[i];
	argv[a] = NULL;
	char *env[] = {"PSMEM_THREADS=2", NULL};
	cpu_set_t saved;
	confine_to_last_socket(&saved);
	if (!confine_cpus) {
		cpu_set_t all;
		assert_true(sysfs_list("/sys/devices/system/cpu/online", &all));
		assert_int_equal(sched_setaffinity(0, sizeof all, &all), 0);
	}
	struct run_result r;
	run_prog((char *const *)argv, env, 60, -1, 0, &r);
	unconfine(&saved);
	printf("embedded job, CPUs %s: status %d\n%s", confine_cpus ? "of the last socket" : "all", r.status, r.out);
	if (r.status != 0)
		fprintf(stderr, "%s", r.err);
	assert_int_equal(r.status, 0);
	assert_int_equal(parse_counts(r.out, c, 1), 1);
	assert_int_equal(c->cpu_bad + c->pages_bad + c->policy_bad + c->peer_bad + c->loc_bad + c->psstat_bad, 0);
	assert_true(c->cpu_ok >= 2 * 2 + 2);
	assert_true(c->pages_ok >= KEYS_PER_NODE * 1088L / (long)PAGE);
	assert_int_equal(c->policy_ok, 5);
}

/* Without psrun, a process placed on one socket (numactl -N, taskset) gets
 * its arena bound and its workers pinned there, not on socket 0. */
static void test_place_job_without_psrun_binds_to_the_socket_it_is_confined_to(void **state)
{
	(void)state;
	NEED_SOCKETS();
	char last[16];
	snprintf(last, sizeof last, "%d", sock[S - 1]);
	const char *args[] = {"expect", "auto", "socket", last, NULL};
	struct counts c;
	embedded_job(true, args, &c);
	assert_int_equal(c.numa, sock[S - 1]);
}

/* Without psrun, a process free to run on every socket is not confined to
 * one by the library: no arena policy, workers keep every CPU. */
static void test_place_job_without_psrun_spanning_sockets_binds_nothing(void **state)
{
	(void)state;
	NEED_SOCKETS();
	char last[16];
	snprintf(last, sizeof last, "%d", sock[S - 1]);
	const char *args[] = {"expect", "none", "inherit", last, "allcpus", "1", NULL};
	struct counts c;
	embedded_job(false, args, &c);
}

/* psrun -v prints node -> NUMA node -> CPUs, as sysfs lists them, and
 * which node a socket is shared with. */
static void test_place_psrun_v_prints_node_socket_cpus(void **state)
{
	(void)state;
	int N = S + 1;
	char n[16], want[256], cpus[128];
	snprintf(n, sizeof n, "%d", N);
	const char *argv[] = {build_path("bin/psrun"), "-v", "-n", n, "true", NULL};
	struct run_result r;
	run_prog((char *const *)argv, NULL, 20, -1, 0, &r);
	printf("%s", r.err);
	assert_int_equal(r.status, 0);
	for (int i = 0; i < N; i++) {
		node_cpulist(sock[i % S], cpus, sizeof cpus);
		/* the first node on a socket owns it; later ones say with whom
		 * they share it */
		int len = snprintf(want, sizeof want, "psrun: node %d -> NUMA node %d -> CPUs %s", i, sock[i % S], cpus);
		if (i >= S)
			snprintf(want + len, sizeof want - (size_t)len, " (shared with node %d)", i % S);
		else
			snprintf(want + len, sizeof want - (size_t)len, "\n");
		if (!strstr(r.err, want))
			fail_msg("expected \"%s\" in:\n%s", want, r.err);
	}
	const char *argn[] = {build_path("bin/psrun"), "-v", "--numa", "none", "-n", "2", "true", NULL};
	run_prog((char *const *)argn, NULL, 20, -1, 0, &r);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.err, "psrun: node 1 -> no NUMA node (--numa none) -> any CPU"));
}

/* Starts argv with its stderr on a pipe; returns the pid, *fd the pipe. */
static pid_t spawn_stderr(char *const argv[], int *fd)
{
	int p[2];
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		setpgid(0, 0);
		dup2(p[1], 2);
		close(p[0]);
		close(p[1]);
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		execv(argv[0], argv);
		_exit(127);
	}
	close(p[1]);
	*fd = p[0];
	return pid;
}

/* Reads fd until "psrun: job NAME:" and copies NAME out. */
static bool read_job_name(int fd, char *name, size_t len)
{
	char buf[4096];
	size_t n = 0;
	ssize_t r;
	while (n < sizeof buf - 1 && (r = read(fd, buf + n, 1)) == 1) {
		buf[++n] = 0;
		const char *j = strstr(buf, "psrun: job ");
		const char *colon = j ? strchr(j + 11, ':') : NULL;
		if (colon) {
			snprintf(name, len, "%.*s", (int)(colon - j - 11), j + 11);
			return true;
		}
	}
	return false;
}

/* True once process pid maps the segment name (psstat has attached). */
static bool maps_segment(pid_t pid, const char *name)
{
	char path[64], line[512];
	snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
	FILE *f = fopen(path, "r");
	bool found = false;
	while (f && !found && fgets(line, sizeof line, f))
		found = strstr(line, name) != NULL;
	if (f)
		fclose(f);
	return found;
}

/* A number after "KEY": in the JSON object of node `node`, or -1. */
static double node_field(const char *json, int node, const char *key)
{
	char k[64];
	snprintf(k, sizeof k, "{\"node\": %d,", node);
	const char *o = strstr(json, k);
	snprintf(k, sizeof k, "\"%s\": ", key);
	const char *v = o ? strstr(o, k) : NULL;
	return v ? strtod(v + strlen(k), NULL) : -1;
}

/* psstat --final prints a job's last counters once it ends, and its
 * own-socket share: 2 nodes pull 64 own and 64 of the other's keys each.
 * One socket: every key is served on the node's socket (100 %); one node
 * per socket: only the own half (50 %).  Both exact.  psstat attaches first
 * (its /proc maps show the segment), then the job is told to end. */
static void test_place_psstat_final_counts_and_socket_share(void **state)
{
	(void)state;
	char done[] = "/tmp/psmem-numa-done-XXXXXX";
	int dfd = mkstemp(done);
	assert_true(dfd >= 0);
	close(dfd);
	unlink(done);
	const char *argv[] = {build_path("bin/psrun"), "-v", "-n", "2", self, "--node", "count", "done", done, NULL};
	int efd;
	pid_t job = spawn_stderr((char *const *)argv, &efd);
	char name[PS__NAME_MAX] = "";
	bool named = read_job_name(efd, name, sizeof name);
	pid_t st = -1;
	int sfd = -1;
	if (named) {
		int p[2];
		assert_int_equal(pipe(p), 0);
		st = fork();
		if (st == 0) {
			dup2(p[1], 1);
			close(p[0]);
			close(p[1]);
			execl(build_path("bin/psstat"), "psstat", "--final", "--json", "--interval", "0.05", name, (char *)NULL);
			_exit(127);
		}
		close(p[1]);
		sfd = p[0];
		for (int i = 0; i < 3000 && !maps_segment(st, name); i++)
			usleep(10000);
	}
	FILE *f = fopen(done, "w"); /* the job may end now */
	if (f)
		fclose(f);
	char out[65536];
	size_t n = 0;
	ssize_t r;
	while (sfd >= 0 && n < sizeof out - 1 && (r = read(sfd, out + n, sizeof out - 1 - n)) > 0)
		n += (size_t)r;
	out[n] = 0;
	int jst = -1, sst = -1;
	waitpid(job, &jst, 0);
	if (st > 0)
		waitpid(st, &sst, 0);
	close(efd);
	if (sfd >= 0)
		close(sfd);
	unlink(done);
	printf("%s\n", out);
	assert_true(named);
	assert_true(WIFEXITED(jst) && WEXITSTATUS(jst) == 0);
	assert_true(WIFEXITED(sst) && WEXITSTATUS(sst) == 0);
	double share = S > 1 ? 0.5 : 1.0;
	for (int i = 0; i < 2; i++) {
		assert_int_equal((long)node_field(out, i, "pulls"), 2);
		assert_int_equal((long)node_field(out, i, "local_keys"), COUNT_KEYS);
		assert_int_equal((long)node_field(out, i, "remote_keys"), COUNT_KEYS);
		assert_true(node_field(out, i, "socket_share") == share);
		assert_int_equal((long)node_field(out, i, "arena_numa"), sock[i % S]);
	}
	assert_non_null(strstr(out, "\"socket_share_exact\": true"));
	assert_null(strstr(out, "\"socket_share_exact\": false"));
}

/* The foundation's storm (tests/test_storm.c, node role) on real sockets. */
static void storm(int N, int T, const char *keys, const char *vlen, const char *batches)
{
	char n[16], t[16];
	snprintf(n, sizeof n, "%d", N);
	snprintf(t, sizeof t, "%d", T);
	const char *argv[] = {build_path("bin/psrun"), "-n", n, "-t", t, build_path("tests/test_storm"), "--node",
			      "keys", keys, "vlen", vlen, "batches", batches, NULL};
	struct seg_snapshot segs;
	seg_snapshot(&segs);
	struct run_result r;
	run_prog((char *const *)argv, NULL, 100, -1, 0, &r);
	printf("storm on %d socket(s), %d nodes x %d threads, %s keys x %s floats: status %d in %.1f s\n%s", S, N, T,
	       keys, vlen, r.status, r.seconds, r.out);
	if (r.status != 0)
		fprintf(stderr, "%s", r.err);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, " 0 wrong"));
	assert_non_null(strstr(r.out, " 0 stale reads"));
	for (int i = 0; i < 50 && seg_leaked_since(&segs) > 0; i++)
		usleep(20000);
	assert_int_equal(seg_leaked_since(&segs), 0);
}

static void test_storm_conserves_sums_one_node_per_socket(void **state)
{
	(void)state;
	NEED_SOCKETS();
	storm(S, 2, "256", "4", "3000");
}

static void test_storm_no_torn_reads_more_nodes_than_sockets(void **state)
{
	(void)state;
	NEED_SOCKETS();
	storm(S + 2, 1, "128", "100", "1000");
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "place") == 0)
		return place_main(argc - 3, argv + 3);
	if (argc >= 3 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "count") == 0)
		return count_main(argc - 3, argv + 3);
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0)
		return 1;
	self[n] = 0;
	S = sockets(sock);
	/* In the guests: a kernel that does not see the emulated nodes must
	 * fail the run, not skip every test. */
	const char *req = getenv("PSMEM_NUMA_REQUIRE");
	if (req && *req && atoi(req) != S) {
		fprintf(stderr, "test_numa: PSMEM_NUMA_REQUIRE=%s but this system has %d NUMA node(s) with CPUs and "
				"memory\n",
			req, S);
		return 1;
	}
	/* the guests' run-guest.sh may choose tests (cmocka's * and ? patterns) */
	const char *filter = getenv("PSMEM_TEST_FILTER");
	if (filter && *filter)
		cmocka_set_test_filter(filter);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_place_one_node_per_socket_pages_policies_threads),
		cmocka_unit_test(test_place_more_nodes_than_sockets_share_round_robin),
		cmocka_unit_test(test_place_numa_none_binds_and_pins_nothing),
		cmocka_unit_test(test_place_checker_catches_an_unbound_job),
		cmocka_unit_test(test_place_psrun_v_prints_node_socket_cpus),
		cmocka_unit_test(test_place_psstat_final_counts_and_socket_share),
		cmocka_unit_test(test_place_job_without_psrun_binds_to_the_socket_it_is_confined_to),
		cmocka_unit_test(test_place_job_without_psrun_spanning_sockets_binds_nothing),
		cmocka_unit_test(test_storm_conserves_sums_one_node_per_socket),
		cmocka_unit_test(test_storm_no_torn_reads_more_nodes_than_sockets),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
