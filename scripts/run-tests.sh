#!/usr/bin/env bash
# Run the unit tests and the bats suites against $ZDM_BIN, then the suites
# marked "# state: file and PostgreSQL" a second time with their state kept in
# PostgreSQL (ZDM_TEST_STATE=pg, tests/helper.bash; their TAP lines carry
# "[pg]"); print one closing line "tests: N passed, N failed" counting both
# passes, and exit non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${ZDM_BIN:?set ZDM_BIN to the zdm binary}"
export ZDM_BIN

passed=0 failed=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# add the ok / not ok lines of $out to the counts; a bats that failed ($1)
# without a failing test (syntax error, crash) counts as one failure
count() {
  local n
  n=$(grep -c '^not ok ' "$out" || true)
  passed=$((passed + $(grep -c '^ok ' "$out" || true)))
  failed=$((failed + n))
  if [ "$1" -ne 0 ] && [ "$n" -eq 0 ]; then
    failed=$((failed + 1))
  fi
}

if [ -n "${ZDM_UNIT:-}" ]; then
  "$ZDM_UNIT" >"$out" 2>&1
  rc=$?
  cat "$out"
  count "$rc"
fi

jobs=1
if command -v parallel >/dev/null 2>&1; then jobs=$(nproc); fi
# bats in TAP mode; each test file gets its own temp dirs (tests/helper.bash)
bats --tap ${BATS_FILTER:+--filter "$BATS_FILTER"} $([ "$jobs" -gt 1 ] && echo --jobs "$jobs") tests/*.bats >"$out" 2>&1
rc=$?
cat "$out"
count "$rc"

# the same suites again, each run's journal and lock in PostgreSQL: one
# cluster for the pass (tests/servers/postgres.bash), a database per file
mapfile -t both < <(grep -l '^# state: file and PostgreSQL' tests/*.bats)
if [ "${#both[@]}" -gt 0 ]; then
  echo "# state: postgresql (ZDM_TEST_STATE=pg): ${#both[@]} suites"
  start=$SECONDS
  # its own root, not the suites' PG_ROOT: their pg_stop_all must not stop it
  source tests/servers/postgres.bash
  PG_ROOT="$(mktemp -d /tmp/zdm-pgstate.XXXXXX)"
  trap 'rm -f "$out"; pg_stop_all' EXIT
  pg_start pass || echo "not ok 0 [pg] the PostgreSQL cluster for the pass did not start"
  export ZDM_TEST_PG_SOCK="$PG_ROOT/pass" ZDM_TEST_PG_PORT="$(pg_port pass)"
  export -n PG_ROOT
  ZDM_TEST_STATE=pg bats --tap ${BATS_FILTER:+--filter "$BATS_FILTER"} \
    $([ "$jobs" -gt 1 ] && echo --jobs "$jobs") "${both[@]}" 2>&1 |
    sed -E 's/^(not )?ok ([0-9]+) /&[pg] /' >"$out"
  rc=${PIPESTATUS[0]}
  cat "$out"
  echo "# state: postgresql: $(grep -c '^ok ' "$out" || true) passed ($(grep -c '^ok .* # skip' "$out" || true) skipped), $(grep -c '^not ok ' "$out" || true) failed, $((SECONDS - start)) s"
  count "$rc"
fi
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
