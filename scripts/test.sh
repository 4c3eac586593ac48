#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests (DynamoDB on moto server,
# started by the tests themselves), and the template checks. `.ci/run` runs exactly this.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export HUB_CACHE="${HUB_CACHE:-$HOME/.cache/callback-hub}"
# The build cache lives outside the clone, so every fresh clone reuses it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HUB_CACHE/target}"
# No incremental artifacts: they only speed up edit-compile loops, and in a cache reused by every
# run they grow by gigabytes a day.
export CARGO_INCREMENTAL=0
export SAM_CLI_TELEMETRY=0
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

step() { printf '\n==> %s\n' "$*"; }

step "python tools (moto, cfn-lint, SAM CLI)"
bash scripts/python-env.sh
lint_bin="$HUB_CACHE/venv-lint/bin"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo machete (no unused dependencies)"
command -v cargo-machete >/dev/null 2>&1 || cargo install cargo-machete --locked --quiet
cargo machete

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
# The output also becomes test-reports/junit.xml (CodeBuild test reports).
mkdir -p test-reports
cargo test --workspace --locked 2>&1 | tee test-reports/cargo-test.log
python3 scripts/junit.py test-reports/cargo-test.log test-reports/junit.xml

step "cfn-lint template.yaml pipeline.yaml"
"$lint_bin/cfn-lint" template.yaml pipeline.yaml

step "sam validate --lint"
"$lint_bin/sam" validate --lint --template-file template.yaml

step "every interface route is in template.yaml"
python3 scripts/check_routes.py

step "browser test of the web console (headless Chromium, playwright-core)"
bash scripts/browser-test.sh

step "sam build (every function, for this machine's architecture)"
bash scripts/sam-build.sh


echo
echo "all checks passed"
