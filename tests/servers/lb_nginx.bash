# A real nginx load balancer for the lb suites (load after helper and
# servers/httpd): on 127.0.0.1 with free ports, everything under $T/lb.
#
#   start_lb_nginx    nginx (daemon off, 1 worker) with
#                       - the front server on $FRONT_PORT: proxy_pass http://app
#                       - blue on $BLUE_PORT: answers "blue" (and /health "ok")
#                     main config $T/lb/nginx.conf includes $T/lb/upstream.conf
#                     (upstream app -> blue, keepalive 4) and $T/lb/conf.d/*.conf;
#                     master pid in $T/lb/nginx.pid; sets FRONT (http://...)
#   start_green       tests/servers/httpd.py in $T/green/ as green: "/" answers
#                     "green", "/health" 200 ok, "/ready" 200; sets GREEN_PORT
#   front [PATH]      one request through nginx; prints the body
#   lb_workers        the master's children (worker pids), sorted, one line
# Both are stopped by the test's teardown (by pid); a server that does not
# start fails the test.

start_lb_nginx() {
  FRONT_PORT="$(free_port)"
  BLUE_PORT="$(free_port)"
  mkdir -p "$T/lb/conf.d"
  { nginx_head "$T/lb" 128; cat <<CONF; } >"$T/lb/nginx.conf"
  include $T/lb/upstream.conf;
  include $T/lb/conf.d/*.conf;
  server {
    listen 127.0.0.1:$FRONT_PORT;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
  server {
    listen 127.0.0.1:$BLUE_PORT;
    location / { return 200 "blue\n"; }
    location /health { return 200 "ok\n"; }
  }
}
CONF
  cat >"$T/lb/upstream.conf" <<CONF
# the app's servers; lb.nginx edits the server lines of this block
upstream app {
    server 127.0.0.1:$BLUE_PORT;
    keepalive 4;
}
CONF
  FRONT="http://127.0.0.1:$FRONT_PORT"
  nginx_run "$T/lb" "$T/lb-nginx.pid" "$FRONT/" blue "nginx (load balancer)"
}

start_green() {
  mkdir -p "$T/green"
  cat >"$T/green/control.json" <<'JSON'
{"/": {"status": 200, "body": "green\n"}, "/health": {"status": 200, "body": "ok\n"},
 "/ready": {"status": 200, "body": "ready\n"}}
JSON
  httpd_in "$T/green" "$T/green.pid" "$T/green/out" "green (tests/servers/httpd.py)" --port 0 || return 1
  GREEN_PORT="$(cat "$T/green/httpd.port")"
}

front() {
  curl -s --max-time 2 "$FRONT${1:-/}"
}

lb_workers() {
  local pid
  pid="$(cat "$T/lb/nginx.pid")"
  tr ' ' '\n' <"/proc/$pid/task/$pid/children" | grep . | sort | tr '\n' ' '
}

stop_lb() {
  stop_pids "$T/lb-nginx.pid" "$T/green.pid" "$T/haproxy.pid"
}
