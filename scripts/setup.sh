#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine with Node 20, run as root (or with sudo).
# Called by `npm test` and `npm run demo`; safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the product and its tests use:
#  libfuse2 fuse      - kernel FUSE mounts through fuse-native
#  fio sqlite3 curl   - real clients run against the mounts and proxies in tests
#  python3            - a real reader of mounted CSVs in tests
#  gocryptfs          - the reference `membrane bench volume` compares the blob volume with
#  tinyproxy wrk      - the reference proxy and the load generator `membrane bench egress` uses
#  wget openssl       - a second real HTTP client through the egress proxy; the demo's consumer certificate
APT_PACKAGES=(libfuse2 fuse fio sqlite3 curl python3 gocryptfs tinyproxy wrk wget openssl)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm ci only when the lockfile changed since the last install.
want=$(sha256sum package-lock.json | cut -d' ' -f1)
have=$(cat node_modules/.membrane-lock-sha256 2>/dev/null || true)
if [ "$want" != "$have" ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > node_modules/.membrane-lock-sha256
fi
