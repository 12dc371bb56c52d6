#!/usr/bin/env bats
# The approval step and `zdm approve`: granted, denied and timed out, each
# with its exit code and journal record; --approve STEP; the prompt on a
# terminal (a real one: tmux, or script(1) where nothing is typed);
# --non-interactive / CI.
# state: file and PostgreSQL (ZDM_TEST_STATE=pg, tests/helper.bash)

load helper

setup_file() {
  command -v script >/dev/null || { echo "script(1) (util-linux) is needed" >&2; return 1; }
  command -v tmux >/dev/null || { echo "tmux is needed (make deps)" >&2; return 1; }
  state_setup_file
}

# touch a marker (undone by rm), ask, then touch another
appr_runbook() { # TIMEOUT
  cat >rb.yml <<EOF
zdm: 1
name: appr
steps:
  - id: prepare
    uses: exec
    with: {command: [touch, prepared]}
    undo: {uses: exec, with: {command: [rm, -f, prepared]}}
  - id: go-ahead
    uses: approval
    with:
      message: "check the canary dashboard"
      approvers: [ann, bob]
      decision_timeout: ${1:-1h}
  - id: finish
    uses: exec
    with: {command: [touch, finished]}
EOF
}

# the data of the journal's records of EVENT for step go-ahead, one JSON per line
recs() { # EVENT
  jq -c --arg e "$1" 'select(.event == $e and .step == "go-ahead") | .data' "$(journal_of "$T/state")"
}

# run non-interactively until it pauses for the approval; sets $ID
start_and_pause() {
  unset CI
  run zdm run rb.yml --state-dir "$T/state" </dev/null
  assert_equal "$status" 4
  ID="$(basename "$(journal_of "$T/state")" .jsonl)"
  assert_output --partial "waiting for approval: zdm approve $ID go-ahead, then zdm resume $ID"
  assert_file_exist prepared
  assert_not_exist finished
  assert_equal "$(recs run.paused | jq -r .waiting_for)" approval
  assert_equal "$(recs approval.requested | jq -r '.message, (.approvers | join(","))' | paste -sd' ')" \
    "check the canary dashboard ann,bob"
}

@test "granted: zdm approve by an approver, then resume: exit 0, approval.granted in the hash chain" {
  appr_runbook
  start_and_pause
  # not an approver: refused, exit 2, nothing written
  local before; before="$(wc -l <"$(journal_of "$T/state")")"
  run env ZDM_ACTOR=eve "$ZDM_BIN" approve "$ID" go-ahead --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "'eve' is not among the approvers of step 'go-ahead'"
  assert_equal "$(wc -l <"$(journal_of "$T/state")")" "$before"
  run zdm status "$ID" --state-dir "$T/state"
  assert_line "state    paused — waiting for approval of step 'go-ahead': zdm approve $ID go-ahead, then zdm resume $ID"
  # an approver
  run env ZDM_ACTOR=ann "$ZDM_BIN" approve "$ID" go-ahead --reason "canary is clean" --state-dir "$T/state"
  assert_equal "$status" 0
  assert_output --partial "approved: step 'go-ahead' of run $ID, by ann"
  assert_equal "$(recs approval.granted)" '{"actor":"ann","reason":"canary is clean","via":"zdm approve"}'
  # a second decision is refused
  run env ZDM_ACTOR=bob "$ZDM_BIN" approve "$ID" go-ahead --deny --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "already approved by ann"
  run zdm status "$ID" --state-dir "$T/state"
  assert_line "state    paused — step 'go-ahead' approved by ann: zdm resume $ID"
  run zdm resume "$ID" --state-dir "$T/state" </dev/null
  assert_equal "$status" 0
  assert_file_exist finished
  assert_equal "$(recs step.succeeded | jq -r .outputs.approved_by)" ann
  run zdm audit verify "$(journal_of "$T/state")"
  assert_equal "$status" 0
  run zdm log "$ID" --state-dir "$T/state"
  assert_output --regexp 'approval\.granted +go-ahead'
}

@test "denied: zdm approve --deny, then resume fails the step and rolls back: exit 1" {
  appr_runbook
  start_and_pause
  run env ZDM_ACTOR=bob "$ZDM_BIN" approve "$ID" go-ahead --deny --reason "error rate is up" --state-dir "$T/state"
  assert_equal "$status" 0
  assert_output --partial "denied: step 'go-ahead' of run $ID, by bob"
  assert_equal "$(recs approval.denied)" '{"actor":"bob","reason":"error rate is up","via":"zdm approve"}'
  run zdm resume "$ID" --state-dir "$T/state" </dev/null
  assert_equal "$status" 1
  assert_equal "$(recs step.failed | tail -n 1 | jq -r .error)" "approval denied by bob: error rate is up"
  assert_equal "$(jq -r 'select(.event=="undo.succeeded") | .step' "$(journal_of "$T/state")")" prepare
  assert_equal "$(jq -r 'select(.event=="run.finished") | .data.status' "$(journal_of "$T/state")")" rolled_back
  assert_not_exist prepared
  assert_not_exist finished
  # a finished run waits for nobody
  run env ZDM_ACTOR=ann "$ZDM_BIN" approve "$ID" go-ahead --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "is not waiting for approval of step 'go-ahead'"
}

@test "timed out: a resume after the approval's timeout (from the first start) fails it: exit 1" {
  appr_runbook 1s
  start_and_pause
  sleep 1.2
  run zdm resume "$ID" --state-dir "$T/state" </dev/null
  assert_equal "$status" 1
  assert_equal "$(recs step.failed | tail -n 1 | jq -r .timed_out)" true
  recs step.failed | tail -n 1 | jq -r .error | grep -q "^approval timed out: no decision within 1.0s of the request at 20"
  assert_equal "$(jq -r 'select(.event=="run.finished") | .data.status' "$(journal_of "$T/state")")" rolled_back
  # the request was recorded once, at the first start, and not renewed by the resume
  assert_equal "$(recs approval.requested | wc -l)" 1
  assert_not_exist prepared
  assert_not_exist finished
}

@test "--approve STEP pre-approves in CI (journaled with the actor and via --approve); a non-approver's does not count" {
  appr_runbook
  unset CI
  run env ZDM_ACTOR=eve "$ZDM_BIN" run rb.yml --approve go-ahead --state-dir "$T/s1"
  assert_equal "$status" 4
  assert_output --partial "--approve go-ahead: 'eve' is not among the approvers"
  run env ZDM_ACTOR=bob "$ZDM_BIN" run rb.yml --approve go-ahead --state-dir "$T/state" </dev/null
  assert_equal "$status" 0
  assert_file_exist finished
  assert_equal "$(recs approval.granted)" '{"actor":"bob","via":"--approve"}'
  # resume takes --approve too
  rm -f finished
  run env ZDM_ACTOR=ann "$ZDM_BIN" resume "$(basename "$(journal_of "$T/s1")" .jsonl)" --approve go-ahead --state-dir "$T/s1"
  assert_equal "$status" 0
  assert_file_exist finished
}

@test "zdm approve refuses (exit 2) a step the run is not waiting on, an unknown run, a held lock" {
  appr_runbook
  start_and_pause
  run env ZDM_ACTOR=ann "$ZDM_BIN" approve "$ID" prepare --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "is not waiting for approval of step 'prepare'"
  run env ZDM_ACTOR=ann "$ZDM_BIN" approve 20990101T000000Z-0000 go-ahead --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "no run '20990101T000000Z-0000'"
  run zdm approve "$ID" --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "usage: zdm approve RUN_ID STEP"
  # while a zdm process holds the run's lock, nothing is written
  local before; before="$(wc -l <"$(journal_of "$T/state")")"
  hold_lock "$T/state" appr
  run env ZDM_ACTOR=ann "$ZDM_BIN" approve "$ID" go-ahead --state-dir "$T/state"
  release_lock
  assert_equal "$status" 2
  assert_output --partial "lock"
  assert_equal "$(wc -l <"$(journal_of "$T/state")")" "$before"
  # and once it is free, the same command goes through
  run env ZDM_ACTOR=ann "$ZDM_BIN" approve "$ID" go-ahead --state-dir "$T/state"
  assert_equal "$status" 0
}

# zdm on a real terminal, answering its prompt with $1 once it shows (or
# typing it into nothing if zdm finishes without asking)
on_tty() { # ANSWER ARGS...
  local answer="$1"; shift
  tty_answer "$answer" "[y/N]" env ${CI+CI="$CI"} ${ZDM_ACTOR+ZDM_ACTOR="$ZDM_ACTOR"} "$ZDM_BIN" "$@"
}

@test "on a terminal it prompts: y grants (exit 0), n denies and rolls back (exit 1); both journaled" {
  appr_runbook
  unset CI
  export ZDM_ACTOR=ann
  run on_tty y run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_output --partial "approve step go-ahead? [y/N]"
  assert_output --partial "check the canary dashboard"
  assert_equal "$(recs approval.granted)" '{"actor":"ann","via":"prompt"}'
  assert_file_exist finished
  rm -f finished
  run on_tty n run rb.yml --state-dir "$T/s2"
  assert_equal "$status" 1
  assert_equal "$(jq -c 'select(.event=="approval.denied") | .data' "$(journal_of "$T/s2")")" '{"actor":"ann","via":"prompt"}'
  assert_not_exist prepared
  assert_not_exist finished
}

@test "on a terminal, --non-interactive or CI set never prompt: the run pauses (exit 4)" {
  appr_runbook
  unset CI
  run on_tty y run rb.yml --non-interactive --state-dir "$T/s1"
  assert_equal "$status" 4
  refute_output --partial "[y/N]"
  assert_output --partial "waiting for approval"
  run env CI=true script -qec "$ZDM_BIN run rb.yml --state-dir $T/s2" /dev/null </dev/null
  assert_equal "$status" 4
  refute_output --partial "[y/N]"
  # someone who may not decide is not asked
  ZDM_ACTOR=eve run on_tty y run rb.yml --state-dir "$T/s3"
  assert_equal "$status" 4
  refute_output --partial "[y/N]"
  assert_output --partial "'eve' is not among the approvers (ann, bob), so zdm does not ask"
  assert_not_exist finished
}

@test "a dry run does not wait for approvals; validation checks message, approvers and timeout" {
  appr_runbook
  run zdm run rb.yml --dry-run --state-dir "$T/state" </dev/null
  assert_equal "$status" 0
  cat >bad.yml <<'EOF'
zdm: 1
name: bad
steps:
  - id: a
    uses: approval
    with: {approvers: [ann]}
  - id: b
    uses: approval
    with: {message: go?, approvers: [ann, 7, ""], decision_timeout: 0s}
EOF
  run zdm validate bad.yml
  assert_equal "$status" 2
  assert_output --partial "bad.yml:6:11: step 'a': missing required param 'message'"
  assert_output --regexp "bad.yml:9:[0-9]+: .*item 2 must be a non-empty name"
  assert_output --regexp "bad.yml:9:[0-9]+: .*item 3 must be a non-empty name"
  assert_output --regexp "bad.yml:9:[0-9]+: .*timeout.*must be more than 0"
}

@test "without ZDM_ACTOR the approver is the CI's user, the same name run.started records as actor.who" {
  appr_runbook
  unset CI
  run env GITHUB_ACTOR=bob "$ZDM_BIN" run rb.yml --approve go-ahead --state-dir "$T/state" </dev/null
  assert_equal "$status" 0
  assert_equal "$(recs approval.granted)" '{"actor":"bob","via":"--approve"}'
  run jq -r 'select(.event=="run.started") | .data.actor.who' "$(journal_of "$T/state")"
  assert_output bob
}
