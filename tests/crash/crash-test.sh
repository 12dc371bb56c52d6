#!/usr/bin/env bash
# crash-test.sh - kill zdm at every durable journal write of a few scenarios,
# recover the way an operator would, and check the side effects.
#
# For each scenario, a reference run (no faults) says how many records the
# killed command writes.  For every such record N, three trials:
#   before  ZDM_TEST_CRASH_BEFORE_RECORD=N  SIGKILL before record N is written
#   after   ZDM_TEST_CRASH_AFTER_RECORD=N   SIGKILL once record N is fdatasync'd
#   tear    ZDM_TEST_TEAR_RECORD=N          half of record N's line, then SIGKILL
# then `zdm resume` / `zdm rollback` until it ends, answering the questions
# about steps and undos in doubt from the effects log (the truth), and check:
# zdm died by SIGKILL at that record; recovery's exit code; each effect exactly
# once, in order; `zdm audit verify`; a second recovery has nothing to do (2).
#
# Scenarios (each step appends its name to an effects file, its undo undo-NAME):
#   run              4 steps succeed (s3 is idempotent: true); recover: resume
#   fail             s4 acts, then fails; on_failure: rollback undoes s3 s2 s1;
#                    recover: rollback if the journal has rollback.started,
#                    else resume
#   rollback         a run that succeeded, then `zdm rollback` killed at each of
#                    its records; recover: rollback
#   rollback-killed  as rollback, and the recovering rollback killed at each M
#                    of its own records (all modes), then recovered again
#   rollback-noundo  5 steps, s2 s3 s5 without undo, succeed; `zdm rollback`
#                    (its undo.skipped records of s5, s3 s2 are lazily
#                    durable: one sync for a run of them) killed at each of
#                    its records; recover: rollback
#
# Usage: crash-test.sh [--fast] [--jobs N] [--only N] [SCENARIO...]
#   --fast   a fixed subset, for make test: run and rollback at every boundary;
#            fail around its failure (N 8-11); rollback-killed killed after the
#            middle record of the rollback, then at M 1, 2, every third, last
#   --only N the trials of record N alone (to look at one boundary again)
# Env: ZDM_BIN (default: build/zdm of this checkout); TMPDIR.  Work happens in
# a mktemp -d dir, removed at the end; failing trials' dirs are kept and
# printed.  Exit 0 only when every count is 0.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
ZDM_BIN="${ZDM_BIN:-$repo/build/zdm}"
case "$ZDM_BIN" in /*) ;; *) ZDM_BIN="$PWD/$ZDM_BIN" ;; esac

fast=0 only=""
jobs="$(nproc 2>/dev/null || echo 2)"
scenarios=()
while [ $# -gt 0 ]; do
	case "$1" in
	--fast) fast=1 ;;
	--jobs) jobs="$2"; shift ;;
	--jobs=*) jobs="${1#--jobs=}" ;;
	--only) only="$2"; shift ;;
	-h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	run|fail|rollback|rollback-killed|rollback-noundo) scenarios+=("$1") ;;
	*) echo "crash-test: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
	shift
done
[ ${#scenarios[@]} -gt 0 ] || scenarios=(run fail rollback rollback-killed rollback-noundo)
[ -x "$ZDM_BIN" ] || { echo "crash-test: no zdm binary at $ZDM_BIN (make, or set ZDM_BIN)" >&2; exit 2; }
command -v jq >/dev/null || { echo "crash-test: needs jq" >&2; exit 2; }

MODES=(before after tear)
# every zdm we start has our state dir and environment, none of the caller's
unset ZDM_STATE_DIR ZDM_AUDIT_KEY ZDM_AUDIT_KEY_FILE ZDM_TEST_CRASH_BEFORE_RECORD \
	ZDM_TEST_CRASH_AFTER_RECORD ZDM_TEST_TEAR_RECORD ZDM_TEST_PAUSE_AFTER_READ ZDM_ACTOR \
	GITHUB_ACTIONS GITLAB_CI BUILDKITE CIRCLECI
export NO_COLOR=1 CI=1
export ZDM_PLUGIN_PATH="$repo/plugins"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/zdm-crash-test.XXXXXX")"
KEEP="$(mktemp -d "${TMPDIR:-/tmp}/zdm-crash-failed.XXXXXX")"
trap 'rm -rf "$WORK"; rmdir "$KEEP" 2>/dev/null' EXIT
trap 'exit 130' INT TERM
mkdir -p "$WORK/results" "$WORK/base" "$WORK/t"

# ---- zdm and its journal ---------------------------------------------------
# (few forks: a trial is mostly zdm and the shells of its steps)

# zdm in trial dir $D (its cwd: the runbook and effects paths are relative),
# with a time limit (a hang shows as 124)
z() {
	(cd "$D" && ZDM_STATE_DIR="$D/state" exec timeout 30 "$ZDM_BIN" "$@")
}

# read the newest journal (a run started again after a crash before its
# first record leaves the empty journal of the first beside it): JPATH,
# JDONE (the text of its complete records), JREC (how many), JTORN (1 when
# a torn piece follows them), JLAST (the last complete record)
jload() {
	local f text=""
	JPATH="" JDONE="" JREC=0 JTORN=0 JLAST=""
	for f in "$D"/state/runs/*.jsonl; do
		[ -e "$f" ] || continue
		if [ -z "$JPATH" ] || [ "$f" -nt "$JPATH" ]; then JPATH="$f"; fi
	done
	[ -n "$JPATH" ] || return 0
	IFS= read -r -d '' text <"$JPATH"
	if [ -n "$text" ] && [ "${text: -1}" != $'\n' ]; then
		JTORN=1
		case "$text" in *$'\n'*) text="${text%$'\n'*}"$'\n' ;; *) text="" ;; esac
	fi
	JDONE="$text"
	text="${JDONE//[!$'\n']/}"
	JREC=${#text}
	if [ "$JREC" -gt 0 ]; then
		JLAST="${JDONE%$'\n'}"
		JLAST="${JLAST##*$'\n'}"
	fi
}

# the items in doubt, "step ID" or "undo ID" per line, from the complete
# records: a step whose last step. record is step.started or
# step.interrupted (no end) and that has no undo. record since; a step the
# rollback could not undo because it was in doubt (undo.failed with
# in_doubt); an undo whose last undo. record is undo.started
in_doubt_items() {
	jload
	[ "$JREC" -gt 0 ] || return 0
	printf '%s' "$JDONE" | jq -rs '
		[.[] | select(.step != null)] | group_by(.step) | .[] |
		(map(select(.event | startswith("step."))) | last) as $s |
		(map(select(.event | startswith("undo."))) | last) as $u |
		if $u != null and $u.event == "undo.started" then "undo \($u.step)"
		elif $u != null and $u.event == "undo.failed" and ($u.data.in_doubt // false) then "step \($u.step)"
		elif $u == null and $s != null and ($s.event == "step.started" or $s.event == "step.interrupted")
			then "step \($s.step)"
		else empty end'
}

# ---- effects ---------------------------------------------------------------

# EFF: the effects log, one line each
eload() {
	EFF=()
	[ -e "$D/effects" ] && mapfile -t EFF <"$D/effects"
	return 0
}

# N: how often line $1 is in EFF
count() {
	local l
	N=0
	for l in "${EFF[@]}"; do [ "$l" = "$1" ] && N=$((N + 1)); done
	return 0
}
has() { local l; for l in "${EFF[@]}"; do [ "$l" = "$1" ] && return 0; done; return 1; }

# the operator's answer for an item in doubt, from the effects log: a step
# in doubt during resume: it happened -> skip, else retry; during rollback:
# it happened -> retry (undo it), else skip; an undo in doubt: it was undone
# -> skip, else retry
answer() {   # command kind id: sets A
	if [ "$2" = undo ]; then
		if has "undo-$3"; then A=skip; else A=retry; fi
	elif [ "$1" = resume ]; then
		if has "$3"; then A=skip; else A=retry; fi
	else
		if has "$3"; then A=retry; else A=skip; fi
	fi
}

# ANSWERS: the --in-doubt STEP=retry|skip options that answer every item in
# doubt for command $1, one each
in_doubt_args() {   # command
	local kind id
	ANSWERS=()
	eload
	while read -r kind id; do
		[ -n "$kind" ] || continue
		answer "$1" "$kind" "$id"
		ANSWERS+=(--in-doubt "$id=$A")
	done < <(in_doubt_items)
	return 0
}

# ---- recovery --------------------------------------------------------------

# recover as an operator would: COMMAND (resume, rollback, or auto: rollback
# once the journal has rollback.started, else resume) until it does not ask
# (exit 5); each exit 5 is answered from the effects log.  A journal with no
# complete record is a run that never started (zdm resume says so): run it
# again.  Sets RC and CMD (the last command run); at most 6 rounds.
recover() {   # command
	local round kind id
	RC=-1 ANSWERS=()
	for round in 1 2 3 4 5 6; do
		CMD="$1"
		jload
		if [ "$JREC" -eq 0 ]; then
			CMD=run ANSWERS=()
		elif [ "$CMD" = auto ]; then
			CMD=resume
			case "$JDONE" in *'"event":"rollback.started"'*) CMD=rollback ;; esac
			# the failing step left in doubt after it acted (its
			# effect is there) did fail: the operator rolls back
			# rather than resume (skip would take it as done,
			# retry would run it twice)
			if [ -n "$FAILING" ]; then
				eload
				while read -r kind id; do
					if [ "$kind" = step ] && [ "$id" = "$FAILING" ] && has "$id"; then CMD=rollback; fi
				done < <(in_doubt_items)
				[ "$CMD" = rollback ] && [ ${#ANSWERS[@]} -gt 0 ] && in_doubt_args rollback
			fi
		fi
		z "$CMD" rb.yml "${ANSWERS[@]}" >>"$D/recover.out" 2>&1
		RC=$?
		echo "[exit $RC: zdm $CMD rb.yml ${ANSWERS[*]}]" >>"$D/recover.out"
		[ "$RC" -eq 5 ] || return 0
		in_doubt_args "$CMD" || return 0
		[ ${#ANSWERS[@]} -gt 0 ] || { NOTE="$NOTE; exit 5 but the journal shows nothing in doubt"; return 0; }
	done
	NOTE="$NOTE; recovery stuck: still exit 5 after $round rounds"
}

# ---- scenarios -------------------------------------------------------------

step_yaml() {   # id shell [undo-shell] [extra yaml line]
	printf '  - id: %s\n    uses: exec\n' "$1"
	[ -n "${4:-}" ] && printf '    %s\n' "$4"
	printf '    with: {shell: "%s"}\n' "$2"
	[ -n "${3:-}" ] && printf '    undo:\n      uses: exec\n      with: {shell: "%s"}\n' "$3"
	return 0
}

write_runbook() {   # scenario file
	local s
	{
		printf 'zdm: 1\nname: crash-%s\non_failure: rollback\nsteps:\n' "$1"
		if [ "$1" = rollback-noundo ]; then
			step_yaml s1 "echo s1 >> effects" "echo undo-s1 >> effects"
			step_yaml s2 "echo s2 >> effects"
			step_yaml s3 "echo s3 >> effects"
			step_yaml s4 "echo s4 >> effects" "echo undo-s4 >> effects"
			step_yaml s5 "echo s5 >> effects"
			return 0
		fi
		for s in s1 s2; do step_yaml $s "echo $s >> effects" "echo undo-$s >> effects"; done
		if [ "$1" = run ]; then
			# idempotent, and truly so: resume runs it again without asking
			step_yaml s3 "grep -qx s3 effects 2>/dev/null || echo s3 >> effects" \
				"echo undo-s3 >> effects" "idempotent: true"
		else
			step_yaml s3 "echo s3 >> effects" "echo undo-s3 >> effects"
		fi
		if [ "$1" = fail ]; then
			step_yaml s4 "echo s4 >> effects; exit 7"
		else
			step_yaml s4 "echo s4 >> effects" "echo undo-s4 >> effects"
		fi
	} >"$2"
}

# per scenario: the effects it must end with, the command killed, the
# recovery, the status of the last run.finished, the failing step
expected() {
	case "$1" in
	run) WANT=(s1 s2 s3 s4) ;;
	fail) WANT=(s1 s2 s3 s4 undo-s3 undo-s2 undo-s1) ;;
	rollback-noundo) WANT=(s1 s2 s3 s4 s5 undo-s4 undo-s1) ;;
	*) WANT=(s1 s2 s3 s4 undo-s4 undo-s3 undo-s2 undo-s1) ;;
	esac
	case "$1" in
	run) KILLED=run RECOVER=resume FINAL=succeeded FAILING="" ;;
	fail) KILLED=run RECOVER=auto FINAL=rolled_back FAILING=s4 ;;
	*) KILLED=rollback RECOVER=rollback FINAL=rolled_back FAILING="" ;;
	esac
}

fault_var() {
	case "$1" in
	before) VAR=ZDM_TEST_CRASH_BEFORE_RECORD ;;
	after) VAR=ZDM_TEST_CRASH_AFTER_RECORD ;;
	tear) VAR=ZDM_TEST_TEAR_RECORD ;;
	esac
}

# the runbook of a scenario's trials, $WORK/base/SCENARIO/rb.yml
make_base() {   # scenario
	mkdir -p "$WORK/base/$1"
	write_runbook "$1" "$WORK/base/$1/rb.yml"
}

# a trial dir $D with the scenario's runbook, and for the rollback scenarios a
# run that succeeded.  Each trial makes its own run: a run id shared by trials
# running side by side would make one zdm see another's step command as its
# own still running (ZDM_STEP_TAG) and refuse.
fresh() {   # scenario dir
	D="$2"
	mkdir -p "$D"
	cp "$WORK/base/$1/rb.yml" "$D/rb.yml"
	case "$1" in
	rollback|rollback-killed|rollback-noundo)
		z run rb.yml >"$D/setup.out" 2>&1 || { NOTE="$NOTE; the run before the rollback failed: exit $?"; return 1; } ;;
	esac
	return 0
}

# run zdm COMMAND in $D with fault MODE at record SEQ (absolute); check that it
# died by SIGKILL at that record.  For a recovery (auto, resume, rollback) the
# fault is set for every round.  Returns 1 when it did not die.
kill_at() {   # command mode seq
	local rc
	fault_var "$2"
	if [ "$1" = run ]; then
		(export "$VAR=$3"; z run rb.yml) >"$D/killed.out" 2>&1
		rc=$?
	else
		export "$VAR=$3"
		recover "$1"
		unset "$VAR"
		rc=$RC
		mv "$D/recover.out" "$D/killed-$3.out"
	fi
	if [ "$rc" -ne 137 ]; then
		NOTE="$NOTE; zdm $1 with $VAR=$3 exited $rc, not 137 (SIGKILL)"
		return 1
	fi
	jload
	case "$2" in
	before|tear) [ "$JREC" -eq $(($3 - 1)) ] || NOTE="$NOTE; killed $2 record $3 but the journal has $JREC records" ;;
	after) [ "$JREC" -eq "$3" ] || NOTE="$NOTE; killed after record $3 but the journal has $JREC records" ;;
	esac
	if [ "$2" = tear ]; then
		[ "$JTORN" = 1 ] || NOTE="$NOTE; tore record $3 but the journal ends with a whole line"
	else
		[ "$JTORN" = 0 ] || NOTE="$NOTE; killed $2 record $3 but the journal ends with a torn line"
	fi
	return 0
}

# the checks after recovery; writes the trial's result line
#   scenario label lost repeated unverified failed what-differed kept-dir
check() {   # scenario label
	local scenario="$1" label="$2" again l c lost=0 repeated=0 unverified=0 wantrc failed=0 keep=""
	expected "$scenario"
	# the exit code: 0 (a resume that completes the run, a rollback that
	# completes), 1 (a resume, or a run started again, that failed and
	# rolled back), 6 (a rollback that left the failing s4 in place); 2 when
	# the killed zdm had already written the run's end
	wantrc=0
	[ "$scenario" = fail ] && { [ "$CMD" = resume ] || [ "$CMD" = run ]; } && wantrc=1
	# s4 (fail) acts and has no undo: a rollback that reaches it, in doubt
	# after the kill, leaves it in place and says so with 6
	if [ "$scenario" = fail ] && [ "$RC" -eq 6 ]; then
		jload
		[ -n "$JPATH" ] && [ "$(jq -c 'select(.event == "run.finished") | .data.left_in_place' \
			"$JPATH" 2>/dev/null | tail -1)" = '["s4"]' ] && wantrc=6
	fi
	# s2 s3 s5 (rollback-noundo) have no undo: the rollback leaves them in
	# place and says so with 6
	[ "$scenario" = rollback-noundo ] && wantrc=6
	[ "$WAS_ENDED" = 1 ] && wantrc=2
	[ "$RC" -eq "$wantrc" ] || NOTE="$NOTE; recovery (zdm $CMD) exited $RC, want $wantrc"
	# the effects: lost = an expected one missing; repeated = one more than
	# once, or one not expected at all (an undo of what did not happen)
	eload
	for l in "${WANT[@]}"; do
		count "$l"
		[ "$N" -eq 0 ] && lost=$((lost + 1))
		[ "$N" -gt 1 ] && repeated=$((repeated + N - 1))
	done
	for l in "${EFF[@]}"; do
		case " ${WANT[*]} " in *" $l "*) ;; *) repeated=$((repeated + 1)) ;; esac
	done
	[ "$lost" -eq 0 ] || NOTE="$NOTE; $lost effects lost"
	[ "$repeated" -eq 0 ] || NOTE="$NOTE; $repeated effects repeated or not expected"
	[ "${EFF[*]}" = "${WANT[*]}" ] || NOTE="$NOTE; effects '${EFF[*]}', want '${WANT[*]}'"
	# the journal verifies and says how the run ended
	jload
	if [ -z "$JPATH" ] || ! z audit verify "$JPATH" >"$D/verify.out" 2>&1; then
		unverified=1
		NOTE="$NOTE; zdm audit verify failed: $(tail -1 "$D/verify.out" 2>/dev/null)"
	fi
	ended
	[ "$ENDED" = 1 ] || NOTE="$NOTE; the journal does not end with run.finished (status $FINAL)"
	# a second recovery has nothing to do
	again="$CMD"; [ "$again" = run ] && again=resume
	z "$again" rb.yml >"$D/again.out" 2>&1
	c=$?
	[ "$c" -eq 2 ] || NOTE="$NOTE; a second zdm $again exited $c, not 2 (nothing to do)"

	if [ -n "$NOTE" ]; then
		failed=1
		keep="$KEEP/$label"
		cp -a "$D" "$keep"
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$label" "$lost" "$repeated" "$unverified" "$failed" \
		"${NOTE#; }" "$keep" >"$WORK/results/$label"
}

# ENDED=1 when the journal's last complete record is the run's end, with
# the status the scenario ends with (keys are sorted: data before event)
ended() {
	ENDED=0
	case "$JLAST" in *"\"status\":\"$FINAL\""*'"event":"run.finished"'*) ENDED=1 ;; esac
}

# one trial: scenario, mode, N [, mode2, M]; N and M count the records of
# the killed command (1 = its first): for rollback-killed, M those of the
# recovery that follows the kill at N
trial() {   # scenario mode n [mode2 m]
	local scenario="$1" mode="$2" n="$3" mode2="${4:-}" m="${5:-}" label
	label="$scenario-$mode-$n${mode2:+-$mode2-$m}"
	NOTE="" WAS_ENDED=0 RC=-1
	expected "$scenario"
	CMD="$RECOVER"
	fresh "$scenario" "$WORK/t/$label" || { check "$scenario" "$label"; return; }
	jload
	kill_at "$KILLED" "$mode" $((JREC + n)) || { check "$scenario" "$label"; return; }
	if [ -n "$mode2" ]; then
		jload
		kill_at "$RECOVER" "$mode2" $((JREC + m)) || { check "$scenario" "$label"; return; }
	fi
	jload
	ended
	WAS_ENDED=$ENDED
	recover "$RECOVER"
	check "$scenario" "$label"
}

# how many records the killed command writes with no fault (scenario); for
# rollback-killed MODE N: how many the recovery writes after the rollback
# was killed at N
reference() {   # scenario [mode n]
	local before
	NOTE=""
	expected "$1"
	fresh "$1" "$WORK/ref-$1${2:+-$2-$3}" || { echo "crash-test: $1: ${NOTE#; }" >&2; echo 0; return; }
	if [ $# -eq 1 ]; then
		jload; before=$JREC
		z "$KILLED" rb.yml >"$D/ref.out" 2>&1
	else
		jload
		if ! kill_at "$KILLED" "$2" $((JREC + $3)); then
			echo "crash-test: $1 $2 $3: ${NOTE#; }" >&2
			echo 0
			return
		fi
		jload; before=$JREC
		recover "$RECOVER"
	fi
	jload
	echo $((JREC - before))
	rm -rf "$D"
}

# ---- the trials ------------------------------------------------------------

# run "trial ARGS" lines from stdin, $jobs at a time
pool() {
	local running=0 args
	while read -r args; do
		[ -n "$args" ] || continue
		# shellcheck disable=SC2086
		( trial $args ) &
		running=$((running + 1))
		if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
	done
	wait
}

# 1..$1, or in fast mode a subset: 1, 2, every third, and the last
subset() {   # count
	local i
	for ((i = 1; i <= $1; i++)); do
		if [ "$fast" = 0 ] || [ "$i" -le 2 ] || [ "$i" -eq "$1" ] || [ $((i % 3)) -eq 0 ]; then echo "$i"; fi
	done
}

start=$SECONDS
declare -A nrec
for s in "${scenarios[@]}"; do
	make_base "$s" || exit 1
	nrec[$s]="$(reference "$s")"
	if [ "${nrec[$s]}" -le 0 ]; then echo "crash-test: the reference run of '$s' wrote no records" >&2; exit 1; fi
done

trials_of() {   # scenario: "trial ARGS" lines
	local s="$1" mode mode2 n m ns modes mcount
	if [ "$s" = rollback-killed ]; then
		# fast: the first kill after the record in the middle of the
		# rollback; the second at a subset of M, all modes
		modes=("${MODES[@]}") ns="$(seq "${nrec[$s]}")"
		[ "$fast" = 1 ] && modes=(after) ns=$((nrec[$s] / 2 + 1))
		[ -n "$only" ] && ns="$only"
		for mode in "${modes[@]}"; do
			for n in $ns; do
				mcount="$(reference "$s" "$mode" "$n")"
				for mode2 in "${MODES[@]}"; do
					for m in $(subset "$mcount"); do echo "$s $mode $n $mode2 $m"; done
				done
			done
		done
		return
	fi
	ns="$(seq "${nrec[$s]}")"
	# fast: fail around its failure (s4 started, step.failed,
	# rollback.started, the first undo started)
	[ "$fast" = 1 ] && [ "$s" = fail ] && ns="$(seq 8 11)"
	[ -n "$only" ] && ns="$only"
	for mode in "${MODES[@]}"; do
		for n in $ns; do echo "$s $mode $n"; done
	done
}

for s in "${scenarios[@]}"; do
	trials_of "$s"
done | pool

elapsed=$((SECONDS - start))

# ---- the table ---------------------------------------------------------------

printf 'crash-test: %d scenarios, kill before / after each durable write and tear each line%s\n' \
	"${#scenarios[@]}" "$([ "$fast" = 1 ] && echo ' (fast: a subset)')"
printf '%-17s %7s %7s %5s %9s %11s %7s\n' scenario records trials lost repeated unverified failed
T_tr=0 T_l=0 T_r=0 T_u=0 T_f=0
for s in "${scenarios[@]}"; do
	read -r tr l r u f < <(cat "$WORK"/results/* 2>/dev/null | awk -F'\t' -v s="$s" '
		$1 == s { t++; l += $3; r += $4; u += $5; f += $6 } END { print t + 0, l + 0, r + 0, u + 0, f + 0 }')
	printf '%-17s %7s %7d %5d %9d %11d %7d\n' "$s" "${nrec[$s]}" "$tr" "$l" "$r" "$u" "$f"
	T_tr=$((T_tr + tr)) T_l=$((T_l + l)) T_r=$((T_r + r)) T_u=$((T_u + u)) T_f=$((T_f + f))
done
printf '%-17s %7s %7d %5d %9d %11d %7d\n' total "" "$T_tr" "$T_l" "$T_r" "$T_u" "$T_f"
printf 'crash-test: %d trials in %ds (%d jobs)\n' "$T_tr" "$elapsed" "$jobs"

if [ "$T_f" -gt 0 ]; then
	echo
	echo "failing trials (SCENARIO-MODE-N[-MODE2-M]: what differed; then the trial's dir, its journal in state/runs):"
	ls "$WORK/results" | sort -V | while read -r f; do
		awk -F'\t' '$6 == 1 { printf "  %s: %s\n    %s\n", $2, $7, $8 }' "$WORK/results/$f"
	done
fi
[ "$T_l" -eq 0 ] && [ "$T_r" -eq 0 ] && [ "$T_u" -eq 0 ] && [ "$T_f" -eq 0 ]
