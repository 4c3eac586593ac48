//! Signing certificates for SNS and MNS: fetched over HTTPS only from allow-listed URLs (the
//! caller checks the URL before asking), cached for the life of the process, or pinned from
//! `PINNED_CERTS_FILE` and never fetched. Validity periods are not enforced: both AWS's SNS
//! certificates and MNS's certificate are used after their printed expiry.

use crate::config::{ConfigError, Vars};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use rsa::pkcs8::DecodePublicKey;
use rsa::RsaPublicKey;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::RwLock;
use x509_cert::der::{DecodePem, Encode};
use x509_cert::Certificate;

/// A certificate larger than this is not a signing certificate.
const MAX_CERT_BYTES: usize = 64 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("certificate could not be fetched: {0}")]
    Unreachable(String),
    #[error("certificate is not a PEM X.509 certificate with an RSA key")]
    Invalid,
}

/// Fetches a URL's body. The HTTPS implementation is [`HttpsFetcher`]; tests inject their own.
pub trait Fetcher: Send + Sync {
    fn get(&self, url: &str) -> impl Future<Output = Result<(u16, Bytes), CertError>> + Send;
}

type HttpsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<Bytes>,
>;

/// HTTPS GET with the system trust store, a timeout and a size cap. Plain HTTP is refused.
///
/// The trust store is read on the first fetch, not at start: reading it (hundreds of files under
/// `/etc/ssl/certs`) took milliseconds of every start, and pinned certificates never need it.
#[derive(Clone, Default)]
pub struct HttpsFetcher {
    client: Arc<OnceLock<Result<HttpsClient, String>>>,
}

impl HttpsFetcher {
    pub fn new() -> Self {
        HttpsFetcher::default()
    }

    fn client(&self) -> Result<&HttpsClient, CertError> {
        self.client
            .get_or_init(|| {
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
                    .map_err(|e| format!("no trust roots: {e}"))?
                    .https_only()
                    .enable_http1()
                    .build();
                Ok(
                    hyper_util::client::legacy::Client::builder(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .build(connector),
                )
            })
            .as_ref()
            .map_err(|e| CertError::Unreachable(e.clone()))
    }
}

impl Fetcher for HttpsFetcher {
    async fn get(&self, url: &str) -> Result<(u16, Bytes), CertError> {
        let uri: http::Uri = url
            .parse()
            .map_err(|_| CertError::Unreachable("bad URL".into()))?;
        let client = self.client()?;
        let request = async {
            let response = client
                .get(uri)
                .await
                .map_err(|e| CertError::Unreachable(e.to_string()))?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_CERT_BYTES)
                .collect()
                .await
                .map_err(|e| CertError::Unreachable(e.to_string()))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(FETCH_TIMEOUT, request)
            .await
            .map_err(|_| CertError::Unreachable("timed out".into()))?
    }
}

/// The RSA public key of a PEM certificate. Validity dates are deliberately not checked.
pub fn public_key_from_pem(pem: &[u8]) -> Result<RsaPublicKey, CertError> {
    let certificate = Certificate::from_pem(pem).map_err(|_| CertError::Invalid)?;
    let spki = certificate
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|_| CertError::Invalid)?;
    RsaPublicKey::from_public_key_der(&spki).map_err(|_| CertError::Invalid)
}

/// `PINNED_CERTS_FILE`: a JSON object mapping certificate URL to PEM text. A file that is named
/// but unreadable or invalid stops the function at start.
pub fn pinned_from_vars(
    vars: &impl Vars,
) -> Result<HashMap<String, Arc<RsaPublicKey>>, ConfigError> {
    let Some(path) = vars.get("PINNED_CERTS_FILE") else {
        return Ok(HashMap::new());
    };
    let invalid = |reason: String| ConfigError::Invalid {
        name: "PINNED_CERTS_FILE",
        reason,
    };
    let text =
        std::fs::read_to_string(&path).map_err(|e| invalid(format!("cannot read {path}: {e}")))?;
    let map: HashMap<String, String> = serde_json::from_str(&text)
        .map_err(|_| invalid("not a JSON object of URL to PEM text".into()))?;
    map.into_iter()
        .map(|(url, pem)| {
            let key =
                public_key_from_pem(pem.as_bytes()).map_err(|e| invalid(format!("{url}: {e}")))?;
            Ok((url, Arc::new(key)))
        })
        .collect()
}

/// The cache a function builds at start: `PINNED_CERTS_FILE`, and HTTPS fetches (cached for the
/// life of the process) for certificates that are not pinned.
pub fn cache_from_vars(vars: &impl Vars) -> Result<CertificateCache<HttpsFetcher>, ConfigError> {
    let pinned = pinned_from_vars(vars)?;
    Ok(CertificateCache::new(HttpsFetcher::new(), pinned))
}

/// Keys by certificate URL: pinned ones first, then ones fetched once and kept.
pub struct CertificateCache<F> {
    pinned: HashMap<String, Arc<RsaPublicKey>>,
    fetched: RwLock<HashMap<String, Arc<RsaPublicKey>>>,
    fetcher: F,
}

impl<F: Fetcher> CertificateCache<F> {
    pub fn new(fetcher: F, pinned: HashMap<String, Arc<RsaPublicKey>>) -> Self {
        CertificateCache {
            pinned,
            fetched: RwLock::new(HashMap::new()),
            fetcher,
        }
    }

    pub fn fetcher(&self) -> &F {
        &self.fetcher
    }

    /// The key of an already allow-listed certificate URL.
    pub async fn public_key(&self, url: &str) -> Result<Arc<RsaPublicKey>, CertError> {
        if let Some(key) = self.pinned.get(url) {
            return Ok(key.clone());
        }
        if let Some(key) = self.fetched.read().await.get(url) {
            return Ok(key.clone());
        }
        let (status, body) = self.fetcher.get(url).await?;
        if status != 200 {
            return Err(CertError::Unreachable(format!("HTTP {status}")));
        }
        let key = Arc::new(public_key_from_pem(&body)?);
        tracing::info!(url, "signing certificate fetched and cached");
        self.fetched
            .write()
            .await
            .insert(url.to_owned(), key.clone());
        Ok(key)
    }
}

/// A fetcher for tests: records every URL asked for and answers from a table (404 otherwise).
#[cfg(any(test, feature = "test-util"))]
pub mod testing {
    use super::{CertError, Fetcher};
    use bytes::Bytes;
    use std::collections::HashMap;
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct FakeFetcher {
        requests: Mutex<Vec<String>>,
        responses: Mutex<HashMap<String, (u16, Bytes)>>,
    }

    impl FakeFetcher {
        pub fn new() -> Self {
            Self::default()
        }

        pub fn respond(&self, url: &str, status: u16, body: &str) {
            self.responses.lock().unwrap().insert(
                url.to_owned(),
                (status, Bytes::copy_from_slice(body.as_bytes())),
            );
        }

        pub fn requests(&self) -> Vec<String> {
            self.requests.lock().unwrap().clone()
        }
    }

    impl Fetcher for FakeFetcher {
        async fn get(&self, url: &str) -> Result<(u16, Bytes), CertError> {
            self.requests.lock().unwrap().push(url.to_owned());
            let response = self.responses.lock().unwrap().get(url).cloned();
            Ok(response.unwrap_or((404, Bytes::new())))
        }
    }

    impl<T: Fetcher> Fetcher for std::sync::Arc<T> {
        async fn get(&self, url: &str) -> Result<(u16, Bytes), CertError> {
            (**self).get(url).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const SNS_PEM: &str = include_str!("../tests/fixtures/rsa-cert.pem");

    struct Counting {
        calls: AtomicUsize,
        body: &'static str,
    }

    impl Fetcher for Counting {
        async fn get(&self, _url: &str) -> Result<(u16, Bytes), CertError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok((200, Bytes::from_static(self.body.as_bytes())))
        }
    }

    #[test]
    fn expired_certificates_still_give_their_key() {
        let key = public_key_from_pem(SNS_PEM.as_bytes()).unwrap();
        assert_eq!(rsa::traits::PublicKeyParts::size(&key), 256);
        assert_eq!(
            public_key_from_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            Err(CertError::Invalid)
        );
    }

    #[tokio::test]
    async fn fetched_once_then_cached_and_pinned_never_fetched() {
        let fetcher = Counting {
            calls: AtomicUsize::new(0),
            body: SNS_PEM,
        };
        let mut pinned = HashMap::new();
        pinned.insert(
            "https://pinned/x.pem".to_owned(),
            Arc::new(public_key_from_pem(SNS_PEM.as_bytes()).unwrap()),
        );
        let cache = CertificateCache::new(fetcher, pinned);
        cache.public_key("https://pinned/x.pem").await.unwrap();
        assert_eq!(cache.fetcher.calls.load(Ordering::SeqCst), 0);
        for _ in 0..3 {
            cache
                .public_key("https://sns.us-east-1.amazonaws.com/a.pem")
                .await
                .unwrap();
        }
        assert_eq!(cache.fetcher.calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn pinned_file_errors_name_the_variable() {
        let err = pinned_from_vars(&[("PINNED_CERTS_FILE", "/nonexistent/pins.json")]).unwrap_err();
        assert_eq!(err.variable(), "PINNED_CERTS_FILE");
        assert!(pinned_from_vars(&[("X", "y")]).unwrap().is_empty());
    }
}
