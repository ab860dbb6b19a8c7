/*
 * link_serve.c - other hosts' requests, executed by this node's link
 * thread: PULL/PUSH on keys held here (redirecting the others), MOVE
 * (migrate.c), RPULL/RPUSH on primaries (replica_remote.c).  Never waits
 * for the network (MG4, RP10).  Invariants: bridge_link.c.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <urcu/urcu-memb.h>

#include "barrier.h"
#include "clock.h"
#include "kv.h"
#include "link.h"
#include "replica.h"
#include "table.h"
#include "link_in.h"

static ps_table *table_by_id(struct ps__link *L, uint32_t id)
{
	if (id >= PS__MAX_TABLES)
		return NULL;
	/* acquire: pairs with the release in ps__link_table_created */
	return atomic_load_explicit(&L->tables[id], memory_order_acquire);
}

void *ps__lk_scratch(struct ps__link *L, size_t n)
{
	if (ps__buf_reserve(&L->scratch, &L->scratch_cap, n) != 0)
		return NULL;
	return L->scratch;
}

/* Checks a request of another host against this host's table. */
static int check_request(ps_table *t, uint32_t value_len, uint64_t num_keys, uint32_t n, const uint8_t *kp,
			 ps_key *keys)
{
	if (!t)
		return PS_ETABLE;
	if (t->num_keys != num_keys || t->value_len != value_len)
		return PS_EMISMATCH;
	for (uint32_t i = 0; i < n; i++) {
		keys[i] = ps__get64(kp + 8 * (size_t)i);
		if (keys[i] >= t->num_keys)
			return PS_EKEY;
	}
	return 0;
}

/*
 * A PULL or PUSH of another host: the keys held here are done here; for
 * the others a REDIRECT names where to ask (the word's host; -1 while the
 * key is moving), then the REPLY (a pull's rows of redirected keys are
 * zero and overwritten by the requester's next round).
 */
void ps__lk_on_request(struct ps__link *L, const struct ps__frame *f)
{
	ps_world *w = L->w;
	const bool push = f->type == PS__F_PUSH;
	struct ps__kv_req m;
	int rc = ps__kv_dec(f->body, f->len, push, &m);
	if (rc == 0) /* key list from the cache, values decompressed (filter.h) */
		rc = ps__filter_req_in(L->filt, f->host, f->req, &m);
	ps_table *t = rc ? NULL : table_by_id(L, m.table);
	size_t vals = (rc || push) ? 0 : (size_t)m.n * m.value_len;
	size_t keys_off = PS__ALIGN(PS__FRAME_HDR + PS__REPLY_HDR + 4 * vals, 16);
	size_t miss_off = keys_off + (rc ? 0 : 8 * (size_t)m.n);
	size_t upd_off = PS__ALIGN(miss_off + (rc ? 0 : 4 * (size_t)m.n), 16);
	size_t end = upd_off + (push && !rc ? 4 * (size_t)m.n * m.value_len : 0);
	size_t redir_off = PS__ALIGN(end, 16);
	size_t total = redir_off + (rc ? 0 : PS__FRAME_HDR + ps__redirect_size(m.n));
	uint8_t small[PS__FRAME_HDR + PS__REPLY_HDR];
	uint8_t *buf = ps__lk_scratch(L, total);
	if (!buf) {
		rc = -ENOMEM;
		buf = small;
	}
	ps_key *keys = (ps_key *)(void *)(buf + keys_off);
	if (rc == 0)
		rc = check_request(t, m.value_len, m.num_keys, m.n, m.keys, keys);
	size_t nmiss = 0;
	if (rc == 0) {
		struct ps_table shadow;
		ps_table *tt = t;
		if (push && (m.flags & PS__KV_ASSIGN)) { /* as ps_assign_sync */
			shadow = *t;
			shadow.rule = PS_RULE_ASSIGN;
			shadow.flags &= ~PS_HOGWILD;
			tt = &shadow;
		}
		float *out = push ? NULL : (float *)(void *)(buf + PS__FRAME_HDR + PS__REPLY_HDR);
		float *upd = NULL;
		if (push) {
			upd = (float *)(void *)(buf + upd_off);
			memcpy(upd, m.values, 4 * (size_t)m.n * m.value_len);
		}
		uint32_t *miss = (uint32_t *)(void *)(buf + miss_off);
		uint64_t local = 0, repl = 0;
		ps__local_keys(tt, keys, NULL, m.n, out, upd, miss, &nmiss, &local, &repl);
		ps__count_batch(w, t, keys, m.n, !push, local, repl);
		bool nocopy = false; /* a lost host's key this backup host has no copy of */
		if (nmiss) {
			uint8_t *rf = buf + redir_off;
			ps__redirect_enc_hdr(rf + PS__FRAME_HDR, (uint32_t)nmiss);
			for (size_t i = 0; i < nmiss; i++) {
				ps_key k = keys[miss[i]];
				/* relaxed: a hint for the requester's next round */
				uint64_t lw = atomic_load_explicit(&t->loc[k], memory_order_relaxed);
				int32_t host = PS__LOC_IS_MOVING(lw)   ? -1
					       : PS__LOC_IS_REMOTE(lw) ? PS__LOC_OWNER(lw)
								       : w->host; /* back here */
				/* a lost host's key: pause while it is being
				 * promoted here; after, the requester fails it
				 * (no copy: BK3) */
				int home = ps__home_of(w, t->num_keys, k);
				if (host >= 0 && host != w->host && ps__host_lost(w, host) &&
				    ps__backup_host(w, host) == w->host) {
					if (!ps__host_promoted(w, host))
						host = -1;
					/* acquire: after the promotion's count */
					else if (atomic_load_explicit(&t->loc[k], memory_order_acquire) != lw)
						host = w->host; /* promoted meanwhile */
					/* away from the home our word is a hint (maybe
					 * stale): the home's directory decides, unless
					 * the home asks (its directory named the lost
					 * host) or is lost itself */
					else if (home != w->host && (int)f->host != home && !ps__host_lost(w, home))
						host = home;
					else
						nocopy = true;
				} else if (host >= 0 && host != w->host && ps__host_lost(w, host)) {
					/* its keys are at its backup host, which keeps
					 * its directory too (backup.c BK3, BK9) */
					int bb = ps__backup_host(w, host);
					host = bb >= 0 ? bb : -1;
				}
				ps__redirect_put(rf + PS__FRAME_HDR, (uint32_t)i, miss[i], host, k);
				if (out)
					memset(out + (size_t)miss[i] * m.value_len, 0, 4 * (size_t)m.value_len);
			}
			uint32_t rlen = (uint32_t)ps__redirect_size((uint32_t)nmiss);
			ps__lk_answer(L, f, rf, PS__F_REDIRECT, rlen);
		}
		if (nocopy)
			rc = PS_EHOSTDOWN; /* BK3: its keys were lost with it */
	}
	uint32_t nvals = (rc == 0) ? (uint32_t)vals : 0;
	uint32_t len = ps__filter_reply_out(L->filt, t ? t->flags : 0, buf + PS__FRAME_HDR, rc, nvals);
	ps__lk_answer(L, f, buf, PS__F_REPLY, len);
}

/* A MOVE of another host (migrate.c executes it). */
void ps__lk_on_move(struct ps__link *L, const struct ps__frame *f)
{
	struct ps__move_req m;
	int rc = ps__move_dec(f->body, f->len, &m);
	ps_table *t = rc ? NULL : table_by_id(L, m.table);
	if (rc == 0 && !t)
		rc = PS_ETABLE;
	bool take = rc == 0 && (m.op == PS__MV_TAKE || m.op == PS__MV_TAKEDIR); /* a leaving host's (drain.c) */
	if (rc == 0 && (t->num_keys != m.num_keys || (!take && t->value_len + t->state_len != m.nf)))
		rc = PS_EMISMATCH;
	uint8_t small[PS__FRAME_HDR + PS__MOVE_REPLY_HDR];
	uint8_t *buf = rc ? NULL : ps__lk_scratch(L, PS__FRAME_HDR + ps__move_reply_size(m.n, m.nf, m.n));
	if (rc == 0 && !buf)
		rc = -ENOMEM;
	uint32_t len;
	if (rc == 0 && take) {
		len = ps__drain_serve(L->w, t, f->host, &m, buf + PS__FRAME_HDR);
	} else if (rc == 0) {
		len = ps__migrate_serve(L->w, t, f->host, &m, buf + PS__FRAME_HDR);
	} else {
		buf = small;
		ps__move_reply_enc_hdr(buf + PS__FRAME_HDR, rc, 0, 0, 0);
		len = PS__MOVE_REPLY_HDR;
	}
	ps__lk_answer(L, f, buf, PS__F_MOVE_REPLY, len);
}

/* RPULL / RPUSH: as ps__lk_on_request, on the keys' primaries (replica.c). */
void ps__lk_on_primary_request(struct ps__link *L, const struct ps__frame *f)
{
	const bool push = f->type == PS__F_RPUSH;
	struct ps__kv_req m;
	int rc = ps__kv_dec(f->body, f->len, push, &m);
	if (rc == 0 && (m.flags & PS__KV_WIRE))
		rc = PS_EFRAME_BODY; /* replica rounds travel plain */
	ps_table *t = rc ? NULL : table_by_id(L, m.table);
	size_t vals = (rc || push) ? 0 : (size_t)m.n * m.value_len;
	size_t keys_off = PS__ALIGN(PS__FRAME_HDR + PS__REPLY_HDR + 4 * vals, 16);
	size_t upd_off = keys_off + (rc ? 0 : 8 * (size_t)m.n);
	uint8_t small[PS__FRAME_HDR + PS__REPLY_HDR];
	uint8_t *buf = ps__lk_scratch(L, upd_off + (push && !rc ? 4 * (size_t)m.n * m.value_len : 0));
	if (!buf) {
		rc = -ENOMEM;
		buf = small;
	}
	if (rc == 0)
		rc = check_request(t, m.value_len, m.num_keys, m.n, m.keys, (ps_key *)(void *)(buf + keys_off));
	if (rc == 0) {
		ps_key *keys = (ps_key *)(void *)(buf + keys_off);
		float *upd = NULL;
		if (push) {
			upd = (float *)(void *)(buf + upd_off);
			memcpy(upd, m.values, 4 * (size_t)m.n * m.value_len);
		}
		rc = ps__replica_serve(t, keys, m.n, push ? NULL : (float *)(void *)(buf + PS__FRAME_HDR + PS__REPLY_HDR),
				       upd);
	}
	uint32_t nvals = (rc == 0) ? (uint32_t)vals : 0;
	ps__reply_enc_hdr(buf + PS__FRAME_HDR, rc, nvals);
	uint32_t len = PS__REPLY_HDR + 4 * nvals;
	ps__lk_answer(L, f, buf, PS__F_REPLY, len);
}
