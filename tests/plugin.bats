#!/usr/bin/env bats
# Step types: the list, release.symlink on a real symlink, a user's Lua
# plugin end to end (params, validate, plan, run, undo from the recorded
# undo_data), and the sandbox (timeout, no io/os, load errors).

bats_require_minimum_version 1.5.0
load helper

# a site with releases v1 and v2, current -> releases/v1
make_site() {
  mkdir -p "$T/site/releases/v1" "$T/site/releases/v2"
  echo v1 >"$T/site/releases/v1/VERSION"
  echo v2 >"$T/site/releases/v2/VERSION"
  ln -s releases/v1 "$T/site/current"
  cat >"$T/rb.yml" <<EOF
zdm: 1
name: release
vars: {target: releases/v2}
steps:
  - id: switch
    uses: release.symlink
    with: {link: "$T/site/current", target: "\${{ vars.target }}"}
  - id: verify
    uses: exec
    with: {command: [cat, "$T/site/current/VERSION"]}
EOF
}

# a user plugin my.marker: writes a file, records what it replaced, undo
# puts it back and leaves a trace of what it was given
make_user_plugin() {
  plugin_file "$T/myplugins" my.marker <<'EOF'
return {
  description = "write a marker file, put the old content back on undo",
  params = {
    {name = "path", type = "string", required = true, doc = "the file"},
    {name = "text", type = "string", default = "hello", doc = "what to write"},
    {name = "count", type = "int", default = 1, doc = "how many lines"},
  },
  read_only = false,
  idempotent = false,
  validate = function(p)
    if not zdm.is_expr(p.path) and p.path:find("forbidden", 1, true) then
      return {param = "path", message = "that path is forbidden"}
    end
    if p.count < 1 then return "count must be at least 1" end
  end,
  plan = function(p)
    return string.format("write %d line(s) of '%s' to %s", p.count, p.text, p.path)
  end,
  run = function(ctx, p)
    local old = zdm.file.read(p.path)
    local ok, err = zdm.file.write_atomic(p.path, string.rep(p.text .. "\n", p.count))
    if not ok then return nil, err end
    return {outputs = {written = p.text, lines = p.count},
            undo_data = {path = p.path, old = old, by = ctx.step_id, attempt = ctx.attempt}}
  end,
  undo = function(ctx, p, u)
    zdm.file.write_atomic(p.path .. ".undo-trace",
      zdm.json.encode({undo_data = u, undoing = ctx.undoing == true, step = ctx.step_id}))
    if u == nil then return nil, "no undo_data" end
    if u.old then
      local ok, err = zdm.file.write_atomic(u.path, u.old)
      if not ok then return nil, err end
    else
      local ok, err = zdm.file.remove(u.path)
      if not ok then return nil, err end
    end
  end,
}
EOF
  cat >"$T/user.yml" <<EOF
zdm: 1
name: user-plugin
steps:
  - id: mark
    uses: my.marker
    with: {path: "$T/marker.txt", text: new, count: "2"}
  - id: check
    uses: exec
    with: {command: [echo, "\${{ steps.mark.outputs.written }}/\${{ steps.mark.outputs.lines }}"]}
EOF
}

# a one-step runbook using plugin NAME from $T/pp
bad_runbook() {   # file name timeout
  cat >"$T/$1" <<EOF
zdm: 1
name: sandbox
steps:
  - id: s
    uses: $2
    timeout: ${3:-5s}
EOF
}

# a plugin file under $T/pp from stdin
plugin() {   # dotted name
  plugin_file "$T/pp" "$1"
}

@test "plugins: lists the built-ins and the shipped plugins with their flags and params, sorted" {
  run --separate-stderr zdm plugins
  assert_equal "$status" 0
  assert_equal "$stderr" ""
  # sorted by name
  run bash -c "grep -E '^[a-z]' <<<\"\$1\"" _ "$output"
  assert_output - <<'EOF'
approval  [read-only]  [idempotent]
db.pgbouncer  [idempotent]  [undo]
db.postgres_backfill  [idempotent]  [undo]
db.postgres_compare  [read-only]  [idempotent]
db.postgres_sequences  [idempotent]  [undo]
db.postgres_sql  [undo]
db.postgres_sync  [idempotent]  [undo]
exec
flag.unleash  [idempotent]  [undo]
health_gate  [read-only]  [idempotent]
http
lb.haproxy  [idempotent]  [undo]
lb.kubernetes  [idempotent]  [undo]
lb.nginx  [idempotent]  [undo]
metric_gate  [read-only]  [idempotent]
release.symlink  [idempotent]  [undo]
ssh  [undo]
wait  [read-only]  [idempotent]
EOF
  run zdm plugins
  assert_line --regexp '^    command +list +optional +argv list'
  assert_line --regexp '^    expect_exit +list +\[0\] +exit codes that count as success$'
  assert_line --regexp '^    kill_grace +duration +"5s" +'
  assert_line --regexp '^    link +path +required +path of the `current` symlink$'
  assert_line --regexp '^    target +string +required +release directory to point it at$'
  assert_line --regexp '^    duration +duration +required +how long to wait'
  assert_line '  Point a `current` symlink at a release directory (atomic switch)'
}

@test "plugins: a user plugin from --plugin-path is listed with its params and defaults" {
  make_user_plugin
  run --separate-stderr zdm plugins --plugin-path "$T/myplugins"
  assert_equal "$status" 0
  assert_line 'my.marker  [undo]'
  assert_line '  write a marker file, put the old content back on undo'
  assert_line --regexp '^    path +string +required +the file$'
  assert_line --regexp '^    text +string +"hello" +what to write$'
  assert_line --regexp '^    count +int +1 +how many lines$'
  assert_line 'release.symlink  [idempotent]  [undo]'
}

@test "release.symlink: switches a real symlink; the journal's undo_data holds the previous target" {
  make_site
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_equal "$(readlink "$T/site/current")" releases/v2
  local j; j="$(journal_of "$T/state")"
  run jq -c 'select(.event=="step.succeeded" and .step=="switch") | .data | [.outputs, .undo_data]' "$j"
  assert_output "[{\"current\":\"releases/v2\",\"previous\":\"releases/v1\"},{\"link\":\"$T/site/current\",\"previous\":\"releases/v1\"}]"
  run jq -r 'select(.event=="step.succeeded" and .step=="verify") | .data.outputs.stdout' "$j"
  assert_output v2
  # and a later zdm rollback, in a new process, puts it back from the journal;
  # 'verify' (exec, no undo) is left in place: exit 6
  run zdm rollback rb.yml --state-dir "$T/state"
  assert_equal "$status" 6
  assert_line "rolled back; 1 step that changed things has no undo: verify (left in place, not back where it started: put it back by hand or accept it)"
  assert_equal "$(readlink "$T/site/current")" releases/v1
}

@test "release.symlink: --fail-at after the switch restores the link, exit 1" {
  make_site
  run zdm run rb.yml --fail-at switch --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line --regexp '^\[1/2\] undone +switch'
  assert_equal "$(readlink "$T/site/current")" releases/v1
  [ -L "$T/site/current" ]
  run events "$(journal_of "$T/state")"
  assert_output - <<'EOF'
run.started
step.started switch
step.succeeded switch
drill.failure switch
rollback.started switch
undo.started switch
undo.succeeded switch
run.finished
EOF
}

@test "release.symlink: a missing target directory fails the step with the message; the link is untouched" {
  make_site
  run zdm run rb.yml --var target=releases/v9 --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line "        release directory 'releases/v9' does not exist"
  assert_equal "$(readlink "$T/site/current")" releases/v1
  run jq -r 'select(.event=="step.failed") | .data.error' "$(journal_of "$T/state")"
  assert_output "release directory 'releases/v9' does not exist"
  # a target that is a file, not a directory
  run zdm run rb.yml --var target=releases/v1/VERSION --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line "        release directory 'releases/v1/VERSION' is not a directory"
  assert_equal "$(readlink "$T/site/current")" releases/v1
}

@test "release.symlink: a regular file at the link path is refused and left as it was" {
  make_site
  rm "$T/site/current"
  echo 'precious' >"$T/site/current"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line "        '$T/site/current' exists and is not a symlink; refusing to replace it"
  [ ! -L "$T/site/current" ]
  assert_equal "$(cat "$T/site/current")" precious
  # a directory there is refused too
  rm "$T/site/current"
  mkdir "$T/site/current"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  [ -d "$T/site/current" ] && [ ! -L "$T/site/current" ]
}

@test "release.symlink: with no link before, run creates it and the rollback removes it" {
  make_site
  rm "$T/site/current"
  # 'verify' (exec, no undo) ran: left in place, exit 6
  run zdm run rb.yml --fail-at verify --state-dir "$T/state"
  assert_equal "$status" 6
  assert_not_exist "$T/site/current"
  run jq -c 'select(.event=="step.succeeded" and .step=="switch") | .data.undo_data' "$(journal_of "$T/state")"
  assert_output "{\"link\":\"$T/site/current\"}"
}

@test "release.symlink: zdm plan shows the switch and reads the link without changing it" {
  make_site
  run zdm plan rb.yml
  assert_equal "$status" 0
  assert_line "      do:   point $T/site/current at releases/v2 (now: releases/v1)"
  assert_line '      undo: release.symlink restores what it recorded'
  assert_equal "$(readlink "$T/site/current")" releases/v1
}

@test "user plugin: validate, plan, run and undo from the recorded undo_data, end to end" {
  make_user_plugin
  echo old >"$T/marker.txt"

  run --separate-stderr zdm validate user.yml --plugin-path "$T/myplugins"
  assert_equal "$status" 0
  assert_output "user.yml: ok (runbook 'user-plugin', 2 steps)"
  assert_equal "$stderr" "user.yml:7:5: warning: step 'check' changes things and has no undo: a rollback leaves its change in place (add undo:, or accept that)"

  run zdm plan user.yml --plugin-path "$T/myplugins"
  assert_equal "$status" 0
  assert_line "      do:   write 2 line(s) of 'new' to $T/marker.txt"
  assert_line '      undo: my.marker restores what it recorded'
  assert_equal "$(cat "$T/marker.txt")" old

  # 'check' (exec, no undo) ran before the forced failure: left in place, exit 6
  run zdm run user.yml --plugin-path "$T/myplugins" --fail-at check --state-dir "$T/state"
  assert_equal "$status" 6
  local j; j="$(journal_of "$T/state")"
  # run() did write, its outputs reached the next step (count "2" became an int)
  run jq -r 'select(.event=="step.succeeded" and .step=="check") | .data.outputs.stdout' "$j"
  assert_output new/2
  run jq -c 'select(.event=="step.started" and .step=="mark") | .data.params' "$j"
  assert_output "{\"count\":2,\"path\":\"$T/marker.txt\",\"text\":\"new\"}"
  # undo() got exactly the undo_data that run() recorded, and put the file back
  local recorded; recorded="$(jq -c 'select(.event=="step.succeeded" and .step=="mark") | .data.undo_data' "$j")"
  assert_equal "$recorded" "{\"attempt\":1,\"by\":\"mark\",\"old\":\"old\\n\",\"path\":\"$T/marker.txt\"}"
  assert_equal "$(jq -c .undo_data "$T/marker.txt.undo-trace")" "$recorded"
  assert_equal "$(jq -c '[.undoing, .step]' "$T/marker.txt.undo-trace")" '[true,"mark"]'
  assert_equal "$(cat "$T/marker.txt")" old
  run jq -r 'select(.event | startswith("undo.")) | .event + " " + .step' "$j"
  assert_output $'undo.skipped check\nundo.started mark\nundo.succeeded mark'
}

@test "user plugin: zdm rollback in a new process calls undo with the undo_data from the journal" {
  make_user_plugin
  run zdm run user.yml --plugin-path "$T/myplugins" --state-dir "$T/state"
  assert_equal "$status" 0
  assert_equal "$(cat "$T/marker.txt")" $'new\nnew'
  # 'check' (exec, no undo) is left in place: exit 6
  run zdm rollback user.yml --plugin-path "$T/myplugins" --state-dir "$T/state"
  assert_equal "$status" 6
  # there was no file before: undo_data has no "old", and undo removed it
  assert_not_exist "$T/marker.txt"
  assert_equal "$(jq -c .undo_data "$T/marker.txt.undo-trace")" "{\"attempt\":1,\"by\":\"mark\",\"path\":\"$T/marker.txt\"}"
}

@test "user plugin: its validate() and param schema are checked before anything runs (exit 2)" {
  make_user_plugin
  cat >"$T/bad.yml" <<EOF
zdm: 1
name: bad-params
steps:
  - id: first
    uses: exec
    with: {command: [touch, "$T/ran"]}
  - id: mark
    uses: my.marker
    with: {path: "$T/forbidden.txt", count: many, colour: red}
EOF
  run --separate-stderr zdm run bad.yml --plugin-path "$T/myplugins" --state-dir "$T/state"
  assert_equal "$status" 2
  [[ "$stderr" == *"bad.yml:9:"*"step 'mark': param 'count'"* ]]
  [[ "$stderr" == *"bad.yml:9:"*"'colour'"* ]]
  assert_not_exist "$T/ran"
  assert_not_exist "$T/state"
  # with the schema right, validate() speaks
  sed -i 's/, count: many, colour: red//' "$T/bad.yml"
  run --separate-stderr zdm validate bad.yml --plugin-path "$T/myplugins"
  assert_equal "$status" 2
  [[ "$stderr" == "bad.yml:9:"*": step 'mark': param 'path': that path is forbidden"* ]]
}

@test "user plugin: --plugin-path comes before ZDM_PLUGIN_PATH (first found wins)" {
  plugin_file "$T/override" release.symlink <<'EOF'
return {
  description = "the user's own release.symlink",
  params = {{name = "link", type = "string", required = true}, {name = "target", type = "string", required = true}},
  run = function(ctx, p) return {outputs = {mine = true}} end,
}
EOF
  run zdm plugins --plugin-path "$T/override"
  assert_line "  the user's own release.symlink"
  make_site
  run zdm run rb.yml --plugin-path "$T/override" --state-dir "$T/state"
  assert_equal "$status" 0
  assert_equal "$(readlink "$T/site/current")" releases/v1
}

@test "sandbox: a plugin that loops forever is stopped by the step timeout (1s)" {
  plugin loop.forever <<'EOF'
return {
  description = "never returns",
  run = function(ctx, p)
    local n = 0
    while true do n = n + 1 end
  end,
}
EOF
  bad_runbook rb.yml loop.forever 1s
  run zdm run rb.yml --plugin-path "$T/pp" --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line --regexp '^\[1/1\] failed +s +[0-9.]+m?s$'
  run jq -c 'select(.event=="step.failed") | [.data.error, .data.timed_out]' "$(journal_of "$T/state")"
  assert_output "[\"run() did not finish before the step's deadline\",true]"
}

@test "sandbox: a pcall cannot swallow the timeout" {
  plugin loop.pcall <<'EOF'
return {
  description = "tries to catch the deadline",
  run = function(ctx, p)
    while true do pcall(function() while true do end end) end
  end,
}
EOF
  bad_runbook rb.yml loop.pcall 500ms
  run zdm run rb.yml --plugin-path "$T/pp" --state-dir "$T/state"
  assert_equal "$status" 1
  run jq -r 'select(.event=="step.failed") | .data.timed_out' "$(journal_of "$T/state")"
  assert_output true
}

@test "sandbox: a plugin's zdm.exec child is stopped with the step at its timeout" {
  cp "$(command -v sleep)" "$T/plugin-sleeper"
  plugin slow.exec <<EOF
return {
  description = "runs a long command",
  run = function(ctx, p)
    local r, err = zdm.exec({"$T/plugin-sleeper", "30"})
    if not r then return nil, err end
  end,
}
EOF
  bad_runbook rb.yml slow.exec 500ms
  run zdm run rb.yml --plugin-path "$T/pp" --state-dir "$T/state"
  assert_equal "$status" 1
  run pgrep -f "$T/plugin-sleeper"
  assert_equal "$status" 1
  run jq -r 'select(.event=="step.failed") | .data.timed_out' "$(journal_of "$T/state")"
  assert_output true
}

@test "sandbox: io.open and os.execute are not there: the step fails with a clear error and does nothing" {
  plugin bad.io <<EOF
return {
  description = "reads a file behind zdm's back",
  run = function(ctx, p)
    local f = io.open("$T/stolen", "w")
    f:write("x")
  end,
}
EOF
  plugin bad.os <<EOF
return {
  description = "runs a shell behind zdm's back",
  run = function(ctx, p)
    os.execute("touch $T/pwned")
  end,
}
EOF
  bad_runbook io.yml bad.io
  run zdm run io.yml --plugin-path "$T/pp" --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line "        $T/pp/bad/io.lua:4: attempt to index a nil value (global 'io')"
  assert_not_exist "$T/stolen"

  bad_runbook os.yml bad.os
  run zdm run os.yml --plugin-path "$T/pp" --state-dir "$T/state"
  assert_equal "$status" 1
  assert_line "        $T/pp/bad/os.lua:4: attempt to index a nil value (global 'os')"
  assert_not_exist "$T/pwned"
  run jq -r 'select(.event=="step.failed") | .data.error' "$(journal_of "$T/state")"
  assert_output "$T/pp/bad/os.lua:4: attempt to index a nil value (global 'os')"
}

@test "sandbox: require, dofile, loadfile are gone and load refuses bytecode" {
  plugin probe.sandbox <<'EOF'
return {
  description = "looks around",
  run = function(ctx, p)
    local f, err = load(string.dump(function() return 1 end), "=chunk", "b")
    return {outputs = {
      require = type(require), dofile = type(dofile), loadfile = type(loadfile),
      io = type(io), os = type(os), debug = type(debug), package = type(package),
      bytecode = f == nil and tostring(err) or "loaded",
      text = load("return 40 + 2", "=chunk")(),
    }}
  end,
}
EOF
  bad_runbook rb.yml probe.sandbox
  run zdm run rb.yml --plugin-path "$T/pp" --state-dir "$T/state"
  assert_equal "$status" 0
  run jq -c 'select(.event=="step.succeeded") | .data.outputs | [.require, .dofile, .loadfile, .io, .os, .debug, .package, .text]' \
    "$(journal_of "$T/state")"
  assert_output '["nil","nil","nil","nil","nil","nil","nil",42]'
  run jq -r 'select(.event=="step.succeeded") | .data.outputs.bytecode' "$(journal_of "$T/state")"
  refute_output loaded
  assert_output --partial 'binary'
}

@test "plugin load errors: a syntax error makes zdm validate exit 2 naming the plugin file and line" {
  plugin bad.syntax <<'EOF'
return {
  description = "does not parse",
  run = function(ctx, p)
    if then
  end,
}
EOF
  bad_runbook rb.yml bad.syntax
  run --separate-stderr zdm validate rb.yml --plugin-path "$T/pp"
  assert_equal "$status" 2
  assert_equal "$stderr" "rb.yml:5:11: $T/pp/bad/syntax.lua:4: unexpected symbol near 'then'
zdm: 1 error; nothing ran"
  run zdm run rb.yml --plugin-path "$T/pp" --state-dir "$T/state"
  assert_equal "$status" 2
  assert_not_exist "$T/state"
  # zdm plugins lists the rest and warns about it
  run --separate-stderr zdm plugins --plugin-path "$T/pp"
  assert_equal "$status" 0
  assert_equal "$stderr" "zdm: warning: $T/pp/bad/syntax.lua:4: unexpected symbol near 'then'"
  assert_line 'release.symlink  [idempotent]  [undo]'
}

@test "plugin load errors: no run(), or not a table, is reported at the uses: line (exit 2)" {
  plugin bad.norun <<'EOF'
return {description = "forgot run"}
EOF
  plugin bad.notable <<'EOF'
return 42
EOF
  bad_runbook norun.yml bad.norun
  run --separate-stderr zdm validate norun.yml --plugin-path "$T/pp"
  assert_equal "$status" 2
  [[ "$stderr" == "norun.yml:5:11: $T/pp/bad/norun.lua"*"run"* ]]
  bad_runbook notable.yml bad.notable
  run --separate-stderr zdm validate notable.yml --plugin-path "$T/pp"
  assert_equal "$status" 2
  [[ "$stderr" == "notable.yml:5:11: $T/pp/bad/notable.lua"*"table"* ]]
  # an unknown type is named with a did-you-mean
  bad_runbook typo.yml release.symlnk
  run --separate-stderr zdm validate typo.yml
  assert_equal "$status" 2
  [[ "$stderr" == "typo.yml:5:11: "*"release.symlnk"*"release.symlink"* ]]
}

@test "sandbox: a plugin that eats memory fails with 'not enough memory' at the cap" {
  plugin mem.hog <<'EOF'
return {
  description = "allocates without end",
  run = function(ctx, p)
    local t = {}
    for i = 1, 1e9 do t[i] = string.rep("x", 100) .. i end
  end,
}
EOF
  bad_runbook rb.yml mem.hog 10s
  ZDM_PLUGIN_MEMORY_MB=8 run zdm run rb.yml --plugin-path "$T/pp" --state-dir "$T/state"
  assert_equal "$status" 1
  run jq -r 'select(.event=="step.failed") | .data.error' "$(journal_of "$T/state")"
  assert_output 'not enough memory'
  ZDM_PLUGIN_MEMORY_MB=lots run zdm validate rb.yml --plugin-path "$T/pp"
  assert_equal "$status" 2
  assert_output --partial "ZDM_PLUGIN_MEMORY_MB: invalid value 'lots'"
}

@test "release.symlink: a failed switch is put back from its snapshot, and a link already in place is left alone" {
  # a failed step whose type recorded a snapshot is undone to that state
  # (it may have half-acted); release.symlink's undo does nothing when the
  # link already points at the recorded target
  make_site
  local inode; inode="$(stat -c %i "$T/site/current")"
  run zdm run rb.yml --var target=releases/v9 --state-dir "$T/state"
  assert_equal "$status" 1
  # the link is the very same file, not a re-made copy
  assert_equal "$(stat -c %i "$T/site/current")" "$inode"
  run jq -r 'select(.event | startswith("undo.")) | .event + " " + .step' "$(journal_of "$T/state")"
  assert_line 'undo.succeeded switch'
}

@test "release.symlink: a crash between the switch and step.succeeded; resume, then rollback restores the old link" {
  make_site
  # record 3 is step.succeeded of 'switch': torn, then SIGKILL; the link was switched
  run env ZDM_TEST_TEAR_RECORD=3 "$ZDM_BIN" run rb.yml --state-dir "$T/state"
  assert_equal "$status" 137
  assert_equal "$(readlink "$T/site/current")" releases/v2
  # idempotent: resume runs it again, and records the link from before the first try
  run zdm resume rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  run jq -c 'select(.event=="step.succeeded" and .step=="switch") | .data.undo_data.previous' "$(journal_of "$T/state")"
  assert_output '"releases/v1"'
  # 'verify' (exec, no undo) is left in place: exit 6
  run zdm rollback rb.yml --state-dir "$T/state"
  assert_equal "$status" 6
  assert_equal "$(readlink "$T/site/current")" releases/v1
}

@test "release.symlink: a crash between the switch and step.succeeded; zdm rollback puts the old link back" {
  make_site
  run env ZDM_TEST_TEAR_RECORD=3 "$ZDM_BIN" run rb.yml --state-dir "$T/state"
  assert_equal "$status" 137
  assert_equal "$(readlink "$T/site/current")" releases/v2
  run zdm rollback rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_equal "$(readlink "$T/site/current")" releases/v1
  # and with --in-doubt retry the link is restored too, never removed
  make_site_again() { rm -rf "$T/site" "$T/state"; make_site; }
  make_site_again
  run env ZDM_TEST_TEAR_RECORD=3 "$ZDM_BIN" run rb.yml --state-dir "$T/state"
  assert_equal "$status" 137
  run zdm rollback rb.yml --in-doubt retry --state-dir "$T/state"
  assert_equal "$status" 0
  assert_equal "$(readlink "$T/site/current")" releases/v1
}

# my.parts: appends each of `parts` to a file, noting each part done with
# zdm.note; a rerun skips the parts its earlier attempts noted (ctx.notes)
make_parts_plugin() {
  plugin_file "$T/myplugins" my.parts <<'LUA'
return {
  description = "append parts to a file, resumable part by part",
  params = {
    {name = "path", type = "string", required = true},
    {name = "parts", type = "list", required = true},
  },
  idempotent = true,
  run = function(ctx, p)
    local done = {}
    for _, n in ipairs(ctx.notes or {}) do
      if n.event == "parts.done" then done[n.data.part] = true end
    end
    for _, part in ipairs(p.parts) do
      if not done[part] then
        local old = zdm.file.read(p.path) or ""
        zdm.file.write_atomic(p.path, old .. part .. "\n")
        zdm.note("parts.done", {part = part})
      end
    end
    return {outputs = {skipped = #(ctx.notes or {})}}
  end,
}
LUA
  cat >"$T/rb.yml" <<EOF
zdm: 1
name: parts
steps:
  - id: write
    uses: my.parts
    with: {path: "$T/out", parts: [a, b, c]}
EOF
}

@test "zdm.note: parts noted before a crash come back in ctx.notes; resume does only the rest" {
  make_parts_plugin
  # records: 1 run.started, 2 step.started, 3 parts.done a, 4 parts.done b: crash after b
  run env ZDM_TEST_CRASH_AFTER_RECORD=4 "$ZDM_BIN" run rb.yml --plugin-path "$T/myplugins" --state-dir "$T/state"
  assert_equal "$status" 137
  assert_equal "$(cat "$T/out")" "$(printf 'a\nb')"
  run zdm resume rb.yml --plugin-path "$T/myplugins" --state-dir "$T/state"
  assert_equal "$status" 0
  assert_equal "$(cat "$T/out")" "$(printf 'a\nb\nc')"
  run jq -r 'select(.event=="parts.done") | "\(.attempt) \(.data.part)"' "$(journal_of "$T/state")"
  assert_output "$(printf '1 a\n1 b\n2 c')"
  run jq -r 'select(.event=="step.succeeded") | .data.outputs.skipped' "$(journal_of "$T/state")"
  assert_output 2
}

@test "zdm.note: refused in plan() and for zdm's own event names" {
  plugin_file "$T/p" my.bad <<'LUA'
return {
  description = "notes",
  params = {{name = "ev", type = "string", required = true}},
  plan = function(p) zdm.note("x.y", {}) return "never" end,
  run = function(ctx, p) zdm.note(p.ev, {}) return {} end,
}
LUA
  printf 'zdm: 1\nname: n\nsteps:\n  - id: s\n    uses: my.bad\n    with: {ev: step.succeeded}\n' >"$T/rb.yml"
  run zdm plan rb.yml --plugin-path "$T/p" --state-dir "$T/state"
  assert_output --partial "zdm.note is not allowed here"
  run zdm run rb.yml --plugin-path "$T/p" --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "zdm.note: event 'step.succeeded' must be 'area.what'"
}

@test "db.* and lb.kubernetes: a credential that is not from secrets is refused before anything runs (exit 2)" {
  cat >"$T/rb.yml" <<'EOF'
zdm: 1
name: pw
vars: {pw: hunter2}
secrets:
  dbpw: {env: DBPW}
steps:
  - id: lit
    uses: db.postgres_sql
    with: {conninfo: "host=127.0.0.1 port=1 dbname=x", password: hunter2, sql: "select 1"}
  - id: var
    uses: db.postgres_backfill
    with: {conninfo: "host=127.0.0.1 port=1 dbname=x", password: "${{ vars.pw }}", table: t, key: id, set: "a = 1"}
  - id: sync
    uses: db.postgres_sync
    with: {source: "host=127.0.0.1 port=1 dbname=x", target: "host=127.0.0.1 port=2 dbname=x", tables: [t], target_password: hunter2}
  - id: seq
    uses: db.postgres_sequences
    with: {source: "host=127.0.0.1 port=1 dbname=x", target: "host=127.0.0.1 port=2 dbname=x", source_password: "${{ secrets.dbpw }}", target_password: hunter2}
  - id: svc
    uses: lb.kubernetes
    with: {service: app, namespace: default, selector: {color: green}, token: hunter2}
  - id: fine
    uses: db.postgres_sql
    with: {conninfo: "host=127.0.0.1 port=1 dbname=x", password: "${{ secrets.dbpw }}", sql: "select 1"}
EOF
  run env DBPW=s3cret "$ZDM_BIN" validate "$T/rb.yml"
  assert_equal "$status" 2
  assert_line --partial "rb.yml:9:66: step 'lit': param 'password': must come from secrets (password: \${{ secrets.NAME }})"
  assert_line --partial "rb.yml:12:66: step 'var': param 'password': must come from secrets"
  assert_line --partial "step 'sync': param 'target_password': must come from secrets (target_password:"
  assert_line --partial "step 'seq': param 'target_password': must come from secrets"
  assert_line --partial "step 'svc': param 'token': must come from secrets"
  refute_output --partial "step 'fine'"
  refute_output --partial "step 'seq': param 'source_password'"
  assert_line "zdm: 5 errors; nothing ran"
}

@test "db.postgres_sql: a statement_timeout past PostgreSQL's limit (INT_MAX ms) is a validation error, not a run-time failure" {
  printf 'zdm: 1\nname: st\nsteps:\n  - id: ddl\n    uses: db.postgres_sql\n    with: {conninfo: "host=127.0.0.1 port=1 dbname=x", sql: "select 1", statement_timeout: 720h}\n' >"$T/rb.yml"
  run zdm validate "$T/rb.yml"
  assert_equal "$status" 2
  assert_line --partial "step 'ddl': param 'statement_timeout': must be from 0 to"
  sed -i 's/720h/24h/' "$T/rb.yml"
  run zdm validate "$T/rb.yml"
  assert_equal "$status" 0
}

# a library my._util under $T/pp (zdm.lib("my._util")) and a plugin my.uses
# that loads it twice and reports what it saw
make_lib_plugin() {
  plugin my._util <<'EOF'
LOADS = (LOADS or 0) + 1	-- a global of the plugin's own state
local M = {from = "pp"}
function M.greet(x) return "hello " .. x end
M.io, M.os, M.require = type(io), type(os), type(require)
return M
EOF
  plugin my.uses <<'EOF'
local u = zdm.lib("my._util")
local again = zdm.lib("my._util")
return {
  description = "uses my._util: " .. u.greet("world"),
  run = function(ctx, p)
    return {outputs = {same = u == again, loads = LOADS, from = u.from, greet = u.greet("run"),
      io = u.io, os = u.os, require = u.require}}
  end,
}
EOF
}

# a plugin lib.user that loads lib._helper (the test writes it), in rb.yml
lib_user_plugin() {
  plugin lib.user <<'EOF'
local l = zdm.lib("lib._helper")
return {description = "needs lib._helper", run = function() end}
EOF
  bad_runbook rb.yml lib.user
}

@test "zdm.lib: a user library on --plugin-path is run once in the plugin's sandbox and the same table comes back" {
  make_lib_plugin
  # a second directory later on the path: the first one found wins, as for plugins
  mkdir -p "$T/pp2/my"
  echo 'return {from = "pp2", greet = function(x) return "bye " .. x end}' >"$T/pp2/my/_util.lua"
  bad_runbook rb.yml my.uses
  run zdm run rb.yml --plugin-path "$T/pp:$T/pp2" --state-dir "$T/state"
  assert_equal "$status" 0
  run jq -c 'select(.event=="step.succeeded") | .data.outputs | [.same, .loads, .from, .greet, .io, .os, .require]' \
    "$(journal_of "$T/state")"
  assert_output '[true,1,"pp","hello run","nil","nil","nil"]'
  # a library found only in a later directory is found there
  rm "$T/pp/my/_util.lua"
  run zdm run rb.yml --plugin-path "$T/pp:$T/pp2" --state-dir "$T/state2"
  assert_equal "$status" 0
  assert_equal "$(jq -r 'select(.event=="step.succeeded") | .data.outputs.greet' "$(journal_of "$T/state2")")" "bye run"
}

@test "zdm.lib: a library is not a step type: zdm plugins does not list it and uses: refuses it (exit 2)" {
  make_lib_plugin
  run --separate-stderr zdm plugins --plugin-path "$T/pp"
  assert_equal "$status" 0
  assert_equal "$stderr" ""
  assert_line --regexp '^my\.uses'
  assert_line --partial 'uses my._util: hello world'
  refute_output --partial 'my._util  '
  refute_line --regexp '^my\._util'
  bad_runbook rb.yml my._util
  run --separate-stderr zdm validate rb.yml --plugin-path "$T/pp"
  assert_equal "$status" 2
  assert_equal "$stderr" "rb.yml:5:11: 'my._util' is a plugin library (loaded by plugins with zdm.lib), not a step type
zdm: 1 error; nothing ran"
  # the shipped PostgreSQL library is not listed either, its plugins are
  run zdm plugins
  assert_line --regexp '^db\.postgres_sql'
  refute_output --partial 'db._pg'
}

@test "zdm.lib: a missing library, a syntax error or an error in it fails validate (exit 2) naming the library file and line" {
  lib_user_plugin
  run --separate-stderr zdm validate rb.yml --plugin-path "$T/pp"
  assert_equal "$status" 2
  [[ "$stderr" == "rb.yml:5:11: $T/pp/lib/user.lua:1: zdm.lib('lib._helper'): library not found: no lib/_helper.lua on the plugin path ($T/pp:"* ]]

  printf 'local M = {}\nfunction M.f(\n  if then\nend\nreturn M\n' >"$T/pp/lib/_helper.lua"
  run --separate-stderr zdm validate rb.yml --plugin-path "$T/pp"
  assert_equal "$status" 2
  assert_equal "$stderr" "rb.yml:5:11: $T/pp/lib/user.lua:1: zdm.lib('lib._helper'): $T/pp/lib/_helper.lua:3: <name> or '...' expected near 'if'
zdm: 1 error; nothing ran"
  # a run does not start either
  run zdm run rb.yml --plugin-path "$T/pp" --state-dir "$T/state"
  assert_equal "$status" 2
  assert_not_exist "$T/state"

  printf 'local M = {}\nerror("helper is broken")\nreturn M\n' >"$T/pp/lib/_helper.lua"
  run --separate-stderr zdm validate rb.yml --plugin-path "$T/pp"
  assert_equal "$status" 2
  assert_equal "$stderr" "rb.yml:5:11: $T/pp/lib/user.lua:1: zdm.lib('lib._helper'): $T/pp/lib/_helper.lua:2: helper is broken
zdm: 1 error; nothing ran"

  # not a library name
  plugin lib.user <<'EOF'
local l = zdm.lib("lib.other")
return {description = "x", run = function() end}
EOF
  run --separate-stderr zdm validate rb.yml --plugin-path "$T/pp"
  assert_equal "$status" 2
  [[ "$stderr" == "rb.yml:5:11: $T/pp/lib/user.lua:1: zdm.lib('lib.other'): not a library name"* ]]
}

@test "zdm.lib: refused after load time (in run), the step fails with a clear error" {
  make_lib_plugin
  plugin my.late <<'EOF'
return {
  description = "loads a library too late",
  run = function(ctx, p)
    local u = zdm.lib("my._util")
    return {outputs = {greet = u.greet("x")}}
  end,
}
EOF
  bad_runbook rb.yml my.late
  run zdm validate rb.yml --plugin-path "$T/pp"
  assert_equal "$status" 0
  run zdm run rb.yml --plugin-path "$T/pp" --state-dir "$T/state"
  assert_equal "$status" 1
  run jq -r 'select(.event=="step.failed") | .data.error' "$(journal_of "$T/state")"
  assert_output "$T/pp/my/late.lua:4: zdm.lib('my._util'): only while the plugin loads (at the top level of its file, e.g. \`local pg = zdm.lib(\"db._pg\")\`), not in validate(), plan(), run() or undo()"
}

@test "zdm.lib: the library runs under the plugin's sandbox: no io or os, the memory cap, bytecode refused" {
  lib_user_plugin
  printf 'local M = {}\nM.f = io.open("%s/stolen", "w")\nreturn M\n' "$T" >"$T/pp/lib/_helper.lua"
  run --separate-stderr zdm validate rb.yml --plugin-path "$T/pp"
  assert_equal "$status" 2
  assert_equal "$stderr" "rb.yml:5:11: $T/pp/lib/user.lua:1: zdm.lib('lib._helper'): $T/pp/lib/_helper.lua:2: attempt to index a nil value (global 'io')
zdm: 1 error; nothing ran"
  assert_not_exist "$T/stolen"
  printf 'os.execute("touch %s/pwned")\n' "$T" >"$T/pp/lib/_helper.lua"
  run --separate-stderr zdm validate rb.yml --plugin-path "$T/pp"
  assert_equal "$status" 2
  [[ "$stderr" == *"_helper.lua:1: attempt to index a nil value (global 'os')"* ]]
  assert_not_exist "$T/pwned"
  # the plugin's memory cap counts the library's allocations
  printf 'local t = {}\nfor i = 1, 1e9 do t[i] = string.rep("x", 100) .. i end\n' >"$T/pp/lib/_helper.lua"
  ZDM_PLUGIN_MEMORY_MB=8 run --separate-stderr zdm validate rb.yml --plugin-path "$T/pp"
  assert_equal "$status" 2
  [[ "$stderr" == *"zdm.lib('lib._helper'): not enough memory"* ]]
  # text only: a precompiled chunk is refused
  luac_out="$T/pp/lib/_helper.lua"
  printf '\033Lua' >"$luac_out"
  run --separate-stderr zdm validate rb.yml --plugin-path "$T/pp"
  assert_equal "$status" 2
  [[ "$stderr" == *"attempt to load a binary chunk"* ]]
}

@test "zdm.signal: signals the pid in a pid file with kill(2); refuses pid <= 1, junk, a dead pid and other signals" {
  # a process that notes the USR1 it gets
  bash -c 'trap "echo got >\"$1\"" USR1; for i in $(seq 200); do [ -e "$1" ] && exit 0; sleep 0.05; done' _ "$T/got" &
  local victim=$! gone
  echo "$victim" >"$T/ok.pid"
  printf ' 0\n' >"$T/zero.pid"
  echo 1 >"$T/one.pid"
  echo "12x" >"$T/junk.pid"
  (exit 0) &
  gone=$!
  wait "$gone"
  echo "$gone" >"$T/gone.pid"
  plugin sig.send <<LUA
return {
  description = "signals",
  run = function(ctx, p)
    local out = {}
    for _, f in ipairs({"zero", "one", "junk", "gone", "missing"}) do
      local pid, err = zdm.signal("$T/" .. f .. ".pid", "HUP")
      out[f] = tostring(pid) .. ": " .. tostring(err)
    end
    out.bad = tostring(select(2, pcall(zdm.signal, "$T/ok.pid", "KILL")))
    out.ok = zdm.signal("$T/ok.pid", "USR1")
    return {outputs = out}
  end,
}
LUA
  bad_runbook rb.yml sig.send
  run zdm run rb.yml --plugin-path "$T/pp" --state-dir "$T/state"
  assert_equal "$status" 0
  wait "$victim"
  [ "$(cat "$T/got")" = got ]
  run jq -r 'select(.event=="step.succeeded") | .data.outputs | "\(.ok)|\(.zero)|\(.one)|\(.junk)|\(.gone)|\(.missing)|\(.bad)"' \
    "$(journal_of "$T/state")"
  assert_output "$victim|nil: $T/zero.pid: pid 0 is not one zdm signals|nil: $T/one.pid: pid 1 is not one zdm signals|nil: $T/junk.pid does not hold a pid|nil: kill -HUP $gone (from $T/gone.pid): no such process|nil: $T/missing.pid: No such file or directory|zdm.signal: signal 'KILL' is not one of HUP, USR1, USR2, QUIT, TERM"
}

@test "user plugin: run() returning {inconclusive = why} pauses the run (exit 4), not retried; resume runs it again" {
  plugin_file "$T/myplugins" my.undecided <<'EOF2'
return {
  description = "decides on the second attempt",
  read_only = true,
  run = function(ctx, p)
    if ctx.attempt == 1 then
      return {inconclusive = "could not tell", outputs = {seen = 1}}
    end
    return {outputs = {seen = 2}}
  end,
}
EOF2
  plugin_file "$T/myplugins" my.badverdict <<'EOF2'
return {description = "x", run = function() return {inconclusive = 3} end}
EOF2
  runbook <<'EOF2'
zdm: 1
name: undecided
steps:
  - id: gate
    uses: my.undecided
    retries: 3
    retry_delay: 10ms
EOF2
  run zdm run rb.yml --plugin-path "$T/myplugins" --state-dir "$T/state"
  assert_equal "$status" 4
  assert_output --partial "could not tell"
  run jq -c 'select(.event=="step.failed" or .event=="run.paused") | [.event, .data.needs_decision, .data.will_retry, .data.error, .data.outputs]' "$(J)"
  assert_output "$(printf '%s\n' '["step.failed",true,false,"could not tell",{"seen":1}]' '["run.paused",true,null,"could not tell",null]')"
  run zdm resume rb.yml --plugin-path "$T/myplugins" --state-dir "$T/state"
  assert_equal "$status" 0
  run jq -c 'select(.event=="step.succeeded") | [.attempt, .data.outputs.seen]' "$(J)"
  assert_output '[2,2]'
  sed -i 's/my.undecided/my.badverdict/' rb.yml
  run zdm run rb.yml --plugin-path "$T/myplugins" --state-dir "$T/state2"
  assert_equal "$status" 1
  assert_output --partial "run(): inconclusive must be a string that says why, got number"
}
