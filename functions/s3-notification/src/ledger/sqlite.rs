//! The ledger in the local server's SQLite file, beside the events, through the same
//! connection (so every write is serialized with the events').

use super::{decide_claim, ClaimOutcome, LedgerClaim, LedgerEntry, LedgerSource, MirrorLedger};
use hub_core::config::ConfigError;
use hub_core::store::StoreError;
use rusqlite::{params, Connection, OptionalExtension};
use sqlite_store::{failed, SqliteStore};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS mirror_ledger (
    object    TEXT PRIMARY KEY,
    sequencer TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    action    TEXT NOT NULL,
    applied   INTEGER NOT NULL
);
";

#[derive(Clone, Debug)]
pub struct SqliteLedger {
    store: SqliteStore,
}

impl SqliteLedger {
    /// Creates the ledger's table in the store's file if it is not there yet.
    pub fn open(store: &SqliteStore) -> Result<Self, StoreError> {
        store.execute_batch(SCHEMA)?;
        Ok(SqliteLedger {
            store: store.clone(),
        })
    }
}

impl LedgerSource for SqliteStore {
    type Ledger = SqliteLedger;
    fn mirror_ledger(&self) -> Result<SqliteLedger, ConfigError> {
        SqliteLedger::open(self).map_err(|e| ConfigError::Invalid {
            name: "MIRROR_BUCKET",
            reason: format!("the mirror ledger cannot be created: {e}"),
        })
    }
}

impl MirrorLedger for SqliteLedger {
    async fn claim(&self, claim: &LedgerClaim) -> Result<ClaimOutcome, StoreError> {
        let claim = claim.clone();
        self.store
            .with(move |c| {
                // IMMEDIATE takes the write lock first, so that the read and the write below are
                // one atomic step even with another process on the same file.
                let tx = c
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(failed)?;
                let current = read_ledger(&tx, &claim.object)?;
                let outcome = decide_claim(current.as_ref(), &claim);
                if matches!(outcome, ClaimOutcome::Claimed { .. }) {
                    tx.execute(
                        "INSERT INTO mirror_ledger (object, sequencer, event_id, action, applied) \
                     VALUES (?1, ?2, ?3, ?4, 0) ON CONFLICT (object) DO UPDATE SET \
                     sequencer = excluded.sequencer, event_id = excluded.event_id, \
                     action = excluded.action, applied = 0",
                        params![claim.object, claim.sequencer, claim.event_id, claim.action],
                    )
                    .map_err(failed)?;
                }
                tx.commit().map_err(failed)?;
                Ok(outcome)
            })
            .await
    }

    async fn mark_applied(&self, claim: &LedgerClaim) -> Result<bool, StoreError> {
        let claim = claim.clone();
        self.store
            .with(move |c| {
                c.execute(
                    "UPDATE mirror_ledger SET applied = 1 \
                 WHERE object = ?1 AND sequencer = ?2 AND event_id = ?3",
                    params![claim.object, claim.sequencer, claim.event_id],
                )
                .map(|changed| changed == 1)
                .map_err(failed)
            })
            .await
    }

    async fn ledger_entry(&self, object: &str) -> Result<Option<LedgerEntry>, StoreError> {
        let object = object.to_owned();
        self.store.with(move |c| read_ledger(c, &object)).await
    }
}

fn read_ledger(c: &Connection, object: &str) -> Result<Option<LedgerEntry>, StoreError> {
    c.query_row(
        "SELECT sequencer, event_id, action, applied FROM mirror_ledger WHERE object = ?1",
        params![object],
        |r| {
            Ok(LedgerEntry {
                sequencer: r.get(0)?,
                event_id: r.get(1)?,
                action: r.get(2)?,
                applied: r.get::<_, i64>(3)? != 0,
            })
        },
    )
    .optional()
    .map_err(failed)
}
