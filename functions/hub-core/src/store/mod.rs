//! The event store, as small capabilities. Handlers ask only for what they use, so the same
//! handler runs against DynamoDB, the embedded store and the in-memory test store.

pub mod dynamo;
#[cfg(any(test, feature = "test-util"))]
pub mod memory;
pub mod retention;

use crate::event::{Event, Source};
use chrono::{DateTime, Utc};
use std::future::Future;

pub use dynamo::{DynamoStore, TableLayout};
pub use retention::Retained;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Stored,
    /// An event with the same `(source, event_id)` was already stored; nothing was written.
    Duplicate,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Throttling, timeouts, refused connections, 5xx: the sender should retry later.
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    /// A pagination cursor that this store did not issue.
    #[error("invalid pagination cursor")]
    BadCursor,
    /// The event is larger than one stored item can be (DynamoDB's 400 KB). Every store refuses
    /// the same events, so SQLite and DynamoDB answer alike: 413, never a retry loop.
    #[error("event is larger than {limit} bytes, the most one stored item holds")]
    TooLarge { limit: usize },
    /// An id, subject or alias longer than an index key may be (DynamoDB: 2048 bytes for a
    /// partition key, 1024 for a sort key). Refused alike by every store: 400, never a retry.
    #[error("event {field} is longer than {limit} bytes")]
    KeyTooLong { field: &'static str, limit: usize },
    /// Anything else: permissions, a missing table, an item this code cannot read.
    #[error("event store failure: {0}")]
    Failed(String),
}

/// How many events a page holds, and where it starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    /// The `next` of the previous page; `None` for the first page.
    pub cursor: Option<String>,
}

impl PageRequest {
    pub const MAX_LIMIT: u32 = 100;

    pub fn first(limit: u32) -> Self {
        PageRequest {
            limit,
            cursor: None,
        }
    }

    /// The limit clamped to `1..=MAX_LIMIT`.
    pub fn effective_limit(&self) -> u32 {
        self.limit.clamp(1, Self::MAX_LIMIT)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub events: Vec<Event>,
    /// Opaque cursor for the following page; `None` when this page is the last.
    pub next: Option<String>,
}

/// A closed-open time range `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// The most an event's variable parts (payload, ids, subject, type) may add up to: DynamoDB's
/// item limit is 400 KB including attribute names and the fixed attributes, so this leaves room.
pub const MAX_EVENT_BYTES: usize = 380 * 1024;

/// The longest event id: it ends every sort key (`{time}#{event_id}`, at most 1024 bytes).
pub const MAX_EVENT_ID_BYTES: usize = 960;
/// The longest subject or alias: they end partition keys (`{source}#{subject}`, at most 2048).
pub const MAX_SUBJECT_BYTES: usize = 2000;

/// Refuses an event no store can hold; stores call it before writing.
pub fn check_event_size(event: &Event) -> Result<(), StoreError> {
    let too_long = |field, limit| Err(StoreError::KeyTooLong { field, limit });
    if event.event_id.len() > MAX_EVENT_ID_BYTES {
        return too_long("id", MAX_EVENT_ID_BYTES);
    }
    if event.subject.len() > MAX_SUBJECT_BYTES
        || event
            .subject_alias
            .as_ref()
            .is_some_and(|a| a.len() > MAX_SUBJECT_BYTES)
    {
        return too_long("subject", MAX_SUBJECT_BYTES);
    }
    let size = event.payload.len()
        + event.event_id.len()
        + event.event_type.len()
        + 2 * event.subject.len()
        + event.subject_alias.as_ref().map_or(0, |a| 2 * a.len());
    if size > MAX_EVENT_BYTES {
        return Err(StoreError::TooLarge {
            limit: MAX_EVENT_BYTES,
        });
    }
    Ok(())
}

/// Stores an event once: a duplicate never overwrites, and concurrent duplicates produce one item.
pub trait EventWriter: Send + Sync {
    fn put_event(
        &self,
        event: &Event,
    ) -> impl Future<Output = Result<PutOutcome, StoreError>> + Send;
}

/// "Have we stored this event id already?"
pub trait EventLookup: Send + Sync {
    fn get_event(
        &self,
        source: Source,
        event_id: &str,
    ) -> impl Future<Output = Result<Option<Event>, StoreError>> + Send;
}

/// The events about one subject, newest first.
pub trait SubjectHistory: Send + Sync {
    fn events_about(
        &self,
        source: Source,
        subject: &str,
        page: &PageRequest,
    ) -> impl Future<Output = Result<Page, StoreError>> + Send;
}

/// The latest state-setting event about a subject, and subject lookup by alias.
pub trait LatestState: Send + Sync {
    fn latest_about(
        &self,
        source: Source,
        subject: &str,
    ) -> impl Future<Output = Result<Option<Event>, StoreError>> + Send;

    /// The newest state-setting event about `subject` whose id begins with `id_prefix`: the
    /// latest of one sender's events where senders that name their ids apart share subjects.
    fn latest_with_id_prefix(
        &self,
        source: Source,
        subject: &str,
        id_prefix: &str,
    ) -> impl Future<Output = Result<Option<Event>, StoreError>> + Send;

    /// The subject that an alias (a stack id, say) names, if any event carried that alias.
    fn subject_for_alias(
        &self,
        source: Source,
        alias: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
}

/// The events of one source in a time range, oldest first.
pub trait SourceTimeline: Send + Sync {
    fn events_between(
        &self,
        source: Source,
        range: TimeRange,
        page: &PageRequest,
    ) -> impl Future<Output = Result<Page, StoreError>> + Send;
}

/// The events of one source in a time range newest first, and how many there are: what a
/// console lists and charts. Same range semantics as [`SourceTimeline`] (`[from, to)` on the
/// event time), and the same kind of opaque cursors.
pub trait RecentEvents: Send + Sync {
    fn events_newest_first(
        &self,
        source: Source,
        range: TimeRange,
        page: &PageRequest,
    ) -> impl Future<Output = Result<Page, StoreError>> + Send;

    /// How many events of `source` fall in `range`, without reading their payloads.
    fn count_between(
        &self,
        source: Source,
        range: TimeRange,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// Every capability together, for code that needs the whole store (the local server, the CLI).
pub trait EventStore:
    EventWriter + EventLookup + SubjectHistory + LatestState + SourceTimeline + RecentEvents
{
}

impl<T> EventStore for T where
    T: EventWriter + EventLookup + SubjectHistory + LatestState + SourceTimeline + RecentEvents
{
}

impl<T: EventWriter + ?Sized> EventWriter for std::sync::Arc<T> {
    fn put_event(
        &self,
        event: &Event,
    ) -> impl Future<Output = Result<PutOutcome, StoreError>> + Send {
        (**self).put_event(event)
    }
}
impl<T: EventLookup + ?Sized> EventLookup for std::sync::Arc<T> {
    fn get_event(
        &self,
        source: Source,
        event_id: &str,
    ) -> impl Future<Output = Result<Option<Event>, StoreError>> + Send {
        (**self).get_event(source, event_id)
    }
}
impl<T: SubjectHistory + ?Sized> SubjectHistory for std::sync::Arc<T> {
    fn events_about(
        &self,
        source: Source,
        subject: &str,
        page: &PageRequest,
    ) -> impl Future<Output = Result<Page, StoreError>> + Send {
        (**self).events_about(source, subject, page)
    }
}
impl<T: LatestState + ?Sized> LatestState for std::sync::Arc<T> {
    fn latest_about(
        &self,
        source: Source,
        subject: &str,
    ) -> impl Future<Output = Result<Option<Event>, StoreError>> + Send {
        (**self).latest_about(source, subject)
    }
    fn latest_with_id_prefix(
        &self,
        source: Source,
        subject: &str,
        id_prefix: &str,
    ) -> impl Future<Output = Result<Option<Event>, StoreError>> + Send {
        (**self).latest_with_id_prefix(source, subject, id_prefix)
    }
    fn subject_for_alias(
        &self,
        source: Source,
        alias: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send {
        (**self).subject_for_alias(source, alias)
    }
}
impl<T: SourceTimeline + ?Sized> SourceTimeline for std::sync::Arc<T> {
    fn events_between(
        &self,
        source: Source,
        range: TimeRange,
        page: &PageRequest,
    ) -> impl Future<Output = Result<Page, StoreError>> + Send {
        (**self).events_between(source, range, page)
    }
}
impl<T: RecentEvents + ?Sized> RecentEvents for std::sync::Arc<T> {
    fn events_newest_first(
        &self,
        source: Source,
        range: TimeRange,
        page: &PageRequest,
    ) -> impl Future<Output = Result<Page, StoreError>> + Send {
        (**self).events_newest_first(source, range, page)
    }
    fn count_between(
        &self,
        source: Source,
        range: TimeRange,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        (**self).count_between(source, range)
    }
}
