#!/usr/bin/env bash
# Creates (once) the Python tools the tests need, outside the clone so every fresh clone reuses them:
#   $HUB_CACHE/venv-moto  moto server (DynamoDB, S3, SSM API on 127.0.0.1)
#   $HUB_CACHE/venv-lint  cfn-lint and the SAM CLI (kept apart: their pins clash with moto's)
# A venv is rebuilt when its requirements file changes. Prints nothing but errors when up to date.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HUB_CACHE="${HUB_CACHE:-$HOME/.cache/callback-hub}"
mkdir -p "$HUB_CACHE"

ensure_venv() {
  local name="$1" requirements="$2"
  local venv="$HUB_CACHE/$name" stamp
  stamp="$(sha256sum "$requirements" | cut -d' ' -f1)"
  if [[ -f "$venv/.stamp" && "$(cat "$venv/.stamp")" == "$stamp" ]]; then
    return 0
  fi
  echo "python-env: building $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  echo "$stamp" > "$venv/.stamp"
}

ensure_venv venv-moto "$here/requirements-moto.txt"
if [[ "${1:-}" != "--moto-only" ]]; then
  ensure_venv venv-lint "$here/requirements-lint.txt"
fi
