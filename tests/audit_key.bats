#!/usr/bin/env bats
# The audit key never reaches a step: ZDM_AUDIT_KEY is scrubbed from zdm's
# own environment block (what /proc/PID/environ shows), and
# ZDM_AUDIT_KEY_FILE keeps it out of every environment.

bats_require_minimum_version 1.5.0
load helper

KEY='k3y-that-no-step-may-read'

# a step that copies its parent's (zdm's) environment block and its own
write_runbook() {
  cat >"$T/rb.yml" <<'YML'
zdm: 1
name: keyed
steps:
  - id: peek
    uses: exec
    with:
      shell: tr '\0' '\n' < /proc/$PPID/environ > zdm.environ; env > step.env
YML
}

@test "audit key: a step cannot read ZDM_AUDIT_KEY from zdm's /proc/PID/environ, nor inherit it" {
  unset ZDM_AUDIT_KEY_FILE
  write_runbook
  ZDM_AUDIT_KEY="$KEY" run --separate-stderr zdm run rb.yml
  assert_equal "$status" 0
  assert_exist "$T/zdm.environ"
  run grep -c "$KEY" "$T/zdm.environ" "$T/step.env"
  assert_output "$T/zdm.environ:0
$T/step.env:0"
  ZDM_AUDIT_KEY="$KEY" run --separate-stderr zdm audit verify "$(journal_of "$T/.zdm")"
  assert_equal "$status" 0
  [[ "$output" == *"chain hmac-sha256"* ]]
}

@test "audit key: ZDM_AUDIT_KEY_FILE (mode 600) keys the chain; the same key verifies it either way" {
  unset ZDM_AUDIT_KEY
  write_runbook
  printf '%s\n' "$KEY" > "$T/audit.key"
  chmod 600 "$T/audit.key"
  ZDM_AUDIT_KEY_FILE="$T/audit.key" run --separate-stderr zdm run rb.yml
  assert_equal "$status" 0
  run grep -c "$KEY" "$T/zdm.environ" "$T/step.env"
  assert_output "$T/zdm.environ:0
$T/step.env:0"
  run grep -c ZDM_AUDIT_KEY "$T/step.env"
  assert_output 0
  J="$(journal_of "$T/.zdm")"
  ZDM_AUDIT_KEY_FILE="$T/audit.key" run zdm audit verify "$J"
  assert_equal "$status" 0
  [[ "$output" == *"chain hmac-sha256"* ]]
  ZDM_AUDIT_KEY="$KEY" run zdm audit verify "$J"
  assert_equal "$status" 0
  run --separate-stderr zdm audit verify "$J"
  assert_equal "$status" 2
}

@test "audit key: a key file others can read, a missing one, or both variables set -> exit 2, nothing runs" {
  unset ZDM_AUDIT_KEY
  write_runbook
  printf '%s\n' "$KEY" > "$T/audit.key"
  chmod 644 "$T/audit.key"
  ZDM_AUDIT_KEY_FILE="$T/audit.key" run --separate-stderr zdm run rb.yml
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm: ZDM_AUDIT_KEY_FILE '$T/audit.key': mode 0644, owner uid $(id -u): it must be yours and readable by you alone (chmod 600 '$T/audit.key')"
  ZDM_AUDIT_KEY_FILE="$T/none.key" run --separate-stderr zdm run rb.yml
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm: ZDM_AUDIT_KEY_FILE '$T/none.key': No such file or directory"
  chmod 600 "$T/audit.key"
  ZDM_AUDIT_KEY="$KEY" ZDM_AUDIT_KEY_FILE="$T/audit.key" run --separate-stderr zdm run rb.yml
  assert_equal "$status" 2
  [[ "$stderr" == "zdm: both ZDM_AUDIT_KEY and ZDM_AUDIT_KEY_FILE are set"* ]]
  : > "$T/empty.key"; chmod 600 "$T/empty.key"
  ZDM_AUDIT_KEY_FILE="$T/empty.key" run --separate-stderr zdm audit verify "$T"
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm audit: ZDM_AUDIT_KEY_FILE '$T/empty.key': empty"
  assert_not_exist "$T/zdm.environ"
  assert_not_exist "$T/.zdm/runs"
}
