#!/usr/bin/env bash
# bench/zero-downtime.sh - live traffic through a real front while zdm switches it
# from blue to green, beside the same switch done by hand with the raw command.
#
#   make && bash bench/zero-downtime.sh     (from the repo root; about 90 s)
#
# Everything runs on 127.0.0.1, free ports, in a temp dir, stopped on exit:
#   backends  one nginx with two server blocks, blue and green (X-Backend header;
#             green answers 500 while a flag file exists: scenario c)
#   fronts    nginx (upstream `app` in an included file, managed by lb.nginx), then
#             HAProxy (runtime API on a unix socket, level admin, managed by lb.haproxy)
#             with its Prometheus exporter scraped by a real Prometheus every 500 ms
#   load      bench/loadgen.c (libcurl multi): CONNS keep-alive connections, RATE
#             requests/s in total, one log line per response (time, status, backend)
# Scenarios, each REPS times with fresh load:
#   nginx   raw   write the upstream file + `nginx -s reload`
#   nginx   zdm   (a) runbooks/blue-green-nginx.yml (health gate, lb.nginx switch, watch)
#   haproxy raw   `set weight app/green 10; set weight app/blue 90` | socat (the 10% shift)
#   haproxy zdm   (b) runbooks/canary-haproxy.yml 10% -> 50% -> 100%, gates pass
#   haproxy raw   rollback by hand: green failing at 10%, `set weight app/green 0; ...`
#   haproxy zdm   (c) the canary with green failing: the metric gate fails, zdm undoes
# Latencies (ms, wall clock; the journal's `ts` and loadgen's CLOCK_REALTIME):
#   switch    first response from green - start (zdm: `ts` of the switch step's
#             step.started, i.e. lb.nginx `switch` / lb.haproxy `shift-10`;
#             raw: the moment the command was started)
#   rollback  last response from green - decision (zdm: `ts` of the failed gate's
#             step.failed; raw: the moment the command was started)
#   undone    zdm: the last undo.succeeded - step.failed; raw: the command's wall time.
#             Green gets one request in ten at 10%, so its last answer may come before
#             the weights changed; after `undone` it gets no new request: the later of
#             the two is what the rollback goal is held against.
# Goals, shown met/missed at the end:
#   HAProxy runs: 0 failed requests (non-2xx + socket errors); in (c) the 500s green
#     sends before the gate decides are the signal the gate acts on: they are shown,
#     and the goal there is 0 socket errors.
#   nginx runs: 0 non-2xx and an error rate < 0.01% (socket errors from keep-alive
#     connections closed at a reload are the only ones allowed, and counted).
#   zdm's switch latency <= the raw command's + 5 ms (medians, same run).
#   zdm's rollback latency < 100 ms (max over the runs of the later of the last green
#     answer and the end of the undo, see below). (Common zero-downtime targets: < 1 s switch,
#     < 5 s rollback.)
# It exits 0 whatever the numbers (a benchmark does not fail on a number) and non-zero
# when it could not measure: a server did not start, zdm exited with an unexpected
# code, no response came from green, or the load generator failed.
#
# Environment:
#   ZDM_BIN   zdm binary (default build/zdm)    LOADGEN  a built bench/loadgen (else built here)
#   RATE      requests/s in total (default 1000) CONNS   keep-alive connections (default 8)
#   REPS      repetitions of the short scenarios (default 5)
#   KEEP=1    keep the temp dir (logs, journals, per-response logs)

set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ZDM=${ZDM_BIN:-$REPO/build/zdm}
RATE=${RATE:-1000}
CONNS=${CONNS:-8}
REPS=${REPS:-5}
export ZDM_PLUGIN_PATH="$REPO/plugins"
export NO_COLOR=1

die() { printf 'zero-downtime.sh: %s\n' "$*" >&2; exit 1; }

[[ -x $ZDM ]] || die "zdm binary '$ZDM' not found or not executable (run make, or set ZDM_BIN)"
case $ZDM in /*) ;; *) ZDM=$PWD/$ZDM ;; esac
((RATE >= 50 && RATE <= 20000 && CONNS >= 1 && CONNS <= 64 && REPS >= 1 && REPS <= 20)) ||
	die "RATE (50..20000), CONNS (1..64) or REPS (1..20) out of range"
for c in nginx haproxy socat prometheus jq python3 curl; do
	command -v "$c" >/dev/null || die "'$c' is missing (scripts/deps.sh installs it)"
done
for p in lb/nginx lb/haproxy; do
	[[ -f $REPO/plugins/$p.lua ]] || die "plugins/$p.lua is missing (the bench switches traffic with it)"
done

TMP=$(mktemp -d /tmp/zdm-zdt.XXXXXX)
chmod 755 "$TMP" # nginx's workers (user nobody) test the green-fail flag in it
# shellcheck source=bench/lb-servers.sh
source "$REPO/bench/lb-servers.sh"
LOAD_PID=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	if [[ -n $LOAD_PID ]]; then kill "$LOAD_PID" 2>/dev/null || true; fi
	lbs_stop_all
	if [[ ${KEEP:-0} == 1 ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

LG=${LOADGEN:-}
if [[ -z $LG ]]; then
	LG=$TMP/loadgen
	# shellcheck disable=SC2046 # pkg-config prints several words
	cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -o "$LG" "$REPO/bench/loadgen.c" \
		$(pkg-config --cflags --libs libcurl jansson) || die "could not build bench/loadgen.c"
fi

now_ms() { date +%s%3N; }
ts_ms() { date -d "$1" +%s%3N; }
median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
		if (NR % 2) printf "%d", v[(NR + 1) / 2]; else printf "%d", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
maximum() { printf '%s\n' "$@" | sort -g | tail -n1; }
journal() { find "$1/runs" -name '*.jsonl' | head -n1; }
# ts (ms) of the first EVENT of step STEP (a jq regex) in journal $1
event_ms() {
	local ts
	ts=$(jq -r --arg e "$2" --arg s "$3" 'select(.event == $e and ((.step // "") | test($s))) | .ts' "$1" | head -n1)
	[[ -n $ts ]] || return 1
	ts_ms "$ts"
}

# ---------------------------------------------------------------- load
# load_start NAME: loadgen in the background (bounded: 120 s and RATE*120 requests),
# returns once it has logged its first 50 responses
load_start() {
	LOAD_NAME=$1
	"$LG" -u "http://127.0.0.1:$FRONT_PORT/" -c "$CONNS" -r "$RATE" -d 120000 -n $((RATE * 120)) \
		-l "$TMP/$1.log" -s "$TMP/$1.json" 2>"$TMP/$1.err" &
	LOAD_PID=$!
	local i
	for ((i = 0; i < 500; i++)); do
		[[ -s $TMP/$1.log ]] && (($(wc -l <"$TMP/$1.log") >= 50)) && return 0
		kill -0 "$LOAD_PID" 2>/dev/null || break
		sleep 0.01
	done
	die "the load generator did not get going ($(cat "$TMP/$1.err"))"
}
# (the per-response log is block-buffered: only complete once loadgen has exited)
load_stop() {
	sleep 0.3 # the tail: responses after the switch / rollback settle
	kill -TERM "$LOAD_PID"
	local rc=0
	wait "$LOAD_PID" || rc=$?
	LOAD_PID=""
	((rc == 0)) || die "loadgen exited $rc for $LOAD_NAME ($(cat "$TMP/$LOAD_NAME.err"))"
	[[ -s $TMP/$LOAD_NAME.json ]] || die "loadgen wrote no summary for $LOAD_NAME"
}
# wait (at most 10 s) until backend $1 answers the front (curl, not the load)
await_backend() {
	local i
	for ((i = 0; i < 400; i++)); do
		[[ $(curl -s -D - -o /dev/null --max-time 1 "http://127.0.0.1:$FRONT_PORT/" | tr -d '\r' |
			awk -F': ' 'tolower($1) == "x-backend" { print $2 }') == "$1" ]] && return 0
		sleep 0.025
	done
	die "the front does not answer from $1"
}
first_of() { awk -F'\t' -v b="$2" -v t="$3" '$3 == b && $1 >= t { printf "%.0f\n", $1; exit }' "$TMP/$1.log"; }
last_of() { awk -F'\t' -v b="$2" '$3 == b { l = $1 } END { if (l != "") printf "%.0f\n", l }' "$TMP/$1.log"; }

ROWS=()
# row FRONT RUN BY NAME SWITCH ROLLBACK UNDONE EXIT: one table line from NAME's summary
row() {
	ROWS+=("$(jq -r --arg f "$1" --arg r "$2" --arg b "$3" --arg s "$5" --arg rb "$6" --arg u "$7" --arg x "$8" \
		'"| \($f) | \($r) | \($b) | \(.requests) | \(.non_2xx) | \(.socket_errors) | \(.error_rate * 100 * 1000 | round / 1000)% | \(.closed_during_load) | \($s) | \($rb) | \($u) | \($x) |"' \
		"$TMP/$4.json")")
}
# totals per group for the goals: non-2xx, socket errors, requests
declare -A NON2XX SOCKERR REQS
tally() { # GROUP NAME
	NON2XX[$1]=$((${NON2XX[$1]:-0} + $(jq .non_2xx "$TMP/$2.json")))
	SOCKERR[$1]=$((${SOCKERR[$1]:-0} + $(jq .socket_errors "$TMP/$2.json")))
	REQS[$1]=$((${REQS[$1]:-0} + $(jq .requests "$TMP/$2.json")))
}

# ---------------------------------------------------------------- servers
echo "starting backends, nginx front (load: $RATE req/s over $CONNS keep-alive connections)" >&2
lbs_backends "$TMP/backends" || die "backends did not start"
lbs_nginx_front "$TMP/nginx" "$BLUE_ADDR" || die "the nginx front did not start"
NGX=(nginx -p "$TMP/nginx/" -c "$TMP/nginx/nginx.conf")

nginx_to() { # ADDR: the raw switch
	lbs_upstream_file "$TMP/nginx/upstream.conf" "$1"
	"${NGX[@]}" -s reload 2>>"$TMP/nginx/reload.log"
}
# the generation before the last reload has drained: one nginx worker left
await_one_worker() {
	local i master
	master=$(cat "$TMP/nginx/nginx.pid")
	for ((i = 0; i < 400; i++)); do
		(($(pgrep -c -P "$master" || true) == 1)) && return 0
		sleep 0.025
	done
	die "old nginx workers did not exit"
}

SW_NGX_RAW=() SW_NGX_ZDM=()
for ((r = 1; r <= REPS; r++)); do
	echo "nginx: raw switch $r/$REPS" >&2
	load_start "nginx-raw-$r"
	sleep 0.2
	t0=$(now_ms)
	nginx_to "$GREEN_ADDR"
	await_backend green
	load_stop
	first=$(first_of "nginx-raw-$r" green "$t0")
	[[ -n $first ]] || die "no response from green in nginx-raw-$r"
	SW_NGX_RAW+=($((first - t0)))
	row nginx "switch" raw "nginx-raw-$r" $((first - t0)) - - -
	tally nginx "nginx-raw-$r"
	nginx_to "$BLUE_ADDR"
	await_backend blue
	await_one_worker

	echo "nginx: zdm blue-green $r/$REPS" >&2
	st=$TMP/state-nginx-$r
	load_start "nginx-zdm-$r"
	rc=0
	"$ZDM" run "$REPO/runbooks/blue-green-nginx.yml" --state-dir "$st" \
		--var nginx_conf="$TMP/nginx/nginx.conf" --var nginx_prefix="$TMP/nginx/" \
		--var nginx_pid="$TMP/nginx/nginx.pid" --var upstream_file="$TMP/nginx/upstream.conf" \
		--var upstream=app --var green="$GREEN_ADDR" \
		--var green_health_url="http://$GREEN_ADDR/health" \
		--var site_url="http://127.0.0.1:$FRONT_PORT/health" \
		--var gate_interval=100ms --var healthy_rounds=2 --var watch_rounds=3 \
		>"$TMP/nginx-zdm-$r.out" 2>&1 || rc=$?
	load_stop
	((rc == 0)) || die "zdm (blue-green) exited $rc, not 0: $(tail -5 "$TMP/nginx-zdm-$r.out")"
	t0=$(event_ms "$(journal "$st")" step.started '^switch$') || die "no step.started for switch"
	first=$(first_of "nginx-zdm-$r" green "$t0")
	[[ -n $first ]] || die "no response from green in nginx-zdm-$r"
	SW_NGX_ZDM+=($((first - t0)))
	row nginx "(a) blue-green" zdm "nginx-zdm-$r" $((first - t0)) - - "$rc"
	tally nginx "nginx-zdm-$r"
	nginx_to "$BLUE_ADDR"
	await_backend blue
	await_one_worker
done

# ---------------------------------------------------------------- HAProxy
echo "starting HAProxy front and Prometheus" >&2
lbs_haproxy_front "$TMP/haproxy" || die "HAProxy did not start"
lbs_prometheus "$TMP/prom" "127.0.0.1:$HAPROXY_METRICS_PORT" || die "Prometheus did not start"
hap() { echo "$1" | socat -t 2 stdio "unix-connect:$HAPROXY_SOCK"; }
hap_reset() {
	hap "set server app/blue state ready; set weight app/blue 100; set server app/green state ready; set weight app/green 0" >/dev/null
	await_backend blue
}
# "weight state" of server $1 from `show servers state app` (uweight, admin state)
hap_server() { hap "show servers state app" | awk -v s="$1" '$4 == s { print $8, $7 }'; }
# green's 5xx as a share of all of app's answers over 2 s. Not the runbook's default
# (green's 5xx over green's own answers): that one is NaN -- no data, inconclusive,
# the run pauses -- until Prometheus has scraped green's first answers after a shift.
ERRQ='sum(rate(haproxy_server_http_responses_total{proxy="app",server="green",code="5xx"}[2s])) / sum(rate(haproxy_server_http_responses_total{proxy="app"}[2s]))'
# until ERRQ is 0 again (at most 15 s): no 500s from green in its window
prom_await_zero() {
	local i v
	for ((i = 0; i < 300; i++)); do
		v=$(curl -s --max-time 1 -g --data-urlencode "query=$ERRQ" "$PROM_URL/api/v1/query" |
			jq -r '.data.result[0].value[1] // empty' 2>/dev/null || true)
		[[ $v == 0 ]] && return 0
		sleep 0.05
	done
	die "green's error ratio in Prometheus is still '$v' 15 s after its 500s stopped"
}
canary() { # STATE OUT
	"$ZDM" run "$REPO/runbooks/canary-haproxy.yml" --state-dir "$1" \
		--var haproxy_socket="$HAPROXY_SOCK" --var backend=app --var prometheus="$PROM_URL" \
		--var error_query="$ERRQ" --var max_error_ratio=0.05 \
		--var gate_interval=1s --var measurements=2 >"$2" 2>&1
}

SW_HAP_RAW=() SW_HAP_ZDM=() RB_HAP_RAW=() RB_HAP_ZDM=()
for ((r = 1; r <= REPS; r++)); do
	echo "haproxy: raw 10% shift $r/$REPS" >&2
	load_start "hap-raw-$r"
	sleep 0.2
	t0=$(now_ms)
	hap "set weight app/green 10; set weight app/blue 90" >/dev/null
	sleep 0.2
	load_stop
	first=$(first_of "hap-raw-$r" green "$t0")
	[[ -n $first ]] || die "no response from green in hap-raw-$r"
	SW_HAP_RAW+=($((first - t0)))
	row haproxy "10% shift" raw "hap-raw-$r" $((first - t0)) - - -
	tally haproxy "hap-raw-$r"
	hap_reset
done

for ((r = 1; r <= REPS; r++)); do
	echo "haproxy: zdm canary 10% -> 50% -> 100% (b) $r/$REPS" >&2
	st=$TMP/state-hap-b-$r
	load_start "hap-zdm-b-$r"
	rc=0
	canary "$st" "$TMP/hap-zdm-b-$r.out" || rc=$?
	load_stop
	((rc == 0)) || die "zdm (canary) exited $rc, not 0: $(tail -5 "$TMP/hap-zdm-b-$r.out")"
	[[ $(hap_server green) == "100 0" ]] || die "after the canary green is '$(hap_server green)', not weight 100 ready"
	t0=$(event_ms "$(journal "$st")" step.started '^shift-10$') || die "no step.started for shift-10"
	first=$(first_of "hap-zdm-b-$r" green "$t0")
	[[ -n $first ]] || die "no response from green in the canary"
	SW_HAP_ZDM+=($((first - t0)))
	row haproxy "(b) canary" zdm "hap-zdm-b-$r" $((first - t0)) - - "$rc"
	tally haproxy "hap-zdm-b-$r"
	hap_reset
done

touch "$TMP/backends/green-fail"
for ((r = 1; r <= REPS; r++)); do
	echo "haproxy: raw rollback of a failing green $r/$REPS" >&2
	load_start "hap-rawrb-$r"
	hap "set weight app/green 10; set weight app/blue 90" >/dev/null
	sleep 0.5
	t0=$(now_ms)
	hap "set weight app/green 0; set weight app/blue 100" >/dev/null
	t1=$(now_ms)
	load_stop
	last=$(last_of "hap-rawrb-$r" green)
	[[ -n $last ]] || die "no response from green in hap-rawrb-$r"
	RB_HAP_RAW+=($((last > t1 ? last - t0 : t1 - t0)))
	row haproxy "rollback, green failing" raw "hap-rawrb-$r" - $((last - t0)) $((t1 - t0)) -
	tally haproxy_c "hap-rawrb-$r"
	hap_reset

	echo "haproxy: zdm canary, green failing (c) $r/$REPS" >&2
	# the raw run's 500s must be out of the gate's 2 s window first
	prom_await_zero
	st=$TMP/state-hap-c-$r
	load_start "hap-zdm-c-$r"
	rc=0
	canary "$st" "$TMP/hap-zdm-c-$r.out" || rc=$?
	load_stop
	((rc == 1)) || die "zdm (canary, green failing) exited $rc, not 1: $(tail -5 "$TMP/hap-zdm-c-$r.out")"
	[[ $(hap_server green) == "0 0" && $(hap_server blue) == "100 0" ]] ||
		die "after the rollback green is '$(hap_server green)', blue '$(hap_server blue)' (want 0 0, 100 0)"
	t0=$(event_ms "$(journal "$st")" step.failed '^gate-') || die "no failed gate in the journal"
	t1=$(jq -r 'select(.event == "undo.succeeded") | .ts' "$(journal "$st")" | tail -n1)
	[[ -n $t1 ]] || die "no undo.succeeded in the journal of (c)"
	t1=$(ts_ms "$t1")
	last=$(last_of "hap-zdm-c-$r" green)
	[[ -n $last ]] || die "no response from green in hap-zdm-c-$r"
	# held against the goal: the later of green's last answer and the end of the undo
	# (after it green gets no new request; the last answer alone is sampled coarsely)
	RB_HAP_ZDM+=($((last > t1 ? last - t0 : t1 - t0)))
	row haproxy "(c) canary, green failing" zdm "hap-zdm-c-$r" - $((last - t0)) $((t1 - t0)) "$rc"
	tally haproxy_c "hap-zdm-c-$r"
	hap_reset
done
rm -f "$TMP/backends/green-fail"

# ---------------------------------------------------------------- report
yn() { if (($1)); then echo met; else echo MISSED; fi; }
cat <<EOF

## zero-downtime under load ($RATE req/s, $CONNS keep-alive connections, loopback; $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg))

Latencies in ms. switch: first response from green - switch start (zdm: the step's
step.started; raw: the command's start). rollback: last response from green - decision
(zdm: the failed gate's step.failed; raw: the command's start); at 10% green gets one
request in 10, so its last response can come up to 10 requests' time before the weights
changed. undone: zdm: the last undo.succeeded - step.failed (journal); raw: the socat
command's wall time. closed: keep-alive connections the front closed under the load
(libcurl re-sent a request that met such a close on a new connection, as browsers do).

| front | run | by | requests | non-2xx | socket errors | error rate | closed | switch | rollback | undone | zdm exit |
|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
printf '%s\n' "${ROWS[@]}"

mr=$(median "${SW_NGX_RAW[@]}") mz=$(median "${SW_NGX_ZDM[@]}")
hr=$(median "${SW_HAP_RAW[@]}") hz=$(median "${SW_HAP_ZDM[@]}")
rr=$(median "${RB_HAP_RAW[@]}") rz=$(maximum "${RB_HAP_ZDM[@]}")
hap_failed=$((NON2XX[haproxy] + SOCKERR[haproxy]))
hapc_sock=${SOCKERR[haproxy_c]} ngx_non2xx=${NON2XX[nginx]}
ngx_rate=$(awk -v e="${SOCKERR[nginx]}" -v n="${REQS[nginx]}" 'BEGIN { printf "%.4f", n ? 100 * e / n : 0 }')
cat <<EOF

| goal | measured | |
|---|---|---|
| HAProxy runs (raw, b): 0 failed requests | ${NON2XX[haproxy]} non-2xx, ${SOCKERR[haproxy]} socket errors of ${REQS[haproxy]} | $(yn $((hap_failed == 0))) |
| HAProxy (c): 0 socket errors (green's 500s are the gate's signal) | ${SOCKERR[haproxy_c]} socket errors, ${NON2XX[haproxy_c]} non-2xx of ${REQS[haproxy_c]} | $(yn $((hapc_sock == 0))) |
| nginx runs: 0 non-2xx | ${NON2XX[nginx]} of ${REQS[nginx]} | $(yn $((ngx_non2xx == 0))) |
| nginx runs: error rate < 0.01% | ${ngx_rate}% (${SOCKERR[nginx]} socket errors) | $(yn "$(awk -v r="$ngx_rate" 'BEGIN { print (r < 0.01) }')") |
| nginx: zdm switch <= raw + 5 ms (medians) | zdm $mz, raw $mr | $(yn $((mz <= mr + 5))) |
| HAProxy: zdm switch <= raw + 5 ms (medians) | zdm $hz, raw $hr | $(yn $((hz <= hr + 5))) |
| HAProxy: zdm rollback < 100 ms (max of $REPS; the later of rollback and undone) | zdm $rz (raw median $rr) | $(yn $((rz < 100))) |
EOF
