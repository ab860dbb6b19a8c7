/*
 * dump.c - statistics and the "who waits for what" dump (psstat --dump,
 * SIGQUIT to psrun).  Reads the segment without locks: a torn or stale view
 * only makes a diagnostic line out of date, it never changes the job.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "segment.h"
#include "lock.h"
#include "util.h"
#include "world.h"
#include "tctx.h"
#include "barrier.h"
#include "clock.h"
#include "dump.h"

static const char *state_name(uint32_t st)
{
	switch (PS__NODE_KIND(st)) {
	case PS__NODE_EMPTY: return "empty";
	case PS__NODE_ALIVE: return "alive";
	case PS__NODE_EXITED: return "exited";
	case PS__NODE_DEAD: return "dead";
	default: return "?";
	}
}

static const char *wait_name(uint32_t what)
{
	switch (what) {
	case PS__WAIT_BARRIER: return "barrier";
	case PS__WAIT_SLOTLOCK: return "slot lock";
	case PS__WAIT_REQUEST: return "request";
	case PS__WAIT_CREATE: return "table create";
	case PS__WAIT_GRACE: return "grace period";
	case PS__WAIT_CLOCK: return "clock";
	default: return "nothing";
	}
}

#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)

static const char *rule_name(uint32_t rule, char *buf, size_t len)
{
	static const char *const names[] = {"sum", "assign", "sgd", "adagrad", "adam"};
	if (rule < sizeof names / sizeof *names)
		return names[rule];
	snprintf(buf, len, "custom %u", rule);
	return buf;
}

static void dump_clock_wait(const struct ps__seg *s, uint64_t mine, uint64_t who, FILE *f)
{
	struct ps__clocks *ck = &s->hdr->clocks;
	int node = (int)(who >> 32), thread = (int)(uint32_t)who;
	char b[32];
	if (who & PS__CLOCK_WAIT_HOST) {
		int host = (int)(uint32_t)who;
		fprintf(f, " (its clock %" PRIu64 ", bound %s; waits for host %d", mine,
			ps__clock_bound_text(LD(ck->cfg), b, sizeof b), host);
		if (host >= 0 && host < PS__MAX_CLOCK_HOSTS) {
			if (LD(ck->hcfg[host]))
				fprintf(f, ", its slowest at clock %" PRIu64 " as last heard", LD(ck->hmin[host]));
			else
				fprintf(f, ", not heard from yet");
		}
		fputc(')', f);
		return;
	}
	fprintf(f, " (its clock %" PRIu64 ", bound %s; the slowest is node %d thread %d", mine,
		ps__clock_bound_text(LD(ck->cfg), b, sizeof b), node, thread);
	if (node >= 0 && node < PS__MAX_NODES && thread >= 0 && thread < PS__MAX_CLOCK_THREADS)
		fprintf(f, " at clock %" PRIu64, LD(ck->c[node][thread]));
	fputc(')', f);
}

/* The node's worker clocks, once the job uses clocks. */
static void dump_clocks(const struct ps__seg *s, uint32_t node, FILE *f)
{
	struct ps__clocks *ck = &s->hdr->clocks;
	uint32_t T = LD(s->hdr->threads_per_node);
	if (T > PS__MAX_CLOCK_THREADS)
		T = PS__MAX_CLOCK_THREADS;
	bool used = LD(ck->cfg) != 0;
	for (uint32_t t = 0; t < T && !used; t++)
		used = LD(ck->c[node][t]) != 0;
	if (!used)
		return;
	fprintf(f, "    worker clocks:");
	for (uint32_t t = 0; t < T; t++)
		fprintf(f, " %" PRIu64, LD(ck->c[node][t]));
	fputc('\n', f);
}

/* ", waiting for node 1 (dead: its replacement is awaited), node 3" */
static void dump_missing(const struct ps__seg *s, const struct ps__barrier *b, uint64_t idx, FILE *f)
{
	int nodes[PS__MAX_NODES], m;
	int missing = ps__barrier_missing(s, b, (uint32_t)idx, nodes, &m);
	fprintf(f, ", %d of %u participants missing", missing, LD(((struct ps__barrier *)b)->total));
	const char *sep = "; waiting for";
	for (int k = 0; k < m; k++) {
		int i = nodes[k];
		uint32_t kind = ps__node_kind(s, i);
		if (kind == PS__NODE_ALIVE && !ps__node_alive(s, i))
			kind = PS__NODE_DEAD;
		fprintf(f, "%s node %d", sep, i);
		if (kind == PS__NODE_DEAD)
			fprintf(f, " (dead%s)", ps__restart_mode(s) ? ": its replacement is awaited" : "");
		else if (kind != PS__NODE_ALIVE)
			fprintf(f, " (%s)", state_name(kind));
		sep = ",";
	}
}

static void dump_waiter(const struct ps__seg *s, const struct ps__waiter *wt, FILE *f)
{
	uint32_t what = LD(wt->what);
	uint64_t arg = LD(wt->arg), arg2 = LD(wt->arg2);
	fprintf(f, "    thread %d waits for %s", (int)LD(wt->tid), wait_name(what));
	switch (what) {
	case PS__WAIT_BARRIER: {
		const struct ps__barrier *b = arg2 ? &s->hdr->nodes : &s->hdr->workers;
		fprintf(f, " (%s barrier %" PRIu64, arg2 ? "node" : "worker", arg);
		dump_missing(s, b, arg, f);
		fputc(')', f);
		break;
	}
	case PS__WAIT_SLOTLOCK:
		fprintf(f, " (slot at offset %" PRIu64 " held by node %d%s)", arg, (int)arg2,
			(int)arg2 >= 0 && arg2 < s->hdr->num_nodes && !ps__node_alive(s, (int)arg2) ? ", dead" : "");
		break;
	case PS__WAIT_REQUEST:
		fprintf(f, " (op %" PRIu64 ", %" PRIu64 " keys, executed by the service thread)", arg, arg2);
		break;
	case PS__WAIT_CREATE:
		fprintf(f, " (table %" PRIu64 " being laid out by another node)", arg);
		break;
	case PS__WAIT_CLOCK:
		dump_clock_wait(s, arg, arg2, f);
		break;
	case PS__WAIT_GRACE: {
		uint64_t g = LD(((struct ps__hdr *)s->hdr)->global_epoch);
		fprintf(f, " (a free slot of table %" PRIu64 "; nodes behind epoch %" PRIu64 ":", arg, g);
		for (uint32_t i = 0; i < s->hdr->num_nodes; i++)
			if (LD(ps__node_at(s, (int)i)->epoch) < g && ps__node_alive(s, (int)i))
				fprintf(f, " %u", i);
		fputc(')', f);
		break;
	}
	default:
		break;
	}
	fputc('\n', f);
}

void ps__dump_seg(const struct ps__seg *s, FILE *f)
{
	const struct ps__hdr *h = s->hdr;
	fprintf(f, "psmem job %s: %u nodes x %u threads, on failure %s, global epoch %" PRIu64 ", memory %" PRIu64
		   " of %" PRIu64 " MiB\n",
		s->name, h->num_nodes, LD(((struct ps__hdr *)h)->threads_per_node), ps__restart_mode(s) ? "restart" : "abort",
		LD(((struct ps__hdr *)h)->global_epoch),
		LD(((struct ps__hdr *)h)->mem_committed) >> 20, h->mem_budget >> 20);
	char pages[64];
	fprintf(f, "  pages: %s\n", ps__seg_pages(s, pages, sizeof pages));
	for (uint32_t i = 0; i < h->num_nodes; i++) {
		struct ps__node *n = ps__node_at(s, (int)i);
		uint32_t st = LD(n->state);
		if (PS__NODE_KIND(st) == PS__NODE_ALIVE && !ps__node_alive(s, (int)i))
			st = PS__NODE_WORD(PS__NODE_DEAD, PS__NODE_INC(st)); /* killed, not marked yet */
		fprintf(f, "  node %u: %s, pid %d, incarnation %u, numa %d, epoch %" PRIu64 "\n", i, state_name(st),
			n->pid, PS__NODE_INC(st), n->numa_node, LD(n->epoch));
		uint32_t nw = LD(n->nwaiters);
		int shown = 0;
		for (uint32_t j = 0; j < nw && j < PS__MAX_WAITERS; j++) {
			if (LD(n->waiters[j].what) == PS__WAIT_NONE)
				continue;
			dump_waiter(s, &n->waiters[j], f);
			shown++;
		}
		if (!shown)
			fprintf(f, "    no thread waiting\n");
		dump_clocks(s, i, f);
	}
	for (int t = 0; t < PS__MAX_TABLES; t++) {
		struct ps__tdesc *d = ps__tdesc_at(s, t);
		char b[32];
		if (LD(d->state) != PS__T_READY)
			continue;
		fprintf(f, "  table %d: %" PRIu64 " keys x %u floats", t, d->num_keys, d->value_len);
		if (d->state_len)
			fprintf(f, " + %u of rule state", d->state_len);
		fprintf(f, ", rule %s, pools:", rule_name(d->rule, b, sizeof b));
		for (uint32_t i = 0; i < h->num_nodes; i++) {
			struct ps__pool *p = ps__pool_at(s, t, (int)i);
			fprintf(f, " [node %u: %" PRIu64 " used%s]", i, LD(p->used),
				ps__lock_held(&p->lock) ? ", locked" : "");
		}
		fputc('\n', f);
	}
	fflush(f);
}

void ps_dump(ps_world *w, FILE *f)
{
	ps__dump_seg(&w->seg, f);
}

int ps_stats(ps_world *w, int node, ps_node_stats *o)
{
	if (!w || !o)
		return -EINVAL;
	if (node < 0 || node >= w->nnodes)
		return PS_ENODE;
	const struct ps__node *n = ps__node_at(&w->seg, node);
	const struct ps__stats *st = ps__node_stats(n); /* tctx.c: with its threads' counters */
	memset(o, 0, sizeof *o);
	o->pulls = LD(st->pulls);
	o->pushes = LD(st->pushes);
	o->keys_pulled = LD(st->keys_pulled);
	o->keys_pushed = LD(st->keys_pushed);
	o->local_keys = LD(st->local_keys);
	o->remote_keys = LD(st->remote_keys);
	o->relocations = LD(st->relocations);
	o->retries = LD(st->retries);
	o->stale_reads = LD(st->stale_reads);
	o->repl_keys = LD(st->repl_keys);
	o->repl_rounds = LD(st->repl_rounds);
	uint64_t last = LD(((struct ps__stats *)st)->repl_last_ns), now = ps__now_ns();
	o->repl_age_ns = last && now > last ? now - last : 0;
	o->samples = LD(st->samples);
	o->sample_fallbacks = LD(st->sample_fallbacks);
	o->arena_bytes = n->arena_size;
	o->arena_used = LD(((struct ps__node *)n)->arena_used);
	for (int t = 0; t < PS__MAX_TABLES; t++) {
		struct ps__tdesc *d = ps__tdesc_at(&w->seg, t);
		if (LD(d->state) != PS__T_READY)
			continue;
		struct ps__pool *p = ps__pool_at(&w->seg, t, node);
		o->slots_used += LD(p->used);
		o->slots_capacity += p->cap;
	}
	return 0;
}
