//! Who may store events through `/mns` (`docs/protocols.md` §4.5). MNS signs every push with one
//! global key, so a valid signature only says "MNS sent this"; what keeps other Alibaba Cloud
//! accounts out is the endpoint token in the subscribed URL and the `MNS_TOPICS` allow-list.

use hub_core::config::{ConfigError, Secret, Vars};
use hub_core::http::query_param;
use lambda_http::Request;

pub const ENDPOINT_TOKEN_VARIABLE: &str = "MNS_ENDPOINT_TOKEN";
pub const ENDPOINT_TOKEN_PARAMETER_VARIABLE: &str = "MNS_ENDPOINT_TOKEN_PARAMETER";
pub const TOPICS_VARIABLE: &str = "MNS_TOPICS";

/// Shorter tokens could be guessed; 16 characters is what the template asks of every token.
const MIN_TOKEN_CHARS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("missing endpoint token")]
    MissingToken,
    #[error("invalid endpoint token")]
    WrongToken,
    #[error("topic is not allowed")]
    TopicNotAllowed,
}

/// Checks a configured endpoint token's shape. It travels in the subscribed URL, which MNS signs
/// verbatim (§4.2 CanonicalizedResource), so only URL-unreserved characters are allowed: they are
/// never percent-encoded, and the token read back from the query is the one configured.
pub fn check_endpoint_token(token: &Secret, variable: &'static str) -> Result<(), ConfigError> {
    let value = token.expose();
    let unreserved = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'));
    if value.chars().count() < MIN_TOKEN_CHARS || !unreserved {
        return Err(ConfigError::Invalid {
            name: variable,
            reason: format!("must be at least {MIN_TOKEN_CHARS} characters of A-Z a-z 0-9 - _ . ~"),
        });
    }
    Ok(())
}

/// The `token` query parameter, compared in constant time. Only the query counts: it is the part
/// of the subscribed URL that MNS signs (§4.5); MNS cannot send custom headers.
pub fn require_endpoint_token(request: &Request, expected: &Secret) -> Result<(), AccessError> {
    match query_param(request, "token") {
        None => Err(AccessError::MissingToken),
        Some(token) if expected.matches(token.as_bytes()) => Ok(()),
        Some(_) => Err(AccessError::WrongToken),
    }
}

/// `MNS_TOPICS`: `owner/topic` entries, `owner/*` for every topic of one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicAllowList {
    entries: Vec<(String, Option<String>)>,
}

impl TopicAllowList {
    /// Required and never open: an empty list, a bare `*` owner or a malformed entry stops the
    /// function at start.
    pub fn from_vars(vars: &impl Vars) -> Result<Self, ConfigError> {
        let list = vars.list(TOPICS_VARIABLE);
        if list.is_empty() {
            return Err(ConfigError::Missing(TOPICS_VARIABLE));
        }
        let entries = list
            .iter()
            .map(|entry| parse_entry(entry))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| ConfigError::Invalid {
                name: TOPICS_VARIABLE,
                reason,
            })?;
        Ok(TopicAllowList { entries })
    }

    /// Exact, case-sensitive match of the push's `TopicOwner` and `TopicName`.
    pub fn allows(&self, owner: &str, topic: &str) -> bool {
        self.entries.iter().any(|(allowed_owner, allowed_topic)| {
            allowed_owner == owner && allowed_topic.as_deref().is_none_or(|t| t == topic)
        })
    }
}

fn parse_entry(entry: &str) -> Result<(String, Option<String>), String> {
    let bad = || format!("{entry:?} must be <TopicOwner>/<TopicName> or <TopicOwner>/*");
    let (owner, topic) = entry.split_once('/').ok_or_else(bad)?;
    let (owner, topic) = (owner.trim(), topic.trim());
    // An owner wildcard would let every Alibaba Cloud account in again (S1).
    if owner.is_empty() || topic.is_empty() || owner.contains(['*', '/']) || topic.contains('/') {
        return Err(bad());
    }
    match topic {
        "*" => Ok((owner.to_owned(), None)),
        _ if topic.contains('*') => Err(bad()),
        _ => Ok((owner.to_owned(), Some(topic.to_owned()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::Body;

    fn request(uri: &str) -> Request {
        http::Request::builder()
            .uri(uri)
            .header("x-callback-token", "MnsEndpointT0kenForTests")
            .body(Body::Empty)
            .unwrap()
    }

    #[test]
    fn the_token_comes_from_the_query_only() {
        let secret = Secret::new("MnsEndpointT0kenForTests");
        assert_eq!(
            require_endpoint_token(&request("/mns?token=MnsEndpointT0kenForTests"), &secret),
            Ok(())
        );
        assert_eq!(
            require_endpoint_token(&request("/mns"), &secret),
            Err(AccessError::MissingToken),
            "a header is not the signed URL"
        );
        for wrong in [
            "/mns?token=MnsEndpointT0kenForTest",
            "/mns?token=MnsEndpointT0kenForTestsX",
            "/mns?token=",
        ] {
            assert_eq!(
                require_endpoint_token(&request(wrong), &secret),
                Err(AccessError::WrongToken),
                "{wrong}"
            );
        }
    }

    #[test]
    fn configured_tokens_are_long_and_url_safe() {
        assert!(check_endpoint_token(&Secret::new("Abc-123_xyz.789~Q"), "V").is_ok());
        for bad in [
            "short",
            "sixteen chars ok",
            "0123456789abcdef+",
            "0123456789abcdéf",
        ] {
            let err = check_endpoint_token(&Secret::new(bad), "V").unwrap_err();
            assert_eq!(err.variable(), "V");
            assert!(!err.to_string().contains(bad), "the value is never shown");
        }
    }

    #[test]
    fn topic_entries_and_matching() {
        let list = TopicAllowList::from_vars(&[(TOPICS_VARIABLE, "111/orders, 222/*")]).unwrap();
        assert!(list.allows("111", "orders"));
        assert!(!list.allows("111", "Orders"));
        assert!(!list.allows("111", "orders2"));
        assert!(
            !list.allows("333", "orders"),
            "another account, same topic name"
        );
        assert!(list.allows("222", "anything"));
        assert!(!list.allows("2222", "anything"));
        assert!(!list.allows("", "orders"));
    }

    #[test]
    fn topics_are_required_and_never_open() {
        assert_eq!(
            TopicAllowList::from_vars(&[("X", "")]).unwrap_err(),
            ConfigError::Missing(TOPICS_VARIABLE)
        );
        for bad in [
            "orders", "*/*", "*/orders", "/orders", "111/", "111/ord*", "1/2/3",
        ] {
            let err = TopicAllowList::from_vars(&[(TOPICS_VARIABLE, bad)]).unwrap_err();
            assert_eq!(err.variable(), TOPICS_VARIABLE, "{bad}");
        }
    }
}
