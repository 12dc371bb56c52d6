#!/usr/bin/env bats
# zdm state push DIR URL (cmd_state.c, store_import in core/store_pg.c,
# docs/state.md): the runs of a state dir copied into a PostgreSQL state,
# each journal's chain checked first, each run in one transaction, the lines
# as they are; then status, log, audit verify and audit export read the same
# runs from PostgreSQL.  Also the least-privilege roles of docs/state.md: a
# SELECT-only auditor reads everything and writes nothing.  A real
# PostgreSQL 15 made by the test (tests/servers/postgres.bash), one database
# per test.

bats_require_minimum_version 1.5.0
load helper
load servers/postgres

setup_file() {
  pg_start push
}

teardown_file() {
  pg_stop_all
}

# this test's own database, zdm's schema in it; URL and PGPASSWORD set
newstate() {
  DB="t${BATS_TEST_NUMBER}"
  pg_createdb push "$DB"
  URL="$(pg_uri push "$DB")"
  export PGPASSWORD="$PG_PASSWORD"
  run zdm state init "$URL"
  assert_success
}

sql() {
  pg_psql push "$DB" -c "$1"
}

# the records of run $1 in PostgreSQL, one line each, in seq order
pg_lines() {
  sql "SELECT record FROM zdm.journal WHERE run_id = '$1' ORDER BY seq"
}

# the id of the newest run in state dir $1
rid() {
  basename "$(journal_of "$1")" .jsonl
}

# runbooks in $T: ok.yml (name okbook, succeeds), bad.yml (failbook: step
# two fails, step one is undone), appr.yml (apprbook: an approval step
# 'gate' for alice, then 'after'), slow.yml (slowbook: step two waits while
# $T/hold exists, at most 20 s)
runbooks() {
  cat >"$T/ok.yml" <<EOF
zdm: 1
name: okbook
steps:
  - id: one
    uses: exec
    with: {command: [echo, one]}
  - id: two
    uses: exec
    with: {command: [echo, two]}
EOF
  cat >"$T/bad.yml" <<EOF
zdm: 1
name: failbook
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
  cat >"$T/appr.yml" <<EOF
zdm: 1
name: apprbook
steps:
  - id: gate
    uses: approval
    with: {approvers: [alice], message: "go?"}
  - id: after
    uses: exec
    with: {command: [echo, after]}
EOF
  cat >"$T/wait.sh" <<'EOF'
#!/bin/sh
i=0
while [ -e "$1/hold" ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
EOF
  chmod +x "$T/wait.sh"
  cat >"$T/slow.yml" <<EOF
zdm: 1
name: slowbook
steps:
  - id: gate
    uses: approval
    with: {approvers: [alice], message: "go?"}
  - id: two
    uses: exec
    with: {command: ["$T/wait.sh", "$T"]}
EOF
}

# wait (up to 10 s) until file $1 holds a record "$2" (event [step])
await_file_record() {
  local i
  for i in $(seq 200); do
    [ -f "$1" ] && events "$1" | grep -qx "$2" && return 0
    sleep 0.05
  done
  echo "no record '$2' in $1 in 10 s" >&2
  return 1
}

# the output of a read command with the run's journal ($1: path or ref)
# replaced by the run id, and what only a file can have (a torn line) left out
norm() {
  sed -E 's#(/|pg:[^ ]*/)([0-9]{8}T[0-9]{6}Z-[0-9a-f]+)(\.jsonl)?#/\2#g;
    s#[^ ]*/([0-9]{8}T[0-9]{6}Z-[0-9a-f]+)#\1#g; s/, torn last line ignored//;
    /^note: the last line was torn/d'
}

@test "state push: finished, rolled-back, paused and crashed runs with an HMAC chain copied line for line; status, log, audit verify and audit export agree" {
  newstate
  runbooks
  export ZDM_AUDIT_KEY=push-k3y
  run zdm run "$T/ok.yml" --state-dir "$T/st"
  assert_success
  ok="$(rid "$T/st")"
  run zdm run "$T/bad.yml" --state-dir "$T/st"
  [ "$status" -eq 1 ]
  bad="$(rid "$T/st")"
  run zdm run "$T/appr.yml" --state-dir "$T/st" --non-interactive
  [ "$status" -eq 4 ]
  appr="$(rid "$T/st")"
  # killed mid-write of record 4: a torn last line
  ZDM_TEST_TEAR_RECORD=4 run zdm run "$T/ok.yml" --state-dir "$T/st"
  [ "$status" -eq 137 ]
  torn="$(rid "$T/st")"
  [ "$(tail -c1 "$T/st/runs/$torn.jsonl" | od -An -c | tr -d ' ')" != '\n' ]
  n_ok=$(wc -l <"$T/st/runs/$ok.jsonl") n_bad=$(wc -l <"$T/st/runs/$bad.jsonl")
  n_appr=$(wc -l <"$T/st/runs/$appr.jsonl") n_torn=$(wc -l <"$T/st/runs/$torn.jsonl")
  [ "$n_torn" -eq 3 ]
  run zdm state push "$T/st" "$URL"
  assert_success
  assert_line "$ok: copied $n_ok records"
  assert_line "$bad: copied $n_bad records"
  assert_line "$appr: copied $n_appr records"
  assert_line "$torn: copied 3 records (torn last line left out)"
  assert_line "pushed $T/st to zdm@127.0.0.1:$(pg_port push)/$DB (schema zdm): copied 4 runs / $((n_ok + n_bad + n_appr + 3)) records, skipped 0, refused 0"
  refute_output --partial "$PG_PASSWORD"
  # the rows are the file's lines, byte for byte (the torn piece left out)
  for id in "$ok" "$bad" "$appr"; do
    diff <(pg_lines "$id") "$T/st/runs/$id.jsonl"
  done
  diff <(pg_lines "$torn") <(head -n 3 "$T/st/runs/$torn.jsonl")
  [ "$(sql "SELECT count(*) FROM zdm.journal WHERE seq::text <> (record::jsonb)->>'seq'")" = 0 ]
  # the same answers from both states
  for id in "$ok" "$bad" "$appr" "$torn"; do
    a="$(zdm status "$id" --state-dir "$T/st" | grep -v '^journal ')"
    b="$(zdm status "$id" --state "$URL" | grep -v '^journal ')"
    [ "$a" = "$b" ]
    a="$(zdm log "$id" --state-dir "$T/st" | norm)"
    b="$(zdm log "$id" --state "$URL" | norm)"
    [ "$a" = "$b" ]
    diff <(zdm log "$id" --json --state-dir "$T/st") <(zdm log "$id" --json --state "$URL")
  done
  # zdm runs: the summaries written with the copied records are the state dir's
  diff <(zdm runs --state-dir "$T/st" --output json | jq -S 'map(del(.file))') \
    <(zdm runs --state "$URL" --output json | jq -S 'map(del(.file))')
  [ "$(zdm runs --state "$URL" --output json | jq -r 'map(.status) | sort | join(",")')" = \
    "paused,rolled_back,stale,succeeded" ]
  run zdm status "$bad" --state "$URL"
  assert_output --partial "state    rolled_back"
  run zdm status "$appr" --state "$URL"
  assert_output --partial "waiting for approval of step 'gate'"
  run zdm audit verify "$T/st"
  assert_success
  file_verify="$(echo "$output" | norm | sort)"
  run zdm audit verify --state "$URL"
  assert_success
  assert_output --partial "4 journals: 2 complete, 2 incomplete, 0 broken, 0 unreadable"
  assert_output --partial "chain hmac-sha256"
  [ "$(echo "$output" | norm | sort)" = "$file_verify" ]
  # export: the same bytes, JSON and CSV, also through ZDM_STATE
  zdm audit export --state-dir "$T/st" >"$T/file.json"
  zdm audit export --state "$URL" >"$T/pg.json"
  cmp "$T/file.json" "$T/pg.json"
  [ "$(jq length "$T/pg.json")" = 4 ]
  [ "$(jq -r '[.[] | .verified] | unique | join(",")' "$T/pg.json")" = ok ]
  zdm audit export --state-dir "$T/st" --format csv --since 2020-01-01 >"$T/file.csv"
  ZDM_STATE="$URL" zdm audit export --format csv --since 2020-01-01 >"$T/pg.csv"
  cmp "$T/file.csv" "$T/pg.csv"
  [ "$(wc -l <"$T/pg.csv")" -eq 5 ]
  # without the key, the HMAC chains are not checked: unchecked, as for files
  unset ZDM_AUDIT_KEY
  diff <(zdm audit export --state-dir "$T/st") <(zdm audit export --state "$URL")
  run zdm audit verify --state "$URL"
  [ "$status" -eq 2 ]
  # the copied paused run goes on from PostgreSQL, with the key
  ZDM_ACTOR=alice ZDM_AUDIT_KEY=push-k3y run zdm approve "$appr" gate --state "$URL"
  assert_success
  ZDM_AUDIT_KEY=push-k3y run zdm resume "$appr" --state "$URL"
  assert_success
  ZDM_AUDIT_KEY=push-k3y run zdm audit verify --state "$URL" "$appr"
  assert_success
}

@test "state push: pushing again copies nothing and says so; a run PostgreSQL holds fewer records of gets the rest; one it holds more of is skipped" {
  newstate
  runbooks
  run zdm run "$T/ok.yml" --state-dir "$T/st"
  assert_success
  ok="$(rid "$T/st")"
  run zdm run "$T/appr.yml" --state-dir "$T/st" --non-interactive
  [ "$status" -eq 4 ]
  a1="$(rid "$T/st")"
  run zdm run "$T/appr.yml" --state-dir "$T/st" --non-interactive
  [ "$status" -eq 4 ]
  a2="$(rid "$T/st")"
  run zdm state push "$T/st" "$URL"
  assert_success
  assert_output --partial "copied 3 runs"
  rows="$(sql "SELECT count(*) FROM zdm.journal")"
  written="$(sql "SELECT max(xmin::text::bigint) FROM zdm.journal")"
  run zdm state push "$T/st" "$URL"
  assert_success
  assert_line "$ok: skipped: already there ($(wc -l <"$T/st/runs/$ok.jsonl") records)"
  assert_line --partial "copied 0 runs / 0 records, skipped 3, refused 0"
  assert_line "nothing to copy: every run of the state dir is there already"
  [ "$(sql "SELECT count(*) FROM zdm.journal")" = "$rows" ]
  [ "$(sql "SELECT max(xmin::text::bigint) FROM zdm.journal")" = "$written" ]
  # a1 goes on in the state dir: the push appends the rest
  had=$(wc -l <"$T/st/runs/$a1.jsonl")
  ZDM_ACTOR=alice run zdm approve "$a1" gate --state-dir "$T/st"
  assert_success
  run zdm resume "$a1" --state-dir "$T/st"
  assert_success
  now=$(wc -l <"$T/st/runs/$a1.jsonl")
  # a2 goes on in PostgreSQL: the state dir has fewer records of it
  ZDM_ACTOR=alice run zdm approve "$a2" gate --state "$URL"
  assert_success
  run zdm state push "$T/st" "$URL"
  assert_success
  assert_line "$a1: appended $((now - had)) records after the $had already there"
  assert_line "$a2: skipped: already there with 1 more record (the run went on there)"
  assert_line --partial "copied 1 run / $((now - had)) records, skipped 2, refused 0"
  diff <(pg_lines "$a1") "$T/st/runs/$a1.jsonl"
  [ "$(pg_lines "$a2" | wc -l)" -eq "$(( $(wc -l <"$T/st/runs/$a2.jsonl") + 1 ))" ]
  run zdm status "$a1" --state "$URL"
  assert_output --partial "state    succeeded"
  # its summary followed the appended records; a2's is the one PostgreSQL wrote
  [ "$(zdm runs --state "$URL" --output json | jq -r --arg a "$a1" '.[] | select(.run == $a) | "\(.status) \(.records)"')" = "succeeded $now" ]
  [ "$(zdm runs --state "$URL" --output json | jq -r --arg a "$a2" '.[] | select(.run == $a) | .records')" = \
    "$(pg_lines "$a2" | wc -l)" ]
  run zdm audit verify --state "$URL"
  assert_success
  assert_output --partial "3 journals: 2 complete, 1 incomplete, 0 broken, 0 unreadable"
  # an empty runs/ copies nothing
  mkdir -p "$T/empty/runs"
  run zdm state push "$T/empty" "$URL"
  assert_success
  assert_line "nothing to copy: no runs in the state dir"
}

@test "state push: a tampered journal is refused and named (FILE:LINE, what), the others copied, exit 1; an HMAC journal without the key is refused, exit 2" {
  newstate
  runbooks
  run zdm run "$T/ok.yml" --state-dir "$T/st"
  assert_success
  a="$(rid "$T/st")"
  run zdm run "$T/bad.yml" --state-dir "$T/st"
  [ "$status" -eq 1 ]
  b="$(rid "$T/st")"
  run zdm run "$T/ok.yml" --state-dir "$T/st"
  assert_success
  c="$(rid "$T/st")"
  # line 3 of b edited by hand
  sed -i '3s/"ts":"2/"ts":"1/' "$T/st/runs/$b.jsonl"
  run zdm state push "$T/st" "$URL"
  [ "$status" -eq 1 ]
  assert_output --partial "zdm state push: $T/st/runs/$b.jsonl:3: hash does not match the record (line edited?): refused, nothing of it copied"
  assert_line "$a: copied $(wc -l <"$T/st/runs/$a.jsonl") records"
  assert_line "$c: copied $(wc -l <"$T/st/runs/$c.jsonl") records"
  assert_line --partial "copied 2 runs / $(( $(wc -l <"$T/st/runs/$a.jsonl") + $(wc -l <"$T/st/runs/$c.jsonl") )) records, skipped 0, refused 1"
  [ "$(sql "SELECT count(*) FROM zdm.journal WHERE run_id = '$b'")" = 0 ]
  # refused again, the others already there
  run zdm state push "$T/st" "$URL"
  [ "$status" -eq 1 ]
  assert_line --partial "copied 0 runs / 0 records, skipped 2, refused 1"
  refute_output --partial "nothing to copy"
  # a journal with a record dropped from the middle: named at its line
  run zdm run "$T/ok.yml" --state-dir "$T/st2"
  assert_success
  d="$(rid "$T/st2")"
  sed -i '4d' "$T/st2/runs/$d.jsonl"
  run zdm state push "$T/st2" "$URL"
  [ "$status" -eq 1 ]
  assert_output --partial "$T/st2/runs/$d.jsonl:4: seq 5 where 4 was expected"
  [ "$(sql "SELECT count(*) FROM zdm.journal WHERE run_id = '$d'")" = 0 ]
  # an HMAC chain cannot be checked without the key: refused (exit 2), the rest copied
  ZDM_AUDIT_KEY=k3y run zdm run "$T/ok.yml" --state-dir "$T/st3"
  assert_success
  h="$(rid "$T/st3")"
  run zdm run "$T/bad.yml" --state-dir "$T/st3.plain"
  [ "$status" -eq 1 ]
  cp "$T"/st3.plain/runs/*.jsonl "$T/st3/runs/"
  run zdm state push "$T/st3" "$URL"
  [ "$status" -eq 2 ]
  assert_output --partial "$T/st3/runs/$h.jsonl:1: chain is hmac-sha256 but ZDM_AUDIT_KEY is not set"
  assert_line --partial "copied 1 run / "
  assert_line --partial "skipped 0, refused 1"
  [ "$(sql "SELECT count(*) FROM zdm.journal WHERE run_id = '$h'")" = 0 ]
  # with the key, a plain chain is one anybody could have made: refused (exit 1)
  ZDM_AUDIT_KEY=k3y run zdm state push "$T/st3" "$URL"
  [ "$status" -eq 1 ]
  assert_output --partial "chain is plain sha256 but ZDM_AUDIT_KEY is set"
  assert_line "$h: copied $(wc -l <"$T/st3/runs/$h.jsonl") records"
  diff <(pg_lines "$h") "$T/st3/runs/$h.jsonl"
}

@test "state push: a run that went on differently in PostgreSQL is refused loudly, nothing overwritten, exit 1" {
  newstate
  runbooks
  run zdm run "$T/appr.yml" --state-dir "$T/st" --non-interactive
  [ "$status" -eq 4 ]
  id="$(rid "$T/st")"
  run zdm run "$T/ok.yml" --state-dir "$T/st"
  assert_success
  ok="$(rid "$T/st")"
  run zdm state push "$T/st" "$URL"
  assert_success
  n=$(wc -l <"$T/st/runs/$id.jsonl")
  # approved in PostgreSQL, denied in the state dir: record n+1 differs
  ZDM_ACTOR=alice run zdm approve "$id" gate --state "$URL"
  assert_success
  ZDM_ACTOR=alice run zdm approve "$id" gate --deny --state-dir "$T/st"
  assert_success
  before="$(pg_lines "$id")"
  run zdm state push "$T/st" "$URL"
  [ "$status" -eq 1 ]
  assert_output --partial "zdm state push: run $id: refused: its record $((n + 1)) in zdm@127.0.0.1:$(pg_port push)/$DB (schema zdm) is not line $((n + 1)) of $T/st/runs/$id.jsonl"
  assert_output --partial "nothing copied, nothing overwritten"
  assert_line "$ok: skipped: already there ($(wc -l <"$T/st/runs/$ok.jsonl") records)"
  assert_line --partial "copied 0 runs / 0 records, skipped 1, refused 1"
  [ "$(pg_lines "$id")" = "$before" ]
  [ "$(pg_lines "$id" | tail -1 | jq -r .event)" = approval.granted ]
  # the file goes further still: still refused, still nothing written
  run zdm resume "$id" --state-dir "$T/st"
  [ "$status" -eq 1 ]
  run zdm state push "$T/st" "$URL"
  [ "$status" -eq 1 ]
  [ "$(pg_lines "$id")" = "$before" ]
}

@test "state push: a run a live zdm is writing is skipped (its lock in DIR/locks, or its runbook's lock in PostgreSQL), exit 2; pushed again once it ends" {
  newstate
  runbooks
  run zdm run "$T/ok.yml" --state-dir "$T/st"
  assert_success
  ok="$(rid "$T/st")"
  # a paused run, pushed; it goes on in the state dir later
  run zdm run "$T/slow.yml" --state-dir "$T/st" --non-interactive
  [ "$status" -eq 4 ]
  p="$(rid "$T/st")"
  run zdm state push "$T/st" "$URL"
  assert_success
  # a run being written in the state dir: held at step two
  touch "$T/hold"
  ZDM_ACTOR=alice "$ZDM_BIN" run "$T/slow.yml" --state-dir "$T/st" --approve gate >"$T/live.out" 2>&1 &
  live=$!
  for i in $(seq 200); do
    [ "$(ls "$T"/st/runs/*.jsonl | wc -l)" -eq 3 ] && break
    sleep 0.05
  done
  l="$(rid "$T/st")"
  await_file_record "$T/st/runs/$l.jsonl" "step.started two"
  run zdm state push "$T/st" "$URL"
  [ "$status" -eq 2 ]
  assert_line "$l: skipped: zdm pid $live holds the lock of runbook 'slowbook' in $T/st/locks and is writing this run; push again once it ends"
  assert_line "$ok: skipped: already there ($(wc -l <"$T/st/runs/$ok.jsonl") records)"
  assert_line --partial "copied 0 runs / 0 records, skipped 3, refused 0"
  [ "$(sql "SELECT count(*) FROM zdm.journal WHERE run_id = '$l'")" = 0 ]
  rm "$T/hold"
  wait "$live"
  # once it ended: copied
  run zdm state push "$T/st" "$URL"
  assert_success
  assert_line "$l: copied $(wc -l <"$T/st/runs/$l.jsonl") records"
  # p goes on in the state dir while another run of slowbook holds its lock in PostgreSQL
  ZDM_ACTOR=alice run zdm approve "$p" gate --state-dir "$T/st"
  assert_success
  run zdm resume "$p" --state-dir "$T/st"
  assert_success
  touch "$T/hold"
  ZDM_ACTOR=alice "$ZDM_BIN" run "$T/slow.yml" --state "$URL" --approve gate >"$T/pg.out" 2>&1 &
  pgrun=$!
  for i in $(seq 200); do
    [ "$(sql "SELECT count(*) FROM zdm.journal WHERE (record::jsonb)->>'event' = 'step.started'
      AND (record::jsonb)->>'step' = 'two' AND run_id NOT IN ('$l')")" -ge 1 ] && break
    sleep 0.05
  done
  before="$(pg_lines "$p")"
  run zdm state push "$T/st" "$URL"
  [ "$status" -eq 2 ]
  assert_line "$p: skipped: a zdm holds the run lock of runbook 'slowbook' in zdm@127.0.0.1:$(pg_port push)/$DB (schema zdm) and may be writing this run; push again once it ends"
  [ "$(pg_lines "$p")" = "$before" ]
  rm "$T/hold"
  wait "$pgrun"
  run zdm state push "$T/st" "$URL"
  assert_success
  assert_line --partial "$p: appended "
  diff <(pg_lines "$p") "$T/st/runs/$p.jsonl"
}

@test "state push: a database error in the middle of a run leaves whole runs only; pushing again finishes" {
  newstate
  runbooks
  for i in 1 2 3; do
    run zdm run "$T/ok.yml" --state-dir "$T/st"
    assert_success
  done
  ids=($(ls "$T/st/runs" | sed 's/\.jsonl$//' | sort))
  # PostgreSQL refuses record 4 of the second run
  sql "CREATE FUNCTION public.boom() RETURNS trigger LANGUAGE plpgsql AS
    \$\$BEGIN IF NEW.run_id = '${ids[1]}' AND NEW.seq = 4 THEN RAISE EXCEPTION 'boom at 4'; END IF;
    RETURN NEW; END\$\$;
    CREATE TRIGGER boom BEFORE INSERT ON zdm.journal FOR EACH ROW EXECUTE FUNCTION public.boom()"
  run zdm state push "$T/st" "$URL"
  [ "$status" -eq 2 ]
  assert_line "${ids[0]}: copied 6 records"
  assert_output --partial "zdm state push: run ${ids[1]}: state database zdm@127.0.0.1:$(pg_port push)/$DB: boom at 4"
  assert_output --partial "stopped: the runs before are copied whole, nothing of this one"
  assert_line --partial "copied 1 run / 6 records, skipped 0, refused 0"
  [ "$(sql "SELECT string_agg(run_id || ':' || n, ',' ORDER BY run_id) FROM
    (SELECT run_id, count(*) n FROM zdm.journal GROUP BY run_id) x")" = "${ids[0]}:6" ]
  sql "DROP TRIGGER boom ON zdm.journal"
  run zdm state push "$T/st" "$URL"
  assert_success
  assert_line "${ids[0]}: skipped: already there (6 records)"
  assert_line "${ids[1]}: copied 6 records"
  assert_line "${ids[2]}: copied 6 records"
  for id in "${ids[@]}"; do
    diff <(pg_lines "$id") "$T/st/runs/$id.jsonl"
  done
}

@test "state push: bad input (no DIR, a DIR without runs/, a password in URL, no URL, no schema) exits 2 and copies nothing" {
  newstate
  runbooks
  run zdm run "$T/ok.yml" --state-dir "$T/st"
  assert_success
  port="$(pg_port push)"
  run zdm state push "$T/nope" "$URL"
  [ "$status" -eq 2 ]
  assert_output --partial "no state dir '$T/nope'"
  mkdir "$T/plain"
  run zdm state push "$T/plain" "$URL"
  [ "$status" -eq 2 ]
  assert_output --partial "'$T/plain' is not a state dir (no runs/ in it)"
  for url in "postgresql://zdm:Sup3rSecretPw@127.0.0.1:$port/$DB" \
      "host=127.0.0.1 port=$port user=zdm password=Sup3rSecretPw dbname=$DB"; do
    run zdm state push "$T/st" "$url"
    [ "$status" -eq 2 ]
    assert_output --partial "holds a password"
    refute_output --partial "Sup3rSecretPw"
  done
  run zdm state push "$T/st"
  [ "$status" -eq 2 ]
  assert_output --partial "name the state dir and the database: zdm state push DIR URL"
  run zdm state push "$URL"
  [ "$status" -eq 2 ]
  run zdm state push "$T/st" "$URL" extra
  [ "$status" -eq 2 ]
  assert_output --partial "usage: zdm state init URL"
  run zdm state init "$URL" extra
  [ "$status" -eq 2 ]
  assert_output --partial "zdm state init: too many arguments"
  run zdm state push "$T/st" "$T/other"
  [ "$status" -eq 2 ]
  assert_output --partial "URL must be a PostgreSQL connection string"
  run zdm state push "$T/st" "$URL" --state-dir "$T/st"
  [ "$status" -eq 2 ]
  run zdm state push "$T/st" "$URL" --schema nothere
  [ "$status" -eq 2 ]
  assert_output --partial "no zdm state in"
  assert_output --partial "zdm state init URL --schema nothere"
  run zdm state frob "$T/st" "$URL"
  [ "$status" -eq 2 ]
  assert_output --partial "unknown subcommand 'frob'"
  [ "$(sql "SELECT count(*) FROM zdm.journal")" = 0 ]
  # the state dir is as it was: nothing written there either
  [ "$(ls "$T/st")" = "$(printf 'locks\nruns')" ]
}

@test "state pg roles: docs/state.md's grants; the auditor reads (status, log, audit verify, audit export) and cannot write: its INSERT is refused, run, approve and push exit 2" {
  newstate
  runbooks
  # the statements of docs/state.md, as they are written there
  awk '/^### Least-privilege roles/ {s = 1} s && /^```sql/ {f = 1; next} f && /^```/ {exit} f' \
    "$REPO/docs/state.md" >"$T/roles.sql"
  grep -q "GRANT SELECT ON zdm.meta, zdm.journal, zdm.locks, zdm.runs TO zdm_auditor;" "$T/roles.sql"
  grep -q "GRANT SELECT, INSERT ON zdm.journal TO zdm_runner;" "$T/roles.sql"
  pg_psql push "$DB" -f "$T/roles.sql" >/dev/null
  sql "ALTER ROLE zdm_runner PASSWORD 'runner-pw-4711'; ALTER ROLE zdm_auditor PASSWORD 'auditor-pw-4712'"
  RURL="postgresql://zdm_runner@127.0.0.1:$(pg_port push)/$DB"
  AURL="postgresql://zdm_auditor@127.0.0.1:$(pg_port push)/$DB"
  # the runner runs and pushes
  PGPASSWORD=runner-pw-4711 run zdm run "$T/ok.yml" --state "$RURL"
  assert_success
  PGPASSWORD=runner-pw-4711 run zdm run "$T/appr.yml" --state "$RURL" --non-interactive
  [ "$status" -eq 4 ]
  appr="$(sql "SELECT run_id FROM zdm.journal WHERE seq = 1 AND (record::jsonb)->'data'->>'name' = 'apprbook'")"
  run zdm run "$T/bad.yml" --state-dir "$T/st"
  [ "$status" -eq 1 ]
  bad="$(rid "$T/st")"
  # the auditor may not push: nothing copied
  PGPASSWORD=auditor-pw-4712 run zdm state push "$T/st" "$AURL"
  [ "$status" -eq 2 ]
  assert_output --partial "permission denied for table journal"
  assert_output --partial "role zdm_auditor may not write to zdm's state"
  [ "$(sql "SELECT count(*) FROM zdm.journal WHERE run_id = '$bad'")" = 0 ]
  PGPASSWORD=runner-pw-4711 run zdm state push "$T/st" "$RURL"
  assert_success
  assert_line "$bad: copied $(wc -l <"$T/st/runs/$bad.jsonl") records"
  rows="$(sql "SELECT count(*) FROM zdm.journal")"
  # the auditor reads
  export PGPASSWORD=auditor-pw-4712
  run zdm status "$appr" --state "$AURL"
  assert_success
  assert_output --partial "waiting for approval of step 'gate'"
  run zdm log "$bad" --state "$AURL"
  assert_success
  assert_output --partial "run.finished"
  run zdm audit verify --state "$AURL"
  assert_success
  assert_output --partial "3 journals: 2 complete, 1 incomplete, 0 broken, 0 unreadable"
  zdm audit export --state "$AURL" >"$T/auditor.json"
  PGPASSWORD="$PG_PASSWORD" zdm audit export --state "$URL" >"$T/owner.json"
  cmp "$T/auditor.json" "$T/owner.json"
  [ "$(jq length "$T/auditor.json")" = 3 ]
  # ... and writes nothing
  run "$PG_BIN/psql" -X -At -h 127.0.0.1 -p "$(pg_port push)" -U zdm_auditor -d "$DB" \
    -c "INSERT INTO zdm.journal (run_id, seq, record) VALUES ('x', 1, '{}')"
  assert_failure
  assert_output --partial "permission denied for table journal"
  run zdm run "$T/ok.yml" --state "$AURL"
  [ "$status" -eq 2 ]
  assert_output --partial "permission denied for table locks"
  assert_output --partial "role zdm_auditor may not write to zdm's state"
  refute_output --partial "auditor-pw-4712"
  ZDM_ACTOR=alice run zdm approve "$appr" gate --state "$AURL"
  [ "$status" -eq 2 ]
  assert_output --partial "zdm approve: state database zdm_auditor@"
  assert_output --partial "permission denied for table locks"
  [ "$(sql "SELECT count(*) FROM zdm.journal")" = "$rows" ]
  [ "$(sql "SELECT count(*) FROM zdm.locks WHERE backend_pid IS NOT NULL")" = 0 ]
  [ "$(sql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")" = 0 ]
  run zdm status "$appr" --state "$AURL"
  assert_output --partial "waiting for approval of step 'gate'"
}

@test "audit verify --state URL with no run ids checks every run, one whose first row was removed too; audit export marks it broken" {
  newstate
  runbooks
  for f in ok bad ok; do
    run zdm run "$T/$f.yml" --state "$URL"
  done
  ids=($(sql "SELECT DISTINCT run_id FROM zdm.journal ORDER BY 1"))
  [ "${#ids[@]}" -eq 3 ]
  run zdm audit verify --state "$URL"
  assert_success
  assert_output --partial "3 journals: 3 complete, 0 incomplete, 0 broken, 0 unreadable"
  # a superuser removes the first record of a run, past the trigger
  sql "ALTER TABLE zdm.journal DISABLE TRIGGER journal_append_only;
    DELETE FROM zdm.journal WHERE run_id = '${ids[1]}' AND seq = 1;
    ALTER TABLE zdm.journal ENABLE TRIGGER journal_append_only"
  run zdm audit verify --state "$URL"
  [ "$status" -eq 1 ]
  assert_output --partial "${ids[1]}:1: the first record has no data.chain"
  assert_output --partial "3 journals: 2 complete, 0 incomplete, 1 broken, 0 unreadable"
  run zdm audit export --state "$URL"
  assert_success
  [ "$(echo "$output" | jq -r --arg id "${ids[1]}" '.[] | select(.run == $id) | .verified')" = broken ]
  [ "$(echo "$output" | jq length)" = 3 ]
}
