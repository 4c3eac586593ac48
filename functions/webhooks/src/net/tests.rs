//! Every server here listens on 127.0.0.1; names that resolve elsewhere come from a
//! [`StaticResolver`] and are never connected to.

use super::*;
use crate::model::PreviousSecret;
use crate::signature::{verify, Secret, DEFAULT_TOLERANCE};
use crate::view::EventView;
use chrono::TimeZone;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use std::convert::Infallible;
use std::io::{Read, Write};
use tokio::net::TcpListener;

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const TEST_CA: &[u8] = include_bytes!("../../tests/fixtures/test-ca.der");
const TEST_LEAF: &[u8] = include_bytes!("../../tests/fixtures/test-leaf.der");
const TEST_LEAF_KEY: &[u8] = include_bytes!("../../tests/fixtures/test-leaf.key.der");
/// A public address that tests only ever resolve to, never connect to: every test that uses
/// it goes through a proxy on 127.0.0.1.
const PUBLIC: IpAddr = IpAddr::V4(Ipv4Addr::new(93, 184, 216, 34));

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn forbidden_addresses() {
    let forbidden = [
        "0.0.0.0",
        "0.1.2.3",
        "10.0.0.1",
        "100.64.0.1",
        "100.100.100.200",
        "127.0.0.1",
        "127.255.255.254",
        "169.254.169.254",
        "169.254.0.1",
        "172.16.0.1",
        "172.31.255.255",
        "192.0.0.192",
        "192.0.2.1",
        "192.168.1.1",
        "198.18.0.1",
        "198.19.255.255",
        "198.51.100.1",
        "203.0.113.9",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:10.1.2.3",
        "::127.0.0.1",
        "::ffff:0:192.168.0.1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b::10.0.0.1",
        "64:ff9b:1::1",
        "2002:7f00:1::",
        "2002:a9fe:a9fe::1",
        "2001:db8::1",
        "2001::1",
        "3fff::1",
        "fc00::1",
        "fd00:ec2::254",
        "fe80::1",
        "febf::1",
        "fec0::1",
        "ff02::1",
        "100::1",
    ];
    for text in forbidden {
        assert!(is_forbidden(ip(text)), "{text} should be forbidden");
    }
    let allowed = [
        "1.1.1.1",
        "8.8.8.8",
        "93.184.216.34",
        "100.63.255.255",
        "100.128.0.0",
        "172.15.255.255",
        "172.32.0.0",
        "169.253.255.255",
        "192.0.1.1",
        "192.169.0.1",
        "198.20.0.1",
        "223.255.255.255",
        "2606:4700:4700::1111",
        "2a00:1450:4001::200e",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
        "fbff::1",
        "fe00::1",
    ];
    for text in allowed {
        assert!(!is_forbidden(ip(text)), "{text} should be allowed");
    }
}

#[test]
fn allowed_addresses_keep_order_and_drop_forbidden() {
    let all = [ip("10.0.0.1"), PUBLIC, ip("::1"), ip("2606:4700::1")];
    assert_eq!(allowed_addresses(&all, false), [PUBLIC, ip("2606:4700::1")]);
    assert_eq!(allowed_addresses(&all, true), all);
    assert!(allowed_addresses(&[ip("169.254.169.254")], false).is_empty());
}

#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    uri: String,
    headers: HeaderMap,
    body: Bytes,
}

type Seen = Arc<Mutex<Vec<Recorded>>>;

/// An HTTP/1 server on 127.0.0.1 that records every request and answers with `respond`.
async fn receiver<F>(respond: F) -> (SocketAddr, Seen)
where
    F: Fn(&Recorded) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let respond = Arc::new(respond);
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = record.clone();
            let respond = respond.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let record = record.clone();
                    let respond = respond.clone();
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let recorded = Recorded {
                            method: parts.method.to_string(),
                            uri: parts.uri.to_string(),
                            headers: parts.headers,
                            body,
                        };
                        let response = respond(&recorded);
                        record.lock().unwrap().push(recorded);
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (address, seen)
}

fn respond(status: u16, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

fn subscription(url: &str) -> Subscription {
    let mut sub: Subscription =
        serde_json::from_value(json!({"name": "hook", "url": url})).unwrap();
    sub.secret = Some(SECRET.into());
    sub
}

fn sender_with(policy: ValidationPolicy, resolver: StaticResolver) -> Sender {
    Sender::with_resolver(SenderConfig::new(policy), Arc::new(resolver))
}

fn sender(allow_private_networks: bool, resolver: StaticResolver) -> Sender {
    sender_with(
        ValidationPolicy {
            allowed_proxy_urls: Vec::new(),
            allow_private_networks,
        },
        resolver,
    )
}

fn json_body(text: &str) -> RenderedBody {
    RenderedBody {
        bytes: Bytes::from(text.to_owned()),
        content_type: Some("application/json"),
    }
}

fn now() -> DateTime<Utc> {
    // The receiver side checks signatures against this same instant, so a fixed time works.
    Utc.with_ymd_and_hms(2024, 6, 1, 12, 0, 0).unwrap()
}

#[tokio::test]
async fn literal_loopback_is_refused_without_private_networks() {
    let (address, seen) = receiver(|_| respond(200, "ok")).await;
    let sender = sender(
        false,
        StaticResolver::default().with("localhost", &[ip("127.0.0.1")]),
    );
    for url in [
        format!("http://127.0.0.1:{}/hook", address.port()),
        format!("http://[::ffff:127.0.0.1]:{}/hook", address.port()),
        format!("http://localhost:{}/hook", address.port()),
    ] {
        let attempt = sender
            .send(&subscription(&url), "msg_1", &json_body("{}"), now())
            .await;
        assert!(
            matches!(attempt.error, Some(SendError::Forbidden(_))),
            "{url}: {attempt:?}"
        );
        assert_eq!(attempt.status, None);
        assert_eq!(attempt.verdict(), Verdict::Retry);
    }
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_name_resolving_to_the_metadata_service_is_refused() {
    let resolver = StaticResolver::default()
        .with("metadata.test", &[ip("169.254.169.254")])
        .with("metadata6.test", &[ip("fd00:ec2::254")]);
    let sender = sender(false, resolver);
    for host in ["metadata.test", "metadata6.test"] {
        let url = format!("http://{host}/latest/meta-data/");
        let attempt = sender
            .send(&subscription(&url), "msg_1", &json_body("{}"), now())
            .await;
        match &attempt.error {
            Some(SendError::Forbidden(detail)) => assert!(detail.contains(host), "{detail}"),
            other => panic!("{host}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn unknown_names_and_refused_connections_are_retried() {
    let sender = sender(true, StaticResolver::default());
    let attempt = sender
        .send(
            &subscription("http://nowhere.test/"),
            "msg_1",
            &json_body("{}"),
            now(),
        )
        .await;
    assert!(
        matches!(attempt.error, Some(SendError::Resolve(_))),
        "{attempt:?}"
    );
    assert_eq!(attempt.verdict(), Verdict::Retry);

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let attempt = sender
        .send(
            &subscription(&format!("http://127.0.0.1:{port}/")),
            "msg_1",
            &json_body("{}"),
            now(),
        )
        .await;
    assert!(
        matches!(attempt.error, Some(SendError::Connect(_))),
        "{attempt:?}"
    );
    assert_eq!(attempt.verdict(), Verdict::Retry);
}

#[tokio::test]
async fn a_loopback_receiver_gets_a_signed_request_when_allowed() {
    let (address, seen) = receiver(|_| respond(200, "thanks")).await;
    let sender = sender(true, StaticResolver::default());
    let mut sub = subscription(&format!("http://127.0.0.1:{}/hook?x=1", address.port()));
    sub.headers
        .insert("X-Team".into(), vec!["a".into(), "b".into()]);
    let view = EventView::sample("hook", now());
    let body = crate::template::render_body(&sub, &view).unwrap();
    let msg_id = crate::signature::webhook_id("hook", "stack", "e-1");

    let attempt = sender.send(&sub, &msg_id, &body, now()).await;
    assert_eq!(attempt.status, Some(200), "{attempt:?}");
    assert_eq!(attempt.error, None);
    assert_eq!(attempt.response_excerpt, "thanks");
    assert_eq!(attempt.verdict(), Verdict::Delivered);
    assert_eq!(attempt.started_at, now());

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.uri, "/hook?x=1");
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        header("user-agent"),
        format!("callback-hub/{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(header("content-type"), "application/json");
    let teams: Vec<_> = request.headers.get_all("x-team").iter().collect();
    assert_eq!(teams, ["a", "b"]);
    assert_eq!(header("webhook-id"), msg_id);
    assert_eq!(header("webhook-timestamp"), now().timestamp().to_string());
    let parsed: EventView = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(parsed, view);
    let secrets = [Secret::parse(SECRET).unwrap()];
    assert_eq!(
        verify(
            &header("webhook-signature"),
            &secrets,
            &header("webhook-id"),
            &header("webhook-timestamp"),
            &request.body,
            now().timestamp(),
            DEFAULT_TOLERANCE,
        ),
        Ok(())
    );
}

#[tokio::test]
async fn during_rotation_both_secrets_sign_and_timestamps_are_fresh() {
    let (address, seen) = receiver(|_| respond(204, "")).await;
    let sender = sender(true, StaticResolver::default());
    let mut sub = subscription(&format!("http://127.0.0.1:{}/", address.port()));
    let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    sub.previous_secret = Some(PreviousSecret {
        secret: old.into(),
        expires_at: now() + chrono::TimeDelta::hours(1),
    });
    let first = sender
        .send(&sub, "msg_x", &json_body("{\"a\":1}"), now())
        .await;
    let later = now() + chrono::TimeDelta::seconds(30);
    let second = sender
        .send(&sub, "msg_x", &json_body("{\"a\":1}"), later)
        .await;
    assert_eq!(first.verdict(), Verdict::Delivered);
    assert_eq!(second.verdict(), Verdict::Delivered);
    let seen = seen.lock().unwrap();
    let header = |i: usize, name: &str| {
        seen[i]
            .headers
            .get(name)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(header(0, "webhook-id"), header(1, "webhook-id"));
    assert_eq!(
        header(0, "webhook-timestamp"),
        now().timestamp().to_string()
    );
    assert_eq!(
        header(1, "webhook-timestamp"),
        later.timestamp().to_string()
    );
    let signatures = header(0, "webhook-signature");
    assert_eq!(signatures.split(' ').count(), 2);
    for secret in [SECRET, old] {
        assert_eq!(
            verify(
                &signatures,
                &[Secret::parse(secret).unwrap()],
                "msg_x",
                &header(0, "webhook-timestamp"),
                b"{\"a\":1}",
                now().timestamp(),
                DEFAULT_TOLERANCE
            ),
            Ok(()),
            "{secret}"
        );
    }
}

#[tokio::test]
async fn subscription_headers_win_and_get_sends_no_default_body() {
    let (address, seen) = receiver(|_| respond(200, "")).await;
    let sender = sender(true, StaticResolver::default());
    let mut sub = subscription(&format!("http://127.0.0.1:{}/", address.port()));
    sub.headers
        .insert("User-Agent".into(), vec!["mine/2".into()]);
    sub.headers
        .insert("content-type".into(), vec!["text/plain".into()]);
    sub.method = "get".into();
    let view = EventView::sample("hook", now());
    let get_body = crate::template::render_body(&sub, &view).unwrap();
    sender.send(&sub, "m1", &get_body, now()).await;
    sub.method = "POST".into();
    sender.send(&sub, "m2", &json_body("{}"), now()).await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].method, "GET");
    assert!(seen[0].body.is_empty());
    assert_eq!(seen[0].headers["user-agent"], "mine/2");
    assert_eq!(seen[1].headers["content-type"], "text/plain");
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (address, seen) = receiver(move |request| {
        if request.uri == "/start" {
            Response::builder()
                .status(StatusCode::FOUND)
                .header("location", "/elsewhere")
                .body(Full::new(Bytes::from_static(b"moved")))
                .unwrap()
        } else {
            respond(200, "followed")
        }
    })
    .await;
    let sender = sender(true, StaticResolver::default());
    let sub = subscription(&format!("http://127.0.0.1:{}/start", address.port()));
    let attempt = sender.send(&sub, "m", &json_body("{}"), now()).await;
    assert_eq!(attempt.status, Some(302));
    assert_eq!(attempt.response_excerpt, "moved");
    assert_eq!(attempt.verdict(), Verdict::Retry);
    let uris: Vec<String> = seen.lock().unwrap().iter().map(|r| r.uri.clone()).collect();
    assert_eq!(uris, ["/start"]);
}

#[tokio::test]
async fn the_response_excerpt_is_capped_and_retry_after_read() {
    let (address, _) = receiver(|_| {
        Response::builder()
            .status(503)
            .header("retry-after", "120")
            .body(Full::new(Bytes::from("é".repeat(3000))))
            .unwrap()
    })
    .await;
    let sender = sender(true, StaticResolver::default());
    let sub = subscription(&format!("http://127.0.0.1:{}/", address.port()));
    let attempt = sender.send(&sub, "m", &json_body("{}"), now()).await;
    assert_eq!(attempt.status, Some(503));
    assert_eq!(attempt.retry_after(), Some(Duration::from_secs(120)));
    assert_eq!(attempt.verdict(), Verdict::Retry);
    // 1024 bytes of two-byte characters: 512 of them, nothing cut in half.
    assert_eq!(attempt.response_excerpt, "é".repeat(512));
}

#[tokio::test]
async fn gone_is_its_own_verdict() {
    let (address, _) = receiver(|_| respond(410, "unsubscribed")).await;
    let sender = sender(true, StaticResolver::default());
    let sub = subscription(&format!("http://127.0.0.1:{}/", address.port()));
    let attempt = sender.send(&sub, "m", &json_body("{}"), now()).await;
    assert_eq!(attempt.verdict(), Verdict::Gone);
}

#[tokio::test]
async fn a_silent_receiver_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    // Accepts and holds connections without ever answering.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let mut config = SenderConfig::new(ValidationPolicy {
        allowed_proxy_urls: Vec::new(),
        allow_private_networks: true,
    });
    config.timeout = Duration::from_millis(300);
    let sender = Sender::with_resolver(config, Arc::new(StaticResolver::default()));
    let sub = subscription(&format!("http://127.0.0.1:{}/", address.port()));
    let attempt = sender.send(&sub, "m", &json_body("{}"), now()).await;
    assert_eq!(attempt.error, Some(SendError::Timeout));
    assert_eq!(attempt.verdict(), Verdict::Retry);
    holder.abort();
}

#[tokio::test]
async fn requests_that_cannot_be_built_fail_without_retry() {
    let sender = sender(true, StaticResolver::default());
    let mut no_secret = subscription("http://127.0.0.1:9/");
    no_secret.secret = None;
    let attempt = sender.send(&no_secret, "m", &json_body("{}"), now()).await;
    assert!(
        matches!(attempt.error, Some(SendError::Request(_))),
        "{attempt:?}"
    );
    assert_eq!(attempt.verdict(), Verdict::Failed);

    let mut proxied = subscription("http://hooks.test/");
    proxied.proxy_url = "http://127.0.0.1:3128".into();
    let attempt = sender.send(&proxied, "m", &json_body("{}"), now()).await;
    match attempt.error {
        Some(SendError::Request(detail)) => assert!(detail.contains("proxy"), "{detail}"),
        other => panic!("{other:?}"),
    }

    let template_error = crate::template::TemplateError::Exec("boom".into());
    let attempt = Attempt::template_failed(now(), &template_error);
    assert_eq!(attempt.verdict(), Verdict::Failed);
}

fn proxy_policy(port: u16) -> ValidationPolicy {
    ValidationPolicy {
        allowed_proxy_urls: vec![
            normalize_proxy_url(&format!("http://user:pw@127.0.0.1:{port}")).unwrap(),
        ],
        allow_private_networks: false,
    }
}

#[tokio::test]
async fn http_through_a_proxy_uses_absolute_form_and_credentials() {
    let (proxy, seen) = receiver(|_| respond(200, "via proxy")).await;
    let resolver = StaticResolver::default()
        .with("hooks.test", &[PUBLIC])
        .with("internal.test", &[PUBLIC, ip("10.0.0.5")]);
    let sender = sender_with(proxy_policy(proxy.port()), resolver);
    let mut sub = subscription("http://hooks.test/x?y=1");
    sub.proxy_url = format!("http://user:pw@127.0.0.1:{}", proxy.port());
    let attempt = sender.send(&sub, "m", &json_body("{}"), now()).await;
    assert_eq!(attempt.status, Some(200), "{attempt:?}");
    assert_eq!(attempt.response_excerpt, "via proxy");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0].uri, "http://hooks.test/x?y=1");
        assert_eq!(seen[0].headers["proxy-authorization"], "Basic dXNlcjpwdw==");
        assert!(seen[0].headers.contains_key("webhook-signature"));
    }

    // A target with any forbidden address is refused before the proxy is asked.
    sub.url = "http://internal.test/".into();
    let attempt = sender.send(&sub, "m", &json_body("{}"), now()).await;
    assert!(
        matches!(attempt.error, Some(SendError::Forbidden(_))),
        "{attempt:?}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);

    // With private networks allowed nothing is checked, so a name only the proxy can resolve
    // still goes through it.
    let mut lan = proxy_policy(proxy.port());
    lan.allow_private_networks = true;
    let sender = sender_with(lan, StaticResolver::default());
    sub.url = "http://only-the-proxy-knows.test/".into();
    let attempt = sender.send(&sub, "m", &json_body("{}"), now()).await;
    assert_eq!(attempt.status, Some(200), "{attempt:?}");
    assert_eq!(
        seen.lock().unwrap()[1].uri,
        "http://only-the-proxy-knows.test/"
    );
}

/// A TLS server on 127.0.0.1 (std thread, blocking rustls) with the test leaf certificate:
/// reads one request per connection and answers `200 secure`.
fn tls_server() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(TEST_LEAF.to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(TEST_LEAF_KEY.to_vec())),
            )
            .unwrap(),
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(tcp) = stream else { continue };
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
            let Ok(connection) = rustls::ServerConnection::new(config.clone()) else {
                continue;
            };
            let mut tls = rustls::StreamOwned::new(connection, tcp);
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match tls.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let length = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; length];
            if tls.read_exact(&mut body).is_err() {
                continue;
            }
            let _ = tls.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\nsecure",
            );
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    address
}

fn tls_sender(
    roots: Vec<CertificateDer<'static>>,
    policy: ValidationPolicy,
    resolver: StaticResolver,
) -> Sender {
    let mut config = SenderConfig::new(policy);
    config.tls_roots = Some(roots);
    Sender::with_resolver(config, Arc::new(resolver))
}

fn private_allowed() -> ValidationPolicy {
    ValidationPolicy {
        allowed_proxy_urls: Vec::new(),
        allow_private_networks: true,
    }
}

#[tokio::test]
async fn https_is_verified_unless_the_subscription_is_insecure() {
    let server = tls_server();
    let url = format!("https://127.0.0.1:{}/secure", server.port());
    let trusted = tls_sender(
        vec![CertificateDer::from(TEST_CA.to_vec())],
        private_allowed(),
        StaticResolver::default(),
    );
    let attempt = trusted
        .send(&subscription(&url), "m", &json_body("{}"), now())
        .await;
    assert_eq!(attempt.status, Some(200), "{attempt:?}");
    assert_eq!(attempt.response_excerpt, "secure");

    // Nothing trusts the test CA here: refused, unless the subscription is insecure.
    let untrusting = tls_sender(Vec::new(), private_allowed(), StaticResolver::default());
    let attempt = untrusting
        .send(&subscription(&url), "m", &json_body("{}"), now())
        .await;
    match &attempt.error {
        Some(SendError::Tls(detail)) => assert!(
            detail.to_lowercase().contains("certificate")
                || detail.contains("issuer")
                || detail.contains("root"),
            "{detail}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(attempt.verdict(), Verdict::Retry);
    let mut insecure = subscription(&url);
    insecure.insecure = true;
    let attempt = untrusting
        .send(&insecure, "m", &json_body("{}"), now())
        .await;
    assert_eq!(attempt.status, Some(200), "{attempt:?}");
    // And the insecure connection is not reused for a subscription that wants verification.
    let attempt = untrusting
        .send(&subscription(&url), "m", &json_body("{}"), now())
        .await;
    assert!(
        matches!(attempt.error, Some(SendError::Tls(_))),
        "{attempt:?}"
    );
}

#[tokio::test]
async fn https_through_a_connect_proxy() {
    let server = tls_server();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    let requests: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = requests.clone();
    // A CONNECT proxy that tunnels every request to the TLS server, whatever it names.
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    match client.read_u8().await {
                        Ok(byte) => head.push(byte),
                        Err(_) => return,
                    }
                }
                record
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .unwrap();
                let mut upstream = TcpStream::connect(server).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    let sender = tls_sender(
        vec![CertificateDer::from(TEST_CA.to_vec())],
        proxy_policy(proxy.port()),
        StaticResolver::default().with("hooks.test", &[PUBLIC]),
    );
    let mut sub = subscription("https://hooks.test/secure");
    sub.proxy_url = format!("http://user:pw@127.0.0.1:{}/", proxy.port());
    let attempt = sender.send(&sub, "m", &json_body("{}"), now()).await;
    assert_eq!(attempt.status, Some(200), "{attempt:?}");
    assert_eq!(attempt.response_excerpt, "secure");
    let requests = requests.lock().unwrap();
    assert!(
        requests[0].starts_with("CONNECT hooks.test:443 HTTP/1.1\r\n"),
        "{}",
        requests[0]
    );
    assert!(requests[0].contains("Proxy-Authorization: Basic dXNlcjpwdw==\r\n"));
}

#[tokio::test]
async fn a_proxy_refusing_connect_is_a_proxy_error() {
    let (proxy, _) = receiver(|_| respond(403, "no")).await;
    let sender = sender_with(
        proxy_policy(proxy.port()),
        StaticResolver::default().with("hooks.test", &[PUBLIC]),
    );
    let mut sub = subscription("https://hooks.test/");
    sub.proxy_url = format!("http://user:pw@127.0.0.1:{}", proxy.port());
    let attempt = sender.send(&sub, "m", &json_body("{}"), now()).await;
    match &attempt.error {
        Some(SendError::Proxy(detail)) => assert!(detail.contains("403"), "{detail}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(attempt.verdict(), Verdict::Retry);
}

#[test]
fn attempts_round_trip_through_json() {
    let attempt = Attempt {
        started_at: now(),
        latency_ms: 12,
        status: None,
        response_excerpt: String::new(),
        retry_after_secs: None,
        error: Some(SendError::Forbidden("x resolves to 10.0.0.1".into())),
    };
    let value = serde_json::to_value(&attempt).unwrap();
    assert_eq!(
        value["error"],
        json!({"kind": "forbidden", "detail": "x resolves to 10.0.0.1"})
    );
    let back: Attempt = serde_json::from_value(value).unwrap();
    assert_eq!(back, attempt);
    let timeout = serde_json::to_value(SendError::Timeout).unwrap();
    assert_eq!(timeout, json!({"kind": "timeout"}));
}

#[test]
fn sender_config_from_vars() {
    let config = SenderConfig::from_vars(&[
        ("WEBHOOKS_PROXY_URLS", "http://proxy:3128"),
        ("WEBHOOKS_ALLOW_PRIVATE_NETWORKS", "true"),
    ])
    .unwrap();
    assert!(config.policy.allow_private_networks);
    assert!(config.policy.allows_proxy("http://proxy:3128/"));
    assert_eq!(config.timeout, DEFAULT_TIMEOUT);
    assert!(config.user_agent.starts_with("callback-hub/"));
    let err = SenderConfig::from_vars(&[("WEBHOOKS_PROXY_URLS", "socks5://p:1")]).unwrap_err();
    assert_eq!(err.variable(), "WEBHOOKS_PROXY_URLS");
}
