//! mns-endpoint through its handler, against DynamoDB on moto, with signed `events/` requests.

use chrono::DateTime;
use hub_core::aws::LazyAws;
use hub_core::certs::testing::FakeFetcher;
use hub_core::certs::{pinned_from_vars, CertificateCache, HttpsFetcher};
use hub_core::clock::FixedClock;
use hub_core::config::{EdgeConfig, Secret};
use hub_core::setup::Setup;
use hub_core::store::{DynamoStore, EventLookup};
use hub_tests::fixtures::{
    mns_fields, mns_json_body, read_repo_file, signed_mns, signed_mns_to, MNS_DATE,
    MNS_ENDPOINT_TOKEN, MNS_TEST_CERT_URL,
};
use hub_tests::{
    body_json, fixture_json, fixture_request, fixture_vars, fresh_store, repo_root,
    request_from_json, scan_items, unique_name, unreachable_store, Moto,
};
use lambda_http::{Body, Response};
use mns_endpoint::{MnsConfig, MnsHandler};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

type Handler<F> = MnsHandler<DynamoStore, FixedClock, F>;

/// The fixtures' configuration, but with the Date age check on (the clock sits at the samples' Date).
fn vars() -> HashMap<String, String> {
    let mut vars = fixture_vars("MnsFunction");
    vars.insert("MNS_MAX_AGE_SECS".into(), "900".into());
    vars
}

fn clock() -> FixedClock {
    FixedClock::at(
        DateTime::parse_from_rfc2822(MNS_DATE).unwrap().to_utc() + chrono::Duration::seconds(2),
    )
}

fn config(vars: &HashMap<String, String>) -> MnsConfig {
    MnsConfig::from_vars(
        vars,
        EdgeConfig::from_vars(vars).unwrap(),
        Secret::new(&vars["MNS_ENDPOINT_TOKEN"]),
    )
    .unwrap()
}

fn handler<F: hub_core::certs::Fetcher>(store: DynamoStore, fetcher: F) -> Handler<F> {
    let vars = vars();
    let certificates = CertificateCache::new(fetcher, pinned_from_vars(&vars).unwrap());
    MnsHandler::new(store, clock(), certificates, config(&vars))
}

/// The test certificate is not pinned here but served by a fake fetcher that counts: every
/// outbound fetch the handler makes shows in `requests()`.
fn counting_handler(store: DynamoStore) -> (Handler<Arc<FakeFetcher>>, Arc<FakeFetcher>) {
    let fetcher = Arc::new(FakeFetcher::new());
    fetcher.respond(
        MNS_TEST_CERT_URL,
        200,
        &read_repo_file("events/keys/mns-test-cert.pem"),
    );
    let certificates = CertificateCache::new(fetcher.clone(), HashMap::new());
    let handler = MnsHandler::new(store, clock(), certificates, config(&vars()));
    (handler, fetcher)
}

/// A signed JSON push whose fields are `mns_fields` with some replaced.
fn json_push(message_id: &str, replace: &[(&str, &str)]) -> Value {
    let mut fields = mns_fields(message_id, "the message", None);
    for (name, value) in fields.iter_mut() {
        if let Some((_, new)) = replace.iter().find(|(n, _)| n == name) {
            *value = (*new).to_owned();
        }
    }
    signed_mns(
        "/mns",
        "application/json",
        &mns_json_body(&fields),
        &[],
        message_id,
    )
}

fn error_of(response: &Response<Body>) -> String {
    match response.body() {
        Body::Text(text) => serde_json::from_str::<Value>(text).unwrap()["error"]
            .as_str()
            .unwrap()
            .to_owned(),
        other => panic!("expected an error body, got {other:?}"),
    }
}

fn set_header(mut json: Value, name: &str, value: &str) -> Value {
    json["headers"][name] = value.into();
    json
}

#[tokio::test]
async fn each_format_stores_its_message_once_even_delivered_three_times() {
    let store = fresh_store("mns").await;
    let handler = handler(store.clone(), FakeFetcher::new());
    for name in ["mns-xml.json", "mns-json.json", "mns-simplified.json"] {
        for _ in 0..3 {
            let response = handler.handle(fixture_request(name)).await;
            assert_eq!(response.status(), 204, "{name}");
            assert!(matches!(response.body(), Body::Empty));
        }
    }
    let items = scan_items(&store).await;
    assert_eq!(items.len(), 3);
    let s = |item: &HashMap<String, aws_sdk_dynamodb::types::AttributeValue>, k: &str| {
        item[k].as_s().unwrap().clone()
    };
    let mut by_id: Vec<(String, String, String)> = items
        .iter()
        .map(|i| (s(i, "event_id"), s(i, "event_type"), s(i, "subject")))
        .collect();
    by_id.sort();
    assert_eq!(
        by_id,
        [
            (
                "5DA5A9A1D1B1C1D1-1-18E1B2C3D4E-200000001".into(),
                "paid".into(),
                "orders".into()
            ),
            (
                "5DA5A9A1D1B1C1D1-1-18E1B2C3D4E-200000002".into(),
                "orders".into(),
                "orders".into()
            ),
            (
                "5DA5A9A1D1B1C1D1-1-18E1B2C3D4E-200000003".into(),
                "restock".into(),
                "orders".into()
            ),
        ]
    );
    let json_item = items
        .iter()
        .find(|i| s(i, "event_id").ends_with("002"))
        .unwrap();
    let payload: Value = serde_json::from_str(&s(json_item, "payload")).unwrap();
    assert_eq!(payload["Message"], "库存已更新 <sku 77>");
    assert_eq!(payload["Format"], "JSON");
    assert_eq!(s(json_item, "occurred_at"), "2024-03-01T11:59:59.000Z");
}

#[tokio::test]
async fn one_changed_byte_of_a_signed_header_or_the_path_is_403() {
    let store = fresh_store("mns").await;
    let handler = handler(store.clone(), FakeFetcher::new());
    let original = fixture_json("mns-simplified.json");
    let signed: Vec<String> = original["headers"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| {
            k.starts_with("x-mns-") || ["content-md5", "content-type", "date"].contains(&k.as_str())
        })
        .filter(|k| *k != "x-mns-signing-cert-url")
        .cloned()
        .collect();
    assert!(signed.len() >= 10, "{signed:?}");
    for name in &signed {
        let value = original["headers"][name].as_str().unwrap();
        // Keep the Date parseable and recent: change its seconds digit.
        let tampered = if name == "date" {
            value.replace(":00 GMT", ":01 GMT")
        } else {
            let mut bytes = value.as_bytes().to_vec();
            let last = bytes.len() - 1;
            bytes[last] = if bytes[last] == b'1' { b'2' } else { b'1' };
            String::from_utf8(bytes).unwrap()
        };
        let response = handler
            .handle(request_from_json(&set_header(
                original.clone(),
                name,
                &tampered,
            )))
            .await;
        // Content-MD5 is checked against the body before the signature (the topic is read from
        // the body before any certificate is fetched, §4.5), so a changed one is a bad body.
        let expected = if name == "content-md5" {
            (400, "bad_request")
        } else {
            (403, "forbidden")
        };
        assert_eq!(
            (response.status().as_u16(), error_of(&response).as_str()),
            expected,
            "{name}"
        );
    }
    let mut other_path = original.clone();
    other_path["rawPath"] = "/mnz".into();
    assert_eq!(
        handler
            .handle(request_from_json(&other_path))
            .await
            .status(),
        403
    );
    let mut with_query = original.clone();
    with_query["rawQueryString"] = format!("token={MNS_ENDPOINT_TOKEN}&a=1").into();
    assert_eq!(
        handler
            .handle(request_from_json(&with_query))
            .await
            .status(),
        403,
        "the query is signed too"
    );
    let no_signature = {
        let mut j = original.clone();
        j["headers"]
            .as_object_mut()
            .unwrap()
            .remove("authorization");
        j
    };
    assert_eq!(
        handler
            .handle(request_from_json(&no_signature))
            .await
            .status(),
        403
    );
    assert!(scan_items(&store).await.is_empty());
}

#[tokio::test]
async fn one_changed_byte_of_the_body_is_400_and_nothing_is_stored() {
    let store = fresh_store("mns").await;
    let handler = handler(store.clone(), FakeFetcher::new());
    for name in ["mns-xml.json", "mns-json.json", "mns-simplified.json"] {
        let mut json = fixture_json(name);
        let body = json["body"].as_str().unwrap().replacen('e', "E", 1);
        json["body"] = body.into();
        let response = handler.handle(request_from_json(&json)).await;
        assert_eq!(response.status(), 400, "{name}");
        assert_eq!(error_of(&response), "bad_request");
    }
    assert!(scan_items(&store).await.is_empty());
}

#[tokio::test]
async fn a_wrong_message_md5_is_400() {
    let store = fresh_store("mns").await;
    let handler = handler(store.clone(), FakeFetcher::new());
    let push = json_push(
        "wrong-md5",
        &[("MessageMD5", "00000000000000000000000000000000")],
    );
    let response = handler.handle(request_from_json(&push)).await;
    assert_eq!(response.status(), 400);
    assert!(scan_items(&store).await.is_empty());
}

#[tokio::test]
async fn a_certificate_url_off_the_allow_list_is_403_and_never_fetched() {
    use base64::Engine;
    let store = fresh_store("mns").await;
    // A real local server: it must see no connection at all.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let handler = handler(store.clone(), HttpsFetcher::new());
    for url in [
        format!("https://127.0.0.1:{port}/cert.pem"),
        format!("https://mnstest.oss-cn-hangzhou.aliyuncs.com.127.0.0.1.nip.io:{port}/c.pem"),
    ] {
        let json = set_header(
            fixture_json("mns-xml.json"),
            "x-mns-signing-cert-url",
            &base64::engine::general_purpose::STANDARD.encode(&url),
        );
        let response = handler.handle(request_from_json(&json)).await;
        assert_eq!(response.status(), 403, "{url}");
    }
    assert!(listener.accept().is_err(), "the local server was contacted");
    assert!(scan_items(&store).await.is_empty());
}

#[tokio::test]
async fn a_stale_date_is_403() {
    let store = fresh_store("mns").await;
    let handler = handler(store.clone(), FakeFetcher::new());
    // Re-signed with an old Date: the signature is fine, the age is not.
    let json = fixture_json("mns-json.json");
    let old = set_header(json, "date", "Thu, 29 Feb 2024 12:00:00 GMT");
    assert_eq!(handler.handle(request_from_json(&old)).await.status(), 403);
}

#[tokio::test]
async fn an_unreachable_store_is_503() {
    let handler = handler(unreachable_store().await, Arc::new(FakeFetcher::new()));
    assert_eq!(
        handler
            .handle(fixture_request("mns-xml.json"))
            .await
            .status(),
        503
    );
}

#[tokio::test]
async fn a_validly_signed_push_without_our_token_is_403_not_stored_and_fetches_nothing() {
    let store = fresh_store("mns").await;
    let (handler, fetcher) = counting_handler(store.clone());
    let body = mns_json_body(&mns_fields(
        "no-token",
        "from someone else's subscription",
        None,
    ));
    // Signed by "MNS" over exactly the URL it was sent to: the signature is fine, the token is not.
    for target in [
        "/mns".to_owned(),
        "/mns?token=".to_owned(),
        format!("/mns?token={}", &MNS_ENDPOINT_TOKEN[1..]),
        format!("/mns?token={MNS_ENDPOINT_TOKEN}x"),
        format!("/mns?tokens={MNS_ENDPOINT_TOKEN}"),
    ] {
        let push = signed_mns_to(&target, "application/json", &body, &[], "no-token");
        let response = handler.handle(request_from_json(&push)).await;
        assert_eq!(response.status(), 403, "{target}");
        assert_eq!(error_of(&response), "forbidden");
    }
    assert!(fetcher.requests().is_empty(), "{:?}", fetcher.requests());
    assert!(scan_items(&store).await.is_empty());
    // The control: the same push to our subscribed URL fetches the certificate once and is stored.
    let push = signed_mns("/mns", "application/json", &body, &[], "no-token");
    assert_eq!(handler.handle(request_from_json(&push)).await.status(), 204);
    assert_eq!(fetcher.requests(), [MNS_TEST_CERT_URL]);
    assert_eq!(scan_items(&store).await.len(), 1);
}

#[tokio::test]
async fn a_push_from_another_account_or_topic_is_403_not_stored_and_fetches_nothing() {
    let store = fresh_store("mns").await;
    let (handler, fetcher) = counting_handler(store.clone());
    // MNS signs every account's pushes with one key, and anyone can subscribe our URL (§4.5).
    for (i, replace) in [
        [("TopicOwner", "9999999999999999"), ("TopicName", "orders")],
        [
            ("TopicOwner", "1321669497458181"),
            ("TopicName", "invoices"),
        ],
        [("TopicOwner", "1321669497458181"), ("TopicName", "orders2")],
    ]
    .iter()
    .enumerate()
    {
        let push = json_push(&format!("other-topic-{i}"), replace);
        let response = handler.handle(request_from_json(&push)).await;
        assert_eq!(response.status(), 403, "{replace:?}");
        assert_eq!(body_json(&response)["message"], "topic is not allowed");
    }
    let simplified = |owner: &'static str, topic: &'static str| {
        let mut headers = vec![("x-mns-message-id", "simplified-other")];
        if !owner.is_empty() {
            headers.push(("x-mns-topic-owner", owner));
        }
        headers.push(("x-mns-topic-name", topic));
        signed_mns(
            "/mns",
            "text/plain;charset=utf-8",
            "hello",
            &headers,
            "simple-other",
        )
    };
    for push in [
        simplified("9999999999999999", "orders"),
        simplified("", "orders"),
    ] {
        let response = handler.handle(request_from_json(&push)).await;
        assert_eq!(response.status(), 403);
    }
    assert!(fetcher.requests().is_empty(), "{:?}", fetcher.requests());
    assert!(scan_items(&store).await.is_empty());
}

#[tokio::test]
async fn a_publish_time_past_year_9999_is_400_and_not_stored() {
    let store = fresh_store("mns").await;
    let handler = handler(store.clone(), FakeFetcher::new());
    for (i, time) in ["253402300800000", "9223372036854775807"]
        .iter()
        .enumerate()
    {
        let push = json_push(&format!("far-{i}"), &[("PublishTime", time)]);
        let response = handler.handle(request_from_json(&push)).await;
        assert_eq!(response.status(), 400, "{time}");
        assert_eq!(error_of(&response), "bad_request");
    }
    let simplified = signed_mns(
        "/mns",
        "text/plain;charset=utf-8",
        "hello",
        &[
            ("x-mns-message-id", "far-simplified"),
            ("x-mns-publish-time", "253402300800000"),
            ("x-mns-topic-name", "orders"),
            ("x-mns-topic-owner", "1321669497458181"),
        ],
        "far-simplified",
    );
    assert_eq!(
        handler
            .handle(request_from_json(&simplified))
            .await
            .status(),
        400
    );
    assert!(scan_items(&store).await.is_empty());
    // The last millisecond of year 9999 is stored with its time, and reads back.
    let last = json_push("last-ms", &[("PublishTime", "253402300799999")]);
    assert_eq!(handler.handle(request_from_json(&last)).await.status(), 204);
    let items = scan_items(&store).await;
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0]["occurred_at"].as_s().unwrap(),
        "9999-12-31T23:59:59.999Z"
    );
    let stored = store
        .get_event(hub_core::event::Source::Mns, "last-ms")
        .await
        .unwrap()
        .expect("readable");
    assert_eq!(
        stored
            .occurred_at
            .map(hub_core::event::format_time)
            .as_deref(),
        Some("9999-12-31T23:59:59.999Z")
    );
}

#[tokio::test]
async fn the_endpoint_token_can_come_from_an_ssm_secure_string() {
    let moto = Moto::shared();
    let sdk = moto.sdk_config().await;
    let name = format!("/callback-hub/{}", unique_name("mns-token"));
    aws_sdk_ssm::Client::new(&sdk)
        .put_parameter()
        .name(&name)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .value(MNS_ENDPOINT_TOKEN)
        .send()
        .await
        .unwrap();
    let setup = |parameter: &str| {
        let mut vars = vars();
        vars.remove("MNS_ENDPOINT_TOKEN");
        vars.insert("MNS_ENDPOINT_TOKEN_PARAMETER".into(), parameter.into());
        // The samples' Date is long past: the constructor's clock is the real one.
        vars.insert("MNS_MAX_AGE_SECS".into(), "0".into());
        Setup::new(vars, LazyAws::ready(sdk.clone())).unwrap()
    };
    let store = fresh_store("mns").await;
    // The function's own constructor, as Lambda and the local server call it.
    let handler = mns_endpoint::build(store.clone(), &setup(&name))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        handler
            .handle(fixture_request("mns-xml.json"))
            .await
            .status(),
        204
    );
    let mut tokenless = fixture_json("mns-xml.json");
    tokenless["rawQueryString"] = "".into();
    assert_eq!(
        handler.handle(request_from_json(&tokenless)).await.status(),
        403
    );
    assert_eq!(scan_items(&store).await.len(), 1);
    let missing = mns_endpoint::build(store, &setup("/callback-hub/absent"))
        .await
        .err()
        .expect("an absent parameter stops the start");
    assert_eq!(missing.variable(), "MNS_ENDPOINT_TOKEN_PARAMETER");
}

#[tokio::test]
async fn without_its_token_or_topics_the_local_route_is_disabled_with_503() {
    use callback_hub::{AnyStore, Routes, SqliteStore};
    let all = callback_hub::demo::demo_vars(&repo_root().join("events")).unwrap();
    for unset in ["MNS_ENDPOINT_TOKEN", "MNS_TOPICS"] {
        let mut vars = all.clone();
        vars.remove(unset);
        let store = AnyStore::Sqlite(SqliteStore::in_memory().unwrap());
        let routes = Routes::local(vars, store).await.unwrap();
        let response = routes.handle(fixture_request("mns-xml.json")).await;
        assert_eq!(response.status(), 503, "{unset}");
        let body = body_json(&response);
        assert_eq!(body["error"], "unavailable");
        assert!(
            body["message"].as_str().unwrap().contains(unset),
            "{unset}: {body}"
        );
    }
    let store = AnyStore::Sqlite(SqliteStore::in_memory().unwrap());
    let routes = Routes::local(all, store).await.unwrap();
    assert_eq!(
        routes
            .handle(fixture_request("mns-xml.json"))
            .await
            .status(),
        204
    );
}
