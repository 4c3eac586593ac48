#!/usr/bin/env bash
# `sam build` of every function (BuildMethod: rust-cargolambda), for this machine's architecture
# (x86_64 here: the arm64 Rust target is only on CodeBuild), so that a broken build method, binary
# name or template fails the suite. Prints each bootstrap's size, its zip size and the wall time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
HUB_CACHE="${HUB_CACHE:-$HOME/.cache/callback-hub}"
bash scripts/python-env.sh
export PATH="$HUB_CACHE/venv-lint/bin:$PATH"
export SAM_CLI_TELEMETRY=0
# A target directory of its own: cargo-lambda's flags differ from the test build's, and sharing
# one would rebuild both every time.
export CARGO_TARGET_DIR="$HUB_CACHE/target-lambda"
case "$(uname -m)" in
  aarch64 | arm64) arch=arm64 ;;
  *) arch=x86_64 ;;
esac
out="$HUB_CACHE/sam-build"
started=$(date +%s)
sam build --parameter-overrides "Architecture=$arch" \
  --build-dir "$out/build" --cached --cache-dir "$out/cache"
elapsed=$(( $(date +%s) - started ))

python3 - "$out/build" "$elapsed" "$arch" <<'PY'
import io, os, sys, zipfile

build, elapsed, arch = sys.argv[1], sys.argv[2], sys.argv[3]
functions = sorted(d for d in os.listdir(build) if d.endswith("Function"))
if not functions:
    sys.exit("sam build produced no functions")
print(f"\n{'function':<26} {'bootstrap':>12} {'zip':>12}   ({arch}, sam build {elapsed} s)")
for name in functions:
    path = os.path.join(build, name, "bootstrap")
    if not os.access(path, os.X_OK):
        sys.exit(f"{name}: no executable bootstrap at {path}")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.write(path, "bootstrap")
    print(f"{name:<26} {os.path.getsize(path):>12,} {len(buffer.getvalue()):>12,}")
PY
