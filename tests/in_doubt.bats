#!/usr/bin/env bats
# Items in doubt, each with its own answer: a step or an undo that started
# and whose end the journal does not hold.  `zdm rollback` asks about every
# one before it acts (exit 5, nothing written), an undo in doubt is asked
# about as an undo, and --in-doubt STEP=retry|skip answers one item; a bare
# --in-doubt retry|skip that would answer two items is refused (exit 2).
# state: file and PostgreSQL (ZDM_TEST_STATE=pg, tests/helper.bash)

load helper
bats_require_minimum_version 1.5.0

# a and b append their names to ./effects, their undos undo-NAME; c too
write_rb() {
  printf 'zdm: 1\nname: doubt\nsteps:\n' > rb.yml
  for s in a b c; do
    cat >> rb.yml <<RB
  - id: $s
    uses: exec
    with: {shell: "echo $s >> '$T/effects'"}
    undo: {uses: exec, with: {shell: "echo undo-$s >> '$T/effects'"}}
RB
  done
}

count() { grep -cx "$1" "$T/effects" 2>/dev/null || true; }
nlines() { wc -l < "$(journal_of .zdm)"; }

@test "in doubt: an undo killed mid-way is asked about as an undo (exit 5), not as its step; answered, it runs once" {
  write_rb
  # records: 1 run.started, 2/3 a, 4 b started, 5 b succeeded: torn, so b
  # happened but its end is lost
  ZDM_TEST_TEAR_RECORD=5 run zdm run rb.yml
  assert_equal "$status" 137
  run zdm rollback rb.yml
  assert_equal "$status" 5
  assert_output --partial "step 'b' is in doubt"
  assert_output --partial "If it DID take effect (undo it):"
  assert_output --partial "--in-doubt b=retry"
  # it did: undo it; killed right after undo.started (5 run.resumed,
  # 6 rollback.started, 7 undo.started b)
  ZDM_TEST_CRASH_AFTER_RECORD=7 run zdm rollback rb.yml --in-doubt b=retry
  assert_equal "$status" 137
  assert_equal "$(count undo-b)" 0
  local before; before=$(nlines)
  run zdm rollback rb.yml
  assert_equal "$status" 5
  assert_output --partial "the undo of step 'b' is in doubt"
  refute_output --partial "step 'b' is in doubt: it started but zdm stopped before recording how it ended (attempt 1),
and it recorded nothing"
  assert_equal "$(nlines)" "$before"          # asking wrote nothing
  # the undo did not run: run it again
  run zdm rollback rb.yml --in-doubt b=retry
  assert_equal "$status" 0
  for e in a b undo-b undo-a; do
    [ "$(count $e)" -eq 1 ] || fail "$e ran $(count $e) times: $(cat effects)"
  done
  run cat effects
  assert_output "$(printf 'a\nb\nundo-b\nundo-a')"
  run zdm audit verify "$(journal_of .zdm)"
  assert_equal "$status" 0
}

# a journal with a step in doubt and an undo in doubt at once, as an older
# zdm left it: b's end torn (b happened), the rollback journaled b as
# undo.failed in doubt and went on, and a's undo.succeeded was torn (the
# undo of a happened)
two_in_doubt() {
  write_rb
  ZDM_TEST_TEAR_RECORD=5 run zdm run rb.yml
  assert_equal "$status" 137
  # 5 run.resumed, 6 rollback.started, 7 undo.skipped b, 8 undo.started a,
  # 9 undo.succeeded a: torn
  ZDM_TEST_TEAR_RECORD=9 run zdm rollback rb.yml --in-doubt b=skip
  assert_equal "$status" 137
  local j; j="$(journal_of .zdm)"
  python3 - "$j" <<'PY'
import json, sys
path = sys.argv[1]
lines = open(path, encoding="utf-8").read().split("\n")
lines = [l for l in lines if l.endswith("}")]          # drop the torn tail
r = json.loads(lines[6])
assert r["event"] == "undo.skipped" and r["step"] == "b", r
r["event"] = "undo.failed"
r["data"] = {"error": "in doubt: check it by hand", "in_doubt": True}
lines[6] = json.dumps(r)
open(path, "w", encoding="utf-8").write("\n".join(lines) + "\n")
PY
  rechain "$j"
  run cat effects
  assert_output "$(printf 'a\nb\nundo-a')"
}

@test "in doubt: a step and an undo in doubt at once: rollback names both (exit 5) and refuses one answer for both (exit 2)" {
  two_in_doubt
  local before; before=$(nlines)
  run zdm rollback rb.yml
  assert_equal "$status" 5
  assert_output --partial "in doubt: 2 items; nothing was done"
  assert_output --partial "step 'b' is in doubt"
  assert_output --partial "the undo of step 'a' is in doubt"
  assert_output --regexp "then: zdm rollback [^ ]+ --in-doubt b=retry\|skip --in-doubt a=retry\|skip"
  for a in retry skip; do
    run --separate-stderr zdm rollback rb.yml --in-doubt $a
    assert_equal "$status" 2
    assert_equal "$stderr" "zdm: --in-doubt $a would answer 2 items in doubt at once (step 'b', the undo of step 'a'), which need not have gone the same way; answer each one: --in-doubt STEP=retry|skip; nothing was done"
  done
  # one answered, the other not: still asks, says what was answered
  run zdm rollback rb.yml --in-doubt b=retry
  assert_equal "$status" 5
  assert_output --partial "answered: --in-doubt b=retry"
  assert_output --partial "--in-doubt a=skip"
  assert_equal "$(nlines)" "$before"
  run cat effects
  assert_output "$(printf 'a\nb\nundo-a')"
}

@test "in doubt: per-item answers undo what happened once and nothing that was already undone" {
  two_in_doubt
  # the truth, from ./effects: b happened (undo it), a's undo happened (done)
  run zdm rollback rb.yml --in-doubt b=retry --in-doubt a=skip --output json
  assert_equal "$status" 0
  # the stream (run.resumed with in_doubt_answers) is in the documented schema
  assert_output --partial '"in_doubt_answers":'
  bad="$(printf '%s\n' "$output" | jq -c -f "$BATS_TEST_DIRNAME/data/ci/events.jq" | grep -vx null || true)"
  assert_equal "$bad" ""
  for e in a b undo-a undo-b; do
    [ "$(count $e)" -eq 1 ] || fail "$e ran $(count $e) times: $(cat effects)"
  done
  assert_equal "$(count c)" 0
  assert_equal "$(count undo-c)" 0
  local j; j="$(journal_of .zdm)"
  run jq -c 'select(.event=="run.resumed") | .data.in_doubt_answers' "$j"
  assert_line '{"a":"skip","b":"retry"}'
  run jq -r 'select(.event=="undo.skipped" and .step=="a") | .data.reason' "$j"
  assert_output "undo in doubt, taken as done by --in-doubt skip"
  [ "$(jq -r 'select(.event=="run.finished") | .data.status' "$j")" = rolled_back ]
  run zdm audit verify "$j"
  assert_equal "$status" 0
}

@test "in doubt: an answer for a step that is not in doubt, or that no step has, is refused (exit 2), nothing written" {
  two_in_doubt
  local before; before=$(nlines)
  run --separate-stderr zdm rollback rb.yml --in-doubt b=retry --in-doubt a=skip --in-doubt c=retry
  assert_equal "$status" 2
  [[ "$stderr" == "zdm: --in-doubt c=retry: step 'c' is not in doubt in run "*" (in doubt: step 'b', the undo of step 'a'); nothing was done" ]] || fail "$stderr"
  run --separate-stderr zdm rollback rb.yml --in-doubt bb=retry
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm rollback: --in-doubt bb=retry: no such step in rb.yml (did you mean 'b'?)"
  run --separate-stderr zdm rollback rb.yml --in-doubt b=retry --in-doubt b=skip
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm rollback: --in-doubt b=skip: step 'b' is answered both ways"
  run --separate-stderr zdm rollback rb.yml --in-doubt b=maybe
  assert_equal "$status" 2
  assert_equal "$stderr" "zdm rollback: --in-doubt 'b=maybe': use retry or skip, or STEP=retry|skip for one item of several (zdm rollback --help)"
  assert_equal "$(nlines)" "$before"
}

@test "in doubt: resume takes a per-item answer for its step; a bare answer still works for one item" {
  write_rb
  ZDM_TEST_TEAR_RECORD=5 run zdm run rb.yml          # b happened, its end lost
  assert_equal "$status" 137
  run zdm resume rb.yml --in-doubt b=skip
  assert_equal "$status" 0
  run cat effects
  assert_output "$(printf 'a\nb\nc')"
  rm -rf .zdm effects
  ZDM_TEST_CRASH_AFTER_RECORD=4 run zdm run rb.yml    # b did not happen
  assert_equal "$status" 137
  run zdm resume rb.yml --in-doubt retry
  assert_equal "$status" 0
  run cat effects
  assert_output "$(printf 'a\nb\nc')"
}
