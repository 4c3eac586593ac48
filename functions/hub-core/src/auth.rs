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

/// Checks the shared secret of senders that cannot sign (ROS, VK records): query `token` or
/// header `X-Callback-Token`. A missing or wrong token is 403.
pub fn require_callback_token(request: &Request, expected: &Secret) -> Result<(), ApiError> {
    let presented = header_str(request, "x-callback-token")
        .map(str::to_owned)
        .or_else(|| query_param(request, "token"));
    match presented {
        None => Err(ApiError::forbidden("missing callback token")),
        Some(token) if expected.matches(token.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::forbidden("invalid callback token")),
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
