#!/usr/bin/env bats
# flag.unleash against a real Unleash server (unleash-server from npm, with a
# PostgreSQL 15 cluster of its own; tests/servers/unleash.bash), started once
# for the file: on/off and gradual rollouts seen through the client API as an
# application sees them, undo putting back the exact prior state of the
# environment, a wrong token, a missing flag, the server gone in the middle
# of a step, and the tokens never written anywhere.  Each test uses flags of
# its own; the test that kills the server is the last.

bats_require_minimum_version 1.5.0
load helper
load servers/unleash

setup_file() {
  unleash_start
}

teardown_file() {
  unleash_stop
}

# $T/rb.yml: runbook flag-test with the tokens in secrets and the steps on stdin
flag_runbook() {
  {
    cat <<YML
zdm: 1
name: flag-test
secrets:
  unleash_admin: {env: UNLEASH_ADMIN_TOKEN}
  unleash_client: {env: UNLEASH_CLIENT_TOKEN}
steps:
YML
    cat
  } >"$T/rb.yml"
}

# a flag.unleash step: ID FLAG ACTION [PERCENT]
flag_step() {
  cat <<YML
  - id: $1
    uses: flag.unleash
    with:
      url: $UNLEASH
      flag: $2
      environment: development
      action: $3
      token: \${{ secrets.unleash_admin }}
      client_token: \${{ secrets.unleash_client }}
YML
  [ -z "${4:-}" ] || echo "      percent: $4"
}

# the development environment of flag $1 as the admin API returns it, keys sorted
env_state() {
  unleash_api GET "/projects/default/features/$1" |
    jq -S '.environments[] | select(.name == "development")'
}

# the secret parts of the tokens are in no journal, no stdout, no stderr
no_token_anywhere() {
  local tok
  for tok in "${UNLEASH_ADMIN_TOKEN#*.}" "${UNLEASH_CLIENT_TOKEN#*.}"; do
    ! grep -rqF "$tok" "$T/state" || fail "a token is in the journal"
    [[ "$output" != *"$tok"* ]] || fail "a token is on stdout"
    [[ "${stderr:-}" != *"$tok"* ]] || fail "a token is on stderr"
  done
}

# two strategies with constraints (one with a segment and a variant), enabled
two_strategies() {
  local seg
  seg="$(unleash_api POST /segments "{\"name\":\"seg-$1\",\"project\":\"default\",\"constraints\":[{\"contextName\":\"appName\",\"operator\":\"IN\",\"values\":[\"web\"]}]}" | jq .id)"
  unleash_flag "$1"
  unleash_api POST "/projects/default/features/$1/environments/development/strategies" \
    "{\"name\":\"flexibleRollout\",\"title\":\"staff\",\"constraints\":[{\"contextName\":\"userId\",\"operator\":\"IN\",\"values\":[\"1\",\"2\"],\"caseInsensitive\":false,\"inverted\":false}],\"parameters\":{\"rollout\":\"100\",\"stickiness\":\"userId\",\"groupId\":\"staff\"},\"segments\":[$seg],\"variants\":[{\"name\":\"blue\",\"weight\":1000,\"weightType\":\"variable\",\"stickiness\":\"default\",\"payload\":{\"type\":\"string\",\"value\":\"b\"}}]}" >/dev/null
  unleash_api POST "/projects/default/features/$1/environments/development/strategies" \
    "{\"name\":\"default\",\"constraints\":[{\"contextName\":\"environment\",\"operator\":\"NOT_IN\",\"values\":[\"ci\"],\"inverted\":true},{\"contextName\":\"currentTime\",\"operator\":\"DATE_AFTER\",\"value\":\"2020-01-01T00:00:00.000Z\"}],\"parameters\":{}}" >/dev/null
  unleash_api POST "/projects/default/features/$1/environments/development/on" >/dev/null
}

@test "flag.unleash: enable, then disable, each seen through the client API; secrets never shown" {
  unleash_flag onoff
  flag_step on onoff enable | flag_runbook
  run --separate-stderr zdm run "$T/rb.yml" --state-dir "$T/state" -v
  assert_equal "$status" 0
  [[ "$stderr" == *"flag 'onoff' (project default, environment development): off, strategies [none] -> on; seen through the client API"* ]] || fail "$stderr"
  [ "$(unleash_client onoff | jq .enabled)" = true ]
  no_token_anywhere
  flag_step off onoff disable | flag_runbook
  run --separate-stderr zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 0
  [ "$(unleash_client onoff | jq .enabled)" = false ]
  [ "$(env_state onoff | jq .enabled)" = false ]
  assert_equal "$(jq -c 'select(.event == "step.succeeded") | .data.outputs' "$(J)")" \
    '{"enabled":false,"previous_enabled":true}'
  no_token_anywhere
}

@test "flag.unleash: the rollback of an enable turns the flag off and removes the strategy Unleash added" {
  unleash_flag undoon
  before="$(env_state undoon)"
  flag_step on undoon enable | flag_runbook
  run --separate-stderr zdm run "$T/rb.yml" --state-dir "$T/state" --fail-at on
  assert_equal "$status" 1
  assert_output --partial "undone    on"
  assert_equal "$(env_state undoon)" "$before"
  [ "$(unleash_client undoon | jq .enabled)" = false ]
  no_token_anywhere
}

@test "flag.unleash: a gradual rollout 1 -> 10 -> 50 %: one flexibleRollout strategy, updated in place, the percent visible to clients" {
  unleash_flag grad
  { flag_step p1 grad rollout 1; flag_step p10 grad rollout 10; flag_step p50 grad rollout 50; } | flag_runbook
  run --separate-stderr zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 0
  run unleash_client grad
  assert_equal "$(jq -c '[.enabled, [.strategies[] | [.name, .parameters.rollout, .parameters.stickiness, .parameters.groupId]]]' <<<"$output")" \
    '[true,[["flexibleRollout","50","default","grad"]]]'
  [ "$(env_state grad | jq '.strategies | length')" = 1 ]
  # each step's undo_data is the state before it: off, then 1 %, then 10 %
  run jq -c 'select(.event == "step.succeeded") | [.step, .data.undo_data.enabled, [.data.undo_data.strategies[]?.parameters.rollout]]' "$(J)"
  assert_output "$(printf '%s\n' '["p1",false,[]]' '["p10",true,["1"]]' '["p50",true,["10"]]')"
  # the same rollout again, undone newest first: back to the state it found (50 %, same id)
  mid="$(env_state grad)"
  run --separate-stderr zdm run "$T/rb.yml" --state-dir "$T/state2" --fail-at p50
  assert_equal "$status" 1
  assert_equal "$(env_state grad)" "$mid"
  no_token_anywhere
  # a rollout undone on a flag that was off with no strategy: off with no strategy
  flag_step p1 grad2 rollout 1 | flag_runbook
  unleash_flag grad2
  before="$(env_state grad2)"
  run --separate-stderr zdm run "$T/rb.yml" --state-dir "$T/state3" --fail-at p1
  assert_equal "$status" 1
  assert_equal "$(env_state grad2)" "$before"
}

@test "flag.unleash: undo puts back a flag with two strategies with constraints, segments and variants byte for byte" {
  two_strategies twostrat
  before="$(env_state twostrat)"
  [ "$(jq '.strategies | length' <<<"$before")" = 2 ]
  { flag_step roll twostrat rollout 25; flag_step off twostrat disable; } | flag_runbook
  run --separate-stderr zdm run "$T/rb.yml" --state-dir "$T/state" --fail-at off
  assert_equal "$status" 1
  assert_output --partial "undone    off"
  assert_output --partial "undone    roll"
  # the whole environment object, ids, sortOrder and all
  assert_equal "$(env_state twostrat)" "$before"
  assert_equal "$(unleash_api GET /projects/default/features/twostrat/environments/development/strategies | jq -S .)" \
    "$(jq -S '[.strategies[] | . + {milestoneId: null}]' <<<"$before" | jq -S 'sort_by(.sortOrder)')"
  no_token_anywhere
}

@test "flag.unleash: a strategy deleted by hand after the run is created again by the rollback (same everything but its id)" {
  two_strategies gone
  before="$(env_state gone)"
  { flag_step roll gone rollout 5
    printf '  - id: stop\n    uses: exec\n    with: {command: [sh, -c, "exit 1"]}\n'; } | flag_runbook
  sed -i 's/^steps:/on_failure: pause\nsteps:/' "$T/rb.yml"
  run --separate-stderr zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 4
  staff="$(jq -r '.strategies[] | select(.title == "staff") | .id' <<<"$before")"
  unleash_api DELETE "/projects/default/features/gone/environments/development/strategies/$staff" >/dev/null
  run --separate-stderr zdm rollback "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 0
  [[ "$stderr" == *"strategy $staff was gone; created again as "* ]] || fail "$stderr"
  after="$(env_state gone)"
  [ "$(jq -r '.strategies[] | select(.title == "staff") | .id' <<<"$after")" != "$staff" ]
  # only the server-assigned id of the re-created strategy differs
  assert_equal "$(jq -S 'del(.strategies[].id)' <<<"$after")" "$(jq -S 'del(.strategies[].id)' <<<"$before")"
  no_token_anywhere
}

@test "flag.unleash: a torn record after the change: zdm rollback restores from the snapshot; zdm resume reruns and records the state from before" {
  unleash_flag torn
  before="$(env_state torn)"
  flag_step roll torn rollout 40 | flag_runbook
  ZDM_TEST_TEAR_RECORD=3 run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 137
  [ "$(unleash_client torn | jq -r '.strategies[0].parameters.rollout')" = 40 ]
  run --separate-stderr zdm rollback "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 0
  assert_equal "$(env_state torn)" "$before"
  no_token_anywhere
  # the same crash, then resume: the step is idempotent and runs again; its
  # undo_data is the state before the first attempt, not its own change
  ZDM_TEST_TEAR_RECORD=3 run zdm run "$T/rb.yml" --state-dir "$T/state2"
  assert_equal "$status" 137
  run --separate-stderr zdm resume "$T/rb.yml" --state-dir "$T/state2"
  assert_equal "$status" 0
  assert_equal "$(jq -c 'select(.event == "step.succeeded") | [.data.undo_data.enabled, (.data.undo_data.strategies | length)]' "$(journal_of "$T/state2")")" '[false,0]'
}

@test "flag.unleash: a flag that does not exist is named; nothing changes" {
  flag_step on no-such-flag enable | flag_runbook
  run --separate-stderr zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 1
  [[ "$stderr$output" == *"GET flag 'no-such-flag' (project default, environment development): HTTP 404: There's no feature named \"no-such-flag\" in project \"default\". (does flag 'no-such-flag' exist in project 'default', with environment 'development'?)"* ]] ||
    fail "$stderr$output"
  run --separate-stderr zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "check failed: GET flag 'no-such-flag'"
}

@test "flag.unleash: a wrong admin token fails the dry run's check and the run before any change; it is never shown" {
  unleash_flag wrongtok
  before="$(env_state wrongtok)"
  flag_step on wrongtok enable | flag_runbook
  good="$UNLEASH_ADMIN_TOKEN"
  UNLEASH_ADMIN_TOKEN="*:*.not-the-token-5e1f" run --separate-stderr zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "check failed: GET flag 'wrongtok' (project default, environment development): HTTP 401: You must log in to use Unleash. (the admin token was refused: check token)"
  [[ "$output$stderr" != *not-the-token-5e1f* ]]
  UNLEASH_ADMIN_TOKEN="*:*.not-the-token-5e1f" run --separate-stderr zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 1
  [[ "$output$stderr" == *"HTTP 401: You must log in to use Unleash. (the admin token was refused: check token)"* ]]
  [[ "$output$stderr" != *not-the-token-5e1f* ]]
  ! grep -rqF not-the-token-5e1f "$T/state" || fail "the wrong token is in the journal"
  assert_equal "$(env_state wrongtok)" "$before"
  # the client token where the admin token belongs: refused too (HTTP 403)
  UNLEASH_ADMIN_TOKEN="$UNLEASH_CLIENT_TOKEN" run --separate-stderr zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "HTTP 403"
  UNLEASH_ADMIN_TOKEN="$good"
  no_token_anywhere
  # the right one: the dry run shows the state now and the state after, and changes nothing
  run --separate-stderr zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 0
  assert_output --partial "checked: flag 'wrongtok' (project default, environment development): off, strategies [none] -> on, strategies [default strategy (added by Unleash)()] (nothing changed)"
  assert_equal "$(env_state wrongtok)" "$before"
}

@test "flag.unleash: a literal token, a bad action and a rollout without percent are refused before anything runs (exit 2)" {
  flag_step on x enable | flag_runbook
  sed -i 's/token: \${{ secrets.unleash_admin }}/token: abc123/' "$T/rb.yml"
  run zdm validate "$T/rb.yml"
  assert_equal "$status" 2
  assert_output --partial "param 'token': must come from secrets"
  flag_step on x flip | flag_runbook
  run zdm validate "$T/rb.yml"
  assert_equal "$status" 2
  assert_output --partial "param 'action': must be enable, disable or rollout"
  flag_step on x rollout | flag_runbook
  run zdm validate "$T/rb.yml"
  assert_equal "$status" 2
  assert_output --partial "rollout needs percent: 0 to 100"
  flag_step on x rollout 101 | flag_runbook
  run zdm validate "$T/rb.yml"
  assert_equal "$status" 2
  assert_output --partial "param 'percent': must be from 0 to 100"
}

@test "flag.unleash: runbooks/canary-flag.yml validates" {
  run zdm validate "$REPO/runbooks/canary-flag.yml"
  assert_equal "$status" 0
}

# last: it kills the server (and starts it again for the rollback)
@test "flag.unleash: the server gone in the middle of the step fails it, names the server; zdm rollback restores once it is back" {
  unleash_flag gone-mid
  before="$(env_state gone-mid)"
  flag_step roll gone-mid rollout 30 | flag_runbook
  # a client token of another environment: the step keeps polling the client API
  sed -i 's/unleash_client: {env: UNLEASH_CLIENT_TOKEN}/unleash_client: {env: UNLEASH_PROD_CLIENT_TOKEN}/' "$T/rb.yml"
  echo "      verify_timeout: 50s" >>"$T/rb.yml"
  timeout 60 "$ZDM_BIN" run "$T/rb.yml" --state-dir "$T/state" >"$T/out" 2>"$T/err" &
  zpid=$!
  changed() { [ "$(env_state gone-mid | jq '.strategies | length')" = 1 ]; }
  poll 400 0.1 changed
  unleash_kill
  rc=0
  wait "$zpid" || rc=$?
  assert_equal "$rc" 3
  grep -qF "through the client API: Unleash at $UNLEASH did not answer" "$T/out" "$T/err" || fail "$(cat "$T/out" "$T/err")"
  unleash_up
  run --separate-stderr zdm rollback "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 0
  assert_equal "$(env_state gone-mid)" "$before"
  output="$(cat "$T/out")$output" stderr="$(cat "$T/err")$stderr" no_token_anywhere
}
