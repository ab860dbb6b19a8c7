/* example.c - every node adds to two keys; node 0 prints the sums. */
#include <stdio.h>
#include <stdlib.h>

#include <psmem.h>

static void check(int rc, const char *what)
{
	if (rc < 0) {
		fprintf(stderr, "example: %s: %s\n", what, ps_strerror(rc));
		exit(1);
	}
}

int main(void)
{
	int err;
	ps_world *w = ps_init(&err);      /* joins the psrun job, or a private one-node job */
	if (!w) {
		fprintf(stderr, "example: ps_init: %s\n", ps_strerror(err));
		return 1;
	}
	int node = ps_node_id(w), nodes = ps_num_nodes(w);

	ps_table_opts o;
	ps_table_opts_init(&o, 1000000, 4);  /* 1M keys x 4 floats, all 0 */
	ps_table *t = ps_table_create(w, &o, &err); /* collective: every node calls it */
	if (!t) {
		fprintf(stderr, "example: ps_table_create: %s\n", ps_strerror(err));
		return 1;
	}

	ps_key k[2] = {7, 42};
	float v[2 * 4];
	for (int i = 0; i < 2 * 4; i++)
		v[i] = (float)(node + 1);
	ps_handle h = ps_localize(t, k, 2);  /* moves the keys here in the background */
	/* ... compute ... */
	check(ps_wait(h), "ps_localize");
	check(ps_push_sync(t, k, 2, v), "ps_push");  /* adds v */
	check(ps_barrier(w), "ps_barrier");          /* every node has pushed */
	check(ps_pull_sync(t, k, 2, v), "ps_pull");
	if (node == 0)
		printf("%d node(s): key 7 = %g, key 42 = %g\n", nodes, v[0], v[4]);
	check(ps_barrier(w), "ps_barrier");          /* every node has pulled */
	check(ps_finalize(w), "ps_finalize");
	return 0;
}
