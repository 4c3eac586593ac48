//! The API through its real handler, on the memory stores, with a loopback receiver that checks
//! every signature.

use super::*;
use chrono::{DateTime, TimeZone, Utc};
use hub_core::clock::FixedClock;
use hub_core::event::{Event, Source};
use hub_core::store::memory::MemoryStore;
use hub_core::store::EventWriter;
use serde_json::Value;
use webhooks::engine::{attempt, fan_out, AttemptOutcome};
use webhooks::store::memory::MemoryWebhookStore;
use webhooks::testing::{Receiver, Script};

const TOKEN: &str = "api-token-for-tests";
const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 6, 1, 8, 0, 0).unwrap()
}

type Api = WebhooksApi<Arc<MemoryWebhookStore>, Arc<MemoryWebhookStore>, Arc<FixedClock>>;

struct Fixture {
    api: Api,
    hooks: Arc<MemoryWebhookStore>,
    clock: Arc<FixedClock>,
    sender: Arc<Sender>,
}

fn fixture_with(token: Option<&str>) -> Fixture {
    let hooks = Arc::new(MemoryWebhookStore::new());
    let clock = Arc::new(FixedClock::at(t0()));
    let sender = Arc::new(Sender::new(SenderConfig::new(ValidationPolicy {
        allowed_proxy_urls: Vec::new(),
        allow_private_networks: true,
    })));
    let api = WebhooksApi::new(
        hooks.clone(),
        hooks.clone(),
        sender.clone(),
        token.map(Secret::new),
        clock.clone(),
        64 * 1024,
    );
    Fixture {
        api,
        hooks,
        clock,
        sender,
    }
}

fn fixture() -> Fixture {
    fixture_with(Some(TOKEN))
}

fn request(method: &str, path: &str, body: Option<Value>, token: Option<&str>) -> Request {
    let mut builder = http::Request::builder().method(method).uri(path);
    if let Some(token) = token {
        builder = builder.header("Authorization", format!("Bearer {token}"));
    }
    let body = match body {
        Some(v) => Body::Text(v.to_string()),
        None => Body::Empty,
    };
    builder.body(body).unwrap()
}

impl Fixture {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let response = self
            .api
            .handle(request(method, path, body, Some(TOKEN)))
            .await;
        let status = response.status().as_u16();
        let value = match response.body() {
            Body::Text(text) => serde_json::from_str(text).unwrap_or(Value::String(text.clone())),
            _ => Value::Null,
        };
        (status, value)
    }

    async fn create(&self, name: &str, url: &str, extra: Value) -> (u16, Value) {
        let mut body = json!({"name": name, "url": url});
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            body[k] = v;
        }
        self.call("POST", "/webhooks", Some(body)).await
    }
}

#[tokio::test]
async fn every_route_needs_the_bearer_token_and_is_closed_without_one_configured() {
    let f = fixture();
    for (method, path) in [
        ("GET", "/webhooks"),
        ("POST", "/webhooks"),
        ("GET", "/webhooks/x"),
        ("PUT", "/events/webhooks/x"),
        ("DELETE", "/1.6/events/webhooks/x"),
        ("GET", "/webhooks/x/deliveries"),
        ("POST", "/webhooks/x/replay"),
        ("POST", "/webhooks/x/test"),
        ("GET", "/webhooks/x/unknown"),
    ] {
        for token in [None, Some("wrong")] {
            let response = f.api.handle(request(method, path, None, token)).await;
            assert_eq!(response.status(), 401, "{method} {path} {token:?}");
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
        }
        let closed = fixture_with(None);
        let response = closed
            .api
            .handle(request(method, path, None, Some(TOKEN)))
            .await;
        assert_eq!(response.status(), 503, "{method} {path}");
        let Body::Text(text) = response.body() else {
            panic!()
        };
        assert!(text.contains("API_TOKEN"), "{text}");
    }
}

#[tokio::test]
async fn create_list_get_put_delete_with_tsuru_status_codes() {
    let f = fixture();
    assert_eq!(f.call("GET", "/webhooks", None).await.0, 204);

    let (status, created) = f
        .create(
            "slack",
            "https://hooks.example.com/x",
            json!({"event_filter": {"kind_names": ["stack"]}, "body": "{{.Kind.Name}}"}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(
        secret.starts_with("whsec_"),
        "the secret is shown at creation"
    );
    assert_eq!(created["method"], "POST");

    let (status, again) = f
        .create("slack", "https://other.example.com/", json!({}))
        .await;
    assert_eq!(status, 409, "{again}");
    assert_eq!(again["error"], "conflict");

    for path in ["/webhooks", "/events/webhooks", "/1.6/events/webhooks"] {
        let (status, list) = f.call("GET", path, None).await;
        assert_eq!(status, 200);
        assert_eq!(list.as_array().unwrap().len(), 1);
        assert!(
            list[0].get("secret").is_none(),
            "secrets are redacted: {list}"
        );
        assert!(!list.to_string().contains(&secret));
    }
    let (status, one) = f.call("GET", "/events/webhooks/slack", None).await;
    assert_eq!(status, 200);
    assert_eq!(one["url"], "https://hooks.example.com/x");
    assert!(one.get("secret").is_none());
    assert_eq!(f.call("GET", "/webhooks/nobody", None).await.0, 404);

    // PUT replaces the whole subscription; the name is the path's, the secret is kept.
    f.clock.advance(chrono::Duration::minutes(5));
    let mut edited = one.clone();
    edited["name"] = json!("ignored");
    edited["description"] = json!("edited");
    edited["body"] = json!("");
    let (status, replaced) = f.call("PUT", "/webhooks/slack", Some(edited)).await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["name"], "slack");
    assert_eq!(replaced["description"], "edited");
    assert!(replaced.get("secret").is_none());
    let stored = f.hooks.get_subscription("slack").await.unwrap().unwrap();
    assert_eq!(stored.secret.as_deref(), Some(secret.as_str()));
    assert_eq!(stored.body, "");
    assert_eq!(stored.updated_at, t0() + chrono::Duration::minutes(5));
    let (status, _) = f
        .call(
            "PUT",
            "/webhooks/nobody",
            Some(json!({"url": "https://x.example.com/"})),
        )
        .await;
    assert_eq!(status, 404);
    let (status, bad) = f
        .call("PUT", "/webhooks/slack", Some(json!({"url": "ftp://x"})))
        .await;
    assert_eq!(status, 400, "{bad}");

    assert_eq!(f.call("DELETE", "/webhooks/slack", None).await.0, 200);
    assert_eq!(f.call("DELETE", "/webhooks/slack", None).await.0, 404);
    assert_eq!(f.call("GET", "/webhooks", None).await.0, 204);
}

#[tokio::test]
async fn invalid_subscriptions_are_400_and_nothing_is_stored() {
    let f = fixture();
    for (name, url, extra) in [
        ("Bad_Name", "https://x.example.com/", json!({})),
        ("ok", "not a url", json!({})),
        (
            "ok",
            "https://x.example.com/",
            json!({"body": "ahoy {{ --"}),
        ),
        (
            "ok",
            "https://x.example.com/",
            json!({"body": "{{if .Error}}x"}),
        ),
        ("ok", "https://x.example.com/", json!({"kind_names": ["x"]})),
        (
            "ok",
            "https://x.example.com/",
            json!({"event_filter": {"error_only": true, "success_only": true}}),
        ),
        ("ok", "https://x.example.com/", json!({"secret": "hunter2"})),
    ] {
        let (status, body) = f.create(name, url, extra.clone()).await;
        assert_eq!(status, 400, "{name} {url} {extra}: {body}");
        assert_eq!(body["error"], "bad_request");
    }
    let response = f
        .api
        .handle({
            let mut r = request("POST", "/webhooks", None, Some(TOKEN));
            *r.body_mut() = Body::Text("{not json".into());
            r
        })
        .await;
    assert_eq!(response.status(), 400);
    assert!(f.hooks.list_subscriptions().await.unwrap().is_empty());
}

#[tokio::test]
async fn wrong_methods_and_unknown_paths() {
    let f = fixture();
    let response = f
        .api
        .handle(request("DELETE", "/webhooks", None, Some(TOKEN)))
        .await;
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, POST");
    assert_eq!(f.call("POST", "/webhooks/x", None).await.0, 405);
    assert_eq!(f.call("GET", "/webhooks/x/replay", None).await.0, 405);
    assert_eq!(f.call("GET", "/webhooks/x/y/z", None).await.0, 404);
    assert_eq!(f.call("GET", "/webhooks/", None).await.0, 404);
    assert_eq!(f.call("GET", "/webhooksx", None).await.0, 404);
}

#[test]
fn endpoints_are_parsed_under_every_prefix() {
    for prefix in PREFIXES {
        assert_eq!(Endpoint::of(prefix), Some(Endpoint::Collection));
        assert_eq!(
            Endpoint::of(&format!("{prefix}/a")),
            Some(Endpoint::One("a"))
        );
        assert_eq!(
            Endpoint::of(&format!("{prefix}/a/deliveries")),
            Some(Endpoint::Deliveries("a"))
        );
        assert_eq!(
            Endpoint::of(&format!("{prefix}/a/replay")),
            Some(Endpoint::Replay("a"))
        );
        assert_eq!(
            Endpoint::of(&format!("{prefix}/a/test")),
            Some(Endpoint::Test("a"))
        );
    }
    assert_eq!(Endpoint::of("/stacks"), None);
    assert_eq!(Endpoint::of("/webhooks/a/"), None);
}

/// Stores an event and runs its deliveries to the end of what the receiver allows now.
async fn deliver_event(f: &Fixture, events: &MemoryStore, id: &str) -> Vec<AttemptOutcome> {
    let event = Event::new(Source::Stack, id, "UPDATE_COMPLETE", "web", "{}", t0());
    events.put_event(&event).await.unwrap();
    let fanned = fan_out(f.hooks.as_ref(), &event, f.clock.now())
        .await
        .unwrap();
    let mut outcomes = Vec::new();
    for fo in fanned {
        let mut rng = rand_rng();
        outcomes.push(
            attempt(
                f.hooks.as_ref(),
                events,
                &f.sender,
                &fo.delivery.id,
                f.clock.now(),
                &mut rng,
            )
            .await
            .unwrap(),
        );
    }
    outcomes
}

fn rand_rng() -> rand::rngs::StdRng {
    rand::SeedableRng::seed_from_u64(1)
}

#[tokio::test]
async fn deliveries_list_newest_first_with_attempts_and_replay_resends_the_same_id() {
    let receiver = Receiver::start(SECRET, Script::fail_then_succeed(1, 500)).await;
    let f = fixture();
    let events = MemoryStore::new();
    let (status, _) = f
        .create("hook", &receiver.url(), json!({"secret": SECRET}))
        .await;
    assert_eq!(status, 200);
    let first = deliver_event(&f, &events, "e-1").await;
    assert!(
        matches!(first[0], AttemptOutcome::Retrying { .. }),
        "{first:?}"
    );
    f.clock.advance(chrono::Duration::seconds(1));
    let second = deliver_event(&f, &events, "e-2").await;
    assert!(
        matches!(second[0], AttemptOutcome::Delivered { .. }),
        "{second:?}"
    );

    let (status, page) = f
        .call("GET", "/webhooks/hook/deliveries?limit=1", None)
        .await;
    assert_eq!(status, 200, "{page}");
    let deliveries = page["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0]["event_id"], "e-2", "newest first: {page}");
    let next = page["next"].as_str().unwrap().to_owned();
    let (_, rest) = f
        .call(
            "GET",
            &format!("/webhooks/hook/deliveries?limit=1&cursor={next}"),
            None,
        )
        .await;
    assert_eq!(rest["deliveries"][0]["event_id"], "e-1", "{rest}");
    assert_eq!(rest["next"], Value::Null);
    assert_eq!(deliveries[0]["state"], "delivered");
    let log = rest["deliveries"][0]["attempts_log"].as_array().unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["status"], 500);
    assert_eq!(log[0]["response_excerpt"], "answer 500");
    assert_eq!(rest["deliveries"][0]["state"], "pending");
    assert_eq!(
        f.call("GET", "/webhooks/nobody/deliveries", None).await.0,
        404
    );
    assert_eq!(
        f.call("GET", "/webhooks/hook/deliveries?cursor=garbage", None)
            .await
            .0,
        400
    );

    // Replay the delivered one: pending, due now, and re-sent with the same webhook-id.
    let delivered_id = deliveries[0]["id"].as_str().unwrap().to_owned();
    let (status, replayed) = f
        .call(
            "POST",
            "/webhooks/hook/replay",
            Some(json!({"delivery": delivered_id})),
        )
        .await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(replayed["replayed"], 1);
    assert_eq!(f.hooks.queued(), vec![delivered_id.clone()]);
    let outcome = attempt(
        f.hooks.as_ref(),
        &events,
        &f.sender,
        &delivered_id,
        f.clock.now(),
        &mut rand_rng(),
    )
    .await
    .unwrap();
    assert!(
        matches!(outcome, AttemptOutcome::Delivered { .. }),
        "{outcome:?}"
    );
    let received = receiver.received();
    let ids: Vec<&str> = received.iter().filter_map(|r| r.webhook_id()).collect();
    assert_eq!(ids.iter().filter(|id| **id == delivered_id).count(), 2);
    assert!(received.iter().all(|r| r.signature_valid));

    for (body, status) in [
        (json!({"delivery": "msg_nope"}), 404),
        (json!({}), 400),
        (
            json!({"delivery": "a", "since": "2024-01-01T00:00:00Z"}),
            400,
        ),
        (json!({"since": "yesterday"}), 400),
        (json!({"since": "2024-01-01T00:00:00Z"}), 200),
    ] {
        let (got, answer) = f
            .call("POST", "/webhooks/hook/replay", Some(body.clone()))
            .await;
        assert_eq!(got, status, "{body}: {answer}");
    }
    assert_eq!(
        f.call(
            "POST",
            "/webhooks/nobody/replay",
            Some(json!({"since": "2024-01-01T00:00:00Z"}))
        )
        .await
        .0,
        404
    );
}

#[tokio::test]
async fn test_sends_a_signed_sample_now_and_returns_the_attempt() {
    let receiver = Receiver::start(SECRET, Script::always(202)).await;
    let f = fixture();
    f.create("hook", &receiver.url(), json!({"secret": SECRET}))
        .await;
    let (status, answer) = f.call("POST", "/webhooks/hook/test", None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["verdict"], "delivered");
    assert_eq!(answer["attempt"]["status"], 202);
    let received = receiver.wait_for(1).await;
    assert!(received[0].signature_valid);
    assert_eq!(received[0].webhook_id(), answer["webhook_id"].as_str());
    let body: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(body["Kind"]["Name"], "webhook.test");
    assert!(f.hooks.deliveries().is_empty());
    assert_eq!(f.call("POST", "/webhooks/nobody/test", None).await.0, 404);
}
