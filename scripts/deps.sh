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
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
