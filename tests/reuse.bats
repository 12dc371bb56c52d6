#!/usr/bin/env bats
# Reuse in runbooks: YAML anchors, aliases and merge keys; for_each: on a
# step or a group of steps (ids "<id>-<item>", `each` in expressions);
# include: of a file of steps with its own with: inputs.

bats_require_minimum_version 1.5.0
load helper

# "event step attempt" per record of the newest journal in $T/state
attempts() {
  jq -r '[.event, (.step // ""), (.attempt // "" | tostring)] | join(" ") | rtrimstr(" ") | rtrimstr(" ")' \
    "$(journal_of "$T/state")"
}

@test "reuse: anchors, aliases and merge keys: merged keys apply, the step's own keys win" {
  runbook <<EOF
zdm: 1
name: anchors
x-base: &base
  uses: exec
  retries: 1
  retry_delay: 10ms
  with: {command: [touch, "$T/from-base"]}
steps:
  - <<: *base
    id: flaky
    with: {shell: 'echo x >> "$T/flaky"; test \$(wc -l < "$T/flaky") -ge 2'}
  - <<: *base
    id: plain
  - id: copied
    uses: exec
    with: &cmd {command: [touch, "$T/copied"]}
EOF
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_exist "$T/from-base"
  assert_exist "$T/copied"
  run attempts
  assert_output - <<'EOF'
run.started
step.started flaky 1
step.failed flaky 1
step.started flaky 2
step.succeeded flaky 2
step.started plain 1
step.succeeded plain 1
step.started copied 1
step.succeeded copied 1
run.finished
EOF
}

@test "reuse: an alias with no anchor, and a mistake inside aliased content, point at the alias (exit 2)" {
  runbook <<'EOF'
zdm: 1
name: aliases
x-with: &w
  command: ["true"]
  bogus: 1
steps:
  - id: one
    uses: exec
    with: *w
  - id: two
    uses: exec
    with: *nowhere
EOF
  run zdm validate rb.yml
  assert_equal "$status" 2
  assert_output "rb.yml:12:11: alias *nowhere has no anchor: define it first with &nowhere on a value above (anchors are per file)
zdm: 1 error; nothing ran"
  sed -i 's/\*nowhere/*w/' rb.yml
  run zdm validate rb.yml
  assert_equal "$status" 2
  assert_output "rb.yml:9:11: step 'one': unknown param 'bogus' for 'exec' (see 'zdm plugins') (in the value aliased here, written at line 5 column 3)
rb.yml:12:11: step 'two': unknown param 'bogus' for 'exec' (see 'zdm plugins') (in the value aliased here, written at line 5 column 3)
zdm: 2 errors; nothing ran"
}

@test "reuse: two merge keys in one mapping are refused naming the first (exit 2); nothing leaks (make asan)" {
  runbook <<'EOF'
zdm: 1
name: merges
x-a: &a {uses: exec}
x-b: &b {timeout: 5s}
steps:
  - <<: *a
    <<: *b
    id: one
    with: {command: ["true"]}
EOF
  run zdm validate rb.yml
  assert_equal "$status" 2
  assert_output --partial "rb.yml:7:5: duplicate merge key '<<' (first at line 6): merge several mappings with one list, <<: [*a, *b]"
}

@test "reuse: an alias bomb is refused at the alias that crosses the limit (exit 2, nothing touched)" {
  runbook <<'EOF'
zdm: 1
name: lol
x-a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]
x-b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
x-c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
x-d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
x-e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
x-f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
x-g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
x-h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
x-i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]
steps: *i
EOF
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output "rb.yml:7:38: alias *d would copy more than 100000 nodes through aliases in this file (an alias bomb?): aliases of aliases multiply; write the repeated part once, or use for_each: or include:
zdm: 1 error; nothing ran"
  assert_not_exist "$T/state"
}

@test "reuse: for_each on a step makes one step per item with ids <id>-<item>; each is a value" {
  runbook <<EOF
zdm: 1
name: shifts
steps:
  - id: shift
    for_each: [10, 25, 50, 100, blue]
    uses: exec
    with:
      command: [sh, -c, 'echo "\$1 \$2 \$3" >> "$T/log"', x, "\${{ each }}", "\${{ type(each) }}", "\${{ each == 'blue' and 'b' or each * 2 }}"]
EOF
  run --separate-stderr zdm validate rb.yml
  assert_equal "$status" 0
  assert_output "rb.yml: ok (runbook 'shifts', 5 steps)"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  run cat "$T/log"
  assert_output - <<'EOF'
10 number 20
25 number 50
50 number 100
100 number 200
blue string b
EOF
  run jq -r 'select(.event=="step.succeeded") | .step' "$(journal_of "$T/state")"
  assert_output - <<'EOF'
shift-10
shift-25
shift-50
shift-100
shift-blue
EOF
}

@test "reuse: a for_each group repeats its steps per item, in order; zdm plan shows the copies, each if: with its own item" {
  runbook <<'EOF'
zdm: 1
name: canary
steps:
  - id: prepare
    uses: exec
    with: {command: ["true"]}
  - for_each: [10, 50]
    steps:
      - id: shift
        uses: exec
        with: {command: [echo, "weight", "${{ each }}"]}
      - id: gate
        uses: exec
        if: ${{ each < 50 }}
        with: {command: [echo, "${{ steps['shift-' .. each].outputs.stdout }}"]}
EOF
  run zdm plan rb.yml
  assert_equal "$status" 0
  assert_output - <<'EOF'
plan for canary (5 steps), on failure: roll back in reverse order
 1. prepare (exec)
      do:   run true
      undo: none: a rollback leaves this change in place
 2. shift-10 (exec)
      do:   run echo weight 10
      undo: none: a rollback leaves this change in place
 3. gate-10 (exec)  if: ${{ each < 50 }}
      do:   run echo '${{ steps['shift-' .. each].outputs.stdout }}'
      undo: none: a rollback leaves this change in place
 4. shift-50 (exec)
      do:   run echo weight 50
      undo: none: a rollback leaves this change in place
 5. gate-50 (exec)  if: ${{ each < 50 }}
      skipped: if: is false
4 steps that change things have no undo: prepare, shift-10, gate-10, shift-50 (a rollback leaves their changes in place)
EOF
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  run jq -r 'select(.event=="step.succeeded" or .event=="step.skipped") | [.event, .step, (.data.outputs.stdout // "")] | join(" ")' "$(journal_of "$T/state")"
  assert_output - <<'EOF'
step.succeeded prepare 
step.succeeded shift-10 weight 10
step.succeeded gate-10 weight 10
step.succeeded shift-50 weight 50
step.skipped gate-50 
EOF
}

@test "reuse: --fail-at an expanded step rolls back the copies in reverse, each undo with its own item" {
  runbook <<EOF
zdm: 1
name: drill
steps:
  - id: shift
    for_each: [10, 25, 50]
    uses: exec
    with: {command: [sh, -c, 'echo "do \$1" >> "$T/log"', x, "\${{ each }}"]}
    undo: {uses: exec, with: {command: [sh, -c, 'echo "undo \$1" >> "$T/log"', x, "\${{ each }}"]}}
EOF
  run zdm run rb.yml --fail-at shift --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output "zdm run: --fail-at 'shift': for_each made it the steps shift-10, shift-25, shift-50: name one"
  assert_not_exist "$T/state"
  # the other flags that name a step say the same of a step under for_each:
  { cat rb.yml; printf 'probes:\n  - {id: look, uses: wait, with: {duration: 1ms}}\n'; } >drill.yml
  run zdm drill drill.yml --only shift --state-dir "$T/state-d"
  assert_equal "$status" 2
  assert_output --partial "zdm drill: --only 'shift': for_each made it the steps shift-10, shift-25, shift-50: name one"
  run zdm run rb.yml --approve shift --state-dir "$T/state-d"
  assert_equal "$status" 2
  assert_output --partial "zdm run: --approve 'shift': for_each made it the steps shift-10, shift-25, shift-50: name one"
  assert_not_exist "$T/state-d"
  run zdm run rb.yml --fail-at shift-25 --state-dir "$T/state"
  assert_equal "$status" 1
  run zdm resume rb.yml --in-doubt shift=retry --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "zdm resume: --in-doubt shift=retry: for_each made it the steps shift-10, shift-25, shift-50: name one"
  run cat "$T/log"
  assert_output - <<'EOF'
do 10
do 25
undo 25
undo 10
EOF
  run attempts
  assert_output - <<'EOF'
run.started
step.started shift-10 1
step.succeeded shift-10 1
step.started shift-25 1
step.succeeded shift-25 1
drill.failure shift-25
rollback.started shift-25
undo.started shift-25 1
undo.succeeded shift-25 1
undo.started shift-10 1
undo.succeeded shift-10 1
run.finished
EOF
}

@test "reuse: a paused run resumes at the expanded step that failed; the copies before it do not run again" {
  runbook <<EOF
zdm: 1
name: pausing
on_failure: pause
steps:
  - id: shift
    for_each: [10, 25, 50]
    uses: exec
    with: {command: [sh, -c, 'test "\$1" != 25 || test -e "$T/fixed" || exit 1; echo "\$1" >> "$T/log"', x, "\${{ each }}"]}
EOF
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 4
  assert_line --partial "paused after step 'shift-25' failed (on_failure: pause)."
  touch "$T/fixed"
  run zdm resume rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  run cat "$T/log"
  assert_output - <<'EOF'
10
25
50
EOF
  run attempts
  assert_output - <<'EOF'
run.started
step.started shift-10 1
step.succeeded shift-10 1
step.started shift-25 1
step.failed shift-25 1
run.paused shift-25
run.resumed
step.started shift-25 2
step.succeeded shift-25 2
step.started shift-50 1
step.succeeded shift-50 1
run.finished
EOF
}

@test "reuse: for_each mistakes: items that cannot end an id, a repeated item, a nested for_each, each outside for_each (exit 2)" {
  runbook <<'EOF'
zdm: 1
name: bad
steps:
  - id: a
    for_each: [10, Big, 10, 2.5, [x]]
    uses: exec
    with: {command: ["true"]}
  - for_each: [x, y]
    steps:
      - id: b
        for_each: [1, 2]
        uses: exec
        with: {command: ["true"]}
  - for_each: []
    steps: [{id: c, uses: exec, with: {command: ["true"]}}]
  - id: d
    uses: exec
    with: {command: [echo, "${{ each }}"]}
EOF
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output - <<'EOF'
rb.yml:5:20: for_each item 'Big' cannot end a step id: use lower-case letters, digits, '-' and '_', starting with a letter or digit
rb.yml:5:25: for_each item '10' is listed twice (first at line 5): each copy needs its own id
rb.yml:5:29: for_each item '2.5' cannot end a step id: use lower-case letters, digits, '-' and '_', starting with a letter or digit
rb.yml:5:34: a for_each item must be a number or a word (it ends the step's id), not a list
rb.yml:11:19: for_each inside the for_each at rb.yml:8: for_each does not nest (list every combination in one for_each)
rb.yml:14:15: for_each is empty: list at least one item
rb.yml:18:21: step 'd': param 'command': expression 'each': 'each' is known only in a step under for_each: (the item of that step's copy)
zdm: 7 errors; nothing ran
EOF
  assert_not_exist "$T/state"
}

@test "reuse: include: brings a file's steps with its with: inputs, paths relative to the including file" {
  mkdir -p "$T/books/parts/more"
  cat >"$T/books/rb.yml" <<EOF
zdm: 1
name: including
vars:
  pool: web
steps:
  - include: parts/shift.yml
    with: {weight: 10, pool: "\${{ vars.pool }}"}
  - for_each: [25, 50]
    steps:
      - include: parts/shift.yml
        with: {weight: "\${{ each }}"}
EOF
  cat >"$T/books/parts/shift.yml" <<EOF
inputs:
  weight: ~        # required
  pool: api
x-exec: &exec {uses: exec}   # an included file's own anchors
steps:
  - <<: *exec
    id: shift
    with: {command: [sh, -c, 'echo "\$1 \$2 \$3" >> "$T/log"', x, "\${{ inputs.pool }}", "\${{ inputs.weight }}", "\${{ type(inputs.weight) }}"]}
  - include: more/check.yml
    with: {what: "\${{ inputs.pool }}"}
EOF
  cat >"$T/books/parts/more/check.yml" <<EOF
- id: check
  uses: exec
  with: {command: [sh, -c, 'echo "check \$1" >> "$T/log"', x, "\${{ inputs.what }}"]}
EOF
  # run from elsewhere: include paths are relative to the including file
  mkdir "$T/elsewhere"
  cd "$T/elsewhere"
  run --separate-stderr zdm validate ../books/rb.yml
  assert_equal "$status" 0
  assert_output "../books/rb.yml: ok (runbook 'including', 6 steps)"
  run zdm run ../books/rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  run cat "$T/log"
  assert_output - <<'EOF'
web 10 number
check web
api 25 number
check api
api 50 number
check api
EOF
  run jq -r 'select(.event=="step.succeeded") | .step' "$(journal_of "$T/state")"
  assert_output - <<'EOF'
shift
check
shift-25
check-25
shift-50
check-50
EOF
}

@test "reuse: include mistakes are said in the file that has them: its own file:line:col, inputs, cycles (exit 2)" {
  mkdir -p "$T/parts"
  runbook <<'EOF'
zdm: 1
name: including
steps:
  - include: parts/step.yml
    with: {wieght: 5}
  - include: parts/missing.yml
  - include: parts/loop-a.yml
  - include: parts/step.yml
    with: {weight: "${{ steps.x.outputs.stdout }}"}
  - include: parts/broken.yml
EOF
  cat >"$T/parts/step.yml" <<'EOF'
inputs:
  weight: ~
steps:
  - id: step
    uses: exec
    with: {command: [echo, "${{ inputs.weight }}"]}
EOF
  printf -- '- include: loop-b.yml\n' >"$T/parts/loop-a.yml"
  printf -- '- include: loop-a.yml\n' >"$T/parts/loop-b.yml"
  cat >"$T/parts/broken.yml" <<'EOF'
- id: broken
  uses: exec
  with:
    command: [echo, "${{ inputs.m }}"]
    colour: red
EOF
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output - <<'EOF'
rb.yml:4:14: include 'parts/step.yml': missing input 'weight' (parts/step.yml:2 declares it without a default): give it under with:
rb.yml:5:12: include 'parts/step.yml' has no input 'wieght' (did you mean 'weight'?)
rb.yml:6:14: cannot read included file 'parts/missing.yml': No such file or directory
rb.yml:9:20: include with: 'weight' needs what is known only while the run goes (steps, secrets, env or run): an input is fixed when the runbook is read, from vars, each or inputs; write that expression in the included file instead
parts/loop-b.yml:1:12: include cycle: parts/loop-a.yml -> parts/loop-b.yml -> parts/loop-a.yml (a file cannot include itself, even through others)
parts/broken.yml:4:14: step 'broken': param 'command': expression 'inputs.m': unknown input 'm' (the include's with: does not give it)
parts/broken.yml:5:5: step 'broken': unknown param 'colour' for 'exec' (see 'zdm plugins')
zdm: 7 errors; nothing ran
EOF
  assert_not_exist "$T/state"
}

@test "reuse: includes nest at most 8 files deep" {
  local i
  mkdir -p "$T/p"
  for i in 1 2 3 4 5 6 7 8 9; do
    printf -- '- include: %s.yml\n' "$((i + 1))" >"$T/p/$i.yml"
  done
  printf -- '- {id: deep, uses: exec, with: {command: ["true"]}}\n' >"$T/p/10.yml"
  runbook <<'EOF'
zdm: 1
name: deep
steps:
  - include: p/1.yml
EOF
  run zdm validate rb.yml
  assert_equal "$status" 2
  assert_output "p/8.yml:1:12: includes nest more than 8 files deep: 'p/9.yml' is one too many
zdm: 1 error; nothing ran"
  # one level less is fine
  printf -- '- {id: deep, uses: exec, with: {command: ["true"]}}\n' >"$T/p/8.yml"
  run zdm validate rb.yml
  assert_equal "$status" 0
}

@test "reuse: an included file that changed since the run started is a changed runbook on resume" {
  mkdir -p "$T/parts"
  runbook <<EOF
zdm: 1
name: pausing
on_failure: pause
steps:
  - include: parts/steps.yml
EOF
  cat >"$T/parts/steps.yml" <<EOF
- id: gate
  uses: exec
  with: {command: [test, -e, "$T/fixed"]}
EOF
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 4
  echo "# changed" >>"$T/parts/steps.yml"
  touch "$T/fixed"
  run zdm resume rb.yml --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "rb.yml changed since run"
  run zdm resume rb.yml --state-dir "$T/state" --allow-changed
  assert_equal "$status" 0
}

@test "reuse: include: with for_each: one copy of the file's steps per item; names say which copy" {
  mkdir -p "$T/parts"
  cat >"$T/parts/shift.yml" <<'EOF'
inputs:
  weight: ~
  backend: app
steps:
  - id: shift
    name: ${{ inputs.backend }} to ${{ inputs.weight }}%
    uses: exec
    with: {command: [echo, "${{ inputs.backend }}", "${{ inputs.weight }}"]}
EOF
  runbook <<'EOF'
zdm: 1
name: inc
steps:
  - include: parts/shift.yml
    for_each: [10, 50]
    with: {weight: "${{ each }}"}
EOF
  run zdm plan rb.yml
  assert_equal "$status" 0
  assert_output - <<'EOF'
plan for inc (2 steps), on failure: roll back in reverse order
 1. shift-10 — app to 10% (exec)
      do:   run echo app 10
      undo: none: a rollback leaves this change in place
 2. shift-50 — app to 50% (exec)
      do:   run echo app 50
      undo: none: a rollback leaves this change in place
2 steps that change things have no undo: shift-10, shift-50 (a rollback leaves their changes in place)
EOF
}

@test "reuse: a runbook that expands to more than 10000 steps is refused at the step that crosses the limit (exit 2)" {
  mkdir -p "$T/parts"
  for i in $(seq 1 11); do
    printf -- '- {id: s%d, uses: exec, with: {command: [echo, "${{ each }}"]}}\n' "$i"
  done >"$T/parts/eleven.yml"
  printf 'zdm: 1\nname: big\nsteps:\n  - include: parts/eleven.yml\n    for_each: [%s]\n' \
    "$(seq -s, 1 1000)" >rb.yml
  run zdm validate rb.yml
  assert_equal "$status" 2
  # the 10001st step: item 910's s2
  assert_output "parts/eleven.yml:2:3: the runbook expands to more than 10000 steps (for_each: and include: included): split it into several runbooks
zdm: 1 error; nothing ran"
  sed -i 's/,901,.*]$/]/' rb.yml
  run --separate-stderr zdm validate rb.yml
  assert_equal "$status" 0
  assert_output "rb.yml: ok (runbook 'big', 9900 steps)"
}
