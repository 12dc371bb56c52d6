#!/usr/bin/env bats
# zdm report RUN --html FILE, looked at in a real browser: Debian's chromium
# driven by playwright-core (scripts/deps.sh pins it into its npm cache,
# outside the checkout) through tests/report_dom.js, which opens the page
# from file://, refuses and lists every request that is not file: or data:,
# and prints what the page shows as JSON.  Real runbooks make the journals:
# exec steps, a health_gate against tests/servers/httpd.py and a metric_gate
# against a real Prometheus (tests/servers/prometheus.sh), a rollback, an
# approval, a promote of a run in progress, a secret.  What the page shows
# is compared with the journal (jq) and with zdm status.  The page of the
# gates' run is kept as build/report-screenshot.png (CI's artifact; build/
# is ignored by git).

bats_require_minimum_version 1.5.0
load helper
load servers/httpd
load servers/prometheus
load servers/postgres

# the test's own PostgreSQL cluster, if it started one, stops with it
eval "httpd_$(declare -f teardown)"
teardown() {
  [ -z "${PG_ROOT:-}" ] || pg_stop_all
  httpd_teardown
}

NPM_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/zdm-npm"

setup_file() {
  [ -d "$NPM_DIR/node_modules/playwright-core" ] ||
    { echo "no playwright-core in $NPM_DIR: run scripts/deps.sh" >&2; return 1; }
  [ -x "${CHROMIUM:-/usr/bin/chromium}" ] ||
    { echo "no chromium at ${CHROMIUM:-/usr/bin/chromium}: run scripts/deps.sh" >&2; return 1; }
  prom_file_start
}

teardown_file() {
  prom_file_stop
}

# the page $1 in the browser: its facts in $T/dom.json (a screenshot to $2 when given)
dom() {
  NODE_PATH="$NPM_DIR/node_modules" timeout 90 node "$REPO/tests/report_dom.js" "$@" >"$T/dom.json"
}

# jq over the page's facts
fact() {
  jq -r "$@" "$T/dom.json"
}

# the browser loaded nothing but the page, and nothing went wrong in it
page_clean() {
  assert_equal "$(fact '.requests | length')" 0
  assert_equal "$(fact '.console_errors | length')" 0
  assert_equal "$(fact '.page_errors | length')" 0
  fact '.csp' | grep -q "^default-src 'none'; script-src 'sha256-"
}

# the facts of the journal $1 that the header shows
header_matches_journal() {
  local j="$1"
  assert_equal "$(fact .header.run)" "$(jq -r 'select(.seq == 1) | .run' "$j")"
  assert_equal "$(fact .header.runbook)" "$(jq -r 'select(.seq == 1) | .data.runbook' "$j")"
  assert_equal "$(fact .header.sha256)" "$(jq -r 'select(.seq == 1) | .data.sha256' "$j")"
  assert_equal "$(fact .header.actor)" "$(jq -r 'select(.seq == 1) | .data.actor.who' "$j")"
  assert_equal "$(fact .header.host)" "$(jq -r 'select(.seq == 1) | .data.host' "$j")"
  assert_equal "$(fact .header.version)" "$(jq -r 'select(.seq == 1) | .data.zdm_version' "$j")"
  assert_equal "$(fact .header.started)" "$(jq -r 'select(.seq == 1) | .ts' "$j")"
  assert_equal "$(fact .header.status)" "$(zdm status "$(fact .header.run)" --state-dir "$T/state" --output json | jq -r .status)"
  assert_equal "$(fact .timeline_rows)" "$(jq -s '[.[] | .step // empty] | unique | length' "$j")"
  assert_equal "$(fact .steps_rows)" "$(fact .timeline_rows)"
}

@test "report: exec steps, a health_gate and a metric_gate: header, a timeline row per step, a chart per gate with a point per measurement and its threshold; nothing fetched" {
  control <<'EOF'
{"/health": {"status": 200, "body": "ok"}}
EOF
  start_httpd
  runbook <<EOF
zdm: 1
name: gates
steps:
  - id: prepare
    uses: exec
    with: {command: [touch, "$T/prepared"]}
  - id: green-healthy
    uses: health_gate
    timeout: 30s
    with: {url: "$BASE/health", interval: 100ms, healthy_threshold: 4}
  - id: error-rate
    uses: metric_gate
    timeout: 30s
    with:
      provider: prometheus
      address: $PROM
      query: zdm_error_ratio
      success: result < 0.05
      count: 3
      interval: 100ms
  - id: finish
    uses: exec
    with: {command: [touch, "$T/finished"]}
EOF
  run zdm run "$T/rb.yml" --state-dir "$T/state" -q
  assert_success
  local j id
  j="$(J)"
  id="$(basename "$j" .jsonl)"
  run zdm report "$id" --state-dir "$T/state" --html "$T/report.html"
  assert_success
  assert_output "wrote $T/report.html: run $id, succeeded"
  mkdir -p "$REPO/build"
  dom "$T/report.html" "$REPO/build/report-screenshot.png"
  page_clean
  header_matches_journal "$j"
  assert_equal "$(fact .header.outcome)" succeeded
  assert_equal "$(fact .header.verified)" ok
  assert_equal "$(fact .header.chain)" "$(zdm audit verify "$j" | sed "s|^$j: ||; s|, succeeded$||")"
  assert_equal "$(fact .header.live)" null
  assert_equal "$(fact .refresh)" null
  assert_equal "$(fact '.rows | map(.step) | join(" ")')" "prepare green-healthy error-rate finish"
  # a box per attempt, none for an undo
  assert_equal "$(fact '[.rows[].bars[] | select(.kind == "attempt" and .how == "succeeded")] | length')" 4
  assert_equal "$(fact '[.rows[].bars[] | select(.width < 2)] | length')" 0
  # one chart per gate, a point per gate.measurement, the thresholds as lines
  assert_equal "$(fact '.charts | length')" 2
  assert_equal "$(fact .chart_figures)" 2
  assert_equal "$(fact '.charts | map(.step) | join(" ")')" "green-healthy error-rate"
  local g
  for g in green-healthy error-rate; do
    assert_equal "$(fact --arg g "$g" '.charts[] | select(.step == $g) | .points')" \
      "$(jq -s --arg g "$g" '[.[] | select(.event == "gate.measurement" and .step == $g)] | length' "$j")"
    [ "$(fact --arg g "$g" '.charts[] | select(.step == $g) | .inked')" -gt 1000 ]
  done
  assert_equal "$(fact '.charts[] | select(.step == "green-healthy") | .points')" 4
  assert_equal "$(fact '.charts[] | select(.step == "error-rate") | .points')" 3
  assert_equal "$(fact -c '.charts[] | select(.step == "green-healthy") | .thresholds')" \
    '[{"label":"healthy_threshold 4: passes","values":[4]},{"label":"unhealthy_threshold 3: fails","values":[-3]}]'
  assert_equal "$(fact -c '.charts[] | select(.step == "error-rate") | .thresholds')" \
    '[{"label":"success: result < 0.05","values":[0.05]}]'
  # the points are the journal's: the streak of each round, the value of each measurement
  assert_equal "$(fact -c '.data.gates[] | select(.step == "green-healthy") | [.series[0].values[] | select(. != null)]')" \
    "$(jq -sc '[.[] | select(.event == "gate.measurement" and .step == "green-healthy") | .data.healthy_streak]' "$j")"
  assert_equal "$(fact -c '.data.gates[] | select(.step == "error-rate") | [.series[0].values[] | select(. != null)]')" \
    "$(jq -sc '[.[] | select(.event == "gate.measurement" and .step == "error-rate") | .data.value]' "$j")"
  # each point at its record's time
  assert_equal "$(fact -c '[.data.gates[] | select(.step == "error-rate") | .x[1:4][] | . / 1000 | floor]')" \
    "$(jq -sc '[.[] | select(.event == "gate.measurement" and .step == "error-rate") | .ts | sub("\\.[0-9]+Z$"; "Z") | fromdate]' "$j")"
  assert_file_exist "$REPO/build/report-screenshot.png"
}

@test "report: a rolled-back run: the retried and failed attempts, the undo boxes, the failed step" {
  runbook <<EOF
zdm: 1
name: back
steps:
  - id: make
    uses: exec
    with: {command: [touch, "$T/made"]}
    undo: {uses: exec, with: {command: [rm, -f, "$T/made"]}}
  - id: soak
    uses: wait
    with: {duration: 50ms}
  - id: break
    uses: exec
    retries: 1
    retry_delay: 50ms
    with: {command: [sh, -c, "exit 3"]}
EOF
  run zdm run "$T/rb.yml" --state-dir "$T/state" -q
  assert_equal "$status" 1
  local j
  j="$(J)"
  run zdm report --state-dir "$T/state" --html "$T/back.html"
  assert_success
  dom "$T/back.html"
  page_clean
  header_matches_journal "$j"
  assert_equal "$(fact .header.status)" rolled_back
  assert_equal "$(fact .header.outcome)" "rolled back"
  assert_equal "$(fact .header.failed_step)" "break: exited with 3"
  assert_equal "$(fact -c '.rows[] | select(.step == "break") | [.bars[] | [.kind, .how, .attempt]]')" \
    '[["attempt","retried",1],["attempt","failed",2]]'
  assert_equal "$(fact -c '.rows[] | select(.step == "make") | [.bars[] | [.kind, .how]]')" \
    '[["attempt","succeeded"],["undo","undone"]]'
  assert_equal "$(fact -c '.rows[] | select(.step == "soak") | [.bars[] | [.kind, .how]]')" \
    '[["attempt","succeeded"],["undo","nothing_to_undo"]]'
  # the undo boxes are as many as the journal's undo.started and undo.skipped
  assert_equal "$(fact '[.rows[].bars[] | select(.kind == "undo")] | length')" \
    "$(jq -s '[.[] | select(.event == "undo.started" or .event == "undo.skipped")] | length' "$j")"
  assert_equal "$(fact -c '[.decisions[] | .event]')" '["rollback.started"]'
  assert_equal "$(fact '.charts | length')" 0
}

@test "report: an approval: who decided and when, in the table and on the timeline; HTML in a reason stays text and fetches nothing" {
  runbook <<'EOF'
zdm: 1
name: appr
steps:
  - id: prepare
    uses: exec
    with: {command: ["true"]}
  - id: go-ahead
    uses: approval
    with: {message: "check the canary", approvers: [ann, bob]}
  - id: finish
    uses: exec
    with: {command: ["true"]}
EOF
  unset CI
  run zdm run "$T/rb.yml" --state-dir "$T/state" </dev/null
  assert_equal "$status" 4
  local j id reason='<img src="http://127.0.0.1:9/x.png"><script>alert(1)</script> ok'
  j="$(J)"
  id="$(basename "$j" .jsonl)"
  run env ZDM_ACTOR=ann "$ZDM_BIN" approve "$id" go-ahead --reason "$reason" --state-dir "$T/state"
  assert_success
  # paused, decided: the page says so
  run zdm report "$id" --state-dir "$T/state" --html "$T/paused.html"
  assert_success
  dom "$T/paused.html"
  page_clean
  assert_equal "$(fact .header.status)" paused
  run zdm resume "$id" --state-dir "$T/state" </dev/null
  assert_success
  run zdm report "$j" --html "$T/appr.html"
  assert_success
  dom "$T/appr.html"
  page_clean
  header_matches_journal "$j"
  assert_equal "$(fact -c '[.decisions[] | .event]')" \
    '["approval.requested","run.paused","approval.granted","run.resumed"]'
  assert_equal "$(fact '.decisions[] | select(.event == "approval.granted") | .who')" ann
  assert_equal "$(fact '.decisions[] | select(.event == "approval.granted") | .step')" go-ahead
  assert_equal "$(fact '.decisions[] | select(.event == "approval.granted") | .when')" \
    "$(jq -r 'select(.event == "approval.granted") | .ts' "$j")"
  assert_equal "$(fact '.decisions[] | select(.event == "approval.granted") | .detail')" "$reason (zdm approve)"
  assert_equal "$(fact '.decisions[] | select(.event == "approval.requested") | .detail')" \
    "approvers: ann, bob; check the canary"
  assert_equal "$(fact -c '.marks')" '["approval.requested","run.paused","approval.granted","run.resumed"]'
  # the attempt that waited, then the one that went on
  assert_equal "$(fact -c '.rows[] | select(.step == "go-ahead") | [.bars[] | .how]')" '["waiting","succeeded"]'
  # the reason is in the file escaped, never as markup
  run grep -c '<img' "$T/appr.html"
  assert_output 0
}

@test "report --refresh N: a run in progress reloads and says so; once promoted and over, the page stands still and names who promoted it" {
  runbook <<EOF
zdm: 1
name: live
steps:
  - id: prepare
    uses: exec
    with: {command: ["true"]}
  - id: soak
    uses: wait
    timeout: 120s
    with: {duration: 60s}
EOF
  timeout 90 "$ZDM_BIN" run "$T/rb.yml" --state-dir "$T/state" >"$T/run.out" 2>&1 </dev/null &
  local pid=$! i id=""
  for i in $(seq 400); do
    id="$(basename "$(journal_of "$T/state" 2>/dev/null)" .jsonl 2>/dev/null || true)"
    [ -n "$id" ] && jq -e 'select(.event == "step.started" and .step == "soak")' \
      "$T/state/runs/$id.jsonl" >/dev/null 2>&1 && break
    sleep 0.05
  done
  run zdm report "$id" --state-dir "$T/state" --html "$T/live.html" --refresh 5
  assert_success
  assert_line --index 0 "wrote $T/live.html: run $id, running"
  assert_line --partial "in progress: the page reloads every 5 s"
  dom "$T/live.html"
  page_clean
  assert_equal "$(fact .refresh)" 5
  assert_equal "$(fact .header.status)" running
  assert_equal "$(fact .header.outcome)" "in progress (running)"
  fact .header.live | grep -q "^in progress: this page reloads every 5 s"
  fact .header.duration | grep -q " so far$"
  assert_equal "$(fact -c '.rows[] | select(.step == "soak") | [.bars[] | .how]')" '["running"]'
  run env ZDM_ACTOR=carol "$ZDM_BIN" promote "$id" --reason "dashboards are green" --state-dir "$T/state"
  assert_success
  wait "$pid"
  run zdm report "$id" --state-dir "$T/state" --html "$T/live.html" --refresh 5
  assert_success
  assert_output "wrote $T/live.html: run $id, succeeded"
  dom "$T/live.html"
  page_clean
  assert_equal "$(fact .refresh)" null
  assert_equal "$(fact .header.live)" null
  assert_equal "$(fact .header.status)" succeeded
  assert_equal "$(fact -c '.decisions[] | select(.event == "control.promote") | [.what, .step, .who, .detail]')" \
    '["promote asked","soak","carol","dashboards are green (zdm promote)"]'
}

@test "report: a secret shows only as ***, in the page and in what it draws" {
  control <<'EOF'
{"/health": {"status": 200, "body": "ok"}}
EOF
  start_httpd
  runbook <<EOF
zdm: 1
name: secret
secrets:
  token: {env: REPORT_TOKEN}
steps:
  - id: use-it
    uses: exec
    with: {command: [sh, -c, "echo token=\${{ secrets.token }}; exit 0"]}
  - id: gate
    uses: health_gate
    timeout: 30s
    with:
      url: "$BASE/health?t=\${{ secrets.token }}"
      interval: 100ms
      healthy_threshold: 1
      headers: {Authorization: "Bearer \${{ secrets.token }}"}
  - id: fail
    uses: exec
    with: {command: [sh, -c, "exit 7", "\${{ secrets.token }}"]}
EOF
  REPORT_TOKEN=hunter2-s3cr3t-xyz run zdm run "$T/rb.yml" --state-dir "$T/state" -q
  # rolled back, use-it left in place (it has no undo)
  assert_equal "$status" 6
  # the server saw it: the secret was used for real
  requests_to /health | grep -q hunter2-s3cr3t-xyz
  run zdm report --state-dir "$T/state" --html "$T/secret.html"
  assert_success
  run grep -c hunter2-s3cr3t-xyz "$T/secret.html"
  assert_output 0
  run grep -c 'health?t=\*\*\*' "$T/secret.html"
  [ "$output" -ge 1 ]
  dom "$T/secret.html"
  page_clean
  fact .body_text | grep -q 'health?t=\*\*\*'
  run fact .body_text
  refute_output --partial hunter2
}

@test "report --state URL: a run kept in PostgreSQL, found by its id as zdm status finds it" {
  pg_start rep
  pg_createdb rep rep
  local url id
  url="$(pg_uri rep rep)"
  export PGPASSWORD="$PG_PASSWORD"
  run zdm state init "$url"
  assert_success
  runbook <<'EOF'
zdm: 1
name: inpg
steps:
  - id: a
    uses: exec
    with: {command: ["true"]}
  - id: b
    uses: wait
    with: {duration: 20ms}
EOF
  run zdm run "$T/rb.yml" --state "$url" -q
  assert_success
  id="$(pg_psql rep rep -c "SELECT run_id FROM zdm.journal WHERE seq = 1")"
  run zdm report "$id" --state "$url" --html "$T/pg.html"
  assert_success
  assert_output "wrote $T/pg.html: run $id, succeeded"
  dom "$T/pg.html"
  page_clean
  assert_equal "$(fact .header.run)" "$id"
  assert_equal "$(fact .header.status)" "$(zdm status "$id" --state "$url" --output json | jq -r .status)"
  assert_equal "$(fact .header.verified)" ok
  assert_equal "$(fact .timeline_rows)" 2
  fact .header.journal | grep -q "^pg:.*/zdm/$id (6 records)$"
  # --state and --state-dir: one or the other, as for zdm status
  run --separate-stderr zdm report "$id" --state "$url" --state-dir "$T/state" --html "$T/x.html"
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm report: give --state or --state-dir, not both"
  assert_not_exist "$T/x.html"
}

@test "report: a journal whose hash chain is broken is reported as such, from what its records claim" {
  runbook <<'EOF'
zdm: 1
name: tamper
steps:
  - id: a
    uses: exec
    with: {command: ["true"]}
EOF
  run zdm run "$T/rb.yml" --state-dir "$T/state" -q
  assert_success
  local j
  j="$(J)"
  sed -i '2s/"exec"/"exex"/' "$j"
  run --separate-stderr zdm report --state-dir "$T/state" --html "$T/t.html"
  assert_success
  [[ "$stderr" == "zdm report: warning: $j: the hash chain is broken: "* ]]
  dom "$T/t.html"
  page_clean
  assert_equal "$(fact .header.verified)" broken
  fact .header.text | grep -q "the journal's hash chain is broken"
  assert_equal "$(fact .timeline_rows)" 1
}

@test "report: bad input exits 2 and leaves no file, nor half of one" {
  runbook <<'EOF'
zdm: 1
name: bad
steps:
  - id: a
    uses: exec
    with: {command: ["true"]}
EOF
  run zdm run "$T/rb.yml" --state-dir "$T/state" -q
  assert_success
  mkdir "$T/out"
  run --separate-stderr zdm report nope-123 --state-dir "$T/state" --html "$T/out/r.html"
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm report: no run 'nope-123' in $T/state (name the runbook, or set --state-dir / ZDM_STATE_DIR)"
  run --separate-stderr zdm report --state-dir "$T/state" --html
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm report: missing value for '--html' (zdm report --help)"
  run --separate-stderr zdm report --state-dir "$T/state"
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm report: --html FILE is needed: the page to write (zdm report --help)"
  run --separate-stderr zdm report --state-dir "$T/state" --html ""
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm report: --html needs a file name"
  local r
  for r in 0 -1 1.5 abc 86401 ""; do
    run --separate-stderr zdm report --state-dir "$T/state" --html "$T/out/r.html" --refresh "$r"
    assert_equal "$status" 2
    assert_equal "$stderr" "zdm report: --refresh '$r': a whole number of seconds, 1 to 86400"
  done
  run --separate-stderr zdm report --state-dir "$T/state" --html "$T/out/no/such/dir/r.html"
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm report: cannot write '$T/out/no/such/dir/r.html': No such file or directory"
  mkdir "$T/out/a-dir"
  run --separate-stderr zdm report --state-dir "$T/state" --html "$T/out/a-dir"
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm report: cannot write '$T/out/a-dir': Is a directory"
  # nothing was left behind: no page, no temporary file
  run ls -A "$T/out"
  assert_output "a-dir"
  run ls -A "$T/out/a-dir"
  assert_output ""
  # a page that was there stays whole when the next one cannot be written
  run zdm report --state-dir "$T/state" --html "$T/out/r.html"
  assert_success
  cp "$T/out/r.html" "$T/before.html"
  run zdm report nope-123 --state-dir "$T/state" --html "$T/out/r.html"
  assert_equal "$status" 2
  cmp "$T/before.html" "$T/out/r.html"
  run ls -A "$T/out"
  assert_output "$(printf 'a-dir\nr.html')"
  # the page is readable as other files made here are (umask)
  [ "$(stat -c %a "$T/out/r.html")" = "$(umask -S >/dev/null; printf '%o' $((0666 & ~$(umask))))" ]
}
