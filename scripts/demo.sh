#!/usr/bin/env bash
# The README's main job: a local cluster on the bundled demo checkpoint answering a question.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-.build/release/mambaformer}
"$BIN" --version
echo "demo: the cluster (router, experts, gateway) and the demo checkpoint are not built yet;"
echo "demo: this command builds the binary and stops here until they land."
exit 1
