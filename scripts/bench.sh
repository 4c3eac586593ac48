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
#   bash scripts/bench.sh --callgrind-repeats 0   # skip the instruction counts (valgrind)
#
# Not part of .ci/run: timings are not pass/fail. It fails only if something does not work
# (a build, a function that errors or answers the wrong status).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export HUB_CACHE="${HUB_CACHE:-$HOME/.cache/callback-hub}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HUB_CACHE/target}"

# The report names the command that made it.
command="bash scripts/bench.sh${*:+ $*}"
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

# The Python alternative measured side by side (bench/python, bench/harness/src/python_alt.rs):
# its own venv, rebuilt when bench/python/requirements.txt changes, as python-env.sh does.
step "python alternative (boto3 + awslambdaric)"
python_bench="$HUB_CACHE/venv-python-bench"
python_stamp="$(sha256sum bench/python/requirements.txt | cut -d' ' -f1)"
if [[ ! -f "$python_bench/.stamp" || "$(cat "$python_bench/.stamp")" != "$python_stamp" ]]; then
  rm -rf "$python_bench"
  python3 -m venv "$python_bench"
  "$python_bench/bin/pip" install --quiet --disable-pip-version-check -r bench/python/requirements.txt
  echo "$python_stamp" > "$python_bench/.stamp"
fi

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
                s3-notification:handshake stack-hook:cloudformation hub-core:dynamo_request; do
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

# The TLS cold path: a CA and a server certificate for 127.0.0.1 (RSA 2048, as AWS endpoints
# present), made once. The functions trust the CA through AWS_CA_BUNDLE (bench/harness/src/tls_cold.rs).
step "certificates of the TLS proxy"
tls_dir="$HUB_CACHE/bench-tls"
if [[ ! -f "$tls_dir/server.pem" || ! -f "$tls_dir/ca.pem" ]]; then
  command -v openssl >/dev/null || { echo "openssl is needed (apt-get install openssl)" >&2; exit 1; }
  rm -rf "$tls_dir" && mkdir -p "$tls_dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=callback-hub bench CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$tls_dir/ca.key" -out "$tls_dir/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$tls_dir/server.key" -out "$tls_dir/server.csr" 2>/dev/null
  printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" \
    > "$tls_dir/server.ext"
  openssl x509 -req -in "$tls_dir/server.csr" -CA "$tls_dir/ca.pem" -CAkey "$tls_dir/ca.key" \
    -CAcreateserial -days 825 -extfile "$tls_dir/server.ext" -out "$tls_dir/server.pem" 2>/dev/null
fi

step "runtime emulator runs"
"$CARGO_TARGET_DIR/release/bench" --bin-dir "$bin_dir" "${criterion_args[@]}" \
  --tls-dir "$tls_dir" --changes bench/changes.md --command "$command" \
  --append "$webhooks_section" ${harness_args[@]+"${harness_args[@]}"}
