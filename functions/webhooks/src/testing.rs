//! A webhook receiver for tests (feature `test-util`): an HTTP/1 server on 127.0.0.1 that
//! answers from a script (fail N times, then succeed; or any status), checks the Standard
//! Webhooks signature of every request it gets, and records them.
//!
//! The check is written from the specification (`id.timestamp.body`, HMAC-SHA256, base64,
//! `v1,` prefix; https://www.standardwebhooks.com), not with this crate's signer, so that a
//! signer bug cannot be mirrored by its test.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use sha2::Sha256;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Whether one of the `webhook-signature` entries is the HMAC of the secret over
    /// `webhook-id.webhook-timestamp.body`.
    pub signature_valid: bool,
    /// What the receiver answered.
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn webhook_id(&self) -> Option<&str> {
        self.header("webhook-id")
    }
}

/// What the receiver answers, in order; when the script is used up, `then`.
#[derive(Debug, Clone)]
pub struct Script {
    pub answers: VecDeque<(u16, Vec<(String, String)>)>,
    pub then: u16,
}

impl Script {
    /// `failures` answers of `status`, then 200.
    pub fn fail_then_succeed(failures: usize, status: u16) -> Script {
        Script {
            answers: std::iter::repeat_n((status, Vec::new()), failures).collect(),
            then: 200,
        }
    }

    pub fn always(status: u16) -> Script {
        Script {
            answers: VecDeque::new(),
            then: status,
        }
    }
}

#[derive(Debug)]
struct Shared {
    secret: Vec<u8>,
    script: Mutex<Script>,
    seen: Mutex<Vec<Received>>,
    notify: tokio::sync::Notify,
}

/// A running receiver; it stops when the test's runtime does.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub address: SocketAddr,
    shared: Arc<Shared>,
}

/// The key of a `whsec_` secret, decoded as the specification says (base64 after the prefix).
fn key_of(secret: &str) -> Vec<u8> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    STANDARD
        .decode(encoded)
        .expect("the test secret is base64 after whsec_")
}

fn signature_valid(key: &[u8], headers: &HeaderMap, body: &[u8]) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(id), Some(timestamp), Some(signatures)) = (
        get("webhook-id"),
        get("webhook-timestamp"),
        get("webhook-signature"),
    ) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    signatures.split(' ').any(|s| s == expected)
}

impl Receiver {
    /// Listens on 127.0.0.1 (an ephemeral port); checks signatures against `secret`.
    pub async fn start(secret: &str, script: Script) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Receiver::serve(listener, secret, script)
    }

    /// Serves on a listener the caller bound (say, to a port chosen before the receiver is up).
    pub fn serve(listener: TcpListener, secret: &str, script: Script) -> Receiver {
        let address = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            secret: key_of(secret),
            script: Mutex::new(script),
            seen: Mutex::new(Vec::new()),
            notify: tokio::sync::Notify::new(),
        });
        let server = shared.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = server.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(answer(&shared, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { address, shared }
    }

    /// `http://127.0.0.1:port/hook`.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.address)
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// Waits until at least `count` requests arrived (the caller bounds the wait).
    pub async fn wait_for(&self, count: usize) -> Vec<Received> {
        loop {
            let notified = self.shared.notify.notified();
            let seen = self.received();
            if seen.len() >= count {
                return seen;
            }
            notified.await;
        }
    }
}

async fn answer(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let (status, headers) = {
        let mut script = shared.script.lock().unwrap();
        let then = script.then;
        script.answers.pop_front().unwrap_or((then, Vec::new()))
    };
    let received = Received {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        signature_valid: signature_valid(&shared.secret, &parts.headers, &body),
        headers: parts.headers,
        body,
        status,
    };
    shared.seen.lock().unwrap().push(received);
    shared.notify.notify_waiters();
    let mut response = Response::new(Full::new(Bytes::from(format!("answer {status}"))));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    for (name, value) in headers {
        response.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(&value).unwrap(),
        );
    }
    response
}
