//! `bench-faults`: issue 18 §4, injected faults on the Lambda path.
//!
//! Every function's release bootstrap runs under the Runtime API emulator and reaches moto only
//! through a fault-injecting proxy (`fault_proxy.rs`) that answers a share of the requests with
//! a throughput or throttling error, a 500, a reset connection or a stall past the SDK's
//! timeout, before or after moto applied them. Simulated senders retry like the real ones.
//! Then the stores are read back directly from moto:
//!
//! - HTTP functions (`faults/senders.rs`): no acknowledged event missing, none stored twice,
//!   none given up by a sender that retries;
//! - the S3 mirror (`faults/mirror.rs`), with faults on S3: the mirror bucket ends equal to the
//!   source;
//! - webhook-deliver (`faults/deliver.rs`), with faults on SQS and DynamoDB: no delivery lost,
//!   none delivered after being dead-lettered.
//!
//! It exits 1 on any violation (never on a timing) and prints (`--out` also writes) the
//! `## Injected faults` section of RELIABILITY.md. Run by `scripts/reliability.sh`.

#[path = "emulator.rs"]
#[allow(dead_code)] // `Invocation::latency` is read by the other binary
mod emulator;
mod fault_proxy;
mod faults;
#[path = "http_server.rs"]
mod http_server;
#[path = "signed.rs"]
mod signed;
mod upstream;

use faults::{Context, Report, Row};
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;

struct Options {
    bin_dir: PathBuf,
    out: Option<PathBuf>,
    events: usize,
    share: f64,
    seed: u64,
    only: Option<String>,
    command: String,
}

impl Options {
    fn parse() -> Result<Options, String> {
        let mut args = std::env::args().skip(1);
        let mut options = Options {
            bin_dir: PathBuf::from("target/release"),
            out: None,
            events: 200,
            share: 0.2,
            seed: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1),
            only: None,
            command: "bash scripts/reliability.sh".into(),
        };
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--bin-dir" => options.bin_dir = value()?.into(),
                "--out" => options.out = Some(value()?.into()),
                "--events" => options.events = number(&value()?)?,
                "--fault-share" => {
                    let text = value()?;
                    options.share = text
                        .parse()
                        .ok()
                        .filter(|s: &f64| (0.0..=1.0).contains(s))
                        .ok_or_else(|| format!("--fault-share: not a share 0..1: {text}"))?;
                }
                "--seed" => options.seed = number(&value()?)? as u64,
                "--only" => options.only = Some(value()?),
                "--command" => options.command = value()?,
                other => return Err(format!("unknown option {other}")),
            }
        }
        if options.events == 0 {
            return Err("--events must be at least 1".into());
        }
        Ok(options)
    }

    fn wants(&self, name: &str) -> bool {
        self.only.as_deref().is_none_or(|only| name.contains(only))
    }
}

fn number(text: &str) -> Result<usize, String> {
    text.parse().map_err(|_| format!("not a number: {text}"))
}

#[tokio::main]
async fn main() {
    let options = match Options::parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("bench-faults: {message}");
            std::process::exit(2);
        }
    };
    match run(&options).await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(message) => {
            eprintln!("bench-faults: {message}");
            std::process::exit(1);
        }
    }
}

/// Whether every property held.
async fn run(options: &Options) -> Result<bool, String> {
    eprintln!(
        "bench-faults: seed {} (--seed {} repeats the fault sequence), fault share {}",
        options.seed, options.seed, options.share
    );
    eprintln!("bench-faults: starting moto");
    let moto = tokio::task::spawn_blocking(hub_tests::Moto::shared)
        .await
        .map_err(|e| e.to_string())?;
    let config = moto.sdk_config().await;
    let proxy = fault_proxy::FaultProxy::start(moto.endpoint(), options.seed)
        .await
        .map_err(|e| format!("proxy: {e}"))?;
    let logs = std::env::temp_dir().join("callback-hub-faults");
    std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    let ctx = Context {
        bin_dir: options.bin_dir.clone(),
        logs,
        proxy,
        dynamodb: aws_sdk_dynamodb::Client::new(&config),
        s3: aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        ),
        sqs: aws_sdk_sqs::Client::new(&config),
        share: options.share,
        events: options.events,
        ids: AtomicUsize::new(0),
    };

    let mut rows: Vec<Row> = Vec::new();
    for sender in &faults::senders::SENDERS {
        if !options.wants(sender.name) {
            continue;
        }
        eprintln!("bench-faults: {} ({} events)", sender.name, options.events);
        let mut row = faults::senders::run(&ctx, sender).await?;
        row.check(!sender.retries);
        eprintln!("bench-faults: {}", summary(&row));
        rows.push(row);
    }
    if options.wants("s3-notification (mirror)") {
        eprintln!("bench-faults: s3-notification mirror");
        let row = faults::mirror::run(&ctx).await?;
        eprintln!("bench-faults: {}", summary(&row));
        rows.push(row);
    }
    if options.wants("webhook-deliver") {
        eprintln!("bench-faults: webhook-deliver");
        let row = faults::deliver::run(&ctx).await?;
        eprintln!("bench-faults: {}", summary(&row));
        rows.push(row);
    }
    // The loss the webhook-deliver run can find, made to happen once on purpose: it does not
    // depend on the sample of faults.
    let mut extra = Vec::new();
    let mut extra_violations = Vec::new();
    if options.wants("webhook-deliver reproduce") {
        // As on AWS: the dead-letter must not be lost.
        let (text, lost) = faults::deliver::reproduce_lost_dead_letter(&ctx, true).await?;
        eprintln!("bench-faults: {text}");
        if lost {
            extra_violations.push(format!("webhook-deliver: {text}"));
        } else {
            extra.push(format!("webhook-deliver: {text}"));
        }
        // Without the token (moto, or a store that lacks it): reported, not a violation on
        // AWS, where DynamoDB keeps tokens 10 minutes.
        let (text, lost) = faults::deliver::reproduce_lost_dead_letter(&ctx, false).await?;
        eprintln!("bench-faults: {text}");
        extra.push(format!(
            "webhook-deliver: {text}{}",
            if lost {
                " (the function relies on DynamoDB's token: without it, a dead-letter whose \
                 record's answer is lost is never sent)"
            } else {
                ""
            }
        ));
    }

    let text = faults::render(&Report {
        rows: &rows,
        share: options.share,
        seed: options.seed,
        events: options.events,
        command: &options.command,
        extra: &extra,
        extra_violations: &extra_violations,
    });
    if let Some(out) = &options.out {
        std::fs::write(out, &text).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    println!("{text}");
    let violations: Vec<&String> = rows
        .iter()
        .flat_map(|r| &r.violations)
        .chain(&extra_violations)
        .collect();
    for v in &violations {
        eprintln!("bench-faults: VIOLATION {v}");
    }
    Ok(violations.is_empty())
}

fn summary(row: &Row) -> String {
    format!(
        "{}: {} requests, {} faults, {} 2xx, {} items, {} acknowledged-not-stored, {} stored twice, {} never acknowledged",
        row.name,
        row.requests,
        row.faults.total_faults(),
        row.answers_2xx,
        row.items,
        row.acked_not_stored,
        row.stored_twice,
        row.never_acked
    )
}
