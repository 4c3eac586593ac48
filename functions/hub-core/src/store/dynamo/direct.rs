//! The one DynamoDB request on every callback's path, `PutItem`, sent without the SDK's
//! orchestrator.
//!
//! Profiled with callgrind (`BENCHMARKS.md`, "What we changed", item 16), the SDK's `PutItem`
//! was more than half of the instructions of a warm invocation: per-call configuration layers,
//! interceptors, a user agent formatted again, the SigV4 signing key derived again, all for one
//! small JSON request. What goes out here is the request the SDK sends: the same JSON protocol
//! body, SigV4 over the same headers (checked against `aws-sigv4` in the tests), the endpoint
//! from the SDK's own resolver, through the same connection pool and X-Ray subsegments
//! (`crate::aws::dynamodb_connector`). What it skips is the machinery around it.
//!
//! One attempt, and only the two answers a put expects are taken from it: stored, or already
//! there (the condition failed). Anything else (a throttle, a 5xx, a refused connection, a
//! timeout, an expired signature, an answer it cannot read, credentials it cannot get) is
//! [`Handover`]: the caller sends the put again through the SDK, whose retry strategy and error
//! classification then decide, exactly as they did before this path existed. A put that went
//! through but whose answer was lost is safe to send again: the condition makes it a duplicate.

use crate::store::dynamo::TableLayout;
use aws_sdk_dynamodb::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
use aws_sdk_dynamodb::config::{Credentials, ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::client::http::{HttpConnector, SharedHttpConnector};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use aws_types::endpoint_config::AccountIdEndpointMode;
use aws_types::SdkConfig;
use chrono::{DateTime, Datelike, Timelike, Utc};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Limited};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::future::Future as _;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

const SERVICE: &str = "dynamodb";
const CONTENT_TYPE: &str = "application/x-amz-json-1.0";
const PUT_ITEM_TARGET: &str = "DynamoDB_20120810.PutItem";
/// Well above any answer to a put (`{}`, or a short error): more is not an answer of DynamoDB.
const MAX_ANSWER: usize = 64 * 1024;
/// Credentials without an expiry are read again after this long, as the SDK's identity cache
/// does.
const UNDATED_CREDENTIALS_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Credentials are replaced this long before they expire, so that none is used at its limit.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5 * 60);
/// How soon credentials that came already inside [`EXPIRY_MARGIN`] are asked for again.
const MARGIN_RETRY: Duration = Duration::from_secs(30);

/// What a direct put found.
#[derive(Debug, PartialEq, Eq)]
pub enum Direct {
    Stored,
    /// An item with this key exists: `attribute_not_exists(pk)` failed.
    AlreadyThere,
}

/// Why a put goes to the SDK instead: for the debug log, never shown to a sender.
#[derive(Debug)]
pub enum Handover {
    /// An attribute type this writer does not encode (every item of `event_to_item` is `S`
    /// and `N`).
    Unencoded,
    Credentials(String),
    /// The credentials carry an account id, which gives the SDK an account endpoint.
    AccountEndpoint,
    Transport(String),
    TimedOut,
    /// Any answer but 200 and the condition's failure: its status and error type.
    Answer(u16, String),
}

impl fmt::Display for Handover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Handover::Unencoded => f.write_str("an attribute type the direct path does not encode"),
            Handover::Credentials(err) => write!(f, "no credentials: {err}"),
            Handover::AccountEndpoint => f.write_str("credentials with an account endpoint"),
            Handover::Transport(err) => write!(f, "transport: {err}"),
            Handover::TimedOut => f.write_str("no answer within the attempt timeout"),
            Handover::Answer(status, kind) => write!(f, "answer {status} {kind}"),
        }
    }
}

impl Handover {
    /// Whether a request went out (and so counts as one of the operation's attempts).
    pub fn attempted(&self) -> bool {
        matches!(
            self,
            Handover::Transport(_) | Handover::TimedOut | Handover::Answer(..)
        )
    }

    /// An answer that asks the client to slow down: a throttle or a 5xx, the codes the store
    /// reports as "try again later". The SDK's first attempt after it waits as its own retry
    /// would.
    pub fn asks_to_back_off(&self) -> bool {
        match self {
            Handover::Answer(status, code) => {
                *status >= 500 || super::errors::RETRYABLE_CODES.contains(&code.as_str())
            }
            _ => false,
        }
    }

    /// A refusal the SDK will likely meet too, or that only this path meets (a signature the
    /// service rejects, a denied action): worth a warning, since every put would pay for it.
    pub fn is_unexpected(&self) -> bool {
        matches!(self, Handover::Answer(status, _) if (400..500).contains(status))
            && !self.asks_to_back_off()
    }
}

/// Where the requests go: the URL, and the `host` header that is signed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    url: String,
    host: String,
}

/// Signs and sends `PutItem` for one region and endpoint.
pub struct DirectPut {
    target: Target,
    region: String,
    provider: SharedCredentialsProvider,
    account_endpoints: bool,
    connector: SharedHttpConnector,
    attempt_timeout: Duration,
    cache: Mutex<Cache>,
}

impl fmt::Debug for DirectPut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectPut")
            .field("url", &self.target.url)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Cache {
    credentials: Option<(Credentials, SystemTime)>,
    /// The signing key of one day, one secret: `(YYYYMMDD, access key id, key)`.
    signing_key: Option<(String, String, [u8; 32])>,
}

impl DirectPut {
    /// The direct path for `config`'s DynamoDB endpoint, or `None` where it would not send
    /// what the SDK sends: no region or credentials provider, an endpoint the SDK's resolver
    /// refuses, or one with a path (a proxy prefix this signer does not canonicalize).
    pub fn for_config(
        config: &SdkConfig,
        connector: SharedHttpConnector,
        attempt_timeout: Duration,
    ) -> Option<Self> {
        let region = config.region()?.as_ref().to_owned();
        let provider = config.credentials_provider()?;
        let target = resolve(config, &region)?;
        let account_endpoints = !matches!(
            config.account_id_endpoint_mode(),
            Some(AccountIdEndpointMode::Disabled)
        );
        Some(DirectPut {
            target,
            region,
            provider,
            account_endpoints,
            connector,
            attempt_timeout,
            cache: Mutex::default(),
        })
    }

    /// `PutItem` of `item` into `table` if no item has its key.
    pub async fn put_if_absent(
        &self,
        table: &str,
        item: &HashMap<String, AttributeValue>,
    ) -> Result<Direct, Handover> {
        let body = put_item_body(table, item).ok_or(Handover::Unencoded)?;
        // The credentials too: a provider that has to ask a metadata service is bounded by
        // the attempt like the request is.
        let attempt = async {
            let credentials = self.credentials().await?;
            if self.account_endpoints && credentials.account_id().is_some() {
                return Err(Handover::AccountEndpoint);
            }
            let request = self.signed(&credentials, Utc::now(), body)?;
            self.send(request).await
        };
        match tokio::time::timeout(self.attempt_timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(Handover::TimedOut),
        }
    }

    async fn send(&self, request: HttpRequest) -> Result<Direct, Handover> {
        let response = self
            .connector
            .call(request)
            .await
            .map_err(|err| Handover::Transport(err.to_string()))?;
        let status = response.status().as_u16();
        let error_type = response
            .headers()
            .get("x-amzn-errortype")
            .map(str::to_owned);
        // Read to the end even when only the status matters: the connection goes back to the
        // pool only once its answer has been read.
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|err| Handover::Transport(err.to_string()))?
            .to_bytes();
        if status == 200 {
            return Ok(Direct::Stored);
        }
        let kind = error_type
            .or_else(|| error_type_in(&body))
            .unwrap_or_default();
        // `x-amzn-errortype` is `Code:url`, `__type` is `namespace#Code`.
        let code = kind.split(':').next().unwrap_or_default();
        let code = code.rsplit('#').next().unwrap_or_default();
        if status == 400 && code == "ConditionalCheckFailedException" {
            return Ok(Direct::AlreadyThere);
        }
        Err(Handover::Answer(status, code.to_owned()))
    }

    async fn credentials(&self) -> Result<Credentials, Handover> {
        let now = SystemTime::now();
        if let Some((credentials, refresh_at)) = &self.lock().credentials {
            if now < *refresh_at {
                return Ok(credentials.clone());
            }
        }
        let credentials = self
            .provider
            .provide_credentials()
            .await
            .map_err(|err| Handover::Credentials(err.to_string()))?;
        let refresh_at = match credentials.expiry() {
            // Credentials that are already inside the margin (a provider serving stale ones
            // while its source is down) are asked for again after a short while, not on
            // every put.
            Some(expiry) => expiry
                .checked_sub(EXPIRY_MARGIN)
                .unwrap_or(expiry)
                .max((now + MARGIN_RETRY).min(expiry)),
            None => now + UNDATED_CREDENTIALS_LIFETIME,
        };
        self.lock().credentials = Some((credentials.clone(), refresh_at));
        Ok(credentials)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The request, signed with Signature Version 4 at `now`.
    fn signed(
        &self,
        credentials: &Credentials,
        now: DateTime<Utc>,
        body: Vec<u8>,
    ) -> Result<HttpRequest, Handover> {
        let amz_date = format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            now.year(),
            now.month(),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        );
        let day = &amz_date[..8];
        let token = credentials.session_token();
        let payload_hash = hex::encode(Sha256::digest(&body));
        let canonical = canonical_request(&self.target.host, &amz_date, token, &payload_hash);
        let scope = format!("{day}/{}/{SERVICE}/aws4_request", self.region);
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let key = self.signing_key(credentials, day);
        let signature = hex::encode(hmac(&key, string_to_sign.as_bytes()));
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={}, Signature={signature}",
            credentials.access_key_id(),
            signed_headers(token.is_some()),
        );
        let mut request = http::Request::builder()
            .method("POST")
            .uri(&self.target.url)
            .header("content-type", CONTENT_TYPE)
            .header("host", &self.target.host)
            .header("x-amz-date", &amz_date)
            .header("x-amz-target", PUT_ITEM_TARGET)
            .header("authorization", authorization)
            .header("content-length", body.len())
            .header(
                "user-agent",
                concat!("callback-hub/", env!("CARGO_PKG_VERSION"), " direct-put"),
            );
        if let Some(token) = token {
            request = request.header("x-amz-security-token", token);
        }
        // Only the credentials can make it fail: a key or token that is no header value.
        let request = request
            .body(SdkBody::from(body))
            .map_err(|_| Handover::Credentials("not a valid header value".into()))?;
        HttpRequest::try_from(request)
            .map_err(|_| Handover::Credentials("not a valid header value".into()))
    }

    /// `kSigning` of the day, derived once a day (four HMACs the SDK repeats on every request).
    fn signing_key(&self, credentials: &Credentials, day: &str) -> [u8; 32] {
        let mut cache = self.lock();
        if let Some((cached_day, key_id, key)) = &cache.signing_key {
            if cached_day == day && key_id == credentials.access_key_id() {
                return *key;
            }
        }
        let secret = format!("AWS4{}", credentials.secret_access_key());
        let key = hmac(
            &hmac(
                &hmac(
                    &hmac(secret.as_bytes(), day.as_bytes()),
                    self.region.as_bytes(),
                ),
                SERVICE.as_bytes(),
            ),
            b"aws4_request",
        );
        cache.signing_key = Some((day.to_owned(), credentials.access_key_id().to_owned(), key));
        key
    }
}

/// The endpoint the SDK's resolver gives for `config` (its `AWS_ENDPOINT_URL_DYNAMODB`,
/// `AWS_ENDPOINT_URL`, FIPS and dual-stack settings, the region's partition), taken as the SDK's
/// own client builder reads them.
fn resolve(config: &SdkConfig, region: &str) -> Option<Target> {
    let in_code = config
        .get_origin("endpoint_url")
        .is_client_config()
        .then(|| config.endpoint_url().map(str::to_owned))
        .flatten();
    let endpoint = in_code
        .or_else(|| {
            config.service_config().and_then(|services| {
                services.load_config(
                    aws_types::service_config::ServiceConfigKey::builder()
                        .service_id("DynamoDB")
                        .env("AWS_ENDPOINT_URL")
                        .profile("endpoint_url")
                        .build()
                        .ok()?,
                )
            })
        })
        .or_else(|| config.endpoint_url().map(str::to_owned));
    let params = Params::builder()
        .region(region)
        .set_use_fips(config.use_fips())
        .set_use_dual_stack(config.use_dual_stack())
        .set_endpoint(endpoint)
        .build()
        .ok()?;
    let resolver = DefaultResolver::new();
    let resolving = resolver.resolve_endpoint(&params);
    let mut resolving = std::pin::pin!(resolving);
    // The default resolver computes; it never waits, so one poll has the answer.
    let std::task::Poll::Ready(Ok(endpoint)) = resolving
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    else {
        return None;
    };
    // An endpoint that names its own signing (the `local` region's, for one) is signed
    // differently from the configured region, and one with headers wants them sent: both are
    // left to the SDK.
    if !endpoint.auth_schemes().is_empty()
        || endpoint.properties().contains_key("authSchemes")
        || endpoint.headers().next().is_some()
    {
        return None;
    }
    target_of(endpoint.url())
}

/// The URL and signed `host` of an endpoint URL; `None` for one with a path, a query or
/// user information.
fn target_of(url: &str) -> Option<Target> {
    let uri: http::Uri = url.parse().ok()?;
    let default_port = match uri.scheme_str()? {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let authority = uri.authority()?;
    if authority.as_str().contains('@') || uri.query().is_some() {
        return None;
    }
    if !matches!(uri.path(), "" | "/") {
        return None;
    }
    let host = match authority.port_u16() {
        Some(port) if port != default_port => format!("{}:{port}", authority.host()),
        _ => authority.host().to_owned(),
    };
    Some(Target {
        url: format!("{}://{}/", uri.scheme_str()?, authority.as_str()),
        host,
    })
}

fn signed_headers(with_token: bool) -> &'static str {
    if with_token {
        "content-type;host;x-amz-date;x-amz-security-token;x-amz-target"
    } else {
        "content-type;host;x-amz-date;x-amz-target"
    }
}

/// The canonical request of a `PutItem` (the AWS General Reference, "Create a canonical request
/// for Signature Version 4"): `POST /`, no query, the headers sorted by name.
fn canonical_request(
    host: &str,
    amz_date: &str,
    token: Option<&str>,
    payload_hash: &str,
) -> String {
    let mut canonical = String::with_capacity(320 + token.map_or(0, str::len));
    canonical.push_str("POST\n/\n\ncontent-type:");
    canonical.push_str(CONTENT_TYPE);
    canonical.push_str("\nhost:");
    canonical.push_str(host);
    canonical.push_str("\nx-amz-date:");
    canonical.push_str(amz_date);
    if let Some(token) = token {
        canonical.push_str("\nx-amz-security-token:");
        canonical.push_str(token.trim());
    }
    canonical.push_str("\nx-amz-target:");
    canonical.push_str(PUT_ITEM_TARGET);
    canonical.push_str("\n\n");
    canonical.push_str(signed_headers(token.is_some()));
    canonical.push('\n');
    canonical.push_str(payload_hash);
    canonical
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The JSON body of a conditional `PutItem`, as the SDK serializes it; `None` if the item holds
/// a type other than `S` and `N`.
fn put_item_body(table: &str, item: &HashMap<String, AttributeValue>) -> Option<Vec<u8>> {
    let mut body = Vec::with_capacity(256 + item.len() * 48);
    body.extend_from_slice(b"{\"TableName\":");
    json_string(&mut body, table);
    body.extend_from_slice(b",\"Item\":{");
    for (i, (name, value)) in item.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        json_string(&mut body, name);
        let (tag, text) = match value {
            AttributeValue::S(text) => (&b":{\"S\":"[..], text),
            AttributeValue::N(number) => (&b":{\"N\":"[..], number),
            _ => return None,
        };
        body.extend_from_slice(tag);
        json_string(&mut body, text);
        body.push(b'}');
    }
    body.extend_from_slice(
        b"},\"ConditionExpression\":\"attribute_not_exists(#pk)\",\"ExpressionAttributeNames\":{\"#pk\":",
    );
    json_string(&mut body, TableLayout::PK);
    body.extend_from_slice(b"}}");
    Some(body)
}

fn json_string(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(&mut *out, text).expect("writing to a Vec cannot fail");
}

/// `__type` of a JSON error answer.
fn error_type_in(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct ErrorAnswer {
        #[serde(rename = "__type")]
        kind: String,
    }
    serde_json::from_slice::<ErrorAnswer>(body)
        .ok()
        .map(|answer| answer.kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;
    use aws_smithy_runtime_api::client::identity::Identity;

    fn direct(url: &str, region: &str) -> DirectPut {
        let config = SdkConfig::builder()
            .region(aws_types::region::Region::new(region.to_owned()))
            .endpoint_url(url)
            .credentials_provider(SharedCredentialsProvider::new(test_credentials()))
            .build();
        let http = crate::sdk_http::SdkHttpClient::new().unwrap();
        let connector = crate::aws::dynamodb_connector(&config, &http);
        DirectPut::for_config(&config, connector, Duration::from_millis(800)).unwrap()
    }

    fn test_credentials() -> Credentials {
        Credentials::new("AKIDTEST", "secret", None, None, "test")
    }

    fn time(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    /// What `aws-sigv4` (the SDK's signer) puts in `authorization` for the same request.
    fn sdk_authorization(
        request: &HttpRequest,
        credentials: &Credentials,
        region: &str,
        at: DateTime<Utc>,
    ) -> String {
        let identity: Identity = credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(SERVICE)
            .time(at.into())
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        // The headers the SDK's request has before signing: those we sign, minus the ones the
        // signer adds itself, and minus `host`, which it takes from the URL as the SDK's
        // request leaves it to.
        let headers: Vec<(&str, &str)> = request
            .headers()
            .iter()
            .filter(|(name, _)| {
                !matches!(
                    *name,
                    "authorization"
                        | "host"
                        | "x-amz-date"
                        | "x-amz-security-token"
                        | "content-length"
                        | "user-agent"
                )
            })
            .collect();
        let signable = SignableRequest::new(
            "POST",
            request.uri(),
            headers.into_iter(),
            SignableBody::Bytes(request.body().bytes().unwrap()),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let authorization = instructions
            .headers()
            .find(|(name, _)| *name == "authorization")
            .map(|(_, value)| value.to_owned())
            .unwrap();
        authorization
    }

    fn item() -> HashMap<String, AttributeValue> {
        HashMap::from([
            (
                "pk".to_owned(),
                AttributeValue::S("ros#stack-1/a\"b\\c\u{1}é".into()),
            ),
            (
                "expires_at".to_owned(),
                AttributeValue::N("1795550547".into()),
            ),
        ])
    }

    #[tokio::test]
    async fn signs_as_the_sdk_signs_with_and_without_a_session_token() {
        let at = time("2026-11-24T20:02:27Z");
        for (url, region) in [
            ("http://127.0.0.1:5000", "eu-central-1"),
            ("https://dynamodb.us-east-1.amazonaws.com", "us-east-1"),
            ("https://localhost:8443", "ap-southeast-2"),
        ] {
            let direct = direct(url, region);
            for credentials in [
                Credentials::new(
                    "AKIDEXAMPLE",
                    "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                    None,
                    None,
                    "test",
                ),
                Credentials::new(
                    "ASIAEXAMPLE",
                    "secret/with+chars",
                    Some("IQoJb3JpZ2luX2VjE//token==".into()),
                    None,
                    "test",
                ),
            ] {
                let body = put_item_body("events", &item()).unwrap();
                let request = direct.signed(&credentials, at, body).unwrap();
                let ours = request.headers().get("authorization").unwrap().to_owned();
                assert_eq!(
                    ours,
                    sdk_authorization(&request, &credentials, region, at),
                    "{url}"
                );
                assert_eq!(
                    request.headers().get("x-amz-security-token"),
                    credentials.session_token()
                );
                assert_eq!(
                    request.headers().get("x-amz-date"),
                    Some("20261124T200227Z")
                );
            }
        }
    }

    #[tokio::test]
    async fn a_new_day_or_a_new_secret_derives_a_new_signing_key() {
        let direct = direct("http://127.0.0.1:5000", "eu-west-1");
        let first = Credentials::new("AKID1", "secret-1", None, None, "test");
        let second = Credentials::new("AKID2", "secret-2", None, None, "test");
        for (credentials, at) in [
            (&first, "2026-11-24T23:59:59Z"),
            (&first, "2026-11-25T00:00:01Z"),
            (&second, "2026-11-25T00:00:02Z"),
            (&first, "2026-11-25T00:00:03Z"),
        ] {
            let at = time(at);
            let request = direct.signed(credentials, at, b"{}".to_vec()).unwrap();
            assert_eq!(
                request.headers().get("authorization").unwrap(),
                sdk_authorization(&request, credentials, "eu-west-1", at)
            );
        }
    }

    #[test]
    fn the_body_is_the_sdk_json_of_the_conditional_put() {
        let body = put_item_body("events", &item()).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "TableName": "events",
                "Item": {
                    "pk": {"S": "ros#stack-1/a\"b\\c\u{1}é"},
                    "expires_at": {"N": "1795550547"},
                },
                "ConditionExpression": "attribute_not_exists(#pk)",
                "ExpressionAttributeNames": {"#pk": "pk"},
            })
        );
        let mut other = item();
        other.insert("flag".into(), AttributeValue::Bool(true));
        assert!(put_item_body("events", &other).is_none());
    }

    #[test]
    fn endpoints_come_from_the_sdk_resolver() {
        let config = |region: &str, url: Option<&str>| {
            let mut builder = SdkConfig::builder()
                .region(aws_types::region::Region::new(region.to_owned()))
                .credentials_provider(SharedCredentialsProvider::new(test_credentials()));
            if let Some(url) = url {
                builder = builder.endpoint_url(url);
            }
            builder.build()
        };
        let target = |config: &SdkConfig| resolve(config, config.region().unwrap().as_ref());
        assert_eq!(
            target(&config("eu-central-1", None)),
            Some(Target {
                url: "https://dynamodb.eu-central-1.amazonaws.com/".into(),
                host: "dynamodb.eu-central-1.amazonaws.com".into(),
            })
        );
        assert_eq!(
            target(&config("cn-north-1", None)).unwrap().host,
            "dynamodb.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            target(&config("us-east-1", Some("http://127.0.0.1:5000"))),
            Some(Target {
                url: "http://127.0.0.1:5000/".into(),
                host: "127.0.0.1:5000".into(),
            })
        );
        assert_eq!(
            target(&config("us-east-1", Some("https://ddb.internal:443")))
                .unwrap()
                .host,
            "ddb.internal"
        );
        let fips = SdkConfig::builder()
            .region(aws_types::region::Region::new("us-east-1"))
            .use_fips(true)
            .build();
        assert_eq!(
            target(&fips).unwrap().host,
            "dynamodb-fips.us-east-1.amazonaws.com"
        );
        // DynamoDB Local's region names its own signing region: left to the SDK.
        assert_eq!(target(&config("local", None)), None);
        // A path would have to be part of the canonical request: left to the SDK.
        assert_eq!(
            target(&config("us-east-1", Some("https://proxy.example/ddb"))),
            None
        );
        assert_eq!(
            target(&config("us-east-1", Some("https://u:p@proxy.example"))),
            None
        );
    }

    #[test]
    fn error_types_are_read_from_the_header_or_the_body() {
        assert_eq!(
            error_type_in(br#"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"The conditional request failed"}"#).as_deref(),
            Some("com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException")
        );
        assert_eq!(error_type_in(b"<html>"), None);
    }
}
