//! The store contract against the embedded SQLite store of `callback-hub`: the same suite as
//! DynamoDB's, so a behaviour difference between the two is a failing test.

use callback_hub::SqliteStore;
use hub_tests::{contract, ledger_contract, unique_name};

fn database() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique_name("callback-hub-sqlite"));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("events.db")
}

#[tokio::test]
async fn sqlite_store_meets_the_contract() {
    contract::run_all(|| async { SqliteStore::open(database()).unwrap() }).await;
}

#[tokio::test]
async fn sqlite_mirror_ledger_meets_the_ledger_contract() {
    use s3_notification::ledger::LedgerSource;
    let store = SqliteStore::open(database()).unwrap();
    ledger_contract::run_all(&store.mirror_ledger().unwrap(), &store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicates_produce_one_row_even_across_connections() {
    let path = database();
    // Two connections to one file, as a server and a second process would have.
    let stores = [
        SqliteStore::open(&path).unwrap(),
        SqliteStore::open(&path).unwrap(),
    ];
    contract::concurrent_duplicates_are_stored_once(&stores).await;
    assert_eq!(stores[1].count().await.unwrap(), 1);
}
