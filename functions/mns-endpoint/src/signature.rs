//! MNS HTTP push signatures (`docs/protocols.md` §4.2): the string to sign, the signing-certificate
//! URL allow-list, and RSA PKCS#1 v1.5 with SHA-1 over a key that may be 512 bits.
//!
//! The signature is checked, but it is not what keeps attackers out: the key is MNS-wide and
//! 512-bit (§4.5). The endpoint token and topic allow-list (`access.rs`) are the authentication.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::HeaderMap;
use ring::signature::{RsaPublicKeyComponents, RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY};
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Sign, RsaPublicKey};
use sha1::{Digest, Sha1};

/// The one certificate URL known to be in use (the 2023 push of §7.5 and every SDK sample): an
/// exact URL, not the bucket, because the sender chooses the URL and a bucket may hold other keys
/// (the `mnstest` bucket holds this 512-bit one; nobody can say what else it or the regional
/// `mns-cert` buckets will hold). Operators add other URLs with `MNS_CERT_URL_PREFIXES`.
pub const DEFAULT_CERT_URLS: [&str; 1] =
    ["https://mnstest.oss-cn-hangzhou.aliyuncs.com/x509_public_certificate.pem"];

/// MNS's own key is 512 bits (§4.2); nothing smaller is a signing key.
pub const MIN_KEY_BITS: usize = 512;

/// From this size on, ring checks the signature: its modular arithmetic is about 30 times
/// cheaper than the `rsa` crate's (BENCHMARKS.md, `mns/verify-1024`), and ring refuses keys
/// under 1024 bits, so MNS's own 512-bit key stays with the `rsa` crate.
const RING_MIN_KEY_BITS: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("x-mns-signing-cert-url is not base64 of a URL")]
    BadCertUrl,
    #[error("signing certificate URL is not allowed")]
    CertUrlNotAllowed,
    #[error("Authorization is not a base64 signature")]
    BadAuthorization,
    #[error("signature mismatch")]
    Mismatch,
    #[error("signing key is too small")]
    WeakKey,
    #[error("Date is missing, unreadable, or outside the allowed age")]
    Stale,
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `METHOD\nContent-MD5\nContent-Type\nDate\n` + every `x-mns-*` header (lowercased, sorted,
/// `name:value\n`) + the resource as received.
pub fn string_to_sign(
    method: &str,
    headers: &HeaderMap,
    resource: &str,
) -> Result<String, SignatureError> {
    let date = header(headers, "date")
        .or_else(|| header(headers, "x-mns-date"))
        .ok_or(SignatureError::MissingHeader("Date"))?;
    let mut mns: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-mns-"))
        .map(|(name, value)| (name.as_str(), value.to_str().unwrap_or_default()))
        .collect();
    // http's names are already lowercase.
    mns.sort_unstable();
    let mut out = String::with_capacity(256 + resource.len());
    out.push_str(&method.to_ascii_uppercase());
    out.push('\n');
    out.push_str(header(headers, "content-md5").unwrap_or_default());
    out.push('\n');
    out.push_str(header(headers, "content-type").unwrap_or_default());
    out.push('\n');
    out.push_str(date);
    out.push('\n');
    for (name, value) in mns {
        out.push_str(name);
        out.push(':');
        out.push_str(value);
        out.push('\n');
    }
    out.push_str(resource);
    Ok(out)
}

/// Whether `url` starts with `prefix`, where a `*` in the prefix matches one region name.
fn matches_prefix(url: &str, prefix: &str) -> bool {
    match prefix.split_once('*') {
        None => url.starts_with(prefix),
        Some((head, tail)) => {
            let Some(rest) = url.strip_prefix(head) else {
                return false;
            };
            let region_len = rest
                .bytes()
                .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
                .count();
            region_len > 0 && rest[region_len..].starts_with(tail)
        }
    }
}

/// An entry ending in `/` is a prefix (where `*` stands for one region name); any other entry is
/// an exact URL and matches only itself.
fn matches_entry(url: &str, entry: &str) -> bool {
    if entry.ends_with('/') {
        matches_prefix(url, entry)
    } else {
        url == entry
    }
}

/// Checks one configured allow-list entry: `https://<host>/…`, so that it can never match another
/// host; no userinfo, query or fragment; `*` only in a prefix's host.
pub fn check_allow_list_entry(entry: &str) -> Result<(), String> {
    let host_ends = entry
        .strip_prefix("https://")
        .and_then(|rest| rest.find('/'));
    let Some(host_len) = host_ends.filter(|i| *i > 0) else {
        return Err(format!("{entry:?} must be https://<host>/…"));
    };
    if entry.contains(['@', '\\', '#', '?']) || entry.contains("/../") {
        return Err(format!(
            "{entry:?} must not contain @, \\, #, ? or /../ (exact URLs match without a query)"
        ));
    }
    let path = &entry["https://".len() + host_len..];
    if path.contains('*') || (!entry.ends_with('/') && entry.contains('*')) {
        return Err(format!(
            "{entry:?}: * stands only for a region in a prefix's host"
        ));
    }
    Ok(())
}

/// The certificate URL from `x-mns-signing-cert-url`, upgraded to https (old pushes named an
/// http URL; the certificate is fetched over https all the same), if the allow-list covers it.
pub fn cert_url(headers: &HeaderMap, allowed: &[String]) -> Result<String, SignatureError> {
    let encoded = header(headers, "x-mns-signing-cert-url")
        .ok_or(SignatureError::MissingHeader("x-mns-signing-cert-url"))?;
    let decoded = STANDARD
        .decode(encoded.trim())
        .map_err(|_| SignatureError::BadCertUrl)?;
    let url = String::from_utf8(decoded).map_err(|_| SignatureError::BadCertUrl)?;
    let url = match url.strip_prefix("http://") {
        Some(rest) => format!("https://{rest}"),
        None => url,
    };
    if url.contains(['@', '\\', '#', '?']) || url.contains("/../") {
        return Err(SignatureError::CertUrlNotAllowed);
    }
    if allowed.iter().any(|entry| matches_entry(&url, entry)) {
        Ok(url)
    } else {
        Err(SignatureError::CertUrlNotAllowed)
    }
}

/// Checks `Authorization` (the bare base64 signature) over the string to sign.
pub fn verify(
    key: &RsaPublicKey,
    string_to_sign: &str,
    authorization: &str,
) -> Result<(), SignatureError> {
    if key.n().bits() < MIN_KEY_BITS {
        return Err(SignatureError::WeakKey);
    }
    let signature = STANDARD
        .decode(authorization.trim())
        .map_err(|_| SignatureError::BadAuthorization)?;
    let verified = if key.n().bits() >= RING_MIN_KEY_BITS {
        let (modulus, exponent) = (key.n().to_bytes_be(), key.e().to_bytes_be());
        RsaPublicKeyComponents {
            n: &modulus,
            e: &exponent,
        }
        .verify(
            &RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
            string_to_sign.as_bytes(),
            &signature,
        )
        .is_ok()
    } else {
        key.verify(
            Pkcs1v15Sign::new::<Sha1>(),
            &Sha1::digest(string_to_sign.as_bytes()),
            &signature,
        )
        .is_ok()
    };
    if verified {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// `Date` (or `x-mns-date`) within `max_age_secs` of now, either way; 0 disables the check.
pub fn check_age(
    headers: &HeaderMap,
    now: chrono::DateTime<chrono::Utc>,
    max_age_secs: u64,
) -> Result<(), SignatureError> {
    if max_age_secs == 0 {
        return Ok(());
    }
    let text = header(headers, "date")
        .or_else(|| header(headers, "x-mns-date"))
        .ok_or(SignatureError::Stale)?;
    let date = chrono::DateTime::parse_from_rfc2822(text).map_err(|_| SignatureError::Stale)?;
    let age = (now - date.with_timezone(&chrono::Utc))
        .num_seconds()
        .unsigned_abs();
    if age <= max_age_secs {
        Ok(())
    } else {
        Err(SignatureError::Stale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};
    use hub_core::certs::public_key_from_pem;
    use serde_json::Value;

    fn vector() -> Value {
        serde_json::from_str(include_str!("../tests/fixtures/mns-vector.json")).unwrap()
    }

    fn headers(v: &Value) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in v["headers"].as_object().unwrap() {
            map.insert(
                HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).unwrap(),
                HeaderValue::from_str(value.as_str().unwrap()).unwrap(),
            );
        }
        map
    }

    fn defaults() -> Vec<String> {
        DEFAULT_CERT_URLS.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn the_real_2023_push_verifies_with_its_512_bit_expired_certificate() {
        let v = vector();
        let headers = headers(&v);
        let text = string_to_sign("POST", &headers, v["path"].as_str().unwrap()).unwrap();
        assert_eq!(text, v["expected_string_to_sign"].as_str().unwrap());
        let key = public_key_from_pem(v["certificate_pem"].as_str().unwrap().as_bytes()).unwrap();
        assert_eq!(rsa::traits::PublicKeyParts::size(&key), 64, "512-bit");
        verify(&key, &text, v["headers"]["Authorization"].as_str().unwrap()).unwrap();
        assert_eq!(
            cert_url(&headers, &defaults()).unwrap(),
            v["certificate_url"].as_str().unwrap()
        );
    }

    #[test]
    fn one_changed_byte_of_any_signed_header_or_the_path_fails() {
        let v = vector();
        let key = public_key_from_pem(v["certificate_pem"].as_str().unwrap().as_bytes()).unwrap();
        let authorization = v["headers"]["Authorization"].as_str().unwrap();
        for name in v["headers"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|n| *n != "Authorization")
        {
            let mut headers = headers(&v);
            let value = headers[name.to_ascii_lowercase().as_str()]
                .to_str()
                .unwrap()
                .to_owned();
            let mut bytes = value.into_bytes();
            bytes[0] = if bytes[0] == b'A' { b'B' } else { b'A' };
            headers.insert(
                HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).unwrap(),
                HeaderValue::from_bytes(&bytes).unwrap(),
            );
            let text = string_to_sign("POST", &headers, "/notifications").unwrap();
            assert_eq!(
                verify(&key, &text, authorization),
                Err(SignatureError::Mismatch),
                "{name}"
            );
        }
        let text = string_to_sign("POST", &headers(&v), "/notificationz").unwrap();
        assert_eq!(
            verify(&key, &text, authorization),
            Err(SignatureError::Mismatch)
        );
        // An x-mns header added on the way is signed-over too.
        let mut extra = headers(&v);
        extra.insert("x-mns-extra", HeaderValue::from_static("1"));
        let text = string_to_sign("POST", &extra, "/notifications").unwrap();
        assert_eq!(
            verify(&key, &text, authorization),
            Err(SignatureError::Mismatch)
        );
    }

    fn encode(url: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "x-mns-signing-cert-url",
            HeaderValue::from_str(&STANDARD.encode(url)).unwrap(),
        );
        h
    }

    #[test]
    fn the_default_allow_list_is_the_one_known_certificate_url_exactly() {
        let known = "https://mnstest.oss-cn-hangzhou.aliyuncs.com/x509_public_certificate.pem";
        assert_eq!(cert_url(&encode(known), &defaults()).unwrap(), known);
        assert_eq!(
            cert_url(
                &encode("http://mnstest.oss-cn-hangzhou.aliyuncs.com/x509_public_certificate.pem"),
                &defaults()
            )
            .unwrap(),
            known,
            "old pushes name http://; fetched over https"
        );
        // Other objects of the same buckets were accepted before: the sender picks the URL, and
        // a bucket may hold any key (S2).
        for bad in [
            "https://mnstest.oss-cn-hangzhou.aliyuncs.com/other.pem",
            "https://mnstest.oss-cn-hangzhou.aliyuncs.com/x509_public_certificate.pem/",
            "https://mnstest.oss-cn-hangzhou.aliyuncs.com/x509_public_certificate.pem?v=2",
            "https://mnstest.oss-cn-hangzhou.aliyuncs.com/x509_public_certificate.pem#x",
            "https://mnstest.oss-cn-hangzhou.aliyuncs.com/x509_public_certificate.pemx",
            "https://mnstest.oss-cn-hangzhou.aliyuncs.com/a/../x509_public_certificate.pem",
            "https://mnstest.oss-cn-hangzhou.aliyuncs.com//x509_public_certificate.pem",
            "https://MNSTEST.oss-cn-hangzhou.aliyuncs.com/x509_public_certificate.pem",
            "https://mns-cert.oss-cn-beijing.aliyuncs.com/x509_public_certificate.pem",
            "https://mns-cert.oss-cn-beijing.aliyuncs.com/c.pem",
            "https://mnstest.oss-cn-hangzhou.aliyuncs.com.evil.com/x509_public_certificate.pem",
            "https://mnstest.oss-cn-hangzhou.aliyuncs.com@evil.com/x509_public_certificate.pem",
            "ftp://mnstest.oss-cn-hangzhou.aliyuncs.com/x509_public_certificate.pem",
        ] {
            assert_eq!(
                cert_url(&encode(bad), &defaults()),
                Err(SignatureError::CertUrlNotAllowed),
                "{bad}"
            );
        }
    }

    #[test]
    fn configured_prefixes_and_region_wildcards() {
        let allowed = [
            "https://mns-cert.oss-*.aliyuncs.com/".to_owned(),
            "https://certs.example.com/mns/".to_owned(),
        ];
        for ok in [
            "https://mns-cert.oss-cn-beijing.aliyuncs.com/c.pem",
            "https://certs.example.com/mns/a.pem",
        ] {
            assert_eq!(cert_url(&encode(ok), &allowed).unwrap(), ok);
        }
        for bad in [
            "https://mns-cert.oss-.aliyuncs.com/c.pem",
            "https://mns-cert.oss-cn.evil.com/.aliyuncs.com/c.pem",
            "https://evil.com/https://certs.example.com/mns/a.pem",
            "https://certs.example.com/mnsa.pem",
            "https://certs.example.com/mns/a.pem?x=1",
        ] {
            assert_eq!(
                cert_url(&encode(bad), &allowed),
                Err(SignatureError::CertUrlNotAllowed),
                "{bad}"
            );
        }
        let mut garbage = HeaderMap::new();
        garbage.insert("x-mns-signing-cert-url", HeaderValue::from_static("%%%"));
        assert_eq!(
            cert_url(&garbage, &defaults()),
            Err(SignatureError::BadCertUrl)
        );
        assert_eq!(
            cert_url(&HeaderMap::new(), &defaults()),
            Err(SignatureError::MissingHeader("x-mns-signing-cert-url"))
        );
    }

    /// The 1024-bit test key of `events/keys` (ring's path) and the 512-bit real one (the `rsa`
    /// crate's) accept the same signatures and refuse the same tamperings.
    #[test]
    fn both_key_sizes_accept_only_their_own_signature_over_the_exact_text() {
        use rsa::pkcs8::DecodePrivateKey;
        let private = rsa::RsaPrivateKey::from_pkcs8_pem(include_str!(
            "../../../events/keys/mns-test-key.pem"
        ))
        .unwrap();
        let key =
            public_key_from_pem(include_bytes!("../../../events/keys/mns-test-cert.pem")).unwrap();
        assert_eq!(key.n().bits(), 1024, "the ring path");
        let sign = |text: &str| {
            let digest = Sha1::digest(text.as_bytes());
            STANDARD.encode(private.sign(Pkcs1v15Sign::new::<Sha1>(), &digest).unwrap())
        };
        let text = "POST\n\ntext/xml\nFri, 01 Mar 2024 12:00:00 GMT\nx-mns-version:2015-06-06\n/n";
        let good = sign(text);
        assert_eq!(verify(&key, text, &good), Ok(()));
        assert_eq!(
            verify(&key, &format!("{text}x"), &good),
            Err(SignatureError::Mismatch)
        );
        let mut flipped = STANDARD.decode(&good).unwrap();
        flipped[64] ^= 1;
        let flipped = STANDARD.encode(&flipped);
        assert_eq!(verify(&key, text, &flipped), Err(SignatureError::Mismatch));
        let short = STANDARD.encode(&STANDARD.decode(&good).unwrap()[1..]);
        assert_eq!(verify(&key, text, &short), Err(SignatureError::Mismatch));
        assert_eq!(
            verify(&key, text, "%%%"),
            Err(SignatureError::BadAuthorization)
        );

        // The real 512-bit key refuses the 1024-bit key's signature, and the other way round.
        let v = vector();
        let real = public_key_from_pem(v["certificate_pem"].as_str().unwrap().as_bytes()).unwrap();
        assert_eq!(verify(&real, text, &good), Err(SignatureError::Mismatch));
        let real_text = string_to_sign("POST", &headers(&v), "/notifications").unwrap();
        let real_signature = v["headers"]["Authorization"].as_str().unwrap();
        assert_eq!(verify(&real, &real_text, real_signature), Ok(()));
        assert_eq!(
            verify(&key, &real_text, real_signature),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn keys_under_512_bits_are_refused() {
        // A 256-bit modulus: whatever the signature, it is not MNS's key.
        let n = rsa::BigUint::parse_bytes(
            b"c5a3d6f2e1b4978a0c3d5e7f9b1a2c4d6e8f0a1b3c5d7e9f1a2b4c6d8e0f1a3b",
            16,
        )
        .unwrap();
        let key = RsaPublicKey::new(n, rsa::BigUint::from(65_537u32)).unwrap();
        assert_eq!(
            verify(&key, "text", &STANDARD.encode([1u8; 32])),
            Err(SignatureError::WeakKey)
        );
    }

    #[test]
    fn date_age() {
        let mut h = HeaderMap::new();
        h.insert(
            "date",
            HeaderValue::from_static("Wed, 29 Mar 2023 08:41:27 GMT"),
        );
        let at = chrono::DateTime::parse_from_rfc2822("Wed, 29 Mar 2023 08:50:00 GMT")
            .unwrap()
            .to_utc();
        assert!(check_age(&h, at, 900).is_ok());
        assert_eq!(check_age(&h, at, 60), Err(SignatureError::Stale));
        assert!(
            check_age(&h, at + chrono::Duration::days(365), 0).is_ok(),
            "0 disables"
        );
        assert_eq!(
            check_age(&HeaderMap::new(), at, 900),
            Err(SignatureError::Stale)
        );
    }
}
