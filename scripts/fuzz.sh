#!/usr/bin/env bash
# Run zdm's libFuzzer harnesses (fuzz/fuzz_*.c, built by `make fuzz-build`)
# for FUZZ_SECONDS each, from seed corpora made from tests/data and runbooks/,
# and print one table row per harness: seconds, executions, execs/s, crashes.
#
#   FUZZ_SECONDS  seconds per harness (default 30)
#   FUZZ_BIN      the directory with fuzz-NAME binaries (default build-fuzz)
#   FUZZ_CORPUS   where corpora are kept between runs (default
#                 ${XDG_CACHE_HOME:-~/.cache}/zdm-fuzz); never inside the checkout
#   ZDM_BIN       a zdm binary to make seed journals with (default build/zdm)
#
# Exits 1 if any harness found a crash, a leak or a sanitizer report (the
# input is kept under the run's temp dir, whose path is printed).
set -uo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
: "${FUZZ_SECONDS:=30}"
: "${FUZZ_BIN:=$REPO/build-fuzz}"
: "${FUZZ_CORPUS:=${XDG_CACHE_HOME:-$HOME/.cache}/zdm-fuzz}"
: "${ZDM_BIN:=$REPO/build/zdm}"
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(runbook expr journal events)

work="$(mktemp -d "${TMPDIR:-/tmp}/zdm-fuzz.XXXXXX")"
seeds="$work/seeds"
mkdir -p "$seeds"/{runbook,expr,journal,events}

# runbooks: every runbook the tests and the examples have
i=0
for f in "$REPO"/tests/data/validate/*.yml "$REPO"/runbooks/*.yml; do
  cp "$f" "$seeds/runbook/$((i++)).yml"
done
# expressions: every ${{ ... }} in them, one a file
grep -ho '\${{[^}]*}}' "$REPO"/tests/data/validate/*.yml "$REPO"/runbooks/*.yml 2>/dev/null |
  sort -u | awk -v d="$seeds/expr" '{ f = d "/" NR ".txt"; printf "%s", $0 > f; close(f) }'
printf 'x ${{ vars.a + 1 }} ${{ steps.one.outputs.stdout }}' >"$seeds/expr/a.txt"
printf '${{ steps.two-x.outputs.code == 200 and run.dry_run }}' >"$seeds/expr/b.txt"
printf 'result[1].value > 0.05 or isnan(result[1].value)' >"$seeds/expr/c.txt"
# journals: a run that succeeds and one that fails and rolls back, made by zdm
if [ -x "$ZDM_BIN" ]; then
  mkdir -p "$work/rb"
  cat >"$work/rb/ok.yml" <<'YML'
zdm: 1
name: fuzz-seed
vars: {n: 1}
steps:
  - {id: one, uses: exec, with: {command: [echo, hi]}}
  - {id: link, uses: release.symlink, with: {link: cur, target: "."}}
  - {id: two, uses: exec, with: {command: [sh, -c, "exit ${{ vars.n }}"]}}
YML
  (cd "$work/rb" && ZDM_PLUGIN_PATH="$REPO/plugins" "$ZDM_BIN" run ok.yml --var n=0 >/dev/null 2>&1
   ZDM_PLUGIN_PATH="$REPO/plugins" "$ZDM_BIN" run ok.yml --var n=1 >/dev/null 2>&1)
  k=0 n=0
  for j in "$work"/rb/.zdm/runs/*.jsonl; do
    cp "$j" "$seeds/journal/$k.jsonl"
    head -c -20 "$j" >"$seeds/journal/$k-torn.jsonl"
    while IFS= read -r line; do
      printf '%s' "$line" >"$seeds/events/$k-$((n++)).json"
    done <"$j"
    k=$((k + 1))
  done
else
  echo "fuzz: $ZDM_BIN not built: journal and event seeds are the hand-made ones only" >&2
fi
printf '{"event":"step.succeeded","data":{"outputs":{"pin":4711,"tok":"a\\u0000s3cr3t"}}}' >"$seeds/events/h1.json"
printf '{"run":"r","seq":1,"prev":"%064d","hash":"%064d","event":"run.started","data":{}}\n' 0 0 >"$seeds/journal/h1.jsonl"

printf '| harness | seconds | executions | execs/s | crashes |\n|---|---|---|---|---|\n'
fails=0 total=0
for n in "${names[@]}"; do
  bin="$FUZZ_BIN/fuzz-$n"
  [ -x "$bin" ] || { echo "fuzz: $bin is missing (make fuzz-build)" >&2; exit 2; }
  corpus="$FUZZ_CORPUS/$n"
  mkdir -p "$corpus" "$work/crash-$n"
  log="$work/$n.log"
  ZDM_PLUGIN_PATH="$REPO/plugins" ASAN_OPTIONS=detect_leaks=1 \
    "$bin" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/crash-$n/" "$corpus" "$seeds/$n" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  secs=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  crashes=$(find "$work/crash-$n" -type f | wc -l)
  [ "$rc" -eq 0 ] || [ "$crashes" -gt 0 ] || crashes=1
  printf '| %s | %s | %s | %s | %s |\n' "$n" "$FUZZ_SECONDS" "${execs:-?}" "${secs:-?}" "$crashes"
  total=$((total + ${execs:-0}))
  if [ "$crashes" -gt 0 ]; then
    fails=$((fails + 1))
    echo "fuzz: $n failed (exit $rc); log $log, inputs in $work/crash-$n" >&2
    grep -m 20 -E 'ERROR|SUMMARY|panic|==[0-9]+==' "$log" >&2
  fi
done
echo "fuzz: $total executions in all, $fails harness(es) with crashes"
if [ "$fails" -eq 0 ]; then rm -rf "$work"; fi
[ "$fails" -eq 0 ]
