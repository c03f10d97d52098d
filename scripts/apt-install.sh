#!/usr/bin/env bash
# Install Debian packages that a script found missing: scripts/apt-install.sh "WHAT THEY ARE FOR" PACKAGE...
# Without root or apt-get it says what to install and fails.
set -euo pipefail
purpose=$1
shift
[ $# -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "Missing system packages $purpose: $*; install them (apt-get install $*)." >&2
  exit 1
fi
echo "Installing $* ..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
