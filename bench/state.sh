#!/usr/bin/env bash
# bench/state.sh — what keeping runs in PostgreSQL costs beside a state dir.
#
#   make && bash bench/state.sh          (from the repo root; 2-4 min)
#
# One PostgreSQL 15 cluster made for the bench (tests/servers/postgres.bash:
# initdb as the postgres user in a temp dir, 127.0.0.1, a free port) with the
# durable settings a real state has: fsync = on, synchronous_commit = on,
# full_page_writes = on.  The state dirs and the cluster share one filesystem.
#
# (a) per-step cost: the same STEPS-step runbook of exec `true` steps, run with
#     a state dir and with the PostgreSQL state, beside a bash loop running the
#     same STEPS commands.  Each step is two durable records (step.started,
#     step.succeeded): fdatasync on a file, a commit with synchronous_commit on
#     (one INSERT of the record and its run's summary row) on PostgreSQL.
#     Goal: PostgreSQL minus state dir <= 1 ms per step.
# (b) lock hand-over: a zdm holds runbook NAME's lock (a step sleeping), a second
#     `zdm run --lock-timeout 30s` waits for it; SIGKILL the holder and measure
#     from the kill to the waiter's run.started record (the lock taken, the run
#     created, its first record durable).  Baselines, the same hand-over done by
#     a blocking waiter: flock(1) on a file, psql's pg_advisory_lock.
# (c) a state of RUNS runs (default 10,000; real journals of two runs, one that
#     succeeded and one rolled back, copied under new run ids and start times and
#     rechained, so every chain verifies; 10 runbook names): `zdm runs` (all
#     RUNS lines), `zdm runs --output json`, `zdm runs --limit 20`, `zdm status
#     RUN_ID`, `zdm status RUNBOOK`, beside reading every journal's first line
#     with head (a state dir) and the same summary query through psql
#     (PostgreSQL), and `zdm version` (what starting zdm costs here).  Loading
#     PostgreSQL is COPY into the journal table, then `zdm state init` (it makes
#     the missing summary rows).  Goal: each < 100 ms.
#
# Prints a table; exits 0 whatever the timings, non-zero only when zdm (or the
# server) failed.
#
# Environment:
#   ZDM_BIN   zdm binary (default: build/zdm)
#   STEPS     steps of the runbook in (a) (default 1000)
#   RUNS      runs in the state of (c) (default 10000)
#   REPS      repetitions; the median is shown (default 3 for (a) and (b), 3x that for (c))
#   KEEP=1    keep the temp dirs

set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ZDM=${ZDM_BIN:-$REPO/build/zdm}
STEPS=${STEPS:-1000}
RUNS=${RUNS:-10000}
REPS=${REPS:-3}
die() { printf 'state.sh: %s\n' "$*" >&2; exit 1; }
[ -x "$ZDM" ] || die "no zdm binary at $ZDM (make first)"
case $ZDM in /*) ;; *) ZDM=$PWD/$ZDM ;; esac

# shellcheck source=../tests/servers/postgres.bash
. "$REPO/tests/servers/postgres.bash"
PG_ROOT="$(mktemp -d /tmp/zdm-statebench-pg.XXXXXX)"
export PG_ROOT
W="$(mktemp -d /tmp/zdm-statebench.XXXXXX)"
BG=()
cleanup() {
  local rc=$? p
  for p in "${BG[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ "${KEEP:-}" = 1 ]; then
    echo "kept: $PG_ROOT $W" >&2
  else
    pg_stop_all
    rm -rf "$W"
  fi
  exit "$rc"
}
trap cleanup EXIT

pg_start bench fsync=on synchronous_commit=on full_page_writes=on >/dev/null ||
  die "the cluster did not start"
export PGPASSWORD="$PG_PASSWORD"
pg_createdb bench zdm_state
URL="$(pg_uri bench zdm_state)"
"$ZDM" state init "$URL" >/dev/null || die "zdm state init failed"

now_ns() { date +%s%N; }
now_ms() { date +%s%3N; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
calc() { awk "BEGIN { printf \"%.3f\\n\", $* }"; }
# the wall ms of one run of CMD (output discarded); dies when it fails
time_ms() {
  local t0 t1
  t0=$(now_ns)
  "$@" >/dev/null 2>"$W/last.err" || die "failed: $* ($(tail -3 "$W/last.err"))"
  t1=$(now_ns)
  calc "($t1 - $t0) / 1e6"
}
# the median of N runs of CMD
med() {
  local n=$1 i
  shift
  for ((i = 0; i < n; i++)); do time_ms "$@"; done | median
}
# ms since the epoch of a journal ts "2026-11-21T10:00:01.123Z"
ts_ms() { python3 -c 'import sys, datetime; print(int(datetime.datetime.fromisoformat(sys.argv[1].replace("Z", "+00:00")).timestamp() * 1000))' "$1"; }

# ------------------------------------------------------------ (a) per-step cost
RB=$W/steps.yml
{
  echo "zdm: 1"
  echo "name: bench-steps"
  echo "steps:"
  for ((i = 1; i <= STEPS; i++)); do
    printf '  - id: s%04d\n    uses: exec\n    with: {command: ["true"]}\n' "$i"
  done
} >"$RB"
TRUE_BIN=$(type -P true)	# the program, as zdm's exec step finds it: a new process each time
a_file=() a_pg=() a_bash=()
for ((r = 1; r <= REPS; r++)); do
  a_file+=("$(time_ms "$ZDM" run "$RB" --state-dir "$W/steps-state.$r")")
  a_pg+=("$(time_ms "$ZDM" run "$RB" --state "$URL")")
  a_bash+=("$(time_ms bash -c 'for ((i = 0; i < $1; i++)); do "$2"; done' _ "$STEPS" "$TRUE_BIN")")
done
f_med=$(printf '%s\n' "${a_file[@]}" | median)
p_med=$(printf '%s\n' "${a_pg[@]}" | median)
b_med=$(printf '%s\n' "${a_bash[@]}" | median)
f_step=$(calc "($f_med - $b_med) / $STEPS")
p_step=$(calc "($p_med - $b_med) / $STEPS")
pf_step=$(calc "($p_med - $f_med) / $STEPS")

# ------------------------------------------------------------ (b) lock hand-over
cat >"$W/hold.yml" <<'EOF'
zdm: 1
name: bench-lock
steps:
  - id: hold
    uses: exec
    with: {command: [sleep, "60"]}
EOF
cat >"$W/next.yml" <<'EOF'
zdm: 1
name: bench-lock
steps:
  - id: next
    uses: exec
    with: {command: ["true"]}
EOF

# handover STATE_ARGS...: ms from SIGKILL of the holder to the waiter's run.started
handover() {
  local holder waiter i t_kill first ts step
  "$ZDM" run "$W/hold.yml" "$@" >/dev/null 2>&1 &
  holder=$!
  BG+=("$holder")
  for i in $(seq 200); do
    "$ZDM" lock status bench-lock "$@" 2>/dev/null | grep -q ': held by' && break
    sleep 0.05
  done
  "$ZDM" run "$W/next.yml" "$@" --lock-timeout 30s --output json >"$W/waiter.out" 2>"$W/waiter.err" &
  waiter=$!
  BG+=("$waiter")
  for i in $(seq 200); do
    grep -q 'waiting up to' "$W/waiter.err" && break
    sleep 0.05
  done
  grep -q 'waiting up to' "$W/waiter.err" || die "the waiter did not wait: $(cat "$W/waiter.err")"
  sleep 0.3	# let its backoff reach its longest pause
  step=$(pgrep -P "$holder" || true)	# the holder's step: it would go on alone
  t_kill=$(now_ms)
  kill -9 "$holder"
  wait "$holder" 2>/dev/null || true
  wait "$waiter" || die "the waiter failed: $(cat "$W/waiter.err")"
  [ -z "$step" ] || kill -9 $step 2>/dev/null || true
  first=$(grep -m1 '"event":"run.started"' "$W/waiter.out") || die "no run.started from the waiter"
  ts=$(printf '%s' "$first" | python3 -c 'import json, sys; print(json.load(sys.stdin)["ts"])')
  echo $(($(ts_ms "$ts") - t_kill))
}

# the same with flock(1): a holder (-o: its command does not keep the lock),
# a blocking waiter that prints when it has the lock
handover_flock() {
  local holder waiter step t_kill got
  flock -o "$W/base.lock" sleep 60 &
  holder=$!
  BG+=("$holder")
  sleep 0.2
  step=$(pgrep -P "$holder" || true)
  flock -w 30 "$W/base.lock" date +%s%3N >"$W/flock.out" &
  waiter=$!
  sleep 0.3
  t_kill=$(now_ms)
  kill -9 "$holder"
  wait "$waiter"
  [ -z "$step" ] || kill -9 $step 2>/dev/null || true
  wait "$holder" 2>/dev/null || true
  got=$(cat "$W/flock.out")
  echo $((got - t_kill))
}

# and with psql: an idle session holding pg_advisory_lock (its input a fifo
# held open), a psql blocked on the same lock
handover_psql() {
  local holder waiter t_kill got
  rm -f "$W/psql.fifo"
  mkfifo "$W/psql.fifo"
  "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$(pg_port bench)" -U "$PG_USER" -d zdm_state \
    <"$W/psql.fifo" >/dev/null &
  holder=$!
  BG+=("$holder")
  exec 7>"$W/psql.fifo"
  echo "SELECT pg_advisory_lock(4711, 1);" >&7
  sleep 0.3
  "$PG_BIN/psql" -X -At -h 127.0.0.1 -p "$(pg_port bench)" -U "$PG_USER" -d zdm_state \
    -c "SELECT pg_advisory_lock(4711, 1)" -c "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint" \
    >"$W/psql.out" &
  waiter=$!
  sleep 0.3
  t_kill=$(now_ms)
  kill -9 "$holder"
  wait "$waiter"
  exec 7>&-
  wait "$holder" 2>/dev/null || true
  got=$(tail -1 "$W/psql.out")
  echo $((got - t_kill))
}

b_file=() b_pg=() b_flock=() b_psql=()
for ((r = 1; r <= REPS; r++)); do
  b_file+=("$(handover --state-dir "$W/lock-state")")
  b_pg+=("$(handover --state "$URL")")
  b_flock+=("$(handover_flock)")
  b_psql+=("$(handover_psql)")
done

# ------------------------------------------------------------ (c) a state of RUNS runs
cat >"$W/tmpl-ok.yml" <<'EOF'
zdm: 1
name: bench-0
steps:
  - {id: one, uses: exec, with: {command: ["true"]}, undo: {uses: exec, with: {command: ["true"]}}}
  - {id: two, uses: exec, with: {command: ["true"]}, undo: {uses: exec, with: {command: ["true"]}}}
  - {id: three, uses: exec, with: {command: ["true"]}}
EOF
sed 's/- {id: three, uses: exec, with: {command: \["true"\]}}/- {id: three, uses: exec, with: {command: ["false"]}}/' \
  "$W/tmpl-ok.yml" >"$W/tmpl-fail.yml"
"$ZDM" run "$W/tmpl-ok.yml" --state-dir "$W/tmpl" >/dev/null || die "the template run failed"
"$ZDM" run "$W/tmpl-fail.yml" --state-dir "$W/tmpl" >/dev/null 2>&1 && die "the failing template succeeded"
mkdir -p "$W/big/runs"
# new run ids and start times (one a minute back from now), runbook names
# bench-0..bench-9, every chain rehashed: the journal format of journal.c,
# where the record without "hash" is the line with its "hash" member cut out
python3 - "$W/tmpl/runs" "$W/big/runs" "$RUNS" "$W/big.copy" <<'PY'
import datetime, glob, hashlib, json, os, re, sys
src, dst, n, copy = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
tmpls = []
for path in sorted(glob.glob(src + "/*.jsonl")):
    lines = open(path, encoding="utf-8").read().splitlines()
    first = json.loads(lines[0])
    t0 = datetime.datetime.fromisoformat(first["ts"].replace("Z", "+00:00"))
    tmpls.append((first["run"], t0, lines))
ts_re = re.compile(r'"ts":"([^"]*)"')
hash_re = re.compile(r'"hash":"[0-9a-f]{64}",')
now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
with open(copy, "w", encoding="utf-8") as cp:
    for i in range(n):
        rid0, t0, lines = tmpls[i % len(tmpls)]
        start = now - datetime.timedelta(minutes=n - i)
        rid = start.strftime("%Y%m%dT%H%M%SZ") + "-%04x" % (i & 0xffff)
        assert len(rid) == len(rid0)
        prev = "0" * 64
        out = []
        for seq, line in enumerate(lines, 1):
            line = line.replace(rid0, rid).replace('"name":"bench-0"', '"name":"bench-%d"' % (i % 10))
            def shift(m):
                t = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
                return '"ts":"%sZ"' % (start + (t - t0)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
            line = ts_re.sub(shift, line, count=1)
            line = re.sub(r'"prev":"[0-9a-f]{64}"', '"prev":"%s"' % prev, line, count=1)
            canon = hash_re.sub("", line, count=1)
            h = hashlib.sha256((prev + canon).encode()).hexdigest()
            line = re.sub(r'"hash":"[0-9a-f]{64}"', '"hash":"%s"' % h, line, count=1)
            prev = h
            out.append(line)
            cp.write("%s\t%d\t%s\n" % (rid, seq, line.replace("\\", "\\\\")))
        with open(os.path.join(dst, rid + ".jsonl"), "w", encoding="utf-8") as f:
            f.write("\n".join(out) + "\n")
PY
pg_psql bench zdm_state -c "\\copy zdm.journal (run_id, seq, record) FROM '$W/big.copy'" ||
  die "COPY into zdm.journal failed"
t0=$(now_ns)
"$ZDM" state init "$URL" >"$W/init.out" || die "zdm state init failed"
t1=$(now_ns)
init_ms=$(calc "($t1 - $t0) / 1e6")
grep -q "summarised $RUNS runs" "$W/init.out" || die "state init did not summarise $RUNS runs: $(cat "$W/init.out")"
# the copies are valid chains
for one in "$W"/big/runs/*.jsonl; do break; done
one=$(basename "$one" .jsonl)
"$ZDM" audit verify "$W/big/runs/$one.jsonl" >/dev/null || die "a copied journal does not verify"
"$ZDM" audit verify --state "$URL" "$one" >/dev/null || die "a copied run does not verify on PostgreSQL"
n_file=$("$ZDM" runs --state-dir "$W/big" | tail -n +2 | wc -l)
n_pg=$("$ZDM" runs --state "$URL" --runbook bench-3 | tail -n +2 | wc -l)
[ "$n_file" -eq "$RUNS" ] || die "zdm runs lists $n_file runs of $RUNS"
[ "$n_pg" -eq $((RUNS / 10)) ] || die "zdm runs --runbook bench-3 lists $n_pg runs on PostgreSQL"
sed 's/^name: bench-0$/name: bench-3/' "$W/tmpl-ok.yml" >"$W/bench-3.yml"

R3=$((REPS * 3))
c_runs_f=$(med "$R3" "$ZDM" runs --state-dir "$W/big")
c_runs_p=$(med "$R3" "$ZDM" runs --state "$URL")
c_json_f=$(med "$R3" "$ZDM" runs --state-dir "$W/big" --output json)
c_json_p=$(med "$R3" "$ZDM" runs --state "$URL" --output json)
c_ver=$(med "$R3" "$ZDM" version)
c_lim_f=$(med "$R3" "$ZDM" runs --state-dir "$W/big" --limit 20)
c_lim_p=$(med "$R3" "$ZDM" runs --state "$URL" --limit 20)
c_id_f=$(med "$R3" "$ZDM" status "$one" --state-dir "$W/big")
c_id_p=$(med "$R3" "$ZDM" status "$one" --state "$URL")
c_rb_f=$(med "$R3" "$ZDM" status "$W/bench-3.yml" --state-dir "$W/big")
c_rb_p=$(med "$R3" "$ZDM" status "$W/bench-3.yml" --state "$URL")
c_head=$(med "$R3" find "$W/big/runs" -name '*.jsonl' -exec head -qn1 {} +)
c_psql=$(med "$R3" "$PG_BIN/psql" -X -At -h 127.0.0.1 -p "$(pg_port bench)" -U "$PG_USER" -d zdm_state \
  -c "SELECT * FROM zdm.runs ORDER BY started DESC, run_id DESC")

# ------------------------------------------------------------ the table
fs=$(df --output=fstype "$W" 2>/dev/null | tail -n1 || echo '?')
met() { awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b) ? "yes" : "NO" }'; }
echo "zdm state benchmark: $("$ZDM" version | head -n1); $(uname -srm), $(nproc) cpu(s), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "state dir and PostgreSQL data on $fs; PostgreSQL 15, fsync=on, synchronous_commit=on; medians of $REPS (c: $R3)"
echo
echo "| | state dir | PostgreSQL | baseline | goal | met? |"
echo "|---|---|---|---|---|---|"
echo "| (a) $STEPS exec steps, total | $f_med ms | $p_med ms | $b_med ms (bash loop) | | |"
echo "| (a) per step over the loop | $f_step ms | $p_step ms | | | |"
echo "| (a) PostgreSQL minus state dir, per step | | $pf_step ms | | <= 1 ms | $(met "$pf_step" 1) |"
echo "| (b) lock hand-over after SIGKILL (to the waiter's first record) | $(printf '%s\n' "${b_file[@]}" | median) ms | $(printf '%s\n' "${b_pg[@]}" | median) ms | flock(1) $(printf '%s\n' "${b_flock[@]}" | median) ms, psql $(printf '%s\n' "${b_psql[@]}" | median) ms | | |"
echo "| (c) zdm runs, $RUNS runs | $c_runs_f ms | $c_runs_p ms | head of every journal $c_head ms; psql $c_psql ms | < 100 ms | $(met "$c_runs_f" 100) / $(met "$c_runs_p" 100) |"
echo "| (c) zdm runs --output json, $RUNS runs | $c_json_f ms | $c_json_p ms | | < 100 ms | $(met "$c_json_f" 100) / $(met "$c_json_p" 100) |"
echo "| (c) zdm runs --limit 20 | $c_lim_f ms | $c_lim_p ms | | < 100 ms | $(met "$c_lim_f" 100) / $(met "$c_lim_p" 100) |"
echo "| (c) zdm status RUN_ID | $c_id_f ms | $c_id_p ms | | < 100 ms | $(met "$c_id_f" 100) / $(met "$c_id_p" 100) |"
echo "| (c) zdm status RUNBOOK (newest of $((RUNS / 10))) | $c_rb_f ms | $c_rb_p ms | | < 100 ms | $(met "$c_rb_f" 100) / $(met "$c_rb_p" 100) |"
echo "| (c) zdm version (starting zdm: the floor of every command) | $c_ver ms | | | | |"
echo "| (c) zdm state init summarising $RUNS runs (once) | | $init_ms ms | | | |"
echo
echo "raw (ms): a file [${a_file[*]}] pg [${a_pg[*]}] loop [${a_bash[*]}]"
echo "          b file [${b_file[*]}] pg [${b_pg[*]}] flock [${b_flock[*]}] psql [${b_psql[*]}]"
exit 0
