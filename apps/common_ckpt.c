/*
 * common_ckpt.c - checkpoints of the apps: --checkpoint FILE,
 * --checkpoint-every K, --resume FILE (or psrun --restore FILE), and
 * checkpoints asked for from outside (psstat --checkpoint FILE).
 *
 * The file's metadata names the app and the epochs done, so a resumed run
 * continues with the next epoch and refuses another app's checkpoint.
 * Every call here is collective over the nodes: one thread per node makes
 * it, where the workers are quiescent (between epochs).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "psmem.h"

#define META_VERSION 1u

struct meta {
	char app[16];          /* app_name, NUL-padded */
	uint32_t version;
	uint32_t epochs_done;
};

static void fill(struct meta *m, int epochs_done)
{
	memset(m, 0, sizeof *m);
	snprintf(m->app, sizeof m->app, "%s", app_name);
	m->version = META_VERSION;
	m->epochs_done = (uint32_t)epochs_done;
}

/* Every node gets the same error from a collective call: node 0 says it. */
__attribute__((noreturn, format(printf, 2, 3))) static void die_once(ps_world *w, const char *fmt, ...)
{
	if (ps_node_id(w) != 0)
		exit(1);
	char buf[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	app_die("%s", buf);
}

int app_resume(ps_world *w, const char *path)
{
	struct meta m;
	size_t len = 0;
	int rc = ps_restore_meta(w, path, &m, sizeof m, &len);
	if (rc < 0)
		die_once(w, "cannot resume: %s", *ps_checkpoint_error(w) ? ps_checkpoint_error(w) : ps_strerror(rc));
	if (rc == 0 && len == 0)
		return 0; /* nothing to resume from */
	const char *file = path ? path : getenv("PSMEM_RESTORE");
	if (len != sizeof m || m.version != META_VERSION || strncmp(m.app, app_name, sizeof m.app) != 0)
		die_once(w, "cannot resume: %s: not a checkpoint of %s", file, app_name);
	return (int)m.epochs_done;
}

void app_epoch_checkpoints(ps_world *w, const char *path, int every, int epochs_done, int epochs)
{
	struct meta m;
	fill(&m, epochs_done);
	bool due = path && ((every > 0 && epochs_done % every == 0) || epochs_done == epochs);
	if (due) {
		if (ps_checkpoint_meta(w, path, &m, sizeof m) < 0)
			die_once(w, "checkpoint: %s", ps_checkpoint_error(w));
		if (ps_node_id(w) == 0 && !ps_replaying(w) && ps_host_id(w) == 0)
			printf("%s: checkpoint after epoch %d written to %s\n", app_name, epochs_done, path);
		else if (ps_node_id(w) == 0 && !ps_replaying(w)) /* host R writes its part to path.hostR */
			printf("%s: checkpoint after epoch %d: host %d's part written to %s.host%d\n", app_name,
			       epochs_done, ps_host_id(w), path, ps_host_id(w));
	}
	int rc = ps_checkpoint_poll(w, &m, sizeof m);
	if (rc < 0 && ps_node_id(w) == 0) /* asked from outside: psstat reports it */
		fprintf(stderr, "%s: checkpoint asked for by psstat failed: %s\n", app_name, ps_checkpoint_error(w));
	else if (rc > 0 && ps_node_id(w) == 0)
		printf("%s: checkpoint after epoch %d written as asked by psstat\n", app_name, epochs_done);
	fflush(stdout);
}
