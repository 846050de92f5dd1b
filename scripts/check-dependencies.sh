#!/usr/bin/env bash
# Fails when the resolved package graph differs from dependencies.lock (name and version of
# every package, transitive ones included). Package.swift pins the direct dependencies with
# `exact:`; this catches a transitive package drifting with them. After a deliberate upgrade:
#   scripts/check-dependencies.sh --write
set -euo pipefail
cd "$(dirname "$0")/.."
resolved=$(swift package show-dependencies --format json | python3 -c '
import json, sys
seen = {}
def walk(node):
    for d in node.get("dependencies", []):
        seen[d["identity"]] = d["version"]
        walk(d)
walk(json.load(sys.stdin))
print("\n".join(f"{k} {v}" for k, v in sorted(seen.items())))')
if [ "${1:-}" = "--write" ]; then
  { echo "# The resolved package graph: identity and version (scripts/check-dependencies.sh --write)."; echo "$resolved"; } > dependencies.lock
  echo "check-dependencies: wrote dependencies.lock"
  exit 0
fi
expected=$(grep -v '^#' dependencies.lock)
if [ "$resolved" != "$expected" ]; then
  echo "check-dependencies: the resolved packages differ from dependencies.lock:" >&2
  diff <(echo "$expected") <(echo "$resolved") >&2 || true
  echo "pin the versions in Package.swift, or after a deliberate upgrade run scripts/check-dependencies.sh --write" >&2
  exit 1
fi
echo "check-dependencies: $(echo "$resolved" | wc -l) packages as locked"
