//! An in-memory webhook store for tests. It keeps the same contract as the real stores
//! ([`super::contract`]), and can be switched to "unavailable" to test outages.

use super::{
    listing_cursor, parse_listing_cursor, AttemptRecord, Delivery, DeliveryCreate, DeliveryPage,
    DeliveryQueue, DeliveryState, DeliveryStore, DeliveryUpdate, DeliveryWithAttempts, Found,
    PageRequest, StoreError, SubscriptionCreate, SubscriptionHealth, SubscriptionStore,
};
use crate::model::Subscription;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

#[derive(Debug, Default)]
struct State {
    subscriptions: BTreeMap<String, Subscription>,
    deliveries: BTreeMap<String, Delivery>,
    attempts: BTreeMap<String, Vec<AttemptRecord>>,
}

#[derive(Debug, Default)]
pub struct MemoryWebhookStore {
    state: Mutex<State>,
    unavailable: AtomicBool,
    /// Attempt records to apply and then answer `Conflict` for: a write that landed and whose
    /// answer was lost, so that the SDK's retry of it failed its own version check.
    lost_answers: std::sync::atomic::AtomicUsize,
    /// The ids [`DeliveryQueue::deliveries_due`] was told about, in order.
    queued: Mutex<Vec<String>>,
}

impl MemoryWebhookStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// The next `count` attempt records are applied and then answered `Conflict`.
    pub fn lose_record_answers(&self, count: usize) {
        self.lost_answers.store(count, Ordering::SeqCst);
    }

    /// Every delivery, by id.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.lock().deliveries.values().cloned().collect()
    }

    /// The attempts of one delivery, oldest first.
    pub fn attempts(&self, delivery_id: &str) -> Vec<AttemptRecord> {
        self.lock()
            .attempts
            .get(delivery_id)
            .cloned()
            .unwrap_or_default()
    }

    /// The ids queued through [`DeliveryQueue`], in order.
    pub fn queued(&self) -> Vec<String> {
        self.queued.lock().unwrap().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.unavailable.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("memory store switched off".into()))
        } else {
            Ok(())
        }
    }
}

fn order_key(delivery: &Delivery) -> (i64, String) {
    (delivery.created_at.timestamp_micros(), delivery.id.clone())
}

/// Newest first from the cursor on.
fn page_of<T>(
    mut candidates: Vec<Delivery>,
    page: &PageRequest,
    map: impl Fn(Delivery) -> T,
) -> Result<DeliveryPage<T>, StoreError> {
    let after = page
        .cursor
        .as_deref()
        .map(parse_listing_cursor)
        .transpose()?;
    candidates.sort_by_key(|d| std::cmp::Reverse(order_key(d)));
    let limit = page.effective_limit() as usize;
    let mut rest = candidates
        .into_iter()
        .filter(|d| after.as_ref().is_none_or(|after| order_key(d) < *after));
    let chosen: Vec<Delivery> = rest.by_ref().take(limit).collect();
    let next = match (rest.next(), chosen.last()) {
        (Some(_), Some(last)) => Some(listing_cursor(last)),
        _ => None,
    };
    Ok(DeliveryPage {
        deliveries: chosen.into_iter().map(map).collect(),
        next,
    })
}

impl SubscriptionStore for MemoryWebhookStore {
    async fn list_subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        self.check()?;
        Ok(self.lock().subscriptions.values().cloned().collect())
    }

    async fn get_subscription(&self, name: &str) -> Result<Option<Subscription>, StoreError> {
        self.check()?;
        Ok(self.lock().subscriptions.get(name).cloned())
    }

    async fn create_subscription(
        &self,
        subscription: &Subscription,
    ) -> Result<SubscriptionCreate, StoreError> {
        self.check()?;
        let mut state = self.lock();
        if state.subscriptions.contains_key(&subscription.name) {
            return Ok(SubscriptionCreate::NameTaken);
        }
        state
            .subscriptions
            .insert(subscription.name.clone(), subscription.clone());
        Ok(SubscriptionCreate::Created)
    }

    async fn replace_subscription(&self, subscription: &Subscription) -> Result<Found, StoreError> {
        self.check()?;
        let mut state = self.lock();
        match state.subscriptions.get_mut(&subscription.name) {
            Some(stored) => {
                *stored = subscription.clone();
                Ok(Found::Yes)
            }
            None => Ok(Found::No),
        }
    }

    async fn delete_subscription(&self, name: &str) -> Result<Found, StoreError> {
        self.check()?;
        Ok(match self.lock().subscriptions.remove(name) {
            Some(_) => Found::Yes,
            None => Found::No,
        })
    }

    async fn save_subscription_health(
        &self,
        name: &str,
        health: &SubscriptionHealth,
    ) -> Result<Found, StoreError> {
        self.check()?;
        let mut state = self.lock();
        match state.subscriptions.get_mut(name) {
            Some(stored) => {
                health.apply_to(stored);
                Ok(Found::Yes)
            }
            None => Ok(Found::No),
        }
    }
}

impl DeliveryStore for MemoryWebhookStore {
    async fn create_delivery(&self, delivery: &Delivery) -> Result<DeliveryCreate, StoreError> {
        self.check()?;
        let mut state = self.lock();
        if state.deliveries.contains_key(&delivery.id) {
            return Ok(DeliveryCreate::Exists);
        }
        state
            .deliveries
            .insert(delivery.id.clone(), delivery.clone());
        Ok(DeliveryCreate::Created)
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        self.check()?;
        Ok(self.lock().deliveries.get(id).cloned())
    }

    async fn update_delivery(
        &self,
        delivery: &Delivery,
        expected_version: u64,
    ) -> Result<DeliveryUpdate, StoreError> {
        self.check()?;
        let mut state = self.lock();
        Ok(write_if(&mut state, delivery, expected_version))
    }

    async fn record_attempt(
        &self,
        delivery: &Delivery,
        expected_version: u64,
        attempt: &AttemptRecord,
    ) -> Result<DeliveryUpdate, StoreError> {
        self.check()?;
        let mut state = self.lock();
        let outcome = write_if(&mut state, delivery, expected_version);
        if outcome == DeliveryUpdate::Updated {
            state
                .attempts
                .entry(delivery.id.clone())
                .or_default()
                .push(attempt.clone());
            let lost = self
                .lost_answers
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            if lost.is_ok() {
                return Ok(DeliveryUpdate::Conflict);
            }
        }
        Ok(outcome)
    }

    async fn list_deliveries(
        &self,
        subscription: &str,
        page: &PageRequest,
    ) -> Result<DeliveryPage<DeliveryWithAttempts>, StoreError> {
        self.check()?;
        let state = self.lock();
        let candidates = state
            .deliveries
            .values()
            .filter(|d| d.subscription == subscription)
            .cloned()
            .collect();
        page_of(candidates, page, |delivery| DeliveryWithAttempts {
            attempts_log: state
                .attempts
                .get(&delivery.id)
                .cloned()
                .unwrap_or_default(),
            delivery,
        })
    }

    async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.check()?;
        let mut due: Vec<Delivery> = self
            .lock()
            .deliveries
            .values()
            .filter(|d| d.is_due(now))
            .cloned()
            .collect();
        due.sort_by(|a, b| (a.next_attempt_at, &a.id).cmp(&(b.next_attempt_at, &b.id)));
        due.truncate(limit as usize);
        Ok(due)
    }

    async fn failed_deliveries(
        &self,
        subscription: &str,
        since: DateTime<Utc>,
        page: &PageRequest,
    ) -> Result<DeliveryPage<Delivery>, StoreError> {
        self.check()?;
        let candidates = self
            .lock()
            .deliveries
            .values()
            .filter(|d| {
                d.subscription == subscription
                    && d.state == DeliveryState::Failed
                    && d.created_at >= since
            })
            .cloned()
            .collect();
        page_of(candidates, page, |d| d)
    }
}

fn write_if(state: &mut State, delivery: &Delivery, expected_version: u64) -> DeliveryUpdate {
    match state.deliveries.get_mut(&delivery.id) {
        Some(stored) if stored.version == expected_version => {
            *stored = Delivery {
                version: expected_version + 1,
                ..delivery.clone()
            };
            DeliveryUpdate::Updated
        }
        _ => DeliveryUpdate::Conflict,
    }
}

impl DeliveryQueue for MemoryWebhookStore {
    async fn deliveries_due(&self, ids: &[String]) -> Result<(), StoreError> {
        self.check()?;
        self.queued.lock().unwrap().extend(ids.iter().cloned());
        Ok(())
    }
}
