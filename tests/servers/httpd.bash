# Test servers for the HTTP suites (load after helper): the controllable
# tests/servers/httpd.py and a real nginx, both on 127.0.0.1 with free
# ports, in the test's own $T, stopped by the test's teardown.  A server
# that does not start fails the test; nothing is skipped.

source "$(dirname "${BASH_SOURCE[0]}")/common.bash"

# the helper's teardown, run after the servers are stopped
eval "helper_$(declare -f teardown)"

teardown() {
  stop_servers
  helper_teardown
}

# control < JSON: what httpd.py answers per path (replaced atomically)
control() {
  cat >"$T/.control.tmp" && mv "$T/.control.tmp" "$T/control.json"
}

# httpd_in DIR PIDFILE LOG WHAT [ARGS...]: start httpd.py for DIR (its
# control.json, '{}' unless there is one, its requests.jsonl and httpd.port)
# for 120 s at most, its pid in PIDFILE and its output in LOG, and wait
# until DIR/httpd.port says its port
httpd_in() {
  local dir="$1" pidfile="$2" log="$3" what="$4"
  shift 4
  [ -f "$dir/control.json" ] || echo '{}' >"$dir/control.json"
  rm -f "$dir/httpd.port"
  serve "$what" "$pidfile" "$log" "$dir/httpd.port" \
    python3 "$REPO/tests/servers/httpd.py" "$dir/" "$@" --lifetime 120
}

# start_httpd [PORT | unix:PATH]: start httpd.py in $T (on a free port
# unless given); sets HTTPD_PORT and BASE (http://127.0.0.1:PORT)
start_httpd() {
  local where=(--port "${1:-0}")
  [[ "${1:-}" == unix:* ]] && where=(--unix "${1#unix:}")
  httpd_in "$T" "$T/httpd.pid" "$T/httpd.out" "tests/servers/httpd.py" \
    "${where[@]}" ${HTTPD_TLS:+--tls $HTTPD_TLS} || return 1
  HTTPD_PORT="$(cat "$T/httpd.port")"
  BASE="http://127.0.0.1:$HTTPD_PORT"
}

# the requests httpd.py got for PATH (a path without the query), one JSON each
requests_to() {
  [ -f "$T/requests.jsonl" ] || return 0
  jq -c --arg p "$1" 'select((.path | split("?")[0]) == $p)' "$T/requests.jsonl"
}

# nginx_head DIR CONNS: the top of a test nginx.conf whose pid, logs and
# temp files live in DIR, up to and including "http {" (the caller writes
# the rest); daemon off, so the test's teardown stops it by pid
nginx_head() {
  cat <<EOF
worker_processes 1;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log;
events { worker_connections $2; }
http {
  access_log off;
  client_body_temp_path $1/body;
  proxy_temp_path $1/proxy;
EOF
}

# nginx_run DIR PIDFILE URL [BODY] [WHAT]: start nginx on DIR/nginx.conf
# (its pid in PIDFILE) and wait, at most 5 s, until URL answers (with BODY
# when given); otherwise print nginx's output and error log and fail
nginx_run() {
  local dir="$1" pidfile="$2" url="$3" want="${4:-}" what="${5:-nginx}" i
  nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/out" 2>&1 3>&- &
  echo $! >"$pidfile"
  for i in $(seq 200); do
    if [ -n "$want" ]; then
      [ "$(curl -s --max-time 1 "$url")" = "$want" ] && return 0
    else
      curl -s -o /dev/null --max-time 1 "$url" && return 0
    fi
    sleep 0.025
  done
  echo "$what did not start:" >&2
  cat "$dir/out" "$dir/error.log" >&2
  return 1
}

# start_nginx < SERVER-BLOCK-BODY: a real nginx (daemon off, its own prefix
# in $T) serving the given locations; sets NGINX_PORT and NGINX
start_nginx() {
  local body port
  body="$(cat)"
  port="$(free_port)"
  mkdir -p "$T/nginx"
  {
    nginx_head "$T/nginx" 64
    cat <<EOF
  server {
    listen 127.0.0.1:$port;
$body
  }
}
EOF
  } >"$T/nginx/nginx.conf"
  nginx_run "$T/nginx" "$T/nginx.pid" "http://127.0.0.1:$port/" || return 1
  NGINX_PORT="$port"
  NGINX="http://127.0.0.1:$port"
}

# stop what start_* started, by pid
stop_servers() {
  stop_pids "$T/httpd.pid" "$T/nginx.pid"
}
