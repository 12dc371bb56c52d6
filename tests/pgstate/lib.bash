# What tests/pgstate/zdm and tests/helper.bash share in the PostgreSQL pass
# (ZDM_TEST_STATE=pg): a state dir's key and its schema.  Builtins only: a
# fork costs more than the rest of a lookup.
#
#   pgstate_abs PATH     PATH made absolute lexically, as zdm's path_abs does
#                        (symlinks kept; "." and ".." folded, no trailing /),
#                        in $REPLY
#   pgstate_schema KEY   the schema of state KEY in this test, in $REPLY
#                        (empty when it has none); $ZDM_PGMAP/index holds
#                        "SCHEMA<TAB>KEY" lines
#   pgstate_ran          note that a zdm of this test ($$, the pid it keeps
#                        after exec) may write to the state: $ZDM_PGMAP/ran

pgstate_abs() {
  local p="$1" part out=""
  local -a parts
  [ "${p#/}" != "$p" ] || p="$PWD/$p"
  IFS=/ read -r -a parts <<<"$p"
  for part in "${parts[@]}"; do
    case "$part" in
      "" | .) ;;
      ..) out="${out%/*}" ;;
      *) out="$out/$part" ;;
    esac
  done
  REPLY="${out:-/}"
}

pgstate_schema() {
  local s k
  REPLY=""
  while IFS=$'\t' read -r s k; do
    if [ "$k" = "$1" ]; then
      REPLY="$s"
      return 0
    fi
  done <"$ZDM_PGMAP/index"
}

pgstate_ran() {
  echo "$$" >>"$ZDM_PGMAP/ran"
}
