#!/usr/bin/env bats
# Bad input never crashes or hangs zdm: a runbook or vars file is read only
# from a regular file of at most 16 MiB, and nothing runs when it is not.

bats_require_minimum_version 1.5.0
load helper

ok_runbook() {
  cat > "$T/rb.yml" <<'YML'
zdm: 1
name: limits
vars: {msg: hi}
steps:
  - id: touch
    uses: exec
    with: {command: [touch, "${{ vars.msg }}.done"]}
YML
}

@test "limits: a FIFO runbook is refused at once (exit 2), not waited on" {
  mkfifo "$T/rb.yml"
  for cmd in validate plan run; do
    run --separate-stderr timeout 10 "$ZDM_BIN" "$cmd" "$T/rb.yml"
    assert_equal "$status" 2
    [[ "$stderr" == "$T/rb.yml: not a regular file"* ]]
  done
}

@test "limits: /dev/zero as a runbook is refused (exit 2), memory does not grow" {
  run --separate-stderr timeout 10 "$ZDM_BIN" validate /dev/zero
  assert_equal "$status" 2
  [[ "$stderr" == "/dev/zero: not a regular file"* ]]
  [[ "$stderr" == *"nothing ran" ]]
}

@test "limits: a directory as a runbook is refused (exit 2)" {
  mkdir "$T/dir.yml"
  run --separate-stderr zdm validate "$T/dir.yml"
  assert_equal "$status" 2
  [[ "$stderr" == *"not a regular file"* ]]
}

@test "limits: a runbook over 16 MiB is refused with its size (exit 2), nothing runs" {
  ok_runbook
  head -c $((16 * 1024 * 1024)) /dev/zero | tr '\0' '#' >> "$T/rb.yml"
  size=$(stat -c %s "$T/rb.yml")
  run --separate-stderr zdm run "$T/rb.yml"
  assert_equal "$status" 2
  [[ "$stderr" == "$T/rb.yml: $size bytes is over the limit of 16 MiB for a runbook or vars file"* ]]
  assert_not_exist "$T/hi.done"
  assert_not_exist "$T/.zdm/runs"
}

@test "limits: a FIFO or oversized vars file is refused (exit 2), nothing runs" {
  ok_runbook
  mkfifo "$T/vars.yml"
  run --separate-stderr timeout 10 "$ZDM_BIN" run "$T/rb.yml" --vars-file "$T/vars.yml"
  assert_equal "$status" 2
  [[ "$stderr" == *"$T/vars.yml: not a regular file"* ]]
  rm "$T/vars.yml"
  { printf 'msg: "'; head -c $((17 * 1024 * 1024)) /dev/zero | tr '\0' 'a'; printf '"\n'; } > "$T/vars.yml"
  run --separate-stderr zdm run "$T/rb.yml" --vars-file "$T/vars.yml"
  assert_equal "$status" 2
  [[ "$stderr" == *"over the limit of 16 MiB"* ]]
  assert_not_exist "$T/.zdm/runs"
}

@test "limits: a large var just under the cap still works" {
  ok_runbook
  { printf 'msg: "'; head -c $((8 * 1024 * 1024)) /dev/zero | tr '\0' 'a'; printf '"\n'; } > "$T/vars.yml"
  run --separate-stderr zdm validate "$T/rb.yml" --vars-file "$T/vars.yml"
  assert_equal "$status" 0
}
