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

/// A ROS notification for the fixtures' stack, delivered with the fixture's token.
fn ros(stack_id: &str, status: &str, output: &str) -> Request {
    let body = json!({
        "StackId": stack_id,
        "StackName": "test-notification-url",
        "Status": status,
        "Outputs": [{"OutputKey": "Url", "OutputValue": output}],
    });
    with_body(
        fixture_request("stack-hook-ros-create-complete.json"),
        body.to_string().into_bytes(),
    )
}

const STACK_ID: &str = "80bd6b6c-e888-4573-ae3b-93d29113a1b2";

async fn deliver<C: hub_core::clock::Clock>(hook: &Hook<C>, request: Request) -> Value {
    let response = hook.handle(request).await;
    assert_eq!(response.status(), 200, "{}", body_json(&response));
    body_json(&response)
}

async fn status_of<C: hub_core::clock::Clock>(hook: &Hook<C>) -> Value {
    let response = hook
        .handle(fixture_request("stack-hook-get-status.json"))
        .await;
    assert_eq!(response.status(), 200, "{}", body_json(&response));
    body_json(&response)
}

fn without_authorization(mut request: Request) -> Request {
    request.headers_mut().remove("authorization");
    request
}

fn with_authorization(mut request: Request, value: &str) -> Request {
    request
        .headers_mut()
        .insert("authorization", value.parse().unwrap());
    request
}

// S3: the status (outputs, every stored payload) is for holders of API_TOKEN only.
#[tokio::test]
async fn the_status_route_needs_the_api_token() {
    let store = fresh_store("stack-hook").await;
    let hook = hook(store.clone(), SystemClock);
    let stored = hook
        .handle(fixture_request("stack-hook-ros-create-complete.json"))
        .await;
    assert_eq!(stored.status(), 200);
    let get = || fixture_request("stack-hook-get-status.json");
    let history = || {
        strip_path_parameters(with_uri(
            get(),
            "/stacks/test-notification-url?history=true",
        ))
    };
    for request in [
        without_authorization(get()),
        with_authorization(get(), "Bearer local-api-token-0002"),
        with_authorization(get(), "local-api-token-0001"),
        without_authorization(history()),
        with_authorization(history(), "Basic bG9jYWwtYXBpLXRva2VuLTAwMDE="),
    ] {
        let response = hook.handle(request).await;
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let body = body_json(&response);
        assert_eq!(body["error"], "unauthorized");
        assert!(
            !body.to_string().contains("i-bp1a2b3c4d5e6f7g8h9i"),
            "{body}"
        );
    }
    assert_eq!(hook.handle(get()).await.status(), 200);
    assert_eq!(hook.handle(history()).await.status(), 200);

    // Checked before the store is read: no token and no store is still 401, not 503.
    let offline = Hook::new(
        unreachable_store().await,
        SystemClock,
        config(),
        sns_verifier(&fixture_vars("StackHookFunction"), FakeFetcher::new()),
    );
    assert_eq!(
        offline.handle(without_authorization(get())).await.status(),
        401
    );

    // No API_TOKEN: reads are closed (503 naming it), hooks still work.
    let mut vars = fixture_vars("StackHookFunction");
    vars.remove("API_TOKEN");
    let closed = StackHook::new(
        store.clone(),
        SystemClock,
        StackHookConfig::from_vars(&vars).unwrap(),
        sns_verifier(&vars, FakeFetcher::new()),
    );
    let response = closed.handle(get()).await;
    assert_eq!(response.status(), 503);
    assert!(body_json(&response)["message"]
        .as_str()
        .unwrap()
        .contains("API_TOKEN"));
    let update = closed
        .handle(fixture_request("stack-hook-ros-update-complete.json"))
        .await;
    assert_eq!(update.status(), 200);
    assert_eq!(body_json(&update)["status"], "stored");
}

// S4: a status that comes back is a change; a replay from earlier in the lifecycle is history.
#[tokio::test]
async fn the_status_never_moves_backwards_on_dynamodb() {
    let store = fresh_store("stack-hook").await;
    let clock = Arc::new(FixedClock::at(
        Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap(),
    ));
    let hook = hook(store.clone(), clock.clone());
    let minutes = |m| chrono::Duration::minutes(m);

    assert_eq!(
        deliver(&hook, ros(STACK_ID, "CREATE_COMPLETE", "a")).await["status"],
        "stored"
    );
    clock.advance(minutes(2));
    deliver(&hook, ros(STACK_ID, "UPDATE_COMPLETE", "b")).await;
    clock.advance(minutes(2));
    deliver(&hook, ros(STACK_ID, "ROLLBACK_COMPLETE", "b")).await;
    clock.advance(minutes(2));
    let again = deliver(&hook, ros(STACK_ID, "UPDATE_COMPLETE", "b")).await;
    assert_eq!(again["status"], "stored", "A-B-A: the third is a change");
    assert_eq!(status_of(&hook).await["status"], "UPDATE_COMPLETE");
    clock.advance(chrono::Duration::seconds(10));
    assert_eq!(
        deliver(&hook, ros(STACK_ID, "UPDATE_COMPLETE", "b")).await["status"],
        "duplicate",
        "a retry of the latest"
    );

    // ROS replays the creation hours later: kept, as history only.
    clock.advance(chrono::Duration::hours(3));
    let late = deliver(&hook, ros(STACK_ID, "CREATE_COMPLETE", "a")).await;
    assert_eq!(late["status"], "stored");
    assert_eq!(late["sets_status"], false);
    let status = status_of(&hook).await;
    assert_eq!(status["status"], "UPDATE_COMPLETE");
    assert_eq!(status["updated_at"], "2024-03-01T12:06:00.000Z");

    clock.advance(minutes(1));
    deliver(&hook, ros(STACK_ID, "DELETE_COMPLETE", "b")).await;
    clock.advance(minutes(1));
    let after_delete = deliver(&hook, ros(STACK_ID, "UPDATE_COMPLETE", "c")).await;
    assert_eq!(after_delete["sets_status"], false);
    assert_eq!(status_of(&hook).await["status"], "DELETE_COMPLETE");

    // Created again under the same name: a new stack id, a new lifecycle.
    clock.advance(minutes(1));
    let reborn = "0f1e2d3c-0000-4000-8000-000000000002";
    deliver(&hook, ros(reborn, "CREATE_COMPLETE", "d")).await;
    let status = status_of(&hook).await;
    assert_eq!(status["status"], "CREATE_COMPLETE");
    assert_eq!(status["stack_id"], reborn);

    let items = scan_items(&store).await;
    assert_eq!(items.len(), 8);
    let history_only = items
        .iter()
        .filter(|i| !i.contains_key("state_key"))
        .count();
    assert_eq!(history_only, 2);
}

// S4 under real concurrency (moto's conditional puts): a fresh update racing replays of the
// creation always ends as the status, and is stored once.
#[tokio::test]
async fn racing_deliveries_keep_the_lifecycle_on_dynamodb() {
    let store = fresh_store("stack-hook").await;
    let clock = Arc::new(FixedClock::at(
        Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap(),
    ));
    let hook = Arc::new(hook(store.clone(), clock.clone()));
    deliver(&hook, ros(STACK_ID, "CREATE_COMPLETE", "a")).await;
    clock.advance(chrono::Duration::hours(1));
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let hook = hook.clone();
            let status = if i % 2 == 0 {
                "UPDATE_COMPLETE"
            } else {
                "CREATE_COMPLETE"
            };
            tokio::spawn(async move { hook.handle(ros(STACK_ID, status, "a")).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().status(), 200);
    }
    assert_eq!(status_of(&hook).await["status"], "UPDATE_COMPLETE");
    let updates = scan_items(&store)
        .await
        .iter()
        .filter(|i| attr(i, "event_type") == "UPDATE_COMPLETE")
        .count();
    assert_eq!(updates, 1);
}

/// A value without its CloudFormation tag (`!Ref X` is `X`).
fn untagged(value: &serde_norway::Value) -> &serde_norway::Value {
    match value {
        serde_norway::Value::Tagged(tagged) => &tagged.value,
        other => other,
    }
}

// S16: the deployed function reads its secrets from SSM, and exactly those parameters.
#[test]
fn the_template_gives_the_stack_hook_secrets_as_ssm_parameter_names() {
    let text = std::fs::read_to_string(hub_tests::repo_root().join("template.yaml")).unwrap();
    let template: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    let function = &template["Resources"]["StackHookFunction"]["Properties"];
    let env = function["Environment"]["Variables"].as_mapping().unwrap();
    let names: Vec<&str> = env.keys().filter_map(|k| k.as_str()).collect();
    let policies = serde_norway::to_string(&function["Policies"]).unwrap();
    for secret in ["STACK_HOOK_TOKEN", "API_TOKEN"] {
        assert!(
            !names.contains(&secret),
            "{secret} is readable in the function's configuration"
        );
        let variable = format!("{secret}_PARAMETER");
        let parameter = untagged(&env[variable.as_str()])
            .as_str()
            .unwrap_or_else(|| panic!("{variable} is not set from a parameter"))
            .to_owned();
        let declared = &template["Parameters"][parameter.as_str()];
        assert!(declared.is_mapping(), "{parameter}");
        assert!(declared.get("NoEcho").is_none(), "{parameter} holds a name");
        assert!(
            policies.contains(&format!(":parameter${{{parameter}}}")),
            "ssm:GetParameter on exactly {parameter}: {policies}"
        );
    }
    assert!(policies.contains("ssm:GetParameter"));
    assert!(!policies.contains("parameter/*") && !policies.contains(":parameter*"));
    assert!(template["Parameters"].get("StackHookToken").is_none());
}

// S16 and S3: both tokens can come from SSM SecureStrings, read once by the constructor.
#[tokio::test]
async fn build_reads_both_tokens_from_ssm() {
    use hub_core::aws::LazyAws;
    use hub_core::setup::Setup;
    let sdk = hub_tests::Moto::shared().sdk_config().await;
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let prefix = format!("/callback-hub/{}", hub_tests::unique_name("stack-hook"));
    for (name, value) in [
        ("stack-hook-token", "local-stack-hook-token-0001"),
        ("api-token", "local-api-token-0001"),
    ] {
        ssm.put_parameter()
            .name(format!("{prefix}/{name}"))
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .overwrite(true)
            .value(value)
            .send()
            .await
            .unwrap();
    }
    let setup = |api_token_parameter: Option<String>| {
        let mut vars = HashMap::from([(
            "STACK_HOOK_TOKEN_PARAMETER".to_owned(),
            format!("{prefix}/stack-hook-token"),
        )]);
        if let Some(name) = api_token_parameter {
            vars.insert("API_TOKEN_PARAMETER".to_owned(), name);
        }
        Setup::new(vars, LazyAws::ready(sdk.clone())).unwrap()
    };
    let store = fresh_store("stack-hook").await;
    let hook = stack_hook::build(store.clone(), &setup(Some(format!("{prefix}/api-token"))))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let stored = hook
        .handle(fixture_request("stack-hook-ros-create-complete.json"))
        .await;
    assert_eq!(stored.status(), 200);
    let get = || fixture_request("stack-hook-get-status.json");
    assert_eq!(hook.handle(get()).await.status(), 200);
    assert_eq!(
        hook.handle(without_authorization(get())).await.status(),
        401
    );

    let closed = stack_hook::build(store.clone(), &setup(None))
        .await
        .unwrap();
    assert_eq!(closed.handle(get()).await.status(), 503);
    let absent = stack_hook::build(store, &setup(Some(format!("{prefix}/absent"))))
        .await
        .err()
        .expect("an absent parameter stops the start");
    assert_eq!(absent.variable(), "API_TOKEN_PARAMETER");
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
