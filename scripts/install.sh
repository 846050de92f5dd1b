#!/usr/bin/env bash
# Installs (or removes) MambaFormer as systemd services on this host. Idempotent: run it
# again after an upgrade; an operator's /etc/mambaformer/cluster.toml and model are kept.
#
#   sudo scripts/install.sh                    # binary, units, config skeleton, demo model, user
#   sudo scripts/install.sh --model /path/ckpt # also (re)places the model folder with this checkpoint
#   sudo scripts/install.sh --uninstall        # stop + remove binary and units; keep config, model, user
#   sudo scripts/install.sh --uninstall --purge  # ... and config, keys, model and the user too
#
# Environment:
#   DESTDIR  install into this root instead of / (packaging, tests): no useradd, no chown,
#            no systemctl; the tree is otherwise identical.
#   PREFIX   where the binary and docs go (default /usr/local).
#   BINARY   the mambaformer executable to install (default: the release build in .build/release,
#            which must exist: build it first as yourself, `swift build -c release --product
#            mambaformer`. As root this script never compiles: building runs every package's
#            manifest and build code, which must not run as root).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
DESTDIR="${DESTDIR:-}"
PREFIX="${PREFIX:-/usr/local}"
USER_NAME=mambaformer
# The autoscaler's own user (group mambaformer): polkit lets it start and stop expert units only.
SCALER_USER=mambaformer-autoscaler
mode=install
purge=0
model_source=""

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --uninstall) mode=uninstall ;;
    --purge) purge=1 ;;
    --model) shift; model_source="${1:?--model needs a checkpoint folder}" ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

root="${DESTDIR%/}"
bindir="$root$PREFIX/bin"
docdir="$root$PREFIX/share/doc/mambaformer"
unitdir="$root/etc/systemd/system"
confdir="$root/etc/mambaformer"
statedir="$root/var/lib/mambaformer"
units=(mambaformer.target mambaformer-router.service "mambaformer-router@.service" mambaformer-gateway.service
       "mambaformer-expert@.service" mambaformer-autoscaler.service)
polkitdir="$root/etc/polkit-1/rules.d"
polkit_rule=50-mambaformer-autoscaler.rules

# systemctl only on the real root, and only where systemd is running (not in containers).
live_systemd() { [ -z "$root" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }
say() { echo "install.sh: $*"; }

if [ "$mode" = uninstall ]; then
  if live_systemd; then
    instances=$(systemctl list-units --all --plain --no-legend 'mambaformer-expert@*' 'mambaformer-router@*' | awk '{print $1}')
    # shellcheck disable=SC2086
    systemctl disable --now mambaformer.target mambaformer-autoscaler.service mambaformer-router.service \
      mambaformer-gateway.service $instances 2>/dev/null || true
  fi
  rm -f "$bindir/mambaformer"
  for u in "${units[@]}"; do rm -f "$unitdir/$u"; rm -rf "$unitdir/$u.d"; done
  rm -f "$polkitdir/$polkit_rule"
  # Instances enabled through `systemctl enable` leave symlinks in the target's wants folder.
  rm -rf "$unitdir/mambaformer.target.wants" "$unitdir/multi-user.target.wants/mambaformer.target"
  rm -rf "$docdir"
  if [ "$purge" = 1 ]; then
    rm -rf "$confdir" "$statedir"
    if [ -z "$root" ] && getent passwd "$SCALER_USER" >/dev/null; then userdel "$SCALER_USER" || true; fi
    if [ -z "$root" ] && getent passwd "$USER_NAME" >/dev/null; then userdel "$USER_NAME" || true; fi
    say "removed everything, configuration, keys, model and user included"
  else
    say "removed binary and units; kept $confdir, $statedir and the user (--purge removes them)"
  fi
  if live_systemd; then systemctl daemon-reload; fi
  exit 0
fi

# 1. The binary.
if [ -z "${BINARY:-}" ]; then
  BINARY="$repo/.build/release/mambaformer"
  if [ ! -x "$BINARY" ]; then
    if [ "$(id -u)" = 0 ]; then
      echo "install.sh: no release build at $BINARY. Build it first as an unprivileged user" >&2
      echo "  (swift build -c release --product mambaformer), then run this script again," >&2
      echo "  or point BINARY at a binary built elsewhere. It does not compile as root." >&2
      exit 1
    fi
    (cd "$repo" && swift build -c release --product mambaformer)
  fi
fi
[ -x "$BINARY" ] || { echo "install.sh: $BINARY is not an executable" >&2; exit 1; }
install -d -m 0755 "$bindir" "$docdir" "$unitdir"
install -m 0755 "$BINARY" "$bindir/mambaformer.new"
mv -f "$bindir/mambaformer.new" "$bindir/mambaformer"   # atomic: running services keep the old inode

# 2. The units, pointing at this PREFIX.
for u in "${units[@]}"; do
  sed -e "s#/usr/local/bin/mambaformer#$PREFIX/bin/mambaformer#g" \
      -e "s#/usr/local/share/doc/mambaformer#$PREFIX/share/doc/mambaformer#g" \
      "$repo/Deploy/$u" > "$unitdir/$u.new"
  chmod 0644 "$unitdir/$u.new"
  mv -f "$unitdir/$u.new" "$unitdir/$u"
done
# systemd >= 254 backs restarts off exponentially (3 s doubling up to 1 min); older ones
# (Debian 12: 252) would warn about unknown keys, so the drop-in is written only where known.
sd_version=$(systemctl --version 2>/dev/null | awk 'NR==1 {print $2}' || true)
for u in mambaformer-router.service "mambaformer-router@.service" mambaformer-gateway.service "mambaformer-expert@.service"; do
  if [ -n "$sd_version" ] && [ "$sd_version" -ge 254 ] 2>/dev/null; then
    install -d -m 0755 "$unitdir/$u.d"
    printf '[Service]\nRestartSteps=5\nRestartMaxDelaySec=1min\n' > "$unitdir/$u.d/10-backoff.conf"
  else
    rm -rf "$unitdir/$u.d/10-backoff.conf"
  fi
done
install -m 0644 "$repo/README.md" "$docdir/README.md"
# The autoscaler's polkit rule (read by polkitd at once; harmless where polkit is absent).
install -d -m 0755 "$polkitdir"
install -m 0644 "$repo/Deploy/polkit/$polkit_rule" "$polkitdir/$polkit_rule"

# 3. Configuration: the skeleton only when there is none (never overwrite the operator's).
install -d -m 0755 "$confdir"
install -d -m 0750 "$confdir/keys" "$confdir/keys/gateways" "$confdir/keys/experts"
if [ ! -e "$confdir/cluster.toml" ]; then
  install -m 0640 "$repo/Deploy/cluster.toml" "$confdir/cluster.toml"
  say "wrote $confdir/cluster.toml (edit it: endpoints, model, CURVE keys, limits)"
fi
install -m 0644 "$repo/Deploy/cluster.toml" "$confdir/cluster.toml.example"

# 4. The model: the demo checkpoint when there is none, or the one given with --model.
model_dir="$statedir/model"
install -d -m 0755 "$statedir"
if [ -n "$model_source" ] || [ ! -e "$model_dir/mambaformer.json" ]; then
  src="${model_source:-$repo/models/demo}"
  [ -f "$src/mambaformer.json" ] || { echo "install.sh: $src is not a MambaFormer checkpoint (no mambaformer.json)" >&2; exit 1; }
  rm -rf "$model_dir.new"
  install -d -m 0755 "$model_dir.new"
  for part in mambaformer.json README.md emamba et5 gate; do
    if [ -e "$src/$part" ]; then cp -R "$src/$part" "$model_dir.new/"; fi
  done
  chmod -R a+rX,go-w "$model_dir.new"
  rm -rf "$model_dir"
  mv "$model_dir.new" "$model_dir"
  say "installed the model from $src into $model_dir"
fi

# 5. The service user, ownership and systemd (real root only).
if [ -z "$root" ]; then
  if ! getent passwd "$USER_NAME" >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/mambaformer --no-create-home \
            --shell /usr/sbin/nologin --comment "MambaFormer cluster" "$USER_NAME"
    say "created system user $USER_NAME"
  fi
  if ! getent passwd "$SCALER_USER" >/dev/null; then
    useradd --system --gid "$USER_NAME" --home-dir /var/lib/mambaformer --no-create-home \
            --shell /usr/sbin/nologin --comment "MambaFormer autoscaler" "$SCALER_USER"
    say "created system user $SCALER_USER (starts and stops expert units through polkit)"
  fi
  chown root:"$USER_NAME" "$confdir/cluster.toml" "$confdir/keys" "$confdir/keys/gateways" "$confdir/keys/experts"
  chown -R root:root "$model_dir"
fi
if live_systemd; then
  systemctl daemon-reload
fi

say "installed $PREFIX/bin/mambaformer and the units into ${root:-}/etc/systemd/system"
say "next: edit /etc/mambaformer/cluster.toml, then"
say "  systemctl enable --now mambaformer-router mambaformer-gateway mambaformer.target"
say "  mambaformer scale emamba 2 && mambaformer scale et5 1"
say "  (or let the autoscaler size the pools: systemctl enable --now mambaformer-autoscaler)"
