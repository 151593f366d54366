#!/usr/bin/env bash
# Fill .cache/ohif-3.12.10/ with the prebuilt OHIF viewer (npm @ohif/app, its dist/) for tests/e2e/test_ohif.py.
# Usage: tests/e2e/fetch_ohif.sh [target-dir, relative to the repository root]   (idempotent: does nothing when the target already has index.html)
set -euo pipefail
cd "$(dirname "$0")/../.."

version=3.12.10
target=${1:-.cache/ohif-$version}
if [ -f "$target/index.html" ]; then
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "@ohif/app@$version" >/dev/null)
tar -xzf "$work"/ohif-app-"$version".tgz -C "$work" package/dist
test -f "$work/package/dist/index.html"
mkdir -p "$(dirname "$target")"
rm -rf "$target.tmp" "$target"  # a half-filled target from an interrupted run
# via a sibling name, so that the target appears whole (the move out of /tmp may be a copy)
mv "$work/package/dist" "$target.tmp"
mv "$target.tmp" "$target"
echo "OHIF $version dist in $target"
