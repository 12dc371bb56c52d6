# Test SSH servers (load after helper): real OpenSSH sshd processes on
# 127.0.0.1, each on its own free port with its own host key, standing in
# for several hosts.  Keys, authorized_keys, configs and pid files live in
# the test's $T; the test's teardown stops every sshd by pid.  A server
# that does not start fails the test; nothing is skipped.
#
# What a session costs the machine is kept to what any SSH session costs
# (sshd's fork, re-exec and key exchange, the remote shell's fork+exec) and
# nothing this machine's accounts add: the sessions' HOME is an empty
# $T/ssh/home, so a login shell reads no ~/.bashrc (Debian's bash reads it
# for commands over ssh; root's may run pyenv, ~125 ms of CPU a session);
# no ~/.ssh/rc (PermitUserRC no), no DNS (UseDNS no), no PAM; key exchange
# curve25519-sha256 only, the one libssh2 1.10 (zdm) and every OpenSSH
# client share (OpenSSH 9.2 would otherwise pick sntrup761x25519 with its
# own clients, which costs more CPU), host and client keys ed25519.
#
#   ssh_keys                      client key $T/ssh/id_ed25519 (+ authorized_keys)
#   start_sshd NAME               sshd for host NAME; sets SSHD_PORT, PORT_<NAME>
#   known_host NAME [FILE]        append NAME's host key line to FILE ($T/ssh/known_hosts)
#   fingerprint NAME              NAME's host key SHA256:... as ssh-keygen -l prints it
#   start_silent                  a TCP server that accepts and never speaks; SILENT_PORT

source "$(dirname "${BASH_SOURCE[0]}")/common.bash"

eval "helper_$(declare -f teardown)"

teardown() {
  stop_sshds
  helper_teardown
}

ssh_keys() {
  mkdir -p "$T/ssh"
  [ -f "$T/ssh/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C zdm-test -f "$T/ssh/id_ed25519"
  cat "$T/ssh/id_ed25519.pub" >>"$T/ssh/authorized_keys"
  : >>"$T/ssh/known_hosts"
}

start_sshd() {
  local name="$1" d="$T/ssh/$1" port
  mkdir -p "$d" "$T/ssh/home" /run/sshd
  [ -f "$d/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C "$name" -f "$d/host_ed25519"
  port="$(free_port)"
  cat >"$d/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $d/host_ed25519
PidFile $d/sshd.pid
AuthorizedKeysFile $T/ssh/authorized_keys
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowAgentForwarding no
X11Forwarding no
PrintMotd no
MaxStartups 200
UseDNS no
PermitUserRC no
SetEnv HOME=$T/ssh/home
KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org
MaxSessions 50
LogLevel ERROR
EOF
  /usr/sbin/sshd -D -e -f "$d/sshd_config" >"$d/out" 2>&1 3>&- &
  echo $! >"$d/pid"
  if ! poll 200 0.025 port_open "$port"; then
    echo "sshd $name did not start:" >&2
    cat "$d/out" >&2
    return 1
  fi
  SSHD_PORT="$port"
  printf -v "PORT_$name" '%s' "$port"
  echo "$port" >"$d/port"
}

known_host() {
  local d="$T/ssh/$1" f="${2:-$T/ssh/known_hosts}"
  echo "[127.0.0.1]:$(cat "$d/port") $(cut -d' ' -f1,2 "$d/host_ed25519.pub")" >>"$f"
}

fingerprint() {
  ssh-keygen -l -E sha256 -f "$T/ssh/$1/host_ed25519.pub" | cut -d' ' -f2
}

start_silent() {
  SILENT_PORT="$(free_port)"
  python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16)
held = []
end = time.time() + 60
s.settimeout(1)
while time.time() < end:
    try: held.append(s.accept()[0])
    except socket.timeout: pass
' "$SILENT_PORT" "$T/" 3>&- &
  echo $! >"$T/silent.pid"
  poll 200 0.025 port_open "$SILENT_PORT" || { echo "silent server did not start" >&2; return 1; }
}

stop_sshds() {
  stop_pids "$T"/ssh/*/pid "$T/silent.pid" "$T/agent.pid"
}
