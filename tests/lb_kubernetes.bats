#!/usr/bin/env bats
# lb.kubernetes against tests/servers/kube-api.py: an HTTPS stand-in for the
# API server on 127.0.0.1 that enforces the request shape (bearer token,
# path, method, application/merge-patch+json, resourceVersion) and keeps the
# Service in a file the tests read.

bats_require_minimum_version 1.5.0
load helper

TOKEN="zdm-test-token-7f3a9c0e1d2b"

# the helper's teardown, run after the API server is stopped
eval "helper_$(declare -f teardown)"

teardown() {
  stop_pids "$T/kube.pid"
  helper_teardown
}

start_kube() {
  mkdir -p "$T/kube/services/shop"
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
    -addext "subjectAltName=IP:127.0.0.1" -keyout "$T/kube/key.pem" -out "$T/kube/ca.pem" 2>/dev/null
  printf '%s\n' "$TOKEN" >"$T/kube/token"
  cat >"$T/kube/services/shop/orders.json" <<'JSON'
{"apiVersion": "v1", "kind": "Service",
 "metadata": {"name": "orders", "namespace": "shop", "resourceVersion": "100"},
 "spec": {"ports": [{"port": 80, "targetPort": 8080}],
          "selector": {"app": "orders", "track": "blue", "canary": "no"}}}
JSON
  serve "tests/servers/kube-api.py" "$T/kube.pid" "$T/kube/out" "$T/kube/port" \
    python3 "$REPO/tests/servers/kube-api.py" "$T/kube" --tls "$T/kube/ca.pem" "$T/kube/key.pem" --lifetime 120 ||
    return 1
  API="https://127.0.0.1:$(cat "$T/kube/port")"
}

selector() {
  jq -cS '.spec.selector' "$T/kube/services/shop/orders.json"
}

# the step `switch` (YAML): Service shop/orders of this test's API server to
# green, authenticated by the line $1 (token: or token_file:)
switch_step() {   # auth-line
  cat <<YML
  - id: switch
    uses: lb.kubernetes
    with:
      api: $API
      ca_file: $T/kube/ca.pem
      namespace: shop
      service: orders
      $1
      selector: {app: orders, track: green}
YML
}

kube_runbook() {   # extra steps appended from stdin
  cat >"$T/rb.yml" <<YML
zdm: 1
name: kube-bg
secrets:
  kube_token: {env: KUBE_TOKEN}
steps:
$(switch_step 'token: ${{ secrets.kube_token }}')
YML
  cat >>"$T/rb.yml"
}

no_token_anywhere() {
  ! grep -rqF "$TOKEN" "$T/state" || fail "the token is in the journal"
  [[ "$output" != *"$TOKEN"* ]] || fail "the token is in the output"
}

@test "lb.kubernetes: the selector is patched to green (merge patch, null for a dropped key) and back by undo" {
  start_kube
  kube_runbook <<'YML'
  - id: stop
    uses: exec
    with: {command: ["false"]}
YML
  export KUBE_TOKEN="$TOKEN"
  run zdm plan "$T/rb.yml"
  assert_equal "$status" 0
  # plan resolves no secrets, so it cannot authenticate: it says so, sending nothing
  assert_output --partial "Service shop/orders: selector -> {app=orders,track=green} (now: not read: the token comes from secrets, resolved only at run time)"
  assert_file_not_exists "$T/kube/requests.jsonl"
  # first only the switch: stop right after it is recorded
  ZDM_TEST_CRASH_AFTER_RECORD=3 run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 137
  [ "$(selector)" = '{"app":"orders","track":"green"}' ]
  run jq -c 'select(.event=="step.succeeded") | .data.undo_data.selector' "$(J)"
  assert_output '{"app":"orders","canary":"no","track":"blue"}'
  # what reached the API server: GET (snapshot), GET + PATCH (run)
  run jq -r '[.method, .path, (.content_type // "-"), .auth, .status] | join(" ")' "$T/kube/requests.jsonl"
  assert_output "GET /api/v1/namespaces/shop/services/orders - ok 200
GET /api/v1/namespaces/shop/services/orders - ok 200
PATCH /api/v1/namespaces/shop/services/orders application/merge-patch+json ok 200"
  run zdm rollback "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 0
  [ "$(selector)" = '{"app":"orders","canary":"no","track":"blue"}' ]
  no_token_anywhere

  # a whole run: the failing step rolls the switch back (exit 1)
  rm -rf "$T/state"
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "undone    switch"
  [ "$(selector)" = '{"app":"orders","canary":"no","track":"blue"}' ]
  no_token_anywhere
}

@test "lb.kubernetes: a wrong token is a 401 named as such; nothing changes and the token is never shown" {
  start_kube
  kube_runbook </dev/null
  KUBE_TOKEN="not-the-token" run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "GET Service shop/orders: HTTP 401: Unauthorized (the token was refused: check token / token_file)"
  [ "$(selector)" = '{"app":"orders","canary":"no","track":"blue"}' ]
  refute grep -rqF "not-the-token" "$T/state"
  [[ "$output" != *not-the-token* ]]
}

@test "lb.kubernetes: a Service that does not exist is a clear 404" {
  start_kube
  kube_runbook </dev/null
  sed -i 's/service: orders/service: payments/' "$T/rb.yml"
  KUBE_TOKEN="$TOKEN" run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial 'GET Service shop/payments: HTTP 404: services "payments" not found'
}

@test "lb.kubernetes: a dry run GETs the Service (token, CA, existence) and patches nothing; a wrong token or a missing Service fails it" {
  start_kube
  kube_runbook </dev/null
  KUBE_TOKEN="$TOKEN" run zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 0
  assert_output --partial "checked: Service shop/orders answers to the token; selector now {app=orders,canary=no,track=blue} (the patch is not tried)"
  run jq -r '.method' "$T/kube/requests.jsonl"
  refute_output --partial PATCH
  [ "$(selector)" = '{"app":"orders","canary":"no","track":"blue"}' ]
  KUBE_TOKEN="not-the-token" run zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "check failed: GET Service shop/orders: HTTP 401: Unauthorized (the token was refused: check token / token_file)"
  [[ "$output" != *not-the-token* ]]
  sed -i 's/service: orders/service: payments/' "$T/rb.yml"
  KUBE_TOKEN="$TOKEN" run zdm run "$T/rb.yml" --dry-run --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial 'check failed: GET Service shop/payments: HTTP 404: services "payments" not found'
}

@test "lb.kubernetes: a torn record after the switch: rollback puts the selector back from the snapshot" {
  start_kube
  kube_runbook </dev/null
  KUBE_TOKEN="$TOKEN" ZDM_TEST_TEAR_RECORD=3 run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 137
  [ "$(selector)" = '{"app":"orders","track":"green"}' ]
  KUBE_TOKEN="$TOKEN" run zdm rollback "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 0
  [ "$(selector)" = '{"app":"orders","canary":"no","track":"blue"}' ]
  no_token_anywhere
}

@test "lb.kubernetes: a literal token and an empty selector are refused before anything runs" {
  cat >"$T/rb.yml" <<'YML'
zdm: 1
name: kube-bad
steps:
  - id: switch
    uses: lb.kubernetes
    with:
      api: https://127.0.0.1:6443
      service: Orders
      token: abc123
      selector: {}
YML
  run zdm validate "$T/rb.yml"
  assert_equal "$status" 2
  assert_output --partial "rb.yml:8:16: step 'switch': param 'service': must be a Service name"
  assert_output --partial "rb.yml:9:14: step 'switch': param 'token': must come from secrets (token: \${{ secrets.NAME }})"
  assert_output --partial "param 'selector': give at least one label: value"
}

@test "kube-api.py enforces the API server's request shape (the test server is strict)" {
  start_kube
  c() { curl -s --cacert "$T/kube/ca.pem" -o /dev/null -w '%{http_code}' "$@"; }
  u="$API/api/v1/namespaces/shop/services/orders"
  [ "$(c "$u")" = 401 ]
  [ "$(c -H "Authorization: Bearer $TOKEN" "$API/api/v1/services/orders")" = 404 ]
  [ "$(c -H "Authorization: Bearer $TOKEN" -X DELETE "$u")" = 405 ]
  [ "$(c -H "Authorization: Bearer $TOKEN" -X PATCH -H 'Content-Type: application/json' -d '{}' "$u")" = 415 ]
  [ "$(c -H "Authorization: Bearer $TOKEN" -X PATCH -H 'Content-Type: application/merge-patch+json' \
        -d '{"metadata":{"resourceVersion":"99"}}' "$u")" = 409 ]
  [ "$(selector)" = '{"app":"orders","canary":"no","track":"blue"}' ]
}

@test "lb.kubernetes: a token from token_file (as in a pod) authenticates and is never shown" {
  start_kube
  cat >"$T/rb.yml" <<YML
zdm: 1
name: kube-pod
steps:
$(switch_step "token_file: $T/kube/token")
YML
  run zdm plan "$T/rb.yml"
  assert_equal "$status" 0
  assert_output --partial "Service shop/orders: selector {app=orders,canary=no,track=blue} -> {app=orders,track=green}"
  run zdm run "$T/rb.yml" --state-dir "$T/state" --fail-at switch
  assert_equal "$status" 1
  [ "$(selector)" = '{"app":"orders","canary":"no","track":"blue"}' ]
  # switched, then (forced failure) switched back: two patches went through
  [ "$(jq -r 'select(.method=="PATCH") | .status' "$T/kube/requests.jsonl" | tr '\n' ' ')" = "200 200 " ]
  run jq -r '.auth' "$T/kube/requests.jsonl"
  refute_output --partial "missing"
  refute_output --partial "wrong"
  no_token_anywhere
}
