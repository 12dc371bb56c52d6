#!/usr/bin/env bats
# make deb: the Debian package is built outside the checkout (BUILD=), lintian
# finds no error in it, and it installs with dpkg into a private root (its own
# admin dir, --root), where the installed zdm finds the plugins it shipped
# beside it (BIN/../share/zdm/plugins) and runs a runbook; removing it leaves
# no file behind.  The private root has no libc6 and co. in its database, so
# dpkg is told --force-depends; the binary uses the host's libraries.

bats_require_minimum_version 1.5.0
load helper

setup_file() {
  command -v dpkg-deb >/dev/null && command -v dpkg-shlibdeps >/dev/null &&
    command -v lintian >/dev/null || skip "needs dpkg-deb, dpkg-shlibdeps and lintian (scripts/deps.sh)"
  export B="$BATS_FILE_TMPDIR/b"
  # a make of its own, not the jobserver of a make test around it
  env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$REPO" -j2 deb BUILD="$B" >"$BATS_FILE_TMPDIR/make.out" 2>&1 || {
    cat "$BATS_FILE_TMPDIR/make.out" >&2
    return 1
  }
  local v
  v="$("$B/deb/obj/zdm" version | awk '{print $2}')"
  export DEB="$B/zdm_${v}_$(dpkg --print-architecture).deb" DEB_VERSION="$v"
}

teardown_file() { :; }

# dpkg on the private root $R (made empty, with an empty database, by install)
rdpkg() {
  dpkg --root="$R" --admindir="$R/var/lib/dpkg" --log="$R/dpkg.log" \
    --force-not-root --force-script-chrootless "$@"
}

install_deb() {
  R="$T/root"
  mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates"
  : >"$R/var/lib/dpkg/status"
  rdpkg --force-depends -i "$DEB" >"$T/dpkg-i.out" 2>&1 || { cat "$T/dpkg-i.out" >&2; return 1; }
}

@test "deb: make deb BUILD=DIR writes zdm_VERSION_ARCH.deb there, with the control fields" {
  [ -f "$DEB" ]
  [ "$DEB_VERSION" = "$(awk -F'"' '/define ZDM_VERSION/ {print $2}' "$REPO/src/base/util.h")" ]
  run dpkg-deb -f "$DEB" Package Version Architecture Section Priority
  assert_output "Package: zdm
Version: $DEB_VERSION
Architecture: $(dpkg --print-architecture)
Section: admin
Priority: optional"
  run dpkg-deb -f "$DEB" Depends
  assert_output --regexp '^libc6 \(>= [0-9.]+\), .*liblua5\.4-0.*libyaml'
  run dpkg-deb -f "$DEB" Installed-Size
  assert_output --regexp '^[0-9]+$'
  dpkg-deb --ctrl-tarfile "$DEB" | tar -t | grep -qx './md5sums'
}

@test "deb: the package's files are root's, the binary stripped, man pages gzipped" {
  run dpkg-deb -c "$DEB"
  assert_success
  [ -z "$(awk '$2 != "root/root"' <<<"$output")" ]
  for f in ./usr/bin/zdm ./usr/share/zdm/plugins/release/symlink.lua ./usr/share/zdm/plugins/lb/nginx.lua \
      ./usr/share/man/man1/zdm.1.gz ./usr/share/man/man5/zdm-runbook.5.gz \
      ./usr/share/doc/zdm/copyright ./usr/share/doc/zdm/changelog.gz ./usr/share/doc/zdm/examples/demo.yml \
      ./usr/share/bash-completion/completions/zdm ./usr/share/zsh/vendor-completions/_zdm; do
    assert_line --regexp " $f\$"
  done
  dpkg-deb -x "$DEB" "$T/x"
  run readelf -S "$T/x/usr/bin/zdm"
  refute_output --partial '.symtab'
  gzip -t "$T/x/usr/share/man/man1/zdm.1.gz" "$T/x/usr/share/man/man5/zdm-runbook.5.gz"
  head -1 "$T/x/usr/share/doc/zdm/copyright" | grep -q '^Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/'
}

@test "deb: lintian reports no error" {
  run lintian --fail-on error "$DEB"
  assert_success
  if grep -q '^E: ' <<<"$output"; then echo "$output" >&2; return 1; fi
}

@test "deb: installed in a private root, zdm runs, finds its plugins there and switches a release" {
  install_deb
  rdpkg --verify zdm
  unset ZDM_PLUGIN_PATH
  mkdir "$T/work" && cd "$T/work"
  run --separate-stderr "$R/usr/bin/zdm" version
  assert_success
  assert_output --regexp "^zdm $DEB_VERSION "
  run --separate-stderr "$R/usr/bin/zdm" plugins
  assert_success
  assert_line --regexp '^release\.symlink '
  assert_line --regexp '^lb\.nginx '
  # the first directory of the search path that is there: the installed one
  first="$(sed -n '/^Plugin search path/,$p' <<<"$output" | grep -v 'no such directory' | sed -n 2p)"
  [ "$first" = "  $R/usr/share/zdm/plugins" ]

  mkdir -p "$T/site/releases/v1" "$T/site/releases/v2"
  ln -s releases/v1 "$T/site/current"
  cat >"$T/rb.yml" <<YML
zdm: 1
name: deb-release
on_failure: rollback
steps:
  - id: switch
    uses: release.symlink
    with: {link: $T/site/current, target: releases/v2}
YML
  run --separate-stderr timeout 60 "$R/usr/bin/zdm" run "$T/rb.yml" --state-dir "$T/state"
  assert_success
  [ "$(readlink "$T/site/current")" = releases/v2 ]
  # a step after the switch fails: the plugin's undo points current back
  cat >>"$T/rb.yml" <<YML
  - id: fails
    uses: exec
    with: {shell: "exit 3"}
YML
  sed -i 's|target: releases/v2|target: releases/v1|' "$T/rb.yml"
  run --separate-stderr timeout 60 "$R/usr/bin/zdm" run "$T/rb.yml" --state-dir "$T/state"
  assert_failure
  [ "$(readlink "$T/site/current")" = releases/v2 ]
  # zdm report: uPlot is in the binary, and its licence in the package's copyright
  run --separate-stderr timeout 60 "$R/usr/bin/zdm" report --state-dir "$T/state" --html "$T/run.html"
  assert_success
  grep -qF "/*! https://github.com/leeoniya/uPlot (v$(cat "$REPO/vendor/uplot/VERSION")) */" "$T/run.html"
  grep -qx 'Files: vendor/uplot/\*' "$R/usr/share/doc/zdm/copyright"
  grep -qx 'Copyright: 2022 Leon Sorokin' "$R/usr/share/doc/zdm/copyright"
  grep -qx 'License: Expat' "$R/usr/share/doc/zdm/copyright"
}

@test "deb: dpkg --purge leaves no file of the package in the root" {
  install_deb
  [ -x "$R/usr/bin/zdm" ]
  rdpkg --purge zdm >/dev/null
  run dpkg-query --admindir="$R/var/lib/dpkg" -W -f='${Status}' zdm
  refute_output --partial 'installed'
  run find "$R" -mindepth 1 -not -path "$R/var" -not -path "$R/var/*" -not -name dpkg.log
  assert_output ''
}
