//! SDK clients, built once at init. `AWS_ENDPOINT_URL` and the other standard SDK variables
//! point them at a local API (moto) in tests and local runs.

use crate::config::{ConfigError, ProcessEnv, Vars};
use crate::store::dynamo::direct::DirectPut;
use crate::store::DynamoStore;
use crate::telemetry::xray;
use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};
use aws_smithy_types::config_bag::ConfigBag;
use aws_types::sdk_config::SharedCredentialsProvider;
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};
use std::str::FromStr;
use std::time::Duration;

/// The SDK configuration of a function, from what Lambda puts in its environment: the region
/// (`AWS_REGION`), the execution role's credentials (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), and the standard endpoint variables
/// (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`) for local runs. Unlike [`sdk_config`], it
/// links none of the other providers (profiles, SSO, STS, IMDS, ECS): measured in
/// `BENCHMARKS.md`, that is a smaller bootstrap and a shorter init. No I/O happens here.
pub fn lambda_sdk_config() -> Result<SdkConfig, ConfigError> {
    lambda_sdk_config_from(&ProcessEnv)
}

fn lambda_sdk_config_from(vars: &impl Vars) -> Result<SdkConfig, ConfigError> {
    let region = vars
        .get("AWS_REGION")
        .or_else(|| vars.get("AWS_DEFAULT_REGION"))
        .ok_or(ConfigError::Missing("AWS_REGION"))?;
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .credentials_provider(SharedCredentialsProvider::new(
            EnvironmentVariableCredentialsProvider::new(),
        ))
        .timeout_config(timeout_config())
        .retry_config(retry_config())
        .http_client(lambda_https_client()?)
        .service_config(EndpointVariables);
    if let Some(url) = vars.get("AWS_ENDPOINT_URL") {
        builder = builder.endpoint_url(url);
    }
    Ok(builder.build())
}

/// `AWS_ENDPOINT_URL_<SERVICE>` before `AWS_ENDPOINT_URL`, as the SDK's own loader reads them.
#[derive(Debug)]
struct EndpointVariables;

impl LoadServiceConfig for EndpointVariables {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        let specific = service_variable(key.env(), key.service_id());
        ProcessEnv
            .get(&specific)
            .or_else(|| ProcessEnv.get(key.env()))
    }
}

/// `AWS_ENDPOINT_URL` and service id `DynamoDB` give `AWS_ENDPOINT_URL_DYNAMODB`.
fn service_variable(variable: &str, service_id: &str) -> String {
    let service: String = service_id
        .chars()
        .map(|c| match c {
            ' ' | '-' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect();
    format!("{variable}_{service}")
}

/// The HTTPS client of every SDK client: [`crate::sdk_http`], over rustls on ring with the
/// compiled-in trust roots of [`crate::tls`] (or `AWS_CA_BUNDLE`'s). Fails only when
/// `AWS_CA_BUNDLE` names a file that holds no certificate.
///
/// Every call it makes within a sampled request is an X-Ray subsegment ([`Traced`]).
pub fn https_client() -> Result<SharedHttpClient, ConfigError> {
    Ok(SharedHttpClient::new(Traced(
        crate::sdk_http::SdkHttpClient::new()?,
    )))
}

/// [`https_client`] on the process's one pool (`SdkHttpClient::shared`), which the direct
/// DynamoDB puts of [`lambda_dynamo_store`] share: a Lambda process, one runtime for its life.
/// Not for tests, whose runtimes come and go while a pool would keep their connections.
fn lambda_https_client() -> Result<SharedHttpClient, ConfigError> {
    Ok(SharedHttpClient::new(Traced(
        crate::sdk_http::SdkHttpClient::shared()?,
    )))
}

/// A connector on `http`'s pool for the timeouts of `config`, as the orchestrator derives them,
/// so that a DynamoDB client built from `config` on the same client lands on the same pool.
/// Its requests are X-Ray subsegments like the SDK's.
pub fn dynamodb_connector(
    config: &SdkConfig,
    http: &crate::sdk_http::SdkHttpClient,
) -> SharedHttpConnector {
    let mut settings = HttpConnectorSettings::builder();
    if let Some(timeouts) = config.timeout_config() {
        settings.set_connect_timeout(timeouts.connect_timeout());
        settings.set_read_timeout(timeouts.read_timeout());
    }
    SharedHttpConnector::new(Traced(http.connector(&settings.build())))
}

/// The SDK's HTTP client, recording each request to an AWS service as an X-Ray subsegment
/// (`crate::telemetry::xray`). An interceptor would be the SDK's usual hook, but interceptors
/// belong to each service's client configuration and `SdkConfig` carries none: the HTTP client
/// is what every client built from a function's `SdkConfig` shares, wherever it is built. It
/// sees each attempt, so a retried call shows as several subsegments.
#[derive(Debug)]
pub struct Traced<C>(pub C);

impl<C: HttpClient> HttpClient for Traced<C> {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(Traced(self.0.http_connector(settings, components)))
    }

    fn validate_base_client_config(
        &self,
        runtime_components: &RuntimeComponentsBuilder,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.validate_base_client_config(runtime_components, cfg)
    }

    fn validate_final_config(
        &self,
        runtime_components: &RuntimeComponents,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.validate_final_config(runtime_components, cfg)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

impl HttpConnector for Traced<SharedHttpConnector> {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let Some(context) = xray::current() else {
            return self.0.call(request);
        };
        let mut call = describe(&request);
        let response = self.0.call(request);
        HttpConnectorFuture::new(async move {
            let result = response.await;
            call.end_time = xray::now();
            if let Ok(response) = &result {
                call.status = Some(response.status().as_u16());
                let headers = response.headers();
                if let Some(id) = headers
                    .get("x-amzn-requestid")
                    .or_else(|| headers.get("x-amz-request-id"))
                {
                    call.aws.insert("request_id".into(), id.into());
                }
                call.throttled = headers.get("x-amzn-errortype").is_some_and(|t| {
                    t.contains("Throttl") || t.contains("ProvisionedThroughputExceeded")
                });
            }
            call.send(&context);
            result
        })
    }
}

/// What an SDK request is, from the request alone: the service and region of its SigV4
/// credential scope, the operation of its `X-Amz-Target` (JSON protocols: DynamoDB, SSM, SQS)
/// or of its method and query (S3), and the table, queue or bucket it names.
fn describe(request: &HttpRequest) -> xray::Call {
    let headers = request.headers();
    // `Credential=AKID/20240101/us-east-1/dynamodb/aws4_request`
    let scope: Vec<&str> = headers
        .get("authorization")
        .and_then(|a| a.split("Credential=").nth(1))
        .map(|c| {
            c.split([',', ' '])
                .next()
                .unwrap_or_default()
                .split('/')
                .collect()
        })
        .unwrap_or_default();
    let region = scope.get(2).copied().unwrap_or_default();
    let service = scope.get(3).copied().unwrap_or_default();
    let body = request.body().bytes().unwrap_or_default();
    let mut aws = serde_json::Map::new();
    let name = match service {
        "dynamodb" => "DynamoDB",
        "s3" => "S3",
        "ssm" => "SSM",
        "sqs" => "SQS",
        other => other,
    };
    let operation = match headers.get("x-amz-target") {
        Some(target) => target.rsplit('.').next().unwrap_or(target).to_owned(),
        None if service == "s3" => s3_operation(request).to_owned(),
        None => String::new(),
    };
    if let Some(table) = json_string(body, "TableName") {
        aws.insert("table_name".into(), table.into());
    }
    if let Some(queue) = json_string(body, "QueueUrl") {
        aws.insert("queue_url".into(), queue.into());
    }
    if service == "s3" {
        if let Some(bucket) = s3_bucket(request.uri()) {
            aws.insert("bucket_name".into(), bucket.into());
        }
    }
    aws.insert("operation".into(), operation.into());
    aws.insert("region".into(), region.into());
    xray::Call {
        name: name.to_owned(),
        namespace: "aws",
        start_time: xray::now(),
        aws,
        ..xray::Call::default()
    }
}

/// The string value of a top-level `"key":"…"` of a JSON request body, found without parsing
/// it (an item may be 400 KB). An attribute named like the key is followed by `{`, and a value
/// containing the text has its quotes escaped, so neither matches.
fn json_string(body: &[u8], key: &str) -> Option<String> {
    let needle = format!("\"{key}\":\"");
    let start = body
        .windows(needle.len())
        .rposition(|w| w == needle.as_bytes())?
        + needle.len();
    let end = body[start..].iter().position(|b| *b == b'"')?;
    std::str::from_utf8(&body[start..start + end])
        .ok()
        .map(str::to_owned)
}

fn s3_operation(request: &HttpRequest) -> &'static str {
    let query = request.uri().split_once('?').map_or("", |(_, q)| q);
    let has = |name: &str| {
        query
            .split('&')
            .any(|pair| pair == name || pair.starts_with(&format!("{name}=")))
    };
    let copy = request.headers().get("x-amz-copy-source").is_some();
    match request.method() {
        "GET" if has("list-type") => "ListObjectsV2",
        "GET" => "GetObject",
        "HEAD" => "HeadObject",
        "PUT" if has("uploadId") && copy => "UploadPartCopy",
        "PUT" if has("uploadId") => "UploadPart",
        "PUT" if copy => "CopyObject",
        "PUT" => "PutObject",
        "POST" if has("uploads") => "CreateMultipartUpload",
        "POST" if has("uploadId") => "CompleteMultipartUpload",
        "POST" if has("delete") => "DeleteObjects",
        "DELETE" if has("uploadId") => "AbortMultipartUpload",
        "DELETE" => "DeleteObject",
        _ => "",
    }
}

/// The bucket of an S3 URL: virtual-hosted (`bucket.s3.region.amazonaws.com`) or path-style
/// (`host/bucket/key`, as moto and custom endpoints are addressed).
fn s3_bucket(uri: &str) -> Option<&str> {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = host.split(':').next().unwrap_or(host);
    if let Some((bucket, _)) = host.split_once(".s3.").or_else(|| host.split_once(".s3-")) {
        return Some(bucket);
    }
    path.split(['/', '?']).next().filter(|b| !b.is_empty())
}

/// How every SDK client behaves: short timeouts and few retries, because every sender has a
/// deadline (1.5 s for the strictest, `docs/protocols.md` §1.5) and retries a push that failed. Clients with longer work
/// (S3 copies) override the timeouts for themselves.
pub fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_millis(500))
        .operation_attempt_timeout(Duration::from_millis(800))
        .operation_timeout(Duration::from_millis(1_200))
        .build()
}

pub fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(20))
}

/// The full SDK loader (profiles, SSO, IMDS...): for the local server, which runs anywhere.
pub async fn sdk_config() -> Result<SdkConfig, ConfigError> {
    Ok(aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client()?)
        .timeout_config(timeout_config())
        .retry_config(retry_config())
        .load()
        .await)
}

/// The events store on `table`, its puts sent directly (`crate::store::dynamo::direct`)
/// wherever the configuration lets that path send what the SDK would, on a pool of their own.
pub fn dynamo_store(config: &SdkConfig, table: impl Into<String>) -> DynamoStore {
    let http = crate::sdk_http::SdkHttpClient::new().ok();
    dynamo_store_on(config, table, http.as_ref())
}

/// [`dynamo_store`] for a Lambda function's [`lambda_sdk_config`]: the direct puts share the
/// pool of the SDK's requests, so that the connection `DYNAMODB_WARM_UP` opens (and its TLS
/// handshake) serves the first put.
pub fn lambda_dynamo_store(config: &SdkConfig, table: impl Into<String>) -> DynamoStore {
    let http = crate::sdk_http::SdkHttpClient::shared().ok();
    dynamo_store_on(config, table, http.as_ref())
}

/// Within the timeouts the SDK client has: one attempt's for the direct attempt, and the whole
/// operation's for it and the SDK's after it together.
fn dynamo_store_on(
    config: &SdkConfig,
    table: impl Into<String>,
    http: Option<&crate::sdk_http::SdkHttpClient>,
) -> DynamoStore {
    /// For a configuration that bounds neither an attempt nor an operation.
    const UNBOUNDED_ATTEMPT: Duration = Duration::from_secs(3);
    let store = DynamoStore::new(dynamodb_client(config), table);
    let (attempt, operation) = config
        .timeout_config()
        .map(|t| (t.operation_attempt_timeout(), t.operation_timeout()))
        .unwrap_or_default();
    let attempt = match (attempt, operation) {
        (Some(attempt), Some(operation)) => attempt.min(operation),
        (attempt, operation) => attempt.or(operation).unwrap_or(UNBOUNDED_ATTEMPT),
    };
    let direct = http
        .and_then(|http| DirectPut::for_config(config, dynamodb_connector(config, http), attempt));
    match direct {
        Some(direct) => store.with_direct_put(direct, operation.unwrap_or(Duration::MAX)),
        None => store,
    }
}

/// Every DynamoDB client. Stalled-stream protection is off: it ends a body that moves slower
/// than 1 B/s after a 5 s grace period, and [`timeout_config`] ends every DynamoDB operation
/// after 1.2 s, so it could never act; what it costs is per request (3.5% of the client side
/// of a `PutItem`, `cargo bench -p hub-core --bench dynamo_request`, in `BENCHMARKS.md`). S3
/// clients, whose reads may last 30 s, keep it.
pub fn dynamodb_client(config: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(config)
            .stalled_stream_protection(
                aws_sdk_dynamodb::config::StalledStreamProtectionConfig::disabled(),
            )
            .build(),
    )
}

/// The SDK configuration, made on first use: a local server whose routes need no AWS service
/// never loads credentials, and a Lambda function pays only for what it reads.
pub struct LazyAws {
    kind: LoaderKind,
    config: tokio::sync::OnceCell<Result<SdkConfig, ConfigError>>,
}

enum LoaderKind {
    /// [`lambda_sdk_config`]: the environment Lambda gives, no I/O.
    Lambda,
    /// [`sdk_config`]: every provider, for a server on a VM or a laptop.
    Full,
}

impl LazyAws {
    pub fn lambda() -> Self {
        LazyAws {
            kind: LoaderKind::Lambda,
            config: tokio::sync::OnceCell::new(),
        }
    }

    pub fn full() -> Self {
        LazyAws {
            kind: LoaderKind::Full,
            config: tokio::sync::OnceCell::new(),
        }
    }

    /// A configuration made elsewhere (tests against moto, tools that already hold one).
    pub fn ready(config: SdkConfig) -> Self {
        LazyAws {
            kind: LoaderKind::Lambda,
            config: tokio::sync::OnceCell::new_with(Some(Ok(config))),
        }
    }

    pub async fn config(&self) -> Result<&SdkConfig, ConfigError> {
        self.config
            .get_or_init(|| async {
                match self.kind {
                    LoaderKind::Lambda => lambda_sdk_config(),
                    LoaderKind::Full => sdk_config().await,
                }
            })
            .await
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// When the DynamoDB connection (TCP, TLS, credentials, signing) is opened, set by
/// `DYNAMODB_WARM_UP`. `BENCHMARKS.md` compares the three with a TLS handshake in the path
/// ("The cold path with TLS"): on the one-thread runtime nothing runs beside the first event, so
/// `background` cannot overlap the handshake with it and only lengthens init, and `init`
/// lengthens init by the whole set-up. `off` gave the shortest spawn to first answer, and is
/// the default; `init` suits provisioned concurrency, where init is paid ahead of any event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WarmUp {
    /// On the first callback.
    Off,
    /// Started at init, finished while the runtime already polls for the first event.
    Background,
    /// Finished before the runtime polls: a longer init, the shortest first callback.
    Init,
}

impl WarmUp {
    pub const VARIABLE: &'static str = "DYNAMODB_WARM_UP";

    pub fn from_vars(vars: &impl Vars) -> Result<Self, ConfigError> {
        vars.parsed_or(Self::VARIABLE, WarmUp::Off)
    }

    /// Runs the warm-up request as configured. Its failures are ignored: the callback that
    /// follows reports the store's state itself.
    pub async fn apply(self, store: &DynamoStore) {
        match self {
            WarmUp::Off => {}
            WarmUp::Background => {
                let store = store.clone();
                tokio::spawn(async move { store.warm_up().await });
            }
            WarmUp::Init => store.warm_up().await,
        }
    }
}

impl FromStr for WarmUp {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "off" => Ok(WarmUp::Off),
            "background" => Ok(WarmUp::Background),
            "init" => Ok(WarmUp::Init),
            _ => Err("expected off, background or init".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{lambda_sdk_config_from, service_variable, WarmUp};
    use std::collections::HashMap;

    #[test]
    fn service_variables_are_named_like_the_sdk_names_them() {
        assert_eq!(
            service_variable("AWS_ENDPOINT_URL", "DynamoDB"),
            "AWS_ENDPOINT_URL_DYNAMODB"
        );
        assert_eq!(
            service_variable("AWS_ENDPOINT_URL", "S3"),
            "AWS_ENDPOINT_URL_S3"
        );
        assert_eq!(
            service_variable("AWS_ENDPOINT_URL", "Elastic Beanstalk"),
            "AWS_ENDPOINT_URL_ELASTIC_BEANSTALK"
        );
    }

    #[test]
    fn lambda_config_takes_region_and_endpoint_from_the_variables() {
        let vars = HashMap::from([
            ("AWS_REGION".to_owned(), "eu-central-1".to_owned()),
            (
                "AWS_ENDPOINT_URL".to_owned(),
                "http://127.0.0.1:5000".to_owned(),
            ),
        ]);
        let config = lambda_sdk_config_from(&vars).unwrap();
        assert_eq!(config.region().map(|r| r.as_ref()), Some("eu-central-1"));
        assert_eq!(config.endpoint_url(), Some("http://127.0.0.1:5000"));
        assert!(config.credentials_provider().is_some());
        assert!(config.behavior_version().is_some());
    }

    #[test]
    fn lambda_config_falls_back_to_the_default_region_and_fails_closed_without_one() {
        let fallback = HashMap::from([("AWS_DEFAULT_REGION".to_owned(), "us-west-2".to_owned())]);
        let config = lambda_sdk_config_from(&fallback).unwrap();
        assert_eq!(config.region().map(|r| r.as_ref()), Some("us-west-2"));
        assert_eq!(config.endpoint_url(), None);
        let err = lambda_sdk_config_from(&HashMap::new()).unwrap_err();
        assert_eq!(err.variable(), "AWS_REGION");
    }

    fn vars(value: Option<&str>) -> HashMap<String, String> {
        value
            .map(|v| HashMap::from([(WarmUp::VARIABLE.to_owned(), v.to_owned())]))
            .unwrap_or_default()
    }

    #[test]
    fn parses_each_mode_and_defaults_to_off() {
        assert_eq!(WarmUp::from_vars(&vars(None)), Ok(WarmUp::Off));
        assert_eq!(WarmUp::from_vars(&vars(Some("off"))), Ok(WarmUp::Off));
        assert_eq!(WarmUp::from_vars(&vars(Some("Init"))), Ok(WarmUp::Init));
        assert_eq!(
            WarmUp::from_vars(&vars(Some(" background "))),
            Ok(WarmUp::Background)
        );
    }

    #[test]
    fn rejects_unknown_modes_naming_the_variable() {
        let err = WarmUp::from_vars(&vars(Some("eager"))).unwrap_err();
        assert_eq!(err.variable(), "DYNAMODB_WARM_UP");
    }
}
