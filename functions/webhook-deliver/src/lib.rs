//! The delivery of outbound webhooks on AWS (issue 17). One SQS message per delivery id:
//!
//! - Each message is one attempt ([`webhooks::engine::attempt`]: render, sign, send within
//!   15 s, log the attempt, decide). The attempt count and the schedule live in the delivery
//!   record, never in SQS's receive count.
//! - On a retryable failure the message is hidden until the next attempt is due
//!   (`ChangeMessageVisibility`, at most [`MAX_VISIBILITY`] per receive) and reported failed, so
//!   SQS keeps it; a message that comes back before its delivery is due (a gap longer than one
//!   receive allows, a duplicate) is hidden again for the rest of the wait.
//! - When the schedule is exhausted the delivery is failed and a record of it sent to the
//!   dead-letter queue.
//! - The scheduled sweep (`{"sweep": true}`) re-queues deliveries still pending
//!   [`SWEEP_GRACE`] after they were due: a message lost between a fan-out and the queue, or a
//!   replay whose queueing failed.
//!
//! Delivery is at least once: a receiver may see a message again (same `webhook-id`) after a
//! timeout, a duplicate SQS message or a replay.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{DateTime, TimeDelta, Utc};
use hub_core::clock::{Clock, SystemClock};
use hub_core::config::{events_table, ConfigError};
use hub_core::setup::Setup;
use hub_core::store::{DynamoStore, EventLookup};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Deserialize;
use std::future::Future;
use std::time::Duration;
use webhooks::dynamo::sqs::{SqsQueue, DEAD_LETTER_VARIABLE, QUEUE_VARIABLE};
use webhooks::dynamo::DynamoWebhookStore;
use webhooks::engine::{attempt, AttemptOutcome};
use webhooks::store::{Delivery, DeliveryState, DeliveryStore, StoreError, SubscriptionStore};
use webhooks::{Sender, SenderConfig};

pub use hub_core::lambda::EventHandler;
pub use webhooks::dynamo::sqs::MAX_VISIBILITY;

/// How long past its due time a pending delivery is left to its own message before the sweep
/// queues it again: a hidden message becomes visible at the due time and is received within
/// seconds, so only a lost one is this late.
pub const SWEEP_GRACE: TimeDelta = TimeDelta::minutes(5);
/// The most deliveries one sweep re-queues; the next sweep takes the rest.
pub const SWEEP_LIMIT: u32 = 1000;
/// Delivery ids are `msg_` and 32 hex digits; anything much longer is not ours.
const MAX_ID_BYTES: usize = 100;

/// The queues the deliver function uses: hiding a received delivery message, queueing ids again
/// (the sweep), and dead-lettering an exhausted delivery.
pub trait Queues: Send + Sync {
    fn hide(
        &self,
        receipt_handle: &str,
        delay: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn requeue(&self, ids: &[String]) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn dead_letter(&self, body: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The delivery queue and the dead-letter queue on SQS.
pub struct SqsQueues {
    pub deliveries: SqsQueue,
    pub dead_letters: SqsQueue,
}

impl Queues for SqsQueues {
    async fn hide(&self, receipt_handle: &str, delay: Duration) -> Result<(), StoreError> {
        self.deliveries.hide(receipt_handle, delay).await
    }
    async fn requeue(&self, ids: &[String]) -> Result<(), StoreError> {
        self.deliveries.send_all(ids).await
    }
    async fn dead_letter(&self, body: &str) -> Result<(), StoreError> {
        self.dead_letters.send(body).await
    }
}

/// What the function is invoked with: a batch of the delivery queue, or the schedule's
/// `{"sweep": true}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum DeliverInput {
    Queue(SqsEvent),
    Sweep(SweepRequest),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepRequest {
    pub sweep: bool,
}

pub struct DeliverFunction<S, E, Q, C = SystemClock> {
    store: S,
    events: E,
    sender: Sender,
    queues: Q,
    clock: C,
}

/// The Lambda function's: `WEBHOOKS_TABLE`, `EVENTS_TABLE`, `WEBHOOKS_QUEUE_URL`,
/// `WEBHOOKS_DEAD_LETTER_QUEUE_URL`, and the sender's `WEBHOOKS_PROXY_URLS` and
/// `WEBHOOKS_ALLOW_PRIVATE_NETWORKS`.
pub async fn build(
    setup: &Setup,
) -> Result<DeliverFunction<DynamoWebhookStore, DynamoStore, SqsQueues>, ConfigError> {
    let sender = Sender::new(SenderConfig::from_vars(setup)?);
    let events = DynamoStore::new(
        hub_core::aws::dynamodb_client(setup.sdk().await?),
        events_table(setup)?,
    );
    let queues = SqsQueues {
        deliveries: SqsQueue::from_setup(setup, QUEUE_VARIABLE).await?,
        dead_letters: SqsQueue::from_setup(setup, DEAD_LETTER_VARIABLE).await?,
    };
    Ok(DeliverFunction::new(
        DynamoWebhookStore::from_setup(setup).await?,
        events,
        sender,
        queues,
        SystemClock,
    ))
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageOutcome {
    /// Done with: the message is deleted.
    Done(&'static str),
    /// Hidden until the delivery is due again; the message stays.
    Hidden(Duration),
    /// Could not be handled now (store or queue unavailable); the message comes back after the
    /// queue's visibility timeout.
    Failed(String),
}

impl<S, E, Q, C> DeliverFunction<S, E, Q, C>
where
    S: SubscriptionStore + DeliveryStore,
    E: EventLookup,
    Q: Queues,
    C: Clock,
{
    pub fn new(store: S, events: E, sender: Sender, queues: Q, clock: C) -> Self {
        DeliverFunction {
            store,
            events,
            sender,
            queues,
            clock,
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// One invocation.
    pub async fn handle(&self, input: DeliverInput) -> Result<SqsBatchResponse, StoreError> {
        match input {
            DeliverInput::Queue(batch) => Ok(self.batch(&batch).await),
            DeliverInput::Sweep(SweepRequest { sweep: true }) => {
                self.sweep().await?;
                Ok(SqsBatchResponse::default())
            }
            DeliverInput::Sweep(SweepRequest { sweep: false }) => Ok(SqsBatchResponse::default()),
        }
    }

    /// A batch of the delivery queue, its messages attempted concurrently: every message that
    /// is not done is reported, so that SQS keeps it.
    pub async fn batch(&self, batch: &SqsEvent) -> SqsBatchResponse {
        let outcomes =
            futures::future::join_all(batch.records.iter().map(|m| self.message(m))).await;
        let mut response = SqsBatchResponse::default();
        for (message, outcome) in batch.records.iter().zip(outcomes) {
            if !matches!(outcome, MessageOutcome::Done(_)) {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message.message_id.clone().unwrap_or_default();
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    /// One message: one attempt of its delivery, if due.
    pub async fn message(&self, message: &SqsMessage) -> MessageOutcome {
        let id = message.body.as_deref().unwrap_or_default().trim();
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            tracing::warn!(
                message = message.message_id.as_deref().unwrap_or_default(),
                "not a delivery id; dropped"
            );
            return MessageOutcome::Done("not a delivery id");
        }
        let now = self.clock.now();
        let mut rng = StdRng::from_os_rng();
        let outcome =
            match attempt(&self.store, &self.events, &self.sender, id, now, &mut rng).await {
                Ok(outcome) => outcome,
                Err(error) => {
                    tracing::warn!(delivery = id, %error, "attempt not made; message retried");
                    return MessageOutcome::Failed(error.to_string());
                }
            };
        match outcome {
            AttemptOutcome::Missing => MessageOutcome::Done("no such delivery"),
            // A dead-lettered delivery whose message is back: the dead-letter send may have
            // failed after the delivery was marked failed. And a conflict may be our own write:
            // one that landed, whose answer was lost, and whose retry by the SDK then failed
            // the version check (DynamoDB's ClientRequestToken hides that for 10 minutes, not
            // for ever; RELIABILITY.md, injected faults). Either way the stored delivery says
            // what happened: a dead-lettered one gets its dead-letter message, at least once.
            AttemptOutcome::NotPending(DeliveryState::Failed) | AttemptOutcome::Conflict => {
                match self.store.get_delivery(id).await {
                    Ok(Some(delivery))
                        if delivery.state == DeliveryState::Failed && delivery.dead_lettered =>
                    {
                        self.dead_letter(&delivery, now).await
                    }
                    Ok(_) if matches!(outcome, AttemptOutcome::Conflict) => {
                        MessageOutcome::Done("another worker recorded this attempt")
                    }
                    Ok(_) => MessageOutcome::Done("already failed"),
                    Err(error) => MessageOutcome::Failed(error.to_string()),
                }
            }
            AttemptOutcome::NotPending(_) => MessageOutcome::Done("already delivered"),
            AttemptOutcome::NotDue { next_attempt_at } => {
                self.hide_until(message, id, next_attempt_at, now).await
            }
            AttemptOutcome::Delivered { .. } => MessageOutcome::Done("delivered"),
            AttemptOutcome::Retrying { delivery, .. } => {
                self.hide_until(message, id, delivery.next_attempt_at, now)
                    .await
            }
            AttemptOutcome::Failed { delivery, .. } if delivery.dead_lettered => {
                self.dead_letter(&delivery, now).await
            }
            AttemptOutcome::Failed { .. } => MessageOutcome::Done("failed"),
        }
    }

    async fn hide_until(
        &self,
        message: &SqsMessage,
        id: &str,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> MessageOutcome {
        let delay = (due - now).to_std().unwrap_or(Duration::ZERO);
        let delay = delay.min(MAX_VISIBILITY);
        let Some(receipt) = message.receipt_handle.as_deref() else {
            return MessageOutcome::Failed("message without a receipt handle".into());
        };
        match self.queues.hide(receipt, delay).await {
            Ok(()) => MessageOutcome::Hidden(delay),
            Err(error) => {
                // The message comes back after the queue's visibility timeout, and is hidden
                // then for what is left of the wait.
                tracing::warn!(delivery = id, %error, "message not hidden");
                MessageOutcome::Failed(error.to_string())
            }
        }
    }

    async fn dead_letter(&self, delivery: &Delivery, now: DateTime<Utc>) -> MessageOutcome {
        let body = serde_json::json!({
            "delivery_id": delivery.id,
            "subscription": delivery.subscription,
            "source": delivery.source,
            "event_id": delivery.event_id,
            "attempts": delivery.attempts,
            "last_status": delivery.last_status,
            "last_error": delivery.last_error,
            "created_at": delivery.created_at,
            "dead_lettered_at": now,
        })
        .to_string();
        match self.queues.dead_letter(&body).await {
            Ok(()) => {
                tracing::warn!(
                    delivery = %delivery.id,
                    subscription = %delivery.subscription,
                    attempts = delivery.attempts,
                    "delivery dead-lettered"
                );
                MessageOutcome::Done("dead-lettered")
            }
            Err(error) => {
                tracing::error!(delivery = %delivery.id, %error, "dead-letter send failed; retried");
                MessageOutcome::Failed(error.to_string())
            }
        }
    }

    /// Queues again every delivery pending [`SWEEP_GRACE`] past its due time (at most
    /// [`SWEEP_LIMIT`]); returns their ids.
    pub async fn sweep(&self) -> Result<Vec<String>, StoreError> {
        let now = self.clock.now();
        let overdue = self
            .store
            .due_deliveries(now - SWEEP_GRACE, SWEEP_LIMIT)
            .await?;
        // The backlog alarm's metric: how long the oldest delivery past its grace has been due
        // (zero when none is).
        let oldest = overdue
            .iter()
            .map(|d| d.next_attempt_at)
            .min()
            .and_then(|at| (now - at).to_std().ok())
            .unwrap_or_default();
        hub_core::metrics::Metrics::global().oldest_pending_delivery(oldest);
        let ids: Vec<String> = overdue.into_iter().map(|d| d.id).collect();
        if !ids.is_empty() {
            self.queues.requeue(&ids).await?;
            tracing::warn!(count = ids.len(), "overdue deliveries queued again");
        }
        Ok(ids)
    }
}

impl<S, E, Q, C> EventHandler<DeliverInput> for DeliverFunction<S, E, Q, C>
where
    S: SubscriptionStore + DeliveryStore + 'static,
    E: EventLookup + 'static,
    Q: Queues + 'static,
    C: Clock + 'static,
{
    type Response = SqsBatchResponse;

    async fn handle(&self, input: DeliverInput) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        DeliverFunction::handle(self, input).await.map_err(|error| {
            tracing::error!(%error, "sweep failed");
            Box::new(error) as lambda_runtime::Error
        })
    }
}

#[cfg(test)]
mod tests;
