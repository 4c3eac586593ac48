//! The embedded store: SQLite (bundled), with the same capabilities and the same idempotency
//! guarantee as the DynamoDB store: a primary key on `(source, event_id)` and one
//! `INSERT ... ON CONFLICT DO NOTHING` statement, so a duplicate is detected, never written.
//!
//! WAL journal, and a reply is sent only after the event's commit is on disk: every write waits
//! for a sync of the log that started after its commit, shared by the writes committed
//! meanwhile (group commit, [`durability`]). Readers never block the writer.
//!
//! Writes come first. Every write (the events', and other crates' tables through [`SqliteStore::with`])
//! goes through one writer connection, entered through a gate with a wait deadline: a write
//! either starts within [`WRITE_WAIT`] or fails as `Unavailable` (503 with `Retry-After`, so the
//! sender retries), instead of queueing behind reads past a sender's deadline (DingTalk gives
//! 1.5 s, docs/protocols.md). The read capabilities run on a small pool of separate read-only
//! connections, which WAL lets read concurrently with the writer; a flood of reads waits for
//! those and never for the writer. The database file (and so its `-wal` and `-shm` files, which
//! SQLite creates with the database's mode) is created readable by its owner only.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hub_core::event::{format_time, parse_time, Event, Source};
use hub_core::store::{
    EventLookup, EventWriter, LatestState, Page, PageRequest, PutOutcome, RecentEvents,
    SourceTimeline, StoreError, SubjectHistory, TimeRange,
};
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Row};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

pub mod durability;
use durability::GroupSync;

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
-- The periodic purge finds expired events without reading the table.
CREATE INDEX IF NOT EXISTS events_by_expiry ON events (expires_at)
    WHERE expires_at IS NOT NULL;
";

const COLUMNS: &str = "source, event_id, event_type, subject, subject_alias, sets_state, \
                       occurred_at, received_at, payload, expires_at";

/// A cursor is the order key of the last event of a page, so the next page starts after it.
const CURSOR_PREFIX: &str = "sqlite:";

/// How long a write waits for the writer connection before it fails as `Unavailable`.
pub const WRITE_WAIT: Duration = Duration::from_secs(1);

/// How long the writer waits for another process's lock on the file (SQLite's busy timeout)
/// before the write fails as `Unavailable`: with [`WRITE_WAIT`], the bound on a write's wait.
const WRITER_BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// Read connections of a database file: reads run concurrently up to this many.
pub const READERS: usize = 4;

/// Expired events are deleted this many at a time, each batch its own short write, so that
/// webhook writes queued behind a large purge wait for one batch at most.
const PURGE_BATCH: i64 = 500;

#[derive(Clone)]
pub struct SqliteStore {
    /// One permit: who holds it may use the writer. Waited for asynchronously, with a deadline,
    /// so a queue of writes holds no blocking threads.
    write_gate: Arc<Semaphore>,
    writer: Arc<Mutex<Connection>>,
    write_wait: Duration,
    /// `None` for an in-memory database (its connections cannot share it): reads use the writer.
    readers: Option<Arc<Readers>>,
    /// `None` for an in-memory database, which has nothing to make durable.
    durability: Option<Arc<GroupSync>>,
}

/// The read-only connections, and as many permits as there are connections.
struct Readers {
    gate: Arc<Semaphore>,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

/// A SQLite error as a store error. What a retry can cure is `Unavailable` (503 with
/// `Retry-After`): another holder of the lock, a full disk, an I/O error, a file that cannot be
/// opened right now, memory. Anything else (a corrupt file, a constraint, a bug) is `Failed`.
pub fn failed(err: rusqlite::Error) -> StoreError {
    match err {
        rusqlite::Error::SqliteFailure(e, _) if is_transient(e.code) => {
            StoreError::Unavailable(err.to_string())
        }
        other => StoreError::Failed(other.to_string()),
    }
}

fn is_transient(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen
            | ErrorCode::OutOfMemory
            | ErrorCode::FileLockingProtocolFailed
    )
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Failed("store lock poisoned".into())
}

fn task_failed(err: tokio::task::JoinError) -> StoreError {
    StoreError::Failed(format!("store task failed: {err}"))
}

/// Creates the database file readable and writable by its owner only, before SQLite opens it:
/// the events hold every sender's payload. An existing file keeps its mode.
#[cfg(unix)]
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let special = path.as_os_str().is_empty()
        || path.as_os_str() == ":memory:"
        || path.to_str().is_some_and(|p| p.starts_with("file:"));
    if special {
        return Ok(());
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(StoreError::Failed(format!(
            "cannot create {}: {err}",
            path.display()
        ))),
    }
}

#[cfg(not(unix))]
fn create_private(_: &Path) -> Result<(), StoreError> {
    Ok(())
}

impl SqliteStore {
    /// Opens (or creates, mode 0600) the database file at `path`: one writer connection and
    /// [`READERS`] read-only ones.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        create_private(path)?;
        let writer = Connection::open(path).map_err(failed)?;
        let mut store = Self::init(writer)?;
        // Commits are made durable by the group sync that every write waits for.
        store
            .writer
            .lock()
            .map_err(poisoned)?
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(failed)?;
        store.durability = Some(Arc::new(GroupSync::for_wal_of(path)));
        let idle = (0..READERS)
            .map(|_| open_reader(path))
            .collect::<Result<Vec<_>, _>>()?;
        store.readers = Some(Arc::new(Readers {
            gate: Arc::new(Semaphore::new(idle.len())),
            idle: Mutex::new(idle),
        }));
        Ok(store)
    }

    /// A private in-memory database (tests). Reads share the writer connection.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(failed)?)
    }

    /// The same store with another deadline for a write to get the writer (default
    /// [`WRITE_WAIT`]).
    pub fn with_write_wait(mut self, wait: Duration) -> Self {
        self.write_wait = wait;
        self
    }

    /// Runs schema statements of another crate's tables (idempotent `CREATE ... IF NOT EXISTS`),
    /// at start, before the store serves requests.
    pub fn execute_batch(&self, sql: &str) -> Result<(), StoreError> {
        let connection = self.writer.lock().map_err(poisoned)?;
        connection.execute_batch(sql).map_err(failed)
    }

    fn init(connection: Connection) -> Result<Self, StoreError> {
        connection
            .busy_timeout(WRITER_BUSY_TIMEOUT)
            .map_err(failed)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(failed)?;
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(failed)?;
        connection.execute_batch(SCHEMA).map_err(failed)?;
        Ok(SqliteStore {
            write_gate: Arc::new(Semaphore::new(1)),
            writer: Arc::new(Mutex::new(connection)),
            write_wait: WRITE_WAIT,
            readers: None,
            durability: None,
        })
    }

    /// Runs `work` on the writer connection off the async threads: SQLite calls block. Other
    /// crates keep their own tables in the same file through it (the mirror ledger, the
    /// webhooks outbox), so that one connection serializes every write. Fails as `Unavailable`
    /// when the writer is not free within the write deadline. Returns once what `work`
    /// committed (and whatever it read) is on disk.
    pub async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let permit = tokio::time::timeout(self.write_wait, self.write_gate.clone().acquire_owned())
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "the database writer was busy for {} ms",
                    self.write_wait.as_millis()
                ))
            })?
            .map_err(|_| StoreError::Failed("store closed".into()))?;
        let writer = self.writer.clone();
        let durability = self.durability.clone();
        tokio::task::spawn_blocking(move || {
            // The permit goes with the work: a caller that stops waiting (a request past its
            // deadline) does not free the writer while the work still runs.
            let (result, commit) = {
                let mut connection = writer.lock().map_err(poisoned)?;
                let result = work(&mut connection);
                (result, durability.as_ref().map(|d| d.committed()))
            };
            drop(permit);
            // Even work that wrote nothing waits: it may have read a commit (a duplicate's
            // original) whose own writer is still waiting for its sync.
            if let (Some(durability), Some(commit)) = (&durability, commit) {
                durability.wait_durable(commit)?;
            }
            result
        })
        .await
        .map_err(task_failed)?
    }

    /// Runs read-only `work` on a read connection (the writer's for an in-memory database): it
    /// waits for other reads only, never for a write, and never delays one.
    pub async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let Some(readers) = &self.readers else {
            return self.with(move |c| work(c)).await;
        };
        let permit = readers
            .gate
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Failed("store closed".into()))?;
        let readers = readers.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let lease = Lease::take(&readers)?;
            work(lease.connection())
        })
        .await
        .map_err(task_failed)?
    }

    /// How many events the database holds.
    pub async fn count(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            c.query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(failed)
        })
        .await
    }

    /// Deletes events whose retention (`EVENT_TTL_DAYS`) has passed, as DynamoDB's TTL does, in
    /// short batches so that webhook writes interleave with a large purge.
    pub async fn purge_expired(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let now = now.timestamp();
        let mut purged = 0;
        loop {
            let deleted = self
                .with(move |c| {
                    c.prepare_cached(
                        "DELETE FROM events WHERE rowid IN (SELECT rowid FROM events \
                         WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT ?2)",
                    )
                    .and_then(|mut s| s.execute(params![now, PURGE_BATCH]))
                    .map_err(failed)
                })
                .await?;
            purged += deleted;
            if (deleted as i64) < PURGE_BATCH {
                return Ok(purged);
            }
        }
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
        self.read(move |c| {
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

/// A read connection of a file database: it never writes (`query_only`), so it cannot take the
/// write lock away from the writer.
fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open(path).map_err(failed)?;
    connection
        .busy_timeout(Duration::from_secs(5))
        .map_err(failed)?;
    connection
        .pragma_update(None, "query_only", true)
        .map_err(failed)?;
    Ok(connection)
}

/// A read connection taken from the pool, given back when dropped (also when the work panics).
struct Lease<'a> {
    readers: &'a Readers,
    connection: Option<Connection>,
}

impl<'a> Lease<'a> {
    /// Holding a permit of the pool's gate guarantees an idle connection.
    fn take(readers: &'a Readers) -> Result<Self, StoreError> {
        let connection = readers.idle.lock().map_err(poisoned)?.pop();
        match connection {
            Some(connection) => Ok(Lease {
                readers,
                connection: Some(connection),
            }),
            None => Err(StoreError::Failed("no read connection left".into())),
        }
    }

    fn connection(&self) -> &Connection {
        self.connection.as_ref().expect("held until dropped")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let (Some(connection), Ok(mut idle)) = (self.connection.take(), self.readers.idle.lock())
        {
            idle.push(connection);
        }
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

// Public only for the fuzz targets (fuzz/) and property tests: cursors come from clients.
#[doc(hidden)]
pub fn encode_cursor(order_key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{order_key}"))
}

#[doc(hidden)]
pub fn decode_cursor(cursor: &str) -> Result<String, StoreError> {
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

impl SqliteStore {
    /// Stores `event` as [`EventWriter::put_event`] does and, when it is new (not a duplicate),
    /// runs `extra` in the same transaction: both are committed or neither. The webhooks outbox
    /// writes an event's deliveries this way, so that an event stored is an event delivered
    /// across a crash. Returns the outcome and what `extra` returned (`None` for a duplicate).
    pub async fn put_event_with<T: Send + 'static>(
        &self,
        event: &Event,
        extra: impl FnOnce(&rusqlite::Transaction<'_>, &Event) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<(PutOutcome, Option<T>), StoreError> {
        hub_core::store::check_event_size(event)?;
        let event = event.clone();
        self.with(move |c| {
            let tx = c.transaction().map_err(failed)?;
            if !insert_event(&tx, &event)? {
                return Ok((PutOutcome::Duplicate, None));
            }
            let extra = extra(&tx, &event)?;
            tx.commit().map_err(failed)?;
            Ok((PutOutcome::Stored, Some(extra)))
        })
        .await
    }
}

/// Inserts an event unless one with its `(source, event_id)` exists: whether it was inserted.
/// One statement, so a duplicate is detected, never written.
fn insert_event(c: &Connection, event: &Event) -> Result<bool, StoreError> {
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
    Ok(inserted == 1)
}

impl EventWriter for SqliteStore {
    async fn put_event(&self, event: &Event) -> Result<PutOutcome, StoreError> {
        hub_core::store::check_event_size(event)?;
        let event = event.clone();
        self.with(move |c| {
            Ok(if insert_event(c, &event)? {
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
        self.read(move |c| {
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
        self.read(move |c| {
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

    async fn latest_with_id_prefix(
        &self,
        source: Source,
        subject: &str,
        id_prefix: &str,
    ) -> Result<Option<Event>, StoreError> {
        let subject = subject.to_owned();
        let id_prefix = id_prefix.to_owned();
        self.read(move |c| {
            // substr, not LIKE: a prefix is compared as it is, `_` and `%` included.
            c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM events WHERE source = ?1 AND subject = ?2 \
                 AND sets_state = 1 AND substr(event_id, 1, length(?3)) = ?3 \
                 ORDER BY event_key DESC LIMIT 1"
            ))
            .and_then(|mut s| {
                s.query_row(params![source.as_str(), subject, id_prefix], row_to_event)
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
        self.read(move |c| {
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

/// `from` as a lower bound that admits keys at exactly `from`: any key at `from` sorts after
/// `from` with its last character lowered.
fn inclusive_lower(from: DateTime<Utc>) -> String {
    let from = format_time(from);
    match from.char_indices().last() {
        Some((i, _)) => format!("{}{}", &from[..i], char::from(b'Z' - 1)),
        None => from,
    }
}

impl RecentEvents for SqliteStore {
    async fn events_newest_first(
        &self,
        source: Source,
        range: TimeRange,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        // The upper bound is `?3` (the range end, or the cursor); the lower one is `?2`.
        const QUERY: &str = "SELECT source, event_id, event_type, subject, subject_alias, \
            sets_state, occurred_at, received_at, payload, expires_at FROM events \
            WHERE source = ?1 AND event_key > ?2 AND event_key < ?3 \
            ORDER BY event_key DESC LIMIT ?4";
        if range.to <= range.from {
            return Ok(Page {
                events: Vec::new(),
                next: None,
            });
        }
        self.page(
            QUERY,
            source.as_str().to_owned(),
            inclusive_lower(range.from),
            format_time(range.to),
            page,
        )
        .await
    }

    async fn count_between(&self, source: Source, range: TimeRange) -> Result<u64, StoreError> {
        if range.to <= range.from {
            return Ok(0);
        }
        let (low, high) = (inclusive_lower(range.from), format_time(range.to));
        self.read(move |c| {
            c.prepare_cached(
                "SELECT COUNT(*) FROM events WHERE source = ?1 AND event_key > ?2 \
                 AND event_key < ?3",
            )
            .and_then(|mut s| {
                s.query_row(params![source.as_str(), low, high], |r| r.get::<_, i64>(0))
            })
            .map(|n| n.max(0) as u64)
            .map_err(failed)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("callback-hub-sqlite-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("events.db")
    }

    fn event(id: &str) -> Event {
        Event::new(Source::Mns, id, "orders", "orders", "{}", Utc::now())
    }

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
        let path = temp_path("reopen");
        let store = SqliteStore::open(&path).unwrap();
        let event = event("m-1").retained_for_days(Some(1));
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
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[tokio::test]
    async fn a_purge_larger_than_one_batch_removes_every_expired_event_and_no_other() {
        let store = SqliteStore::in_memory().unwrap();
        let expired = PURGE_BATCH as usize * 2 + 7;
        for n in 0..expired {
            let e = event(&format!("old-{n}")).retained_for_days(Some(1));
            store.put_event(&e).await.unwrap();
        }
        store.put_event(&event("kept")).await.unwrap();
        let later = Utc::now() + chrono::Duration::days(2);
        assert_eq!(store.purge_expired(later).await.unwrap(), expired);
        assert_eq!(store.count().await.unwrap(), 1);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_database_and_its_wal_files_are_readable_by_the_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let path = temp_path("mode");
        let store = SqliteStore::open(&path).unwrap();
        store.put_event(&event("m-1")).await.unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let file = format!("{}{suffix}", path.display());
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{file}: {mode:o}");
        }
        drop(store);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[tokio::test]
    async fn a_full_disk_is_unavailable_not_a_failure() {
        let store = SqliteStore::in_memory().unwrap();
        // The database may not grow by a page: what SQLite answers when the disk is full.
        store
            .with(|c| {
                let pages: i64 = c
                    .query_row("PRAGMA page_count", [], |r| r.get(0))
                    .map_err(failed)?;
                c.pragma_update(None, "max_page_count", pages)
                    .map_err(failed)
            })
            .await
            .unwrap();
        let mut big = event("big");
        big.payload = format!("\"{}\"", "x".repeat(100_000));
        let result = store.put_event(&big).await;
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "{result:?}"
        );
    }

    #[test]
    fn io_errors_are_unavailable_and_corruption_is_a_failure() {
        let error = |code| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
        for code in [
            rusqlite::ffi::SQLITE_FULL,
            rusqlite::ffi::SQLITE_IOERR,
            rusqlite::ffi::SQLITE_IOERR_WRITE,
            rusqlite::ffi::SQLITE_IOERR_FSYNC,
            rusqlite::ffi::SQLITE_BUSY,
            rusqlite::ffi::SQLITE_LOCKED,
            rusqlite::ffi::SQLITE_CANTOPEN,
        ] {
            assert!(
                matches!(failed(error(code)), StoreError::Unavailable(_)),
                "{code}"
            );
        }
        for code in [
            rusqlite::ffi::SQLITE_CORRUPT,
            rusqlite::ffi::SQLITE_NOTADB,
            rusqlite::ffi::SQLITE_CONSTRAINT,
        ] {
            assert!(
                matches!(failed(error(code)), StoreError::Failed(_)),
                "{code}"
            );
        }
    }

    /// Holds the writer (or a reader) until `release` is dropped; `held` learns it is held.
    fn blocker(
        held: tokio::sync::mpsc::UnboundedSender<()>,
        release: std::sync::mpsc::Receiver<()>,
    ) -> impl FnOnce() + Send + 'static {
        move || {
            held.send(()).unwrap();
            let _ = release.recv();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_that_cannot_get_the_writer_in_time_is_unavailable() {
        let store = SqliteStore::in_memory()
            .unwrap()
            .with_write_wait(Duration::from_millis(50));
        let (held, mut is_held) = tokio::sync::mpsc::unbounded_channel();
        let (release, released) = std::sync::mpsc::channel();
        let hold = blocker(held, released);
        let holder = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .with(move |_| {
                        hold();
                        Ok(())
                    })
                    .await
            }
        });
        is_held.recv().await.unwrap();
        let result = store.put_event(&event("waits")).await;
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "{result:?}"
        );
        drop(release);
        holder.await.unwrap().unwrap();
        assert_eq!(
            store.put_event(&event("waits")).await.unwrap(),
            PutOutcome::Stored
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_do_not_wait_for_reads() {
        let path = temp_path("priority");
        let store = SqliteStore::open(&path).unwrap();
        let (held, mut is_held) = tokio::sync::mpsc::unbounded_channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = Arc::new(Mutex::new(released));
        // Every read connection busy, and more reads queued behind them.
        let mut readers = Vec::new();
        for _ in 0..READERS * 2 {
            let (store, held, released) = (store.clone(), held.clone(), released.clone());
            readers.push(tokio::spawn(async move {
                store
                    .read(move |_| {
                        held.send(()).unwrap();
                        let _ = released.lock().unwrap().recv();
                        Ok(())
                    })
                    .await
            }));
        }
        for _ in 0..READERS {
            is_held.recv().await.unwrap();
        }
        assert_eq!(
            store.put_event(&event("webhook")).await.unwrap(),
            PutOutcome::Stored
        );
        drop(release);
        for reader in readers {
            reader.await.unwrap().unwrap();
        }
        assert_eq!(store.count().await.unwrap(), 1);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
