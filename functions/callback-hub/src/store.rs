//! The store the local server and the commands run on: SQLite by default, or the deployed
//! DynamoDB table (`EVENTS_TABLE`) when no `--db` is given.

use hub_core::config::ConfigError;
use hub_core::event::{Event, Source};
use hub_core::setup::Setup;
use hub_core::store::{
    DynamoStore, EventLookup, EventWriter, LatestState, Page, PageRequest, PutOutcome,
    RecentEvents, Retained, SourceTimeline, StoreError, SubjectHistory, TimeRange,
};
use s3_notification::ledger::dynamo::DynamoLedger;
use s3_notification::ledger::sqlite::SqliteLedger;
use s3_notification::ledger::{ClaimOutcome, LedgerClaim, LedgerEntry, LedgerSource, MirrorLedger};
use sqlite_store::SqliteStore;
use webhooks::sqlite::SqliteWebhookStore;
use webhooks::store::WebhooksSource;

/// What the server's routes are given: the store, with `EVENT_TTL_DAYS` applied to every write.
pub type LocalStore = Retained<AnyStore>;

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
        match self {
            // The outbox: the event and its webhook deliveries in one transaction.
            AnyStore::Sqlite(s) => webhooks::sqlite::outbox_put_event(s, event).await,
            AnyStore::Dynamo(s) => s.put_event(event).await,
        }
    }
}

/// The webhooks API and worker of the local server keep their tables in its SQLite file. On
/// DynamoDB (no `--db`) the deployed stack's own functions deliver, and its API manages them.
impl WebhooksSource for AnyStore {
    type Store = SqliteWebhookStore;
    type Queue = SqliteWebhookStore;
    async fn webhook_stores(
        &self,
        setup: &Setup,
    ) -> Result<(SqliteWebhookStore, SqliteWebhookStore), ConfigError> {
        match self {
            AnyStore::Sqlite(store) => store.webhook_stores(setup).await,
            AnyStore::Dynamo(_) => Err(ConfigError::Invalid {
                name: "EVENTS_TABLE",
                reason: "on DynamoDB, webhooks are managed by the deployed stack's API; \
                         run the local server with --db for local webhooks"
                    .into(),
            }),
        }
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

    async fn latest_with_id_prefix(
        &self,
        source: Source,
        subject: &str,
        id_prefix: &str,
    ) -> Result<Option<Event>, StoreError> {
        delegate!(self, s => s.latest_with_id_prefix(source, subject, id_prefix))
    }

    async fn subject_for_alias(
        &self,
        source: Source,
        alias: &str,
    ) -> Result<Option<String>, StoreError> {
        delegate!(self, s => s.subject_for_alias(source, alias))
    }
}

impl RecentEvents for AnyStore {
    async fn events_newest_first(
        &self,
        source: Source,
        range: TimeRange,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        delegate!(self, s => s.events_newest_first(source, range, page))
    }

    async fn count_between(&self, source: Source, range: TimeRange) -> Result<u64, StoreError> {
        delegate!(self, s => s.count_between(source, range))
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

/// The mirror's ledger beside whichever store the server runs on.
#[derive(Clone, Debug)]
pub enum AnyLedger {
    Sqlite(SqliteLedger),
    Dynamo(DynamoLedger),
}

impl LedgerSource for AnyStore {
    type Ledger = AnyLedger;
    fn mirror_ledger(&self) -> Result<AnyLedger, ConfigError> {
        Ok(match self {
            AnyStore::Sqlite(store) => AnyLedger::Sqlite(store.mirror_ledger()?),
            AnyStore::Dynamo(store) => AnyLedger::Dynamo(store.mirror_ledger()?),
        })
    }
}

macro_rules! delegate_ledger {
    ($self:ident, $ledger:ident => $call:expr) => {
        match $self {
            AnyLedger::Sqlite($ledger) => $call.await,
            AnyLedger::Dynamo($ledger) => $call.await,
        }
    };
}

impl MirrorLedger for AnyLedger {
    async fn claim(&self, claim: &LedgerClaim) -> Result<ClaimOutcome, StoreError> {
        delegate_ledger!(self, l => l.claim(claim))
    }

    async fn mark_applied(&self, claim: &LedgerClaim) -> Result<bool, StoreError> {
        delegate_ledger!(self, l => l.mark_applied(claim))
    }

    async fn ledger_entry(&self, object: &str) -> Result<Option<LedgerEntry>, StoreError> {
        delegate_ledger!(self, l => l.ledger_entry(object))
    }
}
