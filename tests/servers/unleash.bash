# A real Unleash server for a whole test file (load after helper): the
# unleash-server package from npm (the version pinned in scripts/deps.sh,
# installed in ~/.cache/zdm-npm/unleash), run by node on a free 127.0.0.1
# port, with a PostgreSQL 15 cluster of its own (tests/servers/postgres.bash)
# in a temp dir.  Start-up, with the schema migrations of an empty database,
# takes some 10 to 20 s, so a file starts one from setup_file and every test
# uses its own flags.  A server that does not come up FAILS (its log is
# printed); nothing is skipped.
#
#   unleash_start     cluster + database + server; exports UNLEASH (base URL),
#                     UNLEASH_DIR, UNLEASH_ADMIN_TOKEN (*:*.SECRET, admin),
#                     UNLEASH_CLIENT_TOKEN (default:development.SECRET,
#                     client) and UNLEASH_PROD_CLIENT_TOKEN
#                     (default:production.SECRET); the secrets are random per
#                     file, so a test can grep for them
#   unleash_up        start the server again (same port, same database) after
#                     unleash_kill, and wait for /health
#   unleash_kill      SIGKILL the server (gone, as after a crash)
#   unleash_stop      stop the server and its cluster, remove the temp dir
#   unleash_api METHOD PATH [BODY]
#                     curl the admin API (PATH below /api/admin) with the admin
#                     token; prints the body, fails on a status >= 400
#   unleash_client FLAG
#                     GET /api/client/features/FLAG with the development client token
#   unleash_flag NAME create flag NAME in project default
#
# The server runs with CHECK_VERSION=false and SEND_TELEMETRY=false: it
# never calls out of the machine.

source "$(dirname "${BASH_SOURCE[0]}")/postgres.bash"

UNLEASH_SERVER_JS="${XDG_CACHE_HOME:-$HOME/.cache}/zdm-npm/unleash/node_modules/unleash-server/dist/server.js"

_unleash_secret() {
  od -An -N8 -tx1 /dev/urandom | tr -d ' \n'
}

unleash_start() {
  if [ ! -f "$UNLEASH_SERVER_JS" ]; then
    echo "unleash-server is not installed ($UNLEASH_SERVER_JS): run scripts/deps.sh" >&2
    return 1
  fi
  UNLEASH_DIR="$(mktemp -d "${BATS_TMPDIR:-/tmp}/zdm-unleash.XXXXXX")"
  chmod 755 "$UNLEASH_DIR"   # the cluster runs as the postgres user
  PG_ROOT="$UNLEASH_DIR/pg"
  mkdir -p "$PG_ROOT"
  export PG_ROOT UNLEASH_DIR
  pg_start unleash || return 1
  pg_createdb unleash unleash || return 1
  UNLEASH_PORT="$(free_port)"
  UNLEASH="http://127.0.0.1:$UNLEASH_PORT"
  UNLEASH_ADMIN_TOKEN="*:*.$(_unleash_secret)"
  UNLEASH_CLIENT_TOKEN="default:development.$(_unleash_secret)"
  UNLEASH_PROD_CLIENT_TOKEN="default:production.$(_unleash_secret)"
  export UNLEASH UNLEASH_PORT UNLEASH_ADMIN_TOKEN UNLEASH_CLIENT_TOKEN UNLEASH_PROD_CLIENT_TOKEN
  unleash_up
}

unleash_up() {
  local i
  (
    cd "$UNLEASH_DIR" || exit 1
    exec env DATABASE_HOST=127.0.0.1 DATABASE_PORT="$(pg_port unleash)" DATABASE_NAME=unleash \
      DATABASE_USERNAME="$PG_USER" DATABASE_PASSWORD="$PG_PASSWORD" DATABASE_SSL=false \
      HTTP_HOST=127.0.0.1 HTTP_PORT="$UNLEASH_PORT" CHECK_VERSION=false SEND_TELEMETRY=false \
      LOG_LEVEL=error \
      INIT_ADMIN_API_TOKENS="$UNLEASH_ADMIN_TOKEN" \
      INIT_CLIENT_API_TOKENS="$UNLEASH_CLIENT_TOKEN,$UNLEASH_PROD_CLIENT_TOKEN" \
      node "$UNLEASH_SERVER_JS"
  ) >>"$UNLEASH_DIR/server.log" 2>&1 3>&- &
  echo $! >"$UNLEASH_DIR/server.pid"
  disown $!   # no job notice from bats when unleash_kill kills it
  # up to 120 s: migrations of a fresh database on a loaded machine
  for ((i = 0; i < 1200; i++)); do
    curl -fsS -o /dev/null "$UNLEASH/health" 2>/dev/null && return 0
    kill -0 "$(cat "$UNLEASH_DIR/server.pid")" 2>/dev/null || break
    sleep 0.1
  done
  echo "unleash-server did not start on $UNLEASH:" >&2
  cat "$UNLEASH_DIR/server.log" >&2
  return 1
}

unleash_kill() {
  local pid
  pid="$(cat "$UNLEASH_DIR/server.pid" 2>/dev/null)" || return 0
  kill -9 "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$UNLEASH_DIR/server.pid"
}

unleash_stop() {
  [ -n "${UNLEASH_DIR:-}" ] && [ -d "$UNLEASH_DIR" ] || return 0
  local pid
  if pid="$(cat "$UNLEASH_DIR/server.pid" 2>/dev/null)"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  pg_stop_all
  rm -rf "$UNLEASH_DIR"
}

unleash_api() {
  local method="$1" path="$2"
  local args=(-sS --fail-with-body -X "$method" -H "Authorization: $UNLEASH_ADMIN_TOKEN")
  if [ $# -ge 3 ]; then
    args+=(-H 'Content-Type: application/json' --data-binary "$3")
  fi
  curl "${args[@]}" "$UNLEASH/api/admin$path"
}

unleash_client() {
  curl -sS --fail-with-body -H "Authorization: $UNLEASH_CLIENT_TOKEN" "$UNLEASH/api/client/features/$1"
}

unleash_flag() {
  unleash_api POST /projects/default/features "{\"name\":\"$1\"}" >/dev/null
}
