/*
 * ckpt_hosts.c - checkpoints of multi-host jobs (CKH1-CKH4): one part per
 * host, the id and the commit agreed over hosts through w->net, the
 * secondary parts committed after host 0's.  Format: checkpoint.c.
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
 * checkpoint ("written": its temp file is durable; "commit": host 0, just
 * before it commits).  A release build ignores the variable. */
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
 * Node 0 of host R >= 1, once every host's temp file is durable: tmp
 * becomes PATH.hostR; the file of the committed checkpoint (id committed,
 * host 0's PATH) is kept as PATH.hostR.prev until host 0 commits (CKH3).
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

/*
 * Node 0 of every host, checkpoint: the steps between the agreements of
 * collective_hosts (which orders them, CKH3).  id and committed are agreed
 * before; step 1 writes, 2 commits the others, 3 commits host 0.
 */
struct hwrite {
	char file[PATH_MAX], tmp[PATH_MAX];
	bool have_tmp;
};

int ps__ck_hosts_write(ps_world *w, const char *path, const void *meta, size_t mlen, int prc, int *lrc)
{
	const bool n0 = w->node == 0, h0 = w->host == 0;
	char *msg = w->seg.hdr->ckpt.msg;
	struct hwrite hw = {.have_tmp = false};
	bool done = false; /* host 0: committed */
	static _Atomic int calls; /* relaxed: the test hook's count only */
	int nth = atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed) + 1;
	ps__ck_host_file(path, w->host, hw.file, sizeof hw.file);
	/* the checkpoint's id and the committed one, from host 0 */
	uint64_t id = n0 && h0 ? new_id() : UINT64_MAX;
	ps__ck_agree(w, lrc, &id);
	uint64_t committed = n0 && h0 ? file_id(hw.file) : UINT64_MAX;
	ps__ck_agree(w, lrc, &committed);
	int rc = n0 ? prc : 0; /* prc: node 0 failed before (its message is set) */
	if (n0 && rc == 0 && *lrc == 0) {
		struct hinfo hi = {.hosts = (uint32_t)w->nhosts, .rank = (uint32_t)w->host, .id = id};
		rc = ps__ck_write_tmp(w, hw.file, hw.tmp, meta, mlen, &hi, msg);
		hw.have_tmp = rc == 0;
		if (rc == 0)
			debug_die(w, "written", nth);
	}
	/* 1: every host's temp file is durable */
	uint64_t bad = n0 && rc ? (uint64_t)w->host : UINT64_MAX;
	ps__ck_agree(w, lrc, &bad);
	if (n0 && !h0 && hw.have_tmp) {
		if (*lrc == 0 && bad == UINT64_MAX)
			rc = commit_secondary(hw.file, hw.tmp, committed, msg);
		else
			unlink(hw.tmp);
		hw.have_tmp = false;
	}
	/* 2: every other host's file is in place */
	uint64_t bad2 = n0 && rc ? (uint64_t)w->host : UINT64_MAX;
	ps__ck_agree(w, lrc, &bad2);
	if (n0 && h0 && hw.have_tmp) {
		if (*lrc == 0 && bad == UINT64_MAX && bad2 == UINT64_MAX) {
			debug_die(w, "commit", nth);
			rc = ps__ck_commit_tmp(hw.tmp, hw.file, msg); /* the commit point */
			done = rc == 0;
		} else {
			unlink(hw.tmp);
		}
	}
	/* 3: host 0's verdict */
	uint64_t bad3 = n0 && h0 && rc ? 0 : UINT64_MAX;
	ps__ck_agree(w, lrc, &bad3);
	if (!n0 || rc)
		return rc;
	if (*lrc) {
		ps__ck_say(msg, "the hosts could not ps__ck_agree (%s); %s", ps_strerror(*lrc),
		    done ? "the checkpoint was committed before" : "nothing committed");
		return *lrc;
	}
	uint64_t who = bad != UINT64_MAX ? bad : bad2;
	if (who != UINT64_MAX) {
		ps__ck_say(msg, "host %" PRIu64 " could not write its part (its message says why); nothing committed", who);
		return PS_ECKPT;
	}
	if (bad3 != UINT64_MAX) {
		ps__ck_say(msg, "host 0 could not commit (its message says why); the previous checkpoint stays");
		return PS_ECKPT;
	}
	return 0;
}

/*
 * Node 0 of every host, restore: host 0's PATH names the checkpoint (its
 * id); host R restores from PATH.hostR, or PATH.hostR.prev, whichever is
 * that checkpoint's (CKH3).  Everything is checked on every host before any
 * host assigns (CK3 over hosts).
 */
int ps__ck_hosts_restore(ps_world *w, const char *path, int *lrc)
{
	const bool n0 = w->node == 0, h0 = w->host == 0;
	struct ps__ckpt *c = &w->seg.hdr->ckpt;
	char *msg = c->msg;
	char file[PATH_MAX], prev[PATH_MAX];
	ps__ck_host_file(path, w->host, file, sizeof file);
	ps__ck_pathf(prev, sizeof prev, "%s.prev", file);
	ps_table *t[PS__MAX_TABLES];
	int n = ps__ck_saved_tables(w, t);
	struct in f = {.fd = -1};
	int rc = 0;
	if (n0) {
		rc = ps__ck_in_open(&f, file, msg);
		if (rc == 0)
			rc = ps__ck_check_host(&f, w->nhosts, w->host, msg);
	}
	uint64_t id = !(n0 && h0) ? UINT64_MAX : rc ? 0 : f.hi.id;
	ps__ck_agree(w, lrc, &id);
	if (n0 && rc == 0 && *lrc == 0 && !h0 && id == 0) {
		ps__ck_say(msg, "host 0's file was refused (its message says why)");
		rc = PS_ECKPT;
	}
	if (n0 && rc == 0 && *lrc == 0 && !h0 && f.hi.id != id) {
		uint64_t mine = f.hi.id;
		struct in p;
		char m2[PS__MSG_MAX];
		if (ps__ck_in_open(&p, prev, m2) == 0 && ps__ck_check_host(&p, w->nhosts, w->host, m2) == 0 && p.hi.id == id) {
			ps__ck_in_close(&f);
			f = p;
			snprintf(file, sizeof file, "%s", prev);
		} else {
			ps__ck_in_close(&p);
			ps__ck_say(msg,
			    "checkpoint %016" PRIx64 "; host 0's %s is checkpoint %016" PRIx64
			    " and %s.prev is not it either: not the same checkpoint",
			    mine, path, id, file);
			rc = PS_ECKPT;
		}
	}
	if (n0 && rc == 0 && *lrc == 0)
		rc = ps__ck_check_shapes(&f, t, n, msg);
	if (n0 && rc == 0 && *lrc == 0)
		rc = ps__ck_check_data(&f, msg);
	if (n0 && rc == 0 && *lrc == 0)
		rc = ps__ck_check_home(&f, t, n, msg);
	uint64_t bad = n0 && rc ? (uint64_t)w->host : UINT64_MAX;
	ps__ck_agree(w, lrc, &bad);
	if (n0 && rc == 0 && *lrc == 0 && bad == UINT64_MAX)
		rc = ps__ck_assign_all(w, &f, t, n, msg);
	uint64_t bad2 = n0 && rc ? (uint64_t)w->host : UINT64_MAX;
	ps__ck_agree(w, lrc, &bad2);
	ps__ck_in_close(&f);
	if (!n0)
		return 0;
	ps__ck_pathf(c->path, sizeof c->path, "%s", file); /* the file the metadata comes from */
	if (rc)
		return rc;
	if (*lrc) {
		ps__ck_say(msg, "the hosts could not ps__ck_agree (%s)", ps_strerror(*lrc));
		return *lrc;
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
