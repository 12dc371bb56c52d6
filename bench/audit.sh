#!/usr/bin/env bash
# bench/audit.sh - what the audit trail costs (see bench/README.md, "audit.sh").
#
#   make && bash bench/audit.sh
#
# 1. `zdm audit verify STATE_DIR` and `zdm audit export` over JOURNALS journals
#    (copies of real journals of a STEPS-step run), beside two baselines over the
#    same files in the same run: sha256sum of the bytes (the hashing floor) and
#    a Python re-verification of every chain (hashlib + json: the same work in
#    another language).  Plain sha256 chains and HMAC chains.
# 2. The cost of a notify: webhook: a STEPS-step run with no webhook, with one
#    webhook on 127.0.0.1 (tests/servers/httpd.py, which answers 200), beside
#    curl POSTing the same number of bodies to the same receiver.
#
# Knobs: ZDM_BIN, JOURNALS (default 200), STEPS (10), REPS (5; the median is
# shown), KEEP=1 (keep the temp dir).  Prints a table; fails only when zdm does.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
ZDM_BIN="${ZDM_BIN:-$REPO/build/zdm}"
JOURNALS="${JOURNALS:-200}"
STEPS="${STEPS:-10}"
REPS="${REPS:-5}"
W="$(mktemp -d "${TMPDIR:-/tmp}/zdm-bench-audit.XXXXXX")"
HTTPD_PID=

cleanup() {
  local rc=$?	# the bench's own status, not the receiver's (killed: 143)
  [ -n "$HTTPD_PID" ] && kill "$HTTPD_PID" 2>/dev/null && { wait "$HTTPD_PID" 2>/dev/null || true; }
  [ "${KEEP:-}" = 1 ] && echo "kept $W" >&2 || rm -rf "$W"
  exit "$rc"
}
trap cleanup EXIT

now_ms() { date +%s%3N; }

# median of the numbers on stdin
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# time_ms CMD...: wall ms of one run, output discarded; exits on failure of
# anything but `audit verify`/`export` exit codes 0
time_ms() {
  local t0 t1
  t0=$(now_ms)
  "$@" >/dev/null 2>&1 || { echo "bench: failed: $*" >&2; exit 1; }
  t1=$(now_ms)
  echo $((t1 - t0))
}

# med CMD...: median over REPS runs
med() {
  local i
  for i in $(seq "$REPS"); do time_ms "$@"; done | median
}

runbook() {   # FILE [notify-url]
  {
    echo "zdm: 1"
    echo "name: bench-audit"
    if [ -n "${2:-}" ]; then
      echo "notify:"
      echo "  - url: $2"
    fi
    echo "steps:"
    local i
    for i in $(seq "$STEPS"); do
      printf '  - id: s%d\n    uses: exec\n    with: {command: [echo, "step %d"]}\n' "$i" "$i"
    done
  } >"$1"
}

# a state dir of JOURNALS journals: 10 real runs, each copied under new names
make_state() {   # DIR [key]
  local dir="$1" key="${2:-}" i k n=0
  runbook "$W/rb.yml"
  for i in $(seq 10); do
    ZDM_AUDIT_KEY="$key" "$ZDM_BIN" run "$W/rb.yml" --state-dir "$dir.src" >/dev/null
  done
  mkdir -p "$dir/runs"
  while [ "$n" -lt "$JOURNALS" ]; do
    for f in "$dir.src"/runs/*.jsonl; do
      [ "$n" -lt "$JOURNALS" ] || break
      cp "$f" "$dir/runs/$(printf '20261101T000000Z-%04x' "$n").jsonl"
      n=$((n + 1))
    done
  done
}

pyverify() {   # DIR [key]: the chain rule of docs/audit.md, in Python
  python3 - "$1" "${2:-}" <<'EOF'
import glob, hashlib, hmac, json, sys
d, key = sys.argv[1], sys.argv[2].encode()
for path in sorted(glob.glob(d + "/runs/*.jsonl")):
    prev = "0" * 64
    for line in open(path, encoding="utf-8"):
        r = json.loads(line)
        h = r.pop("hash")
        assert r["prev"] == prev
        msg = (prev + json.dumps(r, sort_keys=True, separators=(",", ":"), ensure_ascii=False)).encode()
        want = hmac.new(key, msg, hashlib.sha256).hexdigest() if key else hashlib.sha256(msg).hexdigest()
        assert want == h, path
        prev = h
EOF
}

make_state "$W/plain"
make_state "$W/keyed" bench-key
bytes=$(cat "$W"/plain/runs/*.jsonl | wc -c)
records=$(cat "$W"/plain/runs/*.jsonl | wc -l)

v_zdm=$(med "$ZDM_BIN" audit verify "$W/plain")
v_sum=$(med sh -c "sha256sum '$W'/plain/runs/*.jsonl")
v_py=$(med pyverify "$W/plain")
k_zdm=$(med env ZDM_AUDIT_KEY=bench-key "$ZDM_BIN" audit verify "$W/keyed")
k_py=$(med pyverify "$W/keyed" bench-key)
e_json=$(med "$ZDM_BIN" audit export --state-dir "$W/plain" --format json)
e_csv=$(med "$ZDM_BIN" audit export --state-dir "$W/plain" --format csv)

# notify: a receiver on 127.0.0.1
echo '{"/hook": {"status": 200, "body": "ok"}}' >"$W/control.json"
python3 "$REPO/tests/servers/httpd.py" "$W/" --lifetime 600 >"$W/httpd.out" 2>&1 &
HTTPD_PID=$!
for i in $(seq 200); do [ -s "$W/httpd.port" ] && break; sleep 0.025; done
[ -s "$W/httpd.port" ] || { echo "bench: httpd.py did not start" >&2; cat "$W/httpd.out" >&2; exit 1; }
url="http://127.0.0.1:$(cat "$W/httpd.port")/hook"
runbook "$W/plain.yml"
runbook "$W/hooked.yml" "$url"
n_plain=$(med "$ZDM_BIN" run "$W/plain.yml" --state-dir "$W/nplain")
n_hook=$(med "$ZDM_BIN" run "$W/hooked.yml" --state-dir "$W/nhook")
# inside each run: run.started's record to the next one (the start webhook
# is sent between the two), from the journals' own timestamps
gap() {
  local f
  for f in "$1"/runs/*.jsonl; do
    jq -rs '(.[1].ts, .[0].ts) | sub("Z$"; "") | split(".") | ((.[0] + "Z" | fromdate) * 1000 + (.[1] | tonumber))' "$f" |
      paste -sd' ' | awk '{print $1 - $2}'
  done | median
}
g_plain=$(gap "$W/nplain")
g_hook=$(gap "$W/nhook")
body='{"text":"zdm: run 20261121T100000Z-7f3a of '"'"'bench-audit'"'"' finished: succeeded (exit 0)"}'
n_curl=$(med sh -c "curl -s -o /dev/null -X POST -H 'Content-Type: application/json' -d '$body' '$url' &&
  curl -s -o /dev/null -X POST -H 'Content-Type: application/json' -d '$body' '$url'")
posts=$(grep -c '"path": "/hook"' "$W/requests.jsonl" || true)

echo "audit trail cost, ms (median of $REPS; $JOURNALS journals, $records records, $bytes bytes; $(nproc) CPUs)"
echo
printf '%-58s %8s\n' "what" "ms"
printf '%-58s %8s\n' "zdm audit verify STATE_DIR (sha256 chains)" "$v_zdm"
printf '%-58s %8s\n' "  baseline: sha256sum of the same files" "$v_sum"
printf '%-58s %8s\n' "  baseline: python3 re-verifying every chain" "$v_py"
printf '%-58s %8s\n' "zdm audit verify STATE_DIR (hmac-sha256 chains)" "$k_zdm"
printf '%-58s %8s\n' "  baseline: python3 re-verifying every HMAC chain" "$k_py"
printf '%-58s %8s\n' "zdm audit export --format json" "$e_json"
printf '%-58s %8s\n' "zdm audit export --format csv" "$e_csv"
printf '%-58s %8s\n' "zdm run, $STEPS steps, no webhook" "$n_plain"
printf '%-58s %8s\n' "zdm run, $STEPS steps, 1 webhook (start + finish: 2 POSTs)" "$n_hook"
printf '%-58s %8s\n' "  baseline: curl, 2 POSTs of a like body" "$n_curl"
printf '%-58s %8s\n' "run.started -> next record, no webhook (journal ts)" "$g_plain"
printf '%-58s %8s\n' "run.started -> next record, 1 webhook (journal ts)" "$g_hook"
echo
echo "(the receiver got $posts POSTs in all)"
