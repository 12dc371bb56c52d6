#!/usr/bin/env bash
# make demo: release v2 of a small site for real, show the journal, then a
# rollback drill of v3 that puts v2 back.  Everything lives in build/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
ZDM="${ZDM_BIN:-$PWD/build/zdm}"
export ZDM_PLUGIN_PATH="$PWD/plugins"
DEMO="$PWD/build/demo"
SITE="$DEMO/site"
STATE="$DEMO/state"
rm -rf "$DEMO"
mkdir -p "$SITE/releases"

make_release() {   # name
  local r="$SITE/releases/$1"
  mkdir -p "$r/bin"
  printf '<html><body><h1>orders</h1><p>version %s</p></body></html>\n' "$1" > "$r/index.html"
  printf '%s\n' "$1" > "$r/VERSION"
  cat > "$r/bin/check" <<'CHECK'
#!/bin/sh
# the release checks itself: its VERSION file must match what zdm read
here=$(cd "$(dirname "$0")/.." && pwd)
[ "$(cat "$here/VERSION")" = "$EXPECTED_VERSION" ] || { echo "VERSION mismatch" >&2; exit 1; }
grep -q "<html>" "$here/index.html"
CHECK
}
make_release v1
make_release v2
make_release v3
ln -s "$SITE/releases/v1" "$SITE/current"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "live before: $(readlink "$SITE/current")"
say "zdm validate"
"$ZDM" validate runbooks/demo.yml
say "zdm run runbooks/demo.yml --var release=v2"
"$ZDM" run runbooks/demo.yml --state-dir "$STATE" --var site="$SITE" --var release=v2
say "live now: $(readlink "$SITE/current")"
say "zdm log (the journal of that run)"
"$ZDM" log runbooks/demo.yml --state-dir "$STATE"
say "zdm audit verify"
"$ZDM" audit verify "$(ls -t "$STATE"/runs/*.jsonl | head -1)"

say "a rollback drill: release v3, then force a failure after the switch"
set +e
"$ZDM" run runbooks/demo.yml --state-dir "$STATE" --var site="$SITE" --var release=v3 --fail-at verify-live
rc=$?
set -e
say "exit $rc (1: a step failed and the rollback completed); live: $(readlink "$SITE/current")"
[ "$rc" -eq 1 ] && [ "$(readlink "$SITE/current")" = "$SITE/releases/v2" ] || {
  echo "demo: the drill did not roll back as expected" >&2; exit 1; }
say "demo done: v2 is live, the v3 drill was rolled back; journals in $STATE/runs"
