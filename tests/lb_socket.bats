#!/usr/bin/env bats
# zdm.socket (src/lua/socket.c): one request and its reply over a unix socket
# or TCP, against tests/data/lb/sockd.py on 127.0.0.1, through a test plugin.

bats_require_minimum_version 1.5.0
load helper

# the helper's teardown, after the peers are stopped
eval "helper_$(declare -f teardown)"

teardown() {
  stop_pids "$T"/sockd-*.pid
  helper_teardown
}

# peer NAME MODE unix|tcp: starts sockd.py; sets ADDR
peer() {
  local name="$1" mode="$2" kind="$3" where
  where="127.0.0.1"
  [ "$kind" = unix ] && where="$T/$name.sock"
  serve "sockd.py $mode" "$T/sockd-$name.pid" "$T/sockd-$name.out" "$T/$name.ready" \
    python3 "$REPO/tests/data/lb/sockd.py" "$mode" "$where" "$T/$name.ready" || return 1
  if [ "$kind" = unix ]; then ADDR="unix:$where"; else ADDR="127.0.0.1:$(cat "$T/$name.ready")"; fi
}

# a plugin t.sock: sends `text` to `address` with opts, logs the reply;
# in plan it tries the same (read_only as given)
plugin() {
  plugin_file "$T/plugins" t.sock <<'LUA'
return {
  description = "zdm.socket test",
  params = {
    {name = "address", type = "string", required = true},
    {name = "text", type = "string", default = "hello\n"},
    {name = "timeout", type = "int", default = 2000},
    {name = "cap", type = "int", default = 1048576},
    {name = "read_only", type = "bool", default = false},
    {name = "in_plan", type = "bool", default = false},
  },
  plan = function(p)
    if not p.in_plan then return "send" end
    local r, err = zdm.socket(p.address, p.text, {read_only = p.read_only, timeout = p.timeout})
    return "plan reply: " .. tostring(r) .. " / " .. tostring(err)
  end,
  run = function(ctx, p)
    local r, more = zdm.socket(p.address, p.text, {timeout = p.timeout, cap = p.cap})
    if r == nil then return nil, more end
    zdm.log(string.format("reply [%s] cut=%s", r, tostring(more)))
  end,
}
LUA
}

rb() {   # with-params (YAML flow map body) [secrets line]
  cat >"$T/rb.yml" <<YML
zdm: 1
name: sock
${2:-}
steps:
  - id: s
    uses: t.sock
    timeout: 5s
    with: {$1}
YML
}

zrun() { zdm run "$T/rb.yml" --state-dir "$T/state" --plugin-path "$T/plugins" "$@"; }

@test "zdm.socket: sends the text, half-closes, returns what the peer wrote until it closed (unix and TCP)" {
  plugin
  peer u echo unix
  rb "address: \"$ADDR\", text: \"show servers state app\\n\""
  run zrun
  assert_equal "$status" 0
  assert_output --partial "| s: reply [got: show servers state app"
  assert_output --partial "] cut=nil"
  peer t echo tcp
  rb "address: \"$ADDR\""
  run zrun
  assert_equal "$status" 0
  assert_output --partial "| s: reply [got: hello"
  # a bare absolute path is a unix socket too
  rb "address: \"$T/u.sock\""
  run zrun
  assert_equal "$status" 0
  assert_output --partial "| s: reply [got: hello"
}

@test "zdm.socket: a missing socket, a refused port and a silent peer are errors naming the address" {
  plugin
  rb "address: \"unix:$T/none.sock\""
  run zrun
  assert_equal "$status" 1
  assert_output --partial "connect unix:$T/none.sock: No such file or directory"
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  rb "address: \"127.0.0.1:$port\""
  run zrun
  assert_equal "$status" 1
  assert_output --partial "connect 127.0.0.1:$port: Connection refused"
  peer q silent tcp
  rb "address: \"$ADDR\", timeout: 300"
  run zrun
  assert_equal "$status" 1
  assert_output --partial "$ADDR: no complete reply within 300 ms (0 bytes so far)"
  rb "address: \"no-port-here\""
  run zrun
  assert_equal "$status" 1
  assert_output --partial "'no-port-here' is neither a unix socket (unix:/path or /path) nor HOST:PORT"
}

@test "zdm.socket: the step's deadline bounds the wait; the call is aborted as timed out" {
  plugin
  peer q silent unix
  cat >"$T/rb.yml" <<YML
zdm: 1
name: sock
steps:
  - id: s
    uses: t.sock
    timeout: 400ms
    with: {address: "$ADDR", timeout: 60000}
YML
  run zrun
  assert_equal "$status" 1
  assert_output --partial "did not finish before the step's deadline"
  run jq -r 'select(.event=="step.failed") | .data.timed_out' "$(journal_of "$T/state")"
  assert_output true
}

@test "zdm.socket: a reply past the cap is cut and says so; secrets in a reply read as ***" {
  plugin
  peer b big unix
  rb "address: \"$ADDR\", cap: 10"
  run zrun
  assert_equal "$status" 0
  assert_output --partial "| s: reply [xxxxxxxxxx] cut=true"
  rb "address: \"$ADDR\", cap: 100"
  run zrun
  assert_equal "$status" 0
  assert_output --partial "cut=nil"
  peer e echo unix
  SOCK_SECRET=hunter2-secret rb "address: \"$ADDR\", text: \"pw \${{ secrets.pw }}\"" "secrets: {pw: {env: SOCK_SECRET}}"
  SOCK_SECRET=hunter2-secret run zrun
  assert_equal "$status" 0
  assert_output --partial "| s: reply [got: pw ***]"
  refute grep -rq hunter2-secret "$T/state"
}

@test "zdm.socket: not allowed in plan unless read_only = true" {
  plugin
  peer e echo unix
  rb "address: \"$ADDR\", in_plan: true"
  run zdm plan "$T/rb.yml" --plugin-path "$T/plugins"
  assert_output --partial "zdm.socket without read_only = true is not allowed here: validate() and plan() must change nothing"
  rb "address: \"$ADDR\", in_plan: true, read_only: true"
  run zdm plan "$T/rb.yml" --plugin-path "$T/plugins"
  assert_equal "$status" 0
  assert_output --partial "plan reply: got: hello"
}
