#!/usr/bin/env bats
# Redaction works on lengths and on every JSON scalar: a NUL inside a string
# does not hide the secret after it, and a number equal to a secret (a PIN
# passed through tonumber) is journaled as "***".
# state: file and PostgreSQL (ZDM_TEST_STATE=pg, tests/helper.bash)

bats_require_minimum_version 1.5.0
load helper

setup_plugin() {
  mkdir -p "$T/plugins/t"
  cat > "$T/plugins/t/leak.lua" <<'LUA'
return {
  description = "returns its secret params in tricky shapes",
  params = {
    {name = "tok", type = "string", required = true, doc = "a secret"},
    {name = "pin", type = "string", required = true, doc = "a numeric secret"},
  },
  read_only = true,
  run = function(ctx, p)
    zdm.note("t.leak", {hidden = "a\0" .. p.tok, pin = tonumber(p.pin)})
    return {outputs = {hidden = "a\0" .. p.tok, pin = tonumber(p.pin),
                       pinf = tonumber(p.pin) + 0.0, other = tonumber(p.pin) + 1,
                       list = {tonumber(p.pin), "x\0" .. p.tok}}}
  end,
}
LUA
  cat > "$T/rb.yml" <<'YML'
zdm: 1
name: redact
secrets:
  tok: {env: TOK}
  pin: {env: PIN}
steps:
  - id: leak
    uses: t.leak
    with: {tok: "${{ secrets.tok }}", pin: "${{ secrets.pin }}"}
YML
}

@test "redaction: a NUL before a secret and a numeric secret never reach the journal or the JSON stream" {
  setup_plugin
  export ZDM_PLUGIN_PATH="$T/plugins:$REPO/plugins"
  TOK=tok-Zq81-secret PIN=4711 run --separate-stderr zdm run rb.yml --output json
  assert_equal "$status" 0
  J="$(journal_of "$T/.zdm")"
  run grep -c -e tok-Zq81-secret -e 4711 "$J"
  assert_output 0
  [[ "$(printf '%s' "$stdout" | grep -c -e tok-Zq81-secret -e 4711)" == 0 ]]
  run jq -c 'select(.event == "step.succeeded") | .data.outputs' "$J"
  assert_output '{"hidden":"a\u0000***","list":["***","x\u0000***"],"other":4712,"pin":"***","pinf":"***"}'
  run jq -c 'select(.event == "t.leak") | .data' "$J"
  assert_output '{"hidden":"a\u0000***","pin":"***"}'
}
