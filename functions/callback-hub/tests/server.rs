//! The local server over real HTTP: disabled routes, error parity with the Lambda handlers,
//! deadlines and the connection limit, a full disk, the periodic purge, graceful shutdown,
//! SIGTERM, the demo run twice, and the README's curl examples.

use callback_hub::server::{purge_expired_every, serve_with, ServeLimits};
use callback_hub::Routes;
use callback_hub::{AnyStore, SqliteStore};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn events_dir() -> PathBuf {
    repo_root().join("events")
}

fn temp_db(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("callback-hub-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}

struct Running {
    address: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(vars: &HashMap<String, String>) -> Running {
    let store = SqliteStore::in_memory().unwrap();
    start_with(vars, store, ServeLimits::default()).await
}

async fn start_with(
    vars: &HashMap<String, String>,
    store: SqliteStore,
    limits: ServeLimits,
) -> Running {
    let routes = Arc::new(
        Routes::local(vars.clone(), AnyStore::Sqlite(store))
            .await
            .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve_with(listener, routes, limits, async {
        let _ = stopped.await;
    }));
    Running {
        address,
        stop: Some(stop),
        task,
    }
}

/// One raw HTTP/1.1 exchange (the connection is closed after it): status and body.
fn exchange(address: std::net::SocketAddr, request: &str) -> (u16, String) {
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
}

fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn demo_vars() -> HashMap<String, String> {
    callback_hub::demo::demo_vars(&events_dir()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_without_its_configuration_is_disabled_and_the_others_work() {
    let mut vars = demo_vars();
    vars.remove("STACK_HOOK_TOKEN");
    vars.remove("SNS_TOPIC_ARNS");
    vars.remove("DINGTALK_TOKEN");
    let server = start(&vars).await;
    let address = server.address;
    let (status, body) =
        tokio::task::spawn_blocking(move || exchange(address, &post("/stacks?token=x", "{}")))
            .await
            .unwrap();
    assert_eq!(status, 503);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "unavailable");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("STACK_HOOK_TOKEN") && message.contains("SNS_TOPIC_ARNS"),
        "{message}"
    );
    // DingTalk names the half-configured variable, never a value.
    let (status, body) =
        tokio::task::spawn_blocking(move || exchange(address, &post("/dingtalk", "{}")))
            .await
            .unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("DINGTALK_TOKEN"), "{body}");
    // S3 still has its token: an unauthenticated request is refused, not accepted.
    let (status, _) =
        tokio::task::spawn_blocking(move || exchange(address, &post("/s3", r#"{"Records":[]}"#)))
            .await
            .unwrap();
    assert_eq!(status, 403);
    let (status, body) = tokio::task::spawn_blocking(move || {
        exchange(
            address,
            "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"POST /mns\":\"enabled\""), "{body}");
    let (status, _) = tokio::task::spawn_blocking(move || {
        exchange(
            address,
            "GET /nowhere HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_the_lambda_status_and_body() {
    let vars = demo_vars();
    let server = start(&vars).await;
    let address = server.address;
    let token = vars["STACK_HOOK_TOKEN"].clone();
    let s3_token = vars["S3_WEBHOOK_TOKEN"].clone();
    let cases: Vec<(String, String)> = vec![
        (format!("/stacks?token={token}"), "{not json".into()),
        (
            format!("/stacks?token={token}"),
            r#"{"StackId":"x"}"#.into(),
        ),
        ("/stacks?token=wrong".into(), "{}".into()),
        (format!("/s3?token={s3_token}"), r#"{"Records":[]}"#.into()),
        ("/mns".into(), "<xml/>".into()),
        (
            "/dingtalk?signature=x&timestamp=1&nonce=n".into(),
            r#"{"encrypt":"AAAA"}"#.into(),
        ),
    ];
    // The same requests through the handlers as the Lambda functions build them.
    let lambda_store = AnyStore::Sqlite(SqliteStore::in_memory().unwrap());
    let lambda = Routes::local(vars.clone(), lambda_store).await.unwrap();
    for (path, body) in cases {
        let request = post(&path, &body);
        let (status, served) = tokio::task::spawn_blocking(move || exchange(address, &request))
            .await
            .unwrap();
        let direct = lambda
            .handle(
                http::Request::builder()
                    .method("POST")
                    .uri(&path)
                    .header("content-type", "application/json")
                    .body(lambda_http::Body::Text(body.clone()))
                    .unwrap(),
            )
            .await;
        assert_eq!(status, direct.status().as_u16(), "{path}");
        assert!((400..500).contains(&status), "{path}: {status}");
        let lambda_http::Body::Text(expected) = direct.body() else {
            panic!("{path}: text body expected")
        };
        assert_eq!(&served, expected, "{path}");
    }
    // The body cap holds over HTTP too, before the body is read whole.
    let big = "x".repeat(1_048_577);
    let (status, body) =
        tokio::task::spawn_blocking(move || exchange(address, &post("/mns", &big)))
            .await
            .unwrap();
    assert_eq!(status, 413);
    assert!(body.contains("payload_too_large"));
}

/// Reads from `stream` until the server closes the connection; what it sent before. A read
/// that times out (the guard against a hanging test) means the server kept it open.
fn read_until_closed(stream: &mut std::net::TcpStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return received,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return received,
            Err(err) => panic!("the server kept the connection open: {err}"),
        }
    }
}

/// Reads one response head (up to its blank line) from a connection that stays open.
fn read_head(stream: &mut std::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed mid-head");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// Reads one whole response (head and `content-length` body) from a keep-alive connection.
fn read_response(stream: &mut std::net::TcpStream) -> (u16, String) {
    let head = read_head(stream);
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("content-length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    (
        head[9..12].parse().unwrap(),
        String::from_utf8(body).unwrap(),
    )
}

const HEALTH_KEEP_ALIVE: &str = "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_lets_an_in_flight_request_finish() {
    let vars = demo_vars();
    let mut server = start(&vars).await;
    let address = server.address;
    let token = vars["STACK_HOOK_TOKEN"].clone();
    let body = r#"{"StackId":"s-1","StackName":"graceful","Status":"CREATE_COMPLETE"}"#;
    let (half, rest) = body.split_at(20);
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "POST /stacks?token={token} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    // `100 Continue` comes when the server starts reading the body: the request is in flight.
    let mut stream = tokio::task::spawn_blocking(move || {
        let interim = read_head(&mut stream);
        assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
        stream.write_all(half.as_bytes()).unwrap();
        stream
    })
    .await
    .unwrap();
    server.stop.take().unwrap().send(()).unwrap();
    // Shutdown has begun once new connections are refused.
    tokio::task::spawn_blocking(move || {
        for _ in 0..1000 {
            if std::net::TcpStream::connect(address).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the server kept accepting connections after shutdown began");
    })
    .await
    .unwrap();
    let rest = rest.to_owned();
    let response = tokio::task::spawn_blocking(move || {
        stream.write_all(rest.as_bytes()).unwrap();
        String::from_utf8(read_until_closed(&mut stream)).unwrap()
    })
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"status\":\"stored\""), "{response}");
    server.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_slow_to_send_headers_or_idle_after_a_request_is_disconnected() {
    let limits = ServeLimits {
        header_timeout: Duration::from_millis(300),
        ..ServeLimits::default()
    };
    let server = start_with(&demo_vars(), SqliteStore::in_memory().unwrap(), limits).await;
    let address = server.address;
    tokio::task::spawn_blocking(move || {
        // Half a request head, then nothing: closed without a response.
        let mut slow = std::net::TcpStream::connect(address).unwrap();
        slow.write_all(b"POST /stacks HTTP/1.1\r\nhost: x\r\n")
            .unwrap();
        let received = read_until_closed(&mut slow);
        assert!(
            !String::from_utf8_lossy(&received).contains(" 200 "),
            "{received:?}"
        );
        // A keep-alive connection left idle after its request is closed too.
        let mut idle = std::net::TcpStream::connect(address).unwrap();
        idle.write_all(HEALTH_KEEP_ALIVE.as_bytes()).unwrap();
        assert_eq!(read_response(&mut idle).0, 200);
        assert!(read_until_closed(&mut idle).is_empty());
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_not_received_by_the_request_deadline_is_answered_408_and_closed() {
    let vars = demo_vars();
    let limits = ServeLimits {
        request_timeout: Duration::from_millis(300),
        ..ServeLimits::default()
    };
    let server = start_with(&vars, SqliteStore::in_memory().unwrap(), limits).await;
    let address = server.address;
    let token = vars["STACK_HOOK_TOKEN"].clone();
    let response = tokio::task::spawn_blocking(move || {
        let mut slow = std::net::TcpStream::connect(address).unwrap();
        write!(
            slow,
            "POST /stacks?token={token} HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{{\"StackId\""
        )
        .unwrap();
        String::from_utf8(read_until_closed(&mut slow)).unwrap()
    })
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("request_timeout"), "{response}");
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_past_the_limit_wait_until_one_closes() {
    let limits = ServeLimits {
        max_connections: 1,
        ..ServeLimits::default()
    };
    let server = start_with(&demo_vars(), SqliteStore::in_memory().unwrap(), limits).await;
    let address = server.address;
    tokio::task::spawn_blocking(move || {
        // The one connection the server may serve, kept open.
        let mut first = std::net::TcpStream::connect(address).unwrap();
        first.write_all(HEALTH_KEEP_ALIVE.as_bytes()).unwrap();
        assert_eq!(read_response(&mut first).0, 200);
        let mut second = std::net::TcpStream::connect(address).unwrap();
        second
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .unwrap();
        // The first connection is still served meanwhile; the second is not.
        first.write_all(HEALTH_KEEP_ALIVE.as_bytes()).unwrap();
        assert_eq!(read_response(&mut first).0, 200);
        second.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let pending = second.read(&mut byte);
        assert!(
            matches!(&pending, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "the second connection was served past the limit: {pending:?}"
        );
        // Once the first closes, the second is served.
        drop(first);
        second.set_nonblocking(false).unwrap();
        let response = String::from_utf8(read_until_closed(&mut second)).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_answers_503_with_retry_after() {
    let vars = demo_vars();
    let store = SqliteStore::in_memory().unwrap();
    // The database may not grow by one page: what SQLite answers when the disk is full.
    store
        .with(|c| {
            let pages: i64 = c
                .query_row("PRAGMA page_count", [], |r| r.get(0))
                .map_err(sqlite_store::failed)?;
            c.pragma_update(None, "max_page_count", pages)
                .map_err(sqlite_store::failed)
        })
        .await
        .unwrap();
    let server = start_with(&vars, store, ServeLimits::default()).await;
    let address = server.address;
    let token = vars["STACK_HOOK_TOKEN"].clone();
    let body = format!(
        r#"{{"StackId":"s-full","StackName":"full","Status":"CREATE_COMPLETE","Outputs":[{{"OutputKey":"K","OutputValue":"{}"}}]}}"#,
        "v".repeat(20_000)
    );
    let response = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream
            .write_all(post(&format!("/stacks?token={token}"), &body).as_bytes())
            .unwrap();
        String::from_utf8(read_until_closed(&mut stream)).unwrap()
    })
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("\r\nretry-after:"),
        "{response}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_events_are_purged_while_serving() {
    use hub_core::event::{Event, Source};
    use hub_core::store::{EventLookup, EventWriter};
    let store = SqliteStore::in_memory().unwrap();
    let mut expired = Event::new(Source::Mns, "old", "T", "orders", "{}", chrono::Utc::now());
    expired.expires_at = Some(chrono::Utc::now().timestamp() - 1);
    store.put_event(&expired).await.unwrap();
    let kept = Event::new(Source::Mns, "new", "T", "orders", "{}", chrono::Utc::now());
    store.put_event(&kept).await.unwrap();
    let purge = tokio::spawn(purge_expired_every(
        store.clone(),
        Duration::from_millis(20),
    ));
    let mut remaining = store.count().await.unwrap();
    for _ in 0..1000 {
        if remaining == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        remaining = store.count().await.unwrap();
    }
    purge.abort();
    assert_eq!(remaining, 1);
    assert!(store.get_event(Source::Mns, "new").await.unwrap().is_some());
}

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_callback-hub"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(port: u16) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("callback-hub serve did not listen on {port}");
}

/// `callback-hub serve` configured with the test secrets, the way the README runs it.
fn spawn_serve(db: &Path, port: u16) -> std::process::Child {
    let mut command = binary();
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--db"])
        .arg(db)
        .current_dir(repo_root())
        .env_remove("EVENTS_TABLE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in demo_vars() {
        command.env(name, value);
    }
    let child = command.spawn().unwrap();
    wait_for(port);
    child
}

#[test]
fn sigterm_stops_serve_cleanly() {
    let port = free_port();
    let child = spawn_serve(&temp_db("sigterm"), port);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{logs}");
    assert!(logs.contains("callback-hub serving"), "{logs}");
    assert!(logs.contains("shutting down"), "{logs}");
    assert!(logs.contains("\"route\":\"POST /s3\""), "{logs}");
}

#[test]
fn the_demo_run_twice_stores_nothing_new_the_second_time() {
    let db = temp_db("demo-twice");
    let run = || {
        let output = binary()
            .args(["demo", "--db"])
            .arg(&db)
            .current_dir(repo_root())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{stdout}");
        assert!(
            stdout.contains("demo: every sample accepted and stored"),
            "{stdout}"
        );
        stdout
    };
    let first = run();
    let samples = callback_hub::demo::sample_files(&events_dir())
        .unwrap()
        .len();
    let accepted = first.matches(" -> 200 ").count() + first.matches(" -> 204 ").count();
    assert_eq!(accepted, samples, "{first}");
    // Every sample's events, as the demo's own check counts them.
    let stored: usize = callback_hub::demo::EXPECTED.iter().map(|e| e.2).sum();
    assert!(
        first.contains(&format!(
            "{stored} new event(s) stored by this run, {stored} in the database"
        )),
        "{first}"
    );
    let second = run();
    assert!(
        second.contains(&format!(
            "0 new event(s) stored by this run, {stored} in the database"
        )),
        "{second}"
    );
    assert!(second.contains("\"status\":\"duplicate\""), "{second}");
}

/// Every block of the README between `<!-- curl-examples -->` markers runs against `serve` and
/// must exit 0 (the examples use `curl --fail`).
#[test]
fn the_readme_curl_examples_work_against_serve() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = readme
        .split("<!-- curl-examples -->")
        .nth(1)
        .expect("README has a curl-examples section");
    let script: String = section
        .split("```")
        .skip(1)
        .step_by(2)
        .map(|block| block.trim_start_matches("bash").trim_start_matches("sh"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(script.matches("curl ").count() >= 3, "{script}");
    let port = free_port();
    let mut child = spawn_serve(&temp_db("readme"), port);
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(repo_root())
        .env("HUB", format!("http://127.0.0.1:{port}"))
        .output()
        .unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        output.status.success(),
        "README examples failed:\n{script}\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
