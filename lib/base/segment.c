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
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <numa.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "segment.h"
#include "util.h"
#include "world.h"


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
 * every process that maps the segment. */
static void bind_region(char *addr, size_t len, int node)
{
	if (numa_available() < 0 || len == 0)
		return;
	numa_tonode_memory(addr, len, node);
	/* Ask for huge pages; tmpfs may refuse (shmem_enabled=never): fine. */
	madvise(addr, len, MADV_HUGEPAGE);
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

/* Records each node's socket, binds the arenas and interleaves the
 * location tables (see the invariants); sets hdr->numa_mode to what was
 * done: PS__NUMA_AUTO (bound) or PS__NUMA_NONE. */
static void place(struct ps__seg *s, uint32_t mode)
{
	struct ps__hdr *h = s->hdr;
	int sock[PS__MAX_NODES];
	struct bitmask *mask = numa_available() >= 0 ? numa_allocate_nodemask() : NULL;
	int S = numa_sockets(sock, mask);
	int here = mode == PS__NUMA_HERE ? confined_socket(sock, S) : -1;
	bool bound = mode == PS__NUMA_AUTO || here >= 0;
	h->numa_mode = bound ? PS__NUMA_AUTO : PS__NUMA_NONE;
	for (uint32_t i = 0; i < h->num_nodes; i++) {
		struct ps__node *n = ps__node_at(s, (int)i);
		n->numa_node = !bound ? -1 : here >= 0 ? here : sock[i % (uint32_t)S];
		if (bound)
			bind_region(s->base + n->arena_off, n->arena_size, n->numa_node);
	}
	if (bound && mask)
		interleave_region(s->base + h->shared_off, h->shared_size, mask);
	if (mask)
		numa_free_nodemask(mask);
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

	uint64_t job_id;
	if (getrandom(&job_id, sizeof job_id, 0) != sizeof job_id)
		return -errno;
	snprintf(out->name, sizeof out->name, "/psmem-%016" PRIx64, job_id);

	int fd = shm_open(out->name, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd < 0)
		return -errno;
	int rc = 0;
	if (ftruncate(fd, (off_t)size) != 0)
		rc = -errno;
	if (rc == 0)
		rc = map_fd(fd, size, false, &out->base);
	close(fd);
	if (rc != 0) {
		shm_unlink(out->name);
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
	h->mem_budget = default_budget(p->mem_budget);
	h->workers.total = p->num_nodes * h->threads_per_node;
	h->nodes.total = p->num_nodes;
	h->on_failure = p->on_failure;

	for (uint32_t i = 0; i < p->num_nodes; i++) {
		struct ps__node *n = ps__node_at(out, (int)i);
		n->arena_off = arenas_off + arena * i;
		n->arena_size = arena;
	}
	place(out, p->numa_mode);
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
	snprintf(out->name, sizeof out->name, "%s%s", name[0] == '/' ? "" : "/", name);
	int fd = shm_open(out->name, ro ? O_RDONLY : O_RDWR, 0);
	if (fd < 0)
		return errno == ENOENT ? PS_ENOSEG : -errno;
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) != 0)
		rc = -errno;
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
	}
	return rc;
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
	char full[PS__NAME_MAX + 2];
	snprintf(full, sizeof full, "%s%s", name[0] == '/' ? "" : "/", name);
	return shm_unlink(full) == 0 ? 0 : -errno;
}

/* Reads the creator pid and start time of a segment without trusting more
 * of it than the header. */
static int read_creator(const char *name, int32_t *pid, uint64_t *start, uint64_t *mtime_ns)
{
	char path[PS__NAME_MAX + 16];
	snprintf(path, sizeof path, "/dev/shm/%s", name);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -errno;
	struct ps__hdr h;
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) != 0 || st.st_uid != getuid())
		rc = PS_EUID;
	else if (pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h || h.magic != PS__MAGIC)
		rc = PS_EFOREIGN;
	close(fd);
	if (rc == 0) {
		*pid = h.creator_pid;
		*start = h.creator_start;
		*mtime_ns = (uint64_t)st.st_mtim.tv_sec * 1000000000ULL + (uint64_t)st.st_mtim.tv_nsec;
	}
	return rc;
}

int ps__seg_sweep_stale(FILE *log)
{
	DIR *d = opendir("/dev/shm");
	if (!d)
		return 0;
	int removed = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, "psmem-", 6) != 0)
			continue;
		int32_t pid;
		uint64_t start, mtime;
		if (read_creator(e->d_name, &pid, &start, &mtime) != 0)
			continue;
		if (ps__pid_alive(pid, start))
			continue;
		if (ps__seg_unlink(e->d_name) == 0) {
			removed++;
			if (log)
				fprintf(log, "psmem: removed stale segment /dev/shm/%s (creator pid %d is gone)\n",
					e->d_name, (int)pid);
		}
	}
	closedir(d);
	return removed;
}

int ps__seg_find(char *name, size_t len)
{
	DIR *d = opendir("/dev/shm");
	if (!d)
		return -errno;
	uint64_t best = 0;
	int found = PS_ENOSEG;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, "psmem-", 6) != 0)
			continue;
		int32_t pid;
		uint64_t start, mtime;
		if (read_creator(e->d_name, &pid, &start, &mtime) != 0 || !ps__pid_alive(pid, start))
			continue;
		if (mtime >= best) {
			best = mtime;
			snprintf(name, len, "%s", e->d_name);
			found = 0;
		}
	}
	closedir(d);
	return found;
}

bool ps__restart_mode(const struct ps__seg *s)
{
	return s->hdr->on_failure == 1;
}
