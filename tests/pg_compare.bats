#!/usr/bin/env bats
# db.postgres_compare against two real PostgreSQL 15 clusters made by the
# tests (tests/servers/postgres.bash): one changed and one missing row found
# and named among 1M rows; no divergence reported while a writer changes the
# source and logical replication carries the changes to the target; a chunk
# that never stops changing pauses the run (exit 4); a crash part-way
# resumed without reading the verified chunks again; refusals of bad input.
#
# Two clusters for the file (setup_file): src and dst; each test has its own
# database (t<N>) on both.

bats_require_minimum_version 1.5.0
load helper
load servers/postgres

setup_file() {
  pg_start src
  pg_start dst
}

teardown_file() {
  pg_stop_all
}

teardown() {
  # a writer a test left running, then the subscription (its slot holds WAL)
  stop_writer
  if [ -n "${DB:-}" ]; then
    pg_psql dst "$DB" -c "SELECT 1" >/dev/null 2>&1 && \
      pg_psql dst "$DB" -c "DO \$\$ DECLARE s text; BEGIN
        FOR s IN SELECT subname FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) LOOP
          EXECUTE format('ALTER SUBSCRIPTION %I DISABLE', s);
          EXECUTE format('ALTER SUBSCRIPTION %I SET (slot_name = NONE)', s);
          EXECUTE format('DROP SUBSCRIPTION %I', s);
        END LOOP; END \$\$" >/dev/null 2>&1
    pg_psql src postgres -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '$DB'" >/dev/null 2>&1
  fi
  pkill -9 -f "$T/" 2>/dev/null || true
  cd /
  rm -rf "$T"
}

# database t<N> on both clusters with table items (id bigint PK, v int,
# note text, at timestamptz) created by SQL $1 (default: the table only)
# plus rows ids 1..$2 (default 0) on the source, and on the target unless
# $3 = empty
make_dbs() {
  DB="t${BATS_TEST_NUMBER}"
  pg_createdb src "$DB"
  pg_createdb dst "$DB"
  local ddl="CREATE TABLE items (id bigint PRIMARY KEY, v int NOT NULL, note text,
    at timestamptz NOT NULL DEFAULT '2026-01-01 00:00:00+00')"
  local fill="INSERT INTO items (id, v, note) SELECT g, g % 1000, 'row ' || g FROM generate_series(1, ${2:-0}) g"
  pg_psql src "$DB" -c "$ddl; ${1:-SELECT 1}; $fill"
  pg_psql dst "$DB" -c "$ddl; ${1:-SELECT 1}"
  [ "${3:-}" = empty ] || pg_psql dst "$DB" -c "$fill"
  export PGPW="$PG_PASSWORD"
}

# logical replication of items from src to dst (the target table empty),
# waited for until the initial copy is done
replicate() {
  pg_psql src "$DB" -c "CREATE PUBLICATION pub_$DB FOR TABLE items"
  pg_psql dst "$DB" -c "CREATE SUBSCRIPTION sub_$DB CONNECTION '$(pg_conninfo src "$DB") password=$PG_PASSWORD' PUBLICATION pub_$DB"
  local i
  for i in $(seq 600); do
    [ "$(pg_psql dst "$DB" -c "SELECT count(*) FILTER (WHERE srsubstate <> 'r') FROM pg_subscription_rel")" = 0 ] && \
      [ "$(pg_psql dst "$DB" -c "SELECT count(*) FROM pg_subscription_rel")" -ge 1 ] && return 0
    sleep 0.1
  done
  echo "the subscription did not sync" >&2
  return 1
}

# $T/rb.yml: one db.postgres_compare step (id cmp) with the lines $1 added
# to its with:
compare_runbook() {
  {
    cat <<EOF
zdm: 1
name: pgcompare
secrets:
  pw: {env: PGPW}
steps:
  - id: cmp
    uses: db.postgres_compare
    timeout: 55s
    with:
      source: "$(pg_conninfo src "$DB")"
      target: "$(pg_conninfo dst "$DB")"
      source_password: \${{ secrets.pw }}
      target_password: \${{ secrets.pw }}
EOF
    printf '%s\n' "$1" | sed 's/^/      /'
  } >"$T/rb.yml"
}

# a bounded writer on the source in the background (WRITER: its pid): $1
# iterations of SQL $2 each in its own transaction, $3 s apart
writer() {
  PGAPPNAME="writer_$DB" pg_psql src "$DB" -c "DO \$\$ BEGIN FOR i IN 1..$1 LOOP $2; COMMIT; PERFORM pg_sleep($3); END LOOP; END \$\$" \
    >/dev/null 2>&1 &
  WRITER=$!
}

# stop the writer: its session on the server too (a DO block runs on after
# psql is gone)
stop_writer() {
  [ -n "${WRITER:-}" ] || return 0
  kill "$WRITER" 2>/dev/null
  pg_psql src postgres -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'writer_$DB'" >/dev/null
  wait "$WRITER" 2>/dev/null || true
  WRITER=
}

@test "postgres_compare: one changed and one missing row among 1M rows are found and named" {
  make_dbs "" 1000000
  pg_psql dst "$DB" -c "UPDATE items SET v = v + 1 WHERE id = 500000; DELETE FROM items WHERE id = 750000"
  compare_runbook "table: items"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  msg="source and target differ: public.items differs in 2 chunks of 100: id=500000 differs; id=750000 missing on the target"
  assert_output --partial "$msg"
  run jq -r 'select(.event=="step.failed") | .data.error' "$(J)"
  assert_output "$msg"
  # the evidence: the two chunks with their keys; the 98 others verified
  run jq -c 'select(.event=="compare.chunk" and .data.status=="diverged") | [.data.chunk, .data.keys]' "$(J)"
  assert_output "$(printf '%s\n' '[50,[{"key":"id=500000","kind":"differs"}]]' '[75,[{"key":"id=750000","kind":"missing on the target"}]]')"
  run jq -s '[.[] | select(.event=="compare.chunk" and .data.status=="verified")] | length' "$(J)"
  assert_output 98
  run jq -c 'select(.event=="compare.chunks") | [.data.table, .data.key, (.data.bounds | length), .data.bounds[0]]' "$(J)"
  assert_output '["public.items",["id"],99,["10001"]]'
  run grep -rF "$PG_PASSWORD" "$T/state"
  assert_equal "$status" 1
}

@test "postgres_compare: a row only on the target, max_report caps the keys named" {
  make_dbs "" 5000
  pg_psql dst "$DB" -c "INSERT INTO items (id, v) VALUES (0, 1), (6000, 2);
    UPDATE items SET note = 'x' WHERE id BETWEEN 100 AND 109"
  compare_runbook "table: public.items
chunk_rows: 1000
max_report: 3"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  run jq -r 'select(.event=="step.failed") | .data.error' "$(J)"
  assert_output "source and target differ: public.items differs in 2 chunks of 5: id=0 only on the target; id=100 differs; id=101 differs; more rows differ (max_report 3 reached)"
}

@test "postgres_compare: no divergence while a writer changes the source under logical replication, over several runs" {
  make_dbs "" 100000 empty
  replicate
  # about 50 writes a second for at most 60 s: updates anywhere, inserts past the end
  writer 3000 "UPDATE items SET v = v + 1, at = now() WHERE id = 1 + (random() * 99999)::int;
    IF i % 5 = 0 THEN INSERT INTO items (id, v) VALUES (100000 + i, i); END IF" 0.02
  compare_runbook "table: items
max_retries: 30
retry_delay: 200ms"
  for n in 1 2 3; do
    run zdm run rb.yml --state-dir "$T/state$n"
    echo "run $n: $output"
    assert_equal "$status" 0
    run jq -c 'select(.event=="step.succeeded") | .data.outputs | [.chunks >= 10, .diverged_chunks, .hot_chunks, .verified_chunks == .chunks]' "$(journal_of "$T/state$n")"
    assert_output '[true,0,0,true]'
  done
  # the writer was still writing: the comparison ran under writes
  kill -0 "$WRITER"
}

@test "postgres_compare: publication: compares each of its tables" {
  make_dbs "CREATE TABLE lines (order_id bigint, line int, sku text, PRIMARY KEY (order_id, line));
    INSERT INTO lines SELECT g, l, 'sku-' || l FROM generate_series(1, 3000) g, generate_series(1, 3) l" 3000 empty
  replicate
  pg_psql src "$DB" -c "ALTER PUBLICATION pub_$DB ADD TABLE lines"
  pg_psql dst "$DB" -c "ALTER SUBSCRIPTION sub_$DB REFRESH PUBLICATION WITH (copy_data = false)"
  for i in $(seq 100); do
    [ "$(pg_psql dst "$DB" -c "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'")" = 0 ] && break
    sleep 0.1
  done
  compare_runbook "publication: pub_$DB
chunk_rows: 1000"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  run jq -c 'select(.event=="compare.chunks") | [.data.table, .data.key, (.data.bounds | length), .data.bounds[0]]' "$(J)"
  assert_output "$(printf '%s\n' '["public.items",["id"],2,["1001"]]' '["public.lines",["order_id","line"],8,["334","2"]]')"
  run jq -c 'select(.event=="step.succeeded") | .data.outputs | [.tables, .chunks, .verified_chunks, .rows]' "$(J)"
  assert_output '[2,12,12,12000]'
  # a changed composite key is named by both columns
  pg_psql src "$DB" -c "ALTER PUBLICATION pub_$DB DROP TABLE lines"
  pg_psql dst "$DB" -c "UPDATE lines SET sku = 'changed' WHERE order_id = 2000 AND line = 2"
  run zdm run rb.yml --state-dir "$T/state2"
  assert_equal "$status" 0
  compare_runbook "table: lines
chunk_rows: 1000"
  run zdm run rb.yml --state-dir "$T/state3"
  assert_equal "$status" 1
  assert_output --partial "source and target differ: public.lines differs in 1 chunk of 9: order_id=2000,line=2 differs"
}

@test "postgres_compare: a chunk that never stops changing is inconclusive: the run pauses (exit 4); resume finishes it" {
  make_dbs "" 1000 empty
  replicate
  # row 5 changes as fast as the source commits, for at most 40 s
  writer 400000 "UPDATE items SET v = v + 1 WHERE id = 5" 0
  compare_runbook "table: items
chunk_rows: 100
max_retries: 2
retry_delay: 100ms
lag_wait: 2s"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 4
  assert_output --partial "inconclusive: 1 chunk of 10 still changing after max_retries (2): public.items chunk 1 (id < 101): the source changed"
  run jq -c 'select(.event=="step.failed" or .event=="run.paused") | [.event, .data.needs_decision]' "$(J)"
  assert_output "$(printf '%s\n' '["step.failed",true]' '["run.paused",true]')"
  run jq -s -c '[.[] | select(.event=="compare.hot") | .data.round]' "$(J)"
  assert_output '[0,1,2]'
  run jq -s '[.[] | select(.event=="compare.chunk" and .data.status=="verified")] | length' "$(J)"
  assert_output 9
  # the writer stops; zdm resume reads only the undecided chunk again
  stop_writer
  run zdm resume rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  run jq -c 'select(.event=="step.succeeded") | .data.outputs | [.chunks, .verified_chunks, .resumed_chunks]' "$(J)"
  assert_output '[10,10,9]'
  run jq -r 'select(.event=="compare.chunk") | "\(.attempt) \(.data.chunk)"' "$(J)"
  assert_output "$(printf '1 %s\n' 2 3 4 5 6 7 8 9 10; echo '2 1')"
}

@test "postgres_compare: killed after 3 chunks, resume does not read the verified chunks again" {
  make_dbs "" 100000
  compare_runbook "table: items"
  # records: 1 run.started, 2 step.started, 3 compare.chunks, 4..6 chunks 1..3
  run env ZDM_TEST_CRASH_AFTER_RECORD=6 "$ZDM_BIN" run rb.yml --state-dir "$T/state"
  assert_equal "$status" 137
  run zdm resume rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_output --partial "resuming: 3 chunks of 10 decided by earlier attempts"
  # every chunk once: 1-3 by the first attempt, 4-10 by the resume; the
  # chunks cut once
  run jq -r 'select(.event=="compare.chunk") | "\(.attempt) \(.data.chunk)"' "$(J)"
  assert_output "$(for c in $(seq 10); do echo "$(( c <= 3 ? 1 : 2 )) $c"; done)"
  run jq -s '[.[] | select(.event=="compare.chunks")] | length' "$(J)"
  assert_output 1
  run jq -c 'select(.event=="step.succeeded") | .data.outputs | [.chunks, .verified_chunks, .resumed_chunks, .rows]' "$(J)"
  assert_output '[10,10,3,100000]'
}

@test "postgres_compare: session settings make timestamps, floats and bytea compare alike whatever each server's defaults" {
  make_dbs "ALTER TABLE items ADD COLUMN f float8, ADD COLUMN b bytea" 0
  pg_psql src "$DB" -c "ALTER DATABASE $DB SET TimeZone = 'Asia/Tokyo'; ALTER DATABASE $DB SET extra_float_digits = 0;
    ALTER DATABASE $DB SET bytea_output = 'escape'; ALTER DATABASE $DB SET DateStyle = 'German'"
  for c in src dst; do
    pg_psql "$c" "$DB" -c "INSERT INTO items (id, v, at, f, b) SELECT g, g, '2026-06-01 12:00:00+00'::timestamptz + g * interval '1 hour', 0.1 + g * 0.2, '\\x00ff'::bytea FROM generate_series(1, 500) g"
  done
  compare_runbook "table: items"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  # the last digit of one float differs: found
  pg_psql dst "$DB" -c "UPDATE items SET f = f + 1e-15 WHERE id = 77"
  run zdm run rb.yml --state-dir "$T/state2"
  assert_equal "$status" 1
  assert_output --partial "public.items differs in 1 chunk of 1: id=77 differs"
}

@test "postgres_compare: a table without a primary key, a column on one side only, a missing table" {
  make_dbs "CREATE TABLE nokey (a int, b text)" 10
  compare_runbook "table: nokey"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "table public.nokey has no primary key on the source: db.postgres_compare cuts tables into primary-key ranges; add one (ALTER TABLE public.nokey ADD PRIMARY KEY (...))"
  pg_psql dst "$DB" -c "ALTER TABLE items ADD COLUMN extra int"
  compare_runbook "table: items"
  run zdm run rb.yml --state-dir "$T/state2"
  assert_equal "$status" 1
  assert_output --partial "column extra of public.items is on the target but not on the source"
  pg_psql dst "$DB" -c "ALTER TABLE items DROP COLUMN extra, DROP COLUMN note"
  run zdm run rb.yml --state-dir "$T/state3"
  assert_equal "$status" 1
  assert_output --partial "column note of public.items is on the source but not on the target"
  compare_runbook "table: nosuch"
  run zdm run rb.yml --state-dir "$T/state4"
  assert_equal "$status" 1
  assert_output --partial "table nosuch does not exist on the source"
  # a dry run runs it for real: it reads only
  run zdm run rb.yml --dry-run --state-dir "$T/state5"
  assert_equal "$status" 1
  assert_output --partial "table nosuch does not exist on the source"
}

@test "postgres_compare: bad input is refused before anything runs (exit 2)" {
  DB=postgres
  export PGPW="$PG_PASSWORD"
  compare_runbook "chunk_rows: 10"
  run zdm validate rb.yml
  assert_equal "$status" 2
  assert_output --partial "rb.yml:10:7: step 'cmp': give table: (one table) or publication: (its tables)"
  compare_runbook "table: items
publication: p
chunk_rows: 0
max_report: 0"
  run zdm validate rb.yml
  assert_equal "$status" 2
  assert_output --partial "rb.yml:15:20: step 'cmp': param 'publication': give table: or publication:, not both"
  assert_output --partial "rb.yml:16:19: step 'cmp': param 'chunk_rows': must be from 1 to 100000000"
  assert_output --partial "rb.yml:17:19: step 'cmp': param 'max_report': must be from 1 to 10000"
  sed -i "s/user=$PG_USER\"/user=$PG_USER password=hunter2\"/; s/target_password: .*/target_password: hunter2/" rb.yml
  sed -i '/^      publication/d; /^      chunk_rows/d; /^      max_report/d' rb.yml
  run zdm validate rb.yml
  assert_equal "$status" 2
  assert_output --partial "param 'source': must not hold a password"
  assert_output --partial "param 'target_password': must come from secrets"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 2
  [ ! -d "$T/state/runs" ] || [ -z "$(ls "$T/state/runs")" ]
}
