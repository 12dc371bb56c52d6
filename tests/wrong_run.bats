#!/usr/bin/env bats
# resume and rollback never act on the wrong run: when the newest journal of
# a state dir cannot say whose it is (empty, or its first line torn: zdm
# was killed as it made it), they stop and name it instead of picking the
# run before it.
# state: file and PostgreSQL (ZDM_TEST_STATE=pg, tests/helper.bash)

bats_require_minimum_version 1.5.0
load helper

setup_runs() {
  mkdir -p "$T/rel/v1" "$T/rel/v2"
  cat >"$T/rb.yml" <<YML
zdm: 1
name: wrong-run
steps:
  - id: switch
    uses: release.symlink
    with: {link: "$T/current", target: "$T/rel/v2"}
YML
  ln -s "$T/rel/v1" "$T/current"
  zdm run rb.yml >/dev/null
  [ "$(readlink "$T/current")" = "$T/rel/v2" ]
  OLD="$(basename "$(ls "$T"/.zdm/runs/*.jsonl)" .jsonl)"
  sleep 0.05
}

@test "wrong run: an empty newest journal stops rollback and resume (exit 2); the finished run is not undone" {
  file_only "an empty journal is a file's (a run exists in PostgreSQL from its first INSERT)"
  setup_runs
  : >"$T/.zdm/runs/20991231T235959Z-0000.jsonl"
  for cmd in rollback resume; do
    run --separate-stderr zdm "$cmd" rb.yml
    assert_equal "$status" 2
    [[ "$stderr" == *"20991231T235959Z-0000.jsonl"* ]]
  done
  [ "$(readlink "$T/current")" = "$T/rel/v2" ]
  run zdm rollback "$OLD"      # named by its id, the old run is still reachable
  assert_equal "$status" 0
  [ "$(readlink "$T/current")" = "$T/rel/v1" ]
}

@test "wrong run: a newest journal whose first line is torn stops rollback (exit 2), nothing undone" {
  file_only "a torn line is a file's (a record is one INSERT)"
  setup_runs
  printf '{"data":{"chain":"sha256","na' >"$T/.zdm/runs/20991231T235959Z-0001.jsonl"
  run --separate-stderr zdm rollback rb.yml
  assert_equal "$status" 2
  [[ "$stderr" == *"20991231T235959Z-0001.jsonl"* ]]
  [ "$(readlink "$T/current")" = "$T/rel/v2" ]
}
