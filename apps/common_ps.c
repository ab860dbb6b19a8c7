/*
 * common_ps.c - the psmem-facing options the apps share: --sampling (a
 * psmem sampling scheme instead of the app's own sampler), --replicate
 * (the K hottest keys by the app's own counts), and the share of key
 * accesses that replicas served, for the summaries.
 */
#include <math.h>
#include <stdio.h>

#include "common.h"

void app_sampling_off(struct app_sampling *s)
{
	*s = (struct app_sampling){.on = false, .scheme = PS_SAMPLE_NAIVE, .reuse = 1, .name = "app"};
}

void app_opt_sampling(const char *opt, const char *val, struct app_sampling *out)
{
	enum ps_sample_scheme sc;
	unsigned u;
	if (!val || ps_sample_scheme_parse(val, &sc, &u) != 0)
		app_die("%s: '%s' is not naive, local, pool or pool:U (U from 1 to %u)", opt, val ? app_clip(val) : "",
			PS_SAMPLE_MAX_REUSE);
	out->on = true;
	out->scheme = sc;
	out->reuse = u;
	if (sc == PS_SAMPLE_POOL)
		snprintf(out->name, sizeof out->name, "pool:%u", u);
	else
		snprintf(out->name, sizeof out->name, "%s", ps_sample_scheme_name(sc));
}

void app_sampling_apply(ps_table *t, const struct app_sampling *s)
{
	int rc = s->on ? ps_table_set_sampling(t, s->scheme, s->reuse) : 0;
	if (rc)
		app_die("--sampling %s: %s", s->name, ps_strerror(rc));
}

void app_replicate_top(ps_table *t, const uint64_t *counts, long k, const char *what)
{
	int rc = ps_replicate_top(t, counts, (size_t)k);
	if (rc < 0)
		app_die("cannot replicate the %s: %s", what, ps_strerror(rc));
}

double app_repl_share(ps_world *w, int node)
{
	ps_node_stats st;
	if (ps_stats(w, node, &st) != 0)
		return NAN;
	uint64_t acc = st.keys_pulled + st.keys_pushed;
	return acc ? (double)st.repl_keys / (double)acc : 0;
}
