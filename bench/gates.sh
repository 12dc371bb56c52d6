#!/usr/bin/env bash
# bench/gates.sh — how long a failing gate takes to decide, beside its interval.
#
#   make && bash bench/gates.sh          (from the repo root; about 30 s)
#
# metric_gate: a real Prometheus (tests/servers/prometheus.sh) scrapes a metrics file
# every second; a gate watches it (count 0, failure_limit 0) and has taken a few
# successful measurements when the bench writes a breaching value into the file.
# Measured, each to the gate's step.failed in the journal:
#   - from the write of the file (includes Prometheus' scrape interval, 1 s);
#   - from the moment Prometheus first returns the breaching value (found by polling
#     the same query every 2 ms): the gate's own decision latency;
#   - from the gate.measurement that first reports the breach (journaling and the
#     verdict; with failure_limit 0 that measurement decides).
# health_gate: tests/servers/httpd.py answers 200 until the bench flips its control
# file to 500; the gate (unhealthy_threshold 1) has seen a few healthy rounds. Measured
# from the flip to step.failed.
# The write and the flip come a random part of an interval after a measurement, so the
# numbers spread over the interval; the max is the one to hold against the goal.
#
# Goal: decision latency <= interval + 20 ms. Everything is on 127.0.0.1 and every wait
# is bounded. It prints a table and exits 0 whatever the timings (a benchmark never fails
# on a number); non-zero only when zdm or a server failed to do what is measured.
#
# Environment:
#   ZDM_BIN    zdm binary (default: build/zdm)
#   INTERVAL   the gates' interval in ms (default 500)
#   REPS       failing runs per gate; median and max are reported (default 5)
#   KEEP=1     keep the temporary directory (journals, server logs)

set -euo pipefail

ZDM=${ZDM_BIN:-build/zdm}
INTERVAL=${INTERVAL:-500}
REPS=${REPS:-5}
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROMSH="$REPO/tests/servers/prometheus.sh"

die() { printf 'gates.sh: %s\n' "$*" >&2; exit 1; }

[[ -x $ZDM ]] || die "zdm binary '$ZDM' not found or not executable (run make, or set ZDM_BIN)"
case $ZDM in /*) ;; *) ZDM=$PWD/$ZDM ;; esac
((INTERVAL >= 50 && INTERVAL <= 10000 && REPS >= 1 && REPS <= 50)) || die "INTERVAL or REPS out of range"
for c in prometheus promtool python3 curl jq; do
	command -v "$c" >/dev/null || die "'$c' is missing (scripts/deps.sh installs it)"
done

TMP=$(mktemp -d)
HTTPD_PID=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	"$PROMSH" stop "$TMP/prom" 2>/dev/null || true
	if [[ -n $HTTPD_PID ]]; then kill "$HTTPD_PID" 2>/dev/null || true; fi
	if [[ ${KEEP:-0} == 1 ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

now_ms() { date +%s%3N; }
# journal ts ("2026-11-21T10:00:01.123Z") -> ms since the epoch
ts_ms() { date -d "$1" +%s%3N; }
median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
		if (NR % 2) printf "%d", v[(NR + 1) / 2]; else printf "%d", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
maximum() { printf '%s\n' "$@" | sort -g | tail -n1; }
met() { if (($1 <= $2)); then echo yes; else echo NO; fi; }

# a random part of an interval: the breach lands anywhere between two measurements
phase_sleep() { sleep "$(awk -v r="$RANDOM" -v i="$INTERVAL" 'BEGIN { printf "%.3f", (r % i) / 1000 }')"; }

# wait (at most $2 s) until the journal $1 holds at least $3 gate.measurement records
await_measurements() {
	local i
	for ((i = 0; i < $2 * 100; i++)); do
		if [[ -f $1 ]] && (($(grep -c '"gate.measurement"' "$1" || true) >= $3)); then return 0; fi
		sleep 0.01
	done
	return 1
}

# wait (at most 30 s) for zdm pid $1; its exit code must be 1 (the gate failed)
await_failed() {
	local i rc=0
	for ((i = 0; i < 3000; i++)); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.01
	done
	kill -0 "$1" 2>/dev/null && { kill "$1"; die "the gate did not decide within 30 s"; }
	wait "$1" || rc=$?
	((rc == 1)) || die "zdm exited $rc, not 1 (see $2)"
}

# the newest journal in state dir $1
# shellcheck disable=SC2012 # run ids are [0-9TZ-]; newest first
journal() { ls -t "$1"/runs/*.jsonl | head -n1; }
event_ts() { jq -r --arg e "$2" --arg p "${3:-}" \
	'select(.event == $e and ($p == "" or .data.phase == $p)) | .ts' "$1" | head -n1; }

# ------------------------------------------------------------- metric_gate
mkdir -p "$TMP/prom"
"$PROMSH" start "$TMP/prom" "$TMP/prom/port" || die "prometheus did not start"
PROM="http://127.0.0.1:$(cat "$TMP/prom/port")"
cat >"$TMP/metric.yml" <<EOF
zdm: 1
name: bench-metric-gate
steps:
  - id: gate
    uses: metric_gate
    timeout: 60s
    with:
      provider: prometheus
      address: $PROM
      query: bench_error_ratio
      success: result < 0.05
      interval: ${INTERVAL}ms
EOF
# polls the query every 2 ms in one process (no fork per poll) and prints the
# wall-clock ms at which Prometheus first returns the breaching value
cat >"$TMP/poll.py" <<'EOF'
import json, sys, time, urllib.request
url = sys.argv[1] + "/api/v1/query?query=bench_error_ratio"
end = time.time() + 30
while time.time() < end:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            res = json.load(r)["data"]["result"]
        if res and res[0]["value"][1] == "0.2":
            print(int(time.time() * 1000))
            break
    except (OSError, ValueError, KeyError):
        pass
    time.sleep(0.002)
EOF
w2f=() v2f=() b2f=()
for ((r = 1; r <= REPS; r++)); do
	st="$TMP/metric-$r"
	"$PROMSH" set "$TMP/prom" bench_error_ratio 0.01
	"$PROMSH" await "$TMP/prom" bench_error_ratio 0.01
	# await returns just after a scrape: start the gate at a random point of the
	# scrape interval, or its measurements would be in step with the scrapes
	sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.3f", (r % 1000) / 1000 }')"
	"$ZDM" run "$TMP/metric.yml" --state-dir "$st" >"$TMP/metric-$r.out" 2>&1 &
	pid=$!
	for ((i = 0; i < 1000; i++)); do compgen -G "$st/runs/*.jsonl" >/dev/null && break; sleep 0.01; done
	await_measurements "$(journal "$st")" 10 2 || die "the metric gate took no measurements (see $TMP/metric-$r.out)"
	timeout 40 python3 "$TMP/poll.py" "$PROM" >"$TMP/visible-$r" &
	poller=$!
	phase_sleep
	t_write=$(now_ms)
	"$PROMSH" set "$TMP/prom" bench_error_ratio 0.2
	await_failed "$pid" "$TMP/metric-$r.out"
	wait "$poller" || true
	t_visible=$(cat "$TMP/visible-$r")
	[[ -n $t_visible ]] || die "prometheus never returned the breaching value"
	j=$(journal "$st")
	t_failed=$(ts_ms "$(event_ts "$j" step.failed)")
	t_breach=$(ts_ms "$(event_ts "$j" gate.measurement failed)")
	w2f+=($((t_failed - t_write)))
	v2f+=($((t_failed - t_visible)))
	b2f+=($((t_failed - t_breach)))
done
"$PROMSH" stop "$TMP/prom"

# ------------------------------------------------------------- health_gate
echo '{"/health": {"status": 200, "body": "ok"}}' >"$TMP/control.json"
timeout 300 python3 "$REPO/tests/servers/httpd.py" "$TMP/" --lifetime 300 >"$TMP/httpd.out" 2>&1 &
HTTPD_PID=$!
for ((i = 0; i < 400; i++)); do [[ -s $TMP/httpd.port ]] && break; sleep 0.025; done
[[ -s $TMP/httpd.port ]] || die "tests/servers/httpd.py did not start"
cat >"$TMP/health.yml" <<EOF
zdm: 1
name: bench-health-gate
steps:
  - id: gate
    uses: health_gate
    timeout: 60s
    with:
      url: http://127.0.0.1:$(cat "$TMP/httpd.port")/health
      interval: ${INTERVAL}ms
      healthy_threshold: 10000
      unhealthy_threshold: 1
EOF
f2f=()
for ((r = 1; r <= REPS; r++)); do
	st="$TMP/health-$r"
	echo '{"/health": {"status": 200, "body": "ok"}}' >"$TMP/control.tmp" && mv "$TMP/control.tmp" "$TMP/control.json"
	"$ZDM" run "$TMP/health.yml" --state-dir "$st" >"$TMP/health-$r.out" 2>&1 &
	pid=$!
	for ((i = 0; i < 1000; i++)); do compgen -G "$st/runs/*.jsonl" >/dev/null && break; sleep 0.01; done
	await_measurements "$(journal "$st")" 10 2 || die "the health gate took no measurements (see $TMP/health-$r.out)"
	phase_sleep
	t_flip=$(now_ms)
	echo '{"/health": {"status": 500, "body": "down"}}' >"$TMP/control.tmp" && mv "$TMP/control.tmp" "$TMP/control.json"
	await_failed "$pid" "$TMP/health-$r.out"
	f2f+=($(($(ts_ms "$(event_ts "$(journal "$st")" step.failed)") - t_flip)))
done

# ------------------------------------------------------------- the table
goal=$((INTERVAL + 20))
printf '\ngate decision latency, ms (median and max of %d failing runs; goal: <= interval + 20 ms = %d)\n\n' "$REPS" "$goal"
printf '%-12s %9s  %-44s %7s %7s  %5s\n' gate interval "from ... to step.failed" median max goal
printf '%-12s %9s  %-44s %7s %7s  %5s\n' metric_gate "$INTERVAL" "metrics file written (+ scrape, 1 s)" \
	"$(median "${w2f[@]}")" "$(maximum "${w2f[@]}")" "-"
printf '%-12s %9s  %-44s %7s %7s  %5s\n' metric_gate "$INTERVAL" "Prometheus first returns the breach" \
	"$(median "${v2f[@]}")" "$(maximum "${v2f[@]}")" "$(met "$(maximum "${v2f[@]}")" "$goal")"
printf '%-12s %9s  %-44s %7s %7s  %5s\n' metric_gate "$INTERVAL" "gate.measurement of the breach (journal)" \
	"$(median "${b2f[@]}")" "$(maximum "${b2f[@]}")" "-"
printf '%-12s %9s  %-44s %7s %7s  %5s\n' health_gate "$INTERVAL" "backend starts failing (control flip)" \
	"$(median "${f2f[@]}")" "$(maximum "${f2f[@]}")" "$(met "$(maximum "${f2f[@]}")" "$goal")"
printf '\nper run: metric write %s | visible %s | breach %s | health flip %s\n' \
	"${w2f[*]}" "${v2f[*]}" "${b2f[*]}" "${f2f[*]}"
