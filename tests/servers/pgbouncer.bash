# A real PgBouncer (Debian's pgbouncer package) in front of the test
# clusters of tests/servers/postgres.bash (load that first).
#
# Each PgBouncer gets a directory $PG_ROOT/pgb-NAME owned by the postgres OS
# user (PgBouncer refuses to run as root): its config pgbouncer.ini, its
# auth_file users.txt, its log, pid file and unix socket.  It listens on a
# free 127.0.0.1 port, runs as a daemon (-d) and is stopped by the pid in
# its pid file.  It starts with pool_mode = transaction (PAUSE then waits for
# transactions, not sessions), auth_type = scram-sha-256, and two users in
# its auth_file: $PG_USER with $PG_PASSWORD (the clusters' role: PgBouncer
# logs in to the servers with it) and the admin $PGB_ADMIN with
# $PGB_ADMIN_PASSWORD (admin_users).  A PgBouncer that does not start FAILS
# the test (its log is printed).
#
# Functions:
#   pgb_start NAME [ENTRY ...]
#       ENTRY: one [databases] line, e.g.
#       "app = host=127.0.0.1 port=$(pg_port src) dbname=app"
#   pgb_port NAME       its port
#   pgb_ini NAME        the path of its config file
#   pgb_admin NAME SQL  one admin command (psql -At), as $PGB_ADMIN
#   pgb_admin_conninfo NAME   the conninfo of its admin console (no password)
#   pgb_paused NAME DB  prints SHOW DATABASES' paused column of DB (0 or 1)
#   pgb_points NAME DB  prints "host port database" of DB from SHOW DATABASES
#   pgb_stop NAME       stop it (SIGTERM by pid file, then wait) and remove its dir
#   pgb_stop_all        stop every PgBouncer under $PG_ROOT

PGB_BIN=/usr/sbin/pgbouncer
: "${PGB_ADMIN:=pgbadmin}"
: "${PGB_ADMIN_PASSWORD:=adm-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')}"
export PGB_ADMIN_PASSWORD

pgb_start() {
  local name="$1" dir port try
  shift
  [ -x "$PGB_BIN" ] || { echo "pgbouncer is not installed ($PGB_BIN): scripts/deps.sh installs it" >&2; return 1; }
  dir="$PG_ROOT/pgb-$name"
  mkdir -p "$dir"
  printf '"%s" "%s"\n"%s" "%s"\n' "$PG_USER" "$PG_PASSWORD" "$PGB_ADMIN" "$PGB_ADMIN_PASSWORD" >"$dir/users.txt"
  for try in 1 2 3; do
    port="$(free_port)"
    {
      echo "[databases]"
      local e
      for e in "$@"; do echo "$e"; done
      echo
      echo "[pgbouncer]"
      echo "listen_addr = 127.0.0.1"
      echo "listen_port = $port"
      echo "unix_socket_dir = $dir"
      echo "auth_type = scram-sha-256"
      echo "auth_file = $dir/users.txt"
      echo "admin_users = $PGB_ADMIN"
      echo "pool_mode = transaction"
      echo "default_pool_size = 10"
      echo "logfile = $dir/pgbouncer.log"
      echo "pidfile = $dir/pgbouncer.pid"
      echo "server_login_retry = 1"
    } >"$dir/pgbouncer.ini"
    chown -R postgres: "$dir" 2>/dev/null || true
    chmod 600 "$dir/users.txt"
    if (cd / && _pg_as "$PGB_BIN" -d "$dir/pgbouncer.ini" >"$dir/start.out" 2>&1) &&
        poll 100 0.05 port_open "$port"; then
      echo "$port" >"$dir/port"
      return 0
    fi
    grep -q "Address already in use" "$dir/pgbouncer.log" "$dir/start.out" 2>/dev/null || try=3
    [ "$try" -eq 3 ] && {
      echo "pgbouncer $name did not start:" >&2
      cat "$dir/start.out" "$dir/pgbouncer.log" >&2 2>/dev/null
      return 1
    }
  done
}

pgb_port() {
  cat "$PG_ROOT/pgb-$1/port"
}

pgb_ini() {
  echo "$PG_ROOT/pgb-$1/pgbouncer.ini"
}

pgb_admin_conninfo() {
  echo "host=127.0.0.1 port=$(pgb_port "$1") dbname=pgbouncer user=$PGB_ADMIN"
}

pgb_admin() {
  PGPASSWORD="$PGB_ADMIN_PASSWORD" "$PG_BIN/psql" -X -q -At -h 127.0.0.1 -p "$(pgb_port "$1")" \
    -U "$PGB_ADMIN" -d pgbouncer -c "$2"
}

pgb_paused() {
  PGPASSWORD="$PGB_ADMIN_PASSWORD" "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$(pgb_port "$1")" \
    -U "$PGB_ADMIN" -d pgbouncer -c "SHOW DATABASES" --csv |
    awk -F, -v db="$2" 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next } $1 == db { print $c["paused"] }'
}

pgb_points() {
  PGPASSWORD="$PGB_ADMIN_PASSWORD" "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$(pgb_port "$1")" \
    -U "$PGB_ADMIN" -d pgbouncer -c "SHOW DATABASES" --csv |
    awk -F, -v db="$2" 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
      $1 == db { print $c["host"], $c["port"], $c["database"] }'
}

pgb_stop() {
  local dir="$PG_ROOT/pgb-$1" pid i
  if [ -f "$dir/pgbouncer.pid" ]; then
    pid="$(cat "$dir/pgbouncer.pid")"
    kill "$pid" 2>/dev/null || true
    for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}

pgb_stop_all() {
  local d
  [ -n "${PG_ROOT:-}" ] && [ -d "$PG_ROOT" ] || return 0
  for d in "$PG_ROOT"/pgb-*/; do
    [ -d "$d" ] && pgb_stop "$(basename "$d" | sed 's/^pgb-//')"
  done
  return 0
}
