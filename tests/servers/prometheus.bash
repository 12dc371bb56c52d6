# A real Prometheus for a whole test file (load after helper):
# tests/servers/prometheus.sh started from setup_file, in a temp dir of its
# own, and stopped from teardown_file.
#
#   prom_file_start [SPEC]   start it in $PROM_DIR, with the counters of SPEC
#                            (tests/data/prometheus/backfill.spec) backfilled
#                            first when given; exports PROM_DIR and PROM (its URL)
#   prom_file_stop           stop it and remove $PROM_DIR
#   prom CMD [ARGS...]       prometheus.sh CMD on it (set, unset, await)

prom_file_start() {
  PROM_DIR="$(mktemp -d "${BATS_TMPDIR:-/tmp}/zdm-prom.XXXXXX")"
  if [ -n "${1:-}" ]; then
    prom backfill "$1"
  fi
  prom start "$PROM_DIR/port"
  PROM="http://127.0.0.1:$(cat "$PROM_DIR/port")"
  export PROM_DIR PROM
}

prom_file_stop() {
  prom stop
  rm -rf "$PROM_DIR"
}

prom() {
  "$REPO/tests/servers/prometheus.sh" "$1" "$PROM_DIR" "${@:2}"
}
