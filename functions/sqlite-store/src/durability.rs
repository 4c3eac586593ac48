//! Group commit: one `fdatasync` of the write-ahead log makes every transaction committed before
//! it durable, so concurrent writers share it instead of paying one each.
//!
//! The writer connection runs with `synchronous = NORMAL`: SQLite commits into the WAL without
//! syncing it (and still syncs it before every checkpoint, so the database file never holds a
//! page the log has not made durable). Every write then waits here, after its commit and after
//! giving up the writer, until a sync that started after its commit has finished. That is the
//! guarantee `synchronous = FULL` gives (no reply before the commit is on disk), at the cost of
//! one sync per batch of concurrent writes rather than one per write: with `FULL` the local
//! server acknowledged about 350 events per second on this project's 2-core machine, bounded
//! by back-to-back syncs (BENCHMARKS.md, outbound webhooks on the local server).
//!
//! On Linux, syncing any descriptor of a file flushes all of that file's dirty pages, whoever
//! wrote them; the log is opened afresh for each sync, so a log SQLite has recreated is never
//! missed. A failed sync fails every write waiting on it as `Unavailable`: those commits may or
//! may not survive a power loss, so none of them is acknowledged, and the sender's retry finds
//! the event (a duplicate, answered only after a sync that succeeds) or stores it again.

use hub_core::store::StoreError;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};

/// A commit's place in the writer's order: a sync covers every commit up to the number it was
/// started at.
pub type CommitNumber = u64;

pub struct GroupSync {
    state: Mutex<State>,
    synced: Condvar,
    /// Makes durable every commit up to the number it is given.
    sync: Box<dyn Fn(CommitNumber) -> std::io::Result<()> + Send + Sync>,
}

#[derive(Default)]
struct State {
    committed: CommitNumber,
    synced: CommitNumber,
    syncing: bool,
    /// How many syncs ran (the tests show that concurrent writes share them).
    syncs: u64,
}

impl GroupSync {
    /// Syncs the write-ahead log of the database file at `database` (`<database>-wal`).
    pub fn for_wal_of(database: &std::path::Path) -> GroupSync {
        let mut wal = database.as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        GroupSync::with_sync(move |_| match std::fs::File::open(&wal) {
            Ok(file) => file.sync_data(),
            // No log yet: nothing has been committed in WAL mode, so nothing needs syncing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        })
    }

    pub fn with_sync(
        sync: impl Fn(CommitNumber) -> std::io::Result<()> + Send + Sync + 'static,
    ) -> Self {
        GroupSync {
            state: Mutex::default(),
            synced: Condvar::new(),
            sync: Box::new(sync),
        }
    }

    /// Notes a commit (or a read of committed state that must not be acknowledged before that
    /// state is durable). Called while holding the writer, so numbers follow commit order.
    pub fn committed(&self) -> CommitNumber {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.committed += 1;
        state.committed
    }

    /// Blocks until commit `number` is durable: joins a sync that started after it, or starts
    /// one. Called after giving up the writer, so the next write commits meanwhile.
    pub fn wait_durable(&self, number: CommitNumber) -> Result<(), StoreError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if state.synced >= number {
                return Ok(());
            }
            if state.syncing {
                state = self.synced.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // This sync covers every commit noted so far, this one included.
            let covers = state.committed;
            state.syncing = true;
            drop(state);
            let result = (self.sync)(covers);
            state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.syncing = false;
            state.syncs += 1;
            self.synced.notify_all();
            match result {
                Ok(()) => state.synced = state.synced.max(covers),
                Err(error) => {
                    return Err(StoreError::Unavailable(format!(
                        "syncing the write-ahead log failed: {error}"
                    )));
                }
            }
        }
    }

    #[cfg(test)]
    fn syncs(&self) -> u64 {
        self.state.lock().unwrap().syncs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    #[test]
    fn no_write_returns_before_a_finished_sync_covered_its_commit() {
        // Each sync notes, when it finishes, the last commit it covers.
        let finished: Arc<Mutex<Vec<CommitNumber>>> = Arc::default();
        let group = {
            let finished = finished.clone();
            Arc::new(GroupSync::with_sync(move |covers| {
                std::thread::sleep(std::time::Duration::from_millis(2));
                finished.lock().unwrap().push(covers);
                Ok(())
            }))
        };
        let writers: Vec<_> = (0..16)
            .map(|_| {
                let (group, finished) = (group.clone(), finished.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let number = group.committed();
                        group.wait_durable(number).unwrap();
                        let covered = finished.lock().unwrap().iter().any(|c| *c >= number);
                        assert!(covered, "commit {number} returned before a sync covered it");
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let syncs = group.syncs();
        assert!(
            syncs < 16 * 20,
            "concurrent writes share syncs: {syncs} syncs for 320 writes"
        );
    }

    #[test]
    fn a_failed_sync_fails_every_write_it_covered_and_a_later_one_can_succeed() {
        let fail = Arc::new(AtomicBool::new(true));
        let calls = Arc::new(AtomicU64::new(0));
        let group = {
            let (fail, calls) = (fail.clone(), calls.clone());
            GroupSync::with_sync(move |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                if fail.load(Ordering::SeqCst) {
                    Err(std::io::Error::other("disk gone"))
                } else {
                    Ok(())
                }
            })
        };
        let first = group.committed();
        assert!(matches!(
            group.wait_durable(first),
            Err(StoreError::Unavailable(_))
        ));
        fail.store(false, Ordering::SeqCst);
        // A retry of the same commit syncs again rather than trusting the failed one.
        group.wait_durable(first).unwrap();
        let second = group.committed();
        group.wait_durable(second).unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
