//! mns-endpoint through its handler, against DynamoDB on moto, with signed `events/` requests.

use chrono::DateTime;
use hub_core::certs::testing::FakeFetcher;
use hub_core::certs::{pinned_from_vars, CertificateCache, HttpsFetcher};
use hub_core::clock::FixedClock;
use hub_core::config::EdgeConfig;
use hub_core::store::DynamoStore;
use hub_tests::fixtures::{mns_fields, mns_json_body, signed_mns, MNS_DATE};
use hub_tests::{
    fixture_json, fixture_request, fixture_vars, fresh_store, request_from_json, scan_items,
    unreachable_store,
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

fn handler<F: hub_core::certs::Fetcher>(store: DynamoStore, fetcher: F) -> Handler<F> {
    let vars = vars();
    let clock = FixedClock::at(
        DateTime::parse_from_rfc2822(MNS_DATE).unwrap().to_utc() + chrono::Duration::seconds(2),
    );
    let certificates = CertificateCache::new(fetcher, pinned_from_vars(&vars).unwrap());
    MnsHandler::new(
        store,
        clock,
        certificates,
        MnsConfig::from_vars(&vars, EdgeConfig::from_vars(&vars).unwrap()).unwrap(),
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
        assert_eq!(response.status(), 403, "{name}");
        assert_eq!(error_of(&response), "forbidden");
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
    with_query["rawQueryString"] = "a=1".into();
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
    let mut fields = mns_fields("wrong-md5", "the message", None);
    for (name, value) in fields.iter_mut() {
        if *name == "MessageMD5" {
            *value = "00000000000000000000000000000000".into();
        }
    }
    let body = mns_json_body(&fields);
    let response = handler
        .handle(request_from_json(&signed_mns(
            "/mns",
            "application/json",
            &body,
            &[],
            "md5",
        )))
        .await;
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
