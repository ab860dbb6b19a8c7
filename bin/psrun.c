/*
 * psrun - runs a program as an N-node psmem job on this host, alone or as
 * one host of a multi-host job (psrun_hosts.c: rendezvous and bridge).
 *
 *   psrun -n N [-t THREADS] [--numa auto|none] [-v] [--arena-size SIZE]
 *         [--mem SIZE] [--on-failure abort|restart] [--max-restarts N]
 *         [--tag-output | --output-dir DIR] [--timeout SEC]
 *         [--restore FILE] [--hosts H --host-rank R] [--coordinator ADDR:PORT]
 *         [--token-file FILE] [--bind ADDR[:PORT]] [--rendezvous-timeout S]
 *         [--on-host-failure abort|continue]
 *         [--elastic [--drain] | --join COORD:PORT [--drain]]
 *         [--hugepages[=DIR]]
 *         prog [args...]
 *   psrun --make-token FILE
 *
 * Process tree:
 *
 *   psrun --+-- guardian      (psrun's own code, no exec)
 *           +-- node 0        (execs prog; leads its own process group)
 *           +-- ...
 *           +-- node N-1
 *
 * Invariants
 *   - The segment is removed on every path: by psrun itself when it ends
 *     (normally, after a node failed, after SIGINT/SIGTERM/SIGHUP); by the
 *     guardian when psrun is killed outright (the guardian gets SIGUSR1 via
 *     PR_SET_PDEATHSIG); by ps__seg_sweep_stale() at the next start when both
 *     were killed (the creator pid in the header is dead by then).
 *   - No node outlives psrun: nodes get SIGKILL via PR_SET_PDEATHSIG, and
 *     each node leads a process group so that stopping it reaches the
 *     processes it started (a shell's `sleep` would otherwise survive).
 *   - The signals psrun handles are blocked from before the segment exists
 *     and read with a signalfd, so none is lost between fork and the loop,
 *     and no handler runs while the job is half built.
 *   - A node that fails (signal or non-zero exit) is, with --on-failure
 *     abort (the default), reported by node and signal and the job stopped
 *     within 2 s (SIGTERM, SIGKILL 1 s later).  With --on-failure restart it
 *     is marked DEAD in the segment, what it started is killed, and a new
 *     process is started for the same node id (PSMEM_RESTARTED=1), which
 *     takes the node over (lib/restart.c) - at most --max-restarts times in
 *     all, then the job is stopped as with abort.
 *   - Output: by default the nodes write to psrun's stdout and stderr
 *     directly.  --tag-output gives each node a pipe per stream; psrun reads
 *     them in its loop and writes each complete line, prefixed "[RANK] ",
 *     with one write(2), so lines of different nodes never mix within a
 *     line (a line over TAG_LINE_MAX bytes is cut into pieces, each
 *     prefixed).  --output-dir DIR sends both streams of a node to
 *     DIR/node-RANK.log (made before any node starts).
 *   - Stdin: node RANK 0 gets psrun's stdin (a terminal: /dev/null, see
 *     detach_tty_stdin), every other node /dev/null, as mpirun does.
 *   - Exit status: 0 iff every node exited 0; else the first failing node's
 *     (exit code, or 128 + signal); 127 when prog cannot be executed;
 *     124 when --timeout stopped the job; 128 + signal when psrun was
 *     interrupted and no node failed first; 2 for bad arguments; 1 when
 *     the job cannot be set up.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <numa.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "psmem_int.h"
#include "psrun_hosts.h"

#define MAX_THREADS      1024
#define FAIL_GRACE_NS    (1000ULL * 1000 * 1000) /* node failed: SIGTERM, SIGKILL after */
#define SIGNAL_GRACE_NS  (2000ULL * 1000 * 1000) /* psrun signalled: forward, SIGKILL after */
#define MAX_RESTARTS     1000
#define MAX_TIMEOUT_S    (366.0 * 86400)
#define TAG_LINE_MAX     65536 /* --tag-output: longer lines are cut */
#define EXIT_TIMEOUT     124   /* as timeout(1) */

struct opts {
	int nodes;
	int threads;
	int numa_mode;          /* 0 auto, 1 none (as in struct ps__seg_params) */
	bool verbose;
	uint64_t arena_size;    /* 0: the library's default */
	uint64_t mem_budget;    /* 0: the library's default */
	int on_failure;         /* 0 abort, 1 restart (as in struct ps__seg_params) */
	int max_restarts;       /* restarts allowed in all */
	const char *restore_arg; /* --restore FILE as given, or NULL */
	char *restore;          /* absolute path of --restore FILE, or NULL */
	struct host_opts host;  /* multi-host flags */
	bool tag_output;        /* --tag-output */
	const char *output_dir; /* --output-dir DIR, or NULL */
	double timeout_s;       /* --timeout; 0: none */
	/* --hugepages[=DIR]: the segment on hugetlbfs */
	bool hugepages;
	const char *huge_dir;   /* DIR, or NULL: the first hugetlbfs mount */
	char **prog;            /* argv of the program, NULL-terminated */
};

/* --tag-output: one stream (stdout or stderr) of one node. */
struct tagged {
	int fd;                 /* read end, -1 when closed */
	size_t len;             /* bytes of an unfinished line in buf */
	char buf[TAG_LINE_MAX];
};

struct node_proc {
	pid_t pid;              /* 0 once reaped */
	int exec_fd;            /* read end of the exec-report pipe, -1 when read */
	bool exec_failed;
	struct tagged *out[2];  /* --tag-output: its stdout, stderr; else NULL */
	int out_wfd[2];         /* their write ends, between pipe and fork */
	int log_fd;             /* --output-dir: its log, between open and fork */
};

struct job {
	struct opts o;
	struct ps__seg seg;
	pid_t self;
	pid_t guardian;         /* 0 when not running */
	/*
	 * Process groups of the nodes, shared with the guardian (anonymous
	 * shared mapping) so it can kill them if psrun dies.  W: psrun and the
	 * node itself (same value), psrun clears it on reaping; R: guardian.
	 * Relaxed: each entry is independent and read once psrun is gone.
	 */
	_Atomic int32_t *pgids;
	struct node_proc node[PS__MAX_NODES];
	int live;               /* nodes not yet reaped */
	int sfd;                /* signalfd of the blocked signals */
	sigset_t orig_mask;     /* restored in nodes before exec */
	int status;             /* psrun's exit status once failed is set */
	bool failed;
	int stop_sig;           /* signal sent to stop the nodes; 0 while running */
	uint64_t kill_at;       /* CLOCK_MONOTONIC deadline for SIGKILL; 0 = none */
	int interrupted;        /* first SIGINT/SIGTERM/SIGHUP received; 0 = none */
	bool drain_asked;       /* --drain: the first SIGTERM asked to leave */
	int restarts;           /* nodes restarted so far */
	bool restarting;        /* in start_node of a replacement: PSMEM_RESTARTED=1 */
	struct hosts *hosts;    /* multi-host part; NULL on one host */
	bool peer_failed;       /* another host failed: this one stops too */
	int nhosts, host_rank;  /* this host's place: RANK = host_rank * nodes + i */
	uint64_t deadline;      /* --timeout: CLOCK_MONOTONIC end; 0 = none */
	bool timed_out;
	bool out_broken[2];     /* psrun's stdout/stderr gave EPIPE: drop output */
	struct sigaction orig_pipe; /* SIGPIPE as psrun found it, for the nodes */
};

/* ------------------------------------------------------------ arguments */

static const char usage_line[] =
	"usage: psrun -n N [-t THREADS] [--numa auto|none] [-v] [--arena-size SIZE]\n"
	"             [--mem SIZE] [--on-failure abort|restart] [--max-restarts N]\n"
	"             [--tag-output | --output-dir DIR] [--timeout SEC]\n"
	"             [--restore FILE] [--hosts H --host-rank R]\n"
	"             [--coordinator ADDR:PORT] [--token-file FILE] [--bind ADDR[:PORT]]\n"
	"             [--rendezvous-timeout S] [--on-host-failure abort|continue]\n"
	"             [--backup-rate R] [--elastic | --join COORD:PORT] [--drain]\n"
	"             [--hugepages[=DIR]]\n"
	"             [--help] [--version] prog [args...]\n"
	"       psrun --make-token FILE\n";

static void print_help(void)
{
	printf("psrun - run a program as an N-node psmem job on this host\n\n%s\n", usage_line);
	printf("  -n, -np, --nodes N   node processes to start, 1..%d (required)\n"
	       "  -t, --threads T      worker threads per node, 1..%d (default: 1); psrun\n"
	       "                       warns when nodes x threads exceed the CPUs it may use\n"
	       "      --numa auto|none auto: pin node i to socket i mod S (S NUMA nodes with\n"
	       "                       CPUs and memory) and bind its arena there; none: no\n"
	       "                       pinning, no binding (default: auto)\n"
	       "  -v, --verbose        print the node -> NUMA node -> CPU mapping and the\n"
	       "                       node pids to stderr (default: off)\n"
	       "      --arena-size SIZE\n"
	       "                       virtual arena reserved per node; tmpfs is sparse, so\n"
	       "                       only touched pages cost memory (default: %lluG)\n"
	       "      --mem SIZE       memory the job may touch in /dev/shm (default: 90%%\n"
	       "                       of the free space of /dev/shm)\n"
	       "      --on-failure abort|restart\n"
	       "                       when a node dies or fails: abort stops every node\n"
	       "                       (within 2 s) and names the node and its signal;\n"
	       "                       restart starts a new process for that node id, which\n"
	       "                       takes over its place in the job (default: abort)\n"
	       "      --max-restarts N restarts allowed in all with --on-failure restart,\n"
	       "                       0..%d; then the job is stopped (default: 3)\n"
	       "      --restore FILE   start the job from a checkpoint: the program's\n"
	       "                       ps_restore(w, NULL) restores its tables from FILE\n"
	       "                       (checked before any node starts)\n"
	       "      --tag-output     prefix each line of a node's stdout and stderr with\n"
	       "                       \"[RANK] \"; whole lines, never mixed (default: off)\n"
	       "      --output-dir DIR write node RANK's stdout and stderr to DIR/node-RANK.log\n"
	       "                       instead (DIR is created; not with --tag-output)\n"
	       "      --timeout SEC    stop the job after SEC seconds (fractions allowed):\n"
	       "                       SIGTERM, SIGKILL 1 s later, exit status 124\n"
	       "                       (default: none)\n"
	       "      --hugepages[=DIR]\n"
	       "                       put the segment on hugetlbfs: DIR, or the first\n"
	       "                       hugetlbfs mount; the memory budget is capped at the\n"
	       "                       free huge pages; exit 2 if none (default: /dev/shm,\n"
	       "                       with transparent huge pages where its mount has\n"
	       "                       huge=advise)\n"
	       "  -h, --help           print this help and exit\n"
	       "      --version        print psrun's version and exit\n\n",
	       PS__MAX_NODES, MAX_THREADS, (unsigned long long)(PS__DEFAULT_ARENA >> 30), MAX_RESTARTS);
	printf("Several hosts (one psrun per host, joined by a TCP bridge):\n"
	       "      --hosts H --host-rank R\n"
	       "                       this psrun is host R of H; without them, taken from\n"
	       "                       Open MPI (OMPI_COMM_WORLD_RANK/SIZE), PMI (PMI_RANK/\n"
	       "                       SIZE) or Slurm (SLURM_PROCID/NTASKS) when set\n"
	       "      --coordinator ADDR:PORT\n"
	       "                       where host 0 listens for the others (host 0 binds\n"
	       "                       exactly this address); default: PSMEM_COORDINATOR,\n"
	       "                       or under Slurm the first host of the job's node list\n"
	       "                       on port PSMEM_COORD_PORT or 20000 + job id %% 10000\n"
	       "      --token-file FILE\n"
	       "                       the job's secret (mode 0600, owned by you); default:\n"
	       "                       the environment variable PSMEM_TOKEN\n"
	       "      --make-token FILE\n"
	       "                       write a new random 256-bit token to FILE and exit\n"
	       "      --bind ADDR[:PORT]\n"
	       "                       this host's bridge address (hosts 1..H-1); default:\n"
	       "                       the local address that reaches the coordinator, any\n"
	       "                       free port\n"
	       "      --rendezvous-timeout S\n"
	       "                       a host that has not joined after S seconds fails the\n"
	       "                       job, named (default: 30)\n"
	       "      --on-host-failure abort|continue\n"
	       "                       when another host dies (killed, or silent past the\n"
	       "                       heartbeat bound): abort stops the whole job; continue\n"
	       "                       drops it and the others go on (ps_hosts_alive tells\n"
	       "                       the apps): each host's keys are backed up on the\n"
	       "                       next host, promoted there when it is lost; the\n"
	       "                       updates of the last 1/rate s before a loss may be\n"
	       "                       lost. Every host should give the same (default: abort)\n"
	       "      --backup-rate R  backup rounds per second with continue (default: 20)\n"
	       "      --elastic        (every host at start) keep listening for hosts that\n"
	       "                       join later (authenticated with the job token); a\n"
	       "                       joiner is admitted at the next ps_sync_hosts\n"
	       "      --join COORD:PORT\n"
	       "                       join a running --elastic job through host 0's psrun\n"
	       "                       (same program, -n, -t and token; no --hosts): the\n"
	       "                       new host gets the next free rank and a share of the\n"
	       "                       keys; its nodes see ps_joined() = 1\n"
	       "      --drain          SIGTERM asks this host to leave at the next\n"
	       "                       ps_sync_hosts (its keys go to the others) instead of\n"
	       "                       stopping its nodes; a second SIGTERM stops them.\n"
	       "                       psstat --leave HOST asks the same of any host\n\n");
	printf("SIZE is a byte count with an optional K, M, G or T suffix (powers of 1024).\n\n"
	       "Each node runs prog with PSMEM_SEGMENT, PSMEM_NODE, PSMEM_NODES,\n"
	       "PSMEM_THREADS, PSMEM_NUMA and PSMEM_PSRUN_PID set (PSMEM_RESTORE with\n"
	       "--restore, PSMEM_RESTARTED=1 in a restarted node), and torchrun's RANK,\n"
	       "WORLD_SIZE (over every host: RANK = host rank x N + node), LOCAL_RANK and\n"
	       "LOCAL_WORLD_SIZE (this host), in a process group of its own.\n"
	       "Output: every node writes to psrun's stdout and stderr (see --tag-output,\n"
	       "--output-dir).  Stdin goes to RANK 0 only; the others read /dev/null, and\n"
	       "so does RANK 0 when stdin is a terminal.\n\n"
	       "Signals: SIGINT, SIGTERM, SIGHUP are forwarded to every node, which is\n"
	       "killed 2 s later if still running (psrun says so on stderr); SIGQUIT\n"
	       "prints who waits for what.\n"
	       "When a node fails (and is not restarted), the others get SIGTERM, then\n"
	       "SIGKILL 1 s later.\n\n"
	       "Exit status: 0 if every node exited 0; else the first failing node's\n"
	       "status (128+N when killed by signal N); 127 if prog cannot be executed;\n"
	       "124 if --timeout stopped it; 128+N if psrun got signal N first; 2 for\n"
	       "bad arguments; 1 if the job cannot be set up.\n");
}

__attribute__((format(printf, 1, 2), noreturn))
static void usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("psrun: bad arguments: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'psrun --help' for more information.\n", stderr);
	exit(2);
}

/* A decimal integer in [min, max], nothing else (no sign, no blanks). */
static bool parse_count(const char *s, long min, long max, int *out)
{
	if (!isdigit((unsigned char)*s))
		return false;
	errno = 0;
	char *end;
	long v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return false;
	*out = (int)v;
	return true;
}

/* A positive byte count with an optional K/M/G/T suffix (powers of 1024). */
static bool parse_size(const char *s, uint64_t *out)
{
	if (!isdigit((unsigned char)*s))
		return false;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0)
		return false;
	unsigned shift = 0;
	const char *units = "KMGT";
	const char *u = *end ? strchr(units, toupper((unsigned char)*end)) : NULL;
	if (u) {
		shift = 10 * (unsigned)(u - units + 1);
		end++;
	}
	if (*end != '\0' || v == 0 || v > (UINT64_MAX >> shift))
		return false;
	*out = (uint64_t)v << shift;
	return true;
}

/* Seconds, fractions allowed: more than 0, at most MAX_TIMEOUT_S. */
static bool parse_seconds(const char *s, double *out)
{
	if (!isdigit((unsigned char)*s) && *s != '.')
		return false;
	errno = 0;
	char *end;
	double v = strtod(s, &end);
	if (errno != 0 || *end != '\0' || !(v > 0) || v > MAX_TIMEOUT_S)
		return false;
	*out = v;
	return true;
}

/* --output-dir DIR: made (with its parents) and checked writable before
 * anything starts, so a typo costs no run. */
static void check_output_dir(const char *dir)
{
	char path[PATH_MAX];
	if (!*dir || strlen(dir) + 32 >= sizeof path)
		usage_error("--output-dir wants a directory name shorter than %zu bytes", sizeof path - 32);
	snprintf(path, sizeof path, "%s", dir);
	for (char *p = path + 1;; p++) {
		bool last = *p == '\0';
		if (*p != '/' && !last)
			continue;
		*p = '\0';
		if (mkdir(path, 0777) != 0 && errno != EEXIST)
			usage_error("--output-dir %s: cannot create %s: %s", dir, path, strerror(errno));
		if (last)
			break;
		*p = '/';
	}
	struct stat st;
	if (stat(dir, &st) != 0)
		usage_error("--output-dir %s: %s", dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		usage_error("--output-dir %s: not a directory", dir);
	if (access(dir, W_OK | X_OK) != 0)
		usage_error("--output-dir %s: not writable: %s", dir, strerror(errno));
}

/* --restore FILE: a readable checkpoint of this host (header, length,
 * host count and rank; the nodes check the rest), kept as an absolute path
 * for the nodes.  In a multi-host job host R's file is FILE.hostR (FILE
 * for host 0); the message names it.  Checked once the host's place in the
 * job is known. */
static void check_restore(struct opts *o, const char *arg, int hosts, int rank)
{
	char msg[PS__MSG_MAX], file[PATH_MAX + 16];
	if (ps__ckpt_check_file(arg, hosts, rank, file, sizeof file, msg, sizeof msg) != 0) {
		if (strcmp(file, arg) == 0)
			usage_error("--restore %s: %s", arg, msg);
		usage_error("--restore %s: %s: %s", arg, file, msg);
	}
	/* the directory made absolute (FILE itself may not exist on host R) */
	char dir[PATH_MAX], base[PATH_MAX];
	snprintf(dir, sizeof dir, "%s", arg);
	snprintf(base, sizeof base, "%s", arg);
	char *rd = realpath(dirname(dir), NULL);
	if (!rd)
		usage_error("--restore %s: %s", arg, strerror(errno));
	free(o->restore);
	size_t len = strlen(rd) + strlen(base) + 2;
	o->restore = malloc(len);
	if (!o->restore)
		usage_error("--restore %s: out of memory", arg);
	snprintf(o->restore, len, "%s/%s", strcmp(rd, "/") ? rd : "", basename(base));
	free(rd);
}

enum { OPT_HOSTS = 256, OPT_HOST_RANK, OPT_COORD, OPT_TOKEN_FILE, OPT_MAKE_TOKEN, OPT_BIND, OPT_RDV_TIMEOUT, OPT_HOST_FAILURE, OPT_BACKUP_RATE,
       OPT_ELASTIC, OPT_JOIN, OPT_DRAIN, OPT_TAG, OPT_OUTDIR, OPT_TIMEOUT, OPT_VERSION, OPT_HUGEPAGES };

static void parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "nodes", required_argument, NULL, 'n' },
		{ "threads", required_argument, NULL, 't' },
		{ "numa", required_argument, NULL, 'N' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "arena-size", required_argument, NULL, 'A' },
		{ "mem", required_argument, NULL, 'M' },
		{ "on-failure", required_argument, NULL, 'F' },
		{ "max-restarts", required_argument, NULL, 'R' },
		{ "restore", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ "hosts", required_argument, NULL, OPT_HOSTS },
		{ "host-rank", required_argument, NULL, OPT_HOST_RANK },
		{ "coordinator", required_argument, NULL, OPT_COORD },
		{ "token-file", required_argument, NULL, OPT_TOKEN_FILE },
		{ "make-token", required_argument, NULL, OPT_MAKE_TOKEN },
		{ "bind", required_argument, NULL, OPT_BIND },
		{ "rendezvous-timeout", required_argument, NULL, OPT_RDV_TIMEOUT },
		{ "on-host-failure", required_argument, NULL, OPT_HOST_FAILURE },
		{ "backup-rate", required_argument, NULL, OPT_BACKUP_RATE },
		{ "elastic", no_argument, NULL, OPT_ELASTIC },
		{ "join", required_argument, NULL, OPT_JOIN },
		{ "drain", no_argument, NULL, OPT_DRAIN },
		{ "tag-output", no_argument, NULL, OPT_TAG },
		{ "output-dir", required_argument, NULL, OPT_OUTDIR },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ "hugepages", optional_argument, NULL, OPT_HUGEPAGES },
		{ NULL, 0, NULL, 0 },
	};
	*o = (struct opts){ .threads = 1, .max_restarts = 3, .host = { .hosts = -1, .host_rank = -1, .rdv_timeout_s = 30 } };
	/* "+": stop at the first non-option, the rest is prog's argv.
	 * ":": report a missing argument as ':' so we word the message. */
	opterr = 0;
	int c;
	for (;;) {
		/* mpirun's -np: getopt would read "-n p".  Only where an option
		 * starts (getopt is between elements: optind names the next). */
		if (optind < argc && strcmp(argv[optind], "-np") == 0)
			argv[optind] = (char *)"-n";
		if ((c = getopt_long(argc, argv, "+:n:t:vh", longopts, NULL)) == -1)
			break;
		switch (c) {
		case 'n':
			if (!parse_count(optarg, 1, PS__MAX_NODES, &o->nodes))
				usage_error("-n wants a node count from 1 to %d, not '%s'",
					    PS__MAX_NODES, optarg);
			break;
		case 't':
			if (!parse_count(optarg, 1, MAX_THREADS, &o->threads))
				usage_error("-t wants a thread count from 1 to %d, not '%s'",
					    MAX_THREADS, optarg);
			break;
		case 'N':
			if (strcmp(optarg, "auto") == 0)
				o->numa_mode = 0;
			else if (strcmp(optarg, "none") == 0)
				o->numa_mode = 1;
			else
				usage_error("--numa wants auto or none, not '%s'", optarg);
			break;
		case 'v':
			o->verbose = true;
			break;
		case 'A':
			if (!parse_size(optarg, &o->arena_size))
				usage_error("--arena-size wants a size like 512M or 8G, not '%s'", optarg);
			break;
		case 'M':
			if (!parse_size(optarg, &o->mem_budget))
				usage_error("--mem wants a size like 512M or 8G, not '%s'", optarg);
			break;
		case 'F':
			if (strcmp(optarg, "abort") == 0)
				o->on_failure = 0;
			else if (strcmp(optarg, "restart") == 0)
				o->on_failure = 1;
			else
				usage_error("--on-failure wants abort or restart, not '%s'", optarg);
			break;
		case 'R':
			if (!parse_count(optarg, 0, MAX_RESTARTS, &o->max_restarts))
				usage_error("--max-restarts wants a count from 0 to %d, not '%s'", MAX_RESTARTS,
					    optarg);
			break;
		case 'S':
			o->restore_arg = optarg;
			break;
		case 'h':
			print_help();
			exit(0);
		case OPT_HOSTS:
			if (!parse_count(optarg, 1, 1024, &o->host.hosts))
				usage_error("--hosts wants a host count from 1 to 1024, not '%s'", optarg);
			break;
		case OPT_HOST_RANK:
			if (!parse_count(optarg, 0, 1023, &o->host.host_rank))
				usage_error("--host-rank wants a rank from 0 to 1023, not '%s'", optarg);
			break;
		case OPT_COORD:
			o->host.coordinator = optarg;
			break;
		case OPT_TOKEN_FILE:
			o->host.token_file = optarg;
			break;
		case OPT_MAKE_TOKEN:
			hosts_make_token(optarg);
		case OPT_BIND:
			o->host.bind = optarg;
			break;
		case OPT_HOST_FAILURE:
			if (strcmp(optarg, "abort") == 0)
				o->host.on_host_failure = 0;
			else if (strcmp(optarg, "continue") == 0)
				o->host.on_host_failure = 1;
			else
				usage_error("--on-host-failure wants abort or continue, not '%s'", optarg);
			break;
		case OPT_BACKUP_RATE: {
			char *end;
			double r = strtod(optarg, &end);
			if (end == optarg || *end || !(r > 0) || r > 10000)
				usage_error("--backup-rate wants rounds per second, above 0 and at most 10000, not '%s'",
					    optarg);
			o->host.backup_rate = r;
			break;
		}
		case OPT_ELASTIC:
			o->host.elastic = true;
			break;
		case OPT_JOIN:
			o->host.join = optarg;
			break;
		case OPT_DRAIN:
			o->host.drain = true;
			break;
		case OPT_RDV_TIMEOUT:
			if (!parse_count(optarg, 1, 3600, &o->host.rdv_timeout_s))
				usage_error("--rendezvous-timeout wants seconds from 1 to 3600, not '%s'", optarg);
			break;
		case OPT_TAG:
			o->tag_output = true;
			break;
		case OPT_OUTDIR:
			o->output_dir = optarg;
			break;
		case OPT_TIMEOUT:
			if (!parse_seconds(optarg, &o->timeout_s))
				usage_error("--timeout wants seconds, more than 0 and at most %.0f, not '%s'",
					    MAX_TIMEOUT_S, optarg);
			break;
		case OPT_VERSION:
			printf("psrun (psmem) %d.%d\n", PSMEM_VERSION_MAJOR, PSMEM_VERSION_MINOR);
			exit(0);
		case OPT_HUGEPAGES:
			o->hugepages = true;
			o->huge_dir = optarg;
			if (optarg && !*optarg)
				usage_error("--hugepages= wants a directory (a hugetlbfs mount)");
			break;
		case ':':
			usage_error("option '%s' needs an argument", argv[optind - 1]);
		default:
			/* optopt names an unknown short option; 0 for a long one */
			if (optopt)
				usage_error("unknown option '-%c'", optopt);
			usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (o->nodes == 0)
		usage_error("-n N is required");
	if (optind >= argc)
		usage_error("no program to run");
	if (o->host.join && o->restore_arg)
		usage_error("--restore and --join exclude each other (a joining host takes the running job's values)");
	if (o->tag_output && o->output_dir)
		usage_error("--tag-output and --output-dir exclude each other (each file of "
			    "--output-dir holds one node)");
	if (o->output_dir)
		check_output_dir(o->output_dir);
	o->prog = argv + optind;
}

/* ------------------------------------------------------------ helpers */

static int exit_code(int wstatus)
{
	if (WIFEXITED(wstatus))
		return WEXITSTATUS(wstatus);
	if (WIFSIGNALED(wstatus))
		return 128 + WTERMSIG(wstatus);
	return 1;
}

/*
 * Signals node i and the processes it started.  The node leads its own
 * group; if it left that group (setpgid/setsid of its own), the group kill
 * misses it, so it is also signalled directly - only then, so that a
 * program counting SIGINTs does not see two.
 */
static void signal_node(const struct job *j, int i, int sig)
{
	pid_t pid = j->node[i].pid;
	if (pid <= 0)
		return;
	kill(-pid, sig);
	if (getpgid(pid) != pid)
		kill(pid, sig);
}

static void signal_all(const struct job *j, int sig)
{
	for (int i = 0; i < j->o.nodes; i++)
		signal_node(j, i, sig);
}

/* Sends sig to every node and arms the SIGKILL deadline (an earlier
 * deadline already armed stays). */
static void begin_stop(struct job *j, int sig, uint64_t grace_ns)
{
	if (!j->stop_sig)
		j->stop_sig = sig;
	signal_all(j, sig);
	uint64_t at = ps__now_ns() + grace_ns;
	if (!j->kill_at || at < j->kill_at)
		j->kill_at = at;
}

static void set_failed(struct job *j, int status)
{
	if (!j->failed) {
		j->failed = true;
		j->status = status;
	}
}

/* ------------------------------------------------------------ guardian */

/* The segment's file: /dev/shm/psmem-<id>, or its path on hugetlbfs. */
static const char *seg_path(const struct ps__seg *seg)
{
	static char buf[PS__NAME_MAX + 16];
	const char *l = ps__seg_label(seg->name);
	snprintf(buf, sizeof buf, "%s%s", l[0] == '/' ? "" : "/dev/shm/", l);
	return buf;
}

/* Runs in the guardian once psrun is gone: nothing else will clean up. */
static void guardian_cleanup(const struct job *j)
{
	int rc = ps__seg_unlink(j->seg.name);
	/* SIGKILL via PDEATHSIG reached the nodes, not what they started. */
	for (int i = 0; i < j->o.nodes; i++) {
		pid_t pg = atomic_load_explicit(&j->pgids[i], memory_order_relaxed);
		if (pg > 0)
			kill(-pg, SIGKILL);
	}
	if (rc == 0)
		fprintf(stderr, "psrun: launcher (pid %d) died; removed segment %s\n", (int)j->self,
			seg_path(&j->seg));
}

static void guardian_main(struct job *j)
{
	sigset_t usr1;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	/* Blocked before the death signal is armed: SIGUSR1's default action
	 * would kill us without cleaning up.  INT/TERM/HUP/QUIT stay blocked
	 * (inherited), so a terminal's Ctrl-C does not take the guardian. */
	sigprocmask(SIG_BLOCK, &usr1, NULL);
	close(j->sfd);
	int null = open("/dev/null", O_RDWR);
	if (null >= 0) {
		/* Keep no pipe of psrun's caller open past psrun but stderr. */
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		close(null);
	}
	ps__seg_detach(&j->seg);
	if (prctl(PR_SET_PDEATHSIG, SIGUSR1) != 0) {
		/* Cannot watch psrun; psrun warns when it reaps us. */
		fprintf(stderr, "psrun: guardian: cannot set the parent-death signal: %s\n",
			strerror(errno));
		_exit(1);
	}
	/* psrun may have died before prctl(): then we are already orphaned.
	 * The kernel reparents before sending the death signal, so getppid()
	 * also tells a real death from a stray SIGUSR1. */
	while (getppid() == j->self) {
		int sig;
		sigwait(&usr1, &sig);
	}
	guardian_cleanup(j);
	_exit(0);
}

static int start_guardian(struct job *j)
{
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "psrun: cannot fork the guardian: %s\n", strerror(errno));
		return -1;
	}
	if (pid == 0)
		guardian_main(j);
	j->guardian = pid;
	return 0;
}

static void stop_guardian(struct job *j)
{
	if (j->guardian <= 0)
		return;
	kill(j->guardian, SIGKILL);
	while (waitpid(j->guardian, NULL, 0) < 0 && errno == EINTR)
		;
	j->guardian = 0;
}

/* ------------------------------------------------------------ nodes */

static void set_env(const struct job *j, int i)
{
	char v[32];
	int fail = 0;
	/* as ps__seg_find names it: "psmem-<id>", or the hugetlbfs path */
	fail |= setenv("PSMEM_SEGMENT", ps__seg_label(j->seg.name), 1);
	snprintf(v, sizeof v, "%d", i);
	fail |= setenv("PSMEM_NODE", v, 1);
	snprintf(v, sizeof v, "%d", j->o.nodes);
	fail |= setenv("PSMEM_NODES", v, 1);
	snprintf(v, sizeof v, "%d", j->o.threads);
	fail |= setenv("PSMEM_THREADS", v, 1);
	fail |= setenv("PSMEM_NUMA", j->o.numa_mode == 1 ? "none" : "auto", 1);
	snprintf(v, sizeof v, "%d", (int)j->self);
	fail |= setenv("PSMEM_PSRUN_PID", v, 1);
	if (j->o.restore)
		fail |= setenv("PSMEM_RESTORE", j->o.restore, 1);
	if (j->restarting)
		fail |= setenv("PSMEM_RESTARTED", "1", 1);
	/* torchrun's names: global over the hosts, LOCAL_* on this one */
	snprintf(v, sizeof v, "%d", j->host_rank * j->o.nodes + i);
	fail |= setenv("RANK", v, 1);
	snprintf(v, sizeof v, "%d", j->nhosts * j->o.nodes);
	fail |= setenv("WORLD_SIZE", v, 1);
	snprintf(v, sizeof v, "%d", i);
	fail |= setenv("LOCAL_RANK", v, 1);
	snprintf(v, sizeof v, "%d", j->o.nodes);
	fail |= setenv("LOCAL_WORLD_SIZE", v, 1);
	if (fail) {
		fprintf(stderr, "psrun: node %d: cannot set the environment: %s\n", i, strerror(errno));
		_exit(127);
	}
}

/* NUMA node of node i: the one its arena was bound to (i mod S), read from
 * the segment so that process and memory always agree; -1 for none. */
static int numa_of(const struct job *j, int i)
{
	if (j->o.numa_mode == 1 || numa_available() < 0)
		return -1;
	return ps__node_at(&j->seg, i)->numa_node;
}

/* Both settings are kept across execve, so they bind prog. */
static void pin_numa(const struct job *j, int i)
{
	int nn = numa_of(j, i);
	if (nn < 0)
		return;
	if (numa_run_on_node(nn) != 0)
		fprintf(stderr, "psrun: node %d: cannot run on NUMA node %d: %s\n", i, nn,
			strerror(errno));
	numa_set_preferred(nn);
}

/*
 * A node leads a background process group: reading a terminal would stop it
 * with SIGTTIN and hang the job, so a terminal on stdin becomes /dev/null.
 * Pipes and files are left alone.
 */
static void detach_tty_stdin(bool always)
{
	if (!always && !isatty(STDIN_FILENO))
		return;
	int null = open("/dev/null", O_RDONLY);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		if (null != STDIN_FILENO)
			close(null);
	}
}

static void node_main(struct job *j, int i, int report_fd)
{
	/* psrun may have died before prctl(): no death signal would come. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != j->self)
		_exit(127);
	setpgid(0, 0);
	atomic_store_explicit(&j->pgids[i], getpid(), memory_order_relaxed);
	sigprocmask(SIG_SETMASK, &j->orig_mask, NULL);
	if (j->o.tag_output)
		sigaction(SIGPIPE, &j->orig_pipe, NULL); /* psrun ignores it, prog need not */
	/* stdin to RANK 0 only (mpirun's rule): the others would race for it */
	detach_tty_stdin(j->host_rank * j->o.nodes + i != 0);
	struct node_proc *n = &j->node[i];
	if (n->out[0]) {
		dup2(n->out_wfd[0], STDOUT_FILENO);
		dup2(n->out_wfd[1], STDERR_FILENO);
	} else if (n->log_fd >= 0) {
		dup2(n->log_fd, STDOUT_FILENO);
		dup2(n->log_fd, STDERR_FILENO);
	}
	set_env(j, i);
	hosts_node_env(j->hosts, i);
	pin_numa(j, i);
	execvp(j->o.prog[0], j->o.prog);
	/* psrun prints the failure once for all nodes; only if it cannot be
	 * told does the node say it itself. */
	int err = errno;
	if (write(report_fd, &err, sizeof err) != (ssize_t)sizeof err)
		fprintf(stderr, "psrun: cannot execute '%s': %s\n", j->o.prog[0], strerror(err));
	_exit(127);
}

/* ------------------------------------------------------------ output */

static void write_all(struct job *j, int stream, const char *p, size_t n)
{
	if (j->out_broken[stream])
		return;
	while (n > 0) {
		ssize_t w = write(stream + 1, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			/* EPIPE (SIGPIPE is ignored) or worse: the reader is gone */
			j->out_broken[stream] = true;
			return;
		}
		p += w;
		n -= (size_t)w;
	}
}

/* One line of node rank `rank`, prefixed, in one write: writes of at most
 * PIPE_BUF bytes to a pipe are atomic, longer ones are at least not
 * interleaved with psrun's own. */
static void emit_line(struct job *j, int i, int stream, const char *line, size_t n)
{
	static char out[TAG_LINE_MAX + 32];
	int k = snprintf(out, 32, "[%d] ", j->host_rank * j->o.nodes + i);
	memcpy(out + k, line, n);
	size_t len = (size_t)k + n;
	if (n == 0 || line[n - 1] != '\n')
		out[len++] = '\n';
	write_all(j, stream, out, len);
}

/* Reads what node i wrote on stream; emits each complete line.  At EOF
 * (or final: draining after the node ended) the rest too, then closes. */
static void tag_read(struct job *j, int i, int stream, bool final)
{
	struct tagged *t = j->node[i].out[stream];
	if (!t || t->fd < 0)
		return;
	if (j->out_broken[stream]) {
		/* nobody reads psrun's output: the node's next write gets
		 * SIGPIPE, as it would writing there itself */
		close(t->fd);
		t->fd = -1;
		return;
	}
	for (int rounds = 0; final || rounds < 16; rounds++) {
		ssize_t r = read(t->fd, t->buf + t->len, sizeof t->buf - t->len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r > 0) {
			t->len += (size_t)r;
			size_t start = 0;
			for (size_t k = t->len - (size_t)r; k < t->len; k++) {
				if (t->buf[k] == '\n') {
					emit_line(j, i, stream, t->buf + start, k + 1 - start);
					start = k + 1;
				}
			}
			memmove(t->buf, t->buf + start, t->len - start);
			t->len -= start;
			if (t->len == sizeof t->buf) { /* a line over TAG_LINE_MAX: cut it */
				emit_line(j, i, stream, t->buf, t->len);
				t->len = 0;
			}
			continue;
		}
		if (r < 0 && errno == EAGAIN && !final)
			return;
		/* EOF, an error, or nothing more while draining */
		if (t->len)
			emit_line(j, i, stream, t->buf, t->len);
		t->len = 0;
		close(t->fd);
		t->fd = -1;
		return;
	}
}

/* --tag-output: a pipe per stream of node i (the previous incarnation's,
 * if any, drained and closed first); --output-dir: its log file opened.
 * The write ends / the log are for the child; psrun closes them after
 * fork (close_child_ends). */
static int open_outputs(struct job *j, int i)
{
	struct node_proc *n = &j->node[i];
	n->log_fd = -1;
	n->out_wfd[0] = n->out_wfd[1] = -1;
	if (j->o.output_dir) {
		char path[PATH_MAX];
		snprintf(path, sizeof path, "%s/node-%d.log", j->o.output_dir, j->host_rank * j->o.nodes + i);
		/* a restarted node appends to its predecessor's log */
		n->log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (j->restarting ? 0 : O_TRUNC), 0666);
		if (n->log_fd < 0) {
			fprintf(stderr, "psrun: node %d: cannot open %s: %s\n", i, path, strerror(errno));
			return -1;
		}
	}
	if (!j->o.tag_output)
		return 0;
	for (int s = 0; s < 2; s++) {
		if (!n->out[s]) {
			if (!(n->out[s] = calloc(1, sizeof *n->out[s]))) {
				fprintf(stderr, "psrun: node %d: out of memory\n", i);
				return -1;
			}
			n->out[s]->fd = -1;
		}
		tag_read(j, i, s, true); /* a predecessor's last lines */
		int p[2];
		if (pipe2(p, O_CLOEXEC) != 0) {
			fprintf(stderr, "psrun: cannot create an output pipe for node %d: %s\n", i, strerror(errno));
			return -1;
		}
		fcntl(p[0], F_SETFL, O_NONBLOCK); /* psrun's end only: the node writes blocking */
		n->out[s]->fd = p[0];
		n->out[s]->len = 0;
		n->out_wfd[s] = p[1];
	}
	return 0;
}

static void close_child_ends(struct node_proc *n)
{
	for (int s = 0; s < 2; s++) {
		if (n->out_wfd[s] >= 0)
			close(n->out_wfd[s]);
		n->out_wfd[s] = -1;
	}
	if (n->log_fd >= 0)
		close(n->log_fd);
	n->log_fd = -1;
}

static int start_node(struct job *j, int i)
{
	int p[2];
	if (open_outputs(j, i) != 0) {
		close_child_ends(&j->node[i]);
		return -1;
	}
	/* O_CLOEXEC: a successful exec closes the write end, psrun reads EOF */
	if (pipe2(p, O_CLOEXEC) != 0) {
		fprintf(stderr, "psrun: cannot create a pipe for node %d: %s\n", i, strerror(errno));
		close_child_ends(&j->node[i]);
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "psrun: cannot fork node %d: %s\n", i, strerror(errno));
		close(p[0]);
		close(p[1]);
		close_child_ends(&j->node[i]);
		return -1;
	}
	if (pid == 0) {
		close(p[0]);
		node_main(j, i, p[1]);
	}
	close(p[1]);
	close_child_ends(&j->node[i]);
	/* Also here, so the group exists before psrun may signal it; fails
	 * harmlessly once the child has exec'd (it did it itself). */
	setpgid(pid, pid);
	atomic_store_explicit(&j->pgids[i], pid, memory_order_relaxed);
	hosts_node_started(j->hosts, i);
	struct node_proc *n = &j->node[i];
	n->pid = pid;
	n->exec_fd = p[0];
	n->exec_failed = false;
	j->live++;
	if (j->o.verbose)
		fprintf(stderr, "psrun: node %d is pid %d\n", i, (int)pid);
	return 0;
}

/* Waits until every node has exec'd prog or failed to (the report pipe
 * gives EOF or an errno); reports the first failure once. */
static void check_exec(struct job *j)
{
	bool reported = false;
	for (int i = 0; i < j->o.nodes; i++) {
		struct node_proc *n = &j->node[i];
		if (n->exec_fd < 0)
			continue;
		int err;
		ssize_t r;
		while ((r = read(n->exec_fd, &err, sizeof err)) < 0 && errno == EINTR)
			;
		close(n->exec_fd);
		n->exec_fd = -1;
		if (r != (ssize_t)sizeof err)
			continue;
		n->exec_failed = true;
		if (!reported)
			fprintf(stderr, "psrun: cannot execute '%s': %s\n", j->o.prog[0], strerror(err));
		reported = true;
	}
}

static void start_nodes(struct job *j)
{
	for (int i = 0; i < j->o.nodes; i++) {
		if (start_node(j, i) != 0) {
			set_failed(j, 1);
			/* the job cannot run short-handed: stop what started */
			begin_stop(j, SIGKILL, 0);
			break;
		}
	}
	check_exec(j);
}

/* ------------------------------------------------------------ verbose */

static void print_cpus(FILE *f, int numa_node)
{
	struct bitmask *cpus = numa_allocate_cpumask();
	if (!cpus || numa_node_to_cpus(numa_node, cpus) != 0) {
		fprintf(f, "?");
		if (cpus)
			numa_free_cpumask(cpus);
		return;
	}
	const char *sep = "";
	unsigned n = cpus->size;
	for (unsigned c = 0; c < n; c++) {
		if (!numa_bitmask_isbitset(cpus, c))
			continue;
		unsigned e = c;
		while (e + 1 < n && numa_bitmask_isbitset(cpus, e + 1))
			e++;
		if (e == c)
			fprintf(f, "%s%u", sep, c);
		else
			fprintf(f, "%s%u-%u", sep, c, e);
		sep = ",";
		c = e;
	}
	if (!*sep)
		fprintf(f, "none");
	numa_free_cpumask(cpus);
}

static void print_mapping(const struct job *j)
{
	const struct ps__hdr *h = j->seg.hdr;
	char pages[64];
	fprintf(stderr, "psrun: job %s: %d nodes x %d threads, numa %s, arena %" PRIu64
		" MiB/node, memory budget %" PRIu64 " MiB, pages %s\n",
		ps__seg_label(j->seg.name), j->o.nodes, j->o.threads, j->o.numa_mode ? "none" : "auto",
		h->arena_size >> 20, h->mem_budget >> 20, ps__seg_pages(&j->seg, pages, sizeof pages));
	for (int i = 0; i < j->o.nodes; i++) {
		int nn = numa_of(j, i);
		if (nn < 0) {
			fprintf(stderr, "psrun: node %d -> no NUMA node (%s) -> any CPU\n", i,
				j->o.numa_mode ? "--numa none" : "NUMA unavailable");
			continue;
		}
		fprintf(stderr, "psrun: node %d -> NUMA node %d -> CPUs ", i, nn);
		print_cpus(stderr, nn);
		/* more nodes than sockets: nodes i and i + S share one */
		for (int k = 0; k < i; k++) {
			if (numa_of(j, k) == nn) {
				fprintf(stderr, " (shared with node %d)", k);
				break;
			}
		}
		fputc('\n', stderr);
	}
}

/* ------------------------------------------------------------ supervision */

/* A death by the signal psrun used to stop the job is psrun's doing. */
static bool stopped_by_us(const struct job *j, int st)
{
	return j->stop_sig && WIFSIGNALED(st) &&
	       (WTERMSIG(st) == j->stop_sig || WTERMSIG(st) == SIGKILL);
}

static void report_failure(struct job *j, int i, pid_t pid, int st)
{
	char why[256];
	if (j->node[i].exec_failed)
		snprintf(why, sizeof why, "cannot execute '%s'", j->o.prog[0]);
	else if (WIFSIGNALED(st))
		snprintf(why, sizeof why, "node %d (pid %d) killed by signal %d (%s)%s", i, (int)pid, WTERMSIG(st),
			 strsignal(WTERMSIG(st)), WCOREDUMP(st) ? ", core dumped" : "");
	else
		snprintf(why, sizeof why, "node %d (pid %d) exited with status %d", i, (int)pid, exit_code(st));
	if (!stopped_by_us(j, st))
		hosts_local_done(j->hosts, PS_EHOSTDOWN, why); /* the other hosts stop at once */
	if (j->node[i].exec_failed)
		return; /* check_exec said it */
	if (stopped_by_us(j, st))
		return;
	fprintf(stderr, "psrun: %s\n", why);
}

/* --on-failure restart: a new process for node i.  True if it started. */
static bool restart_node(struct job *j, int i)
{
	if (j->o.on_failure != 1 || j->stop_sig || j->node[i].exec_failed)
		return false;
	if (j->restarts >= j->o.max_restarts) {
		fprintf(stderr, "psrun: node %d: no restart left (--max-restarts %d); stopping the job\n", i,
			j->o.max_restarts);
		return false;
	}
	j->restarts++;
	fprintf(stderr, "psrun: restarting node %d (restart %d of at most %d)\n", i, j->restarts, j->o.max_restarts);
	j->restarting = true;
	int rc = start_node(j, i);
	j->restarting = false;
	if (rc != 0)
		return false;
	check_exec(j);
	return !j->node[i].exec_failed;
}

static void node_ended(struct job *j, int i, pid_t pid, int st)
{
	j->node[i].pid = 0;
	atomic_store_explicit(&j->pgids[i], 0, memory_order_relaxed);
	j->live--;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return; /* the library marked the node EXITED itself */
	/* Peers must stop waiting for it (barriers, grace periods), or wait
	 * for its replacement (restart mode). */
	ps__mark_dead(&j->seg, i);
	/* What it started dies with it; the group number stays reserved while
	 * members remain, so this cannot hit a stranger. */
	kill(-pid, SIGKILL);
	report_failure(j, i, pid, st);
	if (restart_node(j, i))
		return;
	/* After SIGINT & co. psrun's status tells the signal it got, not the
	 * way it stopped the nodes. */
	if (!(j->interrupted && stopped_by_us(j, st)))
		set_failed(j, exit_code(st));
	if (!j->stop_sig)
		begin_stop(j, SIGTERM, FAIL_GRACE_NS);
}

static void reap(struct job *j)
{
	for (;;) {
		int st;
		pid_t pid = waitpid(-1, &st, WNOHANG);
		if (pid <= 0)
			return;
		if (pid == j->guardian) {
			fprintf(stderr, "psrun: guardian (pid %d) ended early; the segment will "
				"not be removed if psrun is killed\n", (int)pid);
			j->guardian = 0;
			continue;
		}
		for (int i = 0; i < j->o.nodes; i++) {
			if (j->node[i].pid == pid) {
				node_ended(j, i, pid, st);
				break;
			}
		}
	}
}

static void on_signal(struct job *j, int sig)
{
	switch (sig) {
	case SIGTERM:
		if (j->o.host.drain && j->hosts && !j->drain_asked) {
			/* EL7: leave at the next ps_sync_hosts, nodes keep going */
			j->drain_asked = true;
			fprintf(stderr, "psrun: SIGTERM with --drain: this host leaves at the next ps_sync_hosts "
				"(SIGTERM again stops its nodes)\n");
			if (hosts_request_leave(j->hosts, -1) == 0)
				break;
			fprintf(stderr, "psrun: so SIGTERM stops this host instead\n");
		}
		/* fall through */
	case SIGINT:
	case SIGHUP:
		if (!j->interrupted) {
			j->interrupted = sig;
			/* say what happens: the nodes' own output may stop mid-way */
			fprintf(stderr, "psrun: interrupted (SIG%s), stopping %d node%s\n", sigabbrev_np(sig),
				j->live, j->live == 1 ? "" : "s");
		}
		begin_stop(j, sig, SIGNAL_GRACE_NS);
		if (j->hosts) {
			char why[64];
			snprintf(why, sizeof why, "interrupted by signal %d (%s)", sig, strsignal(sig));
			hosts_local_done(j->hosts, PS_EHOSTDOWN, why);
		}
		break;
	case SIGQUIT:
		ps__dump_seg(&j->seg, stderr);
		fflush(stderr);
		break;
	default: /* SIGCHLD: reap() follows every wake-up */
		break;
	}
}

static void read_signals(struct job *j)
{
	struct signalfd_siginfo si;
	while (read(j->sfd, &si, sizeof si) == (ssize_t)sizeof si) {
		if (si.ssi_signo == SIGUSR2) {
			/* psstat --leave HOST: sigqueue(psrun, SIGUSR2, HOST) from
			 * a process of this user (the kernel says who sent it) */
			if (si.ssi_code != SI_QUEUE || si.ssi_uid != getuid())
				continue;
			if (si.ssi_int < 0) { /* a rank, never "this host" (that is --drain) */
				fprintf(stderr, "psrun: leave request for host %d ignored: not a host rank\n", si.ssi_int);
				continue;
			}
			fprintf(stderr, "psrun: leave request for host %d (from pid %u)\n", si.ssi_int, si.ssi_pid);
			hosts_request_leave(j->hosts, si.ssi_int);
			continue;
		}
		on_signal(j, (int)si.ssi_signo);
	}
}

/* Runs the bridge once; a failed peer host stops this host too. */
static void step_hosts(struct job *j)
{
	const char *why = hosts_step(j->hosts);
	if (!why || j->peer_failed)
		return;
	j->peer_failed = true;
	set_failed(j, 1);
	if (j->live > 0 && !j->stop_sig)
		begin_stop(j, SIGTERM, FAIL_GRACE_NS);
	/* the others learn the first cause, not just that we stop */
	hosts_local_done(j->hosts, PS_EHOSTDOWN, why);
}

/* --timeout: the job has run its time. */
static void time_out(struct job *j)
{
	j->timed_out = true;
	j->deadline = 0;
	fprintf(stderr, "psrun: timeout: the job ran for %g s (--timeout), stopping %d node%s\n", j->o.timeout_s,
		j->live, j->live == 1 ? "" : "s");
	set_failed(j, EXIT_TIMEOUT);
	if (j->live > 0 && !j->stop_sig)
		begin_stop(j, SIGTERM, FAIL_GRACE_NS);
	hosts_local_done(j->hosts, PS_EHOSTDOWN, "timed out (--timeout)");
}

/* Poll set: the signalfd, the bridge, then the nodes' output pipes. */
struct pollset {
	struct pollfd pfd[2 + 2 * PS__MAX_NODES];
	int node[2 + 2 * PS__MAX_NODES], stream[2 + 2 * PS__MAX_NODES];
	int n;
};

static void pollset_build(const struct job *j, struct pollset *ps)
{
	ps->pfd[0] = (struct pollfd){ .fd = j->sfd, .events = POLLIN };
	ps->pfd[1] = (struct pollfd){ .fd = hosts_poll_fd(j->hosts), .events = POLLIN };
	ps->n = 2; /* fd -1 (one host): poll ignores the entry */
	for (int i = 0; i < j->o.nodes; i++) {
		for (int s = 0; s < 2; s++) {
			const struct tagged *t = j->node[i].out[s];
			if (!t || t->fd < 0)
				continue;
			ps->pfd[ps->n] = (struct pollfd){ .fd = t->fd, .events = POLLIN };
			ps->node[ps->n] = i;
			ps->stream[ps->n++] = s;
		}
	}
}

/* Every node has ended: tell the other hosts, then wait for theirs. */
static void nodes_all_ended(struct job *j)
{
	if (j->failed || j->interrupted)
		hosts_local_done(j->hosts, PS_EHOSTDOWN, j->interrupted ? "interrupted" : "a node failed");
	else
		hosts_local_done(j->hosts, 0, NULL);
}

static void supervise(struct job *j)
{
	reap(j); /* nodes that ended before the loop */
	while (j->live > 0 || !hosts_finished(j->hosts)) {
		if (j->live == 0)
			nodes_all_ended(j);
		int timeout = hosts_timeout_ms(j->hosts);
		uint64_t at[2] = { j->kill_at, j->deadline };
		for (int k = 0; k < 2; k++) {
			if (!at[k])
				continue;
			uint64_t now = ps__now_ns();
			int until = now >= at[k] ? 0 : (int)((at[k] - now + 999999) / 1000000);
			timeout = timeout < 0 || until < timeout ? until : timeout;
		}
		static struct pollset ps;
		pollset_build(j, &ps);
		int n = poll(ps.pfd, (nfds_t)ps.n, timeout);
		struct pollfd p = ps.pfd[0];
		if (n < 0 && errno != EINTR) {
			fprintf(stderr, "psrun: cannot wait for signals: %s\n", strerror(errno));
			set_failed(j, 1);
			signal_all(j, SIGKILL);
			j->kill_at = 0;
			/* nothing else can wake us: wait for the killed nodes */
			while (j->live > 0) {
				int st;
				pid_t pid = waitpid(-1, &st, 0);
				if (pid < 0 && errno != EINTR)
					return;
				for (int i = 0; pid > 0 && i < j->o.nodes; i++)
					if (j->node[i].pid == pid)
						node_ended(j, i, pid, st);
			}
			return;
		}
		if (j->kill_at && ps__now_ns() >= j->kill_at) {
			signal_all(j, SIGKILL);
			j->kill_at = 0;
		}
		for (int k = 2; n > 0 && k < ps.n; k++)
			if (ps.pfd[k].revents)
				tag_read(j, ps.node[k], ps.stream[k], false);
		if (j->deadline && ps__now_ns() >= j->deadline)
			time_out(j);
		if (n > 0 && (p.revents & POLLIN))
			read_signals(j);
		step_hosts(j);
		reap(j);
	}
}

/* ------------------------------------------------------------ setup */

/* CPUs psrun may run on (its affinity mask, which the nodes inherit). */
static int usable_cpus(void)
{
	int n = 0;
	cpu_set_t *set = CPU_ALLOC(8192);
	size_t size = CPU_ALLOC_SIZE(8192);
	if (set && sched_getaffinity(0, size, set) == 0)
		n = CPU_COUNT_S(size, set);
	CPU_FREE(set);
	if (n <= 0)
		n = (int)sysconf(_SC_NPROCESSORS_ONLN);
	return n;
}

/* More worker threads than CPUs: they time-share, and every barrier
 * waits for the one that is not running.  Allowed, but said. */
static void warn_oversubscribed(const struct opts *o)
{
	int cpus = usable_cpus();
	long want = (long)o->nodes * o->threads;
	if (cpus > 0 && want > cpus)
		fprintf(stderr, "psrun: warning: %d nodes x %d threads = %ld threads on %d CPUs; they will "
			"share CPUs and wait for each other at barriers (want -n x -t <= %d)\n",
			o->nodes, o->threads, want, cpus, cpus);
}

/* The signals psrun reads from its signalfd (SIGUSR2 once the bridge runs). */
static void job_sigset(sigset_t *set, bool usr2)
{
	sigemptyset(set);
	sigaddset(set, SIGCHLD);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGQUIT);
	sigaddset(set, SIGHUP);
	if (usr2)
		sigaddset(set, SIGUSR2); /* psstat --leave (elastic jobs) */
}

static int block_signals(struct job *j)
{
	/* SIGUSR2 (psstat --leave) is blocked from here on but joins the
	 * signalfd only once the bridge runs (read_usr2): the rendezvous takes
	 * the signalfd as its cancel fd, and a leave request must not cancel
	 * it; the signal stays pending until then. */
	sigset_t set, block;
	job_sigset(&set, false);
	job_sigset(&block, true);
	/* An inherited SIG_IGN for SIGCHLD would reap nodes behind our back.
	 * INT/TERM/QUIT/HUP keep their disposition: a caller that ignores them
	 * (e.g. a background job of a script) means it. */
	signal(SIGCHLD, SIG_DFL);
	if (sigprocmask(SIG_BLOCK, &block, &j->orig_mask) != 0)
		return -errno;
	j->sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	return j->sfd < 0 ? -errno : 0;
}

/* The bridge runs: SIGUSR2 joins the signalfd (a request sent during the
 * rendezvous, pending since, is read now). */
static int read_usr2(struct job *j)
{
	sigset_t set;
	job_sigset(&set, true);
	return signalfd(j->sfd, &set, SFD_NONBLOCK | SFD_CLOEXEC) < 0 ? -errno : 0;
}

static int map_pgids(struct job *j)
{
	void *p = mmap(NULL, sizeof(*j->pgids) * PS__MAX_NODES, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	j->pgids = p;
	return 0;
}

static void remove_segment(struct job *j)
{
	int rc = ps__seg_unlink(j->seg.name);
	if (rc != 0 && rc != -ENOENT)
		fprintf(stderr, "psrun: cannot remove segment %s: %s\n", seg_path(&j->seg), ps_strerror(rc));
	ps__seg_detach(&j->seg);
}

/* --hugepages: a hugetlbfs mount with free pages, or exit 2 naming what
 * is missing, before anything is started or created. */
static void check_hugepages(const struct opts *o, struct ps__huge *huge)
{
	char why[512];
	if (o->hugepages && ps__huge_probe(o->huge_dir, huge, why, sizeof why) != 0) {
		fprintf(stderr, "psrun: --hugepages%s%s: %s\n", o->huge_dir ? "=" : "", o->huge_dir ? o->huge_dir : "",
			why);
		exit(2);
	}
}

int main(int argc, char **argv)
{
	static struct job job;
	struct job *j = &job;
	parse_args(argc, argv, &j->o);
	static struct ps__huge huge;
	check_hugepages(&j->o, &huge);
	j->self = getpid();
	j->sfd = -1;
	j->hosts = hosts_prepare(&j->o.host, j->o.prog, j->o.nodes, j->o.threads, j->o.verbose);
	j->nhosts = 1;
	j->host_rank = 0;
	hosts_place(j->hosts, &j->nhosts, &j->host_rank);
	if (j->o.restore_arg)
		check_restore(&j->o, j->o.restore_arg, j->nhosts, j->host_rank);
	warn_oversubscribed(&j->o);
	if (j->o.tag_output) {
		/* a reader of psrun's output that goes away is not a reason to
		 * die (the guardian would have to clean up): output is dropped */
		struct sigaction ign = { .sa_handler = SIG_IGN };
		sigaction(SIGPIPE, &ign, &j->orig_pipe);
	}
	/* A replacement node would need a new link to the bridge and the other
	 * hosts' requests in flight to it replayed: not done. */
	if (j->hosts && j->o.on_failure == 1)
		usage_error("--on-failure restart is for one-host jobs; with several hosts use "
			    "--on-failure abort and resume from a checkpoint");

	int rc = block_signals(j);
	if (rc != 0) {
		fprintf(stderr, "psrun: cannot set up signal handling: %s\n", strerror(-rc));
		return 1;
	}
	rc = map_pgids(j);
	if (rc != 0) {
		fprintf(stderr, "psrun: cannot map the process-group table: %s\n", strerror(-rc));
		return 1;
	}
	ps__seg_sweep_stale(stderr);
	struct ps__seg_params params = {
		.num_nodes = (uint32_t)j->o.nodes,
		.threads_per_node = (uint32_t)j->o.threads,
		.numa_mode = (uint32_t)j->o.numa_mode,
		.arena_size = j->o.arena_size,
		.mem_budget = j->o.mem_budget,
		.on_failure = (uint32_t)j->o.on_failure,
		.hugetlb_dir = j->o.hugepages ? huge.dir : NULL,
	};
	rc = ps__seg_create(&params, &j->seg);
	if (rc != 0) {
		fprintf(stderr, "psrun: cannot create the job segment: %s\n", ps_strerror(rc));
		return 1;
	}
	hosts_mark_segment(j->hosts, &j->seg);
	fflush(NULL); /* nothing buffered may be written twice by the children */
	if (start_guardian(j) != 0) {
		remove_segment(j);
		hosts_free(j->hosts);
		return 1;
	}
	rc = hosts_rendezvous(j->hosts, j->sfd);
	hosts_place(j->hosts, &j->nhosts, &j->host_rank); /* a joiner's: known now */
	if (rc == 0)
		rc = hosts_start_bridge(j->hosts, j->o.nodes);
	if (rc == 0 && (rc = read_usr2(j)) != 0)
		fprintf(stderr, "psrun: cannot set up signal handling: %s\n", strerror(-rc));
	if (rc != 0) {
		read_signals(j); /* -EINTR: the signal that stopped it */
		remove_segment(j);
		stop_guardian(j);
		hosts_free(j->hosts);
		return j->interrupted ? 128 + j->interrupted : 1;
	}
	if (j->o.verbose)
		print_mapping(j);
	if (j->o.timeout_s > 0)
		j->deadline = ps__now_ns() + (uint64_t)(j->o.timeout_s * 1e9);
	start_nodes(j);
	supervise(j);
	/* what the nodes wrote before they ended (a process they left behind
	 * may keep a pipe open: only what is there now) */
	for (int i = 0; i < j->o.nodes; i++)
		for (int s = 0; s < 2; s++)
			tag_read(j, i, s, true);

	remove_segment(j);
	stop_guardian(j);
	hosts_free(j->hosts);
	if (j->failed)
		return j->status;
	return j->interrupted ? 128 + j->interrupted : 0;
}
