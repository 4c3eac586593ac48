#!/usr/bin/env bash
# The benchmarks: builds every function's release bootstrap and the hello-world baseline, runs
# the criterion micro-benchmarks, then runs each bootstrap under the Lambda Runtime API emulator
# against moto (bench/harness), measures outbound webhooks on the local server (bench-webhooks)
# and writes BENCHMARKS.md.
#
#   bash scripts/bench.sh                     # everything (about 15 minutes on a warm cache)
#   bash scripts/bench.sh --no-micro          # skip the criterion benchmarks
#   bash scripts/bench.sh --cold-starts 5 --invocations 1000 --out /tmp/bench.md
#   bash scripts/bench.sh --bin-dir DIR       # measure other builds of the same binaries
#
# Not part of .ci/run: timings are not pass/fail. It fails only if something does not work
# (a build, a function that errors or answers the wrong status).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export HUB_CACHE="${HUB_CACHE:-$HOME/.cache/callback-hub}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HUB_CACHE/target}"

micro=1
harness_args=()
bin_dir="$CARGO_TARGET_DIR/release"
while (($#)); do
  case "$1" in
    --no-micro) micro=0 ;;
    --bin-dir) bin_dir="$2"; shift ;;
    *) harness_args+=("$1") ;;
  esac
  shift
done

step() { printf '\n==> %s\n' "$*"; }

step "python tools (moto)"
bash scripts/python-env.sh

# One package at a time, as `sam build` builds them: no feature of another crate leaks in.
for package in hello-world stack-hook dingtalk-callback mns-endpoint s3-notification tsuru-hook \
               webhook-fanout webhook-deliver callback-hub; do
  step "cargo build --release -p $package"
  cargo build --release --locked -p "$package"
done
step "cargo build --release -p bench-harness"
cargo build --release --locked -p bench-harness

criterion_args=()
if ((micro)); then
  export CRITERION_HOME="$HUB_CACHE/criterion"
  rm -rf "$CRITERION_HOME"
  for target in sns:verify dingtalk-callback:crypto mns-endpoint:verify \
                s3-notification:handshake stack-hook:cloudformation; do
    step "cargo bench -p ${target%%:*} --bench ${target##*:}"
    cargo bench --locked -p "${target%%:*}" --bench "${target##*:}" -- \
      --warm-up-time 1 --measurement-time 3 --noplot
  done
  criterion_args=(--criterion-dir "$CRITERION_HOME")
fi

step "outbound webhooks on the local server (bench-webhooks)"
webhooks_section="$(mktemp)"
trap 'rm -f "$webhooks_section"' EXIT
"$CARGO_TARGET_DIR/release/bench-webhooks" --callback-hub "$CARGO_TARGET_DIR/release/callback-hub" \
  --out "$webhooks_section"

step "runtime emulator runs"
"$CARGO_TARGET_DIR/release/bench" --bin-dir "$bin_dir" "${criterion_args[@]}" \
  --append "$webhooks_section" ${harness_args[@]+"${harness_args[@]}"}
