#!/usr/bin/env bats
# An unknown `uses:` name gets its "did you mean" from the plugin files'
# names on the search path, without loading (running) any plugin: a typo
# must not run the top-level code of every plugin on the path.  The witness
# is a spy plugin whose top level, when it runs, sends a line over a unix
# socket to socat, which appends it to $T/ran; and prints a line to stderr.

bats_require_minimum_version 1.5.0
load helper

# the helper's teardown, after the socket listener is stopped
eval "helper_$(declare -f teardown)"

teardown() {
  if [ -f "$T/socat.pid" ]; then
    kill "$(cat "$T/socat.pid")" 2>/dev/null || true
    wait "$(cat "$T/socat.pid")" 2>/dev/null || true
  fi
  helper_teardown
}

# socat on $T/spy.sock: every connection's text is appended to $T/ran
listen() {
  local i
  socat -u UNIX-LISTEN:"$T/spy.sock",fork OPEN:"$T/ran",creat,append 3>&- &
  echo $! >"$T/socat.pid"
  for i in $(seq 200); do
    [ -S "$T/spy.sock" ] && break
    sleep 0.025
  done
  [ -S "$T/spy.sock" ] || { echo "socat did not start" >&2; return 1; }
}

# spy NAME: a plugin $T/pp/<a>/<b>.lua that reports at its top level
spy() {
  local file="$T/pp/${1%%.*}/${1#*.}.lua"
  mkdir -p "$(dirname "$file")"
  cat >"$file" <<EOF
zdm.socket("unix:$T/spy.sock", "$1 ran\n", {read_only = true, timeout = 5000})
print("spy: $1 ran")
return {
  description = "reports when its file runs",
  run = function(ctx, p) end,
}
EOF
}

# a runbook rb.yml with one step of type $1
runbook() {
  cat >"$T/rb.yml" <<EOF
zdm: 1
name: names
steps:
  - id: one
    uses: $1
EOF
}

setup_spies() {
  listen
  spy web.nginx
  spy web.haproxy
  spy deep.a.b
}

@test "plugin names: the spy works: zdm plugins loads every plugin, and a valid uses: loads its own" {
  setup_spies
  run --separate-stderr zdm plugins --plugin-path "$T/pp"
  assert_equal "$status" 0
  assert_line 'web.nginx'
  assert_line 'deep.a.b'
  run sort "$T/ran"
  assert_output "deep.a.b ran
web.haproxy ran
web.nginx ran"
  rm -f "$T/ran"
  runbook web.nginx
  run --separate-stderr zdm validate rb.yml --plugin-path "$T/pp"
  assert_equal "$status" 0
  [[ "$stderr" == *"spy: web.nginx ran"* ]]
  run cat "$T/ran"
  assert_output "web.nginx ran"
}

@test "plugin names: a typo in uses: suggests the plugin by its file name and runs no plugin (exit 2)" {
  setup_spies
  runbook web.ngnix
  run --separate-stderr zdm validate rb.yml --plugin-path "$T/pp"
  assert_equal "$status" 2
  [[ "$stderr" == *"rb.yml:5:"*"unknown step type 'web.ngnix' (did you mean 'web.nginx'?)"* ]]
  [[ "$stderr" != *"spy:"* ]]
  assert_not_exist "$T/ran"
  # a name nested deeper, and a plugin of the repository's own plugins
  runbook deep.a.c
  run --separate-stderr zdm validate rb.yml --plugin-path "$T/pp"
  assert_equal "$status" 2
  [[ "$stderr" == *"unknown step type 'deep.a.c' (did you mean 'deep.a.b'?)"* ]]
  runbook lb.ngnix
  run --separate-stderr zdm validate rb.yml --plugin-path "$T/pp"
  assert_equal "$status" 2
  [[ "$stderr" == *"unknown step type 'lb.ngnix' (did you mean 'lb.nginx'?)"* ]]
  # a built-in is still suggested
  runbook exce
  run --separate-stderr zdm validate rb.yml --plugin-path "$T/pp"
  assert_equal "$status" 2
  [[ "$stderr" == *"unknown step type 'exce' (did you mean 'exec'?)"* ]]
  [[ "$stderr" != *"spy:"* ]]
  assert_not_exist "$T/ran"
}

@test "plugin names: a plugin that does not load is still suggested, without a load warning; a library never is" {
  setup_spies
  mkdir -p "$T/pp/web"
  echo 'return {' >"$T/pp/web/broken.lua"
  echo 'return {}' >"$T/pp/web/_helper.lua"
  runbook web.brokn
  run --separate-stderr zdm validate rb.yml --plugin-path "$T/pp"
  assert_equal "$status" 2
  [[ "$stderr" == *"unknown step type 'web.brokn' (did you mean 'web.broken'?)"* ]]
  [[ "$stderr" != *"warning"* ]]
  runbook web.helper
  run --separate-stderr zdm validate rb.yml --plugin-path "$T/pp"
  assert_equal "$status" 2
  [[ "$stderr" == *"unknown step type 'web.helper' (see 'zdm plugins' for the list)"* ]]
  [[ "$stderr" != *"spy:"* ]]
  assert_not_exist "$T/ran"
}
