//! s3-notification against DynamoDB and S3 on moto: the VK handshake and records, AWS S3 events
//! through SNS, and the ordered mirror (server-side copies, and streamed copies from a foreign
//! S3 endpoint).

use aws_sdk_s3::primitives::ByteStream;
use hub_core::certs::testing::FakeFetcher;
use hub_core::certs::{CertificateCache, HttpsFetcher};
use hub_core::clock::SystemClock;
use hub_core::store::DynamoStore;
use hub_tests::fixtures::{aws_s3_record, s3_sns_request, vk_record, vk_request};
use hub_tests::{
    attr, body_json, fixture_json, fixture_request, fixture_vars, fresh_store, moto,
    request_from_json, scan_items, sns_verifier, unique_name, Moto,
};
use s3_notification::ledger::dynamo::DynamoLedger;
use s3_notification::ledger::{LedgerSource, MirrorLedger};
use s3_notification::mirror::{Copied, MirrorError, ObjectTransfer};
use s3_notification::{Mirror, S3Config, S3Handler, S3Transfer, SourceAccess};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The real transfer, counting what it is asked to do.
struct Counting {
    inner: S3Transfer,
    copies: AtomicUsize,
    deletes: AtomicUsize,
}

impl ObjectTransfer for Counting {
    async fn copy(&self, bucket: &str, key: &str, target: &str) -> Result<Copied, MirrorError> {
        self.copies.fetch_add(1, Ordering::SeqCst);
        self.inner.copy(bucket, key, target).await
    }

    async fn delete(&self, target: &str) -> Result<(), MirrorError> {
        self.deletes.fetch_add(1, Ordering::SeqCst);
        self.inner.delete(target).await
    }

    async fn source_exists(&self, bucket: &str, key: &str) -> Result<bool, MirrorError> {
        self.inner.source_exists(bucket, key).await
    }
}

type Handler = S3Handler<DynamoStore, SystemClock, Arc<FakeFetcher>, Arc<Counting>, DynamoLedger>;

fn vars() -> HashMap<String, String> {
    fixture_vars("S3NotificationFunction")
}

/// The handler over `store`, mirroring with `transfer` the objects of the `sources` buckets.
fn handler_with(
    store: DynamoStore,
    vars: &HashMap<String, String>,
    transfer: Option<S3Transfer>,
    sources: &[&str],
) -> (Handler, Option<Arc<Counting>>) {
    let counting = transfer.map(|inner| {
        Arc::new(Counting {
            inner,
            copies: AtomicUsize::new(0),
            deletes: AtomicUsize::new(0),
        })
    });
    let ledger = store.mirror_ledger().unwrap();
    let handler = S3Handler::new(
        store,
        SystemClock,
        S3Config::from_vars(vars).unwrap(),
        sns_verifier(vars, Arc::new(FakeFetcher::new())),
        counting
            .clone()
            .map(|transfer| Mirror::new(transfer, ledger, sources.iter().copied())),
    );
    (handler, counting)
}

async fn s3_client_for(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build(),
    )
}

async fn moto_s3() -> aws_sdk_s3::Client {
    s3_client_for(&Moto::shared().sdk_config().await).await
}

async fn bucket(s3: &aws_sdk_s3::Client, prefix: &str) -> String {
    let name = unique_name(prefix);
    s3.create_bucket().bucket(&name).send().await.unwrap();
    name
}

struct MirrorSetup {
    handler: Handler,
    counting: Arc<Counting>,
    store: DynamoStore,
    s3: aws_sdk_s3::Client,
    source: String,
    /// A second mirrored source bucket.
    other_source: String,
    mirror: String,
}

/// The seconds VK's sequencers count, now.
fn vk_now() -> u64 {
    chrono::Utc::now().timestamp() as u64
}

/// Source and mirror buckets on moto, with the transfer `configure` builds.
async fn mirror_setup(configure: impl FnOnce(S3Transfer) -> S3Transfer) -> MirrorSetup {
    let store = fresh_store("s3").await;
    let s3 = moto_s3().await;
    let (source, mirror) = (bucket(&s3, "source").await, bucket(&s3, "mirror").await);
    let other_source = bucket(&s3, "other").await;
    let transfer = configure(S3Transfer::new(
        s3.clone(),
        &mirror,
        SourceAccess::SameAccount,
    ));
    let (handler, counting) = handler_with(
        store.clone(),
        &vars(),
        Some(transfer),
        &[&source, &other_source],
    );
    MirrorSetup {
        handler,
        counting: counting.unwrap(),
        store,
        s3,
        source,
        other_source,
        mirror,
    }
}

impl MirrorSetup {
    async fn put_source(&self, key: &str, body: Vec<u8>) {
        self.s3
            .put_object()
            .bucket(&self.source)
            .key(key)
            .content_type("text/plain")
            .body(ByteStream::from(body))
            .send()
            .await
            .unwrap();
    }

    async fn delete_source(&self, key: &str) {
        self.s3
            .delete_object()
            .bucket(&self.source)
            .key(key)
            .send()
            .await
            .unwrap();
    }

    /// Where the mirror keeps the source's `key`: under the source bucket's name.
    fn backup_of(&self, key: &str) -> String {
        format!("{}/{key}", self.source)
    }

    /// The mirror's copy of the source's `key`: its bytes and ETag, if it exists.
    async fn backup(&self, key: &str) -> Option<(Vec<u8>, String)> {
        self.mirrored(&self.backup_of(key)).await
    }

    /// A VK delivery (token, numeric sequencer) about the source bucket.
    async fn deliver_vk(
        &self,
        key: &str,
        event_name: &str,
        sequencer: u64,
        etag: &str,
    ) -> (u16, Value) {
        let mut record = vk_record(key, event_name, sequencer);
        record["s3"]["bucket"]["name"] = json!(self.source);
        record["s3"]["object"]["eTag"] = json!(etag);
        let request = vk_request(&json!({"Records": [record]}), "r");
        let response = self.handler.handle(request_from_json(&request)).await;
        (response.status().as_u16(), body_json(&response))
    }

    /// An AWS S3 event of any bucket through SNS.
    async fn deliver_in(
        &self,
        bucket: &str,
        key: &str,
        event_name: &str,
        sequencer: &str,
    ) -> (u16, Value) {
        let message = json!({"Records": [aws_s3_record(bucket, key, event_name, sequencer, "2024-03-01T12:09:58.120Z")]});
        let request = s3_sns_request(&message, &format!("msg-{bucket}-{key}-{sequencer}"), "r");
        let response = self.handler.handle(request_from_json(&request)).await;
        (response.status().as_u16(), body_json(&response))
    }

    /// The mirror's object `key` (a mirror key: `bucket/key`): its bytes and ETag, if it exists.
    async fn mirrored(&self, key: &str) -> Option<(Vec<u8>, String)> {
        let object = self
            .s3
            .get_object()
            .bucket(&self.mirror)
            .key(key)
            .send()
            .await
            .ok()?;
        let etag = object.e_tag().unwrap_or_default().to_owned();
        let bytes = object.body.collect().await.unwrap().into_bytes().to_vec();
        Some((bytes, etag))
    }

    /// An AWS S3 event through SNS, as `POST /s3` receives it.
    async fn deliver(&self, key: &str, event_name: &str, sequencer: &str) -> (u16, Value) {
        let encoded: String = form_urlencoded::byte_serialize(key.as_bytes()).collect();
        let message = json!({"Records": [aws_s3_record(&self.source, &encoded, event_name, sequencer, "2024-03-01T12:09:58.120Z")]});
        let message_id = format!("msg-{event_name}-{sequencer}");
        let request = s3_sns_request(&message, &message_id, "r");
        let response = self.handler.handle(request_from_json(&request)).await;
        (response.status().as_u16(), body_json(&response))
    }

    /// Delivers a change and checks the 200 reply's mirror outcome.
    async fn expect_mirror(&self, key: &str, event_name: &str, sequencer: &str, outcome: &str) {
        let (status, reply) = self.deliver(key, event_name, sequencer).await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["records"][0]["mirror"], outcome, "{reply}");
    }

    async fn events(&self) -> usize {
        scan_items(&self.store)
            .await
            .iter()
            .filter(|item| !attr(item, "pk").starts_with("mirror#"))
            .count()
    }
}

#[tokio::test]
async fn the_vk_handshake_reproduces_the_published_signature() {
    let vector: Value = serde_json::from_str(
        &std::fs::read_to_string(
            hub_tests::repo_root().join("functions/s3-notification/tests/fixtures/vk-s3.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let store = fresh_store("s3-vk").await;
    let mut vars = vars();
    vars.insert(
        "S3_WEBHOOK_URL".into(),
        vector["url"].as_str().unwrap().into(),
    );
    let (handler, _) = handler_with(store.clone(), &vars, None, &[]);
    let response = handler
        .handle(fixture_request("s3-vk-handshake.json"))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    assert_eq!(body_json(&response), vector["expected_response_body"]);

    // With the fixture's own registered URL, the signature is over that URL.
    let (handler, _) = handler_with(
        store.clone(),
        &hub_tests::fixture_vars("S3NotificationFunction"),
        None,
        &[],
    );
    let response = handler
        .handle(fixture_request("s3-vk-handshake.json"))
        .await;
    let expected = s3_notification::vk::handshake_signature(
        vector["request_body"]["Token"].as_str().unwrap(),
        vector["request_body"]["Timestamp"].as_str().unwrap(),
        vector["request_body"]["TopicArn"].as_str().unwrap(),
        &hub_tests::fixtures::s3_webhook_url(),
    );
    assert_eq!(body_json(&response)["signature"], expected);
    assert!(
        scan_items(&store).await.is_empty(),
        "handshakes are not events"
    );
}

#[tokio::test]
async fn vk_records_and_sns_events_are_stored_once_each() {
    let store = fresh_store("s3-events").await;
    let (handler, _) = handler_with(store.clone(), &vars(), None, &[]);
    for _ in 0..2 {
        for name in [
            "s3-vk-records.json",
            "s3-sns-object-created.json",
            "s3-sns-test-event.json",
        ] {
            let response = handler.handle(fixture_request(name)).await;
            assert_eq!(response.status(), 200, "{name}: {:?}", response.body());
        }
    }
    let items = scan_items(&store).await;
    let mut by_subject: Vec<(&str, &str)> = items
        .iter()
        .map(|item| (attr(item, "subject"), attr(item, "event_type")))
        .collect();
    by_subject.sort();
    assert_eq!(
        by_subject,
        [
            ("bucketA/reports/2024 q1.csv", "s3:ObjectCreated:Put"),
            ("bucketA/reports/old.csv", "s3:ObjectRemoved:Delete"),
            ("photos-2024", "s3:TestEvent"),
            (
                "photos-2024/holiday/red flower \u{e9}t\u{e9}.jpg",
                "ObjectCreated:Put"
            ),
        ]
    );
    let created = items
        .iter()
        .find(|item| attr(item, "event_type") == "ObjectCreated:Put")
        .unwrap();
    assert_eq!(attr(created, "source"), "s3");
    assert_eq!(attr(created, "occurred_at"), "2024-03-01T12:09:58.120Z");
    let payload: Value = serde_json::from_str(attr(created, "payload")).unwrap();
    assert_eq!(payload["s3"]["object"]["sequencer"], "0055AED6DCD90281E5");
}

#[tokio::test]
async fn one_changed_byte_in_a_signed_field_is_forbidden() {
    let store = fresh_store("s3-tamper").await;
    let (handler, _) = handler_with(store.clone(), &vars(), None, &[]);
    let original = fixture_json("s3-sns-object-created.json");
    let envelope: Value = serde_json::from_str(original["body"].as_str().unwrap()).unwrap();
    for field in ["Message", "MessageId", "Timestamp", "TopicArn", "Signature"] {
        let mut changed = envelope.clone();
        let mut bytes = changed[field].as_str().unwrap().as_bytes().to_vec();
        // One byte, kept printable ASCII (and, for the signature, valid base64).
        let at = bytes.len() / 2;
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        changed[field] = String::from_utf8(bytes).unwrap().into();
        let mut request = original.clone();
        request["body"] = changed.to_string().into();
        let response = handler.handle(request_from_json(&request)).await;
        assert_eq!(response.status(), 403, "{field}");
        assert_eq!(body_json(&response)["error"], "forbidden");
    }
    assert!(scan_items(&store).await.is_empty());
    // The untouched message is accepted: the refusals above were the changed bytes.
    assert_eq!(
        handler.handle(request_from_json(&original)).await.status(),
        200
    );
}

#[tokio::test]
async fn certificate_urls_off_sns_hosts_are_never_fetched() {
    // A local HTTPS-port stand-in that counts every connection made to it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let vars = vars();
    let pinned = hub_core::certs::pinned_from_vars(&vars).unwrap();
    let sns = sns::SnsVerifier::new(
        CertificateCache::new(HttpsFetcher::new(), pinned),
        vec![hub_tests::fixtures::S3_EVENTS_TOPIC.to_owned()],
    );
    let store = fresh_store("s3-certs").await;
    let handler: S3Handler<_, _, _, Arc<Counting>, DynamoLedger> = S3Handler::new(
        store.clone(),
        SystemClock,
        S3Config::from_vars(&vars).unwrap(),
        sns,
        None,
    );
    let original = fixture_json("s3-sns-object-created.json");
    let envelope: Value = serde_json::from_str(original["body"].as_str().unwrap()).unwrap();
    for url in [
        format!("https://127.0.0.1:{port}/SimpleNotificationService-x.pem"),
        format!("https://localhost:{port}/SimpleNotificationService-x.pem"),
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem".into(),
        "https://sns.us-east-1.amazonaws.com.example.org/x.pem".into(),
        "https://sns.us-east-1.amazonaws.com/x.txt".into(),
    ] {
        let mut changed = envelope.clone();
        changed["SigningCertURL"] = url.clone().into();
        let mut request = original.clone();
        request["body"] = changed.to_string().into();
        let response = handler.handle(request_from_json(&request)).await;
        assert_eq!(response.status(), 403, "{url}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "no certificate fetch was attempted"
    );
    // The counter does count: one connection of our own shows up.
    let _probe = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert!(scan_items(&store).await.is_empty());
}

#[tokio::test]
async fn create_then_delete_keeps_the_mirror_in_sync() {
    let setup = mirror_setup(|t| t).await;
    setup
        .put_source("docs/a.txt", b"hello world".to_vec())
        .await;
    setup
        .expect_mirror(
            "docs/a.txt",
            "ObjectCreated:Put",
            "0055AED6DCD90281E5",
            "copied",
        )
        .await;
    assert_eq!(setup.backup("docs/a.txt").await.unwrap().0, b"hello world");

    setup.delete_source("docs/a.txt").await;
    setup
        .expect_mirror(
            "docs/a.txt",
            "ObjectRemoved:Delete",
            "0055AED6DCD90281E6",
            "deleted",
        )
        .await;
    assert_eq!(setup.backup("docs/a.txt").await, None);
    let entry = setup
        .store
        .mirror_ledger()
        .unwrap()
        .ledger_entry(&format!("{}/docs/a.txt", setup.source))
        .await
        .unwrap()
        .unwrap();
    assert!(entry.applied);
    assert_eq!(entry.action, "delete");
    assert_eq!(setup.events().await, 2);
}

#[tokio::test]
async fn a_delete_delivered_before_its_older_create_keeps_the_object_deleted() {
    let setup = mirror_setup(|t| t).await;
    // The source has the object again (a later create, not yet delivered): a mirror that
    // applied the stale create would resurrect it now.
    setup.put_source("k.txt", b"later version".to_vec()).await;
    setup
        .expect_mirror(
            "k.txt",
            "ObjectRemoved:Delete",
            "0055AED6DCD90281F0",
            "deleted",
        )
        .await;
    setup
        .expect_mirror(
            "k.txt",
            "ObjectCreated:Put",
            "0055AED6DCD90281E5",
            "superseded",
        )
        .await;
    assert_eq!(setup.backup("k.txt").await, None);
    assert_eq!(setup.counting.copies.load(Ordering::SeqCst), 0);
    // Both events are stored all the same: the mirror's order never loses history.
    assert_eq!(setup.events().await, 2);
}

#[tokio::test]
async fn keys_with_spaces_plus_signs_and_non_ascii_are_copied_exactly() {
    let setup = mirror_setup(|t| t).await;
    let key = "reports/\u{e9}t\u{e9} 2024/q1 r\u{e9}sum\u{e9}+final (\u{4e2d}\u{6587}).pdf";
    setup.put_source(key, b"%PDF-1.7".to_vec()).await;
    let (status, _) = setup.deliver(key, "ObjectCreated:Put", "0A").await;
    assert_eq!(status, 200);
    assert_eq!(setup.backup(key).await.unwrap().0, b"%PDF-1.7");
    let listed = setup
        .s3
        .list_objects_v2()
        .bucket(&setup.mirror)
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, [setup.backup_of(key)]);
}

#[tokio::test]
async fn a_duplicate_delivery_is_stored_once_and_copied_once() {
    let setup = mirror_setup(|t| t).await;
    setup.put_source("dup.txt", b"once".to_vec()).await;
    let (_, first) = setup.deliver("dup.txt", "ObjectCreated:Put", "0B").await;
    let (status, second) = setup.deliver("dup.txt", "ObjectCreated:Put", "0B").await;
    assert_eq!(status, 200);
    assert_eq!(first["records"][0]["outcome"], "stored");
    assert_eq!(second["records"][0]["outcome"], "duplicate");
    assert_eq!(second["records"][0]["mirror"], "already_applied");
    assert_eq!(setup.counting.copies.load(Ordering::SeqCst), 1);
    assert_eq!(setup.events().await, 1);
}

fn twenty_mib() -> Vec<u8> {
    // Not repetitive, so a part boundary error cannot go unnoticed.
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    (0..20 * 1024 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[tokio::test]
async fn a_20_mib_object_is_streamed_from_a_foreign_endpoint_one_part_at_a_time() {
    let moto = Moto::shared();
    // The foreign source is another S3 API with its own credentials: moto again, reached
    // through MIRROR_SOURCE_ENDPOINT, so the streamed path is what runs.
    let foreign = s3_notification::ForeignSource {
        endpoint: moto.endpoint().to_owned(),
        access_key_id: "vk-access-key".into(),
        secret_access_key: hub_core::config::Secret::new("vk-secret"),
        region: "ru-msk".into(),
    };
    let store = fresh_store("s3-big").await;
    let s3 = moto_s3().await;
    let (source, mirror) = (bucket(&s3, "source").await, bucket(&s3, "mirror").await);
    let config = s3_notification::MirrorConfig {
        bucket: mirror.clone(),
        sources: vec![source.clone()],
        source: Some(foreign),
        part_size: S3Transfer::MIN_PART_SIZE,
    };
    let transfer = s3_notification::transfer_from(
        &config,
        &moto.sdk_config().await,
        &[("AWS_ENDPOINT_URL", moto.endpoint())],
    );
    let (handler, counting) = handler_with(store.clone(), &vars(), Some(transfer), &[&source]);
    let setup = MirrorSetup {
        handler,
        counting: counting.unwrap(),
        store,
        s3,
        source,
        other_source: String::new(),
        mirror,
    };
    let body = twenty_mib();
    setup.put_source("big/video.bin", body.clone()).await;
    setup
        .expect_mirror(
            "big/video.bin",
            "ObjectCreated:CompleteMultipartUpload",
            "0C",
            "copied",
        )
        .await;
    let (copied, etag) = setup.backup("big/video.bin").await.unwrap();
    assert!(copied == body, "the mirror holds the same 20 MiB");
    assert!(
        etag.trim_matches('"').ends_with("-4"),
        "4 parts of 5 MiB: {etag}"
    );
    // One part, plus the rest of the network chunk that crossed the part boundary.
    let peak = setup.counting.inner.peak_buffered_bytes();
    let bound = S3Transfer::MIN_PART_SIZE + 1024 * 1024;
    assert!(
        peak > 0 && peak <= bound,
        "peak buffer {peak} bytes, bound {bound}"
    );
}

#[tokio::test]
async fn objects_beyond_the_single_copy_limit_are_copied_in_parts_server_side() {
    let setup = mirror_setup(|t| {
        t.with_copy_object_limit(8 * 1024 * 1024)
            .with_part_size(S3Transfer::MIN_PART_SIZE)
    })
    .await;
    let body = twenty_mib();
    setup.put_source("big.bin", body.clone()).await;
    let (status, _) = setup.deliver("big.bin", "ObjectCreated:Put", "0D").await;
    assert_eq!(status, 200);
    let (copied, etag) = setup.backup("big.bin").await.unwrap();
    assert!(copied == body);
    assert!(etag.trim_matches('"').ends_with("-4"), "{etag}");
    assert_eq!(
        setup.counting.inner.peak_buffered_bytes(),
        0,
        "nothing passed through memory"
    );
}

#[tokio::test]
async fn an_unreachable_mirror_is_503_and_a_later_retry_succeeds() {
    let healthy = mirror_setup(|t| t).await;
    healthy
        .put_source("retry.txt", b"eventually".to_vec())
        .await;
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable =
        s3_client_for(&moto::sdk_config_for(&format!("http://127.0.0.1:{closed_port}")).await)
            .await;
    let (down, _) = handler_with(
        healthy.store.clone(),
        &vars(),
        Some(S3Transfer::new(
            unreachable,
            &healthy.mirror,
            SourceAccess::SameAccount,
        )),
        &[&healthy.source],
    );
    let encoded = "retry.txt";
    let message = json!({"Records": [aws_s3_record(&healthy.source, encoded, "ObjectCreated:Put", "0E", "2024-03-01T12:09:58.120Z")]});
    let request = s3_sns_request(&message, "msg-retry", "r");
    let response = down.handle(request_from_json(&request)).await;
    assert_eq!(response.status(), 503);
    assert_eq!(body_json(&response)["error"], "unavailable");
    assert_eq!(response.headers()["retry-after"], "5");
    assert_eq!(
        healthy.events().await,
        1,
        "the event is stored before the mirror is tried"
    );
    assert_eq!(healthy.backup("retry.txt").await, None);

    // SNS retries the same message; the mirror is back.
    let response = healthy.handler.handle(request_from_json(&request)).await;
    assert_eq!(response.status(), 200);
    let reply = body_json(&response);
    assert_eq!(reply["records"][0]["outcome"], "duplicate");
    assert_eq!(reply["records"][0]["mirror"], "copied");
    assert_eq!(healthy.backup("retry.txt").await.unwrap().0, b"eventually");
    assert_eq!(healthy.events().await, 1);
}

#[tokio::test]
async fn vk_records_mirror_with_numeric_sequencers() {
    let setup = mirror_setup(|t| t).await;
    let now = vk_now();
    // VK records (eventVersion 1.0, numeric sequencers): the delete, which the source confirms,
    // is applied to the mirror; the older create after it is not.
    let (status, reply) = setup
        .deliver_vk("plain key.txt", "s3:ObjectRemoved:Delete", now - 1, "")
        .await;
    assert_eq!(status, 200);
    assert_eq!(reply["records"][0]["mirror"], "deleted", "{reply}");
    let (_, reply) = setup
        .deliver_vk("plain key.txt", "s3:ObjectCreated:Put", now - 2, "e")
        .await;
    assert_eq!(reply["records"][0]["mirror"], "superseded");
    assert_eq!(setup.counting.copies.load(Ordering::SeqCst), 0);
    assert_eq!(setup.counting.deletes.load(Ordering::SeqCst), 1);
    let entry = setup
        .store
        .mirror_ledger()
        .unwrap()
        .ledger_entry(&format!("token#{}", setup.backup_of("plain key.txt")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((entry.action.as_str(), entry.applied), ("delete", true));
}

#[tokio::test]
async fn two_vk_writes_within_one_second_are_two_events_and_the_backup_is_the_second() {
    let setup = mirror_setup(|t| t).await;
    let second = vk_now();
    setup
        .put_source("same-second.txt", b"version one".to_vec())
        .await;
    let (status, reply) = setup
        .deliver_vk(
            "same-second.txt",
            "s3:ObjectCreated:Put",
            second,
            "etag-one",
        )
        .await;
    assert_eq!(
        (status, &reply["records"][0]["mirror"]),
        (200, &json!("copied"))
    );
    setup
        .put_source("same-second.txt", b"version two".to_vec())
        .await;
    let (status, reply) = setup
        .deliver_vk(
            "same-second.txt",
            "s3:ObjectCreated:Put",
            second,
            "etag-two",
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(reply["records"][0]["outcome"], "stored", "{reply}");
    assert_eq!(reply["records"][0]["mirror"], "copied", "{reply}");
    assert_eq!(setup.events().await, 2, "both versions are in the history");
    assert_eq!(
        setup.backup("same-second.txt").await.unwrap().0,
        b"version two"
    );
}

#[tokio::test]
async fn backups_of_one_key_in_two_buckets_stay_apart() {
    let setup = mirror_setup(|t| t).await;
    let other = &setup.other_source;
    setup
        .put_source("report.pdf", b"from the first".to_vec())
        .await;
    setup
        .s3
        .put_object()
        .bucket(other)
        .key("report.pdf")
        .body(ByteStream::from(b"from the second".to_vec()))
        .send()
        .await
        .unwrap();
    let (status, _) = setup
        .deliver_in(&setup.source, "report.pdf", "ObjectCreated:Put", "10")
        .await;
    assert_eq!(status, 200);
    let (status, _) = setup
        .deliver_in(other, "report.pdf", "ObjectCreated:Put", "10")
        .await;
    assert_eq!(status, 200);
    setup
        .s3
        .delete_object()
        .bucket(other)
        .key("report.pdf")
        .send()
        .await
        .unwrap();
    let (_, reply) = setup
        .deliver_in(other, "report.pdf", "ObjectRemoved:Delete", "11")
        .await;
    assert_eq!(reply["records"][0]["mirror"], "deleted", "{reply}");
    assert_eq!(setup.mirrored(&format!("{other}/report.pdf")).await, None);
    assert_eq!(
        setup.backup("report.pdf").await.unwrap().0,
        b"from the first",
        "a removal in one bucket leaves the other's backup alone"
    );
}

#[tokio::test]
async fn buckets_off_the_allow_list_are_stored_but_never_copied() {
    let setup = mirror_setup(|t| t).await;
    // Readable with the function's credentials, but not a mirrored source.
    let outside = bucket(&setup.s3, "outside").await;
    setup
        .s3
        .put_object()
        .bucket(&outside)
        .key("secret.txt")
        .body(ByteStream::from(b"not for the backup".to_vec()))
        .send()
        .await
        .unwrap();
    let (status, reply) = setup
        .deliver_in(&outside, "secret.txt", "ObjectCreated:Put", "20")
        .await;
    assert_eq!(status, 200);
    assert_eq!(reply["records"][0]["outcome"], "stored");
    assert_eq!(
        reply["records"][0]["mirror"], "bucket_not_allowed",
        "{reply}"
    );
    assert_eq!(setup.counting.copies.load(Ordering::SeqCst), 0);
    let listed = setup
        .s3
        .list_objects_v2()
        .bucket(&setup.mirror)
        .send()
        .await
        .unwrap();
    assert!(listed.contents().is_empty());
    assert_eq!(setup.events().await, 1);
}

#[tokio::test]
async fn a_vk_delete_keeps_the_backup_while_the_source_still_has_the_object() {
    let setup = mirror_setup(|t| t).await;
    let now = vk_now();
    setup.put_source("keep.txt", b"precious".to_vec()).await;
    setup
        .deliver_vk("keep.txt", "s3:ObjectCreated:Put", now - 20, "e1")
        .await;
    // Anyone with the VK token can send this: the source says the object is still there.
    let (status, reply) = setup
        .deliver_vk("keep.txt", "s3:ObjectRemoved:Delete", now - 10, "")
        .await;
    assert_eq!(status, 200);
    assert_eq!(reply["records"][0]["mirror"], "source_exists", "{reply}");
    assert_eq!(setup.backup("keep.txt").await.unwrap().0, b"precious");
    // Once the source has really lost it, the removal is applied.
    setup.delete_source("keep.txt").await;
    let (_, reply) = setup
        .deliver_vk("keep.txt", "s3:ObjectRemoved:Delete", now - 5, "")
        .await;
    assert_eq!(reply["records"][0]["mirror"], "deleted", "{reply}");
    assert_eq!(setup.backup("keep.txt").await, None);
}

#[tokio::test]
async fn signed_and_token_deliveries_cannot_block_each_other() {
    let setup = mirror_setup(|t| t).await;
    let now = vk_now();
    // A signed change with a high sequencer does not make later VK changes "superseded".
    setup.put_source("a.txt", b"one".to_vec()).await;
    setup
        .expect_mirror(
            "a.txt",
            "ObjectCreated:Put",
            "FFFFFFFFFFFFFFFFFFFF",
            "copied",
        )
        .await;
    setup.put_source("a.txt", b"two".to_vec()).await;
    let (status, reply) = setup
        .deliver_vk("a.txt", "s3:ObjectCreated:Put", now, "e2")
        .await;
    assert_eq!(status, 200);
    assert_eq!(reply["records"][0]["mirror"], "copied", "{reply}");
    assert_eq!(setup.backup("a.txt").await.unwrap().0, b"two");

    // A token holder cannot park an absurd sequencer in front of the signed changes.
    let (status, _) = setup
        .deliver_vk("b.txt", "s3:ObjectRemoved:Delete", u64::MAX, "")
        .await;
    assert_eq!(status, 400);
    let (status, _) = setup
        .deliver_vk("b.txt", "s3:ObjectRemoved:Delete", now + 3600, "")
        .await;
    assert_eq!(status, 400);
    // Nor a plausible one: it orders VK's changes only.
    setup
        .deliver_vk("b.txt", "s3:ObjectRemoved:Delete", now + 120, "")
        .await;
    setup.put_source("b.txt", b"signed".to_vec()).await;
    setup
        .expect_mirror("b.txt", "ObjectCreated:Put", "0055AED6DCD90281E5", "copied")
        .await;
    assert_eq!(setup.backup("b.txt").await.unwrap().0, b"signed");
}

#[tokio::test]
async fn permanent_s3_failures_are_stored_reported_failed_and_acknowledged() {
    let setup = mirror_setup(|t| t).await;
    // An object in Glacier cannot be copied until it is restored: a retry cannot help.
    setup
        .s3
        .put_object()
        .bucket(&setup.source)
        .key("cold.bin")
        .storage_class(aws_sdk_s3::types::StorageClass::Glacier)
        .body(ByteStream::from(b"archived".to_vec()))
        .send()
        .await
        .unwrap();
    let (status, reply) = setup.deliver("cold.bin", "ObjectCreated:Put", "30").await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["records"][0]["outcome"], "stored");
    assert_eq!(reply["records"][0]["mirror"], "failed", "{reply}");
    assert_eq!(setup.events().await, 1);

    // A mirror bucket that does not exist.
    let missing = unique_name("no-such-mirror");
    let (gone, _) = handler_with(
        setup.store.clone(),
        &vars(),
        Some(S3Transfer::new(
            setup.s3.clone(),
            &missing,
            SourceAccess::SameAccount,
        )),
        &[&setup.source],
    );
    setup.put_source("warm.txt", b"fine".to_vec()).await;
    let message = json!({"Records": [aws_s3_record(&setup.source, "warm.txt", "ObjectCreated:Put", "31", "2024-03-01T12:09:58.120Z")]});
    let response = gone
        .handle(request_from_json(&s3_sns_request(
            &message,
            "msg-missing-mirror",
            "r",
        )))
        .await;
    assert_eq!(response.status(), 200);
    let reply = body_json(&response);
    assert_eq!(reply["records"][0]["mirror"], "failed", "{reply}");
    assert_eq!(setup.events().await, 2);
}

/// `template.yaml`, parsed.
fn template() -> serde_norway::Value {
    let text = std::fs::read_to_string(hub_tests::repo_root().join("template.yaml")).unwrap();
    serde_norway::from_str(&text).unwrap()
}

/// A value without its CloudFormation tag (`!Ref X` is `X`).
fn untagged(value: &serde_norway::Value) -> &serde_norway::Value {
    match value {
        serde_norway::Value::Tagged(tagged) => &tagged.value,
        other => other,
    }
}

#[test]
fn the_template_gives_the_s3_secrets_as_ssm_parameters_readable_by_this_function_only() {
    let template = template();
    let function = &template["Resources"]["S3NotificationFunction"]["Properties"];
    let env = function["Environment"]["Variables"].as_mapping().unwrap();
    let names: Vec<&str> = env.keys().filter_map(|k| k.as_str()).collect();
    for secret in [
        "S3_WEBHOOK_TOKEN",
        "S3_WEBHOOK_URL",
        "MIRROR_SOURCE_SECRET_ACCESS_KEY",
    ] {
        assert!(
            !names.contains(&secret),
            "{secret} is readable in the function's configuration"
        );
        let variable = format!("{secret}_PARAMETER");
        let parameter = untagged(&env[variable.as_str()])
            .as_str()
            .unwrap_or_else(|| panic!("{variable} is not set from a parameter"))
            .to_owned();
        assert!(
            template["Parameters"][parameter.as_str()].is_mapping(),
            "{parameter}"
        );
        let policies = serde_norway::to_string(&function["Policies"]).unwrap();
        assert!(
            policies.contains(&format!(":parameter${{{parameter}}}")),
            "ssm:GetParameter on exactly {parameter}: {policies}"
        );
    }
    let policies = serde_norway::to_string(&function["Policies"]).unwrap();
    assert!(policies.contains("ssm:GetParameter"));
    assert!(!policies.contains("parameter/*") && !policies.contains(":parameter*"));
    assert_eq!(
        untagged(&env["MIRROR_SOURCE_BUCKETS"]).as_str(),
        Some("MirrorSourceBuckets")
    );
}

#[test]
fn the_template_counts_permanent_mirror_failures_and_alarms_on_them() {
    let template = template();
    let resources = template["Resources"].as_mapping().unwrap();
    let of_type = |kind: &'static str| {
        resources
            .values()
            .filter(move |r| r["Type"].as_str() == Some(kind))
            .map(|r| &r["Properties"])
    };
    let filter = of_type("AWS::Logs::MetricFilter")
        .find(|p| untagged(&p["LogGroupName"]).as_str() == Some("S3NotificationLogs"))
        .expect("a metric filter on the s3-notification log group");
    let pattern = filter["FilterPattern"].as_str().unwrap();
    // The very line the handler logs (its JSON `message`, at level ERROR).
    let message = s3_notification::handler::MIRROR_FAILED_LOG;
    assert!(
        pattern.contains(&format!("$.message = \"{message}\"")),
        "{pattern}"
    );
    assert!(pattern.contains("$.level = \"ERROR\""), "{pattern}");
    let metric = &filter["MetricTransformations"][0];
    assert_eq!(metric["MetricNamespace"].as_str(), Some("CallbackHub"));
    assert_eq!(metric["MetricName"].as_str(), Some("MirrorFailed"));
    let alarm = of_type("AWS::CloudWatch::Alarm")
        .find(|p| {
            p["Namespace"].as_str() == Some("CallbackHub")
                && p["MetricName"].as_str() == Some("MirrorFailed")
        })
        .expect("an alarm on MirrorFailed");
    assert_eq!(alarm["Threshold"].as_u64(), Some(1));
}

#[tokio::test]
async fn build_reads_every_secret_from_ssm_and_mirrors_only_the_listed_buckets() {
    use hub_core::aws::LazyAws;
    use hub_core::setup::Setup;
    use hub_tests::fixtures::{s3_webhook_url, S3_WEBHOOK_TOKEN};
    let moto = Moto::shared();
    let sdk = moto.sdk_config().await;
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let prefix = format!("/callback-hub/{}", unique_name("s3"));
    for (name, value) in [
        ("token", S3_WEBHOOK_TOKEN.to_owned()),
        ("url", s3_webhook_url()),
        ("source-secret", "vk-secret".to_owned()),
    ] {
        ssm.put_parameter()
            .name(format!("{prefix}/{name}"))
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .value(value)
            .send()
            .await
            .unwrap();
    }
    let s3 = moto_s3().await;
    let (source, mirror) = (bucket(&s3, "source").await, bucket(&s3, "mirror").await);
    let outside = bucket(&s3, "outside").await;
    for bucket in [&source, &outside] {
        s3.put_object()
            .bucket(bucket)
            .key("k.txt")
            .body(ByteStream::from(b"data".to_vec()))
            .send()
            .await
            .unwrap();
    }
    let setup = |token_parameter: String| {
        let vars: HashMap<String, String> = [
            ("S3_WEBHOOK_TOKEN_PARAMETER", token_parameter),
            ("S3_WEBHOOK_URL_PARAMETER", format!("{prefix}/url")),
            (
                "MIRROR_SOURCE_SECRET_ACCESS_KEY_PARAMETER",
                format!("{prefix}/source-secret"),
            ),
            ("MIRROR_BUCKET", mirror.clone()),
            ("MIRROR_SOURCE_BUCKETS", source.clone()),
            // The sources are "elsewhere" (moto again), so the secret key is really used.
            ("MIRROR_SOURCE_ENDPOINT", moto.endpoint().to_owned()),
            ("MIRROR_SOURCE_ACCESS_KEY_ID", "vk-access-key".to_owned()),
            ("AWS_ENDPOINT_URL", moto.endpoint().to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Setup::new(vars, LazyAws::ready(sdk.clone())).unwrap()
    };
    let store = fresh_store("s3-build").await;
    let handler = s3_notification::build(store.clone(), &setup(format!("{prefix}/token")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The handshake is signed over the URL from SSM, and the token from SSM admits it.
    let response = handler
        .handle(fixture_request("s3-vk-handshake.json"))
        .await;
    assert_eq!(response.status(), 200);
    let vector: Value = serde_json::from_str(
        &std::fs::read_to_string(
            hub_tests::repo_root().join("functions/s3-notification/tests/fixtures/vk-s3.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let expected = s3_notification::vk::handshake_signature(
        vector["request_body"]["Token"].as_str().unwrap(),
        vector["request_body"]["Timestamp"].as_str().unwrap(),
        vector["request_body"]["TopicArn"].as_str().unwrap(),
        &s3_webhook_url(),
    );
    assert_eq!(body_json(&response)["signature"], expected);
    for (bucket, expected) in [(&source, "copied"), (&outside, "bucket_not_allowed")] {
        let mut record = vk_record("k.txt", "s3:ObjectCreated:Put", vk_now());
        record["s3"]["bucket"]["name"] = json!(bucket);
        let request = vk_request(&json!({"Records": [record]}), "r");
        let response = handler.handle(request_from_json(&request)).await;
        assert_eq!(response.status(), 200);
        let reply = body_json(&response);
        assert_eq!(reply["records"][0]["mirror"], expected, "{bucket}: {reply}");
    }
    let listed = s3.list_objects_v2().bucket(&mirror).send().await.unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, [format!("{source}/k.txt")]);

    let missing = s3_notification::build(store, &setup(format!("{prefix}/absent")))
        .await
        .err()
        .expect("an absent parameter stops the start");
    assert_eq!(missing.variable(), "S3_WEBHOOK_TOKEN_PARAMETER");
}
