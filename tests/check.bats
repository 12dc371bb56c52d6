#!/usr/bin/env bats
# Rehearsals that fail where the real run would: a step type's check() runs
# in --dry-run in place of run() (nginx -t on a copy with the candidate
# upstream, the ssh host key and login, PostgreSQL objects and privileges,
# HAProxy's backend and servers), against real servers on 127.0.0.1; and
# zdm plan / --dry-run evaluate if: with what is known and describe later
# steps from the planned state.

bats_require_minimum_version 1.5.0
load helper
# the helper's teardown, before the server libraries wrap it
eval "base_$(declare -f teardown)"
load servers/httpd
load servers/lb_nginx
load servers/haproxy
load servers/sshd
load servers/postgres

setup_file() {
  pg_start check
}

teardown_file() {
  pg_stop_all
}

teardown() {
  stop_lb
  stop_haproxy
  stop_servers
  stop_sshds
  base_teardown
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

# ---- the contract ---------------------------------------------------------------

@test "check: a Lua plugin's check(ctx, params) runs in --dry-run only, in place of run(); nil, why fails the rehearsal" {
  plugin_file "$T/plugins" t.gated <<'LUA'
return {
  description = "a step that checks a marker",
  params = {{name = "marker", type = "string", required = true}},
  check = function(ctx, p)
    zdm.file.write_atomic(p.marker .. ".checked", ctx.step_id .. " dry_run=" .. tostring(ctx.dry_run))
    if zdm.file.exists(p.marker) then return "the marker is there" end
    if p.marker:find("raise") then error("boom in check") end
    if p.marker:find("table") then return {1} end
    return nil, "no marker at " .. p.marker
  end,
  run = function(ctx, p) zdm.file.write_atomic(p.marker .. ".ran", "x") end,
}
LUA
  cat >"$T/rb.yml" <<YML
zdm: 1
name: contract
steps:
  - id: gated
    uses: t.gated
    with: {marker: $T/m}
  - id: after
    uses: exec
    with: {command: [touch, $T/after]}
YML
  run --separate-stderr zdm plan "$T/rb.yml" --plugin-path "$T/plugins"
  assert_equal "$status" 0
  assert_file_not_exists "$T/m.checked"
  run --separate-stderr zdm run "$T/rb.yml" --dry-run --plugin-path "$T/plugins" --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line --regexp '^\[1/2\] failed +gated'
  assert_line "        check failed: no marker at $T/m"
  assert_line "dry run: step 'gated' failed: check failed: no marker at $T/m"
  refute_line --partial "after"
  run cat "$T/m.checked"
  assert_output "gated dry_run=true"
  assert_file_not_exists "$T/m.ran"
  run jq -r 'select(.event | startswith("step.")) | .event + " " + .step' "$(J)"
  assert_output "step.failed gated"
  touch "$T/m"
  run --separate-stderr zdm run "$T/rb.yml" --dry-run --plugin-path "$T/plugins" --state-dir "$T/state"
  assert_equal "$status" 0
  assert_line "        checked: the marker is there"
  assert_file_not_exists "$T/m.ran"
  # an error raised in check, and a value check may not return
  sed -i "s|marker: $T/m}|marker: $T/raise}|" "$T/rb.yml"
  run --separate-stderr zdm run "$T/rb.yml" --dry-run --plugin-path "$T/plugins" --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "check failed: "
  assert_output --partial "boom in check"
  sed -i "s|marker: $T/raise}|marker: $T/table}|" "$T/rb.yml"
  run --separate-stderr zdm run "$T/rb.yml" --dry-run --plugin-path "$T/plugins" --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "check failed: check() returned a table (expected nil, true, a line saying what was verified, or nil and why it failed)"
}

# ---- release.symlink ------------------------------------------------------------

@test "check: release.symlink: a dry run fails on a release that is not there; plan describes the second switch from the first" {
  mkdir -p "$T/site/releases/v1" "$T/site/releases/v2"
  ln -s releases/v1 "$T/site/current"
  cat >"$T/rb.yml" <<YML
zdm: 1
name: check-release
steps:
  - id: to-v2
    uses: release.symlink
    with: {link: $T/site/current, target: releases/v2}
  - id: to-v3
    uses: release.symlink
    with: {link: $T/site/current, target: releases/v3}
YML
  run --separate-stderr zdm plan "$T/rb.yml"
  assert_equal "$status" 0
  assert_line "      do:   point $T/site/current at releases/v2 (now: releases/v1)"
  assert_line "      do:   point $T/site/current at releases/v3 (now: releases/v2)"
  run --separate-stderr zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line --regexp '^\[1/2\] planned +to-v2$'
  assert_line "        checked: release directory releases/v2 is there; $T/site/current is a symlink"
  assert_line --regexp '^\[2/2\] failed +to-v3'
  assert_line "        check failed: release directory 'releases/v3' does not exist"
  assert_equal "$(readlink "$T/site/current")" releases/v1
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

@test "check: lb.nginx: a candidate included through a glob (conf.d/*.conf) is tested with the glob's other files" {
  start_lb_nginx
  # another file the glob takes in, which the candidate's config must keep
  printf 'upstream other { server 127.0.0.1:9; }\n' >"$T/lb/conf.d/a-other.conf"
  cat >"$T/rb.yml" <<YML
zdm: 1
name: check-glob
steps:
  - id: canary
    uses: lb.nginx
    with:
$(nginx_at)
      file: $T/lb/conf.d/canary.conf
      upstream: canary
      servers: [{address: "127.0.0.1:$BLUE_PORT"}]
  - id: dup
    uses: lb.nginx
    with:
$(nginx_at)
      file: $T/lb/conf.d/dup.conf
      upstream: other
      servers: [{address: "127.0.0.1:$BLUE_PORT"}]
YML
  run --separate-stderr zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line --regexp '^\[1/2\] planned +canary$'
  assert_line "        checked: nginx -t accepts the configuration with the new upstream canary (tested on a copy)"
  # upstream other is defined in a-other.conf: the glob's other file was in the test
  assert_line --regexp '^\[2/2\] failed +dup'
  assert_output --partial 'duplicate upstream "other" in '"$T/lb/conf.d/dup.conf (as the step would write it)"
  assert_file_not_exists "$T/lb/conf.d/canary.conf"
  assert_file_not_exists "$T/lb/conf.d/dup.conf"
  run ls -A "$T/lb" "$T/lb/conf.d"
  refute_output --partial ".zdm-check"
}

# ---- lb.haproxy ---------------------------------------------------------------

# $T/rb.yml: one lb.haproxy step `shift` on SOCKET setting SERVERS (YAML map)
haproxy_runbook() {   # socket servers
  cat >"$T/rb.yml" <<YML
zdm: 1
name: check-haproxy
steps:
  - id: shift
    uses: lb.haproxy
    with:
      socket: $1
      backend: app
      servers: $2
YML
}

@test "check: lb.haproxy: a dry run fails on a server the backend does not have, and sets nothing" {
  start_backends
  start_haproxy
  BEFORE="$(hx_state)"
  haproxy_runbook "unix:$HX_SOCK" "{green: {weight: 50, state: ready}, purple: {weight: 50}}"
  run --separate-stderr zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line --regexp '^\[1/1\] failed +shift'
  assert_output --partial "check failed: no server 'purple' in backend 'app' (it has: blue, green)"
  [ "$(hx_state)" = "$BEFORE" ]
}

@test "check: lb.haproxy: a dry run fails on a runtime API below level admin, as the run would" {
  start_backends
  start_haproxy user
  BEFORE="$(hx_state)"
  haproxy_runbook "unix:$HX_SOCK" "{green: {weight: 50}}"
  run --separate-stderr zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "check failed: the runtime API unix:$HX_SOCK is at level user: \`set server\` needs \`level admin\`"
  [ "$(hx_state)" = "$BEFORE" ]
}

@test "check: lb.haproxy: a dry run with the backend's servers and an admin socket passes and sets nothing" {
  start_backends
  start_haproxy
  BEFORE="$(hx_state)"
  haproxy_runbook "unix:$HX_SOCK" "{green: {weight: 50, state: ready}}"
  run --separate-stderr zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 0
  assert_line "        checked: backend app has green; the runtime API answers at level admin"
  [ "$(hx_state)" = "$BEFORE" ]
}

# ---- exec ---------------------------------------------------------------------

@test "check: exec: a dry run finds the program, the cwd and the shell line's syntax, and runs nothing" {
  mkdir "$T/bin" "$T/work"
  printf '#!/bin/sh\ntouch %s/ran\n' "$T" >"$T/bin/deploy"
  chmod +x "$T/bin/deploy"
  cat >"$T/rb.yml" <<YML
zdm: 1
name: check-exec
steps:
  - id: found
    uses: exec
    with: {command: [deploy], env: {PATH: "$T/bin:/usr/bin:/bin"}, cwd: "$T/work"}
  - id: parses
    uses: exec
    with: {shell: 'for f in a b; do touch "$T/ran-\$f"; done'}
YML
  run --separate-stderr zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 0
  assert_line "        checked: the program is found and executable (not run)"
  assert_line "        checked: the shell command line parses (sh -n; not run)"
  assert_not_exist "$T/ran"
  assert_not_exist "$T/ran-a"
  # each way the real run would fail before its command does anything
  for bad in "{command: [no-such-program-zdm]}" \
             "{command: [./deploy], cwd: \"$T/bin/nope\"}" \
             "{command: [\"$T/work\"]}" \
             "{shell: 'if then fi; touch $T/ran'}"; do
    cat >"$T/rb.yml" <<YML
zdm: 1
name: check-exec
steps:
  - id: bad
    uses: exec
    with: $bad
YML
    run --separate-stderr zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
    assert_equal "$status" 1
    assert_line --regexp '^\[1/1\] failed +bad'
    echo "$output" >>"$T/all.out"
  done
  run cat "$T/all.out"
  assert_output --partial "check failed: command: 'no-such-program-zdm' is not found in PATH ("
  assert_output --partial "check failed: cwd '$T/bin/nope' does not exist"
  assert_output --partial "check failed: command: '$T/work' is not an executable file"
  assert_output --partial "check failed: shell: /bin/sh finds the command line malformed (sh -n): "
  assert_not_exist "$T/ran"
}

# ---- http ---------------------------------------------------------------------

@test "check: http: a dry run connects without sending a request, and fails when nothing listens" {
  control <<'JSON'
{"/flag": {"echo": true}}
JSON
  start_httpd
  dead="$(free_port)"
  cat >"$T/rb.yml" <<YML
zdm: 1
name: check-http
steps:
  - id: flag
    uses: http
    with: {method: POST, url: "$BASE/flag", body: {on: true}}
  - id: notify
    uses: http
    with: {method: POST, url: "http://127.0.0.1:$dead/hook"}
YML
  run --separate-stderr zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line --regexp '^\[1/2\] planned +flag$'
  assert_line "        checked: the host resolves and accepts a connection (no request sent)"
  assert_line --regexp '^\[2/2\] failed +notify'
  assert_output --partial "check failed: connecting for http://127.0.0.1:$dead/hook: "
  assert_output --partial "Connection refused"
  assert_not_exist "$T/requests.jsonl"
}

# ---- ssh ----------------------------------------------------------------------

# $T/rb.yml: one ssh step `deploy` on 127.0.0.1:PORT that would touch $T/ran;
# more with: lines on stdin
ssh_runbook() {   # port
  cat >"$T/rb.yml" <<YML
zdm: 1
name: check-ssh
steps:
  - id: deploy
    uses: ssh
    with:
      hosts: ["127.0.0.1:$1"]
      user: root
      key_file: $T/ssh/id_ed25519
      known_hosts: $T/ssh/known_hosts
      connect_timeout: 5s
      shell: touch $T/ran
$(sed 's/^/      /')
YML
}

@test "check: ssh: a dry run refuses an unknown host key as the real run would, and runs nothing" {
  ssh_keys
  start_sshd h1
  ssh_runbook "$SSHD_PORT" </dev/null
  run --separate-stderr zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line --regexp '^\[1/1\] failed +deploy'
  assert_output --partial "check failed: 1 of 1 host cannot be reached as the run needs, over max_fail: 127.0.0.1:$SSHD_PORT: "
  assert_output --partial "unknown host key ssh-ed25519 $(fingerprint h1): [127.0.0.1]:$SSHD_PORT is not in $T/ssh/known_hosts"
  assert_line --partial "dry run: step 'deploy' failed"
  assert_file_not_exists "$T/ran"
  [ ! -s "$T/ssh/known_hosts" ]
}

@test "check: ssh: a dry run refuses a changed host key, naming both fingerprints" {
  ssh_keys
  start_sshd h1
  start_sshd h2
  # h1's port with h2's key: the key h1 offers is not the one known
  echo "[127.0.0.1]:$PORT_h1 $(cut -d' ' -f1,2 "$T/ssh/h2/host_ed25519.pub")" >"$T/ssh/known_hosts"
  ssh_runbook "$PORT_h1" </dev/null
  run --separate-stderr zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "HOST KEY CHANGED: [127.0.0.1]:$PORT_h1 in $T/ssh/known_hosts has $(fingerprint h2), the server offered ssh-ed25519 $(fingerprint h1)"
  assert_file_not_exists "$T/ran"
}

@test "check: ssh: a dry run refuses a key the host does not authorize" {
  ssh_keys
  start_sshd h1
  known_host h1
  ssh-keygen -q -t ed25519 -N '' -f "$T/other_key"
  ssh_runbook "$SSHD_PORT" <<<"key_file: $T/other_key"
  sed -i "0,/key_file: .*id_ed25519/{/key_file: .*id_ed25519/d}" "$T/rb.yml"
  run --separate-stderr zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "authentication as 'root' with key_file $T/other_key failed"
  assert_file_not_exists "$T/ran"
}

@test "check: ssh: a dry run with a known key and an accepted login passes without running the command" {
  ssh_keys
  start_sshd h1
  known_host h1
  ssh_runbook "$SSHD_PORT" </dev/null
  run --separate-stderr zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 0
  assert_line "        checked: 1 host: host key and login accepted (no command run)"
  assert_file_not_exists "$T/ran"
}

@test "check: ssh: accept-new: a dry run reports the new key and leaves known_hosts as it is" {
  ssh_keys
  start_sshd h1
  ssh_runbook "$SSHD_PORT" <<<"host_key_policy: accept-new"
  run --separate-stderr zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 0
  assert_line "        checked: 1 host: host key and login accepted (no command run); not in known_hosts yet, the run adds them (accept-new): 127.0.0.1:$SSHD_PORT"
  [ ! -s "$T/ssh/known_hosts" ]
  assert_file_not_exists "$T/ran"
}

# ---- PostgreSQL ---------------------------------------------------------------

# $T/rb.yml: one db.postgres_backfill step `fill` on table TABLE of $CONN
backfill_runbook() {   # table
  pg_step_runbook check-pg db.postgres_backfill fill "table: $1
key: id
set: \"name = upper(name)\""
}

@test "check: db.postgres_backfill: a dry run fails on a table that does not exist, changing nothing" {
  pg_test_db check "CREATE TABLE items (id bigint PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'a')"
  backfill_runbook nosuch
  run --separate-stderr zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line --regexp '^\[1/1\] failed +fill'
  assert_output --partial "check failed: table 'nosuch': "
  assert_output --partial 'relation "nosuch" does not exist'
  assert_line --partial "dry run: step 'fill' failed"
  refute_output --partial "$PGPW"
  run pg_psql check "$DB" -c "SELECT name FROM items"
  assert_output a
}

@test "check: db.postgres_backfill: a dry run fails when the user may read but not update the table" {
  pg_test_db check "CREATE TABLE items (id bigint PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'a')"
  pg_psql check "$DB" -c "CREATE ROLE reader LOGIN PASSWORD '$PGPW'; GRANT SELECT ON items TO reader"
  backfill_runbook items
  sed -i "s/user=$PG_USER/user=reader/" "$T/rb.yml"
  run --separate-stderr zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  pg_psql check "$DB" -c "DROP OWNED BY reader; DROP ROLE reader"
  assert_equal "$status" 1
  assert_output --partial "check failed: user reader lacks UPDATE on table items: GRANT SELECT, UPDATE ON items TO reader"
  run pg_psql check "$DB" -c "SELECT name FROM items"
  assert_output a
}

@test "check: db.postgres_backfill: a dry run passes when the table, its key and the privileges are there, and updates nothing" {
  pg_test_db check "CREATE TABLE items (id bigint PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'a')"
  backfill_runbook items
  run --separate-stderr zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 0
  assert_line "        checked: table items with integer key id, SELECT and UPDATE granted to $PG_USER"
  run pg_psql check "$DB" -c "SELECT name FROM items"
  assert_output a
}

@test "check: db.postgres_sql: a dry run connects (a wrong password fails it) and runs no SQL" {
  pg_test_db check "CREATE TABLE items (id bigint PRIMARY KEY, name text)"
  pg_step_runbook check-pg db.postgres_sql ddl "sql: ALTER TABLE items ADD COLUMN extra int"
  PGPW=wrong run --separate-stderr zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "check failed: connecting: "
  assert_output --partial "password authentication failed"
  run --separate-stderr zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 0
  assert_line "        checked: connected to $DB as $PG_USER (a primary); the SQL itself is not tried"
  run pg_psql check "$DB" -c "SELECT count(*) FROM pg_attribute WHERE attrelid = 'items'::regclass AND attname = 'extra'"
  assert_output 0
}

# $T/rb.yml: one step ID of TYPE from database $1 to database $2 of the
# check cluster (same password), with more with: lines in $3
two_db_runbook() {   # type id src dst more
  cat >"$T/rb.yml" <<YML
zdm: 1
name: check-two
secrets:
  pg: {env: PGPW}
steps:
  - id: $2
    uses: $1
    with:
      source: "$(pg_conninfo check "$3")"
      target: "$(pg_conninfo check "$4")"
      source_password: \${{ secrets.pg }}
      target_password: \${{ secrets.pg }}
$(printf '%s\n' "$5" | sed 's/^/      /')
YML
}

@test "check: db.postgres_sync: a dry run fails on a table missing on the source and creates nothing" {
  pg_test_db check "CREATE TABLE items (id bigint PRIMARY KEY, name text)"
  pg_createdb check "${DB}dst"
  pg_psql check "${DB}dst" -c "CREATE TABLE items (id bigint PRIMARY KEY, name text)"
  two_db_runbook db.postgres_sync move "$DB" "${DB}dst" "tables: [items, orders]"
  run --separate-stderr zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "check failed: table orders does not exist on the source"
  two_db_runbook db.postgres_sync move "$DB" "${DB}dst" "tables: [items]"
  run --separate-stderr zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 0
  assert_line --partial "        checked: 1 table(s) on the source, wal_level logical"
  run pg_psql check "$DB" -c "SELECT (SELECT count(*) FROM pg_publication) + (SELECT count(*) FROM pg_replication_slots)"
  assert_output 0
  run pg_psql check "${DB}dst" -c "SELECT count(*) FROM pg_subscription"
  assert_output 0
}

@test "check: db.postgres_sequences: a dry run fails on a sequence the target lacks and sets nothing" {
  pg_test_db check "CREATE TABLE items (id bigint PRIMARY KEY, name text); CREATE SEQUENCE orders_seq; SELECT setval('orders_seq', 500)"
  pg_createdb check "${DB}dst"
  two_db_runbook db.postgres_sequences seqs "$DB" "${DB}dst" "sequences: [orders_seq]"
  run --separate-stderr zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "check failed: the target lacks sequence(s) public.orders_seq"
  pg_psql check "${DB}dst" -c "CREATE SEQUENCE orders_seq"
  run --separate-stderr zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 0
  assert_line "        checked: 1 sequence(s) on both sides, setval allowed on the target"
  run pg_psql check "${DB}dst" -c "SELECT is_called FROM orders_seq"
  assert_output f
}

# ---- zdm plan: if: and the planned state ---------------------------------------

@test "check: zdm plan describes a later step's \"now:\" from the earlier planned step, not from the live file" {
  start_lb_nginx
  cat >"$T/rb.yml" <<YML
zdm: 1
name: canary
steps:
  - id: canary
    uses: lb.nginx
    with:
$(nginx_at)
      file: $T/lb/upstream.conf
      upstream: app
      servers: [{address: "127.0.0.1:$BLUE_PORT", weight: 9}, {address: "127.0.0.1:8001"}]
  - id: all-in
    uses: lb.nginx
    with:
$(nginx_at)
      file: $T/lb/upstream.conf
      upstream: app
      servers: [{address: "127.0.0.1:8001"}]
YML
  run --separate-stderr zdm plan "$T/rb.yml"
  assert_equal "$status" 0
  assert_line "      do:   upstream app in $T/lb/upstream.conf: 127.0.0.1:$BLUE_PORT weight=9, 127.0.0.1:8001 (now: 127.0.0.1:$BLUE_PORT); then nginx -t -c $T/lb/nginx.conf and HUP to the master in $T/lb/nginx.pid"
  assert_line "      do:   upstream app in $T/lb/upstream.conf: 127.0.0.1:8001 (now: 127.0.0.1:$BLUE_PORT weight=9, 127.0.0.1:8001); then nginx -t -c $T/lb/nginx.conf and HUP to the master in $T/lb/nginx.pid"
  # the dry run says the same
  run --separate-stderr zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 0
  assert_line "        upstream app in $T/lb/upstream.conf: 127.0.0.1:8001 (now: 127.0.0.1:$BLUE_PORT weight=9, 127.0.0.1:8001); then nginx -t -c $T/lb/nginx.conf and HUP to the master in $T/lb/nginx.pid"
}

@test "check: zdm plan and --dry-run: a false if: is skipped, one that reads a planned step's outputs is unknown until run" {
  cat >"$T/rb.yml" <<'YML'
zdm: 1
name: conditions
vars: {canary: false}
steps:
  - id: probe
    uses: exec
    with: {command: [echo, ready]}
  - id: canary
    if: ${{ vars.canary }}
    uses: exec
    with: {command: [touch, canary]}
  - id: switch
    if: ${{ steps.probe.outputs.stdout == 'ready' }}
    uses: exec
    with: {command: [touch, switched]}
YML
  run --separate-stderr zdm plan "$T/rb.yml"
  assert_equal "$status" 0
  assert_output - <<'EOF'
plan for conditions (3 steps), on failure: roll back in reverse order
 1. probe (exec)
      do:   run echo ready
      undo: none: a rollback leaves this change in place
 2. canary (exec)  if: ${{ vars.canary }}
      skipped: if: is false
 3. switch (exec)  if: ${{ steps.probe.outputs.stdout == 'ready' }}
      if:   unknown until run (needs outputs of earlier steps or secrets)
      do:   run touch switched
      undo: none: a rollback leaves this change in place
2 steps that change things have no undo: probe, switch (a rollback leaves their changes in place)
EOF
  run --separate-stderr zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 0
  assert_line --regexp '^\[2/3\] skipped +canary$'
  assert_line --regexp '^\[3/3\] planned +switch$'
  assert_line "        unknown until run: if: reads outputs of steps that only showed their plan"
  assert_file_not_exists "$T/switched"
}

@test "check: zdm plan --output json gives the plan as one document: will_run, params, plan, undo" {
  cat >"$T/rb.yml" <<'YML'
zdm: 1
name: as-data
on_failure: pause
vars: {canary: false}
secrets:
  token: {env: PLAN_TOKEN}
steps:
  - id: probe
    name: Probe the service
    uses: exec
    with: {command: [echo, ready]}
    undo: {uses: exec, with: {command: [echo, undone]}}
  - id: canary
    if: ${{ vars.canary }}
    uses: exec
    with: {command: [touch, canary]}
  - id: switch
    if: ${{ steps.probe.outputs.stdout == 'ready' }}
    uses: http
    with: {url: "http://127.0.0.1:1/switch", method: POST, headers: {Authorization: "${{ secrets.token }}"}}
  - id: soak
    uses: wait
    with: {duration: 1s}
YML
  PLAN_TOKEN=hunter2 run --separate-stderr zdm plan "$T/rb.yml" --output json
  assert_equal "$status" 0
  assert_equal "$stderr" ""
  refute_output --partial hunter2
  printf '%s\n' "$output" >"$T/plan.json"
  run jq -c '[.v, .runbook, .on_failure, .count, (.steps | length)]' "$T/plan.json"
  assert_output '[1,"as-data","pause",4,4]'
  run jq -c '.steps[] | [.index, .id, .uses, .will_run, .read_only, .check, .plan, .undo.kind]' "$T/plan.json"
  assert_output - <<'EOF'
[1,"probe","exec","yes",false,true,"run echo ready","step"]
[2,"canary","exec","no",false,true,null,null]
[3,"switch","http","unknown",false,true,"POST http://127.0.0.1:1/switch, expecting 2xx","none"]
[4,"soak","wait","yes",true,false,"wait 1.0s","read_only"]
EOF
  run jq -c '[.steps[0].name, .steps[0].undo.plan, .steps[0].params.command, .steps[2].params.headers.Authorization]' "$T/plan.json"
  assert_output '["Probe the service","run echo undone",["echo","ready"],"${{ secrets.token }}"]'
}
