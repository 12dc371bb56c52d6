#!/usr/bin/env bats
# The PostgreSQL state backend (--state URL, ZDM_STATE; core/store_pg.c,
# docs/state.md) against a real PostgreSQL 15 made by the test
# (tests/servers/postgres.bash; one cluster for the file, one database per
# test): a run kept there, read from another cwd and HOME; a crash during a
# step resumed elsewhere; one run at a time per runbook (a session advisory
# lock, free as soon as its holder dies); a holder that lost its lock appends
# nothing (fencing); a least-privilege runner role; no password in the URL.

bats_require_minimum_version 1.5.0
load helper
load servers/postgres

setup_file() {
  pg_start st
}

teardown_file() {
  pg_stop_all
}

# this test's own database, zdm's schema in it; URL and PGPASSWORD set
newstate() {
  DB="t${BATS_TEST_NUMBER}"
  pg_createdb st "$DB"
  URL="$(pg_uri st "$DB")"
  export PGPASSWORD="$PG_PASSWORD"
  run zdm state init "$URL"
  assert_success
  assert_output --partial "zdm state schema version 1 ready"
}

sql() {
  pg_psql st "$DB" -c "$1"
}

# the events of run $1 in the state, "event step" per line
pg_events() {
  sql "SELECT (record::jsonb)->>'event' || coalesce(' ' || ((record::jsonb)->>'step'), '')
    FROM zdm.journal WHERE run_id = '$1' ORDER BY seq"
}

# the id of the only (or newest) run in the state
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
# does not exist, at most 20 s), three (marks)
three_steps() {
  cat >"$T/step.sh" <<'EOF'
#!/bin/sh
echo "$1" >>"$2/marks"
if [ "$1" = two ]; then
  i=0
  while [ ! -e "$2/go" ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
fi
EOF
  chmod +x "$T/step.sh"
  runbook <<EOF
zdm: 1
name: pgdemo
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

@test "state pg: a run kept in PostgreSQL; status, log and audit verify from another cwd and HOME" {
  newstate
  three_steps
  touch "$T/go"
  run zdm run "$T/rb.yml" --state "$URL"
  assert_success
  assert_output --partial "succeeded: run"
  id="$(run_id)"
  [ -n "$id" ]
  # nothing was written beside the runbook
  [ ! -e "$T/.zdm" ]
  [ "$(pg_events "$id" | tr '\n' ,)" = "run.started,step.started one,step.succeeded one,step.started two,step.succeeded two,step.started three,step.succeeded three,run.finished," ]
  # each row is the record as the file backend writes the line: keys sorted, prev and hash
  [ "$(sql "SELECT count(*) FROM zdm.journal WHERE run_id = '$id' AND record LIKE '{%\"hash\":\"%\"prev\":\"%' AND (record::jsonb)->>'seq' = seq::text")" = 8 ]
  mkdir "$T/elsewhere" "$T/home2"
  cd "$T/elsewhere"
  HOME="$T/home2" ZDM_STATE="$URL" run zdm status "$id"
  assert_success
  assert_output --partial "state    succeeded"
  assert_output --partial "three"
  HOME="$T/home2" run zdm log "$id" --state "$URL"
  assert_success
  assert_output --partial "run.finished"
  HOME="$T/home2" run zdm audit verify --state "$URL"
  assert_success
  assert_output --partial ": ok, 8 records, chain sha256"
  assert_output --partial "1 journal: 1 complete, 0 incomplete, 0 broken, 0 unreadable"
  HOME="$T/home2" run zdm audit verify --state "$URL" "$id"
  assert_success
  # the runbook path names its newest run in the state too
  run zdm status "$T/rb.yml" --state "$URL"
  assert_success
  assert_output --partial "$id"
  # the rows are append-only, even for their owner
  run sql "UPDATE zdm.journal SET record = record WHERE run_id = '$id'"
  assert_failure
  assert_output --partial "append-only"
}

@test "state pg: killed during step 2, resumed from another cwd and HOME: step 1 is not repeated, step 2 is in doubt (exit 5)" {
  newstate
  three_steps
  # SIGKILL right after record 4 (step.started two) is committed: the step never ran
  ZDM_TEST_CRASH_AFTER_RECORD=4 run zdm run "$T/rb.yml" --state "$URL"
  [ "$status" -eq 137 ]
  id="$(run_id)"
  [ "$(pg_events "$id" | tail -1)" = "step.started two" ]
  [ "$(cat "$T/marks")" = one ]
  mkdir "$T/b" "$T/homeb"
  cd "$T/b"
  HOME="$T/homeb" run zdm resume "$id" --state "$URL"
  [ "$status" -eq 5 ]
  assert_output --partial "two"
  HOME="$T/homeb" run zdm status "$id" --state "$URL"
  assert_output --partial "no zdm process holds the lock"
  touch "$T/go"
  HOME="$T/homeb" run zdm resume "$id" --state "$URL" --in-doubt two=retry
  assert_success
  # one ran once, two once (the crash came before it acted), three once
  [ "$(tr '\n' , <"$T/marks")" = "one,two,three," ]
  [ "$(pg_events "$id" | grep -c '^step.started one')" = 1 ]
  [ "$(pg_events "$id" | tail -1)" = "run.finished" ]
  run zdm audit verify --state "$URL" "$id"
  assert_success
}

@test "state pg: SIGKILL of the holder mid-step: the lock is free again at once (a session lock), the step in doubt" {
  newstate
  three_steps
  "$ZDM_BIN" run "$T/rb.yml" --state "$URL" >"$T/a.out" 2>&1 &
  a=$!
  await_record "step.started two"
  id="$(run_id)"
  # the holder is named while it runs
  run zdm status "$id" --state "$URL"
  assert_output --partial "a zdm process holds the lock: running"
  kill -9 "$a"
  wait "$a" || true
  # the step's whole process group (its shell's sleep too, which carries
  # the step's tag: resume would take the step as still running)
  for p in $(pgrep -f "$T/step.sh"); do
    kill -9 -- "-$(ps -o pgid= "$p" | tr -d ' ')" 2>/dev/null || true
  done
  for i in $(seq 100); do pgrep -f "$T/step.sh" >/dev/null || break; sleep 0.05; done
  # free without any unlock: the server ended the session with the process
  ok=
  for i in $(seq 40); do
    [ "$(sql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")" = 0 ] && { ok=1; break; }
    sleep 0.05
  done
  [ -n "$ok" ]
  run zdm status "$id" --state "$URL"
  assert_output --partial "no zdm process holds the lock: it stopped"
  mkdir "$T/b"
  cd "$T/b"
  run zdm resume "$id" --state "$URL"
  assert_equal "$status" 5
  assert_output --partial "two"
}

@test "state pg: two runs of one runbook at once: exactly one runs, the other exits 2 naming the holder" {
  newstate
  three_steps
  "$ZDM_BIN" run "$T/rb.yml" --state "$URL" >"$T/a.out" 2>&1 &
  a=$!
  "$ZDM_BIN" run "$T/rb.yml" --state "$URL" >"$T/b.out" 2>&1 &
  b=$!
  await_record "step.started two"
  sleep 0.3
  touch "$T/go"
  sa=0 sb=0
  wait "$a" || sa=$?
  wait "$b" || sb=$?
  echo "a=$sa b=$sb" >&2
  cat "$T/a.out" "$T/b.out" >&2
  [ "$(printf '%s\n' "$sa" "$sb" | sort | tr '\n' ,)" = "0,2," ]
  if [ "$sa" -eq 2 ]; then loser="$T/a.out"; else loser="$T/b.out"; fi
  grep -q "runbook 'pgdemo' is locked by pid [0-9]* on host '$(hostname)' (run 2" "$loser"
  # one run in the state, its steps once each
  [ "$(sql "SELECT count(DISTINCT run_id) FROM zdm.journal")" = 1 ]
  [ "$(tr '\n' , <"$T/marks")" = "one,two,three," ]
  # a third, while one runs, is refused the same way
  rm -f "$T/go"
  "$ZDM_BIN" run "$T/rb.yml" --state "$URL" >"$T/c.out" 2>&1 &
  c=$!
  for i in $(seq 200); do
    [ "$(sql "SELECT count(DISTINCT run_id) FROM zdm.journal")" = 2 ] &&
      [ "$(sql "SELECT count(*) FROM zdm.locks WHERE backend_pid IS NOT NULL")" = 1 ] && break
    sleep 0.05
  done
  holder="$(sql "SELECT format('%s on host ''%s'' (run %s', pid, host, run_id) FROM zdm.locks")"
  run zdm run "$T/rb.yml" --state "$URL"
  [ "$status" -eq 2 ]
  assert_output --partial "is locked by pid $holder"
  touch "$T/go"
  wait "$c"
}

@test "state pg: a holder frozen while its connection was cut and another zdm resumed appends nothing and exits 4" {
  newstate
  runbook <<EOF
zdm: 1
name: fence
steps:
  - id: one
    uses: exec
    with: {command: ["true"]}
  - id: two
    uses: wait
    with: {duration: 2s}
  - id: three
    uses: exec
    with: {command: ["sh", "-c", "echo three >>$T/marks"]}
EOF
  "$ZDM_BIN" run "$T/rb.yml" --state "$URL" >"$T/a.out" 2>&1 &
  a=$!
  await_record "step.started two"
  kill -STOP "$a"
  id="$(run_id)"
  last_a="$(sql "SELECT max(seq) FROM zdm.journal WHERE run_id = '$id'")"
  # its connection is cut (as a network partition or a server-side kill would)
  [ "$(sql "SELECT pg_terminate_backend(backend_pid) FROM zdm.locks WHERE runbook = 'fence'")" = t ]
  for i in $(seq 40); do
    [ "$(sql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")" = 0 ] && break
    sleep 0.05
  done
  mkdir "$T/b"
  cd "$T/b"
  run zdm resume "$id" --state "$URL"
  assert_success
  [ "$(cat "$T/marks")" = three ]
  n_b="$(sql "SELECT max(seq) FROM zdm.journal WHERE run_id = '$id'")"
  kill -CONT "$a"
  sa=0
  wait "$a" || sa=$?
  cat "$T/a.out" >&2
  [ "$sa" -eq 4 ]
  grep -q "lost the run lock" "$T/a.out"
  # A appended nothing after B, acted on nothing further
  [ "$(sql "SELECT max(seq) FROM zdm.journal WHERE run_id = '$id'")" = "$n_b" ]
  [ "$(cat "$T/marks")" = three ]
  [ "$(pg_events "$id" | tail -1)" = "run.finished" ]
  [ "$(sql "SELECT (record::jsonb)->>'event' FROM zdm.journal WHERE run_id = '$id' AND seq = $((last_a + 1))")" = run.resumed ]
  run zdm audit verify --state "$URL" "$id"
  assert_success
}

@test "state pg: a least-privilege runner role runs; it cannot UPDATE or DELETE journal rows; a superuser's edit is caught" {
  newstate
  sql "CREATE ROLE zdm_runner LOGIN PASSWORD 'runner-pw-4711';
    GRANT USAGE ON SCHEMA zdm TO zdm_runner;
    GRANT SELECT ON zdm.meta TO zdm_runner;
    GRANT SELECT, INSERT ON zdm.journal TO zdm_runner;
    GRANT SELECT, INSERT, UPDATE ON zdm.locks, zdm.runs TO zdm_runner" >/dev/null
  three_steps
  touch "$T/go"
  RURL="postgresql://zdm_runner@127.0.0.1:$(pg_port st)/$DB"
  PGPASSWORD=runner-pw-4711 run zdm run "$T/rb.yml" --state "$RURL"
  assert_success
  refute_output --partial "runner-pw-4711"
  id="$(run_id)"
  PGPASSWORD=runner-pw-4711 run "$PG_BIN/psql" -X -At -h 127.0.0.1 -p "$(pg_port st)" -U zdm_runner -d "$DB" \
    -c "UPDATE zdm.journal SET record = record WHERE run_id = '$id' AND seq = 2"
  assert_failure
  assert_output --partial "permission denied for table journal"
  PGPASSWORD=runner-pw-4711 run "$PG_BIN/psql" -X -At -h 127.0.0.1 -p "$(pg_port st)" -U zdm_runner -d "$DB" \
    -c "DELETE FROM zdm.journal WHERE run_id = '$id'"
  assert_failure
  assert_output --partial "permission denied for table journal"
  [ "$(sql "SELECT count(*) FROM zdm.journal WHERE run_id = '$id'")" = 8 ]
  # a superuser can, past the trigger: the chain says where
  sql "ALTER TABLE zdm.journal DISABLE TRIGGER journal_append_only;
    UPDATE zdm.journal SET record = replace(record, '\"exit_code\":0', '\"exit_code\":9') WHERE run_id = '$id' AND seq = 3"
  run zdm audit verify --state "$URL" "$id"
  [ "$status" -eq 1 ]
  assert_output --partial "$id:3: hash does not match the record"
}

@test "state pg: a password in the state URL or conninfo is refused (exit 2) and never shown; bad input says what to do" {
  three_steps
  port="$(pg_port st)"
  for url in "postgresql://zdm:Sup3rSecretPw@127.0.0.1:$port/postgres" \
      "host=127.0.0.1 port=$port user=zdm password=Sup3rSecretPw dbname=postgres"; do
    run zdm run "$T/rb.yml" --state "$url"
    [ "$status" -eq 2 ]
    assert_output --partial "holds a password"
    assert_output --partial "PGPASSWORD"
    refute_output --partial "Sup3rSecretPw"
    ZDM_STATE="$url" run zdm status
    [ "$status" -eq 2 ]
    refute_output --partial "Sup3rSecretPw"
    run zdm state init "$url"
    [ "$status" -eq 2 ]
    refute_output --partial "Sup3rSecretPw"
  done
  [ ! -e "$T/marks" ]
  # a database without zdm's schema: what to run
  export PGPASSWORD="$PG_PASSWORD"
  run zdm run "$T/rb.yml" --state "$(pg_uri st postgres)"
  [ "$status" -eq 2 ]
  assert_output --partial "no zdm state in"
  assert_output --partial "zdm state init URL"
  run zdm run "$T/rb.yml" --state "$(pg_uri st postgres)" --schema 'Bad-Name'
  [ "$status" -eq 2 ]
  assert_output --partial "--schema 'Bad-Name'"
  [ ! -e "$T/marks" ]
  [ ! -e "$T/.zdm" ]
}

@test "state pg: --schema keeps two states apart in one database; --state PATH is a state dir" {
  newstate
  run zdm state init "$URL" --schema team_b
  assert_success
  three_steps
  touch "$T/go"
  run zdm run "$T/rb.yml" --state "$URL" --schema team_b
  assert_success
  [ "$(sql "SELECT count(*) FROM team_b.journal")" = 8 ]
  [ "$(sql "SELECT count(*) FROM zdm.journal")" = 0 ]
  # the schema from the URL's options (a search_path), as psql would take it
  run zdm status "$T/rb.yml" --state "$URL?options=-csearch_path%3Dteam_b,public"
  assert_success
  assert_output --partial "/t${BATS_TEST_NUMBER}/team_b/"
  ZDM_STATE_SCHEMA=team_b run zdm status "$T/rb.yml" --state "$URL?options=-csearch_path%3Dzdm"
  assert_success
  assert_output --partial "/t${BATS_TEST_NUMBER}/team_b/"
  run zdm status "$T/rb.yml" --state "$URL?options=-csearch_path%3DBad-Name"
  assert_failure 2
  assert_output --partial "search_path in the connection string's options 'Bad-Name'"
  rm "$T/marks"
  run zdm run "$T/rb.yml" --state "$T/st"
  assert_success
  ls "$T"/st/runs/*.jsonl
}

@test "state pg: approve from another cwd while the run waits; resume goes on; an HMAC chain verifies with the key only" {
  newstate
  export ZDM_AUDIT_KEY=k3y-for-this-test
  runbook <<EOF2
zdm: 1
name: appr
steps:
  - id: gate
    uses: approval
    with: {approvers: [alice], message: "ok?"}
  - id: after
    uses: exec
    with: {command: ["sh", "-c", "echo after >>$T/marks"]}
EOF2
  run zdm run "$T/rb.yml" --state "$URL" --non-interactive
  [ "$status" -eq 4 ]
  id="$(run_id)"
  mkdir "$T/laptop"
  cd "$T/laptop"
  ZDM_ACTOR=alice ZDM_STATE="$URL" run zdm approve "$id" gate
  assert_success
  assert_output --partial "approved: step 'gate' of run $id, by alice"
  ZDM_STATE="$URL" run zdm resume "$id"
  assert_success
  [ "$(cat "$T/marks")" = after ]
  run zdm audit verify --state "$URL" "$id"
  assert_success
  assert_output --partial "chain hmac-sha256"
  unset ZDM_AUDIT_KEY
  run zdm audit verify --state "$URL" "$id"
  [ "$status" -eq 2 ]
  assert_output --partial "ZDM_AUDIT_KEY is not set"
}
