#!/usr/bin/env bats
# zdm as a CI stage: `--output json` is a stream of events that conform to
# the schema documented in docs/ci.md (checked by tests/data/ci/events.jq),
# ends with an "exit" event whose exit_code is zdm's exit code, and every
# exit code of zdm(1)'s EXIT STATUS is reachable with it.  GitHub Actions
# annotations when GITHUB_ACTIONS=true.

load helper

SCHEMA="$BATS_TEST_DIRNAME/data/ci/events.jq"

# zdm with stdout (the stream) in $T/out.jsonl and stderr in $T/err.txt;
# sets $status
jrun() {
  status=0
  timeout 60 "$ZDM_BIN" "$@" >"$T/out.jsonl" 2>"$T/err.txt" </dev/null || status=$?
}

# every line is a JSON object that conforms to the schema; the last is "exit"
# with the given exit code and status
assert_stream() { # CODE STATUS
  local bad
  [ -s "$T/out.jsonl" ] || fail "no events on stdout; stderr: $(cat "$T/err.txt")"
  bad="$(jq -c -f "$SCHEMA" "$T/out.jsonl" | grep -vx null || true)"
  [ -z "$bad" ] || fail "events not in the documented schema: $bad"
  # exactly one exit event, and it is the last line
  assert_equal "$(jq -s '[.[] | select(.event == "exit")] | length' "$T/out.jsonl")" 1
  assert_equal "$(tail -n 1 "$T/out.jsonl" | jq -r '.event')" exit
  assert_equal "$(tail -n 1 "$T/out.jsonl" | jq -r '.exit_code')" "$1"
  assert_equal "$(tail -n 1 "$T/out.jsonl" | jq -r '.status')" "$2"
  assert_equal "$status" "$1"
}

@test "exit 0: a run that succeeds streams every journal record, then exit succeeded" {
  cat >rb.yml <<'EOF'
zdm: 1
name: ok
steps:
  - id: one
    uses: exec
    with: {command: [touch, one.done]}
  - id: two
    uses: wait
    with: {duration: 10ms}
EOF
  jrun run rb.yml --output json --state-dir "$T/state"
  assert_stream 0 succeeded
  # the stream holds the journal, record for record (plus "v"), then exit
  J="$(journal_of "$T/state")"
  assert_equal "$(jq -c 'del(.v)' "$T/out.jsonl" | head -n -1)" "$(jq -c . "$J")"
  assert_equal "$(jq -r 'select(.event=="run.finished") | .data.status' "$T/out.jsonl")" succeeded
  assert_equal "$(tail -n 1 "$T/out.jsonl" | jq -r .run)" "$(head -n 1 "$T/out.jsonl" | jq -r .run)"
  # people's text went to stderr
  grep -q "succeeded: run" "$T/err.txt"
  assert_file_exist one.done
}

@test "exit 1: a failed step is rolled back; run.finished and exit say rolled_back" {
  cat >rb.yml <<'EOF'
zdm: 1
name: fails
steps:
  - id: make
    uses: exec
    with: {command: [touch, made]}
    undo: {uses: exec, with: {command: [rm, -f, made]}}
  - id: broken
    uses: exec
    with: {command: [sh, -c, "echo no >&2; exit 3"]}
EOF
  jrun run rb.yml --output json --state-dir "$T/state"
  assert_stream 1 rolled_back
  assert_equal "$(jq -r 'select(.event=="step.failed") | .step' "$T/out.jsonl")" broken
  assert_equal "$(jq -r 'select(.event=="undo.succeeded") | .step' "$T/out.jsonl")" make
  assert_equal "$(jq -r 'select(.event=="run.finished") | .data.exit_code' "$T/out.jsonl")" 1
  assert_not_exist made
}

@test "exit 2: validation errors are events with file, line and col; nothing ran" {
  cat >rb.yml <<'EOF'
zdm: 1
name: bad
steps:
  - id: one
    uses: exec
    with: {command: [touch, x], bogus: 1}
  - id: two
    uses: no_such_type
EOF
  jrun run rb.yml --output json --state-dir "$T/state"
  assert_stream 2 usage_error
  assert_equal "$(jq -r 'select(.event=="validation.error") | "\(.file):\(.line):\(.col)"' "$T/out.jsonl")" \
    "$(printf 'rb.yml:6:33\nrb.yml:8:11')"
  jq -r 'select(.event=="validation.error") | .message' "$T/out.jsonl" | grep -q bogus
  assert_not_exist "$T/state"
  assert_not_exist x
}

@test "exit 2: the lock is held by another run; the exit event says so and nothing ran" {
  cat >rb.yml <<'EOF'
zdm: 1
name: locked
steps:
  - id: one
    uses: exec
    with: {command: [touch, one.done]}
EOF
  mkdir -p "$T/state/locks"
  exec 9>"$T/state/locks/locked.lock"
  flock -x 9
  jrun run rb.yml --output json --state-dir "$T/state"
  exec 9>&-
  assert_stream 2 usage_error
  assert_equal "$(wc -l <"$T/out.jsonl")" 1
  grep -q "lock" "$T/err.txt"
  assert_not_exist one.done
}

@test "exit 3: an undo that fails leaves the rollback incomplete: rollback_failed" {
  cat >rb.yml <<'EOF'
zdm: 1
name: stuck
steps:
  - id: make
    uses: exec
    with: {command: [touch, made]}
    undo: {uses: exec, with: {command: ["false"]}}
  - id: broken
    uses: exec
    with: {command: ["false"]}
EOF
  jrun run rb.yml --output json --state-dir "$T/state"
  assert_stream 3 rollback_failed
  assert_equal "$(jq -r 'select(.event=="undo.failed") | .step' "$T/out.jsonl")" make
  assert_file_exist made
}

@test "exit 4: on_failure: pause stops the run resumable; the exit event says paused" {
  cat >rb.yml <<'EOF'
zdm: 1
name: pauses
on_failure: pause
steps:
  - id: broken
    uses: exec
    with: {command: ["false"]}
EOF
  jrun run rb.yml --output json --state-dir "$T/state"
  assert_stream 4 paused
  assert_equal "$(jq -r 'select(.event=="run.paused") | .step' "$T/out.jsonl")" broken
  assert_equal "$(jq -s '[.[] | select(.event=="run.finished")] | length' "$T/out.jsonl")" 0
}

@test "exit 5: a non-idempotent step in doubt after a crash: resume streams exit in_doubt" {
  cat >rb.yml <<'EOF'
zdm: 1
name: doubt
steps:
  - id: once
    uses: exec
    with: {command: [touch, once.done]}
EOF
  # crash right after record 2 (step.started of 'once') is on disk
  run env ZDM_TEST_CRASH_AFTER_RECORD=2 "$ZDM_BIN" run rb.yml --state-dir "$T/state"
  assert_equal "$status" 137
  jrun resume rb.yml --output json --state-dir "$T/state"
  assert_stream 5 in_doubt
  assert_equal "$(tail -n 1 "$T/out.jsonl" | jq -r .command)" resume
  # the explanation is for people: on stderr, not in the stream
  grep -q "in doubt" "$T/err.txt"
}

@test "exit 0 from zdm rollback: the exit event is rolled_back, every event in the schema" {
  cat >rb.yml <<'EOF'
zdm: 1
name: back
steps:
  - id: make
    uses: exec
    with: {command: [touch, made]}
    undo: {uses: exec, with: {command: [rm, -f, made]}}
EOF
  jrun run rb.yml --output json --state-dir "$T/state"
  assert_stream 0 succeeded
  jrun rollback rb.yml --output json --state-dir "$T/state"
  assert_stream 0 rolled_back
  assert_equal "$(jq -r 'select(.event=="run.resumed") | .data.command' "$T/out.jsonl")" rollback
  assert_not_exist made
}

@test "secrets never reach the stream, the annotations or stderr" {
  cat >rb.yml <<'EOF'
zdm: 1
name: secret
secrets:
  token: {env: CI_TEST_TOKEN}
steps:
  - id: leak
    uses: exec
    with: {command: [sh, -c, "echo ${{ secrets.token }}; echo ${{ secrets.token }} >&2; exit 1"]}
EOF
  export CI_TEST_TOKEN=s3cr3t-t0ken-value GITHUB_ACTIONS=true
  jrun run rb.yml --output json --state-dir "$T/state"
  assert_stream 1 rolled_back
  refute grep -q s3cr3t-t0ken-value "$T/out.jsonl" "$T/err.txt" "$(journal_of "$T/state")"
  grep -q '\*\*\*' "$T/out.jsonl"
  grep -q '^::error ' "$T/err.txt"
}

@test "GitHub annotations: a failed step is ::error at its file:line:col, escaped; rollback is ::warning" {
  plugin_file "$T/pl" ci.fail <<'EOF'
return {
	description = "fails with a message of two lines",
	params = {},
	read_only = true,
	run = function(ctx, p) return nil, "100% down,\r\nsecond: line" end,
}
EOF
  cat >rb.yml <<'EOF'
zdm: 1
name: gh
steps:
  - id: make
    uses: exec
    with: {command: [touch, made]}
    undo: {uses: exec, with: {command: [rm, -f, made]}}
  - id: broken
    uses: ci.fail
EOF
  run env GITHUB_ACTIONS=true "$ZDM_BIN" run rb.yml --plugin-path "$T/pl" --state-dir "$T/state"
  assert_equal "$status" 1
  # the step's position; property values escape ':' and ','; the message '%', CR and LF
  assert_line '::error file=rb.yml,line=8,col=5,title=zdm%3A step failed::100%25 down,%0D%0Asecond: line'
  assert_line '::warning file=rb.yml,line=8,col=5,title=zdm%3A rolled back::every completed step with an undo was undone; the system is back where it started'
  assert_not_exist made
  # without GITHUB_ACTIONS, no workflow commands
  run "$ZDM_BIN" run rb.yml --plugin-path "$T/pl" --state-dir "$T/state2"
  assert_equal "$status" 1
  refute_line --regexp '^::'
}

@test "GitHub annotations: a --fail-at drill's forced failure is a ::notice naming the drill, not a failed step" {
  runbook <<'EOF'
zdm: 1
name: ann-drill
steps:
  - id: make
    uses: exec
    with: {command: [touch, made]}
    undo: {uses: exec, with: {command: [rm, -f, made]}}
EOF
  run env GITHUB_ACTIONS=true "$ZDM_BIN" run rb.yml --fail-at make --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line --regexp '^::notice file=rb\.yml,line=4,col=5,title=zdm%3A drill%3A forced failure after this step \(it succeeded\)::drill: forced failure after step .make. \(--fail-at\)$'
  refute_line --regexp '^::error .*title=zdm%3A step failed'
  assert_line "rolled back at the failure forced after step 'make' (--fail-at; 'make' itself succeeded); every completed step with an undo was undone."
  assert_not_exist made
}

@test "GitHub annotations: a step that fails in a dry run (a plan job) is ::error at its line" {
  cat >rb.yml <<'EOF'
zdm: 1
name: gh-dry
steps:
  - id: check
    uses: exec
    with: {command: ["true"]}
  - id: probe
    uses: health_gate
    with: {url: "http://127.0.0.1:1/", healthy_threshold: 1}
    timeout: 20ms
EOF
  run env GITHUB_ACTIONS=true "$ZDM_BIN" run rb.yml --dry-run --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line --regexp '^::error file=rb\.yml,line=7,col=5,title=zdm%3A dry run%3A step failed::timed out'
}

@test "GitHub annotations: validation errors are ::error at each FILE:LINE:COL; exit 2" {
  cat >rb.yml <<'EOF'
zdm: 1
name: gh-bad
steps:
  - id: one
    uses: wait
    with: {duration: soon}
EOF
  run env GITHUB_ACTIONS=true "$ZDM_BIN" run rb.yml --state-dir "$T/state"
  assert_equal "$status" 2
  assert_line --regexp '^::error file=rb\.yml,line=6,col=[0-9]+,title=zdm%3A invalid runbook::.*duration'
  assert_not_exist "$T/state"
}

@test "--output json keeps stdout pure JSON even with GitHub annotations and a pause" {
  cat >rb.yml <<'EOF'
zdm: 1
name: pure
steps:
  - id: ok
    uses: approval
    with: {message: "go?"}
EOF
  export GITHUB_ACTIONS=true
  jrun run rb.yml --output json --state-dir "$T/state"
  assert_stream 4 paused
  jq -e . "$T/out.jsonl" >/dev/null
  grep -q '^::warning file=rb.yml,line=4,col=5,title=zdm%3A approval needed::waiting for approval' "$T/err.txt"
}

@test "bad CI flags are usage errors (exit 2): --output, --junit empty, --approve of a non-approval step" {
  cat >rb.yml <<'EOF'
zdm: 1
name: flags
steps:
  - id: one
    uses: exec
    with: {command: [touch, one.done]}
EOF
  run zdm run rb.yml --output yaml --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "--output 'yaml': use text or json"
  run zdm run rb.yml --approve a --approve b --output yaml --state-dir "$T/state"
  assert_equal "$status" 2
  run zdm resume --approve a --state-dir "$T/state" extra args
  assert_equal "$status" 2
  assert_output --partial "usage: zdm resume"
  run zdm run rb.yml --junit "" --state-dir "$T/state"
  assert_equal "$status" 2
  run zdm run rb.yml --approve one --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "--approve 'one': step is not an approval"
  run zdm run rb.yml --approve nope --output json --state-dir "$T/state"
  assert_equal "$status" 2
  assert_line --partial '"event":"exit","exit_code":2'
  assert_not_exist one.done
  assert_not_exist "$T/state"
}

@test "the schema check itself rejects events that break the documented schema" {
  cat >bad.jsonl <<'EOF2'
{"event":"exit","ts":"2026-11-21T10:00:00.000Z","exit_code":0,"status":"succeeded","command":"run"}
{"v":1,"event":"exit","ts":"2026-11-21T10:00:00.000Z","exit_code":"0","status":"succeeded","command":"run"}
{"v":1,"event":"step.failed","ts":"2026-11-21T10:00:00.000Z","seq":2,"run":"r","data":{"will_retry":false},"prev":"0000000000000000000000000000000000000000000000000000000000000000","hash":"0000000000000000000000000000000000000000000000000000000000000000","step":"x"}
{"v":1,"event":"run.finished","ts":"2026-11-21T10:00:00.000Z","seq":2,"run":"r","data":{"status":"done","exit_code":0,"duration_ms":1},"prev":"0000000000000000000000000000000000000000000000000000000000000000","hash":"0000000000000000000000000000000000000000000000000000000000000000"}
{"v":1,"event":"step.finished","ts":"2026-11-21T10:00:00.000Z","seq":2,"run":"r","data":{},"prev":"0000000000000000000000000000000000000000000000000000000000000000","hash":"0000000000000000000000000000000000000000000000000000000000000000","step":"x"}
EOF2
  run jq -r -f "$SCHEMA" bad.jsonl
  assert_success
  assert_equal "${#lines[@]}" 5
  assert_line --index 0 --partial "v: missing"
  assert_line --index 1 --partial "exit_code"
  assert_line --index 2 --partial "error: missing"
  assert_line --index 3 --partial "status"
  assert_line --index 4 --partial "unknown event step.finished"
}
