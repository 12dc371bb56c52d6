#!/usr/bin/env bats
# run/resume --wait-for-approval DURATION: at an approval step without a
# decision the run waits, holding its lock, for `zdm approve` from another
# process (another cwd and HOME) and goes on at once without a resume; a
# denial rolls back (exit 1); nobody within DURATION: the pause of today
# (exit 4), and approve + resume finish it.  Each on a state dir and on a
# PostgreSQL state (tests/servers/postgres.bash; LISTEN/NOTIFY there), with
# the hash chain verified after each.

bats_require_minimum_version 1.5.0
load helper
load servers/postgres

setup_file() {
  pg_start aw
}

teardown_file() {
  pg_stop_all
}

# touch a marker (undone by rm), ask ann or bob, then touch another
appr_runbook() { # TIMEOUT
  cat >"$T/rb.yml" <<EOF
zdm: 1
name: appr
steps:
  - id: prepare
    uses: exec
    with: {command: [touch, "$T/prepared"]}
    undo: {uses: exec, with: {command: [rm, -f, "$T/prepared"]}}
  - id: go-ahead
    uses: approval
    with:
      message: "check the canary dashboard"
      approvers: [ann, bob]
      decision_timeout: ${1:-1h}
  - id: finish
    uses: exec
    with: {command: [touch, "$T/finished"]}
EOF
}

# where runs are kept: a state dir, or this test's own PostgreSQL database
# with zdm's schema in it; sets ST (the option) and BACKEND
use_backend() { # file|pg
  BACKEND="$1"
  if [ "$1" = file ]; then
    ST=(--state-dir "$T/state")
  else
    DB="t${BATS_TEST_NUMBER}"
    pg_createdb aw "$DB"
    URL="$(pg_uri aw "$DB")"
    export PGPASSWORD="$PG_PASSWORD"
    run zdm state init "$URL"
    assert_success
    ST=(--state "$URL")
  fi
}

# the id of the newest run
run_id() {
  if [ "$BACKEND" = file ]; then
    basename "$(journal_of "$T/state")" .jsonl
  else
    pg_psql aw "$DB" -c "SELECT run_id FROM zdm.journal WHERE seq = 1 ORDER BY written DESC LIMIT 1"
  fi
}

# the records of run $1, one JSON per line, in order
records() {
  if [ "$BACKEND" = file ]; then
    cat "$T/state/runs/$1.jsonl"
  else
    pg_psql aw "$DB" -c "SELECT record FROM zdm.journal WHERE run_id = '$1' ORDER BY seq"
  fi
}

# "event step" of run $1's records, one per line
timeline_of() {
  records "$1" | jq -r '[.event, (.step // "")] | join(" ") | rtrimstr(" ")'
}

# the data of run $1's records of EVENT for step go-ahead, one JSON per line
recs() { # ID EVENT
  records "$1" | jq -c --arg e "$2" 'select(.event == $e and .step == "go-ahead") | .data'
}

# zdm from another directory and HOME (another machine, as far as zdm can tell)
elsewhere() {
  mkdir -p "$T/laptop" "$T/home2"
  (cd "$T/laptop" && HOME="$T/home2" timeout 60 "$ZDM_BIN" "$@")
}

# start `zdm run ... --wait-for-approval $1` in the background; once it has
# journaled approval.waiting: ID, RUN_PID (of its `timeout`) and ZPID (of
# zdm, as run.started records it) are set
start_waiting() { # DURATION [ARGS...]
  local d="$1" i
  shift
  unset CI
  timeout 60 "$ZDM_BIN" run "$T/rb.yml" "${ST[@]}" --wait-for-approval "$d" "$@" \
    >"$T/run.out" 2>"$T/run.err" </dev/null &
  RUN_PID=$!
  for i in $(seq 200); do
    ID="$(run_id 2>/dev/null || true)"
    if [ -n "$ID" ] && [ "$(recs "$ID" approval.waiting | wc -l)" = 1 ]; then
      ZPID="$(records "$ID" | jq -r 'select(.seq == 1) | .data.actor.pid')"
      return 0
    fi
    sleep 0.05
  done
  cat "$T/run.out" "$T/run.err" >&2
  echo "no approval.waiting in 10 s" >&2
  return 1
}

# the background run's exit status, in $status, and its output in $output
finish_waiting() {
  status=0
  wait "$RUN_PID" || status=$?
  output="$(cat "$T/run.out" "$T/run.err")"
}

verify() { # ID
  if [ "$BACKEND" = file ]; then
    run zdm audit verify "$T/state/runs/$1.jsonl"
  else
    run zdm audit verify --state "$URL" "$1"
  fi
  assert_success
  assert_output --partial ": ok, "
}

# ---- approved while it waits -----------------------------------------------------

approved_while_waiting() {
  use_backend "$1"
  appr_runbook
  start_waiting 60s
  assert_file_exist "$T/prepared"
  assert_not_exist "$T/finished"
  assert_equal "$(recs "$ID" approval.waiting | jq -r .wait_ms)" 60000
  # it says where it stands: waiting, and how to let it go on
  run elsewhere status "$ID" "${ST[@]}"
  assert_success
  assert_output --partial "a zdm process holds the lock: waiting (until 20"
  assert_output --partial "for approval of step 'go-ahead': zdm approve $ID go-ahead"
  # not an approver: refused, nothing written, and it keeps waiting
  ZDM_ACTOR=eve run elsewhere approve "$ID" go-ahead "${ST[@]}"
  assert_equal "$status" 2
  assert_output --partial "'eve' is not among the approvers of step 'go-ahead'"
  assert_equal "$(recs "$ID" approval.granted)" ""
  # an approver, from elsewhere
  ZDM_ACTOR=ann run elsewhere approve "$ID" go-ahead --reason "canary is clean" "${ST[@]}"
  assert_success
  assert_output --partial "approved: step 'go-ahead' of run $ID, by ann (journal record 7)."
  assert_output --partial "the zdm waiting for it (pid $ZPID) goes on now"
  finish_waiting
  assert_equal "$status" 0
  assert_output --partial "succeeded: run $ID"
  # the line said once, off a terminal
  assert_equal "$(grep -c "waiting for approval of go-ahead (zdm approve $ID go-ahead), 1m00s left" <<<"$output")" 1
  assert_file_exist "$T/finished"
  # one process, no pause, no resume; the decision is in the chain
  assert_equal "$(timeline_of "$ID" | tr '\n' ,)" "run.started,step.started prepare,step.succeeded prepare,step.started go-ahead,approval.requested go-ahead,approval.waiting go-ahead,approval.granted go-ahead,step.succeeded go-ahead,step.started finish,step.succeeded finish,run.finished,"
  assert_equal "$(recs "$ID" approval.granted)" '{"actor":"ann","reason":"canary is clean","via":"zdm approve"}'
  assert_equal "$(recs "$ID" step.succeeded | jq -r .outputs.approved_by)" ann
  verify "$ID"
  # a finished run waits for nobody
  ZDM_ACTOR=bob run elsewhere approve "$ID" go-ahead "${ST[@]}"
  assert_equal "$status" 2
  assert_output --partial "is not waiting for approval of step 'go-ahead'"
}

@test "wait, file state: approved from another process while it waits: it goes on, exit 0, no resume; the chain verifies" {
  approved_while_waiting file
}

@test "wait, PostgreSQL state: approved from another cwd and HOME while it waits (NOTIFY): exit 0, no resume; the chain verifies" {
  approved_while_waiting pg
}

# ---- denied while it waits ---------------------------------------------------------

denied_while_waiting() {
  use_backend "$1"
  appr_runbook
  start_waiting 60s
  ZDM_ACTOR=bob run elsewhere approve "$ID" go-ahead --deny --reason "error rate is up" "${ST[@]}"
  assert_success
  assert_output --partial "denied: step 'go-ahead' of run $ID, by bob"
  assert_output --partial "the zdm waiting for it (pid $ZPID) now fails the step"
  finish_waiting
  assert_equal "$status" 1
  assert_output --partial "rolled back: step 'go-ahead' failed (approval denied by bob: error rate is up)"
  assert_equal "$(recs "$ID" approval.denied)" '{"actor":"bob","reason":"error rate is up","via":"zdm approve"}'
  assert_equal "$(recs "$ID" step.failed | jq -r .error)" "approval denied by bob: error rate is up"
  assert_equal "$(records "$ID" | jq -r 'select(.event=="undo.succeeded") | .step')" prepare
  assert_equal "$(records "$ID" | jq -r 'select(.event=="run.finished") | .data.status, .data.exit_code' | tr '\n' ' ')" "rolled_back 1 "
  assert_equal "$(timeline_of "$ID" | grep -c -e run.paused -e run.resumed)" 0
  assert_not_exist "$T/prepared"
  assert_not_exist "$T/finished"
  verify "$ID"
}

@test "wait, file state: denied while it waits: the step fails and the run rolls back, exit 1" {
  denied_while_waiting file
}

@test "wait, PostgreSQL state: denied from elsewhere while it waits: rolled back, exit 1" {
  denied_while_waiting pg
}

# ---- nobody answers ------------------------------------------------------------------

nobody_answers() {
  use_backend "$1"
  appr_runbook
  start_waiting 2s
  finish_waiting
  assert_equal "$status" 4
  assert_output --partial "waiting for approval: zdm approve $ID go-ahead, then zdm resume $ID"
  assert_not_exist "$T/finished"
  # the pause of today, after the wait
  assert_equal "$(timeline_of "$ID" | tr '\n' ,)" "run.started,step.started prepare,step.succeeded prepare,step.started go-ahead,approval.requested go-ahead,approval.waiting go-ahead,approval.wait_ended go-ahead,step.failed go-ahead,run.paused go-ahead,"
  assert_equal "$(recs "$ID" approval.wait_ended | jq -r '.reason, (.waited_ms >= 2000)' | tr '\n' ' ')" "no decision true "
  assert_equal "$(recs "$ID" step.failed | jq -c '{needs_decision, will_retry}')" '{"needs_decision":true,"will_retry":false}'
  assert_equal "$(records "$ID" | jq -r 'select(.event == "run.paused") | .data.waiting_for')" approval
  verify "$ID"
  # then as always: approve (under the lock now), resume
  ZDM_ACTOR=ann run elsewhere approve "$ID" go-ahead "${ST[@]}"
  assert_success
  assert_output --partial "continue: zdm resume $ID"
  run zdm resume "$ID" "${ST[@]}" </dev/null
  assert_success
  assert_file_exist "$T/finished"
  verify "$ID"
}

@test "wait, file state: nobody answers within 2s: paused, exit 4; approve + resume finish it" {
  nobody_answers file
  # the same records as a run paused without the flag, but for the wait's own two
  appr_runbook
  unset CI
  run zdm run "$T/rb.yml" --state-dir "$T/s2" </dev/null
  assert_equal "$status" 4
  assert_equal "$(events "$(journal_of "$T/s2")" | tr '\n' ,)" \
    "$(timeline_of "$ID" | grep -v -e '^approval.wait' | head -n 7 | tr '\n' ,)"
}

@test "wait, PostgreSQL state: nobody answers within 2s: paused, exit 4; approve and resume from elsewhere finish it" {
  nobody_answers pg
}

# ---- both write at once: one chain -----------------------------------------------------

# zdm approve reads the waiting run and opens its writer, then (the test
# hook) stops before it appends; meanwhile the waiting zdm is stopped by a
# signal and writes its own next records.  The approve's append then fails
# (the journal's flock and size check; PostgreSQL's primary key), it reads
# the run again, finds nobody waiting and refuses: no fork, nothing lost.
both_append() {
  use_backend "$1"
  appr_runbook
  start_waiting 60s
  (rc=0
   ZDM_TEST_PAUSE_AFTER_READ="$T/go" ZDM_ACTOR=ann elsewhere approve "$ID" go-ahead "${ST[@]}" \
     >"$T/a.out" 2>&1 || rc=$?
   echo "$rc" >"$T/a.rc") &
  local i
  for i in $(seq 200); do
    [ -e "$T/go.waiting" ] && break
    sleep 0.05
  done
  assert_exist "$T/go.waiting"
  kill -TERM "$ZPID"
  finish_waiting
  assert_equal "$status" 4
  touch "$T/go"
  for i in $(seq 200); do
    [ -s "$T/a.rc" ] && break
    sleep 0.05
  done
  assert_equal "$(cat "$T/a.rc")" 2
  run cat "$T/a.out"
  assert_output "zdm approve: run $ID is not waiting for approval of step 'go-ahead' (state: interrupted); see zdm status"
  assert_equal "$(timeline_of "$ID" | tail -n 4 | tr '\n' ,)" \
    "approval.waiting go-ahead,approval.wait_ended go-ahead,step.interrupted go-ahead,run.interrupted,"
  assert_equal "$(records "$ID" | jq -s 'map(.seq) == [range(1; length + 1)]')" true
  verify "$ID"
}

@test "wait, file state: zdm approve and the waiting zdm append at once: the approve's append fails, the chain stays one" {
  both_append file
}

@test "wait, PostgreSQL state: zdm approve and the waiting zdm append at once: the primary key refuses the second, the chain stays one" {
  both_append pg
}

@test "wait: resume --wait-for-approval waits too, and a run.resumed run goes on once approved" {
  use_backend file
  appr_runbook
  unset CI
  run zdm run "$T/rb.yml" "${ST[@]}" </dev/null
  assert_equal "$status" 4
  ID="$(run_id)"
  timeout 60 "$ZDM_BIN" resume "$ID" "${ST[@]}" --wait-for-approval 60s >"$T/run.out" 2>"$T/run.err" </dev/null &
  RUN_PID=$!
  for i in $(seq 200); do
    [ "$(recs "$ID" approval.waiting | wc -l)" = 1 ] && break
    sleep 0.05
  done
  assert_equal "$(recs "$ID" approval.waiting | wc -l)" 1
  ZDM_ACTOR=bob run elsewhere approve "$ID" go-ahead "${ST[@]}"
  assert_success
  assert_output --partial "goes on now"
  finish_waiting
  assert_equal "$status" 0
  assert_file_exist "$T/finished"
  # the request is the first start's; the wait is the resume's
  assert_equal "$(recs "$ID" approval.requested | wc -l)" 1
  assert_equal "$(timeline_of "$ID" | sed -n '/run.resumed/,$p' | head -n 4 | tr '\n' ,)" \
    "run.resumed,step.started go-ahead,approval.waiting go-ahead,approval.granted go-ahead,"
  verify "$ID"
}

@test "wait: the approval's own timeout comes first: the step fails as timed out and rolls back, exit 1" {
  use_backend file
  appr_runbook 1s
  start_waiting 60s
  assert_equal "$(recs "$ID" approval.waiting | jq -r .wait_ms)" 1000
  finish_waiting
  assert_equal "$status" 1
  assert_equal "$(recs "$ID" step.failed | jq -r .timed_out)" true
  recs "$ID" step.failed | jq -r .error | grep -q "^approval timed out: no decision within 1.0s of the request at 20"
  assert_not_exist "$T/prepared"
  verify "$ID"
}

@test "wait: --output json streams approval.waiting and the decision another process wrote, and conforms to docs/ci.md" {
  use_backend file
  appr_runbook
  start_waiting 60s --output json
  ZDM_ACTOR=ann run elsewhere approve "$ID" go-ahead "${ST[@]}"
  assert_success
  finish_waiting
  assert_equal "$status" 0
  run jq -c -f "$REPO/tests/data/ci/events.jq" "$T/run.out"
  assert_success
  assert_equal "$(sort -u <<<"$output")" null
  assert_equal "$(jq -r 'select(.step == "go-ahead") | .event' "$T/run.out" | tr '\n' ,)" \
    "step.started,approval.requested,approval.waiting,approval.granted,step.succeeded,"
  assert_equal "$(jq -r 'select(.event == "approval.granted") | .seq' "$T/run.out")" 7
  # the text for people went to stderr, once
  assert_equal "$(grep -c "waiting for approval of go-ahead" "$T/run.err")" 1
}

@test "wait: GitHub Actions gets a notice at the approval step while it waits" {
  use_backend file
  appr_runbook
  export GITHUB_ACTIONS=true
  start_waiting 1s
  finish_waiting
  assert_equal "$status" 4
  assert_output --regexp "::notice file=$T/rb.yml,line=[0-9]+,col=[0-9]+,title=zdm%3A waiting for approval::waiting for approval of go-ahead \(zdm approve $ID go-ahead\), 1.0s left"
}

@test "wait: the run lock taken from under a waiting run (its lock file removed) stops it: exit 4, nothing more written" {
  use_backend file
  appr_runbook
  start_waiting 60s
  local before
  before="$(records "$ID" | wc -l)"
  rm "$T/state/locks/appr.lock"
  finish_waiting
  assert_equal "$status" 4
  assert_output --partial "lost the run lock: the lock file '$T/state/locks/appr.lock' was removed or replaced"
  assert_output --partial "stops waiting for approval of step 'go-ahead'"
  assert_equal "$(records "$ID" | wc -l)" "$before"
  verify "$ID"
}

@test "wait: a signal while it waits: interrupted (exit 4), journaled; resume waits again" {
  use_backend file
  appr_runbook
  start_waiting 60s
  kill -TERM "$ZPID"
  finish_waiting
  assert_equal "$status" 4
  assert_equal "$(recs "$ID" approval.wait_ended | jq -r .reason)" interrupted
  assert_equal "$(timeline_of "$ID" | tail -n 3 | tr '\n' ,)" "approval.wait_ended go-ahead,step.interrupted go-ahead,run.interrupted,"
  # nobody waits now: approve refuses, resume (idempotent approval) asks again
  ZDM_ACTOR=ann run elsewhere approve "$ID" go-ahead "${ST[@]}"
  assert_equal "$status" 2
  ZDM_ACTOR=ann run zdm resume "$ID" "${ST[@]}" --approve go-ahead </dev/null
  assert_equal "$status" 0
  assert_file_exist "$T/finished"
  verify "$ID"
}

@test "wait: a bad --wait-for-approval is refused (exit 2) naming the flag; nothing is written" {
  appr_runbook
  for d in abc 0s 5 -5m ""; do
    run zdm run "$T/rb.yml" --state-dir "$T/state" --wait-for-approval "$d"
    assert_equal "$status" 2
    assert_output --partial "zdm run: --wait-for-approval '$d': give how long to wait for zdm approve"
  done
  run zdm resume --state-dir "$T/state" --wait-for-approval 1x
  assert_equal "$status" 2
  assert_output --partial "zdm resume: --wait-for-approval '1x'"
  run zdm rollback --state-dir "$T/state" --wait-for-approval 1m
  assert_equal "$status" 2
  assert_output --partial "option '--wait-for-approval' does not apply here"
  assert_not_exist "$T/state"
  assert_not_exist "$T/prepared"
}
