#!/usr/bin/env bash
# Build the Debian package of zdm (make deb): stage the files of a /usr install
# under $DEB_DIR/root, write DEBIAN/control (Depends from dpkg-shlibdeps) and
# DEBIAN/md5sums, and pack $OUT_DIR/zdm_VERSION_ARCH.deb with dpkg-deb, files
# owned by root.  Everything it writes is under $DEB_DIR and $OUT_DIR.
#   DEB_BIN     the zdm binary built with PREFIX=/usr
#   DEB_DIR     scratch directory (emptied first)
#   OUT_DIR     where the .deb goes
#   DEB_MAINTAINER  the Maintainer field
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DEB_BIN:?}" "${DEB_DIR:?}" "${OUT_DIR:?}"
: "${DEB_MAINTAINER:=zdm maintainers <maintainers@users.noreply.h-seed-a9d915b9.example>}"

version=$("$DEB_BIN" version | awk '{print $2}')
arch=$(dpkg --print-architecture)
root=$DEB_DIR/root
rm -rf "$DEB_DIR"
umask 022
install -d "$root/DEBIAN" "$root/usr/bin" "$root/usr/share/zdm/plugins" \
    "$root/usr/share/man/man1" "$root/usr/share/man/man5" "$root/usr/share/doc/zdm/examples"

# the binary, stripped; the plugins where it looks (BIN/../share/zdm/plugins)
install -s -m 755 "$DEB_BIN" "$root/usr/bin/zdm"
objcopy --remove-section=.comment "$root/usr/bin/zdm"	# what dh_strip drops too
(cd plugins && find . -name '*.lua' -exec install -D -m 644 {} "$root/usr/share/zdm/plugins/{}" \;)
gzip -9n -c docs/zdm.1 >"$root/usr/share/man/man1/zdm.1.gz"
gzip -9n -c docs/zdm-runbook.5 >"$root/usr/share/man/man5/zdm-runbook.5.gz"
install -m 644 runbooks/*.yml "$root/usr/share/doc/zdm/examples/"
# shell completion where bash-completion and zsh look
install -D -m 644 completion/zdm.bash "$root/usr/share/bash-completion/completions/zdm"
install -D -m 644 completion/_zdm "$root/usr/share/zsh/vendor-completions/_zdm"
install -m 644 scripts/deb/copyright "$root/usr/share/doc/zdm/copyright"
# a native package's changelog.gz is read as a Debian changelog: one entry
# for this version, then CHANGELOG.md after "Old Changelog:" as it is
when=$(git log -1 --format=%aD 2>/dev/null || date -R)
{
  printf 'zdm (%s) unstable; urgency=medium\n\n' "$version"
  printf '  * zdm %s; its changes are in the upstream changelog below.\n\n' "$version"
  printf ' -- %s  %s\n\nOld Changelog:\n\n' "$DEB_MAINTAINER" "$when"
  cat CHANGELOG.md
} | gzip -9n >"$root/usr/share/doc/zdm/changelog.gz"
chmod 644 "$root"/usr/share/man/man*/*.gz "$root/usr/share/doc/zdm/changelog.gz"

# Depends: dpkg-shlibdeps wants a debian/control, so give it one of its own
mkdir -p "$DEB_DIR/shlibs/debian"
printf 'Source: zdm\n\nPackage: zdm\nArchitecture: any\n' >"$DEB_DIR/shlibs/debian/control"
depends=$(cd "$DEB_DIR/shlibs" && dpkg-shlibdeps -O -e"$root/usr/bin/zdm" |
    sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || { echo "deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

size=$(du -k -s --apparent-size "$root/usr" | cut -f1)
cat >"$root/DEBIAN/control" <<CTL
Package: zdm
Version: $version
Architecture: $arch
Maintainer: $DEB_MAINTAINER
Installed-Size: $size
Depends: $depends
Section: admin
Priority: optional
Description: zero-downtime migration orchestrator
 zdm runs declarative YAML runbooks of migration steps (load balancer
 drains, release symlink switches, PostgreSQL copies and syncs, gates on
 metrics and health checks, approvals), journals every step, and rolls back
 with each step's undo when a later step fails.  Steps are Lua plugins;
 the ones shipped are in /usr/share/zdm/plugins.
CTL
(cd "$root" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"

mkdir -p "$OUT_DIR"
dpkg-deb --root-owner-group -Zxz --build "$root" "$OUT_DIR/zdm_${version}_${arch}.deb" >/dev/null
echo "$OUT_DIR/zdm_${version}_${arch}.deb"
