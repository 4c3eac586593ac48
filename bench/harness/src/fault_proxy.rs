//! A fault-injecting HTTP proxy in front of moto. The functions reach AWS only through it
//! (`AWS_ENDPOINT_URL`); for a share of the requests to the services under test it answers with
//! a fault instead of moto's answer, either before forwarding (moto never sees the request) or
//! after (moto applied it, its answer is lost): the second kind is what makes an SDK retry of a
//! conditional write meet its own first write.
//!
//! Faults, each in the protocol's own shape (the SDK classifies them by it):
//! - `throughput`: DynamoDB `ProvisionedThroughputExceededException` (400), SQS
//!   `RequestThrottled` (400), S3 `SlowDown` (503);
//! - `throttling`: DynamoDB and SQS `ThrottlingException` (400), S3 `ServiceUnavailable` (503);
//! - `500`: the service's internal error;
//! - `reset`: the connection is closed without an answer;
//! - `stall`: no answer for [`STALL`] (past the functions' 1.2 s operation timeout), then the
//!   connection is closed.
//!
//! After forwarding, only `500`, `reset` and `stall` are possible: an answer that was a success.

use crate::upstream::{self, UpstreamClient};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Past `hub_core::aws::timeout_config`'s operation timeout (1.2 s).
pub const STALL: Duration = Duration::from_millis(1_500);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    DynamoDb,
    Sqs,
    S3,
    /// SSM and anything else: never faulted.
    Other,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::DynamoDb => "DynamoDB",
            Service::Sqs => "SQS",
            Service::S3 => "S3",
            Service::Other => "other",
        }
    }

    /// By the request: the JSON protocols name their operation in `x-amz-target`; S3 (REST) has
    /// none.
    fn of(request: &http::request::Parts) -> Service {
        let target = request
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok());
        match target {
            Some(t) if t.starts_with("DynamoDB_") => Service::DynamoDb,
            Some(t) if t.starts_with("AmazonSQS") => Service::Sqs,
            Some(_) => Service::Other,
            None => Service::S3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Throughput,
    Throttling,
    Status500,
    Reset,
    Stall,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Throughput => "throughput",
            Kind::Throttling => "throttling",
            Kind::Status500 => "500",
            Kind::Reset => "reset",
            Kind::Stall => "stall",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Answered instead of forwarding: moto never saw the request.
    Before,
    /// Forwarded, moto applied it, and its answer was replaced or lost.
    After,
}

/// Every fault the proxy can pick, equally likely.
const FAULTS: [(Phase, Kind); 8] = [
    (Phase::Before, Kind::Throughput),
    (Phase::Before, Kind::Throttling),
    (Phase::Before, Kind::Status500),
    (Phase::Before, Kind::Reset),
    (Phase::Before, Kind::Stall),
    (Phase::After, Kind::Status500),
    (Phase::After, Kind::Reset),
    (Phase::After, Kind::Stall),
];

/// What the proxy did since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: BTreeMap<Service, u64>,
    pub faults: BTreeMap<(Service, Phase, Kind), u64>,
    /// `TransactWriteItems` retries answered from their token (see
    /// [`FaultProxy::emulate_idempotency`]).
    pub idempotent_replays: u64,
}

impl Counts {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Counts) -> Counts {
        let mut out = self.clone();
        for (k, v) in &earlier.requests {
            *out.requests.entry(*k).or_default() -= v;
        }
        for (k, v) in &earlier.faults {
            *out.faults.entry(*k).or_default() -= v;
        }
        out.idempotent_replays -= earlier.idempotent_replays;
        out.requests.retain(|_, v| *v > 0);
        out.faults.retain(|_, v| *v > 0);
        out
    }

    pub fn total_faults(&self) -> u64 {
        self.faults.values().sum()
    }

    pub fn faults_in(&self, phase: Phase) -> u64 {
        self.faults
            .iter()
            .filter(|((_, p, _), _)| *p == phase)
            .map(|(_, v)| v)
            .sum()
    }

    /// `DynamoDB 3/1 …`: faults per kind, before/after forwarding.
    pub fn describe(&self) -> String {
        let mut by_kind: BTreeMap<(Service, Kind), (u64, u64)> = BTreeMap::new();
        for ((service, phase, kind), n) in &self.faults {
            let entry = by_kind.entry((*service, *kind)).or_default();
            match phase {
                Phase::Before => entry.0 += n,
                Phase::After => entry.1 += n,
            }
        }
        let parts: Vec<String> = by_kind
            .iter()
            .map(|((service, kind), (before, after))| {
                format!("{} {} {before}/{after}", service.name(), kind.name())
            })
            .collect();
        let mut text = if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        };
        if self.idempotent_replays > 0 {
            text.push_str(&format!(
                "; {} TransactWriteItems retries answered from their ClientRequestToken",
                self.idempotent_replays
            ));
        }
        text
    }
}

struct State {
    upstream: String,
    client: UpstreamClient,
    rng: Mutex<u64>,
    /// The share of faulted requests, as `f64` bits.
    share: AtomicU64,
    targets: Mutex<Vec<Service>>,
    /// One-shot faults: the next request whose `x-amz-target` ends with the text gets it.
    armed: Mutex<Vec<(String, Phase, Kind)>>,
    counts: Mutex<Counts>,
    /// Whether DynamoDB's `ClientRequestToken` idempotency is emulated (moto ignores it).
    idempotency: std::sync::atomic::AtomicBool,
    /// Successful `TransactWriteItems` answers by token, with when they were given.
    tokens: Mutex<HashMap<String, (Instant, Stored)>>,
}

/// A successful answer, kept to be given again.
#[derive(Clone)]
struct Stored {
    status: http::StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

/// DynamoDB's idempotency window for `TransactWriteItems` client tokens.
const TOKEN_WINDOW: Duration = Duration::from_secs(600);

pub struct FaultProxy {
    address: SocketAddr,
    state: Arc<State>,
    server: JoinHandle<()>,
}

/// The connection is closed without an answer (hyper drops a connection whose service fails).
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the fault proxy")
    }
}

impl std::error::Error for Dropped {}

impl FaultProxy {
    /// Starts with no fault: [`FaultProxy::inject`] sets what to fault.
    pub async fn start(upstream: &str, seed: u64) -> std::io::Result<FaultProxy> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: Client::builder(TokioExecutor::new()).build(connector),
            rng: Mutex::new(seed),
            share: AtomicU64::new(0f64.to_bits()),
            targets: Mutex::new(Vec::new()),
            armed: Mutex::new(Vec::new()),
            counts: Mutex::new(Counts::default()),
            idempotency: std::sync::atomic::AtomicBool::new(true),
            tokens: Mutex::new(HashMap::new()),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let shared = state.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        async move { handle(&state, request).await }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(FaultProxy {
            address,
            state,
            server,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// From now on, fault `share` (0 to 1) of the requests to `services`.
    pub fn inject(&self, share: f64, services: &[Service]) {
        self.state
            .share
            .store(share.clamp(0.0, 1.0).to_bits(), Ordering::SeqCst);
        *self.state.targets.lock().expect("not poisoned") = services.to_vec();
    }

    /// The next request whose `x-amz-target` ends with `operation` (`TransactWriteItems`) gets
    /// this fault, whatever the share: a reproduction, not a sample.
    pub fn arm(&self, operation: &str, phase: Phase, kind: Kind) {
        self.state
            .armed
            .lock()
            .expect("not poisoned")
            .push((operation.to_owned(), phase, kind));
    }

    /// Whether a `TransactWriteItems` repeated with the same `ClientRequestToken` within 10
    /// minutes is answered with the first one's success without being applied again, as
    /// DynamoDB does (its API reference, `TransactWriteItems`, `ClientRequestToken`). The SDK
    /// fills the token once per operation, so its retries carry the same one. moto ignores the
    /// token; on by default, so that the runs see DynamoDB's semantics.
    pub fn emulate_idempotency(&self, on: bool) {
        self.state.idempotency.store(on, Ordering::SeqCst);
    }

    pub fn counts(&self) -> Counts {
        self.state.counts.lock().expect("not poisoned").clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// SplitMix64: small, seeded, and the same sequence for the same seed.
fn next_random(rng: &Mutex<u64>) -> u64 {
    let mut state = rng.lock().expect("not poisoned");
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The fault for this request, if any (and counts it).
fn pick(state: &State, service: Service, target: &str) -> Option<(Phase, Kind)> {
    {
        let mut armed = state.armed.lock().expect("not poisoned");
        if let Some(at) = armed
            .iter()
            .position(|(op, _, _)| target.ends_with(op.as_str()))
        {
            let (_, phase, kind) = armed.remove(at);
            let mut counts = state.counts.lock().expect("not poisoned");
            *counts.requests.entry(service).or_default() += 1;
            *counts.faults.entry((service, phase, kind)).or_default() += 1;
            return Some((phase, kind));
        }
    }
    let faulted = state
        .targets
        .lock()
        .expect("not poisoned")
        .contains(&service);
    let share = f64::from_bits(state.share.load(Ordering::SeqCst));
    let mut counts = state.counts.lock().expect("not poisoned");
    *counts.requests.entry(service).or_default() += 1;
    if !faulted || share <= 0.0 {
        return None;
    }
    let roll = (next_random(&state.rng) >> 11) as f64 / (1u64 << 53) as f64;
    if roll >= share {
        return None;
    }
    let fault = FAULTS[(next_random(&state.rng) % FAULTS.len() as u64) as usize];
    *counts
        .faults
        .entry((service, fault.0, fault.1))
        .or_default() += 1;
    Some(fault)
}

async fn handle(
    state: &State,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let (parts, body) = request.into_parts();
    let Ok(body) = body.collect().await.map(|c| c.to_bytes()) else {
        return Err(Dropped);
    };
    let service = Service::of(&parts);
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let fault = pick(state, service, &target);
    if let Some((Phase::Before, kind)) = fault {
        return answer(service, kind).await;
    }
    let token = (service == Service::DynamoDb
        && target.ends_with(".TransactWriteItems")
        && state.idempotency.load(Ordering::SeqCst))
    .then(|| serde_json::from_slice::<serde_json::Value>(&body).ok())
    .flatten()
    .and_then(|v| v["ClientRequestToken"].as_str().map(str::to_owned));
    let earlier = token.as_ref().and_then(|t| {
        let tokens = state.tokens.lock().expect("not poisoned");
        tokens
            .get(t)
            .filter(|(at, _)| at.elapsed() < TOKEN_WINDOW)
            .map(|(_, stored)| stored.clone())
    });
    let response = match earlier {
        Some(stored) => {
            state
                .counts
                .lock()
                .expect("not poisoned")
                .idempotent_replays += 1;
            let mut response = Response::new(Full::new(stored.body));
            *response.status_mut() = stored.status;
            *response.headers_mut() = stored.headers;
            response
        }
        None => {
            let response = forward(state, parts, body).await;
            if let (Some(token), true) = (token, response.status().is_success()) {
                let body = response
                    .body()
                    .clone()
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                state.tokens.lock().expect("not poisoned").insert(
                    token,
                    (
                        Instant::now(),
                        Stored {
                            status: response.status(),
                            headers: response.headers().clone(),
                            body,
                        },
                    ),
                );
            }
            response
        }
    };
    match fault {
        Some((_, kind)) => answer(service, kind).await,
        None => Ok(response),
    }
}

async fn answer(service: Service, kind: Kind) -> Result<Response<Full<Bytes>>, Dropped> {
    match kind {
        Kind::Reset => Err(Dropped),
        Kind::Stall => {
            tokio::time::sleep(STALL).await;
            Err(Dropped)
        }
        Kind::Throughput | Kind::Throttling | Kind::Status500 => Ok(error_response(service, kind)),
    }
}

/// The service's own error shape (what the SDK's retry classifier reads).
fn error_response(service: Service, kind: Kind) -> Response<Full<Bytes>> {
    match service {
        Service::S3 => {
            let (status, code) = match kind {
                Kind::Throughput => (503, "SlowDown"),
                Kind::Throttling => (503, "ServiceUnavailable"),
                _ => (500, "InternalError"),
            };
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
                 <Message>injected by the fault proxy</Message><RequestId>FAULT</RequestId></Error>"
            );
            Response::builder()
                .status(status)
                .header("content-type", "application/xml")
                .body(Full::new(Bytes::from(body)))
                .expect("a valid response")
        }
        Service::Sqs => {
            let (status, code, fault) = match kind {
                Kind::Throughput => (400, "RequestThrottled", "Sender"),
                Kind::Throttling => (400, "ThrottlingException", "Sender"),
                _ => (500, "InternalError", "Receiver"),
            };
            Response::builder()
                .status(status)
                .header("content-type", "application/x-amz-json-1.0")
                .header("x-amzn-query-error", format!("{code};{fault}"))
                .body(Full::new(Bytes::from(format!(
                    r#"{{"__type":"com.amazonaws.sqs#{code}","message":"injected by the fault proxy"}}"#
                ))))
                .expect("a valid response")
        }
        Service::DynamoDb | Service::Other => {
            let (status, code) = match kind {
                Kind::Throughput => (400, "ProvisionedThroughputExceededException"),
                Kind::Throttling => (400, "ThrottlingException"),
                _ => (500, "InternalServerError"),
            };
            Response::builder()
                .status(status)
                .header("content-type", "application/x-amz-json-1.0")
                .header("x-amzn-errortype", format!("{code}:"))
                .body(Full::new(Bytes::from(format!(
                    r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"injected by the fault proxy"}}"#
                ))))
                .expect("a valid response")
        }
    }
}

async fn forward(state: &State, parts: http::request::Parts, body: Bytes) -> Response<Full<Bytes>> {
    upstream::forward(&state.client, &state.upstream, parts, body)
        .await
        .unwrap_or_else(|(status, message)| plain(status, message))
}

fn plain(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = hyper::StatusCode::from_u16(status).expect("a valid status");
    response
}
