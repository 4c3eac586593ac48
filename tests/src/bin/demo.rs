//! Replays every sample request in `events/` through the function handlers, against DynamoDB on
//! a moto server it starts itself, and prints what each sender got back and what was stored.
//! Exits non-zero unless every sample was accepted and its event stored.

use dingtalk_callback::{crypto_from, DingTalkHandler, Origin, RawSecrets};
use hub_core::clock::SystemClock;
use hub_core::config::{EdgeConfig, Vars};
use hub_core::event::Source;
use hub_core::store::{DynamoStore, PageRequest, SubjectHistory};
use hub_tests::template::create_events_table;
use hub_tests::{fixture_env, fixture_request, fixture_vars, repo_root, Moto};
use lambda_http::Body;
use stack_hook::{StackHook, StackHookConfig};
use std::collections::HashMap;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let moto = Moto::shared();
    let client = moto.dynamodb().await;
    let table = "callback-hub-demo";
    create_events_table(&client, table).await;
    let store = DynamoStore::new(client, table);
    println!("moto server at {}, table {table}\n", moto.endpoint());

    let vars = fixture_vars("StackHookFunction");
    let stack_hook = StackHook::new(
        store.clone(),
        SystemClock,
        StackHookConfig::from_vars(&vars).expect("events/env.json"),
        hub_core::sns::verifier_from_vars(&vars).expect("events/env.json"),
    );

    let vars: HashMap<String, String> = fixture_env("DingTalkFunction").into_iter().collect();
    let secrets = RawSecrets {
        token: vars.required("DINGTALK_TOKEN").expect("events/env.json"),
        aes_key: vars.required("DINGTALK_AES_KEY").expect("events/env.json"),
        owner_key: vars
            .required("DINGTALK_OWNER_KEY")
            .expect("events/env.json"),
    };
    let crypto = crypto_from(secrets, Origin::Variables)
        .expect("events/env.json has valid DingTalk secrets");
    let dingtalk = DingTalkHandler::new(store.clone(), SystemClock, crypto, EdgeConfig::default());

    let vars = fixture_vars("MnsFunction");
    let certificates = hub_core::certs::CertificateCache::new(
        hub_core::certs::HttpsFetcher::new().expect("trust roots"),
        hub_core::certs::pinned_from_vars(&vars).expect("events/pinned-certs.json"),
    );
    let mns = mns_endpoint::MnsHandler::new(
        store.clone(),
        SystemClock,
        certificates,
        mns_endpoint::MnsConfig::from_vars(&vars).expect("events/env.json"),
    );

    let vars = fixture_vars("S3NotificationFunction");
    let s3 = s3_notification::S3Handler::<_, _, _, s3_notification::S3Transfer>::new(
        store.clone(),
        SystemClock,
        s3_notification::S3Config::from_vars(&vars).expect("events/env.json"),
        hub_core::sns::verifier_from_vars(&vars).expect("events/env.json"),
        None,
    );

    let mut names: Vec<String> = std::fs::read_dir(repo_root().join("events"))
        .expect("events/ exists")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".json") && name != "env.json" && name != "pinned-certs.json")
        .collect();
    // Notifications before the status queries that read them.
    names.sort_by_key(|name| (name.contains("get-"), name.clone()));

    let mut failures = 0;
    for name in &names {
        let request = fixture_request(name);
        let line = format!("{} {}", request.method(), request.uri().path());
        let path = request.uri().path().to_owned();
        let response = if path.starts_with("/stacks") {
            stack_hook.handle(request).await
        } else if path == "/dingtalk" {
            dingtalk.handle(request).await
        } else if path == "/mns" {
            mns.handle(request).await
        } else if path == "/s3" {
            s3.handle(request).await
        } else {
            println!("{name}: no function serves {line} yet");
            failures += 1;
            continue;
        };
        let body = match response.body() {
            Body::Text(text) => text.clone(),
            Body::Binary(bytes) => String::from_utf8_lossy(&bytes[..]).into_owned(),
            _ => String::new(),
        };
        let ok = response.status().is_success();
        failures += usize::from(!ok);
        println!("{name}\n  {line} -> {} {body}", response.status().as_u16());
    }

    // What the samples should have left in the table: (source, subject, events).
    let expected = [
        (Source::Stack, "test-notification-url", 2),
        (Source::Stack, "orders-api", 2),
        (Source::Dingtalk, hub_tests::fixtures::APPROVAL_ID, 2),
        (Source::Dingtalk, "user:manager7140", 1),
        (Source::Mns, "orders", 3),
        (Source::S3, "bucketA/reports/2024 q1.csv", 1),
        (Source::S3, "bucketA/reports/old.csv", 1),
        (
            Source::S3,
            "photos-2024/holiday/red flower \u{e9}t\u{e9}.jpg",
            1,
        ),
        (Source::S3, "photos-2024", 1),
    ];
    for (source, subject, count) in expected {
        let history = store
            .events_about(source, subject, &PageRequest::first(10))
            .await
            .expect("read back from moto");
        println!("\nstored {source} events about {subject}, newest first:");
        for event in &history.events {
            let at = hub_core::event::format_time(event.event_time());
            println!("  {at} {} {}", event.event_type, event.event_id);
        }
        if history.events.len() != count {
            println!("  expected {count}, found {}", history.events.len());
            failures += 1;
        }
    }
    if failures == 0 {
        println!("\ndemo: every sample accepted and stored");
        ExitCode::SUCCESS
    } else {
        println!("\ndemo: {failures} sample(s) failed");
        ExitCode::FAILURE
    }
}
