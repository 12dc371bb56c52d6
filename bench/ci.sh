#!/usr/bin/env bash
# bench/ci.sh — what zdm's CI outputs cost: the same runbook run with text output (the
# baseline, measured in the same run), with --output json (every record also parsed and
# re-emitted as an event), with --junit (the journal read back and the report written,
# fsynced and renamed), and with both.
#
#   make && bash bench/ci.sh                 (from the repo root)
#
# Environment: ZDM_BIN (default build/zdm), STEPS (exec steps in the runbook, default
# 300), REPS (repetitions of each mode, back to back in rotation; median and min are
# printed, default 5), KEEP=1 keeps the temporary directory.
#
# Prints a table and exits 0 whatever the timings are; non-zero only if zdm failed (a
# run that did not exit 0, a stream without its exit event, a report xmllint rejects).

set -euo pipefail

ZDM=${ZDM_BIN:-build/zdm}
STEPS=${STEPS:-300}
REPS=${REPS:-5}
die() { printf 'ci.sh: %s\n' "$*" >&2; exit 1; }
[[ -x $ZDM ]] || die "zdm binary '$ZDM' not found (run make, or set ZDM_BIN)"
case $ZDM in /*) ;; *) ZDM=$PWD/$ZDM ;; esac
XSD=$(cd "$(dirname "$0")/.." && pwd)/tests/data/junit.xsd
((STEPS >= 1 && STEPS <= 20000 && REPS >= 1 && REPS <= 50)) || die "STEPS or REPS out of range"

TMP=$(mktemp -d)
# shellcheck disable=SC2317
cleanup() { if [[ ${KEEP:-0} == 1 ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi; }
trap cleanup EXIT

{
	printf 'zdm: 1\nname: bench-ci\nsteps:\n'
	for ((i = 1; i <= STEPS; i++)); do
		printf '  - id: s%d\n    uses: exec\n    with: {command: ["true"]}\n' "$i"
	done
} >"$TMP/rb.yml"
"$ZDM" validate "$TMP/rb.yml" >/dev/null || die "validate failed"

now_ns() { date +%s%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1e6 }'; }
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
minimum() { printf '%s\n' "$@" | sort -n | head -n 1; }

modes=(text json junit json+junit)
declare -A T
for ((r = 1; r <= REPS; r++)); do
	for m in "${modes[@]}"; do
		sd="$TMP/state-$m-$r"
		args=(run "$TMP/rb.yml" --state-dir "$sd")
		case $m in
		json) args+=(--output json) ;;
		junit) args+=(--junit "$TMP/$m-$r.xml") ;;
		json+junit) args+=(--output json --junit "$TMP/$m-$r.xml") ;;
		esac
		a=$(now_ns)
		"$ZDM" "${args[@]}" >"$TMP/out-$m-$r" 2>/dev/null </dev/null || die "zdm $m run $r failed"
		b=$(now_ns)
		T[$m]+="$(ms "$a" "$b") "
		case $m in
		json | json+junit) tail -n 1 "$TMP/out-$m-$r" | grep -q '"event":"exit","exit_code":0' || die "no exit event ($m)" ;;
		esac
		case $m in
		junit | json+junit) xmllint --noout --schema "$XSD" "$TMP/$m-$r.xml" 2>/dev/null || die "invalid report ($m)" ;;
		esac
	done
done

base=$(median ${T[text]})
printf '\nbench/ci.sh: %d exec steps per run, %d runs per mode (rotated), %s, %d CPUs, load %s\n\n' \
	"$STEPS" "$REPS" "$(uname -sr)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-22s %12s %12s %14s %16s\n' "mode" "median ms" "min ms" "vs text" "per step, us"
for m in "${modes[@]}"; do
	med=$(median ${T[$m]})
	printf '%-22s %12s %12s %14s %16s\n' "zdm run ($m)" "$med" "$(minimum ${T[$m]})" \
		"$(awk -v a="$med" -v b="$base" 'BEGIN { printf "%+.1f%%", (a - b) / b * 100 }')" \
		"$(awk -v a="$med" -v b="$base" -v n="$STEPS" 'BEGIN { printf "%+.1f", (a - b) * 1000 / n }')"
done
printf '\n"vs text" and "per step" compare medians with the text run (the baseline) of the same rotation.\n'
