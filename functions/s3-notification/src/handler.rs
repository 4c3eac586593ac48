//! `POST /s3`: the VK handshake, VK records, and SNS envelopes carrying AWS S3 events.

use crate::ledger::MirrorLedger;
use crate::mirror::{Mirror, MirrorError, MirrorOutcome, ObjectTransfer, Origin};
use crate::records::{self, ObjectRecord, S3Notification, TestEvent};
use crate::vk::VkHandshake;
use crate::S3Config;
use http::{Method, StatusCode};
use hub_core::auth::{presented_callback_token, require_callback_token};
use hub_core::certs::Fetcher;
use hub_core::clock::Clock;
use hub_core::event::{Event, Source};
use hub_core::http::{json_response, raw_body, require_method, respond, ApiError};
use hub_core::store::{EventWriter, PutOutcome};
use lambda_http::{Body, Request, Response};
use serde_json::{json, Map, Value};
use sns::{Received, SnsVerifier};

/// The message of the error line logged when S3 refuses a mirror change for good: the template's
/// `MirrorFailed` metric filter counts these lines, and an alarm watches the metric.
pub const MIRROR_FAILED_LOG: &str = "mirror failed permanently";

pub struct S3Handler<S, C, F, T, L> {
    store: S,
    clock: C,
    config: S3Config,
    sns: SnsVerifier<F>,
    mirror: Option<Mirror<T, L>>,
}

impl<S, C, F, T, L> S3Handler<S, C, F, T, L>
where
    S: EventWriter,
    C: Clock,
    F: Fetcher,
    T: ObjectTransfer,
    L: MirrorLedger,
{
    pub fn new(
        store: S,
        clock: C,
        config: S3Config,
        sns: SnsVerifier<F>,
        mirror: Option<Mirror<T, L>>,
    ) -> Self {
        S3Handler {
            store,
            clock,
            config,
            sns,
            mirror,
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn mirror(&self) -> Option<&Mirror<T, L>> {
        self.mirror.as_ref()
    }

    pub async fn handle(&self, request: Request) -> Response<Body> {
        respond(self.dispatch(&request).await)
    }

    /// The credential decides the sender before the body is parsed: a request carrying our
    /// token is VK (authenticated first, then a handshake or records); anything else must be a
    /// verifiable SNS message. VK sends `X-Amz-Sns-Message-Type: Notification` on everything,
    /// its handshake included, so that header decides nothing.
    async fn dispatch(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        require_method(request, &[Method::POST], "POST")?;
        let body = raw_body(request, self.config.edge.max_body_bytes)?;
        if presented_callback_token(request).is_none() {
            return self.receive_sns(body).await;
        }
        require_callback_token(request, &self.vk()?.token)?;
        let object = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(object)) => object,
            _ => return Err(ApiError::bad_request("body is not a JSON object")),
        };
        if VkHandshake::detect(&object) {
            self.vk_handshake(&object)
        } else {
            self.receive_records(object).await
        }
    }

    fn vk(&self) -> Result<&crate::VkConfig, ApiError> {
        self.config
            .vk
            .as_ref()
            .ok_or_else(|| ApiError::forbidden("VK webhooks are not enabled (no S3_WEBHOOK_TOKEN)"))
    }

    /// VK registers the URL with our token in it, so the handshake carries the token too.
    fn vk_handshake(&self, object: &Map<String, Value>) -> Result<Response<Body>, ApiError> {
        let vk = self.vk()?;
        let Some(url) = &vk.webhook_url else {
            return Err(ApiError::forbidden(
                "VK handshake cannot be answered: S3_WEBHOOK_URL is not set",
            ));
        };
        let handshake =
            VkHandshake::parse(object).map_err(|e| ApiError::bad_request(e.to_string()))?;
        tracing::info!(bucket = handshake.bucket(), "VK webhook handshake answered");
        Ok(hub_core::metrics::Outcome::Handshake.mark(json_response(
            StatusCode::OK,
            &json!({"signature": handshake.signature(url.expose())}),
        )))
    }

    /// VK records, or an S3 body without an envelope, already authenticated by the token.
    async fn receive_records(
        &self,
        object: Map<String, Value>,
    ) -> Result<Response<Body>, ApiError> {
        let notification =
            records::parse_object(object).map_err(|e| ApiError::bad_request(e.to_string()))?;
        self.accept(notification, Origin::Token).await
    }

    /// The signature and the topic allow-list authenticate SNS; no token is involved.
    async fn receive_sns(&self, body: &[u8]) -> Result<Response<Body>, ApiError> {
        if !self.sns.accepts_any() {
            return Err(ApiError::forbidden(
                "missing callback token (and no SNS topic is allowed)",
            ));
        }
        let message = match self.sns.receive(body).await? {
            Received::Handshake => {
                return Ok(hub_core::metrics::Outcome::Handshake.mark(json_response(
                    StatusCode::OK,
                    &json!({"status": "confirmed"}),
                )))
            }
            Received::Notification(message) => message,
        };
        let notification = records::parse(message.message.as_bytes())
            .map_err(|e| ApiError::bad_request(format!("SNS message: {e}")))?;
        self.accept(notification, Origin::Signed).await
    }

    async fn accept(
        &self,
        notification: S3Notification,
        origin: Origin,
    ) -> Result<Response<Body>, ApiError> {
        match notification {
            S3Notification::Test(test) => self.store_test_event(test).await,
            S3Notification::Records(records) => self.store_records(&records, origin).await,
        }
    }

    async fn store_test_event(&self, test: TestEvent) -> Result<Response<Body>, ApiError> {
        let event = Event::new(
            Source::S3,
            test.event_id(),
            TestEvent::EVENT_TYPE,
            test.bucket.clone(),
            test.raw.to_string(),
            self.clock.now(),
        )
        .occurred_at(test.time)
        .history_only();
        let outcome = hub_core::metrics::time_store(self.store.put_event(&event)).await?;
        tracing::info!(source = "s3", event_id = %event.event_id, outcome = outcome_str(outcome), bucket = %test.bucket, "S3 test event accepted");
        Ok(marked(
            outcome,
            json_response(
                StatusCode::OK,
                &json!({"status": outcome_str(outcome), "records": [
                    {"event_id": event.event_id, "event_type": TestEvent::EVENT_TYPE, "outcome": outcome_str(outcome)}
                ]}),
            ),
        ))
    }

    /// Every record is stored before anything is mirrored, so that a mirror failure (503) never
    /// loses an event: the retry finds the events stored and only redoes the mirroring.
    async fn store_records(
        &self,
        records: &[ObjectRecord],
        origin: Origin,
    ) -> Result<Response<Body>, ApiError> {
        let received_at = self.clock.now();
        // Checked before anything is stored: a sequencer far ahead of the clock would hold back
        // every real change until then (VK's are seconds, docs/protocols.md §2.1).
        for (index, record) in records.iter().enumerate() {
            if let Some(sequencer) = &record.sequencer {
                sequencer
                    .check_plausible(received_at)
                    .map_err(|reason| ApiError::bad_request(format!("record {index}: {reason}")))?;
            }
        }
        let mut results = Vec::with_capacity(records.len());
        for record in records {
            let event = Event::new(
                Source::S3,
                record.event_id(),
                record.event_name.clone(),
                record.subject(),
                record.raw.to_string(),
                received_at,
            )
            .occurred_at(record.event_time);
            let outcome = hub_core::metrics::time_store(self.store.put_event(&event)).await?;
            results.push((event.event_id, outcome, None::<MirrorOutcome>));
        }
        if let Some(mirror) = &self.mirror {
            for (record, (event_id, _, mirrored)) in records.iter().zip(results.iter_mut()) {
                let outcome = match mirror.apply(record, event_id, origin).await {
                    Ok(outcome) => outcome,
                    // A retry cannot change S3's answer: the event is stored, the reply says
                    // `failed`, and the error line is what the MirrorFailed alarm counts.
                    Err(MirrorError::Refused(detail)) => {
                        tracing::error!(
                            source = "s3",
                            bucket = %record.bucket,
                            event_id = %event_id,
                            origin = origin.as_str(),
                            error = %detail,
                            "{}",
                            MIRROR_FAILED_LOG
                        );
                        MirrorOutcome::Failed
                    }
                    Err(err) => return Err(mirror_error(err)),
                };
                hub_core::metrics::mirror(outcome.as_str());
                *mirrored = Some(outcome);
            }
        }
        let any_stored = results.iter().any(|(_, o, _)| *o == PutOutcome::Stored);
        let entries: Vec<Value> = results
            .iter()
            .zip(records)
            .map(|((event_id, outcome, mirrored), record)| {
                tracing::info!(
                    source = "s3",
                    outcome = outcome_str(*outcome),
                    mirror = mirrored.map(MirrorOutcome::as_str),
                    event_type = %record.event_name,
                    bucket = %record.bucket,
                    event_id,
                    "S3 record accepted"
                );
                let mut entry = json!({
                    "event_id": event_id,
                    "event_type": record.event_name,
                    "outcome": outcome_str(*outcome),
                });
                if let Some(mirrored) = mirrored {
                    entry["mirror"] = json!(mirrored.as_str());
                }
                entry
            })
            .collect();
        let response = json_response(
            StatusCode::OK,
            &json!({
                "status": if any_stored { "stored" } else { "duplicate" },
                "records": entries,
            }),
        );
        Ok(if any_stored {
            response
        } else {
            hub_core::metrics::Outcome::Duplicate.mark(response)
        })
    }
}

impl<S, C, F, T, L> hub_core::http::Handler for S3Handler<S, C, F, T, L>
where
    S: EventWriter + 'static,
    C: Clock + 'static,
    F: Fetcher + 'static,
    T: ObjectTransfer + 'static,
    L: MirrorLedger + 'static,
{
    async fn handle(&self, request: Request) -> Response<Body> {
        S3Handler::handle(self, request).await
    }

    fn source(&self) -> Option<hub_core::Source> {
        Some(Source::S3)
    }
}

/// A reply whose only event was already stored counts as a duplicate.
fn marked(outcome: PutOutcome, response: Response<Body>) -> Response<Body> {
    match outcome {
        PutOutcome::Stored => response,
        PutOutcome::Duplicate => hub_core::metrics::Outcome::Duplicate.mark(response),
    }
}

fn outcome_str(outcome: PutOutcome) -> &'static str {
    match outcome {
        PutOutcome::Stored => "stored",
        PutOutcome::Duplicate => "duplicate",
    }
}

/// The failures a retry may clear: the sender is told to come back (503).
fn mirror_error(err: MirrorError) -> ApiError {
    match err {
        MirrorError::Ledger(store) => store.into(),
        MirrorError::Transfer(detail) | MirrorError::Refused(detail) => {
            tracing::warn!(error = %detail, "mirror transfer failed");
            ApiError::Unavailable("mirror bucket unavailable, retry later".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::memory::MemoryLedger;
    use crate::mirror::testing::MemoryTransfer;
    use hub_core::certs::testing::FakeFetcher;
    use hub_core::certs::CertificateCache;
    use hub_core::clock::FixedClock;
    use hub_core::store::memory::MemoryStore;
    use std::collections::HashMap;
    use std::sync::Arc;

    type TestHandler =
        S3Handler<Arc<MemoryStore>, FixedClock, FakeFetcher, Arc<MemoryTransfer>, MemoryLedger>;

    const VECTOR: &str = include_str!("../tests/fixtures/vk-s3.json");
    const TOKEN: &str = "vk-test-token-0123456789";

    fn handler(mirror: bool) -> TestHandler {
        let config = S3Config::from_vars(&[
            ("S3_WEBHOOK_TOKEN", TOKEN),
            ("S3_WEBHOOK_URL", "http://test.com"),
        ])
        .unwrap();
        let sns = SnsVerifier::new(
            CertificateCache::new(FakeFetcher::new(), HashMap::new()),
            vec![],
        );
        S3Handler::new(
            Arc::new(MemoryStore::new()),
            FixedClock::at(hub_core::event::parse_time("2024-05-01T10:00:00Z").unwrap()),
            config,
            sns,
            mirror.then(|| {
                Mirror::new(
                    Arc::new(MemoryTransfer::default()),
                    MemoryLedger::new(),
                    ["bucketA", "bucketB"],
                )
            }),
        )
    }

    fn post(uri: &str, body: &str) -> Request {
        http::Request::builder()
            .method("POST")
            .uri(uri)
            .header("x-amz-sns-message-type", "Notification")
            .body(Body::Text(body.to_owned()))
            .unwrap()
    }

    async fn call(handler: &TestHandler, request: Request) -> (u16, Value) {
        let response = handler.handle(request).await;
        let status = response.status().as_u16();
        let body = match response.body() {
            Body::Text(text) => serde_json::from_str(text).unwrap_or(Value::Null),
            _ => Value::Null,
        };
        (status, body)
    }

    fn vk_records(key: &str, name: &str, sequencer: u64) -> String {
        json!({"Records": [{"eventVersion": "1.0", "eventName": name, "eventSource": "aws:s3",
            "s3": {"bucket": {"name": "bucketA"}, "object": {"key": key, "size": 3, "sequencer": sequencer}}}]})
        .to_string()
    }

    #[tokio::test]
    async fn the_vk_handshake_is_answered_with_the_published_signature() {
        let vector: Value = serde_json::from_str(VECTOR).unwrap();
        let body = vector["request_body"].to_string();
        let handler = handler(false);
        let (status, reply) = call(&handler, post(&format!("/s3?token={TOKEN}"), &body)).await;
        assert_eq!(status, 200);
        assert_eq!(reply, vector["expected_response_body"]);
        // Without our token, nobody gets a signature; nothing is stored either way.
        let (status, reply) = call(&handler, post("/s3", &body)).await;
        assert_eq!((status, reply["error"].as_str()), (403, Some("forbidden")));
        assert!(handler.store().is_empty());
    }

    #[tokio::test]
    async fn vk_records_are_stored_once_and_mirrored_once() {
        let handler = handler(true);
        let transfer = handler.mirror().unwrap().transfer().clone();
        transfer.put_source("bucketA", "some-file", b"abc");
        let body = vk_records("some-file", "s3:ObjectCreated:Put", 1577453615);
        let uri = format!("/s3?token={TOKEN}");
        let (status, reply) = call(&handler, post(&uri, &body)).await;
        assert_eq!(status, 200);
        assert_eq!(reply["records"][0]["mirror"], "copied");
        let (status, reply) = call(&handler, post(&uri, &body)).await;
        assert_eq!(status, 200);
        assert_eq!(reply["status"], "duplicate");
        assert_eq!(reply["records"][0]["mirror"], "already_applied");
        assert_eq!(handler.store().len(), 1);
        assert_eq!(transfer.calls(), ["copy bucketA/some-file"]);
        let stored = &handler.store().all()[0];
        assert_eq!(stored.subject, "bucketA/some-file");
        assert_eq!(stored.event_type, "s3:ObjectCreated:Put");
    }

    #[tokio::test]
    async fn a_mirror_failure_is_503_and_the_retry_completes() {
        let handler = handler(true);
        let transfer = handler.mirror().unwrap().transfer().clone();
        transfer.put_source("bucketA", "k", b"abc");
        transfer.set_failing(true);
        let body = vk_records("k", "s3:ObjectCreated:Put", 7);
        let uri = format!("/s3?token={TOKEN}");
        let (status, reply) = call(&handler, post(&uri, &body)).await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (503, Some("unavailable"))
        );
        // The event itself is already durable.
        assert_eq!(handler.store().len(), 1);
        transfer.set_failing(false);
        let (status, reply) = call(&handler, post(&uri, &body)).await;
        assert_eq!(status, 200);
        assert_eq!(reply["records"][0]["mirror"], "copied");
        assert_eq!(transfer.mirrored("bucketA/k").as_deref(), Some(&b"abc"[..]));
    }

    /// A VK record with the fields a real delivery carries (`docs/protocols.md` §2.1).
    fn vk_record(bucket: &str, key: &str, name: &str, sequencer: Value, etag: &str) -> Value {
        json!({"eventVersion": "1.0", "eventName": name, "eventSource": "aws:s3",
            "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 2, "eTag": etag,
            "sequencer": sequencer}}})
    }

    async fn deliver(handler: &TestHandler, records: &[Value]) -> (u16, Value) {
        let body = json!({ "Records": records }).to_string();
        call(handler, post(&format!("/s3?token={TOKEN}"), &body)).await
    }

    /// `2024-05-01T10:00:00Z`, the handlers' clock, as a VK sequencer (seconds).
    const NOW: u64 = 1714557600;

    #[tokio::test]
    async fn two_versions_written_within_one_second_are_two_events_and_the_newer_is_mirrored() {
        let handler = handler(true);
        let transfer = handler.mirror().unwrap().transfer().clone();
        let put = "s3:ObjectCreated:Put";
        transfer.put_source("bucketA", "k", b"v1");
        let first = vk_record("bucketA", "k", put, json!(NOW), "e1");
        let (status, reply) = deliver(&handler, std::slice::from_ref(&first)).await;
        assert_eq!(
            (status, &reply["records"][0]["mirror"]),
            (200, &json!("copied"))
        );
        // The same second, another version: VK's sequencer cannot tell them apart.
        transfer.put_source("bucketA", "k", b"v2");
        let second = vk_record("bucketA", "k", put, json!(NOW), "e2");
        let (status, reply) = deliver(&handler, &[second]).await;
        assert_eq!(status, 200);
        assert_eq!(reply["records"][0]["outcome"], "stored", "{reply}");
        assert_ne!(reply["records"][0]["mirror"], "already_applied", "{reply}");
        assert_eq!(handler.store().len(), 2);
        assert_eq!(transfer.mirrored("bucketA/k").as_deref(), Some(&b"v2"[..]));
        // A retry of the first is still the first event, and cannot bring v1 back.
        let (_, reply) = deliver(&handler, &[first]).await;
        assert_eq!(reply["records"][0]["outcome"], "duplicate");
        assert_eq!(handler.store().len(), 2);
        assert_eq!(transfer.mirrored("bucketA/k").as_deref(), Some(&b"v2"[..]));
    }

    #[tokio::test]
    async fn buckets_never_share_a_mirror_object() {
        let handler = handler(true);
        let transfer = handler.mirror().unwrap().transfer().clone();
        transfer.put_source("bucketA", "report.pdf", b"a");
        transfer.put_source("bucketB", "report.pdf", b"b");
        let put = "s3:ObjectCreated:Put";
        for bucket in ["bucketA", "bucketB"] {
            let record = vk_record(bucket, "report.pdf", put, json!(NOW - 10), "e");
            assert_eq!(deliver(&handler, &[record]).await.0, 200);
        }
        assert_eq!(
            transfer.mirrored("bucketA/report.pdf").as_deref(),
            Some(&b"a"[..])
        );
        assert_eq!(
            transfer.mirrored("bucketB/report.pdf").as_deref(),
            Some(&b"b"[..])
        );
        // A removal in one bucket leaves the other's backup alone.
        transfer.remove_source("bucketB", "report.pdf");
        let delete = vk_record(
            "bucketB",
            "report.pdf",
            "s3:ObjectRemoved:Delete",
            json!(NOW - 5),
            "",
        );
        let (_, reply) = deliver(&handler, &[delete]).await;
        assert_eq!(reply["records"][0]["mirror"], "deleted", "{reply}");
        assert_eq!(transfer.mirrored("bucketB/report.pdf"), None);
        assert_eq!(
            transfer.mirrored("bucketA/report.pdf").as_deref(),
            Some(&b"a"[..])
        );
    }

    #[tokio::test]
    async fn records_of_buckets_off_the_allow_list_are_stored_but_never_mirrored() {
        let handler = handler(true);
        let transfer = handler.mirror().unwrap().transfer().clone();
        transfer.put_source("payroll", "salaries.csv", b"secret");
        let record = vk_record(
            "payroll",
            "salaries.csv",
            "s3:ObjectCreated:Put",
            json!(NOW),
            "e",
        );
        let (status, reply) = deliver(&handler, &[record]).await;
        assert_eq!(status, 200);
        assert_eq!(reply["records"][0]["outcome"], "stored");
        assert_eq!(
            reply["records"][0]["mirror"], "bucket_not_allowed",
            "{reply}"
        );
        assert!(transfer.calls().is_empty(), "{:?}", transfer.calls());
        assert_eq!(handler.store().len(), 1);
    }

    #[tokio::test]
    async fn a_token_delete_removes_the_backup_only_when_the_source_has_no_object() {
        let handler = handler(true);
        let transfer = handler.mirror().unwrap().transfer().clone();
        transfer.put_source("bucketA", "k", b"keep me");
        let create = vk_record("bucketA", "k", "s3:ObjectCreated:Put", json!(NOW - 60), "e");
        deliver(&handler, &[create]).await;
        // A forged (or stale) removal: the source still has the object.
        let delete = vk_record(
            "bucketA",
            "k",
            "s3:ObjectRemoved:Delete",
            json!(NOW - 30),
            "",
        );
        let (status, reply) = deliver(&handler, &[delete]).await;
        assert_eq!(status, 200);
        assert_eq!(reply["records"][0]["mirror"], "source_exists", "{reply}");
        assert_eq!(
            transfer.mirrored("bucketA/k").as_deref(),
            Some(&b"keep me"[..])
        );
        // The real removal, confirmed by the source, is applied.
        transfer.remove_source("bucketA", "k");
        let delete = vk_record(
            "bucketA",
            "k",
            "s3:ObjectRemoved:Delete",
            json!(NOW - 20),
            "",
        );
        let (_, reply) = deliver(&handler, &[delete]).await;
        assert_eq!(reply["records"][0]["mirror"], "deleted", "{reply}");
        assert_eq!(transfer.mirrored("bucketA/k"), None);
    }

    #[tokio::test]
    async fn implausible_sequencers_are_refused_and_nothing_is_stored() {
        let handler = handler(true);
        let put = "s3:ObjectCreated:Put";
        for sequencer in [
            json!(u64::MAX),
            json!(NOW + 3600),
            json!("F".repeat(64)),
            json!("0".repeat(33)),
        ] {
            let record = vk_record("bucketA", "k", put, sequencer.clone(), "e");
            let (status, reply) = deliver(&handler, &[record]).await;
            assert_eq!(
                (status, &reply["error"]),
                (400, &json!("bad_request")),
                "{sequencer}"
            );
        }
        assert!(handler.store().is_empty());
        // A sender's clock a little ahead of ours is fine.
        let record = vk_record("bucketA", "k", put, json!(NOW + 60), "e");
        assert_eq!(deliver(&handler, &[record]).await.0, 200);
    }

    #[tokio::test]
    async fn a_hex_sequencer_behind_the_token_cannot_block_later_changes() {
        let handler = handler(true);
        let transfer = handler.mirror().unwrap().transfer().clone();
        transfer.put_source("bucketA", "k", b"v1");
        // The token also admits AWS-dialect bodies, whose hex sequencer nothing vouches for.
        let forged = json!({"eventVersion": "2.1", "eventName": "ObjectRemoved:Delete",
            "s3": {"bucket": {"name": "bucketA"}, "object": {"key": "k", "sequencer": "FFFFFFFFFFFFFFFFFFFF"}}});
        assert_eq!(deliver(&handler, &[forged]).await.0, 200);
        assert_eq!(transfer.mirrored("bucketA/k").as_deref(), Some(&b"v1"[..]));
        transfer.put_source("bucketA", "k", b"v2");
        let real = vk_record("bucketA", "k", "s3:ObjectCreated:Put", json!(NOW), "e2");
        let (_, reply) = deliver(&handler, &[real]).await;
        assert_eq!(reply["records"][0]["mirror"], "copied", "{reply}");
        assert_eq!(transfer.mirrored("bucketA/k").as_deref(), Some(&b"v2"[..]));
    }

    /// Log lines as the functions write them (`hub_core::telemetry`: JSON, fields flattened).
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[tokio::test]
    async fn a_permanent_refusal_is_stored_answered_failed_and_logged_for_the_alarm() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let handler = handler(true);
        let transfer = handler.mirror().unwrap().transfer().clone();
        transfer.put_source("bucketA", "payroll/q1.csv", b"abc");
        transfer.set_refusing(true);
        let record = vk_record(
            "bucketA",
            "payroll/q1.csv",
            "s3:ObjectCreated:Put",
            json!(NOW),
            "e",
        );
        let (status, reply) = deliver(&handler, &[record]).await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["records"][0]["outcome"], "stored");
        assert_eq!(reply["records"][0]["mirror"], "failed");
        assert_eq!(handler.store().len(), 1);
        let text = captured.text();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let failed = lines
            .iter()
            .find(|line| line["message"] == MIRROR_FAILED_LOG)
            .unwrap_or_else(|| panic!("no error line: {text}"));
        assert_eq!(failed["level"], "ERROR");
        assert_eq!(failed["bucket"], "bucketA");
        assert_eq!(failed["event_id"], reply["records"][0]["event_id"]);
        assert!(
            !text.contains("payroll"),
            "keys and payloads stay out of the logs: {text}"
        );

        // An outage is still one a retry can clear: 503.
        transfer.set_refusing(false);
        transfer.set_failing(true);
        let record = vk_record("bucketA", "other", "s3:ObjectCreated:Put", json!(NOW), "e");
        assert_eq!(deliver(&handler, &[record]).await.0, 503);
    }

    #[tokio::test]
    async fn refusals_have_the_interface_statuses() {
        let handler = handler(false);
        let uri = format!("/s3?token={TOKEN}");
        let records = vk_records("k", "s3:ObjectCreated:Put", 1);
        assert_eq!(
            call(&handler, post("/s3?token=wrong", &records)).await.0,
            403
        );
        assert_eq!(call(&handler, post("/s3", &records)).await.0, 403);
        assert_eq!(call(&handler, post(&uri, "not json")).await.0, 400);
        assert_eq!(
            call(&handler, post(&uri, r#"{"Records": []}"#)).await.0,
            400
        );
        assert_eq!(call(&handler, post(&uri, r#"{"hello": 1}"#)).await.0, 400);
        // Without our token a request can only be SNS: a signed-looking envelope from no allowed
        // topic is forbidden, never parsed further. With our token it is VK, and not records.
        let sns = json!({"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:us-east-1:1:t",
            "Message": records, "Timestamp": "2024-05-01T10:00:00.000Z", "SignatureVersion": "1",
            "Signature": "c2ln", "SigningCertURL": "https://sns.us-east-1.amazonaws.com/x.pem"});
        assert_eq!(call(&handler, post("/s3", &sns.to_string())).await.0, 403);
        assert_eq!(call(&handler, post(&uri, &sns.to_string())).await.0, 400);
        let get = http::Request::builder()
            .method("GET")
            .uri(&uri)
            .body(Body::Empty)
            .unwrap();
        assert_eq!(call(&handler, get).await.0, 405);
        assert!(handler.store().is_empty());
        handler.store().set_unavailable(true);
        assert_eq!(call(&handler, post(&uri, &records)).await.0, 503);
    }
}
