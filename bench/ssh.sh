#!/usr/bin/env bash
# bench/ssh.sh — the `ssh` built-in's fan-out: 1 and 16 hosts × 1 command.
#
#   make && bash bench/ssh.sh            (from the repo root; about 1 min)
#
# Hosts are real OpenSSH sshd processes on 127.0.0.1, one per port, each with its
# own host key (tests/servers/sshd.bash: ed25519 keys, curve25519-sha256 key
# exchange for every client, no PAM, no DNS, no ~/.ssh/rc, an empty HOME).
# Every client logs in as BENCH_USER (default zdm-bench), whose login shell is
# /bin/sh (dash on Debian), so each session's remote side is sshd's fork and
# re-exec (kept, as on any production host), the key exchange, and
# `/bin/sh -c true`: no rc file (dash reads none for a non-interactive shell),
# nothing this machine's root account adds (Debian's bash reads ~/.bashrc for
# commands over ssh).  The bench creates the user when it is missing (as root:
# a system user, no home, password field '*' so sshd without PAM does not take
# it for locked) and reuses it on later runs; `userdel zdm-bench` removes it.
# For N = 1 and 16 hosts, each running `true` once, it measures (median of REPS):
#   - zdm:           `zdm run` of a one-step runbook (ssh, batch N, max_parallel N):
#                    the whole process, journal fsyncs included;
#   - zdm step:      the same run's ssh step alone (step.succeeded duration_ms);
#   - zdm CPU:       user+sys CPU time of the zdm process (bash `time`): zdm's own
#                    cost, beside what sshd and the remote shells spend;
#   - sshd+shell CPU: what the sessions of that zdm run cost the "hosts" (the sshd
#                    listeners' cutime+cstime, /proc/PID/stat); with zdm's CPU it
#                    gives the CPU floor: no client can be faster than that CPU
#                    divided by the cores;
#   - OpenSSH loop:  a bash loop of `ssh -o BatchMode=yes ... true` over the hosts;
#   - OpenSSH, all at once: the same N ssh clients started together and waited
#                    for: what N concurrent sessions cost this machine (sshd's
#                    fork, re-exec and key exchange, the remote shell), the floor
#                    for any fan-out: the 16 "hosts" share this machine's cores
#                    with their sshd processes and with zdm;
#   - ansible:       `ansible all -m raw -a true --forks 16` (raw: one SSH exec per
#                    host like zdm; ControlPersist off so no connection is reused
#                    between repetitions), when ansible is installed.
# Goals: zdm on 16 hosts in one batch of 16 within 1.5× of its time on one
# host; ≥ 5× faster than the OpenSSH loop on 16 hosts.
#
# It prints a markdown table and exits 0 whatever the timings (a benchmark never
# fails on a number); non-zero only when zdm or a server failed.  Every wait is
# bounded; traffic stays on 127.0.0.1.
#
# Environment:
#   ZDM_BIN        zdm binary (default: build/zdm)
#   REPS           repetitions per cell (default 5)
#   ANSIBLE_REPS   repetitions for ansible (default 3)
#   BENCH_USER     remote user (default zdm-bench; must have /bin/sh as its shell)
#   KEEP=1         keep the temporary directory

set -euo pipefail

ZDM=${ZDM_BIN:-build/zdm}
REPS=${REPS:-5}
ANSIBLE_REPS=${ANSIBLE_REPS:-3}
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

die() { printf 'ssh.sh: %s\n' "$*" >&2; exit 1; }

[[ -x $ZDM ]] || die "zdm binary '$ZDM' not found or not executable (run make, or set ZDM_BIN)"
case $ZDM in /*) ;; *) ZDM=$PWD/$ZDM ;; esac
((REPS >= 1 && REPS <= 50 && ANSIBLE_REPS >= 1 && ANSIBLE_REPS <= 20)) || die "REPS or ANSIBLE_REPS out of range"
for c in /usr/sbin/sshd ssh ssh-keygen python3 jq; do
	command -v "$c" >/dev/null || die "'$c' is missing (scripts/deps.sh installs it)"
done

BU=${BENCH_USER:-zdm-bench}
if ! getent passwd "$BU" >/dev/null; then
	((EUID == 0)) || die "user '$BU' is missing and only root can create it; set BENCH_USER to a user whose login shell is /bin/sh"
	useradd --system --shell /bin/sh --home-dir / --no-create-home "$BU" || die "cannot create user '$BU'"
	usermod -p '*' "$BU" || die "cannot unlock user '$BU'"
	echo "ssh.sh: created system user '$BU' (login shell /bin/sh); reused by later runs, 'userdel $BU' removes it" >&2
fi
BU_SHELL=$(getent passwd "$BU" | cut -d: -f7)
[[ $BU_SHELL == /bin/sh ]] || die "user '$BU' has login shell '$BU_SHELL', not /bin/sh: its shell's rc files would be measured too"
if ((EUID == 0)) && [[ $(getent shadow "$BU" | cut -d: -f2) == '!'* ]]; then
	die "user '$BU' is locked ('!' in /etc/shadow): sshd without PAM refuses it; usermod -p '*' $BU"
fi

T=$(mktemp -d)
teardown() { :; }
# shellcheck source=../tests/servers/sshd.bash
source "$REPO/tests/servers/sshd.bash"
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	stop_sshds
	if [[ ${KEEP:-0} == 1 ]]; then echo "kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT

now_ms() { date +%s%3N; }
median() { sort -n | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : int((v[NR/2]+v[NR/2+1])/2)}'; }

ssh_keys
# sshd reads authorized_keys as the user: let BENCH_USER reach it (a public key)
chmod 711 "$T" "$T/ssh"
chmod 644 "$T/ssh/authorized_keys"
PORTS=()
for i in $(seq 16); do
	start_sshd "h$i" || die "sshd h$i did not start"
	known_host "h$i"
	PORTS+=("$SSHD_PORT")
done

# sshd_cpu_ms: user+sys CPU of every session the sshd listeners have reaped
# (each session's sshd and, through it, its shell): cutime+cstime of the
# listeners in /proc/PID/stat, in clock ticks
TCK=$(getconf CLK_TCK)
sshd_cpu_ms() {
	local f fields sum=0
	for f in "$T"/ssh/h*/pid; do
		read -r -a fields <"/proc/$(cat "$f")/stat" || die "sshd $(dirname "$f") is gone"
		sum=$((sum + fields[15] + fields[16]))
	done
	echo $((sum * 1000 / TCK))
}

zdm_once() {	# N -> "wall_ms step_ms cpu_ms sshd_cpu_ms" (cpu: zdm's own user+sys)
	local n=$1 t0 t1 st="$T/state.$RANDOM$RANDOM" cpu TIMEFORMAT='%3U %3S' s0 s1
	s0=$(sshd_cpu_ms)
	t0=$(now_ms)
	{ time "$ZDM" run "$T/rb$n.yml" --state-dir "$st" >"$T/zdm.out" 2>&1; } 2>"$T/zdm.cpu" ||
		{ cat "$T/zdm.out" >&2; die "zdm run failed on $n hosts"; }
	t1=$(now_ms)
	sleep 0.05	# the listeners reap their last sessions
	s1=$(sshd_cpu_ms)
	cpu=$(awk '{ printf "%d", ($1 + $2) * 1000 }' "$T/zdm.cpu")
	echo "$((t1 - t0)) $(jq -r 'select(.event=="step.succeeded") | .data.duration_ms' "$st"/runs/*.jsonl) $cpu $((s1 - s0))"
	rm -rf "$st"
}

loop_once() {	# N -> ms
	local n=$1 t0 t1 p
	t0=$(now_ms)
	for p in "${PORTS[@]:0:n}"; do
		timeout 20 ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$T/ssh/known_hosts" \
			-o ControlMaster=no -o ConnectTimeout=10 -i "$T/ssh/id_ed25519" -p "$p" "$BU@127.0.0.1" true ||
			die "ssh to port $p failed"
	done
	t1=$(now_ms)
	echo $((t1 - t0))
}

par_once() {	# N -> ms: N OpenSSH clients at once (the machine's floor for N sessions)
	local n=$1 t0 t1 p pids=() rc=0
	t0=$(now_ms)
	for p in "${PORTS[@]:0:n}"; do
		timeout 20 ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$T/ssh/known_hosts" \
			-o ControlMaster=no -o ConnectTimeout=10 -i "$T/ssh/id_ed25519" -p "$p" "$BU@127.0.0.1" true &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p" || rc=1; done
	t1=$(now_ms)
	((rc == 0)) || die "a parallel ssh failed"
	echo $((t1 - t0))
}

ansible_once() {	# N -> ms
	local n=$1 t0 t1
	t0=$(now_ms)
	HOME="$T/home" ANSIBLE_HOST_KEY_CHECKING=True ANSIBLE_SSH_ARGS="-o ControlMaster=no -o ControlPersist=no" \
		ANSIBLE_LOCAL_TEMP="$T/home/tmp" ANSIBLE_NOCOLOR=1 ANSIBLE_CONFIG="$T/ansible.cfg" \
		timeout 120 ansible all -i "$T/inv$n.ini" -m raw -a true --forks 16 >"$T/ansible.out" 2>&1 ||
		{ cat "$T/ansible.out" >&2; die "ansible failed on $n hosts"; }
	t1=$(now_ms)
	echo $((t1 - t0))
}

for n in 1 16; do
	hl=""
	for p in "${PORTS[@]:0:n}"; do hl+="${hl:+, }\"127.0.0.1:$p\""; done
	cat >"$T/rb$n.yml" <<EOF
zdm: 1
name: bench-ssh-$n
steps:
  - id: fan
    uses: ssh
    with:
      hosts: [$hl]
      user: $BU
      key_file: $T/ssh/id_ed25519
      known_hosts: $T/ssh/known_hosts
      command: ["true"]
      batch: $n
      max_parallel: $n
EOF
	mkdir -p "$T/home/tmp"
	printf "[defaults]\n" >"$T/ansible.cfg"
	{
		echo "[all]"
		i=0
		for p in "${PORTS[@]:0:n}"; do
			i=$((i + 1))
			echo "h$i ansible_host=127.0.0.1 ansible_port=$p ansible_user=$BU"
		done
		echo "[all:vars]"
		echo "ansible_ssh_private_key_file=$T/ssh/id_ed25519"
		echo "ansible_ssh_common_args='-o UserKnownHostsFile=$T/ssh/known_hosts -o StrictHostKeyChecking=yes'"
	} >"$T/inv$n.ini"
done

declare -A W S C R L P A
have_ansible=0
command -v ansible >/dev/null && have_ansible=1
for n in 1 16; do
	: >"$T/w" ; : >"$T/s" ; : >"$T/c" ; : >"$T/r" ; : >"$T/l" ; : >"$T/p" ; : >"$T/a"
	zdm_once "$n" >/dev/null	# warm-up: page cache, sshd's first fork
	for _ in $(seq "$REPS"); do
		read -r w s c r < <(zdm_once "$n")
		echo "$r" >>"$T/r"
		echo "$w" >>"$T/w"
		echo "$s" >>"$T/s"
		echo "$c" >>"$T/c"
		loop_once "$n" >>"$T/l"
		par_once "$n" >>"$T/p"
	done
	if ((have_ansible)); then
		for _ in $(seq "$ANSIBLE_REPS"); do ansible_once "$n" >>"$T/a"; done
	fi
	W[$n]=$(median <"$T/w")
	S[$n]=$(median <"$T/s")
	C[$n]=$(median <"$T/c")
	R[$n]=$(median <"$T/r")
	L[$n]=$(median <"$T/l")
	P[$n]=$(median <"$T/p")
	A[$n]=$( ((have_ansible)) && median <"$T/a" || echo "")
done

fmt() { [[ -n $1 ]] && echo "$1 ms" || echo "not installed"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }'; }

echo
echo "ssh fan-out, 1 command (true) per host; medians of $REPS runs (ansible: $ANSIBLE_REPS); $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "remote side of every session: $(/usr/sbin/sshd -V 2>&1 | cut -d, -f1) on 127.0.0.1 (fork + re-exec per connection, UsePAM no, UseDNS no, PermitUserRC no, KexAlgorithms curve25519-sha256, ed25519 host key), user $BU (login shell $BU_SHELL -> $(readlink -f "$BU_SHELL")), running: $BU_SHELL -c true"
echo "clients: the same ed25519 key and known_hosts (strict), one connection per host (no ControlMaster/ControlPersist)"
echo
echo "| hosts | zdm run (wall) | zdm ssh step | zdm CPU (user+sys) | sshd+shell CPU in zdm's run | OpenSSH ssh loop | OpenSSH, all at once | ansible -m raw, forks 16 |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in 1 16; do
	echo "| $n | ${W[$n]} ms | ${S[$n]} ms | ${C[$n]} ms | ${R[$n]} ms | ${L[$n]} ms | ${P[$n]} ms | $(fmt "${A[$n]}") |"
done
echo
r1=$(ratio "${W[16]}" "${W[1]}")
r2=$(ratio "${L[16]}" "${W[16]}")
g1=$(awk -v r="$r1" 'BEGIN { print (r <= 1.5) ? "met" : "missed" }')
g2=$(awk -v r="$r2" 'BEGIN { print (r >= 5) ? "met" : "missed" }')
echo "- zdm 16 hosts / 1 host (wall): ${r1}× (goal ≤ 1.5×: $g1); step alone: $(ratio "${S[16]}" "${S[1]}")×"
echo "- OpenSSH loop / zdm on 16 hosts (wall): ${r2}× (goal ≥ 5×: $g2)"
echo "- machine floor (16 hosts share $(nproc) cores with their sshds): 16 OpenSSH clients at once / one: $(ratio "${P[16]}" "${P[1]}")×; zdm on 16 hosts / that floor: $(ratio "${W[16]}" "${P[16]}")×; zdm's 16/1 ratio / the floor's 16/1 ratio: $(awk -v a="$r1" -v b="$(ratio "${P[16]}" "${P[1]}")" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }')×"
fl=$(((C[16] + R[16]) / $(nproc)))
echo "- CPU floor: zdm's 16 sessions cost ${C[16]} ms (zdm) + ${R[16]} ms (sshd and shells) of CPU; on $(nproc) cores no client can take less than $fl ms wall (more when others share the cores); zdm run on 16 hosts / that: $(ratio "${W[16]}" "$fl")×; 1.5× zdm's 1-host run is $(awk -v w="${W[1]}" 'BEGIN { printf "%d", w * 1.5 }') ms, so the 1.5× goal is $(awk -v f="$fl" -v w="${W[1]}" 'BEGIN { print (f <= w * 1.5) ? "within" : "beyond" }') this machine's reach"
if ((have_ansible)); then
	echo "- ansible / zdm on 16 hosts (wall): $(ratio "${A[16]}" "${W[16]}")×"
fi
