//! The event store, as small capabilities. Handlers ask only for what they use, so the same
//! handler runs against DynamoDB, the embedded store and the in-memory test store.

pub mod dynamo;
#[cfg(any(test, feature = "test-util"))]
pub mod memory;

use crate::event::{Event, Source};
use chrono::{DateTime, Utc};
use std::future::Future;

pub use dynamo::{DynamoStore, TableLayout};

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

/// One ordered change to an object, as the mirror ledger sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerClaim {
    /// `bucket/key` of the source object.
    pub object: String,
    /// The sender's sequencer, normalized so that byte order is event order.
    pub sequencer: String,
    /// The event that carries the change (its idempotency key).
    pub event_id: String,
    /// What the change does to the mirror (`copy` or `delete`).
    pub action: String,
}

/// What the ledger last recorded for an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub sequencer: String,
    pub event_id: String,
    pub action: String,
    /// Whether the change was applied to the mirror, not only claimed.
    pub applied: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The change is the newest seen for its object (or a retry of one that was claimed but
    /// never applied): the caller applies it. `tie` is set when another event carried the same
    /// sequencer, so that the order between the two is unknown and the caller must look at the
    /// source instead of trusting the event.
    Claimed { tie: bool },
    /// This very change was applied already: a retry, to be acknowledged without redoing it.
    AlreadyApplied,
    /// A newer change to the object was claimed: applying this one would undo it.
    Superseded,
}

/// The last change applied per object, for mirrors that must apply changes in sequencer order
/// whatever order they arrive in. Every write is conditional, so concurrent claims are safe.
pub trait MirrorLedger: Send + Sync {
    /// Claims a change if it is newer than the object's entry (or retries an unapplied one).
    fn claim(
        &self,
        claim: &LedgerClaim,
    ) -> impl Future<Output = Result<ClaimOutcome, StoreError>> + Send;

    /// Marks a claimed change applied. `false` when a newer claim overtook it meanwhile.
    fn mark_applied(
        &self,
        claim: &LedgerClaim,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    fn ledger_entry(
        &self,
        object: &str,
    ) -> impl Future<Output = Result<Option<LedgerEntry>, StoreError>> + Send;
}

/// The decision every ledger makes, from the entry it holds: one definition, so that the stores
/// cannot disagree on it.
pub fn decide_claim(current: Option<&LedgerEntry>, claim: &LedgerClaim) -> ClaimOutcome {
    let Some(entry) = current else {
        return ClaimOutcome::Claimed { tie: false };
    };
    match entry.sequencer.as_str().cmp(claim.sequencer.as_str()) {
        std::cmp::Ordering::Less => ClaimOutcome::Claimed { tie: false },
        std::cmp::Ordering::Greater => ClaimOutcome::Superseded,
        std::cmp::Ordering::Equal if entry.event_id != claim.event_id => {
            ClaimOutcome::Claimed { tie: true }
        }
        std::cmp::Ordering::Equal if entry.applied => ClaimOutcome::AlreadyApplied,
        std::cmp::Ordering::Equal => ClaimOutcome::Claimed { tie: false },
    }
}

/// Every capability together, for code that needs the whole store (the local server, the CLI).
pub trait EventStore:
    EventWriter + EventLookup + SubjectHistory + LatestState + SourceTimeline + MirrorLedger
{
}

impl<T> EventStore for T where
    T: EventWriter + EventLookup + SubjectHistory + LatestState + SourceTimeline + MirrorLedger
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
    fn subject_for_alias(
        &self,
        source: Source,
        alias: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send {
        (**self).subject_for_alias(source, alias)
    }
}
impl<T: MirrorLedger + ?Sized> MirrorLedger for std::sync::Arc<T> {
    fn claim(
        &self,
        claim: &LedgerClaim,
    ) -> impl Future<Output = Result<ClaimOutcome, StoreError>> + Send {
        (**self).claim(claim)
    }
    fn mark_applied(
        &self,
        claim: &LedgerClaim,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).mark_applied(claim)
    }
    fn ledger_entry(
        &self,
        object: &str,
    ) -> impl Future<Output = Result<Option<LedgerEntry>, StoreError>> + Send {
        (**self).ledger_entry(object)
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
