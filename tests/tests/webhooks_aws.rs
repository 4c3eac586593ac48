//! Outbound webhooks on AWS, against moto, through the real functions: the DynamoDB webhook
//! store keeps the store contract; stream records read from moto's events-table stream become
//! the fan-out's event (as Lambda's poller would hand them over); SQS messages received from
//! moto become the deliver function's event, and what it reports decides, as for Lambda,
//! whether the message is deleted; a receiver on 127.0.0.1 checks every signature; a fixed
//! clock walks the whole retry schedule while moto's queue holds the message.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodbstreams::types::{AttributeValue as StreamValue, ShardIteratorType};
use aws_sdk_sqs::types::QueueAttributeName;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use hub_core::clock::{Clock, FixedClock};
use hub_core::event::{Event, Source};
use hub_core::store::{DynamoStore, EventWriter};
use hub_tests::{fresh_store, template, unique_name, Moto};
use serde_json::{json, Value};
use std::sync::Arc;
use webhook_deliver::{DeliverFunction, DeliverInput, SqsQueues, MAX_VISIBILITY};
use webhook_fanout::FanOutFunction;
use webhooks::dynamo::sqs::SqsQueue;
use webhooks::dynamo::DynamoWebhookStore;
use webhooks::model::ValidationPolicy;
use webhooks::schedule::MAX_ATTEMPTS;
use webhooks::store::{DeliveryState, DeliveryStore, PageRequest, SubscriptionStore};
use webhooks::testing::{Receiver, Script};
use webhooks::{Sender, SenderConfig, Subscription};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0).unwrap()
}

async fn fresh_webhook_store() -> DynamoWebhookStore {
    let client = Moto::shared().dynamodb().await;
    let table = unique_name("webhooks");
    template::create_webhooks_table(&client, &table).await;
    DynamoWebhookStore::new(client, table)
}

async fn sqs() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&Moto::shared().sdk_config().await)
}

async fn fresh_queue(prefix: &str) -> SqsQueue {
    let client = sqs().await;
    let url = client
        .create_queue()
        .queue_name(unique_name(prefix))
        .attributes(QueueAttributeName::VisibilityTimeout, "360")
        .send()
        .await
        .expect("create a queue in moto")
        .queue_url
        .expect("a queue URL");
    SqsQueue::new(client, url)
}

/// Every message visible now (moto answers at once: no long polling).
async fn receive_all(queue: &SqsQueue) -> Vec<aws_sdk_sqs::types::Message> {
    let mut all = Vec::new();
    loop {
        let output = queue
            .client()
            .receive_message()
            .queue_url(queue.url())
            .max_number_of_messages(10)
            .send()
            .await
            .expect("receive from moto");
        let messages = output.messages.unwrap_or_default();
        if messages.is_empty() {
            return all;
        }
        all.extend(messages);
    }
}

fn policy() -> ValidationPolicy {
    ValidationPolicy {
        allow_private_networks: true,
        ..ValidationPolicy::default()
    }
}

async fn subscribe(store: &DynamoWebhookStore, name: &str, url: &str, filter: Value) {
    let sub: Subscription = serde_json::from_value(json!({
        "name": name,
        "url": url,
        "secret": SECRET,
        "event_filter": filter,
    }))
    .unwrap();
    let sub = sub.prepare_new(&policy(), t0()).unwrap();
    store.create_subscription(&sub).await.unwrap();
}

// ---- the events stream, as Lambda's poller hands it to the fan-out ----

/// A stream attribute value in DynamoDB JSON, the form of a Lambda stream event.
fn dynamodb_json(value: &StreamValue) -> Value {
    use base64::Engine;
    let b64 = |b: &aws_sdk_dynamodbstreams::primitives::Blob| {
        base64::engine::general_purpose::STANDARD.encode(b.as_ref())
    };
    match value {
        StreamValue::S(s) => json!({ "S": s }),
        StreamValue::N(n) => json!({ "N": n }),
        StreamValue::B(b) => json!({ "B": b64(b) }),
        StreamValue::Bool(b) => json!({ "BOOL": b }),
        StreamValue::Null(n) => json!({ "NULL": n }),
        StreamValue::Ss(list) => json!({ "SS": list }),
        StreamValue::Ns(list) => json!({ "NS": list }),
        StreamValue::Bs(list) => json!({ "BS": list.iter().map(b64).collect::<Vec<_>>() }),
        StreamValue::L(list) => json!({ "L": list.iter().map(dynamodb_json).collect::<Vec<_>>() }),
        StreamValue::M(map) => json!({ "M": image_json(map) }),
        other => panic!("unexpected stream attribute {other:?}"),
    }
}

fn image_json(image: &std::collections::HashMap<String, StreamValue>) -> Value {
    Value::Object(
        image
            .iter()
            .map(|(k, v)| (k.clone(), dynamodb_json(v)))
            .collect(),
    )
}

/// Every record of the table's stream, read from moto, as the Lambda event the fan-out gets.
async fn stream_batch(events: &DynamoStore) -> aws_lambda_events::event::dynamodb::Event {
    let described = events
        .client()
        .describe_table()
        .table_name(events.table())
        .send()
        .await
        .unwrap();
    let table = described.table.unwrap();
    let stream_arn = table
        .latest_stream_arn
        .expect("the events table has a stream (template.yaml)");
    let streams = aws_sdk_dynamodbstreams::Client::new(&Moto::shared().sdk_config().await);
    let description = streams
        .describe_stream()
        .stream_arn(&stream_arn)
        .send()
        .await
        .unwrap()
        .stream_description
        .unwrap();
    let mut records = Vec::new();
    for shard in description.shards() {
        let mut iterator = streams
            .get_shard_iterator()
            .stream_arn(&stream_arn)
            .shard_id(shard.shard_id().unwrap())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator;
        while let Some(it) = iterator {
            let output = streams
                .get_records()
                .shard_iterator(it)
                .send()
                .await
                .unwrap();
            if output.records().is_empty() {
                break;
            }
            for record in output.records() {
                let change = record.dynamodb().unwrap();
                records.push(json!({
                    "eventID": record.event_id(),
                    "eventName": record.event_name().unwrap().as_str(),
                    "eventVersion": record.event_version(),
                    "eventSource": "aws:dynamodb",
                    "awsRegion": "us-east-1",
                    "eventSourceARN": stream_arn,
                    "dynamodb": {
                        "ApproximateCreationDateTime": change
                            .approximate_creation_date_time()
                            .map(|t| t.secs() as f64)
                            .unwrap_or(0.0),
                        "Keys": image_json(change.keys().unwrap_or(&Default::default())),
                        "NewImage": image_json(change.new_image().unwrap_or(&Default::default())),
                        "SequenceNumber": change.sequence_number(),
                        "SizeBytes": change.size_bytes(),
                        "StreamViewType": change.stream_view_type().unwrap().as_str(),
                    },
                }));
            }
            iterator = output.next_shard_iterator;
        }
    }
    serde_json::from_value(json!({ "Records": records })).expect("a Lambda stream event")
}

async fn count_items(store: &DynamoWebhookStore) -> usize {
    store
        .client()
        .scan()
        .table_name(store.table())
        .send()
        .await
        .unwrap()
        .count() as usize
}

#[tokio::test]
async fn dynamodb_webhook_store_meets_the_store_contract() {
    webhooks::store::contract::run_all(&fresh_webhook_store().await).await;
}

#[tokio::test]
async fn stream_records_from_moto_fan_out_once_and_replays_create_nothing() {
    let events = fresh_store("webhook-events").await;
    let webhooks = fresh_webhook_store().await;
    let queue = fresh_queue("deliveries").await;
    subscribe(
        &webhooks,
        "all-stacks",
        "https://a.example.com/",
        json!({"sources": ["stack"]}),
    )
    .await;
    subscribe(
        &webhooks,
        "failures",
        "https://b.example.com/",
        json!({"error_only": true}),
    )
    .await;
    subscribe(
        &webhooks,
        "uploads",
        "https://c.example.com/",
        json!({"kind_types": ["s3"]}),
    )
    .await;

    // Stored through the real event store, so the stream carries the real item images.
    let stored = [
        Event::new(Source::Stack, "ev-1", "UPDATE_COMPLETE", "web", "{}", t0()),
        Event::new(
            Source::Stack,
            "ev-2",
            "UPDATE_FAILED",
            "web",
            r#"{"ResourceStatusReason":"boom"}"#,
            t0(),
        ),
        Event::new(
            Source::Dingtalk,
            "ev-3",
            "bpms_task_change",
            "proc-1",
            "{}",
            t0(),
        ),
    ];
    for event in &stored {
        events
            .put_event(&event.clone().retained_for_days(Some(7)))
            .await
            .unwrap();
    }
    // A bookkeeping item of the same table (the mirror ledger's shape): no event_key.
    events
        .client()
        .put_item()
        .table_name(events.table())
        .item("pk", AttributeValue::S("mirror#bucket/key".into()))
        .item("state", AttributeValue::S("copied".into()))
        .send()
        .await
        .unwrap();

    let fan_out = FanOutFunction::new(webhooks.clone(), queue.clone(), FixedClock::at(t0()));
    let batch = stream_batch(&events).await;
    assert_eq!(batch.records.len(), 4, "three events and the ledger item");
    let response = fan_out.handle(batch.clone()).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");

    let mut planned: Vec<(String, String)> = Vec::new();
    for name in ["all-stacks", "failures", "uploads"] {
        let page = webhooks
            .list_deliveries(name, &PageRequest::first(10))
            .await
            .unwrap();
        for d in page.deliveries {
            assert_eq!(d.delivery.state, DeliveryState::Pending);
            assert!(d.delivery.expires_at.is_some(), "the event's retention");
            planned.push((name.to_owned(), d.delivery.event_id));
        }
    }
    planned.sort();
    assert_eq!(
        planned,
        [
            ("all-stacks".to_owned(), "ev-1".to_owned()),
            ("all-stacks".to_owned(), "ev-2".to_owned()),
            ("failures".to_owned(), "ev-2".to_owned()),
        ]
    );
    let mut queued: Vec<String> = receive_all(&queue)
        .await
        .into_iter()
        .map(|m| m.body.unwrap())
        .collect();
    queued.sort();
    let mut ids = Vec::new();
    for (name, event_id) in &planned {
        ids.push(webhooks::webhook_id(name, "stack", event_id));
    }
    ids.sort();
    assert_eq!(queued, ids, "each new delivery's id, once");

    // Lambda hands the same records over again (a retry, a bisected batch).
    let items = count_items(&webhooks).await;
    let again = fan_out.handle(batch).await;
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(count_items(&webhooks).await, items, "no second delivery");
    assert!(receive_all(&queue).await.is_empty(), "nothing queued again");
}

// ---- the delivery queue, as Lambda's poller hands it to the deliver function ----

struct Delivering {
    function: DeliverFunction<DynamoWebhookStore, DynamoStore, SqsQueues, Arc<FixedClock>>,
    webhooks: DynamoWebhookStore,
    deliveries: SqsQueue,
    dead_letters: SqsQueue,
    clock: Arc<FixedClock>,
    receiver: Receiver,
    delivery_id: String,
    /// The receipt handles of the messages the last poll left in the queue.
    kept: std::sync::Mutex<Vec<String>>,
}

async fn delivering(script: Script) -> Delivering {
    let receiver = Receiver::start(SECRET, script).await;
    let events = fresh_store("webhook-events").await;
    let webhooks = fresh_webhook_store().await;
    let deliveries = fresh_queue("deliveries").await;
    let dead_letters = fresh_queue("dead-letters").await;
    subscribe(&webhooks, "ops", &receiver.url(), json!({})).await;
    let event = Event::new(Source::Stack, "ev-9", "UPDATE_FAILED", "web", "{}", t0());
    events.put_event(&event).await.unwrap();
    let clock = Arc::new(FixedClock::at(t0()));
    // The fan-out creates the delivery and queues its id, as on AWS.
    let fan_out = FanOutFunction::new(webhooks.clone(), deliveries.clone(), clock.clone());
    let subscriptions = webhooks.list_subscriptions().await.unwrap();
    let record: aws_lambda_events::event::dynamodb::EventRecord = serde_json::from_value(json!({
        "eventID": "1", "eventName": "INSERT", "awsRegion": "us-east-1",
        "dynamodb": {
            "SequenceNumber": "1", "SizeBytes": 1, "StreamViewType": "NEW_IMAGE",
            "NewImage": {
                "pk": {"S": "stack#ev-9"}, "source": {"S": "stack"}, "event_id": {"S": "ev-9"},
                "event_type": {"S": "UPDATE_FAILED"}, "subject": {"S": "web"},
                "received_at": {"S": "2024-05-01T10:00:00.000Z"}, "payload": {"S": "{}"},
                "event_key": {"S": "2024-05-01T10:00:00.000Z#ev-9"}
            }
        }
    }))
    .unwrap();
    fan_out.record(&subscriptions, &record).await.unwrap();
    let function = DeliverFunction::new(
        webhooks.clone(),
        events,
        Sender::new(SenderConfig::new(policy())),
        SqsQueues {
            deliveries: deliveries.clone(),
            dead_letters: dead_letters.clone(),
        },
        clock.clone(),
    );
    Delivering {
        function,
        webhooks,
        deliveries,
        dead_letters,
        clock,
        receiver,
        delivery_id: webhooks::webhook_id("ops", "stack", "ev-9"),
        kept: std::sync::Mutex::new(Vec::new()),
    }
}

impl Delivering {
    /// One poll as Lambda's: receive what is visible, invoke the function with it, delete what
    /// it did not report. Returns how many messages it got.
    async fn poll(&self) -> usize {
        let messages = receive_all(&self.deliveries).await;
        if messages.is_empty() {
            return 0;
        }
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                json!({
                    "messageId": m.message_id(),
                    "receiptHandle": m.receipt_handle(),
                    "body": m.body(),
                    "md5OfBody": m.md5_of_body(),
                    "attributes": {},
                    "messageAttributes": {},
                    "eventSource": "aws:sqs",
                    "awsRegion": "us-east-1",
                })
            })
            .collect();
        let input: DeliverInput = serde_json::from_value(json!({ "Records": records })).unwrap();
        let response = self.function.handle(input).await.unwrap();
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        let mut kept = self.kept.lock().unwrap().clone();
        kept.clear();
        for message in &messages {
            if failed.contains(&message.message_id().unwrap()) {
                kept.push(message.receipt_handle().unwrap().to_owned());
            } else {
                self.deliveries
                    .client()
                    .delete_message()
                    .queue_url(self.deliveries.url())
                    .receipt_handle(message.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
        *self.kept.lock().unwrap() = kept;
        assert!(
            receive_all(&self.deliveries).await.is_empty(),
            "a kept message is hidden by the function"
        );
        messages.len()
    }

    /// Time passes until the message would be visible again: the clock moves to the next
    /// attempt (at most one receive's visibility later), and moto's message is made visible.
    async fn wait_for_next_attempt(&self) {
        let delivery = self
            .webhooks
            .get_delivery(&self.delivery_id)
            .await
            .unwrap()
            .unwrap();
        let now = self.clock.now();
        let limit = now + TimeDelta::from_std(MAX_VISIBILITY).unwrap();
        let until = delivery.next_attempt_at.min(limit);
        if until > now {
            self.clock.advance(until - now);
        }
        // moto hides the message in real time: show it again, as the passing of that time would.
        let kept = self.kept.lock().unwrap().clone();
        assert_eq!(kept.len(), 1, "the message is kept, hidden");
        for receipt in kept {
            self.deliveries
                .client()
                .change_message_visibility()
                .queue_url(self.deliveries.url())
                .receipt_handle(receipt)
                .visibility_timeout(0)
                .send()
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn sqs_messages_from_moto_are_retried_on_schedule_until_delivered() {
    let world = delivering(Script::fail_then_succeed(2, 503)).await;
    let mut polls = 0;
    loop {
        assert_eq!(world.poll().await, 1, "one message per delivery");
        polls += 1;
        let delivery = world
            .webhooks
            .get_delivery(&world.delivery_id)
            .await
            .unwrap()
            .unwrap();
        if delivery.state != DeliveryState::Pending {
            break;
        }
        assert!(polls < 10);
        world.wait_for_next_attempt().await;
    }
    let received = world.receiver.received();
    assert_eq!(received.len(), 3, "two failures, then success");
    assert!(
        received.iter().all(|r| r.signature_valid),
        "every attempt verifies"
    );
    assert!(received
        .iter()
        .all(|r| r.webhook_id() == Some(world.delivery_id.as_str())));
    let listed = world
        .webhooks
        .list_deliveries("ops", &PageRequest::first(10))
        .await
        .unwrap();
    let logged = &listed.deliveries[0];
    assert_eq!(logged.delivery.state, DeliveryState::Delivered);
    assert_eq!(logged.delivery.attempts, 3);
    let statuses: Vec<Option<u16>> = logged
        .attempts_log
        .iter()
        .map(|a| a.attempt.status)
        .collect();
    assert_eq!(statuses, [Some(503), Some(503), Some(200)]);
    assert!(
        receive_all(&world.deliveries).await.is_empty(),
        "the message is deleted"
    );
    assert!(receive_all(&world.dead_letters).await.is_empty());
}

#[tokio::test]
async fn an_exhausted_delivery_goes_to_the_dead_letter_queue() {
    let world = delivering(Script::always(500)).await;
    for _ in 0..30 {
        world.poll().await;
        let delivery = world
            .webhooks
            .get_delivery(&world.delivery_id)
            .await
            .unwrap()
            .unwrap();
        if delivery.state != DeliveryState::Pending {
            break;
        }
        world.wait_for_next_attempt().await;
    }
    assert_eq!(world.receiver.received().len(), MAX_ATTEMPTS as usize);
    let delivery = world
        .webhooks
        .get_delivery(&world.delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivery.state, DeliveryState::Failed);
    assert!(delivery.dead_lettered);
    let dead = receive_all(&world.dead_letters).await;
    assert_eq!(dead.len(), 1);
    let body: Value = serde_json::from_str(dead[0].body().unwrap()).unwrap();
    assert_eq!(body["delivery_id"], json!(world.delivery_id));
    assert_eq!(body["attempts"], json!(MAX_ATTEMPTS));
    assert!(receive_all(&world.deliveries).await.is_empty());
    // The whole schedule ran on the fixed clock: about 27.6 hours, ±20%.
    let elapsed = world.clock.now() - t0();
    assert!(
        elapsed > TimeDelta::hours(22) && elapsed < TimeDelta::hours(34),
        "{elapsed}"
    );
}

#[tokio::test]
async fn the_sweep_queues_overdue_deliveries_on_moto() {
    let world = delivering(Script::always(200)).await;
    // The fan-out's message is lost.
    world
        .deliveries
        .client()
        .purge_queue()
        .queue_url(world.deliveries.url())
        .send()
        .await
        .unwrap();
    assert!(
        world.function.sweep().await.unwrap().is_empty(),
        "not overdue yet"
    );
    world.clock.advance(TimeDelta::minutes(10));
    let input: DeliverInput = serde_json::from_value(json!({"sweep": true})).unwrap();
    world.function.handle(input).await.unwrap();
    assert_eq!(world.poll().await, 1);
    assert_eq!(world.receiver.received().len(), 1);
    let delivery = world
        .webhooks
        .get_delivery(&world.delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivery.state, DeliveryState::Delivered);
}
