# shellcheck shell=bash disable=SC2034 # sets variables for the script that sources it
# bench/lb-servers.sh - real blue/green backends and fronts on 127.0.0.1 for
# bench/zero-downtime.sh and scripts/demo.sh (source it; bash).
#
#   lbs_backends DIR          one nginx, two server blocks on free ports: blue and
#                             green; every answer carries `X-Backend: blue|green`;
#                             /health is always 200; green answers 500 on every
#                             other path while DIR/green-fail exists (no reload:
#                             nginx tests the file per request).
#                             Sets BLUE_ADDR GREEN_ADDR (127.0.0.1:PORT).
#   lbs_nginx_front DIR ADDR  an nginx front on a free port whose main config
#                             (DIR/nginx.conf) includes DIR/upstream.conf, which holds
#                             `upstream app { server ADDR; }`; pid file DIR/nginx.pid.
#                             Sets FRONT_PORT.
#   lbs_haproxy_front DIR     HAProxy: frontend on a free port, backend `app` with
#                             servers blue (weight 100) and green (weight 0), runtime
#                             API at DIR/haproxy.sock (level admin), the Prometheus
#                             exporter on its own free port. Sets FRONT_PORT
#                             HAPROXY_SOCK HAPROXY_METRICS_PORT.
#   lbs_prometheus DIR TARGET a Prometheus scraping http://TARGET/metrics every
#                             SCRAPE (default 500ms). Sets PROM_URL.
#   lbs_stop_all              stop everything started here (TERM by pid, then KILL).
#
# Every server runs under `timeout $LBS_LIFETIME` (seconds, default 600), so one left
# behind by a killed script does not live long; every wait is bounded; a server that
# does not start makes the function print its log and return 1.

LBS_LIFETIME=${LBS_LIFETIME:-600}
LBS_PIDS=()

lbs_free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# lbs_await_http URL [TRIES]: until URL answers at all (any status), 25 ms apart
lbs_await_http() {
	local i
	for ((i = 0; i < ${2:-200}; i++)); do
		curl -s -o /dev/null --max-time 1 "$1" && return 0
		sleep 0.025
	done
	return 1
}

lbs_backends() {
	local dir=$1 bp gp
	mkdir -p "$dir"
	bp=$(lbs_free_port)
	gp=$(lbs_free_port)
	while [[ $gp == "$bp" ]]; do gp=$(lbs_free_port); done
	cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  default_type text/plain;
  keepalive_requests 100000;
  server {
    listen 127.0.0.1:$bp;
    add_header X-Backend blue always;
    location = /health { return 200 "blue ok\n"; }
    location / { return 200 "blue\n"; }
  }
  server {
    listen 127.0.0.1:$gp;
    add_header X-Backend green always;
    location = /health { return 200 "green ok\n"; }
    location / {
      if (-f $dir/green-fail) { return 500 "green failing\n"; }
      return 200 "green\n";
    }
  }
}
EOF
	timeout -s TERM "$LBS_LIFETIME" nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" \
		>"$dir/out" 2>&1 3>&- &
	LBS_PIDS+=($!)
	if ! lbs_await_http "http://127.0.0.1:$bp/health" || ! lbs_await_http "http://127.0.0.1:$gp/health"; then
		echo "the backends' nginx did not start:" >&2
		cat "$dir/out" "$dir/error.log" >&2
		return 1
	fi
	BLUE_ADDR=127.0.0.1:$bp
	GREEN_ADDR=127.0.0.1:$gp
}

# the upstream file in the shape lb.nginx manages
lbs_upstream_file() { # FILE ADDR
	printf 'upstream app {\n    server %s;\n}\n' "$2" >"$1"
}

lbs_nginx_front() {
	local dir=$1 addr=$2 port
	mkdir -p "$dir"
	port=$(lbs_free_port)
	lbs_upstream_file "$dir/upstream.conf" "$addr"
	cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  keepalive_requests 100000;
  include $dir/upstream.conf;
  server {
    listen 127.0.0.1:$port;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
	timeout -s TERM "$LBS_LIFETIME" nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" \
		>"$dir/out" 2>&1 3>&- &
	LBS_PIDS+=($!)
	if ! lbs_await_http "http://127.0.0.1:$port/health"; then
		echo "the front nginx did not start:" >&2
		cat "$dir/out" "$dir/error.log" >&2
		return 1
	fi
	FRONT_PORT=$port
}

lbs_haproxy_front() {
	local dir=$1 port mport i
	mkdir -p "$dir"
	port=$(lbs_free_port)
	mport=$(lbs_free_port)
	cat >"$dir/haproxy.cfg" <<EOF
global
  stats socket $dir/haproxy.sock mode 600 level admin
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  timeout http-keep-alive 30s
frontend fe
  bind 127.0.0.1:$port
  default_backend app
frontend metrics
  bind 127.0.0.1:$mport
  http-request use-service prometheus-exporter if { path /metrics }
backend app
  balance roundrobin
  server blue $BLUE_ADDR weight 100
  server green $GREEN_ADDR weight 0
EOF
	timeout -s TERM "$LBS_LIFETIME" haproxy -db -f "$dir/haproxy.cfg" >"$dir/out" 2>&1 3>&- &
	LBS_PIDS+=($!)
	for ((i = 0; i < 200; i++)); do
		[[ -S $dir/haproxy.sock ]] && break
		sleep 0.025
	done
	if [[ ! -S $dir/haproxy.sock ]] || ! lbs_await_http "http://127.0.0.1:$port/health"; then
		echo "HAProxy did not start:" >&2
		cat "$dir/out" >&2
		return 1
	fi
	FRONT_PORT=$port
	HAPROXY_SOCK=$dir/haproxy.sock
	HAPROXY_METRICS_PORT=$mport
}

lbs_prometheus() {
	local dir=$1 target=$2 port i try
	mkdir -p "$dir/data"
	cat >"$dir/prometheus.yml" <<EOF
global:
  scrape_interval: ${SCRAPE:-500ms}
  scrape_timeout: ${SCRAPE:-500ms}
scrape_configs:
  - job_name: haproxy
    static_configs:
      - targets: ['$target']
EOF
	# Prometheus cannot bind port 0: pick a free port, pick again if it was taken
	for try in 1 2 3; do
		port=$(lbs_free_port)
		timeout -s TERM "$LBS_LIFETIME" prometheus --config.file="$dir/prometheus.yml" \
			--storage.tsdb.path="$dir/data" --web.listen-address="127.0.0.1:$port" \
			>"$dir/prometheus.log" 2>&1 3>&- &
		LBS_PIDS+=($!)
		for ((i = 0; i < 400; i++)); do
			curl -sf --max-time 1 "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1 && break 2
			kill -0 "${LBS_PIDS[-1]}" 2>/dev/null || break
			sleep 0.05
		done
		grep -q "address already in use" "$dir/prometheus.log" || break
	done
	PROM_URL=http://127.0.0.1:$port
	# ready is not scraped: wait (at most 20 s) until the exporter's series are in
	for ((i = 0; i < 400; i++)); do
		[[ $(curl -s --max-time 1 -g "$PROM_URL/api/v1/query?query=up" | jq -r '.data.result[0].value[1] // empty' 2>/dev/null) == 1 ]] && return 0
		sleep 0.05
	done
	echo "Prometheus did not scrape $target:" >&2
	tail -20 "$dir/prometheus.log" >&2
	return 1
}

lbs_stop_all() {
	local pid i
	for pid in "${LBS_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${LBS_PIDS[@]}"; do
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.05
		done
		kill -KILL "$pid" 2>/dev/null || true
	done
	LBS_PIDS=()
}
