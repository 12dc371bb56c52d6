#!/usr/bin/env bats
# Rehearsals that fail where the real run would: a step type's check() runs
# in --dry-run in place of run() (nginx -t on a copy with the candidate
# upstream, the ssh host key and login, PostgreSQL objects and privileges,
# HAProxy's backend and servers), against real servers on 127.0.0.1; and
# zdm plan / --dry-run evaluate if: with what is known and describe later
# steps from the planned state.

bats_require_minimum_version 1.5.0
load helper
load servers/httpd
load servers/lb_nginx

teardown() {
  stop_lb
  stop_servers
  helper_teardown
}

# the with: lines that point an lb.nginx step at this test's nginx
nginx_at() {
  printf '      conf: %s\n      prefix: %s\n      pid_file: %s\n' "$T/lb/nginx.conf" "$T/lb/" "$T/lb/nginx.pid"
}

# $T/rb.yml: one lb.nginx step `switch` on upstream app, to SERVER
nginx_runbook() {   # server
  cat >"$T/rb.yml" <<YML
zdm: 1
name: check-nginx
steps:
  - id: switch
    uses: lb.nginx
    with:
$(nginx_at)
      file: $T/lb/upstream.conf
      upstream: app
      servers: [{address: "$1"}]
YML
}

# ---- lb.nginx -----------------------------------------------------------------

@test "check: lb.nginx: a dry run tests the candidate with nginx -t and fails where the real run would, live config untouched" {
  start_lb_nginx
  cp "$T/lb/upstream.conf" "$T/before"
  cp "$T/lb/nginx.conf" "$T/conf.before"
  nginx_runbook "127.0.0.1:70000"
  run --separate-stderr zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line --regexp '^\[1/1\] failed +switch'
  assert_output --partial "check failed: nginx -t refused the configuration"
  assert_output --partial "invalid port in upstream \"127.0.0.1:70000\" in $T/lb/upstream.conf (as the step would write it)"
  assert_line --partial "dry run: step 'switch' failed"
  # nothing changed, no copy left behind, nginx still serves blue
  cmp "$T/lb/upstream.conf" "$T/before"
  cmp "$T/lb/nginx.conf" "$T/conf.before"
  run ls -A "$T/lb"
  refute_output --partial ".zdm-check"
  [ "$(front)" = "blue" ]
  run jq -r 'select(.event=="step.failed") | [.step, .data.check, (.data.error | test("nginx -t refused"))] | @tsv' "$(J)"
  assert_output "switch	true	true"
  run jq -r 'select(.event=="run.finished") | .data.status + " " + .data.failed_step' "$(J)"
  assert_output "failed switch"
  # the real run fails the same way at the same step
  run zdm run "$T/rb.yml" --state-dir "$T/state2"
  assert_equal "$status" 1
  assert_output --partial "nginx -t refused the configuration"
  cmp "$T/lb/upstream.conf" "$T/before"
}

@test "check: lb.nginx: a dry run with a valid candidate says it was tested and changes nothing" {
  start_lb_nginx
  start_green
  cp "$T/lb/upstream.conf" "$T/before"
  nginx_runbook "127.0.0.1:$GREEN_PORT"
  run --separate-stderr zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 0
  assert_line --regexp '^\[1/1\] planned +switch$'
  assert_line "        checked: nginx -t accepts the configuration with the new upstream app (tested on a copy)"
  assert_line 'dry run ok: read-only steps passed; nothing was changed.'
  cmp "$T/lb/upstream.conf" "$T/before"
  run ls -A "$T/lb"
  refute_output --partial ".zdm-check"
  [ "$(front)" = "blue" ]
  run jq -r 'select(.event=="step.skipped") | .data.checked' "$(J)"
  assert_output "nginx -t accepts the configuration with the new upstream app (tested on a copy)"
}
