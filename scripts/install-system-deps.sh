#!/usr/bin/env bash
# Installs what offload's real builds and the test cluster need on Debian:
# Nix 2.8 (nix-bin), OpenSSH's server, PostgreSQL for the fleet tests, and Chromium for the rendering tests,
# then makes the installed Nix usable the way the Nix installer does (Debian's
# nix-bin alone leaves no /nix, no /etc/nix and no nixbld build users).
# Runs as root (or through sudo). Safe to run again: it only adds what is
# missing and never rewrites an existing /etc/nix/nix.conf.
set -euo pipefail
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

need=()
command -v nix-store >/dev/null 2>&1 || need+=(nix-bin)
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
# The fleet tests and benchmark start a private PostgreSQL server (initdb into a temp dir).
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
# Headless Chromium renders the plan/run timelines in the picture tests.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y --no-install-recommends "${need[@]}" || {
    $sudo apt-get update
    $sudo apt-get install -y --no-install-recommends "${need[@]}"
  }
fi

"$(dirname "$0")/setup-nix.sh"

# sshd refuses to start without its privilege-separation directory.
[ "$(id -u)" -ne 0 ] || mkdir -p /run/sshd
