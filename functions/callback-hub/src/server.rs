//! The listener of the local server: HTTP/1 connections, each request's body read up to the
//! cap, then handed to [`Routes`]; graceful shutdown on SIGINT or SIGTERM.
//!
//! The server faces the internet as API Gateway does, so it bounds what a slow or greedy client
//! can hold (see [`ServeLimits`]): the time to send headers (also how long an idle keep-alive
//! connection is kept), the time for a request's body and handling, the number of connections
//! served at once, and the pace of the accept loop when the process runs out of descriptors.

use crate::routes::Routes;
use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hub_core::config::{ConfigError, Vars};
use hub_core::http::{json_response, ApiError};
use lambda_http::Body;
use serde_json::json;
use sqlite_store::SqliteStore;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// What one client may hold of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// How long a client may take to send a request's headers, counted from when the
    /// connection starts waiting for them: so also how long an idle keep-alive connection is
    /// kept open. Past it the connection is closed.
    pub header_timeout: Duration,
    /// How long a request's body and its handling may take, counted from its headers: API
    /// Gateway's 30 s. A body not received by then is answered 408 and the connection closed; a
    /// handler still running is answered 503 with `Retry-After` (as a Lambda timeout would be;
    /// the store write is idempotent, so the sender's retry is safe).
    pub request_timeout: Duration,
    /// Connections served at once. Further ones wait, unaccepted, in the listen backlog until a
    /// served one closes (the kernel refuses new ones once the backlog is full).
    pub max_connections: usize,
    /// The pause after a failed accept (e.g. out of file descriptors), instead of retrying at
    /// once in a busy loop.
    pub accept_backoff: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
            accept_backoff: Duration::from_millis(100),
        }
    }
}

impl ServeLimits {
    /// The defaults, changed by `SERVE_MAX_CONNECTIONS`, `SERVE_HEADER_TIMEOUT_SECS` and
    /// `SERVE_REQUEST_TIMEOUT_SECS` (each a positive whole number).
    pub fn from_vars(vars: &impl Vars) -> Result<Self, ConfigError> {
        let defaults = ServeLimits::default();
        let seconds = |name: &'static str, default: Duration| {
            positive(vars, name, default.as_secs()).map(Duration::from_secs)
        };
        Ok(ServeLimits {
            header_timeout: seconds("SERVE_HEADER_TIMEOUT_SECS", defaults.header_timeout)?,
            request_timeout: seconds("SERVE_REQUEST_TIMEOUT_SECS", defaults.request_timeout)?,
            max_connections: positive(
                vars,
                "SERVE_MAX_CONNECTIONS",
                defaults.max_connections as u64,
            )? as usize,
            accept_backoff: defaults.accept_backoff,
        })
    }
}

fn positive(vars: &impl Vars, name: &'static str, default: u64) -> Result<u64, ConfigError> {
    match vars.parsed_or(name, default)? {
        0 => Err(ConfigError::Invalid {
            name,
            reason: "must be at least 1".into(),
        }),
        n => Ok(n),
    }
}

/// One HTTP exchange: the body is read up to the cap (never more into memory), then the
/// request goes through the same handler a Lambda invocation would, all within
/// `request_timeout`.
async fn exchange(
    routes: &Routes,
    request: hyper::Request<hyper::body::Incoming>,
    request_timeout: Duration,
) -> hyper::Response<Full<Bytes>> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + request_timeout;
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_owned();
    if path == METRICS_PATH {
        let response = metrics(routes, http::Request::from_parts(parts, Body::Empty));
        return into_hyper(response);
    }
    let read = tokio::time::timeout_at(
        deadline,
        Limited::new(body, routes.max_body_bytes()).collect(),
    );
    let response = match read.await {
        Ok(Ok(collected)) => {
            let bytes = collected.to_bytes();
            let body = if bytes.is_empty() {
                Body::Empty
            } else {
                match String::from_utf8(bytes.to_vec()) {
                    Ok(text) => Body::Text(text),
                    Err(err) => Body::Binary(err.into_bytes()),
                }
            };
            let handled = tokio::time::timeout_at(
                deadline,
                routes.handle(http::Request::from_parts(parts, body)),
            );
            match handled.await {
                Ok(response) => response,
                Err(_) => {
                    tracing::warn!(method = %method, path, "request handling passed its deadline");
                    closing(
                        ApiError::Unavailable("the request took too long, retry later".into())
                            .into_response(),
                    )
                }
            }
        }
        Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => ApiError::PayloadTooLarge {
            limit: routes.max_body_bytes(),
        }
        .into_response(),
        Ok(Err(_)) => ApiError::bad_request("request body could not be read").into_response(),
        Err(_) => closing(json_response(
            StatusCode::REQUEST_TIMEOUT,
            &json!({
                "error": "request_timeout",
                "message": "the request body was not received in time",
            }),
        )),
    };
    // The query string is never logged: it may carry a callback token.
    tracing::info!(
        method = %method,
        path,
        status = response.status().as_u16(),
        millis = started.elapsed().as_millis() as u64,
        "request"
    );
    into_hyper(response)
}

/// Where the local server serves its metrics.
pub const METRICS_PATH: &str = "/metrics";

/// `GET /metrics`: the process's counters in Prometheus text format, behind the API token
/// (they tell an attacker which secrets are being guessed at and how often).
fn metrics(routes: &Routes, request: lambda_http::Request) -> lambda_http::Response<Body> {
    let answer = hub_core::http::require_method(&request, &[http::Method::GET], "GET")
        .and_then(|()| hub_core::auth::require_api_token(&request, routes.api_token()));
    match answer {
        Ok(()) => lambda_http::Response::builder()
            .status(StatusCode::OK)
            .header(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )
            .body(Body::Text(
                hub_core::metrics::Metrics::global().prometheus(),
            ))
            .expect("static response parts are valid"),
        Err(err) => err.into_response(),
    }
}

fn into_hyper(response: lambda_http::Response<Body>) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = response.into_parts();
    let bytes = match body {
        Body::Empty => Bytes::new(),
        Body::Text(text) => Bytes::from(text),
        Body::Binary(bytes) => Bytes::from(bytes),
        _ => Bytes::new(),
    };
    hyper::Response::from_parts(parts, Full::new(bytes))
}

/// The response, with the connection closed after it: what is left of the request is not
/// read.
fn closing(mut response: lambda_http::Response<Body>) -> lambda_http::Response<Body> {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// How long in-flight requests may take to finish once shutdown begins.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves with the default [`ServeLimits`] until `shutdown` resolves, then stops accepting and
/// lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    routes: Arc<Routes>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_with(listener, routes, ServeLimits::default(), shutdown).await
}

/// Serves within `limits` until `shutdown` resolves, then stops accepting and lets in-flight
/// requests finish.
pub async fn serve_with(
    listener: TcpListener,
    routes: Arc<Routes>,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    // hyper's header deadline only runs with a timer; it is armed whenever the connection waits
    // for a request, so it also ends idle keep-alive connections.
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        // A connection is accepted only when it can be served: until then it waits in the
        // listen backlog, costing this process nothing.
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => {
                permit.expect("the connection semaphore is never closed")
            }
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                // EMFILE and the like last until a connection closes: retrying at once would
                // spin at 100% CPU.
                tracing::warn!(error = %err, "accept failed");
                tokio::select! {
                    () = tokio::time::sleep(limits.accept_backoff) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        let routes = routes.clone();
        let request_timeout = limits.request_timeout;
        let service = hyper::service::service_fn(move |request| {
            let routes = routes.clone();
            async move { Ok::<_, Infallible>(exchange(&routes, request, request_timeout).await) }
        });
        let connection =
            graceful.watch(http.serve_connection(hyper_util::rt::TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!("shutting down: finishing in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all requests finished"),
        () = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("gave up waiting for requests"),
    }
    Ok(())
}

/// How often `serve` removes expired events from SQLite (DynamoDB's TTL does it there).
pub const PURGE_PERIOD: Duration = Duration::from_secs(3600);

/// Removes expired events every `period`, the first time one period from now (`serve` purges
/// at start); runs until dropped. A failed purge is logged and tried again next period.
pub async fn purge_expired_every(store: SqliteStore, period: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match store.purge_expired(chrono::Utc::now()).await {
            Ok(0) => tracing::debug!("no expired events"),
            Ok(purged) => tracing::info!(purged, "expired events removed"),
            Err(err) => tracing::warn!(error = %err, "removing expired events failed"),
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn termination() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("SIGTERM handler");
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
