//! The delivery worker of `callback-hub serve`: it attempts due webhook deliveries with the
//! same engine and schedule as the AWS deliver function (`webhooks::engine::attempt`).
//!
//! It polls the store for due deliveries ([`DeliveryStore::due_deliveries`]), and is woken at
//! once when the outbox commits new deliveries or a replay makes some due
//! (`webhooks::sqlite::wake`), so that the first attempt follows the sender's request without
//! waiting for a poll. At most [`WorkerConfig::concurrency`] attempts run at once; a delivery
//! is attempted by one task at a time (the engine's conditional record also stops a second
//! worker process on the same file from recording twice). Stopping lets the attempts in flight
//! finish (bounded by [`WorkerConfig::drain`]); one cut short stays pending and is attempted
//! again after the restart: at least once.

use chrono::Utc;
use hub_core::store::EventLookup;
use rand::SeedableRng;
use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use webhooks::engine::{attempt, AttemptOutcome};
use webhooks::store::{DeliveryStore, SubscriptionStore};
use webhooks::Sender;

/// How long the longest-waiting of the deliveries due at `now` has waited; zero when none is
/// due.
pub fn oldest_due(
    due_at: impl Iterator<Item = chrono::DateTime<Utc>>,
    now: chrono::DateTime<Utc>,
) -> Duration {
    due_at
        .min()
        .and_then(|at| (now - at).to_std().ok())
        .unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Attempts in flight at once.
    pub concurrency: usize,
    /// How often the store is asked for due deliveries when nothing wakes the worker: the
    /// granularity of retries.
    pub poll: Duration,
    /// How long stopping waits for the attempts in flight (one attempt takes at most the
    /// sender's 15 s).
    pub drain: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 32,
            poll: Duration::from_millis(500),
            drain: Duration::from_secs(20),
        }
    }
}

/// Runs until `stop` resolves, then drains.
pub async fn run<S, E>(
    store: S,
    events: E,
    sender: Arc<Sender>,
    wake: &'static Notify,
    config: WorkerConfig,
    stop: impl Future<Output = ()>,
) where
    S: SubscriptionStore + DeliveryStore + Clone + 'static,
    E: EventLookup + Clone + 'static,
{
    let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    // A finished attempt frees a slot: look again at once, more may be due.
    let freed = Arc::new(Notify::new());
    let mut tasks = JoinSet::new();
    tokio::pin!(stop);
    tracing::info!(concurrency = config.concurrency, "delivery worker started");
    loop {
        while tasks.try_join_next().is_some() {}
        let free = slots.available_permits();
        if free > 0 {
            let busy = in_flight.lock().unwrap_or_else(|p| p.into_inner()).len();
            let asked = u32::try_from(busy + free).unwrap_or(u32::MAX);
            let now = Utc::now();
            match store.due_deliveries(now, asked).await {
                Ok(due) => {
                    hub_core::metrics::Metrics::global().oldest_pending_delivery(oldest_due(
                        due.iter().map(|d| d.next_attempt_at),
                        now,
                    ));
                    for delivery in due {
                        let Ok(permit) = slots.clone().try_acquire_owned() else {
                            break;
                        };
                        let newly = in_flight
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(delivery.id.clone());
                        if !newly {
                            continue;
                        }
                        let (store, events, sender) =
                            (store.clone(), events.clone(), sender.clone());
                        let (in_flight, freed) = (in_flight.clone(), freed.clone());
                        tasks.spawn(async move {
                            attempt_one(&store, &events, &sender, &delivery.id).await;
                            in_flight
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .remove(&delivery.id);
                            drop(permit);
                            freed.notify_one();
                        });
                    }
                }
                Err(error) => tracing::warn!(%error, "due deliveries could not be read"),
            }
        }
        tokio::select! {
            () = wake.notified() => {}
            () = freed.notified() => {}
            () = tokio::time::sleep(config.poll) => {}
            () = &mut stop => break,
        }
    }
    let running = tasks.len();
    if running > 0 {
        tracing::info!(
            running,
            "delivery worker stopping: finishing attempts in flight"
        );
    }
    let drained = tokio::time::timeout(config.drain, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "attempts cut short; they stay pending and run after the restart"
        );
        tasks.abort_all();
    }
    tracing::info!("delivery worker stopped");
}

async fn attempt_one<S, E>(store: &S, events: &E, sender: &Sender, id: &str)
where
    S: SubscriptionStore + DeliveryStore,
    E: EventLookup,
{
    let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
    match attempt(store, events, sender, id, Utc::now(), &mut rng).await {
        Ok(AttemptOutcome::Delivered { .. } | AttemptOutcome::Retrying { .. }) => {}
        Ok(AttemptOutcome::Failed {
            delivery, reason, ..
        }) => {
            tracing::warn!(delivery = %delivery.id, subscription = %delivery.subscription, reason = reason.message(), dead_lettered = delivery.dead_lettered, "delivery failed");
        }
        Ok(other) => tracing::debug!(delivery = id, outcome = ?other, "nothing to attempt"),
        // The store is unavailable: the delivery stays pending and due, and the next poll
        // tries again.
        Err(error) => tracing::warn!(delivery = id, %error, "attempt not recorded"),
    }
}

/// The worker of a running server, stopped with [`WorkerHandle::stop`].
#[derive(Debug, Default)]
pub struct WorkerHandle {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl WorkerHandle {
    /// Stops polling, lets the attempts in flight finish (within the drain time) and returns.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let mut tasks = std::mem::take(&mut self.tasks).into_iter();
        if let Some(worker) = tasks.next() {
            let _ = worker.await;
        }
        for task in tasks {
            task.abort();
        }
    }
}

/// How often the worker removes expired deliveries and attempts.
pub const PURGE_PERIOD: Duration = Duration::from_secs(3600);

/// Starts the delivery worker of `callback-hub serve` over the server's SQLite file, with the
/// sender the variables describe (`WEBHOOKS_ALLOW_PRIVATE_NETWORKS`, `WEBHOOKS_PROXY_URLS`).
/// On DynamoDB the deployed stack delivers, and nothing is started; with invalid variables
/// nothing is started either (the webhooks routes answer 503 naming the variable).
pub fn start(store: &crate::AnyStore, vars: &impl hub_core::config::Vars) -> WorkerHandle {
    let crate::AnyStore::Sqlite(sqlite) = store else {
        return WorkerHandle::default();
    };
    let config = match webhooks::SenderConfig::from_vars(vars) {
        Ok(config) => config,
        Err(error) => {
            tracing::warn!(%error, "webhook deliveries disabled");
            return WorkerHandle::default();
        }
    };
    let hooks = match webhooks::sqlite::SqliteWebhookStore::open(sqlite) {
        Ok(hooks) => hooks,
        Err(error) => {
            tracing::warn!(%error, "webhook deliveries disabled: the tables cannot be created");
            return WorkerHandle::default();
        }
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(run(
        hooks.clone(),
        sqlite.clone(),
        Arc::new(Sender::new(config)),
        webhooks::sqlite::wake(),
        WorkerConfig::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let purge = tokio::spawn(purge_expired_every(hooks, PURGE_PERIOD));
    WorkerHandle {
        stop: Some(stop),
        tasks: vec![worker, purge],
    }
}

/// Removes expired deliveries and attempts every `period`, the first time now.
pub async fn purge_expired_every(store: webhooks::sqlite::SqliteWebhookStore, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match store.purge_expired(Utc::now()).await {
            Ok(0) => tracing::debug!("no expired deliveries"),
            Ok(purged) => tracing::info!(purged, "expired deliveries and attempts removed"),
            Err(err) => tracing::warn!(error = %err, "removing expired deliveries failed"),
        }
    }
}

/// `callback-hub demo`'s webhook: a subscription to every event, a receiver on 127.0.0.1 that
/// checks each signature, and a worker, so that the demo shows its events delivered.
pub struct DemoWebhook {
    hooks: webhooks::sqlite::SqliteWebhookStore,
    received: Arc<Mutex<Vec<(String, bool, serde_json::Value)>>>,
    arrived: Arc<Notify>,
    worker: WorkerHandle,
    server: tokio::task::JoinHandle<()>,
}

/// The name of the demo's subscription (replaced on every run, deleted at its end).
pub const DEMO_WEBHOOK: &str = "demo";

impl DemoWebhook {
    pub async fn start(sqlite: &sqlite_store::SqliteStore) -> Result<DemoWebhook, String> {
        use webhooks::store::{Found, SubscriptionCreate};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("binding the demo receiver: {e}"))?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        let lan = webhooks::ValidationPolicy {
            allowed_proxy_urls: Vec::new(),
            allow_private_networks: true,
        };
        let input: webhooks::Subscription = serde_json::from_value(serde_json::json!({
            "name": DEMO_WEBHOOK,
            "description": "callback-hub demo: every event to a receiver on 127.0.0.1",
            "url": format!("http://{address}/demo"),
        }))
        .map_err(|e| e.to_string())?;
        let subscription = input
            .prepare_new(&lan, Utc::now())
            .map_err(|e| e.to_string())?;
        let hooks =
            webhooks::sqlite::SqliteWebhookStore::open(sqlite).map_err(|e| e.to_string())?;
        if hooks
            .create_subscription(&subscription)
            .await
            .map_err(|e| e.to_string())?
            == SubscriptionCreate::NameTaken
            && hooks
                .replace_subscription(&subscription)
                .await
                .map_err(|e| e.to_string())?
                == Found::No
        {
            return Err("the demo webhook could not be written".into());
        }
        let secret = webhooks::Secret::parse(subscription.secret.as_deref().unwrap_or_default())
            .map_err(|e| e.to_string())?;
        let received: Arc<Mutex<Vec<(String, bool, serde_json::Value)>>> = Arc::default();
        let arrived = Arc::new(Notify::new());
        let server = tokio::spawn(demo_receiver(
            listener,
            secret,
            received.clone(),
            arrived.clone(),
        ));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = tokio::spawn(run(
            hooks.clone(),
            sqlite.clone(),
            Arc::new(Sender::new(webhooks::SenderConfig::new(lan))),
            webhooks::sqlite::wake(),
            WorkerConfig::default(),
            async {
                let _ = stopped.await;
            },
        ));
        Ok(DemoWebhook {
            hooks,
            received,
            arrived,
            worker: WorkerHandle {
                stop: Some(stop),
                tasks: vec![worker],
            },
            server,
        })
    }

    /// Waits (at most `wait`) for `expected` deliveries, stops, deletes the subscription and
    /// reports what arrived; `false` when some did not or a signature was wrong.
    pub async fn finish(self, expected: usize, wait: Duration) -> (String, bool) {
        let _ = tokio::time::timeout(wait, async {
            loop {
                let arrived = self.arrived.notified();
                if self
                    .received
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .len()
                    >= expected
                {
                    return;
                }
                arrived.await;
            }
        })
        .await;
        self.worker.stop().await;
        self.server.abort();
        let _ = self.hooks.delete_subscription(DEMO_WEBHOOK).await;
        let received = self
            .received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut out = format!(
            "
webhook {DEMO_WEBHOOK} (every event, signed, to a receiver on 127.0.0.1): {} of {expected} delivered
",
            received.len()
        );
        let mut ok = received.len() == expected;
        for (id, signed, view) in &received {
            ok &= *signed;
            out.push_str(&format!(
                "  {id} {} {}/{} signature {}\n",
                view["Kind"]["Name"].as_str().unwrap_or("?"),
                view["Target"]["Type"].as_str().unwrap_or("?"),
                view["Target"]["Value"].as_str().unwrap_or("?"),
                if *signed { "valid" } else { "INVALID" }
            ));
        }
        (out, ok)
    }
}

async fn demo_receiver(
    listener: tokio::net::TcpListener,
    secret: webhooks::Secret,
    received: Arc<Mutex<Vec<(String, bool, serde_json::Value)>>>,
    arrived: Arc<Notify>,
) {
    use http_body_util::BodyExt;
    while let Ok((stream, _)) = listener.accept().await {
        let (secret, received, arrived) = (secret.clone(), received.clone(), arrived.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                move |request: hyper::Request<hyper::body::Incoming>| {
                    let (secret, received, arrived) =
                        (secret.clone(), received.clone(), arrived.clone());
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let header = |name: &str| {
                            parts
                                .headers
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned()
                        };
                        let id = header("webhook-id");
                        let signed = webhooks::verify(
                            &header("webhook-signature"),
                            std::slice::from_ref(&secret),
                            &id,
                            &header("webhook-timestamp"),
                            &body,
                            Utc::now().timestamp(),
                            webhooks::signature::DEFAULT_TOLERANCE,
                        )
                        .is_ok();
                        let view = serde_json::from_slice(&body).unwrap_or_default();
                        received
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((id, signed, view));
                        arrived.notify_waiters();
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::new()),
                        ))
                    }
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hub_core::event::{Event, Source};
    use hub_core::store::EventWriter;
    use sqlite_store::SqliteStore;
    use webhooks::sqlite::SqliteWebhookStore;
    use webhooks::store::DeliveryState;
    use webhooks::testing::{Receiver, Script};
    use webhooks::{SenderConfig, Subscription, ValidationPolicy};

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_worker_delivers_what_the_outbox_wrote_and_stops_gracefully() {
        let receiver = Receiver::start(SECRET, Script::always(200)).await;
        let sqlite = SqliteStore::in_memory().unwrap();
        let hooks = SqliteWebhookStore::open(&sqlite).unwrap();
        let lan = ValidationPolicy {
            allowed_proxy_urls: Vec::new(),
            allow_private_networks: true,
        };
        let sub: Subscription = serde_json::from_value(
            serde_json::json!({"name": "hook", "url": receiver.url(), "secret": SECRET}),
        )
        .unwrap();
        hooks
            .create_subscription(&sub.prepare_new(&lan, Utc::now()).unwrap())
            .await
            .unwrap();
        let sender = Arc::new(Sender::new(SenderConfig::new(lan)));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let worker = tokio::spawn(run(
            hooks.clone(),
            sqlite.clone(),
            sender,
            webhooks::sqlite::wake(),
            WorkerConfig::default(),
            async {
                let _ = stop_rx.await;
            },
        ));
        let count = 50;
        for i in 0..count {
            let event = Event::new(
                Source::Stack,
                format!("e-{i}"),
                "UPDATE_COMPLETE",
                "web",
                "{}",
                Utc::now(),
            );
            hooks.put_event(&event).await.unwrap();
        }
        let received = receiver.wait_for(count).await;
        let ids: HashSet<&str> = received.iter().filter_map(|r| r.webhook_id()).collect();
        assert_eq!(ids.len(), count);
        assert!(received.iter().all(|r| r.signature_valid));
        stop_tx.send(()).unwrap();
        worker.await.unwrap();
        // Recorded as delivered once the worker stopped: every attempt finished and was logged.
        let page = hooks
            .list_deliveries("hook", &webhooks::store::PageRequest::first(100))
            .await
            .unwrap();
        assert_eq!(page.deliveries.len(), count);
        assert!(page
            .deliveries
            .iter()
            .all(|d| d.delivery.state == DeliveryState::Delivered && d.attempts_log.len() == 1));
    }
}
