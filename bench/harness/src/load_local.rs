//! `bench-load`: sustained load with zero loss on the local server (issue 18 §3).
//!
//! It starts the release `callback-hub serve` on a fresh SQLite file with `events/local.env`,
//! a loopback webhook receiver subscribed twice (every event; stack, MNS and Tsuru events only)
//! that answers 500 to the first attempt of a share of the deliveries, and sends an open-loop
//! fixed rate of requests mixing every sender: new events, exact duplicates (some at the same
//! moment as their original), tampered requests, oversize bodies and read requests. At the
//! end, from the database: every event answered 2xx is stored exactly once, nothing tampered or
//! oversize is stored, nothing is stored that no request explains; and every (stored event,
//! matching subscription) pair reached the receiver with a valid signature. Then the same on a
//! fresh file with a SIGKILL of the server at a seeded random moment and a restart on the same
//! file: every event acknowledged before the kill is still there.
//!
//! Fails (exit 1) on a loss, a second item, a stored or acknowledged tampered or oversize
//! request, an unexplained item, a missing or badly signed delivery; never on a timing. Writes a
//! Markdown section (`--out`).

#[path = "load/check.rs"]
mod check;
#[path = "http_server.rs"]
mod http_server;
#[path = "load/requests.rs"]
mod requests;
#[path = "load/server.rs"]
mod server;
#[path = "signed.rs"]
mod signed;
#[path = "stats.rs"]
#[allow(dead_code)] // `median` is used by the other binaries
mod stats;

use base64::Engine;
use bytes::Bytes;
use check::{Ledger, Row, Verdict};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use requests::Sender;
use serde_json::{json, Value};
use server::Server;
use sha2::Sha256;
use stats::{ms, percentile};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A client gives up on an answer after this: past the server's 30 s request timeout.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(40);
/// The stated RSS bound: the end of the main phase within this much of its start.
const RSS_BOUND_MB: f64 = 64.0;
/// Event numbers of the kill phase start here, so no marker is shared between phases.
const KILL_PHASE_FIRST: u64 = 100_000_000;

struct Options {
    binary: PathBuf,
    env_file: PathBuf,
    rate: u64,
    seconds: u64,
    kill_seconds: u64,
    seed: u64,
    fail_percent: u64,
    delivery_wait: u64,
    out: Option<PathBuf>,
}

impl Options {
    fn parse() -> Result<Options, String> {
        let mut options = Options {
            binary: PathBuf::from("target/release/callback-hub"),
            env_file: PathBuf::from("events/local.env"),
            rate: 150,
            seconds: 300,
            kill_seconds: 60,
            seed: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1),
            fail_percent: 25,
            delivery_wait: 180,
            out: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            let number = |text: String| {
                text.parse::<u64>()
                    .map_err(|_| format!("{flag}: not a number: {text}"))
            };
            match flag.as_str() {
                "--callback-hub" => options.binary = value()?.into(),
                "--env-file" => options.env_file = value()?.into(),
                "--rate" => options.rate = number(value()?)?.max(1),
                "--seconds" => options.seconds = number(value()?)?,
                "--kill-seconds" => options.kill_seconds = number(value()?)?,
                "--seed" => options.seed = number(value()?)?,
                "--fail-percent" => options.fail_percent = number(value()?)?.min(100),
                "--delivery-wait" => options.delivery_wait = number(value()?)?.max(1),
                "--out" => options.out = Some(value()?.into()),
                other => return Err(format!("unknown option {other}")),
            }
        }
        if options.seconds == 0 && options.kill_seconds == 0 {
            return Err("nothing to run: --seconds and --kill-seconds are both 0".into());
        }
        Ok(options)
    }

    fn command(&self) -> String {
        format!(
            "bench-load --rate {} --seconds {} --kill-seconds {} --fail-percent {} --seed {}",
            self.rate, self.seconds, self.kill_seconds, self.fail_percent, self.seed
        )
    }
}

/// SplitMix64: a seeded, reproducible sequence (the mix, the kill moment).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn mix(seed: u64, text: &str) -> u64 {
    let mut rng = Rng(seed);
    text.bytes().fold(rng.next(), |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Class {
    New,
    /// Sent at the same moment as its original.
    DuplicateConcurrent,
    /// An earlier event's request sent again.
    DuplicateLater,
    Tampered,
    Oversize,
    Read,
}

impl Class {
    const ALL: [Class; 6] = [
        Class::New,
        Class::DuplicateConcurrent,
        Class::DuplicateLater,
        Class::Tampered,
        Class::Oversize,
        Class::Read,
    ];

    fn name(self) -> &'static str {
        match self {
            Class::New => "new event",
            Class::DuplicateConcurrent => "exact duplicate, concurrent with the original",
            Class::DuplicateLater => "exact duplicate, later",
            Class::Tampered => "tampered (token, signature or signed body)",
            Class::Oversize => "oversize body (limit + 1 KiB)",
            Class::Read => "read (`GET /events`, `/events/stats`, `/stacks/{stack}`)",
        }
    }

    /// The slot's class: about 50% new, 12% later duplicates, 8% new with a concurrent
    /// duplicate, 12% tampered, 3% oversize, 15% reads.
    fn draw(rng: &mut Rng) -> Class {
        match rng.below(100) {
            0..50 => Class::New,
            50..62 => Class::DuplicateLater,
            62..70 => Class::DuplicateConcurrent,
            70..82 => Class::Tampered,
            82..85 => Class::Oversize,
            _ => Class::Read,
        }
    }
}

/// One request and its answer.
#[derive(Debug, Clone)]
struct Outcome {
    class: Class,
    event: Option<(Sender, u64)>,
    route: &'static str,
    /// `None`: no answer (refused, reset, timed out).
    status: Option<u16>,
    latency: Duration,
    answered_at: Instant,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// What the receiver saw.
#[derive(Default)]
struct Received {
    /// `(phase, subscription, source, event id)` answered 2xx with a valid signature.
    delivered: HashSet<(u8, u8, String, String)>,
    /// Pairs answered 500 once on purpose.
    failed_once: HashSet<(u8, u8, String, String)>,
    attempts: u64,
    bad_signatures: u64,
    last_delivery: Option<Instant>,
}

/// Subscription secrets by `(phase, subscription)`.
type Secrets = HashMap<(u8, u8), Vec<u8>>;

/// The subscriptions of each phase: index, filter, whether a source matches.
const SUBSCRIPTIONS: [(&str, &[&str]); 2] = [
    ("every event", &[]),
    ("stack, mns, tsuru", &["stack", "mns", "tsuru"]),
];

fn subscription_matches(subscription: usize, source: &str) -> bool {
    let sources = SUBSCRIPTIONS[subscription].1;
    sources.is_empty() || sources.contains(&source)
}

struct Receiver {
    address: std::net::SocketAddr,
    received: Arc<Mutex<Received>>,
    secrets: Arc<Mutex<Secrets>>,
    _task: tokio::task::JoinHandle<()>,
}

async fn start_receiver(seed: u64, fail_percent: u64) -> Result<Receiver, String> {
    let received: Arc<Mutex<Received>> = Arc::default();
    let secrets: Arc<Mutex<Secrets>> = Arc::default();
    let (address, task) = {
        let received = received.clone();
        let secrets = secrets.clone();
        http_server::spawn(move |request| {
            let received = received.clone();
            let secrets = secrets.clone();
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
                // `/hook/{phase}/{subscription}`
                let mut segments = parts.uri.path().trim_start_matches("/hook/").split('/');
                let phase = segments.next().and_then(|s| s.parse::<u8>().ok());
                let subscription = segments.next().and_then(|s| s.parse::<u8>().ok());
                let (Some(phase), Some(subscription)) = (phase, subscription) else {
                    return http_server::response(404, "no such hook");
                };
                let key = secrets.lock().unwrap().get(&(phase, subscription)).cloned();
                let valid = key.is_some_and(|key| {
                    verifies(
                        &key,
                        &header("webhook-id"),
                        &header("webhook-timestamp"),
                        &body,
                        &header("webhook-signature"),
                    )
                });
                let view: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let pair = (
                    phase,
                    subscription,
                    view["Source"].as_str().unwrap_or_default().to_owned(),
                    view["ID"].as_str().unwrap_or_default().to_owned(),
                );
                let mut received = received.lock().unwrap();
                received.attempts += 1;
                if !valid {
                    received.bad_signatures += 1;
                    return http_server::response(400, "bad signature");
                }
                let text = format!("{}/{}/{}/{}", pair.0, pair.1, pair.2, pair.3);
                let chosen = mix(seed, &text) % 100 < fail_percent;
                if chosen && received.failed_once.insert(pair.clone()) {
                    return http_server::response(500, "failing on purpose");
                }
                received.delivered.insert(pair);
                received.last_delivery = Some(Instant::now());
                http_server::response(200, "ok")
            }
        })
        .await
        .map_err(|e| format!("receiver: {e}"))?
    };
    Ok(Receiver {
        address,
        received,
        secrets,
        _task: task,
    })
}

/// Standard Webhooks: `v1,` + base64 HMAC-SHA256 of `id.timestamp.body` with the decoded
/// secret, written from the specification rather than imported from the sender.
fn verifies(key: &[u8], id: &str, timestamp: &str, body: &[u8], signatures: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    signatures
        .split(' ')
        .any(|s| s.strip_prefix("v1,") == Some(expected.as_str()))
}

async fn call(
    client: &HttpClient,
    request: hyper::Request<Full<Bytes>>,
) -> Result<(u16, Bytes), String> {
    let exchange = async {
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(CLIENT_TIMEOUT, exchange)
        .await
        .map_err(|_| "timed out".to_owned())?
}

async fn subscribe(
    client: &HttpClient,
    base: &str,
    receiver: &Receiver,
    phase: u8,
) -> Result<(), String> {
    for (index, (name, sources)) in SUBSCRIPTIONS.iter().enumerate() {
        let body = json!({
            "name": format!("load-{phase}-{index}"),
            "url": format!("http://{}/hook/{phase}/{index}", receiver.address),
            "event_filter": {"sources": sources},
        });
        let request = hyper::Request::post(format!("{base}/webhooks"))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", requests::api_token()))
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?;
        let (status, answer) = call(client, request).await?;
        let answer: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
        if status != 200 && status != 201 {
            return Err(format!("subscribing {name}: {status} {answer}"));
        }
        let secret = answer["secret"]
            .as_str()
            .ok_or("no secret in the created subscription")?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(secret.trim_start_matches("whsec_"))
            .map_err(|e| format!("secret: {e}"))?;
        receiver
            .secrets
            .lock()
            .unwrap()
            .insert((phase, index as u8), key);
    }
    Ok(())
}

/// When the kill phase killed and restarted the server.
struct Kill {
    at: Instant,
    after: Duration,
    restarted_in: Duration,
}

struct Phase {
    outcomes: Vec<Outcome>,
    elapsed: Duration,
    kill: Option<Kill>,
}

/// Sends `rate` slots per second for `seconds`, open loop (a slow answer never delays the next
/// request); with `kill_after`, SIGKILLs the server at that moment and starts it again on the
/// same file while the load goes on.
/// What one phase sends.
#[derive(Clone, Copy)]
struct Plan {
    rate: u64,
    seconds: u64,
    /// The first event number.
    first: u64,
    kill_after: Option<Duration>,
    max_body: usize,
}

async fn load(
    client: &HttpClient,
    server: Server,
    plan: &Plan,
    rng: &mut Rng,
) -> Result<(Phase, Server), String> {
    let Plan {
        rate,
        seconds,
        first,
        kill_after,
        max_body,
    } = *plan;
    let base = Arc::new(server.base());
    let mut current = Some(server);
    let mut tasks = tokio::task::JoinSet::new();
    let mut outcomes = Vec::new();
    let mut sent: Vec<(Sender, u64)> = Vec::new();
    let mut stacks: Vec<u64> = Vec::new();
    let mut next = first;
    let slots = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let mut kill = None;
    let mut restart: Option<tokio::task::JoinHandle<(Server, Result<Duration, String>)>> = None;
    let spawn = |tasks: &mut tokio::task::JoinSet<Outcome>,
                 class: Class,
                 event: Option<(Sender, u64)>,
                 route: &'static str,
                 request: Result<hyper::Request<Full<Bytes>>, String>| {
        let client = client.clone();
        tasks.spawn(async move {
            let started = Instant::now();
            let status = match request {
                Ok(request) => call(&client, request).await.ok().map(|(s, _)| s),
                Err(_) => None,
            };
            Outcome {
                class,
                event,
                route,
                status,
                latency: started.elapsed(),
                answered_at: Instant::now(),
            }
        });
    };
    for slot in 0..slots {
        tokio::time::sleep_until(start + interval * slot as u32).await;
        while let Some(done) = tasks.try_join_next() {
            outcomes.push(done.map_err(|e| e.to_string())?);
        }
        if let Some(after) = kill_after {
            if kill.is_none() && start.elapsed() >= after {
                let at = Instant::now();
                let mut restarted = current.take().ok_or("no server to kill")?;
                restarted.kill9().await?;
                eprintln!(
                    "bench-load: SIGKILL at {:.1} s",
                    start.elapsed().as_secs_f64()
                );
                restart = Some(tokio::spawn(async move {
                    let result = restarted.start().await;
                    (restarted, result)
                }));
                kill = Some(Kill {
                    at,
                    after: start.elapsed(),
                    restarted_in: Duration::ZERO,
                });
            }
        }
        let class = Class::draw(rng);
        let sender = Sender::ALL[rng.below(Sender::ALL.len() as u64) as usize];
        match class {
            Class::New | Class::DuplicateConcurrent => {
                let n = next;
                next += 1;
                let event = requests::event_request(sender, n);
                let copies = if class == Class::New { 1 } else { 2 };
                for copy in 0..copies {
                    let class = if copy == 0 { Class::New } else { class };
                    let request = requests::http_request(&event, &base, None);
                    spawn(
                        &mut tasks,
                        class,
                        Some((sender, n)),
                        sender.route(),
                        request,
                    );
                }
                sent.push((sender, n));
                if sender == Sender::Ros {
                    stacks.push(n);
                }
            }
            Class::DuplicateLater if !sent.is_empty() => {
                let (sender, n) = sent[rng.below(sent.len() as u64) as usize];
                let request =
                    requests::http_request(&requests::event_request(sender, n), &base, None);
                spawn(
                    &mut tasks,
                    class,
                    Some((sender, n)),
                    sender.route(),
                    request,
                );
            }
            Class::Tampered => {
                let n = next;
                next += 1;
                let (event, _) = requests::tampered_request(sender, n, rng.next());
                let request = requests::http_request(&event, &base, None);
                spawn(
                    &mut tasks,
                    class,
                    Some((sender, n)),
                    sender.route(),
                    request,
                );
            }
            Class::Oversize => {
                let n = next;
                next += 1;
                let event = requests::event_request(sender, n);
                let request = requests::http_request(&event, &base, Some(max_body + 1024));
                spawn(
                    &mut tasks,
                    class,
                    Some((sender, n)),
                    sender.route(),
                    request,
                );
            }
            Class::Read | Class::DuplicateLater => {
                let stack = match stacks.len() {
                    0 => "orders-api".to_owned(),
                    len => requests::marker(stacks[rng.below(len as u64) as usize]),
                };
                let (route, path) = requests::read_request(rng.next(), &stack);
                let request = hyper::Request::get(format!("{base}{path}"))
                    .header("authorization", format!("Bearer {}", requests::api_token()))
                    .body(Full::new(Bytes::new()))
                    .map_err(|e| e.to_string());
                spawn(&mut tasks, Class::Read, None, route, request);
            }
        }
    }
    let elapsed = start.elapsed();
    if let Some(restart) = restart {
        let (restarted, result) = restart.await.map_err(|e| e.to_string())?;
        current = Some(restarted);
        let restarted_in = result?;
        if let Some(kill) = kill.as_mut() {
            kill.restarted_in = restarted_in;
        }
    }
    while let Some(done) = tasks.join_next().await {
        outcomes.push(done.map_err(|e| e.to_string())?);
    }
    let server = current.ok_or("no server after the phase")?;
    Ok((
        Phase {
            outcomes,
            elapsed,
            kill,
        },
        server,
    ))
}

fn ledger_of(outcomes: &[Outcome]) -> Ledger {
    let mut ledger = Ledger::default();
    for outcome in outcomes {
        let Some((sender, n)) = outcome.event else {
            continue;
        };
        match outcome.class {
            Class::Tampered | Class::Oversize => {
                ledger.forbidden.insert(n, sender);
            }
            Class::New | Class::DuplicateConcurrent | Class::DuplicateLater => {
                ledger.valid.insert(n, sender);
                if outcome.ok() {
                    ledger.acked.insert(n);
                }
            }
            Class::Read => {}
        }
    }
    ledger
}

/// Tampered or oversize requests answered 2xx: refused is the only right answer.
fn accepted_forbidden(outcomes: &[Outcome]) -> usize {
    outcomes
        .iter()
        .filter(|o| matches!(o.class, Class::Tampered | Class::Oversize) && o.ok())
        .count()
}

/// Every `(phase, subscription, source, event id)` the stored events call for.
fn expected_pairs(phase: u8, rows: &[Row]) -> BTreeSet<(u8, u8, String, String)> {
    let mut pairs = BTreeSet::new();
    for row in rows {
        for subscription in 0..SUBSCRIPTIONS.len() {
            if subscription_matches(subscription, &row.source) {
                pairs.insert((
                    phase,
                    subscription as u8,
                    row.source.clone(),
                    row.event_id.clone(),
                ));
            }
        }
    }
    pairs
}

struct Deliveries {
    expected: usize,
    missing: usize,
    waited: Duration,
}

/// Waits (at most `limit`) until every expected pair was delivered.
async fn wait_deliveries(
    receiver: &Receiver,
    expected: &BTreeSet<(u8, u8, String, String)>,
    limit: Duration,
) -> Deliveries {
    let started = Instant::now();
    loop {
        let missing = {
            let received = receiver.received.lock().unwrap();
            expected
                .iter()
                .filter(|pair| !received.delivered.contains(*pair))
                .count()
        };
        if missing == 0 || started.elapsed() > limit {
            return Deliveries {
                expected: expected.len(),
                missing,
                waited: started.elapsed(),
            };
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::main]
async fn main() {
    let options = match Options::parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("bench-load: {message}");
            std::process::exit(2);
        }
    };
    eprintln!("bench-load: seed {}", options.seed);
    match run(&options).await {
        Ok((text, violations)) => {
            println!("{text}");
            if let Some(out) = &options.out {
                if let Err(e) = std::fs::write(out, &text) {
                    eprintln!("bench-load: {}: {e}", out.display());
                    std::process::exit(1);
                }
            }
            if !violations.is_empty() {
                for violation in &violations {
                    eprintln!("bench-load: FAILED: {violation}");
                }
                std::process::exit(1);
            }
        }
        Err(message) => {
            eprintln!("bench-load: {message}");
            std::process::exit(1);
        }
    }
}

/// The report and the failed properties.
async fn run(options: &Options) -> Result<(String, Vec<String>), String> {
    let scratch =
        std::env::temp_dir().join(format!("callback-hub-bench-load-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    let max_body = hub_core::config::EdgeConfig::DEFAULT_MAX_BODY_BYTES;
    let receiver = start_receiver(options.seed, options.fail_percent).await?;
    let client: HttpClient = Client::builder(TokioExecutor::new())
        // Below the server's 10 s keep-alive limit, so that the pool rarely sends on a
        // connection the server is closing.
        .pool_idle_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(256)
        .build_http();
    let mut rng = Rng(options.seed);
    let mut violations = Vec::new();
    let mut text = String::new();
    let _ = write!(
        text,
        "## Sustained load\n\n\
         `bench-load` (`bench/harness/src/load_local.rs`), run by `bash scripts/reliability.sh` as \
         `{command}`. How it was measured: the release `callback-hub serve` on a fresh SQLite file \
         with `events/local.env`, on this machine (shared with other work), and a load generator \
         in another process sending an open-loop fixed rate (a slow answer never delays the next \
         request) over HTTP/1.1 keep-alive connections. Each slot picks one of the seven request \
         formats (ROS and CloudFormation-through-SNS to `/stacks`, S3-through-SNS and VK to \
         `/s3`, DingTalk, MNS, Tsuru), signed as the fixtures sign them, and a class: new event \
         (50%), new event with an exact duplicate sent at the same moment (8%), exact duplicate \
         of an earlier event (12%), tampered (12%: a changed character in the token or \
         signature, or in the signed body of DingTalk, SNS and MNS), oversize (3%: a valid request \
         padded with trailing whitespace past the {limit} byte limit), read with the API token \
         (15%). Each event carries a marker in a stored field, so the check reads the \
         `events` table alone (read-only) and needs no knowledge of how each handler derives its \
         ids. Two webhook subscriptions (every event; stack, MNS and Tsuru events) point at a \
         loopback receiver that checks every Standard Webhooks signature and answers 500 to the \
         first attempt of {fail}% of the (event, subscription) pairs (chosen by a hash of the pair \
         and the seed). The run fails on a loss (an event answered 2xx and not stored), a second \
         item, a tampered or oversize request answered 2xx or stored, a stored item that no \
         request explains, or a pair not delivered with a valid signature within {wait} s; never \
         on a timing. Latency is from the generator's send to the end of the answer; RSS is read \
         from `/proc`.\n\n",
        command = options.command(),
        limit = max_body,
        fail = options.fail_percent,
        wait = options.delivery_wait,
    );
    if options.fail_percent > 0 {
        let _ = writeln!(
            text,
            "The worker retries a failed delivery after 5 s, then 5 min (±20%, \
             `functions/webhooks/src/schedule.rs`, no setting shortens it): the receiver fails \
             only the first attempt of a pair, so every pair is delivered by its second attempt, \
             about 5 s later, within the bounded wait.\n"
        );
    }

    if options.seconds > 0 {
        eprintln!(
            "bench-load: main phase, {} s at {}/s",
            options.seconds, options.rate
        );
        let mut server = Server::new(&options.binary, &options.env_file, &scratch, "main")?;
        server.start().await?;
        subscribe(&client, &server.base(), &receiver, 0).await?;
        let pid = server.pid().ok_or("the server exited")?;
        let (rss_start, _) = server::rss_kib(pid)?;
        let plan = Plan {
            rate: options.rate,
            seconds: options.seconds,
            first: 0,
            kill_after: None,
            max_body,
        };
        let (phase, mut server) = load(&client, server, &plan, &mut rng).await?;
        let rows = check::read_rows(&server.db)?;
        let ledger = ledger_of(&phase.outcomes);
        let verdict = Verdict::of(&ledger, &rows);
        let pairs = expected_pairs(0, &rows);
        eprintln!("bench-load: waiting for {} deliveries", pairs.len());
        let deliveries = wait_deliveries(
            &receiver,
            &pairs,
            Duration::from_secs(options.delivery_wait),
        )
        .await;
        let pid = server.pid().ok_or("the server exited")?;
        let (rss_end, rss_peak) = server::rss_kib(pid)?;
        let accepted = accepted_forbidden(&phase.outcomes);
        collect_violations(
            &mut violations,
            "main phase",
            &verdict,
            accepted,
            &deliveries,
        );
        report_main(
            &mut text,
            options,
            &phase,
            &verdict,
            accepted,
            &deliveries,
            (rss_start, rss_end, rss_peak),
        );
        server.kill9().await?;
    }

    if options.kill_seconds > 0 {
        let after = Duration::from_millis(
            options.kill_seconds * 200 + rng.below(options.kill_seconds * 600 + 1),
        );
        eprintln!(
            "bench-load: kill phase, {} s at {}/s, SIGKILL after {:.1} s (seed {})",
            options.kill_seconds,
            options.rate,
            after.as_secs_f64(),
            options.seed
        );
        let mut server = Server::new(&options.binary, &options.env_file, &scratch, "kill")?;
        server.start().await?;
        subscribe(&client, &server.base(), &receiver, 1).await?;
        let plan = Plan {
            rate: options.rate,
            seconds: options.kill_seconds,
            first: KILL_PHASE_FIRST,
            kill_after: Some(after),
            max_body,
        };
        let (phase, mut server) = load(&client, server, &plan, &mut rng).await?;
        let kill = phase.kill.as_ref().ok_or("the server was not killed")?;
        let rows = check::read_rows(&server.db)?;
        let ledger = ledger_of(&phase.outcomes);
        let verdict = Verdict::of(&ledger, &rows);
        let stored: HashSet<u64> = rows
            .iter()
            .flat_map(|row| requests::markers_in(&row.payload))
            .collect();
        let before: HashSet<u64> = phase
            .outcomes
            .iter()
            .filter(|o| o.ok() && o.answered_at < kill.at)
            .filter_map(|o| match o.class {
                Class::New | Class::DuplicateConcurrent | Class::DuplicateLater => {
                    o.event.map(|(_, n)| n)
                }
                _ => None,
            })
            .collect();
        let present = before.iter().filter(|n| stored.contains(n)).count();
        let unanswered = phase.outcomes.iter().filter(|o| o.status.is_none()).count();
        let pairs = expected_pairs(1, &rows);
        eprintln!("bench-load: waiting for {} deliveries", pairs.len());
        let deliveries = wait_deliveries(
            &receiver,
            &pairs,
            Duration::from_secs(options.delivery_wait),
        )
        .await;
        let accepted = accepted_forbidden(&phase.outcomes);
        collect_violations(
            &mut violations,
            "kill phase",
            &verdict,
            accepted,
            &deliveries,
        );
        if present != before.len() {
            violations.push(format!(
                "kill phase: {} of {} events acknowledged before the kill are missing",
                before.len() - present,
                before.len()
            ));
        }
        let _ = write!(
            text,
            "### SIGKILL and restart\n\n\
             {secs} s at {rate} slots/s on a fresh file; SIGKILL after {after:.1} s (seed {seed}), \
             then `serve` again on the same file and port while the load went on (ready in \
             {restart:.2} s).\n\n\
             | measure | value |\n|---|---:|\n\
             | events acknowledged (2xx) before the kill / present after the restart | {before} / **{present}** |\n\
             | events acknowledged in the whole phase / stored exactly once | {acked} / {once} |\n\
             | requests unanswered (in flight at the kill, or sent while it was down) | {unanswered} |\n\
             | valid events stored but never acknowledged (allowed: stored, answer lost) | {unacked} |\n\
             | loss / second items / tampered or oversize accepted or stored / unexplained items | **{lost}** / {dup} / {bad} / {unexplained} |\n\
             | (event, subscription) pairs delivered with a valid signature after the restart | {delivered} of {pairs} (waited {waited:.1} s) |\n\n",
            secs = options.kill_seconds,
            rate = options.rate,
            after = kill.after.as_secs_f64(),
            seed = options.seed,
            restart = kill.restarted_in.as_secs_f64(),
            before = before.len(),
            acked = verdict.acked,
            once = verdict.acked - verdict.lost.len(),
            unacked = verdict.stored_unacked,
            lost = verdict.lost.len(),
            dup = verdict.duplicated.len(),
            bad = accepted + verdict.forbidden_stored.len(),
            unexplained = verdict.unexplained.len(),
            delivered = deliveries.expected - deliveries.missing,
            pairs = deliveries.expected,
            waited = deliveries.waited.as_secs_f64(),
        );
        server.kill9().await?;
    }

    let received = receiver.received.lock().unwrap();
    if received.bad_signatures > 0 {
        violations.push(format!(
            "{} deliveries failed signature verification",
            received.bad_signatures
        ));
    }
    let _ = writeln!(
        text,
        "Receiver: {} delivery attempts, {} answered 500 on purpose, {} with a bad signature.\n\n\
         Result: **{}**.",
        received.attempts,
        received.failed_once.len(),
        received.bad_signatures,
        if violations.is_empty() {
            "every property held".to_owned()
        } else {
            format!("FAILED: {}", violations.join("; "))
        }
    );
    if violations.is_empty() {
        let _ = std::fs::remove_dir_all(&scratch);
    } else {
        eprintln!(
            "bench-load: server logs and databases kept in {}",
            scratch.display()
        );
    }
    Ok((text, violations))
}

fn collect_violations(
    violations: &mut Vec<String>,
    phase: &str,
    verdict: &Verdict,
    accepted: usize,
    deliveries: &Deliveries,
) {
    for violation in verdict.violations() {
        violations.push(format!("{phase}: {violation}"));
    }
    if accepted > 0 {
        violations.push(format!(
            "{phase}: {accepted} tampered or oversize requests answered 2xx"
        ));
    }
    if deliveries.missing > 0 {
        violations.push(format!(
            "{phase}: {} of {} (event, subscription) pairs not delivered within {:.0} s",
            deliveries.missing,
            deliveries.expected,
            deliveries.waited.as_secs_f64()
        ));
    }
}

fn report_main(
    text: &mut String,
    options: &Options,
    phase: &Phase,
    verdict: &Verdict,
    accepted: usize,
    deliveries: &Deliveries,
    (rss_start, rss_end, rss_peak): (u64, u64, u64),
) {
    let outcomes = &phase.outcomes;
    let answered = outcomes.iter().filter(|o| o.status.is_some()).count();
    let seconds = phase.elapsed.as_secs_f64();
    let mb = |kib: u64| kib as f64 * 1.024e-3;
    let growth = mb(rss_end) - mb(rss_start);
    let _ = write!(
        text,
        "### {secs} s at a fixed rate\n\n\
         | measure | value |\n|---|---:|\n\
         | requests sent / answered | {sent} / {answered} in {seconds:.1} s: **{rps:.1} requests/s** |\n\
         | events acknowledged (2xx) / stored exactly once / items in the table | {acked} / {once} / {rows} |\n\
         | **loss** (acknowledged, not stored) | **{lost}** |\n\
         | second items / tampered or oversize accepted or stored / unexplained items | {dup} / {bad} / {unexplained} |\n\
         | valid events stored but never acknowledged (allowed) | {unacked} |\n\
         | (event, subscription) pairs delivered with a valid signature | {delivered} of {pairs} (all within {waited:.1} s of the end of the load) |\n\
         | server RSS at start / end / peak | {rss0:.1} / {rss1:.1} / {rssp:.1} MB |\n\
         | RSS growth, bound end ≤ start + {bound:.0} MB | {growth:+.1} MB, {within} |\n\n",
        secs = options.seconds,
        sent = outcomes.len(),
        rps = answered as f64 / seconds,
        acked = verdict.acked,
        once = verdict.acked - verdict.lost.len(),
        rows = verdict.rows,
        lost = verdict.lost.len(),
        dup = verdict.duplicated.len(),
        bad = accepted + verdict.forbidden_stored.len(),
        unexplained = verdict.unexplained.len(),
        unacked = verdict.stored_unacked,
        delivered = deliveries.expected - deliveries.missing,
        pairs = deliveries.expected,
        waited = deliveries.waited.as_secs_f64(),
        rss0 = mb(rss_start),
        rss1 = mb(rss_end),
        rssp = mb(rss_peak),
        bound = RSS_BOUND_MB,
        within = if growth <= RSS_BOUND_MB {
            "within the bound"
        } else {
            "OVER the bound (a measurement: it does not fail the run)"
        },
    );

    // Latency per route.
    let mut routes: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    for outcome in outcomes.iter().filter(|o| o.status.is_some()) {
        routes
            .entry(outcome.route)
            .or_default()
            .push(outcome.latency);
    }
    let _ = write!(
        text,
        "Latency per route (answered requests, every class):\n\n\
         | route | requests | p50 | p99 | max |\n|---|---:|---:|---:|---:|\n"
    );
    for (route, latencies) in &routes {
        let _ = writeln!(
            text,
            "| `{route}` | {} | {:.1} ms | {:.1} ms | {:.1} ms |",
            latencies.len(),
            ms(percentile(latencies, 50.0)),
            ms(percentile(latencies, 99.0)),
            ms(percentile(latencies, 100.0)),
        );
    }

    // Status counts per class.
    let mut statuses: BTreeSet<Option<u16>> = BTreeSet::new();
    let mut counts: HashMap<(Class, Option<u16>), usize> = HashMap::new();
    for outcome in outcomes {
        statuses.insert(outcome.status);
        *counts.entry((outcome.class, outcome.status)).or_default() += 1;
    }
    let label = |s: &Option<u16>| s.map_or("no answer".to_owned(), |s| s.to_string());
    let _ = write!(
        text,
        "\nAnswers by class (a duplicate is answered 2xx, as its original):\n\n| class | {} |\n|---|{}\n",
        statuses.iter().map(label).collect::<Vec<_>>().join(" | "),
        "---:|".repeat(statuses.len()),
    );
    for class in Class::ALL {
        let row: Vec<String> = statuses
            .iter()
            .map(|s| counts.get(&(class, *s)).copied().unwrap_or(0).to_string())
            .collect();
        let _ = writeln!(text, "| {} | {} |", class.name(), row.join(" | "));
    }
    let mut per_sender: BTreeMap<Sender, (usize, usize)> = BTreeMap::new();
    for outcome in outcomes.iter().filter(|o| o.class == Class::New) {
        if let Some((sender, _)) = outcome.event {
            let entry = per_sender.entry(sender).or_default();
            entry.0 += 1;
            if outcome.ok() {
                entry.1 += 1;
            }
        }
    }
    let _ = writeln!(
        text,
        "\nNew events per sender (sent / answered 2xx): {}.\n",
        per_sender
            .iter()
            .map(|(sender, (sent, ok))| format!("{} {sent} / {ok}", sender.name()))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn the_receiver_refuses_a_signature_of_another_body_or_key() {
        let signature = sign(b"key", "msg_1", "1700000000", b"{}");
        assert!(verifies(b"key", "msg_1", "1700000000", b"{}", &signature));
        assert!(verifies(
            b"key",
            "msg_1",
            "1700000000",
            b"{}",
            &format!("v1,AAAA {signature}")
        ));
        assert!(!verifies(b"key", "msg_1", "1700000000", b"{ }", &signature));
        assert!(!verifies(
            b"other",
            "msg_1",
            "1700000000",
            b"{}",
            &signature
        ));
        assert!(!verifies(b"key", "msg_2", "1700000000", b"{}", &signature));
    }

    #[test]
    fn every_stored_event_is_owed_to_each_matching_subscription() {
        let row = |source: &str| Row {
            source: source.into(),
            event_id: format!("{source}-1"),
            payload: String::new(),
        };
        let pairs = expected_pairs(1, &[row("s3"), row("tsuru"), row("dingtalk")]);
        let owed: Vec<(u8, &str)> = pairs.iter().map(|p| (p.1, p.2.as_str())).collect();
        assert_eq!(
            owed,
            vec![(0, "dingtalk"), (0, "s3"), (0, "tsuru"), (1, "tsuru")]
        );
        assert!(pairs.iter().all(|p| p.0 == 1));
    }

    #[test]
    fn an_acknowledged_tampered_request_counts_and_only_a_2xx_acknowledges() {
        let outcome = |class, n, status| Outcome {
            class,
            event: Some((Sender::Tsuru, n)),
            route: "POST /tsuru",
            status,
            latency: Duration::ZERO,
            answered_at: Instant::now(),
        };
        let outcomes = [
            outcome(Class::New, 1, Some(200)),
            outcome(Class::New, 2, Some(503)),
            outcome(Class::DuplicateLater, 3, None),
            outcome(Class::Tampered, 4, Some(403)),
            outcome(Class::Oversize, 5, Some(200)),
        ];
        assert_eq!(accepted_forbidden(&outcomes), 1);
        let ledger = ledger_of(&outcomes);
        assert_eq!(ledger.acked, HashSet::from([1]));
        assert_eq!(ledger.valid.len(), 3);
        assert_eq!(ledger.forbidden.len(), 2);
    }
}
