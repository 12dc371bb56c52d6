#!/usr/bin/env bats
# zdm drill: per step that changes something, a real run with a failure
# forced after it, rolled back, and the runbook's probes compared with what
# they read before the first run.  Runbooks of exec steps on files in $T,
# then runbooks/blue-green-nginx.yml against a real nginx and
# runbooks/postgres-move.yml against real PostgreSQL clusters.

bats_require_minimum_version 1.5.0
load helper
load servers/httpd
load servers/lb_nginx
load servers/postgres

teardown() {
  stop_lb
  stop_servers
  [ -z "${PG_ROOT:-}" ] || pg_stop_all
  helper_teardown
}

# $T/rb.yml: two steps that write files in $T/s, each with an undo, a
# read-only gate between them, then the lines on stdin (more steps,
# probes:); $T/s holds "keep" to begin with
files_runbook() {
  mkdir -p "$T/s"
  echo kept >"$T/s/keep"
  cat >"$T/rb.yml" <<YML
zdm: 1
name: files
vars: {dir: "$T/s"}
steps:
  - id: write-a
    uses: exec
    with: {shell: 'echo on >"\${{ vars.dir }}/a"'}
    undo: {uses: exec, with: {shell: 'rm -f "\${{ vars.dir }}/a"'}}
  - id: gate
    uses: wait
    with: {duration: 10ms}
  - id: edit-keep
    uses: exec
    with: {shell: 'echo changed >"\${{ vars.dir }}/keep"'}
    undo: {uses: exec, with: {shell: 'echo kept >"\${{ vars.dir }}/keep"'}}
YML
  cat >>"$T/rb.yml"
}

PROBES='probes:
  - id: listing
    uses: exec
    read_only: true
    with: {command: [ls, "${{ vars.dir }}"]}
  - id: keep
    uses: exec
    read_only: true
    compare: [stdout]
    with: {command: [cat, "${{ vars.dir }}/keep"]}'

@test "drill: every rollback restores the files: matrix all same, exit 0, one journaled run per failure point" {
  files_runbook <<<"$PROBES"
  run zdm drill "$T/rb.yml" --state-dir "$T/state"
  echo "$output"
  assert_equal "$status" 0
  assert_line "drill: files, 2 failure points x 2 probes"
  assert_line --regexp '^\[1/2\] fail after write-a: rolled back \(run [0-9a-zA-Z-]+\), 1 undone; probes: all same$'
  assert_line --regexp '^\[2/2\] fail after edit-keep: rolled back \(run [0-9a-zA-Z-]+\), 2 undone; probes: all same$'
  assert_line "fail after  listing  keep"
  assert_line "write-a     same     same"
  assert_line "edit-keep   same     same"
  assert_line "drill: every rollback put the probes back where they were (2 failure points)"
  # the read-only gate is no failure point
  refute_output --partial "fail after gate"
  [ "$(ls "$T/s")" = keep ]
  [ "$(cat "$T/s/keep")" = kept ]
  # two runs, each journaled with its forced failure and rolled back
  [ "$(ls "$T/state/runs" | wc -l)" -eq 2 ]
  for j in "$T"/state/runs/*.jsonl; do
    run events "$j"
    assert_line --regexp '^drill.failure (write-a|edit-keep)$'
    assert_line --regexp "^rollback.started (write-a|edit-keep)$"
    run jq -r 'select(.event=="run.finished") | .data.status' "$j"
    assert_output rolled_back
  done
  # --only: one failure point; --json: the result as one object on stdout
  run --separate-stderr zdm drill "$T/rb.yml" --state-dir "$T/state" --only edit-keep --json
  assert_equal "$status" 0
  run jq -r '[.result, .exit_code, (.points | length), .points[0].fail_after, .points[0].probes.keep.result] | join(" ")' <<<"$output"
  assert_output "same 0 1 edit-keep same"
}

@test "drill: a step without an undo leaves its file: that row differs, the difference is shown, exit 1" {
  files_runbook <<YML
  - id: marker
    uses: exec
    with: {shell: 'echo written >"\${{ vars.dir }}/marker"'}
$PROBES
YML
  run zdm drill "$T/rb.yml" --state-dir "$T/state"
  echo "$output"
  assert_equal "$status" 1
  assert_line --regexp '^\[3/3\] fail after marker: rolled back \(run [0-9a-zA-Z-]+\), 2 undone; probes: DIFFER$'
  assert_line "      left in place: step 'marker' changed things and has no undo; the rollback left its change in place"
  assert_line "write-a     same     same"
  assert_line "edit-keep   same     same"
  assert_line "marker      differs  same"
  assert_line "  fail after marker, probe listing:"
  assert_line '      stdout: "keep" -> "keep\nmarker"'
  assert_line "drill: 1 of 3 rollbacks left a difference the probes see"
}

@test "drill: a rollback that fails stops the drill at once, exit 3, the matrix so far and what to do" {
  files_runbook <<YML
  - id: stuck
    uses: exec
    with: {shell: 'true'}
    undo: {uses: exec, with: {shell: 'echo cannot put it back >&2; exit 1'}}
  - id: after
    uses: exec
    with: {shell: 'echo x >"\${{ vars.dir }}/after"'}
$PROBES
YML
  # on_failure: pause is overridden: a drill always rolls back
  sed -i 's/^steps:/on_failure: pause\nsteps:/' "$T/rb.yml"
  run zdm drill "$T/rb.yml" --state-dir "$T/state"
  echo "$output"
  assert_equal "$status" 3
  assert_line --regexp '^\[3/4\] fail after stuck: rollback_failed \(run [0-9a-zA-Z-]+\)$'
  assert_line "      undo of step 'stuck' failed: exited with 1: cannot put it back"
  assert_line "write-a     same     same"
  assert_line "stuck       -        -"
  assert_line "drill: stopped at failure point 3 of 4 (fail after stuck)"
  assert_output --partial "did not end rolled back (rollback_failed): the target is not in a known state"
  # nothing ran after it
  refute_output --partial "fail after after:"
  [ ! -e "$T/s/after" ]
  [ "$(ls "$T/state/runs" | wc -l)" -eq 3 ]
}

@test "drill: a probe that is not read-only is refused at FILE:LINE:COL, exit 2, nothing ran" {
  files_runbook <<'YML'
probes:
  - id: listing
    uses: exec
    with: {command: [ls]}
  - id: poke
    uses: http
    read_only: true
    with: {url: "http://127.0.0.1:9/", method: POST}
YML
  run zdm drill "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 2
  assert_line "$T/rb.yml:18:11: probe 'listing': exec may change things and a probe must only read; if this command only reads, say so with read_only: true on the probe"
  assert_line "$T/rb.yml:23:48: probe 'poke': method POST may change things; a probe only reads (GET or HEAD)"
  assert_line "zdm: 2 errors; nothing ran"
  # validate checks probes too
  run zdm validate "$T/rb.yml"
  assert_equal "$status" 2
  assert_output --partial "rb.yml:18:11: probe 'listing'"
  [ ! -e "$T/state" ]
  [ ! -e "$T/s/a" ]
}

@test "drill: no probes, a probe failing before anything ran, an unknown --only: exit 2, nothing ran" {
  files_runbook </dev/null
  run zdm drill "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "zdm drill: $T/rb.yml has no probes: a drill reads them before the first run"
  files_runbook <<'YML'
probes:
  - id: missing
    uses: exec
    read_only: true
    with: {command: [cat, "${{ vars.dir }}/nope"]}
YML
  run zdm drill "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "zdm drill: probe 'missing' failed before anything ran: exited with 1"
  files_runbook <<<"$PROBES"
  run zdm drill "$T/rb.yml" --state-dir "$T/state" --only gate
  assert_equal "$status" 2
  assert_output --partial "--only 'gate': the step is read-only (wait)"
  run zdm drill "$T/rb.yml" --state-dir "$T/state" --only edit-kep
  assert_equal "$status" 2
  assert_output --partial "--only 'edit-kep': no such step in $T/rb.yml (did you mean 'edit-keep'?)"
  [ ! -e "$T/state/runs" ] || [ -z "$(ls "$T/state/runs")" ]
  [ ! -e "$T/s/a" ]
}

@test "drill: runbooks/blue-green-nginx.yml against a real nginx: the switch is rolled back, exit 0" {
  start_lb_nginx
  start_green
  cp "$T/lb/upstream.conf" "$T/upstream.before"
  run zdm drill "$REPO/runbooks/blue-green-nginx.yml" --state-dir "$T/state" \
    --var nginx_conf="$T/lb/nginx.conf" --var nginx_prefix="$T/lb/" \
    --var nginx_pid="$T/lb/nginx.pid" --var upstream_file="$T/lb/upstream.conf" \
    --var upstream=app --var green="127.0.0.1:$GREEN_PORT" \
    --var green_health_url="http://127.0.0.1:$GREEN_PORT/ready" \
    --var site_url="$FRONT/health" --var site_page_url="$FRONT/" --var gate_interval=100ms \
    --var healthy_rounds=2 --var watch_rounds=2
  echo "$output"
  assert_equal "$status" 0
  assert_line "drill: blue-green-nginx, 1 failure point x 2 probes"
  assert_line --regexp '^\[1/1\] fail after switch: rolled back \(run [0-9a-zA-Z-]+\), 1 undone; probes: all same$'
  assert_line "fail after  upstream-file  site-page"
  assert_line "switch      same           same"
  assert_line "drill: every rollback put the probes back where they were (1 failure point)"
  cmp "$T/lb/upstream.conf" "$T/upstream.before"
  [ "$(front /)" = blue ]
  # the run switched to green for real before it was rolled back
  run jq -r 'select(.event=="step.succeeded" and .step=="switch") | .step' "$(J)"
  assert_output switch
}

@test "drill: runbooks/postgres-move.yml against real PostgreSQL: every failure point rolled back, exit 0" {
  pg_start src
  pg_start dst
  export SOURCE_PGPASSWORD="$PG_PASSWORD" TARGET_PGPASSWORD="$PG_PASSWORD"
  local ddl="CREATE TABLE orders (id bigserial PRIMARY KEY, customer int NOT NULL, note text);"
  pg_createdb src m1
  pg_createdb dst m1
  pg_psql src m1 -c "$ddl"
  pg_psql dst m1 -c "$ddl"
  pg_psql src m1 -c "INSERT INTO orders (customer, note) SELECT g % 7, 'order ' || g FROM generate_series(1, 500) g"
  echo "$(pg_conninfo src m1)" >"$T/db.conf"
  run zdm drill "$REPO/runbooks/postgres-move.yml" --state-dir "$T/state" \
    --var source="$(pg_conninfo src m1)" --var target="$(pg_conninfo dst m1)" \
    --var tables=public.orders --var switch_file="$T/db.conf" --var empty_target_on_rollback=true
  echo "$output"
  assert_equal "$status" 0
  assert_line "drill: postgres-move, 5 failure points x 4 probes"
  assert_line "fail after    switch-file  source-replication  target-state  target-rows"
  assert_line "target-empty  same         same                same          same"
  assert_line "sync          same         same                same          same"
  assert_line "lag-gate      same         same                same          same"
  assert_line "sequences     same         same                same          same"
  assert_line "switch        same         same                same          same"
  assert_line "drill: every rollback put the probes back where they were (5 failure points)"
  [ "$(pg_psql dst m1 -c "select count(*) from orders")" = 0 ]
  assert_equal "$(cat "$T/db.conf")" "$(pg_conninfo src m1)"
  # the sequences step did run, and its rollback put the target's value back
  run jq -r 'select(.event=="undo.succeeded") | .step' "$(J)"
  assert_line sequences
  refute grep -rqF "$PG_PASSWORD" "$T/state"
  refute_output --partial "$PG_PASSWORD"
}

@test "drill: a failure point skipped by if: still fails there (the run never goes past it); run --fail-at does not" {
  mkdir -p "$T/s"
  echo kept >"$T/s/keep"
  cat >"$T/rb.yml" <<YML
zdm: 1
name: skipped
vars: {dir: "$T/s", on: "false"}
steps:
  - id: maybe
    if: \${{ vars.on == "true" }}
    uses: exec
    with: {shell: 'echo on >"\${{ vars.dir }}/maybe"'}
    undo: {uses: exec, with: {shell: 'rm -f "\${{ vars.dir }}/maybe"'}}
  - id: later
    uses: exec
    with: {shell: 'echo later >"\${{ vars.dir }}/later"'}
probes:
  - id: listing
    uses: exec
    read_only: true
    with: {command: [ls, "\${{ vars.dir }}"]}
YML
  run zdm drill "$T/rb.yml" --state-dir "$T/state" --only maybe
  assert_equal "$status" 0
  assert_line "maybe       same"
  # 'later' (no undo) never ran: the drill stopped at its failure point
  [ ! -e "$T/s/later" ]
  run zdm run "$T/rb.yml" --state-dir "$T/state2" --fail-at maybe
  assert_equal "$status" 0
  [ -e "$T/s/later" ]
}
