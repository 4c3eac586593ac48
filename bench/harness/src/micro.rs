//! The criterion results of `cargo bench` (run by `scripts/bench.sh` just before), read from
//! criterion's own `benchmark.json` and `estimates.json` files.

use std::path::Path;

pub struct MicroResult {
    pub id: String,
    /// Median time per iteration, and its 95 % confidence interval, in nanoseconds.
    pub median_ns: f64,
    pub lower_ns: f64,
    pub upper_ns: f64,
}

/// Targets of the issue for some benchmarks, in nanoseconds.
pub fn target_ns(id: &str) -> Option<f64> {
    match id {
        "dingtalk/verify+decrypt" => Some(20_000.0),
        "sns/verify-cached" => Some(100_000.0),
        _ => None,
    }
}

pub fn collect(dir: &Path) -> Vec<MicroResult> {
    let mut found = Vec::new();
    walk(dir, &mut found);
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found
}

fn walk(dir: &Path, found: &mut Vec<MicroResult>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|name| name == "new") {
                if let Some(result) = read(&path) {
                    found.push(result);
                }
            } else {
                walk(&path, found);
            }
        }
    }
}

fn read(dir: &Path) -> Option<MicroResult> {
    let json = |name: &str| -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(dir.join(name)).ok()?).ok()
    };
    let benchmark = json("benchmark.json")?;
    let estimates = json("estimates.json")?;
    let median = &estimates["median"];
    Some(MicroResult {
        id: benchmark["full_id"].as_str()?.to_owned(),
        median_ns: median["point_estimate"].as_f64()?,
        lower_ns: median["confidence_interval"]["lower_bound"].as_f64()?,
        upper_ns: median["confidence_interval"]["upper_bound"].as_f64()?,
    })
}
