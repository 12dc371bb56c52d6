#!/usr/bin/env bats
# The validator's error corpus (the idea of jq's %%FAIL tests and curl's
# tests/data): tests/data/validate/NNN.yml is a runbook with one kind of
# mistake (or several, to show that all are reported together, sorted by
# place), and NNN.err is the exact stderr of `zdm validate` on it, run from
# the top of the repository with a relative path (the tests run it from a
# copy in their temp dir, so nothing can land in the checkout).
# NNN-ok-*.yml are valid runbooks: their .err is empty and validate says
# "ok" on stdout.
#
# To add a case: write the .yml (first line: `# the class it covers`), then
#   cd "$REPO" && ZDM_PLUGIN_PATH=$PWD/plugins build/zdm validate \
#       tests/data/validate/NNN.yml 2>tests/data/validate/NNN.err
# and read every line of the .err as the SRE who will see it at 3 a.m.

bats_require_minimum_version 1.5.0
load helper

DATA=tests/data/validate

# the corpus, relative to $REPO, one path a line
corpus() {
  (cd "$REPO" && ls "$DATA"/*.yml)
}

is_valid_case() {
  [[ "$(basename "$1")" == *-ok-* ]]
}

# the corpus's runbooks copied to the same relative paths under $T, the
# directory the tests run zdm from
copy_corpus() {
  mkdir -p "$T/$DATA"
  cp "$REPO/$DATA"/*.yml "$T/$DATA/"
}

# zdm validate FILE (relative) from the copy in $T; stdout, stderr and the
# exit code go to $T/out, $T/err, $T/rc
validate_case() {
  local rc=0
  [ -d "$T/$DATA" ] || copy_corpus
  (cd "$T" && zdm validate "$1") >"$T/out" 2>"$T/err" || rc=$?
  echo "$rc" >"$T/rc"
}

@test "validate corpus: every file has its .err and says what it covers" {
  local problems="" f
  for f in $(corpus); do
    [[ -f "$REPO/${f%.yml}.err" ]] || problems+="$f: no ${f%.yml}.err"$'\n'
    # (002.yml is the empty-file case: zero bytes, so no comment)
    [[ ! -s "$REPO/$f" ]] || head -1 "$REPO/$f" | grep -q '^# .' ||
      problems+="$f: first line is not a '# class' comment"$'\n'
  done
  for f in "$REPO/$DATA"/*.err; do
    [[ -f "${f%.err}.yml" ]] || problems+="$f: no matching .yml"$'\n'
  done
  [[ -z "$problems" ]] || { printf '%s' "$problems"; false; }
  # at least the three valid runbooks
  [[ "$(corpus | grep -c -- '-ok-')" -ge 3 ]]
}

@test "validate corpus: stderr of every file is exactly its .err" {
  local failed=() f n=0
  for f in $(corpus); do
    n=$((n + 1))
    validate_case "$f"
    if ! diff -u --label "$f (expected ${f%.yml}.err)" --label "$f (zdm validate stderr, exit $(cat "$T/rc"))" \
        "$REPO/${f%.yml}.err" "$T/err" >"$T/diff"; then
      failed+=("$f")
      cat "$T/diff"
      echo
    fi
    if is_valid_case "$f"; then
      if [[ "$(wc -l <"$T/out")" != 1 ]] ||
          ! grep -qE "^${f//./\\.}: ok \(runbook '[a-z0-9][a-z0-9_-]*', [0-9]+ steps?\)\$" "$T/out"; then
        failed+=("$f (stdout)")
        echo "--- $f: stdout should be '$f: ok (runbook ..., N steps)', was:"
        cat "$T/out"
        echo
      fi
    elif [[ -s "$T/out" ]]; then
      failed+=("$f (stdout)")
      echo "--- $f: an invalid runbook should print nothing on stdout, printed:"
      cat "$T/out"
      echo
    fi
  done
  if ((${#failed[@]} > 0)); then
    echo "${#failed[@]} of $n corpus files differ: ${failed[*]}"
    false
  fi
}

@test "validate corpus: exit code is 2 for every invalid runbook, 0 for every valid one" {
  local bad=() f want
  for f in $(corpus); do
    validate_case "$f"
    if is_valid_case "$f"; then want=0; else want=2; fi
    [[ "$(cat "$T/rc")" == "$want" ]] || bad+=("$f: exit $(cat "$T/rc"), want $want")
  done
  if ((${#bad[@]} > 0)); then
    printf '%s\n' "${bad[@]}"
    false
  fi
}

@test "validate corpus: zdm run of every invalid runbook prints the same errors as validate and exits 2" {
  local bad=() f
  local to
  to="$(command -v timeout)"
  # a copy, so a run that wrongly goes ahead writes its state dir under $T,
  # not into the repository; same relative paths as the .err files
  copy_corpus
  mkdir -p "$T/empty-path"
  for f in $(corpus); do
    is_valid_case "$f" && continue
    local rc=0
    # PATH leads nowhere: should zdm wrongly accept a runbook and run it,
    # its commands (systemctl, psql, kubectl ...) are not found
    (PATH="$T/empty-path" "$to" 60 "$ZDM_BIN" validate "$f") >/dev/null 2>"$T/validate.err" || true
    (PATH="$T/empty-path" "$to" 60 "$ZDM_BIN" run "$f") >"$T/run.out" 2>"$T/run.err" || rc=$?
    if ! diff -u --label "$f (zdm validate)" --label "$f (zdm run)" \
        "$T/validate.err" "$T/run.err" >"$T/diff"; then
      bad+=("$f: zdm run printed other errors than zdm validate")
      cat "$T/diff"
    fi
    [[ "$rc" == 2 ]] || bad+=("$f: zdm run exited $rc, want 2")
    [[ ! -s "$T/run.out" ]] || bad+=("$f: zdm run printed on stdout: $(head -3 "$T/run.out")")
  done
  [[ ! -e "$T/$DATA/.zdm" ]] || bad+=("a state dir $DATA/.zdm was created for an invalid runbook")
  if ((${#bad[@]} > 0)); then
    printf '%s\n' "${bad[@]}"
    false
  fi
}

# a runbook whose first step would create a file and whose second step has
# one mistake ($1: YAML for the second step's extra lines)
nothing_runs_case() {
  cat >rb.yml <<EOF
zdm: 1
name: nothing-runs
steps:
  - id: create
    uses: exec
    with:
      command: [touch, "$T/created-by-step-1"]
  - id: second
$1
EOF
  run zdm run rb.yml
  assert_failure 2
  assert_line --regexp '^rb\.yml:[0-9]+:[0-9]+: '
  assert_line --regexp '^zdm: [0-9]+ errors?; nothing ran$'
  assert_file_not_exists "$T/created-by-step-1"
  assert_not_exists "$T/.zdm"
  # the same with --dry-run and with zdm plan: nothing either
  run zdm run --dry-run rb.yml
  assert_failure 2
  run zdm plan rb.yml
  assert_failure 2
  assert_file_not_exists "$T/created-by-step-1"
  assert_not_exists "$T/.zdm"
}

@test "nothing runs: a bad duration in step 2 stops zdm run before step 1" {
  nothing_runs_case '    uses: wait
    timeout: 5
    with: {duration: 1s}'
}

@test "nothing runs: an unknown step type in step 2 stops zdm run before step 1" {
  nothing_runs_case '    uses: exex
    with: {command: [true]}'
}

@test "nothing runs: a bad param in step 2 stops zdm run before step 1" {
  nothing_runs_case '    uses: exec
    with: {command: [true], shell: "true"}'
}

@test "nothing runs: an expression error in step 2 stops zdm run before step 1" {
  nothing_runs_case '    uses: exec
    with: {command: [echo, "${{ vars.nope }}"]}'
}

@test "nothing runs: a plugin param error in step 2 stops zdm run before step 1" {
  nothing_runs_case '    uses: release.symlink
    with: {link: current}'
}

@test "nothing runs: a YAML error after step 1 stops zdm run before step 1" {
  nothing_runs_case '    uses: exec
    with: {command: [true]'
}

@test "validate: a valid corpus runbook gives exit 0 and one ok line; stderr only warns of steps with no undo" {
  copy_corpus
  run --separate-stderr zdm validate "$DATA/101-ok-expressions.yml"
  assert_success
  assert_output "$DATA/101-ok-expressions.yml: ok (runbook 'orders-blue-green', 5 steps)"
  assert_equal "$stderr" "$(cat "$REPO/$DATA/101-ok-expressions.err")"
  assert_equal "$(grep -vc ': warning: step .* changes things and has no undo: ' <<<"$stderr")" 0
}

# a runbook of 100,000 vars and 10,000 steps, one var and one step id given
# twice, far apart
big_runbook() {
  awk 'BEGIN {
    print "zdm: 1"; print "name: big"; print "vars:"
    for (i = 1; i <= 100000; i++) print "  v" i ": " i
    print "  v7: again"
    print "steps:"
    for (i = 1; i <= 10000; i++) {
      id = (i == 9999 ? "s3" : "s" i)
      print "  - id: " id; print "    uses: wait"; print "    with: {duration: 1ms}"
    }
  }' > big.yml
}

@test "validate: 100,000 vars and 10,000 steps are checked in seconds; a duplicate key and step id far apart are found" {
  big_runbook
  SECONDS=0
  run --separate-stderr timeout 20 "$ZDM_BIN" validate big.yml
  [ "$SECONDS" -lt 20 ] || fail "validate took ${SECONDS}s"
  assert_failure 2
  assert_equal "$stderr" "big.yml:100004:3: duplicate key 'v7' (first at line 10)
big.yml:130000:9: duplicate step id 's3' (first at line 100012)
zdm: 2 errors; nothing ran"
}
