#!/usr/bin/env bash
# Install what zdm needs to build and test on Debian 12, when missing.
# Idempotent and quick when everything is there (no apt-get call at all).
set -euo pipefail

PKGS=(
  build-essential pkg-config
  libyaml-dev liblua5.4-dev libjansson-dev libssl-dev
  libcurl4-openssl-dev libssh2-1-dev libpq-dev
  bats bats-assert bats-support bats-file
  jq procps util-linux parallel
  python3 nginx-light prometheus curl openssl
  haproxy socat wrk
  postgresql postgresql-client pgbouncer    # postgresql-15 brings pgbench
  openssh-server openssh-client
  libxml2-utils bsdutils tmux
  time valgrind
  git
  clang libclang-rt-14-dev
  zsh
  lintian
  dpkg-dev
  nodejs npm
  chromium
)

# ajv-cli and yaml-language-server (tests/schema.bats checks `zdm schema`
# with them), playwright-core (tests/report.bats drives Debian's chromium
# with it; 1.64 is the one made for Chromium 156, and it downloads no
# browser of its own): pinned, in a cache outside the checkout, installed
# only when missing
NPM_PKGS=(ajv-cli@5.0.0 yaml-language-server@1.15.0 playwright-core@1.64.1)
npm_dir="${XDG_CACHE_HOME:-$HOME/.cache}/zdm-npm"
npm_deps() {
  local want=() p have
  for p in "${NPM_PKGS[@]}"; do
    # (none yet: sed fails, which must not end the script)
    have=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' \
      "$npm_dir/node_modules/${p%@*}/package.json" 2>/dev/null | head -1) || have=
    [ "$have" = "${p##*@}" ] || want+=("$p")
  done
  [ ${#want[@]} -eq 0 ] && return 0
  command -v npm >/dev/null || return 0
  echo "deps: installing ${want[*]} into $npm_dir" >&2
  mkdir -p "$npm_dir"
  npm install --prefix "$npm_dir" --no-audit --no-fund --loglevel=error "${want[@]}" >/dev/null
}

# unleash-server (tests/flag_unleash.bats and bench/progressive.sh run a real
# Unleash): the newest release whose package.json accepts the Node.js of
# Debian 12's nodejs (20): 7.5.1 says "node": ">=20", 7.6 and 8.x need 22.
# In a prefix of its own below the cache, so its ~400 dependencies never
# reshuffle the node_modules ajv-cli runs from
UNLEASH_PKG=unleash-server@7.5.1
unleash_deps() {
  local dir="$npm_dir/unleash" have
  have=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' \
    "$dir/node_modules/unleash-server/package.json" 2>/dev/null | head -1) || true
  [ "$have" = "${UNLEASH_PKG##*@}" ] && return 0
  command -v npm >/dev/null || return 0
  echo "deps: installing $UNLEASH_PKG into $dir" >&2
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "$UNLEASH_PKG" >/dev/null
}

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && continue
  # NodeSource's nodejs carries its own npm and conflicts with Debian's
  [ "$p" = npm ] && command -v npm >/dev/null && continue
  missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  npm_deps
  unleash_deps
  exit 0
fi

echo "deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
npm_deps
unleash_deps
