//! The ordered mirror: each created object is copied to the mirror bucket, each removed one is
//! deleted there, and the ledger (one conditional entry per object) makes sure a change is applied
//! only when it is newer than the last one applied, whatever order the senders deliver in.

use crate::ledger::{ClaimOutcome, LedgerClaim, MirrorLedger};
use crate::records::{Change, ObjectRecord};
use hub_core::store::StoreError;
use std::future::Future;

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// S3 (source or mirror) failed or could not be reached: the sender must retry.
    #[error("object transfer failed: {0}")]
    Transfer(String),
    #[error(transparent)]
    Ledger(#[from] StoreError),
}

/// What a copy found at the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copied {
    /// The object was copied: its size, and how many parts it took (1 for a single request).
    Object { bytes: u64, parts: u32 },
    /// The source object no longer exists: a later removal is on its way (or was applied).
    SourceMissing,
}

/// The S3 side of the mirror: a capability, so that the ordering logic runs on any transport.
pub trait ObjectTransfer: Send + Sync {
    /// Copies the current version of `bucket/key` to the mirror under the same key.
    fn copy(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Copied, MirrorError>> + Send;

    /// Deletes `key` from the mirror; deleting a missing object succeeds.
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), MirrorError>> + Send;
}

impl<T: ObjectTransfer + ?Sized> ObjectTransfer for std::sync::Arc<T> {
    fn copy(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Copied, MirrorError>> + Send {
        (**self).copy(bucket, key)
    }

    fn delete(&self, key: &str) -> impl Future<Output = Result<(), MirrorError>> + Send {
        (**self).delete(key)
    }
}

/// What the mirror did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorOutcome {
    Copied,
    Deleted,
    /// A copy whose source was already gone: nothing to copy.
    SourceGone,
    /// A retry of a change already applied: not redone.
    AlreadyApplied,
    /// Older than the last change applied to the object: skipped, so it cannot undo a newer one.
    Superseded,
    /// Not an object change (restore, replication, tagging...).
    NotMirrored,
}

impl MirrorOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            MirrorOutcome::Copied => "copied",
            MirrorOutcome::Deleted => "deleted",
            MirrorOutcome::SourceGone => "source_gone",
            MirrorOutcome::AlreadyApplied => "already_applied",
            MirrorOutcome::Superseded => "superseded",
            MirrorOutcome::NotMirrored => "not_mirrored",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Copy,
    Delete,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Copy => "copy",
            Action::Delete => "delete",
        }
    }
}

pub struct Mirror<T, L> {
    transfer: T,
    ledger: L,
}

impl<T: ObjectTransfer, L: MirrorLedger> Mirror<T, L> {
    pub fn new(transfer: T, ledger: L) -> Self {
        Mirror { transfer, ledger }
    }

    pub fn transfer(&self) -> &T {
        &self.transfer
    }

    pub fn ledger(&self) -> &L {
        &self.ledger
    }

    /// Applies one record, in order with every other record about the same object.
    pub async fn apply(
        &self,
        record: &ObjectRecord,
        event_id: &str,
    ) -> Result<MirrorOutcome, MirrorError> {
        let action = match record.change() {
            Change::Created => Action::Copy,
            Change::Removed => Action::Delete,
            Change::Other => return Ok(MirrorOutcome::NotMirrored),
        };
        let Some(sequencer) = &record.sequencer else {
            // Nothing orders this change against others: make the mirror match the source,
            // which is right whichever order the changes happened in.
            tracing::info!(bucket = %record.bucket, "record without sequencer, reconciling");
            return self.reconcile(record).await;
        };
        let claim = LedgerClaim {
            object: record.subject(),
            sequencer: sequencer.as_str().to_owned(),
            event_id: event_id.to_owned(),
            action: action.as_str().to_owned(),
        };
        let tie = match self.ledger.claim(&claim).await? {
            ClaimOutcome::AlreadyApplied => return Ok(MirrorOutcome::AlreadyApplied),
            ClaimOutcome::Superseded => return Ok(MirrorOutcome::Superseded),
            ClaimOutcome::Claimed { tie } => tie,
        };
        // Two events with one sequencer (VK's is in seconds) have no known order between them.
        let outcome = if tie {
            self.reconcile(record).await?
        } else {
            self.perform(action, record).await?
        };
        if !self.ledger.mark_applied(&claim).await? {
            // A newer change was claimed while this one ran, and may have been applied before it.
            // The source is at least as new as that change: converge on it.
            tracing::info!(bucket = %record.bucket, "mirror change overtaken, reconciling");
            self.reconcile(record).await?;
        }
        Ok(outcome)
    }

    async fn perform(
        &self,
        action: Action,
        record: &ObjectRecord,
    ) -> Result<MirrorOutcome, MirrorError> {
        match action {
            Action::Copy => match self.transfer.copy(&record.bucket, &record.key).await? {
                Copied::Object { bytes, parts } => {
                    tracing::info!(bucket = %record.bucket, bytes, parts, "object mirrored");
                    Ok(MirrorOutcome::Copied)
                }
                Copied::SourceMissing => Ok(MirrorOutcome::SourceGone),
            },
            Action::Delete => {
                self.transfer.delete(&record.key).await?;
                tracing::info!(bucket = %record.bucket, "object removed from mirror");
                Ok(MirrorOutcome::Deleted)
            }
        }
    }

    /// Copies the object if the source has it, deletes it from the mirror if not.
    async fn reconcile(&self, record: &ObjectRecord) -> Result<MirrorOutcome, MirrorError> {
        match self.transfer.copy(&record.bucket, &record.key).await? {
            Copied::Object { .. } => Ok(MirrorOutcome::Copied),
            Copied::SourceMissing => {
                self.transfer.delete(&record.key).await?;
                Ok(MirrorOutcome::Deleted)
            }
        }
    }
}

/// An in-memory transfer for unit tests: a source and a mirror bucket, and every call recorded.
#[cfg(any(test, feature = "test-util"))]
pub mod testing {
    use super::*;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct MemoryTransfer {
        pub source: Mutex<HashMap<(String, String), Vec<u8>>>,
        pub mirror: Mutex<HashMap<String, Vec<u8>>>,
        pub calls: Mutex<Vec<String>>,
        pub failing: AtomicBool,
    }

    impl MemoryTransfer {
        pub fn put_source(&self, bucket: &str, key: &str, body: &[u8]) {
            self.source
                .lock()
                .unwrap()
                .insert((bucket.into(), key.into()), body.to_vec());
        }

        pub fn remove_source(&self, bucket: &str, key: &str) {
            self.source
                .lock()
                .unwrap()
                .remove(&(bucket.into(), key.into()));
        }

        pub fn mirrored(&self, key: &str) -> Option<Vec<u8>> {
            self.mirror.lock().unwrap().get(key).cloned()
        }

        pub fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }

        pub fn set_failing(&self, failing: bool) {
            self.failing.store(failing, Ordering::SeqCst);
        }

        fn check(&self) -> Result<(), MirrorError> {
            if self.failing.load(Ordering::SeqCst) {
                Err(MirrorError::Transfer("mirror switched off".into()))
            } else {
                Ok(())
            }
        }
    }

    impl ObjectTransfer for MemoryTransfer {
        async fn copy(&self, bucket: &str, key: &str) -> Result<Copied, MirrorError> {
            self.check()?;
            self.calls
                .lock()
                .unwrap()
                .push(format!("copy {bucket}/{key}"));
            let body = self
                .source
                .lock()
                .unwrap()
                .get(&(bucket.to_owned(), key.to_owned()))
                .cloned();
            Ok(match body {
                Some(body) => {
                    let bytes = body.len() as u64;
                    self.mirror.lock().unwrap().insert(key.to_owned(), body);
                    Copied::Object { bytes, parts: 1 }
                }
                None => Copied::SourceMissing,
            })
        }

        async fn delete(&self, key: &str) -> Result<(), MirrorError> {
            self.check()?;
            self.calls.lock().unwrap().push(format!("delete {key}"));
            self.mirror.lock().unwrap().remove(key);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::MemoryTransfer;
    use super::*;
    use crate::ledger::memory::MemoryLedger;
    use crate::records::{parse, S3Notification};
    use serde_json::json;

    fn record(name: &str, key: &str, sequencer: Option<&str>) -> ObjectRecord {
        let mut object = json!({"key": key, "size": 3});
        if let Some(s) = sequencer {
            object["sequencer"] = json!(s);
        }
        let body = json!({"Records": [{"eventVersion": "2.1", "eventName": name,
            "s3": {"bucket": {"name": "src"}, "object": object}}]});
        match parse(body.to_string().as_bytes()).unwrap() {
            S3Notification::Records(mut records) => records.remove(0),
            _ => unreachable!(),
        }
    }

    type TestMirror = Mirror<MemoryTransfer, MemoryLedger>;

    fn mirror() -> TestMirror {
        Mirror::new(MemoryTransfer::default(), MemoryLedger::new())
    }

    async fn apply(mirror: &TestMirror, record: &ObjectRecord) -> MirrorOutcome {
        mirror.apply(record, &record.event_id()).await.unwrap()
    }

    #[tokio::test]
    async fn create_then_delete_keeps_the_mirror_in_sync() {
        let mirror = mirror();
        mirror.transfer().put_source("src", "a", b"one");
        let create = record("ObjectCreated:Put", "a", Some("10"));
        assert_eq!(apply(&mirror, &create).await, MirrorOutcome::Copied);
        assert_eq!(
            mirror.transfer().mirrored("a").as_deref(),
            Some(&b"one"[..])
        );
        mirror.transfer().remove_source("src", "a");
        let delete = record("ObjectRemoved:Delete", "a", Some("11"));
        assert_eq!(apply(&mirror, &delete).await, MirrorOutcome::Deleted);
        assert_eq!(mirror.transfer().mirrored("a"), None);
    }

    #[tokio::test]
    async fn an_old_create_after_a_newer_delete_does_not_resurrect() {
        let mirror = mirror();
        // The source was re-created meanwhile (say by a third change not yet delivered): even
        // so, the stale create must not be applied on top of the delete.
        mirror.transfer().put_source("src", "a", b"one");
        let delete = record("ObjectRemoved:Delete", "a", Some("11"));
        let create = record("ObjectCreated:Put", "a", Some("10"));
        assert_eq!(apply(&mirror, &delete).await, MirrorOutcome::Deleted);
        assert_eq!(apply(&mirror, &create).await, MirrorOutcome::Superseded);
        assert_eq!(mirror.transfer().mirrored("a"), None);
        assert_eq!(mirror.transfer().calls(), ["delete a"]);
    }

    #[tokio::test]
    async fn a_retry_is_applied_once_and_a_failed_one_again() {
        let mirror = mirror();
        mirror.transfer().put_source("src", "a", b"one");
        let create = record("ObjectCreated:Put", "a", Some("10"));
        mirror.transfer().set_failing(true);
        assert!(mirror.apply(&create, &create.event_id()).await.is_err());
        mirror.transfer().set_failing(false);
        assert_eq!(apply(&mirror, &create).await, MirrorOutcome::Copied);
        assert_eq!(apply(&mirror, &create).await, MirrorOutcome::AlreadyApplied);
        assert_eq!(mirror.transfer().calls(), ["copy src/a"]);
    }

    #[tokio::test]
    async fn equal_sequencers_follow_the_source() {
        let mirror = mirror();
        // VK sequencers are seconds: a delete and a re-create within one second tie.
        mirror.transfer().put_source("src", "a", b"two");
        let delete = record("ObjectRemoved:Delete", "a", Some("20"));
        let create = record("ObjectCreated:Put", "a", Some("20"));
        assert_eq!(apply(&mirror, &create).await, MirrorOutcome::Copied);
        // The delete is tied with the create: the source still has the object, so it stays.
        assert_eq!(apply(&mirror, &delete).await, MirrorOutcome::Copied);
        assert_eq!(
            mirror.transfer().mirrored("a").as_deref(),
            Some(&b"two"[..])
        );
    }

    #[tokio::test]
    async fn records_without_sequencer_reconcile_and_others_are_not_mirrored() {
        let mirror = mirror();
        let create = record("ObjectCreated:Copy", "b", None);
        // The source no longer has it: the mirror must not have it either.
        assert_eq!(apply(&mirror, &create).await, MirrorOutcome::Deleted);
        let restore = record("ObjectRestore:Completed", "b", Some("30"));
        assert_eq!(apply(&mirror, &restore).await, MirrorOutcome::NotMirrored);
        assert_eq!(mirror.ledger().ledger_entry("src/b").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_copy_whose_source_is_gone_changes_nothing() {
        let mirror = mirror();
        let create = record("ObjectCreated:Put", "gone", Some("40"));
        assert_eq!(apply(&mirror, &create).await, MirrorOutcome::SourceGone);
        assert_eq!(mirror.transfer().calls(), ["copy src/gone"]);
    }

    #[tokio::test]
    async fn a_ledger_outage_is_an_error_and_nothing_is_transferred() {
        let mirror = mirror();
        mirror.ledger().set_unavailable(true);
        let create = record("ObjectCreated:Put", "a", Some("10"));
        let err = mirror.apply(&create, "id").await.unwrap_err();
        assert!(matches!(
            err,
            MirrorError::Ledger(StoreError::Unavailable(_))
        ));
        assert!(mirror.transfer().calls().is_empty());
    }
}
