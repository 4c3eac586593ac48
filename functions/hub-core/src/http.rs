//! The HTTP edge shared by every function: raw body (base64-aware), the body cap, query and
//! header access, and the interface's JSON error bodies.

use crate::store::{PageRequest, StoreError};
use http::{header, HeaderValue, Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::json;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A function's request handler: what Lambda invokes and the local server routes to.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: Request) -> impl Future<Output = Response<Body>> + Send;

    /// The sender whose events this handler receives: its requests are counted by source and
    /// outcome (`crate::metrics`). `None` for routes that receive no events (the API).
    fn source(&self) -> Option<crate::event::Source> {
        None
    }
}

/// A handler behind a pointer, so that the local server can hold every function's in one table.
pub type SharedHandler =
    Arc<dyn Fn(Request) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync>;

pub fn shared<H: Handler>(handler: H) -> SharedHandler {
    let handler = Arc::new(handler);
    Arc::new(move |request| {
        let handler = handler.clone();
        Box::pin(async move {
            let source = crate::metrics::receiving(handler.source(), &request);
            // Boxed for the reason `lambda::invoke` gives.
            let handled = Box::pin(handler.handle(request));
            crate::metrics::Metrics::global()
                .observe(source, handled)
                .await
        })
    })
}

/// Everything a handler can refuse a request with. Messages are short and safe: they never hold
/// a secret, an expected signature or decrypted content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// A user-facing route without the right bearer token: 401 with `WWW-Authenticate`.
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal,
}

impl ApiError {
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::Forbidden(message.into())
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest(message.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `error` field of the body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::NotFound(_) => "not_found",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal => "internal",
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let mut response = json_response(
            self.status(),
            &json!({"error": self.code(), "message": self.to_string()}),
        );
        if let ApiError::MethodNotAllowed { allow } = self {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if matches!(self, ApiError::Unauthorized) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if matches!(self, ApiError::Unavailable(_)) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "event store unavailable");
                ApiError::Unavailable("event store unavailable, retry later".into())
            }
            StoreError::BadCursor => ApiError::bad_request("invalid pagination cursor"),
            StoreError::TooLarge { limit } => ApiError::PayloadTooLarge { limit },
            err @ StoreError::KeyTooLong { .. } => ApiError::bad_request(err.to_string()),
            StoreError::Failed(detail) => {
                tracing::error!(error = %detail, "event store failure");
                ApiError::Internal
            }
        }
    }
}

/// Collapses a handler's result into the response the edge sends.
pub fn respond(result: Result<Response<Body>, ApiError>) -> Response<Body> {
    result.unwrap_or_else(|err| {
        if err.status().is_server_error() {
            tracing::warn!(status = err.status().as_u16(), error = %err, "request failed");
        } else {
            tracing::info!(status = err.status().as_u16(), error = %err, "request refused");
        }
        err.into_response()
    })
}

pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::Text(value.to_string()))
        .expect("static response parts are valid")
}

pub fn empty_response(status: StatusCode) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Body::Empty)
        .expect("static response parts are valid")
}

/// The body exactly as the sender sent it (API Gateway's base64 is already undone by
/// lambda_http), refused with 413 past `limit` bytes.
pub fn raw_body(request: &Request, limit: usize) -> Result<&[u8], ApiError> {
    let bytes: &[u8] = match request.body() {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    };
    if bytes.len() > limit {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    Ok(bytes)
}

/// The first value of a query parameter, percent-decoded. Read from the URI, so it works the
/// same under Lambda and in the local server.
pub fn query_param(request: &Request, name: &str) -> Option<String> {
    let query = request.uri().query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// A listing's `limit` query parameter (`value`): `default` when absent, else a number in
/// `1..=PageRequest::MAX_LIMIT`, or 400.
pub fn limit_param(value: Option<&str>, default: u32) -> Result<u32, ApiError> {
    let Some(text) = value else {
        return Ok(default);
    };
    text.parse::<u32>()
        .ok()
        .filter(|n| (1..=PageRequest::MAX_LIMIT).contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(format!("limit must be 1..={}", PageRequest::MAX_LIMIT))
        })
}

pub fn header_str<'r>(request: &'r Request, name: &str) -> Option<&'r str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Refuses any method outside `allowed` with 405 and an `Allow` header.
pub fn require_method(
    request: &Request,
    allowed: &[Method],
    allow: &'static str,
) -> Result<(), ApiError> {
    if allowed.contains(request.method()) {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed { allow })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Body, uri: &str) -> Request {
        http::Request::builder().uri(uri).body(body).unwrap()
    }

    #[test]
    fn a_listing_limit_is_its_default_or_within_bounds_or_400() {
        assert_eq!(limit_param(None, 25).unwrap(), 25);
        assert_eq!(limit_param(Some("1"), 25).unwrap(), 1);
        assert_eq!(
            limit_param(Some("100"), 25).unwrap(),
            PageRequest::MAX_LIMIT
        );
        for bad in ["0", "101", "-1", "ten", "", "4294967296"] {
            let err = limit_param(Some(bad), 25).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }

    #[test]
    fn body_cap_is_inclusive() {
        let req = request(Body::Text("abcd".into()), "/x");
        assert_eq!(raw_body(&req, 4).unwrap(), b"abcd");
        assert_eq!(
            raw_body(&req, 3),
            Err(ApiError::PayloadTooLarge { limit: 3 })
        );
        let bin = request(Body::Binary(vec![0xff, 0x00]), "/x");
        assert_eq!(raw_body(&bin, 10).unwrap(), &[0xff, 0x00]);
        assert_eq!(raw_body(&request(Body::Empty, "/x"), 0).unwrap(), b"");
    }

    #[test]
    fn query_params_are_decoded() {
        let req = request(Body::Empty, "/stacks?a=1&token=a%2Bb+c&token=second");
        assert_eq!(query_param(&req, "token").as_deref(), Some("a+b c"));
        assert_eq!(query_param(&req, "missing"), None);
    }

    #[test]
    fn error_bodies_follow_the_interface() {
        let response = ApiError::forbidden("bad token").into_response();
        assert_eq!(response.status(), 403);
        let Body::Text(text) = response.body() else {
            panic!("text body")
        };
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(value, json!({"error": "forbidden", "message": "bad token"}));

        let response = ApiError::MethodNotAllowed { allow: "GET" }.into_response();
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["allow"], "GET");

        let response = ApiError::from(StoreError::Unavailable("conn refused 127.0.0.1".into()))
            .into_response();
        assert_eq!(response.status(), 503);
        let Body::Text(text) = response.body() else {
            panic!("text body")
        };
        assert!(
            !text.contains("127.0.0.1"),
            "store details stay in the logs: {text}"
        );
    }
}
