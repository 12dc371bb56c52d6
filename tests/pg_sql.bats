#!/usr/bin/env bats
# db.postgres_sql against a real PostgreSQL 15 cluster made by the test
# (tests/servers/postgres.bash; one cluster for the file, one database per
# test): a DDL blocked by a long transaction gives up after lock_timeout and
# is retried with backoff while a concurrent reader keeps getting answers;
# everything runs in one transaction (a failing statement leaves nothing);
# undo_sql runs on rollback; CREATE INDEX CONCURRENTLY needs
# `transaction: false`; the password comes from secrets and never shows.

bats_require_minimum_version 1.5.0
load helper
load servers/postgres

setup_file() {
  pg_start sql
}

teardown_file() {
  pg_stop_all
}

# a fresh database for this test, with a table `items` of 200 rows
newdb() {
  pg_test_db sql "CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL);
    INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 200) g"
}

# a runbook: one db.postgres_sql step with `with:` extra lines ($1, indented
# by 6), then optionally a step that always fails ($2 = fail)
sql_runbook() {
  pg_step_runbook sql db.postgres_sql ddl "$1" "${2:-}"
}

# wait (up to 5 s) until a session other than this one holds a lock on items
await_items_locked() {
  local i
  for i in $(seq 100); do
    [ "$(pg_psql sql "$DB" -c "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
      WHERE c.relname = 'items' AND l.granted AND l.pid <> pg_backend_pid()")" -ge 1 ] && break
    sleep 0.05
  done
}

columns() {
  pg_psql sql "$DB" -c "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
    WHERE attrelid = 'items'::regclass AND attnum > 0 AND NOT attisdropped"
}

@test "postgres_sql: a DDL blocked by a long transaction is retried under lock_timeout while a reader keeps getting answers" {
  newdb
  # the blocker: a transaction that read the table (ACCESS SHARE) and goes on for 3.5 s
  pg_psql sql "$DB" -c "SELECT count(*) FROM items; SELECT pg_sleep(3.5)" >"$T/blocker.out" 2>&1 &
  blocker=$!
  await_items_locked
  # the reader: 70 short queries, 50 ms apart, each stamped with the
  # server's clock when it got through (one session, autocommit)
  for i in $(seq 70); do
    echo "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint || ':' || count(*) FROM items;"
    echo "SELECT pg_sleep(0.05);"
  done >"$T/reader.sql"
  pg_psql sql "$DB" -f "$T/reader.sql" >"$T/reader.out" 2>&1 &
  reader=$!
  # the DDL starts once the reader is answering, so a stall shows as a gap
  for i in $(seq 100); do
    [ "$(grep -c ':200$' "$T/reader.out")" -ge 3 ] && break
    sleep 0.02
  done
  sql_runbook "sql: ALTER TABLE items ADD COLUMN note text
undo_sql: ALTER TABLE items DROP COLUMN IF EXISTS note
lock_timeout: 300ms
lock_retry_delay: 200ms
lock_retry_max_delay: 800ms"
  run zdm run rb.yml --state-dir "$T/state"
  wait "$blocker"
  wait "$reader"
  assert_equal "$status" 0
  assert_equal "$(columns)" "id,name,note"
  # the DDL gave up at least once, and each give-up is in the journal
  n="$(jq -s '[.[] | select(.event=="sql.lock_timeout")] | length' "$(J)")"
  [ "$n" -ge 2 ]
  run jq -r 'select(.event=="sql.lock_timeout") | .data | "\(.lock_timeout_ms) \(.error)"' "$(J)"
  assert_line "300 ERROR:  canceling statement due to lock timeout (SQLSTATE 55P03)"
  assert_equal "$(jq -r 'select(.event=="step.succeeded") | .data.outputs.lock_timeouts' "$(J)")" "$n"
  # the reader got all 70 answers, never stalled behind the waiting DDL
  # for long: the largest gap between two answers stays near lock_timeout
  # (without lock_timeout it would be the blocker's 3.5 s)
  assert_equal "$(grep -c ':200$' "$T/reader.out")" 70
  gap="$(grep ':200$' "$T/reader.out" | cut -d: -f1 |
    awk 'NR > 1 && $1 - p > m { m = $1 - p } { p = $1 } END { print m + 0 }')"
  echo "reader max gap: ${gap} ms (lock_timeout 300 ms, $n lock timeouts)" >&3
  [ "$gap" -lt 2000 ]
}

@test "postgres_sql: gives up after lock_retries with a message that says where to look (exit 1)" {
  newdb
  pg_psql sql "$DB" -c "SELECT count(*) FROM items; SELECT pg_sleep(3)" >/dev/null 2>&1 &
  blocker=$!
  await_items_locked
  sql_runbook "sql: ALTER TABLE items ADD COLUMN note text
lock_timeout: 100ms
lock_retries: 2
lock_retry_delay: 50ms"
  run zdm run rb.yml --state-dir "$T/state"
  kill "$blocker" 2>/dev/null || true
  wait "$blocker" || true
  assert_equal "$status" 1
  assert_output --partial "gave up after 3 lock timeouts of 100ms each (lock_retries: 2)"
  assert_output --partial "pg_stat_activity"
  assert_equal "$(jq -s '[.[] | select(.event=="sql.lock_timeout")] | length' "$(J)")" 2
  assert_equal "$(columns)" "id,name"
}

@test "postgres_sql: all of sql runs in one transaction: a failing statement leaves nothing (exit 1)" {
  newdb
  sql_runbook "sql:
  - ALTER TABLE items ADD COLUMN note text
  - UPDATE items SET note = 'x'
  - ALTER TABLE items ADD COLUMN broken no_such_type"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial 'sql statement 3: ERROR:  type "no_such_type" does not exist'
  assert_equal "$(columns)" "id,name"
}

@test "postgres_sql: a rollback runs undo_sql as recorded; the plan shows sql and undo_sql" {
  newdb
  sql_runbook "sql: [ALTER TABLE items ADD COLUMN note text, \"UPDATE items SET note = 'n' || id\"]
undo_sql: ALTER TABLE items DROP COLUMN IF EXISTS note" fail
  run zdm plan rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_output --partial "in one transaction, lock_timeout 500ms (up to 20 retries, backoff 1s..1m): ALTER TABLE items ADD COLUMN note text; UPDATE items SET note = 'n' || id; undo: ALTER TABLE items DROP COLUMN IF EXISTS note"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  run jq -c 'select(.event=="step.succeeded" and .step=="ddl") | .data.undo_data' "$(J)"
  assert_output '{"transaction":true,"undo_sql":["ALTER TABLE items DROP COLUMN IF EXISTS note"]}'
  assert_equal "$(columns)" "id,name"
  run events "$(J)"
  assert_line "undo.succeeded ddl"
}

@test "postgres_sql: without undo_sql the plan says so, never 'restores'; a rollback says 'left in place', exit 6" {
  newdb
  sql_runbook "sql: ALTER TABLE items ADD COLUMN note text" fail
  run --separate-stderr zdm validate rb.yml
  assert_equal "$status" 0
  assert_equal "${stderr_lines[0]}" "rb.yml:6:5: warning: step 'ddl' changes things and has no undo: a rollback leaves its change in place (add undo:, or accept that)"
  run zdm plan rb.yml --state-dir "$T/state"
  assert_output --partial "no undo_sql: a rollback leaves this change in place"
  assert_line "      undo: none: a rollback leaves this change in place"
  refute_output --partial "restores what it recorded"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 6
  assert_line --regexp "^\[1/2\] left in place ddl( +[0-9]+m?s)?$"
  assert_line "        no undo_sql: the change is left in place"
  refute_line --regexp 'undone +ddl'
  assert_output --partial "rolled back; 1 step that changed things has no undo: ddl"
  assert_equal "$(columns)" "id,name,note"
  run jq -c 'select(.event == "undo.succeeded") | [.step, .data.outcome, .data.reason]' "$(J)"
  assert_output '["ddl","left_in_place","no undo_sql: the change is left in place"]'
}

@test "postgres_sql: CREATE INDEX CONCURRENTLY needs transaction: false (exit 2 naming the line, nothing touched); then it runs" {
  newdb
  sql_runbook "sql: CREATE INDEX CONCURRENTLY items_name ON items (name)
undo_sql: DROP INDEX CONCURRENTLY IF EXISTS items_name"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "rb.yml:11:12: step 'ddl': param 'sql': 'CREATE INDEX CONCURRENTLY items_name ON items (name)' cannot run inside a transaction block: set \`transaction: false\` (each statement then commits on its own)"
  assert_output --partial "rb.yml:12:17: step 'ddl': param 'undo_sql': 'DROP INDEX CONCURRENTLY IF EXISTS items_name' cannot run inside a transaction block"
  [ ! -e "$T/state/runs" ] || [ -z "$(ls "$T/state/runs")" ]
  sql_runbook "sql: CREATE INDEX CONCURRENTLY items_name ON items (name)
undo_sql: DROP INDEX CONCURRENTLY IF EXISTS items_name
transaction: false" fail
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  # the index was built, then dropped again by the rollback
  run jq -r 'select(.event=="step.succeeded" and .step=="ddl") | .data.outputs.statements' "$(J)"
  assert_output 1
  assert_equal "$(pg_psql sql "$DB" -c "SELECT count(*) FROM pg_indexes WHERE indexname = 'items_name'")" 0
  run events "$(J)"
  assert_line "undo.succeeded ddl"
}

@test "postgres_sql: a CREATE INDEX CONCURRENTLY that times out on a lock is not retried; the rollback runs undo_sql from the snapshot" {
  newdb
  pg_psql sql "$DB" -c "BEGIN; LOCK TABLE items IN SHARE UPDATE EXCLUSIVE MODE; SELECT pg_sleep(1.5); COMMIT" >/dev/null 2>&1 &
  blocker=$!
  for i in $(seq 100); do
    [ "$(pg_psql sql "$DB" -c "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
      WHERE c.relname = 'items' AND l.granted AND l.mode = 'ShareUpdateExclusiveLock'")" -ge 1 ] && break
    sleep 0.05
  done
  sql_runbook "sql: CREATE INDEX CONCURRENTLY items_name ON items (name)
undo_sql: DROP INDEX CONCURRENTLY IF EXISTS items_name
transaction: false
lock_timeout: 100ms
lock_retry_delay: 300ms"
  run zdm run rb.yml --state-dir "$T/state"
  wait "$blocker"
  assert_equal "$status" 1
  assert_output --partial "CREATE INDEX / REINDEX CONCURRENTLY is not retried (it leaves an INVALID index behind"
  assert_equal "$(jq -s '[.[] | select(.event=="sql.lock_timeout")] | length' "$(J)")" 0
  # the failed step is undone from its snapshot (undo_sql recorded before it ran)
  run events "$(J)"
  assert_line "undo.succeeded ddl"
  assert_equal "$(pg_psql sql "$DB" -c "SELECT count(*) FROM pg_indexes WHERE indexname = 'items_name'")" 0
}

@test "postgres_sql: the password comes from secrets: never in the journal or output; a wrong one fails clearly" {
  newdb
  # a secret in the SQL itself: the plan shows the expression, the journal ***
  sql_runbook "sql: [ALTER TABLE items ADD COLUMN note text, \"COMMENT ON TABLE items IS 'k=\${{ secrets.pg }}'\"]"
  run zdm plan rb.yml
  assert_output --partial "COMMENT ON TABLE items IS 'k=\${{ secrets.pg }}'"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_equal "$(jq -r 'select(.event=="step.started") | .data.params.sql[1]' "$(J)")" "COMMENT ON TABLE items IS 'k=***'"
  assert_equal "$(pg_psql sql "$DB" -c "SELECT obj_description('items'::regclass)")" "k=$PG_PASSWORD"
  refute_output --partial "$PG_PASSWORD"
  run grep -rF "$PG_PASSWORD" "$T/state"
  assert_equal "$status" 1
  export PGPW="wrong-$PG_PASSWORD"
  sql_runbook "sql: ALTER TABLE items ADD COLUMN other text"
  run zdm run rb.yml --state-dir "$T/state2"
  assert_equal "$status" 1
  assert_output --partial 'password authentication failed for user "zdm"'
  refute_output --partial "$PG_PASSWORD"
  run grep -rF "$PG_PASSWORD" "$T/state2"
  assert_equal "$status" 1
}

@test "postgres_sql: bad params are exit 2 with file:line:col and nothing touched" {
  newdb
  cat >"$T/rb.yml" <<EOF
zdm: 1
name: bad
steps:
  - id: ddl
    uses: db.postgres_sql
    with:
      conninfo: "$CONN password=hunter2"
      sql: [ALTER TABLE items ADD COLUMN note text, ""]
      lock_retries: -1
EOF
  run zdm validate rb.yml
  assert_equal "$status" 2
  assert_output --partial "rb.yml:7:17: step 'ddl': param 'conninfo': must not hold a password (it would be journaled): give it as \`password: \${{ secrets.NAME }}\`"
  assert_output --partial "rb.yml:8:12: step 'ddl': param 'sql': item 2 must be SQL text, not empty"
  assert_output --partial "rb.yml:9:21: step 'ddl': param 'lock_retries': must be from 0 to 1000"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 2
  assert_equal "$(columns)" "id,name"
}
