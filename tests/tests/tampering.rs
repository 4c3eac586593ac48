//! Systematic tampering (issue 18 §2, RELIABILITY.md "Tampering"): for every signed or tokened
//! sender, the generated fixture request is altered one byte at a time in every part that the
//! protocol authenticates, and each such part is also dropped. Every variant goes through the
//! function's real constructor (`build`, over SQLite with the fixtures' variables) and must be
//! refused with nothing stored; the untouched request must then be accepted, so the test can fail.
//!
//! What is authenticated, per protocol (docs/protocols.md):
//! - DingTalk (§1.2): the query's signature, timestamp and nonce, and the body (its `encrypt` is
//!   signed; the JSON around it is what locates it, so every body byte counts).
//! - SNS for S3 and for stacks (§2.3): the envelope fields of the string to sign for the message's
//!   type, the `Signature`, and `SignatureVersion` (it picks the hash). `SigningCertURL` only
//!   names the key: it is dropped but not flipped (a flipped URL on an SNS host would be fetched
//!   from the internet). Other fields (`UnsubscribeURL`, `MessageAttributes`) and the
//!   `x-amz-sns-*` headers are not signed by SNS and are not altered.
//! - MNS (§4.2, §4.5): the endpoint token (query, also part of the signed resource), the path,
//!   `Authorization`, `Content-MD5`, `Content-Type`, `Date`, every `x-mns-*` header, and the
//!   body through `Content-MD5` (a changed body fails that integrity check: 400).
//! - VK handshake and records, ROS, Tsuru (§2.1, §3.1, §5): only the callback token. Their
//!   bodies are not signed by the sender (a VK handshake's fields are inputs to the HMAC that we
//!   answer with, not a proof from VK), so a changed body with the right token is a genuine,
//!   authenticated request and is not a tampering variant.

use callback_hub::{AnyStore, LocalStore, SqliteStore};
use hub_core::aws::LazyAws;
use hub_core::http::Handler;
use hub_core::setup::Setup;
use hub_core::store::Retained;
use hub_tests::{fixture_json, repo_root, request_from_json};
use serde_json::Value;
use std::collections::BTreeMap;

/// One part of a request that the protocol authenticates.
#[derive(Clone, Copy, Debug)]
enum Part {
    /// The raw body, every byte.
    Body,
    /// One string field of the JSON body (its decoded value).
    BodyField(&'static str),
    /// A header value.
    Header(&'static str),
    /// One query parameter's value (in `rawQueryString`).
    Query(&'static str),
    /// The request path.
    Path,
}

/// Flip patterns: xor 0x01 everywhere; xor 0x20 too where the part is a body (header values
/// could become control characters that no HTTP stack delivers).
fn patterns(part: Part) -> &'static [u8] {
    match part {
        Part::Body | Part::BodyField(_) => &[0x01, 0x20],
        _ => &[0x01],
    }
}

fn fresh() -> (SqliteStore, LocalStore) {
    let sqlite = SqliteStore::in_memory().expect("an in-memory SQLite store");
    let local = Retained::new(AnyStore::Sqlite(sqlite.clone()), None);
    (sqlite, local)
}

fn setup() -> Setup {
    let vars =
        callback_hub::demo::demo_vars(&repo_root().join("events")).expect("events/local.env");
    Setup::new(vars, LazyAws::full()).expect("the fixtures' variables are valid")
}

fn query_pairs(raw: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn encode_query(pairs: &[(String, String)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        out.append_pair(k, v);
    }
    out.finish()
}

/// Sets `rawQueryString` and the parsed `queryStringParameters` consistently.
fn set_query(request: &mut Value, raw: String) {
    let params: serde_json::Map<String, Value> = query_pairs(&raw)
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    request["rawQueryString"] = Value::String(raw);
    if params.is_empty() {
        request
            .as_object_mut()
            .unwrap()
            .remove("queryStringParameters");
    } else {
        request["queryStringParameters"] = Value::Object(params);
    }
}

fn flip_string(text: &str, at: usize, pattern: u8) -> Option<String> {
    let mut bytes = text.as_bytes().to_vec();
    bytes[at] ^= pattern;
    String::from_utf8(bytes).ok()
}

fn body_text(request: &Value) -> String {
    assert_ne!(
        request["isBase64Encoded"], true,
        "fixtures carry text bodies"
    );
    request["body"].as_str().unwrap_or_default().to_owned()
}

/// Every variant of `original` for `part`: each byte flipped with each pattern, then dropped.
fn variants(original: &Value, part: Part) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut push = |label: String, value: Value| out.push((label, value));
    match part {
        Part::Body => {
            let body = body_text(original);
            for at in 0..body.len() {
                for &p in patterns(part) {
                    if let Some(text) = flip_string(&body, at, p) {
                        let mut v = original.clone();
                        v["body"] = Value::String(text);
                        push(format!("body[{at}]^{p:#04x}"), v);
                    }
                }
            }
            let mut v = original.clone();
            v.as_object_mut().unwrap().remove("body");
            push("body dropped".into(), v);
        }
        Part::BodyField(name) => {
            let envelope: serde_json::Map<String, Value> =
                serde_json::from_str(&body_text(original)).expect("a JSON body");
            let value = envelope[name].as_str().expect("a string field").to_owned();
            let with = |field: Option<String>| {
                let mut e = envelope.clone();
                match field {
                    Some(text) => e.insert(name.to_owned(), Value::String(text)),
                    None => e.remove(name),
                };
                let mut v = original.clone();
                v["body"] = Value::String(Value::Object(e).to_string());
                v
            };
            // SNS's certificate URL only names the key: a flipped URL still on an SNS host
            // would be fetched from the internet, so it is only dropped (module comment).
            let flips = if name == "SigningCertURL" {
                0
            } else {
                value.len()
            };
            for at in 0..flips {
                for &p in patterns(part) {
                    if let Some(text) = flip_string(&value, at, p) {
                        push(format!("{name}[{at}]^{p:#04x}"), with(Some(text)));
                    }
                }
            }
            push(format!("{name} dropped"), with(None));
        }
        Part::Header(name) => {
            let value = original["headers"][name]
                .as_str()
                .unwrap_or_else(|| panic!("the fixture has header {name}"))
                .to_owned();
            for at in 0..value.len() {
                for &p in patterns(part) {
                    match flip_string(&value, at, p) {
                        Some(text) if http::HeaderValue::from_str(&text).is_ok() => {
                            let mut v = original.clone();
                            v["headers"][name] = Value::String(text);
                            push(format!("header {name}[{at}]^{p:#04x}"), v);
                        }
                        _ => {}
                    }
                }
            }
            let mut v = original.clone();
            v["headers"].as_object_mut().unwrap().remove(name);
            push(format!("header {name} dropped"), v);
        }
        Part::Query(name) => {
            let pairs = query_pairs(original["rawQueryString"].as_str().unwrap_or_default());
            let index = pairs
                .iter()
                .position(|(k, _)| k == name)
                .unwrap_or_else(|| panic!("the fixture has query {name}"));
            let value = pairs[index].1.clone();
            for at in 0..value.len() {
                for &p in patterns(part) {
                    if let Some(text) = flip_string(&value, at, p) {
                        let mut changed = pairs.clone();
                        changed[index].1 = text;
                        let mut v = original.clone();
                        set_query(&mut v, encode_query(&changed));
                        push(format!("query {name}[{at}]^{p:#04x}"), v);
                    }
                }
            }
            let mut dropped = pairs.clone();
            dropped.remove(index);
            let mut v = original.clone();
            set_query(&mut v, encode_query(&dropped));
            push(format!("query {name} dropped"), v);
        }
        Part::Path => {
            let path = original["rawPath"].as_str().expect("rawPath").to_owned();
            // Byte 0 is the leading `/`: a path without it is not a request target.
            for at in 1..path.len() {
                for &p in patterns(part) {
                    if let Some(text) = flip_string(&path, at, p) {
                        let mut v = original.clone();
                        v["rawPath"] = Value::String(text.clone());
                        v["requestContext"]["http"]["path"] = Value::String(text);
                        push(format!("path[{at}]^{p:#04x}"), v);
                    }
                }
            }
        }
    }
    out
}

/// What the test saw for one sender.
#[derive(Default)]
struct Tally {
    variants: usize,
    accepted: Vec<String>,
    stored: Vec<String>,
    statuses: BTreeMap<u16, usize>,
    unexpected_400: Vec<String>,
}

/// Runs every variant of every part of `fixture` through `handler`, on a store that must stay
/// empty, then the original, which must be accepted. `integrity_400` lists the parts for which
/// the protocol's own integrity check (not the signature) is what fails: 400 is right there.
async fn tamper<H: Handler>(
    tally: &mut Tally,
    handler: &H,
    store: &SqliteStore,
    fixture: &str,
    parts: &[Part],
    integrity_400: &[&str],
) {
    let original = fixture_json(fixture);
    let mut before = store.count().await.unwrap();
    for &part in parts {
        for (label, variant) in variants(&original, part) {
            let response = handler.handle(request_from_json(&variant)).await;
            let status = response.status().as_u16();
            tally.variants += 1;
            *tally.statuses.entry(status).or_default() += 1;
            let label = format!("{fixture}: {label} -> {status}");
            if response.status().is_success() {
                tally.accepted.push(label.clone());
            } else if status == 400 && !integrity_400.iter().any(|p| label.contains(p)) {
                tally.unexpected_400.push(label.clone());
            } else {
                assert!(
                    matches!(status, 400 | 401 | 403),
                    "{label}: a refusal is 400, 401 or 403"
                );
            }
            let now = store.count().await.unwrap();
            if now != before {
                tally.stored.push(label);
                before = now;
            }
        }
    }
    let response = handler.handle(request_from_json(&original)).await;
    // 200, or 204 for MNS (§4.4).
    assert!(
        response.status().is_success(),
        "{fixture}: the original is accepted: {} {:?}",
        response.status(),
        response.body()
    );
}

fn report(sender: &str, tally: &Tally) {
    // One line per sender, read by scripts/reliability.sh.
    println!(
        "TAMPERING sender={sender} variants={} accepted={} stored={} statuses={:?}",
        tally.variants,
        tally.accepted.len(),
        tally.stored.len(),
        tally.statuses
    );
    assert!(tally.variants > 0, "{sender}: no variant was tried");
    assert!(
        tally.accepted.is_empty(),
        "{sender}: tampered requests accepted: {:#?}",
        tally.accepted
    );
    assert!(
        tally.stored.is_empty(),
        "{sender}: tampered requests stored: {:#?}",
        tally.stored
    );
    assert!(
        tally.unexpected_400.is_empty(),
        "{sender}: 400 where an authentication failure (401/403) was due: {:#?}",
        tally.unexpected_400
    );
}

/// The fields of SNS's string to sign (§2.3) present in a fixture (`Subject` is optional), the
/// signature and its version, and the certificate URL (dropped only, see [`variants`]).
fn sns_parts(fixture: &str) -> Vec<Part> {
    let envelope: serde_json::Map<String, Value> =
        serde_json::from_str(&body_text(&fixture_json(fixture))).unwrap();
    let kind = envelope["Type"].as_str().unwrap();
    let signed: &[&'static str] = if kind == "Notification" {
        &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ]
    } else {
        &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ]
    };
    signed
        .iter()
        .chain(&["Signature", "SignatureVersion", "SigningCertURL"])
        .filter(|name| envelope.get(**name).is_some_and(Value::is_string))
        .map(|name| Part::BodyField(name))
        .collect()
}

#[tokio::test]
async fn dingtalk_tampering_is_refused() {
    let (sqlite, store) = fresh();
    let handler = dingtalk_callback::build(store, &setup()).await.unwrap();
    let mut tally = Tally::default();
    for (fixture, signature, timestamp) in [
        ("dingtalk-user-add-org.json", "signature", "timestamp"),
        (
            "dingtalk-bpms-task-change.json",
            "msg_signature",
            "timeStamp",
        ),
        ("dingtalk-check-url.json", "signature", "timestamp"),
    ] {
        let parts = [
            Part::Query(signature),
            Part::Query(timestamp),
            Part::Query("nonce"),
            Part::Body,
            Part::BodyField("encrypt"),
        ];
        tamper(&mut tally, &handler, &sqlite, fixture, &parts, &[]).await;
    }
    report("dingtalk", &tally);
}

async fn sns_tampering<H: Handler>(
    sender: &str,
    handler: &H,
    sqlite: &SqliteStore,
    fixtures: &[&str],
) {
    let mut tally = Tally::default();
    for fixture in fixtures {
        tamper(
            &mut tally,
            handler,
            sqlite,
            fixture,
            &sns_parts(fixture),
            &[],
        )
        .await;
    }
    report(sender, &tally);
}

#[tokio::test]
async fn sns_for_s3_tampering_is_refused() {
    let (sqlite, store) = fresh();
    let handler = s3_notification::build(store, &setup()).await.unwrap();
    let fixtures = ["s3-sns-object-created.json", "s3-sns-test-event.json"];
    sns_tampering("sns-s3", &handler, &sqlite, &fixtures).await;
}

#[tokio::test]
async fn sns_for_stacks_tampering_is_refused() {
    let (sqlite, store) = fresh();
    let handler = stack_hook::build(store, &setup()).await.unwrap();
    let fixtures = [
        "stack-hook-sns-stack-event.json",
        "stack-hook-sns-resource-event.json",
    ];
    sns_tampering("sns-stacks", &handler, &sqlite, &fixtures).await;
}

#[tokio::test]
async fn mns_tampering_is_refused() {
    let (sqlite, store) = fresh();
    let handler = mns_endpoint::build(store, &setup()).await.unwrap();
    let mut tally = Tally::default();
    for fixture in ["mns-xml.json", "mns-json.json", "mns-simplified.json"] {
        let original = fixture_json(fixture);
        let mut parts = vec![
            Part::Query("token"),
            Part::Path,
            Part::Header("authorization"),
            Part::Header("content-md5"),
            Part::Header("content-type"),
            Part::Header("date"),
            Part::Body,
        ];
        let mut signed: Vec<&'static str> = original["headers"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with("x-mns-"))
            .map(|k| &*Box::leak(k.clone().into_boxed_str()))
            .collect();
        signed.sort_unstable();
        parts.extend(signed.into_iter().map(Part::Header));
        parts.retain(|p| match p {
            Part::Header(name) => original["headers"].get(*name).is_some(),
            _ => true,
        });
        // A changed body, or a changed or missing Content-MD5, fails MNS's own integrity check
        // (§4.2: Content-MD5 over the raw body) before the signature: 400. Without
        // `x-mns-message-id` a push is no longer SIMPLIFIED, and its plain-text body is then
        // not an XML or JSON notification (§4.3): malformed, 400, also before the signature.
        tamper(
            &mut tally,
            &handler,
            &sqlite,
            fixture,
            &parts,
            &[
                "body",
                "header content-md5",
                "header x-mns-message-id dropped",
            ],
        )
        .await;
    }
    report("mns", &tally);
}

/// Senders authenticated by the callback token alone: flip and drop the token wherever the
/// fixture presents it.
async fn token_tampering<H: Handler>(
    sender: &str,
    handler: &H,
    sqlite: &SqliteStore,
    fixtures: &[(&str, Part)],
) {
    let mut tally = Tally::default();
    for (fixture, part) in fixtures {
        tamper(&mut tally, handler, sqlite, fixture, &[*part], &[]).await;
    }
    report(sender, &tally);
}

#[tokio::test]
async fn vk_handshake_and_records_tampering_is_refused() {
    let (sqlite, store) = fresh();
    let handler = s3_notification::build(store, &setup()).await.unwrap();
    token_tampering(
        "vk-handshake",
        &handler,
        &sqlite,
        &[("s3-vk-handshake.json", Part::Query("token"))],
    )
    .await;
    let (sqlite, store) = fresh();
    let handler = s3_notification::build(store, &setup()).await.unwrap();
    token_tampering(
        "vk-records",
        &handler,
        &sqlite,
        &[("s3-vk-records.json", Part::Query("token"))],
    )
    .await;
}

#[tokio::test]
async fn ros_tampering_is_refused() {
    let (sqlite, store) = fresh();
    let handler = stack_hook::build(store, &setup()).await.unwrap();
    token_tampering(
        "ros",
        &handler,
        &sqlite,
        &[
            ("stack-hook-ros-create-complete.json", Part::Query("token")),
            (
                "stack-hook-ros-update-complete.json",
                Part::Header("x-callback-token"),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn tsuru_tampering_is_refused() {
    let (sqlite, store) = fresh();
    let handler = tsuru_hook::build(store, &setup()).await.unwrap();
    token_tampering(
        "tsuru",
        &handler,
        &sqlite,
        &[
            ("tsuru-healer-node.json", Part::Query("token")),
            (
                "tsuru-app-deploy-failed.json",
                Part::Header("x-callback-token"),
            ),
            ("tsuru-app-deploy.json", Part::Header("authorization")),
        ],
    )
    .await;
}
