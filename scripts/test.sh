#!/usr/bin/env bash
# Install l4stb with its test dependencies, lint the tree with ruff, then run the whole test suite (slow tests
# included).
# The real-kernel tests (`-m realkernel`: Linux under QEMU, TCG with icount, so their results do not depend on
# the host's load) run in a second pytest beside the rest, which keeps the wall time of the two apart.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# The linter first (rules in pyproject.toml's [tool.ruff]): a finding stops the run before the tests start.
python3 -m ruff check .
real_log=$(mktemp)
python3 -m pytest -q -m realkernel "$@" >"$real_log" 2>&1 &
real_pid=$!
# The rest over pytest-xdist workers, one per core up to 4 (each training test holds about 1 GB); the
# real-kernel tests beside them are budgeted in QEMU CPU time, so the load does not change their results.
workers=$(nproc 2>/dev/null || echo 2)
[ "$workers" -gt 4 ] && workers=4
rest=0
python3 -m pytest -q -n "$workers" -m "not realkernel" "$@" || rest=$?
real=0
wait "$real_pid" || real=$?
echo "---- real-kernel tests (tests/test_real_linux.py) ----"
cat "$real_log"
rm -f "$real_log"
# exit 5 = no test selected (e.g. a file argument without real-kernel tests)
[ "$real" = 5 ] && real=0
[ "$rest" = 5 ] && rest=0
if [ "$rest" != 0 ] || [ "$real" != 0 ]; then
  echo "tests failed: suite exit $rest, real-kernel exit $real" >&2
  exit 1
fi
