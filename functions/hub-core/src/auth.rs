//! Constant-time comparison and shared-secret authentication.

use crate::config::Secret;
use crate::http::{header_str, query_param, ApiError};
use lambda_http::Request;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Compares two byte strings in time independent of where they differ and of their lengths:
/// both sides are hashed first, so only equal-length digests are compared.
pub fn constant_time_eq(expected: &[u8], candidate: &[u8]) -> bool {
    let expected = Sha256::digest(expected);
    let candidate = Sha256::digest(candidate);
    expected.ct_eq(&candidate).into()
}

/// The shared secret a request presents, if any: header `X-Callback-Token`, else query `token`.
/// Functions that take a token sender and a signing sender on one route decide by it, before
/// anything of the body is parsed.
pub fn presented_callback_token(request: &Request) -> Option<String> {
    header_str(request, "x-callback-token")
        .map(str::to_owned)
        .or_else(|| query_param(request, "token"))
}

/// Checks the shared secret of senders that cannot sign: query `token` or header
/// `X-Callback-Token`. A missing or wrong token is 403.
pub fn require_callback_token(request: &Request, expected: &Secret) -> Result<(), ApiError> {
    match presented_callback_token(request) {
        None => Err(ApiError::forbidden("missing callback token")),
        Some(token) if expected.matches(token.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::forbidden("invalid callback token")),
    }
}

/// The token of an `Authorization: Bearer <token>` header, if the request has one.
pub fn presented_bearer(request: &Request) -> Option<&str> {
    let value = header_str(request, "authorization")?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// `API_TOKEN` (or `API_TOKEN_PARAMETER`, an SSM SecureString name): the bearer token of every
/// user-facing route (stack status, the webhooks API, the console).
pub const API_TOKEN_VARIABLE: &str = "API_TOKEN";
pub const API_TOKEN_PARAMETER_VARIABLE: &str = "API_TOKEN_PARAMETER";

/// Checks a user-facing route's bearer token. `None` (no `API_TOKEN` configured) keeps the route
/// closed (503 naming the variable), never open; a missing or wrong token is 401 with no detail.
pub fn require_api_token(request: &Request, expected: Option<&Secret>) -> Result<(), ApiError> {
    let Some(expected) = expected else {
        return Err(ApiError::Unavailable(format!(
            "route disabled: set {API_TOKEN_VARIABLE} or {API_TOKEN_PARAMETER_VARIABLE}"
        )));
    };
    match presented_bearer(request) {
        Some(token) if expected.matches(token.as_bytes()) => Ok(()),
        _ => Err(ApiError::Unauthorized),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::Body;

    fn request(uri: &str, header: Option<&str>) -> Request {
        let mut builder = http::Request::builder().uri(uri);
        if let Some(value) = header {
            builder = builder.header("X-Callback-Token", value);
        }
        builder.body(Body::Empty).unwrap()
    }

    fn with_authorization(value: &str) -> Request {
        http::Request::builder()
            .uri("/stacks/web")
            .header("Authorization", value)
            .body(Body::Empty)
            .unwrap()
    }

    #[test]
    fn api_token_is_a_bearer_token_and_fails_closed() {
        let secret = Secret::new("api-t0ken");
        assert!(require_api_token(&with_authorization("Bearer api-t0ken"), Some(&secret)).is_ok());
        assert!(
            require_api_token(&with_authorization("bearer  api-t0ken "), Some(&secret)).is_ok()
        );
        for wrong in ["Bearer api-t0ke", "Basic api-t0ken", "api-t0ken", "Bearer "] {
            assert_eq!(
                require_api_token(&with_authorization(wrong), Some(&secret)),
                Err(ApiError::Unauthorized),
                "{wrong}"
            );
        }
        assert_eq!(
            require_api_token(&request("/stacks/web", None), Some(&secret)),
            Err(ApiError::Unauthorized)
        );
        let closed = require_api_token(&with_authorization("Bearer api-t0ken"), None).unwrap_err();
        assert_eq!(closed.status(), 503);
        assert!(closed.to_string().contains("API_TOKEN"));
        let response = ApiError::Unauthorized.into_response();
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }

    #[test]
    fn equality_is_exact() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn token_from_query_or_header() {
        let secret = Secret::new("s3cr3t");
        assert!(require_callback_token(&request("/stacks?token=s3cr3t", None), &secret).is_ok());
        assert!(require_callback_token(&request("/stacks", Some("s3cr3t")), &secret).is_ok());
        assert_eq!(
            require_callback_token(&request("/stacks", None), &secret),
            Err(ApiError::forbidden("missing callback token"))
        );
        assert_eq!(
            require_callback_token(&request("/stacks?token=nope", None), &secret),
            Err(ApiError::forbidden("invalid callback token"))
        );
        // A wrong header is not rescued by a right query token: the header is what was presented.
        assert!(
            require_callback_token(&request("/stacks?token=s3cr3t", Some("bad")), &secret).is_err()
        );
    }
}
