# Real PostgreSQL 15 clusters for the database suites (load after helper).
#
# Each cluster is made by initdb into its own directory under $PG_ROOT (a
# temp dir of its own, not the test's $T, so a cluster can be shared by a
# whole file from setup_file), started with pg_ctl on a free 127.0.0.1 port
# with its unix socket inside its directory, and stopped with
# `pg_ctl stop -m immediate`.  A cluster that does not start FAILS the test
# (its log is printed); nothing is skipped.
#
# The binaries come from /usr/lib/postgresql/15/bin (scripts/deps.sh installs
# them; never /usr/local/bin).  zdm's tests run as root and initdb refuses
# root, so initdb, pg_ctl and the server run as the `postgres` OS user.
#
# Functions:
#   pg_start NAME [SETTING=VALUE ...]
#       initdb + start cluster NAME; extra settings go to postgresql.conf
#       (e.g. wal_level=replica to test a refusal).  Creates the role
#       $PG_USER (SUPERUSER, REPLICATION, password $PG_PASSWORD, scram).
#   pg_stop NAME        stop one cluster (immediate) and remove its files
#   pg_restart NAME     restart the server (`pg_ctl restart -m fast`: every
#                       session is ended; same port, same data)
#   pg_down NAME        stop the server (`-m fast`), keeping its files
#   pg_up NAME          start it again after pg_down (same port), ready
#   pg_stop_all         stop every cluster under $PG_ROOT, remove $PG_ROOT
#   pg_port NAME        print the cluster's TCP port
#   pg_conninfo NAME [DB]
#       print "host=127.0.0.1 port=P dbname=DB user=$PG_USER" (no password:
#       give it through secrets / PGPASSWORD); DB defaults to postgres
#   pg_uri NAME [DB]    the same as a postgresql:// URI (no password)
#   pg_psql NAME DB [psql args...]
#       psql as superuser `postgres` over the unix socket (trust), with
#       -X -q -v ON_ERROR_STOP=1 -At; e.g. pg_psql a app -c 'select 1'
#   pg_createdb NAME DB create database DB owned by $PG_USER
#
# For the suites of the db.postgres_* steps (bats; $T is the test's dir):
#   pg_test_db NAME SQL
#       this test's own database t$BATS_TEST_NUMBER on cluster NAME: SQL
#       makes its table `items`, which then belongs to $PG_USER; sets DB
#       and CONN (its conninfo) and exports PGPW (the password)
#   pg_step_runbook NAME TYPE ID WITH [fail]
#       $T/rb.yml: runbook NAME with one step ID of TYPE connecting to CONN
#       with the password from secrets, the lines WITH added to its `with:`,
#       then, with "fail", a step that always fails
#
# Variables: PG_BIN (the binaries), PG_ROOT (set by the first pg_start
# unless already set), PG_USER (zdm), PG_PASSWORD (random per process, so a
# test can grep journals and output for it).
#
# Settings chosen for test speed, NOT for production: fsync=off,
# synchronous_commit=off, full_page_writes=off (a crashed test cluster is
# thrown away anyway), shared_buffers=16MB; logical replication is on
# (wal_level=logical) and a subscription's worker retries every 100 ms
# (wal_retrieve_retry_interval) so syncs start fast.  max_replication_slots
# and max_wal_senders leave room for several tests sharing a cluster.

source "$(dirname "${BASH_SOURCE[0]}")/common.bash"

PG_BIN=/usr/lib/postgresql/15/bin
: "${PG_USER:=zdm}"
: "${PG_PASSWORD:=pw-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')}"
export PG_PASSWORD

# run a command as the postgres OS user (root: runuser; otherwise as is)
_pg_as() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_start() {
  local name="$1" dir port try i
  shift
  if [ -z "${PG_ROOT:-}" ]; then
    PG_ROOT="$(mktemp -d /tmp/zdm-pg.XXXXXX)"
    export PG_ROOT
  fi
  chmod 755 "$PG_ROOT"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$PG_ROOT"
  dir="$PG_ROOT/$name"
  if ! _pg_as "$PG_BIN/initdb" --no-sync -D "$dir/data" -U postgres \
      --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 \
      >"$PG_ROOT/$name.initdb.log" 2>&1; then
    echo "initdb for cluster $name failed:" >&2
    cat "$PG_ROOT/$name.initdb.log" >&2
    return 1
  fi
  # a free port can be taken by someone else before the server binds it:
  # try a few ports
  for try in 1 2 3; do
    port="$(free_port)"
    {
      echo "listen_addresses = '127.0.0.1'"
      echo "port = $port"
      echo "unix_socket_directories = '$dir'"
      echo "fsync = off"                  # test speed only
      echo "synchronous_commit = off"     # test speed only
      echo "full_page_writes = off"       # test speed only
      echo "shared_buffers = 16MB"        # small: 4 engineers share 2 cores
      echo "max_connections = 60"
      echo "wal_level = logical"
      echo "wal_retrieve_retry_interval = 100ms"
      echo "max_replication_slots = 30"
      echo "max_wal_senders = 30"
      echo "max_worker_processes = 24"
      echo "max_logical_replication_workers = 16"
      echo "max_sync_workers_per_subscription = 2"
      echo "password_encryption = 'scram-sha-256'"
      echo "logging_collector = off"
      local kv
      for kv in "$@"; do echo "${kv%%=*} = '${kv#*=}'"; done
    } >"$dir/data/postgresql.auto.conf"
    if _pg_as "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start \
        >"$dir/pg_ctl.out" 2>&1; then
      echo "$port" >"$dir/port"
      break
    fi
    grep -q "could not bind\|Address already in use" "$dir/server.log" 2>/dev/null || try=3
    [ "$try" -eq 3 ] && {
      echo "cluster $name did not start:" >&2
      cat "$dir/pg_ctl.out" "$dir/server.log" >&2 2>/dev/null
      return 1
    }
  done
  for i in $(seq 100); do
    "$PG_BIN/pg_isready" -q -h "$dir" -p "$port" && break
    sleep 0.05
  done
  pg_psql "$name" postgres -c "CREATE ROLE $PG_USER LOGIN SUPERUSER REPLICATION PASSWORD '$PG_PASSWORD'" >/dev/null
}

pg_port() {
  cat "$PG_ROOT/$1/port"
}

pg_conninfo() {
  echo "host=127.0.0.1 port=$(pg_port "$1") dbname=${2:-postgres} user=$PG_USER"
}

pg_uri() {
  echo "postgresql://$PG_USER@127.0.0.1:$(pg_port "$1")/${2:-postgres}"
}

pg_psql() {
  local name="$1" db="$2"
  shift 2
  "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -At -h "$PG_ROOT/$name" -p "$(pg_port "$name")" \
    -U postgres -d "$db" "$@"
}

pg_createdb() {
  pg_psql "$1" postgres -c "CREATE DATABASE \"$2\" OWNER $PG_USER" >/dev/null
}

# the server accepts connections again (up to 10 s)
_pg_ready() {
  local i
  for i in $(seq 200); do
    "$PG_BIN/pg_isready" -q -h "$PG_ROOT/$1" -p "$(pg_port "$1")" && return 0
    sleep 0.05
  done
  echo "cluster $1 is not ready:" >&2
  cat "$PG_ROOT/$1/server.log" >&2
  return 1
}

pg_restart() {
  (cd / && _pg_as "$PG_BIN/pg_ctl" -D "$PG_ROOT/$1/data" -l "$PG_ROOT/$1/server.log" -m fast -w -t 30 \
    restart >/dev/null) && _pg_ready "$1"
}

pg_down() {
  (cd / && _pg_as "$PG_BIN/pg_ctl" -D "$PG_ROOT/$1/data" -m fast -w -t 30 stop >/dev/null)
}

pg_up() {
  (cd / && _pg_as "$PG_BIN/pg_ctl" -D "$PG_ROOT/$1/data" -l "$PG_ROOT/$1/server.log" -w -t 30 \
    start >/dev/null) && _pg_ready "$1"
}

pg_stop() {
  local dir="$PG_ROOT/$1"
  [ -d "$dir/data" ] && _pg_as "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1
  rm -rf "$dir"
  return 0
}

pg_stop_all() {
  local d
  [ -n "${PG_ROOT:-}" ] && [ -d "$PG_ROOT" ] || return 0
  for d in "$PG_ROOT"/*/; do
    [ -d "$d/data" ] && pg_stop "$(basename "$d")"
  done
  rm -rf "$PG_ROOT"
  return 0
}

pg_test_db() {
  DB="t${BATS_TEST_NUMBER}"
  pg_createdb "$1" "$DB"
  pg_psql "$1" "$DB" -c "$2;
    ALTER TABLE items OWNER TO $PG_USER"
  CONN="$(pg_conninfo "$1" "$DB")"
  export PGPW="$PG_PASSWORD"
}

pg_step_runbook() {
  {
    cat <<EOF
zdm: 1
name: $1
secrets:
  pg: {env: PGPW}
steps:
  - id: $3
    uses: $2
    with:
      conninfo: "$CONN"
      password: \${{ secrets.pg }}
EOF
    printf '%s\n' "$4" | sed 's/^/      /'
    if [ "${5:-}" = fail ]; then
      printf '  - id: boom\n    uses: exec\n    with: {command: ["false"]}\n'
    fi
  } >"$T/rb.yml"
}
