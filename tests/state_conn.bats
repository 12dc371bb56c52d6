#!/usr/bin/env bats
# A PostgreSQL state (core/store_pg.c, docs/state.md "A lost connection")
# that goes away while a run goes on, against a real PostgreSQL 15 of this
# file's own (tests/servers/postgres.bash), restarted and stopped under the
# run: zdm connects again for --state-timeout, takes its run lock back only
# if nobody took it meanwhile, finds out whether a cut-off append committed
# (never twice, never lost), and otherwise stops with exit 4 with the step in
# progress in doubt for `zdm resume`, as after a crash.

bats_require_minimum_version 1.5.0
load helper
load servers/postgres

setup_file() {
  # the tests restart and stop this file's server: one at a time
  export BATS_NO_PARALLELIZE_WITHIN_FILE=true
  pg_start conn
}

teardown_file() {
  pg_stop_all
}

# this test's own database, zdm's schema in it; URL and PGPASSWORD set
newstate() {
  DB="t${BATS_TEST_NUMBER}"
  pg_createdb conn "$DB"
  URL="$(pg_uri conn "$DB")"
  export PGPASSWORD="$PG_PASSWORD"
  run zdm state init "$URL"
  assert_success
}

sql() {
  pg_psql conn "$DB" -c "$1"
}

# the events of run $1 in the state, "event step" per line, in seq order
pg_events() {
  sql "SELECT (record::jsonb)->>'event' || coalesce(' ' || ((record::jsonb)->>'step'), '')
    FROM zdm.journal WHERE run_id = '$1' ORDER BY seq"
}

# the seqs of run $1 are 1..count, each once (the primary key says once;
# this says none is missing and the record's own seq is its row's)
seq_contiguous() {
  [ "$(sql "SELECT count(*) = max(seq) AND min(seq) = 1 AND bool_and((record::jsonb)->>'seq' = seq::text)
    FROM zdm.journal WHERE run_id = '$1'")" = t ]
}

run_id() {
  sql "SELECT run_id FROM zdm.journal WHERE seq = 1 ORDER BY written DESC LIMIT 1"
}

# wait (up to 10 s) until the state holds record "$1" (event [step]) of any run
await_record() {
  local i
  for i in $(seq 200); do
    [ "$(sql "SELECT count(*) FROM zdm.journal WHERE (record::jsonb)->>'event' || coalesce(' ' ||
      ((record::jsonb)->>'step'), '') = '$1'")" -ge 1 ] && return 0
    sleep 0.05
  done
  echo "no record '$1' in 10 s" >&2
  return 1
}

# a 3-step runbook: one (marks), two (marks, then waits for $T/go while it
# does not exist, at most 30 s), three (marks)
three_steps() {
  cat >"$T/step.sh" <<'EOF'
#!/bin/sh
echo "$1" >>"$2/marks"
if [ "$1" = two ]; then
  i=0
  while [ ! -e "$2/go" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
fi
EOF
  chmod +x "$T/step.sh"
  runbook <<EOF
zdm: 1
name: pgconn
steps:
  - id: one
    uses: exec
    with: {command: ["$T/step.sh", "one", "$T"]}
  - id: two
    uses: exec
    with: {command: ["$T/step.sh", "two", "$T"]}
  - id: three
    uses: exec
    with: {command: ["$T/step.sh", "three", "$T"]}
EOF
}

ALL="run.started,step.started one,step.succeeded one,step.started two,step.succeeded two,step.started three,step.succeeded three,run.finished,"

@test "state conn: the state server restarted while a step runs: zdm connects again, takes its lock back and finishes, every record once" {
  newstate
  three_steps
  "$ZDM_BIN" run "$T/rb.yml" --state "$URL" >"$T/a.out" 2>&1 &
  a=$!
  await_record "step.started two"
  id="$(run_id)"
  [ "$(sql "SELECT epoch FROM zdm.locks WHERE runbook = 'pgconn'")" = 1 ]
  pg_restart conn
  touch "$T/go"
  sa=0
  wait "$a" || sa=$?
  cat "$T/a.out" >&2
  [ "$sa" -eq 0 ]
  grep -q "succeeded: run $id" "$T/a.out"
  grep -q "^state   lost the state database: the connection to the state database .* was lost" "$T/a.out"
  grep -q "connecting again until [0-9:]* (--state-timeout 30.0s); no step starts meanwhile" "$T/a.out"
  grep -q "^state   back: connected again to .*/$DB (schema zdm) after .*, the run lock still this zdm's" "$T/a.out"
  # every step once; every record once, in order
  [ "$(tr '\n' , <"$T/marks")" = "one,two,three," ]
  [ "$(pg_events "$id" | tr '\n' ,)" = "$ALL" ]
  seq_contiguous "$id"
  # the lock was taken back at the next epoch, and released at the end
  [ "$(sql "SELECT epoch || ' ' || (backend_pid IS NULL) FROM zdm.locks WHERE runbook = 'pgconn'")" = "2 true" ]
  mkdir "$T/elsewhere"
  cd "$T/elsewhere"
  run zdm audit verify --state "$URL" "$id"
  assert_success
  assert_output --partial ": ok, 8 records"
}

@test "state conn: the answer to a COMMIT lost: the record is found committed and not written twice" {
  newstate
  three_steps
  touch "$T/go"
  # record 5 (step.succeeded two) commits, then the connection is cut
  ZDM_TEST_STATE_LOSS_AFTER_COMMIT=5 run zdm run "$T/rb.yml" --state "$URL"
  assert_success
  assert_output --partial "lost the state database: ZDM_TEST_STATE_LOSS_AFTER_COMMIT"
  assert_output --partial "back: connected again"
  id="$(run_id)"
  [ "$(tr '\n' , <"$T/marks")" = "one,two,three," ]
  [ "$(pg_events "$id" | tr '\n' ,)" = "$ALL" ]
  seq_contiguous "$id"
  [ "$(sql "SELECT count(*) FROM zdm.journal WHERE run_id = '$id' AND (record::jsonb)->>'event' = 'step.succeeded' AND (record::jsonb)->>'step' = 'two'")" = 1 ]
  run zdm audit verify --state "$URL" "$id"
  assert_success
}

@test "state conn: the server down longer than --state-timeout: exit 4, no further step; resume elsewhere finds the step in doubt and finishes" {
  newstate
  three_steps
  "$ZDM_BIN" run "$T/rb.yml" --state "$URL" --state-timeout 3s >"$T/a.out" 2>&1 &
  a=$!
  await_record "step.started two"
  id="$(run_id)"
  pg_down conn
  touch "$T/go"
  sa=0
  wait "$a" || sa=$?
  pg_up conn	# first: the next tests need it whatever this one finds
  cat "$T/a.out" >&2
  [ "$sa" -eq 4 ]
  grep -q "(--state-timeout 3.0s); no step starts meanwhile" "$T/a.out"
  grep -q "^zdm: lost the state database .*/$DB (schema zdm): not connected again within 3.0s (--state-timeout): .*; step.succeeded may not have been written, and this zdm stops here: it appends nothing more and starts no other step (zdm status $id)" "$T/a.out"
  # two ran, three never started
  [ "$(tr '\n' , <"$T/marks")" = "one,two," ]
  [ "$(pg_events "$id" | tr '\n' ,)" = "run.started,step.started one,step.succeeded one,step.started two," ]
  # elsewhere: as after a crash, the step in progress is in doubt
  mkdir "$T/b" "$T/home2"
  cd "$T/b"
  HOME="$T/home2" run zdm resume "$id" --state "$URL"
  [ "$status" -eq 5 ]
  assert_output --partial "step 'two' is in doubt: it started but zdm stopped before recording how it ended"
  [ "$(tr '\n' , <"$T/marks")" = "one,two," ]
  HOME="$T/home2" run zdm resume "$id" --state "$URL" --in-doubt two=skip
  assert_success
  assert_output --partial "succeeded: run $id"
  # every effect once: two was taken as done, not run again
  [ "$(tr '\n' , <"$T/marks")" = "one,two,three," ]
  [ "$(pg_events "$id" | tr '\n' ,)" = "run.started,step.started one,step.succeeded one,step.started two,run.resumed,step.succeeded two,step.started three,step.succeeded three,run.finished," ]
  seq_contiguous "$id"
  HOME="$T/home2" run zdm audit verify --state "$URL" "$id"
  assert_success
}

@test "state conn: step.succeeded committed before the loss: resume after exit 4 goes on without asking" {
  newstate
  three_steps
  touch "$T/go"
  # record 5 (step.succeeded two) commits and the answer is lost; with
  # --state-timeout 0 zdm does not connect again to find out
  ZDM_TEST_STATE_LOSS_AFTER_COMMIT=5 run zdm run "$T/rb.yml" --state "$URL" --state-timeout 0
  [ "$status" -eq 4 ]
  assert_output --partial "(--state-timeout 0: not tried again); step.succeeded may not have been written"
  refute_output --partial "connecting again"
  id="$(run_id)"
  [ "$(tr '\n' , <"$T/marks")" = "one,two," ]
  mkdir "$T/b"
  cd "$T/b"
  run zdm resume "$id" --state "$URL"
  assert_success
  [ "$(tr '\n' , <"$T/marks")" = "one,two,three," ]
  [ "$(pg_events "$id" | tr '\n' ,)" = "run.started,step.started one,step.succeeded one,step.started two,step.succeeded two,run.resumed,step.started three,step.succeeded three,run.finished," ]
  seq_contiguous "$id"
  run zdm audit verify --state "$URL" "$id"
  assert_success
}

@test "state conn: the run lock taken by another zdm while this one was cut off: exit 4 naming it, nothing appended" {
  newstate
  three_steps
  "$ZDM_BIN" run "$T/rb.yml" --state "$URL" >"$T/a.out" 2>&1 &
  a=$!
  await_record "step.started two"
  id="$(run_id)"
  pg_restart conn
  # B, elsewhere, takes the lock A's lost session let go (and stops: two is
  # still running)
  mkdir "$T/b"
  cd "$T/b"
  run zdm resume "$id" --state "$URL"
  [ "$status" -eq 2 ]
  assert_output --partial "step 'two' is still running"
  [ "$(sql "SELECT epoch FROM zdm.locks WHERE runbook = 'pgconn'")" = 2 ]
  n="$(sql "SELECT count(*) FROM zdm.journal WHERE run_id = '$id'")"
  touch "$T/go"
  sa=0
  wait "$a" || sa=$?
  cat "$T/a.out" >&2
  [ "$sa" -eq 4 ]
  grep -q "^zdm: lost the run lock of runbook 'pgconn' to another zdm (pid [0-9]* on host '.*', run $id, since .*, since released), which took it while this zdm was cut off from the state database .*; step.succeeded may not have been written, and this zdm stops here" "$T/a.out"
  # nothing appended after it connected again, nothing more run
  [ "$(sql "SELECT count(*) FROM zdm.journal WHERE run_id = '$id'")" = "$n" ]
  [ "$(tr '\n' , <"$T/marks")" = "one,two," ]
  [ "$(sql "SELECT epoch FROM zdm.locks WHERE runbook = 'pgconn'")" = 2 ]
  run zdm resume "$id" --state "$URL" --in-doubt two=skip
  assert_success
  [ "$(tr '\n' , <"$T/marks")" = "one,two,three," ]
  seq_contiguous "$id"
  run zdm audit verify --state "$URL" "$id"
  assert_success
}

@test "state conn: --state-timeout: bad values exit 2 naming the flag; harmless with a state dir; not taken where nothing runs" {
  three_steps
  touch "$T/go"
  for bad in abc -1s 10 "" 1x 25h; do
    run zdm run "$T/rb.yml" --state-timeout "$bad" --state-dir "$T/st"
    [ "$status" -eq 2 ]
    assert_output --partial "zdm run: --state-timeout '$bad': a duration such as 30s, 500ms or 2m (at most 24h; 0: do not retry a lost state connection)"
  done
  [ ! -e "$T/st" ]
  [ ! -e "$T/marks" ]
  run zdm resume --state-timeout soon
  [ "$status" -eq 2 ]
  assert_output --partial "zdm resume: --state-timeout 'soon'"
  run zdm status --state-timeout 5s
  [ "$status" -eq 2 ]
  assert_output --partial "zdm status: option '--state-timeout' does not apply here"
  run zdm run "$T/rb.yml" --state-timeout
  [ "$status" -eq 2 ]
  assert_output --partial "missing value for '--state-timeout'"
  # a state dir never loses its connection: the flag changes nothing
  run zdm run "$T/rb.yml" --state-timeout 0 --state-dir "$T/st"
  assert_success
  run zdm run "$T/rb.yml" --state-timeout 1m30s --state-dir "$T/st"
  assert_success
  [ "$(tr '\n' , <"$T/marks")" = "one,two,three,one,two,three," ]
  run zdm run --help
  assert_output --partial "--state-timeout D  a connection to a PostgreSQL state lost during the run is"
}
