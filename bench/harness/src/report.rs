//! `BENCHMARKS.md`: the summary against the targets, the warm-up modes, one table per function,
//! and the criterion results.

use crate::micro::{self, MicroResult};
use crate::scenarios::Scenario;
use crate::stats::{median, ms, percentile};
use crate::{Cold, Measured, Options, DEFAULT_MODE, WARM_UP_MODES};
use std::fmt::Write;
use std::time::Duration;

const INIT_RATIO_TARGET: f64 = 1.5;
const WARM_OVERHEAD_TARGET_MS: f64 = 0.5;
const RSS_TARGET_BYTES: f64 = 32e6;
const BOOTSTRAP_TARGET_BYTES: u64 = 8_000_000;

struct Figures {
    init: Duration,
    init_p90: Duration,
    first: Duration,
    first_store: Duration,
    warm_p50: Duration,
    warm_p99: Duration,
    own_p50: Duration,
    own_p99: Duration,
    store_requests: f64,
    cpu_per_invocation: Duration,
    rss_bytes: f64,
    bootstrap: u64,
    zip: u64,
}

fn cold_of<'a>(measured: &'a Measured, mode: &str) -> &'a [Cold] {
    measured
        .cold
        .get(mode)
        .or_else(|| measured.cold.get("-"))
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn figures(measured: &Measured, mode: &str) -> Figures {
    let cold = cold_of(measured, mode);
    let inits: Vec<Duration> = cold.iter().map(|c| c.init).collect();
    let firsts: Vec<Duration> = cold.iter().map(|c| c.first).collect();
    let first_stores: Vec<Duration> = cold.iter().map(|c| c.first_store.busy).collect();
    let warm = &measured.warm;
    Figures {
        init: median(&inits),
        init_p90: percentile(&inits, 90.0),
        first: median(&firsts),
        first_store: median(&first_stores),
        warm_p50: median(&warm.latencies),
        warm_p99: percentile(&warm.latencies, 99.0),
        own_p50: median(&warm.own),
        own_p99: percentile(&warm.own, 99.0),
        store_requests: warm.store_requests as f64 / warm.latencies.len() as f64,
        cpu_per_invocation: warm.cpu / warm.latencies.len().max(1) as u32,
        rss_bytes: warm.peak_rss_kib as f64 * 1024.0,
        bootstrap: measured.bootstrap_bytes,
        zip: measured.zip_bytes,
    }
}

fn mark(met: bool) -> &'static str {
    if met {
        "✅"
    } else {
        "❌"
    }
}

fn ratio(value: f64, base: f64) -> String {
    if base > 0.0 {
        format!("{:.2}×", value / base)
    } else {
        "—".into()
    }
}

fn mb(bytes: f64) -> String {
    format!("{:.2} MB", bytes / 1e6)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    format!("{cpu}, {cores} CPUs, Linux {kernel}")
}

fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(sha) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{sha} with local changes")
            } else {
                sha
            }
        }
        None => "unknown commit".into(),
    }
}

pub fn render(
    options: &Options,
    scenarios: &[&Scenario],
    measured: &[Measured],
    micro: &[MicroResult],
) -> String {
    let base = figures(&measured[0], "-");
    let mut out = String::new();
    let now = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Generated {now} by `{}` at commit {}, on {}. \
         Absolute times on a shared machine are noisy; the ratios to the baseline, measured in \
         the same run, are what to compare.\n",
        options.command,
        commit(),
        machine()
    );
    let _ = writeln!(
        out,
        "**How.** Each function's release `bootstrap` (the workspace release profile, stripped) \
         runs as a process under the repository's Lambda Runtime API emulator \
         (`bench/harness`), with only Lambda's variables and the function's test configuration \
         from `events/env.json`. DynamoDB is moto server, reached through a timing proxy. The \
         baseline is `bench/hello-world`, a hello-world `lambda_http` function built with the \
         same profile and features, measured in the same run. Every invocation carries a new, \
         correctly signed request, so every one stores a new event.\n\n\
         - **init**: process spawn to the first `GET /2018-06-01/runtime/invocation/next`; \
         median of {cold} cold starts (interleaved with the baseline's, round by round).\n\
         - **first invocation**: the event handed out on that first `/next` to its response \
         arriving; includes the first DynamoDB call (the cold path). Median of {cold}.\n\
         - **warm**: {n} invocations of one process, after {w} unmeasured ones. **Own time** is \
         the latency minus the time that invocation's DynamoDB requests spent in the proxy and \
         moto: the function's overhead excluding the DynamoDB round trip. It still holds the \
         two loopback hops of each DynamoDB request between the function and the proxy, and \
         the wake-ups of both processes around them, which the baseline, making no request, \
         does not pay.\n\
         - **CPU per warm invocation**: the process's CPU time (every thread, user and system, \
         from `/proc/<pid>/task/*/schedstat`) over the warm run, divided by the invocations: \
         the work the function does itself, none of the waiting. A mean, not a median.\n\
         - **peak RSS**: `VmHWM` of the process after the warm run.\n\
         - **sizes**: the stripped binary, and the deflated zip of it as `bootstrap` (what \
         `sam build` uploads). MB = 10⁶ bytes.\n",
        cold = options.cold_starts,
        n = options.invocations,
        w = crate::WARM_UP_INVOCATIONS,
    );

    let _ = writeln!(out, "## Against the targets\n");
    let _ = writeln!(
        out,
        "Functions with `DYNAMODB_WARM_UP={DEFAULT_MODE}` (the default). Baseline: init {:.2} ms, \
         first invocation {:.2} ms, warm p50 {:.3} ms, CPU per warm invocation {:.3} ms, peak \
         RSS {}, bootstrap {}.\n",
        ms(base.init),
        ms(base.first),
        ms(base.warm_p50),
        ms(base.cpu_per_invocation),
        mb(base.rss_bytes),
        mb(base.bootstrap as f64)
    );
    let _ = writeln!(
        out,
        "| function | init (≤ {INIT_RATIO_TARGET}× baseline) | warm own p50 − baseline p50 (≤ {WARM_OVERHEAD_TARGET_MS} ms) | warm CPU − baseline's (same bound) | peak RSS (≤ 32 MB) | bootstrap (≤ 8 MB) | zip |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---:|");
    for (scenario, m) in scenarios.iter().zip(measured).skip(1) {
        let f = figures(m, DEFAULT_MODE);
        let init_ratio = ms(f.init) / ms(base.init);
        let overhead = ms(f.own_p50) - ms(base.warm_p50);
        let cpu_overhead = ms(f.cpu_per_invocation) - ms(base.cpu_per_invocation);
        let _ = writeln!(
            out,
            "| {} | {:.2} ms, {:.2}× {} | {:+.3} ms {} | {:+.3} ms {} | {} {} | {} {} | {} |",
            scenario.name,
            ms(f.init),
            init_ratio,
            mark(init_ratio <= INIT_RATIO_TARGET),
            overhead,
            mark(overhead <= WARM_OVERHEAD_TARGET_MS),
            cpu_overhead,
            mark(cpu_overhead <= WARM_OVERHEAD_TARGET_MS),
            mb(f.rss_bytes),
            mark(f.rss_bytes <= RSS_TARGET_BYTES),
            mb(f.bootstrap as f64),
            mark(f.bootstrap <= BOOTSTRAP_TARGET_BYTES),
            mb(f.zip as f64),
        );
    }

    let _ = writeln!(out, "\n## DynamoDB warm-up at init (`DYNAMODB_WARM_UP`)\n");
    let _ = writeln!(
        out,
        "Medians of {} cold starts per mode, in ms: init / first invocation / spawn to first \
         answer. `off` opens the connection on the first callback; `background` starts it at \
         init without waiting; `init` waits for it before polling.\n",
        options.cold_starts
    );
    let mut header = "| function |".to_owned();
    let mut rule = "|---|".to_owned();
    for mode in WARM_UP_MODES {
        let _ = write!(header, " {mode} |");
        rule.push_str("---|");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    let _ = writeln!(
        out,
        "| hello-world (no DynamoDB) | {} |",
        vec![cold_triple(&measured[0], "-"); WARM_UP_MODES.len()].join(" | ")
    );
    for (scenario, m) in scenarios.iter().zip(measured).skip(1) {
        let cells: Vec<String> = WARM_UP_MODES
            .iter()
            .map(|mode| cold_triple(m, mode))
            .collect();
        let _ = writeln!(out, "| {} | {} |", scenario.name, cells.join(" | "));
    }

    for (scenario, m) in scenarios.iter().zip(measured).skip(1) {
        let f = figures(m, DEFAULT_MODE);
        let _ = writeln!(out, "\n## {}\n", scenario.name);
        let _ = writeln!(
            out,
            "| measure | {} | hello-world | ratio |",
            scenario.binary
        );
        let _ = writeln!(out, "|---|---:|---:|---:|");
        let mut row = |name: &str, value: f64, base: f64, unit: &str, digits: usize| {
            let _ = writeln!(
                out,
                "| {name} | {value:.digits$} {unit} | {base:.digits$} {unit} | {} |",
                ratio(value, base)
            );
        };
        row("init, median", ms(f.init), ms(base.init), "ms", 2);
        row("init, p90", ms(f.init_p90), ms(base.init_p90), "ms", 2);
        row(
            "first invocation, median",
            ms(f.first),
            ms(base.first),
            "ms",
            2,
        );
        row(
            "spawn to first answer, median",
            ms(f.init + f.first),
            ms(base.init + base.first),
            "ms",
            2,
        );
        row("warm p50", ms(f.warm_p50), ms(base.warm_p50), "ms", 3);
        row("warm p99", ms(f.warm_p99), ms(base.warm_p99), "ms", 3);
        row(
            "warm own time p50 (excl. DynamoDB)",
            ms(f.own_p50),
            ms(base.own_p50),
            "ms",
            3,
        );
        row(
            "warm own time p99 (excl. DynamoDB)",
            ms(f.own_p99),
            ms(base.own_p99),
            "ms",
            3,
        );
        row(
            "CPU per warm invocation (mean)",
            ms(f.cpu_per_invocation),
            ms(base.cpu_per_invocation),
            "ms",
            3,
        );
        row("peak RSS", f.rss_bytes / 1e6, base.rss_bytes / 1e6, "MB", 2);
        row(
            "bootstrap, stripped",
            f.bootstrap as f64 / 1e6,
            base.bootstrap as f64 / 1e6,
            "MB",
            2,
        );
        row("zip", f.zip as f64 / 1e6, base.zip as f64 / 1e6, "MB", 2);
        let _ = writeln!(
            out,
            "\nFirst invocation's DynamoDB time (median): {:.2} ms. DynamoDB requests per warm \
             invocation: {:.2}. Bootstrap: {} bytes, zip: {} bytes.",
            ms(f.first_store),
            f.store_requests,
            f.bootstrap,
            f.zip
        );
    }

    let _ = writeln!(out, "\n## Verifiers and parsers (criterion)\n");
    if micro.is_empty() {
        let _ = writeln!(
            out,
            "Not run in this report (`scripts/bench.sh` runs them unless given `--no-micro`)."
        );
    } else {
        let _ = writeln!(
            out,
            "`cargo bench` with the release profile; median time per call and its 95 % \
             confidence interval.\n"
        );
        let _ = writeln!(out, "| benchmark | median | 95 % interval | target |");
        let _ = writeln!(out, "|---|---:|---:|---|");
        for result in micro {
            let target = micro::target_ns(&result.id)
                .map(|t| format!("≤ {} {}", time(t), mark(result.median_ns <= t)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| `{}` | {} | {} – {} | {target} |",
                result.id,
                time(result.median_ns),
                time(result.lower_ns),
                time(result.upper_ns)
            );
        }
    }
    out
}

fn cold_triple(measured: &Measured, mode: &str) -> String {
    let cold = cold_of(measured, mode);
    let inits: Vec<Duration> = cold.iter().map(|c| c.init).collect();
    let firsts: Vec<Duration> = cold.iter().map(|c| c.first).collect();
    let totals: Vec<Duration> = cold.iter().map(|c| c.init + c.first).collect();
    format!(
        "{:.2} / {:.2} / {:.2}",
        ms(median(&inits)),
        ms(median(&firsts)),
        ms(median(&totals))
    )
}

fn time(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}
