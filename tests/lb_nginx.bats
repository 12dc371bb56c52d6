#!/usr/bin/env bats
# lb.nginx and runbooks/blue-green-nginx.yml against a real nginx on
# 127.0.0.1 (tests/servers/lb_nginx.bash): blue served by nginx itself, green
# by tests/servers/httpd.py, traffic through nginx's upstream `app`.

bats_require_minimum_version 1.5.0
load helper
load servers/httpd
load servers/lb_nginx

teardown() {
  stop_lb
  stop_servers
  helper_teardown
}

RB="$REPO/runbooks/blue-green-nginx.yml"

# the blue-green runbook with every var pointed at this test's servers
bg() {
  local cmd="$1"
  shift
  zdm "$cmd" "$RB" --state-dir "$T/state" \
    --var nginx_conf="$T/lb/nginx.conf" --var nginx_prefix="$T/lb/" \
    --var nginx_pid="$T/lb/nginx.pid" --var upstream_file="$T/lb/upstream.conf" \
    --var upstream=app --var green="127.0.0.1:$GREEN_PORT" \
    --var green_health_url="http://127.0.0.1:$GREEN_PORT/ready" \
    --var site_url="$FRONT/health" --var gate_interval=100ms \
    --var healthy_rounds=2 --var watch_rounds=3 "$@"
}

# 20 requests through nginx, the distinct answers, sorted, one line
answers() {
  local i urls=()
  # one curl process, one keep-alive connection; nginx balances each request
  for i in $(seq 20); do urls+=("$FRONT/"); done
  curl -s --max-time 10 "${urls[@]}" | sort -u | tr '\n' ' '
}

setup_lb() {
  start_lb_nginx
  start_green
  cp "$T/lb/upstream.conf" "$T/upstream.before"
}

# the upstream file is byte for byte the one setup_lb found, and blue answers
assert_on_blue() {
  cmp "$T/lb/upstream.conf" "$T/upstream.before"
  [ "$(answers)" = "blue " ]
}

# the with: lines that point an lb.nginx step at this test's nginx
nginx_at() {
  printf '      conf: %s\n      prefix: %s\n      pid_file: %s\n' "$T/lb/nginx.conf" "$T/lb/" "$T/lb/nginx.pid"
}

# $T/rb.yml: runbook NAME of one lb.nginx step `switch` on this test's nginx
# for upstream app in $T/lb/upstream.conf; more `with:` lines on stdin
switch_runbook() {   # name
  cat >"$T/rb.yml" <<YML
zdm: 1
name: $1
steps:
  - id: switch
    uses: lb.nginx
    with:
$(nginx_at)
      file: $T/lb/upstream.conf
      upstream: app
YML
  cat >>"$T/rb.yml"
}

@test "lb.nginx: blue-green runbook switches all traffic to green, with nginx -t and a confirmed reload" {
  setup_lb
  [ "$(answers)" = "blue " ]
  workers_before="$(lb_workers)"
  run bg plan
  assert_equal "$status" 0
  assert_output --partial "upstream app in $T/lb/upstream.conf: 127.0.0.1:$GREEN_PORT (now: 127.0.0.1:$BLUE_PORT); then nginx -t -c $T/lb/nginx.conf and HUP to the master in $T/lb/nginx.pid"
  run bg run
  assert_equal "$status" 0
  assert_output --regexp "switch: upstream app: 127.0.0.1:$GREEN_PORT \(was 127.0.0.1:$BLUE_PORT\); reloaded: master [0-9]+ started worker [0-9]+, old workers stopped accepting"
  [ "$(answers)" = "green " ]
  [ "$(lb_workers)" != "$workers_before" ]
  # only the server lines changed; the comment and keepalive stayed
  run cat "$T/lb/upstream.conf"
  assert_output "# the app's servers; lb.nginx edits the server lines of this block
upstream app {
    server 127.0.0.1:$GREEN_PORT;
    keepalive 4;
}"
  # undo_data is the exact previous file
  jq -j 'select(.event=="step.succeeded" and .step=="switch") | .data.undo_data.previous' "$(J)" >"$T/recorded"
  cmp "$T/recorded" "$T/upstream.before"
  # the watch went through nginx to green
  [ "$(requests_in_green /health)" -ge 3 ]
}

requests_in_green() {
  jq -c --arg p "$1" 'select(.path == $p)' "$T/green/requests.jsonl" | wc -l
}

@test "lb.nginx: a failing watch after the switch rolls back to the exact previous file and blue serves" {
  setup_lb
  # green is ready on its own, but its /health (what the site check sees through nginx) fails
  cat >"$T/green/control.json" <<'JSON'
{"/": {"status": 200, "body": "green\n"}, "/health": {"status": 500, "body": "db down\n"},
 "/ready": {"status": 200, "body": "ready\n"}}
JSON
  run bg run
  assert_equal "$status" 1
  assert_output --partial "[3/3] failed    watch"
  assert_output --partial "[2/3] undone    switch"
  assert_on_blue
  run events "$(J)"
  assert_line "undo.succeeded switch"
}

@test "lb.nginx: a config nginx -t refuses leaves the old file, no reload, traffic untouched, nginx's message" {
  setup_lb
  workers_before="$(lb_workers)"
  switch_runbook broken <<YML
      servers:
        - {address: "127.0.0.1:99999", weight: 3}
YML
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --regexp "nginx -t refused the configuration: .*\\[emerg\\] .*invalid port in upstream \"127.0.0.1:99999\" in $T/lb/upstream.conf:3"
  assert_output --partial "test failed"
  cmp "$T/lb/upstream.conf" "$T/upstream.before"
  [ "$(lb_workers)" = "$workers_before" ]
  [ "$(answers)" = "blue " ]
  # no temp file left beside it
  run ls -A "$T/lb"
  refute_output --partial ".zdm-"
}

@test "lb.nginx: weights, down and backup are written; a new file is created and removed again by undo" {
  setup_lb
  cat >"$T/rb.yml" <<YML
zdm: 1
name: canary-nginx
steps:
  - id: extra
    uses: lb.nginx
    with:
$(nginx_at)
      file: $T/lb/conf.d/canary.conf
      upstream: canary
      servers:
        - {address: "127.0.0.1:$BLUE_PORT", weight: 9}
        - {address: "127.0.0.1:$GREEN_PORT", weight: 1}
        - {address: "127.0.0.1:1", weight: 0}
        - {address: "127.0.0.1:2", backup: true}
  - id: stop
    uses: exec
    with: {command: ["false"]}
YML
  run zdm plan "$T/rb.yml" --state-dir "$T/state"
  assert_output --partial "127.0.0.1:$BLUE_PORT weight=9, 127.0.0.1:$GREEN_PORT, 127.0.0.1:1 down, 127.0.0.1:2 backup (no file yet)"
  # stop before the failing step: the file must exist and be what nginx loaded
  ZDM_TEST_CRASH_AFTER_RECORD=3 run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 137
  run cat "$T/lb/conf.d/canary.conf"
  assert_output "# upstream canary: servers set by zdm lb.nginx
upstream canary {
    server 127.0.0.1:$BLUE_PORT weight=9;
    server 127.0.0.1:$GREEN_PORT;
    server 127.0.0.1:1 down;
    server 127.0.0.1:2 backup;
}"
  run zdm rollback "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 0
  assert_file_not_exists "$T/lb/conf.d/canary.conf"
  [ "$(answers)" = "blue " ]
}

@test "lb.nginx: crash after the switch is recorded, before the watch: resume finishes, rollback restores exactly" {
  setup_lb
  # records: 1 run.started, 2-5 green-healthy (started, 2 gate.measurement,
  # succeeded), 6 switch's step.started, 7 its nginx.reload note, 8 its
  # step.succeeded, 9.. watch
  ZDM_TEST_CRASH_AFTER_RECORD=8 run bg run
  assert_equal "$status" 137
  [ "$(answers)" = "green " ]
  run bg resume
  assert_equal "$status" 0
  assert_output --partial "watch"
  [ "$(answers)" = "green " ]
  run events "$(J)"
  assert_line "step.succeeded watch"

  # the same crash, then a rollback instead of a resume
  stop_lb
  setup_lb
  rm -rf "$T/state"
  ZDM_TEST_CRASH_AFTER_RECORD=8 run bg run
  assert_equal "$status" 137
  run bg rollback
  assert_equal "$status" 0
  assert_on_blue
}

@test "lb.nginx: a torn record after the switch leaves it in doubt: rollback undoes it from the snapshot, resume reruns it" {
  setup_lb
  # record 8 (switch's step.succeeded, see above) torn: the switch happened,
  # its end is lost
  ZDM_TEST_TEAR_RECORD=8 run bg run
  assert_equal "$status" 137
  [ "$(answers)" = "green " ]
  run bg rollback
  assert_equal "$status" 0
  assert_on_blue

  # resume instead: the switch is idempotent and runs again; its undo_data is
  # still blue's file (ctx.prior), not the half-done green one
  rm -rf "$T/state"
  ZDM_TEST_TEAR_RECORD=8 run bg run
  assert_equal "$status" 137
  run bg resume
  assert_equal "$status" 0
  jq -j 'select(.event=="step.succeeded" and .step=="switch") | .data.undo_data.previous' "$(J)" >"$T/recorded"
  cmp "$T/recorded" "$T/upstream.before"
  run bg rollback
  assert_on_blue
}

@test "lb.nginx: bad parameters are validation errors at their line and column; nothing is touched" {
  setup_lb
  cat >"$T/rb.yml" <<YML
zdm: 1
name: bad
steps:
  - id: switch
    uses: lb.nginx
    with:
      conf: $T/lb/nginx.conf
      file: $T/lb/upstream.conf
      upstream: "app pool"
      servers:
        - {address: "127.0.0.1:1", weight: -1, wieght: 2}
YML
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "rb.yml:9:17: step 'switch': param 'upstream': must be an upstream name (letters, digits, _ . -)"
  assert_output --partial "rb.yml:11:9: step 'switch': param 'servers': server 1: unknown field 'wieght' (address, weight, backup)"
  assert_output --partial "rb.yml:11:9: step 'switch': param 'servers': server 1: weight must be a whole number from 0 (down) to 1000000, got -1"
  cmp "$T/lb/upstream.conf" "$T/upstream.before"
  assert_file_not_exists "$T/state"
}

@test "lb.nginx: without pid_file it reloads with nginx -s reload (not confirmed) and says so" {
  setup_lb
  # an empty --var is refused; the empty string on purpose is --var 'k=""'
  run bg run --var nginx_pid=
  assert_equal "$status" 2
  assert_output --partial "--var 'nginx_pid=': the value is empty"
  run bg run --var 'nginx_pid=""'
  assert_equal "$status" 0
  assert_output --partial "nginx -s reload sent (not confirmed: no pid_file)"
  # the reload is asynchronous: wait (bounded) for the new generation
  for i in $(seq 100); do [ "$(answers)" = "green " ] && break; sleep 0.05; done
  [ "$(answers)" = "green " ]
}

@test "lb.nginx: a reload nginx cannot apply is caught (no new workers); traffic stays on blue" {
  setup_lb
  # nginx -t does not bind ports, a reload does: a listen on green's busy
  # port passes the test and makes every reload fail in the master
  echo "server { listen 127.0.0.1:$GREEN_PORT; }" >"$T/lb/conf.d/busy.conf"
  workers_before="$(lb_workers)"
  switch_runbook busy <<YML
      reload_timeout: 1s
      servers: [{address: "127.0.0.1:$GREEN_PORT"}]
YML
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  # the undo restores the file but cannot reload either: a person must look
  assert_equal "$status" 3
  assert_output --regexp "nginx master [0-9]+ started no new worker within 1000 ms of the reload: it kept the old configuration"
  cmp "$T/lb/upstream.conf" "$T/upstream.before"
  [ "$(lb_workers)" = "$workers_before" ]
  [ "$(answers)" = "blue " ]
  grep -q "Address already in use" "$T/lb/error.log"
}

@test "lb.nginx: the reload signals the master itself (kill(2)): no kill or other program but nginx -t is spawned" {
  setup_lb
  # a PATH that holds nginx and nothing else: no kill, no sh to run one
  mkdir "$T/onlynginx"
  ln -s "$(command -v nginx)" "$T/onlynginx/nginx"
  workers_before="$(lb_workers)"
  switch_runbook hup <<YML
      nginx: $T/onlynginx/nginx
      servers: [{address: "127.0.0.1:$GREEN_PORT"}]
YML
  run env PATH="$T/onlynginx" "$(command -v timeout)" 60 "$ZDM_EXE" run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 0
  assert_output --regexp "reloaded: master [0-9]+ started worker [0-9]+, old workers stopped accepting"
  refute_output --partial "kill"
  [ "$(lb_workers)" != "$workers_before" ]
  [ "$(answers)" = "green " ]
}

@test "lb.nginx: a pid file naming pid 1 is refused, no signal sent; the file is put back" {
  setup_lb
  printf 1 >"$T/fake.pid"
  switch_runbook pid1 <<YML
      servers: [{address: "127.0.0.1:$GREEN_PORT"}]
YML
  sed -i "s|pid_file: .*|pid_file: $T/fake.pid|" "$T/rb.yml"
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  # the undo cannot reload either: a person must look
  assert_equal "$status" 3
  assert_output --partial "$T/fake.pid holds pid \"1\", not an nginx master"
  cmp "$T/lb/upstream.conf" "$T/upstream.before"
  [ "$(answers)" = "blue " ]
}
