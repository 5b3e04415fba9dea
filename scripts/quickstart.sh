#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine, as root: installs what is missing, starts the
# daemon in the background (unless one answers already), deploys a real Debian VM and runs
# the storage workflow of the release: attach, resize, delete with --preserve-storage, and
# boot the kept root volume again. The first run builds the debian image (a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "Run this as root (sudo): the daemon creates network devices and runs QEMU" >&2
  exit 1
fi
bash scripts/setup.sh
ln -sf "$PWD/bin/sistemo" /usr/local/bin/sistemo

data_dir=${SISTEMO_DATA_DIR:-$(node -e 'import("./dist/src/paths.js").then((m) => console.log(m.defaultDataDir()))')}
export SISTEMO_DATA_DIR=$data_dir
mkdir -p "$data_dir"
if ! sistemo image list >/dev/null 2>&1; then
  echo "Starting the daemon (log: $data_dir/daemon.log)" >&2
  nohup sistemo up >"$data_dir/up.out" 2>&1 &
  for _ in $(seq 1 120); do
    sistemo image list >/dev/null 2>&1 && break
    sleep 0.5
  done
  sistemo image list >/dev/null || { echo "The daemon did not start; see $data_dir/up.out" >&2; exit 1; }
fi

for existing in web web2 api; do
  if sistemo vm status "$existing" >/dev/null 2>&1; then
    echo "VM $existing already exists; delete it first (sistemo vm delete $existing) to run this workflow again" >&2
    exit 1
  fi
done
for existing in web-root appdata; do
  if sistemo volume show "$existing" >/dev/null 2>&1; then
    echo "Volume $existing already exists; delete it first (sistemo volume delete $existing) to run this workflow again" >&2
    exit 1
  fi
done

step() { printf '\n$ sistemo %s\n' "$*" >&2; sistemo "$@"; }

step vm deploy debian --name web --storage 5GB
step volume create 2G --name appdata
step vm stop web
step vm volume attach web appdata
step vm start web
step vm exec web -- sh -c 'echo "written by web at $(date -u)" > /mnt/appdata/hello.txt && sync'
step vm exec web -- df -h / /mnt/appdata
step vm stop web
step volume resize web-root 10GB
step vm start web
step vm exec web -- df -h /
step vm delete web --preserve-storage -y
step volume list
step vm deploy --volume web-root --name web2
step vm exec web2 -- df -h /
step vm deploy debian --name api --attach appdata
step vm exec api -- cat /mnt/appdata/hello.txt
step volume list
step vm list
printf '\nDone. Clean up with: sistemo vm delete web2 -y; sistemo vm delete api -y; sistemo volume delete appdata -y\n' >&2
