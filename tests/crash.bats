#!/usr/bin/env bats
# Crash safety: kill -9 at every journal append (ZDM_TEST_CRASH_AFTER_RECORD,
# a real SIGKILL of the zdm process right after record N is on disk), and of
# the whole zdm process group from outside while a step runs.  Every
# side-effecting command must run exactly once, or resume must stop and say
# the step is in doubt (exit 5).
# state: file and PostgreSQL (ZDM_TEST_STATE=pg, tests/helper.bash)

load helper

# four steps, each appends its name to ./effects; each undo appends undo-NAME
write_runbook() {   # [idempotent true|false]
  local idem="${1:-false}"
  printf 'zdm: 1\nname: crash\nsteps:\n' > rb.yml
  for s in a b c d; do
    cat >> rb.yml <<RB
  - id: $s
    uses: exec
    idempotent: $idem
    with: {shell: "echo $s >> '$T/effects'"}
    undo:
      uses: exec
      with: {shell: "echo undo-$s >> '$T/effects'"}
RB
  done
}

count() { grep -cx "$1" "$T/effects" 2>/dev/null || true; }

# steps a, b, c append their names to ./effects; b appends b-start first,
# then runs the shell line $2 before it appends b
abc_runbook() {   # name shell-line
  cat > rb.yml <<RB
zdm: 1
name: $1
steps:
  - id: a
    uses: exec
    with: {shell: "echo a >> '$T/effects'"}
  - id: b
    uses: exec
    with: {shell: "echo b-start >> '$T/effects'; $2\necho b >> '$T/effects'"}
  - id: c
    uses: exec
    with: {shell: "echo c >> '$T/effects'"}
RB
}

# zdm run rb.yml in the background in a session of its own (its output in
# out.txt, its pid in $pid), until file $2 holds $1 (at most 5 s)
run_in_background_until() {   # text file
  setsid "$ZDM_BIN" run rb.yml > out.txt 2>&1 &
  pid=$!
  for _ in $(seq 100); do grep -q "$1" "$2" 2>/dev/null && break; sleep 0.05; done
}

@test "crash: kill -9 after every journal record of a run; resume runs each step exactly once" {
  write_runbook false
  # records: 1 run.started, 2/3 a, 4/5 b, 6/7 c, 8/9 d, 10 run.finished
  for n in 1 2 3 4 5 6 7 8 9; do
    rm -rf .zdm effects
    ZDM_TEST_CRASH_AFTER_RECORD=$n run zdm run rb.yml
    [ "$status" -eq 137 ] || fail "record $n: run exit $status, want 137 (SIGKILL): $output"
    run zdm resume rb.yml
    if [ $((n % 2)) -eq 0 ]; then
      # the crash came right after a step.started: that step is in doubt
      [ "$status" -eq 5 ] || fail "record $n: resume exit $status, want 5: $output"
      local s=$(printf 'abcd' | cut -c$((n / 2)))
      assert_output --partial "step '$s' is in doubt"
      assert_output --partial "--in-doubt $s=retry"
      run zdm resume rb.yml --in-doubt $s=retry
    fi
    [ "$status" -eq 0 ] || fail "record $n: resume exit $status, want 0: $output"
    for s in a b c d; do
      [ "$(count $s)" -eq 1 ] || fail "record $n: step $s ran $(count $s) times: $(cat effects)"
    done
    run zdm audit verify "$(journal_of .zdm)"
    [ "$status" -eq 0 ] || fail "record $n: journal does not verify: $output"
    [ "$(jq -r 'select(.event=="run.finished") | .data.status' "$(journal_of .zdm)")" = succeeded ]
  done
}

@test "crash: an idempotent step in doubt is run again without asking" {
  write_runbook true
  ZDM_TEST_CRASH_AFTER_RECORD=4 run zdm run rb.yml     # right after b's step.started
  [ "$status" -eq 137 ]
  run zdm resume rb.yml
  [ "$status" -eq 0 ] || fail "$output"
  assert_output --partial "was in doubt; running it again (idempotent)"
  for s in a b c d; do [ "$(count $s)" -eq 1 ]; done
}

@test "crash: --in-doubt skip takes the step as done and goes on; a later rollback undoes it once" {
  write_runbook false
  ZDM_TEST_CRASH_AFTER_RECORD=4 run zdm run rb.yml
  [ "$status" -eq 137 ]
  echo b >> effects            # the person checked: b did happen
  run zdm resume rb.yml --in-doubt skip
  [ "$status" -eq 0 ] || fail "$output"
  for s in a b c d; do [ "$(count $s)" -eq 1 ]; done
  run events "$(journal_of .zdm)"
  assert_line "step.succeeded b"
  refute_line "step.skipped b"
  run zdm rollback rb.yml
  [ "$status" -eq 0 ] || fail "$output"
  for s in a b c d; do [ "$(count undo-$s)" -eq 1 ]; done
  [ "$(tail -4 effects | tr '\n' ' ')" = "undo-d undo-c undo-b undo-a " ]
}

@test "crash: kill -9 of the zdm process group inside a running step; resume reports it in doubt" {
  abc_runbook inside "sleep 1"
  run_in_background_until b-start effects
  grep -q b-start effects
  kill -9 -- -"$pid"           # zdm's whole process group, as a crash would
  wait "$pid" || true
  # the step's own process group outlives zdm: let it finish (b did happen)
  for _ in $(seq 60); do grep -qx b effects && break; sleep 0.05; done
  [ "$(count b)" -eq 1 ]
  run zdm resume rb.yml
  [ "$status" -eq 5 ] || fail "resume exit $status, want 5: $output"
  assert_output --partial "step 'b' is in doubt"
  run zdm resume rb.yml --in-doubt skip
  [ "$status" -eq 0 ] || fail "$output"
  [ "$(count a)" -eq 1 ] && [ "$(count b)" -eq 1 ] && [ "$(count c)" -eq 1 ]
}

@test "crash: kill -9 after every record of a rollback; zdm rollback undoes each step exactly once, newest first" {
  write_runbook false
  # 1 run.started, 2-9 four steps, 10 drill.failure, 11 rollback.started,
  # 12/13 undo d, 14/15 undo c, 16/17 undo b, 18/19 undo a, 20 run.finished
  for n in 10 11 12 13 14 15 16 17 18 19; do
    rm -rf .zdm effects
    ZDM_TEST_CRASH_AFTER_RECORD=$n run zdm run rb.yml --fail-at d
    [ "$status" -eq 137 ] || fail "record $n: run exit $status: $output"
    run zdm rollback rb.yml
    if [ "$n" -ge 12 ] && [ $((n % 2)) -eq 0 ]; then
      [ "$status" -eq 5 ] || fail "record $n: rollback exit $status, want 5 (undo in doubt): $output"
      assert_output --partial "in doubt"
      run zdm rollback rb.yml --in-doubt retry
    fi
    [ "$status" -eq 0 ] || fail "record $n: rollback exit $status, want 0: $output"
    run cat effects
    assert_output "$(printf 'a\nb\nc\nd\nundo-d\nundo-c\nundo-b\nundo-a')"
    [ "$(jq -r 'select(.event=="run.finished") | .data.status' "$(journal_of .zdm)")" = rolled_back ]
    run zdm rollback rb.yml
    [ "$status" -eq 2 ] || fail "record $n: second rollback exit $status, want 2"
    assert_output --partial "already rolled back"
  done
}

@test "crash: kill -9 between a step's final failure and the rollback; resume rolls back, not running the failed step again" {
  write_runbook false
  cat >> rb.yml <<RB
  - id: e
    uses: exec
    with: {shell: "echo e >> '$T/effects'; exit 7"}
RB
  # 1 run.started, 2-9 a-d, 10 step.started e, 11 step.failed e, 12 rollback.started
  for hook in ZDM_TEST_CRASH_AFTER_RECORD=11 ZDM_TEST_CRASH_BEFORE_RECORD=12 ZDM_TEST_TEAR_RECORD=12; do
    rm -rf .zdm effects
    env "$hook" "$ZDM_BIN" run rb.yml > out.txt 2>&1 && st=0 || st=$?
    [ "$st" -eq 137 ] || fail "$hook: run exit $st, want 137: $(cat out.txt)"
    run zdm resume rb.yml
    [ "$status" -eq 1 ] || fail "$hook: resume exit $status, want 1: $output"
    assert_output --partial "rolled back: step 'e' failed (exited with 7)"
    run cat effects
    assert_output "$(printf 'a\nb\nc\nd\ne\nundo-d\nundo-c\nundo-b\nundo-a')"
    run zdm audit verify "$(journal_of .zdm)"
    [ "$status" -eq 0 ] || fail "$hook: $output"
    run zdm resume rb.yml
    [ "$status" -eq 2 ] || fail "$hook: second resume exit $status, want 2: $output"
  done
}

@test "crash: kill -9 right after drill.failure; resume rolls back (the drill is not lost)" {
  write_runbook false
  # 1 run.started, 2-9 a-d, 10 drill.failure, 11 rollback.started
  ZDM_TEST_CRASH_AFTER_RECORD=10 run zdm run rb.yml --fail-at d
  [ "$status" -eq 137 ] || fail "$output"
  run zdm resume rb.yml
  [ "$status" -eq 1 ] || fail "resume exit $status, want 1: $output"
  run cat effects
  assert_output "$(printf 'a\nb\nc\nd\nundo-d\nundo-c\nundo-b\nundo-a')"
  [ "$(jq -r 'select(.event=="run.finished") | .data.status' "$(journal_of .zdm)")" = rolled_back ]
}

@test "rollback: a failing step undoes the completed ones in reverse order, each once; exit 1" {
  write_runbook false
  cat >> rb.yml <<RB
  - id: e
    uses: exec
    with: {shell: "echo e >> '$T/effects'; exit 7"}
RB
  run zdm run rb.yml
  [ "$status" -eq 1 ] || fail "$output"
  assert_output --partial "rolled back: step 'e' failed (exited with 7)"
  run cat effects
  assert_output "$(printf 'a\nb\nc\nd\ne\nundo-d\nundo-c\nundo-b\nundo-a')"
  run events "$(journal_of .zdm)"
  assert_line "step.failed e"
  assert_line "rollback.started e"
}

@test "rollback: an undo that fails stops the rollback (exit 3); zdm rollback finishes it later" {
  cat > rb.yml <<RB
zdm: 1
name: badundo
steps:
  - id: a
    uses: exec
    with: {shell: "echo a >> '$T/effects'"}
    undo: {uses: exec, with: {shell: "echo undo-a >> '$T/effects'"}}
  - id: b
    uses: exec
    with: {shell: "echo b >> '$T/effects'"}
    undo: {uses: exec, with: {shell: "test -e '$T/fixed' && echo undo-b >> '$T/effects'"}}
  - id: c
    uses: exec
    with: {shell: "exit 1"}
RB
  run zdm run rb.yml
  [ "$status" -eq 3 ] || fail "$output"
  assert_output --partial "ROLLBACK INCOMPLETE"
  run cat effects
  assert_output "$(printf 'a\nb')"          # a was not undone on top of b
  touch fixed
  run zdm rollback rb.yml
  [ "$status" -eq 0 ] || fail "$output"
  run cat effects
  assert_output "$(printf 'a\nb\nundo-b\nundo-a')"
}

@test "signal: SIGINT during a step stops its process group, exits 4; resume asks about the stopped step, then completes" {
  abc_runbook sigint "sleep 30 # zdm-sigint-marker-$BATS_TEST_NUMBER"
  run_in_background_until b-start effects
  kill -INT "$pid"
  rc=0; wait "$pid" || rc=$?
  [ "$rc" -eq 4 ] || fail "exit $rc, want 4: $(cat out.txt)"
  grep -q "zdm resume" out.txt
  run pgrep -f "zdm-sigint-marker-$BATS_TEST_NUMBER"     # the step's group was stopped
  [ "$status" -eq 1 ]
  run events "$(journal_of .zdm)"
  assert_line "step.interrupted b"
  assert_line "run.interrupted"
  # b may have half-happened: resume asks (exit 5) before running it again
  sed -i 's/sleep 30/true/' rb.yml
  run zdm resume rb.yml --allow-changed
  [ "$status" -eq 5 ] || fail "$output"
  assert_output --partial "a signal stopped it part-way"
  run zdm resume rb.yml --allow-changed --in-doubt retry
  [ "$status" -eq 0 ] || fail "$output"
  [ "$(count a)" -eq 1 ] && [ "$(count b)" -eq 1 ] && [ "$(count c)" -eq 1 ]
}

@test "signal: SIGTERM between retries exits 4 and the run is resumable" {
  cat > rb.yml <<RB
zdm: 1
name: sigterm
steps:
  - id: flaky
    uses: exec
    retries: 5
    retry_delay: 5s
    with: {shell: "echo try >> '$T/effects'; test -e '$T/ok'"}
RB
  run_in_background_until "next in" out.txt
  kill -TERM "$pid"
  rc=0; wait "$pid" || rc=$?
  [ "$rc" -eq 4 ] || fail "exit $rc: $(cat out.txt)"
  touch ok
  run zdm resume rb.yml
  [ "$status" -eq 0 ] || fail "$output"
  [ "$(count try)" -eq 2 ]
}

@test "resume: a changed runbook is refused unless --allow-changed, which is journaled" {
  write_runbook false
  ZDM_TEST_CRASH_AFTER_RECORD=3 run zdm run rb.yml
  [ "$status" -eq 137 ]
  echo "# edited" >> rb.yml
  run zdm resume rb.yml
  [ "$status" -eq 2 ]
  assert_output --partial "changed since run"
  assert_output --partial "--allow-changed"
  [ "$(count b)" -eq 0 ]
  run zdm resume rb.yml --allow-changed
  [ "$status" -eq 0 ] || fail "$output"
  [ "$(jq -r 'select(.event=="run.resumed") | .data.allow_changed' "$(journal_of .zdm)")" = true ]
}

@test "resume: a finished run has nothing to resume (exit 2)" {
  write_runbook false
  run zdm run rb.yml
  [ "$status" -eq 0 ]
  run zdm resume rb.yml
  [ "$status" -eq 2 ]
  assert_output --partial "already finished (succeeded)"
}

# release.symlink records the link's target in step.started (snapshot) before
# it switches, so a switch that happened but was never recorded as done is
# still put back exactly
symlink_runbook() {
  mkdir -p r/v1 r/v2
  ln -sfn "$T/r/v1" current
  cat > rb.yml <<RB
zdm: 1
name: sl
steps:
  - id: switch
    uses: release.symlink
    with: {link: "$T/current", target: "$T/r/v2"}
  - id: after
    uses: exec
    with: {command: ["true"]}
RB
}

@test "crash: a symlink switch torn before step.succeeded is undone exactly by zdm rollback" {
  symlink_runbook
  ZDM_TEST_TEAR_RECORD=3 run zdm run rb.yml       # step.succeeded of switch is torn
  [ "$status" -eq 137 ]
  [ "$(readlink current)" = "$T/r/v2" ]           # the switch did happen
  run zdm rollback rb.yml
  [ "$status" -eq 0 ] || fail "$output"
  # a torn record is a file's: in PostgreSQL the INSERT never happened
  on_file_state assert_output --partial "last line was torn"
  [ "$(readlink current)" = "$T/r/v1" ]
}

@test "crash: an idempotent switch rerun after a crash still undoes to the release before the first try" {
  symlink_runbook
  ZDM_TEST_TEAR_RECORD=3 run zdm run rb.yml
  [ "$status" -eq 137 ]
  run zdm resume rb.yml
  [ "$status" -eq 0 ] || fail "$output"
  [ "$(jq -r 'select(.event=="step.succeeded" and .step=="switch") | .data.undo_data.previous' "$(journal_of .zdm)")" = "$T/r/v1" ]
  # 'after' (exec, no undo) is left in place: exit 6
  run zdm rollback rb.yml
  [ "$status" -eq 6 ] || fail "$output"
  [ "$(readlink current)" = "$T/r/v1" ]
}
