//! The order of one stack's ROS notifications: which delivery is a retry, which one sets the
//! status, and which one is only history (`docs/protocols.md` §3.1).
//!
//! ROS sends no event id, no time and no sequence number, and it retries deliveries (§3.1), so
//! arrival order is all there is. The rule:
//!
//! 1. A delivery is a **retry** only when it equals the stack's current latest notification
//!    (same canonical JSON) and that one arrived in this dedup window or the one before. A status
//!    that comes back (`UPDATE_COMPLETE`, `ROLLBACK_COMPLETE`, `UPDATE_COMPLETE`) is a change,
//!    never collapsed into the first.
//! 2. The latest status never moves backwards through a stack's lifecycle. For one stack id the
//!    phases are create (`CREATE_*`, `IMPORT_CREATE_*`, `REVIEW_IN_PROGRESS`), then everything
//!    else (`UPDATE_*`, `ROLLBACK_*`, `CHECK_*`, `DELETE_FAILED`, …), then `DELETE_COMPLETE`; a
//!    delivery from an earlier phase than the latest, or any delivery after `DELETE_COMPLETE`, is
//!    late. A stack deleted and created again under the same name has a new stack id: a new
//!    lifecycle, which supersedes the old one, and the old id's notifications are late from then on.
//! 3. Late deliveries are stored as history only ([`Event::history_only`]): listed, never the
//!    latest. Their retries collapse by content within two windows ([`crate::ros::idempotency_key`]).
//!
//! Concurrent deliveries (ROS retrying while the first attempt is still running, two Lambda
//! instances) must not break this, and the store's "latest" index is eventually consistent. So
//! the state-setting events of a stack name form a chain: the id of the event that follows `P` is
//! derived from `P` alone ([`slot_after`]), and the store's insert-once put is the
//! compare-and-swap. Two deliveries deciding against the same latest race for the same id; the
//! loser reads the winner (a consistent read by id) and decides again against it. A decision
//! taken against the index's possibly stale answer holds only if it is proved: a new latest by
//! its put succeeding (the place after a stale answer is taken), a retry or a late delivery by
//! following the chain from that answer with consistent reads and deciding again. Every decision
//! is therefore taken against the true latest, never a stale one. The same holds for the chain
//! head an instance remembers from its last delivery for the name (`crate::heads`), which is
//! where a delivery starts instead of the index when there is one.
//!
//! The chain holds ROS notifications only. A CloudFormation stack of the same name (its events
//! come through SNS, `crate::cfn`) has statuses of its own, ordered by their own timestamps and
//! never part of the chain: a ROS delivery is decided against the ROS chain alone, and the
//! name's status (`GET /stacks/{stack}`) is the newer of the two stacks' latest events. So every
//! name's chain begins at its [`first_slot`], and a remembered head cannot be bypassed by a
//! CloudFormation status that another instance stored.

use crate::ros::RosNotification;
use chrono::{DateTime, Duration, Utc};
use hub_core::event::{content_id, format_time, Event};
use serde_json::Value;

/// Where a status sits in a stack's lifecycle; later phases are greater.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Create,
    Operate,
    Deleted,
}

pub fn phase(status: &str) -> Phase {
    if status == "DELETE_COMPLETE" {
        Phase::Deleted
    } else if status.starts_with("CREATE_")
        || status.starts_with("IMPORT_CREATE_")
        || status == "REVIEW_IN_PROGRESS"
    {
        Phase::Create
    } else {
        Phase::Operate
    }
}

/// Whether a notification for the same stack id may follow `latest`: not after
/// `DELETE_COMPLETE`, and never from an earlier phase.
pub fn may_follow(latest: &str, next: &str) -> bool {
    let latest = phase(latest);
    latest != Phase::Deleted && phase(next) >= latest
}

/// The stack id an event is about: the alias, else the payload's `StackId`.
pub fn stack_id_of(event: &Event) -> Option<String> {
    event.subject_alias.clone().or_else(|| {
        serde_json::from_str::<Value>(&event.payload)
            .ok()?
            .get("StackId")?
            .as_str()
            .map(str::to_owned)
    })
}

/// Whether `event` holds exactly this notification (canonical JSON: key order and spacing do not
/// matter).
pub fn same_content(event: &Event, notification: &RosNotification) -> bool {
    serde_json::from_str::<Value>(&event.payload)
        .is_ok_and(|stored| stored == Value::Object(notification.body.clone()))
}

/// The first instant of the dedup window before the one `now` is in: deliveries of the same
/// content received since then are retries.
pub fn retry_horizon(now: DateTime<Utc>, window_secs: u64) -> DateTime<Utc> {
    let window = window_secs.max(1) as i64;
    let start = now.timestamp().div_euclid(window) * window - window;
    DateTime::from_timestamp(start, 0).unwrap_or(now)
}

/// Rule 1: a retry of the current latest.
pub fn is_retry(
    latest: &Event,
    notification: &RosNotification,
    now: DateTime<Utc>,
    window_secs: u64,
) -> bool {
    latest.received_at >= retry_horizon(now, window_secs) && same_content(latest, notification)
}

/// How every chain id begins (a late delivery's id too, but that one never sets the status).
pub const CHAIN_ID_PREFIX: &str = "ros-";

fn chain_id(parts: &[&[u8]]) -> String {
    format!("{CHAIN_ID_PREFIX}{}", &content_id(parts)[..32])
}

/// Whether a state-setting event is in a ROS chain, rather than a CloudFormation status of a
/// stack of the same name (ids `{EventId}@{StackId}`).
pub fn is_chain_id(event_id: &str) -> bool {
    event_id.starts_with(CHAIN_ID_PREFIX)
}

/// The id of the first state-setting ROS event of a stack name.
pub fn first_slot(stack_name: &str) -> String {
    chain_id(&[b"first", stack_name.as_bytes()])
}

/// Whether a delivery may take the first place of its name's chain without reading the chain
/// first, answered before any read.
///
/// The first state-setting ROS delivery of a name always takes [`first_slot`] (the chain is
/// empty), so while nothing expires that place is free exactly when the name has no chain: the
/// put succeeds only for the name's first delivery, which sets the status whatever it is, and
/// fails, without storing anything, for every later one. Two conditions keep that true:
///
/// - No `EVENT_TTL_DAYS`. The first place expires before the places after it, and a put into
///   the freed place would start a second chain beside a live one.
/// - A creation status. The first delivery of a new stack is one, and a delivery for a stack the
///   name already has rarely is, so the put is seldom wasted. Every other status reads first.
///
/// CloudFormation statuses of the same name are not in the chain, so they take no place of it.
pub fn first_slot_proves_a_new_name(status: &str, event_ttl_days: Option<u32>) -> bool {
    event_ttl_days.is_none() && phase(status) == Phase::Create
}

/// The id of the state-setting event that follows `latest`. It depends on `latest` alone (its id
/// and its arrival time, so that a chain started again after every event expired never meets
/// the old one), never on the content that follows: two deliveries that both want to follow
/// `latest` want the same id, and only one put of it succeeds.
pub fn slot_after(latest: &Event) -> String {
    chain_id(&[
        b"after",
        latest.event_id.as_bytes(),
        format_time(latest.received_at).as_bytes(),
    ])
}

/// How far ahead of this instance's clock the latest may be before [`received_after`] stops
/// following it: clocks of Lambda instances differ by milliseconds, not minutes.
const MAX_CLOCK_LEAD: i64 = 300;

/// The `received_at` of an event that follows `latest`: now, but never earlier than `latest`'s
/// time, so that the store's newest-first order (by event time) is the chain's order even when
/// another instance's clock was a little ahead.
pub fn received_after(latest: Option<&Event>, now: DateTime<Utc>) -> DateTime<Utc> {
    match latest.map(|e| e.event_time() + Duration::milliseconds(1)) {
        Some(after) if after > now && after - now <= Duration::seconds(MAX_CLOCK_LEAD) => after,
        _ => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use hub_core::event::Source;

    #[test]
    fn phases_only_move_forward_and_end_at_delete_complete() {
        for (latest, next, allowed) in [
            ("CREATE_COMPLETE", "UPDATE_COMPLETE", true),
            ("CREATE_COMPLETE", "CREATE_COMPLETE", true),
            ("CREATE_FAILED", "CREATE_COMPLETE", true),
            ("CREATE_COMPLETE", "ROLLBACK_COMPLETE", true),
            ("UPDATE_COMPLETE", "ROLLBACK_COMPLETE", true),
            ("ROLLBACK_COMPLETE", "UPDATE_COMPLETE", true),
            ("UPDATE_COMPLETE", "DELETE_FAILED", true),
            ("DELETE_FAILED", "DELETE_COMPLETE", true),
            ("CHECK_COMPLETE", "DELETE_COMPLETE", true),
            ("UPDATE_COMPLETE", "CREATE_COMPLETE", false),
            ("CHECK_COMPLETE", "CREATE_ROLLBACK_COMPLETE", false),
            ("DELETE_FAILED", "IMPORT_CREATE_COMPLETE", false),
            ("DELETE_COMPLETE", "UPDATE_COMPLETE", false),
            ("DELETE_COMPLETE", "DELETE_COMPLETE", false),
            ("DELETE_COMPLETE", "CREATE_COMPLETE", false),
        ] {
            assert_eq!(may_follow(latest, next), allowed, "{latest} then {next}");
        }
    }

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 3, 1, h, m, s).unwrap()
    }

    #[test]
    fn only_creations_skip_the_read_and_only_while_nothing_expires() {
        assert!(first_slot_proves_a_new_name("CREATE_COMPLETE", None));
        assert!(first_slot_proves_a_new_name(
            "CREATE_ROLLBACK_COMPLETE",
            None
        ));
        assert!(first_slot_proves_a_new_name("IMPORT_CREATE_COMPLETE", None));
        assert!(!first_slot_proves_a_new_name("CREATE_COMPLETE", Some(30)));
        assert!(!first_slot_proves_a_new_name("UPDATE_COMPLETE", None));
        assert!(!first_slot_proves_a_new_name("DELETE_COMPLETE", None));
    }

    #[test]
    fn the_retry_horizon_is_the_start_of_the_window_before() {
        assert_eq!(retry_horizon(at(12, 10, 30), 600), at(12, 0, 0));
        assert_eq!(retry_horizon(at(12, 9, 59), 600), at(11, 50, 0));
    }

    #[test]
    fn slots_follow_an_event_not_a_content() {
        let a = Event::new(Source::Stack, "ros-a", "X", "web", "{}", at(12, 0, 0));
        let same_id_later = Event::new(Source::Stack, "ros-a", "X", "web", "{}", at(13, 0, 0));
        assert_ne!(slot_after(&a), slot_after(&same_id_later));
        assert_ne!(slot_after(&a), first_slot("web"));
        assert_ne!(first_slot("web"), first_slot("api"));
        assert_eq!(slot_after(&a).len(), "ros-".len() + 32);
    }

    #[test]
    fn an_event_follows_its_predecessor_in_time() {
        let now = at(12, 0, 0);
        assert_eq!(received_after(None, now), now);
        let ahead = Event::new(
            Source::Stack,
            "x",
            "X",
            "web",
            "{}",
            now + Duration::seconds(2),
        );
        assert_eq!(
            received_after(Some(&ahead), now),
            now + Duration::milliseconds(2001)
        );
        let behind = Event::new(
            Source::Stack,
            "x",
            "X",
            "web",
            "{}",
            now - Duration::seconds(2),
        );
        assert_eq!(received_after(Some(&behind), now), now);
        let absurd = Event::new(
            Source::Stack,
            "x",
            "X",
            "web",
            "{}",
            now + Duration::days(9),
        );
        assert_eq!(received_after(Some(&absurd), now), now);
    }
}
