#!/usr/bin/env bash
# bench/compare.sh — db.postgres_compare beside what a DBA would run by hand.
#
#   make && bash bench/compare.sh          (from the repo root; 1-2 min)
#
# Two PostgreSQL 15 clusters made for the bench (tests/servers/postgres.bash:
# initdb as the postgres user in a temp dir, 127.0.0.1, free ports; the TEST
# settings: fsync = off, shared_buffers = 16MB, work_mem at its default
# 4MB).  Both get the same table
#   items (id bigint PRIMARY KEY, v int, note text, at timestamptz)
# of ROWS rows (default 1000000, generated in the server), then one row is
# changed on the target.  Each contender must find it:
#   zdm        zdm run of one db.postgres_compare step (chunk_rows 10000):
#              count + sum(hashtextextended(row)) per chunk in each server, the
#              source read twice per chunk (the hot-chunk rule); exits 1 naming
#              the key;
#   dump|diff  pg_dump --data-only -t items of each side | sort, then diff:
#              every row crosses to the client twice and is sorted there;
#   fdw EXCEPT on the target, postgres_fdw's foreign table of the source:
#              (src EXCEPT tgt) UNION ALL (tgt EXCEPT src): every source row
#              crosses to the target, which hashes or sorts both sides whole
#              (spilling past work_mem).
# "shipped" is the rows that leave a server; "server memory" what one query
# holds: zdm one aggregate per chunk (an index range scan), EXCEPT the whole
# table (hashed or sorted, spilled to disk past work_mem).
#
# Prints a markdown table; exits 0 whatever the timings, non-zero only when a
# contender did not find the difference.
#
# Environment:
#   ZDM_BIN   zdm binary (default: build/zdm)
#   ROWS      rows (default 1000000)
#   KEEP=1    keep the clusters' directory

set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ZDM=${ZDM_BIN:-$REPO/build/zdm}
ROWS=${ROWS:-1000000}
die() { printf 'compare.sh: %s\n' "$*" >&2; exit 1; }
[ -x "$ZDM" ] || die "no zdm binary at $ZDM (make first)"
[ -f /usr/lib/postgresql/15/lib/postgres_fdw.so ] || die "no postgres_fdw (postgresql-contrib): run scripts/deps.sh"

# shellcheck source=../tests/servers/postgres.bash
. "$REPO/tests/servers/postgres.bash"
PG_ROOT="$(mktemp -d /tmp/zdm-cmpbench.XXXXXX)"
WORK="$(mktemp -d /tmp/zdm-cmpbench-work.XXXXXX)"
cleanup() {
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
DB=bench
for c in src dst; do
  pg_createdb "$c" "$DB"
  pg_psql "$c" "$DB" -c "CREATE TABLE items (id bigint PRIMARY KEY, v int NOT NULL, note text,
      at timestamptz NOT NULL DEFAULT '2026-01-01 00:00:00+00');
    INSERT INTO items (id, v, note) SELECT g, g % 1000, 'row ' || g FROM generate_series(1, $ROWS) g;
    ALTER TABLE items OWNER TO $PG_USER"
  pg_psql "$c" "$DB" -c "VACUUM ANALYZE items"
done
CHANGED=$(( ROWS / 2 + 7 ))
pg_psql dst "$DB" -c "UPDATE items SET note = 'changed' WHERE id = $CHANGED"

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
results=()
fail=0

# zdm
cat >"$WORK/rb.yml" <<EOF
zdm: 1
name: cmpbench
secrets:
  pw: {env: BENCH_PGPW}
steps:
  - id: cmp
    uses: db.postgres_compare
    timeout: 30m
    with:
      source: "$(pg_conninfo src "$DB")"
      target: "$(pg_conninfo dst "$DB")"
      source_password: \${{ secrets.pw }}
      target_password: \${{ secrets.pw }}
      table: items
      chunk_rows: 10000
EOF
t0=$(now_ms)
rc=0
out="$(BENCH_PGPW="$PG_PASSWORD" ZDM_PLUGIN_PATH="$REPO/plugins" "$ZDM" run "$WORK/rb.yml" \
  --state-dir "$WORK/state" 2>&1)" || rc=$?
t1=$(now_ms)
found=no
[ "$rc" = 1 ] && grep -qF "id=$CHANGED differs" <<<"$out" && found=yes
[ "$found" = yes ] || { fail=1; printf '%s\n' "$out" >&2; }
chunks=$(( (ROWS + 9999) / 10000 ))
results+=("| zdm db.postgres_compare | $(( t1 - t0 )) | $found | $(( chunks * 4 )) aggregates (+ bisection) | one aggregate per chunk |")

# pg_dump | sort | diff
dump() {
  "$PG_BIN/pg_dump" -h "$PG_ROOT/$1" -p "$(pg_port "$1")" -U postgres --data-only -t items "$DB" |
    LC_ALL=C sort >"$WORK/$1.txt"
}
t0=$(now_ms)
dump src & p1=$!
dump dst & p2=$!
wait "$p1" "$p2"
n=$(LC_ALL=C diff "$WORK/src.txt" "$WORK/dst.txt" | grep -c "^[<>] $CHANGED	" || true)
t1=$(now_ms)
found=no
[ "$n" = 2 ] && found=yes
[ "$found" = yes ] || fail=1
results+=("| pg_dump --data-only \\| sort \\| diff | $(( t1 - t0 )) | $found | $(( ROWS * 2 )) rows | pg_dump: a COPY stream; sort: the table twice in the client |")
rm -f "$WORK/src.txt" "$WORK/dst.txt"

# EXCEPT through postgres_fdw, on the target
pg_psql dst "$DB" -c "CREATE EXTENSION postgres_fdw;
  CREATE SERVER srcsrv FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '127.0.0.1', port '$(pg_port src)', dbname '$DB');
  CREATE USER MAPPING FOR postgres SERVER srcsrv OPTIONS (user '$PG_USER', password '$PG_PASSWORD');
  CREATE SCHEMA remote; IMPORT FOREIGN SCHEMA public LIMIT TO (items) FROM SERVER srcsrv INTO remote" >/dev/null
t0=$(now_ms)
n=$(pg_psql dst "$DB" -c "SELECT string_agg(id::text, ',') FROM ((SELECT * FROM remote.items EXCEPT SELECT * FROM items)
  UNION ALL (SELECT * FROM items EXCEPT SELECT * FROM remote.items)) d")
t1=$(now_ms)
found=no
[ "$n" = "$CHANGED,$CHANGED" ] && found=yes
[ "$found" = yes ] || fail=1
results+=("| postgres_fdw EXCEPT | $(( t1 - t0 )) | $found | $ROWS rows | both sides whole, hashed or sorted (spills past work_mem) |")

printf '\n%s rows, one row changed on the target; same run, same clusters\n\n' "$ROWS"
printf '| method | ms | found it | shipped | server memory per query |\n|---|---:|---|---|---|\n'
printf '%s\n' "${results[@]}"
printf '\nzdm reads each chunk three times on the source side and once on the target (the hot-chunk rule: correct under writes); the others read once and assume no writes.\n'
exit "$fail"
