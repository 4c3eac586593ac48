//! What X-Ray tracing costs: the same function with tracing off (not sampled, no daemon
//! address: what most invocations are) and on (every invocation sampled, every AWS call sent
//! as a subsegment over UDP to a daemon address the harness listens on), measured in one run,
//! processes interleaved round by round.

use crate::emulator::RuntimeApi;
use crate::scenarios::Scenario;
use crate::stats::{median, ms};
use crate::{stop, Bench, INIT_LIMIT, INVOKE_LIMIT, WARM_UP_INVOCATIONS};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Mode {
    inits: Vec<Duration>,
    warm: Vec<Duration>,
    own: Vec<Duration>,
    subsegments: u64,
}

/// Measures `scenarios` with tracing off and on; returns the BENCHMARKS.md section.
pub async fn measure(bench: &mut Bench, scenarios: &[&Scenario]) -> Result<String, String> {
    let daemon = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("daemon socket: {e}"))?;
    let address = daemon.local_addr().map_err(|e| e.to_string())?.to_string();
    let documents = Arc::new(AtomicU64::new(0));
    let counter = documents.clone();
    let sink = tokio::spawn(async move {
        let mut buffer = vec![0u8; 65536];
        while let Ok(n) = daemon.recv(&mut buffer).await {
            // Each datagram is the daemon header line and one segment document.
            if buffer[..n].starts_with(br#"{"format""#) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let rounds = bench.options.cold_starts.min(10);
    let invocations = bench.options.invocations;
    let mut text = String::from(
        "## Cost of X-Ray tracing\n\n\
         The same bootstrap with tracing **off** (invocations not sampled: what most are) and \
         **on** (every invocation `Sampled=1` and `AWS_XRAY_DAEMON_ADDRESS` set, so every AWS \
         call becomes a subsegment sent over UDP to a socket of the harness). Init: median of \
         the cold starts; warm: p50 of the warm invocations; own: without the time in moto.\n\n\
         | function | init off / on | warm p50 off / on | own p50 off / on | subsegments per invocation (on) |\n\
         |---|---:|---:|---:|---:|\n",
    );
    for scenario in scenarios {
        let mut modes = [Mode::default(), Mode::default()];
        for round in 0..rounds {
            eprintln!(
                "bench: tracing cost of {}, cold round {}/{rounds}",
                scenario.name,
                round + 1
            );
            for (traced, mode) in modes.iter_mut().enumerate() {
                let (init, _) = one_process(bench, scenario, traced == 1, &address, 1).await?;
                mode.inits.push(init);
            }
        }
        for (traced, mode) in modes.iter_mut().enumerate() {
            eprintln!(
                "bench: tracing cost of {}, {invocations} warm invocations, tracing {}",
                scenario.name,
                if traced == 1 { "on" } else { "off" }
            );
            let before = documents.load(Ordering::Relaxed);
            let (_, warm) =
                one_process(bench, scenario, traced == 1, &address, invocations).await?;
            mode.subsegments = documents.load(Ordering::Relaxed) - before;
            mode.warm = warm.iter().map(|(latency, _)| *latency).collect();
            mode.own = warm
                .iter()
                .map(|(latency, aws)| latency.saturating_sub(*aws))
                .collect();
        }
        let [off, on] = &modes;
        if on.subsegments == 0 {
            return Err(format!("{}: tracing on sent no subsegment", scenario.name));
        }
        if off.subsegments != 0 {
            return Err(format!("{}: tracing off sent subsegments", scenario.name));
        }
        let _ = writeln!(
            text,
            "| {} | {:.2} / {:.2} ms | {:.3} / {:.3} ms | {:.3} / {:.3} ms | {:.2} |",
            scenario.name,
            ms(median(&off.inits)),
            ms(median(&on.inits)),
            ms(median(&off.warm)),
            ms(median(&on.warm)),
            ms(median(&off.own)),
            ms(median(&on.own)),
            on.subsegments as f64 / (invocations + 1 + WARM_UP_INVOCATIONS) as f64,
        );
    }
    sink.abort();
    Ok(text)
}

/// One process: init, then `count` measured invocations after the warm-up ones (none when
/// `count` is 1: a cold start). Returns init and each measured invocation's latency and time
/// spent in the proxy and moto.
async fn one_process(
    bench: &mut Bench,
    scenario: &Scenario,
    traced: bool,
    daemon: &str,
    count: usize,
) -> Result<(Duration, Vec<(Duration, Duration)>), String> {
    let mut api = RuntimeApi::start_traced(scenario.binary, traced)
        .await
        .map_err(|e| e.to_string())?;
    let vars = hub_tests::fixture_vars(scenario.env_entry.unwrap_or_default());
    let mut env: Vec<(&str, String)> = vars.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    env.push(("EVENTS_TABLE", bench.table.clone()));
    env.push(("AWS_ENDPOINT_URL", bench.proxy.endpoint()));
    if traced {
        env.push(("AWS_XRAY_DAEMON_ADDRESS", daemon.to_owned()));
    }
    let spawned = Instant::now();
    let mut child = bench.spawn_with(scenario.binary, &api, &env)?;
    let polled = api
        .first_poll(INIT_LIMIT)
        .await
        .map_err(|e| bench.failure(scenario, &e))?;
    let total = if count == 1 {
        1
    } else {
        1 + WARM_UP_INVOCATIONS + count
    };
    let mut measured = Vec::with_capacity(count);
    for i in 0..total {
        let request = bench.next_request(scenario);
        let before = bench.proxy.usage();
        let invocation = api
            .invoke(request, INVOKE_LIMIT)
            .await
            .map_err(|e| bench.failure(scenario, &e))?;
        let aws = bench.proxy.usage() - before;
        bench.check(scenario, &invocation.body)?;
        if count > 1 && i > WARM_UP_INVOCATIONS {
            measured.push((invocation.latency, aws.busy));
        }
    }
    stop(&mut child).await;
    Ok((polled - spawned, measured))
}
