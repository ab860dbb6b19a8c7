#!/usr/bin/env bash
# bench/bridge.sh [--seconds S]
#
# Runs build/bench/bridge as a 2-host job on this machine: two psruns of one
# node each on 127.0.0.1 (ports chosen by the kernel), a fresh job token in
# a private temporary directory.  Prints host 0's CSV, then psrun -v's
# bridge counters of both hosts (frames and bytes on the wire), which check
# the wire_bytes_per_key column.
set -euo pipefail
BUILD=${BUILD:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$BUILD/bin/psrun" --make-token "$tmp/token" >/dev/null
common=(-n 1 --hosts 2 --coordinator "127.0.0.1:$port" --token-file "$tmp/token" -v)
"$BUILD/bin/psrun" "${common[@]}" --host-rank 0 "$BUILD/bench/bridge" "$@" >"$tmp/out0" 2>"$tmp/err0" &
pid0=$!
"$BUILD/bin/psrun" "${common[@]}" --host-rank 1 "$BUILD/bench/bridge" "$@" >"$tmp/out1" 2>"$tmp/err1" &
pid1=$!
rc=0
wait $pid0 || rc=$?
wait $pid1 || rc=$?
cat "$tmp/out0"
grep -h 'bridge:' "$tmp/err0" "$tmp/err1" | sed 's/^/# /'
if [ $rc -ne 0 ]; then
	cat "$tmp/err0" "$tmp/err1" >&2
	exit $rc
fi
