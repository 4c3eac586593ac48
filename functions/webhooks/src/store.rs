//! Where subscriptions, deliveries and their attempts are kept, as small capabilities in the
//! style of `hub_core::store`: the engine ([`crate::engine`]) asks only for these traits, so the
//! same code runs against DynamoDB (the AWS functions), SQLite (the local server) and the
//! in-memory store of the tests ([`memory`], feature `test-util`). Every implementation passes the
//! same [`contract`] suite.
//!
//! Concurrency rules, which every implementation keeps:
//! - A subscription name is created once ([`SubscriptionCreate::NameTaken`] otherwise).
//! - A delivery id is created once ([`DeliveryCreate::Exists`] otherwise): a stream replay or a
//!   retried fan-out creates no second delivery, and the existing one is left as it is.
//! - A delivery changes only through [`DeliveryStore::update_delivery`] and
//!   [`DeliveryStore::record_attempt`], both conditional on the `version` the writer read; each
//!   successful change increments it. So two workers that race on one delivery never both
//!   record an attempt: the second gets [`DeliveryUpdate::Conflict`].

#[cfg(any(test, feature = "test-util"))]
pub mod contract;
/// Without feature `dynamodb`: a DynamoDB source that always fails, so that crates generic
/// over `WebhooksSource` compile for the local server without the AWS SDKs.
#[cfg(not(feature = "dynamodb"))]
pub mod dynamo_source;
#[cfg(any(test, feature = "test-util"))]
pub mod memory;

use crate::model::{DisabledReason, Subscription};
use crate::net::Attempt;
use crate::signature::webhook_id;
use chrono::{DateTime, Utc};
use hub_core::config::ConfigError;
use hub_core::event::Event;
use hub_core::setup::Setup;
use hub_core::store::Retained;
pub use hub_core::store::{PageRequest, StoreError};
use serde::{Deserialize, Serialize};
use std::future::Future;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its next attempt at `next_attempt_at`.
    Pending,
    /// A 2xx was received.
    Delivered,
    /// Given up: schedule exhausted (then `dead_lettered`), `410 Gone`, a template that fails on
    /// this event, or a subscription that is gone or disabled.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryState> {
        [
            DeliveryState::Pending,
            DeliveryState::Delivered,
            DeliveryState::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

/// One event on its way to one subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// [`webhook_id`]`(subscription, source, event_id)`: the `webhook-id` header, identical on
    /// every retry and replay, and the key that makes creation idempotent.
    pub id: String,
    pub subscription: String,
    /// The stored `source` of the event (`stack`, `s3`, ...).
    pub source: String,
    pub event_id: String,
    pub state: DeliveryState,
    /// Every attempt ever made, replays included; the number of the last recorded attempt.
    pub attempts: u32,
    /// Attempts since creation or the last replay: what the retry schedule counts.
    pub round_attempts: u32,
    /// When the next attempt is due (meaningful while pending).
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Failed because the retry schedule was exhausted.
    pub dead_lettered: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Unix seconds after which the store may delete the delivery and its attempts: the
    /// event's own `expires_at` (`EVENT_TTL_DAYS`), so both go together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Incremented by every change; the condition of every change.
    pub version: u64,
}

impl Delivery {
    /// A new pending delivery of `event` to `subscription`, due at `now`.
    pub fn new(subscription: &str, event: &Event, now: DateTime<Utc>) -> Delivery {
        let source = event.source.as_str();
        Delivery {
            id: webhook_id(subscription, source, &event.event_id),
            subscription: subscription.to_owned(),
            source: source.to_owned(),
            event_id: event.event_id.clone(),
            state: DeliveryState::Pending,
            attempts: 0,
            round_attempts: 0,
            next_attempt_at: now,
            created_at: now,
            updated_at: now,
            dead_lettered: false,
            last_status: None,
            last_error: None,
            expires_at: event.expires_at,
            version: 0,
        }
    }

    /// Pending and due at `now`.
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.state == DeliveryState::Pending && self.next_attempt_at <= now
    }
}

/// One logged attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub delivery_id: String,
    /// 1 for the first attempt; equals the delivery's `attempts` after it was recorded.
    pub number: u32,
    #[serde(flatten)]
    pub attempt: Attempt,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// A delivery with its attempts, oldest attempt first: one entry of the deliveries listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryWithAttempts {
    #[serde(flatten)]
    pub delivery: Delivery,
    pub attempts_log: Vec<AttemptRecord>,
}

/// One page of deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryPage<T> {
    pub deliveries: Vec<T>,
    /// Opaque cursor for the following page; `None` when this page is the last.
    pub next: Option<String>,
}

/// The fields of a subscription that delivery outcomes change; saving them leaves the rest
/// (what a PUT wrote meanwhile) alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionHealth {
    pub disabled: bool,
    pub disabled_reason: Option<DisabledReason>,
    pub failing_since: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl SubscriptionHealth {
    pub fn of(subscription: &Subscription) -> SubscriptionHealth {
        SubscriptionHealth {
            disabled: subscription.disabled,
            disabled_reason: subscription.disabled_reason,
            failing_since: subscription.failing_since,
            updated_at: subscription.updated_at,
        }
    }

    pub fn apply_to(&self, subscription: &mut Subscription) {
        subscription.disabled = self.disabled;
        subscription.disabled_reason = self.disabled_reason;
        subscription.failing_since = self.failing_since;
        subscription.updated_at = self.updated_at;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionCreate {
    Created,
    /// A subscription of that name exists; nothing was written.
    NameTaken,
}

/// Whether a change found its subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Yes,
    /// No subscription of that name; nothing was written.
    No,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryCreate {
    Created,
    /// A delivery with that id exists; it was left as it is.
    Exists,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryUpdate {
    Updated,
    /// The delivery is gone, or its version is not the expected one: someone else changed it.
    Conflict,
}

/// Subscriptions, by name.
pub trait SubscriptionStore: Send + Sync {
    /// Every subscription (with secrets), by name. Installations have tens, not thousands:
    /// the fan-out matches every event against all of them.
    fn list_subscriptions(
        &self,
    ) -> impl Future<Output = Result<Vec<Subscription>, StoreError>> + Send;

    fn get_subscription(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Subscription>, StoreError>> + Send;

    /// Stores a new subscription unless its name is taken.
    fn create_subscription(
        &self,
        subscription: &Subscription,
    ) -> impl Future<Output = Result<SubscriptionCreate, StoreError>> + Send;

    /// Replaces the whole subscription of that name, if it exists.
    fn replace_subscription(
        &self,
        subscription: &Subscription,
    ) -> impl Future<Output = Result<Found, StoreError>> + Send;

    /// Deletes the subscription. Its deliveries stay (and expire) for the log; pending ones fail
    /// at their next attempt.
    fn delete_subscription(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Found, StoreError>> + Send;

    /// Saves only the health fields of the subscription, if it exists.
    fn save_subscription_health(
        &self,
        name: &str,
        health: &SubscriptionHealth,
    ) -> impl Future<Output = Result<Found, StoreError>> + Send;
}

/// Deliveries and their attempts.
pub trait DeliveryStore: Send + Sync {
    /// Stores a new delivery unless its id exists (then nothing changes).
    fn create_delivery(
        &self,
        delivery: &Delivery,
    ) -> impl Future<Output = Result<DeliveryCreate, StoreError>> + Send;

    fn get_delivery(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<Delivery>, StoreError>> + Send;

    /// Writes `delivery` (with `version` = `expected_version + 1`, which the store sets) if the
    /// stored one still has `expected_version`.
    fn update_delivery(
        &self,
        delivery: &Delivery,
        expected_version: u64,
    ) -> impl Future<Output = Result<DeliveryUpdate, StoreError>> + Send;

    /// Atomically: appends `attempt` to the log and writes `delivery` as
    /// [`update_delivery`](Self::update_delivery) does, both or neither.
    fn record_attempt(
        &self,
        delivery: &Delivery,
        expected_version: u64,
        attempt: &AttemptRecord,
    ) -> impl Future<Output = Result<DeliveryUpdate, StoreError>> + Send;

    /// A subscription's deliveries, newest first (by `created_at`, then id), with their attempts.
    fn list_deliveries(
        &self,
        subscription: &str,
        page: &PageRequest,
    ) -> impl Future<Output = Result<DeliveryPage<DeliveryWithAttempts>, StoreError>> + Send;

    /// Deliveries of every subscription that are pending with `next_attempt_at <= now`, the
    /// longest overdue first, at most `limit`: what a worker or the sweep picks up.
    fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Delivery>, StoreError>> + Send;

    /// A subscription's failed deliveries created at or after `since`, newest first: what a
    /// replay "since" re-sends.
    fn failed_deliveries(
        &self,
        subscription: &str,
        since: DateTime<Utc>,
        page: &PageRequest,
    ) -> impl Future<Output = Result<DeliveryPage<Delivery>, StoreError>> + Send;
}

/// Told about deliveries that became due now (created by a fan-out, or replayed), so that they
/// are attempted without waiting for a poll: the SQS delivery queue on AWS, the worker's wake-up
/// on the local server. Best effort: due deliveries are also found by
/// [`DeliveryStore::due_deliveries`] (the sweep, the worker's poll).
pub trait DeliveryQueue: Send + Sync {
    fn deliveries_due(&self, ids: &[String])
        -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Nobody to tell: the deliveries wait for the next poll.
impl DeliveryQueue for () {
    async fn deliveries_due(&self, _ids: &[String]) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Where a function finds the webhook stores beside the event store it is given: what lets
/// `webhooks_api::build` take the same store argument as every constructor (`lambda::run`'s
/// `Retained<DynamoStore>`, the local server's store). An implementation reads its own
/// variables from `setup` (a table name, a queue URL) and fails as a [`ConfigError`] naming the
/// variable, which disables the route.
pub trait WebhooksSource: Send + Sync {
    type Store: SubscriptionStore + DeliveryStore + 'static;
    type Queue: DeliveryQueue + 'static;
    fn webhook_stores(
        &self,
        setup: &Setup,
    ) -> impl Future<Output = Result<(Self::Store, Self::Queue), ConfigError>> + Send;
}

impl<S: WebhooksSource> WebhooksSource for Retained<S> {
    type Store = S::Store;
    type Queue = S::Queue;
    fn webhook_stores(
        &self,
        setup: &Setup,
    ) -> impl Future<Output = Result<(Self::Store, Self::Queue), ConfigError>> + Send {
        self.inner().webhook_stores(setup)
    }
}

impl<T: SubscriptionStore + ?Sized> SubscriptionStore for std::sync::Arc<T> {
    fn list_subscriptions(
        &self,
    ) -> impl Future<Output = Result<Vec<Subscription>, StoreError>> + Send {
        (**self).list_subscriptions()
    }
    fn get_subscription(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Subscription>, StoreError>> + Send {
        (**self).get_subscription(name)
    }
    fn create_subscription(
        &self,
        subscription: &Subscription,
    ) -> impl Future<Output = Result<SubscriptionCreate, StoreError>> + Send {
        (**self).create_subscription(subscription)
    }
    fn replace_subscription(
        &self,
        subscription: &Subscription,
    ) -> impl Future<Output = Result<Found, StoreError>> + Send {
        (**self).replace_subscription(subscription)
    }
    fn delete_subscription(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Found, StoreError>> + Send {
        (**self).delete_subscription(name)
    }
    fn save_subscription_health(
        &self,
        name: &str,
        health: &SubscriptionHealth,
    ) -> impl Future<Output = Result<Found, StoreError>> + Send {
        (**self).save_subscription_health(name, health)
    }
}

impl<T: DeliveryStore + ?Sized> DeliveryStore for std::sync::Arc<T> {
    fn create_delivery(
        &self,
        delivery: &Delivery,
    ) -> impl Future<Output = Result<DeliveryCreate, StoreError>> + Send {
        (**self).create_delivery(delivery)
    }
    fn get_delivery(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<Delivery>, StoreError>> + Send {
        (**self).get_delivery(id)
    }
    fn update_delivery(
        &self,
        delivery: &Delivery,
        expected_version: u64,
    ) -> impl Future<Output = Result<DeliveryUpdate, StoreError>> + Send {
        (**self).update_delivery(delivery, expected_version)
    }
    fn record_attempt(
        &self,
        delivery: &Delivery,
        expected_version: u64,
        attempt: &AttemptRecord,
    ) -> impl Future<Output = Result<DeliveryUpdate, StoreError>> + Send {
        (**self).record_attempt(delivery, expected_version, attempt)
    }
    fn list_deliveries(
        &self,
        subscription: &str,
        page: &PageRequest,
    ) -> impl Future<Output = Result<DeliveryPage<DeliveryWithAttempts>, StoreError>> + Send {
        (**self).list_deliveries(subscription, page)
    }
    fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Delivery>, StoreError>> + Send {
        (**self).due_deliveries(now, limit)
    }
    fn failed_deliveries(
        &self,
        subscription: &str,
        since: DateTime<Utc>,
        page: &PageRequest,
    ) -> impl Future<Output = Result<DeliveryPage<Delivery>, StoreError>> + Send {
        (**self).failed_deliveries(subscription, since, page)
    }
}

impl<T: DeliveryQueue + ?Sized> DeliveryQueue for std::sync::Arc<T> {
    fn deliveries_due(
        &self,
        ids: &[String],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).deliveries_due(ids)
    }
}

/// The cursor of the newest-first delivery listings: the last entry's `(created_at, id)`.
/// Stores that can use it do; DynamoDB may issue its own.
pub fn listing_cursor(delivery: &Delivery) -> String {
    format!("{}|{}", delivery.created_at.timestamp_micros(), delivery.id)
}

/// Reads a [`listing_cursor`].
pub fn parse_listing_cursor(cursor: &str) -> Result<(i64, String), StoreError> {
    let (micros, id) = cursor.split_once('|').ok_or(StoreError::BadCursor)?;
    let micros = micros.parse::<i64>().map_err(|_| StoreError::BadCursor)?;
    if id.is_empty() || id.len() > 100 {
        return Err(StoreError::BadCursor);
    }
    Ok((micros, id.to_owned()))
}
