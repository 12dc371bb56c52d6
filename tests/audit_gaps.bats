#!/usr/bin/env bats
# zdm audit verify does not pass what it cannot vouch for: an empty journal,
# a journal copied over another run's file, bytes appended after the last
# record that are not a torn record.
# state: file and PostgreSQL (ZDM_TEST_STATE=pg, tests/helper.bash)

bats_require_minimum_version 1.5.0
load helper

two_runs() {
  cat >"$T/rb.yml" <<'YML'
zdm: 1
name: gaps
steps:
  - {id: one, uses: exec, with: {command: [echo, hi]}}
YML
  zdm run rb.yml >/dev/null
  sleep 1.1
  zdm run rb.yml >/dev/null
  J1="$(ls "$T"/.zdm/runs/*.jsonl | head -1)"
  J2="$(ls "$T"/.zdm/runs/*.jsonl | tail -1)"
  [ "$J1" != "$J2" ]
}

@test "audit gaps: an empty journal is not verified (exit 1), alone or in its state dir" {
  file_only "an empty journal is a file's (a run exists in PostgreSQL from its first INSERT)"
  two_runs
  : >"$T/.zdm/runs/20990101T000000Z-0000.jsonl"
  run --separate-stderr zdm audit verify "$T/.zdm/runs/20990101T000000Z-0000.jsonl"
  assert_equal "$status" 1
  assert_equal "$stderr" "$T/.zdm/runs/20990101T000000Z-0000.jsonl: no complete record: nothing to verify (a run that crashed as its journal was made, or an emptied journal)"
  assert_equal "$output" ""
  run --separate-stderr zdm audit verify "$T/.zdm"
  assert_equal "$status" 1
  [[ "$stderr" == *"20990101T000000Z-0000.jsonl: no complete record: nothing to verify"* ]]
  [[ "$output" == *"3 journals: 2 complete, 0 incomplete, 1 broken, 0 unreadable"* ]]
}

@test "audit gaps: a journal copied over another run's file (or rows) is tampering (exit 1); a renamed copy still verifies" {
  two_runs
  cp "$J1" "$T/review-copy.jsonl"
  cp "$J1" "$J2"
  journal_edited "$J2"
  run --separate-stderr zdm audit verify "$J2"
  assert_equal "$status" 1
  local why="the file is named for (copied over another run's journal?)"
  state_is_pg && why="they are kept as (copied from another run?)"
  assert_equal "$stderr" "$(jname "$J2"):1: the records are of run '$(basename "$J1" .jsonl)', not of the run $why"
  run zdm status "$J2"          # nothing acts on it
  assert_equal "$status" 2
  run zdm audit verify "$T/.zdm"
  assert_equal "$status" 1
  run zdm audit verify "$T/review-copy.jsonl"
  assert_equal "$status" 0
}

@test "audit gaps: garbage without a final newline is damage (exit 1); a torn record is still a torn line" {
  two_runs
  cp "$J1" "$T/torn.jsonl"
  head -c 25 "$J1" >>"$T/torn.jsonl"
  run zdm audit verify "$T/torn.jsonl"
  assert_equal "$status" 0
  assert_output --partial "torn last line ignored"
  printf 'garbage' >>"$J1"
  journal_edited "$J1"          # PostgreSQL: a row 'garbage' after the last record
  run --separate-stderr zdm audit verify "$J1"
  assert_equal "$status" 1
  [[ "$stderr" == "$(jname "$J1"):5: "* ]] || fail "$stderr"
  on_file_state assert_equal "$stderr" "$J1:5: bytes after the last record that are not the start of one (appended by hand, or garbage)"
  run --separate-stderr zdm status "$J1"
  assert_equal "$status" 2
}
