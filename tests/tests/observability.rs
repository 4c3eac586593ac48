//! Metrics (issue 21): the EMF lines the Lambda edge prints for each outcome of a sender's
//! request, read back and checked; and the local server's `GET /metrics` over HTTP.

use callback_hub::server::{serve_with, ServeLimits};
use callback_hub::{AnyStore, Routes, SqliteStore};
use hub_core::aws::LazyAws;
use hub_core::http::Handler;
use hub_core::lambda::invoke;
use hub_core::metrics::Captured;
use hub_core::setup::Setup;
use hub_core::store::memory::MemoryStore;
use hub_tests::{fixture_json, fixture_request, fixture_vars, request_from_json};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Arc;

async fn tsuru(vars: HashMap<String, String>, store: Arc<MemoryStore>) -> impl Handler {
    let setup = Setup::new(vars, LazyAws::lambda()).unwrap();
    tsuru_hook::build(store, &setup).await.unwrap()
}

/// The one EMF line a request printed, checked against the specification's structure.
async fn line_of(handler: &impl Handler, request: lambda_http::Request) -> Value {
    let captured = Captured::default();
    invoke(&captured.metrics(), handler, request).await;
    let lines = captured.lines();
    assert_eq!(lines.len(), 1, "one EMF line per request: {lines:?}");
    let line = lines.into_iter().next().unwrap();
    let directives = line["_aws"]["CloudWatchMetrics"].as_array().unwrap();
    for directive in directives {
        assert_eq!(directive["Namespace"], "CallbackHub");
        for dimensions in directive["Dimensions"].as_array().unwrap() {
            for key in dimensions.as_array().unwrap() {
                let key = key.as_str().unwrap();
                assert!(
                    ["Source", "Outcome", "Mirror"].contains(&key),
                    "bounded dimensions only: {key}"
                );
                assert!(line[key].is_string(), "dimension {key} has a value");
            }
        }
        for metric in directive["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            assert!(!line[name].is_null(), "metric {name} has a value");
        }
    }
    assert_eq!(directives[0]["Dimensions"], json!([["Source", "Outcome"]]));
    assert_eq!(
        directives[0]["Metrics"],
        json!([{"Name": "Received", "Unit": "Count"}])
    );
    assert_eq!(line["Received"], 1);
    assert_eq!(line["function_name"], "test-function");
    line
}

fn tsuru_sample() -> Value {
    fixture_json("tsuru-app-deploy.json")
}

#[tokio::test]
async fn every_outcome_of_a_sender_is_one_emf_line_with_source_and_outcome() {
    let store = Arc::new(MemoryStore::default());
    let hook = tsuru(fixture_vars("TsuruHookFunction"), store.clone()).await;

    let stored = line_of(&hook, fixture_request("tsuru-app-deploy.json")).await;
    assert_eq!(
        (&stored["Source"], &stored["Outcome"]),
        (&json!("tsuru"), &json!("stored"))
    );
    assert_eq!(
        stored["_aws"]["CloudWatchMetrics"][1]["Metrics"],
        json!([{"Name": "StoreLatency", "Unit": "Milliseconds"}])
    );
    assert!(stored["StoreLatency"].as_f64().unwrap() >= 0.0);

    let duplicate = line_of(&hook, fixture_request("tsuru-app-deploy.json")).await;
    assert_eq!(duplicate["Outcome"], "duplicate");

    let mut wrong_token = tsuru_sample();
    wrong_token["headers"]["authorization"] = "Bearer not-the-token".into();
    let refused = line_of(&hook, request_from_json(&wrong_token)).await;
    assert_eq!(refused["Outcome"], "refused");
    assert!(refused.get("StoreLatency").is_none(), "nothing was stored");

    let mut garbage = tsuru_sample();
    garbage["body"] = "{not json".into();
    assert_eq!(
        line_of(&hook, request_from_json(&garbage)).await["Outcome"],
        "malformed"
    );

    store.set_unavailable(true);
    let mut fresh = tsuru_sample();
    fresh["body"] = fresh["body"]
        .as_str()
        .unwrap()
        .replace("65e1c2d3a4b5c6d7e8f90123", "65e1c2d3a4b5c6d7e8f9ffff")
        .into();
    let unavailable = line_of(&hook, request_from_json(&fresh)).await;
    assert_eq!(unavailable["Outcome"], "unavailable");
    assert!(
        unavailable["StoreLatency"].as_f64().is_some(),
        "the write was tried"
    );

    let mut small = fixture_vars("TsuruHookFunction");
    small.insert("MAX_BODY_BYTES".into(), "64".into());
    let capped = tsuru(small, Arc::default()).await;
    assert_eq!(
        line_of(&capped, fixture_request("tsuru-app-deploy.json")).await["Outcome"],
        "too_large"
    );
}

#[tokio::test]
async fn a_url_check_is_a_handshake_and_a_read_is_not_counted() {
    let setup = Setup::new(fixture_vars("DingTalkFunction"), LazyAws::lambda()).unwrap();
    let dingtalk = dingtalk_callback::build(MemoryStore::default(), &setup)
        .await
        .unwrap();
    let line = line_of(&dingtalk, fixture_request("dingtalk-check-url.json")).await;
    assert_eq!(
        (&line["Source"], &line["Outcome"]),
        (&json!("dingtalk"), &json!("handshake"))
    );

    let stored = line_of(&dingtalk, fixture_request("dingtalk-user-add-org.json")).await;
    assert_eq!(stored["Outcome"], "stored");
    let again = line_of(&dingtalk, fixture_request("dingtalk-user-add-org.json")).await;
    assert_eq!(again["Outcome"], "duplicate");

    // GET /stacks/{stack} is a user's query: no Received line.
    let setup = Setup::new(fixture_vars("StackHookFunction"), LazyAws::lambda()).unwrap();
    let stacks = stack_hook::build(MemoryStore::default(), &setup)
        .await
        .unwrap();
    let captured = Captured::default();
    let response = invoke(
        &captured.metrics(),
        &stacks,
        fixture_request("stack-hook-get-status.json"),
    )
    .await;
    assert!(response.status().is_client_error() || response.status().is_success());
    assert!(captured.lines().is_empty(), "{:?}", captured.lines());
}

// --- The local server's GET /metrics ---

struct Running {
    address: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn serve(vars: HashMap<String, String>) -> Running {
    let store = SqliteStore::in_memory().unwrap();
    let routes = Arc::new(Routes::local(vars, AnyStore::Sqlite(store)).await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_with(
        listener,
        routes,
        ServeLimits::default(),
        async {
            let _ = stopped.await;
        },
    ));
    Running {
        address,
        stop: Some(stop),
    }
}

/// One HTTP/1.1 exchange on its own connection: status and body.
async fn exchange(address: std::net::SocketAddr, request: String) -> (u16, String) {
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    })
    .await
    .unwrap()
}

fn tsuru_post(token: &str, body: &str) -> String {
    format!(
        "POST /tsuru HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn get_metrics(authorization: Option<&str>) -> String {
    let header = authorization
        .map(|a| format!("authorization: {a}\r\n"))
        .unwrap_or_default();
    format!("GET /metrics HTTP/1.1\r\nhost: localhost\r\n{header}connection: close\r\n\r\n")
}

const API_TOKEN: &str = "observability-api-token-0001";

#[tokio::test]
async fn the_local_server_serves_the_counters_behind_the_api_token() {
    let mut vars = fixture_vars("TsuruHookFunction");
    vars.insert("API_TOKEN".into(), API_TOKEN.into());
    let server = serve(vars.clone()).await;
    let token = vars["TSURU_WEBHOOK_TOKEN"].clone();
    let body = tsuru_sample()["body"].as_str().unwrap().to_owned();

    assert_eq!(
        exchange(server.address, tsuru_post(&token, &body)).await.0,
        200
    );
    assert_eq!(
        exchange(server.address, tsuru_post(&token, &body)).await.0,
        200
    );
    assert_eq!(
        exchange(server.address, tsuru_post("wrong", &body)).await.0,
        403
    );

    let (status, _) = exchange(server.address, get_metrics(None)).await;
    assert_eq!(status, 401);
    let (status, _) = exchange(server.address, get_metrics(Some("Bearer nope"))).await;
    assert_eq!(status, 401);
    let (status, text) = exchange(
        server.address,
        get_metrics(Some(&format!("Bearer {API_TOKEN}"))),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    for expected in [
        "# TYPE callback_hub_received_total counter\n",
        "callback_hub_received_total{source=\"tsuru\",outcome=\"stored\"} 1\n",
        "callback_hub_received_total{source=\"tsuru\",outcome=\"duplicate\"} 1\n",
        "callback_hub_received_total{source=\"tsuru\",outcome=\"refused\"} 1\n",
        "callback_hub_received_total{source=\"mns\",outcome=\"stored\"} 0\n",
        "# TYPE callback_hub_store_latency_seconds histogram\n",
        "callback_hub_store_latency_seconds_count{source=\"tsuru\"} 2\n",
        "callback_hub_store_latency_seconds_bucket{source=\"tsuru\",le=\"+Inf\"} 2\n",
        "# TYPE callback_hub_delivery_attempts_total counter\n",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from\n{text}");
    }
    // Every sample line is `name{labels} value` or `name value`.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (_, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
}

#[tokio::test]
async fn without_an_api_token_metrics_are_closed() {
    let server = serve(fixture_vars("TsuruHookFunction")).await;
    let (status, body) = exchange(server.address, get_metrics(Some("Bearer anything"))).await;
    assert_eq!(status, 503, "{body}");
    let post = "POST /metrics HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    assert_eq!(exchange(server.address, post.to_owned()).await.0, 405);
}

// --- X-Ray subsegments of AWS calls ---

const TRACE_HEADER: &str =
    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";

/// The subsegment documents a fake daemon received, each checked for the daemon's header line.
fn received_documents(daemon: &std::net::UdpSocket, count: usize) -> Vec<Value> {
    let mut documents = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..count {
        let n = daemon.recv(&mut buf).expect("a subsegment datagram");
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        let (header, document) = text.split_once('\n').expect("header line, then document");
        assert_eq!(
            serde_json::from_str::<Value>(header).unwrap(),
            json!({"format": "json", "version": 1})
        );
        documents.push(serde_json::from_str(document).unwrap());
    }
    documents
}

#[tokio::test]
async fn each_dynamodb_call_of_a_sampled_request_is_a_subsegment_sent_to_the_daemon() {
    use hub_core::store::EventWriter;
    use hub_core::telemetry::xray::{in_trace, TraceContext};
    use hub_core::{Event, PutOutcome, Source};

    let store = hub_tests::fresh_store("xray").await;
    let daemon = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // Only a guard against a hang if nothing is ever sent; no timing is asserted.
    daemon
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let context = TraceContext::parse(TRACE_HEADER, daemon.local_addr().unwrap());
    assert!(context.is_some());
    let event = Event::new(
        Source::Tsuru,
        "xray-0001",
        "app.deploy",
        "app/xray",
        "{}".to_owned(),
        chrono::Utc::now(),
    );

    let first = in_trace(context.clone(), store.put_event(&event))
        .await
        .unwrap();
    assert_eq!(first, PutOutcome::Stored);
    let again = in_trace(context, store.put_event(&event)).await.unwrap();
    assert_eq!(again, PutOutcome::Duplicate);

    let documents = received_documents(&daemon, 2);
    for doc in &documents {
        assert_eq!(doc["type"], "subsegment");
        assert_eq!(doc["name"], "DynamoDB");
        assert_eq!(doc["namespace"], "aws");
        assert_eq!(doc["trace_id"], "1-5759e988-bd862e3fe1be46a994272793");
        assert_eq!(doc["parent_id"], "53995c3f42cd8ad8");
        assert_eq!(doc["id"].as_str().unwrap().len(), 16);
        assert_eq!(doc["aws"]["operation"], "PutItem");
        assert_eq!(doc["aws"]["region"], "us-east-1");
        assert_eq!(doc["aws"]["table_name"], store.table());
        assert!(
            !doc["aws"]["request_id"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{doc}"
        );
        assert!(doc["end_time"].as_f64().unwrap() >= doc["start_time"].as_f64().unwrap());
        assert_eq!(doc["fault"], false);
        assert_eq!(doc["throttle"], false);
        assert!(doc.get("http").is_some());
    }
    assert_ne!(documents[0]["id"], documents[1]["id"]);
    assert_eq!(documents[0]["http"]["response"]["status"], 200);
    assert_eq!(documents[0]["error"], false);
    // The duplicate is DynamoDB's refused condition: a 400, an error of the caller's making.
    assert_eq!(documents[1]["http"]["response"]["status"], 400);
    assert_eq!(documents[1]["error"], true);
    let text = documents.iter().map(Value::to_string).collect::<String>();
    assert!(!text.contains("testing"), "no credentials in a subsegment");

    // Outside a sampled request nothing is sent: the datagram would already be queued.
    store.put_event(&event).await.unwrap();
    daemon.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        daemon.recv(&mut buf).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::WouldBlock)
    );
}
