#!/usr/bin/env bash
# Installs what Sistemo needs on Debian 12 and builds it. Safe to run again: it installs only
# what is missing. Needs root for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(qemu-system-x86 qemu-utils e2fsprogs mmdebstrap nftables iproute2 openssh-client busybox-static
  procps coreutils python3 make g++)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if ! command -v node >/dev/null 2>&1; then missing+=(nodejs npm); fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "Installing Debian packages: ${missing[*]}" >&2
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

if ! node -e 'const [major, minor] = process.versions.node.split(".").map(Number); process.exit(major > 20 || (major === 20 && minor >= 18) ? 0 : 1)'; then
  echo "Sistemo needs Node.js 20.18 or newer; this machine has $(node --version)" >&2
  exit 1
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "Installing npm packages" >&2
  npm ci --no-audit --no-fund >&2
fi
npm run --silent build >&2
