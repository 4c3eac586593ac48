//! The HTTP functions under DynamoDB faults, each fed unique signed events by a simulated
//! sender that retries like the real one, then the events table read back directly from moto.
//!
//! Every request carries a marker (`fzmark` and 8 digits) that lands in what the function
//! stores (an id, a subject, or the payload): an item is attributed to its logical event by it.

use super::function::{Function, Outcome};
use super::{Context, Row};
use crate::signed::{self, Family, Sender as Format};
use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// API Gateway's integration timeout: past it the sender sees a 504.
const INVOKE_LIMIT: Duration = Duration::from_secs(30);
/// Retries of a sender that retries (after the first attempt).
const RETRIES: u32 = 5;
/// The first retry's delay, doubled for each next one (compressed from the real senders':
/// the property does not depend on the wait, only on the request coming again).
const BACKOFF: Duration = Duration::from_millis(100);

pub struct Sender {
    pub name: &'static str,
    pub binary: &'static str,
    pub env_entry: &'static str,
    /// Whether the real sender tries again on a 5xx or no answer (docs/protocols.md): SNS
    /// (§2.3), MNS (§4.4), DingTalk, VK and ROS do; Tsuru does not (§5.3, "no retry").
    pub retries: bool,
    pub format: Format,
}

impl Sender {
    /// Event `n`, marked with [`marker`]`(n)`.
    pub fn request(&self, n: usize) -> Value {
        signed::event_request(self.format, n as u64, &marker(n), &FAULTS)
    }
}

/// The ids of the fault runs, apart from the other harness parts'.
const FAULTS: Family = Family {
    name: "faults",
    space: 0x9000,
};

pub const SENDERS: [Sender; 7] = [
    Sender {
        name: "stack-hook (ROS webhook)",
        binary: "stack-hook",
        env_entry: "StackHookFunction",
        retries: true,
        format: Format::Ros,
    },
    Sender {
        name: "stack-hook (CloudFormation via SNS)",
        binary: "stack-hook",
        env_entry: "StackHookFunction",
        retries: true,
        format: Format::Cloudformation,
    },
    Sender {
        name: "dingtalk-callback",
        binary: "dingtalk-callback",
        env_entry: "DingTalkFunction",
        retries: true,
        format: Format::Dingtalk,
    },
    Sender {
        name: "mns-endpoint",
        binary: "mns-endpoint",
        env_entry: "MnsFunction",
        retries: true,
        format: Format::Mns,
    },
    Sender {
        name: "s3-notification (VK records)",
        binary: "s3-notification",
        env_entry: "S3NotificationFunction",
        retries: true,
        format: Format::Vk,
    },
    Sender {
        name: "s3-notification (S3 via SNS)",
        binary: "s3-notification",
        env_entry: "S3NotificationFunction",
        retries: true,
        format: Format::S3Sns,
    },
    Sender {
        name: "tsuru-hook",
        binary: "tsuru-hook",
        env_entry: "TsuruHookFunction",
        retries: false,
        format: Format::Tsuru,
    },
];

pub fn marker(n: usize) -> String {
    format!("fzmark{n:08}")
}

/// The logical events an item carries the marker of.
fn markers_in(text: &str) -> Vec<usize> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("fzmark") {
        let digits = &rest[at + 6..];
        let number: String = digits.chars().take(8).collect();
        if number.len() == 8 && number.bytes().all(|b| b.is_ascii_digit()) {
            found.push(number.parse().unwrap_or(usize::MAX));
        }
        rest = &rest[at + 6..];
    }
    found.sort_unstable();
    found.dedup();
    found
}

/// What the sender saw of one logical event.
#[derive(Default, Clone, Copy)]
pub struct Delivery {
    pub acknowledged: bool,
}

/// What the senders saw over a run.
#[derive(Default)]
pub struct Tally {
    pub requests: u64,
    pub answers_2xx: u64,
    pub answers_5xx: u64,
    /// Other statuses: a sender does not retry them, so the event is given up.
    pub answers_other: BTreeMap<u16, u64>,
    /// Error replies, timeouts, crashes (API Gateway: 502/504).
    pub failed_invocations: u64,
    pub events: Vec<Delivery>,
}

/// Sends `request` until it is acknowledged, as a sender that retries on 5xx and on no answer
/// does (or once, for one that does not). Returns the final answer, if any.
pub async fn send(
    function: &mut Function,
    request: Bytes,
    retries: bool,
    tally: &mut Tally,
) -> Option<Value> {
    let attempts = if retries { 1 + RETRIES } else { 1 };
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(BACKOFF * 2u32.pow(attempt - 1)).await;
        }
        tally.requests += 1;
        match function.invoke(request.clone(), INVOKE_LIMIT).await {
            Outcome::Answer(body) => {
                let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let status = answer["statusCode"].as_u64().unwrap_or_default() as u16;
                match status {
                    200..=299 => {
                        tally.answers_2xx += 1;
                        return Some(answer);
                    }
                    500..=599 => tally.answers_5xx += 1,
                    other => {
                        *tally.answers_other.entry(other).or_default() += 1;
                        eprintln!(
                            "bench-faults: {} answered {other}: {}",
                            function.name(),
                            answer["body"]
                        );
                        return None;
                    }
                }
            }
            Outcome::Failed(_) => tally.failed_invocations += 1,
        }
    }
    None
}

/// Runs one sender against a fresh events table with DynamoDB faults.
pub async fn run(ctx: &Context, sender: &Sender) -> Result<Row, String> {
    let table = format!("faults-{}-{}", sender.binary, ctx.next_id());
    hub_tests::template::create_events_table(&ctx.dynamodb, &table).await;
    let mut env: Vec<(String, String)> = hub_tests::fixture_vars(sender.env_entry)
        .into_iter()
        .collect();
    env.retain(|(k, _)| k != "EVENTS_TABLE" && k != "AWS_ENDPOINT_URL");
    env.push(("EVENTS_TABLE".into(), table.clone()));
    env.push(("AWS_ENDPOINT_URL".into(), ctx.proxy.endpoint()));
    let mut function = Function::start(&ctx.bin_dir, &ctx.logs, sender.binary, env).await?;
    ctx.proxy
        .inject(ctx.share, &[crate::fault_proxy::Service::DynamoDb]);
    let before = ctx.proxy.counts();
    let mut tally = Tally {
        events: vec![Delivery::default(); ctx.events],
        ..Tally::default()
    };
    for n in 0..ctx.events {
        let request = Bytes::from(sender.request(n).to_string());
        let answer = send(&mut function, request, sender.retries, &mut tally).await;
        tally.events[n].acknowledged = answer.is_some();
    }
    ctx.proxy.inject(0.0, &[]);
    let faults = ctx.proxy.counts().since(&before);
    let restarts = function.restarts;
    function.stop().await;
    let stored = stored_markers(ctx, &table).await?;
    let mut row = Row::from_tally(sender.name, &tally, faults, restarts);
    row.account(&tally, &stored);
    Ok(row)
}

/// Items stored per logical event (by marker), and the items that name none.
pub struct Stored {
    pub per_event: HashMap<usize, u64>,
    pub items: u64,
    pub unattributed: u64,
}

/// Reads the whole table from moto directly (not through the proxy). The mirror's ledger
/// entries (`pk = mirror#…`) are not events.
pub async fn stored_markers(ctx: &Context, table: &str) -> Result<Stored, String> {
    let mut stored = Stored {
        per_event: HashMap::new(),
        items: 0,
        unattributed: 0,
    };
    let mut start = None;
    loop {
        let page = ctx
            .dynamodb
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| format!("scan {table}: {e:?}"))?;
        for item in page.items() {
            let pk = item.get("pk").and_then(|v| v.as_s().ok());
            if pk.is_some_and(|pk| pk.starts_with("mirror#")) {
                continue;
            }
            stored.items += 1;
            let text: String = item
                .values()
                .filter_map(|v| match v {
                    AttributeValue::S(s) => Some(s.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("\n");
            let markers = markers_in(&text);
            if markers.is_empty() {
                stored.unattributed += 1;
            }
            for n in markers {
                *stored.per_event.entry(n).or_default() += 1;
            }
        }
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => break,
        }
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_found_once_each_and_only_with_8_digits() {
        assert_eq!(
            markers_in("a fzmark00000012 b fzmark00000012 fzmark0000001 fzmark00000003"),
            vec![3, 12]
        );
    }
}
