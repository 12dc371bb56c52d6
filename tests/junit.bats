#!/usr/bin/env bats
# --junit FILE: a JUnit XML report of the run (each step a testcase with its
# time, the failure message and the rollback's outcome), validated with
# xmllint against tests/data/junit.xsd, written atomically at the end of
# run, resume and rollback, and on pause.
# state: file and PostgreSQL (ZDM_TEST_STATE=pg, tests/helper.bash)

load helper

XSD="$BATS_TEST_DIRNAME/data/junit.xsd"

setup_file() {
  command -v xmllint >/dev/null || { echo "xmllint (libxml2-utils) is needed" >&2; return 1; }
  state_setup_file
}

valid() { # FILE
  run xmllint --noout --schema "$XSD" "$1"
  assert_equal "$status" 0
}

# xpath on the report: xp FILE EXPR
xp() {
  xmllint --xpath "$2" "$1"
}

@test "a run that succeeds: one testsuite named after the runbook, a passing testcase per step" {
  cat >rb.yml <<'EOF'
zdm: 1
name: orders-blue-green
steps:
  - id: one
    uses: exec
    with: {command: [touch, one.done]}
  - id: soak
    uses: wait
    with: {duration: 50ms}
EOF
  run zdm run rb.yml --junit report.xml --state-dir "$T/state"
  assert_equal "$status" 0
  valid report.xml
  assert_equal "$(xp report.xml 'string(/testsuites/testsuite/@name)')" orders-blue-green
  assert_equal "$(xp report.xml 'string(/testsuites/testsuite/@tests)')" 2
  assert_equal "$(xp report.xml 'string(/testsuites/testsuite/@failures)')" 0
  assert_equal "$(xp report.xml 'string(/testsuites/testsuite/@skipped)')" 0
  assert_equal "$(xp report.xml 'count(//testcase)')" 2
  assert_equal "$(xp report.xml 'string(//testcase[1]/@name)')" one
  assert_equal "$(xp report.xml 'string(//testcase[2]/@classname)')" zdm.orders-blue-green
  # the soak took at least its 50ms: time is in seconds
  run xp report.xml 'string(//testcase[@name="soak"]/@time)'
  [[ "$output" =~ ^0\.[0-9]{3}$ ]] && [ "${output#0.}" -ge 50 ]
  assert_equal "$(xp report.xml 'string(//property[@name="zdm.status"]/@value)')" succeeded
  assert_equal "$(xp report.xml 'string(//property[@name="zdm.run"]/@value)')" \
    "$(basename "$(journal_of "$T/state")" .jsonl)"
  assert_equal "$(ls -A | grep -c 'report.xml.tmp')" 0
}

@test "a failed run: <failure> with the message, the rollback's outcome per step, <skipped> for steps not run" {
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
    with: {command: [sh, -c, "echo 'disk full' >&2; exit 4"]}
    retries: 1
    retry_delay: 10ms
  - id: never
    uses: exec
    with: {command: [touch, never]}
EOF
  run zdm run rb.yml --junit report.xml --state-dir "$T/state"
  assert_equal "$status" 1
  valid report.xml
  assert_equal "$(xp report.xml 'string(/testsuites/testsuite/@failures)')" 1
  assert_equal "$(xp report.xml 'string(/testsuites/testsuite/@skipped)')" 1
  assert_equal "$(xp report.xml 'string(/testsuites/testsuite/@errors)')" 0
  assert_equal "$(xp report.xml 'string(//testcase[@name="broken"]/failure/@message)')" "exited with 4: disk full"
  assert_equal "$(xp report.xml 'count(//testcase[@name="make"]/failure)')" 0
  xp report.xml 'string(//testcase[@name="make"]/system-out)' | grep -q '^rollback: undone'
  xp report.xml 'string(//testcase[@name="broken"]/system-out)' | grep -q '^attempts: 2$'
  assert_equal "$(xp report.xml 'string(//testcase[@name="never"]/skipped/@message)')" "not run"
  assert_equal "$(xp report.xml 'string(//property[@name="zdm.status"]/@value)')" rolled_back
  assert_not_exist made
}

@test "an undo that fails is an <error> on its step; the suite says rollback_failed (exit 3)" {
  cat >rb.yml <<'EOF'
zdm: 1
name: stuck
steps:
  - id: make
    uses: exec
    with: {command: [touch, made]}
    undo: {uses: exec, with: {command: [sh, -c, "echo cannot >&2; exit 2"]}}
  - id: broken
    uses: exec
    with: {command: ["false"]}
EOF
  run zdm run rb.yml --junit report.xml --state-dir "$T/state"
  assert_equal "$status" 3
  valid report.xml
  assert_equal "$(xp report.xml 'string(//testcase[@name="make"]/error/@type)')" undo.failed
  assert_equal "$(xp report.xml 'string(//testcase[@name="make"]/error/@message)')" "exited with 2: cannot"
  assert_equal "$(xp report.xml 'string(/testsuites/testsuite/@errors)')" 1
  assert_equal "$(xp report.xml 'string(//property[@name="zdm.status"]/@value)')" rollback_failed
}

@test "XML escaping: <&>\"' and control characters in names and messages stay valid and intact" {
  plugin_file "$T/pl" ci.nasty <<'EOF'
return {
	description = "fails with a message XML must escape",
	params = {},
	read_only = true,
	run = function(ctx, p) return nil, "a<b && c>d \"q\" 'a' ]]> \1\27[31m\127 tab\tend" end,
}
EOF
  cat >rb.yml <<'EOF'
zdm: 1
name: nasty
steps:
  - id: weird
    name: "Shift <blue> & \"green\" 'now' \x01"
    uses: ci.nasty
EOF
  run zdm run rb.yml --plugin-path "$T/pl" --junit report.xml --state-dir "$T/state"
  assert_equal "$status" 1
  valid report.xml
  # the parser gives back the text: specials intact, C0 controls as U+FFFD
  assert_equal "$(xp report.xml 'string(//testcase/failure/@message)')" \
    "$(printf "a<b && c>d \"q\" 'a' ]]> \xef\xbf\xbd\xef\xbf\xbd[31m\x7f tab\tend")"
  assert_equal "$(xp report.xml 'string(//testcase/failure)')" \
    "$(printf "a<b && c>d \"q\" 'a' ]]> \xef\xbf\xbd\xef\xbf\xbd[31m\x7f tab\tend")"
  xp report.xml 'string(//testcase/system-out)' | grep -qF "name: Shift <blue> & \"green\" 'now' "
}

@test "paused for approval: the report is written on pause, then rewritten by the resume" {
  cat >rb.yml <<'EOF'
zdm: 1
name: gated
steps:
  - id: ask
    uses: approval
    with: {message: "ship it?"}
  - id: ship
    uses: exec
    with: {command: [touch, shipped]}
EOF
  unset CI
  run zdm run rb.yml --junit report.xml --state-dir "$T/state"
  assert_equal "$status" 4
  valid report.xml
  assert_equal "$(xp report.xml 'string(//property[@name="zdm.status"]/@value)')" paused
  xp report.xml 'string(//testcase[@name="ask"]/skipped/@message)' | grep -q '^waiting for approval'
  ID="$(basename "$(journal_of "$T/state")" .jsonl)"
  run env ZDM_ACTOR=ann "$ZDM_BIN" approve "$ID" ask --state-dir "$T/state"
  assert_equal "$status" 0
  run zdm resume "$ID" --junit report.xml --state-dir "$T/state"
  assert_equal "$status" 0
  valid report.xml
  assert_equal "$(xp report.xml 'string(/testsuites/testsuite/@skipped)')" 0
  assert_equal "$(xp report.xml 'string(/testsuites/testsuite/@failures)')" 0
  xp report.xml 'string(//testcase[@name="ask"]/system-out)' | grep -q '^approved by: ann$'
  assert_equal "$(xp report.xml 'string(//property[@name="zdm.status"]/@value)')" succeeded
}

@test "zdm rollback --junit reports each undone step; a dry run reports planned steps as skipped" {
  cat >rb.yml <<'EOF'
zdm: 1
name: back
steps:
  - id: make
    uses: exec
    with: {command: [touch, made]}
    undo: {uses: exec, with: {command: [rm, -f, made]}}
  - id: check
    uses: wait
    with: {duration: 1ms}
EOF
  run zdm run rb.yml --dry-run --junit dry.xml --state-dir "$T/state"
  assert_equal "$status" 0
  valid dry.xml
  xp dry.xml 'string(//testcase[@name="make"]/skipped/@message)' | grep -q '^dry run'
  assert_equal "$(xp dry.xml 'count(//testcase[@name="check"]/skipped)')" 0
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  run zdm rollback rb.yml --junit back.xml --state-dir "$T/state"
  assert_equal "$status" 0
  valid back.xml
  xp back.xml 'string(//testcase[@name="make"]/system-out)' | grep -q '^rollback: undone'
  assert_equal "$(xp back.xml 'string(//property[@name="zdm.status"]/@value)')" rolled_back
  assert_not_exist made
}

@test "secrets are redacted in the report; an unwritable --junit is reported and keeps the exit code" {
  cat >rb.yml <<'EOF'
zdm: 1
name: secret
secrets:
  token: {env: JUNIT_TOKEN}
steps:
  - id: leak
    name: "uses the token"
    uses: exec
    with: {command: [sh, -c, "echo ${{ secrets.token }} >&2; exit 1"]}
EOF
  export JUNIT_TOKEN=hunter2-very-secret
  run zdm run rb.yml --junit report.xml --state-dir "$T/state"
  assert_equal "$status" 1
  valid report.xml
  refute grep -q hunter2-very-secret report.xml
  assert_equal "$(xp report.xml 'string(//testcase/failure/@message)')" "exited with 1: ***"
  run zdm run rb.yml --junit "$T/no/such/dir/report.xml" --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "--junit $T/no/such/dir/report.xml: cannot write"
}
