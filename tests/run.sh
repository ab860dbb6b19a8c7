#!/usr/bin/env bash
# Runs every test binary in $BUILD/tests, each with a time limit, and after
# each one checks that it left no shared state behind: no /dev/shm/psmem-*
# segment and no process of the project.  Prints "N passed, N failed".
set -u
BUILD=${BUILD:-build}
export PSMEM_BUILD=$BUILD
LIMIT=${PSMEM_TEST_TIMEOUT:-300}
pass=0
fail=0
failed=()

leftovers() {
	local segs procs
	segs=$(ls /dev/shm 2>/dev/null | grep '^psmem-' || true)
	procs=$(pgrep -a -f "$BUILD/(bin/psrun|tests/test_|bench/micro|apps/demo)" 2>/dev/null | grep -v pgrep || true)
	[ -z "$segs$procs" ] && return 0
	[ -n "$segs" ] && echo "  leaked segments: $segs"
	[ -n "$procs" ] && echo "  leaked processes: $procs"
	return 1
}

if ! leftovers; then
	echo "run.sh: shared state left over from before the tests; removing it"
	pkill -9 -f "$BUILD/(bin/psrun|tests/test_)" 2>/dev/null
	rm -f /dev/shm/psmem-*
fi

for t in "$BUILD"/tests/test_*; do
	[ -x "$t" ] || continue
	name=$(basename "$t")
	echo "=== $name"
	start=$(date +%s%N)
	timeout -k 5 "$LIMIT" "$t"
	rc=$?
	ms=$(( ($(date +%s%N) - start) / 1000000 ))
	sleep 0.2
	if [ $rc -ne 0 ]; then
		echo "--- $name FAILED (exit $rc) in ${ms} ms"
		fail=$((fail + 1)); failed+=("$name")
	elif ! leftovers; then
		echo "--- $name FAILED: left shared state behind"
		fail=$((fail + 1)); failed+=("$name")
		pkill -9 -f "$BUILD/(bin/psrun|tests/test_)" 2>/dev/null
		rm -f /dev/shm/psmem-*
	else
		echo "--- $name ok in ${ms} ms"
		pass=$((pass + 1))
	fi
done
echo
[ $fail -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
