#!/usr/bin/env bash
# bench/scale.sh — how zdm's commands grow with the size of a runbook and its journal.
#
#   make bench-scale                      (or: make && bash bench/scale.sh; 5-15 min)
#   SCALES="1000 10000" REPS=3 bash bench/scale.sh
#   ZDM_BIN=/path/to/other/zdm bash bench/scale.sh     # the same bench, another build
#
# For each size N in SCALES it generates, in a temp dir:
#   - an exec runbook: N steps `uses: exec` with `command: ["true"]`;
#   - a wait runbook: N steps `uses: wait` (duration 0ms: read-only, nothing to undo);
#   - a crashed journal of each: `zdm run` killed by ZDM_TEST_CRASH_AFTER_RECORD=2N-1
#     (SIGKILL right after the record is durable: run.started + 2 records per step,
#     so N-1 steps succeeded and the last one never started: about 2 records a step).
# and measures, at each size, wall time (median of REPS) and peak RSS (/usr/bin/time -f %M):
#   validate, plan         the exec runbook
#   run                    the exec runbook to the end (fresh state dir each rep)
#   status, log            the crashed exec run, by RUN_ID
#   audit verify           the crashed exec run's journal file
#   resume                 the crashed exec run (1 step left), a fresh copy each rep
#   rollback --yes         the crashed wait run (no undos: every step is read-only)
#   sha256sum              the crashed exec journal's bytes (the floor of audit verify)
#   floor                  build/floor of bench/floor.c: N x (append+fdatasync, posix_spawn
#                          /bin/true and wait, append+fdatasync): the floor of zdm run
# and, with CALLGRIND=1 (default when valgrind is installed), callgrind's instruction
# count (Ir, the zdm process only, not its children) of each at sizes <= CALLGRIND_MAX.
# Then, when GATE_MEASUREMENTS > 0, one health_gate run of that many measurements
# (interval 1ms, against tests/servers/httpd.py on 127.0.0.1) and status, log and audit
# verify of its journal beside sha256sum, and the same gate with a tenth of the
# measurements: the difference of their peak RSS over 0.9 x GATE_MEASUREMENTS is what a
# measurement costs in memory (a gate keeps its state, not its history).  Then, with
# nginx installed, an nginx upstream switch (bench/lb-servers.sh's backends and front):
# raw `nginx -s reload` beside a one-step lb.nginx run, each from its start to the first
# answer from green.  Last, a goals table (met/MISSED/n/a), one line per goal.
#
# Wall times of every command but `zdm version` and the 10-step validate include the
# fork+exec of /usr/bin/time (the row "/usr/bin/time true" shows what that costs).
#
# It prints tables and exits 0 whatever the numbers. It exits non-zero only when zdm
# failed to do what was measured: a command that did not exit as expected, a crashed
# journal that does not have the records it should, a run or resume that did not end
# with every step succeeded.
#
# Environment:
#   ZDM_BIN            zdm binary to measure (default: build/zdm); any build, to compare
#   SCALES             step counts (default "1000 3000 10000"; e.g. "1000 3000 10000 30000")
#   REPS               repetitions of each timed command; the median is shown (default 3)
#   CALLGRIND          1 to count instructions with valgrind's callgrind, 0 not (default:
#                      1 when valgrind is installed)
#   CALLGRIND_MAX      largest size counted under callgrind (default: the smallest of
#                      SCALES; callgrind is ~50x slower: a 10k-step run takes minutes)
#   GATE_MEASUREMENTS  measurements of the health_gate journal (default 10000; 0: skip)
#   NGINX_SWITCH       0 to skip the nginx switch (default 1: measured when nginx is installed)
#   BENCH_TMPDIR       parent of the temp dir (default: mktemp -d's); the journals and
#                      the floor's file live there, on one filesystem
#   CC                 C compiler for bench/floor.c (default cc)
#   KEEP=1             keep the temp dir

set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ZDM=${ZDM_BIN:-$REPO/build/zdm}
SCALES=${SCALES:-"1000 3000 10000"}
REPS=${REPS:-3}
GATE_MEASUREMENTS=${GATE_MEASUREMENTS:-10000}
CC=${CC:-cc}

die() { printf 'scale.sh: %s\n' "$*" >&2; exit 1; }

[[ -x $ZDM ]] || die "zdm binary '$ZDM' not found or not executable (run make, or set ZDM_BIN)"
case $ZDM in /*) ;; *) ZDM=$PWD/$ZDM ;; esac
((REPS >= 1 && REPS <= 50)) || die "REPS out of range (1..50)"
read -r -a SIZES <<<"$SCALES"
((${#SIZES[@]} >= 1)) || die "SCALES is empty"
for n in "${SIZES[@]}"; do
	if ! [[ $n =~ ^[0-9]+$ ]] || ((n < 10 || n > 100000)); then die "SCALES: '$n' is not 10..100000"; fi
done
if ! [[ $GATE_MEASUREMENTS =~ ^[0-9]+$ ]] || ((GATE_MEASUREMENTS > 100000)); then
	die "GATE_MEASUREMENTS must be 0..100000"
fi
SMALLEST=$(printf '%s\n' "${SIZES[@]}" | sort -n | head -n1)
if [[ -z ${CALLGRIND:-} ]]; then
	if command -v valgrind >/dev/null; then CALLGRIND=1; else CALLGRIND=0; fi
fi
if [[ $CALLGRIND == 1 ]] && ! command -v valgrind >/dev/null; then
	echo "scale.sh: CALLGRIND=1 but valgrind is not installed: no instruction counts" >&2
	CALLGRIND=0
fi
CALLGRIND_MAX=${CALLGRIND_MAX:-$SMALLEST}
TIME=""
if [[ -x /usr/bin/time ]]; then TIME=/usr/bin/time; fi

if [[ -n ${BENCH_TMPDIR:-} ]]; then
	mkdir -p "$BENCH_TMPDIR"
	TMP=$(mktemp -d "$BENCH_TMPDIR/zdm-scale.XXXXXX")
else
	TMP=$(mktemp -d)
fi
HTTPD_PID=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	if [[ -n $HTTPD_PID ]]; then kill "$HTTPD_PID" 2>/dev/null || true; wait "$HTTPD_PID" 2>/dev/null || true; fi
	if declare -F lbs_stop_all >/dev/null; then lbs_stop_all; fi
	if [[ ${KEEP:-0} == 1 ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

now_ns() { date +%s%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1e6 }'; }
median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
		if (NR % 2) printf "%.1f", v[(NR + 1) / 2]; else printf "%.1f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
calc() { awk "BEGIN { printf \"%.2f\", $* }"; }
# met A OP B -> met / MISSED (n/a when A is empty)
met() {
	[[ -n $1 && $1 != - ]] || { echo "n/a"; return; }
	awk -v a="$1" -v b="$3" -v op="$2" 'BEGIN {
		r = (op == "<=") ? a <= b : (op == "<") ? a < b : (op == ">=") ? a >= b : a > b
		print (r ? "met" : "MISSED") }'
}

# ---------------------------------------------------------------- floor program
FLOOR=$TMP/floor
"$CC" -O2 -std=c11 -Wall -Wextra -o "$FLOOR" "$REPO/bench/floor.c" 2>"$TMP/floor.cc.out" ||
	{ cat "$TMP/floor.cc.out" >&2; die "could not build bench/floor.c with $CC"; }

# ---------------------------------------------------------------- generators
gen_exec() { # N NAME
	local n=$1 i
	echo "zdm: 1"
	echo "name: $2"
	echo "description: $n exec steps of true, for bench/scale.sh"
	echo "steps:"
	for ((i = 1; i <= n; i++)); do
		printf '  - id: s%06d\n    uses: exec\n    with: {command: ["true"]}\n' "$i"
	done
}
gen_wait() { # N NAME
	local n=$1 i
	echo "zdm: 1"
	echo "name: $2"
	echo "description: $n wait steps (read-only, no undo), for bench/scale.sh"
	echo "steps:"
	for ((i = 1; i <= n; i++)); do
		printf '  - id: s%06d\n    uses: wait\n    with: {duration: 0ms}\n' "$i"
	done
}

journal_of() { # STATE_DIR -> the one journal's path
	local j
	shopt -s nullglob
	j=("$1"/runs/*.jsonl)
	shopt -u nullglob
	((${#j[@]} == 1)) || die "expected one journal in $1/runs, found ${#j[@]}"
	printf '%s\n' "${j[0]}"
}

# crash RUNBOOK STATE N: run it, SIGKILLed after record 2N-1; check the journal
crash() {
	local rb=$1 state=$2 n=$3 rc=0 j nrec
	# under an inner bash whose stderr is the log: its "Killed" notice goes there
	# shellcheck disable=SC2016 # "$@" is for the inner bash
	ZDM_TEST_CRASH_AFTER_RECORD=$((2 * n - 1)) bash -c '"$@"; exit $?' _ \
		"$ZDM" run "$rb" --state-dir "$state" -q </dev/null >"$TMP/crash.out" 2>&1 || rc=$?
	((rc == 137)) || { tail -n 20 "$TMP/crash.out" >&2; die "crashed run of $rb exited $rc, not 137 (SIGKILL)"; }
	j=$(journal_of "$state")
	nrec=$(wc -l <"$j")
	((nrec == 2 * n - 1)) || die "crashed journal $j has $nrec records, expected $((2 * n - 1))"
}

# ---------------------------------------------------------------- measuring
# Results: WALL[key] (median ms), RSS[key] (MB), IR[key] (instructions).
declare -A WALL RSS IR

# measure KEY EXPECT_RC SETUP -- CMD...: REPS timed runs (each under /usr/bin/time for
# the peak RSS, the largest kept), SETUP (a function name or :) before each, outside the
# timing; then one run under callgrind when CALLGRIND=1 and SIZE <= CALLGRIND_MAX.
measure() {
	local key=$1 want=$2 setup=$3 r rc t0 t1 walls=() peak=0 kb
	shift 4
	for ((r = 1; r <= REPS; r++)); do
		$setup
		rc=0
		t0=$(now_ns)
		if [[ -n $TIME ]]; then
			$TIME -f %M -o "$TMP/rss" "$@" </dev/null >"$TMP/out" 2>&1 || rc=$?
		else
			"$@" </dev/null >"$TMP/out" 2>&1 || rc=$?
		fi
		t1=$(now_ns)
		if ((rc != want)); then
			tail -n 20 "$TMP/out" >&2
			die "$key: '$*' exited $rc, expected $want (output above)"
		fi
		walls+=("$(ms "$t0" "$t1")")
		if [[ -n $TIME ]]; then
			kb=$(tail -n1 "$TMP/rss")
			((kb > peak)) && peak=$kb
		fi
	done
	WALL[$key]=$(median "${walls[@]}")
	if [[ -n $TIME ]]; then RSS[$key]=$(calc "$peak / 1024"); else RSS[$key]="-"; fi
	IR[$key]="-"
	if [[ $CALLGRIND == 1 && ${SIZE:-0} -le $CALLGRIND_MAX ]]; then
		$setup
		rc=0
		valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.out" "$@" \
			</dev/null >"$TMP/out" 2>"$TMP/cg.err" || rc=$?
		((rc == want)) || { tail -n 20 "$TMP/cg.err" >&2; die "$key under callgrind exited $rc, expected $want"; }
		IR[$key]=$(awk '/^totals:/ { print $2; exit }' "$TMP/cg.out")
		[[ -n ${IR[$key]} ]] || IR[$key]="-"
	fi
}

# setup functions (use the globals of the size being measured), called by measure
# shellcheck disable=SC2317
fresh_run() { rm -rf "$TMP/run-state"; }
# shellcheck disable=SC2317
fresh_resume() { rm -rf "$TMP/resume-state" && cp -a "$CRASHED_EXEC" "$TMP/resume-state"; }
# shellcheck disable=SC2317
fresh_rollback() { rm -rf "$TMP/rollback-state" && cp -a "$CRASHED_WAIT" "$TMP/rollback-state"; }
# shellcheck disable=SC2317
fresh_floor() { rm -f "$TMP/floor.dat"; }

# run_ok STATE: the run in STATE ended with run.finished succeeded and N step.succeeded
run_ok() {
	local j
	j=$(journal_of "$1")
	grep -q '"event":"run.finished"' "$j" || die "$j: no run.finished record"
	(($(grep -c '"event":"step.succeeded"' "$j") == SIZE)) || die "$j: not $SIZE step.succeeded records"
}

CMDS=(validate plan run status log audit sha256 resume rollback floor)
declare -A LABEL=(
	[validate]="validate"
	[plan]="plan"
	[run]="run (exec true)"
	[status]="status (crashed)"
	[log]="log (crashed)"
	[audit]="audit verify"
	[sha256]="  sha256sum same bytes"
	[resume]="resume (1 step left)"
	[rollback]="rollback (no undos)"
	[floor]="  floor: 2 fdatasync+spawn/step"
)
declare -A JBYTES

for SIZE in "${SIZES[@]}"; do
	D=$TMP/n$SIZE
	mkdir -p "$D"
	gen_exec "$SIZE" "scale-exec-$SIZE" >"$D/exec.yml"
	gen_wait "$SIZE" "scale-wait-$SIZE" >"$D/wait.yml"
	echo "scale.sh: $SIZE steps: making the crashed journals..." >&2
	CRASHED_EXEC=$D/crashed-exec
	CRASHED_WAIT=$D/crashed-wait
	crash "$D/exec.yml" "$CRASHED_EXEC" "$SIZE"
	crash "$D/wait.yml" "$CRASHED_WAIT" "$SIZE"
	JOURNAL=$(journal_of "$CRASHED_EXEC")
	RUN_ID=$(basename "$JOURNAL" .jsonl)
	WAIT_RUN_ID=$(basename "$(journal_of "$CRASHED_WAIT")" .jsonl)
	JBYTES[$SIZE]=$(wc -c <"$JOURNAL")

	echo "scale.sh: $SIZE steps: measuring..." >&2
	measure "validate.$SIZE" 0 : -- "$ZDM" validate "$D/exec.yml"
	measure "plan.$SIZE" 0 : -- "$ZDM" plan "$D/exec.yml"
	measure "run.$SIZE" 0 fresh_run -- "$ZDM" run "$D/exec.yml" --state-dir "$TMP/run-state" -q
	run_ok "$TMP/run-state"
	measure "status.$SIZE" 0 : -- "$ZDM" status "$RUN_ID" --state-dir "$CRASHED_EXEC"
	measure "log.$SIZE" 0 : -- "$ZDM" log "$RUN_ID" --state-dir "$CRASHED_EXEC"
	measure "audit.$SIZE" 0 : -- "$ZDM" audit verify "$JOURNAL"
	measure "sha256.$SIZE" 0 : -- sha256sum "$JOURNAL"
	measure "resume.$SIZE" 0 fresh_resume -- "$ZDM" resume "$RUN_ID" --state-dir "$TMP/resume-state" -q
	run_ok "$TMP/resume-state"
	measure "rollback.$SIZE" 0 fresh_rollback -- \
		"$ZDM" rollback "$WAIT_RUN_ID" --state-dir "$TMP/rollback-state" --yes -q
	measure "floor.$SIZE" 0 fresh_floor -- "$FLOOR" "$TMP/floor.dat" "$SIZE"
	rm -rf "$D" "$TMP/run-state" "$TMP/resume-state" "$TMP/rollback-state" "$TMP/floor.dat"
done

# ---------------------------------------------------------------- small things
SIZE=$GATE_MEASUREMENTS # what CALLGRIND_MAX is held against below
small_ms() { # REPS x CMD, no /usr/bin/time: median ms
	local r t0 t1 walls=()
	for ((r = 1; r <= REPS * 3; r++)); do
		t0=$(now_ns)
		"$@" </dev/null >/dev/null 2>&1 || die "'$*' failed"
		t1=$(now_ns)
		walls+=("$(ms "$t0" "$t1")")
	done
	median "${walls[@]}"
}
gen_exec 10 scale-exec-10 >"$TMP/ten.yml"
VERSION_MS=$(small_ms "$ZDM" version)
TEN_MS=$(small_ms "$ZDM" validate "$TMP/ten.yml")
TRUE_MS=$(small_ms true)
TIME_TRUE_MS="-"
[[ -z $TIME ]] || TIME_TRUE_MS=$(small_ms "$TIME" -f %M -o "$TMP/rss" true)

# ---------------------------------------------------------------- gate journal
GATE_DONE=0
if ((GATE_MEASUREMENTS > 0)); then
	if command -v python3 >/dev/null; then
		echo "scale.sh: health_gate of $GATE_MEASUREMENTS measurements..." >&2
		H=$TMP/httpd
		mkdir -p "$H"
		echo '{"/health": {"status": 200, "body": "ok"}}' >"$H/control.json"
		python3 "$REPO/tests/servers/httpd.py" "$H" --lifetime 600 >"$H/log" 2>&1 &
		HTTPD_PID=$!
		for ((i = 0; i < 100; i++)); do [[ -s $H/httpd.port ]] && break; sleep 0.05; done
		[[ -s $H/httpd.port ]] || die "tests/servers/httpd.py did not start (log: $H/log)"
		PORT=$(cat "$H/httpd.port")
		cat >"$TMP/gate.yml" <<EOF
zdm: 1
name: scale-gate
steps:
  - id: gate
    uses: health_gate
    timeout: 30m
    with:
      url: http://127.0.0.1:$PORT/health
      interval: 1ms
      healthy_threshold: $GATE_MEASUREMENTS
EOF
		t0=$(now_ns)
		timed=()
		[[ -z $TIME ]] || timed=("$TIME" -f %M -o "$TMP/gate.rss")
		"${timed[@]}" "$ZDM" run "$TMP/gate.yml" --state-dir "$TMP/gate-state" -q \
			</dev/null >"$TMP/gate.out" 2>&1 || { tail -n 20 "$TMP/gate.out" >&2; die "the health_gate run failed"; }
		t1=$(now_ns)
		GATE_RUN_MS=$(ms "$t0" "$t1")
		# the same gate with a tenth of the measurements: what a measurement adds to the
		# run's peak RSS is the difference over the 0.9 x N measurements between them
		GATE_SMALL=$((GATE_MEASUREMENTS / 10))
		if [[ -n $TIME ]] && ((GATE_SMALL >= 1)); then
			sed "s/healthy_threshold: $GATE_MEASUREMENTS\$/healthy_threshold: $GATE_SMALL/" "$TMP/gate.yml" >"$TMP/gate-small.yml"
			$TIME -f %M -o "$TMP/gate-small.rss" "$ZDM" run "$TMP/gate-small.yml" --state-dir "$TMP/gate-small-state" -q \
				</dev/null >"$TMP/gate-small.out" 2>&1 ||
				{ tail -n 20 "$TMP/gate-small.out" >&2; die "the health_gate run of $GATE_SMALL measurements failed"; }
			GATE_RSS_KB=$(tail -n1 "$TMP/gate.rss")
			GATE_SMALL_RSS_KB=$(tail -n1 "$TMP/gate-small.rss")
			GATE_KB_PER=$(awk -v a="$GATE_RSS_KB" -v b="$GATE_SMALL_RSS_KB" -v n="$((GATE_MEASUREMENTS - GATE_SMALL))" \
				'BEGIN { printf "%.3f", (a - b) / n }')
			rm -rf "$TMP/gate-small-state"
		fi
		kill "$HTTPD_PID" 2>/dev/null || true
		wait "$HTTPD_PID" 2>/dev/null || true
		HTTPD_PID=""
		GJ=$(journal_of "$TMP/gate-state")
		GRUN=$(basename "$GJ" .jsonl)
		GMEAS=$(grep -c '"event":"gate.measurement"' "$GJ" || true)
		((GMEAS == GATE_MEASUREMENTS)) || die "gate journal has $GMEAS measurements, not $GATE_MEASUREMENTS"
		GBYTES=$(wc -c <"$GJ")
		measure gstatus 0 : -- "$ZDM" status "$GRUN" --state-dir "$TMP/gate-state"
		measure glog 0 : -- "$ZDM" log "$GRUN" --state-dir "$TMP/gate-state"
		measure gaudit 0 : -- "$ZDM" audit verify "$GJ"
		measure gsha 0 : -- sha256sum "$GJ"
		GATE_DONE=1
	else
		echo "scale.sh: no python3: the health_gate journal is skipped" >&2
	fi
fi

# ---------------------------------------------------------------- nginx switch
# The switch of an nginx upstream from blue to green (bench/lb-servers.sh's backends
# and front, as in bench/zero-downtime.sh, without load): from its start to the first
# answer from green on a new connection through the front, polled every ~1 ms by a
# python3 loop. raw: rewrite the upstream file + `nginx -s reload`, timed from the
# moment before the write; zdm: `zdm run` of one lb.nginx step, timed from the ts of
# its step.started. Median of REPS each; back to blue (raw) between repetitions.
NGINX_RAW_MS="" NGINX_ZDM_MS="" NGINX_NOTE=""
if [[ ${NGINX_SWITCH:-1} != 1 ]]; then
	NGINX_NOTE="not measured (NGINX_SWITCH=0)"
elif ! command -v nginx >/dev/null; then
	NGINX_NOTE="not measured: nginx is not installed"
elif ! command -v python3 >/dev/null || ! command -v curl >/dev/null; then
	NGINX_NOTE="not measured: needs python3 and curl"
else
	echo "scale.sh: nginx switch, raw and zdm, $REPS each..." >&2
	# shellcheck source=bench/lb-servers.sh
	source "$REPO/bench/lb-servers.sh"
	NG=$TMP/nginx
	lbs_backends "$NG/backends" || die "the backends' nginx did not start"
	lbs_nginx_front "$NG/front" "$BLUE_ADDR" || die "the front nginx did not start"
	NGX=(nginx -p "$NG/front/" -c "$NG/front/nginx.conf")
	# first_green READY_FILE: epoch ms of the first answer from green through the
	# front (a new connection each time; 10 s at most); nothing if green never answered
	first_green() {
		python3 - "$FRONT_PORT" "$1" <<'PY'
import http.client, sys, time
port, ready = int(sys.argv[1]), sys.argv[2]
open(ready, "w").close()
end = time.time() + 10
while time.time() < end:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        c.request("GET", "/")
        r = c.getresponse()
        r.read()
        c.close()
        if r.getheader("X-Backend") == "green":
            print(int(time.time() * 1000))
            break
    except OSError:
        pass
    time.sleep(0.001)
PY
	}
	poll_start() { # the poller in the background: POLL_PID, its answer in $NG/poll
		local i
		rm -f "$NG/poll" "$NG/poll.ready"
		first_green "$NG/poll.ready" >"$NG/poll" &
		POLL_PID=$!
		for ((i = 0; i < 200; i++)); do [[ -e $NG/poll.ready ]] && break; sleep 0.01; done
		sleep 0.05
	}
	poll_first() { wait "$POLL_PID" || true; first=$(cat "$NG/poll"); } # -> first
	back_to_blue() { # raw switch back; returns once blue answers and one worker is left
		local i master
		lbs_upstream_file "$NG/front/upstream.conf" "$BLUE_ADDR"
		"${NGX[@]}" -s reload 2>>"$NG/reload.log"
		master=$(cat "$NG/front/nginx.pid")
		for ((i = 0; i < 400; i++)); do
			if curl -s -D - -o /dev/null "http://127.0.0.1:$FRONT_PORT/" | grep -qi '^x-backend: blue' &&
				(($(pgrep -c -P "$master" || true) == 1)); then return 0; fi
			sleep 0.025
		done
		die "nginx did not go back to blue"
	}
	cat >"$TMP/switch.yml" <<EOF
zdm: 1
name: scale-nginx-switch
steps:
  - id: switch
    uses: lb.nginx
    timeout: 30s
    with:
      conf: $NG/front/nginx.conf
      prefix: $NG/front/
      pid_file: $NG/front/nginx.pid
      file: $NG/front/upstream.conf
      upstream: app
      servers:
        - address: $GREEN_ADDR
EOF
	raw=() zdm=()
	for ((r = 1; r <= REPS; r++)); do
		poll_start
		t0=$(($(now_ns) / 1000000))
		lbs_upstream_file "$NG/front/upstream.conf" "$GREEN_ADDR"
		"${NGX[@]}" -s reload 2>>"$NG/reload.log"
		poll_first
		[[ -n $first ]] || die "nginx: green never answered after the raw switch"
		raw+=($((first - t0)))
		back_to_blue

		rm -rf "$NG/state"
		poll_start
		"$ZDM" run "$TMP/switch.yml" --plugin-path "$REPO/plugins" --state-dir "$NG/state" -q </dev/null >"$NG/zdm.out" 2>&1 ||
			{ tail -n 20 "$NG/zdm.out" >&2; die "the lb.nginx switch run failed"; }
		poll_first
		[[ -n $first ]] || die "nginx: green never answered after zdm's switch"
		ts=$(grep -m1 '"event":"step.started"' "$(journal_of "$NG/state")" | sed 's/.*"ts":"\([^"]*\)".*/\1/')
		t0=$(date -d "$ts" +%s%3N)
		zdm+=($((first - t0)))
		back_to_blue
	done
	lbs_stop_all
	NGINX_RAW_MS=$(median "${raw[@]}")
	NGINX_ZDM_MS=$(median "${zdm[@]}")
fi

# ---------------------------------------------------------------- tables
table() {
	if column -t -s $'\t' -o '  ' </dev/null >/dev/null 2>&1; then
		column -t -s $'\t' -o '  '
	else
		tr '\t' ' '
	fi
}

echo
echo "zdm scale benchmark: $("$ZDM" version 2>/dev/null | head -n1 || echo "$ZDM") ($ZDM)"
echo "host: $(uname -srm), $(nproc 2>/dev/null || echo '?') cpu(s), load $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?'); $(date -u +%Y-%m-%dT%H:%MZ)"
echo "wall: median of $REPS, ms (includes /usr/bin/time: ${TIME_TRUE_MS} ms for true, bare true ${TRUE_MS} ms);" \
	"RSS: peak MB; Ir: callgrind instructions$( ((CALLGRIND)) && echo " (sizes <= $CALLGRIND_MAX)" || echo ": not counted (CALLGRIND=0)")"
echo
{
	hdr="command"
	for n in "${SIZES[@]}"; do hdr+=$'\t'"${n} ms"$'\t'"MB"$'\t'"Ir"; done
	echo "$hdr"
	for c in "${CMDS[@]}"; do
		line=${LABEL[$c]}
		for n in "${SIZES[@]}"; do
			line+=$'\t'"${WALL[$c.$n]}"$'\t'"${RSS[$c.$n]}"$'\t'"${IR[$c.$n]}"
		done
		echo "$line"
	done
	line="journal bytes"
	for n in "${SIZES[@]}"; do line+=$'\t'"${JBYTES[$n]}"$'\t'$'\t'; done
	echo "$line"
} | table

# instructions per step: run vs floor, at the sizes counted
IPS=""
((CALLGRIND)) && echo && {
	echo $'size\tzdm run Ir/step\tfloor Ir/step\tratio'
	for n in "${SIZES[@]}"; do
		if [[ ${IR[run.$n]} != - && ${IR[floor.$n]} != - ]]; then
			a=$(awk -v i="${IR[run.$n]}" -v n="$n" 'BEGIN { printf "%.0f", i / n }')
			b=$(awk -v i="${IR[floor.$n]}" -v n="$n" 'BEGIN { printf "%.0f", i / n }')
			echo "$n"$'\t'"$a"$'\t'"$b"$'\t'"$(calc "$a / $b")x"
		fi
	done
} | table
if [[ ${IR[run.$SMALLEST]} != - ]]; then
	IPS=$(awk -v i="${IR[run.$SMALLEST]}" -v n="$SMALLEST" 'BEGIN { printf "%.0f", i / n }')
fi

if ((GATE_DONE)); then
	echo
	echo "health_gate journal: $GATE_MEASUREMENTS measurements (interval 1ms), $GBYTES bytes; the run took $GATE_RUN_MS ms"
	{
		echo $'command\tms\tMB\tIr'
		for c in gstatus glog gaudit gsha; do
			case $c in gstatus) l="status" ;; glog) l="log" ;; gaudit) l="audit verify" ;; gsha) l="  sha256sum same bytes" ;; esac
			echo "$l"$'\t'"${WALL[$c]}"$'\t'"${RSS[$c]}"$'\t'"${IR[$c]}"
		done
	} | table
fi

# ---------------------------------------------------------------- goals
LARGEST=$(printf '%s\n' "${SIZES[@]}" | sort -n | tail -n1)
G=10000
have() { [[ -n ${WALL[$1]:-} ]]; }
v() { if have "$1"; then echo "${WALL[$1]}"; else echo "-"; fi; }
# the size the time-limits are held at: 10000 when measured, else the largest
if ! have "validate.$G"; then G=$LARGEST; fi
peak_rss=0 peak_what=""
for k in "${!RSS[@]}"; do
	case $k in sha256.* | floor.* | gsha) continue ;; esac
	[[ ${RSS[$k]} != - ]] || continue
	if awk -v a="${RSS[$k]}" -v b="$peak_rss" 'BEGIN { exit !(a > b) }'; then peak_rss=${RSS[$k]} peak_what=$k; fi
done
[[ -n $peak_what ]] || peak_rss="-"
ratio_val="-"
if have "validate.1000" && have "validate.10000"; then
	ratio_val=$(calc "${WALL[validate.10000]} / ${WALL[validate.1000]}")
fi
audit_ratio=$(calc "${WALL[audit.$G]} / ${WALL[sha256.$G]}")

echo
echo "goals (time limits at $G steps)"
{
	echo $'goal\tmeasured\t'
	echo "validate ${G} <= 150 ms"$'\t'"$(v "validate.$G") ms"$'\t'"$(met "$(v "validate.$G")" '<=' 150)"
	echo "validate t(10k)/t(1k) <= 12"$'\t'"$ratio_val"$'\t'"$(met "$ratio_val" '<=' 12)"
	echo "resume (1 step left) <= 300 ms"$'\t'"$(v "resume.$G") ms"$'\t'"$(met "$(v "resume.$G")" '<=' 300)"
	echo "status <= 150 ms"$'\t'"$(v "status.$G") ms"$'\t'"$(met "$(v "status.$G")" '<=' 150)"
	echo "log <= 150 ms"$'\t'"$(v "log.$G") ms"$'\t'"$(met "$(v "log.$G")" '<=' 150)"
	echo "rollback, no undos <= 300 ms"$'\t'"$(v "rollback.$G") ms"$'\t'"$(met "$(v "rollback.$G")" '<=' 300)"
	echo "peak RSS of any zdm command <= 30 MB"$'\t'"$peak_rss MB (${peak_what:-none})"$'\t'"$(met "$peak_rss" '<=' 30)"
	echo "audit verify <= 3x sha256sum"$'\t'"${audit_ratio}x"$'\t'"$(met "$audit_ratio" '<=' 3)"
	echo "Ir per durable exec step <= 150K"$'\t'"${IPS:--} (at $SMALLEST)"$'\t'"$(met "${IPS:--}" '<=' 150000)"
	echo "zdm version <= 5 ms"$'\t'"$VERSION_MS ms"$'\t'"$(met "$VERSION_MS" '<=' 5)"
	echo "validate of 10 steps <= 8 ms"$'\t'"$TEN_MS ms"$'\t'"$(met "$TEN_MS" '<=' 8)"
	if [[ -n ${GATE_KB_PER:-} ]]; then
		echo "memory per gate measurement <= 0.2 KB"$'\t'"$GATE_KB_PER KB (peak RSS: $GATE_MEASUREMENTS vs $GATE_SMALL)"$'\t'"$(met "$GATE_KB_PER" '<=' 0.2)"
	else
		echo "memory per gate measurement <= 0.2 KB"$'\t'"not measured (GATE_MEASUREMENTS < 10, no python3 or no /usr/bin/time)"$'\t'"n/a"
	fi
	if [[ -n $NGINX_ZDM_MS ]]; then
		lim=$(calc "$NGINX_RAW_MS + 5")
		echo "nginx switch <= raw nginx -s reload + 5 ms"$'\t'"zdm $NGINX_ZDM_MS ms, raw $NGINX_RAW_MS ms"$'\t'"$(met "$NGINX_ZDM_MS" '<=' "$lim")"
	else
		echo "nginx switch <= raw nginx -s reload + 5 ms"$'\t'"$NGINX_NOTE"$'\t'"n/a"
	fi
} | table
if [[ $G != 10000 ]]; then
	echo "(10000 not in SCALES: the time limits are held at $G steps; the t(10k)/t(1k) ratio is n/a without both)"
fi
exit 0
