//! Sending one delivery attempt, and the SSRF guard it goes through.
//!
//! Subscribers name any URL, and the server sits inside someone's network (a VPC with a
//! metadata service, a LAN), so every connection is checked on the address actually
//! connected: the URL's host is resolved here, forbidden addresses ([`is_forbidden`]) are
//! dropped unless private networks are allowed, and the socket is opened to an address that
//! passed. A name that resolves differently on a second lookup (DNS rebinding) or an IP
//! literal gains nothing, since no second lookup happens.
//!
//! Through a proxy (one of the operator's `WEBHOOKS_PROXY_URLS`), the proxy is the operator's
//! egress point and is connected to as configured; the target's name is still resolved here
//! and refused if any of its addresses is forbidden, but the proxy does its own lookup. HTTPS
//! goes through the proxy with `CONNECT host:port` (by name, so that proxies with domain
//! allow-lists work); HTTP is sent to the proxy in absolute form.
//!
//! An attempt ([`Sender::send`]) has one deadline ([`SenderConfig::timeout`], 15 s) from the
//! first lookup to the response headers; redirects are not followed; at most the first
//! [`RESPONSE_EXCERPT_BYTES`] of the response body are read, for the attempt log.

use crate::model::{normalize_proxy_url, validate_url, Subscription, ValidationPolicy};
use crate::schedule::{classify_status, parse_retry_after, Verdict};
use crate::signature::{sign_all, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use crate::template::RenderedBody;
use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::header::{
    HeaderName, HeaderValue, CONTENT_TYPE, PROXY_AUTHORIZATION, RETRY_AFTER, USER_AGENT,
};
use http::{HeaderMap, Request, Uri};
use http_body_util::{BodyExt, Full};
use hub_core::config::{ConfigError, Vars};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
pub const RESPONSE_EXCERPT_BYTES: usize = 1024;
/// A proxy's answer to CONNECT longer than this is not an answer.
const MAX_PROXY_RESPONSE_BYTES: usize = 8 * 1024;
/// Error texts kept in the attempt log.
const MAX_ERROR_CHARS: usize = 1024;

// ---------------------------------------------------------------------------------------------
// Forbidden addresses

fn v4_in(ip: Ipv4Addr, network: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(network)) & mask
}

fn v6_in(ip: Ipv6Addr, network: Ipv6Addr, prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(ip) & mask == u128::from(network) & mask
}

fn v4_forbidden(ip: Ipv4Addr) -> bool {
    const RANGES: [([u8; 4], u32); 15] = [
        ([0, 0, 0, 0], 8),       // "this network", including 0.0.0.0
        ([10, 0, 0, 0], 8),      // private
        ([100, 64, 0, 0], 10),   // CGNAT (and Alibaba Cloud's metadata, 100.100.100.200)
        ([127, 0, 0, 0], 8),     // loopback
        ([169, 254, 0, 0], 16),  // link-local, with the cloud metadata 169.254.169.254
        ([172, 16, 0, 0], 12),   // private
        ([192, 0, 0, 0], 24),    // IETF protocol assignments (Oracle Cloud's metadata)
        ([192, 0, 2, 0], 24),    // TEST-NET-1
        ([192, 88, 99, 0], 24),  // 6to4 relay anycast
        ([192, 168, 0, 0], 16),  // private
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // TEST-NET-2
        ([203, 0, 113, 0], 24),  // TEST-NET-3
        ([224, 0, 0, 0], 4),     // multicast
        ([240, 0, 0, 0], 4),     // reserved, with the broadcast 255.255.255.255
    ];
    RANGES
        .iter()
        .any(|(network, prefix)| v4_in(ip, *network, *prefix))
}

/// Whether a delivery may not connect to `ip` (unless private networks are allowed):
/// loopback, private, CGNAT, link-local, multicast, unspecified, broadcast, documentation,
/// benchmarking and other reserved ranges, IPv6 unique-local (with AWS's metadata
/// `fd00:ec2::254`), site-local and link-local, and every IPv6 form that embeds an IPv4
/// address (mapped, compatible, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) of a forbidden one.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_forbidden(v4),
        IpAddr::V6(v6) => v6_forbidden(v6),
    }
}

fn v6_forbidden(ip: Ipv6Addr) -> bool {
    let net = |text: &str| text.parse::<Ipv6Addr>().unwrap_or(Ipv6Addr::UNSPECIFIED);
    let bits = u128::from(ip);
    // ::a.b.c.d (compatible, which includes :: and ::1), ::ffff:a.b.c.d (mapped) and
    // ::ffff:0:a.b.c.d (translated).
    if matches!(bits >> 32, 0 | 0xffff | 0xffff_0000) {
        return bits <= 1 || v4_forbidden(Ipv4Addr::from(bits as u32));
    }
    if v6_in(ip, net("64:ff9b::"), 96) {
        return v4_forbidden(Ipv4Addr::from(bits as u32));
    }
    if v6_in(ip, net("2002::"), 16) {
        return v4_forbidden(Ipv4Addr::from((bits >> 80) as u32));
    }
    const RANGES: [(&str, u32); 10] = [
        ("64:ff9b:1::", 48), // local-use NAT64
        ("100::", 64),       // discard-only
        ("2001::", 23),      // IETF special purpose: Teredo, benchmarking, ORCHID
        ("2001:db8::", 32),  // documentation
        ("3fff::", 20),      // documentation
        ("5f00::", 16),      // SRv6 SIDs
        ("fc00::", 7),       // unique local, with fd00:ec2::254
        ("fe80::", 10),      // link-local
        ("fec0::", 10),      // site-local (deprecated)
        ("ff00::", 8),       // multicast
    ];
    RANGES
        .iter()
        .any(|(network, prefix)| v6_in(ip, net(network), *prefix))
}

/// The addresses a connection may use, in the resolver's order.
pub fn allowed_addresses(addresses: &[IpAddr], allow_private_networks: bool) -> Vec<IpAddr> {
    addresses
        .iter()
        .copied()
        .filter(|ip| allow_private_networks || !is_forbidden(*ip))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Name resolution

pub type ResolveFuture<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>>;

/// Name resolution, injectable so that tests can make a name resolve anywhere.
pub trait Resolve: Send + Sync + 'static {
    fn resolve<'a>(&'a self, host: &'a str) -> ResolveFuture<'a>;
}

/// The system resolver, through tokio.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str) -> ResolveFuture<'a> {
        Box::pin(async move {
            let addresses = tokio::net::lookup_host((host, 0)).await?;
            Ok(addresses.map(|a| a.ip()).collect())
        })
    }
}

/// A fixed table of names, for tests and for pinning names.
#[derive(Debug, Clone, Default)]
pub struct StaticResolver(pub HashMap<String, Vec<IpAddr>>);

impl StaticResolver {
    pub fn with(mut self, host: &str, addresses: &[IpAddr]) -> Self {
        self.0.insert(host.to_owned(), addresses.to_vec());
        self
    }
}

impl Resolve for StaticResolver {
    fn resolve<'a>(&'a self, host: &'a str) -> ResolveFuture<'a> {
        let found = self.0.get(host).cloned();
        Box::pin(async move {
            found.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such host"))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The connector

/// Why a connection was not made. Carried through hyper's errors to [`SendError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("{host} resolves only to forbidden addresses ({addresses:?})")]
    Forbidden {
        host: String,
        addresses: Vec<IpAddr>,
    },
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("cannot connect: {0}")]
    Io(String),
    #[error("proxy: {0}")]
    Proxy(String),
    #[error("the URL has no host")]
    NoHost,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ProxyTarget {
    host: String,
    port: u16,
    authorization: Option<HeaderValue>,
}

impl ProxyTarget {
    fn parse(normalized: &str) -> Result<ProxyTarget, String> {
        let uri: Uri = normalized.parse().map_err(|_| "bad proxy URL".to_owned())?;
        let authority = uri.authority().ok_or("proxy URL has no host")?;
        let authorization = match authority.as_str().rsplit_once('@') {
            Some((userinfo, _)) => {
                let token = base64::engine::general_purpose::STANDARD.encode(userinfo);
                let mut value = HeaderValue::from_str(&format!("Basic {token}"))
                    .map_err(|_| "bad proxy credentials".to_owned())?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        Ok(ProxyTarget {
            host: strip_brackets(authority.host()).to_owned(),
            port: authority.port_u16().unwrap_or(80),
            authorization,
        })
    }
}

fn strip_brackets(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// A hyper-util connector that resolves, filters and connects itself (see the module docs).
#[derive(Clone)]
struct GuardedConnector {
    resolver: Arc<dyn Resolve>,
    allow_private_networks: bool,
    proxy: Option<Arc<ProxyTarget>>,
}

impl GuardedConnector {
    async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, ConnectError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let addresses = self
            .resolver
            .resolve(host)
            .await
            .map_err(|e| ConnectError::Resolve {
                host: host.to_owned(),
                reason: e.to_string(),
            })?;
        if addresses.is_empty() {
            return Err(ConnectError::Resolve {
                host: host.to_owned(),
                reason: "no addresses".into(),
            });
        }
        Ok(addresses)
    }

    async fn connect_any(addresses: &[IpAddr], port: u16) -> Result<TcpStream, ConnectError> {
        let mut last = ConnectError::Io("no address to connect to".into());
        for ip in addresses {
            match TcpStream::connect(SocketAddr::new(*ip, port)).await {
                Ok(stream) => {
                    // Small request writes should not wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(e) => last = ConnectError::Io(format!("{ip}:{port}: {e}")),
            }
        }
        Err(last)
    }

    async fn connect(self, dst: Uri) -> Result<GuardedStream, ConnectError> {
        let raw_host = dst.host().ok_or(ConnectError::NoHost)?;
        let host = strip_brackets(raw_host);
        if host.is_empty() {
            return Err(ConnectError::NoHost);
        }
        let https = dst.scheme_str() == Some("https");
        let port = dst.port_u16().unwrap_or(if https { 443 } else { 80 });
        let Some(proxy) = &self.proxy else {
            let addresses = self.addresses(host).await?;
            let allowed = allowed_addresses(&addresses, self.allow_private_networks);
            if allowed.is_empty() {
                tracing::warn!(host, ?addresses, "delivery refused: forbidden address");
                return Err(ConnectError::Forbidden {
                    host: host.to_owned(),
                    addresses,
                });
            }
            let stream = Self::connect_any(&allowed, port).await?;
            return Ok(GuardedStream::new(stream, false));
        };

        // The proxy resolves the name again, so any forbidden answer here refuses. With private
        // networks allowed there is nothing to check, and the name may be one that only the
        // proxy can resolve.
        if !self.allow_private_networks {
            let addresses = self.addresses(host).await?;
            if addresses.iter().any(|ip| is_forbidden(*ip)) {
                tracing::warn!(
                    host,
                    ?addresses,
                    "proxied delivery refused: forbidden address"
                );
                return Err(ConnectError::Forbidden {
                    host: host.to_owned(),
                    addresses,
                });
            }
        }
        let proxy_addresses = self.addresses(&proxy.host).await?;
        let mut stream = Self::connect_any(&proxy_addresses, proxy.port).await?;
        if !https {
            return Ok(GuardedStream::new(stream, true));
        }
        let authority = format!("{raw_host}:{port}");
        let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
        if let Some(auth) = &proxy.authorization {
            let value = auth
                .to_str()
                .map_err(|_| ConnectError::Proxy("bad credentials".into()))?;
            request.push_str(&format!("Proxy-Authorization: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| ConnectError::Proxy(e.to_string()))?;
        read_connect_response(&mut stream).await?;
        Ok(GuardedStream::new(stream, false))
    }
}

/// Reads the proxy's answer to CONNECT, byte by byte so that nothing of the tunnel is eaten.
async fn read_connect_response(stream: &mut TcpStream) -> Result<(), ConnectError> {
    let mut head = Vec::with_capacity(128);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_PROXY_RESPONSE_BYTES {
            return Err(ConnectError::Proxy("response headers too long".into()));
        }
        let byte = stream
            .read_u8()
            .await
            .map_err(|e| ConnectError::Proxy(format!("no answer to CONNECT: {e}")))?;
        head.push(byte);
    }
    let status_line = head
        .split(|b| *b == b'\n')
        .next()
        .map(|line| String::from_utf8_lossy(line).trim().to_owned())
        .unwrap_or_default();
    let status = status_line.split_whitespace().nth(1);
    if status_line.starts_with("HTTP/1.") && status == Some("200") {
        Ok(())
    } else {
        Err(ConnectError::Proxy(format!(
            "CONNECT refused: {status_line}"
        )))
    }
}

impl tower_service::Service<Uri> for GuardedConnector {
    type Response = GuardedStream;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<GuardedStream, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        Box::pin(self.clone().connect(dst))
    }
}

/// A connection made by [`GuardedConnector`]; `proxied_http` makes hyper send absolute-form
/// request targets, as an HTTP proxy needs.
pub struct GuardedStream {
    io: TokioIo<TcpStream>,
    proxied_http: bool,
}

impl GuardedStream {
    fn new(stream: TcpStream, proxied_http: bool) -> Self {
        GuardedStream {
            io: TokioIo::new(stream),
            proxied_http,
        }
    }
}

impl Connection for GuardedStream {
    fn connected(&self) -> Connected {
        Connected::new().proxy(self.proxied_http)
    }
}

impl hyper::rt::Read for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

// ---------------------------------------------------------------------------------------------
// TLS

/// The verifier of `insecure` subscriptions: any certificate is accepted (handshake signatures
/// are still checked, so the connection is at least to whoever holds the presented key).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn verified_tls(roots: &Option<Vec<CertificateDer<'static>>>) -> Result<ClientConfig, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = match roots {
        // The compiled-in roots (or AWS_CA_BUNDLE's) that the AWS clients use: no read of
        // the system store on the first delivery (hub_core::tls).
        None => builder
            .with_root_certificates(hub_core::tls::roots().map_err(|e| e.to_string())?)
            .with_no_client_auth(),
        Some(certificates) => {
            let mut store = RootCertStore::empty();
            for certificate in certificates {
                store
                    .add(certificate.clone())
                    .map_err(|e| format!("bad root certificate: {e}"))?;
            }
            builder.with_root_certificates(store).with_no_client_auth()
        }
    };
    Ok(config)
}

fn unverified_tls() -> Result<ClientConfig, String> {
    let provider = provider();
    Ok(ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth())
}

// ---------------------------------------------------------------------------------------------
// The sender

/// Why an attempt got no response. Every kind is retried except [`SendError::Request`] and
/// [`SendError::Template`], which a retry cannot change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum SendError {
    #[error("refused: {0}")]
    Forbidden(String),
    #[error("name resolution failed: {0}")]
    Resolve(String),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("proxy failed: {0}")]
    Proxy(String),
    #[error("TLS failed: {0}")]
    Tls(String),
    #[error("timed out")]
    Timeout,
    #[error("HTTP exchange failed: {0}")]
    Http(String),
    #[error("request could not be built: {0}")]
    Request(String),
    #[error("body template failed: {0}")]
    Template(String),
}

/// One attempt, as logged: when, how long, what came back (status and the start of the body)
/// or what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub started_at: DateTime<Utc>,
    pub latency_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The first [`RESPONSE_EXCERPT_BYTES`] of the response body, as UTF-8 (lossy).
    #[serde(default)]
    pub response_excerpt: String,
    /// A `Retry-After` of the response, as a delay from `started_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SendError>,
}

impl Attempt {
    fn failed(started_at: DateTime<Utc>, latency: Duration, error: SendError) -> Attempt {
        Attempt {
            started_at,
            latency_ms: millis(latency),
            status: None,
            response_excerpt: String::new(),
            retry_after_secs: None,
            error: Some(error),
        }
    }

    /// The attempt logged when the body template fails on the event: nothing is sent.
    pub fn template_failed(now: DateTime<Utc>, error: &crate::template::TemplateError) -> Attempt {
        Attempt::failed(now, Duration::ZERO, SendError::Template(error.to_string()))
    }

    pub fn verdict(&self) -> Verdict {
        match (&self.status, &self.error) {
            (Some(status), _) => classify_status(*status),
            (None, Some(SendError::Request(_) | SendError::Template(_))) => Verdict::Failed,
            (None, _) => Verdict::Retry,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after_secs.map(Duration::from_secs)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderConfig {
    /// Which proxies may be used and whether private networks may be reached.
    pub policy: ValidationPolicy,
    /// The whole attempt: lookup, connect, TLS, request and response headers.
    pub timeout: Duration,
    /// `None`: the process's roots (`hub_core::tls`). `Some`: exactly these (tests, private CAs).
    pub tls_roots: Option<Vec<CertificateDer<'static>>>,
    pub user_agent: String,
}

impl SenderConfig {
    pub fn new(policy: ValidationPolicy) -> SenderConfig {
        SenderConfig {
            policy,
            timeout: DEFAULT_TIMEOUT,
            tls_roots: None,
            user_agent: concat!("callback-hub/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }

    /// `WEBHOOKS_PROXY_URLS` and `WEBHOOKS_ALLOW_PRIVATE_NETWORKS` (see
    /// [`ValidationPolicy::from_vars`]).
    pub fn from_vars(vars: &impl Vars) -> Result<SenderConfig, ConfigError> {
        Ok(SenderConfig::new(ValidationPolicy::from_vars(vars)?))
    }
}

type HttpClient =
    hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<GuardedConnector>, Full<Bytes>>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    proxy: Option<String>,
    insecure: bool,
}

/// Sends delivery attempts. One per process: it keeps a connection pool per (proxy,
/// `insecure`) pair, so that a connection set up without certificate checks never carries a
/// request of a subscription that wants them.
pub struct Sender {
    config: SenderConfig,
    resolver: Arc<dyn Resolve>,
    clients: Mutex<HashMap<ClientKey, HttpClient>>,
    /// Built on first use: deliveries to plain-HTTP receivers never need it.
    verified: OnceLock<Result<ClientConfig, String>>,
}

impl Sender {
    pub fn new(config: SenderConfig) -> Sender {
        Sender::with_resolver(config, Arc::new(SystemResolver))
    }

    pub fn with_resolver(config: SenderConfig, resolver: Arc<dyn Resolve>) -> Sender {
        Sender {
            config,
            resolver,
            clients: Mutex::new(HashMap::new()),
            verified: OnceLock::new(),
        }
    }

    pub fn config(&self) -> &SenderConfig {
        &self.config
    }

    fn client(&self, key: &ClientKey) -> Result<HttpClient, SendError> {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(client) = clients.get(key) {
            return Ok(client.clone());
        }
        // Only an insecure subscription ever builds the accept-anything verifier.
        let tls = if key.insecure {
            unverified_tls().map_err(SendError::Tls)?
        } else {
            self.verified
                .get_or_init(|| verified_tls(&self.config.tls_roots))
                .clone()
                .map_err(SendError::Tls)?
        };
        let proxy = match &key.proxy {
            Some(url) => Some(Arc::new(
                ProxyTarget::parse(url).map_err(SendError::Request)?,
            )),
            None => None,
        };
        let connector = GuardedConnector {
            resolver: self.resolver.clone(),
            allow_private_networks: self.config.policy.allow_private_networks,
            proxy,
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(8)
            .build(https);
        clients.insert(key.clone(), client.clone());
        Ok(client)
    }

    fn build_request(
        &self,
        subscription: &Subscription,
        msg_id: &str,
        body: &RenderedBody,
        now: DateTime<Utc>,
    ) -> Result<(Request<Full<Bytes>>, ClientKey), SendError> {
        let bad = |reason: String| SendError::Request(reason);
        let uri = validate_url(&subscription.url, true).map_err(|e| bad(e.to_string()))?;
        let proxy = if subscription.proxy_url.is_empty() {
            None
        } else {
            // The operator's list may have changed since the subscription was written.
            if !self.config.policy.allows_proxy(&subscription.proxy_url) {
                return Err(bad("proxy_url is no longer allowed".into()));
            }
            Some(normalize_proxy_url(&subscription.proxy_url).map_err(bad)?)
        };
        let mut headers = HeaderMap::new();
        for (name, values) in &subscription.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad(format!("bad header name {name:?}")))?;
            for value in values {
                let value = HeaderValue::from_str(value)
                    .map_err(|_| bad(format!("bad value for header {name}")))?;
                headers.append(name.clone(), value);
            }
        }
        if !headers.contains_key(USER_AGENT) {
            let agent = HeaderValue::from_str(&self.config.user_agent)
                .map_err(|_| bad("bad user agent".into()))?;
            headers.insert(USER_AGENT, agent);
        }
        if let Some(content_type) = body.content_type {
            if !headers.contains_key(CONTENT_TYPE) {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            }
        }
        let secrets = subscription
            .signing_secrets(now)
            .map_err(|e| bad(format!("secret: {e}")))?;
        if secrets.is_empty() {
            return Err(bad("the subscription has no secret".into()));
        }
        let timestamp = now.timestamp().to_string();
        let signature = sign_all(&secrets, msg_id, &timestamp, &body.bytes);
        for (name, value) in [
            (HEADER_ID, msg_id),
            (HEADER_TIMESTAMP, timestamp.as_str()),
            (HEADER_SIGNATURE, signature.as_str()),
        ] {
            let value =
                HeaderValue::from_str(value).map_err(|_| bad(format!("bad {name} value")))?;
            headers.insert(HeaderName::from_static(name), value);
        }
        if let Some(proxy_url) = &proxy {
            if uri.scheme_str() == Some("http") {
                let target = ProxyTarget::parse(proxy_url).map_err(bad)?;
                if let Some(auth) = target.authorization {
                    headers.insert(PROXY_AUTHORIZATION, auth);
                }
            }
        }
        let mut request = Request::builder()
            .method(subscription.effective_method())
            .uri(uri)
            .body(Full::new(body.bytes.clone()))
            .map_err(|e| bad(e.to_string()))?;
        *request.headers_mut() = headers;
        let key = ClientKey {
            proxy,
            insecure: subscription.insecure,
        };
        Ok((request, key))
    }

    /// One attempt: builds, signs (timestamped `now`) and sends the request, and reads the
    /// start of the response. Never fails: what went wrong is in the [`Attempt`].
    pub async fn send(
        &self,
        subscription: &Subscription,
        msg_id: &str,
        body: &RenderedBody,
        now: DateTime<Utc>,
    ) -> Attempt {
        let started = Instant::now();
        let (request, key) = match self.build_request(subscription, msg_id, body, now) {
            Ok(built) => built,
            Err(error) => return Attempt::failed(now, started.elapsed(), error),
        };
        let client = match self.client(&key) {
            Ok(client) => client,
            Err(error) => return Attempt::failed(now, started.elapsed(), error),
        };
        let deadline = tokio::time::Instant::from_std(started + self.config.timeout);
        let response = match tokio::time::timeout_at(deadline, client.request(request)).await {
            Err(_) => return Attempt::failed(now, started.elapsed(), SendError::Timeout),
            Ok(Err(error)) => {
                let error = classify_error(&error);
                tracing::debug!(subscription = %subscription.name, msg_id, %error, "attempt failed");
                return Attempt::failed(now, started.elapsed(), error);
            }
            Ok(Ok(response)) => response,
        };
        let latency = started.elapsed();
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, now))
            .map(|d| d.as_secs());
        // The excerpt is best effort: a body that stalls past the deadline leaves it short, and
        // the status stands.
        let mut excerpt = Vec::with_capacity(RESPONSE_EXCERPT_BYTES);
        let mut body = response.into_body();
        while excerpt.len() < RESPONSE_EXCERPT_BYTES {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        let room = RESPONSE_EXCERPT_BYTES - excerpt.len();
                        excerpt.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
                _ => break,
            }
        }
        tracing::debug!(subscription = %subscription.name, msg_id, status, "attempt answered");
        Attempt {
            started_at: now,
            latency_ms: millis(latency),
            status: Some(status),
            response_excerpt: String::from_utf8_lossy(&excerpt).into_owned(),
            retry_after_secs: retry_after,
            error: None,
        }
    }
}

/// Finds what an error from hyper was about, looking through its sources and inside
/// `io::Error`s (whose `source` skips the error they wrap, and which hyper-rustls nests).
fn classify_error(error: &(dyn std::error::Error + 'static)) -> SendError {
    let mut pending = vec![error];
    // Error chains are short; the bound only guards against a cyclic `source`.
    let mut budget = 32;
    while let Some(e) = pending.pop() {
        budget -= 1;
        if budget == 0 {
            break;
        }
        if let Some(connect) = e.downcast_ref::<ConnectError>() {
            return match connect {
                ConnectError::Forbidden { .. } => SendError::Forbidden(connect.to_string()),
                ConnectError::Resolve { .. } => SendError::Resolve(connect.to_string()),
                ConnectError::Proxy(_) => SendError::Proxy(connect.to_string()),
                ConnectError::Io(_) | ConnectError::NoHost => {
                    SendError::Connect(connect.to_string())
                }
            };
        }
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return SendError::Tls(tls.to_string());
        }
        if let Some(inner) = e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            pending.push(inner);
        }
        if let Some(source) = e.source() {
            pending.push(source);
        }
    }
    let message = error_chain(error);
    let is_connect = error
        .downcast_ref::<hyper_util::client::legacy::Error>()
        .is_some_and(|e| e.is_connect());
    if is_connect {
        SendError::Connect(message)
    } else {
        SendError::Http(message)
    }
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ").chars().take(MAX_ERROR_CHARS).collect()
}

#[cfg(test)]
mod tests;
