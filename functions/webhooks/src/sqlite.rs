//! The webhook stores of the local server (feature `sqlite`): subscriptions, deliveries and
//! attempts in the same SQLite file as the events, through the same writer connection
//! ([`SqliteStore::with`]), and the OUTBOX: [`outbox_put_event`] stores an event and creates its
//! deliveries in one transaction, so an event stored is an event that will be delivered, across
//! a crash (`kill -9`) and a restart: the worker finds them with
//! [`DeliveryStore::due_deliveries`].
//!
//! Rows keep the whole record as JSON (`doc`) beside the columns the queries filter and sort on,
//! so that a field added to [`Delivery`] or [`Subscription`] needs no migration. Times in
//! columns are microseconds since the epoch, the precision of [`listing_cursor`].

use crate::engine::plan_deliveries;
use crate::model::Subscription;
use crate::store::{
    listing_cursor, parse_listing_cursor, AttemptRecord, Delivery, DeliveryCreate, DeliveryPage,
    DeliveryQueue, DeliveryState, DeliveryStore, DeliveryUpdate, DeliveryWithAttempts, Found,
    PageRequest, StoreError, SubscriptionCreate, SubscriptionHealth, SubscriptionStore,
    WebhooksSource,
};
use chrono::{DateTime, Utc};
use hub_core::config::ConfigError;
use hub_core::event::Event;
use hub_core::setup::Setup;
use hub_core::store::{EventWriter, PutOutcome};
use rusqlite::{params, Connection, OptionalExtension};
use sqlite_store::{failed, SqliteStore};
use tokio::sync::Notify;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS webhook_subscriptions (
    name TEXT PRIMARY KEY,
    doc  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id              TEXT PRIMARY KEY,
    subscription    TEXT NOT NULL,
    state           TEXT NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER,
    version         INTEGER NOT NULL,
    doc             TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_subscription
    ON webhook_deliveries (subscription, created_at, id);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due
    ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_expiry
    ON webhook_deliveries (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS webhook_attempts (
    delivery_id TEXT NOT NULL,
    number      INTEGER NOT NULL,
    expires_at  INTEGER,
    doc         TEXT NOT NULL,
    PRIMARY KEY (delivery_id, number)
);
CREATE INDEX IF NOT EXISTS webhook_attempts_by_expiry
    ON webhook_attempts (expires_at) WHERE expires_at IS NOT NULL;
";

/// Expired rows are deleted this many at a time, each batch its own short write.
const PURGE_BATCH: i64 = 500;

/// Signalled after a commit that made deliveries due (an outbox write, a replay): the local
/// worker waits on it, so that the first attempt follows the request at once. One per process;
/// a wake-up meant for another database file only costs the worker one poll.
static WAKE: Notify = Notify::const_new();

/// What the local delivery worker waits on besides its poll interval.
pub fn wake() -> &'static Notify {
    &WAKE
}

/// Subscriptions, deliveries and attempts in the events' SQLite file.
#[derive(Clone, Debug)]
pub struct SqliteWebhookStore {
    store: SqliteStore,
}

fn json_error(error: serde_json::Error) -> StoreError {
    StoreError::Failed(format!("stored webhook record is not readable: {error}"))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Failed(e.to_string()))
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

impl SqliteWebhookStore {
    /// Creates the webhook tables in the store's file if they are not there yet.
    pub fn open(store: &SqliteStore) -> Result<Self, StoreError> {
        store.execute_batch(SCHEMA)?;
        Ok(SqliteWebhookStore {
            store: store.clone(),
        })
    }

    pub fn events(&self) -> &SqliteStore {
        &self.store
    }

    /// Deletes deliveries and attempts whose retention (`EVENT_TTL_DAYS`, the event's) passed.
    pub async fn purge_expired(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let now = now.timestamp();
        let mut purged = 0;
        for table in ["webhook_attempts", "webhook_deliveries"] {
            let sql = format!(
                "DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} \
                 WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT ?2)"
            );
            loop {
                let sql = sql.clone();
                let deleted = self
                    .store
                    .with(move |c| c.execute(&sql, params![now, PURGE_BATCH]).map_err(failed))
                    .await?;
                purged += deleted;
                if (deleted as i64) < PURGE_BATCH {
                    break;
                }
            }
        }
        Ok(purged)
    }

    /// When the earliest pending delivery is due, if any is pending.
    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<i64> = self
            .store
            .read(|c| {
                c.query_row(
                    "SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE state = 'pending'",
                    [],
                    |r| r.get(0),
                )
                .map_err(failed)
            })
            .await?;
        Ok(at.and_then(DateTime::from_timestamp_micros))
    }
}

/// Stores `event` and, in the same transaction when it is new, one delivery per matching
/// subscription: the outbox. A duplicate event creates nothing (its deliveries were created
/// with it). Wakes the worker after the commit when deliveries were created.
pub async fn outbox_put_event(
    store: &SqliteStore,
    event: &Event,
) -> Result<PutOutcome, StoreError> {
    let now = Utc::now();
    let (outcome, created) = store
        .put_event_with(event, move |tx, event| insert_deliveries(tx, event, now))
        .await?;
    if created.unwrap_or(0) > 0 {
        WAKE.notify_one();
    }
    Ok(outcome)
}

/// The subscriptions, read inside the event's transaction. Without the table (no subscription
/// was ever created in this file) there are none. A row this version cannot read (written by a
/// newer one, say) is skipped with an error in the log, not allowed to stop every event from
/// being stored; the API's listing fails on it, so it does not go unnoticed.
fn subscriptions_in(c: &Connection) -> Result<Vec<Subscription>, StoreError> {
    let mut statement = match c.prepare_cached("SELECT doc FROM webhook_subscriptions") {
        Ok(statement) => statement,
        Err(rusqlite::Error::SqliteFailure(_, Some(message)))
            if message.starts_with("no such table") =>
        {
            return Ok(Vec::new())
        }
        Err(error) => return Err(failed(error)),
    };
    let docs = statement
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(failed)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(failed)?;
    Ok(docs
        .iter()
        .filter_map(|doc| match serde_json::from_str::<Subscription>(doc) {
            Ok(subscription) => Some(subscription),
            Err(error) => {
                tracing::error!(%error, "a stored webhook subscription cannot be read; it gets no deliveries");
                None
            }
        })
        .collect())
}

fn insert_deliveries(
    c: &Connection,
    event: &Event,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let subscriptions = subscriptions_in(c)?;
    let mut created = 0;
    for delivery in plan_deliveries(&subscriptions, event, now) {
        if insert_delivery(c, &delivery)? == DeliveryCreate::Created {
            created += 1;
        }
    }
    Ok(created)
}

fn insert_delivery(c: &Connection, delivery: &Delivery) -> Result<DeliveryCreate, StoreError> {
    let doc = to_json(delivery)?;
    let inserted = c
        .prepare_cached(
            "INSERT INTO webhook_deliveries (id, subscription, state, next_attempt_at, \
             created_at, expires_at, version, doc) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (id) DO NOTHING",
        )
        .and_then(|mut s| {
            s.execute(params![
                delivery.id,
                delivery.subscription,
                delivery.state.as_str(),
                micros(delivery.next_attempt_at),
                micros(delivery.created_at),
                delivery.expires_at,
                delivery.version as i64,
                doc,
            ])
        })
        .map_err(failed)?;
    Ok(if inserted == 1 {
        DeliveryCreate::Created
    } else {
        DeliveryCreate::Exists
    })
}

fn update_delivery_in(
    c: &Connection,
    delivery: &Delivery,
    expected_version: u64,
) -> Result<DeliveryUpdate, StoreError> {
    let stored = Delivery {
        version: expected_version + 1,
        ..delivery.clone()
    };
    let doc = to_json(&stored)?;
    let changed = c
        .prepare_cached(
            "UPDATE webhook_deliveries SET state = ?1, next_attempt_at = ?2, expires_at = ?3, \
             version = ?4, doc = ?5 WHERE id = ?6 AND version = ?7",
        )
        .and_then(|mut s| {
            s.execute(params![
                stored.state.as_str(),
                micros(stored.next_attempt_at),
                stored.expires_at,
                stored.version as i64,
                doc,
                stored.id,
                expected_version as i64,
            ])
        })
        .map_err(failed)?;
    Ok(if changed == 1 {
        DeliveryUpdate::Updated
    } else {
        DeliveryUpdate::Conflict
    })
}

fn read_subscription(c: &Connection, name: &str) -> Result<Option<Subscription>, StoreError> {
    let doc: Option<String> = c
        .prepare_cached("SELECT doc FROM webhook_subscriptions WHERE name = ?1")
        .and_then(|mut s| s.query_row(params![name], |r| r.get(0)).optional())
        .map_err(failed)?;
    doc.map(|d| serde_json::from_str(&d).map_err(json_error))
        .transpose()
}

fn read_docs<T: serde::de::DeserializeOwned>(
    c: &Connection,
    sql: &str,
    parameters: impl rusqlite::Params,
) -> Result<Vec<T>, StoreError> {
    let mut statement = c.prepare_cached(sql).map_err(failed)?;
    let docs = statement
        .query_map(parameters, |r| r.get::<_, String>(0))
        .map_err(failed)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(failed)?;
    docs.iter()
        .map(|d| serde_json::from_str(d).map_err(json_error))
        .collect()
}

/// The position after which a newest-first page starts: a cursor, or past everything.
fn page_bound(page: &PageRequest) -> Result<(i64, String), StoreError> {
    match &page.cursor {
        Some(cursor) => parse_listing_cursor(cursor),
        // Every id sorts below U+FFFF and every time below i64::MAX.
        None => Ok((i64::MAX, "\u{ffff}".to_owned())),
    }
}

fn split_page(mut deliveries: Vec<Delivery>, limit: u32) -> (Vec<Delivery>, Option<String>) {
    if deliveries.len() > limit as usize {
        deliveries.truncate(limit as usize);
        let next = deliveries.last().map(listing_cursor);
        (deliveries, next)
    } else {
        (deliveries, None)
    }
}

impl SubscriptionStore for SqliteWebhookStore {
    async fn list_subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        self.store
            .read(|c| read_docs(c, "SELECT doc FROM webhook_subscriptions ORDER BY name", []))
            .await
    }

    async fn get_subscription(&self, name: &str) -> Result<Option<Subscription>, StoreError> {
        let name = name.to_owned();
        self.store.read(move |c| read_subscription(c, &name)).await
    }

    async fn create_subscription(
        &self,
        subscription: &Subscription,
    ) -> Result<SubscriptionCreate, StoreError> {
        let name = subscription.name.clone();
        let doc = to_json(subscription)?;
        self.store
            .with(move |c| {
                let inserted = c
                    .execute(
                        "INSERT INTO webhook_subscriptions (name, doc) VALUES (?1, ?2) \
                         ON CONFLICT (name) DO NOTHING",
                        params![name, doc],
                    )
                    .map_err(failed)?;
                Ok(if inserted == 1 {
                    SubscriptionCreate::Created
                } else {
                    SubscriptionCreate::NameTaken
                })
            })
            .await
    }

    async fn replace_subscription(&self, subscription: &Subscription) -> Result<Found, StoreError> {
        let name = subscription.name.clone();
        let doc = to_json(subscription)?;
        self.store
            .with(move |c| {
                let changed = c
                    .execute(
                        "UPDATE webhook_subscriptions SET doc = ?2 WHERE name = ?1",
                        params![name, doc],
                    )
                    .map_err(failed)?;
                Ok(if changed == 1 { Found::Yes } else { Found::No })
            })
            .await
    }

    async fn delete_subscription(&self, name: &str) -> Result<Found, StoreError> {
        let name = name.to_owned();
        self.store
            .with(move |c| {
                let changed = c
                    .execute(
                        "DELETE FROM webhook_subscriptions WHERE name = ?1",
                        params![name],
                    )
                    .map_err(failed)?;
                Ok(if changed == 1 { Found::Yes } else { Found::No })
            })
            .await
    }

    async fn save_subscription_health(
        &self,
        name: &str,
        health: &SubscriptionHealth,
    ) -> Result<Found, StoreError> {
        let name = name.to_owned();
        let health = health.clone();
        self.store
            .with(move |c| {
                // Read and write in one transaction on the one writer: a PUT cannot slip between.
                let tx = c.transaction().map_err(failed)?;
                let Some(mut subscription) = read_subscription(&tx, &name)? else {
                    return Ok(Found::No);
                };
                health.apply_to(&mut subscription);
                tx.execute(
                    "UPDATE webhook_subscriptions SET doc = ?2 WHERE name = ?1",
                    params![name, to_json(&subscription)?],
                )
                .map_err(failed)?;
                tx.commit().map_err(failed)?;
                Ok(Found::Yes)
            })
            .await
    }
}

impl DeliveryStore for SqliteWebhookStore {
    async fn create_delivery(&self, delivery: &Delivery) -> Result<DeliveryCreate, StoreError> {
        let delivery = delivery.clone();
        self.store
            .with(move |c| insert_delivery(c, &delivery))
            .await
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        let id = id.to_owned();
        self.store
            .read(move |c| {
                let found: Vec<Delivery> = read_docs(
                    c,
                    "SELECT doc FROM webhook_deliveries WHERE id = ?1",
                    params![id],
                )?;
                Ok(found.into_iter().next())
            })
            .await
    }

    async fn update_delivery(
        &self,
        delivery: &Delivery,
        expected_version: u64,
    ) -> Result<DeliveryUpdate, StoreError> {
        let delivery = delivery.clone();
        self.store
            .with(move |c| update_delivery_in(c, &delivery, expected_version))
            .await
    }

    async fn record_attempt(
        &self,
        delivery: &Delivery,
        expected_version: u64,
        attempt: &AttemptRecord,
    ) -> Result<DeliveryUpdate, StoreError> {
        let delivery = delivery.clone();
        let attempt = attempt.clone();
        let attempt_doc = to_json(&attempt)?;
        self.store
            .with(move |c| {
                let tx = c.transaction().map_err(failed)?;
                let outcome = update_delivery_in(&tx, &delivery, expected_version)?;
                if outcome == DeliveryUpdate::Updated {
                    tx.prepare_cached(
                        "INSERT INTO webhook_attempts (delivery_id, number, expires_at, doc) \
                         VALUES (?1, ?2, ?3, ?4)",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            attempt.delivery_id,
                            attempt.number,
                            attempt.expires_at,
                            attempt_doc,
                        ])
                    })
                    .map_err(failed)?;
                    tx.commit().map_err(failed)?;
                }
                Ok(outcome)
            })
            .await
    }

    async fn list_deliveries(
        &self,
        subscription: &str,
        page: &PageRequest,
    ) -> Result<DeliveryPage<DeliveryWithAttempts>, StoreError> {
        let subscription = subscription.to_owned();
        let (before_at, before_id) = page_bound(page)?;
        let limit = page.effective_limit();
        self.store
            .read(move |c| {
                let found: Vec<Delivery> = read_docs(
                    c,
                    "SELECT doc FROM webhook_deliveries WHERE subscription = ?1 \
                     AND (created_at, id) < (?2, ?3) ORDER BY created_at DESC, id DESC LIMIT ?4",
                    params![subscription, before_at, before_id, i64::from(limit) + 1],
                )?;
                let (deliveries, next) = split_page(found, limit);
                let deliveries = deliveries
                    .into_iter()
                    .map(|delivery| {
                        let attempts_log = read_docs(
                            c,
                            "SELECT doc FROM webhook_attempts WHERE delivery_id = ?1 \
                             ORDER BY number",
                            params![delivery.id],
                        )?;
                        Ok(DeliveryWithAttempts {
                            delivery,
                            attempts_log,
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                Ok(DeliveryPage { deliveries, next })
            })
            .await
    }

    async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let now = micros(now);
        self.store
            .read(move |c| {
                read_docs(
                    c,
                    "SELECT doc FROM webhook_deliveries WHERE state = 'pending' \
                     AND next_attempt_at <= ?1 ORDER BY next_attempt_at, id LIMIT ?2",
                    params![now, i64::from(limit)],
                )
            })
            .await
    }

    async fn failed_deliveries(
        &self,
        subscription: &str,
        since: DateTime<Utc>,
        page: &PageRequest,
    ) -> Result<DeliveryPage<Delivery>, StoreError> {
        let subscription = subscription.to_owned();
        let since = micros(since);
        let (before_at, before_id) = page_bound(page)?;
        let limit = page.effective_limit();
        self.store
            .read(move |c| {
                let found = read_docs(
                    c,
                    "SELECT doc FROM webhook_deliveries WHERE subscription = ?1 \
                     AND state = ?2 AND created_at >= ?3 AND (created_at, id) < (?4, ?5) \
                     ORDER BY created_at DESC, id DESC LIMIT ?6",
                    params![
                        subscription,
                        DeliveryState::Failed.as_str(),
                        since,
                        before_at,
                        before_id,
                        i64::from(limit) + 1
                    ],
                )?;
                let (deliveries, next) = split_page(found, limit);
                Ok(DeliveryPage { deliveries, next })
            })
            .await
    }
}

/// Replayed deliveries are due now: wake the worker.
impl DeliveryQueue for SqliteWebhookStore {
    async fn deliveries_due(&self, _ids: &[String]) -> Result<(), StoreError> {
        WAKE.notify_one();
        Ok(())
    }
}

/// The outbox as an event writer: what the local server's routes store events through.
impl EventWriter for SqliteWebhookStore {
    async fn put_event(&self, event: &Event) -> Result<PutOutcome, StoreError> {
        outbox_put_event(&self.store, event).await
    }
}

/// The local server's webhook stores are in its SQLite file; replays wake its worker.
impl WebhooksSource for SqliteStore {
    type Store = SqliteWebhookStore;
    type Queue = SqliteWebhookStore;
    async fn webhook_stores(
        &self,
        _setup: &Setup,
    ) -> Result<(SqliteWebhookStore, SqliteWebhookStore), ConfigError> {
        let hooks = SqliteWebhookStore::open(self).map_err(|e| ConfigError::Invalid {
            name: "WEBHOOKS_TABLE",
            reason: format!("the webhook tables cannot be created: {e}"),
        })?;
        Ok((hooks.clone(), hooks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hub_core::event::Source;
    use hub_core::store::EventLookup;

    #[tokio::test]
    async fn the_sqlite_store_keeps_the_contract() {
        let store = SqliteStore::in_memory().unwrap();
        crate::store::contract::run_all(&SqliteWebhookStore::open(&store).unwrap()).await;
    }

    #[tokio::test]
    async fn the_sqlite_store_keeps_the_contract_on_a_file_with_read_connections() {
        let dir = std::env::temp_dir().join(format!("webhooks-sqlite-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqliteStore::open(dir.join("events.db")).unwrap();
        crate::store::contract::run_all(&SqliteWebhookStore::open(&store).unwrap()).await;
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn subscription(name: &str, filter: serde_json::Value) -> Subscription {
        serde_json::from_value(serde_json::json!({
            "name": name, "url": "https://example.com/", "event_filter": filter,
            "secret": "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        }))
        .unwrap()
    }

    fn event(id: &str) -> Event {
        Event::new(
            Source::Stack,
            id,
            "UPDATE_COMPLETE",
            "web",
            "{}",
            Utc::now(),
        )
        .retained_for_days(Some(3))
    }

    #[tokio::test]
    async fn the_outbox_writes_deliveries_with_the_event_and_once() {
        let store = SqliteStore::in_memory().unwrap();
        // Before any subscription table exists, events are stored as ever.
        assert_eq!(
            outbox_put_event(&store, &event("before")).await.unwrap(),
            PutOutcome::Stored
        );
        let hooks = SqliteWebhookStore::open(&store).unwrap();
        hooks
            .create_subscription(&subscription("all", serde_json::json!({})))
            .await
            .unwrap();
        hooks
            .create_subscription(&subscription(
                "s3-only",
                serde_json::json!({"sources": ["s3"]}),
            ))
            .await
            .unwrap();
        let e = event("e-1");
        assert_eq!(hooks.put_event(&e).await.unwrap(), PutOutcome::Stored);
        assert_eq!(hooks.put_event(&e).await.unwrap(), PutOutcome::Duplicate);
        let due = hooks.due_deliveries(Utc::now(), 100).await.unwrap();
        assert_eq!(due.len(), 1, "{due:?}");
        assert_eq!(due[0].subscription, "all");
        assert_eq!(
            due[0].expires_at, e.expires_at,
            "deliveries expire with their event"
        );
        assert_eq!(
            due[0].id,
            crate::signature::webhook_id("all", "stack", "e-1")
        );
        assert!(store
            .get_event(Source::Stack, "e-1")
            .await
            .unwrap()
            .is_some());
    }

    #[tokio::test]
    async fn an_outbox_failure_stores_neither_the_event_nor_its_deliveries() {
        let store = SqliteStore::in_memory().unwrap();
        let hooks = SqliteWebhookStore::open(&store).unwrap();
        hooks
            .create_subscription(&subscription("all", serde_json::json!({})))
            .await
            .unwrap();
        // The delivery cannot be written: the event's insert is rolled back with it, and the
        // sender is told to retry.
        let rename = |from: &'static str, to: &'static str| {
            let sql = format!("ALTER TABLE {from} RENAME TO {to}");
            let store = store.clone();
            async move {
                store
                    .with(move |c| c.execute_batch(&sql).map_err(failed))
                    .await
            }
        };
        rename("webhook_deliveries", "gone").await.unwrap();
        assert!(hooks.put_event(&event("e-1")).await.is_err());
        assert!(store
            .get_event(Source::Stack, "e-1")
            .await
            .unwrap()
            .is_none());
        rename("gone", "webhook_deliveries").await.unwrap();
        assert_eq!(
            hooks.put_event(&event("e-1")).await.unwrap(),
            PutOutcome::Stored
        );
        assert_eq!(
            hooks.due_deliveries(Utc::now(), 100).await.unwrap().len(),
            1
        );
    }

    #[tokio::test]
    async fn an_unreadable_subscription_does_not_stop_events_from_being_stored() {
        let store = SqliteStore::in_memory().unwrap();
        let hooks = SqliteWebhookStore::open(&store).unwrap();
        hooks
            .create_subscription(&subscription("all", serde_json::json!({})))
            .await
            .unwrap();
        store
            .with(|c| {
                c.execute(
                    "INSERT INTO webhook_subscriptions (name, doc) VALUES ('broken', 'not json')",
                    [],
                )
                .map_err(failed)
            })
            .await
            .unwrap();
        assert_eq!(
            hooks.put_event(&event("e-1")).await.unwrap(),
            PutOutcome::Stored
        );
        let due = hooks.due_deliveries(Utc::now(), 100).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].subscription, "all");
        assert!(
            hooks.list_subscriptions().await.is_err(),
            "the listing shows the problem"
        );
    }

    #[tokio::test]
    async fn expired_deliveries_and_attempts_are_purged() {
        let store = SqliteStore::in_memory().unwrap();
        let hooks = SqliteWebhookStore::open(&store).unwrap();
        hooks
            .create_subscription(&subscription("all", serde_json::json!({})))
            .await
            .unwrap();
        hooks.put_event(&event("e-1")).await.unwrap();
        let d = hooks.due_deliveries(Utc::now(), 1).await.unwrap().remove(0);
        let record = AttemptRecord {
            delivery_id: d.id.clone(),
            number: 1,
            attempt: crate::net::Attempt::template_failed(
                Utc::now(),
                &crate::template::TemplateError::Exec("x".into()),
            ),
            expires_at: d.expires_at,
        };
        let mut next = d.clone();
        next.attempts = 1;
        hooks
            .record_attempt(&next, d.version, &record)
            .await
            .unwrap();
        assert_eq!(hooks.purge_expired(Utc::now()).await.unwrap(), 0);
        assert_eq!(
            hooks
                .purge_expired(Utc::now() + chrono::TimeDelta::days(4))
                .await
                .unwrap(),
            2
        );
        assert_eq!(hooks.get_delivery(&d.id).await.unwrap(), None);
        assert_eq!(hooks.next_due().await.unwrap(), None);
    }
}
