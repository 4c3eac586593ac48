//! The console's read API through its real handler, against DynamoDB on moto: events stored by
//! the real Tsuru handler from the `events/` samples, the deliveries they caused in the webhooks
//! table, and the console's own `events/console-*.json` requests.

use hub_core::clock::FixedClock;
use hub_core::config::{EdgeConfig, Secret};
use hub_core::event::{parse_time, Event, Source};
use hub_core::http::Handler;
use hub_core::store::{DynamoStore, EventLookup, EventWriter, Retained};
use hub_tests::fixtures::{LOCAL_API_TOKEN, TSURU_DEPLOY_ID};
use hub_tests::{
    body_json, fixture_request, fixture_vars, fresh_store, template, unique_name, Moto,
};
use lambda_http::{Body, Request};
use serde_json::json;
use tsuru_hook::{TsuruConfig, TsuruHook};
use web_console::WebConsole;
use webhooks::dynamo::DynamoWebhookStore;
use webhooks::store::{Delivery, DeliveryStore, SubscriptionStore};
use webhooks::{Subscription, ValidationPolicy};

const NOW: &str = "2024-03-01T12:30:00Z";

type Console = WebConsole<Retained<DynamoStore>, DynamoWebhookStore, FixedClock>;

async fn fresh_webhook_store() -> DynamoWebhookStore {
    let client = Moto::shared().dynamodb().await;
    let table = unique_name("console-webhooks");
    template::create_webhooks_table(&client, &table).await;
    DynamoWebhookStore::new(client, table)
}

fn now() -> chrono::DateTime<chrono::Utc> {
    parse_time(NOW).unwrap()
}

/// The three Tsuru samples, stored by the Tsuru handler itself.
async fn store_tsuru_samples(store: &DynamoStore) {
    let vars = fixture_vars("TsuruHookFunction");
    let token = Secret::new(&vars["TSURU_WEBHOOK_TOKEN"]);
    let config = TsuruConfig::new(
        EdgeConfig::from_vars(&vars).unwrap(),
        token,
        "TSURU_WEBHOOK_TOKEN",
    )
    .unwrap();
    let hook = TsuruHook::new(store.clone(), FixedClock::at(now()), config);
    for sample in [
        "tsuru-app-deploy.json",
        "tsuru-app-deploy-failed.json",
        "tsuru-healer-node.json",
    ] {
        let response = hook.handle(fixture_request(sample)).await;
        assert_eq!(response.status(), 200, "{sample}");
    }
}

async fn console() -> (Console, DynamoStore, DynamoWebhookStore) {
    let store = fresh_store("console").await;
    let hooks = fresh_webhook_store().await;
    let console = WebConsole::new(
        Retained::new(store.clone(), None),
        Ok(hooks.clone()),
        Some(Secret::new(LOCAL_API_TOKEN)),
        FixedClock::at(now()),
    );
    (console, store, hooks)
}

fn get(uri: &str, token: Option<&str>) -> Request {
    let mut builder = http::Request::builder().method("GET").uri(uri);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(Body::Empty).unwrap()
}

fn ids(value: &serde_json::Value) -> Vec<String> {
    value["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_console_samples_answer_against_dynamodb() {
    let (console, store, hooks) = console().await;
    store_tsuru_samples(&store).await;
    let deploy = store
        .get_event(Source::Tsuru, TSURU_DEPLOY_ID)
        .await
        .unwrap()
        .unwrap();
    let policy = ValidationPolicy {
        allowed_proxy_urls: Vec::new(),
        allow_private_networks: true,
    };
    let sub: Subscription =
        serde_json::from_value(json!({"name": "deploys", "url": "http://127.0.0.1:9/"})).unwrap();
    hooks
        .create_subscription(&sub.prepare_new(&policy, now()).unwrap())
        .await
        .unwrap();
    hooks
        .create_delivery(&Delivery::new("deploys", &deploy, now()))
        .await
        .unwrap();

    let page = console
        .handle(fixture_request("console-get-page.json"))
        .await;
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'self'"));

    let listing = console
        .handle(fixture_request("console-get-events.json"))
        .await;
    assert_eq!(listing.status(), 200);
    assert_eq!(ids(&body_json(&listing)).len(), 3);

    let stats = body_json(
        &console
            .handle(fixture_request("console-get-stats.json"))
            .await,
    );
    let tsuru = stats["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "tsuru")
        .unwrap()
        .clone();
    assert_eq!(tsuru["daily"].as_array().unwrap().len(), 7);

    let one = console
        .handle(fixture_request("console-get-event.json"))
        .await;
    assert_eq!(one.status(), 200);
    let one = body_json(&one);
    assert_eq!(one["event"]["event_id"], TSURU_DEPLOY_ID);
    assert!(one["event"]["payload"].is_object());
    assert_eq!(one["deliveries"][0]["subscription"], "deploys");

    let mut unauthenticated = fixture_request("console-get-events.json");
    unauthenticated.headers_mut().remove("authorization");
    assert_eq!(console.handle(unauthenticated).await.status(), 401);
}

#[tokio::test]
async fn listing_pages_through_months_newest_first_and_filters_on_dynamodb() {
    let (console, store, _) = console().await;
    let times = [
        "2023-12-30T10:00:00Z",
        "2024-01-15T10:00:00Z",
        "2024-02-01T00:00:00Z",
        "2024-02-20T10:00:00Z",
        "2024-03-01T12:00:00Z",
    ];
    for (i, time) in times.iter().enumerate() {
        let kind = if i % 2 == 0 { "even" } else { "odd" };
        let event = Event::new(
            Source::S3,
            format!("s3-{i}"),
            kind,
            "bucket/key",
            "{}",
            parse_time(time).unwrap(),
        );
        store.put_event(&event).await.unwrap();
    }
    let other = Event::new(Source::Mns, "mns-0", "odd", "topic", "{}", now());
    store.put_event(&other).await.unwrap();

    let mut seen = Vec::new();
    let mut uri = "/events?source=s3&limit=2".to_owned();
    loop {
        let response = console.handle(get(&uri, Some(LOCAL_API_TOKEN))).await;
        assert_eq!(response.status(), 200);
        let body = body_json(&response);
        seen.extend(ids(&body));
        match body["next"].as_str() {
            Some(next) => uri = format!("/events?source=s3&limit=2&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(seen, ["s3-4", "s3-3", "s3-2", "s3-1", "s3-0"]);

    let odd = body_json(
        &console
            .handle(get("/events?type=odd", Some(LOCAL_API_TOKEN)))
            .await,
    );
    assert_eq!(ids(&odd), ["mns-0", "s3-3", "s3-1"]);
    let february = body_json(
        &console
            .handle(get(
                "/events?since=2024-02-01T00:00:00Z&until=2024-02-29T23:59:59Z",
                Some(LOCAL_API_TOKEN),
            ))
            .await,
    );
    assert_eq!(ids(&february), ["s3-3", "s3-2"]);
    let subject = body_json(
        &console
            .handle(get(
                "/events?source=s3&subject=bucket/key&type=even",
                Some(LOCAL_API_TOKEN),
            ))
            .await,
    );
    assert_eq!(ids(&subject), ["s3-4", "s3-2", "s3-0"]);
}
