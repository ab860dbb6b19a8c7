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
 * localize, async handles; replication; sampling) / workers and barriers /
 * clocks / checkpoints / restarts / introspection.
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

/*
 * psmem's own codes: the band -33000 (PS_EBASE) down to PS_ELAST, beside
 * -errno values (-1..-4095) and away from the bands other libraries
 * reserve: -30800..-30999 is Berkeley DB's (LMDB keeps its MDB_* codes
 * out of it, at -30799 upwards) and -32000..-32768 the JSON-RPC and
 * XML-RPC server errors, so a program that passes psmem's codes on
 * beside theirs never sees one value mean two things.  New codes go
 * below PS_ELAST; existing ones keep their values.
 */
#define PS_EBASE      (-33000)
#define PS_EKEY       (-33000) /* key outside the table's key range */
#define PS_ETABLE     (-33001) /* not a table of this job (bad or foreign handle) */
#define PS_EFULL      (-33002) /* arena full: no free slot on that node */
#define PS_ENOSEG     (-33003) /* job segment does not exist */
#define PS_EFOREIGN   (-33004) /* segment is not a psmem segment (bad magic) */
#define PS_EABI       (-33005) /* segment made by an incompatible psmem */
#define PS_EUID       (-33006) /* segment belongs to another user */
#define PS_EMISMATCH  (-33007) /* nodes disagree on a collective call */
#define PS_EDEAD      (-33008) /* a node of the job died */
#define PS_ENODE      (-33009) /* node id outside the job */
#define PS_ETOOMANY   (-33010) /* table limit of the segment reached */
#define PS_ENOMEMSEG  (-33011) /* segment has no room left for the table */
#define PS_EHANDLE    (-33012) /* invalid or already-waited handle */
#define PS_ERCAP      (-33013) /* replica capacity of the table (repl_max) exhausted */
#define PS_EWEIGHT    (-33014) /* sampling weight negative, NaN or infinite */
#define PS_EZEROWEIGHTS (-33015) /* sampling weights are all zero */
#define PS_EDIST      (-33016) /* distribution built for another table */
#define PS_ESCHEME    (-33017) /* bad sampling scheme or pool reuse count */
#define PS_EDRAINED   (-33018) /* more samples asked than the sampler has left */
#define PS_ERULE      (-33019) /* update rule unknown here, or registered differently on another node */
#define PS_EHOGWILD   (-33020) /* PS_HOGWILD tables take only the sum update rule */
#define PS_ECKPT      (-33021) /* checkpoint file unusable: not one, other version, truncated, corrupted */
#define PS_ESHAPE     (-33022) /* checkpoint's tables differ from the job's */
/* multi-host bridge: frames, authentication, peers */
#define PS_EFRAME_TRUNC   (-33023) /* frame truncated (connection ended inside it) */
#define PS_EFRAME_MAGIC   (-33024) /* not a psmem frame (bad magic) */
#define PS_EFRAME_VERSION (-33025) /* frame of an unsupported protocol version */
#define PS_EFRAME_TYPE    (-33026) /* unknown frame type */
#define PS_EFRAME_SIZE    (-33027) /* frame over the size limit */
#define PS_EFRAME_CRC     (-33028) /* frame checksum mismatch */
#define PS_EFRAME_BODY    (-33029) /* frame payload malformed for its type */
#define PS_EAUTH          (-33030) /* peer failed authentication (wrong job token) */
#define PS_ETOKEN         (-33031) /* job token malformed (want 64 hex digits) */
#define PS_ETOKENPERM     (-33032) /* job token file not private (mode 0600, owner) */
#define PS_EHOSTDOWN      (-33033) /* a peer host failed or left the job */
#define PS_EEXITED        (-33034) /* a node awaited already finalized (exited normally) */
#define PS_ELAST          (-33034)

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

/* The job's shape.  After ps_finalize (or for NULL) the int getters return
 * -EINVAL and ps_segment_name NULL; so do ps_barrier and ps_table_create. */
int ps_node_id(const ps_world *w);       /* 0 .. ps_num_nodes()-1 */
int ps_num_nodes(const ps_world *w);
int ps_num_threads(const ps_world *w);   /* worker threads per node (psrun -t) */
int ps_host_id(const ps_world *w);       /* 0 .. ps_num_hosts()-1 */
/* psrun --hosts; 1 on one host; under psrun --elastic / --join the number
 * of host ranks a job may use (64: joiners get ranks from the initial
 * count up): count the hosts present with ps_hosts_alive. */
int ps_num_hosts(const ps_world *w);
/*
 * Hosts still in the job: psrun --on-host-failure continue drops a host
 * that dies (killed, or silent past the heartbeat bound) and the others go
 * on.  Returns how many hosts are present (the hosts started until one is
 * lost, joins or leaves; this host always counts) and, if alive is not NULL, alive[h] = 1 or 0 for
 * h < cap.  Poll it (e.g. once per epoch) and re-split the work when the
 * count drops.  After a loss: barriers and clocks count the hosts present;
 * the keys the lost host held are promoted from their backups on the next
 * host in the ring (psrun --backup-rate R, default 20 rounds/s) and
 * requests to them (in flight included) go there.  What can be lost is
 * exactly the updates inside the backup window: those the lost host
 * applied after the start of its last backup round that arrived, i.e. in
 * its last 1/R s + one round's send time; a push in flight at the loss
 * may instead be counted twice (applied and backed up there, then retried
 * at the backup).  A key moved to a host is backed up from the moment
 * its value leaves the host that gives it (the move's own backup, not the
 * next round), and a host lost in the middle of a move leaves that key
 * where it was or promoted from that backup, never stuck.  Update-rule
 * state (adagrad's, adam's, a custom rule's) is backed up and promoted
 * with the values.  In a table with replication, keys not replicated are
 * covered as in any table; a key replicated with its primary on the lost
 * host gets its backup as the new primary (the pending deltas of every
 * host are merged into it by the next rounds; until the backup host has
 * switched it, ps_sync fails and the deltas stay).  Keys never backed up
 * (a table created less than a round before the loss) are lost: requests
 * for them fail with PS_EHOSTDOWN.  Keys held by the survivors keep every
 * update.
 */
/* Elastic jobs: hosts joined and not left count; alive[] has a slot for
 * every rank below cap (cap = ps_num_hosts covers them all). */
int ps_hosts_alive(const ps_world *w, uint8_t *alive, int cap);
/*
 * Elastic jobs (issue 16; docs/DESIGN.md "Joining and leaving").  psrun
 * --elastic (given on every host at start) keeps each psrun listening for
 * authenticated joiners; psrun --join COORD:PORT --token-file F prog ...
 * (same program, -n, -t, checked as at rendezvous) adds a host to the
 * running job; a host leaves on request (psstat --leave HOST, or SIGTERM
 * to a psrun started with --drain).  Membership changes take effect only
 * at ps_sync_hosts: a barrier over every worker thread of every host
 * present, called where the app can re-split its work (between epochs;
 * ordinary barriers never change membership).  *epoch is the app's
 * position (e.g. the next epoch), the same on every host (different ones:
 * PS_EMISMATCH); a joiner's first call waits for the others' next
 * ps_sync_hosts after it is ready and returns their *epoch.  Returns the
 * number of hosts present after the call (ps_hosts_alive says which:
 * joined hosts added, leaving ones removed), 0 on a host that leaves here
 * (its workers stop; its ps_finalize hands its keys to the others before
 * it returns), or a negative error as ps_barrier.  A joiner receives a
 * share of the keys by relocation (every Hp-th key of every table that is
 * not replicated, Hp = hosts present) before its first call returns, and
 * its clocks start at the slowest present host's: BSP/SSP hold over the
 * hosts present.  Key homes never change: a joiner homes no key.  In an
 * elastic job ps_num_hosts is the number of host ranks (64, joiners
 * included; size ps_hosts_alive's array with it), not the hosts present.
 * Without --elastic it is ps_barrier returning the hosts present.
 */
int ps_sync_hosts(ps_world *w, uint64_t *epoch);
/* 1 in the nodes of a host started by psrun --join (they must not
 * initialize tables: the job's values are already there), else 0.  A
 * joiner's nodes create the job's tables (same calls, same order: checked
 * when it is admitted) before their first ps_sync_hosts. */
int ps_joined(const ps_world *w);
/* The job's segment as psstat takes it: "psmem-<id>" (in /dev/shm), or the
 * file's absolute path on hugetlbfs under psrun --hugepages (huge pages:
 * hugetlbfs there, else transparent huge pages where /dev/shm offers them
 * with huge=advise; ps_dump prints which, "pages: ..."). */
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
#define PS_COUNT_ACCESS 0x2u /* count pulls+pushes per key (ps_replicate_hot) */
#define PS_TRANSIENT 0x8u /* scratch table (metrics, sums): not in checkpoints */
/*
 * Wire filters of a multi-host job (ignored on one host; off by default;
 * docs/DESIGN.md "Wire filters").  They change bytes on the wire, never
 * values: pulls return and pushes apply exactly what they would without.
 *   PS_WIRE_KEYCACHE  a key list sent to a host before is sent as a short
 *                     id (both sides keep at most 64 lists of at most 16384
 *                     keys per node: 8 MiB each side); a list the receiver
 *                     no longer holds is sent again with its keys
 *   PS_WIRE_COMPRESS  the values of pushes and of pull replies travel zero-
 *                     suppressed (a bitmap of the non-zero floats and those
 *                     floats) or LZ4-compressed, whichever first saves an
 *                     eighth, else as they are
 */
#define PS_WIRE_KEYCACHE 0x100u
#define PS_WIRE_COMPRESS 0x200u

typedef struct ps_table_opts {
	uint64_t num_keys;        /* keys 0 .. num_keys-1; required */
	uint32_t value_len;       /* floats per key; required, 1 .. 65536 */
	enum ps_init_kind init;
	float init_a;             /* constant, or half-width of the uniform range;
	                           * finite (NaN or infinity: -EINVAL) */
	uint64_t seed;            /* for PS_INIT_UNIFORM */
	enum ps_placement placement;
	uint32_t flags;           /* PS_HOGWILD, PS_COUNT_ACCESS, PS_TRANSIENT, PS_WIRE_* */
	uint64_t slots_per_node;  /* slot capacity of each node's pool; 0 = num_keys
	                           * + num_keys/4 + 4096 headroom for slots awaiting
	                           * reclamation */
	uint32_t repl_max;        /* keys that may be replicated at once (hot-spot
	                           * replication); 0 = none */
	double repl_rate;         /* replica sync rounds per second on each node;
	                           * 0 = only on ps_sync */
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
 * In a multi-host job it is collective over every node of every host; keys
 * are range-partitioned over the hosts (host h holds keys
 * [ceil(h K / H), ceil((h+1) K / H))), then placed over that host's nodes.
 */
ps_table *ps_table_create(ps_world *w, const ps_table_opts *opts, int *err);

/* Tables a job can hold, created and never dropped, transient ones included:
 * ps_table_create beyond it fails with PS_ETOOMANY. */
#define PS_MAX_TABLES 64

/* For NULL: 0, 0 and -EINVAL. */
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
 * is already complete); in a multi-host job the keys held by other hosts are
 * sent at once and stay in flight until ps_wait.  Localize is executed by the
 * node's service thread, so the caller can compute while parameters move
 * (latency hiding); a key held by another host moves to this node too
 * (docs/DESIGN.md, "A moving key"), except in a table with replication.
 *
 * The buffers must stay valid until ps_wait() returns.
 * Values are laid out key after key: values[i * value_len + j].
 */
typedef struct ps_req *ps_handle;

ps_handle ps_pull(ps_table *t, const ps_key *keys, size_t n, float *values);
ps_handle ps_push(ps_table *t, const ps_key *keys, size_t n, const float *updates);
ps_handle ps_localize(ps_table *t, const ps_key *keys, size_t n);
/* Completes h and returns its result; a handle is waited once: waiting it
 * again (or after ps_finalize) returns PS_EHANDLE. */
int ps_wait(ps_handle h);

/*
 * Crashes.  A pull never returns a torn vector of a key that a live process
 * is pushing to: it sees every value of a push or none (per-key seqlock).
 * A process that dies in the middle of pushing a key is different: the
 * lock it held is recovered by the next process that waits for it (version
 * + 1), and the part of its add already stored stays, so readers may then
 * see that one push partially applied (some values of the key added, the
 * rest not).  Keys of the batch not yet reached are not applied at all.
 * A relocation (localize) killed at any point loses nothing: the key keeps
 * exactly its values, in its old or its new slot.
 */

/* Synchronous forms: same semantics, no handle. */
int ps_pull_sync(ps_table *t, const ps_key *keys, size_t n, float *values);
int ps_push_sync(ps_table *t, const ps_key *keys, size_t n, const float *updates);
int ps_localize_sync(ps_table *t, const ps_key *keys, size_t n);

/* Node of this host that holds key now (>= 0), or a negative code
 * (-EREMOTE: another host holds it).  A replicated key is held by every
 * node: the calling node is returned. */
int ps_owner(ps_table *t, ps_key key);

/* Host that holds key now as far as this host knows (>= 0): this host if
 * it holds it; at the key's home the directory's answer; elsewhere a hint
 * that may be stale (operations are redirected).  Always this host on one
 * host.  Or a negative code. */
int ps_owner_host(ps_table *t, ps_key key);

/* ------------------------------------------------- rows in place (zero-copy) */

/*
 * Code that computes on rows can read and update a key's values where they
 * live (this host's shared memory) instead of pulling and pushing copies.
 *
 * Sequential tables: ps_row_lock takes the key's slot lock and returns its
 * value_len floats; the caller may read and write them until
 * ps_row_unlock, which publishes the new version (a concurrent ps_pull
 * never sees a half-written row, and relocation waits for the unlock).
 * On failure it returns NULL and stores the reason in r->err:
 *   PS_ETABLE    t is not a table;      -EINVAL   r is NULL (nothing stored);
 *   PS_EKEY      key out of range;      -EREMOTE  another host holds the key;
 *   -EOPNOTSUPP  the key is replicated (every node has its own copy).
 * ps_row_unlock of a row whose lock failed (or was unlocked) does nothing.
 * On a PS_HOGWILD table the lock excludes other row locks and relocation,
 * not PS_HOGWILD pushes (they take no lock).
 *
 * PS_HOGWILD tables: between ps_rows_enter and ps_rows_exit (a read-side
 * section: no slot can be freed under it) ps_row_get returns a pointer to
 * the key's values; the caller reads and writes them like a raw shared
 * array, racing other writers as PS_HOGWILD pushes do: an update racing a
 * relocation of the same key may be lost.  NULL (and *err, if err is not
 * NULL) for the reasons above, and -EINVAL when t is not PS_HOGWILD (its
 * rows need the lock) or no section is open.  Sections nest.
 *
 * Rules, for both:
 *   - Short: a locked row stalls every pull, push and relocation of the key
 *     (they spin on it); an open section delays every grace period of the
 *     node (slot reclamation).  Microseconds, not milliseconds.
 *   - Inside, call no psmem function that can wait: no barrier, clock,
 *     ps_wait, localize, checkpoint, replicate; no pull or push of a row
 *     the thread holds locked (it would wait for itself).
 *   - Several rows locked at once only in one global order in every thread
 *     (for example table, then key), never the same row twice.
 *   - The pointer is dead after ps_row_unlock / ps_rows_exit: never keep it.
 *   - The table's update rule is bypassed: the caller writes the values
 *     (rule state is not exposed).  PS_COUNT_ACCESS does not count rows.
 *   - Replicated keys have no single row: use pull and push for them.
 *   - Under ThreadSanitizer: a library built with PS_SANITIZE hands
 *     ps_row_lock's caller a private copy, stored back (relaxed atomics)
 *     before the unlock, so the sanitizer sees no race; HOGWILD rows are
 *     racy by contract, so a program checked by it accesses them as the
 *     library does, with relaxed __atomic loads and stores of the floats.
 */
typedef struct ps_row {
	int err;            /* 0, or why ps_row_lock returned NULL */
	/* private */
	void *_slot;
	uint64_t _seq;
	float *_buf;        /* sanitizer builds: the copy the caller writes */
	uint32_t _len;
} ps_row;

float *ps_row_lock(ps_table *t, ps_key key, ps_row *r);
void ps_row_unlock(ps_row *r);

int ps_rows_enter(ps_table *t);                       /* 0 or PS_ETABLE */
float *ps_row_get(ps_table *t, ps_key key, int *err); /* inside a section */
void ps_rows_exit(ps_table *t);

/*
 * Inline fast path (lib/psmem_static.h): with PS_INLINE defined before this
 * header is included, ps_pull_sync and ps_push_sync are static inline
 * functions for the one-host pull or push of up to PS_INLINE_MAX_BATCH (16)
 * keys held in this host's memory, and call the library for everything
 * else; same arguments, results and statistics.  Or call
 * ps_pull_sync_inline / ps_push_sync_inline by name after including
 * psmem_static.h.  Needs liburcu's headers (pkg-config liburcu-memb).
 * The library's own ps_pull_sync / ps_push_sync run the same code for so
 * few keys: PS_INLINE saves the call and the argument checks (bench/micro's
 * pull1 / pull1_lib and push1 / push1_lib rows measure both).
 */

/* ------------------------------------------------- hot-spot replication */

/*
 * A table created with repl_max > 0 can replicate up to repl_max keys (the
 * hot spots) on every node, beside relocating the others (Lapse2/NuPS).
 *
 *   - pull of a replicated key reads this node's replica (local memory);
 *   - push adds into this node's replica and into a node-local delta, so a
 *     node reads its own pushes at once;
 *   - a sync round, run by each node's service thread repl_rate times per
 *     second (and by ps_sync), adds the node's deltas into the key's primary
 *     copy and refreshes the node's replicas from it.
 *
 * Staleness: a push made on node A is in the primary after A's next round
 * and in node B's replica after B's round that follows: at most about
 * 2 / repl_rate seconds while the service threads run.  Conservation:
 * primary + the deltas of all nodes is exactly the sum of all pushes at
 * every moment, also across switches between replication and relocation.
 * ps_localize of a replicated key is a no-op (it is local everywhere).
 *
 * Not collective: any thread of any node may switch keys at any time.
 *
 * Multi-host jobs: each host has its own replicated set, and may replicate
 * keys held by other hosts.  For those, a round per host (repl_rate per
 * second) sends this host's deltas to the holder, where they are added to
 * the primary with the table's rule, and pulls the primaries back, one
 * batch per holder.  Staleness: about 1/repl_rate + a round trip for a
 * push on the holder host, 2/repl_rate + 2 round trips for one on another
 * host.  Reads of a key may go back across a switch of it (on this host or
 * its holder); not otherwise.
 */

/* Replicates keys (idempotent).  Returns the number newly replicated, or
 * PS_ERCAP when they do not fit in repl_max (then none is replicated). */
int ps_replicate(ps_table *t, const ps_key *keys, size_t n);

/* Turns replicated keys back into ordinary (relocatable) ones, merging
 * every node's pending delta first.  Returns the number switched. */
int ps_unreplicate(ps_table *t, const ps_key *keys, size_t n);

/* Makes the replicated set exactly the k keys with the largest counts
 * (counts[0 .. num_keys-1], e.g. word frequencies; ties go to the smaller
 * key).  Returns the number of keys replicated. */
int ps_replicate_top(ps_table *t, const uint64_t *counts, size_t k);

/* As ps_replicate_top with psmem's own access counts (table flag
 * PS_COUNT_ACCESS; -ENOTSUP without it), then restarts the counts. */
int ps_replicate_hot(ps_table *t, size_t k);

/* 1 if key is replicated now, 0 if not, or a negative code. */
int ps_is_replicated(ps_table *t, ps_key key);

/* Number of keys replicated now (>= 0), or a negative code. */
int64_t ps_replicated_count(ps_table *t);

/*
 * A full sync round for every node: returns once every node's replicas
 * reflect every push to t completed before the call (and every primary
 * holds them).  Cheap no-op on a table without replication.
 *
 * Multi-host jobs: covers this host.  On return, every push completed on
 * this host before the call is in its key's primary (here or at the
 * holder), and this host's replicas reflect every push that had reached
 * the holders when they answered.  For a guarantee over all hosts: ps_sync
 * on every host, ps_barrier, ps_sync on every host, ps_barrier; then every
 * read anywhere returns every push made before the first barrier.  Returns
 * PS_EHOSTDOWN if a holder could not be reached (the deltas stay here).
 */
int ps_sync(ps_table *t);

/* ---------------------------------------------------------------- sampling */

/*
 * Drawing keys (e.g. negative samples) from a distribution over a table's
 * keys, with their current values (NuPS sampling management).
 *
 * A ps_dist is built once per table and distribution (Vose's alias method:
 * O(num_keys) to build, O(1) per draw) and is read-only afterwards: every
 * thread of the process may share it.  A ps_sampler is one thread's
 * declaration that it will draw n samples; it is not shared between threads.
 *
 * Schemes (per table, per process: ps_table_set_sampling):
 *   naive  exact independent draws from the distribution, wherever the
 *          keys live.
 *   local  draws among the keys this node holds at the time of the draw,
 *          with probability proportional to their weight (the distribution
 *          conditioned on "local").  Biased by placement: keys held by
 *          other nodes are never drawn, and the draw distribution shifts as
 *          keys move.  When no local key is found (64 x nodes rejected
 *          draws) the sample is a naive draw instead, counted as a
 *          fallback (ps_sample_info_get, ps_node_stats.sample_fallbacks).
 *   pool   prepare draws ceil(n / U) keys from the distribution and starts
 *          localizing them (asynchronously, like ps_localize); each pool key
 *          is then served U times (in U passes over the pool, each pass in a
 *          fresh random order), so n samples cost ceil(n / U) draws.
 *          Each pool entry is served exactly U times when U divides n,
 *          otherwise floor(n / P) or ceil(n / P) <= U times (P pool size).
 */
typedef struct ps_dist ps_dist;
typedef struct ps_sampler ps_sampler;

enum ps_sample_scheme {
	PS_SAMPLE_NAIVE = 0,  /* default of every table */
	PS_SAMPLE_LOCAL = 1,
	PS_SAMPLE_POOL = 2,
};

#define PS_SAMPLE_DEFAULT_REUSE 8u     /* U of "pool" without ":U" */
#define PS_SAMPLE_MAX_REUSE     65536u

/*
 * Builds the distribution over t's keys: weights[k] >= 0 for k in
 * 0 .. num_keys-1 (the probability of k is weights[k] / sum), or
 * weights == NULL for uniform.  A negative, NaN or infinite weight is
 * PS_EWEIGHT; weights that are all zero are PS_EZEROWEIGHTS.
 */
ps_dist *ps_dist_create(ps_table *t, const double *weights, int *err);
void ps_dist_free(ps_dist *d); /* once no sampler of it is left */

/*
 * Chooses t's sampling scheme for the samplers this process prepares from
 * now on (samplers already prepared keep theirs).  reuse: for
 * PS_SAMPLE_POOL, U in 1 .. PS_SAMPLE_MAX_REUSE; for the other schemes 0
 * or 1.  Anything else is PS_ESCHEME and changes nothing.  Process-local:
 * nodes may choose differently.
 */
int ps_table_set_sampling(ps_table *t, enum ps_sample_scheme scheme, unsigned reuse);

/*
 * Parses "naive", "local", "pool" (U = PS_SAMPLE_DEFAULT_REUSE) or "pool:U"
 * (decimal U in 1 .. PS_SAMPLE_MAX_REUSE), e.g. for --sampling.  Sets
 * *reuse to 1 for naive and local.  Anything else is PS_ESCHEME, and the
 * outputs are left untouched.
 */
int ps_sample_scheme_parse(const char *s, enum ps_sample_scheme *scheme, unsigned *reuse);
const char *ps_sample_scheme_name(enum ps_sample_scheme scheme); /* "naive"... or "?" */

/*
 * Declares that the calling thread will draw n samples of d (NULL:
 * uniform) from t, with t's current scheme.  With pool, draws the pool now
 * and starts its localization.  The draws are a function of (table seed,
 * table id, node, seed) and the scheme (and, for local, the placement):
 * give each thread and each prepare its own seed (e.g. batch * threads +
 * thread), or they repeat each other's draws.  A d built for another table
 * is PS_EDIST.  Returns NULL and sets *err on failure.
 */
ps_sampler *ps_sample_prepare(ps_table *t, size_t n, const ps_dist *d, uint64_t seed, int *err);

/*
 * The next k samples: their keys, and (values != NULL) their current values
 * (pulled with ps_pull_sync, value_len floats each).  With pool, the first
 * call waits for the pool's localization.  Returns k, or a negative code:
 * more than the samples left is PS_EDRAINED and draws nothing (the samples
 * left can still be pulled).
 */
int64_t ps_sample_pull(ps_sampler *s, size_t k, ps_key *keys, float *values);

/*
 * Waits for the pool's localization (no-op for naive and local).  Returns 0
 * or its error (e.g. PS_EFULL: some pool keys stayed remote; the samples
 * are still correct and current), the same on every call.
 */
int ps_sample_wait(ps_sampler *s);

/* Waits as ps_sample_wait, frees s, and returns what ps_sample_wait
 * returns (PS_EHANDLE for an invalid s). */
int ps_sample_finish(ps_sampler *s);

typedef struct ps_sample_info {
	enum ps_sample_scheme scheme;
	unsigned reuse;           /* U (1 unless pool) */
	size_t prepared, served;  /* n, and samples pulled so far */
	size_t pool_size;         /* ceil(n / U) with pool, else 0 */
	const ps_key *pool;       /* the pool's keys (order unspecified), or NULL */
	uint64_t fallbacks;       /* local: samples that were naive draws */
} ps_sample_info;

int ps_sample_info_get(const ps_sampler *s, ps_sample_info *out);
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
 * (ps_num_nodes * ps_num_threads participants; times ps_num_hosts in a
 * multi-host job).  Worker i of ps_run_workers
 * is participant i of its node; another thread takes a free participant
 * slot at its first call and gives it back when it exits (-EBUSY when
 * ps_num_threads threads of the node hold one).  Returns PS_EDEAD if a node
 * it waits for died (psrun --on-failure abort; under --on-failure restart
 * it waits for the dead node's replacement), PS_EEXITED if every node it
 * waits for that can no longer come exited normally (ps_finalize: the
 * nodes called ps_barrier a different number of times), -EINVAL after
 * ps_finalize.
 * PS_EHOSTDOWN if another host failed or left (under psrun
 * --on-host-failure continue a host that dies is dropped instead: the
 * barrier completes over the hosts present; see ps_hosts_alive).
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
 *
 * Multi-host jobs: the bound holds over every worker of every host.  Each
 * host sends the others its slowest worker's clock whenever it rises
 * (through the bridge); a waiter also waits for those.  "Pushed before"
 * means completed: ps_push_sync returned, or the ps_wait of a ps_push did
 * (a push still in flight to another host at ps_clock is not covered).
 * Every host must set the same bound: each ps_clock waits until it has
 * heard every host's bound (so the first one, even under ASP, waits until
 * every host has made its first call) and returns PS_EMISMATCH, with a
 * message on stderr naming both bounds, if one differs.
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
 * PS_EDEAD if a node this worker waits for died, PS_EEXITED if it
 * finalized (exited normally) behind this clock, -EINVAL if the
 * calling thread is not a worker; across hosts also PS_EHOSTDOWN if a host
 * it waits for left or died (or this host's psrun is gone), PS_EMISMATCH
 * if another host's bound differs.
 */
int ps_clock(ps_world *w);

/* Clock of worker `thread` of `node` (>= 0) of THIS host, or a negative
 * code.  Another host's workers are not readable one by one: see
 * ps_clock_read_host. */
int64_t ps_clock_read(ps_world *w, int node, int thread);

/* Slowest clock over the workers of `host` (>= 0), or -EINVAL: exact for
 * this host; for another host the last value it sent, a lower bound that
 * lags its real one by the bridge's latency (0 before it sent any). */
int64_t ps_clock_read_host(ps_world *w, int host);

/*
 * Parses "bsp", "ssp:S" or "asp" (an app's --sync flag).  Returns 0 and
 * sets *mode and *staleness, or -EINVAL and writes why (a one-line
 * message naming text, no newline) into why[why_len].
 */
int ps_clock_parse(const char *text, int *mode, int *staleness, char *why, size_t why_len);

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
 *
 * Several hosts: the calls are collective over every node of every host.
 * Host 0 writes its home key range of every table to path, host R to
 * path.hostR (file format version 2, naming the host count and rank); the
 * checkpoint counts only once host 0's file is renamed, after every host's
 * part is durable, so a host dying meanwhile leaves the previous checkpoint
 * whole (host R keeps its previous part as path.hostR.prev until then).
 * ps_restore(w, path) restores each host's range from its own part and
 * refuses (PS_ESHAPE / PS_ECKPT, nothing changed on any host) parts of
 * another host count, another rank, or another checkpoint; psrun --restore
 * checks this host's part before starting nodes.  A table with update-rule
 * state cannot be checkpointed while one of its keys is held away from its
 * home host (-ENOTSUP).  psstat --checkpoint may be pointed at any host:
 * every host writes its part at the same ps_checkpoint_poll.
 *
 * Elastic jobs and lost or departed hosts: there is one part per host the
 * job started with (its homes), so a fresh job of that host count restores
 * it.  A home that left (psrun --drain) or was lost (--on-host-failure
 * continue) has its part written by the host that took its keys over (its
 * backup host); a joiner writes none but takes part in the call.  A host
 * lost during a checkpoint makes it fail on every survivor with the
 * reason, and the previous checkpoint stays whole.  ps_restore in a running
 * job needs every key at its home now (-ENOTSUP otherwise, e.g. after a
 * joiner took its share of keys).
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
	uint64_t repl_keys;                 /* keys pulled/pushed through a replica */
	uint64_t repl_rounds;               /* replica sync rounds of this node */
	uint64_t repl_age_ns;               /* time since its last round (0: none yet) */

	uint64_t samples;                   /* keys served by ps_sample_pull */
	uint64_t sample_fallbacks;          /* local scheme: naive draws, no local key found */
} ps_node_stats;

int ps_stats(ps_world *w, int node, ps_node_stats *out);

/* Prints who waits for what (barriers, slot locks, requests) to f. */
void ps_dump(ps_world *w, FILE *f);

#ifdef __cplusplus
}
#endif

/* One API, two speeds: the inline versions under PS_INLINE (see above). */
#ifdef PS_INLINE
#include "psmem_static.h"
#define ps_pull_sync(t, keys, n, values) ps_pull_sync_inline(t, keys, n, values)
#define ps_push_sync(t, keys, n, updates) ps_push_sync_inline(t, keys, n, updates)
#endif
#endif /* PSMEM_H */
