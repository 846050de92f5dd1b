#!/usr/bin/env bash
# Fails when committed generated code (protobuf-c) is stale against its source.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x tools/gen-wire.sh ]; then
  tools/gen-wire.sh --check
fi
