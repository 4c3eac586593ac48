//! The HTTP client under every SDK client: hyper over rustls with the trust roots of
//! [`crate::tls`].
//!
//! The SDK's own rustls client (`aws-smithy-http-client`) reads the system trust store whenever
//! a process builds its first client, and offers no way to hand it parsed roots: that read was
//! most of every function's init (`crate::tls` has the figures). This client does what that one
//! does for these functions (HTTP/1.1, a connection pool, the connect and read timeouts of
//! [`HttpConnectorSettings`], errors classified as timeout, I/O or other so that the SDK's
//! retry strategy treats them as it would its own) and nothing they do not use (HTTP/2, proxies,
//! custom DNS).

use crate::config::ConfigError;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::ErrorKind;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type BoxError = Box<dyn StdError + Send + Sync>;

/// One connection pool per distinct timeout settings, all sharing one TLS configuration. The
/// SDK asks for a connector on every attempt (`http_connector` is called by the orchestrator,
/// not once per client), so the connectors are kept: a new pool per attempt would open a new
/// connection, and on AWS do a new TLS handshake, for every request.
#[derive(Clone, Debug)]
pub struct SdkHttpClient {
    tls: Arc<rustls::ClientConfig>,
    connectors: Arc<Mutex<HashMap<ConnectorKey, SharedHttpConnector>>>,
}

/// The settings a connector is built from: connect and read timeouts.
type ConnectorKey = (Option<Duration>, Option<Duration>);

impl SdkHttpClient {
    pub fn new() -> Result<Self, ConfigError> {
        Ok(SdkHttpClient {
            tls: Arc::new(crate::tls::client_config()?),
            connectors: Arc::default(),
        })
    }

    /// The process's client, for a Lambda function (`crate::aws::lambda_sdk_config`): its SDK
    /// clients and its direct DynamoDB writes (`crate::store::dynamo::direct`) share these
    /// pools, so that one warm connection (one TLS handshake) serves them all. Not for tests,
    /// whose runtimes come and go while a pool would keep their connections. Made on first use;
    /// a failure (an `AWS_CA_BUNDLE` without a certificate) is returned, not kept.
    pub fn shared() -> Result<Self, ConfigError> {
        static SHARED: std::sync::OnceLock<SdkHttpClient> = std::sync::OnceLock::new();
        if let Some(client) = SHARED.get() {
            return Ok(client.clone());
        }
        let client = Self::new()?;
        Ok(SHARED.get_or_init(|| client).clone())
    }

    /// The connector (and pool) for these settings, as the SDK gets it through
    /// [`HttpClient::http_connector`], for callers that hold no SDK runtime components.
    pub fn connector(&self, settings: &HttpConnectorSettings) -> SharedHttpConnector {
        let key = (settings.connect_timeout(), settings.read_timeout());
        let mut connectors = self.connectors.lock().unwrap_or_else(|p| p.into_inner());
        connectors
            .entry(key)
            .or_insert_with(|| self.build_connector(settings))
            .clone()
    }

    fn build_connector(&self, settings: &HttpConnectorSettings) -> SharedHttpConnector {
        let mut tcp = TcpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(settings.connect_timeout());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*self.tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(https);
        SharedHttpConnector::new(SdkConnector {
            client,
            read_timeout: settings.read_timeout(),
        })
    }
}

impl HttpClient for SdkHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.connector(settings)
    }
}

#[derive(Debug)]
struct SdkConnector {
    client: Client<HttpsConnector<TcpConnector>, SdkBody>,
    read_timeout: Option<Duration>,
}

impl HttpConnector for SdkConnector {
    fn call(
        &self,
        request: aws_smithy_runtime_api::client::orchestrator::HttpRequest,
    ) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(err) => return HttpConnectorFuture::ready(Err(ConnectorError::user(err.into()))),
        };
        let response = self.client.request(request);
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            // Until the response head: the body is read, and timed, by the SDK.
            let response = match read_timeout {
                Some(limit) => match tokio::time::timeout(limit, response).await {
                    Ok(response) => response,
                    Err(elapsed) => return Err(ConnectorError::timeout(elapsed.into())),
                },
                None => response.await,
            };
            match response {
                Ok(response) => HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                    .map_err(|err| ConnectorError::other(err.into(), None)),
                Err(err) => Err(classify(err)),
            }
        })
    }
}

/// As the SDK's own client classifies hyper's errors: a failed connect or a broken connection
/// is I/O (retried), a timeout is a timeout (retried), an incomplete answer is transient.
fn classify(err: hyper_util::client::legacy::Error) -> ConnectorError {
    if err.is_connect() {
        let timed_out = find_source::<std::io::Error>(&err)
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
        return if timed_out {
            ConnectorError::timeout(err.into())
        } else {
            ConnectorError::io(err.into())
        };
    }
    if let Some(hyper) = find_source::<hyper::Error>(&err) {
        if hyper.is_timeout() {
            return ConnectorError::timeout(err.into());
        }
        if hyper.is_user() {
            return ConnectorError::user(err.into());
        }
        if hyper.is_incomplete_message() {
            return ConnectorError::other(err.into(), Some(ErrorKind::TransientError));
        }
        if hyper.is_closed()
            || hyper.is_canceled()
            || find_source::<std::io::Error>(hyper).is_some()
        {
            return ConnectorError::io(err.into());
        }
    }
    if find_source::<std::io::Error>(&err).is_some() {
        return ConnectorError::io(err.into());
    }
    ConnectorError::other(BoxError::from(err), None)
}

fn find_source<'a, E: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(found) = err.downcast_ref::<E>() {
            return Some(found);
        }
        next = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponentsBuilder;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn connector(settings: HttpConnectorSettings) -> SharedHttpConnector {
        let components = RuntimeComponentsBuilder::for_tests()
            .build()
            .expect("test components");
        SdkHttpClient::new()
            .unwrap()
            .http_connector(&settings, &components)
    }

    fn request(url: &str) -> aws_smithy_runtime_api::client::orchestrator::HttpRequest {
        let request = http::Request::builder()
            .uri(url)
            .method("POST")
            .body(SdkBody::from("{}"))
            .unwrap();
        request.try_into().unwrap()
    }

    #[tokio::test]
    async fn a_plain_http_endpoint_answers_through_the_pool() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buffer = vec![0; 4096];
            let _ = socket.read(&mut buffer).await.unwrap();
            socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .unwrap();
        });
        let response = connector(HttpConnectorSettings::builder().build())
            .call(request(&format!("http://{address}/")))
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(&body[..], b"ok");
    }

    #[tokio::test]
    async fn attempts_with_the_same_settings_share_one_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buffer = vec![0; 4096];
                    while let Ok(n) = socket.read(&mut buffer).await {
                        if n == 0 {
                            break;
                        }
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if socket.write_all(answer).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let client = SdkHttpClient::new().unwrap();
        let components = RuntimeComponentsBuilder::for_tests()
            .build()
            .expect("test components");
        let settings = HttpConnectorSettings::builder().build();
        for _ in 0..3 {
            // As the SDK's orchestrator does: a connector asked for on every attempt.
            let response = client
                .http_connector(&settings, &components)
                .call(request(&format!("http://{address}/")))
                .await
                .unwrap();
            http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap();
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_io_error_the_sdk_retries() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let err = connector(HttpConnectorSettings::builder().build())
            .call(request(&format!("http://{address}/")))
            .await
            .unwrap_err();
        assert!(err.is_io(), "{err:?}");
    }

    #[tokio::test]
    async fn an_answer_slower_than_the_read_timeout_is_a_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(socket);
        });
        let settings = HttpConnectorSettings::builder()
            .read_timeout(Duration::from_millis(100))
            .build();
        let err = connector(settings)
            .call(request(&format!("http://{address}/")))
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
        server.abort();
    }

    #[tokio::test]
    async fn a_connection_closed_without_an_answer_is_retryable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buffer = vec![0; 4096];
            let _ = socket.read(&mut buffer).await;
            drop(socket);
        });
        let err = connector(HttpConnectorSettings::builder().build())
            .call(request(&format!("http://{address}/")))
            .await
            .unwrap_err();
        assert!(
            err.is_io() || err.as_other() == Some(ErrorKind::TransientError),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn an_https_url_is_never_answered_in_plain_text() {
        // The scheme decides: an https URL must get a TLS handshake, not a plain answer.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buffer = vec![0; 4096];
            let _ = socket.read(&mut buffer).await;
            // Not TLS at all: what a client that skipped verification might still accept.
            let _ = socket.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
        });
        let result = connector(HttpConnectorSettings::builder().build())
            .call(request(&format!("https://localhost:{}/", address.port())))
            .await;
        assert!(result.is_err(), "an https URL answered without TLS");
    }
}
