#!/usr/bin/env bats
# zdm audit verify and the hash chain: every edited, dropped or reordered line
# is found and named; a re-chained journal passes a plain sha256 check (the
# limit of an unkeyed chain) but not an HMAC one; a torn last line is
# reported and ignored, damage anywhere else stops resume, log and status.

bats_require_minimum_version 1.5.0
load helper

# a run of two steps: 6 records (run.started, 2 x started/succeeded, run.finished)
make_journal() {
  cat >"$T/rb.yml" <<EOF
zdm: 1
name: audited
steps:
  - id: one
    uses: exec
    with: {command: [echo, hello]}
  - id: two
    uses: exec
    with: {command: [touch, "$T/two.done"]}
EOF
  zdm run rb.yml --state-dir "$T/state" >/dev/null
  J="$(journal_of "$T/state")"
  [ "$(wc -l <"$J")" -eq 6 ]
}

# rewrite every hash of a journal the way zdm computes it:
# hash = hex(SHA-256(prev || canonical JSON without "hash")), or HMAC-SHA256
# with $1 as the key; canonical = compact, keys sorted (jansson's dump)
rechain() {
  python3 - "$1" "${2:-}" <<'EOF'
import hashlib, hmac, json, sys
path, key = sys.argv[1], sys.argv[2]
recs = [json.loads(l) for l in open(path, encoding="utf-8").read().splitlines()]
prev = "0" * 64
out = []
for r in recs:
    r.pop("hash", None)
    r["prev"] = prev
    canon = json.dumps(r, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    msg = (prev + canon).encode("utf-8")
    h = hmac.new(key.encode(), msg, hashlib.sha256).hexdigest() if key else hashlib.sha256(msg).hexdigest()
    r["hash"] = h
    prev = h
    out.append(json.dumps(r, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
open(path, "w", encoding="utf-8").write("\n".join(out) + "\n")
EOF
}

# replace text in one line of a file (python: exact, no regex surprises)
edit_line() {   # file lineno old new
  python3 - "$@" <<'EOF'
import sys
path, n, old, new = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
lines = open(path, encoding="utf-8").read().split("\n")
assert old in lines[n - 1], (old, lines[n - 1])
lines[n - 1] = lines[n - 1].replace(old, new, 1)
open(path, "w", encoding="utf-8").write("\n".join(lines))
EOF
}

@test "audit verify: an intact journal is ok (exit 0) with its record count, chain and last hash" {
  make_journal
  run --separate-stderr zdm audit verify "$J"
  assert_equal "$status" 0
  local last; last="$(tail -1 "$J" | jq -r .hash)"
  assert_output "$J: ok, 6 records, chain sha256, last hash ${last:0:16}"
  assert_equal "$stderr" ""
  # and the chain really is SHA-256 over prev || canonical record
  cp "$J" "$T/copy.jsonl"
  rechain "$T/copy.jsonl"
  cmp "$J" "$T/copy.jsonl"
}

@test "audit verify: one byte changed in line 3's data -> exit 1 naming line 3" {
  make_journal
  assert_equal "$(jq -r 'select(.seq==3) | .data.outputs.stdout' "$J")" hello
  edit_line "$J" 3 '"stdout":"hello"' '"stdout":"hellx"'
  run --separate-stderr zdm audit verify "$J"
  assert_equal "$status" 1
  assert_equal "$stderr" "$J:3: hash does not match the record (line edited?)"
  assert_output ""
}

@test "audit verify: line 2 dropped -> exit 1 naming line 2" {
  make_journal
  sed -i 2d "$J"
  run --separate-stderr zdm audit verify "$J"
  assert_equal "$status" 1
  [[ "$stderr" == "$J:2: "* ]]
  [[ "$stderr" == *"dropped"* ]]
}

@test "audit verify: lines 2 and 3 swapped -> exit 1 naming line 2" {
  make_journal
  sed -i -n '1p;2h;3{p;x;p};4,$p' "$J"
  [ "$(jq -r .seq "$J" | tr '\n' ' ')" = "1 3 2 4 5 6 " ]
  run --separate-stderr zdm audit verify "$J"
  assert_equal "$status" 1
  [[ "$stderr" == "$J:2: "* ]]
  [[ "$stderr" == *"reordered"* ]]
}

@test "audit verify: the last line removed cannot be detected (documented limit)" {
  make_journal
  sed -i '$d' "$J"
  run zdm audit verify "$J"
  assert_equal "$status" 0
  assert_output --partial "ok, 5 records"
}

@test "audit verify: an edited and re-chained sha256 journal passes (the limit of an unkeyed chain)" {
  make_journal
  edit_line "$J" 3 '"stdout":"hello"' '"stdout":"forged"'
  run zdm audit verify "$J"
  assert_equal "$status" 1
  rechain "$J"
  run zdm audit verify "$J"
  assert_equal "$status" 0
  assert_output --partial ": ok, 6 records, chain sha256"
}

@test "audit verify: with ZDM_AUDIT_KEY the chain is an HMAC, and a re-chain without the key is caught" {
  export ZDM_AUDIT_KEY='k3y-for-the-audit'
  make_journal
  run jq -r 'select(.seq==1) | .data.chain' "$J"
  assert_output hmac-sha256

  run zdm audit verify "$J"
  assert_equal "$status" 0
  assert_output --partial ": ok, 6 records, chain hmac-sha256"

  # the HMAC is what zdm says it is: recomputing it with the key changes nothing
  cp "$J" "$T/same.jsonl"
  rechain "$T/same.jsonl" "$ZDM_AUDIT_KEY"
  cmp "$J" "$T/same.jsonl"

  # a forger without the key re-chains with plain SHA-256 ...
  cp "$J" "$T/forged.jsonl"
  edit_line "$T/forged.jsonl" 3 '"stdout":"hello"' '"stdout":"forged"'
  rechain "$T/forged.jsonl"
  run --separate-stderr zdm audit verify "$T/forged.jsonl"
  assert_equal "$status" 1
  [[ "$stderr" == "$T/forged.jsonl:1: "* ]]

  # ... or with a key of their own ...
  cp "$J" "$T/forged2.jsonl"
  edit_line "$T/forged2.jsonl" 3 '"stdout":"hello"' '"stdout":"forged"'
  rechain "$T/forged2.jsonl" 'not-the-key'
  run --separate-stderr zdm audit verify "$T/forged2.jsonl"
  assert_equal "$status" 1
  [[ "$stderr" == "$T/forged2.jsonl:1: "* ]]

  # ... or relabels the chain as sha256
  cp "$J" "$T/forged3.jsonl"
  edit_line "$T/forged3.jsonl" 1 '"chain":"hmac-sha256"' '"chain":"sha256"'
  edit_line "$T/forged3.jsonl" 3 '"stdout":"hello"' '"stdout":"forged"'
  rechain "$T/forged3.jsonl"
  run --separate-stderr zdm audit verify "$T/forged3.jsonl"
  assert_equal "$status" 1
  assert_equal "$stderr" "$T/forged3.jsonl:1: chain is plain sha256 but ZDM_AUDIT_KEY is set: not made with the key (re-chained, or written before the key was set)"

  # the right key re-chains it fine (the key is what is trusted)
  rechain "$T/forged2.jsonl" "$ZDM_AUDIT_KEY"
  run zdm audit verify "$T/forged2.jsonl"
  assert_equal "$status" 0
}

@test "audit verify: an HMAC journal without ZDM_AUDIT_KEY -> exit 2, telling to set it" {
  ZDM_AUDIT_KEY=secret-key make_journal
  unset ZDM_AUDIT_KEY
  run --separate-stderr zdm audit verify "$J"
  assert_equal "$status" 2
  assert_equal "$stderr" "$J:1: chain is hmac-sha256 but ZDM_AUDIT_KEY is not set: cannot check it"
  assert_output ""
  # a wrong key: the first record does not match -> tampered or wrong key, exit 1
  ZDM_AUDIT_KEY=wrong-key run --separate-stderr zdm audit verify "$J"
  assert_equal "$status" 1
  [[ "$stderr" == "$J:1: hash does not match"* ]]
  # log and status need the key too
  run zdm log "$J"
  assert_equal "$status" 2
  assert_output --partial 'ZDM_AUDIT_KEY'
  ZDM_AUDIT_KEY=secret-key run zdm log "$J"
  assert_equal "$status" 0
}

@test "audit verify: several journals: exit 1 if any is tampered, 2 if one is unreadable" {
  make_journal
  cp "$J" "$T/bad.jsonl"
  edit_line "$T/bad.jsonl" 3 '"stdout":"hello"' '"stdout":"hellx"'
  run --separate-stderr zdm audit verify "$J" "$T/bad.jsonl"
  assert_equal "$status" 1
  assert_output --partial "$J: ok, 6 records"
  assert_equal "$stderr" "$T/bad.jsonl:3: hash does not match the record (line edited?)"

  run --separate-stderr zdm audit verify "$J" "$T/missing.jsonl"
  assert_equal "$status" 2
  assert_output --partial "$J: ok"
  [[ "$stderr" == *"$T/missing.jsonl"*"No such file or directory"* ]]

  # tampered wins over unreadable
  run zdm audit verify "$T/missing.jsonl" "$T/bad.jsonl"
  assert_equal "$status" 1

  run zdm audit verify
  assert_equal "$status" 2
}

@test "audit verify: a torn last line (half a record, no newline) is ok with a torn note" {
  make_journal
  local line; line="$(sed -n 2p "$J")"
  printf '%s' "${line:0:60}" >>"$J"
  run zdm audit verify "$J"
  assert_equal "$status" 0
  assert_output --regexp ": ok, 6 records, chain sha256, last hash [0-9a-f]{16}, torn last line ignored$"
  run zdm log "$J"
  assert_equal "$status" 0
  assert_output --partial 'note: the last line was torn'
}

@test "audit: zdm resume after a crash that tore the last line warns, cuts it off and goes on" {
  cat >"$T/rb.yml" <<EOF
zdm: 1
name: torn
steps:
  - id: one
    uses: exec
    with: {command: [touch, "$T/one.done"]}
  - id: two
    uses: exec
    with: {command: [touch, "$T/two.done"]}
EOF
  # record 4 is step.started of 'two': half of it reaches the disk, then SIGKILL
  run env ZDM_TEST_TEAR_RECORD=4 "$ZDM_BIN" run rb.yml --state-dir "$T/state"
  assert_equal "$status" 137
  assert_exist "$T/one.done"
  assert_not_exist "$T/two.done"
  J="$(journal_of "$T/state")"
  [ "$(tail -c1 "$J" | od -An -c | tr -d ' ')" != '\n' ]   # no newline at the end: torn

  run zdm audit verify "$J"
  assert_equal "$status" 0
  assert_output --partial "ok, 3 records, chain sha256"
  assert_output --partial "torn last line ignored"

  run --separate-stderr zdm resume rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  [[ "$stderr" == *"warning: $J: the last line was torn"* ]]
  assert_exist "$T/two.done"

  # the torn piece is gone and the chain goes on from line 3
  run zdm audit verify "$J"
  assert_equal "$status" 0
  refute_output --partial torn
  run events "$J"
  assert_output - <<'EOF'
run.started
step.started one
step.succeeded one
run.resumed
step.started two
step.succeeded two
run.finished
EOF
}

@test "audit: damage in the middle makes resume, rollback, log and status refuse (exit 2) naming the line" {
  cat >"$T/rb.yml" <<EOF
zdm: 1
name: damaged
steps:
  - id: one
    uses: exec
    with: {command: [echo, hello]}
  - id: two
    uses: exec
    with: {command: [touch, "$T/two.done"]}
EOF
  # crash right after record 3 (step.succeeded of 'one')
  run env ZDM_TEST_CRASH_AFTER_RECORD=3 "$ZDM_BIN" run rb.yml --state-dir "$T/state"
  assert_equal "$status" 137
  J="$(journal_of "$T/state")"
  edit_line "$J" 3 '"stdout":"hello"' '"stdout":"hellx"'
  local size; size="$(stat -c %s "$J")"

  run zdm resume rb.yml --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "$J:3: hash does not match the record"
  assert_not_exist "$T/two.done"

  run zdm rollback rb.yml --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "$J:3:"

  run zdm log rb.yml --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "$J:3:"

  run zdm status rb.yml --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "$J:3:"

  # nothing was appended to the damaged journal
  assert_equal "$(stat -c %s "$J")" "$size"
}

@test "audit: with ZDM_AUDIT_KEY set, rollback refuses a keyed journal downgraded to plain sha256" {
  # audit verify calls such a journal tampered (exit 1); resume and rollback
  # must not act on it either, or a forger without the key chooses what the
  # undo puts back
  mkdir -p "$T/site/r1" "$T/site/r2" "$T/site/evil"
  ln -s r1 "$T/site/current"
  cat >"$T/rb.yml" <<EOF
zdm: 1
name: keyed
steps:
  - id: switch
    uses: release.symlink
    with: {link: "$T/site/current", target: r2}
EOF
  export ZDM_AUDIT_KEY='the-real-key'
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_equal "$(readlink "$T/site/current")" r2
  J="$(journal_of "$T/state")"

  # the forger points every recorded "previous" at their own directory and
  # re-chains with plain sha256, since they do not have the key
  sed -i -e 's/"chain":"hmac-sha256"/"chain":"sha256"/' -e 's/"previous":"r1"/"previous":"evil"/g' "$J"
  rechain "$J"
  run zdm audit verify "$J"
  assert_equal "$status" 1

  local size; size="$(stat -c %s "$J")"
  run zdm rollback rb.yml --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial 'ZDM_AUDIT_KEY'
  assert_equal "$(readlink "$T/site/current")" r2
  assert_equal "$(stat -c %s "$J")" "$size"
}
