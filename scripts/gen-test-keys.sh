#!/usr/bin/env bash
# Regenerates the TEST-ONLY signing keys behind the signed samples in events/, then the samples.
# The private keys are committed on purpose: they sign fixtures, and are trusted only through
# events/pinned-certs.json, which no deployment uses.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p events/keys
# SNS: 2048-bit RSA, like AWS's own SNS certificates.
openssl req -x509 -newkey rsa:2048 -nodes -days 36500 -sha256 \
  -subj "/CN=sns.amazonaws.com (callback-hub test fixtures)" \
  -keyout events/keys/sns-test-key.pem -out events/keys/sns-test-cert.pem 2>/dev/null
# MNS: RSA with SHA-1 like MNS's own certificate (which is 512-bit; 1024 here, what OpenSSL 3
# still issues by default).
openssl req -x509 -newkey rsa:1024 -nodes -days 36500 -sha1 \
  -subj "/C=86/ST=Zhejiang/L=Hangzhou/O=Aliyun/OU=Mns/CN=notify (callback-hub test fixtures)" \
  -keyout events/keys/mns-test-key.pem -out events/keys/mns-test-cert.pem 2>/dev/null
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HUB_CACHE:-$HOME/.cache/callback-hub}/target}"
cargo run --quiet -p hub-tests --bin gen-events
