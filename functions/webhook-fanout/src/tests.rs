use super::*;
use chrono::TimeZone;
use hub_core::clock::FixedClock;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use webhooks::model::ValidationPolicy;
use webhooks::store::memory::MemoryWebhookStore;
use webhooks::Subscription;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0).unwrap()
}

fn subscription(name: &str, filter: serde_json::Value) -> Subscription {
    let sub: Subscription = serde_json::from_value(json!({
        "name": name,
        "url": "https://hooks.example.com/in",
        "event_filter": filter,
    }))
    .unwrap();
    sub.prepare_new(&ValidationPolicy::default(), now())
        .unwrap()
}

/// The image of an event item, as the events table stores it (`hub_core::store::dynamo`).
fn event_image(event_id: &str, status: &str) -> serde_json::Value {
    json!({
        "pk": {"S": format!("stack#{event_id}")},
        "source": {"S": "stack"},
        "event_id": {"S": event_id},
        "event_type": {"S": status},
        "subject": {"S": "web"},
        "received_at": {"S": "2024-05-01T09:59:00.000Z"},
        "occurred_at": {"S": "2024-05-01T09:58:00.000Z"},
        "payload": {"S": "{\"StackName\":\"web\"}"},
        "event_key": {"S": format!("2024-05-01T09:58:00.000Z#{event_id}")},
        "subject_key": {"S": "stack#web"},
        "state_key": {"S": "stack#web"},
        "source_month": {"S": "stack#2024-05"},
        "expires_at": {"N": "1717236000"},
    })
}

fn record(sequence: &str, name: &str, image: serde_json::Value) -> serde_json::Value {
    json!({
        "eventID": format!("e-{sequence}"),
        "eventName": name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/events/stream/2024",
        "dynamodb": {
            "ApproximateCreationDateTime": 1714557540.0,
            "Keys": {"pk": image["pk"].clone()},
            "NewImage": image,
            "SequenceNumber": sequence,
            "SizeBytes": 100,
            "StreamViewType": "NEW_IMAGE",
        },
    })
}

fn batch(records: Vec<serde_json::Value>) -> StreamEvent {
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

/// A delivery queue that records ids, and fails its `fail_on`-th call (1-based).
#[derive(Default)]
struct Queue {
    sent: Mutex<Vec<String>>,
    calls: AtomicUsize,
    fail_on: Option<usize>,
}

impl DeliveryQueue for Queue {
    async fn deliveries_due(&self, ids: &[String]) -> Result<(), StoreError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if Some(call) == self.fail_on {
            return Err(StoreError::Unavailable("queue down".into()));
        }
        self.sent.lock().unwrap().extend(ids.iter().cloned());
        Ok(())
    }
}

fn fan_out(
    store: Arc<MemoryWebhookStore>,
    queue: Arc<Queue>,
) -> FanOutFunction<Arc<MemoryWebhookStore>, Arc<Queue>, FixedClock> {
    FanOutFunction::new(store, queue, FixedClock::at(now()))
}

async fn store_with_subscriptions() -> Arc<MemoryWebhookStore> {
    let store = Arc::new(MemoryWebhookStore::new());
    for sub in [
        subscription("all-stacks", json!({"sources": ["stack"]})),
        subscription("failures", json!({"error_only": true})),
        subscription(
            "completions",
            json!({"kind_names": ["stack.UPDATE_COMPLETE"]}),
        ),
    ] {
        store.create_subscription(&sub).await.unwrap();
    }
    store
}

#[tokio::test]
async fn each_event_becomes_one_queued_delivery_per_matching_subscription() {
    let store = store_with_subscriptions().await;
    let queue = Arc::new(Queue::default());
    let function = fan_out(store.clone(), queue.clone());
    let response = function
        .handle(batch(vec![record(
            "100",
            "INSERT",
            event_image("ev-1", "UPDATE_COMPLETE"),
        )]))
        .await;
    assert!(response.batch_item_failures.is_empty());
    let mut subscriptions: Vec<String> = store
        .deliveries()
        .into_iter()
        .map(|d| d.subscription)
        .collect();
    subscriptions.sort();
    assert_eq!(subscriptions, ["all-stacks", "completions"]);
    let mut queued = queue.sent.lock().unwrap().clone();
    queued.sort();
    let mut ids: Vec<String> = store.deliveries().into_iter().map(|d| d.id).collect();
    ids.sort();
    assert_eq!(queued, ids);
    let delivery = &store.deliveries()[0];
    assert_eq!(delivery.event_id, "ev-1");
    assert_eq!(delivery.source, "stack");
    assert_eq!(delivery.next_attempt_at, now());
    assert_eq!(
        delivery.expires_at,
        Some(1_717_236_000),
        "the event's expiry"
    );
}

#[tokio::test]
async fn a_replayed_record_creates_and_queues_nothing_new() {
    let store = store_with_subscriptions().await;
    let queue = Arc::new(Queue::default());
    let function = fan_out(store.clone(), queue.clone());
    let records = || {
        batch(vec![record(
            "100",
            "INSERT",
            event_image("ev-1", "UPDATE_COMPLETE"),
        )])
    };
    function.handle(records()).await;
    let deliveries = store.deliveries();
    let queued = queue.sent.lock().unwrap().len();
    let response = function.handle(records()).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(store.deliveries(), deliveries);
    assert_eq!(queue.sent.lock().unwrap().len(), queued);
}

#[tokio::test]
async fn other_items_and_changes_are_skipped() {
    let store = store_with_subscriptions().await;
    let queue = Arc::new(Queue::default());
    let function = fan_out(store.clone(), queue.clone());
    let ledger = json!({
        "pk": {"S": "mirror#bucket/key"},
        "state": {"S": "copied"},
    });
    let response = function
        .handle(batch(vec![
            record("1", "INSERT", ledger),
            record("2", "MODIFY", event_image("ev-2", "UPDATE_COMPLETE")),
            record("3", "REMOVE", event_image("ev-3", "UPDATE_COMPLETE")),
        ]))
        .await;
    assert!(response.batch_item_failures.is_empty());
    assert!(store.deliveries().is_empty());
    assert!(queue.sent.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_first_failed_record_is_reported_and_nothing_after_it_is_done() {
    let store = store_with_subscriptions().await;
    let queue = Arc::new(Queue {
        fail_on: Some(2),
        ..Queue::default()
    });
    let function = fan_out(store.clone(), queue.clone());
    let response = function
        .handle(batch(vec![
            record("1", "INSERT", event_image("ev-1", "UPDATE_COMPLETE")),
            record("2", "INSERT", event_image("ev-2", "UPDATE_FAILED")),
            record("3", "INSERT", event_image("ev-3", "UPDATE_COMPLETE")),
        ]))
        .await;
    let failed: Vec<Option<String>> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(failed, [Some("2".to_owned())]);
    assert!(
        store.deliveries().iter().all(|d| d.event_id != "ev-3"),
        "records after the failure wait for the retry"
    );
}

#[tokio::test]
async fn subscriptions_unavailable_fails_the_batch_from_its_first_record() {
    let store = store_with_subscriptions().await;
    store.set_unavailable(true);
    let function = fan_out(store.clone(), Arc::new(Queue::default()));
    let response = function
        .handle(batch(vec![
            record("7", "INSERT", event_image("ev-1", "UPDATE_COMPLETE")),
            record("8", "INSERT", event_image("ev-2", "UPDATE_COMPLETE")),
        ]))
        .await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(
        response.batch_item_failures[0].item_identifier.as_deref(),
        Some("7")
    );
}

#[tokio::test]
async fn an_unreadable_event_image_is_reported_not_dropped() {
    let store = store_with_subscriptions().await;
    let function = fan_out(store.clone(), Arc::new(Queue::default()));
    let mut image = event_image("ev-1", "UPDATE_COMPLETE");
    image["received_at"] = json!({"S": "yesterday"});
    let response = function
        .handle(batch(vec![record("5", "INSERT", image)]))
        .await;
    assert_eq!(
        response.batch_item_failures[0].item_identifier.as_deref(),
        Some("5")
    );
}

#[test]
fn the_image_decodes_to_the_stored_event() {
    let image = event_image("ev-1", "UPDATE_COMPLETE");
    let event = event_from_image(image.as_object().unwrap()).unwrap();
    assert_eq!(event.source, Source::Stack);
    assert_eq!(event.event_id, "ev-1");
    assert_eq!(event.event_type, "UPDATE_COMPLETE");
    assert_eq!(event.subject, "web");
    assert!(event.sets_state);
    assert_eq!(event.subject_alias, None);
    assert_eq!(event.payload, "{\"StackName\":\"web\"}");
    assert_eq!(
        event.received_at,
        Utc.with_ymd_and_hms(2024, 5, 1, 9, 59, 0).unwrap()
    );
    assert_eq!(
        event.occurred_at,
        Some(Utc.with_ymd_and_hms(2024, 5, 1, 9, 58, 0).unwrap())
    );
    assert_eq!(event.expires_at, Some(1_717_236_000));
}
