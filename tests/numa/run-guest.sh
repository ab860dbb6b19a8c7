#!/usr/bin/env bash
# tests/numa/run-guest.sh [--check] SPEC... - runs tests/test_numa (the
# placement tests and the storm) inside throw-away QEMU guests, one per
# SPEC: S emulated NUMA nodes with 2 CPUs each ("sockets"), or S+M: S
# sockets plus M memory-only nodes (no CPUs, like CXL memory; Linux numbers
# them after the sockets).  Memory: about 1 GiB split evenly over the nodes.
#
#   tests/numa/run-guest.sh 2 4     a 2-node guest, then a 4-node guest
#   tests/numa/run-guest.sh 4+1     4 sockets and a memory-only node 4
#   tests/numa/run-guest.sh --check prints "SKIP numa guest: <reason>" and
#                                   exits 1 when a guest cannot be booted
#
# The initramfs is built from the project's own build outputs (psrun,
# psstat, test_numa, test_storm) plus the shared libraries ldd lists for
# them, a static busybox and tests/numa/init.sh as /init.  The kernel and
# busybox are cached by tests/numa/fetch-guest.sh (make deps, make
# test-numa).  QEMU runs in software emulation (-accel tcg: KVM hangs early
# on these hosts), under a hard time limit, and is killed on every exit path
# of this script.  The guest hands its exit status out through the
# isa-debug-exit port.  The guest's console is kept in
# $GUEST_DIR/guest-N.log and printed when a guest fails.
#
# Environment: BUILD [build], GUEST_DIR [$BUILD/numa-guest],
# NUMA_GUEST_TIMEOUT seconds per guest [240; a quiet machine needs 20-40],
# NUMA_TEST_FILTER: only the tests of test_numa matching it (cmocka's * ?).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 1
BUILD=${BUILD:-build}
GUEST_DIR=${GUEST_DIR:-$BUILD/numa-guest}
LIMIT=${NUMA_GUEST_TIMEOUT:-240}
FILTER=${NUMA_TEST_FILTER:-}
QEMU=qemu-system-x86_64
PROGS=(bin/psrun bin/psstat tests/test_numa tests/test_storm tests/test_hugepages)

say() { printf 'numa guest: %s\n' "$*" >&2; }

# Why no guest can run here, or nothing.
unavailable() {
	local t p
	for t in $QEMU cpio gzip ldd; do
		command -v "$t" >/dev/null || { echo "$t not installed (make deps)"; return; }
	done
	[[ -s $GUEST_DIR/vmlinuz && -x $GUEST_DIR/busybox ]] ||
		{ echo "no guest kernel in $GUEST_DIR (make deps or make test-numa fetch it)"; return; }
	for p in "${PROGS[@]}"; do
		[[ -x $BUILD/$p ]] || { echo "$BUILD/$p not built (make)"; return; }
	done
}

if [[ ${1:-} == --check ]]; then
	why=$(unavailable)
	[[ -z $why ]] && exit 0
	echo "SKIP numa guest: $why"
	exit 1
fi
[[ $# -ge 1 ]] || { echo "usage: run-guest.sh [--check] SPEC..." >&2; exit 2; }
why=$(unavailable)
[[ -z $why ]] || { say "cannot run: $why"; exit 1; }

WORK=$(mktemp -d "$GUEST_DIR/run.XXXXXX") || exit 1
QPID=
# QPID is timeout's pid: SIGTERM to it is passed on to qemu; SIGKILL to
# both if that did not end them within 3 s.
cleanup() {
	if [[ -n $QPID ]]; then
		kill -TERM "$QPID" 2>/dev/null
		for _ in $(seq 30); do
			kill -0 "$QPID" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL $(pgrep -P "$QPID") "$QPID" 2>/dev/null
		wait "$QPID" 2>/dev/null
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# ------------------------------------------------------------ initramfs
# Each program and each library keeps its path, so the dynamic loader and
# the tests (PSMEM_BUILD=build) find everything where they look.
make_initramfs() {
	local r=$WORK/root p lib
	mkdir -p "$r"/{bin,dev,proc,sys,tmp,psmem/build/bin,psmem/build/tests}
	cp "$GUEST_DIR/busybox" "$r/bin/busybox"
	cp tests/numa/init.sh "$r/init"
	chmod 755 "$r/init"
	echo "PSMEM_BUILD=build build/tests/test_numa" >"$r/psmem/cmd"
	# huge pages (tests/test_hugepages.c): its guest-only tests run too
	echo "a=\$?; PSMEM_GUEST=1 PSMEM_BUILD=build build/tests/test_hugepages; b=\$?; exit \$((a | b))" >>"$r/psmem/cmd"
	for p in "${PROGS[@]}"; do
		cp "$BUILD/$p" "$r/psmem/build/$p"
		strip --strip-debug "$r/psmem/build/$p" 2>/dev/null || true
		for lib in $(ldd "$BUILD/$p" | grep -o '/[^ ]*'); do
			[[ -e $r$lib ]] && continue
			mkdir -p "$r$(dirname "$lib")"
			cp -L "$lib" "$r$lib"
		done
	done
	(cd "$r" && find . | cpio -o -H newc --quiet | gzip -1) >"$WORK/initrd.gz"
}

# ------------------------------------------------------------ one guest
# numa_args S M MEM: S sockets of 2 CPUs, then M memory-only nodes, MEM MiB
# each, remote distance 21
numa_args() {
	local s=$1 m=$2 mem=$3 t=$(($1 + $2)) i j
	for ((i = 0; i < t; i++)); do
		printf -- '-object memory-backend-ram,id=m%d,size=%dM ' "$i" "$mem"
		if ((i < s)); then
			printf -- '-numa node,nodeid=%d,cpus=%d-%d,memdev=m%d ' "$i" $((2 * i)) $((2 * i + 1)) "$i"
		else
			printf -- '-numa node,nodeid=%d,memdev=m%d ' "$i" "$i"
		fi
	done
	for ((i = 0; i < t; i++)); do
		for ((j = i + 1; j < t; j++)); do
			printf -- '-numa dist,src=%d,dst=%d,val=21 ' "$i" "$j"
		done
	done
}

# run_guest SPEC: 0 if the guest's tests passed
run_guest() {
	local spec=$1 log=$GUEST_DIR/guest-$1.log t0=$SECONDS rc guest s m=0 mem
	s=${spec%+*}
	[[ $spec == *+* ]] && m=${spec#*+}
	mem=$((1024 / (s + m)))
	# PSMEM_NUMA_REQUIRE / PSMEM_TEST_FILTER reach /init as environment
	# shellcheck disable=SC2046
	timeout -k 5 "$LIMIT" $QEMU -accel tcg -m $((mem * (s + m)))M -smp $((2 * s)),sockets="$s",cores=2,threads=1 \
		$(numa_args "$s" "$m" "$mem") -nographic -no-reboot -nic none \
		-device isa-debug-exit,iobase=0xf4,iosize=0x04 \
		-kernel "$GUEST_DIR/vmlinuz" -initrd "$WORK/initrd.gz" \
		-append "console=ttyS0 quiet panic=-1 mitigations=off tsc=reliable no_timer_check PSMEM_NUMA_REQUIRE=$s${FILTER:+ PSMEM_TEST_FILTER=$FILTER}" \
		</dev/null >"$log" 2>&1 &
	QPID=$!
	wait "$QPID"
	rc=$?
	QPID=
	guest=$(sed -n 's/^psmem-guest: exit \([0-9]*\).*/\1/p' "$log" | tr -d '\r' | tail -n 1)
	if [[ $rc -eq 1 && $guest == 0 ]]; then
		say "$spec NUMA nodes: passed in $((SECONDS - t0)) s ($(grep -c '^\[       OK' "$log") tests; log $log)"
		return 0
	fi
	case $rc in
	124 | 137) say "$spec NUMA nodes: FAILED: no result within ${LIMIT}s (guest killed)" ;;
	0) say "$spec NUMA nodes: FAILED: the guest stopped without an exit status (kernel panic?)" ;;
	*) say "$spec NUMA nodes: FAILED: qemu status $rc, guest exit status ${guest:-unknown}" ;;
	esac
	say "guest console ($log):"
	tr -d '\r' <"$log" | sed -e 's/\x1b\[[0-9;?]*[a-zA-Z]//g' -e 's/^/  | /' >&2
	return 1
}

make_initramfs || { say "cannot build the initramfs"; exit 1; }
fail=0
for spec in "$@"; do
	if ! [[ $spec =~ ^[1-8](\+[1-4])?$ ]]; then
		say "SPEC is S (sockets, 1..8) or S+M (M memory-only nodes, 1..4), not '$spec'"
		exit 2
	fi
	run_guest "$spec" || fail=1
done
exit $fail
