//! stack-hook through its handler, against DynamoDB on moto, with requests from `events/`.

use chrono::{TimeZone, Utc};
use hub_core::certs::testing::FakeFetcher;
use hub_core::clock::{FixedClock, SystemClock};
use hub_core::store::DynamoStore;
use hub_tests::{
    attr, body_json, fixture_request, fixture_vars, fresh_store, scan_items, sns_verifier,
    unreachable_store,
};
use lambda_http::{Body, Request};
use serde_json::{json, Value};
use stack_hook::{StackHook, StackHookConfig};
use std::collections::HashMap;
use std::sync::Arc;

fn config() -> StackHookConfig {
    StackHookConfig::from_vars(&fixture_vars("StackHookFunction"))
        .expect("events/env.json configures stack-hook")
}

type Hook<C> = StackHook<DynamoStore, C, FakeFetcher>;

fn hook<C: hub_core::clock::Clock>(store: DynamoStore, clock: C) -> Hook<C> {
    let sns = sns_verifier(&fixture_vars("StackHookFunction"), FakeFetcher::new());
    StackHook::new(store, clock, config(), sns)
}

fn with_uri(mut request: Request, uri: &str) -> Request {
    *request.uri_mut() = uri.parse().unwrap();
    request
}

fn with_body(mut request: Request, body: Vec<u8>) -> Request {
    *request.body_mut() = Body::Binary(body);
    request
}

#[tokio::test]
async fn ros_webhook_is_stored_with_the_interface_attributes() {
    let store = fresh_store("stack-hook").await;
    let hook = hook(store.clone(), SystemClock);
    let response = hook
        .handle(fixture_request("stack-hook-ros-create-complete.json"))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(body_json(&response)["status"], "stored");

    let items = scan_items(&store).await;
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(attr(item, "source"), "stack");
    assert_eq!(attr(item, "event_type"), "CREATE_COMPLETE");
    assert_eq!(attr(item, "subject"), "test-notification-url");
    assert!(attr(item, "event_id").starts_with("ros-"));
    assert!(hub_core::event::parse_time(attr(item, "received_at")).is_some());
    assert!(!item.contains_key("occurred_at"), "ROS gives no event time");
    let payload: Value = serde_json::from_str(attr(item, "payload")).unwrap();
    assert_eq!(payload["StackId"], "80bd6b6c-e888-4573-ae3b-93d29113a1b2");
    assert_eq!(payload["Outputs"][0]["OutputKey"], "InstanceId");
}

#[tokio::test]
async fn twenty_concurrent_deliveries_are_one_item() {
    let store = fresh_store("stack-hook").await;
    let hook = Arc::new(hook(store.clone(), SystemClock));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let hook = hook.clone();
            tokio::spawn(async move {
                hook.handle(fixture_request("stack-hook-ros-create-complete.json"))
                    .await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        let response = task.await.unwrap();
        assert_eq!(response.status(), 200);
        outcomes.push(body_json(&response)["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        outcomes.iter().filter(|o| *o == "stored").count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(scan_items(&store).await.len(), 1);
}

#[tokio::test]
async fn refused_requests_store_nothing() {
    let store = fresh_store("stack-hook").await;
    let hook = hook(store.clone(), SystemClock);
    let fixture = || fixture_request("stack-hook-ros-create-complete.json");

    let missing_token = hook.handle(with_uri(fixture(), "/stacks")).await;
    assert_eq!(missing_token.status(), 403);
    assert_eq!(body_json(&missing_token)["error"], "forbidden");

    let wrong_token = hook
        .handle(with_uri(
            fixture(),
            "/stacks?token=local-stack-hook-token-0002",
        ))
        .await;
    assert_eq!(wrong_token.status(), 403);

    let malformed = hook
        .handle(with_body(
            fixture(),
            br#"{"StackName":"x","Status":"CREATE_COMPLETE"}"#.to_vec(),
        ))
        .await;
    assert_eq!(malformed.status(), 400);
    assert_eq!(body_json(&malformed)["error"], "bad_request");

    let not_json = hook.handle(with_body(fixture(), b"<xml/>".to_vec())).await;
    assert_eq!(not_json.status(), 400);

    let huge = hook
        .handle(with_body(fixture(), vec![b' '; 2 * 1024 * 1024]))
        .await;
    assert_eq!(huge.status(), 413);
    assert_eq!(body_json(&huge)["error"], "payload_too_large");

    assert!(scan_items(&store).await.is_empty());
}

#[tokio::test]
async fn an_unreachable_store_answers_503_never_200() {
    let hook = hook(unreachable_store().await, SystemClock);
    for fixture in [
        "stack-hook-ros-create-complete.json",
        "stack-hook-ros-update-complete.json",
        "stack-hook-get-status.json",
    ] {
        let response = hook.handle(fixture_request(fixture)).await;
        assert_eq!(response.status(), 503, "{fixture}");
        assert_eq!(body_json(&response)["error"], "unavailable");
        assert_eq!(response.headers()["retry-after"], "5");
    }
}

#[tokio::test]
async fn status_follows_the_newest_notification() {
    let store = fresh_store("stack-hook").await;
    let clock = Arc::new(FixedClock::at(
        Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap(),
    ));
    let hook = hook(store.clone(), clock.clone());

    assert_eq!(
        hook.handle(fixture_request("stack-hook-get-status.json"))
            .await
            .status(),
        404
    );

    assert_eq!(
        hook.handle(fixture_request("stack-hook-ros-create-complete.json"))
            .await
            .status(),
        200
    );
    clock.advance(chrono::Duration::minutes(3));
    // This fixture is base64-encoded and carries its token in X-Callback-Token.
    assert_eq!(
        hook.handle(fixture_request("stack-hook-ros-update-complete.json"))
            .await
            .status(),
        200
    );

    let response = hook
        .handle(fixture_request("stack-hook-get-status.json"))
        .await;
    assert_eq!(response.status(), 200);
    let status = body_json(&response);
    assert_eq!(status["stack_name"], "test-notification-url");
    assert_eq!(status["stack_id"], "80bd6b6c-e888-4573-ae3b-93d29113a1b2");
    assert_eq!(status["status"], "UPDATE_COMPLETE");
    assert_eq!(status["terminal"], true);
    assert_eq!(status["updated_at"], "2024-03-01T12:03:00.000Z");
    assert_eq!(status["outputs"].as_array().unwrap().len(), 2);

    let by_id = hook
        .handle(strip_path_parameters(with_uri(
            fixture_request("stack-hook-get-status.json"),
            "/stacks/80bd6b6c-e888-4573-ae3b-93d29113a1b2",
        )))
        .await;
    assert_eq!(body_json(&by_id), status);

    let history = hook
        .handle(strip_path_parameters(with_uri(
            fixture_request("stack-hook-get-status.json"),
            "/stacks/test-notification-url?history=true",
        )))
        .await;
    let history = body_json(&history);
    let types: Vec<&str> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["UPDATE_COMPLETE", "CREATE_COMPLETE"]);
    assert_eq!(history["next"], json!(null));

    let unknown = hook
        .handle(strip_path_parameters(with_uri(
            fixture_request("stack-hook-get-status.json"),
            "/stacks/never-created",
        )))
        .await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(body_json(&unknown)["error"], "not_found");
}

fn strip_path_parameters(request: Request) -> Request {
    use lambda_http::RequestExt;
    request.with_path_parameters(HashMap::<String, String>::new())
}

#[test]
fn config_needs_the_token() {
    let err = StackHookConfig::from_vars(&[("EVENTS_TABLE", "t")]).unwrap_err();
    assert!(err.to_string().contains("STACK_HOOK_TOKEN"));
}
