/*
 * mf - matrix factorization with biases, trained by SGD (blocked like
 * LIBMF's FPSGD, with its per-row adaptive learning rate), its model kept
 * in psmem tables.
 *
 *   mf --train FILE [--test FILE] [--rank K] [--lr X] [--reg X] [--epochs N]
 *      [--threads T] [--policy classic|localize] [--sync bsp|ssp:S|asp]
 *      [--rule sum|sgd|adagrad] [--seed S] [--json FILE] [--save FILE]
 *      [--checkpoint FILE [--checkpoint-every K]] [--resume FILE]
 *   psrun -n N [-t T] [--on-failure restart] mf ...
 *   psrun -n N --hosts H --host-rank R --coordinator ADDR:PORT --token-file F mf ...
 *
 * Model: r(u,i) ~ mean + b_u + b_i + p_u . q_i.  A user row in table U is
 * [p_u (rank floats), b_u, a_u, c_u], an item row in table V is [q_i, b_i,
 * a_i, c_i], where a and c accumulate the row's squared gradients of the
 * factors (mean over the rank) and of the bias, for the adaptive learning
 * rate (--rule sgd/adagrad: [p_u, b_u] and [q_i, b_i], the rule keeps its
 * own state); the global mean is computed from the training data by every
 * node.
 *
 * Data: every node reads the whole training file (ids must map to the same
 * dense ids on every node, and that needs every line in file order), then
 * keeps the ratings of its workers' shares.  Users are dealt to S shares
 * by rating count (largest first, snake order), so the shares' loads are
 * balanced; S is --shares, by default the N x T workers of the job at its
 * start (N counts every node of every host: app_gnode, host h's nodes are
 * h * n .. h * n + n - 1 under psrun -n n --hosts H), one share each.
 * Each share is trained by one worker of a host present (see "Shares"),
 * so each rating is trained once per epoch by one worker of the whole job,
 * hosts joining, leaving or lost included.  Each share's users get a
 * contiguous key range of U, so range placement puts every user row on
 * the node of the share's home worker (across hosts too: see partition).
 * A share's trainer owns its users' rows outright.  It trains a step's ratings in tiles (user
 * bin x item bin, see "tiles" below): per user bin it pulls the bin's user
 * rows in one batched call, per tile the tile's item rows, trains there
 * with vector loops and pushes the differences in one batched call each;
 * for rows nobody else updates meanwhile that is exactly sequential SGD.
 * Each row steps by lr / sqrt(1 + its accumulated squared gradients) (Chin
 * et al., PAKDD 2015, as LIBMF).
 *
 * Policies (item rows are where they differ):
 *   classic   V is range-placed and never moves; every worker reads and
 *             updates any item row wherever it lives (asynchronous SGD:
 *             two workers may train one item bin at once, each on the
 *             rows as its tile found them; both differences are added).
 *             Workers walk the item bins from different starting bins, so
 *             at equal speed they do not meet.
 *   localize  DSGD parameter blocking as in Lapse: items are dealt into
 *             B = S blocks (balanced by count); an epoch is B sub-epochs;
 *             in sub-epoch s share v's ratings on items of block (v + s)
 *             mod B are trained, so no two workers touch the same item row,
 *             and the share's worker localizes that block to its node first
 *             (from any node of any host: ps_localize moves keys across
 *             hosts).  The next block is trained now by share v + 1; when
 *             its worker is on this host, its localize is issued asynchronously
 *             when 3/4 of the current sub-epoch is done (the other worker's
 *             last accesses become accesses to another node's memory) and
 *             waited for after the barrier; when it is on another host, the
 *             block moves right after the barrier instead (a network round
 *             trip per tile of the other worker's last quarter cost more
 *             than the wait).  Every training access is then local.
 *
 * --replicate K: the K items with the most training ratings (the hot spots
 * of skewed data) are replicated on every node, from the initial values on;
 * the other items follow the policy.  Sync rounds run 200 times a second by
 * default (--repl-rate): every rating updates its item, and on zipf data
 * at 20 rounds a second the nodes' replicas drifted far enough apart to
 * cost test RMSE (0.75-0.82 against 0.66 unreplicated; 0.66 at 200).  After each training barrier (the
 * epoch's under classic, every sub-epoch's under localize: the next
 * sub-epoch hands the item blocks to other workers, maybe on other nodes)
 * one worker runs ps_sync, and a barrier holds the others until every
 * node's replica updates are merged and in every replica: DSGD stays
 * exact, and every worker evaluates (and node 0 saves) the same model.
 *
 * Per epoch: ps_sync_hosts (joins and leaves take effect there, see
 * "Shares"); train; barrier; every worker evaluates its shares' test
 * ratings (those of their users); the sums and the count of ratings
 * trained go through a small transient psmem table (one key per epoch and
 * share, on the share's home node); barrier; node 0 of host
 * 0 (the first host present) prints train RMSE (prequential, errors before each update) and test
 * RMSE, and writes the summary (with the ratings each node of each host
 * trained per epoch) and the model; node 0 of every other host prints
 * which share it trains.  Between the training barrier and the
 * next, the model is quiescent: one thread per node writes the checkpoints
 * there (--checkpoint, psstat --checkpoint).
 *
 * Steps and restarts.  Everything a worker does between two barriers is a
 * step: initial rows, a (sub-)epoch's training, an evaluation.  The order
 * of a step's groups is a function of (seed, epoch, sub-epoch, share) only,
 * so under psrun --on-failure restart a restarted node skips the steps its
 * dead predecessor finished (ps_replaying), and resumes the one in progress
 * after the groups it had started (ps_progress_get; set before a group is
 * trained, so a group cut short by the crash is lost, never applied twice).
 * Evaluation writes its sum idempotently (pull, push the difference), the
 * training sum adds only what this process trained.  --resume FILE (or
 * psrun --restore FILE) restores the tables and continues with the next
 * epoch; the same seed gives the same order as an uninterrupted run.
 *
 * --sync bsp|ssp:S|asp (default: none, no clocks): each worker cuts its
 * ratings of an epoch (classic) or of a sub-epoch (localize) into
 * CLOCK_SLICES slices and calls ps_clock after each, so every worker
 * makes the same number of clocks between two barriers (a worker blocked
 * on the bound never waits for one that sits in a barrier).  The bound
 * limits how far a worker's updates of the shared item rows run ahead of
 * the slowest worker's.
 *
 * --rule sum|sgd|adagrad (default: sum): sum is the scheme above (SGD
 * computed by the worker in tiles, differences pushed and added).  sgd and adagrad
 * make the tables' server-side update rule the optimizer (learning rate
 * --lr; adagrad eps 1e-8): per rating the worker pulls the user and item
 * rows, and pushes their gradients (regularization included) to both; the
 * rule applies each under the slot lock, adagrad with its accumulator
 * beside the values.  Initial rows are stored with ps_assign_sync.
 *
 * With --sync, a step the restarted node skips still makes its clocks
 * (they are replays that do not advance again, lib/clock.c CL5), so every
 * worker keeps making the same number of clocks between two barriers.
 *
 * Evaluation pulls the rows of EVAL_CHUNK test ratings in one batch per
 * table; initial rows are stored INIT_CHUNK at a time.
 */
#include <errno.h>
#include <pthread.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "psmem.h"

#define NONE APP_NONE

#define CLOCK_SLICES 16 /* --sync: clocks per epoch (classic) or sub-epoch (localize) */
#define ADAGRAD_EPS 1e-8f

enum { RULE_SUM, RULE_SGD, RULE_ADAGRAD };
static const char *const rule_names[] = {"sum", "sgd", "adagrad"};

struct cfg {
	const char *train, *test, *json, *save, *ckpt, *resume;
	int rank, epochs, threads, ckpt_every;
	double lr, reg, init_std;
	uint64_t seed;
	bool localize;
	const char *sync;     /* NULL: no clocks */
	int sync_mode, staleness;
	int rule;
	long replicate;     /* items replicated on every node; 0 = none */
	double repl_rate;   /* replica sync rounds per second per node */
	int shares;         /* --shares; 0: the workers of the job at its start */
	int wait_hosts, wait_epoch; /* --wait-hosts N@E (0: none): hold epoch E (1-based) until N hosts are present */
};

/* A run of one user's ratings inside one (worker, block) bucket. */
struct group {
	uint64_t ukey;
	size_t start, len;
};

/* --rule sum: a rating inside a tile or an evaluation chunk, its user and
 * item as indices into the rows pulled for it (UINT32_MAX: none, an unseen
 * user or item of a test rating). */
struct trating {
	uint32_t u, i;
	float r;
};

struct tile {
	size_t r0, nr; /* its ratings: tiles.r[r0 .. r0 + nr) */
	size_t i0, ni; /* its items: tiles.ikeys[i0 .. i0 + ni) */
};

/* A (worker, block) bucket cut into tiles: nub user bins x nib item bins. */
struct tiles {
	size_t nub, nib;
	size_t *ustart;     /* nub + 1: user bin k is ukeys[ustart[k] .. ustart[k + 1]) */
	ps_key *ukeys;      /* the bucket's users, by key */
	struct tile *t;     /* tile (k, j) at t[k * nib + j] */
	struct trating *r;  /* by tile; within a tile by user, file order within a user */
	ps_key *ikeys;      /* each tile's items, by key */
};

/* A worker's test ratings in chunks, each chunk's rows pulled at once. */
struct echunk {
	size_t r0, nr, u0, nu, i0, ni;
};

struct evalset {
	struct trating *r;
	struct echunk *c;
	size_t nc;
	ps_key *ukeys, *ikeys;
};

/* The data of one share (see "Shares" below): its ratings by block, its
 * test ratings, its tiles and evaluation chunks. */
struct worker_data {
	struct tiles *tiles;  /* --rule sum: B, built by the worker */
	struct evalset ev;    /* built by the worker */
	struct app_rating *r;     /* its ratings, bucketed by block, by user within */
	struct group *g;      /* its groups, bucketed by block */
	size_t *gstart;       /* B + 1: groups of block b are g[gstart[b] .. gstart[b+1]) */
	size_t *rcount;       /* B: ratings in block b */
	size_t nr;
	struct app_rating *test;  /* its share of the test ratings */
	size_t ntest;
};

/* Hosts mf keeps track of (psmem's PS__MAX_HOSTS): ids, joined ones included. */
#define MF_MAX_HOSTS 1024

struct job {
	struct cfg c;
	ps_world *w;
	/* nodes and node count every node of every host of the job's start:
	 * node is app_gnode, nodes app_gnodes (host h's nodes are h *
	 * host_nodes ..); a worker's global id (physical) is node * threads +
	 * thread, any host's, a joined one's too */
	int nodes, node, threads, workers, blocks;
	/* hosts at the start (a joiner: learnt at its first ps_sync_hosts), this host, psrun -n */
	int hosts, host, host_nodes;
	int shares;           /* S: the data's split (--shares, default workers at the start) */
	int host_workers;     /* host_nodes * threads */
	bool joiner;          /* ps_joined: started by psrun --join */
	app_idmap *users, *items;
	size_t nusers, nitems;
	uint64_t *ukey;       /* dense user id -> key in U */
	uint64_t ukeys;       /* number of keys of U */
	ps_key *block_items;  /* items of block b: block_items[bstart[b] .. bstart[b+1]) */
	size_t *bstart;
	double mean, rmin, rmax;
	size_t ntrain, ntest, test_unseen;
	struct worker_data *wd; /* this node's threads */
	uint64_t *icount;     /* --replicate: training ratings per item */
	ps_table *U, *V, *M;
	int vl;               /* value_len of U and V: rank + 3 under --rule sum (factors, bias, their
			       * accumulators), else rank + 1 (factors, bias) */
	int start_epoch;      /* epochs done before this run (--resume) */
	size_t max_groups;    /* groups of the largest (worker, block) bucket */
	/* filled by node 0, thread 0 */
	double train_seconds, total_seconds, rmse, train_rmse;
	double train_cpu;     /* node 0's CPU seconds in the training phases */
	int epochs_trained;   /* by this process (not replayed, not resumed) */
	double *epoch_rmse;
	/* thread 0 of each node, each epoch: [gnode * epochs + e] ratings
	 * trained by the workers of node gnode (host * host_nodes + node, any
	 * host seen), trained_hosts hosts' rows allocated */
	uint64_t *trained;
	int trained_hosts;
	int diverged_epoch;   /* set by each node's thread 0: the epoch whose RMSE was inf or NaN */
	/* kept from partition for a re-split (share_data) */
	uint32_t *uw;         /* user -> share */
	uint32_t *ib;         /* item -> block */
	uint64_t C;           /* keys of U per share */
	uint64_t *share_users; /* users of each share: keys v * C .. v * C + share_users[v] - 1 */
	int *owner0;          /* share -> physical worker at the start (every host of the start present) */
	struct worker_data *data0; /* this node's workers' shares at the start, in owner0's order */
	int *data0_share;     /* their shares */
	int ndata0;
	pthread_mutex_t reload_lock; /* guards reloaded, rtr, rte */
	bool reloaded;
	struct app_ratings rtr, rte; /* the data files, read again by this node's first worker that gains a share */
	/* membership events, written by thread 0 (each node its own view):
	 * per host id, 1 + the epoch at whose start this node saw it join /
	 * go (lost or left: told apart at the end by the leave notes, table L);
	 * 0: none */
	int *joined_epoch, *gone_epoch;
	int hosts_seen;       /* 1 + the highest host id seen present */
	int lead_host;        /* the host whose node 0 reports: the first present (thread 0's) */
	bool lead;            /* this node reported (set by its thread 0 at the end) */
	bool left;            /* this host left the job (ps_sync_hosts returned 0) */
	ps_table *L;          /* leave notes: key h = 1 + the epoch from which host h's shares went to the others */
};

/*
 * The data of shares list[0 .. n) (see "Shares"): their ratings into
 * (share, block) buckets and their test ratings, from the whole data files
 * and partition's deal (uw, ib, C).  partition calls it for the shares of
 * this node's workers at the start; a worker that gains shares at a
 * re-split (share_map) for those.  *max_groups grows to the largest
 * bucket's group count.
 */
static struct worker_data *share_data(const struct job *jb, const struct app_ratings *tr, const struct app_ratings *te,
				      const int *list, int n, size_t *max_groups)
{
	int S = jb->shares, B = jb->blocks;
	const uint32_t *uw = jb->uw, *ib = jb->ib;
	const uint64_t *ukey = jb->ukey;
	uint64_t C = jb->C;
	/* slot[v]: share v's index in list, -1 if not in it */
	int *slot = malloc((size_t)S * sizeof *slot);
	if (!slot)
		app_die("out of memory");
	for (int v = 0; v < S; v++)
		slot[v] = -1;
	for (int k = 0; k < n; k++)
		slot[list[k]] = k;
	/* the shares' ratings into (share, block) buckets, by user key within
	 * a bucket, file order within a user: counting sort by key (share
	 * list[k]'s keys at k * C .. in this sort), then a stable counting sort
	 * by bucket */
	uint64_t nk = (uint64_t)n * C;
	size_t nb = (size_t)n * (size_t)B, mine = 0;
	size_t *ucount = calloc(nk + 1, sizeof *ucount);
	size_t *bcount = calloc(nb + 1, sizeof *bcount);
	if (!ucount || !bcount)
		app_die("out of memory");
#define SORTKEY(rt) ((uint64_t)slot[uw[(rt).u]] * C + ukey[(rt).u] % C)
	for (size_t k = 0; k < tr->n; k++)
		if (slot[uw[tr->v[k].u]] >= 0) {
			ucount[SORTKEY(tr->v[k]) + 1]++;
			mine++;
		}
	for (uint64_t k = 0; k < nk; k++)
		ucount[k + 1] += ucount[k];
	struct app_rating *byu = malloc((mine ? mine : 1) * sizeof *byu);
	struct app_rating *sorted = malloc((mine ? mine : 1) * sizeof *sorted);
	if (!byu || !sorted)
		app_die("out of memory");
	for (size_t k = 0; k < tr->n; k++)
		if (slot[uw[tr->v[k].u]] >= 0)
			byu[ucount[SORTKEY(tr->v[k])]++] = tr->v[k];
#undef SORTKEY
	free(ucount);
#define BUCKET(rt) ((size_t)slot[uw[(rt).u]] * (size_t)B + (B > 1 ? ib[(rt).i] : 0))
	for (size_t k = 0; k < mine; k++)
		bcount[BUCKET(byu[k]) + 1]++;
	for (size_t b = 0; b < nb; b++)
		bcount[b + 1] += bcount[b];
	size_t *bpos = malloc((nb + 1) * sizeof *bpos);
	if (!bpos)
		app_die("out of memory");
	memcpy(bpos, bcount, (nb + 1) * sizeof *bpos);
	for (size_t k = 0; k < mine; k++)
		sorted[bpos[BUCKET(byu[k])]++] = byu[k];
#undef BUCKET
	free(bpos);
	free(byu);

	struct worker_data *wd = calloc((size_t)(n ? n : 1), sizeof *wd);
	if (!wd)
		app_die("out of memory");
	for (int t = 0; t < n; t++) {
		struct worker_data *d = &wd[t];
		size_t r0 = bcount[(size_t)t * B], r1 = bcount[(size_t)(t + 1) * B];
		d->nr = r1 - r0;
		d->r = malloc((d->nr ? d->nr : 1) * sizeof *d->r);
		d->gstart = calloc((size_t)B + 1, sizeof *d->gstart);
		d->rcount = calloc((size_t)B, sizeof *d->rcount);
		size_t ng = 0;
		for (size_t k = r0; k < r1; k++)
			if (k == r0 || sorted[k].u != sorted[k - 1].u ||
			    bcount[(size_t)t * B + (B > 1 ? ib[sorted[k].i] : 0)] == k)
				ng++;
		d->g = malloc((ng ? ng : 1) * sizeof *d->g);
		if (!d->r || !d->gstart || !d->rcount || !d->g)
			app_die("out of memory");
		memcpy(d->r, sorted + r0, d->nr * sizeof *d->r);
		ng = 0;
		for (int b = 0; b < B; b++) {
			size_t s0 = bcount[(size_t)t * B + b] - r0, s1 = bcount[(size_t)t * B + b + 1] - r0;
			d->gstart[b] = ng;
			d->rcount[b] = s1 - s0;
			for (size_t k = s0; k < s1; k++) {
				if (k == s0 || d->r[k].u != d->r[k - 1].u)
					d->g[ng++] = (struct group){.ukey = ukey[d->r[k].u], .start = k, .len = 0};
				d->g[ng - 1].len++;
			}
		}
		d->gstart[B] = ng;
		for (int b = 0; b < B; b++)
			if (d->gstart[b + 1] - d->gstart[b] > *max_groups)
				*max_groups = d->gstart[b + 1] - d->gstart[b];
	}
	free(sorted);
	free(bcount);

	/* test ratings: to the share that trains the user, a user unseen in
	 * training round-robin over the shares */
#define TEST_SHARE(k) (te->v[k].u != NONE ? (int)uw[te->v[k].u] : (int)((k) % (size_t)S))
	for (size_t k = 0; k < te->n; k++)
		if (slot[TEST_SHARE(k)] >= 0)
			wd[slot[TEST_SHARE(k)]].ntest++;
	for (int t = 0; t < n; t++) {
		struct worker_data *d = &wd[t];
		d->test = malloc((d->ntest ? d->ntest : 1) * sizeof *d->test);
		if (!d->test)
			app_die("out of memory");
		d->ntest = 0;
	}
	for (size_t k = 0; k < te->n; k++)
		if (slot[TEST_SHARE(k)] >= 0) {
			struct worker_data *d = &wd[slot[TEST_SHARE(k)]];
			d->test[d->ntest++] = te->v[k];
		}
#undef TEST_SHARE
	free(slot);
	return wd;
}

/*
 * Shares.  The data is split into S shares (--shares; by default one per
 * worker of the job at its start, so that figures and behaviour are those
 * of one worker per share): users are dealt to the shares by rating count,
 * each share's users get a contiguous key range of U (share v: v * C ..),
 * the DSGD grid of --policy localize is over the shares (B = S blocks, in
 * sub-epoch s share v trains block (v + s) mod B), and the order of a
 * share's step and its metrics key are functions of the share, never of
 * who trains it.  Each share is trained by exactly one worker of a host
 * present: share_map, a function of (S, workers per host, the hosts of
 * the start, the hosts present) only, so every host computes the same map
 * from ps_hosts_alive without talking.  A worker trains its shares' steps
 * one after the other, in share order, between the same barriers.
 *
 * The map is recomputed whenever the hosts present change: joins and
 * leaves take effect at ps_sync_hosts, which every worker calls at the
 * start of each epoch (the epoch's number goes with it, so a joiner learns
 * where to start); a lost host is seen after any barrier (the training
 * steps', the evaluation's) and re-split at once, as psmem drops it.
 */

/* The sync value of ps_sync_hosts: the epoch about to start (below
 * 1000000: --epochs' bound), the share count and the hosts of the start
 * (what a joiner cannot know), in decimal fields of 6 digits so that
 * where psrun logs it it reads HOSTS SHARES EPOCH: 2000006000004 is 2
 * hosts, 6 shares, epoch index 4. */
#define SYNC_FIELD 1000000ull
#define MAX_SHARES ((int)SYNC_FIELD - 1)

static uint64_t sync_pack(int e, int shares, int hosts)
{
	return ((uint64_t)hosts * SYNC_FIELD + (uint64_t)shares) * SYNC_FIELD + (uint64_t)e;
}

static void sync_unpack(uint64_t x, int *e, int *shares, int *hosts)
{
	*e = (int)(x % SYNC_FIELD);
	*shares = (int)(x / SYNC_FIELD % SYNC_FIELD);
	*hosts = (int)(x / SYNC_FIELD / SYNC_FIELD);
}

/*
 * owner[v] := the physical worker (host * host_workers + node * threads +
 * thread) that trains share v when the hosts alive[0 .. MF_MAX_HOSTS) are
 * present (at least one).  Each present worker, in (host, node, thread)
 * order, has a quota of floor(S / P) shares (P present workers), the
 * first S mod P one more.  Share v's home is worker floor(v W0 / S) of the
 * start (W0 = hosts0 * host_workers: the node its user rows were created
 * on); it stays there while that host is present and the worker's quota
 * allows, in share order.  The shares left (their home gone, or the
 * quota full: a joiner needs some) go, in share order, to the first
 * workers with quota left.  So with every host of the start present and
 * S = W0 share v is worker v's (today's split), a lost host's shares go
 * to the first survivors' workers, and a joiner takes its quota from the
 * shares the others' quotas no longer hold.
 */
static void share_map(int S, int host_workers, int hosts0, const uint8_t *alive, int *owner)
{
	int *rank = malloc(MF_MAX_HOSTS * sizeof *rank), *hostof = malloc(MF_MAX_HOSTS * sizeof *hostof), np = 0;
	if (!rank || !hostof)
		app_die("out of memory");
	for (int h = 0; h < MF_MAX_HOSTS; h++) {
		rank[h] = alive[h] ? np : -1;
		if (alive[h])
			hostof[np++] = h;
	}
	if (!np)
		app_die("internal: no host present");
	int64_t P = (int64_t)np * host_workers, W0 = (int64_t)hosts0 * host_workers;
	int *quota = malloc((size_t)P * sizeof *quota);
	if (!quota)
		app_die("out of memory");
	for (int64_t j = 0; j < P; j++)
		quota[j] = (int)(S / P + (j < S % P));
	for (int v = 0; v < S; v++) {
		int64_t hw = (int64_t)v * W0 / S;
		int h = (int)(hw / host_workers);
		int64_t j = rank[h] < 0 ? -1 : (int64_t)rank[h] * host_workers + hw % host_workers;
		owner[v] = -1;
		if (j >= 0 && quota[j] > 0) {
			owner[v] = (int)hw;
			quota[j]--;
		}
	}
	int64_t j = 0;
	for (int v = 0; v < S; v++) {
		if (owner[v] >= 0)
			continue;
		while (quota[j] == 0)
			j++;
		owner[v] = hostof[j / host_workers] * host_workers + (int)(j % host_workers);
		quota[j]--;
	}
	free(quota);
	free(rank);
	free(hostof);
}

static void partition(struct job *jb, struct app_ratings *tr, struct app_ratings *te)
{
	int S = jb->shares, T = jb->threads, B = jb->blocks;
	size_t U = jb->nusers, I = jb->nitems;
	uint64_t *cnt = calloc(U > I ? U : I, sizeof *cnt);
	if (!cnt)
		app_die("out of memory");
	for (size_t k = 0; k < tr->n; k++)
		cnt[tr->v[k].u]++;
	uint32_t *uw = app_deal(cnt, U, S); /* user -> share */

	/* user keys: share v's users get keys v*C .. v*C + (its count) - 1.
	 * U has S * C keys; range placement puts host h's share of them on
	 * it (psmem.h, ps_table_create) and splits it evenly over its nodes,
	 * so when S is a multiple of the nodes of the start (the default:
	 * S = workers) every share's user rows are created on the node of its
	 * home worker (share_map), its owner while its host is present. */
	uint64_t *per = calloc((size_t)S, sizeof *per);
	jb->ukey = malloc((U ? U : 1) * sizeof *jb->ukey);
	if (!per || !jb->ukey)
		app_die("out of memory");
	for (size_t u = 0; u < U; u++)
		per[uw[u]]++;
	uint64_t C = 1;
	for (int v = 0; v < S; v++)
		if (per[v] > C)
			C = per[v];
	memset(per, 0, (size_t)S * sizeof *per);
	for (size_t u = 0; u < U; u++)
		jb->ukey[u] = (uint64_t)uw[u] * C + per[uw[u]]++;
	jb->ukeys = (uint64_t)S * C;

	/* item blocks */
	memset(cnt, 0, I * sizeof *cnt);
	for (size_t k = 0; k < tr->n; k++)
		cnt[tr->v[k].i]++;
	uint32_t *ib = app_deal(cnt, I, B);
	jb->bstart = calloc((size_t)B + 1, sizeof *jb->bstart);
	jb->block_items = malloc((I ? I : 1) * sizeof *jb->block_items);
	if (!jb->bstart || !jb->block_items)
		app_die("out of memory");
	for (size_t i = 0; i < I; i++)
		jb->bstart[ib[i] + 1]++;
	for (int b = 0; b < B; b++)
		jb->bstart[b + 1] += jb->bstart[b];
	{
		size_t *fill = calloc((size_t)B, sizeof *fill);
		if (!fill)
			app_die("out of memory");
		for (size_t i = 0; i < I; i++)
			jb->block_items[jb->bstart[ib[i]] + fill[ib[i]]++] = i;
		free(fill);
	}

	jb->uw = uw;
	jb->ib = ib;
	jb->C = C;
	jb->share_users = per; /* counted again: per[v] is share v's user count */
	free(cnt);
	if (jb->joiner) /* its shares: at its first ps_sync_hosts */
		return;
	/* the map at the start, every host of it present; this node's shares */
	uint8_t *alive = calloc(MF_MAX_HOSTS, 1);
	jb->owner0 = malloc((size_t)S * sizeof *jb->owner0);
	jb->data0_share = malloc((size_t)S * sizeof *jb->data0_share);
	if (!alive || !jb->owner0 || !jb->data0_share)
		app_die("out of memory");
	memset(alive, 1, (size_t)jb->hosts);
	share_map(S, jb->host_workers, jb->hosts, alive, jb->owner0);
	free(alive);
	for (int t = 0; t < T; t++)
		for (int v = 0; v < S; v++)
			if (jb->owner0[v] == jb->node * T + t)
				jb->data0_share[jb->ndata0++] = v;
	jb->data0 = share_data(jb, tr, te, jb->data0_share, jb->ndata0, &jb->max_groups);
}

/* ------------------------------------------------------------- training */

static void check(int rc, const char *what)
{
	if (rc < 0)
		app_die("%s: %s", what, ps_strerror(rc));
}

/* Initial row of user or item id: factors uniform on [0, sqrt(12) init_std)
 * (standard deviation init_std; LIBMF's start, all factors positive: with
 * N(0, init_std) factors SGD stayed on the plateau around the biases-only
 * model for 3-4 epochs on the synthetic set), bias 0 (and, under --rule
 * sum, accumulators 0); a function of (seed, kind, id) only, so any node
 * count gives the same. */
static void init_row(const struct job *jb, int kind, uint64_t id, float *row)
{
	uint64_t s = jb->c.seed * 0x9e3779b97f4a7c15ULL + (uint64_t)kind * 0x632be59bd9b4e019ULL + id;
	app_rand(&s);
	for (int f = 0; f < jb->c.rank; f++)
		row[f] = (float)(app_rand_unit(&s) * 3.4641016151377544 * jb->c.init_std); /* sqrt(12) */
	for (int f = jb->c.rank; f < jb->vl; f++)
		row[f] = 0;
}

/* The order of a step's groups (or user bins): a permutation drawn from
 * (seed, epoch, sub-epoch, worker) only, so a restarted or resumed worker
 * finds it again. */
static void step_order(size_t *perm, size_t n, uint64_t seed, int e, int s, int wg)
{
	uint64_t r = seed * 0xd1b54a32d192ed03ULL + (uint64_t)e * 0x9e3779b97f4a7c15ULL +
		     (uint64_t)s * 0x632be59bd9b4e019ULL + (uint64_t)wg;
	for (size_t k = 0; k < n; k++)
		perm[k] = k;
	for (size_t k = n; k > 1; k--) {
		size_t j = (size_t)(app_rand(&r) % k);
		size_t t = perm[k - 1];
		perm[k - 1] = perm[j];
		perm[j] = t;
	}
}

/* A share this worker trains. */
struct share {
	int v;                    /* the share */
	struct worker_data *d;    /* its data (share_data, prepare_data) */
};

struct wstate {
	struct job *jb;
	ps_world *w;
	int t, wg;            /* thread, physical worker id (every host's) */
	/* the share trained now (its data and id: its step order) */
	struct worker_data *d;
	int dwg;
	struct share *sh;     /* this worker's shares, in share order */
	int nsh;
	int *owner;           /* share -> physical worker: the map in force */
	uint8_t *alive;       /* the hosts present it was made for */
	int hosts0;           /* the hosts of the job's start */
	int prefetched;       /* --policy localize: the block localized after the last sub-epoch, -1 none */
	/* a step over several shares: clocks and progress count over all of them */
	size_t clk_base, clk_total; /* ratings of the step's shares before this one; all of them */
	int64_t unit_base;    /* units (tiles or groups) of the step's shares before this one */
	size_t maxu, maxi, maxperm; /* the sizes of P, Q and perm */
	float *pu, *qi, *dq;  /* --rule sgd/adagrad: rows of one rating */
	float *gu;            /* --rule sgd/adagrad: the user row's gradient */
	size_t *perm;         /* a step's group or user-bin order */
	app_progress *prog;   /* node 0 thread 0 only */
	uint64_t done;        /* ratings done this epoch by this worker */
	uint64_t trained;     /* ratings trained in this step by this process (not replayed) */
	/* tiles and evaluation chunks: rows pulled (P, Q) and as pulled (P0, Q0) */
	float *P, *P0, *Q, *Q0;
	ps_key *keys;         /* init_step's batch */
};

/* --sync: ends the slices of the step's ratings (clk_total, over every
 * share the worker trains in it) that `done` ratings of the share trained
 * now complete, after clk_base of the shares before (all of them when
 * done reaches the total; all at once for a worker without shares, so
 * every worker makes CLOCK_SLICES clocks between two barriers). */
static void clock_slices(struct wstate *ws, int *ticks, size_t done)
{
	if (!ws->jb->c.sync)
		return;
	done += ws->clk_base;
	while (*ticks < CLOCK_SLICES && done * CLOCK_SLICES >= (size_t)(*ticks + 1) * ws->clk_total) {
		check(ps_clock(ws->jb->w), "clock");
		(*ticks)++;
	}
}

/* ---------------------------------------------------------- tiles (sum) */

/*
 * --rule sum trains like LIBMF's FPSGD, through psmem.  A step's ratings
 * (a worker's users x the step's items) are cut into tiles: the users into
 * bins of UBIN_BYTES of rows, the items into bins of IBIN_BYTES, tile
 * (k, j) = the ratings of user bin k on item bin j, by user.  Item bins are
 * small (in L2 while a tile runs: its item rows are hit at random), user
 * bins large (a tile walks its users in order, and the bigger the user bin
 * the fewer item rows move per rating: 1 / (users x density) of them; on
 * the synthetic 200k x 50k set 0.014 rows per rating).  For each user bin
 * the worker pulls the bin's user rows with one batched ps_pull_sync into
 * a private buffer; for each tile it pulls the tile's item rows the same
 * way, trains the tile's
 * ratings there (vector loops on rows in cache) and pushes the item rows'
 * differences with one batched ps_push_sync; the user rows' differences go
 * in one push when it leaves the user bin.  Adding differences is exact
 * for any row nobody else updates meanwhile: user rows always (a worker
 * owns its users), item rows under localize (a sub-epoch's block is the
 * worker's alone).  Under classic two workers may train the same item bin
 * at once (asynchronous SGD): each reads the rows as they were when its
 * tile began and neither's update is lost (both differences are added).
 * Workers start their walk over the item bins at different bins
 * (wg * nib / workers), so at equal speed they never meet.
 *
 * The learning rate is per row and adaptive, as LIBMF's (Chin, Zhuang,
 * Juan, Lin, PAKDD 2015): a row keeps in value [rank + 1] the sum of its
 * mean squared gradients acc, and a rating steps the row by
 * lr / sqrt(1 + acc) times its gradient (bias included), then adds the mean
 * of the squared gradient over the rank + 1 values to acc.
 *
 * Restarts: a tile is a step's unit of progress (ps_progress_set before its
 * item rows are pulled); a crash loses the item differences of the tile in
 * progress and the user differences of the user bin in progress, never
 * applies one twice.
 */
#define UBIN_BYTES (16u << 20) /* rows per user bin: this many bytes of them */
#define IBIN_BYTES (512u << 10) /* rows per item bin */
#define MIN_BINS 8            /* see rows_per_bin */
#define EVAL_CHUNK 16384       /* test ratings per evaluation chunk */
#define INIT_CHUNK 1024        /* rows per batch of init_step */

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(PS_SANITIZE)
/* an AVX2+FMA clone picked at load time where the CPU has them; no
 * -march=native in the build; none under sanitizers (an ifunc resolver
 * runs before their run-time is set up: it crashed bench/micro under TSan) */
#define MF_SIMD __attribute__((target_clones("arch=x86-64-v3", "default"), optimize("fp-contract=fast")))
#else
#define MF_SIMD
#endif

typedef float v8f __attribute__((vector_size(32)));

/* the helpers are always inlined, so no call passes a vector and the ABI
 * warning (-Wpsabi, emitted for the clones, down to the end of the file)
 * does not apply */
#pragma GCC diagnostic ignored "-Wpsabi"
static inline __attribute__((always_inline)) v8f v8_load(const float *p)
{
	v8f v;
	memcpy(&v, p, sizeof v);
	return v;
}

static inline __attribute__((always_inline)) void v8_store(float *p, v8f v) { memcpy(p, &v, sizeof v); }

static inline __attribute__((always_inline)) float v8_sum(v8f v)
{
	return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

static inline __attribute__((always_inline)) float dot_rows(const float *p, const float *q, int K)
{
	v8f a0 = {0}, a1 = {0};
	int f = 0;
	for (; f + 16 <= K; f += 16) {
		a0 += v8_load(p + f) * v8_load(q + f);
		a1 += v8_load(p + f + 8) * v8_load(q + f + 8);
	}
	for (; f + 8 <= K; f += 8)
		a0 += v8_load(p + f) * v8_load(q + f);
	float dot = v8_sum(a0 + a1);
	for (; f < K; f++)
		dot += p[f] * q[f];
	return dot;
}

/* The tile's ratings, in order, on rows P (users) and Q (items) of vl
 * floats; returns the sum of the squared errors before each update. */
MF_SIMD static double train_tile(const struct trating *r, size_t n, float *P, float *Q, int K, int vl, float lr,
				 float reg, float mean)
{
	double sse = 0;
	float inv = 1.0f / (float)K;
	int K8 = K & ~7;
	for (size_t k = 0; k < n; k++) {
		float *p = P + (size_t)r[k].u * (size_t)vl, *q = Q + (size_t)r[k].i * (size_t)vl;
		float err = r[k].r - (mean + p[K] + q[K] + dot_rows(p, q, K));
		sse += (double)err * err;
		float ep = lr / sqrtf(1 + p[K + 1]), eq = lr / sqrtf(1 + q[K + 1]);
		v8f gp2 = {0}, gq2 = {0};
		int f = 0;
		for (; f < K8; f += 8) {
			v8f pv = v8_load(p + f), qv = v8_load(q + f);
			v8f gp = reg * pv - err * qv, gq = reg * qv - err * pv;
			gp2 += gp * gp;
			gq2 += gq * gq;
			v8_store(p + f, pv - ep * gp);
			v8_store(q + f, qv - eq * gq);
		}
		float sp = v8_sum(gp2), sq = v8_sum(gq2);
		for (; f < K; f++) {
			float pf = p[f], qf = q[f];
			float gp = reg * pf - err * qf, gq = reg * qf - err * pf;
			sp += gp * gp;
			sq += gq * gq;
			p[f] = pf - ep * gp;
			q[f] = qf - eq * gq;
		}
		p[K + 1] += sp * inv;
		q[K + 1] += sq * inv;
		/* biases: gradient -err, no regularization, their own accumulator */
		p[K] += lr / sqrtf(1 + p[K + 2]) * err;
		q[K] += lr / sqrtf(1 + q[K + 2]) * err;
		p[K + 2] += err * err;
		q[K + 2] += err * err;
	}
	return sse;
}

/* Squared test errors of a chunk (predictions clipped to [lo, hi]). */
MF_SIMD static double eval_chunk(const struct trating *r, size_t n, const float *P, const float *Q, int K, int vl,
				 float mean, float lo, float hi)
{
	double sse = 0;
	for (size_t k = 0; k < n; k++) {
		const float *p = r[k].u == UINT32_MAX ? NULL : P + (size_t)r[k].u * (size_t)vl;
		const float *q = r[k].i == UINT32_MAX ? NULL : Q + (size_t)r[k].i * (size_t)vl;
		float x = mean;
		if (p)
			x += p[K];
		if (q)
			x += q[K];
		if (p && q)
			x += dot_rows(p, q, K);
		x = x < lo ? lo : x > hi ? hi : x; /* clip to the training range */
		double e = (double)r[k].r - x;
		sse += e * e;
	}
	return sse;
}

/* Distinct ids of ids[0..n) (stamped in mark), sorted, appended to out as
 * keys; pos[id] = the id's index among them; returns how many. */
static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

struct idset {
	uint32_t *mark, *pos, *list;
	uint32_t stamp;
};

/* Starts a new set; add() returns nothing, finish() sorts and numbers. */
static void idset_begin(struct idset *s, size_t *n)
{
	if (++s->stamp == 0) /* wrapped: clear the marks */
		app_die("internal: id stamps exhausted");
	*n = 0;
}

static inline void idset_add(struct idset *s, size_t *n, uint32_t id)
{
	if (s->mark[id] != s->stamp) {
		s->mark[id] = s->stamp;
		s->list[(*n)++] = id;
	}
}

static void idset_finish(struct idset *s, size_t n)
{
	qsort(s->list, n, sizeof *s->list, cmp_u32);
	for (size_t k = 0; k < n; k++)
		s->pos[s->list[k]] = (uint32_t)k;
}

/* Rows per bin of n rows: `bytes` of them, and at least MIN_BINS bins
 * (so that small data still has tiles to shuffle and, under classic, the
 * workers' walks over the item bins start apart). */
static size_t rows_per_bin(const struct job *jb, size_t n, size_t bytes)
{
	size_t rows = bytes / ((size_t)jb->vl * sizeof(float));
	if (rows * MIN_BINS > n)
		rows = (n + MIN_BINS - 1) / MIN_BINS;
	return rows < 1 ? 1 : rows;
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		app_die("out of memory");
	return p;
}

/* Cuts bucket b of worker data d into tiles (see above); *maxu, *maxi grow
 * to the largest user bin and tile item count. */
static void build_tiles(const struct job *jb, const struct worker_data *d, int b, struct tiles *ts,
			struct idset *is, size_t *maxu, size_t *maxi)
{
	const struct group *g = d->g + d->gstart[b];
	size_t ng = d->gstart[b + 1] - d->gstart[b], nr = d->rcount[b];
	const struct app_rating *r = d->r + (ng ? g[0].start : 0);
	size_t rows = rows_per_bin(jb, ng, UBIN_BYTES);

	/* user bins: the bucket's users in key order (its groups), rows at a time */
	ts->nub = (ng + rows - 1) / rows;
	ts->ustart = xmalloc((ts->nub + 1) * sizeof *ts->ustart);
	ts->ukeys = xmalloc(ng * sizeof *ts->ukeys);
	for (size_t k = 0; k < ng; k++)
		ts->ukeys[k] = g[k].ukey;
	for (size_t k = 0; k <= ts->nub; k++)
		ts->ustart[k] = k * rows < ng ? k * rows : ng;
	for (size_t k = 0; k < ts->nub; k++)
		if (ts->ustart[k + 1] - ts->ustart[k] > *maxu)
			*maxu = ts->ustart[k + 1] - ts->ustart[k];

	/* item bins: the bucket's items by id, rows at a time */
	size_t ni;
	idset_begin(is, &ni);
	for (size_t k = 0; k < nr; k++)
		idset_add(is, &ni, r[k].i);
	idset_finish(is, ni);
	size_t irows = rows_per_bin(jb, ni, IBIN_BYTES);
	ts->nib = (ni + irows - 1) / irows;
	size_t nt = ts->nub * ts->nib;
	ts->t = xmalloc(nt * sizeof *ts->t);
	ts->r = xmalloc(nr * sizeof *ts->r);
	ts->ikeys = xmalloc(nr * sizeof *ts->ikeys);
	size_t *fill = calloc(nt + 1, sizeof *fill);
	if (!fill)
		app_die("out of memory");
#define TILE_OF(gk, it) (((gk) / rows) * ts->nib + is->pos[it] / irows)
	for (size_t gk = 0; gk < ng; gk++)
		for (size_t k = 0; k < g[gk].len; k++)
			fill[TILE_OF(gk, d->r[g[gk].start + k].i) + 1]++;
	for (size_t t = 0; t < nt; t++)
		fill[t + 1] += fill[t];
	for (size_t t = 0; t < nt; t++)
		ts->t[t] = (struct tile){.r0 = fill[t], .nr = fill[t + 1] - fill[t]};
	for (size_t gk = 0; gk < ng; gk++)
		for (size_t k = 0; k < g[gk].len; k++) {
			const struct app_rating *x = &d->r[g[gk].start + k];
			ts->r[fill[TILE_OF(gk, x->i)]++] = (struct trating){
				.u = (uint32_t)(gk - gk / rows * rows), .i = x->i, .r = x->r};
		}
#undef TILE_OF
	free(fill);

	/* each tile's items, by id; ratings point into them */
	size_t i0 = 0;
	for (size_t t = 0; t < nt; t++) {
		struct tile *tl = &ts->t[t];
		struct trating *tr = ts->r + tl->r0;
		size_t n;
		idset_begin(is, &n);
		for (size_t k = 0; k < tl->nr; k++)
			idset_add(is, &n, tr[k].i);
		idset_finish(is, n);
		for (size_t k = 0; k < n; k++)
			ts->ikeys[i0 + k] = is->list[k];
		for (size_t k = 0; k < tl->nr; k++)
			tr[k].i = is->pos[tr[k].i];
		tl->i0 = i0;
		tl->ni = n;
		i0 += n;
		if (n > *maxi)
			*maxi = n;
	}
}

static int cmp_rating_u(const void *a, const void *b)
{
	const struct app_rating *x = a, *y = b;
	if (x->u != y->u)
		return (x->u > y->u) - (x->u < y->u);
	return (x->i > y->i) - (x->i < y->i);
}

/* The worker's test ratings in chunks of EVAL_CHUNK, by user (users and
 * items of the test data that the training data lacks count as unseen). */
static void build_evalset(const struct job *jb, struct worker_data *d, struct idset *us, struct idset *is,
			  size_t *maxu, size_t *maxi)
{
	struct evalset *ev = &d->ev;
	qsort(d->test, d->ntest, sizeof *d->test, cmp_rating_u);
	ev->nc = (d->ntest + EVAL_CHUNK - 1) / EVAL_CHUNK;
	ev->c = xmalloc(ev->nc * sizeof *ev->c);
	ev->r = xmalloc(d->ntest * sizeof *ev->r);
	ev->ukeys = xmalloc(d->ntest * sizeof *ev->ukeys);
	ev->ikeys = xmalloc(d->ntest * sizeof *ev->ikeys);
	size_t u0 = 0, i0 = 0;
	for (size_t c = 0; c < ev->nc; c++) {
		size_t r0 = c * EVAL_CHUNK, nr = d->ntest - r0 < EVAL_CHUNK ? d->ntest - r0 : EVAL_CHUNK, nu, ni;
		const struct app_rating *x = d->test + r0;
		idset_begin(us, &nu);
		idset_begin(is, &ni);
		for (size_t k = 0; k < nr; k++) {
			if (x[k].u != NONE)
				idset_add(us, &nu, x[k].u);
			if (x[k].i != NONE)
				idset_add(is, &ni, x[k].i);
		}
		idset_finish(us, nu);
		idset_finish(is, ni);
		for (size_t k = 0; k < nu; k++)
			ev->ukeys[u0 + k] = jb->ukey[us->list[k]];
		for (size_t k = 0; k < ni; k++)
			ev->ikeys[i0 + k] = is->list[k];
		for (size_t k = 0; k < nr; k++)
			ev->r[r0 + k] = (struct trating){.u = x[k].u == NONE ? UINT32_MAX : us->pos[x[k].u],
							 .i = x[k].i == NONE ? UINT32_MAX : is->pos[x[k].i],
							 .r = x[k].r};
		ev->c[c] = (struct echunk){.r0 = r0, .nr = nr, .u0 = u0, .nu = nu, .i0 = i0, .ni = ni};
		u0 += nu;
		i0 += ni;
		if (nu > *maxu)
			*maxu = nu;
		if (ni > *maxi)
			*maxi = ni;
	}
}

/* P0 := P - P0 for n rows of vl floats: the differences to push. */
static void row_diff(float *P0, const float *P, size_t n, int vl)
{
	size_t m = n * (size_t)vl;
	for (size_t k = 0; k < m; k++)
		P0[k] = P[k] - P0[k];
}

static void pull_rows(ps_table *t, const ps_key *keys, size_t n, float *rows, float *copy, int vl, const char *what)
{
	check(ps_pull_sync(t, keys, n, rows), what);
	if (copy)
		memcpy(copy, rows, n * (size_t)vl * sizeof *rows);
}

/* --------------------------------------------------- one rating (rules) */

/* One user's ratings with a server-side rule: per rating, pull both rows
 * and push both gradients; the rule is the optimizer. */
static double train_group_rule(struct wstate *ws, const struct group *g, const struct app_rating *r)
{
	struct job *jb = ws->jb;
	int K = jb->c.rank;
	float reg = (float)jb->c.reg, mean = (float)jb->mean;
	float *pu = ws->pu, *qi = ws->qi, *gu = ws->gu, *gi = ws->dq;
	ps_key uk = g->ukey;
	double sse = 0;
	for (size_t k = 0; k < g->len; k++) {
		ps_key ik = r[k].i;
		check(ps_pull_sync(jb->U, &uk, 1, pu), "pull of a user row");
		check(ps_pull_sync(jb->V, &ik, 1, qi), "pull of an item row");
		float dot = 0;
		for (int f = 0; f < K; f++)
			dot += pu[f] * qi[f];
		float err = r[k].r - (mean + pu[K] + qi[K] + dot);
		sse += (double)err * err;
		gu[K] = -(err - reg * pu[K]);
		gi[K] = -(err - reg * qi[K]);
		for (int f = 0; f < K; f++) {
			gu[f] = -(err * qi[f] - reg * pu[f]);
			gi[f] = -(err * pu[f] - reg * qi[f]);
		}
		check(ps_push_sync(jb->V, &ik, 1, gi), "push to an item row");
		check(ps_push_sync(jb->U, &uk, 1, gu), "push to a user row");
	}
	return sse;
}

/*
 * The metrics table M: key (share v, epoch e) at v * epochs + e, so
 * range placement puts a share's keys on its home node (its owner's
 * pushes are local while the share is at home, on any number of hosts).
 * Value: [squared training errors, squared test errors, ratings trained in
 * 4 digits of 12 bits].  Floats add integers exactly below 2^24, so the
 * count's digits stay exact for up to 4096 pushes per key (a share's owner
 * pushes once per step: B steps of an epoch under localize, B = shares,
 * hence MAX_LOCALIZE_SHARES); a 48-bit count.
 */
#define MAX_LOCALIZE_SHARES 4096
#define M_LEN 6
#define M_DIGITS 4
#define M_DIGIT_BITS 12

static ps_key metrics_key(const struct job *jb, int e, int v)
{
	return (ps_key)v * (ps_key)jb->c.epochs + (ps_key)e;
}

static void count_put(float *m, uint64_t n)
{
	for (int k = 0; k < M_DIGITS; k++)
		m[2 + k] = (float)((n >> (k * M_DIGIT_BITS)) & ((1u << M_DIGIT_BITS) - 1));
}

static uint64_t count_get(const float *m)
{
	uint64_t n = 0;
	for (int k = 0; k < M_DIGITS; k++)
		n += (uint64_t)m[2 + k] << (k * M_DIGIT_BITS);
	return n;
}

/* Progress shown by node 0, thread 0 (the job's estimate). */
static void show_progress(struct wstate *ws, size_t n)
{
	ws->done += n;
	if (ws->prog) {
		uint64_t est = ws->done * (uint64_t)ws->jb->shares / (uint64_t)(ws->nsh ? ws->nsh : 1);
		app_progress_update(ws->prog, est < ws->jb->ntrain ? est : ws->jb->ntrain, NAN);
	}
}

/* --rule sgd/adagrad: the step's groups in the step's order, from `first`. */
static double train_groups(struct wstate *ws, int e, int s, int b, int next, ps_handle *pending, int64_t first,
			   int *ticks)
{
	struct job *jb = ws->jb;
	struct worker_data *d = ws->d;
	struct group *g = d->g + d->gstart[b];
	size_t ng = d->gstart[b + 1] - d->gstart[b], done = 0, trigger = d->rcount[b] * 3 / 4;
	step_order(ws->perm, ng, jb->c.seed, e, s, ws->dwg);
	double sse = 0;
	for (size_t k = 0; k < ng; k++) {
		const struct group *gk = &g[ws->perm[k]];
		if (next >= 0 && !*pending && done >= trigger)
			*pending = ps_localize(jb->V, jb->block_items + jb->bstart[next],
					       jb->bstart[next + 1] - jb->bstart[next]);
		if ((int64_t)k >= first) {
			/* before: lost, never twice */
			check(ps_progress_set(ws->w, (uint64_t)ws->unit_base + k + 1), "progress");
			sse += train_group_rule(ws, gk, d->r + gk->start);
			ws->trained += gk->len;
		}
		done += gk->len;
		clock_slices(ws, ticks, done);
		show_progress(ws, gk->len);
	}
	return sse;
}

/* --rule sum: the step's tiles (see "tiles" above), from `first`.  User
 * bins in the step's order; within user bin number m (in that order) the
 * item bins from (shift + wg * nib / workers + m) mod nib on. */
static double train_tiles(struct wstate *ws, int e, int s, int b, int next, ps_handle *pending, int64_t first,
			  int *ticks)
{
	struct job *jb = ws->jb;
	struct worker_data *d = ws->d;
	struct tiles *ts = &d->tiles[b];
	int K = jb->c.rank, vl = jb->vl;
	float lr = (float)jb->c.lr, reg = (float)jb->c.reg, mean = (float)jb->mean;
	size_t nt = ts->nub * ts->nib, done = 0, trigger = d->rcount[b] * 3 / 4;
	step_order(ws->perm, ts->nub, jb->c.seed, e, s, ws->dwg);
	uint64_t h = jb->c.seed * 0x9e3779b97f4a7c15ULL + (uint64_t)e * 0xd1b54a32d192ed03ULL + (uint64_t)s;
	size_t shift = ts->nib ? (size_t)(app_rand(&h) % ts->nib) + (size_t)ws->dwg * ts->nib / (size_t)jb->shares : 0;
	size_t loaded = SIZE_MAX; /* the user bin in P */
	double sse = 0;
	for (size_t k = 0; k < nt; k++) {
		size_t m = k / ts->nib, ub = ws->perm[m], ib = (shift + m + k % ts->nib) % ts->nib;
		const struct tile *tl = &ts->t[ub * ts->nib + ib];
		if (next >= 0 && !*pending && done >= trigger)
			*pending = ps_localize(jb->V, jb->block_items + jb->bstart[next],
					       jb->bstart[next + 1] - jb->bstart[next]);
		if ((int64_t)k >= first && tl->nr) {
			size_t u0 = ts->ustart[ub], nu = ts->ustart[ub + 1] - u0;
			if (loaded != ub) {
				if (loaded != SIZE_MAX) {
					size_t l0 = ts->ustart[loaded], ln = ts->ustart[loaded + 1] - l0;
					row_diff(ws->P0, ws->P, ln, vl);
					check(ps_push_sync(jb->U, ts->ukeys + l0, ln, ws->P0), "push to user rows");
				}
				pull_rows(jb->U, ts->ukeys + u0, nu, ws->P, ws->P0, vl, "pull of user rows");
				loaded = ub;
			}
			/* before: lost, never twice */
			check(ps_progress_set(ws->w, (uint64_t)ws->unit_base + k + 1), "progress");
			pull_rows(jb->V, ts->ikeys + tl->i0, tl->ni, ws->Q, ws->Q0, vl, "pull of item rows");
			sse += train_tile(ts->r + tl->r0, tl->nr, ws->P, ws->Q, K, vl, lr, reg, mean);
			ws->trained += tl->nr;
			row_diff(ws->Q0, ws->Q, tl->ni, vl);
			check(ps_push_sync(jb->V, ts->ikeys + tl->i0, tl->ni, ws->Q0), "push to item rows");
		}
		done += tl->nr;
		clock_slices(ws, ticks, done);
		show_progress(ws, tl->nr);
	}
	if (loaded != SIZE_MAX) {
		size_t l0 = ts->ustart[loaded], ln = ts->ustart[loaded + 1] - l0;
		row_diff(ws->P0, ws->P, ln, vl);
		check(ps_push_sync(jb->U, ts->ukeys + l0, ln, ws->P0), "push to user rows");
	}
	return sse;
}

/* Units of progress of share data d's step on block b: tiles or groups. */
static int64_t step_units(const struct job *jb, const struct worker_data *d, int b)
{
	if (jb->c.rule == RULE_SUM)
		return (int64_t)(d->tiles[b].nub * d->tiles[b].nib);
	return (int64_t)(d->gstart[b + 1] - d->gstart[b]);
}

/* The block share v trains in sub-epoch s. */
static int share_block(const struct job *jb, int v, int s)
{
	return jb->blocks > 1 ? (v + s) % jb->blocks : 0;
}

static void localize_block(struct job *jb, int b);

/*
 * One training step: each of this worker's shares' ratings, share after
 * share, share v's of its block of sub-epoch s (share_block) in the order
 * of (epoch e, share v, sub-epoch s); issues the localize of block `next`
 * (if >= 0) once 3/4 of the last share's ratings are done.  Under localize
 * a share's block that is not the one prefetched is moved here first (a
 * block this worker trained in the sub-epoch before is here already).  A
 * step its predecessor finished is skipped; one it had begun resumes after
 * its last started unit (group or tile), counted over the shares in
 * order.  The squared errors and the count of the units trained here go
 * into each share's metrics of the epoch.
 */
static void train_step(struct wstate *ws, int e, int s, int next, ps_handle *pending)
{
	struct job *jb = ws->jb;
	int ticks = 0;
	ws->clk_base = ws->clk_total = 0;
	if (ps_replaying(ws->w)) {
		clock_slices(ws, &ticks, 0); /* the step's clocks, replayed (clock.c CL5) */
		return;
	}
	int64_t first = ps_progress_get(ws->w);
	check((int)(first < 0 ? first : 0), "progress");
	for (int k = 0; k < ws->nsh; k++)
		ws->clk_total += ws->sh[k].d->rcount[share_block(jb, ws->sh[k].v, s)];
	ws->unit_base = 0;
	for (int k = 0; k < ws->nsh; k++) {
		int v = ws->sh[k].v, b = share_block(jb, v, s);
		bool last = k == ws->nsh - 1;
		ws->d = ws->sh[k].d;
		ws->dwg = v;
		if (jb->c.localize && b != ws->prefetched && first - ws->unit_base < step_units(jb, ws->d, b))
			localize_block(jb, b);
		ws->trained = 0;
		int64_t f = first - ws->unit_base;
		double sse = jb->c.rule == RULE_SUM ? train_tiles(ws, e, s, b, last ? next : -1, pending, f, &ticks)
						    : train_groups(ws, e, s, b, last ? next : -1, pending, f, &ticks);
		ws->clk_base += ws->d->rcount[b];
		ws->unit_base += step_units(jb, ws->d, b);
		ps_key mk = metrics_key(jb, e, v);
		float m[M_LEN] = {(float)sse, 0};
		count_put(m, ws->trained);
		check(ps_push_sync(jb->M, &mk, 1, m), "push of the epoch's sums");
	}
	if (next >= 0 && !*pending)
		*pending = ps_localize(jb->V, jb->block_items + jb->bstart[next], jb->bstart[next + 1] - jb->bstart[next]);
	clock_slices(ws, &ticks, ws->clk_total - ws->clk_base); /* the slices left, if any */
}

/* This worker's squared test errors: chunk by chunk, the chunk's user and
 * item rows pulled in one batch each. */
static double eval_test(struct wstate *ws, const struct evalset *ev)
{
	struct job *jb = ws->jb;
	double sse = 0;
	for (size_t c = 0; c < ev->nc; c++) {
		const struct echunk *ch = &ev->c[c];
		if (ch->nu)
			pull_rows(jb->U, ev->ukeys + ch->u0, ch->nu, ws->P, NULL, jb->vl, "pull of user rows");
		if (ch->ni)
			pull_rows(jb->V, ev->ikeys + ch->i0, ch->ni, ws->Q, NULL, jb->vl, "pull of item rows");
		sse += eval_chunk(ev->r + ch->r0, ch->nr, ws->P, ws->Q, jb->c.rank, jb->vl, (float)jb->mean,
				  (float)jb->rmin, (float)jb->rmax);
	}
	return sse;
}

static void barrier(ps_world *w)
{
	check(ps_barrier(w), "barrier");
}

/* The evaluation step: this worker's test sum, stored idempotently (the
 * model is frozen during the step, so a restarted worker computes the same
 * sum and the difference it pushes is 0). */
static void eval_step(struct wstate *ws, int e)
{
	struct job *jb = ws->jb;
	if (ps_replaying(ws->w))
		return;
	for (int k = 0; k < ws->nsh; k++) {
		float tsse = (float)eval_test(ws, &ws->sh[k].d->ev), m[M_LEN];
		ps_key mk = metrics_key(jb, e, ws->sh[k].v);
		check(ps_pull_sync(jb->M, &mk, 1, m), "pull of the epoch's sums");
		m[1] = tsse - m[1];
		m[0] = 0;
		count_put(m, 0);
		check(ps_push_sync(jb->M, &mk, 1, m), "push of the epoch's sums");
	}
}

/* The node (of every host) where range placement puts key k of a table
 * of K keys: its home host h (host h holds [ceil(h K / H), ceil((h+1) K /
 * H)), psmem.h), then within that range node floor((k - lo) N / len), as
 * ps_table_create places a range over a host's N nodes. */
static int home_node(const struct job *jb, uint64_t K, uint64_t k)
{
	uint64_t H = (uint64_t)jb->hosts, N = (uint64_t)jb->host_nodes;
	uint64_t h = (uint64_t)((unsigned __int128)k * H / K);
	uint64_t lo = (uint64_t)(((unsigned __int128)h * K + H - 1) / H);
	uint64_t hi = (uint64_t)(((unsigned __int128)(h + 1) * K + H - 1) / H);
	return (int)(h * N + (uint64_t)((unsigned __int128)(k - lo) * N / (hi - lo)));
}

/* Initial rows: each row by a worker of the node where the table creates
 * it (home_node; that node's ids dealt round-robin over its threads), so
 * no row crosses a host or a node, INIT_CHUNK rows per batch, resumable
 * like a training step (progress: rows started). */
static void init_step(struct wstate *ws)
{
	struct job *jb = ws->jb;
	if (ps_replaying(ws->w))
		return;
	int64_t first = ps_progress_get(ws->w), k = 0;
	check((int)(first < 0 ? first : 0), "progress");
	/* with a server-side rule a push would be a gradient: assign them */
	int (*store)(ps_table *, const ps_key *, size_t, const float *) =
		jb->c.rule == RULE_SUM ? ps_push_sync : ps_assign_sync;
	for (int kind = 1; kind <= 2; kind++) {
		ps_table *t = kind == 1 ? jb->U : jb->V;
		size_t n = kind == 1 ? jb->nusers : jb->nitems, m = 0, here = 0;
		uint64_t K = kind == 1 ? jb->ukeys : jb->nitems;
		for (size_t id = 0; id < n; id++) {
			ps_key key = kind == 1 ? jb->ukey[id] : id;
			if (home_node(jb, K, key) != jb->node || here++ % (size_t)jb->threads != (size_t)ws->t)
				continue;
			if (k++ < first)
				continue;
			ws->keys[m] = key;
			init_row(jb, kind, id, ws->Q + m * (size_t)jb->vl);
			if (++m == INIT_CHUNK) {
				check(ps_progress_set(ws->w, (uint64_t)k), "progress"); /* lost, never twice */
				check(store(t, ws->keys, m, ws->Q), kind == 1 ? "initializing user rows" : "initializing item rows");
				m = 0;
			}
		}
		if (m) {
			check(ps_progress_set(ws->w, (uint64_t)k), "progress");
			check(store(t, ws->keys, m, ws->Q), kind == 1 ? "initializing user rows" : "initializing item rows");
		}
	}
}

/* The epoch's train and test RMSE (NAN without test ratings) from every
 * share's sums (one batched pull), added in share order: every worker
 * that calls it gets the same two numbers.  trained (may be NULL): per
 * node (gnode, of any host seen: owner / threads), the ratings the
 * shares owner[v] trains counted in the epoch. */
static void epoch_rmse(struct job *jb, int e, double *train, double *test, uint64_t *trained, const int *owner)
{
	size_t S = (size_t)jb->shares;
	ps_key *mk = calloc(S, sizeof *mk);
	float *m = calloc(S * M_LEN, sizeof *m);
	if (!mk || !m)
		app_die("out of memory");
	for (size_t v = 0; v < S; v++)
		mk[v] = metrics_key(jb, e, (int)v);
	check(ps_pull_sync(jb->M, mk, S, m), "pull of the epoch's sums");
	double m0 = 0, m1 = 0;
	for (size_t v = 0; v < S; v++) {
		m0 += m[v * M_LEN];
		m1 += m[v * M_LEN + 1];
		if (trained)
			trained[owner[v] / jb->threads] += count_get(m + v * M_LEN);
	}
	free(mk);
	free(m);
	*train = sqrt(m0 / (double)jb->ntrain);
	*test = jb->ntest ? sqrt(m1 / (double)jb->ntest) : NAN;
}

/* Thread 0 of every node, after each epoch: the epoch's RMSEs and counts
 * for the summary (so whichever host reports at the end has them). */
static void read_metrics(struct job *jb, int e, const int *owner)
{
	int g = jb->trained_hosts * jb->host_nodes;
	uint64_t *n = xmalloc((size_t)g * sizeof *n);
	memset(n, 0, (size_t)g * sizeof *n);
	epoch_rmse(jb, e, &jb->train_rmse, &jb->rmse, n, owner);
	jb->epoch_rmse[e] = jb->rmse;
	for (int k = 0; k < g; k++)
		jb->trained[(size_t)k * (size_t)jb->c.epochs + (size_t)e] = n[k];
	free(n);
}

static void save_model(struct job *jb);

/* --replicate, after a training barrier: see the file comment. */
static void sync_replicas(struct job *jb, ps_world *w, bool host_lead)
{
	if (!jb->c.replicate)
		return;
	/* Several hosts: ps_sync covers this host's pushes; a second round
	 * after the barrier brings every host's into every replica (psmem.h,
	 * ps_sync). */
	for (int round = 0; round < (jb->hosts > 1 ? 2 : 1); round++) {
		if (host_lead)
			check(ps_sync(jb->V), "ps_sync");
		barrier(w);
	}
}

/* The host of physical worker wg (a global worker id, any host's). */
static int worker_host(const struct job *jb, int wg)
{
	return wg / jb->host_workers;
}

/*
 * Moves item block b to this node (from this host's nodes or another
 * host's) and waits until it is here.  A localize is a hint: keys it could
 * not move stay where they are and are trained there (remotely), so a full
 * pool (PS_EFULL) is not an error.  Pools fill for a moment when the slots
 * this node gave away wait for their grace period (a busy machine delays
 * it; a move from another host does not wait for them, lib/net/migrate.c),
 * so it tries again for up to LOCALIZE_RETRY_MS and then goes on.
 */
#define LOCALIZE_RETRY_MS 2000

/* After a host is lost, a localize of keys homed there fails with
 * PS_EHOSTDOWN (a move across hosts goes through the key's home, and the
 * lost host was it; lib/net/migrate.c): the keys stay where the promotion
 * put them and are trained there, remotely.  True when rc is that case. */
static bool localize_lost(struct job *jb, int rc)
{
	return rc == PS_EHOSTDOWN && ps_hosts_alive(jb->w, NULL, 0) < ps_num_hosts(jb->w);
}

static void localize_block(struct job *jb, int b)
{
	const ps_key *keys = jb->block_items + jb->bstart[b];
	size_t n = jb->bstart[b + 1] - jb->bstart[b];
	for (int ms = 0;; ms++) {
		int rc = ps_localize_sync(jb->V, keys, n);
		if (rc != PS_EFULL) {
			if (!localize_lost(jb, rc))
				check(rc, "localize");
			return;
		}
		if (ms == LOCALIZE_RETRY_MS)
			return;
		usleep(1000); /* keys already here are skipped on the next try */
	}
}

/* Waits for the localize of block b issued ahead (train_step). */
static void localize_wait(struct job *jb, ps_handle h, int b)
{
	int rc = ps_wait(h);
	if (rc == PS_EFULL)
		localize_block(jb, b);
	else if (!localize_lost(jb, rc))
		check(rc, "localize");
}

/* Worker data d's tiles (--rule sum) and evaluation chunks; *maxu, *maxi
 * and *maxperm grow to the sizes of P, Q and perm they need. */
static void prepare_data(const struct job *jb, struct worker_data *d, size_t *maxu, size_t *maxi, size_t *maxperm)
{
	int B = jb->blocks;
	struct idset us = {0}, is = {0};
	us.mark = calloc(jb->nusers + 1, sizeof *us.mark);
	us.pos = xmalloc((jb->nusers + 1) * sizeof *us.pos);
	us.list = xmalloc((jb->nusers + 1) * sizeof *us.list);
	is.mark = calloc(jb->nitems + 1, sizeof *is.mark);
	is.pos = xmalloc((jb->nitems + 1) * sizeof *is.pos);
	is.list = xmalloc((jb->nitems + 1) * sizeof *is.list);
	if (!us.mark || !is.mark)
		app_die("out of memory");
	if (jb->c.rule == RULE_SUM) {
		d->tiles = calloc((size_t)B, sizeof *d->tiles);
		if (!d->tiles)
			app_die("out of memory");
		for (int b = 0; b < B; b++) {
			build_tiles(jb, d, b, &d->tiles[b], &is, maxu, maxi);
			if (d->tiles[b].nub > *maxperm)
				*maxperm = d->tiles[b].nub;
		}
	}
	build_evalset(jb, d, &us, &is, maxu, maxi);
	free(us.mark), free(us.pos), free(us.list);
	free(is.mark), free(is.pos), free(is.list);
}

/* (Re)allocates the worker's P, P0, Q, Q0 and perm if they are smaller
 * than maxu, maxi, maxperm rows. */
static void ws_buffers(struct wstate *ws, size_t maxu, size_t maxi, size_t maxperm)
{
	size_t vl = (size_t)ws->jb->vl;
	if (!ws->P || maxu > ws->maxu || maxi > ws->maxi) {
		maxu = maxu > ws->maxu ? maxu : ws->maxu;
		maxi = maxi > ws->maxi ? maxi : ws->maxi;
		free(ws->P);
		ws->P = xmalloc(2 * (maxu + maxi) * vl * sizeof(float));
		ws->P0 = ws->P + maxu * vl;
		ws->Q = ws->P0 + maxu * vl;
		ws->Q0 = ws->Q + maxi * vl;
		ws->maxu = maxu;
		ws->maxi = maxi;
	}
	if (!ws->perm || maxperm > ws->maxperm) {
		free(ws->perm);
		ws->perm = xmalloc((maxperm ? maxperm : 1) * sizeof *ws->perm);
		ws->maxperm = maxperm;
	}
}

static void free_worker_data(struct worker_data *d, int B)
{
	for (int b = 0; d->tiles && b < B; b++) {
		struct tiles *ts = &d->tiles[b];
		free(ts->ustart), free(ts->ukeys), free(ts->t), free(ts->r), free(ts->ikeys);
	}
	free(d->tiles);
	free(d->ev.r), free(d->ev.c), free(d->ev.ukeys), free(d->ev.ikeys);
	free(d->r);
	free(d->g);
	free(d->gstart);
	free(d->rcount);
	free(d->test);
}

/*
 * Re-splits (see "Shares"): joins, leaves and losses.
 *
 * Joins and leaves take effect at ps_sync_hosts, at the start of an epoch;
 * a host lost (psrun --on-host-failure continue) is dropped by psmem at
 * any time, its keys (its shares' user rows, its part of the item rows)
 * promoted from their backups on the next host (lib/net/backup.c).  After
 * each barrier that starts a step (the training steps', the evaluation's)
 * and after ps_sync_hosts every worker reads ps_hosts_alive; when the set
 * changed it recomputes the map (share_map: every worker of every host
 * gets the same one from the same set), drops the data of the shares it
 * no longer trains and builds that of those it gains from the data files
 * (read again, once per node, only now: the undisturbed path keeps only
 * its own shares), and from this step on trains and evaluates them.  A
 * share keeps its step order, its block and its metrics key wherever it
 * goes, so DSGD stays exact under localize (block (v + s) mod B has one
 * trainer in sub-epoch s) and node_epoch_ratings shows who trained what.
 * After each re-split a worker moves its shares' user rows to its node
 * (localize_users; those already there stay): the shares it gained, and
 * rows psmem relocated to a joiner (it receives every Hp-th key of every
 * table).
 *
 * psmem delivers a loss before the release of a barrier that no longer
 * waited for the host (DESIGN, "Losing a host"), so every survivor sees it
 * at the same step when the host died before arriving at that barrier.  A
 * host that dies in the instant between arriving at a barrier and its
 * release may be seen at this step by one survivor and at the next by
 * another: the lost shares' step is then trained in part.
 *
 * Under --policy localize the item blocks move every sub-epoch, faster
 * than the backup rounds (20 a second by default): the block the lost
 * host held was usually moved there after its last round, and such keys
 * are lost (BK4) - accesses to them fail with PS_EHOSTDOWN or, when the
 * host died mid-move, wait 30 s.  Use the classic policy with
 * --on-host-failure continue.  A localize of keys homed at the lost host
 * fails with PS_EHOSTDOWN and is ignored (localize_lost): they are
 * trained where they are.
 */
static void drop_share(struct job *jb, struct share *sh)
{
	free_worker_data(sh->d, jb->blocks);
	free(sh->d);
	sh->d = NULL;
}

/* Thread 0: room in jb->trained for host ids below `hosts`. */
static void trained_rows(struct job *jb, int hosts)
{
	if (hosts <= jb->trained_hosts)
		return;
	size_t row = (size_t)jb->host_nodes * (size_t)jb->c.epochs * sizeof *jb->trained;
	uint64_t *t = realloc(jb->trained, (size_t)hosts * row);
	if (!t)
		app_die("out of memory");
	memset((char *)t + (size_t)jb->trained_hosts * row, 0, (size_t)(hosts - jb->trained_hosts) * row);
	jb->trained = t;
	jb->trained_hosts = hosts;
}

/* The changes between the hosts present before (was) and now (is), seen
 * at the start of a step of epoch e, described into why; first: a
 * joiner's first view (nothing to compare with).  Thread 0 records them
 * (joined_epoch, gone_epoch, hosts_seen, lead_host). */
static void note_events(struct wstate *ws, int e, const uint8_t *was, const uint8_t *is, bool first, char *why,
			size_t cap)
{
	struct job *jb = ws->jb;
	bool rec = ws->t == 0;
	size_t n = 0;
	int present = 0, ids = 0;
	why[0] = 0;
	for (int h = 0; h < MF_MAX_HOSTS; h++) {
		present += is[h];
		if (is[h] || (was && was[h]))
			ids = h + 1;
		if (rec && is[h] && h + 1 > jb->hosts_seen)
			jb->hosts_seen = h + 1;
		if (first)
			continue;
		if (is[h] && !was[h]) {
			if (rec && !jb->joined_epoch[h])
				jb->joined_epoch[h] = e + 1;
			n += (size_t)snprintf(why + n, n < cap ? cap - n : 0, "%shost %d joined", n ? ", " : "", h);
		} else if (was[h] && !is[h]) {
			if (rec)
				jb->gone_epoch[h] = e + 1;
			n += (size_t)snprintf(why + n, n < cap ? cap - n : 0, "%shost %d gone", n ? ", " : "", h);
		}
	}
	if (n < cap)
		snprintf(why + n, cap - n, " (%d of %d hosts present)", present, ids);
	if (!rec)
		return;
	trained_rows(jb, jb->hosts_seen);
	jb->lead_host = 0;
	while (!is[jb->lead_host]) /* the first host present reports */
		jb->lead_host++;
}

static void ws_buffers(struct wstate *ws, size_t maxu, size_t maxi, size_t maxperm);
static void prepare_data(const struct job *jb, struct worker_data *d, size_t *maxu, size_t *maxi, size_t *maxperm);

static bool localize_lost(struct job *jb, int rc);

/* Share v's user rows to this node: created on its home node, they are
 * elsewhere once the share left home, or when psmem moved some to a joiner
 * (it receives a share of every table's keys).  A hint, as localize_block:
 * rows that cannot move (a full pool, a lost home) are trained where they
 * are. */
static void localize_users(struct job *jb, int v)
{
	size_t n = (size_t)jb->share_users[v];
	if (!n)
		return;
	ps_key *keys = xmalloc(n * sizeof *keys);
	for (size_t k = 0; k < n; k++)
		keys[k] = (ps_key)v * jb->C + k;
	int rc = ps_localize_sync(jb->U, keys, n);
	if (rc != PS_EFULL && !localize_lost(jb, rc))
		check(rc, "localize of user rows");
	free(keys);
}

/* After a barrier of epoch e (or ps_sync_hosts): re-splits if the hosts
 * present changed (see above). */
static void resplit(struct wstate *ws, int e)
{
	struct job *jb = ws->jb;
	uint8_t *alive = calloc(MF_MAX_HOSTS, 1);
	if (!alive)
		app_die("out of memory");
	check(ps_hosts_alive(ws->w, alive, MF_MAX_HOSTS), "ps_hosts_alive");
	bool first = !ws->owner;
	if (!first && memcmp(alive, ws->alive, MF_MAX_HOSTS) == 0) {
		free(alive);
		return;
	}
	char why[256];
	note_events(ws, e, ws->alive, alive, first, why, sizeof why);
	free(ws->alive);
	ws->alive = alive;
	if (!ws->owner)
		ws->owner = xmalloc((size_t)jb->shares * sizeof *ws->owner);
	share_map(jb->shares, jb->host_workers, ws->hosts0, alive, ws->owner);
	/* the new list, in share order: the shares kept keep their data; the
	 * gained ones' is built in one pass over the data files */
	int *gain = xmalloc((size_t)jb->shares * sizeof *gain), gained = 0, k = 0;
	for (int v = 0; v < jb->shares; v++) {
		while (k < ws->nsh && ws->sh[k].v < v)
			k++;
		if (ws->owner[v] == ws->wg && !(k < ws->nsh && ws->sh[k].v == v))
			gain[gained++] = v;
	}
	size_t maxu = 0, maxi = 0, maxperm = 0, nr = 0;
	struct worker_data *gd = NULL;
	if (gained) {
		pthread_mutex_lock(&jb->reload_lock);
		if (!jb->reloaded) { /* ids: every one is in the maps already (no insert) */
			app_load_ratings(jb->c.train, false, jb->users, jb->items, &jb->rtr, NULL, NULL, NULL);
			if (jb->c.test)
				app_load_ratings(jb->c.test, false, jb->users, jb->items, &jb->rte, NULL, NULL, NULL);
			jb->reloaded = true;
		}
		pthread_mutex_unlock(&jb->reload_lock);
		gd = share_data(jb, &jb->rtr, &jb->rte, gain, gained, &maxperm);
	}
	struct share *sh = calloc((size_t)jb->shares + 1, sizeof *sh);
	if (!sh)
		app_die("out of memory");
	int n = 0, g = 0;
	k = 0;
	for (int v = 0; v < jb->shares; v++) {
		while (k < ws->nsh && ws->sh[k].v < v)
			drop_share(jb, &ws->sh[k++]);
		if (ws->owner[v] != ws->wg)
			continue;
		if (k < ws->nsh && ws->sh[k].v == v) {
			sh[n++] = ws->sh[k++];
			continue;
		}
		sh[n].v = v; /* gain[g] == v */
		sh[n].d = xmalloc(sizeof *sh[n].d);
		*sh[n].d = gd[g++]; /* moved: gd keeps only the array */
		prepare_data(jb, sh[n].d, &maxu, &maxi, &maxperm);
		nr += sh[n].d->nr;
		n++;
	}
	while (k < ws->nsh)
		drop_share(jb, &ws->sh[k++]);
	free(gd);
	free(gain);
	free(ws->sh);
	ws->sh = sh;
	ws->nsh = n;
	ws->prefetched = -1;
	ws_buffers(ws, maxu, maxi, maxperm);
	for (int j = 0; j < n && !ps_replaying(ws->w); j++)
		localize_users(jb, sh[j].v);
	if (gained && !first)
		printf("mf: epoch %d: %s; worker %d takes over %d share%s (%zu ratings)\n", e + 1, why, ws->wg, gained,
		       gained > 1 ? "s" : "", nr);
	else if (gained)
		printf("mf: host %d joined at epoch %d%s: worker %d trains %d share%s (%zu ratings)\n", jb->host, e + 1,
		       why, ws->wg, gained, gained > 1 ? "s" : "", nr);
	if (gained)
		fflush(stdout);
}

/* Thread 0 of the node whose host leaves at the start of epoch e: notes it
 * (table L, read by whoever reports: a host gone with a note left, one
 * without was lost). */
static void note_leave(struct wstate *ws, int e)
{
	struct job *jb = ws->jb;
	if (ws->t != 0 || ps_node_id(ws->w) != 0)
		return;
	ps_key k = (ps_key)jb->host;
	float x = (float)(e + 1);
	check(ps_push_sync(jb->L, &k, 1, &x), "push of the leave note");
	printf("mf: host %d leaves the job at the start of epoch %d\n", jb->host, e + 1);
	fflush(stdout);
}

/* The shares worker ws trains at the start (partition's map and data). */
static void start_shares(struct wstate *ws)
{
	struct job *jb = ws->jb;
	ws->owner = xmalloc((size_t)jb->shares * sizeof *ws->owner);
	memcpy(ws->owner, jb->owner0, (size_t)jb->shares * sizeof *ws->owner);
	ws->alive = calloc(MF_MAX_HOSTS, 1);
	ws->sh = calloc((size_t)jb->shares + 1, sizeof *ws->sh);
	if (!ws->alive || !ws->sh)
		app_die("out of memory");
	memset(ws->alive, 1, (size_t)jb->hosts);
	for (int k = 0; k < jb->ndata0; k++) {
		if (jb->owner0[jb->data0_share[k]] != ws->wg)
			continue;
		struct share *sh = &ws->sh[ws->nsh++];
		sh->v = jb->data0_share[k];
		sh->d = xmalloc(sizeof *sh->d);
		*sh->d = jb->data0[k]; /* moved: jb->data0 keeps only the array */
	}
}

/* The membership point at the start of epoch e: ps_sync_hosts, again and
 * again at epoch --wait-hosts E until N hosts are present (every host's
 * workers make the same calls: each returns the same count everywhere).
 * False when this host leaves. */
static bool sync_hosts(struct wstate *ws, int e)
{
	const struct cfg *c = &ws->jb->c;
	bool said = false;
	for (;;) {
		uint64_t x = sync_pack(e, ws->jb->shares, ws->hosts0);
		int n = ps_sync_hosts(ws->w, &x);
		check(n, "ps_sync_hosts");
		if (n == 0)
			return false;
		if (e + 1 != c->wait_epoch || n >= c->wait_hosts)
			return true;
		if (!said && ws->t == 0 && ps_node_id(ws->w) == 0 && ws->jb->host == ws->jb->lead_host) {
			printf("mf: epoch %d: waiting for %d hosts (%d present)\n", e + 1, c->wait_hosts, n);
			fflush(stdout);
			said = true;
		}
		usleep(2000); /* pace the rounds over hosts while a joiner starts */
	}
}

/* A joiner's first ps_sync_hosts: the epoch to start from (the others'),
 * the hosts of the start; -1 if this host leaves at once. */
static int join_job(struct wstate *ws)
{
	struct job *jb = ws->jb;
	uint64_t x = 0;
	int n = ps_sync_hosts(ws->w, &x), e, shares, hosts0;
	check(n, "ps_sync_hosts");
	if (n == 0)
		return -1;
	sync_unpack(x, &e, &shares, &hosts0);
	if (shares != jb->shares)
		app_die("--shares %d, but the job trains %d shares: give the joining mf the job's --shares", jb->shares,
			shares);
	if (hosts0 < 1 || e >= jb->c.epochs)
		app_die("cannot join: the job sent epoch %d of %d, %d hosts at its start (a different mf?)", e + 1,
			jb->c.epochs, hosts0);
	ws->hosts0 = hosts0;
	if (ws->t == 0)
		jb->hosts = hosts0;
	resplit(ws, e);
	return e;
}

static void worker(ps_world *w, int t, void *arg)
{
	struct job *jb = arg;
	const struct cfg *c = &jb->c;
	int B = jb->blocks;
	struct wstate ws = {.jb = jb, .w = w, .t = t, .wg = jb->node * jb->threads + t, /* global: every host */
			    .hosts0 = jb->hosts, .prefetched = -1};
	size_t vl = (size_t)jb->vl, maxu = 0, maxi = INIT_CHUNK, maxperm = jb->max_groups;
	if (!jb->joiner)
		start_shares(&ws);
	for (int k = 0; k < ws.nsh; k++)
		prepare_data(jb, ws.sh[k].d, &maxu, &maxi, &maxperm);
	ws_buffers(&ws, maxu, maxi, maxperm);
	ws.keys = xmalloc(INIT_CHUNK * sizeof *ws.keys);
	ws.pu = xmalloc(4 * vl * sizeof(float));
	ws.qi = ws.pu + vl;
	ws.dq = ws.qi + vl;
	ws.gu = ws.dq + vl;
	bool host_lead = ps_node_id(w) == 0 && t == 0; /* of this host */
	int e0 = jb->start_epoch;
	bool left = false;

	if (jb->joiner) { /* the tables hold the job's values: no init, no first barriers */
		e0 = join_job(&ws);
		left = e0 < 0;
	} else {
		if (!jb->start_epoch) /* resumed: the rows come from the checkpoint */
			init_step(&ws);
		if (c->localize && !ps_replaying(w)) /* the first blocks, before anyone trains */
			for (int k = 0; k < ws.nsh; k++)
				localize_block(jb, share_block(jb, ws.sh[k].v, 0));
		ws.prefetched = ws.nsh ? share_block(jb, ws.sh[ws.nsh - 1].v, 0) : -1;
		barrier(w);
		if (c->replicate) { /* the replicas start from the initial values */
			if (host_lead) /* each host has its own replicated set */
				app_replicate_top(jb->V, jb->icount, c->replicate, "most rated items");
			barrier(w);
		}
	}
	/* of the job: the first host present's node 0 (see note_events) */
	bool lead = !left && t == 0 && ps_node_id(w) == 0 && jb->host == jb->lead_host;

	app_progress prog;
	double t_start = app_now(), t_train = 0, cpu_train = 0;
	ps_handle pending = NULL;
	for (int e = e0; !left && e < c->epochs; e++) {
		/* the membership point: joins and leaves take effect here */
		if ((!jb->joiner || e != e0) && !sync_hosts(&ws, e)) { /* this host leaves: its shares go to the others */
			note_leave(&ws, e);
			left = true;
			break;
		}
		resplit(&ws, e);
		lead = t == 0 && ps_node_id(w) == 0 && jb->host == jb->lead_host;
		char what[64];
		snprintf(what, sizeof what, "epoch %d/%d", e + 1, c->epochs);
		bool shown = lead && !ps_replaying(w);
		if (shown)
			app_progress_start(&prog, what, jb->ntrain);
		ws.prog = shown ? &prog : NULL;
		ws.done = 0;
		double t0 = app_now(), c0 = app_cpu_now();
		if (!c->localize) {
			train_step(&ws, e, 0, -1, &pending);
			barrier(w);
			sync_replicas(jb, w, host_lead);
		} else {
			for (int s = 0; s < B; s++) {
				if (s)
					resplit(&ws, e); /* a host lost in the sub-epoch before */
				bool last = e == c->epochs - 1 && s == B - 1;
				int vlast = ws.nsh ? ws.sh[ws.nsh - 1].v : -1;
				int next = last || vlast < 0 ? -1 : share_block(jb, vlast, s + 1);
				/* Share vlast + 1 trains block `next` in this sub-epoch.
				 * When its worker is on this host, localize it ahead (3/4
				 * through): its last accesses to the block go to another
				 * node's memory, at memory speed.  On another host every
				 * one of them would be a round trip over the network
				 * (measured: training 2-2.5x slower on ML-100K), so wait
				 * for the barrier, when it is done with the block, and
				 * move it then.  (This worker's other shares' next blocks
				 * are those of its shares trained now, when they follow
				 * each other: here already; others move before their
				 * step, train_step.) */
				bool ahead = next >= 0 && worker_host(jb, ws.owner[(vlast + 1) % jb->shares]) == jb->host;
				train_step(&ws, e, s, ahead ? next : -1, &pending);
				barrier(w);
				sync_replicas(jb, w, host_lead);
				if (pending) {
					localize_wait(jb, pending, next);
					pending = NULL;
				} else if (next >= 0 && !ps_replaying(w)) {
					localize_block(jb, next);
				}
				ws.prefetched = next;
			}
		}
		t_train += app_now() - t0;
		cpu_train += app_cpu_now() - c0;
		bool replayed = ps_replaying(w); /* the evaluation step */
		if (t == 0) /* the model is quiescent until the next barrier */
			app_epoch_checkpoints(w, c->ckpt, c->ckpt_every, e + 1, c->epochs);
		resplit(&ws, e);
		lead = t == 0 && ps_node_id(w) == 0 && jb->host == jb->lead_host;
		eval_step(&ws, e);
		barrier(w);
		if (jb->host && host_lead) { /* host 0 reports each epoch; the others say where they are */
			printf("mf: host %d: epoch %d/%d done\n", jb->host, e + 1, c->epochs);
			fflush(stdout);
			char what[48];
			snprintf(what, sizeof what, "epoch %d/%d", e + 1, c->epochs);
			app_test_stall(what);
		}
		/* A diverged model (an RMSE of inf or NaN: --lr too large) cannot
		 * come back: every worker reads the same sums and all stop after
		 * this epoch, at the same barrier, and main reports it.  Thread 0
		 * of every node keeps the epoch's figures (read_metrics). */
		double tr_rmse, te_rmse;
		if (t == 0) {
			read_metrics(jb, e, ws.owner);
			tr_rmse = jb->train_rmse;
			te_rmse = jb->rmse;
		} else {
			epoch_rmse(jb, e, &tr_rmse, &te_rmse, NULL, NULL);
		}
		if (!isfinite(tr_rmse) || (jb->ntest && !isfinite(te_rmse))) {
			if (t == 0)
				jb->diverged_epoch = e + 1;
			if (lead)
				app_diverged(e + 1, "RMSE", c->lr);
			break;
		}
		if (host_lead && !replayed)
			jb->epochs_trained++;
		if (lead && !replayed) {
			if (!shown) /* its training was done by a predecessor */
				app_progress_start(&prog, what, jb->ntrain);
			char extra[64] = "";
			if (jb->ntest)
				snprintf(extra, sizeof extra, "test RMSE %.4f", jb->rmse);
			app_progress_end(&prog, jb->ntrain, jb->train_rmse, extra);
		}
	}
	if (t == 0) {
		jb->lead = lead && !left;
		jb->left = left;
	}
	if (lead && !left) {
		jb->train_seconds = t_train;
		jb->train_cpu = cpu_train;
		jb->total_seconds = app_now() - t_start;
		if (c->save && !jb->diverged_epoch)
			save_model(jb);
	}
	if (!left)
		barrier(w); /* nobody leaves while node 0 reads the model */
	for (int k = 0; k < ws.nsh; k++)
		drop_share(jb, &ws.sh[k]);
	free(ws.sh);
	free(ws.owner);
	free(ws.alive);
	free(ws.pu);
	free(ws.perm);
	free(ws.P);
	free(ws.keys);
}

/* ---------------------------------------------------------------- save */

static void write_row(FILE *f, const char *kind, const char *id, const float *row, int K)
{
	fprintf(f, "%s\t%s\t%.7g", kind, id, (double)row[K]);
	for (int k = 0; k < K; k++)
		fprintf(f, "\t%.7g", (double)row[k]);
	fputc('\n', f);
}

/* Text model: a header, "mean M", then "user ID BIAS F1..FK" and
 * "item ID BIAS F1..FK" rows with the original ids; written to a temp file
 * and renamed, so a reader never sees half a model. */
static void save_model(struct job *jb)
{
	int K = jb->c.rank;
	size_t plen = strlen(jb->c.save) + 32;
	char *tmp = malloc(plen);
	float *row = malloc((size_t)jb->vl * sizeof *row);
	if (!tmp || !row)
		app_die("out of memory");
	snprintf(tmp, plen, "%s.tmp%d", jb->c.save, (int)getpid());
	FILE *f = fopen(tmp, "w");
	if (!f)
		app_die("%s: cannot write: %s", jb->c.save, strerror(errno));
	fprintf(f, "# psmem mf model: rank %d, %zu users, %zu items; rows: user|item <tab> id <tab> bias <tab> "
		   "factors; prediction = mean + user bias + item bias + dot(factors)\n",
		K, jb->nusers, jb->nitems);
	fprintf(f, "mean\t%.9g\n", jb->mean);
	for (size_t u = 0; u < jb->nusers; u++) {
		ps_key k = jb->ukey[u];
		check(ps_pull_sync(jb->U, &k, 1, row), "pull of a user row");
		write_row(f, "user", app_idmap_name(jb->users, (int64_t)u), row, K);
	}
	for (size_t i = 0; i < jb->nitems; i++) {
		ps_key k = i;
		check(ps_pull_sync(jb->V, &k, 1, row), "pull of an item row");
		write_row(f, "item", app_idmap_name(jb->items, (int64_t)i), row, K);
	}
	bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
	ok &= fclose(f) == 0;
	if (!ok || rename(tmp, jb->c.save) != 0) {
		int e = errno;
		unlink(tmp);
		app_die("%s: cannot write: %s", jb->c.save, strerror(e));
	}
	free(tmp);
	free(row);
}

/* ---------------------------------------------------------------- main */

/*
 * The summary's membership: per host id seen, the epoch (1-based) from
 * which it trained (joined), or from which the others trained its shares
 * (lost: gone without a leave note; left: the note's epoch), 0 for none;
 * the counts; ratings trained per epoch by each node and each host.
 */
static void json_hosts(struct job *jb, app_json *j)
{
	int H = jb->hosts_seen, E = jb->c.epochs, N = jb->host_nodes;
	int64_t *joined = xmalloc((size_t)H * sizeof *joined), *lost = xmalloc((size_t)H * sizeof *lost);
	int64_t *left = xmalloc((size_t)H * sizeof *left);
	int64_t *per_host = xmalloc((size_t)H * (size_t)E * sizeof *per_host);
	ps_key *k = xmalloc((size_t)H * sizeof *k);
	float *note = xmalloc((size_t)H * sizeof *note);
	for (int h = 0; h < H; h++)
		k[h] = (ps_key)h;
	check(ps_pull_sync(jb->L, k, (size_t)H, note), "pull of the leave notes");
	for (int h = 0; h < H; h++) {
		joined[h] = jb->joined_epoch[h];
		left[h] = jb->gone_epoch[h] && note[h] > 0 ? (int64_t)note[h] : 0;
		lost[h] = jb->gone_epoch[h] && !left[h] ? jb->gone_epoch[h] : 0;
		for (int e = 0; e < E; e++) {
			per_host[(size_t)h * E + e] = 0;
			for (int n = 0; n < N; n++)
				per_host[(size_t)h * E + e] += (int64_t)jb->trained[((size_t)h * N + n) * E + e];
		}
	}
	app_json_host_events(j, "joined", joined, (size_t)H);
	app_json_host_events(j, "left", left, (size_t)H);
	app_json_host_events(j, "lost", lost, (size_t)H);
	app_json_int(j, "shares", jb->shares);
	/* ratings trained per epoch by each node of each host (row: node
	 * host * nodes + n; column: epoch; 0 for the epochs before --resume
	 * and those a host did not train) and by each host */
	app_json_int_rows(j, "node_epoch_ratings", (const int64_t *)jb->trained, (size_t)H * (size_t)N, (size_t)E);
	app_json_int_rows(j, "host_epoch_ratings", per_host, (size_t)H, (size_t)E);
	free(joined), free(lost), free(left), free(per_host), free(k), free(note);
}

/* The hosts of the job at its start: 1 + the highest host id present.  In
 * an elastic job ps_num_hosts counts the host ranks joiners may take, and
 * before the first ps_sync_hosts the hosts present are those it started
 * with (hosts 0 .. H-1; they home the keys); otherwise it is ps_num_hosts. */
static int start_hosts(ps_world *w)
{
	uint8_t *alive = calloc(MF_MAX_HOSTS, 1);
	if (!alive)
		app_die("out of memory");
	check(ps_hosts_alive(w, alive, MF_MAX_HOSTS), "ps_hosts_alive");
	int h = MF_MAX_HOSTS;
	while (h > 1 && !alive[h - 1])
		h--;
	free(alive);
	return h;
}

/* The server-side rule of the user and item tables (--rule). */
static void set_rule(const struct cfg *c, ps_table_opts *o)
{
	if (c->rule == RULE_SGD) {
		o->rule = PS_RULE_SGD;
		o->rule_params[0] = (float)c->lr;
	} else if (c->rule == RULE_ADAGRAD) {
		o->rule = PS_RULE_ADAGRAD;
		o->rule_params[0] = (float)c->lr;
		o->rule_params[1] = ADAGRAD_EPS;
	}
}

/* --wait-hosts N@E: N hosts (1 .. 1024), epoch E (1 .. 1000000). */
static void parse_wait_hosts(struct cfg *c, const char *arg)
{
	char *end;
	long n = strtol(arg, &end, 10), e = 0;
	bool ok = end != arg && *end == '@' && n >= 1 && n <= MF_MAX_HOSTS;
	if (ok) {
		const char *p = end + 1;
		e = strtol(p, &end, 10);
		ok = end != p && !*end && e >= 1 && e <= 1000000;
	}
	if (!ok)
		app_die("--wait-hosts: '%s' is not N@E (N hosts from 1 to %d, epoch E from 1 to 1000000)", app_clip(arg),
			MF_MAX_HOSTS);
	c->wait_hosts = (int)n;
	c->wait_epoch = (int)e;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mf --train FILE [--test FILE] [options]\n"
		"       psrun -n N [-t T] mf --train FILE [--test FILE] [options]\n"
		"       psrun -n N --hosts H --host-rank R --coordinator ADDR:PORT \\\n"
		"             --token-file F mf --train FILE [...]   (one psrun per host)\n"
		"\n"
		"Matrix factorization with biases (r = mean + b_u + b_i + p_u.q_i) trained by\n"
		"SGD, the model kept in psmem tables.  Prints train and test RMSE per epoch.\n"
		"The ratings are split over every worker of every node of every host: each\n"
		"is trained once per epoch; host 0 prints the results and writes the files.\n"
		"\n"
		"Input: one rating per line, 'user item rating [timestamp]', separated by\n"
		"commas or by tabs/spaces (MovieLens u.data and ratings.csv load as they are);\n"
		"an optional header line (a first line whose rating is not a number), blank\n"
		"lines and '#' comments are skipped; plain or gzip.  Ids are arbitrary strings.\n"
		"Test ratings of users or items not in the training data are predicted from\n"
		"the biases and the mean, and counted.  A rating that is not a finite number\n"
		"or beyond +-1e6, and a gzip file cut short or corrupt, stop the run.\n"
		"\n"
		"  --train FILE      training ratings (required)\n"
		"  --test FILE       test ratings: test RMSE per epoch (default: none)\n"
		"  --rank K          factors per user and item (default: 100)\n"
		"  --lr X            SGD learning rate; with --rule sum the base of each row's\n"
		"                    adaptive rate lr / sqrt(1 + its squared gradients so far),\n"
		"                    as LIBMF's (default: 0.07)\n"
		"  --reg X           L2 regularization of the factors (--rule sgd/adagrad: and\n"
		"                    of the biases) (default: 0.1)\n"
		"  --init-std X      std. deviation of the initial factors, uniform on\n"
		"                    [0, sqrt(12) X) (default: 0.03)\n"
		"  --epochs N        passes over the training data (default: 20)\n"
		"  --threads T       worker threads per node (default: psrun -t, else 1)\n"
		"  --policy P        parameter management (default: classic):\n"
		"                      classic   item rows stay where created (range placement);\n"
		"                                workers update any item row (asynchronous SGD)\n"
		"                      localize  DSGD blocking: items in S blocks (S: --shares,\n"
		"                                by default the workers of every host), each\n"
		"                                share trains on one block per sub-epoch,\n"
		"                                localized to its worker's node first (next\n"
		"                                block prefetched on one host)\n"
		"  --sync M          bound the workers' progress: bsp, ssp:S (at most S clocks\n"
		"                    ahead of the slowest worker) or asp; a worker clocks %d\n"
		"                    times per epoch (classic) or sub-epoch (localize), after\n"
		"                    each slice of its ratings (default: no clocks)\n"
		"  --rule R          how updates reach the model (default: sum):\n"
		"                      sum      workers run SGD and push the differences\n"
		"                      sgd      workers push gradients; the tables' server-side\n"
		"                               sgd rule applies them (lr --lr)\n"
		"                      adagrad  the same with the adagrad rule (lr --lr, eps 1e-8;\n"
		"                               accumulators kept beside the rows)\n"
		"  --seed S          seed of the initial factors and the order (default: 1)\n"
		"  --json FILE       write a JSON summary (app, policy, hosts, nodes, threads,\n"
		"                    epochs, seconds, throughput, rmse, ratings trained per\n"
		"                    epoch by each node of each host, ...); '-' for stdout\n"
		"                    (default: none)\n"
		"  --save FILE       write the model as text: 'mean M', then one row per user\n"
		"                    and item: user|item ID BIAS F1..FK (default: none)\n"
		"  --replicate K     replicate the K items with the most training ratings on\n"
		"                    every node (hot-spot replication; 0 = none) (default: 0)\n"
		"  --repl-rate HZ    replica sync rounds per second per node; every rating\n"
		"                    updates an item, so replicas go stale fast (default: 200)\n"
		"  --checkpoint FILE write a checkpoint of the model (psmem format) after the\n"
		"                    last epoch, and every K epochs with --checkpoint-every\n"
		"                    (default: none)\n"
		"  --checkpoint-every K\n"
		"                    checkpoint every K epochs (default: only after the last)\n"
		"  --resume FILE     start from a checkpoint: its model, and the epoch after\n"
		"                    the last one it holds (--epochs counts them all); same\n"
		"                    data, rank, hosts, nodes and threads (default: psrun\n"
		"                    --restore's file, else none)\n"
		"  --shares S        split the ratings into S shares (virtual workers: the\n"
		"                    localize policy's DSGD grid is S x S), each trained by\n"
		"                    one worker of a host present; a host that joins\n"
		"                    (psrun --join: give it the job's --shares), leaves or is\n"
		"                    lost re-splits them at the next epoch (a loss: the next\n"
		"                    step).  Give more shares than workers (e.g. a multiple of\n"
		"                    the worker counts to come) for a joiner to get a fair\n"
		"                    part (default: the workers of the job at its start,\n"
		"                    hosts x nodes x threads: one share each)\n"
		"  --wait-hosts N@E  at the start of epoch E, wait until N hosts are present\n"
		"                    (hosts joining by psrun --join are admitted meanwhile;\n"
		"                    every host gives the same) (default: no wait)\n"
		"  -h, --help        print this help and exit\n"
		"  --version         print the version and exit\n"
		"\n"
		"Determinism: with one worker in all (one node, one thread) a run is a function\n"
		"of the data and --seed.  With more, workers update shared item rows\n"
		"concurrently (classic) and sums are added in arrival order, so results vary\n"
		"slightly from run to run.\n"
		"\n"
		"Throughput is training ratings per second (evaluation excluded).\n"
		"A run whose RMSE turns inf or NaN (--lr too large) stops after that epoch\n"
		"with exit status 1, writing nothing.\n"
		"\n"
		"Several hosts: ps_sync_hosts at the start of each epoch is where hosts\n"
		"join (psrun --elastic / --join) and leave (psstat --leave, psrun --drain);\n"
		"under psrun --on-host-failure continue the survivors take a lost host's\n"
		"shares.  The JSON summary has hosts_joined/left/lost, host_<event>_epoch\n"
		"and host_epoch_ratings (ratings trained per epoch by each host).\n"
		"\n"
		"Under psrun --on-failure restart a node that dies is started again and\n"
		"continues its share of the epoch where it stopped; psstat --checkpoint FILE\n"
		"asks a running mf for a checkpoint at the end of the current epoch.\n",
		CLOCK_SLICES);
}

int main(int argc, char **argv)
{
	app_init("mf");
	struct job jb = {.c = {.rank = 100, .epochs = 20, .lr = 0.07, .reg = 0.1, .init_std = 0.03, .seed = 1,
			       .repl_rate = 200}};
	struct cfg *c = &jb.c;
	enum { O_TRAIN = 256, O_TEST, O_RANK, O_LR, O_REG, O_INIT, O_EPOCHS, O_THREADS, O_POLICY, O_SEED, O_JSON, O_SAVE,
	       O_SYNC, O_RULE, O_REPL, O_REPL_RATE, O_CKPT, O_CKPT_EVERY, O_RESUME, O_SHARES, O_WAIT_HOSTS };
	static const struct option opts[] = {
		{"train", 1, 0, O_TRAIN}, {"test", 1, 0, O_TEST},       {"rank", 1, 0, O_RANK},
		{"lr", 1, 0, O_LR},       {"reg", 1, 0, O_REG},         {"init-std", 1, 0, O_INIT},
		{"epochs", 1, 0, O_EPOCHS}, {"threads", 1, 0, O_THREADS}, {"policy", 1, 0, O_POLICY},
		{"seed", 1, 0, O_SEED},   {"json", 1, 0, O_JSON},       {"save", 1, 0, O_SAVE},
		{"sync", 1, 0, O_SYNC}, {"rule", 1, 0, O_RULE}, {"replicate", 1, 0, O_REPL},
		{"repl-rate", 1, 0, O_REPL_RATE}, {"checkpoint", 1, 0, O_CKPT}, {"checkpoint-every", 1, 0, O_CKPT_EVERY},
		{"resume", 1, 0, O_RESUME}, {"shares", 1, 0, O_SHARES},
		{"wait-hosts", 1, 0, O_WAIT_HOSTS}, {"help", 0, 0, 'h'}, {"version", 0, 0, APP_OPT_VERSION},
		{0, 0, 0, 0}};
	int o;
	while ((o = app_getopt(argc, argv, "h", opts, NULL, false)) != -1) {
		switch (o) {
		case O_TRAIN: c->train = optarg; break;
		case O_TEST: c->test = optarg; break;
		case O_RANK: c->rank = (int)app_opt_long("--rank", optarg, 1, 4096); break;
		case O_LR: c->lr = app_opt_double("--lr", optarg, 0, 10); break;
		case O_REG: c->reg = app_opt_double("--reg", optarg, 0, 100); break;
		case O_INIT: c->init_std = app_opt_double("--init-std", optarg, 0, 10); break;
		case O_EPOCHS: c->epochs = (int)app_opt_long("--epochs", optarg, 1, 1000000); break;
		case O_THREADS: c->threads = (int)app_opt_long("--threads", optarg, 1, 1024); break;
		case O_POLICY:
			if (strcmp(optarg, "classic") == 0)
				c->localize = false;
			else if (strcmp(optarg, "localize") == 0)
				c->localize = true;
			else
				app_die("--policy: '%s' is not classic or localize", app_clip(optarg));
			break;
		case O_SEED: c->seed = (uint64_t)app_opt_long("--seed", optarg, 0, INT64_MAX); break;
		case O_JSON: c->json = optarg; break;
		case O_SAVE: c->save = optarg; break;
		case O_SYNC: {
			char why[160];
			if (ps_clock_parse(optarg, &c->sync_mode, &c->staleness, why, sizeof why))
				app_die("--sync: %s", why);
			c->sync = optarg;
			break;
		}
		case O_RULE:
			for (c->rule = 0; c->rule < 3 && strcmp(optarg, rule_names[c->rule]); c->rule++)
				;
			if (c->rule == 3)
				app_die("--rule: '%s' is not sum, sgd or adagrad", app_clip(optarg));
			break;
		case O_REPL: c->replicate = app_opt_long("--replicate", optarg, 0, INT32_MAX); break;
		case O_REPL_RATE: c->repl_rate = app_opt_double("--repl-rate", optarg, 0, 10000); break;
		case O_CKPT: c->ckpt = optarg; break;
		case O_CKPT_EVERY: c->ckpt_every = (int)app_opt_long("--checkpoint-every", optarg, 1, 1000000); break;
		case O_RESUME: c->resume = optarg; break;
		case O_SHARES: c->shares = (int)app_opt_long("--shares", optarg, 1, MAX_SHARES); break;
		case O_WAIT_HOSTS: parse_wait_hosts(c, optarg); break;
		case 'h': usage(stdout); return 0;
		default: app_usage_error("unknown option '%s'", app_clip(argv[optind - 1]));
		}
	}
	if (optind < argc)
		app_usage_error("unexpected argument '%s'", app_clip(argv[optind]));
	if (!c->train)
		app_die("--train FILE is required (try --help)");
	if (c->ckpt_every && !c->ckpt)
		app_die("--checkpoint-every needs --checkpoint FILE");
	/* an output that cannot be written fails now, not after the training */
	app_check_writable("--json", c->json);
	app_check_writable("--save", c->save);
	app_check_writable("--checkpoint", c->ckpt);

	/* every node reads everything: ids must agree across nodes */
	double t_load = app_now();
	struct app_ratings tr = {0}, te = {0};
	jb.users = app_idmap_new();
	jb.items = app_idmap_new();
	double sum = 0;
	jb.rmin = INFINITY;
	jb.rmax = -INFINITY;
	app_load_ratings(c->train, true, jb.users, jb.items, &tr, &sum, &jb.rmin, &jb.rmax);
	if (c->test)
		app_load_ratings(c->test, false, jb.users, jb.items, &te, NULL, NULL, NULL);
	jb.nusers = app_idmap_size(jb.users);
	jb.nitems = app_idmap_size(jb.items);
	jb.ntrain = tr.n;
	jb.ntest = te.n;
	jb.mean = sum / (double)tr.n;
	for (size_t k = 0; k < te.n; k++)
		jb.test_unseen += te.v[k].u == NONE || te.v[k].i == NONE;
	t_load = app_now() - t_load;
	if ((size_t)c->replicate > jb.nitems)
		app_die("--replicate: %ld items, but the training data has only %zu", c->replicate, jb.nitems);
	if (c->replicate) {
		jb.icount = calloc(jb.nitems, sizeof *jb.icount);
		if (!jb.icount)
			app_die("out of memory");
		for (size_t k = 0; k < tr.n; k++)
			jb.icount[tr.v[k].i]++;
	}

	int err;
	jb.w = c->threads ? ps_init_threads(c->threads, &err) : ps_init(&err);
	if (!jb.w)
		app_die("cannot join the job: %s", ps_strerror(err));
	if (c->sync)
		check(ps_set_consistency(jb.w, c->sync_mode, c->staleness), "--sync");
	jb.joiner = ps_joined(jb.w) == 1;
	jb.hosts = jb.joiner ? 0 : start_hosts(jb.w); /* a joiner: at its first ps_sync_hosts */
	jb.host = ps_host_id(jb.w);
	jb.host_nodes = ps_num_nodes(jb.w);
	jb.nodes = jb.hosts * jb.host_nodes; /* the data is split over every node of every host */
	jb.node = app_gnode(jb.w);
	jb.threads = ps_num_threads(jb.w);
	jb.host_workers = jb.host_nodes * jb.threads;
	jb.workers = jb.nodes * jb.threads;
	if (jb.joiner && !c->shares)
		app_die("a joining mf needs --shares S, the job's share count (the job's workers at its start, hosts x "
			"nodes x threads, unless it was given --shares)");
	if (jb.joiner && (c->replicate || c->resume)) /* replicas, checkpoints: from the start only */
		app_die("%s is not supported on a joining host", c->replicate ? "--replicate" : "--resume");
	if (!c->shares && jb.workers > MAX_SHARES)
		app_die("%d workers: more than %d shares; give --shares", jb.workers, MAX_SHARES);
	jb.shares = c->shares ? c->shares : jb.workers;
	if (c->localize && jb.shares > MAX_LOCALIZE_SHARES)
		app_die("--policy localize: %d shares, at most %d (--shares)", jb.shares, MAX_LOCALIZE_SHARES);
	jb.blocks = c->localize ? jb.shares : 1;
	partition(&jb, &tr, &te);
	jb.joined_epoch = calloc(MF_MAX_HOSTS, sizeof *jb.joined_epoch);
	jb.gone_epoch = calloc(MF_MAX_HOSTS, sizeof *jb.gone_epoch);
	if (!jb.joined_epoch || !jb.gone_epoch || pthread_mutex_init(&jb.reload_lock, NULL))
		app_die("out of memory");
	if (jb.joiner) { /* it builds its shares' data from them at its first ps_sync_hosts */
		jb.rtr = tr;
		jb.rte = te;
		jb.reloaded = true;
	} else {
		free(tr.v);
		free(te.v);
	}
	jb.hosts_seen = jb.hosts;
	jb.epoch_rmse = calloc((size_t)c->epochs, sizeof *jb.epoch_rmse);
	if (!jb.epoch_rmse)
		app_die("out of memory");
	trained_rows(&jb, jb.hosts ? jb.hosts : jb.host + 1);

	ps_table_opts to;
	jb.vl = c->rule == RULE_SUM ? c->rank + 3 : c->rank + 1;
	ps_table_opts_init(&to, jb.ukeys, (uint32_t)jb.vl);
	to.placement = PS_PLACE_RANGE;
	set_rule(c, &to);
	jb.U = ps_table_create(jb.w, &to, &err);
	if (!jb.U)
		app_die("cannot create the user table: %s", ps_strerror(err));
	ps_table_opts_init(&to, jb.nitems, (uint32_t)jb.vl);
	to.placement = PS_PLACE_RANGE;
	set_rule(c, &to);
	to.repl_max = (uint32_t)c->replicate;
	to.repl_rate = c->repl_rate;
	/* several hosts (a joiner too): more room for the slots given to other
	 * hosts while they wait to be reused (virtual) */
	if (jb.hosts != 1)
		to.slots_per_node = 2 * (uint64_t)jb.nitems + 4096;
	jb.V = ps_table_create(jb.w, &to, &err);
	if (!jb.V)
		app_die("cannot create the item table: %s", ps_strerror(err));
	ps_table_opts_init(&to, (uint64_t)c->epochs * (uint64_t)jb.shares, M_LEN);
	to.flags = PS_TRANSIENT; /* not in checkpoints: --epochs may change on --resume */
	jb.M = ps_table_create(jb.w, &to, &err);
	if (!jb.M)
		app_die("cannot create the metrics table: %s", ps_strerror(err));
	ps_table_opts_init(&to, MF_MAX_HOSTS, 1);
	to.flags = PS_TRANSIENT;
	jb.L = ps_table_create(jb.w, &to, &err);
	if (!jb.L)
		app_die("cannot create the leave notes' table: %s", ps_strerror(err));
	jb.start_epoch = jb.joiner ? 0 : app_resume(jb.w, c->resume); /* a joiner: the epoch from ps_sync_hosts */
	if (jb.start_epoch >= c->epochs)
		app_die("cannot resume: the checkpoint has %d epochs done; --epochs %d leaves none to train",
			jb.start_epoch, c->epochs);

	if (jb.node == 0 && ps_restarted(jb.w)) {
		printf("mf: node 0 restarted\n");
		fflush(stdout);
	} else if (jb.node == 0) {
		printf("mf: %zu users, %zu items, %zu training ratings (mean %.4f)", jb.nusers, jb.nitems, jb.ntrain,
		       jb.mean);
		if (c->test)
			printf(", %zu test ratings (%zu with an unseen user or item)", jb.ntest, jb.test_unseen);
		printf("; loaded in %.2f s\n", t_load);
		printf("mf: ");
		if (jb.hosts > 1)
			printf("%d hosts x ", jb.hosts);
		printf("%d node%s x %d thread%s, policy %s, rank %d, lr %g, reg %g, %d epochs, replicate %ld",
		       jb.host_nodes, jb.host_nodes > 1 ? "s" : "", jb.threads, jb.threads > 1 ? "s" : "",
		       c->localize ? "localize" : "classic", c->rank, c->lr, c->reg, c->epochs, c->replicate);
		if (c->sync)
			printf(", sync %s", c->sync);
		if (c->rule != RULE_SUM)
			printf(", rule %s", rule_names[c->rule]);
		printf("\n");
		if (jb.start_epoch)
			printf("mf: resumed after epoch %d\n", jb.start_epoch);
		fflush(stdout);
	} else if (ps_node_id(jb.w) == 0 && !ps_restarted(jb.w) && !jb.joiner) { /* another host: what it trains */
		size_t here = 0;
		for (int k = 0; k < jb.ndata0; k++)
			here += jb.data0[k].nr;
		printf("mf: host %d of %d, node %d of %d: %zu of %zu training ratings per epoch; host 0 reports\n",
		       jb.host, jb.hosts, jb.node, jb.nodes, here, jb.ntrain);
		fflush(stdout);
	} else if (ps_node_id(jb.w) == 0 && jb.joiner) {
		printf("mf: host %d joining the job: %d shares; waiting for its next epoch\n", jb.host, jb.shares);
		fflush(stdout);
	}
	int rc = ps_run_workers(jb.w, worker, &jb);
	if (rc)
		app_die("workers: %s", ps_strerror(rc));
	/* diverged: node 0 said so; nothing is printed, saved or written */
	if (jb.lead && !jb.diverged_epoch) {
		double thr = jb.train_seconds > 0 ? (double)jb.ntrain * jb.epochs_trained / jb.train_seconds : 0;
		double repl = app_repl_share(jb.w, 0);
		if (jb.ntest)
			printf("mf: test RMSE %.4f, train RMSE %.4f after %d epochs; %.0f ratings/s (%.2f s training, "
			       "%.2f s in all)\n",
			       jb.rmse, jb.train_rmse, c->epochs, thr, jb.train_seconds, jb.total_seconds);
		else
			printf("mf: train RMSE %.4f after %d epochs; %.0f ratings/s (%.2f s training)\n", jb.train_rmse,
			       c->epochs, thr, jb.train_seconds);
		if (c->replicate)
			printf("mf: node 0: %.1f%% of key accesses served by replicas\n", 100 * repl);
		if (c->json) {
			app_json *j = app_json_new("mf");
			app_json_str(j, "policy", c->localize ? "localize" : "classic");
			app_json_str(j, "sync", c->sync ? c->sync : "none");
			app_json_str(j, "rule", rule_names[c->rule]);
			app_json_int(j, "hosts", jb.hosts);
			app_json_int(j, "nodes", jb.host_nodes);
			app_json_int(j, "threads", jb.threads);
			app_json_int(j, "epochs", c->epochs);
			app_json_int(j, "start_epoch", jb.start_epoch);
			app_json_num(j, "seconds", jb.total_seconds);
			app_json_num(j, "train_seconds", jb.train_seconds);
			app_json_num(j, "load_seconds", t_load);
			app_json_num(j, "throughput", thr);
			app_json_num(j, "rmse", jb.rmse);
			app_json_num(j, "train_rmse", jb.train_rmse);
			app_json_int(j, "rank", c->rank);
			app_json_num(j, "lr", c->lr);
			app_json_num(j, "reg", c->reg);
			app_json_int(j, "seed", (int64_t)c->seed);
			app_json_int(j, "users", (int64_t)jb.nusers);
			app_json_int(j, "items", (int64_t)jb.nitems);
			app_json_int(j, "train_ratings", (int64_t)jb.ntrain);
			app_json_int(j, "test_ratings", (int64_t)jb.ntest);
			app_json_int(j, "test_unseen", (int64_t)jb.test_unseen);
			app_json_num(j, "global_mean", jb.mean);
			app_json_int(j, "replicate", c->replicate);
			app_json_num(j, "repl_rate", c->repl_rate);
			app_json_num(j, "repl_share", repl);
			app_json_num(j, "train_cpu_seconds", jb.train_cpu);
			json_hosts(&jb, j);
			ps_node_stats st;
			if (ps_stats(jb.w, 0, &st) == 0) {
				app_json_int(j, "relocations_node0", (int64_t)st.relocations);
				app_json_num(j, "local_share_node0",
					     (double)st.local_keys / (double)(st.local_keys + st.remote_keys + 1));
			}
			app_json_write(j, c->json);
		}
	}
	if (jb.left && jb.node % jb.host_nodes == 0) {
		printf("mf: host %d left the job\n", jb.host);
		fflush(stdout);
	}
	ps_finalize(jb.w);
	free(jb.data0); /* its entries moved to the workers (start_shares) */
	free(jb.data0_share);
	free(jb.owner0);
	free(jb.uw);
	free(jb.ib);
	free(jb.share_users);
	free(jb.joined_epoch);
	free(jb.gone_epoch);
	free(jb.rtr.v);
	free(jb.rte.v);
	pthread_mutex_destroy(&jb.reload_lock);
	free(jb.ukey);
	free(jb.bstart);
	free(jb.block_items);
	free(jb.epoch_rmse);
	free(jb.trained);
	free(jb.icount);
	app_idmap_free(jb.users);
	app_idmap_free(jb.items);
	return jb.diverged_epoch ? 1 : 0;
}
