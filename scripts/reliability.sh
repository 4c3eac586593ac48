#!/usr/bin/env bash
# Regenerates RELIABILITY.md: the fuzzing table (fuzz/results.md, from scripts/fuzz.sh) and the
# tampering counts (tests/tests/tampering.rs, run here with its output captured). Fails only
# when a property fails (an accepted or stored tampering, a failed property test, a fuzz crash
# recorded in fuzz/results.md), never on a timing. Not part of .ci/run: the tampering and
# property tests already run in `cargo test --workspace`.
#
#   bash scripts/reliability.sh            # tampering now, fuzz table as last recorded
#   FUZZ_SECONDS=600 bash scripts/reliability.sh   # also (re)runs every fuzz target first
#   FAULTS=0 bash scripts/reliability.sh           # skips the injected faults (bench-faults)
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/callback-hub/target}"
failed=0

if [ -n "${FUZZ_SECONDS:-}" ]; then
    bash scripts/fuzz.sh "$FUZZ_SECONDS" || failed=1
fi

log="$(mktemp)"
plog="$(mktemp)"
if ! cargo test -p hub-tests --test tampering -- --nocapture >"$log" 2>&1; then
    echo "tampering test failed:" >&2
    grep -E -A12 "panicked" "$log" >&2 || tail -40 "$log" >&2
    failed=1
fi
if ! cargo test -p hub-tests --test properties >"$plog" 2>&1; then
    echo "property test failed:" >&2
    grep -E -A12 "panicked|minimal failing" "$plog" >&2 || tail -40 "$plog" >&2
    failed=1
fi
# Sustained load (issue 18 §3): bench-load against the release `callback-hub serve`, LOAD_SECONDS
# (default 300) at LOAD_RATE slots/s, then LOAD_KILL_SECONDS (default 60) with a SIGKILL and a
# restart. LOAD_SECONDS=0 skips both and keeps the section RELIABILITY.md already has. A loss, a
# second item, an accepted or stored tampered request or a missing delivery fails the script.
load_seconds="${LOAD_SECONDS:-300}"
if [ "$load_seconds" = "0" ]; then
    load_section="$(awk '/^## Sustained load/ { on = 1 } on && /^## / && !/^## Sustained load/ { on = 0 } on' RELIABILITY.md 2>/dev/null)"
    load_section="${load_section:-## Sustained load

Not measured (LOAD_SECONDS=0).}"
else
    load_out="$(mktemp)"
    if ! cargo build --release --locked -p callback-hub -p bench-harness \
        --bin callback-hub --bin bench-load >"$load_out" 2>&1; then
        echo "building bench-load failed:" >&2
        tail -40 "$load_out" >&2
        failed=1
        load_section="## Sustained load

Not measured: the release build failed."
    else
        if ! "$CARGO_TARGET_DIR/release/bench-load" --callback-hub "$CARGO_TARGET_DIR/release/callback-hub" \
            --seconds "$load_seconds" --kill-seconds "${LOAD_KILL_SECONDS:-60}" \
            ${LOAD_RATE:+--rate "$LOAD_RATE"} --out "$load_out" >/dev/null; then
            echo "bench-load failed (see the Sustained load section)" >&2
            failed=1
        fi
        [ -s "$load_out" ] || printf '## Sustained load\n\nbench-load failed before writing its report.\n' >"$load_out"
        load_section="$(cat "$load_out")"
    fi
    rm -f "$load_out"
fi
# Injected faults (issue 18 §4): bench-faults runs the functions' release bootstraps under the
# Runtime API emulator against moto through a fault-injecting proxy (FAULT_SHARE, default 0.2;
# FAULT_EVENTS per function, default 200; FAULT_SEED to repeat a run). FAULTS=0 skips it and keeps
# the section RELIABILITY.md already has. An acknowledged event not stored, an event stored twice,
# an event given up by a retrying sender, a mirror unequal to its source, or a lost or late
# delivery fails the script.
if [ "${FAULTS:-1}" = "0" ]; then
    faults_section="$(awk '/^## Injected faults/ { on = 1 } on && /^## / && !/^## Injected faults/ { on = 0 } /^Found by the injected faults/ { on = 0 } on' RELIABILITY.md 2>/dev/null)"
    faults_section="${faults_section:-## Injected faults

Not measured (FAULTS=0).}"
else
    faults_out="$(mktemp)"
    faults_log="$(mktemp)"
    faults_built=1
    for package in stack-hook dingtalk-callback mns-endpoint s3-notification tsuru-hook webhook-deliver bench-harness; do
        if ! cargo build --release --locked -p "$package" >>"$faults_log" 2>&1; then
            echo "building $package for bench-faults failed:" >&2
            tail -40 "$faults_log" >&2
            faults_built=0
            break
        fi
    done
    if [ "$faults_built" = 1 ]; then
        if ! "$CARGO_TARGET_DIR/release/bench-faults" --bin-dir "$CARGO_TARGET_DIR/release" \
            ${FAULT_SHARE:+--fault-share "$FAULT_SHARE"} ${FAULT_EVENTS:+--events "$FAULT_EVENTS"} \
            ${FAULT_SEED:+--seed "$FAULT_SEED"} --out "$faults_out" >/dev/null 2>"$faults_log"; then
            echo "bench-faults failed (see the Injected faults section):" >&2
            grep -E "VIOLATION|bench-faults: [a-z]+:|seed" "$faults_log" | tail -20 >&2
            failed=1
        fi
        [ -s "$faults_out" ] || printf '## Injected faults\n\nbench-faults failed before writing its report.\n' >"$faults_out"
        faults_section="$(cat "$faults_out")"
    else
        failed=1
        faults_section="## Injected faults

Not measured: the release build failed."
    fi
    rm -f "$faults_out" "$faults_log"
fi
tampering="$(grep -oE 'TAMPERING sender=.*' "$log" | sed -E 's/^TAMPERING sender=([^ ]*) variants=([0-9]*) accepted=([0-9]*) stored=([0-9]*) statuses=(.*)$/| \1 | \2 | \3 | \4 | \5 |/')"
properties="$(grep -oE 'test result: .*' "$plog" | sed -E 's/^test result: ([a-zA-Z]*)\. ([0-9]*) passed; ([0-9]*) failed.*/\2 passed, \3 failed/')"
rm -f "$log" "$plog"

# The Crashes column (the 8th field) of any row that ran.
if awk -F'|' '$3 ~ /[0-9]/ && $8 !~ /^ *0 *$/ { found = 1 } END { exit !found }' fuzz/results.md 2>/dev/null; then
    echo "fuzz/results.md records crashes" >&2
    failed=1
fi

commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(git status --porcelain -- . ':!RELIABILITY.md' 2>/dev/null | head -1)"
{
cat <<HEAD
# Reliability

Generated by \`bash scripts/reliability.sh\` on $(date -u +%F' '%H:%M' UTC'), commit $commit${dirty:+ (with uncommitted changes)},
on $(nproc) cores ($(uname -m), $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ *//' || echo unknown CPU)).
The script fails only when a property fails (an accepted or stored tampering, a property test, a
fuzz crash), never on a timing.

## Fuzzing

\`cargo fuzz\` targets in \`fuzz/\` (nightly, AddressSanitizer, own workspace and target dir), one per
parser of untrusted input. Each asserts properties beyond "no panic" (see the comment at the top of
each \`fuzz/fuzz_targets/*.rs\`): an accepted DingTalk signature is exactly the recomputed one, a
decrypted message re-encrypts and decrypts to itself, a parsed SNS envelope re-parses to the same
string to sign and an accepted certificate URL is https on an SNS host, an MNS body is parsed only
when its Content-MD5 matches, a decoded cursor re-encodes to one that decodes the same (SQLite: to
the same bytes), the template renderer stays within its output cap (a hang is a libFuzzer timeout,
10 s), an env-file error names a line and never its text.

Seeds: \`fuzz/seed.sh\` (the generated requests in \`events/\` and the shared vectors; corpora are not
committed). Run: \`bash scripts/fuzz.sh <seconds-per-target> [target ...]\`; each target runs alone at
\`nice -n 19\`. \`cov\` is libFuzzer's covered edges, \`ft\` its features, at the end of the run.

$(cat fuzz/results.md 2>/dev/null || echo "Not yet run: bash scripts/fuzz.sh 600")

The same targets run on the stable toolchain in CI as property tests (\`tests/tests/properties.rs\`,
proptest, arbitrary bytes and structured mutations of the fixtures' valid messages, and the real
handlers never acknowledging an altered body): $properties at this run.

## Tampering

\`tests/tests/tampering.rs\`: the generated fixture request of every signed or tokened sender, with
every byte of every authenticated part flipped (xor 0x01; bodies and body fields also xor 0x20) and
every such part dropped, each variant sent through the function's real constructor (\`build\`, over
SQLite with \`events/local.env\`). Every variant must be refused with nothing stored; the untouched
request is then accepted, so the test can fail. Statuses: 403 for a failed signature or token; 400
only for MNS, where a changed body or Content-MD5 fails MNS's own integrity check (Content-MD5 over
the raw body, §4.2) before the signature is checked, and where a SIMPLIFIED push without its
\`x-mns-message-id\` is read as XML/JSON and its plain-text body refused as malformed (§4.3).
Any other 400 fails the test.

| Sender | Variants | Accepted | Stored | Statuses (status: count) |
|---|---:|---:|---:|---|
$tampering

What is authenticated, per protocol (docs/protocols.md), and so what is altered:

- **DingTalk** (§1.2): the query's signature (\`msg_signature\`/\`signature\`), timestamp
  (\`timeStamp\`/\`timestamp\`) and nonce, and the body: the signature covers \`encrypt\` as sent, and
  the JSON around it is what locates it, so every body byte is altered (and \`encrypt\` alone).
  Fixtures: a legacy and an app-subscription push, and the URL check.
- **SNS for S3 and for stacks** (§2.3): the fields of the string to sign for the message's type
  (Notification: Message, MessageId, Subject if present, Timestamp, TopicArn, Type), the
  Signature, and SignatureVersion (it selects the hash). SigningCertURL only names the key: it is
  dropped but not flipped, as a flipped URL still on an SNS host would be fetched from the
  internet (the policy refuses other hosts before any fetch). UnsubscribeURL, MessageAttributes
  and the \`x-amz-sns-*\` headers are not signed by SNS, so changing them is not tampering.
- **MNS** (§4.2, §4.5): the endpoint token (query, also inside the signed resource), the path,
  Authorization, Content-MD5, Content-Type, Date, every \`x-mns-*\` header present, and the body
  through Content-MD5. XML, JSON and SIMPLIFIED pushes.
- **VK handshake and records, ROS, Tsuru** (§2.1, §3.1, §5): the callback token only, wherever
  the fixture presents it (query \`token\`, \`X-Callback-Token\`, \`Authorization: Bearer\`). Their
  senders do not sign bodies (a VK handshake's fields are inputs to the HMAC that we answer with,
  not a proof from VK), so a changed body with the right token is an authenticated request.

Found by this test and fixed: an MNS SIMPLIFIED push with its body removed was accepted (204) and
stored with an empty message, because the Content-MD5 check was skipped for an empty body although
the header is signed; a captured push could be replayed with its message stripped, and the real
one would then be a duplicate. \`mns_endpoint::body::parse\` now checks a present Content-MD5
against any body (regression: \`body::tests::an_emptied_body_fails_its_content_md5\`, and this test).

$load_section

$faults_section

Found by the injected faults and fixed: webhook-deliver lost a dead-letter when its last
attempt's record (\`TransactWriteItems\`) landed and the answer was lost. The SDK's retry then
failed the version check, the conflict was taken for another worker's write, the message was
deleted and the dead-letter never sent (DynamoDB's ClientRequestToken masks it for 10 minutes
only; moto not at all). A conflict now re-reads the delivery and a dead-lettered one gets its
dead-letter message (regression: \`a_dead_letter_whose_record_answer_was_lost_is_still_sent\` in
webhook-deliver, and the forced case above, run without the token).
HEAD
} >RELIABILITY.md
echo "wrote RELIABILITY.md"
exit "$failed"
