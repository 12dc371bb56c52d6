#!/usr/bin/env bash
# scripts/vendor-uplot.sh [VERSION]: put uPlot VERSION (default: the one in
# vendor/uplot/VERSION) from the npm registry into vendor/uplot/: its
# minified IIFE build, its CSS and its LICENSE, as the package ships them,
# and write down the version and the tarball's integrity.  zdm report's
# pages inline these two files (scripts/embed.sh builds them into zdm), so a
# report never fetches anything when it is viewed.  Run it by hand to move
# to another version, then make, and look at a report (docs/report.md).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=vendor/uplot
version="${1:-$(cat "$dir/VERSION")}"
command -v npm >/dev/null || { echo "vendor-uplot: npm is needed (scripts/deps.sh)" >&2; exit 2; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "uplot@$version" >/dev/null)
tgz="$tmp/uplot-$version.tgz"
[ -f "$tgz" ] || { echo "vendor-uplot: npm pack gave no uplot-$version.tgz" >&2; exit 1; }
integrity="$(npm view "uplot@$version" dist.integrity)"
# the registry's integrity is sha512 of the tarball, base64
got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
[ "$got" = "$integrity" ] || { echo "vendor-uplot: the tarball is not the registry's ($got, $integrity)" >&2; exit 1; }
tar -xzf "$tgz" -C "$tmp"
for f in package/dist/uPlot.iife.min.js package/dist/uPlot.min.css package/LICENSE; do
	[ -f "$tmp/$f" ] || { echo "vendor-uplot: no $f in the package" >&2; exit 1; }
	if grep -qi -e '</script' -e '</style' "$tmp/$f"; then
		echo "vendor-uplot: $f closes an inline <script> or <style>: it cannot be inlined" >&2
		exit 1
	fi
	cp "$tmp/$f" "$dir/"
done
echo "$version" >"$dir/VERSION"
echo "$integrity" >"$dir/INTEGRITY"
echo "vendor-uplot: uPlot $version in $dir ($integrity)"
