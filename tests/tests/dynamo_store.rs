//! The store contract against DynamoDB (moto server), and the outage classification.

use hub_core::event::{Event, Source};
use hub_core::store::{DynamoStore, EventWriter, StoreError};
use hub_tests::{contract, fresh_store, ledger_contract, unreachable_store, Moto};

#[tokio::test]
async fn dynamodb_store_meets_the_contract() {
    contract::run_all(|| fresh_store("contract")).await;
}

#[tokio::test]
async fn dynamodb_mirror_ledger_meets_the_ledger_contract() {
    use s3_notification::ledger::LedgerSource;
    let store = fresh_store("ledger").await;
    ledger_contract::run_all(&store.mirror_ledger().unwrap(), &store).await;
}

#[tokio::test]
async fn memory_mirror_ledger_meets_the_same_contract() {
    let ledger = s3_notification::ledger::memory::MemoryLedger::new();
    ledger_contract::run_all(&ledger, &hub_core::store::memory::MemoryStore::new()).await;
}

#[tokio::test]
async fn concurrent_duplicates_produce_one_item() {
    let store = fresh_store("contract").await;
    contract::concurrent_duplicates_are_stored_once(std::slice::from_ref(&store)).await;
    let count = store
        .client()
        .scan()
        .table_name(store.table())
        .send()
        .await
        .unwrap()
        .count();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn a_closed_port_is_unavailable_not_a_failure() {
    let store = unreachable_store().await;
    let event = Event::new(Source::Stack, "x", "T", "s", "{}", chrono::Utc::now());
    match store.put_event(&event).await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_missing_table_is_a_failure_not_an_outage() {
    let store = DynamoStore::new(Moto::shared().dynamodb().await, "table-that-does-not-exist");
    let event = Event::new(Source::Stack, "x", "T", "s", "{}", chrono::Utc::now());
    assert!(matches!(
        store.put_event(&event).await,
        Err(StoreError::Failed(_))
    ));
}

#[tokio::test]
async fn memory_store_meets_the_same_contract() {
    contract::run_all(|| async { hub_core::store::memory::MemoryStore::new() }).await;
}
