#!/usr/bin/env bash
# Runs every test binary in $BUILD/tests, each with a time limit, in a
# session of its own.  After each test: any process still in that session,
# or any /dev/shm/psmem-* segment that was not there before the test, is a
# leak and fails the test (and is cleaned up).  Prints "N passed, N failed".
set -u
BUILD=${BUILD:-build}
export PSMEM_BUILD=$BUILD
LIMIT=${PSMEM_TEST_TIMEOUT:-300}
pass=0
fail=0
failed=()
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# psrun --hugepages segments on hugetlbfs mounts are listed relative to
# /dev/shm (../hugepages/psmem-x), so that "/dev/shm/$s" names them too.
segments() {
	{
		ls /dev/shm 2>/dev/null | grep '^psmem-' || true
		local m f
		for m in $(awk '$3 == "hugetlbfs" { print $2 }' /proc/mounts 2>/dev/null); do
			for f in "$m"/psmem-*; do
				[ -e "$f" ] && realpath -s --relative-to=/dev/shm "$f"
			done
		done
	} | sort
}

# New segments that belong to the test: their creator (pid at byte 36 of
# the header) is gone or in the test's session.  Another job's live segment
# on the same machine is not the test's leak.
own_new_segments() {
	local sid=$1 s pid
	for s in $(segments | comm -13 "$tmp/before" -); do
		pid=$(od -An -t d4 -j 36 -N 4 "/dev/shm/$s" 2>/dev/null | tr -d ' ')
		if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null || [ "$(ps -o sid= -p "$pid" | tr -d ' ')" = "$sid" ]; then
			echo "$s"
		fi
	done
}

for t in "$BUILD"/tests/test_*; do
	[ -x "$t" ] || continue
	name=$(basename "$t")
	echo "=== $name"
	segments > "$tmp/before"
	start=$(date +%s%N)
	timeout -k 5 "$LIMIT" setsid -w bash -c 'echo $$ > "$1"; exec "$2"' _ "$tmp/sid" "$t"
	rc=$?
	ms=$(( ($(date +%s%N) - start) / 1000000 ))
	sid=$(cat "$tmp/sid" 2>/dev/null || echo 0)
	leaks=""
	for i in 1 2 3 4 5 6 7 8 9 10; do   # give the kernel a moment to reap
		procs=$( [ "$sid" -gt 0 ] && pgrep -a -s "$sid" || true)
		segs=$(own_new_segments "$sid")
		[ -z "$procs$segs" ] && break
		sleep 0.2
	done
	[ -n "$procs" ] && leaks+=" processes: $(echo "$procs" | tr '\n' ';')"
	[ -n "$segs" ] && leaks+=" segments: $(echo $segs)"
	if [ $rc -ne 0 ]; then
		echo "--- $name FAILED (exit $rc) in ${ms} ms"
		fail=$((fail + 1)); failed+=("$name")
	elif [ -n "$leaks" ]; then
		echo "--- $name FAILED: left shared state behind:$leaks"
		fail=$((fail + 1)); failed+=("$name")
	else
		echo "--- $name ok in ${ms} ms"
		pass=$((pass + 1))
	fi
	[ "$sid" -gt 0 ] && pkill -9 -s "$sid" 2>/dev/null
	for s in $segs; do rm -f "/dev/shm/$s"; done
done
echo
[ $fail -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
