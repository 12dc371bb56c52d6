#!/usr/bin/env bats
# db.postgres_sync and db.postgres_sequences against real PostgreSQL 15
# clusters made by the tests (tests/servers/postgres.bash): logical
# replication with writes running during the sync and parity verified after,
# undo that drops exactly what the step created, refusals (no primary key,
# wal_level = replica, missing schema) before anything is created, the
# sequences at cut-over, and runbooks/postgres-move.yml end to end.
#
# Three clusters are shared by the file (setup_file): src and dst
# (wal_level = logical) and old (wal_level = replica).  Every test uses its
# own database names, so the tests do not see each other's objects.

bats_require_minimum_version 1.5.0
load helper
load servers/postgres

setup_file() {
  pg_start src
  pg_start dst
  pg_start old wal_level=replica
}

teardown_file() {
  pg_stop_all
}

# a source database $1 on cluster ${3:-src} with orders (PK, serial) and
# items (PK), $2 rows in orders; the same, empty, schema on dst unless $4=noschema
make_dbs() {
  local db="$1" rows="$2" srccl="${3:-src}" schema="${4:-schema}"
  pg_createdb "$srccl" "$db"
  pg_createdb dst "$db"
  local ddl="CREATE TABLE orders (id bigserial PRIMARY KEY, customer int NOT NULL, note text, amount numeric(10,2));
             CREATE TABLE items (order_id bigint NOT NULL, line int NOT NULL, sku text, PRIMARY KEY (order_id, line));"
  pg_psql "$srccl" "$db" -c "$ddl"
  [ "$schema" = noschema ] || pg_psql dst "$db" -c "$ddl"
  pg_psql "$srccl" "$db" -c "INSERT INTO orders (customer, note, amount)
      SELECT g % 97, 'order ' || g, g * 1.5 FROM generate_series(1, $rows) g;
    INSERT INTO items SELECT g, l, 'sku-' || l FROM generate_series(1, $rows / 4) g, generate_series(1, 2) l;"
}

# a runbook with one db.postgres_sync step (id sync) + extra params, and an
# optional second step
sync_runbook() {
  local db="$1" extra="${2:-}" srccl="${3:-src}"
  cat >"$T/rb.yml" <<EOF
zdm: 1
name: pgsync
secrets:
  pw: {env: TEST_PG_PW}
defaults: {timeout: 60s}
steps:
  - id: sync
    uses: db.postgres_sync
    with:
      source: "$(pg_conninfo "$srccl" "$db")"
      target: "$(pg_conninfo dst "$db")"
      source_password: \${{ secrets.pw }}
      target_password: \${{ secrets.pw }}
      tables: [public.orders, items]
$extra
  - id: after
    uses: exec
    with: {command: ["true"]}
EOF
}

# names of the step's objects left on each side ("" when none)
leftovers() {
  local db="$1"
  echo "pub:$(pg_psql src "$db" -c "select string_agg(pubname, ',' order by pubname) from pg_publication")"
  echo "slot:$(pg_psql src postgres -c "select string_agg(slot_name, ',' order by slot_name) from pg_replication_slots where database = '$db'")"
  echo "sub:$(pg_psql dst "$db" -c "select string_agg(subname, ',' order by subname) from pg_subscription where subdbid = (select oid from pg_database where datname = '$db')")"
}

parity() {
  local db="$1" t
  for t in "orders ORDER BY id" "items ORDER BY order_id, line"; do
    local q="SELECT count(*) || ' ' || md5(coalesce(string_agg(x::text, '|' ORDER BY ${t#* ORDER BY }), '')) FROM ${t%% *} x"
    local a b
    a="$(pg_psql src "$db" -c "$q")"
    b="$(pg_psql dst "$db" -c "$q")"
    [ "$a" = "$b" ] || { echo "parity ${t%% *}: source $a, target $b" >&2; return 1; }
  done
}

@test "pg_sync: replicates while the application writes, verifies parity (checksum), secret never written" {
  export TEST_PG_PW="$PG_PASSWORD"
  make_dbs s1 20000
  sync_runbook s1 "      verify: checksum
      max_lag_bytes: 65536"
  # the application keeps writing (inserts, updates, deletes) during the sync
  pg_psql src s1 -c "DO \$\$ BEGIN FOR i IN 1..150 LOOP
      INSERT INTO orders (customer, note, amount) VALUES (i, 'live ' || i, i);
      UPDATE orders SET amount = amount + 1 WHERE id = i * 7;
      DELETE FROM items WHERE order_id = i * 3;
      COMMIT; PERFORM pg_sleep(0.01); END LOOP; END \$\$" >"$T/writer.out" 2>&1 &
  local writer=$!
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  wait "$writer"
  echo "$output"
  assert_success
  assert_output --partial "parity verified (checksum)"
  parity s1
  # the writer's rows reached the target
  [ "$(pg_psql dst s1 -c "select count(*) from orders where note like 'live %'")" = 150 ]
  # the subscription is still there and every table is ready
  [ "$(pg_psql dst s1 -c "select string_agg(distinct srsubstate::text, '') from pg_subscription_rel")" = r ]
  local j
  j="$(journal_of "$T/state")"
  jq -se '[.[] | select(.event == "step.succeeded" and .step == "sync")][0] | .data.outputs
         | (.tables == ["public.orders", "public.items"]) and .rows > 20000 and (.lag | type == "number")
           and (.duration | type == "number") and .publication == "zdm_s1_sync"' "$j"
  jq -se '[.[] | select(.event == "step.succeeded" and .step == "sync")][0] | .data.undo_data.existed
         | .publication == false and .subscription == false and .slot == false' "$j"
  # the password went into the subscription (PostgreSQL keeps it) but nowhere of zdm's
  pg_psql dst s1 -c "select subconninfo from pg_subscription where subname = 'zdm_s1_sync'" | grep -q "password="
  refute grep -rqF "$PG_PASSWORD" "$T/state"
  refute grep -qF "$PG_PASSWORD" <<<"$output"
  run zdm log "$(basename "$j" .jsonl)" --state-dir "$T/state"
  refute grep -qF "$PG_PASSWORD" <<<"$output"
  # clean up this test's replication (the cluster is shared)
  run zdm rollback "$T/rb.yml" --state-dir "$T/state"
}

@test "pg_sync: undo drops the subscription, its slot and the publication it made, and nothing else" {
  export TEST_PG_PW="$PG_PASSWORD"
  make_dbs s2 3000 src noschema
  # objects that were there before: they must survive the rollback
  pg_psql src s2 -c "CREATE PUBLICATION keep_me FOR TABLE orders"
  pg_psql src s2 -c "SELECT pg_create_logical_replication_slot('s2_keep_slot', 'pgoutput')" >/dev/null
  sync_runbook s2 "      copy_schema: true
      pg_dump: $PG_BIN/pg_dump
      psql: $PG_BIN/psql"
  run zdm run "$T/rb.yml" --state-dir "$T/state" --fail-at after
  echo "$output"
  # 'after' (exec, no undo) is left in place: exit 6
  assert_equal "$status" 6
  assert_output --partial "copied the schema of 2 table(s)"
  assert_output --partial "dropped subscription zdm_s2_sync"
  run leftovers s2
  echo "$output"
  assert_output "pub:keep_me
slot:s2_keep_slot
sub:"
  # the copied schema and rows stay on the target (undo drops replication, not data)
  [ "$(pg_psql dst s2 -c "select count(*) from orders")" = 3000 ]
  local j
  j="$(journal_of "$T/state")"
  jq -se 'any(.[]; .event == "undo.succeeded" and .step == "sync")' "$j"
  refute grep -qF "$PG_PASSWORD" "$j"
  pg_psql src s2 -c "SELECT pg_drop_replication_slot('s2_keep_slot')" >/dev/null
}

@test "pg_sync: a table without a primary key is refused before anything is created" {
  export TEST_PG_PW="$PG_PASSWORD"
  make_dbs s3 100
  pg_psql src s3 -c "CREATE TABLE events (at timestamptz, what text)"
  pg_psql dst s3 -c "CREATE TABLE events (at timestamptz, what text)"
  sync_runbook s3
  sed -i 's/tables: \[public.orders, items\]/tables: [public.orders, items, events]/' "$T/rb.yml"
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  echo "$output"
  assert_equal "$status" 1
  assert_output --partial "refused before creating anything: table public.events has no primary key or replica identity: add a primary key, or run ALTER TABLE public.events REPLICA IDENTITY FULL on the source"
  run leftovers s3
  assert_output "pub:
slot:
sub:"
  # with REPLICA IDENTITY FULL the same table is accepted
  pg_psql src s3 -c "ALTER TABLE events REPLICA IDENTITY FULL; INSERT INTO events VALUES (now(), 'x')"
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  echo "$output"
  assert_success
  [ "$(pg_psql dst s3 -c "select count(*) from events")" = 1 ]
  # 'after' (exec, no undo) is left in place: exit 6
  run zdm rollback "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 6
  run leftovers s3
  assert_output "pub:
slot:
sub:"
}

@test "pg_sync: wal_level = replica on the source is refused before anything is created" {
  export TEST_PG_PW="$PG_PASSWORD"
  make_dbs s4 100 old
  sync_runbook s4 "" old
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  echo "$output"
  assert_equal "$status" 1
  assert_output --partial "refused before creating anything: the source has wal_level = replica; logical replication needs wal_level = logical"
  [ -z "$(pg_psql old s4 -c "select pubname from pg_publication")" ]
  [ -z "$(pg_psql old postgres -c "select slot_name from pg_replication_slots")" ]
  [ -z "$(pg_psql dst s4 -c "select subname from pg_subscription where subdbid = (select oid from pg_database where datname = 's4')")" ]
  # a source user without the REPLICATION attribute
  make_dbs s4b 10
  pg_psql src s4b -c "CREATE ROLE app_ro LOGIN PASSWORD '$PG_PASSWORD'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO app_ro" 2>/dev/null ||
    pg_psql src s4b -c "GRANT SELECT ON ALL TABLES IN SCHEMA public TO app_ro"
  sync_runbook s4b
  sed -i '0,/dbname=s4b user=zdm"/s//dbname=s4b user=app_ro"/' "$T/rb.yml"
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  echo "$output"
  assert_equal "$status" 1
  assert_output --partial "refused before creating anything: source user app_ro has no replication privilege: ALTER ROLE app_ro REPLICATION (or use a superuser)"
  run leftovers s4b
  assert_output "pub:
slot:
sub:"
}

@test "pg_sync: a target without the tables is refused unless copy_schema; bad params exit 2" {
  export TEST_PG_PW="$PG_PASSWORD"
  make_dbs s5 10 src noschema
  sync_runbook s5
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "refused before creating anything: the target lacks table(s) public.orders, public.items: create the schema there first, or set copy_schema: true"
  run leftovers s5
  assert_output "pub:
slot:
sub:"
  # wrong password: the message names the server, never the password
  TEST_PG_PW="not-$PG_PASSWORD" run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "source: connect host=127.0.0.1 port=$(pg_port src) dbname=s5: "
  assert_output --partial 'password authentication failed for user "zdm"'
  # static checks: nothing runs, exit 2, file:line:col
  sync_runbook s5 "      verify: everything"
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "rb.yml:15:15: step 'sync': param 'verify': must be count, checksum or none"
  sync_runbook s5
  sed -i '0,/dbname=s5 user=zdm"/s//dbname=s5 user=zdm password=hunter2"/' "$T/rb.yml"
  run zdm validate "$T/rb.yml"
  assert_equal "$status" 2
  assert_output --partial "rb.yml:10:15: step 'sync': param 'source': must not hold the password (params are journaled)"
}

@test "pg_sequences: sets the target's sequences to the source's values + margin; undo puts them back" {
  export TEST_PG_PW="$PG_PASSWORD"
  make_dbs q1 500
  pg_psql src q1 -c "CREATE SEQUENCE unused_seq"
  pg_psql dst q1 -c "CREATE SEQUENCE unused_seq; SELECT setval('orders_id_seq', 7)" >/dev/null
  cat >"$T/rb.yml" <<EOF
zdm: 1
name: pgseq
secrets:
  pw: {env: TEST_PG_PW}
steps:
  - id: seq
    uses: db.postgres_sequences
    with:
      source: "$(pg_conninfo src q1)"
      target: "$(pg_conninfo dst q1)"
      source_password: \${{ secrets.pw }}
      target_password: \${{ secrets.pw }}
      margin: 100
  - id: after
    uses: exec
    with: {command: ["true"]}
EOF
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  echo "$output"
  assert_success
  [ "$(pg_psql dst q1 -c "select last_value from orders_id_seq")" = 600 ]
  [ "$(pg_psql dst q1 -c "select nextval('orders_id_seq')")" = 601 ]
  # a sequence never used on the source is left alone
  [ "$(pg_psql dst q1 -c "select is_called from unused_seq")" = f ]
  # 'after' (exec, no undo) is left in place: exit 6
  run zdm run "$T/rb.yml" --state-dir "$T/state" --fail-at after
  assert_equal "$status" 6
  [ "$(pg_psql dst q1 -c "select last_value from orders_id_seq")" = 601 ]
  # the target lacks a sequence: refused before any is set
  pg_psql src q1 -c "CREATE SEQUENCE only_here; SELECT nextval('only_here')" >/dev/null
  pg_psql dst q1 -c "SELECT setval('orders_id_seq', 5)" >/dev/null
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "refused before setting anything: the target lacks sequence(s) public.only_here"
  [ "$(pg_psql dst q1 -c "select last_value from orders_id_seq")" = 5 ]
}

@test "pg_sync: runbooks/postgres-move.yml moves a database (sync, lag gate, sequences, switch) and rolls back" {
  export SOURCE_PGPASSWORD="$PG_PASSWORD" TARGET_PGPASSWORD="$PG_PASSWORD"
  make_dbs m1 2000
  local vars=(--var source="$(pg_conninfo src m1)" --var target="$(pg_conninfo dst m1)"
              --var tables='public.orders,public.items' --var switch_file="$T/db.conf")
  echo "$(pg_conninfo src m1)" >"$T/db.conf"
  run zdm validate "$REPO/runbooks/postgres-move.yml" "${vars[@]}"
  assert_success
  run zdm plan "$REPO/runbooks/postgres-move.yml" "${vars[@]}"
  assert_success
  assert_output --partial "replicate public.orders, public.items by logical replication (copy_schema false), wait until synced and lag <= 1048576 bytes, verify checksum"
  assert_output --partial "set every sequence on the target to the source's value + 1000"
  run zdm run "$REPO/runbooks/postgres-move.yml" "${vars[@]}" --state-dir "$T/state"
  echo "$output"
  assert_success
  parity m1
  # the application's config points at the target; ids go on past the source's
  assert_equal "$(cat "$T/db.conf")" "$(pg_conninfo dst m1)"
  [ "$(pg_psql dst m1 -c "select last_value from orders_id_seq")" -gt 2000 ]
  refute grep -rqF "$PG_PASSWORD" "$T/state"
  # 'lag-gate' (exec, no undo) is left in place: exit 6
  run zdm rollback "$REPO/runbooks/postgres-move.yml" "${vars[@]}" --state-dir "$T/state"
  echo "$output"
  assert_equal "$status" 6
  assert_output --partial "rolled back; 1 step that changed things has no undo: lag-gate"
  assert_equal "$(cat "$T/db.conf")" "$(pg_conninfo src m1)"
  run leftovers m1
  assert_output "pub:
slot:
sub:"
}

@test "pg_sync: killed right after creating the subscription, resume finishes the sync and rollback drops it all" {
  export TEST_PG_PW="$PG_PASSWORD"
  make_dbs s6 2000
  sync_runbook s6
  # records: run.started, step.started, note (publication), note (subscription)
  ZDM_TEST_CRASH_AFTER_RECORD=4 run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 137
  # (a table-sync slot pg_<subid>_sync_... may be there too, mid-copy)
  run leftovers s6
  assert_line "pub:zdm_s6_sync"
  assert_line --regexp "^slot:(pg_[0-9]+_sync_[0-9_]+,)*zdm_s6_sync$"
  assert_line "sub:zdm_s6_sync"
  # the objects are this step's (the snapshot says they did not exist before):
  # the rerun takes them over instead of refusing
  run zdm resume "$T/rb.yml" --state-dir "$T/state"
  echo "$output"
  assert_success
  assert_output --partial "running it again (idempotent)"
  assert_output --partial "parity verified (count): 3000 rows in 2 table(s)"
  parity s6
  # 'after' (exec, no undo) is left in place: exit 6
  run zdm rollback "$T/rb.yml" --state-dir "$T/state"
  echo "$output"
  assert_equal "$status" 6
  run leftovers s6
  assert_output "pub:
slot:
sub:"
}

@test "postgres_sync: a CREATE SUBSCRIPTION that fails does not put the source password in the target's server log" {
  make_dbs s_log 10
  # the target reaches the "publisher" on a port where nothing listens: the
  # CREATE SUBSCRIPTION (which carries the password) fails on the target
  local dead; dead="$(free_port)"
  sync_runbook s_log "      publisher: \"host=127.0.0.1 port=$dead dbname=s_log user=$PG_USER\""
  run env TEST_PG_PW="$PG_PASSWORD" "$ZDM_BIN" run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "target: CREATE SUBSCRIPTION"
  refute grep -qF "$PG_PASSWORD" "$PG_ROOT/dst/server.log"
  refute grep -rqF "$PG_PASSWORD" "$T/state"
  refute grep -qF "$PG_PASSWORD" <<<"$output"
  # and nothing of the step is left
  run leftovers s_log
  assert_output "$(printf 'pub:\nslot:\nsub:')"
}
