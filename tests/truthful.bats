#!/usr/bin/env bats
# zdm says what happened, not what it hoped: a rollback that leaves changes
# in place says which steps (exit 6, in every report), each rollback line
# says undone, nothing to undo or left in place and the journal records
# which, validate and plan say beforehand which steps have no undo; a
# signal is named, a --fail-at pause says what resume does, and an empty
# --var or a missing --vars-file is refused naming the flag.

bats_require_minimum_version 1.5.0
load helper

SCHEMA="$BATS_TEST_DIRNAME/data/ci/events.jq"

# touch-a has no undo, touch-b has one, look is read-only, check fails
left_runbook() {
  runbook <<EOF
zdm: 1
name: truthful
steps:
  - id: touch-a
    uses: exec
    with: {command: [touch, "$T/a"]}
  - id: touch-b
    uses: exec
    with: {command: [touch, "$T/b"]}
    undo: {uses: exec, with: {command: [rm, "$T/b"]}}
  - id: look
    uses: wait
    with: {duration: 1ms}
  - id: check
    uses: exec
    with: {command: ["false"]}
EOF
}

# the same with an undo for every step that changes things
clean_runbook() {
  runbook <<EOF
zdm: 1
name: truthful
steps:
  - id: touch-b
    uses: exec
    with: {command: [touch, "$T/b"]}
    undo: {uses: exec, with: {command: [rm, "$T/b"]}}
  - id: look
    uses: wait
    with: {duration: 1ms}
  - id: check
    uses: exec
    with: {command: ["false"]}
EOF
}

@test "truthful: a failed run whose step has no undo exits 6 and names what is left in place" {
  left_runbook
  run --separate-stderr zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 6
  assert_line --regexp '^\[2/4\] undone +touch-b'
  assert_line --regexp '^\[3/4\] nothing to undo look$'
  assert_line '[1/4] left in place touch-a'
  assert_equal "${lines[-1]}" "rolled back; 1 step that changed things has no undo: touch-a (left in place, not back where it started: put it back by hand or accept it)"
  refute_output --partial "back where it started;"
  # it is left, and the undoable one is undone
  assert_file_exist "$T/a"
  assert_not_exist "$T/b"
  # the journal says which, for every reader
  run jq -c 'select(.event | startswith("undo.")) | [.event, .step, .data.outcome]' "$(J)"
  assert_output '["undo.skipped","look","nothing_to_undo"]
["undo.started","touch-b",null]
["undo.succeeded","touch-b","undone"]
["undo.skipped","touch-a","left_in_place"]'
  run jq -c 'select(.event == "run.finished") | [.data.status, .data.exit_code, .data.left_in_place]' "$(J)"
  assert_output '["rolled_back",6,["touch-a"]]'
}

@test "truthful: when every step that changed things was undone the run still exits 1; a read-only step has nothing to undo" {
  clean_runbook
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line '[2/3] nothing to undo look'
  assert_line --partial "rolled back: step 'check' failed (exited with 1); every completed step with an undo was undone."
  assert_line --regexp '^\[1/3\] undone +touch-b'
  refute_output --partial "left in place"
  run jq -c 'select(.event == "run.finished") | [.data.exit_code, (.data | has("left_in_place"))]' "$(J)"
  assert_output '[1,false]'
}

@test "truthful: --output json ends with exit 6, the steps left in place and the message" {
  left_runbook
  status=0
  timeout 60 "$ZDM_BIN" run rb.yml --state-dir "$T/state" --output json >"$T/out.jsonl" 2>"$T/err.txt" || status=$?
  assert_equal "$status" 6
  bad="$(jq -c -f "$SCHEMA" "$T/out.jsonl" | grep -vx null || true)"
  assert_equal "$bad" ""
  run jq -c 'select(.event == "exit") | [.exit_code, .status, .left_in_place, .message]' "$T/out.jsonl"
  assert_output '[6,"rolled_back",["touch-a"],"rolled back; 1 step that changed things has no undo: touch-a"]'
}

@test "truthful: JUnit and GitHub annotations say the rollback left a change in place" {
  left_runbook
  run env GITHUB_ACTIONS=true "$ZDM_BIN" run rb.yml --state-dir "$T/state" --junit "$T/zdm.xml"
  assert_equal "$status" 6
  assert_line '::error file=rb.yml,line=14,col=5,title=zdm%3A rolled back%2C changes left in place::rolled back; 1 step that changed things has no undo: touch-a'
  assert_line '::warning file=rb.yml,line=4,col=5,title=zdm%3A left in place::this step changed things and has no undo: the rollback left its change in place'
  refute_output --partial "the system is back where it started"
  run xmllint --xpath 'string(//property[@name="zdm.left_in_place"]/@value)' "$T/zdm.xml"
  assert_output "rolled back; 1 step that changed things has no undo: touch-a"
  run xmllint --xpath 'string(//testcase[@name="touch-a"]/error/@type)' "$T/zdm.xml"
  assert_output "left_in_place"
  run xmllint --xpath 'string(//testcase[@name="touch-b"]/system-out)' "$T/zdm.xml"
  assert_output --partial "rollback: undone"
  run xmllint --xpath 'string(//testcase[@name="look"]/system-out)' "$T/zdm.xml"
  assert_output --partial "rollback: nothing to undo"
}

@test "truthful: zdm rollback of a finished run exits 6 when it leaves a change; log and status agree" {
  runbook <<EOF
zdm: 1
name: truthful
steps:
  - id: touch-a
    uses: exec
    with: {command: [touch, "$T/a"]}
  - id: touch-b
    uses: exec
    with: {command: [touch, "$T/b"]}
    undo: {uses: exec, with: {command: [rm, "$T/b"]}}
EOF
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  run zdm rollback rb.yml --state-dir "$T/state"
  assert_equal "$status" 6
  assert_line '[1/2] left in place touch-a'
  assert_line --regexp '^\[2/2\] undone +touch-b'
  assert_equal "${lines[-1]}" "rolled back; 1 step that changed things has no undo: touch-a (left in place, not back where it started: put it back by hand or accept it)"
  run zdm status rb.yml --state-dir "$T/state"
  assert_line --regexp '^  touch-a +undo\.skipped \(left in place\)$'
  assert_line --regexp '^  touch-b +undo\.succeeded \(undone\)$'
  assert_line "rolled back; 1 step that changed things has no undo: touch-a"
  run zdm log rb.yml --state-dir "$T/state"
  assert_line --regexp 'undo\.succeeded +touch-b \(attempt 1\) .* undone$'
  assert_line --regexp 'undo\.skipped +touch-a +left in place +\(no undo: '
  assert_line "rolled back; 1 step that changed things has no undo: touch-a"
}

@test "truthful: zdm validate warns (exit 0) of each step that changes things and has no undo, by line" {
  left_runbook
  run --separate-stderr zdm validate rb.yml
  assert_equal "$status" 0
  assert_output "rb.yml: ok (runbook 'truthful', 4 steps)"
  assert_equal "$stderr" "rb.yml:4:5: warning: step 'touch-a' changes things and has no undo: a rollback leaves its change in place (add undo:, or accept that)
rb.yml:14:5: warning: step 'check' changes things and has no undo: a rollback leaves its change in place (add undo:, or accept that)"
  assert_not_exist "$T/a"
}

@test "truthful: read_only: true on exec and http is the author's word: nothing to undo, no warning, exit 1 not 6; refused elsewhere" {
  runbook <<EOF
zdm: 1
name: truthful
steps:
  - id: touch-b
    uses: exec
    with: {command: [touch, "$T/b"]}
    undo: {uses: exec, with: {command: [rm, "$T/b"]}}
  - id: peek
    uses: exec
    read_only: true
    with: {command: [cat, "$T/b"]}
  - id: check
    uses: exec
    with: {command: ["false"]}
    read_only: true
EOF
  run --separate-stderr zdm validate rb.yml
  assert_equal "$status" 0
  assert_equal "$stderr" ""
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line --regexp '^\[2/3\] nothing to undo peek$'
  refute_output --partial "left in place"
  run jq -r 'select(.event == "undo.skipped" and .step == "peek") | .data.outcome' "$(J)"
  assert_output nothing_to_undo
  # on a type that says itself, with an undo, on a POST: exit 2, each by line
  runbook <<EOF
zdm: 1
name: truthful
steps:
  - id: soak
    uses: wait
    read_only: true
    with: {duration: 1ms}
  - id: both
    uses: exec
    read_only: true
    with: {command: ["true"]}
    undo: {uses: exec, with: {command: ["true"]}}
  - id: post
    uses: http
    read_only: true
    with: {url: "http://127.0.0.1:1/x", method: POST}
EOF
  run zdm validate rb.yml
  assert_equal "$status" 2
  assert_line "rb.yml:6:16: step 'soak': read_only: is for exec, ssh and http, whose effect is the command or request you write; wait says itself whether it changes things"
  assert_line "rb.yml:10:16: step 'both': read_only: true and an undo: a step that only reads has nothing to undo; drop one of them"
  assert_line "rb.yml:15:16: step 'post': read_only: true with method POST, which may change things: a read-only request is a GET or a HEAD"
}

# a plugin whose undo has nothing to do when `keep` is set, and says so
marker_plugin() {
  plugin_file "$T/plugins" t.marker <<'EOF'
return {
  description = "write a marker file; undo removes it unless keep is set",
  params = {
    {name = "path", type = "string", required = true},
    {name = "keep", type = "bool", default = false},
    {name = "none", type = "bool", default = false},
  },
  can_undo = function(p) return not p.keep end,
  plan = function(p)
    if p.keep then return "write " .. p.path .. "; keep: a rollback leaves it in place" end
    return "write " .. p.path
  end,
  run = function(ctx, p)
    if not p.none then zdm.file.write_atomic(p.path, "x") end
    return {undo_data = {wrote = not p.none}}
  end,
  undo = function(ctx, p, u)
    if p.keep then return {left_in_place = "keep: the marker stays"} end
    if not u.wrote then return {nothing_to_undo = "it wrote nothing"} end
    zdm.file.remove(p.path)
    return nil
  end,
}
EOF
}

@test "truthful: a plugin's undo that does nothing is 'left in place' or 'nothing to undo', never 'undone'" {
  marker_plugin
  runbook <<EOF
zdm: 1
name: truthful
steps:
  - id: kept
    uses: t.marker
    with: {path: "$T/kept", keep: true}
  - id: none
    uses: t.marker
    with: {path: "$T/none", none: true}
  - id: removed
    uses: t.marker
    with: {path: "$T/removed"}
  - id: check
    uses: exec
    with: {command: ["false"]}
EOF
  export ZDM_PLUGIN_PATH="$T/plugins:$REPO/plugins"
  run zdm plan rb.yml
  assert_equal "$status" 0
  assert_line "      do:   write $T/kept; keep: a rollback leaves it in place"
  assert_line "      undo: none: a rollback leaves this change in place"
  assert_line "      undo: t.marker restores what it recorded"
  # the plan never says both for one step: 'kept' has no "restores" line
  run awk '/^ 1\. kept/{f=1; next} /^ 2\./{f=0} f' <<<"$output"
  refute_output --partial "restores what it recorded"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 6
  assert_line --regexp '^\[3/4\] undone +removed'
  assert_line --regexp '^\[2/4\] nothing to undo none'
  assert_line --regexp '^\[1/4\] left in place kept'
  assert_line "        keep: the marker stays"
  assert_equal "${lines[-1]}" "rolled back; 1 step that changed things has no undo: kept (left in place, not back where it started: put it back by hand or accept it)"
  assert_file_exist "$T/kept"
  assert_not_exist "$T/removed"
  run jq -c 'select(.event == "undo.succeeded") | [.step, .data.outcome, .data.reason]' "$(J)"
  assert_output '["removed","undone",null]
["none","nothing_to_undo","it wrote nothing"]
["kept","left_in_place","keep: the marker stays"]'
}

@test "truthful: a signal is named: SIGINT stops a run with 'interrupted (SIGINT)', exit 4" {
  cp /bin/sleep "$T/truth-sleeper"
  runbook <<EOF
zdm: 1
name: truthful
steps:
  - id: long
    uses: exec
    with:
      shell: 'echo \$\$ > "$T/long.pid"; exec "$T/truth-sleeper" 30'
      kill_grace: 200ms
EOF
  "$ZDM_BIN" run rb.yml --state-dir "$T/state" >"$T/sig.out" 2>&1 3>&- &
  local pid=$! i rc=0
  for i in $(seq 400); do [ -s "$T/long.pid" ] && break; sleep 0.05; done
  [ -s "$T/long.pid" ]
  kill -INT "$pid"
  wait "$pid" || rc=$?
  assert_equal "$rc" 4
  run cat "$T/sig.out"
  assert_line "interrupted (SIGINT); the journal is consistent."
  refute_output --partial "Interrupt;"
  run jq -r 'select(.event=="run.interrupted") | .data.signal' "$(J)"
  assert_output 2
}

@test "truthful: after --fail-at with on_failure: pause, the hint says resume goes on after the step, and it does" {
  runbook <<EOF
zdm: 1
name: truthful
on_failure: pause
steps:
  - id: one
    uses: exec
    with: {shell: 'echo one >> "$T/trail"'}
  - id: two
    uses: exec
    with: {shell: 'echo two >> "$T/trail"'}
EOF
  run zdm run rb.yml --state-dir "$T/state" --fail-at one
  assert_equal "$status" 4
  assert_line "paused at the failure forced after step 'one' (--fail-at; on_failure: pause); 'one' itself succeeded."
  assert_line --regexp '^  go on with the next step: zdm resume [0-9TZ-]+[0-9a-z]+$'
  refute_output --partial "retry it"
  run zdm resume rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  # 'one' ran once: resume went on with 'two', as the hint said
  assert_equal "$(cat "$T/trail")" "one
two"
}

@test "truthful: an empty --var is refused naming the flag (exit 2), nothing ran" {
  runbook <<EOF
zdm: 1
name: truthful
vars:
  root: $T/root
steps:
  - id: one
    uses: exec
    with: {command: [mkdir, "\${{ vars.root }}"]}
EOF
  run --separate-stderr zdm run rb.yml --state-dir "$T/state" --var root=
  assert_equal "$status" 2
  assert_equal "${stderr_lines[0]}" "rb.yml:1:1: --var 'root=': the value is empty; give one (--var root=VALUE) or leave the flag out to keep the runbook's value '$T/root' (an empty string on purpose: --var 'root=\"\"')"
  assert_not_exist "$T/state"
  assert_not_exist "$T/root"
  run zdm validate rb.yml --var root=
  assert_equal "$status" 2
  # an empty string on purpose is taken: --var 'k=""', or from a vars file
  run zdm plan rb.yml --var 'root=""'
  assert_equal "$status" 0
  assert_line "      do:   run mkdir ''"
  printf 'root: ""\n' >"$T/vars.yml"
  run zdm plan rb.yml --vars-file "$T/vars.yml"
  assert_equal "$status" 0
  assert_line "      do:   run mkdir ''"
}

@test "truthful: a missing --vars-file is named as the vars file and the flag, not as the runbook (exit 2)" {
  clean_runbook
  run --separate-stderr zdm run rb.yml --state-dir "$T/state" --vars-file "$T/nope.yml"
  assert_equal "$status" 2
  assert_equal "${stderr_lines[0]}" "$T/nope.yml: cannot read the vars file (--vars-file): No such file or directory"
  refute_output --partial "cannot read runbook"
  assert_not_exist "$T/state"
}
