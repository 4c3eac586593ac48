//! stack-hook with AWS CloudFormation stack events via SNS, against DynamoDB on moto.
//! Envelopes are signed with the test key whose certificate `events/pinned-certs.json` pins.

use aws_sdk_dynamodb::types::AttributeValue;
use hub_core::certs::testing::FakeFetcher;
use hub_core::clock::SystemClock;
use hub_core::store::DynamoStore;
use hub_tests::fixtures::{
    cfn_message, signed_sns, sns_request, stack_event_request, CFN_STACK_ID, STACK_EVENTS_TOPIC,
};
use hub_tests::{
    body_json, fixture_request, fixture_vars, fresh_store, request_from_json, scan_items,
    sns_verifier,
};
use lambda_http::Request;
use serde_json::Value;
use sns::SnsKind;
use stack_hook::{StackHook, StackHookConfig};
use std::collections::HashMap;
use std::sync::Arc;

type Hook = StackHook<DynamoStore, SystemClock, Arc<FakeFetcher>>;

async fn setup() -> (Hook, DynamoStore, Arc<FakeFetcher>) {
    let store = fresh_store("stack-sns").await;
    let vars = fixture_vars("StackHookFunction");
    let fetcher = Arc::new(FakeFetcher::new());
    let sns = sns_verifier(&vars, fetcher.clone());
    let hook = StackHook::new(
        store.clone(),
        SystemClock,
        StackHookConfig::from_vars(&vars).unwrap(),
        sns,
    );
    (hook, store, fetcher)
}

fn get(path: &str) -> Request {
    let mut request = fixture_request("stack-hook-get-status.json");
    *request.uri_mut() = path.parse().unwrap();
    use lambda_http::RequestExt;
    request.with_path_parameters(HashMap::<String, String>::new())
}

fn stack_event(n: u32, status: &str, at: &str) -> Value {
    let cfn = cfn_message(
        &format!("stack-evt-{n}"),
        "orders-api",
        "AWS::CloudFormation::Stack",
        status,
        at,
        None,
    );
    stack_event_request(&format!("msg-stack-{n}"), &cfn, "r")
}

fn resource_event(logical: &str, status: &str, at: &str) -> Value {
    let cfn = cfn_message(
        &format!("{logical}-{status}-{at}"),
        logical,
        "AWS::S3::Bucket",
        status,
        at,
        Some(r#"{"BucketName":"b"}"#),
    );
    stack_event_request(&format!("msg-{logical}-{status}"), &cfn, "r")
}

#[tokio::test]
async fn a_stack_creation_ends_terminal_and_resources_never_set_the_status() {
    let (hook, store, _) = setup().await;
    let sequence = [
        stack_event(1, "CREATE_IN_PROGRESS", "2024-03-01T12:00:00.000Z"),
        resource_event("Bucket", "CREATE_IN_PROGRESS", "2024-03-01T12:00:05.000Z"),
        resource_event("Bucket", "CREATE_COMPLETE", "2024-03-01T12:00:30.000Z"),
        resource_event("Queue", "CREATE_FAILED", "2024-03-01T12:00:31.000Z"),
    ];
    for event in &sequence {
        let response = hook.handle(request_from_json(event)).await;
        assert_eq!(response.status(), 200, "{}", body_json(&response));
    }
    // A resource failed after the stack started: the stack is still in progress.
    let status = body_json(&hook.handle(get("/stacks/orders-api")).await);
    assert_eq!(status["status"], "CREATE_IN_PROGRESS");
    assert_eq!(status["terminal"], false);

    hook.handle(request_from_json(&stack_event(
        2,
        "CREATE_COMPLETE",
        "2024-03-01T12:01:00.000Z",
    )))
    .await;
    // A late resource event (newer timestamp) changes nothing either.
    hook.handle(request_from_json(&resource_event(
        "Cleanup",
        "DELETE_COMPLETE",
        "2024-03-01T12:02:00.000Z",
    )))
    .await;

    let response = hook.handle(get("/stacks/orders-api")).await;
    assert_eq!(response.status(), 200);
    let status = body_json(&response);
    assert_eq!(status["status"], "CREATE_COMPLETE");
    assert_eq!(status["terminal"], true);
    assert_eq!(status["stack_id"], CFN_STACK_ID);
    assert_eq!(status["updated_at"], "2024-03-01T12:01:00.000Z");

    // By stack id (the ARN, URL-encoded as a path segment).
    let encoded = CFN_STACK_ID.replace('/', "%2F").replace(':', "%3A");
    let by_id = body_json(&hook.handle(get(&format!("/stacks/{encoded}"))).await);
    assert_eq!(by_id, status);

    let history = body_json(
        &hook
            .handle(get("/stacks/orders-api?history=true&limit=3"))
            .await,
    );
    let types: Vec<&str> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["DELETE_COMPLETE", "CREATE_COMPLETE", "CREATE_FAILED"]
    );
    assert_eq!(history["events"][1]["sets_status"], true);
    assert_eq!(history["events"][2]["sets_status"], false);
    assert!(history["next"].is_string(), "six events, pages of three");
    assert_eq!(scan_items(&store).await.len(), 6);
}

#[tokio::test]
async fn each_event_id_is_stored_once() {
    let (hook, store, _) = setup().await;
    for _ in 0..3 {
        for name in [
            "stack-hook-sns-stack-event.json",
            "stack-hook-sns-resource-event.json",
        ] {
            let response = hook.handle(fixture_request(name)).await;
            assert_eq!(response.status(), 200);
        }
    }
    assert_eq!(scan_items(&store).await.len(), 2);
    let items = scan_items(&store).await;
    let resource = items
        .iter()
        .find(|i| i["event_id"].as_s().unwrap().starts_with("ArtifactsBucket"))
        .expect("the resource event");
    let payload: Value = serde_json::from_str(resource["payload"].as_s().unwrap()).unwrap();
    let properties: Value =
        serde_json::from_str(payload["ResourceProperties"].as_str().unwrap()).unwrap();
    assert_eq!(properties["Tags"][0]["Value"], "team 'payments'");
    assert_eq!(payload["ClientRequestToken"], Value::Null);
    assert_eq!(
        resource["occurred_at"],
        AttributeValue::S("2024-03-01T12:04:30.000Z".into())
    );
    assert!(
        !resource.contains_key("state_key"),
        "resource events are history only"
    );
}

#[tokio::test]
async fn subscriptions_are_confirmed_only_for_allowed_topics() {
    let (hook, store, fetcher) = setup().await;
    let allowed = signed_sns(
        SnsKind::SubscriptionConfirmation,
        STACK_EVENTS_TOPIC,
        "c-1",
        "You have chosen to subscribe to the topic.",
        None,
        "2024-03-01T12:00:00.000Z",
    );
    let subscribe_url = allowed["SubscribeURL"].as_str().unwrap().to_owned();
    fetcher.respond(&subscribe_url, 200, "<ConfirmSubscriptionResponse/>");
    let response = hook
        .handle(request_from_json(&sns_request(&allowed, "c")))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(fetcher.requests(), vec![subscribe_url.clone()]);

    let unlisted = signed_sns(
        SnsKind::SubscriptionConfirmation,
        "arn:aws:sns:us-east-1:123456789012:someone-else",
        "c-2",
        "subscribe",
        None,
        "2024-03-01T12:00:00.000Z",
    );
    let response = hook
        .handle(request_from_json(&sns_request(&unlisted, "c")))
        .await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        fetcher.requests().len(),
        1,
        "an unlisted topic is never confirmed"
    );

    // A SubscribeURL that fails: 503 so that SNS retries.
    let failing = signed_sns(
        SnsKind::SubscriptionConfirmation,
        STACK_EVENTS_TOPIC,
        "c-3",
        "again",
        None,
        "2024-03-01T12:00:01.000Z",
    );
    fetcher.respond(failing["SubscribeURL"].as_str().unwrap(), 500, "");
    // The same URL as before answers 500 now.
    assert_eq!(
        hook.handle(request_from_json(&sns_request(&failing, "c")))
            .await
            .status(),
        503
    );
    assert_eq!(
        scan_items(&store).await.len(),
        0,
        "handshakes are not events"
    );
}

#[tokio::test]
async fn unsigned_tampered_or_malformed_envelopes() {
    let (hook, store, fetcher) = setup().await;
    let mut tampered = stack_event(1, "CREATE_COMPLETE", "2024-03-01T12:00:00.000Z");
    let body = tampered["body"]
        .as_str()
        .unwrap()
        .replace("CREATE_COMPLETE", "DELETE_COMPLETE");
    tampered["body"] = body.into();
    assert_eq!(
        hook.handle(request_from_json(&tampered)).await.status(),
        403
    );

    let mut unsigned = stack_event(1, "CREATE_COMPLETE", "2024-03-01T12:00:00.000Z");
    let mut envelope: Value = serde_json::from_str(unsigned["body"].as_str().unwrap()).unwrap();
    envelope.as_object_mut().unwrap().remove("Signature");
    unsigned["body"] = envelope.to_string().into();
    assert_eq!(
        hook.handle(request_from_json(&unsigned)).await.status(),
        403
    );

    // Signed and allowed, but not a CloudFormation message: authenticated, so 400.
    let hello = stack_event_request("m-hello", "Hello world", "r");
    let response = hook.handle(request_from_json(&hello)).await;
    assert_eq!(response.status(), 400);
    assert_eq!(body_json(&response)["error"], "bad_request");

    assert_eq!(scan_items(&store).await.len(), 0);
    assert!(
        fetcher.requests().is_empty(),
        "the pinned certificate is never fetched"
    );
}

const CREATED_AT: &str = "2024-03-01T12:00:00.000Z";

// S14: a key given twice is refused, whichever copy would have won.
#[tokio::test]
async fn a_message_with_a_key_twice_is_refused() {
    let (hook, store, _) = setup().await;
    let honest = cfn_message(
        "stack-evt-1",
        "orders-api",
        "AWS::CloudFormation::Stack",
        "CREATE_COMPLETE",
        CREATED_AT,
        None,
    );
    for twice in [
        honest.replace(
            "ResourceStatusReason=''",
            "ResourceStatusReason='x'\nResourceStatus='DELETE_COMPLETE'",
        ),
        format!("{honest}StackName='payments-api'\n"),
    ] {
        let response = hook
            .handle(request_from_json(&stack_event_request(
                "m-twice", &twice, "r",
            )))
            .await;
        assert_eq!(response.status(), 400, "{}", body_json(&response));
        assert_eq!(body_json(&response)["error"], "bad_request");
    }
    assert!(scan_items(&store).await.is_empty());
}

// S14: a nested stack's events (an AWS::CloudFormation::Stack resource of the parent, whose
// logical id may equal the parent's name) never set the parent's status.
#[tokio::test]
async fn a_nested_stack_never_sets_its_parents_status() {
    let (hook, _store, _) = setup().await;
    let response = hook
        .handle(request_from_json(&stack_event(
            1,
            "CREATE_COMPLETE",
            CREATED_AT,
        )))
        .await;
    assert_eq!(response.status(), 200);
    let child = "arn:aws:cloudformation:us-east-1:123456789012:stack/orders-api-orders-api-1X2Y3Z/77aa0c10-d7a9-11ee-9c3f-0a1b2c3d4e5f";
    let nested = cfn_message(
        "orders-api-DELETE_COMPLETE-2024-03-01T12:05:00.000Z",
        "orders-api",
        "AWS::CloudFormation::Stack",
        "DELETE_COMPLETE",
        "2024-03-01T12:05:00.000Z",
        None,
    )
    .replace(
        &format!("PhysicalResourceId='{CFN_STACK_ID}'"),
        &format!("PhysicalResourceId='{child}'"),
    );
    let response = hook
        .handle(request_from_json(&stack_event_request(
            "m-nested", &nested, "r",
        )))
        .await;
    assert_eq!(response.status(), 200);
    let status = body_json(&hook.handle(get("/stacks/orders-api")).await);
    assert_eq!(status["status"], "CREATE_COMPLETE");
    assert_eq!(body_json(&response)["sets_status"], false);
}

// S14: resource event ids repeat across stacks; the stack id scopes them.
#[tokio::test]
async fn one_event_id_in_two_stacks_is_two_events() {
    let (hook, store, _) = setup().await;
    let other_stack =
        "arn:aws:cloudformation:us-east-1:123456789012:stack/payments-api/9a8b7c6d-d7a9-11ee-9c3f-0a1b2c3d4e5f";
    let event_id = "Queue-CREATE_COMPLETE-2024-03-01T12:00:00.000Z";
    let first = cfn_message(
        event_id,
        "Queue",
        "AWS::SQS::Queue",
        "CREATE_COMPLETE",
        CREATED_AT,
        None,
    );
    let second = first
        .replace(CFN_STACK_ID, other_stack)
        .replace("StackName='orders-api'", "StackName='payments-api'");
    for (n, message) in [&first, &second].into_iter().enumerate() {
        let response = hook
            .handle(request_from_json(&stack_event_request(
                &format!("m-shared-{n}"),
                message,
                "r",
            )))
            .await;
        assert_eq!(body_json(&response)["status"], "stored", "{n}");
    }
    let mut ids: Vec<String> = scan_items(&store)
        .await
        .iter()
        .map(|i| i["event_id"].as_s().unwrap().clone())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            format!("{event_id}@{CFN_STACK_ID}"),
            format!("{event_id}@{other_stack}"),
        ]
    );
}

/// A ROS notification about `orders-api`, with the function's test token.
fn ros(stack_id: &str, status: &str) -> Request {
    let mut request = fixture_request("stack-hook-ros-create-complete.json");
    let body =
        serde_json::json!({"StackId": stack_id, "StackName": "orders-api", "Status": status});
    *request.body_mut() = lambda_http::Body::Text(body.to_string());
    request
}

// A name shared by a ROS stack and a CloudFormation stack: the CloudFormation statuses are not
// in the ROS chain, so ROS deliveries are decided against the ROS stack's own history by every
// instance (one that remembers the chain's head, one that asks the index), and the name's status
// is the newest event of either (functions/stack-hook/src/lifecycle.rs).
#[tokio::test]
async fn a_cloudformation_stack_of_the_same_name_leaves_the_ros_chain_alone() {
    let (hook, store, fetcher) = setup().await;
    for status in ["CREATE_COMPLETE", "UPDATE_COMPLETE"] {
        let reply = body_json(&hook.handle(ros("ros-uuid-1", status)).await);
        assert_eq!(reply["status"], "stored", "{status}");
    }
    // Later than every ROS event here, so the index's latest for the name.
    let after = (chrono::Utc::now() + chrono::Duration::minutes(1))
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let response = hook
        .handle(request_from_json(&stack_event(
            9,
            "UPDATE_COMPLETE",
            &after,
        )))
        .await;
    assert_eq!(body_json(&response)["status"], "stored");

    // Another instance, which remembers no head: the index's latest is CloudFormation's, and
    // the ROS chain's head is found behind it. A rollback follows the ROS stack's update.
    let vars = fixture_vars("StackHookFunction");
    let other = StackHook::new(
        store.clone(),
        SystemClock,
        StackHookConfig::from_vars(&vars).unwrap(),
        sns_verifier(&vars, fetcher),
    );
    let reply = body_json(&other.handle(ros("ros-uuid-1", "ROLLBACK_COMPLETE")).await);
    assert_eq!(
        (reply["status"].as_str(), reply["sets_status"].as_bool()),
        (Some("stored"), Some(true)),
        "{reply}"
    );
    // The first instance remembers the update as the head: ROS retrying the rollback there is
    // still a retry (one chain), and a creation sent late is history.
    let retry = body_json(&hook.handle(ros("ros-uuid-1", "ROLLBACK_COMPLETE")).await);
    assert_eq!(retry["status"], "duplicate", "{retry}");
    let late = body_json(&hook.handle(ros("ros-uuid-1", "CREATE_IN_PROGRESS")).await);
    assert_eq!(late["sets_status"], false, "{late}");

    // The name's status: the newest event, CloudFormation's.
    let status = body_json(&hook.handle(get("/stacks/orders-api")).await);
    assert_eq!(
        (status["status"].as_str(), status["stack_id"].as_str()),
        (Some("UPDATE_COMPLETE"), Some(CFN_STACK_ID))
    );
    let ros_events: Vec<(String, bool)> = scan_items(&store)
        .await
        .iter()
        .filter(|i| i["event_id"].as_s().unwrap().starts_with("ros-"))
        .map(|i| {
            (
                i["event_type"].as_s().unwrap().clone(),
                i.contains_key("state_key"),
            )
        })
        .collect();
    assert_eq!(ros_events.len(), 4, "{ros_events:?}");
    assert_eq!(ros_events.iter().filter(|(_, sets)| *sets).count(), 3);
}
