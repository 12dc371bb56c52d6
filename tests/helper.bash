# Shared setup for the bats suites: every test gets its own temp dir, its own
# state dir, and runs zdm under `timeout` so a hang fails instead of stalling.
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'
load '/usr/lib/bats/bats-file/load'

REPO="$(cd "$BATS_TEST_DIRNAME/.." && pwd)"
: "${ZDM_BIN:=$REPO/build/zdm}"

# free_port, port_open, poll, serve, stop_pids (tests/servers/common.bash)
source "$(dirname "${BASH_SOURCE[0]}")/servers/common.bash"

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
}

teardown() {
  # stop anything a test left running in its dir, then remove it
  pkill -9 -f "$T/" 2>/dev/null || true
  cd /
  rm -rf "$T"
}

# zdm with a time limit; a timeout shows as exit 124
zdm() {
  timeout 60 "$ZDM_BIN" "$@"
}

# the newest journal in $1 (a state dir)
journal_of() {
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
}
