#!/usr/bin/env bash
# tests/py/run.sh - the Python binding's tests (pytest), with the interpreter
# that imports numpy and PYTHONPATH=$BUILD/python.  Prints each skip's reason
# and ends with one line "N passed, N failed, N skipped"; exits non-zero on
# failure.  BUILD (default build), PYTHON (default: python3, then
# /usr/bin/python3, the first that imports numpy and pytest).
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
if [ -n "${PSMEM_SANITIZER:-}" ]; then
	# tests/run.sh says so for a sanitizer build: make builds no module there
	echo "SKIP python tests: sanitizer build (${PSMEM_SANITIZER}): an instrumented module cannot load into python"
	echo "0 passed, 0 failed, 1 skipped"
	exit 0
fi
if [ -z "${PYTHON:-}" ]; then
	for p in python3 /usr/bin/python3; do
		if "$p" -c 'import numpy, pytest' 2>/dev/null; then PYTHON=$p; break; fi
	done
fi
if [ -z "${PYTHON:-}" ] || ! "$PYTHON" -c 'import numpy, pytest' 2>/dev/null; then
	echo "SKIP python tests: no interpreter with numpy and pytest (make deps: python3-numpy python3-pytest)"
	echo "0 passed, 0 failed, 1 skipped"
	exit 0
fi
if ! ls "$BUILD"/python/psmem/_psmem*.so >/dev/null 2>&1; then
	echo "FAIL python tests: $BUILD/python/psmem/_psmem*.so not built (make PYTHON=$PYTHON)"
	echo "0 passed, 1 failed, 0 skipped"
	exit 1
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
BUILD=$BUILD PYTHONPATH="$BUILD/python${PYTHONPATH:+:$PYTHONPATH}" \
	"$PYTHON" -m pytest -p no:cacheprovider -q -rs tests/py 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
last=$(grep -E '^[=]* *[0-9]+ (passed|failed|skipped|error)' "$log" | tail -1)
count() { echo "$last" | grep -oE "[0-9]+ $1" | grep -oE '^[0-9]+' || echo 0; }
passed=$(count passed)
failed=$(( $(count failed) + $(count error) ))
skipped=$(count skipped)
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
	failed=1 # pytest failed without a count (collection error, crash)
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
