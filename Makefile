# The two commands of the README: `make demo` and `make test`. Both install the system
# dependencies first (scripts/install-deps.sh is idempotent).
SWIFT ?= swift
CONFIG ?= release
BUILD_FLAGS = -c $(CONFIG)
BIN = $(shell $(SWIFT) build $(BUILD_FLAGS) --show-bin-path)/mambaformer

.PHONY: deps build demo test clean

deps:
	bash scripts/install-deps.sh

build: deps
	$(SWIFT) build $(BUILD_FLAGS) --product mambaformer

# Starts a local cluster on the bundled demo checkpoint and asks it a question.
demo: build
	bash scripts/demo.sh "$(BIN)"

# Every test: unit, fixture parity, integration (real processes on loopback), fault tests.
test: deps
	bash scripts/test.sh

clean:
	rm -rf .build
