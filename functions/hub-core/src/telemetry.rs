//! JSON logs through `tracing`, and X-Ray subsegments ([`xray`]). Inside an invocation, every
//! line carries the Lambda request id:
//! the runtime opens a span with `requestId`, and the formatter writes the current span.
//!
//! The filter is `Targets`, not `EnvFilter`: the same `RUST_LOG` syntax for levels and
//! `target=level` pairs, without the regex engine that `EnvFilter` links in (it costs size and
//! start-up time in every bootstrap).

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Level from Lambda's advanced logging controls (`AWS_LAMBDA_LOG_LEVEL`), else `RUST_LOG`,
/// else info. Safe to call more than once (tests): later calls do nothing.
pub fn init() {
    let filter = filter(
        std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(),
        std::env::var("RUST_LOG").ok().as_deref(),
    );
    let format = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false);
    let _ = tracing_subscriber::registry()
        .with(format)
        .with(filter)
        .try_init();
}

/// `RUST_LOG` may name targets (`stack_hook=debug,warn`); `AWS_LAMBDA_LOG_LEVEL` is one level
/// and wins for the default. The SDK's own debug lines would carry request and response
/// details, so its crates stay at warn whatever is asked.
fn filter(lambda_level: Option<&str>, rust_log: Option<&str>) -> Targets {
    let directives: Targets = rust_log
        .and_then(|text| text.parse().ok())
        .unwrap_or_default();
    let default = lambda_level
        .and_then(|text| text.trim().parse::<LevelFilter>().ok())
        .or_else(|| directives.default_level())
        .unwrap_or(LevelFilter::INFO);
    directives
        .with_default(default)
        .with_target("aws_smithy_runtime", LevelFilter::WARN)
        .with_target("aws_config", LevelFilter::WARN)
        // At trace the runtime logs whole invocations, query-string tokens included.
        .with_target("lambda_runtime", LevelFilter::INFO)
        .with_target("lambda_http", LevelFilter::INFO)
}

/// X-Ray subsegments for the calls a request makes (AWS SDK calls, certificate fetches), sent
/// to the X-Ray daemon over UDP, so that a slow request shows where its time went.
///
/// The parent is the Lambda function's segment, named by the invocation's trace header
/// (`Root=…;Parent=…;Sampled=1`; `lambda_runtime` gives it as the context's `xray_trace_id`).
/// Nothing is sent unless the request is sampled and `AWS_XRAY_DAEMON_ADDRESS` is set. Sending
/// is one non-blocking UDP datagram: it never waits, and a failure is dropped, never a
/// request's error.
pub mod xray {
    use std::future::Future;
    use std::hash::{BuildHasher, Hasher};
    use std::net::{SocketAddr, UdpSocket};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    use std::time::{SystemTime, UNIX_EPOCH};

    /// The variable Lambda sets to the daemon's address: `host:port`, or
    /// `tcp:host:port udp:host:port`.
    pub const DAEMON_VARIABLE: &str = "AWS_XRAY_DAEMON_ADDRESS";

    /// Where a sampled request's subsegments go, and under which segment.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct TraceContext {
        pub trace_id: String,
        pub parent_id: String,
        pub daemon: SocketAddr,
    }

    impl TraceContext {
        /// From a trace header; `None` unless it is sampled and names its root and parent.
        pub fn parse(header: &str, daemon: SocketAddr) -> Option<TraceContext> {
            let (mut root, mut parent, mut sampled) = (None, None, false);
            for part in header.split(';') {
                match part.trim().split_once('=') {
                    Some(("Root", v)) => root = Some(v),
                    Some(("Parent", v)) => parent = Some(v),
                    Some(("Sampled", v)) => sampled = v == "1",
                    _ => {}
                }
            }
            let ok = |id: &str, len: usize| {
                id.len() <= len && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            };
            match (root, parent) {
                (Some(root), Some(parent)) if sampled && ok(root, 35) && ok(parent, 16) => {
                    Some(TraceContext {
                        trace_id: root.to_owned(),
                        parent_id: parent.to_owned(),
                        daemon,
                    })
                }
                _ => None,
            }
        }

        /// From a Lambda invocation's trace header and the process's daemon address.
        pub fn for_invocation(header: Option<&str>) -> Option<TraceContext> {
            TraceContext::parse(header?, daemon()?)
        }
    }

    /// The daemon's UDP address from `AWS_XRAY_DAEMON_ADDRESS`, read once.
    pub fn daemon() -> Option<SocketAddr> {
        static DAEMON: OnceLock<Option<SocketAddr>> = OnceLock::new();
        *DAEMON.get_or_init(|| parse_daemon(&std::env::var(DAEMON_VARIABLE).ok()?))
    }

    fn parse_daemon(value: &str) -> Option<SocketAddr> {
        let udp = value
            .split_whitespace()
            .find_map(|part| part.strip_prefix("udp:"))
            .unwrap_or(value.trim());
        udp.parse().ok()
    }

    tokio::task_local! {
        static CURRENT: TraceContext;
    }

    /// Runs `work` with `context` as the parent of the subsegments it records (none when
    /// `None`).
    pub async fn in_trace<F: Future>(context: Option<TraceContext>, work: F) -> F::Output {
        match context {
            Some(context) => CURRENT.scope(context, work).await,
            None => work.await,
        }
    }

    /// The current request's trace, if it is sampled.
    pub fn current() -> Option<TraceContext> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Seconds since the epoch, as X-Ray's times are.
    pub fn now() -> f64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    }

    /// 16 hex digits, unique enough for a subsegment id (not a secret: std's hasher keys are
    /// random per process, the counter makes each id differ).
    pub fn new_id() -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        static KEYS: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
        let mut hasher = KEYS.get_or_init(Default::default).build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        format!("{:016x}", hasher.finish())
    }

    /// One finished call, as a subsegment.
    #[derive(Debug, Clone, Default)]
    pub struct Call {
        /// `DynamoDB`, `S3`, `SSM`, `SQS`, or a remote host.
        pub name: String,
        /// `aws` for an AWS SDK call, `remote` for anything else.
        pub namespace: &'static str,
        pub start_time: f64,
        pub end_time: f64,
        /// The `aws` object: operation, region, request_id, table_name, queue_url, bucket_name.
        pub aws: serde_json::Map<String, serde_json::Value>,
        /// The request's URL, for a remote call (never one with credentials).
        pub url: Option<String>,
        /// The response's status; `None` when no response came (a connection error, a timeout).
        pub status: Option<u16>,
        pub throttled: bool,
    }

    impl Call {
        /// The subsegment document: `error` for a 4xx, `throttle` beside it for a 429 or a
        /// throttling error, `fault` for a 5xx or no response.
        pub fn document(&self, context: &TraceContext) -> serde_json::Value {
            let status = self.status.unwrap_or(0);
            let mut doc = serde_json::json!({
                "type": "subsegment",
                "name": self.name,
                "id": new_id(),
                "trace_id": context.trace_id,
                "parent_id": context.parent_id,
                "start_time": self.start_time,
                "end_time": self.end_time,
                "namespace": self.namespace,
                "error": (400..500).contains(&status),
                "throttle": self.throttled || status == 429,
                "fault": self.status.is_none() || status >= 500,
            });
            if !self.aws.is_empty() {
                doc["aws"] = serde_json::Value::Object(self.aws.clone());
            }
            let mut http = serde_json::Map::new();
            if let Some(url) = &self.url {
                http.insert(
                    "request".into(),
                    serde_json::json!({"method": "GET", "url": url}),
                );
            }
            if let Some(status) = self.status {
                http.insert("response".into(), serde_json::json!({"status": status}));
            }
            if !http.is_empty() {
                doc["http"] = serde_json::Value::Object(http);
            }
            doc
        }

        /// Sends the call to the daemon as a subsegment of `context`.
        pub fn send(&self, context: &TraceContext) {
            let mut datagram = String::from("{\"format\": \"json\", \"version\": 1}\n");
            datagram.push_str(&self.document(context).to_string());
            if let Some(socket) = socket() {
                // Fire and forget: a full buffer or an absent daemon loses the subsegment only.
                let _ = socket.send_to(datagram.as_bytes(), context.daemon);
            }
        }
    }

    fn socket() -> Option<&'static UdpSocket> {
        static SOCKET: OnceLock<Option<UdpSocket>> = OnceLock::new();
        SOCKET
            .get_or_init(|| {
                let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
                socket.set_nonblocking(true).ok()?;
                Some(socket)
            })
            .as_ref()
    }

    /// Runs a call to a remote host (a certificate fetch) and records it as a subsegment when
    /// the request is sampled. `status` reads the response's status from the call's result.
    pub async fn remote<T, F>(url: &str, call: F, status: impl Fn(&T) -> Option<u16>) -> T
    where
        F: Future<Output = T>,
    {
        let Some(context) = current() else {
            return call.await;
        };
        let start_time = now();
        let output = call.await;
        let host = url
            .split_once("://")
            .map_or(url, |(_, rest)| rest)
            .split(['/', '?'])
            .next()
            .unwrap_or_default()
            .rsplit('@')
            .next()
            .unwrap_or_default();
        Call {
            name: host.to_owned(),
            namespace: "remote",
            start_time,
            end_time: now(),
            url: Some(url.split('?').next().unwrap_or_default().to_owned()),
            status: status(&output),
            ..Call::default()
        }
        .send(&context);
        output
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        const ADDR: &str = "127.0.0.1:2000";

        #[test]
        fn only_sampled_headers_with_root_and_parent_trace() {
            let daemon: SocketAddr = ADDR.parse().unwrap();
            let header =
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
            let context = TraceContext::parse(header, daemon).unwrap();
            assert_eq!(context.trace_id, "1-5759e988-bd862e3fe1be46a994272793");
            assert_eq!(context.parent_id, "53995c3f42cd8ad8");
            for unsampled in [
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0",
                "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8",
                "Root=1-x\"injected;Parent=53995c3f42cd8ad8;Sampled=1",
            ] {
                assert_eq!(TraceContext::parse(unsampled, daemon), None, "{unsampled}");
            }
        }

        #[test]
        fn the_daemon_address_takes_the_udp_part() {
            assert_eq!(parse_daemon(ADDR), ADDR.parse().ok());
            assert_eq!(
                parse_daemon("tcp:127.0.0.1:2000 udp:169.254.79.129:2001"),
                "169.254.79.129:2001".parse().ok()
            );
            assert_eq!(parse_daemon("nonsense"), None);
        }

        #[tokio::test]
        async fn a_certificate_fetch_is_a_remote_subsegment() {
            let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
            receiver
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let context = TraceContext::parse(
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
                receiver.local_addr().unwrap(),
            );
            let url = "https://sns.us-east-1.amazonaws.com/cert.pem?x=1";
            let got = in_trace(context, remote(url, async { 404u16 }, |s| Some(*s))).await;
            assert_eq!(got, 404);
            let mut buf = [0u8; 4096];
            let n = receiver.recv(&mut buf).unwrap();
            let text = std::str::from_utf8(&buf[..n]).unwrap();
            let (header, body) = text.split_once('\n').unwrap();
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(header).unwrap(),
                serde_json::json!({"format": "json", "version": 1})
            );
            let doc: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(doc["type"], "subsegment");
            assert_eq!(doc["name"], "sns.us-east-1.amazonaws.com");
            assert_eq!(doc["namespace"], "remote");
            assert_eq!(doc["parent_id"], "53995c3f42cd8ad8");
            assert_eq!(
                doc["http"]["request"]["url"],
                "https://sns.us-east-1.amazonaws.com/cert.pem"
            );
            assert_eq!(doc["http"]["response"]["status"], 404);
            assert_eq!(doc["error"], true);
            assert_eq!(doc["fault"], false);
            assert_eq!(doc["id"].as_str().unwrap().len(), 16);
            assert!(doc["end_time"].as_f64().unwrap() >= doc["start_time"].as_f64().unwrap());
        }

        #[tokio::test]
        async fn outside_a_sampled_request_nothing_is_sent() {
            assert!(current().is_none());
            let got = remote("https://example.com/x", async { 7 }, |_| Some(200)).await;
            assert_eq!(got, 7);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::filter;
    use tracing::Level;

    #[test]
    fn info_by_default() {
        let f = filter(None, None);
        assert!(f.would_enable("stack_hook", &Level::INFO));
        assert!(!f.would_enable("stack_hook", &Level::DEBUG));
    }

    #[test]
    fn lambda_level_wins_over_rust_log_default() {
        let f = filter(Some("ERROR"), Some("debug"));
        assert!(f.would_enable("hub_core", &Level::ERROR));
        assert!(!f.would_enable("hub_core", &Level::WARN));
    }

    #[test]
    fn rust_log_targets_apply() {
        let f = filter(None, Some("warn,some_function=debug"));
        assert!(f.would_enable("some_function::handler", &Level::DEBUG));
        assert!(!f.would_enable("hub_core", &Level::INFO));
        assert!(f.would_enable("hub_core", &Level::WARN));
    }

    #[test]
    fn sdk_stays_quiet_even_at_trace() {
        let f = filter(Some("trace"), Some("trace"));
        assert!(f.would_enable("hub_core", &Level::TRACE));
        assert!(!f.would_enable("aws_smithy_runtime::client", &Level::INFO));
        assert!(!f.would_enable("aws_config::meta", &Level::DEBUG));
        assert!(f.would_enable("aws_smithy_runtime", &Level::WARN));
    }

    #[test]
    fn the_runtime_never_logs_raw_invocations() {
        let f = filter(Some("TRACE"), Some("trace"));
        assert!(!f.would_enable("lambda_runtime::layers", &Level::DEBUG));
        assert!(!f.would_enable("lambda_http", &Level::TRACE));
        assert!(f.would_enable("lambda_runtime", &Level::INFO));
    }

    #[test]
    fn unparsable_values_fall_back_to_info() {
        let f = filter(Some("loud"), Some("=="));
        assert!(f.would_enable("hub_core", &Level::INFO));
        assert!(!f.would_enable("hub_core", &Level::DEBUG));
    }
}
