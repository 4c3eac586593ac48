//! The console through its real handler, on the memory stores and a fixed clock.

use super::*;
use chrono::{DateTime, Duration, TimeZone, Utc};
use hub_core::clock::FixedClock;
use hub_core::event::Event;
use hub_core::store::memory::MemoryStore;
use hub_core::store::EventWriter;
use serde_json::Value;
use std::sync::Arc;
use webhooks::store::memory::MemoryWebhookStore;
use webhooks::store::{Delivery, DeliveryStore, SubscriptionStore};
use webhooks::{Subscription, ValidationPolicy};

const TOKEN: &str = "console-token-for-tests";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 6, 10, 12, 30, 0).unwrap()
}

type Console = WebConsole<Arc<MemoryStore>, Arc<MemoryWebhookStore>, Arc<FixedClock>>;

fn console_with(token: Option<&str>) -> (Console, Arc<MemoryStore>, Arc<MemoryWebhookStore>) {
    let store = Arc::new(MemoryStore::new());
    let hooks = Arc::new(MemoryWebhookStore::new());
    let console = WebConsole::new(
        store.clone(),
        Ok(hooks.clone()),
        token.map(Secret::new),
        Arc::new(FixedClock::at(now())),
    );
    (console, store, hooks)
}

fn console() -> (Console, Arc<MemoryStore>, Arc<MemoryWebhookStore>) {
    console_with(Some(TOKEN))
}

fn get(uri: &str, token: Option<&str>) -> Request {
    let mut builder = http::Request::builder().method("GET").uri(uri);
    if let Some(token) = token {
        builder = builder.header("Authorization", format!("Bearer {token}"));
    }
    builder.body(Body::Empty).unwrap()
}

fn json_of(response: &Response<Body>) -> Value {
    match response.body() {
        Body::Text(text) => serde_json::from_str(text).unwrap(),
        Body::Binary(bytes) => serde_json::from_slice(bytes).unwrap(),
        Body::Empty => Value::Null,
        _ => panic!("unexpected body"),
    }
}

fn header<'r>(response: &'r Response<Body>, name: &str) -> &'r str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

async fn put(
    store: &MemoryStore,
    source: Source,
    id: &str,
    kind: &str,
    subject: &str,
    at: DateTime<Utc>,
) {
    let event = Event::new(source, id, kind, subject, format!(r#"{{"id":"{id}"}}"#), at);
    store.put_event(&event).await.unwrap();
}

fn ids(body: &Value) -> Vec<String> {
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn assets_are_served_without_a_token_with_the_security_headers() {
    let (console, _, _) = console_with(None);
    for (path, content_type) in [
        ("/console", "text/html; charset=utf-8"),
        ("/console/console.js", "text/javascript; charset=utf-8"),
        ("/console/console.css", "text/css; charset=utf-8"),
        ("/prod/console/console.js", "text/javascript; charset=utf-8"),
    ] {
        let response = console.handle(get(path, None)).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(header(&response, "content-type"), content_type, "{path}");
        let csp = header(&response, "content-security-policy");
        assert!(csp.contains("default-src 'self'"), "{csp}");
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        assert_eq!(header(&response, "referrer-policy"), "no-referrer");
        assert_eq!(header(&response, "x-frame-options"), "DENY");
        assert!(!header(&response, "cache-control").is_empty());
    }
}

#[test]
fn the_page_has_no_inline_script_and_loads_nothing_from_elsewhere() {
    let page = assets::ASSETS[0].body;
    for tag in page.split("<script").skip(1) {
        assert!(tag.trim_start().starts_with("src="), "inline script: {tag}");
    }
    for asset in assets::ASSETS {
        // XML namespaces are names, not requests.
        let body = asset.body.replace("http://www.w3.org/2000/svg", "");
        assert!(!body.contains("http://"), "{}", asset.name);
        assert!(!body.contains("https://"), "{}", asset.name);
        // Data is put on the page as text, never parsed as HTML.
        assert!(!asset.body.contains("innerHTML"), "{}", asset.name);
        assert!(!asset.body.contains("localStorage"), "{}", asset.name);
    }
}

#[tokio::test]
async fn the_page_is_at_console_and_its_files_resolve_from_there() {
    let (console, _, _) = console_with(None);
    for path in ["/console/", "/console/index.html", "/prod/console/"] {
        let response = console.handle(get(path, None)).await;
        assert_eq!(response.status(), 308, "{path}");
        assert_eq!(header(&response, "location"), "../console", "{path}");
    }
    // Relative to `/console`, `console/x` is `/console/x`: every file the page names is served.
    let page = assets::ASSETS[0].body;
    for name in [
        "console/console.js",
        "console/console.css",
        "console/favicon.svg",
    ] {
        assert!(page.contains(&format!("\"{name}\"")), "{name}");
        let response = console.handle(get(&format!("/{name}"), None)).await;
        assert_eq!(response.status(), 200, "{name}");
    }
}

#[tokio::test]
async fn unknown_assets_are_404_and_traversal_is_refused() {
    let (console, _, _) = console();
    for path in ["/console/nope.js", "/console/a/b"] {
        let response = console.handle(get(path, Some(TOKEN))).await;
        assert_eq!(response.status(), 404, "{path}");
    }
    for path in [
        "/console/..",
        "/console/../events",
        "/console/%2e%2e",
        "/console/..%2fevents",
        "/console/a%2fb",
        "/console/%5c..%5cCargo.toml",
    ] {
        let response = console.handle(get(path, Some(TOKEN))).await;
        assert_eq!(response.status(), 400, "{path}");
        assert!(response.headers().get("content-security-policy").is_none());
    }
}

#[tokio::test]
async fn data_routes_need_the_api_token_and_are_closed_without_one() {
    let (console, store, _) = console();
    put(&store, Source::Tsuru, "e1", "app.update", "app/web", now()).await;
    for path in ["/events", "/events/stats", "/events/tsuru/e1"] {
        let missing = console.handle(get(path, None)).await;
        assert_eq!(missing.status(), 401, "{path}");
        assert_eq!(header(&missing, "www-authenticate"), "Bearer");
        let wrong = console.handle(get(path, Some("not-the-token"))).await;
        assert_eq!(wrong.status(), 401, "{path}");
        assert!(!format!("{:?}", wrong.body()).contains("e1"));
        let right = console.handle(get(path, Some(TOKEN))).await;
        assert_eq!(right.status(), 200, "{path}");
        assert_eq!(header(&right, "cache-control"), "no-store");
    }
    let (closed, store, _) = console_with(None);
    put(&store, Source::Tsuru, "e1", "app.update", "app/web", now()).await;
    let response = closed.handle(get("/events", Some(TOKEN))).await;
    assert_eq!(response.status(), 503);
    assert!(json_of(&response)["message"]
        .as_str()
        .unwrap()
        .contains("API_TOKEN"));
}

#[tokio::test]
async fn only_get_and_head() {
    let (console, _, _) = console();
    let request = http::Request::builder()
        .method("POST")
        .uri("/events")
        .header("Authorization", format!("Bearer {TOKEN}"))
        .body(Body::Empty)
        .unwrap();
    let response = console.handle(request).await;
    assert_eq!(response.status(), 405);
    assert_eq!(header(&response, "allow"), "GET, HEAD");
}

#[tokio::test]
async fn events_are_newest_first_across_sources_and_paginated_without_gaps() {
    let (console, store, _) = console();
    // Interleaved sources, and two events at the same millisecond.
    let base = now() - Duration::hours(10);
    for i in 0..7 {
        let source = if i % 2 == 0 {
            Source::Stack
        } else {
            Source::Mns
        };
        put(
            &store,
            source,
            &format!("e{i}"),
            "T",
            "s",
            base + Duration::minutes(i),
        )
        .await;
    }
    put(
        &store,
        Source::Tsuru,
        "same-a",
        "T",
        "s",
        base + Duration::minutes(3),
    )
    .await;
    let mut seen = Vec::new();
    let mut uri = "/events?limit=3".to_owned();
    loop {
        let response = console.handle(get(&uri, Some(TOKEN))).await;
        assert_eq!(response.status(), 200);
        let body = json_of(&response);
        let page = ids(&body);
        assert!(page.len() <= 3);
        seen.extend(page);
        match body["next"].as_str() {
            Some(next) => uri = format!("/events?limit=3&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["e6", "e5", "e4", "same-a", "e3", "e2", "e1", "e0"],
        "every event once, newest first (ties by id)"
    );
}

#[tokio::test]
async fn events_filter_by_source_type_subject_and_time() {
    let (console, store, _) = console();
    let t = |h: i64| now() - Duration::hours(h);
    put(&store, Source::Stack, "a", "CREATE_COMPLETE", "web", t(5)).await;
    put(&store, Source::Stack, "b", "UPDATE_FAILED", "web", t(4)).await;
    put(&store, Source::Stack, "c", "UPDATE_FAILED", "db", t(3)).await;
    put(&store, Source::Mns, "d", "UPDATE_FAILED", "web", t(2)).await;
    let cases = [
        ("/events?source=stack", vec!["c", "b", "a"]),
        ("/events?type=UPDATE_FAILED", vec!["d", "c", "b"]),
        ("/events?source=stack&subject=web", vec!["b", "a"]),
        (
            "/events?source=stack&subject=web&type=UPDATE_FAILED",
            vec!["b"],
        ),
        ("/events?since=2024-06-10T08:00:00Z", vec!["d", "c", "b"]),
        (
            "/events?since=2024-06-10T08:00:00Z&until=2024-06-10T09:30:00Z",
            vec!["c", "b"],
        ),
        (
            "/events?source=stack&subject=web&until=2024-06-10T07:30:00Z",
            vec!["a"],
        ),
    ];
    for (uri, expected) in cases {
        let response = console.handle(get(uri, Some(TOKEN))).await;
        assert_eq!(response.status(), 200, "{uri}");
        assert_eq!(ids(&json_of(&response)), expected, "{uri}");
    }
}

#[tokio::test]
async fn a_type_filter_that_skips_more_than_a_read_resumes_where_it_stopped() {
    let (console, store, _) = console();
    // Far more non-matching events than one request reads, and matches at both ends.
    let base = now() - Duration::days(2);
    put(&store, Source::S3, "old-match", "wanted", "b/k", base).await;
    let skipped = (MAX_STORE_PAGES_FOR_TESTS + 1) * 100;
    for i in 0..skipped {
        let at = base + Duration::seconds(1 + i as i64);
        put(&store, Source::S3, &format!("x{i:05}"), "other", "b/k", at).await;
    }
    put(&store, Source::S3, "new-match", "wanted", "b/k", now()).await;
    let mut seen = Vec::new();
    let mut uri = "/events?type=wanted&limit=5".to_owned();
    for _ in 0..10 {
        let body = json_of(&console.handle(get(&uri, Some(TOKEN))).await);
        seen.extend(ids(&body));
        match body["next"].as_str() {
            Some(next) => uri = format!("/events?type=wanted&limit=5&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(seen, ["new-match", "old-match"]);
}

const MAX_STORE_PAGES_FOR_TESTS: usize = events::MAX_STORE_PAGES;

#[tokio::test]
async fn bad_listing_parameters_are_400() {
    let (console, _, _) = console();
    for uri in [
        "/events?source=nope",
        "/events?subject=web",
        "/events?limit=0",
        "/events?limit=101",
        "/events?since=yesterday",
        "/events?since=2024-06-10T00:00:00Z&until=2024-06-01T00:00:00Z",
        "/events?since=2000-01-01T00:00:00Z",
        "/events?cursor=bm90LWEtY3Vyc29y",
    ] {
        let response = console.handle(get(uri, Some(TOKEN))).await;
        assert_eq!(response.status(), 400, "{uri}");
    }
}

#[tokio::test]
async fn an_event_with_its_payload_and_the_deliveries_it_caused() {
    let (console, store, hooks) = console();
    let event = Event::new(
        Source::Tsuru,
        "ev/1",
        "app.update",
        "app/web",
        r#"{"kind":{"name":"app.update"},"nested":{"a":[1,2]}}"#,
        now(),
    );
    store.put_event(&event).await.unwrap();
    let policy = ValidationPolicy {
        allowed_proxy_urls: Vec::new(),
        allow_private_networks: true,
    };
    for name in ["alerts", "quiet"] {
        let sub: Subscription =
            serde_json::from_value(serde_json::json!({"name": name, "url": "http://127.0.0.1:9/"}))
                .unwrap();
        let sub = sub.prepare_new(&policy, now()).unwrap();
        hooks.create_subscription(&sub).await.unwrap();
    }
    hooks
        .create_delivery(&Delivery::new("alerts", &event, now()))
        .await
        .unwrap();
    let response = console
        .handle(get("/events/tsuru/ev%2F1", Some(TOKEN)))
        .await;
    assert_eq!(response.status(), 200);
    let body = json_of(&response);
    assert_eq!(body["event"]["event_id"], "ev/1");
    assert_eq!(body["event"]["payload"]["nested"]["a"][1], 2);
    let deliveries = body["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "one per subscription that has one");
    assert_eq!(deliveries[0]["subscription"], "alerts");
    assert_eq!(deliveries[0]["state"], "pending");

    for uri in ["/events/tsuru/nope", "/events/nosuch/ev"] {
        let response = console.handle(get(uri, Some(TOKEN))).await;
        assert_eq!(response.status(), 404, "{uri}");
    }
}

#[tokio::test]
async fn without_webhooks_an_event_says_deliveries_are_unavailable() {
    let store = Arc::new(MemoryStore::new());
    put(&store, Source::Mns, "m", "topic", "t", now()).await;
    let console: WebConsole<_, Arc<MemoryWebhookStore>, _> = WebConsole::new(
        store,
        Err("WEBHOOKS_TABLE is not set".into()),
        Some(Secret::new(TOKEN)),
        FixedClock::at(now()),
    );
    let body = json_of(&console.handle(get("/events/mns/m", Some(TOKEN))).await);
    assert_eq!(body["deliveries"], Value::Null);
    assert_eq!(body["deliveries_unavailable"], "WEBHOOKS_TABLE is not set");
}

#[tokio::test]
async fn stats_count_per_source_per_hour_and_per_day() {
    let (console, store, _) = console();
    // now() is 12:30: the current hour is the last bucket, 23 hours before it the first.
    put(&store, Source::Stack, "h0", "T", "s", now()).await;
    put(
        &store,
        Source::Stack,
        "h0b",
        "T",
        "s",
        now() - Duration::minutes(20),
    )
    .await;
    put(
        &store,
        Source::Stack,
        "h1",
        "T",
        "s",
        now() - Duration::hours(1),
    )
    .await;
    put(
        &store,
        Source::Stack,
        "old",
        "T",
        "s",
        now() - Duration::days(3),
    )
    .await;
    put(
        &store,
        Source::Stack,
        "ancient",
        "T",
        "s",
        now() - Duration::days(30),
    )
    .await;
    put(
        &store,
        Source::S3,
        "s3",
        "T",
        "b/k",
        now() - Duration::hours(30),
    )
    .await;
    let response = console.handle(get("/events/stats", Some(TOKEN))).await;
    assert_eq!(response.status(), 200);
    let body = json_of(&response);
    assert_eq!(body["hours"].as_array().unwrap().len(), 24);
    assert_eq!(body["hours"][23], "2024-06-10T12:00:00.000Z");
    assert_eq!(body["days"][6], "2024-06-10T00:00:00.000Z");
    let of = |name: &str| {
        body["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["source"] == name)
            .unwrap()
            .clone()
    };
    let stack = of("stack");
    assert_eq!(stack["hourly"][23], 2);
    assert_eq!(stack["hourly"][22], 1);
    assert_eq!(stack["last_24h"], 3);
    assert_eq!(stack["daily"][6], 3);
    assert_eq!(stack["daily"][3], 1);
    assert_eq!(stack["last_7d"], 4);
    let s3 = of("s3");
    assert_eq!(s3["last_24h"], 0);
    assert_eq!(s3["daily"][5], 1);
    assert_eq!(of("dingtalk")["last_7d"], 0);
}

#[test]
fn routes() {
    assert_eq!(route("/console"), Route::Asset("index.html".into()));
    assert_eq!(route("/events"), Route::Events);
    assert_eq!(route("/prod/events/stats"), Route::Stats);
    assert_eq!(
        route("/events/stack/id%231"),
        Route::Event("stack".into(), "id#1".into())
    );
    assert_eq!(route("/events/a/b/c"), Route::Unknown);
    assert_eq!(route("/elsewhere"), Route::Unknown);
}
