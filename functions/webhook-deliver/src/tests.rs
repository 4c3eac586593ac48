use super::*;
use chrono::TimeZone;
use hub_core::clock::FixedClock;
use hub_core::event::{Event, Source};
use hub_core::store::memory::MemoryStore;
use hub_core::store::EventWriter;
use serde_json::json;
use std::sync::{Arc, Mutex};
use webhooks::model::ValidationPolicy;
use webhooks::schedule::{MAX_ATTEMPTS, RETRY_DELAYS};
use webhooks::store::memory::MemoryWebhookStore;
use webhooks::testing::{Receiver, Script};
use webhooks::Subscription;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0).unwrap()
}

#[derive(Default)]
struct FakeQueues {
    hidden: Mutex<Vec<(String, Duration)>>,
    requeued: Mutex<Vec<String>>,
    dead_letters: Mutex<Vec<serde_json::Value>>,
    /// Dead-letter sends to refuse before accepting.
    refuse_dead_letters: Mutex<usize>,
}

impl Queues for Arc<FakeQueues> {
    async fn hide(&self, receipt_handle: &str, delay: Duration) -> Result<(), StoreError> {
        self.hidden
            .lock()
            .unwrap()
            .push((receipt_handle.to_owned(), delay));
        Ok(())
    }
    async fn requeue(&self, ids: &[String]) -> Result<(), StoreError> {
        self.requeued.lock().unwrap().extend(ids.iter().cloned());
        Ok(())
    }
    async fn dead_letter(&self, body: &str) -> Result<(), StoreError> {
        let mut refuse = self.refuse_dead_letters.lock().unwrap();
        if *refuse > 0 {
            *refuse -= 1;
            return Err(StoreError::Unavailable("dead-letter queue down".into()));
        }
        self.dead_letters
            .lock()
            .unwrap()
            .push(serde_json::from_str(body).unwrap());
        Ok(())
    }
}

type Function =
    DeliverFunction<Arc<MemoryWebhookStore>, Arc<MemoryStore>, Arc<FakeQueues>, Arc<FixedClock>>;

struct World {
    function: Function,
    store: Arc<MemoryWebhookStore>,
    queues: Arc<FakeQueues>,
    clock: Arc<FixedClock>,
    receiver: Receiver,
    delivery: Delivery,
}

async fn world(script: Script) -> World {
    let receiver = Receiver::start(SECRET, script).await;
    let store = Arc::new(MemoryWebhookStore::new());
    let events = Arc::new(MemoryStore::new());
    let mut sub: Subscription = serde_json::from_value(json!({
        "name": "ops",
        "url": receiver.url(),
        "secret": SECRET,
    }))
    .unwrap();
    let policy = ValidationPolicy {
        allow_private_networks: true,
        ..ValidationPolicy::default()
    };
    sub = sub.prepare_new(&policy, t0()).unwrap();
    store.create_subscription(&sub).await.unwrap();
    let event = Event::new(
        Source::Stack,
        "ev-1",
        "UPDATE_FAILED",
        "web",
        r#"{"StackName":"web"}"#,
        t0(),
    );
    events.put_event(&event).await.unwrap();
    let delivery = Delivery::new("ops", &event, t0());
    store.create_delivery(&delivery).await.unwrap();
    let queues = Arc::new(FakeQueues::default());
    let clock = Arc::new(FixedClock::at(t0()));
    let function = DeliverFunction::new(
        store.clone(),
        events,
        Sender::new(SenderConfig::new(policy)),
        queues.clone(),
        clock.clone(),
    );
    World {
        function,
        store,
        queues,
        clock,
        receiver,
        delivery,
    }
}

fn message(id: &str) -> SqsMessage {
    serde_json::from_value(json!({
        "messageId": "m-1",
        "receiptHandle": "r-1",
        "body": id,
        "attributes": {},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
    }))
    .unwrap()
}

fn queue_batch(id: &str) -> DeliverInput {
    let mut batch = SqsEvent::default();
    batch.records.push(message(id));
    DeliverInput::Queue(batch)
}

impl World {
    /// Delivers the delivery's message once, as SQS would hand it over; when the function hides
    /// it, moves the clock to when it would be visible again. Returns whether SQS keeps it.
    async fn receive(&self) -> bool {
        let response = self
            .function
            .handle(queue_batch(&self.delivery.id))
            .await
            .unwrap();
        let kept = !response.batch_item_failures.is_empty();
        if kept {
            let (_, delay) = *self.queues.hidden.lock().unwrap().last().unwrap();
            self.clock.advance(TimeDelta::from_std(delay).unwrap());
        }
        kept
    }

    fn stored(&self) -> Delivery {
        self.store
            .deliveries()
            .into_iter()
            .find(|d| d.id == self.delivery.id)
            .unwrap()
    }
}

#[tokio::test]
async fn retries_on_schedule_then_succeeds_every_attempt_signed_with_one_id() {
    let world = world(Script::fail_then_succeed(3, 503)).await;
    let mut receives = 0;
    while world.receive().await {
        receives += 1;
        assert!(receives < 20, "the message never settles");
    }
    let received = world.receiver.received();
    assert_eq!(received.len(), 4);
    assert!(
        received.iter().all(|r| r.signature_valid),
        "every attempt is signed"
    );
    assert!(received
        .iter()
        .all(|r| r.webhook_id() == Some(world.delivery.id.as_str())));
    let hides: Vec<Duration> = world
        .queues
        .hidden
        .lock()
        .unwrap()
        .iter()
        .map(|(_, d)| *d)
        .collect();
    assert_eq!(hides.len(), 3);
    for (hide, base) in hides.iter().zip(RETRY_DELAYS) {
        assert!(
            *hide >= base.mul_f64(0.8) && *hide <= base.mul_f64(1.2),
            "{hide:?} is not {base:?} ±20%"
        );
    }
    let stored = world.stored();
    assert_eq!(stored.state, DeliveryState::Delivered);
    assert_eq!(stored.attempts, 4);
    assert_eq!(world.store.attempts(&stored.id).len(), 4);
    assert!(world.queues.dead_letters.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_exhausted_schedule_dead_letters_the_delivery() {
    let world = world(Script::always(500)).await;
    let mut receives = 0;
    while world.receive().await {
        receives += 1;
        assert!(receives < 40, "the message never settles");
    }
    assert_eq!(world.receiver.received().len(), MAX_ATTEMPTS as usize);
    let stored = world.stored();
    assert_eq!(stored.state, DeliveryState::Failed);
    assert!(stored.dead_lettered);
    assert_eq!(stored.attempts, MAX_ATTEMPTS);
    let dead = world.queues.dead_letters.lock().unwrap().clone();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["delivery_id"], json!(world.delivery.id));
    assert_eq!(dead[0]["subscription"], json!("ops"));
    assert_eq!(dead[0]["last_status"], json!(500));
    // Every wait fits one receive; the 10 h waits (up to 12 h with jitter) may need a second.
    assert!(world
        .queues
        .hidden
        .lock()
        .unwrap()
        .iter()
        .all(|(_, d)| *d <= MAX_VISIBILITY));
}

#[tokio::test]
async fn a_message_back_before_its_delivery_is_due_is_hidden_for_the_rest() {
    let world = world(Script::always(503)).await;
    assert!(world.receive().await, "first attempt fails and is hidden");
    // Make the next attempt due later than one receive can hide (a long Retry-After).
    let mut stored = world.stored();
    let due = world.clock.now() + TimeDelta::hours(20);
    stored.next_attempt_at = due;
    let version = stored.version;
    world.store.update_delivery(&stored, version).await.unwrap();
    let before = world.receiver.received().len();
    let outcome = world.function.message(&message(&world.delivery.id)).await;
    assert_eq!(
        outcome,
        MessageOutcome::Hidden(MAX_VISIBILITY),
        "capped per receive"
    );
    world
        .clock
        .advance(TimeDelta::from_std(MAX_VISIBILITY).unwrap());
    let outcome = world.function.message(&message(&world.delivery.id)).await;
    assert_eq!(
        outcome,
        MessageOutcome::Hidden((due - world.clock.now()).to_std().unwrap()),
        "then hidden again for what is left"
    );
    assert_eq!(
        world.receiver.received().len(),
        before,
        "nothing sent early"
    );
}

#[tokio::test]
async fn a_failed_dead_letter_send_is_retried_when_the_message_returns() {
    let world = world(Script::always(500)).await;
    *world.queues.refuse_dead_letters.lock().unwrap() = 1;
    let mut outcome = MessageOutcome::Done("");
    for _ in 0..40 {
        outcome = world.function.message(&message(&world.delivery.id)).await;
        match &outcome {
            MessageOutcome::Hidden(delay) => {
                world.clock.advance(TimeDelta::from_std(*delay).unwrap())
            }
            _ => break,
        }
    }
    assert!(matches!(outcome, MessageOutcome::Failed(_)), "{outcome:?}");
    assert!(world.stored().dead_lettered);
    assert!(world.queues.dead_letters.lock().unwrap().is_empty());
    let again = world.function.message(&message(&world.delivery.id)).await;
    assert_eq!(again, MessageOutcome::Done("dead-lettered"));
    assert_eq!(world.queues.dead_letters.lock().unwrap().len(), 1);
    assert_eq!(
        world.receiver.received().len(),
        MAX_ATTEMPTS as usize,
        "no attempt beyond the schedule"
    );
}

#[tokio::test]
async fn a_dead_letter_whose_record_answer_was_lost_is_still_sent() {
    // The last attempt's record lands, its answer is lost and the retry conflicts: found by
    // `bench-faults --only reproduce` (RELIABILITY.md). The message was deleted as "another
    // worker's", and the dead-letter was never sent.
    let world = world(Script::always(500)).await;
    let mut outcome = MessageOutcome::Done("");
    for _ in 0..40 {
        if world.stored().attempts + 1 == MAX_ATTEMPTS {
            world.store.lose_record_answers(1);
        }
        outcome = world.function.message(&message(&world.delivery.id)).await;
        match &outcome {
            MessageOutcome::Hidden(delay) => {
                world.clock.advance(TimeDelta::from_std(*delay).unwrap())
            }
            _ => break,
        }
    }
    let stored = world.stored();
    assert_eq!(stored.state, DeliveryState::Failed);
    assert!(stored.dead_lettered);
    assert_eq!(outcome, MessageOutcome::Done("dead-lettered"));
    assert_eq!(world.queues.dead_letters.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_conflict_with_a_pending_delivery_leaves_it_to_the_other_worker() {
    let world = world(Script::always(503)).await;
    world.store.lose_record_answers(1);
    let outcome = world.function.message(&message(&world.delivery.id)).await;
    assert_eq!(
        outcome,
        MessageOutcome::Done("another worker recorded this attempt")
    );
    assert_eq!(world.stored().state, DeliveryState::Pending);
    assert!(world.queues.dead_letters.lock().unwrap().is_empty());
}

#[tokio::test]
async fn messages_that_are_not_deliveries_are_dropped() {
    let world = world(Script::always(200)).await;
    for body in ["", "   ", "msg_doesnotexist", &"x".repeat(500)] {
        let response = world.function.handle(queue_batch(body)).await.unwrap();
        assert!(response.batch_item_failures.is_empty(), "{body:?}");
    }
    assert!(world.receiver.received().is_empty());
}

#[tokio::test]
async fn a_store_outage_keeps_the_message() {
    let world = world(Script::always(200)).await;
    world.store.set_unavailable(true);
    let response = world
        .function
        .handle(queue_batch(&world.delivery.id))
        .await
        .unwrap();
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(response.batch_item_failures[0].item_identifier, "m-1");
}

#[tokio::test]
async fn the_sweep_requeues_only_deliveries_overdue_past_the_grace() {
    let world = world(Script::always(200)).await;
    // The world's delivery is due at t0; a second one is due three minutes later.
    let event = Event::new(Source::Stack, "ev-2", "UPDATE_COMPLETE", "web", "{}", t0());
    let recent = Delivery::new("ops", &event, t0() + TimeDelta::minutes(3));
    world.store.create_delivery(&recent).await.unwrap();

    world.clock.advance(TimeDelta::minutes(4));
    assert!(
        world.function.sweep().await.unwrap().is_empty(),
        "within the grace"
    );
    world.clock.advance(TimeDelta::minutes(2));
    assert_eq!(
        world.function.sweep().await.unwrap(),
        vec![world.delivery.id.clone()]
    );
    let response = world
        .function
        .handle(serde_json::from_value(json!({"sweep": true})).unwrap())
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(world.queues.requeued.lock().unwrap().len(), 2);

    // Delivered deliveries are not swept.
    assert!(!world.receive().await);
    world.clock.advance(TimeDelta::hours(1));
    assert_eq!(
        world.function.sweep().await.unwrap(),
        vec![recent.id.clone()]
    );
}

#[test]
fn inputs_are_told_apart() {
    let sweep: DeliverInput = serde_json::from_value(json!({"sweep": true})).unwrap();
    assert!(matches!(
        sweep,
        DeliverInput::Sweep(SweepRequest { sweep: true })
    ));
    let queue: DeliverInput = serde_json::from_value(json!({"Records": [{
        "messageId": "m", "receiptHandle": "r", "body": "msg_1",
        "attributes": {}, "messageAttributes": {}
    }]}))
    .unwrap();
    assert!(matches!(queue, DeliverInput::Queue(ref b) if b.records.len() == 1));
    assert!(serde_json::from_value::<DeliverInput>(json!({"detail": {}})).is_err());
}
