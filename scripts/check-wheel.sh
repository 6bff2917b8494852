#!/usr/bin/env bash
# Verifies the Python packaging: builds the wheel with maturin, installs it
# into a fresh venv, and runs a scan with the installed command.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
started=$(date +%s)

python3 -m venv "$work/build"
"$work/build/bin/pip" install --quiet --disable-pip-version-check "maturin>=1.5,<2"
(cd "$repo" && "$work/build/bin/maturin" build --release --out "$work/dist" --quiet)
wheel=$(ls "$work"/dist/reentrancy_audit-*.whl)

python3 -m venv "$work/user"
"$work/user/bin/pip" install --quiet --disable-pip-version-check "$wheel"
set +e
"$work/user/bin/reentrancy-audit" scan "$repo/fixtures/RA002" --format json --output "$work/out.json"
code=$?
set -e
if [ "$code" -ne 1 ] || ! grep -q '"rule_id": "RA002"' "$work/out.json"; then
  echo "FAIL: the installed command should report RA002 on the fixtures (exit $code)" >&2
  exit 1
fi
echo "wheel $(basename "$wheel"): installed into a fresh venv and scanned ($(( $(date +%s) - started )) s)"
