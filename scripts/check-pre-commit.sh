#!/usr/bin/env bash
# Verifies the pre-commit hook for real: installs `pre-commit` from PyPI into a
# throwaway venv, creates a git repo with a hazardous file, runs
# `pre-commit try-repo` against this checkout, and expects the hook to fail
# with the finding, then to pass once the file is fixed.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
started=$(date +%s)

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check pre-commit
export PATH="$work/venv/bin:$PATH"
export PRE_COMMIT_HOME="$work/cache"

mkdir "$work/app" && cd "$work/app"
git init -q
git config user.email ci@example.com
git config user.name ci
cat > pay.js <<'JS'
async function pay(stripe, order) {
  const idempotencyKey = `pay-${order.id}-${Date.now()}`;
  return stripe.paymentIntents.create({ amount: order.total }, { idempotencyKey });
}
JS
git add pay.js

set +e
pre-commit try-repo "$repo" reentrancy-audit --files pay.js > "$work/first.log" 2>&1
first=$?
set -e
if [ "$first" -eq 0 ] || ! grep -q "RA002" "$work/first.log"; then
  cat "$work/first.log"
  echo "FAIL: the hook should fail with RA002 on the hazardous file" >&2
  exit 1
fi

sed -i 's/-${Date.now()}/-${order.requestId}/' pay.js
git add pay.js
if ! pre-commit try-repo "$repo" reentrancy-audit --files pay.js > "$work/second.log" 2>&1; then
  cat "$work/second.log"
  echo "FAIL: the hook should pass once the key is derived from the request" >&2
  exit 1
fi
echo "pre-commit try-repo: hook failed on the hazard and passed after the fix ($(( $(date +%s) - started )) s)"
