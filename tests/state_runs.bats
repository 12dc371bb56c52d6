#!/usr/bin/env bats
# zdm runs (the runs of a state, newest first, with filters and --output
# json), zdm lock status NAME (who holds a runbook's run lock) and
# --lock-timeout (wait for a busy lock), each on a state dir and on a
# PostgreSQL state (tests/servers/postgres.bash: one cluster for the file, a
# database per test); the PostgreSQL run summaries (SCHEMA.runs) are what the
# journal says, and `zdm state init` rebuilds them from it.

bats_require_minimum_version 1.5.0
load helper
load servers/postgres

setup_file() {
  pg_start st
}

teardown_file() {
  pg_stop_all
}

# use_state file|pg: S holds the state flags of this test's state (a state
# dir, or this test's own database with zdm's schema in it)
use_state() {
  if [ "$1" = pg ]; then
    DB="t${BATS_TEST_NUMBER}"
    pg_createdb st "$DB"
    URL="$(pg_uri st "$DB")"
    export PGPASSWORD="$PG_PASSWORD"
    run zdm state init "$URL"
    assert_success
    S=(--state "$URL")
  else
    S=(--state-dir "$T/state")
  fi
}

sql() {
  pg_psql st "$DB" -c "$1"
}

# $T/NAME.yml: runbook NAME of two steps, a and b (b fails with "fail"; a has an undo)
two_steps() {
  local b_cmd='"true"'
  [ "${2:-}" = fail ] && b_cmd='"false"'
  cat >"$T/$1.yml" <<EOF
zdm: 1
name: $1
steps:
  - id: a
    uses: exec
    with: {command: ["true"]}
    undo: {uses: exec, with: {command: ["true"]}}
  - id: b
    uses: exec
    with: {command: [$b_cmd]}
EOF
}

# $T/NAME.yml: runbook NAME whose step "hold" touches $T/NAME.started, then
# waits for $T/release (at most 20 s)
holder_runbook() {
  cat >"$T/$1.yml" <<EOF
zdm: 1
name: $1
steps:
  - id: hold
    uses: exec
    timeout: 30s
    with:
      shell: 'touch "$T/$1.started"; i=0; while [ ! -e "$T/release" ] && [ \$i -lt 400 ]; do sleep 0.05; i=\$((i+1)); done'
EOF
}

# start zdm run of $T/$1.yml in the background (its own session); HOLDER is
# the zdm's pid once its step runs
start_holder() {
  setsid "$ZDM_BIN" run "$T/$1.yml" "${S[@]}" >"$T/holder.out" 2>&1 3>&- &
  HOLDER=$!
  poll 200 0.05 test -e "$T/$1.started" || { cat "$T/holder.out" >&2; return 1; }
}

# the run id of the only run of runbook $1, from zdm runs --output json
run_of() {
  zdm runs "${S[@]}" --runbook "$1" --output json | jq -r '.[0].run'
}

# ---- zdm runs ------------------------------------------------------------------

check_empty() {
  run zdm runs "${S[@]}"
  assert_success
  assert_output --regexp "^no runs in "
  run --separate-stderr zdm runs "${S[@]}" --output json
  assert_success
  [ "$output" = "[]" ]
  [ -z "$stderr" ]
}

@test "runs (state dir): an empty state says so, exit 0; json []" {
  use_state file
  check_empty
  mkdir -p "$T/state/runs"
  check_empty
}

@test "runs (PostgreSQL): an empty state says so, exit 0; json []" {
  use_state pg
  check_empty
}

check_listing() {
  two_steps demo
  two_steps failer fail
  run zdm run "$T/demo.yml" "${S[@]}"
  assert_success
  run zdm run "$T/failer.yml" "${S[@]}"
  [ "$status" -eq 1 ]
  run zdm run "$T/demo.yml" "${S[@]}" --dry-run
  assert_success
  run zdm run "$T/demo.yml" "${S[@]}"
  assert_success

  run --separate-stderr zdm runs "${S[@]}" --output json
  assert_success
  [ -z "$stderr" ]
  echo "$output" >"$T/all.json"
  [ "$(jq length "$T/all.json")" = 4 ]
  # stable keys
  [ "$(jq -r '.[] | keys | join(",")' "$T/all.json" | sort -u)" = \
    "actor,dry_run,duration_ms,file,host,records,run,runbook,started,status,step,updated" ]
  # newest first: the order they were made, reversed
  [ "$(jq -r '.[] | .runbook + " " + .status + " " + (.dry_run | tostring) + " " + .step' "$T/all.json" | tr '\n' ,)" = \
    "demo succeeded false b,demo succeeded true b,failer rolled_back false b,demo succeeded false b," ]
  [ "$(jq -r '.[0].started >= .[1].started and .[1].started >= .[2].started' "$T/all.json")" = true ]
  [ "$(jq -r '.[2] | .records, .file, .actor, .host' "$T/all.json" | tr '\n' ,)" = \
    "9,$T/failer.yml,$(id -un),$(hostname)," ]
  [ "$(jq -r '.[0].started | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$")' "$T/all.json")" = true ]
  [ "$(jq -r '.[] | .duration_ms >= 0' "$T/all.json" | sort -u)" = true ]
  newest="$(jq -r '.[0].run' "$T/all.json")"
  failed="$(jq -r '.[2].run' "$T/all.json")"

  # the table: a header, one line a run, columns aligned
  run zdm runs "${S[@]}"
  assert_success
  [ "${#lines[@]}" -eq 5 ]
  assert_line --index 0 --regexp "^RUN +RUNBOOK +STATUS +ACTOR +HOST +STARTED +DURATION +STEP$"
  assert_line --index 1 --regexp "^$newest  demo +succeeded "
  assert_line --index 2 --regexp " demo \(dry run\) +succeeded "
  assert_line --index 3 --regexp "^$failed  failer +rolled_back +$(id -un) +$(hostname) +[0-9T:-]+Z +[0-9.]+m?s +b$"
  # every status starts where STATUS does, after two spaces
  [ "$(printf '%s\n' "${lines[@]}" | awk 'NR == 1 { c = index($0, "STATUS") }
    { print (substr($0, c - 2, 2) == "  " && substr($0, c, 1) != " ") }' | sort -u)" = 1 ]

  # filters
  run zdm runs "${S[@]}" --runbook failer --output json
  assert_success
  [ "$(echo "$output" | jq -r '[.[].run] | join(",")')" = "$failed" ]
  run zdm runs "${S[@]}" --status rolled_back
  assert_success
  [ "${#lines[@]}" -eq 2 ]
  assert_line --index 1 --partial "$failed"
  run zdm runs "${S[@]}" --status succeeded --output json
  [ "$(echo "$output" | jq length)" = 3 ]
  run zdm runs "${S[@]}" --limit 1 --output json
  [ "$(echo "$output" | jq -r '[.[].run] | join(",")')" = "$newest" ]
  run zdm runs "${S[@]}" --since 2000-01-01
  [ "${#lines[@]}" -eq 5 ]
  run zdm runs "${S[@]}" --since "$(date -u -d tomorrow +%F)"
  assert_success
  assert_output --regexp "^no runs match in .*$"
  [ "${#lines[@]}" -eq 1 ]
  run zdm runs "${S[@]}" --since "$(date -u -d '+1 hour' +%FT%T%:z)" --output json
  assert_success
  [ "$output" = "[]" ]
  # a time with an offset is the same instant: the newest run's own start
  at="$(jq -r '.[0].started' "$T/all.json")"
  run zdm runs "${S[@]}" --since "$(date -u -d "$at" '+%FT%T.%3N+00:00')" --output json
  [ "$(echo "$output" | jq -r '.[0].run')" = "$newest" ]
  run zdm runs "${S[@]}" --runbook nosuch
  assert_success
  assert_output --regexp "^no runs of runbook 'nosuch' in "
}

@test "runs (state dir): newest first; status, step, actor, host; --runbook --status --since --limit; json keys" {
  use_state file
  check_listing
}

@test "runs (PostgreSQL): newest first; status, step, actor, host; --runbook --status --since --limit; json keys" {
  use_state pg
  check_listing
}

check_live_and_crashed() {
  holder_runbook live
  two_steps crash
  # killed right after step a ended (between steps): stale; during b: in_doubt
  ZDM_TEST_CRASH_AFTER_RECORD=3 run zdm run "$T/crash.yml" "${S[@]}"
  [ "$status" -eq 137 ]
  stale="$(run_of crash)"
  ZDM_TEST_CRASH_AFTER_RECORD=4 run zdm run "$T/crash.yml" "${S[@]}"
  [ "$status" -eq 137 ]
  start_holder live
  live="$(run_of live)"
  run zdm runs "${S[@]}" --output json
  assert_success
  echo "$output" >"$T/now.json"
  [ "$(jq -r --arg r "$live" '.[] | select(.run == $r) | .status + " " + .step' "$T/now.json")" = "running hold" ]
  [ "$(jq -r --arg r "$stale" '.[] | select(.run == $r) | .status + " " + .step' "$T/now.json")" = "stale a" ]
  [ "$(jq -r --arg r "$stale" '[.[] | select(.runbook == "crash" and .run != $r) | .status + " " + .step] | join(",")' "$T/now.json")" = "in_doubt b" ]
  run zdm runs "${S[@]}" --status running
  assert_success
  [ "${#lines[@]}" -eq 2 ]
  assert_line --index 1 --regexp "^$live  live +running "
  run zdm runs "${S[@]}" --status in_doubt --output json
  [ "$(echo "$output" | jq -r '.[].runbook')" = crash ]
  # the holder dies mid-step: no live zdm holds the run now
  kill -9 "$HOLDER"
  wait "$HOLDER" || true
  run zdm runs "${S[@]}" --runbook live --output json
  [ "$(echo "$output" | jq -r '.[0].status')" = in_doubt ]
  touch "$T/release"
}

@test "runs (state dir): a live run is running; killed between steps stale, during a step in_doubt" {
  use_state file
  check_live_and_crashed
}

@test "runs (PostgreSQL): a live run is running; killed between steps stale, during a step in_doubt" {
  use_state pg
  check_live_and_crashed
}

@test "runs (PostgreSQL): the summaries are the journal's: deleted, zdm state init makes them again the same" {
  use_state pg
  two_steps demo
  two_steps failer fail
  zdm run "$T/demo.yml" "${S[@]}"
  run zdm run "$T/failer.yml" "${S[@]}"
  [ "$status" -eq 1 ]
  ZDM_TEST_CRASH_AFTER_RECORD=2 run zdm run "$T/demo.yml" "${S[@]}"
  [ "$status" -eq 137 ]
  run zdm runs "${S[@]}" --output json
  assert_success
  before="$output"
  [ "$(echo "$before" | jq -r '[.[].status] | join(",")')" = "in_doubt,rolled_back,succeeded" ]
  # the summary row is written with each record: as many records as the journal has
  [ "$(sql "SELECT string_agg(r.records::text || '=' || j.n::text, ',' ORDER BY r.run_id) FROM zdm.runs r
    JOIN (SELECT run_id, count(*) AS n FROM zdm.journal GROUP BY run_id) j USING (run_id)")" = \
    "$(sql "SELECT string_agg(n::text || '=' || n::text, ',' ORDER BY run_id) FROM (SELECT run_id, count(*) AS n FROM zdm.journal GROUP BY run_id) x")" ]
  sql "DELETE FROM zdm.runs" >/dev/null
  run zdm runs "${S[@]}"
  assert_output --regexp "^no runs in "
  run zdm state init "$URL"
  assert_success
  assert_output --partial "(summarised 3 runs kept before)"
  run zdm runs "${S[@]}" --output json
  assert_success
  [ "$output" = "$before" ]
  run zdm state init "$URL"
  assert_success
  refute_output --partial "summarised"
  # a state made before the summaries: told what to run, nothing done
  sql "DROP TABLE zdm.runs" >/dev/null
  run zdm run "$T/demo.yml" "${S[@]}"
  [ "$status" -eq 2 ]
  assert_output --partial "has no run summaries (zdm.runs) yet"
  assert_output --partial "zdm state init URL"
  [ "$(sql "SELECT count(DISTINCT run_id) FROM zdm.journal")" = 3 ]
  run zdm state init "$URL"
  assert_success
  run zdm runs "${S[@]}" --output json
  [ "$output" = "$before" ]
}

# ---- zdm lock status ----------------------------------------------------------

check_lock_status() {
  holder_runbook live
  run zdm lock status live "${S[@]}"
  assert_success
  assert_output "runbook 'live': free"
  run zdm lock status live "${S[@]}" --output json
  assert_success
  [ "$(echo "$output" | jq -c .)" = '{"runbook":"live","lock":"free","holder":null,"last_holder":null}' ]
  start_holder live
  id="$(run_of live)"
  run zdm lock status live "${S[@]}"
  assert_success
  assert_output --regexp "^runbook 'live': held by pid $HOLDER on host '$(hostname)', actor $(id -un), run $id, since [0-9-]+T[0-9:.]+Z$1$"
  run zdm lock status live "${S[@]}" --output json
  assert_success
  echo "$output" >"$T/held.json"
  [ "$(jq -r '.lock, .holder.pid, .holder.host, .holder.actor, .holder.run' "$T/held.json" | tr '\n' ,)" = \
    "held,$HOLDER,$(hostname),$(id -un),$id," ]
  [ "$(jq -r 'has("last_holder")' "$T/held.json")" = false ]
  # the holder is killed: the lock is free at once; its record is the last holder
  kill -9 "$HOLDER"
  wait "$HOLDER" || true
  run zdm lock status live "${S[@]}"
  assert_success
  assert_output --regexp "^runbook 'live': free \(last held by pid $HOLDER on host '$(hostname)', actor $(id -un), run $id, since .*\)$"
  run zdm lock status live "${S[@]}" --output json
  [ "$(echo "$output" | jq -r '.lock, .holder, .last_holder.pid' | tr '\n' ,)" = "free,null,$HOLDER," ]
  touch "$T/release"
}

@test "lock status (state dir): free, held by pid/host/actor/run/since, free again with its last holder when killed" {
  use_state file
  check_lock_status ""
}

@test "lock status (PostgreSQL): free, held (with the lock epoch, from pg_locks), free again when killed" {
  use_state pg
  check_lock_status ", epoch 1"
  [ "$(jq -r '.holder.epoch' "$T/held.json")" = 1 ]
  # held in pg_locks by a session the lock row does not name: held, no details
  rm -f "$T/live.started" "$T/release"
  start_holder live
  sql "UPDATE zdm.locks SET backend_pid = 1 WHERE runbook = 'live'" >/dev/null
  run zdm lock status live "${S[@]}"
  assert_success
  assert_output "runbook 'live': held by another zdm, which has not said who it is yet"
  touch "$T/release"
  wait "$HOLDER" || true
}

# ---- --lock-timeout -------------------------------------------------------------

check_lock_wait() {
  holder_runbook live
  start_holder live
  holder_run="$(run_of live)"
  "$ZDM_BIN" run "$T/live.yml" "${S[@]}" --lock-timeout 30s >"$T/waiter.out" 2>"$T/waiter.err" 3>&- &
  waiter=$!
  poll 200 0.05 grep -q "waiting up to 30.0s for the run lock" "$T/waiter.err"
  grep -q "runbook 'live' is locked by pid $HOLDER on host '$(hostname)' (run $holder_run" "$T/waiter.err"
  # still waiting, nothing of it journaled yet
  kill -0 "$waiter"
  [ "$(zdm runs "${S[@]}" --output json | jq length)" = 1 ]
  touch "$T/release"
  wait "$HOLDER"
  wait "$waiter"
  grep -q "succeeded: run" "$T/waiter.out"
  [ "$(grep -c "waiting up to" "$T/waiter.err")" = 1 ] || { cat "$T/waiter.err" >&2; false; }
  run zdm runs "${S[@]}" --output json
  [ "$(echo "$output" | jq -r '[.[].status] | join(",")')" = "succeeded,succeeded" ]
}

@test "--lock-timeout (state dir): the run waits for the holder, naming it, and runs when it finishes" {
  use_state file
  check_lock_wait
}

@test "--lock-timeout (PostgreSQL): the run waits for the holder, naming it, and runs when it finishes" {
  use_state pg
  check_lock_wait
}

check_lock_timeout() {
  holder_runbook live
  start_holder live
  holder_run="$(run_of live)"
  run --separate-stderr zdm run "$T/live.yml" "${S[@]}" --lock-timeout 300ms
  [ "$status" -eq 2 ]
  [ "${#stderr_lines[@]}" -eq 2 ]
  [[ "${stderr_lines[0]}" == "zdm: waiting up to 300ms for the run lock: runbook 'live' is locked by pid $HOLDER on host '$(hostname)' (run $holder_run, since "* ]]
  [[ "${stderr_lines[1]}" == "zdm: still locked after waiting 300ms (--lock-timeout): runbook 'live' is locked by pid $HOLDER on host '$(hostname)' (run $holder_run, since "*"; wait for that run to finish or stop it" ]]
  # without it: at once, as before
  run --separate-stderr zdm run "$T/live.yml" "${S[@]}"
  [ "$status" -eq 2 ]
  [[ "$stderr" == "zdm: runbook 'live' is locked by pid $HOLDER"* ]]
  # resume and rollback wait too, and give up the same way
  run --separate-stderr zdm rollback "$holder_run" "${S[@]}" --lock-timeout 200ms
  [ "$status" -eq 2 ]
  [[ "$stderr" == *"still locked after waiting 200ms (--lock-timeout): runbook 'live' is locked by pid $HOLDER"* ]]
  # a signal ends the wait: said as such, not as the timeout
  "$ZDM_BIN" run "$T/live.yml" "${S[@]}" --lock-timeout 30s >/dev/null 2>"$T/int.err" 3>&- &
  local waiter=$! rc=0
  poll 400 0.05 grep -q "waiting up to 30.0s for the run lock" "$T/int.err"
  kill -INT "$waiter"
  wait "$waiter" || rc=$?
  [ "$rc" -eq 2 ] || { cat "$T/int.err" >&2; echo "exit $rc" >&2; false; }
  grep -q "zdm: interrupted while waiting for the run lock: runbook 'live' is locked by pid $HOLDER" "$T/int.err"
  [ -z "$(grep 'after waiting 30' "$T/int.err")" ]
  [ "$(zdm runs "${S[@]}" --output json | jq -r '[.[].run] | join(",")')" = "$holder_run" ]
  touch "$T/release"
  wait "$HOLDER"
}

@test "--lock-timeout (state dir): a holder that never lets go: exit 2 naming it; nothing journaled" {
  use_state file
  check_lock_timeout
}

@test "--lock-timeout (PostgreSQL): a holder that never lets go: exit 2 naming it; nothing journaled" {
  use_state pg
  check_lock_timeout
}

@test "drill --lock-timeout: waits for the holder like run" {
  use_state file
  holder_runbook live
  cat >>"$T/live.yml" <<EOF
probes:
  - id: p
    uses: exec
    read_only: true
    with: {command: ["true"]}
EOF
  start_holder live
  run --separate-stderr zdm drill "$T/live.yml" "${S[@]}" --lock-timeout 200ms
  [ "$status" -eq 2 ]
  [[ "$stderr" == *"zdm drill: waiting up to 200ms for the run lock: runbook 'live' is locked by pid $HOLDER"* ]]
  assert_output --partial "still locked after waiting 200ms (--lock-timeout)"
  touch "$T/release"
  wait "$HOLDER"
}

# ---- bad input -----------------------------------------------------------------

@test "runs, lock status, --lock-timeout: bad values exit 2 naming the flag; nothing touched" {
  use_state file
  two_steps demo
  run zdm run "$T/demo.yml" "${S[@]}" --lock-timeout soon
  [ "$status" -eq 2 ]
  assert_output --partial "--lock-timeout 'soon': not a duration"
  for cmd in resume rollback; do
    run zdm "$cmd" "$T/demo.yml" "${S[@]}" --lock-timeout -1s
    [ "$status" -eq 2 ]
    assert_output --partial "--lock-timeout '-1s'"
  done
  [ ! -e "$T/state" ]
  run zdm runs "${S[@]}" --status sideways
  [ "$status" -eq 2 ]
  assert_output "zdm runs: --status 'sideways': not a status; use one of: running, rolling_back, stale, in_doubt, paused, interrupted, succeeded, failed, aborted, rolled_back, rollback_failed, unreadable"
  for v in 2026-02-30 yesterday 2026-11-01T25:00 "2026-11-01 10:00 +02"; do
    run zdm runs "${S[@]}" --since "$v"
    [ "$status" -eq 2 ]
    assert_output --partial "--since '$v': not a date or time"
  done
  for v in 0 -3 ten 5x; do
    run zdm runs "${S[@]}" --limit "$v"
    [ "$status" -eq 2 ]
    assert_output --partial "--limit '$v'"
  done
  run zdm runs "${S[@]}" --output yaml
  [ "$status" -eq 2 ]
  run zdm runs extra "${S[@]}"
  [ "$status" -eq 2 ]
  assert_output --partial "usage: zdm runs"
  run zdm run "$T/demo.yml" "${S[@]}" --status succeeded
  [ "$status" -eq 2 ]
  assert_output --partial "option '--status' does not apply here"
  run zdm lock status "${S[@]}"
  [ "$status" -eq 2 ]
  assert_output --partial "usage: zdm lock status NAME"
  run zdm lock grab demo "${S[@]}"
  [ "$status" -eq 2 ]
  assert_output --partial "zdm lock: unknown subcommand 'grab'"
  run zdm lock status ../demo "${S[@]}"
  [ "$status" -eq 2 ]
  assert_output --partial "runbook name '../demo' cannot name a lock file"
  run zdm lock status demo "${S[@]}" --lock-timeout 1s
  [ "$status" -eq 2 ]
  [ ! -e "$T/state" ]
}
