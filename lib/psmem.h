/*
 * psmem.h - the public interface of psmem, a shared-memory parameter server.
 *
 * A job is N nodes (processes) on one host sharing one POSIX shared-memory
 * segment created by psrun.  Run without psrun, a program is a one-node job
 * in its own process: the same code path, a private segment.
 *
 * Conventions
 *   - Functions return 0 (or a count) on success and a negative code on
 *     failure: -errno, or one of the PS_E* codes below.  ps_strerror() names
 *     every code.
 *   - Constructors return NULL and store the code in *err (when err != NULL).
 *   - A rejected call changes nothing: keys are checked before any is used.
 *   - Every thread may call every function; a thread is registered with the
 *     library's grace-period machinery on its first call.
 *
 * Groups: errors / job / tables / operations (pull, push, localize, async
 * handles) / workers and barriers / introspection.
 */
#ifndef PSMEM_H
#define PSMEM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PSMEM_VERSION_MAJOR 0
#define PSMEM_VERSION_MINOR 1

/* ------------------------------------------------------------------ errors */

/* psmem's own codes sit in a reserved negative band, away from -errno. */
#define PS_EBASE      (-30900)
#define PS_EKEY       (-30900) /* key outside the table's key range */
#define PS_ETABLE     (-30901) /* not a table of this job (bad or foreign handle) */
#define PS_EFULL      (-30902) /* arena full: no free slot on that node */
#define PS_ENOSEG     (-30903) /* job segment does not exist */
#define PS_EFOREIGN   (-30904) /* segment is not a psmem segment (bad magic) */
#define PS_EABI       (-30905) /* segment made by an incompatible psmem */
#define PS_EUID       (-30906) /* segment belongs to another user */
#define PS_EMISMATCH  (-30907) /* nodes disagree on a collective call */
#define PS_EDEAD      (-30908) /* a node of the job died */
#define PS_ENODE      (-30909) /* node id outside the job */
#define PS_ETOOMANY   (-30910) /* table limit of the segment reached */
#define PS_ENOMEMSEG  (-30911) /* segment has no room left for the table */
#define PS_EHANDLE    (-30912) /* invalid or already-waited handle */
/* multi-host bridge: frames, authentication, peers */
#define PS_EFRAME_TRUNC   (-30913) /* frame truncated (connection ended inside it) */
#define PS_EFRAME_MAGIC   (-30914) /* not a psmem frame (bad magic) */
#define PS_EFRAME_VERSION (-30915) /* frame of an unsupported protocol version */
#define PS_EFRAME_TYPE    (-30916) /* unknown frame type */
#define PS_EFRAME_SIZE    (-30917) /* frame over the size limit */
#define PS_EFRAME_CRC     (-30918) /* frame checksum mismatch */
#define PS_EFRAME_BODY    (-30919) /* frame payload malformed for its type */
#define PS_EAUTH          (-30920) /* peer failed authentication (wrong job token) */
#define PS_ETOKEN         (-30921) /* job token malformed (want 64 hex digits) */
#define PS_ETOKENPERM     (-30922) /* job token file not private (mode 0600, owner) */
#define PS_EHOSTDOWN      (-30923) /* a peer host failed or left the job */
#define PS_ELAST          (-30923)

/* Names a return code: PS_E* codes, -errno values, and 0. Never NULL. */
const char *ps_strerror(int err);

/* --------------------------------------------------------------------- job */

typedef struct ps_world ps_world;

/*
 * Joins the job this process belongs to.  Under psrun the environment names
 * the segment (PSMEM_SEGMENT) and this node (PSMEM_NODE, PSMEM_NODES,
 * PSMEM_THREADS); without it, creates a private one-node job.  One world per
 * process.  Returns NULL and sets *err on failure.
 */
ps_world *ps_init(int *err);

/*
 * As ps_init, with the number of worker threads per node chosen by the
 * program (threads > 0): without psrun it sets the private job's count;
 * under psrun it replaces psrun's -t, and every node must pass the same
 * value (PS_EMISMATCH otherwise).  threads == 0: as ps_init.
 */
ps_world *ps_init_threads(int threads, int *err);

/* Leaves the job: stops the service thread, unmaps the segment.  In a
 * multi-host job it first waits until every node of every host finalizes
 * (no host may still need this node's keys). */
int ps_finalize(ps_world *w);

int ps_node_id(const ps_world *w);       /* 0 .. ps_num_nodes()-1 */
int ps_num_nodes(const ps_world *w);
int ps_num_threads(const ps_world *w);   /* worker threads per node (psrun -t) */
int ps_host_id(const ps_world *w);       /* 0 .. ps_num_hosts()-1 */
int ps_num_hosts(const ps_world *w);     /* psrun --hosts; 1 on one host */
const char *ps_segment_name(const ps_world *w);

/* ------------------------------------------------------------------ tables */

typedef uint64_t ps_key;
typedef struct ps_table ps_table;

enum ps_init_kind {
	PS_INIT_ZERO = 0,     /* every value 0 */
	PS_INIT_CONST = 1,    /* every value init_a */
	PS_INIT_UNIFORM = 2,  /* uniform(-init_a, init_a), a function of (seed, key, index) */
};

enum ps_placement {
	PS_PLACE_RANGE = 0,   /* key k on node k * N / num_keys */
	PS_PLACE_HASH = 1,    /* key k on node hash(k) mod N */
};

/* Table flags. */
#define PS_HOGWILD 0x1u /* push adds without taking the slot lock (racy by choice) */

typedef struct ps_table_opts {
	uint64_t num_keys;        /* keys 0 .. num_keys-1; required */
	uint32_t value_len;       /* floats per key; required, 1 .. 65536 */
	enum ps_init_kind init;
	float init_a;             /* constant, or half-width of the uniform range */
	uint64_t seed;            /* for PS_INIT_UNIFORM */
	enum ps_placement placement;
	uint32_t flags;           /* PS_HOGWILD */
	uint64_t slots_per_node;  /* slot capacity of each node's pool; 0 = num_keys
	                           * + num_keys/4 + 4096 headroom for slots awaiting
	                           * reclamation */
} ps_table_opts;

/* Fills opts with defaults for a table of num_keys keys of value_len floats. */
void ps_table_opts_init(ps_table_opts *opts, uint64_t num_keys, uint32_t value_len);

/*
 * Creates a table.  Collective: every node calls it with the same options in
 * the same order; it returns on each node once every node's initial values
 * are in place.  Options that differ between nodes fail with PS_EMISMATCH.
 * In a multi-host job it is collective over every node of every host; keys
 * are range-partitioned over the hosts (host h holds keys
 * [ceil(h K / H), ceil((h+1) K / H))), then placed over that host's nodes.
 */
ps_table *ps_table_create(ps_world *w, const ps_table_opts *opts, int *err);

uint64_t ps_table_num_keys(const ps_table *t);
uint32_t ps_table_value_len(const ps_table *t);
int ps_table_id(const ps_table *t);

/* -------------------------------------------------------------- operations */

/*
 * Asynchronous operations return a handle; ps_wait() completes it and
 * returns the operation's result.  Every handle must be waited exactly once.
 * Pull and push run to completion inside the call on one host (their handle
 * is already complete); in a multi-host job the keys held by other hosts are
 * sent at once and stay in flight until ps_wait.  Localize is executed by the
 * node's service thread, so the caller can compute while parameters move
 * (latency hiding); a key held by another host stays there.
 *
 * The buffers must stay valid until ps_wait() returns.
 * Values are laid out key after key: values[i * value_len + j].
 */
typedef struct ps_req *ps_handle;

ps_handle ps_pull(ps_table *t, const ps_key *keys, size_t n, float *values);
ps_handle ps_push(ps_table *t, const ps_key *keys, size_t n, const float *updates);
ps_handle ps_localize(ps_table *t, const ps_key *keys, size_t n);
int ps_wait(ps_handle h);

/* Synchronous forms: same semantics, no handle. */
int ps_pull_sync(ps_table *t, const ps_key *keys, size_t n, float *values);
int ps_push_sync(ps_table *t, const ps_key *keys, size_t n, const float *updates);
int ps_localize_sync(ps_table *t, const ps_key *keys, size_t n);

/* Node of this host that holds key now (>= 0), or a negative code
 * (-EREMOTE: another host holds it). */
int ps_owner(ps_table *t, ps_key key);

/* Host that holds key now (>= 0; always this host on one host), or a
 * negative code. */
int ps_owner_host(ps_table *t, ps_key key);

/* --------------------------------------------------- workers and barriers */

typedef void (*ps_worker_fn)(ps_world *w, int thread, void *arg);

/*
 * Starts ps_num_threads(w) worker threads on this node, each pinned to the
 * CPUs of the node's NUMA node (unless psrun --numa none), runs fn(w, i, arg)
 * in each, and joins them.  Returns 0 or the first error.
 */
int ps_run_workers(ps_world *w, ps_worker_fn fn, void *arg);

/*
 * Waits until every worker thread of every node has called ps_barrier()
 * (ps_num_nodes * ps_num_threads participants; times ps_num_hosts in a
 * multi-host job).  Returns PS_EDEAD if a node died while others waited,
 * PS_EHOSTDOWN if another host failed or left.
 */
int ps_barrier(ps_world *w);

/* --------------------------------------------------------- introspection */

typedef struct ps_node_stats {
	uint64_t pulls, pushes;             /* calls */
	uint64_t keys_pulled, keys_pushed;
	uint64_t local_keys, remote_keys;   /* keys served from own / other arena */
	uint64_t relocations;               /* keys moved into this node */
	uint64_t retries;                   /* seqlock or MOVED retries */
	uint64_t stale_reads;               /* reclamation violations seen (must be 0) */
	uint64_t slots_used, slots_capacity;/* in this node's arena, all tables */
	uint64_t arena_bytes, arena_used;
} ps_node_stats;

int ps_stats(ps_world *w, int node, ps_node_stats *out);

/* Prints who waits for what (barriers, slot locks, requests) to f. */
void ps_dump(ps_world *w, FILE *f);

#ifdef __cplusplus
}
#endif
#endif /* PSMEM_H */
