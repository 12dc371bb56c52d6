# Shared setup for the bats suites: every test gets its own temp dir, its own
# state dir, and runs zdm under `timeout` so a hang fails instead of stalling.
#
# Two state backends, one suite.  A suite with the line
#   # state: file and PostgreSQL (ZDM_TEST_STATE=pg, tests/helper.bash)
# runs twice in scripts/run-tests.sh: as written (state dirs), then with
# ZDM_TEST_STATE=pg, where every state a test uses is kept in PostgreSQL:
#   - setup_file starts one real PostgreSQL 15 cluster for the file
#     (tests/servers/postgres.bash; a suite with a setup_file of its own calls
#     state_setup_file and state_teardown_file from it); each state dir a test
#     names becomes a schema of its own, t<test number>_N, made by
#     `zdm state init` when first used;
#   - ZDM_BIN is tests/pgstate/zdm: it maps the state dir a command names
#     (--state-dir, ZDM_STATE_DIR, .zdm beside the runbook, a journal path
#     STATE/runs/RUN_ID.jsonl) to that schema (ZDM_STATE, ZDM_STATE_SCHEMA)
#     and execs the real zdm, $ZDM_EXE (the binary in both modes);
#   - each run's records are materialised from PostgreSQL into the path a
#     state dir would have, STATE/runs/RUN_ID.jsonl, after each `zdm`, before
#     each `jq` and in journal_of, so jq, wc and grep read what PostgreSQL
#     holds; a test that edits a journal calls journal_edited FILE (rechain
#     does), which writes the file back as that run's rows (line N = seq N)
#     as a superuser with the append-only trigger off: the tampering someone
#     with the database could do;
#   - what differs by nature goes through a helper: jname PATH (how zdm names
#     a journal: the path, or pg:user@host:port/db/SCHEMA/RUN_ID),
#     lock_holder, lock_detail, hold_lock/release_lock (the run lock),
#     move_state; on_file_state CMD... runs CMD (an assertion about files: a
#     torn line) in the file pass only; file_only "why" skips a test in the
#     PostgreSQL pass only (a torn or empty journal file cannot exist there:
#     each record is one INSERT), and ZDM_TEST_FILE_ONLY="why" set at the top
#     of a suite skips all of it there.  The file pass never skips.
#   By hand: ZDM_TEST_STATE=pg ZDM_BIN=$PWD/build/zdm bats tests/lock.bats
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'
load '/usr/lib/bats/bats-file/load'

REPO="$(cd "$BATS_TEST_DIRNAME/.." && pwd)"
: "${ZDM_BIN:=$REPO/build/zdm}"
# the real binary, in both passes (ZDM_BIN is the shim in the PostgreSQL one)
: "${ZDM_EXE:=$ZDM_BIN}"
export ZDM_EXE

# free_port, port_open, poll, serve, stop_pids (tests/servers/common.bash)
source "$(dirname "${BASH_SOURCE[0]}")/servers/common.bash"

state_is_pg() {
  [ "${ZDM_TEST_STATE:-file}" = pg ]
}

if state_is_pg; then
  # pg_start, pg_psql, pg_uri ... (tests/servers/postgres.bash)
  source "$(dirname "${BASH_SOURCE[0]}")/servers/postgres.bash"
  # pgstate_abs, pgstate_schema (shared with the shim)
  source "$(dirname "${BASH_SOURCE[0]}")/pgstate/lib.bash"
  export ZDM_REAL_BIN="$ZDM_EXE"
  ZDM_BIN="$REPO/tests/pgstate/zdm"
  export ZDM_BIN
fi

# the setup_file/teardown_file of a suite that has none; a suite with its
# own calls these from it
setup_file() {
  state_setup_file
}

teardown_file() {
  state_teardown_file
}

# the PostgreSQL pass: a database for the file on the cluster that
# scripts/run-tests.sh started for the whole pass (ZDM_TEST_PG_SOCK, its unix
# socket dir, and ZDM_TEST_PG_PORT exported), named for the file; without
# one (a suite run by hand), a cluster of the file's own.  Either lives under
# a root of its own, never the suite's PG_ROOT, so a suite that starts and
# stops clusters of its own (pg_stop_all) leaves it alone.
state_setup_file() {
  state_is_pg && [ -z "${ZDM_TEST_FILE_ONLY:-}" ] || return 0
  local f="${BATS_TEST_FILENAME##*/}"
  if [ -z "${ZDM_TEST_PG_SOCK:-}" ]; then
    _state_own_cluster pg_start state || return 1
    ZDM_TEST_PG_SOCK="$ZDM_TEST_PG_ROOT/state"
    ZDM_TEST_PG_PORT="$(cat "$ZDM_TEST_PG_SOCK/port")"
    export ZDM_TEST_PG_ROOT ZDM_TEST_PG_SOCK ZDM_TEST_PG_PORT
  fi
  f="f_${f%.bats}"
  export ZDM_TEST_PG_DB="${f//[^a-z0-9_]/_}"
  _pg -d postgres -c "CREATE DATABASE $ZDM_TEST_PG_DB OWNER $PG_USER" || return 1
  export ZDM_TEST_PG_URL="postgresql://$PG_USER@127.0.0.1:$ZDM_TEST_PG_PORT/$ZDM_TEST_PG_DB"
  export ZDM_TEST_PG_WHERE="$PG_USER@127.0.0.1:$ZDM_TEST_PG_PORT/$ZDM_TEST_PG_DB"
  export PGPASSWORD="$PG_PASSWORD"
}

state_teardown_file() {
  state_is_pg && [ -n "${ZDM_TEST_PG_DB:-}" ] || return 0
  if [ -n "${ZDM_TEST_PG_ROOT:-}" ]; then
    _state_own_cluster pg_stop_all
  else
    _pg -d postgres -c "DROP DATABASE $ZDM_TEST_PG_DB WITH (FORCE)"
  fi
}

# CMD... (pg_start, pg_stop_all) with PG_ROOT set to $ZDM_TEST_PG_ROOT (made
# when unset), the suite's PG_ROOT as it was after
_state_own_cluster() {
  local had="${PG_ROOT+1}" saved="${PG_ROOT:-}" rc=0
  [ -n "${ZDM_TEST_PG_ROOT:-}" ] || ZDM_TEST_PG_ROOT="$(mktemp -d /tmp/zdm-pgstate.XXXXXX)"
  PG_ROOT="$ZDM_TEST_PG_ROOT"
  "$@" || rc=$?
  if [ -n "$had" ]; then PG_ROOT="$saved"; else unset PG_ROOT; fi
  return "$rc"
}

setup() {
  T="$(mktemp -d "${BATS_TMPDIR:-/tmp}/zdm-test.XXXXXX")"
  cd "$T"
  export ZDM_PLUGIN_PATH="$REPO/plugins"
  # zdm's index of recently used state dirs: the test's own, never the user's
  export XDG_STATE_HOME="$BATS_TEST_TMPDIR/xdg-state"
  unset ZDM_STATE_DIR ZDM_STATE ZDM_STATE_SCHEMA ZDM_AUDIT_KEY ZDM_AUDIT_KEY_FILE ZDM_TEST_CRASH_BEFORE_RECORD ZDM_TEST_CRASH_AFTER_RECORD ZDM_TEST_TEAR_RECORD ZDM_TEST_PAUSE_AFTER_READ ZDM_ACTOR
  # the CI that runs the suite must not change who the actor is
  unset GITHUB_ACTIONS GITHUB_ACTOR GITHUB_TRIGGERING_ACTOR GITLAB_USER_LOGIN GITLAB_CI CI_JOB_URL \
    BUILDKITE BUILDKITE_BUILD_CREATOR CIRCLECI CIRCLE_USERNAME BUILD_USER_ID SUDO_USER
  export NO_COLOR=1
  if state_is_pg; then
    [ -z "${ZDM_TEST_FILE_ONLY:-}" ] || skip "file state only: $ZDM_TEST_FILE_ONLY"
    [ -n "${ZDM_TEST_PG_URL:-}" ] || {
      echo "ZDM_TEST_STATE=pg: no cluster (a setup_file of the suite must call state_setup_file)" >&2
      return 1
    }
    ZDM_PGMAP="$(mktemp -d "${BATS_TMPDIR:-/tmp}/zdm-pgmap.XXXXXX")"
    : >"$ZDM_PGMAP/index"
    export ZDM_PGMAP ZDM_PG_PREFIX="t${BATS_TEST_NUMBER}"
  fi
}

teardown() {
  # stop anything a test left running in its dir, then remove it
  [ ! -S "$BATS_TEST_TMPDIR/tty-sock" ] || tmux -S "$BATS_TEST_TMPDIR/tty-sock" kill-server 2>/dev/null || true
  pkill -9 -f "$T/" 2>/dev/null || true
  [ -z "${HOLD_PID:-}" ] || release_lock
  cd /
  rm -rf "$T"
  [ -z "${ZDM_PGMAP:-}" ] || rm -rf "$ZDM_PGMAP"
}

# zdm with a time limit; a timeout shows as exit 124
zdm() {
  if state_is_pg; then
    local rc=0
    timeout 60 "$ZDM_BIN" "$@" || rc=$?
    state_sync
    return "$rc"
  fi
  timeout 60 "$ZDM_BIN" "$@"
}

# run ARGS... in the current dir on a real terminal (a private tmux server,
# 200 columns), wait until PROMPT (a fixed string) shows, type ANSWER and
# Enter; print what the terminal showed and return the command's exit code
# (124: it did not finish within 60 s).  Unlike a pipe into script(1), the
# answer is typed only once the prompt is there, so a loaded machine cannot
# lose it.
tty_answer() { # ANSWER PROMPT ARGS...
  local answer="$1" prompt="$2" sock="$BATS_TEST_TMPDIR/tty-sock" i cmd
  shift 2
  cmd="$(printf '%q ' "$@")"
  tmux -S "$sock" -f /dev/null new-session -d -x 200 -y 50 \
    "cd $(printf '%q' "$PWD") && timeout --foreground 60 $cmd; echo \"EXIT=\$?\"; sleep 600"
  for ((i = 0; i < 600; i++)); do
    tmux -S "$sock" capture-pane -p -J -S - | grep -qF -- "$prompt" && break
    tmux -S "$sock" capture-pane -p -J -S - | grep -q '^EXIT=' && break
    sleep 0.1
  done
  tmux -S "$sock" send-keys -l -- "$answer"
  tmux -S "$sock" send-keys Enter
  for ((i = 0; i < 600; i++)); do
    tmux -S "$sock" capture-pane -p -J -S - | grep -q '^EXIT=' && break
    sleep 0.1
  done
  local pane
  pane="$(tmux -S "$sock" capture-pane -p -J -S -)"
  tmux -S "$sock" kill-server 2>/dev/null || true
  printf '%s\n' "$pane" | grep -v '^EXIT='
  local rc
  rc="$(printf '%s\n' "$pane" | sed -n 's/^EXIT=//p' | tail -1)"
  return "${rc:-124}"
}

# the newest journal in $1 (a state dir): the one written to last
journal_of() {
  if state_is_pg; then
    local key s id
    pgstate_abs "$1"
    key="$REPLY"
    pgstate_schema "$key"
    s="$REPLY"
    [ -n "$s" ] || { echo "journal_of: no state '$1' in this test" >&2; return 1; }
    id="$(_state_sql "SELECT run_id FROM $s.journal GROUP BY run_id
      ORDER BY max(written) DESC, run_id DESC LIMIT 1")"
    [ -n "$id" ] || { echo "journal_of: no run in state '$1'" >&2; return 1; }
    state_sync
    echo "$key/runs/$id.jsonl"
    return 0
  fi
  ls -t "$1"/runs/*.jsonl | head -1
}

# events of a journal, one "event step" per line
events() {
  jq -r '[.event, (.step // "")] | join(" ") | rtrimstr(" ")' "$1"
}

# a runbook in $T/rb.yml from stdin
runbook() {
  cat >"$T/rb.yml"
}

# the newest journal in $T/state
J() {
  journal_of "$T/state"
}

# events of the newest journal in $T/state, one "event step" per line
timeline() {
  events "$(J)"
}

# a plugin's file from stdin: plugin_file DIR NS.NAME writes DIR/NS/NAME.lua
plugin_file() {
  local f="$1/${2//.//}.lua"
  mkdir -p "$(dirname "$f")"
  cat >"$f"
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
  journal_edited "$1"
}

# ---- the state, on either backend (see the top of this file) ----------------

# run CMD... in the file pass only (an assertion about files: a torn line)
on_file_state() {
  state_is_pg || "$@"
}

# skip this test in the PostgreSQL pass only; $1 says why, in one line
file_only() {
  if state_is_pg; then
    skip "file state only: $1"
  fi
}

# psql as superuser on the file's state database (over its unix socket)
_pg() {
  "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -At -h "$ZDM_TEST_PG_SOCK" -p "$ZDM_TEST_PG_PORT" \
    -U postgres -d "$ZDM_TEST_PG_DB" "$@"
}

# one SQL text, -At output; more psql options after it
_state_sql() {
  _pg "${@:2}" -c "$1"
}

# the schema of state dir $1 (any path), or fail
_state_schema_of() {
  pgstate_abs "$1"
  pgstate_schema "$REPLY"
  [ -n "$REPLY" ] || { echo "no state '$1' in this test" >&2; return 1; }
  echo "$REPLY"
}

# has a zdm of this test run since the last sync, or is one still running
# ($ZDM_PGMAP/ran: their pids; $ZDM_PGMAP/seen: how many of those lines were
# looked at, then the pids that were alive then).  Builtins only.
_state_dirty() {
  local ran="$ZDM_PGMAP/ran" seen="$ZDM_PGMAP/seen" done=0 pid
  local -a pids live=() alive=()
  [ -e "$ran" ] || return 1
  if [ -e "$seen" ]; then
    { read -r done; mapfile -t live; } <"$seen"
  fi
  mapfile -t pids <"$ran"
  [ "${#pids[@]}" -gt "$done" ] || [ "${#live[@]}" -gt 0 ] || return 1
  for pid in "${live[@]}" "${pids[@]:done}"; do
    kill -0 "$pid" 2>/dev/null && alive+=("$pid")
  done
  printf '%s\n' "${#pids[@]}" "${alive[@]}" >"$seen"
}

# write each run of each state of the test to STATE/runs/RUN_ID.jsonl, as a
# state dir holds it, when a zdm may have changed something since the last
# time; a file that changed is replaced (renamed over), a new one written
state_sync() {
  state_is_pg && [ -n "${ZDM_PGMAP:-}" ] && [ -s "$ZDM_PGMAP/index" ] || return 0
  _state_dirty || return 0
  local s key q=""
  while IFS=$'\t' read -r s key; do
    q="${q:+$q UNION ALL }SELECT '$key', run_id, seq, record FROM $s.journal"
  done <"$ZDM_PGMAP/index"
  _pg -F $'\t' -c "$q ORDER BY 1, 2, 3" 2>>"$ZDM_PGMAP/sync.err" |
    awk -F'\t' -v tag=".sync$BASHPID" '
      function q(s) { gsub(/\047/, "\047\\\047\047", s); return "\047" s "\047" }
      {
        f = $1 "/runs/" $2 ".jsonl"
        if (!(f in text)) { order[++n] = f; dir[f] = $1 "/runs"; text[f] = "" }
        text[f] = text[f] substr($0, length($1) + length($2) + length($3) + 4) "\n"
      }
      END {
        for (i = 1; i <= n; i++) {
          f = order[i]; old = ""
          while ((r = (getline line < f)) > 0) old = old line "\n"
          close(f)
          if (old == text[f]) continue
          if (r < 0) {
            if (!(dir[f] in made)) { system("mkdir -p " q(dir[f])); made[dir[f]] = 1 }
            printf "%s", text[f] > f; close(f)
          } else {
            printf "%s", text[f] > (f tag); close(f tag)
            system("mv -f " q(f tag) " " q(f))
          }
        }
      }'
}

if state_is_pg; then
  # the journals a test reads with jq are the state's rows as they are now
  jq() {
    state_sync
    command jq "$@"
  }
fi

# a journal file (STATE/runs/RUN_ID.jsonl) was edited by the test: in the
# PostgreSQL pass its lines become the run's rows (line N is seq N, each row
# keeps its `written`), changed as a superuser with the trigger off
journal_edited() {
  state_is_pg || return 0
  local p key s run
  pgstate_abs "$1"
  p="$REPLY"
  key="${p%/*}"
  [ "${key##*/}" = runs ] || return 0
  key="${key%/*}"
  pgstate_schema "$key"
  s="$REPLY"
  [ -n "$s" ] || return 0
  run="${p##*/}"
  run="${run%.jsonl}"
  _pg -v run="$run" >/dev/null <<SQL
BEGIN;
SET LOCAL session_replication_role = replica;
CREATE TEMP TABLE w ON COMMIT DROP AS SELECT seq, written FROM $s.journal WHERE run_id = :'run';
CREATE TEMP TABLE n (seq bigserial, record text) ON COMMIT DROP;
\copy n (record) FROM '$p' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
DELETE FROM $s.journal WHERE run_id = :'run';
INSERT INTO $s.journal (run_id, seq, record, written)
  SELECT :'run', n.seq, n.record, coalesce(w.written, (SELECT max(written) FROM w), clock_timestamp())
  FROM n LEFT JOIN w USING (seq) WHERE n.record IS NOT NULL;
COMMIT;
SQL
}

# how zdm names the journal $1 in its messages: the path as given, or for a
# run kept in PostgreSQL pg:user@host:port/db/SCHEMA/RUN_ID
jname() {
  if state_is_pg; then
    local p key
    pgstate_abs "$1"
    p="$REPLY"
    key="${p%/*}"
    pgstate_schema "${key%/*}"
    if [ "${key##*/}" = runs ] && [ -n "$REPLY" ]; then
      p="${p##*/}"
      echo "pg:$ZDM_TEST_PG_WHERE/$REPLY/${p%.jsonl}"
      return 0
    fi
  fi
  echo "$1"
}

# the pid the run lock of runbook $2 in state $1 names while it is held (its
# holder's record, even of a holder that died); nothing once released
lock_holder() {
  if state_is_pg; then
    local s
    s="$(_state_schema_of "$1")" || return 1
    _state_sql "SELECT pid FROM $s.locks WHERE runbook = '$2' AND backend_pid IS NOT NULL"
  elif [ -s "$1/locks/$2.lock" ]; then
    command jq -r .pid "$1/locks/$2.lock"
  fi
}

# what a refused run says of the holder after its run id: "since TIME", and
# ", actor WHO" on PostgreSQL (docs/state.md)
lock_detail() {
  if state_is_pg; then
    local s
    s="$(_state_schema_of "$1")" || return 1
    _state_sql "SELECT 'since ' || to_char(since AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')
      || ', actor ' || actor FROM $s.locks WHERE runbook = '$2'"
  else
    echo "since $(command jq -r .since "$1/locks/$2.lock")"
  fi
}

# hold the run lock of runbook $2 in state $1 as another process would, until
# release_lock: flock on its lock file, or the advisory lock from a session of
# its own
hold_lock() {
  if state_is_pg; then
    local s
    s="$(_state_schema_of "$1")" || return 1
    PGAPPNAME="zdm-test-hold-$ZDM_PG_PREFIX" _pg \
      -c "SELECT pg_advisory_lock(hashtext('$s'), hashtext('$2'))" -c "SELECT pg_sleep(120)" \
      >/dev/null 2>&1 3>&- &
    HOLD_PID=$!
    HOLD_KEY="hashtext('$s')::bit(32)::bigint::oid AND objid = hashtext('$2')::bit(32)::bigint::oid"
    poll 100 0.05 _lock_held || { echo "hold_lock: not held in 5 s" >&2; return 1; }
  else
    mkdir -p "$1/locks"
    exec 9>"$1/locks/$2.lock"
    flock -x 9
    HOLD_PID=fd9
  fi
}

_lock_held() {
  [ "$(_state_sql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
    AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND objsubid = 2 AND classid = $HOLD_KEY")" = 1 ]
}

release_lock() {
  if [ "$HOLD_PID" = fd9 ]; then
    exec 9>&-
  else
    _state_sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
      WHERE application_name = 'zdm-test-hold-$ZDM_PG_PREFIX' AND datname = current_database()" >/dev/null
    wait "$HOLD_PID" 2>/dev/null || true
    poll 100 0.05 eval '! _lock_held' || echo "release_lock: still held after 5 s" >&2
  fi
  HOLD_PID=
}

# mv state dir $1 to $2 (in the PostgreSQL pass, its schema goes with it)
move_state() {
  mv "$1" "$2"
  if state_is_pg; then
    local from to
    pgstate_abs "$1"
    from="$REPLY"
    pgstate_abs "$2"
    to="$REPLY"
    awk -F'\t' -v OFS='\t' -v f="$from" -v t="$to" '$2 == f { $2 = t } { print }' \
      "$ZDM_PGMAP/index" >"$ZDM_PGMAP/index.new" && mv "$ZDM_PGMAP/index.new" "$ZDM_PGMAP/index"
  fi
}
