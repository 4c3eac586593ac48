//! Side by side with what users would write instead (issue 19): the ROS stack webhook and the
//! DingTalk callback as idiomatic Python Lambda handlers (`bench/python`: boto3, `cryptography`),
//! run by the AWS runtime interface client (`python -m awslambdaric module.handler`) under the
//! same Runtime API emulator, against the same moto behind the same timing proxy, in the same run
//! as the Rust bootstraps, the four processes interleaved so that a noisy moment hits all alike.
//!
//! Every answer is checked (status; for DingTalk, the reply's signature and that it decrypts to
//! `success`, docs/protocols.md §1.5), a tampered request must be refused by both, and the items
//! both write must have the same attributes: a failure fails the run, a timing never does.

use crate::emulator::{Invocation, RuntimeApi};
use crate::proxy::Usage;
use crate::scenarios::{Scenario, FUNCTIONS};
use crate::stats::{median, ms, percentile};
use crate::{stop, Bench, Cold, DEFAULT_MODE, INIT_LIMIT, INVOKE_LIMIT, WARM_UP_INVOCATIONS};
use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::Child;

/// One of the two paths, as measured for both implementations.
struct Compared {
    title: &'static str,
    scenario: &'static Scenario,
    /// The Python module in `bench/python` (handler `<module>.handler`).
    module: &'static str,
    /// The request with its credential spoiled: both must refuse it with 403.
    tamper: fn(Value) -> Value,
    /// What to check in a 200 answer beyond its status; `fresh`: the request is a new event.
    check_reply: fn(&Value, bool) -> Result<(), String>,
}

const PATHS: [Compared; 2] = [
    Compared {
        title: "ROS stack webhook (`POST /stacks` with the token)",
        scenario: &FUNCTIONS[0],
        module: "ros_hook",
        tamper: wrong_token,
        check_reply: ros_reply,
    },
    Compared {
        title: "DingTalk callback (`POST /dingtalk`)",
        scenario: &FUNCTIONS[3],
        module: "dingtalk_callback",
        tamper: wrong_signature,
        check_reply: dingtalk_reply,
    },
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Runtime {
    Rust,
    Python,
}

/// One process kind: a path in one implementation.
struct Contestant<'a> {
    path: &'a Compared,
    runtime: Runtime,
}

impl Contestant<'_> {
    /// The log file's stem, and the name in failures.
    fn log_name(&self) -> String {
        match self.runtime {
            Runtime::Rust => self.path.scenario.binary.to_owned(),
            Runtime::Python => format!("python-{}", self.path.module),
        }
    }

    fn failure(&self, bench: &Bench, message: &str) -> String {
        let log = self.log_name();
        bench.failure_of(&log, &log, message)
    }
}

#[derive(Default)]
struct Samples {
    cold: Vec<Cold>,
    warm: Vec<Duration>,
    own: Vec<Duration>,
    store_requests: u64,
    peak_rss_kib: u64,
    processes: usize,
}

struct Python {
    interpreter: PathBuf,
    dir: PathBuf,
}

fn venv() -> PathBuf {
    let cache = std::env::var_os("HUB_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache/callback-hub"))
        })
        .unwrap_or_else(|| PathBuf::from(".cache/callback-hub"));
    cache.join("venv-python-bench")
}

/// Measures both paths in both implementations; returns the BENCHMARKS.md section.
pub async fn measure(bench: &mut Bench) -> Result<String, String> {
    let venv = venv();
    let python = Python {
        interpreter: venv.join("bin/python"),
        dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../python"),
    };
    let mut text = String::from("## Side by side: Python (boto3 + awslambdaric)\n\n");
    if !python.interpreter.is_file() {
        eprintln!(
            "bench: skipping the Python comparison: {} is missing (scripts/bench.sh builds it)",
            python.interpreter.display()
        );
        let _ = writeln!(
            text,
            "Not measured: the venv {} is missing. `bash scripts/bench.sh` builds it, or by \
             hand: `python3 -m venv {0} && {0}/bin/pip install -r bench/python/requirements.txt`.",
            venv.display()
        );
        return Ok(text);
    }
    let versions = versions(&python)?;
    let contestants: Vec<Contestant> = PATHS
        .iter()
        .flat_map(|path| {
            [Runtime::Rust, Runtime::Python].map(|runtime| Contestant { path, runtime })
        })
        .collect();
    let mut samples: Vec<Samples> = contestants.iter().map(|_| Samples::default()).collect();

    // A table of its own: this section's events neither slow moto's table scans for the
    // sections after it nor inherit the main run's table size.
    let client = hub_tests::Moto::shared().dynamodb().await;
    let table = format!("{}-python", bench.table);
    hub_tests::template::create_events_table(&client, &table).await;
    let main_table = std::mem::replace(&mut bench.table, table);
    let measured = compare(bench, &python, &contestants, &mut samples).await;
    let table = std::mem::replace(&mut bench.table, main_table);
    let _ = client.delete_table().table_name(&table).send().await;
    measured?;
    let rounds = bench.options.cold_starts;

    let _ = write!(
        text,
        "The usual alternative: a small Python Lambda handler with boto3 ([`bench/python`](bench/python)), \
         written idiomatically (clients created at module load, `hmac.compare_digest`, \
         `cryptography` for DingTalk's AES) with the same checks, the same idempotency keys, the \
         same table items and the same replies as the Rust functions. It runs as Lambda's own \
         Python runtime runs it: `python -m awslambdaric <module>.handler`, under the same Runtime API \
         emulator, with the same variables, against the same moto (a table of its own) behind the same timing proxy, \
         in this run. Ratio: Python ÷ callback-hub (above 1: Python is slower or bigger).\n\n"
    );
    for (i, path) in PATHS.iter().enumerate() {
        let (rust, py) = (&samples[2 * i], &samples[2 * i + 1]);
        let _ = write!(
            text,
            "### {}\n\n| metric | callback-hub (`{}`) | Python (`{}.py`) | ratio |\n|---|---:|---:|---:|\n",
            path.title, path.scenario.binary, path.module
        );
        let row = |text: &mut String, metric: &str, a: f64, b: f64, unit: &str| {
            let ratio = if a > 0.0 {
                format!("{:.1}×", b / a)
            } else {
                "—".to_owned()
            };
            let _ = writeln!(
                text,
                "| {metric} | {a:.2} {unit} | {b:.2} {unit} | {ratio} |"
            );
        };
        let inits = |s: &Samples| s.cold.iter().map(|c| c.init).collect::<Vec<_>>();
        let firsts = |s: &Samples| s.cold.iter().map(|c| c.first).collect::<Vec<_>>();
        row(
            &mut text,
            &format!("init (spawn → first `/next`), median of {rounds}"),
            ms(median(&inits(rust))),
            ms(median(&inits(py))),
            "ms",
        );
        row(
            &mut text,
            &format!("first invocation, median of {rounds}"),
            ms(median(&firsts(rust))),
            ms(median(&firsts(py))),
            "ms",
        );
        row(
            &mut text,
            "warm p50",
            ms(median(&rust.warm)),
            ms(median(&py.warm)),
            "ms",
        );
        row(
            &mut text,
            "warm p99",
            ms(percentile(&rust.warm, 99.0)),
            ms(percentile(&py.warm, 99.0)),
            "ms",
        );
        row(
            &mut text,
            "warm p50 without the time in moto",
            ms(median(&rust.own)),
            ms(median(&py.own)),
            "ms",
        );
        row(
            &mut text,
            "peak RSS (`VmHWM`)",
            rust.peak_rss_kib as f64 / 1024.0,
            py.peak_rss_kib as f64 / 1024.0,
            "MiB",
        );
        let per = |s: &Samples| s.store_requests as f64 / s.warm.len().max(1) as f64;
        let _ = writeln!(
            text,
            "| DynamoDB requests per warm invocation | {:.2} | {:.2} | |\n",
            per(rust),
            per(py)
        );
        if rust.processes != 1 || py.processes != 1 {
            let _ = writeln!(
                text,
                "Process trees: callback-hub {} process(es), Python {}; RSS is their sum.\n",
                rust.processes, py.processes
            );
        }
    }
    let _ = write!(
        text,
        "How measured: init is spawn → the process's first `GET /next` (interpreter start, \
         imports, clients created; for Rust the whole `build`, with `DYNAMODB_WARM_UP={DEFAULT_MODE}` \
         as shipped), one fresh process per cold start, the four processes in turn each round; \
         first invocation is the next event's hand-out → its answer. Warm: one process each, \
         {warm} invocations after {WARM_UP_INVOCATIONS} unmeasured ones, the four processes \
         invoked in turn, every request a new event (a conditional put that succeeds). Peak RSS: \
         `VmHWM` of the process and its children after the warm run. Each answer is checked \
         (status; DingTalk's reply signed with the token and decrypting to `success`), a request \
         with a spoiled credential must get 403 from both, each one's first event sent to the \
         other must be a duplicate (the same key), and one item written by each must have the same \
         attributes. moto answers an index query by scanning the table, so the ROS path's time in \
         moto (its \"latest status\" query) grows with the table alike for both: the row without \
         the time in moto is the one that compares the code. `python -m awslambdaric` runs with `PYTHONDONTWRITEBYTECODE=1` \
         (Lambda's task root is read-only: the handler module is compiled at each cold start; the \
         libraries' bytecode comes precompiled from pip, as in a deployment package).\n\n\
         Versions: {versions}.\n",
        warm = bench.options.invocations,
    );
    Ok(text)
}

/// Cold starts round by round, then the interleaved warm run, then the stored items.
async fn compare(
    bench: &mut Bench,
    python: &Python,
    contestants: &[Contestant<'_>],
    samples: &mut [Samples],
) -> Result<(), String> {
    let rounds = bench.options.cold_starts;
    for round in 0..rounds {
        eprintln!(
            "bench: Python side by side, cold round {}/{rounds}",
            round + 1
        );
        for (contestant, samples) in contestants.iter().zip(samples.iter_mut()) {
            samples
                .cold
                .push(cold_start(bench, python, contestant).await?);
        }
    }
    eprintln!(
        "bench: Python side by side, {} warm invocations each, interleaved",
        bench.options.invocations
    );
    let firsts = warm_run(bench, python, contestants, samples).await?;
    same_items(bench, contestants, &firsts).await?;
    Ok(())
}

/// `Python 3.11.7, boto3 1.x, ...` from the venv itself.
fn versions(python: &Python) -> Result<String, String> {
    let output = std::process::Command::new(&python.interpreter)
        .arg("-c")
        .arg(
            "import sys, importlib.metadata as m\n\
             names = ('awslambdaric', 'boto3', 'botocore', 'cryptography')\n\
             print(', '.join(['Python ' + sys.version.split()[0]] + [n + ' ' + m.version(n) for n in names]))",
        )
        .output()
        .map_err(|e| format!("{}: {e}", python.interpreter.display()))?;
    if !output.status.success() {
        return Err(format!(
            "the Python venv is broken: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn spawn(
    bench: &Bench,
    python: &Python,
    contestant: &Contestant<'_>,
    api: &RuntimeApi,
) -> Result<Child, String> {
    let scenario = contestant.path.scenario;
    if contestant.runtime == Runtime::Rust {
        return bench.spawn(scenario, api, DEFAULT_MODE);
    }
    let entry = scenario.env_entry.ok_or("a path without a function")?;
    let name = contestant.log_name();
    let log = bench.logs.join(format!("{name}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let mut command = tokio::process::Command::new(&python.interpreter);
    command
        .arg("-m")
        .arg("awslambdaric")
        .arg(format!("{}.handler", contestant.path.module))
        .current_dir(&python.dir)
        // What Lambda sets, as `Bench::spawn_with` gives the bootstraps, and the same configuration.
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", api.address())
        .env("AWS_LAMBDA_FUNCTION_NAME", &name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_SESSION_TOKEN", "testing")
        .env("TZ", ":UTC")
        .env("LAMBDA_TASK_ROOT", &python.dir)
        .env("_HANDLER", format!("{}.handler", contestant.path.module))
        .env("PYTHONDONTWRITEBYTECODE", "1");
    for (key, value) in hub_tests::fixture_vars(entry) {
        command.env(key, value);
    }
    command
        .env("EVENTS_TABLE", &bench.table)
        .env("AWS_ENDPOINT_URL", bench.proxy.endpoint())
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .kill_on_drop(true);
    command
        .spawn()
        .map_err(|e| format!("{}: {e}", python.interpreter.display()))
}

/// One checked invocation and what its DynamoDB requests cost; the answer's JSON.
async fn invoke(
    bench: &Bench,
    contestant: &Contestant<'_>,
    api: &mut RuntimeApi,
    request: Bytes,
    status: u16,
    fresh: bool,
) -> Result<(Invocation, Usage, Value), String> {
    let before = bench.proxy.usage();
    let invocation = api
        .invoke(request, INVOKE_LIMIT)
        .await
        .map_err(|e| contestant.failure(bench, &e))?;
    let usage = bench.proxy.usage() - before;
    let answer: Value = serde_json::from_slice(&invocation.body)
        .map_err(|e| contestant.failure(bench, &format!("answer is not JSON: {e}")))?;
    let got = answer["statusCode"].as_u64().unwrap_or_default();
    if got != u64::from(status) {
        return Err(contestant.failure(
            bench,
            &format!("answered {got}, expected {status}: {}", answer["body"]),
        ));
    }
    if status == 200 {
        let body: Value = answer["body"]
            .as_str()
            .and_then(|b| serde_json::from_str(b).ok())
            .ok_or_else(|| contestant.failure(bench, "the answer's body is not JSON"))?;
        (contestant.path.check_reply)(&body, fresh).map_err(|e| contestant.failure(bench, &e))?;
        return Ok((invocation, usage, body));
    }
    Ok((invocation, usage, answer))
}

async fn cold_start(
    bench: &mut Bench,
    python: &Python,
    contestant: &Contestant<'_>,
) -> Result<Cold, String> {
    let scenario = contestant.path.scenario;
    let request = bench.next_request(scenario);
    let mut api = RuntimeApi::start(&contestant.log_name())
        .await
        .map_err(|e| e.to_string())?;
    let spawned = Instant::now();
    let mut child = spawn(bench, python, contestant, &api)?;
    let polled = api
        .first_poll(INIT_LIMIT)
        .await
        .map_err(|e| contestant.failure(bench, &e))?;
    let (invocation, first_store, _) =
        invoke(bench, contestant, &mut api, request, scenario.status, true).await?;
    stop(&mut child).await;
    Ok(Cold {
        init: polled - spawned,
        first: invocation.latency,
        first_store,
    })
}

/// What identifies the event of a contestant's first warm invocation in the table.
enum Stored {
    /// The `event_id` of the reply (stack-hook says which id it stored).
    EventId(String),
    /// The subject: DingTalk's reply is encrypted, the bench approval's instance is `bench-{n}`.
    Subject(String),
}

/// One process per contestant, invoked in turn; returns each one's first stored event.
async fn warm_run(
    bench: &mut Bench,
    python: &Python,
    contestants: &[Contestant<'_>],
    samples: &mut [Samples],
) -> Result<Vec<Stored>, String> {
    let mut processes = Vec::new();
    for contestant in contestants {
        let mut api = RuntimeApi::start(&contestant.log_name())
            .await
            .map_err(|e| e.to_string())?;
        let child = spawn(bench, python, contestant, &api)?;
        api.first_poll(INIT_LIMIT)
            .await
            .map_err(|e| contestant.failure(bench, &e))?;
        processes.push((api, child));
    }
    let count = bench.options.invocations;
    let mut firsts = Vec::new();
    for i in 0..1 + WARM_UP_INVOCATIONS + count {
        for ((contestant, (api, _)), samples) in contestants
            .iter()
            .zip(&mut processes)
            .zip(samples.iter_mut())
        {
            let scenario = contestant.path.scenario;
            let n = bench.next_event.get(scenario.name).copied().unwrap_or(0);
            let request = bench.next_request(scenario);
            let (invocation, store, reply) = invoke(
                bench,
                contestant,
                api,
                request.clone(),
                scenario.status,
                true,
            )
            .await?;
            if i == 0 {
                let stored = match reply["event_id"].as_str() {
                    Some(id) => Stored::EventId(id.to_owned()),
                    None => Stored::Subject(format!("bench-{n}")),
                };
                firsts.push((request, stored));
            }
            if i > WARM_UP_INVOCATIONS {
                samples.warm.push(invocation.latency);
                samples
                    .own
                    .push(invocation.latency.saturating_sub(store.busy));
                samples.store_requests += store.requests;
            }
        }
    }
    for ((contestant, (api, child)), samples) in contestants
        .iter()
        .zip(&mut processes)
        .zip(samples.iter_mut())
    {
        // A spoiled credential: refused by both, never stored (not measured).
        let scenario = contestant.path.scenario;
        let request: Value =
            serde_json::from_slice(&bench.next_request(scenario)).map_err(|e| e.to_string())?;
        let tampered = Bytes::from((contestant.path.tamper)(request).to_string());
        invoke(bench, contestant, api, tampered, 403, false)
            .await
            .map_err(|e| format!("a tampered request: {e}"))?;
        let pid = child
            .id()
            .ok_or_else(|| contestant.failure(bench, "exited during the run"))?;
        let tree = process_tree(pid);
        samples.processes = tree.len();
        samples.peak_rss_kib = tree
            .iter()
            .map(|pid| crate::peak_rss_kib(*pid))
            .sum::<Result<u64, String>>()?;
    }
    // Each implementation gets the other's first request: the same event, so the same key, so a
    // duplicate (stack-hook names the id it already holds; DingTalk's item count is checked later).
    for i in 0..contestants.len() {
        let other = i ^ 1;
        let (request, stored) = &firsts[other];
        let (api, _) = &mut processes[i];
        let contestant = &contestants[i];
        let (_, _, reply) = invoke(bench, contestant, api, request.clone(), 200, false).await?;
        if let Stored::EventId(id) = stored {
            if reply["status"] != "duplicate" || reply["event_id"] != id.as_str() {
                return Err(contestant.failure(
                    bench,
                    &format!("the other implementation's event {id} was not a duplicate: {reply}"),
                ));
            }
        }
    }
    for (_, child) in &mut processes {
        stop(child).await;
    }
    Ok(firsts.into_iter().map(|(_, stored)| stored).collect())
}

/// `pid` and its descendants (`/proc/<pid>/task/<tid>/children`).
fn process_tree(pid: u32) -> Vec<u32> {
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let tasks = format!("/proc/{}/task", tree[i]);
        for task in std::fs::read_dir(tasks).into_iter().flatten().flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            tree.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
        i += 1;
    }
    tree
}

/// The item each contestant stored first: the attribute names and types of the Python one must
/// be those of the Rust one (the same key schema, indexes and attributes).
async fn same_items(
    bench: &Bench,
    contestants: &[Contestant<'_>],
    firsts: &[Stored],
) -> Result<(), String> {
    let client = hub_tests::Moto::shared().dynamodb().await;
    let mut shapes = Vec::new();
    for (contestant, first) in contestants.iter().zip(firsts) {
        let source = match contestant.path.module {
            "ros_hook" => "stack",
            _ => "dingtalk",
        };
        let item = match first {
            Stored::EventId(id) => {
                client
                    .get_item()
                    .table_name(&bench.table)
                    .key("pk", AttributeValue::S(format!("{source}#{id}")))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| format!("reading the stored event: {e}"))?
                    .item
            }
            Stored::Subject(subject) => client
                .query()
                .table_name(&bench.table)
                .index_name("by-subject")
                .key_condition_expression("subject_key = :s")
                .expression_attribute_values(":s", AttributeValue::S(format!("{source}#{subject}")))
                .send()
                .await
                .map_err(|e| format!("reading the stored event: {e}"))?
                .items
                .and_then(|items| {
                    // Sent to both implementations: stored once.
                    (items.len() == 1)
                        .then(|| items.into_iter().next())
                        .flatten()
                }),
        }
        .ok_or_else(|| {
            contestant.failure(
                bench,
                "its first warm event is not stored exactly once (both implementations got \
                 it: twice means that their keys differ)",
            )
        })?;
        let shape: BTreeMap<String, &'static str> = item
            .iter()
            .map(|(name, value)| {
                let kind = match value {
                    AttributeValue::S(_) => "S",
                    AttributeValue::N(_) => "N",
                    _ => "other",
                };
                (name.clone(), kind)
            })
            .collect();
        shapes.push(shape);
    }
    for (pair, path) in shapes.chunks(2).zip(&PATHS) {
        if pair[0] != pair[1] {
            return Err(format!(
                "{}: the Python item differs from the Rust one: {:?} vs {:?}",
                path.title, pair[1], pair[0]
            ));
        }
    }
    Ok(())
}

fn ros_reply(body: &Value, fresh: bool) -> Result<(), String> {
    let outcome = if fresh { "stored" } else { "duplicate" };
    match body["event_id"].as_str() {
        Some(id) if !id.is_empty() && body["status"] == outcome && body["sets_status"] == true => {
            Ok(())
        }
        _ => Err(format!("not a {outcome} new status: {body}")),
    }
}

/// §1.5: signed with the token over its own values, and `encrypt` opens to `success`.
fn dingtalk_reply(body: &Value, _fresh: bool) -> Result<(), String> {
    let field = |name: &str| {
        body[name]
            .as_str()
            .ok_or(format!("reply lacks {name}: {body}"))
    };
    let (signature, time_stamp, nonce, encrypt) = (
        field("msg_signature")?,
        field("timeStamp")?,
        field("nonce")?,
        field("encrypt")?,
    );
    if hub_tests::fixtures::sender_signature(time_stamp, nonce, encrypt) != signature {
        return Err("the reply's signature is wrong".into());
    }
    match hub_tests::fixtures::dingtalk_crypto().decrypt(encrypt) {
        Ok(message) if message == b"success" => Ok(()),
        _ => Err("the reply does not decrypt to success".into()),
    }
}

fn wrong_token(mut request: Value) -> Value {
    request["queryStringParameters"] = json!({"token": "not-the-stack-hook-token"});
    request["rawQueryString"] = json!("token=not-the-stack-hook-token");
    request
}

fn wrong_signature(mut request: Value) -> Value {
    let body: Value = request["body"]
        .as_str()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or_default();
    let encrypt = body["encrypt"].as_str().unwrap_or_default();
    // Another ciphertext under the original signature.
    let spoiled = format!("A{}", &encrypt[1.min(encrypt.len())..]);
    let spoiled = if spoiled == encrypt {
        format!("B{}", &encrypt[1..])
    } else {
        spoiled
    };
    request["body"] = json!(json!({ "encrypt": spoiled }).to_string());
    request
}

#[cfg(test)]
mod tests {
    use super::*;
    use hub_tests::fixtures::{sender_encrypt, sender_signature};

    fn reply(message: &[u8], sign_with: fn(&str, &str, &str) -> String) -> Value {
        let encrypt = sender_encrypt(message, *b"replyprefix00001");
        json!({"msg_signature": sign_with("1709294400077", "Hc5LrP2mQx7Z", &encrypt),
               "timeStamp": "1709294400077", "nonce": "Hc5LrP2mQx7Z", "encrypt": encrypt})
    }

    #[test]
    fn a_dingtalk_reply_must_be_a_signed_success() {
        assert_eq!(
            dingtalk_reply(&reply(b"success", sender_signature), true),
            Ok(())
        );
        let other_token = |_: &str, _: &str, _: &str| "0".repeat(40);
        assert!(dingtalk_reply(&reply(b"success", other_token), true).is_err());
        assert!(dingtalk_reply(&reply(b"failure", sender_signature), true).is_err());
        let mut unsigned = reply(b"success", sender_signature);
        unsigned.as_object_mut().unwrap().remove("msg_signature");
        assert!(dingtalk_reply(&unsigned, true).is_err());
    }

    #[test]
    fn a_ros_reply_must_say_stored_for_a_new_event_and_duplicate_for_a_repeat() {
        let stored = json!({"status": "stored", "event_id": "ros-1", "sets_status": true});
        let duplicate = json!({"status": "duplicate", "event_id": "ros-1", "sets_status": true});
        assert_eq!(ros_reply(&stored, true), Ok(()));
        assert!(ros_reply(&duplicate, true).is_err());
        assert_eq!(ros_reply(&duplicate, false), Ok(()));
        assert!(ros_reply(&stored, false).is_err());
        let history = json!({"status": "stored", "event_id": "ros-1", "sets_status": false});
        assert!(ros_reply(&history, true).is_err());
    }

    #[test]
    fn tampering_spoils_only_the_credential() {
        let request = PATHS[1].scenario.request(7);
        let tampered = wrong_signature(request.clone());
        let encrypt = |r: &Value| {
            serde_json::from_str::<Value>(r["body"].as_str().unwrap()).unwrap()["encrypt"].clone()
        };
        assert_ne!(encrypt(&tampered), encrypt(&request));
        let without_body = |r: &Value| {
            let mut r = r.clone();
            r.as_object_mut().unwrap().remove("body");
            r
        };
        assert_eq!(without_body(&tampered), without_body(&request));

        let request = PATHS[0].scenario.request(7);
        let tampered = wrong_token(request.clone());
        assert_ne!(tampered["rawQueryString"], request["rawQueryString"]);
        assert_eq!(tampered["body"], request["body"]);
    }

    #[test]
    fn the_process_tree_holds_the_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let tree = process_tree(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(tree[0], std::process::id());
        assert!(tree.contains(&child.id()), "{tree:?}");
    }
}
