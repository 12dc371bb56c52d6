# Test servers for the HTTP suites (load after helper): the controllable
# tests/servers/httpd.py and a real nginx, both on 127.0.0.1 with free
# ports, in the test's own $T, stopped by the test's teardown.  A server
# that does not start fails the test; nothing is skipped.

# the helper's teardown, run after the servers are stopped
eval "helper_$(declare -f teardown)"

teardown() {
  stop_servers
  helper_teardown
}

# a port nothing listens on (bound, read, released)
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# control < JSON: what httpd.py answers per path (replaced atomically)
control() {
  cat >"$T/.control.tmp" && mv "$T/.control.tmp" "$T/control.json"
}

# start_httpd [PORT | unix:PATH]: start httpd.py (on a free port unless
# given); sets HTTPD_PORT and BASE (http://127.0.0.1:PORT)
start_httpd() {
  local where=(--port "${1:-0}")
  [[ "${1:-}" == unix:* ]] && where=(--unix "${1#unix:}")
  [ -f "$T/control.json" ] || echo '{}' >"$T/control.json"
  rm -f "$T/httpd.port"
  python3 "$REPO/tests/servers/httpd.py" "$T/" "${where[@]}" ${HTTPD_TLS:+--tls $HTTPD_TLS} --lifetime 120 >"$T/httpd.out" 2>&1 3>&- &
  echo $! >"$T/httpd.pid"
  local i
  for i in $(seq 200); do
    [ -s "$T/httpd.port" ] && break
    sleep 0.025
  done
  if [ ! -s "$T/httpd.port" ]; then
    echo "tests/servers/httpd.py did not start:" >&2
    cat "$T/httpd.out" >&2
    return 1
  fi
  HTTPD_PORT="$(cat "$T/httpd.port")"
  BASE="http://127.0.0.1:$HTTPD_PORT"
}

# the requests httpd.py got for PATH (a path without the query), one JSON each
requests_to() {
  [ -f "$T/requests.jsonl" ] || return 0
  jq -c --arg p "$1" 'select((.path | split("?")[0]) == $p)' "$T/requests.jsonl"
}

# start_nginx < SERVER-BLOCK-BODY: a real nginx (daemon off, its own prefix
# in $T) serving the given locations; sets NGINX_PORT and NGINX
start_nginx() {
  local body port i
  body="$(cat)"
  port="$(free_port)"
  mkdir -p "$T/nginx"
  cat >"$T/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $T/nginx/body;
  proxy_temp_path $T/nginx/proxy;
  server {
    listen 127.0.0.1:$port;
$body
  }
}
EOF
  nginx -p "$T/nginx/" -c "$T/nginx/nginx.conf" -e "$T/nginx/error.log" >"$T/nginx/out" 2>&1 3>&- &
  echo $! >"$T/nginx.pid"
  for i in $(seq 200); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.025
  done
  if ! curl -s -o /dev/null "http://127.0.0.1:$port/"; then
    echo "nginx did not start:" >&2
    cat "$T/nginx/out" "$T/nginx/error.log" >&2
    return 1
  fi
  NGINX_PORT="$port"
  NGINX="http://127.0.0.1:$port"
}

# stop what start_* started, by pid
stop_servers() {
  local f pid
  for f in httpd nginx; do
    [ -f "$T/$f.pid" ] || continue
    pid="$(cat "$T/$f.pid")"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$T/$f.pid"
  done
}
