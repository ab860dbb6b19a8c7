/*
 * test_hugepages.c - psrun --hugepages (the segment on hugetlbfs) and
 * transparent huge pages on /dev/shm, checked where the kernel shows what it
 * did: /proc/PID/smaps of a node (KernelPageSize, *_Hugetlb,
 * ShmemPmdMapped, THPeligible) and the huge page counters in sysfs.
 *
 * Two places:
 *   - here (any host): psrun --hugepages without a usable pool exits 2
 *     before any node starts, with one line naming what is missing, and
 *     leaves no segment; the dump reports base pages where shmem THP is off.
 *     Nothing machine-wide is changed: the "mount but no free page" case
 *     mounts hugetlbfs in a private mount namespace of a child, and skips
 *     where that is not allowed or the host has free huge pages.
 *   - in the QEMU guest (tests/numa/run-guest.sh sets PSMEM_GUEST=1): the
 *     tests that need huge pages set vm.nr_hugepages, mount hugetlbfs,
 *     remount /dev/shm with huge=advise - the guest is thrown away after.
 *     Elsewhere they skip and say so.
 *
 * Roles.  Run by cmocka it is the driver.  `test_hugepages --node write DIR`
 * under psrun is one node of a job that writes a table, then leaves its
 * /proc/self/smaps in DIR/smaps-<node> (node 0 also its ps_dump in DIR/dump
 * and psstat --dump's output, found by psstat's own discovery, in
 * DIR/psstat).  `--node fill` creates tables until the budget refuses one:
 * exit 0 on PS_EFULL, a SIGBUS kills it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"
#include "psmem_int.h"

#define HUGE_KB 2048
#define SYS_HP_DIR "/sys/kernel/mm/hugepages/hugepages-2048kB"
#define SYS_HP SYS_HP_DIR "/"
#define GUEST_MNT "/dev/hugepages"
#define KEYS 4096   /* x 1088-byte slots: 4.25 MiB, at least a huge page per node */
#define VLEN 256

static char self[4096];

/* Skips the running test, saying why (cmocka's skip() says nothing). */
#define skip_msg(...)                                       \
	do {                                                \
		print_message("SKIP %s: ", __func__);       \
		print_message(__VA_ARGS__);                 \
		print_message("\n");                        \
		skip();                                     \
	} while (0)

/* ------------------------------------------------------------ helpers */

static long read_long(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -1;
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static bool write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return false;
	bool ok = fputs(text, f) >= 0;
	return fclose(f) == 0 && ok;
}

static bool copy_file(const char *from, const char *to)
{
	FILE *in = fopen(from, "r"), *out = fopen(to, "w");
	char buf[65536];
	size_t n;
	bool ok = in && out;
	while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0)
		ok = fwrite(buf, 1, n, out) == n;
	if (in)
		fclose(in);
	if (out && fclose(out) != 0)
		ok = false;
	return ok;
}

/* psmem-* entries in dir. */
static int count_psmem(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		n += strncmp(e->d_name, "psmem-", 6) == 0;
	closedir(d);
	return n;
}

static bool has_hugetlbfs_mount(void)
{
	const char *m = file_text("/proc/mounts");
	return strstr(m, " hugetlbfs ") != NULL;
}

static bool in_guest(void)
{
	const char *g = getenv("PSMEM_GUEST");
	return g && strcmp(g, "1") == 0;
}

static void make_tmpdir(char *dir, size_t len)
{
	snprintf(dir, len, "/tmp/psmem-hp-XXXXXX");
	assert_non_null(mkdtemp(dir));
}

static void rm_tree(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	char p[4200];
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

/* What the smaps of a process say about the segment's mappings (those
 * whose path has "/psmem-" in it). */
struct seg_smaps {
	int vmas;
	int not_huge_kps;     /* VMAs whose KernelPageSize is not 2048 kB */
	long hugetlb_kb;      /* Shared_Hugetlb + Private_Hugetlb */
	long pmd_kb;          /* ShmemPmdMapped + FilePmdMapped */
	int thp_eligible;     /* VMAs with THPeligible: 1 */
};

static void parse_smaps(const char *text, struct seg_smaps *s)
{
	memset(s, 0, sizeof *s);
	bool ours = false;
	for (const char *l = text; *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : l + strlen(l)) {
		unsigned long a, b;
		long v;
		char key[64];
		/* a mapping's first line "start-end perms ..."; no field name
		 * is hex digits followed by '-' */
		if (sscanf(l, "%lx-%lx ", &a, &b) == 2) {
			const char *eol = strchr(l, '\n');
			size_t n = eol ? (size_t)(eol - l) : strlen(l);
			ours = memmem(l, n, "/psmem-", 7) != NULL;
			s->vmas += ours;
			continue;
		}
		if (!ours || sscanf(l, "%63[^:]: %ld", key, &v) != 2)
			continue;
		if (strcmp(key, "KernelPageSize") == 0 && v != HUGE_KB)
			s->not_huge_kps++;
		else if (strcmp(key, "Shared_Hugetlb") == 0 || strcmp(key, "Private_Hugetlb") == 0)
			s->hugetlb_kb += v;
		else if (strcmp(key, "ShmemPmdMapped") == 0 || strcmp(key, "FilePmdMapped") == 0)
			s->pmd_kb += v;
		else if (strcmp(key, "THPeligible") == 0 && v == 1)
			s->thp_eligible++;
	}
}

/* Runs psrun ARGS... with a time limit; returns its result. */
static void psrun(struct run_result *r, const char *const *args)
{
	const char *argv[32] = {build_path("bin/psrun")};
	int n = 1;
	for (; args[n - 1] && n < 31; n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;
	run_prog((char *const *)argv, NULL, 60, -1, 0, r);
}

/* ------------------------------------------------------------ node roles */

static int write_main(const char *dir)
{
	int err;
	ps_world *w = ps_init(&err);
	if (!w) {
		fprintf(stderr, "write: ps_init: %s\n", ps_strerror(err));
		return 2;
	}
	int me = ps_node_id(w), N = ps_num_nodes(w);
	ps_table_opts o;
	ps_table_opts_init(&o, KEYS, VLEN);
	o.init = PS_INIT_UNIFORM;
	o.init_a = 1;
	o.seed = 3;
	ps_table *t = ps_table_create(w, &o, &err);
	if (!t) {
		fprintf(stderr, "write: table: %s\n", ps_strerror(err));
		return 2;
	}
	/* every node writes its share of the keys */
	static float v[64 * VLEN];
	ps_key keys[64];
	for (uint64_t k0 = (uint64_t)me * KEYS / N; k0 < (uint64_t)(me + 1) * KEYS / N; k0 += 64) {
		size_t n = 0;
		for (; n < 64 && k0 + n < (uint64_t)(me + 1) * KEYS / N; n++) {
			keys[n] = k0 + n;
			for (int j = 0; j < VLEN; j++)
				v[n * VLEN + j] = (float)(k0 + n) + (float)j / VLEN;
		}
		if ((err = ps_assign_sync(t, keys, n, v)) != 0) {
			fprintf(stderr, "write: assign: %s\n", ps_strerror(err));
			return 2;
		}
	}
	ps_barrier(w); /* the whole table is written */
	char p[4200];
	snprintf(p, sizeof p, "%s/smaps-%d", dir, me);
	int rc = copy_file("/proc/self/smaps", p) ? 0 : 2;
	if (me == 0) {
		snprintf(p, sizeof p, "%s/dump", dir);
		FILE *f = fopen(p, "w");
		if (f) {
			ps_dump(w, f);
			fclose(f);
		}
		/* psstat finds the job by itself (newest job of this uid) */
		char cmd[8400];
		snprintf(cmd, sizeof cmd, "%s --dump > %s/psstat 2>&1", build_path("bin/psstat"), dir);
		if (system(cmd) != 0)
			rc = 2;
		/* and lists it among the running jobs */
		snprintf(cmd, sizeof cmd, "%s --list > %s/list 2>&1", build_path("bin/psstat"), dir);
		if (system(cmd) != 0)
			rc = 2;
	}
	ps_barrier(w); /* the job lives until node 0 has looked at it */
	ps_finalize(w);
	return rc;
}

static int fill_main(void)
{
	int err;
	ps_world *w = ps_init(&err);
	if (!w) {
		fprintf(stderr, "fill: ps_init: %s\n", ps_strerror(err));
		return 2;
	}
	for (int i = 0; i < PS__MAX_TABLES; i++) {
		ps_table_opts o;
		ps_table_opts_init(&o, 1024, VLEN);
		o.init = PS_INIT_UNIFORM; /* writes every slot it gets */
		o.init_a = 1;
		if (!ps_table_create(w, &o, &err)) {
			printf("fill: table %d: %s\n", i, ps_strerror(err));
			ps_finalize(w);
			return err == PS_EFULL ? 0 : 1;
		}
	}
	printf("fill: %d tables, never full\n", PS__MAX_TABLES);
	ps_finalize(w);
	return 1;
}

/* ------------------------------------------------------------ on any host */

/* psrun --hugepages ARG... must exit 2 with exactly `want` on stderr, start
 * no node (prog would create a marker file) and leave no segment. */
static void expect_refused(const char *opt, const char *want)
{
	char dir[64], mark[128];
	make_tmpdir(dir, sizeof dir);
	snprintf(mark, sizeof mark, "%s/started", dir);
	char script[256];
	snprintf(script, sizeof script, "touch %s", mark);
	struct seg_snapshot before;
	seg_snapshot(&before);
	struct run_result r;
	const char *args[] = {"-n", "2", opt, "sh", "-c", script, NULL};
	psrun(&r, args);
	bool started = access(mark, F_OK) == 0;
	rm_tree(dir);
	assert_int_equal(r.status, 2);
	assert_string_equal(r.err, want);
	assert_false(started);
	assert_int_equal(seg_leaked_since(&before), 0);
}

static void test_hugepages_without_a_hugetlbfs_mount_exits_2_naming_the_fix(void **state)
{
	(void)state;
	if (has_hugetlbfs_mount()) {
		skip_msg("this host has a hugetlbfs mount (/proc/mounts)");
		return;
	}
	expect_refused("--hugepages", "psrun: --hugepages: no hugetlbfs mount in /proc/mounts: mount one "
				      "(mount -t hugetlbfs none /dev/hugepages) or name one with --hugepages=DIR "
				      "(see README)\n");
}

static void test_hugepages_on_a_directory_that_is_not_hugetlbfs_exits_2(void **state)
{
	(void)state;
	char dir[64], opt[128], want[512];
	make_tmpdir(dir, sizeof dir);
	snprintf(opt, sizeof opt, "--hugepages=%s", dir);
	snprintf(want, sizeof want, "psrun: %s: not a hugetlbfs mount (mount -t hugetlbfs none %s)\n", opt, dir);
	expect_refused(opt, want);
	assert_int_equal(count_psmem(dir), 0);
	rmdir(dir);
	snprintf(want, sizeof want, "psrun: %s: No such file or directory\n", opt);
	expect_refused(opt, want); /* gone now */
}

/* In a child with a private mount namespace: hugetlbfs mounted on a fresh
 * directory, psrun --hugepages=DIR run there; the child reports psrun's
 * status, its stderr and the psmem files left in DIR through `out`. */
static int refused_in_private_mount(const char *want, char *why, size_t why_len)
{
	char dir[64], out[128];
	make_tmpdir(dir, sizeof dir);
	snprintf(out, sizeof out, "%s.out", dir);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
			_exit(77);
		if (mount("none", dir, "hugetlbfs", 0, NULL) != 0)
			_exit(78);
		char opt[128];
		snprintf(opt, sizeof opt, "--hugepages=%s", dir);
		struct run_result r;
		const char *args[] = {"-n", "1", opt, "true", NULL};
		psrun(&r, args);
		FILE *f = fopen(out, "w");
		if (!f)
			_exit(3);
		fprintf(f, "%d\n%d\n%s", r.status, count_psmem(dir), r.err);
		fclose(f);
		umount(dir);
		_exit(0);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	rmdir(dir);
	int code = WIFEXITED(st) ? WEXITSTATUS(st) : 1;
	if (code == 77 || code == 78) {
		snprintf(why, why_len, "cannot %s here (%s)",
			 code == 77 ? "make a private mount namespace" : "mount hugetlbfs", "not root?");
		unlink(out);
		return -1;
	}
	assert_int_equal(code, 0);
	const char *text = file_text(out);
	unlink(out);
	int status = -1, left = -1, n = 0;
	assert_int_equal(sscanf(text, "%d\n%d\n%n", &status, &left, &n), 2);
	assert_int_equal(status, 2);
	assert_int_equal(left, 0);
	char expect[512];
	snprintf(expect, sizeof expect, "psrun: --hugepages=%s: %s\n", dir, want);
	assert_string_equal(text + n, expect);
	return 0;
}

static void test_hugepages_with_no_free_huge_page_exits_2_naming_the_sysctl(void **state)
{
	(void)state;
	long free_p = read_long(SYS_HP "free_hugepages"), resv = read_long(SYS_HP "resv_hugepages");
	if (free_p < 0) {
		skip_msg("no 2048 kB huge pages in this kernel (" SYS_HP ")");
		return;
	}
	if (free_p > resv) {
		skip_msg("this host has free huge pages (" SYS_HP "free_hugepages)");
		return;
	}
	char want[512], why[128];
	snprintf(want, sizeof want,
		 "no free huge pages of 2048 kB (free_hugepages is %ld, resv_hugepages %ld in " SYS_HP_DIR
		 "): set vm.nr_hugepages (see README)", free_p, resv);
	if (refused_in_private_mount(want, why, sizeof why) != 0)
		skip_msg("%s", why);
}

static void test_dump_reports_base_pages_where_shmem_thp_is_off(void **state)
{
	(void)state;
	const char *c = file_text("/sys/kernel/mm/transparent_hugepage/shmem_enabled");
	bool off = !*c || strstr(c, "[deny]") ||
		   (strstr(c, "[never]") && !strstr(file_text("/proc/mounts"), "huge=")); /* no tmpfs asks */
	if (!off) {
		skip_msg("shmem THP may be on here (shmem_enabled or a tmpfs huge= option)");
		return;
	}
	unsetenv("PSMEM_SEGMENT");
	int err;
	ps_world *w = ps_init(&err); /* a private one-node job */
	assert_non_null(w);
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	ps_dump(w, f);
	fclose(f);
	ps_finalize(w);
	char want[64];
	snprintf(want, sizeof want, "\n  pages: %ld kB\n", sysconf(_SC_PAGESIZE) / 1024);
	bool found = strstr(text, want) != NULL;
	if (!found)
		fprintf(stderr, "dump:\n%s", text);
	free(text);
	assert_true(found);
}

/* ------------------------------------------------------------ in the guest */

#define guest_only() guest_only_(__func__)
static bool guest_only_(const char *test)
{
	if (in_guest())
		return true;
	print_message("SKIP %s: ", test);
	print_message("changes vm.nr_hugepages and mounts: runs in the QEMU guest (make test-numa)\n");
	skip();
	return false;
}

static void set_nr_hugepages(long n)
{
	char v[32];
	snprintf(v, sizeof v, "%ld\n", n);
	assert_true(write_text("/proc/sys/vm/nr_hugepages", v));
	assert_int_equal(read_long(SYS_HP "nr_hugepages"), n);
}

static void mount_hugetlbfs(void)
{
	mkdir(GUEST_MNT, 0755);
	if (!has_hugetlbfs_mount())
		assert_int_equal(mount("none", GUEST_MNT, "hugetlbfs", 0, "pagesize=2M"), 0);
}

/* psrun -n 2 [--hugepages] test_hugepages --node write DIR, DIR made here. */
static void write_job(bool huge, char dir[64], struct run_result *r)
{
	make_tmpdir(dir, 64);
	const char *a[8];
	int k = 0;
	a[k++] = "-n";
	a[k++] = "2";
	if (huge)
		a[k++] = "--hugepages";
	a[k++] = self;
	a[k++] = "--node";
	a[k++] = "write";
	a[k++] = dir;
	a[k] = NULL;
	psrun(r, a);
}

static void expect_ok(const struct run_result *r)
{
	if (r->status != 0)
		fprintf(stderr, "psrun: status %d\n%s%s", r->status, r->out, r->err);
	assert_int_equal(r->status, 0);
}

static void node_smaps(const char *dir, int node, struct seg_smaps *s)
{
	char p[128];
	snprintf(p, sizeof p, "%s/smaps-%d", dir, node);
	parse_smaps(file_text(p), s);
}

static void test_guest_hugepages_job_maps_its_segment_with_2048_kB_pages(void **state)
{
	(void)state;
	if (!guest_only())
		return;
	set_nr_hugepages(64);
	mount_hugetlbfs();
	char dir[64], p[128];
	struct run_result r;
	write_job(true, dir, &r);
	expect_ok(&r);
	for (int node = 0; node < 2; node++) {
		struct seg_smaps s;
		node_smaps(dir, node, &s);
		print_message("node %d: %d segment mappings, Hugetlb %ld kB\n", node, s.vmas, s.hugetlb_kb);
		assert_true(s.vmas > 0);
		assert_int_equal(s.not_huge_kps, 0);
		assert_true(s.hugetlb_kb >= HUGE_KB);
	}
	snprintf(p, sizeof p, "%s/dump", dir);
	assert_non_null(strstr(file_text(p), "\n  pages: hugetlbfs 2048 kB\n"));
	snprintf(p, sizeof p, "%s/psstat", dir);
	assert_non_null(strstr(file_text(p), "\n  pages: hugetlbfs 2048 kB\n"));
	snprintf(p, sizeof p, "%s/list", dir);
	assert_non_null(strstr(file_text(p), "\n" GUEST_MNT "/psmem-"));
	rm_tree(dir);
	/* psrun removed the file: every page is back */
	assert_int_equal(count_psmem(GUEST_MNT), 0);
	assert_int_equal(read_long(SYS_HP "free_hugepages"), 64);
}

static void test_guest_hugepages_budget_is_the_free_pages_full_not_sigbus(void **state)
{
	(void)state;
	if (!guest_only())
		return;
	set_nr_hugepages(8); /* 16 MiB: a handful of tables */
	mount_hugetlbfs();
	struct run_result r;
	const char *args[] = {"-n", "1", "--hugepages=" GUEST_MNT, "--mem", "1G", self, "--node", "fill", NULL};
	psrun(&r, args);
	print_message("%s", r.out);
	expect_ok(&r); /* a SIGBUS would be 135 */
	assert_non_null(strstr(r.out, "fill: table "));
	assert_int_equal(count_psmem(GUEST_MNT), 0);
	assert_int_equal(read_long(SYS_HP "free_hugepages"), 8);
	set_nr_hugepages(64);
}

static void test_guest_hugepages_file_removed_when_psrun_is_killed(void **state)
{
	(void)state;
	if (!guest_only())
		return;
	set_nr_hugepages(64);
	mount_hugetlbfs();
	char dir[64], out[128];
	make_tmpdir(dir, sizeof dir);
	snprintf(out, sizeof out, "%s/psrun", dir);
	struct bg_proc b;
	const char *argv[] = {build_path("bin/psrun"), "-v", "-n", "1", "--hugepages", "sleep", "30", NULL};
	bg_start(&b, (char *const *)argv, out);
	/* the node starts after the guardian (psrun -v names it): a psrun killed
	 * before has no guardian, and the next psrun sweeps its file */
	double end = mono_now() + 20;
	while (!strstr(file_text(b.err), "node 0 is pid") && mono_now() < end)
		usleep(10000); /* polls, with a deadline */
	assert_int_equal(count_psmem(GUEST_MNT), 1);
	kill(b.pid, SIGKILL);
	bg_wait(&b, 10);
	end = mono_now() + 5;
	while ((count_psmem(GUEST_MNT) || read_long(SYS_HP "free_hugepages") != 64) && mono_now() < end)
		usleep(10000);
	print_message("%s", file_text(b.err));
	rm_tree(dir);
	assert_int_equal(count_psmem(GUEST_MNT), 0); /* the guardian removed it */
	assert_int_equal(read_long(SYS_HP "free_hugepages"), 64);
}

static void test_guest_thp_advise_job_maps_arenas_with_huge_pages(void **state)
{
	(void)state;
	if (!guest_only())
		return;
	if (access("/sys/kernel/mm/transparent_hugepage/shmem_enabled", F_OK) != 0) {
		skip_msg("the guest kernel offers no shmem THP (no /sys/kernel/mm/transparent_hugepage/shmem_enabled)");
		return;
	}
	if (mount("shm", "/dev/shm", "tmpfs", MS_REMOUNT, "huge=advise") != 0) {
		skip_msg("cannot remount /dev/shm with huge=advise: %s", strerror(errno));
		return;
	}
	char dir[64], p[128];
	struct run_result r;
	write_job(false, dir, &r);
	assert_int_equal(mount("shm", "/dev/shm", "tmpfs", MS_REMOUNT, "huge=never"), 0);
	expect_ok(&r);
	for (int node = 0; node < 2; node++) {
		struct seg_smaps s;
		node_smaps(dir, node, &s);
		print_message("node %d: %d segment mappings, %d THP-eligible, PMD-mapped %ld kB\n", node, s.vmas,
			      s.thp_eligible, s.pmd_kb);
		assert_true(s.thp_eligible > 0); /* the node's own mapping asked (MADV_HUGEPAGE) */
		assert_true(s.pmd_kb >= HUGE_KB);
	}
	snprintf(p, sizeof p, "%s/dump", dir);
	assert_non_null(strstr(file_text(p), "\n  pages: thp advise (MADV_HUGEPAGE)\n"));
	rm_tree(dir);
}

int main(int argc, char **argv)
{
	if (argc >= 4 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "write") == 0)
		return write_main(argv[3]);
	if (argc >= 3 && strcmp(argv[1], "--node") == 0 && strcmp(argv[2], "fill") == 0)
		return fill_main();
	if (!self_exe(self, sizeof self))
		return 1;
	const char *filter = getenv("PSMEM_TEST_FILTER");
	if (filter && *filter)
		cmocka_set_test_filter(filter);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hugepages_without_a_hugetlbfs_mount_exits_2_naming_the_fix),
		cmocka_unit_test(test_hugepages_on_a_directory_that_is_not_hugetlbfs_exits_2),
		cmocka_unit_test(test_hugepages_with_no_free_huge_page_exits_2_naming_the_sysctl),
		cmocka_unit_test(test_dump_reports_base_pages_where_shmem_thp_is_off),
		cmocka_unit_test(test_guest_hugepages_job_maps_its_segment_with_2048_kB_pages),
		cmocka_unit_test(test_guest_hugepages_budget_is_the_free_pages_full_not_sigbus),
		cmocka_unit_test(test_guest_hugepages_file_removed_when_psrun_is_killed),
		cmocka_unit_test(test_guest_thp_advise_job_maps_arenas_with_huge_pages),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
