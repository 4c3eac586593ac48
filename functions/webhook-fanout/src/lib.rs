//! The fan-out of outbound webhooks on AWS (issue 17): reads the events table's stream, and for
//! every stored event writes one delivery per matching subscription (a conditional create keyed
//! by the delivery's `webhook-id`, so a stream replay creates no second delivery) and sends the
//! ids of the deliveries it created to the SQS delivery queue. It never calls a subscriber: a
//! dead endpoint must never hold up a stream shard; the deliver function does the sending.
//!
//! Failures are reported per record (`ReportBatchItemFailures`): the first record that could not
//! be fanned out is reported, and Lambda retries the shard from it (records before it are done).
//! Records that are not stored events (other items of the table, removals, updates) are skipped:
//! the event source mapping's filter already drops them on AWS.

use aws_lambda_events::event::dynamodb::{Event as StreamEvent, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use chrono::{DateTime, Utc};
use hub_core::clock::{Clock, SystemClock};
use hub_core::config::ConfigError;
use hub_core::event::{parse_time, Event, Source};
use hub_core::setup::Setup;
use serde_json::Value;
use std::str::FromStr;
use webhooks::dynamo::sqs::{SqsQueue, QUEUE_VARIABLE};
use webhooks::dynamo::DynamoWebhookStore;
use webhooks::engine::plan_deliveries;
use webhooks::store::{
    DeliveryCreate, DeliveryQueue, DeliveryStore, StoreError, SubscriptionStore,
};

pub use hub_core::lambda::EventHandler;

/// The fan-out with its stores: the subscriptions and deliveries, the delivery queue, a clock.
pub struct FanOutFunction<S, Q, C = SystemClock> {
    store: S,
    queue: Q,
    clock: C,
}

/// The Lambda function's: `WEBHOOKS_TABLE` and `WEBHOOKS_QUEUE_URL`.
pub async fn build(
    setup: &Setup,
) -> Result<FanOutFunction<DynamoWebhookStore, SqsQueue>, ConfigError> {
    Ok(FanOutFunction::new(
        DynamoWebhookStore::from_setup(setup).await?,
        SqsQueue::from_setup(setup, QUEUE_VARIABLE).await?,
        SystemClock,
    ))
}

/// Why one stream record was not fanned out.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A stored event whose image this code cannot read: retried (bounded), then sent to the
    /// on-failure destination, so that it is seen rather than silently dropped.
    #[error("unreadable event image: {0}")]
    Unreadable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one record came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Not a stored event (another kind of item, or not an insert).
    Skipped,
    /// Fanned out: the ids of the deliveries this call created (and queued), and how many
    /// matched in all (some may exist from an earlier, replayed, fan-out).
    FannedOut {
        created: Vec<String>,
        matched: usize,
    },
}

impl<S, Q, C> FanOutFunction<S, Q, C>
where
    S: SubscriptionStore + DeliveryStore,
    Q: DeliveryQueue,
    C: Clock,
{
    pub fn new(store: S, queue: Q, clock: C) -> Self {
        FanOutFunction {
            store,
            queue,
            clock,
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// One batch of stream records, in order. Stops at the first failure and reports it: Lambda
    /// restarts the shard there (and bisects the batch), so later records are not lost.
    pub async fn handle(&self, batch: StreamEvent) -> DynamoDbEventResponse {
        let mut response = DynamoDbEventResponse::default();
        // One read of the subscriptions per batch, not per event: the partition holding them
        // is read by every batch of every shard.
        let subscriptions = match self.store.list_subscriptions().await {
            Ok(subscriptions) => subscriptions,
            Err(error) => {
                tracing::warn!(%error, "subscriptions unavailable; batch retried");
                if let Some(first) = batch.records.first() {
                    response.batch_item_failures.push(failure(first));
                }
                return response;
            }
        };
        for record in &batch.records {
            match self.record(&subscriptions, record).await {
                Ok(RecordOutcome::Skipped) => {}
                Ok(RecordOutcome::FannedOut { created, matched }) => {
                    if matched > 0 {
                        tracing::info!(
                            stream_event = %record.event_id,
                            matched,
                            created = created.len(),
                            "event fanned out"
                        );
                    }
                }
                Err(error) => {
                    tracing::error!(%error, stream_event = %record.event_id, "fan-out failed; record retried");
                    response.batch_item_failures.push(failure(record));
                    break;
                }
            }
        }
        response
    }

    /// Fans one record out against `subscriptions`.
    pub async fn record(
        &self,
        subscriptions: &[webhooks::Subscription],
        record: &EventRecord,
    ) -> Result<RecordOutcome, RecordError> {
        let Some(event) = stored_event(record)? else {
            return Ok(RecordOutcome::Skipped);
        };
        let planned = plan_deliveries(subscriptions, &event, self.clock.now());
        let matched = planned.len();
        // The conditional creates are independent: made at once, an event's fan-out costs one
        // round trip rather than one per subscription (BENCHMARKS.md, outbound webhooks on AWS).
        let creates = planned.iter().map(|d| self.store.create_delivery(d));
        let results = futures::future::join_all(creates).await;
        let mut created = Vec::new();
        for (delivery, result) in planned.into_iter().zip(results) {
            if result? == DeliveryCreate::Created {
                created.push(delivery.id);
            }
        }
        // Only deliveries this call created are queued: a replayed record queues nothing new.
        // Should the send fail, the record is retried, its deliveries then exist, and the
        // sweep (deliver function) queues them once they are overdue.
        if !created.is_empty() {
            self.queue.deliveries_due(&created).await?;
        }
        Ok(RecordOutcome::FannedOut { created, matched })
    }
}

impl<S, Q, C> EventHandler<StreamEvent> for FanOutFunction<S, Q, C>
where
    S: SubscriptionStore + DeliveryStore + 'static,
    Q: DeliveryQueue + 'static,
    C: Clock + 'static,
{
    type Response = DynamoDbEventResponse;

    /// Never an invocation error: every failure is a batch item failure.
    async fn handle(&self, batch: StreamEvent) -> Result<Self::Response, lambda_runtime::Error> {
        Ok(FanOutFunction::handle(self, batch).await)
    }
}

fn failure(record: &EventRecord) -> DynamoDbBatchItemFailure {
    let mut failure = DynamoDbBatchItemFailure::default();
    failure.item_identifier = record.change.sequence_number.clone();
    failure
}

/// The event a stream record stores, if it is the insert of an event item (the items that have
/// an `event_key`, see `hub_core::store::dynamo`); `None` for anything else.
pub fn stored_event(record: &EventRecord) -> Result<Option<Event>, RecordError> {
    if record.event_name != "INSERT" {
        return Ok(None);
    }
    let image = serde_json::to_value(&record.change.new_image)
        .map_err(|e| RecordError::Unreadable(e.to_string()))?;
    let Some(image) = image.as_object() else {
        return Ok(None);
    };
    if !image.contains_key("event_key") {
        return Ok(None);
    }
    event_from_image(image).map(Some)
}

/// The event item's attributes (see `hub_core::store::dynamo`, whose decoder is private) from a
/// stream image in DynamoDB JSON (`{"name": {"S": "..."}}`).
pub fn event_from_image(image: &serde_json::Map<String, Value>) -> Result<Event, RecordError> {
    let typed = |name: &str, kind: &str| -> Option<String> {
        image
            .get(name)
            .and_then(|v| v.get(kind))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let text = |name: &str| typed(name, "S");
    let required =
        |name: &str| text(name).ok_or_else(|| RecordError::Unreadable(format!("no {name}")));
    let time = |name: &str| -> Result<Option<DateTime<Utc>>, RecordError> {
        text(name)
            .map(|t| {
                parse_time(&t)
                    .ok_or_else(|| RecordError::Unreadable(format!("{name} is not RFC 3339")))
            })
            .transpose()
    };
    let source = Source::from_str(&required("source")?)
        .map_err(|e| RecordError::Unreadable(e.to_string()))?;
    Ok(Event {
        source,
        event_id: required("event_id")?,
        event_type: required("event_type")?,
        subject: required("subject")?,
        subject_alias: text("subject_alias"),
        sets_state: image.contains_key("state_key"),
        occurred_at: time("occurred_at")?,
        received_at: time("received_at")?
            .ok_or_else(|| RecordError::Unreadable("no received_at".into()))?,
        payload: required("payload")?,
        expires_at: typed("expires_at", "N").and_then(|n| n.parse().ok()),
    })
}

#[cfg(test)]
mod tests;
