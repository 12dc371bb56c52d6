#!/usr/bin/env bats
# metric_gate against a real Prometheus 2.x (tests/servers/prometheus.sh):
# one per file, on 127.0.0.1 with free ports, scraping a metrics file the
# tests rewrite every second, with counters backfilled by promtool for a
# deterministic history.  Argo Rollouts' AnalysisRun semantics: success,
# failure past failure_limit, inconclusive past inconclusive_limit (the run
# pauses, exit 4), errors past consecutive_error_limit; no data and NaN are
# inconclusive unless a condition says otherwise.

bats_require_minimum_version 1.5.0
load helper
load servers/httpd
load servers/prometheus

setup_file() {
  prom_file_start "$REPO/tests/data/prometheus/backfill.spec"
}

teardown_file() {
  prom_file_stop
}

# "n phase value" of every gate.measurement of the newest run
measurements() {
  jq -r 'select(.event=="gate.measurement") | [.data.n, .data.phase, (.data.value | tostring)] | join(" ")' "$(J)"
}

# the error of the step.failed of the newest run
failure() {
  jq -r 'select(.event=="step.failed") | .data.error' "$(J)"
}

# $T/site with releases v1 and v2, current -> releases/v1
site() {
  mkdir -p "$T/site/releases/v1" "$T/site/releases/v2"
  ln -s releases/v1 "$T/site/current"
}

@test "metric_gate: a value under the threshold for count measurements succeeds" {
  runbook <<EOF
zdm: 1
name: mg-success
steps:
  - id: error-rate
    uses: metric_gate
    timeout: 20s
    with:
      provider: prometheus
      address: $PROM
      query: zdm_error_ratio
      success: result < 0.05
      count: 3
      interval: 100ms
EOF
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 0
  assert_line "        error-rate: measurement 1/3: 0.01 successful (success: result < 0.05)"
  assert_line "        error-rate: measurement 3/3: 0.01 successful (success: result < 0.05)"
  run measurements
  assert_output "$(printf '1 successful 0.01\n2 successful 0.01\n3 successful 0.01')"
  run jq -c 'select(.event=="step.succeeded") | .data.outputs | [.measurements, .successful, .value, .verdict]' "$(J)"
  assert_output '[3,3,0.01,"count (3) reached"]'
  # measurements are journaled between step.started and step.succeeded
  run events "$(J)"
  assert_output "$(printf 'run.started\nstep.started error-rate\ngate.measurement error-rate\ngate.measurement error-rate\ngate.measurement error-rate\nstep.succeeded error-rate\nrun.finished')"
  run zdm audit verify "$(J)"
  assert_equal "$status" 0
}

@test "metric_gate: failed measurements beyond failure_limit fail the step and the earlier step is undone" {
  site
  runbook <<EOF
zdm: 1
name: mg-failure
steps:
  - id: switch
    uses: release.symlink
    with: {link: "$T/site/current", target: releases/v2}
  - id: error-rate
    uses: metric_gate
    timeout: 20s
    with:
      provider: prometheus
      address: $PROM
      query: zdm_bad_ratio
      success: result < 0.05
      failure_limit: 1
      count: 5
      interval: 100ms
EOF
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 1
  assert_equal "$(readlink "$T/site/current")" releases/v1
  run measurements
  assert_output "$(printf '1 failed 0.2\n2 failed 0.2')"
  run failure
  assert_output "failed (2) > failure_limit (1); last measurement (2): 0.2: success condition 'result < 0.05' is not true"
  run events "$(J)"
  assert_line "undo.succeeded switch"
  assert_line "rollback.started error-rate"
}

@test "metric_gate: an empty result is inconclusive: the run pauses (exit 4) and zdm resume measures again" {
  prom unset zdm_late_ratio
  runbook <<EOF
zdm: 1
name: mg-empty
steps:
  - id: late
    uses: metric_gate
    timeout: 20s
    with:
      provider: prometheus
      address: $PROM
      query: zdm_late_ratio
      success: result < 0.05
      count: 2
      interval: 100ms
EOF
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 4
  assert_output --partial "paused: step 'late' could not decide (inconclusive (1) > inconclusive_limit (0); last measurement (1): no data (empty result): no condition is true for it, and no data is never a success)"
  run measurements
  assert_output "1 inconclusive null"
  run jq -c 'select(.event=="run.paused") | .data.needs_decision' "$(J)"
  assert_output true
  run jq -c 'select(.event=="step.failed") | .data.needs_decision' "$(J)"
  assert_output true
  run zdm status "$T/rb.yml" --state-dir "$T/state"
  assert_output --partial paused

  # the metric shows up; a person resumes: the gate measures again
  prom set zdm_late_ratio 0.01
  prom await zdm_late_ratio 0.01
  run zdm resume "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 0
  run measurements
  assert_output "$(printf '1 inconclusive null\n1 successful 0.01\n2 successful 0.01')"
  run jq -r 'select(.event=="run.finished") | .data.status' "$(J)"
  assert_output succeeded
}

@test "metric_gate: NaN is inconclusive unless a condition says what NaN means" {
  gate() {
    runbook <<EOF
zdm: 1
name: mg-nan
steps:
  - id: nan
    uses: metric_gate
    timeout: 20s
    with:
      provider: prometheus
      address: $PROM
      query: zdm_nan_ratio
      count: 2
      interval: 100ms
$1
EOF
  }
  # success only: NaN < 0.05 is false, yet NaN is not a failure: inconclusive
  gate '      success: result < 0.05'
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 4
  run measurements
  assert_output "1 inconclusive NaN"
  # failure only: NaN > 0.1 is false, yet NaN is not a success either
  gate '      failure: result > 0.1'
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 4
  # a condition that says NaN is bad
  gate '      failure: isnan(result) or result > 0.1'
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 1
  run failure
  assert_output "failed (1) > failure_limit (0); last measurement (1): NaN: failure condition 'isnan(result) or result > 0.1' is true"
  # and one that says NaN is fine
  gate '      success: result ~= result or result < 0.05'
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 0
  run measurements
  assert_output "$(printf '1 successful NaN\n2 successful NaN')"
}

@test "metric_gate: neither condition true is inconclusive; past inconclusive_limit the run pauses" {
  runbook <<EOF
zdm: 1
name: mg-mid
steps:
  - id: mid
    uses: metric_gate
    timeout: 20s
    with:
      provider: prometheus
      address: $PROM
      query: zdm_mid_ratio
      success: result < 0.05
      failure: result >= 0.1
      inconclusive_limit: 1
      count: 4
      interval: 100ms
EOF
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 4
  run measurements
  assert_output "$(printf '1 inconclusive 0.07\n2 inconclusive 0.07')"
  run failure
  assert_output "inconclusive (2) > inconclusive_limit (1); last measurement (2): 0.07: neither success 'result < 0.05' nor failure 'result >= 0.1' is true"
  run zdm rollback "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 0
}

@test "metric_gate: a query that does not parse gives error measurements; past consecutive_error_limit the step fails with Prometheus' message" {
  runbook <<EOF
zdm: 1
name: mg-syntax
steps:
  - id: broken
    uses: metric_gate
    timeout: 20s
    with:
      provider: prometheus
      address: $PROM
      query: sum(rate(zdm_error_ratio[5m])
      success: result < 0.05
      consecutive_error_limit: 2
      interval: 100ms
EOF
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 1
  run measurements
  assert_output "$(printf '1 error null\n2 error null\n3 error null')"
  run failure
  assert_output --regexp '^consecutive errors \(3\) > consecutive_error_limit \(2\); last measurement \(3\): prometheus: bad_data: invalid parameter "query": 1:[0-9]+: parse error: unclosed left parenthesis \(HTTP 400\)$'
  run jq -r 'select(.event=="gate.measurement") | .data.tally.consecutive_errors' "$(J)"
  assert_output "$(printf '1\n2\n3')"
}

@test "metric_gate: Prometheus down: connection refused is an error measurement, and the gate fails after consecutive_error_limit" {
  local port
  port="$(free_port)"
  runbook <<EOF
zdm: 1
name: mg-down
steps:
  - id: down
    uses: metric_gate
    timeout: 20s
    with:
      provider: prometheus
      address: http://127.0.0.1:$port
      query: zdm_error_ratio
      success: result < 0.05
      consecutive_error_limit: 1
      interval: 100ms
EOF
  SECONDS=0
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 1
  [ "$SECONDS" -lt 10 ]
  run measurements
  assert_output "$(printf '1 error null\n2 error null')"
  run failure
  assert_output --partial "consecutive errors (2) > consecutive_error_limit (1); last measurement (2): prometheus at http://127.0.0.1:$port: "
  assert_output --partial "Connection refused"
}

@test "metric_gate: a dry run queries Prometheus for real and journals what it saw" {
  site
  runbook <<EOF
zdm: 1
name: mg-dry
steps:
  - id: switch
    uses: release.symlink
    with: {link: "$T/site/current", target: releases/v2}
  - id: gate
    uses: metric_gate
    timeout: 20s
    with:
      provider: prometheus
      address: $PROM
      query: \${{ vars.query }}
      success: result < 0.05
      count: 2
      interval: 100ms
vars:
  query: zdm_error_ratio
EOF
  run zdm run "$T/rb.yml" --state-dir "$T/state" --dry-run
  assert_equal "$status" 0
  assert_line --partial "[1/2] planned"
  assert_line "        gate: measurement 2/2: 0.01 successful (success: result < 0.05)"
  assert_equal "$(readlink "$T/site/current")" releases/v1
  run measurements
  assert_output "$(printf '1 successful 0.01\n2 successful 0.01')"
  # a breaching metric fails the rehearsal (exit 1), and nothing is undone
  run zdm run "$T/rb.yml" --state-dir "$T/state" --dry-run --var query=zdm_bad_ratio
  assert_equal "$status" 1
  run measurements
  assert_output "1 failed 0.2"
  assert_equal "$(readlink "$T/site/current")" releases/v1
}

@test "metric_gate: a rate over backfilled counters (promtool) is measured exactly" {
  runbook <<'EOF'
zdm: 1
name: mg-backfill
vars:
  prom: http://127.0.0.1
  max: "0.05"
steps:
  - id: error-rate
    uses: metric_gate
    timeout: 20s
    with:
      provider: prometheus
      address: ${{ vars.prom }}
      query: sum(rate(zdm_bf_requests_total{code="500"}[10m])) / sum(rate(zdm_bf_requests_total[10m]))
      success: result < ${{ vars.max }}
      count: 2
      interval: 100ms
EOF
  run zdm run "$T/rb.yml" --state-dir "$T/state" --var prom="$PROM"
  assert_equal "$status" 0
  # 2 errors in 100 requests, whatever the second it runs
  run jq -r 'select(.event=="gate.measurement") | .data.value * 1e6 | round' "$(J)"
  assert_output "$(printf '20000\n20000')"
  run zdm run "$T/rb.yml" --state-dir "$T/state" --var prom="$PROM" --var max=0.01
  assert_equal "$status" 1
  run failure
  assert_output --regexp "^failed \(1\) > failure_limit \(0\); last measurement \(1\): 0\.02: success condition 'result < 0\.01' is not true$"
}

@test "metric_gate: several series make result a list of {metric, value}" {
  gate() {
    runbook <<EOF
zdm: 1
name: mg-list
steps:
  - id: each
    uses: metric_gate
    timeout: 20s
    with:
      provider: prometheus
      address: $PROM
      query: zdm_series_ratio
      success: '$1'
      count: 1
      consecutive_error_limit: 0
EOF
  }
  gate '#result == 2 and result[1].value < 0.05 and result[2].value < 0.05 and result[1].metric.job == "app"'
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 0
  assert_line "        each: measurement 1/1: 2 series successful (success: #result == 2 and result[1].value < 0.05 and result[2].value < 0.05 and result[1].metric.job == \"app\")"
  run jq -c 'select(.event=="gate.measurement") | .data.value | map(.value) | sort' "$(J)"
  assert_output '[0.01,0.02]'
  # a number comparison on a list is an error measurement that says why
  gate 'result < 0.05'
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 1
  run failure
  assert_output "consecutive errors (1) > consecutive_error_limit (0); last measurement (1): condition 'result < 0.05': attempt to compare table with number (result is a list of 2 series {metric, value}: use result[1].value, or aggregate the query, e.g. max(...))"
}

@test "metric_gate: consecutive_success_limit with failure_limit -1 waits until the metric holds" {
  prom set zdm_flip_ratio 0.2
  prom await zdm_flip_ratio 0.2
  runbook <<EOF
zdm: 1
name: mg-wait
steps:
  - id: settle
    uses: metric_gate
    timeout: 20s
    with:
      provider: prometheus
      address: $PROM
      query: zdm_flip_ratio
      success: result < 0.05
      failure_limit: -1
      consecutive_success_limit: 2
      interval: 200ms
EOF
  zdm run "$T/rb.yml" --state-dir "$T/state" >"$T/out" 2>&1 &
  local pid=$! i st=0
  # a few failed measurements, then the metric recovers
  for i in $(seq 100); do
    [ "$(cat "$T"/state/runs/*.jsonl 2>/dev/null | grep -c '"gate.measurement"')" -ge 2 ] && break
    sleep 0.1
  done
  prom set zdm_flip_ratio 0.01
  wait "$pid" || st=$?
  assert_equal "$st" 0
  run jq -r 'select(.event=="gate.measurement") | .data.phase' "$(J)"
  assert_line --index 0 failed
  assert_equal "$(tail -n 2 <<<"$output")" "$(printf 'successful\nsuccessful')"
  run jq -r 'select(.event=="step.succeeded") | .data.outputs.verdict' "$(J)"
  assert_output "consecutive successes (2) reached consecutive_success_limit"
}

@test "metric_gate: count 0 measures until the step's timeout, then succeeds; with no success at all it pauses" {
  gate() {
    runbook <<EOF
zdm: 1
name: mg-window
steps:
  - id: watch
    uses: metric_gate
    timeout: 1s
    with:
      provider: prometheus
      address: $PROM
      query: $1
      failure: result > 0.1
      inconclusive_limit: 10
      interval: 200ms
EOF
  }
  gate zdm_error_ratio
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 0
  [ "$(measurements | wc -l)" -ge 3 ]
  run jq -r 'select(.event=="step.succeeded") | .data.outputs.verdict' "$(J)"
  assert_output "the step's timeout ended the measurements; no limit was exceeded"
  # every measurement inconclusive (within the limit): no data never passes
  gate zdm_absent_ratio
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 4
  run failure
  assert_output "the step's timeout ended the measurements without one successful measurement; last measurement ($(measurements | wc -l)): no data (empty result): no condition is true for it, and no data is never a success"
}

@test "metric_gate: a bearer token from secrets is sent but never written; a literal one is refused" {
  control <<'EOF'
{"/api/v1/query": {"json": {"status": "success", "data": {"resultType": "scalar", "result": [1700000000, "0.01"]}}}}
EOF
  start_httpd
  export PROM_TOKEN="tok-$RANDOM-secret-$RANDOM"
  runbook <<EOF
zdm: 1
name: mg-auth
secrets:
  token: {env: PROM_TOKEN}
steps:
  - id: authed
    uses: metric_gate
    timeout: 20s
    with:
      provider: prometheus
      address: $BASE/
      query: zdm_error_ratio{job="app"}
      success: result < 0.05
      token: \${{ secrets.token }}
      count: 2
      interval: 100ms
EOF
  run zdm run "$T/rb.yml" --state-dir "$T/state" --output json
  assert_equal "$status" 0
  refute_output --partial "$PROM_TOKEN"
  run grep -c -- "$PROM_TOKEN" "$(J)"
  assert_output 0
  run jq -r 'select(.event=="step.started") | .data.params.token' "$(J)"
  assert_output '***'
  # what arrived: the token, and the query URL-encoded on the API path
  run requests_to /api/v1/query
  assert_equal "$(jq -r '.headers.authorization' <<<"${lines[0]}")" "Bearer $PROM_TOKEN"
  assert_equal "$(jq -r '.path' <<<"${lines[0]}")" "/api/v1/query?query=zdm_error_ratio%7Bjob%3D%22app%22%7D&timeout=10.000"

  # written in the runbook, the token would be journaled with the params
  sed -i "s/^      token: .*/      token: $PROM_TOKEN/" "$T/rb.yml"
  run zdm validate "$T/rb.yml"
  assert_equal "$status" 2
  assert_output --partial "rb.yml:14:14: step 'authed': param 'token': must come from secrets (token: \${{ secrets.NAME }})"
}

@test "metric_gate: an address that is not a Prometheus API is an error measurement naming the status" {
  control <<<'{}'
  start_httpd
  runbook <<EOF
zdm: 1
name: mg-notprom
steps:
  - id: wrong
    uses: metric_gate
    timeout: 20s
    with:
      provider: prometheus
      address: $BASE
      query: up
      success: result == 1
      consecutive_error_limit: 0
EOF
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 1
  run failure
  assert_output "consecutive errors (1) > consecutive_error_limit (0); last measurement (1): HTTP 404 from $BASE, not a Prometheus API response ('no such path')"
  # insecure: true is warned about on stderr (and journaled with the params)
  sed -i 's/consecutive_error_limit: 0/consecutive_error_limit: 0\n      insecure: true/' "$T/rb.yml"
  run --separate-stderr zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 1
  assert_equal "$stderr" "zdm: warning: step 'wrong': insecure: true: the TLS certificate of $BASE is not verified"
  run jq -r 'select(.event=="step.started") | .data.params.insecure' "$(J)"
  assert_output true
}

@test "metric_gate: zdm validate reports bad params with FILE:LINE:COL and runs nothing" {
  runbook <<'EOF'
zdm: 1
name: mg-bad
vars:
  prom: http://127.0.0.1:9090
steps:
  - id: a
    uses: metric_gate
    with:
      provider: promethues
      address: ${{ vars.prom }}
      query: up
      success: result < 0.05
  - id: b
    uses: metric_gate
    with:
      provider: prometheus
      address: ftp://example
      query: up
      interval: 0s
      success: "result <"
  - id: c
    uses: metric_gate
    with:
      provider: prometheus
      address: ${{ vars.prom }}
      query: up
  - id: d
    uses: metric_gate
    with:
      provider: prometheus
      address: ${{ vars.prom }}
      query: up
      failure: resutl > 0.1
      count: 3
      failure_limit: 3
  - id: e
    uses: metric_gate
    with:
      provider: datadog
      address: not a url
      query: up
      success: result < 0.05
      failure_limit: -1
EOF
  run --separate-stderr zdm validate "$T/rb.yml"
  assert_equal "$status" 2
  assert_equal "$stderr" "$(cat <<EOF
$T/rb.yml:9:17: step 'a': param 'provider': unknown provider 'promethues' (did you mean 'prometheus'?)
$T/rb.yml:17:16: step 'b': param 'address': 'ftp://example': the scheme must be http or https
$T/rb.yml:19:17: step 'b': param 'interval': must be longer than 0 (e.g. 30s)
$T/rb.yml:20:16: step 'b': param 'success': condition 'result <' does not parse: unexpected symbol at the end of the condition
$T/rb.yml:24:7: step 'c': metric_gate needs a 'success' or a 'failure' condition, or both (Lua over result, e.g. success: "result < 0.05")
$T/rb.yml:33:16: step 'd': param 'failure': condition 'resutl > 0.1': unknown name 'resutl' (did you mean 'result'?)
$T/rb.yml:35:22: step 'd': param 'failure_limit': 3 must be less than count (3): the gate could never fail
$T/rb.yml:39:17: step 'e': param 'provider': unknown provider 'datadog' (metric_gate speaks: prometheus)
$T/rb.yml:40:16: step 'e': param 'address': 'not a url': not an absolute URL (expected http://host[:port]/path or https://...)
$T/rb.yml:43:22: step 'e': param 'failure_limit': -1 (never fail on failed measurements) needs consecutive_success_limit > 0, or the gate could not decide
zdm: 10 errors; nothing ran
EOF
)"
  assert_not_exist "$T/.zdm"
}

@test "metric_gate: zdm plugins and zdm plan describe it" {
  run zdm plugins
  assert_equal "$status" 0
  assert_output --partial "metric_gate"
  assert_output --partial "consecutive_error_limit"
  runbook <<'EOF'
zdm: 1
name: mg-plan
steps:
  - id: gate
    uses: metric_gate
    with:
      provider: prometheus
      address: http://prom:9090
      query: up
      success: result == 1
      count: 5
      interval: 1m
EOF
  run zdm plan "$T/rb.yml"
  assert_equal "$status" 0
  assert_line "      do:   query prometheus at http://prom:9090: up; 5 measurements 1m0s apart; success: result == 1; fails past 0 failed or 4 errors in a row; pauses past 0 inconclusive"
}
