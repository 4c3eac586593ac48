//! What happens to deliveries, whatever runs it: the fan-out (an event becomes one delivery per
//! matching subscription), one attempt (render, sign, send, log, decide), replay and the test
//! delivery. The AWS functions and the local server's worker call these with their stores; the
//! clock and the jitter's randomness are parameters, so that the whole retry schedule is
//! tested without waiting.
//!
//! An attempt is recorded with a write conditional on the version of the delivery it started
//! from ([`DeliveryStore::record_attempt`]): of two workers that got the same delivery (an SQS
//! message received twice, a sweep that re-enqueued it), one records and the other gets
//! [`AttemptOutcome::Conflict`]. The receiver may then have seen the message twice, with the
//! same `webhook-id`: delivery is at least once.

use crate::filter::matching;
use crate::model::Subscription;
use crate::net::{Attempt, Sender};
use crate::schedule::{next_delay, Verdict};
use crate::signature::webhook_id;
use crate::store::{
    AttemptRecord, Delivery, DeliveryCreate, DeliveryQueue, DeliveryState, DeliveryStore,
    DeliveryUpdate, PageRequest, StoreError, SubscriptionHealth, SubscriptionStore,
};
use crate::template::render_body;
use crate::view::EventView;
use chrono::{DateTime, TimeDelta, Utc};
use hub_core::event::{Event, Source};
use hub_core::metrics::{DeliveryOutcome, Metrics};
use hub_core::store::EventLookup;
use rand::RngCore;
use std::str::FromStr;

/// The most deliveries one replay "since" re-queues; the caller asks again for more.
pub const MAX_REPLAY: usize = 1000;
/// How often a replay re-reads a delivery that changed under it before giving up.
const REPLAY_RETRIES: usize = 3;

/// The deliveries an event gets: one per enabled subscription that matches it, due at `now`.
/// Pure, so that the local server can run it inside the transaction that stores the event.
pub fn plan_deliveries(
    subscriptions: &[Subscription],
    event: &Event,
    now: DateTime<Utc>,
) -> Vec<Delivery> {
    if subscriptions.is_empty() {
        return Vec::new();
    }
    let view = EventView::from_event(event);
    matching(subscriptions, &view)
        .into_iter()
        .map(|subscription| Delivery::new(&subscription.name, event, now))
        .collect()
}

/// One delivery of a fan-out, and whether this fan-out created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanOut {
    pub delivery: Delivery,
    /// [`DeliveryCreate::Exists`] when an earlier fan-out of the same event (a stream replay)
    /// created it: it is not created twice, but the caller may enqueue it again (an attempt of
    /// a delivery that is no longer pending does nothing).
    pub outcome: DeliveryCreate,
}

/// Matches `event` against every subscription and creates one delivery per match, each with a
/// conditional create keyed by its `webhook-id`.
pub async fn fan_out<S>(
    store: &S,
    event: &Event,
    now: DateTime<Utc>,
) -> Result<Vec<FanOut>, StoreError>
where
    S: SubscriptionStore + DeliveryStore,
{
    let subscriptions = store.list_subscriptions().await?;
    let mut fanned = Vec::new();
    for delivery in plan_deliveries(&subscriptions, event, now) {
        let outcome = store.create_delivery(&delivery).await?;
        fanned.push(FanOut { delivery, outcome });
    }
    Ok(fanned)
}

/// Why a delivery failed for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// The subscription was deleted.
    SubscriptionDeleted,
    /// The subscription is disabled (by its owner, a 410, or five days of failures).
    SubscriptionDisabled,
    /// The event is no longer stored (its retention passed).
    EventGone,
    /// The body template failed on this event, or the request could not be built: a retry
    /// would fail the same way.
    Unsendable,
    /// The receiver answered `410 Gone` (and the subscription was disabled).
    Gone,
    /// Every attempt of the schedule failed: dead-lettered.
    Exhausted,
}

impl FailureReason {
    pub fn message(self) -> &'static str {
        match self {
            FailureReason::SubscriptionDeleted => "subscription deleted",
            FailureReason::SubscriptionDisabled => "subscription disabled",
            FailureReason::EventGone => "event no longer stored",
            FailureReason::Unsendable => "request could not be sent",
            FailureReason::Gone => "receiver answered 410 Gone",
            FailureReason::Exhausted => "retry schedule exhausted",
        }
    }
}

/// What [`attempt`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// No such delivery (expired, or never created): nothing to do.
    Missing,
    /// Already delivered or failed: nothing to do.
    NotPending(DeliveryState),
    /// Pending, but its next attempt is later.
    NotDue { next_attempt_at: DateTime<Utc> },
    /// Another worker changed the delivery meanwhile (and recorded its own attempt); this
    /// attempt was not recorded.
    Conflict,
    Delivered {
        delivery: Delivery,
        attempt: Attempt,
    },
    /// Failed, to be tried again at `delivery.next_attempt_at`.
    Retrying {
        delivery: Delivery,
        attempt: Attempt,
    },
    /// Failed for good; `delivery.dead_lettered` when the schedule was exhausted. `attempt` is
    /// `None` when nothing was tried (the subscription or the event is gone).
    Failed {
        delivery: Delivery,
        attempt: Option<Attempt>,
        reason: FailureReason,
    },
}

/// One attempt of delivery `delivery_id` at `now`: loads it and does nothing unless it is pending
/// and due; loads its subscription and event; renders, signs and sends; records the attempt;
/// decides by the outcome (2xx delivered, 410 disables the subscription, a template error fails
/// at once, anything else retries on the schedule until it is exhausted and dead-lettered); and
/// updates the subscription's failure streak.
pub async fn attempt<S, E>(
    store: &S,
    events: &E,
    sender: &Sender,
    delivery_id: &str,
    now: DateTime<Utc>,
    rng: &mut (impl RngCore + Send),
) -> Result<AttemptOutcome, StoreError>
where
    S: SubscriptionStore + DeliveryStore,
    E: EventLookup,
{
    let Some(delivery) = store.get_delivery(delivery_id).await? else {
        return Ok(AttemptOutcome::Missing);
    };
    if delivery.state != DeliveryState::Pending {
        return Ok(AttemptOutcome::NotPending(delivery.state));
    }
    if delivery.next_attempt_at > now {
        return Ok(AttemptOutcome::NotDue {
            next_attempt_at: delivery.next_attempt_at,
        });
    }
    let subscription = match store.get_subscription(&delivery.subscription).await? {
        None => return give_up(store, delivery, FailureReason::SubscriptionDeleted, now).await,
        Some(s) if s.disabled => {
            return give_up(store, delivery, FailureReason::SubscriptionDisabled, now).await
        }
        Some(s) => s,
    };
    let event = match Source::from_str(&delivery.source) {
        Ok(source) => events.get_event(source, &delivery.event_id).await?,
        Err(_) => None,
    };
    let Some(event) = event else {
        return give_up(store, delivery, FailureReason::EventGone, now).await;
    };
    let view = EventView::from_event(&event);
    let sent = match render_body(&subscription, &view) {
        Ok(body) => sender.send(&subscription, &delivery.id, &body, now).await,
        Err(error) => Attempt::template_failed(now, &error),
    };
    let verdict = sent.verdict();

    let mut next = delivery.clone();
    next.attempts += 1;
    next.round_attempts += 1;
    next.updated_at = now;
    next.last_status = sent.status;
    next.last_error = sent.error.as_ref().map(ToString::to_string);
    let reason = match verdict {
        Verdict::Delivered => {
            next.state = DeliveryState::Delivered;
            None
        }
        Verdict::Gone => Some(FailureReason::Gone),
        Verdict::Failed => Some(FailureReason::Unsendable),
        Verdict::Retry => match next_delay(next.round_attempts, sent.retry_after(), rng) {
            Some(delay) => {
                next.next_attempt_at = now + TimeDelta::from_std(delay).unwrap_or(TimeDelta::MAX);
                None
            }
            None => {
                next.dead_lettered = true;
                Some(FailureReason::Exhausted)
            }
        },
    };
    if reason.is_some() {
        next.state = DeliveryState::Failed;
    }
    let record = AttemptRecord {
        delivery_id: delivery.id.clone(),
        number: next.attempts,
        attempt: sent.clone(),
        expires_at: delivery.expires_at,
    };
    if store
        .record_attempt(&next, delivery.version, &record)
        .await?
        == DeliveryUpdate::Conflict
    {
        tracing::info!(delivery = %delivery.id, "attempt raced another worker; not recorded");
        return Ok(AttemptOutcome::Conflict);
    }
    next.version = delivery.version + 1;
    update_health(store, &subscription, verdict, now).await?;
    tracing::info!(
        delivery = %next.id,
        subscription = %next.subscription,
        source = %next.source,
        event_id = %next.event_id,
        attempt = next.attempts,
        status = ?sent.status,
        ?verdict,
        "delivery attempt"
    );
    // Counted once recorded: a conflicting worker's attempt is the other worker's to count.
    let counted = match reason {
        None if next.state == DeliveryState::Delivered => DeliveryOutcome::Delivered,
        None => DeliveryOutcome::Retrying,
        Some(_) => DeliveryOutcome::Failed,
    };
    Metrics::global().delivery(counted, std::time::Duration::from_millis(sent.latency_ms));
    Ok(match reason {
        None if next.state == DeliveryState::Delivered => AttemptOutcome::Delivered {
            delivery: next,
            attempt: sent,
        },
        None => AttemptOutcome::Retrying {
            delivery: next,
            attempt: sent,
        },
        Some(reason) => AttemptOutcome::Failed {
            delivery: next,
            attempt: Some(sent),
            reason,
        },
    })
}

/// Fails a delivery without an attempt.
async fn give_up<S: DeliveryStore>(
    store: &S,
    delivery: Delivery,
    reason: FailureReason,
    now: DateTime<Utc>,
) -> Result<AttemptOutcome, StoreError> {
    let mut failed = delivery.clone();
    failed.state = DeliveryState::Failed;
    failed.last_error = Some(reason.message().to_owned());
    failed.updated_at = now;
    if store.update_delivery(&failed, delivery.version).await? == DeliveryUpdate::Conflict {
        return Ok(AttemptOutcome::Conflict);
    }
    failed.version = delivery.version + 1;
    tracing::info!(delivery = %failed.id, subscription = %failed.subscription, reason = reason.message(), "delivery failed");
    Ok(AttemptOutcome::Failed {
        delivery: failed,
        attempt: None,
        reason,
    })
}

/// Applies a verdict to the subscription's failure streak (and disables it on 410 or after
/// five failing days). It re-reads the subscription so that a PUT made during the attempt is
/// not overwritten, and writes only the health fields, only when they change.
async fn update_health<S: SubscriptionStore>(
    store: &S,
    seen: &Subscription,
    verdict: Verdict,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    // The common case, a success on a healthy subscription, costs no read or write.
    if verdict == Verdict::Delivered && seen.failing_since.is_none() {
        return Ok(());
    }
    if verdict == Verdict::Failed {
        return Ok(());
    }
    let Some(mut current) = store.get_subscription(&seen.name).await? else {
        return Ok(());
    };
    let before = SubscriptionHealth::of(&current);
    current.record_verdict(verdict, now);
    let after = SubscriptionHealth::of(&current);
    if after != before {
        store
            .save_subscription_health(&current.name, &after)
            .await?;
    }
    Ok(())
}

/// What to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayTarget {
    /// One delivery, whatever its state.
    Delivery(String),
    /// Every failed delivery of the subscription created at or after this time (at most
    /// [`MAX_REPLAY`] per call).
    FailedSince(DateTime<Utc>),
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no such delivery for this subscription")]
    UnknownDelivery,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Puts deliveries back to pending, due at `now`, with a fresh retry schedule, under the SAME
/// id (so receivers that already have the message can tell), then tells `queue`. Returns the
/// replayed deliveries.
pub async fn replay<S, Q>(
    store: &S,
    queue: &Q,
    subscription: &str,
    target: &ReplayTarget,
    now: DateTime<Utc>,
) -> Result<Vec<Delivery>, ReplayError>
where
    S: DeliveryStore,
    Q: DeliveryQueue,
{
    let mut replayed = Vec::new();
    match target {
        ReplayTarget::Delivery(id) => {
            match store.get_delivery(id).await? {
                Some(d) if d.subscription == subscription => {
                    if let Some(d) = requeue(store, d, now).await? {
                        replayed.push(d);
                    }
                }
                _ => return Err(ReplayError::UnknownDelivery),
            };
        }
        ReplayTarget::FailedSince(since) => {
            let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
            'pages: loop {
                let found = store.failed_deliveries(subscription, *since, &page).await?;
                for d in found.deliveries {
                    if replayed.len() >= MAX_REPLAY {
                        break 'pages;
                    }
                    if let Some(d) = requeue(store, d, now).await? {
                        replayed.push(d);
                    }
                }
                match found.next {
                    Some(next) => page.cursor = Some(next),
                    None => break,
                }
            }
        }
    }
    if !replayed.is_empty() {
        let ids: Vec<String> = replayed.iter().map(|d| d.id.clone()).collect();
        // Best effort: the replayed deliveries are due, and the sweep or the worker's poll
        // finds them anyway.
        if let Err(error) = queue.deliveries_due(&ids).await {
            tracing::warn!(%error, count = ids.len(), "replayed deliveries not queued; the sweep will find them");
        }
    }
    Ok(replayed)
}

/// Makes one delivery pending and due, re-reading it when another writer changed it meanwhile.
async fn requeue<S: DeliveryStore>(
    store: &S,
    mut delivery: Delivery,
    now: DateTime<Utc>,
) -> Result<Option<Delivery>, StoreError> {
    for _ in 0..REPLAY_RETRIES {
        let mut again = delivery.clone();
        again.state = DeliveryState::Pending;
        again.next_attempt_at = now;
        again.round_attempts = 0;
        again.dead_lettered = false;
        again.updated_at = now;
        if store.update_delivery(&again, delivery.version).await? == DeliveryUpdate::Updated {
            again.version = delivery.version + 1;
            tracing::info!(delivery = %again.id, subscription = %again.subscription, "delivery replayed");
            return Ok(Some(again));
        }
        match store.get_delivery(&delivery.id).await? {
            Some(fresh) => delivery = fresh,
            None => return Ok(None),
        }
    }
    Err(StoreError::Unavailable(format!(
        "delivery {} kept changing during the replay",
        delivery.id
    )))
}

/// `POST /webhooks/{name}/test`: sends [`EventView::sample`] to the subscription now, signed as
/// any delivery, and returns its `webhook-id` and the attempt. Nothing is stored and the
/// failure streak is not touched: this is the owner checking the endpoint.
pub async fn test_delivery(
    sender: &Sender,
    subscription: &Subscription,
    now: DateTime<Utc>,
) -> (String, Attempt) {
    let view = EventView::sample(&subscription.name, now);
    let msg_id = webhook_id(&subscription.name, &view.source, &view.id);
    let attempt = match render_body(subscription, &view) {
        Ok(body) => sender.send(subscription, &msg_id, &body, now).await,
        Err(error) => Attempt::template_failed(now, &error),
    };
    (msg_id, attempt)
}

#[cfg(test)]
mod tests;
