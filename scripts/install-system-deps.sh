#!/usr/bin/env bash
# Installs what offload's real builds and the test cluster need on Debian:
# Nix 2.8 (nix-bin), OpenSSH's server, and Chromium for the rendering tests. Runs as root (or through sudo).
set -euo pipefail
need=()
command -v nix-store >/dev/null 2>&1 || need+=(nix-bin)
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
# Headless Chromium renders the plan/run timelines in the picture tests.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y --no-install-recommends "${need[@]}" || {
    $sudo apt-get update
    $sudo apt-get install -y --no-install-recommends "${need[@]}"
  }
fi
# sshd refuses to start without its privilege-separation directory.
[ "$(id -u)" -ne 0 ] || mkdir -p /run/sshd
