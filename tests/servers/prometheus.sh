#!/usr/bin/env bash
# tests/servers/prometheus.sh - a real Prometheus 2.x for the gate suites,
# started by hand on 127.0.0.1 with free ports, everything under DIR.
#
#   prometheus.sh backfill DIR SPEC      before start: TSDB blocks from a spec
#                                        (tests/data/prometheus/backfill.spec)
#                                        with promtool tsdb create-blocks-from openmetrics
#   prometheus.sh start DIR PORT_FILE    a static server for DIR/metrics/metrics.txt
#                                        and Prometheus scraping it every second;
#                                        writes Prometheus' port to PORT_FILE once the
#                                        first scrape is in
#   prometheus.sh set DIR NAME VALUE     change (or add) one series of the scraped file
#   prometheus.sh unset DIR NAME         remove it (Prometheus marks it stale)
#   prometheus.sh await DIR QUERY VALUE  until the instant query's first value is
#                                        VALUE (as Prometheus writes it: 0.01, NaN),
#                                        or empty for VALUE "none"; at most 15 s
#   prometheus.sh stop DIR               stop both (TERM, then KILL), by pid
#
# Both processes run under `timeout` (PROM_LIFETIME seconds, default 600), so
# a suite that dies without stopping them cannot leave them behind for long.
# Every wait is bounded; on failure the logs are printed and the exit is 1.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
FIXTURES="$REPO/tests/data/prometheus"
LIFETIME="${PROM_LIFETIME:-600}"
# free_port
source "$REPO/tests/servers/common.bash"

die() {
	echo "prometheus.sh: $*" >&2
	exit 1
}

# GET a Prometheus API path; prints the body
api() {
	curl -sS -g --max-time 2 "http://127.0.0.1:$(cat "$1/prometheus.port")$2"
}

backfill() {
	local dir="$1" spec="$2" now
	[ -f "$spec" ] || die "no spec '$spec'"
	mkdir -p "$dir/data"
	now="$(date +%s)"
	# one counter sample every 15 s over the last 30 minutes, series by
	# series; none in the future: Prometheus would then refuse the scraped
	# samples as older than its newest block
	awk -v now="$now" '
		/^[ \t]*(#|$)/ { next }
		{
			name = $1; sub(/\{.*/, "", name)
			if (!(name in typed)) { typed[name] = 1; printf "# TYPE %s counter\n", name }
			v = $2
			for (t = now - 1800; t <= now; t += 15) { printf "%s %s %d\n", $1, v, t; v += $3 }
		}
		END { print "# EOF" }' "$spec" >"$dir/backfill.om"
	promtool tsdb create-blocks-from openmetrics "$dir/backfill.om" "$dir/data" >"$dir/backfill.log" 2>&1 ||
		{ cat "$dir/backfill.log" >&2; die "promtool could not backfill"; }
}

start() {
	local dir="$1" port_file="$2" mport="" pport
	mkdir -p "$dir/metrics" "$dir/data"
	[ -f "$dir/metrics/metrics.txt" ] || cp "$FIXTURES/metrics.txt" "$dir/metrics/metrics.txt"

	# the scraped file, served by a static server on a port it picks itself
	rm -f "$dir/metrics.port"
	timeout -s TERM "$LIFETIME" python3 -c '
import functools, http.server, os, sys
d = sys.argv[1]
class H(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(H, directory=d + "/metrics"))
with open(d + "/.metrics.port", "w") as f: f.write("%d\n" % srv.server_address[1])
os.rename(d + "/.metrics.port", d + "/metrics.port")
srv.serve_forever()' "$dir" >"$dir/metrics-server.log" 2>&1 3>&- &
	echo $! >"$dir/metrics-server.pid"
	for _ in $(seq 200); do
		[ -s "$dir/metrics.port" ] && break
		sleep 0.025
	done
	[ -s "$dir/metrics.port" ] || { cat "$dir/metrics-server.log" >&2; die "the metrics file server did not start"; }
	mport="$(cat "$dir/metrics.port")"
	sed "s/@TARGET@/127.0.0.1:$mport/" "$FIXTURES/prometheus.yml.in" >"$dir/prometheus.yml"

	# Prometheus cannot bind port 0 and say which port it got: pick a free
	# one, and pick again if another process took it first
	for _ in 1 2 3 4 5; do
		pport="$(free_port)"
		timeout -s TERM "$LIFETIME" prometheus --config.file="$dir/prometheus.yml" \
			--storage.tsdb.path="$dir/data" --storage.tsdb.retention.time=1d \
			--web.listen-address="127.0.0.1:$pport" >"$dir/prometheus.log" 2>&1 3>&- &
		echo $! >"$dir/prometheus.pid"
		echo "$pport" >"$dir/prometheus.port"
		for _ in $(seq 400); do
			curl -sf --max-time 1 "http://127.0.0.1:$pport/-/ready" >/dev/null 2>&1 && break 2
			kill -0 "$(cat "$dir/prometheus.pid")" 2>/dev/null || break
			sleep 0.05
		done
		if ! grep -q "address already in use" "$dir/prometheus.log"; then
			break
		fi
	done
	curl -sf --max-time 1 "http://127.0.0.1:$pport/-/ready" >/dev/null 2>&1 ||
		{ tail -20 "$dir/prometheus.log" >&2; stop "$dir"; die "prometheus did not become ready"; }
	# ready is not scraped: wait for the first scrape of the file
	for _ in $(seq 200); do
		[ "$(api "$dir" '/api/v1/query?query=up{job="app"}' | jq -r '.data.result[0].value[1] // empty' 2>/dev/null)" = 1 ] && break
		sleep 0.05
	done
	[ "$(api "$dir" '/api/v1/query?query=up{job="app"}' | jq -r '.data.result[0].value[1] // empty')" = 1 ] ||
		{ tail -20 "$dir/prometheus.log" >&2; stop "$dir"; die "prometheus did not scrape the metrics file"; }
	echo "$pport" >"$port_file"
}

# rewrite the scraped file under a lock, atomically (a scrape sees the old
# file or the new one)
edit() {
	local dir="$1" name="$2" value="${3-}"
	(
		flock 9
		awk -v name="$name" -v value="$value" '
			$1 == name { if (value != "" && !done) print name, value; done = 1; next }
			{ print }
			END { if (!done && value != "") print name, value }' \
			"$dir/metrics/metrics.txt" >"$dir/metrics/.metrics.tmp"
		mv "$dir/metrics/.metrics.tmp" "$dir/metrics/metrics.txt"
	) 9>"$dir/metrics.lock"
}

await() {
	local dir="$1" query="$2" want="$3" got="" enc
	enc="$(jq -rn --arg q "$query" '$q|@uri')"
	for _ in $(seq 300); do
		got="$(api "$dir" "/api/v1/query?query=$enc" | jq -r '.data.result[0].value[1] // "none"' 2>/dev/null || true)"
		[ "$got" = "$want" ] && return 0
		sleep 0.05
	done
	die "'$query' is still '$got', not '$want', after 15 s"
}

stop() {
	local dir="$1" f pid
	for f in prometheus metrics-server; do
		[ -f "$dir/$f.pid" ] || continue
		pid="$(cat "$dir/$f.pid")"
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 200); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.05
		done
		kill -KILL "$pid" 2>/dev/null || true
		rm -f "$dir/$f.pid"
	done
}

cmd="${1:-}"
shift || true
case "$cmd" in
backfill) [ $# -eq 2 ] || die "usage: backfill DIR SPEC"; backfill "$@" ;;
start) [ $# -eq 2 ] || die "usage: start DIR PORT_FILE"; start "$@" ;;
set) [ $# -eq 3 ] || die "usage: set DIR NAME VALUE"; edit "$@" ;;
unset) [ $# -eq 2 ] || die "usage: unset DIR NAME"; edit "$1" "$2" "" ;;
await) [ $# -eq 3 ] || die "usage: await DIR QUERY VALUE"; await "$@" ;;
stop) [ $# -eq 1 ] || die "usage: stop DIR"; stop "$@" ;;
*) die "usage: prometheus.sh backfill|start|set|unset|await|stop DIR ..." ;;
esac
