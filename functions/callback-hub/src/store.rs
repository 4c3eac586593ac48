//! The store the local server and the commands run on: SQLite by default, or the deployed
//! DynamoDB table (`EVENTS_TABLE`) when no `--db` is given.

use crate::sqlite::SqliteStore;
use hub_core::event::{Event, Source};
use hub_core::store::{
    ClaimOutcome, DynamoStore, EventLookup, EventWriter, LatestState, LedgerClaim, LedgerEntry,
    MirrorLedger, Page, PageRequest, PutOutcome, SourceTimeline, StoreError, SubjectHistory,
    TimeRange,
};

#[derive(Clone, Debug)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Dynamo(DynamoStore),
}

impl AnyStore {
    pub fn describe(&self) -> String {
        match self {
            AnyStore::Sqlite(_) => "sqlite".into(),
            AnyStore::Dynamo(store) => format!("dynamodb table {}", store.table()),
        }
    }
}

macro_rules! delegate {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Sqlite($store) => $call.await,
            AnyStore::Dynamo($store) => $call.await,
        }
    };
}

impl EventWriter for AnyStore {
    async fn put_event(&self, event: &Event) -> Result<PutOutcome, StoreError> {
        delegate!(self, s => s.put_event(event))
    }
}

impl EventLookup for AnyStore {
    async fn get_event(&self, source: Source, event_id: &str) -> Result<Option<Event>, StoreError> {
        delegate!(self, s => s.get_event(source, event_id))
    }
}

impl SubjectHistory for AnyStore {
    async fn events_about(
        &self,
        source: Source,
        subject: &str,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        delegate!(self, s => s.events_about(source, subject, page))
    }
}

impl LatestState for AnyStore {
    async fn latest_about(
        &self,
        source: Source,
        subject: &str,
    ) -> Result<Option<Event>, StoreError> {
        delegate!(self, s => s.latest_about(source, subject))
    }

    async fn subject_for_alias(
        &self,
        source: Source,
        alias: &str,
    ) -> Result<Option<String>, StoreError> {
        delegate!(self, s => s.subject_for_alias(source, alias))
    }
}

impl SourceTimeline for AnyStore {
    async fn events_between(
        &self,
        source: Source,
        range: TimeRange,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        delegate!(self, s => s.events_between(source, range, page))
    }
}

impl MirrorLedger for AnyStore {
    async fn claim(&self, claim: &LedgerClaim) -> Result<ClaimOutcome, StoreError> {
        delegate!(self, s => s.claim(claim))
    }

    async fn mark_applied(&self, claim: &LedgerClaim) -> Result<bool, StoreError> {
        delegate!(self, s => s.mark_applied(claim))
    }

    async fn ledger_entry(&self, object: &str) -> Result<Option<LedgerEntry>, StoreError> {
        delegate!(self, s => s.ledger_entry(object))
    }
}
