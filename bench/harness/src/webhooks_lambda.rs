//! Outbound webhooks on the Lambda path: the fan-out and deliver functions' release bootstraps
//! under the Runtime API emulator, against moto (DynamoDB and SQS, through the timing proxy),
//! with a loopback receiver as the subscriber.
//!
//! - **fan-out**: every invocation is a stream batch of 100 new stored events (the `NewImage` the
//!   events table's stream carries), with 10 subscriptions that all match: 1,000 deliveries
//!   created and queued per batch.
//! - **deliver**: every invocation is a batch of 10 delivery messages received from moto's
//!   queue, as Lambda's SQS poller hands them over (the template's `BatchSize: 10`); each one is
//!   rendered, signed, sent to the receiver and recorded. The receiver answers 200 at once.
//!
//! Every answer is checked: the fan-out reports no failed record, the deliver function no
//! failed message, and the receiver gets every delivery the fan-out queued.

use crate::emulator::RuntimeApi;
use crate::http_server;
use crate::stats::{median, ms, percentile};
use crate::{cpu_time, peak_rss_kib, stop, Bench, INIT_LIMIT};
use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use chrono::{TimeZone, Utc};
use hub_core::event::{Event, Source};
use hub_core::store::{DynamoStore, EventWriter};
use serde_json::{json, Value};
use std::fmt::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use webhooks::store::SubscriptionStore;

const EVENTS_PER_BATCH: usize = 100;
const SUBSCRIPTIONS: usize = 10;
const MESSAGES_PER_BATCH: usize = 10;
/// Invocations run, and not measured, between the first and the measured ones.
const WARM_UP: usize = 2;
/// The functions' `Timeout` in template.yaml.
const INVOKE_LIMIT: Duration = Duration::from_secs(60);

struct Run {
    name: &'static str,
    unit: &'static str,
    inits: Vec<Duration>,
    firsts: Vec<Duration>,
    latencies: Vec<Duration>,
    own: Vec<Duration>,
    aws_requests: u64,
    cpu: Duration,
    rss_kib: u64,
}

struct World {
    webhooks_table: String,
    queue_url: String,
    dead_letter_url: String,
    sqs: aws_sdk_sqs::Client,
    events: DynamoStore,
    next_event: usize,
    /// `AWS_ENDPOINT_URL` of the functions: the timing proxy in front of moto.
    proxy: String,
}

/// Runs both functions and returns the BENCHMARKS.md section.
pub async fn measure(bench: &mut Bench) -> Result<String, String> {
    for binary in ["webhook-fanout", "webhook-deliver"] {
        let path = bench.options.bin_dir.join(binary);
        if !path.is_file() {
            return Err(format!("{} is missing: build it first", path.display()));
        }
    }
    let delivered = Arc::new(AtomicUsize::new(0));
    let (receiver, _task) = {
        let delivered = delivered.clone();
        http_server::spawn(move |_request| {
            let delivered = delivered.clone();
            async move {
                delivered.fetch_add(1, Ordering::SeqCst);
                http_server::response(200, "ok")
            }
        })
        .await
        .map_err(|e| format!("receiver: {e}"))?
    };
    // The events table of the function runs is not needed any more, and moto copies every
    // table it holds on each `TransactWriteItems` (the deliver function records each attempt in
    // one): dropped, so that it does not weigh on the deliver run.
    let dynamodb = aws_sdk_dynamodb::Client::new(&hub_tests::Moto::shared().sdk_config().await);
    drop_table(&dynamodb, &bench.table).await?;

    let cold_starts = bench.options.cold_starts.min(10);
    let mut world = World::create("fanout", bench.proxy.endpoint(), receiver).await?;
    let fan_out = fan_out_run(bench, &mut world, cold_starts, receiver).await?;
    let queued = count_queued(&world).await?;
    world.drop_tables().await?;

    // The deliver run gets a small world of its own, for the same reason: just the deliveries
    // it will handle, made by one fan-out invocation.
    let mut world = World::create("deliver", bench.proxy.endpoint(), receiver).await?;
    let batches = cold_starts + 1 + WARM_UP + bench.options.webhook_batches;
    let seed = stream_batch(&mut world, batches * MESSAGES_PER_BATCH / SUBSCRIPTIONS).await?;
    one_process(
        bench,
        "webhook-fanout",
        &lambda_env(&world),
        vec![seed],
        None,
        &mut |b| check_batch("webhook-fanout", b),
    )
    .await?;
    let (deliver, failed) = deliver_run(bench, &mut world, cold_starts).await?;
    world.drop_tables().await?;
    let delivered = delivered.load(Ordering::SeqCst);
    // Every batch handed out: one per cold start, then the warm process's first, its warm-ups
    // and its measured ones.
    let processed = (cold_starts + 1 + WARM_UP + deliver.latencies.len()) * MESSAGES_PER_BATCH;
    // An item a cold process reported failed goes back to SQS in production (not here): it
    // may have reached the receiver before what failed (recording the attempt), or not.
    if delivered > processed || delivered + failed < processed {
        return Err(format!(
            "the receiver got {delivered} deliveries for {processed} messages handled, \
             {failed} of them reported failed"
        ));
    }
    Ok(render(&[fan_out, deliver], queued, delivered, failed))
}

async fn drop_table(dynamodb: &aws_sdk_dynamodb::Client, table: &str) -> Result<(), String> {
    dynamodb
        .delete_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| format!("delete table {table}: {e:?}"))?;
    Ok(())
}

impl World {
    /// Tables, queues and 10 subscriptions to `receiver` that match every event.
    async fn create(
        name: &str,
        proxy: String,
        receiver: std::net::SocketAddr,
    ) -> Result<World, String> {
        let config = hub_tests::Moto::shared().sdk_config().await;
        let dynamodb = aws_sdk_dynamodb::Client::new(&config);
        let events_table = format!("callback-hub-bench-{name}-events");
        hub_tests::template::create_events_table(&dynamodb, &events_table).await;
        let webhooks_table = format!("callback-hub-bench-{name}-webhooks");
        hub_tests::template::create_webhooks_table(&dynamodb, &webhooks_table).await;
        let sqs = aws_sdk_sqs::Client::new(&config);
        let mut urls = Vec::new();
        for queue in ["deliveries", "dead-letters"] {
            let url = sqs
                .create_queue()
                .queue_name(format!("bench-{name}-{queue}"))
                .attributes(
                    aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
                    "600",
                )
                .send()
                .await
                .map_err(|e| format!("create queue {queue}: {e:?}"))?
                .queue_url
                .ok_or("no queue URL")?;
            urls.push(url);
        }
        let store = webhooks::dynamo::DynamoWebhookStore::new(dynamodb.clone(), &webhooks_table);
        let policy = webhooks::model::ValidationPolicy {
            allow_private_networks: true,
            ..Default::default()
        };
        for i in 0..SUBSCRIPTIONS {
            let subscription: webhooks::model::Subscription = serde_json::from_value(json!({
                "name": format!("bench-{i}"),
                "url": format!("http://{receiver}/hook/{i}"),
                "event_filter": {},
            }))
            .map_err(|e| e.to_string())?;
            let subscription = subscription
                .prepare_new(&policy, Utc::now())
                .map_err(|e| e.to_string())?;
            store
                .create_subscription(&subscription)
                .await
                .map_err(|e| format!("create subscription: {e}"))?;
        }
        Ok(World {
            webhooks_table,
            queue_url: urls[0].clone(),
            dead_letter_url: urls[1].clone(),
            sqs,
            events: DynamoStore::new(dynamodb, events_table),
            next_event: 0,
            proxy,
        })
    }

    async fn drop_tables(&self) -> Result<(), String> {
        drop_table(self.events.client(), self.events.table()).await?;
        drop_table(self.events.client(), &self.webhooks_table).await
    }
}

fn lambda_env(world: &World) -> Vec<(&'static str, String)> {
    vec![
        ("WEBHOOKS_TABLE", world.webhooks_table.clone()),
        ("WEBHOOKS_QUEUE_URL", world.queue_url.clone()),
        (
            "WEBHOOKS_DEAD_LETTER_QUEUE_URL",
            world.dead_letter_url.clone(),
        ),
        ("WEBHOOKS_ALLOW_PRIVATE_NETWORKS", "true".into()),
        ("EVENTS_TABLE", world.events.table().to_owned()),
        ("AWS_ENDPOINT_URL", world.proxy.clone()),
    ]
}

/// A new stored event, as the events table's stream shows it.
async fn stream_batch(world: &mut World, events: usize) -> Result<Bytes, String> {
    let mut records = Vec::with_capacity(events);
    for _ in 0..events {
        let n = world.next_event;
        world.next_event += 1;
        let event = Event::new(
            Source::Stack,
            format!("bench-webhook-{n}"),
            "UPDATE_FAILED",
            format!("bench-stack-{}", n % 50),
            json!({"StackName": format!("bench-stack-{}", n % 50), "Status": "UPDATE_FAILED",
                   "StatusReason": "Resource creation cancelled"})
            .to_string(),
            Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0).unwrap()
                + chrono::Duration::seconds(n as i64),
        );
        // The deliver function reads the event from the table.
        world
            .events
            .put_event(&event)
            .await
            .map_err(|e| format!("put event: {e}"))?;
        let image: serde_json::Map<String, Value> = hub_core::store::dynamo::event_to_item(&event)
            .iter()
            .map(|(k, v)| (k.clone(), dynamodb_json(v)))
            .collect();
        records.push(json!({
            "eventID": format!("{n}"), "eventName": "INSERT", "eventVersion": "1.1",
            "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
            "dynamodb": {"SequenceNumber": format!("{n:021}"), "SizeBytes": 512,
                         "StreamViewType": "NEW_IMAGE", "NewImage": image}
        }));
    }
    Ok(Bytes::from(json!({ "Records": records }).to_string()))
}

fn dynamodb_json(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(b) => json!({ "NULL": b }),
        other => json!({ "S": format!("{other:?}") }),
    }
}

/// The next batch of delivery messages, received from moto's queue as Lambda's poller does.
async fn queue_batch(world: &World) -> Result<(Bytes, Vec<String>), String> {
    let mut records = Vec::new();
    let mut receipts = Vec::new();
    while records.len() < MESSAGES_PER_BATCH {
        let output = world
            .sqs
            .receive_message()
            .queue_url(&world.queue_url)
            .max_number_of_messages((MESSAGES_PER_BATCH - records.len()) as i32)
            .send()
            .await
            .map_err(|e| format!("receive: {e}"))?;
        let messages = output.messages.unwrap_or_default();
        if messages.is_empty() {
            return Err("the delivery queue ran dry: run the fan-out first".into());
        }
        for m in messages {
            receipts.push(m.receipt_handle().unwrap_or_default().to_owned());
            records.push(json!({
                "messageId": m.message_id(), "receiptHandle": m.receipt_handle(), "body": m.body(),
                "md5OfBody": m.md5_of_body(), "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {}, "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:bench-deliveries",
                "awsRegion": "us-east-1",
            }));
        }
    }
    Ok((
        Bytes::from(json!({ "Records": records }).to_string()),
        receipts,
    ))
}

/// Empties the delivery queue before a fan-out invocation: moto's `SendMessageBatch` slows
/// down with every message a queue holds (about 50 ms more per 200 messages), which would make
/// later batches look slower than earlier ones for a reason AWS does not have. The deliver run
/// uses the messages of the fan-out's last batch.
async fn empty_queue(world: &World) -> Result<(), String> {
    // Deleted and made again under the same name (so the same URL): moto, like SQS, allows one
    // `PurgeQueue` a minute.
    let name = world.queue_url.rsplit('/').next().unwrap_or_default();
    world
        .sqs
        .delete_queue()
        .queue_url(&world.queue_url)
        .send()
        .await
        .map_err(|e| format!("delete queue: {e:?}"))?;
    let url = world
        .sqs
        .create_queue()
        .queue_name(name)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "600",
        )
        .send()
        .await
        .map_err(|e| format!("create queue: {e:?}"))?
        .queue_url
        .unwrap_or_default();
    if url != world.queue_url {
        return Err(format!(
            "the queue came back as {url}, not {}",
            world.queue_url
        ));
    }
    Ok(())
}

async fn count_queued(world: &World) -> Result<usize, String> {
    let attributes = world
        .sqs
        .get_queue_attributes()
        .queue_url(&world.queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .map_err(|e| format!("queue attributes: {e}"))?;
    Ok(attributes
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
        .and_then(|n| n.parse().ok())
        .unwrap_or_default())
}

/// An answer with no failed item: `{"batchItemFailures": []}`.
fn check_batch(name: &str, body: &[u8]) -> Result<(), String> {
    let answer: Value = serde_json::from_slice(body).map_err(|e| format!("{name}: {e}"))?;
    match answer["batchItemFailures"].as_array() {
        Some(failures) if failures.is_empty() => Ok(()),
        _ => Err(format!("{name} reported failures: {answer}")),
    }
}

async fn fan_out_run(
    bench: &mut Bench,
    world: &mut World,
    cold: usize,
    receiver: std::net::SocketAddr,
) -> Result<Run, String> {
    let mut run = Run::new(
        "webhook-fanout",
        "stream batch of 100 events × 10 subscriptions",
    );
    let env = lambda_env(world);
    for round in 0..cold {
        eprintln!("bench: webhook-fanout cold start {}/{cold}", round + 1);
        let batch = stream_batch(world, EVENTS_PER_BATCH).await?;
        let (init, first, _, _) = one_process(
            bench,
            "webhook-fanout",
            &env,
            vec![batch],
            Some(world),
            &mut |_| Ok(()),
        )
        .await?;
        run.inits.push(init);
        run.firsts.push(first);
    }
    // The warm process starts from empty tables: the cold starts left 1,000 deliveries each in
    // the webhooks table, and moto's answers slow down with every item a table holds (at about
    // 13,000 the subscriptions query once took longer than the functions' 1.2 s DynamoDB
    // timeout), which AWS's do not.
    world.drop_tables().await?;
    *world = World::create("fanout-warm", bench.proxy.endpoint(), receiver).await?;
    let env = lambda_env(world);
    let mut batches = Vec::new();
    for _ in 0..(WARM_UP + bench.options.webhook_batches) {
        batches.push(stream_batch(world, EVENTS_PER_BATCH).await?);
    }
    eprintln!("bench: webhook-fanout warm, {} batches", batches.len());
    let (_, _, warm, (cpu, rss)) = one_process(
        bench,
        "webhook-fanout",
        &env,
        batches,
        Some(world),
        &mut |b| check_batch("webhook-fanout", b),
    )
    .await?;
    run.take_warm(warm, cpu, rss);
    Ok(run)
}

/// The run, and how many items the cold processes reported failed (`batchItemFailures`, which
/// SQS would hand out again; against a loaded moto a first invocation's attempt record can
/// outlast its timeout). The warm process must report none.
async fn deliver_run(
    bench: &mut Bench,
    world: &mut World,
    cold: usize,
) -> Result<(Run, usize), String> {
    let mut failed = 0;
    let mut run = Run::new(
        "webhook-deliver",
        "batch of 10 deliveries (render, sign, POST, record)",
    );
    let env = lambda_env(world);
    for round in 0..cold {
        eprintln!("bench: webhook-deliver cold start {}/{cold}", round + 1);
        let (batch, _) = queue_batch(world).await?;
        let (init, first, _, _) = one_process(
            bench,
            "webhook-deliver",
            &env,
            vec![batch],
            None,
            &mut |body| {
                failed += failed_items(body);
                Ok(())
            },
        )
        .await?;
        run.inits.push(init);
        run.firsts.push(first);
    }
    let mut batches = Vec::new();
    for _ in 0..(WARM_UP + bench.options.webhook_batches) {
        batches.push(queue_batch(world).await?.0);
    }
    eprintln!("bench: webhook-deliver warm, {} batches", batches.len());
    let (_, _, warm, (cpu, rss)) =
        one_process(bench, "webhook-deliver", &env, batches, None, &mut |b| {
            check_batch("webhook-deliver", b)
        })
        .await?;
    run.take_warm(warm, cpu, rss);
    Ok((run, failed))
}

fn failed_items(body: &[u8]) -> usize {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|answer| answer["batchItemFailures"].as_array().map(Vec::len))
        .unwrap_or(0)
}

struct Sample {
    latency: Duration,
    aws: crate::proxy::Usage,
}

/// One process: spawn, first poll, then each input in turn. Returns init, the first
/// invocation's latency, the later invocations (their latency and AWS usage) and the process's
/// CPU time and peak RSS over those.
async fn one_process(
    bench: &Bench,
    binary: &'static str,
    env: &[(&'static str, String)],
    inputs: Vec<Bytes>,
    emptied: Option<&World>,
    check: &mut dyn FnMut(&[u8]) -> Result<(), String>,
) -> Result<(Duration, Duration, Vec<Sample>, (Duration, u64)), String> {
    let mut api = RuntimeApi::start(binary).await.map_err(|e| e.to_string())?;
    let spawned = std::time::Instant::now();
    let mut child = bench.spawn_with(binary, &api, env)?;
    let polled = api
        .first_poll(INIT_LIMIT)
        .await
        .map_err(|e| bench.failure_of(binary, binary, &e))?;
    let mut samples = Vec::new();
    let mut first = Duration::ZERO;
    let mut cpu_before = Duration::ZERO;
    for (i, input) in inputs.into_iter().enumerate() {
        if i == 1 + WARM_UP {
            cpu_before = cpu_time(child.id().ok_or("the function exited")?)?;
        }
        if let Some(world) = emptied {
            empty_queue(world).await?;
        }
        let before = bench.proxy.usage();
        let invocation = api
            .invoke(input, INVOKE_LIMIT)
            .await
            .map_err(|e| bench.failure_of(binary, binary, &e))?;
        let aws = bench.proxy.usage() - before;
        check(&invocation.body).map_err(|e| bench.failure_of(binary, binary, &e))?;
        if i == 0 {
            first = invocation.latency;
        } else if i > WARM_UP {
            samples.push(Sample {
                latency: invocation.latency,
                aws,
            });
        }
    }
    let pid = child.id().ok_or("the function exited")?;
    let usage = if samples.is_empty() {
        (Duration::ZERO, 0)
    } else {
        (
            cpu_time(pid)?.saturating_sub(cpu_before),
            peak_rss_kib(pid)?,
        )
    };
    stop(&mut child).await;
    Ok((polled - spawned, first, samples, usage))
}

impl Run {
    fn new(name: &'static str, unit: &'static str) -> Run {
        Run {
            name,
            unit,
            inits: Vec::new(),
            firsts: Vec::new(),
            latencies: Vec::new(),
            own: Vec::new(),
            aws_requests: 0,
            cpu: Duration::ZERO,
            rss_kib: 0,
        }
    }

    fn take_warm(&mut self, samples: Vec<Sample>, cpu: Duration, rss_kib: u64) {
        for sample in samples {
            self.latencies.push(sample.latency);
            self.own
                .push(sample.latency.saturating_sub(sample.aws.busy));
            self.aws_requests += sample.aws.requests;
        }
        self.cpu = cpu;
        self.rss_kib = rss_kib;
    }
}

fn render(runs: &[Run], queued: usize, delivered: usize, failed: usize) -> String {
    let mut text = String::from(
        "## Outbound webhooks on AWS (fan-out and deliver functions)\n\n\
         The release bootstraps under the Runtime API emulator against moto (DynamoDB and SQS \
         through the timing proxy), with 10 subscriptions that all match and a loopback \
         receiver answering 200. **fan-out**: one stream batch of 100 new events per \
         invocation, so 1,000 deliveries created (conditional puts) and queued (SQS batches of \
         10). **deliver**: one batch of 10 messages received from moto's queue per invocation, \
         each delivery rendered, signed, sent and recorded. *Own* excludes the time requests \
         spent in the proxy and moto (0 when requests overlap, as the fan-out's concurrent creates \
         do: their summed time exceeds the invocation's); *CPU* is the process's CPU time (every thread, from \
         `schedstat`) over the warm invocations, per invocation.\n\n\
         | function (per invocation) | init | first invocation | warm p50 | warm p99 | own p50 | AWS requests | CPU | peak RSS |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for run in runs {
        let n = run.latencies.len().max(1) as f64;
        let _ = writeln!(
            text,
            "| {} ({}) | {:.2} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.2} ms | {:.0} | {:.1} ms | {:.1} MB |",
            run.name,
            run.unit,
            ms(median(&run.inits)),
            ms(median(&run.firsts)),
            ms(median(&run.latencies)),
            ms(percentile(&run.latencies, 99.0)),
            ms(median(&run.own)),
            run.aws_requests as f64 / n,
            run.cpu.as_secs_f64() * 1e3 / n,
            run.rss_kib as f64 * 1.024e-3,
        );
    }
    let _ = writeln!(
        text,
        "\nMedians of {} cold starts (init, first invocation) and {} warm invocations. \
         The fan-out left {queued} messages queued; the receiver got {delivered} deliveries, \
         every one answered 200; the cold processes reported {failed} item(s) failed (for SQS \
         to hand out again), the warm one none.\n",
        runs[0].inits.len(),
        runs[0].latencies.len(),
    );
    text
}
