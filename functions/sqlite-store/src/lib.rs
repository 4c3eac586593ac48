//! The embedded store: SQLite (bundled), with the same capabilities and the same idempotency
//! guarantee as the DynamoDB store: a primary key on `(source, event_id)` and one
//! `INSERT ... ON CONFLICT DO NOTHING` statement, so a duplicate is detected, never written.
//!
//! WAL journal with `synchronous = FULL`: a reply is sent only after the event's commit is on
//! disk, and readers (the `events` command) never block the server's writes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hub_core::event::{format_time, parse_time, Event, Source};
use hub_core::store::{
    EventLookup, EventWriter, LatestState, Page, PageRequest, PutOutcome, SourceTimeline,
    StoreError, SubjectHistory, TimeRange,
};
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    source        TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    subject       TEXT NOT NULL,
    subject_alias TEXT,
    sets_state    INTEGER NOT NULL,
    occurred_at   TEXT,
    received_at   TEXT NOT NULL,
    payload       TEXT NOT NULL,
    expires_at    INTEGER,
    -- `{event time}#{event_id}`: the order key every index sorts by, as in DynamoDB.
    event_key     TEXT NOT NULL,
    PRIMARY KEY (source, event_id)
);
CREATE INDEX IF NOT EXISTS events_by_subject ON events (source, subject, event_key);
CREATE INDEX IF NOT EXISTS events_by_time ON events (source, event_key);
CREATE INDEX IF NOT EXISTS events_by_alias ON events (source, subject_alias, event_key)
    WHERE subject_alias IS NOT NULL;
";

const COLUMNS: &str = "source, event_id, event_type, subject, subject_alias, sets_state, \
                       occurred_at, received_at, payload, expires_at";

/// A cursor is the order key of the last event of a page, so the next page starts after it.
const CURSOR_PREFIX: &str = "sqlite:";

#[derive(Clone)]
pub struct SqliteStore {
    connection: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

/// A SQLite error as a store error: a busy or locked database is worth a retry.
pub fn failed(err: rusqlite::Error) -> StoreError {
    match err {
        // Another process holds the write lock past the busy timeout: worth a retry.
        rusqlite::Error::SqliteFailure(e, _)
            if matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            StoreError::Unavailable(err.to_string())
        }
        other => StoreError::Failed(other.to_string()),
    }
}

impl SqliteStore {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let connection = Connection::open(path).map_err(failed)?;
        Self::init(connection)
    }

    /// A private in-memory database (tests).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(failed)?)
    }

    /// Runs schema statements of another crate's tables (idempotent `CREATE ... IF NOT EXISTS`),
    /// at start, before the store serves requests.
    pub fn execute_batch(&self, sql: &str) -> Result<(), StoreError> {
        let connection = self
            .connection
            .lock()
            .map_err(|_| StoreError::Failed("store lock poisoned".into()))?;
        connection.execute_batch(sql).map_err(failed)
    }

    fn init(connection: Connection) -> Result<Self, StoreError> {
        connection
            .busy_timeout(Duration::from_secs(5))
            .map_err(failed)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(failed)?;
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(failed)?;
        connection.execute_batch(SCHEMA).map_err(failed)?;
        Ok(SqliteStore {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// Runs `work` on the connection off the async threads: SQLite calls block. Other crates
    /// keep their own tables in the same file through it (the mirror ledger, the webhooks
    /// outbox), so that one connection serializes every write.
    pub async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = connection
                .lock()
                .map_err(|_| StoreError::Failed("store lock poisoned".into()))?;
            work(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Failed(format!("store task failed: {e}")))?
    }

    /// How many events the database holds.
    pub async fn count(&self) -> Result<u64, StoreError> {
        self.with(|c| {
            c.query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(failed)
        })
        .await
    }

    /// Deletes events whose retention (`EVENT_TTL_DAYS`) has passed, as DynamoDB's TTL does.
    pub async fn purge_expired(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let now = now.timestamp();
        self.with(move |c| {
            c.execute(
                "DELETE FROM events WHERE expires_at IS NOT NULL AND expires_at <= ?1",
                params![now],
            )
            .map_err(failed)
        })
        .await
    }

    /// One page of `query` (which selects [`COLUMNS`], filters on `?1`/`?2` and the key bound
    /// `?3`, orders by `event_key` and ends with `LIMIT ?4`).
    async fn page(
        &self,
        query: &'static str,
        first: String,
        second: String,
        bound: String,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        let after = page.cursor.as_deref().map(decode_cursor).transpose()?;
        let limit = page.effective_limit();
        self.with(move |c| {
            let bound = after.unwrap_or(bound);
            let mut statement = c.prepare_cached(query).map_err(failed)?;
            let events = statement
                .query_map(
                    params![first, second, bound, i64::from(limit) + 1],
                    row_to_event,
                )
                .map_err(failed)?
                .collect::<Result<Result<Vec<_>, _>, _>>()
                .map_err(failed)??;
            Ok(paginate(events, limit))
        })
        .await
    }
}

fn paginate(mut events: Vec<Event>, limit: u32) -> Page {
    // One row more than the limit was read: it tells whether a next page exists.
    let next = if events.len() > limit as usize {
        events.truncate(limit as usize);
        events.last().map(|e| encode_cursor(&e.order_key()))
    } else {
        None
    };
    Page { events, next }
}

fn encode_cursor(order_key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{order_key}"))
}

fn decode_cursor(cursor: &str) -> Result<String, StoreError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| StoreError::BadCursor)?;
    String::from_utf8(bytes)
        .ok()
        .and_then(|text| text.strip_prefix(CURSOR_PREFIX).map(str::to_owned))
        .ok_or(StoreError::BadCursor)
}

fn row_to_event(row: &Row<'_>) -> rusqlite::Result<Result<Event, StoreError>> {
    let source: String = row.get(0)?;
    let occurred_at: Option<String> = row.get(6)?;
    let received_at: String = row.get(7)?;
    let event = (|| {
        let source: Source = source
            .parse()
            .map_err(|e| StoreError::Failed(format!("{e}")))?;
        let time = |text: &str| {
            parse_time(text).ok_or_else(|| StoreError::Failed("stored time is not RFC 3339".into()))
        };
        Ok(Event {
            source,
            event_id: row.get(1).map_err(failed)?,
            event_type: row.get(2).map_err(failed)?,
            subject: row.get(3).map_err(failed)?,
            subject_alias: row.get(4).map_err(failed)?,
            sets_state: row.get::<_, i64>(5).map_err(failed)? != 0,
            occurred_at: occurred_at.as_deref().map(time).transpose()?,
            received_at: time(&received_at)?,
            payload: row.get(8).map_err(failed)?,
            expires_at: row.get(9).map_err(failed)?,
        })
    })();
    Ok(event)
}

impl EventWriter for SqliteStore {
    async fn put_event(&self, event: &Event) -> Result<PutOutcome, StoreError> {
        hub_core::store::check_event_size(event)?;
        let event = event.clone();
        self.with(move |c| {
            let inserted = c
                .prepare_cached(
                    "INSERT INTO events (source, event_id, event_type, subject, subject_alias, \
                     sets_state, occurred_at, received_at, payload, expires_at, event_key) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
                     ON CONFLICT (source, event_id) DO NOTHING",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        event.source.as_str(),
                        event.event_id,
                        event.event_type,
                        event.subject,
                        event.subject_alias,
                        i64::from(event.sets_state),
                        event.occurred_at.map(format_time),
                        format_time(event.received_at),
                        event.payload,
                        event.expires_at,
                        event.order_key(),
                    ])
                })
                .map_err(failed)?;
            Ok(if inserted == 1 {
                PutOutcome::Stored
            } else {
                PutOutcome::Duplicate
            })
        })
        .await
    }
}

impl EventLookup for SqliteStore {
    async fn get_event(&self, source: Source, event_id: &str) -> Result<Option<Event>, StoreError> {
        let event_id = event_id.to_owned();
        self.with(move |c| {
            c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM events WHERE source = ?1 AND event_id = ?2"
            ))
            .and_then(|mut s| {
                s.query_row(params![source.as_str(), event_id], row_to_event)
                    .optional()
            })
            .map_err(failed)?
            .transpose()
        })
        .await
    }
}

impl SubjectHistory for SqliteStore {
    async fn events_about(
        &self,
        source: Source,
        subject: &str,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        const QUERY: &str = "SELECT source, event_id, event_type, subject, subject_alias, \
            sets_state, occurred_at, received_at, payload, expires_at FROM events \
            WHERE source = ?1 AND subject = ?2 AND event_key < ?3 \
            ORDER BY event_key DESC LIMIT ?4";
        // Every order key sorts below U+FFFF.
        self.page(
            QUERY,
            source.as_str().to_owned(),
            subject.to_owned(),
            "\u{ffff}".into(),
            page,
        )
        .await
    }
}

impl LatestState for SqliteStore {
    async fn latest_about(
        &self,
        source: Source,
        subject: &str,
    ) -> Result<Option<Event>, StoreError> {
        let subject = subject.to_owned();
        self.with(move |c| {
            c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM events WHERE source = ?1 AND subject = ?2 \
                 AND sets_state = 1 ORDER BY event_key DESC LIMIT 1"
            ))
            .and_then(|mut s| {
                s.query_row(params![source.as_str(), subject], row_to_event)
                    .optional()
            })
            .map_err(failed)?
            .transpose()
        })
        .await
    }

    async fn subject_for_alias(
        &self,
        source: Source,
        alias: &str,
    ) -> Result<Option<String>, StoreError> {
        let alias = alias.to_owned();
        self.with(move |c| {
            c.prepare_cached(
                "SELECT subject FROM events WHERE source = ?1 AND subject_alias = ?2 \
                 ORDER BY event_key DESC LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row(params![source.as_str(), alias], |r| r.get(0))
                    .optional()
            })
            .map_err(failed)
        })
        .await
    }
}

impl SourceTimeline for SqliteStore {
    async fn events_between(
        &self,
        source: Source,
        range: TimeRange,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        // The lower bound is `?3` (the range start, or the cursor); the upper one is `?2`.
        const QUERY: &str = "SELECT source, event_id, event_type, subject, subject_alias, \
            sets_state, occurred_at, received_at, payload, expires_at FROM events \
            WHERE source = ?1 AND event_key < ?2 AND event_key > ?3 \
            ORDER BY event_key ASC LIMIT ?4";
        // `from` is inclusive: any key at `from` sorts after `from` minus one character.
        let from = format_time(range.from);
        let inclusive_from = match from.char_indices().last() {
            Some((i, _)) => format!("{}{}", &from[..i], char::from(b'Z' - 1)),
            None => from,
        };
        self.page(
            QUERY,
            source.as_str().to_owned(),
            format_time(range.to),
            inclusive_from,
            page,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let key = "2024-01-01T00:00:00.000Z#id";
        assert_eq!(decode_cursor(&encode_cursor(key)).unwrap(), key);
        assert!(matches!(
            decode_cursor("bm90LWEtY3Vyc29y"),
            Err(StoreError::BadCursor)
        ));
        assert!(matches!(decode_cursor("%%%"), Err(StoreError::BadCursor)));
    }

    #[tokio::test]
    async fn the_file_is_in_wal_mode_and_reopens_with_its_events() {
        let dir = std::env::temp_dir().join(format!("callback-hub-sqlite-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.db");
        let _ = std::fs::remove_file(&path);
        let store = SqliteStore::open(&path).unwrap();
        let event = Event::new(Source::Mns, "m-1", "orders", "orders", "{}", Utc::now())
            .retained_for_days(Some(1));
        assert_eq!(store.put_event(&event).await.unwrap(), PutOutcome::Stored);
        let mode: String = store
            .with(|c| {
                c.query_row("PRAGMA journal_mode", [], |r| r.get(0))
                    .map_err(failed)
            })
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        drop(store);
        let reopened = SqliteStore::open(&path).unwrap();
        assert_eq!(reopened.count().await.unwrap(), 1);
        assert_eq!(
            reopened.put_event(&event).await.unwrap(),
            PutOutcome::Duplicate
        );
        // Retention: gone once its expiry has passed, not before.
        assert_eq!(reopened.purge_expired(Utc::now()).await.unwrap(), 0);
        let later = Utc::now() + chrono::Duration::days(2);
        assert_eq!(reopened.purge_expired(later).await.unwrap(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
