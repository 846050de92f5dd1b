#!/usr/bin/env bash
# Runs every test. Swift tests run on a release build (with -enable-testing for @testable
# imports): the parity tests and the integration tests spawn real expert processes, and
# debug-mode Swift is 10-50x slower in the inner loops.
set -euo pipefail
cd "$(dirname "$0")/.."

# Generated protobuf-c code must match its .proto.
bash scripts/check-generated.sh
# The resolved package graph must be the locked one (no dependency drifts unnoticed).
bash scripts/check-dependencies.sh
# Every target imports what it declares, and the layering holds (ARCHITECTURE.md, Targets).
python3 scripts/check-layering.py

# The dataset generator and the training augmentation (standard-library Python; pytest from
# PyPI if the machine lacks it; the torch tests in tools/train/tests skip without torch).
if ! python3 -c "import pytest" 2>/dev/null; then
  python3 -m pip install -q "pytest==9.0.3" 2>/dev/null \
    || python3 -m pip install -q --break-system-packages "pytest==9.0.3"
fi
python3 -m pytest -q tools/dataset/tests tools/train/tests

# schemathesis, for the OpenAPI contract test (SchemathesisTests), pinned.
if ! python3 -c "import schemathesis, sys; sys.exit(schemathesis.__version__ != '4.1.4')" 2>/dev/null; then
  python3 -m pip install -q "schemathesis==4.1.4" 2>/dev/null \
    || python3 -m pip install -q --break-system-packages "schemathesis==4.1.4"
fi
# The official OpenAI client, for the compatibility test (OpenAIClientTests), pinned.
if ! python3 -c "import openai, sys; sys.exit(openai.__version__ != '1.109.1')" 2>/dev/null; then
  python3 -m pip install -q "openai==1.109.1" 2>/dev/null \
    || python3 -m pip install -q --break-system-packages "openai==1.109.1"
fi

# The previous release, for the upgrade test (built once; a few minutes the first time).
bash scripts/build-previous-release.sh
export MAMBAFORMER_UPGRADE_TEST=required

swift build -c release -Xswiftc -enable-testing --build-tests
swift test -c release -Xswiftc -enable-testing --skip-build --disable-swift-testing "$@"
