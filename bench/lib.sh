# bench/lib.sh - pieces the bench scripts share; source it:
#   . "$(dirname "$0")/lib.sh"
# Defines functions and one awk snippet only; runs nothing when sourced.
# shellcheck shell=bash

# bench_free_port: prints a TCP port of 127.0.0.1 that the kernel chose
# free (it is free when printed; the caller binds it soon after).
bench_free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# bench_tmp_token: sets tmp to a fresh private temporary directory removed
# on exit and writes a fresh job token to $tmp/token ($BUILD/bin/psrun).
bench_tmp_token() {
	tmp=$(mktemp -d)
	# shellcheck disable=SC2064 # expand $tmp now: the trap outlives locals
	trap "rm -rf '$tmp'" EXIT
	"$BUILD/bin/psrun" --make-token "$tmp/token" >/dev/null
}

# bench_two_hosts BIN I ARGS...: runs $BUILD/bench/BIN as a 2-host job of one
# node per host on 127.0.0.1 (a free port, the token $tmp/token, psrun -v);
# host 0's stdout goes to $tmp/outI, the hosts' stderr to $tmp/err0.I and
# $tmp/err1.I.  When either fails it prints both stderrs and exits with
# the failing status.
bench_two_hosts() {
	local bin=$1 i=$2 port pid0 pid1 rc=0
	shift 2
	port=$(bench_free_port)
	local common=(-n 1 --hosts 2 --coordinator "127.0.0.1:$port" --token-file "$tmp/token" -v)
	"$BUILD/bin/psrun" "${common[@]}" --host-rank 0 "$BUILD/bench/$bin" "$@" >"$tmp/out$i" 2>"$tmp/err0.$i" &
	pid0=$!
	"$BUILD/bin/psrun" "${common[@]}" --host-rank 1 "$BUILD/bench/$bin" "$@" >/dev/null 2>"$tmp/err1.$i" &
	pid1=$!
	wait $pid0 || rc=$?
	wait $pid1 || rc=$?
	if [ $rc -ne 0 ]; then
		cat "$tmp/err0.$i" "$tmp/err1.$i" >&2
		exit $rc
	fi
}

# bench_two_hosts_runs BIN RUNS ARGS...: bench_two_hosts BIN I ARGS for
# I = 1..RUNS, one after the other.
bench_two_hosts_runs() {
	local bin=$1 runs=$2 i
	shift 2
	for ((i = 1; i <= runs; i++)); do
		bench_two_hosts "$bin" "$i" "$@"
	done
}

# BENCH_AWK_MEDIAN: an awk function to paste in front of an awk program:
# median(key, col) is the median of val[key, 1..cnt[key], col] (numbers;
# the mean of the two middle ones when cnt[key] is even).
# shellcheck disable=SC2034 # used by the scripts that source this file
BENCH_AWK_MEDIAN='
function median(key, col,    n, i, j, v, t) {
	n = cnt[key]
	for (i = 1; i <= n; i++) v[i] = val[key, i, col]
	for (i = 2; i <= n; i++)           # insertion sort: n is small
		for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
	return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}'

# bench_env_header: prints "# DATE COMMIT Model name: CPU" (one line)
bench_env_header() {
	echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) $(lscpu | grep 'Model name' | sed 's/  */ /g')"
}

# bench_cpu_model: the CPU's model name (lscpu), nothing when unknown
bench_cpu_model() {
	lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1
}

# bench_load: the load averages over 1, 5 and 15 minutes
bench_load() {
	cut -d' ' -f1-3 /proc/loadavg
}

# bench_commit NOTE: the short commit, then NOTE when apps lib bin or bench
# have uncommitted changes
bench_commit() {
	echo "$(git rev-parse --short HEAD 2>/dev/null)$([[ -n $(git status --porcelain -- apps lib bin bench 2>/dev/null) ]] && echo "$1")"
}

# bench_mf_inputs NAME: sets DATA, TRAIN and TEST where unset (MovieLens-100K
# u1 under ../shared/data of the checkout) and exits 1 naming NAME and the
# file when either rating file cannot be read.
bench_mf_inputs() {
	local f
	DATA=${DATA:-$(git rev-parse --show-toplevel)/../shared/data}
	TRAIN=${TRAIN:-$DATA/movielens/ml-100k/u1.base}
	TEST=${TEST:-$DATA/movielens/ml-100k/u1.test}
	for f in "$TRAIN" "$TEST"; do
		[ -r "$f" ] || { echo "$1: $f: cannot read (see DATA)" >&2; exit 1; }
	done
}
