#!/usr/bin/env bats
# The console: what a person reads while a run goes (src/report/term.c):
# lines that fit the terminal, command output under its step (-v), -q,
# --timestamps, the heartbeat outside a terminal, plain text for TERM=dumb
# and pipes, and zdm status --output json / --watch.  The terminal tests run
# zdm in a real terminal: tmux (a private server on a socket in the test's
# temp dir) or script(1).

load helper
load servers/sshd
bats_require_minimum_version 1.5.0

# the private tmux server goes too (then the sshds and the test's dir)
eval "$(declare -f teardown | sed '1s/teardown/sshd_teardown/')"
teardown() {
  tmux -S "$BATS_TEST_TMPDIR/sock" kill-server 2>/dev/null || true
  sshd_teardown
}

# the run of $T/state has a journal; its journal holds WORD
has_journal() { compgen -G "$T/state/runs/*.jsonl" >/dev/null; }
journal_has() { has_journal && grep -q "$1" "$T"/state/runs/*.jsonl; }

STAMP='[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z'

# a plugin that logs while it works, so its log lines come while the live
# line is drawn
logger_plugin() {
  plugin_file "$T/plug" t.logger <<'EOF'
return {
  description = "logs while it works",
  params = {},
  read_only = true,
  idempotent = true,
  run = function(ctx, p)
    for i = 1, 3 do
      zdm.log("part " .. i .. " of 3 done; this log line is long enough to run past sixty columns")
      zdm.sleep(300)
    end
    return {outputs = {}}
  end,
}
EOF
}

# the runbook of the terminal tests: a long name with wide characters, a
# command that prints while it runs, a plugin that logs, a soak
console_runbook() {
  logger_plugin
  runbook <<'EOF'
zdm: 1
name: console
steps:
  - id: migrate
    name: 移行 — copy the orders table to the new cluster, then check every row of it twice
    uses: exec
    with:
      shell: 'for i in 1 2 3; do echo "copied batch $i of 3 — a line of output long enough to pass sixty columns"; sleep 0.3; done'
  - id: logs
    name: a plugin step that logs while the spinner turns beside its long, long name
    uses: t.logger
  - id: soak
    name: 負荷をかけたままエラー率を見守る、六十桁で二度折り返すほど長い名前のステップです
    uses: wait
    with: {duration: 1s}
EOF
}

# run "$@" in a detached tmux session WIDTH columns wide, wait for it to
# end, and put the whole pane (history too, wrapped lines joined back) in
# $T/pane.WIDTH
in_tmux() {
  local w="$1" sock="$BATS_TEST_TMPDIR/sock" i
  shift
  tmux -S "$sock" -f /dev/null new-session -d -x "$w" -y 40 \
    "cd '$T' && env -u NO_COLOR $* ; echo \"EXIT=\$?\"; sleep 600"
  for ((i = 0; i < 300; i++)); do
    tmux -S "$sock" capture-pane -p -J -S - | grep -q '^EXIT=' && break
    sleep 0.2
  done
  tmux -S "$sock" capture-pane -p -J -S - >"$T/pane.$w"
  tmux -S "$sock" kill-server
}

# each line of FILE that is wider than W display columns (wide characters
# count two), as "width: line"
too_wide() {
  python3 - "$1" "$2" <<'EOF'
import sys, unicodedata
w = int(sys.argv[2])
for line in open(sys.argv[1], encoding="utf-8", errors="replace").read().split("\n"):
    n = sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line)
    if n > w:
        print(f"{n}: {line}")
EOF
}

@test "console: in tmux at 60 and 200 columns no line is wider than the pane and no stale live line is left" {
  console_runbook
  for w in 60 200; do
    in_tmux "$w" "$ZDM_BIN" run rb.yml --state-dir "$T/state-$w" --plugin-path "$T/plug" -v
    echo "--- $w columns:"; cat "$T/pane.$w"
    grep -q '^EXIT=0$' "$T/pane.$w"
    run too_wide "$T/pane.$w" "$w"
    assert_output ""
    # the live line ("[i/3] | running ...") is wiped when its step ends:
    # no copy of it is left anywhere in the pane
    run grep -E 'running' "$T/pane.$w"
    assert_failure
    # each step's own line, once
    [ "$(grep -c '^\[1/3\] ok ' "$T/pane.$w")" -eq 1 ]
    [ "$(grep -c '^\[2/3\] ok ' "$T/pane.$w")" -eq 1 ]
    [ "$(grep -c '^\[3/3\] ok ' "$T/pane.$w")" -eq 1 ]
    # the plugin's log and the command's output: each on lines of their
    # own, never inside the live line
    [ "$(grep -c '^  | logs: part [123] of 3 done' "$T/pane.$w")" -eq 3 ]
    [ "$(grep -c '^        out: copied batch [123] of 3' "$T/pane.$w")" -eq 3 ]
    grep -q '^succeeded: run ' "$T/pane.$w"
    # no character cut in two (a split UTF-8 sequence shows as U+FFFD)
    run grep -c $'\xef\xbf\xbd' "$T/pane.$w"
    assert_output 0
  done
  # at 60 columns the long lines fold under their start instead of wrapping
  grep -q '^        ' "$T/pane.60"
  # at 200 they fit whole
  grep -q '^\[3/3\] ok        soak — 負荷をかけたままエラー率を見守る、六十桁で二度折り返すほど長い名前のステップです  1.0s$' "$T/pane.200"
}

@test "console: TERM=dumb on a terminal gets plain text: no colour, no erase-line, no spinner" {
  console_runbook
  TERM=dumb run env -u NO_COLOR script -qec "$ZDM_BIN run rb.yml --state-dir $T/state --plugin-path $T/plug" /dev/null </dev/null
  assert_success
  [[ "$output" != *$'\e'* ]]
  [[ "$output" != *$'\r'[^$'\n']* ]]
  assert_output --partial "[1/3] running   migrate (exec, attempt 1)"
  assert_output --partial "[3/3] ok        soak"
  # the same on a capable terminal does draw (the test tells them apart)
  TERM=xterm run env -u NO_COLOR script -qec "$ZDM_BIN run rb.yml --state-dir $T/state2 --plugin-path $T/plug" /dev/null </dev/null
  assert_success
  [[ "$output" == *$'\e[K'* ]]
  [[ "$output" == *$'\e[32m'* ]]
}

@test "console: NO_COLOR set on a terminal turns colour off, the live line stays; NO_COLOR empty does not" {
  runbook <<'EOF'
zdm: 1
name: colour
steps:
  - {id: a, uses: exec, with: {command: ["true"]}}
EOF
  TERM=xterm NO_COLOR=1 run script -qec "$ZDM_BIN run rb.yml --state-dir $T/s1" /dev/null </dev/null
  assert_success
  [[ "$output" != *$'\e[3'* ]]
  [[ "$output" != *$'\e[0m'* ]]
  # only the colour goes (no-color.org): the live line is still drawn and erased
  [[ "$output" == *$'\e[K'* ]]
  assert_output --partial "succeeded: run "
  TERM=xterm NO_COLOR= run script -qec "$ZDM_BIN run rb.yml --state-dir $T/s2" /dev/null </dev/null
  assert_success
  [[ "$output" == *$'\e[32msucceeded'* ]]
}

@test "console: -v shows each command's stdout and stderr under its step, redacted (in --output json as output events); without -v nothing of it" {
  runbook <<'EOF'
zdm: 1
name: verbose
secrets:
  tok: {env: TOK}
steps:
  - id: build
    uses: exec
    with:
      shell: 'echo "hello out"; echo "oops err" >&2; echo "token=${{ secrets.tok }}"; printf "no newline at the end"'
  - id: after
    uses: exec
    with: {command: [echo, second]}
EOF
  TOK=s3cr3t-Value-42 run --separate-stderr zdm run rb.yml --state-dir "$T/state" -v
  assert_success
  assert_line --index 0 --partial "run $(basename "$(J)" .jsonl): 2 steps"
  assert_line --index 1 "[1/2] running   build (exec, attempt 1)"
  # stdout in its order, stderr in its own (two pipes: which comes first
  # between them is the scheduler's), all under the step
  assert_equal "$(sed -n '3,6p' <<<"$output" | grep '^        out: ')" "$(printf '%s\n' \
    "        out: hello out" "        out: token=***" "        out: no newline at the end")"
  assert_equal "$(sed -n '3,6p' <<<"$output" | grep '^        err: ')" "        err: oops err"
  assert_line --index 6 --regexp '^\[1/2\] ok        build  [0-9.]+m?s$'
  assert_line --index 7 "[2/2] running   after (exec, attempt 1)"
  assert_line --index 8 "        out: second"
  assert_line --index 9 --regexp '^\[2/2\] ok        after  [0-9.]+m?s$'
  assert_line --index 10 --partial "succeeded: run "
  [ "${#lines[@]}" -eq 11 ]
  [[ "$output$stderr" != *s3cr3t-Value-42* ]]
  ! grep -q 's3cr3t-Value-42' "$(J)"
  TOK=s3cr3t-Value-42 run --separate-stderr zdm run rb.yml --state-dir "$T/state2"
  assert_success
  refute_output --partial "hello out"
  refute_output --partial "out: "
  # --output json -v: the same lines as "output" events between the step's
  # records, redacted, and the stream still conforms to docs/ci.md
  TOK=s3cr3t-Value-42 run --separate-stderr zdm run rb.yml --state-dir "$T/state3" --output json -v
  assert_success
  run jq -r 'select(.event == "output" or .event == "step.succeeded") | [.event, .step, (.stream // ""), (.line // "")] | join("|")' <<<"$output"
  assert_equal "$(grep '|stdout|' <<<"$output" | head -3)" "$(printf '%s\n' "output|build|stdout|hello out" "output|build|stdout|token=***" "output|build|stdout|no newline at the end")"
  assert_line "output|build|stderr|oops err"
  assert_line "output|after|stdout|second"
  # each after its step started and before it ended
  [ "$(grep -n 'step.succeeded|build' <<<"$output" | cut -d: -f1)" -gt "$(grep -n 'oops err' <<<"$output" | cut -d: -f1)" ]
  [[ "$output" != *s3cr3t-Value-42* ]]
}

@test "console: -q prints only failures and the result" {
  runbook <<'EOF'
zdm: 1
name: quiet
steps:
  - {id: one, uses: exec, with: {command: [echo, fine]}}
  - {id: two, uses: exec, with: {shell: 'echo broken >&2; exit 3'}}
EOF
  run --separate-stderr zdm run rb.yml --state-dir "$T/state" -q
  assert_equal "$status" 6
  assert_equal "$stderr" ""
  assert_line --index 0 --regexp '^\[2/2\] failed    two  [0-9.]+m?s$'
  assert_line --index 1 "        exited with 3: broken"
  # a step left as it was is a failure of the rollback's to know of
  assert_line --index 2 "[1/2] left in place one"
  assert_line --index 3 "        no undo: the type has none and the step sets none; the change is left in place"
  assert_line --index 4 "rolled back: step 'two' failed (exited with 3: broken); every completed step with an undo was undone."
  assert_line --index 5 "rolled back; 1 step that changed things has no undo: one (left in place, not back where it started: put it back by hand or accept it)"
  [ "${#lines[@]}" -eq 6 ]
}

@test "console: -v with -q, and a --heartbeat that is not a duration, exit 2 and run nothing" {
  printf 'zdm: 1\nname: x\nsteps:\n  - {id: a, uses: exec, with: {command: [touch, ran]}}\n' >rb.yml
  run --separate-stderr zdm run rb.yml -v -q
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm run: -v (--verbose) and -q (--quiet) ask for opposite things; give one"
  run --separate-stderr zdm run rb.yml --heartbeat soon
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm run: --heartbeat 'soon': not a duration; use e.g. 30s, 1m or 0 (no heartbeat)"
  run --separate-stderr zdm status --timestamps
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm status: --timestamps goes with --watch"
  assert_not_exist ran
  assert_not_exist .zdm
}

@test "console: --timestamps starts every line with the UTC time, to the millisecond" {
  runbook <<'EOF'
zdm: 1
name: stamps
steps:
  - {id: a, uses: exec, with: {command: [echo, hi]}, undo: {uses: exec, with: {command: ["true"]}}}
  - {id: b, uses: exec, with: {shell: 'exit 1'}}
EOF
  run --separate-stderr zdm run rb.yml --state-dir "$T/state" --timestamps -v
  assert_equal "$status" 1
  [ "${#lines[@]}" -ge 6 ]
  for l in "${lines[@]}"; do
    [[ "$l" =~ ^$STAMP\  ]] || { echo "not stamped: $l"; false; }
  done
  assert_output --regexp "$STAMP         out: hi"
  assert_output --regexp "$STAMP rolled back: step 'b' failed"
}

@test "console: outside a terminal a long step gets a timestamped heartbeat with elapsed and remaining time; --heartbeat 0 turns it off" {
  runbook <<'EOF'
zdm: 1
name: soak
steps:
  - id: soak
    uses: wait
    with: {duration: 2500ms}
  - id: cmd
    uses: exec
    timeout: 1m
    with: {shell: 'sleep 1.6'}
EOF
  run --separate-stderr zdm run rb.yml --state-dir "$T/state" --heartbeat 1s
  assert_success
  assert_line --regexp "^$STAMP \[1/2\] still running soak: 1\.[0-9]s elapsed, 1\.[0-9]s left of its 2\.5s duration$"
  assert_line --regexp "^$STAMP \[2/2\] still running cmd: 1\.[0-9]s elapsed, 5[89]\.[0-9]s left of its 1m0s timeout$"
  # without --timestamps the other lines stay as they are
  assert_line --index 1 "[1/2] running   soak (wait, attempt 1)"
  run --separate-stderr zdm run rb.yml --state-dir "$T/state2" --heartbeat 0
  assert_success
  refute_output --partial "still running"
}

@test "console: zdm status --output json is one document of where the run stands" {
  runbook <<'EOF'
zdm: 1
name: shown
steps:
  - {id: first, uses: exec, with: {command: [echo, one]}, undo: {uses: exec, with: {command: ["true"]}}}
  - {id: second, uses: exec, with: {shell: 'echo nope >&2; exit 1'}}
EOF
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  run --separate-stderr zdm status rb.yml --state-dir "$T/state" --output json
  assert_success
  echo "$output" | jq -e . >/dev/null
  assert_equal "$(jq -r '[.run, .runbook, .file, .status, .exit_code, .failed_step, .journal, .records, (.lock|tostring)] | map(tostring) | join(" ")' <<<"$output")" \
    "$(basename "$(J)" .jsonl) shown $T/rb.yml rolled_back 1 second $(J) 9 null"
  assert_equal "$(jq -c '[.steps[] | [.id, .phase, .attempt, .last_event, .undo]]' <<<"$output")" \
    '[["first","succeeded",1,"undo.succeeded","succeeded"],["second","failed",1,"step.failed",null]]'
  assert_equal "$(jq -r '.steps[1].error' <<<"$output")" "exited with 1: nope"
  run --separate-stderr zdm status rb.yml --state-dir "$T/state" --output json --watch
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm status: --watch and --output json: give one (--output json is the state now, once)"
}

@test "console: zdm status --watch follows a run started elsewhere until it ends and exits with its exit status" {
  runbook <<'EOF'
zdm: 1
name: watched
steps:
  - {id: first, uses: exec, with: {command: [sleep, "1"]}, undo: {uses: exec, with: {command: ["true"]}}}
  - {id: second, uses: exec, with: {shell: 'sleep 1; echo nope >&2; exit 1'}}
EOF
  "$ZDM_BIN" run rb.yml --state-dir "$T/state" >"$T/run.out" 2>&1 &
  local pid=$!
  poll 100 0.05 has_journal
  run --separate-stderr zdm status rb.yml --state-dir "$T/state" --watch
  wait "$pid" || true
  assert_equal "$status" 1
  assert_line "step.started second"
  assert_line "step.failed second: exited with 1: nope"
  assert_line "run.finished rolled_back: exited with 1: nope"
  assert_line --index $((${#lines[@]} - 1)) "run $(basename "$(J)" .jsonl): rolled_back (exit 1)"
  # every record, once, in the journal's order
  assert_equal "$(grep -vc '^run 2' <<<"$output")" "$(wc -l <"$(J)")"
  # a finished run: at once
  run --separate-stderr zdm status rb.yml --state-dir "$T/state" --watch --timestamps
  assert_equal "$status" 1
  assert_line --index 0 --regexp "^$STAMP run.started$"
}

@test "console: zdm status --watch of a run whose zdm was killed mid-step exits 5 (in doubt)" {
  runbook <<'EOF'
zdm: 1
name: killed
steps:
  - {id: slow, uses: exec, with: {command: [sleep, "30"]}}
EOF
  "$ZDM_BIN" run rb.yml --state-dir "$T/state" >"$T/run.out" 2>&1 &
  local pid=$!
  poll 100 0.05 journal_has step.started
  kill -9 "$pid"
  wait "$pid" || true
  run --separate-stderr zdm status rb.yml --state-dir "$T/state" --watch
  assert_equal "$status" 5
  assert_line --index $((${#lines[@]} - 1)) "run $(basename "$(J)" .jsonl): in_doubt (exit 5)"
}

@test "console: zdm status --watch on a terminal redraws in place: no line wider than the pane, nothing twice" {
  runbook <<'EOF'
zdm: 1
name: watched-on-a-terminal-with-a-runbook-name-long-enough-to-wrap
steps:
  - {id: first, uses: exec, with: {command: [sleep, "1"]}}
  - {id: second, uses: exec, with: {command: [sleep, "1"]}}
EOF
  "$ZDM_BIN" run rb.yml --state-dir "$T/state" >"$T/run.out" 2>&1 &
  local pid=$!
  poll 100 0.05 has_journal
  in_tmux 60 "$ZDM_BIN" status rb.yml --state-dir "$T/state" --watch
  wait "$pid"
  cat "$T/pane.60"
  grep -q '^EXIT=0$' "$T/pane.60"
  run too_wide "$T/pane.60" 60
  assert_output ""
  [ "$(grep -c '^run      ' "$T/pane.60")" -eq 1 ]
  [ "$(grep -c '^  second  ' "$T/pane.60")" -eq 1 ]
  run grep -c 'watching' "$T/pane.60"
  assert_output 0
  grep -q '^run .*: succeeded (exit 0)$' "$T/pane.60"
}

@test "console: on a terminal an approval's prompt goes on lines of its own, not into the live line" {
  runbook <<'EOF'
zdm: 1
name: appr
steps:
  - id: go-ahead
    name: a person looks at the canary dashboard before the rest goes on
    uses: approval
    with: {message: "check the canary dashboard", approvers: [ann], decision_timeout: 1h}
EOF
  local sock="$BATS_TEST_TMPDIR/sock" i
  tmux -S "$sock" -f /dev/null new-session -d -x 60 -y 40 \
    "cd '$T' && env -u NO_COLOR -u CI ZDM_ACTOR=ann $ZDM_BIN run rb.yml --state-dir $T/state; echo \"EXIT=\$?\"; sleep 600"
  for ((i = 0; i < 300; i++)); do
    tmux -S "$sock" capture-pane -p -J | grep -q 'approve step go-ahead? \[y/N\]' && break
    sleep 0.2
  done
  tmux -S "$sock" send-keys y Enter
  for ((i = 0; i < 300; i++)); do
    tmux -S "$sock" capture-pane -p -J -S - | grep -q '^EXIT=' && break
    sleep 0.2
  done
  tmux -S "$sock" capture-pane -p -J -S - >"$T/pane"
  tmux -S "$sock" kill-server
  cat "$T/pane"
  grep -q '^EXIT=0$' "$T/pane"
  grep -q '^approve step go-ahead? \[y/N\] y$' "$T/pane"
  run grep -c 'running' "$T/pane"
  assert_output 0
  run too_wide "$T/pane" 60
  assert_output ""
}

@test "console: -v shows what an ssh step's command printed on each host, under the step, redacted" {
  ssh_keys
  start_sshd h1
  known_host h1
  cat >rb.yml <<EOF
zdm: 1
name: ssh-verbose
secrets:
  tok: {env: TOK}
steps:
  - id: fan
    uses: ssh
    with:
      hosts: ["127.0.0.1:$SSHD_PORT"]
      user: root
      known_hosts: $T/ssh/known_hosts
      key_file: $T/ssh/id_ed25519
      shell: 'echo hello from the host; echo "tok=\${{ secrets.tok }}"; echo careful >&2'
EOF
  TOK=s3cr3t-Value-42 run --separate-stderr zdm run rb.yml --state-dir "$T/state" -v
  assert_success
  assert_line --index 1 "[1/1] running   fan (ssh, attempt 1)"
  assert_line "        out: [127.0.0.1:$SSHD_PORT] hello from the host"
  assert_line "        out: [127.0.0.1:$SSHD_PORT] tok=***"
  assert_line "        err: [127.0.0.1:$SSHD_PORT] careful"
  [[ "$output$stderr" != *s3cr3t-Value-42* ]]
  TOK=s3cr3t-Value-42 run --separate-stderr zdm run rb.yml --state-dir "$T/state2"
  assert_success
  refute_output --partial "hello from the host"
}
