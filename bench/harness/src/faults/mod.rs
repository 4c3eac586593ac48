//! The runs of `bench-faults` and the rows of its report.

pub mod deliver;
pub mod function;
pub mod mirror;
pub mod senders;

use crate::fault_proxy::{Counts, FaultProxy, Phase};
use senders::{Stored, Tally};
use std::fmt::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What every run shares.
pub struct Context {
    pub bin_dir: PathBuf,
    pub logs: PathBuf,
    pub proxy: FaultProxy,
    /// moto directly, not through the proxy: set-up and the read-back.
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub share: f64,
    pub events: usize,
    pub ids: AtomicUsize,
}

impl Context {
    /// A number for a fresh table or bucket name.
    pub fn next_id(&self) -> usize {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }
}

/// One line of the report.
pub struct Row {
    pub name: String,
    pub faulted: &'static str,
    pub requests: u64,
    pub faults: Counts,
    pub answers_2xx: u64,
    pub answers_5xx: u64,
    pub failed_invocations: u64,
    pub items: u64,
    pub acked_not_stored: u64,
    pub stored_twice: u64,
    pub never_acked: u64,
    /// Given up by the sender, yet stored (the answer was lost, not the event).
    pub never_acked_stored: u64,
    pub unattributed: u64,
    /// Further findings of the run, printed under the table.
    pub notes: Vec<String>,
    /// What makes the run fail.
    pub violations: Vec<String>,
    /// For webhook-deliver, whose unit is a delivery, not a stored event.
    pub deliveries: Option<DeliveryCounts>,
}

#[derive(Default, Clone, Copy)]
pub struct DeliveryCounts {
    pub total: u64,
    pub delivered: u64,
    pub dead_lettered: u64,
    pub lost: u64,
    pub after_dead_letter: u64,
}

impl Row {
    pub fn from_tally(name: &str, tally: &Tally, faults: Counts, restarts: u64) -> Row {
        let mut row = Row {
            name: name.to_owned(),
            faulted: "DynamoDB",
            requests: tally.requests,
            faults,
            answers_2xx: tally.answers_2xx,
            answers_5xx: tally.answers_5xx,
            failed_invocations: tally.failed_invocations,
            items: 0,
            acked_not_stored: 0,
            stored_twice: 0,
            never_acked: 0,
            never_acked_stored: 0,
            unattributed: 0,
            notes: Vec::new(),
            violations: Vec::new(),
            deliveries: None,
        };
        if restarts > 0 {
            row.notes.push(format!(
                "{name}: the process was replaced {restarts} times (timeout or crash)"
            ));
        }
        if !tally.answers_other.is_empty() {
            row.notes.push(format!(
                "{name}: answers a sender does not retry: {:?}",
                tally.answers_other
            ));
        }
        row
    }

    /// Compares what the sender was told with what the table holds.
    pub fn account(&mut self, tally: &Tally, stored: &Stored) {
        self.items = stored.items;
        self.unattributed = stored.unattributed;
        for (n, event) in tally.events.iter().enumerate() {
            let count = stored.per_event.get(&n).copied().unwrap_or_default();
            if event.acknowledged && count == 0 {
                self.acked_not_stored += 1;
            }
            if count > 1 {
                self.stored_twice += 1;
            }
            if !event.acknowledged {
                self.never_acked += 1;
                if count > 0 {
                    self.never_acked_stored += 1;
                }
            }
        }
        self.unattributed += stored
            .per_event
            .keys()
            .filter(|n| **n >= tally.events.len())
            .count() as u64;
    }

    /// The violations of the store properties; `given_up_allowed` for a sender that does not
    /// retry.
    pub fn check(&mut self, given_up_allowed: bool) {
        if self.acked_not_stored > 0 {
            self.violations.push(format!(
                "{}: {} events acknowledged but not stored",
                self.name, self.acked_not_stored
            ));
        }
        if self.stored_twice > 0 {
            self.violations.push(format!(
                "{}: {} events stored more than once",
                self.name, self.stored_twice
            ));
        }
        if self.unattributed > 0 {
            self.violations.push(format!(
                "{}: {} stored items match no event sent",
                self.name, self.unattributed
            ));
        }
        if self.never_acked > 0 && !given_up_allowed {
            self.violations.push(format!(
                "{}: {} events never acknowledged although the sender retried",
                self.name, self.never_acked
            ));
        }
    }
}

pub struct Report<'a> {
    pub rows: &'a [Row],
    pub share: f64,
    pub seed: u64,
    pub events: usize,
    pub command: &'a str,
    pub extra: &'a [String],
    pub extra_violations: &'a [String],
}

pub fn render(report: &Report) -> String {
    let mut text = String::from("## Injected faults\n\n");
    let _ = writeln!(
        text,
        "Each function's release bootstrap under the Runtime API emulator, reaching AWS (moto) \
         only through a fault-injecting proxy that faults {:.0}% of the requests to the \
         service named (seed {}), half of the kinds after moto applied the request (its answer \
         lost). A sender that retries (all but Tsuru, docs/protocols.md §5.3) sends the same \
         request again on a 5xx or no answer, up to 5 times; the table is then read back \
         directly from moto.\n",
        report.share * 100.0,
        report.seed
    );
    text.push_str(
        "| function | faulted | requests | faults (before/after) | 2xx | 5xx | failed invocations | items stored | acknowledged, not stored | stored twice | never acknowledged |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in report.rows.iter().filter(|r| r.deliveries.is_none()) {
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} ({}/{}) | {} | {} | {} | {} | {} | {} | {}{} |",
            row.name,
            row.faulted,
            row.requests,
            row.faults.total_faults(),
            row.faults.faults_in(Phase::Before),
            row.faults.faults_in(Phase::After),
            row.answers_2xx,
            row.answers_5xx,
            row.failed_invocations,
            row.items,
            row.acked_not_stored,
            row.stored_twice,
            row.never_acked,
            if row.never_acked_stored > 0 {
                format!(" ({} stored)", row.never_acked_stored)
            } else {
                String::new()
            },
        );
    }
    text.push('\n');
    if report.rows.iter().any(|r| r.deliveries.is_some()) {
        text.push_str(
            "| function | faulted | invocations | faults (before/after) | answered | failed invocations | deliveries | delivered | dead-lettered | lost | attempted after dead-lettered |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
    }
    for row in report.rows {
        let Some(d) = row.deliveries else {
            continue;
        };
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} ({}/{}) | {} | {} | {} | {} | {} | {} | {} |",
            row.name,
            row.faulted,
            row.requests,
            row.faults.total_faults(),
            row.faults.faults_in(Phase::Before),
            row.faults.faults_in(Phase::After),
            row.answers_2xx,
            row.failed_invocations,
            d.total,
            d.delivered,
            d.dead_lettered,
            d.lost,
            d.after_dead_letter,
        );
    }
    if report.rows.iter().any(|r| r.deliveries.is_some()) {
        text.push('\n');
    }
    for line in report.extra {
        let _ = writeln!(text, "- {line}");
    }
    if !report.extra.is_empty() {
        text.push('\n');
    }
    text.push_str("Faults per kind (before/after forwarding):\n\n");
    for row in report.rows {
        let _ = writeln!(text, "- {}: {}", row.name, row.faults.describe());
    }
    text.push('\n');
    let notes: Vec<&String> = report.rows.iter().flat_map(|r| &r.notes).collect();
    for note in &notes {
        let _ = writeln!(text, "- {note}");
    }
    if !notes.is_empty() {
        text.push('\n');
    }
    let violations: Vec<&String> = report
        .rows
        .iter()
        .flat_map(|r| &r.violations)
        .chain(report.extra_violations)
        .collect();
    if violations.is_empty() {
        text.push_str("**No violation**: every acknowledged event was stored, none twice.\n\n");
    } else {
        text.push_str("**Violations** (the run failed):\n\n");
        for v in &violations {
            let _ = writeln!(text, "- {v}");
        }
        text.push('\n');
    }
    let _ = writeln!(
        text,
        "How it was measured: {} unique, correctly signed events per function (the generated \
         fixtures' senders, with a marker per event that lands in the stored item), one at a \
         time through the emulator; a 2xx answer is an acknowledgement, a 5xx, an error reply \
         or a timeout makes a retrying sender send the same request again after 0.1, 0.2, 0.4, \
         0.8 and 1.6 s; a timed-out or crashed process is replaced, as Lambda does. Faults: \
         `throughput` (DynamoDB ProvisionedThroughputExceededException, SQS RequestThrottled, \
         S3 503 SlowDown), `throttling` (ThrottlingException; S3 503 ServiceUnavailable), \
         `500`, `reset` (connection closed without an answer), `stall` (no answer for 1.5 s, \
         past the SDK's 1.2 s operation timeout, then closed), each equally likely; after \
         forwarding only `500`, `reset` and `stall`. DynamoDB's `ClientRequestToken` idempotency \
         for `TransactWriteItems` (a retry with the same token within 10 minutes gets the first \
         success, unapplied), which moto lacks, is emulated by the proxy: the SDK fills the \
         token once per operation, so its retries carry it. *Items stored* counts the events table's \
         event items (not the mirror ledger); *acknowledged, not stored* is a 2xx whose event \
         is not in the table, *stored twice* an event with more than one item, *never \
         acknowledged* an event the sender gave up on (allowed only for Tsuru, which does not \
         retry; in brackets those stored nevertheless). **Mirror**: `s3-notification` with \
         `MIRROR_BUCKET`, faults on S3 only: objects written to a moto source bucket, one VK \
         record each (token delivery, numeric sequencers), then a third removed and a third \
         overwritten at the source with their records; the mirror must end equal to the \
         source (keys under `{{bucket}}/`, content). **webhook-deliver**: faults on SQS and \
         DynamoDB; deliveries created and queued as the fan-out does, received from moto's \
         queue in batches of up to 10 as Lambda's poller does (a message done with is deleted, \
         one reported failed comes back after a 2 s visibility timeout or the delay the \
         function set); those to the failing receiver start at their last scheduled attempt \
         (7 made), as the schedule's hours are not waited for. *Lost*: an `ok` delivery \
         without a 2xx at the receiver or not recorded `delivered`, or a failing one not both \
         recorded dead-lettered and in the dead-letter queue. Timings are not checked.\n\n\
         Command: `{}`",
        report.events, report.command
    );
    text
}
