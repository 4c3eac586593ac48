#!/usr/bin/env bash
# Runs callback-hub locally: replays every sample in events/ through the real handlers against
# DynamoDB on a moto server, and prints the replies and the stored events.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export HUB_CACHE="${HUB_CACHE:-$HOME/.cache/callback-hub}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HUB_CACHE/target}"
bash scripts/python-env.sh --moto-only
exec cargo run --quiet -p hub-tests --bin demo
