#!/usr/bin/env bash
# The web console in a real browser (issue 20): headless Chromium (Debian's `chromium`) driven by
# playwright-core (npm), both installed here when missing, against `callback-hub serve` on a fresh
# SQLite database with the samples of events/ and a subscription to a loopback receiver that fails
# first and later recovers. Screenshots of every page go to test-reports/screenshots/ (CI
# artifacts) and docs/screenshots/ (the README's). The test itself is tests/browser/console.test.cjs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
HUB_CACHE="${HUB_CACHE:-$HOME/.cache/callback-hub}"

if ! command -v chromium >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium
fi

node_dir="$HUB_CACHE/node"
if [ ! -f "$node_dir/node_modules/playwright-core/package.json" ]; then
  mkdir -p "$node_dir"
  (cd "$node_dir" && npm install --no-audit --no-fund --silent playwright-core@1)
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HUB_CACHE/target}"
cargo build -q -p callback-hub

export CALLBACK_HUB_BIN="$CARGO_TARGET_DIR/debug/callback-hub"
export CHROMIUM_BIN="$(command -v chromium)"
export NODE_PATH="$node_dir/node_modules"
node tests/browser/console.test.cjs
mkdir -p docs/screenshots
cp test-reports/screenshots/*.png docs/screenshots/
