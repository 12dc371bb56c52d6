#!/usr/bin/env bash
# bench/pg_migrate.sh — what db.postgres_sql and db.postgres_backfill cost and save,
# beside the naive way, measured in the same run on one throwaway PostgreSQL 15 cluster.
#
#   make && bash bench/pg_migrate.sh        (from the repo root; about 30 s)
#
# 1. A DDL behind a long transaction.  A blocker reads the table and keeps its
#    transaction open for BLOCK_S seconds; a reader queries the table every 20 ms in
#    one session, each answer stamped with the server's clock; then
#    `ALTER TABLE items ADD COLUMN ...` is run
#      - naive: `psql -c` without lock_timeout (waits for the lock, and every reader
#        query queues behind it), and
#      - zdm:   db.postgres_sql with lock_timeout LOCK_MS and retries (default 500 ms).
#    Reported: the reader's largest gap between two answers (its stall), its answers,
#    and how long after the blocker's end the DDL was done (what the retries' backoff
#    costs).
# 2. A backfill of ROWS rows (`doubled = v * 2`):
#      - naive: one UPDATE of the whole table (one transaction: every row stays
#        locked until the end), and
#      - zdm:   db.postgres_backfill with batch_size 1000 and 10000.
#    Reported: the total time and the longest a row stayed locked (the longest
#    transaction: for zdm the longest batch, from the journal's backfill.batch times).
#
# It prints a table and exits 0 whatever the numbers (a benchmark never fails on a
# number); non-zero only when zdm or PostgreSQL failed to do what is measured.
#
# Environment:
#   ZDM_BIN   zdm binary (default: build/zdm)
#   BLOCK_S   the blocker's transaction, seconds (default 3)
#   LOCK_MS   db.postgres_sql's lock_timeout, ms (default 500)
#   ROWS      rows to backfill (default 200000)
#   KEEP=1    keep the temporary directory (journals, logs)

set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ZDM=${ZDM_BIN:-$REPO/build/zdm}
BLOCK_S=${BLOCK_S:-3}
LOCK_MS=${LOCK_MS:-500}
ROWS=${ROWS:-200000}

die() { printf 'pg_migrate.sh: %s\n' "$*" >&2; exit 1; }
[ -x "$ZDM" ] || die "no zdm binary at $ZDM (run make)"

W="$(mktemp -d /tmp/zdm-bench-pg.XXXXXX)"
chmod 755 "$W"
PG_ROOT="$W/pg"
export PG_ROOT
# shellcheck source=../tests/servers/postgres.bash
. "$REPO/tests/servers/postgres.bash"
cleanup() {
  pg_stop_all
  if [ "${KEEP:-}" = 1 ]; then echo "kept $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT
mkdir -p "$PG_ROOT"
pg_start bench >/dev/null || die "PostgreSQL did not start"
export PGPW="$PG_PASSWORD"
now_ms() { date +%s%3N; }

# ---- 1. DDL behind a long transaction ---------------------------------------------

# $1 = database: fresh table items(id, name) with 10000 rows
make_items() {
  pg_createdb bench "$1"
  pg_psql bench "$1" -c "CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL);
    INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 10000) g;
    ALTER TABLE items OWNER TO $PG_USER"
}

# starts the blocker and the reader on database $1; sets BLOCKER READER BLOCK_END_FILE
start_load() {
  local db="$1" n
  pg_psql bench "$db" -c "SELECT count(*) FROM items; SELECT pg_sleep($BLOCK_S)" >/dev/null 2>&1 &&
    now_ms >"$W/$db.blocker_end" &
  BLOCKER=$!
  for _ in $(seq 200); do
    n="$(pg_psql bench "$db" -c "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
      WHERE c.relname = 'items' AND l.granted AND l.pid <> pg_backend_pid()")"
    [ "$n" -ge 1 ] && break
    sleep 0.02
  done
  # reads for about BLOCK_S + 2 s at one query per 20 ms
  local reads=$(( (BLOCK_S + 2) * 50 ))
  for _ in $(seq "$reads"); do
    echo "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint || ':' || count(*) FROM items;"
    echo "SELECT pg_sleep(0.02);"
  done >"$W/$db.reader.sql"
  pg_psql bench "$db" -f "$W/$db.reader.sql" >"$W/$db.reader.out" 2>&1 &
  READER=$!
  # the DDL starts once the reader is answering, so its stall shows as a gap
  for _ in $(seq 200); do
    [ "$(grep -cE '^[0-9]+:[0-9]+$' "$W/$db.reader.out")" -ge 3 ] && break
    sleep 0.02
  done
  READS=$reads
}

# prints "maxgap answers" from the reader's output of database $1
reader_stats() {
  grep -E '^[0-9]+:[0-9]+$' "$W/$1.reader.out" | cut -d: -f1 |
    awk 'NR > 1 && $1 - p > m { m = $1 - p } { p = $1; n++ } END { print m + 0, n + 0 }'
}

make_items naive
start_load naive
pg_psql bench naive -c "ALTER TABLE items ADD COLUMN note text" || die "naive ALTER failed"
naive_done=$(now_ms)
wait "$BLOCKER" "$READER" || die "blocker or reader failed (naive)"
read -r naive_gap naive_reads < <(reader_stats naive)
naive_after=$(( naive_done - $(cat "$W/naive.blocker_end") ))

make_items zdm
cat >"$W/ddl.yml" <<EOF
zdm: 1
name: bench-ddl
secrets:
  pg: {env: PGPW}
steps:
  - id: ddl
    uses: db.postgres_sql
    with:
      conninfo: "$(pg_conninfo bench zdm)"
      password: \${{ secrets.pg }}
      sql: ALTER TABLE items ADD COLUMN note text
      undo_sql: ALTER TABLE items DROP COLUMN IF EXISTS note
      lock_timeout: ${LOCK_MS}ms
EOF
start_load zdm
ZDM_PLUGIN_PATH="$REPO/plugins" "$ZDM" run "$W/ddl.yml" --state-dir "$W/state-ddl" >"$W/ddl.out" 2>&1 ||
  die "zdm run failed: $(cat "$W/ddl.out")"
zdm_done=$(now_ms)
wait "$BLOCKER" "$READER" || die "blocker or reader failed (zdm)"
read -r zdm_gap zdm_reads < <(reader_stats zdm)
zdm_after=$(( zdm_done - $(cat "$W/zdm.blocker_end") ))
retries=$(jq -s '[.[] | select(.event=="sql.lock_timeout")] | length' "$W"/state-ddl/runs/*.jsonl)

# ---- 2. backfill ------------------------------------------------------------------

# $1 = database: table big(id, v, doubled) with ROWS rows
make_big() {
  pg_createdb bench "$1"
  pg_psql bench "$1" -c "CREATE TABLE big (id bigint PRIMARY KEY, v int NOT NULL, doubled int);
    INSERT INTO big (id, v) SELECT g, g % 1000 FROM generate_series(1, $ROWS) g;
    ALTER TABLE big OWNER TO $PG_USER"
  pg_psql bench "$1" -c "VACUUM ANALYZE big"
}

make_big fill_naive
t0=$(now_ms)
pg_psql bench fill_naive -c "UPDATE big SET doubled = v * 2" || die "naive UPDATE failed"
fill_naive_ms=$(( $(now_ms) - t0 ))

# $1 = batch size: prints "total_ms longest_batch_ms batches"
zdm_fill() {
  local db="fill_$1"
  make_big "$db"
  cat >"$W/fill_$1.yml" <<EOF
zdm: 1
name: bench-fill
secrets:
  pg: {env: PGPW}
steps:
  - id: fill
    uses: db.postgres_backfill
    with:
      conninfo: "$(pg_conninfo bench "$db")"
      password: \${{ secrets.pg }}
      table: big
      key: id
      set: doubled = v * 2
      batch_size: $1
EOF
  local t0 t1
  t0=$(now_ms)
  ZDM_PLUGIN_PATH="$REPO/plugins" "$ZDM" run "$W/fill_$1.yml" --state-dir "$W/state-$db" >"$W/$db.out" 2>&1 ||
    die "zdm backfill failed: $(cat "$W/$db.out")"
  t1=$(now_ms)
  [ "$(pg_psql bench "$db" -c "SELECT count(*) FROM big WHERE doubled = v * 2")" = "$ROWS" ] ||
    die "backfill $1 left rows not filled"
  # a batch's transaction ends at its note; it began after the previous note
  # (or step.started): the longest gap between two of them bounds a row lock
  local longest batches
  read -r longest batches < <(jq -r 'select(.event=="step.started" or .event=="backfill.batch") | .ts' \
    "$W"/state-"$db"/runs/*.jsonl | while read -r ts; do date -d "$ts" +%s%3N; done |
    awk 'NR > 1 && $1 - p > m { m = $1 - p } { p = $1; n++ } END { print m + 0, n - 1 }')
  echo "$(( t1 - t0 )) $longest $batches"
}
read -r f1k_ms f1k_long f1k_batches < <(zdm_fill 1000)
read -r f10k_ms f10k_long f10k_batches < <(zdm_fill 10000)

# ---- the table --------------------------------------------------------------------

cpus=$(nproc)
load=$(cut -d' ' -f1 /proc/loadavg)
printf '\nzdm bench: PostgreSQL migrations (PostgreSQL 15, 127.0.0.1, %s CPUs, load %s)\n\n' "$cpus" "$load"
printf 'DDL behind a %d s transaction; reader: one query per 20 ms\n' "$BLOCK_S"
printf '%-40s %14s %10s %18s %8s\n' "" "reader max gap" "answers" "DDL done after" "retries"
printf '%-40s %11s ms %10s %15s ms %8s\n' "psql ALTER TABLE (no lock_timeout)" "$naive_gap" "$naive_reads/$READS" "$naive_after" "-"
printf '%-40s %11s ms %10s %15s ms %8s\n' "zdm db.postgres_sql (lock_timeout ${LOCK_MS}ms)" "$zdm_gap" "$zdm_reads/$READS" "$zdm_after" "$retries"
printf '\nBackfill of %d rows (SET doubled = v * 2)\n' "$ROWS"
printf '%-40s %10s %9s %26s\n' "" "total" "batches" "longest transaction (lock)"
printf '%-40s %7s ms %9s %23s ms\n' "psql: one UPDATE" "$fill_naive_ms" 1 "$fill_naive_ms"
printf '%-40s %7s ms %9s %23s ms\n' "zdm db.postgres_backfill batch 1000" "$f1k_ms" "$f1k_batches" "$f1k_long"
printf '%-40s %7s ms %9s %23s ms\n' "zdm db.postgres_backfill batch 10000" "$f10k_ms" "$f10k_batches" "$f10k_long"
printf '\n(DDL done after: from the blocker'"'"'s psql exiting to the DDL'"'"'s end, so it can be a few ms\nbelow 0; the zdm totals include starting zdm, connecting and the journal'"'"'s fdatasync per batch.)\n'
