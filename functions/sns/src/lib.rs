//! Amazon SNS messages delivered over HTTPS (or in the SNS→Lambda shape): parsing, the string to
//! sign, signature versions 1 (SHA-1) and 2 (SHA-256), the certificate URL policy, the topic
//! allow-list, and the subscription handshake (`docs/protocols.md` §2.3).
//!
//! It returns typed results; the HTTP replies are the receiving functions' business.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hub_core::certs::{CertError, CertificateCache, Fetcher};
use hub_core::config::{ConfigError, Secret, Vars};
use hub_core::http::ApiError;
use ring::signature::{
    RsaParameters, RsaPublicKeyComponents, RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
    RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
};
use rsa::traits::PublicKeyParts;
use serde_json::{Map, Value};
use std::sync::Arc;

/// `SNS_TOPIC_ARNS`: the topics whose messages are accepted.
pub const TOPICS_VARIABLE: &str = "SNS_TOPIC_ARNS";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnsKind {
    Notification,
    SubscriptionConfirmation,
    UnsubscribeConfirmation,
}

impl SnsKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SnsKind::Notification => "Notification",
            SnsKind::SubscriptionConfirmation => "SubscriptionConfirmation",
            SnsKind::UnsubscribeConfirmation => "UnsubscribeConfirmation",
        }
    }
}

/// One SNS message, with the SNS→Lambda spellings (`SigningCertUrl`, `SubscribeUrl`,
/// `UnsubscribeUrl`, `"Subject": null`) normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnsMessage {
    pub kind: SnsKind,
    pub message_id: String,
    pub topic_arn: String,
    pub message: String,
    pub timestamp: String,
    pub subject: Option<String>,
    pub signature_version: String,
    pub signature: String,
    pub signing_cert_url: String,
    pub subscribe_url: Option<String>,
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnsError {
    /// Not a message that can be verified, or it does not verify: 403.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The signing certificate or the SubscribeURL could not be reached: 503, SNS retries.
    #[error("{0}")]
    Unavailable(String),
}

impl From<SnsError> for ApiError {
    fn from(err: SnsError) -> Self {
        match err {
            SnsError::Forbidden(reason) => ApiError::forbidden(reason),
            SnsError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "SNS dependency unavailable");
                ApiError::Unavailable("signing certificate unavailable, retry later".into())
            }
        }
    }
}

fn field<'a>(object: &'a Map<String, Value>, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|name| object.get(*name).and_then(Value::as_str))
}

/// Parses an SNS envelope. Anything that is not a complete, signed SNS message is refused as
/// forbidden: it cannot be authenticated.
pub fn parse(body: &[u8]) -> Result<SnsMessage, SnsError> {
    let unverifiable = SnsError::Forbidden("not a verifiable SNS message");
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
        return Err(unverifiable);
    };
    parse_object(&object)
}
pub fn parse_object(object: &Map<String, Value>) -> Result<SnsMessage, SnsError> {
    let unverifiable = || SnsError::Forbidden("not a verifiable SNS message");
    let required = |names: &[&str]| {
        field(object, names)
            .map(str::to_owned)
            .ok_or_else(unverifiable)
    };
    let kind = match field(object, &["Type"]) {
        Some("Notification") => SnsKind::Notification,
        Some("SubscriptionConfirmation") => SnsKind::SubscriptionConfirmation,
        Some("UnsubscribeConfirmation") => SnsKind::UnsubscribeConfirmation,
        _ => return Err(unverifiable()),
    };
    let (subscribe_url, token) = match kind {
        SnsKind::Notification => (None, None),
        _ => (
            Some(required(&["SubscribeURL", "SubscribeUrl"])?),
            Some(required(&["Token"])?),
        ),
    };
    Ok(SnsMessage {
        kind,
        message_id: required(&["MessageId"])?,
        topic_arn: required(&["TopicArn"])?,
        message: required(&["Message"])?,
        timestamp: required(&["Timestamp"])?,
        subject: field(object, &["Subject"]).map(str::to_owned),
        signature_version: required(&["SignatureVersion"])?,
        signature: required(&["Signature"])?,
        signing_cert_url: required(&["SigningCertURL", "SigningCertUrl"])?,
        subscribe_url,
        token,
    })
}

/// The bytes SNS signed: `Key\nValue\n` for each key of the message type's list that is present.
pub fn string_to_sign(message: &SnsMessage) -> String {
    let mut out = String::with_capacity(message.message.len() + 256);
    let mut push = |key: &str, value: &str| {
        out.push_str(key);
        out.push('\n');
        out.push_str(value);
        out.push('\n');
    };
    push("Message", &message.message);
    push("MessageId", &message.message_id);
    match message.kind {
        SnsKind::Notification => {
            if let Some(subject) = &message.subject {
                push("Subject", subject);
            }
        }
        _ => push(
            "SubscribeURL",
            message.subscribe_url.as_deref().unwrap_or_default(),
        ),
    }
    push("Timestamp", &message.timestamp);
    if message.kind != SnsKind::Notification {
        push("Token", message.token.as_deref().unwrap_or_default());
    }
    push("TopicArn", &message.topic_arn);
    push("Type", message.kind.as_str());
    out
}

/// A region name as AWS forms them: `us-east-1`, `cn-north-1`, `us-gov-west-1`. A host label
/// such as `s3-external-1` (an S3 bucket host, not SNS) does not qualify.
fn is_region(label: &str) -> bool {
    let mut parts = label.split('-');
    let Some(first) = parts.next() else {
        return false;
    };
    let rest: Vec<&str> = parts.collect();
    let Some((number, middle)) = rest.split_last() else {
        return false;
    };
    first.len() == 2
        && first.bytes().all(|b| b.is_ascii_lowercase())
        && !middle.is_empty()
        && middle
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && !number.is_empty()
        && number.len() <= 2
        && number.bytes().all(|b| b.is_ascii_digit())
}

/// `sns.<region>.amazonaws.com` or `sns.<region>.amazonaws.com.cn`.
pub fn is_sns_host(host: &str) -> bool {
    let rest = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"));
    rest.and_then(|r| r.strip_prefix("sns."))
        .is_some_and(is_region)
}

/// An `https://` URL on an SNS host, with no credentials and no port other than 443.
fn is_sns_https_url(url: &str) -> Option<http::Uri> {
    let uri: http::Uri = url.parse().ok()?;
    let authority = uri.authority()?;
    let ok = uri.scheme_str() == Some("https")
        && !authority.as_str().contains('@')
        && authority.port().is_none()
        && is_sns_host(authority.host());
    ok.then_some(uri)
}

/// The certificate URL must be exactly
/// `https://sns.<region>.amazonaws.com[.cn]/SimpleNotificationService-<hex>.pem`: no query
/// string, so that `?v=1`, `?v=2`... cannot make every message a new cache entry and a new fetch.
pub fn check_cert_url(url: &str) -> Result<(), SnsError> {
    let refused = SnsError::Forbidden("signing certificate URL is not an SNS certificate URL");
    let uri = is_sns_https_url(url).ok_or(refused.clone())?;
    if uri.query().is_some() || url.contains('#') {
        return Err(refused);
    }
    let id = uri
        .path()
        .strip_prefix("/SimpleNotificationService-")
        .and_then(|rest| rest.strip_suffix(".pem"));
    match id {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(()),
        _ => Err(refused),
    }
}

/// Verifies SNS messages from allow-listed topics.
pub struct SnsVerifier<F> {
    certificates: Arc<CertificateCache<F>>,
    allowed_topics: Vec<String>,
}

impl<F: Fetcher> SnsVerifier<F> {
    /// `allowed_topics` is `SNS_TOPIC_ARNS`; empty means no SNS message is accepted. The cache
    /// may be shared with other verifiers (the local server builds one for every route).
    pub fn new(
        certificates: impl Into<Arc<CertificateCache<F>>>,
        allowed_topics: Vec<String>,
    ) -> Self {
        SnsVerifier {
            certificates: certificates.into(),
            allowed_topics,
        }
    }

    /// `SNS_TOPIC_ARNS` from `vars`, over a certificate cache built once for the process.
    pub fn from_vars(vars: &impl Vars, certificates: Arc<CertificateCache<F>>) -> Self {
        SnsVerifier::new(certificates, topics_from_vars(vars))
    }

    pub fn accepts_any(&self) -> bool {
        !self.allowed_topics.is_empty()
    }

    /// Checks the topic and the certificate URL before anything is fetched, then the signature.
    pub async fn verify(&self, message: &SnsMessage) -> Result<(), SnsError> {
        if !self.allowed_topics.contains(&message.topic_arn) {
            return Err(SnsError::Forbidden("SNS topic is not allowed"));
        }
        check_cert_url(&message.signing_cert_url)?;
        let signature = STANDARD
            .decode(&message.signature)
            .map_err(|_| SnsError::Forbidden("SNS signature is not base64"))?;
        // PKCS#1 v1.5 over the string to sign; SHA-1 for version 1, SHA-256 for version 2. The
        // keys SNS signs with are 2048-bit; shorter than 1024 bits is refused.
        let algorithm: &RsaParameters = match message.signature_version.as_str() {
            "1" => &RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
            "2" => &RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
            _ => return Err(SnsError::Forbidden("unsupported SNS SignatureVersion")),
        };
        let key = self
            .certificates
            .public_key(&message.signing_cert_url)
            .await
            .map_err(|e| match e {
                CertError::Unreachable(detail) => SnsError::Unavailable(detail),
                CertError::Invalid => SnsError::Forbidden("SNS signing certificate is invalid"),
            })?;
        let text = string_to_sign(message);
        let (modulus, exponent) = (key.n().to_bytes_be(), key.e().to_bytes_be());
        let verified = RsaPublicKeyComponents {
            n: &modulus,
            e: &exponent,
        }
        .verify(algorithm, text.as_bytes(), &signature);
        verified.map_err(|_| SnsError::Forbidden("SNS signature mismatch"))
    }

    /// Confirms a verified subscription by GET of its SubscribeURL, only when that is an SNS
    /// https URL. Uses the same fetcher as certificates.
    pub async fn confirm_subscription(&self, message: &SnsMessage) -> Result<(), SnsError> {
        let url = message.subscribe_url.as_deref().unwrap_or_default();
        if is_sns_https_url(url).is_none() {
            return Err(SnsError::Forbidden("SubscribeURL is not an SNS URL"));
        }
        let (status, _) = self
            .certificates
            .fetcher()
            .get(url)
            .await
            .map_err(|e| SnsError::Unavailable(e.to_string()))?;
        if status != 200 {
            return Err(SnsError::Unavailable(format!(
                "SubscribeURL answered HTTP {status}"
            )));
        }
        tracing::info!(topic = %message.topic_arn, "SNS subscription confirmed");
        Ok(())
    }

    /// Parses and verifies a request body, and completes the handshakes: a confirmation is
    /// confirmed, an unsubscribe is logged. Only notifications are returned for the caller to
    /// store.
    pub async fn receive(&self, body: &[u8]) -> Result<Received, SnsError> {
        let message = parse(body)?;
        self.verify(&message).await?;
        match message.kind {
            SnsKind::Notification => Ok(Received::Notification(Box::new(message))),
            SnsKind::SubscriptionConfirmation => {
                self.confirm_subscription(&message).await?;
                Ok(Received::Handshake)
            }
            SnsKind::UnsubscribeConfirmation => {
                tracing::warn!(topic = %message.topic_arn, "SNS subscription ended");
                Ok(Received::Handshake)
            }
        }
    }
}

/// `SNS_TOPIC_ARNS`, comma-separated.
pub fn topics_from_vars(vars: &impl Vars) -> Vec<String> {
    vars.list(TOPICS_VARIABLE)
}

/// A function that takes both a shared-token sender and SNS needs at least one of them: with
/// neither, it could authenticate nothing, so it refuses to start rather than accept nothing.
pub fn require_token_or_topics(
    token: Option<&Secret>,
    token_variable: &'static str,
    vars: &impl Vars,
) -> Result<(), ConfigError> {
    if token.is_none() && topics_from_vars(vars).is_empty() {
        return Err(ConfigError::MissingOneOf(token_variable, TOPICS_VARIABLE));
    }
    Ok(())
}

/// What a verified envelope was.
#[derive(Debug)]
pub enum Received {
    /// A notification, to be stored by the caller.
    Notification(Box<SnsMessage>),
    /// A subscription confirmed, or an unsubscribe noted: answered 200, not stored.
    Handshake,
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use hub_core::certs::public_key_from_pem;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    const VECTORS: &str = include_str!("../tests/fixtures/sns-vectors.json");

    #[derive(Default)]
    struct CountingFetcher(AtomicUsize);

    impl Fetcher for CountingFetcher {
        async fn get(&self, _url: &str) -> Result<(u16, Bytes), CertError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Err(CertError::Unreachable("no network in unit tests".into()))
        }
    }

    fn vectors() -> Value {
        serde_json::from_str(VECTORS).unwrap()
    }

    fn pinned() -> HashMap<String, Arc<rsa::RsaPublicKey>> {
        let v = vectors();
        let key = public_key_from_pem(v["certificate_pem"].as_str().unwrap().as_bytes()).unwrap();
        HashMap::from([(
            v["certificate_url"].as_str().unwrap().to_owned(),
            Arc::new(key),
        )])
    }

    fn verifier() -> SnsVerifier<CountingFetcher> {
        let v = vectors();
        let pinned = pinned();
        let topics = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["TopicArn"].as_str().unwrap().to_owned())
            .collect();
        SnsVerifier::new(
            CertificateCache::new(CountingFetcher::default(), pinned),
            topics,
        )
    }

    fn message(i: usize) -> Map<String, Value> {
        vectors()["messages"][i].as_object().unwrap().clone()
    }

    #[test]
    fn string_to_sign_matches_the_documented_bytes() {
        let parsed = parse_object(&message(0)).unwrap();
        assert_eq!(
            string_to_sign(&parsed),
            "Message\nHello world\nMessageId\n792cda85-518f-5dd3-9163-81d851212f3a\nTimestamp\n2022-07-28T21:23:58.317Z\nTopicArn\narn:aws:sns:us-east-2:295079676684:publish-and-verify-892f85fe-4836-424d-8188-ab85bef0f362\nType\nNotification\n"
        );
    }

    #[tokio::test]
    async fn every_real_aws_message_verifies_in_both_spellings() {
        let verifier = verifier();
        let count = vectors()["messages"].as_array().unwrap().len();
        assert_eq!(count, 6);
        for i in 0..count {
            let parsed = parse_object(&message(i)).unwrap();
            verifier
                .verify(&parsed)
                .await
                .unwrap_or_else(|e| panic!("message {i}: {e}"));
        }
        assert_eq!(
            verifier.certificates.fetcher().0.load(Ordering::SeqCst),
            0,
            "pinned, never fetched"
        );
    }

    #[tokio::test]
    async fn one_changed_byte_is_forbidden() {
        let verifier = verifier();
        for i in [0, 1] {
            for key in ["Message", "MessageId", "Timestamp", "TopicArn", "Signature"] {
                let mut tampered = message(i);
                let mut value = tampered[key].as_str().unwrap().as_bytes().to_vec();
                let at = value.len() / 2;
                value[at] = if value[at] == b'A' { b'B' } else { b'A' };
                tampered.insert(key.into(), Value::String(String::from_utf8(value).unwrap()));
                let result = match parse_object(&tampered) {
                    Ok(parsed) => verifier.verify(&parsed).await,
                    Err(e) => Err(e),
                };
                assert!(
                    matches!(result, Err(SnsError::Forbidden(_))),
                    "message {i}, {key}: {result:?}"
                );
            }
            // Adding a Subject changes the string to sign.
            let mut with_subject = message(i);
            with_subject.insert("Subject".into(), "Hello world".into());
            assert!(verifier
                .verify(&parse_object(&with_subject).unwrap())
                .await
                .is_err());
        }
    }

    #[tokio::test]
    async fn certificate_urls_off_sns_hosts_are_refused_without_a_fetch() {
        let verifier = verifier();
        for url in [
            "https://sns.us-east-2.amazonaws.com.evil.example/cert.pem",
            "http://sns.us-east-2.amazonaws.com/SimpleNotificationService-x.pem",
            "https://sns.us-east-2.amazonaws.com/SimpleNotificationService-x.txt",
            "https://evil.example/sns.us-east-2.amazonaws.com/x.pem",
            "https://user@sns.us-east-2.amazonaws.com/x.pem",
            "https://sns.us-east-2.amazonaws.com:8443/x.pem",
            "https://127.0.0.1/x.pem",
            "https://sns.s3-external-1.amazonaws.com/SimpleNotificationService-00ff.pem",
            "https://sns.us-east-2.amazonaws.com/SimpleNotificationService-00ff.pem?v=2",
            "https://sns.us-east-2.amazonaws.com/SimpleNotificationService-00ff.pem#x",
            "https://sns.us-east-2.amazonaws.com/SimpleNotificationService-.pem",
            "https://sns.us-east-2.amazonaws.com/SimpleNotificationService-zz.pem",
            "https://sns.us-east-2.amazonaws.com/a/SimpleNotificationService-00ff.pem",
            "https://sns.us-east-2.amazonaws.com:443/SimpleNotificationService-00ff.pem",
        ] {
            let mut m = message(0);
            m.insert("SigningCertURL".into(), url.into());
            let result = verifier.verify(&parse_object(&m).unwrap()).await;
            assert!(matches!(result, Err(SnsError::Forbidden(_))), "{url}");
        }
        assert_eq!(verifier.certificates.fetcher().0.load(Ordering::SeqCst), 0);
        // An allowed host that is not pinned is fetched; the fetch failing is "unavailable".
        let mut m = message(0);
        m.insert(
            "SigningCertURL".into(),
            "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-00ff.pem".into(),
        );
        let result = verifier.verify(&parse_object(&m).unwrap()).await;
        assert!(
            matches!(result, Err(SnsError::Unavailable(_))),
            "{result:?}"
        );
        assert_eq!(verifier.certificates.fetcher().0.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn unlisted_topics_are_refused() {
        let only_other = SnsVerifier::new(
            CertificateCache::new(CountingFetcher::default(), pinned()),
            vec!["arn:aws:sns:us-east-2:295079676684:another".into()],
        );
        let result = only_other.verify(&parse_object(&message(0)).unwrap()).await;
        assert_eq!(result, Err(SnsError::Forbidden("SNS topic is not allowed")));
    }

    #[test]
    fn sns_hosts() {
        assert!(is_sns_host("sns.us-east-1.amazonaws.com"));
        assert!(is_sns_host("sns.cn-north-1.amazonaws.com.cn"));
        assert!(!is_sns_host("sns.amazonaws.com"));
        assert!(!is_sns_host("sqs.us-east-1.amazonaws.com"));
        assert!(!is_sns_host("sns.us-east-1.amazonaws.com.evil.com"));
        assert!(!is_sns_host("sns.a.b.amazonaws.com"));
        assert!(is_sns_host("sns.us-gov-west-1.amazonaws.com"));
        assert!(
            !is_sns_host("sns.s3-external-1.amazonaws.com"),
            "an S3 host"
        );
        assert!(!is_sns_host("sns.useast1.amazonaws.com"));
        assert!(!is_sns_host("sns.US-EAST-1.amazonaws.com"));
    }

    #[test]
    fn incomplete_envelopes_are_not_verifiable() {
        assert!(parse(b"not json").is_err());
        let mut m = message(0);
        m.remove("Signature");
        assert!(parse_object(&m).is_err());
        let mut m = message(0);
        m.insert("Type".into(), "SubscriptionConfirmation".into());
        assert!(
            parse_object(&m).is_err(),
            "a confirmation needs SubscribeURL and Token"
        );
    }
}
