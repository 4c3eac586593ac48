//! The ordered mirror: each created object is copied to the mirror bucket, each removed one is
//! deleted there, and the ledger (one conditional entry per object and origin) makes sure a
//! change is applied only when it is newer than the last one applied, whatever order the senders
//! deliver in.
//!
//! Who vouches for a record decides how far it is trusted ([`Origin`]): a signed SNS message is
//! what S3 said; a token-authenticated delivery (VK signs nothing, `docs/protocols.md` §2.1) is
//! what anyone holding the token said. So only allow-listed source buckets are mirrored at all,
//! every copy reads the source itself, a token delivery's removal is applied only once the source
//! confirms the object is gone, and the two origins keep separate ledger entries, so that neither
//! can make the other's changes `superseded`.

use crate::ledger::{ClaimOutcome, LedgerClaim, MirrorLedger};
use crate::records::{Change, ObjectRecord, SequencerForm};
use hub_core::store::StoreError;
use std::collections::BTreeSet;
use std::future::Future;

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// S3 (source or mirror) could not be reached, throttled, or failed on its side: the sender
    /// must retry.
    #[error("object transfer failed: {0}")]
    Transfer(String),
    /// S3 refused in a way that no retry changes (access denied, an archived object, a missing
    /// mirror bucket, a mirror key too long): reported and counted, not retried.
    #[error("object transfer refused: {0}")]
    Refused(String),
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

/// The mirror's key for a source object: `{bucket}/{key}`, so that objects of one key in
/// several source buckets never share a backup.
pub fn mirror_key(bucket: &str, key: &str) -> String {
    format!("{bucket}/{key}")
}

/// The S3 side of the mirror: a capability, so that the ordering logic runs on any transport.
pub trait ObjectTransfer: Send + Sync {
    /// Copies the current version of `bucket/key` to the mirror's `target` key.
    fn copy(
        &self,
        bucket: &str,
        key: &str,
        target: &str,
    ) -> impl Future<Output = Result<Copied, MirrorError>> + Send;

    /// Deletes `target` from the mirror; deleting a missing object succeeds.
    fn delete(&self, target: &str) -> impl Future<Output = Result<(), MirrorError>> + Send;

    /// Whether the source has `bucket/key` (a HEAD request: `false` only on 404).
    fn source_exists(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<bool, MirrorError>> + Send;
}

impl<T: ObjectTransfer + ?Sized> ObjectTransfer for std::sync::Arc<T> {
    fn copy(
        &self,
        bucket: &str,
        key: &str,
        target: &str,
    ) -> impl Future<Output = Result<Copied, MirrorError>> + Send {
        (**self).copy(bucket, key, target)
    }

    fn delete(&self, target: &str) -> impl Future<Output = Result<(), MirrorError>> + Send {
        (**self).delete(target)
    }

    fn source_exists(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<bool, MirrorError>> + Send {
        (**self).source_exists(bucket, key)
    }
}

/// Who vouches for a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An SNS message of an allowed topic, signed by AWS (§2.3): its sequencers order changes.
    Signed,
    /// A delivery authenticated by the shared token alone (VK, §2.1).
    Token,
}

impl Origin {
    /// The ledger's name for an object: each origin orders its own changes, so that a sequencer
    /// one origin made up can never hold back the other's. Signed changes keep the plain
    /// `bucket/key` they always had.
    pub fn ledger_object(self, bucket: &str, key: &str) -> String {
        match self {
            Origin::Signed => format!("{bucket}/{key}"),
            Origin::Token => format!("token#{bucket}/{key}"),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Signed => "sns",
            Origin::Token => "token",
        }
    }
}

/// What the mirror did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorOutcome {
    Copied,
    Deleted,
    /// A copy whose source was already gone: nothing to copy.
    SourceGone,
    /// A token delivery's removal that the source did not confirm (it still has the object):
    /// the backup was kept, refreshed from the source.
    SourceExists,
    /// A retry of a change already applied: not redone.
    AlreadyApplied,
    /// Older than the last change applied to the object: skipped, so it cannot undo a newer one.
    Superseded,
    /// Not an object change (restore, replication, tagging...).
    NotMirrored,
    /// The bucket is not on `MIRROR_SOURCE_BUCKETS`: stored, never mirrored.
    BucketNotAllowed,
    /// S3 refused for good (see [`MirrorError::Refused`]): stored, logged at error level,
    /// counted by the `MirrorFailed` alarm, and not retried.
    Failed,
}

impl MirrorOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            MirrorOutcome::Copied => "copied",
            MirrorOutcome::Deleted => "deleted",
            MirrorOutcome::SourceGone => "source_gone",
            MirrorOutcome::SourceExists => "source_exists",
            MirrorOutcome::AlreadyApplied => "already_applied",
            MirrorOutcome::Superseded => "superseded",
            MirrorOutcome::NotMirrored => "not_mirrored",
            MirrorOutcome::BucketNotAllowed => "bucket_not_allowed",
            MirrorOutcome::Failed => "failed",
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
    /// `MIRROR_SOURCE_BUCKETS`: the only buckets whose objects are read and mirrored.
    sources: BTreeSet<String>,
}

impl<T: ObjectTransfer, L: MirrorLedger> Mirror<T, L> {
    /// A mirror of the objects of `sources`, and of no other bucket.
    pub fn new<I, B>(transfer: T, ledger: L, sources: I) -> Self
    where
        I: IntoIterator<Item = B>,
        B: Into<String>,
    {
        Mirror {
            transfer,
            ledger,
            sources: sources.into_iter().map(Into::into).collect(),
        }
    }

    pub fn transfer(&self) -> &T {
        &self.transfer
    }

    pub fn ledger(&self) -> &L {
        &self.ledger
    }

    pub fn sources(&self) -> &BTreeSet<String> {
        &self.sources
    }

    /// Applies one record, in order with every other record about the same object from the
    /// same origin.
    pub async fn apply(
        &self,
        record: &ObjectRecord,
        event_id: &str,
        origin: Origin,
    ) -> Result<MirrorOutcome, MirrorError> {
        if !self.sources.contains(&record.bucket) {
            tracing::warn!(source = "s3", event_id, bucket = %record.bucket, "bucket not in MIRROR_SOURCE_BUCKETS, not mirrored");
            return Ok(MirrorOutcome::BucketNotAllowed);
        }
        let action = match record.change() {
            Change::Created => Action::Copy,
            Change::Removed => Action::Delete,
            Change::Other => return Ok(MirrorOutcome::NotMirrored),
        };
        // A hex sequencer behind the token is a number nobody vouches for and nobody can check
        // against a clock (VK's are seconds, §2.1): it orders nothing.
        let sequencer = record
            .sequencer
            .as_ref()
            .filter(|s| origin == Origin::Signed || matches!(s.form(), SequencerForm::Seconds(_)));
        let Some(sequencer) = sequencer else {
            // Nothing orders this change against others: make the mirror match the source,
            // which is right whichever order the changes happened in.
            tracing::info!(source = "s3", event_id, bucket = %record.bucket, "record without a usable sequencer, reconciling");
            return self.reconcile(record).await;
        };
        let claim = LedgerClaim {
            object: origin.ledger_object(&record.bucket, &record.key),
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
            self.perform(action, record, origin).await?
        };
        if !self.ledger.mark_applied(&claim).await? {
            // A newer change was claimed while this one ran, and may have been applied before it.
            // The source is at least as new as that change: converge on it.
            tracing::info!(source = "s3", event_id, bucket = %record.bucket, "mirror change overtaken, reconciling");
            self.reconcile(record).await?;
        }
        Ok(outcome)
    }

    async fn perform(
        &self,
        action: Action,
        record: &ObjectRecord,
        origin: Origin,
    ) -> Result<MirrorOutcome, MirrorError> {
        let target = mirror_key(&record.bucket, &record.key);
        match (action, origin) {
            (Action::Copy, _) => {
                match self
                    .transfer
                    .copy(&record.bucket, &record.key, &target)
                    .await?
                {
                    Copied::Object { bytes, parts } => {
                        tracing::info!(bucket = %record.bucket, bytes, parts, "object mirrored");
                        Ok(MirrorOutcome::Copied)
                    }
                    Copied::SourceMissing => Ok(MirrorOutcome::SourceGone),
                }
            }
            (Action::Delete, Origin::Signed) => {
                self.transfer.delete(&target).await?;
                tracing::info!(bucket = %record.bucket, "object removed from mirror");
                Ok(MirrorOutcome::Deleted)
            }
            // Anyone with the token could send this removal: the source must confirm it.
            (Action::Delete, Origin::Token) => {
                if !self
                    .transfer
                    .source_exists(&record.bucket, &record.key)
                    .await?
                {
                    self.transfer.delete(&target).await?;
                    tracing::info!(bucket = %record.bucket, "object removed from mirror");
                    return Ok(MirrorOutcome::Deleted);
                }
                tracing::warn!(bucket = %record.bucket, "removal not confirmed by the source, backup kept");
                match self.reconcile(record).await? {
                    MirrorOutcome::Copied => Ok(MirrorOutcome::SourceExists),
                    other => Ok(other),
                }
            }
        }
    }

    /// Copies the object if the source has it, deletes it from the mirror if the source says
    /// it is gone.
    async fn reconcile(&self, record: &ObjectRecord) -> Result<MirrorOutcome, MirrorError> {
        let target = mirror_key(&record.bucket, &record.key);
        match self
            .transfer
            .copy(&record.bucket, &record.key, &target)
            .await?
        {
            Copied::Object { .. } => Ok(MirrorOutcome::Copied),
            Copied::SourceMissing => {
                self.transfer.delete(&target).await?;
                Ok(MirrorOutcome::Deleted)
            }
        }
    }
}

/// An in-memory transfer for unit tests: source buckets and a mirror bucket, and every call
/// recorded.
#[cfg(any(test, feature = "test-util"))]
pub mod testing {
    use super::*;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct MemoryTransfer {
        pub source: Mutex<HashMap<(String, String), Vec<u8>>>,
        /// By mirror key (`bucket/key`).
        pub mirror: Mutex<HashMap<String, Vec<u8>>>,
        pub calls: Mutex<Vec<String>>,
        /// Every call fails as an outage would (a retry may succeed).
        pub failing: AtomicBool,
        /// Every call is refused as S3 refuses for good (access denied, say).
        pub refusing: AtomicBool,
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

        /// The mirror's object `target` (a mirror key, `bucket/key`).
        pub fn mirrored(&self, target: &str) -> Option<Vec<u8>> {
            self.mirror.lock().unwrap().get(target).cloned()
        }

        pub fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }

        pub fn set_failing(&self, failing: bool) {
            self.failing.store(failing, Ordering::SeqCst);
        }

        pub fn set_refusing(&self, refusing: bool) {
            self.refusing.store(refusing, Ordering::SeqCst);
        }

        fn check(&self) -> Result<(), MirrorError> {
            if self.refusing.load(Ordering::SeqCst) {
                Err(MirrorError::Refused("AccessDenied (HTTP 403)".into()))
            } else if self.failing.load(Ordering::SeqCst) {
                Err(MirrorError::Transfer("mirror switched off".into()))
            } else {
                Ok(())
            }
        }

        fn has_source(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
            self.source
                .lock()
                .unwrap()
                .get(&(bucket.to_owned(), key.to_owned()))
                .cloned()
        }
    }

    impl ObjectTransfer for MemoryTransfer {
        async fn copy(&self, bucket: &str, key: &str, target: &str) -> Result<Copied, MirrorError> {
            self.check()?;
            self.calls
                .lock()
                .unwrap()
                .push(format!("copy {bucket}/{key}"));
            Ok(match self.has_source(bucket, key) {
                Some(body) => {
                    let bytes = body.len() as u64;
                    self.mirror.lock().unwrap().insert(target.to_owned(), body);
                    Copied::Object { bytes, parts: 1 }
                }
                None => Copied::SourceMissing,
            })
        }

        async fn delete(&self, target: &str) -> Result<(), MirrorError> {
            self.check()?;
            self.calls.lock().unwrap().push(format!("delete {target}"));
            self.mirror.lock().unwrap().remove(target);
            Ok(())
        }

        async fn source_exists(&self, bucket: &str, key: &str) -> Result<bool, MirrorError> {
            self.check()?;
            self.calls
                .lock()
                .unwrap()
                .push(format!("head {bucket}/{key}"));
            Ok(self.has_source(bucket, key).is_some())
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
        Mirror::new(MemoryTransfer::default(), MemoryLedger::new(), ["src"])
    }

    async fn apply(mirror: &TestMirror, record: &ObjectRecord) -> MirrorOutcome {
        mirror
            .apply(record, &record.event_id(), Origin::Signed)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn create_then_delete_keeps_the_mirror_in_sync() {
        let mirror = mirror();
        mirror.transfer().put_source("src", "a", b"one");
        let create = record("ObjectCreated:Put", "a", Some("10"));
        assert_eq!(apply(&mirror, &create).await, MirrorOutcome::Copied);
        assert_eq!(
            mirror.transfer().mirrored("src/a").as_deref(),
            Some(&b"one"[..])
        );
        mirror.transfer().remove_source("src", "a");
        let delete = record("ObjectRemoved:Delete", "a", Some("11"));
        assert_eq!(apply(&mirror, &delete).await, MirrorOutcome::Deleted);
        assert_eq!(mirror.transfer().mirrored("src/a"), None);
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
        assert_eq!(mirror.transfer().mirrored("src/a"), None);
        assert_eq!(mirror.transfer().calls(), ["delete src/a"]);
    }

    #[tokio::test]
    async fn a_retry_is_applied_once_and_a_failed_one_again() {
        let mirror = mirror();
        mirror.transfer().put_source("src", "a", b"one");
        let create = record("ObjectCreated:Put", "a", Some("10"));
        mirror.transfer().set_failing(true);
        let id = create.event_id();
        let attempt = mirror.apply(&create, &id, Origin::Signed).await;
        assert!(matches!(attempt, Err(MirrorError::Transfer(_))));
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
            mirror.transfer().mirrored("src/a").as_deref(),
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
    async fn each_origin_orders_its_own_changes() {
        let mirror = mirror();
        mirror.transfer().put_source("src", "a", b"one");
        let signed = record("ObjectCreated:Put", "a", Some("FFFFFFFF"));
        assert_eq!(apply(&mirror, &signed).await, MirrorOutcome::Copied);
        let mut token = record("ObjectCreated:Put", "a", None);
        token.sequencer = crate::records::Sequencer::from_json(&json!(1_700_000_000)).unwrap();
        let outcome = mirror.apply(&token, &token.event_id(), Origin::Token).await;
        assert_eq!(outcome.unwrap(), MirrorOutcome::Copied);
        let ledger = mirror.ledger();
        let signed_entry = ledger.ledger_entry("src/a").await.unwrap().unwrap();
        let token_entry = ledger.ledger_entry("token#src/a").await.unwrap().unwrap();
        assert_eq!(signed_entry.event_id, signed.event_id());
        assert_eq!(token_entry.event_id, token.event_id());
    }

    #[tokio::test]
    async fn refusals_and_outages_are_told_apart() {
        let mirror = mirror();
        mirror.transfer().put_source("src", "a", b"one");
        mirror.transfer().set_refusing(true);
        let create = record("ObjectCreated:Put", "a", Some("10"));
        let refused = mirror
            .apply(&create, &create.event_id(), Origin::Signed)
            .await;
        assert!(
            matches!(refused, Err(MirrorError::Refused(_))),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn a_ledger_outage_is_an_error_and_nothing_is_transferred() {
        let mirror = mirror();
        mirror.ledger().set_unavailable(true);
        let create = record("ObjectCreated:Put", "a", Some("10"));
        let err = mirror
            .apply(&create, "id", Origin::Signed)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            MirrorError::Ledger(StoreError::Unavailable(_))
        ));
        assert!(mirror.transfer().calls().is_empty());
    }
}
