//! Subscriptions: Tsuru's `Webhook` (`docs/protocols.md` §5.1), with the same JSON field names,
//! plus ours (`event_filter.sources`, `secret`, `disabled` and the fields the server keeps).
//!
//! Input rules, chosen where Tsuru says nothing:
//! - Unknown fields are rejected (`deny_unknown_fields`), in the subscription and in its
//!   `event_filter`: Tsuru clients send exactly these fields, and a typo such as `kind_name`
//!   would otherwise silently widen the filter to every event. The fields that the server sets
//!   (`created_at`, `updated_at`, `failing_since`, `disabled_reason`) are accepted so that a
//!   subscription read with GET can be sent back with PUT, and are then replaced by the
//!   server's values ([`Subscription::prepare_new`], [`Subscription::prepare_replacement`]).
//! - `null` is accepted wherever a list, map or string is (Go clients send `null` for nil).
//! - `sources` sits inside `event_filter`, beside the other lists it is matched like.
//! - `error_only` and `success_only` together are refused: Tsuru accepts the pair, but it
//!   matches no event, so it can only be a mistake.
//! - An empty `method` means POST; a method is stored upper-cased.
//! - A `secret`, when given, must be `whsec_` + base64 of 24 to 64 bytes; without one a
//!   secret is generated. It is shown once, in the answer to the request that set it
//!   ([`Subscription::redacted`] is the form for everything else).

use crate::net::is_forbidden;
use crate::schedule::{failing_too_long, Verdict};
use crate::signature::{generate_secret, Secret, SecretError};
use crate::template::{BodyTemplate, TemplateError};
use chrono::{DateTime, TimeDelta, Utc};
use hub_core::config::{ConfigError, Vars};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

pub const MAX_NAME_CHARS: usize = 40;
pub const MAX_URL_BYTES: usize = 2048;
pub const MAX_DESCRIPTION_CHARS: usize = 4096;
pub const MAX_TEAM_OWNER_CHARS: usize = 256;
pub const MAX_FILTER_ENTRIES: usize = 100;
pub const MAX_FILTER_ENTRY_CHARS: usize = 256;
pub const MAX_HEADER_NAMES: usize = 50;
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
pub const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];
/// The sources a filter may name: the stored `source` strings.
pub const KNOWN_SOURCES: [&str; 5] = ["dingtalk", "s3", "stack", "mns", "tsuru"];
/// How long the previous secret still signs after a PUT changes the secret, so that receivers
/// can switch over without losing deliveries.
pub const SECRET_ROTATION_OVERLAP: TimeDelta = TimeDelta::hours(24);
/// Headers the sender owns: signatures, framing and routing.
const RESERVED_HEADERS: [&str; 7] = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
];

/// Tsuru's `WebhookEventFilter`, plus `sources`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventFilter {
    #[serde(default, deserialize_with = "nullable")]
    pub target_types: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub target_values: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub kind_types: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub kind_names: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub error_only: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub success_only: bool,
    /// Ours: the stored source names (`stack`, `s3`, `dingtalk`, `mns`, `tsuru`).
    #[serde(default, deserialize_with = "nullable")]
    pub sources: Vec<String>,
}

/// Why a subscription was disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisabledReason {
    /// The user set `disabled`.
    Manual,
    /// A delivery got `410 Gone`.
    Gone,
    /// Deliveries failed for five days without a success.
    Failing,
}

/// A secret that still signs, beside the current one, until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousSecret {
    pub secret: String,
    pub expires_at: DateTime<Utc>,
}

/// One subscription, as stored and as the API reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    /// Empty in a PUT body: the name comes from the path.
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub description: String,
    #[serde(default, deserialize_with = "nullable")]
    pub team_owner: String,
    #[serde(default, deserialize_with = "nullable")]
    pub event_filter: EventFilter,
    #[serde(default, deserialize_with = "nullable")]
    pub url: String,
    /// Empty for none; otherwise one of the operator's `WEBHOOKS_PROXY_URLS`.
    #[serde(default, deserialize_with = "nullable")]
    pub proxy_url: String,
    #[serde(default, deserialize_with = "nullable")]
    pub headers: BTreeMap<String, Vec<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub method: String,
    /// A Go text/template; empty sends the event view as JSON.
    #[serde(default, deserialize_with = "nullable")]
    pub body: String,
    #[serde(default, deserialize_with = "nullable")]
    pub insecure: bool,
    /// `whsec_...`; `None` on input asks for a generated one, and in [`RedactedSubscription`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub disabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<DisabledReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<PreviousSecret>,
    #[serde(default)]
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub updated_at: DateTime<Utc>,
    /// The first failed attempt since the last success: five days of it disables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<DateTime<Utc>>,
}

/// Treats JSON `null` as the field's default, as Go's encoding/json does on the way in.
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("name must be 1 to {MAX_NAME_CHARS} lowercase letters, digits and dashes, starting with a letter")]
    Name,
    #[error("url: {0}")]
    Url(String),
    #[error("method must be one of GET, POST, PUT, PATCH, DELETE")]
    Method,
    #[error("headers: {0}")]
    Header(String),
    #[error("proxy_url is not one of the proxies this server allows")]
    ProxyNotAllowed,
    #[error("event_filter: {0}")]
    Filter(String),
    #[error("{field} is longer than {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error("secret: {0}")]
    Secret(#[from] SecretError),
    #[error("body: {0}")]
    Template(#[from] TemplateError),
}

/// What the operator allows, from the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationPolicy {
    /// `WEBHOOKS_PROXY_URLS`, normalized by [`normalize_proxy_url`].
    pub allowed_proxy_urls: Vec<String>,
    /// `WEBHOOKS_ALLOW_PRIVATE_NETWORKS`: when false, a URL whose host is a literal forbidden
    /// address is refused at once (names are checked when connecting).
    pub allow_private_networks: bool,
}

impl ValidationPolicy {
    /// `WEBHOOKS_PROXY_URLS` (comma-separated `http://host:port` URLs) and
    /// `WEBHOOKS_ALLOW_PRIVATE_NETWORKS` (`true`/`false`, default false).
    pub fn from_vars(vars: &impl Vars) -> Result<ValidationPolicy, ConfigError> {
        let allowed_proxy_urls = vars
            .list("WEBHOOKS_PROXY_URLS")
            .iter()
            .map(|url| normalize_proxy_url(url))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| ConfigError::Invalid {
                name: "WEBHOOKS_PROXY_URLS",
                reason,
            })?;
        Ok(ValidationPolicy {
            allowed_proxy_urls,
            allow_private_networks: vars.parsed_or("WEBHOOKS_ALLOW_PRIVATE_NETWORKS", false)?,
        })
    }

    pub fn allows_proxy(&self, proxy_url: &str) -> bool {
        normalize_proxy_url(proxy_url)
            .is_ok_and(|normalized| self.allowed_proxy_urls.contains(&normalized))
    }
}

/// A proxy URL as compared with the allow-list: `http://[userinfo@]host[:port]`, lower-case
/// scheme, no path other than `/`, no query. Only plain-HTTP proxies are supported (HTTPS
/// targets are tunnelled through them with CONNECT).
pub fn normalize_proxy_url(text: &str) -> Result<String, String> {
    let uri: http::Uri = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a URL"))?;
    if uri.scheme_str().map(str::to_ascii_lowercase).as_deref() != Some("http") {
        return Err(format!("{text:?}: a proxy URL must be http://host:port"));
    }
    let authority = uri
        .authority()
        .filter(|a| !a.host().is_empty())
        .ok_or_else(|| format!("{text:?} has no host"))?;
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!("{text:?}: a proxy URL has no path or query"));
    }
    Ok(format!("http://{authority}"))
}

/// Tsuru's `validation.ValidateName`: a lowercase letter, then up to 39 lowercase letters,
/// digits and dashes.
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && name.len() <= MAX_NAME_CHARS
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// An absolute http(s) URL with a host, no userinfo (credentials belong in headers, where they
/// are not logged with the URL), and, when private networks are not allowed, no literal
/// forbidden address.
pub fn validate_url(url: &str, allow_private_networks: bool) -> Result<http::Uri, ValidationError> {
    let bad = |reason: &str| ValidationError::Url(reason.to_owned());
    if url.is_empty() {
        return Err(bad("is required"));
    }
    if url.len() > MAX_URL_BYTES {
        return Err(bad("is too long"));
    }
    let uri: http::Uri = url.parse().map_err(|_| bad("is not a valid URL"))?;
    match uri.scheme_str() {
        Some(scheme)
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") => {}
        _ => return Err(bad("must be an absolute http or https URL")),
    }
    let authority = uri.authority().ok_or_else(|| bad("has no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad("must not hold a user name or password"));
    }
    let host = authority.host();
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    if authority.port_u16() == Some(0) {
        return Err(bad("has port 0"));
    }
    if !allow_private_networks {
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            if is_forbidden(ip) {
                return Err(bad(
                    "points to a loopback, private, link-local or reserved address",
                ));
            }
        }
    }
    Ok(uri)
}

fn validate_headers(headers: &BTreeMap<String, Vec<String>>) -> Result<(), ValidationError> {
    let bad = |reason: String| ValidationError::Header(reason);
    if headers.len() > MAX_HEADER_NAMES {
        return Err(bad(format!("at most {MAX_HEADER_NAMES} header names")));
    }
    let mut total = 0usize;
    for (name, values) in headers {
        let parsed = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| bad(format!("{name:?} is not a valid header name")))?;
        if RESERVED_HEADERS.contains(&parsed.as_str()) {
            return Err(bad(format!("{name} is set by the sender")));
        }
        for value in values {
            http::HeaderValue::from_str(value)
                .map_err(|_| bad(format!("the value of {name} is not a valid header value")))?;
            total += name.len() + value.len();
        }
    }
    if total > MAX_HEADER_BYTES {
        return Err(bad(format!("longer than {MAX_HEADER_BYTES} bytes in all")));
    }
    Ok(())
}

fn validate_filter(filter: &EventFilter) -> Result<(), ValidationError> {
    let bad = |reason: String| ValidationError::Filter(reason);
    if filter.error_only && filter.success_only {
        return Err(bad(
            "error_only and success_only together match no event".into()
        ));
    }
    for (field, list) in [
        ("target_types", &filter.target_types),
        ("target_values", &filter.target_values),
        ("kind_types", &filter.kind_types),
        ("kind_names", &filter.kind_names),
        ("sources", &filter.sources),
    ] {
        if list.len() > MAX_FILTER_ENTRIES {
            return Err(bad(format!(
                "{field} has more than {MAX_FILTER_ENTRIES} entries"
            )));
        }
        if let Some(entry) = list
            .iter()
            .find(|e| e.is_empty() || e.chars().count() > MAX_FILTER_ENTRY_CHARS)
        {
            return Err(bad(format!(
                "{field} entries must be 1 to {MAX_FILTER_ENTRY_CHARS} characters, not {entry:?}"
            )));
        }
    }
    if let Some(unknown) = filter
        .sources
        .iter()
        .find(|s| !KNOWN_SOURCES.contains(&s.as_str()))
    {
        return Err(bad(format!(
            "unknown source {unknown:?} (known: {})",
            KNOWN_SOURCES.join(", ")
        )));
    }
    Ok(())
}

impl Subscription {
    /// The method to send with: upper-cased, POST when empty.
    pub fn effective_method(&self) -> http::Method {
        let upper = self.method.trim().to_ascii_uppercase();
        if upper.is_empty() {
            return http::Method::POST;
        }
        http::Method::from_bytes(upper.as_bytes()).unwrap_or(http::Method::POST)
    }

    /// Stores the method the way it is sent.
    pub fn normalize(&mut self) {
        self.method = self.effective_method().as_str().to_owned();
    }

    /// Checks every field against Tsuru's rules, ours and the operator's policy. The method is
    /// compared upper-cased, so `post` is valid (and [`normalize`](Self::normalize)d to POST).
    pub fn validate(&self, policy: &ValidationPolicy) -> Result<(), ValidationError> {
        if !valid_name(&self.name) {
            return Err(ValidationError::Name);
        }
        for (field, text, max) in [
            ("description", &self.description, MAX_DESCRIPTION_CHARS),
            ("team_owner", &self.team_owner, MAX_TEAM_OWNER_CHARS),
        ] {
            if text.chars().count() > max {
                return Err(ValidationError::TooLong { field, max });
            }
        }
        validate_url(&self.url, policy.allow_private_networks)?;
        let method = self.method.trim().to_ascii_uppercase();
        if !method.is_empty() && !METHODS.contains(&method.as_str()) {
            return Err(ValidationError::Method);
        }
        validate_headers(&self.headers)?;
        validate_filter(&self.event_filter)?;
        if !self.proxy_url.is_empty() && !policy.allows_proxy(&self.proxy_url) {
            return Err(ValidationError::ProxyNotAllowed);
        }
        if !self.body.is_empty() {
            BodyTemplate::parse(&self.body)?;
        }
        if let Some(secret) = &self.secret {
            Secret::parse(secret)?;
        }
        Ok(())
    }

    /// A new subscription from a POST body: validated, normalized, given a secret when it has
    /// none, and with the server's fields set afresh.
    pub fn prepare_new(
        mut self,
        policy: &ValidationPolicy,
        now: DateTime<Utc>,
    ) -> Result<Subscription, ValidationError> {
        self.validate(policy)?;
        self.normalize();
        if self.secret.is_none() {
            self.secret = Some(generate_secret()?.expose().to_owned());
        }
        self.previous_secret = None;
        self.created_at = now;
        self.updated_at = now;
        self.failing_since = None;
        self.disabled_reason = self.disabled.then_some(DisabledReason::Manual);
        Ok(self)
    }

    /// The replacement of `existing` by a PUT body (Tsuru's PUT replaces the whole
    /// subscription; the name is the path's). Without a secret the current one is kept: GET
    /// never shows it, so a GET-edit-PUT round trip must not change it. A different secret
    /// becomes current and the old one keeps signing for [`SECRET_ROTATION_OVERLAP`].
    /// Re-enabling a disabled subscription also forgets its failure streak.
    pub fn prepare_replacement(
        mut self,
        existing: &Subscription,
        policy: &ValidationPolicy,
        now: DateTime<Utc>,
    ) -> Result<Subscription, ValidationError> {
        self.name = existing.name.clone();
        self.validate(policy)?;
        self.normalize();
        self.previous_secret = existing.previous_secret.clone();
        match (&self.secret, &existing.secret) {
            (None, _) => self.secret = existing.secret.clone(),
            (Some(new), Some(old)) if new != old => {
                self.previous_secret = Some(PreviousSecret {
                    secret: old.clone(),
                    expires_at: now + SECRET_ROTATION_OVERLAP,
                });
            }
            _ => {}
        }
        self.created_at = existing.created_at;
        self.updated_at = now;
        if self.disabled {
            self.disabled_reason = existing
                .disabled_reason
                .filter(|_| existing.disabled)
                .or(Some(DisabledReason::Manual));
            self.failing_since = existing.failing_since;
        } else {
            self.disabled_reason = None;
            self.failing_since = if existing.disabled {
                None
            } else {
                existing.failing_since
            };
        }
        Ok(self)
    }

    /// The secrets to sign with at `now`: the current one first, then the previous one while
    /// its overlap lasts.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Result<Vec<Secret>, SecretError> {
        let mut secrets = Vec::with_capacity(2);
        if let Some(current) = &self.secret {
            secrets.push(Secret::parse(current)?);
        }
        if let Some(previous) = self.previous_secret.as_ref().filter(|p| p.expires_at > now) {
            secrets.push(Secret::parse(&previous.secret)?);
        }
        Ok(secrets)
    }

    /// Updates the failure streak after an attempt and disables the subscription on `410 Gone`
    /// or after five days of failures. Returns the reason when this attempt disabled it.
    /// A [`Verdict::Failed`] (the template failed on one event) says nothing about the
    /// receiver, so it leaves the streak as it is.
    pub fn record_verdict(
        &mut self,
        verdict: Verdict,
        now: DateTime<Utc>,
    ) -> Option<DisabledReason> {
        let reason = match verdict {
            Verdict::Delivered => {
                self.failing_since = None;
                None
            }
            Verdict::Failed => None,
            Verdict::Gone => Some(DisabledReason::Gone),
            Verdict::Retry => {
                let since = *self.failing_since.get_or_insert(now);
                failing_too_long(since, now).then_some(DisabledReason::Failing)
            }
        };
        if self.disabled {
            return None;
        }
        if let Some(reason) = reason {
            self.disabled = true;
            self.disabled_reason = Some(reason);
            self.updated_at = now;
            tracing::warn!(subscription = %self.name, ?reason, "subscription disabled");
        }
        reason
    }

    /// The form for listing and reading: without the secrets.
    pub fn redacted(&self) -> RedactedSubscription {
        let mut copy = self.clone();
        copy.secret = None;
        copy.previous_secret = None;
        RedactedSubscription(copy)
    }
}

/// A subscription without its secrets: what GET returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct RedactedSubscription(Subscription);

impl std::ops::Deref for RedactedSubscription {
    type Target = Subscription;
    fn deref(&self) -> &Subscription {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap()
    }

    fn policy() -> ValidationPolicy {
        ValidationPolicy {
            allowed_proxy_urls: vec!["http://proxy.internal:3128".into()],
            allow_private_networks: false,
        }
    }

    fn base() -> Subscription {
        serde_json::from_value(
            json!({"name": "slack-alerts", "url": "https://hooks.example.com/x?y=1"}),
        )
        .unwrap()
    }

    fn with(change: impl FnOnce(&mut Subscription)) -> Result<(), ValidationError> {
        let mut sub = base();
        change(&mut sub);
        sub.validate(&policy())
    }

    #[test]
    fn parses_a_tsuru_client_body_with_nulls() {
        // What tsuru-client's json.Marshal of a Webhook with nil slices and maps looks like.
        let sub: Subscription = serde_json::from_value(json!({
            "name": "hook", "description": "", "team_owner": "team",
            "event_filter": {"target_types": null, "target_values": ["myapp"], "kind_types": null,
                "kind_names": ["app.deploy"], "error_only": false, "success_only": true},
            "url": "https://example.com", "proxy_url": "", "headers": null,
            "method": "", "body": "", "insecure": false
        }))
        .unwrap();
        assert_eq!(sub.event_filter.kind_names, ["app.deploy"]);
        assert!(sub.event_filter.target_types.is_empty());
        assert!(sub.headers.is_empty());
        assert!(sub.event_filter.success_only);
        assert_eq!(sub.validate(&policy()), Ok(()));
        assert_eq!(sub.effective_method(), http::Method::POST);
    }

    #[test]
    fn unknown_fields_are_rejected_everywhere() {
        let top = serde_json::from_value::<Subscription>(
            json!({"name": "a", "url": "https://x", "kind_names": ["x"]}),
        );
        assert!(top.unwrap_err().to_string().contains("kind_names"));
        let nested = serde_json::from_value::<Subscription>(
            json!({"name": "a", "url": "https://x", "event_filter": {"kind_name": ["x"]}}),
        );
        assert!(nested.unwrap_err().to_string().contains("kind_name"));
    }

    #[test]
    fn names_follow_tsuru() {
        for good in ["a", "slack-alerts", "a1-2-3", &"a".repeat(40)] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "-a",
            "Abc",
            "a_b",
            "a.b",
            "a b",
            "é",
            &"a".repeat(41),
        ] {
            assert!(!valid_name(bad), "{bad}");
            assert_eq!(
                with(|s| s.name = bad.to_owned()),
                Err(ValidationError::Name)
            );
        }
    }

    #[test]
    fn urls_must_be_absolute_http_without_userinfo() {
        for good in [
            "http://example.com",
            "https://example.com:8443/a/b?c=d",
            "https://[2001:db8::1]/x",
        ] {
            // 2001:db8::/32 is documentation space: refused without private networks.
            let expected = !good.contains("2001:db8");
            assert_eq!(with(|s| s.url = good.into()).is_ok(), expected, "{good}");
        }
        for bad in [
            "",
            "example.com/path",
            "/relative",
            "ftp://example.com",
            "https://user:pass@example.com/",
            "https://token@example.com/",
            "http://",
            "https://example.com:0/",
            "https://exa mple.com/",
        ] {
            assert!(
                matches!(with(|s| s.url = bad.into()), Err(ValidationError::Url(_))),
                "{bad}"
            );
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert!(matches!(
            with(|s| s.url = long),
            Err(ValidationError::Url(_))
        ));
    }

    #[test]
    fn literal_private_addresses_depend_on_policy() {
        for url in [
            "http://127.0.0.1:8080/",
            "http://169.254.169.254/latest",
            "http://[::1]/",
            "http://10.1.2.3/",
            "http://[::ffff:192.168.1.1]/",
        ] {
            let mut sub = base();
            sub.url = url.into();
            assert!(
                matches!(sub.validate(&policy()), Err(ValidationError::Url(_))),
                "{url}"
            );
            let lan = ValidationPolicy {
                allow_private_networks: true,
                ..policy()
            };
            assert_eq!(sub.validate(&lan), Ok(()), "{url}");
        }
    }

    #[test]
    fn methods_are_checked_case_insensitively_and_normalized() {
        for good in ["", "get", "POST", "Put", "patch", "DELETE"] {
            assert_eq!(with(|s| s.method = good.into()), Ok(()), "{good}");
        }
        for bad in ["HEAD", "OPTIONS", "CONNECT", "TRACE", "FOO", "GET "] {
            let result = with(|s| s.method = bad.into());
            // A padded method is trimmed before the check; the rest are refused.
            if bad.trim() == "GET" {
                assert_eq!(result, Ok(()));
            } else {
                assert_eq!(result, Err(ValidationError::Method), "{bad}");
            }
        }
        let mut sub = base();
        sub.method = "patch".into();
        sub.normalize();
        assert_eq!(sub.method, "PATCH");
        sub.method = String::new();
        sub.normalize();
        assert_eq!(sub.method, "POST");
    }

    #[test]
    fn headers_must_be_valid_http_and_not_ours() {
        let ok = |name: &str, value: &str| {
            with(|s| {
                s.headers.insert(name.into(), vec![value.into()]);
            })
        };
        assert_eq!(ok("X-Foo", "a b"), Ok(()));
        assert_eq!(ok("Authorization", "Bearer t"), Ok(()));
        assert_eq!(ok("User-Agent", "mine/1"), Ok(()));
        for (name, value) in [
            ("X Foo", "a"),
            ("X-Foo:", "a"),
            ("", "a"),
            ("X-Foo", "a\r\nInjected: 1"),
            ("X-Foo", "a\0"),
        ] {
            assert!(
                matches!(ok(name, value), Err(ValidationError::Header(_))),
                "{name:?}: {value:?}"
            );
        }
        for reserved in [
            "webhook-signature",
            "Webhook-Id",
            "Host",
            "Content-Length",
            "Transfer-Encoding",
        ] {
            assert!(
                matches!(ok(reserved, "x"), Err(ValidationError::Header(_))),
                "{reserved}"
            );
        }
        let many = with(|s| {
            for i in 0..=MAX_HEADER_NAMES {
                s.headers.insert(format!("X-{i}"), vec!["v".into()]);
            }
        });
        assert!(matches!(many, Err(ValidationError::Header(_))));
        let huge = with(|s| {
            s.headers
                .insert("X-Big".into(), vec!["v".repeat(MAX_HEADER_BYTES)]);
        });
        assert!(matches!(huge, Err(ValidationError::Header(_))));
    }

    #[test]
    fn filters_are_checked() {
        assert!(matches!(
            with(|s| {
                s.event_filter.error_only = true;
                s.event_filter.success_only = true;
            }),
            Err(ValidationError::Filter(_))
        ));
        assert_eq!(with(|s| s.event_filter.error_only = true), Ok(()));
        assert_eq!(
            with(|s| s.event_filter.sources = vec!["stack".into(), "tsuru".into()]),
            Ok(())
        );
        for bad in [
            |s: &mut Subscription| s.event_filter.sources = vec!["github".into()],
            |s: &mut Subscription| s.event_filter.kind_names = vec![String::new()],
            |s: &mut Subscription| {
                s.event_filter.target_values = vec!["x".repeat(MAX_FILTER_ENTRY_CHARS + 1)]
            },
            |s: &mut Subscription| {
                s.event_filter.kind_types = vec!["t".into(); MAX_FILTER_ENTRIES + 1]
            },
        ] {
            assert!(matches!(with(bad), Err(ValidationError::Filter(_))));
        }
    }

    #[test]
    fn proxies_must_be_allowed() {
        assert_eq!(
            with(|s| s.proxy_url = "http://proxy.internal:3128".into()),
            Ok(())
        );
        assert_eq!(
            with(|s| s.proxy_url = "http://proxy.internal:3128/".into()),
            Ok(())
        );
        assert_eq!(
            with(|s| s.proxy_url = "HTTP://proxy.internal:3128".into()),
            Ok(())
        );
        for bad in [
            "http://proxy.internal:8080",
            "http://evil:3128",
            "https://proxy.internal:3128",
            "not a url",
        ] {
            assert_eq!(
                with(|s| s.proxy_url = bad.into()),
                Err(ValidationError::ProxyNotAllowed),
                "{bad}"
            );
        }
        let none = ValidationPolicy::default();
        let mut sub = base();
        sub.proxy_url = "http://proxy.internal:3128".into();
        assert_eq!(sub.validate(&none), Err(ValidationError::ProxyNotAllowed));
    }

    #[test]
    fn policy_from_vars() {
        let policy = ValidationPolicy::from_vars(&[
            ("WEBHOOKS_PROXY_URLS", " http://a:1/ , http://u:p@b:2"),
            ("WEBHOOKS_ALLOW_PRIVATE_NETWORKS", "true"),
        ])
        .unwrap();
        assert_eq!(policy.allowed_proxy_urls, ["http://a:1", "http://u:p@b:2"]);
        assert!(policy.allow_private_networks);
        assert_eq!(
            ValidationPolicy::from_vars(&[("X", "")]).unwrap(),
            ValidationPolicy::default()
        );
        let err =
            ValidationPolicy::from_vars(&[("WEBHOOKS_PROXY_URLS", "https://a:1")]).unwrap_err();
        assert_eq!(err.variable(), "WEBHOOKS_PROXY_URLS");
        let err =
            ValidationPolicy::from_vars(&[("WEBHOOKS_ALLOW_PRIVATE_NETWORKS", "yes")]).unwrap_err();
        assert_eq!(err.variable(), "WEBHOOKS_ALLOW_PRIVATE_NETWORKS");
    }

    #[test]
    fn body_templates_must_parse() {
        assert_eq!(with(|s| s.body = "{{.Kind.Name}}".into()), Ok(()));
        assert!(matches!(
            with(|s| s.body = "ahoy {{ --".into()),
            Err(ValidationError::Template(TemplateError::Parse(_)))
        ));
    }

    #[test]
    fn given_secrets_are_validated_and_missing_ones_generated() {
        assert!(matches!(
            with(|s| s.secret = Some("hunter2".into())),
            Err(ValidationError::Secret(SecretError::MissingPrefix))
        ));
        let given = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let mut sub = base();
        sub.secret = Some(given.into());
        let kept = sub.prepare_new(&policy(), now()).unwrap();
        assert_eq!(kept.secret.as_deref(), Some(given));
        let generated = base().prepare_new(&policy(), now()).unwrap();
        let secret = generated.secret.as_deref().unwrap();
        assert!(Secret::parse(secret).is_ok());
        assert_ne!(
            secret,
            base()
                .prepare_new(&policy(), now())
                .unwrap()
                .secret
                .unwrap()
        );
    }

    #[test]
    fn prepare_new_sets_server_fields() {
        let mut sub = base();
        sub.method = "put".into();
        sub.failing_since = Some(now());
        sub.created_at = now() - TimeDelta::days(100);
        sub.previous_secret = Some(PreviousSecret {
            secret: "whsec_x".into(),
            expires_at: now(),
        });
        sub.disabled = true;
        let ready = sub.prepare_new(&policy(), now()).unwrap();
        assert_eq!(ready.method, "PUT");
        assert_eq!(ready.created_at, now());
        assert_eq!(ready.updated_at, now());
        assert_eq!(ready.failing_since, None);
        assert_eq!(ready.previous_secret, None);
        assert_eq!(ready.disabled_reason, Some(DisabledReason::Manual));
    }

    #[test]
    fn get_then_put_round_trips_without_changing_the_secret() {
        let created = base().prepare_new(&policy(), now()).unwrap();
        let shown = serde_json::to_value(created.redacted()).unwrap();
        assert!(shown.get("secret").is_none());
        assert!(shown.get("created_at").is_some());
        let mut edited: Subscription = serde_json::from_value(shown).unwrap();
        edited.description = "edited".into();
        edited.name = String::new();
        let later = now() + TimeDelta::hours(1);
        let replaced = edited
            .prepare_replacement(&created, &policy(), later)
            .unwrap();
        assert_eq!(replaced.name, "slack-alerts");
        assert_eq!(replaced.secret, created.secret);
        assert_eq!(replaced.previous_secret, None);
        assert_eq!(replaced.created_at, now());
        assert_eq!(replaced.updated_at, later);
        assert_eq!(replaced.description, "edited");
    }

    #[test]
    fn a_new_secret_rotates_with_overlap() {
        let old = base().prepare_new(&policy(), now()).unwrap();
        let new_secret = generate_secret().unwrap().expose().to_owned();
        let mut put = base();
        put.secret = Some(new_secret.clone());
        let rotated = put.prepare_replacement(&old, &policy(), now()).unwrap();
        assert_eq!(rotated.secret.as_deref(), Some(new_secret.as_str()));
        let previous = rotated.previous_secret.clone().unwrap();
        assert_eq!(Some(previous.secret.as_str()), old.secret.as_deref());
        assert_eq!(previous.expires_at, now() + SECRET_ROTATION_OVERLAP);

        let during = rotated
            .signing_secrets(now() + TimeDelta::hours(23))
            .unwrap();
        assert_eq!(during.len(), 2);
        assert_eq!(during[0].expose(), new_secret);
        let after = rotated
            .signing_secrets(now() + SECRET_ROTATION_OVERLAP)
            .unwrap();
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].expose(), new_secret);
    }

    #[test]
    fn re_enabling_forgets_the_failure_streak() {
        let mut existing = base().prepare_new(&policy(), now()).unwrap();
        existing.failing_since = Some(now() - TimeDelta::days(6));
        existing.disabled = true;
        existing.disabled_reason = Some(DisabledReason::Failing);

        let mut still_disabled = base();
        still_disabled.disabled = true;
        let kept = still_disabled
            .prepare_replacement(&existing, &policy(), now())
            .unwrap();
        assert_eq!(kept.disabled_reason, Some(DisabledReason::Failing));
        assert_eq!(kept.failing_since, existing.failing_since);

        let enabled = base()
            .prepare_replacement(&existing, &policy(), now())
            .unwrap();
        assert!(!enabled.disabled);
        assert_eq!(enabled.disabled_reason, None);
        assert_eq!(enabled.failing_since, None);

        existing.disabled = false;
        existing.disabled_reason = None;
        let streak = base()
            .prepare_replacement(&existing, &policy(), now())
            .unwrap();
        assert_eq!(
            streak.failing_since, existing.failing_since,
            "an edit does not reset a live streak"
        );
    }

    #[test]
    fn verdicts_drive_the_failure_streak_and_auto_disable() {
        let mut sub = base().prepare_new(&policy(), now()).unwrap();
        assert_eq!(sub.record_verdict(Verdict::Retry, now()), None);
        assert_eq!(sub.failing_since, Some(now()));
        let day4 = now() + TimeDelta::days(4);
        assert_eq!(sub.record_verdict(Verdict::Retry, day4), None);
        assert_eq!(sub.failing_since, Some(now()), "the streak keeps its start");
        assert_eq!(sub.record_verdict(Verdict::Failed, day4), None);
        assert_eq!(
            sub.failing_since,
            Some(now()),
            "template failures leave it alone"
        );
        assert_eq!(sub.record_verdict(Verdict::Delivered, day4), None);
        assert_eq!(sub.failing_since, None);

        sub.record_verdict(Verdict::Retry, day4);
        let day9 = day4 + TimeDelta::days(5);
        assert_eq!(
            sub.record_verdict(Verdict::Retry, day9),
            Some(DisabledReason::Failing)
        );
        assert!(sub.disabled);
        assert_eq!(sub.disabled_reason, Some(DisabledReason::Failing));
        assert_eq!(
            sub.record_verdict(Verdict::Gone, day9),
            None,
            "already disabled"
        );
        assert_eq!(sub.disabled_reason, Some(DisabledReason::Failing));

        let mut gone = base().prepare_new(&policy(), now()).unwrap();
        assert_eq!(
            gone.record_verdict(Verdict::Gone, now()),
            Some(DisabledReason::Gone)
        );
        assert!(gone.disabled);
    }

    #[test]
    fn redacted_hides_every_secret() {
        let old = base().prepare_new(&policy(), now()).unwrap();
        let mut put = base();
        put.secret = Some(generate_secret().unwrap().expose().to_owned());
        let rotated = put.prepare_replacement(&old, &policy(), now()).unwrap();
        let text = serde_json::to_string(&rotated.redacted()).unwrap();
        assert!(!text.contains("whsec_"), "{text}");
        assert!(serde_json::to_string(&rotated).unwrap().contains("whsec_"));
        assert_eq!(rotated.redacted().name, "slack-alerts");
    }

    #[test]
    fn stored_form_round_trips() {
        let sub = base().prepare_new(&policy(), now()).unwrap();
        let text = serde_json::to_string(&sub).unwrap();
        let back: Subscription = serde_json::from_str(&text).unwrap();
        assert_eq!(back, sub);
    }
}
