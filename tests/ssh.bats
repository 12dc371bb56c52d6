#!/usr/bin/env bats
# The ssh built-in and zdm.ssh against real sshd processes on 127.0.0.1
# (tests/servers/sshd.bash): one sshd per "host", each on its own port with
# its own host key.  Every remote command appends to $T/ran.PORT (the port
# from SSH_CONNECTION), so each test can count exactly where it ran.

bats_require_minimum_version 1.5.0
load helper
load servers/sshd

# start N sshd h1..hN with known_hosts entries; HOSTS is their YAML list
hosts() {
  local i
  ssh_keys
  HOSTS=""
  for i in $(seq "$1"); do
    start_sshd "h$i"
    known_host "h$i"
    HOSTS+="${HOSTS:+, }\"127.0.0.1:$SSHD_PORT\""
  done
  HOSTS="[$HOSTS]"
}

port() {
  local v="PORT_$1"
  echo "${!v}"
}

# times the command ran on host NAME
ran() {
  local f="$T/ran.$(port "$1")"
  if [ -f "$f" ]; then wc -l <"$f" | tr -d ' '; else echo 0; fi
}

# a host NAME whose command fails (exit 1)
fail_on() {
  touch "$T/fail.$(port "$1")"
}

# the command every host runs: count the run, fail where asked
CMD='p=${SSH_CONNECTION##* }; echo run >>$T/ran.$p; echo "host $p says hi"; if [ -e $T/fail.$p ]; then echo "host $p is broken" >&2; exit 1; fi'

# for the crash tests: a host with block.PORT is slow: it says it is
# waiting, waits while block.PORT exists and then gives up (exit 9) without
# counting a run; the other hosts finish only once it is waiting, so the
# crash after their records always finds it running
SLOW_CMD='p=${SSH_CONNECTION##* }; i=0
if [ -e $T/block.$p ]; then touch $T/waiting; while [ -e $T/block.$p ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; exit 9; fi
while [ ! -e $T/waiting ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i+1)); done
echo run >>$T/ran.$p'

# rb.yml with one ssh step over $HOSTS; more `with:` lines on stdin;
# $EXTRA_STEPS after it
rb() {
  local more
  more="$(sed 's/^/      /')"
  cat >"$T/rb.yml" <<EOF
zdm: 1
name: ssh-test
${SECRETS:-}
steps:
  - id: fan
    uses: ssh
    with:
      hosts: $HOSTS
      user: root
      known_hosts: $T/ssh/known_hosts
      connect_timeout: ${CT:-5s}
$more
${EXTRA_STEPS:-}
EOF
}

cmd_yaml() {
  printf 'shell: %s\n' "$(jq -Rn --arg c "${CMD//\$T/$T}" '$c')"
}

@test "ssh: runs on every host, in batches, one connection per host; per-host results in outputs and the journal" {
  hosts 3
  # lines libssh2 does not parse are skipped, not fatal
  { echo "# a comment"; echo "@cert-authority *.example.com $(cut -d' ' -f1,2 "$T/ssh/h1/host_ed25519.pub")"
    echo "garbage.example.com not-a-key-type AAAA"; cat "$T/ssh/known_hosts"; } >"$T/kh" && mv "$T/kh" "$T/ssh/known_hosts"
  { cmd_yaml; echo "key_file: $T/ssh/id_ed25519"; echo "batch: 2"; } | rb
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_output --partial "batch 1/2: 2 hosts — 2 done, 0 failed, 0 running"
  assert_output --partial "batch 2/2: 1 host — 1 done, 0 failed, 0 running"
  for h in h1 h2 h3; do assert_equal "$(ran $h)" 1; done
  assert_equal "$(jq -r 'select(.event=="ssh.host") | "\(.data.batch) \(.data.ok) \(.data.exit)"' "$(J)" | sort | tr '\n' ,)" "1 true 0,1 true 0,2 true 0,"
  run jq -r --arg h "127.0.0.1:$PORT_h3" 'select(.event=="step.succeeded") | .data.outputs
    | "\(.succeeded) \(.failed) \(.batches) \(.hosts[$h].stdout_tail)"' "$(J)"
  assert_output "3 0 2 host $PORT_h3 says hi"
  # each host saw exactly one SSH connection
  for h in h1 h2 h3; do
    assert_equal "$(grep -c . "$T/ran.$(port $h)")" 1
  done
}

@test "ssh: argv is quoted for the remote shell (spaces, quotes, \$) and env reaches the command" {
  hosts 1
  rb <<EOF
key_file: $T/ssh/id_ed25519
command: [sh, -c, 'printf "%s|" "\$@" "\$GREETING"', sh, "a b", "it's \"quoted\"", "\$HOME", ";touch $T/injected"]
env: {GREETING: "hello world"}
EOF
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  run jq -r --arg h "127.0.0.1:$PORT_h1" 'select(.event=="step.succeeded") | .data.outputs.hosts[$h].stdout_tail' "$(J)"
  assert_output "a b|it's \"quoted\"|\$HOME|;touch $T/injected|hello world|"
  assert_file_not_exists "$T/injected"
}

@test "ssh: hosts from a --var string (commas and blanks) and a user@ entry" {
  hosts 2
  HOSTS='${{ vars.web }}'
  { cmd_yaml; echo "key_file: $T/ssh/id_ed25519"; } | rb
  sed -i 's/^steps:/vars: {web: "none"}\nsteps:/' rb.yml
  run zdm run rb.yml --state-dir "$T/state" --var "web=127.0.0.1:$PORT_h1,  root@127.0.0.1:$PORT_h2"
  assert_equal "$status" 0
  assert_equal "$(ran h1)" 1
  assert_equal "$(ran h2)" 1
  run jq -r 'select(.event=="ssh.host") | .data.host' "$(J)"
  assert_line "root@127.0.0.1:$PORT_h2"
}

@test "ssh: a host failing within max_fail: the step succeeds and lists it; every batch ran" {
  hosts 4
  fail_on h2
  { cmd_yaml; echo "key_file: $T/ssh/id_ed25519"; echo "batch: 2"; echo 'max_fail: "50%"'; } | rb
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_output --partial "batch 1/2: 2 hosts — 1 done, 1 failed, 0 running"
  for h in h1 h2 h3 h4; do assert_equal "$(ran $h)" 1; done
  run jq -c 'select(.event=="step.succeeded") | .data.outputs | [.succeeded, .failed, .failed_hosts]' "$(J)"
  assert_output "[3,1,[\"127.0.0.1:$PORT_h2\"]]"
  run jq -r --arg h "127.0.0.1:$PORT_h2" 'select(.event=="ssh.host" and .data.host==$h) | "\(.data.exit) \(.data.error)"' "$(J)"
  assert_output "1 exited with 1: host $PORT_h2 is broken"
}

@test "ssh: a batch over max_fail stops the rollout: later batches never run, the step fails (exit 1)" {
  hosts 4
  fail_on h1
  fail_on h2
  { cmd_yaml; echo "key_file: $T/ssh/id_ed25519"; echo "batch: \"50%\""; echo "max_fail: 1"; } | rb
  run zdm run rb.yml --state-dir "$T/state"
  # it succeeded on no host: the rollback has nothing to undo (exit 1)
  assert_equal "$status" 1
  assert_line --regexp '^\[1/1\] nothing to undo [a-z]+'
  assert_output --partial "batch 1/2: 2 of 2 hosts failed, over max_fail 1; the rollout stopped, later batches did not run"
  assert_output --partial "127.0.0.1:$PORT_h1: exited with 1: host $PORT_h1 is broken"
  assert_equal "$(ran h1)" 1
  assert_equal "$(ran h2)" 1
  assert_equal "$(ran h3)" 0
  assert_equal "$(ran h4)" 0
  run jq -c 'select(.event=="step.failed") | .data.outputs.not_run | length' "$(J)"
  assert_output 2
}

@test "ssh: the step fails in batch 2: undo runs on exactly the hosts that succeeded, last batch first" {
  hosts 4
  fail_on h4
  { cmd_yaml; echo "key_file: $T/ssh/id_ed25519"; echo "batch: 2"
    echo "undo: 'echo \${SSH_CONNECTION##* } >>$T/undo.log'"; } | rb
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "batch 2/2: 1 of 2 hosts failed, over max_fail 0"
  for h in h1 h2 h3 h4; do assert_equal "$(ran $h)" 1; done
  # h3 (batch 2) first, then h1 and h2 (batch 1, concurrently); never h4
  assert_equal "$(wc -l <"$T/undo.log")" 3
  assert_equal "$(head -1 "$T/undo.log")" "$PORT_h3"
  assert_equal "$(tail -n 2 "$T/undo.log" | sort | tr '\n' ' ')" "$(printf '%s\n' "$PORT_h1" "$PORT_h2" | sort | tr '\n' ' ')"
  run jq -c 'select(.event=="step.failed") | .data.undo_data' "$(J)"
  assert_output "{\"succeeded\":[[\"127.0.0.1:$PORT_h1\",\"127.0.0.1:$PORT_h2\"],[\"127.0.0.1:$PORT_h3\"]],\"unknown\":[[],[]]}"
  run events "$(J)"
  assert_line "undo.succeeded fan"
}

@test "ssh: a later step fails: undo skips the host that failed within max_fail" {
  hosts 3
  fail_on h2
  EXTRA_STEPS="  - id: boom
    uses: exec
    with: {command: [\"false\"]}" 
  { cmd_yaml; echo "key_file: $T/ssh/id_ed25519"; echo "max_fail: 1"
    echo "undo: [sh, -c, 'echo \${SSH_CONNECTION##* } >>$T/undo.log']"; } | rb
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_equal "$(sort "$T/undo.log" | tr '\n' ' ')" "$(printf '%s\n' "$PORT_h1" "$PORT_h3" | sort | tr '\n' ' ')"
}

@test "ssh: an unknown host key is refused under strict, with its fingerprint; nothing runs, known_hosts untouched" {
  hosts 1
  : >"$T/ssh/known_hosts"
  { cmd_yaml; echo "key_file: $T/ssh/id_ed25519"; } | rb
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "unknown host key ssh-ed25519 $(fingerprint h1): [127.0.0.1]:$PORT_h1 is not in $T/ssh/known_hosts (host_key_policy strict)"
  assert_equal "$(ran h1)" 0
  assert_equal "$(stat -c %s "$T/ssh/known_hosts")" 0
}

@test "ssh: accept-new adds an unknown host key to known_hosts; strict accepts it afterwards" {
  hosts 2
  : >"$T/ssh/known_hosts"
  { cmd_yaml; echo "key_file: $T/ssh/id_ed25519"; echo "host_key_policy: accept-new"; } | rb
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_equal "$(wc -l <"$T/ssh/known_hosts")" 2
  run grep -c "^\[127.0.0.1\]:$PORT_h1 $(cut -d' ' -f1,2 "$T/ssh/h1/host_ed25519.pub")\$" "$T/ssh/known_hosts"
  assert_output 1
  # OpenSSH agrees with the file zdm wrote
  run ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$T/ssh/known_hosts" \
    -i "$T/ssh/id_ed25519" -p "$PORT_h2" root@127.0.0.1 true
  assert_equal "$status" 0
  sed -i 's/accept-new/strict/' rb.yml
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  for h in h1 h2; do assert_equal "$(ran $h)" 2; done
}

@test "ssh: a changed host key is refused even under accept-new, with both fingerprints" {
  hosts 2
  # known_hosts says h1's port has h2's key: to zdm, h1's key changed
  echo "[127.0.0.1]:$PORT_h1 $(cut -d' ' -f1,2 "$T/ssh/h2/host_ed25519.pub")" >"$T/ssh/known_hosts"
  { cmd_yaml; echo "key_file: $T/ssh/id_ed25519"; echo "host_key_policy: accept-new"; } | rb
  sed -i "s/^      hosts: .*/      hosts: [\"127.0.0.1:$PORT_h1\"]/" rb.yml
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "HOST KEY CHANGED: [127.0.0.1]:$PORT_h1 in $T/ssh/known_hosts has $(fingerprint h2), the server offered ssh-ed25519 $(fingerprint h1); refused"
  assert_equal "$(ran h1)" 0
  assert_equal "$(wc -l <"$T/ssh/known_hosts")" 1
}

@test "ssh: a host that accepts but never speaks SSH fails on connect_timeout; the others in its batch still run" {
  hosts 2
  start_silent
  { cmd_yaml; echo "key_file: $T/ssh/id_ed25519"; } | CT=1s rb
  sed -i "s/hosts: \[/hosts: [\"127.0.0.1:$SILENT_PORT\", /" rb.yml
  run zdm run rb.yml --state-dir "$T/state"
  # the command ran on h1 and h2 and has no undo: the rollback leaves it (exit 6)
  assert_equal "$status" 6
  assert_output --partial "127.0.0.1:$SILENT_PORT: timed out after 1s (connect timeout) while waiting for the SSH handshake"
  assert_output --partial "no undo command: what the command changed on 2 hosts is left in place"
  for h in h1 h2; do assert_equal "$(ran $h)" 1; done
}

@test "ssh: host_timeout ends a slow host's session; the fast host's result stands" {
  hosts 2
  CMD='p=${SSH_CONNECTION##* }; echo run >>$T/ran.$p; if [ -e $T/fail.$p ]; then sleep 4; fi'
  fail_on h2
  { cmd_yaml; echo "key_file: $T/ssh/id_ed25519"; echo "host_timeout: 1s"; echo "max_fail: 1"; } | rb
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  run jq -r --arg h "127.0.0.1:$PORT_h2" 'select(.event=="step.succeeded") | .data.outputs.hosts[$h] | "\(.ok) \(.timed_out) \(.error)"' "$(J)"
  assert_output "false true timed out after 1s (host timeout) while the command ran; the command had started: its outcome is unknown (it may have finished or still be running), so undo runs here too"
  run jq -r 'select(.event=="step.succeeded") | .data.outputs.failed_hosts | length' "$(J)"
  assert_output 1
}

# h2 sleeps past host_timeout, then makes its change anyway (late.PORT):
# zdm gave up on it, sshd did not stop it
LATE_CMD='p=${SSH_CONNECTION##* }; echo run >>$T/ran.$p; if [ -e $T/fail.$p ]; then sleep 2; touch $T/late.$p; fi'

# wait (bounded) for h2's command to finish on its own
wait_late() {
  poll 50 0.1 test -e "$T/late.$PORT_h2"
}

@test "ssh: a host timed out mid-command is recorded unknown; the rollback runs undo on it too" {
  hosts 2
  CMD="$LATE_CMD"
  fail_on h2
  { cmd_yaml; echo "key_file: $T/ssh/id_ed25519"; echo "host_timeout: 1s"
    echo "undo: 'echo \${SSH_CONNECTION##* } >>$T/undo.log'"; } | rb
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "127.0.0.1:$PORT_h2: timed out after 1s (host timeout) while the command ran; the command had started: its outcome is unknown"
  # undo ran on both: h1 succeeded, h2 may have
  assert_equal "$(sort "$T/undo.log" | tr '\n' ' ')" "$(printf '%s\n' "$PORT_h1" "$PORT_h2" | sort | tr '\n' ' ')"
  run jq -c 'select(.event=="step.failed") | [.data.undo_data, .data.outputs.unknown_hosts]' "$(J)"
  assert_output "[{\"succeeded\":[[\"127.0.0.1:$PORT_h1\"]],\"unknown\":[[\"127.0.0.1:$PORT_h2\"]]},[\"127.0.0.1:$PORT_h2\"]]"
  run jq -r --arg h "127.0.0.1:$PORT_h2" 'select(.event=="ssh.host" and .data.host==$h) | "\(.data.ok) \(.data.unknown) \(.data.timed_out)"' "$(J)"
  assert_output "false true true"
  run events "$(J)"
  assert_line "undo.succeeded fan"
  # and the command did finish after zdm gave up on it: why undo had to run there
  wait_late
}

@test "ssh: a host timed out mid-command and no undo command: the rollback is incomplete (exit 3) and names the host" {
  hosts 2
  CMD="$LATE_CMD"
  fail_on h2
  { cmd_yaml; echo "key_file: $T/ssh/id_ed25519"; echo "host_timeout: 1s"; } | rb
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 3
  assert_output --partial "no undo command, and the outcome on 1 host is unknown: 127.0.0.1:$PORT_h2 (the command started but did not finish"
  refute_output --partial "127.0.0.1:$PORT_h1 ("
  wait_late
}

@test "ssh: a crash mid-batch; resume asks, then --in-doubt retry runs only the unfinished hosts, each exactly once" {
  hosts 4
  # h3 is still running when zdm crashes (SLOW_CMD)
  touch "$T/block.$PORT_h3"
  CMD="$SLOW_CMD"
  { cmd_yaml; echo "key_file: $T/ssh/id_ed25519"; echo "batch: 3"; } | rb
  # records: 1 run.started, 2 step.started, 3 and 4: ssh.host of h1 and h2
  run env ZDM_TEST_CRASH_AFTER_RECORD=4 "$ZDM_BIN" run rb.yml --state-dir "$T/state"
  assert_equal "$status" 137
  assert_equal "$(ran h1)" 1
  assert_equal "$(ran h2)" 1
  assert_equal "$(ran h3)" 0
  assert_equal "$(ran h4)" 0
  rm -f "$T/block.$PORT_h3"
  run zdm resume rb.yml --state-dir "$T/state"
  assert_equal "$status" 5
  assert_output --partial "--in-doubt fan=retry"
  run zdm resume rb.yml --state-dir "$T/state" --in-doubt retry
  assert_equal "$status" 0
  for h in h1 h2 h3 h4; do assert_equal "$(ran $h)" 1; done
  run jq -r 'select(.event=="ssh.host") | .attempt' "$(J)"
  assert_output "$(printf '1\n1\n2\n2')"
  run jq -r 'select(.event=="step.succeeded") | .data.outputs.succeeded' "$(J)"
  assert_output 4
}

@test "ssh: a crash mid-batch, then rollback: undo runs on the hosts the notes say succeeded" {
  hosts 3
  touch "$T/block.$PORT_h3"
  CMD="$SLOW_CMD"
  { cmd_yaml; echo "key_file: $T/ssh/id_ed25519"
    echo "undo: 'echo \${SSH_CONNECTION##* } >>$T/undo.log'"; } | rb
  run env ZDM_TEST_CRASH_AFTER_RECORD=4 "$ZDM_BIN" run rb.yml --state-dir "$T/state"
  assert_equal "$status" 137
  rm -f "$T/block.$PORT_h3"
  run zdm rollback rb.yml --state-dir "$T/state" --in-doubt retry
  assert_equal "$status" 0
  assert_equal "$(sort "$T/undo.log" | tr '\n' ' ')" "$(printf '%s\n' "$PORT_h1" "$PORT_h2" | sort | tr '\n' ' ')"
}

@test "ssh: SIGINT stops the running hosts, the run pauses (exit 4); resume --in-doubt retry runs only the unfinished host" {
  hosts 2
  touch "$T/block.$PORT_h2"
  CMD="$SLOW_CMD"
  { cmd_yaml; echo "key_file: $T/ssh/id_ed25519"; } | rb
  "$ZDM_BIN" run rb.yml --state-dir "$T/state" >"$T/out" 2>&1 &
  local pid=$! i
  for i in $(seq 200); do
    [ -e "$T/waiting" ] && [ "$(ran h1)" = 1 ] && break
    sleep 0.05
  done
  assert_equal "$(ran h1)" 1
  kill -INT "$pid"
  local rc=0
  wait "$pid" || rc=$?
  assert_equal "$rc" 4 || { cat "$T/out"; false; }
  rm -f "$T/block.$PORT_h2"
  run jq -r 'select(.event=="ssh.host" and .data.ok) | .data.host' "$(J)"
  assert_output "127.0.0.1:$PORT_h1"
  # h2 was cut short mid-command: noted as unknown, not ok
  run jq -r 'select(.event=="ssh.host" and (.data.ok | not)) | "\(.data.host) \(.data.unknown) \(.data.interrupted)"' "$(J)"
  assert_output "127.0.0.1:$PORT_h2 true true"
  # in doubt, so resume asks first
  run zdm resume rb.yml --state-dir "$T/state"
  assert_equal "$status" 5
  run zdm resume rb.yml --state-dir "$T/state" --in-doubt retry
  assert_equal "$status" 0
  assert_equal "$(ran h1)" 1
  assert_equal "$(ran h2)" 1
}

@test "ssh: a key with a passphrase from secrets; the passphrase never reaches journal or output" {
  hosts 1
  local pass="pp-Sekrit-4711"
  ssh-keygen -q -t ed25519 -N "$pass" -f "$T/ssh/locked"
  cat "$T/ssh/locked.pub" >>"$T/ssh/authorized_keys"
  SECRETS="secrets:
  pp: {env: ZDM_T_PASS}"
  # a second step prints the secret on the host: its tails read ***
  EXTRA_STEPS="  - id: leak
    uses: ssh
    with:
      hosts: $HOSTS
      user: root
      known_hosts: $T/ssh/known_hosts
      key_file: $T/ssh/id_ed25519
      shell: 'echo token=\${{ secrets.pp }}; echo \${{ secrets.pp }} >&2'"
  { cmd_yaml; echo "key_file: $T/ssh/locked"; echo 'passphrase: ${{ secrets.pp }}'; } | rb
  ZDM_T_PASS="$pass" run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_equal "$(ran h1)" 1
  run jq -r 'select(.event=="step.succeeded" and .step=="leak") | .data.outputs.hosts[] | "\(.stdout_tail) \(.stderr_tail)"' "$(J)"
  assert_output "token=*** ***"
  ZDM_T_PASS="wrong-$pass" run zdm run rb.yml --state-dir "$T/state2"
  assert_equal "$status" 1
  assert_output --partial "cannot use key_file $T/ssh/locked"
  assert_output --partial "passphrase"
  refute_output --partial "$pass"
  run grep -rl -- "$pass" "$T/state" "$T/state2"
  assert_equal "$status" 1
}

@test "ssh: a tail cut inside a secret (one long line over the 4096-byte cap) shows no piece of it" {
  hosts 1
  SECRETS="secrets:
  tok: {env: ZDM_T_TOK}"
  # 16 bytes of secret, then 4090 x: the last 4096 bytes start inside the secret
  { echo "key_file: $T/ssh/id_ed25519"
    echo "shell: 'printf %s \${{ secrets.tok }}; head -c 4090 /dev/zero | tr \"\\\\000\" x'"; } | rb
  ZDM_T_TOK="tail-Sekrit-9876" run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  run jq -r 'select(.event=="ssh.host") | .data.stdout_tail' "$(J)"
  # 15 bytes (the longest secret less one) dropped from the cut head
  assert_output "$(head -c 4081 /dev/zero | tr '\000' x)"
  run grep -rl -e "9876" -e "Sekrit" "$T/state"
  assert_equal "$status" 1
}

@test "ssh: no key_file: the key comes from ssh-agent; without an agent the error says what to do" {
  hosts 1
  ssh-agent -D -a "$T/agent.sock" >/dev/null 3>&- &
  echo $! >"$T/agent.pid"
  for i in $(seq 100); do
    SSH_AUTH_SOCK="$T/agent.sock" ssh-add -q "$T/ssh/id_ed25519" 2>/dev/null && break
    sleep 0.05
  done
  SSH_AUTH_SOCK="$T/agent.sock" ssh-add -l >/dev/null
  cmd_yaml | rb
  SSH_AUTH_SOCK="$T/agent.sock" run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_equal "$(ran h1)" 1
  run env -u SSH_AUTH_SOCK "$ZDM_BIN" run rb.yml --state-dir "$T/state2"
  assert_equal "$status" 1
  assert_output --partial "no key_file given and no ssh-agent (SSH_AUTH_SOCK is not set)"
}

@test "ssh: bad hosts, batch, max_fail, policy and a literal passphrase are refused at validate with FILE:LINE:COL (exit 2)" {
  HOSTS='["web1:99999", "web1:99999"]'
  rb <<'EOF'
shell: "true"
batch: "150%"
max_fail: -1
host_key_policy: trust-me
key_file: /k
passphrase: hunter2
EOF
  run zdm validate rb.yml
  assert_equal "$status" 2
  assert_output --partial "rb.yml:8:14: "
  assert_output --partial "host 'web1:99999': port must be 1 to 65535"
  assert_output --partial "param 'batch': must be a count of hosts"
  assert_output --partial "param 'max_fail': must be a count of hosts"
  assert_output --partial "'trust-me': must be strict or accept-new"
  assert_output --partial "param 'passphrase': must come from secrets"
  HOSTS='["db1", "db1"]'
  rb <<<'command: ["true"]'
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 2
  assert_output --partial "host 'db1' is listed twice"
  assert_dir_not_exists "$T/state/runs"
}

@test "ssh: plan shows the batches (a canary, then percentages) and the budget; nothing connects" {
  HOSTS='[a, b, c, d, e, f, g]'
  rb <<'EOF'
command: [systemctl, restart, "my app"]
batch: [1, "30%"]
max_fail: "50%"
undo: "systemctl restart old"
EOF
  run zdm plan rb.yml
  assert_equal "$status" 0
  assert_output --partial "run 'systemctl restart 'my app'' over ssh on 7 hosts in 4 batches (1+2+2+2), at most 50% of each batch may fail (rounded down); undo: 'systemctl restart old' on the hosts where it succeeded or its outcome is unknown, last batch first"
}

@test "zdm.ssh: a plugin runs a command on several hosts and reads each result" {
  hosts 2
  fail_on h2
  plugin_file "$T/pp" my.remote <<'LUA'
return {
  description = "run on hosts, report codes",
  params = {
    {name = "hosts", type = "list", required = true},
    {name = "key", type = "string", required = true},
    {name = "kh", type = "string", required = true},
    {name = "cmd", type = "string", required = true},
  },
  run = function(ctx, p)
    local rs = zdm.ssh(p.hosts, p.cmd, {user = "root", key_file = p.key, known_hosts = p.kh})
    local out = {}
    for _, r in ipairs(rs) do
      out[#out + 1] = r.host .. "=" .. tostring(r.code) .. ":" .. r.stdout:gsub("\n", "")
    end
    local argv = zdm.ssh(p.hosts[1], {"printf", "%s", "x y'z"}, {user = "root", key_file = p.key, known_hosts = p.kh})
    local slow = zdm.ssh(p.hosts[1], "sleep 1", {user = "root", key_file = p.key, known_hosts = p.kh, timeout = 300})[1]
    return {outputs = {codes = table.concat(out, ","), argv = argv[1].stdout,
      slow = tostring(slow.code) .. " " .. tostring(slow.timed_out) .. " " .. tostring(slow.unknown) .. " " .. slow.error}}
  end,
}
LUA
  cat >"$T/rb.yml" <<EOF
zdm: 1
name: zssh
steps:
  - id: r
    uses: my.remote
    with:
      hosts: $HOSTS
      key: $T/ssh/id_ed25519
      kh: $T/ssh/known_hosts
      cmd: $(jq -Rn --arg c "${CMD//\$T/$T}" '$c')
EOF
  run zdm run rb.yml --plugin-path "$T/pp" --state-dir "$T/state"
  assert_equal "$status" 0
  run jq -r 'select(.event=="step.succeeded") | .data.outputs | "\(.codes) \(.argv)"' "$(J)"
  assert_output "127.0.0.1:$PORT_h1=0:host $PORT_h1 says hi,127.0.0.1:$PORT_h2=1:host $PORT_h2 says hi x y'z"
  # a timed-out command: no code, its outcome unknown, the configured limit named
  run jq -r 'select(.event=="step.succeeded") | .data.outputs.slow' "$(J)"
  assert_output "nil true true timed out after 300ms (host timeout) while the command ran"
}

@test "zdm.ssh: output over cap keeps the last cap bytes from a line start; a cap the memory cannot hold and a result that does not fit are clear errors, nothing leaks" {
  hosts 2
  plugin_file "$T/pp" my.big <<'LUA'
return {
  description = "zdm.ssh near the plugin's memory cap",
  params = {
    {name = "hosts", type = "list", required = true},
    {name = "key", type = "string", required = true},
    {name = "kh", type = "string", required = true},
  },
  run = function(ctx, p)
    local o = {user = "root", key_file = p.key, known_hosts = p.kh}
    -- 1: about 3.4 MB of output, 1 MiB kept
    o.cap = 1048576
    local r = zdm.ssh(p.hosts[1], "seq 1 500000", o)[1]
    print("big: " .. #r.stdout .. " " .. tostring(r.stdout_truncated) .. " " ..
      r.stdout:match("^(%d+)\n") .. " " .. r.stdout:sub(-7, -2) .. " " .. tostring(r.code))
    -- 2: 4 MiB x 2 hosts x 2 streams is more than the 8 MiB the plugin may hold
    o.cap = 4 * 1048576
    local ok, e = pcall(zdm.ssh, p.hosts, "true", o)
    print("refused: " .. tostring(ok) .. " " .. e)
    -- 3: 2 x 2 MiB of output fits the cap, not beside 4 MiB the plugin holds
    local hold = {string.rep("a", 2 * 1048576), string.rep("b", 2 * 1048576)}
    o.cap = 2 * 1048576
    zdm.ssh(p.hosts, "seq 1 500000; echo ${SSH_CONNECTION##* }", o)
    return {outputs = {held = #hold[1] + #hold[2]}}
  end,
}
LUA
  cat >"$T/rb.yml" <<EOF
zdm: 1
name: zssh-big
steps:
  - id: r
    uses: my.big
    with:
      hosts: $HOSTS
      key: $T/ssh/id_ed25519
      kh: $T/ssh/known_hosts
EOF
  local kept first
  kept="$(seq 1 500000 | tail -c 1048576 | sed 1d | wc -c)"
  first="$(seq 1 500000 | tail -c 1048576 | sed -n 2p)"
  ZDM_PLUGIN_MEMORY_MB=8 run zdm run rb.yml --plugin-path "$T/pp" --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "big: $kept true $first 500000 0"
  assert_output --partial "refused: false "
  assert_output --partial "zdm.ssh: opts.cap 4194304 bytes x 2 hosts x 2 streams (stdout, stderr) is 16777216 bytes, more than the plugin's memory (8 MiB, ZDM_PLUGIN_MEMORY_MB); lower opts.cap to 2097152 or less"
  assert_output --partial "zdm.ssh: the hosts' output does not fit in the plugin's memory (8 MiB, ZDM_PLUGIN_MEMORY_MB)"
  run jq -r 'select(.event=="step.failed") | .data.error' "$(J)"
  assert_output --partial "does not fit in the plugin's memory"
}
