#!/usr/bin/env bats
# The command line: help, usage errors and their exit codes, plan, dry run,
# vars, and the runner's behaviour as a user sees it (if:, retries, timeouts,
# expect_exit, outputs, on_failure), then status and log.

bats_require_minimum_version 1.5.0
load helper

COMMANDS="validate plan run resume rollback status log audit approve plugins schema version help"

# the JSON records of the newest journal in $T/state, as "event step attempt"
attempts() {
  jq -r '[.event, (.step // ""), (.attempt // "" | tostring)] | join(" ") | rtrimstr(" ") | rtrimstr(" ")' \
    "$(journal_of "$T/state")"
}

# true while process PID runs (a zombie, dead but not reaped by an
# orphan's parent, counts as gone)
alive() {
  local st
  st="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# ---- help, usage, version -------------------------------------------------

@test "cli: zdm --help, -h and zdm help list every command (exit 0)" {
  local form c
  for form in --help -h help; do
    run --separate-stderr zdm $form
    assert_equal "$status" 0
    assert_line --index 0 --regexp '^zdm [0-9]+\.[0-9]+\.[0-9]+ — '
    for c in $COMMANDS; do
      assert_line --regexp "^  zdm $c( |$)"
    done
    assert_equal "$stderr" ""
  done
}

@test "cli: every command's --help, -h and zdm help COMMAND print its usage (exit 0)" {
  local c
  for c in $COMMANDS; do
    run --separate-stderr zdm "$c" --help
    assert_equal "$status" 0
    assert_line --index 0 --regexp "^usage: zdm $c( |$)"
    assert_equal "$stderr" ""
    local want="$output"
    run zdm "$c" -h
    assert_equal "$status" 0
    assert_equal "$output" "$want"
    run zdm help "$c"
    assert_equal "$status" 0
    assert_equal "$output" "$want"
  done
  # --help wins over missing arguments and bad ones
  run zdm run --help --bogus
  assert_equal "$status" 0
}

@test "cli: zdm without a command prints the usage on stderr, exit 2" {
  run --separate-stderr zdm
  assert_equal "$status" 2
  assert_output ""
  [[ "$stderr" == *"usage:"*"zdm run RUNBOOK"* ]]
}

@test "cli: an unknown command exits 2 with a did-you-mean" {
  run --separate-stderr zdm rn
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm: unknown command 'rn' (did you mean 'run'?) (zdm --help lists them)"
  run --separate-stderr zdm stauts
  assert_equal "$status" 2
  [[ "$stderr" == *"did you mean 'status'?"* ]]
  run --separate-stderr zdm frobnicate
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm: unknown command 'frobnicate' (zdm --help lists them)"
  run zdm help rn
  assert_equal "$status" 2
  assert_output --partial "unknown command 'rn'"
}

@test "cli: an unknown option exits 2 naming the option, before or after the runbook" {
  printf 'zdm: 1\nname: x\nsteps:\n  - {id: a, uses: exec, with: {command: [touch, ran]}}\n' >rb.yml
  run --separate-stderr zdm run --bogus rb.yml
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm run: unknown or ambiguous option '--bogus' (zdm run --help)"
  run --separate-stderr zdm run rb.yml --bogus
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm run: unknown or ambiguous option '--bogus' (zdm run --help)"
  run --separate-stderr zdm run rb.yml -x
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm run: unknown or ambiguous option '-x' (zdm run --help)"
  run --separate-stderr zdm run rb.yml --var
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm run: missing value for '--var' (zdm run --help)"
  run zdm run rb.yml --output yaml
  assert_equal "$status" 2
  assert_output "zdm run: --output 'yaml': use text or json"
  assert_not_exist ran
  assert_not_exist .zdm
}

@test "cli: an option the command does not take exits 2 naming the option" {
  printf 'zdm: 1\nname: x\nsteps:\n  - {id: a, uses: exec, with: {command: [touch, ran]}}\n' >rb.yml
  run --separate-stderr zdm validate --dry-run rb.yml
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm validate: option '--dry-run' does not apply here (zdm validate --help)"
  run --separate-stderr zdm log rb.yml --dry-run
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm log: option '--dry-run' does not apply here (zdm log --help)"
  assert_not_exist ran
}

@test "cli: an option with a value that the command does not take is named, not its value" {
  printf 'zdm: 1\nname: x\nsteps:\n  - {id: a, uses: exec, with: {command: [touch, ran]}}\n' >rb.yml
  run --separate-stderr zdm run rb.yml --in-doubt retry
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm run: option '--in-doubt' does not apply here (zdm run --help)"
  run --separate-stderr zdm validate --state-dir somewhere rb.yml
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm validate: option '--state-dir' does not apply here (zdm validate --help)"
  assert_not_exist ran
}

@test "cli: an ambiguous abbreviation says it is ambiguous, not unknown" {
  printf 'zdm: 1\nname: x\nsteps:\n  - {id: a, uses: exec, with: {command: [touch, ran]}}\n' >rb.yml
  # unique prefixes work
  run zdm run rb.yml --dry --state-dir "$T/state"
  assert_equal "$status" 0
  assert_not_exist ran
  # --va is --var or --vars-file
  run --separate-stderr zdm run rb.yml --va x=1
  assert_equal "$status" 2
  [[ "$stderr" == *"'--va'"* ]]
  [[ "$stderr" == *"ambiguous"* ]]
}

@test "cli: wrong number of arguments exits 2 with the command's usage" {
  run --separate-stderr zdm run
  assert_equal "$status" 2
  [[ "$stderr" == "usage: zdm run RUNBOOK [--var k=v]"* ]]
  run --separate-stderr zdm validate a.yml b.yml
  assert_equal "$status" 2
  assert_equal "$stderr" "usage: zdm validate RUNBOOK [--var k=v] [--vars-file F]"
  run --separate-stderr zdm version extra
  assert_equal "$status" 2
}

@test "cli: zdm version and --version" {
  run --separate-stderr zdm version
  assert_equal "$status" 0
  assert_output --regexp '^zdm [0-9]+\.[0-9]+\.[0-9]+ \(jansson [0-9.]+, Lua 5\.4\)$'
  local v="$output"
  run zdm --version
  assert_equal "$status" 0
  assert_equal "$output" "$v"
}

@test "cli: a missing runbook file exits 2 naming the path" {
  run --separate-stderr zdm run "$T/no/such.yml"
  assert_equal "$status" 2
  [[ "$stderr" == "$T/no/such.yml:"*"cannot read runbook: No such file or directory"* ]]
  [[ "$stderr" == *"nothing ran" ]]
  run zdm validate missing.yml
  assert_equal "$status" 2
  assert_output --partial "missing.yml"
  run zdm plan missing.yml
  assert_equal "$status" 2
  assert_output --partial "missing.yml"
  assert_not_exist "$T/no"
  assert_not_exist "$T/.zdm"
}

# ---- plan and dry run -------------------------------------------------------

write_plan_runbook() {
  runbook <<EOF
zdm: 1
name: planned
on_failure: rollback
steps:
  - id: create
    name: Create the marker
    uses: exec
    with: {command: [touch, "$T/created"]}
    undo: {uses: exec, with: {command: [rm, -f, "$T/created"]}}
  - id: soak
    uses: wait
    with: {duration: 100ms}
  - id: note
    uses: exec
    with: {shell: 'echo noted > "$T/noted"'}
  - id: gated
    if: \${{ vars.go }}
    uses: exec
    with: {command: [touch, "$T/gated"]}
vars: {go: false}
EOF
}

@test "cli: zdm plan prints each step's plan and undo, runs nothing, writes no state" {
  write_plan_runbook
  run --separate-stderr zdm plan rb.yml
  assert_equal "$status" 0
  assert_equal "$stderr" ""
  assert_output - <<EOF
plan for planned (4 steps), on failure: roll back in reverse order
 1. create — Create the marker (exec)
      do:   run touch $T/created
      undo: run rm -f $T/created
 2. soak (wait, read-only)
      do:   wait 100ms
 3. note (exec)
      do:   run sh -c 'echo noted > "$T/noted"'
      undo: none: a rollback leaves this change in place
 4. gated (exec)  if: \${{ vars.go }}
      skipped: if: is false
1 step that changes things has no undo: note (a rollback leaves its change in place)
EOF
  assert_not_exist "$T/created"
  assert_not_exist "$T/noted"
  assert_not_exist "$T/.zdm"
  # also with an explicit state dir (accepted, unused)
  run zdm plan rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_not_exist "$T/state"
}

@test "cli: zdm run --dry-run plans the changing steps, runs read-only ones, journals dry_run, takes no lock" {
  write_plan_runbook
  run --separate-stderr zdm run rb.yml --dry-run --state-dir "$T/state"
  assert_equal "$status" 0
  assert_line --regexp '^\[1/4\] planned +create — Create the marker$'
  assert_line "        run touch $T/created"
  assert_line --regexp '^\[2/4\] ok +soak +[0-9]+ms$'
  assert_line --regexp '^\[3/4\] planned +note$'
  assert_line --regexp '^\[4/4\] skipped +gated$'
  assert_line 'dry run ok: read-only steps passed; nothing was changed.'
  assert_not_exist "$T/created"
  assert_not_exist "$T/noted"
  assert_not_exist "$T/gated"
  local j; j="$(journal_of "$T/state")"
  run jq -r 'select(.seq==1) | .data.dry_run' "$j"
  assert_output true
  run attempts
  assert_output - <<'EOF'
run.started
step.skipped create
step.started soak 1
step.succeeded soak 1
step.skipped note
step.skipped gated
run.finished
EOF
  run jq -r 'select(.event=="step.skipped" and .step=="create") | .data.plan' "$j"
  assert_output "run touch $T/created"
  # the wait really waited
  run jq -r 'select(.event=="step.succeeded") | .data.duration_ms >= 100' "$j"
  assert_output true
  assert_not_exist "$T/state/locks"
}

@test "cli: a dry run cannot be resumed or rolled back (exit 2, and says which)" {
  write_plan_runbook
  run zdm run rb.yml --dry-run --state-dir "$T/state"
  assert_equal "$status" 0
  local j; j="$(journal_of "$T/state")"
  local size; size="$(stat -c %s "$j")"
  run zdm resume "$j"
  assert_equal "$status" 2
  run zdm rollback "$j"
  assert_equal "$status" 2
  assert_output --partial 'was a dry run; there is nothing to roll back'
  assert_equal "$(stat -c %s "$j")" "$size"
  assert_not_exist "$T/created"
}

@test "cli: a failing read-only step ends a dry run with exit 1 and nothing undone" {
  runbook <<EOF
zdm: 1
name: dryfail
steps:
  - id: create
    uses: exec
    with: {command: [touch, "$T/created"]}
    undo: {uses: exec, with: {command: [touch, "$T/undone"]}}
  - id: soak
    uses: health_gate
    timeout: 10s
    with: {url: "http://127.0.0.1:1/", interval: 50ms, unhealthy_threshold: 1}
EOF
  run zdm run rb.yml --dry-run --state-dir "$T/state"
  assert_equal "$status" 1
  assert_not_exist "$T/created"
  assert_not_exist "$T/undone"
  run jq -r 'select(.event=="run.finished") | .data.status' "$(journal_of "$T/state")"
  assert_output failed
}

# ---- vars ------------------------------------------------------------------

write_vars_runbook() {
  runbook <<EOF
zdm: 1
name: vars
vars:
  count: 3
  label: hi
  flag: false
steps:
  - id: show
    uses: exec
    with: {shell: 'echo "\${{ vars.label }}-\${{ vars.count + 1 }}-\${{ vars.flag }}" > "$T/shown"'}
EOF
}

@test "cli: --var overrides a var, typed like the runbook's value" {
  write_vars_runbook
  run zdm run rb.yml --var count=41 --var label=yo --var flag=true --state-dir "$T/state"
  assert_equal "$status" 0
  assert_equal "$(cat "$T/shown")" "yo-42-true"
  # later wins; --var=value form; the journal records the resolved vars
  run zdm run rb.yml --var=count=1 --var count=9 --state-dir "$T/state"
  assert_equal "$status" 0
  assert_equal "$(cat "$T/shown")" "hi-10-false"
  run jq -c 'select(.seq==1) | .data.vars' "$(journal_of "$T/state")"
  assert_output '{"count":9,"flag":false,"label":"hi"}'
}

@test "cli: --var with the wrong type exits 2 at RUNBOOK:1:1 and runs nothing" {
  write_vars_runbook
  run --separate-stderr zdm run rb.yml --var count=abc --state-dir "$T/state"
  assert_equal "$status" 2
  assert_equal "$stderr" "rb.yml:1:1: --var 'count': 'abc' is not a whole number like the runbook's value
zdm: 1 error; nothing ran"
  run zdm run rb.yml --var flag=maybe --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "--var 'flag': 'maybe' is not true or false"
  run zdm run rb.yml --var count --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "expected key=value"
  assert_not_exist "$T/shown"
  assert_not_exist "$T/state"
}

@test "cli: an unknown --var exits 2 with a did-you-mean" {
  write_vars_runbook
  run --separate-stderr zdm run rb.yml --var cuont=4 --state-dir "$T/state"
  assert_equal "$status" 2
  assert_equal "$stderr" "rb.yml:1:1: --var 'cuont': no such var in the runbook (did you mean 'count'?)
zdm: 1 error; nothing ran"
  run zdm validate rb.yml --var lable=x
  assert_equal "$status" 2
  assert_output --partial "did you mean 'label'?"
  assert_not_exist "$T/shown"
}

@test "cli: --vars-file overrides vars; --var wins over it; an undeclared name is an error" {
  write_vars_runbook
  printf 'count: 7\nlabel: file\n' >"$T/vars.yml"
  run zdm run rb.yml --vars-file vars.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_equal "$(cat "$T/shown")" "file-8-false"
  run zdm run rb.yml --vars-file vars.yml --var count=1 --state-dir "$T/state"
  assert_equal "$status" 0
  assert_equal "$(cat "$T/shown")" "file-2-false"
  rm "$T/shown"
  printf 'nope: 7\n' >"$T/bad.yml"
  run zdm run rb.yml --vars-file bad.yml --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "no var 'nope'"
  run zdm run rb.yml --vars-file missing.yml --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "missing.yml"
  assert_not_exist "$T/shown"
}

# ---- the runner, as seen from the command line ----------------------------

@test "cli: a false if: journals step.skipped and does not run the step" {
  runbook <<EOF
zdm: 1
name: cond
vars: {env: staging}
steps:
  - id: prod-only
    if: \${{ vars.env == "prod" }}
    uses: exec
    with: {command: [touch, "$T/prod"]}
  - id: always
    uses: exec
    with: {command: [touch, "$T/always"]}
EOF
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_line --regexp '^\[1/2\] skipped +prod-only$'
  assert_not_exist "$T/prod"
  assert_exist "$T/always"
  run jq -c 'select(.event=="step.skipped") | [.step, .data.reason, .data.if]' "$(journal_of "$T/state")"
  assert_output '["prod-only","if: condition is false","${{ vars.env == \"prod\" }}"]'
  run zdm run rb.yml --var env=prod --state-dir "$T/state"
  assert_equal "$status" 0
  assert_exist "$T/prod"
}

@test "cli: retries with backoff: fails twice, succeeds on attempt 3, delays double" {
  runbook <<EOF
zdm: 1
name: flaky
steps:
  - id: flaky
    uses: exec
    retries: 2
    retry_delay: 100ms
    with:
      shell: 'n=\$(cat "$T/count" 2>/dev/null || echo 0); n=\$((n+1)); echo \$n > "$T/count"; [ \$n -ge 3 ] || { echo "not yet \$n" >&2; exit 1; }'
EOF
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_equal "$(cat "$T/count")" 3
  assert_line '        attempt 1 of 3 failed; next in 100ms'
  assert_line '        attempt 2 of 3 failed; next in 200ms'
  run attempts
  assert_output - <<'EOF'
run.started
step.started flaky 1
step.failed flaky 1
step.started flaky 2
step.failed flaky 2
step.started flaky 3
step.succeeded flaky 3
run.finished
EOF
  local j; j="$(journal_of "$T/state")"
  run jq -c 'select(.event=="step.failed") | [.data.error, .data.will_retry]' "$j"
  assert_output $'["exited with 1: not yet 1",true]\n["exited with 1: not yet 2",true]'
  # the delays were really waited: 100ms + 200ms between the first start and the last
  run python3 -c '
import json, sys, datetime
ts = [json.loads(l)["ts"] for l in open(sys.argv[1]) if json.loads(l)["event"] == "step.started"]
t = [datetime.datetime.strptime(x, "%Y-%m-%dT%H:%M:%S.%fZ") for x in ts]
print(int((t[2] - t[0]).total_seconds() * 1000) >= 300)' "$j"
  assert_output True
}

@test "cli: backoff: fixed keeps the retry delay constant; the last failure ends the run" {
  runbook <<'EOF'
zdm: 1
name: fixed
steps:
  - id: never
    uses: exec
    retries: 2
    retry_delay: 50ms
    backoff: fixed
    with: {command: ["false"]}
EOF
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line '        attempt 1 of 3 failed; next in 50ms'
  assert_line '        attempt 2 of 3 failed; next in 50ms'
  run jq -c 'select(.event=="step.failed") | [.attempt, .data.will_retry]' "$(journal_of "$T/state")"
  assert_output $'[1,true]\n[2,true]\n[3,false]'
}

@test "cli: a per-attempt timeout kills the step's whole process group; the run rolls back (exit 1)" {
  cp "$(command -v sleep)" "$T/zdm-sleeper"
  runbook <<EOF
zdm: 1
name: slow
steps:
  - id: first
    uses: exec
    with: {command: [touch, "$T/first"]}
    undo: {uses: exec, with: {command: [rm, -f, "$T/first"]}}
  - id: slow
    uses: exec
    timeout: 300ms
    with:
      shell: '"$T/zdm-sleeper" 30 & echo \$! > "$T/bg.pid"; "$T/zdm-sleeper" 31; echo finished > "$T/finished"'
      kill_grace: 200ms
EOF
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line --regexp '^\[2/2\] failed +slow'
  assert_line --regexp '^        timed out after [0-9.]+m?s; the command.s process group was stopped \(SIGTERM, then SIGKILL\)$'
  # the background child had started, and nothing of the step is left
  [ -s "$T/bg.pid" ]
  run alive "$(cat "$T/bg.pid")"
  assert_equal "$status" 1
  run pgrep -f "$T/zdm-sleeper"
  assert_equal "$status" 1
  assert_not_exist "$T/finished"
  # rolled back: the first step was undone
  assert_not_exist "$T/first"
  run jq -c 'select(.event=="step.failed") | [.step, .data.timed_out]' "$(journal_of "$T/state")"
  assert_output '["slow",true]'
}

@test "cli: a step that ignores SIGTERM is killed after kill_grace" {
  runbook <<EOF
zdm: 1
name: stubborn
steps:
  - id: stubborn
    uses: exec
    timeout: 200ms
    with:
      shell: 'trap "" TERM; echo \$\$ > "$T/sh.pid"; while :; do sleep 0.05; done'
      kill_grace: 200ms
EOF
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  run alive "$(cat "$T/sh.pid")"
  assert_equal "$status" 1
}

@test "cli: expect_exit [0, 3] accepts exit 3 and rejects exit 4" {
  runbook <<'EOF'
zdm: 1
name: codes
vars: {code: 3}
steps:
  - id: three
    uses: exec
    with: {command: [sh, -c, 'exit ${{ vars.code }}'], expect_exit: [0, 3]}
EOF
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  run jq -r 'select(.event=="step.succeeded") | .data.outputs.exit_code' "$(journal_of "$T/state")"
  assert_output 3
  run zdm run rb.yml --var code=4 --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line '        exited with 4'
}

@test "cli: a step's stdout is an output that a later step uses" {
  runbook <<EOF
zdm: 1
name: outputs
steps:
  - id: produce
    uses: exec
    with: {shell: 'echo "  v4.2"; echo warn >&2'}
  - id: consume
    uses: exec
    with: {command: [sh, -c, 'printf "%s|%s|%s" "\$1" "\$2" "\$3" > "$T/consumed"', x, "\${{ steps.produce.outputs.stdout }}", "\${{ steps.produce.outputs.stderr }}", "\${{ steps.produce.outputs.exit_code }}"]}
EOF
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  # one trailing newline removed, nothing else
  assert_equal "$(cat "$T/consumed")" "  v4.2|warn|0"
}

@test "cli: output_limit truncates stdout and sets stdout_truncated" {
  runbook <<'EOF'
zdm: 1
name: limit
steps:
  - id: big
    uses: exec
    with: {shell: 'head -c 100000 /dev/zero | tr "\0" a; echo; echo short >&2', output_limit: 10}
EOF
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  run jq -c 'select(.event=="step.succeeded") | .data.outputs | [.stdout, .stdout_truncated, .stderr, .stderr_truncated]' \
    "$(journal_of "$T/state")"
  assert_output '["aaaaaaaaaa",true,"short",null]'
}

@test "cli: on_failure rollback undoes the completed steps newest first (exit 1)" {
  runbook <<EOF
zdm: 1
name: rollback-order
steps:
  - id: a
    uses: exec
    with: {shell: 'echo do-a >> "$T/trail"'}
    undo: {uses: exec, with: {shell: 'echo undo-a >> "$T/trail"'}}
  - id: b
    uses: exec
    with: {shell: 'echo do-b >> "$T/trail"'}
    undo: {uses: exec, with: {shell: 'echo undo-b >> "$T/trail"'}}
  - id: c
    uses: exec
    with: {command: ["false"]}
    undo: {uses: exec, with: {shell: 'echo undo-c >> "$T/trail"'}}
EOF
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line --partial "rolled back: step 'c' failed (exited with 1)"
  assert_equal "$(cat "$T/trail")" "do-a
do-b
undo-b
undo-a"
  run jq -r 'select(.event=="run.finished") | .data.status' "$(journal_of "$T/state")"
  assert_output rolled_back
}

@test "cli: --fail-at drills a rollback; an unknown step exits 2 with a did-you-mean" {
  runbook <<EOF
zdm: 1
name: drill
steps:
  - id: make
    uses: exec
    with: {command: [touch, "$T/made"]}
    undo: {uses: exec, with: {command: [rm, "$T/made"]}}
  - id: later
    uses: exec
    with: {command: [touch, "$T/later"]}
EOF
  run zdm run rb.yml --fail-at mkae --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output "zdm run: --fail-at 'mkae': no such step in rb.yml (did you mean 'make'?)"
  assert_not_exist "$T/state"
  run zdm run rb.yml --fail-at make --state-dir "$T/state"
  assert_equal "$status" 1
  assert_not_exist "$T/made"
  assert_not_exist "$T/later"
  run attempts
  assert_output - <<'EOF'
run.started
step.started make 1
step.succeeded make 1
drill.failure make
rollback.started make
undo.started make 1
undo.succeeded make 1
run.finished
EOF
}

@test "cli: on_failure: abort exits 3 with nothing undone" {
  runbook <<EOF
zdm: 1
name: aborting
on_failure: abort
steps:
  - id: make
    uses: exec
    with: {command: [touch, "$T/made"]}
    undo: {uses: exec, with: {command: [rm, -f, "$T/made"]}}
  - id: boom
    uses: exec
    with: {command: [sh, -c, 'echo broken >&2; exit 2']}
EOF
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 3
  assert_line --partial "aborted after step 'boom' failed (on_failure: abort): nothing was undone."
  assert_exist "$T/made"
  run attempts
  assert_output - <<'EOF'
run.started
step.started make 1
step.succeeded make 1
step.started boom 1
step.failed boom 1
run.finished
EOF
  run jq -c 'select(.event=="run.finished") | [.data.status, .data.failed_step, .data.error]' "$(journal_of "$T/state")"
  assert_output '["aborted","boom","exited with 2: broken"]'
  run zdm status rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_line --regexp '^state +aborted$'
}

@test "cli: on_failure: pause exits 4; zdm resume after the fix finishes the run (exit 0)" {
  runbook <<EOF
zdm: 1
name: pausing
on_failure: pause
steps:
  - id: make
    uses: exec
    with: {shell: 'echo run >> "$T/make.count"; echo v7'}
  - id: needs-gate
    uses: exec
    with: {command: [sh, -c, 'test -e "$T/gate" && echo "\$1" > "$T/passed"', x, "\${{ steps.make.outputs.stdout }}"]}
EOF
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 4
  assert_line --partial "paused after step 'needs-gate' failed (on_failure: pause)."
  run zdm status rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_line --regexp '^state +paused$'
  assert_line --regexp '^  needs-gate +step.failed$'

  touch "$T/gate"
  run zdm resume rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  # the succeeded step was not run again; its recorded output was used
  assert_equal "$(cat "$T/make.count")" run
  assert_equal "$(cat "$T/passed")" v7
  run attempts
  assert_output - <<'EOF'
run.started
step.started make 1
step.succeeded make 1
step.started needs-gate 1
step.failed needs-gate 1
run.paused needs-gate
run.resumed
step.started needs-gate 2
step.succeeded needs-gate 2
run.finished
EOF
  # a finished run cannot be resumed again
  run zdm resume rb.yml --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial 'already finished (succeeded)'
}

@test "cli: zdm status and zdm log of runs, by runbook, run id, journal path and newest" {
  runbook <<EOF
zdm: 1
name: shown
steps:
  - id: first
    name: The first step
    uses: exec
    with: {command: [echo, one]}
  - id: second
    uses: exec
    with: {command: [sh, -c, 'echo nope >&2; exit 1']}
EOF
  # 'first' (exec, no undo) is left in place by the rollback: exit 6
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 6
  local j; j="$(journal_of "$T/state")"
  local id; id="$(basename "$j" .jsonl)"
  [[ "$id" =~ ^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{4}$ ]]

  run zdm status "$id" --state-dir "$T/state"
  assert_equal "$status" 0
  assert_output - <<EOF
run      $id
runbook  shown ($T/rb.yml)
state    rolled_back
journal  $j (8 records)
  first                    undo.skipped (left in place)
  second                   step.failed
rolled back; 1 step that changed things has no undo: first
EOF
  local by_id="$output"
  run zdm status rb.yml --state-dir "$T/state"
  assert_equal "$output" "$by_id"
  run zdm status "$j"
  assert_equal "$output" "$by_id"
  ZDM_STATE_DIR="$T/state" run zdm status
  assert_equal "$output" "$by_id"

  run zdm log "$id" --state-dir "$T/state"
  assert_equal "$status" 0
  assert_line --index 0 "run $id of 'shown'"
  assert_line --regexp "^  runbook $T/rb.yml \(sha256 [0-9a-f]{12}\)$"
  assert_line --regexp '^[0-9:.]+Z +step.failed +second \(attempt 1\) +[0-9]+ms +error: exited with 1: nope$'
  assert_line 'state: rolled_back'
  run zdm log "$id" --json --state-dir "$T/state"
  assert_equal "$status" 0
  assert_equal "$output" "$(cat "$j")"

  # unknown runs
  run zdm status nosuchrun --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "no run 'nosuchrun'"
  run zdm log --state-dir "$T/empty"
  assert_equal "$status" 2
  assert_output --partial "no runs in $T/empty"
}

# ---- signals -----------------------------------------------------------------

write_signal_runbook() {
  cp "$(command -v sleep)" "$T/sig-sleeper"
  runbook <<EOF
zdm: 1
name: signalled
steps:
  - id: first
    uses: exec
    with: {command: [touch, "$T/first"]}
  - id: long
    uses: exec
    with:
      # a second attempt ends at once, so a wrong rerun cannot stall the test
      shell: '[ -e "$T/attempted" ] && exit 0; touch "$T/attempted"; echo \$\$ > "$T/long.pid"; exec "$T/sig-sleeper" 30'
      kill_grace: 200ms
EOF
}

# run zdm in the background, wait for the long step, send SIGTERM
run_and_terminate() {
  "$ZDM_BIN" run rb.yml --state-dir "$T/state" >"$T/sig.out" 2>&1 3>&- &
  local pid=$! i
  for i in $(seq 400); do [ -s "$T/long.pid" ] && break; sleep 0.05; done
  [ -s "$T/long.pid" ]
  kill -TERM "$pid"
  SIG_RC=0
  wait "$pid" || SIG_RC=$?
}

@test "cli: SIGTERM stops the running step's process group, journals run.interrupted, exit 4" {
  write_signal_runbook
  run_and_terminate
  assert_equal "$SIG_RC" 4
  grep -F 'interrupted (SIGTERM); the journal is consistent.' "$T/sig.out"
  run alive "$(cat "$T/long.pid")"
  assert_equal "$status" 1
  run pgrep -f "$T/sig-sleeper"
  assert_equal "$status" 1
  run jq -r 'select(.event=="run.interrupted") | .data.signal' "$(journal_of "$T/state")"
  assert_output 15
  run zdm status rb.yml --state-dir "$T/state"
  assert_line --regexp '^state +interrupted$'
}

@test "cli: a non-idempotent step interrupted by SIGTERM is in doubt on resume (exit 5)" {
  # zdm(1) SIGNALS: the stopped step is journaled step.interrupted (started,
  # never succeeded or failed), so resume treats it as in doubt unless idempotent
  write_signal_runbook
  run_and_terminate
  assert_equal "$SIG_RC" 4
  run zdm resume rb.yml --state-dir "$T/state"
  assert_equal "$status" 5
  assert_output --partial "step 'long' is in doubt"
  run jq -r 'select(.step=="long") | .event' "$(journal_of "$T/state")"
  assert_output "$(printf 'step.started\nstep.interrupted')"
}

@test "cli: an idempotent step interrupted by SIGTERM is run again by resume (exit 0)" {
  write_signal_runbook
  sed -i 's/^  - id: long$/  - id: long\n    idempotent: true/' "$T/rb.yml"
  grep -q 'idempotent: true' "$T/rb.yml"
  run_and_terminate
  assert_equal "$SIG_RC" 4
  run zdm resume rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  run jq -r 'select(.step=="long") | .event' "$(journal_of "$T/state")"
  assert_line --index -1 step.succeeded
  run jq -r 'select(.event=="run.finished") | .data.status' "$(journal_of "$T/state")"
  assert_output succeeded
}
