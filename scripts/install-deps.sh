#!/usr/bin/env bash
# Installs every system dependency of the MambaFormer cluster on Debian 12, idempotently.
# Used by `make demo`, `make test` and .ci/run. Needs root (or sudo) only when something
# is missing.
set -euo pipefail

PACKAGES=(
  libzmq3-dev            # ZeroMQ 4.3 (built with CURVE)
  libprotobuf-c-dev      # protobuf-c runtime
  protobuf-c-compiler    # protoc-c, to check the committed generated code is current
  libopenblas-dev        # cblas (pthread variant)
  libdnnl-dev            # oneDNN: int8 GEMM for w8a8 prefill and the T5 encoder
  libsodium-dev          # CURVE key generation
  pkg-config
  systemd                # systemd-analyze verify for Deploy/ units; booted in a namespace by the live test
  dbus                   # the system bus of that systemd (systemctl as the autoscaler's user)
  polkitd                # the autoscaler's rule: start/stop expert units only
  curl                   # used by tests and the demo
  openssl                # the TLS test makes its CA and certificates at test time
  iproute2               # ip netns for the multi-host test
  haproxy                # the documented TCP load balancer in front of several gateways (its test)
  prometheus             # promtool: checks the shipped alert rules and dashboard expressions
  wordnet-base           # WordNet 3.0: the test that regenerates data/ byte for byte
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
