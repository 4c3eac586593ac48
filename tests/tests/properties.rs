//! Stable-toolchain property tests, one group per fuzz target in `fuzz/` (RELIABILITY.md): the
//! parsers of untrusted input take arbitrary bytes and structured mutations of the fixtures'
//! valid messages without panicking, and the real handlers never acknowledge what was altered.
//! Case counts keep the file within seconds in CI; `scripts/fuzz.sh` runs the long searches.

use callback_hub::{AnyStore, LocalStore, SqliteStore};
use hub_core::aws::LazyAws;
use hub_core::event::{Event, Source};
use hub_core::http::Handler;
use hub_core::setup::Setup;
use hub_core::store::Retained;
use hub_tests::{fixture_json, repo_root, request_from_json};
use proptest::prelude::*;
use serde_json::Value;
use std::sync::OnceLock;

const CASES: u32 = 256;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

fn setup() -> Setup {
    let vars = callback_hub::demo::demo_vars(&repo_root().join("events")).unwrap();
    Setup::new(vars, LazyAws::full()).unwrap()
}

fn fresh() -> (SqliteStore, LocalStore) {
    let sqlite = SqliteStore::in_memory().unwrap();
    let local = Retained::new(AnyStore::Sqlite(sqlite.clone()), None);
    (sqlite, local)
}

fn body_of(fixture: &Value) -> Vec<u8> {
    fixture["body"]
        .as_str()
        .unwrap_or_default()
        .as_bytes()
        .to_vec()
}

/// The fixture with another body (headers, query and path kept).
fn with_body(fixture: &Value, body: &[u8]) -> Option<lambda_http::Request> {
    let mut v = fixture.clone();
    v["body"] = Value::String(String::from_utf8(body.to_vec()).ok()?);
    Some(request_from_json(&v))
}

/// A structured mutation of `bytes`: overwrite, insert or delete at a position.
fn mutate(bytes: &[u8], op: u8, at: usize, byte: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if out.is_empty() {
        return vec![byte];
    }
    let at = at % out.len();
    match op % 3 {
        0 => out[at] = if out[at] == byte { byte ^ 1 } else { byte },
        1 => out.insert(at, byte),
        _ => {
            out.remove(at);
        }
    }
    out
}

/// Sends every body through `handler` on an empty store: none is acknowledged or stored.
fn never_accepted<H: Handler>(handler: &H, sqlite: &SqliteStore, fixture: &Value, body: &[u8]) {
    if body == body_of(fixture).as_slice() {
        return;
    }
    let Some(request) = with_body(fixture, body) else {
        return;
    };
    let status = runtime().block_on(handler.handle(request)).status();
    assert!(
        !status.is_success(),
        "an altered body was acknowledged: {status}"
    );
    assert_eq!(runtime().block_on(sqlite.count()).unwrap(), 0);
}

// DingTalk: signature check, decryption, event parse.
proptest! {
    #![proptest_config(config())]

    #[test]
    fn dingtalk_only_the_right_signature_verifies(
        presented in "[0-9a-f]{40}", ts in ".{0,20}", nonce in ".{0,20}", encrypt in ".{0,80}"
    ) {
        let crypto = hub_tests::fixtures::dingtalk_crypto();
        let expected = crypto.signature(&ts, &nonce, &encrypt);
        prop_assert_eq!(crypto.verify(&presented, &ts, &nonce, &encrypt).is_ok(), presented == expected);
        prop_assert!(crypto.verify(&expected, &ts, &nonce, &encrypt).is_ok());
    }

    #[test]
    fn dingtalk_decrypts_anything_safely_and_round_trips(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let crypto = hub_tests::fixtures::dingtalk_crypto();
        let _ = crypto.decrypt(&String::from_utf8_lossy(&data));
        let cipher = crypto.encrypt_with_prefix(&data, [3; 16]);
        prop_assert_eq!(crypto.decrypt(&cipher).unwrap(), data);
    }

    #[test]
    fn dingtalk_event_fields_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(Value::Object(event)) = serde_json::from_slice::<Value>(&data) {
            let _ = dingtalk_callback::events::subject("bpms_task_change", &event, "owner");
            let _ = dingtalk_callback::events::occurred_at(&event);
        }
    }
}

#[test]
fn dingtalk_handler_acknowledges_no_altered_body() {
    let (sqlite, store) = fresh();
    let handler = runtime()
        .block_on(dingtalk_callback::build(store, &setup()))
        .unwrap();
    let fixture = fixture_json("dingtalk-user-add-org.json");
    let original = body_of(&fixture);
    proptest!(config(), |(op in any::<u8>(), at in any::<usize>(), byte in any::<u8>(),
                          noise in proptest::collection::vec(any::<u8>(), 0..64))| {
        never_accepted(&handler, &sqlite, &fixture, &mutate(&original, op, at, byte));
        never_accepted(&handler, &sqlite, &fixture, &noise);
    });
}

// SNS envelope and string to sign.
proptest! {
    #![proptest_config(config())]

    #[test]
    fn sns_parse_takes_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(message) = sns::parse(&data) {
            let _ = sns::string_to_sign(&message);
            let _ = sns::check_cert_url(&message.signing_cert_url);
        }
    }

    #[test]
    fn sns_signed_fields_all_change_the_string_to_sign(
        field in prop::sample::select(vec!["Message", "MessageId", "Timestamp", "TopicArn", "Subject"]),
        extra in "[a-zA-Z0-9 ]{1,8}",
    ) {
        let body = body_of(&fixture_json("s3-sns-object-created.json"));
        let mut envelope: serde_json::Map<String, Value> = serde_json::from_slice(&body).unwrap();
        let original = sns::string_to_sign(&sns::parse_object(&envelope).unwrap());
        let value = envelope.get(field).and_then(Value::as_str).unwrap_or_default().to_owned();
        envelope.insert(field.to_owned(), Value::String(value + &extra));
        let changed = sns::string_to_sign(&sns::parse_object(&envelope).unwrap());
        prop_assert_ne!(original, changed);
    }
}

/// SNS signs fields, not bytes (§2.3): an altered envelope may be acknowledged only when it
/// still carries the same signed fields and signature (JSON spacing, unsigned fields).
fn sns_acknowledged_only_when_signed_fields_unchanged<H: Handler>(
    handler: &H,
    fixture: &Value,
    body: &[u8],
) {
    let original = sns::parse(&body_of(fixture)).unwrap();
    let Some(request) = with_body(fixture, body) else {
        return;
    };
    let status = runtime().block_on(handler.handle(request)).status();
    if status.is_success() {
        let parsed = sns::parse(body).expect("an acknowledged envelope parses");
        assert_eq!(sns::string_to_sign(&parsed), sns::string_to_sign(&original));
        assert_eq!(parsed.signature, original.signature);
    }
}

#[test]
fn sns_handlers_acknowledge_no_altered_signed_field() {
    let (_sqlite, store) = fresh();
    let s3 = runtime()
        .block_on(s3_notification::build(store.clone(), &setup()))
        .unwrap();
    let stacks = runtime()
        .block_on(stack_hook::build(store, &setup()))
        .unwrap();
    let s3_fixture = fixture_json("s3-sns-object-created.json");
    let stack_fixture = fixture_json("stack-hook-sns-stack-event.json");
    proptest!(config(), |(op in any::<u8>(), at in any::<usize>(), byte in any::<u8>())| {
        let body = mutate(&body_of(&s3_fixture), op, at, byte);
        sns_acknowledged_only_when_signed_fields_unchanged(&s3, &s3_fixture, &body);
        let body = mutate(&body_of(&stack_fixture), op, at, byte);
        sns_acknowledged_only_when_signed_fields_unchanged(&stacks, &stack_fixture, &body);
    });
}

// CloudFormation `Key='Value'` text, ROS bodies, Tsuru events, S3/VK records and handshake.
proptest! {
    #![proptest_config(config())]

    #[test]
    fn cfn_messages_never_panic(text in "(([A-Za-z]{1,10}='[^\n]{0,20}'?)?\n?){0,8}", raw in ".{0,200}") {
        for t in [&text, &raw] {
            if let Ok(event) = stack_hook::cfn::parse(t) {
                let _ = (event.scoped_event_id(), event.timestamp(), event.is_stack_level(), event.to_json());
            }
        }
    }

    #[test]
    fn ros_tsuru_s3_vk_parsers_take_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = stack_hook::ros::parse(&data);
        let _ = tsuru_hook::body::parse(&data);
        if let Ok(s3_notification::records::S3Notification::Records(records)) =
            s3_notification::records::parse(&data)
        {
            for r in records {
                let _ = (r.event_id(), r.subject());
            }
        }
        if let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&data) {
            if let Ok(h) = s3_notification::vk::VkHandshake::parse(&body) {
                prop_assert_eq!(h.signature("u").len(), 64);
            }
        }
    }

    #[test]
    fn mutated_fixture_bodies_parse_or_are_refused(
        fixture in prop::sample::select(vec![
            "stack-hook-ros-create-complete.json", "tsuru-app-deploy.json",
            "s3-vk-records.json", "s3-vk-handshake.json",
        ]),
        op in any::<u8>(), at in any::<usize>(), byte in any::<u8>(),
    ) {
        let data = mutate(&body_of(&fixture_json(fixture)), op, at, byte);
        let _ = stack_hook::ros::parse(&data);
        if let Ok(event) = tsuru_hook::body::parse(&data) {
            prop_assert!(event.subject().contains('/'));
        }
        let _ = s3_notification::records::parse(&data);
    }

    #[test]
    fn vk_handshake_signature_depends_on_every_input(extra in "[a-z0-9]{1,6}") {
        let base = s3_notification::vk::handshake_signature("t", "1", "o|b|e", "https://h/s3");
        for changed in [
            s3_notification::vk::handshake_signature(&format!("t{extra}"), "1", "o|b|e", "https://h/s3"),
            s3_notification::vk::handshake_signature("t", &format!("1{extra}"), "o|b|e", "https://h/s3"),
            s3_notification::vk::handshake_signature("t", "1", &format!("o|b|e{extra}"), "https://h/s3"),
            s3_notification::vk::handshake_signature("t", "1", "o|b|e", &format!("https://h/s3{extra}")),
        ] {
            prop_assert_ne!(&base, &changed);
        }
    }
}

// MNS bodies and header canonicalisation.
proptest! {
    #![proptest_config(config())]

    #[test]
    fn mns_bodies_without_their_md5_are_refused(
        fixture in prop::sample::select(vec!["mns-xml.json", "mns-json.json", "mns-simplified.json"]),
        op in any::<u8>(), at in any::<usize>(), byte in any::<u8>(),
    ) {
        let json = fixture_json(fixture);
        let mut headers = http::HeaderMap::new();
        for (k, v) in json["headers"].as_object().unwrap() {
            headers.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v.as_str().unwrap()).unwrap(),
            );
        }
        let original = body_of(&json);
        prop_assert!(mns_endpoint::body::parse(&headers, &original).is_ok());
        let altered = mutate(&original, op, at, byte);
        prop_assert!(mns_endpoint::body::parse(&headers, &altered).is_err());
        prop_assert!(mns_endpoint::body::parse(&headers, b"").is_err());
    }

    #[test]
    fn mns_string_to_sign_covers_every_x_mns_header(
        name in "x-mns-[a-z]{1,10}", value in "[ -~]{0,20}", resource in "/[ -~]{0,30}",
    ) {
        let mut headers = http::HeaderMap::new();
        headers.insert("date", http::HeaderValue::from_static("Fri, 01 Mar 2024 12:00:00 GMT"));
        let before = mns_endpoint::signature::string_to_sign("POST", &headers, &resource).unwrap();
        headers.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(&value).unwrap(),
        );
        let after = mns_endpoint::signature::string_to_sign("POST", &headers, &resource).unwrap();
        prop_assert_ne!(&before, &after);
        prop_assert!(after.ends_with(&resource));
        let allowed = vec![mns_endpoint::signature::DEFAULT_CERT_URLS[0].to_owned()];
        let _ = mns_endpoint::signature::cert_url(&headers, &allowed);
    }
}

#[test]
fn mns_handler_acknowledges_no_altered_body() {
    let (sqlite, store) = fresh();
    let handler = runtime()
        .block_on(mns_endpoint::build(store, &setup()))
        .unwrap();
    let fixtures = [
        fixture_json("mns-xml.json"),
        fixture_json("mns-json.json"),
        fixture_json("mns-simplified.json"),
    ];
    proptest!(config(), |(which in 0usize..3, op in any::<u8>(), at in any::<usize>(), byte in any::<u8>())| {
        let fixture = &fixtures[which];
        never_accepted(&handler, &sqlite, fixture, &mutate(&body_of(fixture), op, at, byte));
        never_accepted(&handler, &sqlite, fixture, b"");
    });
}

// The Go-template renderer over attacker-controlled event data.
proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..config() })]

    #[test]
    fn templates_render_within_their_limits(
        payload in prop_oneof![
            ".{0,200}",
            "\\{(\"[a-z]{1,3}\":(\\[1,2,3\\]|\"[^\"]{0,10}\"|\\{\\}),?){0,6}\\}",
        ],
        template in "[{}. a-z$:=|\"()]{0,60}",
    ) {
        use webhooks::template::{BodyTemplate, MAX_OUTPUT_BYTES};
        let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let event = Event::new(Source::Tsuru, "id", "app.deploy", "app/x", payload, at);
        let view = webhooks::EventView::from_event(&event);
        for source in [
            template.as_str(),
            "{{range $k, $v := .data}}{{$k}}={{$v}};{{end}}",
            "{{json .data}}{{printf \"%v\" .data}}{{html .data}}{{urlquery .data}}",
        ] {
            if let Ok(parsed) = BodyTemplate::parse(source) {
                if let Ok(out) = parsed.render(&view) {
                    prop_assert!(out.len() <= MAX_OUTPUT_BYTES);
                }
            }
        }
    }
}

// The env-file parser and the pagination cursors.
proptest! {
    #![proptest_config(config())]

    #[test]
    fn env_files_never_panic_and_errors_name_a_line(text in "([A-Za-z_ #'\"=$\\{\\}\\\\]{0,12}\n?){0,10}") {
        match callback_hub::dotenv::parse(&text, "f.env") {
            Ok(pairs) => prop_assert!(pairs.iter().all(|(n, _)| !n.is_empty())),
            Err(err) => prop_assert!(err.line <= text.lines().count() + 1),
        }
    }

    #[test]
    fn sqlite_cursors_round_trip_and_foreign_ones_are_refused(key in ".{0,40}", junk in "[A-Za-z0-9_%=-]{0,40}") {
        let cursor = sqlite_store::encode_cursor(&key);
        prop_assert_eq!(sqlite_store::decode_cursor(&cursor).unwrap(), key);
        if let Ok(decoded) = sqlite_store::decode_cursor(&junk) {
            prop_assert_eq!(sqlite_store::encode_cursor(&decoded), junk);
        }
    }

    #[test]
    fn dynamo_cursors_accept_only_their_index_attributes(
        pk in ".{0,20}", sk in ".{0,20}", other in "[a-z]{1,8}", junk in "[A-Za-z0-9_-]{0,60}",
    ) {
        use hub_core::store::dynamo::cursor::{decode_cursor, encode_cursor, to_key};
        let allowed = ["pk", "sk"];
        let key: std::collections::HashMap<String, String> =
            [("pk".to_owned(), pk), ("sk".to_owned(), sk)].into();
        let cursor = encode_cursor(&to_key(key.clone()), None).unwrap();
        prop_assert_eq!(decode_cursor(&cursor, &allowed).unwrap(), key.clone());
        if other != "pk" && other != "sk" {
            let foreign = encode_cursor(&to_key(key), Some((&other, "x"))).unwrap();
            prop_assert!(decode_cursor(&foreign, &allowed).is_err());
        }
        if let Ok(map) = decode_cursor(&junk, &allowed) {
            prop_assert!(map.keys().all(|k| allowed.contains(&k.as_str())));
        }
    }
}
