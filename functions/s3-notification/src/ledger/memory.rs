//! The ledger in memory, for unit tests; it can be switched to "unavailable" like the memory
//! event store.

use super::{decide_claim, ClaimOutcome, LedgerClaim, LedgerEntry, MirrorLedger};
use hub_core::store::StoreError;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

#[derive(Default, Debug)]
pub struct MemoryLedger {
    entries: Mutex<HashMap<String, LedgerEntry>>,
    unavailable: AtomicBool,
}

impl MemoryLedger {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("memory ledger switched off".into()));
        }
        Ok(())
    }
}

impl MirrorLedger for MemoryLedger {
    async fn claim(&self, claim: &LedgerClaim) -> Result<ClaimOutcome, StoreError> {
        self.check()?;
        let mut entries = self.entries.lock().unwrap();
        let outcome = decide_claim(entries.get(&claim.object), claim);
        if matches!(outcome, ClaimOutcome::Claimed { .. }) {
            entries.insert(
                claim.object.clone(),
                LedgerEntry {
                    sequencer: claim.sequencer.clone(),
                    event_id: claim.event_id.clone(),
                    action: claim.action.clone(),
                    applied: false,
                },
            );
        }
        Ok(outcome)
    }

    async fn mark_applied(&self, claim: &LedgerClaim) -> Result<bool, StoreError> {
        self.check()?;
        let mut entries = self.entries.lock().unwrap();
        match entries.get_mut(&claim.object) {
            Some(entry)
                if entry.sequencer == claim.sequencer && entry.event_id == claim.event_id =>
            {
                entry.applied = true;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn ledger_entry(&self, object: &str) -> Result<Option<LedgerEntry>, StoreError> {
        self.check()?;
        Ok(self.entries.lock().unwrap().get(object).cloned())
    }
}
