//! The mirror's ledger: the last change applied per source object, so that changes are applied
//! to the mirror in sequencer order whatever order they arrive in. Every write is conditional,
//! so concurrent claims are safe. It lives beside the events (the same DynamoDB table, the same
//! SQLite file) but is not an event store capability: only the mirror uses it.

pub mod dynamo;
#[cfg(any(test, feature = "test-util"))]
pub mod memory;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use hub_core::config::ConfigError;
use hub_core::store::StoreError;
use std::future::Future;

/// One ordered change to an object, as the mirror ledger sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerClaim {
    /// The ledger's name for the source object: `bucket/key` for signed (SNS) changes,
    /// `token#bucket/key` for token-authenticated (VK) ones, so that each origin orders only its
    /// own changes (`crate::mirror::Origin::ledger_object`).
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

/// The last change applied per object.
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

/// A store that can keep the mirror's ledger beside its events: the function's constructor asks
/// the event store it is given for the ledger, so Lambda gets DynamoDB's and the local server
/// SQLite's without naming either.
pub trait LedgerSource {
    type Ledger: MirrorLedger + 'static;
    fn mirror_ledger(&self) -> Result<Self::Ledger, ConfigError>;
}

impl<S: LedgerSource> LedgerSource for hub_core::store::Retained<S> {
    type Ledger = S::Ledger;
    fn mirror_ledger(&self) -> Result<Self::Ledger, ConfigError> {
        self.inner().mirror_ledger()
    }
}

impl LedgerSource for hub_core::store::DynamoStore {
    type Ledger = dynamo::DynamoLedger;
    fn mirror_ledger(&self) -> Result<Self::Ledger, ConfigError> {
        Ok(dynamo::DynamoLedger::new(
            self.client().clone(),
            self.table(),
        ))
    }
}
