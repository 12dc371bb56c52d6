#!/usr/bin/env bats
# zdm completion bash|zsh and the candidates it asks zdm for (zdm
# __complete): the bash script is sourced in bash and its function called
# with COMP_WORDS and COMP_CWORD set, as bash would; the zsh one is parsed
# and autoloaded by zsh when zsh is there.

bats_require_minimum_version 1.5.0
load helper

# complete WORD... : COMPREPLY (one a line) for the line WORD..., the last
# word the one under the cursor, with zdm on PATH as a user has it
complete_line() {
  mkdir -p "$T/bin"
  ln -sf "$ZDM_BIN" "$T/bin/zdm"
  "$ZDM_BIN" completion bash >"$T/zdm.bash"
  PATH="$T/bin:$PATH" bash -c '
    source "$1"; shift
    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
    COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
    _zdm
    printf "%s\n" "${COMPREPLY[@]}"' complete "$T/zdm.bash" "$@"
}

tiny_runbook() {
  runbook <<'EOF2'
zdm: 1
name: tiny
steps:
  - id: prepare
    uses: exec
    with: {command: ["true"]}
  - id: switch
    uses: exec
    with: {command: ["true"]}
EOF2
}

@test "completion: zdm completion bash|zsh prints the scripts; another shell exits 2" {
  run --separate-stderr zdm completion bash
  assert_success
  assert_line "complete -F _zdm zdm"
  run --separate-stderr zdm completion zsh
  assert_success
  assert_line --index 0 "#compdef zdm"
  run --separate-stderr zdm completion fish
  assert_equal "$status" 2
  assert_output ""
  assert_equal "$stderr" "zdm completion: 'fish': no such shell; use bash or zsh"
  run --separate-stderr zdm completion
  assert_equal "$status" 2
}

@test "completion: the commands after 'zdm ', from zdm's own table (the helper hidden)" {
  run complete_line zdm ""
  assert_success
  local c
  for c in validate plan run resume rollback drill status runs lock log report audit approve \
      pause abort promote state plugins init completion version help; do
    assert_line "$c"
  done
  refute_line --partial "__complete"
  run complete_line zdm ro
  assert_output "rollback"
  # and zdm --help does not list the helper either
  run zdm --help
  refute_output --partial "__complete"
}

@test "completion: the flags of the command after --, and only its own" {
  tiny_runbook
  run complete_line zdm run rb.yml --
  assert_success
  local f
  for f in --fail-at --dry-run --var --vars-file --state-dir --approve --output --junit \
      --lock-timeout --wait-for-approval --help; do
    assert_line -- "$f"
  done
  refute_line -- "--in-doubt"
  refute_line -- "--deny"
  run complete_line zdm run rb.yml --fa
  assert_output -- "--fail-at"
  run complete_line zdm approve --
  assert_line -- "--deny"
  assert_line -- "--reason"
  refute_line -- "--fail-at"
  run complete_line zdm init --
  assert_line -- "--list"
  assert_line -- "--output"
}

@test "completion: runbook files (*.yml, *.yaml) after run, plan, validate and drill" {
  tiny_runbook
  touch "$T/other.yaml" "$T/notes.txt"
  local c
  for c in run plan validate drill; do
    run complete_line zdm "$c" ""
    assert_success
    assert_line "rb.yml"
    assert_line "other.yaml"
    refute_line "notes.txt"
  done
  run complete_line zdm run r
  assert_output "rb.yml"
  # --var k=v comes as four words (bash splits at '='): still no argument yet
  run complete_line zdm run --var x = 1 r
  assert_output "rb.yml"
  # but after the runbook, no second one
  run complete_line zdm run rb.yml r
  assert_output ""
}

@test "completion: run ids after status and the commands that take one, from the state" {
  tiny_runbook
  run zdm run "$T/rb.yml" --state-dir "$T/state" -q
  assert_success
  local id
  id="$(zdm runs --state-dir "$T/state" --output json | jq -r '.[0].run')"
  [ -n "$id" ] && [ "$id" != null ]
  run complete_line zdm status --state-dir "$T/state" ""
  assert_success
  assert_line "$id"
  run complete_line zdm status --state-dir "$T/state" "${id:0:8}"
  assert_output "$id"
  # ZDM_STATE_DIR as zdm itself reads it
  export ZDM_STATE_DIR="$T/state"
  local c
  for c in resume rollback log report approve pause abort promote; do
    run complete_line zdm "$c" ""
    assert_line "$id"
  done
  # a state that cannot be read: no candidates, no noise
  run --separate-stderr complete_line zdm status --state-dir "$T/nowhere/at/all" ""
  assert_success
  refute_line "$id"
  assert_equal "$stderr" ""
}

@test "completion: step ids after --fail-at, --approve and --only, from the runbook on the line" {
  tiny_runbook
  run complete_line zdm run rb.yml --fail-at ""
  assert_success
  assert_equal "$output" "$(printf 'prepare\nswitch')"
  run complete_line zdm run rb.yml --dry-run --fail-at sw
  assert_output "switch"
  run complete_line zdm run rb.yml --fail-at = sw
  assert_output "switch"
  run complete_line zdm drill rb.yml --only ""
  assert_line "prepare"
  # for_each copies under their own ids
  zdm init canary-haproxy >"$T/canary.yml"
  run complete_line zdm run canary.yml --approve gate-
  assert_equal "$output" "$(printf 'gate-10\ngate-50\ngate-100')"
  # a runbook that does not load: nothing, quietly
  echo "zdm: [" >"$T/bad.yml"
  run --separate-stderr complete_line zdm run bad.yml --fail-at ""
  assert_success
  assert_output ""
  assert_equal "$stderr" ""
}

@test "completion: values it knows: templates, shells, --output, --in-doubt" {
  run complete_line zdm init ""
  assert_equal "$output" "$(zdm __complete templates)"
  assert_line "rolling-ssh"
  run complete_line zdm completion ""
  assert_equal "$output" "$(printf 'bash\nzsh')"
  run complete_line zdm status --output ""
  assert_equal "$output" "$(printf 'text\njson')"
  run complete_line zdm resume --in-doubt ""
  assert_equal "$output" "$(printf 'retry\nskip')"
  # after an option whose value zdm cannot guess: nothing
  run complete_line zdm run rb.yml --lock-timeout ""
  assert_output ""
  run complete_line zdm report --refresh ""
  assert_output ""
}

@test "completion: zdm report: its flags, and files after --html" {
  run complete_line zdm report --
  assert_success
  local f
  for f in --html --refresh --state-dir --state --help; do
    assert_line -- "$f"
  done
  refute_line -- "--fail-at"
  touch "$T/page.html"
  run complete_line zdm report --html pa
  assert_output "page.html"
}

@test "completion: zdm __complete types lists the step types of zdm plugins" {
  run --separate-stderr zdm __complete types
  assert_success
  assert_line "exec"
  assert_line "lb.nginx"
  assert_line "ssh"
  local t
  for t in $output; do
    zdm plugins | grep -q "^$t\b" || fail "$t is not in zdm plugins"
  done
  run --separate-stderr zdm __complete nonsense
  assert_equal "$status" 2
}

@test "completion: the zsh script parses and autoloads in zsh" {
  command -v zsh >/dev/null || skip "zsh is not installed"
  zdm completion zsh >"$T/_zdm"
  run zsh -n "$T/_zdm"
  assert_success
  run zsh -f -c 'fpath=("$1" $fpath); autoload -Uz compinit && compinit -u -d "$1/.zcompdump";
    autoload -Uz _zdm && whence -w _zdm && print -r -- "${_comps[zdm]}"' zsh "$T"
  assert_success
  assert_line "_zdm: function"
  assert_line "_zdm"
}

@test "completion: the zsh script's candidates (compadd, _describe and _files replaced by recorders)" {
  command -v zsh >/dev/null || skip "zsh is not installed"
  tiny_runbook
  run zdm run "$T/rb.yml" --state-dir "$T/state" -q
  assert_success
  mkdir -p "$T/bin" "$T/fpath"
  ln -sf "$ZDM_BIN" "$T/bin/zdm"
  zdm completion zsh >"$T/fpath/_zdm"
  zsh_complete() {
    PATH="$T/bin:$PATH" zsh -f -c 'fpath=("$1" $fpath); autoload -Uz _zdm
      compadd() { if [[ $1 == -a ]]; then print -rl -- ${(P)2}; else print -rl -- "$@"; fi }
      _describe() { print -rl -- ${(P)${@[-1]}} }
      _files() { print -r -- "files $*" }
      shift; words=("$@"); CURRENT=$#; _zdm' zsh "$T/fpath" "$@"
  }
  run zsh_complete zdm ""
  assert_line "validate"
  assert_line "completion"
  refute_line --partial "__complete"
  run zsh_complete zdm run rb.yml --fail-at ""
  assert_equal "$output" "$(printf 'prepare\nswitch')"
  run zsh_complete zdm run rb.yml --
  assert_line -- "--fail-at"
  refute_line -- "--deny"
  run zsh_complete zdm status --state-dir "$T/state" ""
  assert_line "$(zdm runs --state-dir "$T/state" --output json | jq -r '.[0].run')"
  assert_line "files -g *.(yml|yaml)"
  run zsh_complete zdm init ""
  assert_line "postgres-move"
}
