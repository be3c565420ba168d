#!/usr/bin/env bash
# Re-vendor the third-party front-end files in static/vendor/ from the npm registry.
#
# Pages must never load anything from a CDN or any third party, so the few files we use
# are committed under static/vendor/. This script reproduces them exactly: it fetches
# pinned versions with `npm pack`, checks each tarball against its pinned registry
# integrity (sha512), extracts only the files we ship, and prints their sha256.
#
# Usage: scripts/vendor_static.sh            (from anywhere inside the repository)
# To upgrade: change a version below, run `npm view PKG@VERSION dist.integrity`, update
# the integrity next to it, run this script and review the diff.
set -euo pipefail

HTMX_VERSION="2.0.11"
HTMX_INTEGRITY="sha512-Thx/WtpeOQqSrqBCw/A1cwGJGg4UrVa3+sW0GmrM3p4gJgO89ecH4qtbnyzDDWFvBTqjnIMCgELTNt636dtamA=="
PICO_VERSION="2.1.1"
PICO_INTEGRITY="sha512-kIDugA7Ps4U+2BHxiNHmvgPIQDWPDU4IeU6TNRdvXQM1uZX+FibqDQT2xUOnnO2yq/LUHcwnGlu1hvf4KfXnMg=="

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/static/vendor"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

command -v npm >/dev/null || { echo "npm is required (apt-get install npm)" >&2; exit 1; }

# fetch PKG VERSION INTEGRITY -> prints the extracted package folder
fetch() {
  local pkg="$1" version="$2" integrity="$3" dir tgz got
  dir="$WORK/$(echo "$pkg" | tr '/@' '__')"
  mkdir -p "$dir"
  tgz="$(cd "$dir" && npm pack --silent "$pkg@$version" | tail -n1)"
  got="sha512-$(openssl dgst -sha512 -binary "$dir/$tgz" | base64 -w0)"
  if [[ "$got" != "$integrity" ]]; then
    echo "integrity mismatch for $pkg@$version: got $got" >&2
    exit 1
  fi
  tar -xzf "$dir/$tgz" -C "$dir"
  echo "$dir/package"
}

mkdir -p "$DEST"

htmx="$(fetch htmx.org "$HTMX_VERSION" "$HTMX_INTEGRITY")"
install -m 0644 "$htmx/dist/htmx.min.js" "$DEST/htmx.min.js"
install -m 0644 "$htmx/LICENSE" "$DEST/htmx.LICENSE"

pico="$(fetch @picocss/pico "$PICO_VERSION" "$PICO_INTEGRITY")"
install -m 0644 "$pico/css/pico.min.css" "$DEST/pico.min.css"
install -m 0644 "$pico/LICENSE.md" "$DEST/pico.LICENSE.md"

cat > "$DEST/VERSIONS" <<TXT
htmx.org $HTMX_VERSION dist/htmx.min.js -> htmx.min.js
@picocss/pico $PICO_VERSION css/pico.min.css -> pico.min.css
Reproduce with scripts/vendor_static.sh
TXT

echo "Vendored into ${DEST#"$ROOT"/}:"
(cd "$DEST" && sha256sum htmx.min.js pico.min.css htmx.LICENSE pico.LICENSE.md)
