/*
 * ckpt_hosts.c - checkpoints of multi-host jobs (CKH1-CKH5): one part per
 * initial home, written by that home now (the view agreed first), the id
 * and the commit agreed over hosts through w->net, the parts R >= 1
 * committed before part 0's.  Format: checkpoint.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <urcu/urcu-memb.h>
#include <zlib.h>

#include "segment.h"
#include "util.h"
#include "world.h"
#include "kv.h"
#include "replica.h"
#include "barrier.h"
#include "checkpoint.h"
#include "ckpt_in.h"

/* ------------------------------------------------------------ several hosts */

/* The id in the header of a version 2 file, 0 when there is none. */
static uint64_t file_id(const char *file)
{
	char msg[PS__MSG_MAX];
	struct in f;
	uint64_t id = ps__ck_in_open(&f, file, msg) == 0 ? f.hi.id : 0;
	ps__ck_in_close(&f);
	return id;
}

/* A fresh checkpoint id: random, never 0 (none) nor UINT64_MAX (CKH3). */
static uint64_t new_id(void)
{
	uint64_t id = 0;
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (read(fd, &id, sizeof id) != (ssize_t)sizeof id)
			id = 0;
		close(fd);
	}
	if (id == 0)
		id = ps__mix64(ps__now_ns() ^ (uint64_t)getpid() << 32);
	return id == 0 || id == UINT64_MAX ? 1 : id;
}

/*
 * One agreement over hosts (a PS__BAR_MIN barrier): *v in is this node's
 * value, out the minimum of all.  Once one failed (*lrc set: the link or a
 * peer host is gone, the same for every node of this host), the rest are
 * skipped and *v is left as it is, so every node makes the same calls.
 */
void ps__ck_agree(ps_world *w, int *lrc, uint64_t *v)
{
	if (*lrc == 0)
		*lrc = w->net->barrier_min(w, v); /* several hosts */
}

/* Test hook (test builds only, libpsmem_test.a): PSMEM_DEBUG_CKPT_DIE=
 * R:STAGE:N kills node 0 of host R at STAGE of the process's N-th
 * checkpoint ("written": its temp files are durable; "commit": part 0's
 * writer, just before it commits).  A release build ignores the variable. */
static void debug_die(const ps_world *w, const char *stage, int nth)
{
#ifdef PS_TEST_HOOKS
	const char *e = getenv("PSMEM_DEBUG_CKPT_DIE");
	char want[64];
	snprintf(want, sizeof want, "%d:%s:%d", w->host, stage, nth);
	if (e && strcmp(e, want) == 0)
		raise(SIGKILL);
#else
	(void)w, (void)stage, (void)nth;
#endif
}

/*
 * The writer of part R >= 1, once every part's temp file is durable: tmp
 * becomes PATH.hostR; the file of the committed checkpoint (id committed,
 * part 0's PATH) is kept as PATH.hostR.prev until part 0 commits (CKH3).
 */
static int commit_secondary(const char *file, const char *tmp, uint64_t committed, char *msg)
{
	char prev[PATH_MAX];
	ps__ck_pathf(prev, sizeof prev, "%s.prev", file);
	if (committed && file_id(file) == committed) {
		/* cur is the committed one: it moves to prev (a link first, so
		 * that file never disappears) */
		unlink(prev);
		if (link(file, prev) != 0) {
			int e = errno;
			unlink(tmp);
			ps__ck_say(msg, "cannot keep the previous checkpoint as %s: %s", prev, strerror(e));
			return -e;
		}
	} else if (!committed || file_id(prev) != committed) {
		unlink(prev); /* neither is committed: nothing to keep */
	}
	return ps__ck_commit_tmp(tmp, file, msg);
}

/* ------------------------------------------------------------ parts by home now (CKH5) */

/* A rank's state as this node sees it now (the segment's marks, CLH7 and
 * EL1-EL8); a view is every rank's. */
enum rank_state {
	RS_PRESENT = 1, /* a member not dropped (ps_hosts_alive's rule) */
	RS_GONE,        /* left or lost (hgone >= 2), its keys at b(x), promoted here */
	RS_PROMOTING,   /* lost, this host's promotion of its backups not done yet */
	RS_LEAVING,     /* left by agreement, its LEFT not here yet (keys moving) */
	RS_ABSENT,      /* a rank not admitted, or never used */
	RS_FAILING,     /* gone under --on-host-failure abort (hgone 1): the job stops */
};

static const char *state_name(int s)
{
	switch (s) {
	case RS_PRESENT: return "present";
	case RS_GONE: return "gone";
	case RS_PROMOTING: return "lost, its keys still being promoted";
	case RS_LEAVING: return "leaving, its keys still moving";
	case RS_ABSENT: return "not in the job";
	default: return "gone, the job stops";
	}
}

static bool rs_lost(int s)
{
	return s == RS_GONE || s == RS_PROMOTING;
}

/* The job's ranks and, for each part R (home host R of the initial hosts),
 * the present host that writes or reads it: R, or b(R) once R is gone. */
struct view {
	int ranks, homes;
	uint8_t st[PS__MAX_HOSTS_CK];
	int16_t writer[PS__MAX_HOSTS_CK]; /* -1: none present */
	int orphan;                       /* the first part without one, -1 */
	uint64_t digest;                  /* of ranks, homes and st */
};

/* Lost host h's promotion is done on this host: every node set its bit in
 * hpromo[h] or is no longer alive (net/backup.c ps__host_promoted's rule),
 * or h was lost before this host joined (its psrun marked it so). */
static bool promoted_here(ps_world *w, int h, uint32_t hg)
{
	if (hg & PS__HGONE_BEFORE)
		return true;
	/* acquire: pairs with each node's fetch_or release after its
	 * promotion (backup.c BK3) or its rewrite after a LEFT (drain.c) */
	uint64_t done = atomic_load_explicit(&w->seg.hdr->clocks.hpromo[h], memory_order_acquire);
	for (int n = 0; n < w->nnodes; n++)
		if (!(done >> n & 1) && ps__node_alive(&w->seg, n))
			return false;
	return true;
}

static int rank_state(ps_world *w, int h)
{
	if (h == w->host)
		return RS_PRESENT;
	if (h >= PS__MAX_CLOCK_HOSTS)
		return RS_ABSENT;
	const struct ps__clocks *ck = &w->seg.hdr->clocks;
	/* acquire: as ps_hosts_alive's, after the link thread's marks (CLH7),
	 * which it stores before it hands on the RELEASE that follows them */
	uint32_t hg = atomic_load_explicit(&ck->hgone[h], memory_order_acquire);
	uint32_t hm = atomic_load_explicit(&ck->hmember[h], memory_order_acquire);
	if (hg >= 2)
		return promoted_here(w, h, hg) ? RS_GONE : RS_PROMOTING;
	if (hg == 1)
		return RS_FAILING;
	if (hm == PS__HOST_MEMBER)
		return RS_PRESENT;
	return hm == PS__HOST_LEFT ? RS_LEAVING : RS_ABSENT;
}

/* b(r) of the view: the next initial host after r in the ring that is not
 * lost (net/backup.c ps__backup_host's rule, on the view's states), -1. */
static int view_backup(const struct view *v, int r)
{
	for (int d = 1; d < v->homes; d++) {
		int x = (r + d) % v->homes;
		if (!rs_lost(v->st[x]))
			return x;
	}
	return -1;
}

static void view_fill(ps_world *w, struct view *v)
{
	v->ranks = w->nhosts < PS__MAX_HOSTS_CK ? w->nhosts : PS__MAX_HOSTS_CK;
	v->homes = w->home_hosts < v->ranks ? w->home_hosts : v->ranks;
	uint64_t d = ps__mix64(((uint64_t)(uint32_t)v->ranks << 32) | (uint32_t)v->homes);
	for (int h = 0; h < v->ranks && h < PS__MAX_HOSTS_CK; h++) {
		v->st[h] = (uint8_t)rank_state(w, h);
		/* a rank beyond the homes (a joiner) writes no part: only
		 * whether it is present counts, as hosts that came later mark
		 * a joiner gone before them absent (psrun_hosts.c) */
		uint8_t s = h < v->homes || v->st[h] == RS_PRESENT ? v->st[h] : RS_ABSENT;
		d = ps__mix64(d ^ ((uint64_t)h << 8 | s));
	}
	v->digest = d;
	v->orphan = -1;
	for (int r = 0; r < v->homes; r++) {
		int x = v->st[r] == RS_PRESENT ? r : v->st[r] == RS_GONE ? view_backup(v, r) : -1;
		v->writer[r] = (int16_t)(x >= 0 && v->st[x] == RS_PRESENT ? x : -1);
		if (v->writer[r] < 0 && v->orphan < 0)
			v->orphan = r;
	}
}

/* This node's view, once this host promoted the backups of every host lost
 * so far and every host that left by agreement has handed its keys over
 * (its LEFT came: drain.c DR5).  Bounded: a promotion takes milliseconds
 * and a drain fails after its own patience (30 s, DR6: the leaver is then
 * a failed host); past the bound the part stays without a writer and the
 * call fails, naming the host. */
#define VIEW_PATIENCE_NS (60ULL * 1000 * 1000 * 1000)

static void view_take(ps_world *w, struct view *v)
{
	uint64_t until = ps__now_ns() + VIEW_PATIENCE_NS;
	for (;;) {
		view_fill(w, v);
		bool moving = false;
		for (int h = 0; h < v->ranks; h++)
			moving |= v->st[h] == RS_PROMOTING || v->st[h] == RS_LEAVING;
		if (!moving || ps__now_ns() >= until)
			return;
		usleep(1000);
	}
}

/* The first rank whose state differs from v's now (-1: none). */
static int view_changed(ps_world *w, const struct view *v)
{
	struct view now;
	view_fill(w, &now);
	if (now.digest == v->digest)
		return -1;
	for (int h = 0; h < v->ranks && h < now.ranks; h++)
		if (now.st[h] != v->st[h] && (h < v->homes || now.st[h] == RS_PRESENT || v->st[h] == RS_PRESENT))
			return h;
	return v->ranks; /* the rank count itself (cannot change in a job) */
}

/* Message of a view with a part that no present host writes. */
static void say_orphan(const struct view *v, char *msg, const char *what)
{
	int r = v->orphan, b = rs_lost(v->st[r]) ? view_backup(v, r) : -1;
	if (rs_lost(v->st[r]) && b >= 0)
		ps__ck_say(msg, "part %d has no present host to %s it: host %d is gone and its backup host %d is %s", r,
		    what, r, b, state_name(v->st[b]));
	else if (rs_lost(v->st[r]))
		ps__ck_say(msg, "part %d has no present host to %s it: host %d is %s and no host that homes keys is left",
		    r, what, r, state_name(v->st[r]));
	else
		ps__ck_say(msg, "part %d has no present host to %s it: host %d is %s", r, what, r, state_name(v->st[r]));
}

/* The part file named in this host's messages: its own part's, else the
 * first part it writes, else PATH. */
static void where_of(const ps_world *w, const char *path, const char *first, char *where, size_t wlen)
{
	if (w->host < w->home_hosts)
		ps__ck_host_file(path, w->host, where, wlen);
	else
		ps__ck_pathf(where, wlen, "%s", first ? first : path);
}

/* msg, about file, said from a host whose messages name where: names file
 * when it is another. */
static void name_file(char *msg, const char *file, const char *where)
{
	if (strcmp(file, where) == 0)
		return;
	char m[PS__MSG_MAX];
	snprintf(m, sizeof m, "%s", msg);
	ps__ck_say(msg, "%s: %s", file, m);
}

/* Temp files of every part left by writers that are gone (CK1): after a
 * failed checkpoint, when no present host has one any more. */
static void sweep_parts(const char *path, int homes)
{
	char file[PATH_MAX];
	for (int r = 0; r < homes; r++) {
		ps__ck_host_file(path, r, file, sizeof file);
		ps__ck_sweep_temps(file);
	}
}

/*
 * Node 0 of every host, checkpoint: the steps between the agreements of
 * collective_hosts (which orders them, CKH3, CKH5).  The view and the id
 * and committed ones are agreed first; step 1 writes every part this host
 * writes, 2 commits the parts R >= 1, 3 commits part 0; then the verdict
 * of part 0's writer.
 */
struct hpart {
	int rank;
	char file[PATH_MAX], tmp[PATH_MAX];
	bool have_tmp;
	struct in f; /* restore */
};

/* Verdicts of part 0's writer (the last agreement of a checkpoint) */
enum { V_OK = 0, V_CHANGED, V_PART, V_COMMIT };

/* The parts host writes (n0 of a view with roles), by rank: *np of them. */
static struct hpart *parts_of(ps_world *w, const struct view *v, const char *path, int *np, char *msg)
{
	int cnt = 0;
	*np = 0;
	for (int r = 0; r < v->homes; r++)
		cnt += v->writer[r] == w->host;
	if (!cnt)
		return NULL;
	struct hpart *pt = calloc((size_t)cnt, sizeof *pt);
	if (!pt) {
		ps__ck_say(msg, "out of memory");
		*np = -1;
		return NULL;
	}
	for (int r = 0; r < v->homes; r++)
		if (v->writer[r] == w->host) {
			pt[*np].rank = r;
			pt[*np].f.fd = -1;
			ps__ck_host_file(path, r, pt[*np].file, sizeof pt[*np].file);
			(*np)++;
		}
	return pt;
}

int ps__ck_hosts_write(ps_world *w, const char *path, const void *meta, size_t mlen, int prc, int *lrc,
		       char *where, size_t wlen)
{
	const bool n0 = w->node == 0;
	char *msg = w->seg.hdr->ckpt.msg;
	static _Atomic int calls; /* relaxed: the test hook's count only */
	int nth = atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed) + 1;
	int rc = n0 ? prc : 0; /* prc: node 0 failed before (its message is set) */
	/* who writes what, agreed (CKH5) */
	struct view *v = malloc(sizeof *v);
	if (v)
		view_take(w, v);
	uint64_t lo = v ? v->digest : 0, hi = v ? ~v->digest : 0; /* no view: a mismatch */
	ps__ck_agree(w, lrc, &lo);
	ps__ck_agree(w, lrc, &hi);
	const bool same = v && *lrc == 0 && lo == ~hi;
	const bool roles = same && v->orphan < 0;
	const int w0 = roles ? v->writer[0] : -1;
	const bool i0 = n0 && w0 == w->host;
	int np = 0;
	struct hpart *pt = n0 && roles ? parts_of(w, v, path, &np, msg) : NULL;
	if (np < 0) {
		np = 0;
		rc = rc ? rc : -ENOMEM;
	}
	where_of(w, path, np ? pt[0].file : NULL, where, wlen);
	/* the checkpoint's id and the committed one, from part 0's writer */
	uint64_t id = i0 ? new_id() : UINT64_MAX;
	ps__ck_agree(w, lrc, &id);
	uint64_t committed = i0 ? file_id(path) : UINT64_MAX;
	ps__ck_agree(w, lrc, &committed);
	const bool go = roles && id != UINT64_MAX && *lrc == 0;
	if (n0 && rc == 0 && go && np) {
		for (int i = 0; i < np && rc == 0; i++) {
			struct hinfo hi2 = {.hosts = (uint32_t)v->homes, .rank = (uint32_t)pt[i].rank, .id = id};
			rc = ps__ck_write_tmp(w, pt[i].file, pt[i].tmp, meta, mlen, &hi2, msg);
			pt[i].have_tmp = rc == 0;
			if (rc)
				name_file(msg, pt[i].file, where);
		}
		if (rc == 0)
			debug_die(w, "written", nth);
	}
	/* 1: every part's temp file is durable */
	uint64_t bad = n0 && rc ? (uint64_t)w->host : UINT64_MAX;
	ps__ck_agree(w, lrc, &bad);
	for (int i = 0; n0 && i < np; i++) {
		if (pt[i].rank == 0 || !pt[i].have_tmp)
			continue;
		if (rc == 0 && *lrc == 0 && bad == UINT64_MAX) {
			rc = commit_secondary(pt[i].file, pt[i].tmp, committed, msg);
			if (rc)
				name_file(msg, pt[i].file, where);
		} else {
			unlink(pt[i].tmp);
		}
		pt[i].have_tmp = false;
	}
	/* 2: every other part is in place */
	uint64_t bad2 = n0 && rc ? (uint64_t)w->host : UINT64_MAX;
	ps__ck_agree(w, lrc, &bad2);
	uint64_t verdict = UINT64_MAX;
	int moved = -1;
	if (i0) {
		struct hpart *p0 = np && pt[0].rank == 0 ? &pt[0] : NULL;
		if (rc || *lrc || bad != UINT64_MAX || bad2 != UINT64_MAX || !p0 || !p0->have_tmp) {
			verdict = V_PART;
		} else if ((moved = view_changed(w, v)) >= 0) {
			/* a writer lost before it arrived at 2 is dropped
			 * here before 2's RELEASE: seen now (CKH5) */
			verdict = V_CHANGED;
		} else {
			debug_die(w, "commit", nth);
			rc = ps__ck_commit_tmp(p0->tmp, p0->file, msg); /* the commit point */
			p0->have_tmp = false;
			verdict = rc ? V_COMMIT : V_OK;
		}
		if (p0 && p0->have_tmp)
			unlink(p0->tmp);
	}
	/* 3: part 0's writer's verdict */
	ps__ck_agree(w, lrc, &verdict);
	if (n0 && verdict != V_OK && v)
		sweep_parts(path, v->homes);
	if (n0 && moved < 0 && v && verdict == V_CHANGED)
		moved = view_changed(w, v);
	free(pt);
	const struct view vv = v ? *v : (struct view){.orphan = -1};
	free(v);
	if (!n0 || rc)
		return rc;
	if (*lrc) {
		ps__ck_say(msg, "the hosts could not ps__ck_agree (%s); %s", ps_strerror(*lrc),
		    verdict == V_OK ? "the checkpoint was committed before" : "nothing committed");
		return *lrc;
	}
	if (!same) {
		ps__ck_say(msg, "the hosts present changed as the checkpoint began (a host was lost, left or joined): "
		    "nothing written; the previous checkpoint stays");
		return PS_ECKPT;
	}
	if (!roles) {
		say_orphan(&vv, msg, "write");
		return PS_ECKPT;
	}
	if (id == UINT64_MAX) {
		ps__ck_say(msg, "host %d, which writes part 0, gave no checkpoint id (it was lost); nothing committed", w0);
		return PS_ECKPT;
	}
	uint64_t who = bad != UINT64_MAX ? bad : bad2;
	if (who != UINT64_MAX) {
		ps__ck_say(msg, "host %" PRIu64 " could not write its part (its message says why); nothing committed", who);
		return PS_ECKPT;
	}
	switch (verdict) {
	case V_OK:
		return 0;
	case V_CHANGED:
		if (moved >= 0 && moved < vv.ranks)
			ps__ck_say(msg, "host %d was lost or left during the checkpoint: nothing committed; the previous "
			    "checkpoint stays", moved);
		else
			ps__ck_say(msg, "a host was lost or left during the checkpoint: nothing committed; the previous "
			    "checkpoint stays");
		return PS_ECKPT;
	case V_COMMIT:
		ps__ck_say(msg, "host %d could not commit (its message says why); the previous checkpoint stays", w0);
		return PS_ECKPT;
	case V_PART:
		ps__ck_say(msg, "a part could not be written or a host was lost during the checkpoint (host %d's "
		    "verdict); nothing committed", w0);
		return PS_ECKPT;
	default:
		ps__ck_say(msg, "host %d, which commits, was lost at the commit point: %s is this checkpoint or the "
		    "previous one, complete either way", w0, path);
		return PS_ECKPT;
	}
}

/*
 * Node 0 of every host, restore: part 0's file, PATH, names the checkpoint
 * (its id); part R is read from PATH.hostR, or PATH.hostR.prev, whichever
 * is that checkpoint's (CKH3), by its reader of the agreed view (CKH5).
 * Everything is checked on every host before any host assigns (CK3 over
 * hosts).
 */
int ps__ck_hosts_restore(ps_world *w, const char *path, int *lrc, char *where, size_t wlen)
{
	const bool n0 = w->node == 0;
	char *msg = w->seg.hdr->ckpt.msg;
	ps_table *t[PS__MAX_TABLES];
	int n = ps__ck_saved_tables(w, t);
	int rc = 0;
	struct view *v = malloc(sizeof *v);
	if (v)
		view_take(w, v);
	uint64_t lo = v ? v->digest : 0, hi = v ? ~v->digest : 0;
	ps__ck_agree(w, lrc, &lo);
	ps__ck_agree(w, lrc, &hi);
	const bool same = v && *lrc == 0 && lo == ~hi;
	const bool roles = same && v->orphan < 0;
	const int w0 = roles ? v->writer[0] : -1;
	const bool i0 = n0 && w0 == w->host;
	int np = 0;
	struct hpart *pt = n0 && roles ? parts_of(w, v, path, &np, msg) : NULL;
	if (np < 0) {
		np = 0;
		rc = -ENOMEM;
	}
	where_of(w, path, np ? pt[0].file : NULL, where, wlen);
	for (int i = 0; n0 && i < np && rc == 0; i++) {
		rc = ps__ck_in_open(&pt[i].f, pt[i].file, msg);
		if (rc == 0)
			rc = ps__ck_check_host(&pt[i].f, v->homes, pt[i].rank, msg);
		if (rc)
			name_file(msg, pt[i].file, where);
	}
	uint64_t id = !i0 ? UINT64_MAX : rc ? 0 : pt[0].f.hi.id;
	ps__ck_agree(w, lrc, &id);
	const bool go = roles && *lrc == 0 && id != UINT64_MAX;
	if (n0 && rc == 0 && go && np && !i0 && id == 0) {
		ps__ck_say(msg, "host %d's file was refused (its message says why)", w0);
		rc = PS_ECKPT;
	}
	for (int i = 0; n0 && rc == 0 && go && i < np; i++) {
		struct hpart *p = &pt[i];
		if (p->rank == 0 || p->f.hi.id == id)
			continue;
		uint64_t mine = p->f.hi.id;
		char prev[PATH_MAX + 8], m2[PS__MSG_MAX];
		ps__ck_pathf(prev, sizeof prev, "%s.prev", p->file);
		struct in q;
		if (ps__ck_in_open(&q, prev, m2) == 0 && ps__ck_check_host(&q, v->homes, p->rank, m2) == 0 &&
		    q.hi.id == id) {
			ps__ck_in_close(&p->f);
			p->f = q;
			if (strcmp(where, p->file) == 0) /* the metadata comes from it */
				ps__ck_pathf(where, wlen, "%s", prev);
			ps__ck_pathf(p->file, sizeof p->file, "%s", prev);
		} else {
			ps__ck_in_close(&q);
			ps__ck_say(msg,
			    "checkpoint %016" PRIx64 "; host %d's %s is checkpoint %016" PRIx64
			    " and %s.prev is not it either: not the same checkpoint",
			    mine, w0, path, id, p->file);
			name_file(msg, p->file, where);
			rc = PS_ECKPT;
		}
	}
	for (int i = 0; n0 && rc == 0 && go && i < np; i++) {
		rc = ps__ck_check_shapes(&pt[i].f, t, n, msg);
		if (rc == 0)
			rc = ps__ck_check_data(&pt[i].f, msg);
		if (rc == 0)
			rc = ps__ck_check_home(&pt[i].f, t, n, msg);
		if (rc)
			name_file(msg, pt[i].file, where);
	}
	uint64_t bad = n0 && rc ? (uint64_t)w->host : UINT64_MAX;
	ps__ck_agree(w, lrc, &bad);
	int moved = -1;
	if (n0 && rc == 0 && go && bad == UINT64_MAX && (moved = view_changed(w, v)) >= 0) {
		/* a host lost before it arrived at the agreement is dropped here
		 * before its RELEASE: seen now, nothing assigned here */
		ps__ck_say(msg, "host %d was lost or left during the restore: nothing assigned on this host", moved);
		rc = PS_ECKPT;
	}
	for (int i = 0; n0 && rc == 0 && go && *lrc == 0 && bad == UINT64_MAX && i < np; i++) {
		rc = ps__ck_assign_all(w, &pt[i].f, t, n, msg);
		if (rc)
			name_file(msg, pt[i].file, where);
	}
	uint64_t bad2 = n0 && rc ? (uint64_t)w->host : UINT64_MAX;
	ps__ck_agree(w, lrc, &bad2);
	for (int i = 0; i < np; i++)
		ps__ck_in_close(&pt[i].f);
	free(pt);
	const struct view vv = v ? *v : (struct view){.orphan = -1};
	free(v);
	if (!n0)
		return 0;
	if (rc)
		return rc;
	if (*lrc) {
		ps__ck_say(msg, "the hosts could not ps__ck_agree (%s)", ps_strerror(*lrc));
		return *lrc;
	}
	if (!same) {
		ps__ck_say(msg, "the hosts present changed as the restore began (a host was lost, left or joined): "
		    "nothing changed");
		return PS_ECKPT;
	}
	if (!roles) {
		say_orphan(&vv, msg, "read");
		return PS_ECKPT;
	}
	if (id == UINT64_MAX) {
		ps__ck_say(msg, "host %d, which reads part 0, gave no checkpoint id (it was lost); nothing changed", w0);
		return PS_ECKPT;
	}
	if (bad != UINT64_MAX) {
		ps__ck_say(msg, "host %" PRIu64 "'s file was refused (its message says why); nothing changed", bad);
		return PS_ECKPT;
	}
	if (bad2 != UINT64_MAX) {
		ps__ck_say(msg, "host %" PRIu64 " failed while assigning (its message says why); this host's keys are restored",
		    bad2);
		return PS_ECKPT;
	}
	return n;
}
