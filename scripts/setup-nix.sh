#!/usr/bin/env bash
# Makes an installed Nix usable on this machine, as the Nix installer (and
# Debian's nix-setup-systemd, which needs systemd) would:
#   - /nix and /etc/nix exist (Nix running as root creates /nix/store itself);
#   - the build users exist: group nixbld with members nixbld1..nixbld32,
#     which Nix uses by default when it builds as root (build-users-group);
#   - the store's state (/nix/var/nix: database, gcroots) exists: Nix makes it
#     on first use, but not atomically, so two Nix commands starting at once
#     on an empty /nix can fail ("creating symlink ... File exists");
#   - /etc/nix/nix.conf exists, naming that group; an existing file is never
#     touched, whatever it says.
# Nothing else about the user's Nix changes: substituters, sandbox and the rest
# stay Nix's defaults. offload's demo and tests bring their own settings.
set -euo pipefail
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

BUILD_GROUP=nixbld
BUILD_USERS=32

$sudo mkdir -p /nix /etc/nix

if ! getent group "$BUILD_GROUP" >/dev/null; then
  $sudo groupadd --system "$BUILD_GROUP"
  echo "setup-nix: created group $BUILD_GROUP"
fi
created=0
for i in $(seq 1 "$BUILD_USERS"); do
  user="$BUILD_GROUP$i"
  getent passwd "$user" >/dev/null && continue
  nologin=$(command -v nologin || echo /usr/sbin/nologin)
  $sudo useradd --system --no-create-home --home-dir /var/empty --shell "$nologin" \
    --gid "$BUILD_GROUP" --groups "$BUILD_GROUP" --comment "Nix build user $i" "$user"
  created=$((created + 1))
done
[ "$created" -eq 0 ] || echo "setup-nix: created $created Nix build users (${BUILD_GROUP}1..${BUILD_GROUP}${BUILD_USERS})"

if [ ! -e /nix/var/nix/gcroots ]; then
  $sudo env NIX_REMOTE=local nix-store --init
  echo "setup-nix: initialised the Nix store's state in /nix/var/nix"
fi

if [ ! -e /etc/nix/nix.conf ]; then
  printf '%s\n' \
    '# Written by offload'"'"'s scripts/setup-nix.sh because there was no nix.conf;' \
    '# the Nix installer writes the same. Edit freely: the script never rewrites it.' \
    "build-users-group = $BUILD_GROUP" | $sudo tee /etc/nix/nix.conf >/dev/null
  echo "setup-nix: wrote /etc/nix/nix.conf"
fi
