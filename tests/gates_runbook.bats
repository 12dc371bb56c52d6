#!/usr/bin/env bats
# runbooks/gated-release.yml for real: the release.symlink switch, then a
# health_gate against tests/servers/httpd.py (the "app", whose health the
# test controls) and a metric_gate against a real Prometheus scraping the
# app's metrics file.  A failing gate rolls the switch back; passing gates
# keep it.

bats_require_minimum_version 1.5.0
load helper
load servers/httpd
load servers/prometheus

RB="$REPO/runbooks/gated-release.yml"

setup_file() {
  prom_file_start
  # the app's error ratio, one series per test (the tests may run at once)
  local s
  for s in "pass 0.01" "breach 0.2" "health 0.01" "dry 0.01"; do
    prom set "app_error_ratio{test=\"${s% *}\"}" "${s#* }"
  done
  prom await 'app_error_ratio{test="dry"}' 0.01
}

teardown_file() {
  prom_file_stop
}

# $T/site with releases v1 and v2, current -> v1; the app's health
setup_site() {
  mkdir -p "$T/site/releases/v1" "$T/site/releases/v2"
  ln -s "$T/site/releases/v1" "$T/site/current"
  control <<<"{\"/health\": {\"status\": $1, \"body\": \"ok\"}}"
  start_httpd
}

# zdm run|... the runbook against this test's site, app and series
gated() {
  zdm "$1" "$RB" --state-dir "$T/state" --var site="$T/site" --var health_url="$BASE/health" \
    --var prometheus="$PROM" --var error_query="app_error_ratio{test=\"$2\"}" \
    --var gate_interval=100ms --var measurements=3 "${@:3}"
}

@test "gated-release: validates as shipped" {
  run zdm validate "$RB"
  assert_equal "$status" 0
}

@test "gated-release: healthy and under the threshold: the switch stays" {
  setup_site 200
  run gated run pass
  assert_equal "$status" 0
  assert_equal "$(readlink "$T/site/current")" "$T/site/releases/v2"
  run jq -r 'select(.event=="gate.measurement") | .step' "$(J)"
  assert_output "$(printf 'healthy\nhealthy\nhealthy\nerror-ratio\nerror-ratio\nerror-ratio')"
  run jq -r 'select(.event=="run.finished") | .data.status' "$(J)"
  assert_output succeeded
}

@test "gated-release: a failing metric gate rolls the switch back" {
  setup_site 200
  run gated run breach
  assert_equal "$status" 1
  assert_equal "$(readlink "$T/site/current")" "$T/site/releases/v1"
  run events "$(J)"
  assert_line "step.succeeded healthy"
  assert_line "step.failed error-ratio"
  assert_line "undo.succeeded switch"
  run jq -r 'select(.event=="step.failed") | .data.error' "$(J)"
  assert_output "failed (1) > failure_limit (0); last measurement (1): 0.2: failure condition 'result >= 0.05' is true"
  run jq -r 'select(.event=="run.finished") | .data.status' "$(J)"
  assert_output rolled_back
}

@test "gated-release: a failing health gate rolls the switch back before the metric is asked" {
  setup_site 503
  run gated run health
  assert_equal "$status" 1
  assert_equal "$(readlink "$T/site/current")" "$T/site/releases/v1"
  run events "$(J)"
  assert_line "step.failed healthy"
  assert_line "undo.succeeded switch"
  refute_line --partial "error-ratio"
}

@test "gated-release: a dry run leaves the link alone and both gates query for real" {
  setup_site 200
  run gated run dry --dry-run
  assert_equal "$status" 0
  assert_equal "$(readlink "$T/site/current")" "$T/site/releases/v1"
  run jq -r 'select(.event=="gate.measurement") | .step' "$(J)"
  assert_line healthy
  assert_line error-ratio
  [ "$(requests_to /health | wc -l)" -ge 3 ]
}
