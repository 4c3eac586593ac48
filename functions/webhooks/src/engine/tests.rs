//! The engine against the memory stores, a loopback receiver that checks every signature, and
//! a clock that is a variable: the whole retry schedule runs without waiting.

use super::*;
use crate::model::{DisabledReason, ValidationPolicy};
use crate::net::{SendError, SenderConfig, StaticResolver};
use crate::schedule::{MAX_ATTEMPTS, RETRY_DELAYS};
use crate::store::memory::MemoryWebhookStore;
use crate::testing::{Receiver, Script};
use chrono::TimeZone;
use hub_core::store::memory::MemoryStore;
use hub_core::store::EventWriter;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::json;
use std::net::IpAddr;
use std::sync::Arc;

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 6, 1, 8, 0, 0).unwrap()
}

fn lan() -> ValidationPolicy {
    ValidationPolicy {
        allowed_proxy_urls: Vec::new(),
        allow_private_networks: true,
    }
}

fn strict() -> ValidationPolicy {
    ValidationPolicy::default()
}

fn sender(policy: ValidationPolicy) -> Sender {
    Sender::new(SenderConfig::new(policy))
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

struct World {
    hooks: MemoryWebhookStore,
    events: MemoryStore,
    sender: Sender,
}

impl World {
    fn new(policy: ValidationPolicy) -> World {
        World {
            hooks: MemoryWebhookStore::new(),
            events: MemoryStore::new(),
            sender: sender(policy),
        }
    }

    async fn subscribe(&self, name: &str, url: &str, extra: serde_json::Value) -> Subscription {
        let mut body = json!({"name": name, "url": url, "secret": SECRET});
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            body[k] = v;
        }
        let sub: Subscription = serde_json::from_value(body).unwrap();
        let sub = sub.prepare_new(&lan(), t0()).unwrap();
        self.hooks.create_subscription(&sub).await.unwrap();
        sub
    }

    async fn store_event(&self, id: &str, status: &str) -> Event {
        let event = Event::new(
            Source::Stack,
            id,
            status,
            "web-stack",
            json!({"StackName": "web-stack", "ResourceStatus": status}).to_string(),
            t0(),
        );
        self.events.put_event(&event).await.unwrap();
        event
    }

    /// Stores an event and fans it out; returns the one delivery it made.
    async fn one_delivery(&self, id: &str) -> Delivery {
        let event = self.store_event(id, "UPDATE_COMPLETE").await;
        let fanned = fan_out(&self.hooks, &event, t0()).await.unwrap();
        assert_eq!(fanned.len(), 1);
        fanned[0].delivery.clone()
    }

    async fn attempt_at(&self, id: &str, now: DateTime<Utc>, rng: &mut StdRng) -> AttemptOutcome {
        attempt(&self.hooks, &self.events, &self.sender, id, now, rng)
            .await
            .unwrap()
    }

    /// Attempts at each due time until the delivery is no longer pending.
    async fn run_to_end(&self, id: &str, mut now: DateTime<Utc>) -> Vec<AttemptOutcome> {
        let mut rng = rng();
        let mut outcomes = Vec::new();
        loop {
            let outcome = self.attempt_at(id, now, &mut rng).await;
            let done = !matches!(outcome, AttemptOutcome::Retrying { .. });
            if let AttemptOutcome::Retrying { delivery, .. } = &outcome {
                now = delivery.next_attempt_at;
            }
            outcomes.push(outcome);
            if done || outcomes.len() > 20 {
                return outcomes;
            }
        }
    }
}

fn assert_all_signed(received: &[crate::testing::Received], id: &str) {
    for r in received {
        assert!(r.signature_valid, "bad signature: {:?}", r.headers);
        assert_eq!(r.webhook_id(), Some(id));
    }
}

#[tokio::test]
async fn retries_then_succeeds_with_every_attempt_signed_and_logged() {
    let receiver = Receiver::start(SECRET, Script::fail_then_succeed(3, 500)).await;
    let world = World::new(lan());
    world.subscribe("hook", &receiver.url(), json!({})).await;
    let delivery = world.one_delivery("e-1").await;

    let mut rng = rng();
    let first = world.attempt_at(&delivery.id, t0(), &mut rng).await;
    let AttemptOutcome::Retrying {
        delivery: after,
        attempt,
    } = first
    else {
        panic!("{first:?}")
    };
    assert_eq!(attempt.status, Some(500));
    let expected = t0() + TimeDelta::from_std(RETRY_DELAYS[0]).unwrap();
    let spread = TimeDelta::from_std(RETRY_DELAYS[0].mul_f64(0.2)).unwrap();
    assert!((after.next_attempt_at - expected).abs() <= spread);
    let failing = world.hooks.get_subscription("hook").await.unwrap().unwrap();
    assert_eq!(failing.failing_since, Some(t0()));

    // Not due before its time; nothing is sent.
    let early = after.next_attempt_at - TimeDelta::seconds(1);
    assert_eq!(
        world.attempt_at(&delivery.id, early, &mut rng).await,
        AttemptOutcome::NotDue {
            next_attempt_at: after.next_attempt_at
        }
    );
    assert_eq!(receiver.received().len(), 1);

    let rest = world.run_to_end(&delivery.id, after.next_attempt_at).await;
    assert_eq!(rest.len(), 3);
    assert!(matches!(
        rest.last(),
        Some(AttemptOutcome::Delivered { .. })
    ));

    let received = receiver.received();
    assert_eq!(received.len(), 4);
    assert_all_signed(&received, &delivery.id);
    let timestamps: Vec<&str> = received
        .iter()
        .map(|r| r.header("webhook-timestamp").unwrap())
        .collect();
    assert!(
        timestamps.windows(2).all(|w| w[0] < w[1]),
        "a fresh timestamp per attempt: {timestamps:?}"
    );
    let body: serde_json::Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(body["Kind"]["Name"], "stack.UPDATE_COMPLETE");
    assert_eq!(received[0].header("content-type"), Some("application/json"));

    let stored = world
        .hooks
        .get_delivery(&delivery.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.state, DeliveryState::Delivered);
    assert_eq!(stored.attempts, 4);
    assert_eq!(stored.last_status, Some(200));
    let log = world.hooks.attempts(&delivery.id);
    assert_eq!(
        log.iter().map(|a| a.attempt.status).collect::<Vec<_>>(),
        [Some(500), Some(500), Some(500), Some(200)]
    );
    assert_eq!(log[0].attempt.response_excerpt, "answer 500");
    assert_eq!(
        log.iter().map(|a| a.number).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    let healthy = world.hooks.get_subscription("hook").await.unwrap().unwrap();
    assert_eq!(healthy.failing_since, None, "a success ends the streak");

    // Delivered is final.
    assert_eq!(
        world
            .attempt_at(&delivery.id, t0() + TimeDelta::days(3), &mut rng)
            .await,
        AttemptOutcome::NotPending(DeliveryState::Delivered)
    );
}

#[tokio::test]
async fn an_exhausted_schedule_dead_letters_and_replay_resends_the_same_id() {
    let receiver = Receiver::start(SECRET, Script::always(503)).await;
    let world = World::new(lan());
    world.subscribe("hook", &receiver.url(), json!({})).await;
    let delivery = world.one_delivery("e-1").await;

    let outcomes = world.run_to_end(&delivery.id, t0()).await;
    assert_eq!(outcomes.len(), MAX_ATTEMPTS as usize);
    let Some(AttemptOutcome::Failed {
        delivery: failed,
        reason,
        ..
    }) = outcomes.last()
    else {
        panic!("{:?}", outcomes.last())
    };
    assert_eq!(*reason, FailureReason::Exhausted);
    assert!(failed.dead_lettered);
    assert_eq!(failed.state, DeliveryState::Failed);
    let elapsed = failed.updated_at - t0();
    let minimum: TimeDelta = RETRY_DELAYS
        .iter()
        .map(|d| TimeDelta::from_std(d.mul_f64(0.8)).unwrap())
        .sum();
    assert!(
        elapsed >= minimum,
        "the whole schedule was waited: {elapsed}"
    );
    assert_eq!(receiver.received().len(), MAX_ATTEMPTS as usize);
    assert_all_signed(&receiver.received(), &delivery.id);
    let sub = world.hooks.get_subscription("hook").await.unwrap().unwrap();
    assert!(!sub.disabled, "33 hours of failure is not five days");

    // Replay: pending again, due now, a fresh schedule, the same webhook-id.
    let later = failed.updated_at + TimeDelta::hours(1);
    let replayed = replay(
        &world.hooks,
        &world.hooks,
        "hook",
        &ReplayTarget::Delivery(delivery.id.clone()),
        later,
    )
    .await
    .unwrap();
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].state, DeliveryState::Pending);
    assert_eq!(replayed[0].next_attempt_at, later);
    assert!(!replayed[0].dead_lettered);
    assert_eq!(world.hooks.queued(), vec![delivery.id.clone()]);
    let again = world.attempt_at(&delivery.id, later, &mut rng()).await;
    let AttemptOutcome::Retrying { delivery: d, .. } = again else {
        panic!("{again:?}")
    };
    assert_eq!(d.attempts, MAX_ATTEMPTS + 1);
    assert_eq!(d.round_attempts, 1, "the schedule starts over");
    let received = receiver.received();
    assert_eq!(received.len(), MAX_ATTEMPTS as usize + 1);
    assert_all_signed(&received, &delivery.id);
}

#[tokio::test]
async fn replay_since_requeues_only_failed_deliveries_of_that_subscription() {
    let receiver = Receiver::start(SECRET, Script::always(200)).await;
    let world = World::new(lan());
    world.subscribe("hook", &receiver.url(), json!({})).await;
    let ids: Vec<String> = [
        world.one_delivery("e-1").await,
        world.one_delivery("e-2").await,
    ]
    .into_iter()
    .map(|d| d.id)
    .collect();
    for id in &ids {
        let d = world.hooks.get_delivery(id).await.unwrap().unwrap();
        let failed = Delivery {
            state: DeliveryState::Failed,
            ..d.clone()
        };
        world
            .hooks
            .update_delivery(&failed, d.version)
            .await
            .unwrap();
    }
    let replayed = replay(
        &world.hooks,
        &(),
        "hook",
        &ReplayTarget::FailedSince(t0()),
        t0() + TimeDelta::hours(2),
    )
    .await
    .unwrap();
    let mut got: Vec<String> = replayed.into_iter().map(|d| d.id).collect();
    got.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(got, want);
    for id in &ids {
        let outcome = world
            .attempt_at(id, t0() + TimeDelta::hours(2), &mut rng())
            .await;
        assert!(
            matches!(outcome, AttemptOutcome::Delivered { .. }),
            "{outcome:?}"
        );
    }
    assert_eq!(
        replay(
            &world.hooks,
            &(),
            "other",
            &ReplayTarget::Delivery(ids[0].clone()),
            t0()
        )
        .await
        .unwrap_err()
        .to_string(),
        ReplayError::UnknownDelivery.to_string(),
        "a delivery of another subscription is not found"
    );
}

#[tokio::test]
async fn gone_disables_the_subscription_and_fails_its_next_deliveries_unsent() {
    let receiver = Receiver::start(SECRET, Script::always(410)).await;
    let world = World::new(lan());
    world.subscribe("hook", &receiver.url(), json!({})).await;
    let first = world.one_delivery("e-1").await;
    let second = world.one_delivery("e-2").await;

    let outcome = world.attempt_at(&first.id, t0(), &mut rng()).await;
    assert!(
        matches!(
            outcome,
            AttemptOutcome::Failed {
                reason: FailureReason::Gone,
                ..
            }
        ),
        "{outcome:?}"
    );
    let sub = world.hooks.get_subscription("hook").await.unwrap().unwrap();
    assert!(sub.disabled);
    assert_eq!(sub.disabled_reason, Some(DisabledReason::Gone));

    let outcome = world.attempt_at(&second.id, t0(), &mut rng()).await;
    assert!(
        matches!(
            outcome,
            AttemptOutcome::Failed {
                reason: FailureReason::SubscriptionDisabled,
                attempt: None,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(receiver.received().len(), 1);
    // A disabled subscription gets no new deliveries.
    let event = world.store_event("e-3", "UPDATE_COMPLETE").await;
    assert!(fan_out(&world.hooks, &event, t0())
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn five_days_of_failure_disables() {
    let receiver = Receiver::start(SECRET, Script::always(500)).await;
    let world = World::new(lan());
    let mut sub = world.subscribe("hook", &receiver.url(), json!({})).await;
    sub.failing_since = Some(t0() - TimeDelta::days(5));
    world
        .hooks
        .save_subscription_health("hook", &SubscriptionHealth::of(&sub))
        .await
        .unwrap();
    let delivery = world.one_delivery("e-1").await;
    let outcome = world.attempt_at(&delivery.id, t0(), &mut rng()).await;
    assert!(
        matches!(outcome, AttemptOutcome::Retrying { .. }),
        "{outcome:?}"
    );
    let sub = world.hooks.get_subscription("hook").await.unwrap().unwrap();
    assert!(sub.disabled);
    assert_eq!(sub.disabled_reason, Some(DisabledReason::Failing));
}

#[tokio::test]
async fn retry_after_is_honoured_when_longer() {
    let receiver = Receiver::start(
        SECRET,
        Script {
            answers: [(429, vec![("Retry-After".to_owned(), "3600".to_owned())])].into(),
            then: 200,
        },
    )
    .await;
    let world = World::new(lan());
    world.subscribe("hook", &receiver.url(), json!({})).await;
    let delivery = world.one_delivery("e-1").await;
    let outcome = world.attempt_at(&delivery.id, t0(), &mut rng()).await;
    let AttemptOutcome::Retrying { delivery: d, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(d.next_attempt_at, t0() + TimeDelta::hours(1));
}

#[tokio::test]
async fn a_template_error_fails_without_retry_and_sends_nothing() {
    let receiver = Receiver::start(SECRET, Script::always(200)).await;
    let world = World::new(lan());
    world
        .subscribe(
            "hook",
            &receiver.url(),
            json!({"body": "{{index .ExtraTargets 5}}"}),
        )
        .await;
    let delivery = world.one_delivery("e-1").await;
    let outcome = world.attempt_at(&delivery.id, t0(), &mut rng()).await;
    let AttemptOutcome::Failed {
        delivery: d,
        attempt: Some(attempt),
        reason: FailureReason::Unsendable,
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert!(matches!(attempt.error, Some(SendError::Template(_))));
    assert!(!d.dead_lettered);
    assert_eq!(
        world.hooks.attempts(&delivery.id).len(),
        1,
        "the failure is logged"
    );
    assert!(receiver.received().is_empty());
    let sub = world.hooks.get_subscription("hook").await.unwrap().unwrap();
    assert_eq!(
        sub.failing_since, None,
        "a template error says nothing about the receiver"
    );
}

#[tokio::test]
async fn ssrf_refusals_when_private_networks_are_not_allowed() {
    let receiver = Receiver::start(SECRET, Script::always(200)).await;
    let metadata: IpAddr = "169.254.169.254".parse().unwrap();
    let resolver = StaticResolver::default().with("metadata.test", &[metadata]);
    let world = World {
        hooks: MemoryWebhookStore::new(),
        events: MemoryStore::new(),
        sender: Sender::with_resolver(SenderConfig::new(strict()), Arc::new(resolver)),
    };
    // Written while private networks were allowed (or by a LAN install), sent by a server that
    // does not allow them: the sender refuses on the address it would connect to.
    world.subscribe("literal", &receiver.url(), json!({})).await;
    world
        .subscribe(
            "by-name",
            &format!("http://metadata.test:{}/latest", receiver.address.port()),
            json!({}),
        )
        .await;
    let event = world.store_event("e-1", "UPDATE_COMPLETE").await;
    let fanned = fan_out(&world.hooks, &event, t0()).await.unwrap();
    assert_eq!(fanned.len(), 2);
    for f in fanned {
        let outcome = world.attempt_at(&f.delivery.id, t0(), &mut rng()).await;
        let AttemptOutcome::Retrying { attempt, .. } = &outcome else {
            panic!("{outcome:?}")
        };
        assert!(
            matches!(attempt.error, Some(SendError::Forbidden(_))),
            "{}: {:?}",
            f.delivery.subscription,
            attempt.error
        );
        assert_eq!(attempt.status, None);
    }
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn a_stream_replay_creates_no_second_delivery() {
    let world = World::new(lan());
    world.subscribe("a", "http://127.0.0.1:9/", json!({})).await;
    world
        .subscribe(
            "b",
            "http://127.0.0.1:9/",
            json!({"event_filter": {"sources": ["s3"]}}),
        )
        .await;
    world
        .subscribe(
            "c",
            "http://127.0.0.1:9/",
            json!({"event_filter": {"kind_names": ["stack"]}}),
        )
        .await;
    let event = world.store_event("e-1", "UPDATE_COMPLETE").await;
    let first = fan_out(&world.hooks, &event, t0()).await.unwrap();
    let names: Vec<&str> = first
        .iter()
        .map(|f| f.delivery.subscription.as_str())
        .collect();
    assert_eq!(names, ["a", "c"]);
    assert!(first.iter().all(|f| f.outcome == DeliveryCreate::Created));
    let again = fan_out(&world.hooks, &event, t0() + TimeDelta::minutes(1))
        .await
        .unwrap();
    assert!(again.iter().all(|f| f.outcome == DeliveryCreate::Exists));
    assert_eq!(world.hooks.deliveries().len(), 2);
    assert_eq!(
        first[0].delivery.id,
        webhook_id("a", "stack", "e-1"),
        "the delivery id is the webhook-id"
    );
}

#[tokio::test]
async fn two_workers_on_one_delivery_record_one_attempt() {
    let receiver = Receiver::start(SECRET, Script::always(200)).await;
    let world = World::new(lan());
    world.subscribe("hook", &receiver.url(), json!({})).await;
    let delivery = world.one_delivery("e-1").await;
    let (mut r1, mut r2) = (rng(), rng());
    let (a, b) = tokio::join!(
        world.attempt_at(&delivery.id, t0(), &mut r1),
        world.attempt_at(&delivery.id, t0(), &mut r2),
    );
    let delivered = [&a, &b]
        .iter()
        .filter(|o| matches!(o, AttemptOutcome::Delivered { .. }))
        .count();
    let conflicts = [&a, &b]
        .iter()
        .filter(|o| matches!(o, AttemptOutcome::Conflict))
        .count();
    assert_eq!((delivered, conflicts), (1, 1), "{a:?} {b:?}");
    assert_eq!(world.hooks.attempts(&delivery.id).len(), 1);
    // Both sent: at least once, and the receiver can tell by the id.
    assert_all_signed(&receiver.received(), &delivery.id);
}

#[tokio::test]
async fn a_deleted_subscription_or_an_expired_event_fails_the_delivery() {
    let world = World::new(lan());
    world
        .subscribe("hook", "http://127.0.0.1:9/", json!({}))
        .await;
    let delivery = world.one_delivery("e-1").await;
    world.hooks.delete_subscription("hook").await.unwrap();
    let outcome = world.attempt_at(&delivery.id, t0(), &mut rng()).await;
    assert!(
        matches!(
            outcome,
            AttemptOutcome::Failed {
                reason: FailureReason::SubscriptionDeleted,
                ..
            }
        ),
        "{outcome:?}"
    );

    world
        .subscribe("other", "http://127.0.0.1:9/", json!({}))
        .await;
    let event = Event::new(
        Source::Stack,
        "never-stored",
        "UPDATE_COMPLETE",
        "s",
        "{}",
        t0(),
    );
    let fanned = fan_out(&world.hooks, &event, t0()).await.unwrap();
    let outcome = world
        .attempt_at(&fanned[0].delivery.id, t0(), &mut rng())
        .await;
    assert!(
        matches!(
            outcome,
            AttemptOutcome::Failed {
                reason: FailureReason::EventGone,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(
        world.attempt_at("msg_unknown", t0(), &mut rng()).await,
        AttemptOutcome::Missing
    );
}

#[tokio::test]
async fn the_test_delivery_sends_a_signed_sample_and_stores_nothing() {
    let receiver = Receiver::start(SECRET, Script::always(204)).await;
    let world = World::new(lan());
    let sub = world
        .subscribe(
            "hook",
            &receiver.url(),
            json!({"body": "{{.Kind.Name}} for {{.Target.Value}}"}),
        )
        .await;
    let (id, attempt) = test_delivery(&world.sender, &sub, t0()).await;
    assert_eq!(attempt.status, Some(204));
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].webhook_id(), Some(id.as_str()));
    assert!(received[0].signature_valid);
    assert_eq!(&received[0].body[..], b"webhook.test for hook");
    assert!(world.hooks.deliveries().is_empty());
}

#[test]
fn plans_follow_the_filters_and_skip_disabled_subscriptions() {
    let event = Event::new(Source::Stack, "e", "UPDATE_FAILED", "s", "{}", t0());
    let sub = |name: &str, filter: serde_json::Value, disabled: bool| -> Subscription {
        serde_json::from_value(json!({"name": name, "url": "https://x.example/", "event_filter": filter, "disabled": disabled})).unwrap()
    };
    let subs = [
        sub("errors", json!({"error_only": true}), false),
        sub("successes", json!({"success_only": true}), false),
        sub("off", json!({}), true),
        sub(
            "stack-update",
            json!({"kind_names": ["stack.UPDATE_FAILED"]}),
            false,
        ),
    ];
    let planned: Vec<String> = plan_deliveries(&subs, &event, t0())
        .into_iter()
        .map(|d| d.subscription)
        .collect();
    assert_eq!(planned, ["errors", "stack-update"]);
}

/// The process's delivery attempts counted with `outcome` so far (`GET /metrics`'s counter).
fn attempts_counted(outcome: &str) -> u64 {
    let text = hub_core::metrics::Metrics::global().prometheus();
    let prefix = format!("callback_hub_delivery_attempts_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
}

#[tokio::test]
async fn each_recorded_attempt_is_counted_by_outcome() {
    let receiver = Receiver::start(SECRET, Script::fail_then_succeed(1, 500)).await;
    let world = World::new(lan());
    world.subscribe("hook", &receiver.url(), json!({})).await;
    let delivery = world.one_delivery("e-metrics").await;
    // Other tests of this binary attempt deliveries at the same time: counters only grow.
    let (retrying, delivered) = (attempts_counted("retrying"), attempts_counted("delivered"));
    let outcomes = world.run_to_end(&delivery.id, t0()).await;
    assert!(matches!(outcomes[0], AttemptOutcome::Retrying { .. }));
    assert!(matches!(outcomes[1], AttemptOutcome::Delivered { .. }));
    assert!(attempts_counted("retrying") > retrying);
    assert!(attempts_counted("delivered") > delivered);
}
