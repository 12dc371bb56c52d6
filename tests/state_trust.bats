#!/usr/bin/env bats
# The state dir is trusted only when it is ours: another user's, or one
# others can write, is refused before anything runs; the lock is never
# opened through a symlink; a lock file removed under a running run stops
# that run before its next step, so two runs never act at once.

bats_require_minimum_version 1.5.0
load helper

write_rb() {
  cat >"$T/rb.yml" <<'YML'
zdm: 1
name: trusted
steps:
  - id: one
    uses: exec
    with: {shell: "${{ vars.first }}"}
  - id: two
    uses: exec
    with: {shell: "echo ${{ run.id }} >> two.log"}
vars: {first: "true"}
YML
}

@test "state trust: a state dir others can write, or another user's, is refused (exit 2), nothing runs" {
  write_rb
  mkdir -m 777 "$T/open"
  run --separate-stderr zdm run rb.yml --state-dir "$T/open"
  assert_equal "$status" 2
  [[ "$stderr" == *"'$T/open' is writable by others (mode 0777): another user could replace its journals or locks; chmod go-w '$T/open'"* ]]
  mkdir -m 775 "$T/group"
  run --separate-stderr zdm run rb.yml --state-dir "$T/group"
  assert_equal "$status" 2
  [[ "$stderr" == *"is writable by its group (mode 0775)"* ]]
  mkdir -m 700 "$T/theirs"
  chown 65534 "$T/theirs"
  run --separate-stderr zdm run rb.yml --state-dir "$T/theirs"
  assert_equal "$status" 2
  [[ "$stderr" == *"'$T/theirs' belongs to uid 65534, not to you"* ]]
  assert_not_exist "$T/two.log"
}

@test "state trust: a symlink planted as the lock is not followed (the target is untouched), nor a runs/ symlink" {
  write_rb
  mkdir -m 700 -p "$T/st/locks"
  echo keep >"$T/victim"
  ln -s "$T/victim" "$T/st/locks/trusted.lock"
  run --separate-stderr zdm run rb.yml --state-dir "$T/st"
  assert_equal "$status" 2
  [[ "$stderr" == *"cannot open lock '$T/st/locks/trusted.lock': "*"(it is a symbolic link: remove it)"* ]]
  assert_equal "$(cat "$T/victim")" keep
  rm "$T/st/locks/trusted.lock"
  mkdir -m 700 "$T/elsewhere"
  ln -s "$T/elsewhere" "$T/st/runs"
  run --separate-stderr zdm run rb.yml --state-dir "$T/st"
  assert_equal "$status" 2
  [[ "$stderr" == *"'$T/st/runs' is a symbolic link"* ]]
  assert_equal "$(ls "$T/elsewhere" | wc -l)" 0
  assert_not_exist "$T/two.log"
}

@test "state trust: the lock file removed under a running run: a second run gets in, the first stops before its next step (exit 4)" {
  write_rb
  # run A: step one waits for the test's go (up to 20 s)
  zdm run rb.yml --var first='for i in $(seq 200); do [ -e go ] && exit 0; sleep 0.1; done; exit 1' \
    >"$T/a.out" 2>&1 &
  a=$!
  for _ in $(seq 100); do [ -e "$T/.zdm/locks/trusted.lock" ] && [ -s "$T/.zdm/locks/trusted.lock" ] && break; sleep 0.1; done
  rm "$T/.zdm/locks/trusted.lock"
  run zdm run rb.yml          # run B takes a new lock file and runs both steps
  assert_equal "$status" 0
  touch "$T/go"
  wait "$a" && rc=0 || rc=$?
  assert_equal "$rc" 4
  [[ "$(cat "$T/a.out")" == *"was removed or replaced while this run held it, so another run may have taken the lock; stopped before step 'two'"* ]]
  assert_equal "$(wc -l <"$T/two.log")" 1      # only B's step two ran
  A="$(grep -l '"step":"one"' "$T"/.zdm/runs/*.jsonl | xargs grep -L '"run.finished"')"
  run jq -r 'select(.event == "run.paused") | .data.reason' "$A"
  assert_output lock_lost
}
