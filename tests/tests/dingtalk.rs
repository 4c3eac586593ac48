//! dingtalk-callback through its handler, against DynamoDB and SSM on moto, with `events/` requests.

use dingtalk_callback::{DingTalkCrypto, DingTalkHandler};
use hub_core::aws::LazyAws;
use hub_core::clock::SystemClock;
use hub_core::config::{EdgeConfig, Secret};
use hub_core::setup::Setup;
use hub_core::store::DynamoStore;
use hub_tests::fixtures::{
    dingtalk_crypto, APPROVAL_ID, DINGTALK_AES_KEY, DINGTALK_OWNER_KEY, DINGTALK_TOKEN,
};
use hub_tests::{
    attr, body_json, fixture_request, fresh_store, scan_items, unique_name, unreachable_store, Moto,
};
use lambda_http::{Body, Request, Response};
use serde_json::Value;

fn handler(
    store: DynamoStore,
    crypto: DingTalkCrypto,
) -> DingTalkHandler<DynamoStore, SystemClock> {
    DingTalkHandler::new(store, SystemClock, crypto, EdgeConfig::default())
}

/// Checks a reply the way DingTalk does: its signature covers what it returns, and it decrypts
/// to "success" under our key and owner key.
fn assert_success_reply(response: &Response<Body>) {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let reply = body_json(response);
    let field = |name: &str| {
        reply[name]
            .as_str()
            .unwrap_or_else(|| panic!("reply lacks {name}"))
            .to_owned()
    };
    let crypto = dingtalk_crypto();
    crypto
        .verify(
            &field("msg_signature"),
            &field("timeStamp"),
            &field("nonce"),
            &field("encrypt"),
        )
        .expect("reply signed over its own values");
    assert_eq!(crypto.decrypt(&field("encrypt")).unwrap(), b"success");
    assert_eq!(reply.as_object().unwrap().len(), 4);
}

fn with_query(mut request: Request, query: &str) -> Request {
    let uri = format!("{}?{query}", request.uri().path());
    *request.uri_mut() = uri.parse().unwrap();
    request
}

fn query_of(request: &Request) -> Vec<(String, String)> {
    let query = request.uri().query().unwrap_or_default();
    query
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn task_and_instance_events_of_one_approval_are_two_items() {
    let store = fresh_store("dingtalk").await;
    let handler = handler(store.clone(), dingtalk_crypto());
    assert_success_reply(
        &handler
            .handle(fixture_request("dingtalk-bpms-instance-change.json"))
            .await,
    );
    assert_success_reply(
        &handler
            .handle(fixture_request("dingtalk-bpms-task-change.json"))
            .await,
    );
    let items = scan_items(&store).await;
    assert_eq!(items.len(), 2);
    let mut types: Vec<&str> = items.iter().map(|i| attr(i, "event_type")).collect();
    types.sort();
    assert_eq!(types, ["bpms_instance_change", "bpms_task_change"]);
    for item in &items {
        assert_eq!(attr(item, "source"), "dingtalk");
        assert_eq!(attr(item, "subject"), APPROVAL_ID);
        let payload: Value = serde_json::from_str(attr(item, "payload")).unwrap();
        assert_eq!(payload["processInstanceId"], APPROVAL_ID);
        assert_eq!(
            payload["title"].as_str().unwrap().chars().count(),
            54,
            "multi-byte title intact"
        );
        assert_eq!(attr(item, "event_id").len(), 64);
    }
    let instance = items
        .iter()
        .find(|i| attr(i, "event_type") == "bpms_instance_change")
        .unwrap();
    assert_eq!(
        attr(instance, "occurred_at"),
        "2024-03-01T12:00:00.000Z",
        "finishTime"
    );
}

#[tokio::test]
async fn the_same_push_three_times_is_one_item() {
    let store = fresh_store("dingtalk").await;
    let handler = handler(store.clone(), dingtalk_crypto());
    for _ in 0..3 {
        assert_success_reply(
            &handler
                .handle(fixture_request("dingtalk-user-add-org.json"))
                .await,
        );
    }
    let items = scan_items(&store).await;
    assert_eq!(items.len(), 1);
    assert_eq!(attr(&items[0], "subject"), "user:manager7140");
    assert_eq!(attr(&items[0], "occurred_at"), "2024-03-01T12:00:00.500Z");
}

#[tokio::test]
async fn check_url_is_answered_and_not_stored() {
    let store = fresh_store("dingtalk").await;
    let handler = handler(store.clone(), dingtalk_crypto());
    assert_success_reply(
        &handler
            .handle(fixture_request("dingtalk-check-url.json"))
            .await,
    );
    assert!(scan_items(&store).await.is_empty());
}

#[tokio::test]
async fn a_bad_signature_is_403_and_nothing_is_stored() {
    let store = fresh_store("dingtalk").await;
    let handler = handler(store.clone(), dingtalk_crypto());
    let request = fixture_request("dingtalk-bpms-task-change.json");
    let query = query_of(&request);
    for (i, (name, value)) in query.iter().enumerate() {
        let mut tampered = value.clone().into_bytes();
        tampered[0] = if tampered[0] == b'1' { b'2' } else { b'1' };
        let tampered = String::from_utf8(tampered).unwrap();
        let q: Vec<String> = query
            .iter()
            .enumerate()
            .map(|(j, (k, v))| format!("{k}={}", if i == j { &tampered } else { v }))
            .collect();
        let response = handler
            .handle(with_query(
                fixture_request("dingtalk-bpms-task-change.json"),
                &q.join("&"),
            ))
            .await;
        assert_eq!(response.status(), 403, "tampered {name}");
        assert_eq!(body_json(&response)["error"], "forbidden");
    }
    let missing = handler
        .handle(with_query(
            fixture_request("dingtalk-bpms-task-change.json"),
            "nonce=x",
        ))
        .await;
    assert_eq!(missing.status(), 403);
    // Another token: the same request no longer verifies.
    let other = DingTalkCrypto::new(
        Secret::new("another-token"),
        DINGTALK_AES_KEY,
        DINGTALK_OWNER_KEY,
    )
    .unwrap();
    assert_eq!(
        handler_status(store.clone(), other, "dingtalk-bpms-task-change.json").await,
        403
    );
    assert!(scan_items(&store).await.is_empty());
}

async fn handler_status(store: DynamoStore, crypto: DingTalkCrypto, fixture: &str) -> u16 {
    handler(store, crypto)
        .handle(fixture_request(fixture))
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_wrong_owner_key_is_400_and_nothing_is_stored() {
    let store = fresh_store("dingtalk").await;
    let wrong_owner = DingTalkCrypto::new(
        Secret::new(DINGTALK_TOKEN),
        DINGTALK_AES_KEY,
        "ding-another-corp",
    )
    .unwrap();
    let response = handler(store.clone(), wrong_owner)
        .handle(fixture_request("dingtalk-user-add-org.json"))
        .await;
    assert_eq!(response.status(), 400);
    assert_eq!(body_json(&response)["message"], "owner key mismatch");
    assert!(scan_items(&store).await.is_empty());
}

#[tokio::test]
async fn authenticated_content_that_is_not_an_event_is_400() {
    let store = fresh_store("dingtalk").await;
    let crypto = dingtalk_crypto();
    for plaintext in [&b"not json"[..], b"[1,2,3]", br#"{"NoEventType":true}"#] {
        let encrypt = crypto.encrypt(plaintext);
        let signature = crypto.signature("1", "n", &encrypt);
        let mut request = fixture_request("dingtalk-user-add-org.json");
        *request.body_mut() = Body::Text(serde_json::json!({ "encrypt": encrypt }).to_string());
        let request = with_query(
            request,
            &format!("signature={signature}&timestamp=1&nonce=n"),
        );
        let response = handler(store.clone(), dingtalk_crypto())
            .handle(request)
            .await;
        assert_eq!(
            response.status(),
            400,
            "{}",
            String::from_utf8_lossy(plaintext)
        );
    }
    assert!(scan_items(&store).await.is_empty());
}

#[tokio::test]
async fn an_unreachable_store_is_503() {
    let response = handler(unreachable_store().await, dingtalk_crypto())
        .handle(fixture_request("dingtalk-bpms-task-change.json"))
        .await;
    assert_eq!(response.status(), 503);
}

#[tokio::test]
async fn secrets_come_from_an_ssm_secure_string_read_once() {
    let moto = Moto::shared();
    let sdk = moto.sdk_config().await;
    let name = format!("/callback-hub/{}", unique_name("dingtalk"));
    aws_sdk_ssm::Client::new(&sdk)
        .put_parameter()
        .name(&name)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .value(
            serde_json::json!({"token": DINGTALK_TOKEN, "aes_key": DINGTALK_AES_KEY, "owner_key": DINGTALK_OWNER_KEY})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    // The function's own constructor, as Lambda and the local server call it.
    let setup = |parameter: &str| {
        let vars = [(
            "DINGTALK_SECRETS_PARAMETER".to_owned(),
            parameter.to_owned(),
        )];
        Setup::new(vars.into_iter().collect(), LazyAws::ready(sdk.clone())).unwrap()
    };
    let store = fresh_store("dingtalk").await;
    let handler = dingtalk_callback::build(store.clone(), &setup(&name))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Read once, at build: with the parameter gone, every request still verifies and decrypts.
    aws_sdk_ssm::Client::new(&sdk)
        .delete_parameter()
        .name(&name)
        .send()
        .await
        .unwrap();
    for sample in [
        "dingtalk-user-add-org.json",
        "dingtalk-bpms-task-change.json",
    ] {
        assert_success_reply(&handler.handle(fixture_request(sample)).await);
    }
    assert_eq!(scan_items(&store).await.len(), 2);

    let missing = dingtalk_callback::build(store, &setup("/callback-hub/absent"))
        .await
        .err()
        .expect("an absent parameter stops the start");
    assert_eq!(missing.variable(), "DINGTALK_SECRETS_PARAMETER");
}
