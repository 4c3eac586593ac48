//! Outbound webhooks on the real `callback-hub serve`: the outbox survives `kill -9`, and the
//! management API answers on the local server's routes.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use webhooks::testing::{Receiver, Script};

const API_TOKEN: &str = "webhooks-test-api-token";
const ROS_TOKEN: &str = "webhooks-test-ros-token";
const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
/// The most any wait below lasts: far beyond what the schedule needs (a first retry after 4 to
/// 6 s), so that only a lost delivery fails the test.
const DEADLINE: Duration = Duration::from_secs(120);

fn temp_db(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("callback-hub-webhooks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_for_listener(port: u16) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("callback-hub serve did not listen on {port}");
}

async fn serve(db: &Path, port: u16) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_callback-hub"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--db"])
        .arg(db)
        .current_dir(std::env::temp_dir())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("API_TOKEN", API_TOKEN)
        .env("STACK_HOOK_TOKEN", ROS_TOKEN)
        .env("WEBHOOKS_ALLOW_PRIVATE_NETWORKS", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_listener(port).await;
    child
}

async fn call(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let response = client
        .request(request.body(Full::new(body)).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

async fn api(port: u16, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let bearer = format!("Bearer {API_TOKEN}");
    call(port, method, path, &[("authorization", &bearer)], body).await
}

async fn send_stack_event(port: u16, i: usize) {
    let body = json!({
        "StackId": format!("00000000-0000-4000-8000-{i:012}"),
        "StackName": format!("kill-nine-{i}"),
        "Status": "UPDATE_COMPLETE",
    });
    let (status, answer) = call(
        port,
        "POST",
        "/stacks",
        &[
            ("x-callback-token", ROS_TOKEN),
            ("content-type", "application/json"),
        ],
        Some(body),
    )
    .await;
    assert_eq!(status, 200, "event {i}: {answer}");
}

fn kill_nine(mut child: Child) {
    // `Child::kill` is SIGKILL on Unix: no shutdown, no drain, no flush.
    child.kill().unwrap();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stored_event_is_delivered_across_kill_nine() {
    let db = temp_db("kill-nine");
    let receiver_port = free_port();
    let port = free_port();
    let server = serve(&db, port).await;
    let (status, created) = api(
        port,
        "POST",
        "/webhooks",
        Some(json!({
            "name": "kill-nine",
            "url": format!("http://127.0.0.1:{receiver_port}/hook"),
            "secret": SECRET,
            "event_filter": {"sources": ["stack"]},
        })),
    )
    .await;
    assert_eq!(status, 200, "{created}");

    // The receiver is down: the first attempts fail, and the server dies with deliveries
    // pending (some attempted, some in flight, some not yet started).
    let count = 40;
    for i in 0..count {
        send_stack_event(port, i).await;
    }
    kill_nine(server);

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", receiver_port))
        .await
        .unwrap();
    let receiver = Receiver::serve(listener, SECRET, Script::always(200));
    let port = free_port();
    let server = serve(&db, port).await;

    let received = tokio::time::timeout(DEADLINE, async {
        loop {
            let received = receiver.received();
            let distinct: HashSet<String> = received
                .iter()
                .filter_map(|r| r.webhook_id().map(str::to_owned))
                .collect();
            if distinct.len() >= count {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("every stored event is delivered after the restart");
    assert!(
        received.iter().all(|r| r.signature_valid),
        "every delivery is signed"
    );

    // The log agrees: one delivery per event, each delivered, with the ids the receiver saw.
    let (status, page) = api(
        port,
        "GET",
        "/webhooks/kill-nine/deliveries?limit=100",
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let deliveries = page["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), count, "one delivery per event: {page}");
    let seen: HashSet<&str> = received.iter().filter_map(|r| r.webhook_id()).collect();
    for d in deliveries {
        assert!(seen.contains(d["id"].as_str().unwrap()), "{d}");
    }
    let delivered = tokio::time::timeout(DEADLINE, async {
        loop {
            let (_, page) = api(
                port,
                "GET",
                "/webhooks/kill-nine/deliveries?limit=100",
                None,
            )
            .await;
            let states: Vec<Value> = page["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["state"].clone())
                .collect();
            if states.iter().all(|s| s == "delivered") {
                return states.len();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the deliveries are recorded as delivered");
    assert_eq!(delivered, count);
    kill_nine(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_is_served_by_the_local_server_with_a_live_worker() {
    let db = temp_db("api");
    let receiver = Receiver::start(SECRET, Script::fail_then_succeed(0, 200)).await;
    let port = free_port();
    let server = serve(&db, port).await;

    assert_eq!(call(port, "GET", "/webhooks", &[], None).await.0, 401);
    assert_eq!(api(port, "GET", "/events/webhooks", None).await.0, 204);
    let (status, created) = api(
        port,
        "POST",
        "/1.6/events/webhooks",
        Some(
            json!({"name": "live", "url": receiver.url(), "secret": SECRET,
                    "body": "{{.Kind.Name}} {{.Target.Value}}"}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(
        api(
            port,
            "POST",
            "/webhooks",
            Some(json!({"name": "live", "url": receiver.url()}))
        )
        .await
        .0,
        409
    );
    let (status, refused) = api(
        port,
        "POST",
        "/webhooks",
        Some(json!({"name": "bad", "url": receiver.url(), "body": "{{ --"})),
    )
    .await;
    assert_eq!(status, 400, "{refused}");

    send_stack_event(port, 7).await;
    let received = tokio::time::timeout(DEADLINE, receiver.wait_for(1))
        .await
        .expect("the worker delivers the event");
    assert_eq!(&received[0].body[..], b"stack.UPDATE_COMPLETE kill-nine-7");
    assert!(received[0].signature_valid);

    // Replay: the same webhook-id again.
    let id = received[0].webhook_id().unwrap().to_owned();
    let (status, replayed) = api(
        port,
        "POST",
        "/webhooks/live/replay",
        Some(json!({"delivery": id})),
    )
    .await;
    assert_eq!(status, 200, "{replayed}");
    let again = tokio::time::timeout(DEADLINE, receiver.wait_for(2))
        .await
        .expect("the replay is delivered");
    assert_eq!(again[1].webhook_id(), Some(id.as_str()));

    let (status, tested) = api(port, "POST", "/webhooks/live/test", None).await;
    assert_eq!(status, 200, "{tested}");
    assert_eq!(tested["verdict"], "delivered");
    assert_eq!(api(port, "DELETE", "/webhooks/live", None).await.0, 200);
    assert_eq!(api(port, "GET", "/webhooks/live", None).await.0, 404);
    kill_nine(server);
}
