//! The contract every webhook store keeps, as a suite any implementation runs against a fresh,
//! empty store: `webhooks::store::contract::run_all(&store).await` (the memory store here, the
//! SQLite store under feature `sqlite`, the DynamoDB store in its own crate).
//!
//! Times are whole seconds, so that stores that keep milliseconds round-trip them exactly.

use super::{
    AttemptRecord, Delivery, DeliveryCreate, DeliveryState, DeliveryStore, DeliveryUpdate, Found,
    PageRequest, StoreError, SubscriptionCreate, SubscriptionHealth, SubscriptionStore,
};
use crate::model::{DisabledReason, Subscription};
use crate::net::{Attempt, SendError};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use hub_core::event::{Event, Source};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0).unwrap()
}

fn subscription(name: &str, url: &str) -> Subscription {
    let mut sub: Subscription = serde_json::from_value(serde_json::json!({
        "name": name,
        "url": url,
        "description": "contract",
        "event_filter": {"kind_names": ["stack"], "sources": ["stack"]},
        "headers": {"X-Foo": ["a", "b"]},
        "body": "{{.Kind.Name}}",
    }))
    .unwrap();
    sub.secret = Some("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".into());
    sub.method = "POST".into();
    sub.created_at = t0();
    sub.updated_at = t0();
    sub
}

fn delivery(subscription: &str, event_id: &str, created_at: DateTime<Utc>) -> Delivery {
    let event = Event::new(
        Source::Stack,
        event_id,
        "UPDATE_COMPLETE",
        "s",
        "{}",
        created_at,
    )
    .retained_for_days(Some(7));
    Delivery::new(subscription, &event, created_at)
}

fn attempt_record(delivery: &Delivery, number: u32, status: Option<u16>) -> AttemptRecord {
    AttemptRecord {
        delivery_id: delivery.id.clone(),
        number,
        attempt: Attempt {
            started_at: t0() + TimeDelta::seconds(i64::from(number)),
            latency_ms: 12,
            status,
            response_excerpt: "nope ✓".into(),
            retry_after_secs: status.map(|_| 30),
            error: status
                .is_none()
                .then(|| SendError::Connect("connection refused".into())),
        },
        expires_at: delivery.expires_at,
    }
}

/// Every check, in order, on one fresh store.
pub async fn run_all<S: SubscriptionStore + DeliveryStore>(store: &S) {
    subscriptions(store).await;
    deliveries_are_created_once(store).await;
    updates_are_conditional(store).await;
    attempts_are_recorded_with_their_update(store).await;
    listings_are_newest_first_and_paginated(store).await;
    due_deliveries_are_pending_and_due(store).await;
    failed_deliveries_since(store).await;
}

/// Create once, get, list, replace, health, delete.
pub async fn subscriptions(store: &impl SubscriptionStore) {
    assert_eq!(store.list_subscriptions().await.unwrap(), vec![]);
    assert_eq!(store.get_subscription("b-hook").await.unwrap(), None);

    let b = subscription("b-hook", "https://b.example.com/");
    let a = subscription("a-hook", "https://a.example.com/");
    assert_eq!(
        store.create_subscription(&b).await.unwrap(),
        SubscriptionCreate::Created
    );
    assert_eq!(
        store.create_subscription(&a).await.unwrap(),
        SubscriptionCreate::Created
    );
    let mut other = subscription("b-hook", "https://other.example.com/");
    other.description = "second".into();
    assert_eq!(
        store.create_subscription(&other).await.unwrap(),
        SubscriptionCreate::NameTaken
    );
    assert_eq!(
        store.get_subscription("b-hook").await.unwrap().as_ref(),
        Some(&b),
        "a taken name leaves the first subscription as it was"
    );
    assert_eq!(
        store.list_subscriptions().await.unwrap(),
        vec![a.clone(), b.clone()],
        "listed by name"
    );

    let mut replaced = b.clone();
    replaced.url = "https://b2.example.com/".into();
    replaced.headers.clear();
    replaced.body = String::new();
    replaced.updated_at = t0() + TimeDelta::hours(1);
    assert_eq!(
        store.replace_subscription(&replaced).await.unwrap(),
        Found::Yes
    );
    assert_eq!(
        store.get_subscription("b-hook").await.unwrap(),
        Some(replaced.clone())
    );
    assert_eq!(
        store
            .replace_subscription(&subscription("nobody", "https://x/"))
            .await
            .unwrap(),
        Found::No
    );
    assert_eq!(store.get_subscription("nobody").await.unwrap(), None);

    let health = SubscriptionHealth {
        disabled: true,
        disabled_reason: Some(DisabledReason::Gone),
        failing_since: Some(t0()),
        updated_at: t0() + TimeDelta::hours(2),
    };
    assert_eq!(
        store
            .save_subscription_health("b-hook", &health)
            .await
            .unwrap(),
        Found::Yes
    );
    let mut expected = replaced.clone();
    health.apply_to(&mut expected);
    assert_eq!(
        store.get_subscription("b-hook").await.unwrap(),
        Some(expected),
        "health changes only the health fields"
    );
    assert_eq!(
        store
            .save_subscription_health("nobody", &health)
            .await
            .unwrap(),
        Found::No
    );

    assert_eq!(
        store.delete_subscription("b-hook").await.unwrap(),
        Found::Yes
    );
    assert_eq!(
        store.delete_subscription("b-hook").await.unwrap(),
        Found::No
    );
    assert_eq!(store.get_subscription("b-hook").await.unwrap(), None);
    assert_eq!(store.list_subscriptions().await.unwrap(), vec![a]);
    assert_eq!(
        store.delete_subscription("a-hook").await.unwrap(),
        Found::Yes
    );
}

/// A second create of the same id (a stream replay) changes nothing.
pub async fn deliveries_are_created_once(store: &impl DeliveryStore) {
    let first = delivery("once", "e-1", t0());
    assert_eq!(store.get_delivery(&first.id).await.unwrap(), None);
    assert_eq!(
        store.create_delivery(&first).await.unwrap(),
        DeliveryCreate::Created
    );
    let mut again = first.clone();
    again.created_at = t0() + TimeDelta::minutes(5);
    again.next_attempt_at = again.created_at;
    assert_eq!(
        store.create_delivery(&again).await.unwrap(),
        DeliveryCreate::Exists
    );
    assert_eq!(store.get_delivery(&first.id).await.unwrap(), Some(first));
}

/// Only the writer holding the current version changes a delivery.
pub async fn updates_are_conditional(store: &impl DeliveryStore) {
    let created = delivery("cond", "e-1", t0());
    store.create_delivery(&created).await.unwrap();
    let mut changed = created.clone();
    changed.state = DeliveryState::Failed;
    changed.last_error = Some("gone".into());
    changed.updated_at = t0() + TimeDelta::seconds(5);
    assert_eq!(
        store.update_delivery(&changed, 7).await.unwrap(),
        DeliveryUpdate::Conflict
    );
    assert_eq!(
        store.get_delivery(&created.id).await.unwrap(),
        Some(created.clone())
    );
    assert_eq!(
        store.update_delivery(&changed, 0).await.unwrap(),
        DeliveryUpdate::Updated
    );
    let stored = store.get_delivery(&created.id).await.unwrap().unwrap();
    assert_eq!(stored.version, 1);
    assert_eq!(
        stored,
        Delivery {
            version: 1,
            ..changed.clone()
        }
    );
    assert_eq!(
        store.update_delivery(&changed, 0).await.unwrap(),
        DeliveryUpdate::Conflict,
        "the old version is stale now"
    );
    let missing = delivery("cond", "never-created", t0());
    assert_eq!(
        store.update_delivery(&missing, 0).await.unwrap(),
        DeliveryUpdate::Conflict
    );
    assert_eq!(store.get_delivery(&missing.id).await.unwrap(), None);
}

/// An attempt is logged together with its delivery update, or not at all; of two racing
/// workers exactly one records.
pub async fn attempts_are_recorded_with_their_update(store: &impl DeliveryStore) {
    let created = delivery("att", "e-1", t0());
    store.create_delivery(&created).await.unwrap();
    let mut after_first = created.clone();
    after_first.attempts = 1;
    after_first.round_attempts = 1;
    after_first.last_error = Some("connection failed".into());
    after_first.next_attempt_at = t0() + TimeDelta::seconds(5);
    let first = attempt_record(&created, 1, None);
    let (a, b) = tokio::join!(
        store.record_attempt(&after_first, 0, &first),
        store.record_attempt(&after_first, 0, &first),
    );
    let mut outcomes = [a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|o| *o == DeliveryUpdate::Conflict);
    assert_eq!(
        outcomes,
        [DeliveryUpdate::Updated, DeliveryUpdate::Conflict],
        "exactly one of two racing writers records"
    );

    let mut after_second = after_first.clone();
    after_second.attempts = 2;
    after_second.state = DeliveryState::Delivered;
    after_second.last_status = Some(200);
    after_second.last_error = None;
    let second = attempt_record(&created, 2, Some(200));
    assert_eq!(
        store
            .record_attempt(&after_second, 0, &second)
            .await
            .unwrap(),
        DeliveryUpdate::Conflict
    );
    assert_eq!(
        store
            .record_attempt(&after_second, 1, &second)
            .await
            .unwrap(),
        DeliveryUpdate::Updated
    );
    let page = store
        .list_deliveries("att", &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(page.deliveries.len(), 1);
    assert_eq!(
        page.deliveries[0].delivery,
        Delivery {
            version: 2,
            ..after_second
        }
    );
    assert_eq!(
        page.deliveries[0].attempts_log,
        vec![first, second],
        "one attempt per successful record, oldest first, nothing from the conflicts"
    );
}

/// Newest first by creation, `limit` per page, cursors that continue, only the subscription's.
pub async fn listings_are_newest_first_and_paginated(store: &impl DeliveryStore) {
    let empty = store
        .list_deliveries("listed", &PageRequest::first(10))
        .await
        .unwrap();
    assert!(empty.deliveries.is_empty());
    assert_eq!(empty.next, None);

    let mut created = Vec::new();
    for i in 0..5 {
        // Two share a creation time: the id breaks the tie.
        let at = t0() + TimeDelta::seconds(if i == 4 { 3 } else { i });
        let d = delivery("listed", &format!("e-{i}"), at);
        store.create_delivery(&d).await.unwrap();
        created.push(d);
    }
    store
        .create_delivery(&delivery("unlisted", "e-0", t0()))
        .await
        .unwrap();
    let mut expected = created.clone();
    expected.sort_by_key(|d| std::cmp::Reverse((d.created_at, d.id.clone())));

    let mut seen = Vec::new();
    let mut page = PageRequest::first(2);
    let mut pages = 0;
    loop {
        let got = store.list_deliveries("listed", &page).await.unwrap();
        pages += 1;
        assert!(got.deliveries.len() <= 2);
        seen.extend(got.deliveries.into_iter().map(|d| d.delivery));
        match got.next {
            Some(next) => page.cursor = Some(next),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(seen, expected);

    let bad = store
        .list_deliveries(
            "listed",
            &PageRequest {
                limit: 2,
                cursor: Some("not a cursor".into()),
            },
        )
        .await;
    assert!(matches!(bad, Err(StoreError::BadCursor)), "{bad:?}");
}

/// Pending and due, of every subscription, longest overdue first, bounded.
pub async fn due_deliveries_are_pending_and_due(store: &impl DeliveryStore) {
    let now = t0() + TimeDelta::days(30);
    let mut due = Vec::new();
    for (i, (subscription, offset, state)) in [
        ("due-a", -60, DeliveryState::Pending),
        ("due-b", -120, DeliveryState::Pending),
        ("due-a", 0, DeliveryState::Pending),
        ("due-a", 1, DeliveryState::Pending),
        ("due-a", -300, DeliveryState::Delivered),
        ("due-b", -300, DeliveryState::Failed),
    ]
    .into_iter()
    .enumerate()
    {
        let mut d = delivery(subscription, &format!("d-{i}"), now - TimeDelta::days(1));
        store.create_delivery(&d).await.unwrap();
        d.next_attempt_at = now + TimeDelta::seconds(offset);
        d.state = state;
        assert_eq!(
            store.update_delivery(&d, 0).await.unwrap(),
            DeliveryUpdate::Updated
        );
        if state == DeliveryState::Pending && offset <= 0 {
            due.push(Delivery { version: 1, ..d });
        }
    }
    due.sort_by_key(|d| d.next_attempt_at);
    let found = store.due_deliveries(now, 100).await.unwrap();
    // Other checks' deliveries were due long ago; keep only this check's.
    let found: Vec<Delivery> = found
        .into_iter()
        .filter(|d| d.subscription.starts_with("due-"))
        .collect();
    assert_eq!(found, due);
    let first = store.due_deliveries(now, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(first[0].next_attempt_at <= due[0].next_attempt_at);
    assert!(store
        .due_deliveries(t0() - TimeDelta::days(1), 100)
        .await
        .unwrap()
        .is_empty());
}

/// Failed deliveries of one subscription created at or after a time.
pub async fn failed_deliveries_since(store: &impl DeliveryStore) {
    let base = t0() + TimeDelta::days(60);
    let mut expected = Vec::new();
    for (i, (subscription, offset, state)) in [
        ("replayed", -10, DeliveryState::Failed),
        ("replayed", 0, DeliveryState::Failed),
        ("replayed", 10, DeliveryState::Failed),
        ("replayed", 20, DeliveryState::Delivered),
        ("replayed", 30, DeliveryState::Pending),
        ("other", 10, DeliveryState::Failed),
        ("replayed", 40, DeliveryState::Failed),
    ]
    .into_iter()
    .enumerate()
    {
        let mut d = delivery(
            subscription,
            &format!("f-{i}"),
            base + TimeDelta::seconds(offset),
        );
        store.create_delivery(&d).await.unwrap();
        if state != DeliveryState::Pending {
            d.state = state;
            store.update_delivery(&d, 0).await.unwrap();
            d.version = 1;
        }
        if subscription == "replayed" && offset >= 0 && state == DeliveryState::Failed {
            expected.push(d);
        }
    }
    expected.sort_by_key(|d| std::cmp::Reverse(d.created_at));
    let mut seen = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let got = store
            .failed_deliveries("replayed", base, &page)
            .await
            .unwrap();
        seen.extend(got.deliveries);
        match got.next {
            Some(next) => page.cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, expected);
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_memory_store_keeps_the_contract() {
        super::run_all(&super::super::memory::MemoryWebhookStore::new()).await;
    }
}
