#!/usr/bin/env bash
# Builds the previous release's `mambaformer` beside this one, for the upgrade test
# (Tests/IntegrationTests/UpgradeTests.swift: a cluster of the previous release upgraded node by
# node under load). The release is the commit named in scripts/previous-release; its sources are
# taken from git (git archive) into .build-previous/src and built into .build-previous/build.
# Skips the build when that binary is already there. Usage: scripts/build-previous-release.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rev=$(grep -v '^#' scripts/previous-release | head -1 | awk '{print $1}')
out=.build-previous
binary=$out/build/release/mambaformer
if [ -x "$binary" ] && [ "$(cat $out/rev 2>/dev/null)" = "$rev" ]; then
  echo "build-previous-release: $binary (${rev:0:10}) is built"
  exit 0
fi
if ! git cat-file -e "$rev^{commit}" 2>/dev/null; then
  echo "build-previous-release: commit $rev is not in this clone's history; fetch it (git fetch --unshallow)" >&2
  exit 1
fi
rm -rf "$out"
mkdir -p "$out/src"
git archive "$rev" | tar -x -C "$out/src"
echo "build-previous-release: building ${rev:0:10} (the previous release) into $out/build"
swift build -c release --product mambaformer --package-path "$out/src" --scratch-path "$out/build" 2>&1 | tail -3
# The release's tests read the demo checkpoint relative to its tree; the binary needs nothing else.
echo "$rev" > "$out/rev"
