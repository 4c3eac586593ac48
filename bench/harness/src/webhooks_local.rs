//! `bench-webhooks`: outbound webhooks on the local server, measured end to end.
//!
//! It starts `callback-hub serve` (the release binary) on a fresh SQLite file, a loopback
//! receiver that answers 200 and notes when each `webhook-id` first arrives, and subscribes the
//! receiver to Tsuru events. Then two phases, each with new events:
//!
//! - **throughput**: `--events` Tsuru events sent as fast as the server accepts them
//!   (`--concurrency` requests in flight); deliveries per second is the number delivered over
//!   the time from the first request to the last first delivery.
//! - **delay**: `--rate` events per second for `--seconds`, open loop; the delay of an event is
//!   from the start of its request to the first delivery attempt reaching the receiver.
//!
//! Every event must be delivered once per subscription, every delivery must carry a signature
//! that verifies with the subscription's secret: anything else fails the run. It prints a
//! Markdown section for BENCHMARKS.md (`--out` writes it to a file too).

#[path = "http_server.rs"]
mod http_server;
#[path = "stats.rs"]
#[allow(dead_code)] // `median` is used by the other binary
mod stats;

use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hub_tests::fixtures::{tsuru_deploy_event, TsuruEventSample, TSURU_WEBHOOK_TOKEN};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use sha2::Sha256;
use stats::{ms, percentile};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const API_TOKEN: &str = "bench-api-token-0123456789abcdef";

struct Options {
    binary: PathBuf,
    events: usize,
    concurrency: usize,
    rate: usize,
    seconds: usize,
    subscriptions: usize,
    out: Option<PathBuf>,
}

impl Options {
    fn parse() -> Result<Options, String> {
        let mut options = Options {
            binary: PathBuf::from("target/release/callback-hub"),
            events: 5000,
            concurrency: 32,
            rate: 100,
            seconds: 20,
            subscriptions: 1,
            out: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            let number = |text: String| {
                text.parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{flag}: not a positive number: {text}"))
            };
            match flag.as_str() {
                "--callback-hub" => options.binary = value()?.into(),
                "--events" => options.events = number(value()?)?,
                "--concurrency" => options.concurrency = number(value()?)?,
                "--rate" => options.rate = number(value()?)?,
                "--seconds" => options.seconds = number(value()?)?,
                "--subscriptions" => options.subscriptions = number(value()?)?,
                "--out" => options.out = Some(value()?.into()),
                other => return Err(format!("unknown option {other}")),
            }
        }
        Ok(options)
    }
}

/// What the receiver saw: per `webhook-id`, the first arrival and the event it carried.
#[derive(Default)]
struct Received {
    first: HashMap<String, (Instant, String)>,
    attempts: usize,
    bad_signatures: usize,
}

type Shared = Arc<Mutex<Received>>;

#[tokio::main]
async fn main() {
    let options = match Options::parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("bench-webhooks: {message}");
            std::process::exit(2);
        }
    };
    match run(&options).await {
        Ok(text) => {
            println!("{text}");
            if let Some(out) = &options.out {
                if let Err(e) = std::fs::write(out, &text) {
                    eprintln!("bench-webhooks: {}: {e}", out.display());
                    std::process::exit(1);
                }
            }
        }
        Err(message) => {
            eprintln!("bench-webhooks: {message}");
            std::process::exit(1);
        }
    }
}

async fn run(options: &Options) -> Result<String, String> {
    let scratch = std::env::temp_dir().join(format!(
        "callback-hub-bench-webhooks-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    let received: Shared = Arc::default();
    let secrets: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let (receiver, _receiver_task) = {
        let received = received.clone();
        let secrets = secrets.clone();
        http_server::spawn(move |request| {
            let received = received.clone();
            let secrets = secrets.clone();
            async move {
                let arrived = Instant::now();
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
                let valid = verifies(
                    &secrets.lock().unwrap(),
                    &id,
                    &header("webhook-timestamp"),
                    &body,
                    &header("webhook-signature"),
                );
                let event = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["ID"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                let mut received = received.lock().unwrap();
                received.attempts += 1;
                if !valid {
                    received.bad_signatures += 1;
                }
                received.first.entry(id).or_insert((arrived, event));
                http_server::response(200, "ok")
            }
        })
        .await
        .map_err(|e| format!("receiver: {e}"))?
    };

    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let db = scratch.join("bench.db");
    let log = std::fs::File::create(scratch.join("serve.log")).map_err(|e| e.to_string())?;
    let mut server = tokio::process::Command::new(&options.binary)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--db"])
        .arg(&db)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("API_TOKEN", API_TOKEN)
        .env("TSURU_WEBHOOK_TOKEN", TSURU_WEBHOOK_TOKEN)
        .env("WEBHOOKS_ALLOW_PRIVATE_NETWORKS", "true")
        .env("RUST_LOG", "warn")
        .current_dir(&scratch)
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{}: {e}", options.binary.display()))?;

    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(options.concurrency.max(64))
        .build_http();
    let http = Http { client, base };
    http.wait_ready().await?;
    for i in 0..options.subscriptions {
        let created = http
            .call(
                "POST",
                "/webhooks",
                Some(&json!({
                    "name": format!("bench-{i}"),
                    "url": format!("http://{receiver}/hook/{i}"),
                    "event_filter": {"kind_names": ["app.deploy"]},
                })),
                Some(API_TOKEN),
            )
            .await?;
        if created.0 != 200 {
            return Err(format!(
                "creating a subscription: {} {}",
                created.0, created.1
            ));
        }
        let secret = created.1["secret"]
            .as_str()
            .ok_or("no secret in the created subscription")?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(secret.trim_start_matches("whsec_"))
            .map_err(|e| format!("secret: {e}"))?;
        secrets.lock().unwrap().push(key);
    }
    let rss_start = rss_kib(server.id().ok_or("the server exited")?)?;

    // Throughput: as fast as the server accepts.
    eprintln!(
        "bench-webhooks: throughput phase, {} events",
        options.events
    );
    let started = Instant::now();
    let sent = send_all(&http, 0, options.events, options.concurrency, None).await?;
    let accepted = started.elapsed();
    let expected = options.events * options.subscriptions;
    let last = wait_delivered(&received, expected, Duration::from_secs(120)).await?;
    let throughput_window = last - started;
    let throughput_delays = delays(&received, &sent);
    received.lock().unwrap().first.clear();

    // Delay: a fixed rate, open loop.
    let count = options.rate * options.seconds;
    eprintln!(
        "bench-webhooks: delay phase, {count} events at {}/s",
        options.rate
    );
    let sent = send_all(
        &http,
        options.events,
        count,
        options.concurrency,
        Some(Duration::from_secs_f64(1.0 / options.rate as f64)),
    )
    .await?;
    wait_delivered(
        &received,
        count * options.subscriptions,
        Duration::from_secs(120),
    )
    .await?;
    let rate_delays = delays(&received, &sent);
    let pid = server.id().ok_or("the server exited")?;
    let (rss_end, rss_peak) = (rss_kib(pid)?, peak_rss_kib(pid)?);
    let _ = server.start_kill();
    let _ = server.wait().await;

    let received = received.lock().unwrap();
    if received.bad_signatures > 0 {
        return Err(format!(
            "{} deliveries failed signature verification",
            received.bad_signatures
        ));
    }
    let total_deliveries = expected + count * options.subscriptions;
    let _ = std::fs::remove_dir_all(&scratch);
    let per_second = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    Ok(format!(
        "## Outbound webhooks on the local server\n\n\
         `bench-webhooks` ({command}): `callback-hub serve` (release) on a fresh SQLite file, \
         {subs} subscription(s) to a loopback receiver that answers 200 at once and checks every \
         signature, Tsuru events sent over HTTP by {conc} concurrent clients.\n\n\
         | measure | value |\n|---|---:|\n\
         | throughput phase: events accepted (`POST /tsuru`, 200) | {events} in {acc:.2} s, {acc_rate:.0}/s |\n\
         | throughput phase: deliveries, first request to last first delivery | {expected} in {win:.2} s, **{del_rate:.0}/s** |\n\
         | throughput phase: delay request → first attempt, p50 / p99 | {tp50:.1} / {tp99:.1} ms |\n\
         | fixed rate {rate}/s for {secs} s: delay request → first attempt, p50 / p99 / max | **{p50:.1}** / {p99:.1} / {max:.1} ms |\n\
         | attempts received (every one 200, every signature valid) | {attempts} for {total} deliveries |\n\
         | server RSS: after setup / at the end / peak | {rss0:.1} / {rss1:.1} / {rssp:.1} MB |\n",
        command = "`bash scripts/bench.sh`",
        subs = options.subscriptions,
        conc = options.concurrency,
        events = options.events,
        acc = accepted.as_secs_f64(),
        acc_rate = per_second(options.events, accepted),
        win = throughput_window.as_secs_f64(),
        del_rate = per_second(expected, throughput_window),
        tp50 = ms(percentile(&throughput_delays, 50.0)),
        tp99 = ms(percentile(&throughput_delays, 99.0)),
        rate = options.rate,
        secs = options.seconds,
        p50 = ms(percentile(&rate_delays, 50.0)),
        p99 = ms(percentile(&rate_delays, 99.0)),
        max = ms(percentile(&rate_delays, 100.0)),
        attempts = received.attempts,
        total = total_deliveries,
        rss0 = rss_start as f64 * 1.024e-3,
        rss1 = rss_end as f64 * 1.024e-3,
        rssp = rss_peak as f64 * 1.024e-3,
    ))
}

struct Http {
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    base: String,
}

impl Http {
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> Result<(u16, Value), String> {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        self.send(request.body(Full::new(body)).map_err(|e| e.to_string())?)
            .await
    }

    async fn send(&self, request: hyper::Request<Full<Bytes>>) -> Result<(u16, Value), String> {
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    async fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200 | 204, _)) = self.call("GET", "/webhooks", None, Some(API_TOKEN)).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("the server did not answer GET /webhooks within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn send_event(&self, n: usize) -> Result<(String, Instant), String> {
        let id = format!("{n:024x}");
        let body = TsuruEventSample {
            unique_id: &id,
            ..tsuru_deploy_event()
        }
        .to_json();
        let request = hyper::Request::post(format!("{}/tsuru", self.base))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {TSURU_WEBHOOK_TOKEN}"))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let (status, answer) = self.send(request).await?;
        if status != 200 || answer["status"] != "stored" {
            return Err(format!("POST /tsuru answered {status}: {answer}"));
        }
        Ok((id, started))
    }
}

/// Sends events `first..first + count`, at most `concurrency` at once, every `interval` when
/// given (open loop: a slow answer does not delay the next request). Returns each event's
/// request start.
async fn send_all(
    http: &Http,
    first: usize,
    count: usize,
    concurrency: usize,
    interval: Option<Duration>,
) -> Result<HashMap<String, Instant>, String> {
    let http = Arc::new(Http {
        client: http.client.clone(),
        base: http.base.clone(),
    });
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    let start = tokio::time::Instant::now();
    for i in 0..count {
        if let Some(interval) = interval {
            tokio::time::sleep_until(start + interval * i as u32).await;
        }
        let permit = if interval.is_some() {
            None
        } else {
            Some(
                slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|e| e.to_string())?,
            )
        };
        let http = http.clone();
        tasks.spawn(async move {
            let sent = http.send_event(first + i).await;
            drop(permit);
            sent
        });
    }
    let mut sent = HashMap::with_capacity(count);
    while let Some(result) = tasks.join_next().await {
        let (id, started) = result.map_err(|e| e.to_string())??;
        sent.insert(id, started);
    }
    Ok(sent)
}

/// Waits until `expected` distinct deliveries arrived; returns the time of the last.
async fn wait_delivered(
    received: &Shared,
    expected: usize,
    limit: Duration,
) -> Result<Instant, String> {
    let deadline = Instant::now() + limit;
    loop {
        {
            let received = received.lock().unwrap();
            if received.first.len() >= expected {
                return Ok(received
                    .first
                    .values()
                    .map(|(at, _)| *at)
                    .max()
                    .expect("some"));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "only {} of {expected} deliveries arrived within {limit:?}",
                    received.first.len()
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn delays(received: &Shared, sent: &HashMap<String, Instant>) -> Vec<Duration> {
    let received = received.lock().unwrap();
    received
        .first
        .values()
        .filter_map(|(at, event)| sent.get(event).map(|started| *at - *started))
        .collect()
}

/// Standard Webhooks: `v1,` + base64 HMAC-SHA256 of `id.timestamp.body` with the decoded
/// secret, written here from the specification rather than imported from the sender.
fn verifies(secrets: &[Vec<u8>], id: &str, timestamp: &str, body: &[u8], signatures: &str) -> bool {
    secrets.iter().any(|key| {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        signatures
            .split(' ')
            .any(|s| s.strip_prefix("v1,") == Some(expected.as_str()))
    })
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

fn status_kib(pid: u32, field: &str) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no {field} in /proc status"))
}

fn rss_kib(pid: u32) -> Result<u64, String> {
    status_kib(pid, "VmRSS:")
}

fn peak_rss_kib(pid: u32) -> Result<u64, String> {
    status_kib(pid, "VmHWM:")
}
