//! Integration test harness: a moto server per test process, SDK clients aimed at it, tables
//! created from `template.yaml`, and requests read from the `events/` fixtures.

pub mod contract;
pub mod fixtures;
pub mod ledger_contract;
pub mod moto;
pub mod template;

use std::path::PathBuf;

pub use moto::Moto;

/// The repository root (this crate lives in `tests/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A request from an API Gateway HTTP API (payload 2.0) JSON file in `events/`: the same file a
/// user passes to `sam local invoke -e`.
pub fn fixture_request(name: &str) -> lambda_http::Request {
    let path = repo_root().join("events").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    lambda_http::request::from_str(&text)
        .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// The JSON of `events/env.json`: the test secrets that match the fixtures, per function.
pub fn fixture_env(function: &str) -> Vec<(String, String)> {
    let path = repo_root().join("events/env.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let all: serde_json::Value = serde_json::from_str(&text).expect("events/env.json is JSON");
    all[function]
        .as_object()
        .unwrap_or_else(|| panic!("events/env.json has no {function}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string values").to_owned()))
        .collect()
}

/// The variables of `events/env.json` for one function, with `PINNED_CERTS_FILE` made absolute
/// (it is relative to the repository root there).
pub fn fixture_vars(function: &str) -> std::collections::HashMap<String, String> {
    fixture_env(function)
        .into_iter()
        .map(|(k, v)| {
            if k == "PINNED_CERTS_FILE" {
                let path = repo_root().join(&v).to_string_lossy().into_owned();
                (k, path)
            } else {
                (k, v)
            }
        })
        .collect()
}

/// An SNS verifier configured like a function (`SNS_TOPIC_ARNS`, `PINNED_CERTS_FILE`) but with
/// an injected fetcher, so no test reaches the internet.
pub fn sns_verifier<F: hub_core::certs::Fetcher>(
    vars: &std::collections::HashMap<String, String>,
    fetcher: F,
) -> sns::SnsVerifier<F> {
    let pinned = hub_core::certs::pinned_from_vars(vars).expect("pinned certificates load");
    sns::SnsVerifier::from_vars(
        vars,
        std::sync::Arc::new(hub_core::certs::CertificateCache::new(fetcher, pinned)),
    )
}

/// A unique name, so tests sharing one moto server never share a table.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A store on a fresh table of the shared moto server, as the functions build theirs: its puts
/// sent directly, the SDK taking over whatever that path does not settle.
pub async fn fresh_store(prefix: &str) -> hub_core::store::DynamoStore {
    let config = Moto::shared().sdk_config().await;
    let table = unique_name(prefix);
    template::create_events_table(&aws_sdk_dynamodb::Client::new(&config), &table).await;
    hub_core::aws::dynamo_store(&config, table)
}

/// A store on a fresh table whose every request goes through the SDK: the path the direct
/// puts hand over to.
pub async fn fresh_sdk_store(prefix: &str) -> hub_core::store::DynamoStore {
    let client = Moto::shared().dynamodb().await;
    let table = unique_name(prefix);
    template::create_events_table(&client, &table).await;
    hub_core::store::DynamoStore::new(client, table)
}

/// A store whose endpoint is a closed port on 127.0.0.1: every call is refused.
pub async fn unreachable_store() -> hub_core::store::DynamoStore {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let config = moto::sdk_config_for(&format!("http://127.0.0.1:{port}")).await;
    hub_core::aws::dynamo_store(&config, "unreachable")
}

pub type Item = std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>;

/// Every item of the store's table.
pub async fn scan_items(store: &hub_core::store::DynamoStore) -> Vec<Item> {
    let output = store
        .client()
        .scan()
        .table_name(store.table())
        .send()
        .await
        .expect("scan moto");
    output.items().to_vec()
}

/// A string attribute of an item.
pub fn attr<'a>(item: &'a Item, name: &str) -> &'a str {
    item.get(name)
        .unwrap_or_else(|| panic!("item lacks {name}"))
        .as_s()
        .unwrap_or_else(|_| panic!("{name} is not a string"))
}

/// The JSON body of a response.
pub fn body_json(response: &lambda_http::Response<lambda_http::Body>) -> serde_json::Value {
    match response.body() {
        lambda_http::Body::Text(text) => serde_json::from_str(text).expect("JSON body"),
        other => panic!("expected a text body, got {other:?}"),
    }
}

/// A file of `events/` as JSON, to be altered before [`request_from_json`].
pub fn fixture_json(name: &str) -> serde_json::Value {
    let path = repo_root().join("events").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("fixture JSON")
}

pub fn request_from_json(json: &serde_json::Value) -> lambda_http::Request {
    lambda_http::request::from_str(&json.to_string()).expect("an API Gateway request")
}
