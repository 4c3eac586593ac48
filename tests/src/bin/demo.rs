//! Replays every sample request in `events/` through the function handlers, against DynamoDB on
//! a moto server it starts itself, and prints what each sender got back and what was stored.
//! Exits non-zero unless every sample was accepted and its event stored.

use hub_core::clock::SystemClock;
use hub_core::event::Source;
use hub_core::store::{DynamoStore, PageRequest, SubjectHistory};
use hub_tests::template::create_events_table;
use hub_tests::{fixture_env, fixture_request, repo_root, Moto};
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

    let vars: HashMap<String, String> = fixture_env("StackHookFunction").into_iter().collect();
    let stack_hook = StackHook::new(
        store.clone(),
        SystemClock,
        StackHookConfig::from_vars(&vars).expect("events/env.json"),
    );

    let mut names: Vec<String> = std::fs::read_dir(repo_root().join("events"))
        .expect("events/ exists")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".json") && name != "env.json")
        .collect();
    // Notifications before the status queries that read them.
    names.sort_by_key(|name| (name.contains("get-"), name.clone()));

    let mut failures = 0;
    for name in &names {
        let request = fixture_request(name);
        let line = format!("{} {}", request.method(), request.uri().path());
        let response = if request.uri().path().starts_with("/stacks") {
            stack_hook.handle(request).await
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

    let history = store
        .events_about(
            Source::Stack,
            "test-notification-url",
            &PageRequest::first(10),
        )
        .await
        .expect("read back from moto");
    println!("\nstored events about stack test-notification-url, newest first:");
    for event in &history.events {
        println!(
            "  {} {} {} {}",
            event.received_at, event.source, event.event_type, event.event_id
        );
    }
    if history.events.is_empty() {
        failures += 1;
    }
    if failures == 0 {
        println!("\ndemo: every sample accepted and stored");
        ExitCode::SUCCESS
    } else {
        println!("\ndemo: {failures} sample(s) failed");
        ExitCode::FAILURE
    }
}
