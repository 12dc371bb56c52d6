#!/usr/bin/env bats
# lb.haproxy and runbooks/canary-haproxy.yml against a real HAProxy 2.6 on
# 127.0.0.1 (tests/servers/haproxy.bash: backend app, blue weight 77 ready,
# green weight 3 in maint) and a real Prometheus (tests/servers/prometheus.sh)
# for the canary's metric gates, fed from a file so the gates' verdicts are
# deterministic: zdm_error_ratio 0.01 (passes), zdm_bad_ratio 0.2 (breaches).

bats_require_minimum_version 1.5.0
load helper
load servers/httpd
load servers/haproxy
load servers/prometheus

setup_file() {
  prom_file_start
}

teardown_file() {
  prom_file_stop
}

teardown() {
  stop_haproxy
  stop_servers
  helper_teardown
}

RB="$REPO/runbooks/canary-haproxy.yml"
BEFORE="$(printf 'blue 77 0\ngreen 3 1')"	# name uweight admin_state (1 = maint)

# the canary runbook pointed at this test's HAProxy and Prometheus
canary() {
  local cmd="$1" query="${QUERY:-zdm_error_ratio}"
  shift
  zdm "$cmd" "$RB" --state-dir "$T/state" \
    --var haproxy_socket="$HX_SOCK" --var backend=app --var prometheus="$PROM" \
    --var error_query="$query" --var max_error_ratio=0.05 \
    --var gate_interval=100ms --var measurements=1 "$@"
}

# records of a canary run with measurements=1: 1 run.started; shift-10 2/3;
# gate-10 4 started, 5 gate.measurement, 6 succeeded; shift-50 7/8;
# gate-50 9/10/11; shift-100 12/13; gate-100 14/15/16; 17 run.finished

@test "lb.haproxy: the canary runbook shifts 10% -> 50% -> 100% to green with a metric gate after each" {
  start_backends
  start_haproxy
  [ "$(hx_state)" = "$BEFORE" ]
  [ "$(hx_answers 10)" = "blue=10" ]
  run canary plan
  assert_equal "$status" 0
  assert_output --partial "backend app via $HX_SOCK: blue: weight 77 -> 90, state ready -> ready; green: weight 3 -> 10, state maint -> ready"
  run canary run
  assert_equal "$status" 0
  assert_output --partial "gate-10: measurement 1/1: 0.01 successful"
  assert_output --partial "shift-100: blue: weight 50 -> 0, state ready -> drain"
  # blue drained at weight 0, green takes everything
  [ "$(hx_state)" = "$(printf 'blue 0 8\ngreen 100 0')" ]
  [ "$(hx_answers 20)" = "green=20" ]
  # each shift recorded exactly what it replaced
  run jq -c 'select(.event=="step.succeeded" and (.step|startswith("shift"))) | [.step, .data.undo_data.servers]' "$(J)"
  assert_output '["shift-10",{"blue":{"state":"ready","weight":77},"green":{"state":"maint","weight":3}}]
["shift-50",{"blue":{"state":"ready","weight":90},"green":{"state":"ready","weight":10}}]
["shift-100",{"blue":{"state":"ready","weight":50},"green":{"state":"ready","weight":50}}]'
}

@test "lb.haproxy: a breached metric gate rolls the canary back to the exact weights and states" {
  start_backends
  start_haproxy
  QUERY=zdm_bad_ratio run canary run
  assert_equal "$status" 1
  assert_output --partial "gate-10: measurement 1/1: 0.2 failed"
  assert_output --partial "undone    shift-10"
  [ "$(hx_state)" = "$BEFORE" ]
  [ "$(hx_answers 10)" = "blue=10" ]
}

@test "lb.haproxy: a failure after two shifts undoes both, newest first, to the exact weights and states" {
  start_backends
  start_haproxy
  run canary run --fail-at gate-50
  assert_equal "$status" 1
  run events "$(J)"
  assert_line "undo.succeeded shift-50"
  assert_line "undo.succeeded shift-10"
  [ "$(jq -r 'select(.event=="undo.succeeded") | .step' "$(J)" | tr '\n' ' ')" = "shift-50 shift-10 " ]
  [ "$(hx_state)" = "$BEFORE" ]
}

@test "lb.haproxy: 10% on green really sends about a tenth of the requests there" {
  start_backends
  start_haproxy
  # stop right after shift-10 is recorded (record 3)
  ZDM_TEST_CRASH_AFTER_RECORD=3 run canary run
  assert_equal "$status" 137
  [ "$(hx_state)" = "$(printf 'blue 90 0\ngreen 10 0')" ]
  got="$(hx_answers 100)"
  [[ "$got" =~ ^blue=([0-9]+)\ green=([0-9]+)$ ]] || fail "answers: $got"
  green="${BASH_REMATCH[2]}"
  [ "$green" -ge 5 ] && [ "$green" -le 15 ] || fail "green got $green of 100 at weight 10/100"
  run canary rollback
  assert_equal "$status" 0
  [ "$(hx_state)" = "$BEFORE" ]
}

@test "lb.haproxy: crash after a shift is recorded, before its gate: resume finishes, rollback restores exactly" {
  start_backends
  start_haproxy
  ZDM_TEST_CRASH_AFTER_RECORD=8 run canary run      # shift-50's step.succeeded
  assert_equal "$status" 137
  [ "$(hx_state)" = "$(printf 'blue 50 0\ngreen 50 0')" ]
  run canary resume
  assert_equal "$status" 0
  [ "$(hx_state)" = "$(printf 'blue 0 8\ngreen 100 0')" ]
  # the finished run rolls back as a whole too
  run canary rollback
  assert_equal "$status" 0
  [ "$(hx_state)" = "$BEFORE" ]

  rm -rf "$T/state"
  ZDM_TEST_CRASH_AFTER_RECORD=8 run canary run
  assert_equal "$status" 137
  run canary rollback
  assert_equal "$status" 0
  [ "$(hx_state)" = "$BEFORE" ]
}

@test "lb.haproxy: a torn record after a shift: rollback undoes it from its snapshot, resume reruns it" {
  start_backends
  start_haproxy
  ZDM_TEST_TEAR_RECORD=8 run canary run             # shift-50's step.succeeded torn
  assert_equal "$status" 137
  [ "$(hx_state)" = "$(printf 'blue 50 0\ngreen 50 0')" ]
  run canary rollback
  assert_equal "$status" 0
  assert_output --partial "shift-50"
  [ "$(hx_state)" = "$BEFORE" ]

  rm -rf "$T/state"
  hx "set server app/green weight 3" >/dev/null
  ZDM_TEST_TEAR_RECORD=8 run canary run
  assert_equal "$status" 137
  run canary resume
  assert_equal "$status" 0
  # the rerun recorded the state before its first attempt (ctx.prior), not its own 50/50
  run jq -c 'select(.event=="step.succeeded" and .step=="shift-50") | .data.undo_data.servers' "$(J)"
  assert_output '{"blue":{"state":"ready","weight":90},"green":{"state":"ready","weight":10}}'
  run canary rollback
  [ "$(hx_state)" = "$BEFORE" ]
}

@test "lb.haproxy: a missing runtime socket fails the step with a clear message; nothing changed (exit 1)" {
  start_backends
  start_haproxy
  run zdm run "$RB" --state-dir "$T/state" --var haproxy_socket="$T/hx/nope.sock" --var prometheus="$PROM"
  assert_equal "$status" 1
  assert_output --partial "HAProxy runtime API $T/hx/nope.sock: connect unix:$T/hx/nope.sock: No such file or directory; is \`stats socket $T/hx/nope.sock level admin\` in haproxy's global section, and is haproxy running?"
  [ "$(hx_state)" = "$BEFORE" ]
  # plan says the same without failing
  run zdm plan "$RB" --var haproxy_socket="$T/hx/nope.sock"
  assert_equal "$status" 0
  assert_output --partial "(now: unknown, HAProxy runtime API $T/hx/nope.sock: connect unix:$T/hx/nope.sock: No such file or directory"
}

@test "lb.haproxy: the runtime API over TCP; a socket below level admin is named as the cause" {
  start_backends
  start_haproxy user
  cat >"$T/rb.yml" <<YML
zdm: 1
name: hx-direct
steps:
  - id: tcp
    uses: lb.haproxy
    with:
      socket: 127.0.0.1:$HX_TCP
      backend: app
      servers: {green: {weight: 5}}
  - id: user-level
    uses: lb.haproxy
    with:
      socket: unix:$HX_SOCK
      backend: app
      servers: {blue: {state: drain}}
YML
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "set server app/blue state drain: Permission denied (the stats socket needs \`level admin\`)"
  # the TCP step was undone: green is back at weight 3
  assert_output --partial "undone    tcp"
  [ "$(hx_state)" = "$(printf 'blue 77 0\ngreen 3 0')" ]
}

@test "lb.haproxy: unknown servers, states and weights out of range are caught before anything runs" {
  cat >"$T/rb.yml" <<YML
zdm: 1
name: hx-bad
steps:
  - id: shift
    uses: lb.haproxy
    with:
      socket: "localhost"
      backend: app
      servers:
        green: {weight: 300, state: drained}
        blue: {wieght: 1}
YML
  run zdm validate "$T/rb.yml"
  assert_equal "$status" 2
  assert_output --partial "rb.yml:7:15: step 'shift': param 'socket': 'localhost' is neither a unix socket (unix:/path or /path) nor HOST:PORT"
  assert_output --partial "param 'servers': green: weight must be a whole number from 0 to 256, got 300"
  assert_output --partial "param 'servers': green: state must be ready, drain or maint, got drained"
  assert_output --partial "param 'servers': blue: unknown field 'wieght' (weight, state)"
}

@test "lb.haproxy: a server the backend does not have fails before any change" {
  start_backends
  start_haproxy
  cat >"$T/rb.yml" <<YML
zdm: 1
name: hx-missing
steps:
  - id: shift
    uses: lb.haproxy
    with:
      socket: $HX_SOCK
      backend: app
      servers: {green: {weight: 50}, purple: {weight: 50}}
YML
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "no server 'purple' in backend 'app' (it has: blue, green)"
  [ "$(hx_state)" = "$BEFORE" ]
}

@test "lb.haproxy: no data for the canary's query pauses the run (exit 4); rollback then restores exactly" {
  start_backends
  start_haproxy
  QUERY=zdm_no_such_series run canary run
  assert_equal "$status" 4
  [ "$(hx_state)" = "$(printf 'blue 90 0\ngreen 10 0')" ]
  run canary rollback
  assert_equal "$status" 0
  [ "$(hx_state)" = "$BEFORE" ]
}

@test "lb.haproxy: end to end, the canary's default query on HAProxy's own exporter catches a failing green" {
  start_backends 503
  start_haproxy
  start_haproxy_prometheus
  prom_await 'up{job="haproxy"}' >/dev/null     # a first scrape, before the traffic
  # green has been taking a little traffic (weight 3, ready), all of it 503
  hx "set server app/green state ready" >/dev/null
  hx_answers 80 >/dev/null
  hx "set server app/green state maint" >/dev/null
  [ "$(hx_state)" = "$BEFORE" ]
  # the runbook's own error_query (green's share of 5xx) as Prometheus sees it
  q="$(sed -n '/^  error_query: >-$/,/^  max_error_ratio/p' "$RB" | sed '1d;$d' | tr -s ' \n' ' ')"
  [ -n "$q" ]
  prom_await "$q" >/dev/null
  run zdm run "$RB" --state-dir "$T/state" --var haproxy_socket="$HX_SOCK" --var backend=app \
    --var prometheus="$HX_PROM" --var gate_interval=100ms --var measurements=1
  assert_equal "$status" 1
  assert_output --partial "gate-10: measurement 1/1: 1 failed (failure: result >= 0.05)"
  assert_output --partial "undone    shift-10"
  [ "$(hx_state)" = "$BEFORE" ]
}
