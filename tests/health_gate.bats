#!/usr/bin/env bats
# health_gate against real servers on 127.0.0.1 (tests/servers/httpd.py,
# driven by $T/control.json, and nginx): it passes after healthy_threshold
# healthy rounds in a row, fails after unhealthy_threshold unhealthy ones
# (and the steps before it are rolled back), resets its streak when the
# service flaps, times out with the step, counts refused connections as
# unhealthy, journals every round as gate.measurement, runs for real in
# --dry-run, and has its params checked by `zdm validate`.

bats_require_minimum_version 1.5.0
load helper
load servers/httpd

# the gate.measurement events of the newest journal, one compact line each:
# [round, healthy, healthy_streak, unhealthy_streak, [status or error per url]]
measurements() {
  jq -c 'select(.event=="gate.measurement") | .data |
    [.round, .healthy, .healthy_streak, .unhealthy_streak, [.results[] | (.status // .error)]]' \
    "$(journal_of "$T/state")"
}

# a runbook: a step that leaves a marker (undone by rollback), then the gate
# with the given `with:` body (flow mapping content) and step timeout
gate_runbook() {
  runbook <<EOF
zdm: 1
name: gate
steps:
  - id: mark
    uses: exec
    with: {command: [touch, "$T/marker"]}
    undo: {uses: exec, with: {command: [rm, "$T/marker"]}}
  - id: gate
    uses: health_gate
    timeout: ${2:-30s}
    with: {$1}
EOF
}

@test "health_gate: passes after healthy_threshold healthy rounds, each journaled" {
  control <<'EOF'
{"/health": {"status": 200, "body": "ok"}}
EOF
  start_httpd
  gate_runbook "url: \"$BASE/health\", interval: 100ms"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_line "        gate: round 1: 1/3 healthy in a row (200 in $(jq -r 'select(.event=="gate.measurement" and .data.round==1) | .data.results[0].duration_ms' "$(journal_of "$T/state")")ms)"
  assert_line --regexp '^        gate: round 3: 3/3 healthy in a row \(200 in [0-9]+ms\)$'
  assert_line --regexp '^\[2/2\] ok +gate +[0-9.]+m?s$'
  run measurements
  assert_output - <<'EOF'
[1,true,1,0,[200]]
[2,true,2,0,[200]]
[3,true,3,0,[200]]
EOF
  run timeline
  assert_output - <<'EOF'
run.started
step.started mark
step.succeeded mark
step.started gate
gate.measurement gate
gate.measurement gate
gate.measurement gate
step.succeeded gate
run.finished
EOF
  run jq -c 'select(.event=="step.succeeded" and .step=="gate") | .data.outputs' "$(journal_of "$T/state")"
  assert_output "{\"healthy_streak\":3,\"rounds\":3,\"statuses\":{\"$BASE/health\":200}}"
  assert_equal "$(requests_to /health | wc -l)" 3
  # rounds are an interval apart: 3 rounds take at least 2 intervals
  run jq -r 'select(.event=="step.succeeded" and .step=="gate") | .data.duration_ms' "$(journal_of "$T/state")"
  [ "$output" -ge 200 ] && [ "$output" -lt 1500 ]
}

@test "health_gate: fails after unhealthy_threshold unhealthy rounds; the step before it is undone (exit 1)" {
  control <<'EOF'
{"/health": {"status": 503, "body": "draining"}}
EOF
  start_httpd
  gate_runbook "url: \"$BASE/health\", interval: 100ms, unhealthy_threshold: 2"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line "        unhealthy 2 rounds in a row (unhealthy_threshold 2): last: $BASE/health: status 503, expected 2xx"
  assert_line --regexp '^\[1/2\] undone +mark'
  assert_not_exist "$T/marker"
  run measurements
  assert_output - <<'EOF'
[1,false,0,1,[503]]
[2,false,0,2,[503]]
EOF
  run timeline
  assert_output - <<'EOF'
run.started
step.started mark
step.succeeded mark
step.started gate
gate.measurement gate
gate.measurement gate
step.failed gate
rollback.started gate
undo.started mark
undo.succeeded mark
run.finished
EOF
  run jq -c 'select(.event=="gate.measurement") | .data.results[0].reason' "$(journal_of "$T/state")"
  assert_line --index 0 '"status 503, expected 2xx"'
}

@test "health_gate: a flapping service resets the streak; it passes only once it holds steady" {
  # healthy, unhealthy, healthy, healthy, unhealthy, then healthy for good
  control <<'EOF'
{"/health": {"seq": [{"status": 200}, {"status": 500}, {"status": 200}, {"status": 200},
                     {"status": 502}, {"status": 200}]}}
EOF
  start_httpd
  gate_runbook "url: \"$BASE/health\", interval: 50ms, healthy_threshold: 3, unhealthy_threshold: 2"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_line --regexp '^        gate: round 5: 1/2 unhealthy in a row \(502 in [0-9]+ms\)$'
  assert_line --regexp '^        gate: round 8: 3/3 healthy in a row \(200 in [0-9]+ms\)$'
  run measurements
  assert_output - <<'EOF'
[1,true,1,0,[200]]
[2,false,0,1,[500]]
[3,true,1,0,[200]]
[4,true,2,0,[200]]
[5,false,0,1,[502]]
[6,true,1,0,[200]]
[7,true,2,0,[200]]
[8,true,3,0,[200]]
EOF
  run jq -c 'select(.event=="step.succeeded" and .step=="gate") | .data.outputs.rounds' "$(journal_of "$T/state")"
  assert_output 8
  assert_exist "$T/marker"
}

@test "health_gate: flapping unhealthy rounds that never reach the threshold do not fail it" {
  # 500, 200, 500, 200 ... with unhealthy_threshold 2 never fails, never passes 3 healthy:
  # the step's timeout decides
  control <<'EOF'
{"/health": {"seq": [{"status": 500}, {"status": 200}], "cycle": true}}
EOF
  start_httpd
  gate_runbook "url: \"$BASE/health\", interval: 100ms, unhealthy_threshold: 2" 1s
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line --regexp "^        timed out after [0-9]+ rounds: last: $BASE/health: (status 500, expected 2xx \(unhealthy 1/2|200 in [0-9]+ms \(healthy 1/3) in a row\)$"
  run jq -s '[.[] | select(.event=="gate.measurement") | .data.unhealthy_streak] | max' "$(journal_of "$T/state")"
  assert_output 1
}

@test "health_gate: the step's timeout ends a gate that needs more rounds (timed out, exit 1)" {
  control <<'EOF'
{"/health": {"status": 200, "body": "ok"}}
EOF
  start_httpd
  # 10 healthy rounds 200ms apart can never fit in 700ms: refused before any run
  gate_runbook "url: \"$BASE/health\", interval: 200ms, healthy_threshold: 10" 700ms
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "(10 - 1) x 200ms = 1.8s"
  # 2 would fit, but the service stays unhealthy and unhealthy_threshold is far off
  control <<<'{"/health": {"status": 503, "body": "starting"}}'
  gate_runbook "url: \"$BASE/health\", interval: 200ms, healthy_threshold: 2, unhealthy_threshold: 10" 700ms
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line --regexp "^        timed out after 4 rounds: last: $BASE/health: .*503.* \(unhealthy 4/10 in a row\)$"
  assert_not_exist "$T/marker"
  run jq -c 'select(.event=="step.failed") | [.data.timed_out, .data.outputs.rounds, .data.outputs.healthy_streak]' \
    "$(journal_of "$T/state")"
  assert_output '[true,4,0]'
}

@test "health_gate: a slow answer past the request timeout is unhealthy, with curl's message" {
  control <<'EOF'
{"/health": {"status": 200, "body": "ok", "delay": 2}}
EOF
  start_httpd
  gate_runbook "url: \"$BASE/health\", interval: 100ms, request_timeout: 200ms, unhealthy_threshold: 2"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line --regexp "^        unhealthy 2 rounds in a row \(unhealthy_threshold 2\): last: $BASE/health: Operation timed out after [0-9]+ milliseconds with 0 bytes received$"
  run jq -c 'select(.event=="gate.measurement") | .data.results[0] | [.healthy, (.duration_ms < 1000), (.error | startswith("Operation timed out"))]' \
    "$(journal_of "$T/state")"
  assert_output $'[false,true,true]\n[false,true,true]'
}

@test "health_gate: a refused connection is unhealthy, reported with curl's message" {
  local port; port="$(free_port)"
  gate_runbook "url: \"http://127.0.0.1:$port/health\", interval: 50ms"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line --regexp "^        unhealthy 3 rounds in a row \(unhealthy_threshold 3\): last: http://127.0.0.1:$port/health: Failed to connect to 127.0.0.1 port $port after [0-9]+ ms: Couldn't connect to server \(Connection refused\)$"
  assert_line --regexp "^        gate: round 1: 1/3 unhealthy in a row \(Failed to connect to 127.0.0.1 port $port after [0-9]+ ms: .*\)$"
  run jq -c 'select(.event=="gate.measurement") | .data.results[0] | [.url, .healthy, has("status")]' "$(journal_of "$T/state")"
  assert_line --index 0 "[\"http://127.0.0.1:$port/health\",false,false]"
  run jq -c 'select(.event=="step.failed") | .data.outputs.statuses' "$(journal_of "$T/state")"
  assert_output "{\"http://127.0.0.1:$port/health\":null}"
  assert_not_exist "$T/marker"
}

@test "health_gate: a service that recovers before the unhealthy threshold passes" {
  # refused at first (nothing listens), then the server comes up
  local port; port="$(free_port)"
  gate_runbook "url: \"http://127.0.0.1:$port/health\", interval: 200ms, unhealthy_threshold: 50, healthy_threshold: 2"
  zdm run rb.yml --state-dir "$T/state" >"$T/out" 2>&1 &
  local zpid=$!
  sleep 0.5
  echo '{"/health": {"body": "ok"}}' | control
  start_httpd "$port"
  local rc=0
  wait "$zpid" || rc=$?
  cat "$T/out"
  assert_equal "$rc" 0
  run measurements
  assert_line --index 0 --regexp '^\[1,false,0,1,\["Failed to connect'
  assert_line --regexp '^\[[0-9]+,true,2,0,\[200\]\]$'
}

@test "health_gate: urls: a round is healthy only if every URL is" {
  control <<'EOF'
{"/a": {"body": "ok"}, "/b": {"status": 500, "body": "no"}}
EOF
  start_httpd
  gate_runbook "urls: [\"$BASE/a\", \"$BASE/b\"], interval: 50ms, unhealthy_threshold: 2"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line --regexp "^        unhealthy 2 rounds in a row \(unhealthy_threshold 2\): last: $BASE/a: 200 in [0-9]+ms; $BASE/b: status 500, expected 2xx$"
  run measurements
  assert_output - <<'EOF'
[1,false,0,1,[200,500]]
[2,false,0,2,[200,500]]
EOF
  run jq -c 'select(.event=="step.failed") | .data.outputs.statuses | [.[]]' "$(journal_of "$T/state")"
  assert_output '[200,500]'
  # both fine: it passes
  echo '{"/a": {"body": "ok"}, "/b": {"body": "ok"}}' | control
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
}

@test "health_gate: expect_body_contains and expect_json decide health from the body" {
  control <<'EOF'
{"/status": {"json": {"status": "up", "checks": [{"db": "ok"}], "version": 2}}}
EOF
  start_httpd
  gate_runbook "url: \"$BASE/status\", interval: 50ms, healthy_threshold: 1, expect_body_contains: '\"up\"', expect_json: {.status: up, '.checks[0].db': ok, .version: 2}"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  echo '{"/status": {"json": {"status": "degraded", "checks": [{"db": "ok"}], "version": 2}}}' | control
  gate_runbook "url: \"$BASE/status\", interval: 50ms, unhealthy_threshold: 1, expect_json: {.status: up}"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line "        unhealthy 1 round in a row (unhealthy_threshold 1): last: $BASE/status: status 200 but .status is \"degraded\", expected \"up\""
  gate_runbook "url: \"$BASE/status\", interval: 50ms, unhealthy_threshold: 1, expect_json: {'.checks[1].db': ok}"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line "        unhealthy 1 round in a row (unhealthy_threshold 1): last: $BASE/status: status 200 but .checks[1].db: .checks has no item [1] (1 items)"
  gate_runbook "url: \"$BASE/status\", interval: 50ms, unhealthy_threshold: 1, expect_body_contains: maintenance"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line "        unhealthy 1 round in a row (unhealthy_threshold 1): last: $BASE/status: status 200 but the body does not contain 'maintenance'"
}

@test "health_gate: in --dry-run it really queries, journals its measurements and reports" {
  control <<'EOF'
{"/health": {"body": "ok"}}
EOF
  start_httpd
  gate_runbook "url: \"$BASE/health\", interval: 50ms, healthy_threshold: 2"
  run zdm run rb.yml --dry-run --state-dir "$T/state"
  assert_equal "$status" 0
  assert_line --regexp '^\[1/2\] planned +mark$'
  assert_line --regexp '^        gate: round 2: 2/2 healthy in a row \(200 in [0-9]+ms\)$'
  assert_line --regexp '^\[2/2\] ok +gate'
  assert_not_exist "$T/marker"
  assert_equal "$(requests_to /health | wc -l)" 2
  run timeline
  assert_output - <<'EOF'
run.started
step.skipped mark
step.started gate
gate.measurement gate
gate.measurement gate
step.succeeded gate
run.finished
EOF
  # and a failing gate fails the rehearsal, with nothing to undo
  echo '{"/health": {"status": 500}}' | control
  run zdm run rb.yml --dry-run --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line "        unhealthy 3 rounds in a row (unhealthy_threshold 3): last: $BASE/health: status 500, expected 2xx"
  assert_equal "$(requests_to /health | wc -l)" 5
}

@test "health_gate: zdm plan describes the gate" {
  gate_runbook 'url: "http://127.0.0.1:9/health", interval: 5s, healthy_threshold: 2, expect_status: [200, "3xx"], expect_body_contains: ok'
  run zdm plan rb.yml
  assert_equal "$status" 0
  assert_line " 2. gate (health_gate, read-only)"
  assert_line "      do:   poll http://127.0.0.1:9/health every 5.0s until 2 healthy in a row (fail after 3 unhealthy); healthy: 200, 3xx, body contains 'ok'"
}

@test "health_gate: a signal stops the gate between rounds: interrupted, exit 4" {
  control <<'EOF'
{"/health": {"status": 500}}
EOF
  start_httpd
  gate_runbook "url: \"$BASE/health\", interval: 300ms, unhealthy_threshold: 100"
  "$ZDM_BIN" run rb.yml --state-dir "$T/state" >"$T/out" 2>&1 &
  local zpid=$! rc=0 i
  for i in $(seq 200); do
    grep -qs '"gate.measurement"' "$T"/state/runs/*.jsonl && break
    sleep 0.05
  done
  kill -TERM "$zpid"
  wait "$zpid" || rc=$?
  assert_equal "$rc" 4
  run timeline
  assert_line --index 4 "gate.measurement gate"
  assert_line "step.interrupted gate"
  assert_line "run.interrupted"
}

@test "health_gate: against a real nginx: passes on /health, fails on a 503" {
  start_nginx <<'EOF'
    location = /health { return 200 "ok"; }
    location = /down { return 503 "down"; }
EOF
  gate_runbook "url: \"$NGINX/health\", interval: 50ms, expect_body_contains: ok"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  run measurements
  assert_output - <<'EOF'
[1,true,1,0,[200]]
[2,true,2,0,[200]]
[3,true,3,0,[200]]
EOF
  gate_runbook "url: \"$NGINX/down\", interval: 50ms"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line "        unhealthy 3 rounds in a row (unhealthy_threshold 3): last: $NGINX/down: status 503, expected 2xx"
  assert_not_exist "$T/marker"
}

@test "health_gate: zdm validate catches bad URLs, intervals, thresholds and params with FILE:LINE:COL" {
  runbook <<'EOF'
zdm: 1
name: gate-bad
vars: {base: "http://127.0.0.1:8080"}
steps:
  - id: a
    uses: health_gate
    with:
      url: "htp//127.0.0.1/health"
      interval: 0s
  - id: b
    uses: health_gate
    with:
      url: "${{ vars.base }}/health"
      interval: -1s
  - id: b2
    uses: health_gate
    with:
      url: "${{ vars.base }}/health"
      healthy_threshold: 0
      unhealthy_threshold: -3
      request_timeout: 0s
  - id: c
    uses: health_gate
    with:
      urls: ["http://127.0.0.1:8080/a", "ftp://127.0.0.1/b"]
      expect_json: {status: up}
  - id: c2
    uses: health_gate
    with: {url: "${{ vars.base }}/health", intervall: 2s}
  - id: d
    uses: health_gate
    with: {expect_status: ["2xx", 99]}
  - id: e
    uses: health_gate
    with: {url: "http://a/", urls: ["http://b/"]}
EOF
  run zdm validate rb.yml
  assert_equal "$status" 2
  assert_output - <<'EOF'
rb.yml:8:12: step 'a': param 'url': malformed URL 'htp//127.0.0.1/health': not an absolute URL (expected http://host[:port]/path or https://...)
rb.yml:9:17: step 'a': param 'interval': must be more than 0 (the time between rounds: 500ms, 2s)
rb.yml:14:17: step 'b': param 'interval': bad duration '-1s' (use a number and a unit: 500ms, 30s, 5m, 1h)
rb.yml:19:26: step 'b2': param 'healthy_threshold': must be from 1 to 10000 rounds in a row
rb.yml:20:28: step 'b2': param 'unhealthy_threshold': must be from 1 to 10000 rounds in a row
rb.yml:21:24: step 'b2': param 'request_timeout': must be more than 0 (for each request: 500ms, 2s)
rb.yml:25:13: step 'c': param 'urls': malformed URL 'ftp://127.0.0.1/b': the scheme must be http or https
rb.yml:26:20: step 'c': param 'expect_json': bad JSON path 'status': a path starts with '.' (.status, .items[0].name)
rb.yml:29:44: step 'c2': unknown param 'intervall' for 'health_gate' (did you mean 'interval'?)
rb.yml:32:11: step 'd': health_gate needs exactly one of 'url' or 'urls' (a list)
rb.yml:32:27: step 'd': param 'expect_status': bad entry 99: a status is from 100 to 599
rb.yml:35:11: step 'e': health_gate needs exactly one of 'url' or 'urls' (a list)
zdm: 12 errors; nothing ran
EOF
}
