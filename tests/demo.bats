#!/usr/bin/env bats
# make demo (scripts/demo.sh) for real: blue and green backends and a front nginx on
# 127.0.0.1, zdm switches the upstream from blue to green under live traffic with no
# failed request, zdm rollback puts blue back, and a drill whose watch gate fails (green
# answers 500 to real requests) is rolled back so blue answers again.  The demo stops
# and removes everything it started.

bats_require_minimum_version 1.5.0
load helper

@test "demo: traffic moves blue -> green with no failed request, and a failed drill puts it back on blue" {
  run -0 timeout 120 bash "$REPO/scripts/demo.sh"
  # before: blue answers
  assert_line --regexp '^  GET http://127\.0\.0\.1:[0-9]+/ -> 200, X-Backend: blue$'
  # the switch under load: every request answered 2xx, green reached
  assert_line --regexp '^== traffic moved: [1-9][0-9]* requests, 0 non-2xx, 0 socket errors; blue -> green -?[0-9]+ ms after the switch step started$'
  assert_line --regexp '^  GET http://127\.0\.0\.1:[0-9]+/ -> 200, X-Backend: green$'
  assert_line --regexp '^succeeded: run [0-9TZ-]+[a-z0-9-]*, 3 steps in '
  # the journal verifies
  assert_line --regexp ': ok, 15 records, chain sha256, last hash [0-9a-f]+$'
  # the drill: the watch gate failed, zdm rolled back, blue answers
  assert_line --regexp '^\[3/3\] failed +watch '
  assert_line --regexp '^== exit 1 \(1: a gate failed and the rollback completed\): [1-9][0-9]* requests, [1-9][0-9]* answered 500 by green while the gate watched, 0 socket errors; '
  n=${#lines[@]}
  for i in 4 3 2; do   # the three requests shown after the drill
    assert_line --index $((n - i)) --regexp '^  GET http://127\.0\.0\.1:[0-9]+/ -> 200, X-Backend: blue$'
  done
  assert_line --index $((${#lines[@]} - 1)) "== demo done: traffic moved blue -> green with no failed request, and the failed drill put it back on blue"
  # everything stopped and removed
  dir="$(sed -n 's/^== blue and green backends and a front nginx on 127\.0\.0\.1 (in \(.*\))$/\1/p' <<<"$output")"
  [ -n "$dir" ]
  assert_not_exist "$dir"
  run -1 pgrep -f "$dir/"
}
