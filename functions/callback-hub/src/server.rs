//! Every route of the interface in one HTTP server, served by the Lambda functions' own handlers.
//! A route whose configuration is missing is disabled: it answers 503 naming the variable, and
//! the others keep working. Nothing is ever accepted unauthenticated because a secret is unset.

use crate::store::AnyStore;
use bytes::Bytes;
use dingtalk_callback::DingTalkHandler;
use http::StatusCode;
use http_body_util::{BodyExt, Full, Limited};
use hub_core::certs::{cache_from_vars, HttpsFetcher};
use hub_core::clock::SystemClock;
use hub_core::config::{ConfigError, EdgeConfig, Vars};
use hub_core::http::{json_response, ApiError};
use hub_core::sns::verifier_from_vars;
use lambda_http::{Body, Request, Response};
use mns_endpoint::{MnsConfig, MnsHandler};
use s3_notification::{S3Config, S3Handler, S3Transfer};
use serde_json::json;
use stack_hook::{StackHook, StackHookConfig};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// A route's handler, or why it is disabled.
type Route<H> = Result<H, String>;

pub struct Routes {
    max_body_bytes: usize,
    stacks: Route<StackHook<AnyStore, SystemClock, HttpsFetcher>>,
    dingtalk: Route<DingTalkHandler<AnyStore, SystemClock>>,
    s3: Route<S3Handler<AnyStore, SystemClock, HttpsFetcher, S3Transfer>>,
    mns: Route<MnsHandler<AnyStore, SystemClock, HttpsFetcher>>,
}

fn disabled(err: ConfigError) -> String {
    format!("route disabled: {err}")
}

impl Routes {
    /// Builds every route from `vars`, as each Lambda function's `main` would. AWS clients (SSM
    /// for DingTalk secrets, S3 for the mirror) are created only when a route needs them.
    pub async fn build(vars: &impl Vars, store: AnyStore) -> Result<Routes, ConfigError> {
        let edge = EdgeConfig::from_vars(vars)?;
        let stacks = async {
            let config = StackHookConfig::from_vars(vars).map_err(disabled)?;
            Ok(StackHook::new(
                store.clone(),
                SystemClock,
                config,
                verifier_from_vars(vars).map_err(disabled)?,
            ))
        }
        .await;
        let dingtalk = async {
            let crypto = match dingtalk_callback::SecretsSource::from_vars(vars)
                .map_err(disabled)?
            {
                dingtalk_callback::SecretsSource::Direct(raw) => {
                    dingtalk_callback::crypto_from(raw, dingtalk_callback::Origin::Variables)
                }
                dingtalk_callback::SecretsSource::Parameter(_) => {
                    dingtalk_callback::load_crypto(vars, &hub_core::aws::sdk_config().await).await
                }
            }
            .map_err(disabled)?;
            Ok(DingTalkHandler::new(
                store.clone(),
                SystemClock,
                crypto,
                edge.clone(),
            ))
        }
        .await;
        let s3 = async {
            let config = S3Config::from_vars(vars).map_err(disabled)?;
            let mirror = match &config.mirror {
                None => None,
                Some(mirror) => {
                    let sdk = hub_core::aws::sdk_config().await;
                    Some(s3_notification::Mirror::new(
                        s3_notification::transfer_from(mirror, &sdk, vars),
                    ))
                }
            };
            Ok(S3Handler::new(
                store.clone(),
                SystemClock,
                config,
                verifier_from_vars(vars).map_err(disabled)?,
                mirror,
            ))
        }
        .await;
        let mns = async {
            let config = MnsConfig::from_vars(vars).map_err(disabled)?;
            Ok(MnsHandler::new(
                store.clone(),
                SystemClock,
                cache_from_vars(vars).map_err(disabled)?,
                config,
            ))
        }
        .await;
        let routes = Routes {
            max_body_bytes: edge.max_body_bytes,
            stacks,
            dingtalk,
            s3,
            mns,
        };
        for (route, status) in routes.status() {
            match status {
                Ok(()) => tracing::info!(route, "route enabled"),
                Err(reason) => tracing::warn!(route, reason, "route disabled"),
            }
        }
        Ok(routes)
    }

    /// Each route and whether it is enabled (or why not).
    pub fn status(&self) -> Vec<(&'static str, Result<(), &str>)> {
        fn of<H>(route: &Route<H>) -> Result<(), &str> {
            route.as_ref().map(|_| ()).map_err(String::as_str)
        }
        vec![
            ("POST /stacks, GET /stacks/{stack}", of(&self.stacks)),
            ("POST /dingtalk", of(&self.dingtalk)),
            ("POST /s3", of(&self.s3)),
            ("POST /mns", of(&self.mns)),
        ]
    }

    /// Routes by path exactly as API Gateway does, then hands the request to the function's
    /// handler.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        fn unavailable(reason: &str) -> Response<Body> {
            ApiError::Unavailable(reason.to_owned()).into_response()
        }
        let path = request.uri().path().to_owned();
        match path.as_str() {
            "/dingtalk" => match &self.dingtalk {
                Ok(handler) => handler.handle(request).await,
                Err(reason) => unavailable(reason),
            },
            "/s3" => match &self.s3 {
                Ok(handler) => handler.handle(request).await,
                Err(reason) => unavailable(reason),
            },
            "/mns" => match &self.mns {
                Ok(handler) => handler.handle(request).await,
                Err(reason) => unavailable(reason),
            },
            p if p == "/stacks" || (p.starts_with("/stacks/") && p.len() > "/stacks/".len()) => {
                match &self.stacks {
                    Ok(handler) => handler.handle(request).await,
                    Err(reason) => unavailable(reason),
                }
            }
            "/healthz" => {
                let routes: serde_json::Map<String, serde_json::Value> = self
                    .status()
                    .into_iter()
                    .map(|(route, status)| {
                        let state = match status {
                            Ok(()) => "enabled".to_owned(),
                            Err(reason) => reason.to_owned(),
                        };
                        (route.to_owned(), state.into())
                    })
                    .collect();
                json_response(StatusCode::OK, &json!({"status": "ok", "routes": routes}))
            }
            _ => ApiError::NotFound("no such route".into()).into_response(),
        }
    }

    /// One HTTP exchange: the body is read up to the cap (never more into memory), then the
    /// request goes through the same handler a Lambda invocation would.
    async fn exchange(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> hyper::Response<Full<Bytes>> {
        let started = Instant::now();
        let (parts, body) = request.into_parts();
        let method = parts.method.clone();
        let path = parts.uri.path().to_owned();
        let response = match Limited::new(body, self.max_body_bytes).collect().await {
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
                self.handle(http::Request::from_parts(parts, body)).await
            }
            Err(err) if err.is::<http_body_util::LengthLimitError>() => ApiError::PayloadTooLarge {
                limit: self.max_body_bytes,
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
                    async move { Ok::<_, Infallible>(routes.exchange(request).await) }
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
