#!/usr/bin/env bats
# db.pgbouncer against a real PgBouncer (Debian's pgbouncer, started by the
# test: tests/servers/pgbouncer.bash) in front of two real PostgreSQL 15
# clusters (tests/servers/postgres.bash), src and dst, shared by the file.
# Each test has its own databases (t<test number>) and its own PgBouncer.
#
#   - cutover while pgbench writes through PgBouncer: no failed transaction,
#     the last write before the switch is on the target, none lands on the
#     source after it; sequences copied; the admin password never written;
#   - pause bounded by drain_timeout: a long open transaction makes the step
#     fail, PgBouncer is resumed, the clients that waited get their answers;
#   - switch alone: only the entry's line changes, RELOAD, SHOW DATABASES;
#     its undo puts the old bytes back;
#   - zdm SIGKILLed while clients are paused (mid-cutover): zdm resume and
#     zdm rollback each end with PgBouncer resumed, pointing at a side that
#     holds every row (killed before and after the switch, both ways);
#   - bad input: validation (exit 2), unknown database, wrong admin
#     password, a config without the entry (check and run);
#   - runbooks/postgres-cutover.yml end to end, with its health gate failing
#     (rolled back onto the source) and passing (replication dropped).

bats_require_minimum_version 1.5.0
load helper
load servers/postgres
load servers/pgbouncer

setup_file() {
  [ -x "$PG_BIN/pgbench" ] || { echo "pgbench is missing ($PG_BIN/pgbench: postgresql-15)" >&2; return 1; }
  pg_start src
  pg_start dst
}

teardown_file() {
  pgb_stop_all
  pg_stop_all
}

# the helper's teardown, run after this file's own
eval "helper_$(declare -f teardown)"
teardown() {
  [ -z "${PGB:-}" ] || pgb_stop "$PGB"
  rollback_sync
  helper_teardown
}

# this test's database $DB (t<N>) on src, with orders (a bigserial key, $1
# rows) and, with "bench" as $2, pgbench's tables (scale 1); an empty one on
# dst; PgBouncer $PGB with one entry, app, pointing at src
make_app() {
  DB="t${BATS_TEST_NUMBER}"
  PGB="b${BATS_TEST_NUMBER}"
  TABLES=orders
  pg_createdb src "$DB"
  pg_createdb dst "$DB"
  if [ "${2:-}" = bench ]; then
    "$PG_BIN/pgbench" -i -q -s 1 -h "$PG_ROOT/src" -p "$(pg_port src)" -U postgres "$DB" >/dev/null 2>&1
    pg_psql src "$DB" -c "ALTER TABLE pgbench_history REPLICA IDENTITY FULL"
    TABLES="pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history, orders"
  fi
  pg_psql src "$DB" -c "CREATE TABLE orders (id bigserial PRIMARY KEY, note text);
    INSERT INTO orders (note) SELECT 'before ' || g FROM generate_series(1, ${1:-100}) g;
    GRANT ALL ON ALL TABLES IN SCHEMA public TO $PG_USER;
    GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO $PG_USER"
  pgb_start "$PGB" "app = host=127.0.0.1 port=$(pg_port src) dbname=$DB"
  export TEST_PG_PW="$PG_PASSWORD" TEST_PGB_PW="$PGB_ADMIN_PASSWORD"
}

# replicate $DB from src to dst with db.postgres_sync (its own runbook and
# state dir): the subscription the cutover waits for
sync_app() {
  cat >"$T/sync.yml" <<EOF
zdm: 1
name: pgb-sync
secrets:
  pw: {env: TEST_PG_PW}
steps:
  - id: sync
    uses: db.postgres_sync
    with:
      source: "$(pg_conninfo src "$DB")"
      target: "$(pg_conninfo dst "$DB")"
      source_password: \${{ secrets.pw }}
      target_password: \${{ secrets.pw }}
      tables: [$TABLES]
      copy_schema: true
      pg_dump: $PG_BIN/pg_dump
      psql: $PG_BIN/psql
      verify: count
EOF
  run zdm run "$T/sync.yml" --state-dir "$T/sync-state"
  echo "$output"
  assert_success
}

# drop the replication of this test's database (the clusters are shared)
rollback_sync() {
  [ -f "$T/sync.yml" ] || return 0
  timeout 60 "$ZDM_BIN" rollback "$T/sync.yml" --state-dir "$T/sync-state" >/dev/null 2>&1 || true
}

# $T/rb.yml: one db.pgbouncer step `step` with action $1 and the lines $2
# added to its `with:`; "fail" as $3 adds a step after it that fails
pgb_runbook() {
  {
    cat <<EOF
zdm: 1
name: pgb
secrets:
  adm: {env: TEST_PGB_PW}
  pw: {env: TEST_PG_PW}
defaults: {timeout: 60s}
steps:
  - id: step
    uses: db.pgbouncer
    with:
      action: $1
      admin: "$(pgb_admin_conninfo "$PGB")"
      admin_password: \${{ secrets.adm }}
      database: app
EOF
    [ -z "${2:-}" ] || printf '%s\n' "$2" | sed 's/^/      /'
    if [ "${3:-}" = fail ]; then
      printf '  - id: boom\n    uses: exec\n    with: {command: ["false"]}\n'
    fi
  } >"$T/rb.yml"
}

cutover_with() {
  cat <<EOF
config: $(pgb_ini "$PGB")
host: 127.0.0.1
port: $(pg_port dst)
source: "$(pg_conninfo src "$DB")"
target: "$(pg_conninfo dst "$DB")"
source_password: \${{ secrets.pw }}
target_password: \${{ secrets.pw }}
subscription: zdm_${DB}_sync
${1:-}
EOF
}

# psql through PgBouncer to database app
via_pgb() {
  PGPASSWORD="$PG_PASSWORD" "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 \
    -p "$(pgb_port "$PGB")" -U "$PG_USER" -d app "$@"
}

idle_in_transaction() { # N: N sessions of $DB on src are idle in a transaction
  [ "$(pg_psql src "$DB" -c "select count(*) from pg_stat_activity where datname = '$DB' and state = 'idle in transaction'")" = "$1" ]
}

paused_is() { # 0|1: PgBouncer's paused column of app
  [ "$(pgb_paused "$PGB" app)" = "$1" ]
}

history_rows() { # CLUSTER: every row of pgbench_history, sorted, one a line
  pg_psql "$1" "$DB" -c "COPY (SELECT tid, bid, aid, delta, mtime FROM pgbench_history) TO STDOUT" | sort
}

orders_rows() { # CLUSTER: every row of orders, sorted, one a line
  pg_psql "$1" "$DB" -c "COPY (SELECT id, note FROM orders) TO STDOUT" | sort
}

step_outputs() {
  jq -sc '[.[] | select(.event == "step.succeeded" and .step == "step")][0].data.outputs' "$(journal_of "$T/state")"
}

@test "pgbouncer: cutover while pgbench writes through PgBouncer: no failed transaction, the last write before the switch is on the target, none on the source after" {
  make_app 100 bench
  sync_app
  pgb_runbook cutover "$(cutover_with "margin: 50")"
  run zdm validate "$T/rb.yml"
  assert_success
  # pgbench writes through PgBouncer for 8 s; the cutover comes ~2 s in
  PGPASSWORD="$PG_PASSWORD" "$PG_BIN/pgbench" -n -T 8 -c 4 -j 2 -R 150 -h 127.0.0.1 -p "$(pgb_port "$PGB")" \
    -U "$PG_USER" app >"$T/pgbench.out" 2>&1 &
  local bench=$!
  sleep 2
  local before_cutover
  before_cutover="$(pg_psql src "$DB" -c "select count(*) from pgbench_history")"
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  echo "$output"
  local rc=$status
  # what the source holds when the step is done: no write may land there later
  local src_at_switch
  src_at_switch="$(pg_psql src "$DB" -c "select count(*) from pgbench_history")"
  wait "$bench"
  local bench_rc=$?
  cat "$T/pgbench.out"
  assert_equal "$rc" 0
  assert_equal "$bench_rc" 0
  grep -q "number of failed transactions: 0 " "$T/pgbench.out"
  refute grep -q "aborted" "$T/pgbench.out"
  # pgbench wrote through the source before, and through the target after
  [ "$before_cutover" -gt 0 ]
  [ "$(pg_psql src "$DB" -c "select count(*) from pgbench_history")" = "$src_at_switch" ]
  local dst_rows
  dst_rows="$(pg_psql dst "$DB" -c "select count(*) from pgbench_history")"
  [ "$dst_rows" -gt "$src_at_switch" ]
  # every row written to the source, the last one included, is on the target
  history_rows src >"$T/src.rows"
  history_rows dst >"$T/dst.rows"
  [ -s "$T/src.rows" ]
  assert_equal "$(comm -23 "$T/src.rows" "$T/dst.rows")" ""
  local last
  last="$(pg_psql src "$DB" -c "select aid || ' ' || delta || ' ' || mtime from pgbench_history order by mtime desc limit 1")"
  [ "$(pg_psql dst "$DB" -c "select count(*) from pgbench_history where aid || ' ' || delta || ' ' || mtime = '$last'")" = 1 ]
  # PgBouncer points at the target and is not paused
  assert_equal "$(pgb_points "$PGB" app)" "127.0.0.1 $(pg_port dst) $DB"
  assert_equal "$(pgb_paused "$PGB" app)" 0
  # the sequences were copied: the target's next id is past the source's + margin
  [ "$(pg_psql dst "$DB" -c "select last_value from orders_id_seq")" = 150 ]
  # outputs: the pause's length, the WAL position waited for
  local o
  o="$(step_outputs)"
  echo "$o"
  jq -e '(.pause_ms | type == "number") and .pause_ms >= 0 and .pause_ms < 10000 and (.lsn | test("^[0-9A-F]+/[0-9A-F]+$"))
         and .sequences == 1 and .host == "127.0.0.1" and .dbname == "'"$DB"'"' <<<"$o"
  assert_output --partial "clients paused"
  # the journal: pausing, paused, caught up, switched, resumed, in that order
  assert_equal "$(jq -r 'select(.event | startswith("pgbouncer.")) | .event' "$(journal_of "$T/state")" | tr '\n' ' ')" \
    "pgbouncer.pausing pgbouncer.paused pgbouncer.caught_up pgbouncer.switched pgbouncer.resumed "
  # the admin password and the servers' password are nowhere of zdm's
  refute grep -rqF "$PGB_ADMIN_PASSWORD" "$T/state"
  refute grep -rqF "$PG_PASSWORD" "$T/state"
  refute grep -qF "$PGB_ADMIN_PASSWORD" <<<"$output"
  run zdm log --state-dir "$T/state"
  refute grep -qF "$PGB_ADMIN_PASSWORD" <<<"$output"
  # the old config is what the undo will write back
  jq -se '[.[] | select(.event == "step.succeeded")][0].data.undo_data.old | contains("port='"$(pg_port src)"'")' \
    "$(journal_of "$T/state")"
}

@test "pgbouncer: a cutover rolled back switches back under a pause: the source again, resumed, clients never saw an error" {
  make_app 20
  sync_app
  pgb_runbook cutover "$(cutover_with)" fail
  cp "$(pgb_ini "$PGB")" "$T/ini.before"
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  echo "$output"
  assert_equal "$status" 1
  assert_output --partial "undone"
  # the file's old bytes are back, PgBouncer points at the source, not paused
  cmp "$T/ini.before" "$(pgb_ini "$PGB")"
  assert_equal "$(pgb_points "$PGB" app)" "127.0.0.1 $(pg_port src) $DB"
  assert_equal "$(pgb_paused "$PGB" app)" 0
  via_pgb -c "INSERT INTO orders (note) VALUES ('after rollback')"
  [ "$(pg_psql src "$DB" -c "select count(*) from orders where note = 'after rollback'")" = 1 ]
  # the undo paused, switched back and resumed
  jq -se '[.[] | select(.event == "pgbouncer.pausing")] | length == 2' "$(journal_of "$T/state")"
}

@test "pgbouncer: pause waits at most drain_timeout for an open transaction, then RESUMEs and fails; waiting clients get their answers" {
  make_app 10
  pgb_runbook pause "drain_timeout: 1500ms"
  # a transaction through PgBouncer that stays open for 5 s
  (echo "BEGIN; INSERT INTO orders (note) VALUES ('long');"; sleep 5; echo "COMMIT;") |
    via_pgb >"$T/long.out" 2>&1 &
  local long=$!
  poll 100 0.05 idle_in_transaction 1
  zdm run "$T/rb.yml" --state-dir "$T/state" >"$T/zdm.out" 2>&1 &
  local z=$!
  # a client that comes while PgBouncer pauses: it waits, it gets no error
  poll 200 0.02 paused_is 1
  via_pgb -c "INSERT INTO orders (note) VALUES ('waited')" >"$T/waiter.out" 2>&1 &
  local waiter=$!
  local rc=0
  wait "$z" || rc=$?
  cat "$T/zdm.out"
  assert_equal "$rc" 1
  grep -q "PAUSE app did not complete within drain_timeout 1500ms" "$T/zdm.out"
  grep -q "resumed app" "$T/zdm.out"
  grep -q "nothing to undo" "$T/zdm.out"
  wait "$waiter"
  wait "$long"
  cat "$T/waiter.out" "$T/long.out"
  refute grep -q "ERROR" "$T/waiter.out" "$T/long.out"
  assert_equal "$(pgb_paused "$PGB" app)" 0
  [ "$(pg_psql src "$DB" -c "select count(*) from orders where note in ('long', 'waited')")" = 2 ]
  assert_equal "$(jq -r 'select(.event | startswith("pgbouncer.")) | .event' "$(journal_of "$T/state")" | tr '\n' ' ')" \
    "pgbouncer.pausing pgbouncer.resumed "
}

@test "pgbouncer: pause, switch and resume as steps; the rollback RESUMEs, the switch's undo writes the old bytes back" {
  make_app 10
  local ini
  ini="$(pgb_ini "$PGB")"
  # a comment, another entry and odd spacing that the rewrite must keep
  sed -i "s|^\[databases\]|[databases]\n; the application's database\nother   =  host=127.0.0.1 port=$(pg_port src) dbname=postgres  pool_size=3|" "$ini"
  sed -i "s|^app = \(.*\)|app =   \1 pool_size=5|" "$ini"
  pgb_admin "$PGB" "RELOAD" >/dev/null
  cp "$ini" "$T/ini.before"
  cat >"$T/rb.yml" <<EOF
zdm: 1
name: pgb-steps
secrets:
  adm: {env: TEST_PGB_PW}
steps:
  - id: hold
    uses: db.pgbouncer
    with: &pgb
      action: pause
      admin: "$(pgb_admin_conninfo "$PGB")"
      admin_password: \${{ secrets.adm }}
      database: app
  - id: move
    uses: db.pgbouncer
    with:
      action: switch
      admin: "$(pgb_admin_conninfo "$PGB")"
      admin_password: \${{ secrets.adm }}
      database: app
      config: $ini
      host: 127.0.0.1
      port: $(pg_port dst)
  - id: release
    uses: db.pgbouncer
    with:
      <<: *pgb
      action: resume
  - id: boom
    uses: exec
    with: {command: ["false"]}
EOF
  run zdm validate "$T/rb.yml"
  assert_success
  run zdm plan "$T/rb.yml"
  assert_success
  assert_output --partial "PAUSE app at PgBouncer (host=127.0.0.1 port=$(pgb_port "$PGB") dbname=pgbouncer user=$PGB_ADMIN): wait at most 10s"
  assert_output --partial "rewrite app's entry in [databases] of $ini to host=127.0.0.1 port=$(pg_port dst) (line 4, now: host=127.0.0.1 port=$(pg_port src) dbname=$DB pool_size=5)"
  assert_output --partial "RESUME app at PgBouncer"
  # the switch is checked: the entry it would write
  run zdm run "$T/rb.yml" --state-dir "$T/state" --dry-run
  echo "$output"
  assert_success
  assert_output --partial "would become: app = host=127.0.0.1 port=$(pg_port dst) dbname=$DB pool_size=5"
  cmp "$T/ini.before" "$ini"

  run zdm run "$T/rb.yml" --state-dir "$T/state"
  echo "$output"
  assert_equal "$status" 1
  local j
  j="$(journal_of "$T/state")"
  # the switch changed only the entry's line, and verified it
  jq -se '[.[] | select(.event == "step.succeeded" and .step == "move")][0].data.outputs
          | .port == "'"$(pg_port dst)"'" and .previous == "host=127.0.0.1 port='"$(pg_port src)"' dbname='"$DB"'"' "$j"
  # rolled back: the old bytes, RELOADed, resumed
  cmp "$T/ini.before" "$ini"
  assert_equal "$(pgb_points "$PGB" app)" "127.0.0.1 $(pg_port src) $DB"
  assert_equal "$(pgb_paused "$PGB" app)" 0
  assert_output --partial "nothing to undo"
  via_pgb -c "select 1" >/dev/null
}

@test "pgbouncer: switch alone rewrites the entry atomically and verifies it; zdm rollback puts it back" {
  make_app 10
  local ini
  ini="$(pgb_ini "$PGB")"
  pgb_runbook switch "config: $ini
host: 127.0.0.1
port: $(pg_port dst)
dbname: postgres"
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  echo "$output"
  assert_success
  assert_equal "$(pgb_points "$PGB" app)" "127.0.0.1 $(pg_port dst) postgres"
  grep -qx "app = host=127.0.0.1 port=$(pg_port dst) dbname=postgres" "$ini"
  [ "$(grep -c . "$ini")" -gt 10 ]
  # no temp file left beside it
  assert_equal "$(ls -A "$(dirname "$ini")" | grep -c zdm)" 0
  run zdm rollback "$T/rb.yml" --state-dir "$T/state"
  echo "$output"
  assert_success
  assert_equal "$(pgb_points "$PGB" app)" "127.0.0.1 $(pg_port src) $DB"
}

# a cutover killed (SIGKILL) right after journal record $1: PgBouncer is
# left paused; a client that came meanwhile waits
crash_cutover() {
  make_app 30
  sync_app
  pgb_runbook cutover "$(cutover_with)"
  # records: 1 run.started, 2 step.started, 3 pgbouncer.pausing, 4 pgbouncer.paused,
  # 5 pgbouncer.caught_up, 6 pgbouncer.switched, 7 pgbouncer.resumed
  ZDM_TEST_CRASH_AFTER_RECORD="$1" run zdm run "$T/rb.yml" --state-dir "$T/state"
  echo "$output"
  assert_equal "$status" 137
  [ "$(jq -sr '.[-1].event' "$(journal_of "$T/state")")" = "$2" ]
  assert_equal "$(pgb_paused "$PGB" app)" 1
  via_pgb -c "INSERT INTO orders (note) VALUES ('while paused')" >"$T/waiter.out" 2>&1 &
  WAITER=$!
  sleep 0.3
  kill -0 "$WAITER"	# still waiting
}

@test "pgbouncer: zdm killed while paused before the switch: zdm resume RESUMEs, then finishes the cutover; the target holds every row" {
  crash_cutover 4 pgbouncer.paused
  run zdm resume "$T/rb.yml" --state-dir "$T/state"
  echo "$output"
  assert_success
  assert_output --partial "an earlier attempt of this step had paused it"
  wait "$WAITER"
  refute grep -q ERROR "$T/waiter.out"
  assert_equal "$(pgb_paused "$PGB" app)" 0
  assert_equal "$(pgb_points "$PGB" app)" "127.0.0.1 $(pg_port dst) $DB"
  # the target holds every row of the source, and what clients wrote after
  orders_rows src >"$T/src.rows"
  orders_rows dst >"$T/dst.rows"
  assert_equal "$(comm -23 "$T/src.rows" "$T/dst.rows")" ""
  [ "$(pg_psql dst "$DB" -c "select count(*) from orders where note = 'while paused'")" = 1 ]
  [ "$(pg_psql src "$DB" -c "select count(*) from orders")" = 30 ] || [ "$(pg_psql src "$DB" -c "select count(*) from orders")" = 31 ]
  [ "$(pg_psql dst "$DB" -c "select count(*) from orders")" -ge 31 ]
}

@test "pgbouncer: zdm killed while paused after the switch: zdm rollback points back at the source and RESUMEs; nothing was written to the target" {
  crash_cutover 6 pgbouncer.switched
  assert_equal "$(pgb_points "$PGB" app)" "127.0.0.1 $(pg_port dst) $DB"
  run zdm rollback "$T/rb.yml" --state-dir "$T/state"
  echo "$output"
  assert_success
  wait "$WAITER"
  refute grep -q ERROR "$T/waiter.out"
  assert_equal "$(pgb_paused "$PGB" app)" 0
  assert_equal "$(pgb_points "$PGB" app)" "127.0.0.1 $(pg_port src) $DB"
  # the client that waited wrote to the source, which holds every row
  [ "$(pg_psql src "$DB" -c "select count(*) from orders where note = 'while paused'")" = 1 ]
  [ "$(pg_psql src "$DB" -c "select count(*) from orders")" = 31 ]
}

@test "pgbouncer: zdm killed while paused before the switch: zdm rollback RESUMEs on the source, changes nothing else" {
  crash_cutover 4 pgbouncer.paused
  cp "$(pgb_ini "$PGB")" "$T/ini.before"
  run zdm rollback "$T/rb.yml" --state-dir "$T/state"
  echo "$output"
  assert_success
  assert_output --partial "resumed it (the step had paused it)"
  wait "$WAITER"
  refute grep -q ERROR "$T/waiter.out"
  assert_equal "$(pgb_paused "$PGB" app)" 0
  assert_equal "$(pgb_points "$PGB" app)" "127.0.0.1 $(pg_port src) $DB"
  cmp "$T/ini.before" "$(pgb_ini "$PGB")"
  [ "$(pg_psql src "$DB" -c "select count(*) from orders")" = 31 ]
}

@test "pgbouncer: zdm killed while paused after the switch: zdm resume RESUMEs on the target and finishes; its undo still knows the source" {
  crash_cutover 6 pgbouncer.switched
  run zdm resume "$T/rb.yml" --state-dir "$T/state"
  echo "$output"
  assert_success
  wait "$WAITER"
  refute grep -q ERROR "$T/waiter.out"
  assert_equal "$(pgb_paused "$PGB" app)" 0
  assert_equal "$(pgb_points "$PGB" app)" "127.0.0.1 $(pg_port dst) $DB"
  # the client that waited wrote to the target, which holds the source's rows too
  [ "$(pg_psql dst "$DB" -c "select count(*) from orders where note = 'while paused'")" = 1 ]
  [ "$(pg_psql dst "$DB" -c "select count(*) from orders")" = 31 ]
  [ "$(pg_psql src "$DB" -c "select count(*) from orders")" = 30 ]
  # the rerun recorded the file from before the first attempt, not its own half-done one
  jq -se '[.[] | select(.event == "step.succeeded")][0].data.undo_data.old | contains("port='"$(pg_port src)"'")' \
    "$(journal_of "$T/state")"
  run zdm rollback "$T/rb.yml" --state-dir "$T/state"
  assert_success
  assert_equal "$(pgb_points "$PGB" app)" "127.0.0.1 $(pg_port src) $DB"
  assert_equal "$(pgb_paused "$PGB" app)" 0
}

@test "pgbouncer: bad input: exit 2 at validate; unknown database, wrong admin password, a config without the entry fail naming them" {
  make_app 5
  local ini
  ini="$(pgb_ini "$PGB")"
  # validation: nothing runs (exit 2), each names the param
  pgb_runbook bogus
  run zdm validate "$T/rb.yml"
  assert_equal "$status" 2
  assert_output --partial "param 'action': must be pause, resume, switch or cutover"
  pgb_runbook switch "port: 70000"
  run zdm validate "$T/rb.yml"
  assert_equal "$status" 2
  assert_output --partial "param 'config': action switch needs the PgBouncer config file to rewrite"
  assert_output --partial "param 'host': action switch needs the new server's host"
  assert_output --partial "param 'port': must be from 1 to 65535"
  pgb_runbook pause "host: 10.0.0.1"
  run zdm validate "$T/rb.yml"
  assert_equal "$status" 2
  assert_output --partial "param 'host': is only read by action cutover and switch, not pause"
  pgb_runbook cutover "config: $ini
host: h"
  run zdm validate "$T/rb.yml"
  assert_equal "$status" 2
  assert_output --partial "param 'subscription': action cutover needs it"
  sed -i 's|dbname=pgbouncer|dbname=app|' "$T/rb.yml"
  run zdm validate "$T/rb.yml"
  assert_equal "$status" 2
  assert_output --partial "param 'admin': must name PgBouncer's admin console: dbname=pgbouncer"
  pgb_runbook pause
  sed -i 's|admin_password: .*|admin_password: literal-pw|' "$T/rb.yml"
  run zdm validate "$T/rb.yml"
  assert_equal "$status" 2
  assert_output --partial "param 'admin_password': must come from secrets"
  pgb_runbook pause
  sed -i 's|dbname=pgbouncer|dbname=pgbouncer password=x|' "$T/rb.yml"
  run zdm validate "$T/rb.yml"
  assert_equal "$status" 2
  assert_output --partial "param 'admin': must not hold a password"

  # a database PgBouncer does not have
  pgb_runbook pause
  sed -i 's|database: app|database: nosuch|' "$T/rb.yml"
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  echo "$output"
  assert_equal "$status" 1
  assert_output --partial "PgBouncer has no database 'nosuch' (SHOW DATABASES lists: app)"
  run zdm run "$T/rb.yml" --state-dir "$T/state" --dry-run
  assert_equal "$status" 1
  assert_output --partial "check failed: PgBouncer has no database 'nosuch'"

  # a wrong admin password: the admin console refuses; no password printed
  pgb_runbook pause
  TEST_PGB_PW=wrong-pw-123 run zdm run "$T/rb.yml" --state-dir "$T/state"
  echo "$output"
  assert_equal "$status" 1
  assert_output --partial "PgBouncer admin console (user $PGB_ADMIN): connect host=127.0.0.1 port=$(pgb_port "$PGB") dbname=pgbouncer:"
  assert_output --partial "authentication failed"
  refute_output --partial "wrong-pw-123"
  assert_equal "$(pgb_paused "$PGB" app)" 0

  # a config file without the entry: the dry run's check says so, the run
  # changes nothing
  cp "$ini" "$T/other.ini"
  sed -i '/^app = /d' "$T/other.ini"
  cp "$T/other.ini" "$T/other.before"
  pgb_runbook switch "config: $T/other.ini
host: 127.0.0.1
port: $(pg_port dst)"
  run zdm run "$T/rb.yml" --state-dir "$T/state" --dry-run
  echo "$output"
  assert_equal "$status" 1
  assert_output --partial "check failed: $T/other.ini has no entry for database 'app' in [databases]"
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "$T/other.ini has no entry for database 'app' in [databases]"
  cmp "$T/other.ini" "$T/other.before"
  assert_equal "$(pgb_points "$PGB" app)" "127.0.0.1 $(pg_port src) $DB"
  # an entry that holds a password: its bytes would be journaled
  echo "app = host=127.0.0.1 port=$(pg_port dst) dbname=$DB password=oops" >"$T/pw.ini"
  sed -i '1i [databases]' "$T/pw.ini"
  pgb_runbook switch "config: $T/pw.ini
host: 127.0.0.1"
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "$T/pw.ini line 2: the entry of database 'app' holds a password"
  refute grep -rqF oops "$T/state"
}

# an HTTP server in $T/www on a free port: the application's health check
# ($T/www/health: healthy while it exists); sets HEALTH_URL
start_health() {
  mkdir -p "$T/www"
  echo ok >"$T/www/health"
  local port
  port="$(free_port)"
  python3 -m http.server --bind 127.0.0.1 --directory "$T/www" "$port" >"$T/www.log" 2>&1 &
  poll 100 0.05 port_open "$port" || { cat "$T/www.log" >&2; return 1; }
  HEALTH_URL="http://127.0.0.1:$port/health"
}


@test "pgbouncer: runbooks/postgres-cutover.yml syncs, cuts over at PgBouncer, checks health, drops the replication; a failed health gate puts PgBouncer back on the source" {
  make_app 40
  pg_psql dst "$DB" -c "CREATE TABLE orders (id bigserial PRIMARY KEY, note text); ALTER TABLE orders OWNER TO $PG_USER"
  start_health
  export SOURCE_PGPASSWORD="$PG_PASSWORD" TARGET_PGPASSWORD="$PG_PASSWORD" PGBOUNCER_PASSWORD="$PGB_ADMIN_PASSWORD"
  local rb="$REPO/runbooks/postgres-cutover.yml"
  local vars=(--var source="$(pg_conninfo src "$DB")" --var target="$(pg_conninfo dst "$DB")"
    --var tables=public.orders --var pgbouncer_admin="$(pgb_admin_conninfo "$PGB")"
    --var pgbouncer_config="$(pgb_ini "$PGB")" --var database=app
    --var target_host=127.0.0.1 --var target_port="$(pg_port dst)" --var health_url="$HEALTH_URL")
  run zdm validate "$rb" "${vars[@]}"
  assert_success
  # the health check fails: the rollback switches back and drops the replication
  rm "$T/www/health"
  run zdm run "$rb" "${vars[@]}" --state-dir "$T/state-fail"
  echo "$output"
  assert_equal "$status" 1
  assert_equal "$(pgb_points "$PGB" app)" "127.0.0.1 $(pg_port src) $DB"
  assert_equal "$(pgb_paused "$PGB" app)" 0
  assert_equal "$(pg_psql dst "$DB" -c "select count(*) from pg_subscription")" 0
  assert_equal "$(pg_psql src "$DB" -c "select count(*) from pg_publication")" 0
  via_pgb -c "INSERT INTO orders (note) VALUES ('after the failed run')"
  [ "$(pg_psql src "$DB" -c "select count(*) from orders")" = 41 ]
  # healthy: the run goes through, replication is dropped at the end
  pg_psql dst "$DB" -c "TRUNCATE orders"
  echo ok >"$T/www/health"
  run zdm run "$rb" "${vars[@]}" --state-dir "$T/state"
  echo "$output"
  assert_success
  assert_equal "$(pgb_points "$PGB" app)" "127.0.0.1 $(pg_port dst) $DB"
  assert_equal "$(pgb_paused "$PGB" app)" 0
  assert_equal "$(pg_psql dst "$DB" -c "select count(*) from pg_subscription")" 0
  assert_equal "$(pg_psql src "$DB" -c "select count(*) from pg_publication")" 0
  assert_equal "$(pg_psql src postgres -c "select count(*) from pg_replication_slots where database = '$DB'")" 0
  # the application writes to the target now, with ids past the source's
  via_pgb -c "INSERT INTO orders (note) VALUES ('on the target')"
  [ "$(pg_psql dst "$DB" -c "select id from orders where note = 'on the target'")" -gt 1041 ]
  [ "$(pg_psql dst "$DB" -c "select count(*) from orders")" = 42 ]
  [ "$(pg_psql src "$DB" -c "select count(*) from orders")" = 41 ]
}
