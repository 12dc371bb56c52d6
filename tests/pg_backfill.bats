#!/usr/bin/env bats
# db.postgres_backfill and runbooks/expand-contract.yml against a real
# PostgreSQL 15 cluster made by the test (tests/servers/postgres.bash; one
# cluster for the file, one database per test): batches of batch_size rows
# by key, each committed and journaled (backfill.batch); a crash part-way
# resumed by `zdm resume` without redoing a finished batch (every row
# updated exactly once: the SET increments a counter); a `where` predicate
# and gaps in the keys; undo_set on rollback; throttling while a replica
# (pg_receivewal, stopped with SIGSTOP) lags; and the expand/contract
# runbook run end to end and rolled back.

bats_require_minimum_version 1.5.0
load helper
load servers/postgres

setup_file() {
  # one at a time: the throttle tests stop a replica of the shared cluster,
  # which every backfill running beside them would wait for too
  export BATS_NO_PARALLELIZE_WITHIN_FILE=true
  pg_start fill
}

teardown_file() {
  pg_stop_all
}

# a fresh database for this test with a table `items` (id bigint PRIMARY
# KEY, v int, hits int: how often the backfill touched the row, doubled int)
# holding the ids given by the SQL set expression $1 (default 1..1000)
newdb() {
  pg_test_db fill "CREATE TABLE items (id bigint PRIMARY KEY, v int NOT NULL,
      hits int NOT NULL DEFAULT 0, doubled int);
    INSERT INTO items (id, v) SELECT g, g % 97 FROM ${1:-generate_series(1, 1000)} g"
}

# a runbook: one db.postgres_backfill step with `with:` extra lines ($1),
# then optionally a step that always fails ($2 = fail)
fill_runbook() {
  pg_step_runbook fill db.postgres_backfill fill "table: items
key: id
$1" "${2:-}"
}

q() {
  pg_psql fill "$DB" -c "$1"
}

rows_over() { # N: items holds more than N rows
  [ "$(q "SELECT count(*) FROM items")" -gt "$1" ]
}

# the journal says the backfill waited: a throttle with the lag over the
# limit, its end, and the time it waited in the step's outputs
assert_throttled() {
  run jq -r 'select(.event=="backfill.throttle") | .data | (.lag_bytes > .max_lag_bytes)' "$(J)"
  assert_line true
  run jq -s '[.[] | select(.event=="backfill.throttle_end")] | length >= 1' "$(J)"
  assert_output true
  [ "$(jq -r 'select(.event=="step.succeeded") | .data.outputs.throttled_ms' "$(J)")" -gt 0 ]
}

@test "postgres_backfill: batches of batch_size rows by key, each journaled; outputs count them" {
  newdb
  fill_runbook "set: hits = hits + 1, doubled = v * 2
batch_size: 300"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  run jq -r 'select(.event=="backfill.batch") | .data | "\(.batch) \(.from) \(.to) \(.rows)"' "$(J)"
  assert_output "$(printf '1 1 300 300\n2 301 600 300\n3 601 900 300\n4 901 1000 100')"
  run jq -c 'select(.event=="step.succeeded") | .data.outputs | [.batches, .rows, .resumed_batches, .throttled_ms, (.duration_ms >= 0)]' "$(J)"
  assert_output '[4,1000,0,0,true]'
  assert_equal "$(q "SELECT count(*) FROM items WHERE hits = 1 AND doubled = v * 2")" 1000
  run grep -rF "$PG_PASSWORD" "$T/state"
  assert_equal "$status" 1
}

@test "postgres_backfill: a crash after batch 3 is resumed at batch 4: every row updated exactly once" {
  newdb
  fill_runbook "set: hits = hits + 1, doubled = v * 2
batch_size: 100"
  # records: 1 run.started, 2 step.started, 3 backfill.bound, 4..6 backfill.batch 1..3:
  # crash after batch 3
  run env ZDM_TEST_CRASH_AFTER_RECORD=6 "$ZDM_BIN" run rb.yml --state-dir "$T/state"
  assert_equal "$status" 137
  assert_equal "$(q "SELECT count(*) FILTER (WHERE hits = 1) || '/' || count(*) FILTER (WHERE hits = 0) FROM items")" "300/700"
  run zdm resume rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_output --partial "resuming after id 300: 3 batches (300 rows) done by earlier attempts"
  # no row twice, no row missed
  assert_equal "$(q "SELECT count(*) FROM items WHERE hits = 1 AND doubled = v * 2")" 1000
  assert_equal "$(q "SELECT count(*) FROM items WHERE hits <> 1")" 0
  # attempt 1 did batches 1-3, attempt 2 (the resume) did 4-10
  run jq -r 'select(.event=="backfill.batch") | "\(.attempt) \(.data.batch) \(.data.from)-\(.data.to)"' "$(J)"
  assert_output "$(for b in $(seq 10); do echo "$(( b <= 3 ? 1 : 2 )) $b $(( (b - 1) * 100 + 1 ))-$(( b * 100 ))"; done)"
  run jq -c 'select(.event=="step.succeeded") | .data.outputs | [.batches, .rows, .resumed_batches]' "$(J)"
  assert_output '[10,1000,3]'
}

@test "postgres_backfill: its upper key is fixed at its start: a steady insert stream faster than the batches cannot keep it running" {
  newdb
  fill_runbook "set: hits = hits + 1, doubled = v * 2
batch_size: 100
pause: 20ms"
  # the application inserts 50 rows every 10 ms (about 5000 rows/s, more than
  # the batches fill: 100 rows per ~25 ms) over TCP, for at most 10 s
  PGPASSWORD="$PG_PASSWORD" "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$(pg_port fill)" -U "$PG_USER" -d "$DB" \
    -c "DO \$\$ BEGIN FOR i IN 1..1000 LOOP
          INSERT INTO items (id, v) SELECT 1000000 + i * 50 + g, g FROM generate_series(1, 50) g;
          COMMIT; PERFORM pg_sleep(0.01); END LOOP; END \$\$" >"$T/inserts.out" 2>&1 &
  local writer=$!
  poll 250 0.02 rows_over 1000
  run zdm run rb.yml --state-dir "$T/state"
  echo "$output"
  assert_equal "$status" 0
  # the backfill ended while the stream still ran: the bound, not the stream, ended it
  kill -0 "$writer"
  # stop the stream: cancel its DO on the server, then its psql ends
  pg_psql fill postgres -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity
    WHERE datname = '$DB' AND application_name = 'psql'" >/dev/null
  wait "$writer" || true
  local j bound
  j="$(J)"
  # the bound was journaled once, before the first batch
  run jq -r 'select(.event | startswith("backfill.")) | .event' "$j"
  assert_line --index 0 backfill.bound
  assert_equal "$(jq -s '[.[] | select(.event == "backfill.bound")] | length' "$j")" 1
  bound="$(jq -r 'select(.event == "backfill.bound") | .data.upper' "$j")"
  [ "$bound" -gt 1000 ]
  # every row up to the bound filled once, none above it
  assert_equal "$(q "SELECT count(*) FROM items WHERE id <= $bound AND (hits <> 1 OR doubled IS DISTINCT FROM v * 2)")" 0
  assert_equal "$(q "SELECT count(*) FROM items WHERE id > $bound AND hits <> 0")" 0
  [ "$(q "SELECT count(*) FROM items WHERE id > $bound")" -gt 0 ]
  # the outputs say where it stopped and how many rows it left to the application
  run jq -c 'select(.event == "step.succeeded") | .data.outputs | [.upper_bound, .above_bound > 0, .rows]' "$j"
  assert_output "[\"$bound\",true,$(q "SELECT count(*) FROM items WHERE id <= $bound")]"
  [ "$(jq -r 'select(.event == "backfill.batch") | .data.to' "$j" | tail -1)" = "$bound" ]
}

@test "postgres_backfill: a batch that waits past lock_timeout for a row the application holds rolls back and is retried" {
  newdb
  # the application holds row 150 (in batch 2) for 1.5 s
  pg_psql fill "$DB" -c "BEGIN; UPDATE items SET v = v WHERE id = 150; SELECT pg_sleep(1.5); COMMIT" >/dev/null 2>&1 &
  app=$!
  for i in $(seq 100); do
    [ "$(q "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(1.5)%' AND pid <> pg_backend_pid()")" -ge 1 ] && break
    sleep 0.05
  done
  fill_runbook "set: hits = hits + 1
batch_size: 100
lock_timeout: 200ms
lock_retry_delay: 200ms
lock_retry_max_delay: 400ms"
  run zdm run rb.yml --state-dir "$T/state"
  wait "$app"
  assert_equal "$status" 0
  run jq -r 'select(.event=="backfill.lock_timeout") | .data | "\(.batch) \(.lock_timeout_ms)"' "$(J)"
  assert_line "2 200"
  # the rolled-back tries left nothing: each row once
  assert_equal "$(q "SELECT count(*) FROM items WHERE hits = 1")" 1000
  run jq -c 'select(.event=="step.succeeded") | .data.outputs | [.batches, .rows]' "$(J)"
  assert_output '[10,1000]'
}

@test "postgres_backfill: where selects the rows, gaps in the keys do not shrink batches" {
  # ids 3, 6, 9, ... 3000; the backfill only touches even ids (500 rows)
  newdb "generate_series(3, 3000, 3)"
  fill_runbook "set: hits = hits + 1
where: id % 2 = 0
batch_size: 200"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  run jq -r 'select(.event=="backfill.batch") | .data | "\(.from) \(.to) \(.rows)"' "$(J)"
  assert_output "$(printf '6 1200 200\n1206 2400 200\n2406 3000 100')"
  assert_equal "$(q "SELECT count(*) FROM items WHERE hits = 1 AND id % 2 = 0")" 500
  assert_equal "$(q "SELECT count(*) FROM items WHERE hits <> 0 AND id % 2 = 1")" 0
}

@test "postgres_backfill: a rollback runs undo_set in batches; without undo_set the plan says rows stay" {
  newdb
  fill_runbook "set: doubled = v * 2
undo_set: doubled = NULL
batch_size: 400" fail
  run zdm plan rb.yml
  assert_output --partial "UPDATE items SET doubled = v * 2 WHERE id BETWEEN <from> AND <to>, in batches of 400 rows by id, one transaction each (lock_timeout 500ms); undo: SET doubled = NULL in the same batches"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_equal "$(q "SELECT count(*) FROM items WHERE doubled IS NOT NULL")" 0
  run jq -r 'select(.event=="backfill.undo_batch") | .data | "\(.from)-\(.to)"' "$(J)"
  assert_output "$(printf '1-400\n401-800\n801-1000')"
  fill_runbook "set: doubled = v * 2"
  run zdm plan rb.yml
  assert_output --partial "no undo_set: a rollback leaves the updated rows as they are"
}

@test "postgres_backfill: waits while a replica lags more than max_lag_bytes, then goes on" {
  newdb
  # a replica that acknowledges what it has flushed (pg_receivewal), stopped
  # with SIGSTOP so its position stays behind while the backfill writes WAL
  # with a slot of its own, so the WAL it has not flushed is kept for it
  mkdir "$T/wal"
  slot="zdm_test_$DB"
  q "SELECT pg_create_physical_replication_slot('$slot', true)" >/dev/null
  PGPASSWORD="$PG_PASSWORD" "$PG_BIN/pg_receivewal" -h 127.0.0.1 -p "$(pg_port fill)" -U "$PG_USER" \
    -D "$T/wal" --slot "$slot" --synchronous -s 1 -n >"$T/receivewal.log" 2>&1 &
  recv=$!
  # stopped only once it has reported a position: with none, lag reads as 0
  for i in $(seq 300); do
    [ "$(q "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pg_receivewal'
           AND flush_lsn IS NOT NULL")" -ge 1 ] && break
    sleep 0.05
  done
  kill -STOP "$recv"
  # let it catch up once zdm has journaled that it waits for it (bounded:
  # 60 s), so the order does not depend on how busy the machine is
  (for _ in $(seq 600); do
     grep -qs '"event":"backfill.throttle"' "$T"/state/runs/*.jsonl && break
     sleep 0.1
   done
   kill -CONT "$recv") &
  cont=$!
  fill_runbook "set: hits = hits + 1, doubled = v * 2
batch_size: 250
max_lag_bytes: 8192
throttle_interval: 100ms"
  run zdm run rb.yml --state-dir "$T/state"
  wait "$cont"
  # the receiver is still streaming: the throttle ended because it caught up
  receivers="$(q "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pg_receivewal'")"
  kill "$recv"
  wait "$recv" || true
  # (the cluster is thrown away at the end of the file: a slot still busy is harmless)
  q "SELECT pg_drop_replication_slot('$slot')" >/dev/null 2>&1 || true
  assert_equal "$status" 0
  assert_equal "$receivers" 1
  assert_equal "$(q "SELECT count(*) FROM items WHERE hits = 1")" 1000
  assert_throttled
}

# a streaming standby of cluster `fill` (pg_basebackup -R), as cluster `standby`
start_standby() {
  local dir="$PG_ROOT/standby" port
  mkdir -p "$dir"
  chown postgres: "$dir" 2>/dev/null || true
  _pg_as "$PG_BIN/pg_basebackup" -h "$PG_ROOT/fill" -p "$(pg_port fill)" -U postgres \
    -D "$dir/data" -R -X stream -c fast --no-sync >"$dir/basebackup.log" 2>&1 || {
    cat "$dir/basebackup.log" >&2
    return 1
  }
  port="$(free_port)"
  printf "port = %s\nunix_socket_directories = '%s'\n" "$port" "$dir" >>"$dir/data/postgresql.auto.conf"
  _pg_as "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start >/dev/null 2>&1 || {
    cat "$dir/server.log" >&2
    return 1
  }
  echo "$port" >"$dir/port"
}

@test "postgres_backfill: with replica_conninfo it waits while that standby's replay is behind" {
  newdb
  start_standby
  pg_psql standby postgres -c "SELECT pg_wal_replay_pause()"
  # replay resumes once zdm has journaled that it waits for the standby
  # (bounded: 60 s), so the order does not depend on how busy the machine is
  (for _ in $(seq 600); do
     grep -qs '"event":"backfill.throttle"' "$T"/state/runs/*.jsonl && break
     sleep 0.1
   done
   pg_psql standby postgres -c "SELECT pg_wal_replay_resume()") &
  resume=$!
  fill_runbook "set: hits = hits + 1
batch_size: 250
max_lag_bytes: 8192
replica_conninfo: \"$(pg_conninfo standby)\"
throttle_interval: 100ms"
  run zdm run rb.yml --state-dir "$T/state"
  wait "$resume"
  pg_stop standby
  assert_equal "$status" 0
  assert_equal "$(q "SELECT count(*) FROM items WHERE hits = 1")" 1000
  assert_throttled
}

@test "postgres_backfill: a key that is not an integer column fails before any change; bad names are exit 2" {
  newdb
  fill_runbook "set: hits = hits + 1
undo_set: hits = 0"
  sed -i 's/key: id/key: doubled/' "$T/rb.yml"
  pg_psql fill "$DB" -c "ALTER TABLE items ALTER COLUMN doubled TYPE text"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "key 'doubled' is text: it must be an integer column"
  # the rollback undoes the failed step from its snapshot: nothing ran, nothing to undo
  assert_line --regexp "^\[1/1\] nothing to undo fill( +[0-9]+m?s)?$"
  assert_output --partial "the table's primary key (so no batch ran)"
  refute_line --regexp 'undone +fill'
  run jq -c 'select(.event == "undo.succeeded") | [.step, .data.outcome]' "$(J)"
  assert_output '["fill","nothing_to_undo"]'
  assert_equal "$(q "SELECT count(*) FROM items WHERE hits <> 0")" 0
  fill_runbook "set: hits = hits + 1
replica_conninfo: host=127.0.0.1
batch_size: 0"
  sed -i 's/table: items/table: "items; DROP TABLE items"/' "$T/rb.yml"
  run zdm run rb.yml --state-dir "$T/state2"
  assert_equal "$status" 2
  assert_output --partial "rb.yml:11:14: step 'fill': param 'table': 'items; DROP TABLE items' is not a plain table name"
  assert_output --partial "param 'batch_size': must be from 1 to 10000000"
  assert_output --partial "param 'replica_conninfo': is only used with max_lag_bytes"
  assert_equal "$(q "SELECT count(*) FROM items")" 1000
}

# the expand/contract runbook, for real: users(id, email) gets email_lower
# NOT NULL, filled from lower(email)
expand_contract_db() {
  DB="t${BATS_TEST_NUMBER}"
  pg_createdb fill "$DB"
  pg_psql fill "$DB" -c "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL);
    INSERT INTO users SELECT g, 'User' || g || '@Example.COM' FROM generate_series(1, 2500) g;
    ALTER TABLE users OWNER TO $PG_USER"
  export PGPASSWORD_ZDM="$PG_PASSWORD"
  VARS=(--var "conninfo=$(pg_conninfo fill "$DB")" --var batch_size=1000 --var lock_timeout=300ms)
}

column_state() {
  q "SELECT coalesce((SELECT attnotnull::text FROM pg_attribute WHERE attrelid = 'users'::regclass
      AND attname = 'email_lower' AND NOT attisdropped), 'absent') || ' ' ||
    (SELECT count(*) FROM pg_constraint WHERE conrelid = 'users'::regclass AND contype = 'c')"
}

@test "expand-contract runbook: adds the column, backfills in batches, sets NOT NULL via CHECK NOT VALID + VALIDATE" {
  expand_contract_db
  run zdm plan "$REPO/runbooks/expand-contract.yml" "${VARS[@]}"
  assert_equal "$status" 0
  assert_output --partial "undo: ALTER TABLE users DROP COLUMN IF EXISTS email_lower"
  assert_output --partial "ADD CONSTRAINT email_lower_not_null CHECK (email_lower IS NOT NULL) NOT VALID"
  run zdm run "$REPO/runbooks/expand-contract.yml" "${VARS[@]}" --state-dir "$T/state"
  assert_equal "$status" 0
  assert_equal "$(column_state)" "true 0"
  assert_equal "$(q "SELECT count(*) FROM users WHERE email_lower = lower(email)")" 2500
  run jq -c 'select(.event=="step.succeeded" and .step=="backfill") | .data.outputs | [.batches, .rows]' "$(J)"
  assert_output '[3,2500]'
  # the constraint really holds: a row without the column is refused
  run q "INSERT INTO users (id, email) VALUES (9999, 'x')"
  assert_failure
  assert_output --partial 'null value in column "email_lower"'
  run grep -rF "$PG_PASSWORD" "$T/state"
  assert_equal "$status" 1
}

@test "expand-contract runbook: a failure at the last phase rolls every phase back; backfill and validate have no undo of their own (exit 6)" {
  expand_contract_db
  run zdm run "$REPO/runbooks/expand-contract.yml" "${VARS[@]}" --state-dir "$T/state" --fail-at set-not-null
  # undoing 'expand' drops the column, but zdm cannot know that covers the two
  # steps without an undo: it names them, and exits 6
  assert_equal "$status" 6
  assert_output --partial "rolled back; 2 steps that changed things have no undo: backfill, validate"
  assert_equal "$(column_state)" "absent 0"
  run events "$(J)"
  assert_line "undo.succeeded not-null-check"
  assert_line "undo.succeeded expand"
}
