//! A pass-through HTTP proxy in front of moto that adds up the time each request spends there.
//! The functions reach DynamoDB only through it (`AWS_ENDPOINT_URL`), so an invocation's own
//! time is its latency minus what the proxy counted while it ran: the "excluding the DynamoDB
//! round trip" of the targets.

use crate::http_server;
use crate::upstream::{self, UpstreamClient};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

#[derive(Default)]
struct Counters {
    busy_nanos: AtomicU64,
    requests: AtomicU64,
}

pub struct TimingProxy {
    address: SocketAddr,
    counters: Arc<Counters>,
    server: JoinHandle<()>,
}

/// Requests forwarded, and the time spent forwarding them, since the proxy started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub requests: u64,
    pub busy: Duration,
}

impl std::ops::Sub for Usage {
    type Output = Usage;
    fn sub(self, earlier: Usage) -> Usage {
        Usage {
            requests: self.requests - earlier.requests,
            busy: self.busy.saturating_sub(earlier.busy),
        }
    }
}

impl TimingProxy {
    pub async fn start(upstream: &str) -> std::io::Result<TimingProxy> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: UpstreamClient = Client::builder(TokioExecutor::new()).build(connector);
        let upstream: Arc<str> = upstream.trim_end_matches('/').into();
        let counters = Arc::new(Counters::default());
        let shared = counters.clone();
        let (address, server) = http_server::spawn(move |request| {
            let client = client.clone();
            let upstream = upstream.clone();
            let counters = shared.clone();
            async move {
                let started = Instant::now();
                let response = forward(&client, &upstream, request).await;
                counters
                    .busy_nanos
                    .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                counters.requests.fetch_add(1, Ordering::Relaxed);
                response
            }
        })
        .await?;
        Ok(TimingProxy {
            address,
            counters,
            server,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    #[allow(dead_code)] // Used by `bench` (the TLS proxy's upstream); other binaries include this file.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn usage(&self) -> Usage {
        Usage {
            requests: self.counters.requests.load(Ordering::Relaxed),
            busy: Duration::from_nanos(self.counters.busy_nanos.load(Ordering::Relaxed)),
        }
    }
}

impl Drop for TimingProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn forward(
    client: &UpstreamClient,
    upstream: &str,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let Ok(body) = body.collect().await.map(|c| c.to_bytes()) else {
        return http_server::response(400, "unreadable request body");
    };
    upstream::forward(client, upstream, parts, body)
        .await
        .unwrap_or_else(|(status, message)| http_server::response(status, message))
}
