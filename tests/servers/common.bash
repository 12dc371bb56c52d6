# What every test server library shares (tests/servers/*.bash source it;
# the benches that source those get it too): free ports, bounded waits,
# starting a server in the background and stopping servers by pid file.
# Nothing here knows about bats or $T.
#
#   free_port                     a 127.0.0.1 port nothing listens on (bound, read, released)
#   port_open PORT                true once something accepts on 127.0.0.1:PORT
#   poll N PAUSE CMD...           run CMD until it succeeds: at once, then after each
#                                 of N pauses of PAUSE seconds; false if it never did
#   serve WHAT PIDFILE LOG READY CMD...
#                                 start CMD in the background (stdout and stderr in LOG,
#                                 its pid in PIDFILE) and wait, at most 5 s, until the
#                                 file READY is not empty; otherwise print "WHAT did not
#                                 start:" and LOG, and fail
#   stop_pids PIDFILE...          kill the process of each pid file there is, reap it,
#                                 remove the file

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

poll() {
  local n="$1" pause="$2" i
  shift 2
  for ((i = 0; i < n; i++)); do
    "$@" && return 0
    sleep "$pause"
  done
  "$@"
}

serve() {
  local what="$1" pidfile="$2" log="$3" ready="$4"
  shift 4
  "$@" >"$log" 2>&1 3>&- &
  echo $! >"$pidfile"
  poll 200 0.025 test -s "$ready" && return 0
  echo "$what did not start:" >&2
  cat "$log" >&2
  return 1
}

stop_pids() {
  local f pid
  for f in "$@"; do
    [ -f "$f" ] || continue
    pid="$(cat "$f")"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$f"
  done
}
