//! Metrics, recorded once where they are known and written two ways: on Lambda as one CloudWatch
//! Embedded Metric Format line per request (no API call on the request path: CloudWatch Logs
//! extracts the metrics from a stdout line that is itself the EMF object), and always into an
//! in-process registry that the local server serves at `GET /metrics` in Prometheus text
//! format.
//!
//! The edge ([`Metrics::observe`], called by `lambda::run` and by the local server's routes
//! through `http::shared`) opens a per-request scope, runs the handler, and decides the request's
//! [`Outcome`]: the one a handler attached to its response ([`Outcome::mark`]), else what the
//! status says. Inside the scope, [`time_store`] adds the store's latency and [`mirror`] the
//! S3 mirror's outcome to the same line.
//!
//! Every dimension has a bounded set of values (a source, an outcome, a mirror result):
//! never a subject or an id, which would make one CloudWatch metric per event.

use crate::event::Source;
use http::StatusCode;
use lambda_http::{Body, Response};
use std::cell::RefCell;
use std::fmt::Write as _;
use std::future::Future;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "CallbackHub";

/// What became of one request to a sender's route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A new event was stored.
    Stored,
    /// Every event of the request was already stored: nothing was written.
    Duplicate,
    /// A sender's URL check or subscription handshake, answered without storing anything.
    Handshake,
    /// Authentication failed: a wrong token or signature, a topic not allowed (401, 403).
    Refused,
    /// Not a request this route understands (400, 404, 405, 415, 422).
    Malformed,
    /// Larger than the body cap or than one stored item (413).
    TooLarge,
    /// The store or a dependency failed, or the route is not configured (5xx): the sender
    /// retries.
    Unavailable,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Stored,
        Outcome::Duplicate,
        Outcome::Handshake,
        Outcome::Refused,
        Outcome::Malformed,
        Outcome::TooLarge,
        Outcome::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Stored => "stored",
            Outcome::Duplicate => "duplicate",
            Outcome::Handshake => "handshake",
            Outcome::Refused => "refused",
            Outcome::Malformed => "malformed",
            Outcome::TooLarge => "too_large",
            Outcome::Unavailable => "unavailable",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// What a status says when the handler said nothing: a 2xx stored something.
    pub fn from_status(status: StatusCode) -> Outcome {
        match status.as_u16() {
            200..=299 => Outcome::Stored,
            401 | 403 => Outcome::Refused,
            413 => Outcome::TooLarge,
            400..=499 => Outcome::Malformed,
            _ => Outcome::Unavailable,
        }
    }

    /// The outcome of a response: the one its handler attached, else its status's. A marked
    /// outcome only refines a success: an error status always wins, so a handler cannot hide
    /// a refusal by marking it.
    pub fn of(response: &Response<Body>) -> Outcome {
        let by_status = Outcome::from_status(response.status());
        match response.extensions().get::<Outcome>() {
            Some(marked) if by_status == Outcome::Stored => *marked,
            _ => by_status,
        }
    }

    /// Attaches this outcome to `response`, for the edge to count.
    pub fn mark(self, mut response: Response<Body>) -> Response<Body> {
        response.extensions_mut().insert(self);
        response
    }
}

/// The results of one delivery attempt of an outbound webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryOutcome {
    /// The receiver answered 2xx.
    Delivered,
    /// It failed and will be tried again.
    Retrying,
    /// It failed for good (410, a template error, the schedule exhausted).
    Failed,
}

impl DeliveryOutcome {
    pub const ALL: [DeliveryOutcome; 3] = [
        DeliveryOutcome::Delivered,
        DeliveryOutcome::Retrying,
        DeliveryOutcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Retrying => "retrying",
            DeliveryOutcome::Failed => "failed",
        }
    }
}

/// What one request collects while it runs; read by the edge when it ends.
#[derive(Default)]
struct Scope {
    /// Milliseconds of each store write, in order (an S3 batch has several).
    store_ms: Vec<f64>,
    /// Each mirror result and how many records had it.
    mirror: Vec<(&'static str, u64)>,
}

tokio::task_local! {
    static SCOPE: RefCell<Scope>;
}

/// Runs a store write, adding its latency to the current request's metrics. Outside a request
/// (a command, a test of the handler alone) it only runs the write.
pub async fn time_store<F: Future>(write: F) -> F::Output {
    let started = Instant::now();
    let output = write.await;
    let ms = millis(started.elapsed());
    let _ = SCOPE.try_with(|scope| scope.borrow_mut().store_ms.push(ms));
    output
}

/// Counts one record's S3 mirror result (`MirrorOutcome::as_str`: a closed set) in the current
/// request's metrics.
pub fn mirror(result: &'static str) {
    let _ = SCOPE.try_with(|scope| {
        let mut scope = scope.borrow_mut();
        match scope.mirror.iter_mut().find(|(r, _)| *r == result) {
            Some((_, count)) => *count += 1,
            None => scope.mirror.push((result, 1)),
        }
    });
}

/// The source a request is counted under: a sender's route, for anything but a read (`GET
/// /stacks/{stack}` is a user's query, not a callback).
pub fn receiving(source: Option<Source>, request: &lambda_http::Request) -> Option<Source> {
    source.filter(|_| !matches!(*request.method(), http::Method::GET | http::Method::HEAD))
}

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    /// Cumulative in the output; stored per bucket, the last one is +Inf.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn observe(&self, ms: f64) {
        let seconds = ms / 1000.0;
        let bucket = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((ms * 1000.0) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = BUCKETS.get(i).map_or("+Inf".to_owned(), f64::to_string);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1_000_000.0;
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(
            out,
            "{name}_count{braces} {}",
            self.count.load(Ordering::Relaxed)
        );
    }
}

const NO_GAUGE: u64 = u64::MAX;

/// The process's counters since it started: fixed arrays of atomics, so recording costs no
/// lock and no allocation (the mirror's few results aside).
struct Registry {
    received: [[AtomicU64; Outcome::ALL.len()]; Source::ALL.len()],
    store_latency: [Histogram; Source::ALL.len()],
    mirror: Mutex<Vec<(&'static str, u64)>>,
    deliveries: [AtomicU64; DeliveryOutcome::ALL.len()],
    delivery_latency: Histogram,
    /// Seconds; [`NO_GAUGE`] until first measured.
    oldest_pending: AtomicU64,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            received: Default::default(),
            store_latency: Default::default(),
            mirror: Mutex::new(Vec::new()),
            deliveries: Default::default(),
            delivery_latency: Histogram::default(),
            oldest_pending: AtomicU64::new(NO_GAUGE),
        }
    }
}

fn source_index(source: Source) -> usize {
    Source::ALL
        .iter()
        .position(|s| *s == source)
        .expect("ALL lists every source")
}

/// Where metrics go: the registry always, and EMF lines when a writer is set.
pub struct Metrics {
    emf: Option<Mutex<Box<dyn Write + Send>>>,
    /// Written as a property of every EMF line, never as a dimension.
    function_name: Option<String>,
    registry: Registry,
}

static GLOBAL: OnceLock<Metrics> = OnceLock::new();

impl Metrics {
    /// The process's metrics: EMF on stdout under Lambda (`AWS_LAMBDA_FUNCTION_NAME` is set),
    /// the registry alone elsewhere (the local server, the commands).
    pub fn global() -> &'static Metrics {
        GLOBAL.get_or_init(|| match std::env::var("AWS_LAMBDA_FUNCTION_NAME") {
            Ok(name) => Metrics::with_writer(Box::new(StdoutLines)).function_name(Some(name)),
            Err(_) => Metrics::registry_only(),
        })
    }

    pub fn registry_only() -> Metrics {
        Metrics {
            emf: None,
            function_name: None,
            registry: Registry::default(),
        }
    }

    /// EMF lines to `writer` (each written whole, newline included, in one call).
    pub fn with_writer(writer: Box<dyn Write + Send>) -> Metrics {
        Metrics {
            emf: Some(Mutex::new(writer)),
            ..Metrics::registry_only()
        }
    }

    pub fn function_name(mut self, name: Option<String>) -> Metrics {
        self.function_name = name;
        self
    }

    /// Runs one request of a sender's route (`source`; `None` for routes that receive no
    /// events, which are not counted) and records it.
    pub async fn observe<F>(&self, source: Option<Source>, handle: F) -> Response<Body>
    where
        F: Future<Output = Response<Body>>,
    {
        let Some(source) = source else {
            return handle.await;
        };
        let (response, scope) = SCOPE
            .scope(RefCell::new(Scope::default()), async {
                let response = handle.await;
                (response, SCOPE.with(|scope| scope.take()))
            })
            .await;
        self.received(
            source,
            Outcome::of(&response),
            &scope.store_ms,
            &scope.mirror,
        );
        response
    }

    /// Records one request: `Received` by source and outcome, each store write's latency, and
    /// the mirror results.
    pub fn received(
        &self,
        source: Source,
        outcome: Outcome,
        store_ms: &[f64],
        mirror: &[(&'static str, u64)],
    ) {
        let s = source_index(source);
        self.registry.received[s][outcome.index()].fetch_add(1, Ordering::Relaxed);
        for ms in store_ms {
            self.registry.store_latency[s].observe(*ms);
        }
        if !mirror.is_empty() {
            let mut counts = self
                .registry
                .mirror
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for (result, n) in mirror {
                match counts.iter_mut().find(|(r, _)| r == result) {
                    Some((_, count)) => *count += n,
                    None => counts.push((result, *n)),
                }
            }
        }
        if self.emf.is_none() {
            return;
        }
        let mut line = self.header();
        line.push_str(r#"{"Namespace":"CallbackHub","Dimensions":[["Source","Outcome"]],"Metrics":[{"Name":"Received","Unit":"Count"}]}"#);
        if !store_ms.is_empty() {
            line.push_str(r#",{"Namespace":"CallbackHub","Dimensions":[["Source"]],"Metrics":[{"Name":"StoreLatency","Unit":"Milliseconds"}]}"#);
        }
        // A dimension has one value per line: the first mirror result shares the request's
        // line, any other result of a mixed S3 batch gets its own.
        let mut mirror = mirror.iter();
        let first = mirror.next();
        if first.is_some() {
            line.push_str(r#",{"Namespace":"CallbackHub","Dimensions":[["Mirror"]],"Metrics":[{"Name":"MirrorOutcome","Unit":"Count"}]}"#);
        }
        let _ = write!(
            line,
            r#"]}},"Source":"{}","Outcome":"{}","Received":1"#,
            source.as_str(),
            outcome.as_str()
        );
        if !store_ms.is_empty() {
            line.push_str(r#","StoreLatency":"#);
            push_values(&mut line, store_ms);
        }
        if let Some((result, n)) = first {
            let _ = write!(line, r#","Mirror":"{result}","MirrorOutcome":{n}"#);
        }
        self.finish(line);
        for (result, n) in mirror {
            let mut line = self.header();
            let _ = write!(
                line,
                r#"{{"Namespace":"CallbackHub","Dimensions":[["Mirror"]],"Metrics":[{{"Name":"MirrorOutcome","Unit":"Count"}}]}}]}},"Source":"{}","Mirror":"{result}","MirrorOutcome":{n}"#,
                source.as_str()
            );
            self.finish(line);
        }
    }

    /// Records one delivery attempt of an outbound webhook and how long it took.
    pub fn delivery(&self, outcome: DeliveryOutcome, took: Duration) {
        let ms = millis(took);
        self.registry.deliveries[outcome as usize].fetch_add(1, Ordering::Relaxed);
        self.registry.delivery_latency.observe(ms);
        if self.emf.is_none() {
            return;
        }
        let mut line = self.header();
        let _ = write!(
            line,
            r#"{{"Namespace":"CallbackHub","Dimensions":[["Outcome"]],"Metrics":[{{"Name":"DeliveryAttempt","Unit":"Count"}},{{"Name":"DeliveryLatency","Unit":"Milliseconds"}}]}}]}},"Outcome":"{}","DeliveryAttempt":1,"DeliveryLatency":{}"#,
            outcome.as_str(),
            ms
        );
        self.finish(line);
    }

    /// Records how long the oldest delivery still pending has been due (zero when none is).
    pub fn oldest_pending_delivery(&self, age: Duration) {
        self.registry
            .oldest_pending
            .store(age.as_secs(), Ordering::Relaxed);
        if self.emf.is_none() {
            return;
        }
        let mut line = self.header();
        // `Service` is a constant dimension: the metric is one series, and a dimension set is
        // never empty.
        let _ = write!(
            line,
            r#"{{"Namespace":"CallbackHub","Dimensions":[["Service"]],"Metrics":[{{"Name":"OldestPendingDeliveryAge","Unit":"Seconds"}}]}}]}},"Service":"webhooks","OldestPendingDeliveryAge":{}"#,
            age.as_secs()
        );
        self.finish(line);
    }

    /// `{"_aws":{"Timestamp":…,"CloudWatchMetrics":[` — the caller adds the directives.
    fn header(&self) -> String {
        let mut line = String::with_capacity(384);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let _ = write!(
            line,
            r#"{{"_aws":{{"Timestamp":{now},"CloudWatchMetrics":["#
        );
        line
    }

    fn finish(&self, mut line: String) {
        if let Some(name) = &self.function_name {
            line.push_str(r#","function_name":"#);
            line.push_str(&serde_json::Value::from(name.as_str()).to_string());
        }
        line.push_str("}\n");
        if let Some(emf) = &self.emf {
            let mut writer = emf.lock().unwrap_or_else(|p| p.into_inner());
            // Metrics never fail a request: a lost line is a lost data point.
            let _ = writer.write_all(line.as_bytes());
            let _ = writer.flush();
        }
    }

    /// The registry in Prometheus text format (version 0.0.4).
    pub fn prometheus(&self) -> String {
        let r = &self.registry;
        let mut out = String::with_capacity(8 * 1024);
        out.push_str("# HELP callback_hub_received_total Requests to a sender's route, by source and outcome.\n# TYPE callback_hub_received_total counter\n");
        for (s, source) in Source::ALL.iter().enumerate() {
            for outcome in Outcome::ALL {
                let _ = writeln!(
                    out,
                    "callback_hub_received_total{{source=\"{}\",outcome=\"{}\"}} {}",
                    source.as_str(),
                    outcome.as_str(),
                    r.received[s][outcome.index()].load(Ordering::Relaxed)
                );
            }
        }
        out.push_str("# HELP callback_hub_store_latency_seconds Time of each event store write.\n# TYPE callback_hub_store_latency_seconds histogram\n");
        for (s, source) in Source::ALL.iter().enumerate() {
            r.store_latency[s].render(
                &mut out,
                "callback_hub_store_latency_seconds",
                &format!("source=\"{}\"", source.as_str()),
            );
        }
        out.push_str("# HELP callback_hub_mirror_total S3 mirror results, by result.\n# TYPE callback_hub_mirror_total counter\n");
        for (result, n) in r.mirror.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "callback_hub_mirror_total{{result=\"{result}\"}} {n}");
        }
        out.push_str("# HELP callback_hub_delivery_attempts_total Outbound webhook delivery attempts, by outcome.\n# TYPE callback_hub_delivery_attempts_total counter\n");
        for outcome in DeliveryOutcome::ALL {
            let _ = writeln!(
                out,
                "callback_hub_delivery_attempts_total{{outcome=\"{}\"}} {}",
                outcome.as_str(),
                r.deliveries[outcome as usize].load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP callback_hub_delivery_latency_seconds Time of each delivery attempt.\n# TYPE callback_hub_delivery_latency_seconds histogram\n");
        r.delivery_latency
            .render(&mut out, "callback_hub_delivery_latency_seconds", "");
        let oldest = r.oldest_pending.load(Ordering::Relaxed);
        if oldest != NO_GAUGE {
            out.push_str("# HELP callback_hub_oldest_pending_delivery_age_seconds How long the oldest due delivery has waited.\n# TYPE callback_hub_oldest_pending_delivery_age_seconds gauge\n");
            let _ = writeln!(
                out,
                "callback_hub_oldest_pending_delivery_age_seconds {oldest}"
            );
        }
        out
    }
}

/// Stdout, each line written under one lock: a log line written at the same time by another
/// task cannot land inside it (CloudWatch reads EMF only from a line that is wholly EMF).
struct StdoutLines;

impl Write for StdoutLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stdout().lock().write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().lock().flush()
    }
}

fn millis(d: Duration) -> f64 {
    // Three decimals: microseconds are the most a latency here can mean.
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// One number, or an array of up to 100 (EMF's most values per metric).
fn push_values(line: &mut String, values: &[f64]) {
    if let [one] = values {
        let _ = write!(line, "{one}");
        return;
    }
    line.push('[');
    for (i, v) in values.iter().take(100).enumerate() {
        if i > 0 {
            line.push(',');
        }
        let _ = write!(line, "{v}");
    }
    line.push(']');
}

/// A writer whose lines a test reads back.
#[cfg(any(test, feature = "test-util"))]
#[derive(Clone, Default)]
pub struct Captured(std::sync::Arc<Mutex<Vec<u8>>>);

#[cfg(any(test, feature = "test-util"))]
impl Captured {
    /// Metrics writing their EMF lines here.
    pub fn metrics(&self) -> Metrics {
        Metrics::with_writer(Box::new(self.clone())).function_name(Some("test-function".into()))
    }

    /// Every EMF line written so far, parsed.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .expect("EMF lines are UTF-8")
            .lines()
            .map(|line| serde_json::from_str(line).expect("each EMF line is one JSON object"))
            .collect()
    }
}

#[cfg(any(test, feature = "test-util"))]
impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{empty_response, ApiError};
    use serde_json::json;

    async fn request(metrics: &Metrics, response: Response<Body>) -> Response<Body> {
        metrics
            .observe(Some(Source::Tsuru), async {
                time_store(async {}).await;
                response
            })
            .await
    }

    #[tokio::test]
    async fn one_emf_line_per_request_with_source_and_outcome_dimensions() {
        let captured = Captured::default();
        let metrics = captured.metrics();
        request(&metrics, empty_response(StatusCode::OK)).await;
        let lines = captured.lines();
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        let directives = line["_aws"]["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives[0]["Namespace"], "CallbackHub");
        assert_eq!(directives[0]["Dimensions"], json!([["Source", "Outcome"]]));
        assert_eq!(
            directives[0]["Metrics"],
            json!([{"Name": "Received", "Unit": "Count"}])
        );
        assert_eq!(directives[1]["Dimensions"], json!([["Source"]]));
        assert_eq!(
            directives[1]["Metrics"],
            json!([{"Name": "StoreLatency", "Unit": "Milliseconds"}])
        );
        assert!(line["_aws"]["Timestamp"].as_u64().unwrap() > 1_600_000_000_000);
        assert_eq!(line["Source"], "tsuru");
        assert_eq!(line["Outcome"], "stored");
        assert_eq!(line["Received"], 1);
        assert!(line["StoreLatency"].as_f64().unwrap() >= 0.0);
        assert_eq!(line["function_name"], "test-function");
    }

    #[tokio::test]
    async fn the_status_decides_unless_a_handler_marked_a_success() {
        let cases = [
            (ApiError::Unauthorized.into_response(), "refused"),
            (ApiError::forbidden("x").into_response(), "refused"),
            (ApiError::bad_request("x").into_response(), "malformed"),
            (
                ApiError::PayloadTooLarge { limit: 1 }.into_response(),
                "too_large",
            ),
            (
                ApiError::Unavailable("x".into()).into_response(),
                "unavailable",
            ),
            (ApiError::Internal.into_response(), "unavailable"),
            (
                Outcome::Duplicate.mark(empty_response(StatusCode::OK)),
                "duplicate",
            ),
            (
                Outcome::Handshake.mark(empty_response(StatusCode::OK)),
                "handshake",
            ),
            // A mark cannot turn a refusal into something else.
            (
                Outcome::Duplicate.mark(ApiError::forbidden("x").into_response()),
                "refused",
            ),
        ];
        for (response, expected) in cases {
            let captured = Captured::default();
            request(&captured.metrics(), response).await;
            assert_eq!(captured.lines()[0]["Outcome"], expected);
        }
    }

    #[tokio::test]
    async fn routes_without_a_source_and_metrics_without_a_writer_print_nothing() {
        let captured = Captured::default();
        let metrics = captured.metrics();
        metrics
            .observe(None, async { empty_response(StatusCode::OK) })
            .await;
        assert!(captured.lines().is_empty());
        let quiet = Metrics::registry_only();
        request(&quiet, empty_response(StatusCode::OK)).await;
        assert!(quiet
            .prometheus()
            .contains("callback_hub_received_total{source=\"tsuru\",outcome=\"stored\"} 1\n"));
    }

    #[tokio::test]
    async fn mirror_results_share_the_line_and_a_mixed_batch_adds_lines() {
        let captured = Captured::default();
        let metrics = captured.metrics();
        metrics
            .observe(Some(Source::S3), async {
                time_store(async {}).await;
                time_store(async {}).await;
                mirror("copied");
                mirror("failed");
                mirror("copied");
                empty_response(StatusCode::OK)
            })
            .await;
        let lines = captured.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0]["StoreLatency"].as_array().unwrap().len(), 2);
        assert_eq!(lines[0]["Mirror"], "copied");
        assert_eq!(lines[0]["MirrorOutcome"], 2);
        assert_eq!(lines[1]["Mirror"], "failed");
        assert_eq!(lines[1]["MirrorOutcome"], 1);
        assert_eq!(
            lines[1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Mirror"]])
        );
        assert!(lines[1].get("Received").is_none());
        let text = metrics.prometheus();
        assert!(text.contains("callback_hub_mirror_total{result=\"copied\"} 2\n"));
        assert!(text.contains("callback_hub_store_latency_seconds_count{source=\"s3\"} 2\n"));
    }

    #[test]
    fn deliveries_and_the_backlog_are_metrics_too() {
        let captured = Captured::default();
        let metrics = captured.metrics();
        metrics.delivery(DeliveryOutcome::Retrying, Duration::from_millis(40));
        metrics.oldest_pending_delivery(Duration::from_secs(90));
        let lines = captured.lines();
        assert_eq!(lines[0]["Outcome"], "retrying");
        assert_eq!(lines[0]["DeliveryAttempt"], 1);
        assert_eq!(lines[0]["DeliveryLatency"], 40.0);
        assert_eq!(
            lines[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Outcome"]])
        );
        assert_eq!(lines[1]["OldestPendingDeliveryAge"], 90);
        let text = metrics.prometheus();
        assert!(text.contains("callback_hub_delivery_attempts_total{outcome=\"retrying\"} 1\n"));
        assert!(text.contains("callback_hub_delivery_latency_seconds_bucket{le=\"0.05\"} 1\n"));
        assert!(text.contains("callback_hub_delivery_latency_seconds_bucket{le=\"0.025\"} 0\n"));
        assert!(text.contains("callback_hub_oldest_pending_delivery_age_seconds 90\n"));
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_at_infinity() {
        let metrics = Metrics::registry_only();
        metrics.received(Source::Stack, Outcome::Stored, &[0.5, 30.0, 60_000.0], &[]);
        let text = metrics.prometheus();
        for expected in [
            "callback_hub_store_latency_seconds_bucket{source=\"stack\",le=\"0.001\"} 1\n",
            "callback_hub_store_latency_seconds_bucket{source=\"stack\",le=\"0.05\"} 2\n",
            "callback_hub_store_latency_seconds_bucket{source=\"stack\",le=\"10\"} 2\n",
            "callback_hub_store_latency_seconds_bucket{source=\"stack\",le=\"+Inf\"} 3\n",
            "callback_hub_store_latency_seconds_count{source=\"stack\"} 3\n",
        ] {
            assert!(text.contains(expected), "{expected} in\n{text}");
        }
    }
}
