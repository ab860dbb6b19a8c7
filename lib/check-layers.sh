#!/usr/bin/env bash
# check-layers.sh [BUILD] - lib/ is layered: base < core < persist < net <
# launch (docs/DESIGN.md "Layers").  A file may use its own layer and the
# layers below it, never one above.  Fails (exit 1, one line per breach) if
#   - a file of lib/L/ includes a header that lives in a higher layer's
#     folder (lib/psmem.h, the public header, is below every layer), or
#   - with BUILD (objects in BUILD/lib/L/), an object of a layer has an
#     undefined ps_ symbol that only an object of a higher layer defines:
#     a call upwards that a declaration in a shared header would hide;
#   - a private header's first line does not say PRIVATE, or a file of lib/
#     includes psmem_int.h (the umbrella of bin/ and tests/).
set -u
cd "$(dirname "$0")"
LAYERS=(base core persist net launch)
BUILD=${1:-}
rank() { local i; for i in "${!LAYERS[@]}"; do [ "${LAYERS[$i]}" = "$1" ] && echo "$i" && return; done; echo -1; }
bad=0

# 1. includes
declare -A hlayer
for l in "${LAYERS[@]}"; do
	for h in "$l"/*.h; do [ -e "$h" ] && hlayer[$(basename "$h")]=$l; done
done
for l in "${LAYERS[@]}"; do
	r=$(rank "$l")
	for f in "$l"/*.c "$l"/*.h; do
		[ -e "$f" ] || continue
		while IFS= read -r inc; do
			hl=${hlayer[$inc]:-}
			[ -z "$hl" ] && continue # system or public header
			if [ "$(rank "$hl")" -gt "$r" ]; then
				echo "check-layers: lib/$f includes $inc of $hl/, a layer above $l/" >&2
				bad=1
			fi
		done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
	done
done

# private headers say so; lib/ includes only the module headers it uses
for h in */*.h; do
	if ! head -1 "$h" | grep -q PRIVATE; then
		echo "check-layers: lib/$h: the first line does not say PRIVATE" >&2
		bad=1
	fi
done
for f in */*.c */*.h; do
	[ "$(basename "$f")" = psmem_int.h ] && continue
	if grep -q '^[[:space:]]*#[[:space:]]*include[[:space:]]*"psmem_int.h"' "$f"; then
		echo "check-layers: lib/$f includes psmem_int.h (for bin/ and tests/ only)" >&2
		bad=1
	fi
done

# 2. symbols
if [ -n "$BUILD" ]; then
	obj=../$BUILD/lib
	[ -d "$BUILD" ] && obj=$BUILD/lib
	[ "${BUILD:0:1}" = / ] && obj=$BUILD/lib
	declare -A def
	for l in "${LAYERS[@]}"; do
		for o in "$obj/$l"/*.o; do
			[ -e "$o" ] || continue
			for s in $(nm --defined-only "$o" | awk '$2 ~ /[TDBR]/ && $3 ~ /^ps_/ {print $3}'); do
				def[$s]=$l
			done
		done
	done
	for l in "${LAYERS[@]}"; do
		r=$(rank "$l")
		for o in "$obj/$l"/*.o; do
			[ -e "$o" ] || continue
			for s in $(nm -u "$o" | awk '$2 ~ /^ps_/ {print $2}'); do
				dl=${def[$s]:-}
				if [ -n "$dl" ] && [ "$(rank "$dl")" -gt "$r" ]; then
					echo "check-layers: $l/$(basename "$o" .o).c calls $s of $dl/, a layer above $l/" >&2
					bad=1
				fi
			done
		done
	done
fi
[ $bad = 0 ] && echo "check-layers: lib/ layers ${LAYERS[*]}: no include or call upwards"
exit $bad
