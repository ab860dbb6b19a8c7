#!/usr/bin/env bash
# Runs every test binary in $BUILD/tests, then every executable script
# tests/test_*.sh (with PSMEM_BUILD, like a binary; bench/netns.sh's test),
# each with a time limit, in a session of its own.  After each test: any
# process still in that session, or any /dev/shm/psmem-* segment that was
# not there before the test, is a leak and fails the test (and is cleaned
# up).  Then the optional extra suite tests/py/run.sh, if it exists, the
# same way.
#
# The extra suite gets BUILD, PSMEM_BUILD and PSMEM_SANITIZER (libasan or
# libtsan when $BUILD is a sanitizer build, else empty).
#
# Counts are of tests: the cmocka tests of each binary ("[       OK ]",
# "[  SKIPPED ]", and the others of a binary that failed), a binary without
# cmocka output as one test, and the extra suite's own counts (its last line
# says "N passed, N failed, N skipped").  A binary that fails with no failed
# test of its own (a leak, a crash after its tests, a timeout between two)
# counts one failed test, in place of one it passed.  Every skipped test is listed with its reason: the
# lines holding "SKIP" that it printed between its RUN and SKIPPED lines (a
# binary that skips by exiting early prints "SKIP <reason>" and exits 0).
# The last line is "N passed, N failed, N skipped"; exit 0 when none failed.
set -u
BUILD=${BUILD:-build}
export PSMEM_BUILD=$BUILD
LIMIT=${PSMEM_TEST_TIMEOUT:-300}
PY_LIMIT=${PSMEM_PY_TIMEOUT:-900}
EXTRA=${PSMEM_EXTRA_SUITE:-$(dirname "$0")/py/run.sh}
pass=0
fail=0
skipped=0
failed=()
skips=()
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

# cmocka's counts in output file $1: "run ok skipped failed" (skipped and
# failed tests named in the summary lists are not counted twice).
cmocka_counts() {
	awk '
		/^\[ RUN      \] /                       { run++; list = 0; next }
		/^\[==========\]/                        { list = 0; next }
		/^\[  (SKIPPED|FAILED ) \] [0-9]+ test\(s\), listed below:/ { list = 1; next }
		/^\[       OK \] /                       { ok++; next }
		/^\[  SKIPPED \] / && !list              { sk++; next }
		/^\[  FAILED  \] / && !list              { fl++; next }
		END { printf "%d %d %d %d\n", run, ok, sk, fl }' "$1"
}

# "name: reason" for each skipped cmocka test of output file $2 (binary $1),
# or the binary's own SKIP lines when it skipped without cmocka.
skip_reasons() {
	awk -v bin="$1" '
		/^\[ RUN      \] / { name = $4; why = ""; next }
		/^\[  SKIPPED \] [0-9]+ test\(s\)/ { next }
		/^\[  SKIPPED \] / {
			if (name != "" && $4 == name) {
				print bin "/" name ": " (why != "" ? why : "(the test printed no reason)")
				name = ""
			}
			next
		}
		/SKIP/ && name != "" {
			line = $0
			sub("^SKIP:? *(" name ")?:? *", "", line)  # "SKIP name: why" says the name once
			why = why (why != "" ? " / " : "") line
		}
	' "$2"
}

# Runs "$@" in a session of its own with time limit $1 (the rest: the
# command), its output to $tmp/out and then to ours; sets rc, ms, leaks.
run_isolated() {
	local limit=$1 i procs segs sid
	shift
	segments > "$tmp/before"
	local start=$(date +%s%N)
	timeout -k 5 "$limit" setsid -w bash -c 'echo $$ > "$1"; shift; exec "$@"' _ "$tmp/sid" "$@" \
		> "$tmp/out" 2>&1
	rc=$?
	ms=$(( ($(date +%s%N) - start) / 1000000 ))
	cat "$tmp/out"
	sid=$(cat "$tmp/sid" 2>/dev/null || echo 0)
	rm -f "$tmp/sid"
	leaks=""
	procs=""
	segs=""
	for i in 1 2 3 4 5 6 7 8 9 10; do   # give the kernel a moment to reap
		procs=$( [ "$sid" -gt 0 ] && pgrep -a -s "$sid" || true)
		segs=$(own_new_segments "$sid")
		[ -z "$procs$segs" ] && break
		sleep 0.2
	done
	[ -n "$procs" ] && leaks+=" processes: $(echo "$procs" | tr '\n' ';')"
	[ -n "$segs" ] && leaks+=" segments: $(echo $segs)"
	[ "$sid" -gt 0 ] && pkill -9 -s "$sid" 2>/dev/null
	for i in $segs; do rm -f "/dev/shm/$i"; done
}

for t in "$BUILD"/tests/test_* "$(dirname "$0")"/test_*.sh; do
	[ -x "$t" ] || continue
	name=$(basename "$t")
	echo "=== $name"
	run_isolated "$LIMIT" "$t"
	read -r n_run n_ok n_skip n_fail < <(cmocka_counts "$tmp/out")
	if [ "$n_run" -eq 0 ]; then
		# not a cmocka binary, or one that skipped before running any
		n_ok=0
		n_skip=0
		n_fail=0
		if [ $rc -ne 0 ]; then
			n_fail=1
		elif grep -q 'SKIP' "$tmp/out"; then
			n_skip=1
			skips+=("$name: $(grep 'SKIP' "$tmp/out" | head -3 | paste -sd '/' -)")
		else
			n_ok=1
		fi
	else
		while IFS= read -r line; do
			skips+=("$line")
		done < <(skip_reasons "$name" "$tmp/out")
		# tests that started but neither passed nor skipped: failed,
		# whether cmocka said so or the binary died in them
		[ $((n_run - n_ok - n_skip)) -gt "$n_fail" ] && n_fail=$((n_run - n_ok - n_skip))
	fi
	what=""
	if [ $rc -ne 0 ]; then
		what="FAILED (exit $rc)"
	elif [ -n "$leaks" ]; then
		what="FAILED: left shared state behind:$leaks"
	fi
	if [ -n "$what" ] && [ "$n_fail" -eq 0 ]; then
		n_fail=1
		[ "$n_ok" -gt 0 ] && n_ok=$((n_ok - 1))   # the binary's failure is one of its tests'
	fi
	pass=$((pass + n_ok))
	skipped=$((skipped + n_skip))
	fail=$((fail + n_fail))
	if [ -n "$what" ]; then
		echo "--- $name $what in ${ms} ms"
		failed+=("$name")
	elif [ "$n_ok" -eq 0 ] && [ "$n_skip" -gt 0 ]; then
		echo "--- $name skipped in ${ms} ms"
	else
		echo "--- $name ok in ${ms} ms ($n_ok passed, $n_skip skipped)"
	fi
done

# The extra suite (another language's tests of the same build), if any.
if [ -f "$EXTRA" ]; then
	echo "=== $EXTRA"
	# a sanitizer build's library cannot be loaded by an interpreter
	# that was not started with the sanitizer's runtime: the suite is
	# told which (libasan, libtsan or empty) and may skip, saying so
	san=$(ldd "$BUILD/lib/libpsmem.so" 2>/dev/null | grep -o 'lib[at]san' | head -n 1)
	run_isolated "$PY_LIMIT" env BUILD="$BUILD" PSMEM_SANITIZER="$san" bash "$EXTRA"
	last=$(grep -v '^[[:space:]]*$' "$tmp/out" | tail -n 1)
	if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed,\ ([0-9]+)\ skipped$ ]]; then
		pass=$((pass + BASH_REMATCH[1]))
		fail=$((fail + BASH_REMATCH[2]))
		skipped=$((skipped + BASH_REMATCH[3]))
		n_fail=${BASH_REMATCH[2]}
		# each of its skips is a line "SKIP<anything>: reason" of its own
		while IFS= read -r line; do
			skips+=("$EXTRA: $line")
		done < <(grep '^SKIP' "$tmp/out")
	else
		echo "--- $EXTRA: its last line is not 'N passed, N failed, N skipped': '$last'"
		n_fail=0
		[ $rc -eq 0 ] && rc=1
	fi
	what=""
	if [ $rc -ne 0 ]; then
		what="FAILED (exit $rc)"
	elif [ -n "$leaks" ]; then
		what="FAILED: left shared state behind:$leaks"
	fi
	if [ -n "$what" ] && [ "$n_fail" -eq 0 ]; then
		fail=$((fail + 1))
	fi
	if [ -n "$what" ] || [ "$n_fail" -gt 0 ]; then
		echo "--- $EXTRA ${what:-FAILED ($n_fail failed)} in ${ms} ms"
		failed+=("$EXTRA")
	else
		echo "--- $EXTRA ok in ${ms} ms"
	fi
fi

echo
if [ ${#skips[@]} -gt 0 ]; then
	echo "skipped:"
	for s in "${skips[@]}"; do echo "  SKIP $s"; done
fi
[ $fail -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed, $skipped skipped"
[ $fail -eq 0 ] && [ ${#failed[@]} -eq 0 ]
