//! Senders' signing certificates: fetched over HTTPS only from allow-listed URLs (the
//! caller checks the URL before asking), cached for the life of the process, or pinned from
//! `PINNED_CERTS_FILE` and never fetched. Validity periods are not enforced: senders' signing
//! certificates are used after their printed expiry (`docs/protocols.md` §8).

use crate::config::{ConfigError, Vars};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use rsa::pkcs8::DecodePublicKey;
use rsa::RsaPublicKey;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::time::Instant;
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

/// HTTPS GET with the process's trust roots ([`crate::tls`]), a timeout and a size cap. Plain
/// HTTP is refused. The client is built on the first fetch: pinned certificates never need it.
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
                let tls = crate::tls::client_config().map_err(|e| e.to_string())?;
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls)
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
        let fetch = async {
            tokio::time::timeout(FETCH_TIMEOUT, request)
                .await
                .map_err(|_| CertError::Unreachable("timed out".into()))?
        };
        // A fetch is a subsegment of a sampled request: a slow certificate host shows in X-Ray.
        crate::telemetry::xray::remote(url, fetch, |result| {
            result.as_ref().ok().map(|(status, _)| *status)
        })
        .await
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

/// Whether `pem` is framed as one PEM `CERTIFICATE` block. Only the boundaries are read: the
/// body's base64 (decoded in constant time by the PEM crate, about 140 instructions a byte) and
/// the X.509 inside it are left to [`public_key_from_pem`].
fn is_pem_certificate(pem: &[u8]) -> bool {
    x509_cert::der::pem::decode_label(pem) == Ok("CERTIFICATE")
}

/// Certificates pinned by URL. Keys given parsed (tests) are served as they are; certificates
/// read from `PINNED_CERTS_FILE` have their PEM framing checked at start and their key read on
/// first use (`bench/changes.md`, item 14: two pinned certificates cost 0.45 million
/// instructions at init, in every function that is configured with them, whether or not its
/// first request, or any, is from a sender they verify).
#[derive(Default)]
pub struct PinnedCertificates(HashMap<String, Pin>);

enum Pin {
    Key(Arc<RsaPublicKey>),
    Certificate {
        pem: String,
        key: OnceLock<Result<Arc<RsaPublicKey>, CertError>>,
    },
}

impl From<HashMap<String, Arc<RsaPublicKey>>> for PinnedCertificates {
    fn from(keys: HashMap<String, Arc<RsaPublicKey>>) -> Self {
        PinnedCertificates(
            keys.into_iter()
                .map(|(url, key)| (url, Pin::Key(key)))
                .collect(),
        )
    }
}

impl PinnedCertificates {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `None` when `url` is not pinned. A pinned certificate without a usable RSA key is the
    /// operator's error, not the sender's: it is answered as unavailable (retried by the
    /// sender, logged here), never as a bad signature and never by fetching the URL instead.
    fn key(&self, url: &str) -> Option<Result<Arc<RsaPublicKey>, CertError>> {
        match self.0.get(url)? {
            Pin::Key(key) => Some(Ok(key.clone())),
            Pin::Certificate { pem, key } => Some(
                key.get_or_init(|| {
                    public_key_from_pem(pem.as_bytes())
                        .map(Arc::new)
                        .map_err(|_| {
                            tracing::error!(
                                url,
                                "PINNED_CERTS_FILE: no RSA key in this certificate"
                            );
                            CertError::Unreachable("pinned certificate has no RSA key".into())
                        })
                })
                .clone(),
            ),
        }
    }
}

/// `PINNED_CERTS_FILE`: a JSON object mapping certificate URL to PEM text. A file that is named
/// but unreadable, not such an object, or with a value not framed as a PEM certificate stops the
/// function at start; each key is read from its certificate on first use.
pub fn pinned_from_vars(vars: &impl Vars) -> Result<PinnedCertificates, ConfigError> {
    let Some(path) = vars.get("PINNED_CERTS_FILE") else {
        return Ok(PinnedCertificates::default());
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
            if !is_pem_certificate(pem.as_bytes()) {
                return Err(invalid(format!("{url}: {}", CertError::Invalid)));
            }
            let pin = Pin::Certificate {
                pem,
                key: OnceLock::new(),
            };
            Ok((url, pin))
        })
        .collect::<Result<_, _>>()
        .map(PinnedCertificates)
}

/// The cache a function builds at start: `PINNED_CERTS_FILE`, and HTTPS fetches (cached for the
/// life of the process) for certificates that are not pinned.
pub fn cache_from_vars(vars: &impl Vars) -> Result<CertificateCache<HttpsFetcher>, ConfigError> {
    let pinned = pinned_from_vars(vars)?;
    Ok(CertificateCache::new(HttpsFetcher::new(), pinned))
}

/// How many fetched certificates (or recent failures) are kept. A sender signs with one
/// certificate at a time (two around a rotation), so a handful is plenty, and a sender that
/// varies the URL cannot grow the cache.
pub const CACHE_CAPACITY: usize = 8;
/// How long a failed fetch is remembered: requests meanwhile answer 503 at once instead of each
/// waiting up to the fetch timeout, and the certificate host is not hammered.
pub const FAILURE_TTL: Duration = Duration::from_secs(30);

enum Cached {
    Key(Arc<RsaPublicKey>),
    Failed { error: CertError, until: Instant },
}

struct Entry {
    cached: Cached,
    last_used: u64,
}

type Flight = Arc<tokio::sync::OnceCell<Result<Arc<RsaPublicKey>, CertError>>>;

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// One fetch per URL at a time: concurrent requests for the same certificate share it.
    in_flight: HashMap<String, Flight>,
    tick: u64,
}

impl State {
    fn lookup(&mut self, url: &str, now: Instant) -> Option<Result<Arc<RsaPublicKey>, CertError>> {
        self.tick += 1;
        let tick = self.tick;
        let entry = self.entries.get_mut(url)?;
        match &entry.cached {
            Cached::Failed { until, .. } if *until <= now => {
                self.entries.remove(url);
                None
            }
            Cached::Failed { error, .. } => Some(Err(error.clone())),
            Cached::Key(key) => {
                entry.last_used = tick;
                Some(Ok(key.clone()))
            }
        }
    }

    fn record(&mut self, url: &str, result: &Result<Arc<RsaPublicKey>, CertError>, now: Instant) {
        if self.entries.len() >= CACHE_CAPACITY && !self.entries.contains_key(url) {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(url, _)| url.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        let cached = match result {
            Ok(key) => Cached::Key(key.clone()),
            Err(error) => Cached::Failed {
                error: error.clone(),
                until: now + FAILURE_TTL,
            },
        };
        self.tick += 1;
        self.entries.insert(
            url.to_owned(),
            Entry {
                cached,
                last_used: self.tick,
            },
        );
    }
}

/// Keys by certificate URL: pinned ones first, then fetched ones (bounded, least recently used
/// evicted), with failures remembered briefly and concurrent fetches of one URL coalesced.
pub struct CertificateCache<F> {
    pinned: PinnedCertificates,
    state: Mutex<State>,
    fetcher: F,
}

impl<F: Fetcher> CertificateCache<F> {
    pub fn new(fetcher: F, pinned: impl Into<PinnedCertificates>) -> Self {
        CertificateCache {
            pinned: pinned.into(),
            state: Mutex::new(State::default()),
            fetcher,
        }
    }

    pub fn fetcher(&self) -> &F {
        &self.fetcher
    }

    /// The key of an already allow-listed certificate URL.
    pub async fn public_key(&self, url: &str) -> Result<Arc<RsaPublicKey>, CertError> {
        if let Some(key) = self.pinned.key(url) {
            return key;
        }
        let flight = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(cached) = state.lookup(url, Instant::now()) {
                return cached;
            }
            state.in_flight.entry(url.to_owned()).or_default().clone()
        };
        let result = flight.get_or_init(|| self.fetch(url)).await.clone();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let ours = state
            .in_flight
            .get(url)
            .is_some_and(|current| Arc::ptr_eq(current, &flight));
        if ours {
            state.in_flight.remove(url);
            state.record(url, &result, Instant::now());
        }
        result
    }

    async fn fetch(&self, url: &str) -> Result<Arc<RsaPublicKey>, CertError> {
        let (status, body) = self.fetcher.get(url).await?;
        if status != 200 {
            tracing::warn!(url, status, "signing certificate fetch refused");
            return Err(CertError::Unreachable(format!("HTTP {status}")));
        }
        let key = Arc::new(public_key_from_pem(&body)?);
        tracing::info!(url, "signing certificate fetched and cached");
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

    const TEST_PEM: &str = include_str!("../tests/fixtures/rsa-cert.pem");

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
        let key = public_key_from_pem(TEST_PEM.as_bytes()).unwrap();
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
            body: TEST_PEM,
        };
        let mut pinned = HashMap::new();
        pinned.insert(
            "https://pinned/x.pem".to_owned(),
            Arc::new(public_key_from_pem(TEST_PEM.as_bytes()).unwrap()),
        );
        let cache = CertificateCache::new(fetcher, pinned);
        cache.public_key("https://pinned/x.pem").await.unwrap();
        assert_eq!(cache.fetcher.calls.load(Ordering::SeqCst), 0);
        for _ in 0..3 {
            cache
                .public_key("https://certs.example.com/a.pem")
                .await
                .unwrap();
        }
        assert_eq!(cache.fetcher.calls.load(Ordering::SeqCst), 1);
    }

    /// Answers after a pause, so that concurrent requests overlap; fails while `failing` is set.
    struct Slow {
        calls: AtomicUsize,
        failing: std::sync::atomic::AtomicBool,
    }

    impl Fetcher for Slow {
        async fn get(&self, _url: &str) -> Result<(u16, Bytes), CertError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            if self.failing.load(Ordering::SeqCst) {
                return Err(CertError::Unreachable("refused".into()));
            }
            Ok((200, Bytes::from_static(TEST_PEM.as_bytes())))
        }
    }

    fn slow(failing: bool) -> CertificateCache<Slow> {
        CertificateCache::new(
            Slow {
                calls: AtomicUsize::new(0),
                failing: failing.into(),
            },
            HashMap::new(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_requests_share_one_fetch() {
        let cache = slow(false);
        let url = "https://certs.example.com/SimpleNotificationService-0a.pem";
        let results = futures::future::join_all((0..10).map(|_| cache.public_key(url))).await;
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(cache.fetcher.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_remembered_briefly_then_retried() {
        let cache = slow(true);
        let url = "https://certs.example.com/SimpleNotificationService-0b.pem";
        for _ in 0..5 {
            assert!(matches!(
                cache.public_key(url).await,
                Err(CertError::Unreachable(_))
            ));
        }
        assert_eq!(
            cache.fetcher.calls.load(Ordering::SeqCst),
            1,
            "failure cached"
        );
        cache.fetcher.failing.store(false, Ordering::SeqCst);
        tokio::time::advance(FAILURE_TTL + Duration::from_secs(1)).await;
        assert!(cache.public_key(url).await.is_ok());
        assert_eq!(
            cache.fetcher.calls.load(Ordering::SeqCst),
            2,
            "retried after the TTL"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_cache_is_bounded_and_keeps_the_recently_used() {
        let cache = slow(false);
        let hot = "https://certs.example.com/SimpleNotificationService-00.pem";
        cache.public_key(hot).await.unwrap();
        for i in 1..=(3 * CACHE_CAPACITY) {
            let url = format!("https://certs.example.com/SimpleNotificationService-{i:02x}.pem");
            cache.public_key(&url).await.unwrap();
            cache.public_key(hot).await.unwrap();
        }
        let state = cache.state.lock().unwrap();
        assert!(state.entries.len() <= CACHE_CAPACITY);
        assert!(state.entries.contains_key(hot), "the hot certificate stays");
        drop(state);
        assert_eq!(
            cache.fetcher.calls.load(Ordering::SeqCst),
            1 + 3 * CACHE_CAPACITY,
            "the hot certificate was fetched once"
        );
    }

    fn pins_file(name: &str, pins: &[(&str, &str)]) -> String {
        let map: HashMap<&str, &str> = pins.iter().copied().collect();
        let path = std::env::temp_dir().join(format!(
            "callback-hub-pins-{}-{name}.json",
            std::process::id()
        ));
        std::fs::write(&path, serde_json::to_string(&map).unwrap()).unwrap();
        path.display().to_string()
    }

    #[tokio::test]
    async fn pinned_certificates_are_checked_at_start_and_their_keys_read_on_first_use() {
        let no_certificate = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let bad_base64 = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let path = pins_file(
            "lazy",
            &[
                ("https://pinned/good.pem", TEST_PEM),
                ("https://pinned/no-certificate.pem", no_certificate),
                ("https://pinned/bad-base64.pem", bad_base64),
            ],
        );
        let pinned = pinned_from_vars(&[("PINNED_CERTS_FILE", path.as_str())]).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(pinned.len(), 3);
        let cache = CertificateCache::new(
            Counting {
                calls: AtomicUsize::new(0),
                body: TEST_PEM,
            },
            pinned,
        );
        let key = cache.public_key("https://pinned/good.pem").await.unwrap();
        assert_eq!(rsa::traits::PublicKeyParts::size(&*key), 256);
        let again = cache.public_key("https://pinned/good.pem").await.unwrap();
        assert!(Arc::ptr_eq(&key, &again), "read once, then kept");
        // An operator's broken pin is unavailable (the sender retries), never a forgery verdict,
        // and the pinned URL is never fetched in its place.
        for url in [
            "https://pinned/no-certificate.pem",
            "https://pinned/bad-base64.pem",
        ] {
            for _ in 0..2 {
                let answer = cache.public_key(url).await;
                assert!(matches!(answer, Err(CertError::Unreachable(_))), "{url}");
            }
        }
        assert_eq!(cache.fetcher.calls.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_pin_not_framed_as_a_pem_certificate_stops_the_function_at_start() {
        for (name, text) in [
            ("not-pem", "not a certificate"),
            ("unclosed", "-----BEGIN CERTIFICATE-----\nAAAA\n"),
            (
                "other-label",
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            ),
            (
                "mismatched",
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END PUBLIC KEY-----\n",
            ),
        ] {
            let path = pins_file(name, &[("https://pinned/x.pem", text)]);
            let result = pinned_from_vars(&[("PINNED_CERTS_FILE", path.as_str())]);
            std::fs::remove_file(&path).unwrap();
            let err = result
                .err()
                .unwrap_or_else(|| panic!("{name} accepted at start"));
            assert_eq!(err.variable(), "PINNED_CERTS_FILE", "{name}");
        }
    }

    #[test]
    fn pinned_file_errors_name_the_variable() {
        let err = pinned_from_vars(&[("PINNED_CERTS_FILE", "/nonexistent/pins.json")])
            .err()
            .unwrap();
        assert_eq!(err.variable(), "PINNED_CERTS_FILE");
        assert!(pinned_from_vars(&[("X", "y")]).unwrap().is_empty());
    }
}
