# A real HAProxy for the lb suites (load after helper and servers/httpd), on
# 127.0.0.1 with free ports, everything under $T/hx.
#
#   start_backends [S]    nginx answering "blue" on $BLUE_PORT and "green" on
#                         $GREEN_PORT (the two versions of the app); green
#                         answers with status S (default 200)
#   start_haproxy [user]  haproxy -db with
#                           - the runtime API on $HX_SOCK (unix, level admin,
#                             or level user with "user") and on
#                             127.0.0.1:$HX_TCP (TCP, level admin)
#                           - frontend on $HX_PORT -> backend app: roundrobin,
#                             server blue (weight 77, ready) and server green
#                             (weight 3, maint): uncommon values, so a restore
#                             that puts back defaults instead would show
#   start_haproxy_prometheus
#                         a real Prometheus scraping HAProxy's own exporter
#                         (http://127.0.0.1:$HX_PORT/metrics) every second;
#                         sets HX_PROM (its URL); stopped with the rest
#   hx CMD                one runtime API command through socat; prints the reply
#   hx_state              "name weight admin_state" of app's servers, sorted
#   hx_answers N          N requests through HAProxy: "blue=X green=Y"
# Both are stopped by stop_haproxy (by pid) from the test's teardown.

start_backends() {
  local status="${1:-200}"
  BLUE_PORT="$(free_port)"
  GREEN_PORT="$(free_port)"
  mkdir -p "$T/be"
  { nginx_head "$T/be" 256; cat <<CONF; } >"$T/be/nginx.conf"
  server { listen 127.0.0.1:$BLUE_PORT; location / { return 200 "blue\n"; } }
  server { listen 127.0.0.1:$GREEN_PORT; location / { return $status "green\n"; } }
}
CONF
  # green answers "green" whatever its status: it is up
  nginx_run "$T/be" "$T/be-nginx.pid" "http://127.0.0.1:$GREEN_PORT/" green "nginx (backends)"
}

start_haproxy() {
  local level=admin i
  [ "${1:-}" = user ] && level=user
  HX_PORT="$(free_port)"
  HX_TCP="$(free_port)"
  HX_SOCK="$T/hx/admin.sock"
  mkdir -p "$T/hx"
  cat >"$T/hx/haproxy.cfg" <<CONF
global
  stats socket $HX_SOCK mode 600 level $level
  stats socket ipv4@127.0.0.1:$HX_TCP level admin
defaults
  mode http
  timeout connect 1s
  timeout client 10s
  timeout server 10s
frontend fe
  bind 127.0.0.1:$HX_PORT
  http-request use-service prometheus-exporter if { path /metrics }
  default_backend app
backend app
  balance roundrobin
  server blue 127.0.0.1:$BLUE_PORT weight 77
  server green 127.0.0.1:$GREEN_PORT weight 3
CONF
  timeout 120 haproxy -db -f "$T/hx/haproxy.cfg" >"$T/hx/out" 2>&1 3>&- &
  echo $! >"$T/haproxy.pid"
  for i in $(seq 200); do
    [ -S "$HX_SOCK" ] && [ "$(curl -s --max-time 1 "http://127.0.0.1:$HX_PORT/")" = blue ] && break
    sleep 0.025
  done
  if [ "$(curl -s --max-time 1 "http://127.0.0.1:$HX_PORT/")" != blue ]; then
    echo "haproxy did not start:" >&2
    cat "$T/hx/out" >&2
    return 1
  fi
  [ "$level" = user ] && return 0
  # green parked in maintenance by hand, as before a canary
  [ -z "$(hx "set server app/green state maint" | tr -d '\n')" ]
}

hx() {
  echo "$1" | socat -t 2 stdio "TCP:127.0.0.1:$HX_TCP"
}

hx_state() {
  hx "show servers state app" | awk '$1 ~ /^[0-9]+$/ && NF > 8 { print $4, $8, $7 }' | sort
}

hx_answers() {
  local i urls=()
  # one curl, one keep-alive connection: HAProxy balances each request anew
  for i in $(seq "$1"); do urls+=("http://127.0.0.1:$HX_PORT/"); done
  curl -s --max-time 10 "${urls[@]}" |
    sort | uniq -c | awk '{ printf "%s%s=%s", sep, $2, $1; sep = " " } END { print "" }'
}

start_haproxy_prometheus() {
  local port i
  mkdir -p "$T/prom/data"
  cat >"$T/prom/prometheus.yml" <<CONF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: haproxy
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:$HX_PORT"]
CONF
  port="$(free_port)"
  timeout 120 prometheus --config.file="$T/prom/prometheus.yml" --storage.tsdb.path="$T/prom/data" \
    --web.listen-address="127.0.0.1:$port" >"$T/prom/log" 2>&1 3>&- &
  echo $! >"$T/prometheus.pid"
  HX_PROM="http://127.0.0.1:$port"
  for i in $(seq 300); do
    curl -sf --max-time 1 "$HX_PROM/-/ready" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "prometheus did not become ready:" >&2
  tail -20 "$T/prom/log" >&2
  return 1
}

# until Prometheus' instant query $1 has a first value that is a number (not
# NaN: a rate needs two scrapes after a change), at most 15 s; prints it
prom_await() {
  local v="" i
  for i in $(seq 150); do
    v="$(curl -sS -g --max-time 2 "$HX_PROM/api/v1/query" --data-urlencode "query=$1" |
      jq -r '.data.result[0].value[1] // empty' 2>/dev/null || true)"
    [ -n "$v" ] && [ "$v" != NaN ] && { echo "$v"; return 0; }
    sleep 0.1
  done
  echo "no value for '$1' after 15 s" >&2
  return 1
}

stop_haproxy() {
  stop_pids "$T/prometheus.pid" "$T/haproxy.pid" "$T/be-nginx.pid"
}
