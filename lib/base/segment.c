/*
 * segment.c - the POSIX shared-memory segment of a job: create, attach,
 * validate, remove, and sweep segments of dead jobs.
 *
 * Invariants
 *   - A segment's name is "psmem-<16 hex job id>"; it is created O_EXCL with
 *     mode 0600, so only its creator's uid can open it.
 *   - The creator writes every header field, binds every arena, and only then
 *     stores the magic with release.  An attacher that loads the magic with
 *     acquire and finds it right sees a complete header.
 *   - Arenas are virtual reservations (tmpfs is sparse: a page costs memory
 *     only when written).  What may really be touched is bounded by
 *     hdr->mem_budget, charged in PS__CHUNK granules by the pool allocator
 *     (arena.c), so a full /dev/shm is a PS_EFULL, never a SIGBUS.
 *   - Node i's arena is bound (mbind via libnuma) to socket i mod S: the
 *     sockets are the NUMA nodes with CPUs and with memory this process may
 *     use, ascending, S of them (numa_sockets()).  A memory-only node (CXL,
 *     HBM) is no socket: a node placed there could not be pinned.  Location
 *     tables are interleaved over the sockets.  With numa_mode "none"
 *     nothing is bound.  With "here" (a job without psrun) the one node is
 *     bound to the socket that holds every CPU the process may run on, and
 *     nothing is bound when those CPUs span sockets: the process was not
 *     placed, so the job does not confine itself to one socket either.
 *
 * Huge pages
 *   - Every process that maps a segment read-write asks for transparent
 *     huge pages on the shared region and the arenas (MADV_HUGEPAGE is a
 *     flag of each process's mapping, not of the file).  They come when the
 *     /dev/shm mount has huge=advise (or always, within_size) and
 *     shmem_enabled is not deny, or shmem_enabled is force; hdr->page_mode
 *     says which, for the dump.
 *   - psrun --hugepages puts the segment on a hugetlbfs mount instead: the
 *     file DIR/psmem-<id>, named to nodes by that absolute path (a name with
 *     a directory is a file, opened with open(); one without is shm_open's).
 *     Sizes are multiples of PS__HUGE, so of the page (pages above PS__HUGE
 *     are refused).  The mapping is MAP_NORESERVE, so the budget is capped
 *     at the huge pages free and unreserved at creation (within the mount's
 *     size=) less the header region, and charged in whole pages: a job out
 *     of pages gets PS_EFULL, not SIGBUS - unless another program takes
 *     pages from the pool after the job started (not guarded against).
 *   - hugetlbfs keeps no shared memory policy: each attacher applies the
 *     placement to its own mapping, as MPOL_PREFERRED (a bound node out of
 *     huge pages would SIGBUS instead of falling back).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <numa.h>
#include <numaif.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "segment.h"
#include "util.h"
#include "world.h"
#include "lock.h"

#define HUGETLBFS_MAGIC 0x958458f6


/* starttime of pid from /proc/PID/stat, 0 if gone; *zombie set if it has
 * exited and waits to be reaped (it can hold no lock and read nothing). */
static uint64_t proc_stat(pid_t pid, bool *zombie)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	/* field 22 (starttime) counts from after the ")" closing comm */
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	if (zombie)
		*zombie = p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
	int field = 2;
	for (; *p && field < 22; p++)
		if (*p == ' ')
			field++;
	return strtoull(p, NULL, 10);
}

uint64_t ps__proc_start_time(pid_t pid)
{
	return proc_stat(pid, NULL);
}

bool ps__pid_alive(pid_t pid, uint64_t start_time)
{
	if (pid <= 0)
		return false;
	if (kill(pid, 0) != 0 && errno == ESRCH)
		return false;
	bool zombie = false;
	uint64_t st = proc_stat(pid, &zombie);
	if (st == 0 || zombie)
		return false; /* gone between kill() and fopen(), or exited unreaped */
	return start_time == 0 || st == start_time;
}

bool ps__node_alive(const struct ps__seg *s, int node)
{
	struct ps__node *n = ps__node_at(s, node);
	/* acquire: pairs with the release store of ALIVE in attach; pid and
	 * start_time of this incarnation are visible after it */
	uint32_t st = atomic_load_explicit(&n->state, memory_order_acquire);
	if (PS__NODE_KIND(st) != PS__NODE_ALIVE)
		return false;
	return ps__pid_alive(n->pid, n->start_time);
}

uint32_t ps__node_kind(const struct ps__seg *s, int node)
{
	/* acquire: pairs with the state stores of attach, finalize, psrun */
	return PS__NODE_KIND(atomic_load_explicit(&ps__node_at(s, node)->state, memory_order_acquire));
}

void ps__mark_dead(struct ps__seg *s, int node)
{
	struct ps__node *n = ps__node_at(s, node);
	/* acquire: the pid read below belongs to this word's incarnation */
	uint32_t st = atomic_load_explicit(&n->state, memory_order_acquire);
	if (PS__NODE_KIND(st) != PS__NODE_ALIVE || ps__pid_alive(n->pid, n->start_time))
		return;
	/* release: nothing to publish but the state.  CAS on the whole word:
	 * an EXITED node stays EXITED, and a replacement that took the slot
	 * meanwhile (another incarnation) is not touched */
	atomic_compare_exchange_strong_explicit(&n->state, &st, PS__NODE_WORD(PS__NODE_DEAD, PS__NODE_INC(st)),
						memory_order_release, memory_order_relaxed);
}

static uint64_t default_budget(uint64_t want)
{
	if (want)
		return want;
	struct statvfs sv;
	if (statvfs("/dev/shm", &sv) != 0)
		return 1ULL << 30;
	return (uint64_t)sv.f_bavail * sv.f_frsize / 10 * 9;
}

/* The sockets (see the invariants), into sock[0..S-1] and mask; returns
 * S, at least 1 (no NUMA, or no node qualifies: node 0). */
static int numa_sockets(int sock[PS__MAX_NODES], struct bitmask *mask)
{
	int S = 0;
	if (numa_available() >= 0) {
		struct bitmask *cpus = numa_allocate_cpumask();
		for (int n = 0; n <= numa_max_node() && S < PS__MAX_NODES; n++) {
			if (!numa_bitmask_isbitset(numa_all_nodes_ptr, (unsigned)n))
				continue; /* no memory we may use */
			if (numa_node_to_cpus(n, cpus) != 0 || numa_bitmask_weight(cpus) == 0)
				continue; /* no CPUs: memory-only */
			sock[S++] = n;
			if (mask)
				numa_bitmask_setbit(mask, (unsigned)n);
		}
		numa_free_cpumask(cpus);
	}
	if (S == 0) {
		sock[S++] = 0;
		if (mask)
			numa_bitmask_setbit(mask, 0);
	}
	return S;
}

/* Binds [addr, addr+len) to NUMA node `node` (MPOL_BIND via libnuma). For a
 * shared mapping the policy is kept with the tmpfs object, so it holds for
 * every process that maps the segment.  soft (hugetlbfs): MPOL_PREFERRED in
 * this process's mapping only (see "Huge pages"). */
static void bind_region(char *addr, size_t len, int node, bool soft)
{
	if (numa_available() < 0 || len == 0)
		return;
	if (!soft) {
		numa_tonode_memory(addr, len, node);
		return;
	}
	unsigned long mask[PS__MAX_NODES / 64 + 4] = {0};
	if (node < 0 || (size_t)node >= sizeof mask * 8)
		return;
	mask[node / 64] |= 1UL << (node % 64);
	mbind(addr, len, MPOL_PREFERRED, mask, sizeof mask * 8, 0);
}

/* The socket (of sock[0..S-1]) holding every CPU this process may run on,
 * or -1 when they span several. */
static int confined_socket(const int *sock, int S)
{
	cpu_set_t mine;
	if (numa_available() < 0 || sched_getaffinity(0, sizeof mine, &mine) != 0)
		return -1;
	struct bitmask *cpus = numa_allocate_cpumask();
	int found = -1;
	for (int k = 0; k < S && found < 0; k++) {
		if (numa_node_to_cpus(sock[k], cpus) != 0)
			continue;
		bool inside = true;
		for (int c = 0; c < CPU_SETSIZE && inside; c++)
			if (CPU_ISSET(c, &mine) && !numa_bitmask_isbitset(cpus, (unsigned)c))
				inside = false;
		if (inside)
			found = sock[k];
	}
	numa_free_cpumask(cpus);
	return found;
}

static void interleave_region(char *addr, size_t len, struct bitmask *nodes)
{
	if (numa_available() < 0 || len == 0)
		return;
	numa_interleave_memory(addr, len, nodes);
}

/* Binds each arena to its node's numa_node and interleaves the location
 * tables over the sockets, as hdr->numa_mode and the node table say. */
static void apply_placement(struct ps__seg *s)
{
	struct ps__hdr *h = s->hdr;
	if (h->numa_mode != PS__NUMA_AUTO || numa_available() < 0)
		return;
	bool soft = h->page_mode == PS__PAGES_HUGETLB;
	int sock[PS__MAX_NODES];
	struct bitmask *mask = numa_allocate_nodemask();
	numa_sockets(sock, mask);
	for (uint32_t i = 0; i < h->num_nodes; i++) {
		struct ps__node *n = ps__node_at(s, (int)i);
		if (n->numa_node >= 0)
			bind_region(s->base + n->arena_off, n->arena_size, n->numa_node, soft);
	}
	interleave_region(s->base + h->shared_off, h->shared_size, mask);
	numa_free_nodemask(mask);
}

/* Records each node's socket, binds the arenas and interleaves the
 * location tables (see the invariants); sets hdr->numa_mode to what was
 * done: PS__NUMA_AUTO (bound) or PS__NUMA_NONE. */
static void place(struct ps__seg *s, uint32_t mode)
{
	struct ps__hdr *h = s->hdr;
	int sock[PS__MAX_NODES];
	int S = numa_sockets(sock, NULL);
	int here = mode == PS__NUMA_HERE ? confined_socket(sock, S) : -1;
	bool bound = mode == PS__NUMA_AUTO || here >= 0;
	h->numa_mode = bound ? PS__NUMA_AUTO : PS__NUMA_NONE;
	for (uint32_t i = 0; i < h->num_nodes; i++)
		ps__node_at(s, (int)i)->numa_node = !bound ? -1 : here >= 0 ? here : sock[i % (uint32_t)S];
	apply_placement(s);
}

/* ------------------------------------------------------------ huge pages */

/* The word in brackets of a sysfs choice file ("always [never] deny"). */
static bool sysfs_choice(const char *path, char *out, size_t len)
{
	char buf[256];
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	char *a = strchr(buf, '['), *b = a ? strchr(a, ']') : NULL;
	if (!b)
		return false;
	snprintf(out, len, "%.*s", (int)(b - a - 1), a + 1);
	return true;
}

static uint64_t sysfs_u64(const char *path)
{
	FILE *f = fopen(path, "r");
	unsigned long long v = 0;
	if (f) {
		if (fscanf(f, "%llu", &v) != 1)
			v = 0;
		fclose(f);
	}
	return v;
}

/* Calls fn(dir, options, arg) for each mount of fstype in /proc/mounts,
 * in order, until it returns true; mount points with escaped characters
 * (blanks) are skipped. */
static void each_mount(const char *fstype, bool (*fn)(const char *dir, const char *opts, void *arg), void *arg)
{
	FILE *f = fopen("/proc/mounts", "r");
	if (!f)
		return;
	char line[1024], dev[256], dir[PS__NAME_MAX], type[64], opts[512];
	while (fgets(line, sizeof line, f)) {
		if (sscanf(line, "%255s %255s %63s %511s", dev, dir, type, opts) != 4 || strcmp(type, fstype) != 0 ||
		    strchr(dir, '\\'))
			continue;
		if (fn(dir, opts, arg))
			break;
	}
	fclose(f);
}

static bool last_shm_opts(const char *dir, const char *opts, void *arg)
{
	if (strcmp(dir, "/dev/shm") == 0)
		snprintf(arg, 512, "%s", opts); /* an over-mount comes later: keep the last */
	return false;
}

/* What THP a /dev/shm mapping that asks with MADV_HUGEPAGE gets. */
static uint32_t shm_thp_mode(void)
{
	char c[32], opts[512] = "";
	if (!sysfs_choice("/sys/kernel/mm/transparent_hugepage/shmem_enabled", c, sizeof c) ||
	    strcmp(c, "deny") == 0)
		return PS__PAGES_SMALL;
	if (strcmp(c, "force") == 0)
		return PS__PAGES_THP_ALWAYS;
	each_mount("tmpfs", last_shm_opts, opts);
	char *save = NULL;
	for (char *o = strtok_r(opts, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
		if (strcmp(o, "huge=advise") == 0)
			return PS__PAGES_THP_ADVISE;
		if (strcmp(o, "huge=always") == 0 || strcmp(o, "huge=within_size") == 0)
			return PS__PAGES_THP_ALWAYS;
	}
	return PS__PAGES_SMALL;
}

static bool first_dir(const char *dir, const char *opts, void *arg)
{
	(void)opts;
	snprintf(arg, sizeof(((struct ps__huge *)0)->dir), "%s", dir);
	return true;
}

int ps__huge_probe(const char *dir, struct ps__huge *out, char *why, size_t len)
{
	memset(out, 0, sizeof *out);
	if (dir && *dir) {
		char *abs = realpath(dir, NULL);
		if (!abs) {
			snprintf(why, len, "%s", strerror(errno));
			return -1;
		}
		int n = snprintf(out->dir, sizeof out->dir, "%s", abs);
		free(abs);
		if (n >= (int)sizeof out->dir) {
			snprintf(why, len, "%s: path longer than %zu characters", dir, sizeof out->dir - 1);
			return -1;
		}
	} else {
		each_mount("hugetlbfs", first_dir, out->dir);
		if (!out->dir[0]) {
			snprintf(why, len, "no hugetlbfs mount in /proc/mounts: mount one "
				 "(mount -t hugetlbfs none /dev/hugepages) or name one with --hugepages=DIR (see README)");
			return -1;
		}
	}
	struct statfs sf;
	if (statfs(out->dir, &sf) != 0 || (unsigned long)sf.f_type != HUGETLBFS_MAGIC) {
		snprintf(why, len, "not a hugetlbfs mount (mount -t hugetlbfs none %s)", out->dir);
		return -1;
	}
	out->page_size = (uint64_t)sf.f_bsize;
	unsigned long long kb = (unsigned long long)out->page_size >> 10;
	if (out->page_size > PS__HUGE || PS__HUGE % out->page_size) {
		snprintf(why, len, "%s has %llu kB pages; psmem takes huge pages up to %u kB "
			 "(mount -t hugetlbfs -o pagesize=2M none DIR)", out->dir, kb, PS__HUGE >> 10);
		return -1;
	}
	if (access(out->dir, W_OK | X_OK) != 0) {
		snprintf(why, len, "cannot create files in %s: %s", out->dir, strerror(errno));
		return -1;
	}
	char path[128];
	snprintf(path, sizeof path, "/sys/kernel/mm/hugepages/hugepages-%llukB/free_hugepages", kb);
	uint64_t free_p = sysfs_u64(path);
	snprintf(path, sizeof path, "/sys/kernel/mm/hugepages/hugepages-%llukB/resv_hugepages", kb);
	uint64_t resv = sysfs_u64(path);
	uint64_t pages = free_p > resv ? free_p - resv : 0;
	if (pages == 0) {
		snprintf(why, len, "no free huge pages of %llu kB (free_hugepages is %llu, resv_hugepages %llu in "
			 "/sys/kernel/mm/hugepages/hugepages-%llukB): set vm.nr_hugepages (see README)",
			 kb, (unsigned long long)free_p, (unsigned long long)resv, kb);
		return -1;
	}
	/* a size= limit on the mount: f_blocks > 0 (0 when unlimited) */
	if (sf.f_blocks > 0 && (uint64_t)sf.f_bavail < pages) {
		pages = (uint64_t)sf.f_bavail;
		if (pages == 0) {
			snprintf(why, len, "no free huge pages in %s (its size= limit is used up)", out->dir);
			return -1;
		}
	}
	out->avail = pages * out->page_size;
	return 0;
}

const char *ps__seg_pages(const struct ps__seg *s, char *buf, size_t len)
{
	const struct ps__hdr *h = s->hdr;
	switch (h->page_mode) {
	case PS__PAGES_HUGETLB:
		snprintf(buf, len, "hugetlbfs %u kB", h->page_kb);
		break;
	case PS__PAGES_THP_ADVISE:
		snprintf(buf, len, "thp advise (MADV_HUGEPAGE)");
		break;
	case PS__PAGES_THP_ALWAYS:
		snprintf(buf, len, "thp always");
		break;
	default:
		snprintf(buf, len, "%u kB", h->page_kb);
	}
	return buf;
}

/* A name with a directory in it is a file path (hugetlbfs). */
static bool is_file_name(const char *name)
{
	return strchr(name + (name[0] == '/'), '/') != NULL;
}

int ps__seg_open(const char *name, int flags)
{
	if (!name || !*name)
		return -ENOENT;
	int fd;
	if (is_file_name(name)) {
		/* O_NONBLOCK: a FIFO given as a job name must not hang us */
		fd = open(name, flags | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
	} else {
		char full[PS__NAME_MAX + 2];
		if (snprintf(full, sizeof full, "%s%s", name[0] == '/' ? "" : "/", name) >= (int)sizeof full)
			return -ENAMETOOLONG;
		fd = shm_open(full, flags, 0600);
	}
	return fd < 0 ? -errno : fd;
}

/* MADV_HUGEPAGE on the shared region and the arenas of this process's
 * mapping (see "Huge pages"); hugetlbfs needs no asking. */
static void ask_thp(struct ps__seg *s)
{
	struct ps__hdr *h = s->hdr;
	if (h->page_mode != PS__PAGES_HUGETLB && h->shared_off < s->size)
		madvise(s->base + h->shared_off, s->size - h->shared_off, MADV_HUGEPAGE);
}

static int map_fd(int fd, size_t size, bool ro, char **base)
{
	void *p = mmap(NULL, size, ro ? PROT_READ : PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	*base = p;
	return 0;
}

int ps__seg_create(const struct ps__seg_params *p, struct ps__seg *out)
{
	if (p->num_nodes < 1 || p->num_nodes > PS__MAX_NODES)
		return PS_ENODE;
	if (p->threads_per_node > PS__MAX_WORKERS || p->on_failure > 1)
		return -EINVAL;
	memset(out, 0, sizeof *out);

	uint64_t arena = PS__ALIGN(p->arena_size ? p->arena_size : PS__DEFAULT_ARENA, PS__HUGE);
	uint64_t shared = PS__ALIGN(p->shared_size ? p->shared_size : PS__DEFAULT_SHARED, PS__HUGE);
	uint64_t off = PS__ALIGN(sizeof(struct ps__hdr), PS__CL);
	uint64_t nodes_off = off;
	off = PS__ALIGN(off + sizeof(struct ps__node) * PS__MAX_NODES, PS__CL);
	uint64_t tdesc_off = off;
	off = PS__ALIGN(off + sizeof(struct ps__tdesc) * PS__MAX_TABLES, PS__CL);
	uint64_t pools_off = off;
	off = PS__ALIGN(off + sizeof(struct ps__pool) * PS__MAX_TABLES * PS__MAX_NODES, PS__HUGE);
	uint64_t shared_off = off;
	uint64_t arenas_off = shared_off + shared;
	uint64_t size = arenas_off + arena * p->num_nodes;

	struct ps__huge hp = {0};
	uint64_t budget = default_budget(p->mem_budget);
	if (p->hugetlb_dir) {
		char why[256];
		if (ps__huge_probe(p->hugetlb_dir, &hp, why, sizeof why) != 0)
			return -ENOSPC;
		/* the header region is touched but not charged (see "Huge pages") */
		uint64_t head = PS__ALIGN(shared_off, hp.page_size);
		if (hp.avail <= head)
			return -ENOSPC;
		if (!p->mem_budget || budget > hp.avail - head)
			budget = hp.avail - head;
	}

	uint64_t job_id;
	if (getrandom(&job_id, sizeof job_id, 0) != sizeof job_id)
		return -errno;
	snprintf(out->name, sizeof out->name, "%s/psmem-%016" PRIx64, p->hugetlb_dir ? hp.dir : "", job_id);

	int fd = ps__seg_open(out->name, O_RDWR | O_CREAT | O_EXCL);
	if (fd < 0)
		return fd;
	int rc = 0;
	if (ftruncate(fd, (off_t)size) != 0)
		rc = -errno;
	if (rc == 0)
		rc = map_fd(fd, size, false, &out->base);
	close(fd);
	if (rc != 0) {
		ps__seg_unlink(out->name);
		return rc;
	}
	out->size = size;
	out->hdr = (struct ps__hdr *)out->base;
	struct ps__hdr *h = out->hdr;
	h->abi = PS__ABI;
	h->hdr_size = sizeof *h;
	h->node_size = sizeof(struct ps__node);
	h->tdesc_size = sizeof(struct ps__tdesc);
	h->job_id = job_id;
	h->uid = getuid();
	h->creator_pid = getpid();
	h->creator_start = ps__proc_start_time(getpid());
	h->num_nodes = p->num_nodes;
	h->threads_per_node = p->threads_per_node ? p->threads_per_node : 1;
	h->seg_size = size;
	h->nodes_off = nodes_off;
	h->tdesc_off = tdesc_off;
	h->pools_off = pools_off;
	h->shared_off = shared_off;
	h->shared_size = shared;
	h->arenas_off = arenas_off;
	h->arena_size = arena;
	h->mem_budget = budget;
	h->page_mode = p->hugetlb_dir ? PS__PAGES_HUGETLB : shm_thp_mode();
	h->page_kb = (uint32_t)((p->hugetlb_dir ? hp.page_size
			: h->page_mode != PS__PAGES_SMALL ? PS__HUGE : (uint64_t)sysconf(_SC_PAGESIZE)) >> 10);
	h->workers.total = p->num_nodes * h->threads_per_node;
	h->nodes.total = p->num_nodes;
	h->on_failure = p->on_failure;

	for (uint32_t i = 0; i < p->num_nodes; i++) {
		struct ps__node *n = ps__node_at(out, (int)i);
		n->arena_off = arenas_off + arena * i;
		n->arena_size = arena;
	}
	place(out, p->numa_mode);
	ask_thp(out);
	ps__lock_init(&h->create_lock); /* lock.c LO1: once, by the creator */
	/* release: publishes every header field above to attachers that
	 * acquire-load the magic */
	atomic_store_explicit((_Atomic uint64_t *)&h->magic, PS__MAGIC, memory_order_release);
	return 0;
}

static int check_header(const struct ps__hdr *h, size_t size)
{
	if (size < sizeof *h)
		return PS_EFOREIGN;
	/* acquire: pairs with the creator's release of the magic */
	uint64_t magic = atomic_load_explicit((_Atomic uint64_t *)&h->magic, memory_order_acquire);
	if (magic != PS__MAGIC)
		return PS_EFOREIGN;
	if (h->abi != PS__ABI || h->hdr_size != sizeof *h || h->node_size != sizeof(struct ps__node) ||
	    h->tdesc_size != sizeof(struct ps__tdesc))
		return PS_EABI;
	if (h->uid != getuid())
		return PS_EUID;
	if (h->seg_size != size)
		return PS_EFOREIGN;
	return 0;
}

int ps__seg_attach(const char *name, bool ro, struct ps__seg *out)
{
	memset(out, 0, sizeof *out);
	if (!name || !*name)
		return PS_ENOSEG;
	if (snprintf(out->name, sizeof out->name, "%s%s", name[0] == '/' || is_file_name(name) ? "" : "/", name) >=
	    (int)sizeof out->name)
		return PS_ENOSEG;
	int fd = ps__seg_open(out->name, ro ? O_RDONLY : O_RDWR);
	if (fd < 0)
		return fd == -ENOENT ? PS_ENOSEG : fd;
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) != 0)
		rc = -errno;
	else if (!S_ISREG(st.st_mode))
		rc = PS_EFOREIGN;
	else if (st.st_uid != getuid())
		rc = PS_EUID;
	else if ((size_t)st.st_size < sizeof(struct ps__hdr))
		rc = PS_EFOREIGN;
	if (rc == 0)
		rc = map_fd(fd, (size_t)st.st_size, ro, &out->base);
	close(fd);
	if (rc != 0)
		return rc;
	out->size = (size_t)st.st_size;
	out->hdr = (struct ps__hdr *)out->base;
	out->readonly = ro;
	rc = check_header(out->hdr, out->size);
	if (rc != 0) {
		munmap(out->base, out->size);
		memset(out, 0, sizeof *out);
		return rc;
	}
	if (!ro) {
		ask_thp(out);
		if (out->hdr->page_mode == PS__PAGES_HUGETLB)
			apply_placement(out); /* hugetlbfs keeps no shared policy */
	}
	return 0;
}

void ps__seg_detach(struct ps__seg *s)
{
	if (s->base)
		munmap(s->base, s->size);
	s->base = NULL;
	s->hdr = NULL;
}

int ps__seg_unlink(const char *name)
{
	if (is_file_name(name)) {
		const char *base = strrchr(name, '/') + 1;
		if (strncmp(base, "psmem-", 6) != 0)
			return -EINVAL; /* only ever a segment file */
		return unlink(name) == 0 ? 0 : -errno;
	}
	char full[PS__NAME_MAX + 2];
	snprintf(full, sizeof full, "%s%s", name[0] == '/' ? "" : "/", name);
	return shm_unlink(full) == 0 ? 0 : -errno;
}

/* Reads the creator pid and start time of a segment (its name) without
 * trusting more of it than the header. */
static int read_creator(const char *name, int32_t *pid, uint64_t *start, uint64_t *mtime_ns)
{
	int fd = ps__seg_open(name, O_RDONLY);
	if (fd < 0)
		return fd;
	struct ps__hdr h;
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) != 0 || st.st_uid != getuid())
		rc = PS_EUID;
	else if (!S_ISREG(st.st_mode) || pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h || h.magic != PS__MAGIC)
		rc = PS_EFOREIGN;
	close(fd);
	if (rc == 0) {
		*pid = h.creator_pid;
		*start = h.creator_start;
		*mtime_ns = (uint64_t)st.st_mtim.tv_sec * 1000000000ULL + (uint64_t)st.st_mtim.tv_nsec;
	}
	return rc;
}

/* A segment of this uid found by each_segment: its name for attach and
 * unlink ("psmem-x" in /dev/shm, the path on hugetlbfs). */
struct seg_entry {
	const char *name;
	int32_t pid;
	uint64_t start, mtime;
};
typedef void (*seg_fn)(const struct seg_entry *e, void *arg);

struct seg_walk {
	seg_fn fn;
	void *arg;
};

/* Calls w->fn for every psmem-* segment of this uid in dir; shm: names
 * without the directory. */
static bool walk_dir(const char *dir, const char *opts, void *arg)
{
	(void)opts;
	struct seg_walk *w = arg;
	bool shm = strcmp(dir, "/dev/shm") == 0;
	DIR *d = opendir(dir);
	if (!d)
		return false;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, "psmem-", 6) != 0)
			continue;
		char name[PS__NAME_MAX];
		if (snprintf(name, sizeof name, "%s%s%s", shm ? "" : dir, shm ? "" : "/", e->d_name) >= (int)sizeof name)
			continue;
		struct seg_entry se = {.name = name};
		if (read_creator(name, &se.pid, &se.start, &se.mtime) == 0)
			w->fn(&se, w->arg);
	}
	closedir(d);
	return false;
}

/* /dev/shm, then every hugetlbfs mount (psrun --hugepages). */
static void each_segment(seg_fn fn, void *arg)
{
	struct seg_walk w = {fn, arg};
	walk_dir("/dev/shm", NULL, &w);
	each_mount("hugetlbfs", walk_dir, &w);
}

struct sweep {
	FILE *log;
	int removed;
};

static void sweep_one(const struct seg_entry *e, void *arg)
{
	struct sweep *sw = arg;
	if (ps__pid_alive(e->pid, e->start) || ps__seg_unlink(e->name) != 0)
		return;
	sw->removed++;
	if (sw->log)
		fprintf(sw->log, "psmem: removed stale segment %s%s (creator pid %d is gone)\n",
			is_file_name(e->name) ? "" : "/dev/shm/", e->name, (int)e->pid);
}

int ps__seg_sweep_stale(FILE *log)
{
	struct sweep sw = {log, 0};
	each_segment(sweep_one, &sw);
	return sw.removed;
}

struct newest {
	char *name;
	size_t len;
	uint64_t best;
	int found;
};

static void newest_one(const struct seg_entry *e, void *arg)
{
	struct newest *nw = arg;
	if (!ps__pid_alive(e->pid, e->start) || e->mtime < nw->best)
		return;
	nw->best = e->mtime;
	snprintf(nw->name, nw->len, "%s", e->name);
	nw->found = 0;
}

int ps__seg_find(char *name, size_t len)
{
	struct newest nw = {name, len, 0, PS_ENOSEG};
	each_segment(newest_one, &nw);
	return nw.found;
}

bool ps__restart_mode(const struct ps__seg *s)
{
	return s->hdr->on_failure == 1;
}
