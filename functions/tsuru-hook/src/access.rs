//! Who may store events through `/tsuru`. Tsuru signs nothing and can only add static headers or
//! a URL to a hook (`docs/protocols.md` §5.3), so a shared token is the whole authentication:
//! `Authorization: Bearer <token>` (what the README configures), `X-Callback-Token`, or `?token=`.

use hub_core::auth::{presented_bearer, presented_callback_token};
use hub_core::config::{ConfigError, Secret};
use lambda_http::Request;

pub const TOKEN_VARIABLE: &str = "TSURU_WEBHOOK_TOKEN";
pub const TOKEN_PARAMETER_VARIABLE: &str = "TSURU_WEBHOOK_TOKEN_PARAMETER";

/// Shorter tokens could be guessed; 16 characters is what the template asks of every token.
const MIN_TOKEN_CHARS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("missing webhook token")]
    Missing,
    #[error("invalid webhook token")]
    Wrong,
}

/// Checks a configured token's shape: RFC 6750 `b64token` characters, so that it survives as a
/// bearer token (no spaces, which the header parser would split on) and in `tsuru
/// event-webhook-create -H Authorization="Bearer ..."` without quoting surprises.
pub fn check_token(token: &Secret, variable: &'static str) -> Result<(), ConfigError> {
    let value = token.expose();
    let b64token = value.bytes().all(|b| {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
    });
    if value.chars().count() < MIN_TOKEN_CHARS || !b64token {
        return Err(ConfigError::Invalid {
            name: variable,
            reason: format!(
                "must be at least {MIN_TOKEN_CHARS} characters of A-Z a-z 0-9 - . _ ~ + / ="
            ),
        });
    }
    Ok(())
}

/// The token a request presents: the bearer token when there is one, else `X-Callback-Token`,
/// else `?token=`. Only the first one present counts: a wrong bearer token is not rescued by a
/// right query token.
pub fn presented_token(request: &Request) -> Option<String> {
    presented_bearer(request)
        .map(str::to_owned)
        .or_else(|| presented_callback_token(request))
}

/// Compared in constant time ([`Secret::matches`]).
pub fn require_token(request: &Request, expected: &Secret) -> Result<(), AccessError> {
    match presented_token(request) {
        None => Err(AccessError::Missing),
        Some(token) if expected.matches(token.as_bytes()) => Ok(()),
        Some(_) => Err(AccessError::Wrong),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::Body;

    const TOKEN: &str = "local-tsuru-webhook-token-0001";

    fn request(uri: &str, headers: &[(&str, &str)]) -> Request {
        let mut builder = http::Request::builder().method("POST").uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(Body::Empty).unwrap()
    }

    #[test]
    fn a_bearer_header_a_callback_header_or_the_query_carries_the_token() {
        let secret = Secret::new(TOKEN);
        let bearer = format!("Bearer {TOKEN}");
        for accepted in [
            request("/tsuru", &[("authorization", &bearer)]),
            request("/tsuru", &[("authorization", &format!("bearer  {TOKEN} "))]),
            request("/tsuru", &[("x-callback-token", TOKEN)]),
            request(&format!("/tsuru?token={TOKEN}"), &[]),
            // Not a bearer token: the next way is looked at.
            request(
                &format!("/tsuru?token={TOKEN}"),
                &[("authorization", "Basic dXNlcjpwYXNz")],
            ),
        ] {
            assert_eq!(require_token(&accepted, &secret), Ok(()), "{accepted:?}");
        }
        for (refused, reason) in [
            (request("/tsuru", &[]), AccessError::Missing),
            (
                request("/tsuru", &[("authorization", "Bearer ")]),
                AccessError::Missing,
            ),
            (
                request("/tsuru", &[("authorization", TOKEN)]),
                AccessError::Missing,
            ),
            (
                request("/tsuru", &[("authorization", &format!("Bearer {TOKEN}x"))]),
                AccessError::Wrong,
            ),
            (
                request("/tsuru", &[("authorization", &bearer[..bearer.len() - 1])]),
                AccessError::Wrong,
            ),
            (request("/tsuru?token=x", &[]), AccessError::Wrong),
            // The first credential presented is the one judged.
            (
                request(
                    &format!("/tsuru?token={TOKEN}"),
                    &[("authorization", "Bearer wrong-wrong-wrong-0001")],
                ),
                AccessError::Wrong,
            ),
            (
                request(
                    "/tsuru",
                    &[
                        ("authorization", "Bearer wrong"),
                        ("x-callback-token", TOKEN),
                    ],
                ),
                AccessError::Wrong,
            ),
        ] {
            assert_eq!(require_token(&refused, &secret), Err(reason), "{refused:?}");
        }
    }

    #[test]
    fn configured_tokens_are_long_and_header_safe() {
        assert!(check_token(&Secret::new(TOKEN), TOKEN_VARIABLE).is_ok());
        assert!(check_token(&Secret::new("aGVsbG8gd29ybGQh+/=="), TOKEN_VARIABLE).is_ok());
        for weak in [
            "short",
            "fifteen-chars-x",
            "sixteen chars with spaces",
            "tökenwithumlautss",
        ] {
            let err = check_token(&Secret::new(weak), TOKEN_PARAMETER_VARIABLE).unwrap_err();
            assert_eq!(err.variable(), TOKEN_PARAMETER_VARIABLE);
            assert!(!err.to_string().contains(weak), "{err}");
        }
    }
}
