#!/usr/bin/env bash
# Boots a real systemd as PID 1 of its own PID, mount, network, UTS and IPC namespaces, over a
# copy-on-write overlay of / (upper layer on a tmpfs), with this repository bound read-only at
# /mnt/repo. Nothing it writes reaches the machine: never boot systemd over the real root (its
# boot-time tmpfiles would empty the machine's /tmp and its writes would land on the machine).
#
#   scripts/systemd-sandbox.sh STATE_DIR      # runs until its systemd is killed; prints nothing
#
# The caller finds the namespace's PID 1 as the child of this script's `unshare` and runs
# commands inside with `nsenter -t PID -a -r -w CMD...`; SIGKILL to that PID ends everything
# in the namespace. Root only.
set -euo pipefail
state=${1:?usage: systemd-sandbox.sh STATE_DIR}
repo="$(cd "$(dirname "$0")/.." && pwd)"
[ "$(id -u)" = 0 ] || { echo "systemd-sandbox: needs root" >&2; exit 1; }
[ -x /lib/systemd/systemd ] || { echo "systemd-sandbox: /lib/systemd/systemd not found (apt-get install systemd)" >&2; exit 1; }
mkdir -p "$state"
exec unshare --fork --pid --mount --net --uts --ipc --mount-proc=/proc /bin/bash -c '
set -euo pipefail
state=$1 repo=$2
mount --make-rprivate /
mount -t tmpfs -o mode=0700 tmpfs "$state"
mkdir -p "$state/upper" "$state/work" "$state/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$state/upper,workdir=$state/work" "$state/root"
r=$state/root
mount -t proc proc "$r/proc"
mount --rbind /sys "$r/sys"
mount --rbind /dev "$r/dev"
mount -t tmpfs -o mode=0755 tmpfs "$r/run"
mount -t tmpfs -o mode=1777 tmpfs "$r/tmp"
mkdir -p "$r/mnt/repo"
mount --bind "$repo" "$r/mnt/repo"
mount -o remount,bind,ro "$r/mnt/repo"
ip link set lo up
hostname mambaformer-sandbox
exec chroot "$r" /lib/systemd/systemd --system --unit=multi-user.target
' sandbox "$state" "$repo"
