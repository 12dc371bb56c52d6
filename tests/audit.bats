#!/usr/bin/env bats
# zdm audit verify and the hash chain: every edited, dropped or reordered line
# is found and named; a re-chained journal passes a plain sha256 check (the
# limit of an unkeyed chain) but not an HMAC one; a torn last line is
# reported and ignored, damage anywhere else stops resume, log and status.
# state: file and PostgreSQL (ZDM_TEST_STATE=pg, tests/helper.bash)

bats_require_minimum_version 1.5.0
load helper

# $T/rb.yml, runbook NAME: step one echoes hello, step two touches $T/two.done
two_steps() {   # name
  cat >"$T/rb.yml" <<EOF
zdm: 1
name: $1
steps:
  - id: one
    uses: exec
    with: {command: [echo, hello]}
  - id: two
    uses: exec
    with: {command: [touch, "$T/two.done"]}
EOF
}

# a run of two steps: 6 records (run.started, 2 x started/succeeded, run.finished)
make_journal() {
  two_steps audited
  zdm run rb.yml --state-dir "$T/state" >/dev/null
  J="$(journal_of "$T/state")"
  [ "$(wc -l <"$J")" -eq 6 ]
}

# the stdout of `zdm audit verify` naming one journal: its LINE alone for a
# file; a run in PostgreSQL is reported as a state's runs are (docs/state.md):
# LINE with the run's OUTCOME after it, then the count, "1 journal: COUNTS"
verify_stdout() {   # line outcome counts
  if state_is_pg; then
    [ -z "$1" ] || printf '%s, %s\n' "$1" "$2"
    printf '1 journal: %s\n' "$3"
  else
    printf '%s\n' "$1"
  fi
}

# replace text in one line of a file (python: exact, no regex surprises)
edit_line() {   # file lineno old new
  python3 - "$@" <<'EOF'
import sys
path, n, old, new = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
lines = open(path, encoding="utf-8").read().split("\n")
assert old in lines[n - 1], (old, lines[n - 1])
lines[n - 1] = lines[n - 1].replace(old, new, 1)
open(path, "w", encoding="utf-8").write("\n".join(lines))
EOF
  journal_edited "$1"
}

@test "audit verify: an intact journal is ok (exit 0) with its record count, chain and last hash" {
  make_journal
  run --separate-stderr zdm audit verify "$J"
  assert_equal "$status" 0
  local last; last="$(tail -1 "$J" | jq -r .hash)"
  assert_output "$(verify_stdout "$(jname "$J"): ok, 6 records, chain sha256, last hash ${last:0:16}" \
    succeeded "1 complete, 0 incomplete, 0 broken, 0 unreadable")"
  assert_equal "$stderr" ""
  # and the chain really is SHA-256 over prev || canonical record
  cp "$J" "$T/copy.jsonl"
  rechain "$T/copy.jsonl"
  cmp "$J" "$T/copy.jsonl"
}

@test "audit verify: one byte changed in line 3's data -> exit 1 naming line 3" {
  make_journal
  assert_equal "$(jq -r 'select(.seq==3) | .data.outputs.stdout' "$J")" hello
  edit_line "$J" 3 '"stdout":"hello"' '"stdout":"hellx"'
  run --separate-stderr zdm audit verify "$J"
  assert_equal "$status" 1
  assert_equal "$stderr" "$(jname "$J"):3: hash does not match the record (line edited?)"
  assert_output "$(verify_stdout "" "" "0 complete, 0 incomplete, 1 broken, 0 unreadable")"
}

@test "audit verify: line 2 dropped -> exit 1 naming line 2" {
  make_journal
  sed -i 2d "$J"
  journal_edited "$J"
  run --separate-stderr zdm audit verify "$J"
  assert_equal "$status" 1
  [[ "$stderr" == "$(jname "$J"):2: "* ]]
  [[ "$stderr" == *"dropped"* ]]
}

@test "audit verify: lines 2 and 3 swapped -> exit 1 naming line 2" {
  make_journal
  sed -i -n '1p;2h;3{p;x;p};4,$p' "$J"
  journal_edited "$J"
  [ "$(jq -r .seq "$J" | tr '\n' ' ')" = "1 3 2 4 5 6 " ]
  run --separate-stderr zdm audit verify "$J"
  assert_equal "$status" 1
  [[ "$stderr" == "$(jname "$J"):2: "* ]]
  [[ "$stderr" == *"reordered"* ]]
}

@test "audit verify: the last line removed cannot be detected (documented limit)" {
  make_journal
  sed -i '$d' "$J"
  journal_edited "$J"
  run zdm audit verify "$J"
  assert_equal "$status" 0
  assert_output --partial "ok, 5 records"
}

@test "audit verify: an edited and re-chained sha256 journal passes (the limit of an unkeyed chain)" {
  make_journal
  edit_line "$J" 3 '"stdout":"hello"' '"stdout":"forged"'
  run zdm audit verify "$J"
  assert_equal "$status" 1
  rechain "$J"
  run zdm audit verify "$J"
  assert_equal "$status" 0
  assert_output --partial ": ok, 6 records, chain sha256"
}

@test "audit verify: with ZDM_AUDIT_KEY the chain is an HMAC, and a re-chain without the key is caught" {
  export ZDM_AUDIT_KEY='k3y-for-the-audit'
  make_journal
  run jq -r 'select(.seq==1) | .data.chain' "$J"
  assert_output hmac-sha256

  run zdm audit verify "$J"
  assert_equal "$status" 0
  assert_output --partial ": ok, 6 records, chain hmac-sha256"

  # the HMAC is what zdm says it is: recomputing it with the key changes nothing
  cp "$J" "$T/same.jsonl"
  rechain "$T/same.jsonl" "$ZDM_AUDIT_KEY"
  cmp "$J" "$T/same.jsonl"

  # a forger without the key re-chains with plain SHA-256 ...
  cp "$J" "$T/forged.jsonl"
  edit_line "$T/forged.jsonl" 3 '"stdout":"hello"' '"stdout":"forged"'
  rechain "$T/forged.jsonl"
  run --separate-stderr zdm audit verify "$T/forged.jsonl"
  assert_equal "$status" 1
  [[ "$stderr" == "$T/forged.jsonl:1: "* ]]

  # ... or with a key of their own ...
  cp "$J" "$T/forged2.jsonl"
  edit_line "$T/forged2.jsonl" 3 '"stdout":"hello"' '"stdout":"forged"'
  rechain "$T/forged2.jsonl" 'not-the-key'
  run --separate-stderr zdm audit verify "$T/forged2.jsonl"
  assert_equal "$status" 1
  [[ "$stderr" == "$T/forged2.jsonl:1: "* ]]

  # ... or relabels the chain as sha256
  cp "$J" "$T/forged3.jsonl"
  edit_line "$T/forged3.jsonl" 1 '"chain":"hmac-sha256"' '"chain":"sha256"'
  edit_line "$T/forged3.jsonl" 3 '"stdout":"hello"' '"stdout":"forged"'
  rechain "$T/forged3.jsonl"
  run --separate-stderr zdm audit verify "$T/forged3.jsonl"
  assert_equal "$status" 1
  assert_equal "$stderr" "$T/forged3.jsonl:1: chain is plain sha256 but ZDM_AUDIT_KEY is set: not made with the key (re-chained, or written before the key was set)"

  # the right key re-chains it fine (the key is what is trusted)
  rechain "$T/forged2.jsonl" "$ZDM_AUDIT_KEY"
  run zdm audit verify "$T/forged2.jsonl"
  assert_equal "$status" 0
}

@test "audit verify: an HMAC journal without ZDM_AUDIT_KEY -> exit 2, telling to set it" {
  ZDM_AUDIT_KEY=secret-key make_journal
  unset ZDM_AUDIT_KEY
  run --separate-stderr zdm audit verify "$J"
  assert_equal "$status" 2
  assert_equal "$stderr" "$(jname "$J"):1: chain is hmac-sha256 but ZDM_AUDIT_KEY is not set: cannot check it"
  assert_output "$(verify_stdout "" "" "0 complete, 0 incomplete, 0 broken, 1 unreadable")"
  # a wrong key: the first record does not match -> tampered or wrong key, exit 1
  ZDM_AUDIT_KEY=wrong-key run --separate-stderr zdm audit verify "$J"
  assert_equal "$status" 1
  [[ "$stderr" == "$(jname "$J"):1: hash does not match"* ]]
  # log and status need the key too
  run zdm log "$J"
  assert_equal "$status" 2
  assert_output --partial 'ZDM_AUDIT_KEY'
  ZDM_AUDIT_KEY=secret-key run zdm log "$J"
  assert_equal "$status" 0
}

@test "audit verify: several journals: exit 1 if any is tampered, 2 if one is unreadable" {
  file_only "loose journal files and a state's journal in one command"
  make_journal
  cp "$J" "$T/bad.jsonl"
  edit_line "$T/bad.jsonl" 3 '"stdout":"hello"' '"stdout":"hellx"'
  run --separate-stderr zdm audit verify "$J" "$T/bad.jsonl"
  assert_equal "$status" 1
  assert_output --partial "$J: ok, 6 records"
  assert_equal "$stderr" "$T/bad.jsonl:3: hash does not match the record (line edited?)"

  run --separate-stderr zdm audit verify "$J" "$T/missing.jsonl"
  assert_equal "$status" 2
  assert_output --partial "$J: ok"
  [[ "$stderr" == *"$T/missing.jsonl"*"No such file or directory"* ]]

  # tampered wins over unreadable
  run zdm audit verify "$T/missing.jsonl" "$T/bad.jsonl"
  assert_equal "$status" 1

  run zdm audit verify
  assert_equal "$status" 2
}

@test "audit verify: a torn last line (half a record, no newline) is ok with a torn note" {
  file_only "a torn line is a file's (a record is one INSERT)"
  make_journal
  local line; line="$(sed -n 2p "$J")"
  printf '%s' "${line:0:60}" >>"$J"
  run zdm audit verify "$J"
  assert_equal "$status" 0
  assert_output --regexp ": ok, 6 records, chain sha256, last hash [0-9a-f]{16}, torn last line ignored$"
  run zdm log "$J"
  assert_equal "$status" 0
  assert_output --partial 'note: the last line was torn'
}

@test "audit: zdm resume after a crash that tore the last line warns, cuts it off and goes on" {
  file_only "a torn line is a file's (a record is one INSERT)"
  cat >"$T/rb.yml" <<EOF
zdm: 1
name: torn
steps:
  - id: one
    uses: exec
    with: {command: [touch, "$T/one.done"]}
  - id: two
    uses: exec
    with: {command: [touch, "$T/two.done"]}
EOF
  # record 4 is step.started of 'two': half of it reaches the disk, then SIGKILL
  run env ZDM_TEST_TEAR_RECORD=4 "$ZDM_BIN" run rb.yml --state-dir "$T/state"
  assert_equal "$status" 137
  assert_exist "$T/one.done"
  assert_not_exist "$T/two.done"
  J="$(journal_of "$T/state")"
  [ "$(tail -c1 "$J" | od -An -c | tr -d ' ')" != '\n' ]   # no newline at the end: torn

  run zdm audit verify "$J"
  assert_equal "$status" 0
  assert_output --partial "ok, 3 records, chain sha256"
  assert_output --partial "torn last line ignored"

  run --separate-stderr zdm resume rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  [[ "$stderr" == *"warning: $J: the last line was torn"* ]]
  assert_exist "$T/two.done"

  # the torn piece is gone and the chain goes on from line 3
  run zdm audit verify "$J"
  assert_equal "$status" 0
  refute_output --partial torn
  run events "$J"
  assert_output - <<'EOF'
run.started
step.started one
step.succeeded one
run.resumed
step.started two
step.succeeded two
run.finished
EOF
}

@test "audit: damage in the middle makes resume, rollback, log and status refuse (exit 2) naming the line" {
  two_steps damaged
  # crash right after record 3 (step.succeeded of 'one')
  run env ZDM_TEST_CRASH_AFTER_RECORD=3 "$ZDM_BIN" run rb.yml --state-dir "$T/state"
  assert_equal "$status" 137
  J="$(journal_of "$T/state")"
  edit_line "$J" 3 '"stdout":"hello"' '"stdout":"hellx"'
  local size; size="$(stat -c %s "$J")"

  run zdm resume rb.yml --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "$(jname "$J"):3: hash does not match the record"
  assert_not_exist "$T/two.done"

  run zdm rollback rb.yml --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "$(jname "$J"):3:"

  run zdm log rb.yml --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "$(jname "$J"):3:"

  run zdm status rb.yml --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "$(jname "$J"):3:"

  # nothing was appended to the damaged journal
  assert_equal "$(stat -c %s "$J")" "$size"
}

@test "audit: with ZDM_AUDIT_KEY set, rollback refuses a keyed journal downgraded to plain sha256" {
  # audit verify calls such a journal tampered (exit 1); resume and rollback
  # must not act on it either, or a forger without the key chooses what the
  # undo puts back
  mkdir -p "$T/site/r1" "$T/site/r2" "$T/site/evil"
  ln -s r1 "$T/site/current"
  cat >"$T/rb.yml" <<EOF
zdm: 1
name: keyed
steps:
  - id: switch
    uses: release.symlink
    with: {link: "$T/site/current", target: r2}
EOF
  export ZDM_AUDIT_KEY='the-real-key'
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_equal "$(readlink "$T/site/current")" r2
  J="$(journal_of "$T/state")"

  # the forger points every recorded "previous" at their own directory and
  # re-chains with plain sha256, since they do not have the key
  sed -i -e 's/"chain":"hmac-sha256"/"chain":"sha256"/' -e 's/"previous":"r1"/"previous":"evil"/g' "$J"
  rechain "$J"
  run zdm audit verify "$J"
  assert_equal "$status" 1

  local size; size="$(stat -c %s "$J")"
  run zdm rollback rb.yml --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial 'ZDM_AUDIT_KEY'
  assert_equal "$(readlink "$T/site/current")" r2
  assert_equal "$(stat -c %s "$J")" "$size"
}

# ---- actor and provenance --------------------------------------------------

# a one-step runbook at $1 (default $T/rb.yml) named $2 (default prov)
one_step() {
  cat >"${1:-$T/rb.yml}" <<EOF
zdm: 1
name: ${2:-prov}
steps:
  - id: one
    uses: exec
    with: {command: [echo, hello]}
EOF
}

@test "audit: run.started records the actor from CI variables (GitHub, GitLab), SUDO_USER and ZDM_ACTOR" {
  one_step
  env -u ZDM_ACTOR GITHUB_ACTIONS=true GITHUB_ACTOR=octo-cat GITHUB_REPOSITORY=acme/shop \
    GITHUB_RUN_ID=4242 GITHUB_SHA=0123abc GITHUB_WORKFLOW=deploy SUDO_USER=bob \
    "$ZDM_BIN" run rb.yml --state-dir "$T/gh" >/dev/null
  J="$(journal_of "$T/gh")"
  run jq -c 'select(.seq==1) | .data.actor | [.who, .ci, .ci_url, .GITHUB_ACTOR, .GITHUB_REPOSITORY,
    .GITHUB_RUN_ID, .GITHUB_SHA, .GITHUB_WORKFLOW, .SUDO_USER, .login, (.uid|type), (.pid|type)]' "$J"
  assert_output "[\"octo-cat\",\"github-actions\",\"https://github.com/acme/shop/actions/runs/4242\",\"octo-cat\",\"acme/shop\",\"4242\",\"0123abc\",\"deploy\",\"bob\",\"$(id -un)\",\"number\",\"number\"]"
  run jq -r 'select(.seq==1) | [.data.host, .data.actor.host, .data.zdm_version, .data.runbook] | join(" ")' "$J"
  assert_output "$(hostname) $(hostname) $("$ZDM_BIN" version | awk '{print $2}') $T/rb.yml"
  run zdm log "$J"
  assert_line --index 3 "  acting for octo-cat, sudo by bob"
  assert_line --index 4 "  ci github-actions https://github.com/acme/shop/actions/runs/4242"

  env GITLAB_CI=true GITLAB_USER_LOGIN=gl-user CI_JOB_URL=https://gitlab.example/acme/shop/-/jobs/7 \
    CI_PIPELINE_ID=99 CI_COMMIT_SHA=fedcba "$ZDM_BIN" run rb.yml --state-dir "$T/gl" >/dev/null
  run jq -c 'select(.seq==1) | .data.actor | [.who, .ci, .ci_url, .CI_PIPELINE_ID, .CI_COMMIT_SHA]' "$(journal_of "$T/gl")"
  assert_output '["gl-user","gitlab-ci","https://gitlab.example/acme/shop/-/jobs/7","99","fedcba"]'

  # ZDM_ACTOR names the person behind a shared account first; empty variables are not recorded
  env ZDM_ACTOR=carol GITHUB_ACTOR=octo-cat SUDO_USER= "$ZDM_BIN" run rb.yml --state-dir "$T/za" >/dev/null
  run jq -c 'select(.seq==1) | .data.actor | [.who, .ZDM_ACTOR, has("SUDO_USER")]' "$(journal_of "$T/za")"
  assert_output '["carol","carol",false]'

  # no CI, no sudo: the login is who
  env -u GITHUB_ACTOR -u GITHUB_ACTIONS -u GITHUB_RUN_ID -u GITLAB_CI -u GITLAB_USER_LOGIN -u CI_JOB_URL \
    -u CI -u SUDO_USER -u ZDM_ACTOR -u BUILDKITE -u CIRCLECI -u JENKINS_URL \
    "$ZDM_BIN" run rb.yml --state-dir "$T/plain" >/dev/null
  run jq -c 'select(.seq==1) | .data.actor | [.who == .login, has("ci")]' "$(journal_of "$T/plain")"
  assert_output '[true,false]'
}

@test "audit: run.started records the git commit of the runbook and whether the file differs from it" {
  mkdir -p "$T/repo/deploy"
  one_step "$T/repo/deploy/rb.yml"
  git -C "$T/repo" init -q
  git -C "$T/repo" add deploy/rb.yml
  git -C "$T/repo" -c user.name=t -c user.email=t@example.invalid commit -qm "runbook"
  local head; head="$(git -C "$T/repo" rev-parse HEAD)"

  zdm run "$T/repo/deploy/rb.yml" --state-dir "$T/s1" >/dev/null
  run jq -c 'select(.seq==1) | .data.git' "$(journal_of "$T/s1")"
  assert_output "{\"commit\":\"$head\",\"root\":\"$T/repo\",\"runbook\":\"clean\"}"
  run zdm log "$(journal_of "$T/s1")"
  assert_output --partial "  git $head in $T/repo, runbook clean"

  echo "# edited after the commit" >>"$T/repo/deploy/rb.yml"
  zdm run "$T/repo/deploy/rb.yml" --state-dir "$T/s2" >/dev/null
  run jq -r 'select(.seq==1) | .data.git.commit + " " + .data.git.runbook' "$(journal_of "$T/s2")"
  assert_output "$head modified"

  one_step "$T/repo/deploy/new.yml" newbook
  zdm run "$T/repo/deploy/new.yml" --state-dir "$T/s3" >/dev/null
  run jq -r 'select(.seq==1) | .data.git.runbook' "$(journal_of "$T/s3")"
  assert_output untracked

  # outside a repository there is no git field at all
  one_step "$T/rb.yml"
  zdm run rb.yml --state-dir "$T/s4" >/dev/null
  run jq -c --arg sha "$(sha256sum "$T/rb.yml" | cut -c1-64)" 'select(.seq==1) | .data | [has("git"), .sha256 == $sha]' "$(journal_of "$T/s4")"
  assert_output '[false,true]'
}

# ---- zdm audit verify over a state dir ------------------------------------------

# three finished runs of the two-step runbook in $T/state: $J1 $J2 $J3 (sorted)
three_runs() {
  make_journal
  zdm run rb.yml --state-dir "$T/state" >/dev/null
  zdm run rb.yml --state-dir "$T/state" >/dev/null
  mapfile -t JS < <(ls "$T"/state/runs/*.jsonl | sort)
  [ "${#JS[@]}" -eq 3 ]
  J1="${JS[0]}" J2="${JS[1]}" J3="${JS[2]}"
}

@test "audit verify STATE_DIR: every journal ok, with its outcome; exit 0" {
  three_runs
  run --separate-stderr zdm audit verify "$T/state"
  assert_equal "$status" 0
  assert_equal "$stderr" ""
  assert_line --index 0 --regexp "^$(jname "$J1"): ok, 6 records, chain sha256, last hash [0-9a-f]{16}, succeeded$"
  assert_line --index 2 --regexp "^$(jname "$J3"): ok, 6 records, chain sha256, last hash [0-9a-f]{16}, succeeded$"
  assert_line --index 3 "3 journals: 3 complete, 0 incomplete, 0 broken, 0 unreadable"
  # no argument: ZDM_STATE_DIR, else ./.zdm
  ZDM_STATE_DIR="$T/state" run zdm audit verify
  assert_equal "$status" 0
  assert_line --index 3 "3 journals: 3 complete, 0 incomplete, 0 broken, 0 unreadable"
  move_state "$T/state" "$T/.zdm"
  run zdm audit verify
  assert_equal "$status" 0
  assert_output --partial "3 journals: 3 complete"
}

@test "audit verify STATE_DIR: a tampered, a reordered and a dropped-line journal are each named at their first bad line; exit 1" {
  three_runs
  edit_line "$J1" 3 '"stdout":"hello"' '"stdout":"hellx"'
  sed -i -n '1p;2h;3{p;x;p};4,$p' "$J2"
  sed -i 4d "$J3"
  journal_edited "$J2"
  journal_edited "$J3"
  run --separate-stderr zdm audit verify "$T/state"
  assert_equal "$status" 1
  assert_equal "$stderr" "$(jname "$J1"):3: hash does not match the record (line edited?)
$(jname "$J2"):2: seq 3 where 2 was expected (line dropped or reordered?)
$(jname "$J3"):4: seq 5 where 4 was expected (line dropped or reordered?)"
  assert_output "3 journals: 0 complete, 0 incomplete, 3 broken, 0 unreadable"
}

@test "audit verify STATE_DIR: a truncated journal (last records cut off) is listed as incomplete, naming where it ends" {
  three_runs
  head -n 4 "$J2" >"$T/cut" && cat "$T/cut" >"$J2"     # step.succeeded two and run.finished are gone
  journal_edited "$J2"
  run --separate-stderr zdm audit verify "$T/state"
  assert_equal "$status" 0
  assert_line --index 1 --regexp "^$(jname "$J2"): ok, 4 records, chain sha256, last hash [0-9a-f]{16}, incomplete: no run.finished; ends at line 4 \(step.started two\), running or crashed, and no zdm holds its lock: paused, crashed or killed, or its last lines were cut off$"
  assert_line --index 3 "3 journals: 2 complete, 1 incomplete, 0 broken, 0 unreadable"
}

@test "audit verify STATE_DIR: a journal cut in the middle of a line is incomplete, and its torn tail named" {
  file_only "a torn line is a file's (a record is one INSERT)"
  three_runs
  # cut in the middle of a line: the torn tail is named too
  printf '%s' "$(sed -n 5p "$J3" | cut -c1-40)" >"$T/piece"
  head -n 4 "$J3" >"$T/cut" && cat "$T/cut" "$T/piece" >"$J3"
  run zdm audit verify "$T/state"
  assert_equal "$status" 0
  assert_line --index 2 --partial "$J3: ok, 4 records, chain sha256, last hash"
  assert_line --index 2 --partial ", torn last line ignored, incomplete: no run.finished; ends at line 4"
}

@test "audit verify STATE_DIR: a run in progress is incomplete and named as running by its lock holder" {
  cat >"$T/rb.yml" <<EOF
zdm: 1
name: slow
steps:
  - id: hold
    uses: wait
    with: {duration: 30s}
EOF
  "$ZDM_BIN" run rb.yml --state-dir "$T/state" >"$T/run.out" 2>&1 3>&- &
  local pid=$! i
  for i in $(seq 100); do
    journal_of "$T/state" >/dev/null 2>&1 && grep -q step.started "$(journal_of "$T/state")" && break
    sleep 0.05
  done
  run zdm audit verify "$T/state"
  kill -TERM "$pid"
  wait "$pid" || true
  assert_equal "$status" 0
  assert_line --index 0 --regexp ", incomplete: running \(pid $pid holds the lock\)$"
  # stopped by the signal: it says so (run.interrupted), still no run.finished
  run zdm audit verify "$T/state"
  assert_line --index 0 --regexp "incomplete: no run.finished; ends at line [0-9]+ \\(run.interrupted\\), interrupted, and no zdm holds its lock"
}

@test "audit verify STATE_DIR: HMAC chains need the key; a journal re-chained without it is caught at line 1" {
  export ZDM_AUDIT_KEY='state-dir-key'
  three_runs
  run zdm audit verify "$T/state"
  assert_equal "$status" 0
  assert_output --partial "3 journals: 3 complete"
  # re-chained by someone without the key (with a key of their own)
  edit_line "$J2" 3 '"stdout":"hello"' '"stdout":"forged"'
  rechain "$J2" 'not-the-key'
  run --separate-stderr zdm audit verify "$T/state"
  assert_equal "$status" 1
  assert_equal "$stderr" "$(jname "$J2"):1: hash does not match the record (line edited?)"
  assert_output --partial "3 journals: 2 complete, 0 incomplete, 1 broken, 0 unreadable"
  # without the key nothing can be checked: exit 2, telling why
  unset ZDM_AUDIT_KEY
  run --separate-stderr zdm audit verify "$T/state"
  assert_equal "$status" 2
  [[ "$stderr" == "$(jname "$J1"):1: chain is hmac-sha256 but ZDM_AUDIT_KEY is not set: cannot check it"* ]]
  assert_output "3 journals: 0 complete, 0 incomplete, 0 broken, 3 unreadable"
}

@test "audit verify: usage errors exit 2 (no state dir, export's options, journals and --state-dir together)" {
  file_only "the messages name state dirs"
  run --separate-stderr zdm audit verify
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm audit verify: no state dir '$T/.zdm' (name journals or a state dir, or set --state-dir / ZDM_STATE_DIR)"
  mkdir "$T/empty"
  run --separate-stderr zdm audit verify "$T/empty"
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm audit verify: '$T/empty' is not a state dir (no runs/ in it)"
  run --separate-stderr zdm audit verify --since 2026-01-01 "$T/empty"
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm audit verify: option '--since' does not apply here (it is for zdm audit export)"
  run zdm audit verify --state-dir "$T/empty" x.jsonl
  assert_equal "$status" 2
  run zdm audit frobnicate
  assert_equal "$status" 2
  assert_output "zdm audit: unknown subcommand 'frobnicate' (verify or export)"
}

# journals written by zdm before it hashed canonical lines as they are
# (tests/data/journal: a failed run of three steps, rolled back; one plain,
# one HMAC with key fixture-key): still verify, and an edit is still found
@test "audit verify: journals written by an earlier zdm verify, plain and HMAC; an edit is found" {
  local d="$BATS_TEST_DIRNAME/data/journal"
  run "$ZDM_BIN" audit verify "$d/20261206T023536Z-5590.jsonl"
  [ "$status" -eq 0 ]
  [[ "$output" == *"ok, 11 records, chain sha256, last hash e9c746f059de2332"* ]]
  ZDM_AUDIT_KEY=fixture-key run "$ZDM_BIN" audit verify "$d/20261206T023536Z-779c.jsonl"
  [ "$status" -eq 0 ]
  [[ "$output" == *"ok, 11 records, chain hmac-sha256, last hash b9738a723ef9ba20"* ]]
  ZDM_AUDIT_KEY=other run "$ZDM_BIN" audit verify "$d/20261206T023536Z-779c.jsonl"
  [ "$status" -eq 1 ]
  mkdir -p "$T/j"
  sed '5s/"attempt":1/"attempt":2/' "$d/20261206T023536Z-5590.jsonl" >"$T/j/20261206T023536Z-5590.jsonl"
  ! cmp -s "$d/20261206T023536Z-5590.jsonl" "$T/j/20261206T023536Z-5590.jsonl"
  run "$ZDM_BIN" audit verify "$T/j/20261206T023536Z-5590.jsonl"
  [ "$status" -eq 1 ]
  [[ "$output" == *"20261206T023536Z-5590.jsonl:5: hash does not match the record"* ]]
}
