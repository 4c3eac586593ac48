//! Standard Webhooks v1 signatures (`docs/protocols.md` §6): `webhook-signature` is
//! `v1,` + base64(HMAC-SHA256(secret, "{webhook-id}.{webhook-timestamp}.{body}")), where the
//! key is the base64 part of the `whsec_` secret. During a secret rotation the header carries
//! one signature per secret, separated by spaces, and a receiver accepts any of them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::TryRngCore;
use sha2::{Digest, Sha256};
use std::fmt;
use std::time::Duration;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// The prefix of every secret, as the Standard Webhooks libraries write it.
pub const SECRET_PREFIX: &str = "whsec_";
/// Shorter keys are guessable offline from one signed message; longer ones gain nothing over
/// SHA-256's block size and only make headers and stores bigger.
pub const MIN_SECRET_BYTES: usize = 24;
pub const MAX_SECRET_BYTES: usize = 64;
/// What [`generate_secret`] draws.
pub const GENERATED_SECRET_BYTES: usize = 32;
/// The Standard Webhooks libraries' default: a signed message older or newer than this is a
/// replay or a broken clock.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("secret must start with {SECRET_PREFIX}")]
    MissingPrefix,
    #[error("secret is not base64 after {SECRET_PREFIX}")]
    NotBase64,
    #[error("secret must decode to {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, not {0}")]
    Length(usize),
    #[error("the operating system's random number generator failed: {0}")]
    Rng(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("webhook-timestamp is not an integer number of seconds")]
    BadTimestamp,
    #[error("webhook-timestamp is outside the tolerance")]
    Expired,
    #[error("webhook-signature holds no v1 signature")]
    NoSignature,
    #[error("no signature matches")]
    Mismatch,
}

/// A parsed signing secret: the decoded key, and the text it came from.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    text: String,
    key: Vec<u8>,
}

impl Secret {
    /// Parses `whsec_` + standard base64 (padding optional) of 24 to 64 bytes.
    pub fn parse(text: &str) -> Result<Secret, SecretError> {
        let encoded = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::MissingPrefix)?;
        let key = STANDARD
            .decode(encoded)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded))
            .map_err(|_| SecretError::NotBase64)?;
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
            return Err(SecretError::Length(key.len()));
        }
        Ok(Secret {
            text: text.to_owned(),
            key,
        })
    }

    /// The `whsec_...` form, for storing and for showing once at creation.
    pub fn expose(&self) -> &str {
        &self.text
    }

    fn mac(&self, msg_id: &str, timestamp: &str, body: &[u8]) -> [u8; 32] {
        // Any key length is valid for HMAC, so this cannot fail.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(whsec_***)")
    }
}

/// A fresh secret of [`GENERATED_SECRET_BYTES`] from the operating system's RNG.
pub fn generate_secret() -> Result<Secret, SecretError> {
    let mut key = vec![0u8; GENERATED_SECRET_BYTES];
    rand::rngs::OsRng
        .try_fill_bytes(&mut key)
        .map_err(|e| SecretError::Rng(e.to_string()))?;
    let text = format!("{SECRET_PREFIX}{}", STANDARD.encode(&key));
    Ok(Secret { text, key })
}

/// One signature: `v1,` + base64 of the HMAC. The timestamp is the header's text (Unix seconds).
pub fn sign(secret: &Secret, msg_id: &str, timestamp: &str, body: &[u8]) -> String {
    format!(
        "v1,{}",
        STANDARD.encode(secret.mac(msg_id, timestamp, body))
    )
}

/// The `webhook-signature` header value: one signature per secret, space-separated, in order.
pub fn sign_all(secrets: &[Secret], msg_id: &str, timestamp: &str, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|secret| sign(secret, msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks a received message as a receiver would: the timestamp within `tolerance` of `now`
/// (Unix seconds) either way, then any `v1` signature of the header against any secret, each
/// comparison in constant time. Other signature versions in the header are skipped.
pub fn verify(
    header: &str,
    secrets: &[Secret],
    msg_id: &str,
    timestamp: &str,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let sent: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if now.abs_diff(sent) > tolerance.unsigned_abs() {
        return Err(VerifyError::Expired);
    }
    let candidates: Vec<Vec<u8>> = header
        .split_ascii_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|encoded| STANDARD.decode(encoded).ok())
        .collect();
    if candidates.is_empty() {
        return Err(VerifyError::NoSignature);
    }
    let mut found = subtle::Choice::from(0);
    for secret in secrets {
        let expected = secret.mac(msg_id, timestamp, body);
        for candidate in &candidates {
            // Every pair is compared, so the time taken does not tell which one matched.
            found |= expected.as_slice().ct_eq(candidate.as_slice());
        }
    }
    if bool::from(found) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// The `webhook-id` of the delivery of one event to one subscription: the same on every retry
/// and replay, so that receivers can deduplicate, and different for any other pair.
pub fn webhook_id(subscription_name: &str, source: &str, event_id: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [subscription_name, source, event_id] {
        // Length prefixes keep ("a-b", "c") apart from ("a", "b-c").
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    format!("msg_{}", hex::encode(&digest[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const VECTORS: &str = include_str!("../tests/fixtures/standard-webhooks.json");

    struct Vector {
        secret: String,
        id: String,
        timestamp: String,
        body: String,
        signature: String,
    }

    fn vectors() -> Vec<Vector> {
        let doc: Value = serde_json::from_str(VECTORS).unwrap();
        let field = |v: &Value, name: &str| v[name].as_str().unwrap().to_owned();
        doc["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| Vector {
                secret: field(v, "secret"),
                id: field(v, "id"),
                timestamp: field(v, "timestamp"),
                body: field(v, "body"),
                signature: field(v, "signature"),
            })
            .collect()
    }

    #[test]
    fn signs_both_published_vectors() {
        let vectors = vectors();
        assert_eq!(vectors.len(), 2);
        for v in vectors {
            let secret = Secret::parse(&v.secret).unwrap();
            assert_eq!(
                sign(&secret, &v.id, &v.timestamp, v.body.as_bytes()),
                v.signature
            );
        }
    }

    #[test]
    fn verifies_both_published_vectors_and_rejects_tampering() {
        for v in vectors() {
            let secrets = [Secret::parse(&v.secret).unwrap()];
            let now: i64 = v.timestamp.parse().unwrap();
            let check = |header: &str, id: &str, body: &str| {
                verify(
                    header,
                    &secrets,
                    id,
                    &v.timestamp,
                    body.as_bytes(),
                    now,
                    DEFAULT_TOLERANCE,
                )
            };
            assert_eq!(check(&v.signature, &v.id, &v.body), Ok(()));
            let tampered_body = format!("{} ", v.body);
            assert_eq!(
                check(&v.signature, &v.id, &tampered_body),
                Err(VerifyError::Mismatch)
            );
            assert_eq!(
                check(&v.signature, "msg_other", &v.body),
                Err(VerifyError::Mismatch)
            );
        }
    }

    #[test]
    fn rotation_header_holds_every_signature_and_either_secret_verifies() {
        let v = &vectors()[0];
        let old = Secret::parse(&v.secret).unwrap();
        let new = generate_secret().unwrap();
        let header = sign_all(
            &[new.clone(), old.clone()],
            &v.id,
            &v.timestamp,
            v.body.as_bytes(),
        );
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1], v.signature);
        assert_ne!(parts[0], v.signature);
        let now: i64 = v.timestamp.parse().unwrap();
        for secret in [old, new] {
            assert_eq!(
                verify(
                    &header,
                    &[secret],
                    &v.id,
                    &v.timestamp,
                    v.body.as_bytes(),
                    now,
                    DEFAULT_TOLERANCE
                ),
                Ok(())
            );
        }
    }

    #[test]
    fn verify_checks_the_timestamp_window_both_ways() {
        let v = &vectors()[1];
        let secrets = [Secret::parse(&v.secret).unwrap()];
        let sent: i64 = v.timestamp.parse().unwrap();
        let at = |now: i64| {
            verify(
                &v.signature,
                &secrets,
                &v.id,
                &v.timestamp,
                v.body.as_bytes(),
                now,
                Duration::from_secs(300),
            )
        };
        assert_eq!(at(sent + 300), Ok(()));
        assert_eq!(at(sent - 300), Ok(()));
        assert_eq!(at(sent + 301), Err(VerifyError::Expired));
        assert_eq!(at(sent - 301), Err(VerifyError::Expired));
        assert_eq!(
            verify(
                &v.signature,
                &secrets,
                &v.id,
                "soon",
                b"",
                sent,
                DEFAULT_TOLERANCE
            ),
            Err(VerifyError::BadTimestamp)
        );
    }

    #[test]
    fn verify_skips_other_versions_and_garbage() {
        let v = &vectors()[0];
        let secrets = [Secret::parse(&v.secret).unwrap()];
        let now: i64 = v.timestamp.parse().unwrap();
        let run = |header: &str| {
            verify(
                header,
                &secrets,
                &v.id,
                &v.timestamp,
                v.body.as_bytes(),
                now,
                DEFAULT_TOLERANCE,
            )
        };
        assert_eq!(run("v1a,abc v2,xyz"), Err(VerifyError::NoSignature));
        assert_eq!(run(""), Err(VerifyError::NoSignature));
        assert_eq!(run("v1,!!notbase64"), Err(VerifyError::NoSignature));
        assert_eq!(
            run(&format!("v2,zzz v1,AAAA {}", v.signature)),
            Ok(()),
            "a later valid v1 signature still counts"
        );
        assert_eq!(run("v1,AAAA"), Err(VerifyError::Mismatch));
    }

    #[test]
    fn secrets_are_validated() {
        assert_eq!(
            Secret::parse("C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
            Err(SecretError::MissingPrefix)
        );
        assert_eq!(
            Secret::parse("whsec_not base64!"),
            Err(SecretError::NotBase64)
        );
        // 23 and 65 bytes are just outside the range; 24 and 64 inside.
        let of = |n: usize| format!("whsec_{}", STANDARD.encode(vec![7u8; n]));
        assert_eq!(Secret::parse(&of(23)), Err(SecretError::Length(23)));
        assert_eq!(Secret::parse(&of(65)), Err(SecretError::Length(65)));
        assert!(Secret::parse(&of(24)).is_ok());
        assert!(Secret::parse(&of(64)).is_ok());
        // Unpadded base64 is accepted too (some generators drop the padding).
        let unpadded = format!(
            "whsec_{}",
            STANDARD.encode(vec![1u8; 32]).trim_end_matches('=')
        );
        assert!(Secret::parse(&unpadded).is_ok());
    }

    #[test]
    fn generated_secrets_parse_and_differ() {
        let a = generate_secret().unwrap();
        let b = generate_secret().unwrap();
        assert_ne!(a.expose(), b.expose());
        let again = Secret::parse(a.expose()).unwrap();
        assert_eq!(again.key.len(), GENERATED_SECRET_BYTES);
        assert_eq!(again, a);
        assert!(!format!("{a:?}").contains(&a.expose()[6..]));
    }

    #[test]
    fn webhook_id_is_stable_per_pair_and_distinct_otherwise() {
        let id = webhook_id("slack", "stack", "e-1");
        assert_eq!(id, webhook_id("slack", "stack", "e-1"));
        assert!(id.starts_with("msg_"));
        assert_eq!(id.len(), 4 + 32);
        assert_ne!(id, webhook_id("slack", "stack", "e-2"));
        assert_ne!(id, webhook_id("slack2", "stack", "e-1"));
        assert_ne!(id, webhook_id("slack", "s3", "e-1"));
        assert_ne!(
            webhook_id("a-b", "s3", "c"),
            webhook_id("a", "b-s3", "c"),
            "parts are length-prefixed"
        );
    }
}
