#!/usr/bin/env bash
# bench/postgres.sh — db.postgres_sync beside the same replication done by hand.
#
#   make && bash bench/postgres.sh          (from the repo root; 1-3 min)
#
# Two PostgreSQL 15 clusters made for the bench (tests/servers/postgres.bash:
# initdb as the postgres user in a temp dir, 127.0.0.1, free ports, wal_level =
# logical; the TEST settings: fsync = off, synchronous_commit = off,
# shared_buffers = 16MB, so the numbers show CPU and protocol cost, not a disk).
# For each size (ROWS, default "100000 1000000") one source table
#   orders (id bigint PRIMARY KEY, customer int, note text, amount numeric)
# is loaded once and cloned (CREATE DATABASE ... TEMPLATE) for each contender,
# each into an empty target database with the same schema:
#   zdm      zdm run of one db.postgres_sync step (verify: count) until it
#            succeeds: checks, publication, subscription, every table 'r', lag
#            under 1 MB, row counts equal on both sides;
#   by hand  the same with psql: CREATE PUBLICATION, CREATE SUBSCRIPTION, poll
#            pg_subscription_rel every 200 ms (zdm's poll_interval) until every
#            table is 'r', then count(*) on both sides;
#   offline  pg_dump -t orders | psql into an empty database: the copy an
#            offline move would do (the application stopped meanwhile).
# During the zdm and the by-hand runs an application writer updates random
# rows of the source (one UPDATE per transaction, ~5 ms apart, in the server:
# a DO loop) and records its slowest write; the column "app max write" is that
# latency during the zdm run, to hold against zdm's lock_timeout (5 s): the
# application's write path must never wait longer.
#
# Goal: zdm <= 1.2 x by hand.  Prints a markdown table; exits 0
# whatever the timings, non-zero only when a contender failed.
#
# Environment:
#   ZDM_BIN   zdm binary (default: build/zdm)
#   ROWS      sizes, default "100000 1000000"
#   KEEP=1    keep the clusters' directory

set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ZDM=${ZDM_BIN:-$REPO/build/zdm}
ROWS=${ROWS:-100000 1000000}
die() { printf 'postgres.sh: %s\n' "$*" >&2; exit 1; }
[ -x "$ZDM" ] || die "no zdm binary at $ZDM (make first)"

# shellcheck source=../tests/servers/postgres.bash
. "$REPO/tests/servers/postgres.bash"
PG_ROOT="$(mktemp -d /tmp/zdm-pgbench.XXXXXX)"
WORK="$(mktemp -d /tmp/zdm-pgbench-work.XXXXXX)"
cleanup() {
  [ -n "${WRITER:-}" ] && kill "$WRITER" 2>/dev/null || true
  if [ "${KEEP:-}" = 1 ]; then
    echo "kept: $PG_ROOT $WORK" >&2
  else
    pg_stop_all
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

pg_start src >/dev/null || die "the source cluster did not start"
pg_start dst >/dev/null || die "the target cluster did not start"
export PGPASSWORD="$PG_PASSWORD"

now_ms() { date +%s%3N; }
ms_to_s() { awk -v m="$1" 'BEGIN { printf "%.2f s", m / 1000 }'; }

SCHEMA="CREATE TABLE orders (id bigint PRIMARY KEY, customer int NOT NULL, note text, amount numeric(12,2))"

# start_writer DB N: start the application writer on the source database; it stops
# when the bench_stop table has a row; stop_writer DB sets WORST (its slowest write)
start_writer() {
  local db="$1" n="$2"
  pg_psql src "$db" -c "CREATE TABLE IF NOT EXISTS bench_stop (x int)" >/dev/null
  pg_psql src "$db" -c "DO \$\$
    DECLARE t0 timestamptz; worst float8 := 0; i int := 0;
    BEGIN
      LOOP
        i := i + 1;
        t0 := clock_timestamp();
        UPDATE orders SET amount = amount + 1 WHERE id = 1 + (random() * ($n - 1))::bigint;
        COMMIT;
        worst := greatest(worst, extract(epoch FROM clock_timestamp() - t0) * 1000);
        EXIT WHEN i % 20 = 0 AND EXISTS (SELECT 1 FROM bench_stop);
        EXIT WHEN i > 200000;
        PERFORM pg_sleep(0.005);
      END LOOP;
      RAISE NOTICE 'worst=% writes=%', round(worst::numeric, 1), i;
    END \$\$" >"$WORK/writer.$db.out" 2>&1 &
  WRITER=$!
}

stop_writer() {
  local db="$1"
  pg_psql src "$db" -c "INSERT INTO bench_stop VALUES (1)" >/dev/null
  wait "$WRITER" || die "the writer on $db failed: $(cat "$WORK/writer.$db.out")"
  WRITER=
  WORST="$(sed -n 's/.*worst=\([0-9.]*\) writes=\([0-9]*\).*/\1 ms (\2 writes)/p' "$WORK/writer.$db.out")"
}

run_zdm() {
  local db="$1"
  cat >"$WORK/rb.yml" <<EOF
zdm: 1
name: bench-pg
secrets:
  pw: {env: PGPASSWORD}
defaults: {timeout: 20m}
steps:
  - id: sync
    uses: db.postgres_sync
    with:
      source: "$(pg_conninfo src "$db")"
      target: "$(pg_conninfo dst "$db")"
      source_password: \${{ secrets.pw }}
      target_password: \${{ secrets.pw }}
      tables: [public.orders]
      verify: count
EOF
  ZDM_PLUGIN_PATH="$REPO/plugins" "$ZDM" run "$WORK/rb.yml" --state-dir "$WORK/state-$db" \
    >"$WORK/zdm.$db.out" 2>&1 || die "zdm failed on $db: $(tail -5 "$WORK/zdm.$db.out")"
}

run_hand() {
  local db="$1" i pending=1 a b
  pg_psql src "$db" -c "CREATE PUBLICATION hand_$db FOR TABLE orders" >/dev/null
  pg_psql dst "$db" -c "CREATE SUBSCRIPTION hand_$db CONNECTION '$(pg_conninfo src "$db") password=$PG_PASSWORD' PUBLICATION hand_$db" >/dev/null 2>&1
  for i in $(seq 6000); do
    pending="$(pg_psql dst "$db" -c "SELECT count(*) FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid WHERE s.subname = 'hand_$db' AND r.srsubstate <> 'r'")"
    [ "$pending" = 0 ] && break
    sleep 0.2
  done
  [ "$pending" = 0 ] || die "hand-made subscription on $db never became ready"
  a="$(pg_psql src "$db" -c "SELECT count(*) FROM orders")"
  b="$(pg_psql dst "$db" -c "SELECT count(*) FROM orders")"
  [ "$a" = "$b" ] || die "hand-made replication on $db: $a rows on the source, $b on the target"
}

run_dump() {
  local db="$1"
  "$PG_BIN/pg_dump" -h "$PG_ROOT/src" -p "$(pg_port src)" -U postgres -t orders "$db" |
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_ROOT/dst" -p "$(pg_port dst)" -U postgres -d "$db" >/dev/null ||
    die "pg_dump | psql failed on $db"
}

echo "## db.postgres_sync beside logical replication by hand and pg_dump | psql"
echo
echo "$(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at start; PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}'), test settings (fsync off)"
echo
echo "| rows | zdm db.postgres_sync | by hand (psql) | zdm / by hand | pg_dump \\| psql (offline) | app max write during zdm | during by hand |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for n in $ROWS; do
  base="b$n"
  pg_createdb src "$base"
  pg_psql src "$base" -c "$SCHEMA" >/dev/null
  pg_psql src "$base" -c "INSERT INTO orders SELECT g, g % 997, 'order number ' || g, g * 0.25 FROM generate_series(1, $n) g" >/dev/null
  pg_psql src "$base" -c "VACUUM ANALYZE orders" >/dev/null
  for who in zdm hand dump; do
    pg_psql src postgres -c "CREATE DATABASE ${base}_$who TEMPLATE $base OWNER $PG_USER" >/dev/null
    pg_createdb dst "${base}_$who"
    [ "$who" = dump ] || pg_psql dst "${base}_$who" -c "$SCHEMA" >/dev/null
  done
  pg_psql src postgres -c "CHECKPOINT" >/dev/null

  start_writer "${base}_zdm" "$n"
  t0=$(now_ms); run_zdm "${base}_zdm"; t_zdm=$(( $(now_ms) - t0 ))
  stop_writer "${base}_zdm"; w_zdm="$WORST"

  start_writer "${base}_hand" "$n"
  t0=$(now_ms); run_hand "${base}_hand"; t_hand=$(( $(now_ms) - t0 ))
  stop_writer "${base}_hand"; w_hand="$WORST"

  t0=$(now_ms); run_dump "${base}_dump"; t_dump=$(( $(now_ms) - t0 ))

  ratio=$(awk -v a="$t_zdm" -v b="$t_hand" 'BEGIN { printf "%.2f", a / b }')
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$n" "$(ms_to_s "$t_zdm")" "$(ms_to_s "$t_hand")" \
    "$ratio" "$(ms_to_s "$t_dump")" "$w_zdm" "$w_hand"
  # free the slots and workers before the next size
  pg_psql dst "${base}_hand" -c "DROP SUBSCRIPTION hand_${base}_hand" >/dev/null 2>&1 || true
  ZDM_PLUGIN_PATH="$REPO/plugins" "$ZDM" rollback "$WORK/rb.yml" --state-dir "$WORK/state-${base}_zdm" >/dev/null 2>&1 || true
done
echo
echo "zdm: checks, publication, subscription, every table ready, lag < 1 MB, counts equal (verify: count)."
echo "by hand: the same publication and subscription with psql, polled every 200 ms, counts compared."
echo "Goal: zdm <= 1.2 x by hand; app writes never blocked longer than lock_timeout (5 s)."
