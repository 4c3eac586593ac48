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

#[tokio::test]
async fn the_sdk_path_alone_meets_the_contract() {
    contract::run_all(|| hub_tests::fresh_sdk_store("contract-sdk")).await;
}

#[tokio::test]
async fn a_missing_table_fails_the_same_through_the_direct_path() {
    let config = Moto::shared().sdk_config().await;
    let store = hub_core::aws::dynamo_store(&config, "table-that-does-not-exist");
    let event = Event::new(Source::Stack, "x", "T", "s", "{}", chrono::Utc::now());
    assert!(matches!(
        store.put_event(&event).await,
        Err(StoreError::Failed(_))
    ));
}

#[tokio::test]
async fn the_direct_path_stores_then_finds_the_duplicate_in_moto() {
    use hub_core::store::dynamo::direct::{Direct, DirectPut, Handover};
    let config = Moto::shared().sdk_config().await;
    let store = fresh_store("direct").await;
    let http = hub_core::sdk_http::SdkHttpClient::new().unwrap();
    let direct = DirectPut::for_config(
        &config,
        hub_core::aws::dynamodb_connector(&config, &http),
        std::time::Duration::from_secs(30),
    )
    .expect("moto's endpoint is one the direct path signs for");
    // Stored to the millisecond: a time that has no finer part reads back equal.
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-24T20:00:00.123Z").unwrap();
    let event = Event::new(Source::Stack, "d-1", "T", "s", "{}", at.into());
    let item = hub_core::store::dynamo::event_to_item(&event);
    assert_eq!(
        direct.put_if_absent(store.table(), &item).await.unwrap(),
        Direct::Stored
    );
    assert_eq!(
        direct.put_if_absent(store.table(), &item).await.unwrap(),
        Direct::AlreadyThere
    );
    use hub_core::store::EventLookup;
    assert_eq!(
        store.get_event(Source::Stack, "d-1").await.unwrap(),
        Some(event)
    );
    match direct.put_if_absent("no-such-table", &item).await {
        Err(Handover::Answer(400, code)) => assert_eq!(code, "ResourceNotFoundException"),
        other => panic!("expected the missing table's answer, got {other:?}"),
    }
}

/// A DynamoDB stand-in: answers each request with the next scripted answer (or never, for
/// `None`) and records which client sent it, the direct path or the SDK.
struct Scripted {
    url: String,
    senders: std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>,
}

impl Scripted {
    async fn start(script: Vec<Option<(u16, &'static str)>>) -> Scripted {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let senders = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = senders.clone();
        tokio::spawn(async move {
            for answer in script {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut chunk = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = stream.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "the request ended before its head");
                    request.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&request).to_ascii_lowercase();
                seen.lock()
                    .unwrap()
                    .push(if head.contains("user-agent: callback-hub/") {
                        "direct"
                    } else {
                        "sdk"
                    });
                let Some((status, error_type)) = answer else {
                    // Holds the connection open, unanswered, until the client gives up.
                    tokio::spawn(async move {
                        tokio::time::sleep(std::time::Duration::from_secs(10)).await;
                        drop(stream);
                    });
                    continue;
                };
                let body = if status == 200 {
                    "{}".to_owned()
                } else if error_type.is_empty() {
                    "<html>bad gateway</html>".to_owned()
                } else {
                    format!(
                        r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{error_type}","message":"scripted"}}"#
                    )
                };
                let answer = format!(
                    "HTTP/1.1 {status} Scripted\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        Scripted { url, senders }
    }

    fn senders(&self) -> Vec<&'static str> {
        self.senders.lock().unwrap().clone()
    }

    /// A store as a function builds it (production timeouts and retries) on this endpoint.
    async fn store(&self) -> DynamoStore {
        let config = hub_tests::moto::sdk_config_for(&self.url).await;
        hub_core::aws::dynamo_store(&config, "events")
    }
}

fn scripted_event() -> Event {
    Event::new(Source::Stack, "s-1", "T", "s", "{}", chrono::Utc::now())
}

#[tokio::test]
async fn a_stored_or_duplicate_answer_settles_the_put_without_the_sdk() {
    use hub_core::store::PutOutcome;
    let dynamo = Scripted::start(vec![
        Some((200, "")),
        Some((400, "ConditionalCheckFailedException")),
    ])
    .await;
    let store = dynamo.store().await;
    assert_eq!(
        store.put_event(&scripted_event()).await.unwrap(),
        PutOutcome::Stored
    );
    assert_eq!(
        store.put_event(&scripted_event()).await.unwrap(),
        PutOutcome::Duplicate
    );
    assert_eq!(dynamo.senders(), ["direct", "direct"]);
}

#[tokio::test]
async fn a_throttled_or_unreadable_direct_answer_is_sent_again_by_the_sdk() {
    use hub_core::store::PutOutcome;
    for first in [
        (400, "ThrottlingException"),
        (502, ""),
        (500, "InternalServerError"),
    ] {
        let dynamo = Scripted::start(vec![Some(first), Some((200, ""))]).await;
        let store = dynamo.store().await;
        assert_eq!(
            store.put_event(&scripted_event()).await.unwrap(),
            PutOutcome::Stored,
            "{first:?}"
        );
        assert_eq!(dynamo.senders(), ["direct", "sdk"], "{first:?}");
    }
}

#[tokio::test]
async fn a_put_the_sdk_retried_into_the_condition_is_a_duplicate() {
    // The direct put landed but its answer was lost (a 500 after the write): the SDK's attempt
    // meets the condition, and the event counts as stored once.
    use hub_core::store::PutOutcome;
    let dynamo = Scripted::start(vec![
        Some((500, "InternalServerError")),
        Some((400, "ConditionalCheckFailedException")),
    ])
    .await;
    let store = dynamo.store().await;
    assert_eq!(
        store.put_event(&scripted_event()).await.unwrap(),
        PutOutcome::Duplicate
    );
    assert_eq!(dynamo.senders(), ["direct", "sdk"]);
}

#[tokio::test]
async fn an_unanswered_direct_put_leaves_the_sdk_the_rest_of_the_operation_budget() {
    use hub_core::store::PutOutcome;
    // The direct attempt waits out its 800 ms; the SDK's then has the 400 ms left of the
    // 1.2 s operation timeout, and an answer comes.
    let dynamo = Scripted::start(vec![None, Some((200, ""))]).await;
    let store = dynamo.store().await;
    assert_eq!(
        store.put_event(&scripted_event()).await.unwrap(),
        PutOutcome::Stored
    );
    assert_eq!(dynamo.senders(), ["direct", "sdk"]);

    // Nothing ever answers: the put fails as unavailable (the sender retries later), at the
    // operation's deadline rather than a direct attempt's and a whole SDK operation's after it.
    let dynamo = Scripted::start(vec![None, None, None, None]).await;
    let store = dynamo.store().await;
    let started = std::time::Instant::now();
    match store.put_event(&scripted_event()).await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_millis(1_900),
        "the put outlived its 1.2 s budget: {took:?}"
    );
}

#[tokio::test]
async fn a_direct_attempt_counts_as_one_of_the_operation_s_attempts() {
    // Three attempts in all (the functions' retry configuration): the direct one and two of
    // the SDK's, never a fourth however often the table throttles.
    let dynamo = Scripted::start(vec![
        Some((400, "ThrottlingException")),
        Some((400, "ThrottlingException")),
        Some((400, "ThrottlingException")),
        Some((200, "")),
    ])
    .await;
    let store = dynamo.store().await;
    match store.put_event(&scripted_event()).await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected Unavailable after three throttles, got {other:?}"),
    }
    assert_eq!(dynamo.senders(), ["direct", "sdk", "sdk"]);
}
