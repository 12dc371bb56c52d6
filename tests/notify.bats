#!/usr/bin/env bats
# notify: webhooks.  A real receiver (tests/servers/httpd.py on 127.0.0.1,
# recording every request body) gets a Slack-compatible JSON POST on run
# start, failure, rollback, pause and finish; a dead or failing webhook is
# logged and journaled as notify.failed and never changes the run's exit code;
# a URL that holds a secret never appears in clear.

bats_require_minimum_version 1.5.0
load helper
load servers/httpd

TOKEN='T0k3n-s3cr3t-hook-42'
export HOOK_TOKEN="$TOKEN"

# the bodies httpd.py got for PATH, one compact JSON a line
bodies_to() {
  requests_to "$1" | jq -c '.body | fromjson'
}

# a runbook whose step 'two' fails (or not: $2 = ok) after 'one' succeeded,
# notifying $1 (a YAML list of webhooks)
make_runbook() {
  local fail=1
  [ "${2:-}" = ok ] && fail=0
  cat >"$T/rb.yml" <<EOF
zdm: 1
name: notified
secrets:
  hook: {env: HOOK_TOKEN}
notify:
$1
steps:
  - id: one
    uses: exec
    with: {command: [touch, "$T/one.done"]}
    undo:
      uses: exec
      with: {command: [rm, -f, "$T/one.done"]}
  - id: two
    uses: exec
    with: {command: [sh, -c, "echo \"token \$HOOK_TOKEN\" >&2; exit $fail"]}
EOF
}

@test "notify: the receiver gets start, failure, rollback and finish, in order, Slack-compatible, secret redacted" {
  start_httpd
  echo "{\"/hook/$TOKEN\": {\"status\": 200, \"body\": \"ok\"}}" | control
  make_runbook "  - url: \"$BASE/hook/\${{ secrets.hook }}\""
  HOOK_TOKEN="$TOKEN" run --separate-stderr zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_not_exist "$T/one.done"   # rolled back
  echo "$output" >"$T/zdm.out"
  echo "$stderr" >"$T/zdm.err"
  grep -q "rolled back" "$T/zdm.out"

  run bodies_to "/hook/$TOKEN"
  assert_equal "${#lines[@]}" 4
  run jq -r '.zdm.event + " " + .zdm.on' < <(bodies_to "/hook/$TOKEN")
  assert_output - <<'EOF'
run.started start
step.failed failure
rollback.started rollback
run.finished finish
EOF
  local run_id; run_id="$(basename "$(journal_of "$T/state")" .jsonl)"
  # Slack's incoming webhooks read "text"; the facts are also fields
  run jq -r .text < <(bodies_to "/hook/$TOKEN")
  assert_line --index 0 --regexp "^zdm: run $run_id of 'notified' started by .+ on .+ \(2 steps\)$"
  # (the step printed the token on stderr: the error quotes it, redacted)
  assert_line --index 1 "zdm: run $run_id of 'notified': step 'two' failed: exited with 1: token ***"
  assert_line --index 3 --regexp "^zdm: run $run_id of 'notified' finished: rolled_back \(exit 1\) in .+ after step 'two' failed: exited with 1: token \*\*\*$"
  run jq -c 'select(.zdm.event == "run.finished") | [.zdm.run, .zdm.runbook, .zdm.status, .zdm.exit_code, .zdm.failed_step]' < <(bodies_to "/hook/$TOKEN")
  assert_output "[\"$run_id\",\"notified\",\"rolled_back\",1,\"two\"]"
  # run.finished carries the journal's anchor: seq and hash of that record
  run jq -r 'select(.zdm.event == "run.finished") | "\(.zdm.last_seq) \(.zdm.last_hash)"' < <(bodies_to "/hook/$TOKEN")
  assert_output "$(jq -r 'select(.event == "run.finished") | "\(.seq) \(.hash)"' "$(journal_of "$T/state")")"
  [[ "$output" =~ ^[0-9]+\ [0-9a-f]{64}$ ]]
  run jq -r '.method + " " + .headers["content-type"]' < <(requests_to "/hook/$TOKEN")
  assert_line --index 0 "POST application/json"

  # the token is in the URL the receiver saw, and nowhere else
  jq -r .body "$T/requests.jsonl" >"$T/bodies"
  grep -qF -- "$TOKEN" "$T/requests.jsonl"   # (the path)
  run grep -rF -- "$TOKEN" "$T/state" "$T/zdm.out" "$T/zdm.err" "$T/bodies"
  assert_failure
  refute_output --partial "$TOKEN"
  run zdm audit verify "$(journal_of "$T/state")"
  assert_equal "$status" 0
}

@test "notify: a dead webhook is logged and journaled (redacted) and never fails the run" {
  local dead; dead="$(free_port)"
  make_runbook "  - url: \"http://127.0.0.1:$dead/hook/\${{ secrets.hook }}\"
    timeout: 2s" ok
  HOOK_TOKEN="$TOKEN" run --separate-stderr zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_exist "$T/one.done"
  [[ "$stderr" == *"zdm: warning: notify start (run.started) to http://127.0.0.1:$dead/hook/*** failed: "* ]]
  [[ "$stderr" == *"; the run goes on"* ]]
  [[ "$stderr" != *"$TOKEN"* ]]
  J="$(journal_of "$T/state")"
  run jq -r 'select(.event == "notify.failed") | .data.on + " " + .data.event + " " + .data.url' "$J"
  assert_output - <<EOF
start run.started http://127.0.0.1:$dead/hook/***
finish run.finished http://127.0.0.1:$dead/hook/***
EOF
  run grep -cF -- "$TOKEN" "$J"
  assert_output 0
  # a failed notification is part of the record, and the chain holds
  run zdm audit verify "$T/state"
  assert_equal "$status" 0
  assert_line --index 0 --partial ", succeeded"

  # and the same with a failing run: still exit 1 (rolled back), not worse
  make_runbook "  - url: \"http://127.0.0.1:$dead/\"" fail
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_not_exist "$T/one.done"
}

@test "notify: a webhook answering 500, or too slow for its timeout, is a notify.failed; the run goes on" {
  start_httpd
  control <<'EOF'
{"/err": {"status": 500, "body": "boom"}, "/slow": {"status": 200, "delay": 3}}
EOF
  make_runbook "  - url: $BASE/err
    on: [finish]
  - url: $BASE/slow
    on: [start]
    timeout: 500ms" ok
  run --separate-stderr zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  J="$(journal_of "$T/state")"
  run jq -r 'select(.event == "notify.failed") | .data.on + " " + .data.error' "$J"
  assert_line --index 0 --regexp '^start .*timed out'
  assert_line --index 1 "finish HTTP 500"
  assert_equal "${#lines[@]}" 2
  # each webhook got only the events it asked for
  assert_equal "$(requests_to /err | jq -r '.body | fromjson | .zdm.event')" run.finished
  assert_equal "$(requests_to /slow | jq -r '.body | fromjson | .zdm.event')" run.started
}

@test "notify: on: picks events; pause is sent when on_failure: pause stops the run; a dry run sends nothing" {
  start_httpd
  echo '{"/fin": {"status": 204}, "/pause": {"status": 200}}' | control
  make_runbook "  - url: $BASE/fin
    on: [finish]
  - url: $BASE/pause
    on: [pause, start]"
  sed -i 's/^steps:/on_failure: pause\nsteps:/' "$T/rb.yml"
  run zdm run rb.yml --state-dir "$T/state" --dry-run
  assert_equal "$status" 0
  [ ! -f "$T/requests.jsonl" ]

  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 4
  run jq -r '.zdm.event' < <(bodies_to /pause)
  assert_output - <<'EOF'
run.started
run.paused
EOF
  assert_equal "$(requests_to /fin | wc -l)" 0
  run jq -r 'select(.zdm.event == "run.paused") | .text' < <(bodies_to /pause)
  assert_output --regexp "paused at step 'two': exited with 1: token \*\*\*; a person decides: zdm resume .+ or zdm rollback .+"

  # zdm rollback: a start (resumed), then the rollback's finish
  run zdm rollback rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  run jq -r '.zdm.event' < <(bodies_to /pause)
  assert_line --index 2 run.resumed
  run jq -r '.zdm.event + " " + .zdm.status' < <(bodies_to /fin)
  assert_output "run.finished rolled_back"
}

@test "notify: validate names file:line:col for each mistake; nothing is sent" {
  start_httpd
  cat >"$T/rb.yml" <<EOF
zdm: 1
name: bad-notify
notify:
  - url: ftp://127.0.0.1/x
    on: [start, finsh]
  - url: "$BASE/\${{ secrets.nope }}"
    timeout: 1m
  - on: [start]
    retries: 3
steps:
  - id: one
    uses: exec
    with: {command: [echo, x]}
EOF
  run --separate-stderr zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 2
  assert_equal "$stderr" "rb.yml:4:10: notify url 'ftp://127.0.0.1/x': the scheme must be http or https
rb.yml:5:17: unknown notify event 'finsh' (did you mean 'finish'?) (use start, failure, rollback, finish, pause)
rb.yml:6:10: unknown secret 'nope' in 'secrets.nope' (declare it under secrets:)
rb.yml:7:14: notify timeout must be from 1ms to 30s: a webhook must not hold up the migration
rb.yml:8:5: notify entry: missing 'url:' (the webhook, e.g. \${{ secrets.slack_hook }})
rb.yml:9:5: unknown key 'retries' in a notify entry
zdm: 6 errors; nothing ran"
  [ ! -f "$T/requests.jsonl" ]
  [ ! -d "$T/state/runs" ]
}

@test "notify: a webhook URL that is a secret stays secret when the receiver echoes the path in its error body" {
  start_httpd
  # the receiver answers 404 and quotes the request (path and all) in its body
  echo "{\"/services/$TOKEN\": {\"status\": 404, \"echo\": true}}" | control
  cat >"$T/rb.yml" <<EOF2
zdm: 1
name: echoed
secrets:
  hook_url: {env: HOOK_URL}
notify:
  - url: \${{ secrets.hook_url }}
    on: [start, finish]
steps:
  - id: one
    uses: exec
    with: {command: [sh, -c, "exit 0"]}
EOF2
  HOOK_URL="$BASE/services/$TOKEN" run --separate-stderr zdm run rb.yml --output json --state-dir "$T/state"
  assert_equal "$status" 0
  # the receiver did get the path, and said so in its body
  assert_equal "$(requests_to "/services/$TOKEN" | wc -l)" 2
  [[ "$stderr" == *"zdm: warning: notify start (run.started) to *** failed: HTTP 404; the run goes on"* ]]
  [[ "$stderr" != *"$TOKEN"* ]]
  [[ "$stderr" != *"services"* ]]
  [[ "$output" != *"$TOKEN"* ]]
  J="$(journal_of "$T/state")"
  run jq -r 'select(.event == "notify.failed") | .data.on + " " + .data.url + " " + .data.error' "$J"
  assert_output - <<'EOF2'
start *** HTTP 404
finish *** HTTP 404
EOF2
  run grep -rF -- "$TOKEN" "$T/state"
  assert_failure
}

@test "notify: webhooks that never answer do not hold up the rollback" {
  start_httpd
  # two receivers that accept and never answer (within the test)
  echo '{"/a": {"status": 200, "delay": 100}, "/b": {"status": 200, "delay": 100}}' | control
  make_runbook "  - url: $BASE/a
    on: [failure, rollback]
    timeout: 2s
  - url: $BASE/b
    on: [failure, rollback]
    timeout: 2s"
  run --separate-stderr zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_not_exist "$T/one.done"   # rolled back
  J="$(journal_of "$T/state")"
  # the rollback ran straight after the failure: no webhook in between ...
  run jq -r 'select(.event != "step.started" and .event != "step.succeeded" and .event != "run.started") |
    .event + " " + (.step // "") + (if .event == "notify.failed" then .data.event + " " + .data.url else "" end)' "$J"
  assert_line --index 0 "step.failed two"
  assert_line --index 1 "rollback.started two"
  assert_line --index 2 "undo.started one"
  assert_line --index 3 "undo.succeeded one"
  assert_line --index 4 "run.finished "
  # ... and each hung webhook's failure notice is journaled only after the
  # run finished: the steps never waited for it
  assert_equal "${#lines[@]}" 9
  run jq -r 'select(.event == "notify.failed") | .data.event + " " + .data.url' "$J"
  assert_output - <<EOF
step.failed $BASE/a
step.failed $BASE/b
rollback.started $BASE/a
rollback.started $BASE/b
EOF
  # the first POST timed out (or, on a machine too loaded to start it in
  # time, was cut too); the wait at the end (the largest timeout, 2 s) cut
  # the rest, each said so, on stderr as in the journal
  run jq -r 'select(.event == "notify.failed") | .data.error' "$J"
  [[ "${lines[0]}" == *"timed out"* || "${lines[0]}" == "not delivered: zdm waits at most 2000 ms"* ]]
  for i in 1 2 3; do
    assert_line --index "$i" "not delivered: zdm waits at most 2000 ms (the largest notify timeout) for the webhooks after the run"
  done
  assert_equal "$(grep -c 'not delivered' <<<"$stderr")" "$(grep -c '^not delivered' <<<"$output")"
  run zdm audit verify "$J"
  assert_equal "$status" 0
}

@test "notify: a run stopped by SIGINT still tells its webhooks (run.interrupted), exit 4" {
  start_httpd
  echo '{"/pause": {"status": 200}}' | control
  cat >"$T/rb.yml" <<EOF
zdm: 1
name: stopped
notify:
  - url: $BASE/pause
    on: [start, pause]
steps:
  - id: slow
    uses: exec
    with: {shell: "echo started >> '$T/effects'; sleep 30 # zdm-notify-marker-$BATS_TEST_NUMBER"}
EOF
  cd "$T"
  setsid "$ZDM_BIN" run rb.yml --state-dir "$T/state" >out.txt 2>&1 &
  local pid=$! rc=0
  for _ in $(seq 100); do grep -q started effects 2>/dev/null && break; sleep 0.05; done
  kill -INT "$pid"
  wait "$pid" || rc=$?
  [ "$rc" -eq 4 ] || fail "exit $rc, want 4: $(cat out.txt)"
  run jq -r '.zdm.event' < <(bodies_to /pause)
  assert_output - <<'EOF'
run.started
run.interrupted
EOF
  run jq -r 'select(.event == "notify.failed")' "$(journal_of "$T/state")"
  assert_output ""
}
