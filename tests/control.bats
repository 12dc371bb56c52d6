#!/usr/bin/env bats
# zdm pause, zdm abort and zdm promote from another directory and HOME while
# a zdm runs the run: journaled (control.*) with the actor beside the
# running zdm, which acts on them within a second.  pause: the step under
# way ends, then the run pauses (exit 4) and resume goes on; abort: a
# read-only step stops at once, a step that changes things finishes first,
# then everything is undone (exit 1); promote: the gate under way passes
# with promoted_by.  Refused (exit 2, nothing written) when no live zdm runs
# the run or the step is no gate.  Each on a state dir and on a PostgreSQL
# state (tests/servers/postgres.bash: LISTEN/NOTIFY wakes the run there).

bats_require_minimum_version 1.5.0
load helper
load servers/postgres
load servers/prometheus
load servers/httpd

setup_file() {
  pg_start ctl
  prom_file_start
}

teardown_file() {
  prom_file_stop
  pg_stop_all
}

# make (undone by rm), a step $1 (a wait by default), then after
ctl_runbook() { # [STEP YAML]
  local step="${1:-}"
  [ -n "$step" ] || step="  - id: soak
    uses: wait
    timeout: 120s
    with: {duration: 60s}"
  cat >"$T/rb.yml" <<EOF
zdm: 1
name: ctl
steps:
  - id: make
    uses: exec
    with: {command: [touch, "$T/made"]}
    undo: {uses: exec, with: {command: [rm, -f, "$T/made"]}}
$step
  - id: after
    uses: exec
    with: {command: [touch, "$T/after"]}
EOF
}

use_backend() { # file|pg
  BACKEND="$1"
  if [ "$1" = file ]; then
    ST=(--state-dir "$T/state")
  else
    DB="t${BATS_TEST_NUMBER}"
    pg_createdb ctl "$DB"
    URL="$(pg_uri ctl "$DB")"
    export PGPASSWORD="$PG_PASSWORD"
    run zdm state init "$URL"
    assert_success
    ST=(--state "$URL")
  fi
}

run_id() {
  if [ "$BACKEND" = file ]; then
    basename "$(journal_of "$T/state")" .jsonl
  else
    pg_psql ctl "$DB" -c "SELECT run_id FROM zdm.journal WHERE seq = 1 ORDER BY written DESC LIMIT 1"
  fi
}

records() { # ID
  if [ "$BACKEND" = file ]; then
    cat "$T/state/runs/$1.jsonl"
  else
    pg_psql ctl "$DB" -c "SELECT record FROM zdm.journal WHERE run_id = '$1' ORDER BY seq"
  fi
}

timeline_of() { # ID
  records "$1" | jq -r '[.event, (.step // "")] | join(" ") | rtrimstr(" ")'
}

# zdm from another directory and HOME, as another person: ann
elsewhere() {
  mkdir -p "$T/laptop" "$T/home2"
  (cd "$T/laptop" && HOME="$T/home2" ZDM_ACTOR=ann timeout 60 "$ZDM_BIN" "$@")
}

# run the runbook in the background; once step $1 has started: ID, RUN_PID
start_run() { # STEP
  local i
  timeout 90 "$ZDM_BIN" run "$T/rb.yml" "${ST[@]}" >"$T/run.out" 2>&1 </dev/null &
  RUN_PID=$!
  for i in $(seq 400); do
    ID="$(run_id 2>/dev/null || true)"
    if [ -n "$ID" ] && timeline_of "$ID" 2>/dev/null | grep -qx "step.started $1"; then
      return 0
    fi
    sleep 0.05
  done
  cat "$T/run.out" >&2
  echo "step $1 did not start in 20 s" >&2
  return 1
}

finish_run() {
  status=0
  wait "$RUN_PID" || status=$?
  output="$(cat "$T/run.out")"
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

# ---- promote ---------------------------------------------------------------------

check_promote() {
  use_backend "$1"
  ctl_runbook
  start_run soak
  SECONDS=0
  run elsewhere promote "$ID" soak --reason "dashboards are green" "${ST[@]}"
  assert_equal "$status" 0
  assert_output --partial "promote asked: step 'soak' of run $ID passes now (by ann, journal record"
  finish_run
  assert_equal "$status" 0
  # the 60 s soak ended at once
  [ "$SECONDS" -lt 30 ]
  assert_output --partial "promoted by ann (zdm promote): step 'soak' passes now"
  assert_file_exists "$T/after"
  [ "$(records "$ID" | jq -c 'select(.event == "control.promote") | [.step, .data.actor, .data.via, .data.reason]')" = \
    '["soak","ann","zdm promote","dashboards are green"]' ]
  [ "$(records "$ID" | jq -r 'select(.event == "step.succeeded" and .step == "soak") | .data.outputs.promoted_by')" = ann ]
  run timeline_of "$ID"
  assert_output "run.started
step.started make
step.succeeded make
step.started soak
control.promote soak
step.succeeded soak
step.started after
step.succeeded after
run.finished"
  verify "$ID"
  run zdm log "$ID" "${ST[@]}"
  assert_output --regexp "control.promote +soak  by ann  \(dashboards are green\)"
}

@test "promote (state dir): the wait under way passes at once with promoted_by; journaled with the actor" {
  check_promote file
}

@test "promote (PostgreSQL): the wait under way passes at once with promoted_by; journaled with the actor" {
  check_promote pg
}

@test "promote: a metric_gate and a health_gate under way pass with promoted_by" {
  use_backend file
  ctl_runbook "  - id: soak
    uses: health_gate
    timeout: 120s
    with: {url: 'http://127.0.0.1:1/never', interval: 1s, healthy_threshold: 2, unhealthy_threshold: 100}
  - id: gate
    uses: metric_gate
    timeout: 120s
    with:
      provider: prometheus
      address: $PROM
      query: vector(1)
      success: result > 5
      failure_limit: 100
      interval: 1s"
  start_run soak
  run elsewhere promote "$ID" "${ST[@]}"
  assert_equal "$status" 0
  for i in $(seq 200); do timeline_of "$ID" | grep -qx "step.started gate" && break; sleep 0.05; done
  run elsewhere promote "$ID" gate "${ST[@]}"
  assert_equal "$status" 0
  finish_run
  assert_equal "$status" 0
  [ "$(records "$ID" | jq -r 'select(.event == "step.succeeded" and (.step == "soak" or .step == "gate")) | .data.outputs.promoted_by' | tr '\n' ,)" = "ann,ann," ]
  [ "$(records "$ID" | jq -r 'select(.event == "step.succeeded" and .step == "gate") | .data.outputs.verdict')" = "promoted by ann (zdm promote)" ]
}

# ---- abort -----------------------------------------------------------------------

check_abort_gate() {
  use_backend "$1"
  ctl_runbook
  start_run soak
  SECONDS=0
  run elsewhere abort "$ID" --reason "error rate up" "${ST[@]}"
  assert_equal "$status" 0
  assert_output --partial "abort asked: run $ID stops step 'soak' (it changes nothing) and rolls back (by ann"
  finish_run
  assert_equal "$status" 1
  [ "$SECONDS" -lt 30 ]
  assert_output --partial "rolled back: aborted by ann (zdm abort): error rate up; every completed step with an undo was undone."
  assert_file_not_exists "$T/made"
  assert_file_not_exists "$T/after"
  run timeline_of "$ID"
  assert_output "run.started
step.started make
step.succeeded make
step.started soak
control.abort
step.failed soak
rollback.started soak
undo.started make
undo.succeeded make
run.finished"
  [ "$(records "$ID" | jq -c 'select(.event == "control.abort") | [.data.actor, .data.via, .data.reason]')" = \
    '["ann","zdm abort","error rate up"]' ]
  [ "$(records "$ID" | jq -r 'select(.event == "run.finished") | [.data.status, .data.aborted_by, .data.exit_code] | join(",")')" = \
    "rolled_back,ann,1" ]
  verify "$ID"
}

@test "abort (state dir): a wait under way stops at once and every step is undone (exit 1)" {
  check_abort_gate file
}

@test "abort (PostgreSQL): a wait under way stops at once and every step is undone (exit 1)" {
  check_abort_gate pg
}

@test "abort: a step that changes things finishes first (its undo knows what it did), then everything is undone" {
  use_backend file
  ctl_runbook "  - id: change
    uses: exec
    with: {shell: 'touch $T/changing; i=0; while [ ! -e $T/go ] && [ \$i -lt 400 ]; do sleep 0.05; i=\$((i+1)); done; touch $T/changed'}
    undo: {uses: exec, with: {command: [rm, -f, '$T/changed']}}"
  start_run change
  run elsewhere abort "$ID" "${ST[@]}"
  assert_equal "$status" 0
  assert_output --partial "rolls back once step 'change' ends"
  sleep 1
  # still running: an exec step is never cut short by abort
  assert_file_not_exists "$T/changed"
  touch "$T/go"
  finish_run
  assert_equal "$status" 1
  assert_output --partial "step 'change' changes things, so it finishes first; then the run rolls back"
  assert_file_not_exists "$T/changed"
  assert_file_not_exists "$T/made"
  assert_file_not_exists "$T/after"
  run timeline_of "$ID"
  assert_line "step.succeeded change"
  assert_line "undo.succeeded change"
  assert_line "undo.succeeded make"
}

@test "abort (PostgreSQL): a run waiting for approval (--wait-for-approval) stops waiting and rolls back" {
  use_backend pg
  ctl_runbook "  - id: ask
    uses: approval
    with: {message: go?}"
  timeout 90 "$ZDM_BIN" run "$T/rb.yml" "${ST[@]}" --wait-for-approval 60s >"$T/run.out" 2>&1 </dev/null &
  RUN_PID=$!
  for i in $(seq 400); do
    ID="$(run_id 2>/dev/null || true)"
    [ -n "$ID" ] && timeline_of "$ID" | grep -qx "approval.waiting ask" && break
    sleep 0.05
  done
  SECONDS=0
  run elsewhere abort "$ID" "${ST[@]}"
  assert_equal "$status" 0
  finish_run
  assert_equal "$status" 1
  [ "$SECONDS" -lt 30 ]
  assert_output --partial "rolled back: aborted by ann (zdm abort); every completed step with an undo was undone."
  assert_file_not_exists "$T/made"
  run timeline_of "$ID"
  assert_line "control.abort"
  assert_line "approval.wait_ended ask"
  assert_line "step.failed ask"
  assert_line "undo.succeeded make"
  verify "$ID"
}

@test "abort: a gate that passes in the moment the abort arrives is kept, and the run still rolls back" {
  use_backend file
  control <<<'{}'
  start_httpd
  ctl_runbook "  - id: gate
    uses: health_gate
    timeout: 120s
    with: {url: '$BASE/', interval: 1s, healthy_threshold: 2, unhealthy_threshold: 100}"
  # around the second round, so the abort arrives at the gate's last note
  # or while it passes, at each of these moments
  for at in 0.8 0.9 1.0; do
    rm -rf "$T/state" "$T/made" "$T/after"
    start_run gate
    sleep "$at"
    run elsewhere abort "$ID" "${ST[@]}"
    assert_equal "$status" 0
    finish_run
    assert_equal "$status" 1
    assert_output --partial "rolled back: aborted by ann (zdm abort); every completed step with an undo was undone."
    refute_output --partial "interrupted"
    assert_file_not_exists "$T/made"
    assert_file_not_exists "$T/after"
  done
}

@test "pause of the last step is refused (nothing comes after it); abort names a read_only: true step as one it stops" {
  use_backend file
  cat >"$T/rb.yml" <<EOF
zdm: 1
name: ctl
steps:
  - id: make
    uses: exec
    with: {command: [touch, "$T/made"]}
    undo: {uses: exec, with: {command: [rm, -f, "$T/made"]}}
  - id: look
    uses: exec
    read_only: true
    with: {shell: 'i=0; while [ ! -e $T/go ] && [ \$i -lt 600 ]; do sleep 0.05; i=\$((i+1)); done'}
EOF
  start_run look
  run elsewhere pause "$ID" "${ST[@]}"
  assert_equal "$status" 2
  assert_output "zdm pause: step 'look' under way is the last of run $ID: the run ends after it, so there is nothing to pause before (zdm abort rolls it back)"
  run elsewhere abort "$ID" "${ST[@]}"
  assert_equal "$status" 0
  assert_output --partial "abort asked: run $ID stops step 'look' (it changes nothing) and rolls back"
  finish_run
  assert_equal "$status" 1
  assert_output --partial "stopping step 'look' (it changes nothing) and rolling back"
  assert_file_not_exists "$T/made"
  [ "$(records "$ID" | jq -r 'select(.event == "step.started" and .step == "look") | .data.read_only')" = true ]
}

# ---- pause -----------------------------------------------------------------------

check_pause() {
  use_backend "$1"
  ctl_runbook "  - id: soak
    uses: wait
    with: {duration: 2s}"
  start_run soak
  run elsewhere pause "$ID" --reason "shift change" "${ST[@]}"
  assert_equal "$status" 0
  assert_output --partial "pause asked: run $ID pauses once step 'soak' ends (by ann"
  finish_run
  assert_equal "$status" 4
  assert_output --partial "paused before step 'after': paused by ann (zdm pause): shift change."
  assert_output --partial "zdm resume $ID"
  assert_file_exists "$T/made"
  assert_file_not_exists "$T/after"
  [ "$(records "$ID" | jq -r 'select(.event == "step.succeeded") | .step' | tr '\n' ,)" = "make,soak," ]
  [ "$(records "$ID" | jq -c 'select(.event == "run.paused") | [.step, .data.paused_by, .data.reason]')" = \
    '["after","ann","asked"]' ]
  run zdm status "$ID" "${ST[@]}"
  assert_output --regexp "state +paused"
  run zdm resume "$ID" "${ST[@]}"
  assert_equal "$status" 0
  assert_file_exists "$T/after"
  verify "$ID"
}

@test "pause (state dir): the step under way ends, then the run pauses (exit 4); resume goes on" {
  check_pause file
}

@test "pause (PostgreSQL): the step under way ends, then the run pauses (exit 4); resume goes on" {
  check_pause pg
}

# ---- refused ---------------------------------------------------------------------

check_refused() {
  use_backend "$1"
  ctl_runbook "  - id: busy
    uses: exec
    with: {shell: 'i=0; while [ ! -e $T/go ] && [ \$i -lt 400 ]; do sleep 0.05; i=\$((i+1)); done'}"
  start_run busy
  local n
  n="$(records "$ID" | wc -l)"
  # an exec step is no gate
  run elsewhere promote "$ID" "${ST[@]}"
  assert_equal "$status" 2
  assert_output --partial "zdm promote: step 'busy' (uses: exec) is not a gate zdm promote can end: only wait, health_gate and metric_gate"
  # another step than the one under way
  run elsewhere promote "$ID" make "${ST[@]}"
  assert_equal "$status" 2
  assert_output --partial "step 'make' is not what is running now in run $ID"
  assert_output --partial "under way: step 'busy' (uses: exec)"
  # a step for pause or abort
  run elsewhere pause "$ID" busy "${ST[@]}"
  assert_equal "$status" 2
  [ "$(records "$ID" | wc -l)" = "$n" ]
  touch "$T/go"
  finish_run
  assert_equal "$status" 0
  n="$(records "$ID" | wc -l)"
  # the run is over: nothing to steer
  for c in pause abort promote; do
    run elsewhere "$c" "$ID" "${ST[@]}"
    assert_equal "$status" 2
    assert_output --partial "zdm $c: run $ID is not running now (state: succeeded): zdm $c acts on a run a live zdm is running"
  done
  [ "$(records "$ID" | wc -l)" = "$n" ]
  # no such run
  run elsewhere abort 20990101T000000Z-0000 "${ST[@]}"
  assert_equal "$status" 2
}

@test "refused (state dir): no gate, another step, a finished run, no such run: exit 2, nothing written" {
  check_refused file
}

@test "refused (PostgreSQL): no gate, another step, a finished run, no such run: exit 2, nothing written" {
  check_refused pg
}

@test "a paused run is not steered: pause and abort point at resume and rollback (exit 2)" {
  use_backend file
  ctl_runbook "  - id: ask
    uses: approval
    with: {message: ok?}"
  CI=true run zdm run "$T/rb.yml" "${ST[@]}"
  assert_equal "$status" 4
  ID="$(run_id)"
  run elsewhere abort "$ID" "${ST[@]}"
  assert_equal "$status" 2
  assert_output --partial "run $ID is not running now (state: paused)"
  assert_output --partial "a paused or stopped run goes on with zdm resume $ID, or is undone with zdm rollback $ID"
}

@test "--output json: the control record is in the stream in journal order; exit names the abort" {
  use_backend file
  ctl_runbook
  timeout 90 "$ZDM_BIN" run "$T/rb.yml" "${ST[@]}" --output json >"$T/run.json" 2>"$T/run.err" </dev/null &
  RUN_PID=$!
  for i in $(seq 400); do
    ID="$(run_id 2>/dev/null || true)"
    [ -n "$ID" ] && timeline_of "$ID" | grep -qx "step.started soak" && break
    sleep 0.05
  done
  run elsewhere abort "$ID" "${ST[@]}"
  assert_equal "$status" 0
  status=0
  wait "$RUN_PID" || status=$?
  assert_equal "$status" 1
  run jq -r 'select(.event | startswith("control.") or . == "step.failed" or . == "exit") | .event' "$T/run.json"
  assert_output "control.abort
step.failed
exit"
  [ "$(jq -r 'select(.event == "exit") | .status' "$T/run.json")" = rolled_back ]
  # every event conforms to docs/ci.md's schema
  run jq -c -f "$BATS_TEST_DIRNAME/data/ci/events.jq" "$T/run.json"
  assert_success
  [ -z "$(echo "$output" | grep -v '^null$')" ]
}
