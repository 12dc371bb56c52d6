#!/usr/bin/env bats
# zdm audit export: one row per run of a state dir, as JSON (an array of
# objects) or CSV (RFC 4180: header, CRLF, quoted fields); --since filters by
# start time; a tampered journal is a row marked broken, not a hole.
# state: file and PostgreSQL (ZDM_TEST_STATE=pg, tests/helper.bash)

bats_require_minimum_version 1.5.0
load helper
ZDM_TEST_FILE_ONLY="zdm audit export does not read a PostgreSQL state yet (exit 2, says so)"

# $T/ok.yml succeeds; $T/bad.yml fails at step 'two' and is rolled back
runbooks() {
  cat >"$T/ok.yml" <<EOF
zdm: 1
name: good
steps:
  - id: one
    uses: exec
    with: {command: [echo, hello]}
EOF
  cat >"$T/bad.yml" <<EOF
zdm: 1
name: bad
steps:
  - id: one
    uses: exec
    with: {command: [touch, "$T/one.done"]}
    undo:
      uses: exec
      with: {command: [rm, -f, "$T/one.done"]}
  - id: two
    uses: exec
    with: {command: [sh, -c, "exit 3"]}
EOF
}

# python's csv module (an independent RFC 4180 reader) -> JSON rows
csv_to_json() {
  python3 -c '
import csv, json, sys
data = open(sys.argv[1], newline="").read()
assert data.endswith("\r\n") and "\n" not in data.replace("\r\n", ""), "lines must end in CRLF"
print(json.dumps(list(csv.DictReader(data.splitlines(True)))))' "$1"
}

@test "audit export: one JSON row per run with who, what, outcome and the chain's verdict" {
  runbooks
  GITHUB_ACTOR=octo-cat GITHUB_REPOSITORY=acme/shop GITHUB_RUN_ID=7 zdm run ok.yml --state-dir "$T/state" >/dev/null
  run zdm run bad.yml --state-dir "$T/state"
  assert_equal "$status" 1
  run --separate-stderr zdm audit export --state-dir "$T/state"
  assert_equal "$status" 0
  assert_equal "$stderr" ""
  echo "$output" >"$T/out.json"
  assert_equal "$(jq length "$T/out.json")" 2
  run jq -c '.[] | select(.runbook == "good") | [.status, .exit_code, .who, .ci, .ci_url, .steps, .steps_failed, .rolled_back, .verified, .chain, .records, .dry_run, .runbook_path]' "$T/out.json"
  assert_output "[\"succeeded\",0,\"octo-cat\",\"github-actions\",\"https://github.com/acme/shop/actions/runs/7\",1,0,false,\"ok\",\"sha256\",4,false,\"$T/ok.yml\"]"
  run jq -c '.[] | select(.runbook == "bad") | [.status, .exit_code, .steps_failed, .failed_step, .rolled_back, .steps_undone, .undo_failed, .verified, .verify_error, .who == .login, .steps_left_in_place]' "$T/out.json"
  assert_output '["rolled_back",1,1,"two",true,1,0,"ok",null,true,0]'
  # the facts match the journal and the file
  local jb; jb="$(grep -l '"name":"bad"' "$T"/state/runs/*.jsonl)"
  run jq -r --arg sha "$(sha256sum "$T/bad.yml" | cut -c1-64)" --arg run "$(basename "$jb" .jsonl)" \
    --arg start "$(head -1 "$jb" | jq -r .ts)" --arg fin "$(tail -1 "$jb" | jq -r .ts)" \
    '.[] | select(.runbook == "bad") | [.sha256 == $sha, .run == $run, .started == $start, .finished == $fin, (.duration_ms | type)] | map(tostring) | join(" ")' "$T/out.json"
  assert_output "true true true true number"
}

@test "audit export --format csv: RFC 4180 (header, CRLF, quoting) and the same rows as JSON" {
  runbooks
  # a directory name with a comma, a quote and a space forces quoting
  mkdir -p "$T/we,ird \"dir\""
  cp "$T/ok.yml" "$T/we,ird \"dir\"/ok.yml"
  zdm run "$T/we,ird \"dir\"/ok.yml" --state-dir "$T/state" >/dev/null
  run zdm run bad.yml --state-dir "$T/state"
  assert_equal "$status" 1
  zdm audit export --state-dir "$T/state" --format csv >"$T/out.csv"
  zdm audit export --state-dir "$T/state" --format json >"$T/out.json"
  run head -1 "$T/out.csv"
  assert_output $'run,runbook,runbook_path,sha256,git_commit,git_runbook,who,login,sudo_user,ci,ci_url,host,zdm_version,dry_run,started,finished,status,exit_code,duration_ms,steps,steps_failed,rolled_back,steps_undone,undo_failed,failed_step,records,chain,verified,verify_error,steps_left_in_place\r'
  grep -qF "\"$T/we,ird \"\"dir\"\"/ok.yml\"" "$T/out.csv"
  # every field of every row reads back equal to the JSON (null -> empty, bools as true/false)
  run python3 -c '
import json, sys
rows = json.loads(sys.argv[1]); js = json.load(open(sys.argv[2]))
assert len(rows) == len(js) == 2, (len(rows), len(js))
for r, j in zip(rows, js):
    for k, v in j.items():
        want = "" if v is None else ("true" if v is True else "false" if v is False else str(v))
        assert r[k] == want, (k, r[k], want)
print("same")' "$(csv_to_json "$T/out.csv")" "$T/out.json"
  assert_success
  assert_output same
}

@test "audit export --since: a date or an ISO-8601 time (zones honoured); bad input exits 2 naming the flag" {
  runbooks
  zdm run ok.yml --state-dir "$T/state" >/dev/null
  sleep 1.1
  zdm run ok.yml --state-dir "$T/state" >/dev/null
  mapfile -t JS < <(ls "$T"/state/runs/*.jsonl | sort)
  local t2; t2="$(head -1 "${JS[1]}" | jq -r .ts)"           # e.g. 2026-11-21T10:00:01.123Z
  run zdm audit export --state-dir "$T/state" --since "$t2"
  assert_equal "$status" 0
  assert_equal "$(jq -r '.[].run' <<<"$output")" "$(basename "${JS[1]}" .jsonl)"
  # the same instant written in another zone
  local t2z; t2z="$(date -u -d "${t2%Z} 2 hours" +%Y-%m-%dT%H:%M:%S).${t2:20:3}+02:00"
  run zdm audit export --state-dir "$T/state" --since "$t2z"
  assert_equal "$(jq length <<<"$output")" 1
  # a day: from its midnight UTC
  run zdm audit export --state-dir "$T/state" --since "$(date -u +%Y-%m-%d)"
  assert_equal "$(jq length <<<"$output")" 2
  run zdm audit export --state-dir "$T/state" --since "$(date -u -d tomorrow +%Y-%m-%d)" --format csv
  assert_equal "${#lines[@]}" 1     # the header only

  for bad in 2026-02-30 2026-11-01T25:00 yesterday 2026-11-01T10:00+2 ""; do
    run --separate-stderr zdm audit export --state-dir "$T/state" --since "$bad"
    assert_equal "$status" 2
    assert_equal "$stderr" "zdm audit export: --since '$bad': not a date; use 2026-11-01 (UTC midnight) or an ISO-8601 time such as 2026-11-01T10:00:00Z or 2026-11-01T12:00:00+02:00"
    assert_output ""
  done
  run --separate-stderr zdm audit export --state-dir "$T/state" --format xml
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm audit export: --format 'xml': use json or csv"
  run --separate-stderr zdm audit export --state-dir "$T/nothing"
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm audit export: no journals in '$T/nothing' (no runs/ in it; set --state-dir or ZDM_STATE_DIR)"
  run zdm audit export "$T/state"
  assert_equal "$status" 2
}

@test "audit export: a tampered or unkeyed journal is a row marked broken or unchecked, with the first bad line; no secret in the export" {
  runbooks
  cat >"$T/sec.yml" <<EOF
zdm: 1
name: secretive
secrets:
  pw: {env: DB_PASSWORD}
steps:
  - id: use
    uses: exec
    with: {command: [echo, "\${{ secrets.pw }}"]}
EOF
  DB_PASSWORD='hunter2-export' zdm run sec.yml --state-dir "$T/state" >/dev/null
  zdm run ok.yml --state-dir "$T/state" >/dev/null
  local j; j="$(grep -l '"name":"good"' "$T"/state/runs/*.jsonl)"
  sed -i '3s/"stdout":"hello/"stdout":"hellx/' "$j"
  run --separate-stderr zdm audit export --state-dir "$T/state"
  assert_equal "$status" 0
  run jq -c '.[] | [.runbook, .verified, .verify_error, .status]' <<<"$output"
  assert_line '["good","broken","3: hash does not match the record (line edited?)","succeeded"]'
  assert_line '["secretive","ok",null,"succeeded"]'
  zdm audit export --state-dir "$T/state" --format csv >"$T/out.csv"
  zdm audit export --state-dir "$T/state" >"$T/out.json"
  run grep -l hunter2-export "$T/out.csv" "$T/out.json" "$T"/state/runs/*.jsonl
  assert_failure
  assert_output ""

  # an HMAC journal read without the key: listed, marked unchecked
  ZDM_AUDIT_KEY=k-export zdm run ok.yml --state-dir "$T/keyed" >/dev/null
  run zdm audit export --state-dir "$T/keyed"
  assert_equal "$(jq -r '.[0].verified' <<<"$output")" unchecked
  ZDM_AUDIT_KEY=k-export run zdm audit export --state-dir "$T/keyed"
  assert_equal "$(jq -r '.[0].verified + " " + .[0].chain' <<<"$output")" "ok hmac-sha256"
}

@test "audit export --format csv: a who that a spreadsheet would run as a formula is quoted with a leading '" {
  runbooks
  ZDM_ACTOR='=HYPERLINK("http://x","y")' zdm run "$T/ok.yml" --state-dir "$T/state" >/dev/null 2>&1
  zdm audit export --state-dir "$T/state" --format csv >"$T/out.csv"
  run csv_to_json "$T/out.csv"
  assert_equal "$status" 0
  assert_equal "$(jq -r '.[0].who' <<<"$output")" "'=HYPERLINK(\"http://x\",\"y\")"
  # the JSON export keeps the value as recorded
  run zdm audit export --state-dir "$T/state" --format json
  assert_equal "$(jq -r '.[0].who' <<<"$output")" '=HYPERLINK("http://x","y")'
}

@test "audit export: a run whose rollback left a step in place counts it, and not as undone" {
  # an undo that runs and says it left the change: undo.succeeded, outcome left_in_place
  plugin_file "$T/plugins" t.keep <<'LUA'
return {
  description = "change nothing real; its undo leaves it",
  run = function(ctx, p) return nil end,
  undo = function(ctx, p, u) return {left_in_place = "kept on purpose"} end,
}
LUA
  cat >"$T/left.yml" <<EOF
zdm: 1
name: left
steps:
  - id: one
    uses: exec
    with: {command: [touch, "$T/one.done"]}
    undo: {uses: exec, with: {command: [rm, -f, "$T/one.done"]}}
  - id: two
    uses: t.keep
  - id: three
    uses: exec
    with: {command: [sh, -c, "exit 3"]}
EOF
  run zdm run left.yml --state-dir "$T/state" --plugin-path "$T/plugins"
  assert_equal "$status" 6
  run zdm audit export --state-dir "$T/state"
  assert_equal "$status" 0
  run jq -c '.[] | [.status, .exit_code, .steps_undone, .steps_left_in_place]' <<<"$output"
  assert_output '["rolled_back",6,1,1]'
}
