/*
 * psrun_hosts.c - psrun's multi-host part.  See psrun_hosts.h, and
 * lib/rendezvous.c, lib/bridge.c for the mechanisms.
 *
 * Invariants
 *   - The job token is read from a private file or PSMEM_TOKEN, is never
 *     printed, and PSMEM_TOKEN is removed from the environment before any
 *     node starts: only psrun holds it (under --elastic / --join it stays
 *     in psrun's memory after the rendezvous: the door checks joiners
 *     with it; else it is wiped).
 *   - Elastic jobs (docs/DESIGN.md "Joining and leaving", bridge.c EL1):
 *     the listener stays open only under --elastic / --join, and only the
 *     door thread accepts on it; every connection it keeps passed the
 *     token's handshake.
 *   - Every socket is close-on-exec except the node's own end of its link
 *     and its own data connections (one per other host, made by the
 *     rendezvous), which are kept open across exec for that node only,
 *     in its child; psrun closes its copies once the node is forked.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "bridge.h"
#include "psrun_hosts.h"

/*
 * The bridge runs on a thread of its own, so that nothing psrun's main
 * thread does (forking and exec'ing the nodes, reaping them) delays a
 * heartbeat.  The two meet under mu: the main thread hands over "our nodes
 * are done" (done_*) and learns "a peer failed" / "every peer is finished"
 * (told_*), woken through two eventfds.
 */
struct hosts {
	struct ps__launch launch;
	struct ps__rdv *rdv;
	struct ps__bridge *bridge;
	int nodes;
	int node_fd[PS__MAX_NODES];  /* the node's end of its link, -1 once closed */
	int *data_fd;                /* [data_rows * nodes] as in ps__rdv, -1 once closed */
	int data_rows;               /* hosts of the rendezvous; a joiner's: every rank */
	bool verbose;
	int on_host_failure;         /* host_opts' */
	double backup_rate;          /* host_opts' */
	pthread_t thread;
	bool running;
	/* elastic (EL1): the kept listener and the door thread taking joiners */
	int cap;                     /* host ranks: PS__ELASTIC_HOSTS, else hosts */
	int home;                    /* initial host count */
	bool elastic, joiner;
	struct ps__welcome welcome;  /* a joiner's: who was there */
	struct ps__seg *seg;
	pthread_t door;
	bool door_running;
	int door_cancel;             /* eventfd: stop the door thread */
	int next_rank;               /* host 0: the next joiner's rank (never reused) */
	int wake_fd;                 /* main -> bridge thread */
	int notify_fd;               /* bridge thread -> main */
	pthread_mutex_t mu;          /* everything below, and the bridge */
	bool quit;
	bool done_sent, done_pending;
	int done_code;
	char done_why[PS__NOTE_MAX];
	bool told_stop, told_finished;
	char why[PS__NOTE_MAX];       /* the failure, stable once told_stop */
};

void hosts_make_token(const char *path)
{
	struct ps__token t;
	int rc = ps__token_generate(&t);
	if (rc == 0)
		rc = ps__token_write(path, &t);
	sodium_memzero(&t, sizeof t);
	if (rc) {
		fprintf(stderr, "psrun: cannot write a job token to %s: %s\n", path, ps_strerror(rc));
		exit(1);
	}
	printf("psrun: wrote a new job token to %s (mode 0600): hand it to every host's psrun with "
	       "--token-file\n", path);
	exit(0);
}

__attribute__((format(printf, 1, 2), noreturn))
static void die2(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("psrun: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static void load_token(const struct host_opts *o, struct ps__token *t)
{
	char why[256];
	if (o->token_file) {
		int rc = ps__token_load(o->token_file, t, why, sizeof why);
		if (rc)
			die2("job token file %s %s (%s)", o->token_file, why, ps_strerror(rc));
	} else {
		const char *env = getenv(PS__TOKEN_ENV);
		if (!env)
			die2("a multi-host job needs its job token: --token-file FILE (make one with "
			     "psrun --make-token FILE) or the environment variable %s", PS__TOKEN_ENV);
		if (ps__token_parse(env, t) != 0)
			die2("%s does not hold a token (want 64 hex digits)", PS__TOKEN_ENV);
	}
	/* the nodes never see it */
	unsetenv(PS__TOKEN_ENV);
}

/* The file execvp would run for prog[0]. */
static bool resolve_prog(const char *prog, char *out, size_t len)
{
	if (strchr(prog, '/')) {
		snprintf(out, len, "%s", prog);
		return access(out, X_OK) == 0;
	}
	const char *path = getenv("PATH");
	while (path && *path) {
		const char *end = strchr(path, ':');
		size_t n = end ? (size_t)(end - path) : strlen(path);
		if ((size_t)snprintf(out, len, "%.*s/%s", (int)n, n ? path : ".", prog) < len && access(out, X_OK) == 0)
			return true;
		path += n + (end ? 1 : 0);
	}
	return false;
}

static void describe(struct ps__layout *me, char *const prog[], int nodes, int threads)
{
	me->abi = PS__ABI;
	me->nodes = (uint32_t)nodes;
	me->threads = (uint32_t)threads;
	char path[PATH_MAX];
	if (!resolve_prog(prog[0], path, sizeof path)) {
		fprintf(stderr, "psrun: cannot execute '%s': %s\n", prog[0], strerror(ENOENT));
		exit(127);
	}
	int rc = ps__hash_file(path, me->prog_hash);
	if (rc == 0)
		rc = ps__hash_file("/proc/self/exe", me->psrun_hash);
	if (rc) {
		fprintf(stderr, "psrun: cannot read '%s' to fingerprint it: %s\n", path, strerror(-rc));
		exit(127);
	}
	if (gethostname(me->name, sizeof me->name) != 0)
		snprintf(me->name, sizeof me->name, "?");
	me->name[sizeof me->name - 1] = 0;
}

struct hosts *hosts_prepare(const struct host_opts *o, char *const prog[], int nodes, int threads, bool verbose)
{
	extern char **environ;
	struct ps__launch l = {0};
	char err[512];
	if (o->join) {
		/* EL1: rank and host count come with the WELCOME */
		if (o->hosts >= 0 || o->host_rank >= 0 || o->coordinator)
			die2("--join COORD:PORT takes no --hosts, --host-rank or --coordinator: the job says them");
		if (ps__addr_split(o->join, l.coord_host, sizeof l.coord_host, &l.coord_port) != 0 || !l.coord_port)
			die2("--join '%s': want ADDR:PORT of host 0's psrun", o->join);
		l.hosts = PS__ELASTIC_HOSTS;
		l.rank = (int)PS__JOIN_RANK;
		snprintf(l.source, sizeof l.source, "--join");
	} else if (ps__launch_resolve(o->hosts, o->host_rank, o->coordinator, environ, &l, err, sizeof err) != 0)
		die2("%s", err);
	if (o->drain && !o->elastic && !o->join)
		die2("--drain is for elastic jobs: give --elastic (every host) or --join too");
	if (o->elastic && l.hosts > (int)PS__JOIN_RANK)
		die2("--elastic: at most %u hosts (ranks of joiners included)", PS__JOIN_RANK);
	if (l.hosts == 1) {
		if (o->elastic)
			die2("--elastic is for jobs of several hosts (--hosts H, H >= 2)");
		if (o->token_file || o->bind)
			fprintf(stderr, "psrun: note: a one-host job: --token-file and --bind are not used\n");
		return NULL;
	}
	struct hosts *h = calloc(1, sizeof *h);
	struct ps__rdv *r = calloc(1, sizeof *r);
	if (!h || !r)
		die2("out of memory");
	h->launch = l;
	h->on_host_failure = o->on_host_failure;
	h->backup_rate = o->backup_rate > 0 ? o->backup_rate : 20;
	h->rdv = r;
	h->verbose = verbose;
	h->wake_fd = h->notify_fd = h->door_cancel = -1;
	r->listen_fd = -1;
	h->joiner = o->join != NULL;
	h->elastic = o->elastic || h->joiner;
	h->home = l.hosts;
	h->cap = h->elastic ? (int)PS__ELASTIC_HOSTS : l.hosts;
	h->next_rank = l.hosts;
	if (h->elastic) {
		r->hello_hosts = (int)PS__ELASTIC_HOSTS;
		r->keep_listener = true;
	}
	pthread_mutex_init(&h->mu, NULL);
	for (int i = 0; i < PS__MAX_NODES; i++)
		h->node_fd[i] = -1;
	r->rank = l.rank;
	r->hosts = l.hosts;
	snprintf(r->coord_host, sizeof r->coord_host, "%s", l.coord_host);
	r->coord_port = l.coord_port;
	if (o->bind) {
		/* ADDR or ADDR:PORT ([V6]:PORT) */
		if (ps__addr_split(o->bind, r->bind_host, sizeof r->bind_host, &r->bind_port) != 0) {
			if (strchr(o->bind, ']') || strlen(o->bind) >= sizeof r->bind_host || !*o->bind)
				die2("--bind '%s': want ADDR or ADDR:PORT", o->bind);
			snprintf(r->bind_host, sizeof r->bind_host, "%s", o->bind);
			r->bind_port = 0;
		}
		if (l.rank == 0)
			fprintf(stderr, "psrun: note: host 0's bridge listens on the coordinator address; "
				"--bind is not used\n");
	}
	load_token(o, &r->token);
	describe(&r->me, prog, nodes, threads);
	r->timeout_ns = (uint64_t)o->rdv_timeout_s * 1000000000ULL;
	r->log = stderr;
	r->cancel_fd = -1;
	if (verbose && h->joiner)
		fprintf(stderr, "psrun: joining the job through host 0 at %s:%u\n", l.coord_host, (unsigned)l.coord_port);
	else if (verbose)
		fprintf(stderr, "psrun: host %d of %d (from %s), coordinator %s:%u\n", l.rank, l.hosts, l.source,
			l.coord_host, (unsigned)l.coord_port);
	return h;
}

void hosts_place(const struct hosts *h, int *hosts, int *rank)
{
	if (!h)
		return;
	*hosts = h->launch.hosts;
	*rank = h->launch.rank;
}

void hosts_mark_segment(const struct hosts *h, struct ps__seg *seg)
{
	if (!h)
		return;
	((struct hosts *)h)->seg = seg;
	/* plain stores: the nodes that read them are forked after this (a
	 * joiner's marks again once it knows its rank: hosts_rendezvous) */
	seg->hdr->host_rank = (uint32_t)h->launch.rank;
	seg->hdr->num_hosts = (uint32_t)h->cap;
	seg->hdr->home_hosts = (uint32_t)h->home;
	seg->hdr->joined = h->joiner;
	if (!h->elastic)
		return;
	/* EL1: ranks not in the job yet are absent (not waited for); a
	 * joiner's view: the hosts the coordinator listed, members or not */
	struct ps__clocks *ck = &seg->hdr->clocks;
	for (int r = 0; r < h->cap && r < PS__MAX_CLOCK_HOSTS; r++) {
		uint32_t st = r < h->home ? PS__HOST_MEMBER : PS__HOST_ABSENT;
		bool listed = false;
		if (h->joiner) {
			st = PS__HOST_ABSENT;
			for (unsigned i = 0; i < h->welcome.n; i++)
				if (h->welcome.h[i].rank == r)
					listed = true;
			/* an initial host no longer there was lost (or left):
			 * its keys are at its backup host (backup.c BK3) */
			/* (before the WELCOME, n = 0: marked again after it) */
			bool lost = h->welcome.n && r < h->home && !listed && r != h->launch.rank;
			atomic_store_explicit(&ck->hgone[r], lost ? PS__HGONE_BEFORE : 0, memory_order_relaxed);
		}
		/* relaxed: before the nodes exist */
		atomic_store_explicit(&ck->hmember[r], st, memory_order_relaxed);
	}
}

int hosts_rendezvous(struct hosts *h, int cancel_fd)
{
	if (!h)
		return 0;
	struct ps__rdv *r = h->rdv;
	r->cancel_fd = cancel_fd;
	int rc = h->joiner ? ps__join(r, &h->welcome) : ps__rendezvous(r);
	if (!h->elastic) /* the door needs it for joiners' handshakes (EL1) */
		sodium_memzero(&r->token, sizeof r->token); /* done with it */
	if (rc == -EINTR)
		return rc;
	if (rc) {
		if (h->joiner)
			fprintf(stderr, "psrun: joining host: %s\n", r->err);
		else
			fprintf(stderr, "psrun: host %d: %s\n", r->rank, r->err);
		return rc;
	}
	if (h->joiner) {
		h->launch.rank = r->rank;
		h->launch.hosts = h->home = h->welcome.home;
		fprintf(stderr, "psrun: joined the job as host %d (%u hosts there)\n", r->rank, h->welcome.n);
		if (h->seg)
			hosts_mark_segment(h, h->seg);
	}
	if (h->verbose && !h->joiner)
		for (int i = 0; i < r->hosts; i++)
			fprintf(stderr, "psrun: host %d: bridge to host %d at %s:%u\n", r->rank, i, r->addr[i].addr,
				(unsigned)r->addr[i].port);
	return 0;
}

static void *bridge_main(void *arg)
{
	struct hosts *h = arg;
	struct pollfd p[2] = {{.fd = ps__bridge_fd(h->bridge), .events = POLLIN},
			      {.fd = h->wake_fd, .events = POLLIN}};
	for (;;) {
		poll(p, 2, ps__bridge_timeout_ms(h->bridge));
		uint64_t v;
		if (p[1].revents & POLLIN)
			(void)!read(h->wake_fd, &v, sizeof v);
		pthread_mutex_lock(&h->mu);
		if (h->quit) {
			pthread_mutex_unlock(&h->mu);
			return NULL;
		}
		bool news = false;
		int rc = ps__bridge_step(h->bridge);
		if (h->done_pending) {
			ps__bridge_local_done(h->bridge, h->done_code, h->done_code ? h->done_why : NULL);
			h->done_pending = false;
		}
		if (rc != 0 && !h->told_stop) {
			snprintf(h->why, sizeof h->why, "%s", ps__bridge_failure(h->bridge));
			h->told_stop = news = true;
		}
		if (!h->told_finished && ps__bridge_finished(h->bridge))
			h->told_finished = news = true;
		pthread_mutex_unlock(&h->mu);
		if (news)
			(void)!write(h->notify_fd, &(uint64_t){1}, sizeof(uint64_t));
	}
}

/*
 * The door (EL1): psrun --elastic keeps its listener after the rendezvous;
 * this thread accepts on it, runs the handshake (a wrong token is refused
 * and logged, the job goes on), and on host 0 checks a joiner's layout as
 * the rendezvous does, gives it a fresh rank and the hosts present
 * (WELCOME), and hands each authenticated bridge connection to the bridge
 * (under mu) as a pending peer.  Blocking handshakes never run on the
 * bridge thread, so a slow stranger never delays a heartbeat.
 */
static void *door_main(void *arg)
{
	struct hosts *h = arg;
	struct ps__rdv *r = h->rdv;
	for (;;) {
		int fd = ps__net_accept(r->listen_fd, UINT64_MAX, h->door_cancel);
		if (fd == -EINTR)
			return NULL;
		if (fd < 0) {
			struct pollfd p = {.fd = h->door_cancel, .events = POLLIN};
			if (poll(&p, 1, 100) > 0) /* EMFILE and the like: not a spin */
				return NULL;
			continue;
		}
		int rank = -1;
		uint32_t chan = 0;
		struct ps__layout l;
		if (ps__door_take(r, fd, &rank, &chan, &l) != 0)
			continue; /* refused, logged, closed */
		struct ps__peer_addr a = {0};
		if (rank == (int)PS__JOIN_RANK) {
			struct ps__welcome wl = {.home = (uint16_t)h->home};
			pthread_mutex_lock(&h->mu);
			bool full = h->next_rank >= (int)PS__JOIN_RANK;
			bool gone = !full && ps__bridge_live(h->bridge, &wl) != 0;
			if (!full && !gone)
				rank = h->next_rank++;
			pthread_mutex_unlock(&h->mu);
			char why[128];
			if (gone)
				snprintf(why, sizeof why, "host 0 is not in the job any more (it left, or the job is ending)");
			else
				snprintf(why, sizeof why, "no host rank left for a joiner (at most %u ranks per job)",
					 PS__JOIN_RANK);
			full |= gone;
			wl.rank = (uint16_t)rank;
			if (ps__door_welcome(r, fd, &wl, full ? why : NULL) != 0 || full) {
				fprintf(stderr, "psrun: host %d: %s\n", h->launch.rank,
					full ? why : "a joiner went away before its welcome");
				close(fd);
				continue;
			}
			a.port = l.port;
			snprintf(a.addr, sizeof a.addr, "%s", l.addr);
		}
		pthread_mutex_lock(&h->mu);
		int rc = chan == PS__CHAN_BRIDGE ? ps__bridge_add_peer(h->bridge, rank, fd, a.port ? &a : NULL)
						 : ps__bridge_add_data(h->bridge, rank, (int)chan - 1, fd);
		pthread_mutex_unlock(&h->mu);
		if (rc) {
			fprintf(stderr, "psrun: host %d: refused host %d's connection: %s\n", h->launch.rank, rank,
				rc == -EEXIST ? "that rank is or was in the job" : ps_strerror(rc));
			close(fd);
			continue;
		}
		(void)!write(h->wake_fd, &(uint64_t){1}, sizeof(uint64_t));
	}
}

int hosts_request_leave(struct hosts *h, int host)
{
	if (!h || !h->running || !h->elastic) {
		fprintf(stderr, "psrun: a leave request needs an elastic job (psrun --elastic or --join)\n");
		return -EINVAL;
	}
	pthread_mutex_lock(&h->mu);
	int rc = ps__bridge_request_leave(h->bridge, host < 0 ? h->launch.rank : host);
	pthread_mutex_unlock(&h->mu);
	if (rc)
		fprintf(stderr, "psrun: host %d: cannot ask host %d to leave: %s\n", h->launch.rank,
			host < 0 ? h->launch.rank : host, rc == -ENOENT ? "not a host of the job here" : "not a member");
	(void)!write(h->wake_fd, &(uint64_t){1}, sizeof(uint64_t));
	return rc;
}

int hosts_start_bridge(struct hosts *h, int nodes)
{
	if (!h)
		return 0;
	int mine[PS__MAX_NODES];
	h->nodes = nodes;
	/* node i's data connections: handed over at its fork */
	h->data_fd = h->rdv->data_fd;
	h->data_rows = h->joiner ? h->cap : h->launch.hosts;
	h->rdv->data_fd = NULL;
	for (int i = 0; i < nodes; i++) {
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
			int e = errno;
			fprintf(stderr, "psrun: cannot create the link of node %d: %s\n", i, strerror(e));
			for (int k = 0; k < i; k++)
				close(mine[k]), close(h->node_fd[k]), h->node_fd[k] = -1;
			return -e;
		}
		int buf = 4 << 20;
		for (int k = 0; k < 2; k++) {
			setsockopt(sv[k], SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
			setsockopt(sv[k], SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
		}
		fcntl(sv[0], F_SETFL, O_NONBLOCK);
		mine[i] = sv[0];
		h->node_fd[i] = sv[1];
	}
	uint8_t member[PS__ELASTIC_HOSTS] = {0};
	for (int r = 0; r < h->home && r < (int)PS__ELASTIC_HOSTS && !h->joiner; r++)
		member[r] = 1;
	for (unsigned i = 0; h->joiner && i < h->welcome.n; i++) /* as the coordinator saw them */
		member[h->welcome.h[i].rank] = h->welcome.h[i].member;
	struct ps__bridge_conf conf = {.rank = h->launch.rank, .hosts = h->cap, .nodes = nodes,
				       .peer_fd = h->rdv->fd, .addr = h->rdv->addr, .link_fd = mine, .log = stderr,
				       .drop_failed = h->on_host_failure == 1, .elastic = h->elastic,
				       .home = h->home, .joiner = h->joiner, .member = h->elastic ? member : NULL};
	int rc;
	h->bridge = ps__bridge_new(&conf, &rc);
	if (!h->bridge) {
		fprintf(stderr, "psrun: cannot start the bridge: %s\n", ps_strerror(rc));
		return rc;
	}
	/* the bridge owns the peers' connections now */
	for (int i = 0; i < h->cap; i++)
		h->rdv->fd[i] = -1;
	h->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	h->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	/* the thread inherits psrun's blocked signals: they stay psrun's */
	if (h->wake_fd < 0 || h->notify_fd < 0 || pthread_create(&h->thread, NULL, bridge_main, h) != 0) {
		fprintf(stderr, "psrun: cannot start the bridge thread: %s\n", strerror(errno));
		return -EAGAIN;
	}
	h->running = true;
	if (h->elastic && h->rdv->listen_fd >= 0) {
		h->door_cancel = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		h->rdv->cancel_fd = h->door_cancel; /* not psrun's signalfd: the main thread reads that */
		if (h->door_cancel < 0 || pthread_create(&h->door, NULL, door_main, h) != 0) {
			fprintf(stderr, "psrun: cannot start the thread taking joiners: %s\n", strerror(errno));
			return -EAGAIN;
		}
		h->door_running = true;
	}
	return 0;
}

void hosts_node_env(const struct hosts *h, int node)
{
	if (!h)
		return;
	char v[16];
	int fd = h->node_fd[node];
	snprintf(v, sizeof v, "%d", fd);
	/* --on-host-failure continue: the nodes back their keys up (backup.c) */
	if (h->on_host_failure == 1) {
		char r[32];
		snprintf(r, sizeof r, "%g", h->backup_rate);
		setenv("PSMEM_BACKUP_RATE", r, 1);
	} else {
		unsetenv("PSMEM_BACKUP_RATE");
	}
	/* this one descriptor survives exec; the other nodes' ends do not */
	if (fcntl(fd, F_SETFD, 0) != 0 || setenv("PSMEM_LINK_FD", v, 1) != 0) {
		fprintf(stderr, "psrun: node %d: cannot pass the bridge link: %s\n", node, strerror(errno));
		_exit(127);
	}
	/* and its data connections, "HOST:FD,..." (none left, e.g. a node
	 * started again: the node sends everything through the bridge) */
	char list[PS__MAX_HOSTS * 16] = "";
	size_t at = 0;
	for (int k = 0; h->data_fd && k < h->data_rows; k++) {
		int d = h->data_fd[k * h->nodes + node];
		if (d < 0)
			continue;
		if (fcntl(d, F_SETFD, 0) != 0) {
			fprintf(stderr, "psrun: node %d: cannot pass its data connections: %s\n", node, strerror(errno));
			_exit(127);
		}
		at += (size_t)snprintf(list + at, sizeof list - at, "%s%d:%d", at ? "," : "", k, d);
	}
	if (at ? setenv("PSMEM_DATA_FDS", list, 1) != 0 : unsetenv("PSMEM_DATA_FDS") != 0) {
		fprintf(stderr, "psrun: node %d: cannot pass its data connections: %s\n", node, strerror(errno));
		_exit(127);
	}
}

void hosts_node_started(struct hosts *h, int node)
{
	if (h && h->node_fd[node] >= 0) {
		close(h->node_fd[node]);
		h->node_fd[node] = -1;
	}
	for (int k = 0; h && h->data_fd && k < h->data_rows; k++) {
		int *d = &h->data_fd[k * h->nodes + node];
		if (*d >= 0)
			close(*d);
		*d = -1;
	}
}

int hosts_poll_fd(const struct hosts *h)
{
	return h && h->running ? h->notify_fd : -1;
}

int hosts_timeout_ms(const struct hosts *h)
{
	(void)h;
	return -1; /* the bridge thread keeps its own time */
}

const char *hosts_step(struct hosts *h)
{
	if (!h || !h->running)
		return NULL;
	uint64_t v;
	(void)!read(h->notify_fd, &v, sizeof v);
	pthread_mutex_lock(&h->mu);
	bool stop = h->told_stop;
	pthread_mutex_unlock(&h->mu);
	return stop ? h->why : NULL;
}

void hosts_local_done(struct hosts *h, int code, const char *why)
{
	if (!h || !h->running)
		return;
	pthread_mutex_lock(&h->mu);
	bool first = !h->done_sent;
	if (first) {
		h->done_sent = h->done_pending = true;
		h->done_code = code;
		snprintf(h->done_why, sizeof h->done_why, "%s", why ? why : "");
	}
	pthread_mutex_unlock(&h->mu);
	if (first)
		(void)!write(h->wake_fd, &(uint64_t){1}, sizeof(uint64_t));
}

bool hosts_finished(const struct hosts *h)
{
	if (!h || !h->running)
		return true;
	pthread_mutex_lock((pthread_mutex_t *)&h->mu);
	bool f = h->told_finished;
	pthread_mutex_unlock((pthread_mutex_t *)&h->mu);
	return f;
}

void hosts_free(struct hosts *h)
{
	if (!h)
		return;
	if (h->door_running) {
		(void)!write(h->door_cancel, &(uint64_t){1}, sizeof(uint64_t));
		pthread_join(h->door, NULL);
		h->door_running = false;
	}
	if (h->door_cancel >= 0)
		close(h->door_cancel);
	if (h->running) {
		pthread_mutex_lock(&h->mu);
		h->quit = true;
		pthread_mutex_unlock(&h->mu);
		(void)!write(h->wake_fd, &(uint64_t){1}, sizeof(uint64_t));
		pthread_join(h->thread, NULL);
		h->running = false;
	}
	if (h->wake_fd >= 0)
		close(h->wake_fd);
	if (h->notify_fd >= 0)
		close(h->notify_fd);
	if (h->bridge && h->verbose) {
		struct ps__bridge_stats st;
		ps__bridge_stats(h->bridge, &st);
		fprintf(stderr, "psrun: host %d: bridge: %llu data frames out, %llu in; %llu bytes out, %llu in; "
			"%llu barriers\n", h->launch.rank, (unsigned long long)st.frames_out,
			(unsigned long long)st.frames_in, (unsigned long long)st.wire_bytes_out,
			(unsigned long long)st.wire_bytes_in, (unsigned long long)st.barriers);
	}
	ps__bridge_free(h->bridge);
	for (int i = 0; i < PS__MAX_NODES; i++)
		if (h->node_fd[i] >= 0)
			close(h->node_fd[i]);
	for (int i = 0; h->data_fd && i < h->data_rows * h->nodes; i++)
		if (h->data_fd[i] >= 0)
			close(h->data_fd[i]);
	free(h->data_fd);
	if (h->rdv) {
		ps__rdv_close(h->rdv);
		sodium_memzero(&h->rdv->token, sizeof h->rdv->token);
		free(h->rdv);
	}
	free(h);
}
