#!/usr/bin/env bats
# zdm init: the starter runbooks built into zdm, printed or written to a new
# file; each validates as written, with no warnings.

bats_require_minimum_version 1.5.0
load helper

TEMPLATES="blue-green-nginx canary-haproxy postgres-move rolling-ssh"

@test "init: --list names each template with one line" {
  run --separate-stderr zdm init --list
  assert_success
  assert_equal "${#lines[@]}" 4
  local t
  for t in $TEMPLATES; do
    assert_line --regexp "^$t +[a-z]"
  done
  assert_equal "$stderr" ""
}

@test "init: each template, printed, validates as written with no warnings" {
  local t
  for t in $TEMPLATES; do
    zdm init "$t" >"$T/$t.yml"
    local n
    n="$(wc -l <"$T/$t.yml")"
    [ "$n" -ge 20 ] && [ "$n" -le 50 ] || fail "$t: $n lines"
    grep -q '^# ' "$T/$t.yml" || fail "$t: no comments"
    grep -q 'CHANGE' "$T/$t.yml" || fail "$t: says nothing of what to change"
    run --separate-stderr zdm validate "$T/$t.yml"
    assert_success
    assert_output --partial "ok (runbook '$t'"
    assert_equal "$stderr" ""
  done
}

@test "init: without TEMPLATE it prints blue-green-nginx to stdout and writes nothing" {
  run --separate-stderr zdm init
  assert_success
  assert_line "name: blue-green-nginx                    # CHANGE: names the run lock and the runs"
  assert_equal "$stderr" ""
  assert_equal "$(ls -A "$T")" ""
}

@test "init: --output FILE writes a file that validates; the secrets come from the environment" {
  local t
  for t in $TEMPLATES; do
    run zdm init "$t" --output "$T/sub-$t.yml"
    assert_success
    assert_output --partial "sub-$t.yml: written from template $t"
    assert_equal "$(cat "$T/sub-$t.yml")" "$(zdm init "$t")"
    run --separate-stderr zdm validate "$T/sub-$t.yml"
    assert_success
    assert_equal "$stderr" ""
  done
  grep -q 'env: SOURCE_PGPASSWORD' "$T/sub-postgres-move.yml"
  run grep -i 'password: [^$]' "$T/sub-postgres-move.yml"
  refute_output --regexp 'password: [a-z0-9]'
}

@test "init: --output refuses an existing file (exit 2) and leaves it as it was" {
  echo "mine" >"$T/rb.yml"
  run --separate-stderr zdm init rolling-ssh --output "$T/rb.yml"
  assert_equal "$status" 2
  assert_output ""
  assert_equal "$stderr" "zdm init: --output '$T/rb.yml': the file exists; not overwritten (remove it or give another name)"
  assert_equal "$(cat "$T/rb.yml")" "mine"
  # a symlink to nowhere is not followed either
  ln -s "$T/nowhere.yml" "$T/link.yml"
  run zdm init --output "$T/link.yml"
  assert_equal "$status" 2
  assert_file_not_exists "$T/nowhere.yml"
}

@test "init: an unknown template exits 2, names the known ones and suggests one; nothing written" {
  run --separate-stderr zdm init rolling-sh --output "$T/x.yml"
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm init: unknown template 'rolling-sh' (did you mean 'rolling-ssh'?); the templates: blue-green-nginx, canary-haproxy, postgres-move, rolling-ssh (zdm init --list)"
  assert_file_not_exists "$T/x.yml"
  run --separate-stderr zdm init nothing-like-it
  assert_equal "$status" 2
  assert_output ""
  [[ $stderr == *"unknown template 'nothing-like-it'; the templates: blue-green-nginx, canary-haproxy, postgres-move, rolling-ssh"* ]]
}

@test "init: bad usage exits 2 naming the flag or argument" {
  run --separate-stderr zdm init --output
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm init: missing value for '--output' (zdm init --help)"
  run --separate-stderr zdm init --output ""
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm init: --output needs a file name"
  run --separate-stderr zdm init --list rolling-ssh
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm init: --list takes no TEMPLATE and no --output"
  run --separate-stderr zdm init a b
  assert_equal "$status" 2
  assert_equal "$stderr" "usage: zdm init [TEMPLATE] [--output FILE] | init --list"
  run --separate-stderr zdm init --dry-run
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm init: option '--dry-run' does not apply here (zdm init --help)"
  # --list and --output belong to init only
  run --separate-stderr zdm status --list
  assert_equal "$status" 2
  assert_equal "$(ls -A "$T")" ""
}
