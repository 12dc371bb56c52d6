#!/usr/bin/env bats
# The http step and zdm.http for Lua plugins, against real servers on
# 127.0.0.1: tests/servers/httpd.py (driven by $T/control.json) and nginx.
# Status ranges, body text, JSON fields as outputs, JSON bodies, failures
# (status, refused, timeouts) with their rollback, dry runs, secrets, and
# the static checks of `zdm validate`.

bats_require_minimum_version 1.5.0
load helper
load servers/httpd

# a runbook NAME of one http step `get`; $2 is its with: (inside the braces)
get_runbook() {   # name with
  runbook <<EOF
zdm: 1
name: $1
steps:
  - id: get
    uses: http
    with: {$2}
EOF
}

# ---- success: status, body, outputs ----------------------------------------------

@test "http: GET passes on expected statuses (200, 2xx, 200-299, 3xx without following) and body text" {
  control <<'EOF'
{"/ok": {"status": 200, "body": "all good\n"},
 "/created": {"status": 201, "body": "made"},
 "/moved": {"status": 302, "headers": {"Location": "/elsewhere"}, "body": ""},
 "/elsewhere": {"status": 200, "body": "followed"}}
EOF
  start_httpd
  runbook <<EOF
zdm: 1
name: http-ok
steps:
  - id: ok
    uses: http
    with: {url: "$BASE/ok", expect_body_contains: "good"}
  - id: created
    uses: http
    with: {url: "$BASE/created", expect_status: [201]}
  - id: range
    uses: http
    with: {url: "$BASE/created", expect_status: ["200-299"]}
  - id: moved
    uses: http
    with: {url: "$BASE/moved", expect_status: ["3xx", 404]}
  - id: head
    uses: http
    with: {url: "$BASE/ok", method: HEAD, expect_status: ["200"]}
EOF
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_line --regexp '^\[1/5\] ok +ok +[0-9]+ms$'
  assert_line --regexp '^\[4/5\] ok +moved +[0-9]+ms$'
  local j; j="$(journal_of "$T/state")"
  run jq -c 'select(.event=="step.succeeded") | [.step, .data.outputs.status, .data.outputs.body]' "$j"
  assert_output - <<'EOF'
["ok",200,"all good\n"]
["created",201,"made"]
["range",201,"made"]
["moved",302,""]
["head",200,""]
EOF
  # the redirect was not followed; HEAD went as HEAD
  assert_equal "$(requests_to /elsewhere | wc -l)" 0
  run jq -r 'select(.path=="/ok") | .method' "$T/requests.jsonl"
  assert_output $'GET\nHEAD'
  run jq -r 'select(.path=="/ok") | .headers["user-agent"]' "$T/requests.jsonl"
  assert_line --index 0 --regexp '^zdm/[0-9]+\.[0-9]+\.[0-9]+$'
}

@test "http: an unexpected status or missing body text fails the step, exit 1, naming both" {
  control <<'EOF'
{"/ok": {"status": 200, "body": "all good"}}
EOF
  start_httpd
  get_runbook http-expect "url: \"$BASE/ok\", expect_status: [404, \"5xx\"]"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line "        GET $BASE/ok: status 200, expected 404, 5xx: all good"
  get_runbook http-expect "url: \"$BASE/ok\", expect_body_contains: \"ready\""
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line "        GET $BASE/ok: status 200 but the body does not contain 'ready'"
  # the response is evidence in step.failed
  run jq -c 'select(.event=="step.failed") | [.data.outputs.status, .data.outputs.body]' "$(journal_of "$T/state")"
  assert_output '[200,"all good"]'
}

@test "http: JSON fields captured as outputs feed later steps" {
  control <<'EOF'
{"/version": {"json": {"build": {"version": "1.2.3", "sha": "abc"}, "replicas": 3,
                       "items": [{"name": "first"}, {"name": "last"}], "a b": {"ok": true}}},
 "/deploy": {"echo": true}}
EOF
  start_httpd
  runbook <<EOF
zdm: 1
name: http-outputs
steps:
  - id: version
    uses: http
    with:
      url: $BASE/version
      outputs: {version: .build.version, replicas: .replicas, first: ".items[0].name",
                last: ".items[-1].name", spaced: '.["a b"].ok', build: .build}
  - id: use
    uses: exec
    with: {command: [sh, -c, 'printf "%s %s %s %s %s" "\$1" "\$2" "\$3" "\$4" "\$5" >"$T/seen"', x,
                     "\${{ steps.version.outputs.version }}", "\${{ steps.version.outputs.replicas + 1 }}",
                     "\${{ steps.version.outputs.first }}", "\${{ steps.version.outputs.last }}",
                     "\${{ steps.version.outputs.build.sha }}"]}
  - id: deploy
    uses: http
    with:
      method: POST
      url: $BASE/deploy?version=\${{ steps.version.outputs.version }}
EOF
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_equal "$(cat "$T/seen")" "1.2.3 4 first last abc"
  run jq -c 'select(.event=="step.succeeded" and .step=="version") | .data.outputs | del(.body, .duration_ms)' \
    "$(journal_of "$T/state")"
  assert_output '{"build":{"sha":"abc","version":"1.2.3"},"first":"first","last":"last","replicas":3,"spaced":true,"status":200,"version":"1.2.3"}'
  run jq -r '.path' <(requests_to /deploy)
  assert_output "/deploy?version=1.2.3"
}

@test "http: an output path the response does not have, or a body that is not JSON, fails the step" {
  control <<'EOF'
{"/version": {"json": {"build": {"version": "1.2.3"}, "items": []}},
 "/text": {"body": "plain text"}}
EOF
  start_httpd
  runbook <<EOF
zdm: 1
name: http-missing
steps:
  - id: version
    uses: http
    with: {url: "$BASE/version", outputs: {v: .build.commit}}
EOF
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line "        outputs: 'v': .build.commit is not in the response: .build has no 'commit'"
  sed -i 's/{v: .build.commit}/{v: ".items[0]"}/' rb.yml
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line "        outputs: 'v': .items[0] is not in the response: .items has no item [0] (0 items)"
  sed -i "s#$BASE/version#$BASE/text#" rb.yml
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line --regexp '^        outputs: the response is not JSON \(line 1, column [0-9]+: .*\)$'
}

@test "http: a mapping body is sent as JSON with content-type application/json; a string as it is" {
  control <<'EOF'
{"/echo": {"echo": true}}
EOF
  start_httpd
  runbook <<EOF
zdm: 1
name: http-post
vars: {weight: 10}
steps:
  - id: json
    uses: http
    with:
      method: POST
      url: $BASE/echo
      headers: {X-Change: "shift-\${{ vars.weight }}"}
      body: {pool: green, weight: "\${{ vars.weight }}", hosts: [a, b], drain: true}
      outputs: {got: .body, ct: '.headers["content-type"]'}
  - id: text
    uses: http
    with:
      method: put
      url: $BASE/echo
      headers: {Content-Type: text/plain}
      body: "weight=\${{ vars.weight }}"
      expect_status: [200]
EOF
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  run jq -c 'select(.method=="POST") | [.headers["content-type"], .headers["x-change"], (.body | fromjson)]' "$T/requests.jsonl"
  assert_output '["application/json","shift-10",{"pool":"green","weight":10,"hosts":["a","b"],"drain":true}]'
  run jq -c 'select(.method=="PUT") | [.headers["content-type"], .body]' "$T/requests.jsonl"
  assert_output '["text/plain","weight=10"]'
  run jq -r 'select(.event=="step.succeeded" and .step=="json") | .data.outputs.ct' "$(journal_of "$T/state")"
  assert_output application/json
}

# ---- failures and the rollback -----------------------------------------------------

@test "http: a 500 fails the step and the steps before it are undone (exit 1)" {
  control <<'EOF'
{"/drain": {"status": 500, "body": "backend exploded\nstack trace..."}}
EOF
  start_httpd
  runbook <<EOF
zdm: 1
name: http-500
steps:
  - id: mark
    uses: exec
    with: {command: [touch, "$T/marker"]}
    undo: {uses: exec, with: {command: [rm, "$T/marker"]}}
  - id: drain
    uses: http
    with: {method: POST, url: "$BASE/drain", body: {node: a}}
    undo: {uses: http, with: {method: POST, url: "$BASE/undrain"}}
EOF
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line --regexp '^\[2/2\] failed +drain +[0-9]+ms$'
  assert_line "        POST $BASE/drain: status 500, expected 2xx: backend exploded"
  assert_line --regexp '^\[1/2\] undone +mark'
  assert_not_exist "$T/marker"
  run timeline
  assert_output - <<'EOF'
run.started
step.started mark
step.succeeded mark
step.started drain
step.failed drain
rollback.started drain
undo.started mark
undo.succeeded mark
run.finished
EOF
  # the failed step itself is not undone: its undo is for a step that completed
  assert_equal "$(requests_to /undrain | wc -l)" 0
}

@test "http: a refused connection fails with curl's message and the URL (exit 1)" {
  local port; port="$(free_port)"
  get_runbook http-refused "url: \"http://127.0.0.1:$port/health\""
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line --regexp "^        GET http://127.0.0.1:$port/health: Failed to connect to 127.0.0.1 port $port after [0-9]+ ms: Couldn't connect to server \(Connection refused\)$"
  run jq -r 'select(.event=="step.failed") | .data.error' "$(journal_of "$T/state")"
  assert_output --partial "http://127.0.0.1:$port/health: Failed to connect to 127.0.0.1 port $port"
}

@test "http: a slow answer fails at the request's timeout, or at the step's" {
  control <<'EOF'
{"/slow": {"delay": 5, "body": "late"}}
EOF
  start_httpd
  get_runbook http-slow "url: \"$BASE/slow\", request_timeout: 300ms"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line --regexp "^        GET $BASE/slow: Operation timed out after [0-9]+ milliseconds with 0 bytes received$"
  # the step's timeout bounds the request too (whose own is 10s)
  runbook <<EOF
zdm: 1
name: http-slow
steps:
  - id: get
    uses: http
    timeout: 400ms
    with: {url: "$BASE/slow"}
EOF
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line --regexp "^        GET $BASE/slow: Operation timed out after [0-9]+ milliseconds"
  run jq -r 'select(.event=="step.failed") | .data.timed_out' "$(journal_of "$T/state")"
  assert_output true
}

# ---- dry run, plan, secrets ----------------------------------------------------------

@test "http: not read-only: zdm plan and --dry-run show the request and send nothing" {
  control <<'EOF'
{"/flag": {"echo": true}}
EOF
  start_httpd
  runbook <<EOF
zdm: 1
name: http-dry
steps:
  - id: flag
    uses: http
    with: {method: PATCH, url: "$BASE/flag", body: {on: true}, expect_status: [200, 204],
           outputs: {v: .version}}
EOF
  run zdm plan rb.yml
  assert_equal "$status" 0
  assert_line " 1. flag (http)"
  assert_line "      do:   PATCH $BASE/flag with a JSON body, expecting 200, 204; captures 1 field"
  run zdm run rb.yml --dry-run --state-dir "$T/state"
  assert_equal "$status" 0
  assert_line --regexp '^\[1/1\] planned +flag$'
  assert_line "        PATCH $BASE/flag with a JSON body, expecting 200, 204; captures 1 field"
  assert_not_exist "$T/requests.jsonl"
}

@test "http: a secret as bearer token or password reaches the server, never the journal or the output" {
  local tok='tok-S3cr3t-9fQ2' pw='pw-S3cr3t-Lk81'
  control <<'EOF'
{"/echo": {"echo": true}, "/deny": {"status": 403, "echo": true}}
EOF
  start_httpd
  runbook <<EOF
zdm: 1
name: http-secret
secrets:
  tok: {env: ZDM_T_TOKEN}
  pw: {env: ZDM_T_PW}
steps:
  - id: bearer
    uses: http
    with: {url: "$BASE/echo", token: "\${{ secrets.tok }}", outputs: {auth: '.headers.authorization'}}
  - id: basic
    uses: http
    with: {url: "$BASE/echo", user: deploy, password: "\${{ secrets.pw }}"}
  - id: deny
    uses: http
    with: {url: "$BASE/deny?t=\${{ secrets.tok }}", headers: {X-Token: "\${{ secrets.tok }}"}}
EOF
  rc=0
  export ZDM_T_TOKEN="$tok" ZDM_T_PW="$pw"
  zdm run rb.yml --state-dir "$T/state" --output json >"$T/out" 2>&1 || rc=$?
  # 'bearer' and 'basic' (http, no undo) are left in place: exit 6
  assert_equal "$rc" 6
  # the server saw the real values
  run jq -r 'select(.path=="/echo") | .headers.authorization' "$T/requests.jsonl"
  assert_line --index 0 "Bearer $tok"
  assert_line --index 1 "Basic $(printf 'deploy:%s' "$pw" | base64)"
  run jq -r 'select(.path | startswith("/deny")) | .headers["x-token"]' "$T/requests.jsonl"
  assert_output "$tok"
  # zdm wrote *** everywhere: output, journal (params, outputs, the error), log
  zdm log --state-dir "$T/state" >"$T/log" 2>&1 || true
  local j; j="$(journal_of "$T/state")"
  for f in "$T/out" "$j" "$T/log"; do
    if grep -n -F -e "$tok" -e "$pw" -e "${tok:0:9}" -e "${pw:0:9}" "$f"; then
      echo "a secret leaked into $f" >&2
      return 1
    fi
  done
  run jq -r 'select(.event=="step.succeeded" and .step=="bearer") | .data.outputs.auth' "$j"
  assert_output 'Bearer ***'
  run jq -r 'select(.event=="step.failed") | .data.error' "$j"
  assert_output --partial "/deny?t=***: status 403, expected 2xx"
  run zdm audit verify "$j"
  assert_equal "$status" 0
}

@test "http: insecure: true is warned about on stderr" {
  control <<'EOF'
{"/ok": {"body": "ok"}}
EOF
  start_httpd
  get_runbook http-insecure "url: \"$BASE/ok\", insecure: true"
  run --separate-stderr zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_equal "$stderr" "zdm: warning: step 'get': insecure: true, so TLS certificates are not verified"
}

@test "http: TLS is verified by default: an https URL without a trusted certificate fails" {
  # httpd.py speaks plain HTTP: the TLS handshake fails, as any
  # verification failure would, with curl's message, and nothing passes
  start_httpd
  get_runbook http-tls "url: \"https://127.0.0.1:$HTTPD_PORT/ok\", ca_file: \"$T/none.pem\""
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line --regexp "^        GET https://127.0.0.1:$HTTPD_PORT/ok: .+"
}

# a self-signed certificate for 127.0.0.1; httpd.py speaks HTTPS with it
make_cert() {
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
    -addext "subjectAltName=IP:127.0.0.1" -keyout "$T/key.pem" -out "$T/cert.pem" 2>/dev/null
}

tls_runbook() {   # name, extra params
  get_runbook "$1" "url: \"https://127.0.0.1:$HTTPD_PORT/ok\", expect_body_contains: secure$2"
}

@test "http: real TLS: an untrusted certificate fails, ca_file trusts it, insecure skips the check with a warning" {
  make_cert
  echo '{"/ok": {"status": 200, "body": "secure"}}' | control
  HTTPD_TLS="$T/cert.pem $T/key.pem" start_httpd
  # default: the system's CAs do not know a self-signed certificate
  tls_runbook tls-default ""
  run --separate-stderr zdm run rb.yml --state-dir "$T/s1"
  assert_equal "$status" 1
  assert_output --regexp "certificate"
  # ca_file: the same server is trusted
  tls_runbook tls-ca ", ca_file: \"$T/cert.pem\""
  run --separate-stderr zdm run rb.yml --state-dir "$T/s2"
  assert_equal "$status" 0
  assert_equal "$stderr" ""
  # insecure: passes, and says so
  tls_runbook tls-insecure ", insecure: true"
  run --separate-stderr zdm run rb.yml --state-dir "$T/s3"
  assert_equal "$status" 0
  assert_equal "$stderr" "zdm: warning: step 'get': insecure: true, so TLS certificates are not verified"
}

# ---- validate --------------------------------------------------------------------

@test "http: zdm validate catches a malformed URL, bad statuses, bad JSON paths, with FILE:LINE:COL" {
  runbook <<'EOF'
zdm: 1
name: http-bad
vars: {host: "127.0.0.1:8080"}
steps:
  - id: a
    uses: http
    with: {url: "ftp://example.com/x"}
  - id: b
    uses: http
    with:
      url: "not a url"
  - id: c
    uses: http
    with:
      url: "http://${{ vars.host }}/ok"
      expect_status: [200, "2xy", 700, "299-200"]
  - id: d
    uses: http
    with:
      url: "http://:8080/nohost"
      outputs: {v: build.version, w: ".items[x]", status: .status}
  - id: e
    uses: http
    with: {url: "${{ steps.a.outputs.body }}", method: "GE T", bodyy: x}
EOF
  run zdm validate rb.yml
  assert_equal "$status" 2
  assert_output - <<'EOF'
rb.yml:7:17: step 'a': param 'url': malformed URL 'ftp://example.com/x': the scheme must be http or https
rb.yml:11:12: step 'b': param 'url': malformed URL 'not a url': not an absolute URL (expected http://host[:port]/path or https://...)
rb.yml:16:22: step 'c': param 'expect_status': bad entry "2xy": entries are statuses (200), classes ("2xx") or ranges ("200-299")
rb.yml:16:22: step 'c': param 'expect_status': bad entry 700: a status is from 100 to 599
rb.yml:16:22: step 'c': param 'expect_status': bad entry "299-200": a range goes from low to high ("200-299")
rb.yml:20:12: step 'd': param 'url': malformed URL 'http://:8080/nohost': No host part in the URL
rb.yml:21:16: step 'd': param 'outputs': 'v': bad JSON path 'build.version': a path starts with '.' (.status, .items[0].name)
rb.yml:21:16: step 'd': param 'outputs': 'w': bad JSON path '.items[x]': expected an index or a "name" after '[' at offset 7
rb.yml:21:16: step 'd': param 'outputs': output name 'status' is taken (status, body, body_truncated, duration_ms)
rb.yml:24:64: step 'e': unknown param 'bodyy' for 'http' (did you mean 'body'?)
zdm: 10 errors; nothing ran
EOF
}

# ---- a real nginx ---------------------------------------------------------------------

@test "http: against a real nginx: status, JSON output, and a 404" {
  start_nginx <<'EOF'
    location = /version { default_type application/json; return 200 '{"build":{"version":"2.0.1"}}'; }
    location = /health { return 200 "ok"; }
    location / { return 404 "404 Not Found"; }
EOF
  runbook <<EOF
zdm: 1
name: http-nginx
steps:
  - id: version
    uses: http
    with: {url: "$NGINX/version", outputs: {v: .build.version}, expect_body_contains: "2.0"}
  - id: echo
    uses: exec
    with: {command: [sh, -c, 'echo "\$1" >"$T/v"', x, "\${{ steps.version.outputs.v }}"]}
  - id: missing
    uses: http
    with: {url: "$NGINX/missing"}
EOF
  # 'version' and 'echo' have no undo: left in place, exit 6
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 6
  assert_equal "$(cat "$T/v")" "2.0.1"
  assert_line --regexp "^        GET $NGINX/missing: status 404, expected 2xx: .*404 Not Found"
}

# ---- zdm.http for Lua plugins ------------------------------------------------------------

@test "http: zdm.http gives plugins requests with JSON bodies, headers, errors as nil, msg" {
  control <<'EOF'
{"/echo": {"echo": true}, "/json": {"json": {"weight": 10}, "headers": {"X-Pool": "green"}}}
EOF
  start_httpd
  plugin_file "$T/plugins" t.call <<'EOF'
return {
  description = "calls zdm.http",
  params = { {name = "base", type = "string", required = true},
             {name = "dead", type = "string", required = true},
             {name = "tok", type = "string", required = true} },
  run = function(ctx, p)
    local r = assert(zdm.http{url = p.base .. "/json"})
    local weight = zdm.json.decode(r.body).weight
    local e = assert(zdm.http{method = "POST", url = p.base .. "/echo",
                              body = {weight = weight + 5, hosts = {"a", "b"}},
                              headers = {["X-N"] = 7}, bearer = p.tok, timeout = 2000})
    local sent = zdm.json.decode(e.body)
    local none, msg = zdm.http{url = p.dead}
    local ok, raised = pcall(zdm.http, {url = p.base, metod = "GET"})
    local ok2, raised2 = pcall(zdm.http, {url = "gopher://x"})
    return {outputs = {status = r.status, pool = r.headers["x-pool"], ms = r.duration_ms >= 0,
                       method = sent.method, ct = sent.headers["content-type"], n = sent.headers["x-n"],
                       body = sent.body, auth = sent.headers.authorization,
                       none = none == nil, msg = msg, raised = raised, raised2 = raised2}}
  end,
}
EOF
  local port; port="$(free_port)"
  runbook <<EOF
zdm: 1
name: http-lua
secrets: {tok: {env: ZDM_T_TOKEN}}
steps:
  - id: call
    uses: t.call
    with: {base: "$BASE", dead: "http://127.0.0.1:$port/", tok: "\${{ secrets.tok }}"}
EOF
  export ZDM_T_TOKEN=lua-S3cr3t-77
  run zdm run rb.yml --state-dir "$T/state" --plugin-path "$T/plugins"
  assert_equal "$status" 0
  run jq -S -c 'select(.event=="step.succeeded") | .data.outputs | .body |= fromjson | del(.msg)' "$(journal_of "$T/state")"
  assert_output '{"auth":"Bearer ***","body":{"hosts":["a","b"],"weight":15},"ct":"application/json","method":"POST","ms":true,"n":"7","none":true,"pool":"green","raised":"zdm.http: unknown option '"'metod'"' (did you mean '"'method'"'?)","raised2":"zdm.http: malformed URL '"'gopher://x'"': the scheme must be http or https","status":200}'
  run jq -r 'select(.event=="step.succeeded") | .data.outputs.msg' "$(journal_of "$T/state")"
  assert_output --regexp "^Failed to connect to 127.0.0.1 port $port after [0-9]+ ms: Couldn't connect to server \(Connection refused\)$"
  run jq -r 'select(.method=="POST") | .headers.authorization' "$T/requests.jsonl"
  assert_output "Bearer lua-S3cr3t-77"
}

@test "http: zdm.http is bounded by the step's timeout" {
  control <<'EOF'
{"/slow": {"delay": 5, "body": "late"}}
EOF
  start_httpd
  plugin_file "$T/plugins" t.slow <<'EOF'
return {
  description = "a slow request",
  params = { {name = "url", type = "string", required = true} },
  run = function(ctx, p)
    local r, msg = zdm.http{url = p.url, timeout = 60000}
    return {outputs = {msg = msg}}
  end,
}
EOF
  runbook <<EOF
zdm: 1
name: http-lua-slow
steps:
  - id: slow
    uses: t.slow
    timeout: 500ms
    with: {url: "$BASE/slow"}
EOF
  run zdm run rb.yml --state-dir "$T/state" --plugin-path "$T/plugins"
  assert_equal "$status" 1
  assert_line "        run() did not finish before the step's deadline"
}

@test "http: zdm.http talks HTTP over a unix socket (unix_socket)" {
  control <<'EOF'
{"/echo": {"echo": true}}
EOF
  start_httpd "unix:$T/api.sock"
  plugin_file "$T/plugins" t.sock <<'EOF'
return {
  description = "zdm.http over a unix socket",
  params = { {name = "sock", type = "string", required = true} },
  run = function(ctx, p)
    local r, msg = zdm.http{url = "http://localhost/echo", method = "DELETE", unix_socket = p.sock}
    if not r then return nil, msg end
    return {outputs = {status = r.status, method = zdm.json.decode(r.body).method}}
  end,
}
EOF
  runbook <<EOF
zdm: 1
name: http-unix
steps:
  - id: sock
    uses: t.sock
    with: {sock: "$T/api.sock"}
  - id: gone
    uses: t.sock
    with: {sock: "$T/none.sock"}
EOF
  # 'sock' sent a DELETE and its type has no undo: left in place, exit 6
  run zdm run rb.yml --state-dir "$T/state" --plugin-path "$T/plugins"
  assert_equal "$status" 6
  run jq -c 'select(.event=="step.succeeded") | .data.outputs' "$(journal_of "$T/state")"
  assert_output '{"method":"DELETE","status":200}'
  run jq -r 'select(.event=="step.failed") | .data.error' "$(journal_of "$T/state")"
  assert_output --regexp "^Failed to connect to localhost port 80 after [0-9]+ ms: Couldn't connect to server \(No such file or directory\)$"
}

@test "http: a literal token or password is refused (params are journaled; secrets are not)" {
  get_runbook http-literal 'url: "http://127.0.0.1:1/x", token: "abc123"'
  run --separate-stderr zdm validate rb.yml
  assert_equal "$status" 2
  assert_equal "$stderr" "$(printf '%s\n%s' "rb.yml:6:48: step 'get': param 'token': must come from secrets (token: \${{ secrets.NAME }}): zdm writes params to the journal and only secrets are kept out of it" "zdm: 1 error; nothing ran")"
}
