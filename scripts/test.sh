#!/usr/bin/env bash
# Runs every test. Tests run on a release build (with -enable-testing for @testable
# imports): the numerics and the integration tests spawn real expert processes, and
# debug-mode Swift is 10-50x slower in the inner loops.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/check-generated.sh
swift build -c release -Xswiftc -enable-testing --build-tests
swift test -c release -Xswiftc -enable-testing --skip-build --disable-swift-testing "$@"
