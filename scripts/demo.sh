#!/usr/bin/env bash
# make demo: a real blue-green switch on loopback.  Blue and green backends and a
# front nginx start in a temp dir on free ports; live traffic (bench/loadgen, libcurl,
# 300 requests/s over 4 keep-alive connections) runs through the front while zdm runs
# runbooks/blue-green-nginx.yml; the traffic moves from blue to green without an
# error.  Then the journal (zdm log, zdm audit verify), `zdm rollback` back to blue,
# and a drill: green passes its own health check but fails real requests, the watch
# gate through nginx fails, and zdm puts the upstream back: traffic is on blue again.
# Everything is stopped and removed at the end (KEEP=1 keeps the temp dir).
#
#   make demo                     (or: make && bash scripts/demo.sh)
#   ZDM_BIN=... LOADGEN=... bash scripts/demo.sh
#   REPORT_PNG=docs/report.png make demo   (also: the drill's zdm report, as a picture)
#
# Needs nginx, curl, jq, python3 (scripts/deps.sh) and, unless LOADGEN names a built
# bench/loadgen, cc with libcurl's and jansson's headers (zdm's own build deps).
# Exit 0 when the traffic moved and was put back; 1 otherwise.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
ZDM="${ZDM_BIN:-$REPO/build/zdm}"
RB="$REPO/runbooks/blue-green-nginx.yml"
export ZDM_PLUGIN_PATH="$REPO/plugins"

die() { printf 'demo: %s\n' "$*" >&2; exit 1; }
[[ -x $ZDM ]] || die "no zdm binary at $ZDM (run make, or set ZDM_BIN)"
for c in nginx curl jq python3; do
	command -v "$c" >/dev/null || die "'$c' is missing (run: bash scripts/deps.sh)"
done

DEMO=$(mktemp -d /tmp/zdm-demo.XXXXXX)
chmod 755 "$DEMO" # nginx's workers (user nobody) test green's fail flag in it
STATE="$DEMO/state"
# shellcheck source=bench/lb-servers.sh
source "$REPO/bench/lb-servers.sh"
LBS_LIFETIME=300
LOAD_PID=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	if [[ -n $LOAD_PID ]]; then kill "$LOAD_PID" 2>/dev/null || true; fi
	lbs_stop_all
	if [[ ${KEEP:-0} == 1 ]]; then echo "kept $DEMO" >&2; else rm -rf "$DEMO"; fi
}
trap cleanup EXIT

if [[ -t 1 && -z ${NO_COLOR:-} ]]; then
	say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
	say() { printf '\n== %s\n' "$*"; }
fi

LG=${LOADGEN:-$REPO/build/loadgen}
if [[ ! -x $LG ]]; then
	LG=$DEMO/loadgen
	# shellcheck disable=SC2046 # pkg-config prints several words
	cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -o "$LG" "$REPO/bench/loadgen.c" \
		$(pkg-config --cflags --libs libcurl jansson) || die "could not build bench/loadgen.c"
fi

# N requests through the front, one line each: the backend that answered and the status
show_requests() {
	local i out
	for ((i = 0; i < $1; i++)); do
		out=$(curl -s -D - -o /dev/null --max-time 2 "$SITE/" | tr -d '\r')
		printf '  GET %s/ -> %s, X-Backend: %s\n' "$SITE" \
			"$(awk 'NR == 1 { print $2 }' <<<"$out")" \
			"$(awk -F': ' 'tolower($1) == "x-backend" { print $2 }' <<<"$out")"
	done
}
# the backend answering the front now (one request)
backend_now() {
	curl -s -D - -o /dev/null --max-time 2 "$SITE/" | tr -d '\r' |
		awk -F': ' 'tolower($1) == "x-backend" { print $2 }'
}
load_start() { # NAME
	"$LG" -u "$SITE/" -c 4 -r 300 -d 60000 -n 18000 -l "$DEMO/$1.log" -s "$DEMO/$1.json" \
		2>"$DEMO/$1.err" &
	LOAD_PID=$!
	sleep 0.3
}
load_stop() {
	sleep 0.3
	kill -TERM "$LOAD_PID"
	wait "$LOAD_PID" || die "the load generator failed: $(cat "$DEMO/$1.err")"
	LOAD_PID=""
}
ts_ms() { date -d "$1" +%s%3N; }
# ts (ms) of the first EVENT of STEP in the newest journal
event_ms() {
	local j ts
	j=$(find "$STATE/runs" -name '*.jsonl' -newer "$DEMO/.mark" | head -n1)
	ts=$(jq -r --arg e "$1" --arg s "$2" 'select(.event == $e and .step == $s) | .ts' "$j" | head -n1)
	[[ -n $ts ]] && ts_ms "$ts"
}
ZVARS=()
run_runbook() {
	touch "$DEMO/.mark"
	sleep 0.01
	"$ZDM" run "$RB" --state-dir "$STATE" "${ZVARS[@]}"
}

say "blue and green backends and a front nginx on 127.0.0.1 (in $DEMO)"
lbs_backends "$DEMO/backends" || die "the backends did not start"
lbs_nginx_front "$DEMO/front" "$BLUE_ADDR" || die "the front nginx did not start"
SITE="http://127.0.0.1:$FRONT_PORT"
echo "  blue $BLUE_ADDR, green $GREEN_ADDR, front $SITE (upstream app in $DEMO/front/upstream.conf)"
show_requests 3
[[ $(backend_now) == blue ]] || die "the front does not answer from blue"

ZVARS=(--var nginx_conf="$DEMO/front/nginx.conf" --var nginx_prefix="$DEMO/front/"
	--var nginx_pid="$DEMO/front/nginx.pid" --var upstream_file="$DEMO/front/upstream.conf"
	--var upstream=app --var green="$GREEN_ADDR" --var green_health_url="http://$GREEN_ADDR/health"
	--var site_url="$SITE/" --var gate_interval=200ms --var healthy_rounds=3 --var watch_rounds=3)

say "zdm validate and zdm plan"
"$ZDM" validate "$RB" "${ZVARS[@]}"
"$ZDM" plan "$RB" "${ZVARS[@]}"

say "zdm run runbooks/blue-green-nginx.yml, with 300 requests/s going through the front"
load_start switch
run_runbook || die "zdm run failed (exit $?)"
load_stop switch
t_switch=$(event_ms step.started switch) || die "no step.started for 'switch' in the journal"
first_green=$(awk -F'\t' '$3 == "green" { printf "%.0f", $1; exit }' "$DEMO/switch.log")
[[ -n $first_green ]] || die "no request reached green"
read -r n non2xx sockerr < <(jq -r '"\(.requests) \(.non_2xx) \(.socket_errors)"' "$DEMO/switch.json")
say "traffic moved: $n requests, $non2xx non-2xx, $sockerr socket errors; blue -> green $((first_green - t_switch)) ms after the switch step started"
show_requests 3
[[ $(backend_now) == green ]] || die "the front does not answer from green after the run"
[[ $non2xx == 0 && $sockerr == 0 ]] || die "requests failed during the switch"

say "zdm log (the journal of that run)"
"$ZDM" log "$RB" --state-dir "$STATE"
say "zdm audit verify"
"$ZDM" audit verify "$(find "$STATE/runs" -name '*.jsonl' -newer "$DEMO/.mark" | head -n1)"

say "zdm rollback: the upstream file's old bytes come back from the journal"
"$ZDM" rollback "$RB" --state-dir "$STATE" "${ZVARS[@]}" || die "zdm rollback failed (exit $?)"
show_requests 2
[[ $(backend_now) == blue ]] || die "the front does not answer from blue after zdm rollback"

say "a drill: green passes its own health check but answers 500 to real requests"
touch "$DEMO/backends/green-fail"
load_start drill
set +e
run_runbook
rc=$?
set -e
load_stop drill
t_failed=$(event_ms step.failed watch) || die "the watch gate did not fail (exit $rc)"
last_green=$(awk -F'\t' '$3 == "green" { l = $1 } END { printf "%.0f", l }' "$DEMO/drill.log")
read -r n non2xx sockerr < <(jq -r '"\(.requests) \(.non_2xx) \(.socket_errors)"' "$DEMO/drill.json")
say "exit $rc (1: a gate failed and the rollback completed): $n requests, $non2xx answered 500 by green while the gate watched, $sockerr socket errors; last answer from green $((last_green - t_failed)) ms after the gate failed"
show_requests 3
[[ $rc -eq 1 && $(backend_now) == blue ]] || die "the drill did not roll back as expected"

# REPORT_PNG=FILE: the drill's HTML report (zdm report), as Chromium shows it
# (tests/report_dom.js, playwright-core from scripts/deps.sh's npm cache), into
# FILE: REPORT_PNG=docs/report.png make demo makes the picture of docs/report.md
if [[ -n ${REPORT_PNG:-} ]]; then
	say "zdm report of the drill, as a picture: $REPORT_PNG"
	"$ZDM" report "$RB" --state-dir "$STATE" --html "$DEMO/report.html" || die "zdm report failed"
	NODE_PATH="${XDG_CACHE_HOME:-$HOME/.cache}/zdm-npm/node_modules" \
		node "$REPO/tests/report_dom.js" "$DEMO/report.html" "$REPORT_PNG" >/dev/null ||
		die "no picture of the report (chromium and playwright-core: scripts/deps.sh)"
fi
say "demo done: traffic moved blue -> green with no failed request, and the failed drill put it back on blue"
