//! The listener of the local server: HTTP/1 connections, each request's body read up to the
//! cap, then handed to [`Routes`]; graceful shutdown on SIGINT or SIGTERM.

use crate::routes::Routes;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hub_core::http::ApiError;
use lambda_http::Body;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// One HTTP exchange: the body is read up to the cap (never more into memory), then the
/// request goes through the same handler a Lambda invocation would.
async fn exchange(
    routes: &Routes,
    request: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_owned();
    let response = match Limited::new(body, routes.max_body_bytes()).collect().await {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            let body = if bytes.is_empty() {
                Body::Empty
            } else {
                match String::from_utf8(bytes.to_vec()) {
                    Ok(text) => Body::Text(text),
                    Err(err) => Body::Binary(err.into_bytes()),
                }
            };
            routes.handle(http::Request::from_parts(parts, body)).await
        }
        Err(err) if err.is::<http_body_util::LengthLimitError>() => ApiError::PayloadTooLarge {
            limit: routes.max_body_bytes(),
        }
        .into_response(),
        Err(_) => ApiError::bad_request("request body could not be read").into_response(),
    };
    // The query string is never logged: it may carry a callback token.
    tracing::info!(
        method = %method,
        path,
        status = response.status().as_u16(),
        millis = started.elapsed().as_millis() as u64,
        "request"
    );
    let (parts, body) = response.into_parts();
    let bytes = match body {
        Body::Empty => Bytes::new(),
        Body::Text(text) => Bytes::from(text),
        Body::Binary(bytes) => Bytes::from(bytes),
        _ => Bytes::new(),
    };
    hyper::Response::from_parts(parts, Full::new(bytes))
}

/// How long in-flight requests may take to finish once shutdown begins.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    routes: Arc<Routes>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let http = hyper::server::conn::http1::Builder::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(err) => {
                        tracing::warn!(error = %err, "accept failed");
                        continue;
                    }
                };
                let routes = routes.clone();
                let service = hyper::service::service_fn(move |request| {
                    let routes = routes.clone();
                    async move { Ok::<_, Infallible>(exchange(&routes, request).await) }
                });
                let connection = graceful.watch(
                    http.serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
                tokio::spawn(async move {
                    if let Err(err) = connection.await {
                        tracing::debug!(error = %err, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: finishing in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all requests finished"),
        () = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("gave up waiting for requests"),
    }
    Ok(())
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
