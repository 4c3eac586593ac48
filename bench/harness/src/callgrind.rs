//! Instruction counts, the figures this noisy shared machine cannot disturb: each bootstrap runs
//! under `valgrind --tool=callgrind` and the emulator, against moto through the timing proxy.
//! Callgrind counts only the function's own process, so moto's side is excluded by
//! construction.
//!
//! - **init**: a process that gets no event. The emulator answers its first `/next` with 500,
//!   the runtime client ends the process, callgrind writes the total. It includes that exit,
//!   the same short path for every binary, the baseline too.
//! - **per warm invocation**: two processes, one with `SHORT` invocations and one with
//!   `SHORT + WARM` (fresh events, each a new conditional put); the difference over `WARM`.
//!
//! `DYNAMODB_WARM_UP=off` throughout, so that no connection set-up races the first `/next`: the
//! counts then repeat to within a few hundred instructions (the spread column shows it).

use crate::emulator::RuntimeApi;
use crate::scenarios::Scenario;
use crate::Bench;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Valgrind runs a process 20 to 50 times slower.
const LIMIT: Duration = Duration::from_secs(120);
const SHORT: usize = 5;
const WARM: usize = 20;

pub struct Counts {
    pub name: &'static str,
    /// Instructions from exec to exit at the first `/next`, one per repeat.
    pub init: Vec<u64>,
    pub per_warm: u64,
}

/// Runs every scenario `repeats` times for init and twice for the warm difference.
pub async fn measure(
    bench: &mut Bench,
    scenarios: &[&Scenario],
    repeats: usize,
) -> Result<Vec<Counts>, String> {
    let valgrind = find_program("valgrind").ok_or(
        "valgrind is not installed (apt-get install valgrind): it counts the instructions",
    )?;
    let mut counts = Vec::new();
    for scenario in scenarios {
        eprintln!("bench: instruction counts of {}", scenario.name);
        let mut init = Vec::new();
        for repeat in 0..repeats.max(1) {
            init.push(run(bench, &valgrind, scenario, 0, repeat).await?);
        }
        init.sort_unstable();
        let short = run(bench, &valgrind, scenario, SHORT, 0).await?;
        let long = run(bench, &valgrind, scenario, SHORT + WARM, 0).await?;
        let per_warm = long.saturating_sub(short) / WARM as u64;
        counts.push(Counts {
            name: scenario.name,
            init,
            per_warm,
        });
    }
    Ok(counts)
}

/// The Markdown section: one row per scenario, the baseline first, with ratios to it.
pub fn render(counts: &[Counts], repeats: usize) -> String {
    let mut text = String::from(
        "## Instruction counts (callgrind)\n\n\
         Counted by `valgrind --tool=callgrind` on the same release bootstraps, under the same \
         emulator and moto (`DYNAMODB_WARM_UP=off`). Unlike the times above they do not depend \
         on what else the machine is doing: the same binary and input give the same count to \
         within the spread shown. **init**: exec to exit at the first `/next` (median of ",
    );
    let _ = write!(
        text,
        "{repeats} processes, with the spread between the lowest and highest); **per warm \
         invocation**: the difference between a process of {SHORT} and one of {} invocations, \
         over {WARM}; moto's side is not in it (another process). Valgrind does not emulate the \
         CPU's SHA extensions, so under it SHA-256 (SigV4 signing, the SNS and MNS digests) runs \
         sha2's portable code: about 0.1 million of each function's instructions per warm \
         invocation that natively are a few thousand SHA-NI instructions.\n\n\
         | function | init (instructions) | spread | init / hello-world | per warm invocation | warm − hello-world |\n\
         |---|---:|---:|---:|---:|---:|\n",
        SHORT + WARM
    );
    let Some(baseline) = counts.first() else {
        return text;
    };
    let base_init = median(&baseline.init);
    for count in counts {
        let init = median(&count.init);
        let spread = count.init.last().unwrap_or(&0) - count.init.first().unwrap_or(&0);
        let _ = writeln!(
            text,
            "| {} | {} | {} | {:.2}× | {} | {} |",
            count.name,
            thousands(init),
            thousands(spread),
            init as f64 / base_init.max(1) as f64,
            thousands(count.per_warm),
            signed_thousands(count.per_warm as i64 - baseline.per_warm as i64),
        );
    }
    text
}

fn median(values: &[u64]) -> u64 {
    values.get(values.len() / 2).copied().unwrap_or_default()
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn signed_thousands(n: i64) -> String {
    let sign = if n < 0 { '−' } else { '+' };
    format!("{sign}{}", thousands(n.unsigned_abs()))
}

/// `stack-hook (ROS webhook)` → `stack-hook-ros-webhook`.
fn slug(name: &str) -> String {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|part| !part.is_empty())
        .map(str::to_ascii_lowercase)
        .collect::<Vec<_>>()
        .join("-")
}

/// One process under callgrind with `invocations` events; its instruction total.
async fn run(
    bench: &mut Bench,
    valgrind: &Path,
    scenario: &Scenario,
    invocations: usize,
    repeat: usize,
) -> Result<u64, String> {
    // By scenario, not binary: stack-hook's two senders are two profiles.
    let out = bench.logs.join(format!(
        "callgrind-{}-{invocations}-{repeat}.out",
        slug(scenario.name)
    ));
    let _ = std::fs::remove_file(&out);
    let wrapper = [
        valgrind.display().to_string(),
        "--tool=callgrind".into(),
        format!("--callgrind-out-file={}", out.display()),
        "--".into(),
    ];
    let env = bench.scenario_env(scenario, "off");
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let requests: Vec<bytes::Bytes> = (0..invocations)
        .map(|_| bench.next_request(scenario))
        .collect();
    let mut api = RuntimeApi::start(scenario.binary)
        .await
        .map_err(|e| e.to_string())?;
    let mut child = bench.spawn_under(&wrapper, scenario.binary, &api, &env)?;
    api.first_poll(LIMIT)
        .await
        .map_err(|e| bench.failure(scenario, &e))?;
    for request in requests {
        let invocation = api
            .invoke(request, LIMIT)
            .await
            .map_err(|e| bench.failure(scenario, &e))?;
        bench.check(scenario, &invocation.body)?;
    }
    api.close();
    tokio::time::timeout(LIMIT, child.wait())
        .await
        .map_err(|_| format!("{}: did not exit after the last event", scenario.name))?
        .map_err(|e| e.to_string())?;
    total(&out)
}

/// The `totals:` line of a callgrind output file.
fn total(path: &Path) -> Result<u64, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .find_map(|line| line.strip_prefix("totals:"))
        .or_else(|| text.lines().find_map(|line| line.strip_prefix("summary:")))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("{}: no totals line", path.display()))
}

fn find_program(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_digits_by_three() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(20_043_796), "20,043,796");
        assert_eq!(signed_thousands(1_195_705), "+1,195,705");
        assert_eq!(signed_thousands(-2_500), "−2,500");
    }

    #[test]
    fn one_profile_file_per_scenario() {
        assert_eq!(slug("stack-hook (ROS webhook)"), "stack-hook-ros-webhook");
        assert_eq!(
            slug("s3-notification (VK records)"),
            "s3-notification-vk-records"
        );
        assert_eq!(slug("hello-world"), "hello-world");
    }

    #[test]
    fn reads_the_totals_line() {
        let path = std::env::temp_dir().join(format!("callgrind-test-{}", std::process::id()));
        std::fs::write(
            &path,
            "version: 1\nevents: Ir\nsummary: 1841230\ntotals: 1841230\n",
        )
        .unwrap();
        assert_eq!(total(&path).unwrap(), 1_841_230);
        std::fs::write(&path, "events: Ir\n").unwrap();
        assert!(total(&path).is_err());
        let _ = std::fs::remove_file(&path);
    }
}
