#!/usr/bin/env bats
# The crash-test harness (tests/crash/crash-test.sh, all of it: make
# crash-test) in its fast mode: zdm killed before / after each durable
# journal write and each line torn, in the run and rollback scenarios at
# every boundary and the fail and rollback-killed ones at a fixed subset;
# every effect exactly once after the operator's recovery.

load helper

@test "crash harness (fast): every boundary recovers with each effect exactly once" {
  run env TMPDIR="$T" bash "$REPO/tests/crash/crash-test.sh" --fast
  [ "$status" -eq 0 ] || fail "crash-test.sh --fast exit $status: $output"
  assert_line --regexp '^total +[0-9]+ +0 +0 +0 +0$'
  assert_line --regexp '^run +10 +30 +0 +0 +0 +0$'
  assert_line --regexp '^rollback +11 +33 +0 +0 +0 +0$'
  assert_line --regexp '^fail +[0-9]+ +12 +0 +0 +0 +0$'
  assert_line --regexp '^rollback-killed +[0-9]+ +[1-9][0-9]* +0 +0 +0 +0$'
  # it left nothing behind in its temp dir but what bats made
  [ -z "$(ls "$T")" ] || fail "left in $T: $(ls "$T")"
}

@test "crash harness: an effect lost by recovery is counted, reported and its trial dir kept" {
  # a zdm whose resume loses the last effect it finds
  mkdir bin
  cat > bin/zdm <<SH
#!/usr/bin/env bash
"$ZDM_BIN" "\$@"
rc=\$?
if [ "\$1" = resume ] && [ -s effects ]; then sed -i '\$d' effects; fi
exit \$rc
SH
  chmod +x bin/zdm
  run env TMPDIR="$T" ZDM_BIN="$T/bin/zdm" bash "$REPO/tests/crash/crash-test.sh" --only 5 run
  [ "$status" -eq 1 ] || fail "exit $status, want 1: $output"
  assert_line --regexp '^run +10 +3 +[1-9][0-9]* +0 +0 +3$'
  assert_line --partial "run-after-5: "
  assert_output --partial "effects lost"
  kept="$(printf '%s\n' "$output" | grep -A1 '^  run-after-5:' | tail -1 | tr -d ' ')"
  [ -d "$kept/state/runs" ] || fail "no kept dir '$kept'"
  [ "$(ls "$T" | grep -c zdm-crash-test)" -eq 0 ] || fail "the work dir was not removed: $(ls "$T")"
}
