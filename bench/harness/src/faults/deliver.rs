//! `webhook-deliver` under SQS and DynamoDB faults, driven as Lambda's SQS poller drives it:
//! batches of up to 10 messages received from moto's delivery queue; the messages the function
//! is done with are deleted, the others (reported failed, or the whole batch when the
//! invocation fails) come back after the queue's visibility timeout (2 s here) or the delay
//! the function set.
//!
//! Two subscriptions on a loopback receiver: `ok` answers 200, `failing` answers 503. The
//! deliveries are made by the bench as the fan-out makes them (a conditional put of the
//! delivery, its id queued), and those to `failing` are at their last scheduled attempt (7
//! made): the retry schedule's hours are not waited for, its end is what is tested. Properties:
//! every `ok` delivery reaches the receiver with a 2xx and ends `delivered`; every `failing`
//! delivery ends dead-lettered (its record and a message in the dead-letter queue); no attempt
//! reaches the receiver after its delivery's dead-letter message was seen.

use super::function::{Function, Outcome};
use super::{Context, DeliveryCounts, Row};
use crate::fault_proxy::Service;
use crate::fault_proxy::{Kind, Phase};
use crate::http_server;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use bytes::Bytes;
use chrono::{TimeZone, Utc};
use hub_core::event::{Event, Source};
use hub_core::store::{DynamoStore, EventWriter};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use webhooks::store::{Delivery, DeliveryState, DeliveryStore, SubscriptionStore};

const NAME: &str = "webhook-deliver";
/// The function's `Timeout` in template.yaml.
const INVOKE_LIMIT: Duration = Duration::from_secs(60);
/// The delivery queue's visibility timeout here: how soon a failed message comes back.
const VISIBILITY_SECS: i32 = 2;
/// Past this, the run stops waiting for the queue to drain (what is left is reported).
const DRAIN_LIMIT: Duration = Duration::from_secs(240);
/// The schedule's length (`webhooks::schedule::MAX_ATTEMPTS`): a `failing` delivery starts
/// with one attempt left.
const ATTEMPTS_MADE: u32 = 7;

/// The receiver's log: per `webhook-id`, the invocations (their index) during which an
/// attempt arrived, and whether it was answered 2xx.
#[derive(Default)]
struct Hits {
    by_id: HashMap<String, Vec<(usize, bool)>>,
}

struct World {
    current: Arc<AtomicUsize>,
    hits: Arc<Mutex<Hits>>,
    _receiver: tokio::task::JoinHandle<()>,
    events_table: String,
    webhooks_table: String,
    queue_url: String,
    dead_letter_url: String,
    store: webhooks::dynamo::DynamoWebhookStore,
    events: DynamoStore,
}

/// Tables, queues, the receiver and its two subscriptions, made directly on moto.
async fn world(ctx: &Context) -> Result<World, String> {
    let id = ctx.next_id();
    let current = Arc::new(AtomicUsize::new(0));
    let hits = Arc::new(Mutex::new(Hits::default()));
    let (receiver, server) = {
        let current = current.clone();
        let hits = hits.clone();
        http_server::spawn(move |request| {
            let current = current.clone();
            let hits = hits.clone();
            async move {
                let ok = request.uri().path().ends_with("/ok");
                let webhook_id = request
                    .headers()
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                hits.lock()
                    .expect("not poisoned")
                    .by_id
                    .entry(webhook_id)
                    .or_default()
                    .push((current.load(Ordering::SeqCst), ok));
                http_server::response(if ok { 200 } else { 503 }, "")
            }
        })
        .await
        .map_err(|e| format!("receiver: {e}"))?
    };
    let events_table = format!("faults-deliver-events-{id}");
    hub_tests::template::create_events_table(&ctx.dynamodb, &events_table).await;
    let webhooks_table = format!("faults-deliver-webhooks-{id}");
    hub_tests::template::create_webhooks_table(&ctx.dynamodb, &webhooks_table).await;
    let mut urls = Vec::new();
    for queue in ["deliveries", "dead-letters"] {
        let url = ctx
            .sqs
            .create_queue()
            .queue_name(format!("faults-{id}-{queue}"))
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                VISIBILITY_SECS.to_string(),
            )
            .send()
            .await
            .map_err(|e| format!("create queue {queue}: {e:?}"))?
            .queue_url
            .ok_or("no queue URL")?;
        urls.push(url);
    }
    let store = webhooks::dynamo::DynamoWebhookStore::new(ctx.dynamodb.clone(), &webhooks_table);
    let policy = webhooks::model::ValidationPolicy {
        allow_private_networks: true,
        ..Default::default()
    };
    for name in ["ok", "failing"] {
        let subscription: webhooks::model::Subscription = serde_json::from_value(json!({
            "name": name, "url": format!("http://{receiver}/hook/{name}"), "event_filter": {},
        }))
        .map_err(|e| e.to_string())?;
        let subscription = subscription
            .prepare_new(&policy, Utc::now())
            .map_err(|e| e.to_string())?;
        store
            .create_subscription(&subscription)
            .await
            .map_err(|e| format!("create subscription: {e}"))?;
    }
    Ok(World {
        current,
        hits,
        _receiver: server,
        events: DynamoStore::new(ctx.dynamodb.clone(), events_table.clone()),
        events_table,
        webhooks_table,
        queue_url: urls[0].clone(),
        dead_letter_url: urls[1].clone(),
        store,
    })
}

impl World {
    /// Event `n`, and its deliveries (created and queued as the fan-out does): with `ok` to
    /// `ok`, with `failing` to `failing`, at its last scheduled attempt. Returns each
    /// delivery's id and whether it should be delivered.
    async fn add_event(
        &self,
        ctx: &Context,
        n: usize,
        ok: bool,
        failing: bool,
    ) -> Result<Vec<(String, bool)>, String> {
        let event = Event::new(
            Source::Stack,
            format!("faults-webhook-{n}"),
            "UPDATE_FAILED",
            format!("faults-stack-{}", n % 20),
            json!({"StackName": format!("faults-stack-{}", n % 20), "Status": "UPDATE_FAILED"})
                .to_string(),
            Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0).unwrap()
                + chrono::Duration::seconds(n as i64),
        );
        self.events
            .put_event(&event)
            .await
            .map_err(|e| format!("put event: {e}"))?;
        let mut subscriptions = Vec::new();
        if ok {
            subscriptions.push("ok");
        }
        if failing {
            subscriptions.push("failing");
        }
        let mut made = Vec::new();
        for subscription in subscriptions {
            let mut delivery = Delivery::new(subscription, &event, Utc::now());
            if subscription == "failing" {
                delivery.attempts = ATTEMPTS_MADE;
                delivery.round_attempts = ATTEMPTS_MADE;
            }
            self.store
                .create_delivery(&delivery)
                .await
                .map_err(|e| format!("create delivery: {e}"))?;
            ctx.sqs
                .send_message()
                .queue_url(&self.queue_url)
                .message_body(&delivery.id)
                .send()
                .await
                .map_err(|e| format!("queue delivery: {e:?}"))?;
            made.push((delivery.id.clone(), subscription == "ok"));
        }
        Ok(made)
    }

    fn env(&self, ctx: &Context) -> Vec<(String, String)> {
        vec![
            ("WEBHOOKS_TABLE".to_owned(), self.webhooks_table.clone()),
            ("WEBHOOKS_QUEUE_URL".to_owned(), self.queue_url.clone()),
            (
                "WEBHOOKS_DEAD_LETTER_QUEUE_URL".to_owned(),
                self.dead_letter_url.clone(),
            ),
            ("WEBHOOKS_ALLOW_PRIVATE_NETWORKS".to_owned(), "true".into()),
            ("EVENTS_TABLE".to_owned(), self.events_table.clone()),
            ("AWS_ENDPOINT_URL".to_owned(), ctx.proxy.endpoint()),
        ]
    }
}

pub async fn run(ctx: &Context) -> Result<Row, String> {
    let world = world(ctx).await?;
    let mut expected: BTreeMap<String, bool> = BTreeMap::new();
    for n in 0..ctx.events.div_ceil(2) {
        expected.extend(world.add_event(ctx, n, true, n.is_multiple_of(4)).await?);
    }
    let World {
        current,
        hits,
        queue_url,
        dead_letter_url,
        store,
        ..
    } = &world;
    let env = world.env(ctx);
    let mut function = Function::start(&ctx.bin_dir, &ctx.logs, NAME, env).await?;
    ctx.proxy
        .inject(ctx.share, &[Service::DynamoDb, Service::Sqs]);
    let before = ctx.proxy.counts();
    let mut invocations = 0u64;
    let mut answered = 0u64;
    let mut failed_invocations = 0u64;
    let mut reported_failed = 0u64;
    // Delivery id → the invocation after which its dead-letter message was first seen.
    let mut dead_lettered: BTreeMap<String, usize> = BTreeMap::new();
    let mut dead_letter_messages = 0u64;
    let started = Instant::now();
    let mut drained = false;
    while started.elapsed() < DRAIN_LIMIT {
        let batch = receive(ctx, queue_url, 10).await?;
        if batch.is_empty() {
            if queue_empty(ctx, queue_url).await? {
                drained = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        invocations += 1;
        current.store(invocations as usize, Ordering::SeqCst);
        let records: Vec<Value> = batch.iter().map(record).collect();
        let event = Bytes::from(json!({ "Records": records }).to_string());
        let failed: BTreeSet<String> = match function.invoke(event, INVOKE_LIMIT).await {
            Outcome::Answer(body) => {
                answered += 1;
                let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                answer["batchItemFailures"]
                    .as_array()
                    .map(|f| {
                        f.iter()
                            .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default()
            }
            Outcome::Failed(_) => {
                failed_invocations += 1;
                batch.iter().filter_map(|m| m.message_id.clone()).collect()
            }
        };
        reported_failed += failed.len() as u64;
        // What Lambda's poller does with the rest: deletes them.
        for message in &batch {
            if failed.contains(message.message_id().unwrap_or_default()) {
                continue;
            }
            ctx.sqs
                .delete_message()
                .queue_url(queue_url)
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .send()
                .await
                .map_err(|e| format!("delete message: {e:?}"))?;
        }
        // The dead-letter queue, read after every invocation: the order against the receiver's
        // hits is exact (one invocation at a time).
        loop {
            let letters = receive(ctx, dead_letter_url, 10).await?;
            if letters.is_empty() {
                break;
            }
            for letter in letters {
                dead_letter_messages += 1;
                let body: Value =
                    serde_json::from_str(letter.body().unwrap_or_default()).unwrap_or(Value::Null);
                if let Some(delivery) = body["delivery_id"].as_str() {
                    dead_lettered
                        .entry(delivery.to_owned())
                        .or_insert(invocations as usize);
                }
                ctx.sqs
                    .delete_message()
                    .queue_url(dead_letter_url)
                    .receipt_handle(letter.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .map_err(|e| format!("delete dead letter: {e:?}"))?;
            }
        }
    }
    ctx.proxy.inject(0.0, &[]);
    let faults = ctx.proxy.counts().since(&before);
    let restarts = function.restarts;
    function.stop().await;

    // The outcome, per delivery: its record (read directly) and the receiver's log.
    let hits = std::mem::take(&mut hits.lock().expect("not poisoned").by_id);
    let mut lost = 0u64;
    let mut delivered = 0u64;
    let mut duplicates = 0u64;
    let mut after_dead_letter = 0u64;
    let mut dead_letter_ok = 0u64;
    let mut states: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (delivery_id, ok) in &expected {
        let record = store
            .get_delivery(delivery_id)
            .await
            .map_err(|e| format!("get delivery: {e}"))?;
        let state = record.as_ref().map_or("missing", |d| d.state.as_str());
        *states.entry(state).or_default() += 1;
        let attempts = hits.get(delivery_id).cloned().unwrap_or_default();
        if *ok {
            let successes = attempts.iter().filter(|(_, ok)| *ok).count();
            let done = record
                .as_ref()
                .is_some_and(|d| d.state == DeliveryState::Delivered);
            if successes == 0 || !done {
                lost += 1;
            } else {
                delivered += 1;
            }
            if successes > 1 {
                duplicates += 1;
            }
        } else {
            let marked = record
                .as_ref()
                .is_some_and(|d| d.state == DeliveryState::Failed && d.dead_lettered);
            match dead_lettered.get(delivery_id) {
                Some(seen) if marked => {
                    dead_letter_ok += 1;
                    if attempts.iter().any(|(at, _)| at > seen) {
                        after_dead_letter += 1;
                    }
                }
                _ => lost += 1,
            }
        }
    }
    let unexpected_letters = dead_lettered
        .keys()
        .filter(|id| expected.get(*id) != Some(&false))
        .count();
    let ok_total = expected.values().filter(|ok| **ok).count();
    let failing_total = expected.len() - ok_total;

    let mut row = Row {
        name: format!("{NAME} (batches of ≤10 from the queue)"),
        faulted: "SQS, DynamoDB",
        requests: invocations,
        faults,
        answers_2xx: answered,
        answers_5xx: 0,
        failed_invocations,
        items: 0,
        acked_not_stored: 0,
        stored_twice: 0,
        never_acked: 0,
        never_acked_stored: 0,
        unattributed: 0,
        notes: Vec::new(),
        violations: Vec::new(),
        deliveries: Some(DeliveryCounts {
            total: expected.len() as u64,
            delivered,
            dead_lettered: dead_letter_ok,
            lost,
            after_dead_letter,
        }),
    };
    row.notes.push(format!(
        "{NAME}: {} deliveries ({ok_total} to a receiver answering 200, {failing_total} at their \
         last scheduled attempt to one answering 503); {delivered} delivered and recorded \
         `delivered`, {dead_letter_ok} dead-lettered (record `failed`, dead-lettered, and a \
         message in the dead-letter queue; {dead_letter_messages} dead-letter messages in all), \
         {lost} lost, {after_dead_letter} attempted after their dead-letter message, \
         {duplicates} delivered more than once (allowed: at least once, same `webhook-id`); \
         {reported_failed} messages reported failed and received again; final records {:?}; \
         queue {}",
        expected.len(),
        states,
        if drained {
            "drained".to_owned()
        } else {
            format!("not drained after {} s", DRAIN_LIMIT.as_secs())
        },
    ));
    if restarts > 0 {
        row.notes.push(format!(
            "{NAME}: the process was replaced {restarts} times (timeout or crash)"
        ));
    }
    if lost > 0 {
        row.violations.push(format!(
            "{NAME}: {lost} deliveries neither delivered nor dead-lettered"
        ));
    }
    if after_dead_letter > 0 {
        row.violations.push(format!(
            "{NAME}: {after_dead_letter} deliveries attempted after being dead-lettered"
        ));
    }
    if unexpected_letters > 0 {
        row.violations.push(format!(
            "{NAME}: {unexpected_letters} dead-letter messages for deliveries that should not fail"
        ));
    }
    Ok(row)
}

/// Up to `max` messages, received directly from moto (not through the proxy), with their
/// receive count as Lambda hands it over.
async fn receive(
    ctx: &Context,
    queue: &str,
    max: i32,
) -> Result<Vec<aws_sdk_sqs::types::Message>, String> {
    let output = ctx
        .sqs
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(max)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .map_err(|e| format!("receive: {e:?}"))?;
    Ok(output.messages.unwrap_or_default())
}

async fn queue_empty(ctx: &Context, queue: &str) -> Result<bool, String> {
    let attributes = ctx
        .sqs
        .get_queue_attributes()
        .queue_url(queue)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .map_err(|e| format!("queue attributes: {e:?}"))?;
    let attributes = attributes.attributes.unwrap_or_default();
    let number = |name: QueueAttributeName| -> u64 {
        attributes
            .get(&name)
            .and_then(|n| n.parse().ok())
            .unwrap_or_default()
    };
    Ok(number(QueueAttributeName::ApproximateNumberOfMessages)
        + number(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        + number(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        == 0)
}

/// A message as Lambda's SQS event carries it.
fn record(m: &aws_sdk_sqs::types::Message) -> Value {
    let attributes: serde_json::Map<String, Value> = m
        .attributes()
        .map(|a| {
            a.iter()
                .map(|(k, v)| (k.as_str().to_owned(), json!(v)))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "messageId": m.message_id(), "receiptHandle": m.receipt_handle(), "body": m.body(),
        "md5OfBody": m.md5_of_body(), "attributes": attributes,
        "messageAttributes": {}, "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:faults-deliveries",
        "awsRegion": "us-east-1",
    })
}

/// A dead-letter at risk, made to happen on purpose: one delivery at its last attempt to a
/// receiver that fails. moto applies the attempt's record (the delivery `failed`,
/// dead-lettered) but its answer is lost (the connection reset after forwarding), and the SDK
/// retries the conditional `TransactWriteItems`. With DynamoDB's `ClientRequestToken`
/// idempotency (`idempotency`), the retry gets the first one's success and the dead-letter
/// message is sent. Without it (moto's behaviour), the retry fails its version condition, the
/// function takes its own write for another worker's, deletes the message, and no dead-letter
/// message is ever sent. Returns what happened, and whether the dead-letter was lost.
pub async fn reproduce_lost_dead_letter(
    ctx: &Context,
    idempotency: bool,
) -> Result<(String, bool), String> {
    ctx.proxy.emulate_idempotency(idempotency);
    let world = world(ctx).await?;
    let made = world.add_event(ctx, 0, false, true).await?;
    let failing = made
        .iter()
        .find(|(_, ok)| !ok)
        .map(|(id, _)| id.clone())
        .ok_or("no failing delivery")?;
    let mut function = Function::start(&ctx.bin_dir, &ctx.logs, NAME, world.env(ctx)).await?;
    ctx.proxy.inject(0.0, &[]);
    let mut letters = 0;
    let mut answers = Vec::new();
    for round in 0..4 {
        let batch = receive(ctx, &world.queue_url, 10).await?;
        if batch.is_empty() {
            if queue_empty(ctx, &world.queue_url).await? {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        if round == 0 {
            ctx.proxy
                .arm("TransactWriteItems", Phase::After, Kind::Reset);
        }
        let records: Vec<Value> = batch.iter().map(record).collect();
        let event = Bytes::from(json!({ "Records": records }).to_string());
        let failed: BTreeSet<String> = match function.invoke(event, INVOKE_LIMIT).await {
            Outcome::Answer(body) => {
                let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                answers.push(answer.to_string());
                answer["batchItemFailures"]
                    .as_array()
                    .map(|f| {
                        f.iter()
                            .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default()
            }
            Outcome::Failed(e) => {
                answers.push(e);
                batch.iter().filter_map(|m| m.message_id.clone()).collect()
            }
        };
        for message in &batch {
            if !failed.contains(message.message_id().unwrap_or_default()) {
                ctx.sqs
                    .delete_message()
                    .queue_url(&world.queue_url)
                    .receipt_handle(message.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .map_err(|e| format!("delete message: {e:?}"))?;
            }
        }
        letters += receive(ctx, &world.dead_letter_url, 10).await?.len();
    }
    function.stop().await;
    ctx.proxy.emulate_idempotency(true);
    let record = world
        .store
        .get_delivery(&failing)
        .await
        .map_err(|e| format!("get delivery: {e}"))?;
    let marked = record
        .as_ref()
        .is_some_and(|d| d.state == DeliveryState::Failed && d.dead_lettered);
    let queued = !queue_empty(ctx, &world.queue_url).await?;
    let lost = marked && letters == 0 && !queued;
    let text = format!(
        "a delivery at its last attempt, receiver answering 503, its attempt record's \
         `TransactWriteItems` applied by moto and the answer lost (reset), {}: record {}, \
         {letters} dead-letter messages, its message {} → {}",
        if idempotency {
            "with DynamoDB's ClientRequestToken idempotency"
        } else {
            "WITHOUT ClientRequestToken idempotency (moto's behaviour)"
        },
        record.map_or("missing".to_owned(), |d| format!(
            "{} dead_lettered={} attempts={}",
            d.state.as_str(),
            d.dead_lettered,
            d.attempts
        )),
        if queued { "still queued" } else { "deleted" },
        if lost {
            "LOST: marked dead-lettered, never sent to the dead-letter queue"
        } else {
            "not lost"
        },
    );
    Ok((text, lost))
}
