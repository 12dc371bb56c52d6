#!/usr/bin/env bash
# bench/progressive.sh - how long a feature flag change takes to reach an
# application (see bench/README.md, "progressive.sh").
#
#   make && bash bench/progressive.sh
#
# A real Unleash (unleash-server from npm, scripts/deps.sh; its own
# PostgreSQL 15 cluster with fsync=off: tests/servers/unleash.bash) on
# 127.0.0.1.  A client polls GET /api/client/features/FLAG with a client
# token over one keep-alive connection, as fast as the server answers (what
# an SDK does every 15 s by default), and notes when it first sees the new
# state.  The same changes are made, in the same run, alternately:
#
#   zdm   `zdm run` of a one-step runbook (flag.unleash: reads and records the
#         state, changes it, polls the client API until it shows the change)
#   curl  the bare admin API request that makes the same change
#         (PUT the flexibleRollout strategy, or POST .../on | .../off)
#
# and for each: the command's wall time (process start to exit) and the time
# from its start until the polling client saw the change.  Medians of REPS.
#
# Knobs: ZDM_BIN, REPS (default 5; the median is shown), KEEP=1 (keep the
# temp dir).  Prints a table; fails only when zdm or the server does.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
ZDM_BIN="${ZDM_BIN:-$REPO/build/zdm}"
REPS="${REPS:-5}"
# shellcheck source=../tests/servers/unleash.bash
source "$REPO/tests/servers/unleash.bash"
W="$(mktemp -d "${TMPDIR:-/tmp}/zdm-bench-flag.XXXXXX")"

cleanup() {
  local rc=$?
  unleash_stop 2>/dev/null || true
  [ "${KEEP:-}" = 1 ] && echo "kept $W" >&2 || rm -rf "$W"
  exit "$rc"
}
trap cleanup EXIT

now_ms() { date +%s%3N; }

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# the polling client: waits until FLAG shows WANT (on, off, or a percent),
# writes the time it first saw it (ms since the epoch) to OUT; READY is
# written after the first answer
poller() {   # FLAG WANT READY OUT
  python3 - "$UNLEASH_PORT" "$UNLEASH_CLIENT_TOKEN" "$@" <<'EOF'
import http.client, json, sys, time
port, token, flag, want, ready, out = sys.argv[1:7]
c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
deadline = time.time() + 60
first = True
while time.time() < deadline:
    c.request("GET", "/api/client/features/" + flag, headers={"Authorization": token})
    r = c.getresponse()
    f = json.loads(r.read() or b"{}")
    seen = False
    if want == "on":
        seen = f.get("enabled") is True
    elif want == "off":
        seen = f.get("enabled") is False
    else:
        seen = f.get("enabled") is True and any(
            s.get("name") == "flexibleRollout" and s.get("parameters", {}).get("rollout") == want
            for s in f.get("strategies", []))
    if first:
        open(ready, "w").write("1")
        first = False
        if seen:
            sys.exit("poller: " + flag + " already shows " + want)
    if seen:
        open(out, "w").write("%d" % int(time.time() * 1000))
        sys.exit(0)
sys.exit("poller: " + flag + " never showed " + want)
EOF
}

runbook() {   # FILE FLAG ACTION [PERCENT]
  cat >"$1" <<YML
zdm: 1
name: bench-flag
secrets:
  admin: {env: UNLEASH_ADMIN_TOKEN}
  client: {env: UNLEASH_CLIENT_TOKEN}
steps:
  - id: change
    uses: flag.unleash
    with:
      url: $UNLEASH
      flag: $2
      environment: development
      action: $3
      token: \${{ secrets.admin }}
      client_token: \${{ secrets.client }}
      verify_interval: 10ms
YML
  [ -z "${4:-}" ] || echo "      percent: $4" >>"$1"
}

# measure WHO FLAG WANT CMD...: runs CMD with a poller watching for WANT;
# appends "wall seen" (ms) to $W/WHO.WANTKIND
measure() {
  local who=$1 flag=$2 want=$3 kind t0 t1 seen ppid
  shift 3
  kind=$([[ $want =~ ^[0-9]+$ ]] && echo rollout || echo toggle)
  rm -f "$W/ready" "$W/seen"
  poller "$flag" "$want" "$W/ready" "$W/seen" &
  ppid=$!
  for _ in $(seq 500); do [ -s "$W/ready" ] && break; sleep 0.01; done
  t0=$(now_ms)
  "$@" >"$W/cmd.out" 2>&1 || { echo "bench: failed: $*" >&2; cat "$W/cmd.out" >&2; exit 1; }
  t1=$(now_ms)
  wait "$ppid" || { echo "bench: the client never saw $want" >&2; exit 1; }
  seen=$(cat "$W/seen")
  echo "$((t1 - t0)) $((seen - t0))" >>"$W/$who.$kind"
}

echo "starting unleash-server (and its PostgreSQL)..." >&2
unleash_start
export UNLEASH_ADMIN_TOKEN UNLEASH_CLIENT_TOKEN
env_url="$UNLEASH/api/admin/projects/default/features"
unleash_flag bench-zdm
unleash_flag bench-curl
# both flags on with one flexibleRollout strategy at 100 %
for f in bench-zdm bench-curl; do
  unleash_api POST "/projects/default/features/$f/environments/development/on" >/dev/null
done
sid=$(unleash_api GET /projects/default/features/bench-curl/environments/development/strategies | jq -r '.[0].id')
curl_put() {   # PERCENT
  curl -sS --fail-with-body -o /dev/null -X PUT -H "Authorization: $UNLEASH_ADMIN_TOKEN" \
    -H 'Content-Type: application/json' \
    --data "{\"name\":\"flexibleRollout\",\"constraints\":[],\"parameters\":{\"rollout\":\"$1\",\"stickiness\":\"default\",\"groupId\":\"bench-curl\"}}" \
    "$env_url/bench-curl/environments/development/strategies/$sid"
}
curl_toggle() {   # on|off
  curl -sS --fail-with-body -o /dev/null -X POST -H "Authorization: $UNLEASH_ADMIN_TOKEN" \
    "$env_url/bench-curl/environments/development/$1"
}

for i in $(seq "$REPS"); do
  pct=$((i % 2 ? 10 : 20))
  runbook "$W/rb.yml" bench-zdm rollout "$pct"
  measure zdm bench-zdm "$pct" "$ZDM_BIN" run "$W/rb.yml" --state-dir "$W/state"
  measure curl bench-curl "$pct" curl_put "$pct"
  runbook "$W/rb.yml" bench-zdm disable
  measure zdm bench-zdm off "$ZDM_BIN" run "$W/rb.yml" --state-dir "$W/state"
  measure curl bench-curl off curl_toggle off
  runbook "$W/rb.yml" bench-zdm enable
  measure zdm bench-zdm on "$ZDM_BIN" run "$W/rb.yml" --state-dir "$W/state"
  measure curl bench-curl on curl_toggle on
done

col() { awk -v c="$2" '{print $c}' "$1" | median; }
echo
echo "flag change -> a client polling /api/client/features sees it (unleash-server $(jq -r .version \
  "$(dirname "$UNLEASH_SERVER_JS")/../package.json"), 127.0.0.1; medians of $REPS; ms;"
echo "load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs)"
echo
printf '| %-44s | %-12s | %-23s |\n' "change" "command wall" "start -> client sees it"
printf '|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..46})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..25})"
for kind in rollout toggle; do
  for who in zdm curl; do
    case $who.$kind in
      zdm.rollout) what="zdm run (flag.unleash rollout 10 <-> 20 %)" ;;
      curl.rollout) what="curl PUT strategy (rollout 10 <-> 20 %)" ;;
      zdm.toggle) what="zdm run (flag.unleash enable / disable)" ;;
      curl.toggle) what="curl POST .../on, .../off" ;;
    esac
    printf '| %-44s | %12s | %23s |\n' "$what" "$(col "$W/$who.$kind" 1)" "$(col "$W/$who.$kind" 2)"
  done
done
echo
echo "zdm's wall time includes its start, the runbook, the journal (fsync'd records),"
echo "the state it records before the change and its own wait until the client API shows it."
