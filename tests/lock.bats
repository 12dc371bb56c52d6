#!/usr/bin/env bats
# One run at a time per runbook name and state: a flock(2) on
# STATE_DIR/locks/NAME.lock, or PostgreSQL's advisory lock.  A second run
# exits 2 and names the holder; a crashed holder leaves no stale lock.
# state: file and PostgreSQL (ZDM_TEST_STATE=pg, tests/helper.bash)

bats_require_minimum_version 1.5.0
load helper

# runbook NAME: its first step says it started, then waits for $T/release
# (the test decides when the holder may finish; a 60s timeout is the guard, long enough for a loaded machine)
write_holder() {   # file name
  cat >"$T/$1" <<EOF
zdm: 1
name: $2
steps:
  - id: hold
    uses: exec
    timeout: 60s
    with:
      shell: 'touch "$T/$2.started"; while [ ! -e "$T/release" ]; do sleep 0.05; done'
  - id: after
    uses: exec
    with: {command: [touch, "$T/$2.done"]}
EOF
}

# wait (up to 5s) until a file exists
wait_for() {
  poll 100 0.05 test -e "$1" && return 0
  echo "timed out waiting for $1" >&2
  return 1
}

# start zdm run in the background, in its own session (setsid -w passes
# zdm's exit status on); `wait "$WAIT_PID"` waits for it
start_holder() {   # runbook
  setsid -w "$ZDM_BIN" run "$1" --state-dir "$T/state" >"$T/holder.out" 2>&1 3>&- &
  WAIT_PID=$!
}

# wait until runbook NAME's holder runs its first step; HOLDER_PID is the
# pid of that zdm process (from its run.started record), checked to be zdm
await_holder() {   # name
  wait_for "$T/$1.started"
  HOLDER_PID="$(jq -r 'select(.seq==1) | .data.actor.pid' "$(journal_of "$T/state")")"
  [ "$(readlink "/proc/$HOLDER_PID/exe")" = "$(readlink -f "$ZDM_EXE")" ]
}

@test "lock: a second run of the same runbook exits 2 naming the holder's pid, host and run; the first completes" {
  write_holder rb.yml locked
  start_holder rb.yml
  await_holder locked
  local j; j="$(journal_of "$T/state")"
  local run_id; run_id="$(jq -r 'select(.seq==1) | .run' "$j")"
  local pid="$HOLDER_PID"

  run --separate-stderr zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 2
  assert_equal "$stderr" "$(printf "zdm: runbook 'locked' is locked by pid %s on host '%s' (run %s, %s); wait for that run to finish or stop it" \
    "$pid" "$(hostname)" "$run_id" "$(lock_detail "$T/state" locked)")"
  assert_output ""
  # the refused run wrote no journal
  assert_equal "$(ls "$T/state/runs" | wc -l)" 1

  # status sees a live holder
  run zdm status rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_output --partial 'a zdm process holds the lock: running'

  touch "$T/release"
  local rc=0
  wait "$WAIT_PID" || rc=$?
  assert_equal "$rc" 0
  assert_exist "$T/locked.done"
  run jq -r 'select(.event=="run.finished") | .data.status' "$j"
  assert_output succeeded

  # released: the lock no longer names a holder, and a new run takes it
  assert_equal "$(lock_holder "$T/state" locked)" ""
  rm -f "$T/locked.done"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_exist "$T/locked.done"
}

@test "lock: another runbook name in the same state dir is not blocked" {
  write_holder a.yml alpha
  write_holder b.yml beta
  start_holder a.yml
  await_holder alpha
  # beta waits for the same release file: create it only after beta started
  ( wait_for "$T/beta.started" && touch "$T/release" ) 3>&- &
  run zdm run b.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_exist "$T/beta.done"
  wait "$WAIT_PID"
  assert_exist "$T/alpha.done"
  assert_equal "$(ls "$T/state/runs" | wc -l)" 2
}

@test "lock: the same runbook with another state dir is not blocked" {
  write_holder rb.yml shared
  start_holder rb.yml
  await_holder shared
  touch "$T/release"
  run zdm run rb.yml --state-dir "$T/other-state"
  assert_equal "$status" 0
  wait "$WAIT_PID"
}

@test "lock: a dry run takes no lock and is not blocked by a running run" {
  write_holder rb.yml dry
  start_holder rb.yml
  await_holder dry
  run zdm run rb.yml --dry-run --state-dir "$T/state"
  assert_equal "$status" 0
  assert_output --partial 'dry run ok'
  touch "$T/release"
  wait "$WAIT_PID"
}

@test "lock: resume and rollback of a locked runbook exit 2 naming the holder" {
  write_holder rb.yml busy
  # an earlier run that paused, so there is something to resume
  cat >"$T/paused.yml" <<EOF
zdm: 1
name: busy
on_failure: pause
steps:
  - id: hold
    uses: exec
    with: {command: [test, -e, "$T/never"]}
EOF
  run zdm run paused.yml --state-dir "$T/state"
  assert_equal "$status" 4
  local paused; paused="$(journal_of "$T/state")"

  start_holder rb.yml
  await_holder busy
  run zdm resume "$paused"
  assert_equal "$status" 2
  assert_output --partial "runbook 'busy' is locked by pid $HOLDER_PID"
  run zdm rollback "$paused"
  assert_equal "$status" 2
  assert_output --partial "runbook 'busy' is locked by pid $HOLDER_PID"
  touch "$T/release"
  wait "$WAIT_PID"
}

@test "lock: a holder killed with SIGKILL leaves no stale lock" {
  write_holder rb.yml crashy
  start_holder rb.yml
  await_holder crashy
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 2

  kill -9 "$HOLDER_PID"
  wait "$WAIT_PID" || true
  # the lock still names the dead holder, but the flock (or the advisory
  # lock of its connection) went with it
  run lock_holder "$T/state" crashy
  assert_output "$HOLDER_PID"
  run zdm status rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_output --partial 'no zdm process holds the lock: it stopped (crash?)'

  # its command is still running (zdm was killed, not the step's process
  # group): it must not hold the lock either
  pgrep -f "$T/release" >/dev/null
  cat >"$T/quick.yml" <<EOF
zdm: 1
name: crashy
steps:
  - id: quick
    uses: exec
    with: {command: [touch, "$T/quick.done"]}
EOF
  run zdm run quick.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_exist "$T/quick.done"
  touch "$T/release"
}
