//! The store contract against the embedded SQLite store of `callback-hub`: the same suite as
//! DynamoDB's, so a behaviour difference between the two is a failing test.

use callback_hub::SqliteStore;
use hub_core::event::{Event, Source};
use hub_core::store::EventWriter;
use hub_tests::{contract, unique_name};

fn database() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique_name("callback-hub-sqlite"));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("events.db")
}

#[tokio::test]
async fn sqlite_store_meets_the_contract() {
    contract::run_all(&SqliteStore::open(database()).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicates_produce_one_row_even_across_connections() {
    let path = database();
    // Two connections to one file, as a server and a second process would have.
    let stores = [
        SqliteStore::open(&path).unwrap(),
        SqliteStore::open(&path).unwrap(),
    ];
    let event = Event::new(Source::Mns, "same", "T", "s", "{}", chrono::Utc::now());
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (store, event) = (stores[i % 2].clone(), event.clone());
            tokio::spawn(async move { store.put_event(&event).await.unwrap() })
        })
        .collect();
    let mut stored = 0;
    for task in tasks {
        if task.await.unwrap() == hub_core::PutOutcome::Stored {
            stored += 1;
        }
    }
    assert_eq!(stored, 1);
    assert_eq!(stores[0].count().await.unwrap(), 1);
}
