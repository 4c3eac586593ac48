//! tsuru-hook through its handler, against DynamoDB on moto, with the Tsuru requests of `events/`.

use hub_core::aws::LazyAws;
use hub_core::clock::FixedClock;
use hub_core::config::{EdgeConfig, Secret};
use hub_core::event::{format_time, parse_time, Source};
use hub_core::setup::Setup;
use hub_core::store::{DynamoStore, EventLookup};
use hub_tests::fixtures::{
    tsuru_deploy_event, tsuru_request, TsuruAuth, GO_ZERO_TIME, TSURU_DEPLOY_ID,
    TSURU_FAILED_DEPLOY_ID, TSURU_HEALER_ID, TSURU_WEBHOOK_TOKEN,
};
use hub_tests::{
    attr, body_json, fixture_json, fixture_request, fixture_vars, fresh_store, repo_root,
    request_from_json, scan_items, unique_name, unreachable_store, Moto,
};
use lambda_http::{Body, Response};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use tsuru_hook::{TsuruConfig, TsuruHook};

const SAMPLES: [&str; 3] = [
    "tsuru-app-deploy.json",
    "tsuru-app-deploy-failed.json",
    "tsuru-healer-node.json",
];
const NOW: &str = "2024-03-01T12:30:00Z";

fn vars() -> HashMap<String, String> {
    fixture_vars("TsuruHookFunction")
}

fn hook_with(store: DynamoStore, edge: EdgeConfig) -> TsuruHook<DynamoStore, FixedClock> {
    let token = Secret::new(&vars()["TSURU_WEBHOOK_TOKEN"]);
    let config = TsuruConfig::new(edge, token, "TSURU_WEBHOOK_TOKEN").unwrap();
    TsuruHook::new(store, FixedClock::at(parse_time(NOW).unwrap()), config)
}

fn hook(store: DynamoStore) -> TsuruHook<DynamoStore, FixedClock> {
    hook_with(store, EdgeConfig::from_vars(&vars()).unwrap())
}

fn body_of(sample: &str) -> String {
    fixture_json(sample)["body"].as_str().unwrap().to_owned()
}

/// A sample with its body replaced.
fn with_body(sample: &str, body: &str) -> Value {
    let mut json = fixture_json(sample);
    json["body"] = body.into();
    json
}

fn error_of(response: &Response<Body>) -> String {
    body_json(response)["error"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_three_samples_are_stored_with_type_subject_time_and_outcome() {
    let store = fresh_store("tsuru").await;
    let hook = hook(store.clone());
    let expected = [
        (
            "tsuru-app-deploy.json",
            TSURU_DEPLOY_ID,
            "app.deploy",
            "app/myapp",
            "2024-03-01T12:00:00.913Z",
            "",
        ),
        (
            "tsuru-app-deploy-failed.json",
            TSURU_FAILED_DEPLOY_ID,
            "app.deploy",
            "app/myapp",
            "2024-03-01T12:06:42.558Z",
            "error building image: exit status 1",
        ),
        (
            "tsuru-healer-node.json",
            TSURU_HEALER_ID,
            "healer",
            "node/http://10.0.3.41:2375",
            "2024-03-01T12:11:30.250Z",
            "",
        ),
    ];
    for (sample, id, kind, subject, occurred_at, error) in expected {
        let response = hook.handle(fixture_request(sample)).await;
        assert_eq!(response.status(), 200, "{sample}");
        assert_eq!(
            body_json(&response),
            json!({"status": "stored", "event_id": id}),
            "{sample}"
        );
        let event = store
            .get_event(Source::Tsuru, id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{sample} is not stored under its UniqueID"));
        assert_eq!(event.event_type, kind, "{sample}");
        assert_eq!(event.subject, subject, "{sample}");
        assert_eq!(
            event.occurred_at.map(format_time).as_deref(),
            Some(occurred_at),
            "{sample}: EndTime"
        );
        assert_eq!(format_time(event.received_at), "2024-03-01T12:30:00.000Z");
        // The whole event, byte for byte: Go's field order and escapes, every field kept.
        assert_eq!(event.payload, body_of(sample), "{sample}");
        let payload: Value = serde_json::from_str(&event.payload).unwrap();
        assert_eq!(payload["Error"], error, "{sample}: the outcome");
    }
    let items = scan_items(&store).await;
    assert_eq!(items.len(), 3);
    for item in &items {
        assert_eq!(attr(item, "source"), "tsuru");
    }
    let failed = store
        .get_event(Source::Tsuru, TSURU_FAILED_DEPLOY_ID)
        .await
        .unwrap()
        .unwrap();
    let payload: Value = serde_json::from_str(&failed.payload).unwrap();
    assert_eq!(payload["StructuredLog"].as_array().unwrap().len(), 3);
    assert_eq!(
        payload["Log"].as_str().unwrap().lines().last(),
        Some("ERROR: No matching distribution found for flask<0.1 & werkzeug")
    );
}

#[tokio::test]
async fn twenty_concurrent_deliveries_are_one_item() {
    let store = fresh_store("tsuru").await;
    let hook = Arc::new(hook(store.clone()));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let hook = hook.clone();
            tokio::spawn(async move { hook.handle(fixture_request("tsuru-app-deploy.json")).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        let response = task.await.unwrap();
        assert_eq!(response.status(), 200);
        let reply = body_json(&response);
        assert_eq!(reply["event_id"], TSURU_DEPLOY_ID);
        outcomes.push(reply["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        outcomes.iter().filter(|o| *o == "stored").count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| *o == "duplicate").count(),
        19,
        "{outcomes:?}"
    );
    assert_eq!(scan_items(&store).await.len(), 1);
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_403_and_nothing_is_stored() {
    let store = fresh_store("tsuru").await;
    let hook = hook(store.clone());
    let body = body_of("tsuru-app-deploy.json");
    let wrong = "local-tsuru-webhook-token-0002";
    let mut cases: Vec<(&str, Value)> = vec![
        (
            "no token",
            tsuru_request("POST", TsuruAuth::None, &body, "t1"),
        ),
        (
            "bearer",
            tsuru_request("POST", TsuruAuth::Bearer(wrong), &body, "t2"),
        ),
        (
            "header",
            tsuru_request("POST", TsuruAuth::Header(wrong), &body, "t3"),
        ),
        (
            "query",
            tsuru_request("POST", TsuruAuth::Query(wrong), &body, "t4"),
        ),
        (
            "a prefix",
            tsuru_request(
                "POST",
                TsuruAuth::Bearer(&TSURU_WEBHOOK_TOKEN[..TSURU_WEBHOOK_TOKEN.len() - 1]),
                &body,
                "t5",
            ),
        ),
        // Not parsed at all: a broken body without the token is 403, not 400.
        (
            "broken body",
            tsuru_request("POST", TsuruAuth::Bearer(wrong), "{\"UniqueID\":", "t6"),
        ),
        (
            "array body",
            tsuru_request("PUT", TsuruAuth::None, "[1,2,3]", "t7"),
        ),
    ];
    // Each sample, with its own credential taken away.
    for sample in SAMPLES {
        let mut json = fixture_json(sample);
        let headers = json["headers"].as_object_mut().unwrap();
        headers.remove("authorization");
        headers.remove("x-callback-token");
        json["rawQueryString"] = "".into();
        json.as_object_mut()
            .unwrap()
            .remove("queryStringParameters");
        cases.push((sample, json));
    }
    for (case, json) in cases {
        let response = hook.handle(request_from_json(&json)).await;
        assert_eq!(response.status(), 403, "{case}");
        assert_eq!(error_of(&response), "forbidden", "{case}");
    }
    assert!(scan_items(&store).await.is_empty());
}

#[tokio::test]
async fn malformed_events_are_400_and_nothing_is_stored() {
    let store = fresh_store("tsuru").await;
    let hook = hook(store.clone());
    let event: Value = serde_json::from_str(&body_of("tsuru-app-deploy.json")).unwrap();
    let without = |pointer: &str, key: &str| {
        let mut e = event.clone();
        e.pointer_mut(pointer)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove(key);
        e.to_string()
    };
    let replaced = |pointer: &str, value: Value| {
        let mut e = event.clone();
        *e.pointer_mut(pointer).unwrap() = value;
        e.to_string()
    };
    let body = body_of("tsuru-app-deploy.json");
    let cases = [
        (
            "not JSON",
            "app.deploy event for app named myapp".to_owned(),
        ),
        ("empty", String::new()),
        ("array", format!("[{body}]")),
        ("no UniqueID", without("", "UniqueID")),
        (
            "short UniqueID",
            replaced("/UniqueID", json!("65e1c2d3a4b5c6d7e8f9012")),
        ),
        (
            "not hex",
            replaced("/UniqueID", json!("65e1c2d3a4b5c6d7e8f9012x")),
        ),
        ("UniqueID as a number", replaced("/UniqueID", json!(1))),
        ("no Kind.Name", without("/Kind", "Name")),
        ("empty Kind.Name", replaced("/Kind/Name", json!(""))),
        ("no Kind", without("", "Kind")),
        ("no Target", without("", "Target")),
        ("no Target.Value", without("/Target", "Value")),
        ("Target a string", replaced("/Target", json!("app/myapp"))),
        (
            "a repeated key",
            body.replacen("\"Error\":\"\"", "\"Error\":\"\",\"Error\":\"boom\"", 1),
        ),
        (
            "a huge target",
            replaced("/Target/Value", json!("x".repeat(5000))),
        ),
    ];
    for (case, text) in cases {
        let response = hook
            .handle(request_from_json(&with_body(
                "tsuru-app-deploy.json",
                &text,
            )))
            .await;
        assert_eq!(response.status(), 400, "{case}");
        assert_eq!(error_of(&response), "bad_request", "{case}");
    }
    assert!(scan_items(&store).await.is_empty());
}

#[tokio::test]
async fn an_unfinished_end_time_falls_back_to_the_start_time() {
    let store = fresh_store("tsuru").await;
    let hook = hook(store.clone());
    let mut event = tsuru_deploy_event();
    event.end_time = GO_ZERO_TIME;
    let request = tsuru_request(
        "PATCH",
        TsuruAuth::Bearer(TSURU_WEBHOOK_TOKEN),
        &event.to_json(),
        "zero-end",
    );
    let response = hook.handle(request_from_json(&request)).await;
    assert_eq!(response.status(), 200);
    let stored = store
        .get_event(Source::Tsuru, TSURU_DEPLOY_ID)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.occurred_at.map(format_time).as_deref(),
        Some("2024-03-01T11:58:02.481Z")
    );
}

#[tokio::test]
async fn other_methods_are_405() {
    let store = fresh_store("tsuru").await;
    let hook = hook(store.clone());
    for method in ["GET", "DELETE"] {
        let mut json = fixture_json("tsuru-app-deploy.json");
        json["requestContext"]["http"]["method"] = method.into();
        let response = hook.handle(request_from_json(&json)).await;
        assert_eq!(response.status(), 405, "{method}");
        assert_eq!(response.headers()["allow"], "POST, PUT, PATCH");
    }
    assert!(scan_items(&store).await.is_empty());
}

#[tokio::test]
async fn a_body_over_max_body_bytes_is_413() {
    let store = fresh_store("tsuru").await;
    let body = body_of("tsuru-app-deploy.json");
    let hook = hook_with(
        store.clone(),
        EdgeConfig {
            max_body_bytes: body.len() - 1,
            ..EdgeConfig::default()
        },
    );
    let response = hook.handle(fixture_request("tsuru-app-deploy.json")).await;
    assert_eq!(response.status(), 413);
    assert_eq!(error_of(&response), "payload_too_large");
    assert!(scan_items(&store).await.is_empty());
}

#[tokio::test]
async fn an_unreachable_store_is_503_never_2xx() {
    let hook = hook(unreachable_store().await);
    for sample in SAMPLES {
        let response = hook.handle(fixture_request(sample)).await;
        assert_eq!(response.status(), 503, "{sample}");
        assert_eq!(error_of(&response), "unavailable");
        assert!(response.headers().contains_key("retry-after"));
    }
}

#[tokio::test]
async fn the_token_can_come_from_an_ssm_secure_string() {
    let moto = Moto::shared();
    let sdk = moto.sdk_config().await;
    let name = format!("/callback-hub/{}", unique_name("tsuru-token"));
    aws_sdk_ssm::Client::new(&sdk)
        .put_parameter()
        .name(&name)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .value(TSURU_WEBHOOK_TOKEN)
        .send()
        .await
        .unwrap();
    let setup = |parameter: &str| {
        let mut vars = vars();
        vars.remove("TSURU_WEBHOOK_TOKEN");
        vars.insert("TSURU_WEBHOOK_TOKEN_PARAMETER".into(), parameter.into());
        Setup::new(vars, LazyAws::ready(sdk.clone())).unwrap()
    };
    let store = fresh_store("tsuru").await;
    // The function's own constructor, as Lambda and the local server call it.
    let hook = tsuru_hook::build(store.clone(), &setup(&name))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for sample in SAMPLES {
        assert_eq!(
            hook.handle(fixture_request(sample)).await.status(),
            200,
            "{sample}"
        );
    }
    assert_eq!(scan_items(&store).await.len(), 3);
    let missing = tsuru_hook::build(store, &setup("/callback-hub/absent"))
        .await
        .err()
        .expect("an absent parameter stops the start");
    assert_eq!(missing.variable(), "TSURU_WEBHOOK_TOKEN_PARAMETER");
}

#[tokio::test]
async fn without_its_token_the_local_route_is_disabled_with_503() {
    use callback_hub::{AnyStore, Routes, SqliteStore};
    let mut vars = callback_hub::demo::demo_vars(&repo_root().join("events")).unwrap();
    let store = AnyStore::Sqlite(SqliteStore::in_memory().unwrap());
    let routes = Routes::local(vars.clone(), store).await.unwrap();
    for sample in SAMPLES {
        let response = routes.handle(fixture_request(sample)).await;
        assert_eq!(response.status(), 200, "{sample}");
    }
    vars.remove("TSURU_WEBHOOK_TOKEN");
    let store = AnyStore::Sqlite(SqliteStore::in_memory().unwrap());
    let routes = Routes::local(vars, store).await.unwrap();
    let response = routes
        .handle(fixture_request("tsuru-app-deploy.json"))
        .await;
    assert_eq!(response.status(), 503);
    let body = body_json(&response);
    assert_eq!(body["error"], "unavailable");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("TSURU_WEBHOOK_TOKEN")
            && message.contains("TSURU_WEBHOOK_TOKEN_PARAMETER"),
        "{message}"
    );
}

fn template() -> serde_norway::Value {
    let text = std::fs::read_to_string(repo_root().join("template.yaml")).unwrap();
    serde_norway::from_str(&text).unwrap()
}

/// A value without its CloudFormation tag (`!Ref X` is `X`).
fn untagged(value: &serde_norway::Value) -> &serde_norway::Value {
    match value {
        serde_norway::Value::Tagged(tagged) => &tagged.value,
        other => other,
    }
}

#[test]
fn the_template_reads_the_token_from_ssm_and_counts_lost_events() {
    let template = template();
    let function = &template["Resources"]["TsuruHookFunction"];
    assert_eq!(
        function["Metadata"]["BuildProperties"]["Binary"].as_str(),
        Some("tsuru-hook")
    );
    let properties = &function["Properties"];
    let env = properties["Environment"]["Variables"].as_mapping().unwrap();
    assert!(
        env.keys()
            .all(|k| k.as_str() != Some("TSURU_WEBHOOK_TOKEN")),
        "the token itself is never in the function's configuration"
    );
    let parameter = untagged(&env["TSURU_WEBHOOK_TOKEN_PARAMETER"])
        .as_str()
        .unwrap()
        .to_owned();
    assert!(template["Parameters"][parameter.as_str()].is_mapping());
    let policies = serde_norway::to_string(&properties["Policies"]).unwrap();
    assert!(
        policies.contains(&format!(":parameter${{{parameter}}}")),
        "ssm:GetParameter on exactly {parameter}: {policies}"
    );
    assert!(!policies.contains("parameter/*") && !policies.contains(":parameter*"));
    assert!(policies.contains("dynamodb:PutItem"));
    for broader in [
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:Scan",
        "dynamodb:*",
    ] {
        assert!(!policies.contains(broader), "{broader}: {policies}");
    }
    let route = &properties["Events"]["Hook"]["Properties"];
    assert_eq!(route["Path"].as_str(), Some("/tsuru"));
    assert_eq!(route["Method"].as_str(), Some("ANY"));

    // The error line an unstored event leaves is what the alarm counts.
    let resources = template["Resources"].as_mapping().unwrap();
    let filter = resources
        .values()
        .find(|r| {
            r["Type"].as_str() == Some("AWS::Logs::MetricFilter")
                && untagged(&r["Properties"]["LogGroupName"]).as_str() == Some("TsuruHookLogs")
        })
        .expect("a metric filter on the tsuru-hook log group");
    let pattern = filter["Properties"]["FilterPattern"].as_str().unwrap();
    let message = tsuru_hook::handler::NOT_STORED_LOG;
    assert!(
        pattern.contains(&format!("$.message = \"{message}\"")),
        "{pattern}"
    );
    assert!(pattern.contains("$.level = \"ERROR\""), "{pattern}");
    let metric = filter["Properties"]["MetricTransformations"][0]["MetricName"]
        .as_str()
        .unwrap();
    assert!(
        resources.values().any(|r| {
            r["Type"].as_str() == Some("AWS::CloudWatch::Alarm")
                && r["Properties"]["MetricName"].as_str() == Some(metric)
        }),
        "an alarm on {metric}"
    );
}
