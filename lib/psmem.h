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
 * handles) / workers and barriers / checkpoints / restarts / introspection.
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
/* -30913 .. -30920 are main's (replication, sampling, update rules); their
 * names are in errors.c already */
#define PS_ECKPT      (-30921) /* checkpoint file unusable: not one, other version, truncated, corrupted */
#define PS_ESHAPE     (-30922) /* checkpoint's tables differ from the job's */
#define PS_ELAST      (-30922)

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
#define PS_TRANSIENT 0x8u /* scratch table (metrics, sums): not in checkpoints */

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
 * (ps_num_nodes * ps_num_threads participants).  Worker i of ps_run_workers
 * is participant i of its node; another thread takes a free participant
 * slot at its first call and gives it back when it exits (-EBUSY when
 * ps_num_threads threads of the node hold one).  Returns PS_EDEAD if a node
 * it waits for died (psrun --on-failure abort) or exited; under
 * --on-failure restart it waits for the dead node's replacement.
 */
int ps_barrier(ps_world *w);

/* ------------------------------------------------------------ checkpoints */

/*
 * A checkpoint file holds every table of the job but the PS_TRANSIENT ones,
 * in creation order: per table its shape (num_keys, value_len, update-rule
 * state_len and rule) and every key's values and rule state, plus a small
 * metadata blob of the program's (e.g. its epoch counter).  Format version,
 * a header checksum and a data checksum (crc32) guard it; it is written to
 * PATH.tmp.PID, fsync'ed, renamed over PATH and the directory fsync'ed, so
 * PATH is always either the old file or the complete new one.
 *
 * Checkpoint, restore and poll are collective over nodes: one thread of
 * every node calls them (like ps_table_create); the first node barrier
 * brings every node there, node 0 reads or writes the file, a second
 * barrier releases them, and every node returns node 0's result.
 *
 * Consistency: the file holds, for every key, its values at one moment
 * between the two barriers.  A push made meanwhile by another thread may
 * or may not be in it (each key is copied under its lock, so never half
 * of a push).  For a snapshot of one training state, call it where the
 * workers are quiescent: between epochs, while the other threads wait at a
 * ps_barrier() or only pull.
 */
#define PS_CKPT_META_MAX 4096

/* Writes a checkpoint to path; meta (meta_len <= PS_CKPT_META_MAX bytes,
 * may be NULL when 0) is stored with it. */
int ps_checkpoint(ps_world *w, const char *path);
int ps_checkpoint_meta(ps_world *w, const char *path, const void *meta, size_t meta_len);

/*
 * Restores every non-transient table from a checkpoint: call it after
 * creating the tables, before pushing.  Values are assigned (not added).
 * path NULL means the file named by `psrun --restore FILE` (environment
 * PSMEM_RESTORE); with no such file nothing changes and 0 is returned.
 * Returns the number of tables restored, or PS_ECKPT (unreadable,
 * truncated, corrupt, other format version), PS_ESHAPE (other tables), a
 * -errno; then no value has changed, and ps_checkpoint_error() says why.
 * ps_restore_meta also copies the stored metadata to meta (at most
 * meta_cap bytes) and its full length to *meta_len.
 */
int ps_restore(ps_world *w, const char *path);
int ps_restore_meta(ps_world *w, const char *path, void *meta, size_t meta_cap, size_t *meta_len);

/*
 * Serves a checkpoint asked for from outside the job (`psstat --checkpoint
 * FILE`): 1 if one was pending and has been written (with meta), 0 if none
 * was, or a negative code if writing it failed.  Collective like
 * ps_checkpoint (node 0 decides for all); call it where a checkpoint may be
 * taken, e.g. once per epoch.
 */
int ps_checkpoint_poll(ps_world *w, const void *meta, size_t meta_len);

/* Why the last failed checkpoint / restore / poll of this process failed,
 * naming the file; "" if it did not fail. */
const char *ps_checkpoint_error(const ps_world *w);

/* -------------------------------------------------------------- restarts */

/*
 * Under `psrun --on-failure restart`, a node process that dies is started
 * again with the same node id.  Parameters live in the segment, so nothing
 * of the model is lost; the new process (a restarted node) re-runs the
 * program from the start and meets the job where its predecessor left it:
 *
 *   - ps_init finds the dead node's slot, frees the locks it held and takes
 *     over its arena; ps_table_create binds the existing tables;
 *   - barriers its predecessor had already arrived at are replayed: they
 *     do not count again, they return once the job is past them;
 *   - ps_replaying() tells each worker whether the step it is about to do
 *     (the work before its next ps_barrier) was done already: then skip
 *     it; ps_progress_get() tells how far the step in progress had come.
 *
 * Meanwhile the other nodes wait at their barriers for the replacement.
 */

/* 1 if this process replaced a dead process of the same node id. */
int ps_restarted(const ps_world *w);

/* 1 while the calling worker's next ps_barrier() is one its node's dead
 * predecessor passed (skip the work before it), else 0. */
int ps_replaying(ps_world *w);

/*
 * Progress of the calling worker within its current step (between two
 * ps_barrier calls), kept in the segment for its successor: value < 2^40.
 * ps_progress_get returns the last value set in the current step, 0 if
 * none (each ps_barrier starts a new step), or a negative code.  To lose
 * at most the batch in flight and never apply one twice, set "batches done
 * + 1" before applying a batch.
 */
int ps_progress_set(ps_world *w, uint64_t value);
int64_t ps_progress_get(ps_world *w);

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
