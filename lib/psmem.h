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
 * Groups: errors / job / tables / update rules / operations (pull, push,
 * localize, async handles) / workers and barriers / clocks / introspection.
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
#define PS_ERULE      (-30913) /* update rule unknown here, or registered differently on another node */
#define PS_EHOGWILD   (-30914) /* PS_HOGWILD tables take only the sum update rule */
#define PS_ELAST      (-30914)

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

/* Leaves the job: stops the service thread, unmaps the segment. */
int ps_finalize(ps_world *w);

int ps_node_id(const ps_world *w);       /* 0 .. ps_num_nodes()-1 */
int ps_num_nodes(const ps_world *w);
int ps_num_threads(const ps_world *w);   /* worker threads per node (psrun -t) */
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
	uint32_t rule;            /* update rule applied to pushes: PS_RULE_* or a
	                           * registered custom id; default PS_RULE_SUM */
	float rule_params[4];     /* the rule's parameters (see enum ps_rule); unused
	                           * ones must be 0 for built-in rules */
} ps_table_opts;

/* Fills opts with defaults for a table of num_keys keys of value_len floats. */
void ps_table_opts_init(ps_table_opts *opts, uint64_t num_keys, uint32_t value_len);

/*
 * Creates a table.  Collective: every node calls it with the same options in
 * the same order; it returns on each node once every node's initial values
 * are in place.  Options that differ between nodes fail with PS_EMISMATCH.
 */
ps_table *ps_table_create(ps_world *w, const ps_table_opts *opts, int *err);

uint64_t ps_table_num_keys(const ps_table *t);
uint32_t ps_table_value_len(const ps_table *t);
int ps_table_id(const ps_table *t);

/* ------------------------------------------------------------ update rules */

/*
 * A table's update rule says what a push does to a key's values; it runs
 * under the key's slot lock, so each push is applied atomically.  Rules
 * with state keep it in the slot after the values (it moves with the key
 * on localize, starts at 0, and pull never returns it).  For sgd, adagrad
 * and adam the pushed update u is a gradient: the rule descends along it.
 * With p = rule_params, per value v (and state a, m, s, step t per key):
 *
 *   PS_RULE_SUM      v += u                                   (default)
 *   PS_RULE_ASSIGN   v = u
 *   PS_RULE_SGD      v += -lr * u                             p = {lr}
 *   PS_RULE_ADAGRAD  a += u * u;  v += -lr * u / (sqrt(a) + eps)
 *                                                             p = {lr, eps}
 *   PS_RULE_ADAM     t += 1 (per key);  c1 = 1 - b1^t;  c2 = 1 - b2^t;
 *                    m = b1 * m + (1 - b1) * u;  s = b2 * s + (1 - b2) * u * u;
 *                    v += -lr * (m / c1) / (sqrt(s / c2) + eps)
 *                                                             p = {lr, b1, b2, eps}
 *
 * (single-precision float arithmetic in exactly this order).  lr and eps
 * must be finite and > 0, b1 and b2 in [0, 1); other values, non-zero
 * unused parameters, or a rule other than sum on a PS_HOGWILD table
 * (PS_EHOGWILD) are rejected at ps_table_create.
 */
enum ps_rule {
	PS_RULE_SUM = 0,
	PS_RULE_ASSIGN = 1,
	PS_RULE_SGD = 2,
	PS_RULE_ADAGRAD = 3,
	PS_RULE_ADAM = 4,
	PS_RULE_CUSTOM = 16, /* custom ids: PS_RULE_CUSTOM .. PS_RULE_CUSTOM + PS_RULE_MAX_CUSTOM - 1 */
};
#define PS_RULE_MAX_CUSTOM 16

/*
 * A custom rule: applies one pushed update (value_len floats) to a key's
 * values and state (state_per_value * value_len + state_per_key floats,
 * as registered) in place; params is the table's rule_params.  It runs
 * under the slot lock on private copies: it must not call psmem.
 */
typedef void (*ps_rule_fn)(float *values, float *state, const float *update, uint32_t value_len,
			   const float *params);

/*
 * Registers custom rule `id` in this process, before tables that use it
 * are created.  Every process of the job must register the same id under
 * the same name and state sizes (the name stands for the function: the
 * binary is the same on every node); a table whose rule is unknown in one
 * process, or registered differently than by its creator, fails on every
 * node with PS_ERULE.  Returns 0 (also for the identical registration
 * again), -EINVAL (id outside the custom range, fn or name NULL, name
 * empty or longer than 31 bytes, state over 4 floats per value or 16 per
 * key), or -EEXIST (id already registered otherwise).
 */
int ps_rule_register(uint32_t id, ps_rule_fn fn, const char *name, uint32_t state_per_value,
		     uint32_t state_per_key);

/* -------------------------------------------------------------- operations */

/*
 * Asynchronous operations return a handle; ps_wait() completes it and
 * returns the operation's result.  Every handle must be waited exactly once.
 * Pull and push run to completion inside the call on one host (their handle
 * is already complete); localize is executed by the node's service thread,
 * so the caller can compute while parameters move (latency hiding).
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

/* Node that holds key now (>= 0), or a negative code. */
int ps_owner(ps_table *t, ps_key key);

/*
 * Stores values as they are, whatever the table's update rule, and resets
 * the rule's state of those keys to 0 (each key under its slot lock):
 * initial values for a table whose pushes are gradients.
 */
int ps_assign_sync(ps_table *t, const ps_key *keys, size_t n, const float *values);

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
 * (ps_num_nodes * ps_num_threads participants).  Returns PS_EDEAD if a node
 * died while others waited.
 */
int ps_barrier(ps_world *w);

/* ------------------------------------------------------------------ clocks */

/*
 * Consistency of iterative training (bounded staleness).  Each worker
 * thread of each node has a clock: the number of times it has called
 * ps_clock() (a call that is still blocked counts).  A worker ends a clock
 * (a batch, an epoch: the app chooses) with ps_clock(), which returns once
 * every worker of the job has a clock >= its own - s:
 *
 *   PS_BSP      s = 0: no worker starts clock c+1 before all finished c
 *   PS_SSP, s   no worker runs more than s clocks ahead of the slowest
 *   PS_ASP      no bound (ps_clock only counts)
 *
 * Waiters sleep on a process-shared futex and are woken by the clock
 * that lets them go.  Updates pushed before a worker's ps_clock are
 * visible to every worker whose ps_clock it released.
 */
enum ps_sync_mode { PS_BSP = 0, PS_SSP = 1, PS_ASP = 2 };
#define PS_STALENESS_MAX 1000000

/*
 * Sets the job's bound: every node calls it with the same values before
 * its workers call ps_clock (the first call fixes them; a different one
 * later is PS_EMISMATCH).  Without it the job is BSP.  staleness must be 0
 * for PS_BSP and PS_ASP, 0 .. PS_STALENESS_MAX for PS_SSP (SSP with 0 is
 * BSP); -EINVAL otherwise.  -ERANGE if the job has more worker threads per
 * node than the clocks can hold (256).
 */
int ps_set_consistency(ps_world *w, int mode, int staleness);

/*
 * Ends the calling worker's current clock and waits for the bound.  Call
 * it from the threads of ps_run_workers (or, when the job has one thread
 * per node, from any one thread of the node: it is worker 0).  Returns 0,
 * PS_EDEAD if a node this worker waits for died or exited, -EINVAL if the
 * calling thread is not a worker.
 */
int ps_clock(ps_world *w);

/* Clock of worker `thread` of `node` (>= 0), or a negative code. */
int64_t ps_clock_read(ps_world *w, int node, int thread);

/*
 * Parses "bsp", "ssp:S" or "asp" (an app's --sync flag).  Returns 0 and
 * sets *mode and *staleness, or -EINVAL and writes why (a one-line
 * message naming text, no newline) into why[why_len].
 */
int ps_clock_parse(const char *text, int *mode, int *staleness, char *why, size_t why_len);

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
