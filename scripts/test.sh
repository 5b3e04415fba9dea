#!/usr/bin/env bash
# Runs the whole test suite: unit, integration (real e2fsprogs, SQLite, QEMU with no guest)
# and end to end (real Debian VMs under QEMU, each test in a network namespace it creates).
# Needs root. The debian image is built once per machine into /var/tmp/sistemo-test-image.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1

tiers=(dist/test/unit/)
if [ "$(id -u)" -eq 0 ]; then
  tiers+=(dist/test/integration/ dist/test/e2e/)
else
  echo "Not root: running the unit tier only (integration and end-to-end tests need root)" >&2
fi

report=$(mktemp)
trap 'rm -f "$report"' EXIT
# One runner for all tiers, so there is one summary; tap output is kept to count the results.
node --test --test-concurrency=1 --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$report" "${tiers[@]}"
status=$?
passed=$(grep -E '^# pass ' "$report" | awk '{print $3}')
failed=$(grep -E '^# fail ' "$report" | awk '{print $3}')
echo "${passed:-0} passed, ${failed:-0} failed"
exit "$status"
