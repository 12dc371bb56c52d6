#!/usr/bin/env bats
# Secrets: resolved at run time from {env: NAME} or {file: PATH}; the child
# process gets the real value, and every text zdm writes (terminal, --output
# json, journal, log, status) shows `***` instead.
# state: file and PostgreSQL (ZDM_TEST_STATE=pg, tests/helper.bash)

bats_require_minimum_version 1.5.0
load helper

ENV_SECRET='envS3cr3t-Kq7vX2'
FILE_SECRET='fileS3cr3t-Zm9pW4'

# a runbook that pushes both secrets through argv, env and a shell string,
# has the child echo them to stdout and stderr, and ends with a step that
# fails with the secret in its error message
write_runbook() {
  printf '%s\n' "$FILE_SECRET" >"$T/secret.txt"   # trailing newline: not part of the secret
  cat >"$T/rb.yml" <<EOF
zdm: 1
name: secret-run
secrets:
  tok: {env: ZDM_T_TOKEN}
  fk: {file: $T/secret.txt}
steps:
  - id: argv
    uses: exec
    with:
      command: [sh, -c, 'echo "argv-out:\$1:\$2"; echo "argv-err:\$1:\$2" >&2; printf "%s|%s" "\$1" "\$2" >"$T/argv.seen"', x, "\${{ secrets.tok }}", "\${{ secrets.fk }}"]
  - id: env
    uses: exec
    with:
      shell: 'echo "env-out:\$TOK:\$FK"; echo "env-err:\$TOK:\$FK" >&2; printf "%s|%s" "\$TOK" "\$FK" >"$T/env.seen"'
      env: {TOK: "\${{ secrets.tok }}", FK: "\${{ secrets.fk }}"}
  - id: shell
    uses: exec
    with:
      shell: 'echo "shell-out:\${{ secrets.tok }}:\${{ secrets.fk }}"; echo "shell-err:\${{ secrets.tok }}" >&2'
  - id: uses-output
    uses: exec
    with:
      command: [echo, "prev=\${{ steps.env.outputs.stdout }}"]
  - id: fails
    uses: exec
    with:
      shell: 'echo "login failed for token \$TOK" >&2; exit 7'
      env: {TOK: "\${{ secrets.tok }}"}
EOF
}

# $T/rb.yml, runbook NAME with the one secret given as a YAML line
# ("tok: {env: VAR}") and one step that touches $T/ran
touch_runbook() {   # name secret
  cat >"$T/rb.yml" <<EOF
zdm: 1
name: $1
secrets:
  $2
steps:
  - id: touch
    uses: exec
    with: {command: [touch, "$T/ran"]}
EOF
}

# runbook NAME: one step running the shell text $2 with the env secret in
# $TOK and its output cut at 14 bytes; run with --output json (stdout in
# $T/out, stderr in $T/err); it succeeds
run_cut_output() {   # name shell
  cat >"$T/rb.yml" <<EOF
zdm: 1
name: $1
secrets:
  tok: {env: ZDM_T_TOKEN}
steps:
  - id: a
    uses: exec
    with:
      shell: '$2'
      env: {TOK: "\${{ secrets.tok }}"}
      output_limit: 14
EOF
  export ZDM_T_TOKEN="$ENV_SECRET"
  local rc=0
  zdm run rb.yml --state-dir "$T/state" --output json >"$T/out" 2>"$T/err" || rc=$?
  assert_equal "$rc" 0
}

# fail (and show where) if either secret, or a long prefix of one, is in a file
assert_no_secret() {
  local f
  for f in "$@"; do
    if grep -n -F -e "$ENV_SECRET" -e "$FILE_SECRET" -e "${ENV_SECRET:0:9}" -e "${FILE_SECRET:0:10}" "$f"; then
      echo "a secret leaked into $f" >&2
      return 1
    fi
  done
}

@test "secrets reach the child for real (argv, env, shell) but zdm writes only ***" {
  write_runbook
  export ZDM_T_TOKEN="$ENV_SECRET"
  local rc=0
  zdm run rb.yml --state-dir "$T/state" >"$T/out" 2>"$T/err" || rc=$?
  assert_equal "$rc" 6          # the last step failed; the exec steps before it have no undo: left in place

  # the commands got the real values
  assert_equal "$(cat "$T/argv.seen")" "$ENV_SECRET|$FILE_SECRET"
  assert_equal "$(cat "$T/env.seen")" "$ENV_SECRET|$FILE_SECRET"

  # nothing zdm wrote holds them
  assert_no_secret "$T/out" "$T/err"
  run ! grep -r -F -e "$ENV_SECRET" -e "$FILE_SECRET" "$T/state"
  assert_equal "$status" 1      # grep found nothing (and read the files fine)
  [ -n "$(ls "$T"/state/runs/*.jsonl)" ]

  # and *** shows where they were
  local j; j="$(journal_of "$T/state")"
  run jq -r 'select(.event=="step.started" and .step=="argv") | .data.params.command[4,5]' "$j"
  assert_output $'***\n***'
  run jq -r 'select(.event=="step.started" and .step=="env") | .data.params.env | .TOK + " " + .FK' "$j"
  assert_output '*** ***'
  run jq -r 'select(.event=="step.succeeded") | .step + " " + .data.outputs.stdout + " " + .data.outputs.stderr' "$j"
  assert_output - <<'EOF'
argv argv-out:***:*** argv-err:***:***
env env-out:***:*** env-err:***:***
shell shell-out:***:*** shell-err:***
uses-output prev=env-out:***:*** 
EOF
  run jq -r 'select(.event=="step.failed") | .data.error' "$j"
  assert_output 'exited with 7: login failed for token ***'
  run jq -r 'select(.event=="run.finished") | .data.error' "$j"
  assert_output 'exited with 7: login failed for token ***'
  # run.started names the secrets, never their values
  run jq -c 'select(.event=="run.started") | .data.secrets' "$j"
  assert_output '["tok","fk"]'

  # the terminal shows the redacted error too
  grep -F 'exited with 7: login failed for token ***' "$T/out"
}

@test "secrets: --output json, zdm log, zdm log --json and zdm status never show a secret" {
  write_runbook
  export ZDM_T_TOKEN="$ENV_SECRET"
  local rc=0
  zdm run rb.yml --state-dir "$T/state" --output json >"$T/json.out" 2>"$T/json.err" || rc=$?
  assert_equal "$rc" 6          # the exec steps have no undo: left in place
  assert_no_secret "$T/json.out" "$T/json.err"
  # stdout is the journal's records as events ("v" added, docs/ci.md), then the exit event
  assert_equal "$(jq -c 'del(.v)' "$T/json.out" | head -n -1)" "$(jq -c . "$(journal_of "$T/state")")"
  assert_equal "$(tail -n 1 "$T/json.out" | jq -r '.event, .exit_code' | paste -sd' ')" "exit 6"
  run jq -r 'select(.event=="step.failed") | .data.error' "$T/json.out"
  assert_output 'exited with 7: login failed for token ***'

  rc=0; zdm log --state-dir "$T/state" >"$T/log.out" 2>&1 || rc=$?
  assert_equal "$rc" 0
  assert_no_secret "$T/log.out"
  grep -F 'error: exited with 7: login failed for token ***' "$T/log.out"

  rc=0; zdm log --json --state-dir "$T/state" >"$T/logj.out" 2>&1 || rc=$?
  assert_equal "$rc" 0
  assert_no_secret "$T/logj.out"
  cmp "$T/logj.out" "$(journal_of "$T/state")"

  rc=0; zdm status --state-dir "$T/state" >"$T/status.out" 2>&1 || rc=$?
  assert_equal "$rc" 0
  assert_no_secret "$T/status.out"
  grep -E '^state +rolled_back$' "$T/status.out"
}

@test "secrets: a plugin's log lines and error message are redacted" {
  plugin_file "$T/pp" leak.talk <<'EOF'
return {
  description = "says its secret out loud",
  params = {{name = "token", type = "string", required = true, doc = "a secret"}},
  run = function(ctx, p)
    zdm.log("logging " .. p.token)
    print("printing", p.token)
    return nil, "rejected token " .. p.token
  end,
}
EOF
  cat >"$T/rb.yml" <<'EOF'
zdm: 1
name: plugin-leak
secrets:
  tok: {env: ZDM_T_TOKEN}
steps:
  - id: talk
    uses: leak.talk
    with: {token: "${{ secrets.tok }}"}
EOF
  export ZDM_T_TOKEN="$ENV_SECRET"
  local rc=0
  zdm run rb.yml --plugin-path "$T/pp" --state-dir "$T/state" >"$T/out" 2>"$T/err" || rc=$?
  assert_equal "$rc" 1
  assert_no_secret "$T/out" "$T/err"
  run ! grep -r -F "$ENV_SECRET" "$T/state"
  assert_equal "$status" 1
  grep -F 'talk: logging ***' "$T/err"
  grep -F 'rejected token ***' "$T/out"
  run jq -r 'select(.event=="step.failed") | .data.error' "$(journal_of "$T/state")"
  assert_output 'rejected token ***'
}

@test "secrets: output cut at output_limit does not leak the start of a secret" {
  run_cut_output trunc-leak 'printf "12345%szzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz\n" "$TOK"'
  # the first 14 bytes of what the command wrote end inside the secret: the
  # kept output is redacted whole, then cut
  run jq -c 'select(.event=="step.succeeded") | .data.outputs | [.stdout, .stdout_truncated]' "$T/out"
  assert_output '["12345***zzzzzz",true]'
  run grep -r -F "${ENV_SECRET:0:9}" "$T/state" "$T/out" "$T/err"
  assert_equal "$status" 1
}

@test "secrets: output cut at output_limit after an earlier secret does not leak the second one" {
  # redacting the first secret shortens the text, so the cut falls inside
  # the second one, which was captured only in part
  run_cut_output trunc-leak-2 'printf "%sab%s\n" "$TOK" "$TOK"'
  run grep -r -F "${ENV_SECRET:0:6}" "$T/state" "$T/out" "$T/err"
  assert_equal "$status" 1
  run jq -r 'select(.event=="step.succeeded") | .data.outputs.stdout_truncated' "$T/out"
  assert_output true
}

@test "secrets: a missing env var stops the run with FILE:LINE:COL and the variable; nothing runs" {
  touch_runbook missing-secret "tok: {env: ZDM_T_NOT_SET}"
  unset ZDM_T_NOT_SET
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output "zdm: rb.yml:4:8: secret 'tok': environment variable ZDM_T_NOT_SET is not set"
  assert_not_exist "$T/ran"
  assert_not_exist "$T/state"          # no journal, no lock: nothing was started

  # a dry run reads the secrets too
  run zdm run rb.yml --dry-run --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial 'environment variable ZDM_T_NOT_SET is not set'
  assert_not_exist "$T/state"

  # validate and plan do not read secrets
  run zdm validate rb.yml
  assert_equal "$status" 0
  run zdm plan rb.yml
  assert_equal "$status" 0
  assert_not_exist "$T/ran"
}

@test "secrets: a secret file that does not exist stops the run with exit 2; nothing runs" {
  touch_runbook missing-file "fk: {file: $T/no-such-secret}"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output "zdm: rb.yml:4:7: secret 'fk': cannot read file '$T/no-such-secret': No such file or directory"
  assert_not_exist "$T/ran"
  assert_not_exist "$T/state"
}

@test "secrets: a secret file that cannot be read (a directory) stops the run with exit 2" {
  # (chmod 000 would not stop root; a directory cannot be read as a file by anyone)
  mkdir "$T/secret-dir"
  touch_runbook dir-secret "fk: {file: $T/secret-dir}"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "rb.yml:4:7: secret 'fk': cannot read file '$T/secret-dir'"
  assert_not_exist "$T/ran"
}

@test "secrets: resume reads the secrets again: missing -> exit 2 and nothing appended; present -> redacted" {
  cat >"$T/rb.yml" <<EOF
zdm: 1
name: resume-secret
on_failure: pause
secrets:
  tok: {env: ZDM_T_TOKEN}
steps:
  - id: gated
    uses: exec
    with:
      shell: 'test -e "$T/gate" && echo "resumed with \$TOK" && printf "%s" "\$TOK" > "$T/seen"'
      env: {TOK: "\${{ secrets.tok }}"}
EOF
  export ZDM_T_TOKEN="$ENV_SECRET"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 4
  local j; j="$(journal_of "$T/state")"
  local size; size="$(stat -c %s "$j")"

  touch "$T/gate"
  unset ZDM_T_TOKEN
  run zdm resume rb.yml --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "secret 'tok': environment variable ZDM_T_TOKEN is not set"
  assert_equal "$(stat -c %s "$j")" "$size"
  assert_not_exist "$T/seen"

  export ZDM_T_TOKEN="$ENV_SECRET"
  local rc=0
  zdm resume rb.yml --state-dir "$T/state" >"$T/out" 2>"$T/err" || rc=$?
  assert_equal "$rc" 0
  assert_equal "$(cat "$T/seen")" "$ENV_SECRET"
  assert_no_secret "$T/out" "$T/err" "$j"
  run jq -r 'select(.event=="step.succeeded") | .data.outputs.stdout' "$j"
  assert_output 'resumed with ***'
}

@test "secrets: a plan that quotes a secret (ssh argv with a quote in the secret) shows *** in a dry run and zdm plan" {
  cat >"$T/q.yml" <<'EOF'
zdm: 1
name: q
secrets:
  tok: {env: TOK}
steps:
  - id: deploy
    uses: ssh
    with:
      hosts: [127.0.0.1:1]
      command: [deploy, "--token=${{ secrets.tok }}"]
EOF
  # the dry run's ssh check cannot reach 127.0.0.1:1 (exit 1); it shows the plan all the same
  run env TOK="it's-S3cret" "$ZDM_BIN" run "$T/q.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "check failed: "
  assert_output --partial "--token=***"
  refute_output --partial "S3cret"
  refute grep -q "S3cret" "$(journal_of "$T/state")"
}
