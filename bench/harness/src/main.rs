//! `bench`: runs every function's release bootstrap, and a hello-world `lambda_http` baseline,
//! under the Runtime API emulator against moto, then writes `BENCHMARKS.md`.
//! `scripts/bench.sh` builds the binaries and runs this; see its header for the options.

mod callgrind;
mod emulator;
mod http_server;
mod micro;
mod proxy;
mod python_alt;
mod report;
mod scenarios;
mod signed;
mod stats;
mod tls_cold;
mod tracing_cost;
mod upstream;
mod webhooks_lambda;

use bytes::Bytes;
use emulator::RuntimeApi;
use proxy::{TimingProxy, Usage};
use scenarios::Scenario;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const INIT_LIMIT: Duration = Duration::from_secs(10);
const INVOKE_LIMIT: Duration = Duration::from_secs(30);
/// Invocations run, and not measured, between the first and the measured ones.
const WARM_UP_INVOCATIONS: usize = 20;
pub const WARM_UP_MODES: [&str; 3] = ["off", "background", "init"];
/// The mode the functions ship with, used for the warm runs.
pub const DEFAULT_MODE: &str = "off";

pub struct Options {
    bin_dir: PathBuf,
    out: PathBuf,
    invocations: usize,
    cold_starts: usize,
    criterion_dir: Option<PathBuf>,
    command: String,
    /// Warm invocations of the webhook fan-out and deliver functions.
    webhook_batches: usize,
    /// The local server's webhooks section (`bench-webhooks --out`), appended to the report.
    append: Vec<PathBuf>,
    /// The CA and server certificate of the TLS proxy (`scripts/bench.sh` makes them); without
    /// it, no TLS cold path section.
    tls_dir: Option<PathBuf>,
    /// Processes per function for the init instruction count; 0 skips callgrind.
    callgrind_repeats: usize,
    /// A hand-written section (what we changed and what it bought), appended as it is.
    changes: Option<PathBuf>,
    /// Only the baseline and this binary's scenarios, and none of the other sections: for
    /// profiling one function (`--bin-dir` of the `profiling` build, which keeps symbols).
    only: Option<String>,
}

impl Options {
    fn parse() -> Result<Options, String> {
        let mut args = std::env::args().skip(1);
        let mut options = Options {
            bin_dir: PathBuf::from("target/release"),
            out: PathBuf::from("BENCHMARKS.md"),
            invocations: 1000,
            cold_starts: 20,
            criterion_dir: None,
            command: "bash scripts/bench.sh".into(),
            webhook_batches: 20,
            append: Vec::new(),
            tls_dir: None,
            callgrind_repeats: 3,
            changes: None,
            only: None,
        };
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--bin-dir" => options.bin_dir = value()?.into(),
                "--out" => options.out = value()?.into(),
                "--invocations" => options.invocations = number(&value()?)?,
                "--cold-starts" => options.cold_starts = number(&value()?)?,
                "--criterion-dir" => options.criterion_dir = Some(value()?.into()),
                "--command" => options.command = value()?,
                "--webhook-batches" => options.webhook_batches = number(&value()?)?.max(2),
                "--append" => options.append.push(value()?.into()),
                "--tls-dir" => options.tls_dir = Some(value()?.into()),
                "--callgrind-repeats" => options.callgrind_repeats = number(&value()?)?,
                "--changes" => options.changes = Some(value()?.into()),
                "--only" => options.only = Some(value()?),
                other => return Err(format!("unknown option {other}")),
            }
        }
        if options.invocations < 1000 {
            return Err("--invocations must be at least 1000".into());
        }
        if options.cold_starts == 0 {
            return Err("--cold-starts must be at least 1".into());
        }
        Ok(options)
    }
}

fn number(text: &str) -> Result<usize, String> {
    text.parse().map_err(|_| format!("not a number: {text}"))
}

/// One cold start: spawn → first poll, then the first invocation.
#[derive(Clone, Copy)]
pub struct Cold {
    pub init: Duration,
    pub first: Duration,
    pub first_store: Usage,
}

pub struct Warm {
    pub latencies: Vec<Duration>,
    /// Latency minus the time the invocation's DynamoDB requests spent in the proxy and moto.
    pub own: Vec<Duration>,
    pub store_requests: u64,
    pub peak_rss_kib: u64,
    /// CPU time of the process (all its threads, user and system) over the measured
    /// invocations: the work the function does itself, with none of the waiting that latency
    /// holds (DynamoDB, the loopback hops to the proxy, being scheduled).
    pub cpu: Duration,
}

pub struct Measured {
    /// By warm-up mode (the baseline has only `-`).
    pub cold: HashMap<&'static str, Vec<Cold>>,
    pub warm: Warm,
    pub bootstrap_bytes: u64,
    pub zip_bytes: u64,
}

struct Bench {
    options: Options,
    proxy: TimingProxy,
    table: String,
    logs: PathBuf,
    next_event: HashMap<&'static str, usize>,
}

#[tokio::main]
async fn main() {
    let options = match Options::parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("bench: {message}");
            std::process::exit(2);
        }
    };
    if let Err(message) = run(options).await {
        eprintln!("bench: {message}");
        std::process::exit(1);
    }
}

async fn run(options: Options) -> Result<(), String> {
    let all: Vec<&Scenario> = std::iter::once(&scenarios::BASELINE)
        .chain(&scenarios::FUNCTIONS)
        .filter(|s| s.is_baseline() || options.only.as_ref().is_none_or(|b| b == s.binary))
        .collect();
    if all.len() < 2 {
        return Err("--only names no function of the bench".into());
    }
    for scenario in &all {
        let path = options.bin_dir.join(scenario.binary);
        if !path.is_file() {
            return Err(format!("{} is missing: build it first", path.display()));
        }
    }
    eprintln!("bench: starting moto");
    let moto = tokio::task::spawn_blocking(hub_tests::Moto::shared)
        .await
        .map_err(|e| e.to_string())?;
    let table = "callback-hub-bench".to_owned();
    hub_tests::template::create_events_table(&moto.dynamodb().await, &table).await;
    let proxy = TimingProxy::start(moto.endpoint())
        .await
        .map_err(|e| format!("proxy: {e}"))?;
    let logs = std::env::temp_dir().join("callback-hub-bench");
    std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    let mut bench = Bench {
        options,
        proxy,
        table,
        logs,
        next_event: HashMap::new(),
    };

    // Cold starts interleaved round by round, so that a noisy moment of the machine touches
    // every function alike, the baseline included.
    let mut cold: HashMap<&str, HashMap<&'static str, Vec<Cold>>> = HashMap::new();
    for round in 0..bench.options.cold_starts {
        eprintln!(
            "bench: cold starts, round {}/{}",
            round + 1,
            bench.options.cold_starts
        );
        for scenario in &all {
            let modes: &[&'static str] = if scenario.is_baseline() {
                &["-"]
            } else {
                &WARM_UP_MODES
            };
            for mode in modes {
                let sample = bench.cold_start(scenario, mode).await?;
                cold.entry(scenario.name)
                    .or_default()
                    .entry(mode)
                    .or_default()
                    .push(sample);
            }
        }
    }

    let mut measured = Vec::new();
    for scenario in &all {
        eprintln!(
            "bench: {} warm invocations of {}",
            bench.options.invocations, scenario.name
        );
        let warm = bench.warm_run(scenario).await?;
        let bootstrap = bench.options.bin_dir.join(scenario.binary);
        let bootstrap_bytes = std::fs::metadata(&bootstrap)
            .map_err(|e| format!("{}: {e}", bootstrap.display()))?
            .len();
        let zip_bytes = zip_size(&bootstrap, &bench.logs)?;
        measured.push(Measured {
            cold: cold.remove(scenario.name).unwrap_or_default(),
            warm,
            bootstrap_bytes,
            zip_bytes,
        });
    }

    let micro = match &bench.options.criterion_dir {
        Some(dir) => micro::collect(dir),
        None => Vec::new(),
    };
    let mut text = report::render(&bench.options, &all, &measured, &micro);
    if bench.options.callgrind_repeats > 0 {
        let repeats = bench.options.callgrind_repeats;
        let counts = callgrind::measure(&mut bench, &all, repeats).await?;
        text.push('\n');
        text.push_str(&callgrind::render(&counts, repeats));
    }
    if let Some(dir) = bench.options.tls_dir.clone() {
        let rounds = bench.options.cold_starts;
        let functions: Vec<&Scenario> = all.iter().skip(1).copied().collect();
        let (section, _) = tls_cold::measure(&mut bench, &functions, &dir, rounds).await?;
        text.push('\n');
        text.push_str(&section);
    }
    if bench.options.only.is_some() {
        return write_report(&bench.options, &text);
    }
    std::fs::write(&bench.options.out, &text)
        .map_err(|e| format!("{}: {e}", bench.options.out.display()))?;
    eprintln!("bench: side by side with Python");
    text.push('\n');
    text.push_str(&python_alt::measure(&mut bench).await?);
    // A checkpoint: the sections so far are kept if a later one fails against a loaded moto.
    std::fs::write(&bench.options.out, &text)
        .map_err(|e| format!("{}: {e}", bench.options.out.display()))?;
    // Before the webhooks run, which drops the events table when it is done with it.
    eprintln!("bench: the cost of X-Ray tracing");
    let traced = [&scenarios::FUNCTIONS[0], &scenarios::FUNCTIONS[6]];
    let tracing = tracing_cost::measure(&mut bench, &traced).await?;
    eprintln!("bench: outbound webhooks on the Lambda path");
    text.push('\n');
    text.push_str(&webhooks_lambda::measure(&mut bench).await?);
    text.push('\n');
    text.push_str(&tracing);
    if let Some(changes) = &bench.options.changes {
        let section =
            std::fs::read_to_string(changes).map_err(|e| format!("{}: {e}", changes.display()))?;
        text.push('\n');
        text.push_str(&section);
    }
    for section in &bench.options.append {
        let section =
            std::fs::read_to_string(section).map_err(|e| format!("{}: {e}", section.display()))?;
        text.push('\n');
        text.push_str(&section);
    }
    write_report(&bench.options, &text)
}

fn write_report(options: &Options, text: &str) -> Result<(), String> {
    std::fs::write(&options.out, text).map_err(|e| format!("{}: {e}", options.out.display()))?;
    println!("{text}");
    eprintln!("bench: wrote {}", options.out.display());
    Ok(())
}

impl Bench {
    /// The next unused request of a scenario: every invocation stores a new event.
    fn next_request(&mut self, scenario: &Scenario) -> Bytes {
        let n = self.next_event.entry(scenario.name).or_insert(0);
        let request = scenario.request(*n);
        *n += 1;
        Bytes::from(request.to_string())
    }

    fn spawn(
        &self,
        scenario: &Scenario,
        api: &RuntimeApi,
        mode: &str,
    ) -> Result<tokio::process::Child, String> {
        let env = self.scenario_env(scenario, mode);
        let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        self.spawn_with(scenario.binary, api, &env)
    }

    /// A scenario's configuration: its `events/env.json` entry, the bench table, the timing
    /// proxy as the endpoint, and the warm-up mode.
    fn scenario_env(&self, scenario: &Scenario, mode: &str) -> Vec<(String, String)> {
        let Some(entry) = scenario.env_entry else {
            return Vec::new();
        };
        let mut env: Vec<(String, String)> = hub_tests::fixture_vars(entry).into_iter().collect();
        env.push(("EVENTS_TABLE".into(), self.table.clone()));
        env.push(("AWS_ENDPOINT_URL".into(), self.proxy.endpoint()));
        env.push(("DYNAMODB_WARM_UP".into(), mode.to_owned()));
        env
    }

    /// Spawns `binary` with only what Lambda itself would set, and `env`.
    fn spawn_with(
        &self,
        binary: &str,
        api: &RuntimeApi,
        env: &[(&str, String)],
    ) -> Result<tokio::process::Child, String> {
        self.spawn_under(&[], binary, api, env)
    }

    /// As [`Bench::spawn_with`], with `wrapper` (a program and its arguments, e.g. valgrind's)
    /// running the binary.
    fn spawn_under(
        &self,
        wrapper: &[String],
        binary: &str,
        api: &RuntimeApi,
        env: &[(&str, String)],
    ) -> Result<tokio::process::Child, String> {
        let path = self.options.bin_dir.join(binary);
        let log = self.logs.join(format!("{binary}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let mut command = match wrapper.split_first() {
            Some((program, arguments)) => {
                let mut command = tokio::process::Command::new(program);
                command.args(arguments).arg(&path);
                command
            }
            None => tokio::process::Command::new(&path),
        };
        // Only what Lambda itself would set, and the function's own configuration.
        command
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", api.address())
            .env("AWS_LAMBDA_FUNCTION_NAME", binary)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_SESSION_TOKEN", "testing")
            .env("TZ", ":UTC");
        for (name, value) in env {
            command.env(name, value);
        }
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .kill_on_drop(true);
        command
            .spawn()
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    async fn cold_start(&mut self, scenario: &Scenario, mode: &str) -> Result<Cold, String> {
        let request = self.next_request(scenario);
        let mut api = RuntimeApi::start(scenario.binary)
            .await
            .map_err(|e| e.to_string())?;
        let spawned = Instant::now();
        let mut child = self.spawn(scenario, &api, mode)?;
        let polled = api
            .first_poll(INIT_LIMIT)
            .await
            .map_err(|e| self.failure(scenario, &e))?;
        let (invocation, first_store) = self.invoke(&mut api, scenario, request).await?;
        stop(&mut child).await;
        Ok(Cold {
            init: polled - spawned,
            first: invocation.latency,
            first_store,
        })
    }

    async fn warm_run(&mut self, scenario: &Scenario) -> Result<Warm, String> {
        let count = self.options.invocations;
        let requests: Vec<Bytes> = (0..1 + WARM_UP_INVOCATIONS + count)
            .map(|_| self.next_request(scenario))
            .collect();
        let mut api = RuntimeApi::start(scenario.binary)
            .await
            .map_err(|e| e.to_string())?;
        let mut child = self.spawn(scenario, &api, DEFAULT_MODE)?;
        api.first_poll(INIT_LIMIT)
            .await
            .map_err(|e| self.failure(scenario, &e))?;
        let mut warm = Warm {
            latencies: Vec::with_capacity(count),
            own: Vec::with_capacity(count),
            store_requests: 0,
            peak_rss_kib: 0,
            cpu: Duration::ZERO,
        };
        let pid = child.id().ok_or("the function exited during the run")?;
        let mut cpu_before = Duration::ZERO;
        for (i, request) in requests.into_iter().enumerate() {
            if i == WARM_UP_INVOCATIONS + 1 {
                cpu_before = cpu_time(pid)?;
            }
            let (invocation, store) = self.invoke(&mut api, scenario, request).await?;
            if i > WARM_UP_INVOCATIONS {
                warm.latencies.push(invocation.latency);
                warm.own.push(invocation.latency.saturating_sub(store.busy));
                warm.store_requests += store.requests;
            }
        }
        warm.cpu = cpu_time(pid)?.saturating_sub(cpu_before);
        warm.peak_rss_kib = peak_rss_kib(pid)?;
        stop(&mut child).await;
        Ok(warm)
    }

    /// One checked invocation, and what its DynamoDB requests cost (counted by the proxy).
    async fn invoke(
        &self,
        api: &mut RuntimeApi,
        scenario: &Scenario,
        request: Bytes,
    ) -> Result<(emulator::Invocation, Usage), String> {
        let before = self.proxy.usage();
        let invocation = api
            .invoke(request, INVOKE_LIMIT)
            .await
            .map_err(|e| self.failure(scenario, &e))?;
        let store = self.proxy.usage() - before;
        self.check(scenario, &invocation.body)?;
        Ok((invocation, store))
    }

    /// The answer must be the scenario's status: an error is never measured as a success.
    fn check(&self, scenario: &Scenario, body: &[u8]) -> Result<(), String> {
        let answer: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| self.failure(scenario, &format!("answer is not JSON: {e}")))?;
        let status = answer["statusCode"].as_u64().unwrap_or_default();
        if status != u64::from(scenario.status) {
            return Err(self.failure(
                scenario,
                &format!(
                    "answered {status}, expected {}: {}",
                    scenario.status, answer["body"]
                ),
            ));
        }
        // Every request is new: a receiver that says so (stack-hook does) must have stored it.
        let reply: Option<serde_json::Value> = answer["body"]
            .as_str()
            .and_then(|text| serde_json::from_str(text).ok());
        if reply.is_some_and(|reply| reply["status"] == "duplicate") {
            return Err(self.failure(scenario, "a new request was answered as a duplicate"));
        }
        Ok(())
    }

    fn failure(&self, scenario: &Scenario, message: &str) -> String {
        self.failure_of(scenario.name, scenario.binary, message)
    }

    fn failure_of(&self, name: &str, binary: &str, message: &str) -> String {
        let log = self.logs.join(format!("{binary}.log"));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "{name}: {message}\nlast lines of {}:\n{}",
            log.display(),
            tail.join("\n")
        )
    }
}

async fn stop(child: &mut tokio::process::Child) {
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// The CPU time of a process so far, summed over its threads: the first field of each
/// `/proc/<pid>/task/<tid>/schedstat` (time on a CPU, in nanoseconds; the tick-based `stat`
/// fields are too coarse for a fraction of a millisecond per invocation).
fn cpu_time(pid: u32) -> Result<Duration, String> {
    let tasks = format!("/proc/{pid}/task");
    let mut total = 0u64;
    for task in std::fs::read_dir(&tasks).map_err(|e| format!("{tasks}: {e}"))? {
        let path = task.map_err(|e| e.to_string())?.path().join("schedstat");
        // A thread may end between the listing and the read: it adds nothing then.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        total += text
            .split_whitespace()
            .next()
            .and_then(|field| field.parse::<u64>().ok())
            .ok_or_else(|| format!("{}: not a schedstat line", path.display()))?;
    }
    Ok(Duration::from_nanos(total))
}

/// The process's peak resident set (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmHWM in /proc status".to_owned())
}

/// The size of the zip `sam build` uploads: the binary as `bootstrap`, deflated (Python's
/// zipfile, which is what the SAM CLI uses).
fn zip_size(bootstrap: &Path, scratch: &Path) -> Result<u64, String> {
    let zip = scratch.join("bootstrap.zip");
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, zipfile\n\
             with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n    \
             z.write(sys.argv[2], 'bootstrap')",
        )
        .arg(&zip)
        .arg(bootstrap)
        .status()
        .map_err(|e| format!("python3: {e}"))?;
    if !status.success() {
        return Err(format!("zipping {} failed", bootstrap.display()));
    }
    let bytes = std::fs::metadata(&zip).map_err(|e| e.to_string())?.len();
    let _ = std::fs::remove_file(&zip);
    Ok(bytes)
}
