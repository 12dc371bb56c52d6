#!/usr/bin/env bats
# Two resumes of one run never both act: a resume that read the journal
# before another zdm went on with the run finds, under the lock, that the
# journal changed, and does nothing (exit 2) instead of repeating steps or
# cutting off the other's records (with a torn tail, it used to truncate
# them and run the step again).
# state: file and PostgreSQL (ZDM_TEST_STATE=pg, tests/helper.bash)

bats_require_minimum_version 1.5.0
load helper

@test "resume race: a resume that read a torn journal before another resume finished does nothing (exit 2)" {
  unset ZDM_TEST_PAUSE_AFTER_READ
  cat >"$T/rb.yml" <<'YML'
zdm: 1
name: race
steps:
  - {id: one, uses: exec, with: {shell: "echo one >> ran.log"}}
  - {id: two, uses: exec, with: {shell: "echo two >> ran.log"}}
YML
  # killed while writing step two's step.started: a torn tail, two never ran
  ZDM_TEST_TEAR_RECORD=4 run zdm run rb.yml
  assert_equal "$status" 137
  # B reads the journal, then waits for the test's go
  ZDM_TEST_PAUSE_AFTER_READ="$T/go" zdm resume rb.yml >"$T/b.out" 2>&1 &
  b=$!
  for _ in $(seq 100); do [ -e "$T/go.waiting" ] && break; sleep 0.1; done
  assert_exist "$T/go.waiting"
  run zdm resume rb.yml                          # A cuts the torn tail and runs two
  assert_equal "$status" 0
  touch "$T/go"
  wait "$b" && rc=0 || rc=$?
  assert_equal "$rc" 2
  [[ "$(cat "$T/b.out")" == *"changed after this command read it: another zdm resumed or rolled back the run meanwhile; nothing was done"* ]]
  assert_equal "$(cat "$T/ran.log")" "one
two"                                             # step two ran once
  J="$(journal_of "$T/.zdm")"
  run zdm audit verify "$J"
  assert_equal "$status" 0
  run jq -r .event "$J"
  assert_output "run.started
step.started
step.succeeded
run.resumed
step.started
step.succeeded
run.finished"
}
