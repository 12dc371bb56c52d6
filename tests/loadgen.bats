#!/usr/bin/env bats
# bench/loadgen.c, the load generator of bench/zero-downtime.sh and make demo, against
# real servers on 127.0.0.1: it tells which backend answered (X-Backend), counts non-2xx
# apart from socket errors (a refused connection is a socket error, not a status),
# stops at its request count, and refuses a URL that is not loopback.

bats_require_minimum_version 1.5.0
load helper

setup_file() {
  export LG="$BATS_FILE_TMPDIR/loadgen"
  local san=()
  # under make asan, loadgen too runs with ASan+UBSan and leak detection
  [ -z "${ZDM_ASAN:-}" ] || san=(-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined)
  # shellcheck disable=SC2046
  cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror "${san[@]}" -o "$LG" "$BATS_TEST_DIRNAME/../bench/loadgen.c" \
    $(pkg-config --cflags --libs libcurl jansson)
}

# blue and green backends (bench/lb-servers.sh) in $T
backends() {
  chmod 755 "$T"
  source "$REPO/bench/lb-servers.sh"
  lbs_backends "$T/be"
}

teardown() {
  if declare -F lbs_stop_all >/dev/null; then lbs_stop_all; fi
  pkill -9 -f "$T/" 2>/dev/null || true
  cd /
  rm -rf "$T"
}

@test "loadgen: counts 2xx per backend, logs every response, stops at -n" {
  backends
  run -0 "$LG" -u "http://$BLUE_ADDR/" -c 3 -n 40 -d 20000 -l "$T/log" -s "$T/sum.json"
  run jq -c '[.requests, .status_2xx, .non_2xx, .socket_errors, .backends.blue.count, (.backends | keys)]' "$T/sum.json"
  assert_output '[40,40,0,0,40,["blue"]]'
  run awk -F'\t' '$2 == 200 && $3 == "blue" && $4 == "ok" && $1 > 1.6e12' "$T/log"
  assert_equal "${#lines[@]}" 40
}

@test "loadgen: non-2xx are counted apart from socket errors, with the backend that sent them" {
  backends
  touch "$T/be/green-fail"
  run -0 "$LG" -u "http://$GREEN_ADDR/" -c 2 -n 10 -l "$T/log" -s "$T/sum.json"
  run jq -c '[.requests, .status_2xx, .non_2xx, .socket_errors, .error_rate, .backends.green.count]' "$T/sum.json"
  assert_output '[10,0,10,0,1,10]'
  run cut -f2-4 "$T/log"
  assert_line --index 0 "$(printf '500\tgreen\tok')"
}

@test "loadgen: a refused connection is a socket error (connect), not a status" {
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  run -0 "$LG" -u "http://127.0.0.1:$port/" -c 1 -n 5 -l "$T/log" -s "$T/sum.json"
  run jq -c '[.requests, .status_2xx, .non_2xx, .socket_errors, .socket_errors_by_kind.connect, .backends]' "$T/sum.json"
  assert_output '[5,0,0,5,5,{}]'
  run cut -f2-4 "$T/log"
  assert_line --index 4 "$(printf '0\t-\tconnect')"
}

@test "loadgen: a URL that is not loopback, or a bad number, is a usage error (exit 2)" {
  run -2 "$LG" -u "http://example.com/" -n 1
  assert_output "loadgen: -u: 'http://example.com/' is not a loopback URL (http://127.0.0.1:PORT/...)"
  run -2 "$LG" -u "http://127.0.0.1:1/" -c 0
  assert_output "loadgen: -c: '0' is not a number in range (see -h)"
}

@test "loadgen: an nginx reload under load moves it to green and the closed keep-alive connections are counted" {
  backends
  lbs_nginx_front "$T/front" "$BLUE_ADDR"
  "$LG" -u "http://127.0.0.1:$FRONT_PORT/" -c 2 -r 200 -d 20000 -n 400 -l "$T/log" -s "$T/sum.json" &
  lg=$!
  sleep 0.5   # 400 requests at 200/s: the reload comes about a quarter of the way in
  lbs_upstream_file "$T/front/upstream.conf" "$GREEN_ADDR"
  nginx -p "$T/front/" -c "$T/front/nginx.conf" -s reload
  rc=0
  wait "$lg" || rc=$?
  assert_equal "$rc" 0
  run jq -r '[.requests, .status_2xx, (.closed_during_load >= 1), (.backends.blue.first_ms < .backends.green.first_ms)] | @csv' "$T/sum.json"
  assert_output '400,400,true,true'
  run bash -c "tail -n 10 '$T/log' | cut -f2-4 | sort -u"
  assert_output "$(printf '200\tgreen\tok')"
}
