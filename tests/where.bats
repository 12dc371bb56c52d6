#!/usr/bin/env bats
# Where zdm finds things, whatever the current directory: the run a hint
# names (./.zdm, ZDM_STATE_DIR and the index of the state dirs runbooks ran
# in lately), the paths a runbook names (from the runbook's directory), the
# plugins (the runbook's repository, beside the binary, ZDM_PLUGIN_PATH),
# and a bare `zdm rollback` that would undo a run that succeeded.

bats_require_minimum_version 1.5.0
load helper

# a home of the test's own; the index at its default place
# ($HOME/.local/state/zdm/state-dirs), unless a test sets XDG_STATE_HOME
own_home() {
  export HOME="$T/home"
  mkdir -p "$HOME"
  unset XDG_STATE_HOME
}

# the zdm commands a hint in $1 (zdm's output) names, each once, in order:
# zdm approve [--deny] RUN STEP, zdm resume|rollback|status|log RUN
hints() {
  python3 - "$1" <<'EOF'
import re, sys
seen = []
for m in re.finditer(r'\bzdm (approve(?: --deny)? \S+ [\w-]+|(?:resume|rollback|status|log) \S+)',
                     sys.argv[1]):
    c = "zdm " + m.group(1)
    if c not in seen:
        seen.append(c)
print("\n".join(seen))
EOF
}

# the run id of "run ID: ..." in $1
run_id_of() {
  sed -n 's/^run \([^:]*\): .*/\1/p' <<<"$1" | head -1
}

# $T/proj/rb.yml from stdin; the runs go to $T/proj/.zdm
project() {
  mkdir -p "$T/proj" "$T/launch" "$T/elsewhere"
  cat >"$T/proj/rb.yml"
}

approval_runbook() {
  project <<'EOF'
zdm: 1
name: where-approval
steps:
  - id: make
    uses: exec
    with: {command: [touch, made], cwd: .}
    undo:
      uses: exec
      with: {command: [rm, -f, made], cwd: .}
  - id: gate
    uses: approval
    with: {approvers: [alice], message: "go on?"}
  - id: after
    uses: exec
    with: {command: [touch, after], cwd: .}
EOF
}

@test "hints of a paused run (approval) work pasted in another directory" {
  own_home
  approval_runbook
  cd "$T/launch"
  run zdm run ../proj/rb.yml --non-interactive
  assert_equal "$status" 4
  local id
  id="$(run_id_of "$output")"
  [[ -n "$id" ]]
  assert_equal "$(hints "$output")" "zdm approve $id gate
zdm resume $id
zdm approve --deny $id gate"
  # the index names the project's state dir
  assert_equal "$(cat "$HOME/.local/state/zdm/state-dirs")" "$T/proj/.zdm"

  cd "$T/elsewhere"
  local h out
  h="zdm approve $id gate"
  run env ZDM_ACTOR=alice timeout 60 "$ZDM_BIN" ${h#zdm }
  assert_equal "$status" 0
  out="$output"
  assert_equal "$(hints "$out")" "zdm resume $id"
  h="$(hints "$out")"
  run timeout 60 "$ZDM_BIN" ${h#zdm }
  assert_equal "$status" 0
  assert_output --partial "succeeded: run $id"
  assert_file_exists "$T/proj/after"
  # nothing was written where the hints were pasted
  assert_equal "$(ls -A "$T/elsewhere")" ""
}

@test "the deny hint of a paused run works pasted in another directory, and so does the resume it prints" {
  own_home
  approval_runbook
  cd "$T/launch"
  run zdm run ../proj/rb.yml --non-interactive
  assert_equal "$status" 4
  local id h
  id="$(run_id_of "$output")"
  h="$(hints "$output" | grep -- --deny)"
  assert_equal "$h" "zdm approve --deny $id gate"
  cd "$T/elsewhere"
  run env ZDM_ACTOR=alice timeout 60 "$ZDM_BIN" ${h#zdm }
  assert_equal "$status" 0
  h="$(hints "$output")"
  assert_equal "$h" "zdm resume $id"
  run timeout 60 "$ZDM_BIN" ${h#zdm }
  assert_equal "$status" 1
  assert_file_not_exists "$T/proj/made"
  assert_equal "$(ls -A "$T/elsewhere")" ""
}

@test "hints of a failed run (on_failure: pause, then an undo that fails) work pasted in another directory" {
  own_home
  project <<'EOF'
zdm: 1
name: where-failing
on_failure: pause
steps:
  - id: make
    uses: exec
    with: {command: [touch, made], cwd: .}
    undo:
      uses: exec
      with: {command: [rm, made], cwd: .}
  - id: check
    uses: exec
    with: {command: [test, -f, go], cwd: .}
EOF
  cd "$T/launch"
  run zdm run ../proj/rb.yml
  assert_equal "$status" 4
  local id hs h out
  id="$(run_id_of "$output")"
  hs="$(hints "$output")"
  assert_equal "$hs" "zdm resume $id
zdm rollback $id"
  cd "$T/elsewhere"
  # each as printed: resume fails the step again (paused, 4); rollback undoes (0)
  local want=(4 0) i=0
  while IFS= read -r h; do
    run timeout 60 "$ZDM_BIN" ${h#zdm }
    assert_equal "$status" "${want[$i]}"
    i=$((i + 1))
  done <<<"$hs"
  assert_equal "$i" 2
  assert_file_not_exists "$T/proj/made"

  # a rollback that cannot undo: ROLLBACK INCOMPLETE names zdm log and zdm rollback
  sed -i 's/on_failure: pause/on_failure: rollback/; s/with: {command: \[rm, made\], cwd: .}/with: {command: [rm, gone], cwd: .}/' "$T/proj/rb.yml"
  cd "$T/launch"
  run zdm run ../proj/rb.yml
  assert_equal "$status" 3
  id="$(run_id_of "$output")"
  hs="$(hints "$output")"
  assert_equal "$hs" "zdm log $id
zdm rollback $id"
  cd "$T/elsewhere"
  want=(0 3)
  i=0
  while IFS= read -r h; do
    run timeout 60 "$ZDM_BIN" ${h#zdm }
    assert_equal "$status" "${want[$i]}"
    i=$((i + 1))
  done <<<"$hs"
  assert_equal "$i" 2
  # zdm status's hint names the run too
  run timeout 60 "$ZDM_BIN" status "$id"
  assert_equal "$status" 0
  assert_equal "$(ls -A "$T/elsewhere")" ""
}

@test "a bare RUN_ID: found in ./.zdm, ZDM_STATE_DIR or the index; in two of them it is an error naming both (exit 2)" {
  own_home
  export XDG_STATE_HOME="$T/xdg"
  approval_runbook
  cd "$T/launch"
  run zdm run ../proj/rb.yml --non-interactive
  assert_equal "$status" 4
  local id
  id="$(run_id_of "$output")"
  # XDG_STATE_HOME wins over HOME
  assert_equal "$(cat "$T/xdg/zdm/state-dirs")" "$T/proj/.zdm"
  assert_file_not_exists "$HOME/.local/state/zdm/state-dirs"

  cd "$T/elsewhere"
  run zdm status "$id"
  assert_equal "$status" 0
  assert_line "journal  $T/proj/.zdm/runs/$id.jsonl (7 records)"

  # an unknown id: where zdm looked, exit 2
  run zdm status 20990101T000000Z-0000
  assert_equal "$status" 2
  assert_output "zdm status: no run '20990101T000000Z-0000' in $T/elsewhere/.zdm, nor in the state dirs of the runbooks run lately ($T/xdg/zdm/state-dirs); name the runbook, or set --state-dir / ZDM_STATE_DIR"

  # a copy of the run in ./.zdm: two places, both named
  mkdir -p "$T/elsewhere/.zdm/runs"
  cp "$T/proj/.zdm/runs/$id.jsonl" "$T/elsewhere/.zdm/runs/"
  run zdm resume "$id"
  assert_equal "$status" 2
  assert_output "zdm resume: run '$id' is in 2 state dirs:
  $T/elsewhere/.zdm
  $T/proj/.zdm
  name one: zdm resume $id --state-dir DIR"
  # the same through ZDM_STATE_DIR
  mv "$T/elsewhere/.zdm" "$T/other-state"
  run env ZDM_STATE_DIR="$T/other-state" timeout 60 "$ZDM_BIN" log "$id"
  assert_equal "$status" 2
  assert_line "  $T/other-state"
  assert_line "  $T/proj/.zdm"
  # --state-dir names the one place, and nothing else is searched
  run zdm status "$id" --state-dir "$T/other-state"
  assert_equal "$status" 0
  assert_line "journal  $T/other-state/runs/$id.jsonl (7 records)"
  run zdm status "$id" --state-dir "$T/none"
  assert_equal "$status" 2
  assert_output --partial "no run '$id' in $T/none"
  # the pasted hints did not touch the journal
  assert_equal "$(wc -l <"$T/proj/.zdm/runs/$id.jsonl")" 7
}

@test "the index keeps the newest state dir first, each once, and drops the dirs that are gone" {
  own_home
  local d
  for d in a b c; do
    mkdir -p "$T/$d"
    cat >"$T/$d/rb.yml" <<EOF
zdm: 1
name: idx-$d
steps:
  - id: one
    uses: exec
    with: {command: ["true"]}
EOF
  done
  run zdm run "$T/a/rb.yml"
  assert_equal "$status" 0
  run zdm run "$T/b/rb.yml"
  run zdm run "$T/c/rb.yml"
  run zdm run "$T/a/rb.yml"
  assert_equal "$status" 0
  assert_equal "$(cat "$HOME/.local/state/zdm/state-dirs")" "$T/a/.zdm
$T/c/.zdm
$T/b/.zdm"
  rm -rf "$T/c"
  run zdm run "$T/b/rb.yml"
  assert_equal "$(cat "$HOME/.local/state/zdm/state-dirs")" "$T/b/.zdm
$T/a/.zdm"
  # written by rename: no temp file is left
  assert_equal "$(ls -A "$HOME/.local/state/zdm")" "state-dirs
state-dirs.lock"
  # zdm plan writes no run, so it records nothing
  mkdir -p "$T/d"
  cp "$T/a/rb.yml" "$T/d/rb.yml"
  run zdm plan "$T/d/rb.yml"
  assert_equal "$status" 0
  run grep -c . "$HOME/.local/state/zdm/state-dirs"
  assert_output 2
}

@test "an index that cannot be written: a warning naming --state-dir; the run itself goes on" {
  own_home
  approval_runbook
  mkdir -p "$HOME/.local/state"
  : >"$HOME/.local/state/zdm"   # a file where the dir would be
  cd "$T/launch"
  run --separate-stderr zdm run ../proj/rb.yml --non-interactive
  assert_equal "$status" 4
  [[ "$stderr" == *"zdm: warning: cannot record the state dir $T/proj/.zdm in $HOME/.local/state/zdm/state-dirs: "*"Not a directory; from another directory name it with --state-dir"* ]]
}

# ---- zdm rollback without a run ---------------------------------------------

ok_runbook() {
  project <<'EOF'
zdm: 1
name: where-ok
steps:
  - id: make
    uses: exec
    with: {command: [touch, made], cwd: .}
    undo:
      uses: exec
      with: {command: [rm, -f, made], cwd: .}
EOF
}

@test "bare zdm rollback of a run that succeeded: refused without a terminal unless --yes (exit 2, nothing undone)" {
  ok_runbook
  cd "$T/proj"
  run zdm run rb.yml
  assert_equal "$status" 0
  local id j
  id="$(run_id_of "$output")"
  j="$T/proj/.zdm/runs/$id.jsonl"
  local before
  before="$(cat "$j")"
  run --separate-stderr zdm rollback
  assert_equal "$status" 2
  [[ "$stderr" == "zdm rollback: the newest run, $id of runbook 'where-ok', succeeded at "*"; to undo it, say so: zdm rollback --yes, or name the run: zdm rollback $id; nothing done" ]]
  assert_file_exists "$T/proj/made"
  assert_equal "$(cat "$j")" "$before"
  # --non-interactive on a terminal is the same
  run env -u CI script -qec "timeout 60 $ZDM_BIN rollback --non-interactive" /dev/null </dev/null
  assert_equal "$status" 2
  assert_file_exists "$T/proj/made"
  # --yes: undone
  run zdm rollback --yes
  assert_equal "$status" 0
  assert_output --partial "rolled back: run $id"
  assert_file_not_exists "$T/proj/made"
}

@test "zdm rollback naming the run, or of a run that did not succeed, asks nothing" {
  ok_runbook
  cd "$T/proj"
  run zdm run rb.yml
  local id
  id="$(run_id_of "$output")"
  run zdm rollback
  assert_equal "$status" 2
  assert_file_exists "$T/proj/made"
  run zdm rollback "$id"
  assert_equal "$status" 0
  assert_file_not_exists "$T/proj/made"
  run zdm run rb.yml
  run zdm rollback rb.yml
  assert_equal "$status" 0
  assert_file_not_exists "$T/proj/made"
  # a paused run: a bare rollback undoes it as before
  approval_runbook
  run zdm run rb.yml --non-interactive
  assert_equal "$status" 4
  assert_file_exists "$T/proj/made"
  run zdm rollback
  assert_equal "$status" 0
  assert_file_not_exists "$T/proj/made"
}

@test "bare zdm rollback of a run that succeeded asks on a terminal: n keeps it (exit 2), y undoes it" {
  ok_runbook
  cd "$T/proj"
  run zdm run rb.yml
  local id
  id="$(run_id_of "$output")"
  run tty_answer n "Undo its steps? [y/N]" env -u CI "$ZDM_BIN" rollback
  assert_equal "$status" 2
  assert_output --partial "the newest run, $id of runbook 'where-ok', succeeded at "
  assert_output --partial "Undo its steps? [y/N]"
  assert_output --partial "zdm rollback: not rolled back; nothing done"
  assert_file_exists "$T/proj/made"
  run tty_answer y "Undo its steps? [y/N]" env -u CI "$ZDM_BIN" rollback
  assert_equal "$status" 0
  assert_output --partial "rolled back"
  assert_file_not_exists "$T/proj/made"
}

# ---- relative paths in a runbook ----------------------------------------------

@test "relative paths resolve from the runbook's directory: secrets file:, exec cwd, a plugin's path params, also on resume" {
  own_home
  mkdir -p "$T/proj/releases/v1" "$T/elsewhere"
  printf 's3cret-value\n' >"$T/proj/token"
  plugin_file "$T/pp" my.where <<'EOF'
return {
  description = "write where its path param points",
  params = {
    {name = "out", type = "path", required = true, doc = "a file"},
    {name = "none", type = "path", default = "", doc = "empty stays empty"},
    {name = "abs", type = "path", default = "/etc/hostname", doc = "absolute stays"},
  },
  run = function(ctx, p)
    local ok, err = zdm.file.write_atomic(p.out, p.out .. "|" .. p.none .. "|" .. p.abs .. "\n")
    if not ok then return nil, err end
    return {outputs = {out = p.out}}
  end,
}
EOF
  cat >"$T/proj/rb.yml" <<'EOF'
zdm: 1
name: where-paths
secrets:
  tok: {file: token}
steps:
  - id: pwd
    uses: exec
    with:
      shell: 'pwd >here; test "$TOK" = s3cret-value'
      cwd: .
      env: {TOK: "${{ secrets.tok }}"}
  - id: sub
    uses: exec
    with: {shell: 'pwd >here', cwd: releases}
  - id: link
    uses: release.symlink
    with: {link: current, target: releases/v1}
  - id: mine
    uses: my.where
    with: {out: out.txt}
  - id: gate
    uses: approval
    with: {approvers: [alice], message: ok?}
  - id: again
    uses: my.where
    with: {out: ./again.txt}
EOF
  cd "$T/elsewhere"
  run zdm run ../proj/rb.yml --plugin-path "$T/pp" --non-interactive
  assert_equal "$status" 4
  assert_equal "$(cat "$T/proj/here")" "$T/proj"
  assert_equal "$(cat "$T/proj/releases/here")" "$T/proj/releases"
  assert_equal "$(readlink "$T/proj/current")" releases/v1
  assert_equal "$(cat "$T/proj/out.txt")" "$T/proj/out.txt||/etc/hostname"
  # the secret's value is in no output and no journal
  refute_output --partial s3cret-value
  run grep -rl s3cret-value "$T/proj/.zdm"
  assert_equal "$status" 1
  # resumed from yet another directory: the same files
  mkdir -p "$T/third"
  cd "$T/third"
  local id
  id="$(ls "$T/proj/.zdm/runs" | sed 's/\.jsonl$//')"
  run env ZDM_ACTOR=alice timeout 60 "$ZDM_BIN" approve "$id" gate
  assert_equal "$status" 0
  run zdm resume "$id" --plugin-path "$T/pp"
  assert_equal "$status" 0
  assert_equal "$(cat "$T/proj/again.txt")" "$T/proj/again.txt||/etc/hostname"
  assert_equal "$(ls -A "$T/elsewhere")" ""
  assert_equal "$(ls -A "$T/third")" ""
  # a secret file that is not there is named as zdm looked for it
  rm "$T/proj/token"
  run zdm run ../proj/rb.yml --plugin-path "$T/pp" --non-interactive
  assert_equal "$status" 2
  assert_output --partial "secret 'tok': cannot read file '$T/proj/token': No such file or directory"
}

@test "zdm plugins shows path params as path" {
  run zdm plugins
  assert_equal "$status" 0
  assert_line --regexp '^    cwd +path +optional +working directory'
  assert_line --regexp '^    link +path +required +'
}

# ---- where plugins are found ------------------------------------------------------

# a plugin my.thing in DIR
thing_plugin() {
  plugin_file "$1" my.thing <<'EOF'
return {
  description = "does nothing",
  params = {},
  run = function(ctx, p) return {outputs = {}} end,
}
EOF
}

thing_runbook() {
  mkdir -p "$(dirname "$1")"
  cat >"$1" <<'EOF'
zdm: 1
name: thing
steps:
  - id: t
    uses: my.thing
EOF
}

@test "plugins: found in the runbook's repository (the nearest plugins/ up to the .git), from any directory" {
  unset ZDM_PLUGIN_PATH
  mkdir -p "$T/repo/.git" "$T/elsewhere"
  thing_plugin "$T/repo/plugins"
  thing_runbook "$T/repo/deploy/prod/rb.yml"
  cd "$T/elsewhere"
  run zdm validate ../repo/deploy/prod/rb.yml
  assert_equal "$status" 0
  run zdm run ../repo/deploy/prod/rb.yml
  assert_equal "$status" 0
  # zdm plugins from inside the repository lists it, and says where it looked
  cd "$T/repo/deploy"
  run --separate-stderr zdm plugins
  assert_equal "$status" 0
  assert_line 'my.thing'
  assert_line 'Plugin search path (first found wins):'
  assert_line "  $T/repo/plugins"
  assert_line "  $T/repo/deploy/plugins  (no such directory)"
  # the walk stops at the repository's top: a plugins/ above it is not used
  mkdir -p "$T/outer/repo/.git"
  thing_plugin "$T/outer/plugins"
  thing_runbook "$T/outer/repo/rb.yml"
  cd "$T/elsewhere"
  run zdm validate ../outer/repo/rb.yml
  assert_equal "$status" 2
}

@test "plugins: unknown step type names every directory looked in (exit 2); ZDM_PLUGIN_PATH is among them" {
  mkdir -p "$T/pp" "$T/elsewhere"
  export ZDM_PLUGIN_PATH="$T/pp:$T/missing"
  thing_runbook "$T/proj/rb.yml"
  cd "$T/elsewhere"
  run --separate-stderr zdm validate ../proj/rb.yml
  assert_equal "$status" 2
  local bin
  bin="$(cd "$(dirname "$ZDM_BIN")/.." && pwd -P)"
  [[ "$stderr" == "../proj/rb.yml:5:11: unknown step type 'my.thing' (see 'zdm plugins' for the list); no my/thing.lua in: $T/pp, $T/missing (no such directory), $T/elsewhere/plugins (no such directory), $bin/share/zdm/plugins (no such directory), $bin/plugins, "*"; add its directory with --plugin-path or ZDM_PLUGIN_PATH"* ]]
  # zdm plugins prints the same search path
  run --separate-stderr zdm plugins
  assert_line "  $T/pp"
  assert_line "  $T/missing  (no such directory)"
  # once it is in a directory of the path, it is found
  thing_plugin "$T/pp"
  run zdm validate ../proj/rb.yml
  assert_equal "$status" 0
}

@test "plugins: found beside an installed binary (BIN/../share/zdm/plugins) from any directory" {
  unset ZDM_PLUGIN_PATH
  mkdir -p "$T/inst/bin" "$T/elsewhere"
  cp "$ZDM_BIN" "$T/inst/bin/zdm"
  thing_plugin "$T/inst/share/zdm/plugins"
  thing_runbook "$T/proj/rb.yml"
  cd "$T/elsewhere"
  run timeout 60 "$T/inst/bin/zdm" validate ../proj/rb.yml
  assert_equal "$status" 0
  run timeout 60 "$ZDM_BIN" validate ../proj/rb.yml
  assert_equal "$status" 2
  # and the plugins shipped with zdm (BIN/../plugins, a binary in its source tree)
  cat >"$T/proj/rel.yml" <<'EOF'
zdm: 1
name: rel
steps:
  - id: link
    uses: release.symlink
    with: {link: current, target: releases/v1}
EOF
  run timeout 60 "$ZDM_BIN" validate ../proj/rel.yml
  assert_equal "$status" 0
}
