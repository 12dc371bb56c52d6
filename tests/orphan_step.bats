#!/usr/bin/env bats
# When zdm alone is killed (the OOM killer), the step's command goes on in
# its own process group; resume and rollback see it still running and
# refuse (exit 2, naming the process) instead of starting it a second time.
# state: file and PostgreSQL (ZDM_TEST_STATE=pg, tests/helper.bash)

bats_require_minimum_version 1.5.0
load helper

@test "orphan step: resume --in-doubt retry refuses while the killed zdm's command still runs, and works after" {
  cat >"$T/rb.yml" <<'YML'
zdm: 1
name: orphan
steps:
  - id: slow
    uses: exec
    with: {shell: "echo start >> ran.log; for i in $(seq 300); do [ -e release ] && break; sleep 0.1; done; echo end >> ran.log"}
YML
  "$ZDM_BIN" run rb.yml >"$T/a.out" 2>&1 &
  a=$!
  for _ in $(seq 100); do grep -q start "$T/ran.log" 2>/dev/null && break; sleep 0.1; done
  kill -9 "$a"                                   # zdm alone, not its step's group
  wait "$a" || true
  run --separate-stderr zdm resume rb.yml --in-doubt retry
  assert_equal "$status" 2
  [[ "$stderr" == *"step 'slow' is still running: process "*"started by the zdm that stopped, has not ended; wait for it to end, or stop it (kill -TERM -- -"* ]]
  run --separate-stderr zdm rollback rb.yml --in-doubt retry
  assert_equal "$status" 2
  [[ "$stderr" == *"step 'slow' is still running"* ]]
  assert_equal "$(grep -c start "$T/ran.log")" 1  # never started twice
  touch "$T/release"
  for _ in $(seq 100); do grep -q end "$T/ran.log" && break; sleep 0.1; done
  sleep 0.3
  run zdm resume rb.yml --in-doubt skip          # it did happen: go on
  assert_equal "$status" 0
  assert_equal "$(grep -c start "$T/ran.log")" 1
}

@test "orphan step: a plugin's zdm.exec command carries the tag too: rollback refuses while it runs" {
  plugin_file "$T/pp" my.slow <<'LUA'
return {
  description = "run a slow command",
  params = {},
  run = function(ctx, p)
    local r = zdm.exec("echo start >> ran.log; for i in $(seq 300); do [ -e release ] && break; sleep 0.1; done; echo end >> ran.log")
    return {outputs = {}}
  end,
  undo = function(ctx, p, data) zdm.exec("echo undo >> ran.log") end,
}
LUA
  cat >"$T/rb.yml" <<'YML'
zdm: 1
name: orphanplugin
steps:
  - id: slow
    uses: my.slow
YML
  "$ZDM_BIN" run rb.yml --plugin-path "$T/pp" >"$T/a.out" 2>&1 &
  a=$!
  for _ in $(seq 100); do grep -q start "$T/ran.log" 2>/dev/null && break; sleep 0.1; done
  kill -9 "$a"
  wait "$a" || true
  run --separate-stderr zdm rollback rb.yml --plugin-path "$T/pp" --in-doubt slow=retry
  assert_equal "$status" 2
  [[ "$stderr" == *"step 'slow' is still running: process "* ]] || fail "$stderr"
  run --separate-stderr zdm resume rb.yml --plugin-path "$T/pp" --in-doubt slow=retry
  assert_equal "$status" 2
  assert_equal "$(grep -c start "$T/ran.log")" 1
  assert_equal "$(grep -c undo "$T/ran.log")" 0
  touch "$T/release"
  for _ in $(seq 100); do grep -q end "$T/ran.log" && break; sleep 0.1; done
  sleep 0.3
  run zdm rollback rb.yml --plugin-path "$T/pp" --in-doubt slow=retry   # it did happen: undo it
  assert_equal "$status" 0
  assert_equal "$(grep -c undo "$T/ran.log")" 1
}

@test "orphan step: a step still running is not asked about: refused (exit 2) before the in-doubt question" {
  cat >"$T/rb.yml" <<'YML'
zdm: 1
name: orphanask
steps:
  - id: slow
    uses: exec
    with: {shell: "echo start >> ran.log; for i in $(seq 300); do [ -e release ] && break; sleep 0.1; done"}
YML
  "$ZDM_BIN" run rb.yml >"$T/a.out" 2>&1 &
  a=$!
  for _ in $(seq 100); do grep -q start "$T/ran.log" 2>/dev/null && break; sleep 0.1; done
  kill -9 "$a"
  wait "$a" || true
  for cmd in resume rollback; do
    run --separate-stderr zdm $cmd rb.yml
    assert_equal "$status" 2
    [[ "$stderr" == *"step 'slow' is still running: process "* ]] || fail "$cmd: $stderr"
  done
  touch "$T/release"
}
