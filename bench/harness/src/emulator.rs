//! A Lambda Runtime API on 127.0.0.1, one per function process: `GET .../invocation/next` hands
//! out the events queued by [`RuntimeApi::invoke`], `POST .../{id}/response` and `.../{id}/error`
//! (and `.../init/error`) collect the answers. Times are taken where Lambda's own service would
//! see them: when the event leaves on `/next`, and when the answer has fully arrived.

use crate::http_server;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;

const NEXT: &str = "/2018-06-01/runtime/invocation/next";
const INVOCATION: &str = "/2018-06-01/runtime/invocation/";
const INIT_ERROR: &str = "/2018-06-01/runtime/init/error";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Response,
    Error,
    InitError,
}

#[derive(Debug)]
struct Outcome {
    reply: Reply,
    body: Bytes,
    latency: Option<Duration>,
}

/// One completed invocation: the function's answer and the time from hand-out to answer.
#[derive(Debug)]
pub struct Invocation {
    pub body: Bytes,
    pub latency: Duration,
}

struct Shared {
    queue: tokio::sync::Mutex<UnboundedReceiver<Bytes>>,
    polls: UnboundedSender<Instant>,
    outcomes: UnboundedSender<Outcome>,
    handed_out: Mutex<HashMap<String, Instant>>,
    sequence: AtomicU64,
    function_arn: String,
    /// The `Lambda-Runtime-Trace-Id` every invocation carries.
    trace_header: &'static str,
}

pub struct RuntimeApi {
    address: SocketAddr,
    queue: UnboundedSender<Bytes>,
    polls: UnboundedReceiver<Instant>,
    outcomes: UnboundedReceiver<Outcome>,
    server: JoinHandle<()>,
}

impl RuntimeApi {
    pub async fn start(function_name: &str) -> std::io::Result<RuntimeApi> {
        RuntimeApi::start_traced(function_name, false).await
    }

    /// With `sampled`, every invocation's trace header says `Sampled=1`, as for a request
    /// X-Ray samples.
    pub async fn start_traced(function_name: &str, sampled: bool) -> std::io::Result<RuntimeApi> {
        let (queue_tx, queue_rx) = unbounded_channel();
        let (polls_tx, polls_rx) = unbounded_channel();
        let (outcomes_tx, outcomes_rx) = unbounded_channel();
        let shared = Arc::new(Shared {
            queue: tokio::sync::Mutex::new(queue_rx),
            polls: polls_tx,
            outcomes: outcomes_tx,
            handed_out: Mutex::new(HashMap::new()),
            sequence: AtomicU64::new(0),
            function_arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{function_name}"),
            trace_header: if sampled {
                "Root=1-5e1b4151-5ac6c58f5b1e1b2a3c4d5e6f;Parent=0123456789abcdef;Sampled=1"
            } else {
                "Root=1-5e1b4151-5ac6c58f5b1e1b2a3c4d5e6f;Parent=0123456789abcdef;Sampled=0"
            },
        });
        let (address, server) = http_server::spawn(move |request| {
            let shared = shared.clone();
            async move { route(&shared, request).await }
        })
        .await?;
        Ok(RuntimeApi {
            address,
            queue: queue_tx,
            polls: polls_rx,
            outcomes: outcomes_rx,
            server,
        })
    }

    /// The value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// When the process first asked for an event: the end of its init. An init error, or no
    /// poll within `limit`, is an error.
    pub async fn first_poll(&mut self, limit: Duration) -> Result<Instant, String> {
        tokio::select! {
            poll = self.polls.recv() => poll.ok_or_else(|| "the emulator stopped".to_owned()),
            outcome = self.outcomes.recv() => Err(match outcome {
                Some(o) => format!("{:?} before the first poll: {}", o.reply, String::from_utf8_lossy(&o.body)),
                None => "the emulator stopped".to_owned(),
            }),
            _ = tokio::time::sleep(limit) => Err(format!("no poll within {limit:?}")),
        }
    }

    /// Queues one event and waits for its answer. An error reply is an error.
    pub async fn invoke(&mut self, event: Bytes, limit: Duration) -> Result<Invocation, String> {
        self.queue
            .send(event)
            .map_err(|_| "the emulator stopped".to_owned())?;
        let outcome = tokio::time::timeout(limit, self.outcomes.recv())
            .await
            .map_err(|_| format!("no answer within {limit:?}"))?
            .ok_or_else(|| "the emulator stopped".to_owned())?;
        match (outcome.reply, outcome.latency) {
            (Reply::Response, Some(latency)) => Ok(Invocation {
                body: outcome.body,
                latency,
            }),
            (reply, _) => Err(format!(
                "{reply:?}: {}",
                String::from_utf8_lossy(&outcome.body)
            )),
        }
    }
}

impl RuntimeApi {
    /// No more events: the next `/next` is answered 500, on which the runtime client ends the
    /// process, as after a Lambda shutdown. Callgrind writes its counts when the process exits.
    #[allow(dead_code)] // Used by `bench`; the other binaries include this file too.
    pub fn close(&mut self) {
        let (closed, _) = unbounded_channel();
        drop(std::mem::replace(&mut self.queue, closed));
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn route(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    match (request.method(), path.as_str()) {
        (&Method::GET, NEXT) => next(shared).await,
        (&Method::POST, INIT_ERROR) => {
            let body = read_body(request).await;
            let _ = shared.outcomes.send(Outcome {
                reply: Reply::InitError,
                body,
                latency: None,
            });
            http_server::response(202, r#"{"status":"OK"}"#)
        }
        (&Method::POST, p) if p.starts_with(INVOCATION) => {
            let rest = &p[INVOCATION.len()..];
            let (id, reply) = match rest.rsplit_once('/') {
                Some((id, "response")) => (id.to_owned(), Reply::Response),
                Some((id, "error")) => (id.to_owned(), Reply::Error),
                _ => return http_server::response(404, "unknown path"),
            };
            let body = read_body(request).await;
            let answered = Instant::now();
            let handed_out = shared.handed_out.lock().expect("not poisoned").remove(&id);
            let Some(handed_out) = handed_out else {
                return http_server::response(400, "unknown request id");
            };
            let _ = shared.outcomes.send(Outcome {
                reply,
                body,
                latency: Some(answered - handed_out),
            });
            http_server::response(202, r#"{"status":"OK"}"#)
        }
        _ => http_server::response(404, "unknown path"),
    }
}

async fn next(shared: &Shared) -> Response<Full<Bytes>> {
    let _ = shared.polls.send(Instant::now());
    let event = shared.queue.lock().await.recv().await;
    let Some(event) = event else {
        return http_server::response(500, "the emulator stopped");
    };
    let id = format!(
        "bench-{:08}",
        shared.sequence.fetch_add(1, Ordering::Relaxed)
    );
    let deadline = chrono::Utc::now().timestamp_millis() + 30_000;
    let response = Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("lambda-runtime-aws-request-id", &id)
        .header("lambda-runtime-deadline-ms", deadline.to_string())
        .header("lambda-runtime-invoked-function-arn", &shared.function_arn)
        .header("lambda-runtime-trace-id", shared.trace_header)
        .body(Full::new(event))
        .expect("a valid response");
    shared
        .handed_out
        .lock()
        .expect("not poisoned")
        .insert(id, Instant::now());
    response
}

async fn read_body(request: Request<Incoming>) -> Bytes {
    request
        .into_body()
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default()
}
