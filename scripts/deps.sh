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
  postgresql postgresql-client
  openssh-server openssh-client
  libxml2-utils bsdutils tmux
  time valgrind
  git
  clang libclang-rt-14-dev
  zsh
  lintian
  dpkg-dev
  nodejs npm
)

# ajv-cli and yaml-language-server (tests/schema.bats checks `zdm schema`
# with them): pinned, in a cache outside the checkout, installed only when
# missing
NPM_PKGS=(ajv-cli@5.0.0 yaml-language-server@1.15.0)
npm_dir="${XDG_CACHE_HOME:-$HOME/.cache}/zdm-npm"
npm_deps() {
  local want=() p have
  for p in "${NPM_PKGS[@]}"; do
    have=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' \
      "$npm_dir/node_modules/${p%@*}/package.json" 2>/dev/null | head -1)
    [ "$have" = "${p##*@}" ] || want+=("$p")
  done
  [ ${#want[@]} -eq 0 ] && return 0
  command -v npm >/dev/null || return 0
  echo "deps: installing ${want[*]} into $npm_dir" >&2
  mkdir -p "$npm_dir"
  npm install --prefix "$npm_dir" --no-audit --no-fund --loglevel=error "${want[@]}" >/dev/null
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
  exit 0
fi

echo "deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
npm_deps
