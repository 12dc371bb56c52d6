#!/usr/bin/env bash
# Run the unit tests and the bats suites against $ZDM_BIN; print one closing
# line "tests: N passed, N failed" and exit non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${ZDM_BIN:?set ZDM_BIN to the zdm binary}"
export ZDM_BIN

passed=0 failed=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT

if [ -n "${ZDM_UNIT:-}" ]; then
  "$ZDM_UNIT" >"$out" 2>&1
  cat "$out"
  passed=$((passed + $(grep -c '^ok ' "$out" || true)))
  failed=$((failed + $(grep -c '^not ok ' "$out" || true)))
fi

jobs=1
if command -v parallel >/dev/null 2>&1; then jobs=$(nproc); fi
# bats in TAP mode; each test file gets its own temp dirs (tests/helper.bash)
bats --tap ${BATS_FILTER:+--filter "$BATS_FILTER"} $([ "$jobs" -gt 1 ] && echo --jobs "$jobs") tests/*.bats >"$out" 2>&1
rc=$?
cat "$out"
passed=$((passed + $(grep -c '^ok ' "$out" || true)))
failed=$((failed + $(grep -c '^not ok ' "$out" || true)))
if [ "$rc" -ne 0 ] && [ "$(grep -c '^not ok ' "$out" || true)" -eq 0 ]; then
  failed=$((failed + 1))   # bats itself failed (syntax error, crash)
fi
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
