/*
 * test_bridge_step.c - one bridge (lib/launch/bridge.c) in this process,
 * its peers and its node's link socket pairs held by the test, so that an
 * interleaving can be forced: what the bridge writes to each peer is read
 * back frame by frame.
 *
 * The defect these tests pin down: a write to a dead peer failed inside the
 * loop that sends this host's barrier arrival to every peer; the failure
 * was handled at once (the peer dropped under --on-host-failure continue,
 * the barrier progressed again, inside the loop), which sent the arrival a
 * second time to the peers after the dead one, and the survivor closed the
 * connection: "barrier out of sequence" (or "sync out of sequence"), and
 * the two survivors each lost quorum (w2v's lost-host test, about 1 in 25
 * runs on a loaded machine).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "bridge.h"

enum { HOSTS = 3, RANK = 2 };

struct rig {
	int peer[HOSTS][2]; /* [p][0]: the bridge's end, [p][1]: the test's */
	int link[2];        /* [0]: the bridge's end, [1]: the node's */
	struct ps__bridge *b;
	FILE *log;
	char logbuf[4096];
};

static void rig_start(struct rig *r)
{
	memset(r, 0, sizeof *r);
	int pfd[HOSTS], lfd[1];
	struct ps__peer_addr addr[HOSTS];
	memset(addr, 0, sizeof addr);
	for (int p = 0; p < HOSTS; p++) {
		r->peer[p][0] = r->peer[p][1] = -1;
		if (p == RANK) {
			pfd[p] = -1;
			continue;
		}
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, r->peer[p]), 0);
		pfd[p] = r->peer[p][0];
	}
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, r->link), 0);
	lfd[0] = r->link[0];
	r->log = tmpfile(); /* the bridge writes its lines to fileno(log) */
	assert_non_null(r->log);
	struct ps__bridge_conf conf = {.rank = RANK, .hosts = HOSTS, .nodes = 1, .peer_fd = pfd, .addr = addr,
				       .link_fd = lfd, .log = r->log, .drop_failed = true};
	int err = 0;
	r->b = ps__bridge_new(&conf, &err);
	assert_non_null(r->b);
}

static void rig_stop(struct rig *r)
{
	ps__bridge_free(r->b); /* closes its ends */
	for (int p = 0; p < HOSTS; p++)
		if (r->peer[p][1] >= 0)
			close(r->peer[p][1]);
	close(r->link[1]);
	fclose(r->log);
}

static void put(int fd, const uint8_t *f, size_t n)
{
	assert_int_equal(write(fd, f, n), (ssize_t)n);
}

/* This host's node arrives at generation 1: a BARRIER, or a SYNC
 * (ps_sync_hosts) with sync set. */
static void node_arrives(struct rig *r, bool sync)
{
	uint8_t f[PS__FRAME_HDR + PS__SYNC_MAX + PS__BARRIER_SIZE];
	uint32_t len;
	if (sync) {
		struct ps__sync_msg m = {.gen = 1, .epoch = 7};
		len = ps__sync_enc(f + PS__FRAME_HDR, &m);
		ps__frame_seal(f, PS__F_SYNC, RANK, 0, len);
	} else {
		struct ps__barrier_msg m = {.gen = 1, .tag = 7};
		ps__barrier_enc(f + PS__FRAME_HDR, &m);
		len = PS__BARRIER_SIZE;
		ps__frame_seal(f, PS__F_BARRIER, RANK, 0, len);
	}
	put(r->link[1], f, PS__FRAME_HDR + len);
}

/* The frames of type `type` for generation 1 that the bridge wrote to
 * the test's end fd (read until nothing more comes). */
static int arrivals_read(int fd, unsigned type)
{
	static uint8_t in[1 << 16];
	size_t have = 0;
	for (int idle = 0; idle < 20;) {
		ssize_t n = read(fd, in + have, sizeof in - have);
		if (n > 0) {
			have += (size_t)n;
			idle = 0;
		} else {
			idle++;
			usleep(1000); /* nothing more yet */
		}
	}
	int count = 0;
	size_t off = 0;
	while (off < have) {
		struct ps__frame f;
		long sz = ps__frame_parse(in + off, have - off, 1u << 20, PS__CRC_CHECK, true, &f);
		assert_true(sz > 0);
		if (f.type == type) {
			uint64_t gen;
			if (type == PS__F_SYNC) {
				struct ps__sync_msg m;
				assert_int_equal(ps__sync_dec(f.body, f.len, &m), 0);
				gen = m.gen;
			} else {
				struct ps__barrier_msg m;
				assert_int_equal(ps__barrier_dec(f.body, f.len, &m), 0);
				gen = m.gen;
			}
			count += gen == 1;
		}
		off += (size_t)sz;
	}
	return count;
}

/*
 * The node's arrival and host 0's death are ready in that order
 * (epoll's ready list is first come, first served): the step reads the
 * arrival, sends it to host 0 first (the write fails: the test closed its
 * end), then to host 1.  Host 1 must get the arrival exactly once, and
 * host 0 must be dropped.
 */
static void dead_peer_during_arrival(bool sync)
{
	struct rig r;
	rig_start(&r);
	node_arrives(&r, sync);
	close(r.peer[0][1]); /* host 0 dies: the bridge's next write to it fails */
	r.peer[0][1] = -1;
	for (int i = 0; i < 5; i++) {
		assert_int_equal(ps__bridge_step(r.b), 0);
		usleep(1000);
	}
	assert_int_equal(arrivals_read(r.peer[1][1], sync ? PS__F_SYNC : PS__F_BARRIER), 1);
	rewind(r.log);
	r.logbuf[fread(r.logbuf, 1, sizeof r.logbuf - 1, r.log)] = 0;
	assert_non_null(strstr(r.logbuf, "dropped, the job goes on with 2 of 3 hosts"));
	assert_null(strstr(r.logbuf, "quorum"));
	rig_stop(&r);
}

static void test_barrier_arrival_goes_once_to_each_survivor_when_a_peer_dies_on_the_send(void **state)
{
	(void)state;
	dead_peer_during_arrival(false);
}

static void test_sync_arrival_goes_once_to_each_survivor_when_a_peer_dies_on_the_send(void **state)
{
	(void)state;
	dead_peer_during_arrival(true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_barrier_arrival_goes_once_to_each_survivor_when_a_peer_dies_on_the_send),
		cmocka_unit_test(test_sync_arrival_goes_once_to_each_survivor_when_a_peer_dies_on_the_send),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
