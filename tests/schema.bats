#!/usr/bin/env bats
# zdm schema: the JSON Schema of the runbook language, checked with a real
# validator (ajv-cli, installed by scripts/deps.sh outside the checkout).
# ajv-cli reads the runbooks as YAML itself (js-yaml: YAML 1.2 booleans, so
# `on:` stays a key; anchors, aliases and << merge keys resolved).  What zdm
# validate accepts must pass; what it refuses for a reason the schema can see
# must fail.  yaml-language-server, driven over stdio (tests/lsp_diagnostics.py),
# shows one diagnostic as an editor would.

bats_require_minimum_version 1.5.0
load helper

AJV="${XDG_CACHE_HOME:-$HOME/.cache}/zdm-npm/node_modules/.bin/ajv"

setup() {
  T="$(mktemp -d "${BATS_TMPDIR:-/tmp}/zdm-test.XXXXXX")"
  cd "$T"
  export ZDM_PLUGIN_PATH="$REPO/plugins"
  export XDG_STATE_HOME="$BATS_TEST_TMPDIR/xdg-state" NO_COLOR=1
  [ -x "$AJV" ] || fail "no ajv-cli at $AJV: run scripts/deps.sh"
  "$ZDM_BIN" schema >"$T/schema.json"
}

teardown() {
  rm -rf "$T"
}

# ajv over one runbook (YAML); strict, so a schema ajv finds dubious fails too
ajv() {
  "$AJV" validate --spec=draft2020 --allow-union-types --errors=text \
    -s "$T/schema.json" -d "$1"
}

@test "schema: valid JSON, draft 2020-12, every step type with its with:" {
  run -0 jq -e '."$schema" == "https://json-schema.org/draft/2020-12/schema"' "$T/schema.json"
  run -0 jq -r '."$defs".uses.enum[]' "$T/schema.json"
  assert_line exec
  assert_line wait
  assert_line release.symlink
  # one if/then per type, each closing with: to the type's params
  n=$("$ZDM_BIN" schema | jq '."$defs".uses.enum | length')
  run -0 jq -e --argjson n "$n" '."$defs".typed_with.allOf | length == $n' "$T/schema.json"
  run -0 jq -e '."$defs".typed_with.allOf[] | select(.if.properties.uses.const == "wait")
    | .then.properties.with | .additionalProperties == false and .required == ["duration"]' \
    "$T/schema.json"
  # the plugins shipped in plugins/ are in it with their params (flag.unleash)
  run -0 jq -e '."$defs".typed_with.allOf[] | select(.if.properties.uses.const == "flag.unleash")
    | .then.properties.with | ((.required | sort) == ["action","environment","flag","token","url"])
      and (.properties | has("percent") and has("client_token") and has("group_id"))' "$T/schema.json"
  # a shipped Lua plugin's params, required ones and defaults included
  run -0 jq -e '."$defs".typed_with.allOf[] | select(.if.properties.uses.const == "db.postgres_compare")
    | .then.properties.with | .required == ["source", "target"] and .additionalProperties == false
      and (.properties | has("chunk_rows") and has("max_retries") and has("max_report") and has("lag_wait")
        and has("max_lag_bytes") and has("publication") and has("table"))' "$T/schema.json"
  # an earlier name is read, marked deprecated
  run -0 jq -e '."$defs".typed_with.allOf[] | select(.if.properties.uses.const == "approval")
    | .then.properties.with.properties.timeout.deprecated == true' "$T/schema.json"
}

@test "schema: a plugin on --plugin-path is in it, with its params" {
  plugin_file "$T/myplugins" my.marker <<'EOF'
return {
  description = "write a marker file",
  params = {
    {name = "path", type = "path", required = true, doc = "the file"},
    {name = "count", type = "int", default = 1, doc = "how many lines"},
  },
  renamed = {file = "path"},
  run = function(ctx, p) end,
}
EOF
  run -0 "$ZDM_BIN" schema
  run -0 jq -e '."$defs".uses.enum | index("my.marker") == null' <<<"$output"
  "$ZDM_BIN" schema --plugin-path "$T/myplugins" >"$T/schema.json"
  run -0 jq -e '."$defs".typed_with.allOf[] | select(.if.properties.uses.const == "my.marker")
    | .then.properties.with | .description == "write a marker file" and .properties.file.deprecated == true
      and .properties.count.default == 1' "$T/schema.json"
  cat >"$T/bad.yml" <<'EOF'
zdm: 1
name: marker
steps:
  - id: a
    uses: my.marker
    with: {path: x, count: many}
EOF
  run ajv "$T/bad.yml"
  [ "$status" -ne 0 ] || fail "ajv accepted it: $output"
  sed -i 's/many/3/' "$T/bad.yml"
  run ajv "$T/bad.yml"
  [ "$status" -eq 0 ] || fail "ajv: $output"
  # the required param under its earlier name is enough; both names are not
  export ZDM_PLUGIN_PATH="$T/myplugins"
  sed -i 's/path: x/file: x/' "$T/bad.yml"
  run -0 "$ZDM_BIN" validate "$T/bad.yml"
  run ajv "$T/bad.yml"
  [ "$status" -eq 0 ] || fail "ajv: $output"
  sed -i 's/file: x/file: x, path: y/' "$T/bad.yml"
  run -2 "$ZDM_BIN" validate "$T/bad.yml"
  run ajv "$T/bad.yml"
  [ "$status" -ne 0 ] || fail "ajv accepted both names: $output"
  sed -i 's/file: x, path: y/count: 2/' "$T/bad.yml"
  run -2 "$ZDM_BIN" validate "$T/bad.yml"
  run ajv "$T/bad.yml"
  [ "$status" -ne 0 ] || fail "ajv accepted no path: $output"
}

@test "schema: a shipped plugin's params are in it: db.pgbouncer" {
  run -0 jq -e '."$defs".uses.enum | index("db.pgbouncer") != null' "$T/schema.json"
  run -0 jq -e '."$defs".typed_with.allOf[] | select(.if.properties.uses.const == "db.pgbouncer")
    | .then.properties.with | .additionalProperties == false and .required == ["action", "admin", "database"]
      and (.properties | has("drain_timeout") and has("catchup_timeout") and has("config") and has("subscription"))' \
    "$T/schema.json"
  cat >"$T/rb.yml" <<EOF
zdm: 1
name: s
steps:
  - id: p
    uses: db.pgbouncer
    with: {action: pause, admin: "host=h dbname=pgbouncer user=u", database: app, drain_timout: 5s}
EOF
  run ajv "$T/rb.yml"
  [ "$status" -ne 0 ] || fail "ajv accepted an unknown param of db.pgbouncer: $output"
  sed -i 's/drain_timout/drain_timeout/' "$T/rb.yml"
  run -0 ajv "$T/rb.yml"
}

@test "schema: every runbook in runbooks/ passes ajv and zdm validate" {
  # none uses include: (an included file is not a runbook; the schema has no
  # entry for one): a runbook that does would need its includes checked apart
  for f in "$REPO"/runbooks/*.yml; do
    ! grep -q '^[[:space:]-]*include:' "$f" || fail "$f uses include: (not covered here)"
    run "$ZDM_BIN" validate "$f"
    [ "$status" -eq 0 ] || fail "zdm validate $f: $output"
    run ajv "$f"
    [ "$status" -eq 0 ] || fail "ajv $f: $output"
  done
}

@test "schema: every runbook of the test data that zdm validate accepts passes ajv" {
  n=0
  while IFS= read -r f; do
    "$ZDM_BIN" validate "$f" >/dev/null 2>&1 || continue
    n=$((n + 1))
    run ajv "$f"
    [ "$status" -eq 0 ] || fail "zdm validate accepts $f, ajv does not: $output"
  done < <(find "$REPO/tests/data" -name '*.yml' | sort)
  [ "$n" -gt 0 ] || fail "no runbook accepted in tests/data"
}

@test "schema: what zdm reads leniently passes too" {
  cat >"$T/lenient.yml" <<'EOF'
zdm: 1
name: lenient
x-exec: &e
  expect_exit: [0, 1]
vars: {port: 8080, slow: false}
notify:
  - url: http://127.0.0.1:9/hook
    on: [failure, finish]
    timeout: 2s
defaults: {timeout: 1m30s, retries: 2, backoff: fixed}
steps:
  - id: ok
    uses: exec
    if: ${{ not vars.slow }}
    with:
      <<: *e
      shell: "true"
      output_limit: "4096"
      kill_grace: 0
      stdin: 42
      cwd: null
  - id: asked
    uses: approval
    with: {message: go?, timeout: 1h}
  - for_each: [a, 2, true]
    steps:
      - id: soak
        uses: wait
        with: {duration: "${{ vars.port }}ms"}
  - id: nap
    uses: wait
    retries: 0
    with: {duration: 1.5s}
EOF
  run "$ZDM_BIN" validate "$T/lenient.yml"
  [ "$status" -eq 0 ] || fail "zdm validate: $output"
  run ajv "$T/lenient.yml"
  [ "$status" -eq 0 ] || fail "ajv: $output"
}

# each broken runbook: zdm validate refuses it (exit 2) and so does ajv
broken() {
  run "$ZDM_BIN" validate "$T/bad.yml"
  [ "$status" -eq 2 ] || fail "zdm validate accepted it: $output"
  run ajv "$T/bad.yml"
  [ "$status" -ne 0 ] || fail "ajv accepted it: $output"
  assert_output --partial "$1"
}

@test "schema: an unknown step key fails" {
  cat >"$T/bad.yml" <<'EOF'
zdm: 1
name: bad
steps:
  - id: a
    uses: exec
    retry: 3
    with: {shell: "true"}
EOF
  broken "must NOT have additional properties"
}

@test "schema: a param of the wrong type fails" {
  cat >"$T/bad.yml" <<'EOF'
zdm: 1
name: bad
steps:
  - id: a
    uses: exec
    with: {shell: "true", output_limit: lots}
EOF
  broken "output_limit"
}

@test "schema: a duration without a unit fails" {
  cat >"$T/bad.yml" <<'EOF'
zdm: 1
name: bad
steps:
  - id: a
    uses: wait
    with: {duration: 30}
EOF
  broken "duration"
}

@test "schema: a missing required param fails" {
  cat >"$T/bad.yml" <<'EOF'
zdm: 1
name: bad
steps:
  - id: a
    uses: wait
    with: {}
EOF
  broken "must have required property 'duration'"
}

@test "schema: an unknown param fails" {
  cat >"$T/bad.yml" <<'EOF'
zdm: 1
name: bad
steps:
  - id: a
    uses: wait
    with: {duration: 1s, jitter: 1s}
EOF
  broken "must NOT have additional properties"
}

@test "schema: an unknown uses fails" {
  cat >"$T/bad.yml" <<'EOF'
zdm: 1
name: bad
steps:
  - id: a
    uses: exce
    with: {shell: "true"}
EOF
  broken "must be equal to one of the allowed values"
}

@test "schema: a bad top-level key and a bad on_failure fail" {
  cat >"$T/bad.yml" <<'EOF'
zdm: 1
name: bad
on_failure: retry
steps:
  - id: a
    uses: wait
    with: {duration: 1s}
EOF
  broken "on_failure"
}

@test "schema: yaml-language-server reports an unknown param with it" {
  yls="${XDG_CACHE_HOME:-$HOME/.cache}/zdm-npm/node_modules/yaml-language-server/bin/yaml-language-server"
  [ -f "$yls" ] || fail "no yaml-language-server at $yls: run scripts/deps.sh"
  cat >"$T/bad.yml" <<'EOF'
zdm: 1
name: bad
steps:
  - id: a
    uses: wait
    with: {duration: 1s, jitter: 2s}
EOF
  run -0 timeout 60 python3 "$REPO/tests/lsp_diagnostics.py" "$yls" "$T/schema.json" "$T/bad.yml"
  assert_output "6:26: Property jitter is not allowed."
}
