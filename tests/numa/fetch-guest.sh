#!/usr/bin/env bash
# tests/numa/fetch-guest.sh DIR - caches what the NUMA guest boots: a Debian
# kernel (DIR/vmlinuz) and a static busybox (DIR/busybox), fetched with
# `apt-get download` and unpacked without installing anything.  Does nothing
# when both are cached.  Fails with a message, never hangs, when apt cannot
# reach its mirror (every apt call has a time limit).
set -euo pipefail
DIR=${1:?usage: fetch-guest.sh DIR}
KERNEL_META=${NUMA_KERNEL_PKG:-linux-image-amd64}
APT_TIMEOUT=${NUMA_APT_TIMEOUT:-300}
APT_OPTS=(-q -o Acquire::Retries=1 -o Acquire::http::Timeout=20 -o Acquire::https::Timeout=20)

say() { printf 'numa guest: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

if [[ -s $DIR/vmlinuz && -x $DIR/busybox ]]; then
	exit 0
fi
command -v apt-get >/dev/null || die "apt-get not found: cannot fetch the guest kernel (Debian only)"
mkdir -p "$DIR"
tmp=$(mktemp -d "$DIR/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# The metapackage names the current kernel package; it is only a pointer.
kernel_pkg() {
	apt-cache depends "$KERNEL_META" 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n 1
}
pkg=$(kernel_pkg)
if [[ -z $pkg ]]; then
	# Fresh machine without package lists: fetch them once (root only).
	[[ $(id -u) -eq 0 ]] || die "apt knows no $KERNEL_META; run 'apt-get update' as root (or make deps)"
	say "apt knows no $KERNEL_META: apt-get update"
	timeout "$APT_TIMEOUT" apt-get "${APT_OPTS[@]}" update >"$tmp/update.log" 2>&1 ||
		die "apt-get update failed or timed out after ${APT_TIMEOUT}s (mirror unreachable?): $(tail -n 2 "$tmp/update.log" | tr '\n' ' ')"
	pkg=$(kernel_pkg)
	[[ -n $pkg ]] || die "apt has no kernel package behind $KERNEL_META"
fi

download() { # download PKG: into $tmp, with a time limit
	say "downloading $1 (apt-get download)"
	if ! (cd "$tmp" && timeout "$APT_TIMEOUT" apt-get "${APT_OPTS[@]}" download "$1") >"$tmp/dl.log" 2>&1; then
		die "cannot download $1 with apt-get within ${APT_TIMEOUT}s (is the Debian mirror reachable?): $(grep -E '^(E|W):' "$tmp/dl.log" | head -n 2 | tr '\n' ' ')"
	fi
}

download "$pkg"
download busybox-static
# Only the two files we need come out of the packages (a kernel package
# holds ~400 MB of modules the guest never loads).
dpkg-deb --fsys-tarfile "$tmp"/linux-image-*.deb | tar -x -C "$tmp" --wildcards './boot/vmlinuz-*'
dpkg-deb --fsys-tarfile "$tmp"/busybox-static_*.deb | tar -x -C "$tmp" ./bin/busybox
mv "$tmp"/boot/vmlinuz-* "$DIR/vmlinuz"
mv "$tmp/bin/busybox" "$DIR/busybox"
for d in "$tmp"/*.deb; do dpkg-deb -f "$d" Package Version | paste -sd' '; done >"$DIR/VERSION"
say "cached $pkg and busybox-static in $DIR"
